"""convlib.conv2d (the fast path) against PyTorch: every formulation, every block size, errors, and no conv op."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from conftest import check_conv, conv_configs
from hypothesis import given
from hypothesis import strategies as st

import convlib
from convlib import fast


@contextlib.contextmanager
def block_bytes(n):
    """Plan with blocks of about ``n`` bytes (16: one output row per block) inside the ``with``."""
    old = fast.settings.block_bytes
    fast.settings.block_bytes = n
    fast.clear_choices()
    fast.clear_workspaces()
    try:
        yield
    finally:
        fast.settings.block_bytes = old
        fast.clear_choices()
        fast.clear_workspaces()


def _check(cfg, **extra):
    check_conv(convlib.conv2d, cfg, contiguous=True, **extra)


# ---------------------------------------------------------------- equal to PyTorch, property-based


@given(cfg=conv_configs(allow_same=True))
def test_conv2d_equals_F_conv2d(cfg):
    _check(cfg)


@given(cfg=conv_configs(max_groups=1, allow_same=True))
def test_full_mode_equals_F_conv2d(cfg):
    _check(cfg, mode="full")


@given(cfg=conv_configs(allow_same=True))
def test_tap_mode_equals_F_conv2d(cfg):
    _check(cfg, mode="tap")


@pytest.mark.parametrize("layout", [None, "exact", "canvas", "phases"])
@pytest.mark.parametrize("mode", [None, "tap", "full"])
@given(cfg=conv_configs(max_groups=1, allow_same=True))
def test_every_layout_equals_F_conv2d(layout, mode, cfg):
    """Each layout where it applies ('exact': stride 1, output as wide as the input; 'canvas': stride 1)."""
    x, weight, bias, kw = cfg
    try:
        _check(cfg, mode=mode, layout=layout)
    except ValueError as e:
        assert "layout=" in str(e)


@given(cfg=conv_configs(allow_same=True), multiplier=st.integers(1, 3))
def test_depthwise_mode_equals_F_conv2d(cfg, multiplier):
    x, _, bias, kw = cfg
    C = x.shape[1]
    weight = torch.randn(C * multiplier, 1, 3, 2, dtype=x.dtype)
    bias = None if bias is None else torch.randn(C * multiplier, dtype=x.dtype)
    kw = dict(kw, groups=C, dilation=1)
    if isinstance(kw["padding"], str) or min(x.shape[2:]) + 2 * min(_pair(kw["padding"])) < 3:
        kw["padding"] = 1
    _check((x, weight, bias, kw), mode="depthwise")
    _check((x, weight, bias, kw))


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


@given(
    N=st.integers(1, 3),
    C=st.integers(1, 5),
    O=st.integers(1, 5),
    H=st.integers(1, 9),
    W=st.integers(1, 9),
    bias=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_gemm1x1_mode_equals_F_conv2d(N, C, O, H, W, bias, dtype):
    x = torch.randn(N, C, H, W, dtype=dtype)
    w = torch.randn(O, C, 1, 1, dtype=dtype)
    b = torch.randn(O, dtype=dtype) if bias else None
    assert fast.conv2d_plan(N, C, H, W, O, 1, 1).mode == "gemm1x1"
    _check((x, w, b, {}), mode="gemm1x1")


@pytest.mark.parametrize("mode", [None, "tap", "full"])
@given(cfg=conv_configs(max_groups=3, allow_same=True))
def test_tiny_blocks_equal_F_conv2d(mode, cfg):
    """Blocks of one output row (many bands per image) give the same result as one block."""
    if mode == "full" and cfg[3]["groups"] > 1:
        mode = "tap"  # 'full' is for groups=1
    with block_bytes(16):
        _check(cfg, mode=mode)


@given(cfg=conv_configs(max_groups=2))
def test_unbatched_input(cfg):
    check_conv(convlib.conv2d, cfg, unbatched=True)


@given(cfg=conv_configs(allow_same=True))
def test_second_call_reuses_the_workspace_correctly(cfg):
    """The kept canvas and buffers hold nothing from the previous call (new values, same shape)."""
    x, weight, bias, kw = cfg
    convlib.conv2d(x, weight, bias, **kw)
    x2, w2 = torch.randn_like(x), torch.randn_like(weight)
    _check((x2, w2, bias, kw))


def test_non_contiguous_inputs():
    x = torch.randn(2, 5, 9, 8, dtype=torch.float64)
    w = torch.randn(6, 5, 3, 3, dtype=torch.float64)
    for xx in (x.contiguous(memory_format=torch.channels_last), x.transpose(2, 3).contiguous().transpose(2, 3)):
        for kw in ({"padding": 1}, {"padding": 0}, {"stride": 2}):
            torch.testing.assert_close(convlib.conv2d(xx, w, **kw), F.conv2d(x, w, **kw))
    w_cl = w.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(convlib.conv2d(x, w_cl, padding=1), F.conv2d(x, w, padding=1))


@given(cfg=conv_configs(allow_same=True))
def test_gradients_equal_F_conv2d(cfg):
    x, weight, bias, kw = cfg
    x, weight = x.double().requires_grad_(), weight.double().requires_grad_()
    bias = None if bias is None else bias.double().requires_grad_()
    inputs = [t for t in (x, weight, bias) if t is not None]
    y = convlib.conv2d(x, weight, bias, **kw)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, inputs, g)
    expected = torch.autograd.grad(F.conv2d(x, weight, bias, **kw), inputs, g)
    torch.testing.assert_close(y, F.conv2d(x, weight, bias, **kw))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- the plan


@given(
    N=st.integers(1, 4),
    C=st.integers(1, 6),
    H=st.integers(3, 40),
    W=st.integers(3, 40),
    k=st.integers(1, 3),
    s=st.integers(1, 3),
    p=st.integers(0, 2),
    block=st.sampled_from([16, 4096, 1 << 20]),
)
def test_blocks_cover_every_output_once(N, C, H, W, k, s, p, block):
    plan = fast.conv2d_plan(N, C, H, W, 4, k, k, (s, s), (p, p), (1, 1), 1, block_bytes=block)
    seen = torch.zeros(N, plan.Ho, dtype=torch.int64)
    for n0, n1, i0, i1 in plan.blocks:
        seen[n0:n1, i0:i1] += 1
    assert bool((seen == 1).all())
    # garbage: at most Wc - Wo extra columns per row, and none when the canvas rows are exactly Wo long
    assert 1.0 <= plan.waste <= plan.Wc / plan.Wo


def test_plan_examples():
    """The layouts and formulations of the suite's layers, by the rules for the 'mm' GEMM route."""
    plan = fast.conv2d_plan(8, 64, 56, 56, 64, 3, 3, (1, 1), (1, 1), route="mm")
    assert (plan.layout, plan.mode, plan.Wc, plan.waste) == ("exact", "tap", 56, 1.0)  # written straight into y
    # tap (u, v) reads the input at offset (u - 1)*W + (v - 1); the top row of taps reaches output rows 1..55
    assert plan.taps[:4] == ((-1, -57, 1, 56), (0, -56, 1, 56), (1, -55, 1, 56), (-1, -1, 0, 56))
    # tap (0, 0) read the previous row's last pixel (column 55) for output column 0 of rows 2..55
    assert plan.corrections[0] == (0, 55, 0, 2, 56, 0)
    assert plan.corrections[0].in_col == 55 and plan.corrections[0].out_col == 0
    assert len(plan.corrections) == 6  # three taps per side
    assert plan.edges == ((0, 1), (55, 56))  # those output columns are computed afresh
    canvas = fast.conv2d_plan(8, 64, 56, 56, 64, 3, 3, (1, 1), (1, 1), layout="canvas")
    assert (canvas.Wc, canvas.Wo) == (57, 56)  # one garbage column per row: the shared padding
    assert canvas.taps[:4] == ((0, 0, 0, 56), (0, 1, 0, 56), (0, 2, 0, 56), (0, 57, 0, 56))
    # one column of garbage between two rows of a band: with one band per image, 55 of them per 56 rows
    assert 1 < canvas.waste < (55 * 57 + 56) / (56 * 56)
    whole = fast.conv2d_plan(8, 64, 56, 56, 64, 3, 3, (1, 1), (1, 1), layout="canvas", block_bytes=1 << 30)
    assert whole.blocks == ((0, 8, 0, 56),) and whole.waste == pytest.approx((55 * 57 + 56) / (56 * 56))
    first = fast.conv2d_plan(32, 3, 32, 32, 32, 5, 5, route="mm")
    assert (first.layout, first.mode, first.Wc, first.Wo) == ("canvas", "full", 32, 28)  # the input is the canvas
    assert first.zero_copy
    assert fast.conv2d_plan(8, 64, 56, 56, 128, 1, 1).mode == "gemm1x1"
    assert (
        fast.conv2d_plan(1, 256, 14, 14, 256, 3, 3, (1, 1), (1, 1), route="mm").mode == "full"
    )  # weights > patch matrix
    assert fast.conv2d_plan(16, 32, 32, 32, 32, 3, 3, (1, 1), (1, 1), (1, 1), 32).mode == "depthwise"
    s2 = fast.conv2d_plan(8, 64, 56, 56, 64, 3, 3, (2, 2), (1, 1), route="mm")
    assert s2.layout == "phases" and s2.phases == 4 and (s2.Hr, s2.Wc) == (29, 29)  # 58 padded rows, in two


