"""The book's one visual language: colours, font sizes, figure widths, and the grid every figure draws with.

Colours follow Dumoulin and Visin's figures, which readers already know: input blue, zero padding light grey,
kernel orange, output green; the window being read and the cell being written get a bold outline in the
highlight colour. Matrices use the same colours for the same roles, zeros white, negative values purple.

Sizes: no figure is wider than :data:`MAX_FIG_WIDTH` (8 inches). The book's text column is about 780 CSS
pixels, so a figure of that width is shown at about its own scale and a font size in points is about the size
the reader sees: :data:`FONT` keeps every text at 10 pt or more.

Coordinates: :func:`draw_cells` is the one grid primitive; every grid and matrix figure draws through it, and
every grid of an image labels its rows and columns with the *input's* indices: the first row of the image is
0, a row of zero padding above it is -1 (and one below it is H).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.colors import LinearSegmentedColormap, Normalize, to_rgba
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, Locator

__all__ = [
    "PALETTE",
    "WINDOW_COLORS",
    "FONT",
    "MAX_FIG_WIDTH",
    "ELL",
    "role_cmap",
    "role_norm",
    "role_colors",
    "text_color",
    "number_format",
    "outline",
    "draw_cells",
    "fits",
    "as_matrix",
]

PALETTE = {
    "input": "#3B75AF",  # blue
    "padding": "#D9D9D9",  # light grey
    "kernel": "#EF8636",  # orange
    "output": "#519E3E",  # green
    "highlight": "#C53A32",  # the window being read / the cell being written
    "negative": "#8D69B8",  # negative values in signed matrices (purple)
    "grid": "#FFFFFF",
}
#: outlines that tie a window to the output cell it writes: the first pair in the highlight colour
WINDOW_COLORS = (PALETTE["highlight"], "#5B2A86", "#1F1F1F")
#: font sizes in points; at the book's width a point in a figure is about a point on the screen
FONT = {"suptitle": 12, "title": 11, "label": 10, "tick": 10, "cell": 10, "min": 7}
MAX_FIG_WIDTH = 8.0  # inches: no figure wider than this
ELL = "\u2113"  # the letter l of a patch column, in a form never mistaken for a 1
_CELL_LINE = "#FFFFFF"


def role_cmap(role: str, signed: bool = False):
    """White-to-colour colour map for a role ('input', 'kernel', 'output'); purple-white-colour if signed."""
    colour = PALETTE[role]
    if signed:
        return LinearSegmentedColormap.from_list(f"{role}_signed", [PALETTE["negative"], "#FFFFFF", colour])
    return LinearSegmentedColormap.from_list(role, ["#FFFFFF", colour])


def role_norm(A: np.ndarray, signed: bool, vmax=None) -> Normalize:
    """The colour scale of a grid: symmetric around 0 when ``signed``, else from 0 (or the minimum) to ``vmax``."""
    m = float(vmax) if vmax is not None else float(np.max(np.abs(A))) if A.size else 1.0
    m = m or 1.0
    return Normalize(-m, m) if signed else Normalize(0.0 if not A.size or A.min() >= 0 else float(A.min()), m)


def role_colors(A, role: str = "input", vmax=None, signed: bool | None = None) -> np.ndarray:
    """H x W x 4 colours of the values ``A`` in the colours of ``role`` (purple for negative values)."""
    A = np.asarray(A, dtype=float)
    if signed is None:
        signed = bool(A.size and A.min() < 0)
    return role_cmap(role, signed)(role_norm(A, signed, vmax)(A))


def text_color(rgba) -> str:
    """'white' or 'black', whichever stands out more on a cell of colour ``rgba`` (by its relative luminance)."""
    r, g, b, a = to_rgba(rgba)
    r, g, b = (a * c + 1.0 - a for c in (r, g, b))  # a translucent cell is seen on white paper
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    luminance = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return "white" if luminance < 0.179 else "black"  # where both contrast ratios are equal


def number_format(*arrays, decimals: int = 2) -> str:
    """'.0f' when every value is an integer, else a fixed number of ``decimals``."""
    values = [np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=float) for a in arrays]
    integral = all(np.all(np.isfinite(v)) and np.all(np.round(v) == v) for v in values)
    return ".0f" if integral else f".{decimals}f"


def as_matrix(a) -> np.ndarray:
    """A 2-D tensor (dense or sparse) or array as a numpy array; ``ValueError`` for any other number of axes."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        if a.layout != torch.strided:
            a = a.to_dense()
        a = a.numpy()
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {a.shape}")
    return a


