"""Mutation testing of the code where a silent bug costs a tip, a sample or a wrong verdict.

``make mutants`` runs this (not part of ``make test``; docs/decisions/0005-mutation-testing.md).
For each module in :data:`MODULES`, one at a time, it copies the package and the tests into
``build/mutants/<module>/`` (the checkout itself is never mutated: others may be running its
tests), runs mutmut there on that module's functions with only that module's fast tests, and
reports killed / mutants. Surviving mutants judged equivalent (:data:`EQUIVALENT`, one line
each) are left out of the score; every other survivor is printed with its diff. Then each
hand-written mutation of issue 29 (:data:`NAMED`) is applied to a fresh copy and the test
named for it must fail.

Usage: ``python tools/mutants.py [MODULE ...] [--named-only] [--max-children N]``; with
``STMTIP_MUTANTS_REV=HEAD`` it mutates that commit instead of the work tree.
Exit status 1 when a module scores below :data:`GOAL` or a named mutation survives.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "mutants"
#: Least share of non-equivalent mutants that the tests must kill, per module.
GOAL = 0.90
#: Survivors per module printed with their diff (each costs a mutmut start).
DIFFS = 30
PKG = "qcodes_stmtip"


@dataclass(frozen=True)
class Module:
    """One mutation run: the file, which of its functions (mutmut name globs), which tests."""

    path: str
    functions: tuple[str, ...]
    tests: tuple[str, ...]


def _names(module: str, *functions: str) -> tuple[str, ...]:
    """mutmut's mutant-name globs for ``functions`` (``f`` or ``Class.method``) of ``module``."""
    out = []
    for f in functions:
        if "." in f:
            cls, meth = f.split(".")
            out.append(f"{module}.xǁ{cls}ǁ{meth}__mutmut_*")
        else:
            out.append(f"{module}.x_{f}__mutmut_*")
    return tuple(out)


MODULES: dict[str, Module] = {
    "safety": Module(f"{PKG}/safety.py", (f"{PKG}.safety.*",), ("tests/test_safety.py",)),
    "envelope": Module(f"{PKG}/conditioning/envelope.py", (f"{PKG}.conditioning.envelope.*",),
                       ("tests/conditioning/test_envelope.py",)),
    # the judge of one frame (fast tests without the simulator)
    "judge": Module(
        f"{PKG}/conditioning/experiment.py",
        _names(f"{PKG}.conditioning.experiment", "Target.__post_init__", "Target.judge"),
        ("tests/conditioning/test_experiment.py", "-k",
         "target_judges or target_fields or judge or off_target")),
    # the stop rule: its tests run the loop on the simulated microscope (seconds each), so this
    # run takes about half an hour; the rest of the loop is I/O, covered by slower tests
    "stop_rule": Module(
        f"{PKG}/conditioning/experiment.py",
        _names(f"{PKG}.conditioning.experiment", "ConditioningExperiment._loop"),
        ("tests/conditioning/test_experiment.py", "-k",
         "stop_rule or bad_frames_without or content_frames or dry_run or inconclusive "
         "or echoes or off_target_frame or max_rescans_times")),
    "policy": Module(f"{PKG}/conditioning/policy.py", (f"{PKG}.conditioning.policy.*",),
                     ("tests/conditioning/test_policy.py", "tests/conditioning/test_action_tags.py")),
    # the decision: vote, thresholds, the good/bad/uncertain collapse and the verdict reasons
    "ensemble": Module(
        f"{PKG}/classify/ensemble.py",
        _names(f"{PKG}.classify.ensemble", "majority_vote", "collapse_good_bad", "verdict_reasons",
               "Ensemble.vote", "Ensemble.good_bad"),
        ("tests/classify/test_ensemble.py",)),
    # result mapping (batch slots), collection and the durable writes
    "monitor": Module(
        f"{PKG}/monitor/monitor.py",
        _names(f"{PKG}.monitor.monitor", "TipStateMonitor._classify", "TipStateMonitor._collect",
               "TipStateMonitor._write", "TipStateMonitor.flush"),
        ("tests/monitor/test_result_mapping.py",)),
    # the reading side of the wire format, where the controller's bytes are untrusted: headers,
    # sizes, values, error sections (the hypothesis fuzzers are left out: minutes per mutant)
    "protocol": Module(
        f"{PKG}/nanonis/protocol.py",
        _names(f"{PKG}.nanonis.protocol", "_decode_text", "_need", "_length", "decode_value",
               "decode_fields", "check_body_size", "_decode_name", "decode_command_name",
               "_decode_size", "_check_header_len", "decode_request_header",
               "decode_response_header", "decode_error_section", "decode_request_body",
               "decode_response_body"),
        ("tests/nanonis/test_protocol.py", "-k",
         "not fuzz and not round_trip and not fit_the_limits")),
}