def test_canvas_of_a_small_image():
    """Row-major canvas: a row's right padding is the next row's left padding; tap (u, v) is a slice."""
    x = torch.arange(1.0, 7).reshape(1, 1, 2, 3)
    plan = fast.conv2d_plan(1, 1, 2, 3, 1, 3, 3, (1, 1), (1, 1), layout="canvas")
    canvas = fast.make_canvas(x, plan)[0, 0, 0]
    assert plan.Wc == 4
    assert canvas.tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 0, 4, 5, 6, 0, 0, 0, 0, 0, 0, 0, 0]
    w = torch.zeros(1, 1, 3, 3)
    w[0, 0, 2, 0] = 1.0  # tap (2, 0): output (i, j) reads padded pixel (i + 2, j)
    y = convlib.conv2d(x, w, padding=1, layout="canvas")
    torch.testing.assert_close(y, F.conv2d(x, w, padding=1))
    Q = (plan.Ho - 1) * plan.Wc + plan.Wo
    offset = 2 * plan.Wc + 0
    # q = i*Wc + j: output row 0 reads [0 4 5], then one garbage value (6), then output row 1 reads zeros
    assert canvas[offset : offset + Q].tolist() == [0, 4, 5, 6, 0, 0, 0]
    assert y.flatten().tolist() == [0, 4, 5, 0, 0, 0]


