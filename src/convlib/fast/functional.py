"""The fast path's idea in out-of-place operations: what autograd and ``torch.func`` transforms can follow.

Used when autograd records (an input requires grad) and inside ``torch.func`` transforms such as ``vmap``:
the work buffers of the fast path are updated in place, which neither can follow. Here the canvas is built
with ``F.pad`` and the taps' products are summed out of place: the same numbers, unblocked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .plan import Plan

__all__ = ["make_canvas", "differentiable", "is_transformed"]


def make_canvas(x: torch.Tensor, plan: Plan) -> torch.Tensor:
    """The padded input as ``N x phases x C x canvas_len``, the flat images the taps of ``plan`` read.

    For the 'canvas' layout, rows ``Wc`` long ([pw zeros | W pixels | zeros], a row's right padding being the
    next row's left padding) and ``Hr`` of them; for 'phases', one such image per stride phase (a, b), holding
    the padded pixels (a + r*sh, b + c*sw).
    """
    if plan.layout not in ("canvas", "phases"):
        raise ValueError(f"the {plan.layout!r} layout has no flat canvas: it reads the input as it is")
    N, C, H, W = x.shape
    (sh, sw), (ph, pw) = plan.stride, plan.padding
    if plan.layout == "canvas":
        grid = F.pad(x, (pw, plan.Wc - W - pw, ph, plan.Hr - H - ph))
        return grid.reshape(N, 1, C, plan.canvas_len)
    padded = F.pad(x, (pw, pw, ph, ph))
    phases = []
    for a in range(sh):
        for b in range(sw):
            phase = padded[:, :, a::sh, b::sw]
            phases.append(F.pad(phase, (0, plan.Wc - phase.shape[3], 0, plan.Hr - phase.shape[2])))
    return torch.stack(phases, dim=1).reshape(N, sh * sw, C, plan.canvas_len)


def differentiable(x, weight, bias, plan: Plan) -> torch.Tensor:
    """The tap formulation on a canvas (``plan``: mode 'tap', layout 'canvas' or 'phases'), out of place."""
    canvas = make_canvas(x, plan)
    O, Cg, kh, kw = weight.shape
    g = plan.groups
    N, P, C, L = canvas.shape
    Wt = weight.reshape(g, O // g, Cg, kh * kw).permute(3, 0, 1, 2)  # T x g x Og x Cg
    Q = (plan.Ho - 1) * plan.Wc + plan.Wo
    ext = None
    for t, tap in enumerate(plan.taps):
        src = canvas[:, tap.phase, :, tap.offset : tap.offset + Q].reshape(N, g, Cg, Q)
        term = torch.matmul(Wt[t], src)  # N x g x Og x Q
        ext = term if ext is None else ext + term
    ext = ext.reshape(N, O, Q)
    ext = torch.cat([ext, ext.new_zeros(N, O, plan.Ho * plan.Wc - Q)], dim=2)
    y = ext.reshape(N, O, plan.Ho, plan.Wc)[..., : plan.Wo]
    if bias is not None:
        y = y + bias.view(1, O, 1, 1)
    return y.contiguous()


def is_transformed(t) -> bool:
    """True for a tensor inside a ``torch.func`` transform (``vmap``, ``grad``, ...), which in-place work
    buffers cannot serve."""
    check = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return isinstance(t, torch.Tensor) and check is not None and bool(check(t))
