"""The fast path: convolution as cache-blocked matrix products on flat, padded "canvases" of the input.

``conv2d`` computes exactly what ``torch.nn.functional.conv2d`` computes, using only data movement (copies and
strided views) and matrix products (``torch.mm``/``bmm``/``addmm_``/``baddbmm_``) or, for depthwise layers,
elementwise multiply-adds (products with diagonal matrices). No ``F.conv2d``, ``F.unfold``, oneDNN call or
compiled code. The ideas, each measured in chapter 6:

1. **A flat canvas per channel.** Each image's padded channel is stored as one flat row-major array with rows
   ``Wc`` long, a row's right padding shared with the next row's left padding. Output pixel ``(i, j)`` gets the
   flat index ``q = i*Wc + j`` and kernel tap ``(u, v)`` reads the canvas at ``q + u*dh*Wc + v*dw``: *the same
   offset for every output pixel*. So the input of tap (u, v) for a band of output rows is one contiguous slice
   of every channel's canvas: a C x Q matrix (row stride = canvas length) that BLAS reads in place, with no
   copy. The price is ``Wc - Wo`` "garbage" outputs per row (one for a 3x3 kernel with padding 1), computed
   and dropped. Without padding and stride the input itself is the canvas.
2. **Stride by phases.** With stride s, one tap reads every s-th pixel: not a BLAS matrix. The padded input is
   split once into s_h*s_w phase images (``xp[..., a::sh, b::sw]``); tap (u, v) reads one phase with stride 1.
3. **Blocking.** Output rows are processed in blocks (a band of rows of one image, or several whole images as
   one batched product) small enough that the block's output, its input slices (and its patch block) stay in
   the core's L2 cache while all kh*kw taps accumulate. Each finished block is copied to the output (adding
   the bias) while it is still in cache.
4. **Per-shape choice of the inner dimension.** ``'tap'``: kh*kw products with inner dimension C/g, no copy of
   the input at all (the shifted formulation). ``'full'``: per block, copy the kh*kw shifted slices below one
   another (a block of the im2col patch matrix, built from long contiguous rows) and do one product with
   inner dimension C*kh*kw: better when C is small. ``'depthwise'`` (groups = C): every tap is a *diagonal*
   matrix times the shifted slice, i.e. kh*kw fused multiply-adds (``addcmul_``).
5. **1x1, stride 1, no padding** is one matrix product per image, ``W (O x C) @ X[n] (C x H*W)``, written
   straight into the output.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from ._checks import conv2d_args

__all__ = ["conv2d", "conv2d_plan", "Plan", "MODES", "make_canvas", "clear_workspaces"]

MODES = ("tap", "full", "depthwise", "gemm1x1")

# Bytes of (output block + input slices [+ patch block]) per block: about half of a 2 MiB L2 cache.
BLOCK_BYTES = 1 << 20
# 'full' (one product with inner dimension C*kh*kw on a copied patch block) below this C*kh*kw, else 'tap'.
FULL_MAX_K = 256


@dataclass(frozen=True)
class Plan:
    """How ``conv2d`` computes one shape: canvas geometry, taps, blocks and formulation (see ``conv2d_plan``)."""

    mode: str
    N: int
    C: int
    H: int
    W: int
    O: int
    groups: int
    kh: int
    kw: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    Ho: int
    Wo: int
    Wc: int  # canvas row length
    Hr: int  # canvas rows (per image, channel and phase)
    taps: tuple[tuple[int, int], ...]  # (phase, flat offset) of each tap (u, v), in (u, v) order
    blocks: tuple[tuple[int, int, int, int], ...]  # (n0, n1, i0, i1): images n0:n1, output rows i0:i1

    @property
    def phases(self) -> int:
        return self.stride[0] * self.stride[1]

    @property
    def canvas_len(self) -> int:
        return self.Hr * self.Wc

    @property
    def zero_copy(self) -> bool:
        """Stride 1 without padding: the (contiguous) input already is the canvas."""
        return self.stride == (1, 1) and self.padding == (0, 0)

    @property
    def computed(self) -> int:
        """Output positions computed, the dropped "garbage" columns included."""
        return sum((n1 - n0) * ((i1 - i0 - 1) * self.Wc + self.Wo) for n0, n1, i0, i1 in self.blocks)

    @property
    def waste(self) -> float:
        """Computed output positions per wanted one (1.0: nothing computed in vain)."""
        return self.computed / (self.N * self.Ho * self.Wo)


def _blocks(N, Ho, Wc, Wo, cols_per_block):
    """Blocks of outputs: several whole images when an image fits ``cols_per_block``, else bands of rows."""
    per_image = (Ho - 1) * Wc + Wo
    if per_image <= cols_per_block:
        m = max(1, cols_per_block // per_image)
        m = math.ceil(N / math.ceil(N / m))  # balance the blocks
        return tuple((n0, min(N, n0 + m), 0, Ho) for n0 in range(0, N, m))
    rows = max(1, cols_per_block // Wc)
    rows = math.ceil(Ho / math.ceil(Ho / rows))
    return tuple((n, n + 1, i0, min(Ho, i0 + rows)) for n in range(N) for i0 in range(0, Ho, rows))


def default_mode(C, O, kh, kw, stride, padding, groups) -> str:
    """The formulation ``conv2d`` uses for a shape unless told otherwise."""
    if groups == C and groups > 1:
        return "depthwise"
    if (kh, kw) == (1, 1) and stride == (1, 1) and padding == (0, 0) and groups == 1:
        return "gemm1x1"
    if groups == 1 and C * kh * kw <= FULL_MAX_K:
        return "full"
    return "tap"


@functools.lru_cache(maxsize=512)
def conv2d_plan(N, C, H, W, O, kh, kw, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
                mode=None, block_bytes=None, itemsize=4) -> Plan:
    """The plan ``conv2d`` follows for one shape (plain ints and pairs; ``mode`` forces a formulation)."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    Eh, Ew = dh * (kh - 1), dw * (kw - 1)  # reach of the dilated kernel
    Ho, Wo = (H + 2 * ph - Eh - 1) // sh + 1, (W + 2 * pw - Ew - 1) // sw + 1
    mode = default_mode(C, O, kh, kw, stride, padding, groups) if mode is None else mode
    if stride == (1, 1):
        # rows [pw zeros | W pixels | zeros up to Wc]: the right padding is the next row's left padding
        Wc = max(W + pw, Wo)
        Hr = H + 2 * ph + (1 if Wc < W + 2 * pw else 0)  # one more row for the last row's right padding
        taps = tuple((0, u * dh * Wc + v * dw) for u in range(kh) for v in range(kw))
    else:
        # phase (a, b) holds the padded pixels (a + r*sh, b + c*sw): a Hr x Wc image with its own zeros
        Hr, Wc = -(-(H + 2 * ph) // sh), -(-(W + 2 * pw) // sw)
        taps = tuple(
            (((u * dh) % sh) * sw + (v * dw) % sw, ((u * dh) // sh) * Wc + (v * dw) // sw)
            for u in range(kh)
            for v in range(kw)
        )
    C_in = C // groups if mode == "tap" else C
    per_col = {"full": O + C * kh * kw, "tap": O + C_in, "depthwise": O + C, "gemm1x1": O + C}[mode]
    block_bytes = BLOCK_BYTES if block_bytes is None else block_bytes
    cols_per_block = max(Wc, block_bytes // (itemsize * per_col))
    if mode == "tap" and groups > 1:  # grouped products are batched over the groups: one image per block
        cols_per_block = min(cols_per_block, (Ho - 1) * Wc + Wo)
    blocks = _blocks(N, Ho, Wc, Wo, cols_per_block)
    return Plan(mode, N, C, H, W, O, groups, kh, kw, stride, padding, dilation, Ho, Wo, Wc, Hr, taps, blocks)


def _phase_copies(plan: Plan):
    """For each phase (a, b): which input pixels land in it and where: (a*sw + b, y0, x0, r0, c0, ny, nx).

    Phase (a, b) holds the padded pixels (a + r*sh, b + c*sw); the input rows y0, y0 + sh, ... (ny of them)
    land on its rows r0, r0 + 1, ..., the input columns x0, x0 + sw, ... (nx) on its columns c0, c0 + 1, ...
    For stride 1 there is one phase: the input at row ph, column pw.
    """
    (sh, sw), (ph, pw) = plan.stride, plan.padding
    out = []
    for a in range(sh):
        y0 = (a - ph) % sh
        ny, r0 = len(range(y0, plan.H, sh)), (y0 + ph - a) // sh
        for b in range(sw):
            x0 = (b - pw) % sw
            nx, c0 = len(range(x0, plan.W, sw)), (x0 + pw - b) // sw
            out.append((a * sw + b, y0, x0, r0, c0, ny, nx))
    return out


def make_canvas(x: torch.Tensor, plan: Plan) -> torch.Tensor:
    """The padded input as ``N x phases x C x canvas_len``: one flat canvas per image, phase and channel."""
    N, C, H, W = x.shape
    if plan.zero_copy:
        return x.contiguous().view(N, 1, C, H * W)
    canvas = x.new_zeros(N, plan.phases, C, plan.canvas_len)
    grid = canvas.view(N, plan.phases, C, plan.Hr, plan.Wc)
    (sh, sw) = plan.stride
    for p, y0, x0, r0, c0, ny, nx in _phase_copies(plan):
        if ny and nx:
            grid[:, p, :, r0 : r0 + ny, c0 : c0 + nx].copy_(x[:, :, y0::sh, x0::sw])
    return canvas


class _Workspace:
    """Everything about one plan that does not depend on the call's numbers, built once and reused.

    The canvas (its zero borders written once: a call only copies the pixels in), the block buffers, the
    re-ordered weights, and every view the products read and write: the loop over blocks and taps then costs
    one PyTorch call per product, like oneDNN's primitive cache and scratchpad.
    """

    def __init__(self, plan: Plan, dtype, device):
        self.plan = plan
        N, C, O, P = plan.N, plan.C, plan.O, plan.phases
        g, T = plan.groups, plan.kh * plan.kw
        L, Wc, Wo = plan.canvas_len, plan.Wc, plan.Wo
        new = functools.partial(torch.empty, dtype=dtype, device=device)
        self.canvas = None if plan.zero_copy else torch.zeros(N, P, C, L, dtype=dtype, device=device)
        if self.canvas is not None:
            grid = self.canvas.view(N, P, C, plan.Hr, Wc)
            self.fills = [
                (grid[:, p, :, r0 : r0 + ny, c0 : c0 + nx], y0, x0)
                for p, y0, x0, r0, c0, ny, nx in _phase_copies(plan)
                if ny and nx
            ]
        sizes = [(n1 - n0, (i1 - i0 - 1) * Wc + Wo) for n0, n1, i0, i1 in plan.blocks]
        store = new(max(m * Q for m, Q in sizes) * O)
        self.wbuf = None
        if plan.mode == "tap":
            self.wbuf = new(T, g, O // g, C // g)
        elif plan.mode == "depthwise":
            self.wbuf = new(T, C, O // C, 1)
        cols = new(max(m * Q for m, Q in sizes) * C * T) if plan.mode == "full" else None
        self.blocks = []
        for (n0, n1, i0, i1), (m, Q) in zip(plan.blocks, sizes):
            buf = store[: m * O * Q].view(m, O, Q)
            valid = buf.as_strided((m, O, i1 - i0, Wo), (O * Q, Q, Wc, 1))
            target = ((m, O, i1 - i0, Wo), (O * plan.Ho * Wo, plan.Ho * Wo, Wo, 1), (n0 * O * plan.Ho + i0) * Wo)
            colsb = None if cols is None else cols[: m * C * T * Q].view(m, C, T, Q)
            self.blocks.append((n0, m, i0 * Wc, Q, buf, valid, target, colsb))
        self.sources = None if self.canvas is None else self._sources(self.canvas)

    def _sources(self, canvas):
        """The views every product of every block reads, in loop order (views of ``canvas``, no copy)."""
        plan = self.plan
        sN, sP, sC, _ = canvas.stride()
        base = canvas.storage_offset()
        C, g = plan.C, plan.groups
        (dh, dw), kh, kw = plan.dilation, plan.kh, plan.kw
        out = []
        for n0, m, q0, Q, *_ in self.blocks:
            start = base + n0 * sN + q0
            if plan.mode == "full" and plan.phases == 1:  # one strided view: all taps on a (kh, kw) grid
                out.append([canvas.as_strided((m, C, kh, kw, Q), (sN, sC, dh * plan.Wc, dw, 1), start)])
            elif plan.mode == "tap" and g > 1:  # one image per block, the groups as the batch
                Cg = C // g
                out.append([canvas.as_strided((g, Cg, Q), (Cg * sC, sC, 1), start + p * sP + off)
                            for p, off in plan.taps])
            elif plan.mode == "depthwise":
                out.append([canvas.as_strided((m, C, 1, Q), (sN, sC, Q, 1), start + p * sP + off)
                            for p, off in plan.taps])
            elif m == 1:
                out.append([canvas.as_strided((C, Q), (sC, 1), start + p * sP + off) for p, off in plan.taps])
            else:
                out.append([canvas.as_strided((m, C, Q), (sN, sC, 1), start + p * sP + off)
                            for p, off in plan.taps])
        return out

    def __call__(self, x, weight, bias):
        plan = self.plan
        N, C, H, W = x.shape
        O, Cg, kh, kw = weight.shape
        g, T = plan.groups, kh * kw
        if self.canvas is None:  # no padding, stride 1: the input is the canvas
            sources = self._sources(x.contiguous().view(N, 1, C, H * W))
        else:
            sh, sw = plan.stride
            for dst, y0, x0 in self.fills:
                dst.copy_(x[:, :, y0::sh, x0::sw])
            sources = self.sources
        if plan.mode == "tap":
            self.wbuf.copy_(weight.view(g, O // g, Cg, T).permute(3, 0, 1, 2))
        elif plan.mode == "depthwise":
            self.wbuf.copy_(weight.view(C, O // C, T, 1).permute(2, 0, 1, 3))
        y = x.new_empty(N, O, plan.Ho, plan.Wo)
        b4 = None if bias is None else bias.view(1, O, 1, 1)
        for (n0, m, q0, Q, buf, valid, target, colsb), srcs in zip(self.blocks, sources):
            if plan.mode == "tap":
                self._tap(buf, m, srcs)
            elif plan.mode == "full":
                self._full(buf, colsb, m, srcs, weight.view(O, Cg * T), q0)
            else:
                acc = buf.view(m, C, O // C, Q)
                wt = self.wbuf
                torch.mul(srcs[0], wt[0], out=acc)
                for t in range(1, T):
                    acc.addcmul_(srcs[t], wt[t])
            out = y.as_strided(*target)
            if b4 is None:
                out.copy_(valid)
            else:
                torch.add(valid, b4, out=out)
        return y

    def _tap(self, buf, m, srcs):
        """kh*kw products with inner dimension C/g, each reading a shifted slice of the canvas in place."""
        plan, wt = self.plan, self.wbuf
        O, g = plan.O, plan.groups
        if g > 1:
            acc = buf[0].view(g, O // g, buf.shape[2])
            torch.bmm(wt[0], srcs[0], out=acc)
            for t in range(1, len(srcs)):
                acc.baddbmm_(wt[t], srcs[t])
        elif m == 1:
            acc = buf[0]
            torch.mm(wt[0, 0], srcs[0], out=acc)
            for t in range(1, len(srcs)):
                acc.addmm_(wt[t, 0], srcs[t])
        else:
            w_t = wt[:, 0].unsqueeze(1).expand(len(srcs), m, O, plan.C)
            torch.bmm(w_t[0], srcs[0], out=buf)
            for t in range(1, len(srcs)):
                buf.baddbmm_(w_t[t], srcs[t])

    def _full(self, buf, cols, m, srcs, W_row, q0):
        """Copy the block's kh*kw shifted slices into a block of the patch matrix, then one product."""
        plan = self.plan
        C, T = plan.C, plan.kh * plan.kw
        Q = buf.shape[2]
        if plan.phases == 1:
            cols.view(m, C, plan.kh, plan.kw, Q).copy_(srcs[0])
        else:
            for t, src in enumerate(srcs):
                cols[:, :, t].copy_(src)
        if m == 1:
            torch.mm(W_row, cols[0].view(C * T, Q), out=buf[0])
        else:
            torch.bmm(W_row.expand(m, *W_row.shape), cols.view(m, C * T, Q), out=buf)


_local = threading.local()
WORKSPACES = 8  # plans whose workspace each thread keeps


def _workspace(plan: Plan, dtype, device) -> _Workspace:
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = OrderedDict()
    key = (plan, dtype, device)
    ws = cache.get(key)
    if ws is None:
        ws = cache[key] = _Workspace(plan, dtype, device)
        while len(cache) > WORKSPACES:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return ws


def clear_workspaces() -> None:
    """Free the buffers ``conv2d`` keeps between calls (in this thread)."""
    _local.cache = OrderedDict()


def _gemm1x1(x, weight, bias, y):
    """1x1, stride 1, no padding: Y[n] = W (O x C) @ X[n] (C x H*W), written straight into the output."""
    N, C, H, W = x.shape
    O = weight.shape[0]
    W_row, X, Y = weight.view(O, C), x.view(N, C, H * W), y.view(N, O, H * W)
    if bias is None:
        torch.matmul(W_row, X, out=Y)
    else:
        b = bias.view(O, 1)
        for n in range(N):
            torch.addmm(b, W_row, X[n], out=Y[n])


def _differentiable(canvas, weight, bias, plan: Plan):
    """The tap formulation with out-of-place operations, which autograd can follow (no blocking)."""
    O, Cg, kh, kw = weight.shape
    g = plan.groups
    N, P, C, L = canvas.shape
    Wt = weight.reshape(g, O // g, Cg, kh * kw).permute(3, 0, 1, 2)  # T x g x Og x Cg
    Q = (plan.Ho - 1) * plan.Wc + plan.Wo
    ext = None
    for t, (phase, off) in enumerate(plan.taps):
        src = canvas[:, phase, :, off : off + Q].reshape(N, g, Cg, Q)
        term = torch.matmul(Wt[t], src)  # N x g x Og x Q
        ext = term if ext is None else ext + term
    ext = ext.reshape(N, O, Q)
    ext = torch.cat([ext, ext.new_zeros(N, O, plan.Ho * plan.Wc - Q)], dim=2)
    y = ext.view(N, O, plan.Ho, plan.Wc)[..., : plan.Wo]
    if bias is not None:
        y = y + bias.view(1, O, 1, 1)
    return y.contiguous()


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, mode=None):
    """2-D convolution from matrix products and data movement only, as fast as we could make it.

    Same arguments and result as ``torch.nn.functional.conv2d``: ``x`` is N x C x H x W (or unbatched
    C x H x W), ``weight`` O x C/groups x kh x kw, ``bias`` O entries or None; ``stride``, ``padding``,
    ``dilation`` an int or an (h, w) pair, ``padding`` also ``'valid'`` or ``'same'``. Returns a new contiguous
    N x O x Ho x Wo tensor. How it works: see the module docstring; :func:`conv2d_plan` shows the plan for a
    shape. ``mode`` (keyword only) forces a formulation: ``'tap'`` (any shape), ``'full'`` (groups=1),
    ``'depthwise'`` (groups = C) or ``'gemm1x1'`` (1x1 kernel, stride 1, no padding, groups=1). Differentiable:
    with autograd recording, it runs the tap formulation without blocking.
    """
    a = conv2d_args(x, weight, bias, stride, padding, dilation, groups)
    xb, w = a.x, a.weight
    N, C, H, W = xb.shape
    O, Cg, kh, kw = w.shape
    if mode is not None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} or None, got {mode!r}")
        if mode == "full" and a.groups != 1:
            raise ValueError(f"mode='full' needs groups=1, got groups={a.groups}")
        if mode == "depthwise" and a.groups != C:
            raise ValueError(f"mode='depthwise' needs groups equal to the {C} input channels, got groups={a.groups}")
        if mode == "gemm1x1" and ((kh, kw) != (1, 1) or a.stride != (1, 1) or a.padding != (0, 0) or a.groups != 1):
            raise ValueError("mode='gemm1x1' needs a 1x1 kernel, stride 1, no padding and groups=1")
    plan = conv2d_plan(N, C, H, W, O, kh, kw, a.stride, a.padding, a.dilation, a.groups, mode=mode,
                       itemsize=xb.element_size())
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (xb, w, a.bias)):
        y = _differentiable(make_canvas(xb, plan), w, a.bias, plan)
        return y[0] if a.unbatched else y
    w = w.contiguous()
    if plan.mode == "gemm1x1":
        y = xb.new_empty(N, O, H, W)
        _gemm1x1(xb.contiguous(), w, a.bias, y)
    else:
        y = _workspace(plan, xb.dtype, xb.device)(xb, w, a.bias)
    return y[0] if a.unbatched else y
