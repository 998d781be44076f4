"""Animations of one filter K[o] over one image: the window (chapter 1), the patch matrix (chapter 2), the
convolution matrix (chapter 3) and a whole real image in one product (chapter 5).

Each function takes ``F.conv2d``'s arguments plus the output channel o to draw, computes its frames with
:mod:`convlib.viz.frames` (whose ``frames`` and ``values`` the returned :class:`~convlib.viz.player.Animation`
carries, to check against PyTorch) and draws them: 8-inch frames at 120 dpi, no text under 10 pt, grids
counting the input's rows and columns (the zero padding at -1).
"""

from __future__ import annotations

import numpy as np
import torch

from .frames import feature_map_frames, patch_matrix_frames, toeplitz_row_frames, window_sum_frames
from .grids import padding_mask, show_grid
from .player import (
    DPI,
    READABLE,
    Animation,
    FrameArtists,
    fill_output,
    frame_figure,
    make_animation,
    margins,
    plus_bias,
    term,
    window_outline,
)
from .style import ELL, FONT, PALETTE, draw_cells, fits, number_format, outline, role_colors

__all__ = ["animate_window_sum", "animate_patch_matrix", "animate_toeplitz_row", "animate_feature_map"]


def _widest(t: torch.Tensor, fmt: str) -> int:
    """The number of characters of the widest entry of ``t`` written in ``fmt``."""
    return max(len(format(float(v) + 0.0, fmt)) for v in (t.max(), t.min()))


# ---------------------------------------------------------------- chapter 1: the window and its sum


def animate_window_sum(
    x, weight, bias=None, stride=1, padding=0, dilation=1, out_channel: int = 0, max_frames: int = 12, dpi: int = DPI
) -> Animation:
    """The window sliding over the padded multi-channel input; each frame fills in one output entry.

    Top row: the padded input channels X[c], the window of output (i, j) outlined in each; under each, the
    kernel channel K[o, c] and the sum of its products with the window. Right: output channel Y[0, o], filled in
    up to (i, j); the title adds the channel sums up to Y[0, o, i, j] (and the bias, if there is one). One frame
    per output position (row by row), at most ``max_frames``; ``frames`` and ``values`` are those of
    :func:`convlib.viz.frames.window_sum_frames`.
    """
    fr = window_sum_frames(x, weight, bias, stride, padding, dilation, out_channel, max_frames)
    fmt = number_format(fr.padded, fr.kernel, fr.output)
    fig, ax_in, ax_k, ax_out = _window_sum_panels(fr, fmt, dpi)
    (sh, sw), (top, _, left, _), o = fr.stride, fr.sides, fr.out_channel
    kernel = tuple(fr.kernel.shape[1:])
    dynamic = FrameArtists()

    def draw(t):
        f = fr.frames[t]
        i, j = f["i"], f["j"]
        dynamic.clear()
        for c, (ax, ak) in enumerate(zip(ax_in, ax_k)):
            dynamic.add(*window_outline(ax, i, j, kernel, fr.stride, fr.dilation))
            ak.set_xlabel(f"sum = {term(f['partials'][c], fmt)}", fontsize=READABLE, color=PALETTE["highlight"])
        fill_output(ax_out, fr.output.numpy(), t + 1, (i, j), fmt, f"output Y[0, {o}]")
        terms = " + ".join(term(p, fmt) for p in f["partials"]) + plus_bias(fr.bias, o, fmt)
        where = f"the window starts at input row {i * sh - top}, column {j * sw - left}"
        fig.suptitle(f"Y[0, {o}, {i}, {j}] = {terms} = {format(f['value'], fmt)}\n({where})", fontsize=FONT["title"])
        return []

    return make_animation(fig, draw, fr.frames, fr.values, fr.title)


