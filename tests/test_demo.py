"""``stmtip demo``: the conditioning main job on the simulator, with the real monitor."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from qcodes.dataset import initialise_or_create_database_at, load_by_run_spec

from qcodes_stmtip.cli import main
from qcodes_stmtip.demo import resolve_bundle, run_demo, train_demo_bundle
from qcodes_stmtip.taxonomy import CLASSES, GOOD_CLASSES


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory) -> Path:
    """A quickly trained demo bundle (few frames, few epochs): enough to drive the loop."""
    pytest.importorskip("keras")
    out = tmp_path_factory.mktemp("demo") / "bundle_hsi100"
    return train_demo_bundle(out, per_class=8, epochs=2, width=0.25, echo=lambda line: None)


def test_run_demo_conditions_a_bad_tip_and_writes_database_and_report(small_bundle, tmp_path) -> None:
    lines: list[str] = []
    result = run_demo(tmp_path / "demo", bundle=small_bundle, max_frames=6, echo=lines.append)
    text = "\n".join(lines)
    assert result.database == (tmp_path / "demo" / "demo.db").resolve() and result.database.is_file()
    assert str(result.database) in text and str(result.report_html) in text
    assert "tip starts generic_defect" in text and "simulated" in text
    assert result.bundle == small_bundle and result.bundle_source == "given"
    assert result.outcome in ("good_tip", "max_frames", "refused")
    assert 1 <= result.frames <= 6

    initialise_or_create_database_at(result.database)
    ds = load_by_run_spec(captured_run_id=result.run_id)
    assert json.loads(ds.metadata["tip_monitor"])["inference_path"].startswith("tensorflow")
    config = json.loads(ds.metadata["conditioning_config"])
    assert config["policy"]["name"] == "escalating" and config["clock"] == "simulated"
    truth = ds.get_parameter_data("frame_true_state")["frame_true_state"]["frame_true_state"]
    assert set(truth) <= set(CLASSES["hsi100"])  # the simulator's truth is stored per frame
    assert len(ds.get_parameter_data("tip_state")["tip_state"]["tip_state"]) == result.frames
    page = result.report_html.read_text()
    assert page.count("data:image/png;base64,") == 2
    assert result.summary["frames"] == result.frames

    # one line compares the classifier's good/bad with the simulator's truth, counted from the database
    quality = ds.get_parameter_data("tip_quality")["tip_quality"]["tip_quality"]
    good = GOOD_CLASSES["hsi100"]
    pairs = [(str(q), "good" if t in good else "bad") for q, t in zip(quality, truth, strict=True)
             if q in ("good", "bad", "uncertain")]  # uncertain counts in N and never agrees
    agree = sum(q == t for q, t in pairs)
    found = re.findall(r"^classifier vs simulator truth \(good/bad\): (\d+) of (\d+) frames agree$", text, re.M)
    assert found == [(str(agree), str(len(pairs)))]
    assert "uncertain never agrees" in text
    assert f"classifier vs simulator truth (good/bad): {agree} of {len(pairs)} frames agree" in page
    assert page.count('<tr class="disagree">') + page.count('<tr class="uncertain">') == len(pairs) - agree


def test_bundle_resolution_prefers_given_then_shipped_then_cache(small_bundle, tmp_path) -> None:
    from qcodes_stmtip.classify.bundle import BundleError, default_bundle_path

    assert resolve_bundle("hsi100", tmp_path, small_bundle) == (small_bundle, "given")
    with pytest.raises(FileNotFoundError, match="manifest"):
        resolve_bundle("hsi100", tmp_path, tmp_path / "nothing")
    try:
        shipped = default_bundle_path("hsi100")  # the bundle a user gets: trained on real frames
    except BundleError:
        shipped = None
    cache = tmp_path / "bundle_hsi100"
    import shutil

    shutil.copytree(small_bundle, cache)
    path, source = resolve_bundle("hsi100", tmp_path, None, echo=pytest.fail)  # never trains
    assert path == (shipped or cache) and ("shipped" in source if shipped else "cached" in source)
    if shipped is not None:
        assert path.name == "hsi100" and "real training frames" in source, source
        au, au_source = resolve_bundle("au111", tmp_path, None, echo=pytest.fail)
        assert "simulated training frames" in au_source  # no real metal frames exist


def test_run_demo_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="surface"):
        run_demo(tmp_path, surface="graphite")
    with pytest.raises(ValueError, match="policy"):
        run_demo(tmp_path, policy="magic")
    with pytest.raises(ValueError, match="frame_size_m"):
        run_demo(tmp_path, frame_size_m=-1.0)
    with pytest.raises(ValueError, match="angle_deg"):
        run_demo(tmp_path, angle_deg=float("nan"))


def test_cli_demo_prints_database_and_report(small_bundle, tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    code = main(["demo", "--out", str(out), "--model", str(small_bundle), "--max-frames", "2"])
    printed = capsys.readouterr().out
    assert code in (0, 3)  # 3: no good tip within 2 frames
    assert str((out / "demo.db").resolve()) in printed and "report:" in printed
    assert (out / "report" / "run1.html").is_file()


def test_demo_module_import_is_light() -> None:
    code = (
        "import sys, qcodes_stmtip.demo, qcodes_stmtip.drivers.nanonis_stm, qcodes_stmtip.conditioning,"
        "qcodes_stmtip.conditioning.cli, qcodes_stmtip.conditioning.report;"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
