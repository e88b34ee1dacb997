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

import functools
from dataclasses import dataclass, field

import sympy as sp

from ..indexcalc import pull_constants, resolve
from ..ir import (Accumulate, Columns, Comment, Let, Loop, MatrixProduct, Ones, Part, Rows, Summed, Transposed,
                  as_written, difference, gradient_comment, gradient_let, local, ratio)
from ..text import tr
from .base import N, Derivation, Label, Op, Product, Step, positive_sizes, weight_products

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


def score_products(tokens: int, keys: int, values: int, count: int) -> list[Product]:
    """One attention head's products, ``count`` times (per example, or per example and head):
    S = Q K^T and O = P V forward; dV = P^T dO, dP = dO V^T, dQ = dS K and dK = dS^T Q back."""
    return [Product("Q K^T", tokens, keys, tokens, count=count, right_transposed=True),
            Product("P V", tokens, tokens, values, count=count),
            Product("dV = P^T dO", tokens, tokens, values, count=count, left_transposed=True),
            Product("dP = dO V^T", tokens, values, tokens, count=count, right_transposed=True),
            Product("dQ = dS K", tokens, tokens, keys, count=count),
            Product("dK = dS^T Q", tokens, tokens, keys, count=count, left_transposed=True)]

@dataclass(frozen=True)
class Rules:
    """Part of a derivation: forward formulas, backward rules and the steps that show them (the
    forward steps first in a derivation, the backward steps later), so one head and a block of
    heads put the same parts together."""

    forward: dict
    backward: dict
    forward_steps: list
    backward_steps: list
    raw: dict = field(default_factory=dict)


def head_rules(keys, values) -> Rules:
    """One head from its queries, keys and values on: the scores, their softmax and the output,
    and back through them (the softmax Jacobian row by row). ``keys`` and ``values`` are the
    head's widths (dk and dv of one head; D/H each in a block of H heads)."""
    n, t, s, r, d, a, c = _indices()
    i, u, w, e, b = sp.symbols("i u w e b", integer=True)  # the element each rule is differentiated by
    A = _arrays()
    Q, K, V, S, P, O, dO, dP, dS = (A[k] for k in ("Q", "K", "V", "S", "P", "O", "dO", "dP", "dS"))
    rows, tokens = (n, 0, N - 1), (t, 0, T - 1)
    score = sp.Sum(Q[n, t, a] * K[n, s, a], (a, 0, keys - 1)) / sp.sqrt(keys)
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
    from_out = sp.Sum(dO[n, t, c] * out, rows, tokens, (c, 0, values - 1))
    from_scores = sp.Sum(dS[n, t, s] * score, rows, tokens, (s, 0, T - 1))
    backward = {
        "dP": _vjp(from_out, P[i, u, w], {i: n, u: t, w: s}),
        "dV": _vjp(from_out, V[i, w, e], {i: n, w: s, e: c}),
        "dS": dS_rule,
        "dQ": _vjp(from_scores, Q[i, u, b], {i: n, u: t, b: a}),
        "dK": _vjp(from_scores, K[i, w, b], {i: n, w: s, b: a}),
    }
    forward_steps = [
        Step("forward: the scores", S[n, t, s], score, f"query t dotted with key s, scaled by 1/sqrt({keys})"),
        Step("forward: the attention weights", P[n, t, s], weight, "softmax over row t of the scores"),
        Step("stable forward", P[n, t, s], stable,
             "Smax[n,t] = max_r S[n,t,r] subtracted before exp: no exponent is positive"),
        Step("forward: the output", O[n, t, c], out, "the values weighted by row t's attention weights"),
    ]
    backward_steps = [
        Step("the softmax Jacobian (SymPy's diff, deltas sifted)",
             Label("dP[n,t,r]/dS[n,t,s]", r"\frac{\partial P_{n,t,r}}{\partial S_{n,t,s}}"), jacobian_named,
             "P[r] (delta(r,s) - P[s]): every weight of the row moves when one score moves, so it is not "
             "elementwise"),
        Step("chain rule through the softmax of row t", dS[n, t, s], softmax_raw, "dS[s] = sum_r dP[r] dP[r]/dS[s]"),
        Step("name the weights", dS[n, t, s], dS_rule, "exp(S[n,t,s]) / sum_r exp(S[n,t,r]) = P[n,t,s]"),
        Step("differentiate sum dO * O by P[n,t,s]", dP[n, t, s], backward["dP"], "the output gradient dotted "
             "with value s"),
        Step("differentiate sum dO * O by V[n,s,c]", A["dV"][n, s, c], backward["dV"],
             "summed over the queries that weigh value s"),
        Step("differentiate sum dS * S by Q[n,t,a]", A["dQ"][n, t, a], backward["dQ"], f"the keys, scaled by 1/sqrt({keys})"),
        Step("differentiate sum dS * S by K[n,s,a]", A["dK"][n, s, a], backward["dK"],
             f"the queries, scaled by 1/sqrt({keys}), summed over the queries"),
    ]
    return Rules({"S": score, "P": stable, "O": out}, backward, forward_steps, backward_steps,
                 {"dS": softmax_raw, "dP[n,t,r]/dS[n,t,s]": jacobian_named})


