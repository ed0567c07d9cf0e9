"""Report of one conditioning experiment: timeline, labelled frame gallery, summary, HTML page.

:func:`write_report` reads a run (and the runs it resumed) from the current QCoDeS
database and writes into ``out_dir``:

* ``run<ID>_timeline.png`` — the tip state of every frame against time, good frames
  green, bad red, inconclusive grey; every action drawn as a vertical line;
* ``run<ID>_gallery.png`` — the frames (line-flattened), each titled with its index,
  classified state and probability, and the action that preceded it;
* ``run<ID>_summary.json`` — outcome, actions by kind, time and actions to a good tip;
* ``run<ID>.html`` — one self-contained page: the summary, both PNGs embedded as
  base64 and the action table.

**Classifier against the truth.** When the run stored a ground truth per frame
(``frame_true_state``: the simulator's, written by the experiment when it is given one;
this module reads it from the dataset and never imports the simulator),
:func:`truth_agreement` compares good/bad verdicts: the classifier's is the frame's
``tip_quality`` (a flagged tip change is bad), the truth's is whether the true class is
one of the surface's good classes (:data:`~qcodes_stmtip.taxonomy.GOOD_CLASSES`).
Counted are the frames with a verdict (``good``, ``bad`` or ``uncertain``; an
``unclassified`` frame is left out) and a stored truth; an ``uncertain`` verdict never
agrees. The summary then holds the line ``classifier vs simulator truth (good/bad): K of N
frames agree``; every frame that does not agree is outlined in the gallery (red: the
classifier said the opposite, captioned e.g. ``classifier: good · truth: bad``; grey: it was
uncertain), ringed on the timeline and listed in a table of the page, and no frame whose
truth is bad is captioned green.

Matplotlib runs headless (Agg). Times in minutes of the experiment's clock.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qcodes_stmtip.conditioning.records import (
    ConditioningRun,
    FrameRecord,
    load_conditioning_run,
    load_frame_images,
)
from qcodes_stmtip.taxonomy import GOOD_CLASSES, FrameState, Quality

__all__ = ["FrameMark", "ReportFiles", "TruthAgreement", "frame_marks", "summarise", "summary_text",
           "truth_agreement", "write_report"]

#: Most frames shown in the gallery (first and last ones when there are more).
GALLERY_MAX = 24


@dataclass(frozen=True)
class ReportFiles:
    """Paths written by :func:`write_report`."""

    timeline: Path
    gallery: Path
    summary: Path
    html: Path
    data: dict[str, Any]


@dataclass(frozen=True)
class TruthAgreement:
    """Good/bad verdicts of the classifier against the stored truth (module doc).

    ``frames`` (N): frames with a verdict and a truth; ``agree`` (K): those whose verdict is
    the truth's; the rest are ``uncertain`` (never agreeing), ``called_good_truth_bad`` or
    ``called_bad_truth_good``, with their indexes in ``not_agreeing``.
    """

    agree: int
    frames: int
    uncertain: int
    called_good_truth_bad: int
    called_bad_truth_good: int
    not_agreeing: tuple[int, ...]

    @property
    def line(self) -> str:
        """``classifier vs simulator truth (good/bad): K of N frames agree``."""
        return f"classifier vs simulator truth (good/bad): {self.agree} of {self.frames} frames agree"

    @property
    def note(self) -> str:
        """How the line counts, with the split of the frames that do not agree."""
        return (f"  (N: frames with a good/bad/uncertain verdict; uncertain never agrees — "
                f"{self.uncertain} uncertain, {self.called_good_truth_bad} called good on a bad tip, "
                f"{self.called_bad_truth_good} called bad on a good tip)")

    def as_dict(self) -> dict[str, Any]:
        return {"agree": self.agree, "frames": self.frames, "uncertain": self.uncertain,
                "called_good_truth_bad": self.called_good_truth_bad,
                "called_bad_truth_good": self.called_bad_truth_good,
                "not_agreeing": list(self.not_agreeing), "line": self.line}


#: Classifier verdicts that count in the comparison (``unclassified`` does not).
_VERDICTS = (Quality.GOOD.value, Quality.BAD.value, Quality.UNCERTAIN.value)


def _verdict(frame: FrameRecord) -> str | None:
    """The classifier's good/bad/uncertain verdict of ``frame`` (None: not classified)."""
    if frame.quality in _VERDICTS:
        return str(frame.quality)
    if frame.state == FrameState.UNCERTAIN:
        return Quality.UNCERTAIN.value
    return None


