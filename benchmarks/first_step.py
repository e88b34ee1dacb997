"""Ready to train: CPU seconds from a fresh process to the first training step, from empty
caches (``SYMPROP_CACHE`` and ``NUMBA_CACHE_DIR`` pointing at new empty folders) and again
warm (the same folders, now filled), as a learner waits for it.

    symprop bench --first-step                   the documented `symprop train` commands
    symprop bench --first-step SPEC ...          new specs: their first sgd_step
    python -m symprop.benchmarks.first_step [SPEC ...]
    python -m symprop.benchmarks.first_step --forms [SPEC ...]

The training commands are the ones the docs give (digits, moons, MNIST's MLP, the CNN, batch
norm + Adam); the MNIST ones read small synthetic IDX files of MNIST's shape written into the
temporary folder (nothing is downloaded; the first step does not depend on the pixels). The
child process runs `symprop train` itself and stops at the end of its first training step
(after the warm-up that compiles the step). Targets: ``COLD_TARGET_S`` of CPU from empty
caches and ``WARM_TARGET_S`` warm, for each command; a new spec's first step within
``COLD_TARGET_S``. CPU time, not wall time: on a shared machine the wall time also counts the
waiting for a core.

Each child reports its phases (imports, loading or generating the module with SymPy, the step's
compile, the rest: arguments, data) and what numba compiled, per function: CPU seconds spent in
that function's own compile (type inference, lowering, and LLVM optimising and generating
machine code for it and every callee linked into it), and LLVM's share of all of it.

``--forms`` compares the two steps a tiny network can get: CPU seconds numba takes to compile
the first sgd_step with the scalar step and with the matrix step (each module written with the
other form's limit, median of 3 fresh processes), and the scalar step's lines per row. This is
what codegen/scalar_step.py's SCALAR_MAX_LINES is set from.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLD_TARGET_S = 5.0  # CPU seconds to the first step, empty caches
WARM_TARGET_S = 1.0  # the same with numba's and symprop's caches filled by an earlier run

# The specs: a three-layer spec with a user formula (softsign), and others of up to 4
# affine layers.
SOFTSIGN = "formula(x/(1+abs(x)))"
FIRST_STEP_SPECS = (
    f"affine(3,8) sigmoid affine(8,4) {SOFTSIGN} affine(4,2) mse",
    "affine(3,8) tanh affine(8,8) relu affine(8,2) softmax-cross-entropy",
    "affine(4,8) relu affine(8,8) tanh affine(8,8) sigmoid affine(8,3) softmax-cross-entropy",
    "affine(2,8) formula(log(1+exp(x))) affine(8,8) formula(x*tanh(log(1+exp(x)))) affine(8,8) tanh "
    "affine(8,1) binary-cross-entropy",
    "affine(784,100) relu affine(100,50) tanh affine(50,20) sigmoid affine(20,10) softmax-cross-entropy",
)

CNN = "conv2d(1,30,5) relu maxpool(2) flatten affine(4320,100) relu affine(100,10) softmax-cross-entropy"
BATCHNORM = "affine(784,100) batchnorm relu affine(100,10) softmax-cross-entropy"
MNIST_DIR = "{mnist}"  # replaced by the folder of synthetic MNIST files
# name -> the arguments of `symprop train`, as the README and the tutorial give them
TRAINING_COMMANDS = {
    "digits": ("--data", "digits"),
    "moons": ("--data", "moons"),
    "MNIST MLP": ("--data", "mnist", "--data-dir", MNIST_DIR),
    "MNIST CNN": ("--data", "mnist", "--data-dir", MNIST_DIR, "--lr", "0.1", "--net", CNN),
    "batch norm + Adam": ("--data", "mnist", "--data-dir", MNIST_DIR, "--optimizer", "adam", "--lr", "0.02",
                          "--net", BATCHNORM),
}


class _CompileLog:
    """numba's compile events (numba.core.event): each function's own compile time (CPU
    seconds, its callees' compiles subtracted) and the CPU time spent holding LLVM's lock."""

    def __init__(self):
        from numba.core import event

        self.own: dict[str, float] = {}
        self.llvm_s = 0.0
        self._stack: list[list] = []  # [name, start, callees' time]
        self._llvm_start = None
        log = self

        class Compiles(event.Listener):
            def on_start(self, ev):
                log._stack.append([_function_name(ev), time.process_time(), 0.0])

            def on_end(self, ev):
                name, start, callees = log._stack.pop()
                spent = time.process_time() - start
                log.own[name] = log.own.get(name, 0.0) + spent - callees
                if log._stack:
                    log._stack[-1][2] += spent

        class Llvm(event.Listener):
            def on_start(self, ev):
                log._llvm_start = time.process_time()

            def on_end(self, ev):
                log.llvm_s += time.process_time() - log._llvm_start

        event.register("numba:compile", Compiles())
        event.register("numba:llvm_lock", Llvm())

    def report(self) -> dict:
        return {"compile_s": sum(self.own.values()), "llvm_s": self.llvm_s,
                "compiled": dict(sorted(self.own.items(), key=lambda item: -item[1]))}


def _function_name(ev) -> str:
    """A compiled function's name: module.function (a generated network module as "net."),
    with its argument types."""
    dispatcher = (ev.data or {}).get("dispatcher")
    if dispatcher is None:
        return "?"
    function = dispatcher.py_func
    module = getattr(function, "__module__", "") or ""
    if module.startswith(("symprop_net_", "symprop.generated.net_")):
        module = "net"
    args = ", ".join(str(a) for a in (ev.data or {}).get("args", ()))
    return f"{module}.{function.__name__}({args})"


def child(spec: str) -> dict:
    """In the fresh process: import, load (generate) the network, one sgd_step in float64."""
    start = time.process_time()
    log = _CompileLog()
    import numba
    import numpy as np

    from symprop.codegen.network import load_network
    from symprop.training.train import has_modes
    imported = time.process_time()
    net = load_network(spec)
    loaded = time.process_time()
    rng = np.random.default_rng(0)
    params = [rng.normal(0, 0.5, shape) for shape in net.PARAM_SHAPES]
    X = rng.normal(0, 1, (4, net.INPUT_SIZE))
    T = np.zeros((4, net.OUTPUT_SIZE))
    T[:, 0] = 1
    # a network with batch norm or dropout also takes its running averages and dropout masks
    modes = {"state": net.init_state(), "masks": net.make_masks(len(X), rng)} if has_modes(net) else {}
    loss = net.sgd_step(*params, X, T, 0.01, **modes)
    stepped = time.process_time()
    kernels = {name: len(kernel.signatures) for name, kernel in vars(net).items()
               if isinstance(kernel, numba.core.dispatcher.Dispatcher) and kernel.signatures}
    return {"cpu_s": stepped, "phases": {"import_s": imported - start, "generate_s": loaded - imported,
                                         "first_step_s": stepped - loaded},
            "loss": float(loss), "scalar_step": bool(getattr(net, "SCALAR_STEP", False)),
            "kernels": kernels, **log.report()}


class _FirstStep(BaseException):
    """Raised by the wrapped training step after its first call: the measurement ends there."""


def child_train(args: list[str]) -> dict:
    """In the fresh process: `symprop train ARGS` up to the end of its first training step
    (the one after the warm-up), with the CPU time of each phase."""
    log = _CompileLog()
    from symprop.cli import main
    from symprop.training import train as training

    phases, done = {"import_s": time.process_time()}, {}
    load_net, warm_up, make_step = training.load_net, training._warm_up, training.make_step

    def timed(name, function):
        def call(*a, **k):
            start = time.process_time()
            try:
                return function(*a, **k)
            finally:
                phases[name] = phases.get(name, 0.0) + time.process_time() - start
        return call

    def stopping_step(*a, **k):
        step = make_step(*a, **k)

        def first(*batch):
            loss = step(*batch)
            if "step_compile_s" in phases:  # the warm-up is over: this was the first training step
                done["cpu_s"] = time.process_time()
                raise _FirstStep
            return loss
        return first

    import symprop.cli.commands.train as command
    command.load_net = training.load_net = timed("load_s", load_net)
    training._warm_up = timed("step_compile_s", warm_up)
    training.make_step = stopping_step
    try:
        status = main(["train", "--no-progress", "--epochs", "1", *args])
    except _FirstStep:
        status = 0
    if "cpu_s" not in done:
        raise SystemExit(f"symprop train {' '.join(args)} ended (status {status}) before its first step")
    phases["other_s"] = done["cpu_s"] - sum(phases.values())
    return {"cpu_s": done["cpu_s"], "phases": phases, **log.report()}


def write_synthetic_mnist(folder: Path, train: int = 600, test: int = 100) -> Path:
    """MNIST's four IDX files (28x28 uint8 images, labels 0-9) with random pixels."""
    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for part, count in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count).astype(np.uint8)
        (folder / f"{part}-images-idx3-ubyte").write_bytes(struct.pack(">HBBIII", 0, 8, 3, count, 28, 28)
                                                          + images.tobytes())
        (folder / f"{part}-labels-idx1-ubyte").write_bytes(struct.pack(">HBBI", 0, 8, 1, count) + labels.tobytes())
    return folder


