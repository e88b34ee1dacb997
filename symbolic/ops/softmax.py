"""Softmax over each row, and softmax with cross-entropy against one-hot targets."""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..indexcalc import pull_constants, resolve, sift
from .base import K, N, Derivation, Label, Op, Step
from ..ir import (Comment, Let, Loop, array, element as at, local, ratio)
from ..text import tr
from .builders import (LOSS, ROW, ROW_LOSS, SOFTMAX_NOTE, _mean_note, _row_index, row_max, row_reduction)


DZ = Label("dz[j]", r"\frac{\partial L}{\partial z_j}")
DLN = Label("dL_n/dz[j]", r"\frac{\partial L_n}{\partial z_j}")


def _softmax_symbols():
    z, y, t, dy = (sp.IndexedBase(s) for s in ("z", "y", "t", "dy"))
    j, k, m = sp.symbols("j k m", integer=True)
    return z, y, t, dy, j, k, m


def _name_softmax_outputs(expr, z, y, S):
    """exp(z[i]) -> y[i] * S, since y[i] = exp(z[i]) / S (S itself is left alone)."""
    placeholder = sp.Symbol("S", positive=True)
    named = expr.xreplace({S: placeholder}).replace(
        lambda e: isinstance(e, sp.exp) and isinstance(e.args[0], sp.Indexed) and e.args[0].base == z,
        lambda e: y[e.args[0].indices[0]] * placeholder)
    return sp.simplify(pull_constants(named)).xreplace({placeholder: S})


@dataclass(frozen=True)
class Softmax(Op):
    """y[k] = exp(z[k]) / sum_m exp(z[m]) over the K classes of each row."""

    value_stem = "p"

    name: str
    summary: str
    inputs: tuple[str, ...] = ("z",)

    def derive(self) -> Derivation:
        z, y, _, dy, j, k, m = _softmax_symbols()
        S = sp.Sum(sp.exp(z[m]), (m, 1, K))
        yk = sp.exp(z[k]) / S
        zmax = sp.Symbol("zmax", real=True)
        stable = sp.exp(z[k] - zmax) / sp.Sum(sp.exp(z[m] - zmax), (m, 1, K))
        contraction = sp.Sum(dy[k] * yk, (k, 1, K))
        raw = contraction.diff(z[j])
        sifted = pull_constants(sift(raw))
        named = _name_softmax_outputs(sifted, z, y, S)
        rule = named
        steps = [
            Step("forward", y[k], yk, "exponentials normalised over the row"),
            Step("stable forward", y[k], stable,
                 "numerator and denominator multiplied by exp(-zmax), zmax = max_m z[m]: "
                 "no exponent is positive, so nothing overflows"),
            Step("chain rule", DZ, raw, "dz[j] = sum_k dy[k] * dy[k]/dz[j]"),
            Step("sift the Kronecker deltas", DZ, sifted, "j lies in 1..K"),
            Step("name the outputs", DZ, named, "exp(z[i]) = y[i] * sum_m exp(z[m])"),
            Step("backward", DZ, rule, "reads only the saved output y"),
        ]
        return Derivation(self.name, self.summary, self.inputs, {"y[k]": stable}, {"dz[j]": rule},
                          ("y",), steps, [], ["max subtracted before exp"], {"dz[j]": raw})

    def lower(self, lowering, use):
        d = lowering.derivation(self)
        source = lowering.values[-1]
        out = lowering.buffer(lowering.names.value, (N, lowering.width))
        forward = row_reduction([(at(out, "n", "k"), _row_index(d.forward["y[k]"]))], {"z": array(source)},
                                notes={at(out, "n", "k"): SOFTMAX_NOTE})
        dsource = lowering.buffer(f"d{source}", (N, lowering.width))
        note = tr(f"{use.text}: the derived rule (dy[j] - sum_k dy[k] y[k]) y[j]",
                  f"{use.text}：推导出的规则 (dy[j] - sum_k dy[k] y[k]) y[j]")
        backward = row_reduction([(at(dsource, "n", "k"), _row_index(d.backward["dz[j]"]))],
                                 {"y": array(out), "dy": array(f"d{out}")}, notes={at(dsource, "n", "k"): note})
        lowering.show(local("zmax"), f"{source}max", ROW)
        lowering.forward += [Comment(f"layer {use.position}: {use.text}"), Let(K, lowering.width),
                         Loop(ROW, N, (*row_max(source), *forward))]
        lowering.prepend_backward([Comment(f"layer {use.position}: {use.text}"), Let(K, lowering.width),
                               Loop(ROW, N, tuple(backward))])
        lowering.values.append(out)


