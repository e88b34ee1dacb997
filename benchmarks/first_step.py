"""Compile latency of a new network: the wall time from a fresh Python process to its first
finished ``sgd_step``, with empty caches (``SYMPROP_CACHE`` and ``NUMBA_CACHE_DIR`` pointing at
new empty folders), as a learner who has just written the spec waits for it.

    python -m symprop.benchmarks.first_step [SPEC ...]     (no SPEC: FIRST_STEP_SPECS)
    symprop bench --first-step [SPEC ...]                  (the same, inside the benchmark)
    python -m symprop.benchmarks.first_step --forms [SPEC ...]

``--forms`` compares the two steps a tiny network can get: CPU seconds numba takes to compile
the first sgd_step with the scalar step and with the matrix step (each module written with the
other form's limit, median of 3 fresh processes), and the scalar step's lines per row. This is
what codegen/scalar_step.py's SCALAR_MAX_LINES is set from.

Each spec runs in its own child process with its own empty caches; the child reports its
phases (imports, generating the module with SymPy, the first step: numba compiling what it
calls) and which kernels it compiled, and the parent adds the whole process's wall time.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

# The specs: a three-layer spec with a user formula (softsign), and others of up to 4
# affine layers (targets: <= 5 s for the three-layer ones, <= 10 s for any of up to 4 layers).
SOFTSIGN = "formula(x/(1+abs(x)))"
FIRST_STEP_SPECS = (
    f"affine(3,8) sigmoid affine(8,4) {SOFTSIGN} affine(4,2) mse",
    "affine(3,8) tanh affine(8,8) relu affine(8,2) softmax-cross-entropy",
    "affine(4,8) relu affine(8,8) tanh affine(8,8) sigmoid affine(8,3) softmax-cross-entropy",
    "affine(2,8) formula(log(1+exp(x))) affine(8,8) formula(x*tanh(log(1+exp(x)))) affine(8,8) tanh "
    "affine(8,1) binary-cross-entropy",
    "affine(784,100) relu affine(100,50) tanh affine(50,20) sigmoid affine(20,10) softmax-cross-entropy",
)
TARGET_S = {3: 5.0, 4: 10.0}  # affine layers -> seconds to the first finished step


def affine_layers(spec: str) -> int:
    return sum(1 for word in spec.split() if word.startswith(("affine(", "affine-shared-bias(")))


def target_s(spec: str) -> float | None:
    layers = affine_layers(spec)
    return TARGET_S[3] if layers <= 3 else TARGET_S.get(layers)


def child(spec: str) -> dict:
    """In the fresh process: import, load (generate) the network, one sgd_step in float64."""
    start, cpu = time.perf_counter(), time.process_time()
    import numpy as np

    from symprop.codegen.network import load_network
    imported, imported_cpu = time.perf_counter(), time.process_time()
    net = load_network(spec)
    loaded, loaded_cpu = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(0)
    params = [rng.normal(0, 0.5, shape) for shape in net.PARAM_SHAPES]
    X = rng.normal(0, 1, (4, net.INPUT_SIZE))
    T = np.zeros((4, net.OUTPUT_SIZE))
    T[:, 0] = 1
    loss = net.sgd_step(*params, X, T, 0.01)
    stepped, stepped_cpu = time.perf_counter(), time.process_time()
    compiled = {name: len(kernel.signatures) for name, kernel in vars(net).items()
                if hasattr(kernel, "signatures") and kernel.signatures}
    return {"import_s": imported - start, "generate_s": loaded - imported, "first_step_s": stepped - loaded,
            "cpu": {"import_s": imported_cpu - cpu, "generate_s": loaded_cpu - imported_cpu,
                    "first_step_s": stepped_cpu - loaded_cpu},
            "loss": float(loss), "scalar_step": bool(getattr(net, "SCALAR_STEP", False)),
            "compiled": compiled}


def measure(spec: str, timeout: float = 600) -> dict:
    """A fresh process with new empty caches; its phases and its whole wall time."""
    with tempfile.TemporaryDirectory(prefix="symprop-first-step-") as cache:
        env = {**os.environ, "SYMPROP_CACHE": os.path.join(cache, "symprop"),
               "NUMBA_CACHE_DIR": os.path.join(cache, "numba")}
        start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run([sys.executable, "-m", "symprop.benchmarks.first_step", "--child", spec],
                              env=env, capture_output=True, text=True, timeout=timeout)
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result = {"spec": spec, "layers": affine_layers(spec), "target_s": target_s(spec)}
    if proc.returncode != 0:
        return {**result, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    return {**result, "process_wall_s": wall, "process_cpu_s": cpu, **json.loads(proc.stdout.strip().splitlines()[-1])}


def describe(r: dict) -> str:
    if "error" in r:
        return f"{r['spec']}: failed: {r['error']}"
    met = "" if r["target_s"] is None else (" (target <= %g s: %s)" % (r["target_s"],
                                                                     "met" if r["process_wall_s"] <= r["target_s"]
                                                                     else "NOT MET"))
    cpu = r["cpu"]
    return (f"{r['process_wall_s']:.1f} s{met}  {r['spec']}\n"
            f"      CPU {r['process_cpu_s']:.1f} s (wall above CPU = waiting for a busy core): imports "
            f"{cpu['import_s']:.1f} s, generating the module {cpu['generate_s']:.1f} s, first step "
            f"{cpu['first_step_s']:.1f} s ({'scalar' if r['scalar_step'] else 'matrix'} step; compiled "
            + ", ".join(f"{k} x{v}" for k, v in sorted(r["compiled"].items())) + ")")


FORMS_SPECS = (
    "affine(2,2) sigmoid affine(2,2) mse",
    *FIRST_STEP_SPECS[:4],
    "affine(8,8) tanh affine(8,8) tanh affine(8,8) tanh affine(8,8) mse",
    " ".join(["affine(8,8) tanh"] * 5) + " affine(8,8) mse",
    " ".join(["affine(8,8) sigmoid"] * 7) + " affine(8,8) softmax-cross-entropy",
)

_WRITE_MODULE = """import sys
import symprop.codegen.scalar_step as scalar_step
scalar_step.SCALAR_MAX_LINES = int(sys.argv[2])
from symprop.codegen.network import load_network
print(load_network(sys.argv[1]).__file__)
"""

_COMPILE_STEP = """import sys, time
import numpy as np
from symprop.codegen.files import import_generated
net = import_generated("net", sys.argv[1])
rng = np.random.default_rng(0)
params = [rng.normal(0, 0.5, shape) for shape in net.PARAM_SHAPES]
X, T = rng.normal(0, 1, (4, net.INPUT_SIZE)), np.eye(net.OUTPUT_SIZE)[np.zeros(4, int)]
start = time.process_time()
net.sgd_step(*params, X, T, 0.01)
print(time.process_time() - start, net.SCALAR_STEP)
"""


def compare_forms(spec: str, runs: int = 3) -> dict:
    """CPU seconds to compile the first sgd_step with the scalar and with the matrix step."""
    import symprop.codegen.scalar_step as scalar_module
    from symprop.symbolic.lower import Lowering
    from symprop.symbolic.graph import parse_net

    limit, scalar_module.SCALAR_MAX_LINES = scalar_module.SCALAR_MAX_LINES, 10**9
    try:
        step = scalar_module.scalar_step(Lowering(parse_net(spec)))
    finally:
        scalar_module.SCALAR_MAX_LINES = limit
    result = {"spec": spec, "scalar_lines": step and step.size, "limit": limit}
    if step is None:
        return result
    with tempfile.TemporaryDirectory(prefix="symprop-forms-") as cache:
        for form, lines in (("scalar", 10**9), ("matrix", 0)):
            env = {**os.environ, "SYMPROP_CACHE": os.path.join(cache, form)}
            module = subprocess.run([sys.executable, "-c", _WRITE_MODULE, spec, str(lines)], env=env,
                                    capture_output=True, text=True, check=True).stdout.split()[-1]
            times = []
            for run in range(runs):
                env["NUMBA_CACHE_DIR"] = os.path.join(cache, f"numba-{form}-{run}")
                out = subprocess.run([sys.executable, "-c", _COMPILE_STEP, module], env=env,
                                     capture_output=True, text=True, check=True).stdout.split()
                assert (out[-1] == "True") == (form == "scalar"), f"{spec}: not the {form} step"
                times.append(float(out[-2]))
            result[f"{form}_cpu_s"] = sorted(times)[len(times) // 2]
    return result


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        print(json.dumps(child(argv[1])))
        return 0
    if argv[:1] == ["--forms"]:
        for spec in argv[1:] or FORMS_SPECS:
            r = compare_forms(spec)
            if r["scalar_lines"] is None:
                print(f"no scalar step (wider than TINY_WIDTH or no scalar form)  {spec}", flush=True)
                continue
            form = "scalar" if r["scalar_lines"] <= r["limit"] else "matrix"
            print(f"{r['scalar_lines']:4d} lines: scalar {r['scalar_cpu_s']:.2f} s, matrix {r['matrix_cpu_s']:.2f} s"
                  f" (gets the {form} step)  {spec}", flush=True)
        return 0
    results = []
    for spec in argv or FIRST_STEP_SPECS:
        results.append(measure(spec))
        print(describe(results[-1]), flush=True)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
