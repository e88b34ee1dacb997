"""Kernels from graph files: a learner's own circuit as a numba value-and-gradient kernel.

A graph file (``symbolic/graphfile.py``) is a scalar circuit: inputs, parameters and staged
nodes, each a node of the graph model whose op (``ops.expression.Expression``) holds a SymPy
formula. The circuit is lowered to statements once, each node by its op's ``lower()``
(``GraphFile.lowering``): forward, every node's formula; backward, from the objective back,
the upstream gradient times each SymPy-derived local partial, added into the gradient of
every value the node reads, so a value that feeds several nodes gets the sum of its paths.
The transcript interprets the same statements.

The statements are printed by the NUMBA backend as straight-line scalar code. The module has
``forward`` and ``value_and_grad`` and, when the file has an ``[update]``, ``sgd_step`` (one
step of descent or ascent) and ``train`` (the file's steps, or its epochs over the data set,
per sample or full batch). ``load_graph_kernels`` generates it into the user cache, as
``load_network`` does for network specs; ``symprop generate --graph FILE`` prints it.
"""
from __future__ import annotations

import functools
import hashlib
import keyword
import re
import sys
from dataclasses import replace
from pathlib import Path

import sympy as sp

from symprop.symbolic.stable import canonical_form, masks_as_selects

from symprop.symbolic.errors import SympropError
from symprop.symbolic.graphfile import GraphFile, parse_graph, symbol
from symprop.symbolic.userfiles import read_text

from . import files
from .backend import NUMBA, Backend
from .common import indent
from symprop.symbolic.ir import Assignments

GENERATOR = "codegen/graph_kernels.py"

# Names the generated module (or a kernel body) uses for itself: a graph value with one of
# these names is renamed in the kernel (x -> x_), so it can never shadow them.
TAKEN = set(keyword.kwlist) | {
    "real", "lr", "step", "steps", "epochs", "n", "size", "value", "total", "dtype",
    "np", "numba", "math", "hashlib", "itertools", "warnings", "jit", "jit_inline",
    "abs", "max", "min", "range", "type", "float", "int", "len", "tuple", "dict", "isinstance",
    "TITLE", "INPUTS", "PARAMETERS", "NODES", "OBJECTIVE", "GRADIENTS", "DTYPE", "RULE",
    "LEARNING_RATE", "STEPS", "EPOCHS", "DATA", "MODE", "INPUT_VALUES",
}

CSE_TEMPORARY = re.compile(r"t\d+\Z")  # print_statements names its temporaries t0, t1, ...


class _Taken:
    """The names a graph value's symbol must avoid in the kernel: TAKEN and the temporaries."""

    def __contains__(self, name: str) -> bool:
        return name in TAKEN or bool(CSE_TEMPORARY.match(name))


class _Identifiers:
    """The kernel's Python name of each graph value and of its gradient (``dx`` is df/dx, as
    CS231n writes it): the lowering's symbols, which avoid the names in TAKEN."""

    def __init__(self, low):
        self.value = {name: s.name for name, s in low.value.items()}
        self.grad = {name: s.name for name, s in low.grad.items()}


def _printed(statements: list, graph: GraphFile, low) -> list:
    """The lowering's statements as the kernel computes them: exp only where it cannot overflow
    (``_overflow_free``), and a node's local partial reading the node's value where the partial
    contains the node's formula (d exp(y)/dy reads e). Values are the same; the transcript reads
    the statements as lowered."""
    nodes = {low.grad[node.name].name: node for node in graph.graph.nodes}
    out = []
    for statement in statements:
        if isinstance(statement, Assignments) and statement.upstream is None:
            statement = replace(statement, pairs=tuple((t, _overflow_free(e)) for t, e in statement.pairs))
        elif isinstance(statement, Assignments):
            node, upstream = nodes[statement.upstream], statement.names[statement.upstream]
            pairs = []
            for target, rule in statement.pairs:
                partial = rule.xreplace({upstream: sp.Integer(1)})
                if not isinstance(node.op.formula, sp.Symbol):
                    partial = partial.xreplace({node.op.formula: symbol(node.name)})
                pairs.append((target, upstream * _overflow_free(partial)))
            statement = replace(statement, pairs=tuple(pairs))
        out.append(statement)
    return out


