"""Network kernels: one module per stack of registered layers, with fused training steps.

``symbolic.graph.parse_net`` reads a spec such as ``"affine(784,100) relu affine(100,10) softmax-cross-entropy"``;
into a Graph;
``network_module_text`` lowers it (dispatching on each op's type) to a module with ``forward``, ``loss_and_grads``, ``sgd_step`` and
``sgd_steps`` (and, for every optimiser of ``symbolic/steps.py``, ``init_state_<rule>`` and the fused
``train_step_<rule>``, printed by ``codegen/optimizer_steps.py``) whose statements come from each layer's derivation (the affine rules as
BLAS products, elementwise rules as loops). A step is one call into compiled code and skips
the gradient with respect to the input data, which nothing uses. For tiny networks (every layer
at most ``scalar_step.TINY_WIDTH`` wide and the step at most ``scalar_step.SCALAR_MAX_LINES``
lines a row, e.g. the 2-2-2 worked example) ``sgd_step_kernel`` is instead the scalar-expanded
step that ``codegen/scalar_step.py`` makes of these same statements: no workspace, every unit a
scalar local;
``sgd_steps_kernel`` and ``sgd_step_packed_kernel`` call it, so its body is compiled once per
dtype; ``*_into`` and ``loss_and_grads`` keep the matrix form. numba compiles lazily: a kernel
is compiled on its first call for that dtype, and nothing here forces one earlier.
"""
from __future__ import annotations

import hashlib
import importlib
import math
import os
import sys
import warnings
from pathlib import Path

from symprop.symbolic.errors import SympropError
from symprop.symbolic.graph import parse_net
from symprop.symbolic.lower import Lowering

from symprop.symbolic.ir import (Allocate, Blank, Comment, DtypeOf, Flat, Function, InDtype, Invoke, Let, Loop, Return,
                                 ShapeOf, View, array, arrays, index)
from symprop.symbolic.layers import N

from . import files
from .backend import NUMBA, Backend
from .optimizer_steps import optimizers_text
from .scalar_step import scalar_step


# name -> spec of the networks committed under generated/ (net_<name>.py)
BUILTIN_NETWORKS = {
    "two_layer_relu": "affine(784,100) relu affine(100,10) softmax-cross-entropy",  # seed 000
    "moons_logistic": "affine(2,1) binary-cross-entropy",  # seed 001, two moons
    "two_layer_sigmoid": ("affine-shared-bias(2,2) sigmoid affine-shared-bias(2,2) sigmoid "
                          "squared-error"),  # seed 001, the 2-2-2 worked example
    # the sequence worked examples (symbolic/nets/): a fused BPTT step and an attention step to read
    "rnn_three_steps": "rnn(1,2,3) affine(2,1) squared-error",
    "lstm_two_steps": "lstm(1,1,2) affine(1,1) squared-error",
    "gru_two_steps": "gru(1,1,2) affine(1,1) squared-error",
    "attention_four_tokens": "attention(2,2,2,4) flatten squared-error",
}



