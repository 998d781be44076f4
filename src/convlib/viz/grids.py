"""Grids of numbers: one channel of an image (padding grey, a window outlined) and the window positions of one axis."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgba

from .style import FONT, MAX_FIG_WIDTH, PALETTE, as_matrix, draw_cells, outline, role_colors

__all__ = ["show_grid", "show_window_positions", "padding_mask", "padding_sides"]


def padding_sides(padding) -> tuple[int, int, int, int]:
    """``padding`` as (top, bottom, left, right): an int, a pair (ph, pw) or the four sides."""
    if isinstance(padding, (int, np.integer)):
        return (int(padding),) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return tuple(padding)


def padding_mask(shape, padding) -> np.ndarray:
    """H x W booleans, True on the zero padding: ``padding`` as :func:`padding_sides` takes it."""
    H, W = shape
    top, bottom, left, right = padding_sides(padding)
    mask = np.ones((H, W), dtype=bool)
    mask[top : H - bottom, left : W - right] = False
    return mask


def show_grid(
    X,
    ax=None,
    role: str = "input",
    padding=0,
    window=None,
    cells=(),
    annot: bool = True,
    fmt: str | None = None,
    title: str | None = None,
    vmax=None,
    axis_labels: bool = True,
    known=None,
    ticks=None,
    min_fontsize: float = FONT["min"],
    aspect: str = "equal",
):
    """An image (one channel) as a grid of cells, zero padding in light grey, a window outlined.

    ``X`` is the *padded* array when ``padding`` (an int, (ph, pw) or (top, bottom, left, right)) > 0: the
    outer ring is drawn grey and the tick labels count the input's rows and columns, so the padding sits at -1
    (``padding`` may also be an H x W boolean mask of the cells to grey; give the labels in ``ticks`` then).
    ``window=(row, col, height, width)`` outlines a rectangle of cells and ``cells`` single cells (e.g. the taps
    of a dilated kernel), in the grid's own cell numbers from 0. ``known`` (H x W booleans) leaves the other
    cells blank: an output being written. ``ticks`` = (row labels, column labels) replaces the tick labels.
    Numbers that would not fit at ``min_fontsize`` points are left out; ``aspect='auto'`` lets the cells fill
    the axes. Returns the axes.
    """
    A = as_matrix(X).astype(float)
    H, W = A.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(min(MAX_FIG_WIDTH, 0.5 * W + 1.0), 0.5 * H + 1.0))
    grey = np.asarray(padding, dtype=bool) if np.ndim(padding) == 2 else padding_mask((H, W), padding)
    rgba = role_colors(A, role, vmax)
    rgba[grey] = to_rgba(PALETTE["padding"])
    show = np.ones((H, W), dtype=bool) if known is None else np.asarray(known, dtype=bool)
    rgba[~show] = (1.0, 1.0, 1.0, 1.0)
    top, _, left, _ = (0, 0, 0, 0) if np.ndim(padding) == 2 else padding_sides(padding)
    lines = dict(lines="#CCCCCC" if known is not None else "white", min_fontsize=min_fontsize, aspect=aspect)
    draw_cells(
        ax, rgba, A if annot else None, show=show, fmt=fmt, origin=(-top, -left), ticks=ticks or ("auto",) * 2, **lines
    )
    if window is not None:
        outline(ax, *window)
    for r, c in cells:
        outline(ax, r, c, lw=2.0)
    if axis_labels:
        ax.set_xlabel("column" + (" (padding grey)" if grey.any() else ""), fontsize=FONT["label"])
        ax.set_ylabel("row" + (" (padding grey)" if grey.any() else ""), fontsize=FONT["label"])
    if title:
        ax.set_title(title, fontsize=FONT["title"])
    return ax


def show_window_positions(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1, ax=None, title: str | None = None
):
    """The output-size formula as a picture: one row of the padded input, one line per window position.

    The padded input (``size + 2*padding`` cells, padding grey, numbered as the input counts them: the padding
    at -1) is drawn on top; below it, one line per output position i marks the taps that window reads
    (``dilation`` apart), starting ``stride`` cells after the previous one. The number of lines is
    ``conv_output_size(size, kernel_size, stride, padding, dilation)``.
    """
    from ..shapes import conv_output_size

    n_out = conv_output_size(size, kernel_size, stride, padding, dilation)
    size, padding = int(size), int(padding)
    total = size + 2 * padding
    if ax is None:
        _, ax = plt.subplots(figsize=(min(MAX_FIG_WIDTH, 0.45 * total + 1.8), 0.4 * (n_out + 1) + 1.0))
    grey = padding_mask((1, total), (0, padding))
    rgba = np.where(grey[..., None], to_rgba(PALETTE["padding"]), to_rgba(PALETTE["input"]))
    draw_cells(ax, rgba, np.arange(total)[None] - padding, ticks=(False, False), linewidth=1.5)
    span = dilation * (kernel_size - 1) + 1
    for i in range(n_out):
        y = 1.55 + 0.5 * i
        start = i * stride
        ax.plot([start + 0.5, start + span - 0.5], [y] * 2, color=PALETTE["kernel"], lw=1.5)
        taps = [start + t * dilation + 0.5 for t in range(kernel_size)]
        ax.scatter(taps, [y] * kernel_size, color=PALETTE["kernel"], s=28, zorder=3)
        ax.text(-0.4, y, f"i = {i}", ha="right", va="center", fontsize=FONT["label"], color=PALETTE["output"])
    ax.set_xlim(-2.4, total + 0.2)
    ax.set_ylim(1.55 + 0.5 * n_out, -0.2)
    ax.set_aspect("equal")
    ax.axis("off")
    setting = f"k = {kernel_size}, s = {stride}, p = {padding}, d = {dilation}"
    ax.set_title(title or f"input length {size}, {setting}: {n_out} window positions", fontsize=FONT["title"])
    return ax
