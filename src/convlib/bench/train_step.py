"""A training step timed with ``convlib.Conv2d`` against ``nn.Conv2d``: one layer, and chapter 5's CNN.

For a layer: the forward pass and the backward pass to the input, the weight and the bias (the input requires
its gradient, as a layer inside a network does). For the CNN (``convlib.training.small_cnn``): zeroing the
gradients, the forward pass, the cross-entropy loss, the backward pass and one SGD step, on a batch of random
3 x 32 x 32 images. The two modules start from the same parameters; the two variants are timed interleaved.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .suite import Layer
from .timing import ratio_stats, stats, time_interleaved

__all__ = ["CONV_CLASSES", "layer_step", "cnn_step", "time_training"]


def _conv_classes():
    import convlib

    return {"convlib.Conv2d": convlib.Conv2d, "nn.Conv2d": nn.Conv2d}


#: the two convolution modules compared (the reference last)
CONV_CLASSES = ("convlib.Conv2d", "nn.Conv2d")


def layer_step(conv_class, layer: Layer, seed: int = 0, device="cpu"):
    """The timed call for one layer: forward, then backward of a fixed random output gradient."""
    torch.manual_seed(seed)
    module = conv_class(layer.C, layer.O, layer.k, stride=layer.stride, padding=layer.padding, groups=layer.groups)
    module.to(device)
    x, _, _, _ = layer.tensors(seed=seed, device=device)
    x.requires_grad_(True)
    grad = torch.randn(layer.N, layer.O, layer.out_hw, layer.out_hw, generator=torch.Generator().manual_seed(seed))
    grad = grad.to(device)

    def step():
        x.grad = module.weight.grad = module.bias.grad = None
        module(x).backward(grad)

    return step


def cnn_step(conv_class, batch: int = 64, seed: int = 0, device="cpu"):
    """The timed call for chapter 5's CNN: one SGD step on a batch of random images and labels."""
    from ..training import small_cnn

    torch.manual_seed(seed)
    model = small_cnn(conv=conv_class).to(device)
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(X), y).backward()
        opt.step()

    return step


def _rows(what: str, label: str, flops: int | None, times: dict) -> list[dict]:
    ref = times[CONV_CLASSES[-1]]["wall"]
    rows = []
    for conv in CONV_CLASSES:
        ratio, ci = ratio_stats(times[conv]["wall"], ref)
        rows.append({"what": what, "label": label, "conv": conv, "flops": flops, **stats(times[conv])})
        rows[-1].update(ratio_to_nn=ratio, ratio_ci=ci)
    return rows


def time_training(layers: dict, repeat: int, cnn_batch: int | None = 64, device="cpu", say=None) -> list[dict]:
    """Rows per (layer or 'small_cnn', conv class): stats of the step and its ratio to ``nn.Conv2d``'s.

    ``flops`` of a layer's step: the forward's 2 MACs per multiply-add, three times (forward, the gradient to the
    input, the gradient to the weight); None for the CNN.
    """
    classes = _conv_classes()
    rows = []
    say = say or (lambda text: None)
    for name, layer in layers.items():
        say(f"training step, layer {name}")
        fns = {conv: layer_step(classes[conv], layer, device=device) for conv in CONV_CLASSES}
        rows += _rows(name, layer.label, 3 * layer.flops, time_interleaved(fns, repeat, warmup=2, device=device))
    if cnn_batch:
        say("training step, small_cnn")
        fns = {conv: cnn_step(classes[conv], cnn_batch, device=device) for conv in CONV_CLASSES}
        label = f"small_cnn, batch {cnn_batch} of 3x32x32, SGD step"
        rows += _rows("small_cnn", label, None, time_interleaved(fns, repeat, warmup=2, device=device))
    return rows
