"""plot_frames / draw_frames: frames titled with their tip states, laid out without overlap."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from qcodes_stmtip.monitor.plot import draw_frames, plot_frames, scale_bar_length


def _dataset(n: int = 8, truth: bool = True) -> xr.Dataset:
    rng = np.random.default_rng(0)
    states = ["individual_atoms", "generic_defect", "uncertain", "rows"] * (n // 4)
    quality = {"individual_atoms": "good", "generic_defect": "bad", "uncertain": "uncertain",
               "rows": "bad"}
    dims = ("frame_index", "stm_scan_line", "stm_scan_pixel")
    data = {
        "stm_scan_image": (dims, rng.normal(size=(n, 16, 16))),
        "stm_frame_width": (("frame_index",), np.full(n, 20e-9)),
        "tip_state": (("frame_index",), states),
        "tip_quality": (("frame_index",), [quality[s] for s in states]),
        "tip_p_individual_atoms": (("frame_index",), np.linspace(0, 1, n)),
        "tip_p_generic_defect": (("frame_index",), np.full(n, 0.5)),
        "tip_p_rows": (("frame_index",), np.full(n, 0.25)),
    }
    if truth:
        data["frame_true_state"] = (("frame_index",), ["individual_atoms"] * n)
    return xr.Dataset(data, coords={"frame_index": np.arange(n, dtype=float)})


def test_titles_carry_state_probability_truth_and_quality_colour(tmp_path) -> None:
    fig = plot_frames(_dataset(), columns=4, path=tmp_path / "frames.png")
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles[0] == "#0 individual_atoms 0.00\ntrue: individual_atoms"
    assert titles[1] == "#1 generic_defect 0.50\ntrue: individual_atoms"
    assert titles[2].startswith("#2 uncertain\n")  # no probability for a non-class state
    colours = [ax.title.get_color() for ax in fig.axes if ax.images]
    assert colours[:3] == ["tab:green", "tab:red", "tab:gray"]
    assert (tmp_path / "frames.png").stat().st_size > 1000
    assert plot_frames(_dataset(truth=False)).axes[0].get_title() == "#0 individual_atoms 0.00"


def test_second_row_titles_sit_above_their_own_images_and_are_readable() -> None:
    fig = plot_frames(_dataset(8), columns=4)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.images]
    first, second = axes[0], axes[4]
    title = second.title.get_window_extent(renderer)
    assert title.y0 >= second.get_window_extent(renderer).y1 - 1  # above its image
    assert title.y1 <= first.get_window_extent(renderer).y0 + 1  # below the row above
    assert second.title.get_fontsize() * fig.dpi / 72 >= 12  # pixels
    labels = [t.get_text() for t in first.texts]
    assert labels == ["5 nm"]  # scale bar of a 20 nm frame


def test_many_frames_show_first_and_last() -> None:
    fig = plot_frames(_dataset(40), max_frames=8)
    titles = [ax.get_title().split()[0] for ax in fig.axes if ax.images]
    assert titles == ["#0", "#1", "#2", "#3", "#36", "#37", "#38", "#39"]


def test_errors_and_scale_bar_lengths() -> None:
    assert scale_bar_length(20e-9) == pytest.approx(5e-9)
    assert scale_bar_length(6e-9) == pytest.approx(1e-9)
    assert scale_bar_length(1e-6) == pytest.approx(2e-7)
    with pytest.raises(ValueError, match="no frames"):
        plot_frames(xr.Dataset({"tip_state": (("frame_index",), ["x"])}))
    with pytest.raises(ValueError, match="titles"):
        draw_frames([np.zeros((4, 4))], [])


def test_outlines_frame_the_chosen_images() -> None:
    images = [np.zeros((4, 4)), np.ones((4, 4)), None]
    fig = draw_frames(images, ["a", "b", "c"], outlines=["tab:red", None, "0.45"])
    outlined = [[p.get_gid() for p in ax.patches] for ax in fig.axes[:3]]
    assert outlined == [["outline"], [], ["outline"]]
    with pytest.raises(ValueError, match="outlines"):
        draw_frames(images, ["a", "b", "c"], outlines=["tab:red"])
