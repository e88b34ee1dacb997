"""Position-wise layers: one affine map or one softmax cross-entropy applied to every token alike.

A sequence of T tokens flows as an (N, T*D) array read X[n, t, d], tokens counted from 0 (as
attention counts them). These families keep the tokens apart, so whatever one output token
knows of another token came through a layer that mixes them (attention): that is what makes
a sequence task a test of the attention before them.

``tokenwise-affine(D,E,T)`` is Y[n,t,e] = sum_d X[n,t,d] W[d,e] + b[e], the same W and b at
every token; SymPy sums W's and b's gradients over the batch and the tokens.
``token-softmax-cross-entropy(K,T)`` takes T tokens of K logits, a one-hot target per token,
and averages the tokens' cross-entropies over all N*T tokens: dz = (softmax(z) - t) / (N T).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..indexcalc import pull_constants, resolve, sift
from ..ir import Accumulate, Comment, Let, Loop, as_written, difference, local, ratio
from ..text import tr
from .base import N, Derivation, Label, Op, Step, positive_sizes, weight_products
from .builders import LOSS
from .recurrent import SequenceArrays

D, E, K, T = sp.symbols("D E K T", integer=True, positive=True)  # inputs, outputs, classes per token, tokens


def _indices():
    """n: the example; t: the token; d: an input; e: an output; k, m: classes."""
    return sp.symbols("n t d e k m", integer=True)


def _sequence_shape_problem(tokens, width, shape, what):
    if shape != (tokens, width):
        return f"takes sequences of {tokens} tokens of {width} {what}, shape {(tokens, width)}; got {shape}"
    return None


@dataclass(frozen=True)
class TokenArrays(SequenceArrays):
    """The derivation's arrays as the kernel's: x[n,t,d] is the source's [n, t*D + d] and
    y[n,t,e] the output's [n, t*E + e] (sequences kept flat, tokens from 0); dx and dy
    likewise; W, b and their gradients are the kernel's own."""

    flat_arrays: dict = None  # role -> (kernel array, width per token)

    def named(self, expr):
        def rename(value):
            role = value.base.label.name
            if role in self.flat_arrays:
                name, width = self.flat_arrays[role]
                n, t, e = value.indices
                return sp.IndexedBase(name)[n, t * width + e]
            return self.at(role, *value.indices) if role in self.names else value
        return expr.replace(lambda v: isinstance(v, sp.Indexed), rename).xreplace(self.sizes)


