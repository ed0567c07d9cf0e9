"""Fast inference for a trained :class:`~qcodes_stmtip.classify.ensemble.Ensemble`, for any caller.

:mod:`.fused`: :class:`~.fused.FusedEnsemble`, every network of an ensemble (and its
tip-change network) in one TensorFlow graph call; :mod:`.folded`: :func:`~.folded.fold_model`,
a Keras chain network as a plain graph with batch norm folded into the convolutions.
The tip-state monitor (:mod:`qcodes_stmtip.monitor`) runs its ensembles through them.
Importing this package does not import TensorFlow; building a fused or folded network does.
"""

from qcodes_stmtip.classify.inference.folded import UnsupportedModel, fold_model
from qcodes_stmtip.classify.inference.fused import (
           FOLD_TOLERANCE,
           INFERENCE_PATH,
           FusedEnsemble,
           FusedOutput,
)

__all__ = ["FOLD_TOLERANCE", "INFERENCE_PATH", "FusedEnsemble", "FusedOutput", "UnsupportedModel",
           "fold_model"]
