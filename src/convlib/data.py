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
]

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
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
                f"{src.root / _JPEG_DIR / 'test'} has class folders {ds.classes}, expected CIFAR-10's {list(CIFAR10_CLASSES)}"
            )
    ds.source = src
    return ds


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
