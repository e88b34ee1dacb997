"""Run in a fresh process by the benchmark: load generated modules and call each of their
kernels once per dtype, timing how long the first calls take (a compile with an empty numba
cache, a cache load with a warm one). Prints JSON on stdout.

    python -m symprop.benchmarks.compile_probe [SPEC ...]
    (no SPEC: every built-in network through load_network, as users load them, and every
    other module in generated/, the per-layer kernels)
"""
from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import sys
import time

KERNELS = ("forward_kernel", "loss_and_grads_kernel", "sgd_step_kernel", "sgd_steps_kernel")


DTYPES = ("float32", "float64")
# Per-layer wrappers name their arrays; affine shapes must agree, a per-feature parameter (g, b)
# or batch norm's statistic (s) is (4,), every other array is (2, 4). Exceptions by wrapper:
# layer norm's s is per row; the image ops take (N, C, H, W) arrays (a 2x1x4x4 batch, a 3x3
# kernel to 2 channels, 2x2 pooling windows) and the window size k.
LAYER_ARG_SHAPES = {"X": (2, 3), "W": (3, 4), "b": (4,), "g": (4,), "s": (4,)}
ARG_SHAPES_BY_WRAPPER = {
    "layernorm_backward": {"s": (2,)},
    "conv2d_forward": {"X": (2, 1, 4, 4), "W": (2, 1, 3, 3), "b": (2,)},
    "conv2d_backward": {"dY": (2, 2, 2, 2), "X": (2, 1, 4, 4), "W": (2, 1, 3, 3)},
    "flatten_forward": {"X": (2, 1, 2, 2)},
    "flatten_backward": {"dY": (2, 4), "X": (2, 1, 2, 2)},
    **{f"{pool}_{direction}": {"dY": (2, 1, 2, 2), "X": (2, 1, 4, 4), "k": 2}
       for pool in ("maxpool", "avgpool") for direction in ("forward", "backward")},
}


def generated_modules():
    """(networks, other modules) under generated/: a network has SPEC and PARAM_SHAPES."""
    from symprop import generated
    networks, others = [], []
    for info in pkgutil.walk_packages(generated.__path__, "symprop.generated."):
        module = importlib.import_module(info.name)
        is_network = hasattr(module, "SPEC") and hasattr(module, "PARAM_SHAPES")
        (networks if is_network else others).append(module)
    return networks, others


def builtin_specs() -> list[str]:
    """The specs of the built-in networks, the modules of generated/ that users load by spec."""
    from symprop.codegen.network import BUILTIN_NETWORKS
    return list(BUILTIN_NETWORKS.values())


def layer_wrappers(module) -> dict:
    """The checked <layer>_forward / <layer>_backward wrappers of a per-layer module; the
    private image helpers (_maxpool_backward(dY, X, C, H, W, ...)) are compiled by the
    networks that call them, not here."""
    return {name: function for name, function in vars(module).items()
            if callable(function) and not name.startswith("_") and name.endswith(("_forward", "_backward"))}


def layer_first_calls(module, np) -> int:
    """Call every checked <layer>_forward / <layer>_backward wrapper once per dtype."""
    calls = 0
    for name, function in layer_wrappers(module).items():
        required = [p.name for p in inspect.signature(function).parameters.values()
                    if p.default is inspect.Parameter.empty]
        for dtype in DTYPES:
            args = []
            for arg in required:
                shape = (1,) if arg == "b" and "shared" in name else LAYER_ARG_SHAPES.get(arg, (2, 4))
                shape = ARG_SHAPES_BY_WRAPPER.get(name, {}).get(arg, shape)
                # in (0, 1): valid for outputs and targets
                args.append(shape if isinstance(shape, int) else np.full(shape, 0.25, dtype))
            function(*args)
            calls += 1
    return calls


def first_calls(net, np) -> int:
    """Call every kernel of net once per dtype on a batch of 2; returns how many calls."""
    calls = 0
    for dtype in DTYPES:
        params = [np.full(shape, 0.1, dtype) for shape in net.PARAM_SHAPES]
        X = np.full((2, net.INPUT_SIZE), 0.5, dtype)
        T = np.zeros((2, net.OUTPUT_SIZE), dtype)
        T[:, 0] = 1
        for name in KERNELS:
            kernel = getattr(net, name, None)
            if kernel is None:
                continue
            if name == "forward_kernel":
                kernel(*params, X)
            elif name == "loss_and_grads_kernel":
                kernel(*params, X, T)
            elif name == "sgd_step_kernel":
                kernel(*params, X, T, 0.01)
            else:
                kernel(*params, X, T, 0.01, 2)
            calls += 1
    return calls


def main(specs) -> int:
    start = time.perf_counter()
    import numpy as np
    import numba  # noqa: F401  (its import is fixed cost, reported apart from the kernels)
    from symprop.codegen.network import load_network
    import_s = time.perf_counter() - start
    start = time.perf_counter()
    networks, kernels = {}, 0
    others = []
    if not specs:  # every built-in network through load_network, as users load them
        specs, others = builtin_specs(), generated_modules()[1]
    for spec in specs:
        t0 = time.perf_counter()
        net = load_network(spec)
        kernels += first_calls(net, np)
        networks[net.SPEC] = time.perf_counter() - t0
    for module in others:
        t0 = time.perf_counter()
        kernels += layer_first_calls(module, np)
        networks[module.__name__] = time.perf_counter() - t0
    print(json.dumps({"import_s": import_s, "total_s": time.perf_counter() - start,
                      "kernels": kernels, "networks": networks}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
