"""Convolution on channels-last (NHWC) numpy arrays: the layout of numpy code and of many fast libraries.

Here an input ``Z`` is N x H x W x C (channels last: the C values of one pixel are adjacent in memory) and a
weight is kh x kw x C x O (one C x O matrix per kernel offset). Three functions, all returning N x Ho x Wo x O:

- ``conv_reference``: ``torch.nn.functional.conv2d`` after permuting to PyTorch's NCHW / OIHW and back;
- ``conv_matmul``: the sum over the kh*kw kernel offsets of (shifted view of Z) @ weight[u, v]
  (the numpy form of ``convlib.conv2d_shifted``);
- ``conv_im2col``: ``np.lib.stride_tricks.as_strided`` builds every receptive field as a 6-D view
  N x Ho x Wo x kh x kw x C, one reshape copies it into the (N*Ho*Wo) x (kh*kw*C) patch matrix, one product
  with the (kh*kw*C) x O weight matrix does the rest.

No groups or dilation here (``convlib.conv2d_im2col`` and ``convlib.conv2d_shifted`` have them); ``stride`` and
``padding`` are an int or an (h, w) pair, as in PyTorch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .args import check_fits, output_length, padding_sides, pair

__all__ = ["conv_reference", "conv_matmul", "conv_im2col"]


def _check(Z, weight, stride, padding):
    for name, a in (("Z", Z), ("weight", weight)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
        if not np.issubdtype(a.dtype, np.floating):
            raise TypeError(f"{name} must have a floating-point dtype, got {a.dtype}")
    if Z.dtype != weight.dtype:
        raise TypeError(f"Z and weight must have the same dtype, got {Z.dtype} and {weight.dtype}")
    if Z.ndim != 4:
        raise ValueError(f"Z must be 4-D (N, H, W, C), got shape {Z.shape}")
    if weight.ndim != 4:
        raise ValueError(f"weight must be 4-D (kh, kw, C, O), got shape {weight.shape}")
    if min(Z.shape[1:]) < 1 or min(weight.shape) < 1:
        raise ValueError(
            f"Z must not have an empty height, width or channel axis (an empty batch is fine), nor weight an empty "
            f"dimension, got shapes {Z.shape} and {weight.shape}"
        )
    if Z.shape[3] != weight.shape[2]:
        raise ValueError(f"Z has {Z.shape[3]} channels (last axis) but weight expects {weight.shape[2]} (axis 2)")
    stride = pair(stride, "stride", minimum=1)
    padding = pair(padding, "padding", minimum=0)
    kernel = weight.shape[:2]
    check_fits(Z.shape[1:3], kernel, padding_sides(padding, kernel), (1, 1))
    (ph, pw) = padding
    if ph or pw:
        Z = np.pad(Z, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    Ho = output_length(Z.shape[1], kernel[0], stride[0], 0, 1)
    Wo = output_length(Z.shape[2], kernel[1], stride[1], 0, 1)
    return Z, stride, Ho, Wo


def conv_reference(Z, weight, stride=1, padding=0):
    """``F.conv2d`` on NHWC input and kh x kw x C x O weight: permute to NCHW / OIHW, convolve, permute back."""
    _check(Z, weight, stride, padding)
    # Copy into PyTorch's standard NCHW strides. A bare permuted view would do for F.conv2d in general, but when
    # C == 1 it is "contiguous" with unusual strides, and torch 2.14.1's oneDNN path (float32, one thread) then
    # returns wrong numbers for some shapes (e.g. H = W = 5, kernel 4 x 4, stride (1, 2)): never feed it that.
    # (np.ascontiguousarray: torch.from_numpy refuses the negative strides of a view such as Z[:, ::-1])
    Z_nchw = torch.from_numpy(np.ascontiguousarray(Z)).permute(0, 3, 1, 2).clone(memory_format=torch.contiguous_format)
    W_oihw = (
        torch.from_numpy(np.ascontiguousarray(weight)).permute(3, 2, 0, 1).clone(memory_format=torch.contiguous_format)
    )
    out = F.conv2d(Z_nchw, W_oihw, stride=stride, padding=padding)
    return out.permute(0, 2, 3, 1).contiguous().numpy()  # N x Ho x Wo x O


def conv_matmul(Z, weight, stride=1, padding=0):
    """Sum over kernel offsets (u, v) of ``Z[:, u::s, v::s, :] @ weight[u, v]``: kh*kw products, C inner."""
    Z, (sh, sw), Ho, Wo = _check(Z, weight, stride, padding)
    kh, kw, _, O = weight.shape
    out = np.zeros((Z.shape[0], Ho, Wo, O), dtype=np.result_type(Z, weight))
    for u in range(kh):
        for v in range(kw):
            shifted = Z[:, u : u + sh * (Ho - 1) + 1 : sh, v : v + sw * (Wo - 1) + 1 : sw, :]  # N x Ho x Wo x C
            out += shifted @ weight[u, v]  # (... x C) @ (C x O)
    return out


def conv_im2col(Z, weight, stride=1, padding=0):
    """One product: the (N*Ho*Wo) x (kh*kw*C) patch matrix, built with ``as_strided``, times the weight matrix."""
    Z, (sh, sw), Ho, Wo = _check(Z, weight, stride, padding)
    Z = np.ascontiguousarray(Z)
    N, _, _, C = Z.shape
    kh, kw, _, O = weight.shape
    Ns, Hs, Ws, Cs = Z.strides  # in bytes
    patches = np.lib.stride_tricks.as_strided(
        Z, shape=(N, Ho, Wo, kh, kw, C), strides=(Ns, sh * Hs, sw * Ws, Hs, Ws, Cs), writeable=False
    )  # a view: patches[n, i, j, u, v, c] == Z[n, i*sh + u, j*sw + v, c]
    A = patches.reshape(N * Ho * Wo, kh * kw * C)  # the copy
    out = A @ weight.reshape(kh * kw * C, O)
    return out.reshape(N, Ho, Wo, O)
