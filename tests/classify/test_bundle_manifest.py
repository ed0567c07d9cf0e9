"""Hostile bundles are refused with a BundleError naming the file and the field; nothing executes.

Built on feature-member bundles (scikit-learn + skops, no Keras), so these run in seconds.
"""

import hashlib
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcodes_stmtip.classify.bundle import BundleError, load_bundle, read_manifest, save_bundle
from qcodes_stmtip.classify.decision import BadTipDecision
from qcodes_stmtip.classify.ensemble import Ensemble, Member
from qcodes_stmtip.classify.feature_model import FeatureModel
from qcodes_stmtip.classify.features import frame_features

CLASSES = ("dimers_asymmetries", "individual_atoms", "rows", "generic_defect")
SIZE = 32


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, SIZE, SIZE, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    x = _images(24, 0)
    f = frame_features(x)
    y = np.arange(24) % 4
    members = [Member(f"{k}_{i}", k, FeatureModel.train(k, f, y, 4, SIZE, seed=i, name=f"{k}_{i}"))
               for i, k in enumerate(("hgb", "logreg"))]
    tip = Member("tip_change", "logreg", FeatureModel.train("logreg", f, np.arange(24) % 2, 2, SIZE))
    ens = Ensemble("hsi100", CLASSES, members, thresholds=[0.3, 0.4, 0.5, 0.6], tip_change=tip,
                   tip_change_threshold=0.7, class_weights=[0.5, 2.0, 1.0, 0.5],
                   decision=BadTipDecision(1.5, 0.8, -0.2, 0.1, 0.7, validation={"frames": 24, "bad_frames": 6}))
    return save_bundle(ens, tmp_path_factory.mktemp("b") / "bundle", image_size=SIZE, notice="test notice")


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(bundle, dst)
    return dst


def _manifest(b: Path) -> dict:
    return json.loads((b / "manifest.json").read_text())


def _write(b: Path, m: dict) -> None:
    (b / "manifest.json").write_text(json.dumps(m))


def test_feature_bundle_round_trips_exactly(bundle):
    ens = load_bundle(bundle)
    assert not ens.all_networks and [m.architecture for m in ens.members] == ["hgb", "logreg"]
    assert (bundle / "NOTICE").read_text() == "test notice\n" and ens.manifest["notice"] == "NOTICE"
    assert ens.manifest["format_version"] == 2 and ens.manifest["sklearn_version"]
    np.testing.assert_array_equal(ens.class_weights, [0.5, 2.0, 1.0, 0.5])
    x = _images(6, 1)
    p = ens.predict(x)
    assert p.member_probabilities.shape == (2, 6, 4) and p.tip_change_probability.shape == (6,)
    again = load_bundle(bundle).predict(x)
    np.testing.assert_array_equal(p.member_probabilities, again.member_probabilities)
    np.testing.assert_allclose(p.member_probabilities.sum(axis=2), 1.0, atol=1e-9)
    assert ens.calibrated and ens.decision.as_dict() == BadTipDecision(
        1.5, 0.8, -0.2, 0.1, 0.7, validation={"frames": 24, "bad_frames": 6}).as_dict()


@pytest.mark.parametrize(("edit", "match"), [
    (lambda d: d.update(good_below=0.9), "good_below"),  # thresholds the wrong way round
    (lambda d: d.update(bias="0.1"), "decision"),  # wrong type
    (lambda d: d.pop("bias"), "decision"),  # missing
    (lambda d: d.update(bad_above=1.5), "decision"),  # out of range
    (lambda d: d.update(rule="majority"), "decision"),  # unknown rule
])
def test_a_hostile_decision_section_is_refused(bundle, tmp_path, edit, match):
    b = _copy(bundle, tmp_path)
    m = _manifest(b)
    edit(m["decision"])
    _write(b, m)
    with pytest.raises(BundleError, match=match):
        load_bundle(b)


