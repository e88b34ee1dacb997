"""symprop benchmarks: generated kernels against numpy, PyTorch and JAX (see bench.py)."""
