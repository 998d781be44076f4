"""Winograd's minimal filtering algorithms F(m, r) as a factorisation of the convolution matrix.

One output row of a 1-D cross-correlation with an r-tap filter ``g`` computes m outputs
``y[j] = sum_u g[u] d[j + u]`` from ``alpha = m + r - 1`` inputs ``d``: the m x alpha Toeplitz block of M, m*r
multiplications. Winograd's algorithm F(m, r) (Lavin & Gray, *Fast Algorithms for Convolutional Neural
Networks*, 2016) factors that block as

    y = A^T [(G g) . (B^T d)]          (``.`` the elementwise product)

with only ``alpha`` multiplications: ``A^T`` is m x alpha, ``G`` alpha x r, ``B^T`` alpha x alpha, and ``G g``
depends on the weights alone (transformed once). The three matrices come from polynomial interpolation
(Toom-Cook): the *convolution* of an m- and an r-coefficient polynomial is their product, a polynomial with
alpha coefficients, which is fixed by its values at alpha points. Evaluate both factors at the points (the
rows of ``A`` and ``G``: powers of the point; for the point at infinity, the leading coefficient),
multiply the alpha values, interpolate back (Lagrange: the matrix ``B``). The cross-correlation is the
*transpose* of that convolution (transposition principle), which swaps the roles: ``y = A^T diag(G g) B^T d``.
:func:`toom_cook` builds the three matrices in exact rationals for any points.

In 2-D the algorithm nests: an alpha x alpha input tile ``d`` and an r x r kernel ``g`` give an m x m output
tile ``Y = A^T [(G g G^T) . (B^T d B)] A``: alpha^2 multiplications instead of m^2 r^2 (2.25x fewer for
F(2x2, 3x3), 4x for F(4x4, 3x3)). Across channels the elementwise product becomes, for each of the alpha^2
positions of the transformed tile, one matrix product (tiles x C) @ (C x O): :func:`conv2d_winograd` is
alpha^2 batched GEMMs between two transforms, a matrix-multiplication method.

The price is accuracy: the transforms' entries grow with the interpolation points (0, +-1, +-2, +-1/2, ...),
and so does the float32 error (:func:`transform_growth`, :func:`convlib.costs.accuracy_table`).
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from fractions import Fraction
from typing import NamedTuple

import torch

from .args import conv2d_args
from .transformed import all_finite, check_cache, compute_dtype, direct_conv2d, finish

__all__ = [
    "INFINITY",
    "ToomCook",
    "interpolation_points",
    "toom_cook",
    "polynomial_product",
    "winograd_1d",
    "winograd_2d",
    "Multiplications",
    "multiplications",
    "amplification",
    "transform_growth",
    "winograd_kernel",
    "winograd_plan",
    "WinogradPlan",
    "conv2d_winograd",
    "clear_workspaces",
    "TILE_SIZES",
]

INFINITY = math.inf  # the point at infinity: "evaluating" a polynomial there gives its leading coefficient

# The points libraries use, in the order they are taken: small integers and their reciprocals keep the
# transforms' entries small (Lavin & Gray 2016; Barabasz et al. 2020)
_POINTS = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2), 3, -3, Fraction(1, 3), Fraction(-1, 3), 4, -4)
TILE_SIZES = (2, 4, 6)  # the output tiles m x m that conv2d_winograd is meant for (any m >= 1 works)
MAX_TILE = len(_POINTS) - 1  # largest m the default points allow for r = 3

Matrix = tuple[tuple[Fraction, ...], ...]


# ---------------------------------------------------------------- Toom-Cook in exact rationals


class ToomCook(NamedTuple):
    """The matrices of Winograd's F(m, r): ``y = A^T [(G g) . (B^T d)]``, entries exact ``Fraction``s."""

    m: int
    r: int
    points: tuple  # alpha = m + r - 1 interpolation points (Fractions; INFINITY for the point at infinity)
    AT: Matrix  # m x alpha: evaluation matrix of the output polynomial, transposed
    G: Matrix  # alpha x r: evaluates the kernel polynomial at the points
    BT: Matrix  # alpha x alpha: row i holds the coefficients of the i-th Lagrange basis polynomial

    @property
    def alpha(self) -> int:
        """Input tile length m + r - 1: the number of multiplications of F(m, r)."""
        return len(self.points)

    def tensors(self, dtype=torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(A^T, G, B^T)`` as tensors (rounded to ``dtype``)."""
        return tuple(
            torch.tensor([[float(v) for v in row] for row in M], dtype=dtype, device=device)
            for M in (self.AT, self.G, self.BT)
        )

    def terms(self) -> tuple:
        """The alpha rank-one terms ``A^T[:, i] (x) G[i, :] (x) B^T[i, :]`` (m x r x alpha each, Fractions).

        ``y[j] = sum_u sum_k (sum_i term_i[j][u][k]) g[u] d[k]``: the algorithm itself, unchanged by the
        free rescaling ``A^T[:, i] * a, G[i] * b, B^T[i] * c`` with ``a b c = 1`` that makes published
        matrices differ. Compare these (or :meth:`correlation`) to tell whether two sets of matrices are the
        same algorithm.
        """
        return tuple(
            tuple(tuple(tuple(a * g * b for b in self.BT[i]) for g in self.G[i]) for a in (row[i] for row in self.AT))
            for i in range(self.alpha)
        )

    def correlation(self) -> tuple:
        """``sum_i A^T[j, i] G[i, u] B^T[i, k]`` as an m x r x alpha nested tuple: 1 where k = j + u, else 0."""
        return tuple(
            tuple(
                tuple(
                    sum(self.AT[j][i] * self.G[i][u] * self.BT[i][k] for i in range(self.alpha))
                    for k in range(self.alpha)
                )
                for u in range(self.r)
            )
            for j in range(self.m)
        )


def interpolation_points(m: int, r: int = 3) -> tuple:
    """The alpha = m + r - 1 default points of F(m, r): 0, 1, -1, 2, -2, 1/2, -1/2, ... and infinity."""
    _check_m_r(m, r)
    alpha = m + r - 1
    if alpha - 1 > len(_POINTS):
        raise ValueError(f"the default points cover m + r - 2 <= {len(_POINTS)}; pass points= for F({m}, {r})")
    return tuple(Fraction(p) for p in _POINTS[: alpha - 1]) + (INFINITY,)


def _check_m_r(m, r):
    for name, v in (("m", m), ("r", r)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


def _as_point(p):
    if isinstance(p, float) and math.isinf(p) and p > 0:
        return INFINITY
    if isinstance(p, (int, Fraction, str)) and not isinstance(p, bool):
        return Fraction(p)
    if isinstance(p, float) and math.isfinite(p):
        return Fraction(p)  # the float's exact binary value
    raise TypeError(f"an interpolation point must be an int, a Fraction, a finite float or math.inf, got {p!r}")


def _poly_mul(p, q):
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return out


def _evaluation(points, n) -> Matrix:
    """alpha x n: row i evaluates a polynomial of n coefficients at point i (at infinity: its leading one)."""
    return tuple(tuple(Fraction(int(j == n - 1)) if p == INFINITY else p**j for j in range(n)) for p in points)


def _lagrange(points) -> Matrix:
    """alpha x alpha: row i holds the coefficients (constant first) of the i-th basis polynomial.

    A finite point's basis polynomial is its Lagrange polynomial on the finite points: 1 there, 0 at the
    others. The point at infinity's is the product of (x - p) over the finite points, the polynomial that
    vanishes on all of them and carries the leading coefficient.
    """
    finite = [p for p in points if p != INFINITY]
    rows = []
    for p in points:
        poly = [Fraction(1)]
        for q in finite:
            if p == INFINITY:
                poly = _poly_mul(poly, [-q, Fraction(1)])
            elif q != p:
                poly = [c / (p - q) for c in _poly_mul(poly, [-q, Fraction(1)])]
        rows.append(tuple(poly + [Fraction(0)] * (len(points) - len(poly))))
    return tuple(rows)


def _integer_rows(BT, G):
    """Scale each row of B^T to coprime integers, moving the factor into G's row (the algorithm is unchanged)."""
    BT2, G2 = [], []
    for b, g in zip(BT, G):
        den = math.lcm(*(v.denominator for v in b))
        num = math.gcd(*(int(v * den) for v in b)) or 1
        s = Fraction(den, num)
        BT2.append(tuple(v * s for v in b))
        G2.append(tuple(v / s for v in g))
    return tuple(BT2), tuple(G2)


def toom_cook(m: int, r: int = 3, points=None, *, integer_BT: bool = True) -> ToomCook:
    """The matrices A^T (m x alpha), G (alpha x r), B^T (alpha x alpha) of F(m, r) in exact rationals.

    ``points``: alpha = m + r - 1 distinct points, at most one of them ``INFINITY`` (``math.inf``); the
    default is :func:`interpolation_points`. ``integer_BT`` scales each row of B^T to coprime integers and
    divides the same row of G by the factor, as published matrices do (a free rescaling: see
    :meth:`ToomCook.terms`). The result satisfies ``y = A^T [(G g) . (B^T d)]`` for every r-tap ``g`` and
    alpha-sample ``d`` exactly (:meth:`ToomCook.correlation`).
    """
    _check_m_r(m, r)
    alpha = m + r - 1
    points = interpolation_points(m, r) if points is None else tuple(_as_point(p) for p in points)
    if len(points) != alpha:
        raise ValueError(f"F({m}, {r}) needs alpha = m + r - 1 = {alpha} points, got {len(points)}")
    if len(set(points)) != alpha:
        raise ValueError(f"the interpolation points must be distinct, got {points}")
    A, G, BT = _evaluation(points, m), _evaluation(points, r), _lagrange(points)
    if integer_BT:
        BT, G = _integer_rows(BT, G)
    return ToomCook(m=m, r=r, points=points, AT=tuple(zip(*A)), G=G, BT=BT)


# ---------------------------------------------------------------- the algorithm on one tile


def _float_matrices(tc, like):
    return tc.tensors(dtype=like.dtype, device=like.device)


def polynomial_product(a: torch.Tensor, g: torch.Tensor, tc: ToomCook | None = None) -> torch.Tensor:
    """``B [(A a) . (G g)]`` (``A``, ``B`` the transposes of ``A^T``, ``B^T``): Toom-Cook's polynomial product.

    The alpha coefficients of ``a(x) g(x)`` (``a``: m coefficients, ``g``: r), i.e. the full convolution of
    the two sequences: evaluate both polynomials at the points, multiply the alpha values, interpolate.
    Winograd's F(m, r) (:func:`winograd_1d`) is this algorithm transposed: the same matrices, the roles of
    ``A`` and ``B`` swapped.
    """
    tc = tc or toom_cook(a.shape[-1], g.shape[-1])
    AT, G, BT = _float_matrices(tc, a)
    return BT.T @ ((AT.T @ a) * (G @ g))


def winograd_1d(d: torch.Tensor, g: torch.Tensor, tc: ToomCook | None = None) -> torch.Tensor:
    """``A^T [(G g) . (B^T d)]``: the m outputs of correlating ``d`` (alpha samples) with ``g`` (r taps).

    Equal to ``F.conv1d(d[None, None], g[None, None])[0, 0]`` to round-off. ``tc`` defaults to
    ``toom_cook(len(d) - len(g) + 1, len(g))``.
    """
    tc = tc or toom_cook(d.shape[-1] - g.shape[-1] + 1, g.shape[-1])
    if d.shape[-1] != tc.alpha or g.shape[-1] != tc.r:
        raise ValueError(
            f"F({tc.m}, {tc.r}) needs {tc.alpha} samples and {tc.r} taps, got {d.shape[-1]} and {g.shape[-1]}"
        )
    AT, G, BT = _float_matrices(tc, d)
    return AT @ ((G @ g) * (BT @ d))


def winograd_2d(d: torch.Tensor, g: torch.Tensor, tc: ToomCook | None = None) -> torch.Tensor:
    """``A^T [(G g G^T) . (B^T d B)] A``: the m x m outputs of correlating an alpha x alpha tile with an r x r kernel.

    Equal to ``F.conv2d(d[None, None], g[None, None])[0, 0]`` to round-off (the alpha^2 products of the
    ``.`` replace the m^2 r^2 of the direct sum).
    """
    tc = tc or toom_cook(d.shape[-1] - g.shape[-1] + 1, g.shape[-1])
    if d.shape[-2:] != (tc.alpha, tc.alpha) or g.shape[-2:] != (tc.r, tc.r):
        raise ValueError(
            f"F({tc.m}x{tc.m}, {tc.r}x{tc.r}) needs a {tc.alpha}x{tc.alpha} tile and a {tc.r}x{tc.r} kernel, "
            f"got {tuple(d.shape[-2:])} and {tuple(g.shape[-2:])}"
        )
    AT, G, BT = _float_matrices(tc, d)
    return AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T


class Multiplications(NamedTuple):
    """Multiplications per output of the direct sum and of F(m, r), and their ratio (exact)."""

    direct: Fraction
    winograd: Fraction
    ratio: Fraction


def multiplications(m: int, r: int = 3, dims: int = 2) -> Multiplications:
    """Multiplications per output pixel: direct ``r^dims``, F(m^dims, r^dims) ``alpha^dims / m^dims``.

    Counted from the shapes of the generated matrices: each output tile of m^dims pixels costs one
    elementwise product of alpha^dims entries (the transforms' multiplications by constants, and the
    kernel's transform, not counted). ``ratio``: 9/4 for F(2x2, 3x3), 4 for F(4x4, 3x3), 81/16 for F(6x6, 3x3).
    """
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims!r}")
    tc = toom_cook(m, r)
    AT, G = tc.AT, tc.G
    per_tile = len(G) ** dims  # entries of (G g G^T) . (B^T d B): one multiplication each
    outputs = len(AT) ** dims
    direct = Fraction(len(G[0]) ** dims)
    winograd = Fraction(per_tile, outputs)
    return Multiplications(direct, winograd, direct / winograd)


