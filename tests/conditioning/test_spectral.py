"""The spectroscopic tip check: the judge on simulated spectra, and the check in the conditioning loop."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qcodes.instrument import Instrument

from qcodes_stmtip.conditioning.oracle import GroundTruthClassifier
from qcodes_stmtip.conditioning.spectral import SpectroscopicTipCheck, SurfaceStateJudge
from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
from qcodes_stmtip.sim.controller import serve_simulator
from qcodes_stmtip.sim.spectra import point_spectrum
from qcodes_stmtip.sim.tips import sample_tip


@pytest.mark.parametrize("surface", ["au111", "cu111"])
def test_the_judge_passes_sharp_tips_and_fails_double_ones(surface: str) -> None:
    judge = SurfaceStateJudge.for_surface(surface)
    low, high = judge.sweep()
    bias = np.linspace(low - 0.05, high + 0.05, 200)
    rng = np.random.default_rng(3)
    verdicts = {}
    for label in ("individual_atoms", "double_tip"):
        verdicts[label] = [judge.judge(bias, point_spectrum(
            surface, sample_tip(surface, label, rng), bias, setpoint_A=1e-9, setpoint_bias_V=0.1,
            modulation_V=0.01, rng=rng).lockin_x) for _ in range(20)]
    assert all(v.good for v in verdicts["individual_atoms"])
    assert all(abs(v.onset_V - judge.expected_onset_V) < 0.02 for v in verdicts["individual_atoms"])
    assert not any(v.good for v in verdicts["double_tip"])
    assert "width" in verdicts["double_tip"][0].reason or "onset" in verdicts["double_tip"][0].reason


def test_the_judge_refuses_a_sweep_that_misses_the_onset() -> None:
    judge = SurfaceStateJudge.for_surface("au111")
    with pytest.raises(ValueError, match="covers"):
        judge.judge(np.linspace(-0.3, 0.3, 50), np.ones(50))
    with pytest.raises(ValueError, match="no surface-state check"):
        SurfaceStateJudge.for_surface("hsi100")


@pytest.fixture
def double_tip_stm() -> Iterator[tuple[NanonisSTM, object]]:
    with serve_simulator("au111", seed=9, time_acceleration=1000.0, initial_tip="double_tip") as srv:
        stm = NanonisSTM("stm_spectral", address="127.0.0.1", port=srv.port)
        stm.pixels(32)
        stm.lines(32)
        stm.set_frame(0.0, 0.0, 8e-9, 8e-9)
        try:
            yield stm, srv
        finally:
            stm.close()
            Instrument.close_all()


def test_a_good_looking_image_of_a_double_tip_is_overruled_and_recorded(double_tip_stm,
                                                                        tmp_path: Path) -> None:
    """An image classifier fooled by a double tip: the spectrum turns the stop into an action."""
    from qcodes.dataset import initialise_or_create_database_at, load_or_create_experiment

    from qcodes_stmtip.conditioning.experiment import ConditioningExperiment, Target
    from qcodes_stmtip.conditioning.policy import EscalatingPolicy

    stm, server = double_tip_stm
    micro = server.microscope
    fooled = GroundTruthClassifier(  # calls the double tip's frames individual_atoms
        "au111", lambda: dataclasses.replace(micro.ground_truth(), frame_label="individual_atoms"))
    check = SpectroscopicTipCheck(fooled, stm, "au111", points=120)
    initialise_or_create_database_at(tmp_path / "spectral.db")
    exp = load_or_create_experiment("spectral", sample_name="sim au111")
    result = ConditioningExperiment(
        stm, check, EscalatingPolicy(), surface="au111", max_frames=2, clock=micro.sim_time,
        target=Target.for_surface("au111", consecutive=2)).run(exp)
    assert result.outcome != "good_tip" and result.tip_actions >= 1
    assert check.spectra_taken >= 1 and micro.spectro.spectra_taken == check.spectra_taken
    from qcodes.dataset import load_by_id

    x = load_by_id(result.run_id).to_xarray_dataset()
    verdicts = [v for v in x["tip_spectrum_verdict"].values if isinstance(v, str) and v]
    assert verdicts and verdicts[0] == "bad"
    assert "frame_verdict" in x and "bad" in list(x["frame_verdict"].values)
    assert x["tip_spectrum_width"].attrs["units"] == "V"
