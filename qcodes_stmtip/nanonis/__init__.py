"""Nanonis TCP interface: the wire codec (:mod:`.protocol`), the client (:mod:`.client`) and
the server core (:mod:`.server`).
"""

from qcodes_stmtip.nanonis.client import FrameData, NanonisClient
from qcodes_stmtip.nanonis.protocol import (
    NanonisConnectionError,
    NanonisError,
    NanonisProtocolError,
    NanonisTimeoutError,
)

__all__ = [
    "FrameData",
    "NanonisClient",
    "NanonisConnectionError",
    "NanonisError",
    "NanonisProtocolError",
    "NanonisTimeoutError",
]
