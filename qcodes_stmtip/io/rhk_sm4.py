"""RHK ``.sm4`` files, through ``spym`` (its ``spym.io.rhksm4`` parser).

``spym`` (0.9.2, 2025) parses the page index and objects of an ``.sm4`` file;
importing it needs ``hvplot`` (an undeclared dependency of its plotting
accessors), so both are project dependencies and the import costs a few
seconds, paid only when an ``.sm4`` file is read. The alternative ``sm4file``
(0.1.0) fails on real files (zlib error in the PRM block).

Each image page (``Topography_Forward``, ``Current_Backward``…) is one
channel/direction: the channel is the label without its ``_Forward`` /
``_Backward`` suffix. ``spym`` orients image pages by the signs of the x/y
scales so that row 0 is the bottom line and backward pages are already
mirrored to match forward ones; this reader scales raw counts to physical
units (``Zscale · raw + Zoffset``), takes the extent as ``size · |scale|`` and
the centre from ``Xoffset``/``Yoffset``. The vertical scan direction is not
decoded (``scan_up = None``). Spectroscopy (line) pages are not frames and are
not listed. ``spym`` reshapes non-square pages as if square, so those are
refused rather than read wrongly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qcodes_stmtip.extras import MissingExtraError, install_hint
from qcodes_stmtip.io.frame import (
    FrameReadError,
    NoSuchChannelError,
    STMFrame,
    check_direction,
    guard_reader,
)

_SUFFIXES = {"_Forward": "forward", "_Backward": "backward"}


def _split_label(label: str) -> tuple[str, str]:
    for suffix, direction in _SUFFIXES.items():
        if label.endswith(suffix):
            return label[: -len(suffix)], direction
    return label, "forward"


def _image_pages(path: Path) -> list[Any]:
    try:
        from spym.io import rhksm4
    except ImportError as exc:
        raise MissingExtraError(
            f"reading {path} (.sm4) needs the 'spym' and 'hvplot' packages ({exc}); "
            f"install them with: {install_hint('io')}", name="spym") from exc
    try:
        pages = list(rhksm4.load(str(path)))
    except Exception as exc:  # spym raises struct/Index/Value errors on malformed files
        raise FrameReadError(
            path, f"not a readable RHK .sm4 file ({type(exc).__name__}: {exc})"
        ) from exc
    images = [p for p in pages if int(p.attrs.get("RHK_PageDataType", -1)) == 0]
    if not images:
        raise FrameReadError(path, "the .sm4 file holds no image page (only spectra)")
    return images


@guard_reader
def list_channels(path: str | Path) -> list[tuple[str, tuple[str, ...]]]:
    """Return ``[(channel, stored directions), …]`` of the image pages of an ``.sm4`` file."""
    path = Path(path)
    out: dict[str, list[str]] = {}
    for page in _image_pages(path):
        name, direction = _split_label(page.label)
        out.setdefault(name, []).append(direction)
    return [
        (name, tuple(sorted(dirs, key=("forward", "backward").index))) for name, dirs in out.items()
    ]


@guard_reader
def read_sm4(path: str | Path, channel: str | None = None, direction: str = "forward") -> STMFrame:
    """Read one image page of an RHK ``.sm4`` file (default channel: Topography)."""
    path = Path(path)
    check_direction(direction)
    pages = _image_pages(path)
    table = [(*_split_label(p.label), p) for p in pages]
    names = list(dict.fromkeys(name for name, _, _ in table))
    wanted = "Topography" if channel is None and "Topography" in names else channel or names[0]
    matches = [t for t in table if t[0].lower() == wanted.lower()]
    if not matches:
        raise NoSuchChannelError(path, f"no channel {wanted!r}; available: {', '.join(names)}")
    chosen = [t for t in matches if t[1] == direction]
    if not chosen:
        raise NoSuchChannelError(path, f"channel {matches[0][0]!r} has no {direction} page")
    name, _, page = chosen[0]
    attrs = page.attrs
    xsize, ysize = int(attrs["RHK_Xsize"]), int(attrs["RHK_Ysize"])
    if xsize != ysize:
        raise FrameReadError(
            path, f"page {page.label!r} is {xsize}×{ysize}; non-square .sm4 pages are not supported"
        )
    data = np.asarray(page.data, dtype=np.float64) * float(attrs["RHK_Zscale"]) + float(
        attrs["RHK_Zoffset"]
    )
    xy_unit = str(attrs.get("RHK_Xunits", ""))
    metric = xy_unit == "m"
    setpoint = attrs.get("RHK_ZPI_SetPoint")
    setpoint_A = (
        float(setpoint)
        if setpoint is not None and attrs.get("RHK_ZPI_SetPointUnit") == "A"
        else None
    )
    return STMFrame(
        data=np.ascontiguousarray(data),
        unit=str(attrs.get("RHK_Zunits", "")),
        width_m=xsize * abs(float(attrs["RHK_Xscale"])) if metric else None,
        height_m=ysize * abs(float(attrs["RHK_Yscale"])) if metric else None,
        centre_x_m=float(attrs["RHK_Xoffset"]) if metric else None,
        centre_y_m=float(attrs["RHK_Yoffset"]) if metric else None,
        angle_deg=float(attrs.get("RHK_Angle", 0.0)),
        scan_up=None,
        channel=name,
        direction=direction,  # type: ignore[arg-type]
        bias_V=float(attrs["RHK_Bias"]) if "RHK_Bias" in attrs else None,
        setpoint_A=setpoint_A,
        source=str(path),
        metadata={
            "format": "rhk-sm4",
            "page": page.label,
            "channels": names,
            "feedback": attrs.get("RHK_ZPI_FeedbackType"),
            "scan_type": attrs.get("RHK_ScanTypeName"),
        },
    )
