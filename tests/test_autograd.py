"""convlib.Conv2dFunction, FastConv2dFunction and convlib.Conv2d against PyTorch: values, first and second
derivatives, forward mode, vmap, empty batches, memory formats, initialisation, state_dict."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import conv_configs, tol
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import convlib
from convlib import Conv2d, Conv2dFunction
from convlib.autograd import METHODS, FastConv2dFunction

# the book's im2col version and the fast path's: every Function test runs on both
FUNCTIONS = pytest.mark.parametrize("function", [Conv2dFunction, FastConv2dFunction], ids=["im2col", "fast"])
EVERY_METHOD = pytest.mark.parametrize("method", METHODS)


def _layers(weight, bias, kw, padding_mode="zeros", method="fast"):
    """An nn.Conv2d and a convlib.Conv2d with the configuration of ``conv_configs`` and the same parameters."""
    O, Cg, kh, kwid = weight.shape
    args = dict(
        in_channels=Cg * kw["groups"],
        out_channels=O,
        kernel_size=(kh, kwid),
        bias=bias is not None,
        padding_mode=padding_mode,
        dtype=weight.dtype,
        **kw,
    )
    ref, ours = nn.Conv2d(**args), Conv2d(**args, method=method)
    with torch.no_grad():
        ref.weight.copy_(weight)
        if bias is not None:
            ref.bias.copy_(bias)
    ours.load_state_dict(ref.state_dict())  # an nn.Conv2d state_dict loads as is
    return ref, ours


def _forward_backward(layer, x, grad_y):
    x = x.detach().clone().requires_grad_(True)
    y = layer(x)
    y.backward(grad_y)
    grads = [x.grad] + [p.grad for p in (layer.weight, layer.bias) if p is not None]
    return y.detach(), grads


# ---------------------------------------------------------------- Conv2dFunction: gradients by three products


@FUNCTIONS
@given(cfg=conv_configs(allow_same=True))
def test_function_forward_and_gradients_equal_F_conv2d(function, cfg):
    x, weight, bias, kw = cfg
    inputs = [t.clone().requires_grad_(True) for t in (x, weight) + ((bias,) if bias is not None else ())]
    ref = [t.detach().clone().requires_grad_(True) for t in inputs]
    b, rb = (inputs[2], ref[2]) if bias is not None else (None, None)
    y = function.apply(inputs[0], inputs[1], b, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    y_ref = F.conv2d(ref[0], ref[1], rb, **kw)
    torch.testing.assert_close(y, y_ref, **tol(x.dtype))
    grad_y = torch.randn_like(y_ref)
    got = torch.autograd.grad(y, inputs, grad_y)
    expected = torch.autograd.grad(y_ref, ref, grad_y)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        torch.testing.assert_close(g, e, **tol(x.dtype))


def _small(cfg):
    """The same configuration on one image with at most 2 channels per group: gradcheck's cost is per entry."""
    x, weight, bias, kw = cfg
    g = kw["groups"]
    Cg, Og = weight.shape[1], weight.shape[0] // g
    c_keep, o_keep = min(Cg, 2), min(Og, 2)
    x = x[:1].unflatten(1, (g, Cg))[:, :, :c_keep].flatten(1, 2)
    weight = weight.unflatten(0, (g, Og))[:, :o_keep, :c_keep].flatten(0, 1)
    bias = None if bias is None else bias.unflatten(0, (g, Og))[:, :o_keep].flatten()
    return x.double(), weight.double(), None if bias is None else bias.double(), kw


@FUNCTIONS
@given(cfg=conv_configs(allow_same=True))
def test_function_gradcheck_float64(function, cfg):
    """Our backward against finite differences of our own forward (float64), for x, weight and bias."""
    x, weight, bias, kw = _small(cfg)
    inputs = (x.requires_grad_(True), weight.requires_grad_(True), None if bias is None else bias.requires_grad_(True))
    fn = lambda x, w, b: function.apply(x, w, b, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])  # noqa: E731
    # fast mode: the Jacobian against finite differences along random directions (the full Jacobian is
    # compared entry by entry on fixed configurations in test_function_gradgradcheck)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


