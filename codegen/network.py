"""Network kernels: one module per stack of registered layers, with fused training steps.

``symbolic.graph.parse_net`` reads a spec such as ``"affine(784,100) relu affine(100,10) softmax-cross-entropy"``;
into a Graph;
``network_module_text`` lowers it (dispatching on each op's type) to a module with ``forward``, ``loss_and_grads``, ``sgd_step`` and
``sgd_steps`` (and, for every optimiser of ``symbolic/steps.py``, ``init_state_<rule>`` and the fused
``train_step_<rule>``, printed by ``codegen/optimizer_steps.py``) whose statements come from each layer's derivation (the affine rules as
``np.dot`` calls, elementwise rules as loops). A step is one call into compiled code and skips
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

from . import files
from .backend import NUMBA, Backend
from .common import indent
from .scalar_step import scalar_step
from .optimizer_steps import optimizers_text


# name -> spec of the networks committed under generated/ (net_<name>.py)
BUILTIN_NETWORKS = {
    "two_layer_relu": "affine(784,100) relu affine(100,10) softmax-cross-entropy",  # seed 000
    "moons_logistic": "affine(2,1) binary-cross-entropy",  # seed 001, two moons
    "two_layer_sigmoid": ("affine-shared-bias(2,2) sigmoid affine-shared-bias(2,2) sigmoid "
                          "squared-error"),  # seed 001, the 2-2-2 worked example
}



def network_module_text(spec, name: str | None = None, backend: Backend = NUMBA) -> str:
    """The module text of a network: ``spec`` is a net spec or the Graph it already parsed into."""
    graph = parse_net(spec) if isinstance(spec, str) else spec
    canonical = graph.spec
    net = Lowering(graph)
    param_names = [p for p, _ in net.params]
    params = ", ".join(param_names)
    grads = ", ".join(f"d{p}" for p in param_names)
    buffers = ", ".join(name for name, _ in net.buffers)
    scores = net.values[-1]
    forward_buffers = [(n, shape) for n, shape in net.buffers if n in net.values or n in net.scratch]
    # a network with training and inference modes passes its running averages (state) and
    # dropout masks to the kernels after the usual arguments; "" for every other network
    state = "".join(f", {n}" for n, _ in net.state)
    masks = "".join(f", {n}" for n, *_ in net.masks)
    inference_lines, inference_helpers = backend.print(net.inference) if net.has_modes else ([], set())
    after_lines, after_helpers = backend.print(net.after_update)
    # these statements for one row of scalars; None unless tiny. Normalisation layers (sums over
    # the batch or a row, state, masks) and L2 penalties (outside the loss statements) keep the
    # matrix step.
    scalar = None if net.has_modes or net.scales or net.penalty else scalar_step(net, backend)
    forward_lines, forward_helpers = backend.print(net.forward)
    loss_lines, loss_helpers = backend.print(net.loss + net.penalty)
    backward_lines, backward_helpers = backend.print(net.backward + net.penalty_backward)
    # parameters an initialiser starts at one (a normalisation's scale g); only where there are any
    scale_line = (f"\nSCALE_PARAMS = {tuple(net.scales)!r}  # parameters that start at one (a normalisation's scale)"
                  if net.scales else "")
    predict = (_predict_text(params, forward_buffers, inference_lines, state, scores, backend)
               + _inference_loss_text(params, buffers, inference_lines, loss_lines, state)) if net.has_modes else ""
    api = (_modes_api_text(net, params, grads) if net.has_modes
           else PLAIN_API_TEXT.format(params=params, grads=grads))
    helpers = (forward_helpers | loss_helpers | backward_helpers | inference_helpers | after_helpers
               | (scalar.helpers if scalar else set()))
    # loss_and_grads_into's statements, written into every kernel that computes gradients: on the
    # caller's workspace (the *_into kernels) or allocating their own (the *_kernel ones)
    gradients = _gradients_text(forward_lines, loss_lines, backward_lines)
    allocating = _gradients_text(forward_lines, loss_lines, backward_lines, net.buffers, backend)
    sgd_update = (f"    step = X.dtype.type(lr)\n"
                  + "".join(f"    _sgd_update({p}.reshape(-1), d{p}.reshape(-1), step)\n" for p in param_names)
                  + _after_update_text(after_lines))  # then: return loss
    # sgd_steps_kernel's loop: sgd_step_into's statements one level further in, on one workspace
    steps_loop = "\n".join(f"    {line}" if line else line for line in f"{gradients}\n{sgd_update}".splitlines())
    steps_text = (f"    N = X.shape[0]\n{_allocation_text(net.buffers, backend)}\n"
                  f"    loss = X.dtype.type(0)\n    for _ in range(steps):\n{steps_loop}\n    return loss")
    body = backend.module_start(helpers) + f'''

SPEC = {canonical!r}
PARAM_NAMES = {tuple(param_names)!r}
PARAM_SHAPES = {tuple(s for _, s in net.params)!r}
INPUT_SIZE = {net.widths[0]}{_image_line(graph)}
OUTPUT_SIZE = {net.widths[-1]}
LOSS = {graph.loss.name!r}
# True: sgd_step_kernel / sgd_steps_kernel run the scalar-expanded step (a tiny network, every
# unit a scalar local, no workspace); sgd_step_into keeps the matrix step on a workspace.
SCALAR_STEP = {scalar is not None}{scale_line}


def make_workspace(X):
    """Every intermediate array of a step for a batch like X, allocated once (plain Python:
    nothing to compile for a caller that keeps its workspace, as symprop train does)."""
    N = X.shape[0]
    return ({", ".join(f"np.empty({backend.shape(shape)}, X.dtype)" for _, shape in net.buffers)},)


_make_workspace = jit(make_workspace)  # the same, for the kernels that allocate their own


@jit
def forward_kernel({params}, X{masks}):
    real = X.dtype.type
    N = X.shape[0]
{chr(10).join(f"    {n} = np.empty({backend.shape(shape)}, X.dtype)" for n, shape in forward_buffers)}
{chr(10).join(indent(forward_lines, 1))}
    return {scores}


@jit
def loss_and_grads_into({params}, X, T{masks}, {buffers}):
    """The loss; gradients and intermediates are written into the workspace buffers."""
{gradients}
    return loss


@jit
def loss_and_grads_kernel({params}, X, T{masks}):
    """loss_and_grads_into's statements on arrays of its own: written out, not called, because
    numba links a called kernel into its caller and LLVM optimises it all again there."""
{allocating}
    return loss, {grads}


@jit
def _sgd_update(param, grad, step):
    """param -= step * grad, in place (the gradient is complete before any weight changes).
    Called with flat views, so one compiled signature serves parameters of every rank."""
    flat, gflat = param.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        flat[i] -= step * gflat[i]


@jit
def sgd_step_into({params}, X, T, lr{state}{masks}, {buffers}):
    """One gradient-descent step in place, using a workspace from make_workspace(X). The
    gradient statements are loss_and_grads_into's, written out here rather than called:
    numba links a called kernel into the caller and LLVM optimises it again there, which
    made the first step's compile take twice as long as the body alone."""
{gradients}
{sgd_update}    return loss


