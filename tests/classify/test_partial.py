"""Partial frames (issue 14): views of the first N acquired lines, the bundle's ``partial`` section, ``--lines``.

Built on feature-member bundles (scikit-learn + skops, no Keras) at 32 px, so these run in seconds;
the CLI test on real PNGs uses the shipped ``hsi100`` bundle and ``../shared/data/hsi100``.
"""

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from qcodes_stmtip.classify.bundle import BundleError, load_bundle, read_manifest, save_bundle
from qcodes_stmtip.classify.ensemble import Ensemble, Member
from qcodes_stmtip.classify.feature_model import FeatureModel
from qcodes_stmtip.classify.features import frame_features
from qcodes_stmtip.classify.partial import (
    DESIGNS,
    MIN_LINES,
    PartialEnsemble,
    acquired_lines,
    first_lines,
    load_partial,
    partial_batch,
    partial_view,
    save_partial,
)
from qcodes_stmtip.classify.preprocess import FrameTooShortError, preprocess_frame
from qcodes_stmtip.io.frame import STMFrame
from tests.conftest import shared_data_missing

CLASSES = ("dimers_asymmetries", "individual_atoms", "rows", "generic_defect")
SIZE = 32
REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "hsi100"


def _frame(lines: int = 64, pixels: int = 64, seed: int = 0) -> np.ndarray:
    """Row i holds the value i everywhere but a little noise, so a strip shows which rows it came from."""
    rng = np.random.default_rng(seed)
    return np.arange(lines, dtype=float)[:, None] + 0.01 * rng.normal(size=(lines, pixels))


# --- first_lines / partial_view -------------------------------------------------------------------------


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("n", [8, 13, 32, None])
def test_view_shape_range_and_dtype(design, n):
    v = partial_view(_frame(300, 300), n, size=64, design=design)
    assert v.shape == (64, 64, 1) and v.dtype == np.float32
    assert np.isfinite(v).all() and v.min() == -1.0 and v.max() == 1.0
    assert partial_batch([_frame(), _frame(seed=1)], n, size=SIZE, design=design).shape == (2, SIZE, SIZE, 1)


def test_every_line_of_a_square_frame_is_the_full_frame_view():
    f = np.random.default_rng(3).normal(size=(96, 96))
    for design in DESIGNS:
        np.testing.assert_array_equal(partial_view(f, None, SIZE, design=design)[..., 0], preprocess_frame(f, SIZE))


def test_direction_up_down_and_default_top_rows():
    f = _frame()
    np.testing.assert_array_equal(first_lines(f, 10, scan_up=True), f[:10])  # row 0 = bottom line, scanned first
    np.testing.assert_array_equal(first_lines(f, 10, scan_up=False), f[-10:])
    np.testing.assert_array_equal(first_lines(f, 10), f[-10:])  # no metadata: the top rows (a PNG)
    np.testing.assert_array_equal(first_lines(STMFrame(f, scan_up=True), 10), f[:10])
    np.testing.assert_array_equal(first_lines(STMFrame(f, scan_up=False), 10), f[-10:])
    np.testing.assert_array_equal(first_lines(STMFrame(f, scan_up=True), 10, scan_up=False), f[-10:])
    assert not np.array_equal(partial_view(f, 10, SIZE, scan_up=True), partial_view(f, 10, SIZE, scan_up=False))


def test_nan_rows_are_lines_not_yet_acquired():
    f = _frame()
    up = f.copy()
    up[20:] = np.nan  # an "up" scan at line 20: the top is still NaN
    up[19, 30:] = np.nan  # the line in progress
    assert acquired_lines(up) == 19
    np.testing.assert_array_equal(first_lines(up), f[:19])  # every acquired line, direction inferred
    np.testing.assert_array_equal(first_lines(up, 8), f[:8])
    np.testing.assert_array_equal(first_lines(up, 64), f[:19])  # more than acquired: all there is
    down = f.copy()
    down[:50] = np.nan
    np.testing.assert_array_equal(first_lines(down, 8), f[-8:])
    np.testing.assert_array_equal(first_lines(down), f[50:])
    np.testing.assert_array_equal(partial_view(up, None, SIZE), partial_view(f[:19], None, SIZE))
    holed = f.copy()
    holed[3] = np.nan  # a dropped line in the middle is skipped
    np.testing.assert_array_equal(first_lines(holed, 8, scan_up=True), f[[0, 1, 2, 4, 5, 6, 7, 8]])