def outline(ax, row: int, col: int, height: int = 1, width: int = 1, color=None, lw: float = 3.0, **kw):
    """Draw a bold rectangle around cells [row, row+height) x [col, col+width) of a grid."""
    kw = {"zorder": 3, **kw}  # above the lines between cells
    rect = Rectangle(
        (col, row), width, height, fill=False, edgecolor=color or PALETTE["highlight"], lw=lw, clip_on=False, **kw
    )
    ax.add_patch(rect)
    return rect


# ---------------------------------------------------------------- the grid primitive


def draw_cells(
    ax,
    rgba,
    values=None,
    *,
    show=None,
    fmt: str | None = None,
    fontsize: float | None = None,
    origin=(0, 0),
    ticks=("auto", "auto"),
    lines: str | None = _CELL_LINE,
    linewidth: float = 1.0,
    aspect: str = "equal",
    min_fontsize: float = FONT["min"],
):
    """Draw an H x W grid of coloured cells with their numbers written in: every grid and matrix figure uses it.

    ``rgba`` holds the H x W x 4 cell colours (:func:`role_colors`). ``values`` (H x W) are written into the
    cells where ``show`` (H x W booleans, default all) is True, in ``fmt`` (default: integers without decimals),
    each in black or white, whichever stands out on its cell (:func:`text_color`); ``fontsize=None`` takes the
    largest size up to ``FONT['cell']`` (or ``min_fontsize``, if larger) at which the widest number fits its
    cell, and writes no number if that size is below ``min_fontsize`` (no number is ever clipped); the tick
    labels are no smaller than ``min_fontsize`` either. Cell (r, c) covers x in [c, c+1] and y in [r, r+1],
    y pointing down, so ``outline(ax, r, c)`` marks it.

    Tick labels count rows and columns from ``origin = (first row, first column)``. A grid of a zero-padded
    image passes ``(-ph, -pw)``: **its labels are the input's own indices, the padding at -1 (and at H or W)**,
    the convention of every figure in the book. ``ticks`` gives each axis (rows, columns): ``'auto'`` (every
    cell while the labels fit, else every n-th, n = 1, 2, 5, 10, ...), an int n (every n-th), a list of labels
    or False (none). ``lines`` is the colour of the thin lines between cells (None: no lines).
    """
    rgba = np.asarray(rgba, dtype=float)
    H, W = rgba.shape[:2]
    ax.imshow(rgba, extent=(0, W, H, 0), interpolation="nearest", aspect=aspect)
    if lines is not None and linewidth > 0:
        ax.set_xticks(np.arange(W + 1), minor=True)
        ax.set_yticks(np.arange(H + 1), minor=True)
        ax.grid(which="minor", color=lines, lw=linewidth)
    tick_size = max(FONT["tick"], min_fontsize)
    ax.tick_params(which="both", length=0, labelsize=tick_size)
    _label_axis(ax, "y", H, origin[0], ticks[0], tick_size)
    _label_axis(ax, "x", W, origin[1], ticks[1], tick_size)
    if values is not None:
        _write_numbers(ax, rgba, np.asarray(values, dtype=float), show, fmt, fontsize, aspect, min_fontsize)
    return ax


