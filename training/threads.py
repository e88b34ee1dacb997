"""How many BLAS threads a training step gets: every usable core where its matrix products are
large enough to gain from them, one thread where they are small or the machine is busy.

The generated kernels call BLAS (the gemm numba's ``np.dot`` calls) for their products;
BLAS's thread count is a setting of the process, so it is decided here, once per run, from the
network and the batch size, and applied with threadpoolctl around the run (``training.train.train``).

Why these rules (measured with ``python -m symprop.benchmarks.blas_threads``, which times the
step with one BLAS thread against every core, by size, and ``symprop bench --threads all``):
- A product splits across threads only when each thread's share outweighs waking and joining
  the pool. On a quiet 2-core machine (float32, relu, one thread against two): 784-50-10 at
  batch 32, 5 MFLOP per step, 0.97x; 784-100-10 at batch 32, 10 MFLOP, 1.08x; 784-50-10 at
  batch 100, 16 MFLOP, 1.39x; 82 MFLOP 1.56x; 419 MFLOP and up 1.8-1.9x. So every core from
  ``MIN_STEP_FLOP``.
- When other processes already keep the cores busy, a pool thread waits for a core at every
  product and the whole step stalls: on a shared 2-core machine at load 2.7, the 784-100-10
  step went from 0.4 ms to 48 ms with two OpenBLAS threads (PyTorch's OpenMP pool did the same).
  So a machine whose load average already fills its cores gets one thread.
"""
from __future__ import annotations

import os

# Matrix work per training step (flop) from which every core pays; below it, one thread.
MIN_STEP_FLOP = 15e6


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def step_products(graph, batch: int) -> list:
    """One training step's matrix products, layer by layer, as each layer's op lists them
    (``Op.step_products``: an affine layer's X W, dW and dX, a convolution's im2col products
    per image, a recurrent layer's per-step products, attention's projections and scores); a
    layer with no parameters before it computes no input gradient. Elementwise work runs in
    the kernels' own loops, not in BLAS."""
    products, first = [], True
    for node, shape_in, shape_out in zip(graph.nodes, graph.shapes, graph.shapes[1:]):
        products += node.op.step_products(node.args, shape_in, shape_out, batch, first)
        first = first and not node.op.param_shapes(node.args, shape_in)
    return products


def step_matrix_flop(graph, batch: int) -> float:
    """The flop of one training step's matrix products (``step_products``)."""
    return float(sum(product.flop for product in step_products(graph, batch)))


def auto_threads(graph, batch: int, cores: int | None = None, load: float | None = None) -> int:
    """Every usable core when a step's products reach MIN_STEP_FLOP and the machine is not
    already busy (its 1-minute load average below the usable cores); else one thread."""
    return threads_for(step_matrix_flop(graph, batch), cores, load)


def threads_for(step_flop: float, cores: int | None = None, load: float | None = None) -> int:
    """auto_threads for a step of step_flop matrix flop (a warm start knows it without the graph)."""
    cores = usable_cores() if cores is None else cores
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if cores < 2 or step_flop < MIN_STEP_FLOP or load >= cores:
        return 1
    return cores
