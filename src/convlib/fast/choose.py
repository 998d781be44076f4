"""Which plan for a shape: the rules used when nothing is measured, the checks on forced choices, the candidates.

The rules: a depthwise layer runs 'depthwise', a 1x1 layer 'gemm1x1'; other ungrouped layers run patch blocks
('full' for an NCHW input, 'im2col_nhwc' for a channels-last one) on a oneDNN route where that is the machine's
fastest GEMM for a product of the layer's kind (:func:`routes.fastest_route`, measured once per process),
otherwise the flat formulations on 'mm' ('full' for thin products, 'tap' for the rest), in the layouts chapter
6 measured.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch

from .plan import FLAT_LAYOUTS, Plan, Shape, build_plan, default_block_bytes, l2_bytes
from .registry import FORMULATIONS, LAYOUTS, modes
from .routes import ROUTES, available_routes, fastest_route, resolve_route

__all__ = ["Settings", "settings", "conv2d_plan", "candidates", "default_mode", "default_layout", "machine_route"]

# 'full' (one product with inner dimension C*kh*kw) at or below this C*kh*kw
FULL_MAX_K = 256
# 'tap' (a product per kernel tap) is a candidate up to 7 x 7 kernels; beyond, a block costs that many more
# calls than one product over a patch block doing the same work ('full', 'im2col_nhwc')
MAX_TAP_PRODUCTS = 49
# 'exact' layout for dense 'tap' layers with at least this many channels and this image width
EXACT_MIN_C, EXACT_MIN_W = 32, 24
_DTYPES = {2: torch.float16, 4: torch.float32, 8: torch.float64, 16: torch.complex128}


@dataclass
class Settings:
    """What ``convlib.conv2d`` does when a call forces nothing (change the attributes of ``fast.settings``).

    ``tune``: time the candidate plans of each new (shape, dtype, device, thread count, memory format) once and
    keep the fastest, as ``torch.backends.cudnn.benchmark`` does (environment: ``CONVLIB_TUNE=0`` switches it
    off); otherwise the rules of this module. ``route``: the GEMM route wherever a formulation can use it
    (``CONVLIB_GEMM_ROUTE``); None: the fastest measured on this machine. ``block_bytes``: one block size for
    every plan (None: sizes in units of the L2 cache). ``rounds``: timed rounds per candidate.
    """

    tune: bool = True
    route: str | None = None
    block_bytes: int | None = None
    rounds: int = 3

    @classmethod
    def from_environment(cls, environ=os.environ) -> Settings:
        """Settings from ``CONVLIB_TUNE`` (0/false/no/off: measure nothing) and ``CONVLIB_GEMM_ROUTE``."""
        tune = environ.get("CONVLIB_TUNE", "1").strip().lower() not in ("0", "false", "no", "off")
        route = environ.get("CONVLIB_GEMM_ROUTE") or None
        if route is not None and route not in ROUTES:
            warnings.warn(f"CONVLIB_GEMM_ROUTE={route!r} ignored: the routes are {ROUTES}", stacklevel=2)
            route = None
        return cls(tune=tune, route=route)


settings = Settings.from_environment()


def machine_route(dtype: torch.dtype, device, shape: Shape | None = None, channels_last: bool = False) -> str:
    """The GEMM route the rules use: ``settings.route`` (or its fallback), else the fastest measured here on a
    product like the shape's (thin: C/groups*kh*kw at most ``FULL_MAX_K``; else wide) in its layout."""
    if settings.route is not None:
        return resolve_route(settings.route, dtype, device)
    thin = shape is not None and shape.C // shape.groups * shape.taps <= FULL_MAX_K
    kind = "thin" if thin else "wide"
    return fastest_route(dtype, str(device), torch.get_num_threads(), kind, channels_last)


def _same_width(s: Shape) -> bool:
    return s.stride == (1, 1) and s.dilation[1] * (s.kw - 1) == 2 * s.padding[1]


