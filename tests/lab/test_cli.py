"""``stmtip lab demo`` runs the whole simulated lab end to end."""

from __future__ import annotations

import re
import subprocess
import sys

from qcodes_stmtip.cli import main


def test_lab_demo_moves_to_a_fresh_area(capsys) -> None:
    assert main(["lab", "demo", "--surface", "au111", "--seed", "2", "--pixels", "64"]) == 0
    out = capsys.readouterr().out
    assert "temperature: 100.000 K (thermometer_A)" in out
    same = float(re.search(r"same area imaged twice: similarity ([+-][0-9.]+)", out).group(1))
    new = float(re.search(r"new area vs old: similarity ([+-][0-9.]+)", out).group(1))
    assert same > 0.8 and abs(new) < same - 0.5
    assert "moved 20 steps X+ on ANC300 axis x (re-approached: True)" in out
    assert "pulse 2 V for 0.001 s fired" in out


def test_lab_demo_rejects_bad_arguments(capsys) -> None:
    assert main(["lab", "demo", "--steps", "0"]) == 1
    assert "--steps must be >= 1" in capsys.readouterr().err
    assert main(["lab", "demo", "--station", "/nonexistent/lab.yaml"]) == 1
    assert main(["lab"]) == 2


def test_the_parser_stays_free_of_tensorflow_and_pymeasure() -> None:
    code = (
        "import sys; from qcodes_stmtip.cli import build_parser; build_parser(); "
        "import qcodes_stmtip.lab.positioner, qcodes_stmtip.lab.pulse_generator, "
        "qcodes_stmtip.lab.thermometer; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'pymeasure') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