def _overflow_free(expr: sp.Expr) -> sp.Expr:
    """expr in an equal form that takes exp only where it cannot overflow (1/(1 + exp(-y)) as the
    stable sigmoid helper), as the layers' kernels do; formulas without exp print as written, so
    a float32 file computes exactly the operations its learner wrote."""
    if not expr.has(sp.exp):
        return expr
    # a mask times a factor that can overflow as a select: ELU's exp(x) * H(-expm1(x), 1) was
    # inf * 0 = NaN at x >= 710 (float64), where the derivative is 1
    return masks_as_selects(canonical_form(expr, sorted(expr.free_symbols, key=lambda s: s.name)))


def _number(value) -> str:
    """A file's number as a Python float literal (the wrapper casts it to DTYPE)."""
    return repr(float(value))


def graph_module_text(text: str, source: str, backend: Backend = NUMBA, output: str | None = None) -> str:
    """The generated module for a graph file's text (``source`` names it in messages and the header;
    ``output``, the file it is written to, completes the header's regenerate command)."""
    g = graph = parse_graph(text, source)
    low = graph.lowering(_Taken())
    ids = _Identifiers(low)
    forward_lines, forward_helpers = backend.print(_printed(low.forward, g, low))
    backward_lines, backward_helpers = backend.print(_printed(low.backward, g, low))
    helpers = forward_helpers | backward_helpers
    args = [*g.inputs, *g.parameters]
    arg_ids = [ids.value[a] for a in args]
    signature = ", ".join(arg_ids)
    defaults = ", ".join(f"{ids.value[a]}={_number(v)}" for a, v in g.given().items())
    node_ids = [ids.value[n] for n in g.nodes]
    grads = [ids.grad[a] for a in args]
    top = ids.value[low.objective]
    root = low.root
    gradient_keys = tuple(f"d{root}/d{a}" for a in args)
    title = " ".join(g.title.split())
    body = backend.module_start(helpers) + f'''

TITLE = {title!r}
INPUTS = {tuple(g.inputs)!r}
PARAMETERS = {tuple(g.parameters)!r}
NODES = {tuple(g.nodes)!r}
OBJECTIVE = {low.objective!r}  # value_and_grad's value: {"the loss" if g.loss else "the output"}
GRADIENTS = {gradient_keys!r}  # value_and_grad's gradients, in order{
    f" (dL: the upstream gradient dout = {g.dout} arrives at {low.objective})" if g.dout is not None else ""}
DTYPE = np.{g.dtype}  # the file's dtype; every function takes dtype= to compute in the other


@jit
def forward_kernel({signature}):
    """Every node's value, in NODES order."""
    real = type({arg_ids[0]})
{chr(10).join(indent(forward_lines, 1))}
    return ({", ".join(node_ids)},)


@jit
def value_and_grad_kernel({signature}):
    """({low.objective}, {", ".join(gradient_keys)})."""
    real = type({arg_ids[0]})
    # ---- forward: each node from the values it uses ----
{chr(10).join(indent(forward_lines, 1))}
    # ---- backward: the gradient of {root} at every node, from {low.objective} back ----
{chr(10).join(indent(backward_lines, 1))}
    return {top}, {", ".join(grads)}


def _scalars(function, dtype, **values):
    """The values as numbers of dtype (float32 or float64), after checking they are numbers."""
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"{{function}}: dtype must be np.float32 or np.float64, got {{dtype!r}}")
    out = []
    for name, value in values.items():
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{{function}}: {{name}} must be a number, got {{type(value).__name__}} {{value!r:.40}}")
        out.append(dtype(value))
    return out


def _results(dtype, values):
    """numba returns float32 scalars as Python floats: give them back in the dtype computed in."""
    return tuple(dtype(v) for v in values)


def forward({defaults}, *, dtype=DTYPE):
    """Every node's value (NODES order); the defaults are the graph file's values."""
    return _results(dtype, forward_kernel(*_scalars("forward", dtype, {", ".join(f"{i}={i}" for i in arg_ids)})))


def value_and_grad({defaults}, *, dtype=DTYPE):
    """({low.objective}, {", ".join(gradient_keys)}); the defaults are the graph file's values."""
    return _results(dtype, value_and_grad_kernel(*_scalars("value_and_grad", dtype, {", ".join(f"{i}={i}" for i in arg_ids)})))
''' + (_update_text(g, low, ids, root) if g.update is not None else "")
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    head = files.header(f"Value-and-gradient kernel of the graph file {Path(source).name}: {title}",
                        GENERATOR, f"symprop generate --graph {source}" + (f" -o {output}" if output else ""),
                        [f"graph file {source} (sha256 {digest})"], graph_hash(text), body)
    return head + body