# ---------------------------------------------------------------- only matrix products and data movement


def test_no_convolution_or_unfold_op_runs():
    """The profiler's list of every op conv2d runs, in every plan and route: no convolution, no unfold/im2col op,
    and of oneDNN only its GEMM (the linear ops and their tensor conversions)."""
    from torch.profiler import ProfilerActivity, profile

    shapes = [
        ((2, 3, 12, 12), (4, 3, 5, 5), {}),  # full
        ((2, 16, 10, 10), (16, 16, 3, 3), {"padding": 1}),  # tap
        ((2, 64, 6, 6), (8, 64, 3, 3), {"stride": 2, "padding": 1}),  # tap, phases
        ((2, 8, 10, 10), (8, 1, 3, 3), {"padding": 1, "groups": 8}),  # depthwise
        ((2, 6, 7, 7), (4, 6, 1, 1), {}),  # gemm1x1
        ((2, 6, 7, 7), (4, 3, 3, 3), {"groups": 2}),  # grouped tap
    ]
    onednn_gemm = {
        "mkldnn::_linear_pointwise",
        "aten::mkldnn_linear",
        "aten::to_mkldnn",
        "aten::_to_dense",
        "aten::to_dense",
    }
    plans = 0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for xs, ws, kw in shapes:
            x, w, b = torch.randn(xs), torch.randn(ws), torch.randn(ws[0])
            for plan in fast.candidates(fast.plan_for(x, w, b, **kw).shape, every_route=True):
                convlib.conv2d(x, w, b, **kw, plan=plan)
                plans += 1
    names = {e.key for e in prof.key_averages()}
    forbidden = [n for n in names if any(w in n.lower() for w in ("conv", "im2col", "unfold", "col2im"))]
    assert not forbidden, forbidden
    onednn = {n for n in names if "mkldnn" in n.lower()}
    assert onednn <= onednn_gemm, onednn - onednn_gemm
    products = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm", "aten::baddbmm_"}
    assert len(products & names) >= 2, names  # the work is done by matrix products
    assert "aten::addcmul_" in names  # ... and, for the depthwise layer, by diagonal ones
    assert plans >= 4 * len(shapes)