def network_module_text(spec, name: str | None = None, backend: Backend = NUMBA) -> str:
    """The module text of a network: ``spec`` is a net spec or the Graph it already parsed into."""
    graph = parse_net(spec) if isinstance(spec, str) else spec
    canonical = graph.spec
    net = Lowering(graph)
    printer = backend.printer()  # one per module: each statement printed once, helpers collected
    kernels = NetworkKernels(net)
    param_names = [p for p, _ in net.params]
    params = ", ".join(param_names)
    grads = ", ".join(f"d{p}" for p in param_names)
    # these statements for one row of scalars; None unless tiny. Normalisation layers (sums over
    # the batch or a row, state, masks) and L2 penalties (outside the loss statements) keep the
    # matrix step.
    scalar = None if net.has_modes or net.scales or net.penalty else scalar_step(net, backend, printer)
    # parameters an initialiser starts at one (a normalisation's scale g); only where there are any
    scale_line = (f"\nSCALE_PARAMS = {tuple(net.scales)!r}  # parameters that start at one (a normalisation's scale)"
                  if net.scales else "")

    def function(node) -> str:
        return node.strip("\n") if isinstance(node, str) else backend.function(node, printer).rstrip("\n")

    training = "\n\n\n".join(map(function, kernels.training(scalar, backend.definitions)))
    packed = _packed_step_text(net.params, function(kernels.packed(scalar)), net.has_modes)
    predict = "".join(f"\n\n{function(node)}\n" for node in kernels.inference()) if net.has_modes else ""
    api = (_modes_api_text(net, params, grads) if net.has_modes
           else PLAIN_API_TEXT.format(params=params, grads=grads))
    optimizers = optimizers_text(kernels, function)
    body = f'''

SPEC = {canonical!r}
PARAM_NAMES = {tuple(param_names)!r}
PARAM_SHAPES = {tuple(s for _, s in net.params)!r}
INPUT_SIZE = {net.widths[0]}{_image_line(graph)}
OUTPUT_SIZE = {net.widths[-1]}
LOSS = {graph.loss.name!r}
# True: sgd_step_kernel / sgd_steps_kernel run the scalar-expanded step (a tiny network, every
# unit a scalar local, no workspace); sgd_step_into keeps the matrix step on a workspace.
SCALAR_STEP = {scalar is not None}{scale_line}


{function(backend.definitions["workspace"](net.buffers))}


{training}


{packed}
{predict}{CHECKS_TEXT.format()}{api}{optimizers}'''
    body = backend.module_start(printer.helpers_used) + body
    command = files.REGENERATE_COMMAND if name else f'symprop generate --net "{canonical}"'
    head = files.header(f"Fused kernels of the network {canonical!r}.", "codegen/network.py",
                        command, [f"spec {canonical}"], network_hash(graph), body)
    return head + body


X, T, LR, STEPS, THETA, LOSS, STEP = arrays("X", "T", "lr", "steps", "theta", "loss", "step")


def _or_blank(statements) -> list:
    """The statements, or an empty line where there are none."""
    return list(statements) or [Blank()]