def child_environment(**caches: str) -> dict:
    """The environment of a timed fresh process: this one's, with the given cache folders, and
    Python's bytecode cache on as a learner's Python has it. With PYTHONDONTWRITEBYTECODE set
    (some shells and containers set it) every process would compile symprop's own modules from
    source again, 0.1-0.2 s of CPU that a second run of an installed package does not spend."""
    env = {**os.environ, **caches}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _run_child(argv: list[str], cache: Path, timeout: float) -> dict:
    """One fresh process with its caches in ``cache``; its report, or the error it ended with."""
    env = child_environment(SYMPROP_CACHE=str(cache / "symprop"), NUMBA_CACHE_DIR=str(cache / "numba"))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "symprop.benchmarks.first_step", *argv],
                          env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    return {"process_wall_s": wall, **json.loads(proc.stdout.strip().splitlines()[-1])}


def _cold_and_warm(kind: str, name: str, argv: list[str], folder: Path, timeout: float) -> dict:
    """The same child twice: with new empty caches, then with the caches the first run filled."""
    cache = folder / "cache"
    cold = _run_child(argv, cache, timeout)
    warm = _run_child(argv, cache, timeout)
    return {"kind": kind, "name": name, "cold": cold, "warm": warm,
            "targets": {"cold": COLD_TARGET_S, "warm": WARM_TARGET_S if kind == "command" else None}}


