"""symprop's benchmark: one training step of the generated fused kernel against numpy layer
classes, PyTorch and JAX, all timed in this one process run so their ratios hold.

Run it with ``symprop bench`` (or ``python -m symprop.benchmarks.bench``); ``--quick`` times the
smallest network once (the smoke test), ``--json PATH`` writes every raw figure.
Timings on a shared machine are noisy: read the ratios within one run, not absolute times.
The issue's targets are reported as met / not met, never asserted.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from symprop.symbolic.errors import SympropError
from symprop.symbolic.userfiles import check_output, write_atomically
from symprop.training.threads import MIN_STEP_FLOP, auto_threads, usable_cores  # the cores --threads all means

from . import competitors as comp
from . import first_step

REPO_ROOT = Path(__file__).absolute().parent.parent
MISH = "x*tanh(log(1+exp(x)))"
MISH_ELEMENTS = 1_000_000
STEPS_PER_CALL = 1000
DTYPES = {"float32": np.float32, "float64": np.float64}

# Competitor keys, in table order; numpy is the 1.0 column, symprop the one ratios refer to.
SYMPROP, NUMPY, TORCH_NN, TORCH_MANUAL, JAX = "symprop", "numpy", "torch-nn", "torch-manual", "jax"
COMPETITORS = (TORCH_NN, TORCH_MANUAL, JAX)  # what "the best competitor" is chosen from
VARIANT_LABELS = {"symprop-workspace": "symprop, workspace kept"}  # extra symprop rows of a NetCase
GEMM = "gemm-peak"  # np.dot timed among the competitors: the peak each case's GFLOP/s is compared to
SEQUENCE_MANUAL = "PyTorch ops+autograd"  # TORCH_MANUAL in the sequence rows: torch ops, autograd's gradients
LABELS = {
    SYMPROP: "symprop fused kernel",
    NUMPY: "numpy layer classes",
    TORCH_NN: "PyTorch nn+autograd+optim",
    TORCH_MANUAL: "PyTorch hand-written grads",
    JAX: "JAX jit(value_and_grad)",
}


@dataclass(frozen=True)
class Case:
    """One network size, activation and dtype; ``spec`` is what ``load_network`` builds."""

    sizes: tuple[int, int, int]
    batch: int
    activation: str
    dtype: str
    loss: str = "softmax-cross-entropy"
    output_activation: str | None = None
    shared_bias: bool = False
    lr: float = 0.01

    @property
    def name(self) -> str:
        size = "-".join(map(str, self.sizes))
        return f"{size} b{self.batch} {self.activation} {self.dtype}"

    @property
    def spec(self) -> str:
        i, h, o = self.sizes
        affine = "affine-shared-bias" if self.shared_bias else "affine"
        parts = [f"{affine}({i},{h})", self.activation, f"{affine}({h},{o})"]
        if self.output_activation:
            parts.append(self.output_activation)
        return " ".join(parts + [self.loss])

    @property
    def matrix_flop(self) -> int:
        """Matrix work one step needs: X W1, A W2 forward; dW2, dA, dW1 backward (no dX)."""
        i, h, o = self.sizes
        return 2 * self.batch * (2 * i * h + 3 * h * o)


def worked_example(dtype: str) -> Case:
    """The seeds' 2-2-2 network: shared biases, sigmoid everywhere, 1/2 squared error."""
    return Case((2, 2, 2), 1, "sigmoid", dtype, loss="squared-error", output_activation="sigmoid",
                shared_bias=True, lr=0.5)


BATCHNORM_ADAM, CONVNET = "batchnorm-adam", "convnet"  # the kinds of NetCase; `--only` selects them by name
LSTM, GRU, ATTENTION_HEAD, MHA = "lstm", "gru", "attention-head", "mha"  # the sequence kinds of NetCase
SEQUENCES = (LSTM, GRU, ATTENTION_HEAD, MHA)
ATTENTION = (ATTENTION_HEAD, MHA)  # over (T, width) tokens, read out flattened
CLASSES = 10  # a sequence case's readout: the last state (or the flattened head) into 10 classes


@dataclass(frozen=True)
class NetCase:
    """A network beyond the two-layer stacks, with its own optimiser and competitors (no numpy
    layer classes): a batch-norm network trained by Adam, or the convolutional network
    trained by SGD.

    sizes: (inputs, hidden, outputs) for batchnorm-adam; (hidden, outputs) for convnet, whose
    image (channels, height, width) and conv (filters, kernel) are separate fields; (inputs,
    hidden) for lstm and gru, (width,) for the attention head and (width, heads) for the mha
    block, over ``steps`` steps (tokens)."""

    kind: str
    sizes: tuple[int, ...]
    batch: int
    dtype: str
    lr: float
    image: tuple[int, int, int] = (1, 28, 28)
    conv: tuple[int, int] = (30, 5)
    steps: int = 0

    @property
    def name(self) -> str:
        if self.kind in SEQUENCES:
            width = f"hidden {self.sizes[1]}" if self.kind not in ATTENTION else f"width {self.sizes[0]}"
            if self.kind == MHA:
                width += f" heads {self.sizes[1]}"
            return f"{self.kind} T{self.steps} {width} b{self.batch} {self.dtype}"
        if self.kind == BATCHNORM_ADAM:
            return f"{BATCHNORM_ADAM} {'-'.join(map(str, self.sizes))} b{self.batch} {self.dtype}"
        c, h, w = self.image
        layers = "-".join(map(str, (f"conv{self.conv[0]}k{self.conv[1]}", *self.sizes)))
        return f"{CONVNET} {c}x{h}x{w} {layers} b{self.batch} {self.dtype}"

    @property
    def pooled(self) -> tuple[int, int, int]:
        """(filters, rows, columns) after the conv (stride 1, no padding) and the 2x2 max-pool."""
        (_, h, w), (filters, k) = self.image, self.conv
        return filters, (h - k + 1) // 2, (w - k + 1) // 2

    @property
    def spec(self) -> str:
        if self.kind in ATTENTION:
            w, steps = self.sizes[0], self.steps
            layer = (f"attention({w},{w},{w},{steps})" if self.kind == ATTENTION_HEAD
                     else f"mha({w},{self.sizes[1]},{steps})")
            return f"{layer} flatten affine({steps * w},{CLASSES}) softmax-cross-entropy"
        if self.kind in SEQUENCES:
            d, h = self.sizes
            return f"{self.kind}({d},{h},{self.steps}) affine({h},{CLASSES}) softmax-cross-entropy"
        if self.kind == BATCHNORM_ADAM:
            i, h, o = self.sizes
            return f"affine({i},{h}) batchnorm relu affine({h},{o}) softmax-cross-entropy"
        (c, rows, cols), (filters, k), (hidden, outputs) = self.image, self.conv, self.sizes
        flat = int(np.prod(self.pooled))
        return (f"input({c},{rows},{cols}) conv2d({c},{filters},{k}) relu maxpool(2) flatten "
                f"affine({flat},{hidden}) relu affine({hidden},{outputs}) softmax-cross-entropy")

    @property
    def matrix_flop(self) -> int:
        """Matrix work of one step. batchnorm-adam: as Case (X W1, A W2; dW2, dA, dW1; no dX).
        convnet: the conv as im2col GEMMs, forward (O x Ck^2 by Ck^2 x HoWo per image) and dW
        (the same size); no dX, since its input is the data, which no implementation
        differentiates; then each affine layer's forward, dW and dX (3 products). lstm, gru:
        per row and step x_t Wx, h Wh forward, dWx, dWh and dh back (no dX; the GRU's last step
        back passes no dh_0, the LSTM's does); the attention head:
        per example the three projections and their dW (no dX), Q K^T, P V, dP, dV, dQ, dK;
        then the readout's forward, dW and dX. mha: the same over all heads together (their
        widths add up to the width), and the output projection's forward, dW and dO."""
        if self.kind in SEQUENCES:
            n, steps = self.batch, self.steps
            if self.kind in ATTENTION:
                w = self.sizes[0]
                projections = 6 if self.kind == ATTENTION_HEAD else 9
                return 2 * n * (projections * steps * w * w + 6 * steps * steps * w + 3 * steps * w * CLASSES)
            d, h = self.sizes
            gates = (4 if self.kind == LSTM else 3) * h
            back = steps if self.kind == LSTM else steps - 1  # the GRU's kernel skips dh_0 (h_0 = 0)
            return 2 * n * (steps * 2 * d * gates + (2 * steps + back) * h * gates + 3 * h * CLASSES)
        if self.kind == BATCHNORM_ADAM:
            i, h, o = self.sizes
            return 2 * self.batch * (2 * i * h + 3 * h * o)
        (c, rows, cols), (filters, k), (hidden, outputs) = self.image, self.conv, self.sizes
        conv_gemm = filters * c * k * k * (rows - k + 1) * (cols - k + 1)
        flat = int(np.prod(self.pooled))
        return 2 * self.batch * (2 * conv_gemm + 3 * flat * hidden + 3 * hidden * outputs)


