"""Physics of rendered frames: lattice periodicity, double tips, tip changes, drift, determinism."""

import math

import numpy as np
import pytest

from qcodes_stmtip.imaging import flatten_lines
from qcodes_stmtip.sim.frames import render_scan, sample_grid
from qcodes_stmtip.sim.geometry import ScanGeometry
from qcodes_stmtip.sim.realism import InstrumentNoise
from qcodes_stmtip.sim.surfaces import HSI_DIMER_NM, LATTICE_NM, get_surface
from qcodes_stmtip.sim.tips import TipState, sample_tip

IDEAL = InstrumentNoise()


def flat_geometry(surface, seed, size_nm, pixels, angle=0.0):
    """A step-free frame of ``surface`` sample ``seed``."""
    surf = get_surface(surface, seed)
    for k in range(200):
        g = ScanGeometry(size_nm * 1e-9, size_nm * 1e-9, pixels, pixels,
                         centre_x=(k * 97.0) * 1e-9, centre_y=(k * 61.0) * 1e-9, angle_deg=angle)
        if surf.content(sample_grid(g, IDEAL, True, 0.1, 0.0)).steps == 0:
            return g
    raise AssertionError("no flat area found")


def peak_period(img, pixel_nm, lo_nm, hi_nm):
    """Period (nm) of the strongest Fourier peak with period in [lo_nm, hi_nm]."""
    z = img - img.mean()
    n = z.shape[0]
    w = np.hanning(n)
    pad = 4 * n
    spec = np.abs(np.fft.fft2(z * np.outer(w, w), s=(pad, pad)))
    f = np.fft.fftfreq(pad, d=pixel_nm)
    fr = np.hypot(f[:, None], f[None, :])
    with np.errstate(divide="ignore"):
        period = 1.0 / fr
    spec[~((period >= lo_nm) & (period <= hi_nm))] = 0
    i, j = np.unravel_index(np.argmax(spec), spec.shape)
    return period[i, j]


@pytest.mark.parametrize(("surface", "size_nm", "angle"), [
    ("hsi100", 12.0, 23.0), ("au111", 8.0, 37.0), ("cu111", 7.0, 0.0)])
def test_lattice_constant_from_fft_within_2_percent(surface, size_nm, angle):
    g = flat_geometry(surface, 5, size_nm, 256, angle)
    tip = TipState(sample_tip(surface, "individual_atoms", np.random.default_rng(0)).label,
                   apex_radius_m=30e-12)
    scan = render_scan(surface, tip, g, np.random.default_rng(1), sample_seed=5, instrument=IDEAL)
    px = size_nm / 256
    if surface == "hsi100":
        rows = peak_period(scan.forward, px, 0.55, 1.2)
        assert rows == pytest.approx(LATTICE_NM["hsi100"], rel=0.02)
        dimers = peak_period(scan.forward, px, 0.36, 0.41)
        assert dimers == pytest.approx(HSI_DIMER_NM, rel=0.02)
    else:
        # strongest peak of a close-packed lattice: row spacing a·√3/2
        a = peak_period(scan.forward, px, 0.15, 0.5) * 2 / math.sqrt(3)
        assert a == pytest.approx(LATTICE_NM[surface], rel=0.02)


def test_blunt_tip_keeps_rows_and_loses_dimers():
    g = flat_geometry("hsi100", 5, 12.0, 256, 23.0)
    spec = {}
    for radius in (30e-12, 220e-12):
        scan = render_scan("hsi100", TipState("rows", apex_radius_m=radius), g,
                           np.random.default_rng(1), sample_seed=5, instrument=IDEAL)
        z = scan.forward - scan.forward.mean()
        w = np.hanning(256)
        p = np.abs(np.fft.fft2(z * np.outer(w, w))) ** 2
        f = np.fft.fftfreq(256, d=12.0 / 256)
        fr = np.hypot(f[:, None], f[None, :])
        spec[radius] = (p[(fr > 1 / 0.9) & (fr < 1 / 0.65)].sum(), p[(fr > 1 / 0.41) & (fr < 1 / 0.36)].sum())
    sharp_rows, sharp_dimers = spec[30e-12]
    blunt_rows, blunt_dimers = spec[220e-12]
    assert blunt_dimers / blunt_rows < 0.05 * sharp_dimers / sharp_rows


def _dense_hsi_seed():
    return max(range(40), key=lambda s: get_surface("hsi100", s).db_density + get_surface("hsi100", s).md_density)