@FUNCTIONS
@pytest.mark.parametrize("seed", range(6))
def test_function_gradgradcheck(function, seed):
    """The backward is made of differentiable operations on the saved inputs: second derivatives are right."""
    gen = torch.Generator().manual_seed(seed)
    stride, padding, dilation, groups = [
        (1, 0, 1, 1),
        (2, 1, 1, 1),
        (1, "same", 2, 2),
        (2, (0, 1), (1, 2), 2),
        (3, 2, 1, 1),
        (1, "same", 1, 1),
    ][seed]
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(2, 2 // groups, 2, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, generator=gen, requires_grad=True)
    fn = lambda x, w, b: function.apply(x, w, b, stride, padding, dilation, groups)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))  # the full Jacobian, entry by entry
    assert torch.autograd.gradgradcheck(fn, (x, w, b))
    x1 = x[0].detach().requires_grad_(True)  # unbatched: C x H x W
    assert torch.autograd.gradcheck(fn, (x1, w, b))
    assert torch.autograd.gradgradcheck(fn, (x1, w, b))


@FUNCTIONS
def test_function_is_one_node_without_autograd_inside(function):
    """The forward is not traced by autograd: the graph has one node whose inputs are x, weight and bias."""
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    y = function.apply(x, w, b, 1, 1, 1, 1)
    assert type(y.grad_fn).__name__ == f"{function.__name__}Backward"
    leaves = [fn.variable for fn, _ in y.grad_fn.next_functions]
    assert leaves[0] is x and leaves[1] is w and leaves[2] is b


@FUNCTIONS
def test_function_needs_only_the_gradients_asked_for(function):
    x = torch.randn(1, 2, 5, 5)
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    y = function.apply(x, w, None, 1, 0, 1, 1)
    (gw,) = torch.autograd.grad(y.sum(), [w])
    torch.testing.assert_close(gw, torch.autograd.grad(F.conv2d(x, w).sum(), [w])[0])
    assert x.grad is None


@FUNCTIONS
def test_function_unbatched_input(function):
    x = torch.randn(2, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    y = function.apply(x, w, None, 2, 1, 1, 1)
    assert y.shape == (3, 4, 4)
    torch.testing.assert_close(y, F.conv2d(x, w, None, 2, 1))
    assert torch.autograd.gradcheck(lambda x, w: function.apply(x, w, None, 2, 1, 1, 1), (x, w))


@FUNCTIONS
def test_function_bad_input_is_a_clear_error(function):
    with pytest.raises(ValueError, match="input has 4 channels"):
        function.apply(torch.randn(1, 4, 5, 5), torch.randn(2, 3, 3, 3), None, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="kernel larger than the padded input"):
        function.apply(torch.randn(1, 1, 2, 2), torch.randn(1, 1, 3, 3), None, 1, 0, 1, 1)


# ---------------------------------------------------------------- Conv2d: a drop-in nn.Conv2d


@EVERY_METHOD
@given(cfg=conv_configs(allow_same=True))
def test_conv2d_forward_backward_equal_nn_conv2d_float32(method, cfg):
    x, weight, bias, kw = cfg
    x, weight, bias = x.float(), weight.float(), None if bias is None else bias.float()
    ref, ours = _layers(weight, bias, kw, method=method)
    grad_y = torch.randn(F.conv2d(x, weight, bias, **kw).shape)
    y_ref, g_ref = _forward_backward(ref, x, grad_y)
    y, g = _forward_backward(ours, x, grad_y)
    torch.testing.assert_close(y, y_ref, **tol(torch.float32))
    assert len(g) == len(g_ref)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, **tol(torch.float32))


