"""Simulated H:Si(100) frames against the real ones (skips without ../shared/data/hsi100)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_data_missing

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / ".." / "shared" / "data" / "hsi100"


def _benchmark():
    spec = importlib.util.spec_from_file_location("sim_realism", REPO / "benchmarks" / "sim_realism.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_simulated_dimer_frames_match_real_statistics():
    if not (DATA / "labels.csv").exists():
        shared_data_missing(f"real H:Si(100) data not found at {DATA}")
    bench = _benchmark()
    real = bench.real_frames(DATA, 8)["dimers_asymmetries"]
    sim = bench.sim_frames(8, seed=1, classes=("dimers_asymmetries",))["dimers_asymmetries"]
    assert len(real) == 8
    r, s = bench.stats(real), bench.stats(sim)
    # smooth along the fast axis, rougher across lines, and a steep spectrum, like the real frames
    assert abs(r["acx"] - s["acx"]) < 0.05
    assert abs(r["slope"] - s["slope"]) < 1.0
    assert s["aniso"] > 1.2
    assert float(np.sqrt(np.mean((r["psd"] - s["psd"]) ** 2))) < 1.0