@dataclass(frozen=True)
class TokenwiseAffine(Op):
    """tokenwise-affine(D, E, T): the affine map D -> E applied to each of T tokens."""

    value_stem = "z"  # z2 = the tokens times W2 plus b2
    starts_layer = True  # its W and b are the layer's
    layer_kernels = False  # its tokens T are fixed by its arguments: compiled inside networks only

    name: str
    summary: str
    inputs: tuple[str, ...] = ("x", "W", "b")

    def parse_args(self, inner, where):
        return positive_sizes(inner, (3,), where, f"{self.name} needs three positive sizes: inputs per token, "
                              f"outputs per token and tokens, e.g. {self.name}(4,3,5)")

    def input_width(self, args):
        inputs, _, tokens = args
        return (tokens, inputs)

    def shape_problem(self, args, shape):
        inputs, _, tokens = args
        return _sequence_shape_problem(tokens, inputs, shape, "inputs")

    def output_width(self, args, shape):
        _, outputs, tokens = args
        return (tokens, outputs)

    def param_shapes(self, args, width):
        inputs, outputs, _ = args
        return [("W", (inputs, outputs)), ("b", (outputs,))]

    def step_products(self, args, shape_in, shape_out, batch, first):
        """affine's three products, every token of every example at once."""
        inputs, outputs, tokens = args
        return weight_products(batch * tokens, inputs, outputs, first)

    def derive(self) -> Derivation:
        n, t, d, e, *_ = _indices()
        i, u, w, q = sp.symbols("i u w q", integer=True)  # the element each rule is differentiated by
        x, W, b, dy = (sp.IndexedBase(name) for name in ("x", "W", "b", "dy"))
        y = sp.Sum(x[n, t, d] * W[d, e], (d, 0, D - 1)) + b[e]
        contraction = sp.Sum(dy[n, t, e] * y, (n, 0, N - 1), (t, 0, T - 1), (e, 0, E - 1))
        backward = {
            "dW": resolve(contraction.diff(W[w, q])).xreplace({w: d, q: e}),
            "db": resolve(contraction.diff(b[q])).xreplace({q: e}),
            "dx": resolve(contraction.diff(x[i, u, w])).xreplace({i: n, u: t, w: d}),
        }
        steps = [
            Step("forward", sp.IndexedBase("y")[n, t, e], y, "the same W and b at every token t"),
            Step("chain rule", Label("dL", "dL"), contraction,
                 "dL = sum_{n,t,e} dy[n,t,e] * (change in y[n,t,e])"),
            Step("differentiate by W[d,e], sift the deltas", sp.IndexedBase("dW")[d, e], backward["dW"],
                 "a shared weight: summed over the batch and the tokens"),
            Step("differentiate by b[e]", sp.IndexedBase("db")[e], backward["db"], "likewise"),
            Step("differentiate by x[n,t,d]", sp.IndexedBase("dx")[n, t, d], backward["dx"],
                 "token t's gradient reads token t's upstream gradient only: tokens do not mix"),
        ]
        return Derivation(self.name, self.summary, self.inputs, {"y": y}, backward, ("x",), steps,
                          ["tokens count from 0 to T-1: token t reads X[n, t*D : (t+1)*D]"], [], dict(backward))

    def lower(self, lowering, use):
        """Forward: each token's outputs, bias first then the inputs times W. Backward: W's and
        b's gradients summed over the batch and the tokens, then (inside a network) each
        token's input gradient through W."""
        inputs, outputs, tokens = use.args
        source = lowering.values[-1]
        W, b = lowering.names.params["W"], lowering.names.params["b"]
        lowering.params += [(W, (inputs, outputs)), (b, (outputs,))]
        out = lowering.buffer(lowering.names.value, (N, tokens * outputs))
        dW, db = lowering.buffer(f"d{W}", (inputs, outputs)), lowering.buffer(f"d{b}", (outputs,))
        flat = {"x": (source, inputs), "dx": (f"d{source}", inputs), "y": (out, outputs), "dy": (f"d{out}", outputs)}
        arrays = TokenArrays(source, inputs, {"W": W, "b": b}, {D: inputs, E: outputs, T: tokens}, flat)
        d = lowering.derivation(self)
        n, t, dd, e, *_ = _indices()
        y = arrays.named(sp.IndexedBase("y")[n, t, e])
        lowering.forward += [Comment(f"layer {use.position}: {use.text} ({tokens} tokens of {inputs} -> {outputs})"),
                             Loop(n, N, (Loop(t, tokens, (Loop(e, outputs, tuple(arrays.summed(y, d.forward["y"], tr(
                                 f"{use.text}: token t's output, the bias plus x_t times {W}",
                                 f"{use.text}：词元 t 的输出，偏置加上 x_t 乘 {W}")))),)),))]
        backward = [
            Comment(f"layer {use.position}: {use.text}: {W} and {b} are shared by every token"),
            Loop(dd, inputs, (Loop(e, outputs, tuple(arrays.summed(sp.IndexedBase(dW)[dd, e], d.backward["dW"], tr(
                f"{W} is shared by every token: x_t times its upstream gradient, summed over the batch and the tokens",
                f"{W} 被每个词元共享：x_t 乘以其上游梯度，对批量和各词元求和")))),)),
            Loop(e, outputs, tuple(arrays.summed(sp.IndexedBase(db)[e], d.backward["db"], tr(
                "the upstream gradients summed over the batch and the tokens", "上游梯度对批量和各词元求和"))))]
        if source != "X" or lowering.input_gradient:  # a step never needs the gradient of the input data X
            lowering.buffer(f"d{source}", (N, tokens * inputs))
            dx = arrays.named(sp.IndexedBase("dx")[n, t, dd])
            backward.append(Loop(n, N, (Loop(t, tokens, (Loop(dd, inputs, tuple(arrays.summed(dx, d.backward["dx"], tr(
                f"token t's upstream gradient carried back through {W}", f"词元 t 的上游梯度经 {W} 传回")))),)),)))
        lowering.prepend_backward(backward)
        lowering.values.append(out)
        lowering.widths.append(tokens * outputs)