def _truth_verdict(frame: FrameRecord, surface: str | None) -> str | None:
    """``"good"`` / ``"bad"`` of the stored true class of ``frame`` (None: no truth stored)."""
    if not frame.true_state or surface not in GOOD_CLASSES:
        return None
    return "good" if frame.true_state in GOOD_CLASSES[surface] else "bad"


def truth_agreement(run: ConditioningRun) -> TruthAgreement | None:
    """The classifier's good/bad verdicts against the stored truth; None if the run stored none."""
    surface = run.config.get("surface")
    agree = uncertain = good_on_bad = bad_on_good = 0
    counted: list[int] = []
    not_agreeing: list[int] = []
    for f in run.frames:
        verdict, truth = _verdict(f), _truth_verdict(f, surface)
        if verdict is None or truth is None:
            continue
        counted.append(f.index)
        if verdict == truth:
            agree += 1
            continue
        not_agreeing.append(f.index)
        if verdict == Quality.UNCERTAIN:
            uncertain += 1
        elif verdict == "good":
            good_on_bad += 1
        else:
            bad_on_good += 1
    if not counted:
        return None
    return TruthAgreement(agree, len(counted), uncertain, good_on_bad, bad_on_good, tuple(not_agreeing))


def summarise(run: ConditioningRun) -> dict[str, Any]:
    """The summary numbers of ``run`` (what ``run<ID>_summary.json`` holds)."""
    done = [a for a in run.actions if a.status == "done"]
    tip = [a for a in done if a.action.touches_tip]
    kinds = Counter(a.action.describe() for a in tip)
    outcome = run.outcome or {"outcome": "unfinished (crashed or still running)", "reason": ""}
    good_frames = [f for f in run.frames if f.quality == "good"]
    return {
        "run_ids": run.run_ids,
        "surface": run.config.get("surface"),
        "policy": run.config.get("policy", {}).get("name"),
        "classifier": run.config.get("classifier", {}),
        "clock": run.config.get("clock", "wall"),
        "outcome": outcome.get("outcome"),
        "reason": outcome.get("reason", ""),
        "frames": len(run.frames),
        "tip_actions": len(tip),
        "pulses": sum(a.action.kind == "pulse" for a in tip),
        "indentations": sum(a.action.kind == "indent" for a in tip),
        "moves": sum(a.action.kind == "move" for a in done),
        "refused": [a.status for a in run.actions if a.refused],
        "actions_by_kind": dict(kinds),
        "time_to_good_s": outcome.get("time_to_good_s"),
        "elapsed_s": max([f.elapsed_s for f in run.frames] + [0.0]),
        "first_state": run.frames[0].state if run.frames else None,
        "final_state": run.frames[-1].state if run.frames else None,
        "good_frames": len(good_frames),
        "indentation_sites_m": [[a.action.x_m, a.action.y_m] for a in tip if a.action.kind == "indent"],
        "stopped_frames": sum(f.stopped for f in run.frames),
        "early_abort": bool(run.config.get("early_abort", False)),
        "truth_agreement": None if (agreement := truth_agreement(run)) is None else agreement.as_dict(),
    }


