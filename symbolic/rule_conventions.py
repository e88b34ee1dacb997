"""The conventions a hand calculation can take that change a rule of the computation, as a
variant of the rules the lowering reads, so every file kind offers them the same way: a
layer's derivation (network files and net files: ``Lowering(graph, variant=...)``) or a graph
file's node's local partials (``CircuitLowering(..., variant=...)``). Both are asked of the op,
never of its name:

- the kink from the right: where a derivative jumps (relu, leaky relu, max, min), the step
  H(u, value at 0) of its rule takes the value from the right at 0: relu'(0) = 1, not 0;
- the derivative at the net input: a rule written in the op's saved output y (sigmoid's
  y(1 - y), tanh's 1 - y^2) evaluated at the input u instead.
"""
from __future__ import annotations

import dataclasses
import functools

import sympy as sp

from .errors import SympropError
from .lower import derivation
from .ops.base import real


# --- a layer's derivation (network files, net files) -------------------------------------------

def has_kink(op) -> bool:
    """The op's derivative jumps somewhere (relu, leaky relu at 0): its backward rule has a
    step H(u, value at 0), so a hand calculation may take the derivative there from either side."""
    return any(rule.has(sp.Heaviside) for rule in derivation(op).backward.values())


def reads_its_output(op) -> bool:
    """The op's backward rule is written in its saved output y (sigmoid's y(1 - y), tanh's
    1 - y^2), so a hand calculation may slip and evaluate it at the input instead."""
    output = getattr(op, "output", None)
    return not op.is_loss and output in derivation(op).saved and len(op.inputs) == 1


def from_the_right(rule, keep=frozenset()):
    """H(u, 0) <-> H(u, 1): a derivation takes a kink's derivative from the left; flipping each
    step's value at 0 takes it from the right (relu'(0) = 1, leaky relu's slope 1 at 0).
    ``keep``: steps that are values, not a derivative's jump (a heaviside the formula itself
    computes)."""
    return rule.replace(lambda e: isinstance(e, sp.Heaviside) and len(e.args) == 2 and e not in keep,
                        lambda e: sp.Heaviside(e.args[0], 1 - e.args[1]))


def derivation_variant(kink_from_the_right: bool, derivative_at_net: bool):
    """The conventions as the change of a layer's derivation the lowering reads: (op, its
    Derivation) -> the Derivation to lower (None: every rule as derived)."""
    if not (kink_from_the_right or derivative_at_net):
        return None

    def variant(op, d):
        if op.is_loss:
            return d
        backward = d.backward
        if kink_from_the_right:
            backward = {name: from_the_right(rule) for name, rule in backward.items()}
        if derivative_at_net and reads_its_output(op):
            at_input = {real(op.output): real(op.inputs[0])}
            backward = {name: rule.xreplace(at_input) for name, rule in backward.items()}
        return dataclasses.replace(d, backward=backward)
    return variant


# --- a graph file's node (its op an Expression: a formula and its local partials) --------------

def node_has_kink(op) -> bool:
    """A partial of the node's formula has a step the formula does not compute itself: the
    jump of a max, min or relu's derivative (the tie convention, ``kinks``)."""
    written = op.formula.atoms(sp.Heaviside)
    return any(p.atoms(sp.Heaviside) - written for p in op.partials.values())


@functools.lru_cache(maxsize=256)
def node_as_activation(op):
    """A node of one input as the activation it is (its formula over that input, derived as a
    layer's: ``Elementwise``), or None: the same derivation decides, for a graph file's node as
    for a layer, whether the rule reads the saved output."""
    from .ops.elementwise import Elementwise

    if len(op.inputs) != 1:
        return None
    (u,) = op.inputs
    layer = Elementwise("node", op.text, "", inputs=(u,), output="y" if u != "y" else "y_")
    try:
        return layer if reads_its_output(layer) else None
    except SympropError:
        return None


def node_reads_its_output(op) -> bool:
    """The node's one partial written in its own value y (sigmoid(u): y(1 - y); tanh(u):
    1 - y^2), so a hand calculation may slip and evaluate it at u, the node it reads."""
    return node_as_activation(op) is not None


def partials_variant(kink_from_the_right: bool, derivative_at_net: bool):
    """The conventions as the change of a graph-file node's local partials the circuit's
    lowering reads: (op, partials) -> the partials to lower (None: every partial as derived)."""
    if not (kink_from_the_right or derivative_at_net):
        return None

    def variant(op, partials):
        if kink_from_the_right:
            written = op.formula.atoms(sp.Heaviside)
            partials = {name: from_the_right(p, written) for name, p in partials.items()}
        layer = node_as_activation(op) if derivative_at_net else None
        if layer is not None:  # the layer's rule dy * r(y), r taken at the input: r(u)
            (u,) = op.inputs
            rule = derivation(layer).backward["d" + u] / real("dout")
            partials = {u: rule.xreplace({real(layer.output): real(u)})}
        return partials
    return variant
