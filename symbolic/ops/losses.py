"""Elementwise losses: L = scale * sum of l(prediction, t), the end of a network."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import sympy as sp

from ..formula import parse_formula
from ..kinks import diff
from ..indexcalc import resolve
from ..stable import Softplus, canonical_form, masks_as_selects
from .base import K, N, Derivation, Label, Op, Step, _apply_kink_convention, partial, real
from ..ir import (Assignments, Comment, Let, Loop, array, as_written, element as at, local, ratio)
from ..text import tr
from .builders import (LOSS, ROW, ROW_LOSS, _mean_note, _row_index, row_reduction)


REDUCTIONS = {
    "sum": (sp.S.One, "summed over every element"),
    "mean": (1 / (N * K), "averaged over all N*K elements"),
    "batch-mean": (1 / N, "summed over outputs, averaged over the batch of N"),
}


@dataclass(frozen=True)
class ElementwiseLoss(Op):
    """L = scale * sum over the batch of l(prediction, t); the end of a network."""

    value_stem = None  # a loss: it gives L

    name: str
    formula: str
    summary: str
    reduction: str = "sum"
    prediction: str = "y"
    applies: str = ""  # binary-cross-entropy takes logits z and applies the sigmoid itself
    is_loss = True

    @property
    def loss_scale(self) -> sp.Expr:
        """The factor in front of the sum over the batch (N rows) and outputs (K): 1, 1/N or 1/(N K)."""
        return REDUCTIONS[self.reduction][0]

    @cached_property
    def expr(self) -> sp.Expr:
        return parse_formula(self.formula, (self.prediction, "t"), where=f"layer {self.name!r}")

    @property
    def inputs(self):
        return (self.prediction, "t")

    def derive(self) -> Derivation:
        p, t = real(self.prediction), real("t")
        scale, said = self.loss_scale, REDUCTIONS[self.reduction][1]
        raw = self.expr
        forward = canonical_form(raw, [p, t])
        n, k = sp.symbols("n k", integer=True)
        total = scale * sp.Sum(sp.Function("l")(p, t), (n, 1, N), (k, 1, K))
        steps = [Step("loss per element", sp.Function("l")(p, t), raw, "the layer's definition"),
                 Step("total loss", real("L"), total, said)]
        if forward != raw:
            steps.append(Step("stable form", sp.Function("l")(p, t), forward, "same function, no overflow"))
        local_raw = _apply_kink_convention(diff(raw, p))
        local = canonical_form(local_raw, [p, t])
        dl = partial("l", p.name, r"\ell")
        steps.append(Step(f"local derivative dl/d{p}", dl, local_raw, "SymPy's diff"))
        if local != local_raw:
            steps.append(Step("canonical form", dl, local, "cheapest overflow-free equal form"))
        rule = masks_as_selects(scale * local)
        grad = "d" + p.name
        steps.append(Step("backward", real(grad), rule,
                          f"dL/d{p} = scale * dl/d{p}; the loss is the end of the graph, so its upstream gradient is 1"))
        saved = tuple(s for s in (p.name, "t") if real(s) in rule.free_symbols)
        stability = ([f"{forward} uses softplus, which never overflows"] if forward.has(Softplus) else [])
        return Derivation(self.name, self.summary, self.inputs, {"l": forward}, {grad: rule}, saved,
                          steps, [], stability, {grad: scale * local_raw})

    def lower(self, lowering, use):
        d = lowering.derivation(self)
        source = lowering.values[-1]
        p = self.prediction
        scale = self.loss_scale
        names = {p: at(source, "n", "j"), "t": at("T", "n", "j")}
        grad = "d" + p
        dsource = lowering.buffer(f"d{source}", (N, lowering.width))
        term = local("loss_term")
        said = REDUCTIONS[self.reduction][1]
        lowering.loss = [Comment(f"layer {use.position}: {use.text}"), Let(K, lowering.width),
                     Let(LOSS, sp.Integer(0), note=tr(f"{self.name}: {said}", f"{self.name}：{said}")),
                     lowering.each_element(Assignments(((term, d.forward["l"]),), names),
                                       Let(LOSS, term, augmented=True), width=K)]
        if scale != 1:
            lowering.loss.append(Let(LOSS, as_written(sp.Mul, scale, LOSS)))
        note = tr(f"the derived rule of {self.name} (the loss's upstream gradient is 1)",
                  f"{self.name} 推导出的规则（误差的上游梯度为 1）")
        lowering.prepend_backward([Let(K, lowering.width), lowering.each_element(
            Assignments(((at(dsource, "n", "j"), d.backward[grad]),), names,
                        {at(dsource, "n", "j"): f"dL/d{source} = {sp.sstr(d.backward[grad])}"},
                        notes={at(dsource, "n", "j"): note}), width=K)])


@dataclass(frozen=True)
class Huber(ElementwiseLoss):
    """Huber loss (delta = 1, as torch's HuberLoss): half the squared error where |y - t| <= 1,
    |y - t| - 1/2 beyond, so an outlier pulls with a bounded gradient. ``formula`` is the
    definition in words; ``expr`` builds it as a SymPy Piecewise (the formula language has no
    conditionals)."""

    @cached_property
    def expr(self) -> sp.Expr:
        error = real(self.prediction) - real("t")
        return sp.Piecewise((error ** 2 / 2, sp.Abs(error) <= 1), (sp.Abs(error) - sp.S.Half, True))


@dataclass(frozen=True)
class MulticlassHinge(Op):
    """The multiclass SVM loss (CS231n): L_n = sum over the wrong classes k of
    max(0, z[k] - z[y] + 1), with z[y] the score of the correct class (one-hot t); mean over the batch."""

    value_stem = None  # a loss: it gives L

    name: str
    summary: str
    inputs: tuple[str, ...] = ("z", "t")
    is_loss = True
    one_hot_targets = True

    def derive(self) -> Derivation:
        z, t = sp.IndexedBase("z"), sp.IndexedBase("t")
        j, k, m = sp.symbols("j k m", integer=True)
        correct = sp.Sum(t[m] * z[m], (m, 1, K))
        zy = real("zy")
        per_row = sp.Sum((1 - t[k]) * sp.Max(0, z[k] - correct + 1), (k, 1, K))
        raw = per_row.diff(z[j])
        named = _apply_kink_convention(raw.xreplace({correct: zy}))
        sifted = resolve(named)
        rule = sifted / N
        dz = Label("dz[j]", r"\frac{\partial L}{\partial z_j}")
        steps = [
            Step("correct-class score", zy, correct, "t is one-hot: the score of the true class"),
            Step("loss of one row", Label("L_n", "L_n"), per_row.xreplace({correct: zy}),
                 "each wrong class k costs max(0, z[k] - zy + 1): margin 1"),
            Step("differentiate", Label("dL_n/dz[j]", r"\frac{\partial L_n}{\partial z_j}"), raw,
                 "SymPy's diff; z[j] appears in its own term and in zy"),
            Step("sift the Kronecker deltas", Label("dL_n/dz[j]", r"\frac{\partial L_n}{\partial z_j}"), sifted,
                 "j lies in 1..K; a margin exactly 0 counts as met (Heaviside(0) = 0)"),
            Step("mean over the batch", dz, rule, "L = (1/N) sum_n L_n"),
        ]
        return Derivation(self.name, self.summary, self.inputs,
                          {"zy": correct.xreplace({m: k}), "L_n": per_row.xreplace({correct: zy})},
                          {"dz[j]": rule}, ("z", "t"), steps,
                          ["targets are one-hot; at a margin of exactly 0 the derivative from the left (0) is used"],
                          [], {"dz[j]": raw / N})

    def lower(self, lowering, use):
        """The multiclass SVM loss, row by row: the correct class's score, then the derived rules."""
        d = lowering.derivation(self)
        source = lowering.values[-1]
        names = {"z": array(source), "t": array("T")}
        dsource = lowering.buffer(f"d{source}", (N, lowering.width))
        lowering.show(local("zy"), "zy", ROW)
        lowering.show(ROW_LOSS, "L_n", ROW)
        lowering.loss = [Comment(f"layer {use.position}: {use.text} (zy: the score of the correct class)"),
                     Let(K, lowering.width), Let(LOSS, sp.Integer(0), note=_mean_note(self.name)),
                     Loop(ROW, N, (*hinge_row_statements(d, names), Let(LOSS, ROW_LOSS, augmented=True))),
                     Let(LOSS, ratio(LOSS, N))]
        lowering.prepend_backward([Loop(ROW, N, tuple(hinge_row_statements(d, names, dsource)))])


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