@dataclass(frozen=True)
class SoftmaxCrossEntropy(Op):
    """L = -(1/N) sum_n sum_k t[n,k] log softmax(z[n])[k], one-hot targets t."""

    value_stem = None  # a loss: it gives L

    name: str
    summary: str
    inputs: tuple[str, ...] = ("z", "t")
    is_loss = True
    one_hot_targets = True
    applies = "softmax"

    def derive(self) -> Derivation:
        z, y, t, _, j, k, m = _softmax_symbols()
        S = sp.Sum(sp.exp(z[m]), (m, 1, K))
        log_softmax = z[k] - sp.log(S)
        per_row = -sp.Sum(t[k] * log_softmax, (k, 1, K))
        raw = per_row.diff(z[j])
        sifted = pull_constants(sift(raw))
        target_sum = sp.Sum(t[k], (k, 1, K))
        one_hot = sifted.subs(target_sum, 1)
        if one_hot == sifted:
            raise AssertionError("softmax-cross-entropy derivation never met sum_k t[k]")
        named = _name_softmax_outputs(one_hot, z, y, S)
        rule = sp.simplify(named) / N
        zmax = sp.Symbol("zmax", real=True)
        lse = zmax + sp.log(sp.Sum(sp.exp(z[m] - zmax), (m, 1, K)))
        steps = [
            Step("forward", y[k], sp.exp(z[k]) / S, "softmax over the row"),
            Step("loss of one row", Label("L_n", "L_n"), -sp.Sum(t[k] * sp.log(y[k]), (k, 1, K)), "cross-entropy"),
            Step("log of softmax", sp.log(y[k]), log_softmax, "log(exp(z[k]) / S) = z[k] - log S"),
            Step("stable log-sum-exp", sp.log(S), lse, "zmax = max_m z[m]; no exponent is positive"),
            Step("differentiate", DLN, raw, "SymPy's diff"),
            Step("sift the Kronecker deltas", DLN, sifted, "j lies in 1..K"),
            Step("one-hot targets", DLN, one_hot,
                 "sum_k t[k] = 1 because t is one-hot: this is where the target's sum is used"),
            Step("name the outputs", DLN, sp.simplify(named), "exp(z[j]) / S = y[j]"),
            Step("mean over the batch", DZ, rule, "L = (1/N) sum_n L_n"),
        ]
        return Derivation(self.name, self.summary, self.inputs, {"y[k]": sp.exp(z[k] - zmax) / sp.exp(lse - zmax),
                                                                 "L_n": lse - sp.Sum(t[k] * z[k], (k, 1, K))},
                          {"dz[j]": rule}, ("y", "t"), steps,
                          ["targets are one-hot (each row sums to 1)"],
                          ["log-sum-exp with the row maximum subtracted; log(0) never taken"],
                          {"dz[j]": raw / N})

    def lower(self, lowering, use):
        d = lowering.derivation(self)
        source = lowering.values[-1]
        probabilities = lowering.buffer("P", (N, lowering.width))
        forward = row_reduction(
            [(at(probabilities, "n", "k"), _row_index(d.forward["y[k]"])), (ROW_LOSS, d.forward["L_n"])],
            {"z": array(source), "t": array("T")}, notes={at(probabilities, "n", "k"): SOFTMAX_NOTE, ROW_LOSS: tr(
                "the row's loss: log-sum-exp (row maximum subtracted) minus the true class's score",
                "该行误差：log-sum-exp（减去行最大值）减去正确类别的分数")})
        dsource = lowering.buffer(f"d{source}", (N, lowering.width))
        rule = d.backward["dz[j]"]
        backward = row_reduction([(at(dsource, "n", "k"), _row_index(rule))],
                                 {"y": array("P"), "t": array("T")},
                                 comment_for=lambda _: f"dL/d{source} = {sp.sstr(rule)}",
                                 notes={at(dsource, "n", "k"): tr(f"the derived rule of {self.name}: {sp.sstr(rule)}",
                                                                  f"{self.name} 推导出的规则：{sp.sstr(rule)}")})
        lowering.show(local("zmax"), f"{source}max", ROW)
        lowering.show(ROW_LOSS, "L_n", ROW)
        lowering.loss = [Comment(f"layer {use.position}: {use.text} (log-sum-exp, row maximum subtracted;"
                             " P = softmax, saved for backward)"),
                     Let(K, lowering.width), Let(LOSS, sp.Integer(0), note=_mean_note(self.name)),
                     Loop(ROW, N, (*row_max(source), *forward, Let(LOSS, ROW_LOSS, augmented=True))),
                     Let(LOSS, ratio(LOSS, N))]
        lowering.prepend_backward([Loop(ROW, N, tuple(backward))])


