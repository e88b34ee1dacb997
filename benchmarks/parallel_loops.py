"""Would the generated kernels' elementwise loops gain from numba's parallel loops?

    python -m symprop.benchmarks.parallel_loops
    python -m symprop.benchmarks.parallel_loops --step     (whole steps, with BLAS threads too)

Times the loop the generated step runs after each affine product (add the bias, apply the
activation, keep both: ``z = Z[i, j] + b[j]; Z[i, j] = z; H[i, j] = relu(z)``) written with
``range`` (as generated) and with ``numba.prange`` under ``parallel=True``, interleaved round
by round in one process, at the bench's sizes, and prints the speed-up and the extra compile
time of the parallel version. The kernels keep serial loops unless this shows a gain that pays
for the compile time and survives a busy machine (see README, "Threads").

``--step`` times what ``bench --threads all`` would run: the generated matrix step of
784-1024-10 (batch 1024) with every BLAS pool at every usable core, as written and with
``numba.prange`` on its loops over the batch rows (the same module text, ``parallel=True``).
"""
from __future__ import annotations

import argparse
import time
import warnings

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


STEP_SPEC = "affine(784,1024) sigmoid affine(1024,10) softmax-cross-entropy"


def _prange_variant(source: str) -> str:
    """A network module's text with loss_and_grads_into parallel: prange on its row loops."""
    start = source.index("@jit\ndef loss_and_grads_into(")
    end = source.index("\n\n\n", start)
    body = source[start:end].replace("@jit\n", "@jit_parallel\n", 1).replace(
        "\n    for n in range(N):", "\n    for n in numba.prange(N):")
    helper = "def jit_parallel(function):\n    return jit(function, parallel=True)\n\n\n"
    return source[:start] + helper + body + source[end:]


def measure_step(spec: str = STEP_SPEC, batch: int = 1024, repeats: int = 5, dtypes=("float32", "float64")):
    """Whole matrix steps, serial loops against prange loops, BLAS and numba at every core."""
    import tempfile
    from pathlib import Path

    import numba
    from threadpoolctl import threadpool_limits

    from symprop.codegen import files
    from symprop.codegen.network import load_network

    cores = usable_cores()
    serial_module = load_network(spec)
    with tempfile.TemporaryDirectory(prefix="symprop-prange-") as folder:
        path = Path(folder) / "net_prange.py"
        path.write_text(_prange_variant(Path(serial_module.__file__).read_text()))
        with warnings.catch_warnings():  # the module says it was edited by hand: it was, here
            warnings.simplefilter("ignore")
            parallel_module = files.import_generated("net_prange", path)
        modules = {"serial": serial_module, "prange": parallel_module}
        rng = np.random.default_rng(0)
        for dtype in dtypes:
            X = rng.normal(size=(batch, serial_module.INPUT_SIZE)).astype(dtype)
            T = np.eye(serial_module.OUTPUT_SIZE, dtype=dtype)[rng.integers(0, serial_module.OUTPUT_SIZE, batch)]
            with threadpool_limits(cores):
                numba.set_num_threads(cores)
                calls, compile_s = {}, {}  # (the serial step is usually in numba's cache already)
                for name, module in modules.items():
                    params = [rng.normal(0, 0.05, shape).astype(dtype) for shape in module.PARAM_SHAPES]
                    workspace = module.make_workspace(X)
                    start = time.perf_counter()
                    module.sgd_step_into(*params, X, T, 0.0, *workspace)
                    compile_s[name] = time.perf_counter() - start
                    calls[name] = (lambda m=module, p=params, w=workspace: m.sgd_step_into(*p, X, T, 0.0, *w))
                timings = time_round_robin(calls, repeats, 1, 0.2, 0.2)
            one, many = timings["serial"].median, timings["prange"].median
            print(f"{spec} batch {batch} {dtype}, {cores} BLAS and numba threads: serial loops {fmt_time(one)}, "
                  f"prange loops {fmt_time(many)} ({one / many:.2f}x); compiling the prange step took "
                  f"{compile_s['prange']:.1f} s", flush=True)


def main(argv=None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m symprop.benchmarks.parallel_loops",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--step", action="store_true", help="whole 784-1024-10 steps, with BLAS threads too")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.1f} on {usable_cores()} usable cores (a busy machine understates threads)")
    if args.step:
        measure_step()
    else:
        measure(args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
