"""``stmtip demo``: the simulated microscope, the QCoDeS driver and a QCoDeS database, end to end.

:func:`run_demo` starts the simulated Nanonis controller on loopback (H:Si(100) by
default, time-accelerated), drives it through
:class:`~qcodes_stmtip.drivers.nanonis_stm.NanonisSTM`, stores one QCoDeS run per frame
in ``<out_dir>/demo.db`` and prints the database path, the run ids and a one-screen
summary. The simulator's ground truth (tip state, tip-change lines) is stored as run
metadata — a real microscope could not provide it; it is there to judge the classifier
that will run on these frames later. Interim main job until tip conditioning lands.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DemoFrame", "DemoResult", "register", "run_demo"]

#: Simulated seconds per wall second: a 128-line frame (0.1 s per line and direction,
#: 25.6 s simulated) takes ~50 ms of wall time plus rendering.
DEFAULT_TIME_ACCELERATION = 500.0
#: Spacing (m) between the frame centres of successive demo frames: fresh areas.
FRAME_STEP_M = 200e-9


@dataclass(frozen=True)
class DemoFrame:
    """Summary of one stored frame (heights in metres)."""

    run_id: int
    centre_x_m: float
    centre_y_m: float
    true_label: str
    tip_change_lines: tuple[int, ...]
    z_range_m: float
    z_rms_m: float
    nan_fraction: float


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote and what it stored."""

    database: Path
    run_ids: tuple[int, ...]
    frames: tuple[DemoFrame, ...] = field(default_factory=tuple)


def run_demo(
    out_dir: Path | str = Path("out/demo"),
    *,
    frames: int = 4,
    pixels: int = 128,
    frame_size_m: float = 20e-9,
    surface: str = "hsi100",
    seed: int = 0,
    time_acceleration: float = DEFAULT_TIME_ACCELERATION,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Acquire ``frames`` simulated frames through the driver into ``<out_dir>/demo.db``.

    Side effects: creates ``out_dir``, starts (and stops) a simulator on a free loopback
    port, appends runs to the database, prints via ``echo``. Returns what was stored.
    """
    import numpy as np
    from qcodes.dataset import (
        Measurement,
        initialise_or_create_database_at,
        load_or_create_experiment,
    )

    from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
    from qcodes_stmtip.sim.classes import SURFACES
    from qcodes_stmtip.sim.controller import serve_simulator

    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be an integer >= 1, got {frames!r}")
    if surface not in SURFACES:
        raise ValueError(f"surface must be one of {SURFACES}, got {surface!r}")
    if not (isinstance(frame_size_m, int | float) and math.isfinite(frame_size_m)
            and frame_size_m > 0):
        raise ValueError(f"frame_size_m must be a positive length in metres, got {frame_size_m!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    database = (out / "demo.db").resolve()
    initialise_or_create_database_at(database)
    experiment = load_or_create_experiment("stmtip_demo", sample_name=f"simulated {surface}")

    server = serve_simulator(surface=surface, seed=seed, time_acceleration=time_acceleration)
    stm = NanonisSTM("stm_demo", address="127.0.0.1", port=server.port)
    stored: list[DemoFrame] = []
    try:
        stm.pixels(pixels)
        stm.lines(pixels)
        echo(f"simulated Nanonis controller ({surface}, seed {seed}) on 127.0.0.1:{server.port}; "
             f"{stm.get_idn()['model']}")
        for index in range(frames):
            cx = (index % 5) * FRAME_STEP_M
            cy = (index // 5) * FRAME_STEP_M
            stm.set_frame(cx, cy, frame_size_m, frame_size_m, 0.0)
            meas = Measurement(exp=experiment, name=f"demo_frame_{index}")
            meas.register_parameter(stm.scan_image)
            with meas.run() as saver:
                image = stm.scan_image()
                saver.add_result((stm.scan_image, image))
                truth = server.microscope.ground_truth()
                label = truth.frame_label or ""
                changes = tuple(truth.tip_change_lines or ())
                saver.dataset.add_metadata("sim_surface", surface)
                saver.dataset.add_metadata("sim_true_label", label)
                saver.dataset.add_metadata("sim_tip_change_lines", json.dumps(list(changes)))
            finite = image[np.isfinite(image)]
            stored.append(DemoFrame(
                run_id=saver.run_id,
                centre_x_m=cx,
                centre_y_m=cy,
                true_label=label,
                tip_change_lines=changes,
                z_range_m=float(np.ptp(finite)) if finite.size else math.nan,
                z_rms_m=float(finite.std()) if finite.size else math.nan,
                nan_fraction=float(1 - finite.size / image.size),
            ))
    finally:
        stm.close()
        server.stop()

    result = DemoResult(database, tuple(f.run_id for f in stored), tuple(stored))
    echo(_summary(result, pixels))
    return result


def _summary(result: DemoResult, pixels: int) -> str:
    lines = [
        f"database: {result.database}",
        f"run ids:  {', '.join(str(r) for r in result.run_ids)}  "
        f"(scan_image {pixels}x{pixels}, Z in m; ground truth in run metadata 'sim_*')",
        f"{'run':>4}  {'centre (nm)':>15}  {'true state':<20} {'tip-change lines':<16} "
        f"{'z range (pm)':>12} {'rms (pm)':>9} {'NaN':>5}",
    ]
    for f in result.frames:
        changes = ",".join(str(c) for c in f.tip_change_lines) or "-"
        lines.append(
            f"{f.run_id:>4}  {f.centre_x_m * 1e9:>7.0f},{f.centre_y_m * 1e9:>7.0f}  "
            f"{f.true_label:<20} {changes:<16} {f.z_range_m * 1e12:>12.1f} "
            f"{f.z_rms_m * 1e12:>9.1f} {f.nan_fraction:>5.0%}"
        )
    lines.append("read back: qcodes.dataset.load_by_run_spec(captured_run_id=ID).to_xarray_dataset()")
    return "\n".join(lines)


def _demo_command(args: argparse.Namespace) -> int:
    run_demo(
        args.out,
        frames=args.frames,
        pixels=args.pixels,
        surface=args.surface,
        seed=args.seed,
        time_acceleration=args.time_acceleration,
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stmtip demo``."""
    parser = subparsers.add_parser(
        "demo",
        help="simulate a microscope, acquire frames through the QCoDeS driver into a database",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--out", type=Path, default=Path("out/demo"),
                        help="output folder (created; holds demo.db) [out/demo]")
    parser.add_argument("--frames", type=int, default=4, help="frames to acquire [4]")
    parser.add_argument("--pixels", type=int, default=128,
                        help="pixels per line = lines, a multiple of 16 [128]")
    parser.add_argument("--surface", default="hsi100", choices=("hsi100", "au111", "cu111"),
                        help="simulated surface [hsi100]")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed [0]")
    parser.add_argument("--time-acceleration", type=float, default=DEFAULT_TIME_ACCELERATION,
                        help=f"simulated seconds per wall second [{DEFAULT_TIME_ACCELERATION:g}]")
    parser.set_defaults(func=_demo_command)