@dataclass(frozen=True)
class LogSoftmaxNLL(SoftmaxCrossEntropy):
    """log-softmax, then the negative log-likelihood of the true class, mean over the batch (torch's
    log_softmax + nll_loss). Derived in two stages, a log-softmax node a[k] = z[k] - log S and
    the loss -sum_k t[k] a[k]; the chain rule gives the same dz = (y - t)/N as softmax-cross-entropy."""

    def derive(self) -> Derivation:
        fused = super().derive()  # the same stable forward: log-sum-exp with the row maximum
        z, y, t, _, j, k, m = _softmax_symbols()
        a = sp.IndexedBase("a")
        S = sp.Sum(sp.exp(z[m]), (m, 1, K))
        log_softmax = z[k] - sp.log(S)
        dL_da = (-sp.Sum(t[m] * a[m], (m, 1, K))).diff(a[k])  # the NLL node
        da_dz = log_softmax.diff(z[j])  # the log-softmax node
        chain = sp.Sum(resolve(dL_da) * da_dz, (k, 1, K))
        sifted = pull_constants(sift(chain))
        one_hot = sifted.subs(sp.Sum(t[k], (k, 1, K)), 1)
        if one_hot == sifted:
            raise AssertionError("log-softmax-nll derivation never met sum_k t[k]")
        named = sp.simplify(_name_softmax_outputs(one_hot, z, y, S))
        rule = named / N
        steps = [
            Step("log-softmax node", a[k], log_softmax, "a[k] = log(exp(z[k]) / S), S = sum_m exp(z[m])"),
            Step("negative log-likelihood node", Label("L_n", "L_n"), -sp.Sum(t[k] * a[k], (k, 1, K)),
                 "t is one-hot: minus the log-probability of the true class"),
            Step("local derivative of the NLL", Label("dL_n/da[k]", r"\frac{\partial L_n}{\partial a_k}"),
                 resolve(dL_da), "SymPy's diff"),
            Step("local derivative of log-softmax", Label("da[k]/dz[j]", r"\frac{\partial a_k}{\partial z_j}"),
                 da_dz, "SymPy's diff"),
            Step("chain rule", DLN, chain, "sum over the log-softmax outputs"),
            Step("sift the Kronecker deltas", DLN, sifted, "j lies in 1..K"),
            Step("one-hot targets", DLN, one_hot, "sum_k t[k] = 1"),
            Step("name the outputs", DLN, named, "exp(z[j]) / S = y[j], the softmax"),
            Step("mean over the batch", DZ, rule, "L = (1/N) sum_n L_n"),
        ]
        return Derivation(self.name, self.summary, self.inputs, fused.forward, {"dz[j]": rule}, ("y", "t"),
                          steps, fused.conventions, fused.stability, {"dz[j]": chain / N})
