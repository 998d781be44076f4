"""Figures in the book's one visual language (see STYLE: conv_arithmetic's colours).

Input blue, zero padding light grey, kernel/weights orange, output green; the window being read and the
cell being written get a bold outline in the highlight colour. Matrices use the same colours for the same
roles, zeros white. Every helper draws on a given ``ax`` (or a new one) and returns the ``ax``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.patches import Rectangle

__all__ = ["PALETTE", "role_cmap", "show_matrix", "show_grid", "show_window_positions", "outline", "max_fig_width"]
__all__ += ["show_images", "show_filters", "plot_curves"]

PALETTE = {
    "input": "#3B75AF",  # blue
    "padding": "#D9D9D9",  # light grey
    "kernel": "#EF8636",  # orange
    "output": "#519E3E",  # green
    "highlight": "#C53A32",  # the window being read / the cell being written
    "negative": "#8D69B8",  # negative values in signed matrices (purple)
    "grid": "#FFFFFF",
}
max_fig_width = 8.0  # inches: no figure wider than this


def role_cmap(role: str, signed: bool = False):
    """White-to-colour colour map for a role ('input', 'kernel', 'output'); purple-white-colour if signed."""
    colour = PALETTE[role]
    if signed:
        return LinearSegmentedColormap.from_list(f"{role}_signed", [PALETTE["negative"], "#FFFFFF", colour])
    return LinearSegmentedColormap.from_list(role, ["#FFFFFF", colour])


def _to_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        if a.layout != torch.strided:
            a = a.to_dense()
        a = a.numpy()
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {a.shape}")
    return a


def _integral(a: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(a)) and np.all(np.round(a) == a))


def _norm(a: np.ndarray, signed: bool, vmax=None):
    m = float(vmax) if vmax is not None else float(np.max(np.abs(a))) if a.size else 1.0
    m = m or 1.0
    return Normalize(-m, m) if signed else Normalize(0.0 if a.min() >= 0 else a.min(), m)


def outline(ax, row: int, col: int, height: int = 1, width: int = 1, color=None, lw: float = 3.0, **kw):
    """Draw a bold rectangle around cells [row, row+height) x [col, col+width) of a heatmap or grid."""
    rect = Rectangle(
        (col, row), width, height, fill=False, edgecolor=color or PALETTE["highlight"], lw=lw, clip_on=False, **kw
    )
    ax.add_patch(rect)
    return rect


def show_matrix(
    M,
    ax=None,
    role: str = "input",
    annot="auto",
    fmt: str | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    highlight_rows=(),
    highlight_cols=(),
    vmax=None,
    cbar: bool = False,
    linewidths: float = 0.5,
    xticklabels="auto",
    yticklabels="auto",
):
    """A matrix as a seaborn heatmap in the colours of its role; zeros white.

    ``annot='auto'`` writes the values into the cells when the matrix is at most 12 x 12 (integers without
    decimals). ``highlight_rows`` / ``highlight_cols`` get the bold outline (e.g. the column of the patch
    matrix that one receptive field became).
    """
    A = _to_numpy(M).astype(float)
    if ax is None:
        h, w = A.shape
        _, ax = plt.subplots(figsize=(min(max_fig_width, 0.45 * w + 1.5), min(8.0, 0.45 * h + 1.0)))
    signed = bool(A.size and A.min() < 0)
    if annot == "auto":
        annot = max(A.shape) <= 12
    if fmt is None:
        fmt = ".0f" if _integral(A) else ".2f"
    norm = _norm(A, signed, vmax)
    sns.heatmap(
        A,
        ax=ax,
        cmap=role_cmap(role, signed),
        vmin=norm.vmin,
        vmax=norm.vmax,
        annot=annot,
        fmt=fmt,
        cbar=cbar,
        linewidths=linewidths,
        linecolor="#EEEEEE",
        square=False,
        xticklabels=xticklabels,
        yticklabels=yticklabels,
        annot_kws={"fontsize": 8},
    )
    for r in np.atleast_1d(highlight_rows):
        outline(ax, int(r), 0, 1, A.shape[1])
    for c in np.atleast_1d(highlight_cols):
        outline(ax, 0, int(c), A.shape[0], 1)
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    return ax


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
):
    """An image (one channel) as a grid of cells, zero padding in light grey, a window outlined.

    ``X`` is the *padded* H x W array when ``padding`` (an int or (ph, pw)) > 0: the outer ring is drawn
    grey. ``window=(row, col, height, width)`` outlines a rectangle of cells; ``cells`` outlines single
    cells (e.g. the taps of a dilated kernel). Rows and columns are numbered from 0, as in the code.
    """
    A = _to_numpy(X).astype(float)
    H, W = A.shape
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    if ax is None:
        _, ax = plt.subplots(figsize=(min(max_fig_width, 0.5 * W + 1.0), 0.5 * H + 1.0))
    signed = bool(A.size and A.min() < 0)
    cmap, norm = role_cmap(role, signed), _norm(A, signed, vmax)
    rgba = cmap(norm(A))
    pad_mask = np.zeros_like(A, dtype=bool)
    if ph:
        pad_mask[:ph] = pad_mask[H - ph :] = True
    if pw:
        pad_mask[:, :pw] = pad_mask[:, W - pw :] = True
    rgba[pad_mask] = plt.matplotlib.colors.to_rgba(PALETTE["padding"])
    ax.imshow(rgba, extent=(0, W, H, 0), interpolation="nearest")
    ax.set_xticks(np.arange(W) + 0.5, labels=[str(i - pw) for i in range(W)] if pw else range(W))
    ax.set_yticks(np.arange(H) + 0.5, labels=[str(i - ph) for i in range(H)] if ph else range(H))
    ax.set_xticks(np.arange(W + 1), minor=True)
    ax.set_yticks(np.arange(H + 1), minor=True)
    ax.grid(which="minor", color="white", lw=1.0)
    ax.tick_params(which="both", length=0, labelsize=8)
    if annot:
        if fmt is None:
            fmt = ".0f" if _integral(A) else ".1f"
        for r in range(H):
            for c in range(W):
                dark = norm(A[r, c]) > 0.6 and not pad_mask[r, c]
                ax.text(
                    c + 0.5,
                    r + 0.5,
                    format(A[r, c], fmt),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
    if window is not None:
        outline(ax, *window)
    for r, c in cells:
        outline(ax, r, c, lw=2.0)
    if axis_labels:
        ax.set_xlabel("column" + (" (padding grey)" if pw else ""))
        ax.set_ylabel("row" + (" (padding grey)" if ph else ""))
    if title:
        ax.set_title(title)
    return ax


def show_window_positions(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1, ax=None, title: str | None = None
):
    """The output-size formula as a picture: one row of the padded input, one line per window position.

    The padded input (``size + 2*padding`` cells, padding grey) is drawn on top; below it, one line per
    output position marks the taps that window reads (``dilation`` apart), starting ``stride`` cells after
    the previous one. The number of lines is ``conv_output_size(size, kernel_size, stride, padding, dilation)``.
    """
    from .shapes import conv_output_size

    n_out = conv_output_size(size, kernel_size, stride, padding, dilation)
    total = size + 2 * padding
    if ax is None:
        _, ax = plt.subplots(figsize=(min(max_fig_width, 0.45 * total + 1.5), 0.38 * (n_out + 1) + 1.0))
    for c in range(total):
        colour = PALETTE["padding"] if c < padding or c >= padding + size else PALETTE["input"]
        ax.add_patch(Rectangle((c, 0), 1, 1, facecolor=colour, edgecolor="white", lw=1.5))
        ax.text(
            c + 0.5,
            0.5,
            str(c - padding),
            ha="center",
            va="center",
            fontsize=8,
            color="black" if colour == PALETTE["padding"] else "white",
        )
    span = dilation * (kernel_size - 1) + 1
    for i in range(n_out):
        y = 1.35 + 0.45 * i
        start = i * stride
        ax.plot([start + 0.5, start + span - 0.5], [y + 0.2] * 2, color=PALETTE["kernel"], lw=1.5)
        taps = [start + t * dilation + 0.5 for t in range(kernel_size)]
        ax.scatter(taps, [y + 0.2] * kernel_size, color=PALETTE["kernel"], s=28, zorder=3)
        ax.text(-0.4, y + 0.2, f"out {i}", ha="right", va="center", fontsize=8, color=PALETTE["output"])
    ax.set_xlim(-2.2, total + 0.2)
    ax.set_ylim(1.35 + 0.45 * n_out + 0.2, -0.2)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(
        title or (f"n={size}, k={kernel_size}, s={stride}, p={padding}, d={dilation}: {n_out} window positions"),
        fontsize=10,
    )
    return ax


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
):
    """One receptive field, the column of the patch matrix it becomes, and the output pixel it produces.

    ``x`` is one image, C x H x W (or H x W for C = 1); ``weight`` is one filter, C x kh x kw (or kh x kw);
    ``position=(i, j)`` is the output pixel. Three panels, left to right: channel ``channel`` of the padded
    input with the window of (i, j) outlined (its taps, when dilated); the patch matrix ``cols = im2col(x)``
    (C*kh*kw x L) with column ``l = i*Wo + j`` outlined; the output ``Y = W_row @ cols + bias`` reshaped to
    Ho x Wo with pixel (i, j) outlined. ``axes`` (three matplotlib axes) lets a caller draw frames of an
    animation; returns the three axes.
    """
    import torch.nn.functional as F

    from ._checks import pair
    from .im2col import im2col

    X = torch.as_tensor(x).detach().cpu()
    Wt = torch.as_tensor(weight).detach().cpu()
    X = X[None] if X.dim() == 2 else X
    Wt = Wt[None] if Wt.dim() == 2 else Wt
    if X.dim() != 3 or Wt.dim() != 3 or X.shape[0] != Wt.shape[0]:
        raise ValueError(
            f"x must be C x H x W and weight C x kh x kw with the same C, got {tuple(X.shape)} and {tuple(Wt.shape)}"
        )
    C, kh, kw = Wt.shape
    (sh, sw), (ph, pw), (dh, dw) = (
        pair(stride, "stride", minimum=1),
        pair(padding, "padding", minimum=0),
        pair(dilation, "dilation", minimum=1),
    )
    cols = im2col(X[None].to(Wt.dtype), (kh, kw), (sh, sw), (ph, pw), (dh, dw))[0]  # C*kh*kw x L
    Ho = (X.shape[1] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = cols.shape[1] // Ho
    i, j = position
    if not (0 <= i < Ho and 0 <= j < Wo):
        raise ValueError(f"position {position} is outside the {Ho} x {Wo} output")
    if not 0 <= channel < C:
        raise ValueError(f"channel must be in 0..{C - 1}, got {channel}")
    l = i * Wo + j
    Y = (Wt.reshape(1, -1) @ cols + bias).reshape(Ho, Wo)
    Xp = F.pad(X[channel], (pw, pw, ph, ph))

    own_figure = axes is None
    if own_figure:
        Hp, Wp = Xp.shape
        K, L = cols.shape
        ratios = [Wp + 1.5, L + 2.5, max(Wo, 3) + 2.5]
        height = min(5.0, 0.32 * max(Hp, K) + 1.6)
        fig, axes = plt.subplots(1, 3, figsize=(max_fig_width, height), gridspec_kw={"width_ratios": ratios})
        if title:
            fig.suptitle(title)
    ax_in, ax_cols, ax_out = axes
    taps = [(i * sh + u * dh, j * sw + v * dw) for u in range(kh) for v in range(kw)]
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    window = (i * sh, j * sw, *span) if (dh, dw) == (1, 1) else None
    show_grid(
        Xp,
        ax=ax_in,
        padding=(ph, pw),
        window=window,
        cells=taps if window is None else (),
        title=f"input X (channel {channel})\nwindow of output ({i}, {j})",
    )
    rows = [f"{c},{u},{v}" for c in range(C) for u in range(kh) for v in range(kw)]
    show_matrix(
        cols,
        ax=ax_cols,
        highlight_cols=[l],
        title=f"patch matrix cols\ncolumn l = {i}*{Wo}+{j} = {l}",
        xlabel="l (output position)",
        ylabel="row (c, u, v)" if len(rows) <= 27 else "row",
        yticklabels=rows if len(rows) <= 27 else "auto",
    )
    if len(rows) <= 27:  # the rows that came from the channel drawn on the left, in bold
        ax_cols.tick_params(axis="y", labelrotation=0)
        for r, label in enumerate(ax_cols.get_yticklabels()):
            if channel * kh * kw <= r < (channel + 1) * kh * kw:
                label.set_fontweight("bold")
    value = format(float(Y[i, j]), ".0f" if _integral(Y.numpy()) else ".2f")
    show_grid(Y, ax=ax_out, role="output", window=(i, j, 1, 1), title=f"output Y\nY[{i}, {j}] = {value}")
    for ax in axes:
        ax.title.set_fontsize(10)
    if own_figure:
        ax_in.figure.tight_layout()
    return axes


__all__ += ["show_patch_column"]


# ---------------------------------------------------------------- chapter 1: one layer, one output entry

__all__ += ["show_conv_layer", "show_entry_products"]


def _taps_outline(ax, rows, cols, lw: float = 3.0):
    """Outline the taps a window reads: one rectangle if they are contiguous, else every tap (dilation)."""
    if rows[-1] - rows[0] == len(rows) - 1 and cols[-1] - cols[0] == len(cols) - 1:
        outline(ax, rows[0], cols[0], len(rows), len(cols), lw=lw)
    else:
        for r in rows:
            for c in cols:
                outline(ax, r, c, lw=lw * 2 / 3)


def show_conv_layer(
    x, weight, bias=None, stride=1, padding=0, dilation=1, index=None, output: bool = True, title: str | None = None
):
    """One convolution layer laid out like the CS231n demo: padded input, filters, output, one panel per channel.

    Column 1 holds the channels of the zero-padded input ``x`` (C x H x W, or 1 x C x H x W), one per row,
    padding grey; then one column per filter ``W[o]`` (its C channels, orange, bias below); then, if ``output``,
    the O output channels (green). ``index=(o, i, j)`` highlights output entry ``Y[o, i, j]``, the window it reads
    in every input channel and the filter it uses. Groups are not drawn (every filter reads every channel).
    Returns the figure.
    """
    from ._checks import conv2d_args
    from .entry import entry_products
    from .naive import conv2d_naive

    a = conv2d_args(x, weight, bias, stride, padding, dilation)
    if a.x.shape[0] != 1:
        raise ValueError(
            f"show_conv_layer draws one image: input must be C x H x W or 1 x C x H x W, got shape {tuple(x.shape)}"
        )
    if index is not None and (not isinstance(index, (tuple, list)) or len(index) != 3):
        raise ValueError(f"index must be (o, i, j), got {index!r}")
    ph, pw = a.padding
    Xp = torch.nn.functional.pad(a.x, (pw, pw, ph, ph))[0].detach()
    Wt = a.weight.detach()
    C, Hp, Wp = Xp.shape
    O, _, kh, kw = Wt.shape
    Y = conv2d_naive(a.x, a.weight, a.bias, a.stride, a.padding, a.dilation)[0].detach() if output else None
    ep = entry_products(a.x, a.weight, a.bias, a.stride, a.padding, a.dilation, index=(0, *index)) if index else None
    pad = (Hp - a.x.shape[2]) // 2, (Wp - a.x.shape[3]) // 2  # the drawn ring ('same' may pad one side more)
    pad = (ph, pw) if (Hp, Wp) == (a.x.shape[2] + 2 * ph, a.x.shape[3] + 2 * pw) else pad

    nrows = max(C, O if output else 0)
    widths = [Wp] + [kw] * O + ([Y.shape[2]] if output else [])
    cell = min(0.32, (max_fig_width - 0.6 * len(widths)) / sum(widths))
    figsize = (min(max_fig_width, cell * sum(widths) + 0.6 * len(widths)), nrows * (cell * Hp + 0.7))
    fig, axes = plt.subplots(nrows, len(widths), figsize=figsize, gridspec_kw={"width_ratios": widths}, squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    vx = float(Xp.abs().max()) or 1.0
    vw = float(Wt.abs().max()) or 1.0
    for c in range(C):
        ax = axes[c, 0]
        ax.set_visible(True)
        show_grid(Xp[c], ax=ax, padding=pad, vmax=vx, axis_labels=False, title=f"input X[{c}] (padded)")
        # number rows and columns of the padded input, as i*s + u*d does (and entry_products prints)
        ax.set_xticks(np.arange(Wp) + 0.5, labels=range(Wp))
        ax.set_yticks(np.arange(Hp) + 0.5, labels=range(Hp))
        ax.set_ylabel("padded row")
        if c == C - 1:
            ax.set_xlabel("padded column")
        if ep is not None:
            _taps_outline(ax, ep.rows, ep.cols)
    for o in range(O):
        for c in range(C):
            ax = axes[c, 1 + o]
            ax.set_visible(True)
            show_grid(Wt[o, c], ax=ax, role="kernel", vmax=vw, axis_labels=False, title=f"W[{o}, {c}]")
            if c == C - 1:
                ax.set_xlabel("v" + (f"\nbias b[{o}] = {a.bias[o].item():g}" if a.bias is not None else ""))
            if c == 0:
                ax.set_ylabel("u")
            if ep is not None and o == ep.index[1]:
                outline(ax, 0, 0, kh, kw)
    if output:
        vy = float(Y.abs().max()) or 1.0
        for o in range(O):
            ax = axes[o, -1]
            ax.set_visible(True)
            show_grid(Y[o], ax=ax, role="output", vmax=vy, axis_labels=False, title=f"output Y[{o}]")
            ax.set_ylabel("i")
            ax.set_xlabel("j")
            if ep is not None and o == ep.index[1]:
                outline(ax, ep.index[2], ep.index[3])
    if title is None:
        title = (
            f"{C} x {a.x.shape[2]} x {a.x.shape[3]} input, {O} filters {C} x {kh} x {kw}, "
            f"stride {a.stride[0]}, padding {ph}"
        )
        if ep is not None:
            o, i, j = index
            value = f" = {ep.value.item():g}" if output else ""
            title += f"\nY[{o}, {i}, {j}]{value} reads the outlined windows with filter W[{o}]"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def show_entry_products(ep, title: str | None = None):
    """The hand computation of one output entry (from ``convlib.entry_products``) as a figure.

    One row per input channel: the window it reads (taps on the zero padding grey, tick labels are rows and
    columns of the padded input), times the filter, equals the elementwise products, whose sum is in the title.
    Returns the figure.
    """
    n, o, i, j = ep.index
    Cg, kh, kw = ep.weight.shape
    fig, axes = plt.subplots(
        Cg, 3, figsize=(min(max_fig_width, 3 * (0.45 * kw + 1.3)), Cg * (0.45 * kh + 0.9)), squeeze=False
    )
    vx = float(ep.window.abs().max()) or 1.0
    vw = float(ep.weight.abs().max()) or 1.0
    vp = float(ep.products.abs().max()) or 1.0
    fmt = ".0f" if all(_integral(t.detach().cpu().numpy()) for t in (ep.window, ep.weight)) else ".2f"
    pad = ep.in_padding
    for k, c in enumerate(ep.channels):
        axw, axk, axp = axes[k]
        show_grid(ep.window[k], ax=axw, vmax=vx, fmt=fmt, axis_labels=False, title=f"window of X[{c}]")
        for u in range(kh):
            for v in range(kw):
                if pad[u, v]:  # the value (0) drawn by show_grid stays on top of the grey
                    axw.add_patch(Rectangle((v, u), 1, 1, facecolor=PALETTE["padding"], edgecolor="white", lw=1.0))
        axw.set_xticks(np.arange(kw) + 0.5, labels=[str(col) for col in ep.cols])
        axw.set_yticks(np.arange(kh) + 0.5, labels=[str(r) for r in ep.rows])
        axw.set_ylabel("padded row")
        show_grid(ep.weight[k], ax=axk, role="kernel", vmax=vw, fmt=fmt, axis_labels=False, title=f"W[{o}, {c}]")
        prod_fmt = ".0f" if _integral(ep.products[k].detach().cpu().numpy()) else ".2f"
        # + 0.0 turns the -0 of a negative weight times a zero into 0
        show_grid(
            ep.products[k] + 0.0,
            ax=axp,
            role="output",
            vmax=vp,
            fmt=prod_fmt,
            axis_labels=False,
            title=f"products: sum {ep.channel_sums[k].item():g}",
        )
        for ax, sign in ((axk, "\u00d7"), (axp, "=")):
            ax.text(-0.35, 0.5, sign, transform=ax.transAxes, ha="center", va="center", fontsize=16)
        if k == Cg - 1:
            axw.set_xlabel("padded column")
            axk.set_xlabel("v")
            axp.set_xlabel("v")
        axk.set_ylabel("u")
    if title is None:
        terms = " + ".join(f"({s:g})" if s < 0 else f"{s:g}" for s in ep.channel_sums.tolist())
        if ep.bias is not None:
            b = ep.bias.item()
            terms += f" + {f'({b:g})' if b < 0 else f'{b:g}'} (bias)"
        title = f"Y[{n}, {o}, {i}, {j}] = {terms} = {ep.value.item():g}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the convolution matrix (chapter 3)

__all__ += ["kernel_row_colors", "show_conv_matrix", "show_toeplitz_blocks", "spy"]


def kernel_row_colors(kh: int) -> list:
    """``kh`` shades of the kernel colour, light to dark: one per kernel row (Toeplitz block)."""
    light, dark = np.array(plt.matplotlib.colors.to_rgb("#F7C08F")), np.array(plt.matplotlib.colors.to_rgb("#9C4A0E"))
    if kh == 1:
        return [PALETTE["kernel"]]
    return [tuple(light + (dark - light) * u / (kh - 1)) for u in range(kh)]


def _stored(M, A: np.ndarray) -> np.ndarray:
    """Where a matrix has entries: the stored pattern of a torch sparse matrix (explicit zeros included,
    e.g. a kernel tap that happens to be 0), else the non-zeros of the dense array ``A``."""
    if isinstance(M, torch.Tensor) and M.layout == torch.sparse_csr:
        crow, col = M.crow_indices().cpu().numpy(), M.col_indices().cpu().numpy()
        mask = np.zeros(M.shape, dtype=bool)
        mask[np.repeat(np.arange(M.shape[0]), np.diff(crow)), col] = True
        return mask
    return A != 0


def _split_shape(shape):
    shape = tuple(int(n) for n in shape)
    return (1, *shape) if len(shape) == 2 else shape


def show_conv_matrix(
    M, in_shape, out_shape, ax=None, annot="auto", title=None, highlight_rows=(), xlabel=None, ylabel=None
):
    """The convolution matrix M as a heatmap in the kernel colour (zeros white), its structure ruled.

    ``in_shape`` is (H, W) or (C, H, W) and ``out_shape`` (Ho, Wo) or (O, Ho, Wo): thin lines separate image
    rows (every W columns, every Wo rows), thick lines channels (every H*W columns, Ho*Wo rows). Non-zero
    entries are written in when M is at most 40 columns wide (``annot='auto'``). ``highlight_rows`` get the
    bold outline. Accepts a dense or a torch sparse matrix; a sparse matrix's stored entries that are 0 (a
    kernel tap of value 0) are written in and lightly tinted.
    """
    A = _to_numpy(M).astype(float)
    C, H, W = _split_shape(in_shape)
    O, Ho, Wo = _split_shape(out_shape)
    if A.shape != (O * Ho * Wo, C * H * W):
        raise ValueError(f"M has shape {A.shape}, not (O*Ho*Wo, C*H*W) = {(O * Ho * Wo, C * H * W)}")
    rows, cols = A.shape
    if ax is None:
        width = min(max_fig_width, 0.24 * cols + 1.5)
        _, ax = plt.subplots(figsize=(width, min(8.0, (width - 1.5) * rows / cols + 1.2)))
    if annot == "auto":
        annot = cols <= 40
    stored = _stored(M, A)
    labels = False
    if annot:
        fmt = ".0f" if _integral(A) else ".1f"
        labels = np.where(stored, np.vectorize(lambda a: format(a, fmt))(A), "")
    signed = bool(A.size and A.min() < 0)
    norm = _norm(A, signed, None)
    sns.heatmap(
        A,
        ax=ax,
        cmap=role_cmap("kernel", signed),
        vmin=norm.vmin,
        vmax=norm.vmax,
        annot=labels,
        fmt="",
        cbar=False,
        linewidths=0.0,
        xticklabels=False,
        yticklabels=False,
        annot_kws={"fontsize": 7},
    )
    for r, c in zip(*np.nonzero(stored & (A == 0))):  # stored entries whose value is 0: a light tint
        ax.add_patch(Rectangle((c, r), 1, 1, facecolor=PALETTE["kernel"], alpha=0.15, lw=0))
    for c in range(0, cols + 1, W):
        ax.axvline(c, color="#000000" if c % (H * W) == 0 else "#BBBBBB", lw=1.5 if c % (H * W) == 0 else 0.6)
    for r in range(0, rows + 1, Wo):
        ax.axhline(r, color="#000000" if r % (Ho * Wo) == 0 else "#BBBBBB", lw=1.5 if r % (Ho * Wo) == 0 else 0.6)
    if C == 1 and H <= 16:
        ax.set_xticks(np.arange(H) * W + W / 2, labels=[f"r={r}" for r in range(H)], fontsize=8)
    elif C > 1:
        ax.set_xticks(np.arange(C) * H * W + H * W / 2, labels=[f"c={c}" for c in range(C)], fontsize=8)
    if O == 1 and Ho <= 16:
        ax.set_yticks(np.arange(Ho) * Wo + Wo / 2, labels=[f"i={i}" for i in range(Ho)], fontsize=8, rotation=0)
    elif O > 1:
        ax.set_yticks(np.arange(O) * Ho * Wo + Ho * Wo / 2, labels=[f"o={o}" for o in range(O)], fontsize=8, rotation=0)
    ax.tick_params(length=0)
    for r in np.atleast_1d(highlight_rows):
        outline(ax, int(r), 0, 1, cols)
    ax.set_xlabel(xlabel or "column = input pixel (c, r, q), flattened; blocks: image rows r")
    ax.set_ylabel(ylabel or "row = output pixel (o, i, j)")
    if title:
        ax.set_title(title)
    return ax


def show_toeplitz_blocks(M, block_shape, kernel_rows, ax=None, title=None, annot="auto"):
    """The doubly blocked Toeplitz structure: each block of M outlined and coloured by its kernel row.

    ``block_shape`` is (Wo, W), the size of one Toeplitz block; ``kernel_rows`` is the Ho x H grid of kernel
    row indices (-1 for a zero block), e.g. ``convlib.toeplitz.block_rows(kh, Ho, H)``. Block (i, r) holding
    kernel row u is tinted with shade u of the kernel colour (light to dark), its non-zeros drawn in full
    colour, outlined, and labelled T_u.
    """
    A = _to_numpy(M).astype(float)
    bh, bw = block_shape
    K = np.asarray(kernel_rows)
    if A.shape != (K.shape[0] * bh, K.shape[1] * bw):
        raise ValueError(
            f"M has shape {A.shape}, but {K.shape} blocks of {block_shape} make {(K.shape[0] * bh, K.shape[1] * bw)}"
        )
    stored = _stored(M, A)
    kh = int(K.max()) + 1
    shades = kernel_row_colors(kh)
    rgba = np.ones(A.shape + (4,))
    for (i, r), u in np.ndenumerate(K):
        if u < 0:
            continue
        block = (slice(i * bh, (i + 1) * bh), slice(r * bw, (r + 1) * bw))
        light = np.array(plt.matplotlib.colors.to_rgba(shades[u]))
        rgba[block] = 0.78 + 0.22 * light  # a light tint of the block's colour
        rgba[block][stored[block]] = light
    rows, cols = A.shape
    if ax is None:
        width = min(max_fig_width, 0.24 * cols + 1.5)
        _, ax = plt.subplots(figsize=(width, min(8.0, (width - 1.5) * rows / cols + 1.4)))
    ax.imshow(rgba, extent=(0, cols, rows, 0), interpolation="nearest")
    if annot == "auto":
        annot = cols <= 40
    fmt = ".0f" if _integral(A) else ".1f"
    for (i, r), u in np.ndenumerate(K):
        if u < 0:
            continue
        outline(ax, i * bh, r * bw, bh, bw, color=shades[u], lw=2.0)
        if annot:
            for a in range(bh):
                for b in range(bw):
                    if stored[i * bh + a, r * bw + b]:
                        v = A[i * bh + a, r * bw + b]
                        ax.text(
                            r * bw + b + 0.5,
                            i * bh + a + 0.5,
                            format(v, fmt),
                            ha="center",
                            va="center",
                            fontsize=7,
                            color="white" if u > (kh - 1) / 2 else "black",
                        )
        else:
            ax.text(r * bw + bw / 2, i * bh + bh / 2, f"$T_{u}$", ha="center", va="center", fontsize=9)
    ax.set_xticks(np.arange(K.shape[1]) * bw + bw / 2, labels=[f"r={r}" for r in range(K.shape[1])], fontsize=8)
    ax.set_yticks(np.arange(K.shape[0]) * bh + bh / 2, labels=[f"i={i}" for i in range(K.shape[0])], fontsize=8)
    ax.tick_params(length=0)
    ax.set_xlabel("block column r (input image row)")
    ax.set_ylabel("block row i (output image row)")
    handles = [Rectangle((0, 0), 1, 1, facecolor=shades[u], label=f"$T_{u}$: kernel row {u}") for u in range(kh)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    return ax


def spy(
    M,
    ax=None,
    title=None,
    block_shape=None,
    xlabel="column (input pixel, flattened)",
    ylabel="row (output pixel, flattened)",
):
    """The sparsity pattern of a matrix: non-zeros in the kernel colour, zeros white.

    ``block_shape=(rows, cols)`` rules the matrix into blocks (e.g. (Ho*Wo, H*W): one block per
    (out-channel, in-channel) pair). The default title gives the shape, the number of non-zeros and the
    density. Accepts a dense or a torch sparse matrix (then its stored entries are drawn).
    """
    A = _to_numpy(M)
    rows, cols = A.shape
    nz = _stored(M, A)
    if ax is None:
        width = min(max_fig_width, 6.0)
        _, ax = plt.subplots(figsize=(width, min(8.0, width * rows / cols + 1.0)))
    rgba = np.ones(A.shape + (4,))
    rgba[nz] = plt.matplotlib.colors.to_rgba(PALETTE["kernel"])
    ax.imshow(rgba, extent=(0, cols, rows, 0), interpolation="nearest", aspect="auto")
    if block_shape is not None:
        bh, bw = block_shape
        for c in range(bw, cols, bw):
            ax.axvline(c, color="#000000", lw=0.8)
        for r in range(bh, rows, bh):
            ax.axhline(r, color="#000000", lw=0.8)
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    if title is None:
        title = f"{rows} x {cols}, {int(nz.sum())} non-zeros ({nz.mean():.1%})"
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    return ax


def _square_axes(n: int, ncols: int, panel: float = 2.3):
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(min(max_fig_width, panel * ncols), (panel + 0.3) * nrows + 0.5))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes[n:]:
        ax.axis("off")
    return fig, axes[:n]


def show_stamps(x, kernel, stride: int = 1, padding: int = 0, ncols: int = 3, title: str | None = None):
    """Transposed convolution as stamping: every input pixel adds a scaled copy of the kernel to the output.

    ``x`` is one small channel (h x w), ``kernel`` one kh x kw kernel. Panels, in reading order: the input;
    one panel per input pixel (i, j), the full output canvas ((h-1)*s + kh) x ((w-1)*s + kw) holding
    ``x[i, j] * kernel`` at rows i*s.., columns j*s.. (outlined); last, their sum. ``padding`` p greys the
    outer p rows and columns of the sum: a transposed convolution *cuts* them off. Returns the axes.
    """
    X = _to_numpy(x).astype(float)
    K = _to_numpy(kernel).astype(float)
    h, w = X.shape
    kh, kw = K.shape
    Hf, Wf = (h - 1) * stride + kh, (w - 1) * stride + kw
    stamps, total = [], np.zeros((Hf, Wf))
    for i in range(h):
        for j in range(w):
            canvas = np.zeros((Hf, Wf))
            canvas[i * stride : i * stride + kh, j * stride : j * stride + kw] = X[i, j] * K
            stamps.append((i, j, canvas))
            total += canvas
    vmax = max(np.abs(total).max(), np.abs([c for *_, c in stamps]).max()) or 1.0
    fig, axes = _square_axes(len(stamps) + 2, ncols)
    show_grid(X, ax=axes[0], role="input", title="input x", axis_labels=False)
    for ax, (i, j, canvas) in zip(axes[1:], stamps):
        show_grid(
            canvas,
            ax=ax,
            role="kernel",
            vmax=vmax,
            axis_labels=False,
            window=(i * stride, j * stride, kh, kw),
            title=f"x[{i},{j}] = {X[i, j]:g}: adds {X[i, j]:g}·K",
        )
    show_grid(
        total,
        ax=axes[-1],
        role="output",
        padding=padding,
        vmax=vmax,
        axis_labels=False,
        title="sum" + (f" (grey: cut, p={padding})" if padding else ""),
    )
    for ax in axes:
        ax.title.set_fontsize(10)
    fig.suptitle(title or f"transposed convolution, stride {stride}: one stamp per input pixel", fontsize=11)
    fig.supxlabel("output column", fontsize=9)
    fig.supylabel("output row", fontsize=9)
    fig.tight_layout()
    return axes


def show_zero_insertion(x, kernel, stride: int = 1, padding: int = 0, dilation: int = 1, title: str | None = None):
    """The zero-insertion view of a transposed convolution, in four panels.

    ``x`` is one channel (h x w), ``kernel`` one kh x kw kernel (one input and one output channel). Panels:
    the kernel K; K rotated by 180 degrees; the input with ``stride - 1`` zeros inserted between its pixels
    (the original pixels outlined) and ``d(k-1) - p`` zeros of padding around it (grey); the output of the
    ordinary stride-1 convolution of that with the rotated kernel. Needs ``d(k-1) >= p`` on both axes (else
    the view crops instead of pads). Returns the axes.
    """
    import torch.nn.functional as F

    from .im2col import conv2d_im2col
    from .transposed import insert_zeros

    X = torch.as_tensor(_to_numpy(x), dtype=torch.float64)
    K = torch.as_tensor(_to_numpy(kernel), dtype=torch.float64)
    kh, kw = K.shape
    qh, qw = dilation * (kh - 1) - padding, dilation * (kw - 1) - padding
    if min(qh, qw) < 0:
        raise ValueError(f"show_zero_insertion needs padding <= d(k-1) = {min(qh, qw) + padding}, got {padding}")
    up = insert_zeros(X, stride)
    padded = F.pad(up, (qw, qw, qh, qh))
    K_rot = K.flip(0, 1)
    Y = conv2d_im2col(padded[None, None], K_rot[None, None], dilation=dilation)[0, 0]
    originals = [(qh + i * stride, qw + j * stride) for i in range(X.shape[0]) for j in range(X.shape[1])]
    widths = [kw, kw, padded.shape[1], Y.shape[1]]
    fig, axes = plt.subplots(
        1, 4, figsize=(max_fig_width, 0.42 * padded.shape[0] + 1.4), gridspec_kw={"width_ratios": widths}
    )
    show_grid(K, ax=axes[0], role="kernel", title="kernel K", axis_labels=False)
    show_grid(K_rot, ax=axes[1], role="kernel", title="K rotated 180°", axis_labels=False)
    show_grid(
        padded,
        ax=axes[2],
        role="input",
        padding=(qh, qw),
        cells=originals,
        axis_labels=False,
        title=f"x: {stride - 1} zero(s) between pixels,\npadding d(k-1)-p = {qh}",
    )
    show_grid(Y, ax=axes[3], role="output", axis_labels=False, title="convolution\nwith rotated K")
    for ax in axes:
        ax.set_xlabel("column", fontsize=8)
    axes[0].set_ylabel("row", fontsize=8)
    fig.suptitle(title or f"zero insertion: stride {stride} becomes stride 1 on a spread-out input", fontsize=11)
    fig.tight_layout()
    return axes


__all__ += ["show_stamps", "show_zero_insertion"]
# ---------------------------------------------------------------- images, feature maps, filters, curves


def _image_array(img) -> np.ndarray:
    """A C x H x W (C = 1 or 3) or H x W tensor/array as an H x W or H x W x 3 numpy array."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().float().numpy()
    a = np.asarray(img, dtype=float)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
    if a.ndim != 2 and not (a.ndim == 3 and a.shape[-1] == 3):
        raise ValueError(f"each image must be H x W, 1 x H x W or 3 x H x W, got shape {a.shape}")
    return a


