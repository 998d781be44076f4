"""convlib.winograd: Toom-Cook matrices in exact rationals, the nested 2-D algorithm, conv2d_winograd."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from conftest import check_conv, int_or_pair
from hypothesis import given, settings
from hypothesis import strategies as st
from test_core import BAD_CONV_CALLS, WT, X
from test_fft import check_channels_last, check_float32

import convlib
from convlib import winograd as wg

# float32 tolerance of conv2d_winograd per tile size m, relative to the largest output the inputs allow
# (max|x| * max_o sum|w_o|, as for the FFT). Measured: 5000 configurations drawn from winograd_configs below
# gave at most 1.3e-7 (m=2), 3.0e-6 (m=4), 7.8e-6 (m=6), F.conv2d itself 8.4e-8; the worst are layers with
# one or two channels (few products to average the transforms' rounding over) and wide padding. Each
# tolerance leaves a factor of 3 to 4.
WINOGRAD_TOL32 = {2: 5e-7, 4: 1e-5, 6: 2.5e-5}

Fr = Fraction
# Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016), F(2, 3) and F(4, 3)
LAVIN_F23 = dict(
    AT=((1, 1, 1, 0), (0, 1, -1, -1)),
    G=((1, 0, 0), (Fr(1, 2), Fr(1, 2), Fr(1, 2)), (Fr(1, 2), Fr(-1, 2), Fr(1, 2)), (0, 0, 1)),
    BT=((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
)
LAVIN_F43 = dict(
    AT=((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
    G=(
        (Fr(1, 4), 0, 0),
        (Fr(-1, 6), Fr(-1, 6), Fr(-1, 6)),
        (Fr(-1, 6), Fr(1, 6), Fr(-1, 6)),
        (Fr(1, 24), Fr(1, 12), Fr(1, 6)),
        (Fr(1, 24), Fr(-1, 12), Fr(1, 6)),
        (0, 0, 1),
    ),
    BT=(
        (4, 0, -5, 0, 1, 0),
        (0, -4, -4, 1, 1, 0),
        (0, 4, -4, -1, 1, 0),
        (0, -2, -1, 2, 1, 0),
        (0, 2, -1, -2, 1, 0),
        (0, 4, 0, -5, 0, 1),
    ),
)


def _published(m, matrices):
    as_frac = lambda M: tuple(tuple(Fraction(v) for v in row) for row in M)  # noqa: E731
    points = wg.interpolation_points(m)
    return wg.ToomCook(m=m, r=3, points=points, **{k: as_frac(v) for k, v in matrices.items()})


# ---------------------------------------------------------------- Toom-Cook in exact rationals


@pytest.mark.parametrize("m,published", [(2, LAVIN_F23), (4, LAVIN_F43)])
def test_toom_cook_is_the_published_algorithm(m, published):
    """Same rank-one terms A^T[:, i] (x) G[i] (x) B^T[i]: the published matrices up to the free row scaling.

    Lavin & Gray's and ours differ only in how each term's factor is split between A^T, G and B^T (signs of
    the point at infinity's row, and for F(4, 3) the sign of half the rows); the terms, the algorithm, agree.
    """
    ours, theirs = wg.toom_cook(m), _published(m, published)
    assert ours.points == tuple(Fraction(p) for p in (0, 1, -1, 2, -2)[: m + 1]) + (math.inf,)
    assert ours.terms() == theirs.terms()
    assert theirs.correlation() == ours.correlation()
    # with B^T's rows scaled to coprime integers, G's rows are published G's up to sign
    for g_ours, g_theirs in zip(ours.G, theirs.G):
        assert g_ours in (g_theirs, tuple(-v for v in g_theirs))
    assert all(v.denominator == 1 for row in ours.BT for v in row)


@pytest.mark.parametrize("r", [2, 3, 4, 5])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6, 7, 8])
def test_toom_cook_computes_the_correlation_exactly(m, r):
    """sum_i A^T[j, i] G[i, u] B^T[i, k] = 1 where k = j + u, else 0: y_j = sum_u g_u d_(j+u), exactly."""
    if m + r - 2 > 13:
        return
    tc = wg.toom_cook(m, r)
    assert tc.correlation() == tuple(
        tuple(tuple(Fraction(int(k == j + u)) for k in range(m + r - 1)) for u in range(r)) for j in range(m)
    )
    assert len(tc.AT) == m and len(tc.AT[0]) == len(tc.G) == len(tc.BT) == m + r - 1 and len(tc.G[0]) == r


@settings(max_examples=40)  # exact rational arithmetic: ~0.1 s per example; the grid above covers the rest
@given(
    points=st.lists(
        st.sampled_from([Fraction(n, d) for n in range(-5, 6) for d in (1, 2, 3, 4)]),
        min_size=3,
        max_size=6,
        unique=True,
    ),
    infinity=st.booleans(),
    r=st.integers(1, 3),
)
def test_any_distinct_points_give_an_exact_algorithm(points, infinity, r):
    points = points + [math.inf] if infinity else points
    m = len(points) - r + 1
    if m < 1:
        return
    tc = wg.toom_cook(m, r, points)
    raw = wg.toom_cook(m, r, points, integer_BT=False)
    assert tc.terms() == raw.terms()  # the integer scaling of B^T's rows changes nothing
    assert all(
        tc.correlation()[j][u][k] == (k == j + u) for j in range(m) for u in range(r) for k in range(len(points))
    )
    assert wg.amplification(tc) == wg.amplification(raw)


def test_toom_cook_bad_arguments():
    with pytest.raises(ValueError, match="needs alpha = m \\+ r - 1 = 4 points, got 3"):
        wg.toom_cook(2, 3, [0, 1, -1])
    with pytest.raises(ValueError, match="must be distinct"):
        wg.toom_cook(2, 3, [0, 1, 1, math.inf])
    with pytest.raises(ValueError, match="must be distinct"):
        wg.toom_cook(2, 3, [0, 1, math.inf, math.inf])
    with pytest.raises(TypeError, match="interpolation point must be"):
        wg.toom_cook(2, 3, [0, 1, -1, None])
    with pytest.raises(ValueError, match="m must be a positive int"):
        wg.toom_cook(0, 3)
    with pytest.raises(ValueError, match="r must be a positive int"):
        wg.toom_cook(2, 2.0)
    with pytest.raises(ValueError, match="default points cover"):
        wg.toom_cook(20, 3)


# ---------------------------------------------------------------- one tile


@pytest.mark.parametrize("m", [2, 3, 4, 6])
def test_winograd_1d_and_2d_on_one_tile(m):
    gen = torch.Generator().manual_seed(m)
    tc = wg.toom_cook(m)
    d, g = torch.randn(m + 2, dtype=torch.float64, generator=gen), torch.randn(3, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(wg.winograd_1d(d, g, tc), F.conv1d(d[None, None], g[None, None])[0, 0])
    torch.testing.assert_close(wg.winograd_1d(d, g), F.conv1d(d[None, None], g[None, None])[0, 0])
    D, G = torch.randn(m + 2, m + 2, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
    torch.testing.assert_close(wg.winograd_2d(D, G, tc), F.conv2d(D[None, None], G[None, None])[0, 0])
    with pytest.raises(ValueError, match="needs a"):
        wg.winograd_2d(D[:-1], G, tc)
    with pytest.raises(ValueError, match="needs"):
        wg.winograd_1d(d[:-1], g, tc)


@pytest.mark.parametrize("m,r", [(2, 3), (4, 3), (3, 2), (6, 3)])
def test_polynomial_product_is_the_full_convolution(m, r):
    """The same three matrices multiply polynomials: B [(A a) . (G g)] = a * g (transposition principle)."""
    a, g = torch.randn(m, dtype=torch.float64), torch.randn(r, dtype=torch.float64)
    full = F.conv1d(a[None, None], g.flip(0)[None, None], padding=r - 1)[0, 0]  # a(x) g(x)'s coefficients
    torch.testing.assert_close(wg.polynomial_product(a, g, wg.toom_cook(m, r)), full)
    torch.testing.assert_close(wg.polynomial_product(a, g), full)


def test_multiplications_per_output():
    assert wg.multiplications(2) == (9, 4, Fraction(9, 4))  # F(2x2, 3x3): 16 products for 4 outputs
    assert wg.multiplications(4) == (9, Fraction(9, 4), 4)  # F(4x4, 3x3): 36 for 16
    assert wg.multiplications(6).ratio == Fraction(81, 16)
    assert wg.multiplications(2, dims=1) == (3, 2, Fraction(3, 2))
    assert wg.multiplications(4, 5, dims=1).ratio == Fraction(20, 8)
    with pytest.raises(ValueError, match="dims must be 1 or 2"):
        wg.multiplications(2, dims=3)


def test_transform_growth_explains_where_libraries_stop():
    rows = {row["m"]: row for row in wg.transform_growth(range(2, 9))}
    amp = [rows[m]["amplification_1d"] for m in range(2, 9)]
    assert amp == sorted(amp)  # never better with larger tiles
    assert rows[8]["amplification_2d"] > 100 * rows[4]["amplification_2d"]  # points beyond +-2, +-1/2
    assert rows[4]["max_AT"] == 8 and rows[6]["max_AT"] == 32 and rows[8]["max_AT"] == 3**7  # p^(m-1)
    assert rows[2]["amplification_2d"] == pytest.approx(rows[2]["amplification_1d"] ** 2)


def test_winograd_kernel_layout():
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    U = wg.winograd_kernel(w, m=2, groups=3)  # 16 * 3 matrices of 2 x 2
    _, G, _ = wg.toom_cook(2).tensors()
    full = G @ w @ G.T  # 6 x 2 x 4 x 4
    assert U.shape == (16 * 3, 2, 2)
    for xi, nu, gamma, c, o in [(0, 0, 0, 0, 0), (1, 3, 2, 1, 0), (3, 2, 1, 0, 1)]:
        assert U[(xi * 4 + nu) * 3 + gamma, c, o] == full[gamma * 2 + o, c, xi, nu]


@given(
    N=st.integers(0, 4), H=st.integers(1, 40), W=st.integers(1, 40), m=st.sampled_from([2, 4, 6]), kb=st.integers(1, 64)
)
def test_winograd_plan_blocks_cover_every_tile_once(N, H, W, m, kb):
    plan = wg.winograd_plan(N, 8, H + 2, W + 2, 8, (0, 0), 1, m, block_bytes=kb * 1024)
    Th, Tw = plan.tiles
    assert Th == -(-H // m) and Tw == -(-W // m) and plan.canvas == (Th * m + 2, Tw * m + 2)
    covered = [(n, t) for n0, n1, t0, t1 in plan.blocks for n in range(n0, n1) for t in range(t0, t1)]
    assert sorted(covered) == [(n, t) for n in range(N) for t in range(Th)]


# ---------------------------------------------------------------- conv2d_winograd equals F.conv2d


@st.composite
def winograd_configs(draw, max_groups=3, dtypes=(torch.float32, torch.float64)):
    """A random valid 3x3, stride-1, undilated F.conv2d configuration: tensors plus keyword arguments."""
    dtype = draw(st.sampled_from(dtypes))
    g = draw(st.integers(1, max_groups))
    N, C, O = draw(st.integers(1, 3)), g * draw(st.integers(1, 4)), g * draw(st.integers(1, 4))
    padding = draw(st.one_of(int_or_pair(st.integers(0, 3)), st.sampled_from(["same", "valid"])))
    ph, pw = (0, 0) if isinstance(padding, str) else (padding if isinstance(padding, tuple) else (padding,) * 2)
    H = max(1, 3 - 2 * ph) + draw(st.integers(0, 14))
    W = max(1, 3 - 2 * pw) + draw(st.integers(0, 14))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.randn(N, C, H, W, generator=gen, dtype=dtype)
    weight = torch.randn(O, C // g, 3, 3, generator=gen, dtype=dtype)
    bias = torch.randn(O, generator=gen, dtype=dtype) if draw(st.booleans()) else None
    return x, weight, bias, dict(stride=1, padding=padding, dilation=1, groups=g)


def check_winograd(cfg, m=4, unbatched=False, **extra):
    """conv2d_winograd against F.conv2d: in float64 to round-off (contiguous, PyTorch's shape and dtype), in
    float32 within the tolerance measured for its tile size (larger tiles round more: see WINOGRAD_TOL32)."""
    x, weight, bias, kw = cfg
    if unbatched:
        x = x[0]
    if x.dtype == torch.float32:
        assert check_float32(wg.conv2d_winograd, (x, weight, bias, kw), WINOGRAD_TOL32[m], m=m, **extra).is_contiguous()
    else:
        check_conv(wg.conv2d_winograd, (x, weight, bias, kw), contiguous=True, m=m, **extra)


@given(cfg=winograd_configs(), m=st.sampled_from([2, 4, 6]))
def test_conv2d_winograd_equals_F_conv2d(cfg, m):
    check_winograd(cfg, m)


@given(cfg=winograd_configs(dtypes=(torch.float32,)), m=st.sampled_from([2, 4, 6]))
def test_conv2d_winograd_float32_within_measured_tolerance(cfg, m):
    check_float32(wg.conv2d_winograd, cfg, WINOGRAD_TOL32[m], m=m)


@given(cfg=winograd_configs(), m=st.sampled_from([1, 3, 5, 8]))
def test_conv2d_winograd_any_tile_size(cfg, m):
    x, *_ = cfg
    if x.dtype == torch.float64:
        check_conv(wg.conv2d_winograd, cfg, m=m)


@given(cfg=winograd_configs(), block_bytes=st.integers(1, 50_000))
def test_conv2d_winograd_any_blocks(cfg, block_bytes):
    """Blocks of one tile row up to whole batches."""
    check_winograd(cfg, block_bytes=block_bytes)


@given(cfg=winograd_configs(max_groups=2))
def test_conv2d_winograd_unbatched_input(cfg):
    check_winograd(cfg, unbatched=True)


def test_conv2d_winograd_depthwise():
    x, w = torch.randn(2, 8, 11, 9, dtype=torch.float64), torch.randn(8, 1, 3, 3, dtype=torch.float64)
    for m in (2, 4):
        torch.testing.assert_close(
            wg.conv2d_winograd(x, w, groups=8, padding=1, m=m), F.conv2d(x, w, groups=8, padding=1)
        )
    w2 = torch.randn(16, 1, 3, 3, dtype=torch.float64)  # depthwise with a multiplier of 2
    torch.testing.assert_close(wg.conv2d_winograd(x, w2, groups=8), F.conv2d(x, w2, groups=8))


@given(cfg=winograd_configs(max_groups=2))
def test_conv2d_winograd_cache(cfg):
    x, w, b, kw = cfg
    cache = convlib.KernelCache()
    check_winograd(cfg, cache=cache)
    check_winograd(cfg, cache=cache)
    check_winograd(cfg, cache=cache, m=2)  # another tile size: another transform
    assert (cache.misses, cache.hits, len(cache)) == (2, 1, 2)
    with torch.no_grad():
        w.mul_(-2)  # in place: a new _version, so transformed afresh
    check_winograd((x, w, b, kw), cache=cache)
    assert cache.misses == 3


def test_kernel_cache_identity_version_and_uncacheable_weights():
    x, w = torch.randn(1, 4, 6, 6), torch.randn(2, 4, 3, 3)
    cache = convlib.KernelCache(maxsize=2)
    y = convlib.conv2d_fft(x, w, padding=1, cache=cache)
    w[0, 0, 0, 0] = 5.0  # in place through indexing: _version changes
    torch.testing.assert_close(
        convlib.conv2d_fft(x, w, padding=1, cache=cache), F.conv2d(x, w, padding=1), rtol=1e-4, atol=1e-4
    )
    assert not torch.allclose(y, F.conv2d(x, w, padding=1))
    convlib.conv2d_fft(x, w.clone(), padding=1, cache=cache)  # another tensor with equal values: a miss
    assert (cache.misses, cache.hits, len(cache)) == (3, 0, 2)  # maxsize 2: the oldest entry dropped
    with torch.inference_mode():
        wi = torch.randn(2, 4, 3, 3)
        convlib.conv2d_fft(x, wi, padding=1, cache=cache)  # an inference tensor has no version: not cached
    wg_ = torch.randn(2, 4, 3, 3, requires_grad=True)
    convlib.conv2d_winograd(x, wg_, padding=1, cache=cache)
    assert cache.misses == 3
    with torch.no_grad():
        convlib.conv2d_winograd(x, wg_, padding=1, cache=cache)  # under no_grad it is cached
    assert cache.misses == 4
    cache.clear()
    assert len(cache) == 0 and "KernelCache(0 of 2" in repr(cache)
    with pytest.raises(ValueError, match="maxsize must be a positive int"):
        convlib.KernelCache(0)


@pytest.mark.parametrize("fmt_input,fmt_weight", [(True, False), (False, True), (True, True)])
def test_conv2d_winograd_channels_last_like_pytorch(fmt_input, fmt_weight):
    check_channels_last(wg.conv2d_winograd, fmt_input, fmt_weight, kernel=(3, 3))


def test_conv2d_winograd_empty_batch():
    x, w, b = torch.randn(0, 4, 6, 5), torch.randn(6, 2, 3, 3), torch.randn(6)
    y = wg.conv2d_winograd(x, w, b, padding=1, groups=2)
    expected = F.conv2d(x, w, b, padding=1, groups=2)
    assert y.shape == expected.shape == (0, 6, 6, 5) and y.dtype == expected.dtype


def test_conv2d_winograd_gradients_equal_F_conv2d():
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    kw = dict(padding=(1, 2), groups=2)
    grad = torch.randn_like(F.conv2d(x, w, b, **kw))
    got = torch.autograd.grad(wg.conv2d_winograd(x, w, b, **kw), (x, w, b), grad)
    expected = torch.autograd.grad(F.conv2d(x, w, b, **kw), (x, w, b), grad)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_conv2d_winograd_16_bit_floats_computed_in_float32(dtype):
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    y = wg.conv2d_winograd(x.to(dtype), w.to(dtype), padding=1)
    assert y.dtype == dtype
    torch.testing.assert_close(y, F.conv2d(x.to(dtype).float(), w.to(dtype).float(), padding=1).to(dtype))


# ---------------------------------------------------------------- NaN and infinity


def test_conv2d_winograd_nan_and_inf_where_pytorch_puts_them():
    x = torch.randn(2, 4, 10, 9, dtype=torch.float64)
    x[0, 1, 4, 0], x[1, 2, 6, 7], x[1, 0, 0, 3] = float("nan"), float("inf"), -float("inf")
    w = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    for m in (2, 4, 6):
        torch.testing.assert_close(wg.conv2d_winograd(x, w, padding=1, m=m), F.conv2d(x, w, padding=1), equal_nan=True)


@pytest.mark.parametrize("m", [2, 4, 6])
def test_conv2d_winograd_without_the_check_spreads_nan_over_whole_tiles(m):
    """A NaN makes NaN every output of every tile whose alpha x alpha input tile holds it (all out-channels),
    and nothing else: a superset of PyTorch's NaN, which covers the outputs whose 3x3 window reads it."""
    H, W, (r, q) = 13, 11, (6, 4)
    x = torch.randn(2, 3, H, W, dtype=torch.float64)
    x[1, 2, r, q] = float("nan")
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    y = wg.conv2d_winograd(x, w, padding=1, m=m, finite_check=False)
    expected_nan = torch.zeros(H, W, dtype=torch.bool)
    for th in range(-(-H // m)):
        for tw in range(-(-W // m)):
            if th * m <= r + 1 < th * m + m + 2 and tw * m <= q + 1 < tw * m + m + 2:  # padded coordinates
                expected_nan[th * m : th * m + m, tw * m : tw * m + m] = True
    assert torch.equal(y[1].isnan(), expected_nan.expand(4, H, W))
    assert bool(torch.isfinite(y[0]).all())
    pytorch_nan = F.conv2d(x, w, padding=1)[1].isnan()
    assert bool((y[1].isnan() | ~pytorch_nan).all()) and int(y[1].isnan().sum()) > int(pytorch_nan.sum())


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("args,kwargs,exc,words", BAD_CONV_CALLS)
def test_conv2d_winograd_bad_input_raises_clear_error(args, kwargs, exc, words):
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        wg.conv2d_winograd(*args, **kwargs)


@pytest.mark.parametrize(
    "args,kwargs,exc,words",
    [
        ((X, torch.randn(2, 4, 5, 5)), {}, ValueError, "needs a 3x3 kernel, got 5x5"),
        ((X, torch.randn(2, 4, 3, 1)), {}, ValueError, "needs a 3x3 kernel, got 3x1"),
        ((X, WT), {"stride": 2}, ValueError, "needs stride 1, got stride=\\(2, 2\\)"),
        ((X, WT), {"dilation": (1, 2)}, ValueError, "needs dilation 1"),
        ((X, WT), {"m": 0}, ValueError, "m \\(the output tile size\\) must be an int"),
        ((X, WT), {"m": 4.0}, ValueError, "m \\(the output tile size\\) must be an int"),
        ((X, WT), {"m": 40}, ValueError, "from 1 to 12"),
        ((X, WT), {"cache": "yes"}, TypeError, "cache must be a convlib.KernelCache"),
        ((X, WT), {"block_bytes": 0}, ValueError, "block_bytes must be a positive int"),
        ((X.to(torch.complex64), WT.to(torch.complex64)), {}, TypeError, "real floating-point dtype"),
    ],
)
def test_conv2d_winograd_limits(args, kwargs, exc, words):
    with pytest.raises(exc, match=words):
        wg.conv2d_winograd(*args, **kwargs)
