"""Channels-last formulations: blocked im2col in NHWC ('im2col_nhwc'), and 1x1 layers as one product ('gemm1x1').

**Blocked channels-last im2col.** The input goes once onto a padded channels-last canvas (N x Hp x Wp x C, its
zero borders written once and kept). In NHWC a patch row (kernel taps, then channels: K = kh*kw*C values) is
kh*kw runs of C contiguous values, so one strided copy builds a block of patch rows, and one GEMM multiplies it by
the weights (O x K): ``Y_block = P_block @ W.T + b``. The blocks are a few rows of outputs, a few MB of
patches: they are written and read back while they sit in the L2 cache, where the whole patch matrix of a large
layer (tens of MB) would go out to memory and back (and, above glibc's mmap threshold, be page-faulted in afresh
on every call). Any GEMM route can do the product (``routes.py``); the result is written channels-last, or
transposed into NCHW one block at a time.
"""

from __future__ import annotations

import torch

from .plan import Block, Plan
from .routes import Weights
from .workspace import buffer

__all__ = ["NHWCWorkspace", "gemm1x1"]


class NHWCWorkspace:
    """The padded NHWC canvas, the patch block and the weight matrix of one plan, kept between calls."""

    def __init__(self, plan: Plan, dtype, device):
        self.plan = p = plan
        self.new = dict(dtype=dtype, device=device)
        self.K = p.kh * p.kw * p.C
        self.Hp, self.Wp = p.H + 2 * p.padding[0], p.W + 2 * p.padding[1]
        # 1x1 kernel, stride 1: a block of output rows is a slab of the canvas, already a patch block
        self.in_place = (p.kh, p.kw, p.stride) == (1, 1, (1, 1))
        biggest = max(((b.n1 - b.n0) * (b.i1 - b.i0) * p.Wo for b in p.blocks), default=0)
        self.patches = None if self.in_place else buffer(biggest * self.K, **self.new, zero=False)
        self.wmat = buffer(p.O, self.K, **self.new, zero=False)
        self.canvas = None  # made on first need: without padding, a channels-last input is read in place

    @property
    def kept(self) -> tuple:
        return tuple(t for t in (self.canvas, self.patches, self.wmat) if t is not None)

    def canvas_bytes(self) -> int:
        p = self.plan
        return p.N * self.Hp * self.Wp * p.C * torch.empty(0, **self.new).element_size()

    def _source(self, x) -> torch.Tensor:
        """The padded input as N x Hp x Wp x C, contiguous."""
        p = self.plan
        nhwc = x.permute(0, 2, 3, 1)
        if p.padding == (0, 0) and nhwc.is_contiguous():
            return nhwc
        if self.canvas is None:
            self.canvas = buffer(p.N, self.Hp, self.Wp, p.C, **self.new)
        (ph, pw) = p.padding
        self.canvas[:, ph : ph + p.H, pw : pw + p.W].copy_(nhwc)
        return self.canvas

    def _patch_block(self, src, b: Block) -> torch.Tensor:
        """The block's rows of the patch matrix, M x K with M = images x rows x Wo."""
        p = self.plan
        m, rows = b.n1 - b.n0, b.i1 - b.i0
        (sh, sw), (dh, dw), C = p.stride, p.dilation, p.C
        if self.in_place:
            return src[b.n0 : b.n1, b.i0 : b.i1].reshape(m * rows * p.Wo, C)
        row, image = self.Wp * C, self.Hp * self.Wp * C
        view = src.as_strided(
            (m, rows, p.Wo, p.kh, p.kw, C),
            (image, sh * row, sw * C, dh * row, dw * C, 1),
            src.storage_offset() + b.n0 * image + b.i0 * sh * row,
        )
        block = self.patches[: m * rows * p.Wo * self.K]
        block.view(view.shape).copy_(view)
        return block.view(-1, self.K)

    def __call__(self, x, weight, bias, channels_last: bool = False):
        p = self.plan
        src = self._source(x)
        self.wmat.view(p.O, p.kh, p.kw, p.C).copy_(weight.permute(0, 2, 3, 1))
        weights = Weights.prepare(p.route, self.wmat, bias)
        HoWo = p.Ho * p.Wo
        if channels_last:
            y = x.new_empty(p.N, p.Ho, p.Wo, p.O)
            for b in p.blocks:
                weights.linear_into(self._patch_block(src, b), y[b.n0 : b.n1, b.i0 : b.i1].view(-1, p.O))
            return y.permute(0, 3, 1, 2)
        y = x.new_empty(p.N, p.O, p.Ho, p.Wo)
        for b in p.blocks:
            if b.n1 - b.n0 == 1:
                out = y[b.n0].view(p.O, HoWo)[:, b.i0 * p.Wo : b.i1 * p.Wo]
            else:
                out = y[b.n0 : b.n1].view(-1, p.O, HoWo)
            weights.linear_t_into(self._patch_block(src, b), out)
        return y


def gemm1x1(x, weight, bias, plan: Plan, channels_last: bool = False):
    """1x1, stride 1, no padding, NCHW: ``Y[n] = W (O x C) @ X[n] (C x H*W)``, written straight into the output."""
    N, C, H, W = x.shape
    O = weight.shape[0]
    y = x.new_empty(N, O, H, W)
    W_row, X, Y = weight.reshape(O, C).expand(N, O, C), x.contiguous().view(N, C, H * W), y.view(N, O, H * W)
    if bias is None:
        torch.bmm(W_row, X, out=Y)
    else:
        torch.baddbmm(bias.view(1, O, 1), W_row, X, out=Y)
    return y