def amplification(tc: ToomCook) -> Fraction:
    """How much larger than the direct sum's the terms F(m, r) adds up can be, per output (1-D, exact).

    ``max_j sum_i |A^T[j, i]| * ||G[i]||_1 * ||B^T[i]||_1 / r``: the bound on ``sum_i |A^T[j, i] (G g)_i
    (B^T d)_i|`` over the bound ``r max|g| max|d|`` on the direct ``sum_u |g_u d_(j+u)|``. Rounding errors
    scale with these sums, so this is the factor by which the worst-case error can grow; unchanged by the free
    rescaling of rows (:meth:`ToomCook.terms`). The nested 2-D algorithm's factor is its square.
    """
    return max(
        sum(abs(tc.AT[j][i]) * sum(map(abs, tc.G[i])) * sum(map(abs, tc.BT[i])) for i in range(tc.alpha))
        for j in range(tc.m)
    ) / Fraction(tc.r)


def transform_growth(ms=(2, 3, 4, 5, 6, 7, 8), r: int = 3) -> list[dict]:
    """Why libraries stop at F(4, 3) or F(6, 3): per m, the size of the transforms with the default points.

    Each row: ``m``, ``alpha``, the ``points``, the largest |entry| of A^T, G and B^T (``max_AT``, ``max_G``,
    ``max_BT``), ``cond_BT`` (the 2-norm condition number of B^T, float64) and the error amplification
    bounds ``amplification_1d`` and ``amplification_2d`` (:func:`amplification` and its square). They grow
    fast once the points run out of 0, +-1, +-2, +-1/2: their powers up to p^(alpha-1) enter the matrices.
    """
    rows = []
    for m in ms:
        tc = toom_cook(m, r)
        AT, G, BT = tc.tensors(torch.float64)
        amp = amplification(tc)
        rows.append(
            dict(
                m=m,
                alpha=tc.alpha,
                points=tuple("inf" if p == INFINITY else str(p) for p in tc.points),
                max_AT=float(AT.abs().max()),
                max_G=float(G.abs().max()),
                max_BT=float(BT.abs().max()),
                cond_BT=float(torch.linalg.cond(BT)),
                amplification_1d=float(amp),
                amplification_2d=float(amp**2),
            )
        )
    return rows


