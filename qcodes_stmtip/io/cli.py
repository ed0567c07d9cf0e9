"""``stmtip info FILE...``: what an STM file holds (channels, size, extent, bias, completeness)."""

from __future__ import annotations

import argparse
import sys


def _si(value: float | None, unit: str) -> str:
    if value is None:
        return "unknown"
    if value == 0:
        return f"0 {unit}"
    for factor, prefix in ((1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, "")):
        if abs(value) < factor * 1000 or factor == 1.0:
            return f"{value / factor:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"  # pragma: no cover - loop always returns


def describe(path: str, channel: str | None = None, direction: str = "forward") -> str:
    """Return a multi-line summary of one file (reads the chosen channel's data)."""
    from qcodes_stmtip.io.read import list_channels, read_frame

    channels = list_channels(path)
    frame = read_frame(path, channel=channel, direction=direction)
    listing = ", ".join(f"{name} ({'/'.join(dirs)})" for name, dirs in channels)
    acquired = int(frame.acquired_rows.sum())
    if frame.has_extent:
        extent = f"{_si(frame.width_m, 'm')} × {_si(frame.height_m, 'm')}"
    else:
        extent = "unknown (no physical size in the file)"
    scan = {True: "up", False: "down", None: "unknown"}[frame.scan_up]
    return "\n".join(
        [
            f"{path}",
            f"  channels:   {listing}",
            f"  shown:      {frame.channel} {frame.direction} [{frame.unit or 'no unit'}]",
            f"  size:       {frame.lines} lines × {frame.pixels} pixels",
            f"  extent:     {extent}",
            f"  centre:     {_si(frame.centre_x_m, 'm')}, {_si(frame.centre_y_m, 'm')}; angle {frame.angle_deg:g}°",
            f"  scan:       {scan}",
            f"  bias:       {_si(frame.bias_V, 'V')}",
            f"  setpoint:   {_si(frame.setpoint_A, 'A')}",
            f"  complete:   {'yes' if frame.is_complete else 'no'} ({acquired}/{frame.lines} lines acquired)",
        ]
    )


def _handle_info(args: argparse.Namespace) -> int:
    from qcodes_stmtip.io.frame import FrameReadError
    from qcodes_stmtip.io.sources import find_frame_files

    status = 0
    for path in find_frame_files(args.files):
        try:
            print(describe(path, channel=args.channel, direction=args.direction))
        except FrameReadError as exc:
            print(f"stmtip info: error: {exc}", file=sys.stderr)
            status = 1
    return status


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``info`` to the ``stmtip`` command line."""
    parser = subparsers.add_parser(
        "info",
        help="describe STM files (.sxm, .gwy, *_mtrx, Createc .dat, .png, .npy)",
        description="Print channel list, size, physical extent, bias, setpoint and completeness of each file.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="files, folders (searched recursively for frame files) or glob "
                             "patterns ('**' recursive; quote them) to describe")
    parser.add_argument(
        "--channel", default=None, help="channel to summarise (default: topography)"
    )
    parser.add_argument("--direction", choices=("forward", "backward"), default="forward",
                        help="trace of each line to summarise [forward]")
    parser.set_defaults(func=_handle_info)
