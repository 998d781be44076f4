"""Hand-designed kernels: filters whose numbers you can read.

Before networks learned their filters, image processing designed them. Each function returns a 2-D
``kh x kw`` tensor meant for deep learning's convolution (cross-correlation, no flip), e.g.
``F.conv2d(x, K.view(1, 1, *K.shape))`` on a one-channel image. :func:`stack_kernels` turns several of them
into one ``O x C x k x k`` weight, so one convolution (one matrix product) computes all of them at once.
"""

from __future__ import annotations

import math
import numbers

import torch

from .args import as_int, check_tensor

__all__ = ["sobel_x", "sobel_y", "gaussian", "sharpen", "laplacian", "hand_kernels", "stack_kernels"]


def sobel_x(dtype=torch.float32) -> torch.Tensor:
    """Horizontal derivative (right minus left), smoothed vertically: large where a vertical edge is.

    ``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]``: on an image that brightens by 1 per column it gives 8.
    """
    return torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=dtype)


def sobel_y(dtype=torch.float32) -> torch.Tensor:
    """Vertical derivative (bottom minus top), smoothed horizontally: large where a horizontal edge is.

    The transpose of :func:`sobel_x`.
    """
    return sobel_x(dtype).T.contiguous()


def gaussian(size: int = 5, sigma: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    """A ``size x size`` Gaussian blur: ``exp(-(u^2 + v^2) / (2 sigma^2))`` around the centre, summing to 1.

    ``size`` must be odd (so there is a centre tap) and ``sigma`` positive. It is separable: the outer product
    of a 1-D Gaussian with itself.
    """
    size = as_int(size, "size")
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd number (the kernel needs a centre), got {size}")
    if not isinstance(sigma, numbers.Real) or isinstance(sigma, bool) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    sigma = float(sigma)
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(r**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).to(dtype)


def sharpen(dtype=torch.float32) -> torch.Tensor:
    """``[[0, -1, 0], [-1, 5, -1], [0, -1, 0]]``: the pixel plus (pixel minus its four neighbours).

    Sums to 1, so flat regions keep their value while edges get more contrast.
    """
    return torch.tensor([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]], dtype=dtype)


def laplacian(dtype=torch.float32) -> torch.Tensor:
    """``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``: the discrete second derivative (sum of the four neighbours
    minus four times the centre). Sums to 0: zero on flat regions and on linear ramps, large at edges.
    """
    return torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=dtype)


def hand_kernels(dtype=torch.float32) -> dict[str, torch.Tensor]:
    """The book's five hand-designed kernels by name: Sobel x, Sobel y, Gaussian blur (5 x 5, sigma 1),
    sharpen, Laplacian."""
    return {
        "Sobel x": sobel_x(dtype),
        "Sobel y": sobel_y(dtype),
        "Gaussian blur": gaussian(5, 1.0, dtype),
        "sharpen": sharpen(dtype),
        "Laplacian": laplacian(dtype),
    }


def stack_kernels(kernels, in_channels: int = 3) -> torch.Tensor:
    """One ``nn.Conv2d``-style weight (``O x in_channels x k x k``) that applies each 2-D kernel to the mean
    of the input channels.

    ``kernels`` is a sequence (or a dict's values) of square, odd-sized 2-D tensors, possibly of different
    sizes. Each is zero-padded around its centre to the largest size ``k`` (a 3 x 3 kernel is a 5 x 5 kernel
    with a ring of zeros), then copied into every input channel divided by ``in_channels``, because
    ``sum_c K / C * X[c] = K * mean_c X[c]``. With ``padding=k // 2`` every output map has the input's size
    and is centred like the kernel's own ``padding=size // 2`` result.
    """
    if isinstance(kernels, dict):
        kernels = list(kernels.values())
    kernels = list(kernels)
    if not kernels:
        raise ValueError("kernels must not be empty")
    in_channels = as_int(in_channels, "in_channels", minimum=1)
    for i, K in enumerate(kernels):
        check_tensor(K, f"kernels[{i}]")
        if K.dim() != 2 or K.shape[0] != K.shape[1] or K.shape[0] % 2 == 0:
            raise ValueError(f"kernels[{i}] must be a square 2-D tensor of odd size, got shape {tuple(K.shape)}")
    dtypes = {K.dtype for K in kernels}
    if len(dtypes) > 1:
        raise TypeError(f"kernels must share one dtype, got {sorted(map(str, dtypes))}")
    k = max(K.shape[0] for K in kernels)
    weight = kernels[0].new_zeros(len(kernels), in_channels, k, k)
    for o, K in enumerate(kernels):
        m = (k - K.shape[0]) // 2
        weight[o, :, m : m + K.shape[0], m : m + K.shape[1]] = K / in_channels
    return weight
