"""A simulated microscope behind the driver, a fresh QCoDeS database, the oracle classifier."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from qcodes.dataset import initialise_or_create_database_at, load_or_create_experiment

from qcodes_stmtip.conditioning.oracle import GroundTruthClassifier
from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
from qcodes_stmtip.sim.controller import SimulatedNanonisServer, serve_simulator

#: Area bounds inside the simulator's ±2 µm scan range, m.
BOUNDS = ((-1.5e-6, 1.5e-6), (-1.5e-6, 1.5e-6))


@dataclass
class Rig:
    server: SimulatedNanonisServer
    stm: NanonisSTM
    commands: list[str]

    @property
    def microscope(self):
        return self.server.microscope

    def oracle(self, surface: str = "hsi100") -> GroundTruthClassifier:
        return GroundTruthClassifier(surface, self.microscope.ground_truth)


@pytest.fixture
def db(tmp_path: Path):
    initialise_or_create_database_at(tmp_path / "conditioning.db")
    return load_or_create_experiment("conditioning_tests", sample_name="simulated")


def make_rig(surface: str = "hsi100", seed: int = 0, initial_tip: str | None = "generic_defect",
             safety: dict | None = None, time_acceleration: float = 200.0) -> Rig:
    """Simulator (no spontaneous tip changes) + driver with 32x32 frames of 20 nm; commands are logged.

    At the default ×200 a line takes 1 ms of wall time; tests that watch scans line by line
    slow the clock down (×20: 10 ms a line) so that a busy machine keeps up."""
    server = serve_simulator(surface, seed=seed, time_acceleration=time_acceleration,
                             initial_tip=initial_tip)
    # no spontaneous apex changes: only the experiment's actions change the tip, whatever the load
    model = server.microscope.dynamics.model
    model.spontaneous_mean_s = (1e12,) * len(model.spontaneous_mean_s)
    commands: list[str] = []
    dispatch = server.dispatch

    def logged(request):
        commands.append(request.command)
        return dispatch(request)

    server.dispatch = logged  # type: ignore[method-assign]
    stm = NanonisSTM(f"stm_s{seed}", port=server.port, safety=safety)
    stm.pixels(32)
    stm.lines(32)
    stm.set_frame(0.0, 0.0, 20e-9, 20e-9, 0.0)
    return Rig(server, stm, commands)


@pytest.fixture
def rig_factory() -> Iterator:
    """``rig_factory(surface, seed, initial_tip, safety)`` → a :class:`Rig`, closed afterwards."""
    made: list[Rig] = []

    def factory(*args, **kwargs) -> Rig:
        made.append(make_rig(*args, **kwargs))
        return made[-1]

    try:
        yield factory
    finally:
        for r in made:
            r.stm.close()
            r.server.stop()


@pytest.fixture
def rig(rig_factory) -> Rig:
    return rig_factory()


@pytest.fixture
def bounds() -> tuple[tuple[float, float], tuple[float, float]]:
    return BOUNDS


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A one-member H:Si(100) bundle with random weights (32² input): exercises the real monitor."""
    pytest.importorskip("keras")
    import numpy as np

    from qcodes_stmtip.classify.architectures import build_model
    from qcodes_stmtip.classify.bundle import save_bundle
    from qcodes_stmtip.classify.ensemble import Ensemble, Member
    from qcodes_stmtip.taxonomy import CLASSES

    model = build_model("squeezenet", 4, width=0.125, size=32)
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()])
    ens = Ensemble("hsi100", CLASSES["hsi100"], [Member("sq", "squeezenet", model)],
                   thresholds=[0.0] * 4)
    return save_bundle(ens, tmp_path_factory.mktemp("tiny") / "bundle", image_size=32)