# ---------------------------------------------------------------- bad input: clear errors

X = torch.randn(1, 4, 6, 6)
WT = torch.randn(2, 4, 3, 3)

BAD_CALLS = [
    ((torch.randn(6, 6), WT), {}, ValueError, "input must be 4-D"),
    ((X, torch.randn(2, 4, 3)), {}, ValueError, "weight must be 4-D"),
    ((X, torch.randn(2, 3, 3, 3)), {}, ValueError, "input has 4 channels"),
    ((X, torch.randn(3, 2, 3, 3)), {"groups": 2}, ValueError, "does not divide the weight's 3 out-channels"),
    ((X, WT), {"groups": 0}, ValueError, "groups must be at least 1"),
    ((X, torch.randn(2, 4, 7, 3)), {}, ValueError, "kernel larger than the padded input"),
    ((X, WT), {"stride": 0}, ValueError, "stride must be at least 1"),
    ((X, WT), {"padding": -1}, ValueError, "padding must not be negative"),
    ((X, WT), {"padding": "full"}, ValueError, "padding must be an int, a pair, 'valid' or 'same'"),
    ((X, WT), {"padding": "same", "stride": 2}, ValueError, "padding='same' needs stride 1"),
    ((X, WT, torch.randn(3)), {}, ValueError, "bias must be 1-D with 2 entries"),
    ((X.numpy(), WT), {}, TypeError, "input must be a torch.Tensor"),
    ((X.double(), WT), {}, TypeError, "same dtype"),
    ((X.long(), WT.long()), {}, TypeError, "floating-point dtype"),
    ((X, WT), {"mode": "nonsense"}, ValueError, "mode must be one of"),
    ((X, WT), {"route": "blas"}, ValueError, "route must be one of"),
    ((X, WT), {"mode": "tap", "route": "linear_pointwise"}, ValueError, "mode='tap' uses route"),
    ((X, WT), {"mode": "tap", "layout": "nhwc"}, ValueError, "mode='tap' reads layout"),
    ((X, WT), {"plan": "exact"}, TypeError, "plan must be a convlib.fast.Plan"),
    ((X, WT), {"plan": fast.conv2d_plan(2, 4, 6, 6, 2, 3, 3)}, ValueError, "plan is for shape"),
    ((X, WT), {"layout": "diagonal"}, ValueError, "layout must be one of"),
    ((X, WT), {"block_bytes": 0}, ValueError, "block_bytes must be a positive int"),
    ((X, WT), {"layout": "exact", "stride": 2}, ValueError, "layout='exact' needs stride 1"),
    ((X, WT), {"layout": "canvas", "stride": 2, "mode": "tap"}, ValueError, "layout='canvas' needs stride 1"),
    ((X, torch.randn(2, 2, 3, 3)), {"groups": 2, "mode": "full"}, ValueError, "mode='full' needs groups=1"),
    ((X, WT), {"mode": "depthwise"}, ValueError, "mode='depthwise' needs groups equal to the 4 input channels"),
    ((X, WT), {"mode": "gemm1x1"}, ValueError, "mode='gemm1x1' needs a 1x1 kernel"),
    ((X, torch.randn(2, 4, 1, 1)), {"padding": 1, "mode": "gemm1x1"}, ValueError, "no padding"),
]


@pytest.mark.parametrize("args, kwargs, exc, words", BAD_CALLS)
def test_bad_input_raises_clear_error(args, kwargs, exc, words):
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)")):
        convlib.conv2d(*args, **kwargs)


def test_exported():
    assert convlib.conv2d is fast.conv2d
    assert "conv2d" in convlib.__all__
