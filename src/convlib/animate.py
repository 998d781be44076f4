"""Animations that play in the static book: matplotlib ``FuncAnimation`` frames embedded as self-contained HTML.

Each function takes PyTorch's arguments (an input, a weight, stride, padding, dilation), draws one frame per step
of the computation in the book's colours (``convlib.plot.PALETTE``) and returns an :class:`Animation`: the
``FuncAnimation`` (``.anim``), its figure, what every frame depicts (``.frames``: plain numbers) and the result
the frames build up (``.values``), so that the next notebook cell can ``assert`` them against
``torch.nn.functional.conv2d`` / ``conv_transpose2d``. Showing an :class:`Animation` as a cell's last value
embeds it as HTML (``to_html()``): the frames as PNG images inside the page, play/pause/scrub controls in a few
lines of JavaScript, no kernel and no network needed (matplotlib's link to a Font Awesome CDN is replaced by
plain Unicode symbols).

- :func:`window_sum` (chapter 1): the window slides over the padded multi-channel input; each frame shows the
  per-channel products summed into one output entry.
- :func:`patch_matrix` (chapter 2): the same window beside the patch matrix ``cols``; its column lights up and
  the output pixel ``W_row @ cols[:, l] + b`` is filled in.
- :func:`toeplitz_row` (chapter 3): the same step as row ``l`` of the convolution matrix ``M`` against the
  flattened input.
- :func:`transposed_stamp` (chapter 4): transposed convolution as stamping scaled copies of the kernel into
  the output, overlaps adding up.
- :func:`settings_explorer`: one frame per stride / padding / dilation setting, the output size annotated.
- :func:`feature_map` (chapter 5): a filter over a real image, a band of output rows per frame: the windows on
  the image, their block of columns of the patch matrix beside ``W_row``, the feature map filling in.
- :func:`tap_slices` (chapter 6): the fast path's "one offset per tap": one frame per kernel tap, the
  contiguous slice of the flat input it reads, the values it reads across a row edge (subtracted afterwards),
  and the output accumulating tap by tap, as ``convlib.conv2d`` computes it (``layout='exact'``).
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
import torch.nn.functional as F
from matplotlib.animation import FuncAnimation, HTMLWriter
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle
from PIL import Image

from ._checks import check_tensor, conv2d_args, out_size, pair
from .fast import conv2d_plan
from .im2col import col2im, im2col
from .plot import PALETTE, max_fig_width, outline, role_cmap, show_grid, show_matrix
from .toeplitz import conv_matrix

__all__ = [
    "Animation",
    "to_html",
    "window_sum",
    "patch_matrix",
    "toeplitz_row",
    "transposed_stamp",
    "settings_explorer",
    "DEFAULT_SETTINGS",
    "feature_map",
    "tap_slices",
]

DPI = 80  # modest: the frames are PNGs embedded in the page
MAX_KB = 300  # what one embedded animation may weigh

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
_ICON_STYLE = "<style>.anim-buttons .anim-icon { font-size: 0.8em; white-space: nowrap; }</style>\n"


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
    text = _ICON_STYLE + text
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


def _make(fig, draw, frames, values, title, interval=1000) -> Animation:
    anim = FuncAnimation(fig, draw, frames=len(frames), interval=interval, repeat=True)
    plt.close(fig)
    return Animation(anim, fig, frames, values, title)


# ---------------------------------------------------------------- shared drawing


def _single_image_args(x, weight, bias, stride, padding, dilation, out_channel=0):
    """Check like ``F.conv2d`` and insist on one image, groups=1 and a valid ``out_channel`` (what is drawn)."""
    a = conv2d_args(x, weight, bias, stride, padding, dilation, 1)
    if a.x.shape[0] != 1:
        raise ValueError(f"the animations draw one image: pass C x H x W or 1 x C x H x W, got shape {tuple(x.shape)}")
    O = a.weight.shape[0]
    if not 0 <= out_channel < O:
        raise ValueError(f"out_channel must be in [0, {O}), got {out_channel}")
    return a


def _window_cells(i, j, kernel, stride, dilation):
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    return [(i * sh + u * dh, j * sw + v * dw) for u in range(kh) for v in range(kw)]


class _Dynamic:
    """The artists that change from frame to frame: removed before the next frame is drawn."""

    def __init__(self):
        self.artists = []

    def add(self, *artists):
        self.artists.extend(artists)

    def clear(self):
        for artist in self.artists:
            artist.remove()
        self.artists = []


def _window_artists(ax, i, j, kernel, stride, dilation):
    """The window of output (i, j) on a padded grid: one rectangle, or its taps when dilated."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    if (dh, dw) == (1, 1):
        return [outline(ax, i * sh, j * sw, kh, kw)]
    return [outline(ax, r, c, lw=2.0) for r, c in _window_cells(i, j, kernel, stride, dilation)]


def _fmt(a) -> str:
    a = np.asarray(a, dtype=float)
    return ".0f" if np.all(np.round(a) == a) else ".2f"


def _partial_grid(ax, A, known, role="output", current=None, vmax=None, title=None, fmt=None, annot=True):
    """A grid of which only the ``known`` cells are filled in (the others white): an output being written."""
    A = np.asarray(A, dtype=float)
    known = np.asarray(known, dtype=bool)
    H, W = A.shape
    m = float(vmax if vmax is not None else (np.abs(A).max() or 1.0))
    signed = bool((A[known] < 0).any()) if known.any() else False
    signed = signed or bool(A.min() < 0)
    cmap = role_cmap(role, signed)
    norm = Normalize(-m, m) if signed else Normalize(0, m)
    rgba = cmap(norm(A))
    rgba[~known] = (1.0, 1.0, 1.0, 1.0)
    ax.imshow(rgba, extent=(0, W, H, 0), interpolation="nearest")
    ax.set_xticks(np.arange(W) + 0.5, labels=range(W))
    ax.set_yticks(np.arange(H) + 0.5, labels=range(H))
    ax.set_xticks(np.arange(W + 1), minor=True)
    ax.set_yticks(np.arange(H + 1), minor=True)
    ax.grid(which="minor", color="#CCCCCC", lw=0.8)
    ax.tick_params(which="both", length=0, labelsize=7)
    fmt = fmt or _fmt(A)
    if annot:
        for r in range(H):
            for c in range(W):
                if known[r, c]:
                    dark = abs(norm(A[r, c]) - (0.5 if signed else 0.0)) > 0.45
                    ax.text(
                        c + 0.5,
                        r + 0.5,
                        format(A[r, c], fmt),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if dark else "black",
                    )
    if current is not None:
        outline(ax, current[0], current[1])
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def _num(v: float, fmt: str) -> str:
    s = format(v, fmt)
    return f"({s})" if v < 0 else s


# ---------------------------------------------------------------- chapter 1: the window and its running sum


