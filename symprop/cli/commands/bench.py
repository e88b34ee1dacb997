"""symprop bench: time the generated kernels against numpy, PyTorch and JAX.

The benchmark itself lives in ``benchmarks/bench.py`` (also runnable as
``python -m symprop.benchmarks.bench``); this module only forwards to it.
"""
from __future__ import annotations

from symprop.benchmarks import bench


def add_arguments(parser):
    bench.add_arguments(parser)


def run(args) -> int:
    return bench.run(args)