BIAS_NOTES = {"Q": "a shared bias: the gradients summed over the batch and the tokens",
              "K": "likewise; it comes to zero, as each row of dS sums to zero (the softmax ignores a shift of "
                   "its row, and q . bk shifts a row's scores alike)",
              "V": "likewise"}


def projection_rules(widths, bias: bool = False, also_reads_x=0) -> Rules:
    """The queries, keys and values Q = x Wq (+ bq), K = x Wk (+ bk), V = x Wv (+ bv) of every
    token, ``widths`` their numbers of columns, and back: each shared weight's gradient summed
    over the batch and the tokens, x's over its three paths (and whatever ``also_reads_x``, a
    contraction sum dY * Y of another stage that reads x, adds: a block's residual)."""
    n, t, s, r, d, a, c = _indices()
    i, u, e, b = sp.symbols("i u e b", integer=True)
    A = _arrays()
    x = A["x"]
    rows, tokens = (n, 0, N - 1), (t, 0, T - 1)
    columns = dict(zip(("Q", "K", "V"), ((a, widths[0]), (a, widths[1]), (c, widths[2]))))
    forward, contraction = {}, also_reads_x
    for role, (k, width) in columns.items():
        rule = sp.Sum(x[n, t, d] * A[f"W{role.lower()}"][d, k], (d, 0, D - 1))
        rule += sp.IndexedBase(f"b{role.lower()}")[k] if bias else 0
        forward[role] = rule
        contraction += sp.Sum(A[f"d{role}"][n, t, k] * rule, rows, tokens, (k, 0, width - 1))
    backward = {}
    for role, (k, _) in columns.items():
        backward[f"dW{role.lower()}"] = _vjp(contraction, A[f"W{role.lower()}"][e, b], {e: d, b: k})
    if bias:
        for role, (k, _) in columns.items():
            backward[f"db{role.lower()}"] = _vjp(contraction, sp.IndexedBase(f"b{role.lower()}")[b], {b: k})
    backward["dx"] = _vjp(contraction, x[i, u, e], {i: n, u: t, e: d})
    plus = " plus bq" if bias else ""
    forward_steps = [
        Step("forward: the query of token t", A["Q"][n, t, a], forward["Q"], f"x_t times Wq{plus}"),
        Step("forward: the key of token s", A["K"][n, s, a], forward["K"].xreplace({t: s}),
             f"x_s times Wk{plus.replace('q', 'k')}"),
        Step("forward: the value of token s", A["V"][n, s, c], forward["V"].xreplace({t: s}),
             f"x_s times Wv{plus.replace('q', 'v')}"),
    ]
    backward_steps = [
        Step("differentiate by Wq[d,a]", sp.IndexedBase("dWq")[d, a], backward["dWq"],
             "a shared weight: summed over the batch and the tokens"),
        Step("differentiate by Wk[d,a]", sp.IndexedBase("dWk")[d, a], backward["dWk"], "likewise"),
        Step("differentiate by Wv[d,c]", sp.IndexedBase("dWv")[d, c], backward["dWv"], "likewise"),
    ]
    if bias:
        backward_steps += [Step(f"differentiate by b{role.lower()}[{k}]", sp.IndexedBase(f"db{role.lower()}")[k],
                                backward[f"db{role.lower()}"], BIAS_NOTES[role])
                           for role, (k, _) in columns.items()]
    backward_steps.append(Step("differentiate by x[n,t,d]", sp.IndexedBase("dx")[n, t, d], backward["dx"],
                               "token t feeds its query, its key and its value: three paths"
                               + (", and the residual" if also_reads_x else "")))
    return Rules({"Q": forward["Q"], "K": forward["K"].xreplace({t: s}), "V": forward["V"].xreplace({t: s})},
                 backward, forward_steps, backward_steps)


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

    def step_products(self, args, shape_in, shape_out, batch, first):
        """The three projections (forward, dW, dx), every token at once; per example Q K^T and
        P V forward, dV = P^T dO, dP = dO V^T, dQ = dS K and dK = dS^T Q back."""
        inputs, keys, values, tokens = args
        rows = batch * tokens
        return [*weight_products(rows, inputs, keys, first, "Wq"), *weight_products(rows, inputs, keys, first, "Wk"),
                *weight_products(rows, inputs, values, first, "Wv"),
                *score_products(tokens, keys, values, batch)]

    def derive(self) -> Derivation:
        projections, head = projection_rules((DK, DK, DV)), head_rules(DK, DV)
        conventions = ["tokens count from 0 to T-1: token t reads X[n, t, :]; t is a query, s a key"]
        if self.causal:
            conventions.append(CAUSAL_NOTE)
        return Derivation(self.name, self.summary, self.inputs, {**projections.forward, **head.forward},
                          {**head.backward, **projections.backward}, ("Q", "K", "V", "P"),
                          [*projections.forward_steps, *head.forward_steps, *head.backward_steps,
                           *projections.backward_steps], conventions,
                          ["the row maximum of the scores is subtracted before exp: no overflow"],
                          {**head.backward, **projections.backward, **head.raw})

    def lower(self, lowering, use):
        """The projections of every token, then per example the scores, each query's softmax
        (row maximum subtracted) and the output. Back: the values' and weights' gradients, the
        softmax Jacobian row by row, the queries' and keys' gradients; then each projection's
        gradient summed over the batch and the tokens. The sums are matrix products in the
        kernel and the derived sums in the transcript."""
        inputs, keys, values, tokens = use.args
        source, params = lowering.values[-1], lowering.names.params
        widths = {"Q": keys, "K": keys, "V": values}
        lowering.params += [(params[f"W{role.lower()}"], (inputs, width)) for role, width in widths.items()]
        out = lowering.buffer(lowering.names.value, (N, tokens * values))
        names = head_buffers(lowering, {"Q": (tokens, keys), "K": (tokens, keys), "V": (tokens, values),
                                        "S": (tokens, tokens), "P": (tokens, tokens)})
        arrays = _Arrays({**names, **params, "x": source, "O": out}, {"x": inputs, "O": values},
                         {D: inputs, DK: keys, DV: values, T: tokens}, self.causal)
        d = lowering.derivation(self)
        n, t, *_ = _indices()
        what = f"layer {use.position}: {use.text}"
        mask = ", causal: token t sees s <= t" if self.causal else ""
        products, project = projections_forward(arrays, d, tokens, widths, use.text)
        lowering.forward += [Comment(f"{what} ({tokens} tokens of {inputs} -> {values}, keys {keys}{mask})"), *products,
                             Loop(n, N, (*project, *head_forward(lowering, arrays, d, tokens, keys, values)))]
        backward = [Comment(f"{what}: back through the output, the softmax and the scores"),
                    Loop(n, N, tuple(head_backward(lowering, arrays, d, tokens, keys, values))),
                    *projections_backward(lowering, arrays, d, inputs, widths)]
        if source != "X" or lowering.input_gradient:  # a step never needs the gradient of the input data X
            backward += input_gradient(lowering, arrays, d, tokens, inputs, widths, tr(
                f"token t feeds its query, key and value: their gradients carried back through "
                f"{params['Wq']}, {params['Wk']}, {params['Wv']}",
                f"词元 t 参与其查询、键和值：它们的梯度经 {params['Wq']}、{params['Wk']}、{params['Wv']} 传回"))
        lowering.prepend_backward(backward)
        lowering.values.append(out)
        lowering.widths.append(tokens * values)


