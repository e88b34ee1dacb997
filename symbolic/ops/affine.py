"""The fully connected layer Y = X W + b, derived by matrix calculus and in index form."""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..errors import SympropError
from ..indexcalc import resolve
from .base import I, J, N, Derivation, Label, Op, Step, weight_products
from ..ir import (Accumulate, Assignments, Comment, Loop, MatrixInto, array, element as at, index)
from ..text import tr
from .builders import (LOSS)


@dataclass(frozen=True)
class Affine(Op):
    """Y = X W + b on a batch: X is N x I, W is I x J, b one bias per output (or one shared)."""

    value_stem = "z"  # z1 = X W1 + b1: each affine layer starts a layer's names
    starts_layer = True
    size_args = (I, J)  # the per-layer kernels read them off X and W

    name: str
    summary: str
    shared_bias: bool = False
    inputs: tuple[str, ...] = ("X", "W", "b")

    def parse_args(self, inner, where):
        """(inputs, outputs), or (inputs, outputs, lambda) with an L2 penalty on W: affine(784,100,l2=1e-4)."""
        parts = (inner or "").split(",")
        penalty = ()
        if len(parts) == 3 and parts[2].strip().startswith("l2="):
            try:
                penalty = (float(parts[2].strip()[3:]),)
            except ValueError:
                penalty = (-1.0,)
            if not penalty[0] >= 0 or penalty[0] == float("inf"):
                raise SympropError(f"{where}: l2= needs a number >= 0, e.g. {self.name}(784,100,l2=0.0001)")
            parts = parts[:2]
        try:
            args = tuple(int(a) for a in parts)
        except ValueError:
            args = ()
        if len(args) != 2 or min(args) < 1:
            raise SympropError(f"{where}: {self.name} needs two positive sizes, e.g. {self.name}(784,100), "
                               f"and optionally an L2 penalty on W, {self.name}(784,100,l2=0.0001)")
        return args + penalty

    def format_args(self, args) -> str:
        sizes = f"{args[0]},{args[1]}"
        return sizes + (f",l2={args[2]!r}" if len(args) > 2 else "")

    def input_width(self, args):
        return args[0]

    def output_width(self, args, width):
        return args[1]

    def step_products(self, args, shape_in, shape_out, batch, first):
        """X W forward, dW = X^T dY and dX = dY W^T back."""
        return weight_products(batch, shape_in, shape_out, first)

    def param_shapes(self, args, width):
        return [("W", tuple(args[:2])), ("b", (1,) if self.shared_bias else (args[1],))]

    def derive(self) -> Derivation:
        X, W, dY = sp.MatrixSymbol("X", N, I), sp.MatrixSymbol("W", I, J), sp.MatrixSymbol("dY", N, J)
        if self.shared_bias:
            b = sp.MatrixSymbol("b", 1, 1)
            bias = sp.OneMatrix(N, 1) * b * sp.OneMatrix(1, J)
        else:
            b = sp.MatrixSymbol("b", 1, J)
            bias = sp.OneMatrix(N, 1) * b
        Y = X * W + bias
        contraction = sp.Trace(dY.T * Y)
        steps = [Step("forward", sp.MatrixSymbol("Y", N, J), Y,
                      "1 is a column of N ones: the bias is added to every row"),
                 Step("chain rule", Label("dL", "dL"), contraction,
                      "the upstream gradient dY weights each output: dL = sum_n,j dY[n,j] * (change in Y[n,j]), "
                      "written tr(dY^T Y); its gradient with respect to each input is that input's rule")]
        backward = {}
        for name, var in (("dX", X), ("dW", W), ("db", b)):
            rule = sp.simplify(contraction.diff(var))
            backward[name] = rule
            steps.append(Step(f"backward {name}", sp.MatrixSymbol(name, *var.shape), rule,
                              "matrix calculus: d tr(dY^T Y) / d" + var.name))
        steps += self._index_form_steps()
        return Derivation(self.name, self.summary, self.inputs, {"Y": Y}, backward, ("X", "W"),
                          steps, [], [], dict(backward))

    def _index_form_steps(self):
        """The same rules in index notation, derived by differentiating the scalar contraction."""
        Xi, Wi, bi, dYi = (sp.IndexedBase(s) for s in ("X", "W", "b", "dY"))
        n, i, j, p, q = sp.symbols("n i j p q", integer=True)
        bias = bi[0] if self.shared_bias else bi[j]
        Yi = sp.Sum(Xi[n, i] * Wi[i, j], (i, 1, I)) + bias
        L = sp.Sum(sp.Sum(dYi[n, j] * Yi, (j, 1, J)), (n, 1, N))
        rows = []
        for target, label in ((Xi[p, q], "dX[p, q]"), (Wi[p, q], "dW[p, q]"),
                              (bi[0] if self.shared_bias else bi[q], "db[q]" if not self.shared_bias else "db")):
            rule = resolve(L.diff(target))
            rows.append(Step("index notation", Label(label, label), sp.simplify(rule),
                             "sifting property of the Kronecker delta"))
        return rows

    def lower(self, lowering, use):
        inputs, outputs = use.args[:2]
        if not lowering.widths:
            lowering.widths = [inputs]
        W, b, shared = lowering.names.params["W"], lowering.names.params["b"], self.shared_bias
        lowering.params += [(W, (inputs, outputs)), (b, (1,) if shared else (outputs,))]
        source = lowering.values[-1]
        out = lowering.buffer(lowering.names.value, (N, outputs))
        d = lowering.derivation(self)
        names = {"X": array(source), "W": array(W), "dY": array("d" + out), "b": array(b)}
        small = isinstance(inputs * outputs, int) and inputs * outputs <= SMALL_MATRIX  # symbols: BLAS
        lowering.forward += [Comment(f"layer {use.position}: {use.text}"), MatrixInto(
            d.forward["Y"], array(out), names, small, (f"{out} = {source} {W}", f"{out} += 1 {b}"),
            tr(f"{use.text}: sum over the inputs of input times weight, plus the bias",
               f"{use.text}：输入乘权重求和，再加偏置"))]
        dW, db = lowering.buffer(f"d{W}", (inputs, outputs)), lowering.buffer(f"d{b}", (1,) if shared else (outputs,))
        backward = [Comment(f"layer {use.position}: {use.text}"),
                    MatrixInto(d.backward["dW"], array(dW), names, small, f"dL/d{W} = {source}^T dL/d{out}",
                               tr(f"{use.text}: the affine layer's derived rule (batch rows summed)",
                                  f"{use.text}：Affine 层推导出的规则（对批量各行求和）")),
                    MatrixInto(d.backward["db"], array(db), names, small, f"dL/d{b} = 1^T dL/d{out}"
                               + (" 1 (shared bias)" if shared else " (sum over the batch)"))]
        if lowering.names.layer > 1 or lowering.input_gradient:  # a step never needs the gradient of the input data X
            dsource = lowering.buffer(f"d{source}", (N, inputs))
            backward.append(MatrixInto(d.backward["dX"], array(dsource), names, small, f"dL/d{source} = dL/d{out} {W}^T",
                                       tr(f"the upstream gradient carried back through {W}", f"上游梯度经 {W} 传回")))
        lowering.prepend_backward(backward)
        lowering.values.append(out)
        lowering.widths.append(outputs)
        if len(use.args) > 2:
            _l2_penalty(lowering, W, inputs, outputs, use.args[2])


