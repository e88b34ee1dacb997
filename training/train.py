"""Minibatch training with the generated fused kernels, evaluation, and saved models.

The training step is `net.sgd_step` from `codegen.network.load_network(spec)`: one call does
forward, backward and the in-place update `p -= lr * dp` for a batch. With another optimiser
(`Config.optimizer`, an update rule of `symbolic/steps.py`, or plain SGD with weight decay) it
is the module's `train_step_<rule>`, on state arrays from `init_state_<rule>` allocated once. This file only shuffles,
batches, decays the learning rate, measures and records; it has no layer arithmetic of its own
(losses of the validation and test sets also come from the kernels, `net.loss_and_grads`).
"""
from __future__ import annotations

import importlib
import math
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from symprop.extras import need
from symprop.symbolic.errors import SympropError
from symprop.symbolic.steps import rule_named
from symprop.symbolic.userfiles import check_output, open_regular, write_atomically

from . import warm
from .datasets import Dataset, Scaling

DTYPES = {"float32": np.float32, "float64": np.float64}
SAVE_FORMAT = 1


def load_net(spec: str):
    """The generated network module for a spec; a bad spec becomes a SympropError. A spec
    loaded before by this generator starts warm, without SymPy (training/warm.py)."""
    net = warm.recall(spec)
    if net is not None:
        return net
    from symprop.codegen.network import load_network
    try:
        net = load_network(spec)
    except ValueError as exc:
        raise SympropError(f"--net {spec!r}: {exc}") from None
    warm.remember(spec, net)
    return net


# ------------------------------------------------------------------------- labels <-> targets
CLASS_LOSSES = ("softmax-cross-entropy", "log-softmax-nll", "multiclass-hinge")  # one-hot targets, argmax
REGRESSION_LOSSES = ("squared-error", "mse", "huber")  # one-hot targets, or one 0/1 column
TOKEN_LOSSES = ("token-softmax-cross-entropy",)  # a class per token: one-hot targets per token, argmax per token


