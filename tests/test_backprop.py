"""convlib.backprop: a convolution's gradients as convolutions, against torch.nn.grad and by counting."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from conftest import conv_configs, tol
from hypothesis import given
from hypothesis import strategies as st

import convlib
from convlib import backprop
from convlib.backprop import FastConv2dFunction, KernelCache, conv2d_input, conv2d_weight, phases


def _reference(x, weight, kw):
    """dL/dY (random) and PyTorch's dL/dx and dL/dK for it (torch.nn.grad takes no 'same', autograd does)."""
    x, weight = x.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    y = F.conv2d(x, weight, None, **kw)
    grad_y = torch.randn_like(y)
    return (grad_y, *torch.autograd.grad(y, (x, weight), grad_y))


@given(cfg=conv_configs(allow_same=True))
def test_conv2d_input_equals_pytorch(cfg):
    """dL/dx by one stride-1 convolution per phase equals PyTorch's transposed convolution."""
    x, weight, _, kw = cfg
    grad_y, expected, _ = _reference(x, weight, kw)
    got = conv2d_input(x.shape, weight, grad_y, **kw)
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected, **tol(x.dtype))


@given(cfg=conv_configs(allow_same=True))
def test_conv2d_weight_equals_pytorch(cfg):
    x, weight, _, kw = cfg
    grad_y, _, expected = _reference(x, weight, kw)
    got = conv2d_weight(x, weight.shape, grad_y, **kw)
    assert got.shape == weight.shape
    torch.testing.assert_close(got, expected, **tol(x.dtype))


def test_same_as_torch_nn_grad():
    """The signatures of torch.nn.grad.conv2d_input and conv2d_weight, and their results."""
    x, w = torch.randn(2, 4, 9, 8, dtype=torch.float64), torch.randn(6, 2, 3, 2, dtype=torch.float64)
    kw = dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1), groups=2)
    grad_y = torch.randn_like(F.conv2d(x, w, None, **kw))
    expected = torch.nn.grad.conv2d_input(x.shape, w, grad_y, *kw.values())
    torch.testing.assert_close(conv2d_input(x.shape, w, grad_y, *kw.values()), expected)
    expected = torch.nn.grad.conv2d_weight(x, w.shape, grad_y, *kw.values())
    torch.testing.assert_close(conv2d_weight(x, w.shape, grad_y, *kw.values()), expected)


@given(
    n=st.integers(1, 12),
    k=st.integers(1, 6),
    s=st.integers(1, 4),
    d=st.integers(1, 4),
    pad=st.integers(0, 8),
)
def test_phases_give_every_tap_to_the_phase_it_reaches(n, k, s, d, pad):
    """Input position r = m*s + a receives G[i] * K[u] where i*s + u*d = r + pad: phase a gets the u with
    u*d = a + pad (mod s), in a stride-1 convolution with dilation d*step/s; a phase whose taps reach no
    output position is dropped."""
    out_len = (n + 2 * pad - d * (k - 1) - 1) // s + 1
    if out_len < 1:  # the kernel does not fit
        return
    for a, ph in enumerate(phases(n, k, s, d, pad, out_len)):
        taps = [u for u in range(k) if (u * d - a - pad) % s == 0]
        if ph is None:
            reached = [(m * s + a + pad - u * d) // s for m in range(-(-n // s)) for u in taps if m * s + a < n]
            assert not any(0 <= i < out_len for i in reached)
            continue
        got = sorted(k - 1 - t for t in range(ph.first, ph.first + ph.step * ph.count, ph.step))
        assert got == taps
        assert ph.count == 1 or ph.dilation * s == d * ph.step


def _counting(monkeypatch):
    """Record the shapes of every call of convlib.conv2d made by the backprop module."""
    calls = []
    real = backprop.conv2d

    def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        calls.append((tuple(x.shape), tuple(weight.shape), stride, padding, dilation, groups))
        return real(x, weight, bias, stride, padding, dilation, groups)

    monkeypatch.setattr(backprop, "conv2d", conv2d)
    return calls


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (3, 2)])
def test_input_gradient_multiplies_by_no_inserted_zeros(monkeypatch, stride):
    """Forward and dL/dx both run through convlib.conv2d; dL/dx does about the forward's multiply-adds.

    Zero insertion would convolve a (sh*sw times larger) upsampled gradient with the whole kernel: sh*sw times
    the forward's work. The phases split the kernel instead, so their sizes add up to the forward's.
    """
    x = torch.randn(2, 4, 12, 12, requires_grad=True)
    w = torch.randn(6, 4, 3, 3)
    calls = _counting(monkeypatch)
    y = FastConv2dFunction.apply(x, w, None, stride, 1, 1, 1)
    assert len(calls) == 1  # the forward
    grad_y = torch.randn_like(y)
    y.backward(grad_y)
    assert len(calls) == 1 + stride[0] * stride[1]  # one stride-1 convolution per phase
    fwd = convlib.conv2d_macs(calls[0][0], calls[0][1], stride, 1)
    bwd = sum(convlib.conv2d_macs(xs, ws, 1, p, d) for xs, ws, _, p, d, _ in calls[1:])
    assert bwd <= 1.35 * fwd  # the phases' outputs are ceil(H/s) x ceil(W/s): a little more than Ho x Wo here
    torch.testing.assert_close(x.grad, torch.nn.grad.conv2d_input(x.shape, w, grad_y, stride, 1), **tol(x.dtype))