# ---- the pieces of a lowering, shared by one head (attention) and a block of heads (mha) ----
def head_buffers(lowering, shapes: dict) -> dict:
    """role -> the layer's (N, ...) scratch buffer (Q1, S1 ...) and its gradient's buffer (dQ1)."""
    names = {role: lowering.buffer(f"{role}{lowering.names.layer}", (N, *shape)) for role, shape in shapes.items()}
    lowering.scratch += list(names.values())
    for role, shape in shapes.items():
        lowering.buffer(f"d{names[role]}", (N, *shape))
    return names


def projections_forward(arrays, d, tokens, widths: dict, text: str) -> tuple[list, list]:
    """The queries, keys and values: (x W of every token of every example at once, three
    products; example n's statements, the derived rules with the products read, the biases
    added)."""
    n, t, s, r, dd, a, c = _indices()
    Wq, Wk, Wv = (arrays.names[f"W{role.lower()}"] for role in "QKV")
    plus = {role: f" plus {arrays.names[f'b{role.lower()}']}" if f"b{role.lower()}" in arrays.names else ""
            for role in "QKV"}
    notes = {"Q": tr(f"{text}: the query of token t, x_t times {Wq}{plus['Q']}",
                     f"{text}：词元 t 的查询向量，x_t 乘 {Wq}{plus['Q'].replace(' plus ', ' 加 ')}"),
             "K": tr(f"the key of token t, x_t times {Wk}{plus['K']}",
                     f"词元 t 的键向量，x_t 乘 {Wk}{plus['K'].replace(' plus ', ' 加 ')}"),
             "V": tr(f"the value of token t, x_t times {Wv}{plus['V']}",
                     f"词元 t 的值向量，x_t 乘 {Wv}{plus['V'].replace(' plus ', ' 加 ')}")}
    rules = {"Q": d.forward["Q"], "K": d.forward["K"].xreplace({s: t}), "V": d.forward["V"].xreplace({s: t, c: a})}
    x = arrays.every_token("x", arrays.flat["x"])
    products = [MatrixProduct(arrays.every_token(role, widths[role]), x,
                              sp.Symbol(arrays.names[f"W{role.lower()}"]),
                              comment=f"{role} = x {arrays.names[f'W{role.lower()}']}, every token of every example")
                for role in "QKV"]
    return products, [Loop(t, tokens, (Loop(a, widths[role], tuple(arrays.product_summed(
        arrays.at(role, n, t, a), rules[role], notes[role], arrays.at(role, n, t, a)))),)) for role in "QKV"]


