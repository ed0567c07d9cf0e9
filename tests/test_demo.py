"""``stmtip demo``: simulator → driver → QCoDeS database, read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qcodes.dataset import initialise_or_create_database_at, load_by_run_spec

from qcodes_stmtip.cli import main
from qcodes_stmtip.demo import run_demo
from qcodes_stmtip.sim.classes import CLASSES


def test_run_demo_stores_frames_with_ground_truth(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_demo(tmp_path / "demo", frames=2, pixels=32, echo=lines.append)
    assert result.database == (tmp_path / "demo" / "demo.db").resolve()
    assert result.database.is_file()
    assert len(result.run_ids) == 2 and len(set(result.run_ids)) == 2
    text = "\n".join(lines)
    assert str(result.database) in text and "run ids:" in text

    initialise_or_create_database_at(result.database)
    images = []
    for frame in result.frames:
        dataset = load_by_run_spec(captured_run_id=frame.run_id)
        xr = dataset.to_xarray_dataset()
        image = xr["stm_demo_scan_image"]
        assert image.dims == ("stm_demo_scan_y", "stm_demo_scan_x")
        assert image.shape == (32, 32) and image.attrs["units"] == "m"
        assert np.isfinite(image.values).all()
        # x setpoints are centred on the frame centre of that run
        assert float(xr["stm_demo_scan_x"].mean()) == pytest.approx(frame.centre_x_m, abs=1e-12)
        assert dataset.metadata["sim_true_label"] in CLASSES["hsi100"]
        assert dataset.metadata["sim_true_label"] == frame.true_label
        assert tuple(json.loads(dataset.metadata["sim_tip_change_lines"])) == frame.tip_change_lines
        assert frame.z_rms_m == pytest.approx(float(image.values.std()), rel=1e-6)
        images.append(image.values)
    # frames 200 nm apart image different areas
    a, b = images[0] - images[0].mean(), images[1] - images[1].mean()
    assert np.abs(a - b).max() > 20e-12


def test_run_demo_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frames"):
        run_demo(tmp_path, frames=0)
    with pytest.raises(ValueError, match="surface"):
        run_demo(tmp_path, surface="graphite")


def test_cli_demo_prints_database_and_returns_0(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert main(["demo", "--out", str(out), "--frames", "1", "--pixels", "16"]) == 0
    printed = capsys.readouterr().out
    assert str((out / "demo.db").resolve()) in printed
    assert (out / "demo.db").is_file()


def test_demo_module_import_is_light() -> None:
    code = (
        "import sys, qcodes_stmtip.demo, qcodes_stmtip.drivers.nanonis_stm;"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
