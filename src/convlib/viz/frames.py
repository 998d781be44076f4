"""The numbers every animation shows, computed without drawing anything.

This module needs torch alone (no plotting library), so what the animations depict is tested, and usable,
without matplotlib. Each function takes PyTorch's arguments and returns a frozen dataclass: ``frames``, one
dict of plain numbers per frame (what that frame shows); ``values``, the tensor the frames build, to compare
with ``F.conv2d`` / ``F.conv_transpose2d``; and the arrays that stay the same in every frame (the padded input,
the kernel, the patch matrix, ...). :mod:`convlib.viz.animations` draws exactly these numbers.

Positions in the frames follow the book: (i, j) an output position, (u, v) a kernel tap, (r, q) an input
position counted in the input itself (a row of zero padding above the image is r = -1), l = i*Wo + j a column
of the patch matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..args import ConvArgs, Pair, as_int, conv2d_args, pair
from ..im2col import col2im, im2col
from ..toeplitz import conv_matrix
from ..transposed import transposed_args

__all__ = [
    "Frames",
    "FilterFrames",
    "ToeplitzFrames",
    "StampFrames",
    "SettingsFrames",
    "DEFAULT_SETTINGS",
    "window_sum_frames",
    "patch_matrix_frames",
    "toeplitz_row_frames",
    "transposed_stamp_frames",
    "settings_frames",
    "feature_map_frames",
    "input_sides",
    "one_image",
    "check_out_channel",
]


@dataclass(frozen=True, kw_only=True)
class Frames:
    """What an animation shows: ``frames`` (one dict of numbers per frame) and ``values`` (what they build)."""

    title: str
    frames: list
    values: torch.Tensor


@dataclass(frozen=True, kw_only=True)
class FilterFrames(Frames):
    """One filter K[o] over one image: the panels that stay put (float64 tensors)."""

    out_channel: int
    stride: Pair
    dilation: Pair
    sides: tuple[int, int, int, int]  # zeros around the input in ``padded``: (top, bottom, left, right)
    padded: torch.Tensor  # C x Hp x Wp: the zero-padded input
    kernel: torch.Tensor  # C x kh x kw: K[o]
    bias: float | None  # b[o], None for a convolution without bias
    cols: torch.Tensor  # C*kh*kw x L: the patch matrix
    output: torch.Tensor  # Ho x Wo: Y[o], which the frames fill in


@dataclass(frozen=True, kw_only=True)
class ToeplitzFrames(Frames):
    """The rows of the convolution matrix M that write output channel o, and the flattened input."""

    out_channel: int
    input_shape: tuple[int, int, int]  # C x H x W of the input M multiplies
    M_rows: torch.Tensor  # L x C*H*W
    x_flat: torch.Tensor  # C*H*W
    bias: float | None
    output: torch.Tensor  # L: Y[o] flattened


@dataclass(frozen=True, kw_only=True)
class StampFrames(Frames):
    """A transposed convolution of one image as stamps: one column of ``stamps`` per input pixel."""

    out_channel: int
    input: torch.Tensor  # C x H x W
    stamps: torch.Tensor  # kh*kw x H*W: column t is the stamp of input pixel t (its kernel, scaled)
    kernel_size: Pair
    stride: Pair
    dilation: Pair
    crop: tuple[int, int, int, int]  # the rows and columns of the full canvas that form the output: (r0, c0, H, W)


@dataclass(frozen=True, kw_only=True)
class SettingsFrames(Frames):
    """One frame per (stride, padding, dilation) setting on an H x W input and a kh x kw kernel."""

    size: Pair
    kernel_size: Pair


# ---------------------------------------------------------------- checks and shared pieces


def check_out_channel(out_channel, channels: int) -> int:
    """``out_channel`` as an int in [0, channels)."""
    o = as_int(out_channel, "out_channel", minimum=0)
    if o >= channels:
        raise ValueError(f"out_channel must be in [0, {channels}), got {o}")
    return o


def one_image(x, weight, bias, stride, padding, dilation, out_channel) -> tuple[ConvArgs, int]:
    """Check like ``F.conv2d`` and insist on one image, groups=1 and a valid ``out_channel`` (what is drawn)."""
    a = conv2d_args(x, weight, bias, stride, padding, dilation, 1)
    if a.x.shape[0] != 1:
        raise ValueError(f"the animations draw one image: pass C x H x W or 1 x C x H x W, got shape {tuple(x.shape)}")
    return a, check_out_channel(out_channel, a.weight.shape[0])


def input_sides(a: ConvArgs, input_hw) -> tuple[int, int, int, int]:
    """The zeros around the input in the padded grid of checked arguments ``a``: (top, bottom, left, right).

    ``input_hw`` is the caller's H x W; 'same' padding with an odd total pads one more zero at the bottom/right.
    """
    (H0, W0), (ph, pw) = tuple(input_hw), a.padding
    top, left = ph + (a.x.shape[2] - H0) // 2, pw + (a.x.shape[3] - W0) // 2
    Hp, Wp = a.x.shape[2] + 2 * ph, a.x.shape[3] + 2 * pw
    return (top, Hp - H0 - top, left, Wp - W0 - left)


def _filter_panels(a: ConvArgs, o: int, input_hw) -> dict:
    """What every animation of one filter draws: padded input, K[o], b[o], the patch matrix (float64)."""
    (ph, pw), kernel = a.padding, a.kernel_size
    x64 = a.x.detach().double()
    return dict(
        out_channel=o,
        stride=a.stride,
        dilation=a.dilation,
        sides=input_sides(a, input_hw),
        padded=F.pad(x64, (pw, pw, ph, ph))[0],
        kernel=a.weight[o].detach().double(),
        bias=None if a.bias is None else float(a.bias[o]),
        cols=im2col(x64, kernel, a.stride, a.padding, a.dilation)[0],
    )


# ---------------------------------------------------------------- one filter over one image


def window_sum_frames(x, weight, bias=None, stride=1, padding=0, dilation=1, out_channel=0, max_frames=12):
    """Frames of the window sliding over the input: one output entry per frame, as a sum over channels.

    ``frames[t]`` has ``i``, ``j``, ``partials`` (one sum of products per input channel), ``bias`` (b[o], 0
    without one) and ``value``; one frame per output position (row by row), at most ``max_frames``. ``values``
    is the output channel, which equals ``F.conv2d(x, weight, bias, ...)[0, out_channel]``.
    """
    a, o = one_image(x, weight, bias, stride, padding, dilation, out_channel)
    max_frames = as_int(max_frames, "max_frames", minimum=1)
    panels = _filter_panels(a, o, x.shape[-2:])
    C, kh, kw = panels["kernel"].shape
    (Ho, Wo), b = a.output_hw, panels["bias"] or 0.0
    prods = panels["cols"] * panels["kernel"].reshape(-1, 1)  # every product of every window
    partials = prods.reshape(C, kh * kw, Ho * Wo).sum(1)  # C x L
    y = partials.sum(0) + b  # L
    frames = [
        dict(i=l // Wo, j=l % Wo, partials=partials[:, l].tolist(), bias=b, value=float(y[l]))
        for l in range(min(Ho * Wo, max_frames))
    ]
    values = y.reshape(Ho, Wo).to(a.x.dtype)
    return FilterFrames(title="window sum", frames=frames, values=values, output=y.reshape(Ho, Wo), **panels)


def patch_matrix_frames(x, weight, bias=None, stride=1, padding=0, dilation=1, out_channel=0, max_frames=12):
    """Frames of the patch matrix: window (i, j) is column l = i*Wo + j of ``cols``, one output pixel per frame.

    ``frames[t]`` has ``l``, ``i``, ``j``, ``column`` (the C*kh*kw entries of ``cols[:, l]``) and ``value``
    (``K_row @ cols[:, l] + b[o]``); ``values`` is the output channel (equal to ``F.conv2d(...)[0, out_channel]``).
    """
    a, o = one_image(x, weight, bias, stride, padding, dilation, out_channel)
    max_frames = as_int(max_frames, "max_frames", minimum=1)
    panels = _filter_panels(a, o, x.shape[-2:])
    (Ho, Wo), cols = a.output_hw, panels["cols"]
    y = (panels["kernel"].reshape(1, -1) @ cols)[0] + (panels["bias"] or 0.0)  # L
    frames = [
        dict(l=l, i=l // Wo, j=l % Wo, column=cols[:, l].tolist(), value=float(y[l]))
        for l in range(min(Ho * Wo, max_frames))
    ]
    values = y.reshape(Ho, Wo).to(a.x.dtype)
    return FilterFrames(title="patch matrix", frames=frames, values=values, output=y.reshape(Ho, Wo), **panels)


def feature_map_frames(x, weight, bias=None, stride=1, padding=0, dilation=1, out_channel=0, max_frames=8):
    """Frames of one filter over a whole image as one matrix product, a band of output rows per frame.

    The Ho output rows are grouped evenly into at most ``max_frames`` bands, so the last frame shows the whole
    map. ``frames[t]`` has ``rows`` (i0, i1), ``columns`` (l0, l1) = (i0*Wo, i1*Wo), ``column`` (``cols[:, l0]``,
    the window of output (i0, 0)), ``value`` (that output) and ``outputs`` (the band's rows, nested lists, equal
    to ``K_row @ cols[:, l0:l1] + b[o]``); ``values`` is the map, equal to ``F.conv2d(...)[0, out_channel]``.
    """
    a, o = one_image(x, weight, bias, stride, padding, dilation, out_channel)
    max_frames = as_int(max_frames, "max_frames", minimum=1)
    panels = _filter_panels(a, o, x.shape[-2:])
    (Ho, Wo), cols = a.output_hw, panels["cols"]
    y = (panels["kernel"].reshape(1, -1) @ cols)[0] + (panels["bias"] or 0.0)  # L
    per = -(-Ho // max_frames)  # output rows per frame
    frames = []
    for i0 in range(0, Ho, per):
        i1 = min(Ho, i0 + per)
        l0, l1 = i0 * Wo, i1 * Wo
        band = y[l0:l1].reshape(i1 - i0, Wo).tolist()
        frames.append(
            dict(rows=(i0, i1), columns=(l0, l1), column=cols[:, l0].tolist(), value=float(y[l0]), outputs=band)
        )
    values = y.reshape(Ho, Wo).to(a.x.dtype)
    return FilterFrames(title="feature map", frames=frames, values=values, output=y.reshape(Ho, Wo), **panels)


def toeplitz_row_frames(x, weight, bias=None, stride=1, padding=0, dilation=1, out_channel=0, max_frames=12):
    """Frames of the convolution matrix M: output pixel l is row l of M times the flattened input.

    ``frames[t]`` has ``l``, ``i``, ``j``, ``reads`` (the flat input indices c*H*W + r*W + q that row l's window
    covers), ``value`` and ``M_shape``; ``values`` is the output channel (equal to ``F.conv2d(...)[0, o]``);
    ``M`` is built by :func:`convlib.conv_matrix`.
    """
    a, o = one_image(x, weight, bias, stride, padding, dilation, out_channel)
    max_frames = as_int(max_frames, "max_frames", minimum=1)
    Ho, Wo = a.output_hw
    L = Ho * Wo
    xd = a.x[0].detach().double()  # C x H x W (already padded if padding was an asymmetric 'same')
    geometry = (tuple(xd.shape), a.stride, a.padding, a.dilation)
    M = conv_matrix(a.weight.detach().double(), *geometry, sparse=False)
    M_o = M[o * L : (o + 1) * L]  # L x C*H*W
    b = None if a.bias is None else float(a.bias[o])
    y = M_o @ xd.flatten() + (b or 0.0)
    # the input pixels each row reads (its window's taps that fall inside the input, whatever their weight)
    taps = conv_matrix(torch.ones_like(a.weight, dtype=torch.float64), *geometry, sparse=False)[o * L : (o + 1) * L]
    frames = [
        dict(l=l, i=l // Wo, j=l % Wo, reads=torch.nonzero(taps[l]).flatten().tolist(), value=float(y[l]))
        | dict(M_shape=tuple(M.shape))
        for l in range(min(L, max_frames))
    ]
    values = y.reshape(Ho, Wo).to(a.x.dtype)
    return ToeplitzFrames(
        title="Toeplitz row",
        frames=frames,
        values=values,
        out_channel=o,
        input_shape=tuple(xd.shape),
        M_rows=M_o,
        x_flat=xd.flatten(),
        bias=b,
        output=y,
    )


# ---------------------------------------------------------------- transposed convolution


def transposed_stamp_frames(
    x, weight, stride=1, padding=0, output_padding=0, dilation=1, out_channel=0, max_frames=12
) -> StampFrames:
    """Frames of a transposed convolution as stamping: input pixel (i, j) adds its scaled kernel to the output.

    ``x`` is C x H x W (or 1 x C x H x W), ``weight`` C x O x kh x kw, as for ``F.conv_transpose2d`` (groups=1,
    no bias). Pixel (i, j) stamps ``sum_c x[c, i, j] * weight[c, out_channel]`` at rows ``i*s .. i*s + d(kh-1)``
    of the *full* output; overlapping stamps add up. ``padding`` crops the full output on each side and
    ``output_padding`` grows it at the bottom/right. Built from ``col2im``: the stamps are the columns of
    ``K^T @ x``, added back where they belong.

    ``frames[t]`` has ``i``, ``j``, ``scale`` (the pixel's value per channel), ``cells`` (the cells of the full
    output the stamp adds to) and ``canvas`` (the full output after this stamp, nested lists); ``values`` is
    the cropped output after every stamp, equal to ``F.conv_transpose2d(x, weight, None, stride, padding,
    output_padding, 1, dilation)[0, out_channel]`` when H*W <= max_frames.
    """
    a = transposed_args(x, weight, None, stride, padding, output_padding, 1, dilation)
    if a.x.shape[0] != 1:
        raise ValueError(f"the animations draw one image: pass C x H x W or 1 x C x H x W, got shape {tuple(x.shape)}")
    o = check_out_channel(out_channel, a.out_channels)
    max_frames = as_int(max_frames, "max_frames", minimum=1)
    (C, H, W), (kh, kw) = a.x.shape[1:], a.kernel_size
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = a.stride, a.padding, a.output_padding, a.dilation
    Hout, Wout = a.output_hw
    # The stamps cover the full output but its last output_padding rows and columns (zeros here, the bias in a
    # layer): build them on the covered part, then pad.
    covered = (Hout + 2 * ph - oph, Wout + 2 * pw - opw)
    xd = a.x[0].detach().double()
    stamps = a.weight[:, o].detach().double().reshape(C, kh * kw).T @ xd.reshape(C, H * W)  # kh*kw x H*W
    frames = []
    for t in range(min(H * W, max_frames)):
        partial = stamps.clone()
        partial[:, t + 1 :] = 0
        canvas = F.pad(col2im(partial, covered, (kh, kw), (sh, sw), 0, (dh, dw))[0], (0, opw, 0, oph))
        i, j = divmod(t, W)
        cells = [(i * sh + u * dh, j * sw + v * dw) for u in range(kh) for v in range(kw)]
        frames.append(dict(i=i, j=j, scale=xd[:, i, j].tolist(), cells=cells, canvas=canvas.tolist()))
    values = torch.tensor(frames[-1]["canvas"], dtype=torch.float64)[ph : ph + Hout, pw : pw + Wout]
    return StampFrames(
        title="transposed convolution",
        frames=frames,
        values=values.to(a.x.dtype),
        out_channel=o,
        input=xd,
        stamps=stamps,
        kernel_size=(kh, kw),
        stride=(sh, sw),
        dilation=(dh, dw),
        crop=(ph, pw, Hout, Wout),
    )


# ---------------------------------------------------------------- stride / padding / dilation

DEFAULT_SETTINGS = (
    dict(stride=1, padding=0, dilation=1),
    dict(stride=2, padding=0, dilation=1),
    dict(stride=1, padding=1, dilation=1),
    dict(stride=2, padding=1, dilation=1),
    dict(stride=1, padding=0, dilation=2),
    dict(stride=2, padding=2, dilation=2),
)


def settings_frames(size=7, kernel_size=3, settings=DEFAULT_SETTINGS) -> SettingsFrames:
    """One frame per (stride, padding, dilation) setting: where the windows start, and which output each writes.

    ``size`` (H, or (H, W)) and ``kernel_size`` (k or (kh, kw)) are fixed; ``settings`` is a sequence of dicts with
    ``stride``, ``padding``, ``dilation`` (each as ``F.conv2d`` takes it; missing ones default to 1, 0, 1).
    ``frames[t]`` has the setting (``stride``, ``padding``, ``dilation`` as pairs), ``sides`` (the zeros on each
    side: top, bottom, left, right), ``Ho`` and ``Wo`` (from the formula), ``starts`` (the input position (r, q)
    of every window's first tap, row by row) and ``windows``: the first and the last window, each a dict of its
    output position ``i``, ``j`` and its ``taps`` (r, q). ``values`` is a tensor of the (Ho, Wo) per frame, to
    compare with ``F.conv2d(...).shape``.
    """
    H, W = pair(size, "size", minimum=1)
    kh, kw = pair(kernel_size, "kernel_size", minimum=1)
    settings = list(settings)
    if not settings:
        raise ValueError("settings must hold at least one setting")
    frames = [_setting_frame(st, H, W, kh, kw) for st in settings]
    values = torch.tensor([[f["Ho"], f["Wo"]] for f in frames])
    return SettingsFrames(
        title="stride / padding / dilation", frames=frames, values=values, size=(H, W), kernel_size=(kh, kw)
    )


def _setting_frame(setting: dict, H: int, W: int, kh: int, kw: int) -> dict:
    unknown = set(setting) - {"stride", "padding", "dilation"}
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}: use stride, padding, dilation")
    s, p, d = (setting.get(k, v) for k, v in (("stride", 1), ("padding", 0), ("dilation", 1)))
    a = conv2d_args(torch.zeros(1, 1, H, W), torch.zeros(1, 1, kh, kw), None, s, p, d, 1)  # clear errors
    (Ho, Wo), (sh, sw), (dh, dw) = a.output_hw, a.stride, a.dilation
    top, bottom, left, right = sides = input_sides(a, (H, W))

    def taps(i, j):
        return [(i * sh + u * dh - top, j * sw + v * dw - left) for u in range(kh) for v in range(kw)]

    last = {(0, 0), (Ho - 1, Wo - 1)}
    return dict(
        stride=a.stride,
        padding=(top, left) if (top, left) == (bottom, right) else (top, bottom, left, right),
        dilation=a.dilation,
        sides=sides,
        Ho=Ho,
        Wo=Wo,
        starts=[(i * sh - top, j * sw - left) for i in range(Ho) for j in range(Wo)],
        windows=[dict(i=i, j=j, taps=taps(i, j)) for i, j in sorted(last)],
    )
