"""Lowering: a graph to typed statements (``symbolic/ir.py``), each node by its op family.

An op family is its op class and its lowering, side by side: each op class in
``symbolic/ops/`` has a ``lower(lowering, use)`` method that writes its node's statements into
the ``Lowering`` below (forward statements appended, backward statements prepended: the chain
rule runs from the loss back), every formula from the op's derivation. This module is only the
context they write into: the buffers, the parameters, the names ``graph.chain_names`` gave, and
what each node added. The code generator prints these statements (``codegen/network.py``), the
interpreter runs them for transcripts (``symbolic/interpret.py``); nothing here is text.

Every intermediate array is a named buffer of the workspace (``buffers``), so a training step
writes into memory allocated once, never inside the loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .errors import SympropError
from .graph import chain_names
from .ops.builders import features
from .ir import Loop, index
from .layers import REGISTRY, N, Derivation
from .ops.builders import ROW

n, j = ROW, index("j")


@dataclass
class NodeStatements:
    """The statements one node added: its forward pass, its backward pass and (a loss) the
    statements that compute the loss."""

    forward: list
    backward: list
    loss: list
    shown: dict  # kernel locals a transcript shows as quantities: local -> (name, index symbols)


def derivation(op) -> Derivation:
    """The op's derivation: a registered op's is the registry's, derived once per process."""
    return REGISTRY.derive(op.name) if REGISTRY.get(op.name) is op else op.derive()


def lowering(op, where: str):
    """The op's own lowering: its class's ``lower(lowering, use)`` method, never a table by name."""
    if callable(getattr(op, "lower", None)):
        return op.lower
    raise SympropError(f"{where}: symprop has no lowering for {type(op).__name__} ops, so it can neither explain nor "
                       "compile them (an op family is its op class and its lowering)")


class Lowering:
    """One network's graph lowered to statements, node by node: forward statements in order,
    backward statements prepended (the chain rule runs from the loss back).

    Every intermediate array is a named buffer of the workspace (``self.buffers``), so a
    training step writes into memory allocated once, never inside the loop.
    """

    def __init__(self, graph, input_gradient: bool = False, variant=None):
        uses, shapes = graph.nodes, graph.shapes
        # a hand calculation's other convention, as a change of the rules the ops read:
        # (op, its Derivation) -> the Derivation to lower (the checker's variants; None: as derived)
        self.variant = variant
        self.params: list[tuple[str, tuple]] = []
        self.buffers: list[tuple[str, tuple]] = []  # (name, shape: ints and the batch size N)
        self.values = ["X"]  # forward values, in order
        self.scratch: list[str] = []  # buffers forward_kernel needs besides the values (im2col columns, xhat ...)
        # the shape entering each node (graph.shapes); images flow as (N, C*H*W) arrays, NCHW order
        self.shapes = shapes
        self.widths: list[int] = [features(shapes[0])] if shapes and shapes[0] is not None else []
        self.forward: list = []
        self.backward: list = []
        self.loss: list = []
        # ops with a training and an inference mode (batch norm, dropout): arrays kept between
        # steps (running averages), masks passed in, scratch arrays the forward pass needs,
        # the inference-mode forward statements, what a step does after the update
        self.state: list[tuple[str, tuple]] = []
        self.masks: list[tuple[str, int, float]] = []  # (name, width, drop probability)
        self.scales: list[str] = []  # parameters that start at one (a normalisation's g)
        self.inference: list = []
        self.after_update: list = []
        self.penalty: list = []  # L2 penalties: added to the loss, then to the gradients
        self.penalty_backward: list = []
        self.views: dict[str, str] = {}  # another name for an array (a flattened image): name -> array
        self.input_gradient = input_gradient  # dL/dX too (a transcript of a layer alone shows it)
        self.by_node: list[NodeStatements] = []  # what each node added, for readers that walk node by node
        for use, names in zip(uses, chain_names(graph)):
            self.names = names  # the value and parameters this node gives, as graph.chain_names named them
            before, self._inference_statements = len(self.forward), None
            backward_before, loss_before, self.shown = len(self.backward), self.loss, {}
            lowering(use.op, use.where)(self, use)
            added = self.forward[before:]
            self.inference += added if self._inference_statements is None else self._inference_statements
            self.by_node.append(NodeStatements(added, self.backward[:len(self.backward) - backward_before],
                                               self.loss if self.loss is not loss_before else [], self.shown))

    def array_shapes(self) -> dict:
        """Each array's shape (the batch as N): the input, the buffers and the parameters, and
        each one's gradient d<name> (the last value's is given, not a buffer, where a spec ends
        without a loss)."""
        inputs = self.shapes[0] if isinstance(self.shapes[0], int) else features(self.shapes[0])
        shapes = {"X": (N, inputs), **dict(self.buffers), **dict(self.params)}
        shapes |= {view: shapes[array] for view, array in self.views.items()}
        return {**{f"d{name}": shape for name, shape in shapes.items()}, **shapes}

    @property
    def has_modes(self) -> bool:
        """True when training and inference differ (state or masks): the module's API grows."""
        return bool(self.state or self.masks)

    @property
    def width(self):
        return self.widths[-1]

    def show(self, value: sp.Symbol, name: str, *indices: sp.Symbol) -> sp.Symbol:
        """A kernel local that a transcript shows as a quantity: the row maximum zmax of row n
        as z1max[n], a row's loss as L_n[n]."""
        self.shown[value] = (name, indices)
        return value

    def sources(self, use) -> list[str]:
        """The arrays a node reads: in a chain, the value before it; a node of several inputs
        (add, mul, lowered alone for their per-layer kernels) reads the arrays its inputs name."""
        return [self.values[-1]] if len(use.inputs) == 1 else list(use.inputs)

    def buffer(self, name, shape):
        self.buffers.append((name, shape))
        return name

    def derivation(self, op) -> Derivation:
        d = derivation(op)
        return d if self.variant is None else self.variant(op, d)

    def prepend_backward(self, statements):
        self.backward = statements + self.backward

    def each_element(self, *body, width=None):
        """for n in range(N): for j in range(width): body"""
        return Loop(n, N, (Loop(j, self.width if width is None else width, body),))

    