def summary_text(summary: dict[str, Any]) -> str:
    """One screen of text for ``summary``."""
    ttg = summary["time_to_good_s"]
    unit = "simulated " if summary["clock"] == "simulated" else ""
    lines = [
        f"runs {', '.join(map(str, summary['run_ids']))}: {summary['surface']}, policy "
        f"{summary['policy']}, classifier {summary['classifier'].get('inference_path') or summary['classifier'].get('type')}",
        f"outcome: {summary['outcome']} — {summary['reason']}",
        f"frames: {summary['frames']} ({summary['good_frames']} good); tip actions: "
        f"{summary['tip_actions']} ({summary['pulses']} pulses, {summary['indentations']} "
        f"indentations); area moves: {summary['moves']}",
        (f"tip state: {summary['first_state']} → {summary['final_state']}"
         if summary["first_state"] != summary["final_state"]
         else f"tip state: {summary['first_state']} in the first and the last frame"),
        "time to a good tip: " + (f"{ttg / 60:.1f} {unit}min" if ttg is not None else "not reached"),
    ]
    if summary.get("early_abort"):
        lines.append(f"early abort: {summary.get('stopped_frames', 0)} scans stopped on a partial verdict")
    if summary["actions_by_kind"]:
        lines.append("actions: " + ", ".join(f"{k} ×{n}" for k, n in summary["actions_by_kind"].items()))
    for refusal in summary["refused"]:
        lines.append(f"REFUSED: {refusal}")
    agreement = summary.get("truth_agreement")
    if agreement:
        counts = TruthAgreement(**{k: (tuple(v) if k == "not_agreeing" else v)
                                   for k, v in agreement.items() if k != "line"})
        lines += [counts.line, counts.note]
    return "\n".join(lines)


def _state_order(run: ConditioningRun) -> list[str]:
    from qcodes_stmtip.taxonomy import CLASSES

    surface = run.config.get("surface")
    classes = list(CLASSES.get(surface, ()))
    extra = sorted({f.state for f in run.frames} - set(classes))
    return classes + extra


#: States and qualities drawn grey: the frame said nothing about the tip.
_VAGUE = tuple(FrameState)


def _colour(quality: str, state: str, target: set[str], truth: str | None = None) -> str:
    """Green for a target state (never when ``truth`` says bad), grey when vague, else red."""
    if state in target and truth != "bad":
        return "tab:green"
    if quality in _VAGUE or state in _VAGUE:
        return "tab:gray"
    return "tab:red"


@dataclass(frozen=True)
class FrameMark:
    """How the report draws one frame: title colour, outline (None: agrees or no truth) and
    the caption naming both verdicts when they do not agree (with a truth, it also says when a
    flagged tip change made the verdict bad)."""

    index: int
    colour: str
    outline: str | None
    verdict: str | None
    truth: str | None
    caption: str


#: Outline of a frame whose classifier verdict is the opposite of the truth / uncertain.
DISAGREE_COLOUR = "tab:red"
UNCERTAIN_COLOUR = "0.45"


def frame_marks(run: ConditioningRun) -> dict[int, FrameMark]:
    """``frame_index → FrameMark`` for every frame of ``run`` (module doc)."""
    surface = run.config.get("surface")
    target = set(run.config.get("target", {}).get("classes", []))
    good = GOOD_CLASSES.get(surface, frozenset())
    out: dict[int, FrameMark] = {}
    for f in run.frames:
        verdict, truth = _verdict(f), _truth_verdict(f, surface)
        outline = None
        colour = _colour(f.quality, f.state, target, truth)
        # bad although the state is a good class or uncertain: the tip-change flag decided it
        flagged = verdict == "bad" and (f.state == FrameState.UNCERTAIN or f.state in good)
        lines = ["tip change flagged → bad"] if flagged and truth is not None else []
        if verdict is not None and truth is not None and verdict != truth:
            outline = UNCERTAIN_COLOUR if verdict == Quality.UNCERTAIN else DISAGREE_COLOUR
            colour = "tab:gray" if verdict == Quality.UNCERTAIN else DISAGREE_COLOUR
            lines.append(f"classifier: {verdict} · truth: {truth}")
        caption = "\n".join(lines)
        out[f.index] = FrameMark(f.index, colour, outline, verdict, truth, caption)
    return out


