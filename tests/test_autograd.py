"""convlib.Conv2dFunction and convlib.Conv2d against PyTorch: values, gradients, initialisation, state_dict."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import conv_configs, tol
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import convlib
from convlib import Conv2d, Conv2dFunction


def _layers(weight, bias, kw, padding_mode="zeros"):
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
    ref, ours = nn.Conv2d(**args), Conv2d(**args)
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


@given(cfg=conv_configs(allow_same=True))
def test_function_forward_and_gradients_equal_F_conv2d(cfg):
    x, weight, bias, kw = cfg
    inputs = [t.clone().requires_grad_(True) for t in (x, weight) + ((bias,) if bias is not None else ())]
    ref = [t.detach().clone().requires_grad_(True) for t in inputs]
    b, rb = (inputs[2], ref[2]) if bias is not None else (None, None)
    y = Conv2dFunction.apply(inputs[0], inputs[1], b, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
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


@given(cfg=conv_configs(allow_same=True))
def test_function_gradcheck_float64(cfg):
    """Our backward against finite differences of our own forward (float64), for x, weight and bias."""
    x, weight, bias, kw = _small(cfg)
    inputs = (x.requires_grad_(True), weight.requires_grad_(True), None if bias is None else bias.requires_grad_(True))
    fn = lambda x, w, b: Conv2dFunction.apply(x, w, b, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])  # noqa: E731
    # fast mode: the Jacobian against finite differences along random directions (the full Jacobian is
    # compared entry by entry on fixed configurations in test_function_gradgradcheck)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


@pytest.mark.parametrize("seed", range(6))
def test_function_gradgradcheck(seed):
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
    fn = lambda x, w, b: Conv2dFunction.apply(x, w, b, stride, padding, dilation, groups)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))  # the full Jacobian, entry by entry
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


def test_function_is_one_node_without_autograd_inside():
    """The forward is not traced by autograd: the graph has one node whose inputs are x, weight and bias."""
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    y = Conv2dFunction.apply(x, w, b, 1, 1, 1, 1)
    assert type(y.grad_fn).__name__ == "Conv2dFunctionBackward"
    leaves = [fn.variable for fn, _ in y.grad_fn.next_functions]
    assert leaves[0] is x and leaves[1] is w and leaves[2] is b


def test_function_needs_only_the_gradients_asked_for():
    x = torch.randn(1, 2, 5, 5)
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    y = Conv2dFunction.apply(x, w, None, 1, 0, 1, 1)
    (gw,) = torch.autograd.grad(y.sum(), [w])
    torch.testing.assert_close(gw, torch.autograd.grad(F.conv2d(x, w).sum(), [w])[0])
    assert x.grad is None


def test_function_unbatched_input():
    x = torch.randn(2, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    y = Conv2dFunction.apply(x, w, None, 2, 1, 1, 1)
    assert y.shape == (3, 4, 4)
    torch.testing.assert_close(y, F.conv2d(x, w, None, 2, 1))
    assert torch.autograd.gradcheck(lambda x, w: Conv2dFunction.apply(x, w, None, 2, 1, 1, 1), (x, w))


def test_function_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="input has 4 channels"):
        Conv2dFunction.apply(torch.randn(1, 4, 5, 5), torch.randn(2, 3, 3, 3), None, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="kernel larger than the padded input"):
        Conv2dFunction.apply(torch.randn(1, 1, 2, 2), torch.randn(1, 1, 3, 3), None, 1, 0, 1, 1)


# ---------------------------------------------------------------- Conv2d: a drop-in nn.Conv2d


@given(cfg=conv_configs(allow_same=True))
def test_conv2d_forward_backward_equal_nn_conv2d_float32(cfg):
    x, weight, bias, kw = cfg
    x, weight, bias = x.float(), weight.float(), None if bias is None else bias.float()
    ref, ours = _layers(weight, bias, kw)
    grad_y = torch.randn(F.conv2d(x, weight, bias, **kw).shape)
    y_ref, g_ref = _forward_backward(ref, x, grad_y)
    y, g = _forward_backward(ours, x, grad_y)
    torch.testing.assert_close(y, y_ref, **tol(torch.float32))
    assert len(g) == len(g_ref)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, **tol(torch.float32))


@given(cfg=conv_configs(max_groups=2), mode=st.sampled_from(["reflect", "replicate", "circular"]))
def test_conv2d_padding_modes_equal_nn_conv2d(cfg, mode):
    x, weight, bias, kw = cfg
    (ph, pw) = kw["padding"] if isinstance(kw["padding"], tuple) else (kw["padding"],) * 2
    ref, ours = _layers(weight, bias, kw, padding_mode=mode)
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


@given(cfg=conv_configs(allow_same=True))
def test_conv2d_gradcheck_float64(cfg):
    x, weight, bias, kw = _small(cfg)
    _, layer = _layers(weight, bias, kw)
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
def test_conv2d_same_parameters_init_and_attributes_as_nn_conv2d(args):
    torch.manual_seed(0)
    ref = nn.Conv2d(**args)
    torch.manual_seed(0)
    ours = Conv2d(**args)
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
    assert repr(ours).replace("Conv2d", "X") == repr(ref).replace("Conv2d", "X")
    # state_dicts move both ways
    other = nn.Conv2d(**args)
    other.load_state_dict(ours.state_dict())
    x = torch.randn(2, args["in_channels"], 9, 8, dtype=args.get("dtype", torch.float32))
    torch.testing.assert_close(ours(x), other(x), **tol(x.dtype))


def test_conv2d_in_a_network_trains_like_nn_conv2d():
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
    for conv in (nn.Conv2d, Conv2d):
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


def test_exported():
    assert {"Conv2d", "Conv2dFunction"} <= set(convlib.__all__)
