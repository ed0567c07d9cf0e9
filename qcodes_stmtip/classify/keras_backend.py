"""Import Keras with the TensorFlow backend as default (only if ``KERAS_BACKEND`` is unset).

Every Keras-using module of :mod:`qcodes_stmtip.classify` imports ``keras`` from
here, so that the backend choice is made in one place. Importing this module
imports Keras (and its backend): only do it lazily.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from qcodes_stmtip.extras import require  # noqa: E402
from qcodes_stmtip.tensorflow_logging import configure, import_quietly  # noqa: E402

configure()  # TF_CPP_MIN_LOG_LEVEL before the first import, unless `--verbose` or the user set it
if os.environ["KERAS_BACKEND"] == "tensorflow":  # TensorFlow first, its start-up lines filtered
    require("tensorflow", "classify", "Keras's TensorFlow backend", importer=import_quietly)
keras = require("keras", "classify", "Keras/TensorFlow (CNN members, training, the fused monitor)",
                importer=import_quietly)

__all__ = ["keras"]
