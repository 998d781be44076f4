"""convlib.data fetches CIFAR-10 when no copy is found: for real, over HTTP, from a server on 127.0.0.1.

A small archive in CIFAR-10's own format (``cifar-10-python.tar.gz`` holding ``cifar-10-batches-py/`` with the
five training batches, the test batch and ``batches.meta``, a few images each) is served by ``http.server`` in a
thread; ``CONVLIB_CIFAR10_URL`` and ``CONVLIB_CIFAR10_MD5`` point torchvision's downloader at it. No test here
reaches anything but the loopback: an autouse fixture points the download at a refused loopback port unless a test
serves an archive itself.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from convlib import data

PER_BATCH = 3  # images in each of the six batches


@contextlib.contextmanager
def refused_address():
    """An address on the loopback where nothing listens (the port stays bound, so nothing else can take it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/cifar-10-python.tar.gz"


@pytest.fixture
def refused_url():
    with refused_address() as url:
        yield url


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch, refused_url, tmp_path):
    """No proxy, no copy anywhere, downloads into tmp_path/repo/data, and the download address refused."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    for var in ("CONVLIB_DATA", "CONVLIB_CIFAR10_MD5"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CONVLIB_CIFAR10_URL", refused_url)
    monkeypatch.setattr(data, "_REPO_DATA", tmp_path / "repo" / "data")  # a checkout without a copy
    (tmp_path / "work" / "chapters").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work" / "chapters")  # ./data and ../data do not exist either


def _batch(rng, n: int) -> dict:
    return {
        "data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
        "labels": [int(v) for v in rng.integers(0, 10, n)],
    }


def _archive_bytes(batches: dict[str, dict], meta: bool = True) -> bytes:
    """``cifar-10-python.tar.gz`` as the original lays it out: pickled dicts under ``cifar-10-batches-py/``."""
    members = {name: pickle.dumps(batch) for name, batch in batches.items()}
    if meta:
        members["batches.meta"] = pickle.dumps({"label_names": list(data.CIFAR10_CLASSES)})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


@pytest.fixture
def batches():
    rng = np.random.default_rng(7)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {name: _batch(rng, PER_BATCH) for name in names}


class _Server:
    """Serves one folder on 127.0.0.1 in a thread and records the path of every request."""

    def __init__(self, folder: Path):
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=folder))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cifar-10-python.tar.gz"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve(tmp_path, monkeypatch):
    """``serve(payload, md5=None)``: serve ``payload`` as the archive; the environment names it and its MD5 sum
    (``md5`` overrides the sum: the one a good archive would have)."""
    servers = []

    def start(payload: bytes, md5: str | None = None) -> _Server:
        folder = tmp_path / f"served{len(servers)}"
        folder.mkdir()
        (folder / "cifar-10-python.tar.gz").write_bytes(payload)
        server = _Server(folder)
        servers.append(server)
        monkeypatch.setenv("CONVLIB_CIFAR10_URL", server.url)
        monkeypatch.setenv("CONVLIB_CIFAR10_MD5", md5 or hashlib.md5(payload).hexdigest())
        return server

    yield start
    for server in servers:
        server.close()


def _pixels(batch) -> torch.Tensor:
    return torch.from_numpy(batch["data"].reshape(-1, 3, 32, 32)).float() / 255


# ---------------------------------------------------------------- the defaults


def test_defaults_are_torchvisions_archive():
    from torchvision import datasets

    assert data.CIFAR10_URL == datasets.CIFAR10.url
    assert data.CIFAR10_MD5 == datasets.CIFAR10.tgz_md5
    assert data._ARCHIVE == datasets.CIFAR10.filename
    files = [name for name, _ in datasets.CIFAR10.train_list + datasets.CIFAR10.test_list]
    assert set(data._BATCHES) == {*files, datasets.CIFAR10.meta["filename"]}


def test_importing_convlib_data_does_not_import_torchvision():
    src = Path(__file__).resolve().parents[1] / "src"
    code = "import sys, convlib.data; print(sorted(m for m in ('torchvision', 'PIL') if m in sys.modules))"
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- fetched when missing


def test_missing_copy_is_downloaded_verified_and_loaded(serve, batches, capsys):
    server = serve(_archive_bytes(batches))
    repo_data = data._REPO_DATA
    ds = data.cifar10(transform=None)  # chapter 5's call: no root, nothing anywhere
    assert "downloading it into" in capsys.readouterr().err
    assert ds.source == data.CIFAR10Source("torchvision", repo_data)
    assert server.requests and set(server.requests) == {"/cifar-10-python.tar.gz"}
    # only the checked, unpacked batches stay: no archive, no temporary folder
    assert sorted(p.name for p in repo_data.iterdir()) == ["cifar-10-batches-py"]
    assert sorted(p.name for p in (repo_data / "cifar-10-batches-py").iterdir()) == sorted(data._BATCHES)

    X, y = data.cifar10_tensors(normalize=False)
    assert torch.equal(X, _pixels(batches["test_batch"]))
    assert y.tolist() == batches["test_batch"]["labels"] == list(ds.targets)
    X_train, y_train = data.cifar10_tensors(train=True, normalize=False)
    names = [f"data_batch_{i}" for i in range(1, 6)]
    assert torch.equal(X_train, torch.cat([_pixels(batches[n]) for n in names]))
    assert y_train.tolist() == sum((batches[n]["labels"] for n in names), [])

    before = len(server.requests)
    assert data.cifar10().source == ds.source  # found now: nothing downloaded again
    assert len(server.requests) == before


def test_downloaded_copy_found_through_convlib_data(serve, batches, tmp_path, monkeypatch):
    """The pickled copy is one of the two forms $CONVLIB_DATA may name."""
    serve(_archive_bytes(batches))
    shared = tmp_path / "shared"
    src = data.download_cifar10(shared)
    assert src == data.CIFAR10Source("torchvision", shared)
    monkeypatch.setenv("CONVLIB_DATA", str(shared))
    monkeypatch.setenv("CONVLIB_CIFAR10_URL", "http://127.0.0.1:9/never-asked")
    ds = data.cifar10()
    assert ds.source == src and len(ds) == PER_BATCH


def test_explicit_root_is_only_looked_in(serve, batches, tmp_path):
    server = serve(_archive_bytes(batches))
    with pytest.raises(data.DataNotFoundError, match="CIFAR-10 was not found"):
        data.cifar10(root=tmp_path / "empty")
    with pytest.raises(data.DataNotFoundError, match="CIFAR-10 was not found"):
        data.cifar10(download=False)
    assert server.requests == []


def test_command_line_downloads_into_root(serve, batches, tmp_path, capsys):
    server = serve(_archive_bytes(batches))
    assert data._main(["--download", "--root", str(tmp_path / "dl")]) == 0
    assert f"CIFAR-10 (torchvision) at {tmp_path / 'dl' / 'cifar-10-batches-py'}" in capsys.readouterr().out
    n = len(server.requests)
    assert n >= 1
    assert data._main(["--download", "--root", str(tmp_path / "dl")]) == 0  # there already
    assert len(server.requests) == n
    assert data._main(["--root", str(tmp_path / "dl")]) == 0


# ---------------------------------------------------------------- rejected when wrong


def test_corrupted_archive_is_rejected_naming_the_file_and_the_fix(serve, batches, capsys):
    good = _archive_bytes(batches)
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF  # one byte flipped on the way
    good_md5, bad_md5 = hashlib.md5(good).hexdigest(), hashlib.md5(bad).hexdigest()
    server = serve(bytes(bad), md5=good_md5)
    with pytest.raises(data.ChecksumError) as err:
        data.cifar10()
    message = str(err.value)
    assert "cifar-10-python.tar.gz" in message and server.url in message
    assert f"expected {good_md5}, got {bad_md5}" in message
    assert "make data" in message and "CONVLIB_DATA" in message
    assert isinstance(err.value, RuntimeError)  # as torchvision's own integrity errors
    assert list(data._REPO_DATA.iterdir()) == []  # nothing unpacked, nothing left behind
    assert data._main(["--download"]) == 1
    assert "failed its MD5 check" in capsys.readouterr().err


def test_archive_without_the_batches_is_rejected(serve, batches):
    del batches["test_batch"]
    serve(_archive_bytes(batches))
    with pytest.raises(data.ChecksumError, match=r"unpacked without cifar-10-batches-py/\{test_batch\}"):
        data.download_cifar10()
    assert list(data._REPO_DATA.iterdir()) == []


def test_corrupted_copy_on_disk_says_how_to_fix_it(serve, batches, tmp_path, monkeypatch):
    """With the original archive configured, torchvision checks every batch's MD5 sum on load: a copy that is
    not the original (here: the small one) is refused with the folder named and the fix."""
    serve(_archive_bytes(batches))
    src = data.download_cifar10(tmp_path / "copy")
    monkeypatch.delenv("CONVLIB_CIFAR10_MD5")  # back to the original archive's sums
    with pytest.raises(data.ChecksumError) as err:
        data.cifar10(root=src.root)
    message = str(err.value)
    assert str(src.root / "cifar-10-batches-py") in message and "incomplete or corrupted" in message
    assert "Delete that folder" in message and "make data" in message and "CONVLIB_DATA" in message


# ---------------------------------------------------------------- offline


def test_offline_without_a_copy_says_both_ways_in_one_paragraph(refused_url, capsys):
    with pytest.raises(data.DataNotFoundError) as err:
        data.cifar10()
    message = str(err.value)
    assert "\n" not in message  # one paragraph
    assert "CIFAR-10 was not found" in message and str(data._REPO_DATA) in message  # where it looked
    assert f"downloading it failed: {refused_url}" in message and "refused" in message  # why the download failed
    assert "make data" in message and "CONVLIB_DATA" in message  # both ways
    assert list(data._REPO_DATA.iterdir()) == []  # no half-made copy
    assert data._main(["--download"]) == 1
    assert "CIFAR-10 was not found" in capsys.readouterr().err


def test_a_stalled_download_times_out(monkeypatch):
    """A server that accepts the connection and then says nothing: the download fails after
    DOWNLOAD_TIMEOUT_S instead of hanging, and the process-wide socket timeout is restored."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody ever answers
        monkeypatch.setenv("CONVLIB_CIFAR10_URL", f"http://127.0.0.1:{silent.getsockname()[1]}/x.tar.gz")
        monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 0.5)
        with pytest.raises(data.DataNotFoundError, match="timed out"):
            data.cifar10()
    assert socket.getdefaulttimeout() is None