def _window_sum_panels(fr, fmt: str, dpi: int):
    """The padded channels in a row, the kernel's channels under them, the output on the right."""
    (C, kh, _), (Hp, Wp), Wo = fr.kernel.shape, fr.padded.shape[1:], fr.output.shape[1]
    out_w = max(Wo * max(1.0, 0.4 * _widest(fr.output, fmt)), 3) + 0.5
    cell = min(0.45, 7.0 / (C * (Wp + 1) + out_w + 1))
    height = cell * (Hp + 1.5 * kh) + 1.9
    fig = frame_figure(height, dpi)
    ratios = dict(width_ratios=[Wp] * C + [out_w], height_ratios=[Hp, 1.5 * kh])  # kernel cells larger, for "-1"
    gs = fig.add_gridspec(2, C + 1, **ratios, **margins(height, 0.85, 0.45), wspace=0.3, hspace=0.35)
    ax_in = [fig.add_subplot(gs[0, c]) for c in range(C)]
    ax_k = [fig.add_subplot(gs[1, c]) for c in range(C)]
    vx, vk = (float(t.abs().max()) or 1.0 for t in (fr.padded, fr.kernel))
    for c in range(C):
        show_grid(
            fr.padded[c],
            ax=ax_in[c],
            padding=fr.sides,
            fmt=fmt,
            vmax=vx,
            axis_labels=False,
            title=f"X[{c}]" + (", padded" if any(fr.sides) else ""),
            min_fontsize=READABLE,
        )
        show_grid(
            fr.kernel[c],
            ax=ax_k[c],
            role="kernel",
            fmt=fmt,
            vmax=vk,
            axis_labels=False,
            title=f"K[{fr.out_channel}, {c}]",
            min_fontsize=READABLE,
        )
    return fig, ax_in, ax_k, fig.add_subplot(gs[:, C])


# ---------------------------------------------------------------- chapter 2: the patch matrix


def animate_patch_matrix(
    x, weight, bias=None, stride=1, padding=0, dilation=1, out_channel: int = 0, max_frames: int = 12, dpi: int = DPI
) -> Animation:
    """The window beside the patch matrix ``cols = im2col(x)``: its column lights up, the output pixel is filled.

    Left: channel 0 of the padded input with the window of output (i, j); middle: the filter's row K_row,
    drawn as a column so that each weight faces the row of ``cols`` it multiplies, and ``cols`` (C*kh*kw x L)
    with column l = i*Wo + j outlined; right: output channel Y[0, o], pixel (i, j) = K_row @ cols[:, l] (+ b[o])
    just written. ``frames`` and ``values`` are those of :func:`convlib.viz.frames.patch_matrix_frames`.
    """
    fr = patch_matrix_frames(x, weight, bias, stride, padding, dilation, out_channel, max_frames)
    fmt = number_format(fr.padded, fr.kernel, fr.output)
    fig, ax_in, ax_cols, ax_out = _patch_matrix_panels(fr, fmt, dpi)
    K, o, kernel = fr.cols.shape[0], fr.out_channel, tuple(fr.kernel.shape[1:])
    dynamic = FrameArtists()

    def draw(t):
        f = fr.frames[t]
        l, i, j = f["l"], f["i"], f["j"]
        dynamic.clear()
        dynamic.add(*window_outline(ax_in, i, j, kernel, fr.stride, fr.dilation), outline(ax_cols, 0, l, K, 1))
        ax_cols.set_title(f"cols: column {l} outlined", fontsize=READABLE)
        fill_output(ax_out, fr.output.numpy(), t + 1, (i, j), fmt, f"output Y[0, {o}]")
        value = f"K_row @ cols[:, {l}]{plus_bias(fr.bias, o, fmt)} = {format(f['value'], fmt)}"
        fig.suptitle(f"window ({i}, {j}) = column {l} of cols\nY[0, {o}, {i}, {j}] = {value}", fontsize=FONT["title"])
        return []

    return make_animation(fig, draw, fr.frames, fr.values, fr.title)


