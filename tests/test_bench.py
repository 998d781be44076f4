"""convlib.bench: the bookkeeping behind chapter 6's numbers (timings themselves are not tested, only measured)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import convlib
from convlib import bench, fast
from convlib.bench import _fastpath, allocator, machine, methods
from convlib.bench.__main__ import main as bench_main
from convlib.bench.legacy import from_legacy
from convlib.bench.suite import ABLATION, EXTRA


def test_suite_is_the_issue_suite():
    got = [(l.N, l.C, l.H, l.O, l.k, l.padding, l.stride, l.groups) for l in bench.SUITE.values()]
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
    assert [bench.SUITE[n].macs for n in bench.BIG] == [924_844_032] * 2
    assert all(
        bench.SUITE[n].macs >= 4 * l.macs for n in bench.BIG for name, l in bench.SUITE.items() if name not in bench.BIG
    )
    with pytest.raises(TypeError):  # a mapping to read, never to extend by position or by accident
        bench.SUITE["new"] = bench.Layer(1, 1, 4, 1, 3)
    assert set(bench.QUICK) <= set(bench.SUITE) and set(ABLATION) <= set(bench.SUITE)
    assert not set(EXTRA) & set(bench.SUITE)


@pytest.mark.parametrize("name", [*bench.SUITE, *EXTRA])
def test_layer_counts(name):
    layer = {**bench.SUITE, **EXTRA}[name]
    x, w, b, kw = layer.tensors()
    y = F.conv2d(x, w, b, **kw)
    assert y.shape[2:] == (layer.out_hw, layer.out_hw)
    assert layer.macs == convlib.conv2d_macs(
        tuple(x.shape), tuple(w.shape), kw["stride"], kw["padding"], 1, kw["groups"]
    )
    assert layer.min_bytes() == 4 * (x.numel() + w.numel() + layer.O + y.numel())
    assert b.shape == (layer.O,)  # the suite times every method with bias
    assert layer.tensors(bias=False)[2] is None  # ... and can time the convolution without it


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
    assert bench.method_bytes("convlib.conv2d", layer) == fast.workspace_nbytes(plan)
    assert bench.method_bytes("F.conv2d", layer) is None
    assert bench.method_bytes("convlib.conv2d", bench.SUITE["pointwise"]) == 0  # 1x1: one product, nothing kept


def _variants():
    for name, layer in {**bench.SUITE, **EXTRA}.items():
        yield pytest.param(layer, {}, id=name)
    for name, options in ABLATION.items():
        for opts in options[1:]:
            yield pytest.param(bench.SUITE[name], opts, id=f"{name}-{json.dumps(opts)}")


@pytest.mark.parametrize(("layer", "opts"), list(_variants()))
def test_every_ablation_variant_has_a_plan_and_a_workspace_size(layer, opts):
    """Every variant the ablation times is a plan the fast path accepts (what a call keeps is tested in fast's own
    tests: tests/test_fast_plans.py)."""
    plan = _fastpath.plan_for(layer, **opts)
    nbytes = _fastpath.workspace_nbytes(plan)
    assert nbytes == 0 if plan.mode == "gemm1x1" else nbytes > 0


def test_skip_reasons():
    assert bench.skip_reason("naive loops", bench.SUITE["resnet-s1"]) is not None  # 56*56*9 = 28,224 Python steps
    assert bench.skip_reason("naive loops", bench.SUITE["cifar-first"]) is None
    assert "non-zeros" in bench.skip_reason("Toeplitz (sparse)", bench.SUITE["resnet-s1"])
    assert bench.skip_reason("F.conv2d", bench.SUITE["resnet-s1"]) is None


def test_loglog_slope_and_geomean():
    xs = [2, 4, 8, 16]
    assert bench.loglog_slope(xs, [3 * x**2.5 for x in xs]) == pytest.approx(2.5)
    assert bench.geomean([0.5, 2.0, 1.0]) == pytest.approx(1.0)
    assert bench.geomean([1.2] * 8) == pytest.approx(1.2)


def test_time_interleaved_counts_every_call():
    calls = {"a": 0, "b": 0, "naive": 0}

    def f(name):
        calls[name] += 1

    fns = {name: (lambda name=name: f(name)) for name in calls}
    out = bench.time_interleaved(fns, repeat=5, warmup=2, repeats={"naive": 1})
    assert calls == {"a": 7, "b": 7, "naive": 3}  # every function warmed up, the naive one included
    assert all(len(out[n]["wall"]) == len(out[n]["cpu"]) for n in out)
    assert [len(out[n]["wall"]) for n in ("a", "b", "naive")] == [5, 5, 1]
    assert all(t >= 0 for n in out for t in out[n]["wall"])


def test_dispersion_of_every_figure():
    from convlib.bench.timing import ratio_stats, stats

    s = stats({"wall": [3.0, 1.0, 2.0, 5.0, 4.0], "cpu": [1.0] * 5})
    assert (s["min_s"], s["median_s"], s["max_s"], s["repeats"]) == (1.0, 3.0, 5.0, 5)
    assert s["min_s"] <= s["ci_s"][0] <= s["median_s"] <= s["ci_s"][1] <= s["max_s"]
    ratio, (lo, hi) = ratio_stats([2.0, 2.2, 1.8], [1.0, 1.1, 0.9])
    assert ratio == pytest.approx(2.0) and lo <= ratio <= hi
    assert ratio_stats([1.0] * 4, [1.0] * 4) == (1.0, [1.0, 1.0])


@pytest.fixture(scope="module")
def quick():
    return bench.run(quick=True, repeat=2, progress=False)


def test_quick_run_writes_results_and_figures(quick, tmp_path):
    results = quick
    assert results["machine"]["torch_threads"] == 1
    assert results["ceiling"]["gflops"] > 0 and results["copy"]["gbs"] > 0
    methods = {r["method"] for r in results["suite"]}
    assert methods == set(bench.METHODS)
    for r in results["suite"]:
        assert ("median_s" in r) != (r["skipped"] is not None)
        if "median_s" in r:
            assert r["min_s"] <= r["ci_s"][0] <= r["median_s"] <= r["ci_s"][1] <= r["max_s"]
            assert len(r["samples_s"]) == r["repeats"]
        if r["method"] == "F.conv2d":
            assert r["ratio_to_F"] == 1.0
    s = results["summary"]
    assert s["geomean_ratio"] == pytest.approx(
        math.exp(sum(math.log(v) for v in s["ratios"].values()) / len(s["ratios"]))
    )
    assert s["geomean_ci"][0] <= s["geomean_ratio"] <= s["geomean_ci"][1]
    folder = bench.write_run(results, tmp_path, figures=False)
    assert {p.name for p in folder.iterdir()} >= {"run.json", "suite.csv", "sweeps.csv", "training.csv", "ceiling.csv"}
    figs = bench.draw_figures(results, tmp_path)
    assert set(figs) == {"suite_gflops", "roofline", "sweeps", "memory", "conv_matrix"}
    for name, fig in figs.items():
        assert (tmp_path / f"{name}.png").exists()
        assert fig.get_size_inches()[0] <= 8.0
    assert "geometric mean" in bench.format_table(results)


def test_quick_run_times_training_and_the_allocator(quick):
    rows = {(r["what"], r["conv"]): r for r in quick["training"]}
    assert set(rows) == {(w, c) for w in ("small-cifar", "small_cnn") for c in ("convlib.Conv2d", "nn.Conv2d")}
    assert all(rows[(w, "nn.Conv2d")]["ratio_to_nn"] == 1.0 for w in ("small-cifar", "small_cnn"))
    assert quick["summary"]["cnn_training_ratio"] == rows[("small_cnn", "convlib.Conv2d")]["ratio_to_nn"]
    probe = quick["allocator"]["results"]
    assert set(probe) == set(allocator.SETTINGS)
    for rows in probe.values():
        assert allocator.TEMPORARY in rows and {f"small-cifar / {m}" for m in allocator.PROBE_METHODS} <= set(rows)
        assert all(f >= 0 and f == int(f) for row in rows.values() for f in row["faults"])
    assert set(quick["summary"]["allocator"]) == set(probe["glibc default"])
    assert quick["settings"]["allocator"].startswith("glibc defaults")  # the run itself: a plain process
    assert all(not k.startswith("MALLOC_") for k in quick["machine"]["environment"])


def test_allocator_probe_counts_page_faults():
    out = allocator.probe(["small-cifar"], repeat=2, warmup=1)
    assert set(out) == {allocator.TEMPORARY} | {f"small-cifar / {m}" for m in allocator.PROBE_METHODS}
    for row in out.values():
        assert len(row["faults"]) == row["repeats"] == 2 and row["faults_median"] >= 0


def test_describe_plan(monkeypatch):
    monkeypatch.setattr(fast.settings, "route", "mm")  # the rules for the 'mm' GEMM route (others: im2col_nhwc)

    def describe(name):
        return _fastpath.describe(_fastpath.plan_for(bench.SUITE[name]))

    assert describe("pointwise") == "gemm1x1 via mm: one product per image"
    assert describe("resnet-s1").startswith("tap, exact")
    assert describe("depthwise").startswith("depthwise")


def test_which_kernel_F_conv2d_runs_on_the_suite():
    """What chapter 6 says about F.conv2d here: oneDNN on every layer but the 1x1 one, where PyTorch runs its own
    matrix-product convolution (one GEMM per image)."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    kernels = {}
    for name, layer in bench.SUITE.items():
        x, w, b, kw = layer.tensors()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            F.conv2d(x, w, b, **kw)
        names = {e.key for e in prof.key_averages()}
        kernels[name] = (
            "oneDNN"
            if "aten::mkldnn_convolution" in names
            else "slow_conv2d"
            if "aten::_slow_conv2d_forward" in names
            else "other"
        )
    assert kernels == {name: "slow_conv2d" if name == "pointwise" else "oneDNN" for name in bench.SUITE}


