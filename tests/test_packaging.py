"""The wheel works outside the checkout, the lab's simulation YAMLs included."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_runs_the_simulated_lab_outside_the_checkout(tmp_path: Path) -> None:
    src = tmp_path / "src"  # build from a copy: nothing is written into the checkout
    shutil.copytree(REPO / "qcodes_stmtip", src / "qcodes_stmtip",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("qcodes_stmtip-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "qcodes_stmtip/lab/sim_yaml/attocube_anc300.sim.yaml" in names
    assert "qcodes_stmtip/lab/sim_yaml/simulated_lab.station.yaml" in names
    assert any(n.startswith("qcodes_stmtip/classify/bundles/hsi100/") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    run = tmp_path / "elsewhere"
    run.mkdir()
    code = (f"import sys; sys.path.insert(0, {str(site)!r})\n"
            "import qcodes_stmtip\n"
            f"assert qcodes_stmtip.__file__.startswith({str(site)!r}), qcodes_stmtip.__file__\n"
            "from qcodes_stmtip.cli import main\n"
            "sys.exit(main(['lab', 'demo', '--pixels', '32']))\n")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=run)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "pulse 2 V" in out.stdout and "temperature:" in out.stdout