def _patch_matrix_panels(fr, fmt: str, dpi: int):
    """The padded channel 0, K_row as a column, ``cols`` (its rows named (c, u, v)) and room for the output."""
    (C, kh, kw), (Hp, Wp), Wo, (K, L) = fr.kernel.shape, fr.padded.shape[1:], fr.output.shape[1], fr.cols.shape
    out_w = Wo * max(1.0, 0.4 * _widest(fr.output, fmt))  # wide enough for its numbers
    cols_w = L * max(1.0, 0.4 * _widest(fr.cols, fmt))
    gap = 2.0 if K <= 27 else 0.5  # room for the names (c, u, v) of the rows
    cell = min(0.42, 6.6 / (Wp + gap + 1.2 + cols_w + out_w + 1.2))
    height = cell * max(K, Hp) + 1.7
    fig = frame_figure(height, dpi)
    ratios = dict(width_ratios=[Wp, gap, 1.2, cols_w, out_w])
    gs = fig.add_gridspec(1, 5, **ratios, **margins(height, 0.9, 0.65, left=0.05), wspace=0.2)
    ax_in, ax_k, ax_cols, ax_out = (fig.add_subplot(gs[0, k]) for k in (0, 2, 3, 4))
    vx = float(fr.padded.abs().max()) or 1.0
    show_grid(
        fr.padded[0],
        ax=ax_in,
        padding=fr.sides,
        fmt=fmt,
        vmax=vx,
        axis_labels=False,
        title=("X[0]" if C > 1 else "X") + (", padded" if any(fr.sides) else ""),
        min_fontsize=READABLE,
    )
    rows = [f"{c},{u},{v}" for c in range(C) for u in range(kh) for v in range(kw)] if K <= 27 else "auto"
    k_row = fr.kernel.reshape(K, 1).numpy()
    draw_cells(
        ax_k, role_colors(k_row, "kernel"), k_row, fmt=fmt, ticks=(rows, False), aspect="auto", min_fontsize=READABLE
    )
    ax_k.set_title("K_row", fontsize=READABLE)
    draw_cells(
        ax_cols,
        role_colors(fr.cols, "input", vx),
        fr.cols,
        fmt=fmt,
        ticks=(False, "auto"),
        lines="#EEEEEE",
        aspect="auto",
        min_fontsize=READABLE,
    )
    ax_cols.set_xlabel(f"column {ELL} = i\u00b7Wo + j", fontsize=READABLE)
    return fig, ax_in, ax_cols, ax_out


# ---------------------------------------------------------------- chapter 3: a row of the convolution matrix


def animate_toeplitz_row(
    x, weight, bias=None, stride=1, padding=0, dilation=1, out_channel: int = 0, max_frames: int = 12, dpi: int = DPI
) -> Animation:
    """The same step as one row of the convolution matrix M times the flattened input.

    Top: the rows of M that write output channel o (L x C*H*W, zeros white), row l outlined and its entries
    written in; right of it, Y[0, o] flattened (entry l = i*Wo + j filled in, facing its row); below M, the
    flattened input X.flatten(), each pixel (c, r, q) under the column of M that multiplies it, the pixels row
    l reads outlined. ``frames`` and ``values`` are those of :func:`convlib.viz.frames.toeplitz_row_frames`.
    """
    fr = toeplitz_row_frames(x, weight, bias, stride, padding, dilation, out_channel, max_frames)
    fmt = number_format(fr.M_rows, fr.x_flat, fr.output)
    fig, ax_M, ax_x, ax_y = _toeplitz_panels(fr, fmt, dpi)
    (L, D), o, M = fr.M_rows.shape, fr.out_channel, fr.M_rows.numpy()
    dynamic = FrameArtists()

    def draw(t):
        f = fr.frames[t]
        l, i, j = f["l"], f["i"], f["j"]
        dynamic.clear()
        dynamic.add(outline(ax_M, l, 0, 1, D), *[outline(ax_x, 0, r, lw=2.0) for r in f["reads"]])
        dynamic.add(*_row_entries(ax_M, M, l, f["reads"], fmt))
        fill_output(ax_y, fr.output.reshape(L, 1).numpy(), t + 1, (l, 0), fmt, f"Y[0, {o}]", aspect="auto")
        ax_y.set_xticks([])
        ax_y.set_yticks([])
        product = f"M[{o * L + l}] \u00b7 X.flatten(){plus_bias(fr.bias, o, fmt)} = {format(f['value'], fmt)}"
        reads = f"it reads {len(f['reads'])} of the {D} input pixels (outlined)"
        fig.suptitle(f"row {o * L + l} of M: Y[0, {o}, {i}, {j}] = {product}\n{reads}", fontsize=FONT["title"])
        return []

    return make_animation(fig, draw, fr.frames, fr.values, fr.title)


