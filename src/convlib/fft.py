"""The convolution theorem: the Fourier transform diagonalises the convolution matrix.

With *circular* padding (the image wraps around: ``nn.Conv2d(padding_mode='circular')``) and an output as large
as the input, the matrix M of one in-channel and one out-channel is doubly block circulant: an H x H grid of
W x W circulant blocks, itself circulant. Every such matrix is diagonalised by the 2-D DFT matrix
``F = F_H (x) F_W`` (:func:`dft2_matrix`):

    M = F^-1 diag(lambda) F,    lambda = fft2(h)

where ``h`` is M's first column: the kernel laid on an H x W canvas *flipped* (M computes a cross-correlation,
the DFT diagonalises convolutions) and *rolled* so that the tap that reads pixel (i, j) for output (i, j) sits
at (0, 0) (:func:`kernel_canvas`). For real kernels ``lambda`` is also the complex conjugate of the DFT of the
zero-padded kernel, rotated by the padding offset. With C in- and O out-channels, M is an O x C grid of such
blocks, and ``M = (I_O (x) F^-1) Lambda (I_C (x) F)`` (:func:`circulant_factors`); permuting Lambda's rows and
columns by frequency makes it block diagonal: at each frequency the layer is one O x C matrix
(:func:`frequency_matrices`) times the C x N matrix of the images' spectra. The whole layer is H*W small matrix
products between two transforms.

**Zero padding** is circular padding on a canvas with enough zeros: an output then never reads a pixel that
wrapped around (:func:`fft_canvas`: ``n + max(top, bottom)`` per axis, not the ``n + k - 1`` of a full
linear convolution, because the zeros on one side serve as the padding of the other). :func:`conv2d_fft`
computes ``F.conv2d`` this way with real FFTs (``torch.fft.rfft2``): transform the input, one batched complex
matrix product per frequency, transform back, keep (every s-th) wanted output.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .args import check_fits, conv2d_args, is_int, output_hw, padding_sides, pair
from .toeplitz import _geometry, conv_matrix
from .transformed import all_finite, check_cache, compute_dtype, direct_conv2d, finish

__all__ = [
    "dft_matrix",
    "dft2_matrix",
    "circular_conv_matrix",
    "kernel_canvas",
    "circulant_eigenvalues",
    "CirculantFactors",
    "circulant_factors",
    "frequency_matrices",
    "fft_canvas",
    "fft_length",
    "fft_plan",
    "FFTPlan",
    "conv2d_fft",
]

PADDING_MODES = ("zeros", "circular")


# ---------------------------------------------------------------- the DFT and the circulant


def dft_matrix(n: int, dtype=torch.complex128, device=None) -> torch.Tensor:
    """The n x n DFT matrix ``F[f, r] = exp(-2 pi i f r / n)``: ``F @ x == torch.fft.fft(x)``; ``F^-1 = F^H / n``."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    k = torch.arange(n, dtype=torch.float64, device=device)
    angle = (-2 * math.pi / n) * torch.remainder(k[:, None] * k[None, :], n)  # f*r mod n: exact angles
    return torch.polar(torch.ones_like(angle), angle).to(dtype)


def dft2_matrix(H: int, W: int, dtype=torch.complex128, device=None) -> torch.Tensor:
    """The HW x HW 2-D DFT matrix ``F_H (x) F_W``: ``F @ x.flatten() == torch.fft.fft2(x).flatten()``."""
    return torch.kron(dft_matrix(H, dtype, device), dft_matrix(W, dtype, device))


