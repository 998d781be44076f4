"""convlib.conv2d in every plan and GEMM route against PyTorch; the measured choice, the rules, the routes, the
registry, and the plan as named data."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import check_conv, conv_configs
from hypothesis import given
from hypothesis import strategies as st

import convlib
from convlib import fast
from convlib.fast import routes


def _plans(cfg):
    x, weight, bias, kw = cfg
    return fast.candidates(fast.plan_for(x, weight, bias, **kw).shape, x.dtype, x.device, every_route=True)


# ---------------------------------------------------------------- every plan and route equals PyTorch


@given(cfg=conv_configs(allow_same=True))
def test_every_plan_and_route_equals_F_conv2d(cfg):
    plans = _plans(cfg)
    for plan in plans:
        check_conv(convlib.conv2d, cfg, contiguous=True, plan=plan)
    x = cfg[0]
    expected = {"tap"} | ({"full", "im2col_nhwc"} if cfg[3]["groups"] == 1 else set())
    assert expected <= {p.mode for p in plans}
    routes_here = set(fast.available_routes(x.dtype, x.device))
    if cfg[3]["groups"] == 1:  # im2col_nhwc runs on every GEMM route that can run here
        assert {p.route for p in plans if p.mode == "im2col_nhwc"} == routes_here


@given(cfg=conv_configs(allow_same=True), multiplier=st.integers(1, 3))
def test_every_depthwise_plan_equals_F_conv2d(cfg, multiplier):
    x, _, bias, kw = cfg
    C = x.shape[1]
    weight = torch.randn(C * multiplier, 1, 3, 2, dtype=x.dtype)
    bias = None if bias is None else torch.randn(C * multiplier, dtype=x.dtype)
    kw = dict(kw, groups=C, dilation=1, padding=1)
    plans = _plans((x, weight, bias, kw))
    assert "depthwise" in {p.mode for p in plans}
    for plan in plans:
        check_conv(convlib.conv2d, (x, weight, bias, kw), contiguous=True, plan=plan)


@given(cfg=conv_configs(max_groups=1), block=st.sampled_from([16, 4096]))
def test_every_plan_with_small_blocks_equals_F_conv2d(cfg, block):
    """Blocks of one output row (16 bytes) or a few: many bands per image, in every formulation and route."""
    old = fast.settings.block_bytes
    fast.settings.block_bytes = block
    try:
        for plan in _plans(cfg):
            check_conv(convlib.conv2d, cfg, plan=plan)
    finally:
        fast.settings.block_bytes = old


@pytest.mark.parametrize("route", fast.ROUTES)
@given(cfg=conv_configs(max_groups=1, allow_same=True))
def test_forced_route_equals_F_conv2d(route, cfg):
    check_conv(convlib.conv2d, cfg, route=route)


def test_every_route_multiplies_like_addmm():
    g = torch.Generator().manual_seed(0)
    a, b, bias = torch.randn(37, 19, generator=g), torch.randn(11, 19, generator=g), torch.randn(11, generator=g)
    for route in fast.ROUTES:  # a route that cannot run here takes its public fallback
        torch.testing.assert_close(fast.gemm(route, a, b, bias), torch.addmm(bias, a, b.t()))
        torch.testing.assert_close(fast.gemm(route, a, b), a @ b.t())
    assert fast.available_routes(torch.float64, "cpu") == ("mm",)  # oneDNN's GEMM: float32 only
    for kind in fast.routes.PROBES:
        for cl in (False, True):
            route = fast.fastest_route(torch.float32, "cpu", torch.get_num_threads(), kind, cl)
            assert route in fast.available_routes(torch.float32, "cpu")
    assert routes.resolve_route("linear_pointwise", torch.float64, "cpu") == "mm"


def test_private_op_missing_falls_back_to_the_public_route(monkeypatch):
    """Without the private oneDNN op (an older PyTorch), 'linear_pointwise' plans run 'linear_mkldnn'."""

    def missing():
        raise AttributeError("'_OpNamespace' 'mkldnn' object has no attribute '_linear_pointwise'")

    routes.pointwise_available.cache_clear()
    monkeypatch.setattr(routes, "_pointwise_op", missing)
    try:
        assert not fast.pointwise_available()
        assert "linear_pointwise" not in fast.available_routes(torch.float32, "cpu")
        x, w, b = torch.randn(2, 5, 9, 9), torch.randn(7, 5, 3, 3), torch.randn(7)
        plan = fast.conv2d_plan(2, 5, 9, 9, 7, 3, 3, (1, 1), (1, 1), route="linear_pointwise")
        assert plan.route == ("linear_mkldnn" if torch.backends.mkldnn.is_available() else "mm")
        torch.testing.assert_close(convlib.conv2d(x, w, b, padding=1, plan=plan), F.conv2d(x, w, b, padding=1))
        assert all(p.route != "linear_pointwise" for p in fast.candidates(plan.shape))
    finally:
        monkeypatch.undo()
        routes.pointwise_available.cache_clear()
    assert fast.pointwise_available() == (
        torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


# ---------------------------------------------------------------- the measured choice and the rules


@pytest.fixture
def tuning():
    """Measuring on, nothing measured yet; the settings restored afterwards."""
    old = (fast.settings.tune, fast.settings.route)
    fast.settings.tune, fast.settings.route = True, None
    fast.clear_choices()
    yield
    fast.settings.tune, fast.settings.route = old
    fast.clear_choices()


def test_the_first_call_measures_once_and_keeps_the_fastest(tuning, monkeypatch):
    x, w, b = torch.randn(2, 8, 12, 12), torch.randn(8, 8, 3, 3), torch.randn(8)
    timed = []
    original = fast.tuning.time_plans

    def counting(plans, *args, **kwargs):
        timed.append(list(plans))
        return original(plans, *args, **kwargs)

    monkeypatch.setattr(fast.tuning, "time_plans", counting)
    for _ in range(3):
        torch.testing.assert_close(convlib.conv2d(x, w, b, padding=1), F.conv2d(x, w, b, padding=1))
    assert len(timed) == 1  # measured on the first call only
    ((key, plan),) = fast.choices().items()
    assert key == (plan.shape, torch.float32, "cpu", torch.get_num_threads(), False, True)
    assert plan in timed[0] and timed[0] == fast.candidates(plan.shape)
    assert timed[0][0] == fast.conv2d_plan(*plan.shape)  # the rules' plan first
    assert fast.plan_for(x, w, b, padding=1) == plan
    # a channels-last input is a new case: measured on its own
    convlib.conv2d(x.contiguous(memory_format=torch.channels_last), w, b, padding=1)
    assert len(timed) == 2 and len(fast.choices()) == 2


def test_the_public_onednn_route_is_a_candidate_only_without_the_private_one():
    shape = fast.Shape(2, 8, 12, 12, 8, 3, 3, (1, 1), (1, 1))
    usual = {p.route for p in fast.candidates(shape)}
    every = {p.route for p in fast.candidates(shape, every_route=True)}
    assert every == set(fast.available_routes(torch.float32, "cpu"))
    assert usual == every - ({"linear_mkldnn"} if "linear_pointwise" in every else set())


def test_time_plans_times_every_plan(tuning):
    x, w = torch.randn(1, 4, 9, 9), torch.randn(4, 4, 3, 3)
    plans = fast.candidates(fast.plan_for(x, w, padding=1).shape)
    best = fast.time_plans(plans, x, w, None, rounds=2)
    assert set(best) == set(plans) and all(0 < t for t in best.values())
    assert min(best.values()) < float("inf")  # (a plan ten times slower to warm up is not timed further)


def test_rules_when_measuring_is_off(tuning):
    fast.settings.tune = False
    x, w = torch.randn(2, 8, 12, 12), torch.randn(8, 8, 3, 3)
    plan = fast.plan_for(x, w, padding=1)
    assert plan == fast.conv2d_plan(2, 8, 12, 12, 8, 3, 3, (1, 1), (1, 1))
    assert not fast.choices()  # nothing measured
    # the rules: where a oneDNN route is the fastest GEMM, ungrouped layers run patch blocks on it, built in the
    # input's own layout ('full' for NCHW, 'im2col_nhwc' for channels-last)
    route = fast.fastest_route(torch.float32, "cpu", torch.get_num_threads(), "thin")  # C*kh*kw = 72: thin
    cl_route = fast.fastest_route(torch.float32, "cpu", torch.get_num_threads(), "thin", True)
    assert plan.route == route
    assert plan.mode == "full"  # (also the 'mm' route's rule here: a thin inner dimension, C*kh*kw = 72)
    cl = fast.plan_for(x.contiguous(memory_format=torch.channels_last), w, padding=1)
    assert cl.mode == ("im2col_nhwc" if cl_route != "mm" else "full") and cl.route == cl_route
    fast.settings.route = "mm"
    assert fast.plan_for(x, w, padding=1).mode in ("tap", "full")
    fast.settings.route = "linear_mkldnn"
    onednn = "linear_mkldnn" in fast.available_routes(torch.float32, "cpu")
    assert fast.plan_for(x, w, padding=1).route == ("linear_mkldnn" if onednn else "mm")
    depthwise = fast.plan_for(x, torch.randn(8, 1, 3, 3), padding=1, groups=8)
    assert (depthwise.mode, depthwise.route) == ("depthwise", "elementwise")


@pytest.mark.parametrize(
    "env, tune, route",
    [
        ({"CONVLIB_TUNE": "0"}, False, None),
        ({"CONVLIB_TUNE": "off", "CONVLIB_GEMM_ROUTE": "linear_mkldnn"}, False, "linear_mkldnn"),
        ({"CONVLIB_GEMM_ROUTE": "mm"}, True, "mm"),
        ({}, True, None),
    ],
)
def test_settings_from_the_environment(env, tune, route):
    settings = fast.Settings.from_environment(env)
    assert (settings.tune, settings.route) == (tune, route)


def test_unknown_route_in_the_environment_is_ignored_with_a_warning():
    with pytest.warns(UserWarning, match="CONVLIB_GEMM_ROUTE='blas' ignored"):
        assert fast.Settings.from_environment({"CONVLIB_GEMM_ROUTE": "blas"}).route is None


def test_import_reads_the_environment(monkeypatch):
    monkeypatch.setenv("CONVLIB_TUNE", "0")
    code = "from convlib import fast; print(fast.settings.tune)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]


# ---------------------------------------------------------------- adding a formulation


def test_a_registered_formulation_takes_part(tuning):
    """A formulation added in a few lines is measured with the others and can be forced by name."""

    def fits(s):
        return None if s.groups == 1 else "mode='patches' needs groups=1"

    def runner(plan, dtype, device):
        return lambda x, w, b, cl: convlib.conv2d_im2col(x, w, b, plan.stride, plan.padding, plan.dilation)

    fast.register(fast.Formulation(name="patches", layouts=("direct",), routes=("mm",), fits=fits, runner=runner))
    try:
        x, w, b = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3), torch.randn(4)
        assert "patches" in fast.modes()
        assert "patches" in {p.mode for p in fast.candidates(fast.plan_for(x, w, b).shape)}
        torch.testing.assert_close(convlib.conv2d(x, w, b, mode="patches"), F.conv2d(x, w, b))
        torch.testing.assert_close(convlib.conv2d(x, w, b), F.conv2d(x, w, b))  # measured among the others
        assert fast.describe(fast.conv2d_plan(2, 3, 8, 8, 4, 3, 3, mode="patches")) == "patches, direct, via mm"
        with pytest.raises(ValueError, match="mode='patches' needs groups=1"):
            convlib.conv2d(torch.randn(1, 4, 5, 5), torch.randn(4, 2, 3, 3), groups=2, mode="patches")
    finally:
        fast.FORMULATIONS.pop("patches")
    with pytest.raises(ValueError, match="unknown layout"):
        fast.register(fast.Formulation("bad", ("diagonal",), ("mm",), fits, runner))
    with pytest.raises(ValueError, match="unknown route"):
        fast.register(fast.Formulation("bad", ("direct",), ("cublas",), fits, runner))


# ---------------------------------------------------------------- the plan as named data


def test_plan_parts_are_named_and_hashable():
    plan = fast.conv2d_plan(2, 8, 10, 10, 4, 3, 3, (1, 1), (1, 1), mode="tap", layout="exact")
    tap = plan.taps[0]
    assert isinstance(tap, fast.ExactTap) and (tap.shift, tap.offset, tap.first, tap.end) == (-1, -11, 1, 10)
    block = plan.blocks[0]
    assert isinstance(block, fast.Block) and (block.n0, block.i0) == (0, 0)
    canvas = fast.conv2d_plan(2, 8, 10, 10, 4, 3, 3, (1, 1), (1, 1), mode="tap", layout="canvas")
    assert isinstance(canvas.taps[4], fast.Tap) and canvas.taps[4].phase == 0 and canvas.taps[4].offset == canvas.Wc + 1
    phases = fast.conv2d_plan(2, 8, 10, 10, 4, 3, 3, (2, 2), (1, 1), mode="tap", layout="phases")
    assert [t.phase for t in phases.taps] == [0, 1, 0, 2, 3, 2, 0, 1, 0]
    assert len({plan, canvas, phases, plan}) == 3  # hashable, equal when equal
    assert plan.shape == fast.Shape(2, 8, 10, 10, 4, 3, 3, (1, 1), (1, 1), (1, 1), 1)
    assert all(isinstance(w, fast.Wrap) for w in plan.corrections)


def test_describe_and_workspace_nbytes():
    plan = fast.conv2d_plan(8, 64, 56, 56, 64, 3, 3, (1, 1), (1, 1), route="mm")
    n = len(plan.blocks)  # blocks are sized in units of this machine's L2 cache
    assert fast.describe(plan) == f"tap, exact, via mm, {n} block{'s' if n > 1 else ''}"
    assert fast.workspace_nbytes(plan) == 4 * 9 * 64 * 64  # the re-ordered weights only: no canvas, no buffers
    nhwc = fast.conv2d_plan(8, 64, 56, 56, 64, 3, 3, (1, 1), (1, 1), mode="im2col_nhwc", route="mm")
    assert fast.describe(nhwc).startswith("im2col_nhwc via mm, ")
    canvas, weights = 4 * 8 * 58 * 58 * 64, 4 * 64 * 576
    patches = 4 * 576 * max((b.n1 - b.n0) * (b.i1 - b.i0) * 56 for b in nhwc.blocks)
    assert fast.workspace_nbytes(nhwc) == canvas + weights + patches
    assert patches <= nhwc.block_bytes  # a block of patches fits its budget
    one = fast.conv2d_plan(8, 64, 56, 56, 128, 1, 1)
    assert fast.describe(one) == "gemm1x1 via mm: one product per image" and fast.workspace_nbytes(one) == 0
    # what a call keeps is what workspace_nbytes says
    x, w = torch.randn(1, 4, 9, 9), torch.randn(5, 4, 3, 3)
    for p in fast.candidates(fast.plan_for(x, w, padding=1).shape, every_route=True):
        convlib.conv2d(x, w, padding=1, plan=p)
        ws = fast.tuning.runner(p, torch.float32, torch.device("cpu"))
        kept = sum(t.numel() * t.element_size() for t in getattr(ws, "kept", ()))
        assert kept == fast.workspace_nbytes(p), fast.describe(p)


# ---------------------------------------------------------------- the span of a tap


@given(
    H=st.integers(1, 12),
    W=st.integers(1, 12),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    p=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    d=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    data=st.data(),
)
def test_tap_span_is_where_the_tap_reads_the_image(H, W, k, s, p, d, data):
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = k, s, p, d
    Ho, Wo = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if Ho < 1 or Wo < 1:
        return
    u, v = data.draw(st.integers(0, kh - 1)), data.draw(st.integers(0, kw - 1))
    span = fast.tap_span(u, v, (H, W), k, s, p, d)
    rows = [i for i in range(Ho) if 0 <= i * sh + u * dh - ph < H]
    cols = [j for j in range(Wo) if 0 <= j * sw + v * dw - pw < W]
    assert list(range(*span.rows)) == rows and list(range(*span.cols)) == cols
    if (sh, sw) != (1, 1) or Wo != W:
        assert span.flat is None
        return
    offset = (u * dh - ph) * W + v * dw - pw
    q0, q1 = span.flat
    # the run: the reaching rows' outputs whose flat read lies inside the flat image, all of them
    inside = [q for q in range(Ho * W) if q // W in rows and 0 <= q + offset < H * W and cols]
    assert list(range(q0, q1)) == inside
    # inside the run, the outputs of the columns outside `cols` are the wrapped reads
    plan = fast.conv2d_plan(1, 1, H, W, 1, kh, kw, (1, 1), (ph, pw), (dh, dw), mode="tap", layout="exact")
    wrapped = {(w.out_col, i) for w in plan.corrections if w.tap == u * kw + v for i in range(w.first, w.end)}
    assert wrapped == {(q % W, q // W) for q in range(q0, q1) if q % W not in cols}


# ---------------------------------------------------------------- the ratio table (its numbers are not asserted)


def test_ratio_table_has_a_row_per_case_and_the_ceiling():
    x, w, b = torch.randn(2, 3, 9, 9), torch.randn(4, 3, 3, 3), torch.randn(4)
    rows = fast.compare({"tiny": (x, w, b, {"padding": 1})}, repeat=3, warmup=1)
    (row,) = rows
    assert row["name"] == "tiny" and row["ratio_min"] <= row["ratio_median"] <= row["ratio_max"]
    assert row["plan"] == fast.describe(fast.plan_for(x, w, b, padding=1))
    ceiling = fast.ratios.gemm_ceiling(n=64, rounds=1)
    assert set(ceiling) == set(fast.available_routes(torch.float32, "cpu")) and min(ceiling.values()) > 0
    table = fast.format_ratios(rows, ceiling)
    assert "tiny" in table and "geometric mean" in table and "GEMM ceiling" in table


def test_the_route_probe_measures_once_however_it_is_called(monkeypatch):
    """One measurement per (dtype, device, threads, kind, layout): keyword, positional and default spellings of the
    same question share it (on a busy machine two measurements could disagree)."""
    from convlib.fast import routes

    calls = []
    original = routes._time_routes

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(routes, "_time_routes", counting)
    routes._fastest_route.cache_clear()
    try:
        a = fast.fastest_route(torch.float32, "cpu", 1, "thin")
        b = fast.fastest_route(torch.float32, "cpu", 1, "thin", False)
        c = fast.fastest_route(dtype=torch.float32, device=torch.device("cpu"), threads=1, kind="thin")
        assert a == b == c and len(calls) <= 1  # at most one measurement (none where one route can run)
    finally:
        routes._fastest_route.cache_clear()
