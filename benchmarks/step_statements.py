"""Where a network's training step spends its time, statement by statement: each top-level
statement of the generated sgd_step_into run alone on the step's own workspace, the whole step,
the step's matrix products alone (as its layers' ops list them, ``breakdown.products_call``, the
bench's roofline) and np.dot at the GEMM-peak shape, in interleaved rounds of CPU time: the
step's distance from the GEMM peak splits into the products at its own shapes and everything
else, statement by statement.

    taskset -c 0 python -m symprop.benchmarks.step_statements          # symprop bench's conv network
    taskset -c 0 python -m symprop.benchmarks.step_statements --spec "affine(784,100) relu affine(100,10) softmax-cross-entropy" --dtype float64

One BLAS thread (set before numpy loads). The statements are compiled into one kernel that runs
the one it is asked for (one compile, not one per statement), after the step's local names
(N, real, a view such as f1 = pool1) are set as the step sets them. A statement alone finds its
arrays in cache more often than inside the step, so the statements add up to less than the step:
the difference is printed too.
"""
from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS: one thread, as bench --threads 1

import numba  # noqa: E402
import numpy as np  # noqa: E402

CONVNET = ("input(1,28,28) conv2d(1,30,5) relu maxpool(2) flatten affine(4320,100) relu affine(100,10) "
           "softmax-cross-entropy")  # symprop bench --only convnet
LOCAL_NAME = re.compile(r"^    [A-Za-z_]\w* = ")  # a statement that only names a value (N, real, f1 = pool1)


def step_statements(net) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(the step's lines that name local values, [(label, lines) of each other top-level
    statement]), read from sgd_step_into's source."""
    source = inspect.getsource(net.sgd_step_into.py_func)
    body = source.split('"""', 2)[2].splitlines()[1:]  # after the docstring
    setup, statements = [], []
    for line in body:
        if not line.strip() or line.strip().startswith("#") or line.strip().startswith("return "):
            continue
        if line.startswith("     "):  # nested under the statement before
            statements[-1].append(line)
        elif LOCAL_NAME.match(line):
            setup.append(line)
        else:
            statements.append([line])
    return setup, [(_label(lines), lines) for lines in statements]


def _label(lines: list[str]) -> str:
    """A statement's first line; for a loop nest, the first line inside it that is not a loop."""
    inside = [line.strip() for line in lines if not line.strip().startswith("for ")]
    text = f"loop: {inside[0]}" if lines[0].strip().startswith("for ") and inside else lines[0].strip()
    return text.split("  #")[0]


def statement_kernel(net):
    """(labels, kernel): kernel(which, *the step's arguments) runs statement `which` alone."""
    setup, statements = step_statements(net)
    parameters = str(inspect.signature(net.sgd_step_into.py_func))[1:-1]
    branches, labels = [], []
    for label, lines in statements:
        branches += [f"    {'if' if not labels else 'elif'} which == {len(labels)}:", *("    " + line for line in lines)]
        labels.append(label)
    text = "\n".join([f"def _statement(which, {parameters}):", *setup, *branches, "    return 0", ""])
    namespace = dict(vars(net))
    exec(text, namespace)
    return labels, numba.njit(namespace["_statement"])


def measure(spec: str = CONVNET, batch: int = 100, dtype: str = "float32", rounds: int = 11, seed: int = 0) -> dict:
    """Median CPU seconds per call of each statement alone, of the step and of the peak GEMM."""
    from symprop.codegen.network import load_network
    from .breakdown import products_call, step_products
    net = load_network(spec)
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype).type
    X = rng.random((batch, net.INPUT_SIZE)).astype(dt)
    T = np.eye(net.OUTPUT_SIZE, dtype=dt)[rng.integers(0, net.OUTPUT_SIZE, batch)]
    params = [(rng.normal(size=shape) * 0.05).astype(dt) for shape in net.PARAM_SHAPES]
    arguments = (*params, X, T, 0.0, *net.make_workspace(X))  # lr 0: the same step each time
    labels, kernel = statement_kernel(net)
    peak_a, peak_b = rng.normal(size=(1024, 784)).astype(dt), rng.normal(size=(784, 1024)).astype(dt)
    peak_out = np.empty((1024, 1024), dt)
    calls = {label: (lambda which=which: kernel(which, *arguments)) for which, label in enumerate(labels)}
    products = step_products(spec, batch)
    calls["whole step"] = lambda: net.sgd_step_into(*arguments)
    calls["products alone"] = products_call(products, dtype, seed)
    calls["peak"] = lambda: np.dot(peak_a, peak_b, out=peak_out)  # numpy's, as symprop bench measures the peak
    for call in calls.values():
        call()
    samples = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            repeat = 3
            start = time.process_time()
            for _ in range(repeat):
                call()
            samples[name].append((time.process_time() - start) / repeat)
    median = {name: float(np.median(s)) for name, s in samples.items()}
    peak_gflops = 2 * 1024 * 784 * 1024 / median["peak"] / 1e9
    flop = sum(p.flop for p in products)
    alone = median["products alone"]
    return {"spec": spec, "batch": batch, "dtype": dtype, "median_s": median, "statements": labels,
            "peak_gflops": peak_gflops, "matrix_flop": flop,
            "step_of_peak": flop / median["whole step"] / 1e9 / peak_gflops,
            "products_s": alone, "products_of_peak": flop / alone / 1e9 / peak_gflops if products else None,
            "statements_s": sum(median[label] for label in labels)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symprop.benchmarks.step_statements",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=CONVNET)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args(argv)
    r = measure(args.spec, args.batch, args.dtype, args.rounds)
    m, step = r["median_s"], r["median_s"]["whole step"]
    print(f"{r['spec']}, batch {r['batch']}, {r['dtype']}, CPU time, medians of {args.rounds} rounds "
          f"(OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, load average {os.getloadavg()[0]:.1f})")
    for label in r["statements"]:
        print(f"  {m[label] * 1e3:8.3f} ms {m[label] / step:6.1%}  {label[:90]}")
    print(f"  {step * 1e3:8.3f} ms          whole step: {r['step_of_peak']:.0%} of the GEMM peak "
          f"({r['matrix_flop'] / 1e6:.1f} MFLOP of matrix products)")
    print(f"  {r['statements_s'] * 1e3:8.3f} ms          the statements alone, added up")
    if r["products_of_peak"]:
        print(f"  {r['products_s'] * 1e3:8.3f} ms          the matrix products alone at the step's shapes: "
              f"{r['products_of_peak']:.0%} of the GEMM peak")
    print(f"  GEMM peak {r['peak_gflops']:.1f} GFLOP/s (np.dot 1024x784 by 784x1024, same rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
