"""conv2d_shifted (sum over kernel offsets of shifted-view products) against PyTorch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import check_conv, conv_configs
from hypothesis import given
from test_core import BAD_CONV_CALLS

import convlib


@given(cfg=conv_configs(allow_same=True))
def test_shifted_equals_F_conv2d(cfg):
    check_conv(convlib.conv2d_shifted, cfg, contiguous=True)


@given(cfg=conv_configs(max_groups=2))
def test_shifted_unbatched_input(cfg):
    check_conv(convlib.conv2d_shifted, cfg, unbatched=True)


@given(cfg=conv_configs())
def test_shifted_equals_im2col(cfg):
    """The two matmul formulations agree with each other (float64: to round-off)."""
    x, weight, bias, kw = cfg
    x, weight = x.double(), weight.double()
    bias = None if bias is None else bias.double()
    torch.testing.assert_close(
        convlib.conv2d_shifted(x, weight, bias, **kw),
        convlib.conv2d_im2col(x, weight, bias, **kw),
        rtol=1e-10,
        atol=1e-10,
    )


def test_shifted_same_padding_asymmetric_even_kernel():
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    w = torch.randn(4, 3, 4, 2, dtype=torch.float64)
    y = convlib.conv2d_shifted(x, w, padding="same", dilation=(1, 3))
    torch.testing.assert_close(y, F.conv2d(x, w, padding="same", dilation=(1, 3)))
    assert y.shape[2:] == x.shape[2:]


def test_shifted_depthwise_and_pointwise():
    x = torch.randn(2, 6, 9, 9, dtype=torch.float64)
    depthwise = torch.randn(6, 1, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(
        convlib.conv2d_shifted(x, depthwise, groups=6, padding=1), F.conv2d(x, depthwise, groups=6, padding=1)
    )
    pointwise = torch.randn(5, 6, 1, 1, dtype=torch.float64)  # 1 x 1: a single offset, a single product
    torch.testing.assert_close(convlib.conv2d_shifted(x, pointwise), F.conv2d(x, pointwise))


def test_shifted_gradients_flow():
    """Built from differentiable torch ops: autograd gives F.conv2d's gradients."""
    x = torch.randn(2, 4, 6, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    kw = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    grads = torch.autograd.grad(convlib.conv2d_shifted(x, w, b, **kw).square().sum(), (x, w, b))
    expected = torch.autograd.grad(F.conv2d(x, w, b, **kw).square().sum(), (x, w, b))
    for got, exp in zip(grads, expected):
        torch.testing.assert_close(got, exp)


@pytest.mark.parametrize("args,kwargs,exc,words", BAD_CONV_CALLS)
def test_shifted_bad_input_raises_clear_error(args, kwargs, exc, words):
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        convlib.conv2d_shifted(*args, **kwargs)
