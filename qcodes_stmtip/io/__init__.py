"""STM file readers: every supported format becomes one :class:`STMFrame`.

>>> from qcodes_stmtip.io import read_frame
>>> frame = read_frame("scan_001.sxm", channel="Z", direction="forward")  # doctest: +SKIP

Importing this package needs numpy only; format packages (``access2thematrix``,
``spym``, Pillow) are imported when a file of their format is read. ``.sxm``,
``.gwy`` and Createc ``.dat`` are parsed here, with every size checked against the
file (no hang, no decompression bomb). Every reader error is a one-line
:class:`FrameReadError` naming the file (:func:`~qcodes_stmtip.io.frame.guard_reader`).
"""

from qcodes_stmtip.io.frame import DIRECTIONS, FrameReadError, NoSuchChannelError, STMFrame
from qcodes_stmtip.io.read import SUPPORTED_SUFFIXES, is_supported, list_channels, read_frame
from qcodes_stmtip.io.sources import find_frame_files

__all__ = [
    "DIRECTIONS",
    "FrameReadError",
    "NoSuchChannelError",
    "STMFrame",
    "SUPPORTED_SUFFIXES",
    "find_frame_files",
    "is_supported",
    "list_channels",
    "read_frame",
]