def _autocorrelation(img, smooth_px=6):
    from scipy.ndimage import gaussian_filter

    z = img - gaussian_filter(img, smooth_px, mode="nearest")  # high-pass: drop tilt and terraces
    f = np.fft.fft2(z, s=(2 * z.shape[0], 2 * z.shape[1]))
    acf = np.fft.ifft2(np.abs(f) ** 2).real
    return acf / acf[0, 0]


def test_double_tip_duplicates_features_at_its_offset():
    seed = _dense_hsi_seed()
    size_nm, px = 20.0, 200
    g = flat_geometry("hsi100", seed, size_nm, px)
    single = TipState("generic_defect", apex_radius_m=0.35e-9)
    offset_nm = (2.4, 0.0)
    double = TipState("generic_defect", apex_radius_m=0.35e-9, double_offset_m=(2.4e-9, 0.0),
                      double_ratio=1.0)
    acf = {}
    for name, tip in (("single", single), ("double", double)):
        scan = render_scan("hsi100", tip, g, np.random.default_rng(4), sample_seed=seed, instrument=IDEAL)
        acf[name] = _autocorrelation(scan.forward)
    shift = round(offset_nm[0] / (size_nm / px))  # pixels along +x (columns)
    side = acf["double"][0, shift - 2:shift + 3].max()
    # a side peak at the apex separation, absent for a single apex and absent at the same distance along y
    assert side > 0.25
    assert side > 3 * acf["single"][0, shift - 2:shift + 3].max()
    assert side > 3 * acf["double"][shift - 2:shift + 3, 0].max()


@pytest.mark.parametrize("scan_up", [True, False])
def test_tip_change_gives_a_discontinuity_at_the_chosen_line(scan_up):
    g = flat_geometry("hsi100", 3, 10.0, 128)
    before = TipState("rows", apex_radius_m=200e-12)
    after = TipState("individual_atoms", apex_radius_m=40e-12, apex_z_m=-0.25e-9)
    scan = render_scan("hsi100", before, g, np.random.default_rng(0), sample_seed=3, scan_up=scan_up,
                       tip_changes=[(50, after)], instrument=IDEAL)
    assert scan.tip_change_lines == (50,)
    rows = scan.forward.mean(axis=1) if scan_up else scan.forward.mean(axis=1)[::-1]  # acquisition order
    jumps = np.abs(np.diff(rows))
    k = int(np.argmax(jumps))
    assert k in (49, 50)  # the jump sits on the change line (it happens during that line's trace)
    assert rows[55:].mean() - rows[:45].mean() == pytest.approx(0.25e-9, rel=0.3)
    # before the change line the frame is the old apex's image, after it the new apex's, exactly
    only_before = render_scan("hsi100", before, g, np.random.default_rng(0), sample_seed=3,
                              scan_up=scan_up, instrument=IDEAL).forward
    only_after = render_scan("hsi100", after, g, np.random.default_rng(0), sample_seed=3,
                             scan_up=scan_up, instrument=IDEAL).forward
    acq = (lambda a: a) if scan_up else (lambda a: a[::-1])
    assert np.allclose(acq(scan.forward)[:50], acq(only_before)[:50], rtol=0, atol=8e-12)  # FFT-padding tails: < 8 pm
    assert np.allclose(acq(scan.forward)[51:], acq(only_after)[51:], rtol=0, atol=8e-12)  # FFT-padding tails: < 8 pm
    # the retrace of the change line is wholly imaged by the new apex
    back = scan.backward.mean(axis=1) if scan_up else scan.backward.mean(axis=1)[::-1]
    assert int(np.argmax(np.abs(np.diff(back)))) == 49
    # and resolution changes: the atomic-scale roughness is higher after the change
    hp = np.diff(scan.forward, axis=1)
    acq = hp if scan_up else hp[::-1]
    assert acq[60:].std() > 2 * acq[:40].std()


def _shift_x(a, b, search=30):
    """Shift (pixels, along x) of b relative to a: peak of the row-wise cross-correlation."""
    from scipy.ndimage import gaussian_filter

    a = a - gaussian_filter(a, 8, mode="nearest")
    b = b - gaussian_filter(b, 8, mode="nearest")
    n = a.shape[1]
    core = slice(search, n - search)
    score = [np.sum(a[:, core] * b[:, search + k:n - search + k]) for k in range(-search, search + 1)]
    return int(np.argmax(score)) - search