def test_a_bundle_without_a_decision_loads_with_the_vote_rule(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    m = _manifest(b)
    del m["decision"]
    _write(b, m)
    ens = load_bundle(b)
    assert ens.decision is None and not ens.calibrated
    assert np.isnan(ens.bad_probability(ens.predict(_images(2, 3)))).all()


def test_missing_member_is_refused(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    (b / _manifest(b)["members"][1]["file"]).unlink()
    with pytest.raises(BundleError, match=r"1_logreg_1\.skops: member model file missing"):
        load_bundle(b)


def test_tampered_member_is_refused(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    f = b / _manifest(b)["members"][0]["file"]
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"0_hgb_0\.skops: SHA-256 does not match"):
        load_bundle(b)


@pytest.mark.parametrize("sha", [None, "", "abc", 42])
def test_removed_empty_or_wrong_typed_hash_is_refused(bundle, tmp_path, sha):
    b = _copy(bundle, tmp_path)
    m = _manifest(b)
    if sha is None:
        del m["members"][0]["sha256"]
    else:
        m["members"][0]["sha256"] = sha
    _write(b, m)
    with pytest.raises(BundleError, match=r"manifest\.json: members(\[0\]\.sha256|\[0\]: 'sha256' is a required)"):
        load_bundle(b)


def _rehash(b: Path, m: dict, index: int) -> None:
    """Rewrite member ``index``'s hash and declared sizes to fit its file (a consistent attacker)."""
    entry = m["members"][index]
    file = b / entry["file"]
    entry["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    entry["size"] = file.stat().st_size
    try:
        with zipfile.ZipFile(file) as zf:
            entry["inflated_size"] = sum(i.file_size for i in zf.infolist())
    except zipfile.BadZipFile:
        entry.pop("inflated_size", None)
    _write(b, m)


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch BOOM_EXECUTED",))


def test_pickled_member_is_refused_and_never_executed(bundle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    b = _copy(bundle, tmp_path)
    m = _manifest(b)
    (b / m["members"][0]["file"]).write_bytes(pickle.dumps(_Boom()))
    _rehash(b, m, 0)
    with pytest.raises(BundleError, match=r"0_hgb_0\.skops: cannot load feature model"):
        load_bundle(b)
    assert not (tmp_path / "BOOM_EXECUTED").exists()


def test_skops_member_with_untrusted_types_is_refused(bundle, tmp_path, monkeypatch):
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    monkeypatch.chdir(tmp_path)
    b = _copy(bundle, tmp_path)
    m = _manifest(b)
    sio.dump(FunctionTransformer(func=os.system), b / m["members"][1]["file"])
    _rehash(b, m, 1)
    with pytest.raises(BundleError, match=r"1_logreg_1\.skops: cannot load feature model .*not trusted.*system"):
        load_bundle(b)


@pytest.mark.parametrize("path, why", [
    ("/etc/passwd.skops", "not a relative path inside the bundle"),
    ("../outside.skops", "not a relative path inside the bundle"),
    ("members/../../outside.skops", "not a relative path inside the bundle"),
])
def test_member_paths_outside_the_bundle_are_refused(bundle, tmp_path, path, why):
    b = _copy(bundle, tmp_path)
    m = _manifest(b)
    m["members"][0]["file"] = path
    _write(b, m)
    with pytest.raises(BundleError, match=rf"manifest\.json: members\[0\]\.file: .*{why}"):
        read_manifest(b)


def test_member_symlink_out_of_the_bundle_is_refused(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    m = _manifest(b)
    outside = tmp_path / "elsewhere.skops"
    shutil.copy(b / m["members"][0]["file"], outside)
    (b / "members" / "link.skops").symlink_to(outside)
    m["members"][0]["file"] = "members/link.skops"
    _write(b, m)
    with pytest.raises(BundleError, match=r"members\[0\]\.file: 'members/link\.skops' is a symbolic link"):
        load_bundle(b)
    shutil.rmtree(b / "members")
    (b / "members").symlink_to(tmp_path)
    m["members"][0]["file"] = "members/elsewhere.skops"
    _write(b, m)
    with pytest.raises(BundleError, match="is a symbolic link"):
        load_bundle(b)


@pytest.mark.parametrize("edit, field", [
    ({"classes": "rows"}, "classes"),
    ({"members": {"a": 1}}, "members"),
    ({"members": []}, "members"),
    ({"members": [None]}, r"members\[0\]"),
    ({"members": [{"file": 3, "sha256": "0" * 64}]}, r"members\[0\]\.file"),
    ({"thresholds": [0.5, 0.5]}, "thresholds"),
    ({"preprocessing": {"image_size": "32"}}, r"preprocessing\.image_size"),
    ({"preprocessing": {"image_size": 10**9}}, r"preprocessing\.image_size"),
    ({"format_version": "2"}, "format_version"),
    ({"format_version": 3}, "format_version"),
    ({"surface": ["hsi100"]}, "surface"),
    ({"tip_change": [1]}, "tip_change"),
    ({"inference": "yes"}, "inference"),
    ({"inference": {"class_weights": [1, 1, -1, 1]}}, r"inference\.class_weights"),
    ({"inference": {"class_weights": [1, 1, 1]}}, r"inference\.class_weights"),
    ({"inference": {"class_weights": "balanced"}}, r"inference\.class_weights"),
    ({"good_classes": "rows"}, "good_classes"),
    ({"good_classes": ["rows", "graphene"]}, "good_classes"),
    ({"thresholds": {c: 0.5 for c in CLASSES[:3]}}, r"thresholds\.generic_defect"),
    ({"thresholds": {**{c: 0.5 for c in CLASSES}, "rows": float("nan")}}, r"thresholds\.rows"),
    ({"thresholds": {**{c: 0.5 for c in CLASSES}, "rows": -5}}, r"thresholds\.rows"),
    ({"thresholds": {**{c: 0.5 for c in CLASSES}, "rows": 1.5}}, r"thresholds\.rows"),
    ({"thresholds": {**{c: 0.5 for c in CLASSES}, "rows": True}}, r"thresholds\.rows"),
])
def test_wrong_typed_or_out_of_range_fields_are_refused(bundle, tmp_path, edit, field):
    b = _copy(bundle, tmp_path)
    m = {**_manifest(b), **edit}
    _write(b, m)
    with pytest.raises(BundleError, match=rf"manifest\.json: {field}"):
        load_bundle(b)


def test_nan_tip_change_threshold_and_kind_mismatch_are_refused(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    m = _manifest(b)
    m["tip_change"]["threshold"] = float("nan")
    _write(b, m)
    with pytest.raises(BundleError, match=r"tip_change\.threshold"):
        load_bundle(b)
    m = _manifest(bundle)
    m["members"][0]["kind"] = "keras"
    _write(b, m)
    with pytest.raises(BundleError, match=r"members\[0\]\.file: a keras member must end in \.keras"):
        load_bundle(b)
    m = _manifest(bundle)
    m["members"][0]["kind"] = "python"
    _write(b, m)
    with pytest.raises(BundleError, match=r"members\[0\]\.kind"):
        load_bundle(b)


def test_deep_or_huge_manifests_are_refused(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    (b / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match=r"manifest\.json: manifest is not valid JSON|manifest\.json: manifest"):
        load_bundle(b)
    (b / "manifest.json").write_bytes(b" " * (17 << 20))
    with pytest.raises(BundleError, match="larger than 16 MiB"):
        load_bundle(b)


def test_format_1_holds_keras_members_only(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    m = _manifest(b)
    m["format_version"] = 1
    _write(b, m)
    with pytest.raises(BundleError, match=r"members\[0\]\.kind: format 1 holds Keras members only"):
        load_bundle(b)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
_FIELDS = ("format_version", "surface", "classes", "good_classes", "preprocessing", "thresholds", "members",
           "tip_change", "inference", "training_data", "metrics")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(_FIELDS), value=_json, member_field=st.sampled_from(
    ("name", "architecture", "kind", "file", "sha256", "training")), member_value=_json)
def test_fuzzed_manifests_load_or_raise_bundle_error(bundle, tmp_path_factory, field, value, member_field,
                                                     member_value):
    """Any JSON value in any field: the bundle loads or a BundleError says why — never another error."""
    b = _copy(bundle, tmp_path_factory.mktemp("fuzz"))
    m = _manifest(b)
    m[field] = value
    if isinstance(m.get("members"), list) and m["members"] and isinstance(m["members"][0], dict):
        m["members"][0][member_field] = member_value
    _write(b, m)
    try:
        load_bundle(b)
    except BundleError as exc:
        assert "manifest.json" in str(exc) or str(b) in str(exc)


# ---- issue 26 class 2: sizes, shapes, finite weights and duplicates, checked before loading ----

def _logreg(b: Path) -> tuple[dict, Path]:
    """The manifest with the logreg member first (loaded first: a refusal comes fast), its file."""
    m = _manifest(b)
    m["members"].reverse()
    _write(b, m)
    return m, b / m["members"][0]["file"]


def _redump(b: Path, m: dict, edit) -> None:
    """Load member 0 (logreg), ``edit`` its estimator, save it back with skops, rehash."""
    import skops.io as sio

    file = b / m["members"][0]["file"]
    estimator = sio.load(file, trusted=sio.get_untrusted_types(file=file))
    edit(estimator)
    file.unlink()
    sio.dump(estimator, file, compression=zipfile.ZIP_DEFLATED)
    _rehash(b, m, 0)


def _inflate(b: Path, m: dict, megabytes: int) -> str:
    """Replace the largest .npy entry of member 0 by zeros inflating to ``megabytes`` MiB."""
    file = b / m["members"][0]["file"]
    with zipfile.ZipFile(file) as zf:
        entries = {i.filename: zf.read(i) for i in zf.infolist()}
    big = max((n for n in entries if n.endswith(".npy")), key=lambda n: len(entries[n]))
    buffer = __import__("io").BytesIO()
    np.save(buffer, np.zeros((4, megabytes << 15)))
    entries[big] = buffer.getvalue()
    with zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return big


def test_a_member_inflating_past_its_declaration_is_refused_before_reading(bundle, tmp_path, monkeypatch):
    b = _copy(bundle, tmp_path)
    m, file = _logreg(b)
    declared = m["members"][0]["inflated_size"]
    big = _inflate(b, m, 12)  # a few kB on disk, 12 MiB inflated
    m["members"][0]["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    m["members"][0]["size"] = file.stat().st_size  # consistent hash and size: only the inflation lies
    _write(b, m)
    with pytest.raises(BundleError, match=rf"1_logreg_1\.skops: archive entry '{big}' inflates to "
                                          rf"\d+ bytes.*more than {declared} \(.*inflated_size\)"):
        load_bundle(b)
    del m["members"][0]["inflated_size"]  # no declaration: the hard cap still holds
    _write(b, m)
    monkeypatch.setattr("qcodes_stmtip.classify.bundle.MAX_MEMBER_INFLATED", 8 << 20)
    with pytest.raises(BundleError, match=r"1_logreg_1\.skops: archive entry .*\(the member limit\)"):
        load_bundle(b)


def test_wrong_coefficient_shape_and_nan_weights_are_refused(bundle, tmp_path):
    n_features = len(__import__("qcodes_stmtip.classify.features", fromlist=["x"]).feature_names(SIZE))
    b = _copy(bundle, tmp_path)
    m, _ = _logreg(b)

    def widen(est) -> None:
        est[-1].coef_ = np.zeros((4, n_features * 4))

    _redump(b, m, widen)
    with pytest.raises(BundleError, match=rf"1_logreg_1\.skops: .*coef_ has shape \(4, {4 * n_features}\), "
                                          rf"expected \(4, {n_features}\)"):
        load_bundle(b)
    b = _copy(bundle, tmp_path / "nan")
    m, _ = _logreg(b)

    def poison(est) -> None:
        est[-1].coef_[0, 0] = np.nan

    _redump(b, m, poison)
    with pytest.raises(BundleError, match=r"1_logreg_1\.skops: .*coef_ holds non-finite values"):
        load_bundle(b)


def test_duplicate_members_and_archive_entries_are_refused(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    m = _manifest(b)
    m["members"] = [m["members"][0]] * 3  # the same member listed three times
    _write(b, m)
    with pytest.raises(BundleError, match=r"members\[1\]\.file: the same member file as members\[0\]"):
        read_manifest(b)
    b = _copy(bundle, tmp_path / "copy2")
    m = _manifest(b)
    shutil.copy(b / m["members"][0]["file"], b / "members" / "again.skops")
    m["members"].append({**m["members"][0], "file": "members/again.skops"})
    _write(b, m)
    with pytest.raises(BundleError, match=r"members\[2\]\.sha256: the same member file as members\[0\]"):
        read_manifest(b)
    b = _copy(bundle, tmp_path / "copy3")
    m, file = _logreg(b)
    with zipfile.ZipFile(file, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("schema.json", b"{}")
    _rehash(b, m, 0)
    with pytest.raises(BundleError, match=r"1_logreg_1\.skops: archive entry 'schema.json' appears twice"):
        load_bundle(b)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("features", 999, r"members\[0\]\.shapes\.features: 999"),
    ("outputs", 6, r"members\[0\]\.shapes\.outputs: 6, but the manifest's classes give 4"),
    ("input", [SIZE, SIZE, 1], r"members\[0\]\.shapes\.input: a feature member takes features"),
])
def test_declared_shapes_must_fit_the_classes_and_features(bundle, tmp_path, field, value, match):
    b = _copy(bundle, tmp_path)
    m = _manifest(b)
    m["members"][0]["shapes"][field] = value
    _write(b, m)
    with pytest.raises(BundleError, match=match):
        read_manifest(b)


def test_saved_and_shipped_manifests_declare_every_members_sizes_and_shapes(bundle):
    from qcodes_stmtip.classify.bundle import DEFAULT_BUNDLES

    for root in [bundle, *sorted(p.parent for p in DEFAULT_BUNDLES.glob("*/manifest.json"))]:
        m = read_manifest(root)
        entries = [*m["members"], m.get("tip_change")]
        if m.get("partial"):
            entries += [*m["partial"]["members"], m["partial"].get("tip_change")]
        for e in filter(None, entries):
            assert {"size", "inflated_size", "shapes"} <= set(e), (root, e["file"])
            assert e["size"] == (root / e["file"]).stat().st_size