class Task:
    """How class labels become the targets a net's loss wants, and its scores become labels.

    softmax-cross-entropy: one-hot targets, predicted class = argmax of the logits.
    binary-cross-entropy: one 0/1 column, predicted class 1 where the logit is > 0.
    squared-error / mse: one-hot targets (or one 0/1 column for a single output), predicted
    class = argmax of the outputs (or output > 0.5).
    token-softmax-cross-entropy (a data set with a class per token, labels (N, tokens)): one-hot
    targets per token, predicted class of each token = argmax of its logits; accuracies count tokens.
    """

    def __init__(self, net, dataset_name: str, n_features: int, n_classes: int, tokens: int | None = None):
        self.loss, self.n_classes, self.tokens = net.LOSS, n_classes, tokens
        if net.INPUT_SIZE != n_features:
            each = f" ({tokens} tokens of {n_features // tokens} features)" if tokens else ""
            raise SympropError(f"net {net.SPEC!r} takes inputs of size {net.INPUT_SIZE} but data "
                               f"set {dataset_name} has {n_features} features per example{each}")
        self.single_output = net.OUTPUT_SIZE == 1
        if tokens or self.loss in TOKEN_LOSSES:
            self._check_tokens(net, dataset_name)
            return
        if self.loss == "binary-cross-entropy":
            if n_classes != 2:
                raise SympropError(f"net {net.SPEC!r} ends in binary-cross-entropy, which needs 2 "
                                   f"classes; data set {dataset_name} has {n_classes}")
            if not self.single_output:
                raise SympropError(f"net {net.SPEC!r} ends in binary-cross-entropy with "
                                   f"{net.OUTPUT_SIZE} outputs; it needs 1 output (the logit)")
        if self.loss in CLASS_LOSSES + REGRESSION_LOSSES:
            fits = net.OUTPUT_SIZE == n_classes or (
                self.single_output and n_classes == 2 and self.loss in REGRESSION_LOSSES)
            if not fits:
                raise SympropError(f"net {net.SPEC!r} has {net.OUTPUT_SIZE} outputs but data set "
                                   f"{dataset_name} has {n_classes} classes")
        elif self.loss != "binary-cross-entropy":
            raise SympropError(f"net {net.SPEC!r} ends in {self.loss!r}; training on class labels "
                               f"needs {', '.join(CLASS_LOSSES + REGRESSION_LOSSES)} or binary-cross-entropy")

    def _check_tokens(self, net, dataset_name: str):
        """A data set with a class per token needs a net that ends in a per-token loss over
        exactly its tokens and classes, and only such a data set gives that loss its targets."""
        wanted = f"token-softmax-cross-entropy({self.n_classes},{self.tokens})"
        if self.loss not in TOKEN_LOSSES:
            raise SympropError(f"net {net.SPEC!r} ends in {self.loss}, one class per example; data set {dataset_name} "
                               f"has a class per token ({self.tokens} tokens of {self.n_classes} classes): end the "
                               f"net with {wanted}")
        if not self.tokens:
            raise SympropError(f"net {net.SPEC!r} ends in {self.loss}, a class per token; data set {dataset_name} "
                               "has one class per example (a data set of sequences, e.g. reverse, has one per token)")
        last = net.SPEC.rsplit(" ", 1)[-1]  # the canonical spec writes the loss as NAME(K,T)
        if last != wanted:
            raise SympropError(f"net {net.SPEC!r} ends in {last} but data set {dataset_name} has {self.tokens} tokens "
                               f"of {self.n_classes} classes: end the net with {wanted}")

    def targets(self, labels: np.ndarray, dtype) -> np.ndarray:
        if self.tokens:
            one_hot = np.zeros((*labels.shape, self.n_classes), dtype=dtype)
            np.put_along_axis(one_hot, labels[..., None], 1, axis=-1)
            return one_hot.reshape(len(labels), -1)
        if self.single_output:
            return np.ascontiguousarray(labels.reshape(-1, 1), dtype=dtype)
        one_hot = np.zeros((len(labels), self.n_classes), dtype=dtype)
        one_hot[np.arange(len(labels)), labels] = 1
        return one_hot

    def classes(self, scores: np.ndarray) -> np.ndarray:
        """The predicted class of each example, or (a class per token) of each token: (N, tokens)."""
        if self.tokens:
            return np.argmax(scores.reshape(len(scores), self.tokens, self.n_classes), axis=2)
        if not self.single_output:
            return np.argmax(scores, axis=1)
        threshold = 0.0 if self.loss == "binary-cross-entropy" else 0.5
        return (scores[:, 0] > threshold).astype(np.int64)

    @property
    def summed(self) -> bool:
        """squared-error is a sum over the batch; every other loss is a mean."""
        return self.loss == "squared-error"

    def per_example(self, loss: float, count: int) -> float:
        """Every loss reported as a per-example mean."""
        return float(loss) / count if self.summed else float(loss)


def init_params(net, rng: np.random.Generator, dtype) -> list[np.ndarray]:
    """Glorot-uniform weight matrices (limit sqrt(6 / (fan_in + fan_out))), zero biases, and
    the scales of normalisation layers (SCALE_PARAMS) at one, as torch starts them. A conv2d
    kernel (out, in, k, k) counts fan_in = in k^2 and fan_out = out k^2, as for the same map
    written as a matrix on im2col columns."""
    params = []
    scales = set(getattr(net, "SCALE_PARAMS", ()))
    for name, shape in zip(net.PARAM_NAMES, net.PARAM_SHAPES):
        if len(shape) in (2, 4):
            if len(shape) == 2:
                fan_in, fan_out = shape
            else:
                fan_in, fan_out = shape[1] * shape[2] * shape[3], shape[0] * shape[2] * shape[3]
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            params.append(rng.uniform(-limit, limit, size=shape).astype(dtype))
        else:
            params.append((np.ones if name in scales else np.zeros)(shape, dtype=dtype))
    return params


def has_modes(net) -> bool:
    """True for a network whose training and inference differ (batch norm, dropout): its steps
    take running averages (state) and dropout masks, and evaluation uses inference mode."""
    return hasattr(net, "STATE_NAMES")


def scores(net, params, x: np.ndarray, state=()) -> np.ndarray:
    """The last layer's outputs in inference mode (batch norm's running averages, no dropout)."""
    return net.forward(*params, x, state=state) if has_modes(net) else net.forward(*params, x)


PREDICTION_ROWS = 2048  # rows per forward call when predicting a set's classes


