"""Sim-to-real: Table I of models trained on simulated H:Si(100) frames only, scored on the real frames.

Generate the training set first (seeded, ~1 min per 2,000 frames on 2 cores):

    .venv/bin/stmtip sim dataset --surface hsi100 --count 2000 --pixels 128 --seed 1 --jobs 2 --out /tmp/sim_hsi100
    .venv/bin/python benchmarks/sim_to_real.py --sim /tmp/sim_hsi100 --width 0.125 --epochs 20

Validation (early stopping, ensemble member choice) uses held-out *simulated* sessions; every labelled
real frame of ../shared/data/hsi100 is test data (4-class rows, good/bad collapse, tip-change network).
Engine: ``table1_rows.py``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from table1_rows import Split, add_training_args, load_cached, report, table_rows

from qcodes_stmtip.classify.labels import session_split

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REAL = REPO / ".." / "shared" / "data" / "hsi100"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sim", type=Path, required=True, help="output folder of 'stmtip sim dataset --surface hsi100'")
    p.add_argument("--real", type=Path, default=DEFAULT_REAL)
    p.add_argument("--val-fraction", type=float, default=0.2, help="simulated sessions held out for validation")
    add_training_args(p)
    return p.parse_args()


def main() -> int:
    args = parse_args()
    for name, folder in (("--sim", args.sim), ("--real", args.real)):
        if not (folder / "labels.csv").is_file():
            raise SystemExit(f"{name}: no labels.csv in {folder}")
    sim, _ = load_cached(args.sim, args.cache, progress=not args.quiet)
    real, _ = load_cached(args.real, args.cache, progress=not args.quiet)
    if sim.frames.surface != "hsi100" or sim.frames.classes != real.frames.classes:
        raise SystemExit(f"--sim must be a simulated hsi100 set with classes {real.frames.classes}, "
                         f"got {sim.frames.surface} {sim.frames.classes}")
    tr, va = session_split(sim.frames.sessions, args.val_fraction, args.seed)
    f = sim.frames
    train = Split(sim.images[tr], f.labels[tr], None if f.tip_change is None else f.tip_change[tr])
    val = Split(sim.images[va], f.labels[va], None if f.tip_change is None else f.tip_change[va])
    test = Split(real.images, real.frames.labels, real.frames.tip_change)
    print(f"simulated frames: train {len(tr)}, validation {len(va)}; real test frames {len(real.frames)} "
          f"({(real.frames.labels >= 0).sum()} four-class)")
    t0 = time.perf_counter()
    result = table_rows(train, val, test, f.classes, "hsi100", args)
    report(result, f.classes,
           f"Sim-to-real Table I: trained on {len(tr)} simulated H:Si(100) frames, scored on "
           f"{(real.frames.labels >= 0).sum()} real frames (SqueezeNet width {args.width}, ≤{args.epochs} epochs); "
           f"total {time.perf_counter() - t0:.0f} s:", args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
