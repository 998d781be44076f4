"""One output entry of a convolution, taken apart as you would compute it by hand.

``Y[n, o, i, j]`` is the bias ``b[o]`` plus, for every input channel ``c`` that output channel ``o`` reads, the sum
of the elementwise products of a kh x kw window of the padded input with the filter ``K[o, c]``.
``entry_products`` returns every one of those numbers (the windows, the products, the channel sums, the bias,
the total) so that a chapter can print them and a figure can draw them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .args import conv2d_args, is_int

__all__ = ["entry_products", "EntryProducts"]


@dataclass
class EntryProducts:
    """The pieces of one output entry ``Y[n, o, i, j]``; ``print`` it for the pen-and-paper table.

    ``rows`` and ``cols`` are the rows and columns of the *padded* input that the window reads (``i*s + u*d``
    and ``j*s + v*d``); ``padding`` is the number of zeros before the first row and column of the input, and
    ``input_size`` its H x W before padding; ``channels`` are the input channels read (all of them, or the
    group's). ``window``, ``weight`` and ``products`` are Cg x kh x kw.
    """

    index: tuple[int, int, int, int]  # (n, o, i, j)
    channels: tuple[int, ...]
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    padding: tuple[int, int]  # zeros before the first input row and column: (top, left)
    input_size: tuple[int, int]  # (H, W) of the input before padding
    window: torch.Tensor
    weight: torch.Tensor
    products: torch.Tensor
    channel_sums: torch.Tensor
    bias: torch.Tensor | None
    value: torch.Tensor

    @property
    def in_padding(self) -> torch.Tensor:
        """kh x kw booleans: which taps of the window fall on the zero padding rather than on the input."""
        (top, left), (H, W) = self.padding, self.input_size
        return torch.tensor([[not (top <= r < top + H and left <= c < left + W) for c in self.cols] for r in self.rows])

    def __str__(self) -> str:
        n, o, i, j = self.index
        every = [self.window, self.weight, self.products, self.channel_sums, self.value]
        every += [self.bias] if self.bias is not None else []
        fmt = _formatter(every)
        kh, kw = self.weight.shape[1:]
        width = max(len(fmt(v)) for t in every[:3] for v in t.flatten().tolist())
        cell = lambda v: fmt(v).rjust(width)  # noqa: E731
        block = 2 + kw * (width + 1)  # "[" + values, one space each + " ]"
        bias = f"b[{o}] + " if self.bias is not None else ""
        lines = [f"Y[{n}, {o}, {i}, {j}] = {bias}sum over channels c of sum(window_c * K[{o}, c])"]
        for k, c in enumerate(self.channels):
            lines.append(f"channel {c}: rows {_span(self.rows)}, columns {_span(self.cols)} of the padded input")
            lines.append("  " + "window".ljust(block) + "   " + f"K[{o}, {c}]".ljust(block) + "   " + "products")
            for u in range(kh):
                row = []
                for t in (self.window, self.weight, self.products):
                    row.append("[" + " ".join(cell(v) for v in t[k, u].tolist()) + " ]")
                times, equals = (" * ", " = ") if u == kh // 2 else ("   ", "   ")
                lines.append("  " + row[0] + times + row[1] + equals + row[2])
            lines.append(f"  sum of products: {fmt(self.channel_sums[k].item())}")
        terms = " + ".join(_paren(fmt(s)) for s in self.channel_sums.tolist())
        if self.bias is not None:
            terms += f" + {_paren(fmt(self.bias.item()))} (bias)"
        lines.append(f"Y[{n}, {o}, {i}, {j}] = {terms} = {fmt(self.value.item())}")
        return "\n".join(lines)


def _span(idx) -> str:
    idx = list(idx)
    step = idx[1] - idx[0] if len(idx) > 1 else 1
    if len(idx) == 1:
        return str(idx[0])
    return f"{idx[0]}-{idx[-1]}" if step == 1 else f"{idx[0]}-{idx[-1]} step {step}"


def _paren(s: str) -> str:
    return f"({s})" if s.startswith("-") else s


def _formatter(tensors):
    values = [v for t in tensors for v in torch.as_tensor(t).flatten().tolist()]
    if all(isinstance(v, (int, float)) and float(v).is_integer() for v in values):
        return lambda v: str(int(v))
    return lambda v: f"{v:.4g}"


def _check_index(index, shape) -> tuple[int, ...]:
    names = "(n, o, i, j)" if len(shape) == 4 else "(o, i, j)"
    if not isinstance(index, (tuple, list)) or not all(is_int(k) for k in index):
        raise TypeError(f"index must be a tuple of ints {names}, got {index!r}")
    if len(index) != len(shape):
        raise ValueError(
            f"index must have {len(shape)} entries {names} for an output of shape {tuple(shape)}, got {index!r}"
        )
    for name, k, size in zip(names.strip("()").split(", "), index, shape):
        if not 0 <= k < size:
            why = f"{name} must be in 0..{size - 1}" if size else f"the output has no entries along {name}"
            raise ValueError(f"index {name}={k} is out of range for an output of shape {tuple(shape)} ({why})")
    return tuple(int(k) for k in index)


def entry_products(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, index) -> EntryProducts:
    """Take apart one output entry of ``F.conv2d(x, weight, bias, stride, padding, dilation, groups)``.

    ``index`` is ``(n, o, i, j)`` (or ``(o, i, j)`` for an unbatched C x H x W input). Returns an
    :class:`EntryProducts` with the window of every input channel the entry reads, the filter, their elementwise
    products, the per-channel sums, the bias and the total, which equals ``F.conv2d(...)[index]`` to round-off.
    ``print(entry_products(...))`` shows the computation as a table to check with pen and paper.
    """
    a = conv2d_args(x, weight, bias, stride, padding, dilation, groups)
    Ho, Wo = a.output_hw
    N, O = a.x.shape[0], a.weight.shape[0]
    shape = (O, Ho, Wo) if a.unbatched else (N, O, Ho, Wo)
    index = _check_index(index, shape)
    n, o, i, j = (0, *index) if a.unbatched else index
    (sh, sw), (ph, pw), (dh, dw) = a.stride, a.padding, a.dilation
    kh, kw = a.kernel_size
    Cg, Og = a.weight.shape[1], O // a.groups
    c0 = (o // Og) * Cg
    channels = tuple(range(c0, c0 + Cg))
    # 'same' with an odd total pads asymmetrically: conv2d_args has already padded a.x; find where the input starts
    H0, W0 = x.shape[-2], x.shape[-1]
    top, left = ph + (a.x.shape[2] - H0) // 2, pw + (a.x.shape[3] - W0) // 2
    xp = F.pad(a.x, (pw, pw, ph, ph))
    rows = tuple(i * sh + u * dh for u in range(kh))
    cols = tuple(j * sw + v * dw for v in range(kw))
    window = xp[n, c0 : c0 + Cg][:, list(rows)][:, :, list(cols)]
    w = a.weight[o]
    products = window * w
    channel_sums = products.sum(dim=(1, 2))
    b = a.bias[o] if a.bias is not None else None
    value = channel_sums.sum() + (b if b is not None else 0)
    return EntryProducts(
        (n, o, i, j),
        channels,
        rows,
        cols,
        (top, left),
        (H0, W0),
        window.detach(),
        w.detach(),
        products.detach(),
        channel_sums.detach(),
        None if b is None else b.detach(),
        value.detach(),
    )