def predicted_classes(net, params, task: Task, x: np.ndarray, state=()) -> np.ndarray:
    """The class of every row (a class per token: of every token), PREDICTION_ROWS rows at a
    time: the forward kernel allocates every intermediate for the rows it is given, and for the
    text's 90,000 training windows through lstm(32,128,32) that is about 23 GB at once."""
    return np.concatenate([task.classes(scores(net, params, x[start:start + PREDICTION_ROWS], state))
                           for start in range(0, len(x), PREDICTION_ROWS)])


def accuracy(net, params, task: Task, x: np.ndarray, labels: np.ndarray, state=()) -> float:
    """The fraction of examples (a class per token: of tokens) predicted right."""
    if len(x) == 0:
        return math.nan
    return float(np.mean(predicted_classes(net, params, task, x, state) == labels))


def sequence_accuracy(net, params, task: Task, x: np.ndarray, labels: np.ndarray, state=()) -> float:
    """A class per token: the fraction of sequences with every token right."""
    if len(x) == 0:
        return math.nan
    return float(np.mean((predicted_classes(net, params, task, x, state) == labels).all(axis=1)))


EVALUATION_ROWS = 256  # rows per loss call when evaluating a set


def evaluate(net, params, task: Task, x: np.ndarray, targets: np.ndarray, labels: np.ndarray, state=()):
    """(mean loss, accuracy) of a whole set, both from the kernels, in inference mode. The loss
    is taken EVALUATION_ROWS rows at a time: the kernel allocates its workspace for the rows it
    is given, and for the text's 10,000 validation windows through an LSTM one call took 16 s,
    pieces of 256 rows 3 s (training steps on the same rows: under 2 s). The mean of the
    pieces' means is the set's mean, an L2 penalty included; a summed loss (squared-error) is
    taken whole, since each piece's sum would add the penalty again."""
    if len(x) == 0:
        return math.nan, math.nan
    total, piece = 0.0, len(x) if task.summed else EVALUATION_ROWS
    for start in range(0, len(x), piece):
        rows, rows_t = x[start:start + piece], targets[start:start + piece]
        loss = (net.loss(*params, rows, rows_t, state=state) if has_modes(net)
                else net.loss_and_grads(*params, rows, rows_t)[0])
        total += task.per_example(loss, len(rows)) * len(rows)
    return total / len(x), accuracy(net, params, task, x, labels, state)


# ------------------------------------------------------------------------------ the loop
@dataclass
class Config:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.1
    lr_decay: float = 1.0        # the rate is multiplied by this after every epoch
    seed: int = 0
    val_split: float = 0.1       # fraction of the training part held out for validation
    dtype: str = "float32"
    progress: bool | None = None  # None: a progress bar only when stderr is a terminal
    blas_threads: int | str | None = "auto"  # BLAS threads: "auto" (training/threads.py), a count, None: BLAS default
    optimizer: str = "sgd"       # an update rule of symbolic/steps.py
    hyper: dict = field(default_factory=dict)  # its hyper-parameters besides lr (others: defaults)

    def check(self):
        if self.epochs < 1:
            raise SympropError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise SympropError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SympropError(f"--lr must be a positive number, got {self.lr}")
        if not (self.lr_decay > 0 and math.isfinite(self.lr_decay)):
            raise SympropError(f"--lr-decay must be a positive number, got {self.lr_decay}")
        if self.dtype in DTYPES:
            self._check_range()
        if not 0 <= self.val_split < 1:
            raise SympropError(f"--val-split must be in [0, 1), got {self.val_split}")
        if self.blas_threads not in (None, "auto") and (not isinstance(self.blas_threads, int)
                                                        or isinstance(self.blas_threads, bool) or self.blas_threads < 1):
            raise SympropError(f"--blas-threads must be a whole number of at least 1 or \"auto\", got {self.blas_threads!r}")
        if not 0 <= self.seed < 2**63:
            raise SympropError(f"--seed must be between 0 and 2**63 - 1, got {self.seed}")
        if self.dtype not in DTYPES:
            raise SympropError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        self.checked_hyper()

    def _check_range(self):
        """Every rate the run uses must be a number of its dtype: --lr 1e300 in float32 is inf
        (numpy warns of the cast, then the loss is NaN) and --lr-decay 1e300 overflows by
        epoch 3."""
        largest = float(np.finfo(DTYPES[self.dtype]).max)
        options = {"lr": self.lr, **{name: value for name, value in self.hyper.items()
                                     if isinstance(value, float) and math.isfinite(value)}}
        for name, value in options.items():
            if abs(value) > largest:
                raise SympropError(f"--{name.replace('_', '-')} {value:g} is beyond {self.dtype}'s range "
                                   f"(at most {largest:.3g})")
        last = math.log10(self.lr) + (self.epochs - 1) * math.log10(self.lr_decay)
        if last > math.log10(largest):
            raise SympropError(f"--lr-decay {self.lr_decay:g}: the rate of epoch {self.epochs} would be "
                               f"about 1e{last:.0f}, beyond {self.dtype}'s range (at most {largest:.3g})")

    def checked_hyper(self) -> dict[str, float]:
        """The optimiser's hyper-parameters besides lr, defaults filled in; a SympropError
        names an unknown optimiser, an option it does not take or a value out of range."""
        rule = rule_named(self.optimizer, "--optimizer")
        for name in self.hyper:
            if name not in rule.hyper_names or name == "lr":
                takes = ", ".join("--" + h.replace("_", "-") for h in rule.hyper_names)
                raise SympropError(f"--{name.replace('_', '-')} does not apply to --optimizer {rule.name} "
                                   f"(it takes {takes})")
        checked = rule.check({**self.hyper, "lr": self.lr}, f"--optimizer {rule.name}")
        checked.pop("lr")
        return checked

    @property
    def plain_sgd(self) -> bool:
        """Plain SGD without weight decay: net.sgd_step (a tiny net's scalar-expanded step)."""
        return self.optimizer == "sgd" and not self.checked_hyper()["weight_decay"]


