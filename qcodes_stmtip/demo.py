"""``stmtip demo``: the main job — closed-loop tip conditioning on a simulated H:Si(100) microscope.

:func:`run_demo` starts the simulated Nanonis controller on loopback with a **bad tip**
(time-accelerated), connects the QCoDeS driver
(:class:`~qcodes_stmtip.drivers.nanonis_stm.NanonisSTM`), classifies every frame with the
real ensemble through :class:`~qcodes_stmtip.monitor.TipStateMonitor`, conditions the tip
with the escalating policy (:mod:`qcodes_stmtip.conditioning`) until three consecutive
frames show a tip that resolves dimers or atoms, stores everything in ``<out_dir>/demo.db`` and writes the report
(timeline, frame gallery, summary, HTML) to ``<out_dir>/report``. It prints where they
are and a one-screen summary.

Model: the shipped default bundle of the surface when there is one; otherwise a small
demo bundle is trained once, through the one training recipe
(:func:`~qcodes_stmtip.classify.ensemble_training.train_ensemble`: train, calibrate the
per-class and tip-change thresholds on validation sessions), on simulated frames like those
the demo scans, and cached in ``<out_dir>/bundle_<surface>`` (about ten minutes on two
cores: the member and the tip-change network; the output says so). A frame counts as a
tip change at the bundle's calibrated threshold. The simulator's ground truth is stored
next to each frame (``frame_true_state``) to judge the classifier — a real microscope
could not provide it.

The summary it prints ends with ``classifier vs simulator truth (good/bad): K of N frames
agree`` (:func:`~qcodes_stmtip.conditioning.report.truth_agreement`): the classifier's
good/bad verdict of each frame against the good/bad of its true class. N is every
classified frame (good, bad or ``uncertain``); an ``uncertain`` verdict never agrees, and the
next line says how many of the N − K were uncertain, called good on a bad tip, or bad on a
good one. The report outlines each of those frames (red: the opposite verdict, captioned
``classifier: good · truth: bad``; grey: uncertain) and never captions a frame green when
its truth is bad.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qcodes_stmtip.monitor import TipStateMonitor

__all__ = ["DEMO_ANGLE_DEG", "DEMO_FRAMES", "DEMO_FRAME_M", "DEMO_PIXELS", "DemoResult", "bundle_tip_change_threshold",
           "demo_geometry", "register", "resolve_bundle",
           "run_demo", "train_demo_bundle"]

#: Simulated seconds per wall second: a 128-line frame (0.1 s per line and direction,
#: 25.6 s simulated) takes ~0.5 s of wall time plus rendering and inference.
DEFAULT_TIME_ACCELERATION = 50.0
#: The demo's frames per surface: (side m, pixels = lines, scan angle deg). H:Si(100) as real
#: frames are taken: ~5 dimer rows across the frame (the row period at ~25 px of the classifier's
#: 128² input, where the real frames have it), rows diagonal as in most real frames. Au/Cu(111):
#: the geometry their simulated-only bundles were scored at.
DEMO_FRAMES: dict[str, tuple[float, int, float]] = {
    "hsi100": (4e-9, 128, 45.0), "au111": (6e-9, 64, 0.0), "cu111": (6e-9, 64, 0.0)}
#: The H:Si(100) demo frame (the default surface's).
DEMO_FRAME_M, DEMO_PIXELS, DEMO_ANGLE_DEG = DEMO_FRAMES["hsi100"]
#: The bad tip each surface starts from.
BAD_TIP = {"hsi100": "generic_defect", "au111": "double_tip", "cu111": "double_tip"}
#: What the demo asks for: a tip that resolves dimers or atoms (on H:Si(100) ``rows`` is
#: also "good", but the demo bundle confuses some bad tips with rows, never with these).
DEMO_TARGET = {"hsi100": frozenset({"individual_atoms", "dimers_asymmetries"})}
#: Fresh areas lie inside ±1.5 µm (the simulator scans ±2 µm).
DEMO_BOUNDS = ((-1.5e-6, 1.5e-6), (-1.5e-6, 1.5e-6))
#: Share of the fallback bundle's H:Si(100) training frames whose apex changes during the
#: frame, so that the recipe trains and calibrates a tip-change network.
DEMO_TIP_CHANGE_P = 0.15


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote and how the experiment ended."""

    database: Path
    run_id: int
    outcome: str
    frames: int
    tip_actions: int
    time_to_good_s: float | None
    true_final_state: str
    report_html: Path
    bundle: Path
    bundle_source: str
    wall_s: float
    summary: dict[str, Any]


