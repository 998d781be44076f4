"""convlib.fft against PyTorch: the circulant matrix and its DFT factors, the FFT canvas, conv2d_fft."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import as_pair, check_conv, conv_configs
from hypothesis import given
from hypothesis import strategies as st
from test_core import BAD_CONV_CALLS, WT, X

import convlib
from convlib import fft

# float32 tolerance of conv2d_fft, relative to the largest output the inputs allow (max|x| * max_o sum|w_o|).
# Measured: 5000 configurations drawn from conftest's conv_configs gave at most 1.8e-7 (F.conv2d itself:
# 9.6e-8; float32's unit round-off is 6.0e-8), 3000 with 1-40 channels per group at most 1.5e-7; the
# tolerance leaves a factor 5.6.
FFT_TOL32 = 1e-6


def bound_scale(x, weight, bias=None):
    """The largest |output| the inputs allow: max|x| times the largest filter's sum of |weights|, plus max|bias|
    (a bias much larger than the products sets the output's size, and so its float32 rounding)."""
    scale = float(x.abs().max()) * float(weight.abs().sum((1, 2, 3)).max()) if x.numel() else 0.0
    return scale + (float(bias.abs().max()) if bias is not None and bias.numel() else 0.0)


def check_float32(conv, cfg, tol, **extra):
    """``conv`` in float32 within ``tol * bound_scale`` of F.conv2d in float64 on the same numbers; returns its
    result."""
    x, weight, bias, kw = cfg
    x, weight = x.float(), weight.float()
    bias = None if bias is None else bias.float()
    got = conv(x, weight, bias, **kw, **extra)
    expected = F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(), **kw)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    err = float((got.double() - expected).abs().max()) if got.numel() else 0.0
    assert err <= tol * max(bound_scale(x, weight, bias), 1e-30) + 1e-30, err
    return got


def circular_pad(x, sides):
    """Pad by wrapping around, by indexing: any amount (F.pad(mode='circular') wraps at most once)."""
    H, W = x.shape[-2:]
    rows = torch.arange(-sides.top, H + sides.bottom) % H
    cols = torch.arange(-sides.left, W + sides.right) % W
    return x[..., rows, :][..., cols]


