"""Draw the frames of a run, each titled with its tip state (and the truth when stored).

:func:`plot_frames` takes a QCoDeS dataset (or its xarray form) recorded with the
monitor and returns one matplotlib figure: a grid of line-flattened frames, row 0 at the
bottom, each titled ``#<frame_index> <tip_state> <probability>`` (and ``true: <state>``
when the run holds ``frame_true_state``), coloured by quality (good green, bad red,
inconclusive grey), with a scale bar when the frame width is stored. :func:`draw_frames`
is the drawing part, shared with the conditioning report's gallery.

Matplotlib is imported when a function is called; no pyplot state is touched (the figure
is a plain :class:`~matplotlib.figure.Figure`, saved through the Agg canvas).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qcodes_stmtip.imaging import flatten_lines

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["QUALITY_COLOURS", "draw_frames", "plot_frames", "scale_bar_length"]

#: Title colour per ``tip_quality``; anything else is grey.
QUALITY_COLOURS = {"good": "tab:green", "bad": "tab:red"}
#: Title font size, points (≥ 12 px at the default 100 dpi).
TITLE_SIZE = 9


def scale_bar_length(width_m: float) -> float:
    """A 1-2-5 length (m) near a quarter of ``width_m``, for a scale bar."""
    if not (math.isfinite(width_m) and width_m > 0):
        raise ValueError(f"width_m must be a finite length > 0, got {width_m!r}")
    target = width_m / 4
    exponent = math.floor(math.log10(target))
    for step in (5, 2, 1):
        length = step * 10.0**exponent
        if length <= target * 1.0001:
            return length
    return 10.0**exponent  # pragma: no cover - the loop always returns


def _length_label(length_m: float) -> str:
    for unit, scale in (("µm", 1e-6), ("nm", 1e-9), ("pm", 1e-12)):
        if length_m >= scale * 0.999:
            return f"{length_m / scale:g} {unit}"
    return f"{length_m:g} m"


def draw_frames(
    images: Sequence[np.ndarray | None],
    titles: Sequence[str],
    *,
    colours: Sequence[str] | None = None,
    outlines: Sequence[str | None] | None = None,
    widths_m: Sequence[float | None] | None = None,
    columns: int = 6,
    suptitle: str | None = None,
    path: str | Path | None = None,
) -> Figure:
    """A grid of frames (line-flattened, 1–99 % contrast, row 0 at the bottom) with titles.

    ``widths_m`` (m, per frame, ``None``/NaN for unknown) adds a scale bar; ``outlines``
    (a colour per frame, ``None`` for none) draws a thick frame around the image (the
    conditioning report marks frames where the classifier and the truth disagree). Saves a
    PNG to ``path`` if given. Returns the figure.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(titles) != len(images):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be an integer >= 1, got {columns!r}")
    if outlines is not None and len(outlines) != len(images):
        raise ValueError(f"{len(images)} images but {len(outlines)} outlines")
    n = max(1, len(images))
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    lines_per_title = max((t.count("\n") + 1 for t in titles), default=1)
    title_h = 0.2 * lines_per_title  # inches
    fig = Figure(figsize=(2.4 * cols, (2.4 + title_h) * rows + (0.4 if suptitle else 0.0)),
                 dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for k, (ax, image, title) in enumerate(zip(axes, images, titles, strict=False)):
        colour = colours[k] if colours is not None else "k"
        ax.set_title(title, fontsize=TITLE_SIZE, color=colour)
        if outlines is not None and outlines[k]:
            _outline(ax, outlines[k])
        if image is None:
            continue
        shown = flatten_lines(np.asarray(image, dtype=np.float64), nonfinite="ignore")
        finite = shown[np.isfinite(shown)]
        lo, hi = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
        ax.imshow(shown, origin="lower", cmap="afmhot", vmin=lo, vmax=hi if hi > lo else lo + 1e-12,
                  interpolation="nearest")
        width = widths_m[k] if widths_m is not None else None
        if width is not None and math.isfinite(width) and width > 0:
            _scale_bar(ax, shown.shape[1], float(width))
    if suptitle:
        fig.suptitle(suptitle, fontsize=TITLE_SIZE + 1)
    if path is not None:
        fig.savefig(path)
    return fig


def _outline(ax: Any, colour: str) -> None:
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((0.0, 0.0), 1.0, 1.0, transform=ax.transAxes, fill=False, edgecolor=colour,
                           linewidth=4, clip_on=False, zorder=5, gid="outline"))


def _scale_bar(ax: Any, pixels: int, width_m: float) -> None:
    length = scale_bar_length(width_m)
    bar = length / width_m * pixels
    x0, y0 = 0.06 * pixels, 0.06 * pixels
    ax.plot([x0, x0 + bar], [y0, y0], color="white", lw=3, solid_capstyle="butt")
    ax.text(x0 + bar / 2, y0 + 0.03 * pixels, _length_label(length), color="white",
            ha="center", va="bottom", fontsize=TITLE_SIZE - 1)


def _var(xds: Any, suffix: str) -> str | None:
    return next((str(n) for n in xds.data_vars if str(n).endswith(suffix)), None)


def plot_frames(
    data: Any,
    *,
    columns: int = 6,
    max_frames: int = 24,
    path: str | Path | None = None,
) -> Figure:
    """Draw the frames of ``data`` (a QCoDeS dataset or its ``to_xarray_dataset()``).

    Each frame is titled with its index, ``tip_state`` and that state's probability, and
    ``true: <frame_true_state>`` when the run has it; colour by ``tip_quality``. With
    more than ``max_frames`` frames the first and last halves are shown. Saves a PNG to
    ``path`` if given. Raises ``ValueError`` if ``data`` holds no frames.
    """
    xds = data if hasattr(data, "data_vars") else data.to_xarray_dataset()
    name = _var(xds, "scan_image") or _var(xds, "last_frame")
    if name is None:
        raise ValueError("no frames in this dataset (no *scan_image or *last_frame variable)")
    frames = xds[name]
    dim = frames.dims[0]
    index = [int(i) for i in np.asarray(frames[dim].values)]
    if len(index) > max_frames:
        half = max(1, max_frames // 2)
        keep = list(range(half)) + list(range(len(index) - half, len(index)))
    else:
        keep = list(range(len(index)))
    width_name = _var(xds, "_frame_width")

    def value(var: str | None, k: int) -> Any:
        if var is None or var not in xds:
            return None
        return xds[var].isel({dim: k}).values.item()

    images, titles, colours, widths = [], [], [], []
    for k in keep:
        images.append(np.asarray(frames.isel({dim: k}).values))
        state = value("tip_state", k)
        title = f"#{index[k]}"
        if state is not None:
            title += f" {state}"
            p = value(f"tip_p_{state}", k)
            if p is not None and math.isfinite(p):
                title += f" {p:.2f}"
        truth = value("frame_true_state", k)
        if truth:
            title += f"\ntrue: {truth}"
        titles.append(title)
        colours.append(QUALITY_COLOURS.get(str(value("tip_quality", k)), "tab:gray"))
        widths.append(value(width_name, k))
    return draw_frames(images, titles, colours=colours, widths_m=widths, columns=columns,
                       suptitle=f"{len(index)} frames" + (f", {len(keep)} shown" if len(keep) < len(index)
                                                          else ""),
                       path=path)
