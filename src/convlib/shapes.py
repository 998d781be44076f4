"""Shape arithmetic: how large is the output of a convolution?"""

from __future__ import annotations

from ._checks import _is_int, check_size, out_size, pair

__all__ = ["conv_output_size", "conv2d_output_shape"]


def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1) -> int:
    """The output length of a convolution along one axis, as ``nn.Conv2d`` computes it.

    ``floor((size + 2*padding - dilation*(kernel_size - 1) - 1) / stride) + 1``

    ``padding`` is the number of zeros added on *each* side; ``dilation=1`` means no dilation (PyTorch's
    convention). ``padding`` may also be ``'valid'`` (0) or ``'same'`` (the output is as long as the input;
    stride must be 1). Raises ``ValueError`` if the dilated kernel does not fit in the padded input.

    >>> conv_output_size(5, 3, stride=2, padding=1)   # the CS231n demo
    3
    >>> conv_output_size(32, 5)                       # a 5x5 filter on a CIFAR-10 image
    28
    """
    size = check_size(size, "size")
    kernel_size = check_size(kernel_size, "kernel_size")
    for name, value, minimum in (("stride", stride, 1), ("dilation", dilation, 1)):
        if not _is_int(value):
            raise TypeError(f"{name} must be an int, got {value!r}")
        if value < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        elif padding == "same":
            if stride != 1:
                raise ValueError(f"padding='same' needs stride 1 (as in PyTorch), got stride={stride}")
            return size
        else:
            raise ValueError(f"padding must be an int, 'valid' or 'same', got {padding!r}")
    elif not _is_int(padding):
        raise TypeError(f"padding must be an int, got {padding!r}")
    if padding < 0:
        raise ValueError(f"padding must not be negative, got {padding}")
    span = dilation * (kernel_size - 1) + 1
    if span > size + 2 * padding:
        raise ValueError(
            f"kernel larger than the padded input: the kernel spans {span} (kernel {kernel_size}, "
            f"dilation {dilation}) but the padded input is only {size + 2 * padding}"
        )
    return out_size(size, kernel_size, stride, padding, dilation)


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
