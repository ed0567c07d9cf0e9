"""Fixtures shared across the test tree.

``tiny_bundle``: a three-member H:Si(100) bundle with random (perturbed) weights and a
tip-change network, 32² input — exercises the inference and monitor machinery without
training. ``tests/conditioning`` and ``tests/labelling`` override it with the smaller
bundles their tests need.

``shared_data(*parts)``: the path of real data under ``../shared/data`` beside the checkout.
When it is absent the test is skipped with the path as the reason, except under ``CI=true``,
where the data is always there and the test fails instead (a green CI must not hide that the
real-data tests did not run). Tests import it: ``from tests.conftest import shared_data``.
The hooks below apply the same rule to every skip whose reason names the shared folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

#: Network input side of the tiny bundle, pixels.
TINY_SIZE = 32
#: The real data beside the checkout (read-only; CI lays it there).
SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
#: A skip reason that names the shared data folder (the helper's reasons and older ones).
_SHARED_REASON = re.compile(r"\.\./shared|shared data|/shared/data")


def in_ci() -> bool:
    """True when the environment says this is CI (``CI=true``, as GitHub and .ci/run set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def shared_data_missing(reason: str) -> None:
    """Skip the test because real shared data is absent, or fail it under ``CI=true``."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}: CI runs with ../shared beside the checkout",
                    pytrace=False)
    # reported at the test's own location (not this line), so -ra names each skipped test
    raise pytest.skip.Exception(reason, _use_item_location=True)


def shared_data(*parts: str, what: str = "real test data") -> Path:
    """``../shared/data/<parts>``; skips (fails under ``CI=true``) when it does not exist."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        shared_data_missing(f"{what} not available at {path} (the ../shared data folder is absent)")
    return path


def _ci_fails_shared_skip(report) -> None:
    """Under ``CI=true``, turn a skip whose reason names the shared data folder into a failure."""
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    if _SHARED_REASON.search(reason):
        report.outcome = "failed"
        report.longrepr = f"CI=true but skipped for missing shared data: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    _ci_fails_shared_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    _ci_fails_shared_skip(report)
    return report


def perturbed(model, seed: int):
    """``model`` with random non-trivial weights, including batch-norm statistics."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """Two SqueezeNet-like members + a VGG-BN + a tip-change network, random weights, 32² input."""
    pytest.importorskip("keras")
    from qcodes_stmtip.classify.architectures import build_model
    from qcodes_stmtip.classify.bundle import save_bundle
    from qcodes_stmtip.classify.ensemble import Ensemble, Member
    from qcodes_stmtip.taxonomy import CLASSES

    members = [
        Member("sq_a", "squeezenet", perturbed(build_model("squeezenet", 4, width=0.125, size=TINY_SIZE), 0)),
        Member("vgg_b", "vgg_bn", perturbed(build_model("vgg_bn", 4, width=0.125, size=TINY_SIZE), 1)),
        Member("sq_c", "squeezenet", perturbed(build_model("squeezenet", 4, width=0.125, size=TINY_SIZE), 2)),
    ]
    tip = Member("tip_change", "squeezenet",
                 perturbed(build_model("squeezenet", 2, width=0.125, size=TINY_SIZE), 3))
    ens = Ensemble("hsi100", CLASSES["hsi100"], members, thresholds=[0.0] * 4, tip_change=tip,
                   tip_change_threshold=0.5)
    return save_bundle(ens, tmp_path_factory.mktemp("tiny") / "bundle", image_size=TINY_SIZE)