@dataclass
class EpochStats:
    epoch: int
    lr: float
    train_loss: float        # mean of the batch losses (before each update) over the epoch
    train_accuracy: float    # of the whole training part after the epoch
    val_loss: float          # nan without a validation part
    val_accuracy: float
    seconds: float           # the training steps only, no evaluation


@dataclass
class Result:
    net: object
    params: list[np.ndarray]
    task: Task
    scaling: Scaling
    history: list[EpochStats] = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0
    n_test: int = 0
    train_accuracy: float = math.nan
    test_loss: float = math.nan
    test_accuracy: float = math.nan
    test_sequence_accuracy: float = math.nan  # a class per token: sequences with every token right
    compile_seconds: float = 0.0
    state: tuple = ()  # running averages of batch-norm layers (inference mode reads them)

    @property
    def seconds_per_epoch(self) -> float:
        return sum(s.seconds for s in self.history) / len(self.history)

    @property
    def examples_per_second(self) -> float:
        return self.n_train / self.seconds_per_epoch

    def params_by_name(self) -> dict[str, np.ndarray]:
        return dict(zip(self.net.PARAM_NAMES, self.params))


def validation_count(n_train: int, val_split: float) -> int:
    """How many training rows --val-split holds out (at least one if it is not 0)."""
    n_val = int(round(val_split * n_train))
    if val_split > 0:
        n_val = max(n_val, 1)
    if n_train - n_val < 1:
        raise SympropError(f"--val-split {val_split} leaves no training examples")
    return n_val


def _diverged(epoch: int, lr: float, what: str, value, config: Config) -> SympropError:
    """Names the option at fault once: weight decay when lr x weight_decay > 1 (each step then
    multiplies the weights by 1 - lr x weight_decay, below -1 for plain SGD), else the rate."""
    decay = config.checked_hyper().get("weight_decay", 0.0)
    if decay and lr * decay > 1:
        return SympropError(f"training diverged in epoch {epoch}: {what} became {value} with --weight-decay "
                            f"{decay:g} (lr x weight decay = {lr * decay:.3g} > 1); try a smaller --weight-decay")
    return SympropError(f"training diverged in epoch {epoch}: {what} became {value} with learning "
                        f"rate {lr:g}; try a smaller --lr")


