"""The sparse matrix product behind ``conv2d_toeplitz`` and ``conv_transpose2d(method='matrix')``.

``sparse_product(values, X, pattern)`` is ``M @ X`` for the sparse CSR matrix M whose non-zeros are ``values``
at the places ``pattern`` fixes. It is torch's own sparse product, wrapped in an ``autograd.Function`` whose
derivatives are written out with the same product and dense gathers, so that:

* it is differentiable to any order in ``values`` and ``X`` (torch's sparse CSR product has no second derivative
  for its values), in forward mode too;
* it runs inside ``torch.func.vmap`` (torch cannot batch a sparse CSR tensor): with one matrix for every
  example the examples become more columns of X; with a matrix per example, one product each;
* float16 and bfloat16 work: torch has no half-precision sparse CSR product on the CPU, so the products are
  summed in float32 and rounded once, which is what PyTorch's convolutions do in half precision too.
"""

from __future__ import annotations

import functools
import warnings

import torch

__all__ = ["Pattern", "sparse_product"]

_CHUNK = 1 << 22  # at most this many products in flight when gathering the gradient of the values


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class Pattern:
    """Where the non-zeros of a sparse CSR matrix sit: ``crow`` and ``col`` indices and the ``shape``."""

    def __init__(self, crow: torch.Tensor, col: torch.Tensor, shape: tuple[int, int]):
        self.crow, self.col, self.shape = crow, col, tuple(shape)

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The sparse CSR tensor with these ``values`` (one per non-zero, in CSR order)."""
        with warnings.catch_warnings():  # torch warns once that sparse CSR support is "beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(self.crow, self.col, values, size=self.shape, check_invariants=False)

    @functools.cached_property
    def rows(self) -> torch.Tensor:
        """The row of every non-zero."""
        counts = self.crow.diff()
        return torch.repeat_interleave(
            torch.arange(self.shape[0], dtype=self.crow.dtype, device=self.crow.device), counts
        )

    @functools.cached_property
    def transposed(self) -> tuple[Pattern, torch.Tensor]:
        """The pattern of the transpose, and ``order``: its k-th non-zero is this matrix's ``order[k]``-th."""
        R, K = self.shape
        order = torch.argsort(self.col.long() * R + self.rows.long(), stable=True)  # by column, then row
        crow = torch.zeros(K + 1, dtype=self.crow.dtype, device=self.crow.device)
        crow[1:] = torch.bincount(self.col.long(), minlength=K).cumsum(0)
        return Pattern(crow, self.rows[order], (K, R)), order


def sparse_product(values: torch.Tensor, X: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """``M @ X``: M the sparse matrix with ``values`` at ``pattern`` (R x K), X a dense K x N matrix."""
    return _SparseProduct.apply(values, X, pattern)


def _sampled_product(A: torch.Tensor, B: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """``(A @ B.T)`` at the non-zeros of ``pattern``: entry k is ``A[rows[k]] . B[col[k]]`` (the values' gradient)."""
    wide = _accumulation_dtype(A.dtype)
    rows, col = pattern.rows, pattern.col
    step = max(1, _CHUNK // max(1, A.shape[1]))
    parts = [
        (A.index_select(0, rows[k : k + step]).to(wide) * B.index_select(0, col[k : k + step]).to(wide)).sum(1)
        for k in range(0, max(rows.numel(), 1), step)  # one (empty) chunk when every tap reads padding
    ]
    return torch.cat(parts).to(A.dtype)


class _SparseProduct(torch.autograd.Function):
    @staticmethod
    def forward(values, X, pattern):
        wide = _accumulation_dtype(values.dtype)
        M, Xw = pattern.matrix(values.to(wide)), X.to(wide)
        Y = (M @ Xw[:, 0])[:, None] if X.shape[1] == 1 else M @ Xw  # a vector product is faster for one column
        return Y.to(values.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        values, X, pattern = inputs
        ctx.save_for_backward(values, X)
        ctx.save_for_forward(values, X)
        ctx.pattern = pattern

    @staticmethod
    def backward(ctx, dY):
        values, X = ctx.saved_tensors
        d_values = _sampled_product(dY, X, ctx.pattern) if ctx.needs_input_grad[0] else None
        d_X = None
        if ctx.needs_input_grad[1]:  # M^T @ dY, by the same product on the transposed pattern
            transposed, order = ctx.pattern.transposed
            d_X = sparse_product(values[order], dY, transposed)
        return d_values, d_X, None

    @staticmethod
    def jvp(ctx, t_values, t_X, _):
        values, X = ctx.saved_tensors
        terms = []
        if t_values is not None:
            terms.append(sparse_product(t_values, X, ctx.pattern))
        if t_X is not None:
            terms.append(sparse_product(values, t_X, ctx.pattern))
        return sum(terms[1:], terms[0])

    @staticmethod
    def vmap(info, in_dims, values, X, pattern):
        values_dim, X_dim, _ = in_dims
        B = info.batch_size
        if values_dim is None:  # one matrix for every example: the examples become more columns of X
            X = X.movedim(X_dim, 1)  # K x B x N
            K, _, N = X.shape
            return sparse_product(values, X.reshape(K, B * N), pattern).reshape(-1, B, N), 1
        values = values.movedim(values_dim, 0)
        X = X.expand(B, *X.shape) if X_dim is None else X.movedim(X_dim, 0)
        return torch.stack([sparse_product(v, x, pattern) for v, x in zip(values, X)]), 0