class NetworkKernels:
    """A lowered network's kernels as functions (``ir.Function``) for a backend to print. The
    gradient statements (``loss_and_grads_into``'s) are written out in every kernel that
    computes gradients, on the caller's workspace or on arrays of the kernel's own: a called
    kernel would be linked into its caller and optimised by LLVM again there."""

    def __init__(self, net):
        self.net = net
        self.params = arrays(*(p for p, _ in net.params))
        self.grads = arrays(*(f"d{p}" for p, _ in net.params))
        self.buffers = arrays(*(b for b, _ in net.buffers))
        # a network with training and inference modes passes its running averages (state) and
        # dropout masks to the kernels after the usual arguments
        self.state = arrays(*(n for n, _ in net.state))
        self.masks = arrays(*(n for n, *_ in net.masks))
        self.allocation = [Allocate(array(b), shape) for b, shape in net.buffers]
        self.gradients = self._gradients([])  # on the caller's workspace
        self.allocating = self._gradients(self.allocation)  # on arrays of the kernel's own
        # what a step does after the parameter update (batch norm's running averages)
        self.after_update = [DtypeOf(X), ShapeOf((N,), X), *net.after_update] if net.after_update else []
        # a vector parameter is passed as it is; a matrix (or a conv kernel) as a flat view:
        # one compiled _sgd_update for every rank, and no reshape a vector does not need
        # (each reshape in a step costs compile time: 0.2 s of the 784-100-50-20-10 net's first
        # step, measured)
        flat = [Flat if len(shape) > 1 else (lambda a: a) for _, shape in net.params]
        self.sgd_update = [Let(STEP, InDtype(LR, X)),
                           *(Invoke("_sgd_update", (f(p), f(g), STEP)) for f, p, g in zip(flat, self.params, self.grads)),
                           *self.after_update]

    def _gradients(self, allocation) -> list:
        """The loss into ``loss``, the gradients into the workspace (allocated first, where given)."""
        net = self.net
        return [DtypeOf(X), ShapeOf((N,), X), *allocation, Comment("---- forward ----"), *net.forward,
                Comment("---- loss ----"), *net.loss, *net.penalty,
                Comment("---- backward (chain rule, from the loss back to the first layer) ----"),
                *net.backward, *net.penalty_backward]

    def _forward_buffers(self):
        net = self.net
        return _or_blank(Allocate(array(b), shape) for b, shape in net.buffers if b in net.values or b in net.scratch)

    def training(self, scalar, definitions) -> list:
        """forward_kernel, loss_and_grads_into and _kernel, the update, the SGD step kernels
        (the backend's own definitions among them, as text)."""
        net, P, extras = self.net, self.params, self.state + self.masks
        return [
            Function("forward_kernel", (*P, X, *self.masks), (
                DtypeOf(X), ShapeOf((N,), X), *self._forward_buffers(), *_or_blank(net.forward),
                Return((array(net.values[-1]),)))),
            Function("loss_and_grads_into", (*P, X, T, *self.masks, *self.buffers), (*self.gradients, Return((LOSS,))),
                     "The loss; gradients and intermediates are written into the workspace buffers."),
            Function("loss_and_grads_kernel", (*P, X, T, *self.masks), (*self.allocating, Return((LOSS, *self.grads))),
                     "loss_and_grads_into's statements on arrays of its own: written out, not called, because\n"
                     "    numba links a called kernel into its caller and LLVM optimises it all again there."),
            definitions["sgd_update"],
            Function("sgd_step_into", (*P, X, T, LR, *extras, *self.buffers),
                     (*self.gradients, *self.sgd_update, Return((LOSS,))),
                     "One gradient-descent step in place, using a workspace from make_workspace(X). The\n"
                     "    gradient statements are loss_and_grads_into's, written out here rather than called:\n"
                     "    numba links a called kernel into the caller and LLVM optimises it again there, which\n"
                     "    made the first step's compile take twice as long as the body alone."),
            *self._step_kernels(scalar, definitions)]

    def _step_kernels(self, scalar, definitions) -> list:
        """sgd_step_kernel and sgd_steps_kernel: sgd_step_into's statements on a workspace of
        their own (the second in a loop) or, for a tiny network, the scalar step (no workspace:
        only a few arrays of a layer's width), which sgd_steps_kernel calls."""
        P, extras = self.params, self.state + self.masks
        if scalar is None:
            return [Function("sgd_step_kernel", (*P, X, T, LR, *extras),
                             (*self.allocating, *self.sgd_update, Return((LOSS,))),
                             "sgd_step_into's statements on a workspace of its own (written out, not called)."),
                    Function("sgd_steps_kernel", (*P, X, T, LR, STEPS, *extras), (
                        ShapeOf((N,), X), *self.allocation, Let(LOSS, InDtype(0, X)),
                        Loop(index("_"), STEPS, (*self.gradients, *self.sgd_update)), Return((LOSS,))),
                        "`steps` gradient-descent steps on one workspace: sgd_step_into's statements in the loop.")]
        return [definitions["holding_gil"], scalar.function("sgd_step_kernel", "holding_gil"),
                Function("sgd_steps_kernel", (*P, X, T, LR, STEPS), (
                    Let(LOSS, InDtype(0, X)),
                    Loop(index("_"), STEPS, (Invoke("sgd_step_kernel", (*P, X, T, LR), LOSS),)), Return((LOSS,))),
                    "`steps` gradient-descent steps in place, each a call of sgd_step_kernel's compiled body\n"
                    "    (compiled once, not again in this loop; long enough a call to release the GIL, so several\n"
                    "    networks can train in threads).")]

    def packed(self, scalar) -> Function:
        """sgd_step on one flat parameter vector: a numba call unboxes every argument, and for a
        tiny network that is most of the call (2-2-2: 0.59 us with seven arguments, 0.50 of it
        the floor of calling any njit function with them; four arguments cost 0.33). A tiny
        network passes views of theta to sgd_step_kernel, its compiled scalar step, not a second
        copy of it to compile (that doubled the compile time of a tiny network). The matrix
        step's statements are written out instead: a called kernel would be linked in and
        optimised by LLVM again, which costs more than compiling the statements once here."""
        views, offset, extras = [], 0, self.state + self.masks
        for name, shape in self.net.params:
            size = math.prod(shape)
            views.append(View(array(name), THETA, offset, offset + size, shape))
            offset += size
        if scalar is None:
            return Function("sgd_step_packed_kernel", (THETA, X, T, LR, *extras),
                            (*views, *self.allocating, *self.sgd_update, Return((LOSS,))))
        return Function("sgd_step_packed_kernel", (THETA, X, T, LR, *extras),
                        (*views, Return((Invoke("sgd_step_kernel", (*self.params, X, T, LR, *extras)),))),
                        compiled="holding_gil")

    def inference(self) -> list:
        """predict_kernel (batch norm with its running averages, dropout the identity) and the
        loss of inference-mode scores, for evaluating a validation or test set."""
        net, P = self.net, self.params
        return [
            Function("predict_kernel", (*P, X, *self.state), (
                DtypeOf(X), ShapeOf((N,), X), *self._forward_buffers(), *_or_blank(net.inference),
                Return((array(net.values[-1]),))),
                "Inference mode: batch norm with its running averages, dropout the identity."),
            Function("inference_loss_kernel", (*P, X, T, *self.state), (
                DtypeOf(X), ShapeOf((N,), X), Invoke("_make_workspace", (X,), self.buffers),
                *net.inference, *net.loss, *net.penalty, Return((LOSS,))),
                "The loss in inference mode: batch norm with its running averages, dropout the identity.")]


