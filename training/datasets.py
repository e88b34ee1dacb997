"""The data sets `symprop train` knows: scikit-learn's 8x8 digits, two moons, MNIST or
Fashion-MNIST IDX files (downloaded by `symprop data`, training/download.py, or in a folder),
sequence reversal, a synthetic task for attention (a class per token), and a shipped text cut
into windows of characters (training/text.py).

Every data set comes back as raw features plus integer class labels, already split into a
training and a test part. The split is fixed (DATA_SEED), independent of the training seed,
so test accuracies of different runs are measured on the same examples. How features are
scaled is part of the data set too (`Scaling`); it is fitted on training rows only and saved
with the weights so `symprop predict` preprocesses exactly as training did.
"""
from __future__ import annotations

import gzip
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from symprop.extras import need
from symprop.symbolic.errors import SympropError
from symprop.symbolic.userfiles import open_regular, write_atomically

DATA_SEED = 0          # fixes make_moons' noise and every train/test split
NAMES = ("digits", "moons", "mnist", "fashion-mnist", "text", "reverse")
IDX_SETS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}  # data sets read from IDX files

# IDX type codes (third magic byte) -> big-endian numpy dtype
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"

MNIST_FILES = {  # part -> (images file, labels file), each optionally with .gz
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SINGLE_PAIR_TEST_FRACTION = 0.2   # one pair of MNIST files alone (e.g. t10k: 8,000 / 2,000)


@dataclass
class Scaling:
    """x -> (x - mean) / scale, per feature; fitted on training rows only."""
    mean: np.ndarray
    scale: np.ndarray

    def apply(self, x: np.ndarray, dtype) -> np.ndarray:
        return np.ascontiguousarray((x - self.mean) / self.scale, dtype=dtype)


@dataclass
class Dataset:
    name: str
    description: str
    x_train: np.ndarray      # (N, features) float64, unscaled
    y_train: np.ndarray      # (N,) int64 class labels 0..n_classes-1
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    pixel_max: float | None  # images: divide by this; None: standardise with training mean/std
    tokens: int | None = None  # a class per token: labels are (N, tokens), features tokens x (features / tokens)
    # a fixed validation part (text: its last tenth), used instead of --val-split's random rows
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def fit_scaling(self, x_train: np.ndarray) -> Scaling:
        """Images are scaled to [0, 1]; other data standardised with the training mean/std."""
        features = x_train.shape[1]
        if self.pixel_max is not None:
            return Scaling(np.zeros(features), np.full(features, float(self.pixel_max)))
        std = x_train.std(axis=0)
        return Scaling(x_train.mean(axis=0), np.where(std > 0, std, 1.0))


def load_dataset(name: str, data_dir: str | Path | None = None, net=None) -> Dataset:
    """A data set by name; ``net`` (a generated network module) only for text, whose windows
    are as long as the net reads."""
    if data_dir is not None and name not in IDX_SETS:
        raise SympropError(f"--data-dir is for --data {' or '.join(IDX_SETS)}; data set {name} is built in")
    if name == "text":
        from .text import load_text
        if net is None:
            raise SympropError("data set text is cut into windows of the length the net reads: give the net")
        return load_text(net)
    if name == "digits":
        return load_digits()
    if name == "moons":
        return load_moons()
    if name == "reverse":
        return load_reverse()
    if name in IDX_SETS:
        if data_dir is None:
            from .download import data_folder, where_to_get
            folder = data_folder(name)
            if not any(_find(folder, stem) for pair in MNIST_FILES.values() for stem in pair):
                raise SympropError(f"{IDX_SETS[name]} is not downloaded yet (no IDX files in {folder});\n"
                                   + where_to_get(name))
            data_dir = folder
        return load_mnist(data_dir, name)
    raise SympropError(f"unknown data set {name!r}; known: {', '.join(NAMES)}")


def _split(x, y, test_fraction: float, stratify: bool = True):
    train_test_split = need("sklearn.model_selection", "splitting a data set").train_test_split
    return train_test_split(x, y, test_size=test_fraction, random_state=DATA_SEED,
                            stratify=y if stratify else None)


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, pixel values 0..16): 80/20 split."""
    def build():
        bunch = need("sklearn.datasets", "the digits data set").load_digits()
        return _split(bunch.data.astype(np.float64), bunch.target.astype(np.int64), 0.2)
    x_train, x_test, y_train, y_test = _made_by_sklearn("digits", build)
    return Dataset("digits", "scikit-learn 8x8 digits", x_train, y_train, x_test, y_test,
                   n_classes=10, pixel_max=16.0)


def load_moons() -> Dataset:
    """Two moons: make_moons(2000, noise=0.4), 60% train / 40% test."""
    def build():
        make_moons = need("sklearn.datasets", "the moons data set").make_moons
        x, y = make_moons(n_samples=2000, noise=0.4, random_state=DATA_SEED)
        return _split(x.astype(np.float64), y.astype(np.int64), 0.4, stratify=False)
    x_train, x_test, y_train, y_test = _made_by_sklearn("moons", build)
    return Dataset("moons", "make_moons(2000, noise=0.4)", x_train, y_train, x_test, y_test,
                   n_classes=2, pixel_max=None)


REVERSE_TOKENS, REVERSE_SYMBOLS = 8, 8  # sequences of 8 tokens, each one of 8 symbols
REVERSE_TRAIN, REVERSE_TEST = 4000, 1000


def reverse_sequences(count: int, tokens: int = REVERSE_TOKENS, symbols: int = REVERSE_SYMBOLS,
                      seed: int = DATA_SEED) -> tuple[np.ndarray, np.ndarray]:
    """``count`` different random sequences, as features and labels: the label of position t is
    the symbol at position tokens-1-t (the sequence reversed). Each token is written as its
    symbol one-hot, then its position one-hot (symbols + tokens features): attention compares
    tokens by their contents and is blind to order, so the position it must fetch from has
    to be in the data (a fixed code rather than a learned one, the simplest honest choice)."""
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, symbols, size=(2 * count, tokens))
    _, first = np.unique(drawn, axis=0, return_index=True)  # no sequence twice, so none is in both parts
    if len(first) < count:
        raise SympropError(f"only {len(first)} different sequences of {tokens} tokens of {symbols} symbols "
                           f"were drawn; {count} are needed")
    sequences = drawn[np.sort(first)[:count]]
    features = np.zeros((count, tokens, symbols + tokens))
    rows, positions = np.arange(count)[:, None], np.arange(tokens)[None, :]
    features[rows, positions, sequences] = 1
    features[rows, positions, symbols + positions] = 1
    return features.reshape(count, -1), sequences[:, ::-1].astype(np.int64)


def load_reverse() -> Dataset:
    """Sequence reversal: 4,000 training and 1,000 different test sequences from a fixed seed."""
    x, y = reverse_sequences(REVERSE_TRAIN + REVERSE_TEST)
    return Dataset("reverse", f"sequence reversal: {REVERSE_TOKENS} tokens of {REVERSE_SYMBOLS} symbols, each "
                   f"given as its symbol one-hot then its position one-hot ({REVERSE_SYMBOLS + REVERSE_TOKENS} "
                   "features a token); the target at position t is the symbol at position T-1-t",
                   x[:REVERSE_TRAIN], y[:REVERSE_TRAIN], x[REVERSE_TRAIN:], y[REVERSE_TRAIN:],
                   n_classes=REVERSE_SYMBOLS, pixel_max=1.0, tokens=REVERSE_TOKENS)


SPLIT_PARTS = ("x_train", "x_test", "y_train", "y_test")


def _made_by_sklearn(name: str, build) -> tuple:
    """build()'s four arrays (a data set scikit-learn makes and splits), kept in symprop's cache
    after the first run: importing scikit-learn takes about 0.8 s of CPU (scipy.stats), more
    than the rest of a warm `symprop train` before its first step. The file is named by the
    scikit-learn version that made it; a cache that cannot be read is made again, one that
    cannot be written only costs the import next time."""
    from importlib import metadata

    from symprop.codegen.files import cache_root
    try:
        version = metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        return build()  # need() inside build says which extra installs it
    path = cache_root() / "datasets" / f"{name}-seed{DATA_SEED}-scikit-learn-{version}.npz"
    try:
        with np.load(path, allow_pickle=False) as saved:
            return tuple(saved[part] for part in SPLIT_PARTS)
    except (OSError, ValueError, KeyError, zlib.error, EOFError, zipfile.BadZipFile):
        pass  # not there yet, or damaged: made again below
    parts = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, "the data set cache", lambda stream: np.savez(stream, **dict(zip(SPLIT_PARTS, parts))))
    except (OSError, SympropError):
        pass
    return parts


# --------------------------------------------------------------------------------------- IDX
MAX_IDX_BYTES = 256 * 2**20  # data bytes one IDX file may announce; MNIST's largest has 47 MB


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (the MNIST format), plain or gzipped, as a numpy array in native byte order.

    Format: two zero bytes, a type code, the number of dimensions; then one big-endian uint32
    per dimension; then the data, big-endian. Anything else is reported with the file name.
    The header's shape bounds the read: a file announcing more than MAX_IDX_BYTES, or holding
    more than it announces (a gzip bomb), is refused without decompressing the rest.
    """
    path = Path(path)
    with open_regular(path, "IDX file") as handle:
        try:
            gzipped = handle.read(2) == GZIP_MAGIC
            handle.seek(0)
            stream = gzip.GzipFile(fileobj=handle, mode="rb") if gzipped else handle
            return _read_idx_stream(path, stream)
        except (OSError, EOFError, zlib.error) as exc:
            problem = "corrupt gzip data" if gzipped else "cannot read"
            raise SympropError(f"{path}: {problem} ({getattr(exc, 'strerror', None) or exc})") from None


