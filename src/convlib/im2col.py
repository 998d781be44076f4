"""im2col: every receptive field becomes one column, the convolution becomes one matrix product.

``im2col`` builds the patch matrix ``cols`` (N x C*kh*kw x L, L = Ho*Wo) that ``torch.nn.functional.unfold``
returns, but with ``torch.Tensor.as_strided`` on the padded input, so the construction can be read:
a 6-D *view* (no copy) whose axes are (n, c, u, v, i, j), then one reshape (the copy).
``col2im`` is its adjoint (``torch.nn.functional.fold``): each column is added back where it came from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .args import Sides, check_fits, check_images, check_tensor, conv2d_args, output_length, padding_sides, pair

__all__ = ["im2col", "col2im", "conv2d_im2col", "patch_view"]


def _unfold_args(kernel_size, stride, padding, dilation):
    kernel = pair(kernel_size, "kernel_size", minimum=1)
    stride = pair(stride, "stride", minimum=1)
    padding = pair(padding, "padding", minimum=0)
    dilation = pair(dilation, "dilation", minimum=1)
    return kernel, stride, padding, dilation


def _check_contiguous_4d(xp) -> None:
    check_tensor(xp, "xp")
    if xp.dim() != 4:
        raise ValueError(
            f"xp must be a 4-D N x C x H x W tensor (already padded), got shape {tuple(xp.shape)}; "
            f"give one image a batch axis with xp.unsqueeze(0)"
        )
    if not xp.is_contiguous():
        raise ValueError("patch_view needs a contiguous tensor: call .contiguous() first")


def patch_view(xp: torch.Tensor, kernel_size, stride=1, dilation=1) -> torch.Tensor:
    """All receptive fields of an (already padded) N x C x H x W tensor as a 6-D view, without copying.

    Returns a tensor of shape N x C x kh x kw x Ho x Wo with ``view[n, c, u, v, i, j] ==
    xp[n, c, i*sh + u*dh, j*sw + v*dw]``, sharing ``xp``'s memory: only the strides say where to read.
    ``xp`` must be contiguous (its strides are then ``(C*H*W, H*W, W, 1)``).
    """
    (kh, kw), (sh, sw), _, (dh, dw) = _unfold_args(kernel_size, stride, 0, dilation)
    _check_contiguous_4d(xp)  # a contiguous N x C x H x W tensor, or a clear error
    N, C, H, W = xp.shape
    check_fits((H, W), (kh, kw), Sides(0, 0, 0, 0), (dh, dw))
    Ho, Wo = output_length(H, kh, sh, 0, dh), output_length(W, kw, sw, 0, dw)
    sN, sC, sH, sW = xp.stride()
    return xp.as_strided(
        size=(N, C, kh, kw, Ho, Wo),
        stride=(sN, sC, dh * sH, dw * sW, sh * sH, sw * sW),
        storage_offset=xp.storage_offset(),
    )


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """The patch matrix: N x (C*kh*kw) x L, equal to ``torch.nn.functional.unfold(x, kernel_size, ...)``.

    Column ``l = i*Wo + j`` holds the receptive field of output pixel (i, j), flattened in (c, u, v) order.
    Accepts a 4-D N x C x H x W tensor, or a 3-D unbatched C x H x W one (then returns (C*kh*kw) x L).
    """
    check_images(x)
    kernel, stride, padding, dilation = _unfold_args(kernel_size, stride, padding, dilation)
    unbatched = x.dim() == 3
    x4 = x.unsqueeze(0) if unbatched else x
    check_fits((x4.shape[2], x4.shape[3]), kernel, padding_sides(padding, kernel), dilation)
    ph, pw = padding
    xp = F.pad(x4, (pw, pw, ph, ph)).contiguous()
    view = patch_view(xp, kernel, stride, dilation)  # N x C x kh x kw x Ho x Wo, no copy yet
    N, C, kh, kw, Ho, Wo = view.shape
    cols = view.reshape(N, C * kh * kw, Ho * Wo)  # the copy: kh*kw reads of every pixel
    return cols[0] if unbatched else cols


def col2im(cols, output_size, kernel_size, stride=1, padding=0, dilation=1):
    """The adjoint of ``im2col``: add every column back onto the pixels it was read from.

    Equal to ``torch.nn.functional.fold(cols, output_size, kernel_size, ...)``. ``cols`` is
    N x (C*kh*kw) x L (or unbatched (C*kh*kw) x L) with L = Ho*Wo for an image of ``output_size`` (H, W).
    Pixels covered by several patches receive the sum of their copies, so ``col2im(im2col(x))`` is not
    ``x``: each pixel comes back multiplied by the number of patches that cover it.
    """
    check_tensor(cols, "cols")
    if cols.dim() not in (2, 3):
        raise ValueError(
            f"cols must be 3-D (N, C*kh*kw, L) or 2-D unbatched (C*kh*kw, L), got shape {tuple(cols.shape)}"
        )
    H, W = pair(output_size, "output_size", minimum=1)
    kernel, stride, padding, dilation = _unfold_args(kernel_size, stride, padding, dilation)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    unbatched = cols.dim() == 2
    c3 = cols.unsqueeze(0) if unbatched else cols
    N, K, L = c3.shape
    if K % (kh * kw):
        raise ValueError(f"cols has {K} rows, which is not a multiple of kh*kw = {kh * kw}")
    check_fits((H, W), kernel, padding_sides(padding, kernel), dilation, what="output")
    Ho, Wo = output_length(H, kh, sh, ph, dh), output_length(W, kw, sw, pw, dw)
    if L != Ho * Wo:
        raise ValueError(
            f"cols has {L} columns but an output of {H}x{W} with kernel {kernel}, stride {stride}, "
            f"padding {padding}, dilation {dilation} has {Ho}x{Wo} = {Ho * Wo} patches"
        )
    C = K // (kh * kw)
    patches = c3.reshape(N, C, kh, kw, Ho, Wo)
    xp = c3.new_zeros(N, C, H + 2 * ph, W + 2 * pw)
    for u in range(kh):  # tap (u, v) of every patch lands on a strided grid of pixels
        for v in range(kw):
            rows = slice(u * dh, u * dh + sh * (Ho - 1) + 1, sh)
            columns = slice(v * dw, v * dw + sw * (Wo - 1) + 1, sw)
            xp[:, :, rows, columns] += patches[:, :, u, v]
    x = xp[:, :, ph : ph + H, pw : pw + W]
    return x[0] if unbatched else x


def conv2d_im2col(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution as im2col, one matrix product per group, and a reshape.

    Same arguments and result as ``torch.nn.functional.conv2d``. With ``cols = im2col(x)`` (N x C*kh*kw x L)
    and ``W_row = weight.reshape(O, C*kh*kw)`` (one row per filter), the output is ``W_row @ cols``
    (O x L per image) reshaped to O x Ho x Wo; with groups, each group's rows meet only its own block of ``cols``.
    """
    a = conv2d_args(x, weight, bias, stride, padding, dilation, groups)
    N = a.x.shape[0]
    O, Cg, kh, kw = a.weight.shape
    g = a.groups
    Ho, Wo = a.output_hw
    cols = im2col(a.x, (kh, kw), a.stride, a.padding, a.dilation)  # N x C*kh*kw x L
    cols = cols.view(N, g, Cg * kh * kw, Ho * Wo)
    W_row = a.weight.reshape(g, O // g, Cg * kh * kw)
    y = torch.matmul(W_row, cols)  # N x g x O/g x L: one product per group (batched over N)
    return a.finish(y.reshape(N, O, Ho, Wo))