def _modes_api_text(net, params, grads) -> str:
    """The API of a network with training and inference modes (batch norm, dropout)."""
    state_shapes = tuple(shape for _, shape in net.state)
    mask_widths = tuple(width for _, width, _ in net.masks)
    rates = tuple(rate for *_, rate in net.masks)
    return MODES_API_TEXT.format(
        params=params, grads=grads, state_names=tuple(n for n, _ in net.state), state_shapes=state_shapes,
        mask_names=tuple(n for n, *_ in net.masks), mask_widths=mask_widths, rates=rates,
        initial_state=tuple(0.0 if n.startswith("running_mean") else 1.0
                                                      for n, _ in net.state))


# The input checks and the API of every generated network module (str.format templates).
CHECKS_TEXT = '''

def _check(function, params, X, T=None):
    arrays = dict(zip(PARAM_NAMES, params), X=X)
    if T is not None:
        arrays["T"] = T
    checked = _arrays(function, **arrays)
    for name, array, shape in zip(PARAM_NAMES, checked, PARAM_SHAPES):
        _shape(function, name, array, shape)
    X = checked[len(PARAM_NAMES)]
    if X.ndim != 2 or X.shape[1] != INPUT_SIZE or X.shape[0] == 0:
        raise ValueError(f"{{function}}: X has shape {{X.shape}}, expected (batch, {{INPUT_SIZE}}) with batch >= 1")
    if T is not None:
        _shape(function, "T", checked[-1], (X.shape[0], OUTPUT_SIZE))
    return checked


def _updated_in_place(function, params, X, T):
    """The parameters a step overwrites must be the caller's own arrays (C-contiguous and
    writeable, so no copy is taken) and share no memory with each other or with X and T."""
    for name, array in zip(PARAM_NAMES, params):
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise ValueError(f"{{function}}: {{name}} must be C-contiguous and writeable (updated in place)")
    _separate(function, dict(zip(PARAM_NAMES, params)), dict(X=X, T=T))
'''

