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
from ..ir import (Assignments, Comment, Let, Loop, element as at, index)
from ..text import tr
from .builders import (CHAIN_NOTE, _local_note)


@dataclass(frozen=True)
class Elementwise(Op):
    """y = f(x) (or f(x, y) for graph nodes), applied element by element."""

    name: str
    formula: str
    summary: str
    inputs: tuple[str, ...] = ("x",)
    output: str = "y"
    accepts_images = True  # element by element: the shape does not matter
    element_by_element = True

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

    def lower(self, lowering, use):
        d = lowering.derivation(self)
        sources = lowering.sources(use)
        out = lowering.buffer(lowering.names.value, (N, lowering.width))
        names = {**{x: at(source, "n", "j") for x, source in zip(self.inputs, sources)},
                 self.output: at(out, "n", "j")}
        note = tr(f"{use.text}, from its derivation", f"{use.text}（由其推导得到）")
        lowering.forward += [Comment(f"layer {use.position}: {use.text}"), lowering.each_element(Assignments(
            ((at(out, "n", "j"), d.forward[self.output]),), names, notes={at(out, "n", "j"): note}))]
        arrays = {real(x): sp.Symbol(source) for x, source in zip(self.inputs, sources)} | {
            real(self.output): sp.Symbol(out)}
        rules, comments, notes = [], {}, {}
        for x, source in zip(self.inputs, sources):
            rule, dsource = d.backward[f"d{x}"], at(lowering.buffer(f"d{source}", (N, lowering.width)), "n", "j")
            local = (rule / real("dout")).subs(arrays)
            rules.append((dsource, rule))
            comments[dsource] = f"dL/d{source} = dL/d{out} * d{out}/d{source} = dL/d{out} * {sp.sstr(local)}"
            notes[dsource] = (_local_note(use.text), CHAIN_NOTE)
        lowering.prepend_backward([Comment(f"layer {use.position}: {use.text}"), lowering.each_element(
            Assignments(tuple(rules), {**names, "dout": at(f"d{out}", "n", "j")}, comments, upstream="dout",
                        notes=notes))])
        lowering.values.append(out)


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
                          raw_backward)

    def lower(self, lowering, use):
        """y[n, j] = f(x[n, j], g[j]), from the statements the per-layer kernels print too."""
        d = lowering.derivation(self)
        source = lowering.values[-1]
        params = [lowering.names.params[p] for p in self.params]
        lowering.params += [(name, (lowering.width,)) for name in params]
        out = lowering.buffer(lowering.names.value, (N, lowering.width))
        grads = [lowering.buffer(f"d{name}", (lowering.width,)) for name in params]
        dsource = lowering.buffer(f"d{source}", (N, lowering.width))
        arrays = dict(x=source, y=out, dy=f"d{out}", dx=dsource, **dict(zip(self.params, params)),
                      **{f"d{p}": g for p, g in zip(self.params, grads)})
        forward, backward = per_feature_statements(self, d, arrays, lowering.width, use.text)
        lowering.forward += [Comment(f"layer {use.position}: {use.text}"), *forward]
        lowering.prepend_backward([Comment(f"layer {use.position}: {use.text}"), *backward])
        lowering.values.append(out)


def per_feature_statements(op, d: Derivation, a: dict, width, text: str = "") -> tuple[list, list]:
    """(forward, backward) statements of y[n, j] = f(x[n, j], g[j]): one loop for the values;
    on the way back one loop that writes dx and adds each row's share to the parameters'
    gradients (batch sums). ``a`` names the arrays: x, y, dy, dx, and each parameter p and dp.
    The network lowering and the per-layer kernels both print these statements."""
    each = lambda *body: Loop(index("n"), N, (Loop(index("j"), width, body),))  # noqa: E731
    names = {"x": at(a["x"], "n", "j"), **{p: at(a[p], "j") for p in op.params}}
    forward = [each(Assignments(((at(a["y"], "n", "j"), d.forward[op.output]),), names,
                                notes={at(a["y"], "n", "j"): tr(f"{text}, from its derivation", f"{text}（由其推导得到）")}))]
    dx, grads = at(a["dx"], "n", "j"), {p: at(a["d" + p], "j") for p in op.params}
    rules = ((dx, d.backward["dx"]), *((grads[p], d.backward["d" + p]) for p in op.params))
    comments = {dx: f"dL/d{a['x']} = dL/d{a['y']} * d{a['y']}/d{a['x']}",
                **{grads[p]: f"dL/d{a[p]} = sum over the batch of dL/d{a['y']} * d{a['y']}/d{a[p]}"
                   for p in op.params}}
    notes = {dx: (_local_note(text), CHAIN_NOTE),
             **{grads[p]: (_local_note(text), tr(f"{a[p]}[j] is shared by every row: the sum over the batch",
                                                f"{a[p]}[j] 由每一行共用：对批量求和")) for p in op.params}}
    backward = [Loop(index("j"), width, tuple(Let(grads[p], sp.Integer(0)) for p in op.params)),
                each(Assignments(rules, {**names, "dout": at(a["dy"], "n", "j")}, comments, frozenset(grads.values()),
                                 upstream="dout", notes=notes))]
    return forward, backward
