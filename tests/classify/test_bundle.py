"""Bundles round-trip bit-exactly; missing, corrupt or incompatible bundles are refused clearly."""

import hashlib
import json
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from qcodes_stmtip.classify.architectures import build_model  # noqa: E402
from qcodes_stmtip.classify.bundle import (  # noqa: E402
    BundleError,
    default_bundle_path,
    load_bundle,
    read_manifest,
    save_bundle,
)
from qcodes_stmtip.classify.ensemble import Ensemble, Member  # noqa: E402

CLASSES = ("dimers_asymmetries", "individual_atoms", "rows", "generic_defect")
SIZE = 32


def _perturb(model, seed):
    """Random non-trivial weights, including batch-norm statistics."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def _trained(model):
    """A compiled model after one optimizer step (its optimizer state must not go into the bundle)."""
    model.compile(optimizer="adam", loss="binary_crossentropy")
    rng = np.random.default_rng(3)
    model.train_on_batch(rng.uniform(-1, 1, (4, SIZE, SIZE, 1)).astype(np.float32),
                         np.eye(4, dtype=np.float32)[[0, 1, 2, 3]])
    return model


def _ensemble():
    members = [
        Member("sq0", "squeezenet", _trained(_perturb(build_model("squeezenet", 4, width=0.125, size=SIZE), 0))),
        Member("vggbn", "vgg_bn", _perturb(build_model("vgg_bn", 4, width=0.125, size=SIZE), 1)),
    ]
    tip = Member("tip_change", "squeezenet", _perturb(build_model("squeezenet", 2, width=0.125, size=SIZE), 2))
    return Ensemble("hsi100", CLASSES, members, thresholds=[0.3, 0.4, 0.5, 0.6], tip_change=tip,
                    tip_change_threshold=0.7)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    ens = _ensemble()
    path = save_bundle(ens, tmp_path_factory.mktemp("b") / "bundle", image_size=SIZE,
                       training_data={"frames": 10}, metrics={"validation": {"auroc": 0.9}})
    return ens, path


def _x():
    return np.random.default_rng(7).uniform(-1, 1, (5, SIZE, SIZE, 1)).astype(np.float32)


def test_round_trip_is_bit_exact(saved):
    ens, path = saved
    loaded = load_bundle(path, surface="hsi100")
    for a, b in zip([*ens.members, ens.tip_change], [*loaded.members, loaded.tip_change], strict=True):
        wa, wb = a.model.get_weights(), b.model.get_weights()
        assert len(wa) == len(wb)
        for x, y in zip(wa, wb, strict=True):
            assert x.dtype == y.dtype and np.array_equal(x, y)
    p1, p2 = ens.predict(_x()), loaded.predict(_x())
    assert np.array_equal(p1.member_probabilities, p2.member_probabilities)
    assert np.array_equal(p1.tip_change_probability, p2.tip_change_probability)
    np.testing.assert_array_equal(loaded.thresholds, [0.3, 0.4, 0.5, 0.6])
    assert loaded.tip_change_threshold == 0.7
    assert loaded.good_classes == frozenset(CLASSES[:3])
    m = loaded.manifest
    assert m["format_version"] == 2 and m["classes"] == list(CLASSES)
    assert m["preprocessing"]["image_size"] == SIZE and m["training_data"] == {"frames": 10}
    assert [e["architecture"] for e in m["members"]] == ["squeezenet", "vgg_bn"]
    assert m["package_version"] and m["keras_version"] == keras.__version__


def _copy(path, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(path, dst)
    return dst


def _edit_manifest(path, **changes):
    m = json.loads((path / "manifest.json").read_text())
    m.update(changes)
    (path / "manifest.json").write_text(json.dumps(m))
    return m


def test_missing_and_incompatible(saved, tmp_path):
    _, path = saved
    with pytest.raises(BundleError, match="directory not found"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(tmp_path / "empty")
    with pytest.raises(BundleError, match="not 'au111'"):
        load_bundle(path, surface="au111")
    b = _copy(path, tmp_path)
    _edit_manifest(b, format_version=99)
    with pytest.raises(BundleError, match="format_version: 99 is not supported"):
        read_manifest(b)
    _edit_manifest(b, format_version=1, classes=["a", "b"])
    with pytest.raises(BundleError, match="do not match"):
        read_manifest(b)
    (b / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_manifest(b)
    with pytest.raises(BundleError, match="not empty"):
        save_bundle(_ensemble(), path)


def test_corrupt_member_refused(saved, tmp_path):
    _, path = saved
    b = _copy(path, tmp_path)
    m = json.loads((b / "manifest.json").read_text())
    member = b / m["members"][0]["file"]
    member.write_bytes(member.read_bytes()[:200])  # truncated zip
    with pytest.raises(BundleError, match="SHA-256 does not match"):
        load_bundle(b)
    for bad in ("", None):  # a removed or empty hash is refused, not skipped
        m["members"][0]["sha256"] = bad
        (b / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(BundleError, match=r"members\[0\]\.sha256"):
            load_bundle(b)
    m["members"][0]["sha256"] = hashlib.sha256(member.read_bytes()).hexdigest()
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"0_sq0\.keras: cannot load Keras model"):
        load_bundle(b)
    member.unlink()
    with pytest.raises(BundleError, match="member model file missing"):
        load_bundle(b)


def test_lambda_layer_refused_by_safe_mode(tmp_path):
    """A bundle whose model holds code (a Lambda layer) is refused, never executed."""
    inp = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(4, activation="softmax")(x)
    evil = keras.Model(inp, out)
    good = build_model("squeezenet", 4, width=0.125, size=SIZE)
    ens = Ensemble("hsi100", CLASSES, [Member("evil", "custom", evil), Member("ok", "squeezenet", good)])
    path = save_bundle(ens, tmp_path / "evil", image_size=SIZE)
    with pytest.raises(BundleError, match=r"0_evil\.keras: cannot load Keras model.*Lambda"):
        load_bundle(path)


def test_member_archive_has_no_optimizer_state(saved):
    ens, path = saved
    m = read_manifest(path)
    with zipfile.ZipFile(path / m["members"][0]["file"]) as z:
        assert "config.json" in z.namelist()
        weights_bytes = z.getinfo("model.weights.h5").file_size
    # member 0 was trained with adam: its two moment slots would triple the weight file
    n_bytes = 4 * ens.members[0].model.count_params()
    assert weights_bytes < 1.5 * n_bytes + 100_000


def test_default_bundle_lookup():
    with pytest.raises(BundleError, match="surface 'nosuch'"):
        default_bundle_path("nosuch")


def test_test_time_views_round_trip_and_make_outputs_symmetric(tmp_path):
    """With ``tta`` the members average over the 8 symmetries (a 90° turn or a flip of the frame
    changes nothing) and the tip-change network over its flips; the flags round-trip."""
    ens = _ensemble()
    x = _x()
    turned, flipped = np.rot90(x, 1, axes=(1, 2)), x[:, ::-1]
    plain = ens.predict(x)
    assert np.abs(plain.member_probabilities - ens.predict(turned).member_probabilities).max() > 1e-4
    ens.tta, ens.tip_change_vertical_flip = True, True
    path = save_bundle(ens, tmp_path / "tta", image_size=SIZE)
    loaded = load_bundle(path)
    assert loaded.tta and loaded.tip_change_vertical_flip
    assert loaded.manifest["inference"] == {"tta": True, "tip_change_vertical_flip": True, "class_weights": None}
    p = loaded.predict(x)
    np.testing.assert_allclose(loaded.predict(turned).member_probabilities, p.member_probabilities, atol=1e-6)
    np.testing.assert_allclose(loaded.predict(flipped).tip_change_probability, p.tip_change_probability,
                               atol=1e-6)
    views = [x, x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]]
    tip = np.mean([ens.tip_change.model.predict(v, verbose=0)[:, 1] for v in views], axis=0)
    np.testing.assert_allclose(p.tip_change_probability, tip, atol=1e-6)
    # without vertical flips the tip-change network is not symmetric under them
    loaded.tip_change_vertical_flip = False
    q = loaded.predict(x).tip_change_probability
    assert np.abs(q - loaded.predict(flipped).tip_change_probability).max() > 1e-5


def test_inference_entry_is_optional_and_checked(saved, tmp_path):
    _, path = saved
    b = _copy(path, tmp_path)
    m = _edit_manifest(b)
    m.pop("inference")
    (b / "manifest.json").write_text(json.dumps(m))
    assert load_bundle(b).tta is False  # bundles written before the entry existed
    _edit_manifest(b, inference={"tta": "yes"})
    with pytest.raises(BundleError, match=r"manifest\.json: inference\.tta: 'yes' is not of type 'boolean'"):
        load_bundle(b)
    _edit_manifest(b, inference=[True])
    with pytest.raises(BundleError, match=r"manifest\.json: inference: \[True\] is not of type 'object'"):
        load_bundle(b)
