"""The transcript of any net spec with given numbers: every element of every value, forward
and backward, computed from each op's derived rules.

``graph_transcript(parse_net(spec), values)`` lowers the Graph (``symbolic/lower.py``: the
statements the kernels are printed from) and runs each node's statements at the values' sizes
in exact arithmetic (``symbolic/interpret.py``): every assignment is a line, its formula the
statement's, its note the one the lowering gave it. Nothing here is written per op type, so
an op family registered anywhere (an op class and its lowering, in a test file) gets a
transcript with no edit elsewhere; what this module adds is the presentation around the
lowered statements: the given values, the headings, the L2 penalty, the update and the
forward pass after it.

Names follow the code generator: parameters ``W1, b1, W2, b2, ...`` (k counts affine layers),
a per-feature parameter ``g`` after the first affine layer is ``g1``; values ``z1`` (affine),
``h1`` (then ``h1b``, ...) for the layers after it. Keys are stable strings: ``X[0,1]``,
``z1[0,1]``, ``h1[0,1]``, ``L``, ``dL/dz1[0,1]``, local derivatives ``dh1[0,1]/dz1[0,1]``,
``dL/dW1[0,1]``, ``dL/db1[0]``, updates ``W1_new[0,1]``. Ops named by their layer position k,
as the generated module names them: batch and layer norm's ``scalek, shiftk`` (and ``meank,
vark, sk, xhatk``, the backward rule's sums ``sum_dyk`` ...), a dropout's mask ``maskk`` (given
with the values). Row-wise losses add ``zmax``, ``P`` (softmax), ``zy`` (the hinge) and the rows'
losses ``L_n[n]``; with an ``l2=`` penalty the loss is ``L_data``, ``L = L_data + penalty_W1``,
and ``dL/dW1 = dL_data/dW1 + lambda1 W1``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import sympy as sp

from .errors import SympropError
from .userfiles import parse_toml, read_text
from .graph import Graph, Node, chain_names
from .interpret import Interpreter
from .lower import Lowering
from .ops.builders import LOSS
from .layers import N, Affine
from .ops.affine import l2_penalty_derivation
from .networkfile import _number, _Where
from .transcript import Transcript, tr, typeset_name

# --- names ---------------------------------------------------------------------------------

def _element(name: str, index: tuple[int, ...]) -> str:
    """The key of one element: X[0,1], b1[0]."""
    return f"{name}[{','.join(map(str, index))}]"


def _grad(key: str) -> str:
    return f"dL/d{key}"


def _latex(key: str) -> str:
    """z1[0,1] -> z_{1}[0,1]; W1_new[0,1] -> W_{1}^{new}[0,1]; dL/dz1[0,1] as a fraction."""
    if "/d" in key and key.startswith("d"):
        top, bottom = key[1:].split("/d", 1)
        return rf"\frac{{\partial {_latex(top)}}}{{\partial {_latex(bottom)}}}"
    name, bracket, rest = key.partition("[")
    new = name.endswith("_new")
    text = typeset_name(name[:-4] if new else name) + (r"^{\mathrm{new}}" if new else "")
    return text + (bracket + rest if bracket else "")


@dataclass
class Layer:
    """A node as the transcript names it: the value it reads, the value it writes, its
    parameters (role in the op's rules -> name, e.g. "W" -> "W1") and their shapes."""

    node: Node
    source: str
    out: str
    width_in: int
    params: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    shape_in: object = None  # features (an int) or an image (C, H, W)
    shape_out: object = None
    masks: dict[str, str] = field(default_factory=dict)  # role -> name of an N x width input (dropout's m)


# --- the penalty and the checks around the lowered statements -------------------------------

def _data_grad(key: str) -> str:
    """The gradient of the data loss alone, where an L2 penalty adds its own: dL_data/dW1[0,1]."""
    return f"dL_data/d{key}"


def _by_name(expr, names: dict):
    """expr with each free symbol named in ``names`` replaced (a derivation's symbols carry
    assumptions, so they are matched by name)."""
    return expr.xreplace({s: names[s.name] for s in expr.free_symbols if s.name in names})


def _penalty_strength(b, layer):
    """lambda of affine(I,J,l2=lambda), a given quantity of the transcript (once per layer)."""
    key = f"lambda{layer.params['W'][1:]}"
    if key not in b.t.quantities:
        rate = _exact(repr(layer.node.args[2]), _failing(layer.node.where, "l2"))
        b.t.given(key, rate, text=key, latex=_latex(key), show=True,
                  note=tr(f"the L2 penalty's strength on {layer.params['W']} ({layer.node.text})",
                          f"{layer.params['W']} 的 L2 惩罚系数（{layer.node.text}）"))
    return sp.Symbol(key)


def _penalties(b, layers):
    """L = L_data + (lambda/2) sum W^2 for each affine layer with l2=: the derivation's
    per-element penalty P, summed over the weights (biases are not penalised)."""
    d = l2_penalty_derivation()
    terms = [sp.Symbol(b.loss_key)]
    b.t.heading(tr("L2 penalty", "L2 惩罚"))
    for layer in layers:
        if not (isinstance(layer.node.op, Affine) and len(layer.node.args) > 2):
            continue
        lam, W = _penalty_strength(b, layer), layer.params["W"]
        elements = [_by_name(d.forward["P"], {"w": sp.Symbol(_element(W, index)), "lambda": lam})
                    for index in b.indices(layer.shapes["W"])]
        key = f"penalty_{W}"
        b.define(key, sp.Add(*elements, evaluate=False),
                 tr(f"{sp.sstr(d.steps[0].rhs)} on {W}: the sum of (lambda/2) w^2 over its elements",
                    f"{W} 上的 {sp.sstr(d.steps[0].rhs)}：各元素 (lambda/2) w^2 之和"))
        terms.append(sp.Symbol(key))
    b.define("L", sp.Add(*terms, evaluate=False), tr("the data loss plus the penalties", "数据误差加上惩罚项"))


def _penalty_gradient(b, layer):
    """dL/dW = dL_data/dW + the derivation's dP/dw, element by element (weight decay)."""
    d = l2_penalty_derivation()
    lam, W = _penalty_strength(b, layer), layer.params["W"]
    note = tr(f"the data loss's gradient plus the penalty's, {sp.sstr(d.backward['dW'])}",
              f"数据误差的梯度加上惩罚项的梯度 {sp.sstr(d.backward['dW'])}")
    for index in b.indices(layer.shapes["W"]):
        key = _element(W, index)
        local = _by_name(d.backward["dW"], {"w": sp.Symbol(key), "lambda": lam})
        b.define(_grad(key), sp.Add(sp.Symbol(_data_grad(key)), local, evaluate=False), note)
        note = None


def _one_hot_targets(b, layer):
    """The derivations of these losses use sum_k t[k] = 1 (one-hot targets): refuse others."""
    group = layer.node.op.one_hot_group(layer.node.args) or layer.width_in
    for n in range(b.rows):
        row = [b.t.value(_element("T", (n, j))) for j in range(layer.width_in)]
        if any(sorted(row[k:k + group]) != [0] * (group - 1) + [1] for k in range(0, len(row), group)):
            raise SympropError(f"{b.where}, field 'T': {layer.node.op.name} takes one-hot targets "
                               f"({one_hot_unit(group, layer.width_in)}, the rest 0), as its derivation assumes; "
                               f"row {n} is {[str(v) for v in row]}")


def one_hot_unit(group: int, width: int) -> str:
    """Where a one-hot target has its 1: in words, for the messages refusing other targets."""
    return "one 1 per row" if group == width else f"one 1 in each group of {group}, a token's classes"


def _run(b, statements, shown):
    """The interpreter runs the statements; each assignment becomes a line of b's transcript."""
    if statements:
        run = b.interpreter(shown)
        run.run(statements)
        run.finish()


def _forward(b, layer):
    """A node's forward statements, then (a loss) its loss's, whose line comes under "Loss"."""
    statements = b.lowered(layer)
    if layer.node.op.one_hot_targets:
        _one_hot_targets(b, layer)
    _run(b, statements.forward, statements.shown)
    _run(b, statements.loss, statements.shown)


def _backward(b, layer):
    statements = b.lowered(layer)
    _run(b, statements.backward, statements.shown)
    if _penalised(layer):
        _penalty_gradient(b, layer)


def _penalised(layer) -> bool:
    """An affine layer with an l2= penalty on its weights."""
    return isinstance(layer.node.op, Affine) and len(layer.node.args) > 2


# --- planning: names and shapes of everything the user gives -------------------------------

def plan_layers(graph: Graph) -> list[Layer]:
    """Each node with the names chain_names gives it (W1, b1, z1, h1, g1, ...), as the kernels
    name them, and the shapes of its parameters."""
    layers, source = [], "X"
    shapes = graph.shapes
    for node, names, width_in, shape_in, shape_out in zip(
            graph.nodes, chain_names(graph), graph.widths, shapes, shapes[1:]):
        layer = Layer(node, source, names.value or "L", width_in, params=dict(names.params),
                      shapes=dict(node.op.param_shapes(node.args, shape_in)), shape_in=shape_in, shape_out=shape_out,
                      masks=node.op.input_arrays(node.position))
        source = layer.out
        layers.append(layer)
    return layers


def ends_with_loss(graph: Graph) -> bool:
    """False for a spec without a loss (parse_net's loss_optional): the values give ``dout``."""
    return graph.nodes[-1].op.is_loss


def _batch_shape(shape) -> tuple:
    """(None, *shape) for an image, (None, shape) for features: N rows of the value."""
    return (None, *shape) if isinstance(shape, tuple) else (None, shape)


def expected_values(graph: Graph) -> dict[str, tuple]:
    """Each value the user gives -> its shape (None: any number of batch rows N). A spec
    without a loss takes ``dout``, the upstream gradient of its last value, instead of T."""
    shapes = {"X": _batch_shape(graph.shapes[0])}
    if ends_with_loss(graph):
        shapes["T"] = (None, graph.output_size)
    else:
        shapes["dout"] = _batch_shape(graph.shapes[-1])
    for layer in plan_layers(graph):
        for role, name in layer.params.items():
            shapes[name] = layer.shapes[role]
        for name in layer.masks.values():
            shapes[name] = (None, layer.width_in)
    return shapes


def _mask_names(graph: Graph) -> list[str]:
    return [name for layer in plan_layers(graph) for name in layer.masks.values()]


def _shape_text(shape, rows) -> str:
    return "(" + ", ".join(str(rows if s is None else s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _failing(where, field_name, line=None):
    """The ``fail`` that networkfile's number parser calls: an error naming source, line (when
    known) and field."""
    def fail(message):
        raise SympropError(f"{where}" + (f", line {line}" if line else "") + f", field {field_name!r}: {message}")
    return fail


def _exact(value, fail) -> sp.Rational:
    """A number as given: a SymPy Rational or Fraction as it is; ints, floats (by their repr),
    strings "0.05" and "1/3" as a network file reads them."""
    if isinstance(value, Fraction):
        value = sp.Rational(value.numerator, value.denominator)
    if isinstance(value, sp.Rational):
        return _number(str(value), fail)  # the same size limit as every other number
    return _number(value, fail)


def _array(value, shape, rows, field_name, where, line=None):
    """A nested list of exact numbers with the expected shape; one clear error otherwise."""
    fail = _failing(where, field_name, line)

    expected = _shape_text(shape, rows if rows is not None else "N")
    if len(shape) > 2:  # images and conv kernels: a list of the next dimension's arrays
        want = shape[0] if shape[0] is not None else rows
        if not isinstance(value, (list, tuple)) or (want is not None and len(value) != want) or not value:
            fail(f"expected a list of {want or 'N'} arrays of shape {_shape_text(shape[1:], rows)}, "
                 f"shape {expected}; got {_describe(value)}")
        return [_array(part, shape[1:], rows, field_name, where, line) for part in value]
    if len(shape) == 1:
        if shape == (1,) and not isinstance(value, (list, tuple)):
            value = [value]  # one shared bias may be written as a number
        if not isinstance(value, (list, tuple)) or len(value) != shape[0] or \
                any(isinstance(v, (list, tuple)) for v in value):
            fail(f"expected a list of {shape[0]} numbers, shape {expected}; got {_describe(value)}")
        return [_exact(v, fail) for v in value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(r, (list, tuple)) for r in value):
        fail(f"expected a list of rows, shape {expected}; got {_describe(value)}")
    want_rows = shape[0] if shape[0] is not None else rows
    if want_rows is not None and len(value) != want_rows:
        fail(f"expected {want_rows} rows, shape {expected}; got {len(value)}")
    for i, row in enumerate(value):
        if len(row) != shape[1] or any(isinstance(v, (list, tuple)) for v in row):
            fail(f"row {i} should hold {shape[1]} numbers, shape {expected}; got {_describe(row)}")
    return [[_exact(v, fail) for v in row] for row in value]


def _describe(value) -> str:
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    return repr(value)


def check_values(graph: Graph, values: dict, where: str = "values", lines: dict | None = None) -> dict:
    """The user's numbers as exact Rationals, checked against the graph: every value present,
    none extra, each of its shape. X fixes the batch size N, T must have the same. ``lines``
    (field -> line of the file) puts the line into each error about a field."""
    line = (lines or {}).get
    if not isinstance(values, dict):
        raise SympropError(f"{where}: expected a table of values (X, T and the parameters)")
    shapes = expected_values(graph)
    listing = ", ".join(f"{k} {_shape_text(s, 'N')}" for k, s in shapes.items())
    missing = [k for k in shapes if k not in values]
    if missing:
        why = ("; dout is the upstream gradient of the last value, as the spec ends without a loss"
               if "dout" in missing else "")
        raise SympropError(f"{where}: missing {', '.join(missing)}; the net {graph.spec!r} needs {listing}{why}")
    extra = [k for k in values if k not in shapes]
    if extra:
        at = f", line {line(extra[0])}" if line(extra[0]) else ""
        raise SympropError(f"{where}{at}: unknown {', '.join(map(repr, extra))}; the net {graph.spec!r} needs {listing}")
    checked = {"X": _array(values["X"], shapes["X"], None, "X", where, line("X"))}
    rows = len(checked["X"])
    for key, shape in shapes.items():
        if key != "X":
            checked[key] = _array(values[key], shape, rows, key, where, line(key))
    for key in _mask_names(graph):
        for n, row in enumerate(checked[key]):
            for j, v in enumerate(row):
                if v not in (0, 1):
                    _failing(where, key, line(key))(f"a dropout mask holds 0 (dropped) or 1 (kept); got {v} at [{n},{j}]")
    return checked


# --- the transcript ------------------------------------------------------------------------

class _Builder:
    """The transcript under construction and the batch size; helpers the op kinds share."""

    def __init__(self, t: Transcript, rows: int, where: str = "values", loss_key: str = "L",
                 loss_rows: int | None = None, input_gradient: bool = False, graph: Graph | None = None,
                 layers: list | None = None, variant=None):
        self.t, self.rows, self.where = t, rows, where
        self.variant = variant  # a convention that changes a rule: Lowering's variant (None: as derived)
        self.graph, self.layers = graph, layers or []
        self._lowering = None
        self.loss_key = loss_key  # "L_data" where an L2 penalty is added to make L
        self.loss_rows = rows if loss_rows is None else loss_rows  # the N a batch-mean loss divides by
        # the sizes the lowered statements read, kept from one run to the next (K = 4 is set
        # once in a kernel, before its loss and its backward pass)
        self._loop_sizes, self._expr_sizes = {N: rows}, {N: self.loss_rows}
        self.input_gradient = input_gradient  # dL/dX too (a layer alone, its upstream gradient given)
        self._notes_given = set()

    def lowered(self, layer):
        """The statements the lowering gave this layer's node (the graph lowered once)."""
        if self._lowering is None:
            self._lowering = Lowering(self.graph, self.input_gradient, self.variant)
        return self._lowering.by_node[self.graph.nodes.index(layer.node)]

    def interpreter(self, shown: dict) -> Interpreter:
        """An interpreter writing into this transcript, with its names: an array's elements are
        the transcript's, d<value> its gradient, the kernel's loss the loss."""
        self.lowered(self.layers[0])
        values = {"X", "T"} | {name for layer in self.layers
                               for name in (layer.source, layer.out, *layer.params.values(), *layer.masks.values())}
        buffers = {name for name, _ in self._lowering.buffers}  # a scratch buffer's gradient is a gradient too (dhs1)
        values |= {name for name in buffers if not (name.startswith("d") and (name[1:] in values or name[1:] in buffers))}

        penalised = {layer.params["W"] for layer in self.layers if _penalised(layer)}
        # images travel as (N, C*H*W) arrays; the transcript names their elements X[n,c,h,w]
        images = {layer.source: layer.shape_in for layer in self.layers if isinstance(layer.shape_in, tuple)}
        images |= {layer.out: layer.shape_out for layer in self.layers if isinstance(layer.shape_out, tuple)}
        bounds = {name: shape for layer in self.layers for role, name in layer.params.items()
                  for shape in [layer.shapes[role]]} | {name: (None, *shape) for name, shape in images.items()}

        def key_of(array, index):
            value = array if array in values else array[1:] if array.startswith("d") and array[1:] in values else None
            if value is None:
                return None
            if value in images and len(index) == 2:
                index = (index[0], *(int(i) for i in np.unravel_index(index[1], images[value])))
            shape = bounds.get(value, (None,) * len(index))
            if any(i < 0 or (size is not None and i >= size) for i, size in zip(index, shape)):
                raise IndexError(f"{array}{list(index)}")  # a padding zero, or outside a window's weights
            if value == array:
                return _element(value, index)
            grad = _data_grad if value in penalised else _grad  # with an L2 penalty, the data loss's
            return grad(_element(value, index))  # gradient: the penalty's comes after

        return Interpreter(key_of, self.define, self.once, self._loop_sizes, self._expr_sizes,
                           shown={LOSS: (self.loss_key, ()), **shown}, shapes=self._lowering.array_shapes(),
                           defined=lambda key: key in self.t.quantities, value_of=self.t.value)

    def once(self, note):
        """A note the first time it is given (in this transcript), then None."""
        if note.en in self._notes_given:
            return None
        self._notes_given.add(note.en)
        return note

    @staticmethod
    def indices(shape):
        return list(itertools.product(*map(range, shape)))

    def define(self, key, formula, note=None):
        if key == self.loss_key and key not in self.t.quantities:
            self.t.heading(tr("Loss", "误差"))
        return self.t.define(key, formula, text=key, latex=_latex(key), note=note)


def graph_transcript(graph: Graph, values: dict, learning_rate=None, name: str = "net",
                     where: str = "values", lines: dict | None = None, batch_sum: bool = False,
                     forward_after_step: bool = False, loss_rows: int | None = None, variant=None) -> Transcript:
    """The hand calculation of one training step of ``graph`` on the given numbers: forward
    pass element by element, the loss, every gradient from the loss back and, with a learning
    rate, the SGD update of every parameter. ``where`` names the values' source in errors,
    ``lines`` (field -> line) the line of each field. ``batch_sum``: the loss's mean over the
    batch taken as a sum (the derivations' N set to 1), a convention the checker tries.
    ``forward_after_step``: then the forward pass again with the updated parameters
    (``z1_new[0,0]``, ..., ``L_new``), to see the loss fall. ``variant``: a convention that
    changes a rule (rule_conventions.py: relu'(0) from the right ...), as the lowering reads it.

    A spec without a loss (parse_net's ``loss_optional``) takes ``dout``, the upstream gradient
    of its last value, and writes every gradient back from it, dL/dX included.

    A batch of more than large_batch.EXACT_ROWS rows is written as its first rows, the sums over
    the batch in float64 (large_batch.py); ``loss_rows``: the N of the loss's 1/N when the
    values are the first rows of such a batch."""
    if isinstance(values, dict) and "learning_rate" in values:  # a values file's table as it is
        if learning_rate is not None:
            raise SympropError(f"{where}: learning_rate given twice (in the values and as an argument)")
        values = dict(values)
        learning_rate = values.pop("learning_rate")
    from .large_batch import EXACT_ROWS, batch_rows, large_batch_transcript
    if loss_rows is None and batch_rows(values) > EXACT_ROWS:
        if variant is not None:  # its sums over the batch are the kernel's, under the derived rules
            raise SympropError(f"{where}: a batch of more than {EXACT_ROWS} rows is worked with the derived rules only")
        return large_batch_transcript(graph, values, learning_rate, name, where, lines, batch_sum, forward_after_step)
    layers = plan_layers(graph)
    checked = check_values(graph, values, where, lines)
    rows = len(checked["X"])
    t = Transcript(name, tr(f"Transcript of the network {graph.spec}", f"网络 {graph.spec} 的计算过程"),
                   tr(f"A batch of {rows} row(s); every number is computed from each layer's derived rules.",
                      f"批量为 {rows} 行；每个数都由各层推导出的规则算出。"))
    penalised = any(isinstance(layer.node.op, Affine) and len(layer.node.args) > 2 for layer in layers)
    has_loss = ends_with_loss(graph)
    if penalised and not has_loss:
        raise SympropError(f"net spec {graph.spec!r}: an l2= penalty is added to a loss; this spec ends without one")
    b = _Builder(t, rows, where, "L_data" if penalised else "L", 1 if batch_sum else loss_rows or rows, not has_loss,
                 graph, layers, variant)
    masks = set(_mask_names(graph))
    last = layers[-1].out
    t.heading(tr("Given", "已知"))
    for key, array in checked.items():
        note = {"X": tr("inputs", "输入"), "T": tr("targets", "目标输出"),
                "dout": tr(f"the upstream gradient dL/d{last}, given", f"给定的上游梯度 dL/d{last}")
                }.get(key, tr("parameter", "参数"))
        if key in masks:
            note = tr("dropout mask: 1 kept, 0 dropped", "dropout 掩码：1 保留，0 丢弃")
        shape, part = [], array
        while isinstance(part, list):
            shape.append(len(part))
            part = part[0]
        for index in b.indices(shape):
            element = _element(key, index)
            number = array
            for i in index:
                number = number[i]
            t.given(element, number, text=element, latex=_latex(element), show=True, note=note)
            note = None
    if learning_rate is not None:
        rate = _exact(learning_rate, _failing(where, "learning_rate", (lines or {}).get("learning_rate")))
        t.given("learning_rate", rate, text="lr", latex=r"\eta", show=True, note=tr("learning rate", "学习率"))
    t.heading(tr("Forward pass", "前向传播"))
    for layer in layers:
        _forward(b, layer)
    if penalised:
        _penalties(b, layers)
    t.heading(tr("Backward pass", "反向传播"))
    if has_loss:
        t.note(tr("Each gradient follows the chain rule, from the loss back.",
                  "按链式法则，从误差开始逐层向后求梯度。"))
    else:
        t.note(tr(f"Each gradient follows the chain rule, from the given upstream gradient dout = dL/d{last} back.",
                  f"按链式法则，从给定的上游梯度 dout = dL/d{last} 开始逐层向后求梯度。"))
        note = tr("the upstream gradient, as given", "上游梯度（给定）")
        shape = layers[-1].shape_out
        for index in itertools.product(range(rows), *map(range, shape if isinstance(shape, tuple) else (shape,))):
            b.define(_grad(_element(last, index)), sp.Symbol(_element("dout", index)), note)
            note = None
    for layer in reversed(layers):
        _backward(b, layer)
    if learning_rate is not None:
        _updates(b, layers)
    if forward_after_step:
        if learning_rate is None or not has_loss:
            raise SympropError(f"{where}: the forward pass after the step needs a learning_rate and a loss")
        _forward_after_step(b, layers, set(checked), penalised)
    return t


def _updates(b: _Builder, layers):
    """param_new = param - learning_rate * dL/dparam, element by element."""
    b.t.heading(tr("SGD update", "随机梯度下降更新"))
    note = tr("gradient descent: new value = old value - learning rate * gradient",
              "梯度下降：新值 = 旧值 - 学习率 × 梯度")
    rate = sp.Symbol("learning_rate")
    for layer in layers:
        for role, name in layer.params.items():
            for index in b.indices(layer.shapes[role]):
                old = _element(name, index)
                step = sp.Mul(-1, rate, sp.Symbol(_grad(old)), evaluate=False)
                b.define(_element(f"{name}_new", index), sp.Add(sp.Symbol(old), step, evaluate=False), note)
                note = None


def _renamed(key: str) -> str:
    """z1[0,1] -> z1_new[0,1], L -> L_new: the name of a value after the step."""
    name, bracket, rest = key.partition("[")
    return f"{name}_new{bracket}{rest}"


def _forward_after_step(b: _Builder, layers, given: set, penalised: bool):
    """The forward pass once more with each parameter's new value: the same steps write it on a
    scratch transcript whose parameters hold the new values under their own names, then every
    value is copied over renamed (z1[0,1] -> z1_new[0,1], L -> L_new), its formula reading the
    renamed values and W1_new[i,j]. Inputs, targets and masks stay as given."""
    main, params = b.t, {name for layer in layers for name in layer.params.values()}
    scratch = Transcript(main.name, main.title)
    for key, quantity in main.quantities.items():
        base = key.partition("[")[0]
        if quantity.formula is None and base in given:
            scratch.given(key, main.value(_renamed(key)) if base in params else quantity.value)
    sb = _Builder(scratch, b.rows, b.where, b.loss_key, b.loss_rows, b.input_gradient, b.graph, b.layers)
    for layer in layers:
        _forward(sb, layer)
    if penalised:
        _penalties(sb, layers)
    main.heading(tr("Forward pass with the new values", "用更新后的参数重新前向传播"))
    computed = [key for key, quantity in scratch.quantities.items() if quantity.formula is not None]
    names = set(computed) | {key for key in scratch.quantities if key.partition("[")[0] in params}
    note = tr("the same formulas with the updated parameters", "同样的公式，代入更新后的参数")
    for key in computed:  # in the order they were defined
        formula = scratch.quantities[key].formula
        with sp.evaluate(False):  # the formula as the steps wrote it, only the names changed
            formula = formula.xreplace({s: sp.Symbol(_renamed(s.name)) for s in formula.free_symbols if s.name in names})
        b.define(_renamed(key), formula, note)
        note = None


# --- the values file -------------------------------------------------------------------------

def _read_values(path) -> tuple[dict, dict]:
    """The values file's table and the line of each top-level field (for errors)."""
    path = Path(path)
    text = read_text(path, "values file")
    data = parse_toml(text, str(path))
    where = _Where(str(path), text)
    return data, {key: where.line_of(key) for key in data}


def values_transcript(graph: Graph, path) -> Transcript:
    """The transcript of ``graph`` with the numbers of a values file; errors name the file,
    the line and the field."""
    values, lines = _read_values(path)
    return graph_transcript(graph, values, name=Path(path).stem, where=str(path), lines=lines)
