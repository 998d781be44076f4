"""convlib.conv2d where it must behave exactly as PyTorch: non-finite and large values, inference mode, no_grad,
autograd, vmap, empty batches, channels-last and unbatched tensors; in every plan and route."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import check_conv, conv_configs, tol
from hypothesis import given
from hypothesis import strategies as st

import convlib
from convlib import fast


def _plans(x, weight, bias=None, **kw):
    return fast.candidates(fast.plan_for(x, weight, bias, **kw).shape, x.dtype, x.device, every_route=True)


def _same_non_finite(got, expected):
    assert torch.equal(got.isnan(), expected.isnan())
    assert torch.equal(got.isinf(), expected.isinf())
    assert torch.equal(got[got.isinf()], expected[expected.isinf()])  # the same signs
    finite = expected.isfinite()
    torch.testing.assert_close(got[finite], expected[finite], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- the 'exact' layout's edge columns


def test_inf_in_the_last_column_reaches_only_the_outputs_pytorchs_reach():
    """A shifted tap of the 'exact' layout reads the row above's last pixel for column 0: no inf may leak there."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(1, 32, 24, 24, generator=g), torch.randn(32, 32, 3, 3, generator=g)
    x[0, :, 5, -1] = math.inf
    expected = F.conv2d(x, w, padding=1)
    assert expected.isnan().any() or expected.isinf().any()
    _same_non_finite(convlib.conv2d(x, w, padding=1, mode="tap", layout="exact"), expected)
    plans = _plans(x, w, padding=1)
    assert "exact" in {p.layout for p in plans}
    for plan in plans:
        _same_non_finite(convlib.conv2d(x, w, padding=1, plan=plan), expected)


