import csv

from PIL import Image

from qcodes_stmtip.cli import build_parser, main
from qcodes_stmtip.taxonomy import CLASSES


def test_sim_group_is_registered():
    args = build_parser().parse_args(["sim", "dataset", "--surface", "cu111", "--count", "3", "--out", "x"])
    assert args.surface == "cu111" and args.count == 3 and callable(args.func)


def test_gallery_command_renders_every_class(tmp_path):
    out = tmp_path / "g.png"
    assert main(["sim", "gallery", "--surface", "au111", "--out", str(out), "--per-class", "1",
                 "--pixels", "48"]) == 0
    img = Image.open(out)
    assert img.size[0] == len(CLASSES["au111"]) * (48 + 6)


def test_dataset_command(tmp_path, capsys):
    assert main(["sim", "dataset", "--surface", "hsi100", "--count", "4", "--out", str(tmp_path),
                 "--seed", "2", "--pixels", "32", "--quiet", "--weights", "rows=1"]) == 0
    with open(tmp_path / "labels.csv", newline="") as fh:
        assert {r["label"] for r in csv.DictReader(fh)} == {"rows"}


def test_bad_weights_is_an_error(tmp_path):
    assert main(["sim", "dataset", "--surface", "hsi100", "--count", "2", "--out", str(tmp_path),
                 "--weights", "double_tip=1", "--quiet"]) == 1