def _row_locals(lowering, arrays):
    """The locals of one query's row a transcript shows: its scores' maximum, its softmax's
    denominator and (back) its sum of P times dP, indexed as the row (n, t; a block's n, h, t)."""
    n, t, *_ = _indices()
    row = (n, t) if arrays.head is None else (n, arrays.head, t)
    return tuple(lowering.show(local(name), f"{arrays.names[role]}{suffix}", *row) for name, role, suffix in (
        ("smax", "S", "max"), ("total", "S", "sum"), ("dot", "P", "dot")))


def head_forward(lowering, arrays, d, tokens, keys, values) -> list:
    """Example n's head: the scores Q K^T, each query t's row (its scores scaled, their softmax,
    the row maximum subtracted), then the outputs P V. With the causal mask the weights above
    the diagonal are never written, so the output's sums stay loops."""
    n, t, s, r, dd, a, c = _indices()
    smax, total, _ = _row_locals(lowering, arrays)
    keys_of_t = t + 1 if arrays.causal else tokens  # the keys query t sees
    at = arrays.at
    scale = tr(f"the score of query t against key s: their dot product divided by sqrt({keys})",
               f"查询 t 对键 s 的分数：二者点积除以 sqrt({keys})")
    matrix, causal = functools.partial(arrays.matrix, n=n), arrays.causal
    row = [
        Loop(s, keys_of_t, tuple(arrays.product_summed(at("S", n, t, s), d.forward["S"], scale, at("S", n, t, s)))),
        Let(smax, at("S", n, t, 0), note=tr("the row maximum of the scores: subtracted before exp, so no exponent "
                                            "is positive", "分数的行最大值：exp 之前减去，使指数都不为正")),
        Loop(s, keys_of_t, (Let(smax, as_written(sp.Max, smax, at("S", n, t, s))),), start=1),
        # the kernel computes each exponential once, into P's row, in a loop of its own (LLVM
        # vectorises it; inside the ordered sum it could not), then sums and divides: the same
        # numbers in the same order. The transcript shows the sum and the weights as written.
        Loop(s, keys_of_t, (Summed(at("P", n, t, s), sp.exp(difference(at("S", n, t, s), smax)), means=()),)),
        Let(total, sp.Integer(0), note=tr("the softmax's denominator: the row's exponentials summed",
                                          "softmax 的分母：该行各指数之和")),
        Loop(r, keys_of_t, (Summed(total, as_written(sp.Add, total, at("P", n, t, r)), means=(
            Accumulate(total, sp.exp(difference(at("S", n, t, r), smax))),)),)),
        Loop(s, keys_of_t, (Summed(at("P", n, t, s), ratio(at("P", n, t, s), total), means=(
            Let(at("P", n, t, s), ratio(sp.exp(difference(at("S", n, t, s), smax)), total), note=tr(
                "the attention weight of query t on key s: softmax of the row, its maximum subtracted",
                "查询 t 对键 s 的注意力权重：该行的 softmax（减去行最大值）")),)),)),
        Loop(c, values, tuple(arrays.product_summed(at("O", n, t, c), d.forward["O"], tr(
            "the output of token t: the values weighted by its attention weights",
            "词元 t 的输出：以其注意力权重加权的值向量"), loops=causal))),
    ]
    return [arrays.product(matrix("S"), matrix("Q"), Transposed(matrix("K")), "Q K^T, each row scaled below"),
            Loop(t, tokens, tuple(row)),
            *([] if causal else [arrays.product(matrix("O"), matrix("P"), matrix("V"), "O = P V, after every row's weights")])]


