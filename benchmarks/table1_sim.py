"""Table I on a simulated data set (Au(111) or Cu(111), or H:Si(100)), split by simulated session.

    .venv/bin/stmtip sim dataset --surface au111 --count 1200 --pixels 128 --seed 1 --jobs 2 --out /tmp/sim_au111
    .venv/bin/python benchmarks/table1_sim.py --surface au111 --data /tmp/sim_au111 --epochs 15

Same rows as ``table1_hsi100.py`` (engine ``table1_rows.py``); the good/bad collapse takes
``individual_atoms`` as the only good class on the metals. There is no separate tip-change network on
the metals: tip change is one of their classes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from table1_rows import Split, add_training_args, load_cached, report, table_rows, three_way_split


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--surface", choices=("au111", "cu111", "hsi100"), required=True)
    p.add_argument("--data", type=Path, required=True, help="output folder of 'stmtip sim dataset'")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--val-fraction", type=float, default=0.15)
    add_training_args(p)
    return p.parse_args()


def main() -> int:
    args = parse_args()
    if not (args.data / "labels.csv").is_file():
        raise SystemExit(f"--data: no labels.csv in {args.data}")
    data, _ = load_cached(args.data, args.cache, progress=not args.quiet)
    frames = data.frames
    if frames.surface != args.surface:
        raise SystemExit(f"--data holds surface {frames.surface!r}, not --surface {args.surface!r}")
    train, val, test = three_way_split(frames.sessions, args.test_fraction, args.val_fraction, args.seed)
    tc = frames.tip_change if args.surface == "hsi100" else None

    def part(idx: np.ndarray) -> Split:
        return Split(data.images[idx], frames.labels[idx], None if tc is None else tc[idx])

    print(f"{args.surface}: train {len(train)}, validation {len(val)}, test {len(test)} frames "
          f"({len(set(frames.sessions[test]))} test sessions)")
    t0 = time.perf_counter()
    result = table_rows(part(train), part(val), part(test), frames.classes, args.surface, args)
    report(result, frames.classes,
           f"Table I, simulated {args.surface}, {len(test)} test frames from unseen sessions (SqueezeNet width "
           f"{args.width}, ≤{args.epochs} epochs); total {time.perf_counter() - t0:.0f} s:", args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
