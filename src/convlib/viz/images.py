"""Sets of images (photographs, feature maps, filters) and curves (e.g. training losses)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..args import as_int
from .style import FONT, MAX_FIG_WIDTH, PALETTE, role_cmap

__all__ = ["show_images", "show_filters", "plot_curves"]


def _image_array(img) -> np.ndarray:
    """A C x H x W (C = 1 or 3) or H x W tensor/array as an H x W or H x W x 3 numpy array."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().float().numpy()
    a = np.asarray(img, dtype=float)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
    if a.ndim != 2 and not (a.ndim == 3 and a.shape[-1] == 3):
        raise ValueError(f"each image must be H x W, 1 x H x W or 3 x H x W, got shape {a.shape}")
    return a


def show_images(
    images,
    titles=None,
    ncols: int | None = None,
    suptitle: str | None = None,
    role: str = "output",
    signed: bool | None = None,
    shared_scale: bool = True,
    cbar: bool = False,
    size: float = 1.3,
    axes=None,
):
    """A grid of images: RGB ones (3 x H x W, values in [0, 1]) as they are, one-channel ones (feature maps)
    in the colours of ``role`` (purple-white-colour when they have negative values).

    ``images`` is a list or a tensor whose first axis runs over the images; ``titles`` one string per image.
    With ``shared_scale`` all one-channel maps use one colour scale (so their strengths compare); otherwise
    each its own. Returns the figure; its axes are ``fig.axes`` (``axes`` draws into given axes instead).
    """
    arrays = [_image_array(im) for im in images]
    if not arrays:
        raise ValueError("no images to show")
    if titles is not None and len(titles) != len(arrays):
        raise ValueError(f"got {len(titles)} titles for {len(arrays)} images")
    n = len(arrays)
    own_figure = axes is None
    if own_figure:
        ncols = ncols or min(n, 10)
        nrows = -(-n // ncols)
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(min(MAX_FIG_WIDTH, size * ncols), size * nrows + 0.4 * bool(suptitle)), squeeze=False
        )
        axes = axes.ravel()
    else:
        axes = np.ravel(axes)
        fig = axes[0].figure
    maps = [a for a in arrays if a.ndim == 2]
    if signed is None:
        signed = bool(maps) and min(float(a.min()) for a in maps) < 0
    shared_m = max((float(np.abs(a).max()) for a in maps), default=1.0) or 1.0
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        scale = shared_m if shared_scale else None
        _draw_image(ax, arrays[i], role, signed, scale, cbar)
        if titles is not None:
            ax.set_title(titles[i], fontsize=FONT["label"])
    if suptitle:
        fig.suptitle(suptitle, fontsize=FONT["suptitle"])
    if own_figure:
        fig.tight_layout()
    return fig


def _draw_image(ax, a: np.ndarray, role: str, signed: bool, scale, cbar: bool):
    """An RGB image as it is; a map in the colours of ``role``, up to ``scale`` (None: its own largest value)."""
    if a.ndim == 3:
        ax.imshow(np.clip(a, 0.0, 1.0), interpolation="nearest")
        return
    m = scale if scale is not None else (float(np.abs(a).max()) or 1.0)
    lo = -m if signed else (0.0 if a.min() >= 0 or scale is not None else float(a.min()))
    im = ax.imshow(a, cmap=role_cmap(role, signed), vmin=lo, vmax=m, interpolation="nearest")
    if cbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def show_filters(weight, ncols: int = 8, suptitle: str | None = None, size: float = 0.9):
    """The filters of a convolution layer (O x C x kh x kw) as small images, one per output channel.

    With C = 3 each filter is shown as a colour image, scaled on its own to [0, 1] (so its pattern shows,
    not its size); with C = 1 in the kernel colours (purple negative, white 0, orange positive). Returns the
    figure.
    """
    if isinstance(weight, torch.Tensor):
        weight = weight.detach().cpu().float()
    else:
        weight = torch.as_tensor(np.asarray(weight), dtype=torch.float32)
    if weight.dim() != 4 or weight.shape[1] not in (1, 3):
        raise ValueError(f"weight must be O x C x kh x kw with C = 1 or 3, got shape {tuple(weight.shape)}")
    ncols = min(ncols, weight.shape[0])
    if weight.shape[1] == 3:
        lo = weight.amin(dim=(1, 2, 3), keepdim=True)
        hi = weight.amax(dim=(1, 2, 3), keepdim=True)
        images = (weight - lo) / (hi - lo).clamp_min(1e-12)
        return show_images(images, ncols=ncols, suptitle=suptitle, size=size)
    return show_images(weight[:, 0], ncols=ncols, suptitle=suptitle, size=size, role="kernel", signed=True)


def plot_curves(
    curves: dict,
    ax=None,
    title: str | None = None,
    xlabel: str = "step",
    ylabel: str = "loss",
    colors=None,
    smooth: int | None = None,
):
    """Several curves (e.g. training losses) on one axes: the first solid and wide, the next ones narrower and
    dashed on top of it, so that curves which coincide are visibly the same line.

    ``curves`` maps a label to a sequence of y values (x = 0, 1, 2, ...). With ``smooth=k`` the raw values are
    drawn faint and thin, and the curves described above are their moving averages over ``k`` consecutive
    values (plotted at the window's last x). Colours default to the palette's kernel, input and output
    colours. Returns the axes.
    """
    if not curves:
        raise ValueError("no curves to plot")
    if smooth is not None:
        smooth = as_int(smooth, "smooth", minimum=1)
    if ax is None:
        _, ax = plt.subplots(figsize=(min(MAX_FIG_WIDTH, 6.5), 3.2))
    colors = colors or [
        PALETTE["kernel"],
        PALETTE["input"],
        PALETTE["output"],
        PALETTE["highlight"],
        PALETTE["negative"],
    ]
    for i, (label, ys) in enumerate(curves.items()):
        ys = np.asarray(ys.detach().cpu() if isinstance(ys, torch.Tensor) else ys, dtype=float)
        xs = np.arange(len(ys))
        color = colors[i % len(colors)]
        if smooth:
            if len(ys) < smooth:
                raise ValueError(f"curve {label!r} has {len(ys)} values, fewer than the window smooth={smooth}")
            ax.plot(xs, ys, color=color, lw=0.6, alpha=0.35)
            ys = np.convolve(ys, np.ones(smooth) / smooth, mode="valid")
            xs = xs[smooth - 1 :]
            label = f"{label} ({smooth}-step mean)"
        style = {"lw": 3.0, "ls": "-", "alpha": 0.8} if i == 0 else {"lw": 1.4, "ls": (0, (4, 2 + i))}
        ax.plot(xs, ys, color=color, label=label, **style)
    ax.set_xlabel(xlabel, fontsize=FONT["label"])
    ax.set_ylabel(ylabel, fontsize=FONT["label"])
    ax.tick_params(labelsize=FONT["tick"])
    if title:
        ax.set_title(title, fontsize=FONT["title"])
    ax.legend(frameon=False, fontsize=FONT["label"])
    ax.grid(alpha=0.3)
    return ax