# ---------------------------------------------------------------------------------------------- the ceiling


def test_ceiling_measures_every_route():
    c = bench.gemm_ceiling(n=64, repeat=2)
    assert set(c["routes"]) == {"torch.mm", "F.linear on mkldnn tensors", "mkldnn._linear_pointwise"}
    available = {name: r for name, r in c["routes"].items() if r["available"]}
    assert "torch.mm" in available and all(r["gflops"] > 0 for r in available.values())
    assert c["best"] in available and c["gflops"] == max(r["gflops"] for r in available.values())
    assert c["library"] == c["routes"][c["best"]]["library"]
    if torch.backends.mkldnn.is_available():
        assert c["routes"]["F.linear on mkldnn tensors"]["available"]


def test_ceiling_without_the_private_operator(monkeypatch):
    """Feature check: where torch has no ``_linear_pointwise``, the route is recorded as unavailable and the
    ceiling comes from the others."""

    def missing():
        raise AttributeError("'_OpNamespace' 'mkldnn' object has no attribute '_linear_pointwise'")

    monkeypatch.setattr(machine, "_private_linear", missing)
    c = bench.gemm_ceiling(n=64, repeat=2)
    route = c["routes"]["mkldnn._linear_pointwise"]
    assert not route["available"] and route["reason"].startswith("AttributeError")
    assert "gflops" not in route and c["best"] != "mkldnn._linear_pointwise"


