"""Lowering: a graph to typed statements (``symbolic/ir.py``), one lowering per op family.

``Lowering(graph)`` walks the nodes in order and asks each op's family (looked up by type in
``LOWERINGS``, through base classes, never by name) for its statements: forward statements
appended, backward statements prepended (the chain rule runs from the loss back). Every
formula comes from the op's derivation. The code generator prints these statements as a
network module (``codegen/network.py``) and the per-layer kernels print the same statement
builders (``per_feature_statements``, ``normalisation_forward`` ...); nothing here is text.

Every intermediate array is a named buffer of the workspace (``buffers``), so a training step
writes into memory allocated once, never inside the loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .errors import SympropError
from .graph import chain_names, features
from .ir import (Accumulate, Assignments, Call, Comment, Let, Loop, MatrixInto, array, arrays, as_written, difference,
                 element as at, index, local, ratio)
from .layers import (REDUCTIONS, REGISTRY, K, N, Affine, BatchNorm, Conv2d, Derivation, Dropout, Elementwise, ElementwiseLoss,
                     Flatten, LayerNorm, MulticlassHinge, PerFeature, Pool, Softmax, SoftmaxCrossEntropy)
from .ops import conv
from .ops.affine import l2_penalty_derivation
from .transcript import tr

SOFTMAX_NOTE = tr("softmax of the row, from the derivation's stable form", "该行的 softmax（由推导中的稳定形式得到）")
CHAIN_NOTE = tr("chain rule: upstream gradient times local derivative", "链式法则：上游梯度乘以局部导数")


def _mean_note(name: str):
    return tr(f"{name}: the mean of the rows' losses over the batch", f"{name}：各行误差在批量上的平均")


def _local_note(text: str, more: tuple[str, str] = ("", "")):
    return tr(f"local derivative of {text}, from its derived rule{more[0]}", f"{text} 的局部导数（由其推导得到）{more[1]}")

FEATURES = sp.Symbol("F", integer=True, positive=True)  # a layer's width where a kernel reads it from x
ROW = index("n")  # the row index that row kernels put before every indexed value
n, i, j, k = (index(name) for name in "nijk")  # the loop indices
LOSS, ROW_LOSS = local("loss"), local("row_loss")  # the step's loss, summed over the rows


@dataclass
class NodeStatements:
    """The statements one node added: its forward pass, its backward pass and (a loss) the
    statements that compute the loss."""

    forward: list
    backward: list
    loss: list
    shown: dict  # kernel locals a transcript shows as quantities: local -> (name, index symbols)


def derivation(op) -> Derivation:
    """The op's derivation: a registered op's is the registry's, derived once per process."""
    return REGISTRY.derive(op.name) if REGISTRY.get(op.name) is op else op.derive()


def lowering(table: dict, op, where: str):
    """How to lower an op: its own ``lower(lowering, use)`` method where its class has one (a
    family defined in one place, its op class and its lowering), else the entry of ``table``
    (op class -> how to lower it) for its type, through its base classes, never its name."""
    if callable(getattr(op, "lower", None)):  # a family that carries its lowering beside its op class
        return lambda lowering, use: op.lower(lowering, use)
    for cls in type(op).__mro__:
        if cls in table:
            return table[cls]
    raise SympropError(f"{where}: symprop has no lowering for {type(op).__name__} ops, so it can neither explain nor "
                       "compile them (an op family is its op class and its lowering)")


# Weight matrices with at most this many entries are multiplied with loops, not BLAS:
# a BLAS call costs a fixed ~0.3 us, more than the whole 2-2-2 step (benchmarks/ measures it).
SMALL_MATRIX = 64


