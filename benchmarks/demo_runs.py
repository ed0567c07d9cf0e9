"""``stmtip demo`` on every surface and seed: how each run ends and how often its verdicts agree
with the simulator's truth.

    .venv/bin/python benchmarks/demo_runs.py [--surfaces hsi100,au111,cu111] [--seeds 1-5]

Each run is exactly ``stmtip demo --surface S --seed K`` (:func:`qcodes_stmtip.demo.run_demo`, the
shipped default bundle, the escalating policy), written to a temporary directory. Per run: the
outcome, the simulator's final tip, whether it is a good tip ("truly good") and in the demo's target, tip
actions, frames and the report's ``classifier vs simulator truth (good/bad): K of N frames agree``.
Then, over all runs: runs that ended ``good_tip`` on a tip that is not truly good (must be none),
and the agreement ΣK / ΣN. The simulator runs on an accelerated wall clock, so a seed's frame
count varies between repeats: read one pass as one sample.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        low, high = (int(v) for v in text.split("-"))
        return list(range(low, high + 1))
    return [int(v) for v in text.split(",")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--surfaces", default="hsi100,au111,cu111")
    p.add_argument("--seeds", type=parse_seeds, default=parse_seeds("1-5"))
    args = p.parse_args()
    from qcodes_stmtip.demo import DEMO_TARGET, run_demo
    from qcodes_stmtip.taxonomy import GOOD_CLASSES

    print(f"{'surface':<8} {'seed':>4} {'outcome':<13} {'final tip (truth)':<20} {'truly good':>10} "
          f"{'target':>6} {'actions':>7} {'frames':>6} {'agree':>9} {'wall s':>6}")
    total_agree = total_frames = bad_stops = 0
    per_surface: dict[str, list[int]] = {}
    for surface in args.surfaces.split(","):
        target = DEMO_TARGET.get(surface, GOOD_CLASSES[surface])
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
                t0 = time.perf_counter()
                r = run_demo(Path(tmp) / "demo", surface=surface, seed=seed, echo=lambda line: None)
                wall = time.perf_counter() - t0
            agreement = r.summary.get("truth_agreement") or {"agree": 0, "frames": 0}
            truly_good = r.true_final_state in GOOD_CLASSES[surface]
            bad_stops += r.outcome == "good_tip" and not truly_good
            total_agree += agreement["agree"]
            total_frames += agreement["frames"]
            s = per_surface.setdefault(surface, [0, 0])
            s[0] += agreement["agree"]
            s[1] += agreement["frames"]
            print(f"{surface:<8} {seed:>4} {r.outcome:<13} {r.true_final_state:<20} {'yes' if truly_good else 'no':>10} "
                  f"{'yes' if r.true_final_state in target else 'no':>6} {r.tip_actions:>7} {r.frames:>6} {agreement['agree']:>4}/{agreement['frames']:<4} {wall:>6.0f}",
                  flush=True)
    for surface, (k, n) in per_surface.items():
        print(f"{surface}: {k} of {n} frames agree ({k / max(n, 1):.0%})")
    print(f"all runs: {total_agree} of {total_frames} frames agree ({total_agree / max(total_frames, 1):.1%}); "
          f"runs ending good_tip on a tip that is not truly good: {bad_stops}")


if __name__ == "__main__":
    main()
