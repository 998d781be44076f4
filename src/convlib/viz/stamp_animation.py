"""Animation of a transposed convolution (chapter 4): every input pixel stamps its scaled kernel into the output."""

from __future__ import annotations

import numpy as np

from .frames import transposed_stamp_frames
from .grids import show_grid
from .player import DPI, READABLE, Animation, FrameArtists, fill_output, frame_figure, make_animation, margins
from .style import FONT, PALETTE, number_format, outline

__all__ = ["animate_transposed_stamp"]


def animate_transposed_stamp(
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
    """Transposed convolution as stamping: each input pixel adds its value times the kernel into the output.

    Left: the input X (channel 0) with pixel (i, j) outlined; middle: its stamp X[i, j] K (summed over the
    input channels when there are several); right: the full output growing, the cells the stamp just added to
    outlined; with ``padding`` the part a transposed convolution keeps is dashed (the tick labels are the
    output's own rows and columns, the cut border at -1). ``x``, ``weight`` and the arguments are those of
    ``F.conv_transpose2d``; ``frames`` and ``values`` are those of
    :func:`convlib.viz.frames.transposed_stamp_frames`.
    """
    fr = transposed_stamp_frames(x, weight, stride, padding, output_padding, dilation, out_channel, max_frames)
    canvases = [np.asarray(f["canvas"]) for f in fr.frames]
    fmt = number_format(fr.input, fr.stamps, canvases[-1])
    fig, ax_x, ax_s, ax_y = _stamp_panels(fr, canvases[0].shape, fmt, dpi)
    draw_output = _output_drawer(ax_y, fr, canvases, fmt)
    (C, H, W), (kh, kw), o = fr.input.shape, fr.kernel_size, fr.out_channel
    (ph, pw, _, _), (sh, sw) = fr.crop, fr.stride
    smax = float(fr.stamps.abs().max()) or 1.0
    stamp_title = "X[{i}, {j}]\u00b7K" if C == 1 else "\u03a3_c X[c, {i}, {j}]\u00b7K[c, " + f"{o}]"
    dynamic = FrameArtists()

    def draw(t):
        f = fr.frames[t]
        i, j = f["i"], f["j"]
        dynamic.clear()
        dynamic.add(outline(ax_x, i, j))
        ax_s.clear()
        title = stamp_title.format(i=i, j=j)
        stamp = fr.stamps[:, t].reshape(kh, kw)
        show_grid(
            stamp, ax=ax_s, role="kernel", fmt=fmt, vmax=smax, axis_labels=False, title=title, min_fontsize=READABLE
        )
        draw_output(t)
        where = f"at output row {i * sh - ph}, column {j * sw - pw}"
        text = f"stamp {t + 1} of {H * W}: input pixel ({i}, {j}) adds its scaled kernel {where}; overlaps add up"
        fig.suptitle(text, fontsize=FONT["title"])
        return []

    return make_animation(fig, draw, fr.frames, fr.values, fr.title)


def _output_drawer(ax, fr, canvases, fmt: str):
    """``draw(t)``: the full output after stamp t, the cells it added to outlined, the kept part dashed."""
    ph, pw, Hout, Wout = fr.crop
    Hf, Wf = canvases[0].shape
    ticks = (list(range(-ph, Hf - ph)), list(range(-pw, Wf - pw)))  # the output's own rows: the cut border at -1
    title = f"output Y[0, {fr.out_channel}]" + (" (kept: dashed)" if ph or pw else "")
    cmax = max(float(np.abs(c).max()) for c in canvases) or 1.0

    def draw(t):
        known = np.zeros((Hf, Wf), dtype=bool)
        for g in fr.frames[: t + 1]:
            known[tuple(np.asarray(g["cells"]).T)] = True
        fill_output(ax, canvases[t], known, None, fmt, title, vmax=cmax, ticks=ticks)
        for r, c in fr.frames[t]["cells"]:
            outline(ax, r, c, lw=2.0)
        if ph or pw:
            outline(ax, ph, pw, Hout, Wout, color=PALETTE["output"], lw=2.0, linestyle="--")

    return draw


def _stamp_panels(fr, canvas_hw, fmt: str, dpi: int):
    """The input (channel 0), room for the stamp and for the full output canvas."""
    (C, H, W), (kh, kw), (Hf, Wf) = fr.input.shape, fr.kernel_size, canvas_hw
    cell = min(0.5, 6.6 / (W + kw + Wf + 2.5))
    height = cell * max(Hf, H, kh) + 1.5
    fig = frame_figure(height, dpi)
    ratios = dict(width_ratios=[max(W, 2), kw, Wf])
    gs = fig.add_gridspec(1, 3, **ratios, **margins(height, 0.85, 0.35, left=0.05), wspace=0.35)
    ax_x, ax_s, ax_y = (fig.add_subplot(gs[0, k]) for k in range(3))
    title = "input X" + (" (channel 0)" if C > 1 else "")
    show_grid(fr.input[0], ax=ax_x, fmt=fmt, axis_labels=False, title=title, min_fontsize=READABLE)
    return fig, ax_x, ax_s, ax_y
