"""Where MNIST and Fashion-MNIST come from: ``symprop data NAME`` downloads their four IDX files
into a cache folder, checks each file's SHA-256, and ``symprop train --data NAME`` reads them
from there.

The mirrors are the ones torchvision and other libraries download from; the checksums are
the published SHA-256 of each .gz file, so the same files fetched from any mirror (or by hand)
pass. A file is written under a temporary name in the same folder and renamed into place only
after its checksum matched, so an interrupted, truncated or corrupted download never leaves a
file that looks complete.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from symprop.symbolic.errors import SympropError

MAX_DOWNLOAD_BYTES = 64 * 2**20  # Fashion-MNIST's largest file has 26 MB
CHUNK = 2**16
TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Source:
    title: str
    mirrors: tuple[str, ...]
    sha256: dict[str, str]  # file name -> SHA-256 of the file as the mirrors serve it


SOURCES = {
    "mnist": Source(
        "MNIST handwritten digits (LeCun, Cortes and Burges)",
        ("https://ossci-datasets.s3.amazonaws.com/mnist/",
         "https://storage.googleapis.com/cvdf-datasets/mnist/",
         "http://yann.lecun.com/exdb/mnist/"),
        {"train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
         "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
         "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
         "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"}),
    "fashion-mnist": Source(
        "Fashion-MNIST clothing images (Zalando Research)",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {"train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
         "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
         "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
         "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf"}),
}


def data_root() -> Path:
    """$SYMPROP_DATA, or the user's cache folder ($XDG_CACHE_HOME or ~/.cache) / symprop / data."""
    if os.environ.get("SYMPROP_DATA"):
        return Path(os.environ["SYMPROP_DATA"])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "symprop" / "data"


def data_folder(name: str) -> Path:
    """Where ``symprop data NAME`` writes and ``symprop train --data NAME`` looks."""
    return data_root() / name


def where_to_get(name: str) -> str:
    """How to get a data set: the command, or the files, their checksums and where they go."""
    source = SOURCES[name]
    width = max(map(len, source.sha256))
    files = "\n".join(f"  {file:<{width}}  sha256 {digest}" for file, digest in source.sha256.items())
    return (f"get it with: symprop data {name}\n"
            f"or, without a network here, download these files from {source.mirrors[0]} (or another "
            f"mirror)\non a machine that has one, check their SHA-256, and put them in {data_folder(name)}:\n"
            f"{files}\nor pass --data-dir with a folder that holds them (gzipped or not)")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(name: str, folder: str | Path | None = None, mirrors: tuple[str, ...] | None = None,
             say=lambda line: print(line, file=sys.stderr, flush=True)) -> Path:
    """Fetch the data set's files that are not already in folder (checked by SHA-256) and
    return the folder. ``mirrors``: base URLs to try in order instead of the usual ones."""
    if name not in SOURCES:
        raise SympropError(f"unknown data set {name!r}; symprop data knows {', '.join(SOURCES)}")
    source = SOURCES[name]
    folder = Path(folder) if folder is not None else data_folder(name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SympropError(f"cannot create the data folder {folder} ({exc.strerror or exc}); "
                           "set SYMPROP_DATA to a writable folder") from None
    for file, digest in source.sha256.items():
        target = folder / file
        if target.is_file() and sha256_of(target) == digest:
            say(f"{target}: already there, checksum ok")
            continue
        problems = []
        for mirror in mirrors or source.mirrors:
            url = mirror.rstrip("/") + "/" + file
            try:
                size = _fetch(url, target, digest)
            except _Failed as exc:
                problems.append(f"{url}: {exc}")
                say(f"{url}: {exc}")
                continue
            say(f"{target}: {size:,} bytes from {url}, checksum ok")
            break
        else:
            raise SympropError(f"could not download {file} of {name} ({'; '.join(problems)})\n"
                               + where_to_get(name))
    return folder


class _Failed(Exception):
    """One mirror's attempt failed; the next mirror is tried."""


def _fetch(url: str, target: Path, digest: str) -> int:
    """Download url to target via a temporary file in the same folder; the rename happens only
    when every byte arrived and the SHA-256 matches."""
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part",
                                         delete=False)
    partial = Path(handle.name)
    try:
        with handle:
            size, sha = _copy(url, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if sha != digest:
            raise _Failed(f"checksum mismatch: sha256 {sha}, expected {digest} (a corrupted or different file)")
        os.replace(partial, target)
        return size
    finally:
        partial.unlink(missing_ok=True)


def _copy(url: str, out) -> tuple[int, str]:
    """(bytes written, their SHA-256); a short read, a refusal or an oversized file is _Failed."""
    digest, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            announced = response.headers.get("Content-Length")
            if announced is not None and int(announced) > MAX_DOWNLOAD_BYTES:
                raise _Failed(f"announces {int(announced):,} bytes, more than the {MAX_DOWNLOAD_BYTES:,} expected")
            while chunk := response.read(CHUNK):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise _Failed(f"more than the {MAX_DOWNLOAD_BYTES:,} bytes expected")
                digest.update(chunk)
                out.write(chunk)
            if announced is not None and size < int(announced):
                raise _Failed(f"truncated: {size:,} of {int(announced):,} bytes arrived")
    except urllib.error.HTTPError as exc:
        raise _Failed(f"HTTP {exc.code} {exc.reason}") from None
    except http.client.IncompleteRead as exc:
        raise _Failed(f"truncated: the connection closed after {size + len(exc.partial):,} bytes") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise _Failed(f"cannot download ({reason})") from None
    return size, digest.hexdigest()