# ---------------------------------------------------------------- the layer


class WinogradPlan(NamedTuple):
    """How :func:`conv2d_winograd` tiles one shape (see :func:`winograd_plan`)."""

    m: int
    alpha: int
    tiles: tuple[int, int]  # tiles per image along the height and the width
    canvas: tuple[int, int]  # padded input rows and columns the tiles read (zeros beyond the padding)
    blocks: tuple[tuple[int, int, int, int], ...]  # (n0, n1, t0, t1): images n0:n1, tile rows t0:t1
    gemm: tuple[int, int, int, int]  # the batched products: batch alpha^2 * groups, (tiles x C/g) @ (C/g x O/g)

    @property
    def block_tiles(self) -> int:
        return max(((n1 - n0) * (t1 - t0) for n0, n1, t0, t1 in self.blocks), default=0) * self.tiles[1]


# Bytes of one block's transformed input (alpha^2 x tiles x max(C, O)), measured with
# convlib.costs.block_sweep (F(4x4, 3x3), cached kernel, AMD EPYC, one thread, interleaved, on a busy machine:
# CPU-time ratios to F.conv2d). With 1 / 2 / 4 / 8 / 16 MiB blocks, 8x128x28^2 -> 128 took 0.88 / 0.90 / 0.93 /
# 0.87 / 0.88 (flat), 8x64x56^2 -> 64 took 1.10 / 1.10 / 1.19 / 1.32 / 1.36: blocks about the size of a
# core's L2 (1-2 MiB) keep the transforms' passes in it; smaller ones make the GEMMs too thin.
BLOCK_BYTES = 2 << 20


