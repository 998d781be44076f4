"""convlib.data: finds CIFAR-10 in either format, and says how to get it when it is missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_download import refused_address

from convlib import data


@pytest.fixture
def refused_url():
    with refused_address() as url:
        yield url


def _found_or_skip():
    """The real data where it is found (never downloaded by a test); else skip with the how-to message."""
    try:
        return data.find_cifar10()
    except data.DataNotFoundError as err:
        pytest.skip(str(err))


def _fake_jpeg_tree(root: Path, per_class: int = 2) -> None:
    rng = np.random.default_rng(0)
    for name in data.CIFAR10_CLASSES:
        d = root / "cifar10-jpg" / "test" / name
        d.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{i:04d}.jpg")


def test_finds_jpeg_tree_via_root(tmp_path):
    _fake_jpeg_tree(tmp_path)
    src = data.find_cifar10(tmp_path)
    assert src.kind == "jpeg" and src.root == tmp_path
    ds = data.cifar10(root=tmp_path)
    assert len(ds) == 20
    x, label = ds[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert -1.0 <= x.min() and x.max() <= 1.0  # normalised to [-1, 1]
    assert label == 1  # sorted folders: airplane 0, 1 -> automobile 2, 3
    assert ds.source == src


def test_finds_jpeg_tree_via_environment(tmp_path, monkeypatch):
    _fake_jpeg_tree(tmp_path)
    monkeypatch.setenv("CONVLIB_DATA", str(tmp_path))
    assert data.find_cifar10().root == tmp_path


def test_torchvision_copy_wins_over_jpeg(tmp_path):
    _fake_jpeg_tree(tmp_path)
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert data.find_cifar10(tmp_path).kind == "torchvision"


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DataNotFoundError) as err:
        data.find_cifar10(tmp_path)
    msg = str(err.value)
    assert "make data" in msg and "CONVLIB_DATA" in msg and str(tmp_path) in msg
    assert isinstance(err.value, FileNotFoundError)


def test_training_split_needs_torchvision_copy(tmp_path):
    _fake_jpeg_tree(tmp_path)
    with pytest.raises(data.DataNotFoundError, match="training split"):
        data.find_cifar10(tmp_path, train=True)


def test_wrong_class_folders_rejected(tmp_path):
    (tmp_path / "cifar10-jpg" / "test" / "cats").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "cifar10-jpg" / "test" / "cats" / "0.jpg")
    with pytest.raises(ValueError, match="expected CIFAR-10's"):
        data.cifar10(root=tmp_path)


def test_real_test_split_loads():
    _found_or_skip()
    ds = data.cifar10()
    assert len(ds) == 10_000
    x, label = ds[0]
    assert x.shape == (3, 32, 32) and 0 <= label < 10


# ---------------------------------------------------------------- helpers for chapter 5


def test_unnormalize_inverts_the_transform(tmp_path):
    _fake_jpeg_tree(tmp_path, per_class=1)
    pil = data.cifar10(root=tmp_path, transform=None)[0][0]
    x = data.cifar10(root=tmp_path)[0][0]
    pixels = torch.from_numpy(np.array(pil)).permute(2, 0, 1).double() / 255
    torch.testing.assert_close(data.unnormalize(x).double(), pixels, rtol=0, atol=1e-6)
    batch = torch.stack([x, -x])
    assert data.unnormalize(batch).shape == (2, 3, 32, 32)
    assert data.unnormalize(torch.full((3, 2, 2), 5.0)).max() == 1.0  # clamped to [0, 1]


@pytest.mark.parametrize("bad", [torch.zeros(1, 32, 32), torch.zeros(32, 32), torch.zeros(2, 4, 3, 3)])
def test_unnormalize_rejects_non_rgb(bad):
    with pytest.raises(ValueError, match="3-channel"):
        data.unnormalize(bad)
    with pytest.raises(TypeError, match="torch.Tensor"):
        data.unnormalize(bad.numpy())


def test_first_index_per_class(tmp_path):
    _fake_jpeg_tree(tmp_path, per_class=3)
    ds = data.cifar10(root=tmp_path)
    idx = data.first_index_per_class(ds)
    assert idx == [3 * c for c in range(10)]  # sorted folders: class c starts at 3*c
    assert [ds[i][1] for i in idx] == list(range(10))

    class Mixed(torch.utils.data.Dataset):  # no .targets: labels read item by item
        labels = [2, 0, 1, 0, 2]

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return torch.zeros(3, 1, 1), self.labels[i]

    assert data.first_index_per_class(Mixed(), num_classes=3) == [1, 2, 0]
    with pytest.raises(ValueError, match=r"no image of class\(es\) \[3\]"):
        data.first_index_per_class(Mixed(), num_classes=4)


def test_split_indices_is_a_deterministic_partition():
    a, b = data.split_indices(100, 80, seed=0)
    assert len(a) == 80 and len(b) == 20
    assert sorted(torch.cat([a, b]).tolist()) == list(range(100))
    a2, b2 = data.split_indices(100, 80, seed=0)
    assert torch.equal(a, a2) and torch.equal(b, b2)
    assert not torch.equal(data.split_indices(100, 80, seed=1)[0], a)
    # independent of the global random state, and leaves it alone
    torch.manual_seed(123)
    state = torch.get_rng_state()
    assert torch.equal(data.split_indices(100, 80, seed=0)[0], a)
    assert torch.equal(torch.get_rng_state(), state)
    # not sorted by index: the JPEG copy is sorted by class
    assert a.tolist() != sorted(a.tolist())
    assert data.split_indices(5, 0)[0].numel() == 0 and data.split_indices(5, 5)[1].numel() == 0


@pytest.mark.parametrize(
    "args, err, match",
    [
        ((10, 11), ValueError, "n_first must be between"),
        ((10, -1), ValueError, "n_first must be between"),
        ((-1, 0), ValueError, "n must not be negative"),
        ((10.0, 5), TypeError, "n must be an int"),
        ((10, 5, None), TypeError, "seed must be an int"),
    ],
)
def test_split_indices_errors(args, err, match):
    with pytest.raises(err, match=match):
        data.split_indices(*args)


@pytest.mark.parametrize("normalize", [True, False])
def test_cifar10_tensors_equal_the_dataset_items(tmp_path, normalize):
    _fake_jpeg_tree(tmp_path, per_class=2)
    ds = data.cifar10(root=tmp_path, transform=data.cifar10_transform(normalize))
    X, y = data.cifar10_tensors(normalize=normalize, root=tmp_path)
    assert X.shape == (20, 3, 32, 32) and X.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(X, torch.stack([ds[i][0] for i in range(20)]))  # bit for bit: same operations
    assert y.tolist() == [ds[i][1] for i in range(20)] == [i // 2 for i in range(20)]


def test_cifar10_tensors_missing_data(tmp_path):
    with pytest.raises(data.DataNotFoundError, match="make data"):
        data.cifar10_tensors(root=tmp_path)


def test_real_cifar10_tensors():
    _found_or_skip()
    ds = data.cifar10()
    X, y = data.cifar10_tensors()
    assert X.shape == (10_000, 3, 32, 32) and y.shape == (10_000,)
    for i in (0, 4321, 9999):
        assert torch.equal(X[i], ds[i][0]) and y[i] == ds[i][1]
    assert torch.bincount(y).tolist() == [1000] * 10


def _fake_torchvision_copy(root: Path, monkeypatch, n: int = 12) -> np.ndarray:
    """A tiny cifar-10-batches-py (test batch and meta), with torchvision's MD5 checks switched off."""
    import pickle

    from torchvision.datasets import cifar

    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    with open(d / "test_batch", "wb") as f:
        pickle.dump({"data": pixels.reshape(n, -1), "labels": labels}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(data.CIFAR10_CLASSES)}, f)
    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)
    return pixels


