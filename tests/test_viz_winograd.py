"""The Winograd tile animation (chapter 7): its frames are Winograd's F(m x m, 3 x 3), tile by tile, and add up to
F.conv2d; the HTML is small, offline and playable."""

from __future__ import annotations

import re

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from convlib import viz
from convlib.winograd import toom_cook, winograd_2d

matplotlib.use("Agg")
pytestmark = pytest.mark.filterwarnings("ignore:Animation was deleted without rendering anything")


def small_ints(*shape, seed=0, low=-2, high=3):
    return torch.randint(low, high, shape, generator=torch.Generator().manual_seed(seed)).double()


@pytest.mark.parametrize("m, size, padding", [(2, 4, 1), (2, 6, 0), (4, 8, 1), (3, 4, 2)])
def test_frames_are_the_tile_transforms_and_add_up_to_conv2d(m, size, padding):
    x, K = small_ints(size, size, seed=m), small_ints(3, 3, seed=size, low=-1, high=2)
    fr = viz.winograd_tile_frames(x, K, m=m, padding=padding)
    AT, G, BT = toom_cook(m, 3).tensors(torch.float64)
    assert torch.allclose(fr["K_hat"], G @ K @ G.T)
    reference = F.conv2d(x[None, None], K[None, None], padding=padding)[0, 0]
    assert torch.allclose(fr["values"], reference, atol=1e-9)
    tiles = (reference.shape[0] // m) * (reference.shape[1] // m)
    assert len(fr["frames"]) == 3 * tiles
    assert [f["stage"] for f in fr["frames"]] == [0, 1, 2] * tiles
    for f in fr["frames"]:
        d, X_hat = torch.tensor(f["d"], dtype=torch.float64), torch.tensor(f["X_hat"], dtype=torch.float64)
        assert d.shape == (m + 2, m + 2) and torch.allclose(X_hat, BT @ d @ BT.T)
        assert torch.allclose(torch.tensor(f["product"], dtype=torch.float64), fr["K_hat"] * X_hat)
        Y_tile = torch.tensor(f["Y_tile"], dtype=torch.float64)
        assert torch.allclose(Y_tile, winograd_2d(d, K), atol=1e-9)
        r, c = f["rows"], f["cols"]
        assert torch.allclose(Y_tile, reference[r : r + m, c : c + m], atol=1e-9)
        written = ~torch.tensor(f["Y"], dtype=torch.float64).isnan()
        assert bool(written[r : r + m, c : c + m].all()) == (f["stage"] == 2)


def test_animation_html_is_small_offline_and_playable():
    x, K = small_ints(4, 4), small_ints(3, 3, seed=1, low=-1, high=2)
    an = viz.animate_winograd_tiles(x, K, m=2, padding=1)
    assert torch.allclose(an.values, F.conv2d(x[None, None], K[None, None], padding=1)[0, 0])
    html = an._repr_html_()
    assert an.n_frames == 12 and 5 < an.size_kb < viz.MAX_KB
    assert len(re.findall(r'frames\[\d+\] = "data:image/png;base64,', html)) == an.n_frames
    assert 'title="Play"' in html and not re.search(r"(src|href)=\"https?://", html)
    assert an.fig.get_size_inches()[0] <= viz.MAX_FIG_WIDTH


@pytest.mark.parametrize(
    "args, kw, words",
    [
        ((torch.zeros(5, 5), torch.zeros(3, 3)), {}, "whole 2 x 2 tiles"),
        ((torch.zeros(1, 4, 4), torch.zeros(3, 3)), {}, "one H x W channel"),
        ((torch.zeros(4, 4), torch.zeros(3, 2)), {}, "square"),
        ((torch.zeros(4, 4), torch.zeros(3, 3)), dict(padding=-1), "padding"),
        ((torch.zeros(4, 4), torch.zeros(3, 3)), dict(padding=1.0), "padding"),
    ],
)
def test_bad_input_raises_clear_error(args, kw, words):
    with pytest.raises(ValueError, match=words):
        viz.winograd_tile_frames(*args, **kw)


def test_frames_are_wide_and_their_text_readable():
    """As for the other animations: 8 inches at >= 900 pixels, no text under 11 pt, nothing outside the frame,
    every number inside its cell, and every number of the book's example written."""
    from test_viz_animations import _every_frame, assert_frame_readable

    x = torch.tensor([[2.0, 2, 1, -2], [1, 2, 0, 1], [0, 1, -1, -1], [-1, 2, 1, -1]])
    K = torch.tensor([[0.0, 1, -1], [1, 0, 1], [-1, 1, 1]])
    an = viz.animate_winograd_tiles(x, K, m=2, padding=1)
    fig = an.fig
    assert fig.get_size_inches()[0] <= viz.MAX_FIG_WIDTH and fig.get_size_inches()[0] * fig.dpi >= 900
    for t in _every_frame(an):
        centred = [x for ax in fig.axes for x in ax.texts if x.get_ha() == "center" and x.get_va() == "center"]
        stage = an.frames[t]["stage"]
        written = 36 + 16 + 16 + 16 * (stage >= 1) + 4 * (stage >= 2) + 4 * (t // 3 + (stage >= 2))
        assert len(centred) == written, f"frame {t}: numbers left out"
        assert_frame_readable(fig, f"frame {t}")
