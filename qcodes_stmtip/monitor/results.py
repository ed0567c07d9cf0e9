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
``tip_reason``             text     why the frame is unclassified (empty otherwise)
=========================  =======  ==========================================================
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

__all__ = ["METADATA_KEY", "UNCLASSIFIED", "UNCERTAIN_STATE", "ResultParameters", "TipStateResult"]

#: State of a frame whose majority class is below its confidence threshold
#: (:data:`qcodes_stmtip.taxonomy.UNCERTAIN`, under the monitor's older name).
UNCERTAIN_STATE = UNCERTAIN


@dataclass(frozen=True)
class TipStateResult:
    """The classification of one frame.

    ``probabilities`` maps class → ensemble-mean probability; ``votes`` is each member's
    first-ranked class (member order of the bundle); ``timestamp`` is the frame's
    acquisition time (s since the epoch); ``latency_s`` the wall time from submission to
    the result; ``reason`` explains an ``"unclassified"`` state.
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
        self.reason = make("tip_reason", "Why unclassified", "", True)

    @property
    def all(self) -> list[Parameter]:
        """Every parameter, in storage order."""
        return [self.state, self.quality, *self.probabilities.values(), *self.votes,
                self.tip_change, self.timestamp, self.reason]

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
                  (self.timestamp, float(result.timestamp)), (self.reason, result.reason)]
        return pairs

    def value_of(self, name: str, result: TipStateResult) -> object:
        """The value parameter ``name`` stores for ``result``."""
        for p, v in self.values(result):
            if p.name == name:
                return v
        raise KeyError(f"no monitor parameter named {name!r}")
