"""Createc ``.dat`` image files.

Own reader: no maintained, installable Python package reads these files
(Gwyddion's ``createc.c`` module is C; the Python readers we found live in
unreleased lab repositories). The layout, as the public readers (Gwyddion's
``createc.c`` and several Python ones) agree on it:

* a 16384-byte header block that starts with a magic line — ``[Paramco32]``
  (zlib-compressed float32 body), ``[Paramet32]`` (raw float32 body at byte
  16388) or ``[Parameter]`` (raw little-endian int16 body at byte 16386, or a
  compressed body in later files) — then ``key=value`` lines, where a key may
  carry an alias (``Num.X / Num.X``), up to a ``DATA`` line;
* the compressed body inflates to 4 unused bytes followed by ``Channels``
  little-endian float32 images of ``Num.Y × Num.X`` values in DAC units, one
  after the other. ``Channelselectval`` is a bit mask of the recorded
  channels (1 topography, 2 current, 4, 8, … ADC inputs); when ``Channels`` is
  twice the number of selected channels, the first half are the forward
  images and the second half the backward ones.

Conversion: lengths (``Length x[A]``, ``Length y[A]``) are in ångström, the
bias (``BiasVolt.[mV]`` / ``Biasvolt[mV]``) in mV, the setpoint
``Current[A]`` in A. Topography DAC counts become metres with ``Dacto[A]z``.
Public readers disagree on whether that factor is Å or nm per DAC; the reader
decides per file from the lateral calibration (``Delta X [Dac] × Dacto[A]xy``
must equal ``Length x[A] / Num.X``) and falls back to Å, recording the choice
in ``metadata["dacto_unit"]``. Other channels stay in DAC counts
(``unit = "DAC"``). The first stored row is the top line (rows are flipped
to put the bottom line first); the scan direction and frame centre are not
decoded (``None``). All-zero rows at the end of a stored image are lines an
unfinished scan never reached and become NaN.

Bounds: the header's ``Num.X × Num.Y × Channels`` may not exceed :data:`MAX_VALUES`,
and the compressed body is inflated incrementally to at most the size that header
declares (``zlib.decompressobj().decompress(data, max_length)``), so a small file
that inflates to gigabytes (a zlib bomb) costs no more memory than a real file of
the declared size; only the chosen image is converted to float64.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np

from qcodes_stmtip.io.frame import (
    FrameReadError,
    NoSuchChannelError,
    STMFrame,
    check_direction,
    guard_reader,
)

HEADER_BYTES = 16384
#: Most float32 values (all channels) a file may declare: 2**27 values = 512 MiB inflated.
MAX_VALUES = 2**27
MAGICS = ("[Paramco32]", "[Paramet32]", "[Parameter]")
_ANGSTROM = 1e-10


def is_createc(path: str | Path) -> bool:
    """True if the file starts with one of the Createc magic lines."""
    with Path(path).open("rb") as fh:
        head = fh.read(16)
    return any(head.startswith(m.encode("ascii")) for m in MAGICS)


def parse_header(raw: bytes, path: Path) -> tuple[str, dict[str, str]]:
    """Return (magic, {key: value}) of a Createc header; aliases map to the same value."""
    text = raw[:HEADER_BYTES].decode("cp1252", errors="replace")
    lines = text.splitlines()
    magic = lines[0].strip() if lines else ""
    if magic not in MAGICS:
        raise FrameReadError(path, f"not a Createc .dat file (first line {magic[:20]!r})")
    header: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip() == "DATA":
            break
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            continue
        value = value.strip()
        for alias in key.split(" / "):
            alias = alias.strip()
            if alias:
                header.setdefault(alias, value)
    return magic, header


def _number(header: dict[str, str], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        if key in header:
            try:
                return float(header[key])
            except ValueError:
                return None
    return None


def _channel_names(header: dict[str, str], n_images: int) -> list[tuple[str, str, int]]:
    """Return [(name, direction, image index)] for the stored images."""
    select = int(_number(header, ("Channelselectval",)) or 0)
    bits = [1 << i for i in range(32) if select & (1 << i)]
    names = []
    for bit in bits:
        if bit == 1:
            names.append("Topography")
        elif bit == 2:
            names.append("Current")
        else:
            names.append(f"ADC{bit.bit_length() - 2}")
    if names and n_images == 2 * len(names):
        return [(n, "forward", i) for i, n in enumerate(names)] + [
            (n, "backward", i + len(names)) for i, n in enumerate(names)
        ]
    if names and n_images == len(names):
        return [(n, "forward", i) for i, n in enumerate(names)]
    if n_images == 1:
        return [("Topography", "forward", 0)]
    return [(f"channel{i}", "forward", i) for i in range(n_images)]


def _count(header: dict[str, str], key: str, path: Path, default: float | None = None) -> int:
    """A positive integer header field (image size, channel count)."""
    value = _number(header, (key,))
    if value is None:
        if default is None:
            raise FrameReadError(path, f"header field {key!r} is missing or not numeric")
        value = default
    if not (math.isfinite(value) and value >= 1 and value == int(value)):
        raise FrameReadError(path, f"header field {key!r} must be a positive integer, got {value!r}")
    return int(value)


def _inflate(body: bytes, max_bytes: int) -> bytes:
    """Inflate a zlib stream to at most ``max_bytes`` (a bomb stops there).

    Raises ``zlib.error`` for a corrupt stream, or one that ends before ``max_bytes``
    without its end marker (truncated).
    """
    inflater = zlib.decompressobj()
    out = inflater.decompress(body, max_bytes)
    if not inflater.eof and len(out) < max_bytes:
        raise zlib.error("incomplete or truncated stream")
    return out


def _images(raw: bytes, magic: str, header: dict[str, str], path: Path) -> tuple[np.ndarray, str]:
    """All stored images as a float32 (channels, lines, pixels) view, and the body layout."""
    nx = _count(header, "Num.X", path)
    ny = _count(header, "Num.Y", path)
    n_ch = _count(header, "Channels", path, default=1)
    need = n_ch * nx * ny
    if need > MAX_VALUES:
        raise FrameReadError(
            path, f"header declares {n_ch} images of {ny}×{nx} = {need} values, "
            f"more than the {MAX_VALUES} this reader accepts"
        )
    if len(raw) <= HEADER_BYTES:
        raise FrameReadError(
            path, f"truncated file: {len(raw)} bytes, no data after the {HEADER_BYTES}-byte header"
        )
    body = raw[HEADER_BYTES:]
    try:
        inflated = _inflate(body, 4 * (need + 1))
        usable = len(inflated) // 4 * 4
        values, layout = np.frombuffer(inflated, dtype="<f4", count=usable // 4)[1:], "zlib float32"
    except zlib.error as exc:
        if magic == "[Paramco32]":
            raise FrameReadError(path, f"compressed body is corrupt or truncated ({exc})") from exc
        if magic == "[Paramet32]":
            values, layout = np.frombuffer(raw, dtype="<f4", offset=HEADER_BYTES + 4), "raw float32"
        else:
            usable = (len(raw) - HEADER_BYTES - 2) // 2 * 2
            values = np.frombuffer(raw, dtype="<i2", offset=HEADER_BYTES + 2, count=usable // 2)
            layout = "raw int16"
    if values.size < need:
        raise FrameReadError(
            path,
            f"truncated data: {n_ch} images of {ny}×{nx} need {need} values, file has {values.size}",
        )
    return values[:need].reshape(n_ch, ny, nx), layout


def _dacto_unit(header: dict[str, str]) -> tuple[float, str]:
    """Return (metres per Dacto unit, label) from the lateral self-consistency check."""
    dx = _number(header, ("Delta X [Dac]", "Delta X"))
    dacto_xy = _number(header, ("Dacto[A]xy",))
    length = _number(header, ("Length x[A]",))
    nx = _number(header, ("Num.X",))
    if dx and dacto_xy and length and nx:
        ratio = (length / nx) / (dx * dacto_xy)
        if abs(ratio - 10.0) < 0.5:
            return 1e-9, "nm (from lateral calibration)"
        if abs(ratio - 1.0) < 0.05:
            return _ANGSTROM, "angstrom (from lateral calibration)"
    return _ANGSTROM, "angstrom (assumed)"


@guard_reader
def list_channels(path: str | Path) -> list[tuple[str, tuple[str, ...]]]:
    """Return ``[(channel name, stored directions), …]`` of a Createc file."""
    path = Path(path)
    with path.open("rb") as fh:
        magic, header = parse_header(fh.read(HEADER_BYTES), path)
    n_ch = _count(header, "Channels", path, default=1)
    if n_ch > 64:
        raise FrameReadError(path, f"header field 'Channels' = {n_ch} is implausible (> 64)")
    out: dict[str, list[str]] = {}
    for name, direction, _ in _channel_names(header, n_ch):
        out.setdefault(name, []).append(direction)
    return [(n, tuple(d)) for n, d in out.items()]


@guard_reader
def read_createc(
    path: str | Path, channel: str | None = None, direction: str = "forward"
) -> STMFrame:
    """Read one image of a Createc ``.dat`` file (default channel: Topography)."""
    path = Path(path)
    check_direction(direction)
    raw = path.read_bytes()
    magic, header = parse_header(raw, path)
    images, layout = _images(raw, magic, header, path)
    table = _channel_names(header, images.shape[0])
    wanted = "Topography" if channel is None else channel
    matches = [t for t in table if t[0].lower() == wanted.lower()]
    if not matches:
        if channel is None:
            matches = [t for t in table if t[1] == direction][:1]
        if not matches:
            names = ", ".join(dict.fromkeys(t[0] for t in table))
            raise NoSuchChannelError(path, f"no channel {wanted!r}; available: {names}")
    chosen = [t for t in matches if t[1] == direction]
    if not chosen:
        raise FrameReadError(
            path, f"channel {matches[0][0]!r} has no {direction} image (stored: forward)"
        )
    name, _, index = chosen[0]
    data = images[index].astype(np.float64)
    # Rows never reached by an unfinished scan are left as zeros at the end of the block.
    zero_rows = np.flatnonzero(~(data == 0.0).all(axis=1))
    last = int(zero_rows[-1]) + 1 if zero_rows.size else 0
    if 0 < last < data.shape[0]:
        data[last:] = np.nan
    metadata: dict[str, object] = {
        "format": "createc-dat",
        "magic": magic,
        "layout": layout,
        "header": header,
    }
    if name == "Topography":
        dacto_z = _number(header, ("Dacto[A]z",))
        if dacto_z is None:
            raise FrameReadError(path, "header field 'Dacto[A]z' (Z calibration) is missing")
        per_unit, label = _dacto_unit(header)
        data *= dacto_z * per_unit
        unit = "m"
        metadata["dacto_unit"] = label
    else:
        unit = "DAC"
    bias_mV = _number(header, ("BiasVolt.[mV]", "Biasvolt[mV]"))
    setpoint = _number(header, ("Current[A]",))
    if setpoint is None:
        log_iset = _number(header, ("FBLogIset",))
        setpoint = None if log_iset is None else log_iset * 1e-12
    length_x = _number(header, ("Length x[A]",))
    length_y = _number(header, ("Length y[A]",))
    return STMFrame(
        data=np.ascontiguousarray(data[::-1]),
        unit=unit,
        width_m=abs(length_x) * _ANGSTROM if length_x else None,
        height_m=abs(length_y) * _ANGSTROM if length_y else None,
        angle_deg=_number(header, ("Rotation",)) or 0.0,
        scan_up=None,
        channel=name,
        direction=direction,  # type: ignore[arg-type]
        bias_V=None if bias_mV is None else bias_mV * 1e-3,
        setpoint_A=setpoint,
        source=str(path),
        metadata=metadata,
    )