def show_images(
    images,
    titles=None,
    ncols: int | None = None,
    suptitle: str | None = None,
    role: str = "output",
    signed: bool | None = None,
    shared_scale: bool = True,
    cbar: bool = False,
    size: float = 1.3,
    axes=None,
):
    """A grid of images: RGB ones (3 x H x W, values in [0, 1]) as they are, one-channel ones (feature maps)
    in the colours of ``role`` (purple-white-colour when they have negative values).

    ``images`` is a list or a tensor whose first axis runs over the images; ``titles`` one string per image.
    With ``shared_scale`` all one-channel maps use one colour scale (so their strengths compare); otherwise
    each its own. Returns the figure; its axes are ``fig.axes`` (``axes`` draws into given axes instead).
    """
    arrays = [_image_array(im) for im in images]
    if not arrays:
        raise ValueError("no images to show")
    if titles is not None and len(titles) != len(arrays):
        raise ValueError(f"got {len(titles)} titles for {len(arrays)} images")
    n = len(arrays)
    own_figure = axes is None
    if own_figure:
        ncols = ncols or min(n, 10)
        nrows = -(-n // ncols)
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(min(max_fig_width, size * ncols), size * nrows + 0.4 * bool(suptitle)), squeeze=False
        )
        axes = axes.ravel()
    else:
        axes = np.ravel(axes)
        fig = axes[0].figure
    maps = [a for a in arrays if a.ndim == 2]
    if signed is None:
        signed = bool(maps) and min(float(a.min()) for a in maps) < 0
    shared_m = max((float(np.abs(a).max()) for a in maps), default=1.0) or 1.0
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        a = arrays[i]
        if a.ndim == 3:
            ax.imshow(np.clip(a, 0.0, 1.0), interpolation="nearest")
        else:
            m = shared_m if shared_scale else (float(np.abs(a).max()) or 1.0)
            lo = -m if signed else (0.0 if a.min() >= 0 or shared_scale else float(a.min()))
            im = ax.imshow(a, cmap=role_cmap(role, signed), vmin=lo, vmax=m, interpolation="nearest")
            if cbar:
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    if own_figure:
        fig.tight_layout()
    return fig


