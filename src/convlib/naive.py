"""The reference: a convolution written as explicit loops, exactly as the definition reads.

    Y[n, o, i, j] = b[o] + sum_{c, u, v} K[o, c, u, v] * Xpad[n, gamma(o)*C/g + c, i*s + u*d, j*s + v*d]

Every other method in convlib is checked against this one (and all of them against PyTorch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .args import check_tensor, conv2d_args

__all__ = ["conv2d_naive", "corr2d", "conv2d_loops"]


def corr2d(X, K):
    """Single-channel 2-D cross-correlation, stride 1, no padding: two loops over the output.

    ``Y[i, j] = sum(X[i:i+kh, j:j+kw] * K)`` for an H x W ``X`` and a kh x kw ``K`` (the d2l.ai ``corr2d``).
    This is what deep learning calls a convolution, on one channel.
    """
    check_tensor(X, "X")
    check_tensor(K, "K")
    if X.dim() != 2 or K.dim() != 2:
        raise ValueError(f"X and K must be 2-D (one channel), got shapes {tuple(X.shape)} and {tuple(K.shape)}")
    kh, kw = K.shape
    H, W = X.shape
    if kh > H or kw > W or min(kh, kw) < 1:
        raise ValueError(f"kernel {kh}x{kw} does not fit in the {H}x{W} input")
    Y = torch.zeros(H - kh + 1, W - kw + 1, dtype=torch.promote_types(X.dtype, K.dtype), device=X.device)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i : i + kh, j : j + kw] * K).sum()
    return Y


def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (deep learning's cross-correlation) by loops over output positions and kernel taps.

    Same arguments and result as ``torch.nn.functional.conv2d``: ``x`` is N x C x H x W (or C x H x W),
    ``weight`` is O x C/groups x kh x kw, ``bias`` has O entries or is None; ``stride``, ``padding`` and
    ``dilation`` are an int or an (h, w) pair; ``padding`` may be ``'valid'`` or ``'same'``.

    For each output position (i, j) and each kernel tap (u, v) it adds one small product
    ``X[:, channels of the group, i*s + u*d, j*s + v*d] @ K[out-channels of the group, :, u, v].T``:
    slow (Ho * Wo * kh * kw Python steps), but every step is the definition. Differentiable (autograd follows
    every product, to any order), and usable inside ``torch.func.vmap``.
    """
    a = conv2d_args(x, weight, bias, stride, padding, dilation, groups)
    (sh, sw), (ph, pw), (dh, dw) = a.stride, a.padding, a.dilation
    kh, kw = a.kernel_size
    Ho, Wo = a.output_hw
    xp = F.pad(a.x, (pw, pw, ph, ph))  # zero padding on every side
    N, C = xp.shape[:2]
    O, g = a.weight.shape[0], a.groups
    Cg, Og = C // g, O // g
    groups_out = []
    for grp in range(g):
        cin = slice(grp * Cg, (grp + 1) * Cg)  # the input channels this group reads
        w = a.weight[grp * Og : (grp + 1) * Og]  # Og x Cg x kh x kw: the filters of its output channels
        entries = []  # Y[:, the group's out-channels, i, j] (N x Og) for every (i, j), row by row
        for i in range(Ho):
            for j in range(Wo):
                acc = 0
                for u in range(kh):
                    for v in range(kw):
                        pixel = xp[:, cin, i * sh + u * dh, j * sw + v * dw]  # N x Cg
                        acc = acc + pixel @ w[:, :, u, v].T  # (N x Cg) @ (Cg x Og)
                entries.append(acc)
        groups_out.append(torch.stack(entries, dim=-1).reshape(N, Og, Ho, Wo))
    # built from new tensors, never by writing into one: autograd and torch.func.vmap follow every step
    return a.finish(torch.cat(groups_out, dim=1))


def _loop_nest(X, K, Y, output_hw, stride, dilation, groups):
    """The seven loops on nested Python lists: X is N x C x H x W (padded), K is O x C/g x kh x kw, Y zeros."""
    (Ho, Wo), (sh, sw), (dh, dw) = output_hw, stride, dilation
    N, O = len(Y), len(K)
    Cg, kh, kw = len(K[0]), len(K[0][0]), len(K[0][0][0])
    for n in range(N):
        for o in range(O):
            c0 = (o // (O // groups)) * Cg  # first input channel of the group that output channel o reads
            for c in range(Cg):
                for i in range(Ho):
                    for j in range(Wo):
                        for u in range(kh):
                            for v in range(kw):
                                Y[n][o][i][j] += K[o][c][u][v] * X[n][c0 + c][i * sh + u * dh][j * sw + v * dw]
    return Y


def conv2d_loops(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution as seven scalar loops over n, o, c, i, j, u, v: one multiply-add per innermost step.

    Same arguments and result as ``torch.nn.functional.conv2d`` (groups, int-or-pair stride/padding/dilation,
    ``padding='same'``/``'valid'``, unbatched input). The tensors are converted to nested Python lists and
    every one of the ``N * O * Ho * Wo * (C/g) * kh * kw`` multiply-adds is one Python statement, so this is
    the definition written out and nothing else: correct, and thousands of times slower than PyTorch (chapter 1
    measures it). The sums are accumulated in Python floats (double precision) and rounded to the input's dtype once.

    Not differentiable: autograd cannot follow Python floats, so with gradients enabled it raises ``ValueError``
    when ``x``, ``weight`` or ``bias`` requires grad, rather than return a result that silently drops their
    gradient. :func:`conv2d_naive` is the same definition, differentiable.
    """
    a = conv2d_args(x, weight, bias, stride, padding, dilation, groups)
    _check_no_grad(a)
    (ph, pw) = a.padding
    Ho, Wo = a.output_hw
    xp = F.pad(a.x, (pw, pw, ph, ph))  # zero padding on every side
    N, O = xp.shape[0], a.weight.shape[0]
    zero = 0j if xp.is_complex() else 0.0
    Y = [[[[zero] * Wo for _ in range(Ho)] for _ in range(O)] for _ in range(N)]
    Y = _loop_nest(_numbers(xp), _numbers(a.weight), Y, (Ho, Wo), a.stride, a.dilation, a.groups)
    return a.finish(torch.tensor(Y, dtype=xp.dtype, device=xp.device).reshape(N, O, Ho, Wo))


def _check_no_grad(a) -> None:
    """conv2d_loops computes on Python numbers, which autograd cannot follow: refuse rather than drop a gradient."""
    if not torch.is_grad_enabled():
        return
    for name, t in (("input", a.x), ("weight", a.weight), ("bias", a.bias)):
        if t is not None and t.requires_grad:
            raise ValueError(
                f"conv2d_loops cannot pass gradients: it computes on Python floats, so a loss built on its result "
                f"would silently get no gradient for {name}, which requires grad. Use conv2d_naive (the same "
                f"definition, differentiable), or call conv2d_loops under torch.no_grad() or on {name}.detach()"
            )


def _numbers(t: torch.Tensor) -> list:
    """The tensor's numbers as nested Python lists (what the seven loops read)."""
    try:
        return t.tolist()
    except RuntimeError as error:  # e.g. inside torch.func.vmap: a batched tensor has no numbers of its own
        raise TypeError(
            "conv2d_loops reads the numbers out of its tensors to loop over them in Python, which this tensor "
            "does not allow (inside torch.func.vmap, say); use conv2d_naive, which torch.func transforms can follow"
        ) from error
