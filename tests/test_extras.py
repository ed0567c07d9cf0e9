"""Optional extras: the base install has no heavy stack; a missing extra names its install."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from qcodes_stmtip.extras import EXTRAS, MissingExtraError, install_hint, require

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras", "pymeasure", "pyvisa-sim", "pyvisa-py", "spym", "hvplot", "distributed",
         "pyarrow")

#: Run ``code`` with the heavy packages made unimportable (as if never installed).
BLOCK = ("import sys\n"
         "for m in ('tensorflow', 'keras', 'pymeasure', 'pyvisa_sim', 'spym'):\n"
         "    sys.modules[m] = None\n")


def _run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True,
                          timeout=240, cwd=REPO)


def test_pyproject_base_dependencies_have_no_heavy_stack() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    assert not [name for name in HEAVY if name in base]
    extras = project["optional-dependencies"]
    assert {"classify", "lab", "io", "label", "archive", "all", "test"} <= set(extras)
    assert any(d.startswith("tensorflow") for d in extras["classify"])
    assert {"pymeasure", "pyvisa-py", "pyserial", "pyvisa-sim"} <= {
        d.split(">")[0].split("=")[0] for d in extras["lab"]}
    assert extras["all"] == ["qcodes-stmtip[classify,lab,io,label,archive]"]
    assert {"dask", "pyarrow"} <= {d.split("[")[0].split(">")[0] for d in extras["archive"]}
    assert set(EXTRAS) == set(extras) - {"all", "test"}
    for needed in ("scikit-learn", "skops", "jsonschema"):
        assert needed in base


def test_require_names_the_pip_install_of_the_extra() -> None:
    with pytest.raises(MissingExtraError, match=r'pip install "qcodes-stmtip\[io\]"') as info:
        require("no_such_module_qcodes_stmtip", "io", "reading a file")
    assert isinstance(info.value, ImportError) and "reading a file needs" in str(info.value)
    assert require("json", "io", "x").__name__ == "json"
    with pytest.raises(ValueError, match="unknown extra"):
        install_hint("gpu")


def test_without_the_classify_extra_keras_raises_an_import_error_naming_it() -> None:
    out = _run_blocked("import qcodes_stmtip.classify.keras_backend\n")
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert "MissingExtraError" in last and 'pip install "qcodes-stmtip[classify]"' in last


def test_base_install_runs_the_driver_simulator_and_shipped_feature_bundle() -> None:
    code = (
        "import numpy as np\n"
        "from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM\n"
        "from qcodes_stmtip.sim.controller import serve_simulator\n"
        "from qcodes_stmtip.classify.bundle import default_bundle_path\n"
        "from qcodes_stmtip.monitor import TipStateMonitor\n"
        "with serve_simulator('hsi100', seed=1, time_acceleration=1000.0) as srv:\n"
        "    stm = NanonisSTM('stm', port=srv.port)\n"
        "    stm.pixels(32); stm.lines(32)\n"
        "    image = stm.scan_image(); stm.close()\n"
        "with TipStateMonitor(default_bundle_path('hsi100')) as monitor:\n"
        "    monitor.submit(0, image); print('state', monitor.result(0).state)\n"
        "print('heavy', [m for m in ('tensorflow', 'keras') if sys.modules.get(m)])\n"
    )
    out = _run_blocked(code)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "heavy []" in out.stdout and "state " in out.stdout


def test_without_the_lab_extra_the_positioner_names_it() -> None:
    code = ("from qcodes_stmtip.lab.pymeasure_bridge import _import_class\n"
            "_import_class('pymeasure.instruments.attocube.ANC300Controller')\n")
    out = _run_blocked(code)
    assert 'pip install "qcodes-stmtip[lab]"' in out.stderr.strip().splitlines()[-1]


def test_without_the_io_extra_an_sm4_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "x.sm4"
    path.write_bytes(b"\0" * 64)
    out = _run_blocked(f"from qcodes_stmtip.io import read_frame\nread_frame({str(path)!r})\n")
    assert 'pip install "qcodes-stmtip[io]"' in out.stderr.strip().splitlines()[-1]