def test_drift_shifts_features_linearly_in_acquisition_time():
    seed = _dense_hsi_seed()
    size_nm, px, spl = 20.0, 160, 0.1
    g = flat_geometry("hsi100", seed, size_nm, px)
    tip = TipState("generic_defect", apex_radius_m=0.45e-9)  # rows blurred away: no periodic aliasing
    v = 0.1  # nm/s along sample x
    still = render_scan("hsi100", tip, g, np.random.default_rng(0), sample_seed=seed, instrument=IDEAL,
                        seconds_per_line=spl)
    drifting = render_scan("hsi100", tip, g, np.random.default_rng(0), sample_seed=seed,
                           instrument=InstrumentNoise(drift_nm_s=(v, 0.0)), seconds_per_line=spl)
    pixel_nm = size_nm / px
    block = 8
    errors = []
    for start in range(0, px - block, block):
        measured = _shift_x(still.forward[start:start + block], drifting.forward[start:start + block])
        t = (start + block / 2) * 2 * spl  # trace + retrace per line
        expected = -v * t / pixel_nm  # the sample moved +x, so features appear shifted to -x
        errors.append(abs(measured - expected))
    # strips without a defect to correlate give random answers; most strips must agree
    assert np.median(errors) <= 1.0 and np.mean(np.array(errors) <= 1.5) >= 0.6
    # the pixel positions themselves carry the drift exactly
    grid = sample_grid(g, InstrumentNoise(drift_nm_s=(v, 0.0)), True, spl, 0.0)
    ideal = sample_grid(g, IDEAL, True, spl, 0.0)
    t_lines = np.arange(px) * 2 * spl
    assert np.allclose(grid.row_origin[:, 0] - ideal.row_origin[:, 0], v * t_lines)
    down = sample_grid(g, InstrumentNoise(drift_nm_s=(v, 0.0)), False, spl, 0.0)
    assert np.allclose(down.row_origin[::-1, 0] - ideal.row_origin[::-1, 0], v * t_lines)


def test_creep_is_logarithmic():
    inst = InstrumentNoise(creep_nm=(1.0, 0.0), creep_tau_s=2.0)
    d = inst.drift(np.array([0.0, 2.0, 6.0, 14.0]))[:, 0]
    assert np.allclose(d, np.log1p(np.array([0.0, 1.0, 3.0, 7.0])))


def test_same_seed_same_frame_and_sample_fixed_in_space():
    g = ScanGeometry(15e-9, 12e-9, 96, 80, centre_x=40e-9, angle_deg=12.0)
    tip = sample_tip("au111", "individual_atoms", np.random.default_rng(9))
    a = render_scan("au111", tip, g, np.random.default_rng(11), sample_seed=2)
    b = render_scan("au111", tip, g, np.random.default_rng(11), sample_seed=2)
    assert np.array_equal(a.forward, b.forward) and np.array_equal(a.backward, b.backward)
    c = render_scan("au111", tip, g, np.random.default_rng(12), sample_seed=2)
    assert not np.array_equal(a.forward, c.forward)
    # ideal instrument: the topography only depends on the sample and the area, not on rng
    x = render_scan("au111", tip, g, np.random.default_rng(1), sample_seed=2, instrument=IDEAL)
    y = render_scan("au111", tip, g, np.random.default_rng(2), sample_seed=2, instrument=IDEAL)
    assert np.array_equal(x.forward, y.forward)
    far = ScanGeometry(15e-9, 12e-9, 96, 80, centre_x=40e-9 + 1e-6, angle_deg=12.0)
    z = render_scan("au111", tip, far, np.random.default_rng(1), sample_seed=2, instrument=IDEAL)
    fx, fz = flatten_lines(x.forward).ravel(), flatten_lines(z.forward).ravel()
    assert abs(np.corrcoef(fx, fz)[0, 1]) < 0.5  # a fresh area 1 µm away
    other = render_scan("au111", tip, g, np.random.default_rng(1), sample_seed=3, instrument=IDEAL)
    assert not np.allclose(x.forward, other.forward, rtol=0, atol=1e-12)


def test_trace_and_retrace_ring_on_opposite_sides_of_a_step():
    surf = get_surface("au111", 0)
    x, y = surf.nearest_step(500.0, 300.0)
    nx, ny = surf.steps.normal
    angle = -math.degrees(math.atan2(ny, nx))  # frame x along the step normal (clockwise angle)
    g = ScanGeometry(20e-9, 4e-9, 200, 8, centre_x=x * 1e-9, centre_y=y * 1e-9, angle_deg=angle)
    inst = InstrumentNoise(feedback_hz=160.0, feedback_damping=0.2)  # 0.5 rad per 0.5 ms pixel
    tip = TipState("individual_atoms", apex_radius_m=0.1e-9)
    scan = render_scan("au111", tip, g, np.random.default_rng(0), sample_seed=0, instrument=inst)
    ideal = render_scan("au111", tip, g, np.random.default_rng(0), sample_seed=0, instrument=IDEAL)
    fwd_err = (scan.forward - ideal.forward).mean(axis=0)
    bwd_err = (scan.backward - ideal.backward).mean(axis=0)
    edge = int(np.argmax(np.abs(np.diff(ideal.forward.mean(axis=0)))))
    assert np.abs(fwd_err[edge + 2:edge + 30]).max() > 0.03e-9  # rings after the step, left to right
    assert np.abs(fwd_err[edge - 30:edge - 5]).max() < 0.01e-9
    assert np.abs(bwd_err[edge - 30:edge - 1]).max() > 0.03e-9  # the retrace rings on the other side
    assert np.abs(bwd_err[edge + 5:edge + 30]).max() < 0.01e-9


