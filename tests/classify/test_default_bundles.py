"""The default bundles shipped in the package load safely and classify simulated frames;
the bundle builder's calibration helpers behave."""

import numpy as np
import pytest

from qcodes_stmtip.classify.default_bundles import parse_pixel_mix, tip_change_threshold


def test_parse_pixel_mix_normalises_and_rejects():
    assert parse_pixel_mix("128:3,64:1") == ((128, 0.75), (64, 0.25))
    for bad in ("128", "128:x", "8:1", "128:-1,64:2", "128:0"):
        with pytest.raises(ValueError, match="pixel mix"):
            parse_pixel_mix(bad)


def test_tip_change_threshold_reaches_target_precision():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(900, bool), np.ones(100, bool)]
    p = np.r_[rng.uniform(0.0, 0.7, 900), rng.uniform(0.5, 1.0, 100)]
    t, rule = tip_change_threshold(y, p, target_precision=0.9)
    assert rule.startswith("precision")
    flagged = p >= t
    assert np.mean(y[flagged]) >= 0.9
    # the lowest such threshold: one step lower misses the target or flags the same frames
    lower = p[p < t].max()
    assert np.mean(y[p >= lower]) < 0.9


def test_tip_change_threshold_falls_back_to_false_positive_rate():
    y = np.r_[np.zeros(100, bool), np.ones(10, bool)]
    p = np.r_[np.linspace(0, 1, 100), np.full(10, 0.5)]  # positives never separate out
    t, rule = tip_change_threshold(y, p, target_precision=0.95, max_false_positive_rate=0.05)
    assert rule.startswith("false-positive")
    assert np.mean(p[~y] >= t) <= 0.05
    with pytest.raises(ValueError, match="both classes"):
        tip_change_threshold(np.zeros(5, bool), np.zeros(5))
    with pytest.raises(ValueError, match="target_precision"):
        tip_change_threshold(y, p, target_precision=0.0)


@pytest.mark.parametrize("surface", ["hsi100", "au111", "cu111"])
def test_default_bundle(surface, tmp_path):
    pytest.importorskip("keras")
    from qcodes_stmtip.classify.bundle import DEFAULT_BUNDLES, load_bundle
    from qcodes_stmtip.sim.classes import CLASSES

    path = DEFAULT_BUNDLES / surface
    if not (path / "manifest.json").is_file():
        pytest.skip(f"no default bundle built for {surface} (python -m qcodes_stmtip.classify.default_bundles)")
    ens = load_bundle(path, surface=surface)
    assert ens.classes == CLASSES[surface]
    assert ens.manifest["training_data"]["source"].startswith("simulated")
    assert (ens.tip_change is not None) == (surface == "hsi100")
    size_mb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
    assert size_mb < 5.0, f"default bundle {surface} is {size_mb:.1f} MB"
    # better than guessing on its own held-out simulated frames
    assert ens.manifest["metrics"]["held_out_simulated"]["table"]["ensemble"]["mean_auroc"] > 0.6

    from qcodes_stmtip.cli import main

    frame = np.random.default_rng(0).normal(size=(64, 64)) * 1e-11
    np.save(tmp_path / "f.npy", frame)
    out = tmp_path / "p.csv"
    assert main(["classify", "--surface", surface, "--output", str(out), str(tmp_path / "f.npy")]) == 0
    header = out.read_text().splitlines()[0].split(",")
    assert header[1 : 1 + len(CLASSES[surface])] == list(CLASSES[surface])


def test_hsi100_bundle_on_fresh_demo_geometry_frames():
    """Fresh simulated frames at the ``stmtip demo`` geometry (6 nm, 64 px): good/bad well
    separated, and few clean frames flagged as tip changes at the manifest threshold."""
    pytest.importorskip("keras")
    from qcodes_stmtip.classify.bundle import DEFAULT_BUNDLES, load_bundle
    from qcodes_stmtip.classify.default_bundles import demo_geometry_set, score_frames

    path = DEFAULT_BUNDLES / "hsi100"
    if not (path / "manifest.json").is_file():
        pytest.skip("no default hsi100 bundle built")
    ens = load_bundle(path, surface="hsi100")
    x, y = demo_geometry_set("hsi100", 200, seed=12345)
    s = score_frames(ens, x, y)
    assert s["n"] >= 180
    assert s["good_bad"]["auroc"] > 0.75, s["good_bad"]
    assert s["good_bad"]["accuracy"] > 0.7, s["good_bad"]
    assert s["tip_change"]["false_positive_rate"] < 0.25, s["tip_change"]
