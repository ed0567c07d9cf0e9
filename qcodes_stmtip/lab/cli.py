"""``stmtip lab``: exercise the whole simulated lab (STM, positioner, pulse generator, thermometer).

``stmtip lab demo`` starts the simulated Nanonis controller on a free loopback port, loads
``qcodes_stmtip/lab/sim_yaml/simulated_lab.station.yaml`` (pointing the STM at that port), images an area,
moves the coarse positioner to a fresh area, images again and prints how similar the two
areas are, fires one bias pulse from the external generator and reads the temperature that
would be stored with each frame. Heavy imports happen inside the handler.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``lab`` and its ``demo`` subcommand."""
    lab = subparsers.add_parser("lab", help="the lab's other instruments (positioner, pulser, thermometer)",
                                description="The instruments beside the STM (coarse positioner, "
                                "pulse generator, thermometer) in one QCoDeS station.")
    commands = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")
    lab.set_defaults(func=lambda args: (lab.print_help(), 2)[1])
    demo = commands.add_parser(
        "demo", help="simulated lab: image, move to a fresh area, image, pulse, read temperature",
        description="Start the simulated Nanonis controller on a free loopback port, load the "
        "simulated lab station (STM, ANC300 positioner, 335xx pulse generator, thermometer), "
        "image an area, move the coarse positioner to a fresh area, image again and print how "
        "similar the two areas are, fire one bias pulse from the generator and read the "
        "temperature stored with each frame.",
    )
    demo.add_argument("--station", type=Path, default=None,
                      help="station YAML [the packaged simulated_lab.station.yaml]")
    demo.add_argument("--surface", choices=("hsi100", "au111", "cu111"), default="au111",
                      help="simulated sample surface [au111]")
    demo.add_argument("--seed", type=int, default=2, help="simulated sample/tip seed")
    demo.add_argument("--direction", choices=("X+", "X-", "Y+", "Y-"), default="X+",
                      help="coarse-move direction to the fresh area [X+]")
    demo.add_argument("--steps", type=int, default=20, help="coarse steps of the move")
    demo.add_argument("--size", type=float, default=500e-9, help="frame size, m (default 500 nm)")
    demo.add_argument("--pixels", type=int, default=64, help="pixels per line and lines")
    demo.add_argument("--pulse", type=float, nargs=2, default=(2.0, 1e-3), metavar=("VOLTS", "SECONDS"),
                      help="pulse amplitude (V) and width (s) from the generator")
    demo.add_argument("--time-acceleration", type=float, default=1000.0,
                      help="simulated seconds per real second")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from qcodes.instrument import Instrument
    from qcodes.station import Station

    from qcodes_stmtip.lab.area_similarity import area_similarity
    from qcodes_stmtip.lab.pymeasure_bridge import SIM_YAML_DIR
    from qcodes_stmtip.lab.thermometer import frame_metadata
    from qcodes_stmtip.sim.controller import serve_simulator

    station_file = args.station or SIM_YAML_DIR / "simulated_lab.station.yaml"
    if not Path(station_file).is_file():
        raise FileNotFoundError(f"--station {station_file} does not exist")
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if not args.time_acceleration > 0:
        raise ValueError(f"--time-acceleration must be > 0, got {args.time_acceleration}")
    server = serve_simulator(surface=args.surface, seed=args.seed,
                             time_acceleration=args.time_acceleration, initial_tip="individual_atoms")
    station = Station(config_file=str(station_file))
    try:
        stm = station.load_instrument("stm", port=server.port)
        positioner = station.load_instrument("positioner")
        pulser = station.load_instrument("pulser")
        thermometer = station.load_instrument("thermometer")
        stm.pixels(args.pixels)
        stm.lines(args.pixels)
        stm.set_frame(0.0, 0.0, args.size, args.size)
        stm.scan_image()  # settle piezo creep
        before = stm.scan_image()
        repeat = stm.scan_image()
        meta = frame_metadata(thermometer)
        print(f"temperature: {meta['temperature_K']:.3f} K ({meta['temperature_sensor']})")
        print(f"same area imaged twice: similarity {area_similarity(before, repeat):+.2f}")
        move = positioner.move_to_fresh_area(args.direction, args.steps)
        stm.scan_image()
        after = stm.scan_image()
        print(f"moved {move.steps} steps {move.direction} on ANC300 axis {move.axis} "
              f"(re-approached: {move.approached}); new area vs old: similarity "
              f"{area_similarity(repeat, after):+.2f}")
        amplitude, width = args.pulse
        pulser.pulse(amplitude, width)
        print(f"pulse {amplitude:g} V for {width:g} s fired; tip now "
              f"{server.microscope.ground_truth().tip_label}")
    finally:
        station.close_all_registered_instruments()
        Instrument.close_all()
        server.stop()
    return 0