def head_backward(lowering, arrays, d, tokens, keys, values) -> list:
    """Example n's head, back: the values' and the weights' gradients (P^T dO, dO V^T), the
    softmax Jacobian row by row, then the queries' and the keys' gradients (dS K, dS^T Q). With
    the causal mask P and dS are never written above the diagonal: the sums that read them as
    whole matrices stay loops."""
    n, t, s, r, dd, a, c = _indices()
    *_, dot = _row_locals(lowering, arrays)
    keys_of_t = t + 1 if arrays.causal else tokens
    at = arrays.at
    matrix, causal = functools.partial(arrays.matrix, n=n), arrays.causal
    return [
        *([] if causal else [arrays.product(matrix("dV"), Transposed(matrix("P")), matrix("dO"), "dL/dV = P^T dL/dO")]),
        arrays.product(matrix("dP"), matrix("dO"), Transposed(matrix("V")), "dL/dP = dL/dO V^T"),
        Loop(s, tokens, (Loop(c, values, tuple(arrays.product_summed(at("dV", n, s, c), d.backward["dV"], tr(
            "value s's gradient: the weights on it times the outputs' gradients, summed over the queries",
            "值向量 s 的梯度：各查询对它的权重乘以输出的梯度，对查询求和"), loops=causal))),)),
        Loop(t, tokens, (
            Loop(s, keys_of_t, tuple(arrays.product_summed(at("dP", n, t, s), d.backward["dP"], tr(
                "the attention weight's gradient: the output's gradient dotted with value s",
                "注意力权重的梯度：输出的梯度与值向量 s 的点积")))),
            *arrays.summed(dot, _the_sum(d.backward["dS"]), tr(
                "the row's sum of P times dP: every weight of the row moves when one score moves",
                "该行 P 乘 dP 之和：一个分数变化时，该行所有权重都随之变化")),
            Loop(s, keys_of_t, (gradient_let(at("dS", n, t, s), arrays.named(d.backward["dS"]).xreplace(
                {arrays.named(_the_sum(d.backward["dS"])): dot}), note=tr(
                "the softmax Jacobian, not elementwise: P times (dP minus the row's sum of P dP)",
                "softmax 的雅可比矩阵（不是逐元素的）：P 乘以（dP 减去该行 P dP 之和）")),)),
        )),
        *([] if causal else [arrays.product(matrix("dQ"), matrix("dS"), matrix("K"), "dL/dQ = dL/dS K / sqrt(dk): the product, scaled below"),
                             arrays.product(matrix("dK"), Transposed(matrix("dS")), matrix("Q"), "dL/dK = dL/dS^T Q / sqrt(dk): the product, scaled below")]),
        Loop(t, tokens, (Loop(a, keys, tuple(arrays.product_summed(at("dQ", n, t, a), d.backward["dQ"], tr(
            f"query t's gradient: the scores' gradients times the keys, divided by sqrt({keys})",
            f"查询 t 的梯度：分数的梯度乘以键向量，再除以 sqrt({keys})"), at("dQ", n, t, a), loops=causal))),)),
        Loop(s, tokens, (Loop(a, keys, tuple(arrays.product_summed(at("dK", n, s, a), d.backward["dK"], tr(
            f"key s's gradient: the scores' gradients times the queries, divided by sqrt({keys})",
            f"键 s 的梯度：分数的梯度乘以查询向量，再除以 sqrt({keys})"), at("dK", n, s, a), loops=causal))),)),
    ]


