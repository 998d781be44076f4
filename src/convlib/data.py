"""Finding and loading CIFAR-10 (Krizhevsky, 2009), from either of two sources.

1. torchvision's own copy, ``<root>/cifar-10-batches-py`` (the pickled batches; torchvision checks their
   MD5 sums). ``make data`` (``python -m convlib.data --download``) downloads it into ``data/`` where the
   network allows.
2. An ImageFolder tree of JPEGs, ``<root>/cifar10-jpg/test/<class>/*.jpg`` (the test split only). Pixel values
   differ slightly from the originals (JPEG re-encoding).

``<root>`` is searched in this order: the ``root`` argument; ``$CONVLIB_DATA``; the repository's ``data/``;
``./data`` and ``../data`` relative to the working directory. The first root holding either source wins,
and the original (1) wins over the JPEGs (2) within one root.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN_STD",
    "DataNotFoundError",
    "CIFAR10Source",
    "find_cifar10",
    "cifar10",
    "cifar10_transform",
    "unnormalize",
    "first_index_per_class",
    "split_indices",
    "cifar10_tensors",
]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# The normalisation of PyTorch's CIFAR-10 tutorial: maps [0, 1] to [-1, 1].
CIFAR10_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

_REPO_DATA = Path(__file__).resolve().parents[2] / "data"  # src/convlib/data.py -> <repo>/data
_TORCHVISION_DIR = "cifar-10-batches-py"
_JPEG_DIR = Path("cifar10-jpg")

HOW_TO_GET_IT = """\
CIFAR-10 was not found. Searched: {searched}.
Get it in one of these ways:
  * with network: run `make data` in the repository root (torchvision downloads the original
    CIFAR-10, about 170 MB, into data/cifar-10-batches-py);
  * or point $CONVLIB_DATA (an absolute path) at a folder that holds either `cifar-10-batches-py/`
    (torchvision's copy) or `cifar10-jpg/test/<class>/*.jpg` (an ImageFolder tree of the test split),
    e.g. `export CONVLIB_DATA=/path/to/shared/data`."""


class DataNotFoundError(FileNotFoundError):
    """CIFAR-10 is in none of the places searched; the message says how to get it."""


@dataclass(frozen=True)
class CIFAR10Source:
    kind: str  # "torchvision" (the original pickles) or "jpeg" (ImageFolder tree)
    root: Path  # the folder that holds cifar-10-batches-py/ or cifar10-jpg/

    def __str__(self) -> str:
        where = self.root / (_TORCHVISION_DIR if self.kind == "torchvision" else _JPEG_DIR)
        return f"CIFAR-10 ({self.kind}) at {where}"


def _candidate_roots(root=None) -> list[Path]:
    roots = []
    if root is not None:
        roots.append(Path(root))
    env = os.environ.get("CONVLIB_DATA")
    if env:
        p = Path(env).expanduser()
        roots.append(p)
        if not p.is_absolute():  # relative: try it from the repository root as well
            roots.append(_REPO_DATA.parent / p)
    roots += [_REPO_DATA, Path.cwd() / "data", Path.cwd().parent / "data"]
    seen, unique = set(), []
    for r in roots:
        key = str(r.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return unique


def find_cifar10(root=None, train: bool = False) -> CIFAR10Source:
    """Where CIFAR-10 is: the first root (see the module docstring) that holds it.

    The JPEG tree has only the test split, so ``train=True`` finds only torchvision's copy.
    Raises ``DataNotFoundError``, whose message says how to get the data, if neither is found.
    """
    roots = _candidate_roots(root) if root is None else [Path(root)]
    for r in roots:
        if (r / _TORCHVISION_DIR).is_dir():
            return CIFAR10Source("torchvision", r)
        if not train and (r / _JPEG_DIR / "test").is_dir():
            return CIFAR10Source("jpeg", r)
    split = "training split (only torchvision's copy has it)" if train else "test split"
    searched = ", ".join(str(r) for r in roots)
    raise DataNotFoundError(f"[{split}] " + HOW_TO_GET_IT.format(searched=searched))


def cifar10_transform(normalize: bool = True):
    """``ToTensor()`` (pixels to [0, 1], C x H x W), then, by default, ``Normalize`` to [-1, 1]."""
    from torchvision import transforms

    steps = [transforms.ToTensor()]
    if normalize:
        steps.append(transforms.Normalize(*CIFAR10_MEAN_STD))
    return transforms.Compose(steps)


def cifar10(train: bool = False, transform="default", root=None):
    """The CIFAR-10 split as a torch ``Dataset`` of (image, label) pairs, from whichever source is found.

    ``transform="default"`` is :func:`cifar10_transform` (tensor, normalised to [-1, 1]); pass ``None`` for
    PIL images. Labels follow CIFAR-10's order, :data:`CIFAR10_CLASSES`, for both sources. The dataset's
    ``source`` attribute says which source it came from.
    """
    from torchvision import datasets

    if isinstance(transform, str) and transform == "default":
        transform = cifar10_transform()
    src = find_cifar10(root, train=train)
    if src.kind == "torchvision":
        ds = datasets.CIFAR10(str(src.root), train=train, transform=transform, download=False)
    else:
        ds = datasets.ImageFolder(str(src.root / _JPEG_DIR / "test"), transform=transform)
        if tuple(ds.classes) != CIFAR10_CLASSES:
            raise ValueError(
                f"{src.root / _JPEG_DIR / 'test'} has class folders {ds.classes}, "
                f"expected CIFAR-10's {list(CIFAR10_CLASSES)}"
            )
    ds.source = src
    return ds


def unnormalize(x):
    """Undo :func:`cifar10_transform`'s ``Normalize``: values in [-1, 1] back to pixel intensities in [0, 1].

    Works on one image (C x H x W) or a batch (N x C x H x W) with C = 3; the result is clamped to [0, 1],
    ready for ``plt.imshow`` after ``.permute(1, 2, 0)``.
    """
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"x must be a 3-channel image C x H x W or a batch N x C x H x W, got shape {tuple(x.shape)}")
    mean, std = (torch.tensor(v, dtype=x.dtype, device=x.device).view(3, 1, 1) for v in CIFAR10_MEAN_STD)
    return (x * std + mean).clamp(0.0, 1.0)


def _targets(dataset) -> list[int]:
    targets = getattr(dataset, "targets", None)
    if targets is None:  # a generic dataset: read the labels (loads every image once)
        targets = [dataset[i][1] for i in range(len(dataset))]
    return [int(t) for t in targets]


def first_index_per_class(dataset, num_classes: int = len(CIFAR10_CLASSES)) -> list[int]:
    """The index of the first image of each class: ``[i_airplane, i_automobile, ..., i_truck]``.

    Reads the labels from ``dataset.targets`` (both of :func:`cifar10`'s sources have it) without loading
    any image. Raises ``ValueError`` if a class has no image.
    """
    first: dict[int, int] = {}
    for i, t in enumerate(_targets(dataset)):
        first.setdefault(t, i)
    missing = [c for c in range(num_classes) if c not in first]
    if missing:
        raise ValueError(f"the dataset has no image of class(es) {missing}")
    return [first[c] for c in range(num_classes)]


def split_indices(n: int, n_first: int, seed: int = 0):
    """A deterministic random split of ``range(n)`` into two disjoint index tensors of sizes ``n_first`` and
    ``n - n_first``.

    The permutation comes from ``torch.randperm`` with its own generator seeded by ``seed``, so it is the
    same on every machine and does not touch (or depend on) the global random state. Use it to split
    CIFAR-10's test split into a part to train on and a part to evaluate on: the JPEG copy is sorted by
    class, so taking the first ``n_first`` images would train on 8 classes and test on the other 2.
    """
    import torch

    for name, v in (("n", n), ("n_first", n_first), ("seed", seed)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name} must be an int, got {v!r}")
    if n < 0:
        raise ValueError(f"n must not be negative, got {n}")
    if not 0 <= n_first <= n:
        raise ValueError(f"n_first must be between 0 and n = {n}, got {n_first}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:n_first], perm[n_first:]


def cifar10_tensors(train: bool = False, normalize: bool = True, root=None):
    """The whole CIFAR-10 split as two tensors: images ``X`` (N x 3 x 32 x 32, float32) and labels ``y`` (N, int64).

    ``X[i], y[i]`` equal ``cifar10(train, root=root)[i]`` exactly (with ``normalize=False``:
    ``cifar10_transform(normalize=False)``), in the same order, but all images are converted in one
    vectorised step instead of one ``ToTensor``/``Normalize`` call per image: about a second for the 10,000
    test images instead of several. Training from tensors also avoids decoding every JPEG again in every epoch.
    """
    import numpy as np
    import torch

    ds = cifar10(train=train, transform=None, root=root)
    if ds.source.kind == "torchvision":
        pixels = np.asarray(ds.data)  # N x 32 x 32 x 3 uint8, already in memory
    else:
        from PIL import Image

        def load(path):  # what ImageFolder's default loader does
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))

        pixels = np.stack([load(path) for path, _ in ds.samples])
    X = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255)  # what ToTensor does
    if normalize:
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in CIFAR10_MEAN_STD)
        X = X.sub_(mean).div_(std)  # what Normalize does
    y = torch.as_tensor(ds.targets, dtype=torch.int64)
    return X.contiguous(), y


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convlib.data", description=__doc__.split("\n")[0])
    parser.add_argument("--download", action="store_true", help="download the original CIFAR-10 into data/")
    parser.add_argument("--root", default=None, help="folder to download into / look in (default: data/)")
    args = parser.parse_args(argv)
    if args.download:
        from torchvision import datasets

        root = Path(args.root) if args.root else _REPO_DATA
        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            datasets.CIFAR10(str(root), train=train, download=True)
        print(f"CIFAR-10 is in {root / _TORCHVISION_DIR}")
        return 0
    try:
        print(find_cifar10(args.root))
    except DataNotFoundError as e:
        print(e)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
