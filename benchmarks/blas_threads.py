"""Does a generated training step gain from more BLAS threads, and from what size on?

``python -m symprop.benchmarks.blas_threads`` times the fused step (``sgd_step_kernel``) of
networks of growing size with its BLAS (the library numba's ``np.dot`` calls) held to one
thread and then at every usable core, interleaved round by round in one process, and prints
the speed-up of each. Training keeps BLAS at one thread by default (``--blas-threads``); this script is how a
size from which more threads pay is to be measured. Run it on a quiet machine: threads that wait for a busy core make
more threads look slower than they are.
"""
from __future__ import annotations

import argparse
import os
import sys

from .bench import Case, fmt_time, make_data, numba_blas, time_round_robin, usable_cores

SIZES = [  # (sizes, batch): from a minibatch of a small MLP to the largest bench case
    ((784, 50, 10), 32), ((784, 100, 10), 100), ((784, 256, 10), 100), ((784, 512, 10), 256),
    ((784, 1024, 10), 256), ((784, 1024, 10), 1024),
]


def measure(repeats: int = 9, sample_s: float = 0.02, dtype: str = "float32", sizes=tuple(SIZES)) -> list[dict]:
    from symprop.codegen.network import load_network

    cores = usable_cores()
    # the OpenBLAS numba's np.dot calls (SciPy's): selected only once it is loaded, which
    # numba_blas makes sure of (selected earlier, it was missed and both variants ran on
    # the library's default threads)
    blas = numba_blas()

    current = {"threads": None}

    def at(threads, kernel, args):
        """The step with every BLAS at ``threads``. Setting the count can rebuild OpenBLAS's
        pool, so it changes only when the other variant ran last: in the untimed call that
        time_round_robin makes before each sample."""
        def call():
            if current["threads"] != threads:
                for lib in blas:
                    lib.set_num_threads(threads)
                current["threads"] = threads
            kernel(*args)
        return call

    rows = []
    for widths, batch in sizes:
        case = Case(widths, batch, "relu", dtype)
        net = load_network(case.spec)
        params, X, T = make_data(case)
        args = (*[p.copy() for p in params], X, T, case.lr)
        timings = time_round_robin({1: at(1, net.sgd_step_kernel, args), cores: at(cores, net.sgd_step_kernel, args)},
                                   repeats, 2, sample_s, 0.01)
        single, multi = timings[1].median, timings[cores].median
        rows.append({"case": case.name, "matrix_flop": case.matrix_flop, "one_thread_s": single,
                     "all_cores_s": multi, "speedup": single / multi, "cores": cores})
        print(f"{case.name:<28}{case.matrix_flop / 1e6:>10.1f} MFLOP   1 thread {fmt_time(single):>9}   "
              f"{cores} threads {fmt_time(multi):>9}   speed-up {single / multi:.2f}x", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symprop.benchmarks.blas_threads", description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    if usable_cores() < 2:
        print("one usable core: nothing to compare")
        return 0
    print(f"load average {os.getloadavg()[0]:.1f} on {usable_cores()} usable cores (a busy machine understates threads)")
    measure(args.repeats, dtype=args.dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