def show_filters(weight, ncols: int = 8, suptitle: str | None = None, size: float = 0.9):
    """The filters of a convolution layer (O x C x kh x kw) as small images, one per output channel.

    With C = 3 each filter is shown as a colour image, scaled on its own to [0, 1] (so its pattern shows,
    not its size); with C = 1 in the kernel colours (purple negative, white 0, orange positive). Returns the
    figure.
    """
    if isinstance(weight, torch.Tensor):
        weight = weight.detach().cpu().float()
    else:
        weight = torch.as_tensor(np.asarray(weight), dtype=torch.float32)
    if weight.dim() != 4 or weight.shape[1] not in (1, 3):
        raise ValueError(f"weight must be O x C x kh x kw with C = 1 or 3, got shape {tuple(weight.shape)}")
    ncols = min(ncols, weight.shape[0])
    if weight.shape[1] == 3:
        lo = weight.amin(dim=(1, 2, 3), keepdim=True)
        hi = weight.amax(dim=(1, 2, 3), keepdim=True)
        images = (weight - lo) / (hi - lo).clamp_min(1e-12)
        return show_images(images, ncols=ncols, suptitle=suptitle, size=size)
    return show_images(weight[:, 0], ncols=ncols, suptitle=suptitle, size=size, role="kernel", signed=True)