def test_large_values_in_the_edge_columns_do_not_cancel():
    """1e6 in the last column: column 0 reads none of it, so its error must stay PyTorch's (1e-5), in every plan."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(2, 48, 28, 28, generator=g), torch.randn(48, 48, 3, 3, generator=g)
    x[..., -1] = 1e6
    exact = F.conv2d(x.double(), w.double(), padding=1)
    torch_error = (F.conv2d(x, w, padding=1).double() - exact)[..., :-2].abs().max()
    error = (convlib.conv2d(x, w, padding=1, mode="tap", layout="exact").double() - exact)[..., :-2].abs().max()
    assert error <= 10 * torch_error + 1e-4, (float(error), float(torch_error))
    for plan in _plans(x, w, padding=1):
        error = (convlib.conv2d(x, w, padding=1, plan=plan).double() - exact)[..., :-2].abs().max()
        assert error <= 10 * torch_error + 1e-4, (fast.describe(plan), float(error), float(torch_error))


@st.composite
def non_finite_configs(draw):
    x, weight, bias, kw = draw(conv_configs(allow_same=True))
    for _ in range(draw(st.integers(1, 3))):
        n, c = draw(st.integers(0, x.shape[0] - 1)), draw(st.integers(0, x.shape[1] - 1))
        i, j = draw(st.integers(0, x.shape[2] - 1)), draw(st.integers(0, x.shape[3] - 1))
        x[n, c, i, j] = draw(st.sampled_from([math.inf, -math.inf, math.nan]))
    return x, weight, bias, kw


@given(cfg=non_finite_configs())
def test_nan_and_inf_reach_the_outputs_pytorchs_reach_in_every_plan(cfg):
    x, weight, bias, kw = cfg
    expected = F.conv2d(x, weight, bias, **kw)
    for plan in _plans(x, weight, bias, **kw):
        _same_non_finite(convlib.conv2d(x, weight, bias, **kw, plan=plan), expected)


# ---------------------------------------------------------------- inference mode, no_grad, autograd, vmap


def test_inference_mode_then_normal_mode():
    """Work buffers made under inference_mode must serve later calls outside it (and the other way round)."""
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(1, 32, 24, 24, generator=g), torch.randn(32, 32, 3, 3, generator=g), torch.randn(32)
    expected = F.conv2d(x, w, b, padding=1)
    fast.clear_workspaces()
    with torch.inference_mode():
        convlib.conv2d(x, w, b, padding=1, mode="tap", layout="exact")
    torch.testing.assert_close(convlib.conv2d(x, w, b, padding=1, mode="tap", layout="exact"), expected, **tol(x.dtype))
    for plan in _plans(x, w, b, padding=1):
        for first, second in ((True, False), (False, True)):
            fast.clear_workspaces()
            with torch.inference_mode(first):
                y1 = convlib.conv2d(x, w, b, padding=1, plan=plan)
            with torch.inference_mode(second):
                y2 = convlib.conv2d(x, w, b, padding=1, plan=plan)
            assert y1.is_inference() == first and y2.is_inference() == second
            torch.testing.assert_close(y1, expected, **tol(x.dtype))
            torch.testing.assert_close(y2, expected, **tol(x.dtype))


def test_inference_mode_with_inference_tensors_and_measuring():
    old = fast.settings.tune
    fast.settings.tune = True
    fast.clear_choices()
    try:
        with torch.inference_mode():
            x, w = torch.randn(2, 6, 9, 9), torch.randn(5, 6, 3, 3)
            y = convlib.conv2d(x, w, padding=1)  # measured inside inference mode
        torch.testing.assert_close(convlib.conv2d(x, w, padding=1), y, **tol(x.dtype))  # inference tensors, outside it
        torch.testing.assert_close(convlib.conv2d(x.clone(), w.clone(), padding=1), y, **tol(x.dtype))
    finally:
        fast.settings.tune = old
        fast.clear_choices()


def test_no_grad_runs_the_fast_path_on_tensors_that_require_grad():
    x = torch.randn(2, 6, 9, 9, requires_grad=True)
    w, b = torch.randn(5, 6, 3, 3, requires_grad=True), torch.randn(5, requires_grad=True)
    with torch.no_grad():
        expected = F.conv2d(x, w, b, padding=1)
        for plan in _plans(x, w, b, padding=1):
            y = convlib.conv2d(x, w, b, padding=1, plan=plan)
            assert not y.requires_grad
            torch.testing.assert_close(y, expected, **tol(x.dtype))


@pytest.mark.parametrize(
    "kw",
    [dict(padding=1), dict(stride=2, padding=(1, 0)), dict(dilation=2, padding="same"), dict(groups=2, stride=(1, 2))],
)
def test_gradcheck(kw):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3 * (kw.get("groups", 1)), 4 // kw.get("groups", 1), 3, 2, generator=g, dtype=torch.float64)
    w.requires_grad_()
    b = torch.randn(w.shape[0], generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: convlib.conv2d(x, w, b, **kw), (x, w, b))
    if "groups" in kw:  # second derivatives too (slow: once)
        assert torch.autograd.gradgradcheck(lambda x, w, b: convlib.conv2d(x, w, b, **kw), (x, w, b))


def test_vmap_over_inputs_and_weights():
    g = torch.Generator().manual_seed(0)
    xs, w, b = torch.randn(3, 2, 4, 7, 7, generator=g), torch.randn(5, 4, 3, 3, generator=g), torch.randn(5)
    got = torch.func.vmap(lambda x: convlib.conv2d(x, w, b, padding=1))(xs)
    expected = torch.stack([F.conv2d(x, w, b, padding=1) for x in xs])
    torch.testing.assert_close(got, expected, **tol(torch.float32))
    ws = torch.randn(3, 5, 4, 3, 3, generator=g)
    got = torch.func.vmap(lambda w: convlib.conv2d(xs[0], w, stride=2))(ws)
    expected = torch.stack([F.conv2d(xs[0], w, stride=2) for w in ws])
    torch.testing.assert_close(got, expected, **tol(torch.float32))
    images = torch.randn(6, 4, 7, 7, generator=g)  # vmap over unbatched images
    got = torch.func.vmap(lambda x: convlib.conv2d(x, w, b, padding="same"))(images)
    expected = F.conv2d(images, w, b, padding="same")
    torch.testing.assert_close(got, expected, **tol(torch.float32))
    # and a gradient through vmap
    jac = torch.func.vmap(torch.func.grad(lambda x: convlib.conv2d(x, w, padding=1).sum()))(images)
    expected = torch.func.vmap(torch.func.grad(lambda x: F.conv2d(x, w, padding=1).sum()))(images)
    torch.testing.assert_close(jac, expected, **tol(torch.float32))


# ---------------------------------------------------------------- empty batches, memory formats, unbatched


@given(cfg=conv_configs(allow_same=True), channels_last=st.booleans())
def test_empty_batch_gives_pytorchs_empty_result(cfg, channels_last):
    x, weight, bias, kw = cfg
    x = x[:0]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = F.conv2d(x, weight, bias, **kw)
    got = convlib.conv2d(x, weight, bias, **kw)
    assert got.shape == expected.shape and got.dtype == expected.dtype and got.numel() == 0
    # (an empty tensor counts as contiguous in both formats, so args' channels-last rule cannot see the format)
    assert channels_last or got.is_contiguous(memory_format=torch.channels_last) == expected.is_contiguous(
        memory_format=torch.channels_last
    )


@given(cfg=conv_configs(allow_same=True), which=st.sampled_from(["input", "weight", "both"]))
def test_channels_last_gives_a_channels_last_result_in_every_plan(cfg, which):
    x, weight, bias, kw = cfg
    cl = torch.channels_last
    if which in ("input", "both"):
        x = x.contiguous(memory_format=cl)
    if which in ("weight", "both"):
        weight = weight.contiguous(memory_format=cl)
    expected = F.conv2d(x, weight, bias, **kw)
    for plan in _plans(x, weight, bias, **kw):
        got = convlib.conv2d(x, weight, bias, **kw, plan=plan)
        assert got.is_contiguous(memory_format=cl) == expected.is_contiguous(memory_format=cl)
        assert got.is_contiguous() == expected.is_contiguous()
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@given(cfg=conv_configs(max_groups=2, allow_same=True))
def test_unbatched_input_in_every_plan(cfg):
    x, weight, bias, kw = cfg
    for plan in _plans(x[:1], weight, bias, **kw):
        check_conv(convlib.conv2d, cfg, unbatched=True, plan=plan)


def test_meta_tensors_give_the_result_shape_without_measuring():
    fast.clear_choices()
    x, w = torch.empty(2, 3, 8, 8, device="meta"), torch.empty(4, 3, 3, 3, device="meta")
    y = convlib.conv2d(x, w, padding=1, stride=2)
    assert y.device.type == "meta" and y.shape == (2, 4, 4, 4) and not fast.choices()
