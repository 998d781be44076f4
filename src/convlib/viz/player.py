"""The offline animation player: matplotlib ``FuncAnimation`` frames embedded in one self-contained HTML snippet.

Showing an :class:`Animation` as a cell's last value embeds it as HTML (``to_html()``): the frames as palette
PNG images inside the page, play/pause/scrub controls in a few lines of JavaScript, no kernel and no network
needed (matplotlib's link to a Font Awesome CDN is replaced by plain Unicode symbols). The frames scale down
to the width of the page's text column.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from tempfile import TemporaryDirectory

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.animation import FuncAnimation, HTMLWriter
from PIL import Image

from .grids import show_grid
from .style import FONT, MAX_FIG_WIDTH, outline

__all__ = [
    "Animation",
    "to_html",
    "make_animation",
    "DPI",
    "MAX_KB",
    "READABLE",
    "FrameArtists",
    "frame_figure",
    "margins",
    "window_outline",
    "term",
    "plus_bias",
    "fill_output",
]

DPI = 120  # an 8-inch frame is 960 pixels wide: sharp in a text column of about 780 CSS pixels
MAX_KB = 600  # what one embedded animation may weigh

# matplotlib's player uses Font Awesome icons from a CDN: offline they would be blank buttons.
_ICONS = {  # characters that every common font has (no media-control code points, which often lack a glyph)
    "fa fa-minus": "&minus;",
    "fa fa-fast-backward": "|&#x25C0;&#x25C0;",
    "fa fa-step-backward": "|&#x25C0;",
    "fa fa-play fa-flip-horizontal": "&#x25C0;",
    "fa fa-pause": "&#x25AE;&#x25AE;",
    "fa fa-play": "&#x25B6;",
    "fa fa-step-forward": "&#x25B6;|",
    "fa fa-fast-forward": "&#x25B6;&#x25B6;|",
    "fa fa-plus": "+",
}
_STYLE = (
    "<style>.anim-buttons .anim-icon { font-size: 0.8em; white-space: nowrap; }\n"
    ".animation { display: block; max-width: 100%; }\n"
    ".animation img { display: block; max-width: 100%; height: auto; margin: 0 auto; }</style>\n"
)


class _PaletteHTMLWriter(HTMLWriter):
    """matplotlib's HTML writer, but every frame a palette PNG (at most ``colors`` colours).

    The figures are flat colours and text, so a 64-colour palette looks the same as full colour at a third of
    the size or less.
    """

    def __init__(self, *args, colors: int = 64, **kwargs):
        super().__init__(*args, **kwargs)
        self.colors = colors

    def grab_frame(self, **savefig_kwargs):
        buf = BytesIO()
        self.fig.savefig(buf, format="png", dpi=self.dpi, **savefig_kwargs)
        image = Image.open(buf).convert("RGB").quantize(colors=self.colors, dither=Image.Dither.NONE)
        out = BytesIO()
        image.save(out, format="png", optimize=True)
        self._saved_frames.append(base64.encodebytes(out.getvalue()).decode("ascii"))


def to_html(anim: FuncAnimation, default_mode: str = "loop", max_kb: float = MAX_KB, colors: int = 64) -> str:
    """A ``FuncAnimation`` as one self-contained HTML snippet, like ``to_jshtml`` but offline and small.

    Frames are embedded as palette PNGs; matplotlib's link to a Font Awesome CDN (the button icons) is removed
    and the icons replaced by Unicode symbols, so nothing is fetched from the network. Raises ``ValueError`` if
    the HTML is larger than ``max_kb`` kilobytes (rather than matplotlib's silent dropping of frames past its
    embed limit): use fewer frames, a smaller figure or a lower dpi.
    """
    interval = getattr(anim, "_interval", 1000)
    with TemporaryDirectory() as tmp:
        path = Path(tmp, "animation.html")
        writer = _PaletteHTMLWriter(fps=1000 / interval, embed_frames=True, default_mode=default_mode, colors=colors)
        anim.save(str(path), writer=writer, dpi=anim._fig.dpi)
        text = path.read_text()
    text = re.sub(r"<link rel=\"stylesheet\"\s*href=\"https?://[^\"]*font-awesome[^\"]*\">", "", text)
    for cls, symbol in _ICONS.items():
        text = text.replace(f'<i class="{cls}"></i>', f'<span class="anim-icon">{symbol}</span>')
    text = _STYLE + text
    if re.search(r"(src|href)=\"https?://", text):
        raise RuntimeError("the animation's HTML refers to a network resource; it would not play offline")
    kb = len(text.encode()) / 1024
    if kb > max_kb:
        raise ValueError(
            f"the animation's HTML is {kb:.0f} KB, more than max_kb={max_kb}: use fewer frames, "
            "a smaller figure or a lower dpi"
        )
    return text


@dataclass
class Animation:
    """An animation and the numbers it depicts.

    ``anim``: the ``FuncAnimation``; ``fig``: its figure (closed, so that a notebook does not also show it as a
    still image); ``frames``: one dict per frame with the numbers that frame shows; ``values``: the tensor the
    animation builds (e.g. the output channel it fills in), to compare with PyTorch.
    """

    anim: FuncAnimation
    fig: plt.Figure
    frames: list
    values: torch.Tensor
    title: str = ""
    default_mode: str = "loop"
    max_kb: float = MAX_KB
    _html: str | None = field(default=None, repr=False)

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    def to_html(self) -> str:
        if self._html is None:
            self._html = to_html(self.anim, self.default_mode, self.max_kb)
        return self._html

    @property
    def size_kb(self) -> float:
        return len(self.to_html().encode()) / 1024

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        return f"<Animation {self.title!r}: {self.n_frames} frames>"


def make_animation(fig, draw, frames: list, values: torch.Tensor, title: str, interval: int = 1000) -> Animation:
    """The :class:`Animation` that calls ``draw(t)`` for frame t of ``frames``; closes ``fig``."""
    anim = FuncAnimation(fig, draw, frames=len(frames), interval=interval, repeat=True)
    plt.close(fig)
    return Animation(anim=anim, fig=fig, frames=frames, values=values, title=title)


# ---------------------------------------------------------------- what every animation draws with

READABLE = FONT["label"] + 1  # points: the smallest text in a frame (11: 10 pt or more in a column of 700 px)


class FrameArtists:
    """The artists that change from frame to frame: removed before the next frame is drawn."""

    def __init__(self):
        self.artists = []

    def add(self, *artists):
        self.artists.extend(artists)

    def clear(self):
        for artist in self.artists:
            artist.remove()
        self.artists = []


def frame_figure(height: float, dpi: int = DPI):
    """A figure for the frames of an animation: the widest a figure may be, ``height`` inches tall."""
    return plt.figure(figsize=(MAX_FIG_WIDTH, height), dpi=dpi)


def margins(height: float, top: float, bottom: float, left: float = 0.07, right: float = 0.98) -> dict:
    """A gridspec's margins for a frame ``height`` inches tall: ``top`` and ``bottom`` in inches (room for the
    titles above, the labels below), ``left`` and ``right`` as fractions of the width."""
    return dict(left=left, right=right, top=1 - top / height, bottom=bottom / height)


def window_outline(ax, i, j, kernel, stride, dilation, color=None) -> list:
    """The window of output (i, j) on a padded grid: one rectangle, or its taps when dilated."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    if (dh, dw) == (1, 1):
        return [outline(ax, i * sh, j * sw, kh, kw, color=color)]
    return [outline(ax, i * sh + u * dh, j * sw + v * dw, lw=2.0, color=color) for u in range(kh) for v in range(kw)]


def term(v: float, fmt: str) -> str:
    """A number as a term of a sum: negative ones in parentheses."""
    s = format(v + 0.0, fmt)
    return f"({s})" if v < 0 else s


def plus_bias(bias, o: int, fmt: str) -> str:
    """' + value (b[o])', or nothing for a convolution without bias."""
    return "" if bias is None else f" + {term(bias, fmt)} (b[{o}])"


def fill_output(ax, output, known, current, fmt: str, title: str, **grid):
    """An output being written: its entries shown where ``known`` (H x W booleans, or an int n: the first n
    entries, row by row), the others blank; the ``current`` cell (i, j) outlined (None: none). ``grid``: more
    arguments of :func:`~convlib.viz.grids.show_grid` (``vmax`` defaults to the output's largest value)."""
    ax.clear()
    if isinstance(known, int):
        n, known = known, np.zeros(output.shape, dtype=bool)
        known.flat[:n] = True
    grid = {"vmax": float(np.abs(output).max()) or 1.0, "min_fontsize": READABLE, **grid}
    window = None if current is None else (*current, 1, 1)
    show_grid(output, ax=ax, role="output", known=known, window=window, fmt=fmt, axis_labels=False, title=title, **grid)
