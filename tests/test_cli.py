"""The ``stmtip`` entry point."""

import subprocess
import sys

from qcodes_stmtip.cli import build_parser, main


def test_help_lists_every_registered_command() -> None:
    from qcodes_stmtip.cli import COMMAND_MODULES

    parser = build_parser()
    help_text = parser.format_help()
    assert "stmtip" in help_text
    assert len(COMMAND_MODULES) == len(set(COMMAND_MODULES))


def test_no_command_prints_help_and_returns_2(capsys) -> None:
    assert main([]) == 2
    assert "usage: stmtip" in capsys.readouterr().out


def test_import_is_light() -> None:
    """Importing the package and the CLI must not pull in TensorFlow or Keras."""
    code = (
        "import sys, qcodes_stmtip, qcodes_stmtip.cli;"
        "qcodes_stmtip.cli.build_parser();"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
