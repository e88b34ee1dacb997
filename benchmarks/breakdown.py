"""Where a training step spends its time: the whole step against its matrix products alone
(the same BLAS calls at the same shapes and layouts, as each layer's op lists them), and both
against one np.dot of the GEMM-peak shape. Interleaved rounds, so a change in the machine's
load hits all three alike. ``symprop bench`` times the products alone in every case's rounds
with ``products_call``: the roofline a step cannot beat, since its products are part of it.

    python -m symprop.benchmarks.breakdown                      # 784-1024-10, batch 1024, float32, relu
    python -m symprop.benchmarks.breakdown --hidden 100 --batch 100 --dtype float64
    python -m symprop.benchmarks.breakdown --case convnet       # any bench case; each product's time too
"""
from __future__ import annotations

import argparse
import os
import sys

if __name__ == "__main__":  # before numpy loads OpenBLAS: one thread, as bench --threads 1
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numba  # noqa: E402
import numpy as np  # noqa: E402

from symprop.generated.layers import GEMM_BLAS, _gemm  # noqa: E402  (the kernels' product, and its BLAS)

# how a product reads its operands: as stored, or the stored array transposed (X^T dY)
AS_STORED, LEFT_T, RIGHT_T, BOTH_T = range(4)
ALIGN = 64  # bytes: each operand starts where a fresh numpy array would (its own allocation)


@numba.njit(cache=True)
def _run_products(buffer, table):
    """Each product of ``table`` (products_call's rows) ``count`` times, with the generated
    kernels' own _gemm (the BLAS they call, MKL's where installed), on operands that are blocks
    of one buffer: an operand whose step is 0 is one matrix for every repeat (a weight), else
    repeat i reads matrix i (one image's columns, one step's states)."""
    for p in range(table.shape[0]):
        left, left_step, right, right_step, out, out_step, rows, inner, columns, layout, count = table[p]
        left_transposed, right_transposed = layout in (LEFT_T, BOTH_T), layout in (RIGHT_T, BOTH_T)
        for i in range(count):
            a = buffer[left + i * left_step:left + i * left_step + rows * inner]
            b = buffer[right + i * right_step:right + i * right_step + inner * columns]
            c = buffer[out + i * out_step:out + i * out_step + rows * columns].reshape((rows, columns))
            _gemm(a.reshape((inner, rows)) if left_transposed else a.reshape((rows, inner)),
                  b.reshape((columns, inner)) if right_transposed else b.reshape((inner, columns)),
                  c, left_transposed, right_transposed, False)