def test_ceiling_rejects_a_route_with_a_wrong_product(monkeypatch):
    monkeypatch.setattr(machine, "_private_linear", lambda: lambda x, w, *args: torch.zeros(x.shape[0], w.shape[0]))
    c = bench.gemm_ceiling(n=64, repeat=2)
    assert c["routes"]["mkldnn._linear_pointwise"] == {
        "library": "oneDNN",
        "note": "private operator, dense operands",
        "available": False,
        "reason": "wrong product",
    }


def test_ceiling_without_onednn(monkeypatch):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    c = bench.gemm_ceiling(n=64, repeat=2)
    assert [name for name, r in c["routes"].items() if r["available"]] == ["torch.mm"]
    assert c["best"] == "torch.mm"
    assert all(r["reason"] == "this torch has no oneDNN" for r in c["routes"].values() if not r["available"])


def test_machine_record():
    info = bench.machine_info()
    assert {"avx2", "avx512f", "avx512_bf16", "amx"} <= set(info["isa"])
    assert {"torch", "numpy"} <= set(info["libraries"]) and info["torch_threads"] == torch.get_num_threads()
    assert machine.cache_bytes("32768K") == 32 << 20 and machine.cache_bytes("2M") == 2 << 20


# ---------------------------------------------------------------------------------------------- stored runs


