"""Network files: a small TOML format in which a learner writes a network for hand calculation.

A file names every input, unit, weight and bias, gives their values, the targets, the loss,
the learning rate and how many gradient steps to take (format documented in README.md,
"Network files"). Numbers become exact SymPy Rationals (``0.1`` is 1/10, ``"1/3"`` is 1/3),
so the transcript is exact. Every mistake in a file is reported as a ``SympropError`` naming
the file, the line and the field; the file is read with the standard library's ``tomllib``
and never executed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import sympy as sp

from .errors import SympropError
from .userfiles import parse_toml, read_text
from .layers import REGISTRY, Elementwise, ElementwiseLoss, formula_layer
from .numbers import exact_number
from .steps import RULES

# The losses a network file knows besides the registry's (here, not in the transcript, so
# that reading a network file imports no transcript code).
# Cross-entropy on the output units' values y (not on logits, as the registry's
# binary-cross-entropy is): what a hand calculation with sigmoid outputs writes down.
CROSS_ENTROPY = ElementwiseLoss("cross-entropy", "-t*log(y) - (1 - t)*log(1 - y)",
                                "binary cross-entropy of each output unit", reduction="sum")
# Squared error without the 1/2: not a network-file loss, a convention the checker tries.
SUM_OF_SQUARES = ElementwiseLoss("sum-of-squares", "(y - t)**2", "sum of squared errors, no 1/2",
                                 reduction="sum")
EXTRA_LOSSES = {"cross-entropy": CROSS_ENTROPY, "sum-of-squares": SUM_OF_SQUARES}


def loss_op(name: str):
    """The loss op of a network file's `loss` field (cross-entropy and sum-of-squares too)."""
    return EXTRA_LOSSES.get(name) or REGISTRY[name]


LOSSES = ("squared-error", "mse", "cross-entropy", "huber")
ACTIVATIONS = tuple(name for name, layer in REGISTRY.items()
                    if isinstance(layer, Elementwise) and layer.inputs == ("x",))
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
NUMBER = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*\Z")
FRACTION = re.compile(r"\s*[+-]?\d+\s*/\s*\d+\s*\Z")
ARRAY_HEADER = re.compile(r"\[\[\s*([A-Za-z][A-Za-z0-9_.-]*)\s*\]\]\Z")  # [[layers]]
TABLE_HEADER = re.compile(r"\[\s*([A-Za-z][A-Za-z0-9_.-]*)\s*\]\Z")  # [inputs]; not a row [0.3, 0.4]]
MAX_MAGNITUDE = 1e6
MAX_STEPS = 10_000  # published examples run 10,000 (Mazur's); above FULL_STEPS a table (network_table.py)
FULL_STEPS = 100  # up to this many steps every step is written out in full
RESERVED = {"E", "E_new", "learning_rate"}  # names the transcript itself uses
TOP_LEVEL = {"title", "description", "title_zh", "description_zh", "loss", "learning_rate", "steps", "update_biases",
             "optimizer", "inputs", "targets", "layers"}
LAYER_FIELDS = {"units", "size", "activation", "weights", "weight_names", "bias", "bias_names"}


@dataclass
class Layer:
    """One fully connected layer: unit j gets net_j = sum_i weights[i][j] * in_i + bias_j."""

    units: list[str]
    activation: Elementwise
    weights: list[list[sp.Rational]]  # weights[i][j]: from input i to unit j
    weight_names: list[list[str]]
    biases: list[sp.Rational]  # one value when shared by all units, else one per unit
    bias_names: list[str]

    @property
    def shared_bias(self) -> bool:
        return len(self.biases) == 1 and len(self.units) > 1

    def bias_of(self, j: int) -> str:
        return self.bias_names[0 if len(self.bias_names) == 1 else j]


