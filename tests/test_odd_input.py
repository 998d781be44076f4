"""Every algorithm entry point on odd input: gradients, empty batches, sparse methods in every precision and
order of derivative, tensors that are not dense, torch.func.vmap, memory formats, int-like arguments, and the
places where convlib deliberately differs from PyTorch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import torch_conv2d, torch_conv_transpose2d

import convlib
from convlib import kernels, nhwc, training
from convlib.transposed import TRANSPOSED_METHODS

CONV2D_METHODS = [
    convlib.conv2d_naive,
    convlib.conv2d_loops,
    convlib.conv2d_im2col,
    convlib.conv2d_shifted,
    convlib.conv2d_toeplitz,
]
DIFFERENTIABLE = [m for m in CONV2D_METHODS if m is not convlib.conv2d_loops]
name = lambda f: f.__name__  # noqa: E731


def transposed_method(method):
    """``convlib.conv_transpose2d`` with ``method`` fixed, named after it."""

    def conv(x, weight, bias=None, *args, **kwargs):
        return convlib.conv_transpose2d(x, weight, bias, *args, **kwargs, method=method)

    conv.__name__ = f"conv_transpose2d[{method}]"
    return conv


TRANSPOSED = [transposed_method(m) for m in TRANSPOSED_METHODS]
CL = torch.channels_last


def _randn(*shape, dtype=torch.float64, seed=0):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- gradients: kept, or refused with a clear error


def test_conv2d_loops_refuses_inputs_that_require_grad():
    """It computes on Python floats: with gradients wanted it raises instead of silently dropping them."""
    x, w, b = _randn(1, 2, 5, 5), _randn(3, 2, 3, 3), _randn(3)
    expected = F.conv2d(x, w, b)
    for k, which in enumerate(("input", "weight", "bias")):
        args = [x, w, b]
        args[k] = args[k].clone().requires_grad_()
        with pytest.raises(ValueError, match=f"cannot pass gradients.*for {which}, which requires grad.*conv2d_naive"):
            convlib.conv2d_loops(*args)
        with torch.no_grad():  # no gradient wanted: fine
            torch.testing.assert_close(convlib.conv2d_loops(*args), expected)
        torch.testing.assert_close(convlib.conv2d_loops(*(t.detach() for t in args)), expected)


@pytest.mark.parametrize("conv", DIFFERENTIABLE, ids=name)
def test_gradients_equal_pytorchs(conv):
    x, w, b = (_randn(2, 4, 6, 5, seed=1), _randn(6, 2, 3, 2, seed=2), _randn(6, seed=3))
    kw = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    ours = [t.clone().requires_grad_() for t in (x, w, b)]
    theirs = [t.clone().requires_grad_() for t in (x, w, b)]
    g = _randn(*F.conv2d(x, w, b, **kw).shape, seed=4)
    grads = torch.autograd.grad((conv(*ours, **kw) * g).sum(), ours)
    expected = torch.autograd.grad((F.conv2d(*theirs, **kw) * g).sum(), theirs)
    for got, exp in zip(grads, expected):
        torch.testing.assert_close(got, exp)


def test_corr2d_gradients():
    X, K = _randn(5, 6).requires_grad_(), _randn(2, 3, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(convlib.corr2d, (X, K))


# ---------------------------------------------------------------- empty batches (N = 0), as PyTorch answers them


@pytest.mark.parametrize("conv", CONV2D_METHODS, ids=name)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv2d_empty_batch(conv, dtype):
    x, w, b = torch.randn(0, 4, 7, 6, dtype=dtype), torch.randn(6, 2, 3, 2, dtype=dtype), torch.randn(6, dtype=dtype)
    for kw in (dict(stride=2, padding=1, groups=2), dict(padding="same", dilation=(2, 1), groups=2)):
        expected = F.conv2d(x, w, b, **kw)
        got = conv(x, w, b, **kw)
        assert got.shape == expected.shape and got.dtype == dtype
        assert got.is_contiguous()  # PyTorch's empty result is contiguous, even for channels-last operands
        assert conv(x, w.contiguous(memory_format=CL), b, **kw).is_contiguous()


@pytest.mark.parametrize("conv", DIFFERENTIABLE + TRANSPOSED, ids=name)
def test_empty_batch_gradients_are_zero(conv):
    # a 4 x 4 x 3 x 3 weight serves a convolution and a transposed one alike
    x, w, b = (t.requires_grad_() for t in (_randn(0, 4, 5, 5), _randn(4, 4, 3, 3), _randn(4)))
    conv(x, w, b).sum().backward()
    assert x.grad.shape == x.shape and torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, b * 0)


@pytest.mark.parametrize("conv", TRANSPOSED, ids=name)
def test_conv_transpose2d_empty_batch(conv):
    x, w, b = _randn(0, 4, 5, 3), _randn(4, 3, 3, 2), _randn(6)
    kw = dict(stride=2, padding=1, output_padding=1, groups=2, dilation=1)
    expected = F.conv_transpose2d(x, w, b, **kw)
    got = conv(x, w, b, **kw)
    assert got.shape == expected.shape == (0, 6, 10, 5)
    assert got.is_contiguous() and conv(x, w.contiguous(memory_format=CL), b, **kw).is_contiguous()


def test_patch_matrix_of_an_empty_batch():
    x = _randn(0, 3, 6, 5)
    assert convlib.im2col(x, 3, padding=1).shape == F.unfold(x, 3, padding=1).shape == (0, 27, 30)
    cols = _randn(0, 27, 30)
    assert convlib.col2im(cols, (6, 5), 3, padding=1).shape == F.fold(cols, (6, 5), 3, padding=1).shape
    assert convlib.patch_view(x, 3).shape == (0, 3, 3, 3, 4, 3)
    assert convlib.conv2d_macs(x.shape, (4, 3, 3, 3)) == 0


def test_entry_products_of_an_empty_batch_names_the_empty_axis():
    with pytest.raises(ValueError, match=r"index n=0 is out of range .* no entries along n"):
        convlib.entry_products(_randn(0, 3, 5, 5), _randn(2, 3, 3, 3), index=(0, 0, 0, 0))


def test_nhwc_empty_batch():
    Z, W = np.zeros((0, 6, 5, 3)), np.zeros((3, 2, 3, 4))
    for conv in (nhwc.conv_reference, nhwc.conv_matmul, nhwc.conv_im2col):
        assert conv(Z, W, stride=2, padding=1).shape == (0, 3, 3, 4)


# ---------------------------------------------------------------- the sparse methods: derivatives, precisions, vmap

SPARSE = [convlib.conv2d_toeplitz, transposed_method("matrix")]


def _sparse_case(conv, seed=0):
    """Small float64 tensors for ``conv`` (a convolution or the 'matrix' transposed one) and its keywords."""
    if conv is convlib.conv2d_toeplitz:
        x, w, kw = _randn(2, 4, 5, 4, seed=seed), _randn(4, 2, 3, 2, seed=seed + 1), dict(padding=1, groups=2)
    else:
        x, w, kw = _randn(2, 4, 3, 3, seed=seed), _randn(4, 1, 3, 2, seed=seed + 1), dict(stride=2, groups=2)
    reference = F.conv2d if conv is convlib.conv2d_toeplitz else F.conv_transpose2d
    return x, w, _randn(w.shape[0] if reference is F.conv2d else 2, seed=seed + 2), kw, reference


@pytest.mark.parametrize("conv", SPARSE, ids=name)
def test_sparse_methods_second_derivatives(conv):
    """d(dL/dK)/dX and every other second derivative: torch's own sparse CSR product has none for its values."""
    x, w, b, kw, reference = _sparse_case(conv)
    x, w, b = (t.requires_grad_() for t in (x, w, b))
    assert torch.autograd.gradgradcheck(lambda *t: conv(*t, **kw), (x, w, b))
    for first, second in ((w, x), (x, w), (w, w)):
        results = []
        for f in (conv, reference):
            g = torch.autograd.grad(f(x, w, b, **kw).pow(2).sum(), first, create_graph=True)[0]
            results.append(torch.autograd.grad(g.pow(2).sum(), second)[0])
        torch.testing.assert_close(*results)


