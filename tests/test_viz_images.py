"""convlib.viz's image helpers: grids of images and feature maps, filters, curves (drawn headless)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from convlib import viz  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_show_images_rgb_grid_with_titles():
    imgs = torch.rand(10, 3, 8, 8)
    fig = viz.show_images(imgs, titles=[f"c{i}" for i in range(10)], ncols=5, suptitle="ten")
    assert len(fig.axes) == 10 and fig.get_figwidth() <= viz.MAX_FIG_WIDTH
    assert [ax.get_title() for ax in fig.axes] == [f"c{i}" for i in range(10)]
    shown = fig.axes[3].images[0].get_array()
    np.testing.assert_allclose(shown, imgs[3].permute(1, 2, 0).numpy(), rtol=0, atol=1e-6)


def test_show_images_maps_share_one_signed_scale():
    maps = [torch.tensor([[-1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.5, 0.1], [0.2, 0.3]])]
    fig = viz.show_images(maps, ncols=3)
    assert len(fig.axes) == 3 and not fig.axes[2].axison  # the unused panel is hidden
    for ax in fig.axes[:2]:
        assert ax.images[0].get_clim() == (-2.0, 2.0)
    fig = viz.show_images(maps, shared_scale=False)
    assert fig.axes[1].images[0].get_clim() == (-0.5, 0.5)
    fig = viz.show_images([torch.rand(4, 4) + 1], shared_scale=False)  # unsigned: from 0
    assert fig.axes[0].images[0].get_clim()[0] == 0.0


@pytest.mark.parametrize("bad, match", [([], "no images"), ([np.zeros((2, 3, 4, 4))], "each image")])
def test_show_images_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        viz.show_images(bad)
    with pytest.raises(ValueError, match="titles"):
        viz.show_images([np.zeros((2, 2))], titles=["a", "b"])


def test_show_filters_scales_each_filter():
    w = torch.randn(6, 3, 5, 5)
    w[1] *= 100
    fig = viz.show_filters(w, ncols=3)
    assert len(fig.axes) == 6
    for ax in fig.axes:
        a = ax.images[0].get_array()
        assert a.shape == (5, 5, 3) and np.isclose(a.min(), 0) and np.isclose(a.max(), 1)
    fig = viz.show_filters(torch.randn(2, 1, 3, 3))  # one channel: signed kernel colours
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="C = 1 or 3"):
        viz.show_filters(torch.randn(2, 2, 3, 3))


def test_plot_curves():
    ax = viz.plot_curves({"a": [3, 2, 1], "b": torch.tensor([3.0, 2.0, 1.5])}, title="loss")
    lines = ax.get_lines()
    assert [l.get_label() for l in lines] == ["a", "b"]
    assert lines[0].get_linewidth() > lines[1].get_linewidth()  # the second drawn on top, narrower
    np.testing.assert_array_equal(lines[1].get_ydata(), [3, 2, 1.5])
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "loss" and ax.get_title() == "loss"
    with pytest.raises(ValueError, match="no curves"):
        viz.plot_curves({})


def test_plot_curves_smoothed():
    ys = np.arange(10.0) ** 2
    ax = viz.plot_curves({"a": ys, "b": ys + 1}, smooth=3)
    lines = ax.get_lines()
    assert len(lines) == 4  # raw (faint) and smoothed, per curve
    raw, smoothed = lines[0], lines[1]
    assert raw.get_alpha() < 0.5 and smoothed.get_label() == "a (3-step mean)"
    np.testing.assert_array_equal(smoothed.get_xdata(), np.arange(2, 10))
    np.testing.assert_allclose(smoothed.get_ydata(), [(ys[i - 2] + ys[i - 1] + ys[i]) / 3 for i in range(2, 10)])
    with pytest.raises(ValueError, match="smooth must be"):
        viz.plot_curves({"a": ys}, smooth=0)
    with pytest.raises(ValueError, match="fewer than the window"):
        viz.plot_curves({"a": ys}, smooth=11)