#: Surviving mutants judged equivalent (no behaviour of the module changes), one line each.
_FINITE_DEAD = "dead branch: float() of a float subclass returns an exact float in CPython 3.12"
_STEPS_DEAD = "dead branch: int() of an int subclass returns an exact int in CPython 3.12"
_MIRROR = ("corner x and y are checked per axis over all four (±w/2, ±h/2) corners: this sign "
           "flip mirrors the corner set and leaves each axis's set of values unchanged")
_TUPLE = "from_mapping's tuple() is redundant: __post_init__ makes every scan area a (low, high) tuple"
EQUIVALENT: dict[str, str] = {
    **{f"{PKG}.safety.x__finite__mutmut_{n}": _FINITE_DEAD for n in (19, 20, 21, 22)},
    **{f"{PKG}.safety.xǁSafetyEnvelopeǁcheck_motor_steps__mutmut_{n}": _STEPS_DEAD
       for n in (15, 16, 17, 18)},
    **{f"{PKG}.safety.xǁSafetyEnvelopeǁcheck_frame__mutmut_{n}": _MIRROR for n in (34, 44, 45, 49, 50)},
    **{f"{PKG}.safety.xǁSafetyEnvelopeǁfrom_mapping__mutmut_{n}": _TUPLE for n in (11, 12, 13, 14)},
    **{f"{PKG}.classify.ensemble.x_collapse_good_bad__mutmut_{n}":
       "decision dtype dropped: integer-valued decisions compare equal to the class indexes and "
       "UNCERTAIN in any numeric dtype" for n in (10, 12)},
    **{f"{PKG}.classify.ensemble.x_majority_vote__mutmut_{n}":
       "thresholds dtype dropped: numeric thresholds compare the same as float64 ones"
       for n in (24, 26)},
    **{f"{PKG}.classify.ensemble.x_majority_vote__mutmut_{n}":
       "class_weights dtype dropped: numeric weights multiply, compare and check the same"
       for n in (35, 37)},
    **{f"{PKG}.conditioning.policy.xǁRandomPolicyǁchoose__mutmut_{n}":
       "< vs <= at u == a probability boundary: a continuous draw hits it with probability 0"
       for n in (4, 8)},
    **{f"{PKG}.classify.ensemble.x_verdict_reasons__mutmut_{n}":
       "thresholds dtype dropped: numeric thresholds compare and format the same" for n in (4, 6)},
    **{f"{PKG}.classify.ensemble.x_verdict_reasons__mutmut_{n}":
       "zip strict dropped: decision and vote_class come from one majority_vote, equally long"
       for n in (12, 15, 16)},
    f"{PKG}.classify.ensemble.xǁEnsembleǁgood_bad__mutmut_1":
        "flag '' without a tip-change network: a 0-d False mask marks no frame, as None does",
    **{f"{PKG}.monitor.monitor.xǁTipStateMonitorǁflush__mutmut_{n}":
       "the timeout of a non-blocking _collect (block_for=None) is never read" for n in (1, 4)},
    f"{PKG}.monitor.monitor.xǁTipStateMonitorǁ_collect__mutmut_2":
        "flush would wait up to 1 ms for a first result: the same results, only later (timing only)",
    f"{PKG}.monitor.monitor.xǁTipStateMonitorǁ_collect__mutmut_9":
        "a blocking wait of at least 1 s instead of 1 ms per call: the same results, only later "
        "(timing only; tests do not assert wall-clock bounds)",
}

