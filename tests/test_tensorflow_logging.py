"""TensorFlow's start-up lines: filtered from descriptor 2 unless the user asks for them.

These tests write TensorFlow-shaped lines from a module of their own, so they test the
project's filter, not TensorFlow's wording (tests/test_cli.py checks TensorFlow itself).
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qcodes_stmtip.tensorflow_logging import drop_chatter

CHATTER = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
           b"I0000 00:00:1796673504.334165    3545 port.cc:153] oneDNN custom operations are on.\n"
           b"W0000 00:00:1796673504.4    3545 cpu_feature_guard.cc:227] This binary is optimized.\n"
           b"To enable the following instructions: AVX2 FMA, in other operations, rebuild "
           b"TensorFlow with the appropriate compiler flags.\n")
KEPT = (b"E0000 00:00:1796673504.5    3545 cuda_dnn.cc:1] a real error\n"
        b"plain text from the import\n")


def test_drop_chatter_keeps_errors_and_other_text() -> None:
    assert drop_chatter(CHATTER + KEPT) == KEPT
    assert drop_chatter(b"") == b""
    assert drop_chatter(b"no newline at the end") == b"no newline at the end"


def _run_import(tmp_path: Path, level: str | None) -> subprocess.CompletedProcess[bytes]:
    """Import a module that writes CHATTER + KEPT to descriptor 2, through import_quietly."""
    (tmp_path / "noisy_module.py").write_text(textwrap.dedent(f"""
        import os
        os.write(2, {CHATTER + KEPT!r})
        VALUE = 42
    """))
    code = ("import sys\nfrom qcodes_stmtip.tensorflow_logging import import_quietly\n"
            "m = import_quietly('noisy_module')\nassert m.VALUE == 42\n"
            "assert import_quietly('noisy_module') is m\nprint('done')\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, env=env)


def test_import_quietly_drops_start_up_lines_only(tmp_path: Path) -> None:
    out = _run_import(tmp_path, level=None)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == b"done"
    assert out.stderr == KEPT


@pytest.mark.parametrize("level", ["0", "1"])
def test_verbose_level_shows_every_line(tmp_path: Path, level: str) -> None:
    out = _run_import(tmp_path, level=level)
    assert out.returncode == 0, out.stderr
    assert out.stderr == CHATTER + KEPT


def test_a_failing_import_still_shows_its_error_and_restores_stderr(tmp_path: Path) -> None:
    (tmp_path / "broken_module.py").write_text(
        "import os\nos.write(2, b'I0000 00:00:1.0  1 x.cc:1] chatter\\nbroken: why\\n')\n"
        "raise RuntimeError('cannot load')\n")
    code = ("import sys\nfrom qcodes_stmtip.tensorflow_logging import import_quietly\n"
            "try:\n    import_quietly('broken_module')\nexcept RuntimeError as e:\n"
            "    print('raised', e)\nsys.stderr.write('after\\n')\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, env=env)
    assert out.stdout.strip() == b"raised cannot load"
    assert out.stderr == b"broken: why\nafter\n"


def test_cli_verbose_sets_level_zero_and_quiet_three(monkeypatch) -> None:
    from qcodes_stmtip.cli import quiet_tensorflow

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    quiet_tensorflow(True)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    quiet_tensorflow(False)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")  # the user's own choice wins
    quiet_tensorflow(False)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"


def test_a_blocked_module_still_raises_import_error() -> None:
    """``sys.modules[name] = None`` (how the extras tests hide TensorFlow) raises ImportError."""
    import importlib

    from qcodes_stmtip.tensorflow_logging import import_quietly

    sys.modules["stmtip_blocked_module_xyz"] = None  # type: ignore[assignment]
    try:
        with pytest.raises(ImportError):
            import_quietly("stmtip_blocked_module_xyz")
        with pytest.raises(ImportError):
            importlib.import_module("stmtip_blocked_module_xyz")
    finally:
        del sys.modules["stmtip_blocked_module_xyz"]
