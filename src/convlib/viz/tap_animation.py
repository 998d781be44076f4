"""Animation of the fast path's "one offset per tap" (chapter 6): ``convlib.conv2d`` with ``layout='exact'``.

Every output pixel l reads the flat input at ``l + offset(u, v)``, so a kernel tap (u, v) reads one contiguous
slice of ``X.flatten()``, and the output accumulates tap by tap. The frames come from the plan of
``convlib.fast.conv2d_plan`` (its taps and edge corrections).
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle

from .frames import one_image
from .grids import show_grid
from .player import DPI, READABLE, Animation, FrameArtists, fill_output, frame_figure, make_animation, margins
from .style import ELL, FONT, PALETTE, draw_cells, fits, number_format, outline, role_cmap, role_colors

__all__ = ["animate_tap_slices"]


def animate_tap_slices(
    x, weight, bias=None, stride=1, padding=0, dilation=1, out_channel: int = 0, dpi: int = DPI
) -> Animation:
    """The fast path's key idea, one frame per kernel tap (u, v): every output pixel l reads the flat input
    at ``l + offset(u, v)``, so the tap reads one contiguous slice, and the output accumulates tap by tap.

    This is ``convlib.conv2d``'s ``layout='exact'`` (stride 1, an output as wide as the input): the slices
    come from ``convlib.fast.conv2d_plan`` (taps and edge corrections). Top: ``X.flatten()`` per channel with
    the tap's slice outlined, and below it the tap's products ``K[o, :, u, v] . X[:, l + offset]`` drawn under
    the pixels they read, i.e. the output strip shifted by the offset; a value read across a row edge (the
    neighbouring row's last or first pixel, where padding should be) is crossed out: ``convlib.conv2d``
    computes those edge outputs afresh afterwards. Bottom: the input as an image with the same pixels
    outlined, the kernel with the tap outlined, and the output accumulated so far (the bias first), the
    outputs this tap wrote outlined.

    ``frames[t]`` (t = u*kw + v) has ``u``, ``v``, ``offset``, ``weight`` (``K[o, :, u, v]``), ``writes``
    (l0, l1): the outputs the slice is multiplied into, ``reads`` (l0 + offset, l1 + offset) (both ``(0, 0)``
    for a tap that reads only padding), ``wrapped``: the (l, l + offset) pairs recomputed afterwards,
    ``contribution`` (the tap's term, corrected, flat) and ``partial`` (Ho x Wo, after this tap), which equals
    ``F.conv2d`` with only the first t + 1 taps of the kernel kept; ``values`` is the last ``partial``, equal to
    ``F.conv2d(x, weight, bias, ...)[0, out_channel]``.
    """
    a, out_channel = one_image(x, weight, bias, stride, padding, dilation, out_channel)
    O, C, kh, kw = a.weight.shape
    if a.stride != (1, 1):
        raise ValueError(
            f"tap_slices draws the stride-1 fast path (a tap reads a contiguous slice only with "
            f"stride 1), got stride={stride}"
        )
    pw, dw = a.padding[1], a.dilation[1]
    if dw * (kw - 1) != 2 * pw:
        raise ValueError(
            f"tap_slices draws layout='exact', which needs an output as wide as the input: "
            f"dilation * (kw - 1) == 2 * padding along the width, got kw={kw}, padding={pw}, "
            f"dilation={dw}"
        )
    frames, values, xf, wd = _tap_frames(a, out_channel)
    fmt = number_format(xf, wd, *[torch.tensor(f["contribution"]) for f in frames], values.double())
    fig, axes = _tap_panels(a, out_channel, xf, wd, fmt, dpi)
    draw = _tap_drawer(fig, axes, frames, a, out_channel, fmt)
    return make_animation(fig, draw, frames, values, "one offset per tap", interval=1200)


def _tap_frames(a, out_channel):
    """The numbers of every frame, read from the fast path's plan."""
    from ..fast import conv2d_plan

    O, C, kh, kw = a.weight.shape
    (ph, pw), (dh, dw) = a.padding, a.dilation
    H, W = a.x.shape[2:]
    Ho, Wo = a.output_hw
    L = Ho * Wo
    plan = conv2d_plan(1, C, H, W, O, kh, kw, (1, 1), (ph, pw), (dh, dw), 1, mode="tap", layout="exact")
    xd = a.x[0].detach().double()  # C x H x W
    xf = xd.reshape(C, H * W)
    wd = a.weight[out_channel].detach().double()  # C x kh x kw
    b = float(a.bias[out_channel]) if a.bias is not None else 0.0
    acc = torch.full((L,), b, dtype=torch.float64)
    frames = []
    for t, (dj, off, r0, r1) in enumerate(plan.taps):
        u, v = divmod(t, kw)
        di = (off - dj) // W
        w_t = wd[:, u, v]  # C
        contribution = torch.zeros(L, dtype=torch.float64)
        q0 = q1 = 0
        if r1 > r0:
            q0, q1 = r0 * W, r1 * W  # every output of rows r0..r1-1 (Wo = W)
            if dj < 0 and r0 + di == 0:  # the first outputs would read before the image's first pixel
                q0 -= dj
            if dj > 0 and r1 + di == H:  # the last outputs would read past its last pixel
                q1 -= dj
            contribution[q0:q1] = w_t @ xf[:, q0 + off : q1 + off]  # one product with a contiguous slice
        wrapped = []
        for _, in_col, out_col, c0, c1, in_row0 in (c for c in plan.corrections if c[0] == t):
            for k, i in enumerate(range(c0, c1)):
                q, q_in = i * W + out_col, (in_row0 + k) * W + in_col
                assert q0 <= q < q1 and q_in == q + off  # what the slice read there, in the wrong row
                contribution[q] -= w_t @ xf[:, q_in]  # the edge correction
                wrapped.append((q, q_in))
        acc = acc + contribution
        reads = (q0 + off, q1 + off) if q1 > q0 else (0, 0)
        frames.append(
            dict(
                t=t,
                u=u,
                v=v,
                offset=off,
                weight=w_t.tolist(),
                writes=(q0, q1),
                reads=reads,
                wrapped=sorted(wrapped),
                contribution=contribution.tolist(),
                partial=acc.reshape(Ho, Wo).tolist(),
            )
        )
    values = acc.reshape(Ho, Wo).to(a.x.dtype)
    return frames, values, xf, wd


def _tap_panels(a, o: int, xf, wd, fmt: str, dpi: int):
    """Top: the flat input (a row per channel) and a row for the tap's products; bottom: image, kernel, output."""
    O, C, kh, kw = a.weight.shape
    (H, W), (Ho, Wo), D = a.x.shape[2:], a.output_hw, xf.shape[1]
    cell = min(0.45, 6.9 / D)
    height = cell * (C + 3) + 0.45 * max(H, Ho, kh if C == 1 else C) + 2.0
    fig = frame_figure(height, dpi)
    bottom = 0.45 * max(H, Ho, kh if C == 1 else C)
    ratios = dict(height_ratios=[(C + 3) * cell, bottom], width_ratios=[W, (kw if C == 1 else kh * kw) + 1, Wo])
    gs = fig.add_gridspec(2, 3, **ratios, **margins(height, 1.2, 0.2, left=0.13), hspace=0.3, wspace=0.3)
    ax_f = fig.add_subplot(gs[0, :])
    ax_x, ax_k, ax_y = (fig.add_subplot(gs[1, k]) for k in range(3))
    _draw_flat_input(ax_f, xf, W, fmt)
    image = a.x[0, 0].double() if C == 1 else a.x[0].double().mean(0)
    show_grid(
        image,
        ax=ax_x,
        fmt=fmt if C == 1 else number_format(image),
        vmax=float(xf.abs().max()) or 1.0,
        axis_labels=False,
        annot=D <= 64,
        title="X" if C == 1 else "X, channel mean",
        min_fontsize=READABLE,
    )
    kernel = wd[0] if C == 1 else wd.reshape(C, kh * kw)
    title = f"K[{o}, 0]" if C == 1 else f"K[{o}]: C x (kh\u00b7kw)"
    show_grid(kernel, ax=ax_k, role="kernel", fmt=fmt, axis_labels=False, title=title, min_fontsize=READABLE)
    return fig, (ax_f, ax_x, ax_k, ax_y)


def _draw_flat_input(ax, xf, W: int, fmt: str):
    """``X.flatten()``, a row per channel, image rows ruled; below, a gap, a row for the tap's products and one
    for the labels of the output rows."""
    C, D = xf.shape
    rgba = np.ones((C + 3, D, 4))
    rgba[:C] = role_colors(xf.numpy(), "input")
    values = np.zeros((C + 3, D))
    values[:C] = xf.numpy()
    show = np.zeros((C + 3, D), dtype=bool)
    show[:C] = True
    draw_cells(
        ax, rgba, values, show=show, fmt=fmt, ticks=(False, False), lines=None, aspect="auto", min_fontsize=READABLE
    )
    for r in range(W, D, W):  # where a row of the image ends
        ax.plot([r, r], [0, C + 2], color="#888888", lw=0.8)
    ax.set_yticks(
        [c + 0.5 for c in range(C)] + [C + 1.5],
        labels=[("X.flatten()" if C == 1 else f"X[{c}].flatten()") for c in range(C)] + ["products"],
    )
    ticks = list(range(0, D, max(1, D // 20)))
    ax.xaxis.tick_top()
    ax.set_xticks(np.array(ticks) + 0.5, labels=ticks)
    ax.tick_params(length=0, pad=1, labelsize=READABLE)
    ax.set_xlabel("flat index (grey lines: where a row of the image ends)", fontsize=READABLE, labelpad=6)
    ax.xaxis.set_label_position("top")
    for spine in ax.spines.values():
        spine.set_visible(False)


def _tap_drawer(fig, axes, frames, a, o: int, fmt: str):
    """``draw(t)``: the tap's slice and products on the flat input, the same pixels on the image, the output."""
    ax_f, ax_x, ax_k, ax_y = axes
    O, C, kh, kw = a.weight.shape
    W, (Ho, Wo), (ph, pw), (dh, dw) = a.x.shape[3], a.output_hw, a.padding, a.dilation
    cmax = max(max(abs(v) for v in f["contribution"]) for f in frames) or 1.0
    strip = _StripPainter(ax_f, C, W, fmt, cmax)
    dynamic = FrameArtists()

    def draw(t):
        f = frames[t]
        u, v, off = f["u"], f["v"], f["offset"]
        (l0, l1), (s0, s1) = f["writes"], f["reads"]
        bad = {q for q, _ in f["wrapped"]}
        dynamic.clear()
        if l1 > l0:
            dynamic.add(*strip.paint(f, bad))
            for s in range(s0, s1):
                r_, c_ = divmod(s, W)
                dynamic.add(outline(ax_x, r_, c_, lw=1.5))
                if s - off in bad:
                    dynamic.add(_cross(ax_x, c_, r_))
        dynamic.add(outline(ax_k, u, v, lw=2.5) if C == 1 else outline(ax_k, 0, t, C, 1, lw=2.5))
        known = np.full(Ho * Wo, a.bias is not None)
        for g in frames[: t + 1]:
            known[slice(*g["writes"])] = True
        title = f"Y[0, {o}] after {t + 1} of {kh * kw} taps"
        fill_output(ax_y, np.asarray(f["partial"]), known.reshape(Ho, Wo), None, fmt, title)
        for q in range(l0, l1):
            outline(ax_y, *divmod(q, Wo), lw=1.2)
        nw = len(f["wrapped"])
        w_txt = format(f["weight"][0], fmt) if C == 1 else f"K[{o}, :, {u}, {v}]"
        what = f"reads X.flat[{s0}:{s1}] for outputs {ELL} = {l0}..{l1 - 1}" if l1 > l0 else "reads only padding"
        edge = f"{nw} value{'s' if nw > 1 else ''} read across a row edge (crossed): recomputed afterwards"
        fig.suptitle(
            f"tap ({u}, {v}), weight {w_txt}: offset ({u * dh} \u2212 {ph})\u00b7{W} + ({v * dw} \u2212 {pw}) = {off}; "
            f"{what}\n" + (edge if nw else "no row edge crossed"),
            fontsize=FONT["title"],
        )
        return []

    return draw


def _cross(ax, x0, y0):
    return ax.plot([x0 + 0.15, x0 + 0.85], [y0 + 0.15, y0 + 0.85], color="black", lw=1.2)[0]


class _StripPainter:
    """The tap's products drawn under the pixels they read (the row below the flat input), crossed-out reads."""

    def __init__(self, ax, C: int, W: int, fmt: str, cmax: float):
        self.ax, self.C, self.W, self.fmt = ax, C, W, fmt
        self.cmap, self.norm = role_cmap("output", True), Normalize(-cmax, cmax)
        cw = ax.get_position().width * ax.figure.get_figwidth() * 72 / max(1, ax.get_xlim()[1] - ax.get_xlim()[0])
        self.cell_points = cw

    def paint(self, f, bad) -> list:
        ax, C, off = self.ax, self.C, f["offset"]
        (l0, l1), contrib, artists = f["writes"], np.asarray(f["contribution"]), []
        artists.append(outline(ax, 0, f["reads"][0], C, l1 - l0, lw=2.0))  # the slice: one run per channel
        for q in range(l0, l1):
            colour = (1.0, 1.0, 1.0, 1.0) if q in bad else self.cmap(self.norm(contrib[q]))
            artists.append(ax.add_patch(Rectangle((q + off, C + 1), 1, 1, facecolor=colour, edgecolor="#CCCCCC")))
            if q in bad:
                artists += [_cross(ax, q + off, C + 1), *[_cross(ax, q + off, c) for c in range(C)]]
            elif fits(format(contrib[q] + 0.0, self.fmt), self.cell_points, READABLE):
                text = format(contrib[q] + 0.0, self.fmt)
                artists.append(ax.text(q + off + 0.5, C + 1.5, text, ha="center", va="center", fontsize=READABLE))
        artists.append(outline(ax, C + 1, l0 + off, 1, l1 - l0, lw=1.2, color=PALETTE["output"]))
        for q in range(l0, l1, self.W):  # output row starts, labelled by their output index l
            label = f"{ELL}={q}"
            artists.append(
                ax.text(q + off + 0.05, C + 2.1, label, ha="left", va="top", fontsize=READABLE, color=PALETTE["output"])
            )
        return artists
