"""External bias-pulse generator (Keysight/Agilent 335xx via PyMeasure) bounded by the safety envelope.

:class:`PulseGenerator` bridges :class:`pymeasure.instruments.agilent.Agilent33500` into
QCoDeS and adds :meth:`PulseGenerator.pulse`: one rectangular pulse from a 0 V baseline to
``amplitude_V`` for ``width_s``, as a triggered one-cycle burst fired by a bus trigger
(``*TRG``). The amplitude and width pass the same
:meth:`~qcodes_stmtip.safety.SafetyEnvelope.check_pulse` as the STM's own ``bias_pulse``
(the generator's envelope and the STM's), and the level/width parameters carry envelope
validators, so an out-of-envelope request raises
:class:`~qcodes_stmtip.safety.SafetyViolation` before anything is sent. After
configuring, the generator's event status register (``*ESR?``) is read and any
command/execution error raises :class:`PulseGeneratorError`.

The output is assumed to drive a high-impedance bias input: ``output_load`` is set to
``INF`` so that the programmed levels are the volts at the tip junction.

Simulation. The pyvisa-sim 335xx (``qcodes_stmtip/lab/sim_yaml/agilent_33500.sim.yaml``) cannot reach the
simulated microscope; with ``simulate_pulse_on_stm=True`` (pyvisa-sim backend only) each
fired pulse is replayed on the simulated controller as ``NanonisSTM.bias_pulse`` so that
the simulated tip sees it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qcodes.validators import Enum, Ints, Numbers

from qcodes_stmtip.lab.pymeasure_bridge import PyMeasureInstrument
from qcodes_stmtip.lab.stm_link import StmLink
from qcodes_stmtip.safety import EnvelopeValidator, SafetyEnvelope

if TYPE_CHECKING:
    from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM

__all__ = ["PulseGenerator", "PulseGeneratorError"]

#: Smallest pulse level step the 335xx resolves (V); a smaller amplitude is refused.
MIN_AMPLITUDE_V = 1e-3
#: Shortest pulse the 335xx produces (s).
MIN_WIDTH_S = 16e-9
#: Edge time used for the pulses (s): the 335xx minimum for clean rectangular pulses.
EDGE_TIME_S = 8.4e-9


class PulseGeneratorError(RuntimeError):
    """The generator reported a command or execution error (``*ESR?`` non-zero)."""


class PulseGenerator(PyMeasureInstrument):
    """A Keysight/Agilent 33500-series generator used for tip-conditioning bias pulses.

    Args:
        name: QCoDeS instrument name.
        address: VISA resource of the generator (``"TCPIP::<host>::inst0::INSTR"``, GPIB, USB).
        stm: the STM (or its instrument name) whose envelope also bounds the pulses.
        safety: the generator's own envelope (or a dict of its fields).
        simulate_pulse_on_stm: simulation only: replay each pulse with ``stm.bias_pulse``.
        pyvisa_sim_file: pyvisa-sim definition to simulate the generator with.
        pymeasure_class: PyMeasure class (default ``Agilent33500``; the 33521A/33509B family).
        pymeasure_kwargs: more keyword arguments for the PyMeasure class / VISA adapter.
    """

    def __init__(
        self,
        name: str,
        address: str,
        *,
        stm: NanonisSTM | str | None = None,
        safety: SafetyEnvelope | Mapping[str, Any] | None = None,
        simulate_pulse_on_stm: bool = False,
        pyvisa_sim_file: str | Path | None = None,
        pymeasure_class: str = "pymeasure.instruments.agilent.Agilent33500",
        pymeasure_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.link = StmLink(name, stm, safety)
        options: dict[str, Any] = {"read_termination": "\n", "write_termination": "\n"}
        options.update(pymeasure_kwargs or {})
        super().__init__(
            name,
            address,
            pymeasure_class=pymeasure_class,
            pyvisa_sim_file=pyvisa_sim_file,
            pymeasure_kwargs=options,
            **kwargs,
        )
        if simulate_pulse_on_stm and (not self.simulated or not self.link.configured):
            self.close()
            raise ValueError(
                f"{name}: simulate_pulse_on_stm needs a pyvisa-sim generator and the stm"
            )
        self.simulate_pulse_on_stm = bool(simulate_pulse_on_stm)
        self._swing_checked = False
        self.metadata["stm"] = self.link.stm_name
        if self.link.own_safety is not None:
            self.metadata["safety_envelope"] = self.link.own_safety.as_dict()
        link = self.link

        self.add_bridged_parameter("shape", "shape", vals=Enum(
            "SIN", "SQU", "TRI", "RAMP", "PULS", "PRBS", "NOIS", "ARB", "DC"))
        for level, other in (("voltage_high", "voltage_low"), ("voltage_low", "voltage_high")):
            self.add_bridged_parameter(
                level,
                level,
                unit="V",
                vals=EnvelopeValidator(link.check_pulse_amplitude, "|level| within the pulse envelope"),
                set_parser=lambda v, other=other: self._check_swing(float(v), other),
                docstring=f"{level.replace('_', ' ').capitalize()} level of the output (V). "
                "Each level and the swing between the levels must be inside the pulse "
                "envelope (max_pulse_amplitude_V).",
            )
        self.add_bridged_parameter(
            "pulse_width", "pulse_width", unit="s",
            vals=EnvelopeValidator(link.check_pulse_width, "0 < width <= max_pulse_width_s",
                                   valid_values=(1e-3,)),
        )
        self.add_bridged_parameter("pulse_period", "pulse_period", unit="s", vals=Numbers(33e-9, 1e6))
        self.add_bridged_parameter(
            "pulse_transition", "pulse_transition", unit="s", vals=Numbers(8.4e-9, 1e-6))
        self.add_bridged_parameter("burst_state", "burst_state", vals=Enum(True, False))
        self.add_bridged_parameter("burst_mode", "burst_mode", vals=Enum("TRIG", "GAT"))
        self.add_bridged_parameter("burst_ncycles", "burst_ncycles", vals=Ints(1, 99999))
        self.add_bridged_parameter("trigger_source", "trigger_source", vals=Enum("IMM", "EXT", "BUS"))
        self.add_bridged_parameter("output", "output", vals=Enum(True, False))
        self.add_bridged_parameter("output_load", "output_load", vals=Enum("50", "INF"))

    # ---- actions -----------------------------------------------------------------------
    def pulse(self, amplitude_V: float, width_s: float, *, timeout_s: float = 10.0) -> None:
        """Fire one rectangular pulse 0 V → ``amplitude_V`` → 0 V lasting ``width_s`` seconds.

        Configures a bus-triggered one-cycle pulse burst (shape, levels, width, period =
        max(10·width, width + 1 µs), minimal edges, high-Z load, output on), fires it with
        ``*TRG``, waits for the operation to complete (``*OPC?``, up to ``timeout_s``) and
        checks ``*ESR?``. Raises SafetyViolation before sending anything when the pulse is
        outside an envelope, ValueError when it is below the generator's resolution.
        """
        self.link.check_pulse(amplitude_V, width_s)
        amplitude, width = float(amplitude_V), float(width_s)
        if abs(amplitude) < MIN_AMPLITUDE_V:
            raise ValueError(
                f"{self.name}.pulse: |amplitude_V| must be >= {MIN_AMPLITUDE_V} V, got {amplitude_V!r}"
            )
        if width < MIN_WIDTH_S:
            raise ValueError(f"{self.name}.pulse: width_s must be >= {MIN_WIDTH_S} s, got {width_s!r}")
        if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"{self.name}.pulse: timeout_s must be > 0 s, got {timeout_s!r}")
        self.configure_single_pulse(amplitude, width)
        self.output(True)
        self._check_errors("configuring the pulse")
        connection = self.driver.adapter.connection
        previous_timeout = getattr(connection, "timeout", None)  # VISA timeout, ms
        if isinstance(previous_timeout, int | float):
            connection.timeout = max(previous_timeout, 1000 * (timeout_s + width))
        try:
            self.driver.trigger()
            done = str(self.driver.ask("*OPC?")).strip()
        finally:
            if isinstance(previous_timeout, int | float):
                connection.timeout = previous_timeout
        if done != "1":
            raise PulseGeneratorError(f"{self.name}: *OPC? answered {done!r} after the pulse")
        self._check_errors("firing the pulse")
        if self.simulate_pulse_on_stm:
            stm = self.link.stm()
            if stm is None:  # checked at construction; the STM may have been closed since
                raise PulseGeneratorError(f"{self.name}: no STM to show the simulated pulse on")
            stm.bias_pulse(amplitude_V=amplitude, width_s=width)

    def configure_single_pulse(self, amplitude_V: float, width_s: float) -> None:
        """Program (but do not fire) one bus-triggered pulse from 0 V to ``amplitude_V``, ``width_s`` long.

        The output state is left as it is. Envelope checks as in :meth:`pulse`.
        """
        self.link.check_pulse(amplitude_V, width_s)
        amplitude, width = float(amplitude_V), float(width_s)
        self.output_load("INF")
        self.shape("PULS")
        # the final swing |amplitude| was checked above; the levels are set one by one,
        # ordered so that high > low holds at every step
        self._swing_checked = True
        try:
            if amplitude > 0:
                self.voltage_high(amplitude)
                self.voltage_low(0.0)
            else:
                self.voltage_low(amplitude)
                self.voltage_high(0.0)
        finally:
            self._swing_checked = False
        self.pulse_transition(EDGE_TIME_S)
        self.pulse_period(max(10 * width, width + 1e-6))
        self.pulse_width(width)
        self.burst_mode("TRIG")
        self.burst_ncycles(1)
        self.burst_state(True)
        self.trigger_source("BUS")

    # ---- internals ---------------------------------------------------------------------
    def _check_swing(self, value: float, other: str) -> float:
        if self._swing_checked:
            return value
        other_level = self.parameters[other].cache.get(get_if_invalid=False)
        if other_level is not None:
            self.link.check_pulse_amplitude(value - float(other_level))
        return value

    def _check_errors(self, doing: str) -> None:
        esr = int(str(self.driver.ask("*ESR?")).strip().lstrip("+") or 0)
        if esr & 0b00111100:  # query, device-dependent, execution and command errors
            raise PulseGeneratorError(
                f"{self.name}: the generator reported an error while {doing} (*ESR? = {esr})"
            )
