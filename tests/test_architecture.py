"""The package's import structure (tools/check_imports.py, docs/architecture.md): no import
cycles, and hardware-side code never imports the simulator."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "check_imports.py"


def _checker():
    spec = importlib.util.spec_from_file_location("check_imports", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_package_has_no_import_cycles_and_no_hardware_side_simulator_imports() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "qcodes_stmtip"
    for name, text in {"__init__.py": "", "sim/__init__.py": "", "classify/__init__.py": "",
                       "monitor/__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_finds_cycles_and_simulator_imports(tmp_path: Path) -> None:
    check = _checker()
    root = _package(tmp_path, {
        "sim/frames.py": "X = 1\n",
        "a.py": "from qcodes_stmtip import b\n",
        "b.py": "def f():\n    from . import a  # lazy, still a cycle\n",
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from qcodes_stmtip import d\n",
        "d.py": "import qcodes_stmtip.c\n",
        "classify/direct.py": "from ..sim.frames import X\n",
        "classify/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                             "    from qcodes_stmtip.sim import frames\n",
        "monitor/indirect.py": "from qcodes_stmtip.e import Y\n",
        "e.py": "from qcodes_stmtip.sim import frames\nY = 2\n",
        "monitor/clean.py": "from qcodes_stmtip.classify import typed as _\n",
    })
    found = check.problems(root)
    text = "\n".join(found)
    assert "import cycle between ['qcodes_stmtip.a', 'qcodes_stmtip.b']" in text
    assert "qcodes_stmtip.c'" not in text  # a TYPE_CHECKING import never runs: no cycle
    assert "hardware-side qcodes_stmtip.classify.direct imports the simulator qcodes_stmtip.sim.frames" in text
    assert "hardware-side qcodes_stmtip.classify.typed imports the simulator" in text  # types count
    assert ("hardware-side qcodes_stmtip.monitor.indirect loads the simulator through "
            "qcodes_stmtip.monitor.indirect -> qcodes_stmtip.e -> qcodes_stmtip.sim.frames") in text
    assert "monitor.clean" not in text
    assert len(found) == 4, text
    assert check.main([str(root)]) == 1


@pytest.mark.parametrize("doc", ["docs/architecture.md"])
def test_the_architecture_note_is_short_and_names_the_rules(doc: str) -> None:
    text = (ROOT / doc).read_text()
    assert len(text.splitlines()) <= 80
    assert "tools/check_imports.py" in text and "qcodes_stmtip.taxonomy" in text


def test_the_package_guards_behaviour_with_typed_errors_not_asserts() -> None:
    """Issue 26 class 6: ``python -O`` drops asserts, so none may guard behaviour."""
    import ast

    root = Path(__file__).resolve().parents[1] / "qcodes_stmtip"
    found = [f"{path.relative_to(root.parent)}:{node.lineno}"
             for path in sorted(root.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Assert)]
    assert found == [], f"assert statements in the package (use a typed error): {found}"