#: The mutations of issue 29 that the suite missed: (name, file, code, mutated code, test).
NAMED: list[tuple[str, str, str, str, str]] = [
    ("abs() dropped from the setpoint-current check", f"{PKG}/safety.py",
     "if abs(value) > self.max_setpoint_current_A:", "if value > self.max_setpoint_current_A:",
     "tests/test_safety.py::test_named_negative_requests_never_pass"),
    ("abs() dropped from the pulse-amplitude check", f"{PKG}/safety.py",
     "if abs(amplitude) > self.max_pulse_amplitude_V:", "if amplitude > self.max_pulse_amplitude_V:",
     "tests/test_safety.py::test_named_negative_requests_never_pass"),
    ("abs() dropped from the z-position check", f"{PKG}/safety.py",
     "if abs(value) > self.max_z_m:", "if value > self.max_z_m:",
     "tests/test_safety.py::test_named_negative_requests_never_pass"),
    ("a bad frame does not reset the good streak", f"{PKG}/conditioning/experiment.py",
     'if verdict in ("bad", "off_target"):\n                streak = 0',
     'if verdict in ("bad", "off_target"):\n                pass',
     "tests/conditioning/test_experiment.py::"
     "test_stop_rule_counts_target_consecutive_good_frames_and_a_bad_frame_resets_it"),
    ("stop after 2 good frames, ignoring Target.consecutive", f"{PKG}/conditioning/experiment.py",
     "if streak >= self.target.consecutive:", "if streak >= 2:",
     "tests/conditioning/test_experiment.py::"
     "test_stop_rule_counts_target_consecutive_good_frames_and_a_bad_frame_resets_it"),
    ("uncertain overrides a flagged tip change", f"{PKG}/classify/ensemble.py",
     '    out[d == UNCERTAIN] = "uncertain"\n'
     "    if tip_change is not None:\n"
     '        out[np.asarray(tip_change, dtype=bool)] = "bad"\n',
     "    if tip_change is not None:\n"
     '        out[np.asarray(tip_change, dtype=bool)] = "bad"\n'
     '    out[d == UNCERTAIN] = "uncertain"\n',
     "tests/classify/test_ensemble.py::"
     "test_a_flagged_tip_change_is_bad_even_when_the_class_decision_is_uncertain"),
    ("a result taken from the wrong batch slot", f"{PKG}/monitor/monitor.py",
     "d = int(pred.decision[n])", "d = int(pred.decision[pos])",
     "tests/monitor/test_result_mapping.py::"
     "test_a_batch_whose_early_frame_fails_preprocessing_maps_each_result_to_its_frame"),
    ("a result taken from the wrong batch slot (Keras monitor)", f"{PKG}/monitor/monitor.py",
     "d = int(pred.decision[n])", "d = int(pred.decision[pos])",
     "tests/monitor/test_monitor.py::"
     "test_a_batch_whose_early_frame_fails_preprocessing_maps_each_result_to_its_frame"),
]