@pytest.mark.parametrize("normalize", [True, False])
def test_cifar10_tensors_from_torchvision_copy(tmp_path, monkeypatch, normalize):
    pixels = _fake_torchvision_copy(tmp_path, monkeypatch)
    ds = data.cifar10(root=tmp_path, transform=data.cifar10_transform(normalize))
    assert ds.source.kind == "torchvision"
    X, y = data.cifar10_tensors(normalize=normalize, root=tmp_path)
    assert torch.equal(X, torch.stack([ds[i][0] for i in range(len(ds))]))
    assert y.tolist() == list(ds.targets)
    expected = torch.from_numpy(pixels).float() / 255  # N x C x H x W, as the pickles store it
    torch.testing.assert_close(data.unnormalize(X) if normalize else X, expected, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- chapter 5 without data


def test_chapter5_stops_at_its_first_data_cell_with_the_how_to_message(tmp_path, monkeypatch, capsys, refused_url):
    """Run chapter 5's code cells in order where no copy of CIFAR-10 exists and the network is down (the download
    address is a refused loopback port): the first cell that loads data must fail with convlib.data's
    DataNotFoundError (which says why the download failed and how to get the data), and no earlier cell may fail."""
    import json

    notebook = Path(__file__).resolve().parents[1] / "chapters" / "05_cifar10.ipynb"
    cells = ["".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    monkeypatch.setenv("CONVLIB_DATA", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("CONVLIB_CIFAR10_URL", refused_url)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setattr(data, "_REPO_DATA", tmp_path / "repo" / "data")  # a checkout without data/
    (tmp_path / "chapters").mkdir()
    monkeypatch.chdir(tmp_path / "chapters")  # ./data and ../data do not exist either
    threads = torch.get_num_threads()
    namespace: dict = {}
    try:
        for number, source in enumerate(cells):
            try:
                exec(compile(source, f"<chapter 5, code cell {number}>", "exec"), namespace)
            except data.DataNotFoundError as err:
                failed, message = number, str(err)
                break
        else:
            pytest.fail("chapter 5 ran to the end without data")
    finally:
        torch.set_num_threads(threads)
    first_data_cell = next(i for i, s in enumerate(cells) if "convlib.data.cifar10(" in s)
    assert failed == first_data_cell
    assert "CIFAR-10 was not found" in message and "make data" in message and "CONVLIB_DATA" in message
    assert str(tmp_path / "nothing-here") in message  # it lists where it looked
    assert f"downloading it failed: {refused_url}" in message and "\n" not in message  # why; one paragraph
