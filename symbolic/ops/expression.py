"""A graph file's staged scalar formula (``q = "x + y"``) as an op family of the graph model.

A learner's circuit is a graph of such nodes, each a formula over the named values it reads
(``graphfile.parse_graph`` builds them). The op is its forward formula and its local partial
derivatives, derived by SymPy (max and min at a tie by the kink convention), and its
``lower()``: the node's value, and backward its upstream gradient times each local partial,
into the gradient of each value it reads. ``CircuitLowering`` is the context a circuit's
nodes lower into; the graph kernels print its statements, and the graph-file transcript and
its table run them, so they cannot disagree."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import sympy as sp

from .. import kinks
from ..ir import Assignments, Comment, Let
from ..magnitude import check_bounded
from ..text import tr
from .base import Op, _apply_kink_convention, real


OUTPUT_NOTE = tr("the output", "输出")
TIE_NOTE = tr("at a tie of max or min the derivative from the left (the side with the smaller slope for max, "
              "the larger for min): relu'(0) = 0, as PyTorch",
              "max 或 min 取等时用左导数（max 取斜率较小的一侧，min 取较大的一侧）：relu'(0) = 0，与 PyTorch 相同")


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

    @cached_property
    def partials(self) -> dict[str, sp.Expr]:
        """d formula / d input for every input, by ``local_partial``."""
        return {name: self.local_partial(name) for name in self.inputs}

    def local_partial(self, name: str) -> sp.Expr:
        """d formula / d name by SymPy, with max and min at a tie following kinks' convention
        (the derivative from the left: the losing side's Heaviside is 0 at the tie), as layers do."""
        return _apply_kink_convention(kinks.diff(self.formula, real(name)))

    def lower(self, lowering: "CircuitLowering", use) -> None:
        """The node's value from the values it reads; backward, its upstream gradient times
        each local partial, into (or added to) the gradient of each value it reads."""
        value = lowering.value[use.name]
        role = {lowering.loss: "the loss", lowering.output: "the output"}.get(use.name)
        lowering.forward.append(Assignments(((value, self.formula),), lowering.names, {value: role} if role else {},
                                            scalar=True, notes={value: OUTPUT_NOTE} if use.name == lowering.output else {}))
        if use.name not in lowering.relevant or not use.inputs:
            return
        upstream = lowering.grad[use.name]
        partials = self.partials if lowering.partials_variant is None else lowering.partials_variant(self, self.partials)
        pairs, comments, added = [], {}, set()
        for name in use.inputs:
            target = lowering.grad[name]
            if lowering.added_later(name, use):
                added.add(target)
            paths = sum(consumer in lowering.relevant for consumer in lowering.graph.consumers(name))
            path = f" (the path through {use.name})" if paths > 1 else ""
            local = f"d{use.name}/d{name} = {sp.sstr(partials[name])}"
            if use.name == lowering.objective and lowering.root != "L":  # upstream gradient 1
                comments[target] = f"{local}{path}"
            else:
                upstream_text = "dout" if use.name == lowering.objective else lowering.root_gradient(use.name)
                comments[target] = (f"{lowering.root_gradient(name)} {'+=' if target in added else '='} "
                                    f"{upstream_text} * d{use.name}/d{name}{path}; {local}")
            pairs.append((target, upstream * partials[name]))
        tie = TIE_NOTE if self.has_kink and partials is self.partials else None  # a variant's partials: no note
        notes = {target: (tie, None) for target, _ in pairs}
        lowering.prepend_backward([Comment(f"{use.name} = {self.text}"), Assignments(
            tuple(pairs), {**lowering.names, upstream.name: upstream}, comments, frozenset(added), scalar=True,
            notes=notes, upstream=upstream.name)])


def _substitute(formula: sp.Expr, values: dict) -> sp.Expr:
    check_bounded(formula, {s: v for s, v in values.items() if getattr(v, "is_number", False)})
    return formula.xreplace(values)


class CircuitLowering:
    """A graph file's circuit lowered to scalar statements (``symbolic/ir.py``), node by node
    through each op's ``lower()``: forward in the graph's order, backward from the objective
    back (each node's statements prepended), then the upstream gradient at the objective (1,
    or the file's ``dout``) and a 0 for each given value with no path to it.

    Every value has a symbol (its own name, unless ``taken``: a kernel's own names, anything
    with ``in``) and so
    has its gradient (``d<name>``); ``names`` maps a formula's symbols to the renamed ones."""

    def __init__(self, graph, given, output: str, loss: str | None = None, dout=None, taken=frozenset(),
                 variant=None):
        self.graph, self.output, self.loss = graph, output, loss
        # a hand calculation's other convention, as a change of the local partials the nodes
        # read: (op, its partials) -> the partials to lower (the checker's variants; None: as derived)
        self.partials_variant = variant
        self.objective = objective = loss or output
        self.root = "L" if dout is not None else objective  # gradients are d<root>/d<name>
        self.relevant = graph.ancestors(objective)
        self._used, self._taken = set(), taken
        values = [*given, *(node.name for node in graph.nodes)]
        self.value = {name: sp.Symbol(self.fresh(name)) for name in values}
        self.grad = {name: sp.Symbol(self.fresh("d" + name)) for name in values}
        self.names = {name: s for name, s in self.value.items() if s.name != name}
        self.forward, self.backward = [], []
        for node in graph.nodes:
            node.op.lower(self, node)
        unreached = [name for name in given if name not in self.relevant]
        start = [Comment(f"{', '.join(unreached)}: no path to {objective}, gradient 0")] if unreached else []
        start += [Let(self.grad[name], sp.Integer(0)) for name in unreached]
        start.append(Let(self.grad[objective], sp.Integer(1) if dout is None else sp.sympify(dout),
                         comment=f"{self.root_gradient(objective)} = " + ("1" if dout is None else f"dout = {dout}")
                         + ", the upstream gradient"))
        self.backward = start + self.backward

    def fresh(self, base: str) -> str:
        """base, or base with _ appended until it is a name not yet used nor taken."""
        name = base
        while name in self._taken or name in self._used:
            name += "_"
        self._used.add(name)
        return name

    def root_gradient(self, name: str) -> str:
        """The gradient's name in the transcript: df/dx, or dL/dx where a dout is given."""
        return f"d{self.root}/d{name}"

    def prepend_backward(self, statements):
        self.backward = statements + self.backward

    def added_later(self, name: str, node) -> bool:
        """True when a node after ``node`` (so earlier in the backward pass) also sends a
        gradient to ``name``: node's contribution is then added (+=)."""
        return any(other.position > node.position and other.name in self.relevant and name in other.inputs
                   for other in self.graph.nodes)
