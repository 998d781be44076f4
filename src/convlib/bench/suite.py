"""What the benchmark times: the layers, by name, and the sweeps and variants built from them.

Every layer is addressed by its name in a mapping (``SUITE["resnet-s1"]``), never by its position in a list.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import torch

from ..args import output_length

__all__ = [
    "Layer",
    "SUITE",
    "EXTRA",
    "BIG",
    "QUICK",
    "SWEEPS",
    "QUICK_SWEEPS",
    "SWEEP_X",
    "ABLATION",
    "QUICK_ABLATION",
    "toeplitz_nnz",
    "naive_steps",
]


@dataclass(frozen=True)
class Layer:
    """One convolution layer: input N x C x H x H, O filters k x k, zero padding, stride, groups (float32)."""

    N: int
    C: int
    H: int
    O: int
    k: int
    padding: int = 0
    stride: int = 1
    groups: int = 1

    @property
    def label(self) -> str:
        """The shape in words, e.g. ``8x64x56² → 64, 3x3 p1 s2``."""
        extra = (f" s{self.stride}" if self.stride > 1 else "") + (f" g{self.groups}" if self.groups > 1 else "")
        return f"{self.N}x{self.C}x{self.H}² → {self.O}, {self.k}x{self.k} p{self.padding}{extra}"

    @property
    def out_hw(self) -> int:
        return output_length(self.H, self.k, self.stride, self.padding)

    @property
    def macs(self) -> int:
        """Multiply-adds of the convolution (the bias adds none)."""
        return self.N * self.O * self.out_hw**2 * (self.C // self.groups) * self.k**2

    @property
    def flops(self) -> int:
        """Two per multiply-add (the bias's N*O*Ho*Wo additions not counted: under 1 % for every layer here)."""
        return 2 * self.macs

    @property
    def conv_kwargs(self) -> dict:
        """The keyword arguments of ``F.conv2d`` for this layer."""
        return {"stride": self.stride, "padding": self.padding, "dilation": 1, "groups": self.groups}

    def min_bytes(self, itemsize: int = 4) -> int:
        """Bytes a convolution must move at least: read input, weight, bias once, write the output once."""
        inp = self.N * self.C * self.H**2
        weight = self.O * (self.C // self.groups) * self.k**2 + self.O
        out = self.N * self.O * self.out_hw**2
        return itemsize * (inp + weight + out)

    @property
    def intensity(self) -> float:
        """Arithmetic intensity (FLOPs per byte moved, at least): where the layer sits on the roofline."""
        return self.flops / self.min_bytes()

    def tensors(self, seed: int = 0, dtype=torch.float32, device="cpu", bias: bool = True):
        """Random input, weight and bias (None with ``bias=False``), and the keyword arguments of ``F.conv2d``."""
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(self.N, self.C, self.H, self.H, generator=g, dtype=dtype)
        w = torch.randn(self.O, self.C // self.groups, self.k, self.k, generator=g, dtype=dtype)
        b = torch.randn(self.O, generator=g, dtype=dtype).to(device) if bias else None
        return x.to(device), w.to(device), b, self.conv_kwargs


#: The suite, float32, one thread: the layers the speed target is about.
SUITE = MappingProxyType(
    {
        "cifar-first": Layer(32, 3, 32, 32, 5, 0),  # a first layer on CIFAR-10 batches
        "resnet-s1": Layer(8, 64, 56, 64, 3, 1),  # ResNet stage 1
        "resnet-s2": Layer(8, 128, 28, 128, 3, 1),  # ResNet stage 2
        "resnet-s3-one": Layer(1, 256, 14, 256, 3, 1),  # ResNet stage 3, one image
        "small-cifar": Layer(64, 16, 16, 32, 3, 1),  # a small CIFAR network
        "pointwise": Layer(8, 64, 56, 128, 1, 0),  # 1x1
        "stride-2": Layer(8, 64, 56, 64, 3, 1, stride=2),  # down-sampling
        "depthwise": Layer(16, 32, 32, 32, 3, 1, groups=32),  # one filter per channel
    }
)

#: Three more shapes, timed in the full run but outside the suite's target: larger kernels and a stem.
EXTRA = MappingProxyType(
    {
        "wide-5x5": Layer(8, 32, 28, 64, 5, 2),  # a 'same' 5x5 layer
        "large-7x7": Layer(16, 48, 20, 48, 7, 3),  # a 'same' 7x7 layer (where FFT methods compete)
        "stem-7x7-s2": Layer(1, 3, 224, 64, 7, 3, stride=2),  # ResNet's first layer on one ImageNet image
    }
)

#: The "big" layers of the target (>= 80% of the machine's GEMM rate): the two with 925M multiply-adds, 4 to 200
#: times more than any other layer of the suite.
BIG = ("resnet-s1", "resnet-s2")

#: The quick run (tests, a chapter's inline re-run): three small layers of the suite.
QUICK = ("cifar-first", "small-cifar", "depthwise")

SWEEPS = MappingProxyType(
    {
        "image size H": tuple(Layer(8, 32, h, 32, 3, 1) for h in (8, 16, 32, 64, 128)),
        "channels C = O": tuple(Layer(8, c, 16, c, 3, 1) for c in (8, 16, 32, 64, 128, 256)),
        "kernel size k": tuple(Layer(8, 32, 32, 32, k, k // 2) for k in (1, 3, 5, 7, 9)),
    }
)
QUICK_SWEEPS = MappingProxyType({"image size H": tuple(Layer(4, 16, h, 16, 3, 1) for h in (8, 16, 32, 64))})
#: the Layer field each sweep varies
SWEEP_X = MappingProxyType({"image size H": "H", "channels C = O": "C", "kernel size k": "k"})

#: ``convlib.conv2d``'s own choices on some layers, each timed against ``F.conv2d``: layer name -> options
#: ({} is the default choice).
ABLATION = MappingProxyType(
    {
        "resnet-s1": (
            {},
            {"mode": "tap", "layout": "exact", "block_bytes": 1 << 20},
            {"mode": "tap", "layout": "canvas"},
            {"mode": "full", "layout": "canvas"},
        ),
        "cifar-first": ({}, {"mode": "full", "layout": "canvas", "block_bytes": 16 << 20}),
        "resnet-s3-one": ({}, {"mode": "tap", "layout": "canvas"}),
        "small-cifar": ({}, {"mode": "tap", "layout": "canvas"}, {"mode": "tap", "layout": "exact"}),
        "stride-2": ({}, {"mode": "full"}),
        "depthwise": ({}, {"block_bytes": 16 << 20}, {"layout": "exact"}, {"mode": "tap"}),
    }
)
QUICK_ABLATION = MappingProxyType({"small-cifar": ({}, {"mode": "tap", "layout": "canvas"})})


def toeplitz_nnz(layer: Layer) -> int:
    """Non-zeros of the convolution matrix M (taps on the zero padding have no entry)."""
    Ho, k, p, s = layer.out_hw, layer.k, layer.padding, layer.stride
    rows = [sum(1 for u in range(k) if 0 <= i * s + u - p < layer.H) for i in range(Ho)]
    per_channel_pair = sum(rows) ** 2  # (taps inside, summed over output rows) x (same for columns)
    return layer.O * (layer.C // layer.groups) * per_channel_pair


def naive_steps(layer: Layer) -> int:
    """Python-level steps of ``conv2d_naive``: one per group, output pixel and tap."""
    return layer.groups * layer.out_hw**2 * layer.k**2