def make_step(net, params, config: Config, state=(), mask_rng=None) -> Callable:
    """step(x, t, lr) -> the batch's loss, updating params in place: net.sgd_step for plain
    SGD, else the optimiser's fused train_step with its state, allocated here once. A network
    with batch norm or dropout (has_modes) also gets its running averages (state, updated in
    place) and a fresh dropout mask per batch from mask_rng. Both call the step's ``_into``
    kernel on kept workspaces (a tiny network's plain SGD: its scalar step, which needs none)."""
    modes = has_modes(net)

    def extras(x):
        """The running averages, then this batch's dropout masks: the kernels' order."""
        return (*state, *net.make_masks(len(x), mask_rng, x.dtype)) if modes else ()
    if config.plain_sgd:
        if getattr(net, "SCALAR_STEP", False) and not modes:  # a tiny network's step needs no workspace
            return lambda x, t, lr: net.sgd_step(*params, x, t, lr)
        return _step_on_kept_workspaces(net, lambda x, t, lr, workspace: net.sgd_step_into(
            *params, x, t, lr, *extras(x), *workspace))
    init, train_step, defaults = net.OPTIMIZERS[config.optimizer]
    optimiser_state, hyper = init(*params), config.checked_hyper()
    into = getattr(net, f"train_step_{config.optimizer}_into")
    # the kernel takes lr and then the rule's other hyper-parameters, in the order of its defaults
    rest = tuple(hyper.get(name, default) for name, default in defaults.items() if name != "lr")
    return _step_on_kept_workspaces(net, lambda x, t, lr, workspace: into(
        *params, *optimiser_state, x, t, lr, *rest, *extras(x), *workspace))


def _step_on_kept_workspaces(net, step_into) -> Callable:
    """A step kernel's ``_into`` form on a workspace allocated once per batch size (the last
    batch of an epoch may be smaller), not the wrapper's fresh one per call: for a conv net
    that was 33 MB of new pages every step, half the step's time (benchmarks: 25 -> 12 ms).
    The batches here are the training loop's own contiguous arrays of the net's dtype, checked
    once by the Task, so the wrapper's per-call checks are not repeated."""
    workspaces = {}

    def step(x, t, lr):
        workspace = workspaces.get(len(x))
        if workspace is None:
            workspace = workspaces[len(x)] = net.make_workspace(x)
        return step_into(x, t, x.dtype.type(lr), workspace)
    return step


def _warm_up(net, params, x, t, config, state=()) -> float:
    """Compile (or load from numba's cache) the step kernel for this dtype on copies, so epoch
    times measure only training. Only the step: the evaluation kernels (forward, the loss)
    compile at the end of the first epoch, where they are first called, so training starts
    without waiting for them (for the conv net they were a third of the wait)."""
    start = time.perf_counter()
    copies = [p.copy() for p in params]
    if has_modes(net):
        state = tuple(s.copy() for s in state)
        make_step(net, copies, config, state, np.random.default_rng(0))(x[:2], t[:2], config.lr)
    else:
        make_step(net, copies, config)(x[:2], t[:2], config.lr)
    return time.perf_counter() - start


def train(net, dataset: Dataset, config: Config,
          on_epoch: Callable[[EpochStats, bool], None] | None = None) -> Result:
    """Train `net` on `dataset`; `on_epoch(stats, bar_shown)` is called after every epoch.

    The kernels' matrix products go to BLAS. Its threads are `config.blas_threads`; by default
    ("auto", `blas_threads_for`) every usable core where a step's products are large enough to
    gain and the machine is not busy, else one: small minibatch products gain nothing from
    threads, and on a busy machine BLAS threads made steps many times slower.
    """
    threadpool_limits = need("threadpoolctl", "training").threadpool_limits

    config.check()
    # the kernels call the BLAS that scipy ships (as numba's np.dot does), loaded at a kernel's
    # first product; the limit applies only to libraries already loaded, so without this import
    # the kernels ran with every core's threads whatever --blas-threads said
    importlib.import_module("scipy.linalg.cython_blas")
    with threadpool_limits(limits=blas_threads_for(net, config), user_api="blas"):
        return _train(net, dataset, config, on_epoch)


