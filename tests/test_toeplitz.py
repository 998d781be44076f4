"""convlib.toeplitz against PyTorch: conv_matrix, conv2d_toeplitz, conv_matrix_loops, doubly_blocked_toeplitz."""

from __future__ import annotations

import pytest
import torch
from conftest import as_pair, check_conv, conv_configs, tol, torch_conv2d, torch_conv_transpose2d
from hypothesis import given
from hypothesis import strategies as st
from test_core import BAD_CONV_CALLS, WT, X

import convlib


def _matrix_args(kw):
    return dict(stride=kw["stride"], padding=kw["padding"], dilation=kw["dilation"], groups=kw["groups"])


def _jacobian(weight, C, H, W, **kw):
    """M computed by PyTorch itself: column k of M is the convolution of the k-th basis image."""
    basis = torch.eye(C * H * W, dtype=weight.dtype).reshape(C * H * W, C, H, W)
    return torch_conv2d(basis, weight, **kw).reshape(C * H * W, -1).T


# ---------------------------------------------------------------- equal to PyTorch, property-based


@given(cfg=conv_configs(allow_same=True))
def test_conv2d_toeplitz_equals_F_conv2d(cfg):
    check_conv(convlib.conv2d_toeplitz, cfg)


@given(cfg=conv_configs(max_groups=2))
def test_conv2d_toeplitz_unbatched_input(cfg):
    check_conv(convlib.conv2d_toeplitz, cfg, unbatched=True)


@given(cfg=conv_configs(allow_same=True))
def test_conv_matrix_times_flattened_image_is_conv2d(cfg):
    """y[n].flatten() == M @ x[n].flatten() for every image, sparse and dense."""
    x, weight, _, kw = cfg
    N, C, H, W = x.shape
    expected = torch_conv2d(x, weight, **kw).reshape(N, -1)
    M = convlib.conv_matrix(weight, (C, H, W), **_matrix_args(kw))
    M_dense = convlib.conv_matrix(weight, (H, W), **_matrix_args(kw), sparse=False)
    assert M.layout == torch.sparse_csr and M_dense.layout == torch.strided
    assert M.shape == M_dense.shape == (expected.shape[1], C * H * W)
    assert M.dtype == M_dense.dtype == weight.dtype
    assert torch.equal(M.to_dense(), M_dense)
    for n in range(N):
        torch.testing.assert_close(M @ x[n].flatten(), expected[n], **tol(x.dtype))
        torch.testing.assert_close(M_dense @ x[n].flatten(), expected[n], **tol(x.dtype))


@given(cfg=conv_configs(allow_same=True))
def test_conv_matrix_equals_jacobian_and_counts_nonzeros(cfg):
    """M is the Jacobian of F.conv2d; its stored entries are exactly the Jacobian's non-zeros."""
    x, weight, _, kw = cfg
    _, C, H, W = x.shape
    J = _jacobian(weight, C, H, W, **kw)
    M = convlib.conv_matrix(weight, (C, H, W), **_matrix_args(kw))
    torch.testing.assert_close(M.to_dense(), J, rtol=0, atol=0)  # one product per entry: exact
    assert M.values().numel() == int(torch.count_nonzero(J))  # randn weights have no zeros
    O, Cg, kh, kw_ = weight.shape
    Ho, Wo = torch_conv2d(x, weight, **kw).shape[2:]
    no_padding = kw["padding"] in ("valid", 0, (0, 0))
    if no_padding:
        assert M.values().numel() == O * Ho * Wo * Cg * kh * kw_
    else:
        assert M.values().numel() <= O * Ho * Wo * Cg * kh * kw_


@given(cfg=conv_configs())
def test_conv_matrix_loops_equals_conv_matrix(cfg):
    x, weight, _, kw = cfg
    size = tuple(x.shape[1:])
    loops = convlib.conv_matrix_loops(weight, size, **_matrix_args(kw))
    assert torch.equal(loops, convlib.conv_matrix(weight, size, **_matrix_args(kw), sparse=False))


