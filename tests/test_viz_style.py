"""convlib.viz.style: the one grid primitive (its numbers readable on any cell, its ticks in the input's
coordinates), the palette's roles and the readable-text rule."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from convlib import viz  # noqa: E402
from convlib.viz import style  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _labels(ax, axis="x"):
    ax.figure.canvas.draw()  # the tick labels are chosen when the axes is drawn
    return [t.get_text() for t in (ax.get_xticklabels() if axis == "x" else ax.get_yticklabels())]


def test_text_colour_is_the_one_that_stands_out_on_the_cell():
    for role in ("input", "kernel", "output"):
        assert style.text_color(style.PALETTE[role]) == ("white" if role == "input" else "black")
    assert style.text_color("#FFFFFF") == "black" and style.text_color("#000000") == "white"
    assert style.text_color(style.PALETTE["padding"]) == "black"
    assert style.text_color((0.0, 0.0, 0.0, 0.1)) == "black"  # nearly transparent: seen on white paper


def test_grid_numbers_take_the_colour_of_their_cell_and_never_read_minus_zero():
    A = np.array([[0.0, 1.0, 9.0], [-0.0, -9.0, 4.5]])
    ax = viz.show_grid(A, fmt=".1f")
    rgba = ax.images[0].get_array()
    texts = {(int(t.get_position()[1]), int(t.get_position()[0])): t for t in ax.texts}
    assert len(texts) == A.size and "-0.0" not in [t.get_text() for t in ax.texts]
    for (r, c), t in texts.items():
        assert t.get_color() == style.text_color(rgba[r, c])
    assert texts[(0, 2)].get_color() == "white" and texts[(0, 0)].get_color() == "black"  # dark and pale cells


def test_padded_grids_count_the_input_rows_and_columns():
    """One convention in every figure: the first row of the image is 0, the padding above it -1."""
    Xp = torch.nn.functional.pad(torch.arange(12.0).reshape(3, 4), (2, 2, 1, 1))
    ax = viz.show_grid(Xp, padding=(1, 2))
    assert _labels(ax, "y") == ["-1", "0", "1", "2", "3"]
    assert _labels(ax, "x") == ["-2", "-1", "0", "1", "2", "3", "4", "5"]
    grey = np.all(np.isclose(ax.images[0].get_array(), to_rgba(style.PALETTE["padding"])), axis=-1)
    assert grey.sum() == Xp.numel() - 12 and not grey[1:4, 2:6].any()


def test_numbers_that_do_not_fit_their_cells_are_left_out_not_clipped():
    fig, ax = plt.subplots(figsize=(2, 2))
    A = np.full((20, 20), -1234.5)
    style.draw_cells(ax, style.role_colors(A), A, fmt=".1f", min_fontsize=10)
    assert len(ax.texts) == 0  # 20 cells in 2 inches: "-1234.5" cannot be written at 10 pt
    fig, ax = plt.subplots(figsize=(6, 6))
    style.draw_cells(ax, style.role_colors(A[:3, :3]), A[:3, :3], fmt=".1f", min_fontsize=10)
    assert len(ax.texts) == 9 and all(t.get_fontsize() >= 10 for t in ax.texts)


def test_tick_labels_thin_out_to_fit_the_axes_as_drawn():
    fig, (wide, strip) = plt.subplots(2, 1, figsize=(6, 10))
    for ax in (wide, strip):
        style.draw_cells(ax, np.ones((18, 128, 4)), aspect="auto")
    strip.set_aspect("equal")  # a flat strip: far less room for the row labels
    rows_wide, rows_strip = _labels(wide, "y"), _labels(strip, "y")
    assert rows_wide[:2] == ["0", "1"] and len(rows_strip) < len(rows_wide)
    assert len(_labels(wide)) < 128 and _labels(wide)[0] == "0"


def test_every_figure_is_at_most_the_books_width():
    assert viz.MAX_FIG_WIDTH == 8.0 and viz.DPI * viz.MAX_FIG_WIDTH >= 900
    assert min(style.FONT[k] for k in ("suptitle", "title", "label", "tick", "cell")) >= 10
    assert viz.player.READABLE >= 11  # an animation frame is shown at 0.9 of its size in a 700-pixel column


def test_every_public_name_of_viz_resolves_to_its_home():
    for name in viz.__all__:
        assert getattr(viz, name) is not None
    assert viz.show_grid.__module__ == "convlib.viz.grids" and viz.animate_tap_slices.__module__.endswith(
        "tap_animation"
    )
    with pytest.raises(AttributeError, match="no attribute 'plot'"):
        viz.plot  # noqa: B018
