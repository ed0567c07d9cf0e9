"""qcodes-stmtip: a QCoDeS plugin that lets an STM watch and recondition its own tip.

Importing this package is cheap: TensorFlow/Keras are imported only by
:mod:`qcodes_stmtip.classify` when a model is built or loaded.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qcodes-stmtip")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
