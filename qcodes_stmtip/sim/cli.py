"""``stmtip sim …``: simulator subcommands (``dataset``, ``gallery``; others plug in).

:data:`SIM_SUBCOMMANDS` lists ``(module, function)`` pairs; each function is called as
``function(sim_subparsers)`` and adds its parser(s) with ``set_defaults(func=handler)``.
Append a line to add a subcommand (e.g. the controller's ``serve``). Only light imports
at module level: the simulator itself is imported inside the handlers.
"""

from __future__ import annotations

import argparse
import importlib

#: ``(module, function)`` pairs that add subcommands to the ``sim`` group.
SIM_SUBCOMMANDS: list[tuple[str, str]] = [
    ("qcodes_stmtip.sim.cli", "register_dataset"),
    ("qcodes_stmtip.sim.cli", "register_gallery"),
    ("qcodes_stmtip.sim.controller", "add_serve_command"),
]

_SURFACES = ("hsi100", "au111", "cu111")


def _parse_weights(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--weights item {item!r} must look like class=weight")
        try:
            out[name.strip()] = float(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"--weights value {value!r} is not a number") from exc
    return out


def _dataset(args: argparse.Namespace) -> int:
    from qcodes_stmtip.sim.dataset import generate_dataset

    path = generate_dataset(args.surface, args.count, args.out, seed=args.seed, balance=args.balance,
                            weights=args.weights, pixels=args.pixels, sessions=args.sessions,
                            progress=not args.quiet, tip_change_p=args.tip_change_p, jobs=args.jobs,
                            degrade=args.degrade)
    print(path)
    return 0


def _gallery(args: argparse.Namespace) -> int:
    from qcodes_stmtip.sim.gallery import save_gallery

    print(save_gallery(args.surface, args.out, seed=args.seed, per_class=args.per_class,
                       pixels=args.pixels))
    return 0


def register_dataset(sim: argparse._SubParsersAction) -> None:
    """Add ``stmtip sim dataset``."""
    p = sim.add_parser("dataset", help="write a labelled simulated data set (PNGs, .npy heights, labels.csv)",
                       description="Render COUNT simulated frames of a surface with known tip "
                       "states into OUT: one PNG and one .npy height map (m) per frame and a "
                       "labels.csv that `stmtip train` and `stmtip evaluate` read.")
    p.add_argument("--surface", required=True, choices=_SURFACES, help="simulated sample surface")
    p.add_argument("--count", required=True, type=int, help="number of frames")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data set)")
    p.add_argument("--balance", choices=("uniform", "natural"), default="uniform",
                   help="class balance: uniform, or the real data's frequencies")
    p.add_argument("--weights", type=_parse_weights, default=None,
                   help="explicit class weights, e.g. 'rows=2,generic_defect=1' (overrides --balance)")
    p.add_argument("--pixels", type=int, default=128, help="pixels per line (= lines)")
    p.add_argument("--sessions", type=int, default=None, help="simulated sample areas (default count/10)")
    p.add_argument("--tip-change-p", type=float, default=0.15,
                   help="H:Si(100): probability of a tip change in a frame (binary label)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (output is identical)")
    p.add_argument("--degrade", action=argparse.BooleanOptionalAction, default=None,
                   help="domain-randomise frames with degradations measured on real frames "
                        "(qcodes_stmtip.sim.degrade) [on for hsi100]")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_dataset)


def register_gallery(sim: argparse._SubParsersAction) -> None:
    """Add ``stmtip sim gallery``."""
    p = sim.add_parser("gallery", help="render every class of a surface side by side into a PNG",
                       description="Render --per-class simulated frames of every tip-state class "
                       "of a surface, one column per class, into one PNG: what each class looks like.")
    p.add_argument("--surface", required=True, choices=_SURFACES, help="simulated sample surface")
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--seed", type=int, default=0, help="random seed [0]")
    p.add_argument("--per-class", type=int, default=3, help="examples per class")
    p.add_argument("--pixels", type=int, default=160, help="pixels per line (= lines) [160]")
    p.set_defaults(func=_gallery)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sim`` group and every subcommand in :data:`SIM_SUBCOMMANDS`."""
    sim_parser = subparsers.add_parser("sim", help="simulated microscope: data sets, galleries, server",
                                       description="The simulated microscope: labelled data sets, "
                                       "class galleries and a Nanonis TCP server to point the driver at.")
    sim = sim_parser.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    sim_parser.set_defaults(func=lambda args: (sim_parser.print_help(), 2)[1])
    for module, function in SIM_SUBCOMMANDS:
        getattr(importlib.import_module(module), function)(sim)