def batchnorm_adam_case(dtype: str = "float32", sizes=(784, 100, 10), batch: int = 100, lr: float = 0.001) -> NetCase:
    """The batch-norm network: affine batchnorm relu affine softmax-cross-entropy, Adam (torch's defaults)."""
    return NetCase(BATCHNORM_ADAM, tuple(sizes), batch, dtype, lr)


def convnet_case(dtype: str = "float32", image=(1, 28, 28), conv=(30, 5), sizes=(100, 10), batch: int = 100,
                 lr: float = 0.01) -> NetCase:
    """The conv network: conv2d relu maxpool(2) flatten affine relu affine softmax-cross-entropy, SGD."""
    return NetCase(CONVNET, tuple(sizes), batch, dtype, lr, tuple(image), tuple(conv))


def sequence_cases(dtype: str = "float32", batch: int = 32, lr: float = 0.01) -> list[NetCase]:
    """lstm and gru at T 32, 128 inputs, hidden 128 and 256; one self-attention head and the
    4-head block (projections, residual, layer norm) at T 64, width 128; SGD."""
    return [*(NetCase(kind, (128, hidden), batch, dtype, lr, steps=32)
              for kind in (LSTM, GRU) for hidden in (128, 256)),
            NetCase(ATTENTION_HEAD, (128,), batch, dtype, lr, steps=64),
            NetCase(MHA, (128, 4), batch, dtype, lr, steps=64)]


def all_cases(quick: bool) -> list:
    dtypes = list(DTYPES)
    cases = [worked_example(d) for d in dtypes]
    if quick:
        return cases
    for sizes, batch in (((784, 50, 10), 100), ((784, 100, 10), 100), ((784, 1024, 10), 1024)):
        for activation in ("relu", "sigmoid"):
            cases += [Case(sizes, batch, activation, d) for d in dtypes]
    return cases + [batchnorm_adam_case(), convnet_case(), *sequence_cases()]  # float32, as the issues ask


def make_data(case: Case, seed: int = 0):
    """Parameters (W1, b1, W2, b2), inputs X and targets T in the case's dtype."""
    dtype = DTYPES[case.dtype]
    if case.sizes == (2, 2, 2):  # the worked example's numbers
        params = ([[0.15, 0.25], [0.20, 0.30]], [0.35], [[0.40, 0.50], [0.45, 0.55]], [0.60])
        X, T = [[0.05, 0.10]], [[0.01, 0.99]]
        return tuple(np.array(p, dtype) for p in params), np.array(X, dtype), np.array(T, dtype)
    rng = np.random.default_rng(seed)
    i, h, o = case.sizes
    gain = 2.0 if case.activation == "relu" else 1.0  # He for ReLU, Xavier-like for sigmoid
    params = (rng.normal(0, np.sqrt(gain / i), (i, h)), np.zeros(h),
              rng.normal(0, np.sqrt(gain / h), (h, o)), np.zeros(o))
    X = rng.random((case.batch, i))  # pixel-like inputs in [0, 1)
    T = np.eye(o)[rng.integers(0, o, case.batch)]
    return tuple(p.astype(dtype) for p in params), X.astype(dtype), T.astype(dtype)


def make_net_data(case: NetCase, seed: int = 0):
    """Parameters in the network's PARAM_NAMES order (batch-norm scales near 1, small random
    shifts and biases so that nothing starts at a special value), inputs X (images
    flattened C, H, W) in [0, 1) and one-hot targets T, in the case's dtype."""
    rng = np.random.default_rng(seed)
    if case.kind in SEQUENCES:
        net, _ = load_symprop_network(case.spec)  # the parameters' shapes, in PARAM_NAMES order
        shapes = net.PARAM_SHAPES if net is not None else ()
        params = tuple(rng.normal(0, 1 / np.sqrt(shape[0]), shape) for shape in shapes)
        inputs, outputs = case.steps * case.sizes[0], CLASSES
    elif case.kind == BATCHNORM_ADAM:
        i, h, o = case.sizes
        params = (rng.normal(0, np.sqrt(2 / i), (i, h)), rng.normal(0, 0.1, h),
                  rng.uniform(0.5, 1.5, h), rng.normal(0, 0.1, h),
                  rng.normal(0, np.sqrt(2 / h), (h, o)), rng.normal(0, 0.1, o))
        inputs, outputs = i, o
    else:
        (c, rows, cols), (filters, k), (hidden, outputs) = case.image, case.conv, case.sizes
        flat = int(np.prod(case.pooled))
        params = (rng.normal(0, np.sqrt(2 / (c * k * k)), (filters, c, k, k)), rng.normal(0, 0.1, filters),
                  rng.normal(0, np.sqrt(2 / flat), (flat, hidden)), rng.normal(0, 0.1, hidden),
                  rng.normal(0, np.sqrt(2 / hidden), (hidden, outputs)), rng.normal(0, 0.1, outputs))
        inputs = c * rows * cols
    X = rng.random((case.batch, inputs))
    T = np.eye(outputs)[rng.integers(0, outputs, case.batch)]
    dtype = DTYPES[case.dtype]
    return tuple(p.astype(dtype) for p in params), X.astype(dtype), T.astype(dtype)


# --- timing ------------------------------------------------------------------------------