@pytest.mark.parametrize(
    ("cpu", "slug"),
    [
        ("Intel(R) Xeon(R) Platinum 8480+", "intel-xeon-platinum-8480"),
        ("Intel(R) Xeon(R) Processor", "intel-xeon"),
        ("AMD EPYC 9654 96-Core Processor", "amd-epyc-9654-96-core"),
        ("AMD EPYC", "amd-epyc"),
        ("", "unknown-cpu"),
    ],
)
def test_cpu_slug(cpu, slug):
    assert machine.cpu_slug({"cpu": cpu}) == slug


def _fake_run(cpu: str, date: str, **extra) -> dict:
    return {"format": 2, "quick": False, "machine": {"cpu": cpu, "date_utc": f"{date} 12:00 UTC"}, **extra}


def test_runs_never_overwrite_each_other(tmp_path):
    xeon, epyc = _fake_run("Intel(R) Xeon(R) Processor", "2026-11-22"), _fake_run("AMD EPYC", "2026-11-22")
    folders = [bench.write_run(r, tmp_path, figures=False) for r in (xeon, epyc, xeon, epyc)]
    assert [f.name for f in folders] == [
        "2026-11-22_intel-xeon",
        "2026-11-22_amd-epyc",
        "2026-11-22_intel-xeon_2",
        "2026-11-22_amd-epyc_2",
    ]
    assert len(set(folders)) == 4 and all((f / "run.json").exists() for f in folders)
    assert [json.loads((f / "run.json").read_text())["name"] for f in folders] == [f.name for f in folders]


def test_load_runs(tmp_path):
    bench.write_run(_fake_run("AMD EPYC", "2026-12-01"), tmp_path, figures=False)
    bench.write_run(_fake_run("Intel(R) Xeon(R) Processor", "2026-11-30"), tmp_path, figures=False)
    bench.write_run(_fake_run("AMD EPYC", "2026-12-02", quick=True), tmp_path, figures=False)
    bench.write_run(_fake_run("Intel(R) Xeon(R) Processor", "2026-11-22", historical=True), tmp_path, figures=False)
    runs = bench.load_runs(tmp_path)
    assert [r["name"] for r in runs] == ["2026-11-30_intel-xeon", "2026-12-01_amd-epyc"]  # oldest first
    assert all(r["path"].startswith(str(tmp_path)) for r in runs)
    assert len(bench.load_runs(tmp_path, include_quick=True)) == 3
    assert bench.load_runs(tmp_path, include_historical=True)[0]["name"] == "2026-11-22_intel-xeon_historical"
    bench.write_run(_fake_run("AMD EPYC", "2026-12-03", format=99), tmp_path, figures=False)
    with pytest.raises(ValueError, match="newer than this benchmark"):
        bench.load_runs(tmp_path)


def test_command_line_stores_a_quick_run(tmp_path, capsys):
    argv = ["--quick", "--out", str(tmp_path), "--no-progress", "--no-figures", "--sections", "suite", "--repeat", "2"]
    assert bench_main(argv) == 0
    (folder,) = tmp_path.iterdir()
    assert folder.name.endswith("_quick") and str(folder) in capsys.readouterr().out
    assert bench.load_runs(tmp_path) == []  # a quick run is never one of the chapter's runs
    (run,) = bench.load_runs(tmp_path, include_quick=True)
    assert [r["layer"] for r in run["suite"]][:: len(bench.METHODS)] == list(bench.QUICK)
    assert "sweeps" not in run and run["settings"]["bias"] is True