{_step_kernels_text(params, scalar, allocating + chr(10) + sgd_update + "    return loss", steps_text, state + masks)}


{_packed_step_text(net.params, scalar, allocating + chr(10) + sgd_update + "    return loss", state + masks)}
{predict}{CHECKS_TEXT.format()}{api}''' + optimizers_text(
        param_names, buffers, gradients, allocating, backend,
        (state + masks, _after_update_text(after_lines)) if net.has_modes else None)
    command = files.REGENERATE_COMMAND if name else f'symprop generate --net "{canonical}"'
    head = files.header(f"Fused kernels of the network {canonical!r}.", "codegen/network.py",
                        command, [f"spec {canonical}"], network_hash(graph), body)
    return head + body


def _gradients_text(forward_lines, loss_lines, backward_lines, buffers=(), backend=None) -> str:
    """The statements of loss_and_grads_into (the loss into ``loss``, the gradients into the
    workspace), indented as a kernel's body: printed into each step kernel too. With buffers,
    the workspace is allocated first (a kernel called without one)."""
    allocation = [_allocation_text(buffers, backend)] if buffers else []
    return "\n".join(["    real = X.dtype.type", "    N = X.shape[0]", *allocation, "    # ---- forward ----",
                      *indent(forward_lines, 1), "    # ---- loss ----", *indent(loss_lines, 1),
                      "    # ---- backward (chain rule, from the loss back to the first layer) ----",
                      *indent(backward_lines, 1)])


def _allocation_text(buffers, backend) -> str:
    """The workspace's arrays allocated in a kernel's body (after N = X.shape[0])."""
    return "\n".join(f"    {name} = np.empty({backend.shape(shape)}, X.dtype)" for name, shape in buffers)


def _after_update_text(lines) -> str:
    """What a step does after the parameter update (batch norm's running averages), indented."""
    if not lines:
        return ""
    return "".join(f"    {line}\n" for line in ["real = X.dtype.type", "N = X.shape[0]", *lines])


def _predict_text(params, forward_buffers, lines, state, scores, backend) -> str:
    """The inference-mode forward pass: running averages instead of batch statistics, no dropout."""
    allocations = "\n".join(f"    {n} = np.empty({backend.shape(shape)}, X.dtype)" for n, shape in forward_buffers)
    body = "\n".join(indent(lines, 1))
    return f'''

