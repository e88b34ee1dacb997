"""The graph model: named values and the op nodes that compute them.

A ``Graph`` is a tuple of ``Node``s in an order where every node comes after the values it
reads. A node holds its op, the op's parsed arguments, where it was written, the name of the
value it produces (``name``) and the names of the values it reads (``inputs``). Two kinds of
source parse into it:

- a net spec such as ``"affine(784,100) relu affine(100,10) softmax-cross-entropy"``
  (``parse_net``; a network file through ``Network.to_graph``): a chain, one node per written
  layer with an op of the registry (``Affine``, ``Elementwise``, a loss ...). Its values are
  named by position: layer k reads ``v<k-1>`` (the first reads the input ``X``) and gives
  ``v<k>``; the layers' parameters belong to their ops (``param_shapes``). A net file
  (``netfile.py``, the built-in layer examples) is such a spec with its numbers; for its
  transcript alone the chain may end without a loss (``loss_optional``);
- a graph file (``graphfile.parse_graph``): one node per staged formula (``q = "x + y"``), its
  op an ``ops.expression.Expression`` that reads the named inputs, parameters and nodes its
  formula uses.

What a node may take and give is asked of its op (``parse_args``, ``input_width``,
``output_width``, ``param_shapes``, ``is_loss``; an expression's ``formula`` and
``local_partial``): nothing here, and nothing in codegen, branches on an op's name. Codegen
lowers a Graph by dispatching on each op's type. ``spec``, ``shapes`` and ``widths`` describe a
chain; ``consumers`` and ``ancestors`` follow the names of any graph.

Between layers flows a *shape*: an int (features per example) or a tuple (C, H, W) (images per
example, NCHW). A network of images starts with ``input(C,H,W)``, or with a conv2d whose
in-channels are given and whose image size is the smallest square one for which every later
width chains (``conv2d(1,30,5) maxpool(2) flatten affine(4320,100)`` -> 1x28x28; a larger image
that floor division in a pooling layer maps to the same widths would lose rows).
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import SympropError
from .layers import REGISTRY, formula_layer
from .ops.base import fresh_name
from .ops.builders import features

EXAMPLE_SPEC = "affine(784,100) relu affine(100,10) softmax-cross-entropy"


@dataclass(frozen=True)
class Node:
    """One op applied to named values: the op, its arguments, where it was written, the value
    it gives and the values it reads (left out, a chain's: ``v<position>`` reading the value
    before it, ``X`` for the first)."""

    op: object
    args: tuple
    text: str
    position: int  # 1-based layer number in the spec (a graph file: place in the graph's order)
    column: int  # 1-based column in the spec (a graph file: 0; GraphFile.lines has its line)
    name: str = ""  # the value this node gives
    inputs: tuple[str, ...] | None = None  # the values it reads

    def __post_init__(self):
        if not self.name:
            object.__setattr__(self, "name", f"v{self.position}")
        if self.inputs is None:
            object.__setattr__(self, "inputs", (f"v{self.position - 1}" if self.position > 1 else "X",))

    @property
    def where(self) -> str:
        return f"net spec, layer {self.position} {self.text!r} (column {self.column})"

    @property
    def canonical(self) -> str:
        """The node as the canonical spec writes it: arguments as parsed, no spaces, so
        "affine(784, 100)" and "affine(784,100)" name one network (one module, one cache file).
        A formula keeps its text: its parser owns what is equivalent there."""
        name, _, _ = self.text.partition("(")
        if name == "formula" or not self.args:
            return self.text
        return f"{name}({self.op.format_args(self.args)})"


@dataclass(frozen=True)
class Graph:
    """Op nodes over named values, each after the values it reads. From a net spec: a chain
    from the input X (``input_size`` features) to the loss."""

    nodes: tuple[Node, ...]
    image: tuple[int, int, int] | None = None  # (C, H, W) of an input of images
    image_written: bool = False  # the spec began with input(C,H,W)
    features: int | None = None  # input features no layer fixes (parse_net's input_width: transcripts only)

    def node(self, name: str) -> Node:
        """The node that gives the value ``name`` (KeyError for a value no node gives)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def consumers(self, name: str) -> list[str]:
        """The nodes that read the value ``name``, in the graph's order."""
        return [node.name for node in self.nodes if name in node.inputs]

    def ancestors(self, name: str) -> set[str]:
        """Every value ``name`` depends on (itself included)."""
        made = {node.name: node for node in self.nodes}
        found, stack = set(), [name]
        while stack:
            value = stack.pop()
            if value not in found:
                found.add(value)
                if value in made:
                    stack.extend(made[value].inputs)
        return found

    @property
    def spec(self) -> str:
        """The canonical spec: the layers one space apart, each as Node.canonical writes it."""
        start = [f"input({','.join(map(str, self.image))})"] if self.image_written else []
        return " ".join(start + [node.canonical for node in self.nodes])

    @property
    def shapes(self) -> list:
        """The shape entering each node (features: int; images: (C, H, W)), then the last value's."""
        shapes = [self.image or self.features or self.nodes[0].op.input_width(self.nodes[0].args)]
        for node in self.nodes:
            shapes.append(node.op.output_width(node.args, shapes[-1]))
        return shapes

    @property
    def loss(self):
        return self.nodes[-1].op

    @property
    def widths(self) -> list[int]:
        """The number of features entering each node, then the width of the last value
        (an image counts C*H*W features, in NCHW order)."""
        return [features(shape) for shape in self.shapes]

    @property
    def input_size(self) -> int:
        return self.widths[0]

    @property
    def output_size(self) -> int:
        """The width of the scores the loss takes (and of the targets T)."""
        return self.widths[-2]


