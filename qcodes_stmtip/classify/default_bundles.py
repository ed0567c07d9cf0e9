"""Build the default bundles shipped in ``qcodes_stmtip/classify/bundles/<surface>`` from simulated frames.

    .venv/bin/python -m qcodes_stmtip.classify.default_bundles --surface hsi100 [--count 600 --epochs 6]

Generates a simulated training set (``qcodes_stmtip.sim.dataset``) and a separate
held-out simulated test set (another seed), trains a compact ensemble (H:Si(100):
two SqueezeNets + one VGG-BN + the binary tip-change network, as the paper;
Au/Cu(111): three VGG repeats, as the paper), scores it on the held-out set and
writes the bundle. Only simulated data is used: real frames are not redistributed.
Importing this module does not import Keras.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from qcodes_stmtip.classify.bundle import DEFAULT_BUNDLES

#: Members per surface (architecture:optimizer:learning rate).
DEFAULT_MEMBERS: dict[str, str] = {
    "hsi100": "squeezenet:adam:1e-3,squeezenet:sgd:1e-2,vgg_bn:rmsprop:1e-3",
    "au111": "vgg:adam:1e-3,vgg:adam:1e-3,vgg:adam:1e-3",
    "cu111": "vgg:adam:1e-3,vgg:adam:1e-3,vgg:adam:1e-3",
}


def build_default_bundle(
    surface: str,
    out: Path,
    *,
    count: int = 600,
    test_count: int = 200,
    width: float = 0.0625,
    epochs: int = 6,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Generate simulated data, train, score on held-out simulated frames, save to ``out``.

    Returns the held-out evaluation (Table I rows). Side effects: writes the bundle
    directory and temporary simulated data sets (deleted afterwards).
    """
    from qcodes_stmtip.classify.bundle import save_bundle
    from qcodes_stmtip.classify.dataset_images import load_images
    from qcodes_stmtip.classify.ensemble_training import (
        evaluate_ensemble,
        parse_members,
        train_ensemble,
    )
    from qcodes_stmtip.classify.labels import load_labels
    from qcodes_stmtip.classify.training import TrainConfig
    from qcodes_stmtip.sim.dataset import generate_dataset

    members = parse_members(DEFAULT_MEMBERS[surface])
    with tempfile.TemporaryDirectory(prefix=f"stmtip-{surface}-") as tmp:
        train_dir, test_dir = Path(tmp) / "train", Path(tmp) / "test"
        generate_dataset(surface, count, train_dir, seed=seed, progress=progress)
        generate_dataset(surface, test_count, test_dir, seed=seed + 10_000, progress=progress)
        data = load_images(load_labels(train_dir, surface), progress=progress)
        base = TrainConfig(members[0].architecture, width=width, epochs=epochs, batch_size=32,
                           patience=3, seed=seed)
        ensemble, report = train_ensemble(data, base, members, val_fraction=0.2, split_seed=seed,
                                          progress=progress)
        held_out = evaluate_ensemble(ensemble, load_images(load_labels(test_dir, surface),
                                                           progress=progress))
        summary = {**data.frames.summary(), "source": "simulated (qcodes_stmtip.sim.dataset)",
                   "count": count, "seed": seed, "width": width, "epochs": epochs}
        save_bundle(ensemble, out, training_data=summary,
                    metrics={"validation": report, "held_out_simulated": held_out})
    return held_out


def main(argv: list[str] | None = None) -> int:
    from qcodes_stmtip.sim.classes import SURFACES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--surface", required=True, choices=SURFACES)
    p.add_argument("--out", type=Path, default=None, help=f"default: {DEFAULT_BUNDLES}/<surface>")
    p.add_argument("--count", type=int, default=600)
    p.add_argument("--test-count", type=int, default=200)
    p.add_argument("--width", type=float, default=0.0625)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    from qcodes_stmtip.classify.ensemble_training import format_table

    out = args.out or DEFAULT_BUNDLES / args.surface
    held = build_default_bundle(args.surface, out, count=args.count, test_count=args.test_count,
                                width=args.width, epochs=args.epochs, seed=args.seed,
                                progress=not args.quiet)
    print(f"{out}: held-out simulated frames")
    print(format_table(held["table"]))
    if "tip_change" in held:
        print(f"tip change: {held['tip_change']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
