"""Issue 26 class 6: safety invariants of the conditioning loop hold under ``python -O``.

Before, a pulse or indent without a site (an ``Action`` subclass whose ``touches_tip`` is
False) was stopped only by ``assert site is not None`` in ``_send``: under ``python -O`` the
assert vanished and ``move_tip(*None)`` raised a ``TypeError`` after the action was recorded
as done. Now ``_execute`` refuses it like any envelope violation (this test runs under
``python -O`` in CI too).
"""

from __future__ import annotations

import pytest

from qcodes_stmtip.conditioning.experiment import ConditioningExperiment
from qcodes_stmtip.conditioning.policy import Action
from qcodes_stmtip.conditioning.records import load_conditioning_run

from .conftest import BOUNDS


class SitelessPulse(Action):
    """A pulse that claims not to touch the tip, so the loop picks no site for it."""

    @property
    def touches_tip(self) -> bool:
        return False


class SitelessIndent(SitelessPulse):
    pass


@pytest.mark.parametrize("make", [lambda: SitelessPulse.pulse(2.0, 0.01),
                                  lambda: SitelessIndent.indent(0.5e-9)], ids=["pulse", "indent"])
def test_a_tip_action_without_a_site_is_refused_not_sent(rig, db, make) -> None:
    action = make()
    exp = ConditioningExperiment(rig.stm, rig.oracle(), lambda c: action, surface="hsi100",
                                 area_bounds=BOUNDS, clock=rig.microscope.sim_time)
    result = exp.run(db)
    assert result.outcome == "refused", (result.outcome, result.reason)
    assert f"{action.kind} site" in result.reason
    assert "Bias.Pulse" not in rig.commands and "TipShaper.Start" not in rig.commands
    run = load_conditioning_run(result.run_id)
    assert run.actions[-1].refused and f"{action.kind} site" in run.actions[-1].status
