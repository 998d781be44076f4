"""Finding, fetching and loading CIFAR-10 (Krizhevsky, 2009), from either of two sources.

1. torchvision's copy, ``<root>/cifar-10-batches-py`` (the pickled batches of the original archive; torchvision
   checks their MD5 sums on every load).
2. An ImageFolder tree of JPEGs, ``<root>/cifar10-jpg/test/<class>/*.jpg`` (the test split only). Pixel values
   differ slightly from the originals (JPEG re-encoding).

``<root>`` is searched in this order: the ``root`` argument; ``$CONVLIB_DATA``; the checkout's ``data/`` (an
installed convlib, with no checkout around it: ``./data``); ``./data`` and ``../data`` relative to the working
directory. The first root holding either source wins, and the original (1) wins over the JPEGs (2) within one root.

Fetching: when no root holds a copy, :func:`cifar10` downloads the original archive with torchvision's downloader
into the checkout's ``data/`` where the network allows, checks its MD5 sum and unpacks it (``make data`` and
``make test`` do the same up front). Offline, ``$CONVLIB_DATA`` names a copy. The archive's address and MD5 sum are
the module attributes ``CIFAR10_URL`` and ``CIFAR10_MD5``; the environment variables ``CONVLIB_CIFAR10_URL`` and
``CONVLIB_CIFAR10_MD5``, read at each download, override them (a mirror; the tests serve a small archive on the
loopback). The sums of the batches inside are known for the original archive only: with another archive
(another MD5 sum) the archive's own sum, checked on download, stands for them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN_STD",
    "CIFAR10_URL",
    "CIFAR10_MD5",
    "DataNotFoundError",
    "ChecksumError",
    "CIFAR10Source",
    "find_cifar10",
    "download_cifar10",
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

# The original archive, as torchvision's ``CIFAR10.url`` and ``CIFAR10.tgz_md5`` name it (written out so that
# importing this module does not import torchvision; a test checks that they agree).
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
DOWNLOAD_TIMEOUT_S = 60  # a download that receives nothing for this long fails (instead of hanging)


def _default_data_dir() -> Path:
    checkout = Path(__file__).resolve().parents[2]  # src/convlib/data.py -> <repo>
    # An installed convlib (site-packages) has no checkout around it: then ./data, relative to the working directory
    return checkout / "data" if (checkout / "pyproject.toml").is_file() else Path("data")


_REPO_DATA = _default_data_dir()  # searched after $CONVLIB_DATA; where downloads go
_TORCHVISION_DIR = "cifar-10-batches-py"
_ARCHIVE = "cifar-10-python.tar.gz"
_BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
_JPEG_DIR = Path("cifar10-jpg")


class DataNotFoundError(FileNotFoundError):
    """CIFAR-10 is in none of the places searched (and could not be downloaded); the message says how to get it."""


class ChecksumError(RuntimeError):
    """A downloaded archive or a copy on disk failed its MD5 check; the message names the file and the fix.

    A ``RuntimeError``, as torchvision's own "not found or corrupted" errors are."""


@dataclass(frozen=True)
class CIFAR10Source:
    kind: str  # "torchvision" (the original pickles) or "jpeg" (ImageFolder tree)
    root: Path  # the folder that holds cifar-10-batches-py/ or cifar10-jpg/

    def __str__(self) -> str:
        where = self.root / (_TORCHVISION_DIR if self.kind == "torchvision" else _JPEG_DIR)
        return f"CIFAR-10 ({self.kind}) at {where}"


def _archive() -> tuple[str, str]:
    """The archive to download: (URL, MD5 sum); the environment overrides the module attributes."""
    url = os.environ.get("CONVLIB_CIFAR10_URL") or CIFAR10_URL
    md5 = os.environ.get("CONVLIB_CIFAR10_MD5") or CIFAR10_MD5
    return url, md5.strip().lower()


def _how_to_get_it(split: str, searched: str, failure: str | None = None) -> str:
    """One paragraph: what was searched, why the download failed (if one was tried), and both ways to get the data."""
    tried = f", and downloading it failed: {failure}" if failure else ""
    return (
        f"CIFAR-10 was not found: no copy of its {split} in {searched}{tried}. Get it in either of two ways: where "
        f"the network allows, run `make data` in the repository root (or call convlib.data.download_cifar10()), "
        f"which downloads the original CIFAR-10 (about 170 MB) with torchvision, checks its MD5 sum and unpacks it "
        f"into {_REPO_DATA.resolve()}; offline, point the environment variable CONVLIB_DATA (an absolute path) at a "
        f"folder that holds a copy, either torchvision's `{_TORCHVISION_DIR}/` or an ImageFolder tree of the test "
        f"split, `{_JPEG_DIR}/test/<class>/*.jpg` (e.g. `export CONVLIB_DATA=/path/to/shared/data`)."
    )


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


