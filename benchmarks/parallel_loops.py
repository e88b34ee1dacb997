"""Would the generated kernels' elementwise loops gain from numba's parallel loops?

    python -m symprop.benchmarks.parallel_loops

Times the loop the generated step runs after each affine product (add the bias, apply the
activation, keep both: ``z = Z[i, j] + b[j]; Z[i, j] = z; H[i, j] = relu(z)``) written with
``range`` (as generated) and with ``numba.prange`` under ``parallel=True``, interleaved round
by round in one process, at the bench's sizes, and prints the speed-up and the extra compile
time of the parallel version. The kernels keep serial loops unless this shows a gain that pays
for the compile time and survives a busy machine (see README, "Threads").
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from .bench import fmt_time, time_round_robin, usable_cores

SIZES = [(32, 50), (100, 100), (256, 512), (1024, 1024)]  # (batch, features) after an affine layer


def _bias_relu(loop):
    def bias_relu(Z, b, H):
        rows, cols = Z.shape
        for i in loop(rows):
            for j in range(cols):
                z = Z[i, j] + b[j]
                Z[i, j] = z
                H[i, j] = z if z > 0 else 0.0
    return bias_relu


def compiled(parallel: bool, dtype) -> tuple:
    """(the loop compiled for 2-D arrays of dtype, compile seconds), serial or parallel."""
    import numba

    kernel = numba.njit(parallel=parallel, cache=False)(_bias_relu(numba.prange if parallel else range))
    start = time.perf_counter()
    kernel.compile((numba.typeof(np.zeros((1, 1), dtype)), numba.typeof(np.zeros(1, dtype)),
                    numba.typeof(np.zeros((1, 1), dtype))))
    return kernel, time.perf_counter() - start


def measure(repeats: int = 9, sample_s: float = 0.02, sizes=tuple(SIZES), dtypes=("float32", "float64")) -> list[dict]:
    import numba

    rows = []
    for dtype in dtypes:
        (serial, serial_compile), (parallel, parallel_compile) = compiled(False, dtype), compiled(True, dtype)
        for batch, features in sizes:
            rng = np.random.default_rng(0)
            Z, b = rng.normal(size=(batch, features)).astype(dtype), rng.normal(size=features).astype(dtype)
            H = np.empty_like(Z)
            timings = time_round_robin({"serial": lambda: serial(Z, b, H), "parallel": lambda: parallel(Z, b, H)},
                                       repeats, 2, sample_s, 0.01)
            one, many = timings["serial"].median, timings["parallel"].median
            rows.append({"dtype": dtype, "batch": batch, "features": features, "serial_s": one, "parallel_s": many,
                         "speedup": one / many, "threads": numba.get_num_threads(),
                         "extra_compile_s": parallel_compile - serial_compile})
            print(f"{dtype} {batch}x{features:<6} serial {fmt_time(one):>9}   prange on {numba.get_num_threads()} "
                  f"threads {fmt_time(many):>9}   speed-up {one / many:.2f}x   parallel compile "
                  f"+{parallel_compile - serial_compile:.2f} s", flush=True)
    return rows


def main(argv=None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m symprop.benchmarks.parallel_loops",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.1f} on {usable_cores()} usable cores (a busy machine understates threads)")
    measure(args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
