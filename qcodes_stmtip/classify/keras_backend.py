"""Import Keras with the TensorFlow backend as default (only if ``KERAS_BACKEND`` is unset).

Every Keras-using module of :mod:`qcodes_stmtip.classify` imports ``keras`` from
here, so that the backend choice is made in one place. Importing this module
imports Keras (and its backend): only do it lazily.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from qcodes_stmtip.extras import require  # noqa: E402

keras = require("keras", "classify", "Keras/TensorFlow (CNN members, training, the fused monitor)")
if os.environ["KERAS_BACKEND"] == "tensorflow":  # Keras has imported it; name it if not
    require("tensorflow", "classify", "Keras's TensorFlow backend")

__all__ = ["keras"]

import logging  # noqa: E402

logging.getLogger("tensorflow").setLevel(logging.ERROR)  # tf.function retracing chatter
