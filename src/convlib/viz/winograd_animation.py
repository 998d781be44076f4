"""Animation of Winograd's F(m x m, 3 x 3) (chapter 7): every tile of the input through the three transforms.

For each output tile: the alpha x alpha input tile ``d`` it reads (X_t in the chapter) becomes ``B^T d B``;
that is multiplied elementwise by the transformed kernel ``G K G^T`` (alpha^2 multiplications, the only ones
that involve the data); ``A^T (.) A`` turns the product into the m x m output tile. The matrices are those of
:func:`convlib.winograd.toom_cook`; :func:`winograd_tile_frames` computes the numbers (pure torch) and the
output they assemble equals ``F.conv2d``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..winograd import toom_cook
from .grids import show_grid
from .player import DPI, READABLE, Animation, FrameArtists, fill_output, frame_figure, make_animation, margins
from .style import FONT, number_format, outline

__all__ = ["winograd_tile_frames", "animate_winograd_tiles", "STAGES"]

STAGES = ("input transform", "elementwise product", "output transform")


def winograd_tile_frames(x, kernel, m: int = 2, padding: int = 0) -> dict:
    """The numbers of every frame: three per output tile (``STAGES``), tiles row by row.

    ``x``: one H x W channel; ``kernel``: r x r (r = 3 for the book's F(m x m, 3 x 3)); ``padding``: zeros per
    side (an int). The output ``(H + 2p - r + 1)`` must split into whole m x m tiles. Returns a dict with
    ``padded`` (the zero-padded input), ``K_hat`` (``G K G^T``), ``values`` (the output, float64), ``m``,
    ``alpha``, ``padding`` and ``frames``: one dict per frame with ``tile`` (row, column of tiles), ``stage``
    (0, 1, 2), ``rows``/``cols`` (the first padded row and column of the tile), ``d``, ``X_hat``
    (``B^T d B``), ``product`` (``K_hat * X_hat``), ``Y_tile`` (``A^T product A``) and ``Y`` (the output
    so far, NaN where not yet written).
    """
    x2, K = torch.as_tensor(x).double(), torch.as_tensor(kernel).double()
    if x2.dim() != 2 or K.dim() != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"pass one H x W channel and a square r x r kernel, got {tuple(x2.shape)}, {tuple(K.shape)}")
    if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
        raise ValueError(f"padding must be a non-negative int, got {padding!r}")
    r = K.shape[0]
    tc = toom_cook(m, r)
    AT, G, BT = tc.tensors(torch.float64)
    xp = F.pad(x2, (padding,) * 4)
    Ho, Wo = xp.shape[0] - r + 1, xp.shape[1] - r + 1
    if Ho < m or Wo < m or Ho % m or Wo % m:
        raise ValueError(f"the {Ho} x {Wo} output does not split into whole {m} x {m} tiles")
    K_hat = G @ K @ G.T
    Y = torch.full((Ho, Wo), float("nan"), dtype=torch.float64)
    frames = []
    for ti in range(Ho // m):
        for tj in range(Wo // m):
            d = xp[ti * m : ti * m + tc.alpha, tj * m : tj * m + tc.alpha]
            X_hat = BT @ d @ BT.T
            product = K_hat * X_hat
            Y_tile = AT @ product @ AT.T
            for stage in range(len(STAGES)):
                if stage == 2:
                    Y[ti * m : (ti + 1) * m, tj * m : (tj + 1) * m] = Y_tile
                frames.append(
                    dict(
                        tile=(ti, tj),
                        stage=stage,
                        rows=ti * m,
                        cols=tj * m,
                        d=d.tolist(),
                        X_hat=X_hat.tolist(),
                        product=product.tolist(),
                        Y_tile=Y_tile.tolist(),
                        Y=Y.tolist(),
                    )
                )
    return dict(padded=xp, K_hat=K_hat, values=Y, m=m, alpha=tc.alpha, padding=padding, frames=frames)


def _panels(fr: dict, fmt: str, dpi: int):
    """Top: the padded input, B^T d B, G K G^T; bottom: the product, the output tile, the output."""
    a, m = fr["alpha"], fr["m"]
    Hp = fr["padded"].shape[0]
    height = 6.4
    fig = frame_figure(height, dpi)
    gs = fig.add_gridspec(2, 3, **margins(height, 0.95, 0.2, left=0.05), hspace=0.35, wspace=0.3)
    axes = [fig.add_subplot(gs[i, j]) for i in range(2) for j in range(3)]
    p = fr["padding"]
    fmt_x = number_format(fr["padded"])
    title = "input X (padding grey)"
    show_grid(fr["padded"], ax=axes[0], padding=p, fmt=fmt_x, axis_labels=False, title=title, min_fontsize=READABLE)
    title = rf"$\hat K = G K G^\top$ ({a} x {a})"
    show_grid(fr["K_hat"], ax=axes[2], role="kernel", fmt=fmt, axis_labels=False, title=title, min_fontsize=READABLE)
    axes[0].set_xlim(-0.05, Hp + 0.05)
    return fig, axes, m


def animate_winograd_tiles(x, kernel, m: int = 2, padding: int = 0, dpi: int = DPI) -> Animation:
    """F(m x m, 3 x 3) tile by tile, three frames per tile (:data:`STAGES`).

    Top row: the padded input with the tile ``d`` outlined, its transform ``X_hat = B^T d B``, and the
    transformed kernel ``K_hat = G K G^T`` (computed once). Bottom row: the elementwise product (the alpha^2
    multiplications), the output tile ``A^T (K_hat . X_hat) A`` and the output, filled tile by tile.
    ``frames`` and ``values`` are those of :func:`winograd_tile_frames` (``values`` equals
    ``F.conv2d(x[None, None], kernel[None, None], padding=padding)[0, 0]``).
    """
    fr = winograd_tile_frames(x, kernel, m, padding)
    r = fr["alpha"] - m + 1
    every = [np.asarray(f[k]) for f in fr["frames"][::3] for k in ("X_hat", "product")]
    fmt, fmt_y = number_format(fr["K_hat"], *every), number_format(fr["values"])
    fig, axes, m = _panels(fr, fmt, dpi)
    a, p = fr["alpha"], fr["padding"]
    vmax = {k: float(max(np.abs(np.asarray(f[k])).max() for f in fr["frames"])) or 1.0 for k in ("X_hat", "product")}
    ymax = float(np.abs(fr["values"].numpy()).max()) or 1.0
    dynamic = FrameArtists()
    n_tiles = len(fr["frames"]) // 3

    def draw(t):
        f = fr["frames"][t]
        s, (ti, tj) = f["stage"], f["tile"]
        dynamic.clear()
        dynamic.add(outline(axes[0], f["rows"], f["cols"], a, a))
        shown = np.ones((a, a), dtype=bool)
        axes[1].clear()
        title = r"$\hat X = B^\top X_t\, B$"
        show_grid(
            f["X_hat"], ax=axes[1], fmt=fmt, vmax=vmax["X_hat"], axis_labels=False, title=title, min_fontsize=READABLE
        )
        title = rf"$\hat K \odot \hat X$: {a * a} products"
        fill_output(axes[3], np.asarray(f["product"]), shown & (s >= 1), None, fmt, title, vmax=vmax["product"])
        title = rf"$A^\top (\hat K \odot \hat X) A$ ({m} x {m})"
        fill_output(axes[4], np.asarray(f["Y_tile"]), np.full((m, m), s >= 2), None, fmt_y, title, vmax=ymax)
        Y = np.asarray(f["Y"])
        fill_output(axes[5], np.nan_to_num(Y), ~np.isnan(Y), None, fmt_y, "output Y", vmax=ymax)
        if s >= 2:
            dynamic.add(outline(axes[5], ti * m, tj * m, m, m))
        r0, c0 = f["rows"] - p, f["cols"] - p
        where = f"tile {t // 3 + 1} of {n_tiles}: X_t = X[{r0}..{r0 + a - 1}, {c0}..{c0 + a - 1}]"
        what = [
            f"input transform: the {a} x {a} tile d becomes B^T d B (fixed constants)",
            f"the only products with the data: {a * a} (direct: {m * m * r * r} for {m * m} outputs)",
            f"output transform: A^T (.) A gives the {m} x {m} output tile (fixed constants)",
        ][s]
        fig.suptitle(f"F({m}x{m}, {r}x{r}), {where}\n{what}", fontsize=FONT["title"])
        return []

    return make_animation(fig, draw, fr["frames"], fr["values"], f"Winograd F({m}x{m}, {r}x{r}) tile by tile", 1200)
