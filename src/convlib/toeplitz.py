"""The convolution as one big matrix: ``y.flatten() = M @ x.flatten()``.

For one image, a 2-D convolution is a linear map from the flattened input (C*H*W numbers, row-major over
(c, r, q)) to the flattened output (O*Ho*Wo numbers, row-major over (o, i, j)), so it *is* a matrix ``M`` of
shape (O*Ho*Wo) x (C*H*W). Row ``(o, i, j)`` of ``M`` is filter ``o`` laid into a zero image at the place
window (i, j) reads:

    M[(o, i, j), (c, i*s + u*d - p, j*s + v*d - p)] = K[o, c - gamma(o)*C/g, u, v]

with K the weight and g the number of groups, for every in-channel ``c`` of ``o``'s group ``gamma(o)`` (one of
0, ..., g - 1) and every tap (u, v) whose pixel lies inside the input (taps that land on zero padding have no
column). Everything else is zero.

Three constructions, all equal:

- ``conv_matrix``: the formula above evaluated for all entries at once by index arithmetic (broadcast
  integer tensors, no Python loop over output positions), returned as a **torch sparse CSR tensor** (or dense
  on request). This is the one to use.
- ``conv_matrix_loops``: the construction of the Stack Overflow answer to "Is there a function in PyTorch for
  converting convolutions to fully-connected networks form?" (references.bib: so-conv-to-fc), nested Python
  loops over output positions and taps filling a dense matrix. Kept as the baseline the chapter and the
  benchmark time ``conv_matrix`` against.
- ``doubly_blocked_toeplitz``: the textbook construction with ``scipy.linalg.toeplitz``: one Toeplitz block
  per kernel row, arranged in a block-Toeplitz pattern (stride 1, no padding, no dilation, as in
  that Stack Overflow answer).

Why torch sparse CSR rather than ``scipy.sparse``: measured on this project's 2-core machine (torch 2.14, one
thread, the 16 -> 16 channel 32 x 32 3 x 3 layer, medians under load from other jobs), building the torch
CSR tensor takes the same few milliseconds as wrapping the same index arrays in a scipy CSR matrix, and
``M @ X`` was as fast or faster for one image and 2-8x faster for batches of 8 and 64 images. The torch tensor
also keeps the
weight's dtype and device (only torch operations build it, so a CUDA weight gives a CUDA matrix; this
machine has no GPU, so that path is untested here), multiplies torch tensors
without a round trip through NumPy, and lets gradients flow to the weight. Its indices are int32 (as
scipy's are) whenever they fit, which halves their bytes and made ``M @ X`` faster than with int64.
Transpose it with ``M.mT`` or ``M.t()`` (a sparse CSC tensor that multiplies like any other):
``M.T`` is not implemented for sparse CSR tensors in torch.
"""

from __future__ import annotations

import torch

from ._sparse import Pattern, sparse_product
from .args import (
    check_fits,
    check_floating,
    check_groups,
    check_tensor,
    conv2d_args,
    is_int,
    output_hw,
    padding_sides,
    pair,
)

__all__ = ["conv_matrix", "conv2d_toeplitz", "conv_matrix_loops", "doubly_blocked_toeplitz"]


# ---------------------------------------------------------------- argument checking


def _geometry(weight, input_size, stride, padding, dilation, groups):
    """Check the arguments of ``conv_matrix`` and return the geometry of M.

    Returns ``(C, H, W, Ho, Wo, (sh, sw), (top, left), (dh, dw), groups)``; ``top``/``left`` are the zero
    rows/columns added above/left of the input (PyTorch pads symmetrically except for even 'same' kernels).
    """
    check_tensor(weight, "weight")
    check_floating(weight, "weight")
    if weight.dim() != 4:
        raise ValueError(f"weight must be 4-D (O, C/groups, kh, kw), got shape {tuple(weight.shape)}")
    if min(weight.shape) < 1:
        raise ValueError(f"weight must not have an empty dimension, got shape {tuple(weight.shape)}")
    if isinstance(input_size, torch.Size):
        input_size = tuple(input_size)
    if not (isinstance(input_size, (tuple, list)) and len(input_size) in (2, 3) and all(is_int(n) for n in input_size)):
        raise TypeError(f"input_size must be (H, W) or (C, H, W), a tuple of ints, got {input_size!r}")
    if min(input_size) < 1:
        raise ValueError(f"input_size must not have an empty dimension, got {tuple(input_size)}")
    groups = check_groups(groups)
    O, Cg, kh, kw = weight.shape
    if O % groups:
        raise ValueError(f"groups={groups} does not divide the weight's {O} out-channels")
    if len(input_size) == 3:
        C, H, W = (int(n) for n in input_size)
        if C % groups:
            raise ValueError(f"groups={groups} does not divide the input's {C} channels")
        if Cg * groups != C:
            raise ValueError(
                f"input has {C} channels but weight expects weight.shape[1] * groups = {Cg} * {groups} = {Cg * groups}"
            )
    else:
        C, (H, W) = Cg * groups, (int(n) for n in input_size)
    stride = pair(stride, "stride", minimum=1)
    dilation = pair(dilation, "dilation", minimum=1)
    sides = padding_sides(padding, (kh, kw), dilation, stride)
    check_fits((H, W), (kh, kw), sides, dilation)
    Ho, Wo = output_hw((H, W), (kh, kw), stride, sides, dilation)
    return C, H, W, Ho, Wo, stride, (sides.top, sides.left), dilation, groups


