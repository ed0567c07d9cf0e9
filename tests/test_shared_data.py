"""Skips that speak: missing ../shared data skips locally with the path, and fails under CI=true."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.conftest import _ci_fails_shared_skip, shared_data, shared_data_missing

MISSING = ("no-such-folder-issue-29", "x.sxm")


def test_missing_shared_data_skips_with_its_path_outside_ci(monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-folder-issue-29/x.sxm"):
        shared_data(*MISSING)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="the ../shared data folder is absent"):
        shared_data(*MISSING, what="real .sxm files")


def test_missing_shared_data_fails_under_ci(monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and real .sxm files not available"):
        shared_data(*MISSING, what="real .sxm files")
    with pytest.raises(pytest.fail.Exception, match="CI runs with ../shared beside the checkout"):
        shared_data_missing("real data ../shared/data/hsi100 not present")


def test_present_shared_data_is_its_path(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr("tests.conftest.SHARED_DATA", tmp_path)
    (tmp_path / "readers").mkdir()
    assert shared_data("readers") == tmp_path / "readers"


@pytest.mark.parametrize(("ci", "reason", "outcome"), [
    ("true", "Skipped: real data ../shared/data/hsi100 not present", "failed"),
    ("true", "Skipped: real .sxm test data not available at /x/shared/data/readers/sxm", "failed"),
    ("true", "Skipped: selenium is not installed (test extra)", "skipped"),
    ("", "Skipped: real data ../shared/data/hsi100 not present", "skipped"),
])
def test_ci_turns_only_shared_data_skips_into_failures(monkeypatch, ci, reason, outcome) -> None:
    """The hook behind every test: an older skip whose reason names ../shared fails in CI too."""
    monkeypatch.setenv("CI", ci)
    report = SimpleNamespace(skipped=True, outcome="skipped", longrepr=("t.py", 3, reason))
    report.skipped = True
    _ci_fails_shared_skip(report)
    assert report.outcome == outcome
    if outcome == "failed":
        assert "CI=true but skipped for missing shared data" in report.longrepr
