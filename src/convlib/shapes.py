"""Shape arithmetic: how large is the output of a convolution, and how much work is it?"""

from __future__ import annotations

from .args import as_int, as_length, check_fits, check_groups, is_int, output_hw, padding_sides, pair

__all__ = ["conv_output_size", "conv2d_output_shape", "conv2d_macs"]


def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1) -> int:
    """The output length of a convolution along one axis, as ``nn.Conv2d`` computes it.

    ``floor((size + 2*padding - dilation*(kernel_size - 1) - 1) / stride) + 1``

    ``padding`` is the number of zeros added on *each* side; ``dilation=1`` means no dilation (PyTorch's
    convention). ``padding`` may also be ``'valid'`` (0) or ``'same'`` (the output is as long as the input;
    stride must be 1). Every number may be an int, a NumPy integer, a 0-d integer tensor or a sequence of one of
    them, as PyTorch takes it. Raises ``ValueError`` if the dilated kernel does not fit in the padded input.

    >>> conv_output_size(5, 3, stride=2, padding=1)   # the CS231n demo
    3
    >>> conv_output_size(32, 5)                       # a 5x5 filter on a CIFAR-10 image
    28
    """
    size = as_length(size, "size", minimum=1)
    kernel_size = as_length(kernel_size, "kernel_size", minimum=1)
    stride = as_length(stride, "stride", minimum=1)
    dilation = as_length(dilation, "dilation", minimum=1)
    if not isinstance(padding, str):
        padding = as_length(padding, "padding", minimum=0)
    sides = padding_sides(padding, (kernel_size, kernel_size), (dilation, dilation), (stride, stride))
    check_fits((size, size), (kernel_size, kernel_size), sides, (dilation, dilation))
    return output_hw((size, size), (kernel_size,) * 2, (stride,) * 2, sides, (dilation,) * 2)[0]


def conv2d_output_shape(input_size, kernel_size, stride=1, padding=0, dilation=1) -> tuple[int, int]:
    """``(Ho, Wo)`` for an input of ``(H, W)``; every argument an int or an (h, w) pair (padding also a string)."""
    H, W = pair(input_size, "input_size", minimum=1)
    kh, kw = pair(kernel_size, "kernel_size", minimum=1)
    sh, sw = pair(stride, "stride", minimum=1)
    dh, dw = pair(dilation, "dilation", minimum=1)
    if isinstance(padding, str):
        ph = pw = padding
    else:
        ph, pw = pair(padding, "padding", minimum=0)
    return (conv_output_size(H, kh, sh, ph, dh), conv_output_size(W, kw, sw, pw, dw))


def conv2d_macs(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1) -> int:
    """The number of multiply-adds of ``F.conv2d`` on these shapes: one per (n, o, i, j, c, u, v).

    ``N * O * Ho * Wo * (C/groups) * kh * kw`` for an input of shape (N, C, H, W) (or unbatched (C, H, W)) and a
    weight of shape (O, C/groups, kh, kw); the bias adds no multiplications and is not counted. This is how
    often the innermost statement of ``convlib.conv2d_loops`` runs. An empty batch (N = 0) needs none.

    >>> conv2d_macs((1, 3, 5, 5), (2, 3, 3, 3), stride=2, padding=1)   # the CS231n demo: 18 outputs x 27
    486
    """
    shapes = []
    for name, shape, dims in (("input_shape", input_shape, (3, 4)), ("weight_shape", weight_shape, (4,))):
        if not isinstance(shape, (tuple, list)) or len(shape) not in dims or not all(is_int(s) for s in shape):
            want = "(N, C, H, W) or (C, H, W)" if name == "input_shape" else "(O, C/groups, kh, kw)"
            raise TypeError(f"{name} must be a tuple of ints {want}, got {shape!r}")
        batch = name == "input_shape" and len(shape) == 4
        shapes.append([as_int(s, f"{name} entry", minimum=0 if batch and k == 0 else 1) for k, s in enumerate(shape)])
    ishape, (O, Cg, kh, kw) = shapes
    N, C, H, W = ishape if len(ishape) == 4 else [1, *ishape]
    groups = check_groups(groups)
    if C % groups or O % groups or Cg * groups != C:
        raise ValueError(
            f"input has {C} channels and weight_shape {tuple(weight_shape)} with groups={groups} "
            f"expects weight_shape[1] * groups = {Cg * groups} channels dividing into {groups} groups "
            f"(and O = {O} divisible by groups)"
        )
    Ho, Wo = conv2d_output_shape((H, W), (kh, kw), stride, padding, dilation)
    return N * O * Ho * Wo * Cg * kh * kw
