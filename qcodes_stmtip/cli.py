"""The ``stmtip`` command line: one subcommand per feature.

Each feature module listed in :data:`COMMAND_MODULES` exposes
``register(subparsers)``, which adds its subcommands and sets ``func`` on each
parser. Those modules must import only light dependencies at module level;
heavy work (TensorFlow, the simulator) is imported inside the handlers.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

#: Modules that contribute subcommands, in the order they appear in ``--help``.
COMMAND_MODULES: list[str] = [
    "qcodes_stmtip.io.cli",
    "qcodes_stmtip.classify.cli",
    "qcodes_stmtip.sim.cli",
    "qcodes_stmtip.demo",
    "qcodes_stmtip.labelling.cli",
    "qcodes_stmtip.conditioning.cli",
    "qcodes_stmtip.lab.cli",
]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr and exit status 1."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def quiet_tensorflow(verbose: bool) -> None:
    """Silence TensorFlow's C++, absl and oneDNN start-up lines unless ``verbose``.

    See :mod:`qcodes_stmtip.tensorflow_logging`; side effect: process environment.
    """
    from qcodes_stmtip.tensorflow_logging import configure

    configure(verbose)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``stmtip`` argument parser with every feature's subcommands."""
    from qcodes_stmtip import __version__

    parser = _Parser(
        prog="stmtip",
        description="Tip-state recognition and conditioning for STM, on QCoDeS.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's log lines and full tracebacks")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stmtip``; returns the process exit code.

    A user mistake (bad argument, missing file or run, unreachable controller, missing
    extra) is one line on stderr and exit status 1; ``--verbose`` re-raises it instead.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        result = func(args)
    except (ValueError, FileNotFoundError, ConnectionError, TimeoutError, ImportError) as exc:
        if args.verbose:
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"stmtip {args.command}: error: {text}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