@jit
def predict_kernel({params}, X{state}):
    """Inference mode: batch norm with its running averages, dropout the identity."""
    real = X.dtype.type
    N = X.shape[0]
{allocations}
{body}
    return {scores}
'''


def _inference_loss_text(params, buffers, inference_lines, loss_lines, state) -> str:
    """The loss with inference-mode scores, for evaluating a validation or test set."""
    body = "\n".join(indent(inference_lines + loss_lines, 1))
    return f'''

@jit
def inference_loss_kernel({params}, X, T{state}):
    """The loss in inference mode: batch norm with its running averages, dropout the identity."""
    real = X.dtype.type
    N = X.shape[0]
    {buffers}, = _make_workspace(X)
{body}
    return loss
'''


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


def _packed_step_text(shaped_params, scalar, step, extras="") -> str:
    """sgd_step on one flat parameter vector: a numba call unboxes every argument, and for a
    tiny network that is most of the call (2-2-2: 0.59 us with seven arguments, 0.50 of it
    the floor of calling any njit function with them; four arguments cost 0.33). ``step``:
    sgd_step_kernel's statements, written out after the views for the matrix step."""
    offsets, views = [0], []
    for name, shape in shaped_params:
        size = math.prod(shape)
        view = f"theta[{offsets[-1]}:{offsets[-1] + size}]"
        views.append(f"    {name} = {view}" + (f".reshape({shape})" if len(shape) > 1 else ""))
        offsets.append(offsets[-1] + size)
    params = ", ".join(name for name, _ in shaped_params)
    # Views of theta passed to sgd_step_kernel: for a tiny network its compiled scalar step, not
    # a second copy of it to compile (that doubled the compile time of a tiny network). The
    # matrix step's statements are written out instead: a called kernel would be linked in and
    # optimised by LLVM again, which costs more than compiling the statements once here.
    decorator = "jit" if scalar is None else "jit_holding_gil"
    kernel = [*views, step if scalar is None else f"    return sgd_step_kernel({params}, X, T, lr{extras})"]
    py_extras = ", state=(), masks=()" if extras else ""
    call_extras = ', *_extras("sgd_step_packed", X, state, masks, True)' if extras else ""
    return f'''
PARAM_OFFSETS = {tuple(offsets)!r}  # where each parameter starts in a packed vector; the last is its size


def pack({params}):
    """The parameters as one new flat array (PARAM_NAMES order), for sgd_step_packed."""
    return np.concatenate([np.ravel(p) for p in ({params},)])


def unpack(theta):
    """The parameters as views into a packed vector: updating theta updates them."""
    return tuple(theta[start:end].reshape(shape)
                 for start, end, shape in zip(PARAM_OFFSETS, PARAM_OFFSETS[1:], PARAM_SHAPES))


@{decorator}
def sgd_step_packed_kernel(theta, X, T, lr{extras}):
{chr(10).join(kernel)}


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


def _step_kernels_text(params, scalar, step, steps, extras="") -> str:
    """sgd_step_kernel and sgd_steps_kernel: on a workspace (matrix step: ``step`` and
    ``steps``, the statements of sgd_step_into on a workspace of their own, the second in a
    loop) or, for a tiny network, the scalar step (no workspace: only a few arrays of a
    layer's width)."""
    if scalar is None:
        return f'''
@jit
def sgd_step_kernel({params}, X, T, lr{extras}):
    """sgd_step_into's statements on a workspace of its own (written out, not called)."""
{step}


@jit
def sgd_steps_kernel({params}, X, T, lr, steps{extras}):
    """`steps` gradient-descent steps on one workspace: sgd_step_into's statements in the loop."""
{steps}
'''.strip("\n")
    return f'''
def jit_holding_gil(function):
    """jit without nogil, for a kernel shorter than releasing the GIL: letting it go and
    taking it back costs ~0.06 us a call, about a whole 2-2-2 step (measured, 0.68 -> 0.61 us)."""
    return jit(function, nogil=False)


{scalar.function_text("sgd_step_kernel", "jit_holding_gil").strip(chr(10))}


@jit
def sgd_steps_kernel({params}, X, T, lr, steps):
    """`steps` gradient-descent steps in place, each a call of sgd_step_kernel's compiled body
    (compiled once, not again in this loop; long enough a call to release the GIL, so several
    networks can train in threads)."""
    loss = X.dtype.type(0)
    for _ in range(steps):
        loss = sgd_step_kernel({params}, X, T, lr)
    return loss
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


def network_file(spec: str) -> tuple[Path, str]:
    """Where the module for a spec lives and its current text (built-ins under generated/)."""
    graph = parse_net(spec)
    path, name = network_path(graph.spec)
    return path, network_module_text(graph, name)


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
