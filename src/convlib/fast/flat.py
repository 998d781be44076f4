"""Formulations on flat views: 'tap' (kh*kw products), 'full' (patch blocks, one product) and 'depthwise'.

Every image's channels are stored as flat row-major arrays with rows ``Wc`` long, so kernel tap (u, v) reads
the input at ``q + offset`` for output ``q``: one strided view (a C x Q matrix per image) that the products read
in place. The views read the input itself ('exact' layout), or a padded canvas ('canvas'), or its stride phases
('phases'); see ``plan.py`` for the geometry and the package docstring for the ideas.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .edges import recompute_edges
from .plan import Plan
from .routes import Weights
from .workspace import buffer

__all__ = ["FlatWorkspace", "phase_copies"]


class TapRange(NamedTuple):
    """Tap ``t`` adds its product to the block's columns ``qa..qb-1``."""

    t: int
    qa: int
    qb: int


class BlockWork(NamedTuple):
    """One block as the products see it: images n0..n0+m-1, from output row i0, Q columns per image."""

    n0: int
    m: int
    i0: int
    Q: int
    taps: tuple[TapRange, ...]
    covered: bool  # a product writes every column first (else the block starts from zero)
    rows: int


class PhaseCopy(NamedTuple):
    """Input rows y0, y0 + sh, ... (ny of them) and columns x0, x0 + sw, ... (nx) land in phase image ``phase`` at
    row r0 and column c0 (one phase, the canvas, for stride 1)."""

    phase: int
    y0: int
    x0: int
    r0: int
    c0: int
    ny: int
    nx: int


def phase_copies(plan: Plan) -> list[PhaseCopy]:
    """Where the input's pixels go on the canvas or in the phase images: phase (a, b) holds padded pixel
    (a + r*sh, b + c*sw) at (r, c)."""
    (sh, sw), (ph, pw) = plan.stride, plan.padding
    if plan.phases == 1:
        sh = sw = 1
    out = []
    for a in range(sh):
        y0 = (a - ph) % sh
        ny, r0 = len(range(y0, plan.H, sh)), (y0 + ph - a) // sh
        for b in range(sw):
            x0 = (b - pw) % sw
            nx, c0 = len(range(x0, plan.W, sw)), (x0 + pw - b) // sw
            out.append(PhaseCopy(a * sw + b, y0, x0, r0, c0, ny, nx))
    return out


def _tap_ranges(plan: Plan, i0: int, i1: int, Q: int) -> list[TapRange]:
    """Which columns of the block of output rows i0..i1-1 each tap adds to."""
    out = []
    for t, tap in enumerate(plan.taps):
        if plan.layout == "exact":  # the tap's flat run, cut to the block
            q0, q1 = plan.span(t).flat
            qa, qb = max(q0, i0 * plan.W) - i0 * plan.W, min(q1, i1 * plan.W) - i0 * plan.W
        else:
            a, b = max(tap.first, i0), min(tap.end, i1)
            qa, qb = (a - i0) * plan.Wc, (b - i0 - 1) * plan.Wc + plan.Wo
        if qb > qa:
            out.append(TapRange(t, qa, qb))
    return out


def block_work(plan: Plan) -> list[BlockWork]:
    """The blocks with their taps, a tap that writes the whole block first (it starts the sum)."""
    out = []
    patches = plan.mode == "full" and plan.layout != "exact"  # (read whole, by one view per tap or per block)
    for b in plan.blocks:
        m, rows, Q = b.n1 - b.n0, b.i1 - b.i0, plan.block_cols(b)
        taps = [] if patches else _tap_ranges(plan, b.i0, b.i1, Q)
        whole = [k for k, r in enumerate(taps) if (r.qa, r.qb) == (0, Q)]
        if whole:
            taps.insert(0, taps.pop(whole[0]))
        covered = bool(whole) or plan.mode == "full"  # 'full': one product writes it all (zero rows for padding)
        out.append(BlockWork(b.n0, m, b.i0, Q, tuple(taps), covered, rows))
    return out


