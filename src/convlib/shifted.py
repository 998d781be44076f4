"""The other matrix-product convolution: kh*kw small products of shifted input views, no patch matrix.

For every kernel offset (u, v), the pixels that tap (u, v) reads form a shifted, strided sub-grid of the padded
input: ``Xp[:, :, u*dh : : sh, v*dw : : sw]`` (Ho x Wo pixels). Multiplying that view, as an (N*Ho*Wo) x C
matrix, by the C x O slice ``W[:, :, u, v].T`` of the weights gives tap (u, v)'s contribution to every output
pixel at once; the convolution is the sum of these kh*kw products:

    Y = sum_{u, v}  shift_{u, v}(Xp) @ W[:, :, u, v].T

Nothing is replicated kh*kw times (the im2col patch matrix is never built); instead kh*kw matrix products with an
inner dimension of C each (im2col: one product with an inner dimension of C*kh*kw). Vasudevan, Anderson and Gregg
(2017) study this family of GEMM-based convolutions without im2col.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .args import conv2d_args

__all__ = ["conv2d_shifted"]


def conv2d_shifted(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution as a sum over kernel offsets of (shifted input view) @ (one (u, v) slice of the weights).

    Same arguments and result as ``torch.nn.functional.conv2d``: ``x`` is N x C x H x W (or unbatched
    C x H x W), ``weight`` O x C/groups x kh x kw, ``bias`` O entries or None; ``stride``, ``padding``,
    ``dilation`` an int or an (h, w) pair, ``padding`` also ``'valid'`` or ``'same'``.

    The padded input is put in channels-last order once (g x N x H x W x C/g: NHWC, one block per group), so
    that the Ho x Wo pixels read by one kernel offset, with all their channels, form the rows of an
    (N*Ho*Wo) x C/g matrix; each offset then costs one matrix product per group, accumulated in place
    (``baddbmm_``). With one input channel per group (depthwise) the product has inner dimension 1: an outer
    product, done elementwise (``addcmul_``). Memory: one input-sized buffer per offset instead of im2col's
    kh*kw-times-larger patch matrix.
    """
    a = conv2d_args(x, weight, bias, stride, padding, dilation, groups)
    (sh, sw), (ph, pw), (dh, dw) = a.stride, a.padding, a.dilation
    kh, kw = a.kernel_size
    Ho, Wo = a.output_hw
    N, C, H, W = a.x.shape
    O, g = a.weight.shape[0], a.groups
    Cg, Og = C // g, O // g
    NL = N * Ho * Wo  # one row per output pixel of every image

    xp = F.pad(a.x, (pw, pw, ph, ph)).view(N, g, Cg, H + 2 * ph, W + 2 * pw)
    xp = xp.permute(1, 0, 3, 4, 2).contiguous()  # g x N x Hp x Wp x Cg: channels last, group by group
    # W_taps[u, v]: g x Cg x Og, the weights of offset (u, v) as one Cg x Og matrix per group
    W_taps = a.weight.reshape(g, Og, Cg, kh, kw).permute(3, 4, 0, 2, 1).contiguous()
    acc = None  # g x NL x Og: the first offset's product, then every other one added in place
    for u in range(kh):
        for v in range(kw):
            r0, c0 = u * dh, v * dw
            shifted = xp[:, :, r0 : r0 + sh * (Ho - 1) + 1 : sh, c0 : c0 + sw * (Wo - 1) + 1 : sw]  # a view
            rows = shifted.reshape(g, NL, Cg)  # copies only when the view is strided (it usually is)
            if acc is None:  # a new tensor (not zeros filled in place), so torch.func.vmap can batch it
                acc = rows * W_taps[u, v] if Cg == 1 else torch.bmm(rows, W_taps[u, v])
            elif Cg == 1:
                acc.addcmul_(rows, W_taps[u, v])  # outer product: (NL x 1) @ (1 x Og), per group
            else:
                acc.baddbmm_(rows, W_taps[u, v])  # acc += rows @ W[:, :, u, v].T, per group
    y = acc.view(g, N, Ho, Wo, Og).permute(1, 0, 4, 2, 3).reshape(N, O, Ho, Wo)
    return a.finish(y.contiguous())