def blas_threads_for(net, config: Config) -> int | None:
    """The BLAS thread count a run uses: the configured count, or training/threads.py's choice
    for this network and batch size ("auto")."""
    if config.blas_threads != "auto":
        return config.blas_threads
    from symprop.training.threads import threads_for
    flop_per_row = warm.matrix_flop_per_row(net.SPEC)
    if flop_per_row is None:
        from symprop.symbolic.graph import parse_net
        from symprop.training.threads import step_matrix_flop
        flop_per_row = step_matrix_flop(parse_net(net.SPEC), 1)
    return threads_for(flop_per_row * config.batch_size)


def _train(net, dataset: Dataset, config: Config, on_epoch) -> Result:
    tqdm = need("tqdm", "training").tqdm

    dtype = DTYPES[config.dtype]
    rng = np.random.default_rng(config.seed)
    task = Task(net, dataset.name, dataset.n_features, dataset.n_classes, dataset.tokens)

    if dataset.x_val is None:  # --val-split's random rows of the training part validate
        order = rng.permutation(len(dataset.x_train))
        n_val = validation_count(len(order), config.val_split)
        val_rows, train_rows = order[:n_val], order[n_val:]
        x_train_raw, y_train = dataset.x_train[train_rows], dataset.y_train[train_rows]
        x_val_raw, y_val = dataset.x_train[val_rows], dataset.y_train[val_rows]
    else:  # the data set's own validation part (text)
        x_train_raw, y_train, x_val_raw, y_val = dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val
    scaling = dataset.fit_scaling(x_train_raw)
    x_train = scaling.apply(x_train_raw, dtype)
    t_train = task.targets(y_train, dtype)
    x_val = scaling.apply(x_val_raw, dtype)
    t_val = task.targets(y_val, dtype)

    params = init_params(net, rng, dtype)
    modes = has_modes(net)
    state = net.init_state(dtype) if modes else ()
    # dropout masks from their own generator, seeded by --seed: shuffling is unchanged by them
    mask_rng = np.random.default_rng((config.seed, 1))
    result = Result(net, params, task, scaling, n_train=len(x_train), n_val=len(x_val),
                    n_test=len(dataset.x_test), state=state)
    result.compile_seconds = _warm_up(net, params, x_train, t_train, config, state)
    step = make_step(net, params, config, state, mask_rng)

    n = len(x_train)
    n_batches = math.ceil(n / config.batch_size)
    width = len(str(config.epochs))
    for epoch in range(1, config.epochs + 1):
        lr = config.lr * config.lr_decay ** (epoch - 1)
        bar = tqdm(total=n_batches, desc=f"epoch {epoch:>{width}}/{config.epochs}", unit="batch",
                   file=sys.stderr, leave=True, dynamic_ncols=True,
                   disable=None if config.progress is None else not config.progress)
        shuffle = rng.permutation(n)
        loss_sum, seconds = 0.0, 0.0
        for b in range(n_batches):
            rows = shuffle[b * config.batch_size:(b + 1) * config.batch_size]
            xb, tb = x_train[rows], t_train[rows]
            if modes and state and len(rows) < 2:
                continue  # batch statistics need two rows: a last batch of one is skipped
            start = time.perf_counter()
            loss = step(xb, tb, lr)
            seconds += time.perf_counter() - start
            if not math.isfinite(loss):
                bar.close()
                raise _diverged(epoch, lr, f"the loss of batch {b + 1}/{n_batches}", loss, config)
            loss_sum += task.per_example(loss, len(rows)) * len(rows)
            bar.update(1)
            if b % 10 == 9:
                bar.set_postfix_str(f"loss {loss_sum / min(n, (b + 1) * config.batch_size):.4f}",
                                    refresh=False)
        train_accuracy = accuracy(net, params, task, x_train, y_train, state)
        val_loss, val_accuracy = evaluate(net, params, task, x_val, t_val, y_val, state)
        if not all(np.isfinite(p).all() for p in params):
            bar.close()
            raise _diverged(epoch, lr, "the parameters", "inf or NaN", config)
        stats = EpochStats(epoch, lr, loss_sum / n, train_accuracy, val_loss, val_accuracy, seconds)
        result.history.append(stats)
        postfix = f"loss {stats.train_loss:.4f} acc {train_accuracy:.4f}"
        if len(x_val):
            postfix += f" val_loss {val_loss:.4f} val_acc {val_accuracy:.4f}"
        bar.set_postfix_str(postfix)
        shown = not bar.disable
        bar.close()
        if on_epoch:
            on_epoch(stats, shown)

    result.train_accuracy = result.history[-1].train_accuracy
    x_test = scaling.apply(dataset.x_test, dtype)
    result.test_loss, result.test_accuracy = evaluate(
        net, params, task, x_test, task.targets(dataset.y_test, dtype), dataset.y_test, state)
    if task.tokens:
        result.test_sequence_accuracy = sequence_accuracy(net, params, task, x_test, dataset.y_test, state)
    return result


