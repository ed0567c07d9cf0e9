"""Optional dependencies: which extra provides what, and one error that names the install.

The base install (driver, client, simulator, safety envelope, light readers and the
scikit-learn feature ensembles) needs none of these. A feature that needs an extra
imports its packages through :func:`require`, so a missing package raises
:class:`MissingExtraError` (an :class:`ImportError`) that says what to ``pip install``.
Imports nothing of the package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "install_hint", "require"]

#: Extra name → what it adds (the packages are declared in pyproject.toml).
EXTRAS: dict[str, str] = {
    "classify": "Keras/TensorFlow: CNN ensemble members, training networks, the fused monitor",
    "lab": "PyMeasure, PyVISA-py, pySerial and PyVISA-sim: the lab instruments beside the STM",
    "io": "spym (with hvplot): RHK .sm4 files",
    "label": "the browser labelling tool (needs nothing beyond the base install today)",
    "archive": "dask.distributed and pyarrow: stmtip classify on a Dask cluster, Parquet rows",
}


class MissingExtraError(ImportError):
    """A feature needs a package of an optional extra that is not installed."""


def install_hint(extra: str) -> str:
    """The command that installs ``extra``, e.g. ``pip install "qcodes-stmtip[classify]"``."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; one of {sorted(EXTRAS)}")
    return f'pip install "qcodes-stmtip[{extra}]"'


def require(module: str, extra: str, purpose: str,
            importer: Callable[[str], ModuleType] = importlib.import_module) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the install for ``extra``.

    ``purpose`` completes "<purpose> needs <module>", e.g. ``"loading a CNN member"``.
    ``importer`` does the import (e.g. one that filters TensorFlow's start-up lines).
    """
    hint = install_hint(extra)
    try:
        return importer(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs {module!r} ({exc}); install it with: {hint}",
            name=module) from exc
