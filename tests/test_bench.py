"""convlib.bench: the bookkeeping behind chapter 6's numbers (timings themselves are not tested, only measured)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import convlib
from convlib import bench, fast


def test_suite_is_the_issue_suite():
    got = [(l.N, l.C, l.H, l.O, l.k, l.padding, l.stride, l.groups) for l in bench.SUITE]
    assert got == [
        (32, 3, 32, 32, 5, 0, 1, 1),
        (8, 64, 56, 64, 3, 1, 1, 1),
        (8, 128, 28, 128, 3, 1, 1, 1),
        (1, 256, 14, 256, 3, 1, 1, 1),
        (64, 16, 16, 32, 3, 1, 1, 1),
        (8, 64, 56, 128, 1, 0, 1, 1),
        (8, 64, 56, 64, 3, 1, 2, 1),
        (16, 32, 32, 32, 3, 1, 1, 32),
    ]
    assert [bench.SUITE[i].macs for i in bench.BIG] == [924_844_032] * 2
    assert all(
        bench.SUITE[i].macs >= 4 * l.macs for i in bench.BIG for j, l in enumerate(bench.SUITE) if j not in bench.BIG
    )


@pytest.mark.parametrize("layer", bench.SUITE, ids=lambda l: l.name)
def test_layer_counts(layer):
    x, w, b, kw = layer.tensors()
    y = F.conv2d(x, w, b, **kw)
    assert y.shape[2:] == (layer.out_hw, layer.out_hw)
    assert layer.macs == convlib.conv2d_macs(
        tuple(x.shape), tuple(w.shape), kw["stride"], kw["padding"], 1, kw["groups"]
    )
    assert layer.min_bytes() == 4 * (x.numel() + w.numel() + layer.O + y.numel())
    assert b is None  # the suite times the convolution without bias


@given(
    N=st.integers(1, 2),
    C=st.integers(1, 4),
    H=st.integers(3, 12),
    O=st.integers(1, 4),
    k=st.integers(1, 4),
    p=st.integers(0, 2),
    s=st.integers(1, 2),
)
def test_toeplitz_nnz_is_conv_matrix_nnz(N, C, H, O, k, p, s):
    if k > H + 2 * p:
        return
    layer = bench.Layer(N, C, H, O, k, p, s)
    M = convlib.conv_matrix(torch.randn(O, C, k, k), (C, H, H), stride=s, padding=p)
    assert bench.toeplitz_nnz(layer) == M.values().numel()


def test_method_bytes_match_the_tensors():
    layer = bench.Layer(2, 3, 10, 4, 3, 1)
    x, w, _, kw = layer.tensors()
    cols = convlib.im2col(x, 3, padding=1)
    padded = 2 * 3 * 12 * 12
    assert bench.method_bytes("im2col (NCHW)", layer) == 4 * (cols.numel() + padded)
    assert bench.method_bytes("naive loops", layer) == 4 * padded
    M = convlib.conv_matrix(w, (3, 10, 10), padding=1)
    csr = sum(t.numel() * t.element_size() for t in (M.values(), M.col_indices(), M.crow_indices()))
    assert bench.method_bytes("Toeplitz (sparse)", layer) == csr
    plan = fast.conv2d_plan(2, 3, 10, 10, 4, 3, 3, (1, 1), (1, 1))
    assert bench.method_bytes("convlib.conv2d", layer) == fast._Workspace(plan, torch.float32, "cpu").nbytes
    assert bench.method_bytes("F.conv2d", layer) is None
    assert bench.method_bytes("convlib.conv2d", bench.SUITE[5]) == 0  # 1x1: one product, nothing kept


def test_skip_reasons():
    assert bench.skip_reason("naive loops", bench.SUITE[1]) is not None  # 56*56*9 = 28,224 Python steps
    assert bench.skip_reason("naive loops", bench.SUITE[0]) is None
    assert "non-zeros" in bench.skip_reason("Toeplitz (sparse)", bench.SUITE[1])
    assert bench.skip_reason("F.conv2d", bench.SUITE[1]) is None


def test_loglog_slope_and_geomean():
    xs = [2, 4, 8, 16]
    assert bench.loglog_slope(xs, [3 * x**2.5 for x in xs]) == pytest.approx(2.5)
    assert bench.geomean([0.5, 2.0, 1.0]) == pytest.approx(1.0)
    assert bench.geomean([1.2] * 8) == pytest.approx(1.2)


def test_time_interleaved_counts_every_call():
    calls = {"a": 0, "b": 0}

    def f(name):
        calls[name] += 1

    out = bench.time_interleaved({"a": lambda: f("a"), "b": lambda: f("b")}, repeat=5, warmup=2)
    assert calls == {"a": 7, "b": 7}
    assert all(len(out[n]["wall"]) == len(out[n]["cpu"]) == 5 for n in out)
    assert all(t >= 0 for n in out for t in out[n]["wall"])


def test_quick_run_writes_results_and_figures(tmp_path):
    results = bench.run(quick=True, repeat=2, progress=False)
    assert results["machine"]["torch_threads"] == 1
    assert results["sgemm_gflops"] > 0 and results["copy_gbs"] > 0
    methods = {r["method"] for r in results["suite"]}
    assert methods == set(bench.METHODS)
    for r in results["suite"]:
        assert ("median_s" in r) != (r["skipped"] is not None)
        if r["method"] == "F.conv2d":
            assert r["ratio_to_F"] == 1.0
    s = results["summary"]
    assert s["geomean_ratio"] == pytest.approx(
        math.exp(sum(math.log(v) for v in s["ratios"].values()) / len(s["ratios"]))
    )
    paths = bench.write_results(results, tmp_path)
    assert {p.name for p in paths} >= {"results.json", "suite.csv", "sweeps.csv"}
    figs = bench.draw_figures(results, tmp_path)
    assert set(figs) == {"suite_gflops", "roofline", "sweeps", "memory"}
    for name, fig in figs.items():
        assert (tmp_path / f"{name}.png").exists()
        assert fig.get_size_inches()[0] <= 8.0
    assert "geometric mean" in bench.format_table(results)


def test_describe_plan(monkeypatch):
    monkeypatch.setattr(fast.settings, "route", "mm")  # the rules for the 'mm' GEMM route (others: im2col_nhwc)
    assert bench.describe_plan(bench.SUITE[5]) == "gemm1x1: one product per image"
    assert bench.describe_plan(bench.SUITE[1]).startswith("tap, exact")
    assert bench.describe_plan(bench.SUITE[7]).startswith("depthwise")


def test_which_kernel_F_conv2d_runs_on_the_suite():
    """What chapter 6 says about F.conv2d here: oneDNN on every layer but the 1x1 one, where PyTorch runs its own
    matrix-product convolution (one GEMM per image)."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    kernels = []
    for layer in bench.SUITE:
        x, w, b, kw = layer.tensors()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            F.conv2d(x, w, b, **kw)
        names = {e.key for e in prof.key_averages()}
        kernels.append(
            "oneDNN"
            if "aten::mkldnn_convolution" in names
            else "slow_conv2d"
            if "aten::_slow_conv2d_forward" in names
            else "other"
        )
    assert kernels == ["oneDNN"] * 5 + ["slow_conv2d"] + ["oneDNN"] * 2