def test_kernel_cache_keeps_kernels_until_the_weight_changes(monkeypatch):
    made = []
    real = backprop._phase_kernels
    monkeypatch.setattr(backprop, "_phase_kernels", lambda *a: made.append(1) or real(*a))
    layer = convlib.Conv2d(3, 4, 3, stride=2, padding=1)
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    for _ in range(3):  # the weight does not change: one set of kernels
        layer(x).sum().backward()
    assert len(made) == 1
    with torch.no_grad():
        layer.weight.mul_(2)  # an in-place change (what an optimiser step does)
    x.grad = None
    layer(x).sum().backward()
    assert len(made) == 2
    expected = torch.nn.grad.conv2d_input(x.shape, layer.weight.detach(), torch.ones(2, 4, 5, 5), 2, 1)
    torch.testing.assert_close(x.grad, expected)  # the refreshed kernels, not the old ones
    layer.weight.data = torch.randn_like(layer.weight)  # new storage, same Parameter
    x.grad = None
    layer(x).sum().backward()
    assert len(made) == 3
    torch.testing.assert_close(
        x.grad, torch.nn.grad.conv2d_input(x.shape, layer.weight.detach(), torch.ones(2, 4, 5, 5), 2, 1)
    )
    layer.load_state_dict({"weight": torch.randn(4, 3, 3, 3), "bias": torch.zeros(4)})
    x.grad = None
    layer(x).sum().backward()
    assert len(made) == 4


def test_kernel_cache_is_bypassed_while_autograd_records():
    """With create_graph=True the kept kernels would cut the graph through the weight: they are derived afresh."""
    cache = KernelCache()
    w = torch.randn(2, 2, 3, 3, requires_grad=True)
    made = []
    make = lambda t: made.append(t) or t * 2  # noqa: E731
    with torch.enable_grad():
        out = cache.get(w, "k", make)
    assert out.requires_grad and made[-1] is w
    with torch.no_grad():
        a = cache.get(w, "k", make)
        b = cache.get(w, "k", make)
    assert a is b and not a.requires_grad and len(made) == 2
    other = w.detach().clone().requires_grad_(True)  # equal values, another tensor
    with torch.no_grad():
        assert cache.get(other, "k", make) is not a


def test_a_layer_with_kept_kernels_pickles():
    """torch.save of a whole layer after a backward pass (the kept kernels are not saved, and are derived again)."""
    layer = convlib.Conv2d(2, 3, 3, stride=2)
    x = torch.randn(1, 2, 7, 7, requires_grad=True)
    layer(x).sum().backward()
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    copy = torch.load(buffer, weights_only=False)
    x2 = x.detach().clone().requires_grad_(True)
    copy(x2).sum().backward()
    torch.testing.assert_close(x2.grad, x.grad)


def test_input_gradient_stays_in_the_graph_where_no_tap_reaches():
    """Stride 3 over a one-row input with padding 1: every output reads only padding, so dL/dx is zero. It must
    still be a function of grad_output and the weight, as F.conv2d's is (found by the deep profile: the
    second-derivative check saw a different set of gradients), and stay exactly zero with inf in grad_output."""
    x = torch.tensor([[[[1.5410, -0.2934, -2.1788]]]], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([[[[0.5684, -1.0845]]]], dtype=torch.float64, requires_grad=True)
    fn = lambda x, w: FastConv2dFunction.apply(x, w, None, 3, 1, 1, 1)  # noqa: E731
    y = fn(x, w)
    g = torch.randn_like(y, requires_grad=True)
    gx, gw = torch.autograd.grad(y, (x, w), g, create_graph=True)
    gx_ref, gw_ref = torch.autograd.grad(F.conv2d(x, w, None, 3, 1), (x, w), g, create_graph=True)
    assert gx.requires_grad == gx_ref.requires_grad and gw.requires_grad == gw_ref.requires_grad
    torch.testing.assert_close(gx, gx_ref)
    assert torch.autograd.gradgradcheck(fn, (x, w), eps=1e-6, atol=1e-6, rtol=1e-5)
    inf = torch.full_like(y, float("inf"))
    assert torch.equal(torch.autograd.grad(fn(x, w), x, inf)[0], torch.zeros_like(x))
