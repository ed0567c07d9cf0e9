"""The monitor and the oracle both satisfy ``TipClassifier``, the interface the experiment drives."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest

from qcodes_stmtip.classify.protocol import TipClassifier
from qcodes_stmtip.conditioning.oracle import GroundTruthClassifier
from qcodes_stmtip.monitor import TipStateMonitor

#: The protocol's methods (its properties are checked by ``isinstance``).
METHODS = ("register", "submit", "result", "flush", "finish", "metadata", "close")


def _accepts(impl, proto) -> list[str]:
    """What the protocol may pass that the implementation's signature would refuse."""
    have = inspect.signature(impl).parameters
    var_kw = any(p.kind is p.VAR_KEYWORD for p in have.values())
    var_pos = any(p.kind is p.VAR_POSITIONAL for p in have.values())
    wrong = []
    for name, p in inspect.signature(proto).parameters.items():
        if name == "self":
            continue
        q = have.get(name)
        if q is None:
            if not (var_kw and p.kind is p.KEYWORD_ONLY or var_pos and p.kind is p.POSITIONAL_OR_KEYWORD):
                wrong.append(f"{name}: missing")
        elif q.kind is not p.kind and not (p.kind is p.KEYWORD_ONLY and q.kind is q.POSITIONAL_OR_KEYWORD):
            wrong.append(f"{name}: {q.kind.description}, the protocol passes it {p.kind.description}")
        elif p.default is not p.empty and q.default is q.empty:
            wrong.append(f"{name}: the protocol may leave it out, the implementation requires it")
    extra = [n for n, q in have.items() if n != "self" and n not in inspect.signature(proto).parameters
             and q.default is q.empty and q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD)]
    return wrong + [f"{n}: required, the protocol never passes it" for n in extra]


@pytest.mark.parametrize("cls", [TipStateMonitor, GroundTruthClassifier])
def test_signatures_match_the_protocol(cls) -> None:
    for name in METHODS:
        assert _accepts(getattr(cls, name), getattr(TipClassifier, name)) == [], (cls.__name__, name)
    assert isinstance(cls.parameters, property)


def test_the_oracle_is_a_tip_classifier() -> None:
    truth = SimpleNamespace(frame_label="rows", tip_label="rows", tip_change_lines=())
    assert isinstance(GroundTruthClassifier("hsi100", lambda: truth), TipClassifier)


def test_the_monitor_is_a_tip_classifier() -> None:
    pytest.importorskip("sklearn")
    from qcodes_stmtip.classify.bundle import BundleError, default_bundle_path

    try:
        path = default_bundle_path("hsi100")
    except BundleError:
        pytest.skip("no shipped hsi100 bundle")
    with TipStateMonitor(path, nice=None) as monitor:
        assert isinstance(monitor, TipClassifier)


def test_the_experiment_refuses_what_is_not_a_tip_classifier() -> None:
    from qcodes_stmtip.conditioning.experiment import ConditioningExperiment
    from qcodes_stmtip.conditioning.policy import EscalatingPolicy

    class SubmitOnly:
        classes = ("rows",)

        def submit(self, frame_index, frame, datasaver=None, *, timestamp=None) -> None:
            pass

    assert not isinstance(SubmitOnly(), TipClassifier)
    with pytest.raises(TypeError, match="TipClassifier"):
        ConditioningExperiment(None, SubmitOnly(), EscalatingPolicy(), surface="hsi100")  # type: ignore[arg-type]