class FlatWorkspace:
    """Everything about one plan that does not depend on the call's numbers, built once and reused.

    The canvas (its zero borders written once: a call only copies the pixels in), the block buffers, the
    re-ordered weights, and the views the products read and write: the loop over blocks and taps then costs
    one PyTorch call per product (like oneDNN's primitive cache and scratchpad).
    """

    def __init__(self, plan: Plan, dtype, device):
        self.plan = p = plan
        C, O, g, T = p.C, p.O, p.groups, p.kh * p.kw
        self.exact = p.layout == "exact"
        self.patches = p.mode == "full" and not self.exact  # patch blocks of exactly rows x Wo columns
        self.direct = self.exact or self.patches  # the products write straight into the output
        self.blocks = block_work(p)
        biggest = max((w.m * w.Q for w in self.blocks), default=0)
        new = dict(dtype=dtype, device=device)
        self.canvas = self.store = self.cols = self.wbuf = None
        self.fills = []
        if not self.exact and not p.zero_copy:
            self.canvas = buffer(p.N, p.phases, C, p.canvas_len, **new)
            grid = self.canvas.view(p.N, p.phases, C, p.Hr, p.Wc)
            self.fills = [
                (grid[:, f.phase, :, f.r0 : f.r0 + f.ny, f.c0 : f.c0 + f.nx], f.y0, f.x0)
                for f in phase_copies(p)
                if f.ny and f.nx
            ]
        if not self.direct:
            self.store = buffer(biggest * O, **new)
        if p.mode == "tap":
            self.wbuf = buffer(T, g, O // g, C // g, **new)
        elif p.mode == "depthwise":
            self.wbuf = buffer(T, C, O // C, 1, **new)
        elif p.mode == "full":
            self.cols = buffer(biggest * C * T, **new)
        self.specs = [self._block_specs(w) for w in self.blocks]
        self.sources = None if self.canvas is None else self._sources(self.canvas)

    @property
    def kept(self) -> tuple:
        return tuple(t for t in (self.canvas, self.store, self.cols, self.wbuf) if t is not None)

    def _block_specs(self, w: BlockWork) -> list:
        """(size, stride, offset) of the view each of the block's taps reads, relative to image 0's start."""
        p = self.plan
        C, g = p.C, p.groups
        L = p.H * p.W if self.exact else p.canvas_len
        image = p.phases * C * L
        if self.patches:  # the block of the patch matrix: (c, u, v) rows, (i, j) columns
            (dh, dw), (sh, sw) = p.dilation, p.stride
            if p.phases == 1:  # all taps in one strided view (on the canvas, with the stride)
                size, stride = (w.m, C, p.kh, p.kw, w.rows, p.Wo), (image, L, dh * p.Wc, dw, sh * p.Wc, sw)
                return [(size, stride, w.n0 * image + w.i0 * sh * p.Wc)]
            start = w.n0 * image + w.i0 * p.Wc
            return [((w.m, C, w.rows, p.Wo), (image, L, p.Wc, 1), start + t.phase * C * L + t.offset) for t in p.taps]
        specs = []
        for t, qa, qb in w.taps:
            tap = p.taps[t]
            phase = 0 if self.exact else tap.phase
            start, n = w.n0 * image + phase * C * L + w.i0 * p.Wc + qa + tap.offset, qb - qa
            if p.mode == "tap" and g > 1:
                specs.append(((g, C // g, n), (C // g * L, L, 1), start))
            elif p.mode == "depthwise":
                specs.append(((w.m, C, 1, n), (image, L, n, 1), start))
            elif w.m == 1 and p.mode == "tap":
                specs.append(((C, n), (L, 1), start))
            else:
                specs.append(((w.m, C, n), (image, L, 1), start))
        return specs

    def _sources(self, base):
        off = base.storage_offset()
        return [[base.as_strided(size, stride, off + start) for size, stride, start in specs] for specs in self.specs]

    def _inputs(self, x):
        """The views each block's taps read: of the input itself, or of the canvas after copying the input in."""
        p = self.plan
        if self.exact or p.zero_copy:
            return self._sources(x.contiguous())
        sh, sw = p.stride if p.phases > 1 else (1, 1)
        for dst, y0, x0 in self.fills:
            dst.copy_(x[:, :, y0::sh, x0::sw])
        return self.sources

    def _weights(self, weight):
        """The weights as the products want them: one matrix per tap (and group), or one row per filter."""
        p = self.plan
        O, Cg, kh, kw = weight.shape
        if p.mode == "tap":
            self.wbuf.copy_(weight.view(p.groups, O // p.groups, Cg, kh * kw).permute(3, 0, 1, 2))
            return self.wbuf
        if p.mode == "depthwise":
            self.wbuf.copy_(weight.view(p.C, O // p.C, kh * kw, 1).permute(2, 0, 1, 3))
            return self.wbuf
        if p.mode == "full" and p.route != "mm":  # prepared once per call for oneDNN
            return Weights.prepare(p.route, weight.reshape(O, Cg * kh * kw), None)
        return weight.reshape(O, Cg * kh * kw)

    def __call__(self, x, weight, bias, channels_last=False):
        """The convolution, N x O x Ho x Wo in NCHW (``channels_last`` is left to the caller)."""
        p = self.plan
        sources, wt = self._inputs(x), self._weights(weight)
        y = x.new_empty(p.N, p.O, p.Ho, p.Wo)
        for w, srcs in zip(self.blocks, sources):
            acc, block_bias = self._accumulator(y, w, bias)
            if p.mode == "full":
                self._full(acc, w, srcs, wt, block_bias)
            elif p.mode == "depthwise":
                self._depthwise(acc, w, srcs, wt, block_bias)
            else:
                self._tap(acc, w, srcs, wt, block_bias)
            if not self.direct:
                self._copy_out(acc, y, w, bias)
        if self.exact:  # the columns where shifted taps read the neighbouring row: computed afresh
            recompute_edges(x, weight, bias, y, p)
        return y

    def _accumulator(self, y, w: BlockWork, bias):
        """Where the block's products add up (the output itself, or a block buffer), and the bias they add."""
        p = self.plan
        O, HoWo = p.O, p.Ho * p.Wo
        if self.direct:
            acc = y.as_strided((w.m, O, w.Q), (O * HoWo, HoWo, 1), y.storage_offset() + w.n0 * O * HoWo + w.i0 * p.Wo)
            block_bias = bias
        else:
            acc = self.store[: w.m * O * w.Q].view(w.m, O, w.Q)
            block_bias = None  # added when the block is copied out
        if not w.covered:  # no product writes the whole block: start from zero (or the bias)
            if bias is None:
                acc.zero_()
            else:
                acc.copy_(bias.view(1, O, 1).expand(w.m, O, w.Q))
            block_bias = None
        return acc, block_bias

    def _copy_out(self, acc, y, w: BlockWork, bias):
        """Copy the block's valid outputs out, dropping the garbage columns, adding the bias."""
        p = self.plan
        i1 = w.i0 + (w.Q - p.Wo) // p.Wc + 1
        valid = acc.as_strided((w.m, p.O, i1 - w.i0, p.Wo), (p.O * w.Q, w.Q, p.Wc, 1))
        target = y[w.n0 : w.n0 + w.m, :, w.i0 : i1]
        if bias is None:
            target.copy_(valid)
        else:
            torch.add(valid, bias.view(1, p.O, 1, 1), out=target)

    def _tap(self, acc, w: BlockWork, srcs, wt, bias):
        """kh*kw products with inner dimension C/g, each reading a shifted slice of the input in place."""
        O, g = self.plan.O, self.plan.groups
        if g > 1:
            acc = acc[0].view(g, O // g, w.Q)
        elif w.m == 1:
            acc = acc[0]
        for k, ((t, qa, qb), src) in enumerate(zip(w.taps, srcs)):
            out = acc if (qa, qb) == (0, w.Q) else acc[..., qa:qb]
            wmat = wt[t] if g > 1 else wt[t, 0] if w.m == 1 else wt[t, 0].expand(w.m, *wt.shape[2:])
            two_d = out.dim() == 2
            if k == 0 and w.covered:
                if bias is None:
                    (torch.mm if two_d else torch.bmm)(wmat, src, out=out)
                elif two_d:
                    torch.addmm(bias.view(O, 1), wmat, src, out=out)
                else:
                    torch.baddbmm(bias.view(1, O, 1) if g == 1 else bias.view(g, O // g, 1), wmat, src, out=out)
            elif two_d:
                out.addmm_(wmat, src)
            else:
                out.baddbmm_(wmat, src)

    def _fill_patches(self, cols, w: BlockWork, srcs):
        """Copy the block's kh*kw shifted slices into its block of the patch matrix (zeros where padding is)."""
        p = self.plan
        if self.patches and p.phases == 1:
            cols.view(w.m, p.C, p.kh, p.kw, w.Q // p.Wo, p.Wo).copy_(srcs[0])
            return
        if self.patches:
            for t, src in enumerate(srcs):
                cols[:, :, t].view(w.m, p.C, w.Q // p.Wo, p.Wo).copy_(src)
            return
        present = {r.t for r in w.taps}
        for t in range(p.kh * p.kw):
            if t not in present:
                cols[:, :, t].zero_()
        for (t, qa, qb), src in zip(w.taps, srcs):
            cols[:, :, t, qa:qb].copy_(src)
            if qa > 0:
                cols[:, :, t, :qa].zero_()
            if qb < w.Q:
                cols[:, :, t, qb:].zero_()

    def _full(self, acc, w: BlockWork, srcs, W_row, bias):
        """One product with inner dimension C*kh*kw on the block of the patch matrix."""
        p = self.plan
        K = p.C * p.kh * p.kw
        if p.route != "mm":  # oneDNN: the block's images side by side, K x (m*Q), one product for them all
            buf = self.cols[: K * w.m * w.Q]
            self._fill_patches(buf.view(p.C, p.kh * p.kw, w.m, w.Q).permute(2, 0, 1, 3), w, srcs)
            weights = Weights(p.route, W_row.matrix, None, W_row.onednn, None)
            weights.times_into(buf.view(K, w.m * w.Q), acc.transpose(0, 1), bias)
            return
        cols = self.cols[: w.m * K * w.Q].view(w.m, p.C, p.kh * p.kw, w.Q)
        self._fill_patches(cols, w, srcs)
        B = cols.view(w.m, K, w.Q)
        if w.m == 1:
            out, B = acc[0], B[0]
            if bias is None:
                torch.mm(W_row, B, out=out)
            else:
                torch.addmm(bias.view(-1, 1), W_row, B, out=out)
        else:
            Wm = W_row.expand(w.m, *W_row.shape)
            if bias is None:
                torch.bmm(Wm, B, out=acc)
            else:
                torch.baddbmm(bias.view(1, -1, 1), Wm, B, out=acc)

    def _depthwise(self, acc, w: BlockWork, srcs, wt, bias):
        """Tap (u, v) is a diagonal C x C matrix times the shifted slice: an elementwise multiply-add."""
        C = self.plan.C
        acc = acc.view(w.m, C, self.plan.O // C, w.Q)
        for k, ((t, qa, qb), src) in enumerate(zip(w.taps, srcs)):
            out = acc if (qa, qb) == (0, w.Q) else acc[..., qa:qb]
            if k == 0 and w.covered:
                if bias is None:
                    torch.mul(src, wt[t], out=out)
                else:
                    torch.addcmul(bias.view(C, -1, 1), src, wt[t], out=out)
            else:
                out.addcmul_(src, wt[t])