@EVERY_METHOD
@given(cfg=conv_configs(max_groups=2), mode=st.sampled_from(["reflect", "replicate", "circular"]))
def test_conv2d_padding_modes_equal_nn_conv2d(method, cfg, mode):
    x, weight, bias, kw = cfg
    (ph, pw) = kw["padding"] if isinstance(kw["padding"], tuple) else (kw["padding"],) * 2
    ref, ours = _layers(weight, bias, kw, padding_mode=mode, method=method)
    too_big = {
        "reflect": ph >= x.shape[2] or pw >= x.shape[3],
        "circular": ph > x.shape[2] or pw > x.shape[3],
        "replicate": False,
    }[mode]
    if too_big:  # nn.Conv2d fails inside F.pad; we say why
        with pytest.raises(ValueError, match=f"padding_mode='{mode}' needs the padding"):
            ours(x)
        with pytest.raises(RuntimeError):
            ref(x)
        return
    grad_y = torch.randn_like(ref(x))
    y_ref, g_ref = _forward_backward(ref, x, grad_y)
    y, g = _forward_backward(ours, x, grad_y)
    torch.testing.assert_close(y, y_ref, **tol(x.dtype))
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, **tol(x.dtype))


@EVERY_METHOD
@given(cfg=conv_configs(allow_same=True))
def test_conv2d_gradcheck_float64(method, cfg):
    x, weight, bias, kw = _small(cfg)
    _, layer = _layers(weight, bias, kw, method=method)
    # Conv2dFunction has the full (per-entry) gradcheck above; here the layer's path (parameters, padding
    # modes left to F.pad) is checked with gradcheck's fast mode: random directional derivatives.
    assert torch.autograd.gradcheck(layer, (x.requires_grad_(True),), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


@pytest.mark.parametrize(
    "args",
    [
        dict(in_channels=3, out_channels=8, kernel_size=3),
        dict(
            in_channels=4,
            out_channels=6,
            kernel_size=(2, 5),
            stride=(2, 1),
            padding=(1, 2),
            dilation=(2, 1),
            groups=2,
            bias=False,
        ),
        dict(in_channels=6, out_channels=6, kernel_size=4, padding="same", groups=3, padding_mode="circular"),
        dict(in_channels=1, out_channels=2, kernel_size=1, padding="valid", dtype=torch.float64),
    ],
)
@EVERY_METHOD
def test_conv2d_same_parameters_init_and_attributes_as_nn_conv2d(args, method):
    torch.manual_seed(0)
    ref = nn.Conv2d(**args)
    torch.manual_seed(0)
    ours = Conv2d(**args, method=method)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    for (_, p), (_, q) in zip(ours.named_parameters(), ref.named_parameters()):
        assert p.shape == q.shape and p.dtype == q.dtype
        assert torch.equal(p, q)  # same initialisation, call for call
    assert (ours.bias is None) == (ref.bias is None)
    for name in (
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "groups",
        "padding_mode",
        "transposed",
        "output_padding",
    ):
        assert getattr(ours, name) == getattr(ref, name), name
    assert repr(ours).replace("Conv2d", "X").replace(", method='im2col'", "") == repr(ref).replace("Conv2d", "X")
    # state_dicts move both ways
    other = nn.Conv2d(**args)
    other.load_state_dict(ours.state_dict())
    x = torch.randn(2, args["in_channels"], 9, 8, dtype=args.get("dtype", torch.float32))
    torch.testing.assert_close(ours(x), other(x), **tol(x.dtype))


@EVERY_METHOD
def test_conv2d_in_a_network_trains_like_nn_conv2d(method):
    """Two small CNNs, one with nn.Conv2d, one with convlib.Conv2d, same start: same losses over 5 SGD steps."""

    def net(conv):
        torch.manual_seed(0)
        return nn.Sequential(
            conv(3, 4, 3, padding=1),
            nn.ReLU(),
            conv(4, 6, 3, stride=2, groups=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(6 * 3 * 3, 5),
        )

    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 7, 7, generator=gen), torch.randint(0, 5, (8,), generator=gen)
    losses = []
    for conv in (nn.Conv2d, lambda *a, **k: Conv2d(*a, **k, method=method)):
        model = net(conv)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        run = []
        for _ in range(5):  # fit one batch: the loss must fall
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses.append(run)
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    assert losses[0][-1] < losses[0][0]  # it did learn something: the comparison is not between two constants


@pytest.mark.parametrize(
    "kwargs,exc,words",
    [
        (dict(padding_mode="mirror"), ValueError, "padding_mode must be one of"),
        (dict(groups=2), ValueError, "in_channels=3 must be divisible by groups=2"),
        (dict(groups=0), ValueError, "groups must be at least 1"),
        (dict(padding="same", stride=2), ValueError, "padding='same' needs stride 1"),
        (dict(padding="full"), ValueError, "padding must be an int, a pair, 'valid' or 'same'"),
        (dict(padding=-1), ValueError, "padding must not be negative"),
        (dict(kernel_size=0), ValueError, "kernel_size must be at least 1"),
        (dict(stride=(1, 2, 3)), TypeError, "stride must be an int or a pair"),
        (dict(bias=None), TypeError, "bias must be True or False"),
        (dict(method="winograd"), ValueError, "method must be one of"),
    ],
)
def test_conv2d_bad_constructor_arguments(kwargs, exc, words):
    args = dict(in_channels=3, out_channels=4, kernel_size=3) | kwargs
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)")):
        Conv2d(**args)