def circular_reference(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """``nn.Conv2d(padding_mode='circular')``: pad by wrapping around, then F.conv2d without padding."""
    kernel = tuple(weight.shape[2:])
    sides = convlib.args.padding_sides(padding, kernel, as_pair(dilation), as_pair(stride))
    return F.conv2d(circular_pad(x, sides), weight, bias, stride, 0, dilation, groups)


@given(cfg=conv_configs(allow_same=True))
def test_circular_pad_by_indexing_is_F_pad_circular(cfg):
    x, weight, _, kw = cfg
    sides = convlib.args.padding_sides(kw["padding"], tuple(weight.shape[2:]), as_pair(kw["dilation"]))
    H, W = x.shape[-2:]
    if max(sides.top, sides.bottom) <= H and max(sides.left, sides.right) <= W:
        assert torch.equal(circular_pad(x, sides), F.pad(x, sides.lrtb, mode="circular"))


# ---------------------------------------------------------------- conv2d_fft equals F.conv2d


@given(cfg=conv_configs(allow_same=True))
def test_conv2d_fft_equals_F_conv2d(cfg):
    check_conv(fft.conv2d_fft, cfg, contiguous=True)


@given(cfg=conv_configs(allow_same=True))
def test_conv2d_fft_float32_within_measured_tolerance(cfg):
    check_float32(fft.conv2d_fft, cfg, FFT_TOL32)


@given(cfg=conv_configs(allow_same=True), fast_sizes=st.booleans())
def test_conv2d_fft_cached_spectra_and_canvas_sizes(cfg, fast_sizes):
    cache = convlib.KernelCache()
    check_conv(fft.conv2d_fft, cfg, cache=cache, fast_sizes=fast_sizes)
    check_conv(fft.conv2d_fft, cfg, cache=cache, fast_sizes=fast_sizes)
    assert (cache.misses, cache.hits) == (1, 1)


@given(cfg=conv_configs(max_groups=2, allow_same=True))
def test_conv2d_fft_unbatched_input(cfg):
    check_conv(fft.conv2d_fft, cfg, unbatched=True)


@given(cfg=conv_configs(allow_same=True))
def test_conv2d_fft_circular_padding_equals_padded_F_conv2d(cfg):
    check_conv(fft.conv2d_fft, cfg, reference=circular_reference, padding_mode="circular")


def test_conv2d_fft_circular_padding_wider_than_the_image():
    """More circular padding than the image is wide wraps around again (F.pad refuses; the FFT does not)."""
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    y = fft.conv2d_fft(x, w, padding=(6, 7), padding_mode="circular")
    torch.testing.assert_close(y, circular_reference(x, w, padding=(6, 7)))


def check_channels_last(conv, fmt_input, fmt_weight, kernel=(3, 2)):
    """A channels-last input or weight gives a channels-last result, as in PyTorch, with PyTorch's numbers."""
    x = torch.randn(2, 6, 9, 7, dtype=torch.float64)
    w = torch.randn(4, 3, *kernel, dtype=torch.float64)
    if fmt_input:
        x = x.contiguous(memory_format=torch.channels_last)
    if fmt_weight:
        w = w.contiguous(memory_format=torch.channels_last)
    y, expected = conv(x, w, groups=2, padding=1), F.conv2d(x, w, groups=2, padding=1)
    assert expected.is_contiguous(memory_format=torch.channels_last)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("fmt_input,fmt_weight", [(True, False), (False, True), (True, True)])
def test_conv2d_fft_channels_last_like_pytorch(fmt_input, fmt_weight):
    check_channels_last(fft.conv2d_fft, fmt_input, fmt_weight)


def test_conv2d_fft_empty_batch():
    x, w, b = torch.randn(0, 4, 6, 5), torch.randn(6, 2, 3, 3), torch.randn(6)
    y = fft.conv2d_fft(x, w, b, stride=2, padding=1, groups=2)
    expected = F.conv2d(x, w, b, stride=2, padding=1, groups=2)
    assert y.shape == expected.shape == (0, 6, 3, 3) and y.dtype == expected.dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_conv2d_fft_16_bit_floats_computed_in_float32(dtype):
    x, w, b = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3), torch.randn(4)
    y = fft.conv2d_fft(x.to(dtype), w.to(dtype), b.to(dtype), padding=1)
    expected = F.conv2d(x.to(dtype).float(), w.to(dtype).float(), b.to(dtype).float(), padding=1).to(dtype)
    assert y.dtype == dtype
    torch.testing.assert_close(y, expected)  # the float32 result rounded once: PyTorch's 16-bit tolerances


def test_conv2d_fft_gradients_equal_F_conv2d():
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    kw = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    grad = torch.randn_like(F.conv2d(x, w, b, **kw))
    cache = convlib.KernelCache()
    got = torch.autograd.grad(fft.conv2d_fft(x, w, b, **kw, cache=cache), (x, w, b), grad)
    expected = torch.autograd.grad(F.conv2d(x, w, b, **kw), (x, w, b), grad)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)
    assert len(cache) == 0  # a weight autograd records is never cached


# ---------------------------------------------------------------- NaN and infinity


def _with_nonfinite(dtype=torch.float64):
    x = torch.randn(3, 4, 9, 8, dtype=dtype)
    x[0, 1, 4, 0] = float("nan")
    x[1, 2, 6, 7] = float("inf")
    x[1, 0, 0, 3] = -float("inf")
    return x, torch.randn(5, 4, 3, 3, dtype=dtype)


def test_conv2d_fft_nan_and_inf_where_pytorch_puts_them():
    x, w = _with_nonfinite()
    for kw in (dict(padding=1), dict(padding="same", dilation=2), dict(stride=2)):
        torch.testing.assert_close(fft.conv2d_fft(x, w, **kw), F.conv2d(x, w, **kw), equal_nan=True)
    w_nan = w.clone()
    w_nan[2, 0, 1, 1] = float("nan")
    x_ok = torch.randn_like(x)
    torch.testing.assert_close(fft.conv2d_fft(x_ok, w_nan, padding=1), F.conv2d(x_ok, w_nan, padding=1), equal_nan=True)
    y = fft.conv2d_fft(x, w, padding=1, padding_mode="circular")
    torch.testing.assert_close(y, circular_reference(x, w, padding=1), equal_nan=True)