@pytest.mark.parametrize("label", ["step_edge", "impurity", "double_tip", "corruption", "tip_change"])
def test_metal_labels_follow_content_and_tip(label):
    from qcodes_stmtip.sim.dataset import generate_example

    ex = generate_example("cu111", label, np.random.default_rng(5), pixels=64)
    assert ex.scan.label == label
    if label == "step_edge":
        assert ex.scan.content.steps > 0
    if label == "tip_change":
        assert ex.scan.tip_change_lines


def test_corruption_glitches_show_up_as_outlier_lines():
    rng = np.random.default_rng(0)
    g = flat_geometry("au111", 1, 20.0, 128)
    good = render_scan("au111", TipState("individual_atoms"), g, rng, sample_seed=1)
    bad = render_scan("au111", TipState("corruption", instability=1.0), g, rng, sample_seed=1)
    def outliers(scan):
        m = np.abs(np.diff(scan.forward.mean(axis=1)))
        return np.sum(m > 10 * np.median(m))
    assert outliers(bad) > outliers(good)


def test_bad_input_raises_value_error_naming_the_argument():
    rng = np.random.default_rng(0)
    g = ScanGeometry(10e-9, 10e-9, 32, 32)
    tip = TipState("rows")
    with pytest.raises(ValueError, match="surface"):
        render_scan("gold", tip, g, rng)
    with pytest.raises(ValueError, match="label"):
        render_scan("au111", tip, g, rng)
    with pytest.raises(ValueError, match="seconds_per_line"):
        render_scan("hsi100", tip, g, rng, seconds_per_line=0)
    with pytest.raises(ValueError, match="tip_changes"):
        render_scan("hsi100", tip, g, rng, tip_changes=[(40, TipState("rows"))])
    with pytest.raises(ValueError, match="geometry"):
        render_scan("hsi100", tip, (10e-9, 10e-9), rng)
    with pytest.raises(ValueError, match="sample_seed"):
        render_scan("hsi100", tip, g, rng, sample_seed="a")


def test_scan_direction_does_not_move_the_sample():
    g = ScanGeometry(12e-9, 10e-9, 64, 48, centre_x=3e-7, angle_deg=33.0)
    tip = TipState("generic_defect", apex_radius_m=0.2e-9)
    seed = _dense_hsi_seed()
    up = render_scan("hsi100", tip, g, np.random.default_rng(0), sample_seed=seed, scan_up=True, instrument=IDEAL)
    down = render_scan("hsi100", tip, g, np.random.default_rng(0), sample_seed=seed, scan_up=False,
                       instrument=IDEAL)
    assert np.allclose(up.forward, down.forward, rtol=0, atol=1e-15)


def test_buckling_apex_adds_half_order_zigzag_peaks():
    g = flat_geometry("hsi100", 5, 12.0, 256, 23.0)
    f = np.fft.fftfreq(256, d=12.0 / 256)
    fr = np.hypot(f[:, None], f[None, :])
    # (½, ½) order of the 2×1 cell: |f| = √((1/2a1)² + (1/2a2)²)
    half = math.hypot(0.5 / LATTICE_NM["hsi100"], 0.5 / HSI_DIMER_NM)
    band = (fr > 0.97 * half) & (fr < 1.03 * half)
    power = {}
    for buckling in (0.0, 1.0):
        tip = TipState("dimers_asymmetries", apex_radius_m=50e-12, buckling=buckling)
        scan = render_scan("hsi100", tip, g, np.random.default_rng(1), sample_seed=5, instrument=IDEAL)
        w = np.hanning(256)
        power[buckling] = (np.abs(np.fft.fft2((scan.forward - scan.forward.mean()) * np.outer(w, w))) ** 2)[band].sum()
    assert power[1.0] > 4 * power[0.0]  # the band also holds the broadband defect spectrum
