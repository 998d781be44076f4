"""Live explorers for Jupyter: turn the knobs (size, kernel, stride, padding, dilation, channels, groups), watch.

:func:`explorer_view` is the testable core: settings in, a figure and the numbers out (no widgets involved).
:func:`explorer` wires ipywidgets sliders to it. The figure shows

- the input (channel 0, padding grey) with the receptive field of one output pixel outlined;
- the patch matrix ``cols = im2col(x)`` (C*kh*kw x L), that pixel's column outlined;
- the sparsity of the convolution matrix ``M`` (O*L x C*H*W), that pixel's rows outlined;
- the output (channel 0), that pixel outlined;

and the text fills the output-size formula in with the chosen numbers. In the static HTML book sliders cannot
recompute anything, so chapters show an animation there and keep the explorer for readers who run the
notebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from ..args import as_int, check_groups, conv2d_args
from ..im2col import im2col
from ..toeplitz import conv_matrix
from .grids import show_grid
from .matrices import show_matrix, spy
from .style import ELL, FONT, MAX_FIG_WIDTH, outline

__all__ = ["ExplorerView", "explorer_view", "explorer"]


@dataclass
class ExplorerView:
    """What the explorer shows for one setting: ``fig`` (None if the setting is invalid), ``text``, numbers."""

    settings: dict
    text: str
    fig: plt.Figure | None = None
    error: str | None = None
    output_shape: tuple | None = None  # (O, Ho, Wo)
    cols_shape: tuple | None = None  # (C*kh*kw, L)
    M_shape: tuple | None = None  # (O*L, C*H*W)
    M_nonzeros: int | None = None
    receptive_field: list | None = None  # (c, r, q) of the input pixels output `position` reads


def _example(C, H, W, O, Cg, k, dtype=torch.float64):
    """A fixed input with small positive integers and a weight with no zero (so M's sparsity is structural)."""
    x = (torch.arange(C * H * W, dtype=dtype).reshape(1, C, H, W) % 5) + 1
    g = torch.Generator().manual_seed(0)
    weight = torch.randint(1, 4, (O, Cg, k, k), generator=g).to(dtype)
    return x, weight


def explorer_view(
    H: int = 6,
    W: int = 6,
    kernel_size: int = 3,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    in_channels: int = 1,
    out_channels: int = 1,
    groups: int = 1,
    position: int = 0,
    dpi: int = 72,
) -> ExplorerView:
    """The explorer's picture and numbers for one setting (square kernel, same stride/padding/dilation on both axes).

    An invalid setting (kernel larger than the padded input, groups not dividing the channels) returns a view
    with ``fig=None`` and ``error`` set to convlib's message, so the explorer shows the reason instead of failing.
    ``position`` is the output pixel (row-major, l = i*Wo + j) whose receptive field is outlined; it is clipped
    to the last pixel.
    """
    settings = dict(H=H, W=W, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation)
    settings |= dict(in_channels=in_channels, out_channels=out_channels, groups=groups)
    try:
        H, W, k = as_int(H, "H", minimum=1), as_int(W, "W", minimum=1), as_int(kernel_size, "kernel_size", minimum=1)
        C, O = as_int(in_channels, "in_channels", minimum=1), as_int(out_channels, "out_channels", minimum=1)
        g = check_groups(groups)
        if C % g or O % g:
            raise ValueError(f"groups={g} must divide in_channels={C} and out_channels={O}")
        x, weight = _example(C, H, W, O, C // g, k)
        a = conv2d_args(x, weight, None, stride, padding, dilation, g)
    except (TypeError, ValueError) as err:
        return ExplorerView(settings=settings, text=f"invalid setting: {err}", error=str(err))
    (Ho, Wo), (s, _), (p, _), (d, _) = a.output_hw, a.stride, a.padding, a.dilation
    l = min(max(int(position), 0), Ho * Wo - 1)
    i, j = divmod(l, Wo)
    cols = im2col(x, k, s, p, d)[0]  # C*k*k x L
    M = conv_matrix(weight, (C, H, W), s, p, d, g, sparse=False)  # O*L x C*H*W
    taps = [(c, i * s + u * d - p, j * s + v * d - p) for c in range(C // g) for u in range(k) for v in range(k)]
    field = [t for t in taps if 0 <= t[1] < H and 0 <= t[2] < W]  # output channel 0 reads group 0's channels
    fig = _explorer_figure(x, F.conv2d(x, weight, None, s, p, d, g)[0], cols, M, (a, l, field), dpi)
    nnz = int((M != 0).sum())
    return ExplorerView(
        settings=settings,
        text=_formula(C, H, W, O, k, (s, p, d, g), (Ho, Wo), cols.shape[0], nnz, (l, i, j, len(field))),
        fig=fig,
        output_shape=(O, Ho, Wo),
        cols_shape=tuple(cols.shape),
        M_shape=tuple(M.shape),
        M_nonzeros=nnz,
        receptive_field=field,
    )


def _formula(C, H, W, O, k, setting, out_hw, rows, nnz, pixel) -> str:
    """The output-size formula filled in, and the shapes of ``cols`` and M."""
    (s, p, d, g), (Ho, Wo), (l, i, j, n_read) = setting, out_hw, pixel
    L = Ho * Wo
    density = nnz / (O * L * C * H * W)
    groups = f"  (each of the {g} groups multiplies its own {C // g * k * k} rows)" if g > 1 else ""
    return (
        f"Ho = floor((H + 2p - d(k-1) - 1) / s) + 1 = floor(({H} + 2*{p} - {d}*({k}-1) - 1) / {s}) + 1 = {Ho}\n"
        f"Wo = floor((W + 2p - d(k-1) - 1) / s) + 1 = floor(({W} + 2*{p} - {d}*({k}-1) - 1) / {s}) + 1 = {Wo}\n"
        f"output O x Ho x Wo = {O} x {Ho} x {Wo};  L = Ho*Wo = {L} window positions\n"
        f"cols: C*kh*kw x L = {C}*{k}*{k} x {L} = {rows} x {L}{groups}\n"
        f"M: O*L x C*H*W = {O * L} x {C * H * W}, {nnz} nonzeros ({100 * density:.1f}%)\n"
        f"output pixel {ELL} = {l} = ({i}, {j}) reads {n_read} input pixels of {C // g} channel(s)"
    )


def _explorer_figure(x, y, cols, M, pixel, dpi):
    """Four panels: the padded input with the receptive field, ``cols``, M's sparsity, the output."""
    a, l, field = pixel
    (s, _), (p, _), (d, _), (Ho, Wo) = a.stride, a.padding, a.dilation, a.output_hw
    (C, H, W), L, k, O, g = x.shape[1:], Ho * Wo, a.weight.shape[-1], a.weight.shape[0], a.groups
    fig, ((ax_in, ax_cols), (ax_M, ax_out)) = plt.subplots(2, 2, figsize=(MAX_FIG_WIDTH, 6.6), dpi=dpi)
    xp = F.pad(x, (p, p, p, p))[0, 0]
    show_grid(
        xp,
        ax=ax_in,
        padding=p,
        annot=xp.numel() <= 144,
        axis_labels=False,
        title=f"input channel 0 ({H}x{W}, padding {p})",
    )
    for c, r, q in field:
        if c == 0:
            outline(ax_in, r + p, q + p, lw=2.0)
    show_matrix(
        cols,
        ax=ax_cols,
        annot=max(cols.shape) <= 12,
        highlight_cols=[l],
        linewidths=0,
        title=f"patch matrix cols ({cols.shape[0]} x {L})",
        xlabel=f"patch {ELL}",
        ylabel="row (c, u, v)",
        xticklabels=L <= 16,
        yticklabels=cols.shape[0] <= 18,
    )
    spy(
        M,
        ax=ax_M,
        title=f"M ({M.shape[0]} x {M.shape[1]}), non-zeros orange",
        xlabel="input pixel (c, r, q), flattened",
        ylabel=f"output (o, {ELL}), flattened",
    )
    outline(ax_M, l, 0, 1, M.shape[1], lw=1.5)  # output channel 0's row for pixel l
    show_grid(y[0], ax=ax_out, role="output", annot=L <= 64, axis_labels=False, title=f"output channel 0 ({Ho}x{Wo})")
    outline(ax_out, *divmod(l, Wo))
    fig.suptitle(f"k={k}, s={s}, p={p}, d={d}, C={C}, O={O}, g={g}", fontsize=FONT["suptitle"])
    fig.tight_layout()
    plt.close(fig)
    return fig


def explorer(
    H: int = 6,
    W: int = 6,
    kernel_size: int = 3,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    in_channels: int = 1,
    out_channels: int = 1,
    groups: int = 1,
):
    """The live explorer: sliders for every setting driving :func:`explorer_view`. Needs a running kernel.

    Returns an ipywidgets ``VBox``; its attribute ``last_view`` holds the :class:`ExplorerView` on display.
    """
    import ipywidgets as widgets
    from IPython.display import display

    def slider(value, lo, hi, description):
        return widgets.IntSlider(
            value=value,
            min=lo,
            max=hi,
            description=description,
            continuous_update=False,
            style={"description_width": "initial"},
            layout=widgets.Layout(width="260px"),
        )

    controls = dict(
        H=slider(H, 1, 12, "height H"),
        W=slider(W, 1, 12, "width W"),
        kernel_size=slider(kernel_size, 1, 6, "kernel k"),
        stride=slider(stride, 1, 4, "stride s"),
        padding=slider(padding, 0, 3, "padding p"),
        dilation=slider(dilation, 1, 3, "dilation d"),
        in_channels=slider(in_channels, 1, 4, "in channels C"),
        out_channels=slider(out_channels, 1, 4, "out channels O"),
        groups=slider(groups, 1, 4, "groups g"),
        position=slider(0, 0, 143, f"output pixel {ELL}"),
    )

    class Explorer(widgets.VBox):
        def __repr__(self):  # what a notebook stores (and shows) where no live kernel drives the sliders
            return "convlib explorer: run this cell in Jupyter (a live kernel) to move the sliders"

    box = Explorer()

    def update(**values):
        view = explorer_view(**values)
        box.last_view = view
        print(view.text)
        if view.fig is not None:
            display(view.fig)

    out = widgets.interactive_output(update, controls)
    rows = [widgets.HBox(list(controls.values())[i : i + 3]) for i in range(0, len(controls), 3)]
    box.children = [*rows, out]
    return box