def _update_text(g: GraphFile, low, ids, root: str) -> str:
    """sgd_step (one step, descent or ascent) and train (the file's steps or epochs)."""
    u = g.update
    params = [ids.value[p] for p in g.parameters]
    inputs = [ids.value[i] for i in g.inputs]
    grads = [ids.grad[a] for a in [*g.inputs, *g.parameters]]
    sign = "+" if u.ascent else "-"
    updates = ", ".join(f"{p} {sign} step * {ids.grad[name]}" for name, p in zip(g.parameters, params))
    columns = list(g.data.columns) if g.data is not None else []
    fixed = [ids.value[i] for i in g.inputs if i not in columns]
    column_ids = [ids.value[c] for c in columns]
    call = lambda sample: ", ".join(  # noqa: E731
        [f"{ids.value[i]}[{sample}]" if i in columns else ids.value[i] for i in g.inputs] + params)
    if g.data is None:
        unit, loop = "steps", f'''
    for _ in range(steps):
        value, {", ".join(grads)} = value_and_grad_kernel({call(None)})
        {", ".join(params)} = {updates}'''
    elif g.data.per_sample:
        unit, loop = "epochs", f'''
    for _ in range(epochs):
        for n in range({column_ids[0]}.shape[0]):
            value, {", ".join(grads)} = value_and_grad_kernel({call("n")})
            {", ".join(params)} = {updates}'''
    else:
        sums = [low.fresh(f"sum_{ids.grad[p]}") for p in g.parameters]
        mean_updates = ", ".join(f"{p} {sign} step * ({s} / size)" for p, s in zip(params, sums))
        unit, loop = "epochs", f'''
    size = real({column_ids[0]}.shape[0])
    for _ in range(epochs):
        total = real(0)
        {" = ".join(sums)} = real(0)
        for n in range({column_ids[0]}.shape[0]):
            value, {", ".join(grads)} = value_and_grad_kernel({call("n")})
            total += value
{chr(10).join(f"            {s} += {ids.grad[p]}" for s, p in zip(sums, g.parameters))}
        value = total / size  # the mean over the batch
        {", ".join(params)} = {mean_updates}'''
    kernel_args = ", ".join([*params, *fixed, *column_ids])
    data = ", ".join(f"{c!r}: [{', '.join(_number(v) for v in samples)}]" for c, samples in
                     (g.data.columns.items() if g.data is not None else []))
    fixed_defaults = {ids.value[i]: _number(v) for i, v in g.inputs.items() if i not in columns}
    first_sample = {c: samples[0] for c, samples in g.data.columns.items()} if g.data is not None else {}
    step_defaults = ", ".join(f"{ids.value[name]}={_number(first_sample.get(name, value))}" for name, value in
                              [*g.parameters.items(), *g.inputs.items()])
    count = u.steps
    rule = "ascent" if u.ascent else "descent"
    mode = g.data.mode if g.data is not None else None
    plural = "" if count == 1 else "s"
    described = f"{count} epoch{plural} over DATA, {mode}" if g.data is not None else f"{count} step{plural}"
    return f'''

RULE = {rule!r}  # gradient {rule}: p {sign}= lr * d{root}/dp
LEARNING_RATE = {_number(u.learning_rate)}
{unit.upper()} = {count}
MODE = {mode!r}  # with DATA: an update per sample, or the full-batch mean
DATA = {{{data}}}
INPUT_VALUES = {{{", ".join(f"{k!r}: {v}" for k, v in fixed_defaults.items())}}}  # train's inputs that are not data columns


@jit
def sgd_step_kernel({", ".join(params + inputs)}, lr):
    """One step of gradient {rule}: the new parameters and the value before the step."""
    real = type({params[0]})
    step = real(lr)
    value, {", ".join(grads)} = value_and_grad_kernel({", ".join(inputs + params)})
    return {updates}, value


@jit
def train_kernel({kernel_args}, lr, {unit}):
    """{unit.capitalize()} of gradient {rule}: the final parameters and the last value computed."""
    real = type({params[0]})
    step = real(lr)
    value = real(0){loop}
    return {", ".join(params)}, value


def sgd_step({step_defaults}, lr=LEARNING_RATE, *, dtype=DTYPE):
    """One step of gradient {rule}: ({", ".join(params)} after it, {low.objective} before it). Defaults: the
    file's values{" (a data column's: its first sample, as the transcript's first step)" if columns else ""}."""
    values = _scalars("sgd_step", dtype, {", ".join(f"{i}={i}" for i in params + inputs)})
    return _results(dtype, sgd_step_kernel(*values, dtype(_rate("sgd_step", lr))))


def train({", ".join(f"{ids.value[p]}={_number(v)}" for p, v in g.parameters.items())}, lr=LEARNING_RATE, {unit}={unit.upper()}, *, dtype=DTYPE):
    """As the graph file describes it ({described}): ({", ".join(params)} after it, the last
    {low.objective} computed{", per sample before its update" if mode == "per-sample" else ""}). Defaults: the file's values."""
    values = _scalars("train", dtype, {", ".join(f"{i}={i}" for i in params)}, **INPUT_VALUES)
    columns = [np.array(DATA[name], dtype) for name in DATA]
    return _results(dtype, train_kernel(*values, *columns, dtype(_rate("train", lr)), _step_count("train", {unit})))
'''


