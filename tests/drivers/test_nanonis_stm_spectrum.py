"""NanonisSTM.spectrum: point spectroscopy as a ParameterWithSetpoints over bias."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qcodes.instrument import Instrument

from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
from qcodes_stmtip.safety import SafetyViolation
from qcodes_stmtip.sim.controller import SimulatedNanonisServer, serve_simulator


def _server(surface: str) -> SimulatedNanonisServer:
    return serve_simulator(surface=surface, seed=2, time_acceleration=1000.0,
                           initial_tip="individual_atoms")


@pytest.fixture
def au_stm() -> Iterator[tuple[NanonisSTM, SimulatedNanonisServer]]:
    with _server("au111") as srv:
        stm = NanonisSTM("stm_spec", address="127.0.0.1", port=srv.port)
        try:
            yield stm, srv
        finally:
            stm.close()
            Instrument.close_all()


def _onset(bias: np.ndarray, didv: np.ndarray) -> float:
    """Bias of the steepest rise of a smoothed dI/dV (the surface-state onset)."""
    smooth = np.convolve(didv, np.ones(7) / 7, mode="same")
    slope = np.gradient(smooth, bias)
    inner = slice(5, len(bias) - 5)
    return float(bias[inner][np.argmax(slope[inner])])


def test_spectrum_in_a_dond_run_exports_to_xarray_with_bias_as_coordinate(
    au_stm: tuple[NanonisSTM, SimulatedNanonisServer], tmp_path: Path
) -> None:
    from qcodes.dataset import dond, initialise_or_create_database_at, load_or_create_experiment

    stm, server = au_stm
    initialise_or_create_database_at(tmp_path / "spectra.db")
    exp = load_or_create_experiment("spectra", sample_name="sim au111")
    stm.move_tip(3e-9, -2e-9)
    stm.spectrum_start(-0.9)
    stm.spectrum_end(0.1)
    stm.spectrum_points(201)
    ds, *_ = dond(stm.spectrum, stm.last_spectrum_didv, *stm.spectrum_parameters, exp=exp,
                  do_plot=False)
    x = ds.to_xarray_dataset()
    current, didv = x["stm_spec_spectrum"], x["stm_spec_last_spectrum_didv"]
    assert current.dims == didv.dims == ("stm_spec_spectrum_bias",)
    np.testing.assert_allclose(x["stm_spec_spectrum_bias"].values, np.linspace(-0.9, 0.1, 201))
    assert x["stm_spec_spectrum_bias"].attrs["units"] == "V" and current.attrs["units"] == "A"
    assert didv.attrs["units"] == "S"
    # the site is recorded beside the spectrum
    assert x["stm_spec_spectrum_x"].item() == pytest.approx(3e-9)
    assert x["stm_spec_spectrum_y"].item() == pytest.approx(-2e-9)
    assert x["stm_spec_spectrum_setpoint_bias"].item() == pytest.approx(stm.bias())
    # I(V) crosses zero at zero bias; a sharp tip on Au(111) shows the step near -0.5 V
    bias = x["stm_spec_spectrum_bias"].values
    assert abs(np.interp(0.0, bias, current.values)) < 0.05 * np.abs(current.values).max()
    assert _onset(bias, didv.values) == pytest.approx(-0.50, abs=0.04)
    # the bias is back where it was, the feedback on
    assert stm.bias() == pytest.approx(x["stm_spec_spectrum_setpoint_bias"].item())
    assert stm.feedback()


def test_numeric_didv_on_cu111_shows_the_step_near_minus_0_44_V() -> None:
    with _server("cu111") as srv:
        stm = NanonisSTM("stm_cu", address="127.0.0.1", port=srv.port)
        try:
            stm.spectrum_didv_source("numeric")
            stm.spectrum_start(-0.8)
            stm.spectrum_end(0.0)
            stm.spectrum_points(161)
            didv = stm.spectrum_didv()
            assert didv.shape == (161,)
            assert _onset(stm.spectrum_bias(), didv) == pytest.approx(-0.44, abs=0.05)
        finally:
            stm.close()
            Instrument.close_all()


def test_the_envelope_refuses_out_of_range_sweeps_before_anything_is_sent(fake_stm,
                                                                           fake_nanonis) -> None:
    limit = fake_stm.safety.max_bias_V
    with pytest.raises(ValueError, match="bias"):
        fake_stm.spectrum_end(limit + 0.5)
    fake_stm.spectrum_start(-limit + 0.001)  # inside, but the modulation pushes it out
    fake_stm.spectrum_end(0.5)
    fake_stm.lockin_amplitude(0.01)
    sent = len(fake_nanonis.requests)
    with pytest.raises(SafetyViolation, match="modulation"):
        fake_stm.spectrum()
    fake_stm.spectrum_start(0.5)  # a sweep of zero width
    with pytest.raises(SafetyViolation, match="sweep end"):
        fake_stm.spectrum_didv()
    assert len(fake_nanonis.requests) == sent  # nothing was sent
