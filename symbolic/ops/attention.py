"""Scaled dot-product self-attention: one head over a sequence of T tokens, optionally causal.

A sequence enters as (T, D) per example, the kernels' X as an (N, T*D) array read X[n, t, d]
(as the RNN reads it). With learnable projections Wq, Wk (D x dk) and Wv (D x dv), for every
query token t and key token s:

    Q[n,t,a] = sum_d x[n,t,d] Wq[d,a],  K[n,s,a] = sum_d x[n,s,d] Wk[d,a],  V[n,s,c] = sum_d x[n,s,d] Wv[d,c]
    S[n,t,s] = sum_a Q[n,t,a] K[n,s,a] / sqrt(dk)          (the scores)
    P[n,t,s] = exp(S[n,t,s] - max_r S[n,t,r]) / sum_r exp(S[n,t,r] - max_r S[n,t,r])   (softmax of row t)
    O[n,t,c] = sum_s P[n,t,s] V[n,s,c]

and the layer gives O as a (T, dv) sequence. ``causal-attention`` masks the future: token t
attends to s <= t only (P[n,t,s] = 0 for s > t). SymPy derives each stage's backward rule from
its forward formula, the softmax's included: its Jacobian is not elementwise, so
dS = P (dP - sum_r dP P) per row, and the scale 1/sqrt(dk) reaches dQ and dK.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..indexcalc import pull_constants, resolve
from ..ir import (Accumulate, Comment, Let, Loop, MatrixProduct, Part, Rows, Summed, Transposed, as_written, difference,
                  local, ratio)
from ..text import tr
from .base import N, Derivation, Label, Op, Step, positive_sizes

# Sizes as symbols, so no derivation depends on them: token width, query/key width, value width, tokens.
D, DK, DV, T = sp.symbols("D d_k d_v T", integer=True, positive=True)
ROLES = ("x", "Wq", "Wk", "Wv", "Q", "K", "V", "S", "P", "O", "dO", "dP", "dS", "dQ", "dK", "dV")
CAUSAL_NOTE = ("causal: token t attends to the tokens s <= t only; P[n,t,s] = 0 for s > t, so the terms "
               "with s > t vanish from every rule: sums over keys run over s <= t, sums over queries over t >= s")


def _indices():
    """n: the example; t, s, r: tokens (t a query, s a key); d: a token's input; a: a query and
    key component; c: a value component."""
    return sp.symbols("n t s r d a c", integer=True)


def _arrays():
    return {name: sp.IndexedBase(name) for name in ROLES}


def _vjp(contraction, element, rename):
    """d(contraction)/d(element) with the deltas sifted, its free indices renamed."""
    return resolve(contraction.diff(element)).xreplace(rename)


@dataclass(frozen=True)
class Attention(Op):
    """attention(D, dk, dv, T): self-attention over T tokens of D inputs, giving (T, dv)."""

    value_stem = "O"  # O1: the attention output, the layer's value
    starts_layer = True  # its projections Wq1, Wk1, Wv1 are layer 1's
    layer_kernels = False  # its tokens T are fixed by its arguments: compiled inside networks only

    name: str
    summary: str
    causal: bool = False
    inputs: tuple[str, ...] = ("x", "Wq", "Wk", "Wv")

    def parse_args(self, inner, where):
        return positive_sizes(inner, (4,), where, f"{self.name} needs four positive sizes: inputs per token, "
                              f"query/key width, value width and tokens, e.g. {self.name}(2,2,2,4)")

    def input_width(self, args):
        inputs, _, _, tokens = args
        return (tokens, inputs)  # a sequence: T tokens of D inputs each

    def shape_problem(self, args, shape):
        inputs, _, _, tokens = args
        if shape != (tokens, inputs):
            return f"takes sequences of {tokens} tokens of {inputs} inputs, shape {(tokens, inputs)}; got {shape}"
        return None

    def output_width(self, args, shape):
        _, _, values, tokens = args
        return (tokens, values)  # a sequence again: flatten before an affine layer, or attend again

    def param_shapes(self, args, width):
        inputs, keys, values, _ = args
        return [("Wq", (inputs, keys)), ("Wk", (inputs, keys)), ("Wv", (inputs, values))]

    def derive(self) -> Derivation:
        n, t, s, r, d, a, c = _indices()
        i, u, w, e, b = sp.symbols("i u w e b", integer=True)  # the element each rule is differentiated by
        A = _arrays()
        x, Wq, Wk, Wv, Q, K, V, S, P = (A[k] for k in ROLES[:9])
        dO, dP, dS, dQ, dK, dV = (A[k] for k in ROLES[10:])
        rows, tokens = (n, 0, N - 1), (t, 0, T - 1)
        q = sp.Sum(x[n, t, d] * Wq[d, a], (d, 0, D - 1))
        k = sp.Sum(x[n, t, d] * Wk[d, a], (d, 0, D - 1))
        v = sp.Sum(x[n, t, d] * Wv[d, c], (d, 0, D - 1))
        score = sp.Sum(Q[n, t, a] * K[n, s, a], (a, 0, DK - 1)) / sp.sqrt(DK)
        denominator = sp.Sum(sp.exp(S[n, t, r]), (r, 0, T - 1))
        weight = sp.exp(S[n, t, s]) / denominator
        smax = sp.IndexedBase("Smax")[n, t]
        stable = sp.exp(S[n, t, s] - smax) / sp.Sum(sp.exp(S[n, t, r] - smax), (r, 0, T - 1))
        out = sp.Sum(P[n, t, s] * V[n, s, c], (s, 0, T - 1))

        # the softmax of one row (n, t): differentiate sum_r dP[r] P[r] by one score S[n,t,s]
        jacobian = resolve(weight.xreplace({s: r}).diff(S[n, t, s]))  # dP[n,t,r]/dS[n,t,s]
        softmax_raw = resolve(sp.Sum(dP[n, t, r] * weight.xreplace({r: u}).xreplace({s: r}), (r, 0, T - 1))
                              .diff(S[n, t, s]))
        named = _name_weights(softmax_raw, S, P, sp.Sum(sp.exp(S[n, t, u]), (u, 0, T - 1)))
        dS_rule = sp.factor(named) if sp.count_ops(sp.factor(named)) <= sp.count_ops(named) else named
        jacobian_named = _name_weights(jacobian, S, P, denominator)
        # the other stages: the contraction sum dY * Y over every element, differentiated by one
        # element of each input (deltas sifted), its free indices renamed to the kernel's
        from_out = sp.Sum(dO[n, t, c] * out, rows, tokens, (c, 0, DV - 1))
        from_scores = sp.Sum(dS[n, t, s] * score, rows, tokens, (s, 0, T - 1))
        from_projections = (sp.Sum(A["dQ"][n, t, a] * q, rows, tokens, (a, 0, DK - 1))
                            + sp.Sum(A["dK"][n, t, a] * k, rows, tokens, (a, 0, DK - 1))
                            + sp.Sum(A["dV"][n, t, c] * v, rows, tokens, (c, 0, DV - 1)))
        backward = {
            "dP": _vjp(from_out, P[i, u, w], {i: n, u: t, w: s}),
            "dV": _vjp(from_out, V[i, w, e], {i: n, w: s, e: c}),
            "dS": dS_rule,
            "dQ": _vjp(from_scores, Q[i, u, b], {i: n, u: t, b: a}),
            "dK": _vjp(from_scores, K[i, w, b], {i: n, w: s, b: a}),
            "dWq": _vjp(from_projections, Wq[e, b], {e: d, b: a}),
            "dWk": _vjp(from_projections, Wk[e, b], {e: d, b: a}),
            "dWv": _vjp(from_projections, Wv[e, b], {e: d, b: c}),
            "dx": _vjp(from_projections, x[i, u, e], {i: n, u: t, e: d}),
        }
        forward = {"Q": q, "K": k.xreplace({t: s}), "V": v.xreplace({t: s}), "S": score, "P": stable, "O": out}
        steps = [
            Step("forward: the query of token t", Q[n, t, a], q, "x_t times Wq"),
            Step("forward: the key of token s", K[n, s, a], forward["K"], "x_s times Wk"),
            Step("forward: the value of token s", V[n, s, c], forward["V"], "x_s times Wv"),
            Step("forward: the scores", S[n, t, s], score, "query t dotted with key s, scaled by 1/sqrt(dk)"),
            Step("forward: the attention weights", P[n, t, s], weight, "softmax over row t of the scores"),
            Step("stable forward", P[n, t, s], stable,
                 "Smax[n,t] = max_r S[n,t,r] subtracted before exp: no exponent is positive"),
            Step("forward: the output", A["O"][n, t, c], out, "the values weighted by row t's attention weights"),
            Step("the softmax Jacobian (SymPy's diff, deltas sifted)",
                 Label("dP[n,t,r]/dS[n,t,s]", r"\frac{\partial P_{n,t,r}}{\partial S_{n,t,s}}"), jacobian_named,
                 "P[r] (delta(r,s) - P[s]): every weight of the row moves when one score moves, so it is not "
                 "elementwise"),
            Step("chain rule through the softmax of row t", dS[n, t, s], softmax_raw,
                 "dS[s] = sum_r dP[r] dP[r]/dS[s]"),
            Step("name the weights", dS[n, t, s], dS_rule, "exp(S[n,t,s]) / sum_r exp(S[n,t,r]) = P[n,t,s]"),
            Step("differentiate sum dO * O by P[n,t,s]", dP[n, t, s], backward["dP"], "the output gradient dotted "
                 "with value s"),
            Step("differentiate sum dO * O by V[n,s,c]", dV[n, s, c], backward["dV"],
                 "summed over the queries that weigh value s"),
            Step("differentiate sum dS * S by Q[n,t,a]", dQ[n, t, a], backward["dQ"], "the keys, scaled by 1/sqrt(dk)"),
            Step("differentiate sum dS * S by K[n,s,a]", dK[n, s, a], backward["dK"],
                 "the queries, scaled by 1/sqrt(dk), summed over the queries"),
            Step("differentiate by Wq[d,a]", sp.IndexedBase("dWq")[d, a], backward["dWq"],
                 "a shared weight: summed over the batch and the tokens"),
            Step("differentiate by Wk[d,a]", sp.IndexedBase("dWk")[d, a], backward["dWk"], "likewise"),
            Step("differentiate by Wv[d,c]", sp.IndexedBase("dWv")[d, c], backward["dWv"], "likewise"),
            Step("differentiate by x[n,t,d]", sp.IndexedBase("dx")[n, t, d], backward["dx"],
                 "token t feeds its query, its key and its value: three paths"),
        ]
        conventions = ["tokens count from 0 to T-1: token t reads X[n, t, :]; t is a query, s a key"]
        if self.causal:
            conventions.append(CAUSAL_NOTE)
        return Derivation(self.name, self.summary, self.inputs, forward, backward, ("Q", "K", "V", "P"), steps,
                          conventions, ["the row maximum of the scores is subtracted before exp: no overflow"],
                          {**backward, "dS": softmax_raw, "dP[n,t,r]/dS[n,t,s]": jacobian_named})

    def lower(self, lowering, use):
        """Per example: the projections, then each query's scores, their softmax (row maximum
        subtracted) and the output. Back: the values' and weights' gradients, the softmax
        Jacobian row by row, the queries' and keys' gradients; then each projection's gradient
        summed over the batch and the tokens."""
        inputs, keys, values, tokens = use.args
        layer, source = lowering.names.layer, lowering.values[-1]
        Wq, Wk, Wv = (lowering.names.params[role] for role in ("Wq", "Wk", "Wv"))
        lowering.params += [(Wq, (inputs, keys)), (Wk, (inputs, keys)), (Wv, (inputs, values))]
        out = lowering.buffer(lowering.names.value, (N, tokens * values))
        scratch = {"Q": (tokens, keys), "K": (tokens, keys), "V": (tokens, values), "S": (tokens, tokens),
                   "P": (tokens, tokens)}
        names = {role: lowering.buffer(f"{role}{layer}", (N, *shape)) for role, shape in scratch.items()}
        lowering.scratch += list(names.values())
        for role, shape in scratch.items():
            lowering.buffer(f"d{names[role]}", (N, *shape))
        arrays = _Arrays(source, out, inputs, values, {**names, "Wq": Wq, "Wk": Wk, "Wv": Wv},
                         {D: inputs, DK: keys, DV: values, T: tokens}, self.causal)
        d = lowering.derivation(self)
        n, t, s, r, dd, a, c = _indices()
        at = arrays.at
        what = f"layer {use.position}: {use.text}"
        smax, total, dot = (lowering.show(local(name), f"{names[role]}{suffix}", n, t) for name, role, suffix in (
            ("smax", "S", "max"), ("total", "S", "sum"), ("dot", "P", "dot")))
        keys_of_t = t + 1 if self.causal else tokens  # the keys query t sees

        sym = sp.Symbol
        example = {role: Part(sym(names[role]), n) for role in names}  # the (T, width) matrices of example n
        gradient = {role: Part(sym(f"d{names[role]}"), n) for role in names}
        sequence = lambda name, width: Rows(Part(sym(name), n), width)  # noqa: E731  (a flat (T*width) row as (T, width))
        # with the causal mask the weights above the diagonal are never written: the sums that
        # read P or dS as whole matrices stay loops there
        whole = {"loops": self.causal}

        project = [Loop(t, tokens, (Loop(a, size, tuple(arrays.product_summed(at(role, n, t, a), rule, note))),))
                   for role, size, rule, note in (
                       ("Q", keys, d.forward["Q"], tr(f"{use.text}: the query of token t, x_t times {Wq}",
                                                      f"{use.text}：词元 t 的查询向量，x_t 乘 {Wq}")),
                       ("K", keys, d.forward["K"].xreplace({s: t}), tr(f"the key of token t, x_t times {Wk}",
                                                                        f"词元 t 的键向量，x_t 乘 {Wk}")),
                       ("V", values, d.forward["V"].xreplace({s: t, c: a}), tr(f"the value of token t, x_t times {Wv}",
                                                                                f"词元 t 的值向量，x_t 乘 {Wv}")))]
        projections = [MatrixProduct(Rows(sym(names[role]), size), Rows(sym(source), inputs), sym(weight),
                                     comment=f"{role} = x {weight}, every token of every example")
                       for role, weight, size in (("Q", Wq, keys), ("K", Wk, keys), ("V", Wv, values))]
        scale = tr(f"the score of query t against key s: their dot product divided by sqrt({keys})",
                   f"查询 t 对键 s 的分数：二者点积除以 sqrt({keys})")
        row = [
            Loop(s, keys_of_t, tuple(arrays.product_summed(at("S", n, t, s), d.forward["S"], scale, at("S", n, t, s)))),
            Let(smax, at("S", n, t, 0), note=tr("the row maximum of the scores: subtracted before exp, so no exponent "
                                                "is positive", "分数的行最大值：exp 之前减去，使指数都不为正")),
            Loop(s, keys_of_t, (Let(smax, as_written(sp.Max, smax, at("S", n, t, s))),), start=1),
            Let(total, sp.Integer(0), note=tr("the softmax's denominator: the row's exponentials summed",
                                              "softmax 的分母：该行各指数之和")),
            Loop(r, keys_of_t, (Accumulate(total, sp.exp(difference(at("S", n, t, r), smax))),)),
            Loop(s, keys_of_t, (Let(at("P", n, t, s), ratio(sp.exp(difference(at("S", n, t, s), smax)), total), note=tr(
                "the attention weight of query t on key s: softmax of the row, its maximum subtracted",
                "查询 t 对键 s 的注意力权重：该行的 softmax（减去行最大值）")),)),
            Loop(c, values, tuple(arrays.product_summed(arrays.flat(out, values, n, t, c), d.forward["O"], tr(
                "the output of token t: the values weighted by its attention weights",
                "词元 t 的输出：以其注意力权重加权的值向量"), **whole))),
        ]
        mask = ", causal: token t sees s <= t" if self.causal else ""
        lowering.forward += [
            Comment(f"{what} ({tokens} tokens of {inputs} -> {values}, keys {keys}{mask})"), *projections,
            Loop(n, N, (*project, MatrixProduct(example["S"], example["Q"], Transposed(example["K"]), comment="Q K^T"),
                        Loop(t, tokens, tuple(row)),
                        *([] if self.causal else [MatrixProduct(sequence(out, values), example["P"], example["V"],
                                                                comment="O = P V, after every row's weights")])))]

        back = [
            *([] if self.causal else [MatrixProduct(gradient["V"], Transposed(example["P"]), sequence(f"d{out}", values),
                                                    comment="dV = P^T dO")]),
            MatrixProduct(gradient["P"], sequence(f"d{out}", values), Transposed(example["V"]), comment="dP = dO V^T"),
            Loop(s, tokens, (Loop(c, values, tuple(arrays.product_summed(at("dV", n, s, c), d.backward["dV"], tr(
                "value s's gradient: the weights on it times the outputs' gradients, summed over the queries",
                "值向量 s 的梯度：各查询对它的权重乘以输出的梯度，对查询求和"), **whole))),)),
            Loop(t, tokens, (
                Loop(s, keys_of_t, tuple(arrays.product_summed(at("dP", n, t, s), d.backward["dP"], tr(
                    "the attention weight's gradient: the output's gradient dotted with value s",
                    "注意力权重的梯度：输出的梯度与值向量 s 的点积")))),
                *arrays.summed(dot, _the_sum(d.backward["dS"]), tr(
                    "the row's sum of P times dP: every weight of the row moves when one score moves",
                    "该行 P 乘 dP 之和：一个分数变化时，该行所有权重都随之变化")),
                Loop(s, keys_of_t, (Let(at("dS", n, t, s), arrays.named(d.backward["dS"]).xreplace(
                    {arrays.named(_the_sum(d.backward["dS"])): dot}), note=tr(
                    "the softmax Jacobian, not elementwise: P times (dP minus the row's sum of P dP)",
                    "softmax 的雅可比矩阵（不是逐元素的）：P 乘以（dP 减去该行 P dP 之和）")),)),
            )),
            *([] if self.causal else [
                MatrixProduct(gradient["Q"], gradient["S"], example["K"], comment="dS K, scaled below"),
                MatrixProduct(gradient["K"], Transposed(gradient["S"]), example["Q"], comment="dS^T Q, scaled below")]),
            Loop(t, tokens, (Loop(a, keys, tuple(arrays.product_summed(at("dQ", n, t, a), d.backward["dQ"], tr(
                f"query t's gradient: the scores' gradients times the keys, divided by sqrt({keys})",
                f"查询 t 的梯度：分数的梯度乘以键向量，再除以 sqrt({keys})"), at("dQ", n, t, a), **whole))),)),
            Loop(s, tokens, (Loop(a, keys, tuple(arrays.product_summed(at("dK", n, s, a), d.backward["dK"], tr(
                f"key s's gradient: the scores' gradients times the queries, divided by sqrt({keys})",
                f"键 s 的梯度：分数的梯度乘以查询向量，再除以 sqrt({keys})"), at("dK", n, s, a), **whole))),)),
        ]
        grads = {p: lowering.buffer(f"d{p}", shape) for p, shape in ((Wq, (inputs, keys)), (Wk, (inputs, keys)),
                                                                      (Wv, (inputs, values)))}
        params = []
        for role, p, index_, size, what_grad, what_zh in (
                ("Wq", Wq, a, keys, "the query's gradient", "查询的梯度"),
                ("Wk", Wk, a, keys, "the key's gradient", "键的梯度"),
                ("Wv", Wv, c, values, "the value's gradient", "值的梯度")):
            params += [MatrixProduct(sym(grads[p]), Transposed(Rows(sym(source), inputs)),
                                     Rows(sym(f"d{names[role[1].upper()]}"), size),
                                     comment=f"dL/d{p} = x^T d{names[role[1].upper()]}, every token of every example"),
                       Loop(dd, inputs, (Loop(index_, size, tuple(arrays.product_summed(
                           sp.IndexedBase(grads[p])[dd, index_], d.backward[f"d{role}"], tr(
                               f"{p} is shared by every token: x_t times {what_grad}, summed over the batch and the tokens",
                               f"{p} 被每个词元共享：x_t 乘以{what_zh}，对批量和各词元求和")))),))]
        backward = [Comment(f"{what}: back through the output, the softmax and the scores"),
                    Loop(n, N, tuple(back)), *params]
        if source != "X" or lowering.input_gradient:  # a step never needs the gradient of the input data X
            lowering.buffer(f"d{source}", (N, tokens * inputs))
            term = sym(lowering.buffer(f"term{names['Q']}", (N, tokens * inputs)))
            into = Rows(sym(f"d{source}"), inputs)
            backward += [MatrixProduct(into, Rows(sym(f"d{names['Q']}"), keys), Transposed(sym(Wq)),
                                       comment=f"dL/d{source}: back through {Wq}, {Wk} and {Wv}"),
                         *(MatrixProduct(into, Rows(sym(f"d{names[role]}"), size), Transposed(sym(weight)), True,
                                         Rows(term, inputs)) for role, weight, size in (("K", Wk, keys), ("V", Wv, values))),
                         Loop(n, N, (Loop(t, tokens, (Loop(dd, inputs, tuple(arrays.product_summed(
                             arrays.flat(f"d{source}", inputs, n, t, dd), d.backward["dx"], tr(
                                 f"token t feeds its query, key and value: their gradients carried back through {Wq}, "
                                 f"{Wk}, {Wv}", f"词元 t 参与其查询、键和值：它们的梯度经 {Wq}、{Wk}、{Wv} 传回")))),)),))]
        lowering.prepend_backward(backward)
        lowering.values.append(out)
        lowering.widths.append(tokens * values)


def _name_weights(expr, S, P, denominator):
    """exp(S[n,t,i]) -> P[n,t,i] * sum_r exp(S[n,t,r]): the derived rule in the saved weights."""
    placeholder = sp.Symbol("Z", positive=True)
    named = expr.xreplace({denominator: placeholder}).replace(
        lambda e: isinstance(e, sp.exp) and isinstance(e.args[0], sp.Indexed) and e.args[0].base == S,
        lambda e: P[e.args[0].indices] * placeholder)
    return sp.simplify(pull_constants(named)).xreplace({placeholder: denominator})


def _the_sum(rule):
    """The one sum in the softmax's rule: sum_r P[n,t,r] dP[n,t,r]."""
    (total,) = rule.atoms(sp.Sum)
    return total