class Lowering:
    """One network's graph lowered to statements, node by node: forward statements in order,
    backward statements prepended (the chain rule runs from the loss back).

    Every intermediate array is a named buffer of the workspace (``self.buffers``), so a
    training step writes into memory allocated once, never inside the loop.
    """

    def __init__(self, graph, input_gradient: bool = False):
        uses, shapes = graph.nodes, graph.shapes
        self.params: list[tuple[str, tuple]] = []
        self.buffers: list[tuple[str, tuple]] = []  # (name, shape: ints and the batch size N)
        self.values = ["X"]  # forward values, in order
        self.scratch: list[str] = []  # buffers forward_kernel needs besides the values (im2col columns, xhat ...)
        # the shape entering each node (graph.shapes); images flow as (N, C*H*W) arrays, NCHW order
        self.shapes = shapes
        self.widths: list[int] = [features(shapes[0])] if shapes and shapes[0] is not None else []
        self.forward: list = []
        self.backward: list = []
        self.loss: list = []
        # ops with a training and an inference mode (batch norm, dropout): arrays kept between
        # steps (running averages), masks passed in, scratch arrays the forward pass needs,
        # the inference-mode forward statements, what a step does after the update
        self.state: list[tuple[str, tuple]] = []
        self.masks: list[tuple[str, int, float]] = []  # (name, width, drop probability)
        self.scales: list[str] = []  # parameters that start at one (a normalisation's g)
        self.inference: list = []
        self.after_update: list = []
        self.penalty: list = []  # L2 penalties: added to the loss, then to the gradients
        self.penalty_backward: list = []
        self.views: dict[str, str] = {}  # another name for an array (a flattened image): name -> array
        self.input_gradient = input_gradient  # dL/dX too (a transcript of a layer alone shows it)
        self.by_node: list[NodeStatements] = []  # what each node added, for readers that walk node by node
        for use, names in zip(uses, chain_names(graph)):
            self.names = names  # the value and parameters this node gives, as graph.chain_names named them
            before, self._inference_statements = len(self.forward), None
            backward_before, loss_before, self.shown = len(self.backward), self.loss, {}
            lowering(self.LOWERINGS, use.op, use.where)(self, use)
            added = self.forward[before:]
            self.inference += added if self._inference_statements is None else self._inference_statements
            self.by_node.append(NodeStatements(added, self.backward[:len(self.backward) - backward_before],
                                               self.loss if self.loss is not loss_before else [], self.shown))

    def array_shapes(self) -> dict:
        """Each array's shape (the batch as N): the input, the buffers and the parameters, and
        each one's gradient d<name> (the last value's is given, not a buffer, where a spec ends
        without a loss)."""
        inputs = self.shapes[0] if isinstance(self.shapes[0], int) else features(self.shapes[0])
        shapes = {"X": (N, inputs), **dict(self.buffers), **dict(self.params)}
        shapes |= {view: shapes[array] for view, array in self.views.items()}
        return {**{f"d{name}": shape for name, shape in shapes.items()}, **shapes}

    @property
    def has_modes(self) -> bool:
        """True when training and inference differ (state or masks): the module's API grows."""
        return bool(self.state or self.masks)

    @property
    def width(self):
        return self.widths[-1]

    def show(self, value: sp.Symbol, name: str, *indices: sp.Symbol) -> sp.Symbol:
        """A kernel local that a transcript shows as a quantity: the row maximum zmax of row n
        as z1max[n], a row's loss as L_n[n]."""
        self.shown[value] = (name, indices)
        return value

    def buffer(self, name, shape):
        self.buffers.append((name, shape))
        return name

    def prepend_backward(self, statements):
        self.backward = statements + self.backward

    def each_element(self, *body, width=None):
        """for n in range(N): for j in range(width): body"""
        return Loop(n, N, (Loop(j, self.width if width is None else width, body),))

    # ---- per op type: forward statements now, backward statements prepended (reverse order) ----
    def _affine(self, use):
        inputs, outputs = use.args[:2]
        if not self.widths:
            self.widths = [inputs]
        W, b, shared = self.names.params["W"], self.names.params["b"], use.op.shared_bias
        self.params += [(W, (inputs, outputs)), (b, (1,) if shared else (outputs,))]
        source = self.values[-1]
        out = self.buffer(self.names.value, (N, outputs))
        d = REGISTRY.derive(use.op.name)
        names = {"X": array(source), "W": array(W), "dY": array("d" + out), "b": array(b)}
        small = inputs * outputs <= SMALL_MATRIX
        self.forward += [Comment(f"layer {use.position}: {use.text}"), MatrixInto(
            d.forward["Y"], array(out), names, small, (f"{out} = {source} {W}", f"{out} += 1 {b}"),
            tr(f"{use.text}: sum over the inputs of input times weight, plus the bias",
               f"{use.text}：输入乘权重求和，再加偏置"))]
        dW, db = self.buffer(f"d{W}", (inputs, outputs)), self.buffer(f"d{b}", (1,) if shared else (outputs,))
        backward = [Comment(f"layer {use.position}: {use.text}"),
                    MatrixInto(d.backward["dW"], array(dW), names, small, f"dL/d{W} = {source}^T dL/d{out}",
                               tr(f"{use.text}: the affine layer's derived rule (batch rows summed)",
                                  f"{use.text}：Affine 层推导出的规则（对批量各行求和）")),
                    MatrixInto(d.backward["db"], array(db), names, small, f"dL/d{b} = 1^T dL/d{out}"
                               + (" 1 (shared bias)" if shared else " (sum over the batch)"))]
        if self.names.layer > 1 or self.input_gradient:  # a step never needs the gradient of the input data X
            dsource = self.buffer(f"d{source}", (N, inputs))
            backward.append(MatrixInto(d.backward["dX"], array(dsource), names, small, f"dL/d{source} = dL/d{out} {W}^T",
                                       tr(f"the upstream gradient carried back through {W}", f"上游梯度经 {W} 传回")))
        self.prepend_backward(backward)
        self.values.append(out)
        self.widths.append(outputs)
        if len(use.args) > 2:
            self._l2_penalty(W, inputs, outputs, use.args[2])

    def _l2_penalty(self, W, inputs, outputs, strength):
        """(lambda/2) ||W||^2 added to the loss after the data loss, lambda W to dW after the
        backward pass (ops/affine.l2_penalty_derivation)."""
        d = l2_penalty_derivation()
        names = {"w": at(W, "i", "j"), "lambda": sp.Float(strength)}
        each = lambda *body: Loop(i, inputs, (Loop(j, outputs, body),))  # noqa: E731
        self.penalty += [Comment(f"L2 penalty on {W}: {sp.sstr(d.steps[0].rhs)}, lambda = {strength!r}"),
                         each(Accumulate(LOSS, d.forward["P"], names))]
        dW = at(f"d{W}", "i", "j")
        self.penalty_backward += [Comment(f"L2 penalty on {W}"), each(Assignments(
            ((dW, d.backward["dW"]),), names, {dW: f"dL/d{W} += {sp.sstr(d.backward['dW'])}"}, frozenset({dW})))]

    def _elementwise(self, use):
        d = derivation(use.op)
        source = self.values[-1]
        out = self.buffer(self.names.value, (N, self.width))
        names = {"x": at(source, "n", "j"), use.op.output: at(out, "n", "j")}
        note = tr(f"{use.text}, from its derivation", f"{use.text}（由其推导得到）")
        self.forward += [Comment(f"layer {use.position}: {use.text}"), self.each_element(Assignments(
            ((at(out, "n", "j"), d.forward[use.op.output]),), names, notes={at(out, "n", "j"): note}))]
        rule = d.backward["dx"]
        local = (rule / sp.Symbol("dout", real=True)).subs(
            {sp.Symbol("x", real=True): sp.Symbol(source), sp.Symbol(use.op.output, real=True): sp.Symbol(out)})
        dsource = self.buffer(f"d{source}", (N, self.width))
        comment = f"dL/d{source} = dL/d{out} * d{out}/d{source} = dL/d{out} * {sp.sstr(local)}"
        self.prepend_backward([Comment(f"layer {use.position}: {use.text}"), self.each_element(
            Assignments(((at(dsource, "n", "j"), rule),), {**names, "dout": at(f"d{out}", "n", "j")},
                        {at(dsource, "n", "j"): comment}, upstream="dout",
                        notes={at(dsource, "n", "j"): (_local_note(use.text), CHAIN_NOTE)}))])
        self.values.append(out)

    def _softmax(self, use):
        d = REGISTRY.derive("softmax")
        source = self.values[-1]
        out = self.buffer(self.names.value, (N, self.width))
        forward = row_reduction([(at(out, "n", "k"), _row_index(d.forward["y[k]"]))], {"z": array(source)},
                                notes={at(out, "n", "k"): SOFTMAX_NOTE})
        dsource = self.buffer(f"d{source}", (N, self.width))
        note = tr(f"{use.text}: the derived rule (dy[j] - sum_k dy[k] y[k]) y[j]",
                  f"{use.text}：推导出的规则 (dy[j] - sum_k dy[k] y[k]) y[j]")
        backward = row_reduction([(at(dsource, "n", "k"), _row_index(d.backward["dz[j]"]))],
                                 {"y": array(out), "dy": array(f"d{out}")}, notes={at(dsource, "n", "k"): note})
        self.show(local("zmax"), f"{source}max", n)
        self.forward += [Comment(f"layer {use.position}: {use.text}"), Let(K, self.width),
                         Loop(n, N, (*row_max(source), *forward))]
        self.prepend_backward([Comment(f"layer {use.position}: {use.text}"), Let(K, self.width),
                               Loop(n, N, tuple(backward))])
        self.values.append(out)

    def _softmax_cross_entropy(self, use):
        d = REGISTRY.derive(use.op.name)
        source = self.values[-1]
        probabilities = self.buffer("P", (N, self.width))
        forward = row_reduction(
            [(at(probabilities, "n", "k"), _row_index(d.forward["y[k]"])), (ROW_LOSS, d.forward["L_n"])],
            {"z": array(source), "t": array("T")}, notes={at(probabilities, "n", "k"): SOFTMAX_NOTE, ROW_LOSS: tr(
                "the row's loss: log-sum-exp (row maximum subtracted) minus the true class's score",
                "该行误差：log-sum-exp（减去行最大值）减去正确类别的分数")})
        dsource = self.buffer(f"d{source}", (N, self.width))
        rule = d.backward["dz[j]"]
        backward = row_reduction([(at(dsource, "n", "k"), _row_index(rule))],
                                 {"y": array("P"), "t": array("T")},
                                 comment_for=lambda _: f"dL/d{source} = {sp.sstr(rule)}",
                                 notes={at(dsource, "n", "k"): tr(f"the derived rule of {use.op.name}: {sp.sstr(rule)}",
                                                                  f"{use.op.name} 推导出的规则：{sp.sstr(rule)}")})
        self.show(local("zmax"), f"{source}max", n)
        self.show(ROW_LOSS, "L_n", n)
        self.loss = [Comment(f"layer {use.position}: {use.text} (log-sum-exp, row maximum subtracted;"
                             " P = softmax, saved for backward)"),
                     Let(K, self.width), Let(LOSS, sp.Integer(0), note=_mean_note(use.op.name)),
                     Loop(n, N, (*row_max(source), *forward, Let(LOSS, ROW_LOSS, augmented=True))),
                     Let(LOSS, ratio(LOSS, N))]
        self.prepend_backward([Loop(n, N, tuple(backward))])

    def _hinge(self, use):
        """The multiclass SVM loss, row by row: the correct class's score, then the derived rules."""
        d = REGISTRY.derive(use.op.name)
        source = self.values[-1]
        names = {"z": array(source), "t": array("T")}
        dsource = self.buffer(f"d{source}", (N, self.width))
        self.show(local("zy"), "zy", n)
        self.show(ROW_LOSS, "L_n", n)
        self.loss = [Comment(f"layer {use.position}: {use.text} (zy: the score of the correct class)"),
                     Let(K, self.width), Let(LOSS, sp.Integer(0), note=_mean_note(use.op.name)),
                     Loop(n, N, (*hinge_row_statements(d, names), Let(LOSS, ROW_LOSS, augmented=True))),
                     Let(LOSS, ratio(LOSS, N))]
        self.prepend_backward([Loop(n, N, tuple(hinge_row_statements(d, names, dsource)))])

    def _loss(self, use):
        d = derivation(use.op)
        source = self.values[-1]
        p = use.op.prediction
        scale = use.op.loss_scale
        names = {p: at(source, "n", "j"), "t": at("T", "n", "j")}
        grad = "d" + p
        dsource = self.buffer(f"d{source}", (N, self.width))
        term = local("loss_term")
        said = REDUCTIONS[use.op.reduction][1]
        self.loss = [Comment(f"layer {use.position}: {use.text}"), Let(K, self.width),
                     Let(LOSS, sp.Integer(0), note=tr(f"{use.op.name}: {said}", f"{use.op.name}：{said}")),
                     self.each_element(Assignments(((term, d.forward["l"]),), names),
                                       Let(LOSS, term, augmented=True), width=K)]
        if scale != 1:
            self.loss.append(Let(LOSS, as_written(sp.Mul, scale, LOSS)))
        note = tr(f"the derived rule of {use.op.name} (the loss's upstream gradient is 1)",
                  f"{use.op.name} 推导出的规则（误差的上游梯度为 1）")
        self.prepend_backward([Let(K, self.width), self.each_element(
            Assignments(((at(dsource, "n", "j"), d.backward[grad]),), names,
                        {at(dsource, "n", "j"): f"dL/d{source} = {sp.sstr(d.backward[grad])}"},
                        notes={at(dsource, "n", "j"): note}), width=K)])

    def _per_feature(self, use):
        """y[n, j] = f(x[n, j], g[j]), from the statements the per-layer kernels print too."""
        d = derivation(use.op)
        source = self.values[-1]
        params = [self.names.params[p] for p in use.op.params]
        self.params += [(name, (self.width,)) for name in params]
        out = self.buffer(self.names.value, (N, self.width))
        grads = [self.buffer(f"d{name}", (self.width,)) for name in params]
        dsource = self.buffer(f"d{source}", (N, self.width))
        arrays = dict(x=source, y=out, dy=f"d{out}", dx=dsource, **dict(zip(use.op.params, params)),
                      **{f"d{p}": g for p, g in zip(use.op.params, grads)})
        forward, backward = per_feature_statements(use.op, d, arrays, self.width, use.text)
        self.forward += [Comment(f"layer {use.position}: {use.text}"), *forward]
        self.prepend_backward([Comment(f"layer {use.position}: {use.text}"), *backward])
        self.values.append(out)

    def _normalisation(self, use):
        """Batch norm (each feature over the batch) or layer norm (each row over its features),
        from the statement builders below: mean and biased variance by reductions, xhat and y from
        the derived forward; on the way back the two sums of the derived three-term rule."""
        d = REGISTRY.derive(use.op.name)
        batch = use.op.mixes_rows  # batch norm: statistics over the batch; layer norm: over a row
        eps, *momentum = use.op.settings(use.args)
        source, width, k = self.values[-1], self.width, use.position
        g, b = self.names.params["g"], self.names.params["b"]
        self.params += [(g, (width,)), (b, (width,))]
        self.scales.append(g)
        out = self.buffer(self.names.value, (N, width))
        xhat = self.buffer(f"xhat{k}", (N, width))
        stat_shape = (width,) if batch else (N,)  # per feature (batch norm) or per row
        s, mean, var = (self.buffer(f"{v}{k}", stat_shape) for v in ("s", "mean", "var"))
        self.scratch += [xhat, s, mean, var]
        arrays = dict(x=source, y=out, xhat=xhat, s=s, mean=mean, var=var, g=g, b=b)
        head = f"layer {use.position}: {use.text}"
        epsilon = self.show(local("eps"), f"eps{k}")
        set_epsilon = Let(epsilon, sp.Float(eps), note=tr(f"epsilon of {use.text}", f"{use.text} 的 epsilon"))
        self.forward += [Comment(f"{head} (mean and biased variance over "
                                 + ("the batch, per feature)" if batch else "each row's features)")), set_epsilon,
                         *normalisation_forward(d, batch, width, epsilon, arrays, text=use.text)]
        if batch:
            running_mean, running_var = (f"running_mean{k}", f"running_var{k}")
            self.state += [(running_mean, (width,)), (running_var, (width,))]
            self._inference_statements = [
                Comment(f"{head} (inference: the running averages)"), set_epsilon,
                *normalisation_forward(d, batch, width, epsilon, arrays, (running_mean, running_var))]
            m = sp.Float(momentum[0])
            keep = difference(sp.Integer(1), m)  # (1 - m), as written
            rm, rv = at(running_mean, "j"), at(running_var, "j")
            self.after_update += [
                Comment(f"{head}: running averages (momentum {momentum[0]}, the running variance "
                        "unbiased, as torch)"),
                Loop(j, width, (
                    Let(rm, as_written(sp.Add, as_written(sp.Mul, keep, rm), as_written(sp.Mul, m, at(mean, "j")))),
                    Let(rv, as_written(sp.Add, as_written(sp.Mul, keep, rv), ratio(
                        as_written(sp.Mul, m, at(var, "j"), N), as_written(sp.Add, N, -1))))))]
        dg, db = self.buffer(f"d{g}", (width,)), self.buffer(f"d{b}", (width,))
        dsource = self.buffer(f"d{source}", (N, width))
        grads = dict(dy=f"d{out}", dx=dsource, dg=dg, db=db)
        for name in d.named_sums:  # the two sums of the three-term rule, per feature or per row
            self.show(local(name), f"{name}{k}", j if batch else n)
        self.prepend_backward([Comment(head), *normalisation_backward(d, batch, width, arrays | grads, use.text)])
        self.values.append(out)

    def _dropout(self, use):
        """Inverted dropout: y = x m / (1 - p) with the 0/1 mask m an input of the step (so a
        gradient check can hold it fixed); identity at inference."""
        d = REGISTRY.derive(use.op.name)
        (rate,) = use.args
        source, width = self.values[-1], self.width
        mask = use.op.input_arrays(use.position)["m"]
        self.masks.append((mask, width, rate))
        out = self.buffer(self.names.value, (N, width))
        p = sp.Symbol("p", positive=True)
        names = {"x": at(source, "n", "j"), "m": at(mask, "n", "j")}
        note = tr(f"{use.text}: the input times its mask, divided by 1 - p", f"{use.text}：输入乘以掩码，再除以 1 - p")
        self.forward += [Comment(f"layer {use.position}: {use.text} (mask {mask}: 0 or 1)"), self.each_element(
            Assignments(((at(out, "n", "j"), d.forward["y"].xreplace({p: sp.Rational(str(rate))})),), names,
                        notes={at(out, "n", "j"): note}))]
        self._inference_statements = [Comment(f"layer {use.position}: {use.text} (inference: identity)"),
                                      self.each_element(Let(at(out, "n", "j"), at(source, "n", "j")))]
        dsource = self.buffer(f"d{source}", (N, width))
        rule = d.backward["dx"].xreplace({p: sp.Rational(str(rate))})
        self.prepend_backward([Comment(f"layer {use.position}: {use.text}"), self.each_element(
            Assignments(((at(dsource, "n", "j"), rule),), {**names, "dy": at(f"d{out}", "n", "j")},
                        {at(dsource, "n", "j"): f"dL/d{source} = {sp.sstr(d.backward['dx'])}"}, upstream="dy",
                        notes={at(dsource, "n", "j"): (_local_note(use.text, (": a dropped unit passes none",
                                                                              "：被丢弃的单元不传梯度")), CHAIN_NOTE)}))])
        self.values.append(out)
    def _conv2d(self, use):
        """im2col + one BLAS product per example (image_helpers.py; benchmarks/conv_lowering.py
        measured it against direct loops); the rules are conv2d's derived index forms."""
        k = self.names.layer  # the layer's scratch arrays are cols1, dcols1 beside W1
        C, H, W = self.shapes[use.position - 1]
        cin, cout, size, stride, pad = use.op.geometry(use.args)
        out_shape = use.op.output_width(use.args, (C, H, W))
        pixels = out_shape[1] * out_shape[2]
        Wt, b = self.names.params["W"], self.names.params["b"]
        self.params += [(Wt, (cout, cin, size, size)), (b, (cout,))]
        source = self.values[-1]
        out = self.buffer(self.names.value, (N, features(out_shape)))
        cols = self.buffer(f"cols{k}", (N, cin * size * size, pixels))
        self.scratch.append(cols)
        geometry = (C, H, W, stride, pad)
        means = _conv2d_means(derivation(use.op), use.text, (C, H, W), out_shape, (cout, size, stride, pad),
                              (source, Wt, b, out))
        self.forward += [Comment(f"layer {use.position}: {use.text} ({C}x{H}x{W} -> {'x'.join(map(str, out_shape))})"),
                         Call("_conv2d_forward", (*arrays(source, Wt, b), *geometry, *arrays(cols, out)),
                              f"{out}[n,o,i,j] = {b}[o] + sum_c,p,q {Wt}[o,c,p,q] {source}p[n,c,s*i+p,s*j+q]",
                              means["Y"])]
        dW, db = self.buffer(f"d{Wt}", (cout, cin, size, size)), self.buffer(f"d{b}", (cout,))
        product = self.buffer(f"d{Wt}_n", (cout, cin * size * size))
        backward = [Comment(f"layer {use.position}: {use.text}"),
                    Call("_conv2d_param_grads", arrays(f"d{out}", cols, dW, db, product),
                         f"dL/d{Wt}[o,c,p,q] = sum_n,i,j dL/d{out}[n,o,i,j] {source}p[n,c,s*i+p,s*j+q]; "
                         f"dL/d{b}[o] = sum_n,i,j dL/d{out}[n,o,i,j]", means["dW"] + means["db"])]
        if source != "X" or self.input_gradient:  # a step never needs the gradient of the input data X
            dsource = self.buffer(f"d{source}", (N, C * H * W))
            dcols = self.buffer(f"dcols{k}", (cin * size * size, pixels))
            backward.append(Call("_conv2d_input_grad", (*arrays(f"d{out}", Wt), *geometry, *arrays(dcols, dsource)),
                                 f"dL/d{source}p[n,c,u,v] = sum_o,i,j dL/d{out}[n,o,i,j] {Wt}[o,c,u-s*i,v-s*j] "
                                 "(full convolution with the flipped kernel)", means["dX"]))
        self.prepend_backward(backward)
        self.values.append(out)
        self.widths.append(features(out_shape))

    def _pool(self, use):
        C, H, W = self.shapes[use.position - 1]
        size, stride = use.op.geometry(use.args)
        out_shape = use.op.output_width(use.args, (C, H, W))
        source = self.values[-1]
        out = self.buffer(self.names.value, (N, features(out_shape)))
        geometry = (C, H, W, size, stride)
        mode = use.op.mode
        what = "max" if use.op.selects_one else "mean"
        forward_means, backward_means = _pool_means(use, (C, H, W), out_shape, size, stride, source, out)
        self.forward += [Comment(f"layer {use.position}: {use.text} ({C}x{H}x{W} -> {'x'.join(map(str, out_shape))})"),
                         Call(f"_{mode}pool_forward", (array(source), *geometry, array(out)),
                              f"{out}[n,c,i,j] = {what} of {source}[n,c,s*i+p,s*j+q] over the window", forward_means)]
        if source != "X" or self.input_gradient:  # a step never needs the gradient of the input data X
            dsource = self.buffer(f"d{source}", (N, C * H * W))
            reads = arrays(f"d{out}", source) if use.op.selects_one else arrays(f"d{out}")
            rule = (f"dL/d{out}[n,c,i,j] to the window's first maximum (row-major)" if use.op.selects_one
                    else f"dL/d{out}[n,c,i,j] / k^2 to each element of the window")
            self.prepend_backward([Comment(f"layer {use.position}: {use.text}"), Call(
                f"_{mode}pool_backward", (*reads, *geometry, array(dsource)), f"dL/d{source}: {rule}", backward_means)])
        self.values.append(out)
        self.widths.append(features(out_shape))

    def _flatten(self, use):
        """Images already travel as (N, C*H*W) arrays in NCHW order: the flattened value is
        the same array under its own name (and its gradient the same array as the image's)."""
        source, out = self.values[-1], self.names.value
        self.views[out] = source
        self.forward += [Comment(f"layer {use.position}: {use.text} ({source} read as features)"), Let(
            array(out), array(source), note=tr("the images read as features, in NCHW order", "图像按 NCHW 顺序读作特征"))]
        self.prepend_backward([Comment(f"layer {use.position}: {use.text}"), Let(
            array(f"d{source}"), array(f"d{out}"),
            note=tr("flatten's gradient, read back as images", "flatten 的梯度按图像形状读回"))])
        self.values.append(out)

    # op type -> how it is lowered (an op class not listed uses its nearest listed base class)
    LOWERINGS = {Affine: _affine, Elementwise: _elementwise, PerFeature: _per_feature, Softmax: _softmax,
                 SoftmaxCrossEntropy: _softmax_cross_entropy, ElementwiseLoss: _loss,
                 BatchNorm: _normalisation, LayerNorm: _normalisation, Dropout: _dropout,
                 MulticlassHinge: _hinge, Conv2d: _conv2d, Pool: _pool, Flatten: _flatten}


