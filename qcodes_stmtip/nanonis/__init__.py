"""Nanonis TCP interface: the wire codec (:mod:`.protocol`) and the client (:mod:`.client`)."""

from qcodes_stmtip.nanonis.protocol import (
    NanonisConnectionError,
    NanonisError,
    NanonisProtocolError,
    NanonisTimeoutError,
)

__all__ = [
    "NanonisConnectionError",
    "NanonisError",
    "NanonisProtocolError",
    "NanonisTimeoutError",
]