def graph_hash(text: str) -> str:
    """The input hash of a graph module: the graph file's text."""
    return files.inputs_hash("graph", text)


def cache_directory() -> Path:
    return files.cache_folder("graphs")


def graph_kernels_path(path, text: str) -> Path:
    """Where the module of a graph file lives in the cache: named after the file and its content."""
    stem = re.sub(r"[^A-Za-z0-9_]", "_", Path(path).stem)
    return cache_directory() / f"graph_{stem}_{hashlib.sha256(text.encode()).hexdigest()[:12]}.py"


@functools.lru_cache(maxsize=32)
def _module_text_of(text: str, source: str) -> str:
    """graph_module_text, once per process for one file's text (loading it again only compares)."""
    return graph_module_text(text, source)


def load_graph_kernels(path):
    """The imported kernel module of a graph file, generated into the user cache
    (``$SYMPROP_CACHE`` or ``~/.cache/symprop``), or the file already there when it is exactly
    what the generator writes. A bad graph file is a SympropError naming the file, line and field."""
    source = str(Path(path).resolve())
    text = read_text(Path(path), "graph file")
    parse_graph(text, str(path))  # the file's own mistakes, named as the user wrote the path
    target = graph_kernels_path(path, text)
    # regenerated and compared byte for byte, not judged by its header: a module edited by
    # hand with its hashes recomputed would otherwise load and give the edited gradient
    try:
        changed = files.write_if_changed(target, _module_text_of(text, source))
    except OSError as exc:
        raise SympropError(f"cannot write the graph module {target} ({exc.strerror or exc}); "
                           "point SYMPROP_CACHE at a writable folder") from None
    module_name = f"symprop_{target.stem}"
    loaded = sys.modules.get(module_name)
    if loaded is not None and not changed and getattr(loaded, "__file__", None) == str(target):
        return loaded
    return files.import_generated(module_name, target, "delete it to regenerate")