def test_conv2d_fft_without_the_check_spreads_nan_over_the_whole_image():
    """The transform mixes every pixel into every frequency: one NaN (or inf) makes the whole image's output
    NaN, in every out-channel, where PyTorch's NaN covers only the outputs that read it. Other images stay
    finite."""
    x, w = _with_nonfinite()
    y = fft.conv2d_fft(x, w, padding=1, finite_check=False)
    expected = F.conv2d(x, w, padding=1)
    assert bool(y[0].isnan().all()) and bool(y[1].isnan().all())  # inf - inf: NaN, not inf
    assert int(expected[0].isnan().sum()) < expected[0].numel()
    assert bool(torch.isfinite(y[2]).all())
    torch.testing.assert_close(y[2], expected[2])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("args,kwargs,exc,words", BAD_CONV_CALLS)
def test_conv2d_fft_bad_input_raises_clear_error(args, kwargs, exc, words):
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        fft.conv2d_fft(*args, **kwargs)


@pytest.mark.parametrize(
    "kwargs,exc,words",
    [
        (dict(padding_mode="reflect"), ValueError, "padding_mode must be one of"),
        (dict(cache={}), TypeError, "cache must be a convlib.KernelCache"),
    ],
)
def test_conv2d_fft_bad_options(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        fft.conv2d_fft(X, WT, **kwargs)


def test_conv2d_fft_complex_input_refused():
    with pytest.raises(TypeError, match="real floating-point dtype"):
        fft.conv2d_fft(X.to(torch.complex64), WT.to(torch.complex64))


# ---------------------------------------------------------------- the DFT diagonalises the circulant


@given(n=st.integers(1, 12), H=st.integers(1, 6), W=st.integers(1, 6))
def test_dft_matrices_are_torch_fft(n, H, W):
    x = torch.randn(n, dtype=torch.float64)
    torch.testing.assert_close(fft.dft_matrix(n) @ x.to(torch.complex128), torch.fft.fft(x))
    img = torch.randn(H, W, dtype=torch.float64)
    F2 = fft.dft2_matrix(H, W)
    torch.testing.assert_close(F2 @ img.flatten().to(torch.complex128), torch.fft.fft2(img).flatten())
    torch.testing.assert_close(torch.linalg.inv(F2), F2.conj().T / (H * W))  # F^-1 = F^H / n


@given(cfg=conv_configs(allow_same=True))
def test_circular_conv_matrix_times_image_is_circular_conv(cfg):
    x, weight, _, kw = cfg
    N, C, H, W = x.shape
    M = fft.circular_conv_matrix(weight, (C, H, W), **kw)
    expected = circular_reference(x, weight, **kw).reshape(N, -1)
    assert M.layout == torch.sparse_csr and M.shape == (expected.shape[1], C * H * W)
    torch.testing.assert_close(fft.circular_conv_matrix(weight, (C, H, W), **kw, sparse=False), M.to_dense())
    for n in range(N):
        torch.testing.assert_close(M @ x[n].flatten(), expected[n], rtol=1e-4, atol=1e-4)


def test_circular_conv_matrix_without_padding_is_conv_matrix():
    w = torch.randn(3, 2, 2, 3, dtype=torch.float64)
    M = fft.circular_conv_matrix(w, (2, 5, 6), padding=0, sparse=False)
    torch.testing.assert_close(M, convlib.conv_matrix(w, (2, 5, 6), sparse=False))


@given(
    H=st.integers(1, 7),
    W=st.integers(1, 7),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    d=st.integers(1, 2),
    seed=st.integers(0, 2**31 - 1),
)
def test_circulant_is_diagonalised_by_the_dft(H, W, kh, kw, d, seed):
    """M = F^-1 diag(lambda) F, lambda = fft2 of the flipped, rolled kernel; M is doubly block circulant."""
    K = torch.randn(1, 1, kh, kw, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    M = fft.circular_conv_matrix(K, (H, W), padding="same", dilation=d, sparse=False).to(torch.complex128)
    lam = fft.circulant_eigenvalues(K, (H, W), dilation=d)
    F2 = fft.dft2_matrix(H, W)
    torch.testing.assert_close(torch.linalg.inv(F2) @ torch.diag(lam.flatten()) @ F2, M)
    torch.testing.assert_close(F2 @ M @ torch.linalg.inv(F2), torch.diag(lam.flatten()))
    # doubly block circulant: entry ((i, j), (r, q)) depends only on ((r - i) mod H, (q - j) mod W)
    i, j, r, q = torch.meshgrid(*(torch.arange(n) for n in (H, W, H, W)), indexing="ij")
    first = M.reshape(H, W, H, W)[0, 0]  # row (0, 0)
    torch.testing.assert_close(M.reshape(H, W, H, W), first[(r - i) % H, (q - j) % W])


@given(H=st.integers(1, 8), W=st.integers(1, 8), k=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_eigenvalues_are_conjugate_kernel_spectrum_times_the_padding_phase(H, W, k, seed):
    """For a real kernel: lambda[f] = exp(-2 pi i (f1 top / H + f2 left / W)) * conj(fft2(zero-padded K)[f])."""
    if k > max(H, W) + 2:
        return
    K = torch.randn(1, 1, k, k, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    lam = fft.circulant_eigenvalues(K, (H, W))[0, 0]
    top = left = (k - 1) // 2
    padded = torch.zeros(H, W, dtype=torch.float64)
    for u in range(k):  # fold the taps onto the canvas (a kernel larger than the image wraps)
        for v in range(k):
            padded[u % H, v % W] += K[0, 0, u, v]
    f1, f2 = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    phase = torch.polar(torch.ones(H, W, dtype=torch.float64), -2 * math.pi * (f1 * top / H + f2 * left / W))
    torch.testing.assert_close(lam, phase * torch.fft.fft2(padded).conj())


@given(cfg=conv_configs(max_groups=2))
def test_circulant_factors_and_per_frequency_matrices(cfg):
    """M = (I (x) F^-1) Lambda (I (x) F); at each frequency the layer is K_hat[f] (O x C) @ X_hat[f] (C x N)."""
    x, weight, _, kw = cfg
    N, C, H, W = x.shape
    g, d = kw["groups"], kw["dilation"]
    if H * W > 60:
        return
    factors = fft.circulant_factors(weight, (C, H, W), dilation=d, groups=g)
    M = fft.circular_conv_matrix(weight, (C, H, W), dilation=d, groups=g, sparse=False)
    torch.testing.assert_close(factors.F_inv @ factors.Lambda @ factors.F, M.to(factors.F.dtype))
    K_hat = fft.frequency_matrices(weight, (H, W), dilation=d, groups=g)  # H x W x O x C
    X_hat = torch.fft.fft2(x).permute(2, 3, 1, 0)  # H x W x C x N
    y = torch.fft.ifft2((K_hat @ X_hat).permute(3, 2, 0, 1)).real
    torch.testing.assert_close(y, circular_reference(x, weight, padding="same", dilation=d, groups=g))


def test_circulant_needs_an_output_as_large_as_the_input():
    with pytest.raises(ValueError, match="circulant only when the output is as large as the input"):
        fft.circulant_eigenvalues(torch.randn(1, 1, 3, 3), (5, 5), padding=0)


# ---------------------------------------------------------------- the canvas: zero padding as circular padding


def _on_canvas(x, weight, canvas, offset, dilation):
    """Circular cross-correlation of ``x`` (zero-extended to ``canvas``) by the convolution theorem."""
    h = fft.kernel_canvas(weight, canvas, offset, dilation)
    return torch.fft.irfft2(
        (torch.fft.rfft2(h)[None] * torch.fft.rfft2(x, s=canvas)[:, None]).sum(2), s=canvas
    )  # N x O x Lh x Lw (groups=1)


@given(cfg=conv_configs(max_groups=1, allow_same=True))
def test_fft_canvas_makes_circular_padding_zero_padding(cfg):
    x, weight, _, kw = cfg
    H, W = x.shape[-2:]
    kernel = tuple(weight.shape[2:])
    canvas = fft.fft_canvas((H, W), kernel, kw["stride"], kw["padding"], kw["dilation"])
    sides = convlib.args.padding_sides(kw["padding"], kernel, as_pair(kw["dilation"]), as_pair(kw["stride"]))
    assert canvas[0] >= H + max(sides.top, sides.bottom) and canvas[1] >= W + max(sides.left, sides.right)
    y = _on_canvas(x, weight, canvas, (sides.top, sides.left), kw["dilation"])
    expected = F.conv2d(x, weight, **kw)
    (sh, sw), (Ho, Wo) = as_pair(kw["stride"]), expected.shape[-2:]
    torch.testing.assert_close(
        y[:, :, : (Ho - 1) * sh + 1 : sh, : (Wo - 1) * sw + 1 : sw], expected, rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("n,k,padding", [(8, 3, 1), (9, 5, 2), (7, 3, 0), (6, 4, "same"), (10, 7, 3)])
def test_fft_canvas_is_the_smallest(n, k, padding):
    """One row fewer and a wrapped-around pixel lands on an output: the canvas is minimal for dense kernels."""
    x = torch.randn(1, 1, n, n, dtype=torch.float64)
    w = torch.randn(1, 1, k, k, dtype=torch.float64)
    (L, _) = fft.fft_canvas(n, k, padding=padding)
    sides = convlib.args.padding_sides(padding, (k, k))
    assert L == n + max(sides.top, sides.bottom)
    Ho = F.conv2d(x, w, padding=padding).shape[-1]
    assert not torch.allclose(
        _on_canvas(x, w, (L - 1, L), (sides.top, sides.left), 1)[..., :Ho, :Ho], F.conv2d(x, w, padding=padding)
    )


def test_fft_canvas_and_length_values():
    assert fft.fft_canvas(224, 5, padding="same") == (226, 226)  # not the 224 + 5 - 1 of a full convolution
    assert fft.fft_canvas((20, 20), 7, padding=3) == (23, 23)
    assert fft.fft_canvas((32, 30), 5) == (32, 30)  # 'valid': the image itself
    assert fft.fft_canvas(10, 1, stride=3, padding=9) == (28, 28)  # padding beyond the kernel's reach: Ho = 10
    assert [fft.fft_length(n) for n in (1, 11, 13, 17, 23, 226, 97)] == [1, 12, 14, 18, 24, 240, 98]
    with pytest.raises(ValueError, match="n must be a positive int"):
        fft.fft_length(0)


@given(n=st.integers(1, 3000))
def test_fft_length_is_the_next_7_smooth_number(n):
    def smooth(m):
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        return m == 1

    L = fft.fft_length(n)
    assert L >= n and smooth(L) and not any(smooth(m) for m in range(n, L))


def test_fft_plan_shapes():
    plan = fft.fft_plan((16, 48, 20, 20), (48, 48, 7, 7), padding=3)
    assert plan.min_canvas == (23, 23) and plan.canvas == (24, 24)
    assert plan.frequencies == 24 * 13 and plan.gemm == (24 * 13, 48, 48, 16)
    assert fft.fft_plan((1, 4, 6, 6), (4, 2, 3, 3), groups=2, padding_mode="circular").canvas == (6, 6)


def test_kernel_canvas_flips_and_rolls():
    K = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    h = fft.kernel_canvas(K, (4, 5), offset=(1, 1))[0, 0]
    # tap (u, v) goes to ((1 - u) % 4, (1 - v) % 5): the centre tap at (0, 0), the kernel flipped around it
    expected = torch.zeros(4, 5)
    for u in range(3):
        for v in range(3):
            expected[(1 - u) % 4, (1 - v) % 5] = K[0, 0, u, v]
    assert torch.equal(h, expected)
    assert h[0, 0] == 5 and h[1, 1] == 1 and h[3, 4] == 9


@given(cfg=conv_configs(allow_same=True), circular=st.booleans())
def test_pruned_kernel_spectrum_equals_the_full_transform(cfg, circular):
    """The kernel's spectrum from its own rows and a phase equals rfft2 of the kernel canvas (wrapped or not)."""
    x, weight, _, kw = cfg
    g = kw["groups"]
    mode = "circular" if circular else "zeros"
    plan = fft.fft_plan(tuple(x.shape), tuple(weight.shape), **kw, padding_mode=mode)
    d = as_pair(kw["dilation"])
    full = torch.fft.rfft2(fft.kernel_canvas(weight, plan.canvas, plan.offset, d)).permute(2, 3, 0, 1)
    O, Cg = weight.shape[:2]
    expected = full.reshape(plan.frequencies, g, O // g, Cg)
    torch.testing.assert_close(fft._spectrum(weight, plan, d, g), expected, rtol=1e-4, atol=1e-4)