def test_toeplitz_derivatives_when_every_tap_reads_padding():
    """A 1 x 1 image, padding 1, stride 2: M has no non-zero at all, and every derivative is zero."""
    x, w = _randn(1, 1, 1, 1).requires_grad_(), _randn(1, 1, 1, 1).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda x, w: convlib.conv2d_toeplitz(x, w, padding=1, stride=2), (x, w))


@pytest.mark.parametrize("conv", SPARSE, ids=name)
def test_sparse_methods_forward_mode(conv):
    x, w, b, kw, _ = _sparse_case(conv)
    assert torch.autograd.gradcheck(
        lambda *t: conv(*t, **kw), (x.requires_grad_(), w.requires_grad_(), b), check_forward_ad=True
    )


@pytest.mark.parametrize("conv", SPARSE, ids=name)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sparse_methods_half_precision(conv, dtype):
    """Summed in float32 and rounded once: PyTorch's half-precision result, to its own round-off."""
    x, w, b, kw, reference = _sparse_case(conv)
    got = conv(x.to(dtype), w.to(dtype), b.to(dtype), **kw)
    assert got.dtype == dtype
    torch.testing.assert_close(got, reference(x.to(dtype), w.to(dtype), b.to(dtype), **kw), rtol=2e-2, atol=2e-2)
    # rounded once: within one unit in the last place of the exact result on the same (rounded) numbers
    exact = reference(*(t.to(dtype).double() for t in (x, w, b)), **kw)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(got.double(), exact, rtol=eps, atol=eps * exact.abs().max().item())
    x1 = x[:1].to(dtype).requires_grad_()  # one image (a vector product) and a backward pass
    conv(x1, w.to(dtype), None, **kw).sum().backward()
    assert x1.grad.dtype == dtype


