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


def build_parser() -> argparse.ArgumentParser:
    """Return the ``stmtip`` argument parser with every feature's subcommands."""
    from qcodes_stmtip import __version__

    parser = argparse.ArgumentParser(
        prog="stmtip",
        description="Tip-state recognition and conditioning for STM, on QCoDeS.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stmtip``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        result = func(args)
    except (ValueError, FileNotFoundError, ConnectionError, TimeoutError) as exc:
        print(f"stmtip {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