def winograd_plan(N, C, H, W, O, padding=(1, 1), groups=1, m=4, itemsize=4, block_bytes=None) -> WinogradPlan:
    """The tiling of an N x C x H x W input, 3x3 kernel, symmetric ``padding`` (plain ints), tile size m."""
    r = 3
    alpha = m + r - 1
    (ph, pw) = padding
    Ho, Wo = H + 2 * ph - r + 1, W + 2 * pw - r + 1
    Th, Tw = -(-Ho // m), -(-Wo // m)
    per_row = alpha * alpha * Tw * max(C, O) * itemsize  # one tile row's transformed input (or output)
    rows = max(1, (BLOCK_BYTES if block_bytes is None else block_bytes) // per_row)
    if N == 0:
        blocks = ()
    elif rows >= Th:  # several whole images per block, balanced
        k = min(N, rows // Th)
        k = -(-N // -(-N // k))
        blocks = tuple((n0, min(N, n0 + k), 0, Th) for n0 in range(0, N, k))
    else:
        rows = -(-Th // -(-Th // rows))
        blocks = tuple((n, n + 1, t0, min(Th, t0 + rows)) for n in range(N) for t0 in range(0, Th, rows))
    P = max(((b[1] - b[0]) * (b[3] - b[2]) for b in blocks), default=0) * Tw
    return WinogradPlan(
        m=m,
        alpha=alpha,
        tiles=(Th, Tw),
        canvas=(Th * m + r - 1, Tw * m + r - 1),
        blocks=blocks,
        gemm=(alpha * alpha * groups, P, C // groups, O // groups),
    )


@functools.lru_cache(maxsize=32)
def _matrices(m: int, r: int, dtype, device):
    return toom_cook(m, r).tensors(dtype=dtype, device=device)


def winograd_kernel(weight: torch.Tensor, m: int = 4, groups: int = 1) -> torch.Tensor:
    """The transformed kernel ``G g G^T`` of every (o, c) pair, laid out as the GEMMs read it.

    ``weight`` is O x C/groups x r x r. Returns alpha^2 * groups matrices of shape C/g x O/g (a tensor
    ``(alpha^2 * groups) x C/g x O/g``): entry ``[(xi * alpha + nu) * groups + gamma, c, o]`` is
    ``(G g G^T)[xi, nu]`` for out-channel ``gamma * O/g + o`` and in-channel ``c`` of group ``gamma``.
    All O*C/g kernels in one matrix product: ``vec(G g G^T) = (G (x) G) vec(g)`` (row-major ``vec``).
    """
    O, Cg, r, r2 = weight.shape
    if r != r2:
        raise ValueError(f"the Winograd kernel transform needs a square kernel, got {r}x{r2}")
    _, G, _ = _matrices(m, r, weight.dtype, weight.device)
    a = m + r - 1
    U = torch.kron(G, G) @ weight.reshape(O * Cg, r * r).T  # alpha^2 x O*C/g
    return U.view(a * a, groups, O // groups, Cg).transpose(2, 3).reshape(a * a * groups, Cg, O // groups)


class _Workspace:
    """The buffers of one shape, kept between calls: the zero-bordered NHWC canvas and the block buffers.

    Three block buffers hold, in turn: the gathered tiles and the transformed input (``buf0``), the
    half-transformed input and output (``buf1``), the GEMMs' results (``buf2``); then the transformed
    output (``buf0`` again). The canvas's zero border is written once; a call copies only the pixels in.
    """

    def __init__(self, plan: WinogradPlan, N, C, O, dtype, device):
        a, m, P = plan.alpha, plan.m, plan.block_tiles
        empty = functools.partial(torch.empty, dtype=dtype, device=device)
        self.canvas = torch.zeros(N, *plan.canvas, C, dtype=dtype, device=device)
        self.buf0 = empty(max(a * a * P * C, m * m * P * O))
        self.buf1 = empty(max(a * a * P * C, m * a * P * O))
        self.buf2 = empty(a * a * P * O)
        self.out = empty(N, plan.tiles[0] * m, plan.tiles[1] * m, O)


_local = threading.local()
WORKSPACES = 8  # shapes whose buffers each thread keeps


def _workspace(key, make) -> _Workspace:
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = OrderedDict()
    ws = cache.get(key)
    if ws is None:
        ws = cache[key] = make()
        while len(cache) > WORKSPACES:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return ws


def clear_workspaces() -> None:
    """Free the buffers ``conv2d_winograd`` keeps between calls (in this thread)."""
    _local.cache = OrderedDict()


def _tiles(ws: _Workspace, plan: WinogradPlan, x: torch.Tensor, padding, groups):
    """Copy ``x`` onto the canvas (NHWC) and return the overlapping alpha x alpha tiles as a strided view.

    View shape N x Th x Tw x alpha x alpha x groups x C/g: tile (th, tw) starts at canvas pixel (th*m, tw*m).
    """
    N, C, H, W = x.shape
    (ph, pw), m, a = padding, plan.m, plan.alpha
    ws.canvas[:, ph : ph + H, pw : pw + W].copy_(x.permute(0, 2, 3, 1))
    s = ws.canvas.stride()
    (Th, Tw) = plan.tiles
    return ws.canvas.as_strided(
        (N, Th, Tw, a, a, groups, C // groups), (s[0], m * s[1], m * s[2], s[1], s[2], C // groups, 1)
    )


def _blocks(ws: _Workspace, plan: WinogradPlan, tiles, U, groups):
    """For each block of tiles: gather, B^T d B, the alpha^2 * g GEMMs, A^T (.) A, scatter into ``ws.out``."""
    a, m, Tw = plan.alpha, plan.m, plan.tiles[1]
    AT, _, BT = _matrices(m, 3, U.dtype, U.device)
    g, Cg, Og = groups, U.shape[1], U.shape[2]
    C, O = g * Cg, g * Og
    for n0, n1, t0, t1 in plan.blocks:
        nb, tb = n1 - n0, t1 - t0
        p = nb * tb * Tw
        d = ws.buf0[: a * a * p * C].view(a, a, g, nb, tb, Tw, Cg)
        d.copy_(tiles[n0:n1, t0:t1].permute(3, 4, 5, 0, 1, 2, 6))  # tile pixel (k, l) outermost
        v1 = ws.buf1[: a * a * p * C].view(a, a * p * C)
        torch.mm(BT, d.view(a, a * p * C), out=v1)  # B^T d: along the tile's rows
        v = ws.buf0[: a * a * p * C].view(a, a, p * C)
        torch.matmul(BT, v1.view(a, a, p * C), out=v)  # (B^T d) B: along its columns
        mo = ws.buf2[: a * a * p * O].view(a * a * g, p, Og)
        if Cg == 1 and Og == 1:  # depthwise: the products are 1 x 1
            torch.mul(v.view(a * a * g, p, 1), U, out=mo)
        else:
            torch.bmm(v.view(a * a * g, p, Cg), U, out=mo)  # alpha^2 * g GEMMs: (tiles x C/g) @ (C/g x O/g)
        y1 = ws.buf1[: m * a * p * O].view(m, a * p * O)
        torch.mm(AT, mo.view(a, a * p * O), out=y1)
        y = ws.buf0[: m * m * p * O].view(m, m, p * O)
        torch.matmul(AT, y1.view(m, a, p * O), out=y)  # A^T (.) A: m x m outputs per tile
        dst = ws.out[n0:n1, t0 * m : t1 * m].view(nb, tb, m, Tw, m, g, Og)
        dst.copy_(y.view(m, m, g, nb, tb, Tw, Og).permute(3, 4, 0, 5, 1, 2, 6))


def _check_winograd(a, m, cache, block_bytes):
    check_cache(cache)
    if block_bytes is not None and (
        not isinstance(block_bytes, int) or isinstance(block_bytes, bool) or block_bytes < 1
    ):
        raise ValueError(f"block_bytes must be a positive int or None, got {block_bytes!r}")
    kh, kw = a.kernel_size
    if (kh, kw) != (3, 3):
        raise ValueError(f"conv2d_winograd needs a 3x3 kernel, got {kh}x{kw} (use conv2d_fft or conv2d)")
    if a.stride != (1, 1):
        raise ValueError(f"conv2d_winograd needs stride 1, got stride={a.stride} (use conv2d)")
    if a.dilation != (1, 1):
        raise ValueError(f"conv2d_winograd needs dilation 1, got dilation={a.dilation} (use conv2d_fft or conv2d)")
    if not isinstance(m, int) or isinstance(m, bool) or not 1 <= m <= MAX_TILE:
        raise ValueError(
            f"m (the output tile size) must be an int from 1 to {MAX_TILE} (2, 4 or 6 in practice), got {m!r}"
        )
    if a.x.is_complex():
        raise TypeError(f"conv2d_winograd needs a real floating-point dtype, got {a.x.dtype}")


def _differentiable(x, U, plan: WinogradPlan, padding, groups):
    """The same algorithm with out-of-place operations, for autograd (one block, no workspace)."""
    N, C, H, W = x.shape
    (ph, pw), m, a, (Th, Tw), (Hp, Wp) = padding, plan.m, plan.alpha, plan.tiles, plan.canvas
    AT, _, BT = _matrices(m, 3, U.dtype, U.device)
    xp = torch.nn.functional.pad(x.permute(0, 2, 3, 1), (0, 0, pw, Wp - W - pw, ph, Hp - H - ph)).contiguous()
    s = xp.stride()
    tiles = xp.as_strided(
        (N, Th, Tw, a, a, groups, C // groups), (s[0], m * s[1], m * s[2], s[1], s[2], C // groups, 1)
    )
    V = torch.einsum("ak,bl,nhwklgc->abgnhwc", BT, BT, tiles).reshape(a * a * groups, N * Th * Tw, C // groups)
    M = torch.bmm(V, U).view(a, a, groups, N, Th, Tw, -1)
    Y = torch.einsum("ia,jb,abgnhwo->nhiwjgo", AT, AT, M)
    return Y.reshape(N, Th * m, Tw * m, -1)


def conv2d_winograd(
    x,
    weight,
    bias=None,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    *,
    m=4,
    cache=None,
    block_bytes=None,
    finite_check=True,
):
    """2-D convolution with Winograd's F(m x m, 3 x 3): alpha^2 batched GEMMs between two tile transforms.

    Same arguments and result as ``torch.nn.functional.conv2d`` for a 3x3 kernel with stride 1 and dilation 1
    (``padding`` an int, a pair, ``'same'`` or ``'valid'``; ``groups``; unbatched input; empty batch;
    a channels-last input or weight gives a channels-last result); other kernels, strides and dilations
    raise a ``ValueError`` naming the limit. Keyword-only options:

    * ``m``: the output tile is m x m (2, 4 or 6 in practice; alpha = m + 2): 9 m^2 / alpha^2 fewer
      multiplications than the direct sum (2.25x, 4x, 5.06x), and a float32 error that grows with m
      (:func:`convlib.costs.accuracy_table`).
    * ``cache``: a :class:`convlib.KernelCache` that keeps the kernel transform ``G g G^T`` between calls.
    * ``block_bytes``: about how many bytes of transformed input one block of tiles holds (default
      ``BLOCK_BYTES``).
    * ``finite_check``: with a NaN or an infinity in the input or weight, compute directly so that NaN and inf
      land where PyTorch puts them (the transforms would spread them over whole tiles); ``False`` skips the
      check (one reduction over the input).

    How: the input goes onto a zero-bordered channels-last canvas; each block of overlapping alpha x alpha
    tiles is gathered with tile pixel (k, l) outermost, transformed by two products with B^T (``B^T d B``),
    multiplied by the transformed kernel in alpha^2 * groups GEMMs (tiles x C/g) @ (C/g x O/g), transformed
    back by two products with A^T (``A^T . A``) and scattered into the output. Differentiable (autograd then
    runs the same algorithm with out-of-place operations).
    """
    a = conv2d_args(x, weight, bias, stride, padding, dilation, groups)
    _check_winograd(a, m, cache, block_bytes)
    if finite_check and not all_finite(a.x, a.weight):
        return direct_conv2d(x, weight, bias, stride, padding, dilation, groups)
    N, C, H, W = a.x.shape
    O, g = a.weight.shape[0], a.groups
    dtype = compute_dtype(a.x.dtype)
    xc, wc = a.x.to(dtype), a.weight.to(dtype)
    plan = winograd_plan(N, C, H, W, O, a.padding, g, m, xc.element_size(), block_bytes)
    Ho, Wo = a.output_hw
    if N == 0:
        return finish(a, xc.new_zeros(0, O, Ho, Wo), a.x.dtype)
    transform = lambda: winograd_kernel(wc, m, g).contiguous()  # noqa: E731
    U = cache.get(a.weight, ("winograd", m, g, dtype), transform) if cache is not None else transform()
    if torch.is_grad_enabled() and (xc.requires_grad or U.requires_grad):
        y = _differentiable(xc, U, plan, a.padding, g)
    else:
        key = (N, C, H, W, O, g, a.padding, m, plan.blocks, dtype, xc.device)
        ws = _workspace(key, lambda: _Workspace(plan, N, C, O, dtype, xc.device))
        _blocks(ws, plan, _tiles(ws, plan, xc, a.padding, g), U, g)
        y = ws.out
    return finish(a, y[:, :Ho, :Wo].permute(0, 3, 1, 2), a.x.dtype)