def test_conv2d_bad_channel_counts():
    with pytest.raises(ValueError, match="out_channels=3 must be divisible by groups=2"):
        Conv2d(4, 3, 3, groups=2)
    with pytest.raises(TypeError, match="in_channels must be an int"):
        Conv2d(3.0, 4, 3)
    with pytest.raises(ValueError, match="out_channels must be at least 1"):
        Conv2d(3, 0, 3)
    with pytest.raises(ValueError, match="input has 2 channels"):
        Conv2d(3, 4, 3)(torch.randn(1, 2, 5, 5))


# ---------------------------------------------------------------- second derivatives


def _conv_callers():
    """Every way to run a convolution through convlib's autograd, as fn(x, w, b, stride, padding, dilation, groups)."""
    callers = {f"{f.__name__}": f.apply for f in (Conv2dFunction, FastConv2dFunction)}
    for method in METHODS:
        callers[f"Conv2d-{method}"] = lambda x, w, b, s, p, d, g, m=method: _functional_layer(x, w, b, s, p, d, g, m)
    return callers


def _functional_layer(x, w, b, stride, padding, dilation, groups, method, padding_mode="zeros"):
    """A convlib.Conv2d whose parameters are ``w`` and ``b`` themselves (so autograd reaches them)."""
    O, Cg, kh, kw = w.shape
    layer = Conv2d(Cg * groups, O, (kh, kw), stride, padding, dilation, groups, b is not None, padding_mode,
                   dtype=w.dtype, method=method)  # fmt: skip
    return torch.func.functional_call(layer, {"weight": w, "bias": b} if b is not None else {"weight": w}, (x,))


CALLERS = pytest.mark.parametrize("call", list(_conv_callers().values()), ids=list(_conv_callers()))


