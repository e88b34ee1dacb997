"""A multi-head self-attention block, as one sublayer of the original Transformer: projections
with biases, H heads of scaled dot-product attention, their concatenation projected back, a
residual connection and layer normalisation of each token (post-norm).

A sequence enters as (T, D) per example, the kernels' X as an (N, T*D) array read X[n, t, d].
With Wq, Wk, Wv, Wo (D x D) and their biases, head h reading columns h*dh .. h*dh + dh - 1
(dh = D/H) of the queries, keys and values:

    Q = x Wq + bq,  K = x Wk + bk,  V = x Wv + bv                     (every token, all heads at once)
    S[n,h,t,s] = sum_a Q[n,t,h dh + a] K[n,s,h dh + a] / sqrt(dh)     (head h's scores)
    P[n,h,t,:] = softmax(S[n,h,t,:])  (row maximum subtracted),  O[n,t,h dh + c] = sum_s P[n,h,t,s] V[n,s,h dh + c]
    R = x + O Wo + bo                                                  (the residual)
    y[n,t,:] = g (R[n,t,:] - mean) / sqrt(var + eps) + b               (layer norm of each token, eps 1e-5)

``causal-mha`` masks the future in every head. Each part's rules come from the family that
derives them alone: the head's from ``attention.head_rules`` (the softmax Jacobian, the scale),
the projections' from ``attention.projection_rules``, layer norm's from the normalisation
derivation; SymPy derives the output projection and the residual here. The lowering reuses
attention's and layer norm's statement builders, head by head and token by token.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import sympy as sp

from ..errors import SympropError
from ..ir import Comment, Let, Loop, MatrixProduct, Ones, Transposed, index, local
from ..text import tr
from .attention import (CAUSAL_NOTE, D, DK, DV, T, _Arrays, _arrays, _indices, _vjp, head_backward, head_buffers,
                        head_forward, head_rules, input_gradient, projection_rules, projections_backward,
                        projections_forward, score_products)
from .base import N, Derivation, Op, Product, Step, fresh_name, positive_sizes, weight_products
from .norm import EPS, Rows, normalisation_backward, normalisation_derivation, normalisation_forward

DH = sp.Symbol("d_h", integer=True, positive=True)  # one head's width, D/H
NORM_ROLES = ("s", "xhat", "y")  # layer norm's forward values in the block's derivation


def _residual_rules() -> tuple[sp.Basic, sp.Basic, dict, list, list]:
    """R = x + O Wo + bo, the heads' concatenated output projected back and added to the input:
    its forward rule, the contraction sum dR * R (x's gradient reads it: the residual path), and
    the output projection's backward rules with their steps."""
    n, t, s, r, d, a, c = _indices()
    i, u, e, b, j = sp.symbols("i u e b j", integer=True)
    A = _arrays()
    x, O, Wo, bo, R, dR = A["x"], A["O"], *(sp.IndexedBase(k) for k in ("Wo", "bo", "R", "dR"))
    rule = x[n, t, j] + sp.Sum(O[n, t, c] * Wo[c, j], (c, 0, D - 1)) + bo[j]
    contraction = sp.Sum(dR[n, t, j] * rule, (n, 0, N - 1), (t, 0, T - 1), (j, 0, D - 1))
    backward = {"dO": _vjp(contraction, O[i, u, e], {i: n, u: t, e: c}),
                "dWo": _vjp(contraction, Wo[e, b], {e: c, b: j}),
                "dbo": _vjp(contraction, bo[b], {b: j})}
    forward_steps = [Step("forward: the residual", R[n, t, j], rule,
                          "the heads' outputs, concatenated, projected by Wo plus bo, added to the input token")]
    backward_steps = [
        Step("differentiate sum dR * R by O[n,t,c]", A["dO"][n, t, c], backward["dO"],
             "the residual's gradient carried back through Wo to every head's output"),
        Step("differentiate by Wo[c,j]", sp.IndexedBase("dWo")[c, j], backward["dWo"],
             "a shared weight: summed over the batch and the tokens"),
        Step("differentiate by bo[j]", sp.IndexedBase("dbo")[j], backward["dbo"], "likewise"),
    ]
    return rule, contraction, backward, forward_steps, backward_steps


@dataclass(frozen=True)
class MultiHeadAttention(Op):
    """mha(D, H, T): multi-head self-attention over T tokens of width D, then the residual and
    layer norm; gives (T, D) again, so blocks stack."""

    value_stem = "y"  # y1: the block's normalised output
    starts_layer = True  # its parameters Wq1, bq1, ..., Wo1, bo1, scale1, shift1 are layer 1's
    layer_kernels = False  # its tokens T are fixed by its arguments: compiled inside networks only

    name: str
    summary: str
    causal: bool = False
    inputs: tuple[str, ...] = ("x", "Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo", "g", "b")

    def parse_args(self, inner, where):
        width, heads, tokens = positive_sizes(inner, (3,), where, f"{self.name} needs three positive sizes: the token "
                                              f"width D, the heads H and the tokens T, e.g. {self.name}(4,2,3)")
        if width % heads:
            raise SympropError(f"{where}: the width {width} does not split into {heads} heads "
                               f"(D must be a multiple of H, e.g. {self.name}({heads * max(1, width // heads)},{heads},{tokens}))")
        return width, heads, tokens

    def input_width(self, args):
        width, _, tokens = args
        return (tokens, width)

    def shape_problem(self, args, shape):
        width, _, tokens = args
        if shape != (tokens, width):
            return f"takes sequences of {tokens} tokens of {width} inputs, shape {(tokens, width)}; got {shape}"
        return None

    def output_width(self, args, shape):
        width, _, tokens = args
        return (tokens, width)  # the residual keeps the width: blocks stack

    def param_shapes(self, args, width):
        size = args[0]
        return [(role, (size, size) if role.startswith("W") else (size,)) for role in self.inputs[1:]]

    def step_products(self, args, shape_in, shape_out, batch, first):
        """The Q, K and V projections (forward, dW, dx), every token at once; each head's
        attention products per example (the heads' widths add up to D); the output
        projection per example forward, its dO and dW every token at once."""
        width, heads, tokens = args
        rows = batch * tokens
        projections = [product for weight in ("Wq", "Wk", "Wv") for product in weight_products(rows, width, width, first, weight)]
        output = [Product("O Wo", tokens, width, width, count=batch, shared=("right",)),
                  *weight_products(rows, width, width, False, "Wo")[1:]]
        return [*projections, *score_products(tokens, width // heads, width // heads, batch * heads), *output]

    def param_names(self, roles, layer, position, taken):
        """Wq1, bq1, ... as attention names its projections; layer norm's gain and bias scale1 and
        shift1, as layernorm names them (never an affine layer's b1)."""
        stems = {"g": "scale", "b": "shift"}
        return super().param_names([r for r in roles if r not in stems], layer, position, taken) | {
            role: fresh_name(f"{stems[role]}{layer}", taken) for role in roles if role in stems}

    def derive(self) -> Derivation:
        residual, from_residual, residual_backward, residual_forward_steps, residual_backward_steps = _residual_rules()
        projections = projection_rules((D, D, D), bias=True, also_reads_x=from_residual)
        head = head_rules(DH, DH)
        norm = normalisation_derivation(self.name, self.summary, "layer")
        norm_steps = [dataclasses.replace(step, title=f"layer norm of each token: {step.title}") for step in norm.steps]
        conventions = ["tokens count from 0 to T-1: token t reads X[n, t, :]; t is a query, s a key",
                       "head h = 0..H-1 reads columns h*d_h .. h*d_h + d_h - 1 of Q, K and V and writes those of O "
                       "(d_h = D/H); its rules are one head's, S[n,t,s] and P[n,t,s] being head h's own",
                       "layer norm's vector x is one token's residual R[n,t,:], F = D features; its dx is dR"]
        if self.causal:
            conventions.append(CAUSAL_NOTE)
        # layer norm's dx is the residual's gradient dR
        backward = {"dR": norm.backward["dx"], "dg": norm.backward["dg"], "db": norm.backward["db"],
                    **residual_backward, **head.backward, **projections.backward}
        return Derivation(
            self.name, self.summary, self.inputs,
            {**projections.forward, **head.forward, "R": residual, **{k: norm.forward[k] for k in NORM_ROLES}},
            backward, ("Q", "K", "V", "P", "O", "xhat", "s"),
            [*projections.forward_steps, *head.forward_steps, *residual_forward_steps, *norm_steps,
             *residual_backward_steps, *head.backward_steps, *projections.backward_steps],
            conventions, ["the row maximum of the scores is subtracted before exp: no overflow",
                          *norm.stability], {**backward, **head.raw}, named_sums=norm.named_sums)

    def lower(self, lowering, use):
        """Per example: the projections, each head's rows (attention's statements, the head's
        columns picked by the head index), the residual; then layer norm of each token
        (layernorm's statements). Back in the reverse order, then the shared parameters'
        gradients summed over the batch and the tokens."""
        width, heads, tokens = use.args
        dh, layer, source, params = width // heads, lowering.names.layer, lowering.values[-1], lowering.names.params
        lowering.params += [(params[role], shape) for role, shape in self.param_shapes(use.args, None)]
        lowering.scales.append(params["g"])
        out = lowering.buffer(lowering.names.value, (N, tokens * width))
        names = head_buffers(lowering, {"Q": (tokens, width), "K": (tokens, width), "V": (tokens, width),
                                        "S": (heads, tokens, tokens), "P": (heads, tokens, tokens),
                                        "O": (tokens, width), "R": (tokens, width)})
        # layer norm's arrays; its s = sqrt(var + eps) is called std1, never to be read as the scores S1
        statistics = {"xhat": ("xhat", (N, tokens, width)), "s": ("std", (N, tokens)), "mean": ("mean", (N, tokens)),
                      "var": ("var", (N, tokens))}
        statistics = {role: lowering.buffer(f"{stem}{layer}", shape) for role, (stem, shape) in statistics.items()}
        lowering.scratch += list(statistics.values())
        norm_arrays = {"x": names["R"], "y": out, "g": params["g"], "b": params["b"], **statistics}
        arrays = _Arrays({**names, **params, "x": source}, {"x": width},
                         {D: width, DH: dh, DK: dh, DV: dh, T: tokens}, self.causal)
        h = index("h")
        each_head = dataclasses.replace(arrays, head=h, head_width=dh)
        d = lowering.derivation(self)
        norm = dataclasses.replace(d, forward={k: d.forward[k] for k in NORM_ROLES},
                                   backward={"dx": d.backward["dR"], "dg": d.backward["dg"], "db": d.backward["db"]})
        n, t, s, r, dd, a, c = _indices()
        j = index("j")
        what = f"layer {use.position}: {use.text}"
        widths = {"Q": width, "K": width, "V": width}
        epsilon = lowering.show(local(f"eps{use.position}"), f"eps{use.position}")  # not the optimiser's eps
        rows = Rows(False, width, tokens, frozenset({out, f"d{out}"}))  # each token's D features
        mask = ", causal: token t sees s <= t" if self.causal else ""
        Wo, bo = params["Wo"], params["bo"]
        residual = (MatrixProduct(arrays.matrix("R", n), arrays.matrix("O", n), sp.Symbol(Wo), comment=f"O {Wo}"),
                    Loop(t, tokens, (Loop(j, width, tuple(arrays.product_summed(arrays.at("R", n, t, j), d.forward["R"], tr(
                        f"the residual: token t plus its heads' outputs projected by {Wo}, plus {bo}",
                        f"残差：词元 t 加上其各头输出经 {Wo} 投影再加 {bo}"), arrays.at("R", n, t, j)))),)))
        products, project = projections_forward(arrays, d, tokens, widths, use.text)
        lowering.forward += [
            Comment(f"{what} ({tokens} tokens of {width}, {heads} heads of {dh}{mask}; residual, layer norm)"), *products,
            Loop(n, N, (*project, Loop(h, heads, tuple(head_forward(lowering, each_head, d, tokens, dh, dh))), *residual)),
            Let(epsilon, sp.Float(EPS), note=tr(f"epsilon of {use.text}'s layer norm", f"{use.text} 层归一化的 epsilon")),
            *normalisation_forward(norm, False, width, epsilon, norm_arrays, text=use.text, rows=rows)]

        grads = {"dy": f"d{out}", "dx": f"d{names['R']}", "dg": lowering.buffer(f"d{params['g']}", (width,)),
                 "db": lowering.buffer(f"d{params['b']}", (width,))}
        for name in d.named_sums:  # the two sums of layer norm's three-term rule, per token
            lowering.show(local(name), f"{name}{layer}", n, t)
        dWo, dbo = lowering.buffer(f"d{Wo}", (width, width)), lowering.buffer(f"d{bo}", (width,))
        dR = arrays.every_token("dR", width)
        shared = tr("is shared by every token: summed over the batch and the tokens", "被每个词元共享：对批量和各词元求和")
        backward = [
            Comment(f"{what}: back through layer norm, the residual, the heads and the projections"),
            *normalisation_backward(norm, False, width, norm_arrays | grads, use.text, rows),
            MatrixProduct(arrays.every_token("dO", width), dR, Transposed(sp.Symbol(Wo)),
                          comment=f"dR {Wo}^T, every token of every example"),
            Loop(n, N, (Loop(t, tokens, (Loop(c, width, tuple(arrays.product_summed(arrays.at("dO", n, t, c), d.backward["dO"], tr(
                f"the heads' outputs' gradient: the residual's gradient carried back through {Wo}",
                f"各头输出的梯度：残差的梯度经 {Wo} 传回")))),)),)),
            MatrixProduct(sp.Symbol(dWo), Transposed(arrays.every_token("O", width)), dR,
                          comment=f"dL/d{Wo} = O^T dR, every token of every example"),
            Loop(c, width, (Loop(j, width, tuple(arrays.product_summed(sp.IndexedBase(dWo)[c, j], d.backward["dWo"], tr(
                f"{Wo} {shared.en}: the heads' outputs times the residual's gradient", f"{Wo} {shared.zh}")))),)),
            MatrixProduct(sp.Symbol(dbo), Ones(N * tokens), dR, comment=f"dL/d{bo}: every token's"),
            Loop(j, width, tuple(arrays.product_summed(sp.IndexedBase(dbo)[j], d.backward["dbo"], tr(
                f"{bo} {shared.en}: the residual's gradient", f"{bo} {shared.zh}")))),
            Loop(n, N, (Loop(h, heads, tuple(head_backward(lowering, each_head, d, tokens, dh, dh))),)),
            *projections_backward(lowering, arrays, d, width, widths)]
        if source != "X" or lowering.input_gradient:  # a step never needs the gradient of the input data X
            backward += input_gradient(lowering, arrays, d, tokens, width, widths, tr(
                "token t feeds its query, key and value and, through the residual, the output directly",
                "词元 t 参与其查询、键和值，并经残差直接参与输出"))
        lowering.prepend_backward(backward)
        lowering.values.append(out)
        lowering.widths.append(tokens * width)