def circular_conv_matrix(weight, input_size, stride=1, padding="same", dilation=1, groups=1, sparse=True):
    """The matrix M of the convolution with *circular* padding (``nn.Conv2d(..., padding_mode='circular')``).

    Same arguments as :func:`convlib.conv_matrix` (padding per side, an int, a pair, ``'same'`` or
    ``'valid'``; default ``'same'``, the square case). Built from ``conv_matrix`` itself: M of the padded
    image (no padding), whose columns then fold onto the pixels they wrap around to (column (c, r, q) of the
    padded image is pixel (c, (r - top) mod H, (q - left) mod W); entries landing on one pixel add up). With
    stride 1 and an output as large as the input, M is doubly block circulant in each (o, c) block.
    """
    C, H, W, *_, groups = _geometry(weight, input_size, stride, padding, dilation, groups)
    sides = padding_sides(
        padding, tuple(weight.shape[2:]), pair(dilation, "dilation", minimum=1), pair(stride, "stride", minimum=1)
    )
    Hp, Wp = H + sides.top + sides.bottom, W + sides.left + sides.right
    M0 = conv_matrix(weight, (C, Hp, Wp), stride, 0, dilation, groups)
    rows = torch.repeat_interleave(torch.arange(M0.shape[0], device=weight.device), M0.crow_indices().diff().long())
    col = M0.col_indices().long()
    c, rq = col // (Hp * Wp), col % (Hp * Wp)
    r, q = (rq // Wp - sides.top) % H, (rq % Wp - sides.left) % W
    index = torch.stack([rows, (c * H + r) * W + q])
    M = torch.sparse_coo_tensor(index, M0.values(), (M0.shape[0], C * H * W), check_invariants=False)
    M = M.coalesce()  # a kernel wider than the image wraps onto a pixel more than once: the entries add up
    return M.to_sparse_csr() if sparse else M.to_dense()


def kernel_canvas(weight: torch.Tensor, size, offset=(0, 0), dilation=1) -> torch.Tensor:
    """The kernel flipped onto an Hc x Wc canvas: ``h[..., (top - u*dh) % Hc, (left - v*dw) % Wc] += K[..., u, v]``.

    ``h`` (O x C/g x Hc x Wc) is the impulse response of the circular cross-correlation that reads pixel
    ``(i + u*dh - top, j + v*dw - left)`` (mod the canvas) for output (i, j): the first column of each
    circulant block of its matrix, so its ``fft2`` holds the block's eigenvalues. ``offset = (top, left)``:
    the padding before the first row and column.
    """
    O, Cg, kh, kw = weight.shape
    (Hc, Wc), (top, left) = pair(size, "size", minimum=1), pair(offset, "offset", minimum=0)
    (dh, dw) = pair(dilation, "dilation", minimum=1)
    rows = (top - dh * torch.arange(kh, device=weight.device)) % Hc
    cols = (left - dw * torch.arange(kw, device=weight.device)) % Wc
    h = weight.new_zeros(Hc, Wc, O, Cg)
    h = h.index_put(
        (rows[:, None].expand(kh, kw), cols[None, :].expand(kh, kw)), weight.permute(2, 3, 0, 1), accumulate=True
    )
    return h.permute(2, 3, 0, 1)


def _square_sides(weight, size, padding, dilation):
    """Padding of a circular convolution whose output is as large as its H x W input (else ValueError)."""
    _, H, W, Ho, Wo, *_ = _geometry(weight, size, 1, padding, dilation, 1)
    sides = padding_sides(padding, tuple(weight.shape[2:]), pair(dilation, "dilation", minimum=1))
    if (Ho, Wo) != (H, W):
        raise ValueError(
            f"M is circulant only when the output is as large as the input ({H}x{W}), got {Ho}x{Wo}: "
            f"use padding='same' (d(k-1) zeros per axis in all)"
        )
    return H, W, sides


def circulant_eigenvalues(weight, input_size, padding="same", dilation=1) -> torch.Tensor:
    """``fft2`` of :func:`kernel_canvas`: the eigenvalues of each (o, c) circulant block, O x C/g x H x W (complex).

    For one channel in and out, ``M = F^-1 diag(lam.flatten()) F`` with ``M = circular_conv_matrix(weight,
    (H, W), padding=padding, dilation=dilation)`` and ``F = dft2_matrix(H, W)``. Stride 1; the output must be
    as large as the input (``padding='same'``, the default).
    """
    H, W, sides = _square_sides(weight, tuple(input_size)[-2:], padding, dilation)
    return torch.fft.fft2(kernel_canvas(weight, (H, W), (sides.top, sides.left), dilation))


class CirculantFactors(NamedTuple):
    """``M = F_inv @ Lambda @ F`` for a multi-channel circular convolution (dense, complex)."""

    F_inv: torch.Tensor  # O*H*W x O*H*W: I_O (x) F^-1
    Lambda: torch.Tensor  # O*H*W x C*H*W: an O x C grid of diagonal H*W x H*W blocks
    F: torch.Tensor  # C*H*W x C*H*W: I_C (x) F


def _full_channels(lam: torch.Tensor, groups: int) -> torch.Tensor:
    """O x C/g x ... -> O x C x ... with zeros between groups (the block-diagonal structure of grouped M)."""
    O, Cg = lam.shape[:2]
    full = lam.new_zeros(O, groups, Cg, *lam.shape[2:])
    idx = torch.arange(O, device=lam.device) // (O // groups)
    full[torch.arange(O, device=lam.device), idx] = lam
    return full.reshape(O, groups * Cg, *lam.shape[2:])


def circulant_factors(weight, input_size, padding="same", dilation=1, groups=1) -> CirculantFactors:
    """The factors of ``circular_conv_matrix(weight, input_size, padding=padding, ...)`` as dense matrices."""
    H, W = tuple(input_size)[-2:]
    lam = circulant_eigenvalues(weight, tuple(input_size)[-2:], padding, dilation)  # O x C/g x H x W
    O, C = lam.shape[0], lam.shape[1] * groups
    F = dft2_matrix(H, W, dtype=lam.dtype, device=lam.device)
    F_inv = (F.conj().T / (H * W)).contiguous()  # F^-1 = F^H / (H W)
    full = _full_channels(lam, groups).reshape(O, C, H * W)
    Lambda = torch.diag_embed(full).permute(0, 2, 1, 3).reshape(O * H * W, C * H * W)
    eye = lambda n: torch.eye(n, dtype=lam.dtype, device=lam.device)  # noqa: E731
    return CirculantFactors(F_inv=torch.kron(eye(O), F_inv), Lambda=Lambda, F=torch.kron(eye(C), F))


def frequency_matrices(weight, input_size, padding="same", dilation=1, groups=1) -> torch.Tensor:
    """The layer at each frequency: H x W x O x C complex, entry [f1, f2] the O x C matrix ``K_hat[f]``.

    With ``X_hat = torch.fft.fft2(x)`` (N x C x H x W), the circular convolution's spectrum at frequency f is
    ``K_hat[f] @ X_hat[:, :, f1, f2].T`` (O x N): H*W matrix products (O x C) @ (C x N). Zero outside the
    groups' diagonal blocks.
    """
    lam = circulant_eigenvalues(weight, tuple(input_size)[-2:], padding, dilation)
    return _full_channels(lam, groups).permute(2, 3, 0, 1)


# ---------------------------------------------------------------- zero padding on a large enough canvas


def fft_canvas(input_size, kernel_size, stride=1, padding=0, dilation=1) -> tuple[int, int]:
    """The smallest canvas (Lh, Lw) on which a circular convolution gives the zero-padded one's outputs.

    ``input_size`` (H, W) and ``kernel_size`` (kh, kw): ints or pairs; the rest as in ``F.conv2d``.

    Put the image at the canvas's top left and zeros after it. Output i reads the padded pixels
    ``i*s - top + u*d``, from ``-top`` to ``n + bottom - 1`` along an axis: the canvas must hold the image,
    the bottom padding after it (``L >= n + bottom``), and the top padding must wrap around onto zeros
    (``L - top >= n``). So ``L = n + max(top, bottom)`` per axis: the zeros after the image serve both
    sides. (The ``n + k - 1`` of the textbook is the *full* linear convolution, padding k - 1 on each side;
    a 'valid' correlation needs no zeros at all: L = n.) At least ``(Ho - 1)*s + 1``, so that no two wanted
    outputs fall on one canvas pixel (only with more padding than the kernel reaches).
    """
    size = pair(input_size, "input_size", minimum=1)
    kernel = pair(kernel_size, "kernel_size", minimum=1)
    stride, dilation = pair(stride, "stride", minimum=1), pair(dilation, "dilation", minimum=1)
    sides = padding_sides(padding, kernel, dilation, stride)
    check_fits(size, kernel, sides, dilation)
    out = output_hw(size, kernel, stride, sides, dilation)
    per_axis = zip(size, ((sides.top, sides.bottom), (sides.left, sides.right)), out, stride)
    return tuple(max(n + max(lo, hi), (no - 1) * s + 1) for n, (lo, hi), no, s in per_axis)


def fft_length(n: int, primes=(2, 3, 5, 7)) -> int:
    """The smallest length >= n whose prime factors are all in ``primes``: where FFT libraries are fastest."""
    if not is_int(n) or int(n) < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    m = int(n)
    while True:
        k = m
        for p in primes:
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


class FFTPlan(NamedTuple):
    """How :func:`conv2d_fft` computes one shape (see :func:`fft_plan`)."""

    canvas: tuple[int, int]  # the FFT size (Lh, Lw)
    min_canvas: tuple[int, int]  # the smallest that works (fft_canvas; the image itself for circular padding)
    offset: tuple[int, int]  # (top, left) padding: where the kernel's reading tap sits on the canvas
    output: tuple[int, int]  # (Ho, Wo)
    stride: tuple[int, int]
    frequencies: int  # Lh * (Lw // 2 + 1): the real FFT's non-redundant frequencies
    gemm: tuple[int, int, int, int]  # batch (frequencies * groups), O/g, C/g, N: (O/g x C/g) @ (C/g x N)


def fft_plan(
    input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", fast_sizes=True
):
    """The canvas and the matrix products of ``conv2d_fft`` for an N x C x H x W input and O x C/g x kh x kw weight.

    ``fast_sizes``: enlarge the zero-padded canvas to the next length with prime factors 2, 3, 5 and 7
    (:func:`fft_length`); a circular convolution's canvas is the image itself.
    """
    N, C, H, W = input_shape
    O, Cg, kh, kw = weight_shape
    stride, dilation = pair(stride, "stride", minimum=1), pair(dilation, "dilation", minimum=1)
    sides = padding_sides(padding, (kh, kw), dilation, stride)
    output = output_hw((H, W), (kh, kw), stride, sides, dilation)
    if padding_mode == "circular":
        canvas = least = (H, W)
    else:
        least = fft_canvas((H, W), (kh, kw), stride, padding, dilation)
        canvas = tuple(fft_length(n) for n in least) if fast_sizes else least
    freqs = canvas[0] * (canvas[1] // 2 + 1)
    return FFTPlan(
        canvas=canvas,
        min_canvas=least,
        offset=(sides.top, sides.left),
        output=output,
        stride=stride,
        frequencies=freqs,
        gemm=(freqs * groups, O // groups, Cg, N),
    )


def _phase(n: int, frequencies: int, shift: int, dtype, device) -> torch.Tensor:
    """``exp(-2 pi i f shift / n)`` for f < ``frequencies``: the DFT of a roll by ``shift`` samples."""
    f = torch.arange(frequencies, dtype=torch.float64, device=device)
    angle = (-2 * math.pi / n) * torch.remainder(f * shift, n)
    return torch.polar(torch.ones_like(angle), angle).to(dtype)


def _spectrum(weight, plan: FFTPlan, dilation, groups) -> torch.Tensor:
    """rfft2 of the kernel canvas, as (frequencies, groups, O/g, C/g): the A operands of the batched products.

    Pruned when the (dilated) kernel fits on the canvas: the row transforms run on its kh*dh rows only (the
    others are zero), and the roll that puts tap (top, left) at (0, 0) becomes a phase factor per frequency.
    About twice as fast as ``rfft2(kernel_canvas(...))`` (measured on 48 x 48 filters, 7x7 on 24 x 24).
    """
    O, Cg, kh, kw = weight.shape
    (Lh, Lw), (dh, dw), (top, left) = plan.canvas, dilation, plan.offset
    Lf = Lw // 2 + 1
    if dh * (kh - 1) >= Lh or dw * (kw - 1) >= Lw:  # the kernel wraps around the canvas: fold it first
        K = torch.fft.rfft2(kernel_canvas(weight, plan.canvas, plan.offset, dilation)).permute(2, 3, 0, 1)
        return K.reshape(plan.frequencies, groups, O // groups, Cg).contiguous()
    flipped = weight.new_zeros(O, Cg, dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    flipped[..., ::dh, ::dw] = weight.flip(2, 3)  # tap (u, v) at ((kh-1-u) dh, (kw-1-v) dw)
    K = torch.fft.fft(torch.fft.rfft(flipped, n=Lw, dim=-1), n=Lh, dim=-2)  # O x C/g x Lh x Lf
    rows = _phase(Lh, Lh, top - dh * (kh - 1), K.dtype, K.device)
    cols = _phase(Lw, Lf, left - dw * (kw - 1), K.dtype, K.device)
    phase = (rows[:, None] * cols[None, :])[:, :, None, None]
    if K.requires_grad:  # autograd records no out= operation
        out = (K.permute(2, 3, 0, 1) * phase).contiguous()
    else:  # the phase and the re-ordering in one pass
        out = torch.mul(K.permute(2, 3, 0, 1), phase, out=torch.empty(Lh, Lf, O, Cg, dtype=K.dtype, device=K.device))
    return out.view(plan.frequencies, groups, O // groups, Cg)


def _outputs(y: torch.Tensor, plan: FFTPlan) -> torch.Tensor:
    """The wanted outputs of the canvas-sized result: every s-th, from 0 (wrapping around the canvas if needed)."""
    for axis, (n, s, L) in enumerate(zip(plan.output, plan.stride, plan.canvas)):
        if (n - 1) * s < L:
            y = y.narrow(2 + axis, 0, (n - 1) * s + 1)[(slice(None),) * (2 + axis) + (slice(None, None, s),)]
        else:  # circular padding wider than the image: outputs repeat
            y = y.index_select(2 + axis, (torch.arange(n, device=y.device) * s) % L)
    return y


def _check_fft_options(x, padding_mode, cache):
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    check_cache(cache)
    if x.is_complex():
        raise TypeError(f"conv2d_fft needs a real floating-point dtype (it uses real FFTs), got {x.dtype}")


def conv2d_fft(
    x,
    weight,
    bias=None,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    *,
    padding_mode="zeros",
    cache=None,
    fast_sizes=True,
    finite_check=True,
):
    """2-D convolution by the convolution theorem: real FFTs and one batched matrix product per frequency.

    Same arguments and result as ``torch.nn.functional.conv2d`` (stride, padding as an int, a pair, ``'same'``
    or ``'valid'``, dilation, groups; unbatched input; empty batch; a channels-last input or weight gives a
    channels-last result). Keyword-only options:

    * ``padding_mode``: ``'zeros'`` (``F.conv2d``), or ``'circular'`` (``nn.Conv2d(padding_mode='circular')``,
      any amount of padding): the canvas is then the image itself.
    * ``cache``: a :class:`convlib.KernelCache` that keeps the kernel spectra between calls.
    * ``fast_sizes``: pad the canvas to a length with small prime factors (:func:`fft_length`).
    * ``finite_check``: with a NaN or an infinity in the input or weight, compute directly so that NaN and inf
      land where PyTorch puts them (the FFT would spread them over the whole output image); ``False`` skips
      the check.

    How (:func:`fft_plan` gives the sizes): the kernel, flipped and rolled onto the canvas
    (:func:`kernel_canvas`, dilation by spreading its taps), and the input, zero-padded at the bottom and
    right, go through ``torch.fft.rfft2``; at each of the Lh*(Lw//2+1) frequencies the layer is one complex
    matrix product (O/g x C/g) @ (C/g x N), batched (``torch.matmul``); ``irfft2`` brings the result back
    and the wanted outputs are read off (stride: every s-th). Differentiable.
    """
    a = conv2d_args(x, weight, bias, stride, padding, dilation, groups)
    _check_fft_options(a.x, padding_mode, cache)
    if finite_check and not all_finite(a.x, a.weight):
        return direct_conv2d(x, weight, bias, stride, padding, dilation, groups, padding_mode)
    x4 = x if x.dim() == 4 else x.unsqueeze(0)  # unpadded: the canvas holds the padding
    g, O = a.groups, weight.shape[0]
    plan = fft_plan(tuple(x4.shape), tuple(weight.shape), a.stride, padding, a.dilation, g, padding_mode, fast_sizes)
    dtype = compute_dtype(x.dtype)
    N, C = x4.shape[:2]
    if N == 0:
        return finish(a, x4.new_zeros(0, O, *plan.output, dtype=dtype), x.dtype)
    compute = lambda: _spectrum(weight.to(dtype), plan, a.dilation, g)  # noqa: E731
    K = (
        compute()
        if cache is None
        else cache.get(weight, ("fft", plan.canvas, plan.offset, a.dilation, g, dtype), compute)
    )
    (Lh, Lw), F = plan.canvas, plan.frequencies
    X = torch.fft.rfft2(x4.to(dtype), s=plan.canvas)  # N x C x Lh x Lf
    X = X.permute(2, 3, 1, 0).reshape(F, g, C // g, N)  # one C/g x N matrix per frequency and group
    Y = torch.matmul(K, X)  # F x g x O/g x N: the per-frequency products
    Y = Y.reshape(Lh, Lw // 2 + 1, O, N).permute(3, 2, 0, 1)
    y = torch.fft.irfft2(Y, s=plan.canvas)  # N x O x Lh x Lw
    return finish(a, _outputs(y, plan), x.dtype)
