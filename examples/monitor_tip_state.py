"""Attach a TipStateMonitor to a QCoDeS measurement: every frame is stored with its tip state.

Two idioms, against the built-in simulated Nanonis controller (or ``--host``)::

    python examples/monitor_tip_state.py --mode measurement --frames 6
    python examples/monitor_tip_state.py --mode dond --frames 6
    python examples/monitor_tip_state.py --bundle path/to/bundle --host 192.168.1.10

Without ``--bundle`` a small demonstration bundle (one compact network, H:Si(100)
``individual_atoms`` vs ``generic_defect``, trained for ~20 s on simulated frames) is
built once under ``out/example/monitor_bundle``. The run's tip states are printed from
the reloaded dataset; the bundle manifest is in the run metadata ``tip_monitor``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from qcodes.dataset import (
    ArraySweep,
    Measurement,
    dond,
    initialise_or_create_database_at,
    load_by_run_spec,
    load_or_create_experiment,
)

from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM, frame_index_parameter
from qcodes_stmtip.monitor import METADATA_KEY, TipStateMonitor, states_of

FRAME_M = 5e-9


def with_measurement(stm: NanonisSTM, monitor: TipStateMonitor, frames: int) -> int:
    """The ``Measurement`` idiom: frame, its record and tip state share ``frame_index``."""
    frame_index = frame_index_parameter()
    meas = Measurement(name="frames_with_tip_state")
    meas.register_parameter(frame_index)
    meas.register_parameter(stm.scan_image, setpoints=(frame_index,))
    for record in stm.frame_parameters:  # centre, size, angle, bias, setpoint, direction, time
        meas.register_parameter(record, setpoints=(frame_index,))
    monitor.register(meas, frame_index)  # tip_state, tip_p_*, tip_vote_*, ... per frame

    @monitor.on_state
    def report(index: int, result) -> None:  # runs on this (the acquisition) thread
        print(f"  frame {index}: {result.state} ({result.quality})")

    with meas.run() as saver:
        for i in range(frames):
            stm.set_frame(i * 300e-9 - 1.2e-6, 0.0, FRAME_M, FRAME_M, 0.0)
            image = stm.scan_image()
            saver.add_result((frame_index, i), (stm.scan_image, image),
                             *((record, record()) for record in stm.frame_parameters))
            monitor.submit(i, image, saver)  # returns at once; writes finished results
        monitor.finish(saver)  # waits for the last results; writes the run metadata
    return saver.run_id


def with_dond(stm: NanonisSTM, monitor: TipStateMonitor, frames: int) -> int:
    """The ``dond`` idiom: a watched image plus the monitor's parameters as measured ones."""
    frame_index = frame_index_parameter()
    watched = monitor.watch(stm.scan_image, frame_index)  # get() also submits the frame

    def move() -> None:  # each frame at a fresh place
        stm.set_frame(frame_index() * 300e-9 - 1.2e-6, 0.0, FRAME_M, FRAME_M, 0.0)

    dataset, *_ = dond(
        ArraySweep(frame_index, list(range(frames)), post_actions=(move,)), watched,
        *stm.frame_parameters, *monitor.parameters,
        do_plot=False, show_progress=False, measurement_name="frames_with_tip_state_dond",
    )
    monitor.finish(dataset=dataset)  # bundle manifest into the run metadata
    return dataset.captured_run_id


def demo_bundle(path: Path) -> Path:
    """Train (once) a small H:Si(100) bundle on simulated frames; returns its directory."""
    if (path / "manifest.json").is_file():
        return path
    from qcodes_stmtip.classify.bundle import save_bundle
    from qcodes_stmtip.classify.ensemble import Ensemble, Member
    from qcodes_stmtip.classify.preprocess import preprocess_batch
    from qcodes_stmtip.classify.training import TrainConfig, train_classifier
    from qcodes_stmtip.sim.frames import render_scan
    from qcodes_stmtip.sim.geometry import ScanGeometry
    from qcodes_stmtip.sim.tips import sample_tip
    from qcodes_stmtip.taxonomy import CLASSES

    print(f"training a demonstration bundle into {path} (~20 s) ...")
    rng = np.random.default_rng(0)
    labels = ["individual_atoms", "generic_defect"] * 120
    frames = []
    for label in labels:
        cx, cy = rng.uniform(-3e-6, 3e-6, 2)
        geo = ScanGeometry(FRAME_M, FRAME_M, 64, 64, cx, cy, 0.0)
        frames.append(render_scan("hsi100", sample_tip("hsi100", label, rng), geo, rng,
                                  sample_seed=int(rng.integers(10_000))).forward)
    x = preprocess_batch(frames, 64)
    y = np.array([CLASSES["hsi100"].index(label) for label in labels])
    res = train_classifier(x[:200], y[:200], x[200:], y[200:], 4,
                           TrainConfig("rw", width=0.25, epochs=20, batch_size=16, patience=20,
                                       augment=False, learning_rate=2e-3), progress=False)
    ens = Ensemble("hsi100", CLASSES["hsi100"], [Member("rw", "rw", res.model, res.summary())])
    return save_bundle(ens, path, image_size=64,
                       training_data={"frames": len(labels), "source": "simulated (demo)"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("measurement", "dond"), default="measurement")
    parser.add_argument("--bundle", type=Path, help="model bundle (default: build a demo bundle)")
    parser.add_argument("--host", help="Nanonis controller host (default: start the simulator)")
    parser.add_argument("--port", type=int, default=6501)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("out/example"))
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be >= 1")

    server = None
    host, port = args.host, args.port
    if host is None:
        from qcodes_stmtip.sim.controller import serve_simulator

        server = serve_simulator(surface="hsi100", seed=0, time_acceleration=500.0)
        host, port = "127.0.0.1", server.port
    try:  # connect first: a dead controller is reported before any training
        stm = NanonisSTM("stm", address=host, port=port)
    except ConnectionError as exc:  # nothing listening at --host/--port: one line, status 1
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        bundle = args.bundle or demo_bundle(args.out / "monitor_bundle")
        args.out.mkdir(parents=True, exist_ok=True)
        initialise_or_create_database_at(args.out / "monitor.db")
        load_or_create_experiment("monitor_example", sample_name="hsi100")
        stm.pixels(64)
        stm.lines(64)
        with TipStateMonitor(bundle, surface="hsi100") as monitor:
            run = (with_measurement if args.mode == "measurement" else with_dond)(
                stm, monitor, args.frames)
    finally:
        stm.close()
        if server is not None:
            server.stop()

    ds = load_by_run_spec(captured_run_id=run)
    meta = json.loads(ds.metadata[METADATA_KEY])
    print(f"run {run} in {(args.out / 'monitor.db').resolve()}: model {meta['model_id']}, "
          f"{meta['inference_path']} on {meta['device']}")
    for index, state in sorted(states_of(ds).items()):
        print(f"  frame {index}: tip_state {state}")
    # frames, their positions and tip states in one xarray Dataset, whatever the positions
    xds = ds.to_xarray_dataset()
    good = xds["stm_scan_image"].where(xds["tip_quality"] == "good", drop=True)
    centres_nm = np.round(xds["stm_frame_centre_x"].values * 1e9, 1).tolist()
    print(f"frames {dict(xds.sizes)}; centres x {centres_nm} nm; "
          f"{good.sizes['frame_index']} good")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
