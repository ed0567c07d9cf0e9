"""``read_frame``: one entry point for every supported file, dispatching on the file name.

| suffix | format | reader |
|---|---|---|
| ``.sxm`` | Nanonis scan | :mod:`.nanonis_sxm` |
| ``.gwy`` | Gwyddion | :mod:`.gwyddion` (own bounded parser) |
| ``.<channel>_mtrx`` | Scienta Omicron MATRIX (+ ``.mtrx`` beside it) | :mod:`.matrix` (``access2thematrix``) |
| ``.dat`` | Createc (text header), else SPIEPy raw array | :mod:`.createc`, :mod:`.spiepy_raw` |
| ``.sm4`` | RHK | :mod:`.rhk_sm4` (``spym``) |
| ``.png`` | grey-level picture, no extent | :mod:`.images` |
| ``.npy`` | NumPy array, no extent | :mod:`.images` |
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qcodes_stmtip.io.frame import FrameReadError, STMFrame, check_direction, guard_reader

Reader = Callable[..., STMFrame]

#: File suffixes ``read_frame`` accepts (``*_mtrx`` stands for ``.Z_mtrx``, ``.I_mtrx``…).
SUPPORTED_SUFFIXES: tuple[str, ...] = (".sxm", ".gwy", "*_mtrx", ".dat", ".sm4", ".png", ".npy")


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".sxm":
        return "sxm"
    if suffix == ".gwy":
        return "gwy"
    if suffix.endswith("_mtrx"):
        return "matrix"
    if suffix == ".dat":
        from qcodes_stmtip.io.createc import is_createc
        from qcodes_stmtip.io.spiepy_raw import looks_like_spiepy

        if is_createc(path):
            return "createc"
        if looks_like_spiepy(path):
            return "spiepy"
        raise FrameReadError(
            path,
            "unrecognised .dat file: neither a Createc header ([Paramco32]/[Paramet32]/[Parameter]) "
            "nor a SPIEPy raw array",
        )
    if suffix == ".sm4":
        return "sm4"
    if suffix == ".png":
        return "png"
    if suffix == ".npy":
        return "npy"
    if suffix == ".mtrx":
        raise FrameReadError(
            path,
            "this is a MATRIX parameter file; read the image file (*.Z_mtrx, *.I_mtrx…) instead",
        )
    raise FrameReadError(
        path, f"unknown file extension {path.suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
    )


def _reader(fmt: str) -> Reader:
    if fmt == "sxm":
        from qcodes_stmtip.io.nanonis_sxm import read_sxm

        return read_sxm
    if fmt == "gwy":
        from qcodes_stmtip.io.gwyddion import read_gwy

        return read_gwy
    if fmt == "matrix":
        from qcodes_stmtip.io.matrix import read_matrix

        return read_matrix
    if fmt == "createc":
        from qcodes_stmtip.io.createc import read_createc

        return read_createc
    if fmt == "spiepy":
        from qcodes_stmtip.io.spiepy_raw import read_spiepy

        return read_spiepy
    if fmt == "sm4":
        from qcodes_stmtip.io.rhk_sm4 import read_sm4

        return read_sm4
    if fmt == "png":
        from qcodes_stmtip.io.images import read_png

        return read_png
    from qcodes_stmtip.io.images import read_npy

    return read_npy


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FrameReadError(path, "no such file")
    if not path.is_file():
        raise FrameReadError(path, "not a regular file")
    return path


@guard_reader
def read_frame(
    path: str | Path, channel: str | None = None, direction: str = "forward"
) -> STMFrame:
    """Read one channel and direction of an STM file into an :class:`STMFrame`.

    ``channel`` is the file's own channel name (``None``: the topography
    channel, ``Z``/``Topography``, where the format has one). ``direction`` is
    ``"forward"`` or ``"backward"``. Raises :class:`FrameReadError` (a
    ``ValueError``) naming the file and the problem: unknown extension,
    truncated or malformed file, missing channel (listing the available ones),
    missing ``.mtrx`` beside a MATRIX image.
    """
    check_direction(direction)
    path = _existing(path)
    return _reader(_format_of(path))(path, channel=channel, direction=direction)


@guard_reader
def list_channels(path: str | Path) -> list[tuple[str, tuple[str, ...]]]:
    """Return ``[(channel name, stored directions), …]`` for any supported file."""
    path = _existing(path)
    fmt = _format_of(path)
    if fmt == "sxm":
        from qcodes_stmtip.io.nanonis_sxm import list_channels as channels
    elif fmt == "gwy":
        from qcodes_stmtip.io.gwyddion import list_channels as channels
    elif fmt == "matrix":
        from qcodes_stmtip.io.matrix import list_channels as channels
    elif fmt == "createc":
        from qcodes_stmtip.io.createc import list_channels as channels
    elif fmt == "sm4":
        from qcodes_stmtip.io.rhk_sm4 import list_channels as channels
    elif fmt == "png":
        return [("grey", ("forward",))]
    else:
        return [("array", ("forward",))]
    return channels(path)


def is_supported(path: str | Path) -> bool:
    """True if the file name has a suffix ``read_frame`` knows (the content is not checked)."""
    suffix = Path(path).suffix.lower()
    return suffix in (".sxm", ".gwy", ".dat", ".sm4", ".png", ".npy") or suffix.endswith("_mtrx")