@dataclass(frozen=True)
class Names:
    """What one node of a net spec is called: the value it gives (None for a loss, which gives
    L) and its parameters (role -> name, W -> W1)."""

    value: str | None
    params: dict
    layer: int  # the number in the names: how many layers (affine, conv2d) have started so far


def chain_names(graph: Graph) -> list[Names]:
    """The names of every node's value and parameters, chosen once from the ops' own naming
    (Op.value_stem, starts_layer, param_names): W1, b1, z1 for the first affine layer, h1 for
    the activation after it, g2 for a per-feature scale after the second. The kernels, the
    transcripts and the checker's keys all read these."""
    layer, values, taken, names = 0, ["X"], set(), []
    for node, shape in zip(graph.nodes, graph.shapes):
        op = node.op
        layer += op.starts_layer
        value = None if op.value_stem is None else fresh_name(f"{op.value_stem}{layer}", values)
        params = op.param_names([role for role, _ in op.param_shapes(node.args, shape)], layer, node.position, taken)
        taken |= set(params.values())
        values += [value] if value else []
        names.append(Names(value, params, layer))
    return names


def _tokens(spec: str):
    """Split a spec at spaces outside parentheses; yield (text, column)."""
    depth, start = 0, None
    for i, char in enumerate(spec + " "):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SympropError(f"net spec {spec!r}: unbalanced ')' at column {i + 1}")
        if char.isspace() and depth == 0:
            if start is not None:
                yield spec[start:i], start + 1
                start = None
        elif start is None:
            start = i
    if depth:
        raise SympropError(f"net spec {spec!r}: a '(' is never closed")


def _node(text: str, position: int, column: int, registry) -> Node:
    where = f"net spec, layer {position} {text!r} (column {column})"
    name, _, rest = text.partition("(")
    if rest and not rest.endswith(")"):
        raise SympropError(f"{where}: expected NAME or NAME(ARGS)")
    inner = rest[:-1] if rest else None
    if name == "formula":
        if inner is None or not inner.strip():
            raise SympropError(f"{where}: formula() needs an expression in x")
        try:
            op = formula_layer(inner.strip())
        except SympropError as exc:
            raise SympropError(f"{where}: {exc}") from None
        # one line wherever the spec is echoed (a module's SPEC and header), whatever the whitespace
        return Node(op, (), f"formula({op.formula})", position, column)
    if name not in registry:
        raise SympropError(f"{where}: unknown layer {name!r}; known: {', '.join(registry)}, formula(EXPR)")
    op = registry[name]
    problem = op.network_problem()
    if problem:
        raise SympropError(f"{where}: {problem}")
    return Node(op, op.parse_args(inner, where), text, position, column)


def parse_net(spec: str, registry=REGISTRY, *, loss_optional: bool = False, input_width: int | None = None) -> Graph:
    """The graph of a spec, checked: known ops, sizes that chain, a loss at the end.

    For a transcript whose values give the upstream gradient of the last value (a layer alone,
    as ``symbolic/nets/relu-layer.toml``): ``loss_optional`` lets the spec end without a loss,
    and ``input_width`` (X's columns) sizes a spec whose first layer fixes no width (``relu``).
    Codegen, training and generate never pass them, so they refuse such specs as before."""
    if not isinstance(spec, str) or not spec.strip():
        raise SympropError(f"net spec is empty; example: {EXAMPLE_SPEC!r}")
    tokens = list(_tokens(spec))
    if len(tokens) > MAX_LAYERS:
        raise SympropError(f"net spec has {len(tokens)} layers; the limit is {MAX_LAYERS}")
    image = None
    if tokens and tokens[0][0].startswith("input("):
        image = _input_shape(*tokens.pop(0))
        if not tokens:
            raise SympropError(f"net spec {spec!r}: input(C,H,W) needs layers after it; example: {EXAMPLE_SPEC!r}")
    nodes = tuple(_node(text, position, column, registry)
                  for position, (text, column) in enumerate(tokens, 1))
    written = image is not None
    if image is None and nodes[0].op.input_channels(nodes[0].args) is not None:
        image = _infer_image(nodes)
    features = input_width if image is None and nodes[0].op.input_width(nodes[0].args) is None else None
    _check_chain(nodes, registry, image or features, loss_optional)
    return Graph(nodes, image, written, features)