def _toeplitz_panels(fr, fmt: str, dpi: int):
    """M's rows of channel o over the flattened input, image rows ruled, and a column for Y[0, o]."""
    (C, H, W), (L, D) = fr.input_shape, fr.M_rows.shape
    y_w = max(1.0, 0.6 * _widest(fr.output, fmt))
    cell = min(0.4, 7.5 / (D + y_w + 0.8))
    height = cell * (L + 1.5) + 1.6
    fig = frame_figure(height, dpi)
    ratios = dict(width_ratios=[D, y_w], height_ratios=[L, 1])
    gs = fig.add_gridspec(
        2, 2, **ratios, **margins(height, 0.85, 0.6, left=0.04, right=0.99), wspace=0.8 / D, hspace=0.5 / L
    )
    ax_M, ax_y, ax_x = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1]), fig.add_subplot(gs[1, 0])
    rows_of_o = dict(origin=(fr.out_channel * L, 0), ticks=("auto", False), min_fontsize=READABLE)
    draw_cells(ax_M, role_colors(fr.M_rows, "kernel"), **rows_of_o, lines="#EEEEEE", aspect="auto")
    x_row = fr.x_flat.reshape(1, D).numpy()
    draw_cells(
        ax_x,
        role_colors(x_row, "input"),
        x_row,
        fmt=fmt,
        ticks=(False, False),
        lines="#EEEEEE",
        aspect="auto",
        min_fontsize=READABLE,
    )
    if C == 1:
        ax_x.set_xticks(np.arange(H) * W + W / 2, labels=[f"r={r}" for r in range(H)])
        ax_x.set_xlabel("X.flatten(): the input pixels (r, q), row after row", fontsize=READABLE)
    else:
        ax_x.set_xticks(np.arange(C) * H * W + H * W / 2, labels=[f"c={c}" for c in range(C)])
        ax_x.set_xlabel("X.flatten(): the input pixels (c, r, q), channel after channel", fontsize=READABLE)
    for ax in (ax_M, ax_x):
        for c in range(W, D, W):
            ax.axvline(c, color="#000000" if c % (H * W) == 0 else "#999999", lw=1.2 if c % (H * W) == 0 else 0.6)
    return fig, ax_M, ax_x, ax_y


def _row_entries(ax, M, l, reads, fmt):
    """Write row l's entries into the cells it reads (the kernel's taps), where they fit at a readable size."""
    cw = ax.get_position().width * ax.figure.get_figwidth() * 72 / M.shape[1]
    texts = []
    for r in reads:
        text = format(M[l, r] + 0.0, fmt)
        if fits(text, cw, READABLE):
            texts.append(ax.text(r + 0.5, l + 0.5, text, ha="center", va="center", fontsize=READABLE))
    return texts


# ---------------------------------------------------------------- chapter 5: a filter over a real image


def animate_feature_map(
    x, weight, bias=None, stride=1, padding=0, dilation=1, out_channel: int = 0, max_frames: int = 8, dpi: int = DPI
) -> Animation:
    """One filter over a whole (real) image as im2col and one matrix product, a band of output rows per frame.

    Left: the (padded) input as a picture (a 3-channel image with values in [0, 1] in colour, anything else as
    the channel mean in grey), the band of rows the frame's windows read dashed and the window of the band's
    first output bold. Middle: K_row (the filter K[o] flattened, drawn as a column) beside the patch matrix
    ``cols`` (C*kh*kw x Ho*Wo), the band's block of columns outlined: the output rows are
    ``K_row @ cols[:, l0:l1]`` (+ b[o]). Right: the feature map, filled in up to the band. ``frames`` and
    ``values`` are those of :func:`convlib.viz.frames.feature_map_frames`.
    """
    fr = feature_map_frames(x, weight, bias, stride, padding, dilation, out_channel, max_frames)
    fig, ax_in, ax_cols, ax_out = _feature_map_panels(fr, dpi)
    (kh, kw), Wp, (Ho, Wo), K = fr.kernel.shape[1:], fr.padded.shape[2], fr.output.shape, fr.cols.shape[0]
    # the colour scale saturates at the 98th percentile of |y|: a few strong edges would leave the rest pale
    ymax = float(torch.quantile(fr.output.abs(), 0.98)) or float(fr.output.abs().max()) or 1.0
    out_rgba = role_colors(fr.output.numpy(), "output", vmax=ymax)
    span_h, span_w = fr.dilation[0] * (kh - 1) + 1, fr.dilation[1] * (kw - 1) + 1
    dynamic, sh = FrameArtists(), fr.stride[0]
    bias = "" if fr.bias is None else f" + b[{fr.out_channel}]"

    def draw(t):
        f = fr.frames[t]
        (i0, i1), (l0, l1) = f["rows"], f["columns"]
        dynamic.clear()
        shown = out_rgba.copy()
        shown[i1:] = (1.0, 1.0, 1.0, 1.0)
        dynamic.add(ax_out.imshow(shown, extent=(0, Wo, Ho, 0), interpolation="nearest"))
        dynamic.add(outline(ax_in, i0 * sh, 0, (i1 - 1 - i0) * sh + span_h, Wp, lw=1.2, linestyle="--"))
        dynamic.add(outline(ax_in, i0 * sh, 0, span_h, span_w, lw=2.0))
        dynamic.add(outline(ax_cols, 0, l0, K, l1 - l0, lw=1.5), outline(ax_out, i0, 0, i1 - i0, Wo, lw=1.5))
        rows = f"row {i0}" if i1 - i0 == 1 else f"rows {i0}-{i1 - 1}"
        text = f"output {rows} = K_row @ cols[:, {l0}:{l1}]{bias}: {l1 - l0} windows, one product"
        fig.suptitle(text, fontsize=FONT["title"])
        return []

    return make_animation(fig, draw, fr.frames, fr.values, fr.title, interval=700)