# ---------------------------------------------------------------- the vectorised construction


def _csr_parts(weight, C, H, W, Ho, Wo, stride, offset, dilation, groups, index_dtype=torch.int64):
    """``crow_indices``, ``col_indices``, ``values`` of M, built by broadcasting integer index tensors.

    Every out-channel's Ho*Wo rows have the same pattern of columns (shifted by its group's first channel),
    so the pattern is built once, for an (Ho, Wo, C/g, kh, kw) block, and then offset for all O channels
    at once; the values are one gather from the weight.
    """
    O, Cg, kh, kw = weight.shape
    (sh, sw), (top, left), (dh, dw) = stride, offset, dilation
    dev = weight.device
    ar = lambda n: torch.arange(n, device=dev, dtype=index_dtype)  # noqa: E731
    # the pixel row read by output row i and tap u; the pixel column read by output column j and tap v
    r = (ar(Ho) * sh)[:, None] + (ar(kh) * dh)[None, :] - top  # Ho x kh
    q = (ar(Wo) * sw)[:, None] + (ar(kw) * dw)[None, :] - left  # Wo x kw
    # column of entry (i, j, c', u, v) within its group's channels: c'*H*W + r*W + q
    pattern_columns = (ar(Cg) * (H * W)).view(1, 1, Cg, 1, 1) + (r * W).view(Ho, 1, 1, kh, 1) + q.view(1, Wo, 1, 1, kw)
    taps = ar(Cg * kh * kw).view(1, 1, Cg, kh, kw).expand(Ho, Wo, Cg, kh, kw)  # which weight entry
    r_in, q_in = (r >= 0) & (r < H), (q >= 0) & (q < W)  # False where the tap reads zero padding
    if bool(r_in.all()) and bool(q_in.all()):
        pattern_columns, taps = pattern_columns.reshape(-1), taps.reshape(-1)
    else:  # drop the taps that read padding: rows near the border get fewer entries
        keep = (r_in.view(Ho, 1, 1, kh, 1) & q_in.view(1, Wo, 1, 1, kw)).expand(Ho, Wo, Cg, kh, kw)
        kept = keep.reshape(-1).nonzero().squeeze(1)
        pattern_columns, taps = pattern_columns.reshape(-1)[kept], taps.reshape(-1)[kept]
    # all O out-channels: shift by the first input channel of the out-channel's group (block diagonal)
    first_channel = (ar(O) // (O // groups)) * Cg  # O
    col = ((first_channel * (H * W))[:, None] + pattern_columns[None, :]).reshape(-1)
    n = pattern_columns.numel()  # entries per out-channel
    if n == Ho * Wo * Cg * kh * kw:  # no padding read: filter o, repeated for each of its Ho*Wo rows
        values = weight.reshape(O, 1, Cg * kh * kw).expand(O, Ho * Wo, Cg * kh * kw).reshape(-1)
    else:  # one gather: entry k of out-channel o holds weight[o].flatten()[taps[k]]
        values = weight.reshape(O, Cg * kh * kw).index_select(1, taps).reshape(-1)
    per_row = Cg * r_in.sum(1, dtype=index_dtype)[:, None] * q_in.sum(1, dtype=index_dtype)[None, :]  # Ho x Wo
    crow = torch.zeros(O * Ho * Wo + 1, dtype=index_dtype, device=dev)
    torch.cumsum(per_row.reshape(1, -1).expand(O, -1).reshape(-1), 0, out=crow[1:])
    return crow, col, values


def conv_matrix(weight, input_size, stride=1, padding=0, dilation=1, groups=1, sparse=True):
    """The matrix M of the convolution: ``conv2d(x, weight, ...)[n].flatten() == M @ x[n].flatten()``.

    ``weight`` is O x C/groups x kh x kw (as ``nn.Conv2d.weight``); ``input_size`` is (H, W) or (C, H, W);
    ``stride``, ``padding`` (also ``'valid'``/``'same'``), ``dilation`` and ``groups`` are those of
    ``torch.nn.functional.conv2d``. M has O*Ho*Wo rows (output flattened row-major over (o, i, j)) and C*H*W
    columns (input flattened over (c, r, q)); the bias is not part of M.

    Row (o, i, j) holds filter o at the pixels window (i, j) reads; taps that fall on zero padding have no
    entry, so M has ``O*Ho*Wo*(C/groups)*kh*kw`` non-zeros without padding and fewer with it. Stride keeps
    every s-th row, dilation spreads each row's taps d pixels apart, groups make M block diagonal.

    Built without a Python loop over output positions: the column of every non-zero is one broadcast sum of
    small integer tensors. Returns a ``torch.sparse_csr`` tensor (int32 indices; int64 if
    they would not fit) with the weight's dtype and
    device, or a dense tensor if ``sparse=False``. Gradients flow to ``weight``. Transpose with ``M.mT``
    (``M.T`` is not implemented for sparse CSR tensors in torch).

    Why torch sparse CSR and not ``scipy.sparse``: equally fast to build and to multiply on a CPU (measured
    in chapter 3), and it stays a torch tensor: the weight's dtype and device, multiplies torch tensors
    directly, and is differentiable.
    """
    if not isinstance(sparse, bool):
        raise TypeError(f"sparse must be True or False, got {sparse!r}")
    values, pattern = matrix_parts(weight, input_size, stride, padding, dilation, groups)
    if not sparse:
        R, K = pattern.shape
        dense = weight.new_zeros(R * K)
        return dense.index_put((pattern.rows.long() * K + pattern.col.long(),), values).view(R, K)
    return pattern.matrix(values)


def matrix_parts(weight, input_size, stride, padding, dilation, groups):
    """M's non-zero values (differentiable in the weight) and the :class:`Pattern` of where they sit."""
    C, H, W, Ho, Wo, stride, offset, dilation, groups = _geometry(weight, input_size, stride, padding, dilation, groups)
    O = weight.shape[0]
    nnz_max = O * Ho * Wo * weight[0].numel()
    index_dtype = torch.int32 if max(nnz_max, C * H * W) < 2**31 else torch.int64  # half the bytes of int64
    crow, col, values = _csr_parts(weight, C, H, W, Ho, Wo, stride, offset, dilation, groups, index_dtype)
    return values, Pattern(crow, col, (O * Ho * Wo, C * H * W))


def conv2d_toeplitz(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution as one (sparse) matrix product: ``Y = M @ X`` with M from ``conv_matrix``.

    Same arguments and result as ``torch.nn.functional.conv2d``. The batch is flattened to a
    (C*H*W) x N matrix ``X`` (one image per column), multiplied by M (O*Ho*Wo x C*H*W, sparse CSR), and the
    O*Ho*Wo x N result is reshaped to N x O x Ho x Wo; then the bias is added.

    Differentiable to any order in ``x``, ``weight`` and ``bias`` (forward mode too), and usable inside
    ``torch.func.vmap``. In float16 and bfloat16 the products are summed in float32 and rounded once, since
    torch has no half-precision sparse product on the CPU. M holds no entry for a tap on the zero padding, so
    a NaN or inf in the weight never meets a padding zero here (the other methods compute 0 * inf = NaN there).
    """
    a = conv2d_args(x, weight, bias, stride, padding, dilation, groups)
    N, C, H, W = a.x.shape
    O = a.weight.shape[0]
    Ho, Wo = a.output_hw
    values, pattern = matrix_parts(a.weight, (C, H, W), a.stride, a.padding, a.dilation, a.groups)
    X = a.x.reshape(N, C * H * W).T  # one flattened image per column
    Y = sparse_product(values, X, pattern)  # M @ X: (O*Ho*Wo) x N
    return a.finish(Y.T.reshape(N, O, Ho, Wo))


# ---------------------------------------------------------------- the constructions of the Stack Overflow answer


def conv_matrix_loops(weight, input_size, stride=1, padding=0, dilation=1, groups=1):
    """M built the way it is usually shown: nested Python loops filling a dense zero matrix.

    Same arguments and result as ``conv_matrix(..., sparse=False)``. For every output position (i, j) and
    tap (u, v) it writes the O x C/g block ``K[:, :, u, v]`` of the weight K into the dense matrix (one
    assignment per group), so it takes Ho*Wo*kh*kw*g Python steps and allocates all (O*Ho*Wo) x (C*H*W)
    entries, almost all zero. The baseline against which ``conv_matrix`` is timed.
    """
    C, H, W, Ho, Wo, (sh, sw), (top, left), (dh, dw), g = _geometry(
        weight, input_size, stride, padding, dilation, groups
    )
    O, Cg, kh, kw = weight.shape
    Og = O // g
    M = weight.new_zeros(O, Ho, Wo, C, H, W)
    w = weight.detach()
    for i in range(Ho):
        for j in range(Wo):
            for u in range(kh):
                for v in range(kw):
                    r, q = i * sh + u * dh - top, j * sw + v * dw - left
                    if 0 <= r < H and 0 <= q < W:  # taps on the zero padding have no column
                        for grp in range(g):
                            outs, ins = slice(grp * Og, (grp + 1) * Og), slice(grp * Cg, (grp + 1) * Cg)
                            M[outs, i, j, ins, r, q] = w[outs, :, u, v]
    return M.reshape(O * Ho * Wo, C * H * W)


def doubly_blocked_toeplitz(weight, input_size):
    """M as a doubly blocked Toeplitz matrix, built with ``scipy.linalg.toeplitz`` (stride 1, no padding).

    For every pair (o, c) and kernel row u, ``T_u = scipy.linalg.toeplitz(first column, first row)`` is the Wo x W
    Toeplitz matrix that correlates one image row with kernel row ``K[o, c, u]`` of the weight K: entry (j, q) is
    ``K[o, c, u, q - j]`` (zero unless 0 <= q - j < kw). The Ho x H grid of blocks is itself Toeplitz: block
    (i, r) is ``T_{r-i}`` when 0 <= r - i < kh and zero otherwise; the same ``scipy.linalg.toeplitz`` gives the grid
    of kernel-row indices. The (o, c) block matrices are stacked into the (O*Ho*Wo) x (C*H*W) matrix. ``weight``
    is O x C x kh x kw, ``input_size`` (H, W) or (C, H, W). Returns a dense tensor of the weight's dtype on the
    CPU. (NumPy has no bfloat16: such a weight is copied in float32, which holds every bfloat16 value exactly, and
    the matrix converted back.)
    """
    import numpy as np
    import scipy.linalg

    C, H, W, Ho, Wo, *_ = _geometry(weight, input_size, 1, 0, 1, 1)
    O, _, kh, kw = weight.shape
    K = weight.detach().cpu()
    K = (K.float() if K.dtype == torch.bfloat16 else K).numpy()
    rows_of_blocks = block_rows(kh, Ho, H)  # Ho x H: which kernel row each block holds, -1 for a zero block
    M = np.zeros((O, Ho * Wo, C, H * W), dtype=K.dtype)
    for o in range(O):
        for c in range(C):
            T = [
                scipy.linalg.toeplitz(np.r_[K[o, c, u, 0], np.zeros(Wo - 1)], np.r_[K[o, c, u], np.zeros(W - kw)])
                for u in range(kh)
            ]  # kh Toeplitz blocks, each Wo x W
            for i in range(Ho):
                for r in range(H):
                    u = rows_of_blocks[i, r]
                    if u >= 0:
                        M[o, i * Wo : (i + 1) * Wo, c, r * W : (r + 1) * W] = T[u]
    return torch.from_numpy(M.reshape(O * Ho * Wo, C * H * W)).to(weight.dtype)


def block_rows(kh: int, Ho: int, H: int):
    """The Ho x H block-Toeplitz pattern of ``doubly_blocked_toeplitz``: entry (i, r) is the kernel row
    ``r - i`` whose Toeplitz block sits at block (i, r), or -1 where the block is zero.

    ``scipy.linalg.toeplitz(first_column, first_row)`` with first column (0, -1, -1, ...) and first row
    (0, 1, ..., kh - 1, -1, ...).
    """
    import numpy as np
    import scipy.linalg

    return scipy.linalg.toeplitz(
        np.r_[0, -np.ones(Ho - 1, dtype=int)], np.r_[np.arange(kh), -np.ones(H - kh, dtype=int)]
    )
