"""How the lab's other instruments find the STM and the safety envelope that bounds them.

An instrument beside the STM (positioner, pulse generator) may be given the STM driver
itself or, in a station YAML, its instrument *name*; the name is looked up when it is
first needed, so the station may load the instruments in any order. The limits that
bound an action are the instrument's own :class:`~qcodes_stmtip.safety.SafetyEnvelope`
(if it has one) **and** the STM's: an action must pass every envelope.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from qcodes.instrument import Instrument

from qcodes_stmtip.safety import SafetyEnvelope

if TYPE_CHECKING:
    from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM

__all__ = ["StmLink"]


class StmLink:
    """A lazily resolved reference to the STM plus an optional own envelope.

    Args:
        owner: name of the instrument that holds the link (for messages).
        stm: the STM driver, its QCoDeS instrument name, or ``None`` (no STM).
        safety: this instrument's own envelope (or a dict of its fields), or ``None``.
    """

    def __init__(
        self,
        owner: str,
        stm: NanonisSTM | str | None,
        safety: SafetyEnvelope | Mapping[str, Any] | None,
    ) -> None:
        if stm is not None and not isinstance(stm, str | Instrument):
            raise ValueError(
                f"{owner}: stm must be a NanonisSTM, its instrument name or None, got {stm!r}"
            )
        self.owner = owner
        self._stm = stm
        self.own_safety: SafetyEnvelope | None = (
            None if safety is None else SafetyEnvelope.coerce(safety)
        )

    @property
    def configured(self) -> bool:
        """Whether an STM was given (by object or name)."""
        return self._stm is not None

    @property
    def stm_name(self) -> str | None:
        """The STM's instrument name, or ``None``."""
        if self._stm is None:
            return None
        return self._stm if isinstance(self._stm, str) else self._stm.name

    def stm(self) -> NanonisSTM | None:
        """The STM driver (looked up by name on first use), or ``None`` if none was given.

        Raises KeyError naming the instrument when the named STM is not open.
        """
        if isinstance(self._stm, str):
            try:
                self._stm = Instrument.find_instrument(self._stm)  # type: ignore[assignment]
            except KeyError:
                raise KeyError(
                    f"{self.owner}: the STM instrument {self._stm!r} is not open; load it "
                    "(e.g. station.load_instrument) before using this instrument"
                ) from None
        return self._stm  # type: ignore[return-value]

    def envelopes(self) -> list[SafetyEnvelope]:
        """Every envelope that bounds an action: the own one, then the STM's.

        Without either, the conservative :class:`SafetyEnvelope` defaults apply.
        """
        found: list[SafetyEnvelope] = []
        if self.own_safety is not None:
            found.append(self.own_safety)
        stm = self.stm()
        stm_safety = getattr(stm, "safety", None)
        if isinstance(stm_safety, SafetyEnvelope):
            found.append(stm_safety)
        return found or [SafetyEnvelope()]

    def check_motor_steps(self, steps: int) -> None:
        """Raise :class:`~qcodes_stmtip.safety.SafetyViolation` unless every envelope allows ``steps``."""
        for envelope in self.envelopes():
            envelope.check_motor_steps(steps)

    def check_pulse(self, amplitude_V: float, width_s: float) -> None:
        """Raise :class:`~qcodes_stmtip.safety.SafetyViolation` unless every envelope allows the pulse."""
        for envelope in self.envelopes():
            envelope.check_pulse(amplitude_V, width_s)

    def check_pulse_amplitude(self, amplitude_V: float) -> None:
        """Raise unless every envelope allows a pulse of ``amplitude_V`` (of its longest width)."""
        for envelope in self.envelopes():
            envelope.check_pulse(amplitude_V, envelope.max_pulse_width_s)

    def check_pulse_width(self, width_s: float) -> None:
        """Raise unless every envelope allows a pulse ``width_s`` long (of zero amplitude)."""
        for envelope in self.envelopes():
            envelope.check_pulse(0.0, width_s)