def _feature_map_panels(fr, dpi: int):
    """The picture, K_row as a column, ``cols`` as an image, and the (empty) feature map."""
    (C, Hp, Wp), (K, L), (Ho, Wo) = fr.padded.shape, fr.cols.shape, fr.output.shape
    height = 3.6
    fig = frame_figure(height, dpi)
    ratios = dict(width_ratios=[2.2, 0.22, 0.1, 3.0, 0.25, 2.2])
    gs = fig.add_gridspec(1, 6, **ratios, **margins(height, 0.95, 0.5, left=0.02), wspace=0.04)
    ax_in, ax_k, ax_cols, ax_out = (fig.add_subplot(gs[0, k]) for k in (0, 2, 3, 5))
    ax_in.imshow(_picture(fr.padded.float(), fr.sides), extent=(0, Wp, Hp, 0), interpolation="nearest")
    top, bottom, left, right = fr.sides
    pad = f", padding {top}" if top == bottom == left == right else ", padded"
    ax_in.set_title(f"X: {C} x {Hp - top - bottom} x {Wp - left - right}" + (pad if top + left else ""))
    k_row = fr.kernel.reshape(K, 1).numpy()
    ax_k.imshow(role_colors(k_row, "kernel"), aspect="auto", interpolation="nearest", extent=(0, 1, K, 0))
    ax_k.set_ylabel("K_row", labelpad=1)
    cols_rgba = role_colors(fr.cols.numpy(), "input")
    ax_cols.imshow(cols_rgba, aspect="auto", interpolation="antialiased", extent=(0, L, K, 0))
    ax_cols.tick_params(labelsize=READABLE, length=2)
    ax_cols.set_xlabel(f"patch {ELL} = i\u00b7Wo + j", labelpad=1)
    ax_cols.set_title(f"patch matrix cols: {K} x {L}")
    ax_out.set_title(f"Y[0, {fr.out_channel}]: {Ho} x {Wo}")
    for ax in (ax_in, ax_k, ax_cols, ax_out):
        ax.title.set_fontsize(READABLE)
        ax.yaxis.label.set_fontsize(READABLE)
        ax.xaxis.label.set_fontsize(READABLE)
        ax.set_yticks([])
        if ax is not ax_cols:
            ax.set_xticks([])
    ax_out.imshow(np.ones((Ho, Wo, 3)), extent=(0, Wo, Ho, 0))
    return fig, ax_in, ax_cols, ax_out


def _picture(xp: torch.Tensor, sides) -> np.ndarray:
    """The padded input as an RGB array to look at: a 3-channel image in [0, 1] as it is, anything else as the
    mean over the channels in grey (scaled to its range); the zero padding light grey."""
    from matplotlib.colors import to_rgb

    C, Hp, Wp = xp.shape
    if C == 3 and float(xp.min()) >= 0.0 and float(xp.max()) <= 1.0:
        rgb = xp.permute(1, 2, 0).numpy().copy()
    else:
        g = xp.mean(0).numpy()
        lo, hi = float(g.min()), float(g.max())
        rgb = np.repeat(((g - lo) / ((hi - lo) or 1.0))[:, :, None], 3, axis=2)
    rgb[padding_mask((Hp, Wp), sides)] = to_rgb(PALETTE["padding"])
    return rgb