# --------------------------------------------------------------------------- saved models
@dataclass
class SavedModel:
    spec: str
    dataset: str
    n_classes: int
    dtype: str
    params: dict[str, np.ndarray]
    scaling: Scaling
    state: dict[str, np.ndarray] = field(default_factory=dict)  # batch norm's running averages


def check_output_path(path: str | Path, option: str, kind: str = "weights", inputs=()) -> Path:
    """Fail before training, not after it, when a --save, --history or --plot path cannot or
    must not be written (userfiles.check_output)."""
    return check_output(path, option, kind, inputs)


def save_model(path: str | Path, result: Result, dataset: Dataset, config: Config) -> None:
    """Weights plus what `predict` needs to reproduce the preprocessing: spec, data set, scaling.

    Written to a temporary file in the same folder and renamed over path, so a failed write
    (a full disk) leaves an existing weights file as it was."""
    path = check_output_path(path, "--save")
    arrays = {f"param_{name}": value for name, value in result.params_by_name().items()}
    state_names = tuple(getattr(result.net, "STATE_NAMES", ()))
    if state_names:  # only networks with running averages write these fields (older files lack them)
        arrays |= {f"state_{name}": value for name, value in zip(state_names, result.state)}
        arrays["state_names"] = np.array(state_names)

    def write(stream):  # a file handle keeps numpy from appending ".npz"
        np.savez(stream, format_version=SAVE_FORMAT, spec=result.net.SPEC,
                 param_names=np.array(result.net.PARAM_NAMES), dataset=dataset.name,
                 n_classes=dataset.n_classes, dtype=config.dtype,
                 scaling_mean=result.scaling.mean, scaling_scale=result.scaling.scale,
                 **arrays)
    write_atomically(path, "--save", write)


MAX_MEMBER_BYTES = 512 * 2**20  # one array in a weights file; 784-1024-10 float64 is 6.5 MB


def _read_member(archive: zipfile.ZipFile, path: Path, key: str) -> np.ndarray:
    """One array of the archive, after checking its declared sizes: the zip entry's and the
    .npy header's shape bound what is decompressed and allocated."""
    try:
        info = archive.getinfo(f"{key}.npy")
    except KeyError:
        raise SympropError(f"{path}: not a weights file saved by symprop train (missing {key})") from None
    if info.file_size > MAX_MEMBER_BYTES:
        raise SympropError(f"{path}: field {key} expands to {info.file_size:,} bytes, more than "
                           f"the {MAX_MEMBER_BYTES:,} a weights array may have")
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(stream)
    if dtype.hasobject or math.prod(shape) * dtype.itemsize > info.file_size:
        raise SympropError(f"{path}: field {key} is damaged (shape {shape}, dtype {dtype})")
    with archive.open(info) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


def _field(path: Path, data: dict, key: str, kind: str, ndim: int = 0):
    """data[key] checked to be an array of numpy kind ``kind`` ("U" text, "i" integer, "f"
    float) with ``ndim`` dimensions; a scalar comes back as a Python value."""
    value = data[key]
    if value.ndim != ndim or value.dtype.kind not in ({"i": "iu", "f": "fiu"}.get(kind, kind)):
        expected = {"U": "text", "i": "an integer", "f": "numbers"}[kind]
        raise SympropError(f"{path}: field {key} should be {expected}"
                           f"{'' if ndim == 0 else f' in a {ndim}-D array'}, found {value.dtype} "
                           f"of shape {value.shape}")
    if kind == "f" and not np.isfinite(value).all():
        raise SympropError(f"{path}: field {key} holds inf or NaN")
    return value.item() if ndim == 0 else value


