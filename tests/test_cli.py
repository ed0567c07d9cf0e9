"""The ``stmtip`` entry point."""

import subprocess
import sys

import pytest

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


def _subparsers(parser, path=("stmtip",)):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _subparsers(sub, (*path, name))


def test_every_command_has_a_description_and_every_option_a_help() -> None:
    missing = []
    for path, sub in _subparsers(build_parser()):
        if not sub.description:
            missing.append(f"{' '.join(path)}: no description")
        elif "``" in sub.description or ":class:" in sub.description:
            missing.append(f"{' '.join(path)}: reStructuredText in the description")
        for action in sub._actions:
            if action.dest != "help" and not action.help and action.option_strings:
                missing.append(f"{' '.join(path)} {action.option_strings[0]}: no help")
    assert not missing, "\n".join(missing)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_line_error(capsys, argv: list[str], *needles: str) -> str:
    import pytest

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert len(err.splitlines()) == 1 and err.startswith("stmtip"), err
    for needle in needles:
        assert needle in err, err
    if "Traceback" in err:
        pytest.fail(err)
    return err


def test_user_mistakes_are_one_line_errors_with_status_1(tmp_path, capsys) -> None:
    from qcodes.dataset import initialise_or_create_database_at

    db = tmp_path / "empty.db"
    initialise_or_create_database_at(db)
    _one_line_error(capsys, ["report", "7", "--db", str(db)], "run 7: no such run")
    _one_line_error(capsys, ["report", "x", "--db", str(db)], "integer >= 1")
    _one_line_error(capsys, ["report", "1", "--db", str(tmp_path / "none.db")], "no such database")
    _one_line_error(capsys, ["condition", "--surface", "wrong", "--model", "m"], "--surface")
    _one_line_error(capsys, ["info"], "FILE")
    _one_line_error(capsys, ["sim", "gallery", "--surface", "hsi100"], "--out")


def test_condition_refuses_a_bundle_of_another_surface_before_connecting(capsys) -> None:
    from qcodes_stmtip.classify.bundle import default_bundle_path

    port = _free_port()  # nothing listens: reaching the driver would name the address
    err = _one_line_error(capsys, ["condition", "--surface", "hsi100", "--port", str(port),
                                   "--model", str(default_bundle_path("au111"))],
                          "bundle for 'au111', not --surface 'hsi100'")
    assert str(port) not in err
    err = _one_line_error(capsys, ["condition", "--surface", "hsi100", "--port", str(port),
                                   "--timeout", "1", "--model", str(default_bundle_path("hsi100"))],
                          f"127.0.0.1:{port}")


def test_classifier_commands_check_paths_before_tensorflow_loads(tmp_path) -> None:
    code = (
        "import sys\n"
        "from qcodes_stmtip.cli import main\n"
        f"d = {str(tmp_path)!r}\n"
        "codes = [main(['train', '--surface', 'hsi100', '--data', d + '/none', '--out', d + '/b']),\n"
        "         main(['evaluate', '--model', d + '/none', '--data', d]),\n"
        "         main(['classify', '--surface', 'hsi100', '--output', d + '/o.csv', '--quiet', d + '/x.png'])]\n"
        "print(codes, [m for m in ('tensorflow', 'keras') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    # classify goes on past a file it cannot read: its row says why (issue 25)
    assert out.stdout.strip().splitlines()[-1] == "[1, 1, 0] []", out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("stmtip ") for line in lines), lines
    assert "--data" in lines[0] and "--model" in lines[1]
    row = (tmp_path / "o.csv").read_text().splitlines()[1]
    assert "x.png" in row and "unreadable,no such file" in row


def test_tensorflow_start_up_lines_are_off_unless_verbose() -> None:
    """The oneDNN and absl start-up notices do not reach the user (TensorFlow 2.21 prints them
    whatever TF_CPP_MIN_LOG_LEVEL says; TF_ENABLE_ONEDNN_OPTS=1 forces the oneDNN notice on
    every CPU, as it is by default on Intel ones)."""
    import os
    import re

    pytest.importorskip("tensorflow", reason="needs the [classify] extra")
    code = ("import os\nfrom qcodes_stmtip.cli import quiet_tensorflow\n"
            "quiet_tensorflow(False)\n"
            "from qcodes_stmtip.classify.keras_backend import keras\n"
            "import tensorflow as tf\ntf.constant(1)\n"
            "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["TF_ENABLE_ONEDNN_OPTS"] = "1"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "3", out.stderr
    noise = [line for line in out.stderr.splitlines() if re.search(r"absl|oneDNN|^I\d{4} ", line)]
    assert noise == [], noise
    assert build_parser().parse_args(["--verbose", "info", "x"]).verbose


def test_examples_with_no_controller_print_one_line(capsys) -> None:
    import runpy
    from pathlib import Path

    port = _free_port()
    example = Path(__file__).resolve().parents[1] / "examples" / "measure_frames.py"
    module = runpy.run_path(str(example))
    assert module["main"](["--host", "127.0.0.1", "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"127.0.0.1:{port}" in err