def _split_name(train: bool) -> str:
    return "training split (only torchvision's copy has it)" if train else "test split"


def find_cifar10(root=None, train: bool = False) -> CIFAR10Source:
    """Where CIFAR-10 is: the first root (see the module docstring) that holds it. Never downloads.

    The JPEG tree has only the test split, so ``train=True`` finds only torchvision's copy.
    Raises ``DataNotFoundError``, whose message says how to get the data, if neither is found.
    """
    roots = _candidate_roots(root) if root is None else [Path(root)]
    for r in roots:
        if (r / _TORCHVISION_DIR).is_dir():
            return CIFAR10Source("torchvision", r)
        if not train and (r / _JPEG_DIR / "test").is_dir():
            return CIFAR10Source("jpeg", r)
    raise DataNotFoundError(_how_to_get_it(_split_name(train), ", ".join(str(r) for r in roots)))


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """Sockets opened inside time out after ``seconds`` of silence (torchvision's downloader sets no timeout).

    The default timeout is process-wide: it is restored on the way out."""
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_into(folder: Path, url: str, md5: str) -> Path:
    """Download and check the archive into ``folder`` with torchvision, unpack it there; the unpacked batches."""
    from torchvision.datasets.utils import download_and_extract_archive

    archive = folder / _ARCHIVE
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            download_and_extract_archive(url, str(folder), filename=_ARCHIVE, md5=md5)
    except RuntimeError as err:  # torchvision's "File not found or corrupted.": the MD5 check failed
        if not archive.is_file():
            raise
        raise ChecksumError(
            f"{_ARCHIVE}, downloaded from {url}, failed its MD5 check (expected {md5}, got {_md5(archive)}), so it "
            "was deleted and nothing was unpacked: the download was cut short or altered, or the address does not "
            "serve that archive. Run `make data` again; if it fails again, download it yourself from "
            "https://www.cs.toronto.edu/~kriz/cifar.html, check its MD5 sum and unpack it into "
            f"{_REPO_DATA.resolve()}, or point CONVLIB_DATA at a folder that holds a copy (if CONVLIB_CIFAR10_URL or "
            "CONVLIB_CIFAR10_MD5 is set, check them)."
        ) from err
    unpacked = folder / _TORCHVISION_DIR
    missing = [name for name in _BATCHES if not (unpacked / name).is_file()]
    if missing:
        raise ChecksumError(
            f"{_ARCHIVE} from {url} passed its MD5 check but unpacked without {_TORCHVISION_DIR}/"
            f"{{{', '.join(missing)}}}: it is not CIFAR-10's python archive. Check CONVLIB_CIFAR10_URL and "
            "CONVLIB_CIFAR10_MD5, or point CONVLIB_DATA at a folder that holds a copy."
        )
    return unpacked


def download_cifar10(root=None, url: str | None = None, md5: str | None = None) -> CIFAR10Source:
    """Download the original CIFAR-10 into ``root`` (default: the checkout's ``data/``) unless it is there already.

    torchvision's ``download_and_extract_archive`` fetches the archive (``url`` and ``md5`` default to
    ``$CONVLIB_CIFAR10_URL`` / ``$CONVLIB_CIFAR10_MD5``, else :data:`CIFAR10_URL` / :data:`CIFAR10_MD5`) and checks
    its MD5 sum. Everything happens in a temporary folder inside ``root``; only a complete, checked
    ``cifar-10-batches-py/`` is moved into place (one rename), so an interrupted download or a second process
    never leaves a half-unpacked copy, and the archive (170 MB) is deleted afterwards.

    Raises ``ChecksumError`` if the archive fails its MD5 check (or is not CIFAR-10's), and ``OSError`` (e.g.
    ``urllib.error.URLError``) if it cannot be downloaded.
    """
    default_url, default_md5 = _archive()
    url, md5 = url or default_url, (md5 or default_md5).strip().lower()
    root = Path(root) if root is not None else _REPO_DATA
    target = root / _TORCHVISION_DIR
    if not target.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".cifar10-download-", dir=root) as tmp:
            unpacked = _fetch_into(Path(tmp), url, md5)
            try:
                unpacked.rename(target)
            except OSError:
                if not target.is_dir():  # not a second process that finished first
                    raise
    return CIFAR10Source("torchvision", root)


