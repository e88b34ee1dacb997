"""What a picture of a graph file shows: its gates, its wires, and the numbers on each wire.

Lecture notes draw a circuit with the forward value above each wire and the gradient below
it. This module only collects those numbers, read from the graph file's transcript (so the
picture and the transcript can never disagree); ``symprop.draw`` lays them out and renders
them with networkx and matplotlib, which symbolic/ does not import.

A wire from ``u`` to ``v`` carries u's value and, below it, the gradient that flows back
along it: the whole gradient at ``u`` when ``u`` feeds only ``v``, else that path's
contribution (the transcript's ``df/du_via_v``); the sum is then written under ``u``.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

import sympy as sp

from .graphfile import GraphFile
from .graphfile_transcript import _Names, graph_transcript
from .transcript import Transcript, rounded

# the short label a gate gets for formulas of these shapes (anything else shows its formula)
_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "^"}


@dataclass(frozen=True)
class Gate:
    """One name of the graph: an input, a parameter, or a node (a gate with its label)."""

    name: str
    kind: str  # "input", "parameter" or "node"
    label: str  # what is written in the gate ("+", "*", "max", "exp", "1/x", or the formula)
    formula: str  # the formula as written ("" for inputs and parameters)
    value: sp.Expr
    gradient: sp.Expr | None  # d<root>/d<name>; None where the name does not reach the objective
    fan_out: int  # how many nodes use it (more than one: the gradient is a sum of paths)


@dataclass(frozen=True)
class Wire:
    source: str
    target: str
    value: sp.Expr  # the source's value
    gradient: sp.Expr | None  # the gradient flowing back along this wire


@dataclass(frozen=True)
class Circuit:
    title: str
    root: str  # the name gradients are of: the objective, or "L" with a given dout
    objective: str  # the node whose gradient is taken (the loss if there is one, else the output)
    upstream: sp.Expr  # the gradient arriving at the objective: 1, or the file's dout
    gates: list[Gate]
    wires: list[Wire]
    note: str  # which pass is drawn, when the file has several samples

    def gate(self, name: str) -> Gate:
        return next(g for g in self.gates if g.name == name)


def gate_label(text: str, arguments: list[str]) -> str:
    """The gate symbol lecture notes write for a formula: "+" for ``x + y``, "*2" for ``2 * s``,
    "1/x" for ``1 / d``, "*-1" for ``-z`` and ``-1 * z``, "-1" for ``x - 1``, "max" for
    ``max(z, w)`` and ``max(0, z)``, "exp" for ``exp(nz)``; any other formula is written out
    as it is."""
    try:
        tree = ast.parse(text.replace("^", "**"), mode="eval").body
    except SyntaxError:
        return text
    is_name = lambda n: isinstance(n, ast.Name) and n.id in arguments  # noqa: E731
    if isinstance(tree, ast.BinOp) and type(tree.op) in _OPERATORS:
        op = _OPERATORS[type(tree.op)]
        left, right = tree.left, tree.right
        if is_name(left) and is_name(right):
            return op if op != "^" else text
        if is_name(left) and _number(right) is not None:
            if op == "^":
                return f"x^{_number(right)}"
            if op in "+-" and _number(right).startswith("-"):  # x + -1 is the "-1" gate
                return ("-" if op == "+" else "+") + _number(right)[1:]
            return f"{op}{_number(right)}"
        if _number(left) is not None and is_name(right):
            if op in "+*":  # 2 * s, -1 * dot, 1 + ez: the gate is the same either way round
                return f"{op}{_number(left)}"
            if op == "/":
                return f"{_number(left)}/x"
            if op == "-":
                return f"{_number(left)}-x"
    if isinstance(tree, ast.UnaryOp) and isinstance(tree.op, ast.USub) and is_name(tree.operand):
        return "*-1"
    if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.args and any(map(is_name, tree.args)) \
            and all(is_name(a) or _number(a) is not None for a in tree.args):
        return tree.func.id  # exp(nz), max(z, w), max(0, z)
    return text


def _number(node) -> str | None:
    """A number as written in a formula (2, 0.5, -1), or None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return ast.unparse(node)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and _number(node.operand):
        return ("-" if isinstance(node.op, ast.USub) else "") + _number(node.operand)
    return None


def circuit(graph: GraphFile, transcript: Transcript | None = None) -> Circuit:
    """The numbers of the graph's first forward and backward pass, gate by gate and wire by wire
    (with a full batch, the pass on sample 1)."""
    t = transcript or graph_transcript(graph)
    full_batch = graph.full_batch
    names = _Names(graph, "[1]" if full_batch else "")
    note = ""
    if graph.data is not None:
        note = (f"the first step's pass, on sample 1 of {graph.data.size}" if not full_batch
                else f"sample 1 of the full batch of {graph.data.size}")

    def known(key):
        return t.value(key) if key in t.quantities else None

    relevant = graph.ancestors(graph.objective)
    upstream = graph.dout if graph.dout is not None else sp.Integer(1)
    gates, wires = [], []
    kinds = [("input", graph.inputs), ("parameter", graph.parameters), ("node", graph.nodes)]
    for kind, table in kinds:
        for name in table:
            consumers = graph.consumers(name)
            gradient = upstream if name == graph.objective else known(names.grad(name))
            op = graph.op(name) if kind == "node" else None
            label = gate_label(op.text, list(op.inputs)) if op else name
            gates.append(Gate(name, kind, label, op.text if op else "", t.value(names.value(name)),
                              gradient, len(consumers)))
            for target in consumers:
                wires.append(Wire(name, target, t.value(names.value(name)),
                                  _wire_gradient(graph, names, known, name, target, relevant)))
    return Circuit(graph.title, names.root, graph.objective, upstream, gates, wires, note)


def _wire_gradient(graph, names, known, name, target, relevant):
    """The gradient flowing back from ``target`` to ``name``, as the transcript computed it."""
    if target not in relevant:
        return None
    paths = [c for c in graph.consumers(name) if c in relevant]
    if len(paths) == 1:
        return known(names.grad(name))
    if target == names.top and graph.dout is None:
        return known(names.local(target, name))  # straight into the output: upstream gradient 1
    return known(names.path(name, target))


def number(value, digits: int = 3) -> str:
    """A value as the picture prints it: ``digits`` significant digits, integers whole."""
    return rounded(value, digits)