def plot_timeline(run: ConditioningRun, path: Path) -> Path:
    """Tip state per frame against time, actions as vertical lines; saves a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    states = _state_order(run)
    fig, ax = plt.subplots(figsize=(10, 3.2 + 0.25 * len(states)), dpi=100)
    t = np.array([f.elapsed_s / 60 for f in run.frames])
    y = np.array([states.index(f.state) for f in run.frames])
    marks = frame_marks(run)
    colours = [marks[f.index].colour for f in run.frames]
    if len(t):
        ax.plot(t, y, color="0.75", lw=1, zorder=1)
        ax.scatter(t, y, c=colours, s=40, zorder=3, edgecolors="k", linewidths=0.5)
        ringed = [k for k, f in enumerate(run.frames) if marks[f.index].outline]
        if ringed:
            ax.scatter(t[ringed], y[ringed], s=160, facecolors="none", zorder=4, linewidths=1.5,
                       edgecolors=[marks[run.frames[k].index].outline for k in ringed],
                       label="classifier ≠ truth")
    styles = {"pulse": ("tab:orange", "-"), "indent": ("tab:purple", "-"), "move": ("tab:blue", "--")}
    seen: set[str] = set()
    for a in run.actions:
        if a.action.kind not in styles:
            continue
        colour, ls = styles[a.action.kind]
        label = a.action.kind if a.action.kind not in seen else None
        seen.add(a.action.kind)
        alpha = 0.3 if a.refused else 0.8
        ax.axvline(a.elapsed_s / 60, color=colour, ls=ls, lw=1, alpha=alpha, label=label, zorder=2)
        if a.refused:
            ax.annotate("refused", (a.elapsed_s / 60, len(states) - 0.5), color="k", fontsize=8)
    ax.set_yticks(range(len(states)), states)
    ax.set_ylim(-0.5, len(states) - 0.5)
    clock = "simulated " if run.config.get("clock") == "simulated" else ""
    ax.set_xlabel(f"time since start ({clock}min)")
    outcome = (run.outcome or {}).get("outcome", "unfinished")
    ax.set_title(f"Tip conditioning, run {', '.join(map(str, run.run_ids))}: "
                 f"{run.config.get('surface')}, {run.config.get('policy', {}).get('name')} → {outcome}")
    if seen or any(m.outline for m in marks.values()):
        ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_gallery(run: ConditioningRun, images: dict[int, np.ndarray], path: Path) -> Path:
    """The frames, each titled with state, probability and the preceding action; saves a PNG.

    Titles are 9 pt and sit above their own image (constrained layout); a scale bar shows
    the run's ``frame_size_m`` when the configuration records it.
    """
    from qcodes_stmtip.monitor.plot import draw_frames

    frames = run.frames
    if len(frames) > GALLERY_MAX:
        half = GALLERY_MAX // 2
        frames = frames[:half] + frames[-half:]
    actions = {a.index: a for a in run.actions}
    marks = frame_marks(run)
    size = run.config.get("frame_size_m")
    titles, colours, outlines = [], [], []
    for f in frames:
        before = actions.get(f.after_action)
        act = before.action.describe() if before is not None else "start"
        p = "" if math.isnan(f.confidence) else f" {f.confidence:.2f}"
        mark = marks[f.index]
        truth = f"\ntrue: {f.true_state}" if f.true_state else ""
        caption = f"\n{mark.caption}" if mark.caption else ""
        stopped = f"\nstopped at line {f.decided_line}: {f.verdict}" if f.stopped else ""
        judged = f" · {f.frame_verdict}" if f.frame_verdict else ""
        titles.append(f"#{f.index} {f.state}{p}{judged}\nafter: {act}{truth}{caption}{stopped}")
        colours.append(mark.colour)
        outlines.append(mark.outline)
    shown = f"{len(frames)} of {len(run.frames)} frames" if len(frames) < len(run.frames) else "Frames"
    fig = draw_frames([images.get(f.index) for f in frames], titles, colours=colours, outlines=outlines,
                      widths_m=[float(size) if size else None] * len(frames),
                      suptitle=f"{shown} of run {', '.join(map(str, run.run_ids))} "
                               "(state, probability, preceding action)")
    fig.savefig(path)
    return path


def _html(run: ConditioningRun, summary: dict[str, Any], timeline: Path, gallery: Path) -> str:
    def embed(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode("ascii")

    rows = "\n".join(
        f"<tr><td>{a.index}</td><td>{a.elapsed_s / 60:.2f}</td><td>{html.escape(a.action.describe())}</td>"
        f"<td>{'' if a.action.x_m is None else f'{a.action.x_m * 1e9:.0f}, {a.action.y_m * 1e9:.0f}'}</td>"
        f"<td>{a.area}</td><td>{html.escape(a.state_before)}</td><td>{html.escape(a.state_after)}</td>"
        f"<td>{html.escape(a.status)}</td><td>{html.escape(a.action.reason)}</td></tr>"
        for a in run.actions if a.action.kind != "rescan")
    title = f"Tip conditioning run {', '.join(map(str, run.run_ids))}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:1em auto}}
table{{border-collapse:collapse;font-size:0.85em}}td,th{{border:1px solid #ccc;padding:2px 6px}}
img{{max-width:100%}}pre{{background:#f4f4f4;padding:0.5em}}
tr.disagree td{{color:#b00}}tr.uncertain td{{color:#666}}</style></head><body>
<h1>{html.escape(title)}</h1>
<pre>{html.escape(summary_text(summary))}</pre>
<h2>Timeline</h2><img alt="tip-state timeline" src="data:image/png;base64,{embed(timeline)}">
<h2>Frames</h2><img alt="frame gallery" src="data:image/png;base64,{embed(gallery)}">
{_truth_html(run)}<h2>Actions</h2><table><tr><th>#</th><th>t (min)</th><th>action</th><th>site (nm)</th><th>area</th>
<th>state before</th><th>state after</th><th>status</th><th>why</th></tr>
{rows}
</table>
<h2>Configuration</h2><pre>{html.escape(json.dumps(run.config, indent=1, default=str, ensure_ascii=False))}</pre>
</body></html>
"""


