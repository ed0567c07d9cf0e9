"""What the PyMeasure bridge costs and how long the simulated lab's actions take (prints numbers).

* bridge overhead: one QCoDeS ``get`` of a bridged property vs the same PyMeasure property read
  directly, both over pyvisa-sim (so the wire cost is the simulator's, not a real bus);
* ``CoarsePositioner.move_to_fresh_area`` (withdraw, ANC300 steps, simulated Motor.StartMove,
  auto-approach) and ``PulseGenerator.pulse`` on the simulated lab station;
* ``frame_metadata`` on the simulated Lakeshore.

    .venv/bin/python benchmarks/lab_instruments.py [--repeats 200] [--moves 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _timed(func: Callable[[], object], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return samples


def _ms(samples: list[float]) -> str:
    return (f"median {1e3 * statistics.median(samples):8.3f} ms, "
            f"p90 {1e3 * sorted(samples)[int(0.9 * (len(samples) - 1))]:8.3f} ms (n={len(samples)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="reads per bridge measurement")
    parser.add_argument("--moves", type=int, default=5, help="fresh-area moves / pulses to time")
    args = parser.parse_args()

    from qcodes.instrument import Instrument
    from qcodes.station import Station

    from qcodes_stmtip.lab.pymeasure_bridge import PyMeasureInstrument
    from qcodes_stmtip.lab.thermometer import frame_metadata
    from qcodes_stmtip.sim.controller import serve_simulator

    bridge = PyMeasureInstrument(
        "bench_fg", "GPIB::10::INSTR", pymeasure_class="pymeasure.instruments.agilent.Agilent33500",
        pyvisa_sim_file="agilent_33500.sim.yaml",
        pymeasure_kwargs={"read_termination": "\n", "write_termination": "\n"},
    )
    bridge.add_bridged_parameter("frequency", "frequency", unit="Hz")
    direct = _timed(lambda: bridge.driver.frequency, args.repeats)
    bridged = _timed(bridge.frequency.get, args.repeats)
    print(f"PyMeasure property read (pyvisa-sim): {_ms(direct)}")
    print(f"same via QCoDeS bridged parameter:    {_ms(bridged)}")
    print(f"bridge overhead per get:             {1e6 * (statistics.median(bridged) - statistics.median(direct)):8.1f} us")
    bridge.close()

    server = serve_simulator(surface="hsi100", seed=0, time_acceleration=1000.0,
                             initial_tip="individual_atoms")
    station = Station(config_file=str(REPO / "qcodes_stmtip" / "lab" / "sim_yaml" / "simulated_lab.station.yaml"))
    try:
        station.load_instrument("stm", port=server.port)
        positioner = station.load_instrument("positioner")
        pulser = station.load_instrument("pulser")
        thermometer = station.load_instrument("thermometer")
        directions = ["X+", "X-"]
        moves = _timed(lambda: positioner.move_to_fresh_area(directions[len(positioner.moves) % 2], 20),
                       args.moves)
        print(f"move_to_fresh_area(20 steps, re-approach; sim x1000 time): {_ms(moves)}")
        pulses = _timed(lambda: pulser.pulse(2.0, 1e-3), args.moves)
        print(f"pulse(2 V, 1 ms) incl. *OPC?/*ESR? checks and sim replay:  {_ms(pulses)}")
        temps = _timed(lambda: frame_metadata(thermometer), args.repeats // 4 or 1)
        print(f"frame_metadata(thermometer):                               {_ms(temps)}")
    finally:
        station.close_all_registered_instruments()
        Instrument.close_all()
        server.stop()


if __name__ == "__main__":
    main()