def _input_shape(text, column):
    """(C, H, W) from input(C,H,W), the images a network starts with."""
    inner = text[len("input("):-1] if text.endswith(")") else ""
    try:
        shape = tuple(int(a) for a in inner.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise SympropError(f"net spec, {text!r} (column {column}): input needs three positive sizes "
                           "(channels, height, width), e.g. input(1,28,28)")
    return shape


MAX_INFERRED_SIDE = 4096
# layers in one spec: a deeper module takes numba minutes to compile (500 layers: 2 minutes,
# then out of memory); the deepest network a hand calculation or a lesson uses is far shallower
MAX_LAYERS = 64


def _infer_image(nodes):
    """The smallest square image (C, side, side) for which every layer's shape chains, C being
    the first layer's in-channels; a later layer with a fixed width (affine) must pin it down."""
    first = nodes[0]
    if not any(node.op.input_width(node.args) is not None for node in nodes):
        raise SympropError(f"net spec, layer 1 {first.text!r}: nothing fixes the image size; "
                           "start the spec with input(C,H,W), e.g. input(1,28,28)")
    channels = first.op.input_channels(first.args)
    for side in range(1, MAX_INFERRED_SIDE + 1):
        shape = (channels, side, side)
        for node in nodes:
            wanted = node.op.input_width(node.args)
            if node.op.shape_problem(node.args, shape) or (wanted is not None and wanted != shape):
                break
            shape = node.op.output_width(node.args, shape)
        else:
            return (channels, side, side)
    try:  # a spec that fails for every size may have another problem (no flatten, a loss inside)
        _check_chain(nodes, REGISTRY, (channels, MAX_INFERRED_SIDE, MAX_INFERRED_SIDE))
    except SympropError as exc:
        if "but the layer before gives" not in str(exc) or "flatten" in str(exc):
            raise
    raise SympropError(f"net spec, layer 1 {first.text!r}: no square image up to {MAX_INFERRED_SIDE} pixels "
                       "makes the layers' sizes chain; start the spec with input(C,H,W)")


def _described(shape) -> str:
    """A shape in words: 6 features, sequences (3, 2) of 3 steps of 2 values, images (1, 4, 4)."""
    if not isinstance(shape, tuple):
        return f"{shape} features"
    if len(shape) == 2:
        return f"sequences {shape} of {shape[0]} steps of {shape[1]} values"
    return f"images {shape}"


def _check_chain(nodes, registry, start=None, loss_optional=False):
    """start: the shape entering the first node where the spec gives it (an image, or the
    features of parse_net's input_width)."""
    first, last = nodes[0], nodes[-1]
    if start is None and first.op.input_width(first.args) is None:
        raise SympropError(f"net spec, layer 1 {first.text!r}: a network starts with an affine layer "
                           "(it fixes the input size), a conv2d layer or input(C,H,W)")
    if not last.op.is_loss and not loss_optional:
        raise SympropError(f"net spec, layer {last.position} {last.text!r}: a network ends with a loss "
                           f"({', '.join(n for n, op in registry.items() if op.is_loss)})")
    width = start
    for node in nodes:
        if node.op.is_loss and node is not last:
            raise SympropError(f"{node.where}: a loss can only be the last layer")
        wanted = node.op.input_width(node.args)
        if wanted == (1, width):
            width = wanted  # D features are a sequence of one step of D values, in the same columns
        sequences = any(isinstance(shape, tuple) and len(shape) == 2 for shape in (width, wanted))
        if width is not None and wanted is not None and wanted != width and sequences:
            hint = "; put flatten before it" if not isinstance(wanted, tuple) else ""
            raise SympropError(f"{node.where}: takes {_described(wanted)} but the layer before gives "
                               f"{_described(width)}{hint}")
        if isinstance(width, tuple) and wanted is not None and wanted != width:
            raise SympropError(f"{node.where}: takes {wanted} features but the layer before gives images "
                               f"{width} ({features(width)} values); put flatten before it")
        if width is not None and wanted is not None and wanted != width:
            raise SympropError(f"{node.where}: takes {wanted} inputs but the layer before gives {width}")
        problem = node.op.shape_problem(node.args, width if width is not None else wanted)
        if problem:
            raise SympropError(f"{node.where}: {problem}")
        width = node.op.output_width(node.args, width)
    before = nodes[-2] if len(nodes) > 1 else None
    if before is not None and last.op.applies and last.op.applies == before.op.name:
        raise SympropError(f"net spec, layer {before.position} {before.text!r}: {last.op.name} takes "
                           f"logits and applies the {before.op.name} itself; remove this layer")