def demo_geometry(pixels: int = DEMO_PIXELS, frame_size_m: float = DEMO_FRAME_M,
                  angle_deg: float = DEMO_ANGLE_DEG):
    """The demo's frames as a :class:`~qcodes_stmtip.classify.default_bundles.FrameGeometry`:
    ``frame_size_m`` squares of ``pixels`` pixels at ``angle_deg`` centred inside :data:`DEMO_BOUNDS`."""
    from qcodes_stmtip.classify.default_bundles import FrameGeometry

    return FrameGeometry(frame_size_m, pixels, DEMO_BOUNDS, angle_deg)


def train_demo_bundle(out: Path, surface: str = "hsi100", *, pixels: int = DEMO_PIXELS,
                      frame_size_m: float = DEMO_FRAME_M, per_class: int = 250, epochs: int = 40,
                      architecture: str = "rw", width: float = 0.5, patience: int = 10,
                      augment: bool = False, tip_change_p: float = DEMO_TIP_CHANGE_P,
                      target_precision: float = 0.9, tip_change_precision: float = 0.5,
                      seed: int = 0, echo: Callable[[str], None] = print) -> Path:
    """Train a small one-member bundle on simulated frames of the demo's geometry; save it to ``out``.

    Frames of every class of ``surface`` are rendered at fresh sample areas
    (:func:`~qcodes_stmtip.classify.default_bundles.geometry_set`; on H:Si(100) a share
    ``tip_change_p`` with an apex change during the frame) and trained through the one recipe,
    :func:`~qcodes_stmtip.classify.ensemble_training.train_ensemble`: 20 % of the sample
    sessions held out for early stopping and calibration of the per-class thresholds (for
    ``target_precision``) and the tip-change threshold (for ``tip_change_precision``). Without
    augmentation (the simulated frames already vary). Side effects: imports Keras, writes ``out``.
    """
    from qcodes_stmtip.classify.bundle import save_bundle
    from qcodes_stmtip.classify.default_bundles import geometry_set
    from qcodes_stmtip.classify.ensemble_training import MemberSpec, train_ensemble
    from qcodes_stmtip.classify.train_config import TrainConfig
    from qcodes_stmtip.taxonomy import CLASSES

    t0 = time.perf_counter()
    data = geometry_set(surface, per_class * len(CLASSES[surface]), seed,
                        demo_geometry(pixels, frame_size_m, DEMO_FRAMES[surface][2]), image_size=pixels,
                        tip_change_p=tip_change_p)
    echo(f"  rendered {len(data.images)} simulated frames in {time.perf_counter() - t0:.0f} s; training ...")
    member = MemberSpec(architecture, "adam", 2e-3)
    base = TrainConfig(architecture, width=width, epochs=epochs, batch_size=16, patience=patience,
                       augment=augment, learning_rate=2e-3, seed=seed)
    ensemble, report = train_ensemble(data, base, [member], val_fraction=0.2, split_seed=seed,
                                      target_precision=target_precision,
                                      tip_change_precision=tip_change_precision, progress=False)
    save_bundle(ensemble, out, image_size=pixels,
                training_data={**data.frames.summary(), "source": "qcodes_stmtip.sim render_scan (demo)",
                               "frame_size_m": frame_size_m, "pixels": pixels,
                               "validation_sessions": report["validation_sessions"]},
                metrics={"validation": report})
    scores = report["ensemble"]
    tc = report["tip_change"]
    echo(f"  demo bundle trained in {time.perf_counter() - t0:.0f} s (validation balanced accuracy "
         f"{scores['balanced_accuracy']:.0%} on {report['validation_frames']} simulated frames"
         + (f"; tip-change threshold {tc['threshold']:.2f}" if tc else "") + f"): {out}")
    return out