def default_mode(
    s: Shape, route: str, layout: str | None = None, forced_route: bool = False, channels_last: bool = False
) -> str:
    """The formulation the rules pick for a shape, given the GEMM route (and the layout, if one is forced, and
    whether the result is channels-last)."""
    if layout is not None and layout not in FLAT_LAYOUTS:
        return next(name for name, f in FORMULATIONS.items() if layout in f.layouts)
    if s.groups == s.C > 1 and not forced_route:
        return "depthwise"
    if layout is None and FORMULATIONS["gemm1x1"].fits(s) is None and not (forced_route and route != "mm"):
        return "gemm1x1"  # one product per image, read in place
    if layout is None and s.groups == 1 and route != "mm":
        # oneDNN's GEMM on patch blocks built in the tensors' own layout: transposing an image between NCHW and
        # NHWC costs several times a plain copy of it
        return "im2col_nhwc" if channels_last else "full"
    if s.groups == 1 and (s.C * s.taps <= FULL_MAX_K or s.O >= s.N * s.Ho * s.Wo):
        return "full"  # a thin inner dimension, or weights larger than the patch matrix they would be re-ordered for
    return "tap"


def default_layout(mode: str, s: Shape) -> str:
    """The layout the rules pick for a formulation (the flat ones: chosen by measurement in chapter 6)."""
    first = FORMULATIONS[mode].layouts[0]
    if first not in FLAT_LAYOUTS:
        return first
    if s.stride != (1, 1):  # 'full' copies its patch blocks from the canvas with the stride; taps need phases
        return "canvas" if mode == "full" else "phases"
    if _same_width(s) and mode == "tap" and s.groups == 1 and s.C >= EXACT_MIN_C and s.W >= EXACT_MIN_W:
        return "exact"
    return "canvas"


def _check_layout(mode: str, layout: str, s: Shape) -> str:
    if layout not in FORMULATIONS[mode].layouts:
        raise ValueError(f"mode={mode!r} reads layout(s) {FORMULATIONS[mode].layouts}, got layout={layout!r}")
    if layout == "exact" and not _same_width(s):
        raise ValueError("layout='exact' needs stride 1 and an output as wide as the input")
    if layout == "canvas" and s.stride != (1, 1) and mode != "full":
        raise ValueError(f"layout='canvas' needs stride 1 for mode={mode!r} (its taps read contiguous slices)")
    return "canvas" if layout == "phases" and s.stride == (1, 1) else layout


def _check_route(mode: str, route: str, dtype, device) -> str:
    usable = FORMULATIONS[mode].routes
    if route not in usable:
        raise ValueError(f"mode={mode!r} uses route(s) {usable}, got route={route!r}")
    return route if route == "elementwise" else resolve_route(route, dtype, device)


def _check_names(mode, layout, route, block_bytes) -> None:
    if mode is not None and mode not in FORMULATIONS:
        raise ValueError(f"mode must be one of {modes()} or None, got {mode!r}")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS} or None, got {layout!r}")
    if route is not None and route not in (*ROUTES, "elementwise"):
        raise ValueError(f"route must be one of {ROUTES} or None, got {route!r}")
    if block_bytes is not None and (
        isinstance(block_bytes, bool) or not isinstance(block_bytes, int) or block_bytes < 1
    ):
        raise ValueError(f"block_bytes must be a positive int or None, got {block_bytes!r}")