def l2_penalty_derivation() -> Derivation:
    """The L2 penalty (lambda / 2) ||W||^2 that affine(I,J,l2=lambda) adds to the loss, and its
    gradient, by matrix calculus and element by element (what the kernels print)."""
    W, lam = sp.MatrixSymbol("W", I, J), sp.Symbol("lambda", positive=True)
    penalty = lam / 2 * sp.Trace(W.T * W)
    gradient = sp.simplify(penalty.diff(W))
    w = sp.Symbol("w", real=True)
    element = lam / 2 * w ** 2
    element_rule = sp.diff(element, w)
    steps = [Step("penalty", Label("P", "P"), penalty, "added to the loss; the biases are not penalised"),
             Step("backward dW", sp.MatrixSymbol("dW", I, J), gradient,
                  "matrix calculus: added to the gradient of the data loss"),
             Step("one element", Label("P[i, j]", "P_{ij}"), element, "P = sum over i, j of P[i, j]"),
             Step("backward, one element", Label("dP/dw", r"\frac{\partial P}{\partial w}"), element_rule,
                  "SymPy's diff: weight decay, each step shrinks w by lr * lambda * w")]
    return Derivation("l2", "L2 penalty (lambda/2) ||W||^2 on an affine layer's weights", ("W",),
                      {"P": element}, {"dW": element_rule}, ("W",), steps)


# Weight matrices with at most this many entries are multiplied with loops, not BLAS:
# a BLAS call costs a fixed ~0.3 us, more than the whole 2-2-2 step (benchmarks/ measures it).
SMALL_MATRIX = 64


def _l2_penalty(lowering, W, inputs, outputs, strength):
    """(lambda/2) ||W||^2 added to the loss after the data loss, lambda W to dW after the
    backward pass (ops/affine.l2_penalty_derivation)."""
    d = l2_penalty_derivation()
    names = {"w": at(W, "i", "j"), "lambda": sp.Float(strength)}
    each = lambda *body: Loop(index("i"), inputs, (Loop(index("j"), outputs, body),))  # noqa: E731
    lowering.penalty += [Comment(f"L2 penalty on {W}: {sp.sstr(d.steps[0].rhs)}, lambda = {strength!r}"),
                     each(Accumulate(LOSS, d.forward["P"], names))]
    dW = at(f"d{W}", "i", "j")
    lowering.penalty_backward += [Comment(f"L2 penalty on {W}"), each(Assignments(
        ((dW, d.backward["dW"]),), names, {dW: f"dL/d{W} += {sp.sstr(d.backward['dW'])}"}, frozenset({dW})))]
