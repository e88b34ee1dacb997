"""symprop data: the IDX files from a mirror (here an HTTP server on 127.0.0.1; no test reaches
the network), checked by SHA-256, written atomically, and found by symprop train --data."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest

from symprop.cli import main
from symprop.symbolic.errors import SympropError
from symprop.training import download as dl
from symprop.training.datasets import load_dataset


def _idx(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x0000 08 NDIM, the dimensions, the data."""
    return (bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            + array.astype(np.uint8).tobytes())


def _fake_files(rng) -> dict[str, bytes]:
    """Four small gzipped IDX files named as MNIST's (the real ones are not in the repository)."""
    out = {}
    for part, count in (("train", 60), ("t10k", 20)):
        labels = rng.integers(0, 10, count)
        images = rng.integers(0, 256, (count, 28, 28))
        out[f"{part}-images-idx3-ubyte.gz"] = gzip.compress(_idx(images), mtime=0)
        out[f"{part}-labels-idx1-ubyte.gz"] = gzip.compress(_idx(labels), mtime=0)
    return out


class _Mirror(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    mode = "good"  # good | corrupt (one byte changed) | truncated (half the announced bytes)
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        name = self.path.rsplit("/", 1)[-1]
        type(self).requests.append(name)
        if name not in self.files:
            self.send_error(404)
            return
        body = self.files[name]
        if self.mode == "corrupt":
            body = body[:40] + bytes([body[40] ^ 0xFF]) + body[41:]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:len(body) // 2] if self.mode == "truncated" else body)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def mirror(rng, monkeypatch, tmp_path):
    """(base URLs by mode, the served files): one loopback server per mode, and SOURCES['mnist']
    made to expect these files' checksums; SYMPROP_DATA points into tmp_path."""
    files = _fake_files(rng)
    monkeypatch.setitem(dl.SOURCES, "mnist", dataclasses.replace(
        dl.SOURCES["mnist"], sha256={name: hashlib.sha256(data).hexdigest() for name, data in files.items()}))
    monkeypatch.setenv("SYMPROP_DATA", str(tmp_path / "data"))
    servers, urls = [], {}
    for mode in ("good", "corrupt", "truncated"):
        handler = type(f"Mirror_{mode}", (_Mirror,), {"files": files, "mode": mode, "requests": []})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        urls[mode] = (f"http://127.0.0.1:{server.server_address[1]}/mnist/", handler)
    yield urls, files
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_writes_checked_files_that_train_finds(mirror, tmp_path, capsys):
    urls, files = mirror
    assert main(["data", "mnist", "--mirror", urls["good"][0]]) == 0
    folder = tmp_path / "data" / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)  # no partial file left behind
    for name, data in files.items():
        assert (folder / name).read_bytes() == data
    assert f"ready in {folder}" in capsys.readouterr().out
    dataset = load_dataset("mnist")  # no --data-dir: the cache folder
    assert (len(dataset.x_train), len(dataset.x_test), dataset.n_features) == (60, 20, 784)
    assert main(["train", "--data", "mnist", "--net", "affine(784,10) softmax-cross-entropy", "--epochs", "1",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"MNIST in {folder}" in out
    from symprop.generated.layers import GEMM_BLAS
    assert f"(auto), products by {GEMM_BLAS}\n" in out  # the header names the BLAS the products call
    # a second run finds every file in place with its checksum and downloads nothing
    served = len(urls["good"][1].requests)
    assert main(["data", "mnist", "--mirror", urls["good"][0]]) == 0
    assert len(urls["good"][1].requests) == served
    assert capsys.readouterr().err.count("already there, checksum ok") == 4


def test_a_corrupted_mirror_is_skipped_for_the_next_one(mirror, tmp_path, capsys):
    urls, files = mirror
    folder = dl.download("mnist", tmp_path / "here", (urls["corrupt"][0], urls["good"][0]))
    assert all((folder / name).read_bytes() == data for name, data in files.items())
    err = capsys.readouterr().err
    assert err.count("checksum mismatch") == 4 and err.count("checksum ok") == 4


@pytest.mark.parametrize("mode, problem", [("corrupt", "checksum mismatch: sha256 "),
                                           ("truncated", "truncated")])
def test_a_bad_download_leaves_no_file_and_says_why(mirror, tmp_path, mode, problem):
    urls, _ = mirror
    folder = tmp_path / "data" / "mnist"
    with pytest.raises(SympropError, match=f"could not download train-images-idx3-ubyte.gz of mnist .*{problem}"):
        dl.download("mnist", mirrors=(urls[mode][0],), say=lambda line: None)
    assert list(folder.iterdir()) == []  # neither the bad file nor its temporary


def test_a_wrong_file_in_the_cache_is_downloaded_again(mirror, tmp_path):
    urls, files = mirror
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the labels")
    dl.download("mnist", mirrors=(urls["good"][0],), say=lambda line: None)
    assert (folder / "t10k-labels-idx1-ubyte.gz").read_bytes() == files["t10k-labels-idx1-ubyte.gz"]


def test_offline_the_message_names_the_files_their_checksums_and_the_folder(mirror, tmp_path, capsys):
    urls, files = mirror
    unreachable = f"http://127.0.0.1:{_unused_port()}/"
    assert main(["data", "mnist", "--mirror", unreachable]) == 2
    err = capsys.readouterr().err
    assert "could not download train-images-idx3-ubyte.gz of mnist" in err and "cannot download" in err
    folder = tmp_path / "data" / "mnist"
    assert f"put them in {folder}" in err and "--data-dir" in err
    for name, data in files.items():
        assert f"{name}  sha256 {hashlib.sha256(data).hexdigest()}" in err.replace("   ", "  ").replace("   ", "  ")
    # and train without the files says the same
    assert main(["train", "--data", "mnist"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("symprop: error: MNIST is not downloaded yet") and "symprop data mnist" in err


def test_the_cache_folder_is_symprop_data_or_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMPROP_DATA", str(tmp_path / "d"))
    assert dl.data_folder("fashion-mnist") == tmp_path / "d" / "fashion-mnist"
    monkeypatch.delenv("SYMPROP_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert dl.data_folder("mnist") == tmp_path / "c" / "symprop" / "data" / "mnist"


def test_fashion_mnist_is_read_from_a_folder_as_mnist_is(tmp_path, rng):
    for name, data in _fake_files(rng).items():  # --data-dir takes the files gzipped or not
        (tmp_path / name.removesuffix(".gz")).write_bytes(gzip.decompress(data))
    dataset = load_dataset("fashion-mnist", tmp_path)
    assert dataset.name == "fashion-mnist" and dataset.description.startswith("Fashion-MNIST in")
    assert (len(dataset.x_train), len(dataset.x_test)) == (60, 20)


def test_the_published_checksums_are_sha256_hex_of_four_files_each():
    for source in dl.SOURCES.values():
        assert sorted(source.sha256) == sorted(f"{p}-{k}-ubyte.gz" for p in ("train", "t10k")
                                               for k in ("images-idx3", "labels-idx1"))
        assert all(len(d) == 64 and int(d, 16) >= 0 for d in source.sha256.values())
        assert all(m.startswith(("https://", "http://")) and m.endswith("/") for m in source.mirrors)
