"""GEMM routes: the ways PyTorch offers to multiply two matrices, and which of them is fastest on this machine.

- ``'mm'``: ``torch.mm``/``addmm``/``bmm``/``baddbmm``, which call the BLAS PyTorch was built with (MKL on x86
  CPUs, cuBLAS on CUDA). It writes into a given output (``out=``) and reads transposed operands in place.
- ``'linear_mkldnn'``: oneDNN's own GEMM through the public ``F.linear`` on ``to_mkldnn()`` tensors (float32 on
  the CPU). It pays a conversion copy of each operand and of the result.
- ``'linear_pointwise'``: the same oneDNN GEMM through the private ``torch.ops.mkldnn._linear_pointwise`` on
  dense tensors, without the copies. Used only where a feature check finds it present and right; otherwise the
  public ``'linear_mkldnn'`` takes its place.

MKL identifies some CPUs (AMD's among them) as generic and takes a slower code path there, while oneDNN uses the
CPU's widest vector instructions: which route is fastest depends on the machine, so it is measured
(:func:`fastest_route`), never assumed.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "ROUTES",
    "PROBES",
    "available_routes",
    "resolve_route",
    "pointwise_available",
    "gemm",
    "fastest_route",
    "Weights",
]

ROUTES = ("mm", "linear_mkldnn", "linear_pointwise")
_FALLBACK = {"linear_pointwise": "linear_mkldnn", "linear_mkldnn": "mm"}


def _pointwise_op():
    """The private op (``AttributeError`` where this PyTorch lacks it)."""
    return torch.ops.mkldnn._linear_pointwise


@functools.lru_cache(maxsize=1)
def pointwise_available() -> bool:
    """Feature check: the private oneDNN op exists, runs, and gives ``a @ b.T + bias`` on a small product."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        op = _pointwise_op()
        with torch.inference_mode():
            g = torch.Generator().manual_seed(0)
            a, b, bias = (torch.randn(*size, generator=g) for size in ((5, 7), (3, 7), (3,)))
            y = op(a, b, bias, "none", [], "")
            return y.shape == (5, 3) and bool(torch.allclose(y, torch.addmm(bias, a, b.t()), atol=1e-5))
    except (AttributeError, RuntimeError, TypeError):
        return False


def available_routes(dtype: torch.dtype, device) -> tuple[str, ...]:
    """The routes that can multiply matrices of ``dtype`` on ``device`` (oneDNN's: float32 on the CPU only)."""
    routes = ["mm"]
    if torch.device(device).type == "cpu" and dtype == torch.float32 and torch.backends.mkldnn.is_available():
        routes.append("linear_mkldnn")
        if pointwise_available():
            routes.append("linear_pointwise")
    return tuple(routes)


def resolve_route(route: str, dtype: torch.dtype, device) -> str:
    """``route`` if it can run here, else its public fallback ('linear_pointwise' -> 'linear_mkldnn' -> 'mm')."""
    available = available_routes(dtype, device)
    while route not in available:
        route = _FALLBACK[route]
    return route


