"""A small bridge that puts a PyMeasure instrument into a QCoDeS station.

:class:`PyMeasureInstrument` is a QCoDeS :class:`~qcodes.instrument.Instrument` that owns
one PyMeasure instrument (``self.driver``) and exposes chosen PyMeasure properties as
QCoDeS parameters with :meth:`PyMeasureInstrument.add_bridged_parameter`: a QCoDeS
``get`` reads the PyMeasure property, a ``set`` assigns it, so the bytes on the wire are
exactly PyMeasure's (its validators, formatting and error checks included) while QCoDeS
adds units, its own validators, caching, snapshots and datasets.

The PyMeasure instrument is either passed in ready-made or built from its class, a VISA
resource name (``address``) and keyword arguments. ``pyvisa_sim_file`` selects a
pyvisa-sim definition instead of real hardware (see :func:`resolve_sim_file`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from qcodes.instrument import Instrument
from qcodes.parameters import Parameter
from qcodes.validators import Validator

from qcodes_stmtip.extras import require

__all__ = ["PyMeasureInstrument", "resolve_sim_file"]

#: Package folder of the pyvisa-sim definitions and station YAMLs of the simulated lab
#: (package data: present in an installed wheel too, as QCoDeS keeps its sims).
SIM_YAML_DIR = Path(__file__).resolve().parent / "sim_yaml"


def resolve_sim_file(spec: str | Path) -> Path:
    """Return the path of a pyvisa-sim YAML file named by ``spec``.

    ``spec`` is ``"package.module:file.yaml"`` (a file shipped inside a Python package,
    as QCoDeS's ``pyvisa_sim_file``), an absolute path, a path relative to the current
    directory, or a file name in :data:`SIM_YAML_DIR` (``qcodes_stmtip/lab/sim_yaml``). Raises
    FileNotFoundError naming every place that was tried.
    """
    text = str(spec)
    tried: list[str] = []
    if ":" in text and not Path(text).exists() and not (len(text) > 1 and text[1] == ":"):
        module, _, filename = text.partition(":")
        from importlib.resources import files

        try:
            candidate = Path(str(files(module) / filename))
        except ModuleNotFoundError:
            raise FileNotFoundError(
                f"pyvisa_sim_file {text!r}: no Python package {module!r}"
            ) from None
        if candidate.is_file():
            return candidate
        tried.append(str(candidate))
    else:
        path = Path(text).expanduser()
        for candidate in (path, SIM_YAML_DIR / path):
            if candidate.is_file():
                return candidate.resolve()
            tried.append(str(candidate))
    raise FileNotFoundError(f"pyvisa_sim_file {text!r} not found; tried {tried}")


def _import_class(spec: type | str) -> type:
    if isinstance(spec, type):
        return spec
    module, _, name = str(spec).rpartition(".")
    if not module:
        raise ValueError(f"pymeasure_class must be a class or 'package.module.Class', got {spec!r}")
    if module.split(".")[0] == "pymeasure":
        require("pymeasure", "lab", f"the lab instrument {spec}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"pymeasure_class {spec!r} cannot be imported: {exc}") from None


def _property_access(owner: Any, attribute: str) -> tuple[bool, bool, str]:
    """``(readable, writable, docstring)`` of the PyMeasure property ``attribute`` of ``owner``.

    PyMeasure's ``Instrument.setting`` / ``measurement`` build a ``property`` whose
    getter/setter raise ``LookupError`` when their command is ``None``; that command is
    the default of the function's ``get_command`` / ``set_command`` argument.
    """
    prop = inspect.getattr_static(type(owner), attribute, None)
    if not isinstance(prop, property):
        return True, True, ""

    def usable(func: Callable[..., Any] | None, command_arg: str) -> bool:
        if func is None:
            return False
        parameter = inspect.signature(func).parameters.get(command_arg)
        return parameter is None or parameter.default is not None

    return usable(prop.fget, "get_command"), usable(prop.fset, "set_command"), prop.__doc__ or ""


class PyMeasureInstrument(Instrument):
    """A QCoDeS instrument around one PyMeasure instrument.

    Args:
        name: QCoDeS instrument name.
        address: VISA resource name (or a PyMeasure adapter) for ``pymeasure_class``.
        pymeasure_class: the PyMeasure instrument class (or its dotted import path).
        driver: an already-built PyMeasure instrument; excludes ``pymeasure_class``/``address``.
        pyvisa_sim_file: simulate the instrument with this pyvisa-sim YAML (see
            :func:`resolve_sim_file`); sets PyMeasure's ``visa_library`` to ``"<file>@sim"``.
        pymeasure_kwargs: further keyword arguments for ``pymeasure_class``.
        **kwargs: forwarded to :class:`qcodes.instrument.Instrument` (e.g. ``metadata``).

    Opening the PyMeasure instrument is a side effect of construction (it may talk to the
    device, e.g. to log in).
    """

    def __init__(
        self,
        name: str,
        address: Any = None,
        *,
        pymeasure_class: type | str | None = None,
        driver: Any = None,
        pyvisa_sim_file: str | Path | None = None,
        pymeasure_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if driver is not None and (pymeasure_class is not None or address is not None):
            raise ValueError(
                f"{name}: pass either driver= or pymeasure_class= with address=, not both"
            )
        options = dict(pymeasure_kwargs or {})
        self.simulated = False
        if driver is None:
            if pymeasure_class is None or address is None:
                raise ValueError(f"{name}: pymeasure_class and address are required without driver=")
            cls = _import_class(pymeasure_class)
            if pyvisa_sim_file is not None:
                if "visa_library" in options:
                    raise ValueError(f"{name}: give pyvisa_sim_file or visa_library, not both")
                require("pyvisa_sim", "lab", f"{name}: simulating with pyvisa_sim_file")
                options["visa_library"] = f"{resolve_sim_file(pyvisa_sim_file)}@sim"
            self.simulated = str(options.get("visa_library", "")).endswith("@sim")
            driver = cls(address, **options)
        elif pyvisa_sim_file is not None:
            raise ValueError(f"{name}: pyvisa_sim_file only applies when the bridge builds the driver")
        self.driver = driver
        super().__init__(name, **kwargs)
        self.metadata["pymeasure_class"] = f"{type(driver).__module__}.{type(driver).__qualname__}"
        self.metadata["simulated"] = self.simulated

    # ---- the bridge --------------------------------------------------------------------
    def resolve(self, path: str) -> tuple[Any, str]:
        """The object and attribute name that ``path`` (e.g. ``"x.frequency"``) names on the driver."""
        if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
            raise ValueError(f"{self.name}: pymeasure_property must be a dotted name, got {path!r}")
        *owners, attribute = path.split(".")
        owner = self.driver
        for part in owners:
            try:
                owner = getattr(owner, part)
            except AttributeError:
                raise ValueError(
                    f"{self.name}: {type(self.driver).__name__} has no {part!r} in {path!r}"
                ) from None
        if inspect.getattr_static(type(owner), attribute, None) is None and not hasattr(owner, attribute):
            raise ValueError(
                f"{self.name}: {type(owner).__name__} has no property {attribute!r} (from {path!r})"
            )
        return owner, attribute

    def add_bridged_parameter(
        self,
        name: str,
        pymeasure_property: str,
        *,
        unit: str = "",
        label: str | None = None,
        vals: Validator[Any] | None = None,
        get_parser: Callable[[Any], Any] | None = None,
        set_parser: Callable[[Any], Any] | None = None,
        docstring: str | None = None,
        **parameter_kwargs: Any,
    ) -> Parameter:
        """Add QCoDeS parameter ``name`` that reads/assigns ``driver.<pymeasure_property>``.

        ``pymeasure_property`` may be dotted to reach a channel (``"x.frequency"``). A
        property that PyMeasure can only set (``Instrument.setting``) gives a set-only
        parameter, a measurement a get-only one. ``get_parser`` maps PyMeasure's value to
        the QCoDeS value; ``set_parser`` maps the (validated) QCoDeS value to what is
        assigned. ``vals`` runs before PyMeasure's own validator, so out-of-range values
        raise before anything is sent.
        """
        owner, attribute = self.resolve(pymeasure_property)
        readable, writable, doc = _property_access(owner, attribute)

        def get_raw() -> Any:
            return getattr(owner, attribute)

        def set_raw(value: Any) -> None:
            setattr(owner, attribute, value)

        return self.add_parameter(
            name,
            parameter_class=Parameter,
            label=label or name.replace("_", " ").capitalize(),
            unit=unit,
            get_cmd=get_raw if readable else False,
            set_cmd=set_raw if writable else False,
            get_parser=get_parser,
            set_parser=set_parser,
            vals=vals,
            docstring=docstring
            or f"Bridged PyMeasure property {type(owner).__name__}.{attribute}. {inspect.cleandoc(doc)}".strip(),
            **parameter_kwargs,
        )

    # ---- QCoDeS plumbing ---------------------------------------------------------------
    def write_raw(self, cmd: str) -> None:
        """Send ``cmd`` through the PyMeasure instrument (its adapter and terminations)."""
        self.driver.write(cmd)

    def ask_raw(self, cmd: str) -> str:
        """Send ``cmd`` and return PyMeasure's reply."""
        return str(self.driver.ask(cmd)).strip()

    def get_idn(self) -> dict[str, str | None]:
        """``*IDN?`` through PyMeasure's ``id`` where the driver has one (SCPI instruments)."""
        reply = getattr(self.driver, "id", None) if hasattr(type(self.driver), "id") else None
        if not reply:
            return {"vendor": None, "model": str(getattr(self.driver, "name", "")), "serial": None,
                    "firmware": None}
        parts = [p.strip() for p in str(reply).split(",")] + [None] * 4
        return dict(zip(("vendor", "model", "serial", "firmware"), parts[:4], strict=True))

    def close(self) -> None:
        """Close the PyMeasure adapter (the VISA/serial connection) and remove the instrument."""
        try:
            adapter = getattr(self.driver, "adapter", None)
            if adapter is not None:
                adapter.close()
        finally:
            super().close()