def load_model(path: str | Path) -> SavedModel:
    path = Path(path)
    required = ("format_version", "spec", "param_names", "dataset", "n_classes", "dtype",
                "scaling_mean", "scaling_scale")
    with open_regular(path, "weights file") as handle:
        try:
            with zipfile.ZipFile(handle) as archive:
                data = {key: _read_member(archive, path, key) for key in required}
                names = data["param_names"]
                if names.ndim != 1 or names.dtype.kind != "U":
                    raise SympropError(f"{path}: field param_names should be a list of names")
                data.update({f"param_{name}": _read_member(archive, path, f"param_{name}")
                             for name in names})
                state_names = (_read_member(archive, path, "state_names")
                               if "state_names.npy" in archive.namelist() else np.array([], dtype=str))
                if state_names.ndim != 1 or (state_names.size and state_names.dtype.kind != "U"):
                    raise SympropError(f"{path}: field state_names should be a list of names")
                data.update({f"state_{name}": _read_member(archive, path, f"state_{name}")
                             for name in state_names})
        except SympropError:
            raise
        except Exception as exc:  # zipfile and numpy raise several types for a damaged file
            raise SympropError(f"{path}: not a weights file saved by symprop train "
                               f"({type(exc).__name__}: {exc})") from None
    version = _field(path, data, "format_version", "i")
    if version != SAVE_FORMAT:
        raise SympropError(f"{path}: weights format {version}, this version reads format {SAVE_FORMAT}")
    dtype = _field(path, data, "dtype", "U")
    if dtype not in DTYPES:
        raise SympropError(f"{path}: unknown dtype {dtype!r}")
    n_classes = _field(path, data, "n_classes", "i")
    if not 2 <= n_classes <= 2**20:
        raise SympropError(f"{path}: field n_classes should be at least 2, found {n_classes}")
    mean = _field(path, data, "scaling_mean", "f", 1)
    scale = _field(path, data, "scaling_scale", "f", 1)
    if scale.shape != mean.shape or not (scale != 0).all():
        raise SympropError(f"{path}: field scaling_scale should be {mean.shape[0]} nonzero numbers")
    params = {str(name): _field(path, data, f"param_{name}", "f", data[f"param_{name}"].ndim)
              for name in names}
    state = {str(name): _field(path, data, f"state_{name}", "f", 1) for name in state_names}
    return SavedModel(_field(path, data, "spec", "U"), _field(path, data, "dataset", "U"),
                      n_classes, dtype, params, Scaling(mean.astype(np.float64), scale.astype(np.float64)),
                      state)


def model_params(net, model: SavedModel, where: str) -> list[np.ndarray]:
    """The saved arrays in the net's parameter order, checked against its shapes."""
    if tuple(model.params) != tuple(net.PARAM_NAMES):
        raise SympropError(f"{where}: parameters {', '.join(model.params)} do not match the net's "
                           f"{', '.join(net.PARAM_NAMES)}")
    params = []
    for name, shape in zip(net.PARAM_NAMES, net.PARAM_SHAPES):
        value = model.params[name]
        if value.shape != tuple(shape):
            raise SympropError(f"{where}: parameter {name} has shape {value.shape}, the net "
                               f"{model.spec!r} needs {tuple(shape)}")
        params.append(np.ascontiguousarray(value, dtype=DTYPES[model.dtype]))
    return params


def model_state(net, model: SavedModel, where: str) -> tuple:
    """The saved running averages in the net's order (inference mode of batch norm), checked."""
    names = tuple(getattr(net, "STATE_NAMES", ()))
    if tuple(model.state) != names:
        raise SympropError(f"{where}: saved running averages {', '.join(model.state) or '(none)'} do not "
                           f"match the net's {', '.join(names) or '(none)'}")
    state = []
    for name, shape in zip(names, getattr(net, "STATE_SHAPES", ())):
        value = model.state[name]
        if value.shape != tuple(shape):
            raise SympropError(f"{where}: {name} has shape {value.shape}, the net needs {tuple(shape)}")
        state.append(np.array(value, dtype=DTYPES[model.dtype]))
    return tuple(state)


def predict(net, params, task: Task, scaling: Scaling, x_raw: np.ndarray, dtype, state=()) -> np.ndarray:
    """Class labels for unscaled features (inference mode)."""
    return task.classes(scores(net, params, scaling.apply(x_raw, dtype), state))
