"""The default bundles shipped in the package load safely and classify simulated frames."""

import numpy as np
import pytest

pytest.importorskip("keras")
from qcodes_stmtip.classify.bundle import DEFAULT_BUNDLES, load_bundle  # noqa: E402
from qcodes_stmtip.sim.classes import CLASSES  # noqa: E402


@pytest.mark.parametrize("surface", ["hsi100", "au111", "cu111"])
def test_default_bundle(surface, tmp_path):
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