@dataclass
class Timing:
    """Seconds per call: each sample is the mean over ``calls_per_sample`` back-to-back calls."""

    samples: list[float] = field(default_factory=list)
    calls_per_sample: int = 1
    # Thread use measured during the timed samples: process CPU time over wall time (1.0 = one
    # core busy; 2.0 = two cores) and the most threads the process had (/proc/self/task).
    cpu_s: float = 0.0
    wall_s: float = 0.0
    threads: int = 0

    @property
    def cores_used(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def iqr(self) -> tuple[float, float]:
        q1, q3 = np.percentile(self.samples, [25, 75])
        return float(q1), float(q3)

    def as_dict(self) -> dict:
        q1, q3 = self.iqr
        return {"median_s": self.median, "q1_s": q1, "q3_s": q3,
                "calls_per_sample": self.calls_per_sample, "samples_s": self.samples,
                "cores_used": self.cores_used, "threads": self.threads}


def calls_for(fn, target_s: float) -> int:
    """How many back-to-back calls take about target_s (at least one)."""
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= target_s or calls >= 1 << 22:
            return max(1, int(calls * target_s / max(elapsed, 1e-9)))
        calls *= 4


def time_round_robin(fns: dict, repeats: int, warmup: int, sample_s: float, settle_s: float = 0.0) -> dict[str, Timing]:
    """Time each callable, interleaved round by round so that slow drifts of the machine's load
    hit all alike. Before each sample the other libraries' thread pools get ``settle_s`` to go
    idle (OpenBLAS and OpenMP threads spin after a call and would steal the 2 cores), then
    one untimed call wakes this library's own pool, as in a running training loop."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    timings = {key: Timing(calls_per_sample=calls_for(fn, sample_s) if sample_s else 1)
               for key, fn in fns.items()}
    for _ in range(repeats):
        for key, fn in fns.items():
            if settle_s:
                time.sleep(settle_s)
                fn()
            timing = timings[key]
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(timing.calls_per_sample):
                fn()
            wall = time.perf_counter() - start
            timing.cpu_s += time.process_time() - cpu
            timing.wall_s += wall
            timing.threads = max(timing.threads, thread_count())
            timing.samples.append(wall / timing.calls_per_sample)
    return timings


def thread_count() -> int:
    """Threads of this process now (Linux: /proc/self/task), 0 where that cannot be read."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def pin_to_one_core() -> int | None:
    """Restrict this process, and every process and thread it starts, to one core (the first
    it may use): the one sure way to hold every library to one thread, since XLA sizes its
    pool from the machine and ignores the thread flags (JAX once used both cores at
    --threads 1). Returns the core, or None where affinity cannot be set."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    # Linux sets affinity per thread: the threads that already run (numpy's OpenBLAS pool,
    # started when numpy was imported) are pinned one by one; later ones inherit it.
    tasks = os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ["0"]
    for task in tasks:
        try:
            os.sched_setaffinity(int(task), {core})
        except (ProcessLookupError, PermissionError):  # a thread that ended meanwhile
            pass
    os.sched_setaffinity(0, {core})
    return core


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


# --- the pieces of a run -----------------------------------------------------------------

def load_symprop_network(spec: str):
    """(module, None) or (None, why not): the network API lives in codegen/."""
    try:
        from symprop.codegen.network import load_network
    except ImportError as exc:
        return None, f"skipped: codegen.network not available ({exc})"
    return load_network(spec), None


def optional_libraries(threads: int | None = None) -> dict:
    """name -> module or None; JAX switched to real float64 for the float64 rows."""
    if threads == 1:  # XLA reads its thread settings once, at import
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    libs = {"torch": comp.import_optional("torch"), "jax": comp.import_optional("jax")}
    if libs["jax"] is not None:
        comp.enable_jax_float64(libs["jax"])
    return libs


def limit_threads(threads: int, libs: dict):
    """Every BLAS and OpenMP pool (numpy's, the kernels' and numba's np.dot's, PyTorch's) to
    ``threads``: on a shared 2-core machine a second thread waits for a busy core."""
    threadpoolctl = comp.import_optional("threadpoolctl")
    if threadpoolctl is None:
        raise SympropError('--threads needs threadpoolctl, which is not installed: pip install "symprop[bench]"')
    comp.import_optional("scipy.linalg.cython_blas")  # load the BLAS numba's np.dot calls first,
    from .breakdown import GEMM_BLAS  # noqa: F401  (and the one the kernels call: MKL's where installed)
    if libs["torch"] is not None:
        libs["torch"].set_num_threads(threads)
    return threadpoolctl.threadpool_limits(limits=threads)


def build_steps(case: Case, libs: dict) -> tuple[dict, dict]:
    """(key -> step callable, key -> skip reason) for one case."""
    params, X, T = make_data(case)
    steps, skipped = {}, {}
    net, why = load_symprop_network(case.spec)
    if net is None:
        skipped[SYMPROP] = why
    else:
        steps[SYMPROP] = comp.symprop_step(net, case, params, X, T)
    steps[NUMPY] = comp.numpy_step(case, params, X, T)
    torch, jax = libs["torch"], libs["jax"]
    if torch is None:
        skipped[TORCH_NN] = skipped[TORCH_MANUAL] = "skipped: not installed (pip install -r requirements-bench.txt)"
    else:
        steps[TORCH_NN] = comp.torch_module_step(torch, case, params, X, T)
        steps[TORCH_MANUAL] = comp.torch_manual_step(torch, case, params, X, T)
    if jax is None:
        skipped[JAX] = "skipped: not installed (pip install -r requirements-bench.txt)"
    else:
        steps[JAX] = comp.jax_step(jax, case, params, X, T)
    return steps, skipped


NOT_INSTALLED = "skipped: not installed (pip install -r requirements-bench.txt)"
SYMPROP_WORKSPACE = "symprop-workspace"  # the same step on a kept workspace (NetCase only, in VARIANT_LABELS)


def build_net_steps(case: NetCase, libs: dict, workspace: bool = False) -> tuple[dict, dict]:
    """(key -> step callable with .snapshot(), key -> skip reason) for a NetCase; with
    workspace=True also SYMPROP_WORKSPACE, symprop's step on a workspace allocated once."""
    params, X, T = make_net_data(case)
    steps, skipped = {}, {NUMPY: "skipped: no numpy layer classes for this network"}
    net, why = load_symprop_network(case.spec)
    symprop_step = comp.symprop_adam_step if case.kind == BATCHNORM_ADAM else comp.symprop_sgd_net_step
    if net is None:
        skipped[SYMPROP] = why
    else:
        steps[SYMPROP] = symprop_step(net, case, params, X, T)
        if workspace:
            steps[SYMPROP_WORKSPACE] = symprop_step(net, case, params, X, T, workspace=True)
    torch, jax = libs["torch"], libs["jax"]
    if torch is None:
        skipped[TORCH_NN] = skipped[TORCH_MANUAL] = NOT_INSTALLED
    elif case.kind in SEQUENCES:
        steps[TORCH_NN] = comp.torch_sequence_module_step(torch, case, params, X, T)
        steps[TORCH_MANUAL] = comp.torch_sequence_manual_step(torch, case, params, X, T)
    elif case.kind == BATCHNORM_ADAM:
        steps[TORCH_NN] = comp.torch_batchnorm_adam_module_step(torch, case, params, X, T)
        steps[TORCH_MANUAL] = comp.torch_batchnorm_adam_manual_step(torch, case, params, X, T)
    else:
        steps[TORCH_NN] = comp.torch_conv_module_step(torch, case, params, X, T)
        skipped[TORCH_MANUAL] = "skipped: not written for the conv network (compared with nn + optim and JAX)"
    if jax is None:
        skipped[JAX] = NOT_INSTALLED
    else:
        jax_step = {BATCHNORM_ADAM: comp.jax_batchnorm_adam_step, CONVNET: comp.jax_conv_step}.get(
            case.kind, comp.jax_sequence_step)
        steps[JAX] = jax_step(jax, case, params, X, T)
    return steps, skipped


GEMM_SHAPE = (1024, 784, 1024)  # the largest product of a step: X W1 at 784-1024-10, batch 1024
GEMM_FLOP = 2 * GEMM_SHAPE[0] * GEMM_SHAPE[1] * GEMM_SHAPE[2]
# The GEMM each library runs on the same operands, timed in every case's rounds: numpy's np.dot
# is the peak that "% of GEMM peak" divides by (GEMM); the others show where the competitors'
# BLAS stand against it, so a step at the roofline is read against their products, not claimed
# as a win. symprop's own BLAS is the one its kernels' _gemm calls (MKL's where installed, else
# the OpenBLAS SciPy ships, which numba's np.dot calls), not numpy's copy.
GEMM_NUMBA, GEMM_TORCH, GEMM_JAX = "gemm-numba", "gemm-torch", "gemm-jax"
GEMM_LABELS = {GEMM: "GEMM numpy np.dot (peak)", GEMM_NUMBA: "GEMM symprop's _gemm",
               GEMM_TORCH: "GEMM PyTorch torch.mm", GEMM_JAX: "GEMM JAX jit(jnp.dot)"}
GEMM_SHORT = {GEMM: "numpy", GEMM_NUMBA: "symprop's BLAS", GEMM_TORCH: "PyTorch", GEMM_JAX: "JAX"}
PRODUCTS = "products-alone"  # the step's own matrix products alone, at its shapes: its roofline


def gemm_operands(dtype: str):
    """The GEMM-peak operands (m, k) and (k, n) in ``dtype``, the same in every library."""
    rng = np.random.default_rng(1)
    m, k, n = GEMM_SHAPE
    return rng.random((m, k)).astype(DTYPES[dtype]), rng.random((k, n)).astype(DTYPES[dtype])


def gemm_call(dtype: str):
    """np.dot on the largest product of a step, into a preallocated output: the BLAS peak."""
    a, b = gemm_operands(dtype)
    out = np.empty((a.shape[0], b.shape[1]), a.dtype)
    return lambda: np.dot(a, b, out=out)


def gemm_calls(dtype: str, libs: dict) -> tuple[dict, dict]:
    """(key -> callable, key -> skip reason): the GEMM of numpy (the peak), of the kernels'
    _gemm (the BLAS symprop's kernels call) and of each installed competitor, on the same operands."""
    from .breakdown import products_call
    from symprop.symbolic.ops.base import Product

    a, b = gemm_operands(dtype)
    m, k, n = GEMM_SHAPE
    calls = {GEMM: gemm_call(dtype), GEMM_NUMBA: products_call([Product("GEMM", m, k, n)], dtype, seed=1)}
    skipped = {}
    for key, library, make in ((GEMM_TORCH, "torch", comp.torch_gemm), (GEMM_JAX, "jax", comp.jax_gemm)):
        if libs.get(library) is None:
            skipped[key] = NOT_INSTALLED
        else:
            calls[key] = make(libs[library], a, b)
    return calls, skipped


def gemm_peak(dtype: str, repeats: int, sample_s: float) -> dict:
    """GFLOP/s of np.dot on GEMM_SHAPE, timed on its own at the start of the run."""
    timing = time_round_robin({"dot": gemm_call(dtype)}, repeats, 1, sample_s)["dot"]
    return {"shape": list(GEMM_SHAPE), "gflops": GEMM_FLOP / timing.median / 1e9, **timing.as_dict()}


def numba_blas():
    """threadpoolctl's controllers of the BLAS the generated kernels call: MKL's where it is
    installed (``GEMM_BLAS``), else the OpenBLAS SciPy ships (reached through
    scipy.linalg.cython_blas), not numpy's own copy, which the numpy classes use."""
    import scipy
    import threadpoolctl

    from .breakdown import GEMM_BLAS

    comp.import_optional("scipy.linalg.cython_blas")
    controllers = threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
    if GEMM_BLAS == "mkl":
        return [lib for lib in controllers if lib.internal_api == "mkl"]
    scipy_dir = Path(scipy.__file__).resolve().parent
    shipped = [scipy_dir, scipy_dir.parent / "scipy.libs"]
    return [lib for lib in controllers if any(Path(lib.filepath).resolve().is_relative_to(folder) for folder in shipped)]


@contextlib.contextmanager
def symprop_threads(case, cores: int):
    """In --threads all: symprop's BLAS at the thread count `symprop train` would choose for
    this case by size (training/threads.py; the machine's load is left out, so that a run
    measures the size rule); yields that count."""
    from symprop.symbolic.graph import parse_net

    threads = auto_threads(parse_net(case.spec), case.batch, cores=cores, load=0.0)
    libs = numba_blas()
    before = [lib.num_threads for lib in libs]
    for lib in libs:
        lib.set_num_threads(threads)
    try:
        yield threads
    finally:
        for lib, count in zip(libs, before):
            lib.set_num_threads(count)


def case_products(case) -> list:
    """The matrix products of one step of the case, as its layers' ops list them (the same
    BLAS calls at the same shapes and layouts as the generated kernel)."""
    from .breakdown import step_products
    return step_products(case.spec, case.batch)


def run_case(case, libs: dict, opts) -> dict:
    """Every competitor's step on one case, timed in the same rounds as np.dot's peak, the
    step's matrix products alone (its roofline) and each library's GEMM on the peak's operands
    (a NetCase also times symprop's step on a kept workspace, reported under "variants")."""
    from .breakdown import products_call

    if isinstance(case, NetCase):
        steps, skipped = build_net_steps(case, libs, workspace=True)
    else:
        steps, skipped = build_steps(case, libs)
    products = case_products(case)
    gemms, gemm_skipped = gemm_calls(case.dtype, libs)
    with (symprop_threads(case, opts.all_cores) if opts.all_cores else contextlib.nullcontext()) as threads:
        timings = time_round_robin({**steps, PRODUCTS: products_call(products, case.dtype), **gemms},
                                   opts.repeats, opts.warmup, opts.sample_s, opts.settle_s)
    peak = {"shape": list(GEMM_SHAPE), "gflops": GEMM_FLOP / timings[GEMM].median / 1e9, **timings[GEMM].as_dict()}
    gemm = {key: ({"label": GEMM_LABELS[key], **timings.pop(key).as_dict()} if key in gemms
                  else {"label": GEMM_LABELS[key], "skipped": gemm_skipped[key]}) for key in GEMM_LABELS}
    for row in gemm.values():
        if "median_s" in row:
            row["gflops"] = GEMM_FLOP / row["median_s"] / 1e9
            row["peak_fraction"] = row["gflops"] / peak["gflops"]
    variants = {}
    if SYMPROP_WORKSPACE in timings:
        t = timings.pop(SYMPROP_WORKSPACE)
        gflops = case.matrix_flop / t.median / 1e9
        variants[SYMPROP_WORKSPACE] = {**t.as_dict(), "gflops": gflops, "peak_fraction": gflops / peak["gflops"]}
    alone = timings.pop(PRODUCTS)
    base = timings[NUMPY].median if NUMPY in timings else None
    ref = timings[SYMPROP].median if SYMPROP in timings else None
    rows = {}
    for key in LABELS:
        if key in skipped:
            rows[key] = {"skipped": skipped[key]}
            continue
        t = timings[key]
        gflops = case.matrix_flop / t.median / 1e9
        rows[key] = {**t.as_dict(), "x_numpy": base / t.median if base else None,
                     "vs_symprop": t.median / ref if ref else None,
                     "gflops": gflops, "peak_fraction": gflops / peak["gflops"]}
    flop = sum(p.flop for p in products)
    roofline = {"products": [asdict(p) for p in products], "mflop": flop / 1e6, **alone.as_dict(),
                "gflops": flop / alone.median / 1e9, "peak_fraction": flop / alone.median / 1e9 / peak["gflops"],
                # how much of symprop's step its products alone take, and the step over them
                "share_of_step": alone.median / ref if ref else None,
                "step_over_products": ref / alone.median if ref else None}
    out = {"case": case.name, "spec": case.spec, **asdict(case),
           "matrix_mflop": case.matrix_flop / 1e6, "gemm_peak": peak, "gemm": gemm,
           "products_alone": roofline, "results": rows}
    if threads is not None:
        out["symprop_blas_threads"] = threads
    if variants:
        out["variants"] = variants
    return out


def run_steps_per_call(libs, opts) -> list[dict]:
    """2-2-2: one step per call against k steps in one call, per dtype."""
    out = []
    for dtype in DTYPES:
        case = worked_example(dtype)
        net, why = load_symprop_network(case.spec)
        if net is None:
            out.append({"dtype": dtype, "skipped": why})
            continue
        params, X, T = make_data(case)
        k = 1 if opts.quick else STEPS_PER_CALL
        fns = {"one": comp.symprop_step(net, case, params, X, T),
               "packed": comp.symprop_step_packed(net, case, params, X, T),
               "k": comp.symprop_steps(net, case, params, X, T, k)}
        t = time_round_robin(fns, opts.repeats, opts.warmup, opts.sample_s)
        out.append({"dtype": dtype, "k": k, "per_call_s": t["one"].median,
                    "packed_per_call_s": t["packed"].median,
                    "per_step_in_loop_s": t["k"].median / k,
                    "one": t["one"].as_dict(), "packed": t["packed"].as_dict(), "k_call": t["k"].as_dict()})
    return out


_KEEP_ALIVE = []  # the temporary directory of the generated Mish module lives as long as the run


@functools.cache
def mish_kernels():
    """(forward_backward(x, dout, y, dx), None) or (None, why): the Mish activation printed by
    codegen's per-layer kernel generator (the printer of generated/layers.py) into a temporary
    module, imported like any generated file."""
    try:
        import importlib.util

        from symprop.codegen.layer_kernels import layers_module_body
        from symprop.symbolic.layers import Registry, formula_layer
    except ImportError as exc:
        return None, f"skipped: codegen's layer-kernel generator not available ({exc})"
    body, _ = layers_module_body(Registry([formula_layer(MISH, name="mish")]))
    directory = tempfile.TemporaryDirectory(prefix="symprop-bench-mish-")
    _KEEP_ALIVE.append(directory)
    path = Path(directory.name) / "bench_mish_kernels.py"
    from symprop.codegen import files  # a header, so the module's hand-edit check passes
    path.write_text(files.header("Mish kernels timed by symprop bench.", "benchmarks/bench.py",
                                 "symprop bench", [f"formula {MISH}"], "bench", body) + body)
    spec = importlib.util.spec_from_file_location("symprop_bench_mish_kernels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fused = module.mish_forward_backward_kernel

    def forward_backward(x, dout, y, dx):
        """Forward into y and backward into dx in one pass (outputs preallocated, as a loop keeps them);
        the layer kernels take (N, F) arrays, so the 1e6 elements are one row."""
        fused(*(array.reshape(1, -1) for array in (x, dout, y, dx)))
        return y, dx

    return forward_backward, None


def run_mish(opts) -> list[dict]:
    """Forward+backward of the Mish formula on 1e6 elements, kernel against numpy, per dtype."""
    kernel, why = mish_kernels()
    results = []
    for dtype in DTYPES:
        rng = np.random.default_rng(2)
        x = rng.normal(0, 3, MISH_ELEMENTS).astype(dtype)
        dout = rng.normal(0, 1, MISH_ELEMENTS).astype(dtype)
        y, dx = np.empty_like(x), np.empty_like(x)
        fns = {"numpy": lambda: comp.mish_numpy(x, dout)}
        if kernel is not None:
            fns["symprop"] = lambda: kernel(x, dout, y, dx)
        t = time_round_robin(fns, opts.repeats, opts.warmup, opts.sample_s)
        result = {"formula": MISH, "elements": MISH_ELEMENTS, "dtype": dtype, "numpy": t["numpy"].as_dict()}
        if kernel is None:
            result["symprop"] = {"skipped": why}
        else:
            y_ref, dx_ref = comp.mish_numpy(x.astype(np.float64), dout.astype(np.float64))
            kernel(x, dout, y, dx)
            result["max_abs_difference"] = float(max(np.abs(y - y_ref).max(), np.abs(dx - dx_ref).max()))
            result["symprop"] = t["symprop"].as_dict()
            result["speedup"] = t["numpy"].median / t["symprop"].median
        results.append(result)
    return results


def run_subprocess(args: list[str], env_extra: dict, timeout: float) -> tuple[float, subprocess.CompletedProcess]:
    env = first_step.child_environment(**env_extra)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return time.perf_counter() - start, proc


def run_compile_probe(specs: list[str]) -> dict:
    """Cold compile, then load from the warm cache, each in a fresh process with its own cache."""
    result = {"specs": specs}
    with tempfile.TemporaryDirectory(prefix="symprop-bench-cache-") as cache:
        env = {"NUMBA_CACHE_DIR": cache, "SYMPROP_CACHE": cache}
        for phase in ("cold", "warm"):
            wall, proc = run_subprocess(["-m", "symprop.benchmarks.compile_probe", *specs], env, 900)
            if proc.returncode != 0:
                result[phase] = {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
                continue
            result[phase] = {"process_wall_s": wall, **json.loads(proc.stdout)}
    return result


def run_regenerate() -> dict:
    """Time ``symprop generate`` in a fresh process, into a temporary directory when it can."""
    _, help_proc = run_subprocess(["-m", "symprop", "generate", "--help"], {}, 120)
    if help_proc.returncode != 0:
        return {"skipped": "skipped: no `symprop generate` command yet"}
    with tempfile.TemporaryDirectory(prefix="symprop-bench-gen-") as out_dir:
        args = ["-m", "symprop", "generate"]
        option = next((o for o in ("--directory", "--output-dir", "--out-dir") if o in help_proc.stdout), None)
        if option is None:
            return {"skipped": "skipped: `symprop generate` has no output-directory option; "
                               "not regenerating into the checkout"}
        wall, proc = run_subprocess(args + [option, out_dir], {}, 900)
        files = sum(1 for _ in Path(out_dir).rglob("*.py"))
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:], "seconds": wall}
    return {"seconds": wall, "command": "symprop generate " + option + " TMP", "files": files}


def blas_info(libs: dict) -> dict:
    """Which BLAS (and thread pools) this run used: threadpoolctl when installed, else numpy's config."""
    from .breakdown import GEMM_BLAS

    info = {"numpy": np.__version__, "python": platform.python_version(), "symprop_blas": GEMM_BLAS,
            "machine": platform.machine(), "cpus": os.cpu_count()}
    for name in ("numba", "torch", "jax"):
        module = libs.get(name) or comp.import_optional(name)
        if module is not None:
            info[name] = module.__version__
    if libs.get("torch") is not None:
        info["torch_threads"] = libs["torch"].get_num_threads()
    threadpoolctl = comp.import_optional("threadpoolctl")
    if threadpoolctl is not None:
        info["threadpools"] = [{k: pool.get(k) for k in ("internal_api", "version", "architecture",
                                                          "num_threads", "threading_layer", "filepath")}
                               for pool in threadpoolctl.threadpool_info()]
    else:
        blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        info["numpy_blas"] = {k: blas.get(k) for k in ("name", "version", "openblas configuration")}
        info["threadpools_note"] = "install threadpoolctl to see thread counts"
    return info


# --- targets (reported, never asserted) ---------------------------------------------------

def _row(cases, name):
    return next((c["results"] for c in cases if c["case"] == name), None)


def _case(cases, name):
    return next(c for c in cases if c["case"] == name)


# The fraction of the GEMM peak the convolution and normalisation steps are to reach.
PEAK_TARGETS = {CONVNET: 0.70, BATCHNORM_ADAM: 0.80}


def peak_target(case: dict, fraction: float) -> tuple[str, bool | None, str]:
    """(target, met, figure): symprop's step at ``fraction`` of np.dot's GEMM peak or more,
    with the step's products alone beside it (their own % of the peak bounds the step's)."""
    target = f"{case['case']}: symprop's step >= {100 * fraction:.0f}% of GEMM peak"
    ours = case["results"][SYMPROP]
    if "median_s" not in ours:
        return target, None, "n/a (not measured)"
    figure = (f"{ours['gflops']:.1f} GFLOP/s = {100 * ours['peak_fraction']:.1f}% of np.dot's "
              f"{case['gemm_peak']['gflops']:.1f} in the same rounds")
    if "products_alone" in case:
        figure += "; " + roofline_figure(case)
    return target, ours["peak_fraction"] >= fraction, figure


def net_case_target(case: dict) -> tuple[str, bool | None, str]:
    """(target, met, figure) of a NetCase: symprop's step at least as fast as the best
    competitor in the same run; the ratio, the kept-workspace variant and the fraction of the
    GEMM peak are reported whether or not it is met."""
    rows = case["results"]
    if case["kind"] == BATCHNORM_ADAM:
        target = (f"{case['case']}: symprop's fused train_step_adam at least as fast as the best of "
                  "PyTorch nn+optim.Adam, PyTorch hand-written and JAX")
    elif case["kind"] in SEQUENCES:
        target = (f"{case['case']}: symprop's fused sgd_step at least as fast as the best of "
                  "PyTorch nn+optim.SGD, PyTorch ops+autograd and JAX")
    else:
        target = (f"{case['case']}: symprop's fused sgd_step at least as fast as the best of "
                  "PyTorch nn+optim.SGD and JAX")
    times = {k: rows[k]["median_s"] for k in COMPETITORS if "median_s" in rows[k]}
    if "median_s" not in rows[SYMPROP] or not times:
        return target, None, "n/a (not measured: " + "; ".join(
            r["skipped"] for r in rows.values() if "skipped" in r) + ")"
    best = min(times, key=times.get)
    ours = rows[SYMPROP]["median_s"]
    label = SEQUENCE_MANUAL if best == TORCH_MANUAL and case["kind"] in SEQUENCES else LABELS[best]
    figure = (f"symprop {fmt_time(ours)}, {label} {fmt_time(times[best])}: best / symprop = "
              f"{times[best] / ours:.2f}x; symprop {rows[SYMPROP]['gflops']:.1f} GFLOP/s = "
              f"{100 * rows[SYMPROP]['peak_fraction']:.0f}% of np.dot's {case['gemm_peak']['gflops']:.0f} "
              f"({case['matrix_mflop']:.1f} MFLOP of matrix products per step)")
    kept = case.get("variants", {}).get(SYMPROP_WORKSPACE)
    if kept:
        figure += f"; on a kept workspace {fmt_time(kept['median_s'])} ({times[best] / kept['median_s']:.2f}x)"
    return target, ours <= times[best], figure


def evaluate_targets(report: dict) -> list[dict]:
    """Each target of the benchmark issue with the figure this run reached."""
    cases, targets = report["cases"], []

    def add(target, met, figure):
        targets.append({"target": target, "met": met, "figure": figure})

    for size in ("784-50-10 b100", "784-100-10 b100", "784-1024-10 b1024"):
        for activation in ("relu", "sigmoid"):
            for dtype in DTYPES:
                name = f"{size} {activation} {dtype}"
                rows = _row(cases, name)
                if rows is None:
                    continue
                target = f"{name}: symprop at least as fast as the best competitor (PyTorch or JAX)"
                times = {k: rows[k]["median_s"] for k in COMPETITORS if "median_s" in rows[k]}
                if "median_s" not in rows[SYMPROP] or not times:
                    add(target, None, "n/a (not measured)")
                    continue
                best = min(times, key=times.get)
                ours = rows[SYMPROP]["median_s"]
                figure = (f"symprop {fmt_time(ours)}, {LABELS[best]} {fmt_time(times[best])} "
                          f"({times[best] / ours:.2f}x); {rows[SYMPROP]['x_numpy']:.2f}x numpy")
                if size.startswith("784-1024-10"):  # at the roofline: the products and the GEMMs beside it
                    figure += "; " + roofline_figure(_case(cases, name))
                add(target, ours <= times[best], figure)
    for case in cases:
        if case.get("kind") in (BATCHNORM_ADAM, CONVNET, *SEQUENCES):
            add(*net_case_target(case))
        if case.get("kind") in PEAK_TARGETS:
            add(*peak_target(case, PEAK_TARGETS[case["kind"]]))
    for activation in ("relu", "sigmoid"):
        name = f"784-1024-10 b1024 {activation} float32"
        if _row(cases, name) is not None:
            add(*peak_target(_case(cases, name), 0.85))
    for dtype in DTYPES:
        rows = _row(cases, worked_example(dtype).name)
        if rows is None or "median_s" not in rows[SYMPROP]:
            continue
        ours = rows[SYMPROP]["median_s"]
        torch_times = [rows[k]["median_s"] for k in (TORCH_NN, TORCH_MANUAL) if "median_s" in rows[k]]
        figure = f"{ours * 1e6:.3f} us per call"
        packed = next((e["packed_per_call_s"] for e in report.get("steps_per_call", [])
                       if e["dtype"] == dtype and "packed_per_call_s" in e), None)
        if packed is not None:  # the same step on one flat parameter vector, timed beside k steps
            figure += f" (sgd_step_packed_kernel: {packed * 1e6:.3f} us)"
            ours = min(ours, packed)
        if torch_times:
            figure += f"; best PyTorch {fmt_time(min(torch_times))} = {min(torch_times) / ours:.0f}x"
        met = ours <= 0.5e-6 and (not torch_times or min(torch_times) / ours >= 50)
        add(f"2-2-2 {dtype}: one step call <= 0.5 us (>= 50x PyTorch)", met, figure)
    for entry in report.get("steps_per_call", []):
        if "per_step_in_loop_s" in entry:
            per_step = entry["per_step_in_loop_s"]
            add(f"2-2-2 {entry['dtype']}: k steps per call <= 0.1 us per step", per_step <= 0.1e-6,
                f"{per_step * 1e6:.4f} us per step (k = {entry['k']})")
    for mish in report.get("mish", []):
        target = f"user formula (Mish) {mish['dtype']} fused forward+backward >= 3x numpy composition"
        if "speedup" in mish:
            add(target, mish["speedup"] >= 3, f"{mish['speedup']:.2f}x ({fmt_time(mish['symprop']['median_s'])} "
                f"vs numpy {fmt_time(mish['numpy']['median_s'])})")
        else:
            add(target, None, mish["symprop"]["skipped"])
    warm = report.get("compile", {}).get("warm", {})
    if "total_s" in warm:
        add("second process loads all generated kernels from cache < 1 s", warm["total_s"] < 1.0,
            f"{warm['total_s']:.2f} s for {warm['kernels']} kernel specialisations "
            f"(process wall {warm['process_wall_s']:.2f} s)")
    else:
        add("second process loads all generated kernels from cache < 1 s", None,
            str(warm.get("error", report.get("compile", {}).get("skipped", "n/a"))))
    if report["settings"]["threads"] == 1:
        used = {(case["case"], key): row["cores_used"] for case in cases
                for key, row in case["results"].items() if "cores_used" in row}
        if used:
            (worst_case, worst_key), most = max(used.items(), key=lambda item: item[1])
            add("--threads 1: every library on one core (CPU time / wall time <= 1.05 in every row)", most <= 1.05,
                f"most: {LABELS[worst_key]} at {worst_case}, {most:.2f} cores"
                + (f"; pinned to core {report['settings']['pinned_core']}"
                   if report["settings"].get("pinned_core") is not None else "; not pinned"))
    if report["settings"].get("all_cores"):
        cores = report["settings"]["threads"]
        for key in LABELS:
            used = [case["results"][key]["cores_used"] for case in cases if "cores_used" in case["results"][key]]
            if used and cores > 1:
                add(f"--threads all: {LABELS[key]} used more than one of the {cores} cores in some row",
                    max(used) > 1.2, f"most {max(used):.2f} cores")
    for r in report.get("first_step", []):
        what = (f"ready to train: {r['name']} ({r['command']})" if r["kind"] == "command"
                else f"new spec, first sgd_step ({r['name']})")
        for phase, caches in (("cold", "empty caches"), ("warm", "warm caches")):
            target, run = r["targets"][phase], r[phase]
            if target is None:
                continue
            if "error" in run:
                add(f"{what}: CPU to the first step, {caches}, <= {target:g} s", None, f"failed: {run['error']}")
            else:
                add(f"{what}: CPU to the first step, {caches}, <= {target:g} s", run["cpu_s"] <= target,
                    f"{run['cpu_s']:.2f} s CPU ({run['process_wall_s']:.1f} s wall)")
    regen = report.get("regenerate", {})
    add("regenerating all of generated/ < 30 s",
        regen["seconds"] < 30 if "seconds" in regen and "error" not in regen else None,
        f"{regen['seconds']:.1f} s" if "seconds" in regen else str(regen.get("skipped", regen.get("error"))))
    if report["settings"]["quick"]:  # one untimed call per row is a smoke test, not a measurement
        for t in targets:
            t["met"], t["figure"] = None, "--quick, not judged: " + t["figure"]
    return targets


# --- printing ------------------------------------------------------------------------------

def print_case(case: dict) -> None:
    print(f"\n{case['case']}   ({case['matrix_mflop']:.3g} MFLOP of matrix work per step; spec {case['spec']!r})")
    print(f"  GEMM peak in the same rounds: {case['gemm_peak']['gflops']:.1f} GFLOP/s")
    if "symprop_blas_threads" in case:
        print(f"  symprop's BLAS threads, chosen by size as symprop train does: {case['symprop_blas_threads']} "
              f"({case['matrix_mflop']:.0f} MFLOP per step; every core from "
              f"{MIN_STEP_FLOP / 1e6:.0f})")
    print(f"  {'competitor':<28}{'median':>10}{'IQR':>22}{'x numpy':>9}{'t/symprop':>11}"
          f"{'GFLOP/s':>9}{'% peak':>8}{'cores':>7}{'threads':>9}")
    for key, label in LABELS.items():
        row = case["results"][key]
        if key == TORCH_MANUAL and case.get("kind") in SEQUENCES:
            label = SEQUENCE_MANUAL
        if "skipped" in row:
            print(f"  {label:<28}{row['skipped']}")
            continue
        ratio = f"{row['vs_symprop']:.2f}" if row["vs_symprop"] else "-"
        x_numpy = f"{row['x_numpy']:.2f}" if row.get("x_numpy") else "-"
        iqr = f"{fmt_time(row['q1_s'])} - {fmt_time(row['q3_s'])}"
        print(f"  {label:<28}{fmt_time(row['median_s']):>10}{iqr:>22}{x_numpy:>9}"
              f"{ratio:>11}{row['gflops']:>9.2f}{100 * row['peak_fraction']:>7.1f}%"
              f"{row.get('cores_used', 0):>7.2f}{row.get('threads', 0):>9}")
    ours = case["results"][SYMPROP].get("median_s")
    extra = [(VARIANT_LABELS[key], row) for key, row in case.get("variants", {}).items()]
    if "products_alone" in case:
        alone = case["products_alone"]
        extra.append((f"products alone ({blas_calls(alone)} calls)", alone))
    for label, row in extra:  # t/symprop: the time over symprop's step
        ratio = f"{row['median_s'] / ours:.2f}" if ours else "-"
        print_timing_row(label, row, ratio)
    for key, row in case.get("gemm", {}).items():
        if "skipped" in row:
            print(f"  {GEMM_LABELS[key]:<28}{row['skipped']}")
        else:
            print_timing_row(GEMM_LABELS[key], row, "-")
    if "products_alone" in case:
        print(f"  {roofline_figure(case)}")


def print_timing_row(label: str, row: dict, ratio: str) -> None:
    """A row of print_case's table that is not a competitor's step (no x numpy)."""
    iqr = f"{fmt_time(row['q1_s'])} - {fmt_time(row['q3_s'])}"
    print(f"  {label:<28}{fmt_time(row['median_s']):>10}{iqr:>22}{'-':>9}"
          f"{ratio:>11}{row['gflops']:>9.2f}{100 * row['peak_fraction']:>7.1f}%"
          f"{row.get('cores_used', 0):>7.2f}{row.get('threads', 0):>9}")


def mflop_text(mflop: float) -> str:
    """3355 rather than 3.35e+03; 0.004 and 32 as they are."""
    return f"{mflop:.0f}" if mflop >= 1000 else f"{mflop:.3g}"


def blas_calls(alone: dict) -> int:
    """How many BLAS calls the products alone make (a product per image or step repeats)."""
    return sum(product["count"] for product in alone["products"])


def roofline_figure(case: dict) -> str:
    """The case's step against its products alone and the libraries' GEMMs, in words: why a
    "% of GEMM peak" target is or is not within reach, measured in the same rounds."""
    alone = case["products_alone"]
    products, calls = len(alone["products"]), blas_calls(alone)
    text = (f"products alone: {fmt_time(alone['median_s'])} for the step's {products} products"
            + (f" ({calls} BLAS calls)" if calls != products else "")
            + f", {mflop_text(alone['mflop'])} MFLOP, = {100 * alone['peak_fraction']:.0f}% of the GEMM peak")
    if alone.get("share_of_step"):
        text += (f", {100 * alone['share_of_step']:.0f}% of symprop's step (the step is "
                 f"{alone['step_over_products']:.2f}x its products alone)")
    gemms = [f"{GEMM_SHORT[key]} {row['gflops']:.1f}" for key, row in case.get("gemm", {}).items() if "gflops" in row]
    if gemms:
        m, k, n = GEMM_SHAPE
        text += f"; GEMM {m}x{k} by {k}x{n} GFLOP/s in the same rounds: " + ", ".join(gemms)
    return text


def print_report(report: dict) -> None:
    m = report["machine"]
    print(f"symprop bench   python {m['python']}, numpy {m['numpy']}, numba {m.get('numba', '-')}, "
          f"torch {m.get('torch', 'not installed')}, jax {m.get('jax', 'not installed')}; "
          f"{m['cpus']} CPUs; symprop's kernels call {m.get('symprop_blas', 'openblas')}'s gemm")
    for pool in m.get("threadpools", []):
        print(f"  thread pool: {pool['internal_api']} {pool['version']} ({pool['architecture']}), "
              f"{pool['num_threads']} threads, {Path(pool['filepath']).name}")
    if "numpy_blas" in m:
        print(f"  numpy BLAS: {m['numpy_blas']}; {m['threadpools_note']}")
    if "torch_threads" in m:
        print(f"  torch intra-op threads: {m['torch_threads']}")
    load = m["load_average"]
    busy = max(load.values()) > 0.5 * (m["cpus"] or 1)
    print(f"  load average {load['start']:.1f} at the start, {load['end']:.1f} at the end on {m['cpus']} CPUs"
          + ("  <- other processes were busy: absolute times are noisy, compare ratios" if busy else ""))
    for dtype, peak in report["gemm_peak"].items():
        print(f"  GEMM peak {dtype}: {peak['gflops']:.1f} GFLOP/s (np.dot {'x'.join(map(str, peak['shape']))}, "
              f"median {fmt_time(peak['median_s'])}, alone at the start; each case also times it among "
              "its competitors and its % peak uses that)")
    print(f"  settings: {report['settings']}   (times: median per step; IQR = 25th-75th percentile; "
          "x numpy = numpy time / time; t/symprop = time / symprop time; cores = process CPU time / wall "
          "time during that library's samples, threads = the process's threads then)")
    if report["settings"].get("pinned_core") is not None:
        print(f"  --threads 1: this process and its children are pinned to core {report['settings']['pinned_core']}")
    for case in report["cases"]:
        print_case(case)
    print("\n2-2-2: one step per call (sgd_step_kernel, sgd_step_packed_kernel) against k steps in one call (sgd_steps_kernel)")
    for entry in report["steps_per_call"]:
        if "skipped" in entry:
            print(f"  {entry['dtype']}: {entry['skipped']}")
        else:
            print(f"  {entry['dtype']}: {entry['per_call_s'] * 1e6:.3f} us per call, "
                  f"{entry['packed_per_call_s'] * 1e6:.3f} us per call on a packed vector (sgd_step_packed_kernel), "
                  f"{entry['per_step_in_loop_s'] * 1e6:.4f} us per step with k = {entry['k']} in one call")
    for mish in report["mish"]:
        print(f"\nuser formula {mish['formula']!r}, forward+backward on {mish['elements']:.0e} "
              f"{mish['dtype']} elements")
        print(f"  numpy composition: {fmt_time(mish['numpy']['median_s'])}")
        if "skipped" in mish["symprop"]:
            print(f"  symprop kernels: {mish['symprop']['skipped']}")
        else:
            print(f"  symprop kernels: {fmt_time(mish['symprop']['median_s'])}  ({mish['speedup']:.2f}x numpy; "
                  f"max |difference| from float64 numpy {mish['max_abs_difference']:.1e})")
    print("\nkernel compile (fresh process, empty cache) and load (fresh process, warm cache)")
    compile_ = report["compile"]
    if "skipped" in compile_:
        print(f"  {compile_['skipped']}")
    for phase in ("cold", "warm"):
        if phase in compile_:
            r = compile_[phase]
            if "error" in r:
                print(f"  {phase}: failed: {r['error']}")
            else:
                print(f"  {phase}: {r['total_s']:.2f} s for {r['kernels']} kernel specialisations in "
                      f"{len(r['networks'])} networks (process wall {r['process_wall_s']:.2f} s, "
                      f"imports {r['import_s']:.2f} s)")
    regen = report["regenerate"]
    print("\nregenerate generated/: " + (f"{regen['seconds']:.1f} s ({regen['command']}, {regen['files']} files)"
                                         if "seconds" in regen and "error" not in regen
                                         else str(regen.get("skipped", regen.get("error")))))
    if report.get("first_step"):
        print("\nready to train: CPU seconds from a fresh process to the first step, empty caches and warm")
        for r in report["first_step"]:
            print("  " + first_step.describe(r))
    print("\ntargets (reported, not asserted)")
    for t in report["targets"]:
        status = {True: "met", False: "NOT MET", None: "n/a"}[t["met"]]
        print(f"  [{status:>7}] {t['target']}: {t['figure']}")


def command_line(args) -> str:
    """The options that shape the figures, as the command a reader would type."""
    parts = ["symprop bench"]
    if args.quick:
        parts.append("--quick")
    if args.threads:
        parts.append(f"--threads {args.threads}")
    if args.only:
        parts.append(f"--only {args.only}")
    if args.repeats != 15:
        parts.append(f"--repeats {args.repeats}")
    return " ".join(parts)


def markdown_summary(report: dict, command: str) -> str:
    """The README's table: one row per case, medians and the ratios that answer the issue."""
    m = report["machine"]
    lines = [f"`{command}` — python {m['python']}, numpy {m['numpy']}, numba {m.get('numba', '-')}, "
             f"torch {m.get('torch', 'not installed')}, jax {m.get('jax', 'not installed')}, "
             f"symprop's BLAS {m.get('symprop_blas', 'openblas')}, {m['cpus']} CPUs, "
             f"threads: {report['settings']['threads']}, load average {m['load_average']['start']:.1f}"
             f"-{m['load_average']['end']:.1f}. Median time per training step.", "",
             "| case | symprop | numpy classes | PyTorch nn+optim | PyTorch manual | JAX jit "
             "| symprop vs numpy | best competitor / symprop | symprop % of GEMM peak "
             "| products alone: % of step, % of peak | GEMM GFLOP/s: numpy, symprop's BLAS, PyTorch, JAX |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for case in report["cases"]:
        rows = case["results"]
        cell = {k: fmt_time(r["median_s"]) if "median_s" in r else ("-" if k == NUMPY else "skipped")
                for k, r in rows.items()}
        ours = rows[SYMPROP].get("median_s")
        torch_times = [rows[k]["median_s"] for k in COMPETITORS if "median_s" in rows[k]]
        x_numpy = f"{rows[SYMPROP]['x_numpy']:.2f}x" if rows[SYMPROP].get("x_numpy") else "-"
        alone = case.get("products_alone", {})
        roofline = (f"{100 * alone['share_of_step']:.0f}%, {100 * alone['peak_fraction']:.0f}%"
                    if alone.get("share_of_step") else "-")
        gemms = ", ".join(f"{row['gflops']:.0f}" if "gflops" in row else "-" for row in case.get("gemm", {}).values())
        lines.append(f"| {case['case']} | {cell[SYMPROP]} | {cell[NUMPY]} | {cell[TORCH_NN]} | {cell[TORCH_MANUAL]} "
                     f"| {cell[JAX]} | {x_numpy} | "
                     f"{min(torch_times) / ours:.2f}x | {100 * rows[SYMPROP]['peak_fraction']:.0f}% "
                     f"| {roofline} | {gemms or '-'} |"
                     if ours and torch_times else
                     f"| {case['case']} | {cell[SYMPROP]} | {cell[NUMPY]} | - | - | - | - | - | - | {roofline} "
                     f"| {gemms or '-'} |")
    lines += ["", "| target | met | figure |", "|---|---|---|"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {({True: 'yes', False: 'no', None: 'n/a'})[t['met']]} | {t['figure']} |")
    return "\n".join(lines) + "\n"


# --- entry points --------------------------------------------------------------------------

def _threads(text: str):
    """--threads N or --threads all (returned as the string "all")."""
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of threads or 'all', got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="smallest network only, one iteration, no compile/regenerate subprocesses "
                             "beyond the smallest network (the smoke test)")
    parser.add_argument("--json", metavar="PATH", help="write every raw figure to PATH as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the summary table (as on the benchmarks page) to PATH")
    parser.add_argument("--repeats", type=int, default=15, help="timed samples per competitor (default 15)")
    parser.add_argument("--sample-ms", type=float, default=20.0,
                        help="aim for samples this long, repeating fast calls (default 20)")
    parser.add_argument("--only", metavar="TEXT", help="only the cases whose name contains TEXT, e.g. 784-100-10, "
                             "batchnorm-adam (a batch-norm network's Adam step) or convnet (a convolutional network)")
    parser.add_argument("--threads", type=_threads, metavar="N|all",
                        help="BLAS/OpenMP/XLA pools of every competitor at N threads (1: the process "
                             "pinned to one core) or at every core this process may use (all); needs "
                             "threadpoolctl; default: each library's own")
    parser.add_argument("--first-step", nargs="*", metavar="SPEC",
                        help="only the time to the first step: CPU seconds from a fresh process, with empty "
                             "caches and then warm, to the first training step of each documented "
                             "symprop train command (or to the first sgd_step of each SPEC), against the "
                             f"targets ({first_step.COLD_TARGET_S:g} s and {first_step.WARM_TARGET_S:g} s); "
                             "exit status 1 if one is missed")
    parser.add_argument("--no-subprocess", action="store_true",
                        help="skip the compile/load and regenerate measurements")
    parser.add_argument("--compare", nargs="+", metavar="OLD.json",
                        help="print how each same-run ratio moved against an older --json report, "
                             "flagging drops over 10%% (exit status 1 if any); OLD.json NEW.json "
                             "compares two saved reports without running")


def run_first_step(specs) -> list[dict]:
    """CPU seconds from a fresh process to the first step, empty caches and warm: the documented
    training commands (no specs) or each spec's first sgd_step (benchmarks/first_step.py)."""
    return first_step.run(None if not specs else [], specs)


def run_compare(paths: list[str], new: dict | None = None) -> int:
    """Print the ratios' changes against paths[0] (this run's report, or paths[1]); exit
    status 1 when a ratio fell by more than compare.REGRESSION."""
    from . import compare

    if len(paths) > 2 or (new is not None and len(paths) != 1):
        raise SympropError("--compare takes OLD.json (compare this run with it) or OLD.json NEW.json")
    old = compare.load_report(paths[0])
    if new is None:
        new = compare.load_report(paths[1])
    changes = compare.compare(old, new, LABELS)
    print(compare.describe(changes, paths[0], old, new))
    return 1 if any(c.regression for c in changes) else 0


def _write(path: str, option: str, text: str) -> None:
    """Through a temporary file beside it: a full disk leaves an older report as it was."""
    write_atomically(path, option, lambda stream: stream.write(text.encode("utf-8")))


def run(args) -> int:
    if args.compare is not None and len(args.compare) == 2:  # two saved reports: nothing to run
        return run_compare(args.compare)
    # refused before minutes of timing: a device, a file of another kind, the report compared against
    compared = args.compare or []
    if args.json:
        check_output(args.json, "--json", "report", inputs=compared)
    if args.markdown:
        check_output(args.markdown, "--markdown", "summary", inputs=[*compared, *([args.json] if args.json else [])])
    if args.compare is not None:
        from . import compare

        compare.load_report(args.compare[0])  # a bad OLD.json is refused before minutes of timing
    if args.first_step is not None:  # the time to the first step alone
        results = run_first_step(args.first_step)
        if args.json:
            _write(args.json, "--json", json.dumps({"first_step": results}, indent=1))
        failures = first_step.missed(results)
        print("targets: " + ("all met" if not failures else "NOT MET: " + "; ".join(failures)))
        return 1 if failures else 0
    opts = argparse.Namespace(quick=args.quick, repeats=1 if args.quick else args.repeats,
                              warmup=1 if args.quick else 3,
                              sample_s=0.0 if args.quick else args.sample_ms / 1e3,
                              # all cores: every pool spins after its calls (OpenBLAS's threads for
                              # about 0.1 s) and would take the cores from the next library's sample
                              settle_s=0.0 if args.quick else 0.2 if args.threads == "all" else 0.01,
                              all_cores=usable_cores() if args.threads == "all" else None)
    if isinstance(args.threads, int) and args.threads < 1:
        raise SympropError(f"--threads must be at least 1 or all, got {args.threads}")
    threads = usable_cores() if args.threads == "all" else args.threads
    pinned = pin_to_one_core() if threads == 1 else None  # before any library starts a pool
    libs = optional_libraries(threads)
    limits = limit_threads(threads, libs) if threads else None  # noqa: F841 (kept for the run)
    load_before = os.getloadavg()[0]
    cases = [c for c in all_cases(args.quick) if not args.only or args.only in c.name]
    report = {"settings": {"quick": args.quick, "repeats": opts.repeats, "warmup": opts.warmup,
                           "sample_ms": opts.sample_s * 1e3, "threads": threads or "library default",
                           "all_cores": args.threads == "all",
                           "pinned_core": pinned},
              "gemm_peak": {d: gemm_peak(d, 3 if args.quick else 9, opts.sample_s) for d in DTYPES}}
    report["cases"] = []
    for case in cases:
        report["cases"].append(run_case(case, libs, opts))
        print(f"[bench] {case.name} done", file=sys.stderr, flush=True)
    report["steps_per_call"] = run_steps_per_call(libs, opts)
    report["mish"] = run_mish(opts)
    if args.no_subprocess:
        report["compile"] = {"skipped": "skipped: --no-subprocess"}
        report["regenerate"] = {"skipped": "skipped: --no-subprocess"}
    else:
        specs = sorted({c.spec for c in cases})
        report["compile"] = run_compile_probe(specs if args.quick else [])
        report["regenerate"] = {"skipped": "skipped: --quick"} if args.quick else run_regenerate()
        # compile latency of new specs: a fresh process each, empty caches (minutes on a busy machine)
        report["first_step"] = [] if args.quick else first_step.run(None, first_step.FIRST_STEP_SPECS, show=False)
    report["machine"] = blas_info({"numba": comp.import_optional("numba"), **libs})
    report["machine"]["load_average"] = {"start": load_before, "end": os.getloadavg()[0]}
    report["targets"] = evaluate_targets(report)
    print_report(report)
    if args.json:
        _write(args.json, "--json", json.dumps(report, indent=1))
        print(f"\nraw figures written to {args.json}")
    if args.markdown:
        _write(args.markdown, "--markdown", markdown_summary(report, command_line(args)))
        print(f"summary table written to {args.markdown}")
    if args.compare is not None:
        return run_compare(args.compare, report)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symprop.benchmarks.bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
