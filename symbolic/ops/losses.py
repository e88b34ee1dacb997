"""Elementwise losses: L = scale * sum of l(prediction, t), the end of a network."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import sympy as sp

from ..formula import parse_formula
from ..kinks import diff
from ..stable import canonical_form, masks_as_selects
from .base import K, N, Derivation, Op, Step, _apply_kink_convention, partial, real


REDUCTIONS = {
    "sum": (sp.S.One, "summed over every element"),
    "mean": (1 / (N * K), "averaged over all N*K elements"),
    "batch-mean": (1 / N, "summed over outputs, averaged over the batch of N"),
}


@dataclass(frozen=True)
class ElementwiseLoss(Op):
    """L = scale * sum over the batch of l(prediction, t); the end of a network."""

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
        stability = ([f"{forward} uses softplus, which never overflows"] if forward.has(sp.Function) else [])
        return Derivation(self.name, self.summary, self.inputs, {"l": forward}, {grad: rule}, saved,
                          steps, [], stability, {grad: scale * local_raw})
