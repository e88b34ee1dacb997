"""The transcript of any net spec with given numbers: every element of every value, forward
and backward, computed from each op's derived rules.

``graph_transcript(parse_net(spec), values)`` walks the Graph and asks each node's op for its
``derive()``: the forward formula gives each output element, the backward rule (upstream gradient
times local derivative) each gradient element, ``batch_sums`` says which parameter gradients add
the rows of the batch. Nothing here is typed in per layer name, so an op registered anywhere
(a ``PerFeature`` subclass in a test file) gets a transcript with no edit elsewhere. What differs
by op *type* lives in one place: ``STEPS``, looked up through the op class's MRO.

Names follow the code generator: parameters ``W1, b1, W2, b2, ...`` (k counts affine layers),
a per-feature parameter ``g`` after the first affine layer is ``g1``; values ``z1`` (affine),
``h1`` (then ``h1b``, ...) for the layers after it. Keys are stable strings: ``X[0,1]``,
``z1[0,1]``, ``h1[0,1]``, ``L``, ``dL/dz1[0,1]``, local derivatives ``dh1[0,1]/dz1[0,1]``,
``dL/dW1[0,1]``, ``dL/db1[0]``, updates ``W1_new[0,1]``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import sympy as sp

from .errors import SympropError
from .userfiles import parse_toml, read_text
from .graph import Graph, Node, fresh_name
from .layers import I, J, K, N, REDUCTIONS, Affine, Conv2d, Elementwise, ElementwiseLoss, Flatten, PerFeature, Pool, real
from .ops import conv
from .networkfile import _number
from .transcript import Chain, Transcript, tr

DOUT = real("dout")


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
    text = sp.latex(sp.Symbol(name[:-4] if new else name)) + (r"^{\mathrm{new}}" if new else "")
    return text + (bracket + rest if bracket else "")


@dataclass
class Layer:
    """A node as the transcript names it: the value it reads, the value it writes, its
    parameters (role in the op's rules -> name, e.g. "W" -> "W1") and their shapes."""

    node: Node
    source: str
    out: str
    width_in: int
    width_out: int
    params: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    shape_in: object = None  # features (an int) or an image (C, H, W)
    shape_out: object = None

    def elements(self, rows, which="out"):
        """The index tuples of every element of the value read or written: (n, j) for features,
        (n, c, h, w) for images."""
        shape = self.shape_out if which == "out" else self.shape_in
        return list(itertools.product(range(rows), *map(range, shape if isinstance(shape, tuple) else (shape,))))


# --- per op type: naming, forward elements, backward elements ------------------------------

class _Steps:
    """How one type of op is named and written out; subclasses fill in each part."""

    def name(self, plan, node, layer):
        """Set layer.out and layer.params/shapes, as the code generator names them."""
        raise NotImplementedError

    def forward(self, b, layer):
        raise NotImplementedError

    def backward(self, b, layer):
        raise NotImplementedError


class _AffineSteps(_Steps):
    """Y = X W + b: each element of the derived matrix rules, with concrete sizes."""

    def name(self, plan, node, layer):
        if len(node.args) > 2:
            raise SympropError(f"{node.where}: the graph transcript does not write out an L2 penalty (l2=) yet; "
                               "remove it to see the layer's numbers")
        plan.affine_count += 1
        k = plan.affine_count
        layer.out = f"z{k}"
        for role, shape in node.op.param_shapes(node.args, layer.width_in):
            layer.params[role] = f"{role}{k}"
            layer.shapes[role] = shape

    def _rule(self, b, layer, rule, dY=None):
        """The derived matrix rule with the element symbols of this layer's matrices in place."""
        rows, (inputs, outputs) = b.rows, layer.node.args
        sizes = {N: rows, I: inputs, J: outputs}
        bias = layer.params["b"]
        mats = {"X": b.matrix(layer.source, rows, inputs), "W": b.matrix(layer.params["W"], inputs, outputs),
                "b": sp.ImmutableMatrix(1, layer.shapes["b"][0], lambda _, j: sp.Symbol(_element(bias, (j,))))}
        if dY is not None:
            mats["dY"] = b.matrix(dY, rows, outputs, grad=True)
        concrete = rule.subs(sizes)
        replace = {m: mats[m.name] for m in concrete.atoms(sp.MatrixSymbol)}
        return sp.ImmutableMatrix(concrete.xreplace(replace).doit())

    def forward(self, b, layer):
        values = self._rule(b, layer, b.derivation(layer).forward["Y"])
        b.define_matrix(layer.out, values, tr(f"{layer.node.text}: sum over the inputs of input times weight, plus the bias",
                                              f"{layer.node.text}：输入乘权重求和，再加偏置"))

    def backward(self, b, layer):
        d = b.derivation(layer)
        upstream = layer.out
        note = tr(f"{layer.node.text}: the affine layer's derived rule (batch rows summed)",
                  f"{layer.node.text}：Affine 层推导出的规则（对批量各行求和）")
        for role in ("W", "b"):
            grads = self._rule(b, layer, d.backward["d" + role], dY=upstream)
            name = layer.params[role]
            for index in b.indices(layer.shapes[role]):
                entry = grads[index] if len(index) == 2 else grads[0, index[0]]
                b.define(_grad(_element(name, index)), entry, note)
                note = None
        if layer.source != "X":  # the gradient with respect to the data X is never needed
            grads = self._rule(b, layer, d.backward["dX"], dY=upstream)
            W = layer.params["W"]
            b.define_matrix(layer.source, grads, tr(f"the upstream gradient carried back through {W}",
                                                    f"上游梯度经 {W} 传回"), grad=True)


class _ElementwiseSteps(_Steps):
    """y = f(x) per element: forward from the derived formula, backward as upstream gradient
    times the derived local derivative."""

    def name(self, plan, node, layer):
        layer.out = fresh_name(f"h{plan.affine_count}", plan.values)

    def _names(self, b, layer, *index):
        op = layer.node.op
        return {real("x"): sp.Symbol(_element(layer.source, index)),
                real(op.output): sp.Symbol(_element(layer.out, index)),
                **{real(role): sp.Symbol(_element(name, index[-1:])) for role, name in layer.params.items()}}

    def forward(self, b, layer):
        op, d = layer.node.op, b.derivation(layer)
        note = tr(f"{layer.node.text}, from its derivation", f"{layer.node.text}（由其推导得到）")
        for index in layer.elements(b.rows):
            key = _element(layer.out, index)
            b.define(key, d.forward[op.output].xreplace(self._names(b, layer, *index)), note)
            note = None

    def _local(self, b, layer, wrt: str, gradient: str, *index):
        """Define d<out>[n,j]/d<wrt> from the op's backward rule with the upstream gradient set to 1."""
        rule = b.derivation(layer).backward[gradient].xreplace({DOUT: sp.S.One})
        key = f"d{_element(layer.out, index)}/d{wrt}"
        b.define(key, rule.xreplace(self._names(b, layer, *index)),
                 b.once(tr(f"local derivative of {layer.node.text}, from its derived rule",
                           f"{layer.node.text} 的局部导数（由其推导得到）")))
        return key

    def backward(self, b, layer):
        for index in layer.elements(b.rows):
            source = _element(layer.source, index)
            local = self._local(b, layer, source, "dx", *index)
            b.define(_grad(source), Chain(((_grad(_element(layer.out, index)), local),)),
                     b.once(tr("chain rule: upstream gradient times local derivative",
                               "链式法则：上游梯度乘以局部导数")))


class _PerFeatureSteps(_ElementwiseSteps):
    """y[n, j] = f(x[n, j], g[j]): as elementwise, plus each parameter's gradient, summed over
    the batch rows where the derivation says so (``batch_sums``)."""

    def name(self, plan, node, layer):
        for role, shape in node.op.param_shapes(node.args, layer.width_in):
            layer.params[role] = fresh_name(f"{role}{plan.affine_count}", plan.param_names)
            layer.shapes[role] = shape
            plan.param_names.add(layer.params[role])
        super().name(plan, node, layer)

    def backward(self, b, layer):
        super().backward(b, layer)
        d = b.derivation(layer)
        for role, name in layer.params.items():
            gradient = "d" + role
            if gradient not in d.batch_sums:
                raise SympropError(f"{layer.node.where}: the derivation of {layer.node.op.name} does not say how "
                                   f"{gradient} is reduced over the batch (batch_sums)")
            for j in range(layer.width_out):
                param = _element(name, (j,))
                terms = tuple((_grad(_element(layer.out, (n, j))), self._local(b, layer, param, gradient, n, j))
                              for n in range(b.rows))
                b.define(_grad(param), Chain(terms),
                         b.once(tr(f"{name}[j] is shared by every row: the sum over the batch",
                                   f"{name}[j] 由每一行共用：对批量求和")))


class _LossSteps(_Steps):
    """L = scale * sum over n, j of l(prediction[n, j], T[n, j]); its gradient is the derived
    rule (scale included), the end of the graph, so its upstream gradient is 1."""

    def name(self, plan, node, layer):
        layer.out = "L"

    def _names(self, b, layer, n, j):
        return {real(layer.node.op.prediction): sp.Symbol(_element(layer.source, (n, j))),
                real("t"): sp.Symbol(_element("T", (n, j)))}

    def _sizes(self, b, layer):
        return {N: b.rows, K: layer.width_in}

    def forward(self, b, layer):
        op, d = layer.node.op, b.derivation(layer)
        scale, said = op.loss_scale, REDUCTIONS[op.reduction][1]
        terms = [d.forward["l"].xreplace(self._names(b, layer, n, j))
                 for n, j in b.indices((b.rows, layer.width_in))]
        b.t.heading(tr("Loss", "误差"))
        scale, total = scale.subs(self._sizes(b, layer)), sp.Add(*terms, evaluate=False)
        b.t.define("L", total if scale == 1 else sp.Mul(scale, total, evaluate=False),
                   note=tr(f"{op.name}: {said}", f"{op.name}：{said}"))

    def backward(self, b, layer):
        op, d = layer.node.op, b.derivation(layer)
        rule = d.backward["d" + op.prediction].subs(self._sizes(b, layer))
        for n, j in b.indices((b.rows, layer.width_in)):
            b.define(_grad(_element(layer.source, (n, j))), rule.xreplace(self._names(b, layer, n, j)),
                     b.once(tr(f"the derived rule of {op.name} (the loss's upstream gradient is 1)",
                               f"{op.name} 推导出的规则（误差的上游梯度为 1）")))


def _concrete(rule, sizes, at, arrays):
    """A derived index rule with numbers: sizes and the free indices substituted, the sums
    written out, and each array element (Indexed) replaced by its transcript symbol, or by 0
    outside the array's range (the padding zeros; window arrays read as 0 outside the window)."""
    expr = rule.subs(sizes).subs(at).doit()

    def element(e):
        name, shape, lookup = arrays[str(e.base)]
        index = tuple(int(i) for i in e.indices)
        if any(i < 0 or i >= n for i, n in zip(index, shape)):
            return sp.S.Zero
        return lookup(index)

    return expr.replace(lambda e: isinstance(e, sp.Indexed), element)


class _ConvSteps(_Steps):
    """conv2d: each output element and each gradient element from the derived index rules."""

    def name(self, plan, node, layer):
        plan.affine_count += 1
        k = plan.affine_count
        layer.out = f"z{k}"
        for role, shape in node.op.param_shapes(node.args, layer.shape_in):
            layer.params[role] = f"{role}{k}"
            layer.shapes[role] = shape

    def _arrays(self, b, layer):
        (C, H, W), (O, HO, WO) = layer.shape_in, layer.shape_out
        cin, cout, k, stride, pad = layer.node.op.geometry(layer.node.args)
        Wn, bn = layer.params["W"], layer.params["b"]
        sizes = {N: b.rows, conv.C: C, conv.O: O, conv.HO: HO, conv.WO: WO, conv.KW: k, conv.S: stride}
        rows = b.rows
        arrays = {
            "Xp": ("Xp", (rows, C, H + 2 * pad, W + 2 * pad),
                   lambda i: (sp.Symbol(_element(layer.source, (i[0], i[1], i[2] - pad, i[3] - pad)))
                              if pad <= i[2] < H + pad and pad <= i[3] < W + pad else sp.S.Zero)),
            "W": ("W", (O, C, k, k), lambda i: sp.Symbol(_element(Wn, i))),
            "b": ("b", (O,), lambda i: sp.Symbol(_element(bn, i))),
            "dY": ("dY", (rows, O, HO, WO), lambda i: sp.Symbol(_grad(_element(layer.out, i)))),
        }
        return sizes, arrays, pad

    def forward(self, b, layer):
        d = b.derivation(layer)
        sizes, arrays, _ = self._arrays(b, layer)
        n, o, c, i, j = conv._indices()[:5]
        note = tr(f"{layer.node.text}: the bias plus the kernel times each window of the (padded) input",
                  f"{layer.node.text}：偏置加上卷积核与（补零后）输入每个窗口的乘积之和")
        for index in layer.elements(b.rows):
            b.define(_element(layer.out, index),
                     _concrete(d.forward["Y"], sizes, dict(zip((n, o, i, j), index)), arrays), note)
            note = None

    def backward(self, b, layer):
        d = b.derivation(layer)
        sizes, arrays, pad = self._arrays(b, layer)
        a, e, u, v = conv._indices()[7:]
        note = tr(f"{layer.node.text}: dW is the input correlated with the upstream gradient; db its sum",
                  f"{layer.node.text}：dW 为输入与上游梯度的互相关；db 为上游梯度之和")
        for role in ("W", "b"):
            for index in b.indices(layer.shapes[role]):
                b.define(_grad(_element(layer.params[role], index)),
                         _concrete(d.backward["d" + role], sizes, dict(zip((a, e, u, v), index)), arrays), note)
                note = None
        if layer.source != "X":  # the gradient with respect to the data X is never needed
            note = tr("the full convolution of the upstream gradient with the flipped kernel",
                      "上游梯度与翻转后卷积核的完全卷积")
            for (n, c, h, w) in layer.elements(b.rows, "in"):
                at = {a: n, e: c, u: h + pad, v: w + pad}
                b.define(_grad(_element(layer.source, (n, c, h, w))),
                         _concrete(d.backward["dX"], sizes, at, arrays), note)
                note = None


class _PoolSteps(_Steps):
    """max-pool and average-pool, window by window; max-pool's local derivatives follow the
    tie convention of the derivation (the first maximum in row-major order)."""

    def name(self, plan, node, layer):
        layer.out = fresh_name(f"pool{plan.affine_count}", plan.values)

    def _window(self, layer, n, c, i, j):
        k, stride = layer.node.op.geometry(layer.node.args)
        return [(n, c, stride * i + p, stride * j + q) for p in range(k) for q in range(k)]

    def forward(self, b, layer):
        op = layer.node.op
        k, _ = op.geometry(layer.node.args)
        note = tr(f"{layer.node.text}: the {'largest element' if op.mode == 'max' else 'mean'} of each window",
                  f"{layer.node.text}：每个窗口的{'最大值' if op.mode == 'max' else '平均值'}")
        for index in layer.elements(b.rows):
            cells = [sp.Symbol(_element(layer.source, x)) for x in self._window(layer, *index)]
            formula = (sp.Max(*cells, evaluate=False) if op.mode == "max"
                       else sp.Mul(sp.Rational(1, k * k), sp.Add(*cells, evaluate=False), evaluate=False))
            b.define(_element(layer.out, index), formula, note)
            note = None

    def backward(self, b, layer):
        op = layer.node.op
        k, _ = op.geometry(layer.node.args)
        holders = {}  # source element -> [(output element, position in its window)]
        for index in layer.elements(b.rows):
            for r, x in enumerate(self._window(layer, *index)):
                holders.setdefault(x, []).append((index, r))
        for x in layer.elements(b.rows, "in"):
            source = _element(layer.source, x)
            terms = []
            for index, r in holders.get(x, []):
                out = _element(layer.out, index)
                local = f"d{out}/d{source}"
                if op.mode == "max":
                    cells = [sp.Symbol(_element(layer.source, y)) for y in self._window(layer, *index)]
                    b.define(local, conv.first_max_rule(cells, r),
                             b.once(tr("1 if it is the window's first maximum in row-major order, else 0 "
                                       "(Heaviside(0) = 0 against earlier elements, 1 against later ones)",
                                       "若为窗口中按行优先的第一个最大值则为 1，否则为 0")))
                else:
                    b.define(local, sp.Rational(1, k * k), b.once(tr("each element's share of the mean",
                                                                     "每个元素在平均值中的份额")))
                terms.append((_grad(out), local))
            if terms:
                b.define(_grad(source), Chain(tuple(terms)),
                         b.once(tr("the sum over the windows that hold this element",
                                   "对包含该元素的所有窗口求和")))
            else:
                b.define(_grad(source), sp.S.Zero, b.once(tr("in no window: no gradient", "不在任何窗口中：梯度为 0")))


class _FlattenSteps(_Steps):
    """flatten: f[n, (c H + h) W + w] = x[n, c, h, w], and the gradient read back."""

    def name(self, plan, node, layer):
        layer.out = fresh_name(f"f{plan.affine_count}", plan.values)

    def _pairs(self, b, layer):
        for index in layer.elements(b.rows, "in"):
            n, c, h, w = index
            _, H, W = layer.shape_in
            yield index, (n, (c * H + h) * W + w)

    def forward(self, b, layer):
        note = tr("the images read as features, in NCHW order", "图像按 NCHW 顺序读作特征")
        for image, flat in self._pairs(b, layer):
            b.define(_element(layer.out, flat), sp.Symbol(_element(layer.source, image)), note)
            note = None

    def backward(self, b, layer):
        note = tr("flatten's gradient, read back as images", "flatten 的梯度按图像形状读回")
        for image, flat in self._pairs(b, layer):
            if layer.source != "X":
                b.define(_grad(_element(layer.source, image)), sp.Symbol(_grad(_element(layer.out, flat))), note)
                note = None


class _Unsupported(_Steps):
    def name(self, plan, node, layer):
        raise SympropError(f"{node.where}: the graph transcript does not support {type(node.op).__name__} ops yet "
                           "(it writes out affine layers, one-input elementwise activations, per-feature ops "
                           "and elementwise losses)")


# op type -> how it is written out (an op class not listed uses its nearest listed base class);
# Softmax and SoftmaxCrossEntropy fall through to Op and are refused by name
STEPS = {Affine: _AffineSteps(), Elementwise: _ElementwiseSteps(), PerFeature: _PerFeatureSteps(),
         ElementwiseLoss: _LossSteps(), Conv2d: _ConvSteps(), Pool: _PoolSteps(), Flatten: _FlattenSteps()}


def _steps(op) -> _Steps:
    return next((STEPS[cls] for cls in type(op).__mro__ if cls in STEPS), _Unsupported())


# --- planning: names and shapes of everything the user gives -------------------------------

@dataclass
class _Plan:
    affine_count: int = 0
    values: list[str] = field(default_factory=lambda: ["X"])
    param_names: set[str] = field(default_factory=set)


def plan_layers(graph: Graph) -> list[Layer]:
    """Each node named as the code generator names it (W1, b1, z1, h1, g1, ...)."""
    plan, layers = _Plan(), []
    widths, shapes = graph.widths, graph.shapes
    for node, width_in, width_out, shape_in, shape_out in zip(graph.nodes, widths, widths[1:], shapes, shapes[1:]):
        layer = Layer(node, plan.values[-1], "", width_in, width_out, shape_in=shape_in, shape_out=shape_out)
        _steps(node.op).name(plan, node, layer)
        plan.values.append(layer.out)
        plan.param_names |= set(layer.params.values())
        layers.append(layer)
    return layers


def expected_values(graph: Graph) -> dict[str, tuple]:
    """Each value the user gives -> its shape (None: any number of batch rows N)."""
    images = graph.image is not None
    shapes = {"X": (None, *graph.image) if images else (None, graph.input_size), "T": (None, graph.output_size)}
    for layer in plan_layers(graph):
        for role, name in layer.params.items():
            shapes[name] = layer.shapes[role]
    return shapes


def _shape_text(shape, rows) -> str:
    return "(" + ", ".join(str(rows if s is None else s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _failing(where, field_name):
    """The ``fail`` that networkfile's number parser calls: an error naming source and field."""
    def fail(message):
        raise SympropError(f"{where}, field {field_name!r}: {message}")
    return fail


def _exact(value, fail) -> sp.Rational:
    """A number as given: a SymPy Rational or Fraction as it is; ints, floats (by their repr),
    strings "0.05" and "1/3" as a network file reads them."""
    if isinstance(value, Fraction):
        value = sp.Rational(value.numerator, value.denominator)
    if isinstance(value, sp.Rational):
        return _number(str(value), fail)  # the same size limit as every other number
    return _number(value, fail)


def _array(value, shape, rows, field_name, where):
    """A nested list of exact numbers with the expected shape; one clear error otherwise."""
    fail = _failing(where, field_name)

    expected = _shape_text(shape, rows if rows is not None else "N")
    if len(shape) > 2:  # images and conv kernels: a list of the next dimension's arrays
        want = shape[0] if shape[0] is not None else rows
        if not isinstance(value, (list, tuple)) or (want is not None and len(value) != want) or not value:
            fail(f"expected a list of {want or 'N'} arrays of shape {_shape_text(shape[1:], rows)}, "
                 f"shape {expected}; got {_describe(value)}")
        return [_array(part, shape[1:], rows, field_name, where) for part in value]
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


def check_values(graph: Graph, values: dict, where: str = "values") -> dict:
    """The user's numbers as exact Rationals, checked against the graph: every value present,
    none extra, each of its shape. X fixes the batch size N, T must have the same."""
    if not isinstance(values, dict):
        raise SympropError(f"{where}: expected a table of values (X, T and the parameters)")
    shapes = expected_values(graph)
    listing = ", ".join(f"{k} {_shape_text(s, 'N')}" for k, s in shapes.items())
    missing = [k for k in shapes if k not in values]
    if missing:
        raise SympropError(f"{where}: missing {', '.join(missing)}; the net {graph.spec!r} needs {listing}")
    extra = [k for k in values if k not in shapes]
    if extra:
        raise SympropError(f"{where}: unknown {', '.join(map(repr, extra))}; the net {graph.spec!r} needs {listing}")
    checked = {"X": _array(values["X"], shapes["X"], None, "X", where)}
    rows = len(checked["X"])
    for key, shape in shapes.items():
        if key != "X":
            checked[key] = _array(values[key], shape, rows, key, where)
    return checked


# --- the transcript ------------------------------------------------------------------------

class _Builder:
    """The transcript under construction and the batch size; helpers the op kinds share."""

    def __init__(self, t: Transcript, rows: int):
        self.t, self.rows = t, rows
        self._derivations = {}
        self._notes_given = set()

    def derivation(self, layer):
        op = layer.node.op
        if id(op) not in self._derivations:
            self._derivations[id(op)] = op.derive()
        return self._derivations[id(op)]

    def once(self, note):
        """A note the first time it is given (in this transcript), then None."""
        if note.en in self._notes_given:
            return None
        self._notes_given.add(note.en)
        return note

    @staticmethod
    def indices(shape):
        return list(itertools.product(*map(range, shape)))

    def matrix(self, name, rows, cols, grad=False):
        key = (lambda n, j: _grad(_element(name, (n, j)))) if grad else (lambda n, j: _element(name, (n, j)))
        return sp.ImmutableMatrix(rows, cols, lambda n, j: sp.Symbol(key(n, j)))

    def define(self, key, formula, note=None):
        return self.t.define(key, formula, text=key, latex=_latex(key), note=note)

    def define_matrix(self, name, values, note, grad=False):
        for n, j in self.indices(values.shape):
            key = _element(name, (n, j))
            self.define(_grad(key) if grad else key, values[n, j], note)
            note = None


def graph_transcript(graph: Graph, values: dict, learning_rate=None, name: str = "net",
                     where: str = "values") -> Transcript:
    """The hand calculation of one training step of ``graph`` on the given numbers: forward
    pass element by element, the loss, every gradient from the loss back and, with a learning
    rate, the SGD update of every parameter. ``where`` names the values' source in errors."""
    if isinstance(values, dict) and "learning_rate" in values:  # a values file's table as it is
        if learning_rate is not None:
            raise SympropError(f"{where}: learning_rate given twice (in the values and as an argument)")
        values = dict(values)
        learning_rate = values.pop("learning_rate")
    layers = plan_layers(graph)
    checked = check_values(graph, values, where)
    rows = len(checked["X"])
    t = Transcript(name, tr(f"Transcript of the network {graph.spec}", f"网络 {graph.spec} 的计算过程"),
                   tr(f"A batch of {rows} row(s); every number is computed from each layer's derived rules.",
                      f"批量为 {rows} 行；每个数都由各层推导出的规则算出。"))
    b = _Builder(t, rows)
    t.heading(tr("Given", "已知"))
    for key, array in checked.items():
        note = {"X": tr("inputs", "输入"), "T": tr("targets", "目标输出")}.get(key, tr("parameter", "参数"))
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
        rate = _exact(learning_rate, _failing(where, "learning_rate"))
        t.given("learning_rate", rate, text="lr", latex=r"\eta", show=True, note=tr("learning rate", "学习率"))
    t.heading(tr("Forward pass", "前向传播"))
    for layer in layers:
        _steps(layer.node.op).forward(b, layer)
    t.heading(tr("Backward pass", "反向传播"))
    t.note(tr("Each gradient follows the chain rule, from the loss back.",
              "按链式法则，从误差开始逐层向后求梯度。"))
    for layer in reversed(layers):
        _steps(layer.node.op).backward(b, layer)
    if learning_rate is not None:
        _updates(b, layers)
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


# --- the values file -------------------------------------------------------------------------

def load_values(path) -> dict:
    """The table of a TOML values file: X, T, the parameters and an optional learning_rate."""
    path = Path(path)
    data = parse_toml(read_text(path, "values file"), str(path))
    return data


def values_transcript(graph: Graph, path) -> Transcript:
    """The transcript of ``graph`` with the numbers of a values file; errors name the file."""
    return graph_transcript(graph, load_values(path), name=Path(path).stem, where=str(path))