# ---- what the image helpers compute, element by element (their calls' meanings) ----

def _image(name: str, *index) -> sp.Indexed:
    """An element of an image array, indexed [n, c, h, w] (the kernels keep it flat)."""
    return sp.IndexedBase(name)[index]


def _loops(indices_and_sizes, body) -> tuple:
    """Nested loops, the first index outermost."""
    for index_, size in reversed(indices_and_sizes):
        body = (Loop(index_, size, body),)
    return body


def _conv2d_means(d: Derivation, text: str, shape_in, shape_out, geometry, names) -> dict:
    """conv2d's derived index rules as statements over the layer's arrays: Y, then dW and db,
    then dX. The padded input Xp[n, c, h, w] is the input at [h - pad, w - pad], and reads
    outside an array are the padding's zeros (or outside the window's weights)."""
    (C, H, W), (O, HO, WO) = shape_in, shape_out
    cout, k, stride, pad = geometry
    source, Wt, b, out = names
    n_, o, c, i, j, p, q, a, e, u, v = conv._indices()
    h, w = index("h"), index("w")
    sizes = tuple(Let(symbol, size) for symbol, size in
                  ((conv.C, C), (conv.O, O), (conv.HO, HO), (conv.WO, WO), (conv.KW, k), (conv.S, stride)))

    def named(rule):
        return rule.replace(lambda x: isinstance(x, sp.Indexed), lambda x: {
            "Xp": lambda: _image(source, x.indices[0], x.indices[1], x.indices[2] - pad, x.indices[3] - pad),
            "W": lambda: sp.IndexedBase(Wt)[x.indices], "b": lambda: sp.IndexedBase(b)[x.indices],
            "dY": lambda: _image(f"d{out}", *x.indices)}[str(x.base)]())

    def each(target, rule, over, note=None):
        return _loops(over, (Assignments(((target, named(rule)),), zero_outside=True,
                                         notes={target: note} if note else {}),))

    return {
        "Y": sizes + each(_image(out, n_, o, i, j), d.forward["Y"], ((n_, N), (o, O), (i, HO), (j, WO)), tr(
            f"{text}: the bias plus the kernel times each window of the (padded) input",
            f"{text}：偏置加上卷积核与（补零后）输入每个窗口的乘积之和")),
        "dW": sizes + each(sp.IndexedBase(f"d{Wt}")[a, e, u, v], d.backward["dW"], ((a, cout), (e, C), (u, k), (v, k)), tr(
            f"{text}: dW is the input correlated with the upstream gradient; db its sum",
            f"{text}：dW 为输入与上游梯度的互相关；db 为上游梯度之和")),
        "db": each(sp.IndexedBase(f"d{b}")[a], d.backward["db"], ((a, cout),)),
        "dX": sizes + each(_image(f"d{source}", a, e, h, w), d.backward["dX"].xreplace({u: h + pad, v: w + pad}),
                           ((a, N), (e, C), (h, H), (w, W)), tr(
                               "the full convolution of the upstream gradient with the flipped kernel",
                               "上游梯度与翻转后卷积核的完全卷积")),
    }


