"""Word embeddings: a lookup table whose gradient is a scatter-add.

``embedding(V,D[,T])`` reads T token ids per example (X is (N, T), each a whole number from 0
to V-1; T is 1 by default) and gives each id's row of the table W (V x D): D features for
T = 1 (which a sequence layer such as rnn(D,H,1) reads as one step: the same columns), else a
(T, D) sequence, as rnn(D,H,T) reads it. SymPy differentiates the lookup
Y[n,t,d] = W[x[n,t], d] by one element of the table: the Kronecker delta delta(v, x[n,t])
is left, so each row's gradient is the sum of the upstream gradients of the positions that
looked it up (a scatter-add), zero for a row no id picked.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..errors import SympropError
from ..indexcalc import resolve
from ..ir import Assignments, Call, Comment, Let, Loop, Token, array, index
from ..text import tr
from .base import N, Derivation, Label, Op, Step, positive_sizes

V, D, T = sp.symbols("V D T", integer=True, positive=True)  # table rows, width, ids per example


@dataclass(frozen=True)
class Embedding(Op):
    """Y[n, t, :] = W[x[n, t], :]: the row of the table each token id picks."""

    value_stem = "e"  # e1: the looked-up rows
    starts_layer = True  # its table is W1
    layer_kernels = False  # its ids per example are fixed by its arguments: compiled in networks only

    name: str
    summary: str
    inputs: tuple[str, ...] = ("x", "W")

    def parse_args(self, inner, where):
        args = positive_sizes(inner, (2, 3), where, f"{self.name} needs the vocabulary size, the width and optionally "
                              f"the token ids per example, e.g. {self.name}(10,4) or {self.name}(10,4,3)")
        return args if len(args) == 3 else (*args, 1)

    def format_args(self, args) -> str:
        return ",".join(map(str, args if args[2] != 1 else args[:2]))

    def input_width(self, args):
        return args[2]  # token ids per example

    def output_width(self, args, width):
        _, width_out, steps = args
        return width_out if steps == 1 else (steps, width_out)

    def param_shapes(self, args, width):
        return [("W", tuple(args[:2]))]

    def derive(self) -> Derivation:
        n, t, d, v, q = sp.symbols("n t d v q", integer=True)
        x, W, dY = sp.IndexedBase("x"), sp.IndexedBase("W"), sp.IndexedBase("dY")
        Y = W[x[n, t], d]
        L = sp.Sum(dY[n, t, d] * Y, (n, 0, N - 1), (t, 0, T - 1), (d, 0, D - 1))
        local = sp.diff(Y, W[v, q])
        dW = resolve(L.diff(W[v, q]))
        steps = [Step("forward", sp.IndexedBase("Y")[n, t, d], Y, "x[n,t] is a token id: the row of W it picks"),
                 Step("local partial", Label("dY[n,t,d]/dW[v,q]", r"\frac{\partial Y_{n,t,d}}{\partial W_{v,q}}"),
                      local, "SymPy's diff: 1 where the id is v and the column is q"),
                 Step("chain rule", Label("dL", "dL"), L, "dL = sum_{n,t,d} dY[n,t,d] * (change in Y[n,t,d])"),
                 Step("differentiate by W[v,q], sift the deltas", sp.IndexedBase("dW")[v, q], dW,
                      "a scatter-add: each position adds its upstream gradient to the row it looked up; a row no "
                      "id picked gets 0"),
                 Step("the ids", Label("dx", "dx"), sp.S.Zero, "token ids are data, not differentiable")]
        return Derivation(self.name, self.summary, self.inputs, {"Y": Y}, {"dW": dW}, ("x",), steps,
                          ["x[n,t] is a whole number from 0 to V-1 (a token id)"], [], {"dW": dW})

    def lower(self, lowering, use):
        """Forward: check the ids, then copy each id's row. Backward: zero the table's gradient,
        then add each position's upstream gradient to the row its id picked (the derived
        scatter-add)."""
        rows, width, steps = use.args
        source = lowering.values[-1]
        if source != "X":
            raise SympropError(f"{use.where}: {self.name} reads token ids from the data X: it must be the first layer")
        W = lowering.names.params["W"]
        lowering.params.append((W, (rows, width)))
        out = lowering.buffer(lowering.names.value, (N, steps * width))
        dW = lowering.buffer(f"d{W}", (rows, width))
        d = lowering.derivation(self)
        n, t, dd, v, q = (index(name) for name in ("n", "t", "d", "v", "q"))
        token = Token(sp.IndexedBase(source)[n, t])
        at = lambda name, *i: sp.IndexedBase(name)[i]  # noqa: E731
        looked_up = d.forward["Y"].xreplace({sp.IndexedBase("x")[n, t]: token}).replace(
            lambda e: isinstance(e, sp.Indexed) and e.base.label.name == "W", lambda e: at(W, *e.indices))
        lowering.forward += [
            Comment(f"layer {use.position}: {use.text} ({steps} token id{'s' if steps > 1 else ''} -> rows of {W})"),
            Call("_token_ids", (array(source), rows), f"every {source}[n, t] is a whole number from 0 to {rows - 1}",
                 (Comment("the transcript's ids are checked as it reads them"),)),
            Loop(n, N, (Loop(t, steps, (Loop(dd, width, (Let(at(out, n, t * width + dd), looked_up, note=tr(
                f"{use.text}: the row of {W} the token id picks", f"{use.text}：词元编号所选的 {W} 的行")),)),)),))]
        # the derived rule, sum_{n,t} delta(v, x[n,t]) dY[n,t,q]: each position's dY is added to
        # the row v = x[n,t] its id picked
        rule = d.backward["dW"].function
        (delta,) = (f for f in rule.args if isinstance(f, sp.KroneckerDelta))
        picked = next(arg for arg in delta.args if isinstance(arg, sp.Indexed))
        term = (rule / delta).replace(lambda e: isinstance(e, sp.Indexed) and e.base.label.name == "dY",
                                      lambda e: at(f"d{out}", e.indices[0], e.indices[1] * width + e.indices[2]))
        target = at(dW, picked.xreplace({sp.IndexedBase("x")[n, t]: token}).replace(
            lambda e: isinstance(e, sp.Indexed) and e.base.label.name == "x", lambda e: token), q)
        lowering.prepend_backward([
            Comment(f"layer {use.position}: {use.text}: the table's gradient, a scatter-add"),
            Loop(v, rows, (Loop(q, width, (Let(at(dW, v, q), sp.Integer(0)),)),)),
            Loop(n, N, (Loop(t, steps, (Loop(q, width, (Assignments(
                ((target, term),), accumulate=frozenset({target}), notes={target: tr(
                    f"{W}'s gradient, a scatter-add: each position adds its upstream gradient to the row its id "
                    "picked (a row no id picked keeps 0)",
                    f"{W} 的梯度（散射相加）：每个位置把它的上游梯度加到其编号所选的行上（没有被选中的行保持为 0）")}),)),)),))])
        lowering.values.append(out)
        lowering.widths.append(steps * width)