def resolve_bundle(surface: str, out_dir: Path, bundle: Path | str | None,
                   echo: Callable[[str], None] = print) -> tuple[Path, str]:
    """The bundle the demo classifies with and where it came from (explicit, shipped, cached, trained)."""
    from qcodes_stmtip.classify.bundle import (
        MANIFEST,
        BundleError,
        default_bundle_path,
        read_manifest,
    )

    if bundle is not None:
        path = Path(bundle)
        if not (path / MANIFEST).is_file():
            raise FileNotFoundError(f"bundle {path}: no {MANIFEST} there")
        return path, "given"
    try:  # the bundle a user gets: trained on real frames where they exist (H:Si(100)), else simulated
        path = default_bundle_path(surface)
    except BundleError:
        path = None
    if path is not None:  # a corrupt shipped manifest raises here, one line naming the file
        source = str(read_manifest(path).get("training_data", {}).get("source", ""))
        kind = "simulated training frames" if source.startswith("simulated") else "real training frames"
        return path, f"shipped default bundle ({kind})"
    cached = out_dir / f"bundle_{surface}"
    if (cached / MANIFEST).is_file():
        return cached, "demo bundle trained on simulated frames (cached)"
    echo(f"no default {surface} bundle is shipped: training a small demo bundle on simulated "
         f"frames first (once; cached in {cached})")
    return train_demo_bundle(cached, surface, echo=echo), "demo bundle trained on simulated frames"


def bundle_tip_change_threshold(monitor: TipStateMonitor) -> float:
    """The tip-change threshold the monitor's bundle was calibrated with, as a
    :class:`~qcodes_stmtip.conditioning.experiment.Target` takes it (in (0, 1])."""
    threshold = float(monitor.ensemble.tip_change_threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"the bundle's tip-change threshold is {threshold!r}")
    return min(1.0, max(threshold, math.ulp(0.0)))