def test_windows_further_down_the_scan():
    f = _frame()
    np.testing.assert_array_equal(first_lines(f, 8, scan_up=True, start=8), f[8:16])
    np.testing.assert_array_equal(first_lines(f, 8, scan_up=False, start=8), f[-16:-8])
    np.testing.assert_array_equal(first_lines(f, 8, scan_up=True, start=1000), f[-8:])  # shifted back to the end
    np.testing.assert_array_equal(partial_view(f, 8, SIZE, scan_up=True, start=8),
                                  partial_view(f[8:16], None, SIZE))
    with pytest.raises(ValueError, match="start"):
        first_lines(f, 8, start=-1)


def test_window_starts_spread_over_the_frame():
    from qcodes_stmtip.classify.partial_training import window_starts

    assert window_starts(300, 32, 2) == [128, 256]
    assert window_starts(300, 64, 3) == [64, 128, 192]
    assert window_starts(300, 8, 0) == [] and window_starts(300, None) == [] and window_starts(60, 32) == []


def test_fewer_than_eight_lines_are_refused():
    with pytest.raises(ValueError, match="at least 8 lines"):
        partial_view(_frame(), 7)
    with pytest.raises(ValueError, match="at least 8 lines"):
        first_lines(_frame(), 0)
    with pytest.raises(ValueError, match="integer"):
        first_lines(_frame(), 8.5)
    short = _frame()
    short[MIN_LINES - 1:] = np.nan
    with pytest.raises(FrameTooShortError, match="7 acquired lines"):
        partial_view(short)
    with pytest.raises(FrameTooShortError, match="pixels"):
        partial_view(np.zeros((64, 4)))
    with pytest.raises(ValueError, match="2-D"):
        partial_view(np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="design"):
        partial_view(_frame(), 8, design="crop")


def test_reflect_keeps_the_pixel_aspect_and_stretch_does_not():
    # 16 lines of 64 pixels, a period of 4 lines along y: reflect keeps it 4 rows (at size 64), stretch makes it 16
    y, x = np.mgrid[0:16, 0:64].astype(float)
    strip = np.sin(2 * np.pi * (y + 0.5) / 4) * np.sin(2 * np.pi * x / 8)
    v = partial_view(strip, None, 64, design="reflect")[..., 0]
    spec = np.abs(np.fft.rfft(v[:, 10] - v[:, 10].mean()))
    assert abs(np.argmax(spec) - 16) <= 2  # about 64 rows / 4 lines per period (folds shift the phase)
    s = partial_view(strip, None, 64, design="stretch")[..., 0]
    assert abs(np.argmax(np.abs(np.fft.rfft(s[:, 10] - s[:, 10].mean()))) - 4) <= 1


# --- the bundle's partial section -----------------------------------------------------------------------


def _ensemble(seed: int) -> Ensemble:
    x = np.random.default_rng(seed).uniform(-1, 1, (24, SIZE, SIZE, 1)).astype(np.float32)
    f = frame_features(x)
    y = np.arange(24) % 4
    members = [Member(f"{k}_{i}", k, FeatureModel.train(k, f, y, 4, SIZE, seed=seed + i, name=f"{k}_{i}"))
               for i, k in enumerate(("hgb", "logreg"))]
    tip = Member("tip_change", "logreg", FeatureModel.train("logreg", f, (np.arange(24) + seed) % 2, 2, SIZE))
    return Ensemble("hsi100", CLASSES, members, thresholds=[0.3, 0.4, 0.5, 0.6], tip_change=tip,
                    tip_change_threshold=0.7, class_weights=[0.5, 2.0, 1.0, 0.5])


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    return save_bundle(_ensemble(0), tmp_path_factory.mktemp("b") / "plain", image_size=SIZE)