def _pool_means(use, shape_in, shape_out, k: int, stride: int, source: str, out: str) -> tuple[tuple, tuple]:
    """Max- and average-pooling window by window: each output the max (or mean) of its window;
    back, each window element gets the upstream gradient times its local derivative, summed
    over the windows that hold it (max-pool's ties go to the first maximum, row-major)."""
    (C, H, W), (_, HO, WO) = shape_in, shape_out
    n_, c, i, j, h, w = (index(name) for name in "ncijhw")
    window = [(p, q) for p in range(k) for q in range(k)]
    cells = [_image(source, n_, c, stride * i + p, stride * j + q) for p, q in window]
    if use.op.selects_one:
        value, what = as_written(sp.Max, *cells), ("largest element", "最大值")
        locals_ = [conv.first_max_rule(cells, r) for r in range(len(window))]
        local_note = tr("1 if it is the window's first maximum in row-major order, else 0 "
                        "(Heaviside(0) = 0 against earlier elements, 1 against later ones)",
                        "若为窗口中按行优先的第一个最大值则为 1，否则为 0")
    else:
        value, what = as_written(sp.Mul, sp.Rational(1, k * k), as_written(sp.Add, *cells)), ("mean", "平均值")
        locals_ = [sp.Rational(1, k * k)] * len(window)
        local_note = tr("each element's share of the mean", "每个元素在平均值中的份额")
    outputs = ((n_, N), (c, C), (i, HO), (j, WO))
    forward = _loops(outputs, (Let(_image(out, n_, c, i, j), value, note=tr(
        f"{use.text}: the {what[0]} of each window", f"{use.text}：每个窗口的{what[1]}")),))
    chain_note = tr("the sum over the windows that hold this element", "对包含该元素的所有窗口求和")
    targets = [_image(f"d{source}", n_, c, stride * i + p, stride * j + q) for p, q in window]
    dout = sp.Symbol("dout")
    backward = (*_loops(((n_, N), (c, C), (h, H), (w, W)), (Let(_image(f"d{source}", n_, c, h, w), sp.Integer(0),
                                                                  note=tr("in no window: no gradient", "不在任何窗口中：梯度为 0")),)),
                *_loops(outputs, (Assignments(tuple((t, dout * local_) for t, local_ in zip(targets, locals_)),
                                              {"dout": _image(f"d{out}", n_, c, i, j)}, accumulate=frozenset(targets),
                                              upstream="dout", notes={t: (local_note, chain_note) for t in targets}),)))
    return forward, backward