def plot_curves(
    curves: dict,
    ax=None,
    title: str | None = None,
    xlabel: str = "step",
    ylabel: str = "loss",
    colors=None,
    smooth: int | None = None,
):
    """Several curves (e.g. training losses) on one axes: the first solid and wide, the next ones narrower and
    dashed on top of it, so that curves which coincide are visibly the same line.

    ``curves`` maps a label to a sequence of y values (x = 0, 1, 2, ...). With ``smooth=k`` the raw values are
    drawn faint and thin, and the curves described above are their moving averages over ``k`` consecutive
    values (plotted at the window's last x). Colours default to the palette's kernel, input and output
    colours. Returns the axes.
    """
    if not curves:
        raise ValueError("no curves to plot")
    if smooth is not None and (not isinstance(smooth, int) or isinstance(smooth, bool) or smooth < 1):
        raise ValueError(f"smooth must be a positive int (a window length) or None, got {smooth!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(min(max_fig_width, 6.5), 3.2))
    colors = colors or [
        PALETTE["kernel"],
        PALETTE["input"],
        PALETTE["output"],
        PALETTE["highlight"],
        PALETTE["negative"],
    ]
    for i, (label, ys) in enumerate(curves.items()):
        ys = np.asarray(ys.detach().cpu() if isinstance(ys, torch.Tensor) else ys, dtype=float)
        xs = np.arange(len(ys))
        color = colors[i % len(colors)]
        if smooth:
            if len(ys) < smooth:
                raise ValueError(f"curve {label!r} has {len(ys)} values, fewer than the window smooth={smooth}")
            ax.plot(xs, ys, color=color, lw=0.6, alpha=0.35)
            ys = np.convolve(ys, np.ones(smooth) / smooth, mode="valid")
            xs = xs[smooth - 1 :]
            label = f"{label} ({smooth}-step mean)"
        style = {"lw": 3.0, "ls": "-", "alpha": 0.8} if i == 0 else {"lw": 1.4, "ls": (0, (4, 2 + i))}
        ax.plot(xs, ys, color=color, label=label, **style)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return ax
