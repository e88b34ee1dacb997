"""Where a two-layer network's training step spends its time: the whole step against its five
matrix products alone (the same np.dot calls, on the same workspace), and both against one
np.dot of the GEMM-peak shape. Interleaved rounds, so a change in the machine's load hits all
three alike.

    python -m symprop.benchmarks.breakdown                      # 784-1024-10, batch 1024, float32, relu
    python -m symprop.benchmarks.breakdown --hidden 100 --batch 100 --dtype float64

This is how the README's statement "the products alone run at 0.83-0.87 of the peak" is
measured; `symprop bench` times whole steps only.
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS: one thread, as bench --threads 1

import numba  # noqa: E402
import numpy as np  # noqa: E402


@numba.njit
def _products(X, W1, W2, z1, h1, z2, dz2, dW2, dh1, dz1, dW1):
    """The step's matrix products, as the generated kernel calls them (no gradient for X)."""
    np.dot(X, W1, z1)
    np.dot(h1, W2, z2)
    np.dot(h1.T, dz2, dW2)
    np.dot(dz2, W2.T, dh1)
    np.dot(X.T, dz1, dW1)


def measure(inputs=784, hidden=1024, outputs=10, batch=1024, dtype="float32", activation="relu",
            rounds=9, seed=0) -> dict:
    """Median seconds per call of the step, its products and the peak GEMM, and the ratios."""
    from symprop.codegen.network import load_network
    spec = f"affine({inputs},{hidden}) {activation} affine({hidden},{outputs}) softmax-cross-entropy"
    net = load_network(spec)
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype).type
    X = rng.normal(size=(batch, inputs)).astype(dt)
    T = np.eye(outputs, dtype=dt)[rng.integers(0, outputs, batch)]
    params = [(rng.normal(size=s) * 0.03).astype(dt) for s in net.PARAM_SHAPES]
    workspace = net.make_workspace(X)
    into = getattr(net.loss_and_grads_into, "py_func", net.loss_and_grads_into)
    names = list(inspect.signature(into).parameters)[len(net.PARAM_NAMES) + 2:]  # after params, X, T
    b = dict(zip(names, workspace))
    peak_a = rng.normal(size=(1024, 784)).astype(dt)
    peak_b = rng.normal(size=(784, 1024)).astype(dt)
    peak_out = np.empty((1024, 1024), dt)
    calls = {
        "step": lambda: net.sgd_step_into(*params, X, T, 0.0, *workspace),  # lr 0: the same step each time
        "products": lambda: _products(X, params[0], params[2], b["z1"], b["h1"], b["z2"], b["dz2"], b["dW2"],
                                      b["dh1"], b["dz1"], b["dW1"]),
        "peak": lambda: np.dot(peak_a, peak_b, out=peak_out),  # numpy's, as symprop bench measures the peak
    }
    for call in calls.values():
        call()
    samples = {name: [] for name in calls}
    repeat = max(1, int(0.02 / max(1e-7, _once(calls["step"]))))
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(repeat if name != "peak" else 3):
                call()
            samples[name].append((time.perf_counter() - start) / (repeat if name != "peak" else 3))
    median = {name: float(np.median(s)) for name, s in samples.items()}
    flop = 2 * batch * (2 * inputs * hidden + 3 * hidden * outputs)
    peak_gflops = 2 * 1024 * 784 * 1024 / median["peak"] / 1e9
    return {"spec": spec, "batch": batch, "dtype": dtype, "median_s": median, "peak_gflops": peak_gflops,
            "step_of_peak": flop / median["step"] / 1e9 / peak_gflops,
            "products_of_peak": flop / median["products"] / 1e9 / peak_gflops,
            "products_share_of_step": median["products"] / median["step"]}


def _once(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symprop.benchmarks.breakdown", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    r = measure(hidden=args.hidden, batch=args.batch, dtype=args.dtype, activation=args.activation,
                rounds=args.rounds)
    m = r["median_s"]
    print(f"{r['spec']}, batch {r['batch']}, {r['dtype']} (OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']})")
    print(f"  whole step      {m['step'] * 1e3:9.3f} ms   {r['step_of_peak']:.2f} of the GEMM peak")
    print(f"  products alone  {m['products'] * 1e3:9.3f} ms   {r['products_of_peak']:.2f} of the GEMM peak"
          f"   ({r['products_share_of_step']:.0%} of the step)")
    print(f"  GEMM peak       {r['peak_gflops']:9.1f} GFLOP/s (np.dot 1024x784 by 784x1024, same rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