@dataclass(frozen=True)
class TokenSoftmaxCrossEntropy(Op):
    """token-softmax-cross-entropy(K, T): softmax over each token's K logits, cross-entropy
    with its one-hot target, mean over the N*T tokens."""

    value_stem = None  # a loss: it gives L
    is_loss = True
    one_hot_targets = True  # one-hot per token: each token's K targets sum to 1
    applies = "softmax"
    layer_kernels = False  # its tokens T are fixed by its arguments: compiled inside networks only

    name: str
    summary: str
    inputs: tuple[str, ...] = ("z", "t")

    def parse_args(self, inner, where):
        return positive_sizes(inner, (2,), where, f"{self.name} needs two positive sizes: classes per token and "
                              f"tokens, e.g. {self.name}(10,6)")

    def input_width(self, args):
        classes, tokens = args
        return (tokens, classes)

    def shape_problem(self, args, shape):
        classes, tokens = args
        return _sequence_shape_problem(tokens, classes, shape, "logits")

    def output_width(self, args, shape):
        return shape

    def one_hot_group(self, args):
        return args[0]  # each token's K classes hold one 1

    def derive(self) -> Derivation:
        n, t, _, _, k, m = _indices()
        a, u, j = sp.symbols("a u j", integer=True)  # the logit z[a,u,j] the rule is differentiated by
        z, target, y = (sp.IndexedBase(name) for name in ("z", "t", "y"))
        total = sp.Sum(sp.exp(z[n, t, m]), (m, 0, K - 1))
        token_loss = -sp.Sum(target[n, t, k] * (z[n, t, k] - sp.log(total)), (k, 0, K - 1))
        loss = sp.Sum(token_loss, (n, 0, N - 1), (t, 0, T - 1)) / (N * T)
        raw = resolve(loss.diff(z[a, u, j])).xreplace({a: n, u: t})
        sifted = pull_constants(sift(raw))
        one_hot = sifted.subs(sp.Sum(target[n, t, k], (k, 0, K - 1)), 1)
        if one_hot == sifted:
            raise AssertionError("token-softmax-cross-entropy derivation never met sum_k t[n,t,k]")
        placeholder = sp.Symbol("S", positive=True)
        rule = sp.simplify(one_hot.xreplace({total: placeholder}).replace(
            lambda v: isinstance(v, sp.exp) and isinstance(v.args[0], sp.Indexed) and v.args[0].base == z,
            lambda v: y[v.args[0].indices] * placeholder)).xreplace({placeholder: total})
        zmax = sp.IndexedBase("zmax")[n, t]
        lse = zmax + sp.log(sp.Sum(sp.exp(z[n, t, m] - zmax), (m, 0, K - 1)))
        token_stable = lse - sp.Sum(target[n, t, k] * z[n, t, k], (k, 0, K - 1))
        dz = Label("dz[n,t,j]", r"\frac{\partial L}{\partial z_{n,t,j}}")
        steps = [
            Step("forward", y[n, t, k], sp.exp(z[n, t, k]) / total, "softmax over token t's K logits"),
            Step("loss of one token", Label("L_nt", "L_{n,t}"), token_loss, "cross-entropy with its one-hot target"),
            Step("mean over the tokens", sp.Symbol("L"), loss, "every token of every example counts once"),
            Step("stable log-sum-exp", Label("L_nt", "L_{n,t}"), token_stable,
                 "zmax[n,t] = max_m z[n,t,m]; no exponent is positive"),
            Step("differentiate by z[n,t,j], sift the deltas", dz, raw,
                 "only token (n, t)'s own loss reads its logits"),
            Step("one-hot targets", dz, one_hot, "sum_k t[n,t,k] = 1: each token has one true class"),
            Step("name the outputs", dz, rule, "exp(z[n,t,j]) / sum_m exp(z[n,t,m]) = y[n,t,j]"),
        ]
        return Derivation(self.name, self.summary, self.inputs,
                          {"y": sp.exp(z[n, t, k] - zmax) / sp.exp(lse - zmax), "L_nt": token_stable},
                          {"dz": rule}, ("y", "t"), steps,
                          ["targets are one-hot per token (each token's K targets sum to 1)",
                           "tokens count from 0 to T-1: token t's logits are z[n, t*K : (t+1)*K]"],
                          ["log-sum-exp with each token's maximum subtracted; log(0) never taken"], {"dz": raw})

    def lower(self, lowering, use):
        """Per token, the derivation's stable forms as accumulations: the maximum logit, the
        softmax (saved as P for backward) and the token's loss, log-sum-exp minus the true
        class's logit; the loss is their mean. Back: the derived rule (P - T) / (N T)."""
        classes, tokens = use.args
        d = lowering.derivation(self)
        n, t, _, _, k, _ = _indices()
        source = lowering.values[-1]
        probabilities = lowering.buffer("P", (N, tokens, classes))  # P[n, t, k]: token t's softmax
        dsource = lowering.buffer(f"d{source}", (N, tokens * classes))
        flat = {"z": (source, classes), "t": ("T", classes), "dz": (dsource, classes)}
        arrays = TokenArrays(source, classes, {"y": probabilities}, {K: classes, T: tokens}, flat)
        zmax, total, target_score = (lowering.show(local(name), shown, n, t) for name, shown in (
            ("zmax", f"{source}max"), ("total", f"{source}sum"), ("target_score", f"{source}true")))
        token_loss = lowering.show(local("token_loss"), "L_nt", n, t)
        logit = arrays.named(sp.IndexedBase("z")[n, t, k])
        target = arrays.named(sp.IndexedBase("t")[n, t, k])
        per_token = (
            Let(zmax, arrays.named(sp.IndexedBase("z")[n, t, 0]), note=tr(
                "the token's largest logit: subtracted before exp, so no exponent is positive",
                "该词元的最大 logit：exp 之前减去，使指数都不为正")),
            Loop(k, classes, (Let(zmax, as_written(sp.Max, zmax, logit)),), start=1),
            Let(total, sp.Integer(0), note=tr("the token's exponentials summed, its maximum subtracted",
                                              "该词元各指数之和（减去最大值）")),
            Loop(k, classes, (Accumulate(total, sp.exp(difference(logit, zmax))),)),
            Loop(k, classes, (Let(arrays.named(sp.IndexedBase("y")[n, t, k]), ratio(sp.exp(difference(logit, zmax)),
                                                                                   total), note=tr(
                "softmax of the token's logits, saved for backward", "该词元 logit 的 softmax，保存供反向传播使用")),)),
            Let(target_score, sp.Integer(0), note=tr("the true class's logit (t is one-hot)",
                                                     "正确类别的 logit（t 为 one-hot）")),
            Loop(k, classes, (Accumulate(target_score, target * logit),)),
            Let(token_loss, zmax + sp.log(total) - target_score, note=tr(
                "the token's loss: log-sum-exp (maximum subtracted) minus the true class's logit",
                "该词元的误差：log-sum-exp（减去最大值）减去正确类别的 logit")),
            Let(LOSS, token_loss, augmented=True))
        lowering.loss = [Comment(f"layer {use.position}: {use.text} ({tokens} tokens of {classes} classes; "
                                 "P = softmax per token, saved for backward)"),
                         Let(LOSS, sp.Integer(0), note=tr(f"{self.name}: the mean of the tokens' losses",
                                                          f"{self.name}：各词元误差的平均")),
                         Loop(n, N, (Loop(t, tokens, per_token),)),
                         Let(LOSS, ratio(LOSS, N * tokens))]
        rule = d.backward["dz"]
        gradient = arrays.named(sp.IndexedBase("dz")[n, t, k])
        lowering.prepend_backward([Comment(f"layer {use.position}: {use.text}: dL/d{source} = {sp.sstr(rule)}"),
                                   Loop(n, N, (Loop(t, tokens, (Loop(k, classes, (Let(
                                       gradient, arrays.named(rule.xreplace({sp.Symbol('j', integer=True): k})), note=tr(
                                           f"the derived rule of {self.name}: (P - T) / (N T)",
                                           f"{self.name} 推导出的规则：(P - T) / (N T)")),)),)),))])