class Weights(NamedTuple):
    """A weight matrix ``W`` (O x K) and bias, prepared once per call for one route."""

    route: str
    matrix: torch.Tensor  # dense O x K
    bias: torch.Tensor | None
    onednn: torch.Tensor | None  # 'linear_mkldnn': W as a oneDNN tensor
    onednn_bias: torch.Tensor | None

    @classmethod
    def prepare(cls, route: str, matrix: torch.Tensor, bias: torch.Tensor | None) -> Weights:
        if route != "linear_mkldnn":
            return cls(route, matrix, bias, None, None)
        return cls(route, matrix, bias, matrix.to_mkldnn(), None if bias is None else bias.to_mkldnn())

    def linear(self, a: torch.Tensor) -> torch.Tensor:
        """``a @ W.T + bias`` as a new M x O tensor (a: M x K)."""
        if self.route == "linear_pointwise":
            return _pointwise_op()(a, self.matrix, self.bias, "none", [], "")
        if self.route == "linear_mkldnn":
            return F.linear(a.to_mkldnn(), self.onednn, self.onednn_bias).to_dense()
        return torch.mm(a, self.matrix.t()) if self.bias is None else torch.addmm(self.bias, a, self.matrix.t())

    def times_into(self, b: torch.Tensor, out: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """``out = W @ b + bias`` (b: K x Q; out: an O x Q view, e.g. one image's NCHW outputs, or O x m x Q/m
        for m images side by side in ``b``). ``bias``: instead of the prepared one ('mm': prepared only)."""
        bias = self.bias if bias is None else bias
        if self.route == "mm":
            if bias is None:
                torch.mm(self.matrix, b, out=out)
            else:
                torch.addmm(bias.view(-1, 1), self.matrix, b, out=out)
            return
        if self.route == "linear_pointwise":  # b.T as oneDNN's "weight": read transposed, not copied
            y = _pointwise_op()(self.matrix, b.t(), None, "none", [], "")
        else:
            y = F.linear(self.onednn, b.t().to_mkldnn()).to_dense()
        y = y.view(out.shape)
        if bias is None:
            out.copy_(y)
        else:
            torch.add(y, bias.view(-1, *(1,) * (out.dim() - 1)), out=out)

    def linear_into(self, a: torch.Tensor, out: torch.Tensor) -> None:
        """``out = a @ W.T + bias`` (out: an M x O view, e.g. rows of a channels-last output)."""
        if self.route != "mm":
            out.copy_(self.linear(a))
        elif self.bias is None:
            torch.mm(a, self.matrix.t(), out=out)
        else:
            torch.addmm(self.bias, a, self.matrix.t(), out=out)

    def linear_t_into(self, a: torch.Tensor, out: torch.Tensor) -> None:
        """``out = (a @ W.T + bias).T``: an O x M view (one image's NCHW outputs), or m x O x M/m for m images."""
        m = 1 if out.dim() == 2 else out.shape[0]
        if self.route != "mm":
            y = self.linear(a)
            out.copy_(y.t() if m == 1 else y.view(m, -1, y.shape[1]).transpose(1, 2))
        elif m == 1:
            args = (self.matrix, a.t())
            torch.mm(*args, out=out) if self.bias is None else torch.addmm(self.bias.view(-1, 1), *args, out=out)
        else:
            args = (self.matrix.expand(m, *self.matrix.shape), a.view(m, -1, a.shape[1]).transpose(1, 2))
            if self.bias is None:
                torch.bmm(*args, out=out)
            else:
                torch.baddbmm(self.bias.view(1, -1, 1), *args, out=out)


def gemm(route: str, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b.T (+ bias)`` through ``route`` (a: M x K, b: O x K; its public fallback where it cannot run)."""
    route = resolve_route(route, a.dtype, a.device)
    return Weights.prepare(route, b.contiguous(), bias).linear(a.contiguous())


def _product(route: str, w: torch.Tensor, patches: torch.Tensor, out: torch.Tensor, channels_last: bool):
    """The product the patch-block formulations make: ``out = patches @ w.T`` (channels-last patch rows) or
    ``out = w @ patches`` (NCHW patch columns)."""
    weights = Weights.prepare(route, w, None)
    if channels_last:
        weights.linear_into(patches, out)
    else:
        weights.times_into(patches, out)


def _time_routes(routes, w, patches, out, channels_last: bool, rounds: int) -> dict[str, float]:
    """The best of ``rounds`` interleaved timings of each route's product (after one warm-up each)."""
    best = dict.fromkeys(routes, float("inf"))
    # one thread: the process's CPU time (not the time other processes take on a busy machine)
    now = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    for r in range(rounds + 1):
        for route in routes:
            start = now()
            _product(route, w, patches, out, channels_last)
            if r:  # round 0 warms up
                best[route] = min(best[route], now() - start)
    return best


#: The products the route probe times (M patches of K values by O filters): a thin one (a first layer's or a
#: small network's patch block: few input channels, few filters) and a wide one (a 3 x 3 layer, 64-128 channels).
PROBES = {"thin": (2048, 144, 32), "wide": (1024, 576, 128)}


def fastest_route(
    dtype: torch.dtype = torch.float32, device: str = "cpu", threads: int = 1, kind: str = "wide", channels_last=False
) -> str:
    """The GEMM route that is fastest here, measured once per process (dtype, device, threads, kind, layout).

    ``kind``: which product of :data:`PROBES` (BLAS libraries and oneDNN differ most on thin products, where a
    call's fixed cost counts), in the orientation the patch blocks have (``channels_last``: patch rows, else
    NCHW patch columns); the best of three interleaved timings per route. Only routes that can run are
    compared; with one, it is the answer.
    """
    # one measurement per question, however the arguments are spelled (a cache keyed on the call's own
    # arguments would measure again for fastest_route(d, "cpu", 1, "thin") after (d, "cpu", 1, "thin", False))
    return _fastest_route(dtype, str(device), int(threads), kind, bool(channels_last))


@functools.cache
def _fastest_route(dtype: torch.dtype, device: str, threads: int, kind: str, channels_last: bool) -> str:
    routes = available_routes(dtype, device)
    if len(routes) == 1:
        return routes[0]
    M, K, O = PROBES[kind]
    with torch.inference_mode():
        g = torch.Generator().manual_seed(0)
        w = torch.randn(O, K, generator=g).to(dtype=dtype, device=device)
        patches = torch.randn(*((M, K) if channels_last else (K, M)), generator=g).to(dtype=dtype, device=device)
        out = torch.empty(*((M, O) if channels_last else (O, M)), dtype=dtype, device=device)
        best = _time_routes(routes, w, patches, out, channels_last, rounds=3)
    return min(routes, key=lambda r: (best[r], routes.index(r)))