def products_call(products, dtype, seed: int = 0):
    """A callable that runs ``products`` (``Op.step_products``: shapes, layouts, repeats) once,
    in one compiled call, on random operands of ``dtype`` allocated here once, each stored as
    the kernel stores it (a transposed read is of an array stored the other way round)."""
    dt = np.dtype(dtype)
    align = ALIGN // dt.itemsize
    table, size = [], 0

    def block(elements: int, repeats: int) -> tuple[int, int]:
        """(offset, step) of ``repeats`` matrices of ``elements`` each, every one aligned."""
        nonlocal size
        step = -(-elements // align) * align
        offset, size = size, size + step * repeats
        return offset, step if repeats > 1 else 0

    for p in products:
        repeats = {role: 1 if role in p.shared else p.count for role in ("left", "right", "out")}
        operands = [*block(p.rows * p.inner, repeats["left"]), *block(p.inner * p.columns, repeats["right"]),
                    *block(p.rows * p.columns, repeats["out"])]
        table.append([*operands, p.rows, p.inner, p.columns, p.left_transposed + 2 * p.right_transposed, p.count])
    raw = np.empty(size + align, dt)
    start = (-raw.ctypes.data // dt.itemsize) % align  # the buffer's first aligned element
    buffer = raw[start:start + size]
    buffer[:] = np.random.default_rng(seed).random(size)
    table = np.array(table, np.int64).reshape(-1, 11)
    return lambda: _run_products(buffer, table)


def step_products(spec: str, batch: int) -> list:
    """The products one training step of ``spec`` runs on ``batch`` rows, layer by layer."""
    from symprop.symbolic.graph import parse_net
    from symprop.training.threads import step_products as of_graph
    return of_graph(parse_net(spec), batch)


def measure(case, rounds: int = 9, sample_s: float = 0.02) -> dict:
    """Median seconds per call of a bench case's symprop step (as the bench calls it), its
    products together and each alone, and np.dot's peak GEMM, timed round by round."""
    from . import bench
    from . import competitors as comp

    net, why = bench.load_symprop_network(case.spec)
    if net is None:
        raise SystemExit(why)
    if isinstance(case, bench.Case):
        params, X, T = bench.make_data(case)
        step = comp.symprop_step(net, case, params, X, T)
    else:
        params, X, T = bench.make_net_data(case)
        make = comp.symprop_adam_step if case.kind == bench.BATCHNORM_ADAM else comp.symprop_sgd_net_step
        step = make(net, case, params, X, T)
    products = step_products(case.spec, case.batch)
    calls = {"step": step, "products": products_call(products, case.dtype),
             **{index: products_call([p], case.dtype) for index, p in enumerate(products)},
             "peak": bench.gemm_call(case.dtype)}
    median = {key: t.median for key, t in bench.time_round_robin(calls, rounds, 1, sample_s).items()}
    peak_gflops = bench.GEMM_FLOP / median["peak"] / 1e9
    flop = sum(p.flop for p in products)
    return {"case": case.name, "spec": case.spec, "median_s": {k: median[k] for k in ("step", "products", "peak")},
            "peak_gflops": peak_gflops,
            "step_of_peak": flop / median["step"] / 1e9 / peak_gflops,
            "products_of_peak": flop / median["products"] / 1e9 / peak_gflops,
            "products_share_of_step": median["products"] / median["step"],
            "each": [{"product": p, "median_s": median[i], "of_peak": p.flop / median[i] / 1e9 / peak_gflops}
                     for i, p in enumerate(products)]}


def shape_text(product) -> str:
    """(rows x inner)^T by (inner x columns) as the kernel reads it, and its repeats."""
    left = f"{product.rows}x{product.inner}" + ("^T" if product.left_transposed else "")
    right = f"{product.inner}x{product.columns}" + ("^T" if product.right_transposed else "")
    return f"{left} by {right}" + (f" x{product.count}" if product.count > 1 else "")


def main(argv=None) -> int:
    from . import bench

    parser = argparse.ArgumentParser(prog="python -m symprop.benchmarks.breakdown", description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", metavar="TEXT", help="the first bench case whose name contains TEXT, e.g. convnet "
                        "or 'lstm T32 hidden 256' (instead of the two-layer net of the options below)")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    if args.case:
        case = next((c for c in bench.all_cases(False) if args.case in c.name), None)
        if case is None:
            parser.error(f"no bench case's name contains {args.case!r}")
    else:
        case = bench.Case((784, args.hidden, 10), args.batch, args.activation, args.dtype)
    r = measure(case, rounds=args.rounds)
    m = r["median_s"]
    print(f"{r['case']}: {r['spec']} (OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})")
    print(f"  whole step      {m['step'] * 1e3:9.3f} ms   {r['step_of_peak']:.2f} of the GEMM peak")
    print(f"  products alone  {m['products'] * 1e3:9.3f} ms   {r['products_of_peak']:.2f} of the GEMM peak"
          f"   ({r['products_share_of_step']:.0%} of the step)")
    for each in r["each"]:
        p = each["product"]
        print(f"    {p.what:<16}{shape_text(p):<32}{each['median_s'] * 1e3:9.3f} ms   {each['of_peak']:.2f} of the peak")
    print(f"  GEMM peak       {r['peak_gflops']:9.1f} GFLOP/s (np.dot 1024x784 by 784x1024, same rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
