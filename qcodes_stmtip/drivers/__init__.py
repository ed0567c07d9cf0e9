"""QCoDeS instrument drivers: :class:`~qcodes_stmtip.drivers.nanonis_stm.NanonisSTM`."""

from qcodes_stmtip.drivers.nanonis_stm import FrameShapeError, NanonisSTM

__all__ = ["FrameShapeError", "NanonisSTM"]
