"""The README stays short, and its first-frames walkthrough runs (against the simulator)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from qcodes.instrument import Instrument

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _block(language: str, containing: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)
    block = next(b for b in blocks if containing in b)
    return "\n".join(line[3:] if line.startswith("   ") else line for line in block.splitlines())


def test_readme_is_short_and_links_every_guide() -> None:
    assert len(README.splitlines()) <= 200
    for guide in ("driver", "monitor", "conditioning", "classifier", "labelling", "simulator",
                  "readers", "lab", "troubleshooting", "architecture"):
        assert f"(docs/{guide}.md)" in README
        assert (REPO / "docs" / f"{guide}.md").is_file()
    assert "make demo" in README and "make test" in README and "pip install" in README


def test_first_frames_walkthrough_runs_against_the_simulator(tmp_path, monkeypatch) -> None:
    """Station YAML → dond with the monitor over three positions → netCDF → reload → good frames."""
    from PIL import Image

    from qcodes_stmtip.sim.controller import serve_simulator

    yaml = _block("yaml", "NanonisSTM")
    code = _block("python", "load_instrument")
    monkeypatch.chdir(tmp_path)
    with serve_simulator("hsi100", seed=1, time_acceleration=2000.0) as server:
        (tmp_path / "stm.station.yaml").write_text(
            yaml.replace("192.168.1.10", "127.0.0.1").replace("port: 6501", f"port: {server.port}"))
        code = code.replace("stm.pixels(128); stm.lines(128)", "stm.pixels(32); stm.lines(32)")
        scope: dict = {}
        try:
            exec(compile(code, "README.md", "exec"), scope)
        finally:
            Instrument.close_all()
    xds = scope["xds"]
    assert xds["stm_scan_image"].shape == (3, 32, 32)
    np.testing.assert_allclose(xds["stm_frame_centre_x"].values, [0.0, 50e-9, 0.0], atol=1e-12)
    assert set(xds["tip_quality"].values) <= {"good", "bad", "uncertain", "unclassified"}
    back = scope["reloaded"]  # from the netCDF file
    np.testing.assert_array_equal(back["stm_scan_image"].values, xds["stm_scan_image"].values)
    assert list(back["tip_state"].values) == list(xds["tip_state"].values)
    assert scope["good"].sizes["frame_index"] == int((xds["tip_quality"] == "good").sum())
    with Image.open(tmp_path / "frames.png") as gallery:
        assert gallery.format == "PNG" and gallery.size[0] > 400