# ---- statement builders the per-layer kernels print too ----

def per_feature_statements(op, d: Derivation, a: dict, width, text: str = "") -> tuple[list, list]:
    """(forward, backward) statements of y[n, j] = f(x[n, j], g[j]): one loop for the values;
    on the way back one loop that writes dx and adds each row's share to the parameters'
    gradients (batch sums). ``a`` names the arrays: x, y, dy, dx, and each parameter p and dp.
    The network lowering and the per-layer kernels both print these statements."""
    each = lambda *body: Loop(index("n"), N, (Loop(index("j"), width, body),))  # noqa: E731
    names = {"x": at(a["x"], "n", "j"), **{p: at(a[p], "j") for p in op.params}}
    forward = [each(Assignments(((at(a["y"], "n", "j"), d.forward[op.output]),), names,
                                notes={at(a["y"], "n", "j"): tr(f"{text}, from its derivation", f"{text}（由其推导得到）")}))]
    dx, grads = at(a["dx"], "n", "j"), {p: at(a["d" + p], "j") for p in op.params}
    rules = ((dx, d.backward["dx"]), *((grads[p], d.backward["d" + p]) for p in op.params))
    comments = {dx: f"dL/d{a['x']} = dL/d{a['y']} * d{a['y']}/d{a['x']}",
                **{grads[p]: f"dL/d{a[p]} = sum over the batch of dL/d{a['y']} * d{a['y']}/d{a[p]}"
                   for p in op.params}}
    notes = {dx: (_local_note(text), CHAIN_NOTE),
             **{grads[p]: (_local_note(text), tr(f"{a[p]}[j] is shared by every row: the sum over the batch",
                                                f"{a[p]}[j] 由每一行共用：对批量求和")) for p in op.params}}
    backward = [Loop(index("j"), width, tuple(Let(grads[p], sp.Integer(0)) for p in op.params)),
                each(Assignments(rules, {**names, "dout": at(a["dy"], "n", "j")}, comments, frozenset(grads.values()),
                                 upstream="dout", notes=notes))]
    return forward, backward