PLAIN_API_TEXT = '''

def forward({params}, X):
    """Scores of the last layer before the loss, for a batch X of shape (N, INPUT_SIZE)."""
    return forward_kernel(*_check("forward", ({params},), X))


def loss_and_grads({params}, X, T):
    """(loss, {grads}) for a batch: X is (N, INPUT_SIZE), T is (N, OUTPUT_SIZE)."""
    return loss_and_grads_kernel(*_check("loss_and_grads", ({params},), X, T))


def sgd_step({params}, X, T, lr):
    """One gradient-descent step in place (p -= lr * dL/dp); returns the loss before it."""
    _check("sgd_step", ({params},), X, T)
    _updated_in_place("sgd_step", ({params},), X, T)
    return sgd_step_kernel({params}, np.ascontiguousarray(X), np.ascontiguousarray(T), _rate("sgd_step", lr))


def sgd_steps({params}, X, T, lr, steps):
    """`steps` full-batch gradient-descent steps in one call; returns the last step's loss."""
    _check("sgd_steps", ({params},), X, T)
    _updated_in_place("sgd_steps", ({params},), X, T)
    return sgd_steps_kernel({params}, np.ascontiguousarray(X), np.ascontiguousarray(T), _rate("sgd_steps", lr),
                            _step_count("sgd_steps", steps))
'''


def _image_line(graph) -> str:
    """INPUT_IMAGE for a network of images: X is (N, INPUT_SIZE), each row one image in NCHW order."""
    if graph.image is None:
        return ""
    return f"\nINPUT_IMAGE = {graph.image!r}  # (C, H, W): each row of X is one image, NCHW order"


def _packed_step_text(shaped_params, kernel: str, modes: bool) -> str:
    """sgd_step_packed, pack and unpack around the printed kernel (NetworkKernels.packed)."""
    offsets = [0]
    for _, shape in shaped_params:
        offsets.append(offsets[-1] + math.prod(shape))
    params = ", ".join(name for name, _ in shaped_params)
    py_extras = ", state=(), masks=()" if modes else ""
    call_extras = ', *_extras("sgd_step_packed", X, state, masks, True)' if modes else ""
    return f'''
PARAM_OFFSETS = {tuple(offsets)!r}  # where each parameter starts in a packed vector; the last is its size


def pack({params}):
    """The parameters as one new flat array (PARAM_NAMES order), for sgd_step_packed."""
    return np.concatenate([np.ravel(p) for p in ({params},)])


def unpack(theta):
    """The parameters as views into a packed vector: updating theta updates them."""
    return tuple(theta[start:end].reshape(shape)
                 for start, end, shape in zip(PARAM_OFFSETS, PARAM_OFFSETS[1:], PARAM_SHAPES))


{kernel}


def sgd_step_packed(theta, X, T, lr{py_extras}):
    """sgd_step on a packed parameter vector (see pack and unpack), in place; returns the loss."""
    if not isinstance(theta, np.ndarray) or theta.shape != (PARAM_OFFSETS[-1],):
        raise ValueError(f"sgd_step_packed: theta must be a flat array of {{PARAM_OFFSETS[-1]}} parameters "
                         f"(pack(...) makes one), got {{getattr(theta, 'shape', type(theta).__name__)}}")
    _check("sgd_step_packed", unpack(theta), X, T)
    if not theta.flags.c_contiguous or not theta.flags.writeable:
        raise ValueError("sgd_step_packed: theta must be C-contiguous and writeable (updated in place)")
    _separate("sgd_step_packed", dict(theta=theta), dict(X=X, T=T))
    return sgd_step_packed_kernel(theta, np.ascontiguousarray(X), np.ascontiguousarray(T), _rate("sgd_step_packed", lr){call_extras})
'''.strip("\n")


