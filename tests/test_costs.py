"""convlib.costs: the error metric, the accuracy table and the timing table (structure, never speed)."""

from __future__ import annotations

import math

import pytest
import torch

from convlib import costs
from convlib.bench import Layer


def test_normalized_error_is_error_over_rms_of_the_reference():
    ref = torch.tensor([3.0, 4.0, 0.0, 0.0], dtype=torch.float64)  # rms = 2.5
    y = torch.tensor([3.0, 4.5, 0.0, -0.25])
    e = costs.normalized_error(y, ref)
    assert e["max"] == pytest.approx(0.5 / 2.5) and e["median"] == 0.0  # errors 0, .2, 0, .1: lower median 0
    with pytest.raises(ValueError, match="all zeros"):
        costs.normalized_error(y, torch.zeros(4))


def test_conv_methods_offer_winograd_only_where_it_applies():
    x, w = torch.randn(1, 2, 6, 6), torch.randn(2, 2, 3, 3)
    names = set(costs.conv_methods(x, w, padding=1))
    assert {"F.conv2d", "convlib.conv2d", "FFT", "Winograd F(4x4, 3x3)"} <= names and len(names) == 6
    assert not any("Winograd" in n for n in costs.conv_methods(x, w, stride=2))
    assert not any("Winograd" in n for n in costs.conv_methods(x, torch.randn(2, 2, 5, 5)))


def test_accuracy_table_rows_and_the_price_of_larger_tiles():
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    cases = costs.accuracy_cases(images=images)
    assert set(cases) == {"random", "CIFAR-10 layer 1", "CIFAR-10 layer 2"}
    assert bool((cases["CIFAR-10 layer 2"][0] >= 0).all())  # ReLU activations
    rows = costs.accuracy_table({"random": cases["random"]})
    by_method = {r["method"]: r for r in rows}
    assert len(rows) == 6 and all(0 <= r["median"] <= r["max"] < 1e-3 for r in rows)
    # the transforms' growth shows in float32: larger tiles, larger errors (fixed seeds, no timing)
    assert by_method["Winograd F(6x6, 3x3)"]["median"] > by_method["Winograd F(2x2, 3x3)"]["median"]


def test_error_by_tile_follows_the_transform_growth():
    case = (torch.randn(2, 8, 16, 16, dtype=torch.float32), torch.randn(8, 8, 3, 3) / 8, dict(padding=1))
    rows = costs.error_by_tile((2, 4, 8), case=case)
    assert [r["m"] for r in rows] == [2, 4, 8]
    assert rows[2]["median"] > 10 * rows[0]["median"]  # F(8, 3) uses the points +-3: errors jump


def test_time_table_structure():
    layers = (Layer(1, 2, 6, 3, 3, 1), Layer(2, 1, 5, 2, 2, 0, stride=2))
    threads = torch.get_num_threads()
    result = costs.time_table(layers, repeat=2, warmup=1)
    assert torch.get_num_threads() == threads  # restored
    assert result["machine"]["cpu"] and result["machine"]["threads"] == 1
    rows = result["rows"]
    first = [r for r in rows if r["layer"] == layers[0].label]
    assert len(first) == 3 + 1 + 3 * 2  # F.conv2d, convlib.conv2d, FFT (+ cached), 3 Winograd (+ cached)
    assert len([r for r in rows if r["layer"] == layers[1].label]) == 4  # stride 2: no Winograd
    for r in rows:
        assert r["min_ms"] <= r["median_ms"] <= r["max_ms"] and r["max_error"] < 1e-4
        if r["method"] == "F.conv2d":
            assert math.isclose(r["ratio"], 1.0) and math.isclose(r["ratio_min"], 1.0) and r["cpu_ratio"] == 1.0
        assert r["ratio"] > 0 and r["ratio_min"] > 0 and r["cpu_ratio"] > 0 and r["cpu_ms"] > 0
    table = costs.format_table(rows, ["layer", "method", "ratio"])
    assert table.count("\n") == len(rows) + 1 and "| F.conv2d | 1 |" in table


def test_block_sweep_structure():
    layer = Layer(2, 4, 8, 4, 3, 1)
    rows = costs.block_sweep((layer,), sizes_mib=(0.01, 1), repeat=1)
    assert [r["block_mib"] for r in rows] == [0.01, 1] and all(r["ratio"] > 0 and r["cpu_ratio"] > 0 for r in rows)


def test_accuracy_cases_without_real_images_need_no_data(monkeypatch):
    monkeypatch.setenv("CONVLIB_DATA", "/nonexistent")
    cases = costs.accuracy_cases(real=False)
    assert list(cases) == ["random"] and cases["random"][0].shape == (8, 64, 32, 32)
