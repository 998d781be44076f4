"""The 'exact' layout's edge columns, computed afresh.

In the 'exact' layout a horizontally shifted tap's product runs over a contiguous slice of the flat input, so
the outputs of the first (or last) few columns read the neighbouring row's last (or first) pixel where the
zero padding should be. Those outputs are garbage (even NaN or inf, if such a pixel is); they stay in their own
columns (output q of a product depends on input q + offset alone), and this module overwrites those columns
with a small im2col product of their own: exact, whatever the neighbouring pixels hold.
"""

from __future__ import annotations

import torch

from .plan import Plan

__all__ = ["recompute_edges", "edge_columns"]


def edge_columns(x, weight, bias, plan: Plan, j0: int, j1: int) -> torch.Tensor:
    """Output columns ``j0..j1-1`` (all images and rows) of a stride-1 convolution, N x O x Ho x (j1 - j0)."""
    N, C, H, W = x.shape
    O, Cg, kh, kw = weight.shape
    (ph, pw), (dh, dw), g = plan.padding, plan.dilation, plan.groups
    nj, Ho = j1 - j0, plan.Ho
    lo = j0 - pw  # the first input column these outputs read
    Ws, Hs = nj + dw * (kw - 1), H + 2 * ph
    strip = x.new_zeros(N, C, Hs, Ws)  # the padded input's columns lo..lo+Ws-1
    a, b = max(0, lo), min(W, lo + Ws)
    if b > a:
        strip[:, :, ph : ph + H, a - lo : b - lo].copy_(x[..., a:b])
    # patches: (n, i, j) rows, (group; c, u, v) columns
    size = (N, Ho, nj, g, Cg, kh, kw)
    stride = (C * Hs * Ws, Ws, 1, Cg * Hs * Ws, Hs * Ws, dh * Ws, dw)
    patches = strip.as_strided(size, stride).reshape(N * Ho * nj, g, 1, Cg * kh * kw)
    wmat = weight.reshape(g, O // g, Cg * kh * kw)
    if Cg == 1:  # depthwise: diagonal weights, so multiply-adds instead of g products of one row each
        out = (patches * wmat).sum(-1)  # (N*Ho*nj) x g x O/g
    else:
        out = torch.bmm(patches[:, :, 0].transpose(0, 1), wmat.transpose(1, 2)).transpose(0, 1)
    out = out.reshape(N, Ho, nj, O).permute(0, 3, 1, 2)
    return out if bias is None else out + bias.view(1, O, 1, 1)


def recompute_edges(x, weight, bias, y, plan: Plan) -> None:
    """Overwrite the output columns the 'exact' layout's wrapped reads spoiled (``plan.edges``)."""
    for j0, j1 in plan.edges:
        y[..., j0:j1].copy_(edge_columns(x, weight, bias, plan, j0, j1))