def test_the_stored_historical_run_is_the_older_results_converted():
    """The converted run keeps the older run's numbers and machine record, and says how it was measured."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "chapters" / "bench"
    stored = next(r for r in bench.load_runs(root / "runs", include_historical=True) if r["historical"])
    assert "differences" in stored["provenance"] and stored["code"]["commit"] is None
    commit = stored["provenance"]["source"].split(" in ")[1].split()[0]  # "... as committed in <sha> (date) ..."
    shown = subprocess.run(
        ["git", "show", f"{commit}:chapters/bench/results.json"], cwd=root, capture_output=True, text=True
    )
    if shown.returncode != 0:
        pytest.skip(f"no git history with commit {commit} here: nothing to compare with")
    old = json.loads(shown.stdout)
    again = from_legacy(old, stored["provenance"]["source"])
    assert {k: v for k, v in stored.items() if k not in ("name", "path")} == json.loads(json.dumps(again))
    assert stored["summary"]["geomean_ratio"] == old["summary"]["geomean_ratio"]
    assert [r["median_s"] for r in stored["suite"] if "median_s" in r] == [
        r["median_s"] for r in old["suite"] if "median_s" in r
    ]
    assert stored["machine"]["cpu"] == old["machine"]["cpu"] and stored["settings"]["bias"] is False


# ---------------------------------------------------------------------------------------------- the registry


def test_optional_methods_plug_in(monkeypatch):
    """convlib.fft / convlib.winograd join the registry where they exist (one line of _OPTIONAL each)."""
    fft = types.ModuleType("convlib.fft")
    fft.conv2d_fft = F.conv2d
    winograd = types.ModuleType("convlib.winograd")  # without its function: left out
    monkeypatch.setitem(sys.modules, "convlib.fft", fft)
    monkeypatch.setitem(sys.modules, "convlib.winograd", winograd)
    found = {m.name: m for m in methods._optional()}
    assert set(found) == {"FFT"}
    winograd.conv2d_winograd = F.conv2d
    found = {m.name: m for m in methods._optional()}
    assert set(found) == {"FFT", "Winograd"}
    assert found["Winograd"].skip(bench.SUITE["cifar-first"]) is not None  # 5x5
    assert found["Winograd"].skip(bench.SUITE["stride-2"]) is not None
    assert found["Winograd"].skip(bench.SUITE["resnet-s1"]) is None
    x, w, b, kw = bench.SUITE["small-cifar"].tensors()
    assert torch.equal(found["FFT"].make(x, w, b, kw)(), F.conv2d(x, w, b, **kw))


def test_cached_variant_transforms_the_kernel_once():
    prepared = []

    def prepare(w, **kw):
        prepared.append(1)
        return w.flip(0)

    def apply(x, state, b, **kw):
        return F.conv2d(x, state.flip(0), b, **kw)

    x, w, b, kw = bench.SUITE["small-cifar"].tensors()
    call = bench.cached(prepare, apply)(x, w, b, kw)
    for _ in range(3):
        assert torch.equal(call(), F.conv2d(x, w, b, **kw))
    assert prepared == [1]


def test_onednn_formats_are_read_from_the_log_fields():
    from convlib.bench.onednn import _formats

    field = (
        "src:f32::blocked:abcd::f0 wei:f32:a:blocked:ABcd16b16a::f0 bia:undef::undef::: dst:f32::blocked:aBcd16b::f0"
    )
    assert _formats(field) == ["src abcd", "wei ABcd16b16a", "dst aBcd16b"]


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this PyTorch has no oneDNN")
def test_onednn_primitives_of_an_nchw_and_a_channels_last_convolution():
    layer = bench.Layer(2, 16, 12, 16, 3, 1)
    nchw = bench.onednn_primitives(layer)
    kinds = [r["kind"] for r in nchw]
    assert kinds.count("convolution") == 1 and all(r["ms"] >= 0 for r in nchw)
    # NCHW in and out: the input is reordered before the convolution, its result after it
    conv = kinds.index("convolution")
    assert any("src abcd" in r["formats"] for r in nchw[:conv] if r["kind"] == "reorder")
    assert any("dst abcd" in r["formats"] for r in nchw[conv + 1 :] if r["kind"] == "reorder")
    nhwc = bench.onednn_primitives(layer, channels_last=True)
    conv = next(r for r in nhwc if r["kind"] == "convolution")
    assert "src acdb" in conv["formats"] and "dst acdb" in conv["formats"]
    reorders = [sum(r["kind"] == "reorder" for r in rows) for rows in (nchw, nhwc)]
    assert reorders[1] < reorders[0]  # channels-last: the weight's reorder only, no copy of the input or result