def projections_backward(lowering, arrays, d, inputs, widths: dict) -> list:
    """Each projection's weight (and bias, where it has one) gradient: shared by every token,
    so summed over the batch and the tokens, x^T dQ (ones^T dQ) over every token at once."""
    n, t, s, r, dd, a, c = _indices()
    x, rows = arrays.every_token("x", inputs), N * arrays.sizes[T]
    statements = []
    for role, what_grad, what_zh in (("Q", "the query's gradient", "查询的梯度"), ("K", "the key's gradient", "键的梯度"),
                                     ("V", "the value's gradient", "值的梯度")):
        k = c if role == "V" else a
        W = arrays.names[f"W{role.lower()}"]
        dW = lowering.buffer(f"d{W}", (inputs, widths[role]))
        every = arrays.every_token(f"d{role}", widths[role])
        statements.append(MatrixProduct(sp.Symbol(dW), Transposed(x), every,
                                        comment=f"dL/d{W} = x^T d{arrays.names[role]}, every token of every example"))
        statements.append(Loop(dd, inputs, (Loop(k, widths[role], tuple(arrays.product_summed(
            sp.IndexedBase(dW)[dd, k], d.backward[f"dW{role.lower()}"], tr(
                f"{W} is shared by every token: x_t times {what_grad}, summed over the batch and the tokens",
                f"{W} 被每个词元共享：x_t 乘以{what_zh}，对批量和各词元求和")))),)))
        if f"b{role.lower()}" in arrays.names:
            b = arrays.names[f"b{role.lower()}"]
            db = lowering.buffer(f"d{b}", (widths[role],))
            statements.append(MatrixProduct(sp.Symbol(db), Ones(rows), every, comment=f"dL/d{b}: every token's"))
            statements.append(Loop(k, widths[role], tuple(arrays.product_summed(
                sp.IndexedBase(db)[k], d.backward[f"db{role.lower()}"], tr(
                    f"{b} is shared by every token: {what_grad} summed over the batch and the tokens",
                    f"{b} 被每个词元共享：{what_zh}对批量和各词元求和")))))
    return statements


