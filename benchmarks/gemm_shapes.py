"""GFLOP/s of one matrix product at the shapes the bench's steps multiply, by each BLAS in
reach: numba's np.dot (the OpenBLAS SciPy ships), the generated kernels' _gemm (MKL's gemm
where MKL is installed, else that same OpenBLAS) and PyTorch's torch.mm (MKL, built in) where
PyTorch is installed. One thread each, the best of 7 blocks of about 0.1 s; run it pinned.

    taskset -c 0 python -m symprop.benchmarks.gemm_shapes [--dtype float64]

Why the kernels call MKL where it is installed: the small products of a sequence step, a
batch of 32 rows at a time, are where OpenBLAS falls furthest behind.
"""
from __future__ import annotations

import argparse
import os
import sys

for _variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # before numpy, MKL or torch load their pools

import numba  # noqa: E402
import numpy as np  # noqa: E402

from symprop.generated.layers import GEMM_BLAS, _gemm  # noqa: E402

from .timing import best_of  # noqa: E402

# (rows, inner, columns): the LSTM's per-step products (hidden 256 and 128, batch 32), an
# attention head's (T 64, width 128), batch norm + Adam's X W1 (batch 100), a conv image's
# im2col product (30 filters of 5 x 5 over 24 x 24), and the GEMM peak's shape
SHAPES = [(32, 256, 1024), (32, 1024, 256), (32, 128, 512), (32, 512, 128), (64, 128, 128), (64, 64, 32),
          (100, 784, 100), (784, 100, 100), (30, 25, 576), (1024, 784, 1024)]


@numba.njit
def _numba_dot(a, b, out, repeats):
    for _ in range(repeats):
        np.dot(a, b, out)


@numba.njit
def _kernels_gemm(a, b, out, repeats):
    for _ in range(repeats):
        _gemm(a, b, out, False, False, False)


def _gflops(call, flop: float) -> float:
    return flop / (best_of(call, 7) / 1e3) / 1e9


def measure(dtype: str = "float32", shapes=SHAPES) -> list[dict]:
    """One row per shape: GFLOP/s of each BLAS in reach."""
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    rows = []
    for m, k, n in shapes:
        a, b = rng.random((m, k)).astype(dtype), rng.random((k, n)).astype(dtype)
        out = np.empty((m, n), dtype)
        repeats = max(1, int(2e8 / (2 * m * k * n)))
        flop = 2.0 * m * k * n * repeats
        _numba_dot(a, b, out, 1)
        _kernels_gemm(a, b, out, 1)
        row = {"shape": (m, k, n), "numba np.dot": _gflops(lambda: _numba_dot(a, b, out, repeats), flop),
               f"_gemm ({GEMM_BLAS})": _gflops(lambda: _kernels_gemm(a, b, out, repeats), flop)}
        if torch is not None:
            ta, tb, tout = (torch.from_numpy(x) for x in (a, b, out))

            def torch_mm():
                for _ in range(repeats):
                    torch.mm(ta, tb, out=tout)
            row["torch.mm"] = _gflops(torch_mm, flop)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symprop.benchmarks.gemm_shapes", description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args(argv)
    rows = measure(args.dtype)
    columns = [key for key in rows[0] if key != "shape"]
    print(f"GFLOP/s, {args.dtype}, one thread; the kernels' _gemm calls {GEMM_BLAS}'s gemm")
    print(f"{'rows x inner x columns':>24}" + "".join(f"{c:>18}" for c in columns))
    for row in rows:
        print(f"{' x '.join(map(str, row['shape'])):>24}" + "".join(f"{row[c]:18.1f}" for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
