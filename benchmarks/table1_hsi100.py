"""Table I for H:Si(100) on the real vote data (../shared/data/hsi100), with session-split data.

Trains every CNN (two SqueezeNet-likes, VGG with batch norm, VGG, Rashidi–Wolkow), the paper's
ensemble (majority vote of the 3 with the best validation AUROC), the random forest, weighted random
guessing and the binary tip-change network; prints AUROC / balanced accuracy / mean precision per
model and their good/bad collapse on *test* sessions used neither for training nor for early stopping
or member choice, and the wall time of every training on this machine. Engine: ``table1_rows.py``.

    .venv/bin/python benchmarks/table1_hsi100.py --width 0.125 --epochs 25
    .venv/bin/python benchmarks/table1_hsi100.py --models squeezenet --epochs 3   # quick look
    .venv/bin/python benchmarks/table1_hsi100.py --paper-size-cost                # time paper-size steps
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from table1_rows import Split, add_training_args, load_cached, report, table_rows, three_way_split

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "hsi100"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--paper-size-cost", action="store_true",
                   help="only time a few batch-128 training steps of each paper-size (width 1) network")
    add_training_args(p)
    return p.parse_args()


def paper_size_cost(batch_size: int, steps: int = 3) -> None:
    """Seconds per training step of the width-1 networks, extrapolated to one epoch of 2,500 frames."""
    from qcodes_stmtip.classify.architectures import build_model
    from qcodes_stmtip.classify.keras_backend import keras

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch_size, 128, 128, 1)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, batch_size)]
    print(f"{'model':<12} {'params':>10} {'s/step':>8} {'s/epoch(2500)':>14}")
    for arch in ("squeezenet", "vgg_bn", "vgg", "rw"):
        m = build_model(arch, 4, width=1.0)
        m.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy())
        m.train_on_batch(x, y)  # warm-up / graph build
        t0 = time.perf_counter()
        for _ in range(steps):
            m.train_on_batch(x, y)
        per = (time.perf_counter() - t0) / steps
        print(f"{arch:<12} {m.count_params():>10,} {per:>8.2f} {per * np.ceil(2500 / batch_size):>14.0f}")


def main() -> int:
    args = parse_args()
    if args.paper_size_cost:
        paper_size_cost(args.batch_size)
        return 0
    if not (args.data / "labels.csv").is_file():
        raise SystemExit(f"no labels.csv in {args.data}: the real H:Si(100) data is not present")
    data, t_pre = load_cached(args.data, args.cache, progress=not args.quiet)
    frames = data.frames
    train, val, test = three_way_split(frames.sessions, args.test_fraction, args.val_fraction, args.seed)
    tc = frames.tip_change

    def part(idx: np.ndarray) -> Split:
        return Split(data.images[idx], frames.labels[idx], tc[idx])

    lab = frames.labels >= 0
    print(f"frames {len(frames)} (skipped too short: {len(data.skipped)}), preprocessing {t_pre:.0f} s "
          f"(0 = cached in {args.cache})")
    print(f"four-class frames: train {lab[train].sum()}, validation {lab[val].sum()}, test {lab[test].sum()} "
          f"({len(set(frames.sessions[test]))} test sessions)")
    t0 = time.perf_counter()
    result = table_rows(part(train), part(val), part(test), frames.classes, "hsi100", args)
    report(result, frames.classes,
           f"Table I, H:Si(100), {lab[test].sum()} test frames from sessions unseen in training "
           f"(SqueezeNet width {args.width}, VGG/RW width {args.vgg_width or args.width}, ≤{args.epochs} epochs, "
           f"batch {args.batch_size}); total {time.perf_counter() - t0:.0f} s:", args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