@dataclass(frozen=True)
class _Arrays:
    """The derivation's arrays as the kernel's: x[n,t,d] is X[n, t*D + d] and O[n,t,c] is
    O1[n, t*dv + c] (sequences kept flat), the others the layer's (N, T, width) buffers.
    With the causal mask, sums over keys stop at the query and sums over queries start at the key."""

    source: str
    out: str
    inputs: int
    values: int
    names: dict  # role -> the kernel's array
    sizes: dict
    causal: bool

    @staticmethod
    def flat(name, width, n, t, e):
        return sp.IndexedBase(name)[n, t * width + e]

    def at(self, role, *indices):
        name = self.names[role] if role in self.names else f"d{self.names[role[1:]]}"  # dQ: dQ1
        return sp.IndexedBase(name)[tuple(sp.sympify(i) for i in indices)]

    def named(self, expr):
        """A rule over the derivation's arrays, over the kernel's (sizes as numbers)."""
        def rename(value):
            role = value.base.label.name
            if role == "x":
                return self.flat(self.source, self.inputs, *value.indices)
            if role in ("O", "dO"):
                return self.flat(f"d{self.out}" if role == "dO" else self.out, self.values, *value.indices)
            return self.at(role, *value.indices) if role in ROLES or role in ("Wq", "Wk", "Wv") else value
        return expr.replace(lambda v: isinstance(v, sp.Indexed), rename).xreplace(self.sizes)

    def masked(self, total: sp.Sum) -> tuple:
        """A sum's limits in the kernel: with the causal mask a sum over keys s (or r) stops at
        the query t and a sum over queries t starts at the key s, where the rule has both."""
        n, t, s, r, *_ = _indices()
        limits = []
        for i, low, high in total.limits:
            free = total.function.free_symbols
            if self.causal and i in (s, r) and t in free:
                high = t
            elif self.causal and i == t and s in free:
                low = s
            limits.append((i, low, high))
        return tuple(limits)

    def summed(self, target, rule, note) -> list:
        """target = rule: each sum of the rule a local accumulator the loops add its terms to,
        then one write of the target (its transcript line, with the whole sums in its formula)."""
        statements, accumulators = [], {}
        for k, total in enumerate(sorted(rule.atoms(sp.Sum), key=sp.srepr)):
            acc = local(f"acc{k}" if k else "acc")
            loop = (Accumulate(acc, self.named(total.function)),)
            for i, low, high in reversed(self.masked(total)):
                low, stop = sp.sympify(low).xreplace(self.sizes), (high + 1).xreplace(self.sizes)
                loop = (Loop(i, stop, loop, start=low if not low.is_Integer else int(low)),)
            statements += [Let(acc, sp.Integer(0)), *loop]
            accumulators[total] = acc
        return statements + [Let(target, self.written(rule.xreplace(accumulators)), note=note)]

    def written(self, value):
        """A rule over the kernel's arrays, the 1/sqrt(dk) scale written as a division, as the
        derivation writes it."""
        if isinstance(value, sp.Mul) and any(isinstance(f, sp.Pow) and f.exp == -sp.S.Half for f in value.args):
            (root,) = [f for f in value.args if isinstance(f, sp.Pow) and f.exp == -sp.S.Half]
            return ratio(self.named(value / root), sp.sqrt(self.named(root.base)))
        return self.named(value)

    def product_summed(self, target, rule, note, read=None, loops=False) -> list:
        """target = rule where a matrix product computed its sum: the kernel reads ``read``, the
        product's element, in the sum's place (None: the product wrote the target itself); the
        transcript runs the sums. ``loops``: no product, the sums as loops for both."""
        means = self.summed(target, rule, note)
        if loops:
            return means
        if read is None:
            return [Summed(target, target, tuple(means))]
        (total,) = rule.atoms(sp.Sum)
        return [Summed(target, self.written(rule.xreplace({total: read})), tuple(means))]