def _read_idx_stream(path: Path, stream) -> np.ndarray:
    start = stream.read(4)
    if len(start) < 4:
        raise SympropError(f"{path}: truncated: {len(start)} bytes, too short for an IDX header")
    magic = int.from_bytes(start, "big")
    type_code, ndim = start[2], start[3]
    if start[0] != 0 or start[1] != 0 or type_code not in IDX_TYPES or ndim == 0:
        raise SympropError(f"{path}: wrong magic number 0x{magic:08X}: not an IDX file (expected "
                           "0x0000TTNN: two zero bytes, a type code TT in 08 09 0B 0C 0D 0E, "
                           "and the number of dimensions NN)")
    header = 4 + 4 * ndim
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise SympropError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, "
                           f"the file has {4 + len(dims)}")
    shape = tuple(int.from_bytes(dims[4 * i: 4 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_TYPES[type_code])
    if 0 in shape:  # no data; and numpy would refuse the other dimensions' product anyway
        raise SympropError(f"{path}: the header announces shape {shape}, with no data (a dimension of 0)")
    expected = math.prod(shape) * dtype.itemsize
    if expected > MAX_IDX_BYTES:
        raise SympropError(f"{path}: the header announces shape {shape} ({expected:,} data bytes), "
                           f"more than the {MAX_IDX_BYTES:,} symprop reads from one IDX file")
    raw = stream.read(expected + 1)
    if len(raw) < expected:
        raise SympropError(f"{path}: truncated: the header announces shape {shape} "
                           f"({expected} data bytes) but the file has only {len(raw)}")
    if len(raw) > expected:
        raise SympropError(f"{path}: unexpected bytes after the data of shape {shape}")
    data = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def _expected_files_text() -> str:
    names = [name for pair in MNIST_FILES.values() for name in pair]
    return (", ".join(f"{name}[.gz]" for name in names) +
            "; the t10k pair alone is enough (it is then split 80/20 into train and test)")


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_mnist_pair(images_path: Path, labels_path: Path):
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise SympropError(f"{images_path}: expected images of shape (count, rows, columns), "
                           f"found shape {images.shape}")
    if labels.ndim != 1:
        raise SympropError(f"{labels_path}: expected a 1-D array of labels, found shape "
                           f"{labels.shape}")
    if len(images) != len(labels):
        raise SympropError(f"{images_path} has {len(images)} images but {labels_path} has "
                           f"{len(labels)} labels")
    if labels.dtype.kind == "f":
        raise SympropError(f"{labels_path}: labels must be integers (IDX type 08, 09, 0B or 0C), "
                           f"found {labels.dtype} values")
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        bad = int(np.flatnonzero(~np.isfinite(images.reshape(-1)))[0])
        raise SympropError(f"{images_path}: pixel {bad} of the data is {images.reshape(-1)[bad]}; "
                           "pixels must be finite numbers")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise SympropError(f"{labels_path}: labels must be digits 0..9, found "
                           f"{labels.min()}..{labels.max()}")
    return images.reshape(len(images), -1).astype(np.float64), labels.astype(np.int64)


def load_mnist(data_dir: str | Path, name: str = "mnist") -> Dataset:
    """MNIST (or Fashion-MNIST: ``name``, the same files) from a folder of IDX files. Both pairs: the standard 60,000 / 10,000 split.
    One pair only (e.g. just the 10,000-image t10k set): a fixed shuffled 80/20 split of it."""
    folder = Path(data_dir)
    title = IDX_SETS[name]
    if not folder.is_dir():
        raise SympropError(f"{title} folder {folder} does not exist; expected files: "
                           f"{_expected_files_text()}")
    found = {part: tuple(_find(folder, stem) for stem in stems)
             for part, stems in MNIST_FILES.items()}
    for part, paths in found.items():
        if any(paths) and not all(paths):
            images, labels = MNIST_FILES[part]
            have, missing = (images, labels) if paths[0] else (labels, images)
            raise SympropError(f"{title} folder {folder} has {have} but not {missing}[.gz]")
    complete = [part for part, paths in found.items() if all(paths)]
    if not complete:
        raise SympropError(f"{title} folder {folder} has no {title} IDX files; expected files: "
                           f"{_expected_files_text()}")
    if len(complete) == 2:
        x_train, y_train = _read_mnist_pair(*found["train"])
        x_test, y_test = _read_mnist_pair(*found["t10k"])
        description = f"{title} in {folder} (train / t10k files)"
    else:
        x, y = _read_mnist_pair(*found[complete[0]])
        if len(x) < 10:
            raise SympropError(f"{found[complete[0]][0]}: only {len(x)} images, too few to split")
        x_train, x_test, y_train, y_test = _split(x, y, SINGLE_PAIR_TEST_FRACTION, stratify=False)
        description = (f"{title} in {folder} ({complete[0]} files only, split "
                       f"{len(x_train)} train / {len(x_test)} test)")
    if x_train.shape[1] != x_test.shape[1]:
        raise SympropError(f"{title} folder {folder}: train images have {x_train.shape[1]} pixels, "
                           f"test images {x_test.shape[1]}")
    return Dataset(name, description, x_train, y_train, x_test, y_test, n_classes=10,
                   pixel_max=255.0)
