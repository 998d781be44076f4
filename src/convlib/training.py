"""A small CNN and a plain training loop: enough to show that a convolution layer built from matrix products
trains exactly like ``nn.Conv2d``.

The network takes the convolution class as an argument, so the same architecture can be built with
``torch.nn.Conv2d`` or with ``convlib.Conv2d``; the loop draws its mini-batches from its own seeded generator,
so two models trained with the same ``seed`` see the same images in the same order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .args import as_int, is_int

__all__ = ["small_cnn", "train", "accuracy"]


def small_cnn(conv=nn.Conv2d, widths=(16, 32), num_classes: int = 10, in_channels: int = 3) -> nn.Sequential:
    """Two 5 x 5 convolutions (each followed by ReLU and 2 x 2 max pooling) and a linear classifier, for
    3 x 32 x 32 images (CIFAR-10)::

        3 x 32 x 32 -conv-> w1 x 28 x 28 -pool-> w1 x 14 x 14 -conv-> w2 x 10 x 10 -pool-> w2 x 5 x 5 -linear-> 10

    ``conv`` is the convolution class (``nn.Conv2d`` or a drop-in replacement such as ``convlib.Conv2d``),
    called as ``conv(in_channels, out_channels, kernel_size)``.
    """
    if len(widths) != 2 or not all(is_int(w) and w >= 1 for w in widths):
        raise ValueError(f"widths must be two positive ints (out-channels of the two convolutions), got {widths!r}")
    w1, w2 = (int(w) for w in widths)
    return nn.Sequential(
        conv(in_channels, w1, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        conv(w1, w2, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(w2 * 5 * 5, num_classes),
    )


def _check_data(X, y) -> None:
    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("X and y must be torch.Tensors")
    if X.dim() != 4:
        raise ValueError(f"X must be a batch of images N x C x H x W, got shape {tuple(X.shape)}")
    if y.dim() != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must hold one label per image ({X.shape[0]}), got shape {tuple(y.shape)}")
    if X.shape[0] == 0:
        raise ValueError("X holds no images")


def train(
    model: nn.Module,
    X,
    y,
    steps: int,
    batch_size: int = 64,
    lr: float = 0.02,
    momentum: float = 0.9,
    seed: int = 0,
    progress: bool = True,
    desc: str | None = None,
) -> torch.Tensor:
    """Train ``model`` for ``steps`` steps of SGD with momentum on the cross-entropy loss; returns the loss of
    every step (a tensor of ``steps`` floats).

    Mini-batches of ``batch_size`` images are drawn without replacement from ``X`` (N x C x H x W) and ``y``
    (N labels) in a random order that a ``torch.Generator`` seeded with ``seed`` fixes, reshuffled every epoch
    (a last incomplete batch is dropped); the global random state is neither used nor changed. With
    ``progress`` a tqdm progress bar shows the steps and the running loss.
    """
    from tqdm.auto import tqdm

    _check_data(X, y)
    steps = as_int(steps, "steps", minimum=1)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    seed = as_int(seed, "seed")
    n = X.shape[0]
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} is larger than the {n} training images")
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model.train()
    losses = torch.empty(steps)
    order, pos = torch.randperm(n, generator=gen), 0
    with tqdm(total=steps, desc=desc, disable=not progress, mininterval=0.5) as bar:
        for step in range(steps):
            if pos + batch_size > n:  # next epoch
                order, pos = torch.randperm(n, generator=gen), 0
            idx = order[pos : pos + batch_size]
            pos += batch_size
            loss = F.cross_entropy(model(X[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses[step] = loss.detach()
            bar.update(1)
            if step % 10 == 9 or step == steps - 1:
                bar.set_postfix(loss=f"{losses[max(0, step - 9) : step + 1].mean().item():.3f}", refresh=False)
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, X, y, batch_size: int = 1000) -> float:
    """The fraction of images in ``X`` whose largest logit is their label ``y``, in evaluation mode (the
    model's mode is restored afterwards)."""
    _check_data(X, y)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    was_training = model.training
    model.eval()
    try:
        correct = sum(
            int((model(X[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
            for i in range(0, X.shape[0], batch_size)
        )
    finally:
        model.train(was_training)
    return correct / X.shape[0]