def test_doubly_blocked_toeplitz_bfloat16():
    w = _randn(2, 3, 3, 2).to(torch.bfloat16)
    M = convlib.doubly_blocked_toeplitz(w, (3, 5, 4))
    assert M.dtype == torch.bfloat16
    assert torch.equal(M, convlib.conv_matrix(w, (3, 5, 4), sparse=False))


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # vmap's loop over baddbmm_
@pytest.mark.parametrize("conv", [*DIFFERENTIABLE, *TRANSPOSED], ids=name)
def test_vmap(conv):
    """torch.func.vmap over the batch of inputs, over the weights, and per-example gradients."""
    from torch.func import grad, vmap

    transposed = "transpose" in conv.__name__
    xs = _randn(3, 2, 4, 5, 4, seed=5)
    ws = _randn(3, 4, 2, 3, 2, seed=6)
    reference = F.conv_transpose2d if transposed else F.conv2d
    kw = dict(stride=2, padding=1, groups=2)
    loop = torch.stack([reference(x, ws[0], None, **kw) for x in xs])
    torch.testing.assert_close(vmap(lambda x: conv(x, ws[0], None, **kw))(xs), loop)
    loop = torch.stack([reference(xs[0], w, None, **kw) for w in ws])
    torch.testing.assert_close(vmap(lambda w: conv(xs[0], w, None, **kw))(ws), loop)

    def loss(f):
        return lambda w, x: f(x, w, None, **kw).square().sum()

    per_example = vmap(grad(loss(conv)), in_dims=(None, 0))(ws[0], xs)
    torch.testing.assert_close(per_example, vmap(grad(loss(reference)), in_dims=(None, 0))(ws[0], xs))


def test_vmap_conv2d_loops_says_why_not():
    w = _randn(2, 3, 3, 3)
    with pytest.raises(TypeError, match="reads the numbers out of its tensors.*vmap.*conv2d_naive"):
        torch.func.vmap(lambda x: convlib.conv2d_loops(x, w))(_randn(2, 1, 3, 5, 5))


# ---------------------------------------------------------------- clear errors


def _layouts(t):
    """``t`` as the tensors of other layouts that an entry point might be handed by mistake."""
    dense_2d = t.reshape(t.shape[0], -1)
    return {
        "sparse_coo": t.to_sparse(),
        "sparse_csr": dense_2d.to_sparse_csr(),
        "sparse_csc": dense_2d.to_sparse_csc(),
        "mkldnn": t.float().to_mkldnn(),
    }


