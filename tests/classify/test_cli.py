"""End to end on a tiny simulated-layout dataset: stmtip train → evaluate → classify."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("keras")
from qcodes_stmtip.classify.bundle import load_bundle  # noqa: E402
from qcodes_stmtip.cli import main  # noqa: E402

CLASSES = ("dimers_asymmetries", "individual_atoms", "rows", "generic_defect")


def _frame(label: int, rng) -> np.ndarray:
    y, x = np.mgrid[0:48, 0:48].astype(float)
    tilt = rng.normal() * 0.05 * x  # a per-frame tilt the flattening removes
    if label == 0:
        z = np.sin(x / 1.5) * np.sin(y / 3)
    elif label == 1:
        z = np.sin(x / 2.0) * np.sin(y / 2.0)
    elif label == 2:
        z = np.sin(y / 4.0)
    else:
        z = rng.normal(size=x.shape).cumsum(axis=1) * 0.1
    return (z + tilt + 0.1 * rng.normal(size=x.shape)) * 1e-10


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("simdata")
    (root / "frames").mkdir()
    rng = np.random.default_rng(0)
    rows = ["session,Name,surface,label,tip_change"]
    for i in range(48):
        label = i % 4
        name = f"f{i:03d}"
        np.save(root / "frames" / f"{name}.npy", _frame(label, rng))
        rows.append(f"s{i % 3},{name}.png,hsi100,{CLASSES[label]},{int(i % 5 == 0)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def bundle(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "hsi"
    rc = main(["train", "--surface", "hsi100", "--data", str(dataset), "--out", str(out),
               "--members", "squeezenet:adam:3e-3,vgg_bn:rmsprop:1e-3,squeezenet:adam:3e-3",
               "--width", "0.0625", "--epochs", "2", "--batch-size", "16", "--val-fraction", "0.3",
               "--quiet"])
    assert rc == 0
    return out


def test_train_with_pretraining_and_tip_change_vflip(dataset, tmp_path):
    """--pretrain trains every member on another labelled set first; both options reach the manifest."""
    out = tmp_path / "pre"
    rc = main(["train", "--surface", "hsi100", "--data", str(dataset), "--out", str(out),
               "--members", "squeezenet:adam:3e-3", "--width", "0.0625", "--epochs", "1",
               "--batch-size", "16", "--val-fraction", "0.3", "--pretrain", str(dataset),
               "--pretrain-epochs", "1", "--tip-change-vflip", "--quiet"])
    assert rc == 0
    m = json.loads((out / "manifest.json").read_text())
    member = m["members"][0]["training"]
    assert member["pretrain_frames"] == 48 and member["pretrain_epochs"] == 1
    assert m["tip_change"]["training"]["restricted_vertical_flip"] is True
    assert m["tip_change"]["training"]["pretrain_frames"] == 0


def test_train_defaults_to_the_measured_best_recipe(dataset, tmp_path, capsys):
    """Defaults: gradient-boosted trees + logistic regression on frame features, a feature
    tip-change model, thresholds calibrated on the validation sessions, the notice copied in;
    ``--members cnn`` gives three adam SqueezeNets at width 0.125 with test-time views and the
    tip-change network with vertical flips for twice the epochs; presets and --no-tta change that."""
    out = tmp_path / "defaults"
    notice = tmp_path / "notice.txt"
    notice.write_text("Trained on test frames.\nSecond line.\n")
    rc = main(["train", "--surface", "hsi100", "--data", str(dataset), "--out", str(out),
               "--val-fraction", "0.3", "--notice", str(notice), "--quiet"])
    assert rc == 0
    # 48 frames: every calibrated threshold rests on too few validation frames, and says so
    err = capsys.readouterr().err
    assert "stmtip train: warning: the threshold of 'rows' rests on" in err
    m = json.loads((out / "manifest.json").read_text())
    assert any("rests on" in w for w in m["metrics"]["validation"]["warnings"])
    assert m["format_version"] == 2
    assert [(e["architecture"], e["kind"]) for e in m["members"]] == [("hgb", "sklearn"), ("logreg", "sklearn")]
    assert all(e["file"].endswith(".skops") for e in m["members"])
    assert (m["tip_change"]["architecture"], m["tip_change"]["kind"]) == ("hgb", "sklearn")
    # refitted on training + validation sessions once the thresholds were set
    assert all(e["training"]["refit_frames"] > e["training"]["train_frames"] for e in m["members"])
    assert m["tip_change"]["training"]["refit_frames"] > m["tip_change"]["training"]["train_frames"]
    assert len(m["inference"]["class_weights"]) == 4
    assert 0.0 <= m["tip_change"]["threshold"] <= 1.0
    assert m["tip_change"]["threshold"] == m["metrics"]["validation"]["tip_change"]["threshold"]
    assert m["metrics"]["validation"]["tip_change"]["threshold_rule"]
    assert (out / "NOTICE").read_text().startswith("Trained on test frames.")
    assert m["notice"] == "NOTICE" and m["training_data"]["provenance"] == "Trained on test frames."
    ens = load_bundle(out)
    assert not ens.all_networks and ens.predict(np.zeros((2, 128, 128, 1), np.float32)).mean.shape == (2, 4)
    out_cnn = tmp_path / "cnn"
    rc = main(["train", "--surface", "hsi100", "--data", str(dataset), "--out", str(out_cnn), "--members", "cnn",
               "--epochs", "1", "--batch-size", "16", "--val-fraction", "0.3", "--quiet"])
    assert rc == 0
    m = json.loads((out_cnn / "manifest.json").read_text())
    assert [(e["architecture"], e["training"]["optimizer"]) for e in m["members"]] == [("squeezenet", "adam")] * 3
    assert len({e["training"]["seed"] for e in m["members"]}) == 3
    assert {e["training"]["width"] for e in m["members"]} == {0.125}
    assert m["inference"]["tta"] is True and m["inference"]["tip_change_vertical_flip"] is True
    assert m["tip_change"]["training"]["epochs"] == 2
    assert m["tip_change"]["training"]["restricted_vertical_flip"] is True
    out2 = tmp_path / "paper"
    rc = main(["train", "--surface", "hsi100", "--data", str(dataset), "--out", str(out2), "--members", "paper",
               "--no-tta", "--no-tip-change", "--epochs", "1", "--batch-size", "16", "--val-fraction", "0.3",
               "--quiet"])
    assert rc == 0
    m = json.loads((out2 / "manifest.json").read_text())
    assert [(e["architecture"], e["training"]["optimizer"], e["training"]["learning_rate"]) for e in m["members"]] \
        == [("squeezenet", "adam", 1e-3), ("squeezenet", "sgd", 1e-4), ("vgg_bn", "rmsprop", 1e-4)]
    assert m["inference"]["tta"] is False and m["tip_change"] is None


def test_train_writes_manifest(bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["surface"] == "hsi100" and m["classes"] == list(CLASSES)
    assert len(m["members"]) == 3 and m["tip_change"] is not None
    assert m["training_data"]["frames"] == 48
    assert m["metrics"]["validation"]["validation_sessions"]
    assert all((bundle / e["file"]).is_file() for e in m["members"])


def test_evaluate_prints_table_and_plots(bundle, dataset, tmp_path, capsys):
    rc = main(["evaluate", "--model", str(bundle), "--data", str(dataset), "--plots", str(tmp_path),
               "--json", str(tmp_path / "scores.json"), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ensemble" in out and "AUROC" in out and "tip change" in out and "good/bad" in out
    for name in ("roc.png", "pr.png", "confusion.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["n_labelled"] == 48 and 0.0 <= scores["table"]["ensemble"]["mean_auroc"] <= 1.0
    assert 0.0 <= scores["table"]["ensemble"]["average_precision"] <= 1.0
    assert 0.0 <= scores["confident"]["coverage"] <= 1.0 and "confidence thresholds" in out


def test_classify_csv(bundle, dataset, tmp_path):
    short = tmp_path / "short.npy"
    np.save(short, np.zeros((3, 40)))
    files = [str(dataset / "frames" / "f000.npy"), str(dataset / "frames" / "f001.npy"), str(short)]
    out = tmp_path / "preds.csv"
    assert main(["classify", "--model", str(bundle), "--output", str(out), *files]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["file", *CLASSES, "tip_change", "decision", "good_bad", "reason", "detail", "channel",
                             "reader", "bundle"]
    assert [r["file"] for r in rows] == files
    for r in rows[:2]:
        assert sum(float(r[c]) for c in CLASSES) == pytest.approx(1.0, abs=1e-4)
        assert r["decision"] in (*CLASSES, "uncertain")
        assert 0.0 <= float(r["tip_change"]) <= 1.0
    assert rows[2]["decision"] == "unclassified" and rows[2][CLASSES[0]] == ""
    assert rows[2]["reason"] == "constant channel" and rows[0]["reason"] == ""  # 3 lines of zeros


def test_cli_errors(tmp_path, capsys):
    assert main(["classify", "--model", str(tmp_path / "none"), "--output", str(tmp_path / "p.csv"),
                 "x.png"]) == 1
    assert "model bundle directory not found" in capsys.readouterr().err


def test_parser_stays_tensorflow_free():
    code = ("import sys; from qcodes_stmtip.cli import build_parser; build_parser(); "
            "import qcodes_stmtip.classify; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_and_evaluate_the_default_recipe_without_keras(dataset, tmp_path):
    """The feature-member recipe needs no Keras/TensorFlow: with both blocked (as on the base
    install) `stmtip train` and `stmtip evaluate` run and never import them."""
    out = tmp_path / "no-keras"
    code = ("import sys\nfor m in ('tensorflow', 'keras'):\n    sys.modules[m] = None\n"
            "from qcodes_stmtip.cli import main\n"
            f"assert main(['train', '--surface', 'hsi100', '--data', {str(dataset)!r}, '--out', "
            f"{str(out)!r}, '--val-fraction', '0.3', '--quiet']) == 0\n"
            f"assert main(['evaluate', '--data', {str(dataset)!r}, '--model', {str(out)!r}, "
            "'--quiet']) == 0\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (out / "manifest.json").is_file()