def measure(spec: str, timeout: float = 600) -> dict:
    """A new spec's first sgd_step: a fresh process with new empty caches, then warm."""
    with tempfile.TemporaryDirectory(prefix="symprop-first-step-") as folder:
        return _cold_and_warm("spec", spec, ["--child", spec], Path(folder), timeout)


def measure_command(name: str, timeout: float = 600) -> dict:
    """A documented `symprop train` command to its first step: empty caches, then warm."""
    args = TRAINING_COMMANDS[name]
    with tempfile.TemporaryDirectory(prefix="symprop-first-step-") as folder:
        mnist = write_synthetic_mnist(Path(folder) / "mnist") if MNIST_DIR in args else None
        argv = ["--child-train", *(str(mnist) if a == MNIST_DIR else a for a in args)]
        result = _cold_and_warm("command", name, argv, Path(folder), timeout)
    result["command"] = "symprop train " + " ".join(
        f'"{a}"' if " " in a else "DIR" if a == MNIST_DIR else a for a in args)
    return result


def missed(results: list[dict]) -> list[str]:
    """What failed: each target missed, and each run that ended in an error."""
    failures = []
    for r in results:
        for phase in ("cold", "warm"):
            if "error" in r[phase]:
                failures.append(f"{r['name']} ({phase}): {r[phase]['error']}")
            elif r["targets"][phase] is not None and r[phase]["cpu_s"] > r["targets"][phase]:
                failures.append(f"{r['name']} ({phase}): {r[phase]['cpu_s']:.1f} s CPU > {r['targets'][phase]:g} s")
    return failures


def _run_text(run: dict, target) -> str:
    if "error" in run:
        return f"failed: {run['error']}"
    verdict = "" if target is None else (" (<= %g s: %s)" % (target, "met" if run["cpu_s"] <= target else "NOT MET"))
    return f"{run['cpu_s']:.2f} s CPU{verdict}, {run['process_wall_s']:.1f} s wall"


def describe(r: dict, functions: int = 6) -> str:
    """A result in a few lines: both runs against their targets, the cold run's phases and the
    functions whose compile took longest."""
    lines = [f"{r['name']}" + (f"   ({r['command']})" if "command" in r else ""),
             f"      empty caches: {_run_text(r['cold'], r['targets']['cold'])}",
             f"      warm:         {_run_text(r['warm'], r['targets']['warm'])}"]
    cold = r["cold"]
    if "error" not in cold:
        phases = ", ".join(f"{k[:-2].replace('_', ' ')} {v:.2f}" for k, v in cold["phases"].items())
        lines.append(f"      empty caches, CPU s: {phases}; numba compiled {len(cold['compiled'])} functions in "
                     f"{cold['compile_s']:.2f} s (LLVM {cold['llvm_s']:.2f} s)")
        top = list(cold["compiled"].items())[:functions]
        lines.append("      longest: " + ", ".join(f"{name.split('(')[0]} {t:.2f}" for name, t in top))
    return "\n".join(lines)


def run(names: list[str] | None = None, specs=(), show: bool = True) -> list[dict]:
    """The training commands (all, or the named ones) and the given specs; each printed as
    measured (show), else a progress line on stderr."""
    results = []
    for measured in [*((measure_command, name) for name in (TRAINING_COMMANDS if names is None else names)),
                     *((measure, spec) for spec in specs)]:
        function, what = measured
        results.append(function(what))
        print(describe(results[-1]) if show else f"[bench] first step of {what!r} done",
              file=sys.stdout if show else sys.stderr, flush=True)
    return results


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
    if argv[:1] == ["--child-train"]:
        print(json.dumps(child_train(argv[1:])))
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
    results = run(None, ()) if not argv else run([], argv)
    return 1 if missed(results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
