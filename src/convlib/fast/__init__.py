"""The fast path: convolution as blocked matrix products, with the fastest plan measured on this machine.

``conv2d`` computes exactly what ``torch.nn.functional.conv2d`` computes, using only data movement (copies and
strided views), matrix products (GEMMs, through one of the routes of ``routes.py``) and, for depthwise layers,
elementwise multiply-adds. No ``F.conv2d``, no ``F.unfold``, no oneDNN convolution. The ideas, each measured in
chapter 6:

1. **Flat images, one offset per tap.** Store every channel of every image as one flat row-major array. Output
   pixel ``(i, j)`` then has the flat index ``q = i*Wc + j`` and kernel tap ``(u, v)`` reads the input at
   ``q + offset(u, v)``: *the same offset for every output pixel*. So the input of one tap, for a band of output
   rows, is one contiguous slice of every channel: a C x Q matrix that the GEMM reads in place
   (``flat.py``: formulations 'tap': kh*kw products; 'full': one product per block of the patch matrix, its
   rows copied from those slices; 'depthwise': elementwise multiply-adds).
2. **Padding without padding.** Where the output is as wide as the input (stride 1, "same" padding along the
   width), the rows are W long and the taps read the input where it lies (``layout='exact'``): a tap's product
   covers the outputs whose reads stay inside the flat image (:func:`tap_span`); the few outputs of the edge
   columns that read the neighbouring row's edge pixel instead of the padding are computed afresh afterwards
   (``edges.py``). Otherwise the padded images go on a *canvas*, rows ``Wc = W + pw`` long (a row's right
   padding is the next row's left padding), and the ``Wc - Wo`` garbage outputs per row are dropped
   (``layout='canvas'``); with stride s the padded input is split into s_h*s_w phase images, each read with
   stride 1 (``layout='phases'``).
3. **Blocked channels-last im2col** (``nhwc.py``, 'im2col_nhwc'): in NHWC a patch row is kh*kw runs of C
   contiguous values, so a block of the patch matrix is one strided copy, small enough to stay in the L2
   cache while one GEMM multiplies it by the weights.
4. **Blocks.** Outputs are computed in blocks (bands of rows, or several whole images) sized in units of the
   L2 cache, read from the machine.
5. **Chosen by measurement.** Which formulation, layout, GEMM route and block size is fastest depends on the
   shape and on the machine (MKL, behind ``torch.mm``, runs at half speed on some CPUs where oneDNN does not).
   The first call of a shape times every candidate (``tuning.py``) and keeps the fastest, as
   ``torch.backends.cudnn.benchmark`` does; ``settings.tune = False`` falls back to fixed rules
   (``choose.py``) that use the GEMM route measured fastest here.

Everything that does not depend on the numbers (buffers, zero borders, views, re-ordered weights) is prepared
once per plan and kept (``workspace.py``), so a call costs its copies and one PyTorch call per product.

Public API (what the benchmark and the autograd module call): :func:`conv2d`; :func:`conv2d_plan` (the rules'
plan for a shape), :func:`candidates` (every plan for a shape), :class:`Plan` and its parts (:class:`Tap`,
:class:`ExactTap`, :class:`Block`, :class:`Shape`), :func:`tap_span`, :func:`describe`,
:func:`workspace_nbytes`, :func:`make_canvas`; the GEMM routes (:data:`ROUTES`, :func:`available_routes`,
:func:`gemm`, :func:`fastest_route`); :data:`settings`, :func:`choices`, :func:`clear_choices`,
:func:`clear_workspaces`; :func:`register` and :class:`Formulation` to add a formulation;
:func:`compare` and :func:`format_ratios` (``ratios.py``) for a ratio table against ``F.conv2d``.
"""

from .choose import Settings, candidates, conv2d_plan, settings
from .conv import conv2d, describe, plan_for, workspace_nbytes
from .functional import make_canvas
from .plan import Block, ExactTap, Plan, Shape, Span, Tap, Wrap, tap_span
from .registry import FORMULATIONS, LAYOUTS, Formulation, modes, register
from .routes import ROUTES, available_routes, fastest_route, gemm, pointwise_available
from .tuning import choices, clear_choices, time_plans
from .workspace import clear_workspaces


def __getattr__(name):  # the ratio table loads on first use (and runs as ``python -m convlib.fast.ratios``)
    if name in ("compare", "format_ratios"):
        from . import ratios as module

        return getattr(module, name)
    raise AttributeError(f"module 'convlib.fast' has no attribute {name!r}")


#: The built-in formulations (``modes()`` lists the registered ones, added formulations included).
MODES = ("tap", "full", "depthwise", "gemm1x1", "im2col_nhwc")

__all__ = [
    "conv2d",
    "conv2d_plan",
    "plan_for",
    "candidates",
    "describe",
    "workspace_nbytes",
    "make_canvas",
    "tap_span",
    "Plan",
    "Shape",
    "Span",
    "Tap",
    "ExactTap",
    "Wrap",
    "Block",
    "MODES",
    "LAYOUTS",
    "ROUTES",
    "FORMULATIONS",
    "Formulation",
    "register",
    "modes",
    "available_routes",
    "pointwise_available",
    "fastest_route",
    "gemm",
    "Settings",
    "settings",
    "choices",
    "clear_choices",
    "time_plans",
    "clear_workspaces",
    "compare",
    "format_ratios",
]