def cache_directory() -> Path:
    return files.cache_folder("networks")


def _cache_error(path: Path, exc: OSError) -> SympropError:
    setting = (f"$SYMPROP_CACHE={os.environ['SYMPROP_CACHE']}" if os.environ.get("SYMPROP_CACHE")
               else "the default cache ~/.cache/symprop")
    return SympropError(f"cannot write the network module {path} ({setting}): "
                        f"{exc.strerror or exc}; point SYMPROP_CACHE at a writable folder")


def network_path(canonical: str) -> tuple[Path, str | None]:
    """Where the module for a canonical spec lives, and its built-in name (None if not built in)."""
    for name, builtin in BUILTIN_NETWORKS.items():
        if canonical == builtin:
            return files.GENERATED / f"net_{name}.py", name
    return cache_directory() / f"net_{hashlib.sha256(canonical.encode()).hexdigest()[:12]}.py", None


def network_hash(graph) -> str:
    """The input hash of a network module: the spec and each op's definition (an op may be
    registered outside symbolic/, e.g. in a test file)."""
    return files.inputs_hash("net", graph.spec, *(repr(node.op) for node in graph.nodes))


def load_network(spec: str):
    """The imported kernel module for a spec: built-ins from generated/ (with a warning if the
    generator would now write them differently), any other stack generated into the user cache
    (``$SYMPROP_CACHE`` or ``~/.cache/symprop``) unless an up-to-date file is already there."""
    graph = parse_net(spec)
    canonical = graph.spec
    path, builtin = network_path(canonical)
    if builtin is not None:
        if not files.is_current(path, network_hash(graph)):  # no SymPy printing: 0.7 s saved
            warnings.warn(f"{path} is stale: the generator would now write something else. "
                          f"Regenerate with: {files.REGENERATE_COMMAND}", stacklevel=2)
        try:
            return importlib.import_module(f"symprop.generated.{path.stem}")
        except (SyntaxError, ValueError, UnicodeDecodeError) as exc:
            raise SympropError(f"{path} is corrupt ({type(exc).__name__}: {exc}); "
                               f"rewrite it with: {files.REGENERATE_COMMAND}") from None
    if not files.is_current(path, network_hash(graph)):
        try:
            files.write_if_changed(path, network_module_text(graph))
        except OSError as exc:
            raise _cache_error(path, exc) from None
    module_name = f"symprop_{path.stem}"
    loaded = sys.modules.get(module_name)
    # the module already imported, if it came from this very file (SYMPROP_CACHE may have changed)
    if (loaded is not None and getattr(loaded, "SPEC", None) == canonical
            and Path(getattr(loaded, "__file__", "")) == path):
        return loaded
    return files.import_generated(module_name, path)