def input_gradient(lowering, arrays, d, tokens, inputs, widths: dict, note) -> list:
    """dL/dx of every token, from the derived rule (the paths through which x reaches the loss):
    dQ Wq^T + dK Wk^T + dV Wv^T over every token at once, then what else the rule adds."""
    n, t, s, r, dd, a, c = _indices()
    source = arrays.names["x"]
    into = Rows(sp.Symbol(lowering.buffer(f"d{source}", (N, tokens * inputs))), inputs)
    Wq, Wk, Wv = (arrays.names[f"W{role.lower()}"] for role in "QKV")
    paths = [MatrixProduct(into, arrays.every_token(f"d{role}", widths[role]),
                           Transposed(sp.Symbol(arrays.names[f"W{role.lower()}"])), accumulate=role != "Q",
                           comment=f"dL/d{source}: back through {Wq}, {Wk} and {Wv}" if role == "Q" else "")
             for role in "QKV"]
    return [*paths, Loop(n, N, (Loop(t, tokens, (Loop(dd, inputs, tuple(arrays.product_summed(
        arrays.at("dx", n, t, dd), d.backward["dx"], note, arrays.at("dx", n, t, dd)))),)),))]


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
    """The derivation's arrays as the kernel's. ``names``: role -> the kernel's array (x: X,
    Q: Q1, Wq: Wq1 ...), its gradient d<array>; ``flat``: role -> width of the roles kept as
    flat sequences (x[n,t,d] is X[n, t*D + d]), the others (N, T, width) buffers. With the
    causal mask, sums over keys stop at the query and sums over queries start at the key.
    ``head``: in a block of heads, the head h whose rules these are: its queries, keys, values
    and outputs are columns h*dh .. h*dh + dh - 1 of the block's, its scores S[n,h,t,s] its own."""

    names: dict
    flat: dict
    sizes: dict
    causal: bool
    head: sp.Symbol | None = None
    head_width: int = 0

    def at(self, role, *indices):
        gradient = role not in self.names and role.startswith("d")
        stem = role[1:] if gradient else role
        indices = tuple(sp.sympify(i) for i in indices)
        if self.head is not None and stem in ("Q", "K", "V", "O"):
            n, t, column = indices
            indices = (n, t, self.head * self.head_width + column)
        elif self.head is not None and stem in ("S", "P"):
            indices = (indices[0], self.head, *indices[1:])
        name = f"d{self.names[stem]}" if gradient else self.names[stem]
        if stem in self.flat:
            n, t, e = indices
            return sp.IndexedBase(name)[n, t * self.flat[stem] + e]
        return sp.IndexedBase(name)[indices]

    def matrix(self, role, n):
        """Example n's matrix of a role (d<role>: its gradient) as a product's operand: a (T,
        width) sequence or the (T, T) scores; in a block of heads, head h's."""
        gradient = role not in self.names and role.startswith("d")
        stem = role[1:] if gradient else role
        array = Part(sp.Symbol(f"d{self.names[stem]}" if gradient else self.names[stem]), n)
        if stem in self.flat:
            array = Rows(array, self.flat[stem])
        if self.head is None:
            return array
        if stem in ("S", "P"):
            return Part(array, self.head)
        return Columns(array, self.head * self.head_width, self.head_width)

    def every_token(self, role, width):
        """The (N*T, width) matrix of a role's rows (d<role>: its gradient's), every token of every
        example."""
        gradient = role not in self.names and role.startswith("d")
        return Rows(sp.Symbol(f"d{self.names[role[1:]]}" if gradient else self.names[role]), width)

    def product(self, out, left, right, comment) -> MatrixProduct:
        """out = left right (a head's block of columns is written where it is)."""
        return MatrixProduct(out, left, right, comment=comment)

    def named(self, expr):
        """A rule over the derivation's arrays, over the kernel's (sizes as numbers)."""
        def rename(value):
            role = value.base.label.name
            known = role in self.names or (role.startswith("d") and role[1:] in self.names)
            return self.at(role, *value.indices) if known else value
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
        value = self.written(rule.xreplace(accumulators))
        return statements + [Let(target, value, comment=self.comment(target, rule), note=note)]

    def comment(self, target, rule) -> str:
        """A gradient's line says which partial derivative it is, a local (the row's sum of P dP)
        what it sums, from its rule; the forward's arrays need no comment."""
        local_or_gradient = isinstance(target, sp.Symbol) or target.base.label.name.startswith("d")
        return gradient_comment(target, self.named(rule)) if local_or_gradient else ""

    def written(self, value):
        """A rule over the kernel's arrays, the 1/sqrt(dk) scale written as a division, as the
        derivation writes it."""
        if isinstance(value, sp.Mul) and any(isinstance(f, sp.Pow) and f.exp == -sp.S.Half for f in value.args):
            (root,) = [f for f in value.args if isinstance(f, sp.Pow) and f.exp == -sp.S.Half]
            return ratio(self.named(value / root), sp.sqrt(self.named(root.base)))
        return self.named(value)

    def product_summed(self, target, rule, note, read=None, loops=False) -> list:
        """target = rule where matrix products computed its sums: the kernel reads ``read``, the
        products' element, in their place (None, or nothing else to add: the products wrote the
        target itself); the transcript runs the sums. ``loops``: no product, the sums as loops
        for both."""
        means = self.summed(target, rule, note)
        if loops:
            return means
        if read is None:
            return [Summed(target, target, tuple(means))]
        sums = rule.atoms(sp.Sum)
        # one sum (a score, scaled), or several added (x's paths): the products computed their total
        value = rule.xreplace({next(iter(sums)): read}) if len(sums) == 1 else read + rule - sp.Add(*sums)
        return [Summed(target, self.written(value), tuple(means), self.comment(target, rule))]
