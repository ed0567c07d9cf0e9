"""``stmtip condition`` (run a conditioning experiment on a controller) and ``stmtip report``.

Only argparse at module level; the driver, the monitor (TensorFlow) and matplotlib are
imported inside the handlers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]

DEFAULT_DB = Path("out/conditioning/conditioning.db")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _floats(count: int):
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated numbers, got {text!r}") from None
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated numbers, got {text!r}")
        return values
    return parse


def _check_bundle(model: str, surface: str) -> None:
    """Refuse a missing bundle, or one for another surface, before anything connects."""
    from qcodes_stmtip.classify.bundle import read_manifest

    if not Path(model).is_dir():
        raise FileNotFoundError(f"--model {model}: no such bundle directory")
    bundle_surface = read_manifest(model)["surface"]
    if bundle_surface != surface:
        raise ValueError(f"--model {model} is a bundle for {bundle_surface!r}, not --surface "
                         f"{surface!r}")


def _condition(args: argparse.Namespace) -> int:
    from qcodes.dataset import initialise_or_create_database_at, load_or_create_experiment

    from qcodes_stmtip.conditioning.envelope import ConditioningLimits
    from qcodes_stmtip.conditioning.experiment import ConditioningExperiment, Target
    from qcodes_stmtip.conditioning.policy import EscalatingPolicy, RandomPolicy
    from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
    from qcodes_stmtip.monitor import TipStateMonitor

    _check_bundle(args.model, args.surface)
    limits = ConditioningLimits(min_site_distance_m=args.min_site_distance, max_actions=args.max_actions,
                                max_actions_per_area=args.max_actions_per_area,
                                max_current_A=args.max_current, z_range_m=tuple(args.z_range))
    target_kwargs = {"min_confidence": args.min_confidence, "consecutive": args.consecutive}
    if args.target:
        target_kwargs["classes"] = frozenset(c.strip() for c in args.target.split(",") if c.strip())
    target = Target.for_surface(args.surface, **target_kwargs)
    policy = EscalatingPolicy() if args.policy == "escalating" else RandomPolicy(seed=args.seed)
    bounds = None
    if args.bounds:
        x0, x1, y0, y1 = args.bounds
        bounds = ((x0, x1), (y0, y1))
    db = Path(args.db)
    db.parent.mkdir(parents=True, exist_ok=True)
    initialise_or_create_database_at(db)
    exp = load_or_create_experiment("tip_conditioning", sample_name=args.surface)
    stm = NanonisSTM("stm", address=args.host, port=args.port, timeout=args.timeout)
    monitor = None
    try:
        print(f"connected: {stm.get_idn()['model']} at {args.host}:{args.port}; "
              f"bias {stm.bias():.3g} V, setpoint {stm.setpoint_current():.3g} A, "
              f"current {stm.current():.3g} A, z {stm.z_position():.3g} m", flush=True)
        stm.refresh_geometry()
        if args.pixels:
            stm.pixels(args.pixels)
            stm.lines(args.pixels)
        monitor = TipStateMonitor(args.model, surface=args.surface)
        experiment = ConditioningExperiment(
            stm, monitor, policy, surface=args.surface, target=target, limits=limits,
            frame_size_m=args.frame_size, area_bounds=bounds, area_spacing_m=args.area_spacing,
            max_frames=args.max_frames, dry_run=args.dry_run, seed=args.seed,
            echo=lambda line: print(line, flush=True), early_abort=args.early_abort,
            watch_every_lines=args.watch_every)
        if args.resume:
            experiment.resume_from(args.resume)
        try:
            result = experiment.run(exp)
        except KeyboardInterrupt:  # the experiment withdrew the tip and stored the outcome
            print("interrupted: tip withdrawn; continue with --resume RUN_ID", flush=True)
            return 130
    finally:
        if monitor is not None:
            monitor.close()
        stm.close()
    print(f"database: {db.resolve()}  run {result.run_id}")
    if args.report:
        from qcodes_stmtip.conditioning.report import write_report

        files = write_report(result.run_id, Path(args.report))
        print(f"report: {files.html}")
    return 0 if result.outcome in ("good_tip", "dry_run") else 3


def _report(args: argparse.Namespace) -> int:
    from qcodes.dataset import initialise_or_create_database_at

    from qcodes_stmtip.conditioning.report import summary_text, write_report

    db = Path(args.db)
    if not db.is_file():
        raise FileNotFoundError(f"--db {db}: no such database")
    initialise_or_create_database_at(db)
    files = write_report(args.run_id, Path(args.out))
    print(summary_text(files.data))
    for path in (files.timeline, files.gallery, files.summary, files.html):
        print(f"wrote {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stmtip condition`` and ``stmtip report``."""
    p = subparsers.add_parser(
        "condition", help="condition the tip of a Nanonis STM until it is good (scan, classify, act)",
        description="Closed-loop tip conditioning on a Nanonis controller: scan, classify with a "
                    "model bundle, and pulse/indent/move until the tip is good. --dry-run prints "
                    "the actions it would take and sends nothing that touches the tip.")
    p.add_argument("--host", default="127.0.0.1", help="controller host [127.0.0.1]")
    p.add_argument("--port", type=int, default=6501, help="controller TCP port [6501]")
    p.add_argument("--timeout", type=float, default=10.0, help="request timeout, s [10]")
    p.add_argument("--surface", required=True, choices=("hsi100", "au111", "cu111"),
                   help="sample surface; the bundle must be for it")
    p.add_argument("--model", required=True, help="model bundle directory (stmtip classify ...)")
    p.add_argument("--db", default=str(DEFAULT_DB), help=f"QCoDeS database [{DEFAULT_DB}]")
    p.add_argument("--policy", choices=("escalating", "random"), default="escalating",
                   help="escalating: pulse, then indent, then move; random: a seeded draw [escalating]")
    p.add_argument("--dry-run", action="store_true",
                   help="scan and classify, print the action it would take, send no tip action")
    p.add_argument("--resume", type=_positive_int, default=None, metavar="RUN_ID",
                   help="continue the experiment of this run (after a crash)")
    p.add_argument("--target", default="", help="comma-separated acceptable states [surface default]")
    p.add_argument("--min-confidence", type=float, default=0.5, help="least probability [0.5]")
    p.add_argument("--consecutive", type=_positive_int, default=2, help="good frames in a row [2]")
    p.add_argument("--max-actions", type=_positive_int, default=40, help="total tip actions [40]")
    p.add_argument("--max-actions-per-area", type=_positive_int, default=6,
                   help="tip actions per area before moving [6]")
    p.add_argument("--min-site-distance", type=float, default=10e-9,
                   help="least distance between indentation sites, m [1e-8]")
    p.add_argument("--max-current", type=float, default=10e-9,
                   help="a |current| reading above this withdraws, A [1e-8]")
    p.add_argument("--z-range", type=_floats(2), default=(-150e-9, 150e-9), metavar="LOW,HIGH",
                   help="a Z reading outside withdraws, m [-1.5e-7,1.5e-7]")
    p.add_argument("--frame-size", type=float, default=None, help="frame side, m [controller's]")
    p.add_argument("--pixels", type=int, default=None, help="pixels = lines per frame [controller's]")
    p.add_argument("--bounds", type=_floats(4), default=None, metavar="X0,X1,Y0,Y1",
                   help="where frames and sites may lie, m [the safety envelope's scan area]")
    p.add_argument("--area-spacing", type=float, default=300e-9, help="fresh-area spacing, m [3e-7]")
    p.add_argument("--max-frames", type=_positive_int, default=200, help="stop after N frames [200]")
    p.add_argument("--seed", type=int, default=0, help="seed of the random policy [0]")
    p.add_argument("--early-abort", action="store_true",
                   help="watch each scan and stop it on a confidently bad partial frame or a tip change")
    p.add_argument("--watch-every", type=_positive_int, default=None, metavar="LINES",
                   help="classify the partial frame every LINES lines [8 with --early-abort; "
                        "without it, watch and record only]")
    p.add_argument("--report", default=None, metavar="DIR", help="write the report to DIR at the end")
    p.set_defaults(func=_condition)

    r = subparsers.add_parser(
        "report", help="timeline, frame gallery, summary and HTML page of a conditioning run",
        description="Write the report of a conditioning experiment (PNG + self-contained HTML).")
    r.add_argument("run_id", type=_positive_int, metavar="RUN_ID", help="run id of the experiment")
    r.add_argument("--db", default=str(DEFAULT_DB), help=f"QCoDeS database [{DEFAULT_DB}]")
    r.add_argument("--out", default="out/report", help="output folder [out/report]")
    r.set_defaults(func=_report)
