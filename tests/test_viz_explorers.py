"""convlib.viz's explorer's core (settings -> figure and numbers) against PyTorch, and its wiring."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import convlib
from convlib.viz import explorer, explorer_view

matplotlib.use("Agg")


@st.composite
def explorer_settings(draw):
    g = draw(st.integers(1, 2))
    return dict(
        H=draw(st.integers(1, 8)),
        W=draw(st.integers(1, 8)),
        kernel_size=draw(st.integers(1, 4)),
        stride=draw(st.integers(1, 3)),
        padding=draw(st.integers(0, 2)),
        dilation=draw(st.integers(1, 2)),
        in_channels=g * draw(st.integers(1, 2)),
        out_channels=g * draw(st.integers(1, 2)),
        groups=g,
        position=draw(st.integers(0, 80)),
    )


@settings(max_examples=12, deadline=None)
@given(s=explorer_settings())
def test_explorer_view_numbers_equal_pytorch(s):
    C, O, g, k = s["in_channels"], s["out_channels"], s["groups"], s["kernel_size"]
    conv_kw = dict(stride=s["stride"], padding=s["padding"], dilation=s["dilation"], groups=g)
    span = s["dilation"] * (k - 1) + 1
    view = explorer_view(**s)
    if span > min(s["H"], s["W"]) + 2 * s["padding"]:  # PyTorch refuses too: the explorer says why
        with pytest.raises(RuntimeError):
            F.conv2d(torch.zeros(1, C, s["H"], s["W"]), torch.zeros(O, C // g, k, k), **conv_kw)
        assert view.fig is None and "kernel larger than the padded input" in view.text
        return
    x = torch.randn(1, C, s["H"], s["W"], dtype=torch.float64)
    w = torch.randn(O, C // g, k, k, dtype=torch.float64)
    y = F.conv2d(x, w, **conv_kw)
    assert view.error is None and view.fig is not None
    assert view.output_shape == tuple(y.shape[1:])
    Ho, Wo = y.shape[2:]
    assert f"= {Ho}\n" in view.text and f"= {Wo}\n" in view.text
    cols = F.unfold(x, k, dilation=s["dilation"], padding=s["padding"], stride=s["stride"])
    assert view.cols_shape == tuple(cols.shape[1:])
    assert view.M_shape == (y[0].numel(), x[0].numel())
    # nonzeros of M = the (output, input) pairs the Jacobian of F.conv2d links (weights with no zero)
    J = torch.autograd.functional.jacobian(lambda v: F.conv2d(v, w.abs() + 1, **conv_kw), x)
    assert view.M_nonzeros == int((J.reshape(y.numel(), x.numel()) != 0).sum())
    # the receptive field of the chosen pixel (output channel 0) = the inputs its gradient reaches
    l = min(s["position"], Ho * Wo - 1)
    probe = x.clone().requires_grad_(True)
    F.conv2d(probe, w.abs() + 1, **conv_kw)[0, 0, l // Wo, l % Wo].backward()
    assert sorted(view.receptive_field) == [tuple(t) for t in torch.nonzero(probe.grad[0]).tolist()]


def test_explorer_view_example_text():
    view = explorer_view(H=7, W=7, kernel_size=3, stride=2, padding=1)
    assert "floor((7 + 2*1 - 1*(3-1) - 1) / 2) + 1 = 4" in view.text
    assert view.output_shape == (1, 4, 4) == (1, *convlib.conv2d_output_shape(7, 3, 2, 1))
    assert view.fig.axes[0].get_title().startswith("input channel 0")
    assert len(view.fig.axes) == 4


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(H=2, kernel_size=5), "kernel larger than the padded input"),
        (dict(in_channels=3, groups=2), "groups=2 must divide"),
        (dict(H=0), "H must be at least 1"),
        (dict(stride=0), "stride must be at least 1"),
        (dict(groups=0), "groups must be at least 1"),
    ],
)
def test_explorer_view_invalid_settings_explain(kwargs, words):
    view = explorer_view(**kwargs)
    assert view.fig is None and words in view.error and view.text.startswith("invalid setting")


def test_explorer_wiring_recomputes_on_change():
    box = explorer(H=6, W=6)
    assert box.last_view.output_shape == (1, 4, 4)
    sliders = {w.description: w for row in box.children[:-1] for w in row.children}
    assert {"height H", "kernel k", "stride s", "padding p", "dilation d", "in channels C", "groups g"} <= set(sliders)
    sliders["stride s"].value = 2
    assert box.last_view.output_shape == (1, 2, 2)
    sliders["padding p"].value = 1
    assert box.last_view.output_shape == (1, 3, 3)
    sliders["kernel k"].value = 6
    sliders["padding p"].value = 0
    sliders["height H"].value = 3
    assert box.last_view.fig is None and "kernel larger" in box.last_view.text


CHAPTERS = sorted((Path(__file__).resolve().parents[1] / "chapters").glob("*.ipynb"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_chapter_shows_a_saved_widget(path):
    """In the static book a saved widget is a control that looks live but recomputes nothing (and its manager
    would come from a CDN): explorer cells are tagged remove-output, and `make notebooks` drops widget state."""
    nb = json.loads(path.read_text())
    assert not nb["metadata"].get("widgets"), f"{path.name}: stores ipywidgets state; run `make notebooks NB=...`"
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        views = [o for o in cell.get("outputs", []) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert not views or "remove-output" in tags, f"{path.name}: a widget output the book would show dead"
        if "convlib.viz.explorer(" in "".join(cell["source"]) and cell["cell_type"] == "code":
            assert {"remove-output", "nbval-ignore-output"} <= set(tags), f"{path.name}: explorer cell needs tags"
