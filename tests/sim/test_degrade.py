"""Domain randomisation of training frames: each degradation does what it says, draws follow
the stated distributions, and data sets apply it to H:Si(100) only (the rendered frame unchanged)."""

import numpy as np

from qcodes_stmtip.sim.dataset import generate_dataset
from qcodes_stmtip.sim.degrade import Degradation, apply_degradation, sample_degradation


def _rows(n: int = 96, period: float = 12.0) -> np.ndarray:
    """Diagonal dimer-row-like stripes (arbitrary height units) with a little noise."""
    y, x = np.mgrid[:n, :n]
    rng = np.random.default_rng(0)
    return np.sin(2 * np.pi * (x + y) / (period * np.sqrt(2))) + 0.05 * rng.normal(size=(n, n))


def _jump_rate(z: np.ndarray) -> float:
    e = (np.diff(z, axis=0) ** 2).mean(axis=1)
    return float(np.mean(e > 4 * np.median(e)))


def _hf_share(z: np.ndarray) -> float:
    p = np.abs(np.fft.fft2(z - z.mean())) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(z.shape[0]), np.fft.fftfreq(z.shape[1]), indexing="ij"))
    return float(p[f > 0.25].sum() / p.sum())


def test_identity_leaves_the_frame_alone():
    z = _rows()
    out = apply_degradation(z, Degradation(), np.random.default_rng(0))
    assert np.array_equal(out, z) and out is not z


def test_blur_removes_high_frequencies():
    z = np.random.default_rng(3).normal(size=(96, 96))  # white: half its power above 0.25 cycles/px
    out = apply_degradation(z, Degradation(blur_px=(0.8, 0.8)), np.random.default_rng(0))
    assert _hf_share(out) < 0.3 * _hf_share(z)


def test_line_shifts_and_streaks_make_line_jumps():
    z = _rows()
    shifted = apply_degradation(z, Degradation(shift_px=0.8, shift_fraction=0.3), np.random.default_rng(1))
    streaks = apply_degradation(z, Degradation(streaks=4), np.random.default_rng(1))
    assert _jump_rate(z) < 0.02
    assert _jump_rate(shifted) > 0.05
    assert _jump_rate(streaks) > _jump_rate(z)


def test_multiple_tip_copies_double_features():
    n = 96
    z = np.zeros((n, n))
    z[40:44, 40:44] = 1.0  # one bump
    out = apply_degradation(z, Degradation(copies=[(10.0, 0.0, 0.9)]), np.random.default_rng(0))
    assert out[41, 51] > 0.5 * out[41, 41]  # its ghost 10 px to the right


def test_gain_drift_changes_contrast_along_the_slow_axis():
    z = _rows()
    out = apply_degradation(z, Degradation(gain_drift=0.4), np.random.default_rng(2))
    bands = [b.std() for b in np.array_split(out, 4, axis=0)]
    before = [b.std() for b in np.array_split(z, 4, axis=0)]
    assert np.std(bands) / np.mean(bands) > 3 * np.std(before) / np.mean(before)


def test_sampled_degradations_follow_the_stated_distributions():
    rng = np.random.default_rng(0)
    good = [sample_degradation("hsi100", "rows", rng) for _ in range(2000)]
    bad = [sample_degradation("hsi100", "generic_defect", rng) for _ in range(2000)]
    assert not any(d.copies for d in good)  # multiple tips make a bad frame
    multi = [d for d in bad if d.copies]
    assert 0.3 < len(multi) / len(bad) < 0.4
    assert all(2 <= len(d.copies) + 1 <= 4 for d in multi)
    assert 0.27 < np.mean([d.shift_fraction > 0 for d in good]) < 0.33  # Kolev: p = 0.3, σ = 0.8 px
    assert {d.shift_px for d in good if d.shift_fraction > 0} == {0.8}
    blur = np.array([d.blur_px for d in good])
    assert blur[:, 0].min() >= 0.1 and blur[:, 0].max() <= 0.5  # along y (slow axis)
    assert blur[:, 1].min() >= 0.4 and blur[:, 1].max() <= 1.0  # along x: real frames are smoother in-line


def test_datasets_degrade_hsi100_by_default_and_keep_the_rendered_frame(tmp_path):
    on = generate_dataset("hsi100", 3, tmp_path / "on", seed=5, pixels=48, progress=False)
    off = generate_dataset("hsi100", 3, tmp_path / "off", seed=5, pixels=48, progress=False, degrade=False)
    rows_on = [line.split(",") for line in on.read_text().splitlines()[1:]]
    rows_off = [line.split(",") for line in off.read_text().splitlines()[1:]]
    assert [r[:6] for r in rows_on] == [r[:6] for r in rows_off]  # same frames, labels and scan size
    for r_on, r_off in zip(rows_on, rows_off, strict=True):
        a = np.load(tmp_path / "on" / "frames" / r_on[1].replace(".png", ".npy"))
        b = np.load(tmp_path / "off" / "frames" / r_off[1].replace(".png", ".npy"))
        assert b.shape == (48, 48) and a.shape == (int(r_on[8]), int(r_on[7]))  # exported like a real frame
        assert a.shape[1] in (64, 300, 512)


def test_export_sizes_follow_the_real_frames():
    from qcodes_stmtip.sim.degrade import export_shape, resample

    rng = np.random.default_rng(0)
    shapes = [export_shape(128, rng) for _ in range(3000)]
    assert 0.79 < np.mean([s == (128, (300, 300)) for s in shapes]) < 0.85
    assert 0.08 < np.mean([s == (128, (64, 64)) for s in shapes]) < 0.12  # the live simulator's frames
    strips = [s for s in shapes if s[0] < 128]
    assert strips and all(8 <= keep and 8 <= shape[0] < 300 and shape[1] == 300 for keep, shape in strips)
    z = np.add.outer(np.arange(4.0), np.arange(6.0)) * 1e-10
    out = resample(z, (8, 12))
    assert out.shape == (8, 12) and np.allclose([out.min(), out.max()], [z.min(), z.max()], rtol=0.2)