@pytest.fixture(scope="module")
def with_partial(plain, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("b") / "partial"
    shutil.copytree(plain, dst)
    save_partial(_ensemble(10), dst, min_lines=12, design="reflect", lines=[8, 32, None],
                 training_data={"views": 3}, metrics={"validation": {}})
    return dst


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(bundle, dst)
    return dst


def _manifest(b: Path) -> dict:
    return json.loads((b / "manifest.json").read_text())


def _write(b: Path, m: dict) -> None:
    (b / "manifest.json").write_text(json.dumps(m))


def _hashes(b: Path) -> dict[str, str]:
    return {str(p.relative_to(b)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(b.rglob("*"))
            if p.is_file() and p.name != "manifest.json" and "partial" not in p.relative_to(b).parts}


def test_partial_section_round_trips_and_leaves_the_full_frame_members(plain, with_partial):
    assert _hashes(plain) == _hashes(with_partial)
    m, m0 = _manifest(with_partial), _manifest(plain)
    assert {k: v for k, v in m.items() if k != "partial"} == m0
    assert m["format_version"] == m0["format_version"]
    model = load_partial(with_partial, "hsi100")
    assert isinstance(model, PartialEnsemble) and not model.fallback
    assert model.min_lines == 12 and model.design == "reflect" and model.image_size == SIZE
    assert m["partial"]["lines"] == [8, 32, None]
    import zipfile

    for e in [*m["partial"]["members"], m["partial"]["tip_change"]]:  # feature members stored deflated
        assert {i.compress_type for i in zipfile.ZipFile(with_partial / e["file"]).infolist()} == {zipfile.ZIP_DEFLATED}
    original = _ensemble(10)
    frames = [_frame(seed=s) for s in range(3)]
    views = model.views(frames, 16)
    assert views.shape == (3, SIZE, SIZE, 1)
    got, want = model.predict(views), original.predict(views)
    np.testing.assert_allclose(got.mean, want.mean)
    np.testing.assert_allclose(got.tip_change_probability, want.tip_change_probability)
    np.testing.assert_array_equal(got.decision, want.decision)
    np.testing.assert_allclose(model.predict_frames(frames, 16).mean, got.mean)
    assert list(model.good_bad(got)) == list(original.good_bad(want))
    np.testing.assert_array_equal(model.tip_change_flags(got), want.tip_change_probability >= 0.7)
    with pytest.raises(ValueError, match="at least 12"):
        model.view(frames[0], 10)
    short = frames[0].copy()
    short[10:] = np.nan
    with pytest.raises(FrameTooShortError, match="at least 12"):
        model.view(short)
    # the full-frame ensemble still loads unchanged
    np.testing.assert_allclose(load_bundle(with_partial).predict(views).mean, load_bundle(plain).predict(views).mean)


def test_replacing_the_section_removes_the_old_files(with_partial, tmp_path):
    b = _copy(with_partial, tmp_path)
    (b / "partial" / "members" / "stale.skops").write_bytes(b"x")
    save_partial(_ensemble(20), b, design="stretch")
    assert not (b / "partial" / "members" / "stale.skops").exists()
    model = load_partial(b)
    assert model.design == "stretch" and model.min_lines == MIN_LINES
    assert _hashes(b) == _hashes(with_partial)


def test_bundle_without_the_section_falls_back_to_the_full_frame_ensemble(plain):
    model = load_partial(plain)
    assert model.fallback and model.min_lines == MIN_LINES and model.manifest == {}
    views = model.views([_frame()], 8)
    np.testing.assert_allclose(model.predict(views).mean, load_bundle(plain).predict(views).mean)
    with pytest.raises(BundleError, match="not 'au111'"):
        load_partial(plain, "au111")


def test_save_partial_checks_its_arguments(plain, tmp_path):
    b = _copy(plain, tmp_path)
    with pytest.raises(ValueError, match="design"):
        save_partial(_ensemble(1), b, design="crop")
    with pytest.raises(ValueError, match="min_lines"):
        save_partial(_ensemble(1), b, min_lines=4)
    with pytest.raises(BundleError, match="not a model bundle"):
        save_partial(_ensemble(1), tmp_path)


def _edit_member(key, value):
    def edit(m):
        m["partial"]["members"][0][key] = value
    return edit


@pytest.mark.parametrize("edit, field", [
    (lambda m: m["partial"].update(min_lines=4), "partial.min_lines"),
    (lambda m: m["partial"].update(min_lines="8"), "partial.min_lines"),
    (lambda m: m["partial"].update(design="../../evil"), "partial.design"),
    (lambda m: m["partial"]["thresholds"].update(rows=1.5), "partial.thresholds.rows"),
    (lambda m: m["partial"]["thresholds"].pop("rows"), "partial.thresholds.rows"),
    (lambda m: m["partial"].update(members=[]), "partial.members"),
    (lambda m: m["partial"].pop("members"), "partial"),
    (lambda m: m["partial"]["tip_change"].update(threshold=-0.1), "partial.tip_change"),
    (lambda m: m["partial"]["inference"].update(class_weights=[1.0, 2.0]), "partial.inference.class_weights"),
    (lambda m: m["partial"]["inference"].update(class_weights=[1.0, 0.0, 1.0, 1.0]), "partial.inference"),
    (lambda m: m.update(partial=[1, 2]), "partial"),
    (lambda m: m.update(partial="partial"), "partial"),
    (_edit_member("file", "/etc/passwd.skops"), "partial.members[0].file"),
    (_edit_member("file", "../plain/members/0_hgb_0.skops"), "partial.members[0].file"),
    (_edit_member("file", "partial/members/0_hgb_0.keras"), "partial.members[0].file"),
    (_edit_member("kind", "keras"), "partial.members[0].file"),
    (_edit_member("sha256", "0" * 63), "partial.members[0].sha256"),
])
def test_hostile_partial_sections_are_refused(with_partial, tmp_path, edit, field):
    b = _copy(with_partial, tmp_path)
    m = _manifest(b)
    edit(m)
    _write(b, m)
    for load in (read_manifest, load_bundle, load_partial):
        with pytest.raises(BundleError, match=field.replace("[", r"\[").replace("]", r"\]")):
            load(b)


def test_tampered_missing_or_linked_partial_members_are_refused(with_partial, tmp_path):
    b = _copy(with_partial, tmp_path)
    rel = _manifest(b)["partial"]["members"][0]["file"]
    with open(b / rel, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match="SHA-256"):
        load_partial(b)
    (b / rel).unlink()
    with pytest.raises(BundleError, match="missing"):
        load_partial(b)
    outside = tmp_path / "outside.skops"
    shutil.copy(with_partial / rel, outside)
    os.symlink(outside, b / rel)
    with pytest.raises(BundleError, match="symbolic link"):
        load_partial(b)
    shutil.rmtree(b / "partial")
    os.symlink(with_partial / "partial", b / "partial")
    with pytest.raises(BundleError, match="symbolic link"):
        read_manifest(b)


def test_untrusted_partial_member_is_refused(with_partial, tmp_path):
    import skops.io as sio

    b = _copy(with_partial, tmp_path)
    m = _manifest(b)
    rel = m["partial"]["members"][1]["file"]
    sio.dump({"x": np.float64}, b / rel)  # a type skops does not trust by default
    m["partial"]["members"][1]["sha256"] = hashlib.sha256((b / rel).read_bytes()).hexdigest()
    _write(b, m)
    with pytest.raises(BundleError, match="cannot load feature model"):
        load_partial(b)


# --- stmtip classify --lines on real frames -------------------------------------------------------------


@pytest.fixture(scope="module")
def real_pngs() -> list[Path]:
    if not (REAL / "labels.csv").is_file():
        shared_data_missing(f"the real H:Si(100) frames are not here ({REAL.resolve()}); "
                    "this test needs ../shared/data/hsi100 beside the checkout")
    return sorted((REAL / "images").glob("*.png"))[:3]


def test_cli_lines_on_real_pngs(real_pngs, tmp_path, capsys):
    from qcodes_stmtip.cli import main

    out = tmp_path / "p.csv"
    assert main(["classify", "--surface", "hsi100", "--lines", "32", "--output", str(out), *map(str, real_pngs)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [r["file"] for r in rows] == [str(p) for p in real_pngs]
    for r in rows:
        p = np.array([float(r[c]) for c in CLASSES])
        assert np.isclose(p.sum(), 1.0) and r["good_bad"] in ("good", "bad", "uncertain")
        assert 0.0 <= float(r["tip_change"]) <= 1.0
    # the same frames judged from their top 32 rows by the model load_partial gives
    from qcodes_stmtip.classify.bundle import default_bundle_path
    from qcodes_stmtip.classify.frame_files import read_frame_array

    model = load_partial(default_bundle_path("hsi100"))
    pred = model.predict_frames([read_frame_array(p) for p in real_pngs], 32)
    np.testing.assert_allclose([[float(r[c]) for c in CLASSES] for r in rows], pred.mean, atol=1e-5)
    full = tmp_path / "f.csv"
    assert main(["classify", "--surface", "hsi100", "--output", str(full), *map(str, real_pngs)]) == 0
    assert [r["decision"] for r in csv.DictReader(open(full))]  # the full-frame path is unchanged
    capsys.readouterr()
    assert main(["classify", "--surface", "hsi100", "--lines", "4", "--output", str(out), str(real_pngs[0])]) == 1
    assert "at least 8 lines" in capsys.readouterr().err


def test_cli_lines_reads_the_direction_from_metadata(plain, tmp_path, monkeypatch):
    """Without metadata (.npy) the top rows; a reader's STMFrame with scan_up=True: the bottom rows."""
    import qcodes_stmtip.io
    from qcodes_stmtip.cli import main

    f = np.random.default_rng(5).normal(size=(64, 64))
    np.save(tmp_path / "a.npy", f)
    seen = []
    predict = Ensemble.predict
    monkeypatch.setattr(Ensemble, "predict", lambda self, views: seen.append(views) or predict(self, views))

    def classify() -> np.ndarray:
        assert main(["classify", "--model", str(plain), "--lines", "16", "--output", str(tmp_path / "p.csv"),
                     "--overwrite", str(tmp_path / "a.npy")]) == 0
        return seen.pop()[0]

    top, bottom = partial_view(f[-16:], None, SIZE), partial_view(f[:16], None, SIZE)
    np.testing.assert_array_equal(classify(), top)
    monkeypatch.setattr(qcodes_stmtip.io, "read_frame", lambda path, **_: STMFrame(np.load(path), scan_up=True))
    np.testing.assert_array_equal(classify(), bottom)


# --- training views and stmtip train-partial on a tiny synthetic set -----------------------------------


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    """48 frames of 48 lines in the simulated layout: each class its own texture, 3 sessions."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "frames").mkdir()
    rng = np.random.default_rng(0)
    rows = ["session,Name,surface,label,tip_change"]
    y, x = np.mgrid[0:48, 0:48].astype(float)
    for i in range(48):
        label = i % 4
        z = [np.sin(x / 1.5) * np.sin(y / 3), np.sin(x / 2.0) * np.sin(y / 2.0), np.sin(y / 4.0) + 0.3 * np.sin(x),
             rng.normal(size=x.shape).cumsum(axis=1) * 0.1][label]
        np.save(root / "frames" / f"f{i:03d}.npy", z + 0.1 * rng.normal(size=x.shape))
        rows.append(f"s{i % 3},f{i:03d}.png,hsi100,{CLASSES[label]},{int(i % 5 == 0)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_frame_views_cut_every_frame_with_its_labels(tiny_dataset):
    from qcodes_stmtip.classify.labels import load_labels
    from qcodes_stmtip.classify.partial_training import frame_views

    frames = load_labels(tiny_dataset, "hsi100")
    pv = frame_views(frames, [8, 16, None], size=SIZE, windows=2, progress=False)
    assert {n: v.shape for n, v in pv.views.items()} == {n: (48, SIZE, SIZE, 1) for n in (8, 16, None)}
    assert (pv.lines_available == 48).all() and not pv.skipped
    assert sorted(set(pv.window_lines.tolist())) == [8, 16] and len(pv.windows) == 48 * 4
    top = np.load(tiny_dataset / "frames" / "f000.npy")
    np.testing.assert_array_equal(pv.views[16][0], partial_view(top[-16:], None, SIZE))  # the top rows
    first = pv.image_set(np.array([0, 1]), [8, None])
    assert first.images.shape == (4, SIZE, SIZE, 1) and list(first.frames.labels) == [0, 1, 0, 1]
    both = pv.image_set(np.array([0, 1]), [8, None], windows=True)
    assert len(both.images) == 4 + 2 * 2
    assert list(both.frames.sessions) == ["s0", "s1", "s0", "s1", "s0", "s0", "s1", "s1"]
    assert list(both.frames.tip_change) == [True, False, True, False, True, True, False, False]
    np.testing.assert_array_equal(both.images[4], partial_view(top, 8, SIZE, start=pv.window_start[0]))


def test_train_partial_adds_the_section_only(tiny_dataset, plain, tmp_path):
    from qcodes_stmtip.cli import main

    b = _copy(plain, tmp_path)
    assert main(["train-partial", "--surface", "hsi100", "--data", str(tiny_dataset), "--bundle", str(b),
                 "--lines", "8,16,full", "--val-fraction", "0.3", "--quiet"]) == 0
    assert _hashes(b) == _hashes(plain)
    m = _manifest(b)
    assert {k: v for k, v in m.items() if k != "partial"} == _manifest(plain)
    assert m["partial"]["lines"] == [8, 16, None] and m["partial"]["design"] == "reflect"
    assert m["partial"]["training_data"]["views"] == 48 * 3 + 48 * 4
    model = load_partial(b)
    assert not model.fallback and [x.architecture for x in model.ensemble.members] == ["hgb", "logreg"]
    assert model.ensemble.tip_change is not None
    out = tmp_path / "p.csv"
    files = [str(tiny_dataset / "frames" / f"f{i:03d}.npy") for i in range(4)]
    assert main(["classify", "--model", str(b), "--lines", "16", "--output", str(out), *files]) == 0
    assert len(list(csv.DictReader(open(out)))) == 4
    assert main(["train-partial", "--surface", "hsi100", "--data", str(tiny_dataset), "--bundle", str(b),
                 "--lines", "4,full", "--quiet"]) == 1


def test_a_keras_only_format_1_bundle_becomes_format_2_with_feature_members(tmp_path):
    """An Au(111) bundle of format 1 (Keras members only, as the metal bundles shipped before issue 23)
    takes a feature-member partial section: the manifest moves to format 2, and both ensembles load."""
    pytest.importorskip("keras")
    from qcodes_stmtip.classify.architectures import build_model
    from qcodes_stmtip.taxonomy import CLASSES as ALL_CLASSES
    from tests.conftest import perturbed

    classes = ALL_CLASSES["au111"]
    b = tmp_path / "au111"
    vgg = Member("vgg_0", "vgg", perturbed(build_model("vgg", len(classes), width=0.125, size=32), 0))
    save_bundle(Ensemble("au111", classes, [vgg], thresholds=[0.5] * len(classes)), b, image_size=32)
    m0 = {k: v for k, v in _manifest(b).items() if k != "partial"}
    m0["format_version"] = 1
    _write(b, m0)
    size = int(m0["preprocessing"]["image_size"])
    x = np.random.default_rng(3).uniform(-1, 1, (2 * len(classes), size, size, 1)).astype(np.float32)
    y = np.arange(len(x)) % len(classes)
    f = frame_features(x)
    members = [Member("logreg_0", "logreg", FeatureModel.train("logreg", f, y, len(classes), size, name="logreg_0"))]
    save_partial(Ensemble("au111", classes, members, thresholds=[0.5] * len(classes)), b)
    m = _manifest(b)
    assert m["format_version"] == 2
    assert {k: v for k, v in m.items() if k not in ("partial", "format_version")} == \
        {k: v for k, v in m0.items() if k != "format_version"}
    model = load_partial(b, "au111")
    assert not model.fallback and model.ensemble.tip_change is None
    assert model.predict(x[:2]).mean.shape == (2, len(classes))
    assert load_bundle(b, surface="au111").classes == classes
