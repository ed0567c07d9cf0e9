"""A simulated Nanonis controller: named-field handlers on the Nanonis server core.

:class:`SimulatedNanonisServer` is a :class:`~qcodes_stmtip.nanonis.server.NanonisServer`
whose handlers (:data:`HANDLERS`, one per command of the reference table) act on a
:class:`~qcodes_stmtip.sim.microscope.SimulatedMicroscope`. Each handler takes the
microscope and the request fields by the names of the command table
(:mod:`qcodes_stmtip.nanonis.protocol`) and returns the reply fields by name. The socket
side — one thread per connection, error replies (an unknown command or a bad argument
gets one, never a dropped connection), bounded reads, idle and request timeouts — is the
core's; see :mod:`qcodes_stmtip.nanonis.server`. This module checks at import that its
handlers cover the command table and take each command's fields by name.

``stmtip sim serve --port 6501 --surface hsi100`` runs it in the foreground.
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from qcodes_stmtip.nanonis.protocol import COMMANDS, MAX_BODY_SIZE
from qcodes_stmtip.nanonis.server import (
    BACKLOG,
    DRAIN_BYTES,
    IDLE_TIMEOUT_S,
    MAX_CONNECTIONS,
    REQUEST_TIMEOUT_S,
    NanonisServer,
    check_handlers,
)

if TYPE_CHECKING:
    from qcodes_stmtip.sim.microscope import SimulatedMicroscope

__all__ = ["DRAIN_BYTES", "HANDLERS", "IDLE_TIMEOUT_S", "REQUEST_TIMEOUT_S",
           "SimulatedNanonisServer", "add_serve_command", "serve_simulator"]

log = logging.getLogger(__name__)

#: Product and version strings of ``Util.VersionGet``.
PRODUCT = "Nanonis SPM Control Software (qcodes-stmtip simulator)"
VERSION = "Generic 5e"
RELEASE = 14718

SimHandler = Callable[..., Mapping[str, Any] | None]
"""``handler(microscope, **request_fields) -> reply fields by name`` (None: no returns)."""


def _flag(value: int, name: str) -> bool:
    if value not in (0, 1):
        raise ValueError(f"{name} must be 0 or 1, got {value}")
    return bool(value)


def _done(_: Any) -> None:
    """A command without return values (whatever the microscope method returned)."""
    return None


def _bias_pulse(m: SimulatedMicroscope, *, wait: int, width: float, bias: float, z_hold: int,
                absolute: int) -> None:
    m.bias_pulse(amplitude_V=bias, width_s=width, wait=_flag(wait, "wait"), z_hold=z_hold,
                 absolute=absolute)


def _wait_end(m: SimulatedMicroscope, *, timeout_ms: int) -> dict[str, Any]:
    timed_out, path = m.wait_end_of_scan(timeout_ms)
    return {"timed_out": int(timed_out), "path": path}


def _frame_set(m: SimulatedMicroscope, *, centre_x: float, centre_y: float, width: float,
               height: float, angle: float) -> None:
    m.set_frame(centre_x, centre_y, width, height, angle)


def _frame_get(m: SimulatedMicroscope) -> dict[str, float]:
    centre_x, centre_y, width, height, angle = m.get_frame()
    return {"centre_x": centre_x, "centre_y": centre_y, "width": width, "height": height,
            "angle": angle}


def _buffer_get(m: SimulatedMicroscope) -> dict[str, Any]:
    channels, pixels, lines = m.get_buffer()
    return {"channels": channels, "pixels": pixels, "lines": lines}


def _speed_set(m: SimulatedMicroscope, *, forward_speed: float, backward_speed: float,
               forward_time_per_line: float, backward_time_per_line: float, keep_constant: int,
               speed_ratio: float) -> None:
    m.set_speed(forward_speed, backward_speed, forward_time_per_line, backward_time_per_line,
                keep_constant, speed_ratio)


def _speed_get(m: SimulatedMicroscope) -> dict[str, Any]:
    fwd_speed, bwd_speed, fwd_time, bwd_time, keep, ratio = m.get_speed()
    return {"forward_speed": fwd_speed, "backward_speed": bwd_speed,
            "forward_time_per_line": fwd_time, "backward_time_per_line": bwd_time,
            "keep_constant": keep, "speed_ratio": ratio}


def _props_set(m: SimulatedMicroscope, *, continuous: int, bouncy: int, autosave: int,
               series_name: str, comment: str, modules: tuple[str, ...], autopaste: int) -> None:
    m.set_props(continuous=continuous, bouncy=bouncy, autosave=autosave, series_name=series_name,
                comment=comment, modules=modules, autopaste=autopaste)


def _frame_grab(m: SimulatedMicroscope, *, channel: int, forward: int) -> dict[str, Any]:
    name, data, up = m.frame_data(channel, _flag(forward, "data direction"))
    return {"channel_name": name, "data": data, "scan_up": int(up)}


def _xy(m: SimulatedMicroscope, *, wait: int) -> dict[str, float]:
    x, y = m.xy_position()
    return {"x": x, "y": y}


def _tip_shaper_get(m: SimulatedMicroscope) -> dict[str, float]:
    props = m.get_tip_shaper()
    return {f.name: props[f.name] for f in COMMANDS["TipShaper.PropsGet"].returns}


def _motor_move(m: SimulatedMicroscope, *, direction: int, steps: int, group: int,
                wait: int) -> None:
    m.motor_move(direction, steps, group, _flag(wait, "wait"))


def _signal_names(m: SimulatedMicroscope) -> dict[str, Any]:
    from qcodes_stmtip.sim.microscope import SIGNAL_NAMES

    return {"names": SIGNAL_NAMES}


def _signals_in_slots(m: SimulatedMicroscope) -> dict[str, Any]:
    from qcodes_stmtip.sim.microscope import SLOT_NAMES, SLOT_SIGNALS

    return {"names": SLOT_NAMES, "indexes": SLOT_SIGNALS}


def _current_gains(m: SimulatedMicroscope) -> dict[str, Any]:
    gains, gain_index, filters, filter_index = m.get_current_gains()
    return {"gains": gains, "gain_index": gain_index, "filters": filters,
            "filter_index": filter_index}


def _safe_tip_get(m: SimulatedMicroscope) -> dict[str, Any]:
    auto_recovery, auto_pause, threshold = m.get_safe_tip()
    return {"auto_recovery": auto_recovery, "auto_pause": auto_pause, "threshold": threshold}


def _scan_save(m: SimulatedMicroscope, *, wait: int, timeout_ms: int) -> dict[str, int]:
    _flag(wait, "wait")
    m.scan_save()
    return {"timed_out": 0}


def _spectr_start(m: SimulatedMicroscope, *, get_data: int, save_base_name: str) -> dict[str, Any]:
    names, data, parameters = m.spectro.start(_flag(get_data, "get data"), save_base_name)
    return {"channel_names": names, "data": data, "parameters": parameters}


def _spectr_chs_get(m: SimulatedMicroscope) -> dict[str, Any]:
    return {"channels": m.spectro.channels, "channel_names": m.spectro.channel_names()}


def _spectr_props_get(m: SimulatedMicroscope) -> dict[str, Any]:
    return m.spectro.get_props()


def _spectr_adv_get(m: SimulatedMicroscope) -> dict[str, int]:
    reset_bias, z_hold, record_final_z, lockin_run = m.spectro.get_adv_props()
    return {"reset_bias": reset_bias, "z_hold": z_hold, "record_final_z": record_final_z,
            "lockin_run": lockin_run}


def _spectr_limits_get(m: SimulatedMicroscope) -> dict[str, float]:
    start, end = m.spectro.get_limits()
    return {"start": start, "end": end}


def _spectr_timing_get(m: SimulatedMicroscope) -> dict[str, float]:
    return m.spectro.get_timing()


#: How each command of the table acts on the microscope:
#: ``handler(microscope, **request_fields) -> reply fields by name``.
HANDLERS: dict[str, SimHandler] = {
    "Bias.Set": lambda m, *, bias: _done(m.set_bias(bias)),
    "Bias.Get": lambda m: {"bias": m.get_bias()},
    "Bias.Pulse": _bias_pulse,
    "Current.Get": lambda m: {"current": m.get_current()},
    "ZCtrl.SetpntSet": lambda m, *, setpoint: _done(m.set_setpoint(setpoint)),
    "ZCtrl.SetpntGet": lambda m: {"setpoint": m.get_setpoint()},
    "ZCtrl.OnOffSet": lambda m, *, on: _done(m.set_feedback(_flag(on, "Z-controller status"))),
    "ZCtrl.OnOffGet": lambda m: {"on": int(m.get_feedback())},
    "ZCtrl.ZPosSet": lambda m, *, z: _done(m.set_z(z)),
    "ZCtrl.ZPosGet": lambda m: {"z": m.get_z()},
    "ZCtrl.Withdraw": lambda m, *, wait, timeout_ms: _done(m.withdraw(_flag(wait, "wait"),
                                                                      timeout_ms)),
    "ZCtrl.StatusGet": lambda m: {"status": m.z_status()},
    "ZCtrl.Home": lambda m: _done(m.home()),
    "SafeTip.PropsSet": lambda m, *, auto_recovery, auto_pause, threshold: _done(
        m.set_safe_tip(auto_recovery, auto_pause, threshold)),
    "AutoApproach.OnOffSet": lambda m, *, on: _done(m.set_approach(_flag(on, "on/off"))),
    "AutoApproach.OnOffGet": lambda m: {"on": int(m.get_approach())},
    "Scan.Action": lambda m, *, action, direction_up: _done(
        m.scan_action(action, _flag(direction_up, "scan direction"))),
    "Scan.StatusGet": lambda m: {"running": int(m.scan_running())},
    "Scan.WaitEndOfScan": _wait_end,
    "Scan.FrameSet": _frame_set,
    "Scan.FrameGet": _frame_get,
    "Scan.BufferSet": lambda m, *, channels, pixels, lines: _done(
        m.set_buffer(channels, pixels, lines)),
    "Scan.BufferGet": _buffer_get,
    "Scan.SpeedSet": _speed_set,
    "Scan.SpeedGet": _speed_get,
    "Scan.PropsSet": _props_set,
    "Scan.FrameDataGrab": _frame_grab,
    "Scan.XYPosGet": _xy,
    "FolMe.XYPosSet": lambda m, *, x, y, wait: _done(m.move_tip(x, y, _flag(wait, "wait"))),
    "FolMe.XYPosGet": _xy,
    "TipShaper.Start": lambda m, *, wait, timeout_ms: _done(
        m.tip_shaper_start(_flag(wait, "wait"), timeout_ms)),
    # the tip shaper's properties are named as in the table: passed through by name
    "TipShaper.PropsSet": lambda m, **props: _done(m.set_tip_shaper(**props)),
    "TipShaper.PropsGet": _tip_shaper_get,
    "Motor.StartMove": _motor_move,
    "Signals.NamesGet": _signal_names,
    "Signals.ValGet": lambda m, *, index, wait: {"value": m.signal_value(index)},
    "Util.VersionGet": lambda m: {"product": PRODUCT, "version": VERSION,
                                  "host_release": RELEASE, "rt_release": RELEASE},
    "Signals.ValsGet": lambda m, *, indexes, wait: {"values": m.signal_values(indexes)},
    "Signals.InSlotsGet": _signals_in_slots,
    "Current.GainsGet": _current_gains,
    "ZCtrl.GainGet": lambda m: dict(zip(("p_gain", "time_constant", "i_gain"), m.get_z_gains(),
                                        strict=True)),
    "ZCtrl.LimitsGet": lambda m: dict(zip(("high_limit", "low_limit"), m.get_z_limits(),
                                          strict=True)),
    "SafeTip.PropsGet": _safe_tip_get,
    "Scan.PropsGet": lambda m: m.get_props(),
    "Scan.Save": _scan_save,
    "BiasSpectr.Open": lambda m: _done(setattr(m.spectro, "open", True)),
    "BiasSpectr.Start": _spectr_start,
    "BiasSpectr.ChsSet": lambda m, *, channels: _done(m.spectro.set_channels(channels)),
    "BiasSpectr.ChsGet": _spectr_chs_get,
    "BiasSpectr.PropsSet": lambda m, **props: _done(m.spectro.set_props(**props)),
    "BiasSpectr.PropsGet": _spectr_props_get,
    "BiasSpectr.AdvPropsSet": lambda m, **flags: _done(m.spectro.set_adv_props(**flags)),
    "BiasSpectr.AdvPropsGet": _spectr_adv_get,
    "BiasSpectr.LimitsSet": lambda m, *, start, end: _done(m.spectro.set_limits(start, end)),
    "BiasSpectr.LimitsGet": _spectr_limits_get,
    "BiasSpectr.TimingSet": lambda m, **timing: _done(m.spectro.set_timing(**timing)),
    "BiasSpectr.TimingGet": _spectr_timing_get,
    "LockIn.ModOnOffSet": lambda m, *, modulator, on: _done(m.spectro.set_mod_on(modulator, on)),
    "LockIn.ModOnOffGet": lambda m, *, modulator: {"on": m.spectro.get("mod_on", modulator)},
    "LockIn.ModSignalSet": lambda m, *, modulator, signal: _done(
        m.spectro.set_mod_signal(modulator, signal)),
    "LockIn.ModSignalGet": lambda m, *, modulator: {
        "signal": m.spectro.get("mod_signal", modulator)},
    "LockIn.ModAmpSet": lambda m, *, modulator, amplitude: _done(
        m.spectro.set_mod_amp(modulator, amplitude)),
    "LockIn.ModAmpGet": lambda m, *, modulator: {"amplitude": m.spectro.get("mod_amp", modulator)},
    "LockIn.ModPhasFreqSet": lambda m, *, modulator, frequency: _done(
        m.spectro.set_mod_freq(modulator, frequency)),
    "LockIn.ModPhasFreqGet": lambda m, *, modulator: {
        "frequency": m.spectro.get("mod_freq", modulator)},
    "LockIn.DemodSignalSet": lambda m, *, demodulator, signal: _done(
        m.spectro.set_demod_signal(demodulator, signal)),
    "LockIn.DemodSignalGet": lambda m, *, demodulator: {
        "signal": m.spectro.get("demod_signal", demodulator)},
}

if set(HANDLERS) != set(COMMANDS):  # pragma: no cover - a table/handler mismatch is a bug
    raise RuntimeError(f"handlers and command table differ: {set(HANDLERS) ^ set(COMMANDS)}")
check_handlers(HANDLERS, bound=1)  # each takes its command's fields by name


class SimulatedNanonisServer(NanonisServer):
    """TCP server for a :class:`SimulatedMicroscope` (Nanonis protocol).

    Args:
        microscope: the simulated microscope the commands act on.
        host: bind address (loopback by default).
        port: TCP port; 0 picks a free one (read it from :attr:`port` after ``start``).
        idle_timeout: seconds a connection may wait between requests before it is closed.
        request_timeout: seconds a started request may take to arrive, and a reply to go
            out (plus one second per MB).
        max_body_size: largest request body for any command (bytes), on top of each
            command's own limit from the table.
        max_connections: connections served at once (more are refused with an error reply).
        backlog: the listen backlog.
    """

    def __init__(self, microscope: SimulatedMicroscope, host: str = "127.0.0.1",
                 port: int = 0, *, idle_timeout: float = IDLE_TIMEOUT_S,
                 request_timeout: float = REQUEST_TIMEOUT_S,
                 max_body_size: int = MAX_BODY_SIZE, max_connections: int = MAX_CONNECTIONS,
                 backlog: int = BACKLOG) -> None:
        handlers = {command: functools.partial(handler, microscope)
                    for command, handler in HANDLERS.items()}
        super().__init__(handlers, host, port, idle_timeout=idle_timeout,
                         request_timeout=request_timeout, max_body_size=max_body_size,
                         max_connections=max_connections, backlog=backlog, name="nanonis-sim")
        self.microscope = microscope


def serve_simulator(surface: str = "hsi100", seed: int = 0, time_acceleration: float = 1.0,
                    port: int = 0, host: str = "127.0.0.1",
                    initial_tip: str | None = None, *, idle_timeout: float = IDLE_TIMEOUT_S,
                    request_timeout: float = REQUEST_TIMEOUT_S,
                    max_frame_values: int | None = None,
                    max_connections: int = MAX_CONNECTIONS,
                    backlog: int = BACKLOG) -> SimulatedNanonisServer:
    """Create a :class:`SimulatedMicroscope` and serve it in background threads.

    ``idle_timeout``/``request_timeout``/``max_connections``/``backlog``: see
    :class:`SimulatedNanonisServer`;
    ``max_frame_values``: see :class:`SimulatedMicroscope` (``None``: its default).
    Returns the started server (``.port`` is the bound port; ``.stop()`` ends it).
    """
    from qcodes_stmtip.sim.microscope import MAX_FRAME_VALUES, SimulatedMicroscope

    microscope = SimulatedMicroscope(
        surface, seed=seed, time_acceleration=time_acceleration, initial_tip=initial_tip,
        max_frame_values=MAX_FRAME_VALUES if max_frame_values is None else max_frame_values)
    server = SimulatedNanonisServer(microscope, host=host, port=port, idle_timeout=idle_timeout,
                                    request_timeout=request_timeout,
                                    max_connections=max_connections, backlog=backlog)
    server.start()
    return server


def _serve_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = serve_simulator(args.surface, seed=args.seed, time_acceleration=args.time_acceleration,
                             port=args.port, host=args.host, initial_tip=args.initial_tip,
                             idle_timeout=args.idle_timeout, max_frame_values=args.max_frame_values,
                             request_timeout=args.request_timeout,
                             max_connections=args.max_connections, backlog=args.backlog)
    try:
        print(f"simulated Nanonis controller ({args.surface}, seed {args.seed}, "
              f"×{args.time_acceleration:g} time) on {args.host}:{server.port} — Ctrl-C to stop",
              flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def add_serve_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``serve`` (the simulated controller) to a subcommand group (e.g. ``stmtip sim``)."""
    from qcodes_stmtip.taxonomy import SURFACES

    parser = subparsers.add_parser(
        "serve", help="run a simulated Nanonis controller (TCP) until Ctrl-C",
        description="Serve a simulated STM over the Nanonis TCP protocol.")
    parser.add_argument("--port", type=int, default=6501, help="TCP port (default 6501; 0 = any free)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--surface", choices=SURFACES, default="hsi100",
                        help="simulated sample surface [hsi100]")
    parser.add_argument("--seed", type=int, default=0, help="sample/tip/noise seed")
    parser.add_argument("--time-acceleration", type=float, default=1.0,
                        help="simulated seconds per wall second (default 1)")
    parser.add_argument("--initial-tip", default=None, help="initial tip class (default: random)")
    parser.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_S,
                        help=f"close connections idle this many seconds (default {IDLE_TIMEOUT_S:g})")
    parser.add_argument("--request-timeout", type=float, default=REQUEST_TIMEOUT_S,
                        help="close a connection whose request (or reply) takes longer than this "
                             f"many seconds to arrive (default {REQUEST_TIMEOUT_S:g})")
    parser.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS,
                        help="connections served at once; more are refused with an error reply "
                             f"(default {MAX_CONNECTIONS})")
    parser.add_argument("--backlog", type=int, default=BACKLOG,
                        help=f"listen backlog for bursts of connections (default {BACKLOG})")
    parser.add_argument("--max-frame-values", type=int, default=None,
                        help="largest scan buffer, pixels x lines (default 1048576 = 1024 x 1024)")
    parser.set_defaults(func=_serve_command)
    return parser
