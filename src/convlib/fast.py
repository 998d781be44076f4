"""The fast path: convolution as blocked matrix products on flat views of the input.

``conv2d`` computes exactly what ``torch.nn.functional.conv2d`` computes, using only data movement (copies and
strided views) and matrix products (``torch.mm``/``bmm``/``addmm_``/``baddbmm_``) or, for depthwise layers,
products with diagonal matrices (elementwise multiply-adds). No ``F.conv2d``, ``F.unfold``, oneDNN call or
compiled code. The ideas, each measured in chapter 6:

1. **Flat images, one offset per tap.** Store every channel of every image as one flat row-major array.
   Output pixel ``(i, j)`` then has the flat index ``q = i*Wc + j`` and kernel tap ``(u, v)`` reads the input
   at ``q + offset(u, v)``: *the same offset for every output pixel*. So the input of one tap, for a band of
   output rows, is one contiguous slice of every channel: a C x Q matrix (rows a channel apart) that BLAS reads
   in place, without a copy. This is the shifted formulation with no shifted copies.
2. **Padding without padding.** Where the output is as wide as the input (stride 1, "same" padding along the
   width), the row length is W itself and the taps read the input where it lies: the rows a tap would read
   above or below the image are left out of its product (each tap writes only the output rows it reaches),
   and the few values a horizontally shifted tap reads across a row boundary (the previous row's last pixel
   instead of the left padding) are subtracted afterwards by a small product on those columns. The products
   write straight into the output, with no copy of the input or output at all (``layout='exact'``).
   Otherwise the padded images go on a *canvas*, rows ``Wc = W + pw`` long (a row's right padding is the next
   row's left padding): ``Wc - Wo`` garbage outputs per row are computed and dropped when the block is copied
   out (``layout='canvas'``); without padding the input itself is the canvas.
3. **Stride by phases.** With stride s a tap reads every s-th pixel: not a BLAS matrix. The padded input is
   split once into s_h*s_w phase images (``xp[..., a::sh, b::sw]``); each tap reads one phase with stride 1
   (``layout='phases'``).
4. **Blocks.** Output rows are processed in blocks: a band of rows of one image, or several whole images as one
   batched product. Measured (chapter 6), the dense products are fastest on *large* blocks (one batched product
   per tap over the whole batch: MKL blocks for the caches itself, and fewer calls cost less), while the
   elementwise depthwise taps and the canvas copies want blocks that fit the core's L2 cache.
5. **Per-shape choice of the inner dimension** (``mode``). ``'tap'``: kh*kw products with inner dimension
   C/g. ``'full'``: per block, copy the block of the im2col patch matrix (one strided copy, exactly Ho x Wo
   columns) and do one product with inner dimension C*kh*kw, written straight into the output: better when
   C is small (thin per-tap products) or the weights are larger than the image (re-ordering them per tap
   costs more than the copy). ``'depthwise'`` (groups = C): every tap is a diagonal C x C matrix times
   the shifted slice, kh*kw elementwise multiply-adds (``addcmul_``). ``'gemm1x1'`` (1x1, stride 1, no
   padding): ``W (O x C) @ X[n] (C x H*W)``, nothing else.

Everything that does not depend on the numbers (buffers, zero borders, views) is prepared once per shape
(``conv2d_plan`` and a per-thread workspace), so a call costs its copies and one PyTorch call per product.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from ._checks import conv2d_args

__all__ = ["conv2d", "conv2d_plan", "Plan", "MODES", "LAYOUTS", "make_canvas", "clear_workspaces"]

MODES = ("tap", "full", "depthwise", "gemm1x1")
LAYOUTS = ("exact", "canvas", "phases")

# Bytes of (output block + input slices [+ patch block]) per block: about half of a 2 MiB L2 cache. Measured
# (chapter 6): right for the elementwise depthwise taps and the canvas copies; the 'exact' layout's products
# are faster on whole images (MKL blocks for the cache itself, and fewer, larger products cost less).
BLOCK_BYTES = 1 << 20
EXACT_BLOCK_BYTES = 16 << 20
FULL_BLOCK_BYTES = 4 << 20
# 'full' (one product with inner dimension C*kh*kw on a copied patch block) at or below this C*kh*kw
FULL_MAX_K = 256
# 'exact' layout for dense 'tap' layers with at least this many channels and this image width
EXACT_MIN_C, EXACT_MIN_W = 32, 24


@dataclass(frozen=True)
class Plan:
    """How ``conv2d`` computes one shape: layout, formulation, taps and blocks (see ``conv2d_plan``)."""

    mode: str
    layout: str
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
    Wc: int  # row length of the flat images the taps read (exact: W; canvas, phases: with padding)
    Hr: int  # rows of a canvas / phase image (exact: H)
    # (source, offset, first row, end row) of tap (u, v): source = the phase (canvas: 0), or for 'exact' the
    # horizontal shift dj; the tap reads flat index q + offset for the output rows first..end-1
    taps: tuple[tuple[int, int, int, int], ...]
    blocks: tuple[tuple[int, int, int, int], ...]  # (n0, n1, i0, i1): images n0:n1, output rows i0:i1
    # 'exact': (tap, input column, output column, first row, end row, input row of the first) of each value
    # a shifted tap read across a row boundary, to be subtracted
    corrections: tuple[tuple[int, int, int, int, int, int], ...] = ()

    @property
    def phases(self) -> int:
        return self.stride[0] * self.stride[1]

    @property
    def canvas_len(self) -> int:
        return self.Hr * self.Wc

    @property
    def zero_copy(self) -> bool:
        """Canvas layout without padding: the (contiguous) input already is the canvas."""
        return self.layout == "canvas" and self.padding == (0, 0)

    def block_cols(self, block) -> int:
        n0, n1, i0, i1 = block
        return (i1 - i0 - 1) * self.Wc + self.Wo

    @property
    def computed(self) -> int:
        """Output positions computed, the dropped "garbage" columns included."""
        return sum((b[1] - b[0]) * self.block_cols(b) for b in self.blocks)

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


def default_mode(N, C, Ho, Wo, O, kh, kw, stride, padding, groups) -> str:
    """The formulation ``conv2d`` uses for a shape unless told otherwise."""
    if groups == C and groups > 1:
        return "depthwise"
    if (kh, kw) == (1, 1) and stride == (1, 1) and padding == (0, 0) and groups == 1:
        return "gemm1x1"
    if groups == 1 and (C * kh * kw <= FULL_MAX_K or O >= N * Ho * Wo):
        return "full"  # small inner dimension, or weights larger than the patch matrix they would be re-ordered for
    return "tap"


def default_layout(mode, C, W, kw, stride, padding, dilation, groups) -> str:
    """The layout ``conv2d`` uses for a shape unless told otherwise (chosen by measurement, chapter 6).

    'exact' saves the canvas copy, the garbage columns and the copy-out, but its boundary corrections touch
    single columns (one cache line per value): it pays off for the products of dense layers on large images.
    """
    if stride != (1, 1):
        return "phases"
    same_width = dilation[1] * (kw - 1) == 2 * padding[1]
    if same_width and mode == "tap" and groups == 1 and C >= EXACT_MIN_C and W >= EXACT_MIN_W:
        return "exact"
    return "canvas"


@functools.lru_cache(maxsize=512)
def conv2d_plan(
    N,
    C,
    H,
    W,
    O,
    kh,
    kw,
    stride=(1, 1),
    padding=(0, 0),
    dilation=(1, 1),
    groups=1,
    mode=None,
    layout=None,
    block_bytes=None,
    itemsize=4,
) -> Plan:
    """The plan ``conv2d`` follows for one shape (plain ints and pairs; ``mode``/``layout`` force a choice)."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    Eh, Ew = dh * (kh - 1), dw * (kw - 1)  # reach of the dilated kernel
    Ho, Wo = (H + 2 * ph - Eh - 1) // sh + 1, (W + 2 * pw - Ew - 1) // sw + 1
    mode = default_mode(N, C, Ho, Wo, O, kh, kw, stride, padding, groups) if mode is None else mode
    layout = default_layout(mode, C, W, kw, stride, padding, dilation, groups) if layout is None else layout
    if layout == "exact" and (stride != (1, 1) or Ew != 2 * pw):
        raise ValueError("layout='exact' needs stride 1 and an output as wide as the input")
    if layout == "canvas" and stride != (1, 1):
        raise ValueError("layout='canvas' needs stride 1")
    if layout == "phases" and stride == (1, 1):
        layout = "canvas"
    corrections = []
    if layout == "exact":
        Wc, Hr = W, H
        taps = []
        for u in range(kh):
            di = u * dh - ph
            r0, r1 = max(0, -di), min(Ho, H - di)
            for v in range(kw):
                dj = v * dw - pw
                t = len(taps)
                if abs(dj) >= W or r1 <= r0:  # reads padding only: no rows
                    taps.append((dj, di * W + dj, r0, r0))
                    continue
                taps.append((dj, di * W + dj, r0, r1))
                # rows whose shifted read wraps to the neighbouring row inside the image (the first or last
                # row of the image is instead left out of the product: see _Workspace)
                if dj < 0:
                    c0, c1 = r0 + (1 if r0 + di == 0 else 0), r1
                    corrections += [(t, W + dj + jj, jj, c0, c1, c0 + di - 1) for jj in range(-dj)]
                elif dj > 0:
                    c0, c1 = r0, r1 - (1 if r1 + di == H else 0)
                    corrections += [(t, jj, W - dj + jj, c0, c1, c0 + di + 1) for jj in range(dj)]
        corrections = [c for c in corrections if c[4] > c[3]]
        taps = tuple(taps)
    elif layout == "canvas":
        # rows [pw zeros | W pixels | zeros up to Wc]: the right padding is the next row's left padding
        Wc = max(W + pw, Wo)
        Hr = H + 2 * ph + (1 if Wc < W + 2 * pw else 0)  # one more row for the last row's right padding
        taps = tuple((0, u * dh * Wc + v * dw, 0, Ho) for u in range(kh) for v in range(kw))
    else:
        # phase (a, b) holds the padded pixels (a + r*sh, b + c*sw): a Hr x Wc image with its own zeros
        Hr, Wc = -(-(H + 2 * ph) // sh), -(-(W + 2 * pw) // sw)
        taps = tuple(
            (((u * dh) % sh) * sw + (v * dw) % sw, ((u * dh) // sh) * Wc + (v * dw) // sw, 0, Ho)
            for u in range(kh)
            for v in range(kw)
        )
    C_in = C // groups if mode == "tap" else C
    per_col = {"full": O + C * kh * kw, "tap": O + C_in, "depthwise": O + C, "gemm1x1": O + C}[mode]
    if block_bytes is None:
        block_bytes = EXACT_BLOCK_BYTES if layout == "exact" else FULL_BLOCK_BYTES if mode == "full" else BLOCK_BYTES
    cols_per_block = max(Wc, block_bytes // (itemsize * per_col))
    if mode == "tap" and groups > 1:  # grouped products are batched over the groups: one image per block
        cols_per_block = min(cols_per_block, (Ho - 1) * Wc + Wo)
    blocks = _blocks(N, Ho, Wc, Wo, cols_per_block)
    return Plan(
        mode,
        layout,
        N,
        C,
        H,
        W,
        O,
        groups,
        kh,
        kw,
        stride,
        padding,
        dilation,
        Ho,
        Wo,
        Wc,
        Hr,
        taps,
        blocks,
        tuple(corrections),
    )


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
    """The padded input as ``N x phases x C x canvas_len`` (layouts 'canvas' and 'phases')."""
    N, C, H, W = x.shape
    if plan.layout == "exact":
        raise ValueError("the 'exact' layout reads the input itself: it has no canvas")
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
    re-ordered weights, and the views the products read and write: the loop over blocks and taps then costs
    one PyTorch call per product (like oneDNN's primitive cache and scratchpad).
    """

    def __init__(self, plan: Plan, dtype, device):
        self.plan = p = plan
        N, C, O = p.N, p.C, p.O
        g, T = p.groups, p.kh * p.kw
        zeros = functools.partial(torch.zeros, dtype=dtype, device=device)
        self.canvas = self.store = self.cols = self.wbuf = None
        self.exact = p.layout == "exact"
        # 'full' off the exact layout: the patch block has exactly Ho x Wo columns (no garbage), like im2col's
        self.patches = p.mode == "full" and not self.exact
        self.direct = self.exact or self.patches  # the products write straight into the output
        sizes = [(b[1] - b[0], (b[3] - b[2]) * p.Wo if self.patches else p.block_cols(b)) for b in p.blocks]
        biggest = max(m * Q for m, Q in sizes)
        self.fills = []
        if not self.exact and not p.zero_copy:
            self.canvas = zeros(N, p.phases, C, p.canvas_len)
            grid = self.canvas.view(N, p.phases, C, p.Hr, p.Wc)
            self.fills = [
                (grid[:, ph, :, r0 : r0 + ny, c0 : c0 + nx], y0, x0)
                for ph, y0, x0, r0, c0, ny, nx in _phase_copies(p)
                if ny and nx
            ]
        if not self.direct:
            self.store = zeros(biggest * O)
        if p.mode == "tap":
            self.wbuf = zeros(T, g, O // g, C // g)
        elif p.mode == "depthwise":
            self.wbuf = zeros(T, C, O // C, 1)
        elif p.mode == "full":
            self.cols = zeros(biggest * C * T)
        # per block: (n0, m, i0, Q, taps, covered) with taps = ((t, qa, qb), ...): tap t adds to columns qa:qb
        self.blocks = []
        for (n0, _, i0, i1), (m, Q) in zip(p.blocks, sizes):
            taps = []
            for t, (src, off, r0, r1) in enumerate(p.taps):
                a, b = max(r0, i0), min(r1, i1)
                if b <= a:
                    continue
                qa, qb = (a - i0) * p.Wc, (b - i0 - 1) * p.Wc + p.Wo
                if self.exact:  # don't read outside the image: those outputs read padding (and get 0)
                    dj, di = src, (off - src) // p.W
                    if dj < 0 and a + di == 0:
                        qa -= dj
                    if dj > 0 and b + di == p.H:
                        qb -= dj
                taps.append((t, qa, qb))
            full = [
                k for k, (t, qa, qb) in enumerate(taps) if (qa, qb) == (0, Q) and (not self.exact or p.taps[t][0] == 0)
            ]
            if full:  # a tap that writes the whole block goes first: it initialises the block
                taps.insert(0, taps.pop(full[0]))
            # 'full' writes the whole block in one product (zero patch rows where a tap reads padding)
            covered = bool(full) or p.mode == "full"
            self.blocks.append((n0, m, i0, Q, tuple(taps), covered, i1 - i0))
        self.specs = self._specs()
        self.sources = None if self.canvas is None else self._sources(self.canvas)

    @property
    def nbytes(self) -> int:
        """Bytes of everything this workspace keeps (canvas, block buffers, patch block, weights)."""
        kept = (self.canvas, self.store, self.cols, self.wbuf)
        return sum(t.numel() * t.element_size() for t in kept if t is not None)

    def _specs(self):
        """For every block, (size, stride, offset) of the view each tap reads, relative to image 0's start."""
        p = self.plan
        C, g = p.C, p.groups
        L = p.H * p.W if self.exact else p.canvas_len
        image = p.phases * C * L
        out = []
        for n0, m, i0, _, taps, _, rows in self.blocks:
            specs = []
            if self.patches:  # the block of the patch matrix: (c, u, v) rows, (i, j) columns
                (dh, dw) = p.dilation
                if p.phases == 1:  # all taps in one strided view
                    specs.append(
                        ((m, C, p.kh, p.kw, rows, p.Wo), (image, L, dh * p.Wc, dw, p.Wc, 1), n0 * image + i0 * p.Wc)
                    )
                else:
                    specs += [
                        ((m, C, rows, p.Wo), (image, L, p.Wc, 1), n0 * image + src * C * L + i0 * p.Wc + off)
                        for src, off, _, _ in p.taps
                    ]
                out.append(specs)
                continue
            for t, qa, qb in taps:
                src, off = p.taps[t][:2]
                phase = 0 if self.exact else src
                start = n0 * image + phase * C * L + i0 * p.Wc + qa + off
                n = qb - qa
                if p.mode == "tap" and g > 1:
                    specs.append(((g, C // g, n), (C // g * L, L, 1), start))
                elif p.mode == "depthwise":
                    specs.append(((m, C, 1, n), (image, L, n, 1), start))
                elif m == 1 and p.mode == "tap":
                    specs.append(((C, n), (L, 1), start))
                else:
                    specs.append(((m, C, n), (image, L, 1), start))
            out.append(specs)
        return out

    def _sources(self, base):
        off = base.storage_offset()
        return [[base.as_strided(size, stride, off + start) for size, stride, start in specs] for specs in self.specs]

    def __call__(self, x, weight, bias):
        p = self.plan
        N, C, H, W = x.shape
        O, Cg, kh, kw = weight.shape
        g, T = p.groups, kh * kw
        # 1. the input: read in place where it can be, else copied onto the canvas
        if self.exact:
            x = x.contiguous()
            sources = self._sources(x)
        elif p.zero_copy:
            x = x.contiguous()
            sources = self._sources(x)
        else:
            sh, sw = p.stride
            for dst, y0, x0 in self.fills:
                dst.copy_(x[:, :, y0::sh, x0::sw])
            sources = self.sources
        # 2. the weights, one matrix per tap (and group), or one row per filter
        if p.mode == "tap":
            self.wbuf.copy_(weight.view(g, O // g, Cg, T).permute(3, 0, 1, 2))
            wt = self.wbuf
        elif p.mode == "depthwise":
            self.wbuf.copy_(weight.view(C, O // C, T, 1).permute(2, 0, 1, 3))
            wt = self.wbuf
        else:
            wt = weight.view(O, Cg * T)
        y = x.new_empty(N, O, p.Ho, p.Wo)
        HoWo = p.Ho * p.Wo
        # 3. the blocks
        for (n0, m, i0, Q, taps, covered, _), srcs in zip(self.blocks, sources):
            if self.direct:  # the products write straight into the output
                acc = y.as_strided((m, O, Q), (O * HoWo, HoWo, 1), y.storage_offset() + n0 * O * HoWo + i0 * p.Wo)
                block_bias = bias
            else:
                acc = self.store[: m * O * Q].view(m, O, Q)
                block_bias = None  # added when the block is copied out
            if not covered:  # no tap writes the whole block: start from zero (or the bias)
                if bias is None:
                    acc.zero_()
                else:
                    acc.copy_(bias.view(1, O, 1).expand(m, O, Q))
                block_bias = None
            if p.mode == "full":
                self._full(acc, m, Q, taps, srcs, wt, block_bias)
            elif p.mode == "depthwise":
                self._depthwise(acc, m, Q, taps, srcs, wt, block_bias, covered)
            else:
                self._tap(acc, m, Q, taps, srcs, wt, block_bias, covered)
            if not self.direct:  # copy the valid outputs out, dropping the garbage, adding the bias
                i1 = i0 + (Q - p.Wo) // p.Wc + 1
                valid = acc.as_strided((m, O, i1 - i0, p.Wo), (O * Q, Q, p.Wc, 1))
                target = y[n0 : n0 + m, :, i0:i1]
                if bias is None:
                    target.copy_(valid)
                else:
                    torch.add(valid, bias.view(1, O, 1, 1), out=target)
        if p.corrections:
            self._correct(x, weight, wt, y)
        return y

    def _tap(self, acc, m, Q, taps, srcs, wt, bias, covered):
        """kh*kw products with inner dimension C/g, each reading a shifted slice of the input in place."""
        p = self.plan
        O, g = p.O, p.groups
        if g > 1:
            acc = acc[0].view(g, O // g, Q)
        elif m == 1:
            acc = acc[0]
        for k, ((t, qa, qb), src) in enumerate(zip(taps, srcs)):
            out = acc if (qa, qb) == (0, Q) else acc[..., qa:qb]
            w = wt[t] if g > 1 else wt[t, 0] if m == 1 else wt[t, 0].expand(m, *wt.shape[2:])
            if k == 0 and covered:
                if bias is None:
                    (torch.mm if out.dim() == 2 else torch.bmm)(w, src, out=out)
                elif out.dim() == 2:
                    torch.addmm(bias.view(O, 1), w, src, out=out)
                else:
                    b = bias.view(1, O, 1) if g == 1 else bias.view(g, O // g, 1)
                    torch.baddbmm(b, w, src, out=out)
            elif out.dim() == 2:
                out.addmm_(w, src)
            else:
                out.baddbmm_(w, src)

    def _full(self, acc, m, Q, taps, srcs, W_row, bias):
        """Copy the block's kh*kw shifted slices into a block of the patch matrix, then one product."""
        p = self.plan
        C, T = p.C, p.kh * p.kw
        cols = self.cols[: m * C * T * Q].view(m, C, T, Q)
        if self.patches and p.phases == 1:
            cols.view(m, C, p.kh, p.kw, Q // p.Wo, p.Wo).copy_(srcs[0])
        elif self.patches:
            for t, src in enumerate(srcs):
                cols[:, :, t].view(m, C, Q // p.Wo, p.Wo).copy_(src)
        else:
            present = {t for t, _, _ in taps}
            for t in range(T):
                if t not in present:
                    cols[:, :, t].zero_()
            for (t, qa, qb), src in zip(taps, srcs):
                cols[:, :, t, qa:qb].copy_(src)
                if qa > 0:
                    cols[:, :, t, :qa].zero_()
                if qb < Q:
                    cols[:, :, t, qb:].zero_()
        B = cols.view(m, C * T, Q)
        if m == 1:
            out, B = acc[0], B[0]
            if bias is None:
                torch.mm(W_row, B, out=out)
            else:
                torch.addmm(bias.view(-1, 1), W_row, B, out=out)
        else:
            Wm = W_row.expand(m, *W_row.shape)
            if bias is None:
                torch.bmm(Wm, B, out=acc)
            else:
                torch.baddbmm(bias.view(1, -1, 1), Wm, B, out=acc)

    def _depthwise(self, acc, m, Q, taps, srcs, wt, bias, covered):
        """Tap (u, v) is a diagonal C x C matrix times the shifted slice: an elementwise multiply-add."""
        p = self.plan
        C = p.C
        acc = acc.view(m, C, p.O // C, Q)
        for k, ((t, qa, qb), src) in enumerate(zip(taps, srcs)):
            out = acc if (qa, qb) == (0, Q) else acc[..., qa:qb]
            if k == 0 and covered:
                if bias is None:
                    torch.mul(src, wt[t], out=out)
                else:
                    torch.addcmul(bias.view(C, -1, 1), src, wt[t], out=out)
            else:
                out.addcmul_(src, wt[t])

    def _correct(self, x, weight, wt, y):
        """Subtract what the shifted taps read across row boundaries (the neighbouring row's edge pixels).

        With horizontal shift dj < 0, output column jj < -dj of tap (u, v) read the previous row's pixel in
        column W + dj + jj instead of the zero padding; with dj > 0, output column W - dj + jj read the next
        row's column jj. Those input columns are gathered once; for each output column affected, the wrong
        reads of all its taps are stacked (taps x C rows, N*Ho columns) and one small product with the taps'
        weights gives the amount to subtract from that column of the output.
        """
        p = self.plan
        N, C, H, W = x.shape
        O, g = p.O, p.groups
        in_cols = sorted({c[1] for c in p.corrections})
        gathered = x.new_empty(len(in_cols), C, N, H)  # input column k, channel-major
        for k, col in enumerate(in_cols):
            gathered[k].copy_(x[:, :, :, col].transpose(0, 1))
        for out_col in sorted({c[2] for c in p.corrections}):
            recs = [c for c in p.corrections if c[2] == out_col]
            stacked = x.new_zeros(len(recs), C, N, p.Ho)
            for j, (_, in_col, _, c0, c1, r0) in enumerate(recs):
                stacked[j, :, :, c0:c1].copy_(gathered[in_cols.index(in_col), :, :, r0 : r0 + c1 - c0])
            if p.mode == "depthwise":  # diagonal weights: elementwise, per channel
                mult = O // C
                wrong = x.new_zeros(C, mult, N * p.Ho)
                for j, (t, *_) in enumerate(recs):
                    wrong.addcmul_(stacked[j].view(C, 1, N * p.Ho), wt[t])
                wrong = wrong.view(O, N, p.Ho)
            elif g > 1:
                wrong = x.new_zeros(g, O // g, N * p.Ho)
                for j, (t, *_) in enumerate(recs):
                    wrong.baddbmm_(wt[t], stacked[j].view(g, C // g, N * p.Ho))
                wrong = wrong.view(O, N, p.Ho)
            else:  # the taps' weight matrices (re-ordered already for 'tap'; one small copy each for 'full')
                wrong = x.new_empty(O, N * p.Ho)
                for j, (t, *_) in enumerate(recs):
                    w_t = wt[t, 0] if p.mode == "tap" else weight[:, :, t // p.kw, t % p.kw]
                    (
                        torch.mm(w_t, stacked[j].view(C, N * p.Ho), out=wrong)
                        if j == 0
                        else wrong.addmm_(w_t, stacked[j].view(C, N * p.Ho))
                    )
                wrong = wrong.view(O, N, p.Ho)
            y[:, :, :, out_col] -= wrong.transpose(0, 1)


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
        torch.bmm(W_row.expand(N, O, C), X, out=Y)
    else:
        torch.baddbmm(bias.view(1, O, 1), W_row.expand(N, O, C), X, out=Y)


def _differentiable(x, weight, bias, plan: Plan):
    """The tap formulation on a canvas, with out-of-place operations that autograd can follow."""
    canvas = make_canvas(x, plan)
    O, Cg, kh, kw = weight.shape
    g = plan.groups
    N, P, C, L = canvas.shape
    Wt = weight.reshape(g, O // g, Cg, kh * kw).permute(3, 0, 1, 2)  # T x g x Og x Cg
    Q = (plan.Ho - 1) * plan.Wc + plan.Wo
    ext = None
    for t, (phase, off, _, _) in enumerate(plan.taps):
        src = canvas[:, phase, :, off : off + Q].reshape(N, g, Cg, Q)
        term = torch.matmul(Wt[t], src)  # N x g x Og x Q
        ext = term if ext is None else ext + term
    ext = ext.reshape(N, O, Q)
    ext = torch.cat([ext, ext.new_zeros(N, O, plan.Ho * plan.Wc - Q)], dim=2)
    y = ext.view(N, O, plan.Ho, plan.Wc)[..., : plan.Wo]
    if bias is not None:
        y = y + bias.view(1, O, 1, 1)
    return y.contiguous()


def conv2d(
    x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, mode=None, layout=None, block_bytes=None
):
    """2-D convolution from matrix products and data movement only, as fast as we could make it.

    Same arguments and result as ``torch.nn.functional.conv2d``: ``x`` is N x C x H x W (or unbatched
    C x H x W), ``weight`` O x C/groups x kh x kw, ``bias`` O entries or None; ``stride``, ``padding``,
    ``dilation`` an int or an (h, w) pair, ``padding`` also ``'valid'`` or ``'same'``. Returns a new contiguous
    N x O x Ho x Wo tensor. How it works: see the module docstring; :func:`conv2d_plan` shows the plan for a
    shape. ``mode`` and ``layout`` (keyword only) force a formulation (``'tap'``, ``'full'`` (groups=1),
    ``'depthwise'`` (groups = C), ``'gemm1x1'`` (1x1, stride 1, no padding, groups=1)) and a layout
    (``'exact'``, ``'canvas'``, ``'phases'``), ``block_bytes`` the size of the blocks, for measuring them.
    Differentiable: with autograd recording, it
    runs the tap formulation on a canvas, unblocked, with out-of-place operations.
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
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS} or None, got {layout!r}")
    if block_bytes is not None and (not isinstance(block_bytes, int) or block_bytes < 1):
        raise ValueError(f"block_bytes must be a positive int or None, got {block_bytes!r}")
    plan = functools.partial(
        conv2d_plan,
        N,
        C,
        H,
        W,
        O,
        kh,
        kw,
        a.stride,
        a.padding,
        a.dilation,
        a.groups,
        itemsize=xb.element_size(),
        block_bytes=block_bytes,
    )
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (xb, w, a.bias)):
        y = _differentiable(xb, w, a.bias, plan(mode="tap", layout="phases"))
        return y[0] if a.unbatched else y
    pl = plan(mode=mode, layout=layout)
    w = w.contiguous()
    if pl.mode == "gemm1x1":
        y = xb.new_empty(N, O, H, W)
        _gemm1x1(xb.contiguous(), w, a.bias, y)
    else:
        y = _workspace(pl, xb.dtype, xb.device)(xb, w, a.bias)
    return y[0] if a.unbatched else y
