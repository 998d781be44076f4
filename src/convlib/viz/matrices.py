"""Matrices: a heatmap in the colours of its role, the convolution matrix M ruled by its blocks, sparsity patterns.

Every matrix here is drawn by :func:`convlib.viz.style.draw_cells`, zeros white; a torch sparse matrix is drawn
with its stored entries (a stored 0, e.g. a kernel tap that happens to be 0, counts as an entry).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import to_rgb, to_rgba
from matplotlib.patches import Rectangle

from .style import (
    FONT,
    MAX_FIG_WIDTH,
    PALETTE,
    as_matrix,
    draw_cells,
    outline,
    role_cmap,
    role_norm,
)

__all__ = ["show_matrix", "show_conv_matrix", "show_toeplitz_blocks", "spy", "kernel_row_colors"]


def _ticks(labels):
    """seaborn's tick-label arguments (True, False, 'auto', an int n, a list) as :func:`draw_cells` takes them."""
    return 1 if labels is True else labels


def _labels(ax, title=None, xlabel=None, ylabel=None):
    if title:
        ax.set_title(title, fontsize=FONT["title"])
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=FONT["label"])
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=FONT["label"])


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
    min_fontsize: float = FONT["min"],
):
    """A matrix as a heatmap in the colours of its role; zeros white, negative values purple.

    ``annot='auto'`` writes the values into the cells when the matrix is at most 12 x 12 (integers without
    decimals). ``highlight_rows`` / ``highlight_cols`` get the bold outline (e.g. the column of the patch
    matrix that one receptive field became). Tick labels: True, False, 'auto', every n-th (an int) or a list.
    """
    A = as_matrix(M).astype(float)
    if ax is None:
        h, w = A.shape
        _, ax = plt.subplots(figsize=(min(MAX_FIG_WIDTH, 0.45 * w + 1.5), min(8.0, 0.45 * h + 1.0)))
    signed = bool(A.size and A.min() < 0)
    cmap, norm = role_cmap(role, signed), role_norm(A, signed, vmax)
    if annot == "auto":
        annot = max(A.shape) <= 12
    draw_cells(
        ax,
        cmap(norm(A)),
        A if annot else None,
        fmt=fmt,
        ticks=(_ticks(yticklabels), _ticks(xticklabels)),
        lines="#EEEEEE",
        linewidth=linewidths,
        aspect="auto",
        min_fontsize=min_fontsize,
    )
    if cbar:
        colorbar = ax.figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax)
        colorbar.ax.tick_params(labelsize=FONT["tick"])
    for r in np.atleast_1d(highlight_rows):
        outline(ax, int(r), 0, 1, A.shape[1])
    for c in np.atleast_1d(highlight_cols):
        outline(ax, 0, int(c), A.shape[0], 1)
    _labels(ax, title, xlabel, ylabel)
    return ax


def kernel_row_colors(kh: int) -> list:
    """``kh`` shades of the kernel colour, light to dark: one per kernel row (Toeplitz block)."""
    light, dark = np.array(to_rgb("#F7C08F")), np.array(to_rgb("#9C4A0E"))
    if kh == 1:
        return [PALETTE["kernel"]]
    return [tuple(light + (dark - light) * u / (kh - 1)) for u in range(kh)]


def stored_mask(M, A: np.ndarray) -> np.ndarray:
    """Where a matrix has entries: the stored pattern of a torch sparse matrix (explicit zeros included), else
    the non-zeros of the dense array ``A``."""
    if isinstance(M, torch.Tensor) and M.layout in (torch.sparse_csr, torch.sparse_coo):
        S = M.to_sparse_csr() if M.layout == torch.sparse_coo else M
        crow, col = S.crow_indices().cpu().numpy(), S.col_indices().cpu().numpy()
        mask = np.zeros(M.shape, dtype=bool)
        mask[np.repeat(np.arange(M.shape[0]), np.diff(crow)), col] = True
        return mask
    return A != 0


def _split_shape(shape):
    shape = tuple(int(n) for n in shape)
    return (1, *shape) if len(shape) == 2 else shape


def _figure_for(ax, rows: int, cols: int, extra: float = 1.2):
    if ax is not None:
        return ax
    width = min(MAX_FIG_WIDTH, 0.24 * cols + 1.5)
    return plt.subplots(figsize=(width, min(8.0, (width - 1.5) * rows / cols + extra)))[1]


