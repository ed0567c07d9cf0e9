"""Store STM frames with a QCoDeS ``Measurement`` and read them back as xarray.

Runs against the built-in simulated Nanonis controller unless ``--host`` is given::

    python examples/measure_frames.py --frames 3
    python examples/measure_frames.py --host 192.168.1.10 --port 6501 --frames 3

Each frame is ``NanonisSTM.scan_image`` (float64 ``(lines, pixels)``, row 0 the bottom
line) stored against an integer ``frame_index``, so the dataset's ``scan_image`` has the
dimensions ``(frame_index, scan_line, scan_pixel)`` wherever each frame was taken; the
frame's centre, size, angle, bias, setpoint, direction and time are stored beside it as
``stm_frame_*`` (one value per frame).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from qcodes.dataset import (
    Measurement,
    initialise_or_create_database_at,
    load_by_run_spec,
    load_or_create_experiment,
)

from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM, frame_index_parameter


def measure_frames(
    stm: NanonisSTM, frames: int, *, experiment: str = "measure_frames", sample: str = "sample"
) -> int:
    """Acquire ``frames`` frames into one QCoDeS run (side effect: scans); return its run id."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    exp = load_or_create_experiment(experiment, sample_name=sample)
    frame_index = frame_index_parameter()
    meas = Measurement(exp=exp, name="scan_frames")
    meas.register_parameter(frame_index)
    meas.register_parameter(stm.scan_image, setpoints=(frame_index,))
    for record in stm.frame_parameters:  # where and how each frame was taken
        meas.register_parameter(record, setpoints=(frame_index,))
    with meas.run() as saver:
        for index in range(frames):
            frame_index(index)
            image = stm.scan_image()
            saver.add_result((frame_index, index), (stm.scan_image, image),
                             *((record, record()) for record in stm.frame_parameters))
    return saver.run_id


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="Nanonis controller host (default: start the simulator)")
    parser.add_argument("--port", type=int, default=6501, help="TCP port with --host")
    parser.add_argument("--frames", type=int, default=3, help="frames to acquire")
    parser.add_argument("--pixels", type=int, default=64, help="pixels per line = lines")
    parser.add_argument("--size", type=float, default=20e-9, help="frame width = height, m")
    parser.add_argument("--surface", default="hsi100", help="simulated surface")
    parser.add_argument("--db", type=Path, default=Path("out/example/frames.db"),
                        help="QCoDeS database file (created)")
    args = parser.parse_args(argv)

    server = None
    host, port = args.host, args.port
    if host is None:
        from qcodes_stmtip.sim.controller import serve_simulator

        server = serve_simulator(surface=args.surface, seed=0, time_acceleration=500.0)
        host, port = "127.0.0.1", server.port
    try:
        stm = NanonisSTM("stm", address=host, port=port)
    except ConnectionError as exc:  # nothing listening at --host/--port: one line, status 1
        print(f"error: {exc}", file=sys.stderr)
        return 1
    image_name = stm.scan_image.register_name
    try:
        stm.pixels(args.pixels)
        stm.lines(args.pixels)
        stm.set_frame(0.0, 0.0, args.size, args.size, 0.0)
        args.db.parent.mkdir(parents=True, exist_ok=True)
        initialise_or_create_database_at(args.db)
        run_id = measure_frames(stm, args.frames, sample=args.surface)
    finally:
        stm.close()
        if server is not None:
            server.stop()

    dataset = load_by_run_spec(captured_run_id=run_id)
    xr = dataset.to_xarray_dataset()
    image = xr[image_name]
    print(f"database: {args.db.resolve()}  run id: {run_id}")
    print(f"{image.name}: dims {image.dims}, shape {image.shape}, unit {image.attrs.get('units')!r}")
    for index in range(image.shape[0]):
        values = image.isel({image.dims[0]: index}).values
        print(f"  frame {index}: min {values.min():.3e}  max {values.max():.3e}  "
              f"rms {values.std():.3e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
