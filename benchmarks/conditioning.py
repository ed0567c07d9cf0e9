"""Tip conditioning on the simulator: rule-based (escalating) policy vs the random baseline.

    .venv/bin/python benchmarks/conditioning.py [--sessions 50] [--surfaces hsi100,au111,cu111]
        [--ensemble-bundle BUNDLE|default --ensemble-sessions 5 [--ensemble-only]]

Each session is a fresh simulated microscope (seed = session number) starting from a bad
tip (H:Si(100): ``generic_defect``; Au/Cu(111): ``double_tip`` or ``corruption``), driven
through the QCoDeS driver over loopback TCP by the full :class:`ConditioningExperiment`
loop, until two consecutive good frames (three with the real ensemble) (success), the action budget (40 tip actions)
or 150 frames. Prints per surface and policy: success rate, median and mean tip actions
and median simulated minutes to a good tip (successes only).

Classifier: by default the **oracle** (the simulator's ground truth, labelled as such in
the output) — ~150 sessions × tens of frames of CNN inference would take hours on two
cores. ``--ensemble-bundle`` additionally runs a few sessions per policy with the real
:class:`~qcodes_stmtip.monitor.TipStateMonitor` on that bundle (H:Si(100) only).
Reference point: a published CNN-driven loop on Si(111) needed ~12 reshaping attempts and
9.3 minutes on real hardware.

Issue 14 (judging the tip while the frame is scanned):

* ``--early-abort``: the escalating policy with and without early abort (every scan watched,
  the partial frame judged every ``--watch-every`` lines, the scan stopped on a confidently
  bad verdict or a flagged tip change), ``--abort-sessions`` sessions per surface and arm, at
  ``--abort-acceleration`` (×20 by default: simulated time is wall time × acceleration, so
  the watcher's wall-clock milliseconds per frame must stay small against a line); prints
  success rate, truly-good rate, median (mean) simulated minutes to a good tip and the
  reduction. The oracle judges partial frames exactly from the truth of the lines acquired:
  this is the bound of what early abort can save, not a classifier's result.
* ``--tip-changes N``: N simulated mid-frame tip changes (a good H:Si(100) apex degrading to
  ``generic_defect`` at a random line of a 64-line 6 nm frame; ``--tip-change-surface au111``
  or ``cu111``: ``individual_atoms`` to ``double_tip``) and N clean frames, each
  watched every ``--watch-every`` lines by the real :class:`TipStateMonitor` on
  ``--tip-change-bundle`` (default: the shipped hsi100 bundle, its partial model if it has
  one) without stopping: median lines from the change to the flag (and to any decisive
  verdict), how often it is flagged before the frame ends, and the false-alarm rate per
  clean frame.

    .venv/bin/python benchmarks/conditioning.py --early-abort --abort-sessions 50 --surfaces hsi100,au111,cu111 --skip-policies
    .venv/bin/python benchmarks/conditioning.py --tip-changes 50 --skip-policies
    .venv/bin/python benchmarks/conditioning.py --abort-ensemble-sessions 10 --skip-policies

Issue 28 (``--spectral N``): the image verdict alone against image + spectrum on Au/Cu(111)
(:class:`~qcodes_stmtip.conditioning.spectral.SpectroscopicTipCheck`: a frame judged good is
confirmed by a dI/dV spectrum at its flattest spot, which must show a sharp surface-state step).
The image classifier is the oracle made weak: a bad tip's frame reads as a good one with
probability ``--false-good-rate``. Prints stops, the truly-good share of stops and simulated
minutes to a truly good stop.

    .venv/bin/python benchmarks/conditioning.py --spectral 30 --surfaces au111,cu111 --skip-policies --acceleration 50

Simulated time runs at ``--acceleration`` × wall time, so the driver's own wall-clock work
(requests, dataset writes) is counted as simulated time too, magnified by that factor; a
spectrum costs ~20–60 ms of wall time on a shared machine (4–12 s simulated at ×200, against
~1 s for the sweep itself), so the comparison runs at ×50.

``--abort-ensemble-sessions N`` runs the same comparison with the real monitor on H:Si(100)
(the demo's frames — 4 nm, 128², 45° — and target, the bundle's calibrated tip-change threshold):
there the success and truly-good rates show what a classifier's false alarms on partial
frames cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from qcodes_stmtip.demo import DEMO_ANGLE_DEG, DEMO_FRAME_M, DEMO_PIXELS

BOUNDS = ((-1.6e-6, 1.6e-6), (-1.6e-6, 1.6e-6))
BAD_START = {"hsi100": ("generic_defect",), "au111": ("double_tip", "corruption"),
             "cu111": ("double_tip", "corruption")}


def run_session(surface: str, seed: int, policy_name: str, exp, *, pixels: int, frame_m: float,
                acceleration: float, angle_deg: float = 0.0, bundle: str | None = None, consecutive: int = 2,
                target_classes: frozenset[str] | None = None,
                max_tip_change_probability: float | None = 0.5, early_abort: bool = False,
                watch_every: int = 4, false_good_rate: float = 0.0, spectral: bool = False) -> dict:
    """One simulated session; returns its outcome, tip actions and simulated minutes.

    ``max_tip_change_probability=None``: the bundle's calibrated tip-change threshold (as the demo).
    ``false_good_rate`` (oracle only): each frame of a bad tip is called ``individual_atoms`` with
    this probability (an image classifier that mistakes bad metal tips for good ones);
    ``spectral``: wrap the classifier in the spectroscopic tip check (issue 28)."""
    from qcodes_stmtip.conditioning.experiment import ConditioningExperiment, Target
    from qcodes_stmtip.conditioning.oracle import GroundTruthClassifier
    from qcodes_stmtip.conditioning.policy import EscalatingPolicy, RandomPolicy
    from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
    from qcodes_stmtip.sim.controller import serve_simulator
    from qcodes_stmtip.taxonomy import GOOD_CLASSES

    starts = BAD_START[surface]
    server = serve_simulator(surface, seed=seed, time_acceleration=acceleration,
                             initial_tip=starts[seed % len(starts)])
    stm = NanonisSTM(f"stm_{policy_name}_{seed}", port=server.port)
    monitor = None
    try:
        stm.pixels(pixels)
        stm.lines(pixels)
        stm.set_frame(0.0, 0.0, frame_m, frame_m, angle_deg)
        if bundle is None:
            truth = server.microscope.ground_truth
            if false_good_rate:
                truth = _confused_truth(surface, truth, false_good_rate, seed)
            monitor = GroundTruthClassifier(surface, truth)
        else:
            from qcodes_stmtip.monitor import TipStateMonitor

            monitor = TipStateMonitor(bundle, surface=surface)
            if monitor.ensemble.calibrated:  # the calibrated P(bad) weighs tip changes already
                max_tip_change_probability = 1.0
            elif max_tip_change_probability is None:
                from qcodes_stmtip.demo import bundle_tip_change_threshold

                max_tip_change_probability = bundle_tip_change_threshold(monitor)
        if spectral:
            from qcodes_stmtip.conditioning.spectral import SpectroscopicTipCheck

            monitor = SpectroscopicTipCheck(monitor, stm, surface)
        policy = EscalatingPolicy() if policy_name == "escalating" else RandomPolicy(seed=seed)
        t0 = server.microscope.sim_time()
        result = ConditioningExperiment(
            stm, monitor, policy, surface=surface, area_bounds=BOUNDS, max_frames=150,
            target=Target.for_surface(surface, consecutive=consecutive,
                                      max_tip_change_probability=max_tip_change_probability,
                                      **({"classes": target_classes} if target_classes else {})),
            clock=server.microscope.sim_time, clock_name="simulated", seed=seed,
            truth=server.microscope.ground_truth,
            early_abort=early_abort, watch_every_lines=watch_every if early_abort else None).run(exp)
        final = server.microscope.ground_truth().tip_label
        good = target_classes or GOOD_CLASSES[surface]
        truly_good = final in good
        on_good = actions_on_good_tips(result.run_id, good)
        return {"outcome": result.outcome, "actions": result.tip_actions, "frames": result.frames,
                "actions_on_good": on_good, "truly_bad": final not in GOOD_CLASSES[surface],
                "minutes": (result.time_to_good_s or 0.0) / 60, "truly_good": truly_good,
                "sim_minutes_total": (server.microscope.sim_time() - t0) / 60,
                "stopped": result.stopped_frames,
                "spectra": getattr(monitor, "spectra_taken", 0)}
    finally:
        if bundle is not None and monitor is not None:
            monitor.close()
        stm.close()
        server.stop()


def _confused_truth(surface: str, truth, rate: float, seed: int):
    """``truth`` as a weak image classifier sees it: a bad metal tip's frame reads as
    ``individual_atoms`` with probability ``rate`` (one draw per frame, seeded)."""
    import dataclasses

    import numpy as np

    from qcodes_stmtip.taxonomy import CONTENT_CLASSES, GOOD_CLASSES

    rng = np.random.default_rng([seed, 28])

    def seen():
        gt = truth()
        label = gt.frame_label
        bad = label is not None and label not in GOOD_CLASSES[surface] \
            and label not in CONTENT_CLASSES[surface] and label != "tip_change"
        if bad and rng.random() < rate:
            return dataclasses.replace(gt, frame_label="individual_atoms")
        return gt

    return seen


#: ``--spectral`` arms: (spectroscopic check, good frames in a row to stop). The loop's default
#: stop is two good frames; with the check, one good frame confirmed by its spectrum is the
#: proposed stop (the spectrum is the independent confirmation the second frame was).
ARMS = ((False, 2), (False, 1), (True, 2), (True, 1))


def spectral_comparison(surfaces: list[str], sessions: int, exp, *, pixels: int, frame_m: float,
                        acceleration: float, false_good_rate: float) -> None:
    """Issue 28: the image verdict alone against image + spectrum (the spectroscopic tip check),
    each stopping after 2 or 1 good frames in a row (:data:`ARMS`)."""
    print(f"\nspectroscopic tip check (issue 28): image classifier = ORACLE that calls a bad tip's frame "
          f"individual_atoms with probability {false_good_rate:g} (a weak metal image classifier); "
          f"escalating policy, {sessions} sessions per surface and arm (seeds 4000+), {pixels}x{pixels} px "
          f"frames of {frame_m * 1e9:.0f} nm, time acceleration {acceleration:g}; 'truly good' = the "
          f"simulator's tip is individual_atoms when the loop stops with a good tip; time = simulated "
          f"minutes to a truly good stop", flush=True)
    print("  'med. min all': median over every session, a session that never reaches a truly good "
          "stop counting as never (inf); 'med./mean min good': over truly good stops only (a "
          "conditional time: the image arm's are the sessions that happened to end well)")
    print(f"{'surface':<8} {'verdict, frames':<19} {'n':>3} {'stops':>6} {'truly good':>10} {'good/sess.':>10} "
          f"{'med. min all':>13} {'med. min good':>14} {'mean min good':>14} {'spectra/sess.':>14} "
          f"{'wall s':>7}")
    for surface in surfaces:
        for spectral, consecutive in ARMS:
            t = time.perf_counter()
            rows = [run_session(surface, 4000 + s, "escalating", exp, pixels=pixels, frame_m=frame_m,
                                acceleration=acceleration, false_good_rate=false_good_rate,
                                spectral=spectral, consecutive=consecutive) for s in range(sessions)]
            stops = [r for r in rows if r["outcome"] == "good_tip"]
            good = [r for r in stops if r["truly_good"]]
            med = statistics.median(r["minutes"] for r in good) if good else float("nan")
            mean = statistics.fmean(r["minutes"] for r in good) if good else float("nan")
            med_all = statistics.median(r["minutes"] if r["outcome"] == "good_tip" and r["truly_good"]
                                        else float("inf") for r in rows)
            arm = f"{'image+spectrum' if spectral else 'image'} x{consecutive}"
            print(f"{surface:<8} {arm:<19} {len(rows):>3} "
                  f"{len(stops):>6} {len(good) / max(1, len(stops)):>10.0%} {len(good) / len(rows):>10.0%} "
                  f"{med_all:>13.2f} {med:>14.2f} {mean:>14.2f} "
                  f"{statistics.fmean(r['spectra'] for r in rows):>14.1f} "
                  f"{time.perf_counter() - t:>7.0f}  "
                  f"{dict(Counter(r['outcome'] for r in rows if r['outcome'] != 'good_tip')) or ''}",
                  flush=True)


def actions_on_good_tips(run_id: int, good: frozenset[str]) -> int:
    """Tip actions (pulse, indent) of run ``run_id`` decided on a frame whose simulator truth was a
    good tip (``good`` classes): each such action was fired at a good tip."""
    from qcodes_stmtip.conditioning.records import load_conditioning_run

    run = load_conditioning_run(run_id)
    count = 0
    for action in run.actions:
        if not action.action.touches_tip:
            continue
        before = [f for f in run.frames if f.elapsed_s <= action.elapsed_s]
        if before and before[-1].true_state in good:
            count += 1
    return count


def summarise(rows: list[dict]) -> dict:
    ok = [r for r in rows if r["outcome"] == "good_tip"]
    return {
        "n": len(rows),
        "success": len(ok) / len(rows) if rows else float("nan"),
        "truly_good": sum(r["truly_good"] for r in ok) / max(1, len(ok)),
        "median_actions": statistics.median(r["actions"] for r in ok) if ok else float("nan"),
        "mean_actions": statistics.fmean(r["actions"] for r in ok) if ok else float("nan"),
        "median_minutes": statistics.median(r["minutes"] for r in ok) if ok else float("nan"),
        "median_frames": statistics.median(r["frames"] for r in ok) if ok else float("nan"),
        "stops_on_bad": sum(r.get("truly_bad", not r["truly_good"]) for r in ok),
        "actions_on_good": (sum(r.get("actions_on_good", 0) for r in rows)
                            / max(1, sum(r["actions"] for r in rows))),
        "inconclusive": sum(r["outcome"] == "inconclusive" for r in rows),
        "failures": dict(Counter(r["outcome"] for r in rows if r["outcome"] != "good_tip")),
    }


def early_abort_comparison(surfaces: list[str], sessions: int, exp, *, pixels: int, frame_m: float,
                           acceleration: float, watch_every: int) -> None:
    """Escalating policy, oracle, with and without early abort (see module doc)."""
    print(f"\nearly abort (issue 14): classifier ORACLE (exact partial verdicts from the simulator's "
          f"truth: the bound), escalating policy, {sessions} sessions per surface and arm, "
          f"{pixels}x{pixels} px frames of {frame_m * 1e9:.0f} nm, partial check every {watch_every} "
          f"lines (first at 8), time acceleration {acceleration:g}; simulated minutes to a good tip",
          flush=True)
    print(f"{'surface':<8} {'abort':<5} {'n':>3} {'success':>8} {'truly good':>10} {'med. min':>9} "
          f"{'mean min':>9} {'med. frames':>12} {'stopped/sess.':>14} {'wall s':>7}")
    for surface in surfaces:
        summary = {}
        for abort in (False, True):
            t = time.perf_counter()
            rows = [run_session(surface, 2000 + s, "escalating", exp, pixels=pixels, frame_m=frame_m,
                                acceleration=acceleration, early_abort=abort, watch_every=watch_every)
                    for s in range(sessions)]
            s_ = summarise(rows)
            ok = [r for r in rows if r["outcome"] == "good_tip"]
            mean_min = statistics.fmean(r["minutes"] for r in ok) if ok else float("nan")
            summary[abort] = (s_["median_minutes"], mean_min)
            stopped = statistics.fmean(r["stopped"] for r in rows)
            truly = sum(r["truly_good"] for r in ok) / max(1, len(ok))
            print(f"{surface:<8} {'on' if abort else 'off':<5} {s_['n']:>3} {s_['success']:>8.0%} "
                  f"{truly:>10.0%} {s_['median_minutes']:>9.2f} {mean_min:>9.2f} "
                  f"{s_['median_frames']:>12.1f} {stopped:>14.1f} {time.perf_counter() - t:>7.0f}  "
                  f"{s_['failures'] or ''}", flush=True)
        (m0, a0), (m1, a1) = summary[False], summary[True]
        print(f"{surface:<8} early abort: median time to a good tip {100 * (1 - m1 / m0):.0f} % less, "
              f"mean {100 * (1 - a1 / a0):.0f} % less (goal >= 40 %)", flush=True)


def ensemble_abort_comparison(sessions: int, bundle: str | None, exp, *, pixels: int, frame_m: float,
                              angle_deg: float, consecutive: int, acceleration: float, watch_every: int,
                              arms: tuple[bool, ...] = (False, True)) -> None:
    """Early abort on/off with the real monitor on H:Si(100) (the demo's frames and target);
    ``arms``: which of off (False) and on (True) to run."""
    from qcodes_stmtip.classify.bundle import default_bundle_path
    from qcodes_stmtip.demo import DEMO_TARGET

    path = bundle or str(default_bundle_path("hsi100"))
    print(f"\nearly abort with the REAL ENSEMBLE {path} (TipStateMonitor; partial frames through its "
          f"partial model, or its full-frame ensemble on the partial view), escalating policy, {sessions} "
          f"sessions per arm, {pixels} px frames of {frame_m * 1e9:.0f} nm, {consecutive} frames in a row "
          f"showing {'/'.join(sorted(DEMO_TARGET['hsi100']))}, check every {watch_every} lines, time "
          f"acceleration {acceleration:g}; 'truly good' = the simulator's tip is in the target at the end",
          flush=True)
    print(f"{'surface':<8} {'abort':<5} {'n':>3} {'success':>8} {'truly good':>10} {'med. min':>9} "
          f"{'mean min':>9} {'med. frames':>12} {'med. actions':>13} {'stopped/sess.':>14} {'wall s':>7}")
    summary = {}
    for abort in arms:
        t = time.perf_counter()
        rows = []
        for s in range(sessions):
            rows.append(run_session("hsi100", 3000 + s, "escalating", exp, pixels=pixels, frame_m=frame_m,
                                    angle_deg=angle_deg, acceleration=acceleration, bundle=path, consecutive=consecutive,
                                    target_classes=DEMO_TARGET["hsi100"], max_tip_change_probability=None,
                                    early_abort=abort, watch_every=watch_every))
            r = rows[-1]
            print(f"  session {3000 + s} ({'on' if abort else 'off'}): {r['outcome']}, {r['minutes']:.2f} min, "
                  f"{r['frames']} frames, {r['actions']} actions, {r['stopped']} stopped, truly good "
                  f"{r['truly_good']}, wall {time.perf_counter() - t:.0f} s", flush=True)
        s_ = summarise(rows)
        ok = [r for r in rows if r["outcome"] == "good_tip"]
        mean_min = statistics.fmean(r["minutes"] for r in ok) if ok else float("nan")
        summary[abort] = (s_["median_minutes"], mean_min)
        print(f"{'hsi100':<8} {'on' if abort else 'off':<5} {s_['n']:>3} {s_['success']:>8.0%} "
              f"{s_['truly_good']:>10.0%} {s_['median_minutes']:>9.2f} {mean_min:>9.2f} "
              f"{s_['median_frames']:>12.1f} {s_['median_actions']:>13.1f} "
              f"{statistics.fmean(r['stopped'] for r in rows):>14.1f} {time.perf_counter() - t:>7.0f}  "
              f"{s_['failures'] or ''}", flush=True)
    if len(summary) < 2:
        return
    (m0, a0), (m1, a1) = summary[False], summary[True]
    print(f"hsi100   early abort (real ensemble): median time to a good tip {100 * (1 - m1 / m0):.0f} % less, "
          f"mean {100 * (1 - a1 / a0):.0f} % less", flush=True)


#: Per surface for ``--tip-changes``: the good apexes a frame starts with, and what they degrade to.
TIP_CHANGE_APEX = {"hsi100": (("individual_atoms", "dimers_asymmetries"), "generic_defect"),
                   "au111": (("individual_atoms",), "double_tip"),
                   "cu111": (("individual_atoms",), "double_tip")}


def tip_change_detection(n: int, bundle: str | None, *, every: int, acceleration: float,
                         seed: int = 0, surface: str = "hsi100") -> None:
    """Mid-frame tip changes and clean frames watched by the real monitor (see module doc);
    ``surface``'s good apexes degrade as :data:`TIP_CHANGE_APEX` says."""
    import numpy as np

    from qcodes_stmtip.classify.bundle import default_bundle_path
    from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
    from qcodes_stmtip.monitor import TipStateMonitor
    from qcodes_stmtip.monitor.scanwatch import ScanWatcher
    from qcodes_stmtip.sim.controller import serve_simulator

    path = bundle or str(default_bundle_path(surface))
    good, worse = TIP_CHANGE_APEX[surface]
    rng = np.random.default_rng(seed)
    server = serve_simulator(surface, seed=seed, time_acceleration=acceleration,
                             initial_tip="individual_atoms")
    micro = server.microscope
    model = micro.dynamics.model
    model.spontaneous_mean_s = (1e12,) * len(model.spontaneous_mean_s)  # only the scheduled changes
    stm = NanonisSTM("stm_tip_changes", port=server.port)
    monitor = TipStateMonitor(path, surface=surface)
    try:
        stm.pixels(64)
        stm.lines(64)
        watcher = ScanWatcher(monitor, stm, every_lines=every, abort=False)
        rule = monitor.partial_rule
        print(f"\nmid-frame tip changes (issue 14): {n} frames whose good {surface} apex degrades to "
              f"{worse} at a random line (8..55 of 64) and {n} clean frames with a good apex, "
              f"6 nm, fresh areas, watched every {every} lines (never stopped) by TipStateMonitor({path}); "
              f"partial model: {'full-frame ensemble on the partial view' if monitor.partial_model.fallback else 'the bundle partial section'}; "
              f"rule: bad = decision in {sorted(rule.bad_classes)} (per-class thresholds), tip change at "
              f"P >= {rule.tip_change_threshold:.3f}, from {rule.min_lines} lines; time acceleration "
              f"{acceleration:g}", flush=True)
        delays_flag, delays_any, pre_alarms, clean_any, clean_flag = [], [], 0, 0, 0
        clean_checks = clean_decisive = 0
        checks = latency = dropped = posted = 0
        t = time.perf_counter()
        for i in range(2 * n):
            change = i % 2 == 0
            with micro.clock.lock:
                micro.dynamics.change_to(str(rng.choice(list(good))))
            stm.set_frame(float(rng.uniform(-1.4e-6, 1.4e-6)), float(rng.uniform(-1.4e-6, 1.4e-6)),
                          6e-9, 6e-9, 0.0)
            if change:
                micro.schedule_tip_change(None, worse)
            watcher.scan(i)
            rec = watcher.last
            checks += len(rec.checks)
            posted += rec.posted
            dropped += rec.dropped
            latency += sum(c.latency_s for c in rec.checks)
            if change:
                line = micro.ground_truth().tip_change_lines[0]
                after = [c for c in rec.checks if c.lines > line]
                pre_alarms += any(c.decisive for c in rec.checks if c.lines <= line)
                flag = next((c for c in after if c.verdict == "tip_change"), None)
                anyd = next((c for c in after if c.decisive), None)
                delays_flag.append(flag.lines - line if flag else None)
                delays_any.append(anyd.lines - line if anyd else None)
            else:
                clean_any += any(c.decisive for c in rec.checks)
                clean_flag += any(c.verdict == "tip_change" for c in rec.checks)
                clean_checks += len(rec.checks)
                clean_decisive += sum(c.decisive for c in rec.checks)
        monitor.finish()

        def med(values):
            got = [v for v in values if v is not None]
            return (statistics.median(got) if got else float("nan")), len(got) / len(values)

        (m_flag, r_flag), (m_any, r_any) = med(delays_flag), med(delays_any)
        print(f"  change frames: tip change flagged in {r_flag:.0%}, median {m_flag:.0f} lines after the "
              f"change; any decisive verdict (bad or tip change, what stops a scan) in {r_any:.0%}, median "
              f"{m_any:.0f} lines after; {pre_alarms / n:.0%} had a decisive verdict before the change")
        print(f"  clean frames: false alarms (any decisive verdict) {clean_any / n:.0%} per frame, "
              f"tip-change flags {clean_flag / n:.0%} per frame; {clean_decisive / max(clean_checks, 1):.0%} "
              f"of their {clean_checks} checks decisive")
        print(f"  {checks / (2 * n):.1f} checks per frame ({posted / (2 * n):.1f} posted, "
              f"{dropped / (2 * n):.1f} dropped as stale), check latency mean "
              f"{1e3 * latency / max(checks, 1):.0f} ms; wall {time.perf_counter() - t:.0f} s", flush=True)
    finally:
        monitor.close()
        stm.close()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=50)
    p.add_argument("--surfaces", default="hsi100,au111,cu111")
    p.add_argument("--pixels", type=int, default=32, help="pixels per frame side (oracle mode) [32]")
    p.add_argument("--frame-size", type=float, default=8e-9,
                   help="frame side, m [8e-9: atomic-resolution frames; 20 nm metal frames mostly show steps]")
    p.add_argument("--acceleration", type=float, default=200.0, help="simulated s per wall s [200]")
    p.add_argument("--ensemble-bundle", default=None,
                   help="also run the real monitor on this bundle (H:Si(100)), or 'default': each surface of "
                        "--surfaces on its shipped default bundle")
    p.add_argument("--ensemble-sessions", type=int, default=5)
    p.add_argument("--ensemble-pixels", type=int, default=DEMO_PIXELS, help=f"[{DEMO_PIXELS}, as the demo]")
    p.add_argument("--ensemble-frame-size", type=float, default=DEMO_FRAME_M,
                   help=f"frame side, m [{DEMO_FRAME_M:g}, as the demo]")
    p.add_argument("--ensemble-angle", type=float, default=DEMO_ANGLE_DEG,
                   help=f"scan angle of the real-monitor sessions, deg [{DEMO_ANGLE_DEG:g}, as the demo]")
    p.add_argument("--ensemble-only", action="store_true", help="skip the oracle sessions")
    p.add_argument("--ensemble-consecutive", type=int, default=3,
                   help="good frames in a row that stop a real-ensemble session [3, as the demo]")
    p.add_argument("--skip-policies", action="store_true",
                   help="skip the escalating-vs-random oracle sessions")
    p.add_argument("--early-abort", action="store_true", help="compare early abort on/off (issue 14)")
    p.add_argument("--abort-sessions", type=int, default=50)
    p.add_argument("--abort-acceleration", type=float, default=20.0)
    p.add_argument("--watch-every", type=int, default=4, help="lines between partial checks [4]")
    p.add_argument("--abort-ensemble-sessions", type=int, default=0,
                   help="also compare early abort with the real monitor on H:Si(100) "
                        "(--ensemble-bundle, default the shipped hsi100) [0: skip]")
    p.add_argument("--abort-arms", default="off,on",
                   help="arms of --abort-ensemble-sessions to run, comma list of off, on [off,on]")
    p.add_argument("--tip-changes", type=int, default=0,
                   help="simulated mid-frame tip changes (and as many clean frames) to watch [0: skip]")
    p.add_argument("--tip-change-bundle", default=None, help="bundle for --tip-changes [shipped hsi100]")
    p.add_argument("--tip-change-acceleration", type=float, default=20.0)
    p.add_argument("--tip-change-surface", default="hsi100", choices=sorted(TIP_CHANGE_APEX),
                   help="surface for --tip-changes (its shipped bundle unless --tip-change-bundle) [hsi100]")
    p.add_argument("--spectral", type=int, default=0,
                   help="issue 28: N sessions per surface and arm, image verdict alone vs image + "
                   "spectrum (Au/Cu only)")
    p.add_argument("--false-good-rate", type=float, default=0.3,
                   help="--spectral: probability that the image classifier calls a bad tip's frame good [0.3]")
    args = p.parse_args(argv)

    import logging

    from qcodes.dataset import initialise_or_create_database_at, load_or_create_experiment

    logging.getLogger("qcodes").setLevel(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="stmtip-bench-"))
    initialise_or_create_database_at(tmp / "bench.db")
    exp = load_or_create_experiment("conditioning_benchmark", sample_name="simulated")
    header = (f"{'surface':<8} {'policy':<11} {'n':>3} {'success':>8} {'med. actions':>13} "
              f"{'mean actions':>13} {'med. sim min':>13} {'med. frames':>12} {'wall s':>7}")
    if args.early_abort:
        early_abort_comparison(args.surfaces.split(","), args.abort_sessions, exp, pixels=args.pixels,
                               frame_m=args.frame_size, acceleration=args.abort_acceleration,
                               watch_every=args.watch_every)
    if args.abort_ensemble_sessions:
        ensemble_abort_comparison(args.abort_ensemble_sessions, args.ensemble_bundle, exp,
                                  pixels=args.ensemble_pixels, frame_m=args.ensemble_frame_size,
                                  angle_deg=args.ensemble_angle,
                                  consecutive=args.ensemble_consecutive,
                                  acceleration=args.abort_acceleration, watch_every=args.watch_every,
                                  arms=tuple({"off": False, "on": True}[a.strip()]
                                             for a in args.abort_arms.split(",")))
    if args.spectral:
        spectral_comparison([s for s in args.surfaces.split(",") if s != "hsi100"], args.spectral, exp,
                            pixels=args.pixels, frame_m=args.frame_size,
                            acceleration=args.acceleration, false_good_rate=args.false_good_rate)
    if args.tip_changes:
        tip_change_detection(args.tip_changes, args.tip_change_bundle, every=args.watch_every,
                             acceleration=args.tip_change_acceleration, surface=args.tip_change_surface)
    if args.skip_policies:
        return 0
    if not args.ensemble_only:
        print(f"classifier: ORACLE (simulator ground truth), {args.sessions} sessions per surface and "
              f"policy, {args.pixels}x{args.pixels} px frames of {args.frame_size * 1e9:.0f} nm, "
              f"time acceleration {args.acceleration:g}; simulated minutes", flush=True)
        print(header)
    results: dict[tuple[str, str], dict] = {}
    for surface in ([] if args.ensemble_only else args.surfaces.split(",")):
        for policy in ("escalating", "random"):
            t = time.perf_counter()
            rows = [run_session(surface, s, policy, exp, pixels=args.pixels, frame_m=args.frame_size,
                                acceleration=args.acceleration) for s in range(args.sessions)]
            s = summarise(rows)
            results[(surface, policy)] = s
            print(f"{surface:<8} {policy:<11} {s['n']:>3} {s['success']:>8.0%} {s['median_actions']:>13.1f} "
                  f"{s['mean_actions']:>13.2f} {s['median_minutes']:>13.1f} {s['median_frames']:>12.1f} "
                  f"{time.perf_counter() - t:>7.0f}  {s['failures'] or ''}", flush=True)
    if args.ensemble_bundle:
        from qcodes_stmtip.classify.bundle import default_bundle_path
        from qcodes_stmtip.demo import DEMO_FRAMES, DEMO_TARGET
        from qcodes_stmtip.taxonomy import SURFACE_STATE_ONSET_V

        surfaces = args.surfaces.split(",") if args.ensemble_bundle == "default" else ["hsi100"]
        print(f"\nclassifier: REAL ENSEMBLE (TipStateMonitor), {args.ensemble_sessions} sessions per surface and "
              f"policy, each surface's `stmtip demo` frames, target and (Au/Cu) spectroscopic check; a calibrated bundle stops on the "
              f"running P(bad tip), a vote-rule one on {args.ensemble_consecutive} good frames in a row (tip-change "
              f"flag at its calibrated threshold); 'truly good' = the simulator's tip is in the target at the "
              f"end; 'on good' = share of tip actions fired at a tip the simulator calls good")
        print(header + f" {'truly good':>10} {'stops on bad':>12} {'on good':>8} {'inconcl.':>8}")
        for surface in surfaces:
            bundle = str(default_bundle_path(surface)) if args.ensemble_bundle == "default" else args.ensemble_bundle
            size_m, pixels, angle = DEMO_FRAMES[surface]
            for policy in ("escalating", "random"):
                t = time.perf_counter()
                rows = [run_session(surface, 1000 + s, policy, exp, pixels=pixels, frame_m=size_m,
                                    angle_deg=angle, acceleration=50.0, bundle=bundle,
                                    consecutive=args.ensemble_consecutive,
                                    target_classes=DEMO_TARGET.get(surface), max_tip_change_probability=None,
                                    spectral=surface in SURFACE_STATE_ONSET_V)  # as stmtip demo
                        for s in range(args.ensemble_sessions)]
                s = summarise(rows)
                print(f"{surface:<8} {policy:<11} {s['n']:>3} {s['success']:>8.0%} {s['median_actions']:>13.1f} "
                      f"{s['mean_actions']:>13.2f} {s['median_minutes']:>13.1f} {s['median_frames']:>12.1f} "
                      f"{time.perf_counter() - t:>7.0f} {s['truly_good']:>10.0%} {s['stops_on_bad']:>12d} "
                      f"{s['actions_on_good']:>8.0%} {s['inconclusive']:>8d}  {s['failures'] or ''}", flush=True)
    if not results:
        return 0
    fewer = all(results[(surf, "escalating")]["median_actions"] <= results[(surf, "random")]["median_actions"]
                for surf in args.surfaces.split(","))
    rate = min(results[(surf, "escalating")]["success"] for surf in args.surfaces.split(","))
    print(f"\ngoal (>= 95 % success, fewer actions than random): success {rate:.0%}, "
          f"fewer actions: {'yes' if fewer else 'no'}; reference: ~12 attempts, 9.3 min "
          "(CNN loop on Si(111), real hardware)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