def _truth_html(run: ConditioningRun) -> str:
    """The page's section on classifier against truth: the line and every frame not agreeing."""
    agreement = truth_agreement(run)
    if agreement is None:
        return ""
    marks = frame_marks(run)
    frames = {f.index: f for f in run.frames}
    rows = "\n".join(
        f'<tr class="{"uncertain" if marks[i].verdict == Quality.UNCERTAIN else "disagree"}"><td>{i}</td>'
        f"<td>{html.escape(frames[i].state)}</td><td>{html.escape(str(marks[i].verdict))}</td>"
        f"<td>{html.escape(frames[i].frame_verdict)}</td><td>{html.escape(frames[i].reason)}</td>"
        f"<td>{html.escape(frames[i].true_state)}</td><td>{html.escape(str(marks[i].truth))}</td></tr>"
        for i in agreement.not_agreeing)
    table = (f"<table><tr><th>frame</th><th>classifier</th><th>verdict</th><th>loop</th><th>why</th>"
             f"<th>true state</th>"
             f"<th>truth</th></tr>\n{rows}\n</table>" if rows else "<p>Every counted frame agrees.</p>")
    return f"""<h2 id="truth">Classifier vs simulator truth</h2>
<p><strong>{html.escape(agreement.line)}</strong></p>
<p>Good/bad: the classifier's verdict (<code>tip_quality</code>; a flagged tip change is bad) against the
true class stored with the frame (<code>frame_true_state</code>). N counts every frame with a verdict
(good, bad or uncertain) and a truth; an <em>uncertain</em> verdict never agrees ({agreement.uncertain}
of them). The frames below do not agree: outlined in the gallery and ringed on the timeline
(red: the opposite verdict, {agreement.called_good_truth_bad} called good on a bad tip and
{agreement.called_bad_truth_good} bad on a good one; grey: uncertain).</p>
{table}
"""


def write_report(run_id: int, out_dir: str | Path) -> ReportFiles:
    """Write the timeline, gallery, summary and HTML page of experiment ``run_id`` to ``out_dir``.

    Reads the current QCoDeS database; creates ``out_dir``. Raises ``ValueError`` if the
    run is not a conditioning experiment.
    """
    run = load_conditioning_run(run_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"run{run.run_id}"
    timeline = plot_timeline(run, out / f"{stem}_timeline.png")
    gallery = plot_gallery(run, load_frame_images(run), out / f"{stem}_gallery.png")
    summary = summarise(run)
    summary_path = out / f"{stem}_summary.json"
    summary_path.write_text(json.dumps(summary, indent=1, default=str, ensure_ascii=False),
                            encoding="utf-8")
    page = out / f"{stem}.html"
    page.write_text(_html(run, summary, timeline, gallery), encoding="utf-8")
    return ReportFiles(timeline, gallery, summary_path, page, summary)
