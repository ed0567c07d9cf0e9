"""Closed-loop tip conditioning: scan, classify, and condition a bad tip until it is good.

:class:`~qcodes_stmtip.conditioning.experiment.ConditioningExperiment` composes the
driver, the tip-state monitor and a policy (:mod:`.policy`) under the experiment-level
safety limits (:mod:`.envelope`), recording everything in QCoDeS (:mod:`.records`);
:mod:`.report` turns a run into plots and an HTML page. Importing this package does not
import TensorFlow.
"""

from qcodes_stmtip.conditioning.envelope import ConditioningEnvelope, ConditioningLimits
from qcodes_stmtip.conditioning.experiment import ConditioningExperiment, ExperimentResult, Target
from qcodes_stmtip.conditioning.policy import (
    Action,
    EscalatingPolicy,
    Policy,
    PolicyContext,
    RandomPolicy,
)

__all__ = ["Action", "ConditioningEnvelope", "ConditioningExperiment", "ConditioningLimits",
           "EscalatingPolicy", "ExperimentResult", "Policy", "PolicyContext", "RandomPolicy", "Target"]
