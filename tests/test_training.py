"""convlib.training: the small CNN and the training loop, with nn.Conv2d and with convlib.Conv2d."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convlib
from convlib import training


def _toy_data(n=64, seed=0):
    """Two easy classes: images brighter on the left (label 0) or on the right (label 1), plus noise."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    X = 0.3 * torch.randn(n, 3, 32, 32, generator=gen)
    X[y == 0, :, :, :16] += 1.0
    X[y == 1, :, :, 16:] += 1.0
    return X, y


@pytest.mark.parametrize("conv", [nn.Conv2d, convlib.Conv2d], ids=["nn", "convlib"])
def test_small_cnn_shapes(conv):
    model = training.small_cnn(conv)
    assert model(torch.zeros(4, 3, 32, 32)).shape == (4, 10)
    convs = [m for m in model if isinstance(m, conv)]
    assert [tuple(c.weight.shape) for c in convs] == [(16, 3, 5, 5), (32, 16, 5, 5)]
    assert sum(p.numel() for p in model.parameters()) == (16 * 75 + 16) + (32 * 400 + 32) + (800 * 10 + 10)
    assert training.small_cnn(conv, widths=(4, 6))(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(ValueError, match="widths"):
        training.small_cnn(conv, widths=(4,))


def test_same_seed_same_losses_and_global_state_untouched():
    X, y = _toy_data()
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        model = training.small_cnn(widths=(4, 8))
        state = torch.get_rng_state()
        losses.append(training.train(model, X, y, steps=5, batch_size=16, progress=False))
        assert torch.equal(torch.get_rng_state(), state)
    assert losses[0].shape == (5,) and torch.equal(losses[0], losses[1])
    torch.manual_seed(0)
    other = training.train(training.small_cnn(widths=(4, 8)), X, y, steps=5, batch_size=16, seed=1, progress=False)
    assert not torch.equal(other, losses[0])  # another seed, another batch order


def test_batches_cover_each_epoch_without_replacement():
    seen = []

    class Record(nn.Module):  # logs the images it is given, by their index stored in pixel [0, 0, 0]
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(10))

        def forward(self, x):
            seen.append(x[:, 0, 0, 0].long().tolist())
            return self.w.expand(x.shape[0], 10)

    X = torch.arange(10.0).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    training.train(Record(), X, torch.zeros(10, dtype=torch.int64), steps=6, batch_size=3, progress=False)
    epochs = [sum(seen[0:3], []), sum(seen[3:6], [])]  # 3 full batches per epoch, the 10th image dropped
    for epoch in epochs:
        assert len(set(epoch)) == 9


def test_convlib_conv2d_trains_like_nn_conv2d():
    X, y = _toy_data(96)
    torch.manual_seed(0)
    reference = training.small_cnn(nn.Conv2d, widths=(4, 8))
    ours = training.small_cnn(convlib.Conv2d, widths=(4, 8))
    ours.load_state_dict(reference.state_dict())
    loss_ref = training.train(reference, X, y, steps=30, batch_size=16, lr=0.01, progress=False)
    loss_ours = training.train(ours, X, y, steps=30, batch_size=16, lr=0.01, progress=False)
    torch.testing.assert_close(loss_ours, loss_ref, rtol=1e-4, atol=1e-4)
    for (name, p), q in zip(reference.named_parameters(), ours.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-4, msg=name)
    assert loss_ref[-5:].mean() < 0.5 * loss_ref[:5].mean()  # it learned
    assert training.accuracy(reference, X, y) > 0.9 and training.accuracy(ours, X, y) > 0.9


def test_accuracy_counts_correct_argmax_and_restores_mode():
    class Fixed(nn.Module):
        def forward(self, x):
            return x[:, 0, 0, :3]  # logits are the first three pixels of row 0

    X = torch.zeros(5, 1, 1, 3)
    X[torch.arange(5), 0, 0, torch.tensor([0, 1, 2, 2, 1])] = 1.0
    y = torch.tensor([0, 1, 2, 0, 0])
    model = Fixed().train()
    assert training.accuracy(model, X, y) == 3 / 5
    assert training.accuracy(model, X, y, batch_size=2) == 3 / 5
    assert model.training
    model.eval()
    training.accuracy(model, X, y)
    assert not model.training


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(steps=0), ValueError, "steps must be at least 1"),
        (dict(steps=2.0), TypeError, "steps must be an int"),
        (dict(steps=1, batch_size=65), ValueError, "larger than the 64"),
        (dict(steps=1, batch_size=0), ValueError, "batch_size must be at least 1"),
    ],
)
def test_train_errors(kwargs, err, match):
    X, y = _toy_data()
    with pytest.raises(err, match=match):
        training.train(training.small_cnn(widths=(2, 2)), X, y, progress=False, **kwargs)


def test_data_errors():
    X, y = _toy_data(8)
    model = training.small_cnn(widths=(2, 2))
    with pytest.raises(ValueError, match="one label per image"):
        training.accuracy(model, X, y[:7])
    with pytest.raises(ValueError, match="N x C x H x W"):
        training.accuracy(model, X[0], y)
    with pytest.raises(TypeError, match="torch.Tensors"):
        training.train(model, X.numpy(), y, steps=1, progress=False)
