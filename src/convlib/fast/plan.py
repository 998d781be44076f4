"""What the fast path does for one shape, as named data: the shape, the taps, the blocks, the plan.

A plan depends on the shape and on the choices made for it (formulation, layout, GEMM route, block size), never
on the numbers: :func:`build_plan` is cached. Which choices to make is decided elsewhere (``choose.py``); this
module only works out their geometry.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..args import Pair, output_length, pair

__all__ = ["Shape", "Span", "Tap", "ExactTap", "Wrap", "Block", "Plan", "tap_span", "build_plan", "l2_bytes"]

#: Formulations whose products read flat views of a canvas (or of the input itself), and the layouts they read.
FLAT_MODES = ("tap", "full", "depthwise")
FLAT_LAYOUTS = ("exact", "canvas", "phases")


class Shape(NamedTuple):
    """A convolution's shape: input N x C x H x W, weight O x C/groups x kh x kw, and its arguments as pairs."""

    N: int
    C: int
    H: int
    W: int
    O: int
    kh: int
    kw: int
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1

    @property
    def Ho(self) -> int:
        return output_length(self.H, self.kh, self.stride[0], self.padding[0], self.dilation[0])

    @property
    def Wo(self) -> int:
        return output_length(self.W, self.kw, self.stride[1], self.padding[1], self.dilation[1])

    @property
    def taps(self) -> int:
        return self.kh * self.kw

    @property
    def macs(self) -> int:
        return self.N * self.O * self.Ho * self.Wo * (self.C // self.groups) * self.kh * self.kw


class Span(NamedTuple):
    """The outputs one kernel tap reaches: those whose read lies inside the image (the others read padding).

    ``rows``: output rows ``i0..i1-1``; ``cols``: output columns ``j0..j1-1``. ``flat``: with stride 1 and an
    output as wide as the input (rows of W on both sides), the run of flat outputs ``q0..q1-1`` (q = i*W + j)
    that one product over a contiguous slice of the flat input covers: the rows above, trimmed where a read
    would leave the flat image. Inside that run, the outputs of columns outside ``cols`` read the neighbouring
    row's edge pixel instead of padding (None otherwise).
    """

    rows: Pair
    cols: Pair
    flat: Pair | None


def _axis_span(u: int, n: int, k: int, s: int, p: int, d: int) -> Pair:
    """Output indices i with ``0 <= i*s + u*d - p < n`` (the tap's read inside the image), clipped to the output."""
    n_out = output_length(n, k, s, p, d)
    lo = max(0, -((u * d - p) // s))  # ceil((p - u*d) / s)
    hi = min(n_out, (n - 1 + p - u * d) // s + 1)
    return (lo, max(lo, hi))


def tap_span(u, v, size, kernel_size, stride=1, padding=0, dilation=1) -> Span:
    """Which outputs kernel tap ``(u, v)`` reaches in an input of ``size = (H, W)`` (see :class:`Span`).

    ``kernel_size``, ``stride``, ``padding``, ``dilation``: ints or pairs, as for ``F.conv2d`` (symmetric padding).
    """
    (H, W), (kh, kw) = pair(size, "size", minimum=1), pair(kernel_size, "kernel_size", minimum=1)
    (sh, sw), (ph, pw) = pair(stride, "stride", minimum=1), pair(padding, "padding", minimum=0)
    (dh, dw) = pair(dilation, "dilation", minimum=1)
    rows = _axis_span(u, H, kh, sh, ph, dh)
    cols = _axis_span(v, W, kw, sw, pw, dw)
    flat = None
    if (sh, sw) == (1, 1) and output_length(W, kw, 1, pw, dw) == W:
        offset = (u * dh - ph) * W + (v * dw - pw)
        q0, q1 = max(rows[0] * W, -offset), min(rows[1] * W, H * W - offset)
        flat = (q0, max(q0, q1)) if rows[1] > rows[0] and cols[1] > cols[0] else (q0, q0)
    return Span(rows, cols, flat)


class Tap(NamedTuple):
    """Kernel tap (u, v) on a canvas (layouts 'canvas', 'phases'): output q (flat, rows ``Wc`` long) reads the
    flat index ``q + offset`` of phase image ``phase`` (0 on the canvas); it reaches output rows first..end-1."""

    phase: int
    offset: int
    first: int
    end: int


class ExactTap(NamedTuple):
    """Kernel tap (u, v) in the 'exact' layout: output q = i*W + j reads the input's flat index ``q + offset``;
    ``shift`` = v*dw - pw is its horizontal shift; it reaches output rows first..end-1."""

    shift: int
    offset: int
    first: int
    end: int


class Wrap(NamedTuple):
    """Outputs of column ``out_col``, rows first..end-1, whose exact-layout product read input column ``in_col``
    of the neighbouring row (input row ``in_row`` for the first of them) where the padding lies: garbage, which
    the exact layout overwrites by computing those output columns afresh."""

    tap: int
    in_col: int
    out_col: int
    first: int
    end: int
    in_row: int


class Block(NamedTuple):
    """Outputs computed together: images n0..n1-1, output rows i0..i1-1."""

    n0: int
    n1: int
    i0: int
    i1: int


@dataclass(frozen=True)
class Plan:
    """How ``convlib.conv2d`` computes one shape (built by :func:`build_plan`; hashable, so it keys caches).

    ``mode``: the formulation; ``layout``: what its products read ('exact': the input itself, 'canvas'/'phases':
    padded flat images, 'nhwc': a padded channels-last copy, 'direct': the input as it is); ``route``: the GEMM
    route ('' where there is no matrix product). ``Wc`` x ``Hr``: the flat images the taps read (rows ``Wc``
    long); ``taps[u*kw + v]``: how tap (u, v) reads them; ``blocks``: the outputs computed together.
    """

    mode: str
    layout: str
    route: str
    N: int
    C: int
    H: int
    W: int
    O: int
    groups: int
    kh: int
    kw: int
    stride: Pair
    padding: Pair
    dilation: Pair
    Ho: int
    Wo: int
    Wc: int
    Hr: int
    taps: tuple
    blocks: tuple[Block, ...]
    block_bytes: int
    itemsize: int = 4

    @property
    def shape(self) -> Shape:
        return Shape(
            self.N,
            self.C,
            self.H,
            self.W,
            self.O,
            self.kh,
            self.kw,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )

    @property
    def phases(self) -> int:
        return self.stride[0] * self.stride[1] if self.layout == "phases" else 1

    @property
    def canvas_len(self) -> int:
        return self.Hr * self.Wc

    @property
    def zero_copy(self) -> bool:
        """Canvas layout without padding: the (contiguous) input already is the canvas."""
        return self.layout == "canvas" and self.padding == (0, 0)

    def block_cols(self, block: Block) -> int:
        """Output positions per image that the block's products compute (dropped garbage columns included)."""
        if self.layout in ("nhwc", "direct") or (self.mode == "full" and self.layout != "exact"):
            return (block.i1 - block.i0) * self.Wo
        return (block.i1 - block.i0 - 1) * self.Wc + self.Wo

    @property
    def computed(self) -> int:
        """Output positions computed, the dropped "garbage" columns included."""
        return sum((b.n1 - b.n0) * self.block_cols(b) for b in self.blocks)

    @property
    def waste(self) -> float:
        """Computed output positions per wanted one (1.0: nothing computed in vain)."""
        return self.computed / max(1, self.N * self.Ho * self.Wo)

    def span(self, t: int) -> Span:
        """Which outputs tap t = u*kw + v reaches (see :func:`tap_span`)."""
        return tap_span(
            *divmod(t, self.kw), (self.H, self.W), (self.kh, self.kw), self.stride, self.padding, self.dilation
        )

    @property
    def edges(self) -> tuple[Pair, ...]:
        """'exact' layout: the output columns ``(j0, j1)`` that wrapped reads spoil and that are computed afresh."""
        if self.layout != "exact":
            return ()
        left = max(0, self.padding[1])
        right = max(0, self.dilation[1] * (self.kw - 1) - self.padding[1])
        if left + right >= self.W:
            return ((0, self.W),)
        return tuple(r for r in ((0, left), (self.W - right, self.W)) if r[1] > r[0])

    @property
    def corrections(self) -> tuple[Wrap, ...]:
        """'exact' layout: every run of outputs whose product read across a row boundary (see :class:`Wrap`)."""
        if self.layout != "exact":
            return ()
        out = []
        for t, tap in enumerate(self.taps):
            span = self.span(t)
            (q0, q1), (j0, j1), di = span.flat, span.cols, (tap.offset - tap.shift) // self.W
            wrapped = range(0, j0) if tap.shift < 0 else range(j1, self.W)
            for jj in wrapped if tap.shift else ():
                first, end = -(-(q0 - jj) // self.W), (q1 - 1 - jj) // self.W + 1
                if end > first:
                    side = -1 if tap.shift < 0 else 1
                    out.append(Wrap(t, jj + tap.shift - side * self.W, jj, first, end, first + di + side))
        return tuple(out)


@functools.lru_cache(maxsize=1)
def l2_bytes() -> int:
    """The size of one core's L2 cache, read from Linux's sysfs (1 MiB where it cannot be read)."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for index in sorted(base.glob("index*")):
            if (index / "level").read_text().strip() == "2":
                text = (index / "size").read_text().strip().upper()
                scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1], 1)
                return int(text.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return 1 << 20


def default_block_bytes(mode: str, layout: str) -> int:
    """Blocks in units of the L2 cache: measured in chapter 6, the elementwise depthwise taps and the canvas copies
    want blocks of half of it, the products on whole images (layout 'exact') and patch blocks larger ones."""
    l2 = l2_bytes()
    if layout == "exact":
        return 8 * l2
    if mode in ("full", "im2col_nhwc"):
        return 2 * l2
    return l2 // 2


def _blocks(N, Ho, Wc, Wo, cols_per_block) -> tuple[Block, ...]:
    """Several whole images per block when an image fits ``cols_per_block`` output positions, else bands of rows."""
    per_image = (Ho - 1) * Wc + Wo
    if per_image <= cols_per_block:
        m = max(1, cols_per_block // per_image)
        m = math.ceil(N / math.ceil(N / m)) if N else 1  # balance the blocks
        return tuple(Block(n0, min(N, n0 + m), 0, Ho) for n0 in range(0, N, m))
    rows = max(1, cols_per_block // Wc)
    rows = math.ceil(Ho / math.ceil(Ho / rows))
    return tuple(Block(n, n + 1, i0, min(Ho, i0 + rows)) for n in range(N) for i0 in range(0, Ho, rows))


def _exact_taps(s: Shape) -> tuple[ExactTap, ...]:
    """The input itself, rows W long: tap (u, v) reads flat index q + (u*dh - ph)*W + v*dw - pw."""
    taps = []
    for t in range(s.taps):
        u, v = divmod(t, s.kw)
        span = tap_span(u, v, (s.H, s.W), (s.kh, s.kw), s.stride, s.padding, s.dilation)
        rows = span.rows if span.flat[1] > span.flat[0] else (span.rows[0], span.rows[0])
        di, dj = u * s.dilation[0] - s.padding[0], v * s.dilation[1] - s.padding[1]
        taps.append(ExactTap(dj, di * s.W + dj, *rows))
    return tuple(taps)


def _canvas_geometry(s: Shape, layout: str) -> tuple[int, int, tuple[Tap, ...]]:
    """``(Wc, Hr, taps)`` of the padded flat images the taps read (layouts 'canvas' and 'phases')."""
    (sh, sw), (ph, pw), (dh, dw) = s.stride, s.padding, s.dilation
    Ho, Wo = s.Ho, s.Wo
    if layout == "canvas":
        # rows [pw zeros | W pixels | zeros up to Wc]: a row's right padding is the next row's left padding
        Wc = max(s.W + pw, Wo)
        Hr = s.H + 2 * ph + (1 if Wc < s.W + 2 * pw else 0)  # one more row for the last row's right padding
        return Wc, Hr, tuple(Tap(0, u * dh * Wc + v * dw, 0, Ho) for u in range(s.kh) for v in range(s.kw))
    # phase (a, b) holds the padded pixels (a + r*sh, b + c*sw): an Hr x Wc image with its own zeros
    Hr, Wc = -(-(s.H + 2 * ph) // sh), -(-(s.W + 2 * pw) // sw)
    taps = tuple(
        Tap(((u * dh) % sh) * sw + (v * dw) % sw, ((u * dh) // sh) * Wc + (v * dw) // sw, 0, Ho)
        for u in range(s.kh)
        for v in range(s.kw)
    )
    return Wc, Hr, taps


def _bytes_per_output(s: Shape, mode: str) -> int:
    """Elements one output position of a block touches: its O outputs and the inputs its products read."""
    inner = {"full": s.C * s.taps, "im2col_nhwc": s.C * s.taps, "tap": s.C // s.groups}.get(mode, s.C)
    return s.O + inner


@functools.lru_cache(maxsize=1024)
def build_plan(shape: Shape, mode: str, layout: str, route: str, block_bytes: int, itemsize: int = 4) -> Plan:
    """The geometry of a plan whose choices are all made (``choose.conv2d_plan`` makes them and checks them)."""
    s = shape
    Ho, Wo = s.Ho, s.Wo
    taps = ()
    if layout == "exact":
        Wc, Hr, taps = s.W, s.H, _exact_taps(s)
    elif layout in ("canvas", "phases"):
        Wc, Hr, taps = _canvas_geometry(s, layout)
    else:  # 'nhwc', 'direct': no garbage columns
        Wc, Hr = Wo, Ho
    if layout == "direct":
        blocks = (Block(0, s.N, 0, Ho),)  # the formulation computes the whole batch in one go
    else:
        cols = max(Wc, block_bytes // (itemsize * _bytes_per_output(s, mode)))
        if mode == "tap" and s.groups > 1:  # grouped products are batched over the groups: one image per block
            cols = min(cols, (Ho - 1) * Wc + Wo)
        blocks = _blocks(s.N, Ho, Wc, Wo, cols)
    return Plan(
        mode=mode,
        layout=layout,
        route=route,
        N=s.N,
        C=s.C,
        H=s.H,
        W=s.W,
        O=s.O,
        groups=s.groups,
        kh=s.kh,
        kw=s.kw,
        stride=s.stride,
        padding=s.padding,
        dilation=s.dilation,
        Ho=Ho,
        Wo=Wo,
        Wc=Wc,
        Hr=Hr,
        taps=taps,
        blocks=blocks,
        block_bytes=block_bytes,
        itemsize=itemsize,
    )