def row_reduction(assignments, names=None, index=index("k"), size=K, comment_for=None, notes=None) -> list:
    """Statements for one row n of a row-wise rule: each Sum becomes an accumulation loop.

    ``assignments`` are (target, expr). Sums are computed first (s0, s1, ... in a fixed order),
    then scalar targets, then one loop over the row for targets that depend on the index.
    ``comment_for(target)`` gives the comment printed after a target's statement.
    """
    k = index
    names = names or {}
    sums = sorted({total for _, e in assignments for total in e.atoms(sp.Sum)}, key=sp.srepr)
    named = {total: sp.Symbol(f"s{i}") for i, total in enumerate(sums)}
    statements = []
    for total, symbol in named.items():
        (m, _, _), = total.limits
        statements += [Let(symbol, sp.Integer(0)),
                       Loop(index, size, (Accumulate(symbol, total.function.subs(m, k), names, row=ROW),))]
    comments = {t: comment_for(t) for t, _ in assignments} if comment_for else {}
    notes = notes or {}  # target -> the transcript's note
    scalar = [(t, e.xreplace(named)) for t, e in assignments if k not in e.xreplace(named).free_symbols]
    per_element = [(t, e.xreplace(named)) for t, e in assignments if k in e.xreplace(named).free_symbols]
    if scalar:
        statements.append(Assignments(tuple(scalar), names, comments, row=ROW, notes=notes))
    if per_element:
        statements.append(Loop(index, size, (Assignments(tuple(per_element), names, comments, row=ROW, notes=notes),)))
    return statements