X4, W4, WT4 = _randn(1, 4, 6, 6), _randn(4, 2, 3, 3), _randn(4, 1, 3, 3)
ENTRY_POINTS = {  # name -> (call, its tensor arguments, their names)
    **{f.__name__: (lambda *t, f=f: f(*t, groups=2), (X4, W4), ("input", "weight")) for f in CONV2D_METHODS},
    **{f.__name__: (lambda *t, f=f: f(*t, groups=2), (X4, WT4), ("input", "weight")) for f in TRANSPOSED},
    "entry_products": (
        lambda x, w: convlib.entry_products(x, w, groups=2, index=(0, 0, 0, 0)),
        (X4, W4),
        ("input", "weight"),
    ),
    "im2col": (lambda x: convlib.im2col(x, 3), (X4,), ("input",)),
    "col2im": (lambda c: convlib.col2im(c, (6, 6), 3), (_randn(1, 36, 16),), ("cols",)),
    "patch_view": (lambda x: convlib.patch_view(x, 3), (X4,), ("xp",)),
    "insert_zeros": (lambda x: convlib.insert_zeros(x, 2), (X4,), ("x",)),
    "flip_swap_kernel": (convlib.flip_swap_kernel, (W4,), ("weight",)),
    "conv_matrix": (lambda w: convlib.conv_matrix(w, (4, 6, 6), groups=2), (W4,), ("weight",)),
    "conv_matrix_loops": (lambda w: convlib.conv_matrix_loops(w, (4, 6, 6), groups=2), (W4,), ("weight",)),
    "doubly_blocked_toeplitz": (lambda w: convlib.doubly_blocked_toeplitz(w, (2, 6, 6)), (W4,), ("weight",)),
    "corr2d": (convlib.corr2d, (X4[0, 0], W4[0, 0]), ("X", "K")),
    "stack_kernels": (lambda K: kernels.stack_kernels([K]), (W4[0, 0],), ("kernels[0]",)),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("layout", ["sparse_coo", "sparse_csr", "sparse_csc", "mkldnn"])
def test_tensors_that_are_not_dense_get_a_clear_error(entry, layout):
    """Each tensor argument in turn, sparse or mkldnn: a TypeError that names it, its layout and the fix."""
    call, tensors, names = ENTRY_POINTS[entry]
    call(*tensors)  # dense: fine
    for k, arg in enumerate(names):
        args = list(tensors)
        args[k] = _layouts(args[k])[layout]
        words = rf"{re.escape(arg)} must be a dense \(strided\) tensor, got layout {re.escape(str(args[k].layout))}"
        with pytest.raises(TypeError, match=words + r".*to_dense\(\)"):
            call(*args)


def test_patch_view_needs_a_batch_axis():
    with pytest.raises(ValueError, match=r"xp must be a 4-D N x C x H x W tensor .* xp.unsqueeze\(0\)"):
        convlib.patch_view(_randn(3, 6, 6), 3)
    with pytest.raises(TypeError, match="xp must be a torch.Tensor"):
        convlib.patch_view(np.zeros((1, 3, 6, 6)), 3)


def test_conv_transpose2d_method_that_is_not_a_string():
    with pytest.raises(TypeError, match=r"method must be one of the strings \('scatter'"):
        convlib.conv_transpose2d(_randn(1, 2, 3, 3), _randn(2, 1, 3, 3), method=["scatter"])


def test_nhwc_reference_on_negative_strides():
    """A flipped NumPy view (negative strides) works in all three NHWC functions."""
    rng = np.random.default_rng(0)
    Z, W = rng.standard_normal((2, 6, 5, 3)), rng.standard_normal((3, 2, 3, 4))
    Zf, Wf = Z[:, ::-1], W[::-1]
    assert Zf.strides[1] < 0 and Wf.strides[0] < 0
    expected = nhwc.conv_matmul(Zf.copy(), Wf.copy(), stride=(2, 1), padding=1)
    for conv in (nhwc.conv_reference, nhwc.conv_matmul, nhwc.conv_im2col):
        np.testing.assert_allclose(conv(Zf, Wf, stride=(2, 1), padding=1), expected, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- memory formats: as PyTorch returns them

# PyTorch's results for channels-last operands are computed in a child process: PyTorch 2.14.1 itself crashes on
# some channels-last weights (see conftest.on_contiguous), and a crash there must fail this test, not the run.
_LAYOUT_CASES = {  # name -> (input layout, weight layout, N, C)
    "input channels-last": ("cl", "nchw", 2, 4),
    "weight channels-last": ("nchw", "cl", 2, 4),
    "both channels-last": ("cl", "cl", 2, 4),
    "sliced channels-last input": ("cl-sliced", "nchw", 2, 4),
    "one-channel channels-last input": ("cl", "nchw", 2, 1),
    "one image, channels-last input": ("cl", "nchw", 1, 4),
    "H and W swapped in memory": ("hw-swapped", "hw-swapped", 2, 4),
    "unbatched, channels-last weight": ("unbatched", "cl", 1, 4),
    "unbatched HWC storage": ("unbatched-hwc", "nchw", 1, 4),
}
_MAKE_LAYOUTS = """
import torch
def stored(t, layout):
    if layout == "nchw":
        return t
    if layout == "cl":  # NHWC storage (for C = 1 too, where .contiguous(memory_format=...) would change nothing)
        return t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    if layout == "cl-sliced":
        big = torch.cat([t, t], dim=2).contiguous(memory_format=torch.channels_last)
        return big[:, :, ::2]
    if layout == "hw-swapped":
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    if layout == "unbatched":
        return t[0]
    if layout == "unbatched-hwc":
        return t[0].permute(1, 2, 0).contiguous().permute(2, 0, 1)
def operands(case, dtype, transposed):
    x_layout, w_layout, N, C = case
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, C, 7, 6, dtype=dtype, generator=g)
    shape = (C, 3, 3, 2) if transposed else (3, C, 3, 2)
    w = torch.randn(*shape, dtype=dtype, generator=g)
    return stored(x, x_layout), stored(w, w_layout)
"""


def _layout_facts(y):
    return [list(y.stride()), y.is_contiguous(), y.is_contiguous(memory_format=CL) if y.dim() == 4 else None]


@pytest.fixture(scope="module")
def pytorch_layouts():
    """PyTorch's result strides for every case of _LAYOUT_CASES, float32 and float64, computed in a child process."""
    script = _MAKE_LAYOUTS + textwrap.dedent(
        f"""
        import json, sys
        import torch.nn.functional as F
        facts = {{}}
        for name, case in {_LAYOUT_CASES!r}.items():
            for dtype in (torch.float32, torch.float64):
                for transposed, f in ((False, F.conv2d), (True, F.conv_transpose2d)):
                    x, w = operands(case, dtype, transposed)
                    y = f(x, w, None, stride=2, padding=1)
                    cl = y.is_contiguous(memory_format=torch.channels_last) if y.dim() == 4 else None
                    facts[f"{{name}}|{{dtype}}|{{transposed}}"] = [list(y.stride()), y.is_contiguous(), cl]
        json.dump(facts, sys.stdout)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"PyTorch failed on a layout case (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(done.stdout)


@pytest.mark.parametrize("case", _LAYOUT_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("conv", CONV2D_METHODS + TRANSPOSED, ids=name)
def test_memory_format_follows_pytorch(pytorch_layouts, case, dtype, conv):
    namespace = {}
    exec(_MAKE_LAYOUTS, namespace)
    transposed = "transpose" in conv.__name__
    x, w = namespace["operands"](_LAYOUT_CASES[case], dtype, transposed)
    y = conv(x, w, None, stride=2, padding=1)
    assert _layout_facts(y) == pytorch_layouts[f"{case}|{dtype}|{transposed}"]
    reference = torch_conv_transpose2d if transposed else torch_conv2d
    torch.testing.assert_close(y, reference(x, w, None, stride=2, padding=1), rtol=1e-4, atol=1e-4)


def test_channels_last_rule_reads_strides_only():
    """The rule works on strides alone, hence inside vmap; ambiguous shapes fall back to NCHW as in PyTorch."""
    from convlib.args import suggests_channels_last

    assert suggests_channels_last(_randn(2, 3, 4, 5).contiguous(memory_format=CL))
    assert suggests_channels_last(_randn(2, 4, 5, 1).permute(0, 3, 1, 2))  # C = 1 stored channels-last
    assert not suggests_channels_last(_randn(2, 1, 4, 5).contiguous(memory_format=CL))  # a no-op when C = 1
    assert not suggests_channels_last(_randn(2, 3, 4, 5))
    assert not suggests_channels_last(_randn(2, 1, 1, 1).contiguous(memory_format=CL))  # ambiguous: NCHW
    assert not suggests_channels_last(_randn(1, 3, 4, 5).expand(2, 3, 4, 5))
    assert not suggests_channels_last(_randn(3, 4, 5))
    seen = []
    torch.func.vmap(lambda t: seen.append(suggests_channels_last(t)) or t)(_randn(2, 3, 4, 5, 6))
    assert seen == [False]


# ---------------------------------------------------------------- int-like arguments, as PyTorch accepts them

INT_LIKE = {"numpy int64": np.int64, "0-d tensor": lambda v: torch.tensor(v), "one-element tuple": lambda v: (v,)}


@pytest.mark.parametrize("kind", INT_LIKE)
def test_int_like_arguments_everywhere(kind):
    """Every public entry point gives the same answer for an int and for its int-like forms."""
    like = INT_LIKE[kind]
    entry = like if kind != "one-element tuple" else int  # an entry of a pair is a plain number
    pairs = {"stride": 2, "padding": 1, "dilation": 1}
    x, w = _randn(2, 4, 7, 6), _randn(6, 2, 3, 2)
    for conv in CONV2D_METHODS:
        got = conv(x, w, None, **{k: like(v) for k, v in pairs.items()}, groups=np.int64(2))
        torch.testing.assert_close(got, F.conv2d(x, w, None, **pairs, groups=2))
    for conv in TRANSPOSED:
        got = conv(x, w.transpose(0, 1).reshape(4, 3, 3, 2), None, like(2), like(1), like(1), np.int64(2), like(1))
        torch.testing.assert_close(got, F.conv_transpose2d(x, w.transpose(0, 1).reshape(4, 3, 3, 2), None, 2, 1, 1, 2))
    assert convlib.conv_output_size(like(7), like(3), like(2), like(1), like(1)) == 4
    assert convlib.transposed_output_size(like(4), like(3), like(2), like(1), like(1), like(1)) == 8
    assert convlib.conv2d_output_shape((entry(7), 6), like(3), like(2), like(1)) == (4, 3)
    macs = convlib.conv2d_macs((np.int64(2), 4, 7, 6), w.shape, like(2), like(1), groups=np.int64(2))
    assert macs == convlib.conv2d_macs((2, 4, 7, 6), tuple(w.shape), 2, 1, groups=2) == 2 * 6 * 4 * 4 * 2 * 3 * 2
    cols = convlib.im2col(x, like(3), like(2), like(1), like(1))
    assert torch.equal(cols, F.unfold(x, 3, 1, 1, 2))
    torch.testing.assert_close(
        convlib.col2im(cols, (7, entry(6)), like(3), like(2), like(1)), F.fold(cols, (7, 6), 3, 1, 1, 2)
    )
    assert convlib.patch_view(x, like(3), like(2)).shape == (2, 4, 3, 3, 3, 2)
    assert torch.equal(convlib.insert_zeros(x, like(2)), convlib.insert_zeros(x, 2))
    assert torch.equal(convlib.flip_swap_kernel(w, np.int64(2)), convlib.flip_swap_kernel(w, 2))
    M = convlib.conv_matrix(w, (np.int64(4), 7, entry(6)), like(2), like(1), groups=np.int64(2))
    torch.testing.assert_close(M.to_dense(), convlib.conv_matrix_loops(w, (4, 7, 6), 2, 1, groups=2))
    ep = convlib.entry_products(x, w, None, like(2), like(1), groups=2, index=(np.int64(1), 2, torch.tensor(3), 1))
    torch.testing.assert_close(ep.value, F.conv2d(x, w, None, 2, 1, groups=2)[1, 2, 3, 1])
    assert torch.equal(kernels.gaussian(np.int64(5), np.float64(1.0)), kernels.gaussian(5, 1.0))
    assert torch.equal(
        kernels.stack_kernels([kernels.sobel_x()], np.int64(2)), kernels.stack_kernels([kernels.sobel_x()], 2)
    )
    assert training.small_cnn(widths=(np.int64(2), torch.tensor(3)))[3].out_channels == 3


def test_int_like_training_arguments():
    X, y = _randn(8, 3, 32, 32, dtype=torch.float32), torch.arange(8) % 10
    losses = training.train(training.small_cnn(widths=(2, 2)), X, y, np.int64(2), np.int64(4), progress=False)
    assert losses.shape == (2,)
    assert 0 <= training.accuracy(training.small_cnn(widths=(2, 2)), X, y, batch_size=np.int64(3)) <= 1


# ---------------------------------------------------------------- deliberate differences from PyTorch, pinned


def test_weight_with_no_input_channels_is_refused():
    """PyTorch answers a weight with no input channels with an empty result (O = 0 channels!); convlib raises."""
    x, w = torch.randn(1, 0, 6, 6), torch.randn(2, 0, 3, 3)
    assert F.conv2d(x, w).shape == (1, 0, 4, 4)  # not even the 2 out-channels the weight asks for
    for conv in CONV2D_METHODS:
        with pytest.raises(ValueError, match="must not have an empty"):
            conv(x, w)


def test_transposed_convolution_with_an_empty_output_is_refused_for_every_batch():
    """PyTorch raises for an output of no rows, except on an empty batch, where it returns an empty result
    silently; convlib checks an empty batch's arguments as it does any other's (so does PyTorch's conv2d)."""
    w = torch.randn(2, 1, 1, 1)
    assert F.conv_transpose2d(torch.randn(0, 2, 2, 2), w, padding=1).shape == (0, 1, 0, 0)
    with pytest.raises(RuntimeError, match="Output size is too small"):
        F.conv_transpose2d(torch.randn(1, 2, 2, 2), w, padding=1)
    for N in (0, 1):
        for conv in TRANSPOSED:
            with pytest.raises(ValueError, match="would be empty along the height.*use a smaller padding"):
                conv(torch.randn(N, 2, 2, 2), w, None, 1, 1)


# ---------------------------------------------------------------- PyTorch's own crash, kept out of the test process

_CRASH = """
import torch, torch.nn.functional as F
torch.manual_seed(0)
x, w, b = torch.randn(3, 3, 7, 1), torch.randn(3, 3, 3, 1).to(memory_format=torch.channels_last), torch.randn(3)
args = (b, (1, 3), (2, 2), (1, 3))
"""


def test_reference_path_avoids_pytorchs_channels_last_crash(tmp_path):
    """F.conv2d crashes (segmentation fault, torch 2.14.1) on a channels-last weight; the tests' reference does not.

    If a later PyTorch fixes the crash, the direct call must then give the contiguous reference's values.
    """
    saved = tmp_path / "y.pt"
    direct = _CRASH + f"torch.save(F.conv2d(x, w, *args), {str(saved)!r})"
    done = subprocess.run([sys.executable, "-c", direct], capture_output=True, text=True, timeout=120)
    via_helper = _CRASH + "import conftest\nprint(tuple(conftest.torch_conv2d(x, w, *args).shape))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    safe = subprocess.run([sys.executable, "-c", via_helper], capture_output=True, text=True, timeout=120, env=env)
    assert safe.returncode == 0, safe.stderr[-2000:]
    assert safe.stdout.strip() == "(3, 3, 9, 2)"
    if done.returncode == 0:  # fixed upstream: then it must agree with the contiguous reference
        namespace = {}
        exec(_CRASH, namespace)
        expected = torch_conv2d(namespace["x"], namespace["w"], *namespace["args"])
        torch.testing.assert_close(torch.load(saved), expected)
    else:  # killed by a signal (a negative return code), not a Python exception
        assert done.returncode < 0, done.stderr[-2000:]
