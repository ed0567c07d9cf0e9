"""QCoDeS driver for an STM run by a SPECS Nanonis controller over its binary TCP interface.

:class:`NanonisSTM` is a plain :class:`~qcodes.instrument.Instrument` (the protocol is
binary TCP, not VISA) that talks through
:class:`~qcodes_stmtip.nanonis.client.NanonisClient`. Every setting that could harm a
real tip or sample is bounded by a :class:`~qcodes_stmtip.safety.SafetyEnvelope`: the
parameter validators are derived from it and every action checks it first, so an
out-of-envelope request raises :class:`~qcodes_stmtip.safety.SafetyViolation` before a
single byte is sent. The checks run inside the set commands too, below the validators, so
``Parameter.set_raw`` cannot bypass them, and every checked value is converted to a
plain ``float`` once: the float that was checked is the float that is sent.

Two checks need the tip's history, which the driver keeps: a coarse step towards the
sample (``"Z-"``) is an approach, refused unless the tip was withdrawn with
:meth:`NanonisSTM.withdraw` after the feedback was last on (one step at a time, see
``SafetyEnvelope.max_approach_steps``); and a Z move with the feedback off may go at
most ``max_indentation_m`` below the tunnelling position (the Z read when the driver
switched the feedback off, else the Z at the first such move).

Frames (``scan_image``, ``last_frame``) are float64 arrays of shape ``(lines, pixels)``
with **row 0 the bottom line** of the frame and column 0 its left edge, whatever the scan
direction. Their setpoints are the pixel indices ``scan_line`` (0 = bottom line) and
``scan_pixel`` (0 = left edge), the same for every frame of a given ``(lines, pixels)``
whatever its position, size or angle, so a run whose frames sit at different places
exports to xarray / netCDF as one ``(frame_index, scan_line, scan_pixel)`` grid.

Where a frame was taken is stored beside it: each acquisition (``scan_image``,
``last_frame``) records its centre, size, angle, bias, current setpoint, slow-axis
direction and end time, readable as the ``frame_*`` parameters
(:attr:`NanonisSTM.frame_parameters`); measure them after the image at the same
``frame_index`` (see :func:`frame_index_parameter`). ``scan_x`` / ``scan_y`` give the
pixel-centre positions in metres, ``centre + (i + 1/2) * size / n - size / 2`` along the
unrotated frame axes, of the frame now configured.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from qcodes.instrument import Instrument
from qcodes.parameters import ManualParameter, Parameter, ParameterWithSetpoints
from qcodes.validators import Arrays, Bool, Enum, Ints, Multiples, Numbers, Strings, Validator

from qcodes_stmtip.safety import EnvelopeValidator, SafetyEnvelope, SafetyViolation

if TYPE_CHECKING:
    from collections.abc import Mapping

    from qcodes_stmtip.nanonis.client import NanonisClient

__all__ = ["FRAME_FIELDS", "SPECTRUM_FIELDS", "FrameShapeError", "NanonisSTM",
           "frame_index_parameter"]

#: Channel index of Z (m) in the Nanonis default signal list.
Z_CHANNEL = 14
#: Channel index of Current (A) in the Nanonis default signal list.
CURRENT_CHANNEL = 0
#: Units of the default Nanonis channels that frames are usually taken in.
CHANNEL_UNITS = {CURRENT_CHANNEL: "A", Z_CHANNEL: "m"}
#: Largest pixels-per-line / lines-per-frame the controller accepts.
MAX_PIXELS = 4096
#: Nanonis scans a multiple of this many pixels per line.
PIXEL_MULTIPLE = 16
#: Most points of a bias-spectroscopy sweep.
MAX_SPECTRUM_POINTS = 10000
#: Per-spectrum record fields (``spectrum_<field>`` parameters): name, label, unit.
SPECTRUM_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("x", "Spectrum site x", "m"),
    ("y", "Spectrum site y", "m"),
    ("z", "Tip height during the spectrum", "m"),
    ("setpoint_bias", "Stabilisation bias", "V"),
    ("setpoint_current", "Stabilisation current", "A"),
    ("timestamp", "Spectrum end time (s since the epoch)", "s"),
)
#: Signal and channel names the spectrum reads (as the controller names them).
SWEEP_ROW, CURRENT_ROW, LOCKIN_ROW = "Bias calc (V)", "Current (A)", "LI Demod 1 X (A)"
#: Coarse-motor directions of ``Motor.StartMove``.
MOTOR_DIRECTIONS = {"X+": 0, "X-": 1, "Y+": 2, "Y-": 3, "Z+": 4, "Z-": 5}
#: The coarse-motor direction towards the sample (an approach).
TOWARDS_SAMPLE = "Z-"


class FrameShapeError(ValueError):
    """The controller returned a frame whose shape is not the configured ``(lines, pixels)``.

    Nothing is lost: ``data`` holds the frame as received (float64, controller row order)
    and ``expected`` the configured shape, so a caller can still save it.
    """

    def __init__(self, message: str, data: np.ndarray | None = None,
                 expected: tuple[int, int] | None = None) -> None:
        super().__init__(message)
        self.data = data
        self.expected = expected


#: Per-frame record fields: name (``frame_<field>`` parameter), label, unit.
FRAME_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("centre_x", "Frame centre x", "m"),
    ("centre_y", "Frame centre y", "m"),
    ("width", "Frame width", "m"),
    ("height", "Frame height", "m"),
    ("angle", "Frame angle", "deg"),
    ("bias", "Bias during the frame", "V"),
    ("setpoint_current", "Current setpoint during the frame", "A"),
    ("direction", "Slow-axis direction", ""),
    ("timestamp", "Frame end time (s since the epoch)", "s"),
)


class _NonNegativeInts(Ints):
    """Integers ≥ 0, ``bool`` refused (QCoDeS's ``Ints`` accepts ``True``)."""

    def __init__(self) -> None:
        super().__init__(min_value=0)

    def validate(self, value: Any, context: str = "") -> None:
        if isinstance(value, bool | np.bool_):
            raise TypeError(f"{value!r} is not a frame index (an integer >= 0); {context}")
        super().validate(value, context)


def frame_index_parameter(name: str = "frame_index") -> ManualParameter:
    """An integer frame counter (≥ 0) to use as the outer setpoint of a run of frames.

    Sweep it with integers (``ArraySweep(frame_index, range(n))`` in ``dond``); floats
    are refused, so the database holds integers.
    """
    return ManualParameter(name, label="Frame index", initial_value=0, vals=_NonNegativeInts())


#: How the controller orders the rows of ``Scan.FrameDataGrab`` (see :class:`NanonisSTM`).
ROW_ORDERS = ("bottom_first", "acquisition_order")


def frame_rows_bottom_up(data: np.ndarray, scan_up: bool, row_order: str) -> np.ndarray:
    """Return ``data`` with row 0 the bottom line.

    ``row_order="bottom_first"``: the controller already sends row 0 = bottom line for
    both scan directions (the simulator does); ``"acquisition_order"``: rows come in the
    order they were scanned, so a "down" frame (top line first) is flipped.
    """
    if row_order not in ROW_ORDERS:
        raise ValueError(f"row_order must be one of {ROW_ORDERS}, got {row_order!r}")
    if row_order == "acquisition_order" and not scan_up:
        return data[::-1]
    return data


class NanonisSTM(Instrument):
    """A Nanonis-controlled STM over TCP.

    Args:
        name: QCoDeS instrument name.
        address: controller host (the Nanonis software's PC).
        port: TCP port of the Nanonis programming interface (6501–6504).
        timeout: socket timeout for one request, seconds.
        safety: the :class:`SafetyEnvelope` (or a dict of its fields, as in a station YAML);
            ``None`` uses the conservative defaults.
        channel: signal index that ``scan_image`` returns (default 14, Z in metres).
        scan_timeout: how long ``scan_image`` waits for a frame to finish, seconds.
        client: an already-built client to use instead of connecting to address/port.
        row_order: how ``Scan.FrameDataGrab`` orders rows: ``"bottom_first"`` (default;
            what the simulator sends, and what the reference states for "up" frames) or
            ``"acquisition_order"`` (a "down" frame arrives top line first and is
            flipped). Not confirmed on hardware for "down" frames: check once with a
            real controller by scanning the same frame up and down.
        connect_on_init: connect now (the QCoDeS idiom): open the socket, ask the
            controller's version and read the frame geometry (three requests), and end
            with :meth:`connect_message`. If no controller answers, the instrument is
            removed again and :class:`~qcodes_stmtip.nanonis.protocol.NanonisConnectionError`
            is raised, naming the address. ``False`` (lazy): nothing is sent until a
            parameter is read or set.
    """

    def __init__(
        self,
        name: str,
        address: str = "127.0.0.1",
        port: int = 6501,
        *,
        timeout: float = 5.0,
        safety: SafetyEnvelope | Mapping[str, Any] | None = None,
        channel: int = Z_CHANNEL,
        scan_timeout: float = 600.0,
        client: NanonisClient | None = None,
        row_order: str = "bottom_first",
        connect_on_init: bool = True,
        **kwargs: Any,
    ) -> None:
        if row_order not in ROW_ORDERS:
            raise ValueError(f"NanonisSTM row_order must be one of {ROW_ORDERS}, got {row_order!r}")
        self.row_order = row_order
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"NanonisSTM port must be an int in 1..65535, got {port!r}")
        if not (isinstance(timeout, int | float) and timeout > 0):
            raise ValueError(f"NanonisSTM timeout must be > 0 seconds, got {timeout!r}")
        if not (isinstance(scan_timeout, int | float) and scan_timeout > 0):
            raise ValueError(f"NanonisSTM scan_timeout must be > 0 seconds, got {scan_timeout!r}")
        self.safety: SafetyEnvelope = SafetyEnvelope.coerce(safety)
        super().__init__(name, **kwargs)
        self.add_metadata_safety()
        if client is None:
            from qcodes_stmtip.nanonis.client import NanonisClient

            client = NanonisClient(address, port, timeout=timeout)
        self.client: NanonisClient = client
        self.address = address
        self.port = port
        env = self.safety
        # tip history for the approach and feedback-off Z checks (see the module doc)
        self._withdrawn = False  # withdraw() ran and nothing has brought the tip back since
        self._surface_checked = True  # the feedback was on since the last step towards the sample
        self._z_reference: float | None = None  # tunnelling Z (m) for feedback-off moves

        # ---- tunnelling -------------------------------------------------------------
        self.bias: Parameter = self.add_parameter(
            "bias",
            label="Bias",
            unit="V",
            get_cmd=lambda: float(self.client.bias_get()),
            set_cmd=self._set_bias,
            vals=EnvelopeValidator(env.check_bias, f"|bias| <= {env.max_bias_V} V"),
            docstring="Tip-sample bias (V); bounded by safety.max_bias_V.",
        )
        self.setpoint_current: Parameter = self.add_parameter(
            "setpoint_current",
            label="Setpoint current",
            unit="A",
            get_cmd=lambda: float(self.client.z_ctrl_setpnt_get()),
            set_cmd=self._set_setpoint_current,
            vals=EnvelopeValidator(
                env.check_setpoint_current, f"|I| <= {env.max_setpoint_current_A} A"
            ),
            docstring="Z-controller current setpoint (A); bounded by safety.max_setpoint_current_A.",
        )
        self.current: Parameter = self.add_parameter(
            "current",
            label="Tunnelling current",
            unit="A",
            get_cmd=lambda: float(self.client.current_get()),
            set_cmd=False,
            docstring="Measured tunnelling current (A).",
        )
        self.z_position: Parameter = self.add_parameter(
            "z_position",
            label="Z position",
            unit="m",
            get_cmd=lambda: float(self.client.z_ctrl_z_pos_get()),
            set_cmd=self._set_z_position,
            vals=EnvelopeValidator(env.check_z, f"|z| <= {env.max_z_m} m"),
            docstring="Z-piezo position (m). Setting it requires the feedback to be off and "
            "stays within safety.max_indentation_m below the tunnelling position.",
        )
        self.feedback: Parameter = self.add_parameter(
            "feedback",
            label="Z feedback",
            get_cmd=self._get_feedback,
            set_cmd=self._set_feedback,
            vals=Bool(),
            docstring="Z-controller (constant-current feedback) on/off. Switching it off "
            "records the tunnelling Z that bounds feedback-off z_position moves.",
        )

        # ---- scan frame ----------------------------------------------------------------
        size_vals = EnvelopeValidator(
            lambda v: env.check_scan_size(v, v),
            f"0 < size <= {env.max_scan_size_m} m",
            valid_values=(env.max_scan_size_m / 2,),
        )
        # the centre is bounded by the whole-frame check in the setter
        self.scan_centre_x: Parameter = self._add_frame_parameter(
            "centre_x", "Scan centre x", "m", Numbers()
        )
        self.scan_centre_y: Parameter = self._add_frame_parameter(
            "centre_y", "Scan centre y", "m", Numbers()
        )
        self.scan_width: Parameter = self._add_frame_parameter("width", "Scan width", "m", size_vals)
        self.scan_height: Parameter = self._add_frame_parameter(
            "height", "Scan height", "m", size_vals
        )
        self.scan_angle: Parameter = self._add_frame_parameter(
            "angle", "Scan angle", "deg", Numbers(-360.0, 360.0)
        )

        self.pixels: Parameter = self.add_parameter(
            "pixels",
            label="Pixels per line",
            get_cmd=lambda: int(self.client.scan_buffer_get().pixels),
            set_cmd=lambda n: self._set_buffer(pixels=int(n)),
            vals=Multiples(PIXEL_MULTIPLE, min_value=PIXEL_MULTIPLE, max_value=MAX_PIXELS),
            docstring=f"Pixels per scan line (a multiple of {PIXEL_MULTIPLE}).",
        )
        self.lines: Parameter = self.add_parameter(
            "lines",
            label="Lines per frame",
            get_cmd=lambda: int(self.client.scan_buffer_get().lines),
            set_cmd=lambda n: self._set_buffer(lines=int(n)),
            vals=Ints(2, MAX_PIXELS),
            docstring="Lines per scan frame.",
        )
        self.scan_speed: Parameter = self.add_parameter(
            "scan_speed",
            label="Scan speed",
            unit="m/s",
            get_cmd=lambda: float(self.client.scan_speed_get().forward_speed),
            set_cmd=self._set_scan_speed,
            vals=Numbers(min_value=1e-12, max_value=1e-3),
            docstring="Tip speed along a line, forward and backward alike (m/s).",
        )
        self.scan_direction: Parameter = self.add_parameter(
            "scan_direction",
            label="Scan direction",
            initial_value="up",
            get_cmd=None,
            set_cmd=None,
            vals=Enum("up", "down"),
            docstring='Slow-axis direction of the next scan: "up" starts at the bottom line. '
            "Driver-side; sent with start_scan.",
        )
        self.channel: Parameter = self.add_parameter(
            "channel",
            label="Image channel",
            get_cmd=None,
            set_cmd=self._set_channel,
            vals=Ints(0, 23),
            docstring="Scan-buffer channel (signal slot 0-23) that scan_image/last_frame "
            "return (0 Current in A, 14 Z in m; sets their unit).",
        )
        self.data_direction: Parameter = self.add_parameter(
            "data_direction",
            label="Data direction",
            initial_value="forward",
            get_cmd=None,
            set_cmd=None,
            vals=Enum("forward", "backward"),
            docstring="Which trace of each line scan_image/last_frame return.",
        )
        self.scan_timeout: Parameter = self.add_parameter(
            "scan_timeout",
            label="Scan timeout",
            unit="s",
            initial_value=float(scan_timeout),
            get_cmd=None,
            set_cmd=None,
            vals=Numbers(min_value=1e-3),
            docstring="How long scan_image waits for the frame to end before raising.",
        )

        # ---- frames ------------------------------------------------------------------
        self.scan_line: Parameter = self.add_parameter(
            "scan_line",
            snapshot_value=False,
            label="Line",
            unit="",
            get_cmd=lambda: np.arange(self._n_lines()),
            set_cmd=False,
            vals=Arrays(shape=(self._n_lines,), valid_types=(np.integer,)),
            docstring="Line indices of a frame, 0 = bottom line (setpoint of scan_image).",
        )
        self.scan_pixel: Parameter = self.add_parameter(
            "scan_pixel",
            snapshot_value=False,
            label="Pixel",
            unit="",
            get_cmd=lambda: np.arange(self._n_pixels()),
            set_cmd=False,
            vals=Arrays(shape=(self._n_pixels,), valid_types=(np.integer,)),
            docstring="Pixel indices along a line, 0 = left edge (setpoint of scan_image).",
        )
        self.scan_x: Parameter = self.add_parameter(
            "scan_x",
            snapshot_value=False,
            label="x",
            unit="m",
            get_cmd=lambda: self._axis("x"),
            set_cmd=False,
            vals=Arrays(shape=(self._n_pixels,)),
            docstring="Pixel-centre x positions of the configured frame along its fast axis (m).",
        )
        self.scan_y: Parameter = self.add_parameter(
            "scan_y",
            snapshot_value=False,
            label="y",
            unit="m",
            get_cmd=lambda: self._axis("y"),
            set_cmd=False,
            vals=Arrays(shape=(self._n_lines,)),
            docstring="Line-centre y positions of the configured frame, row 0 at the bottom (m).",
        )
        self._frame_record: dict[str, float | str] | None = None
        frame_parameters = []
        for field, label, unit in FRAME_FIELDS:
            frame_parameters.append(self.add_parameter(
                f"frame_{field}",
                label=label,
                unit=unit,
                get_cmd=lambda field=field: self._frame_field(field),
                set_cmd=False,
                snapshot_get=False,
                vals=Strings() if field == "direction" else Numbers(),
                docstring=f"{label} ({unit or 'up/down'}) of the last frame acquired by "
                "scan_image/last_frame; raises before the first. No request is sent.",
            ))
        #: The per-frame record parameters: measure them after the image, at its frame index.
        self.frame_parameters: tuple[Parameter, ...] = tuple(frame_parameters)
        self.scan_image: ParameterWithSetpoints = self.add_parameter(
            "scan_image",
            parameter_class=ParameterWithSetpoints,
            snapshot_get=False,  # a snapshot must never start a scan
            snapshot_value=False,
            label="Scan image",
            unit="",
            get_cmd=self._acquire_frame,
            set_cmd=False,
            setpoints=(self.scan_line, self.scan_pixel),
            vals=Arrays(shape=(self._n_lines, self._n_pixels)),
            docstring="Acquire one frame (start, wait for the end, grab) of `channel` in "
            "`data_direction`; float64 (lines, pixels), row 0 at the bottom. "
            "Side effect: runs a whole scan.",
        )
        self.last_frame: ParameterWithSetpoints = self.add_parameter(
            "last_frame",
            parameter_class=ParameterWithSetpoints,
            snapshot_get=False,  # a snapshot must never start a scan
            snapshot_value=False,
            label="Last frame",
            unit="",
            get_cmd=self._grab_frame,
            set_cmd=False,
            setpoints=(self.scan_line, self.scan_pixel),
            vals=Arrays(shape=(self._n_lines, self._n_pixels)),
            docstring="Grab the controller's current frame without starting a scan "
            "(unacquired lines are NaN).",
        )

        # ---- point spectroscopy --------------------------------------------------------
        self._spectrum_record: dict[str, Any] | None = None
        self.spectrum_start: Parameter = self.add_parameter(
            "spectrum_start",
            label="Sweep start bias",
            unit="V",
            initial_value=-1.0,
            get_cmd=None,
            set_cmd=None,
            vals=EnvelopeValidator(env.check_bias, f"|bias| <= {env.max_bias_V} V"),
            docstring="First bias of the spectrum sweep (V); driver-side, sent with each "
            "sweep; bounded by safety.max_bias_V.",
        )
        self.spectrum_end: Parameter = self.add_parameter(
            "spectrum_end",
            label="Sweep end bias",
            unit="V",
            initial_value=0.5,
            get_cmd=None,
            set_cmd=None,
            vals=EnvelopeValidator(env.check_bias, f"|bias| <= {env.max_bias_V} V"),
            docstring="Last bias of the spectrum sweep (V); bounded by safety.max_bias_V.",
        )
        self.spectrum_points: Parameter = self.add_parameter(
            "spectrum_points",
            label="Sweep points",
            initial_value=256,
            get_cmd=None,
            set_cmd=None,
            vals=Ints(2, MAX_SPECTRUM_POINTS),
            docstring="Points of the spectrum sweep.",
        )
        self.spectrum_didv_source: Parameter = self.add_parameter(
            "spectrum_didv_source",
            label="dI/dV source",
            initial_value="lockin",
            get_cmd=None,
            set_cmd=None,
            vals=Enum("lockin", "numeric"),
            docstring='"lockin": dI/dV from lock-in demodulator 1 (the bias modulated by '
            'lockin_amplitude); "numeric": the derivative of I(V).',
        )
        self.lockin_amplitude: Parameter = self.add_parameter(
            "lockin_amplitude",
            label="Lock-in modulation amplitude",
            unit="V",
            initial_value=0.01,
            get_cmd=None,
            set_cmd=None,
            vals=Numbers(1e-4, 0.1),
            docstring="Peak bias modulation (V) during a lock-in sweep; the sweep plus this "
            "amplitude must stay inside safety.max_bias_V.",
        )
        self.spectrum_bias: Parameter = self.add_parameter(
            "spectrum_bias",
            snapshot_value=False,
            label="Bias",
            unit="V",
            get_cmd=lambda: np.linspace(float(self.spectrum_start()), float(self.spectrum_end()),
                                        int(self.spectrum_points())),
            set_cmd=False,
            vals=Arrays(shape=(self._n_spectrum_points,)),
            docstring="Sweep biases (V): the setpoints of spectrum/spectrum_didv.",
        )
        self.spectrum: ParameterWithSetpoints = self.add_parameter(
            "spectrum",
            parameter_class=ParameterWithSetpoints,
            snapshot_get=False,  # a snapshot must never sweep the bias
            snapshot_value=False,
            label="Tunnelling current",
            unit="A",
            get_cmd=lambda: self._acquire_spectrum()["current"],
            set_cmd=False,
            setpoints=(self.spectrum_bias,),
            vals=Arrays(shape=(self._n_spectrum_points,)),
            docstring="I(V) at the tip's position (A), one bias sweep from spectrum_start to "
            "spectrum_end with the feedback held. The sweep (and lock-in modulation) is "
            "checked against the safety envelope before anything is sent. Side effects: "
            "sweeps the bias (restored after), records the site (spectrum_x/_y/_z).",
        )
        self.spectrum_didv: ParameterWithSetpoints = self.add_parameter(
            "spectrum_didv",
            parameter_class=ParameterWithSetpoints,
            snapshot_get=False,
            snapshot_value=False,
            label="dI/dV",
            unit="S",
            get_cmd=lambda: self._acquire_spectrum()["didv"],
            set_cmd=False,
            setpoints=(self.spectrum_bias,),
            vals=Arrays(shape=(self._n_spectrum_points,)),
            docstring="dI/dV (S) of a new sweep, from spectrum_didv_source; side effects as "
            "spectrum.",
        )
        self.last_spectrum_didv: ParameterWithSetpoints = self.add_parameter(
            "last_spectrum_didv",
            parameter_class=ParameterWithSetpoints,
            snapshot_get=False,
            snapshot_value=False,
            label="dI/dV",
            unit="S",
            get_cmd=lambda: self._spectrum_field("didv"),
            set_cmd=False,
            setpoints=(self.spectrum_bias,),
            vals=Arrays(shape=(self._n_spectrum_points,)),
            docstring="dI/dV (S) of the last sweep (spectrum or spectrum_didv) without a new "
            "one; measure it after spectrum to get both from one sweep. No request is sent.",
        )
        spectrum_parameters = []
        for field, label, unit in SPECTRUM_FIELDS:
            spectrum_parameters.append(self.add_parameter(
                f"spectrum_{field}",
                label=label,
                unit=unit,
                get_cmd=lambda field=field: self._spectrum_field(field),
                set_cmd=False,
                snapshot_get=False,
                vals=Numbers(),
                docstring=f"{label} ({unit}) of the last sweep; raises before the first. "
                "No request is sent.",
            ))
        #: The per-spectrum record parameters (the site): measure them after the spectrum.
        self.spectrum_parameters: tuple[Parameter, ...] = tuple(spectrum_parameters)

        self.channel(int(channel))
        if connect_on_init:
            self._connect_or_fail()

    # ---- identification / lifetime ---------------------------------------------------------
    def _connect_or_fail(self) -> None:
        """Connect, read the version and geometry, print the connect message; else close and raise."""
        from qcodes_stmtip.nanonis.protocol import (
            NanonisConnectionError,
            NanonisError,
            NanonisProtocolError,
        )

        begin = time.time()
        try:
            self.client.connect()
            self.refresh_geometry()
            self.connect_message(begin_time=begin)
        except (OSError, NanonisError, NanonisProtocolError) as exc:
            where = f"{self.address}:{self.port}"
            self.close()
            raise NanonisConnectionError(
                f"NanonisSTM {self.name!r}: no Nanonis controller answers at {where} ({exc}). "
                "Start the Nanonis software and enable its TCP programming interface on that "
                "port (or run `stmtip sim serve` for the simulator); pass "
                "connect_on_init=False to connect on first use instead"
            ) from exc


    def add_metadata_safety(self) -> None:
        """Record the safety envelope in the instrument metadata (hence in every snapshot)."""
        self.metadata["safety_envelope"] = self.safety.as_dict()

    def get_idn(self) -> dict[str, str | None]:
        """Vendor, product and software version reported by ``Util.VersionGet``."""
        info = self.client.util_version_get()
        return {
            "vendor": "SPECS Nanonis",
            "model": str(info.product),
            "serial": None,
            "firmware": f"{info.version} (host {info.host_release}, RT {info.rt_release})",
        }

    def close(self) -> None:
        """Close the TCP connection and remove the instrument."""
        try:
            self.client.close()
        finally:
            super().close()

    # ---- actions ---------------------------------------------------------------------------
    def start_scan(self, direction: str | None = None) -> None:
        """Start a scan of the current frame, ``"up"``/``"down"`` (default: ``scan_direction``)."""
        up = self._direction_up(direction)
        self.client.scan_action(0, up)

    def stop_scan(self) -> None:
        """Stop the running scan (the frame keeps the lines acquired so far)."""
        self.client.scan_action(1, self.scan_direction.get() == "up")

    def scan_running(self) -> bool:
        """Whether a scan is running now."""
        return bool(self.client.scan_status_get())

    def line_time(self) -> float:
        """Seconds one scan line takes, forward plus backward sweep (one request,
        ``Scan.SpeedGet``); the frame takes ``lines`` times this."""
        speed = self.client.scan_speed_get()
        return float(speed.forward_time_per_line) + float(speed.backward_time_per_line)

    def partial_frame(self) -> np.ndarray:
        """The frame in progress as ``last_frame`` returns it (float64, row 0 at the bottom,
        lines not acquired yet NaN), for watching a scan: one request (``Scan.FrameDataGrab``),
        the shape checked against the cached ``lines``/``pixels`` (read them with
        :meth:`refresh_geometry` when the scan starts); the frame record is not updated."""
        return self._grab_frame(refresh=False, record=False)

    def wait_end_of_scan(self, timeout_s: float = 60.0) -> bool:
        """Block until the running scan ends or ``timeout_s`` passes; True if it ended."""
        timeout_ms = self._timeout_ms(timeout_s, "timeout_s")
        timed_out, _path = self.client.scan_wait_end_of_scan(timeout_ms)
        return not timed_out

    def set_frame(
        self,
        centre_x: float,
        centre_y: float,
        width: float,
        height: float,
        angle: float = 0.0,
    ) -> None:
        """Set the whole scan frame at once (m, m, m, m, degrees clockwise).

        Raises SafetyViolation, sending nothing, unless the frame lies inside the envelope.
        """
        frame = self.safety.check_frame(centre_x, centre_y, width, height, angle)
        self.client.scan_frame_set(*frame)
        params = (self.scan_centre_x, self.scan_centre_y, self.scan_width, self.scan_height,
                  self.scan_angle)
        for param, value in zip(params, frame, strict=True):
            param.cache.set(value)

    def bias_pulse(
        self,
        *,
        amplitude_V: float,
        width_s: float,
        relative: bool = False,
        hold_z: bool = True,
        wait: bool = True,
    ) -> None:
        """Apply a bias pulse of ``amplitude_V`` (V) for ``width_s`` (s); keyword arguments only.

        ``relative=True`` adds the amplitude to the present bias; the envelope is then
        checked against the resulting voltage. ``hold_z`` freezes the z-controller
        during the pulse. Side effect: may change the tip. Raises SafetyViolation before
        sending anything out of envelope.
        """
        amplitude, width = self.safety.check_pulse(amplitude_V, width_s)
        if relative:
            self.safety.check_pulse(float(self.bias.get()) + amplitude, width)
        self.client.bias_pulse(
            amplitude_V=amplitude,
            width_s=width,
            wait=bool(wait),
            z_hold=1 if hold_z else 2,
            absolute=1 if relative else 2,
        )

    def tip_shaper(
        self,
        depth_m: float,
        *,
        bias_V: float | None = None,
        lift_time_s: float = 0.1,
        lift_height_m: float | None = None,
        bias_lift_V: float | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        """Controlled indentation: dip the tip ``depth_m`` into the sample with the tip shaper.

        The present tip-shaper properties are read, the dip depth (``tip lift`` = −depth),
        its time, and optionally the bias during the dip / the lift are replaced, the
        properties written and the shaper started (blocking up to ``timeout_s``).
        ``lift_height_m`` is the retraction after the dip (default: equal to the depth).
        Raises SafetyViolation before sending anything when the depth or a bias is
        outside the envelope.
        """
        depth = self.safety.check_indentation(depth_m)
        bias = None if bias_V is None else self.safety.check_bias(bias_V)
        bias_lift = None if bias_lift_V is None else self.safety.check_bias(bias_lift_V)
        lift_time = float(lift_time_s) if isinstance(lift_time_s, int | float) \
            and not isinstance(lift_time_s, bool) else math.nan
        if not 0 < lift_time <= 60:
            raise ValueError(f"tip_shaper lift_time_s must be in (0, 60] s, got {lift_time_s!r}")
        lift = depth if lift_height_m is None else float(lift_height_m)
        if not (math.isfinite(lift) and 0 <= lift <= self.safety.max_z_m):
            raise ValueError(
                f"tip_shaper lift_height_m must be in [0, {self.safety.max_z_m}] m, got {lift!r}"
            )
        timeout_ms = self._timeout_ms(timeout_s, "timeout_s")
        props = self.client.tip_shaper_props_get()
        changes: dict[str, Any] = {
            "tip_lift": -depth,
            "lift_time_1": lift_time,
            "lift_height": lift,
        }
        if bias is not None:
            changes["change_bias"] = 1
            changes["bias"] = bias
        if bias_lift is not None:
            changes["bias_lift"] = bias_lift
        # PropsGet reports the flags as 0 False / 1 True, PropsSet takes 1 True / 2 False
        changes.setdefault("change_bias", 1 if props.change_bias == 1 else 2)
        changes["restore_feedback"] = 1 if props.restore_feedback == 1 else 2
        # the controller's own bias settings must also be inside the envelope
        new_props = dataclasses.replace(props, **changes)
        if new_props.change_bias == 1:
            new_props = dataclasses.replace(new_props, bias=self.safety.check_bias(new_props.bias))
        new_props = dataclasses.replace(
            new_props, bias_lift=self.safety.check_bias(new_props.bias_lift))
        self.client.tip_shaper_props_set(new_props)
        self.client.tip_shaper_start(wait=True, timeout_ms=timeout_ms)

    def move_tip(self, x_m: float, y_m: float, *, wait: bool = True) -> None:
        """Move the tip (Follow Me) to ``(x_m, y_m)`` in piezo coordinates (m)."""
        x, y = self.safety.check_tip_move(x_m, y_m)
        self.client.fol_me_xy_pos_set(x, y, wait=bool(wait))

    def tip_position(self) -> tuple[float, float]:
        """The present tip position ``(x, y)`` in metres."""
        x, y = self.client.fol_me_xy_pos_get(wait=True)
        return float(x), float(y)

    def coarse_move(self, direction: str, steps: int, *, group: int = 0, wait: bool = True) -> None:
        """Step the coarse motor ``steps`` times in ``direction`` (``"X+"``, ``"X-"``, …, ``"Z-"``).

        ``"Z-"`` (towards the sample) is an approach: refused (SafetyViolation, nothing
        sent) unless the tip was withdrawn with :meth:`withdraw` after the feedback was
        last on, and at most ``safety.max_approach_steps`` steps; the step uses up the
        withdrawal (switch the feedback on to find the surface, withdraw, step again —
        or use :meth:`auto_approach`). Any coarse step forgets the tunnelling Z.
        """
        if not isinstance(direction, str) or direction not in MOTOR_DIRECTIONS:
            raise ValueError(
                f"coarse_move direction must be one of {sorted(MOTOR_DIRECTIONS)}, got {direction!r}"
            )
        if direction == TOWARDS_SAMPLE:
            withdrawn = self._withdrawn and self._surface_checked
            n = self.safety.check_approach_steps(steps, withdrawn=withdrawn)
            if n and self.feedback.get():  # the controller disagrees: not withdrawn
                raise SafetyViolation("coarse steps towards the sample with the z feedback on",
                                      n, "0 (withdraw the tip first)")
        else:
            n = self.safety.check_motor_steps(steps)
        if n == 0:
            return
        if direction == TOWARDS_SAMPLE:
            self._withdrawn = False
            self._surface_checked = False
        self._z_reference = None
        self.client.motor_start_move(MOTOR_DIRECTIONS[direction], n, group=group, wait=wait)

    def withdraw(self, *, wait: bool = True, timeout_s: float | None = None) -> None:
        """Withdraw the tip (switch the feedback off and retract fully); always allowed.

        Arms one coarse step towards the sample if the feedback was on since the last one.
        """
        timeout_ms = -1 if timeout_s is None else self._timeout_ms(timeout_s, "timeout_s")
        self.client.z_ctrl_withdraw(wait=bool(wait), timeout_ms=timeout_ms)
        self._withdrawn = self._surface_checked
        self.feedback.cache.invalidate()
        self.z_position.cache.invalidate()

    def auto_approach(self, on: bool = True) -> None:
        """Start (``on=True``) or stop the auto-approach (it ends in tunnelling, feedback on)."""
        if on:
            self._withdrawn = False
            self._surface_checked = True
            self._z_reference = None
        self.client.auto_approach_on_off_set(bool(on))

    def refresh_geometry(self) -> None:
        """Read the frame and buffer from the controller into the parameter caches.

        Two requests (``Scan.FrameGet``, ``Scan.BufferGet``); the frame setpoints
        ``scan_x``/``scan_y`` are computed from these caches.
        """
        frame = self.client.scan_frame_get()
        buffer = self.client.scan_buffer_get()
        for param, value in (
            (self.scan_centre_x, frame.centre_x),
            (self.scan_centre_y, frame.centre_y),
            (self.scan_width, frame.width),
            (self.scan_height, frame.height),
            (self.scan_angle, frame.angle),
        ):
            param.cache.set_from_raw_value(float(value))
        self.pixels.cache.set_from_raw_value(int(buffer.pixels))
        self.lines.cache.set_from_raw_value(int(buffer.lines))

    # ---- internals ---------------------------------------------------------------------------
    def _direction_up(self, direction: str | None) -> bool:
        if direction is None:
            direction = self.scan_direction.get()
        if direction not in ("up", "down"):
            raise ValueError(f"scan direction must be 'up' or 'down', got {direction!r}")
        return direction == "up"

    @staticmethod
    def _timeout_ms(timeout_s: float, name: str) -> int:
        if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"{name} must be a finite number of seconds > 0, got {timeout_s!r}")
        return max(1, min(int(round(timeout_s * 1000)), 2**31 - 1))

    def _set_bias(self, bias_V: float) -> None:
        """Check (below the validator, so ``set_raw`` is checked too) and send one float."""
        self.client.bias_set(self.safety.check_bias(bias_V))

    def _set_setpoint_current(self, current_A: float) -> None:
        """Check (below the validator) and send the setpoint as one float (A)."""
        self.client.z_ctrl_setpnt_set(self.safety.check_setpoint_current(current_A))

    def _get_feedback(self) -> bool:
        """Read the z-controller state; seeing it on forgets the old tunnelling Z."""
        on = bool(self.client.z_ctrl_on_off_get())
        if on:
            self._feedback_seen_on()
        return on

    def _set_feedback(self, on: bool) -> None:
        """Switch the z-controller; switching off records the tunnelling Z first (a read)."""
        if bool(on):
            self.client.z_ctrl_on_off_set(True)
            self._feedback_seen_on()
        else:
            self._remember_tunnelling_z()
            self.client.z_ctrl_on_off_set(False)

    def _feedback_seen_on(self) -> None:
        self._withdrawn = False
        self._surface_checked = True
        self._z_reference = None

    def _remember_tunnelling_z(self) -> None:
        """If the feedback is on now, record the present Z as the tunnelling position."""
        if bool(self.client.z_ctrl_on_off_get()):
            self._feedback_seen_on()
            self._z_reference = float(self.client.z_ctrl_z_pos_get())

    def _set_z_position(self, z_m: float) -> None:
        """Move Z with the feedback off, within ``max_indentation_m`` below the tunnelling Z.

        Checked below the validator (``set_raw`` too); the tunnelling Z is the one recorded
        when the driver switched the feedback off, else the present Z (read once and kept
        until the feedback is on again, so repeated moves cannot ratchet downwards).
        """
        z = self.safety.check_z(z_m)
        if self._get_feedback():
            raise RuntimeError(
                f"{self.name}.z_position: the z feedback is on; switch it off before setting z"
            )
        if self._z_reference is None:
            self._z_reference = float(self.client.z_ctrl_z_pos_get())
        self.client.z_ctrl_z_pos_set(self.safety.check_z_move(z, self._z_reference))

    def _add_frame_parameter(
        self, field: str, label: str, unit: str, vals: Validator[Any]
    ) -> Parameter:
        """Add ``scan_<field>``: one field of ``Scan.FrameGet``/``Scan.FrameSet``."""
        return self.add_parameter(
            f"scan_{field}",
            label=label,
            unit=unit,
            get_cmd=lambda: float(getattr(self.client.scan_frame_get(), field)),
            set_cmd=lambda v: self._set_frame_field(field, v),
            vals=vals,
            docstring=f"{label} ({unit}) of the scan frame; the whole frame (all four "
            "corners, rotated) must lie in safety.scan_area_*_m.",
        )

    def _set_frame_field(self, field: str, value: float) -> None:
        frame = {
            "centre_x": self.scan_centre_x.cache.get(),
            "centre_y": self.scan_centre_y.cache.get(),
            "width": self.scan_width.cache.get(),
            "height": self.scan_height.cache.get(),
            "angle": self.scan_angle.cache.get(),
        }
        frame[field] = value
        checked = self.safety.check_frame(
            frame["centre_x"], frame["centre_y"], frame["width"], frame["height"], frame["angle"]
        )
        self.client.scan_frame_set(*checked)

    def _set_buffer(self, *, pixels: int | None = None, lines: int | None = None) -> None:
        buffer = self.client.scan_buffer_get()
        channels = list(buffer.channels)
        self.client.scan_buffer_set(
            channels,
            buffer.pixels if pixels is None else pixels,
            buffer.lines if lines is None else lines,
        )

    def _set_scan_speed(self, speed: float) -> None:
        current = self.client.scan_speed_get()
        self.client.scan_speed_set(
            float(speed),
            float(speed),
            float(current.forward_time_per_line),
            float(current.backward_time_per_line),
            1,  # keep the speed constant (times per line follow)
            float(current.speed_ratio),
        )

    def _set_channel(self, channel: int) -> None:
        unit = CHANNEL_UNITS.get(int(channel), "")
        for name in ("scan_image", "last_frame"):
            if name in self.parameters:
                self.parameters[name].unit = unit

    def _n_pixels(self) -> int:
        return int(self.pixels.cache.get())

    def _n_lines(self) -> int:
        return int(self.lines.cache.get())

    def _axis(self, axis: str) -> np.ndarray:
        if axis == "x":
            n, size, centre = self._n_pixels(), self.scan_width.cache.get(), self.scan_centre_x.cache.get()
        else:
            n, size, centre = self._n_lines(), self.scan_height.cache.get(), self.scan_centre_y.cache.get()
        return centre + (np.arange(n) + 0.5) * (size / n) - size / 2

    def _acquire_frame(self) -> np.ndarray:
        """Start a scan, wait for its end and grab the frame (one whole scan)."""
        timeout_s = float(self.scan_timeout.get())
        self.start_scan()
        if not self.wait_end_of_scan(timeout_s):
            raise TimeoutError(
                f"{self.name}.scan_image: the scan did not end within {timeout_s} s "
                "(it is still running; call stop_scan() or raise scan_timeout)"
            )
        return self._grab_frame()

    def _grab_frame(self, *, refresh: bool = True, record: bool = True) -> np.ndarray:
        """Grab the current frame of ``channel``/``data_direction`` as float64, row 0 at the bottom."""
        if refresh:
            self.refresh_geometry()
        expected = (self._n_lines(), self._n_pixels())
        frame = self.client.scan_frame_data_grab(
            int(self.channel.get()), self.data_direction.get() == "forward"
        )
        data = np.asarray(frame.data)
        if data.shape != expected:
            raise FrameShapeError(
                f"{self.name}: controller returned a frame of shape {data.shape} for channel "
                f"{self.channel.get()} ({frame.channel_name!r}); expected (lines, pixels) = "
                f"{expected}; the received frame is kept in this error's .data",
                data=np.array(data, dtype=np.float64), expected=expected,
            )
        image = np.ascontiguousarray(
            frame_rows_bottom_up(data, bool(frame.scan_up), self.row_order), dtype=np.float64)
        if record:
            self._record_frame(bool(frame.scan_up))
        return image

    def _record_frame(self, scan_up: bool) -> None:
        """Keep where and how the frame just grabbed was taken (two requests: bias, setpoint)."""
        self._frame_record = {
            "centre_x": float(self.scan_centre_x.cache.get(get_if_invalid=False)),
            "centre_y": float(self.scan_centre_y.cache.get(get_if_invalid=False)),
            "width": float(self.scan_width.cache.get(get_if_invalid=False)),
            "height": float(self.scan_height.cache.get(get_if_invalid=False)),
            "angle": float(self.scan_angle.cache.get(get_if_invalid=False)),
            "bias": float(self.bias.get()),
            "setpoint_current": float(self.setpoint_current.get()),
            "direction": "up" if scan_up else "down",
            "timestamp": time.time(),
        }

    def _n_spectrum_points(self) -> int:
        return int(self.spectrum_points.cache.get())

    def _acquire_spectrum(self) -> dict[str, Any]:
        """One bias sweep at the tip's position: configure, run, read, record.

        The sweep and the lock-in modulation are checked against the envelope first
        (SafetyViolation, nothing sent); then the limits, points and channels are written,
        the lock-in configured (modulating the bias, demodulating the current) when it is
        the dI/dV source, and ``BiasSpectr.Start`` run with the bias reset and the Z
        controller held.
        """
        lockin = self.spectrum_didv_source() == "lockin"
        amplitude = float(self.lockin_amplitude()) if lockin else 0.0
        start, end, amplitude = self.safety.check_bias_sweep(
            self.spectrum_start(), self.spectrum_end(), amplitude)
        points = int(self.spectrum_points())
        client = self.client
        slot_names, _ = client.signals_in_slots_get()
        channels = [self._slot(slot_names, CURRENT_ROW)]
        if lockin:
            channels.append(self._slot(slot_names, LOCKIN_ROW))
            names = client.signals_names_get()
            client.lock_in_mod_signal_set(1, names.index("Bias (V)"))
            client.lock_in_demod_signal_set(1, names.index(CURRENT_ROW))
            client.lock_in_mod_amp_set(1, amplitude)
        client.bias_spectr_limits_set(start, end)
        client.bias_spectr_props_set(save_all=2, sweeps=1, backward=2, points=points,
                                     z_offset_m=0.0, autosave=2, show_dialog=2)
        client.bias_spectr_adv_props_set(reset_bias=1, z_hold=1, record_final_z=2,
                                         lockin_run=1 if lockin else 2)
        client.bias_spectr_chs_set(channels)
        setpoint_bias = float(client.bias_get())
        setpoint_current = float(client.z_ctrl_setpnt_get())
        result = client.bias_spectr_start(True, "", timeout=float(self.scan_timeout()))
        rows = {name: i for i, name in enumerate(result.channel_names)}
        data = np.asarray(result.data, dtype=np.float64)
        wanted = [SWEEP_ROW, CURRENT_ROW] + ([LOCKIN_ROW] if lockin else [])
        missing = [w for w in wanted if w not in rows]
        if missing or data.shape != (len(result.channel_names), points):
            raise FrameShapeError(
                f"{self.name}.spectrum: the controller returned channels "
                f"{list(result.channel_names)} and data of shape {data.shape}; expected "
                f"{wanted} x {points} points", data=data, expected=(len(wanted), points))
        bias, current = data[rows[SWEEP_ROW]], data[rows[CURRENT_ROW]]
        if lockin:
            didv = data[rows[LOCKIN_ROW]] * math.sqrt(2.0) / amplitude  # RMS X -> dI/dV
        else:
            didv = np.gradient(current, bias)
        x, y, z = (float(v) for v in result.parameters[2:5]) if len(result.parameters) >= 5 \
            else (math.nan,) * 3
        self._spectrum_record = {
            "bias": bias, "current": current, "didv": didv, "x": x, "y": y, "z": z,
            "setpoint_bias": setpoint_bias, "setpoint_current": setpoint_current,
            "timestamp": time.time(),
        }
        return self._spectrum_record

    def _slot(self, slot_names: list[str], name: str) -> int:
        try:
            return slot_names.index(name)
        except ValueError:
            raise ValueError(f"{self.name}.spectrum: no signal slot holds {name!r} (slots: "
                             f"{slot_names}); assign it in the Signals Manager") from None

    def _spectrum_field(self, field: str) -> Any:
        if self._spectrum_record is None:
            raise RuntimeError(f"{self.name}.spectrum_{field}: no spectrum taken yet; measure "
                               "spectrum (or spectrum_didv) first")
        value = self._spectrum_record[field]
        if isinstance(value, np.ndarray) and value.shape != (self._n_spectrum_points(),):
            raise RuntimeError(f"{self.name}: the last spectrum has {value.shape[0]} points, "
                               f"spectrum_points is now {self._n_spectrum_points()}")
        return value

    def _frame_field(self, field: str) -> float | str:
        if self._frame_record is None:
            raise RuntimeError(f"{self.name}.frame_{field}: no frame acquired yet; measure "
                               "scan_image (or last_frame) first")
        return self._frame_record[field]