def _row_index(expr, index="k"):
    """Rename the free row index of a softmax rule (j or k) to the loop variable."""
    k = sp.Symbol(index, integer=True)
    frees = [s for s in expr.free_symbols if s.is_integer and s.name in ("j", "k")]
    return expr.subs({s: k for s in frees})


def row_max(source: str = "z") -> list:
    """zmax = the largest element of row n of source, subtracted before exp (no overflow)."""
    zmax = local("zmax")
    return [Let(zmax, at(source, "n", 0), note=tr("the row maximum zmax: subtracted before exp, so no exponent is positive",
                                                  "行最大值 zmax：exp 之前减去，使指数都不为正")),
            Loop(index("k"), K, (Let(zmax, as_written(sp.Max, zmax, at(source, "n", "k"))),), start=1)]


def hinge_row_statements(d: Derivation, names: dict, dz: str | None = None):
    """One row n of the multiclass hinge: the correct-class score zy, then the row's loss, or
    (given dz, the gradient's array) the derived rule for dz[n, k]."""
    zy, row_loss = local("zy"), local("row_loss")
    correct = row_reduction([(zy, _row_index(d.forward["zy"]))], names, notes={zy: tr(
        "the correct class's score (t is one-hot)", "正确类别的分数（t 为 one-hot）")})
    if dz is None:
        return correct + row_reduction([(row_loss, d.forward["L_n"])], names, notes={row_loss: tr(
            "each wrong class k costs max(0, z[k] - zy + 1): margin 1", "每个错误类别 k 的代价为 max(0, z[k] - zy + 1)：间隔为 1")})
    return correct + row_reduction([(at(dz, "n", "k"), _row_index(d.backward["dz[j]"]))], names,
                                   comment_for=lambda _: f"dz = dL/dz = {sp.sstr(d.backward['dz[j]'])}",
                                   notes={at(dz, "n", "k"): tr(
                                       "the derived rule: Heaviside(margin) counts the classes that violate the margin; "
                                       "a margin of exactly 0 counts as met (Heaviside(0) = 0, the derivative from the left)",
                                       "推导出的规则：Heaviside(间隔) 计数违反间隔的类别；间隔恰为 0 时视为满足（Heaviside(0) = 0）")})