def window_sum(
    x, weight, bias=None, stride=1, padding=0, dilation=1, out_channel: int = 0, max_frames: int = 12, dpi: int = DPI
) -> Animation:
    """The window sliding over the padded multi-channel input; each frame fills in one output entry.

    One row of panels per input channel: the padded channel with the window outlined, beside the kernel's
    channel and the sum of their products; on the right the output channel ``out_channel``, filled in up to the
    current entry, and the running sum ``channel 0 + channel 1 + ... + bias = y``. One frame per output position
    (row by row), at most ``max_frames``.

    ``frames[t]`` has ``i``, ``j``, ``partials`` (one sum of products per input channel), ``bias`` and
    ``value``; ``values`` is the output channel as far as the frames fill it (the whole channel when
    Ho*Wo <= max_frames), which equals ``F.conv2d(x, weight, bias, ...)[0, out_channel]``.
    """
    a = _single_image_args(x, weight, bias, stride, padding, dilation, out_channel)
    O, C, kh, kw = a.weight.shape
    Ho, Wo = a.output_hw
    ph, pw = a.padding
    xp = F.pad(a.x, (pw, pw, ph, ph))[0].detach().double()
    w = a.weight[out_channel].detach().double()  # C x kh x kw
    b = float(a.bias[out_channel]) if a.bias is not None else 0.0
    cols = im2col(a.x.detach().double(), (kh, kw), a.stride, a.padding, a.dilation)[0]  # C*kh*kw x L
    prods = cols * w.reshape(-1, 1)  # every product of every window
    partials = prods.reshape(C, kh * kw, Ho * Wo).sum(1)  # C x L
    y = partials.sum(0) + b  # L
    L = min(Ho * Wo, max_frames)
    frames = [dict(i=l // Wo, j=l % Wo, partials=partials[:, l].tolist(), bias=b, value=float(y[l])) for l in range(L)]
    values = y.reshape(Ho, Wo).to(a.x.dtype)
    fmt = _fmt(torch.cat([xp.flatten(), w.flatten(), y]).numpy())
    xmax = float(xp.abs().max()) or 1.0
    wmax = float(w.abs().max()) or 1.0
    ymax = float(y.abs().max()) or 1.0

    rows = C
    Hp, Wp = xp.shape[1:]
    cell = 0.26
    height = min(7.0, rows * max(1.3, cell * Hp + 0.5) + 0.3)
    fig = plt.figure(figsize=(min(max_fig_width, 7.5), height), dpi=dpi)
    gs = fig.add_gridspec(rows, 3, width_ratios=[Wp, kw + 1.5, max(Wo, 4) + 1.0], wspace=0.35, hspace=0.5)
    ax_in = [fig.add_subplot(gs[c, 0]) for c in range(C)]
    ax_k = [fig.add_subplot(gs[c, 1]) for c in range(C)]
    ax_out = fig.add_subplot(gs[:, 2])

    for c in range(C):  # the parts that stay: the padded input and the kernel, channel by channel
        show_grid(
            xp[c],
            ax=ax_in[c],
            padding=(ph, pw),
            fmt=fmt,
            vmax=xmax,
            axis_labels=False,
            title=f"input channel {c}" if C > 1 else "input (padded)",
        )
        show_grid(w[c], ax=ax_k[c], role="kernel", fmt=fmt, vmax=wmax, axis_labels=False)
        ax_k[c].set_title(f"W[{out_channel},{c}]", fontsize=9)
    dynamic = _Dynamic()

    def draw(t):
        f = frames[t]
        i, j = f["i"], f["j"]
        dynamic.clear()
        for c in range(C):
            dynamic.add(*_window_artists(ax_in[c], i, j, (kh, kw), a.stride, a.dilation))
            ax_k[c].set_xlabel(f"sum = {format(f['partials'][c], fmt)}", fontsize=9, color=PALETTE["highlight"])
        ax_out.clear()
        known = np.zeros((Ho, Wo), dtype=bool)
        known.flat[: t + 1] = True
        _partial_grid(
            ax_out,
            values.double().numpy(),
            known,
            current=(i, j),
            vmax=ymax,
            fmt=fmt,
            title=f"output channel {out_channel}",
        )
        terms = " + ".join(_num(p, fmt) for p in f["partials"])
        ax_out.set_xlabel(f"y[{i},{j}] = {terms}\n + bias {_num(b, fmt)} = {format(f['value'], fmt)}", fontsize=9)
        fig.suptitle(
            f"output ({i}, {j}): the window starts at padded row {i * a.stride[0]}, column {j * a.stride[1]}",
            fontsize=10,
        )
        return []

    return _make(fig, draw, frames, values, "window sum")


# ---------------------------------------------------------------- chapter 2: the patch matrix


def patch_matrix(
    x, weight, bias=None, stride=1, padding=0, dilation=1, out_channel: int = 0, max_frames: int = 12, dpi: int = DPI
) -> Animation:
    """The window beside the patch matrix ``cols = im2col(x)``: its column lights up, the output pixel is filled.

    Left: channel 0 of the padded input with the window of output (i, j); middle: ``cols`` (C*kh*kw x L) with
    column ``l = i*Wo + j`` outlined, and the filter's row ``W_row`` above it; right: the output channel
    ``out_channel``, pixel (i, j) = ``W_row @ cols[:, l] + b`` just written.

    ``frames[t]`` has ``l``, ``i``, ``j``, ``column`` (the C*kh*kw entries of ``cols[:, l]``) and ``value``;
    ``values`` is the output channel (equal to ``F.conv2d(...)[0, out_channel]``).
    """
    a = _single_image_args(x, weight, bias, stride, padding, dilation, out_channel)
    O, C, kh, kw = a.weight.shape
    Ho, Wo = a.output_hw
    ph, pw = a.padding
    xd = a.x.detach().double()
    xp = F.pad(xd, (pw, pw, ph, ph))[0]
    cols = im2col(xd, (kh, kw), a.stride, a.padding, a.dilation)[0]  # C*kh*kw x L
    W_row = a.weight[out_channel].detach().double().reshape(1, -1)  # 1 x C*kh*kw
    b = float(a.bias[out_channel]) if a.bias is not None else 0.0
    y = (W_row @ cols)[0] + b  # L
    L = min(Ho * Wo, max_frames)
    frames = [dict(l=l, i=l // Wo, j=l % Wo, column=cols[:, l].tolist(), value=float(y[l])) for l in range(L)]
    values = y.reshape(Ho, Wo).to(a.x.dtype)
    fmt = _fmt(torch.cat([xp.flatten(), W_row.flatten(), y]).numpy())
    K = C * kh * kw
    Hp, Wp = xp.shape[1:]

    fig = plt.figure(figsize=(min(max_fig_width, 7.8), 3.6 if K <= 12 else 4.2), dpi=dpi)
    gs = fig.add_gridspec(
        2,
        3,
        width_ratios=[Wp, max(Ho * Wo, 3) * 0.9, max(Wo, 3) + 0.5],
        height_ratios=[1, max(K, 3)],
        wspace=0.35,
        hspace=0.08,
    )
    ax_in = fig.add_subplot(gs[:, 0])
    ax_w = fig.add_subplot(gs[0, 1])
    ax_cols = fig.add_subplot(gs[1, 1])
    ax_out = fig.add_subplot(gs[:, 2])
    ylabels = [f"{c},{u},{v}" for c in range(C) for u in range(kh) for v in range(kw)] if K <= 27 else False
    xmax = float(xp.abs().max()) or 1.0
    ymax = float(y.abs().max()) or 1.0

    show_grid(
        xp[0],
        ax=ax_in,
        padding=(ph, pw),
        fmt=fmt,
        vmax=xmax,
        axis_labels=False,
        annot=Hp * Wp <= 100,
        title="input, channel 0" if C > 1 else "input (padded)",
    )
    show_matrix(W_row, ax=ax_w, role="kernel", annot=False, xticklabels=False, yticklabels=False)
    ax_w.set_ylabel("W_row", rotation=0, ha="right", va="center", fontsize=8)
    show_matrix(
        cols, ax=ax_cols, annot=K * Ho * Wo <= 150, fmt=fmt, vmax=xmax, xlabel="patch l = i*Wo + j", yticklabels=ylabels
    )
    ax_cols.tick_params(labelsize=6)
    ax_cols.tick_params(axis="y", labelrotation=0)
    ax_cols.set_ylabel("row (c, u, v)", fontsize=8)
    dynamic = _Dynamic()

    def draw(t):
        f = frames[t]
        l, i, j = f["l"], f["i"], f["j"]
        dynamic.clear()
        dynamic.add(*_window_artists(ax_in, i, j, (kh, kw), a.stride, a.dilation))
        dynamic.add(outline(ax_cols, 0, l, K, 1))
        ax_w.set_title(f"W_row @ cols[:, {l}] + b = {format(f['value'], fmt)}", fontsize=9)
        ax_out.clear()
        known = np.zeros((Ho, Wo), dtype=bool)
        known.flat[: t + 1] = True
        _partial_grid(
            ax_out,
            values.double().numpy(),
            known,
            current=(i, j),
            vmax=ymax,
            fmt=fmt,
            title=f"output channel {out_channel}",
        )
        fig.suptitle(f"window ({i}, {j}) = column {l} of cols", fontsize=10)
        return []

    return _make(fig, draw, frames, values, "patch matrix")


# ---------------------------------------------------------------- chapter 3: a row of the convolution matrix


def toeplitz_row(
    x, weight, bias=None, stride=1, padding=0, dilation=1, out_channel: int = 0, max_frames: int = 12, dpi: int = DPI
) -> Animation:
    """The same step as one row of the convolution matrix ``M`` against the flattened input.

    Top: the rows of ``M`` that write output channel ``out_channel`` (Ho*Wo x C*H*W, zeros white), row ``l``
    outlined; below it the flattened input ``x.flatten()`` as a row, the entries that row reads outlined; right:
    the output as a column, entry ``l = M[l] @ x.flatten() + b`` filled in.

    ``frames[t]`` has ``l``, ``i``, ``j``, ``reads`` (the input indices row l's window covers) and ``value``;
    ``values`` is the output channel (equal to ``F.conv2d(...)[0, out_channel]``); ``M`` is built by
    :func:`convlib.conv_matrix` (its shape is in every frame's ``M_shape``).
    """
    a = _single_image_args(x, weight, bias, stride, padding, dilation, out_channel)
    O, C, kh, kw = a.weight.shape
    Ho, Wo = a.output_hw
    L = Ho * Wo
    xd = a.x[0].detach().double()  # C x H x W (already padded if padding was an asymmetric 'same')
    M = conv_matrix(a.weight.detach().double(), tuple(xd.shape), a.stride, a.padding, a.dilation, sparse=False)
    M_o = M[out_channel * L : (out_channel + 1) * L]  # L x C*H*W
    x_flat = xd.flatten()
    b = float(a.bias[out_channel]) if a.bias is not None else 0.0
    y = M_o @ x_flat + b
    n = min(L, max_frames)
    # the input pixels each row reads (its window's taps that fall inside the input, whatever their weight)
    taps = conv_matrix(
        torch.ones_like(a.weight, dtype=torch.float64), tuple(xd.shape), a.stride, a.padding, a.dilation, sparse=False
    )[out_channel * L : (out_channel + 1) * L]
    frames = [
        dict(
            l=l,
            i=l // Wo,
            j=l % Wo,
            reads=torch.nonzero(taps[l]).flatten().tolist(),
            value=float(y[l]),
            M_shape=tuple(M.shape),
        )
        for l in range(n)
    ]
    values = y.reshape(Ho, Wo).to(a.x.dtype)
    fmt = _fmt(torch.cat([x_flat, M_o.flatten(), y]).numpy())
    D = x_flat.numel()

    fig = plt.figure(figsize=(min(max_fig_width, 7.8), 3.4), dpi=dpi)
    gs = fig.add_gridspec(
        2, 2, width_ratios=[max(D, 8), max(D / 12, 2)], height_ratios=[max(L, 3), 1.3], wspace=0.05, hspace=0.35
    )
    ax_M = fig.add_subplot(gs[0, 0])
    ax_x = fig.add_subplot(gs[1, 0])
    ax_y = fig.add_subplot(gs[0, 1])
    wmax = float(M_o.abs().max()) or 1.0
    xmax = float(x_flat.abs().max()) or 1.0
    ymax = float(y.abs().max()) or 1.0
    step = max(1, D // 12)
    xt = list(range(0, D, step))

    show_matrix(
        M_o,
        ax=ax_M,
        role="kernel",
        annot=False,
        vmax=wmax,
        linewidths=0,
        xticklabels=False,
        ylabel="row l (output pixel)",
    )
    ax_M.tick_params(labelsize=6)
    ax_M.tick_params(axis="y", labelrotation=0)
    show_matrix(
        x_flat.reshape(1, -1), ax=ax_x, annot=False, vmax=xmax, linewidths=0, yticklabels=False, xticklabels=False
    )
    ax_x.set_xticks(np.array(xt) + 0.5, labels=xt, fontsize=6, rotation=0)
    ax_x.set_xlabel("x.flatten(): index c*H*W + h*W + w", fontsize=8)
    dynamic = _Dynamic()

    def draw(t):
        f = frames[t]
        l = f["l"]
        dynamic.clear()
        dynamic.add(outline(ax_M, l, 0, 1, D))
        ax_M.set_title(f"M (rows of output channel {out_channel}): row {l} = output ({f['i']}, {f['j']})", fontsize=9)
        for r in f["reads"]:
            dynamic.add(outline(ax_x, 0, r, lw=1.5), outline(ax_M, l, r, lw=1.0, color="black"))
        ax_y.clear()
        known = np.zeros((L, 1), dtype=bool)
        known[: t + 1] = True
        _partial_grid(ax_y, y.reshape(L, 1).numpy(), known, current=(l, 0), vmax=ymax, fmt=fmt, annot=L <= 16)
        ax_y.set_xticks([])
        ax_y.set_title("y", fontsize=9)
        ax_y.tick_params(labelsize=6)
        fig.suptitle(
            f"y[{l}] = M[{l}] @ x.flatten() + b = {format(f['value'], fmt)}: the row reads "
            f"{len(f['reads'])} of the {D} inputs (outlined)",
            fontsize=10,
        )
        return []

    return _make(fig, draw, frames, values, "Toeplitz row")


# ---------------------------------------------------------------- chapter 4: transposed convolution


def transposed_stamp(
    x,
    weight,
    stride=1,
    padding=0,
    output_padding=0,
    dilation=1,
    out_channel: int = 0,
    max_frames: int = 12,
    dpi: int = DPI,
) -> Animation:
    """Transposed convolution as stamping: each input pixel adds ``x[i, j] * kernel`` into the output.

    ``x`` is C x H x W (or 1 x C x H x W), ``weight`` is C x O x kh x kw, as for ``F.conv_transpose2d``
    (groups=1, no bias). Pixel (i, j) stamps ``sum_c x[c, i, j] * weight[c, out_channel]`` at rows
    ``i*s .. i*s + d(kh-1)`` of the *full* output; overlapping stamps add up. The full output is cropped by
    ``padding`` on each side (and grown by ``output_padding`` at the bottom/right) to give PyTorch's output.
    Built from ``col2im``: the stamps are the columns of ``W^T @ x``, added back where they belong.

    ``frames[t]`` has ``i``, ``j``, ``scale`` (the pixel value(s) per channel) and ``canvas`` (the full output
    after this stamp, as nested lists); ``values`` is the cropped output after every stamp, equal to
    ``F.conv_transpose2d(x, weight, None, stride, padding, output_padding, 1, dilation)[0, out_channel]``
    when H*W <= max_frames.
    """
    check_tensor(x, "input")
    check_tensor(weight, "weight")
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(
                f"the animations draw one image: pass C x H x W or 1 x C x H x W, got shape {tuple(x.shape)}"
            )
        x = x[0]
    if x.dim() != 3 or weight.dim() != 4:
        raise ValueError(
            f"x must be C x H x W and weight C x O x kh x kw, got shapes {tuple(x.shape)} and {tuple(weight.shape)}"
        )
    if not (x.is_floating_point() and weight.is_floating_point()):
        raise TypeError("x and weight must be floating-point tensors")
    C, H, W = x.shape
    if weight.shape[0] != C:
        raise ValueError(
            f"weight.shape[0] must equal the input's {C} channels (layout C x O x kh x kw), got {tuple(weight.shape)}"
        )
    _, O, kh, kw = weight.shape
    if not 0 <= out_channel < O:
        raise ValueError(f"out_channel must be in [0, {O}), got {out_channel}")
    (sh, sw) = pair(stride, "stride", minimum=1)
    (ph, pw) = pair(padding, "padding", minimum=0)
    (oph, opw) = pair(output_padding, "output_padding", minimum=0)
    (dh, dw) = pair(dilation, "dilation", minimum=1)
    if oph >= max(sh, dh) or opw >= max(sw, dw):
        raise ValueError(
            f"output_padding must be smaller than stride or dilation (as in PyTorch), got "
            f"output_padding={output_padding}, stride={stride}, dilation={dilation}"
        )
    Hf = (H - 1) * sh + dh * (kh - 1) + 1 + oph  # the full (uncropped) output
    Wf = (W - 1) * sw + dw * (kw - 1) + 1 + opw
    Hout, Wout = Hf - 2 * ph, Wf - 2 * pw
    if Hout < 1 or Wout < 1:
        raise ValueError(f"padding={padding} crops the whole {Hf}x{Wf} output away")
    # The stamps cover the first Hf - oph rows and Wf - opw columns; output_padding adds rows/columns no stamp
    # reaches (zeros here, the bias in a layer). Build the stamps on the covered part, then pad.
    Hs, Ws = Hf - oph, Wf - opw
    assert out_size(Hs, kh, sh, 0, dh) == H and out_size(Ws, kw, sw, 0, dw) == W
    xd = x.detach().double()
    wd = weight[:, out_channel : out_channel + 1].detach().double()  # C x 1 x kh x kw
    cols = wd.reshape(C, kh * kw).T @ xd.reshape(C, H * W)  # kh*kw x H*W: column (i, j) is the stamp of (i, j)
    n = min(H * W, max_frames)
    frames = []
    canvases = []
    for t in range(n):
        partial = cols.clone()
        partial[:, t + 1 :] = 0
        canvas = col2im(partial, (Hs, Ws), (kh, kw), (sh, sw), 0, (dh, dw))[0]  # the full output so far
        canvas = torch.nn.functional.pad(canvas, (0, opw, 0, oph))
        canvases.append(canvas)
        i, j = t // W, t % W
        frames.append(dict(i=i, j=j, scale=xd[:, i, j].tolist(), canvas=canvas.tolist()))
    values = canvases[-1][ph : ph + Hout, pw : pw + Wout].to(x.dtype)
    fmt = _fmt(torch.cat([xd.flatten(), wd.flatten(), canvases[-1].flatten()]).numpy())
    cmax = max(float(c.abs().max()) for c in canvases) or 1.0
    smax = max(float(cols.abs().max()), 1e-12)

    fig = plt.figure(figsize=(min(max_fig_width, 7.8), 3.2), dpi=dpi)
    gs = fig.add_gridspec(1, 3, width_ratios=[max(W, 2) + 0.5, kw + 0.5, Wf + 0.5], wspace=0.35)
    ax_x, ax_s, ax_y = (fig.add_subplot(gs[0, k]) for k in range(3))

    show_grid(xd[0], ax=ax_x, fmt=fmt, axis_labels=False, title="input x" + (" (channel 0)" if C > 1 else ""))
    dynamic = _Dynamic()

    def draw(t):
        f = frames[t]
        i, j = f["i"], f["j"]
        dynamic.clear()
        for ax in (ax_s, ax_y):
            ax.clear()
        dynamic.add(outline(ax_x, i, j))
        stamp = cols[:, t].reshape(kh, kw)
        show_grid(stamp, ax=ax_s, role="kernel", fmt=fmt, vmax=smax, axis_labels=False)
        ax_s.set_title(f"x[{i},{j}] * W" if C == 1 else "sum_c x[c,i,j] * W[c]", fontsize=9)
        canvas = canvases[t].numpy()
        known = np.zeros_like(canvas, dtype=bool)
        for s in range(t + 1):
            si, sj = s // W, s % W
            for u in range(kh):
                for v in range(kw):
                    known[si * sh + u * dh, sj * sw + v * dw] = True
        _partial_grid(
            ax_y,
            canvas,
            known,
            vmax=cmax,
            fmt=fmt,
            title="output (full; cropped part grey-edged)" if (ph or pw) else "output",
        )
        for u in range(kh):
            for v in range(kw):
                outline(ax_y, i * sh + u * dh, j * sw + v * dw, lw=2.0)
        if ph or pw:
            outline(ax_y, ph, pw, Hout, Wout, color=PALETTE["output"], lw=2.0, linestyle="--")
        fig.suptitle(
            f"stamp {t + 1} of {H * W}: input pixel ({i}, {j}) adds its scaled kernel at "
            f"({i * sh}, {j * sw}); overlaps add up",
            fontsize=10,
        )
        return []

    return _make(fig, draw, frames, values, "transposed convolution")


# ---------------------------------------------------------------- stride / padding / dilation, one frame each

DEFAULT_SETTINGS = (
    dict(stride=1, padding=0, dilation=1),
    dict(stride=2, padding=0, dilation=1),
    dict(stride=1, padding=1, dilation=1),
    dict(stride=2, padding=1, dilation=1),
    dict(stride=1, padding=0, dilation=2),
    dict(stride=2, padding=2, dilation=2),
)


def settings_explorer(size=7, kernel_size=3, settings=DEFAULT_SETTINGS, dpi: int = 100) -> Animation:
    """One frame per (stride, padding, dilation) setting: the windows on the padded input and the output size.

    ``size`` (H, or (H, W)) and ``kernel_size`` (k or (kh, kw)) are fixed; ``settings`` is a sequence of dicts with
    ``stride``, ``padding``, ``dilation`` (each an int or a pair; missing ones default to 1, 0, 1). Each frame
    draws the padded input (padding grey), the taps of the first window outlined, a dot where every window
    starts, and the Ho x Wo output with the formula filled in.

    ``frames[t]`` has the setting and ``Ho``, ``Wo`` (from the formula); ``values`` is a tensor of the (Ho, Wo)
    per frame, to compare with ``F.conv2d(...).shape``.
    """
    H, W = pair(size, "size", minimum=1)
    kh, kw = pair(kernel_size, "kernel_size", minimum=1)
    settings = list(settings)
    if not settings:
        raise ValueError("settings must hold at least one setting")
    frames = []
    for st in settings:
        unknown = set(st) - {"stride", "padding", "dilation"}
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}: use stride, padding, dilation")
        s = pair(st.get("stride", 1), "stride", minimum=1)
        p = pair(st.get("padding", 0), "padding", minimum=0)
        d = pair(st.get("dilation", 1), "dilation", minimum=1)
        conv2d_args(torch.zeros(1, 1, H, W), torch.zeros(1, 1, kh, kw), None, s, p, d, 1)  # fits? clear errors
        Ho, Wo = out_size(H, kh, s[0], p[0], d[0]), out_size(W, kw, s[1], p[1], d[1])
        frames.append(dict(stride=s, padding=p, dilation=d, Ho=Ho, Wo=Wo))
    values = torch.tensor([[f["Ho"], f["Wo"]] for f in frames])
    Hp_max = max(H + 2 * f["padding"][0] for f in frames)
    Wp_max = max(W + 2 * f["padding"][1] for f in frames)
    Ho_max = max(f["Ho"] for f in frames)
    Wo_max = max(f["Wo"] for f in frames)

    fig = plt.figure(figsize=(6.4, 3.8), dpi=dpi)
    gs = fig.add_gridspec(1, 2, width_ratios=[Wp_max, max(Wo_max, 3)], wspace=0.25, top=0.78, bottom=0.12)
    ax_in = fig.add_subplot(gs[0, 0])
    ax_out = fig.add_subplot(gs[0, 1])

    def draw(t):
        f = frames[t]
        (sh, sw), (ph, pw), (dh, dw) = f["stride"], f["padding"], f["dilation"]
        Ho, Wo = f["Ho"], f["Wo"]
        ax_in.clear()
        ax_out.clear()
        grid = np.ones((H + 2 * ph, W + 2 * pw))
        show_grid(grid, ax=ax_in, padding=(ph, pw), annot=False, vmax=2.0, axis_labels=False)
        for r, c in _window_cells(0, 0, (kh, kw), (sh, sw), (dh, dw)):
            outline(ax_in, r, c, lw=2.5)
        starts = [(i * sh + 0.5, j * sw + 0.5) for i in range(Ho) for j in range(Wo)]
        ax_in.scatter([c for _, c in starts], [r for r, _ in starts], s=18, color=PALETTE["kernel"], zorder=3)
        ax_in.set_xlim(-0.2, Wp_max + 0.2)
        ax_in.set_ylim(Hp_max + 0.2, -0.2)
        for spine in ax_in.spines.values():
            spine.set_visible(False)
        ax_in.xaxis.tick_top()
        ax_in.set_title(
            f"input {H}x{W} padded; outlined: the taps of window (0, 0)\n"
            f"dots: where each of the {Ho * Wo} windows starts",
            fontsize=8,
            pad=14,
        )
        for r in range(Ho):
            for c in range(Wo):
                ax_out.add_patch(Rectangle((c, r), 1, 1, facecolor=PALETTE["output"], edgecolor="white", lw=1.0))
        ax_out.set_xticks(np.arange(Wo) + 0.5, labels=range(Wo))
        ax_out.set_yticks(np.arange(Ho) + 0.5, labels=range(Ho))
        ax_out.tick_params(length=0, labelsize=7)
        ax_out.xaxis.tick_top()
        ax_out.set_aspect("equal")
        ax_out.set_xlim(-0.2, Wo_max + 0.2)
        ax_out.set_ylim(Ho_max + 0.2, -0.2)
        ax_out.set_title(f"output {Ho}x{Wo}", fontsize=9, pad=14)
        for spine in ax_out.spines.values():
            spine.set_visible(False)
        ax_out.set_xlabel(
            f"Ho = floor(({H} + 2*{ph} - {dh}*({kh}-1) - 1) / {sh}) + 1 = {Ho}\n"
            f"Wo = floor(({W} + 2*{pw} - {dw}*({kw}-1) - 1) / {sw}) + 1 = {Wo}",
            fontsize=8,
        )
        fig.suptitle(
            f"kernel {kh}x{kw}, stride {sh if sh == sw else (sh, sw)}, padding "
            f"{ph if ph == pw else (ph, pw)}, dilation {dh if dh == dw else (dh, dw)}",
            fontsize=10,
        )
        return []

    anim = _make(fig, draw, frames, values, "stride / padding / dilation", interval=1500)
    return anim


# ---------------------------------------------------------------- chapter 5: a filter over a real image


def _check_max_frames(max_frames) -> int:
    if not isinstance(max_frames, int) or isinstance(max_frames, bool):
        raise TypeError(f"max_frames must be an int, got {max_frames!r}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    return max_frames


def _picture(xp: torch.Tensor, ph: int, pw: int) -> np.ndarray:
    """The padded input as an RGB array to look at: a 3-channel image in [0, 1] as it is, anything else as the
    mean over the channels in grey (scaled to its range); the zero padding light grey."""
    C, Hp, Wp = xp.shape
    if C == 3 and float(xp.min()) >= 0.0 and float(xp.max()) <= 1.0:
        rgb = xp.permute(1, 2, 0).numpy().copy()
    else:
        g = xp.mean(0).numpy()
        lo, hi = float(g.min()), float(g.max())
        g = (g - lo) / ((hi - lo) or 1.0)
        rgb = np.repeat(g[:, :, None], 3, axis=2)
    pad = np.zeros((Hp, Wp), dtype=bool)
    if ph:
        pad[:ph] = pad[Hp - ph :] = True
    if pw:
        pad[:, :pw] = pad[:, Wp - pw :] = True
    rgb[pad] = plt.matplotlib.colors.to_rgb(PALETTE["padding"])
    return rgb


def feature_map(
    x, weight, bias=None, stride=1, padding=0, dilation=1, out_channel: int = 0, max_frames: int = 8, dpi: int = DPI
) -> Animation:
    """One filter over a whole (real) image as im2col and one matrix product, a band of output rows per frame.

    Left: the (padded) input as a picture (a 3-channel image with values in [0, 1] in colour, anything else as
    the channel mean in grey), the band of rows the frame's windows read outlined and the window of the band's
    first output bold. Middle: ``W_row`` (the filter ``weight[out_channel]`` flattened, as a column) beside the
    patch matrix ``cols`` (C*kh*kw x Ho*Wo), the band's block of columns outlined: the output rows are
    ``W_row @ cols[:, l0:l1] + b``. Right: the feature map, filled in up to the band. The Ho output rows are
    grouped evenly into at most ``max_frames`` frames, so the last frame always shows the whole map.

    ``frames[t]`` has ``rows`` (i0, i1), ``columns`` (l0, l1) = (i0*Wo, i1*Wo), ``column`` (``cols[:, l0]``,
    the window of output (i0, 0)), ``value`` (that output) and ``outputs`` (the band's rows, nested lists);
    ``values`` is the whole feature map, equal to ``F.conv2d(x, weight, bias, ...)[0, out_channel]``.
    """
    a = _single_image_args(x, weight, bias, stride, padding, dilation, out_channel)
    max_frames = _check_max_frames(max_frames)
    O, C, kh, kw = a.weight.shape
    Ho, Wo = a.output_hw
    (sh, _), (ph, pw), (dh, dw) = a.stride, a.padding, a.dilation
    xd = a.x.detach().double()
    cols = im2col(xd, (kh, kw), a.stride, a.padding, a.dilation)[0]  # C*kh*kw x L
    W_row = a.weight[out_channel].detach().double().reshape(1, -1)  # 1 x C*kh*kw
    b = float(a.bias[out_channel]) if a.bias is not None else 0.0
    y = (W_row @ cols)[0] + b  # L
    per = -(-Ho // max_frames)  # output rows per frame
    frames = []
    for i0 in range(0, Ho, per):
        i1 = min(Ho, i0 + per)
        l0, l1 = i0 * Wo, i1 * Wo
        frames.append(
            dict(
                rows=(i0, i1),
                columns=(l0, l1),
                column=cols[:, l0].tolist(),
                value=float(y[l0]),
                outputs=y[l0:l1].reshape(i1 - i0, Wo).tolist(),
            )
        )
    values = y.reshape(Ho, Wo).to(a.x.dtype)
    xp = F.pad(xd[0], (pw, pw, ph, ph))
    Hp, Wp = xp.shape[1:]
    K, L = cols.shape
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1

    fig = plt.figure(figsize=(min(max_fig_width, 7.8), 3.0), dpi=dpi)
    gs = fig.add_gridspec(
        1, 6, width_ratios=[2.2, 0.22, 0.1, 3.0, 0.25, 2.2], wspace=0.04, left=0.02, right=0.98, top=0.8, bottom=0.14
    )
    ax_in, ax_w, ax_cols, ax_out = (fig.add_subplot(gs[0, k]) for k in (0, 2, 3, 5))
    ax_in.imshow(_picture(xp, ph, pw), extent=(0, Wp, Hp, 0), interpolation="nearest")
    ax_in.set_xticks([])
    ax_in.set_yticks([])
    ax_in.set_title(
        f"input {C}x{a.x.shape[2]}x{a.x.shape[3]}" + (f", padding {ph if ph == pw else (ph, pw)}" if ph or pw else ""),
        fontsize=8,
    )
    wmax = float(W_row.abs().max()) or 1.0
    wsigned = bool(W_row.min() < 0)
    ax_w.imshow(
        W_row.T.numpy(),
        cmap=role_cmap("kernel", wsigned),
        vmin=-wmax if wsigned else 0,
        vmax=wmax,
        aspect="auto",
        interpolation="nearest",
        extent=(0, 1, K, 0),
    )
    ax_w.set_xticks([])
    ax_w.set_yticks([])
    ax_w.set_ylabel("W_row", fontsize=7, labelpad=1)
    cmax = float(cols.abs().max()) or 1.0
    csigned = bool(cols.min() < 0)
    ax_cols.imshow(
        cols.numpy(),
        cmap=role_cmap("input", csigned),
        vmin=-cmax if csigned else 0,
        vmax=cmax,
        aspect="auto",
        interpolation="antialiased",
        extent=(0, L, K, 0),
    )
    ax_cols.set_yticks([])
    ax_cols.tick_params(labelsize=6, length=2)
    ax_cols.set_xlabel("patch l = i*Wo + j", fontsize=7, labelpad=1)
    ax_cols.set_title(f"patch matrix cols: {K} x {L}, a column per window", fontsize=8)
    # the colour scale saturates at the 98th percentile of |y|: a few strong edges would leave the rest pale
    ymax = float(torch.quantile(y.abs(), 0.98)) or float(y.abs().max()) or 1.0
    ysigned = bool(y.min() < 0)
    ycmap = role_cmap("output", ysigned)
    ynorm = Normalize(-ymax, ymax) if ysigned else Normalize(0, ymax)
    ax_out.set_xticks([])
    ax_out.set_yticks([])
    ax_out.set_title(f"output channel {out_channel}, {Ho}x{Wo}", fontsize=8)
    Y = y.reshape(Ho, Wo).numpy()
    dynamic = _Dynamic()
    out_image = [None]

    def draw(t):
        f = frames[t]
        (i0, i1), (l0, l1) = f["rows"], f["columns"]
        dynamic.clear()
        if out_image[0] is not None:
            out_image[0].remove()
        band_h = (i1 - 1 - i0) * sh + span_h
        dynamic.add(outline(ax_in, i0 * sh, 0, band_h, Wp, lw=1.2, linestyle="--"))
        dynamic.add(outline(ax_in, i0 * sh, 0, span_h, span_w, lw=2.0))
        dynamic.add(outline(ax_cols, 0, l0, K, l1 - l0, lw=1.5))
        rgba = ycmap(ynorm(Y))
        rgba[i1:] = (1.0, 1.0, 1.0, 1.0)
        out_image[0] = ax_out.imshow(rgba, extent=(0, Wo, Ho, 0), interpolation="nearest")
        dynamic.add(outline(ax_out, i0, 0, i1 - i0, Wo, lw=1.5))
        rows = f"row {i0}" if i1 - i0 == 1 else f"rows {i0}-{i1 - 1}"
        fig.suptitle(
            f"output {rows} = W_row @ cols[:, {l0}:{l1}]"
            + (" + b" if a.bias is not None else "")
            + f": {l1 - l0} windows, one product",
            fontsize=10,
        )
        return []

    return _make(fig, draw, frames, values, "feature map", interval=700)


# ---------------------------------------------------------------- chapter 6: one offset per tap


def tap_slices(
    x, weight, bias=None, stride=1, padding=0, dilation=1, out_channel: int = 0, dpi: int = 100
) -> Animation:
    """The fast path's key idea, one frame per kernel tap (u, v): every output pixel q reads the flat input
    at ``q + offset(u, v)``, so the tap reads one contiguous slice, and the output accumulates tap by tap.

    This is ``convlib.conv2d``'s ``layout='exact'`` (stride 1, an output as wide as the input): the slices
    come from ``convlib.fast.conv2d_plan`` (taps and edge corrections). Top: ``x.flatten()`` per channel with
    the tap's slice outlined, and below it the tap's products ``W[o, :, u, v] . x[:, q + offset]`` drawn under
    the pixels they read, i.e. the output strip shifted by the offset; a value read across a row edge (the
    neighbouring row's last or first pixel, where padding should be) is crossed out: ``convlib.conv2d``
    subtracts it afterwards. Bottom: the input as an image with the same pixels outlined, the kernel with the
    tap outlined, and the output accumulated so far (the bias first), the outputs this tap wrote outlined.

    ``frames[t]`` (t = u*kw + v) has ``u``, ``v``, ``offset``, ``weight`` (``W[o, :, u, v]``), ``writes``
    (q0, q1): the outputs the slice is multiplied into, ``reads`` (q0 + offset, q1 + offset) (both ``(0, 0)``
    for a tap that reads only padding), ``wrapped``: the (q, q + offset) pairs corrected afterwards,
    ``contribution`` (the tap's term, corrected, flat) and ``partial`` (Ho x Wo, after this tap), which equals
    ``F.conv2d`` with only the first t + 1 taps of the kernel kept; ``values`` is the last ``partial``, equal to
    ``F.conv2d(x, weight, bias, ...)[0, out_channel]``.
    """
    a = _single_image_args(x, weight, bias, stride, padding, dilation, out_channel)
    O, C, kh, kw = a.weight.shape
    if a.stride != (1, 1):
        raise ValueError(
            f"tap_slices draws the stride-1 fast path (a tap reads a contiguous slice only with "
            f"stride 1), got stride={stride}"
        )
    (ph, pw), (dh, dw) = a.padding, a.dilation
    if dw * (kw - 1) != 2 * pw:
        raise ValueError(
            f"tap_slices draws layout='exact', which needs an output as wide as the input: "
            f"dilation * (kw - 1) == 2 * padding along the width, got kw={kw}, padding={pw}, "
            f"dilation={dw}"
        )
    H, W = a.x.shape[2:]
    Ho, Wo = a.output_hw
    L = Ho * Wo
    plan = conv2d_plan(1, C, H, W, O, kh, kw, (1, 1), (ph, pw), (dh, dw), 1, mode="tap", layout="exact")
    xd = a.x[0].detach().double()  # C x H x W
    xf = xd.reshape(C, H * W)
    wd = a.weight[out_channel].detach().double()  # C x kh x kw
    b = float(a.bias[out_channel]) if a.bias is not None else 0.0
    acc = torch.full((L,), b, dtype=torch.float64)
    frames = []
    for t, (dj, off, r0, r1) in enumerate(plan.taps):
        u, v = divmod(t, kw)
        di = (off - dj) // W
        w_t = wd[:, u, v]  # C
        contribution = torch.zeros(L, dtype=torch.float64)
        q0 = q1 = 0
        if r1 > r0:
            q0, q1 = r0 * W, r1 * W  # every output of rows r0..r1-1 (Wo = W)
            if dj < 0 and r0 + di == 0:  # the first outputs would read before the image's first pixel
                q0 -= dj
            if dj > 0 and r1 + di == H:  # the last outputs would read past its last pixel
                q1 -= dj
            contribution[q0:q1] = w_t @ xf[:, q0 + off : q1 + off]  # one product with a contiguous slice
        wrapped = []
        for _, in_col, out_col, c0, c1, in_row0 in (c for c in plan.corrections if c[0] == t):
            for k, i in enumerate(range(c0, c1)):
                q, q_in = i * W + out_col, (in_row0 + k) * W + in_col
                assert q0 <= q < q1 and q_in == q + off  # what the slice read there, in the wrong row
                contribution[q] -= w_t @ xf[:, q_in]  # the edge correction
                wrapped.append((q, q_in))
        acc = acc + contribution
        reads = (q0 + off, q1 + off) if q1 > q0 else (0, 0)
        frames.append(
            dict(
                t=t,
                u=u,
                v=v,
                offset=off,
                weight=w_t.tolist(),
                writes=(q0, q1),
                reads=reads,
                wrapped=sorted(wrapped),
                contribution=contribution.tolist(),
                partial=acc.reshape(Ho, Wo).tolist(),
            )
        )
    values = acc.reshape(Ho, Wo).to(a.x.dtype)

    D = H * W
    offs = [f["offset"] for f in frames]
    lo, hi = min(0, min(offs)), max(D, L + max(offs))
    fmt = _fmt(
        torch.cat(
            [xf.flatten(), wd.flatten(), torch.tensor([f for fr in frames for f in fr["contribution"]]), acc]
        ).numpy()
    )
    xmax = float(xf.abs().max()) or 1.0
    cmax = max(max(abs(v) for v in f["contribution"]) for f in frames) or 1.0
    pmax = max(float(np.abs(np.asarray(f["partial"])).max()) for f in frames) or 1.0
    annot_flat = hi - lo <= 48

    fig = plt.figure(figsize=(min(max_fig_width, 7.8), 4.3), dpi=dpi)
    gs = fig.add_gridspec(
        2,
        3,
        height_ratios=[C + 2.6, max(H, Ho, kh if C == 1 else C)],
        width_ratios=[W, (kw if C == 1 else kh * kw) + 1, Wo],
        hspace=0.35,
        wspace=0.3,
        left=0.15,
        right=0.98,
        top=0.84,
        bottom=0.05,
    )
    ax_f = fig.add_subplot(gs[0, :])
    ax_x, ax_k, ax_y = (fig.add_subplot(gs[1, k]) for k in range(3))
    # the flat input: C rows at y = 0..C, columns = flat index
    xcmap = role_cmap("input", bool(xf.min() < 0))
    xnorm = Normalize(-xmax, xmax) if xf.min() < 0 else Normalize(0, xmax)
    ax_f.imshow(xcmap(xnorm(xf.numpy())), extent=(0, D, C, 0), interpolation="nearest")
    for r in range(1, H):  # the image's rows, one after the other
        ax_f.axvline(r * W, ymin=0, ymax=1, color="#888888", lw=0.8)
    ax_f.set_xlim(lo - 0.2, hi + 0.2)
    ax_f.set_ylim(C + 2.6, -0.2)
    ax_f.set_aspect("auto")
    ax_f.set_yticks(
        [c + 0.5 for c in range(C)] + [C + 1.5],
        labels=[("x.flatten()" if C == 1 else f"x[{c}].flatten()") for c in range(C)]
        + ["tap's products\nw * x.flat[q + offset]"],
    )
    ax_f.tick_params(axis="y", labelsize=7, length=0)
    ticks = [i for i in range(0, D, max(1, D // 20))]
    ax_f.xaxis.tick_top()
    ax_f.set_xticks(np.array(ticks) + 0.5, labels=ticks, fontsize=6)
    ax_f.tick_params(axis="x", length=0, pad=1)
    ax_f.set_xlabel("flat index (grey lines: where a row of the image ends)", fontsize=7, labelpad=2)
    ax_f.xaxis.set_label_position("top")
    for spine in ax_f.spines.values():
        spine.set_visible(False)
    if annot_flat:
        for c in range(C):
            for i in range(D):
                ax_f.text(
                    i + 0.5,
                    c + 0.5,
                    format(float(xf[c, i]), fmt),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if abs(xnorm(float(xf[c, i]))) > 0.6 else "black",
                )
    ax_x_grid = xd[0] if C == 1 else xd.mean(0)
    show_grid(
        ax_x_grid,
        ax=ax_x,
        fmt=fmt if C == 1 else _fmt(ax_x_grid.numpy()),
        vmax=xmax,
        axis_labels=False,
        annot=D <= 64,
        title="input x" if C == 1 else "input (channel mean)",
    )
    for lab in ax_x.get_xticklabels() + ax_x.get_yticklabels():
        lab.set_fontsize(6)
    ax_x.title.set_fontsize(9)
    kgrid = wd[0] if C == 1 else wd.reshape(C, kh * kw)
    show_grid(
        kgrid,
        ax=ax_k,
        role="kernel",
        fmt=fmt,
        axis_labels=False,
        title=f"W[{out_channel}, 0]" if C == 1 else f"W[{out_channel}]: C x (kh*kw)",
    )
    for lab in ax_k.get_xticklabels() + ax_k.get_yticklabels():
        lab.set_fontsize(6)
    ax_k.title.set_fontsize(9)
    ccmap = role_cmap("output", True)
    cnorm = Normalize(-cmax, cmax)
    dynamic = _Dynamic()

    def cross(ax, x0, y0):
        return ax.plot([x0 + 0.15, x0 + 0.85], [y0 + 0.15, y0 + 0.85], color="black", lw=1.2)[0]

    def draw(t):
        f = frames[t]
        u, v, off = f["u"], f["v"], f["offset"]
        (q0, q1), (s0, s1) = f["writes"], f["reads"]
        dynamic.clear()
        ax_y.clear()
        bad = {q for q, _ in f["wrapped"]}
        if q1 > q0:
            dynamic.add(outline(ax_f, 0, s0, C, s1 - s0, lw=2.0))  # the slice: one contiguous run per channel
            contrib = np.asarray(f["contribution"])
            for q in range(q0, q1):
                colour = (1.0, 1.0, 1.0, 1.0) if q in bad else ccmap(cnorm(contrib[q]))
                dynamic.add(
                    ax_f.add_patch(Rectangle((q + off, C + 1), 1, 1, facecolor=colour, edgecolor="#CCCCCC", lw=0.5))
                )
                if q in bad:
                    dynamic.add(cross(ax_f, q + off, C + 1), *[cross(ax_f, q + off, c) for c in range(C)])
                elif annot_flat:
                    dynamic.add(
                        ax_f.text(q + off + 0.5, C + 1.5, format(contrib[q], fmt), ha="center", va="center", fontsize=6)
                    )
            dynamic.add(outline(ax_f, C + 1, q0 + off, 1, q1 - q0, lw=1.2, color=PALETTE["output"]))
            for q in range(q0, q1, W):  # output row starts, labelled by their output index q
                dynamic.add(
                    ax_f.text(
                        q + off + 0.05, C + 2.1, f"q={q}", ha="left", va="top", fontsize=6, color=PALETTE["output"]
                    )
                )
            for s in range(s0, s1):
                r_, c_ = divmod(s, W)
                dynamic.add(outline(ax_x, r_, c_, lw=1.5))
                if s - off in bad:
                    dynamic.add(cross(ax_x, c_, r_))
        dynamic.add(outline(ax_k, u, v, lw=2.5) if C == 1 else outline(ax_k, 0, t, C, 1, lw=2.5))
        known = np.zeros((Ho, Wo), dtype=bool)
        for g in frames[: t + 1]:
            a0, a1 = g["writes"]
            known.flat[a0:a1] = True
        if a.bias is not None:
            known[:] = True
        _partial_grid(
            ax_y, np.asarray(f["partial"]), known, vmax=pmax, fmt=fmt, title=f"output after {t + 1} of {kh * kw} taps"
        )
        for q in range(q0, q1):
            i, j = divmod(q, Wo)
            outline(ax_y, i, j, lw=1.2)
        ax_y.title.set_fontsize(9)
        nw = len(f["wrapped"])
        w_txt = format(f["weight"][0], fmt) if C == 1 else f"W[{out_channel}, :, {u}, {v}]"
        what = f"reads x.flat[{s0}:{s1}] for outputs {q0}..{q1 - 1}" if q1 > q0 else "reads only padding"
        fig.suptitle(
            f"tap ({u}, {v}), weight {w_txt}: offset ({u * dh} - {ph})*{W} + ({v * dw} - {pw}) = {off}; "
            f"{what}"
            + (
                f"\n{nw} value{'s' if nw > 1 else ''} read across a row edge (crossed): subtracted afterwards"
                if nw
                else "\nno row edge crossed"
            ),
            fontsize=9,
        )
        return []

    return _make(fig, draw, frames, values, "one offset per tap", interval=1200)