@dataclass
class Network:
    """A network with all its numbers, as a network file defines it."""

    title: str
    description: str
    source: str  # file name, for messages
    input_names: list[str]
    inputs: list[sp.Rational]
    target_names: list[str]
    targets: list[sp.Rational]
    layers: list[Layer]
    loss: str
    learning_rate: sp.Rational
    steps: int
    update_biases: bool
    title_zh: str = ""
    description_zh: str = ""
    optimizer: str = "sgd"  # an update rule of symbolic/steps.py; learning_rate is its lr
    optimizer_settings: dict | None = None  # its other hyper-parameters, exact, defaults filled in

    @property
    def plain_gradient_descent(self) -> bool:
        """p_new = p - learning_rate * dE/dp (the seeds' update), not an optimiser's lines."""
        return self.optimizer == "sgd" and not (self.optimizer_settings or {}).get("weight_decay")

    def parameters(self) -> dict[str, sp.Rational]:
        """Every weight and bias by name, layer by layer (weights first, then biases)."""
        values = {}
        for layer in self.layers:
            for i, row in enumerate(layer.weights):
                for j, w in enumerate(row):
                    values[layer.weight_names[i][j]] = w
            for name, b in zip(layer.bias_names, layer.biases):
                values[name] = b
        return values

    def to_graph(self):
        """The network in the graph model, and its numbers under the graph's names.

        Returns (Graph, values): the layer stack a net spec would write (``affine(2,2) sigmoid
        ... squared-error``, ``affine-shared-bias`` where one bias serves a layer) and
        {"X": [inputs], "T": [targets], "W1": weights, "b1": biases, ...} as one batch row,
        the names the code generator and ``graph_transcript`` use."""
        from .graph import Graph, Node

        ops, values, width = [], {"X": [list(self.inputs)], "T": [list(self.targets)]}, len(self.inputs)
        for k, layer in enumerate(self.layers, 1):
            affine = REGISTRY["affine-shared-bias" if layer.shared_bias else "affine"]
            ops += [(affine, (width, len(layer.units))), (layer.activation, ())]
            values[f"W{k}"], values[f"b{k}"] = layer.weights, layer.biases
            width = len(layer.units)
        ops.append((loss_op(self.loss), ()))
        nodes, column = [], 1
        for position, (op, args) in enumerate(ops, 1):
            text = f"{op.name}({','.join(map(str, args))})" if args else op.name
            nodes.append(Node(op, args, text, position, column))
            column += len(text) + 1
        return Graph(tuple(nodes)), values


class _Where:
    """Finds the line of a field in the file's text, for error messages."""

    def __init__(self, path: str, text: str):
        self.path, self.lines = path, text.splitlines()

    def line_of(self, key: str, layer: int | None = None, section: str | None = None) -> int | None:
        """Line (1-based) of ``key = ...`` at the top level, in [section], or in [[layers]] number layer."""
        header, layers_seen = None, -1
        for number, raw in enumerate(self.lines, 1):
            line = raw.split("#", 1)[0].strip()
            array_header = ARRAY_HEADER.match(line)
            if array_header:
                header = array_header.group(1)
                layers_seen += header == "layers"
                if layer is not None and header == "layers" and layers_seen == layer and key == "":
                    return number
                continue
            table_header = TABLE_HEADER.match(line)
            if table_header:
                header = table_header.group(1)
                if section is not None and header == section and key == "":
                    return number
                continue
            match = re.match(r'["\']?([A-Za-z0-9_\-/\[\],:]+)["\']?\s*=', line)
            if not match:
                continue
            found = match.group(1)
            if layer is not None:
                if header == "layers" and layers_seen == layer and found == key:
                    return number
            elif section is not None:
                if header == section and found == key:
                    return number
                if header is None and found == section:  # inline table: inputs = {...}
                    return number
            elif header is None and found == key:
                return number
        return None

    def refuse_unknown(self, table: dict, known, layer: int | None = None, section: str | None = None):
        """Fail on the first field of ``table`` outside ``known``, listing the known ones."""
        for key in table:
            if key not in known:
                self.fail(f"unknown field (known: {', '.join(sorted(known))})", key, layer, section)

    def fail(self, message: str, key: str = "", layer: int | None = None, section: str | None = None):
        line = self.line_of(key, layer, section)
        if line is None and (layer is not None or section is not None):
            line = self.line_of("", layer, section)
        field = key
        if layer is not None:
            field = f"layers[{layer + 1}]" + (f".{key}" if key else "")
        elif section is not None:
            field = section + (f".{key}" if key else "")
        where = f"{self.path}" + (f", line {line}" if line else "") + (f", field {field!r}" if field else "")
        raise SympropError(f"{where}: {message}")