def conv2d_plan(
    N,
    C,
    H,
    W,
    O,
    kh,
    kw,
    stride=(1, 1),
    padding=(0, 0),
    dilation=(1, 1),
    groups=1,
    mode=None,
    layout=None,
    block_bytes=None,
    itemsize=4,
    route=None,
    dtype=None,
    device="cpu",
    channels_last=False,
) -> Plan:
    """The plan ``conv2d`` follows for one shape when it measures nothing (plain ints and pairs).

    ``mode``, ``layout``, ``route`` and ``block_bytes`` force a choice; what is not forced follows the rules
    (see the module docstring). ``dtype`` (default: float32, or the float of ``itemsize`` bytes) and ``device``
    decide which GEMM routes can run; a route that cannot falls back to its public stand-in. ``channels_last``:
    the result is (the rules then prefer channels-last patch blocks).
    """
    _check_names(mode, layout, route, block_bytes)
    s = Shape(N, C, H, W, O, kh, kw, tuple(stride), tuple(padding), tuple(dilation), groups)
    dtype = _DTYPES.get(itemsize, torch.float32) if dtype is None else dtype
    forced = route is not None and route != "elementwise"
    preferred = route if forced else machine_route(dtype, device, s, channels_last)
    if mode is None:
        mode = default_mode(s, preferred, layout, forced_route=forced, channels_last=channels_last)
    why = FORMULATIONS[mode].fits(s)
    if why is not None:
        raise ValueError(why)
    layout = _check_layout(mode, default_layout(mode, s) if layout is None else layout, s)
    if route is None:
        usable = FORMULATIONS[mode].routes
        route = preferred if preferred in usable else usable[0]
    route = _check_route(mode, route, dtype, device)
    if block_bytes is None:
        block_bytes = settings.block_bytes or default_block_bytes(mode, layout)
    return build_plan(s, mode, layout, route, block_bytes, itemsize)


def _layouts(mode: str, s: Shape) -> list[str]:
    """The layouts a formulation can read for a shape."""
    out = []
    for layout in FORMULATIONS[mode].layouts:
        if layout == "exact" and not _same_width(s):
            continue
        if layout == "phases" and s.stride == (1, 1):
            continue
        if layout == "canvas" and s.stride != (1, 1) and mode != "full":
            continue
        out.append(layout)
    return out


def _block_sizes(mode: str, layout: str) -> tuple[int, ...]:
    """The rules' block size, and one other: blocks well inside the L2 cache (the products' inputs and
    outputs stay there) against large ones (fewer calls, each with its fixed cost)."""
    if settings.block_bytes is not None:
        return (settings.block_bytes,)
    usual = default_block_bytes(mode, layout)
    return (usual, l2_bytes() // 2 if usual > l2_bytes() // 2 else 8 * l2_bytes())


def _differs(a: Plan, b: Plan) -> bool:
    """Two plans that would do different work (block sizes that give the same blocks do not)."""
    return (a.mode, a.layout, a.route, a.blocks) != (b.mode, b.layout, b.route, b.blocks)


def candidates(
    shape: Shape, dtype=torch.float32, device="cpu", every_route: bool = False, channels_last: bool = False
) -> list[Plan]:
    """Every plan ``conv2d`` can follow for a shape: each formulation that fits, in each layout it can read,
    with each GEMM route that can run here, in two block sizes. The rules' plan first.

    The public 'linear_mkldnn' does what 'linear_pointwise' does plus conversion copies, so where the private
    route runs it is left out, unless ``every_route`` (as the tests ask).
    """
    itemsize = torch.empty(0, dtype=dtype).element_size()
    routes = available_routes(dtype, device)
    if "linear_pointwise" in routes and not every_route:
        routes = tuple(r for r in routes if r != "linear_mkldnn")
    plans = [conv2d_plan(*shape, dtype=dtype, device=device, itemsize=itemsize, channels_last=channels_last)]
    for mode, f in FORMULATIONS.items():
        if f.fits(shape) is not None or (mode == "tap" and shape.taps > MAX_TAP_PRODUCTS):
            continue
        for layout in _layouts(mode, shape):
            for route in (r for r in f.routes if r in routes or r == "elementwise"):
                for block_bytes in _block_sizes(mode, layout):
                    plan = build_plan(shape, mode, layout, route, block_bytes, itemsize)
                    if all(_differs(plan, other) for other in plans):
                        plans.append(plan)
    return plans