# ---------------------------------------------------------------- nbval: a chapter without data


def test_nbval_skips_a_chapters_later_cells_once_data_is_missing(tmp_path):
    """chapters/conftest.py: the cell that raises DataNotFoundError fails with its message; the cells after it are
    skipped with that message as the reason (they would only fail for want of its variables); a failure for
    another reason skips nothing."""
    import shutil

    import nbformat

    root = Path(__file__).resolve().parents[1]
    folder = tmp_path / "chapters"
    folder.mkdir()
    shutil.copy(root / "chapters" / "conftest.py", folder / "conftest.py")
    cells = {
        "data": ["x = 1", "import convlib.data\nraise convlib.data.DataNotFoundError('no CIFAR-10 here')", "x + 1"],
        "other": ["x = 1", "raise ValueError('not about data')", "x + 1"],
    }
    for name, sources in cells.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{name}.ipynb")
    env = dict(os.environ, PYTHONPATH=str(root / "src"))
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "--nbval-current-env", "--nbval"]
    out = {
        name: subprocess.run([*cmd, f"{name}.ipynb"], cwd=folder, env=env, capture_output=True, text=True).stdout
        for name in cells
    }
    assert "1 failed, 1 passed, 1 skipped" in out["data"], out["data"]
    assert "CIFAR-10 is missing (cell 1 failed): no CIFAR-10 here" in out["data"]
    assert "1 failed, 2 passed" in out["other"] and "skipped" not in out["other"], out["other"]