@given(
    O=st.integers(1, 3),
    C=st.integers(1, 3),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    dh=st.integers(0, 4),
    dw=st.integers(0, 4),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_doubly_blocked_toeplitz_equals_conv_matrix(O, C, kh, kw, dh, dw, seed, dtype):
    weight = torch.randn(O, C, kh, kw, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    H, W = kh + dh, kw + dw
    M = convlib.doubly_blocked_toeplitz(weight, (C, H, W))
    assert M.dtype == dtype
    assert torch.equal(M, convlib.conv_matrix(weight, (H, W), sparse=False))


def test_block_rows_pattern():
    """Kernel row r - i sits in block (i, r): a Toeplitz pattern of block indices."""
    from convlib.toeplitz import block_rows

    B = block_rows(kh=2, Ho=4, H=5)
    assert B.tolist() == [[0, 1, -1, -1, -1], [-1, 0, 1, -1, -1], [-1, -1, 0, 1, -1], [-1, -1, -1, 0, 1]]


# ---------------------------------------------------------------- the transpose


@given(cfg=conv_configs())
def test_adjoint_identity(cfg):
    """<a, M x> == <M^T a, x>: the defining property of the transpose."""
    x, weight, _, kw = cfg
    x, weight = x[0].double(), weight.double()
    M = convlib.conv_matrix(weight, tuple(x.shape), **_matrix_args(kw))
    a = torch.randn(M.shape[0], dtype=torch.float64)
    lhs = torch.dot(a, M @ x.flatten())
    rhs = torch.dot(M.mT @ a, x.flatten())
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


@given(cfg=conv_configs())
def test_transpose_is_conv_transpose2d(cfg):
    """M^T applied to an output-shaped tensor is F.conv_transpose2d (with the output_padding that gives H x W)."""
    x, weight, _, kw = cfg
    _, C, H, W = x.shape
    (sh, sw), (ph, pw), (dh, dw) = as_pair(kw["stride"]), as_pair(kw["padding"]), as_pair(kw["dilation"])
    y = torch_conv2d(x, weight, **kw)
    a = torch.randn_like(y)
    M = convlib.conv_matrix(weight, (C, H, W), **_matrix_args(kw))
    kh, kw_ = weight.shape[2:]
    out_pad = (
        H - ((y.shape[2] - 1) * sh - 2 * ph + dh * (kh - 1) + 1),
        W - ((y.shape[3] - 1) * sw - 2 * pw + dw * (kw_ - 1) + 1),
    )
    expected = torch_conv_transpose2d(
        a, weight, None, kw["stride"], kw["padding"], out_pad, kw["groups"], kw["dilation"]
    )
    got = (M.mT @ a.reshape(a.shape[0], -1).T).T.reshape(expected.shape)
    torch.testing.assert_close(got, expected, **tol(x.dtype))


# ---------------------------------------------------------------- gradients, types, devices


@given(cfg=conv_configs(max_groups=2))
def test_gradients_flow_to_weight_and_input(cfg):
    x, weight, bias, kw = cfg
    x, weight = x.double(), weight.double()
    bias = None if bias is None else bias.double()
    x1, w1 = x.clone().requires_grad_(), weight.clone().requires_grad_()
    x2, w2 = x.clone().requires_grad_(), weight.clone().requires_grad_()
    g = torch.randn_like(torch_conv2d(x, weight, bias, **kw))
    (convlib.conv2d_toeplitz(x1, w1, bias, **kw) * g).sum().backward()
    (torch_conv2d(x2, w2, bias, **kw) * g).sum().backward()
    torch.testing.assert_close(w1.grad, w2.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-10, atol=1e-10)


def test_conv_matrix_of_an_nn_conv2d_layer():
    """The question readers ask: the fully-connected matrix of a Conv2d layer, straight from its weight."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    x = torch.randn(2, 3, 9, 7)
    M = convlib.conv_matrix(conv.weight, (3, 9, 7), stride=2, padding=1)
    fc = torch.nn.Linear(3 * 9 * 7, M.shape[0])
    with torch.no_grad():
        fc.weight.copy_(M.to_dense())
        fc.bias.copy_(conv.bias.repeat_interleave(M.shape[0] // 4))
    torch.testing.assert_close(fc(x.flatten(1)), conv(x).flatten(1), rtol=1e-5, atol=1e-5)


def test_sparse_format_and_sizes():
    """16 -> 16 channels, 32 x 32, 3 x 3 (the chapter's build target): int32 CSR, nnz, bytes."""
    weight = torch.randn(16, 16, 3, 3)
    M = convlib.conv_matrix(weight, (16, 32, 32))
    assert M.shape == (16 * 30 * 30, 16 * 32 * 32)
    assert M.crow_indices().dtype == M.col_indices().dtype == torch.int32
    nnz = 16 * 30 * 30 * 16 * 3 * 3
    assert M.values().numel() == nnz == 2_073_600
    nbytes = M.values().nbytes + M.col_indices().nbytes + M.crow_indices().nbytes
    assert nbytes == nnz * (4 + 4) + (16 * 30 * 30 + 1) * 4 < 30e6
    # with padding 1: fewer entries per row on the border, rows start where the previous one ends
    Mp = convlib.conv_matrix(weight, (16, 32, 32), padding=1)
    counts = Mp.crow_indices().diff().reshape(16, 32, 32)
    assert counts[0, 0, 0] == 16 * 4 and counts[0, 0, 5] == 16 * 6 and counts[0, 5, 5] == 16 * 9
    assert int(counts.sum()) == Mp.values().numel()


def test_conv_matrix_on_the_weights_device():
    """Built with torch ops only, on the weight's device (the CPU here; a GPU too where one is present)."""
    weight = torch.randn(4, 3, 3, 3)
    M = convlib.conv_matrix(weight, (3, 8, 8), sparse=False)
    assert M.device == weight.device
    if torch.cuda.is_available():  # exercised where a GPU is present
        Mc = convlib.conv_matrix(weight.cuda(), (3, 8, 8))
        assert Mc.device.type == "cuda"
        torch.testing.assert_close(Mc.to_dense().cpu(), M)


# ---------------------------------------------------------------- bad input: clear errors


@pytest.mark.parametrize("args,kwargs,exc,words", BAD_CONV_CALLS)
def test_conv2d_toeplitz_bad_input_raises_clear_error(args, kwargs, exc, words):
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        convlib.conv2d_toeplitz(*args, **kwargs)


BAD_MATRIX_CALLS = [
    ((WT, (4, 6)), {"sparse": "yes"}, TypeError, "sparse must be True or False"),
    ((WT, 6), {}, TypeError, "input_size must be (H, W) or (C, H, W)"),
    ((WT, (1, 4, 6, 6)), {}, TypeError, "input_size must be (H, W) or (C, H, W)"),
    ((WT, (6.0, 6)), {}, TypeError, "input_size must be (H, W) or (C, H, W)"),
    ((WT, (0, 6)), {}, ValueError, "input_size must not have an empty dimension"),
    ((WT, (3, 6, 6)), {}, ValueError, "input has 3 channels but weight expects"),
    ((WT, (2, 2)), {}, ValueError, "kernel larger than the padded input along the height"),
    ((WT, (6, 6)), {"dilation": (1, 3)}, ValueError, "kernel larger than the padded input along the width"),
    ((WT, (6, 6)), {"stride": 0}, ValueError, "stride must be at least 1"),
    ((WT, (6, 6)), {"padding": -1}, ValueError, "padding must not be negative"),
    ((WT, (6, 6)), {"padding": "full"}, ValueError, "padding must be an int, a pair, 'valid' or 'same'"),
    ((WT, (6, 6)), {"padding": "same", "stride": 2}, ValueError, "padding='same' needs stride 1"),
    ((WT, (6, 6)), {"groups": 0}, ValueError, "groups must be at least 1"),
    ((torch.randn(3, 2, 3, 3), (4, 6, 6)), {"groups": 2}, ValueError, "does not divide the weight's 3 out-channels"),
    ((torch.randn(2, 2, 3, 3), (3, 6, 6)), {"groups": 2}, ValueError, "does not divide the input's 3 channels"),
    ((WT[0], (6, 6)), {}, ValueError, "weight must be 4-D"),
    ((WT.long(), (6, 6)), {}, TypeError, "floating-point dtype"),
    ((WT.numpy(), (6, 6)), {}, TypeError, "weight must be a torch.Tensor"),
    ((torch.randn(2, 0, 3, 3), (6, 6)), {}, ValueError, "weight must not have an empty dimension"),
]


@pytest.mark.parametrize("build", [convlib.conv_matrix, convlib.conv_matrix_loops], ids=lambda f: f.__name__)
@pytest.mark.parametrize("args,kwargs,exc,words", BAD_MATRIX_CALLS)
def test_conv_matrix_bad_input(build, args, kwargs, exc, words):
    if "sparse" in kwargs and build is convlib.conv_matrix_loops:
        pytest.skip("conv_matrix_loops is always dense")
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)")):
        build(*args, **kwargs)


def test_doubly_blocked_toeplitz_bad_input():
    with pytest.raises(ValueError, match="input has 3 channels"):
        convlib.doubly_blocked_toeplitz(WT, (3, 6, 6))
    with pytest.raises(ValueError, match="kernel larger than the padded input"):
        convlib.doubly_blocked_toeplitz(WT, (2, 6))
    assert convlib.doubly_blocked_toeplitz(WT, X.shape[1:]).shape == (2 * 4 * 4, 4 * 6 * 6)