MODES_API_TEXT = '''

STATE_NAMES = {state_names!r}  # running averages a training step updates and inference reads
STATE_SHAPES = {state_shapes!r}
INITIAL_STATE = {initial_state!r}  # running means start at 0, running variances at 1 (as torch)
MASK_NAMES = {mask_names!r}  # one dropout mask per dropout layer: 0 (dropped) or 1 (kept)
MASK_WIDTHS = {mask_widths!r}
DROP_RATES = {rates!r}


def init_state(dtype=np.float64):
    """Fresh running averages (a new tuple of arrays, updated in place by training steps)."""
    return tuple(np.full(shape, value, dtype) for shape, value in zip(STATE_SHAPES, INITIAL_STATE))


def make_masks(batch, rng, dtype=np.float64):
    """Dropout masks for a batch: each unit kept (1) with probability 1 - p, else 0, drawn from
    the numpy Generator rng (seed it for a reproducible run)."""
    return tuple((rng.random((batch, width)) >= rate).astype(dtype) for width, rate in zip(MASK_WIDTHS, DROP_RATES))


def _extras(function, X, state, masks, training, with_state=True):
    """The state arrays (with_state), then (training) the masks, in the kernels' argument order, checked."""
    state, masks = tuple(state if state is not None else ()), tuple(masks if masks is not None else ())
    state_names = STATE_NAMES if with_state else ()
    if len(state) != len(state_names):
        raise ValueError(f"{{function}}: state must be the {{len(STATE_NAMES)}} arrays {{STATE_NAMES}} "
                         "(init_state() makes them)")
    if training and len(masks) != len(MASK_NAMES):
        raise ValueError(f"{{function}}: masks must be the {{len(MASK_NAMES)}} dropout masks {{MASK_NAMES}} "
                         "(make_masks(batch, rng) makes them)")
    if training and STATE_NAMES and X.shape[0] < 2:
        raise ValueError(f"{{function}}: batch normalisation in training mode needs a batch of at least 2 rows")
    arrays = dict(zip(state_names, state))
    if training:
        arrays |= dict(zip(MASK_NAMES, masks))
    checked = _arrays(function, X=X, **arrays)[1:]
    for name, array, shape in zip(state_names, checked, STATE_SHAPES):
        _shape(function, name, array, shape)
        if array is not arrays[name] or not array.flags.writeable:
            raise ValueError(f"{{function}}: {{name}} must be C-contiguous and writeable (updated in place)")
    for name, array, width in zip(MASK_NAMES, checked[len(state_names):], MASK_WIDTHS):
        _shape(function, name, array, (X.shape[0], width))
    return tuple(checked)


def forward({params}, X, state=None, training=False, masks=None):
    """Scores of the last layer before the loss. training=False: inference mode (batch norm
    with the running averages in state, dropout the identity); training=True: batch statistics
    and the given dropout masks, as a training step computes them (state is not read)."""
    checked = _check("forward", ({params},), X)
    if training:
        return forward_kernel(*checked, *_extras("forward", checked[-1], (), masks, True, False))
    return predict_kernel(*checked, *_extras("forward", checked[-1], state, None, False))


def loss_and_grads({params}, X, T, masks=None):
    """(loss, {grads}) for a batch in training mode: X is (N, INPUT_SIZE), T is (N, OUTPUT_SIZE);
    masks: one dropout mask per dropout layer (held fixed, so the gradients are checkable)."""
    checked = _check("loss_and_grads", ({params},), X, T)
    return loss_and_grads_kernel(*checked, *_extras("loss_and_grads", checked[-2], (), masks, True, False))


def loss({params}, X, T, state=None):
    """The loss of a batch in inference mode (running averages in state, no dropout): what an
    evaluation of a validation or test set reports. Nothing is updated."""
    checked = _check("loss", ({params},), X, T)
    return inference_loss_kernel(*checked, *_extras("loss", checked[-2], state, None, False))


def sgd_step({params}, X, T, lr, state=None, masks=None):
    """One gradient-descent step in place (p -= lr * dL/dp) in training mode; then the running
    averages in state move towards this batch's statistics. Returns the loss before the step."""
    checked = _check("sgd_step", ({params},), X, T)
    _updated_in_place("sgd_step", ({params},), X, T)
    extras = _extras("sgd_step", checked[-2], state, masks, True)
    return sgd_step_kernel(*checked, _rate("sgd_step", lr), *extras)


def sgd_steps({params}, X, T, lr, steps, state=None, masks=None):
    """`steps` full-batch training steps in one call (the same masks every step); returns the
    last step's loss."""
    checked = _check("sgd_steps", ({params},), X, T)
    _updated_in_place("sgd_steps", ({params},), X, T)
    extras = _extras("sgd_steps", checked[-2], state, masks, True)
    return sgd_steps_kernel(*checked, _rate("sgd_steps", lr), _step_count("sgd_steps", steps), *extras)
'''