def run_demo(
    out_dir: Path | str = Path("out/demo"),
    *,
    surface: str = "hsi100",
    seed: int = 1,
    bundle: Path | str | None = None,
    policy: str = "escalating",
    pixels: int | None = None,
    frame_size_m: float | None = None,
    angle_deg: float | None = None,
    time_acceleration: float = DEFAULT_TIME_ACCELERATION,
    max_frames: int = 100,
    consecutive: int = 3,
    echo: Callable[[str], None] = print,
    spectral_check: bool = True,
) -> DemoResult:
    """Condition a bad simulated tip until it is good; store the run and its report in ``out_dir``.

    The tip counts as good after ``consecutive`` frames in a row show a target state (3: the
    demo's small classifier errs on single frames; on H:Si(100) the target is dimer or
    atomic resolution, :data:`DEMO_TARGET`). A frame counts as a tip change at the bundle's
    calibrated tip-change threshold (the demo does not override it). ``pixels``, ``frame_size_m``
    and ``angle_deg`` default to the surface's :data:`DEMO_FRAMES`; the classifier to the surface's
    shipped default bundle (:func:`resolve_bundle`). Side effects: creates ``out_dir``
    (``demo.db``, ``report/``, maybe a cached bundle),
    starts and stops a simulator on a free loopback port, prints via ``echo``.
    """
    from qcodes.dataset import initialise_or_create_database_at, load_or_create_experiment

    from qcodes_stmtip.conditioning.experiment import ConditioningExperiment, Target
    from qcodes_stmtip.conditioning.policy import EscalatingPolicy, RandomPolicy
    from qcodes_stmtip.conditioning.report import summary_text, write_report
    from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
    from qcodes_stmtip.sim.controller import serve_simulator
    from qcodes_stmtip.taxonomy import GOOD_CLASSES, SURFACE_STATE_ONSET_V, SURFACES

    if surface not in SURFACES:
        raise ValueError(f"surface must be one of {SURFACES}, got {surface!r}")
    if policy not in ("escalating", "random"):
        raise ValueError(f"policy must be 'escalating' or 'random', got {policy!r}")
    default_size, default_pixels, default_angle = DEMO_FRAMES[surface]
    frame_size_m = default_size if frame_size_m is None else frame_size_m
    pixels = default_pixels if pixels is None else pixels
    angle_deg = default_angle if angle_deg is None else angle_deg
    if not (isinstance(angle_deg, int | float) and math.isfinite(angle_deg)):
        raise ValueError(f"angle_deg must be a finite scan angle in degrees, got {angle_deg!r}")
    if not (isinstance(frame_size_m, int | float) and math.isfinite(frame_size_m) and frame_size_m > 0):
        raise ValueError(f"frame_size_m must be a positive length in metres, got {frame_size_m!r}")
    if not (isinstance(time_acceleration, int | float) and time_acceleration > 0):
        raise ValueError(f"time_acceleration must be > 0, got {time_acceleration!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bundle_path, source = resolve_bundle(surface, out, bundle, echo)
    t0 = time.perf_counter()
    database = (out / "demo.db").resolve()
    initialise_or_create_database_at(database)
    experiment = load_or_create_experiment("stmtip_demo", sample_name=f"simulated {surface}")

    from qcodes_stmtip.monitor import TipStateMonitor

    monitor = TipStateMonitor(bundle_path, surface=surface)
    server = serve_simulator(surface=surface, seed=seed, time_acceleration=time_acceleration,
                             initial_tip=BAD_TIP[surface])
    stm = NanonisSTM("stm_demo", address="127.0.0.1", port=server.port)
    try:
        stm.pixels(pixels)
        stm.lines(pixels)
        stm.set_frame(0.0, 0.0, frame_size_m, frame_size_m, angle_deg)
        echo(f"simulated Nanonis controller ({surface}, seed {seed}, tip starts "
             f"{BAD_TIP[surface]}, time ×{time_acceleration:g}) on 127.0.0.1:{server.port}")
        echo(f"classifier: {bundle_path} ({source}; {monitor.inference_path} on {monitor.device})")
        chosen = EscalatingPolicy() if policy == "escalating" else RandomPolicy(seed=seed)
        target_classes = {"classes": DEMO_TARGET[surface]} if surface in DEMO_TARGET else {}
        if monitor.ensemble.calibrated:  # one calibrated P(bad) weighs class and tip-change evidence
            decision = monitor.ensemble.decision
            echo(f"good/bad: calibrated P(bad), good at or below {decision.good_below:.2f}, bad at or above "
                 f"{decision.bad_above:.2f}; stop once P(bad tip) over the frames since the last action "
                 f"is at most {Target.max_belief_bad:g} on at least {Target.min_good_frames} good frames")
            target = Target.for_surface(surface, consecutive=consecutive, **target_classes)
        else:
            tip_change_threshold = bundle_tip_change_threshold(monitor)
            if monitor.ensemble.tip_change is not None:
                echo(f"tip change: at the bundle's calibrated threshold {tip_change_threshold:.2f}")
            target = Target.for_surface(surface, consecutive=consecutive,
                                        max_tip_change_probability=tip_change_threshold, **target_classes)
        classifier: Any = monitor
        if spectral_check and surface in SURFACE_STATE_ONSET_V:
            from qcodes_stmtip.conditioning.spectral import SpectroscopicTipCheck

            classifier = SpectroscopicTipCheck(monitor, stm, surface)
            echo("spectroscopic tip check: a frame the image calls good is confirmed by a dI/dV spectrum "
                 f"(surface-state step at {SURFACE_STATE_ONSET_V[surface]:g} V)")
        result = ConditioningExperiment(
            stm, classifier, chosen, surface=surface, target=target, area_bounds=DEMO_BOUNDS,
            max_frames=max_frames,
            truth=server.microscope.ground_truth, clock=server.microscope.sim_time,
            clock_name="simulated", seed=seed, echo=echo, name="demo_conditioning").run(experiment)
        true_state = server.microscope.ground_truth().tip_label
    finally:
        monitor.close()
        stm.close()
        server.stop()
    files = write_report(result.run_id, out / "report")
    wall = time.perf_counter() - t0
    demo = DemoResult(database, result.run_id, result.outcome, result.frames, result.tip_actions,
                      result.time_to_good_s, true_state, files.html.resolve(), bundle_path, source,
                      wall, files.data)
    good = "good" if true_state in GOOD_CLASSES[surface] else "bad"
    echo("")
    echo(summary_text(files.data))
    echo(f"simulator's truth: the tip is now {true_state} ({good}); times are simulated "
         f"(×{time_acceleration:g}); wall time {wall:.0f} s")
    echo(f"database: {database}  (run {result.run_id}; read back with "
         f"qcodes_stmtip.conditioning.records.load_conditioning_run({result.run_id}))")
    echo(f"report:   {demo.report_html}")
    echo(f"again:    stmtip report {result.run_id} --db {database} --out {out / 'report'}")
    return demo


def _demo_command(args: argparse.Namespace) -> int:
    result = run_demo(args.out, surface=args.surface, seed=args.seed, bundle=args.model,
                      policy=args.policy, time_acceleration=args.time_acceleration, pixels=args.pixels,
                      max_frames=args.max_frames, spectral_check=args.spectral_check)
    return 0 if result.outcome == "good_tip" else 3


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stmtip demo``."""
    parser = subparsers.add_parser(
        "demo",
        help="the main job: condition a bad tip on a simulated microscope until it is good",
        description="The main job, on a simulated H:Si(100) (or Au/Cu(111)) microscope with a "
        "bad tip: scan, classify every frame with the ensemble, pulse/indent/move until the "
        "tip is good, store everything in OUT/demo.db and write the report to OUT/report.",
    )
    parser.add_argument("--out", type=Path, default=Path("out/demo"),
                        help="output folder (demo.db, report/, cached bundle) [out/demo]")
    parser.add_argument("--surface", default="hsi100", choices=("hsi100", "au111", "cu111"),
                        help="simulated surface [hsi100]")
    parser.add_argument("--model", default=None,
                        help="model bundle [the shipped one, else a cached/trained demo bundle]")
    parser.add_argument("--policy", default="escalating", choices=("escalating", "random"),
                        help="escalating: pulse, then indent, then move; random: a seeded draw "
                             "[escalating]")
    parser.add_argument("--seed", type=int, default=1,
                        help="simulator seed [1: its tip stays bad until conditioned]")
    parser.add_argument("--max-frames", type=int, default=100, help="stop after N frames [100]")
    parser.add_argument("--spectral-check", action=argparse.BooleanOptionalAction, default=True,
                        help="on Au(111)/Cu(111), confirm a frame the image calls good with a dI/dV spectrum "
                             "(the surface-state step) before counting it [on]")
    parser.add_argument("--pixels", type=int, default=None,
                        help="pixels = lines per frame [the surface's demo frame: "
                             + ", ".join(f"{k} {v[1]}" for k, v in DEMO_FRAMES.items()) + "]")
    parser.add_argument("--time-acceleration", type=float, default=DEFAULT_TIME_ACCELERATION,
                        help=f"simulated seconds per wall second [{DEFAULT_TIME_ACCELERATION:g}]")
    parser.set_defaults(func=_demo_command)