def _copy_tree(dest: Path) -> None:
    """The package, the tests and pyproject.toml into ``dest`` (no caches, no build output):
    from the work tree, or with ``STMTIP_MUTANTS_REV`` set from that commit (``git archive``)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    rev = os.environ.get("STMTIP_MUTANTS_REV")
    if rev:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, PKG, "tests",
                                  "pyproject.toml"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    shutil.copytree(ROOT / PKG, dest / PKG, ignore=ignore)
    shutil.copytree(ROOT / "tests", dest / "tests", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _toml_list(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in items) + "]"


def _env(dest: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(dest)  # the copy, never the checkout (the editable finder comes last)
    env.pop("CI", None)  # the mutation runs use no ../shared data
    return env


def _mutmut(dest: Path, *args: str, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=dest, env=_env(dest),
                          capture_output=capture, text=True)


def run_module(name: str, mod: Module, max_children: int) -> dict:
    """Run mutmut on one module in its scratch copy; return its counts and survivors."""
    dest = WORK / name
    _copy_tree(dest)
    with open(dest / "pyproject.toml", "a", encoding="utf-8") as f:
        f.write(f"\n[tool.mutmut]\nsource_paths = [\"{PKG}\"]\n"
                f"only_mutate = {_toml_list([mod.path])}\n"
                f"pytest_add_cli_args_test_selection = {_toml_list(mod.tests)}\n"
                "pytest_add_cli_args = [\"-p\", \"no:cacheprovider\", \"-q\"]\n")
    t0 = time.monotonic()
    log = dest / "mutmut-run.log"
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children",
                               str(max_children), *mod.functions], cwd=dest, env=_env(dest),
                              stdout=out, stderr=subprocess.STDOUT, text=True)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        return {"error": f"mutmut run exited {proc.returncode}; see {log}:\n{tail}"}
    listing = _mutmut(dest, "results", "--all", "true").stdout
    status: dict[str, str] = {}
    for line in listing.splitlines():
        m = re.match(r"\s*(\S+): (.+)$", line)
        if m and any(fnmatch.fnmatch(m.group(1), g) for g in mod.functions):
            status[m.group(1)] = m.group(2).strip()
    counted = {k: v for k, v in status.items() if v not in ("skipped", "not checked")}
    killed = [k for k, v in counted.items() if v in ("killed", "timeout", "caught by type check")]
    survivors = sorted((k for k in counted if k not in killed), key=_natural)
    equivalent = [k for k in survivors if k in EQUIVALENT]
    live = [k for k in survivors if k not in EQUIVALENT]
    stale = [k for k in EQUIVALENT if any(fnmatch.fnmatch(k, g) for g in mod.functions)
             and counted.get(k, "gone") not in ("survived", "no tests")]
    # a diff costs a mutmut start (seconds): the first DIFFS survivors get one, the rest a name
    diffs = {k: _mutmut(dest, "show", k).stdout if n < DIFFS else
             f"(see: cd {dest} && python -m mutmut show {k})\n" for n, k in enumerate(live)}
    (dest / "survivors.txt").write_text(
        "".join(f"{k} ({counted[k]})\n{diffs[k]}\n" for k in live), encoding="utf-8")
    scored = len(counted) - len(equivalent)
    return {"mutants": len(counted), "killed": len(killed), "equivalent": equivalent,
            "survivors": live, "diffs": diffs, "status": counted, "stale": stale,
            "score": len(killed) / scored if scored else 1.0,
            "not_checked": sum(v == "not checked" for v in status.values()), "seconds": seconds}


def _natural(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def run_named() -> list[tuple[str, str, str]]:
    """Apply each named mutation to a fresh copy; its test must fail. Returns (name, test, verdict)."""
    out = []
    dest = WORK / "_named"
    for title, path, code, mutated, test in NAMED:
        _copy_tree(dest)
        target = dest / path
        text = target.read_text(encoding="utf-8")
        if text.count(code) != 1:
            out.append((title, test, "NOT APPLIED: the code it mutates has changed; update NAMED"))
            continue
        target.write_text(text.replace(code, mutated), encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                               test], cwd=dest, env=_env(dest), capture_output=True, text=True)
        verdict = {1: "killed", 0: "SURVIVED"}.get(proc.returncode,
                                                   f"ERROR (pytest exit {proc.returncode})")
        if proc.returncode not in (0, 1):
            verdict += ": " + proc.stdout[-500:]
        out.append((title, test, verdict))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", metavar="MODULE",
                    help=f"which of {', '.join(MODULES)} (default: all, one after another)")
    ap.add_argument("--named-only", action="store_true", help="only the named mutations")
    ap.add_argument("--no-named", action="store_true", help="skip the named mutations")
    ap.add_argument("--max-children", type=int, default=2, help="mutants tested at once (2)")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        ap.error(f"unknown module(s) {unknown}; known: {', '.join(MODULES)}")
    ok = True
    if not args.named_only:
        rows = []
        for name in args.modules or list(MODULES):
            mod = MODULES[name]
            print(f"== {name}: {mod.path} [{' '.join(mod.tests)}]", flush=True)
            res = run_module(name, mod, args.max_children)
            if "error" in res:
                print(res["error"])
                ok = False
                continue
            for k in res["survivors"]:
                print(f"-- survived ({res['status'][k]}): {k}\n{res['diffs'][k]}")
            for k in res["equivalent"]:
                print(f"-- equivalent: {k}: {EQUIVALENT[k]}")
            for k in res["stale"]:
                print(f"-- listed as equivalent but {res['status'].get(k, 'gone')}: {k} "
                      "(its function changed: re-check EQUIVALENT)")
            rows.append((name, res))
            ok &= res["score"] >= GOAL
        print("\n| module | mutants | killed | equivalent | survived | score | minutes |")
        print("|---|---|---|---|---|---|---|")
        for name, r in rows:
            print(f"| {name} | {r['mutants']} | {r['killed']} | {len(r['equivalent'])} | "
                  f"{len(r['survivors'])} | {100 * r['score']:.1f} % | {r['seconds'] / 60:.1f} |")
    if not args.no_named:
        print("\n| named mutation | test | result |\n|---|---|---|")
        for title, test, verdict in run_named():
            print(f"| {title} | `{test.split('::')[-1]}` | {verdict} |")
            ok &= verdict == "killed"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
