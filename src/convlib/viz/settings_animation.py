"""Animation of the output-size formula (the preface): one frame per stride / padding / dilation setting."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgb

from .frames import DEFAULT_SETTINGS, settings_frames
from .grids import padding_mask
from .player import DPI, READABLE, Animation, frame_figure, make_animation, margins
from .style import FONT, PALETTE, WINDOW_COLORS, draw_cells, outline, role_colors

__all__ = ["animate_settings", "DEFAULT_SETTINGS"]


def animate_settings(size=7, kernel_size=3, settings=DEFAULT_SETTINGS, dpi: int = DPI) -> Animation:
    """One frame per (stride, padding, dilation) setting: the windows on the padded input and the output size.

    ``size``, ``kernel_size`` and ``settings`` are those of :func:`convlib.viz.frames.settings_frames`. Each
    frame draws the padded input (padding grey), a dot where every window starts, and the Ho x Wo output with
    the formula filled in; the first window's taps and the output cell (0, 0) it writes share one outline
    colour, the last window's taps and the last output cell another.
    """
    fr = settings_frames(size, kernel_size, settings)
    (H, W), (kh, kw) = fr.size, fr.kernel_size
    Hp_max = max(H + f["sides"][0] + f["sides"][1] for f in fr.frames)
    Wp_max = max(W + f["sides"][2] + f["sides"][3] for f in fr.frames)
    out_w = max(max(f["Wo"] for f in fr.frames), 0.9 * Wp_max)  # the output's cells as large as the input's
    height = 0.33 * Hp_max + 2.0
    fig = frame_figure(height, dpi)
    gs = fig.add_gridspec(1, 2, width_ratios=[Wp_max, out_w], wspace=0.12, **margins(height, 1.1, 0.2))
    ax_in, ax_out = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1])

    def draw(t):
        f = fr.frames[t]
        ax_in.clear()
        ax_out.clear()
        _draw_setting_input(ax_in, f, (H, W), (Hp_max, Wp_max))
        _draw_setting_output(ax_out, f, (Hp_max, out_w))
        (sh, sw), (dh, dw), (top, bottom, left, right) = f["stride"], f["dilation"], f["sides"]
        formula = (
            f"Ho = {_filled(H, top, bottom, dh, kh, sh, f['Ho'])}\nWo = {_filled(W, left, right, dw, kw, sw, f['Wo'])}"
        )
        ax_out.text(0, f["Ho"] + 0.5, formula, ha="left", va="top", fontsize=READABLE, linespacing=1.6)
        (i, j), n = (f["windows"][-1]["i"], f["windows"][-1]["j"]), len(f["windows"])
        tie = f"; purple: window ({i}, {j}) writes Y[0, {i}, {j}]" if n > 1 else ""
        fig.suptitle(
            f"kernel {kh} x {kw}, {_setting_text(f)}\nred: window (0, 0) writes Y[0, 0, 0]{tie}", fontsize=FONT["title"]
        )
        return []

    return make_animation(fig, draw, fr.frames, fr.values, fr.title, interval=1500)


def _filled(n, before, after, d, k, s, result) -> str:
    """The output-size formula with one axis's numbers: floor((n + 2p - d(k-1) - 1) / s) + 1."""
    pad = f"2\u00b7{before}" if before == after else f"{before} + {after}"
    return f"\u230a({n} + {pad} \u2212 {d}\u00b7({k}\u22121) \u2212 1) / {s}\u230b + 1 = {result}"


def _setting_text(f) -> str:
    def one(pair):
        return pair[0] if len(set(pair)) == 1 else tuple(pair)

    top, bottom, left, right = f["sides"]
    padding = one((top, bottom, left, right)) if top == bottom and left == right else f["sides"]
    return f"stride {one(f['stride'])}, padding {padding}, dilation {one(f['dilation'])}"


def _draw_setting_input(ax, f, size, limits):
    """The padded input of one setting: window starts dotted, the first and last windows' taps outlined."""
    (H, W), (top, bottom, left, right) = size, f["sides"]
    Hp, Wp = H + top + bottom, W + left + right
    rgba = role_colors(np.full((Hp, Wp), 0.35), "input", vmax=1.0)
    rgba[padding_mask((Hp, Wp), f["sides"])] = to_rgb(PALETTE["padding"]) + (1.0,)
    draw_cells(ax, rgba, origin=(-top, -left), min_fontsize=READABLE)
    ax.xaxis.tick_top()
    starts = np.asarray(f["starts"], dtype=float)
    ax.scatter(starts[:, 1] + left + 0.5, starts[:, 0] + top + 0.5, s=22, color=PALETTE["kernel"], zorder=3)
    for window, color in zip(f["windows"], WINDOW_COLORS):
        for r, q in window["taps"]:
            outline(ax, r + top, q + left, lw=2.5, color=color)
    ax.set_xlim(-0.2, limits[1] + 0.2)
    ax.set_ylim(limits[0] + 0.2, -0.2)
    for spine in ax.spines.values():
        spine.set_visible(False)
    padded = ", padded" if any(f["sides"]) else ""
    ax.set_title(f"input {H} x {W}{padded}; dots: the {f['Ho'] * f['Wo']} window starts", fontsize=READABLE, pad=6)


def _draw_setting_output(ax, f, limits):
    """The Ho x Wo output of one setting, the cells the outlined windows write outlined in the same colours."""
    Ho, Wo = f["Ho"], f["Wo"]
    rgba = np.broadcast_to(np.array(to_rgb(PALETTE["output"]) + (1.0,)), (Ho, Wo, 4))
    draw_cells(ax, rgba, min_fontsize=READABLE)
    ax.xaxis.tick_top()
    for window, color in zip(f["windows"], WINDOW_COLORS):
        outline(ax, window["i"], window["j"], lw=3.0, color=color)
    ax.set_xlim(-0.2, limits[1] + 0.2)
    ax.set_ylim(limits[0] + 0.2, -0.2)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"output {Ho} x {Wo}: window (i, j) writes Y[0, i, j]", fontsize=READABLE, pad=6)