@CALLERS
def test_second_derivative_on_unbatched_input_equals_F_conv2d(call):
    """d(dL/dK)/dx through a C x H x W input: the backward must start from the caller's x, not a 4-D copy."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 5, dtype=torch.float64, requires_grad=True, generator=gen)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True, generator=gen)
    results = []
    for fn in (call, F.conv2d):
        gw = torch.autograd.grad(fn(x, w, None, 1, 1, 1, 1).pow(2).sum(), w, create_graph=True)[0]
        results.append(torch.autograd.grad(gw.sum(), x)[0])
    torch.testing.assert_close(results[0], results[1])


@FUNCTIONS
@given(cfg=conv_configs(allow_same=True), unbatched=st.booleans())
def test_function_gradgradcheck_random(function, cfg, unbatched):
    """Second derivatives against finite differences of the first, batched and unbatched (gradcheck's fast mode)."""
    x, weight, bias, kw = _small(cfg)
    x = x[0] if unbatched else x
    inputs = (x.requires_grad_(True), weight.requires_grad_(True), None if bias is None else bias.requires_grad_(True))
    fn = lambda x, w, b: function.apply(x, w, b, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True)


@EVERY_METHOD
@given(cfg=conv_configs(max_groups=2), mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
def test_conv2d_gradgradcheck_every_padding_mode(method, cfg, mode):
    x, weight, bias, kw = _small(cfg)
    (ph, pw) = kw["padding"] if isinstance(kw["padding"], tuple) else (kw["padding"],) * 2
    if mode == "reflect" and (ph >= x.shape[2] or pw >= x.shape[3]) or (ph > x.shape[2] or pw > x.shape[3]):
        return  # F.pad cannot pad that much in these modes (tested above)
    s, p, d, g = kw["stride"], kw["padding"], kw["dilation"], kw["groups"]
    fn = lambda x, w, b: _functional_layer(x, w, b, s, p, d, g, method, mode)  # noqa: E731
    inputs = (x.requires_grad_(True), weight.requires_grad_(True), None if bias is None else bias.requires_grad_(True))
    assert torch.autograd.gradgradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True)


@FUNCTIONS
@pytest.mark.parametrize("unbatched", [False, True])
def test_function_forward_mode(function, unbatched):
    """jvp: the tangent of a convolution is the convolution of the tangents (it is linear in each argument)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64, generator=gen)
    x = (x[0] if unbatched else x).requires_grad_(True)
    w = torch.randn(4, 1, 2, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=gen, requires_grad=True)
    fn = lambda x, w, b: function.apply(x, w, b, 2, (1, 0), (2, 1), 2)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b), check_forward_ad=True, fast_mode=True)
    only_b = lambda b: fn(x.detach(), w.detach(), b)  # noqa: E731
    assert torch.autograd.gradcheck(only_b, (b,), check_forward_ad=True, fast_mode=True)
    hessian = torch.func.hessian(lambda x: fn(x, w, b).pow(3).sum())(x)
    torch.testing.assert_close(
        hessian, torch.func.hessian(lambda x: F.conv2d(x, w, b, 2, (1, 0), (2, 1), 2).pow(3).sum())(x)
    )


# ---------------------------------------------------------------- empty batches, memory formats, vmap, arguments


@CALLERS
def test_empty_batch_like_nn_conv2d(call):
    """N = 0: an empty result of the right shape, and gradients (zero for the parameters) as PyTorch gives."""
    x = torch.randn(0, 4, 6, 5, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    y = call(x, w, b, (2, 1), 1, 1, 2)
    y_ref = F.conv2d(x, w, b, (2, 1), 1, 1, 2)
    assert y.shape == y_ref.shape == (0, 6, 3, 6)
    grads = torch.autograd.grad(y.sum(), (x, w, b))
    expected = torch.autograd.grad(y_ref.sum(), (x, w, b))
    for g, e in zip(grads, expected):
        assert g.shape == e.shape
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@EVERY_METHOD
def test_conv2d_empty_batch_every_padding_mode(mode, method):
    torch.manual_seed(0)
    ref = nn.Conv2d(3, 4, 3, padding=1, padding_mode=mode)
    ours = Conv2d(3, 4, 3, padding=1, padding_mode=mode, method=method)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(0, 3, 5, 5, requires_grad=True)
    y, g = _forward_backward(ours, x, torch.randn(0, 4, 5, 5))
    y_ref, g_ref = _forward_backward(ref, x, torch.randn(0, 4, 5, 5))
    assert y.shape == y_ref.shape
    for a, b in zip(g, g_ref):
        assert a.shape == b.shape and torch.equal(a, b)


@CALLERS
@pytest.mark.parametrize("which", ["input", "weight"])
def test_channels_last_in_channels_last_out(call, which):
    """As in PyTorch: a channels-last input (or weight) gives a channels-last result; values and gradients equal."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 7, 6, generator=gen)
    w = torch.randn(6, 4, 3, 3, generator=gen)
    b = torch.randn(6, generator=gen)
    cl = lambda t: t.contiguous(memory_format=torch.channels_last)  # noqa: E731
    x, w = (cl(x), w) if which == "input" else (x, cl(w))
    x, w = x.requires_grad_(True), w.requires_grad_(True)
    y = call(x, w, b, 1, 1, 1, 1)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    # PyTorch compared on contiguous copies: its channels-last kernels are not what is being tested
    xc, wc = x.detach().contiguous().requires_grad_(True), w.detach().contiguous().requires_grad_(True)
    y_ref = F.conv2d(xc, wc, b, 1, 1)
    torch.testing.assert_close(y, y_ref, **tol(torch.float32))
    grad_y = torch.randn(y.shape, generator=gen)
    for g, e in zip(torch.autograd.grad(y, (x, w), grad_y), torch.autograd.grad(y_ref, (xc, wc), grad_y)):
        torch.testing.assert_close(g, e, **tol(torch.float32))


@FUNCTIONS
@pytest.mark.parametrize("unbatched", [False, True])
def test_vmap_over_the_input(function, unbatched):
    gen = torch.Generator().manual_seed(2)
    xs = torch.randn(3, 2, 4, 7, 6, generator=gen)  # vmapped axis first, then N x C x H x W
    xs = xs[:, 0] if unbatched else xs
    w, b = torch.randn(6, 2, 3, 2, generator=gen), torch.randn(6, generator=gen)
    got = torch.func.vmap(lambda x: function.apply(x, w, b, 2, 1, (1, 2), 2))(xs)
    expected = torch.stack([F.conv2d(x, w, b, 2, 1, (1, 2), 2) for x in xs])
    torch.testing.assert_close(got, expected, **tol(torch.float32))
    moved = torch.func.vmap(lambda x: function.apply(x, w, None, 1, "same", 1, 2), in_dims=1)(xs.movedim(0, 1))
    torch.testing.assert_close(moved, torch.stack([F.conv2d(x, w, None, 1, "same", 1, 2) for x in xs]))


@FUNCTIONS
@pytest.mark.parametrize("unbatched", [False, True])
def test_vmap_over_weight_and_bias(function, unbatched):
    """A vmapped weight: each sample's input meets only its own weight (the vmapped axis joins the groups)."""
    gen = torch.Generator().manual_seed(4)
    xs = torch.randn(3, 2, 4, 7, 6, generator=gen)
    xs = xs[:, 0] if unbatched else xs
    ws, bs = torch.randn(3, 6, 2, 3, 2, generator=gen), torch.randn(3, 6, generator=gen)
    fn = lambda x, w, b: function.apply(x, w, b, 1, 1, 1, 2)  # noqa: E731
    expected = torch.stack([F.conv2d(xs[i], ws[i], bs[i], 1, 1, 1, 2) for i in range(3)])
    torch.testing.assert_close(torch.func.vmap(fn)(xs, ws, bs), expected, **tol(torch.float32))
    one_x = torch.func.vmap(fn, in_dims=(None, 0, None))(xs[0], ws, bs[0])
    torch.testing.assert_close(one_x, torch.stack([F.conv2d(xs[0], w, bs[0], 1, 1, 1, 2) for w in ws]))
    with pytest.raises(ValueError, match="input has 2 channels but weight expects"):  # the sample's sizes
        torch.func.vmap(fn)(xs[..., :2, :, :], ws, bs)


@FUNCTIONS
def test_jacobians_by_func_transforms(function):
    """torch.func.grad, jacrev (vmap over the backward) and jacfwd (vmap over the forward mode)."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, 6, dtype=torch.float64, generator=gen)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=gen)
    ours = lambda x, w: function.apply(x, w, None, 2, 1, 1, 1)  # noqa: E731
    ref = lambda x, w: F.conv2d(x, w, None, 2, 1, 1, 1)  # noqa: E731
    for transform in (torch.func.jacrev, torch.func.jacfwd):
        for argnums in (0, 1):
            torch.testing.assert_close(transform(ours, argnums)(x, w), transform(ref, argnums)(x, w))
    loss = lambda f: lambda x: f(x, w).pow(2).sum()  # noqa: E731
    torch.testing.assert_close(torch.func.grad(loss(ours))(x), torch.func.grad(loss(ref))(x))


@CALLERS
def test_int_like_arguments_as_pytorch_accepts_them(call):
    x = torch.randn(1, 4, 9, 8)
    w = torch.randn(6, 2, 3, 3)
    expected = F.conv2d(x, w, None, 2, 1, 1, 2)
    for stride, padding, dilation, groups in [
        (np.int64(2), np.int32(1), np.int64(1), np.int64(2)),
        (torch.tensor(2), torch.tensor(1), torch.tensor(1), torch.tensor(2)),
        ((2,), (1,), [1], 2),
    ]:
        torch.testing.assert_close(call(x, w, None, stride, padding, dilation, groups), expected)


def test_conv2d_constructor_takes_int_like_arguments():
    torch.manual_seed(0)
    ref = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    torch.manual_seed(0)
    ours = Conv2d(np.int64(4), torch.tensor(6), (np.int32(3),), stride=(2,), padding=torch.tensor(1), groups=np.int8(2))
    assert (ours.in_channels, ours.out_channels, ours.groups) == (4, 6, 2)
    assert ours.kernel_size == (3, 3) and ours.stride == (2, 2) and ours.padding == (1, 1)
    assert all(type(v) is int for v in (ours.in_channels, ours.groups, *ours.kernel_size, *ours.padding))
    assert torch.equal(ours.weight, ref.weight)
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(ours(x), ref(x), **tol(torch.float32))


@EVERY_METHOD
@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_kernel_too_large_names_the_callers_sizes(method, mode):
    """Whatever the padding_mode, the error names the caller's input size and padding, not F.pad's result."""
    layer = Conv2d(1, 1, 7, padding=1, padding_mode=mode, method=method)
    with pytest.raises(ValueError, match=r"kernel larger than the padded input along the height") as error:
        layer(torch.randn(1, 1, 3, 3))
    assert "(input 3 + padding 2)" in str(error.value)  # 1 on each side
    with pytest.raises(ValueError) as zeros_error:
        Conv2d(1, 1, 7, padding=1, method=method)(torch.randn(1, 1, 3, 3))
    assert str(error.value) == str(zeros_error.value)


@EVERY_METHOD
def test_conv2d_trains_after_a_call_under_inference_mode(method):
    """Evaluating under torch.inference_mode leaves nothing behind that a later training step cannot use."""
    torch.manual_seed(0)
    layer = Conv2d(32, 32, 3, padding=1, method=method)
    x = torch.randn(2, 32, 24, 24)
    with torch.inference_mode():
        y_eval = layer(x)
    y = layer(x)
    y.sum().backward()
    torch.testing.assert_close(y.detach(), y_eval)
    assert layer.weight.grad is not None


def test_methods_compute_differently_but_agree():
    """method='fast' runs FastConv2dFunction (convlib.conv2d), method='im2col' Conv2dFunction: one node each."""
    x = torch.randn(2, 3, 8, 8)
    torch.manual_seed(0)
    fast = Conv2d(3, 4, 3, stride=2)
    torch.manual_seed(0)
    book = Conv2d(3, 4, 3, stride=2, method="im2col")
    assert fast.method == "fast" and book.method == "im2col"
    assert type(fast(x).grad_fn).__name__ == "FastConv2dFunctionBackward"
    assert type(book(x).grad_fn).__name__ == "Conv2dFunctionBackward"
    assert repr(book).endswith("stride=(2, 2), method='im2col')") and "method" not in repr(fast)
    torch.testing.assert_close(fast(x), book(x), **tol(torch.float32))


def test_exported():
    assert {"Conv2d", "Conv2dFunction"} <= set(convlib.__all__)
    assert convlib.autograd.FastConv2dFunction is convlib.backprop.FastConv2dFunction
