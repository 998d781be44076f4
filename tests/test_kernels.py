"""convlib.kernels: hand-designed filters do what their names say, and stack into one nn.Conv2d weight."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import torch_conv2d
from hypothesis import given
from hypothesis import strategies as st

import convlib
from convlib import kernels


def _conv(img, K, padding=0):
    """One-channel H x W image through deep learning's convolution with a 2-D kernel."""
    return F.conv2d(img[None, None], K[None, None], padding=padding)[0, 0]


def test_values_and_sums():
    assert kernels.sobel_x().tolist() == [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    assert torch.equal(kernels.sobel_y(), kernels.sobel_x().T)
    assert kernels.sharpen().sum() == 1 and kernels.laplacian().sum() == 0
    assert kernels.sobel_x().sum() == 0 and kernels.sobel_y().sum() == 0
    g = kernels.gaussian(5, 1.0)
    assert g.shape == (5, 5) and torch.isclose(g.sum(), torch.tensor(1.0))
    assert torch.equal(g, g.T) and torch.equal(g, g.flip(0)) and g.argmax() == 12  # symmetric, peak at centre
    assert set(kernels.hand_kernels()) == {"Sobel x", "Sobel y", "Gaussian blur", "sharpen", "Laplacian"}
    assert kernels.gaussian(3, 0.5, dtype=torch.float64).dtype == torch.float64


def test_sobel_and_laplacian_on_ramps():
    H, W = 7, 9
    rows, cols = torch.meshgrid(
        torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
    )
    ramp_x = 3.0 * cols + 2.0  # brightens by 3 per column
    sx, sy = kernels.sobel_x(torch.float64), kernels.sobel_y(torch.float64)
    assert torch.allclose(_conv(ramp_x, sx), torch.full((H - 2, W - 2), 24.0, dtype=torch.float64))  # 8 * slope
    assert torch.allclose(_conv(ramp_x, sy), torch.zeros(H - 2, W - 2, dtype=torch.float64))
    assert torch.allclose(_conv(rows, sy), torch.full((H - 2, W - 2), 8.0, dtype=torch.float64))
    lap = kernels.laplacian(torch.float64)
    assert torch.allclose(_conv(ramp_x + 5 * rows, lap), torch.zeros(H - 2, W - 2, dtype=torch.float64))
    assert torch.allclose(_conv(cols**2 + rows**2, lap), torch.full((H - 2, W - 2), 4.0, dtype=torch.float64))
    flat = torch.full((H, W), 0.3, dtype=torch.float64)
    assert torch.allclose(_conv(flat, kernels.sharpen(torch.float64)), flat[1:-1, 1:-1])


@given(size=st.sampled_from([1, 3, 5, 7, 9]), sigma=st.floats(0.3, 4.0), seed=st.integers(0, 2**16))
def test_gaussian_blur_equals_torchvision(size, sigma, seed):
    from torchvision.transforms.functional import gaussian_blur

    img = torch.rand(1, 12, 13, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    expected = gaussian_blur(img, [size, size], [sigma, sigma])[0]  # reflect padding at the border
    got = _conv(img[0], kernels.gaussian(size, sigma, torch.float64))
    m = size // 2
    torch.testing.assert_close(got, expected[m : 12 - m, m : 13 - m], rtol=1e-10, atol=1e-10)  # interior


@pytest.mark.parametrize(
    "args, err, match",
    [
        ((4,), ValueError, "odd"),
        ((0,), ValueError, "odd"),
        ((5, 0.0), ValueError, "sigma"),
        ((5, float("nan")), ValueError, "sigma"),
        ((5.0,), TypeError, "size must be an int"),
    ],
)
def test_gaussian_errors(args, err, match):
    with pytest.raises(err, match=match):
        kernels.gaussian(*args)


@given(C=st.integers(1, 4), N=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_stack_kernels_is_each_kernel_on_the_channel_mean(C, N, seed):
    named = kernels.hand_kernels(torch.float64)
    weight = kernels.stack_kernels(named, in_channels=C)
    assert weight.shape == (5, C, 5, 5)
    x = torch.randn(N, C, 10, 11, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    Y = torch_conv2d(x, weight, padding=2)
    Y_im2col = convlib.conv2d_im2col(x, weight, padding=2)
    torch.testing.assert_close(Y_im2col, Y, rtol=1e-10, atol=1e-10)
    grey = x.mean(dim=1, keepdim=True)
    for o, K in enumerate(named.values()):
        expected = F.conv2d(grey, K[None, None], padding=K.shape[0] // 2)
        torch.testing.assert_close(Y[:, o : o + 1], expected, rtol=1e-10, atol=1e-10)


def test_stack_kernels_pads_around_the_centre():
    w = kernels.stack_kernels([torch.ones(1, 1), torch.ones(3, 3)], in_channels=2)
    assert w.shape == (2, 2, 3, 3)
    assert w[0, 0].tolist() == [[0, 0, 0], [0, 0.5, 0], [0, 0, 0]]
    assert torch.equal(w[1, 1], torch.full((3, 3), 0.5))


@pytest.mark.parametrize(
    "ks, C, err, match",
    [
        ([], 3, ValueError, "must not be empty"),
        ([torch.ones(2, 2)], 3, ValueError, "odd size"),
        ([torch.ones(3, 5)], 3, ValueError, "square"),
        ([torch.ones(1, 3, 3)], 3, ValueError, "2-D"),
        ([[1.0]], 3, TypeError, "torch.Tensor"),
        ([torch.ones(3, 3)], 0, ValueError, "in_channels"),
        ([torch.ones(3, 3), torch.ones(1, 1, dtype=torch.float64)], 3, TypeError, "one dtype"),
    ],
)
def test_stack_kernels_errors(ks, C, err, match):
    with pytest.raises(err, match=match):
        kernels.stack_kernels(ks, in_channels=C)
