"""Coarse piezo positioner (attocube ANC300 via PyMeasure) for moving to a fresh sample area.

:class:`CoarsePositioner` bridges :class:`pymeasure.instruments.attocube.ANC300Controller`
into QCoDeS (per-axis step frequency, step voltage, mode, capacitance) and adds the one
action a conditioning loop needs: :meth:`CoarsePositioner.move_to_fresh_area`, a lateral
coarse move that is

* bounded by the safety envelope (``max_motor_steps`` per move; the positioner's own
  envelope and the STM's — it refuses, never clamps, and sends nothing when refused);
* interlocked with the STM: the tip is withdrawn first and the move is refused if the STM
  still reports its z feedback on (never coarse-move with the tip in tunnelling range);
* optionally followed by the STM's auto-approach.

Simulation. The pyvisa-sim ANC300 (``qcodes_stmtip/lab/sim_yaml/attocube_anc300.sim.yaml``) answers the
console protocol but cannot move anything. With ``simulate_motion_on_stm=True`` (allowed
only on a pyvisa-sim backend) every accepted move is replayed on the simulated Nanonis
controller as the equivalent ``Motor.StartMove`` (``NanonisSTM.coarse_move``), whose
sample stage then really shows a fresh area. Never enable it with real hardware.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qcodes.validators import Enum, Ints, Numbers

from qcodes_stmtip.lab.pymeasure_bridge import PyMeasureInstrument
from qcodes_stmtip.lab.stm_link import StmLink
from qcodes_stmtip.safety import SafetyEnvelope

if TYPE_CHECKING:
    from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM

__all__ = ["CoarseMove", "CoarsePositioner", "PositionerInterlockError"]

#: Lateral directions of a fresh-area move (the Nanonis ``Motor.StartMove`` names).
LATERAL_DIRECTIONS = ("X+", "X-", "Y+", "Y-")
#: ANC300 axis modes (``setm``).
AXIS_MODES = ("gnd", "inp", "cap", "stp", "off", "stp+", "stp-")


class PositionerInterlockError(RuntimeError):
    """A coarse move was refused because the tip could be in tunnelling range; nothing moved."""


@dataclass(frozen=True)
class CoarseMove:
    """Record of one coarse move: direction, steps, ANC300 axis, and whether the tip re-approached."""

    direction: str
    steps: int
    axis: str
    approached: bool


class CoarsePositioner(PyMeasureInstrument):
    """An attocube ANC300 coarse positioner in a QCoDeS station.

    Args:
        name: QCoDeS instrument name.
        address: VISA resource of the ANC300 (``"TCPIP::<host>::7230::SOCKET"`` or a
            serial ``"ASRL<n>::INSTR"``).
        axes: the ANC300 axes in order (axis ids 1, 2, …); each becomes a PyMeasure
            ``Axis`` and a group of QCoDeS parameters ``<axis>_frequency``, …
        direction_axes: which axis moves along sample X, Y and Z (default x, y, z).
        passwd: ANC300 console password (factory default ``"123456"``).
        stm: the :class:`~qcodes_stmtip.drivers.nanonis_stm.NanonisSTM` (or its instrument
            name) to withdraw before moving and to re-approach after; ``None`` = no STM.
        safety: the positioner's own envelope (or a dict of its fields); the STM's
            envelope applies as well.
        simulate_motion_on_stm: simulation only (pyvisa-sim backend): replay each move on
            the simulated controller with ``stm.coarse_move`` so that it shows a fresh area.
        query_delay: PyMeasure's delay between a command and reading its reply, s.
        pyvisa_sim_file: pyvisa-sim definition to simulate the ANC300 with.
        pymeasure_kwargs: more keyword arguments for ``ANC300Controller`` / its VISA adapter.

    Connecting logs in to the ANC300 console (a side effect of construction).
    """

    def __init__(
        self,
        name: str,
        address: str,
        *,
        axes: Sequence[str] = ("x", "y", "z"),
        direction_axes: Mapping[str, str] | None = None,
        passwd: str = "123456",
        stm: NanonisSTM | str | None = None,
        safety: SafetyEnvelope | Mapping[str, Any] | None = None,
        simulate_motion_on_stm: bool = False,
        query_delay: float = 0.05,
        pyvisa_sim_file: str | Path | None = None,
        pymeasure_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        axes = tuple(axes)
        if not axes or len(set(axes)) != len(axes) or not all(
            isinstance(a, str) and a.isidentifier() for a in axes
        ):
            raise ValueError(f"{name}: axes must be distinct identifiers, got {axes!r}")
        mapping = dict(direction_axes or {"X": "x", "Y": "y", "Z": "z"})
        for key, axis in mapping.items():
            if key not in ("X", "Y", "Z"):
                raise ValueError(f"{name}: direction_axes keys must be 'X', 'Y' or 'Z', got {key!r}")
            if axis not in axes:
                raise ValueError(f"{name}: direction_axes[{key!r}] = {axis!r} is not one of axes {axes}")
        if not (isinstance(query_delay, int | float) and 0 <= query_delay <= 5):
            raise ValueError(f"{name}: query_delay must be in [0, 5] s, got {query_delay!r}")
        self.link = StmLink(name, stm, safety)
        options = {"axisnames": list(axes), "passwd": str(passwd), "query_delay": float(query_delay)}
        options.update(pymeasure_kwargs or {})
        super().__init__(
            name,
            address,
            pymeasure_class="pymeasure.instruments.attocube.ANC300Controller",
            pyvisa_sim_file=pyvisa_sim_file,
            pymeasure_kwargs=options,
            **kwargs,
        )
        if simulate_motion_on_stm and not self.simulated:
            self.close()
            raise ValueError(
                f"{name}: simulate_motion_on_stm is only allowed with a pyvisa-sim ANC300 "
                "(it would move a real sample twice)"
            )
        if simulate_motion_on_stm and not self.link.configured:
            self.close()
            raise ValueError(f"{name}: simulate_motion_on_stm needs the stm")
        self.simulate_motion_on_stm = bool(simulate_motion_on_stm)
        self.axes = axes
        self.direction_axes = mapping
        self.moves: list[CoarseMove] = []
        self.metadata["direction_axes"] = mapping
        self.metadata["stm"] = self.link.stm_name
        self.metadata["simulate_motion_on_stm"] = self.simulate_motion_on_stm
        if self.link.own_safety is not None:
            self.metadata["safety_envelope"] = self.link.own_safety.as_dict()

        for axis in axes:
            self.add_bridged_parameter(
                f"{axis}_frequency", f"{axis}.frequency", unit="Hz", vals=Ints(1, 10000),
                label=f"{axis} step frequency",
            )
            self.add_bridged_parameter(
                f"{axis}_voltage", f"{axis}.voltage", unit="V", vals=Numbers(0, 150),
                label=f"{axis} step voltage",
            )
            self.add_bridged_parameter(
                f"{axis}_mode", f"{axis}.mode", vals=Enum(*AXIS_MODES), label=f"{axis} mode",
            )
            self.add_bridged_parameter(
                f"{axis}_output_voltage", f"{axis}.output_voltage", unit="V",
                get_parser=float, label=f"{axis} output voltage",
            )
            self.add_bridged_parameter(
                f"{axis}_capacitance", f"{axis}.capacity", unit="F",
                get_parser=lambda nf: float(nf) * 1e-9, label=f"{axis} piezo capacitance",
                docstring=f"Last measured capacitance of piezo axis {axis} (F; the ANC300 reports nF).",
            )

    # ---- identification ------------------------------------------------------------
    def get_idn(self) -> dict[str, str | None]:
        """Vendor, model and firmware from the ANC300 ``ver`` reply; the board serial."""
        version = str(self.driver.version)
        serial = str(self.driver.controllerBoardVersion)
        return {"vendor": "attocube", "model": "ANC300", "serial": serial, "firmware": version}

    # ---- actions -----------------------------------------------------------------------
    def move_to_fresh_area(
        self,
        direction: str = "X+",
        steps: int = 20,
        *,
        approach: bool = True,
        approach_timeout_s: float = 120.0,
        confirm_tip_withdrawn: bool = False,
    ) -> CoarseMove:
        """Step laterally ``steps`` times in ``direction`` (``"X+"``, ``"X-"``, ``"Y+"``, ``"Y-"``).

        Order: envelope check (SafetyViolation, nothing sent), stop a running scan,
        withdraw the STM tip and verify its feedback is off (:class:`PositionerInterlockError` otherwise), step the
        ANC300 axis (blocking; the axis is grounded afterwards), replay on the simulated
        controller if ``simulate_motion_on_stm``, then — if ``approach`` — start the STM's
        auto-approach and wait up to ``approach_timeout_s`` for tunnelling feedback.
        Without an STM the move is refused unless ``confirm_tip_withdrawn=True`` states
        that the tip is out of range (and ``approach`` must then be False).
        """
        if direction not in LATERAL_DIRECTIONS:
            raise ValueError(
                f"{self.name}.move_to_fresh_area: direction must be one of {LATERAL_DIRECTIONS}, "
                f"got {direction!r}"
            )
        if not (isinstance(approach_timeout_s, int | float) and approach_timeout_s > 0):
            raise ValueError(
                f"{self.name}.move_to_fresh_area: approach_timeout_s must be > 0 s, "
                f"got {approach_timeout_s!r}"
            )
        self.link.check_motor_steps(steps)
        if steps == 0:
            raise ValueError(f"{self.name}.move_to_fresh_area: steps must be >= 1 to reach a fresh area")
        stm = self.link.stm()
        if stm is None:
            if not confirm_tip_withdrawn:
                raise PositionerInterlockError(
                    f"{self.name}: no STM to withdraw; pass stm= or confirm_tip_withdrawn=True "
                    "once the tip is out of tunnelling range"
                )
            if approach:
                raise ValueError(f"{self.name}.move_to_fresh_area: approach=True needs the stm")
        else:
            self._withdraw(stm)
        axis = self.direction_axes[direction[0]]
        signed = steps if direction[1] == "+" else -steps
        getattr(self.driver, axis).move(signed, gnd=True)
        if self.simulate_motion_on_stm and stm is not None:
            stm.coarse_move(direction, steps)
        approached = False
        if approach and stm is not None:
            self._approach(stm, float(approach_timeout_s))
            approached = True
        record = CoarseMove(direction, int(steps), axis, approached)
        self.moves.append(record)
        return record

    def retract(self, steps: int) -> CoarseMove:
        """Step the Z axis ``steps`` times away from the sample (``"Z+"``), tip withdrawn first.

        Coarse steps towards the sample are not offered: approach with the STM's
        auto-approach, which stops on tunnelling current.
        """
        self.link.check_motor_steps(steps)
        stm = self.link.stm()
        if stm is None:
            raise PositionerInterlockError(f"{self.name}.retract: needs the stm to withdraw first")
        self._withdraw(stm)
        axis = self.direction_axes.get("Z")
        if axis is None:
            raise ValueError(f"{self.name}.retract: no Z axis in direction_axes")
        if steps:
            getattr(self.driver, axis).move(int(steps), gnd=True)
            if self.simulate_motion_on_stm:
                stm.coarse_move("Z+", steps)
        record = CoarseMove("Z+", int(steps), axis, False)
        self.moves.append(record)
        return record

    def stop(self) -> None:
        """Stop every axis (``stop <n>``) and ground them all."""
        self.driver.stop_all()
        self.driver.ground_all()

    # ---- internals ---------------------------------------------------------------------
    def _withdraw(self, stm: NanonisSTM) -> None:
        if stm.scan_running():  # never coarse-move under a running scan
            stm.stop_scan()
        stm.withdraw(wait=True)
        if stm.feedback.get():
            raise PositionerInterlockError(
                f"{self.name}: {stm.name} still reports z feedback ON after withdraw; "
                "refusing to coarse-move with the tip possibly in tunnelling range"
            )

    def _approach(self, stm: NanonisSTM, timeout_s: float) -> None:
        stm.auto_approach(True)
        deadline = time.monotonic() + timeout_s
        while stm.client.auto_approach_on_off_get():
            if time.monotonic() > deadline:
                stm.auto_approach(False)
                raise TimeoutError(
                    f"{self.name}: the auto-approach of {stm.name} did not finish within "
                    f"{timeout_s} s (stopped; the tip stays withdrawn)"
                )
            time.sleep(0.02)
        if not stm.feedback.get():
            raise PositionerInterlockError(
                f"{self.name}: the auto-approach of {stm.name} ended without tunnelling feedback"
            )
