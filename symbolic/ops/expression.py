"""A graph file's staged scalar formula (``q = "x + y"``) as an op of the graph model.

A learner's circuit is a graph of such nodes, each a formula over the named values it reads
(``graphfile.parse_graph`` builds them). The op is its forward formula and its local partial
derivatives, derived by SymPy: everything that evaluates or differentiates a graph-file node
(the transcript, the circuit picture, the graph kernels, ``symprop derive --formula``) asks the
op, so the kink convention lives in one place."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import sympy as sp

from .. import kinks
from ..magnitude import check_bounded
from .base import Op, _apply_kink_convention, real


@dataclass(frozen=True)
class Expression(Op):
    """A scalar formula over named real values; its inputs in the order the graph defines them."""

    formula: sp.Expr  # over real symbols of the inputs (formula.parse_formula)
    text: str  # the formula as written, whitespace collapsed
    inputs: tuple[str, ...]  # the names the formula reads
    name = "expression"  # the op's kind, as Op's messages name it

    def forward(self, values: dict) -> sp.Expr:
        """The formula at values (name -> number or symbol) of its inputs; magnitude.TooLarge
        before SymPy starts on a number too large to compute."""
        return _substitute(self.formula, {real(name): values[name] for name in self.inputs})

    @property
    def has_kink(self) -> bool:
        """max or min in the formula: its partials at a tie follow the kink convention."""
        return self.formula.has(sp.Max, sp.Min)

    def partial_at(self, name: str, values: dict) -> sp.Expr:
        """d formula / d name at values (name -> number or symbol) of the inputs."""
        return _substitute(self.partials[name], {real(n): values[n] for n in self.inputs})

    @cached_property
    def partials(self) -> dict[str, sp.Expr]:
        """d formula / d input for every input, by ``local_partial``."""
        return {name: self.local_partial(name) for name in self.inputs}

    def local_partial(self, name: str) -> sp.Expr:
        """d formula / d name by SymPy, with max and min at a tie following kinks' convention
        (the derivative from the left: the losing side's Heaviside is 0 at the tie), as layers do."""
        return _apply_kink_convention(kinks.diff(self.formula, real(name)))


def _substitute(formula: sp.Expr, values: dict) -> sp.Expr:
    check_bounded(formula, {s: v for s, v in values.items() if getattr(v, "is_number", False)})
    return formula.xreplace(values)
