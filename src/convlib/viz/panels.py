"""Figures that lay one computation out panel by panel, every panel a grid of numbers.

- :func:`show_conv_layer`: a whole layer, input channels, filters and outputs, one output entry highlighted;
- :func:`show_entry_products`: one output entry by hand: window times filter equals products, per channel;
- :func:`show_patch_column`: one window, the column of the patch matrix it becomes, the output pixel it gives;
- :func:`show_stamps` and :func:`show_zero_insertion`: a transposed convolution as stamps, and as an ordinary
  convolution of a zero-inserted input with the rotated kernel.

Images are one image, ``X`` C x H x W (Y[0, o, i, j] its output); every grid counts the input's rows and columns,
the zero padding at -1.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from ..args import as_int, conv2d_args
from .frames import input_sides
from .grids import show_grid
from .matrices import show_matrix
from .style import ELL, FONT, MAX_FIG_WIDTH, as_matrix, number_format, outline

__all__ = ["show_conv_layer", "show_entry_products", "show_patch_column", "show_stamps", "show_zero_insertion"]


def _taps_outline(ax, rows, cols, lw: float = 3.0):
    """Outline the taps a window reads: one rectangle if they are contiguous, else every tap (dilation)."""
    if rows[-1] - rows[0] == len(rows) - 1 and cols[-1] - cols[0] == len(cols) - 1:
        outline(ax, rows[0], cols[0], len(rows), len(cols), lw=lw)
    else:
        for r in rows:
            for c in cols:
                outline(ax, r, c, lw=lw * 2 / 3)


def _titles(axes, size=FONT["title"]):
    for ax in np.ravel(axes):
        ax.title.set_fontsize(size)


# ---------------------------------------------------------------- a layer, and one entry by hand


def show_conv_layer(
    x, weight, bias=None, stride=1, padding=0, dilation=1, index=None, output: bool = True, title: str | None = None
):
    """One convolution layer laid out like the CS231n demo: padded input, filters, output, one panel per channel.

    Column 1 holds the channels of the zero-padded input ``x`` (C x H x W, or 1 x C x H x W), one per row,
    padding grey; then one column per filter ``K[o]`` (its C channels, orange, bias below); then, if ``output``,
    the O output channels (green). ``index=(o, i, j)`` highlights output entry ``Y[0, o, i, j]``, the window it reads
    in every input channel and the filter it uses. Groups are not drawn (every filter reads every channel).
    Returns the figure.
    """
    from ..entry import entry_products
    from ..naive import conv2d_naive

    a = conv2d_args(x, weight, bias, stride, padding, dilation)
    if a.x.shape[0] != 1:
        raise ValueError(
            f"show_conv_layer draws one image: input must be C x H x W or 1 x C x H x W, got shape {tuple(x.shape)}"
        )
    if index is not None and (not isinstance(index, (tuple, list)) or len(index) != 3):
        raise ValueError(f"index must be (o, i, j), got {index!r}")
    Y = conv2d_naive(a.x, a.weight, a.bias, a.stride, a.padding, a.dilation)[0].detach() if output else None
    ep = entry_products(a.x, a.weight, a.bias, a.stride, a.padding, a.dilation, index=(0, *index)) if index else None
    fig, axes = _layer_axes(a, output)
    _draw_layer_inputs(axes[:, 0], a, ep, x.shape[-2:])
    _draw_layer_filters(axes[:, 1 : 1 + a.weight.shape[0]], a, ep)
    if output:
        _draw_layer_outputs(axes[:, -1], Y, ep)
    if title is None:
        (C, H, W), (O, _, kh, kw) = a.x.shape[1:], a.weight.shape
        title = f"{C} x {H} x {W} input, {O} filters {C} x {kh} x {kw}, stride {a.stride[0]}, padding {a.padding[0]}"
        if ep is not None:
            value, (o, i, j) = (f" = {ep.value.item():g}" if output else ""), index
            title += f"\nY[0, {o}, {i}, {j}]{value} reads the outlined windows with filter K[{o}]"
    fig.suptitle(title, fontsize=FONT["title"])
    fig.tight_layout()
    return fig


def _layer_axes(a, output: bool):
    """The grid of panels: a row per input (or output) channel; the input, one column per filter, the output."""
    (C, H, W), (O, _, _, kw) = a.x.shape[1:], a.weight.shape
    Hp, Wp = H + 2 * a.padding[0], W + 2 * a.padding[1]
    nrows = max(C, O if output else 0)
    widths = [Wp] + [kw] * O + ([a.output_hw[1]] if output else [])
    cell = min(0.34, (MAX_FIG_WIDTH - 0.7 * len(widths)) / sum(widths))
    figsize = (min(MAX_FIG_WIDTH, cell * sum(widths) + 0.7 * len(widths)), nrows * (cell * Hp + 0.8))
    fig, axes = plt.subplots(nrows, len(widths), figsize=figsize, gridspec_kw={"width_ratios": widths}, squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    return fig, axes


def _draw_layer_inputs(axes, a, ep, input_hw):
    ph, pw = a.padding
    Xp = F.pad(a.x, (pw, pw, ph, ph))[0].detach()
    sides = input_sides(a, input_hw)
    vx = float(Xp.abs().max()) or 1.0
    for c, ax in enumerate(axes[: Xp.shape[0]]):
        ax.set_visible(True)
        show_grid(Xp[c], ax=ax, padding=sides, vmax=vx, axis_labels=False, title=f"input X[{c}] (padded)")
        ax.set_ylabel("row r", fontsize=FONT["label"])
        if c == Xp.shape[0] - 1:
            ax.set_xlabel("column q", fontsize=FONT["label"])
        if ep is not None:
            _taps_outline(ax, ep.rows, ep.cols)


def _draw_layer_filters(axes, a, ep):
    K = a.weight.detach()
    O, C, kh, kw = K.shape
    vw = float(K.abs().max()) or 1.0
    for o in range(O):
        for c in range(C):
            ax = axes[c, o]
            ax.set_visible(True)
            show_grid(K[o, c], ax=ax, role="kernel", vmax=vw, axis_labels=False, title=f"K[{o}, {c}]")
            if c == C - 1:
                ax.set_xlabel("v" + (f"\nbias b[{o}] = {a.bias[o].item():g}" if a.bias is not None else ""))
            if c == 0:
                ax.set_ylabel("u")
            if ep is not None and o == ep.index[1]:
                outline(ax, 0, 0, kh, kw)


def _draw_layer_outputs(axes, Y, ep):
    vy = float(Y.abs().max()) or 1.0
    for o, ax in enumerate(axes[: Y.shape[0]]):
        ax.set_visible(True)
        show_grid(Y[o], ax=ax, role="output", vmax=vy, axis_labels=False, title=f"output Y[0, {o}]")
        ax.set_ylabel("i")
        ax.set_xlabel("j")
        if ep is not None and o == ep.index[1]:
            outline(ax, ep.index[2], ep.index[3])


def show_entry_products(ep, title: str | None = None):
    """The hand computation of one output entry (from ``convlib.entry_products``) as a figure.

    One row per input channel: the window it reads (taps on the zero padding grey; tick labels are the input's
    rows and columns, the padding at -1), times the filter, equals the elementwise products, whose sum is in the
    title. Returns the figure.
    """
    n, o, i, j = ep.index
    Cg, kh, kw = ep.weight.shape
    fig, axes = plt.subplots(
        Cg, 3, figsize=(min(MAX_FIG_WIDTH, 3 * (0.5 * kw + 1.4)), Cg * (0.5 * kh + 1.0)), squeeze=False
    )
    vx, vw, vp = (float(t.abs().max()) or 1.0 for t in (ep.window, ep.weight, ep.products))
    fmt = number_format(ep.window, ep.weight)
    top, left = ep.padding
    ticks = ([r - top for r in ep.rows], [c - left for c in ep.cols])
    for k, c in enumerate(ep.channels):
        axw, axk, axp = axes[k]
        grey = ep.in_padding.numpy()
        show_grid(ep.window[k], ax=axw, padding=grey, vmax=vx, fmt=fmt, axis_labels=False, ticks=ticks)
        axw.set_title(f"window of X[{c}]")
        show_grid(ep.weight[k], ax=axk, role="kernel", vmax=vw, fmt=fmt, axis_labels=False, title=f"K[{o}, {c}]")
        prod = number_format(ep.products[k])
        title_p = f"products: sum {ep.channel_sums[k].item():g}"
        show_grid(ep.products[k], ax=axp, role="output", vmax=vp, fmt=prod, axis_labels=False, title=title_p)
        for ax, sign in ((axk, "\u00d7"), (axp, "=")):
            ax.text(-0.35, 0.5, sign, transform=ax.transAxes, ha="center", va="center", fontsize=16)
        axw.set_ylabel("row r")
        axk.set_ylabel("u")
        if k == Cg - 1:
            for ax, label in zip(axes[k], ("column q", "v", "v")):
                ax.set_xlabel(label)
    if title is None:
        terms = " + ".join(f"({s:g})" if s < 0 else f"{s:g}" for s in ep.channel_sums.tolist())
        if ep.bias is not None:
            b = ep.bias.item()
            terms += f" + {f'({b:g})' if b < 0 else f'{b:g}'} (bias)"
        title = f"Y[{n}, {o}, {i}, {j}] = {terms} = {ep.value.item():g}"
    _titles(axes)
    fig.suptitle(title, fontsize=FONT["title"])
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- a window and its column of the patch matrix


def show_patch_column(
    x,
    weight,
    position=(0, 0),
    stride=1,
    padding=0,
    dilation=1,
    bias=0.0,
    channel: int = 0,
    axes=None,
    title: str | None = None,
    out_channel: int = 0,
):
    """One receptive field, the column of the patch matrix it becomes, and the output pixel it produces.

    ``x`` is one image, C x H x W (or H x W for C = 1); ``weight`` is one filter K[o], C x kh x kw (or
    kh x kw), ``out_channel`` its o (for the labels); ``position=(i, j)`` is the output pixel. Three panels,
    left to right: channel ``channel`` of the padded input with the window of (i, j) outlined (its taps, when
    dilated); the patch matrix ``cols = im2col(x)`` (C*kh*kw x L) with column ``l = i*Wo + j`` outlined; the
    output ``Y[0, o] = K_row @ cols + b[o]`` reshaped to Ho x Wo with pixel (i, j) outlined. ``axes`` (three
    matplotlib axes) lets a caller draw frames of an animation; returns the three axes.
    """
    from ..im2col import im2col

    X = torch.as_tensor(x).detach().cpu()
    K = torch.as_tensor(weight).detach().cpu()
    X, K = (X[None] if X.dim() == 2 else X), (K[None] if K.dim() == 2 else K)
    if X.dim() != 3 or K.dim() != 3 or X.shape[0] != K.shape[0]:
        raise ValueError(
            f"x must be C x H x W and weight C x kh x kw with the same C, got {tuple(X.shape)} and {tuple(K.shape)}"
        )
    a = conv2d_args(X[None].to(K.dtype), K[None], None, stride, padding, dilation)
    (Ho, Wo), (C, kh, kw) = a.output_hw, K.shape
    i, j = position
    if not (0 <= i < Ho and 0 <= j < Wo):
        raise ValueError(f"position {position} is outside the {Ho} x {Wo} output")
    if not 0 <= channel < C:
        raise ValueError(f"channel must be in 0..{C - 1}, got {channel}")
    cols = im2col(a.x, (kh, kw), a.stride, a.padding, a.dilation)[0]  # C*kh*kw x L
    Y = (K.reshape(1, -1) @ cols + bias).reshape(Ho, Wo)
    own_figure = axes is None
    if own_figure:
        axes = _patch_column_axes(a, cols, title)
    ax_in, ax_cols, ax_out = axes
    (sh, sw), (ph, pw), (dh, dw) = a.stride, a.padding, a.dilation
    taps = [(i * sh + u * dh, j * sw + v * dw) for u in range(kh) for v in range(kw)]
    window = (i * sh, j * sw, dh * (kh - 1) + 1, dw * (kw - 1) + 1) if (dh, dw) == (1, 1) else None
    Xp = F.pad(a.x[0, channel], (pw, pw, ph, ph))
    title_in = f"input X[{channel}]\nwindow of Y[0, {out_channel}, {i}, {j}]"
    sides = input_sides(a, X.shape[-2:])
    show_grid(Xp, ax=ax_in, padding=sides, window=window, cells=taps if window is None else (), title=title_in)
    _draw_patch_matrix(ax_cols, cols, i * Wo + j, Wo, (C, kh, kw), channel)
    value = format(float(Y[i, j]), number_format(Y))
    title_out = f"output Y[0, {out_channel}]\nY[0, {out_channel}, {i}, {j}] = {value}"
    show_grid(Y, ax=ax_out, role="output", window=(i, j, 1, 1), title=title_out)
    _titles(axes)
    if own_figure:
        ax_in.figure.tight_layout()
    return axes


def _patch_column_axes(a, cols, title):
    (Hp, Wp), (Kn, L) = (a.x.shape[2] + 2 * a.padding[0], a.x.shape[3] + 2 * a.padding[1]), cols.shape
    ratios = [Wp + 1.5, L + 2.5, max(a.output_hw[1], 3) + 2.5]
    height = min(6.0, 0.36 * max(Hp, Kn) + 1.8)
    fig, axes = plt.subplots(1, 3, figsize=(MAX_FIG_WIDTH, height), gridspec_kw={"width_ratios": ratios})
    if title:
        fig.suptitle(title, fontsize=FONT["suptitle"])
    return axes


def _draw_patch_matrix(ax, cols, l, Wo, kernel_shape, channel):
    """``cols`` with column l outlined; its rows named (c, u, v), the rows of channel ``channel`` in bold."""
    C, kh, kw = kernel_shape
    rows = [f"{c},{u},{v}" for c in range(C) for u in range(kh) for v in range(kw)]
    named = len(rows) <= 27
    i, j = divmod(l, Wo)
    show_matrix(
        cols,
        ax=ax,
        highlight_cols=[l],
        title=f"patch matrix cols\ncolumn {ELL} = {i}\u00b7{Wo} + {j} = {l}",
        xlabel=f"{ELL} (output position)",
        ylabel="row (c, u, v)" if named else "row",
        yticklabels=rows if named else "auto",
    )
    if named:
        for r, label in enumerate(ax.get_yticklabels()):
            if channel * kh * kw <= r < (channel + 1) * kh * kw:
                label.set_fontweight("bold")


# ---------------------------------------------------------------- transposed convolution


def _square_axes(n: int, ncols: int, panel: float = 2.3):
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(min(MAX_FIG_WIDTH, panel * ncols), (panel + 0.3) * nrows + 0.5))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes[n:]:
        ax.axis("off")
    return fig, axes[:n]


def show_stamps(x, kernel, stride: int = 1, padding: int = 0, ncols: int = 3, title: str | None = None):
    """Transposed convolution as stamping: every input pixel adds a scaled copy of the kernel to the output.

    ``x`` is one small channel (h x w), ``kernel`` one kh x kw kernel K. Panels, in reading order: the input;
    one panel per input pixel (i, j), the full output canvas ((h-1)*s + kh) x ((w-1)*s + kw) holding
    ``X[i, j] * K`` at rows i*s.., columns j*s.. (outlined); last, their sum. ``padding`` p greys the
    outer p rows and columns of the sum: a transposed convolution *cuts* them off. Returns the axes.
    """
    X, K = as_matrix(x).astype(float), as_matrix(kernel).astype(float)
    (h, w), (kh, kw) = X.shape, K.shape
    stride, padding = as_int(stride, "stride", minimum=1), as_int(padding, "padding", minimum=0)
    Hf, Wf = (h - 1) * stride + kh, (w - 1) * stride + kw
    stamps = []
    for i in range(h):
        for j in range(w):
            canvas = np.zeros((Hf, Wf))
            canvas[i * stride : i * stride + kh, j * stride : j * stride + kw] = X[i, j] * K
            stamps.append((i, j, canvas))
    total = sum(c for *_, c in stamps)
    vmax = max(np.abs(total).max(), max(np.abs(c).max() for *_, c in stamps)) or 1.0
    fig, axes = _square_axes(len(stamps) + 2, ncols)
    show_grid(X, ax=axes[0], role="input", title="input X", axis_labels=False)
    for ax, (i, j, canvas) in zip(axes[1:], stamps):
        window = (i * stride, j * stride, kh, kw)
        label = f"X[{i}, {j}] = {X[i, j]:g}: adds {X[i, j]:g}\u00b7K"
        show_grid(canvas, ax=ax, role="kernel", vmax=vmax, axis_labels=False, window=window, title=label)
    cut = f" (grey: cut, p = {padding})" if padding else ""
    show_grid(total, ax=axes[-1], role="output", padding=padding, vmax=vmax, axis_labels=False, title="sum" + cut)
    _titles(axes, FONT["label"])
    fig.suptitle(title or f"transposed convolution, stride {stride}: one stamp per input pixel", fontsize=FONT["title"])
    fig.supxlabel("output column", fontsize=FONT["label"])
    fig.supylabel("output row", fontsize=FONT["label"])
    fig.tight_layout()
    return axes


def show_zero_insertion(x, kernel, stride: int = 1, padding: int = 0, dilation: int = 1, title: str | None = None):
    """The zero-insertion view of a transposed convolution, in four panels.

    ``x`` is one channel (h x w), ``kernel`` one kh x kw kernel K (one input and one output channel). Panels:
    K; K rotated by 180 degrees; the input with ``stride - 1`` zeros inserted between its pixels (the original
    pixels outlined) and ``d(k-1) - p`` zeros of padding around it (grey); the output of the ordinary stride-1
    convolution of that with the rotated kernel. Needs ``d(k-1) >= p`` on both axes (else the view crops
    instead of pads). Returns the axes.
    """
    from ..im2col import conv2d_im2col
    from ..transposed import insert_zeros

    stride, padding = as_int(stride, "stride", minimum=1), as_int(padding, "padding", minimum=0)
    dilation = as_int(dilation, "dilation", minimum=1)
    X = torch.as_tensor(as_matrix(x), dtype=torch.float64)
    K = torch.as_tensor(as_matrix(kernel), dtype=torch.float64)
    kh, kw = K.shape
    qh, qw = dilation * (kh - 1) - padding, dilation * (kw - 1) - padding
    if min(qh, qw) < 0:
        raise ValueError(f"show_zero_insertion needs padding <= d(k-1) = {min(qh, qw) + padding}, got {padding}")
    padded = F.pad(insert_zeros(X, stride), (qw, qw, qh, qh))
    K_rot = K.flip(0, 1)
    Y = conv2d_im2col(padded[None, None], K_rot[None, None], dilation=dilation)[0, 0]
    originals = [(qh + i * stride, qw + j * stride) for i in range(X.shape[0]) for j in range(X.shape[1])]
    widths = [kw, kw, padded.shape[1], Y.shape[1]]
    fig, axes = plt.subplots(
        1, 4, figsize=(MAX_FIG_WIDTH, 0.42 * padded.shape[0] + 1.6), gridspec_kw={"width_ratios": widths}
    )
    show_grid(K, ax=axes[0], role="kernel", title="kernel K", axis_labels=False)
    show_grid(K_rot, ax=axes[1], role="kernel", title="K rotated 180°", axis_labels=False)
    spread = f"X: {stride - 1} zero(s) between pixels,\npadding d(k-1)-p = {qh}"
    show_grid(padded, ax=axes[2], padding=(qh, qw), cells=originals, axis_labels=False, title=spread)
    show_grid(Y, ax=axes[3], role="output", axis_labels=False, title="convolution\nwith rotated K")
    for ax in axes:
        ax.set_xlabel("column", fontsize=FONT["label"])
    axes[0].set_ylabel("row", fontsize=FONT["label"])
    _titles(axes, FONT["label"])
    fig.suptitle(
        title or f"zero insertion: stride {stride} becomes stride 1 on a spread-out input", fontsize=FONT["title"]
    )
    fig.tight_layout()
    return axes