def normalisation_forward(d: Derivation, batch: bool, width, eps, a: dict, running=None, text: str = "") -> list:
    """Statements of a normalisation's forward pass over arrays named in ``a`` (x, y, xhat, s,
    mean, var, g, b). Batch norm: per feature j, the mean and biased variance over the N rows
    (or, for inference, the running averages ``running`` = (mean, var) arrays); layer norm: per
    row n over the ``width`` features. xhat and y are the derivation's forward formulas. ``eps``
    is a number or a symbol the kernel holds (its argument, or a local set before)."""
    outer, inner, size = ("j", "n", N) if batch else ("n", "j", width)
    mean, var = (at(a["mean"], outer), at(a["var"], outer)) if running is None else (
        at(running[0], outer), at(running[1], outer))
    x = at(a["x"], "n", "j")
    names = {"x": x, "mu": mean, "sigma2": var, "s": at(a["s"], outer), "xhat": at(a["xhat"], "n", "j"),
             "g": at(a["g"], "j"), "b": at(a["b"], "j")}
    epsilon = eps if isinstance(eps, sp.Basic) else sp.Float(eps)  # a number, or the kernel's argument
    s_rule = d.forward["s"].xreplace({sp.Symbol("epsilon", positive=True): epsilon})
    centred = local("centred")
    over = tr("each feature over the batch", "每个特征在批量上") if batch else tr("each row over its features",
                                                                          "每一行在其特征上")
    statistics = [] if running is not None else [
        Let(mean, sp.Integer(0), note=tr(f"{text}: the mean of {over.en}", f"{text}：{over.zh}的均值")),
        Loop(index(inner), size, (Let(mean, x, augmented=True),)), Let(mean, ratio(mean, size)),
        Let(var, sp.Integer(0), note=tr("the biased variance (divided by the vector's size, as torch normalises)",
                                        "有偏方差（除以向量长度，与 torch 相同）")),
        Loop(index(inner), size, (Let(centred, difference(x, mean)),
                                  Let(var, as_written(sp.Mul, centred, centred), augmented=True))),
        Let(var, ratio(var, size))]
    normalise = [Assignments(((names["s"], s_rule),), names, notes={names["s"]: tr(
                     "s = sqrt(variance + epsilon), from the derivation", "s = sqrt(方差 + epsilon)（由推导得到）")}),
                 Loop(index(inner), size, (Assignments(((names["xhat"], d.forward["xhat"]),
                                                        (at(a["y"], "n", "j"), d.forward["y"])), names, notes={
                     names["xhat"]: tr("xhat = (x - mean) / s, then y = g xhat + b",
                                       "xhat = (x - 均值) / s，再 y = g xhat + b")}),))]
    return [Loop(index(outer), width if batch else N, (*statistics, *normalise))]


def normalisation_backward(d: Derivation, batch: bool, width, a: dict, text: str = "") -> list:
    """Statements of a normalisation's backward pass: the two sums of the derived rule over the
    normalised vector, then dx from the derived three-term rule; dg and db (batch norm: the
    sums themselves; layer norm: each row's share, added over the batch). ``a`` names the
    arrays as normalisation_forward's, plus dy, dx, dg, db."""
    outer, inner, size = ("j", "n", N) if batch else ("n", "j", width)
    names = {"s": at(a["s"], outer), "xhat": at(a["xhat"], "n", "j"), "g": at(a["g"], "j"), "dy": at(a["dy"], "n", "j")}
    dy, g, xhat = (sp.Symbol(v, real=True) for v in ("dy", "g", "xhat"))
    upstream = dy if batch else g * dy  # dL/dxhat
    sum_a, sum_c = map(local, ("sum_dy", "sum_dy_xhat") if batch else ("sum_gdy", "sum_gdy_xhat"))
    rule = d.backward["dx"]
    if not batch and isinstance(width, int):
        rule = rule.xreplace({FEATURES: sp.Integer(width)})
    dx_at, dg_at, db_at = at(a["dx"], "n", "j"), at(a["dg"], "j"), at(a["db"], "j")
    n, j = index("n"), index("j")
    shared = {p: tr(f"{a[p]}[j] is shared by every row: the derived rule, summed over the batch",
                    f"{a[p]}[j] 由每一行共用：推导出的规则对批量求和") for p in ("g", "b")}
    sums = [Let(sum_a, sp.Integer(0), note=tr(f"{text}: the two sums of the derived backward rule",
                                              f"{text}：推导出的反向规则中的两个求和")), Let(sum_c, sp.Integer(0)),
            Loop(index(inner), size, (Accumulate(sum_a, upstream, names), Accumulate(sum_c, upstream * xhat, names)))]
    dx = Assignments(((dx_at, rule),), names, {dx_at: f"dx = {sp.sstr(d.backward['dx'])}"}, notes={dx_at: tr(
        f"the derived three-term rule {sp.sstr(d.backward['dx'])}", f"推导出的三项规则 {sp.sstr(d.backward['dx'])}")})
    if batch:
        return [Comment(f"dg = {sp.sstr(d.backward['dg'])}, db = {sp.sstr(d.backward['db'])}"),
                Loop(j, width, (*sums, Let(dg_at, sum_c, note=shared["g"]), Let(db_at, sum_a, note=shared["b"]),
                                Loop(n, N, (dx,))))]
    shares = Assignments(((dg_at, d.backward["dg"]), (db_at, d.backward["db"])), names,
                         {dg_at: "dg: each row's dy * xhat, summed over the batch",
                          db_at: "db: each row's dy, summed over the batch"}, frozenset({dg_at, db_at}))
    return [Loop(j, width, (Let(dg_at, sp.Integer(0), note=shared["g"]), Let(db_at, sp.Integer(0), note=shared["b"]))),
            Loop(n, N, (*sums, Loop(j, width, (dx, shares))))]
