"""Per-frame tip-state results and the QCoDeS parameters they are stored as.

One :class:`TipStateResult` per frame; :class:`ResultParameters` holds one plain
(instrument-less) QCoDeS :class:`~qcodes.parameters.Parameter` per stored quantity, so
the same objects can be registered with a ``Measurement`` (setpoint: the frame index)
or passed to ``dond`` as measured parameters. Stored per frame:

=========================  =======  ==========================================================
name                       type     meaning
=========================  =======  ==========================================================
``tip_state``              text     majority class, ``"uncertain"`` (below its threshold) or
                                    ``"unclassified"`` (the frame could not be classified)
``tip_quality``            text     ``"good"`` / ``"bad"`` / ``"uncertain"`` / ``"unclassified"``
``tip_p_<class>``          numeric  ensemble-mean probability of each class (NaN if unclassified)
``tip_vote_<i>``           text     class ranked first by member *i* (label: the member name)
``tip_change_probability`` numeric  P(tip change) of the binary network (NaN without one)
``frame_timestamp``        numeric  acquisition time of the frame, s since the Unix epoch
``tip_reason``             text     why the verdict is not ``"good"``: the rule that fired and its
                                    numbers, or why the frame is unclassified (empty when good)
``tip_p_bad``              numeric  calibrated P(bad tip) behind ``tip_quality``
                                    (:mod:`qcodes_stmtip.classify.decision`; NaN under the vote rule)
=========================  =======  ==========================================================

When scans are watched while they are acquired
(:meth:`~qcodes_stmtip.monitor.TipStateMonitor.watch_scan`), :class:`PartialParameters`
add, per frame (against ``frame_index``):

===========================  =======  ========================================================
``tip_decided_line``         numeric  lines acquired when the frame's state was decided: the
                                      first partial check that was confidently bad or flagged
                                      a tip change, else the lines the frame ended with
``tip_partial_verdict``      text     ``"bad"``, ``"tip_change"`` or ``""`` (no partial check
                                      decided: the state is the whole frame's)
``tip_lines_acquired``       numeric  lines the stored frame holds (the rest are NaN)
``tip_scan_stopped``         numeric  1 when the scan was stopped early on the verdict, else 0
===========================  =======  ========================================================

and per check slot (against ``frame_index`` and ``tip_window``: slot *j* holds the check
taken once *j* + 1 windows of ``every_lines`` lines were acquired, i.e. at ``lines //
every_lines − 1``; every frame gets the same ``(lines − 1) // every_lines`` slots, NaN
where no check was taken — before ``min_lines``, after an early stop, or a partial frame
dropped as stale — so the series form a grid in xarray): ``tip_window_lines`` (lines
acquired at the check), ``tip_window_p_good`` (summed probability of the good classes),
``tip_window_p_tip_change`` (NaN without a tip-change network) and ``tip_window_verdict``
(``bad``/``tip_change``/``good``/``open``/``unclassified``; empty for an empty slot).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from qcodes.parameters import Parameter
from qcodes.validators import Numbers, Strings

from qcodes_stmtip.taxonomy import METADATA_KEY, UNCERTAIN, UNCLASSIFIED

if TYPE_CHECKING:
    from qcodes.dataset import Measurement

__all__ = ["DECISIVE", "METADATA_KEY", "UNCLASSIFIED", "UNCERTAIN_STATE", "PartialParameters",
           "ResultParameters", "ScanRecord", "TipStateResult", "WindowCheck"]

#: Partial-check verdicts that decide a frame (and stop its scan when watching aborts).
DECISIVE = ("bad", "tip_change")

#: State of a frame whose majority class is below its confidence threshold
#: (:data:`qcodes_stmtip.taxonomy.UNCERTAIN`, under the monitor's older name).
UNCERTAIN_STATE = UNCERTAIN


@dataclass(frozen=True)
class TipStateResult:
    """The classification of one frame.

    ``probabilities`` maps class → ensemble-mean probability; ``votes`` is each member's
    first-ranked class (member order of the bundle); ``timestamp`` is the frame's
    acquisition time (s since the epoch); ``latency_s`` the wall time from submission to
    the result; ``reason`` says why ``quality`` is not ``"good"`` (empty when it is).
    """

    frame_index: int
    state: str
    quality: str
    probabilities: dict[str, float]
    votes: tuple[str, ...]
    tip_change_probability: float
    timestamp: float
    reason: str = ""
    latency_s: float = math.nan
    extra: dict[str, object] = field(default_factory=dict)
    p_bad: float = math.nan

    @property
    def classified(self) -> bool:
        """True unless the frame could not be classified."""
        return self.state != UNCLASSIFIED

    @property
    def good(self) -> bool:
        """True when the tip was judged good on this frame."""
        return self.quality == "good"

    @classmethod
    def unclassified(cls, frame_index: int, classes: Sequence[str], n_members: int,
                     timestamp: float, reason: str, latency_s: float = math.nan) -> TipStateResult:
        """A result for a frame that could not be classified (NaN probabilities)."""
        return cls(frame_index, UNCLASSIFIED, UNCLASSIFIED, {c: math.nan for c in classes},
                   (UNCLASSIFIED,) * n_members, math.nan, timestamp, reason, latency_s)


class ResultParameters:
    """The QCoDeS parameters a monitor stores per frame (see the module table).

    ``getter(name)`` supplies each parameter's value on ``get()`` (used by ``dond``);
    :meth:`values` turns a :class:`TipStateResult` into ``(parameter, value)`` pairs
    for ``DataSaver.add_result``.
    """

    def __init__(self, classes: Sequence[str], member_names: Sequence[str],
                 getter: Callable[[str], object]) -> None:
        self.classes = tuple(classes)
        self.member_names = tuple(member_names)

        def make(name: str, label: str, unit: str, text: bool) -> Parameter:
            return Parameter(name, label=label, unit=unit, get_cmd=lambda: getter(name),
                             set_cmd=False, vals=Strings() if text else Numbers())

        self.state = make("tip_state", "Tip state", "", True)
        self.quality = make("tip_quality", "Tip quality", "", True)
        self.probabilities = {c: make(f"tip_p_{c}", f"P({c})", "", False) for c in self.classes}
        self.votes = [make(f"tip_vote_{i}", f"Vote of {n}", "", True)
                      for i, n in enumerate(self.member_names)]
        self.tip_change = make("tip_change_probability", "P(tip change)", "", False)
        self.timestamp = make("frame_timestamp", "Frame acquisition time", "s", False)
        self.reason = make("tip_reason", "Why not good", "", True)
        self.p_bad = make("tip_p_bad", "P(bad tip), calibrated", "", False)

    @property
    def all(self) -> list[Parameter]:
        """Every parameter, in storage order."""
        return [self.state, self.quality, *self.probabilities.values(), *self.votes,
                self.tip_change, self.timestamp, self.reason, self.p_bad]

    def register(self, meas: Measurement, frame_index: Parameter) -> list[Parameter]:
        """Register every parameter with ``meas``, each depending on ``frame_index``.

        ``frame_index`` is registered too if it is not yet. Returns the parameters.
        """
        if not isinstance(frame_index, Parameter):
            raise TypeError(f"frame_index must be a QCoDeS Parameter, got {type(frame_index).__name__}")
        if frame_index.register_name not in meas.parameters:
            meas.register_parameter(frame_index)
        for p in self.all:
            meas.register_parameter(p, setpoints=(frame_index,))
        return self.all

    def values(self, result: TipStateResult) -> list[tuple[Parameter, object]]:
        """``(parameter, value)`` pairs of one result."""
        pairs: list[tuple[Parameter, object]] = [
            (self.state, result.state), (self.quality, result.quality)]
        pairs += [(p, float(result.probabilities[c])) for c, p in self.probabilities.items()]
        pairs += list(zip(self.votes, result.votes, strict=True))
        pairs += [(self.tip_change, float(result.tip_change_probability)),
                  (self.timestamp, float(result.timestamp)), (self.reason, result.reason),
                  (self.p_bad, float(result.p_bad))]
        return pairs

    def value_of(self, name: str, result: TipStateResult) -> object:
        """The value parameter ``name`` stores for ``result``."""
        for p, v in self.values(result):
            if p.name == name:
                return v
        raise KeyError(f"no monitor parameter named {name!r}")


@dataclass(frozen=True)
class WindowCheck:
    """One classification of a frame still being scanned: its first ``lines`` acquired lines.

    ``p_good``: summed ensemble probability of the good classes; ``p_tip_change``: the
    tip-change probability (NaN without a tip-change network); ``verdict``: ``"bad"``
    (confidently bad), ``"tip_change"`` (a tip change flagged), ``"good"``, ``"open"``
    (nothing decided yet) or ``"unclassified"``, under the classifier's
    :class:`~qcodes_stmtip.monitor.scanwatch.PartialRule`; ``result`` the full
    classification of the partial frame; ``latency_s`` from posting to the result.
    """

    frame_index: int
    lines: int
    p_good: float
    p_tip_change: float
    verdict: str
    result: TipStateResult
    latency_s: float = math.nan

    @property
    def decisive(self) -> bool:
        """True when this check decides the frame (confidently bad or a tip change)."""
        return self.verdict in DECISIVE


@dataclass
class ScanRecord:
    """What watching one scan gave: its partial checks and how the scan ended.

    ``total_lines``: the frame's lines; ``lines_acquired``: lines in the frame as stored;
    ``every_lines``: the check interval (0: unknown); ``scan_up``: the slow-axis direction
    (``None``: unknown, read from where the NaN lines are); ``checks``: partial checks in the order they arrived; ``stopped``: the scan was stopped
    early on a decisive check; ``posted``/``dropped``: partial frames handed to the
    classifier and those replaced by a newer one before they were classified;
    ``wall_s``: acquisition time of the frame (start to last grab).
    """

    frame_index: int
    total_lines: int
    lines_acquired: int = 0
    every_lines: int = 0
    scan_up: bool | None = None
    checks: list[WindowCheck] = field(default_factory=list)
    stopped: bool = False
    posted: int = 0
    dropped: int = 0
    wall_s: float = math.nan

    @property
    def decided(self) -> WindowCheck | None:
        """The first decisive check, if any."""
        return next((c for c in self.checks if c.decisive), None)

    @property
    def decided_line(self) -> int:
        """Lines acquired when the state was decided (the frame's lines when no check decided)."""
        d = self.decided
        return d.lines if d is not None else self.lines_acquired

    @property
    def verdict(self) -> str:
        """``"bad"``, ``"tip_change"`` or ``""`` (no partial check decided)."""
        d = self.decided
        return d.verdict if d is not None else ""

    def series(self) -> dict[str, list]:
        """The per-check series: ``lines``, ``p_good``, ``p_tip_change``, ``verdict``."""
        checks = sorted(self.checks, key=lambda c: c.lines)
        return {"lines": [c.lines for c in checks], "p_good": [c.p_good for c in checks],
                "p_tip_change": [c.p_tip_change for c in checks],
                "verdict": [c.verdict for c in checks]}

    def slots(self) -> list[WindowCheck | None]:
        """The checks by slot (see the module doc), ``None`` where no check was taken."""
        checks = sorted(self.checks, key=lambda c: c.lines)
        k = self.every_lines
        if k < 1:
            return list(checks)
        out: list[WindowCheck | None] = [None] * max(0, (self.total_lines - 1) // k)
        for c in checks:
            j = c.lines // k - 1
            if 0 <= j < len(out) and out[j] is None:
                out[j] = c
            else:  # not on the grid (another interval): keep it in the first free slot after
                free = [i for i in range(max(j, 0), len(out)) if out[i] is None]
                if free:
                    out[free[0]] = c
        return out

    def summary(self) -> dict[str, object]:
        """JSON-able summary (run metadata): the scalars, the counts and the series."""
        return {"decided_line": self.decided_line, "verdict": self.verdict,
                "lines_acquired": self.lines_acquired, "total_lines": self.total_lines,
                "stopped": self.stopped, "posted": self.posted, "dropped": self.dropped,
                **self.series()}


class PartialParameters:
    """The QCoDeS parameters of watched scans (see the module's second table).

    ``getter(name)`` supplies each per-frame parameter's value on ``get()`` (``dond``);
    :meth:`values` and :meth:`window_rows` turn a :class:`ScanRecord` into
    ``(parameter, value)`` pairs for ``DataSaver.add_result``.
    """

    def __init__(self, getter: Callable[[str], object]) -> None:
        def make(name: str, label: str, unit: str, text: bool, get: bool = True) -> Parameter:
            return Parameter(name, label=label, unit=unit,
                             get_cmd=(lambda: getter(name)) if get else None,
                             set_cmd=False if get else None, vals=Strings() if text else Numbers())

        self.decided_line = make("tip_decided_line", "Lines when the state was decided", "", False)
        self.verdict = make("tip_partial_verdict", "Partial-frame verdict", "", True)
        self.lines_acquired = make("tip_lines_acquired", "Lines acquired", "", False)
        self.stopped = make("tip_scan_stopped", "Scan stopped early", "", False)
        self.window = make("tip_window", "Check slot (lines // every_lines - 1)", "", False, get=False)
        self.window_lines = make("tip_window_lines", "Lines acquired at the check", "", False,
                                 get=False)
        self.window_p_good = make("tip_window_p_good", "P(good) of the partial frame", "", False,
                                  get=False)
        self.window_p_tip_change = make("tip_window_p_tip_change", "P(tip change) of the partial frame",
                                        "", False, get=False)
        self.window_verdict = make("tip_window_verdict", "Verdict of the partial frame", "", True,
                                   get=False)

    @property
    def per_frame(self) -> list[Parameter]:
        """The per-frame parameters (measurable in ``dond``)."""
        return [self.decided_line, self.verdict, self.lines_acquired, self.stopped]

    @property
    def per_window(self) -> list[Parameter]:
        """The per-check parameters, each depending on ``frame_index`` and ``tip_window``."""
        return [self.window_lines, self.window_p_good, self.window_p_tip_change, self.window_verdict]

    def register(self, meas: Measurement, frame_index: Parameter) -> list[Parameter]:
        """Register every parameter with ``meas`` (after ``frame_index``); returns them."""
        if frame_index.register_name not in meas.parameters:
            meas.register_parameter(frame_index)
        for p in self.per_frame:
            meas.register_parameter(p, setpoints=(frame_index,))
        meas.register_parameter(self.window)
        for p in self.per_window:
            meas.register_parameter(p, setpoints=(frame_index, self.window))
        return [*self.per_frame, self.window, *self.per_window]

    def values(self, record: ScanRecord) -> list[tuple[Parameter, object]]:
        """``(parameter, value)`` pairs of one record's per-frame parameters."""
        return [(self.decided_line, float(record.decided_line)), (self.verdict, record.verdict),
                (self.lines_acquired, float(record.lines_acquired)),
                (self.stopped, float(record.stopped))]

    def value_of(self, name: str, record: ScanRecord) -> object:
        """The value per-frame parameter ``name`` stores for ``record``."""
        for p, v in self.values(record):
            if p.name == name:
                return v
        raise KeyError(f"no per-frame scan-watch parameter named {name!r}")

    def window_rows(self, record: ScanRecord) -> list[list[tuple[Parameter, object]]]:
        """One list of pairs per check slot (``tip_window`` first; NaN/empty without a check)."""
        rows = []
        for j, c in enumerate(record.slots()):
            if c is None:
                values: tuple = (math.nan, math.nan, math.nan, "")
            else:
                values = (float(c.lines), float(c.p_good), float(c.p_tip_change), c.verdict)
            rows.append([(self.window, float(j)),
                         *zip((self.window_lines, self.window_p_good, self.window_p_tip_change,
                               self.window_verdict), values, strict=True)])
        return rows