def _axes_cell_points(ax, H: int, W: int, aspect: str) -> tuple[float, float]:
    """The width and height of one cell in points, from the axes' current place in its figure."""
    box = ax.get_position()
    fw, fh = ax.figure.get_size_inches()
    w, h = box.width * fw * 72 / max(W, 1), box.height * fh * 72 / max(H, 1)
    return (min(w, h), min(w, h)) if aspect == "equal" else (w, h)


def _text_width(text: str) -> float:
    """The width of a number in ems (DejaVu Sans: digits 0.64, a minus sign 0.84, a point 0.32)."""
    return sum(0.84 if ch == "-" else 0.32 if ch in ".," else 0.64 for ch in text)


def fits(text: str, cell_points: float, fontsize: float) -> bool:
    """Whether the number ``text`` fits a cell ``cell_points`` wide at ``fontsize`` points (with a margin)."""
    return _text_width(text) * fontsize <= cell_points - 2.5


def _write_numbers(ax, rgba, values, show, fmt, fontsize, aspect, min_fontsize):
    H, W = values.shape
    show = np.ones((H, W), dtype=bool) if show is None else np.asarray(show, dtype=bool)
    fmt = fmt or number_format(values[show] if show.any() else values)
    texts = {(r, c): format(values[r, c] + 0.0, fmt) for r, c in zip(*np.nonzero(show))}  # + 0.0: no "-0"
    if not texts:
        return
    if fontsize is None:
        cw, ch = _axes_cell_points(ax, H, W, aspect)
        widest = max(_text_width(t) for t in texts.values())  # in ems
        fontsize = math.floor(min(max(FONT["cell"], min_fontsize), (cw - 2.5) / widest, 0.72 * ch) * 2) / 2
        if fontsize < min_fontsize:
            return  # the numbers would not fit in their cells at a readable size
    for (r, c), text in texts.items():
        ax.text(c + 0.5, r + 0.5, text, ha="center", va="center", fontsize=fontsize, color=text_color(rgba[r, c]))


def _label_axis(ax, axis: str, n: int, first: int, ticks, size: float):
    set_ticks = ax.set_yticks if axis == "y" else ax.set_xticks
    if ticks is False or ticks is None or n == 0:
        set_ticks([])
        return
    if isinstance(ticks, (list, tuple, np.ndarray)):
        if len(ticks) != n:
            raise ValueError(f"got {len(ticks)} tick labels for {n} cells")
        set_ticks(np.arange(n) + 0.5, labels=[str(t) for t in ticks])
        return
    axis_ = ax.yaxis if axis == "y" else ax.xaxis
    if isinstance(ticks, int) and not isinstance(ticks, bool):
        axis_.set_major_locator(FixedLocator(np.arange(0, n, ticks) + 0.5))
    else:
        axis_.set_major_locator(_CellTicks(n, first, axis, size))
    axis_.set_major_formatter(FuncFormatter(lambda x, _: str(int(round(x - 0.5)) + first)))


class _CellTicks(Locator):
    """Ticks at the centres of every k-th of ``n`` cells, k = 1, 2, 5, 10, 20, ... the smallest at which the labels
    do not overlap; chosen when the axes is drawn, so it holds for the axes' final size."""

    def __init__(self, n: int, first: int, axis: str, size: float):
        self.n, self.first, self.axis_name, self.size = n, first, axis, size

    def __call__(self):
        ax = self.axis.axes
        box = ax.get_window_extent()
        length = (box.height if self.axis_name == "y" else box.width) * 72 / ax.figure.dpi  # points
        chars = max(len(str(self.first)), len(str(self.first + self.n - 1)))
        need = self.size * (1.3 if self.axis_name == "y" else 0.62 * chars + 0.8)  # points per label
        steps = [k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if length * k / self.n >= need]
        return np.arange(0, self.n, steps[0] if steps else max(1, self.n // 5)) + 0.5