def _number(value, fail) -> sp.Rational:
    """An exact Rational from a TOML number or a string such as "0.05" or "1/3"."""
    number = _parse_number(value, fail)
    if abs(number) > MAX_MAGNITUDE:
        fail(f"{value!r} is larger than {MAX_MAGNITUDE:g} in size; a hand calculation needs moderate numbers")
    return number


def _parse_number(value, fail) -> sp.Rational:
    if isinstance(value, bool):
        fail(f"expected a number, got {str(value).lower()}")
    if isinstance(value, int):
        return sp.Integer(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            fail(f"expected a finite number, got {value}")
        return sp.Rational(repr(value))
    if isinstance(value, str) and (NUMBER.match(value) or FRACTION.match(value)):
        try:
            return exact_number(value, "number")
        except SympropError as exc:
            fail(str(exc).removeprefix("number: "))
    fail(f"expected a number, got {value!r}")


def _name(value, fail) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        fail(f"{value!r} is not a name (a letter, then letters, digits or _)")
    return value


def _pattern(pattern: str, layer: int, i: int | None = None, j: int | None = None) -> str:
    """Fill {l}, {i}, {j} (1-based) in a name pattern; plain replacement, never str.format."""
    text = pattern.replace("{l}", str(layer))
    if i is not None:
        text = text.replace("{i}", str(i))
    if j is not None:
        text = text.replace("{j}", str(j))
    return text


def load_network(path) -> Network:
    """Read and check a network file; SympropError (file, line, field) for any mistake."""
    path = Path(path)
    text = read_text(path, "network file")
    return parse_network(text, str(path))


def parse_network(text: str, source: str = "<network>") -> Network:
    where = _Where(source, text)
    data = parse_toml(text, source)

    where.refuse_unknown(data, TOP_LEVEL)

    def top(key, kind=None, default=...):
        if key not in data:
            if default is ...:
                raise SympropError(f"{source}: missing field {key!r}")
            return default
        value = data[key]
        if kind is not None and not isinstance(value, kind):
            where.fail(f"expected {kind.__name__ if isinstance(kind, type) else 'a ' + kind[0].__name__}, "
                       f"got {type(value).__name__}", key)
        return value

    title = top("title", str, default=Path(source).stem)
    description = top("description", str, default="")
    title_zh = top("title_zh", str, default="")
    description_zh = top("description_zh", str, default="")
    loss = top("loss", str)
    if loss not in LOSSES:
        where.fail(f"unknown loss {loss!r} (known: {', '.join(LOSSES)})", "loss")
    learning_rate = _number(top("learning_rate"), lambda m: where.fail(m, "learning_rate"))
    steps = top("steps", int, default=1)
    if isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        where.fail(f"steps must be a whole number from 1 to {MAX_STEPS:,} (up to {FULL_STEPS} are written out "
                   f"step by step; more: the first step, then a table), got {steps!r}", "steps")
    update_biases = top("update_biases", bool, default=True)
    optimizer, settings = _optimizer(data.get("optimizer", "sgd"), where)
    if steps > FULL_STEPS and (optimizer != "sgd" or (settings or {}).get("weight_decay")):
        where.fail(f"more than {FULL_STEPS} steps are run as a table of plain gradient descent; with "
                   f"optimizer {optimizer!r} write at most {FULL_STEPS} steps", "steps")

    input_names, inputs = _named_values(data, "inputs", where, source)
    target_names, targets = _named_values(data, "targets", where, source)

    raw_layers = top("layers", list)
    if not raw_layers or not all(isinstance(layer, dict) for layer in raw_layers):
        raise SympropError(f"{source}: 'layers' must be one or more [[layers]] tables")
    layers, previous = [], input_names
    for index, raw in enumerate(raw_layers):
        layer = _layer(raw, index, previous, where)
        layers.append(layer)
        previous = layer.units
    if len(targets) != len(layers[-1].units):
        where.fail(f"{len(targets)} targets for {len(layers[-1].units)} output units "
                   f"({', '.join(layers[-1].units)})", section="targets")

    names = input_names + target_names
    for layer in layers:
        names += layer.units + [n for row in layer.weight_names for n in row] + layer.bias_names
    seen = set()
    for name in names:
        if name in RESERVED or name.endswith(("_new", "_trained")) or name.startswith("net_") or re.match(r"step\d", name):
            raise SympropError(f"{source}: the name {name!r} is taken by the transcript (E, E_new, learning_rate, "
                               "and names starting with net_ or step<digit> or ending in _new or _trained); "
                               "choose another")
        if name in seen:
            raise SympropError(f"{source}: the name {name!r} is used twice; every input, target, unit, "
                               "weight and bias needs its own name")
        seen.add(name)
    if loss == "cross-entropy" and not all(0 < t < 1 or t in (0, 1) for t in targets):
        where.fail("cross-entropy needs targets between 0 and 1", section="targets")
    return Network(title, description, source, input_names, inputs, target_names, targets, layers,
                   loss, learning_rate, steps, update_biases, title_zh, description_zh, optimizer, settings)


def _optimizer(value, where):
    """optimizer = "adam", or a table: [optimizer] name = "adam", beta1 = 0.9, ... (numbers exact,
    each checked against the rule's interval; the learning rate stays the top-level field)."""
    if isinstance(value, str):
        value = {"name": value}
        fail = lambda m, key="": where.fail(m, "optimizer")  # noqa: E731
    elif isinstance(value, dict):
        fail = lambda m, key="": where.fail(m, key, section="optimizer")  # noqa: E731
    else:
        where.fail(f"expected an optimizer name or a table with name = ..., got {type(value).__name__}", "optimizer")
    name = value.get("name")
    if name not in RULES:
        fail(f"unknown optimizer {name!r} (known: {', '.join(RULES)})", "name")
    rule = RULES[name]
    settings = {}
    for key, number in value.items():
        if key == "name":
            continue
        if key == "lr":
            fail("the learning rate is the top-level field learning_rate", key)
        if key not in rule.hyper_names:
            fail(f"optimizer {name} has no hyper-parameter {key!r} "
                 f"(it takes {', '.join(h for h in rule.hyper_names if h != 'lr')})", key)
        exact = _number(number, lambda m, key=key: fail(m, key))
        hyper = rule.hyper_parameter(key)
        if not hyper.contains(float(exact)):
            fail(f"{key} must be in {hyper.interval()} ({hyper.description}), got {number!r}", key)
        settings[key] = exact
    for hyper in rule.hyper:
        if hyper.name != "lr":
            settings.setdefault(hyper.name, sp.Rational(repr(hyper.default)))
    return name, settings


def _named_values(data, section, where, source):
    """[inputs] / [targets]: name = number, in file order."""
    if section not in data:
        raise SympropError(f"{source}: missing section [{section}] (name = value lines)")
    table = data[section]
    if not isinstance(table, dict) or not table:
        where.fail("expected a table of name = value lines", section=section)
    names, values = [], []
    for key, value in table.items():
        fail = lambda m, key=key: where.fail(m, key, section=section)  # noqa: E731
        names.append(_name(key, fail))
        values.append(_number(value, fail))
    return names, values


def _layer(raw: dict, index: int, previous: list[str], where: _Where) -> Layer:
    number = index + 1

    def fail(message, key=""):
        where.fail(message, key, layer=index)

    where.refuse_unknown(raw, LAYER_FIELDS, layer=index)
    if "units" in raw:
        units = raw["units"]
        if not isinstance(units, list) or not units:
            fail("expected a list of unit names", "units")
        units = [_name(u, lambda m: fail(m, "units")) for u in units]
    elif "size" in raw:
        size = raw["size"]
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 64:
            fail(f"size must be a whole number from 1 to 64, got {size!r}", "size")
        units = [f"u{number}_{j}" for j in range(1, size + 1)]
    else:
        fail("missing field 'units' (or 'size')")

    if "activation" not in raw:
        fail("missing field 'activation'")
    activation = _activation(raw["activation"], lambda m: fail(m, "activation"))

    if "weights" not in raw:
        fail("missing field 'weights'")
    weights = raw["weights"]
    rows, cols = len(previous), len(units)
    shape_message = (f"weights must be {rows} rows (one per input: {', '.join(previous)}) of {cols} "
                     f"numbers (one per unit: {', '.join(units)})")
    if not isinstance(weights, list) or len(weights) != rows or not all(
            isinstance(row, list) and len(row) == cols for row in weights):
        got = (f"{len(weights)} rows of lengths {[len(r) if isinstance(r, list) else '-' for r in weights]}"
               if isinstance(weights, list) else type(weights).__name__)
        fail(f"{shape_message}; got {got}", "weights")
    weights = [[_number(w, lambda m: fail(m, "weights")) for w in row] for row in weights]

    spec = raw.get("weight_names", f"w{{l}}_{{i}}{{j}}")
    if isinstance(spec, str):
        weight_names = [[_pattern(spec, number, i + 1, j + 1) for j in range(cols)] for i in range(rows)]
    elif isinstance(spec, list) and len(spec) == rows and all(isinstance(r, list) and len(r) == cols for r in spec):
        weight_names = [list(r) for r in spec]
    else:
        fail(f"weight_names must be a pattern such as \"a{{i}}{{j}}\" or a {rows} x {cols} list of names",
             "weight_names")
    for row in weight_names:
        for name in row:
            _name(name, lambda m: fail(m, "weight_names"))

    if "bias" not in raw:
        fail("missing field 'bias' (one number shared by the layer's units, or one per unit; 0 for none)")
    bias = raw["bias"]
    if isinstance(bias, list):
        if len(bias) != cols:
            fail(f"bias must be one number (shared) or {cols} numbers (one per unit); got {len(bias)}", "bias")
        biases = [_number(b, lambda m: fail(m, "bias")) for b in bias]
    else:
        biases = [_number(bias, lambda m: fail(m, "bias"))]
    per_unit = len(biases) > 1 or cols == 1 and isinstance(bias, list)
    spec = raw.get("bias_names", f"b{{l}}_{{j}}" if per_unit else "b{l}")
    if isinstance(spec, str):
        bias_names = ([_pattern(spec, number, j=j + 1) for j in range(cols)] if len(biases) > 1
                      else [_pattern(spec, number, j=1)])
    elif isinstance(spec, list) and len(spec) == len(biases):
        bias_names = list(spec)
    else:
        fail(f"bias_names must be a name pattern or a list of {len(biases)} names", "bias_names")
    for name in bias_names:
        _name(name, lambda m: fail(m, "bias_names"))
    return Layer(units, activation, weights, weight_names, biases, bias_names)


def _activation(value, fail) -> Elementwise:
    """A registered activation by name, or a formula in x (parsed safely, never eval'd)."""
    if not isinstance(value, str):
        fail(f"expected an activation name or a formula in x, got {value!r}")
    if NAME.match(value.strip()) and value.strip() != "x":
        if value.strip() not in ACTIVATIONS:
            fail(f"unknown activation {value!r} (known: {', '.join(ACTIVATIONS)}, or a formula in x "
                 "such as \"x/(1 + abs(x))\")")
        return REGISTRY[value.strip()]
    try:
        return formula_layer(value)
    except SympropError as exc:
        fail(str(exc))
