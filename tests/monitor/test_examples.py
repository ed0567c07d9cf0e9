"""examples/monitor_tip_state.py runs both idioms end to end against the simulator."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("keras")
from qcodes.instrument import Instrument  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("mode", ["measurement", "dond"])
def test_example_stores_a_state_per_frame(tiny_bundle, tmp_path, capsys, mode) -> None:
    spec = importlib.util.spec_from_file_location("monitor_example", REPO / "examples" / "monitor_tip_state.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    try:
        assert example.main(["--bundle", str(tiny_bundle), "--frames", "2", "--mode", mode,
                             "--out", str(tmp_path)]) == 0
    finally:
        Instrument.close_all()
    out = capsys.readouterr().out
    assert "tensorflow-fused-tf.function on CPU" in out
    states = [line.split("tip_state ")[1] for line in out.splitlines() if "tip_state " in line]
    classes = {"dimers_asymmetries", "individual_atoms", "rows", "generic_defect"}
    assert len(states) == 2 and set(states) <= classes  # tiny bundle: thresholds 0, never uncertain
    assert "frames {'frame_index': 2, 'stm_scan_line': 64, 'stm_scan_pixel': 64}" in out
    if mode == "dond":  # each frame at its own place
        assert "centres x [-1200.0, -900.0] nm" in out
