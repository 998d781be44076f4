"""The formulations ``convlib.conv2d`` can choose from, and how to add one.

A formulation says which shapes it can compute, which layouts it reads, which GEMM routes it can use, and how
to build its per-plan runner ``runner(x, weight, bias, channels_last) -> y`` (x: N x C x H x W, weight
contiguous, symmetric padding already; y: N x O x Ho x Wo, NCHW or channels-last, bias added). A new one
plugs in with a few lines, e.g. a Winograd module with ``conv2d(x, w, b, padding)``::

    from convlib import fast

    fast.register(fast.Formulation(
        name="winograd", layouts=("direct",), routes=("mm",),
        fits=lambda s: None if (s.kh, s.kw, s.stride, s.dilation, s.groups) == (3, 3, (1, 1), (1, 1), 1)
        else "mode='winograd' needs a 3x3 kernel, stride 1, no dilation and groups=1",
        runner=lambda plan, dtype, device: lambda x, w, b, cl: winograd.conv2d(x, w, b, padding=plan.padding),
    ))

It then takes part in the measured choice (``candidates``) and can be forced with ``mode='winograd'``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .flat import FlatWorkspace
from .nhwc import NHWCWorkspace, gemm1x1
from .plan import FLAT_LAYOUTS, Shape
from .routes import ROUTES

__all__ = ["Formulation", "FORMULATIONS", "register", "modes", "LAYOUTS"]

LAYOUTS = (*FLAT_LAYOUTS, "nhwc", "direct")


@dataclass(frozen=True)
class Formulation:
    """One way to compute a convolution from matrix products and data movement (see the module docstring)."""

    name: str
    layouts: tuple[str, ...]  # the layouts it reads, the usual one first
    routes: tuple[str, ...]  # the GEMM routes it can use, the usual one first ('elementwise': no GEMM)
    fits: Callable[[Shape], str | None]  # None if it computes the shape, else why not (an error message)
    runner: Callable  # runner(plan, dtype, device) -> callable(x, weight, bias, channels_last) -> y


FORMULATIONS: dict[str, Formulation] = {}


def register(formulation: Formulation) -> None:
    """Add (or replace) a formulation: ``convlib.conv2d`` measures it with the others and accepts its name."""
    if not formulation.layouts or not formulation.routes:
        raise ValueError(f"formulation {formulation.name!r} needs at least one layout and one route")
    bad = [layout for layout in formulation.layouts if layout not in LAYOUTS]
    if bad:
        raise ValueError(f"formulation {formulation.name!r}: unknown layout(s) {bad}; layouts are {LAYOUTS}")
    bad = [route for route in formulation.routes if route not in (*ROUTES, "elementwise")]
    if bad:
        raise ValueError(f"formulation {formulation.name!r}: unknown route(s) {bad}; routes are {ROUTES}")
    FORMULATIONS[formulation.name] = formulation


def modes() -> tuple[str, ...]:
    """The names of the registered formulations."""
    return tuple(FORMULATIONS)


def _fits_full(s: Shape):
    return None if s.groups == 1 else f"mode='full' needs groups=1, got groups={s.groups}"


def _fits_depthwise(s: Shape):
    if s.groups == s.C:
        return None
    return f"mode='depthwise' needs groups equal to the {s.C} input channels, got groups={s.groups}"


def _fits_1x1(s: Shape):
    if (s.kh, s.kw, s.stride, s.padding, s.groups) == (1, 1, (1, 1), (0, 0), 1):
        return None
    return "mode='gemm1x1' needs a 1x1 kernel, stride 1, no padding and groups=1"


def _fits_nhwc(s: Shape):
    return None if s.groups == 1 else f"mode='im2col_nhwc' needs groups=1, got groups={s.groups}"


register(Formulation("tap", FLAT_LAYOUTS, ("mm",), lambda s: None, FlatWorkspace))
register(Formulation("full", FLAT_LAYOUTS, ROUTES, _fits_full, FlatWorkspace))
register(Formulation("depthwise", FLAT_LAYOUTS, ("elementwise",), _fits_depthwise, FlatWorkspace))
register(
    Formulation(
        "gemm1x1",
        ("direct",),
        ("mm",),
        _fits_1x1,
        lambda plan, dtype, device: lambda x, w, b, cl=False: gemm1x1(x, w, b, plan),
    )
)
register(
    Formulation(
        "im2col_nhwc", ("nhwc",), ROUTES, _fits_nhwc, lambda plan, dtype, device: NHWCWorkspace(plan, dtype, device)
    )
)