def _find_or_fetch(root, train: bool, into) -> CIFAR10Source:
    """:func:`find_cifar10`; if nothing is found and ``into`` is a folder, the original downloaded into it."""
    try:
        return find_cifar10(root, train=train)
    except DataNotFoundError:
        if into is None:
            raise
    searched = ", ".join(str(r) for r in (_candidate_roots() if root is None else [Path(root)]))
    print(f"convlib.data: no copy of CIFAR-10 in {searched}; downloading it into {into}", file=sys.stderr)
    try:
        return download_cifar10(into)
    except OSError as err:  # no network, unknown host, refused, HTTP error, timeout (urllib's errors are OSErrors)
        failure = f"{_archive()[0]}: {getattr(err, 'reason', None) or err}"
        raise DataNotFoundError(_how_to_get_it(_split_name(train), searched, failure)) from err


def cifar10_transform(normalize: bool = True):
    """``ToTensor()`` (pixels to [0, 1], C x H x W), then, by default, ``Normalize`` to [-1, 1]."""
    from torchvision import transforms

    steps = [transforms.ToTensor()]
    if normalize:
        steps.append(transforms.Normalize(*CIFAR10_MEAN_STD))
    return transforms.Compose(steps)


def _torchvision_dataset(root: Path, train: bool, transform):
    """torchvision's ``CIFAR10`` on ``root/cifar-10-batches-py``, with its MD5 checks of the batches.

    The batches' sums that torchvision knows are the original archive's; with another archive configured (another
    MD5 sum, see the module docstring), the batches are only required to exist: the archive's sum was their check.
    """
    from torchvision import datasets

    cls = datasets.CIFAR10
    if _archive()[1] != cls.tgz_md5:
        cls = type(
            cls.__name__,
            (cls,),
            {
                "train_list": [[name, None] for name, _ in cls.train_list],
                "test_list": [[name, None] for name, _ in cls.test_list],
                "meta": {**cls.meta, "md5": None},
            },
        )
    try:
        return cls(str(root), train=train, transform=transform, download=False)
    except RuntimeError as err:  # torchvision: a batch (or batches.meta) is missing or fails its MD5 check
        raise ChecksumError(
            f"{root / _TORCHVISION_DIR} is incomplete or corrupted ({err}). Delete that folder and run `make data` "
            "(it downloads the original CIFAR-10 and checks it), or point CONVLIB_DATA at a folder that holds a "
            "good copy."
        ) from err


def cifar10(train: bool = False, transform="default", root=None, download: bool = True):
    """The CIFAR-10 split as a torch ``Dataset`` of (image, label) pairs, from whichever source is found.

    ``transform="default"`` is :func:`cifar10_transform` (tensor, normalised to [-1, 1]); pass ``None`` for
    PIL images. Labels follow CIFAR-10's order, :data:`CIFAR10_CLASSES`, for both sources. The dataset's
    ``source`` attribute says which source it came from.

    With ``root=None`` and ``download`` (the default), a CIFAR-10 found nowhere is downloaded first (see
    :func:`download_cifar10`); an explicit ``root`` is only looked in. Offline, the ``DataNotFoundError`` says
    why the download failed and how to get the data.
    """
    from torchvision import datasets

    if isinstance(transform, str) and transform == "default":
        transform = cifar10_transform()
    src = _find_or_fetch(root, train, into=_REPO_DATA if root is None and download else None)
    if src.kind == "torchvision":
        ds = _torchvision_dataset(src.root, train, transform)
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


def cifar10_tensors(train: bool = False, normalize: bool = True, root=None, download: bool = True):
    """The whole CIFAR-10 split as two tensors: images ``X`` (N x 3 x 32 x 32, float32) and labels ``y`` (N, int64).

    ``X[i], y[i]`` equal ``cifar10(train, root=root)[i]`` exactly (with ``normalize=False``:
    ``cifar10_transform(normalize=False)``), in the same order, but all images are converted in one
    vectorised step instead of one ``ToTensor``/``Normalize`` call per image: about a second for the 10,000
    test images instead of several. Training from tensors also avoids decoding every JPEG again in every epoch.
    ``root`` and ``download`` as for :func:`cifar10`.
    """
    import numpy as np
    import torch

    ds = cifar10(train=train, transform=None, root=root, download=download)
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
    parser = argparse.ArgumentParser(
        prog="python -m convlib.data",
        description="Say where CIFAR-10 is found, or how to get it; with --download, fetch it when it is missing.",
    )
    parser.add_argument(
        "--download", action="store_true", help="download the original CIFAR-10 when no copy of the test split is found"
    )
    parser.add_argument("--root", default=None, help="the one folder to look in and download into (default: search)")
    args = parser.parse_args(argv)
    try:
        into = (_REPO_DATA if args.root is None else args.root) if args.download else None
        src = _find_or_fetch(args.root, False, into=into)
    except (DataNotFoundError, ChecksumError, OSError) as err:
        print(err, file=sys.stderr)
        return 1
    print(src)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