def show_conv_matrix(
    M, in_shape, out_shape, ax=None, annot="auto", title=None, highlight_rows=(), xlabel=None, ylabel=None
):
    """The convolution matrix M as a heatmap in the kernel colour (zeros white), its structure ruled.

    ``in_shape`` is (H, W) or (C, H, W) and ``out_shape`` (Ho, Wo) or (O, Ho, Wo): thin lines separate image
    rows (every W columns, every Wo rows), thick lines channels (every H*W columns, Ho*Wo rows). The stored
    entries are written in when M is at most 40 columns wide (``annot='auto'``); a stored 0 (a kernel tap of
    value 0) is written in and lightly tinted. ``highlight_rows`` get the bold outline.
    """
    A = as_matrix(M).astype(float)
    C, H, W = _split_shape(in_shape)
    O, Ho, Wo = _split_shape(out_shape)
    if A.shape != (O * Ho * Wo, C * H * W):
        raise ValueError(f"M has shape {A.shape}, not (O*Ho*Wo, C*H*W) = {(O * Ho * Wo, C * H * W)}")
    rows, cols = A.shape
    ax = _figure_for(ax, rows, cols)
    stored = stored_mask(M, A)
    signed = bool(A.size and A.min() < 0)
    rgba = role_cmap("kernel", signed)(role_norm(A, signed)(A))
    tint = 0.85 + 0.15 * np.array(to_rgba(PALETTE["kernel"]))
    rgba[stored & (A == 0)] = tint  # stored entries whose value is 0
    annot = cols <= 40 if annot == "auto" else annot
    draw_cells(ax, rgba, A if annot else None, show=stored, ticks=(False, False), lines=None, aspect="auto")
    for c in range(0, cols + 1, W):
        ax.axvline(c, color="#000000" if c % (H * W) == 0 else "#BBBBBB", lw=1.5 if c % (H * W) == 0 else 0.6)
    for r in range(0, rows + 1, Wo):
        ax.axhline(r, color="#000000" if r % (Ho * Wo) == 0 else "#BBBBBB", lw=1.5 if r % (Ho * Wo) == 0 else 0.6)
    if C == 1 and H <= 16:
        ax.set_xticks(np.arange(H) * W + W / 2, labels=[f"r={r}" for r in range(H)])
    elif C > 1:
        ax.set_xticks(np.arange(C) * H * W + H * W / 2, labels=[f"c={c}" for c in range(C)])
    if O == 1 and Ho <= 16:
        ax.set_yticks(np.arange(Ho) * Wo + Wo / 2, labels=[f"i={i}" for i in range(Ho)])
    elif O > 1:
        ax.set_yticks(np.arange(O) * Ho * Wo + Ho * Wo / 2, labels=[f"o={o}" for o in range(O)])
    for r in np.atleast_1d(highlight_rows):
        outline(ax, int(r), 0, 1, cols)
    xlabel = xlabel or "column = input pixel (c, r, q), flattened; blocks: image rows r"
    _labels(ax, title, xlabel, ylabel or "row = output pixel (o, i, j)")
    return ax


def show_toeplitz_blocks(M, block_shape, kernel_rows, ax=None, title=None, annot="auto"):
    """The doubly blocked Toeplitz structure: each block of M outlined and coloured by its kernel row.

    ``block_shape`` is (Wo, W), the size of one Toeplitz block; ``kernel_rows`` is the Ho x H grid of kernel
    row indices (-1 for a zero block), e.g. ``convlib.toeplitz.block_rows(kh, Ho, H)``. Block (i, r) holding
    kernel row u is tinted with shade u of the kernel colour (light to dark), its stored entries drawn in full
    colour and written in, outlined, and labelled T_u when the entries are not written.
    """
    A = as_matrix(M).astype(float)
    bh, bw = block_shape
    B = np.asarray(kernel_rows)
    if A.shape != (B.shape[0] * bh, B.shape[1] * bw):
        raise ValueError(
            f"M has shape {A.shape}, but {B.shape} blocks of {block_shape} make {(B.shape[0] * bh, B.shape[1] * bw)}"
        )
    stored = stored_mask(M, A)
    shades = kernel_row_colors(int(B.max()) + 1)
    rgba = np.ones(A.shape + (4,))
    for (i, r), u in np.ndenumerate(B):
        if u >= 0:
            block = (slice(i * bh, (i + 1) * bh), slice(r * bw, (r + 1) * bw))
            rgba[block] = 0.78 + 0.22 * np.array(to_rgba(shades[u]))  # a light tint of the block's colour
            rgba[block][stored[block]] = to_rgba(shades[u])
    rows, cols = A.shape
    ax = _figure_for(ax, rows, cols, extra=1.4)
    annot = cols <= 40 if annot == "auto" else annot
    draw_cells(ax, rgba, A if annot else None, show=stored, ticks=(False, False), lines=None, aspect="auto")
    for (i, r), u in np.ndenumerate(B):
        if u >= 0:
            outline(ax, i * bh, r * bw, bh, bw, color=shades[u], lw=2.0)
            if not annot:
                ax.text(r * bw + bw / 2, i * bh + bh / 2, f"$T_{u}$", ha="center", va="center", fontsize=FONT["cell"])
    ax.set_xticks(np.arange(B.shape[1]) * bw + bw / 2, labels=[f"r={r}" for r in range(B.shape[1])])
    ax.set_yticks(np.arange(B.shape[0]) * bh + bh / 2, labels=[f"i={i}" for i in range(B.shape[0])])
    handles = [
        Rectangle((0, 0), 1, 1, facecolor=shades[u], label=f"$T_{u}$: kernel row {u}") for u in range(len(shades))
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=FONT["label"], frameon=False)
    _labels(ax, title, "block column r (input image row)", "block row i (output image row)")
    return ax


def spy(
    M,
    ax=None,
    title=None,
    block_shape=None,
    xlabel="column (input pixel, flattened)",
    ylabel="row (output pixel, flattened)",
):
    """The sparsity pattern of a matrix: stored entries in the kernel colour, zeros white.

    ``block_shape=(rows, cols)`` rules the matrix into blocks (e.g. (Ho*Wo, H*W): one block per
    (out-channel, in-channel) pair). The default title gives the shape, the number of non-zeros and the
    density. Accepts a dense or a torch sparse matrix (then its stored entries are drawn).
    """
    A = as_matrix(M)
    rows, cols = A.shape
    nz = stored_mask(M, A)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, min(8.0, 6.0 * rows / cols + 1.0)))
    rgba = np.ones(A.shape + (4,))
    rgba[nz] = to_rgba(PALETTE["kernel"])
    draw_cells(ax, rgba, lines=None, aspect="auto")
    if block_shape is not None:
        bh, bw = block_shape
        for c in range(bw, cols, bw):
            ax.axvline(c, color="#000000", lw=0.8)
        for r in range(bh, rows, bh):
            ax.axhline(r, color="#000000", lw=0.8)
    if title is None:
        title = f"{rows} x {cols}, {int(nz.sum())} non-zeros ({nz.mean():.1%})"
    _labels(ax, title, xlabel, ylabel)
    return ax
