"""Elementwise ops: y = f(x) (activations, graph nodes) and y = f(x, g[j]) with a learnable
value per feature. The backward rule is SymPy's diff of the formula, in its stable form."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import sympy as sp

from ..budget import OutOfTime, time_budget
from ..errors import SympropError
from ..formula import parse_formula
from ..kinks import CONVENTION as KINK_CONVENTION
from ..kinks import diff
from ..stable import canonical_form, masks_as_selects
from .base import (MAX_DERIVATIVE_OPS, MAX_DERIVE_SECONDS, N, Derivation, Op, Step, _apply_kink_convention,
                   _in_terms_of_output, partial, real)


@dataclass(frozen=True)
class Elementwise(Op):
    """y = f(x) (or f(x, y) for graph nodes), applied element by element."""

    name: str
    formula: str
    summary: str
    inputs: tuple[str, ...] = ("x",)
    output: str = "y"
    accepts_images = True  # element by element: the shape does not matter

    def network_problem(self):
        if len(self.inputs) != 1:
            return (f"{self.name} is a two-input graph node; a network is a chain of "
                    f"one-input layers (use symprop derive {self.name} for the node itself)")
        return None

    @cached_property
    def expr(self) -> sp.Expr:
        return parse_formula(self.formula, self.inputs, where=f"layer {self.name!r}")

    def derive(self) -> Derivation:
        """The derivation, within MAX_DERIVE_SECONDS and MAX_DERIVATIVE_OPS, or a SympropError
        saying which bound the formula exceeds."""
        try:
            with time_budget(MAX_DERIVE_SECONDS):
                return self._derive()
        except (OutOfTime, RecursionError):
            raise SympropError(f"layer {self.name!r}: deriving {self.formula!r} takes longer than "
                               f"{MAX_DERIVE_SECONDS:g} s; simplify the formula") from None

    def _derive(self) -> Derivation:
        xs = [real(n) for n in self.inputs]
        out, dout = real(self.output), real("dout")
        raw = self.expr
        forward = canonical_form(raw, xs)
        steps = [Step("forward", out, raw, "the layer's definition")]
        stability = []
        if forward != raw:
            steps.append(Step("stable forward", out, forward, "same function, no overflow"))
            stability.append(f"forward {forward} evaluates exp only of non-positive arguments")
        backward, raw_backward, conventions, saved = {}, {}, [], set()
        for x in xs:
            local_raw = diff(raw, x)
            size = sp.count_ops(local_raw)
            if size > MAX_DERIVATIVE_OPS:
                raise SympropError(f"layer {self.name!r}: the derivative of {self.formula!r} by {x} has "
                                   f"{size} operations; the limit is {MAX_DERIVATIVE_OPS}")
            local = _apply_kink_convention(local_raw)
            if local != local_raw or raw.has(sp.Max, sp.Min):
                conventions.append(KINK_CONVENTION)
            stable = canonical_form(local, xs)
            by_output = next((form for form in (_in_terms_of_output(c, forward, out, xs) for c in (stable, local))
                              if form is not None), None)
            grad = real("d" + x.name)
            dd = partial(out.name, x.name)
            steps.append(Step(f"local derivative d{out}/d{x}", dd, local_raw, "SymPy's diff"))
            if local != local_raw:
                steps.append(Step("kink convention", dd, local, KINK_CONVENTION))
            if stable != local:
                steps.append(Step("canonical form", dd, stable, "cheapest overflow-free equal form"))
            if by_output is not None:
                steps.append(Step("in terms of the saved output", dd, by_output,
                                  f"substituting {out} = {forward}"))
                stability.append(f"d{out}/d{x} = {by_output} reads the saved output {out}: "
                                 "no exp, finite for every input")
                stable = by_output
            rule = masks_as_selects(dout * stable)
            steps.append(Step(f"backward (chain rule: upstream times local)", grad, rule,
                              f"{grad} = {dout} * d{out}/d{x}"))
            backward[grad.name] = rule
            raw_backward[grad.name] = dout * local
            saved |= {s.name for s in rule.free_symbols} - {dout.name}
        order = [*self.inputs, self.output]
        return Derivation(self.name, self.summary, self.inputs, {self.output: forward}, backward,
                          tuple(n for n in order if n in saved), steps, sorted(set(conventions)),
                          stability, raw_backward)


@dataclass(frozen=True)
class PerFeature(Op):
    """y[n, j] = f(x[n, j], g[j]): elementwise, with learnable parameters that hold one value per
    feature j, shared by every row n of the batch (a learnable scale y = g * x, a per-feature
    PReLU ...). Each parameter's gradient is its rows' contributions summed over the batch."""

    name: str
    formula: str
    summary: str
    params: tuple[str, ...] = ("g",)
    output: str = "y"

    @property
    def inputs(self) -> tuple[str, ...]:
        return ("x", *self.params)

    @cached_property
    def expr(self) -> sp.Expr:
        return parse_formula(self.formula, self.inputs, where=f"layer {self.name!r}")

    def param_shapes(self, args, width):
        return [(p, (width,)) for p in self.params]

    def derive(self) -> Derivation:
        names = [real(v) for v in self.inputs]
        out, dout = real(self.output), real("dout")
        raw = self.expr
        forward = canonical_form(raw, names)
        n = sp.Symbol("n", integer=True)
        steps = [Step("forward", out, raw, "element [n, j]; each parameter is indexed by the feature j alone")]
        backward, raw_backward, conventions, saved = {}, {}, [], set()
        for v in names:
            local_raw = diff(raw, v)
            local = _apply_kink_convention(local_raw)
            if local != local_raw or raw.has(sp.Max, sp.Min):
                conventions.append(KINK_CONVENTION)
            stable = canonical_form(local, names)
            grad, dd = "d" + v.name, partial(out.name, v.name)
            steps.append(Step(f"local derivative d{out}/d{v}", dd, local_raw, "SymPy's diff"))
            if stable != local_raw:
                steps.append(Step("canonical form", dd, stable, "kink convention, cheapest overflow-free form"))
            rule = masks_as_selects(dout * stable)
            if v.name == "x":
                steps.append(Step("backward (chain rule: upstream times local)", real(grad), rule,
                                  f"{grad}[n, j] = dout[n, j] * d{out}/d{v}"))
            else:
                rows = {s: sp.Indexed(sp.IndexedBase(s.name), n) for s in rule.free_symbols if s not in names[1:]}
                steps.append(Step("backward, summed over the batch", real(grad),
                                  sp.Sum(rule.xreplace(rows), (n, 1, N)),
                                  f"{v}[j] is shared by the N rows: its gradient adds each row's dout * d{out}/d{v}"))
            backward[grad], raw_backward[grad] = rule, dout * local
            saved |= {s.name for s in rule.free_symbols} - {dout.name}
        return Derivation(self.name, self.summary, self.inputs, {self.output: forward}, backward,
                          tuple(v for v in self.inputs if v in saved), steps, sorted(set(conventions)), [],
                          raw_backward, tuple("d" + p for p in self.params))
