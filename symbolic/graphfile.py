"""Graph files: a computational graph (a "circuit") that a learner writes for hand calculation.

A graph file is TOML (format in README.md, "Graph files"): given inputs and parameters with
their values, named staged expressions (``q = "x + y"``, ``f = "q * z"``) in the safe formula
language with several variables, the output node, and optionally an upstream gradient
``dout``, a loss node, an update (descent or ascent, several steps), a small data set and
``dtype = "float32"``. It is read with ``tomllib`` and never executed: every formula goes
through ``parse_formula``'s whitelist. Every mistake (a cycle, an undefined or repeated name,
a formula outside the whitelist, a division by zero at the given values) is a SympropError
naming the file, the line and the field.

The file parses into the one graph model: ``GraphFile.graph`` is a ``graph.Graph`` with one
``Node`` per staged formula, in topological order, whose op is an ``ops.expression.Expression``
(the formula, its text, the names it reads, its SymPy-derived local partials). ``GraphFile``
keeps what is not a node: the title, the inputs and parameters with their values, the output,
loss, dout, update, data, prediction and notes, and each node's line for messages. Its
``nodes``, ``arguments``, ``consumers`` and ``ancestors`` read the graph.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import sympy as sp

from .budget import OutOfTime, time_budget
from .errors import SympropError
from .formula import CONSTANTS, FUNCTIONS, parse_formula
from .graph import Graph, Node
from .magnitude import TooLarge
from .networkfile import _name, _number, _Where
from .ops.expression import CircuitLowering, Expression
from .transcript import carry
from .userfiles import is_toml_with, parse_toml, read_text

TOP_LEVEL = {"title", "description", "title_zh", "description_zh", "output", "loss", "dout", "dtype",
             "inputs", "parameters", "nodes", "update", "data", "predict", "notes", "notes_zh"}
UPDATE_FIELDS = {"rule", "learning_rate", "rate_name", "steps", "epochs", "table", "table_every"}
DATA_MODES = ("per-sample", "full-batch")
MAX_STEPS = 10_000
MAX_SAMPLES = 100
MAX_NODES = 200
MAX_CHECK_SECONDS = 5  # computing one node's exact value at the given values
# names the transcript writes itself; a graph may not use them for its own values
RESERVED = {"L", "dout", "learning_rate"}


@dataclass
class Update:
    """Gradient descent (or ascent) on the graph's parameters."""

    ascent: bool
    learning_rate: sp.Rational
    rate_name: str
    steps: int  # without data: steps; with data: epochs
    table: list[str]  # quantities printed per step (or per epoch)
    table_every: int


@dataclass
class Data:
    """Samples for the inputs named in ``columns``; per-sample updates or the full-batch mean."""

    columns: dict[str, list[sp.Rational]]
    mode: str

    @property
    def size(self) -> int:
        return len(next(iter(self.columns.values())))

    @property
    def per_sample(self) -> bool:
        """An update after each sample (an epoch of steps), rather than one on the batch's mean."""
        return self.mode == "per-sample"


@dataclass
class GraphFile:
    """A computational graph with all its numbers, as a graph file defines it."""

    title: str
    description: str
    source: str
    inputs: dict[str, sp.Rational]
    parameters: dict[str, sp.Rational]
    graph: Graph  # one node per staged formula, its op an Expression, in topological order
    output: str
    loss: str | None = None
    dout: sp.Rational | None = None
    update: Update | None = None
    data: Data | None = None
    dtype: str = "float64"
    title_zh: str = ""
    description_zh: str = ""
    lines: dict[str, int] = field(default_factory=dict)  # node name -> line, for messages
    # [predict]: other values of some inputs at which the output is shown before and after training
    predict: dict[str, sp.Rational] = field(default_factory=dict)
    # [notes] / [notes_zh]: a teacher's remark beside a line of the transcript, by its key
    notes: dict[str, str] = field(default_factory=dict)
    notes_zh: dict[str, str] = field(default_factory=dict)
    note_lines: dict[str, int] = field(default_factory=dict)  # key -> line in [notes], for messages
    # dtype written in the file: its numbers are then a program's, one IEEE operation at a time
    # in the order each formula is written (symbolic/ieee.py); unwritten, they are exact
    dtype_written: bool = False
    # a hand calculation's other convention for the nodes' local partials (rule_conventions.py:
    # the checker's variants): (op, partials) -> partials; None: as derived
    variant: object = None

    @property
    def full_batch(self) -> bool:
        """Data whose loss is the mean over all its samples (one update per step)."""
        return self.data is not None and not self.data.per_sample

    @property
    def arithmetic(self) -> str | None:
        """"float32" or "float64" when the file asks for a program's arithmetic, else None."""
        return self.dtype if self.dtype_written else None

    @property
    def objective(self) -> str:
        """The node whose gradient the transcript takes: the loss if there is one, else the output."""
        return self.loss or self.output

    def given(self) -> dict[str, sp.Rational]:
        return {**self.inputs, **self.parameters}

    @property
    def nodes(self) -> dict[str, sp.Expr]:
        """name -> formula over real symbols of earlier names, in the graph's order."""
        return {node.name: node.op.formula for node in self.graph.nodes}

    def lowering(self, taken=frozenset()) -> CircuitLowering:
        """The circuit's statements, each node lowered by its op (``taken``: names a kernel keeps
        for itself, which the values' symbols then avoid)."""
        return CircuitLowering(self.graph, [*self.inputs, *self.parameters], self.output, self.loss, self.dout, taken,
                              self.variant)

    def op(self, node: str) -> Expression:
        """The op of a node: its formula, forward and local partials."""
        return self.graph.node(node).op

    def consumers(self, name: str) -> list[str]:
        return self.graph.consumers(name)

    def ancestors(self, node: str) -> set[str]:
        """Every name the node depends on (itself included)."""
        return self.graph.ancestors(node)


MAX_VARIABLES = 12


def formula_variables(text: str) -> list[str]:
    """The variable names a formula uses, in order of first use (every name that is not a
    function or constant of the formula language). Only ``ast`` reads the text."""
    import ast
    try:
        tree = ast.parse(" ".join(str(text).split()).replace("^", "**"), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ["x"]  # parse_formula reports the syntax error with its column
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    names = []
    for node in sorted((n for n in ast.walk(tree) if isinstance(n, ast.Name)),
                       key=lambda n: (n.lineno, n.col_offset)):
        if id(node) not in called and node.id not in CONSTANTS and node.id not in names:
            names.append(node.id)
    return names or ["x"]


def formula_partials(text: str, where: str = "--formula") -> tuple[sp.Expr, dict[str, sp.Expr]]:
    """A formula in several variables and each partial derivative, simplified (SymPy's diff;
    max and min at a tie by the kink convention)."""
    variables = formula_variables(text)
    if len(variables) > MAX_VARIABLES:
        raise SympropError(f"{where}: {len(variables)} variables; the limit is {MAX_VARIABLES}")
    op = Expression(parse_formula(text, tuple(variables), where), text, tuple(variables))
    partials = {}
    for v, partial in op.partials.items():
        partials[v] = partial if partial.has(sp.Heaviside, sp.Piecewise) else min(
            (partial, sp.simplify(partial)), key=sp.count_ops)  # simplify can lengthen a quotient
    return op.formula, partials


def symbol(name: str) -> sp.Symbol:
    """The symbol parse_formula builds for a variable (real)."""
    return sp.Symbol(name, real=True)


def is_graph_file(path) -> bool:
    """True for a .toml file with a [nodes] table (a network file has [[layers]] instead)."""
    return is_toml_with(path, r"^\s*(\[\s*nodes\s*\]|nodes\s*=)", "graph file")


def load_graph(path) -> GraphFile:
    """Read and check a graph file; SympropError (file, line, field) for any mistake."""
    path = Path(path)
    return parse_graph(read_text(path, "graph file"), str(path))


def _duplicate_keys(text: str, source: str):
    """tomllib refuses a key written twice in one table without naming the field: name it."""
    section, seen = None, {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        header = re.match(r"\[\s*([A-Za-z][A-Za-z0-9_.-]*)\s*\]\Z", line)
        if header:
            section = header.group(1)
            continue
        match = re.match(r'["\']?([A-Za-z0-9_\-]+)["\']?\s*=', line)
        if match:
            key = (section, match.group(1))
            if key in seen:
                field_name = f"{section}.{key[1]}" if section else key[1]
                raise SympropError(f"{source}, line {number}, field {field_name!r}: the name {key[1]!r} is "
                                   f"used twice (first on line {seen[key]}); every name needs its own line")
            seen[key] = number


def parse_graph(text: str, source: str = "<graph>") -> GraphFile:
    _duplicate_keys(text, source)
    where = _Where(source, text)
    data = parse_toml(text, source)
    where.refuse_unknown(data, TOP_LEVEL)

    def top(key, kind, default):
        value = data.get(key, default)
        if key in data and not isinstance(value, kind):
            where.fail(f"expected {kind.__name__}, got {type(value).__name__}", key)
        return value

    title = top("title", str, Path(source).stem)
    description = top("description", str, "")
    title_zh, description_zh = top("title_zh", str, ""), top("description_zh", str, "")
    dtype_written = "dtype" in data
    dtype = top("dtype", str, "float64")
    if dtype not in ("float64", "float32"):
        where.fail(f"dtype must be \"float64\" or \"float32\", got {dtype!r}", "dtype")

    names: dict[str, str] = {}  # name -> the section that defines it, to refuse a name used twice

    def claim(name, section):
        fail = lambda m: where.fail(m, name, section=section)  # noqa: E731
        _name(name, fail)
        if name in names:
            fail(f"the name {name!r} is used twice (also in [{names[name]}]); every input, parameter "
                 "and node needs its own name")
        if name in FUNCTIONS or name in CONSTANTS:
            fail(f"{name!r} is a function or constant of the formula language; choose another name")
        if (name in RESERVED or name.endswith(("_new", "_direct", "_test", "_trained")) or "_via_" in name
                or re.match(r"(step|epoch)\d", name)):
            fail(f"the name {name!r} is taken by the transcript (L, dout, learning_rate, and names ending in "
                 "_new, _direct, _test or _trained, containing _via_, or starting with step<digit> or "
                 "epoch<digit>); choose another")
        names[name] = section

    def values(section, required):
        table = data.get(section, {})
        if section in data and (not isinstance(table, dict) or (required and not table)):
            where.fail("expected a table of name = value lines", section=section)
        out = {}
        for key, value in table.items():
            claim(key, section)
            out[key] = _number(value, lambda m, key=key: where.fail(m, key, section=section))
        return out

    raw_data = data.get("data")
    data_columns = {}
    if raw_data is not None:
        if not isinstance(raw_data, dict):
            where.fail("expected a [data] table: name = [values, ...] and mode", section="data")
        data_columns = {k: v for k, v in raw_data.items() if k != "mode"}

    inputs = values("inputs", required=False)
    for column in data_columns:  # a data column is an input; its value in [inputs] is optional
        if column not in inputs:
            claim(column, "data")
            inputs[column] = None
    parameters = values("parameters", required=False)
    if not inputs and not parameters:
        raise SympropError(f"{source}: give the graph's values in [inputs] and/or [parameters] (name = value lines)")

    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        if "nodes" in data:
            where.fail("expected a table of name = \"formula\" lines", section="nodes")
        raise SympropError(f"{source}: missing section [nodes] (name = \"formula\" lines, e.g. q = \"x + y\")")
    if len(raw_nodes) > MAX_NODES:
        where.fail(f"{len(raw_nodes)} nodes; the limit is {MAX_NODES}", section="nodes")
    for name in raw_nodes:
        claim(name, "nodes")
    variables = tuple(names)
    parsed, texts, lines = {}, {}, {}
    for name, formula in raw_nodes.items():
        line = where.line_of(name, section="nodes")
        lines[name] = line
        at = f"{source}" + (f", line {line}" if line else "") + f", field 'nodes.{name}'"
        if not isinstance(formula, str):
            raise SympropError(f"{at}: expected a formula in quotes, got {formula!r}")
        parsed[name] = parse_formula(formula, variables, at)
        texts[name] = " ".join(formula.split())
        if symbol(name) in parsed[name].free_symbols:
            raise SympropError(f"{at}: the node {name!r} uses itself (a cycle)")
    order = _topological(parsed, lines, source)
    nodes = {n: parsed[n] for n in order}

    def node_name(key):
        value = top(key, str, None)
        if value is not None and value not in nodes:
            where.fail(f"{value!r} is not a node (nodes: {', '.join(nodes)})", key)
        return value

    output = node_name("output") or order[-1]
    loss = node_name("loss")
    dout = _number(data["dout"], lambda m: where.fail(m, "dout")) if "dout" in data else None
    update = _update(data.get("update"), where, parameters, nodes, data_columns) if "update" in data else None
    dataset = _data(raw_data, data_columns, inputs, where, update) if raw_data is not None else None
    if dataset is not None:
        for column, samples in dataset.columns.items():
            if inputs[column] is None:
                inputs[column] = samples[0]
    predict = _predict(data.get("predict"), where, inputs) if "predict" in data else {}
    notes, notes_zh = (notes_table(data.get(section), where, section) if section in data else {}
                       for section in ("notes", "notes_zh"))
    note_lines = {key: where.line_of(key, section="notes") for key in notes}
    model = _graph(parsed, texts, order, [*inputs, *parameters])
    graph = GraphFile(title, description, source, inputs, parameters, model, output, loss, dout, update,
                      dataset, dtype, title_zh, description_zh, lines, predict, notes, notes_zh, note_lines,
                      dtype_written)
    if loss is not None and output not in graph.ancestors(loss):
        where.fail(f"the loss {loss!r} does not use the output {output!r}", "loss")
    _check_values(graph)
    return graph


def _graph(parsed: dict, texts: dict, order: list[str], given: list[str]) -> Graph:
    """One Expression node per formula, in topological order; each reads the names its formula
    uses in the order they were defined (inputs, parameters, then nodes in that order)."""
    defined = [*given, *order]
    nodes = []
    for position, name in enumerate(order, 1):
        used = {s.name for s in parsed[name].free_symbols}
        reads = tuple(n for n in defined if n in used)
        nodes.append(Node(Expression(parsed[name], texts[name], reads), (), texts[name], position, 0, name, reads))
    return Graph(tuple(nodes))


def _topological(parsed: dict, lines: dict, source: str) -> list[str]:
    """The nodes ordered so that each comes after the nodes it uses (file order where free);
    a cycle is refused naming its nodes."""
    order, done, visiting = [], set(), []

    def visit(name):
        if name in done:
            return
        if name in visiting:
            cycle = visiting[visiting.index(name):] + [name]
            line = lines.get(cycle[0])
            raise SympropError(f"{source}" + (f", line {line}" if line else "") + f", field 'nodes.{cycle[0]}': "
                               f"the nodes form a cycle ({' -> '.join(reversed(cycle))}); a graph's values "
                               "must be computable in some order")
        visiting.append(name)
        for s in sorted(parsed[name].free_symbols, key=lambda s: s.name):
            if s.name in parsed:
                visit(s.name)
        visiting.pop()
        done.add(name)
        order.append(name)

    for name in parsed:
        visit(name)
    return order


def _update(raw, where, parameters, nodes, data_columns) -> Update:
    if not isinstance(raw, dict):
        where.fail("expected an [update] table", section="update")
    fail = lambda m, key="": where.fail(m, key, section="update")  # noqa: E731
    where.refuse_unknown(raw, UPDATE_FIELDS, section="update")
    if not parameters:
        fail("an update needs [parameters] to change (name = value lines)")
    rule = raw.get("rule", "descent")
    if rule not in ("descent", "ascent"):
        fail(f"rule must be \"descent\" or \"ascent\", got {rule!r}", "rule")
    if "learning_rate" not in raw:
        fail("missing field 'learning_rate'")
    rate = _number(raw["learning_rate"], lambda m: fail(m, "learning_rate"))
    rate_name = raw.get("rate_name", "learning_rate")
    _name(rate_name, lambda m: fail(m, "rate_name"))
    if rate_name in parameters or rate_name in nodes or rate_name in data_columns:
        fail(f"{rate_name!r} is already a name of the graph", "rate_name")
    key = "epochs" if data_columns else "steps"
    other = "steps" if data_columns else "epochs"
    if other in raw:
        fail(f"use {key!r} here: " + ("with [data] one epoch is one pass over the samples" if data_columns
                                       else "without [data] there are only steps"), other)
    steps = raw.get(key, 1)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        fail(f"{key} must be a whole number from 1 to {MAX_STEPS:,}, got {steps!r}", key)
    table = raw.get("table", [*parameters])
    known = [*parameters, *nodes]
    if not isinstance(table, list) or not all(isinstance(t, str) for t in table):
        fail("table must be a list of names", "table")
    for name in table:
        if name not in known and not re.match(r"d\w+/d\w+\Z", name):
            fail(f"{name!r} is not a parameter, a node or a gradient such as \"dl/dw\" (names: {', '.join(known)})",
                 "table")
    every = raw.get("table_every", 1)
    if isinstance(every, bool) or not isinstance(every, int) or not 1 <= every <= MAX_STEPS:
        fail(f"table_every must be a whole number from 1 to {MAX_STEPS:,}, got {every!r}", "table_every")
    return Update(rule == "ascent", rate, rate_name, steps, list(table), every)


def _predict(raw, where, inputs) -> dict[str, sp.Rational]:
    """[predict]: input = value lines, the inputs at which the output is predicted."""
    if not isinstance(raw, dict) or not raw:
        where.fail("expected a table of input = value lines (the inputs at which to predict the output)",
                   section="predict")
    out = {}
    for name, value in raw.items():
        if name not in inputs:
            where.fail(f"{name!r} is not an input (inputs: {', '.join(inputs) or 'none'}); [predict] gives "
                       "other values of inputs", name, section="predict")
        out[name] = _number(value, lambda m, name=name: where.fail(m, name, section="predict"))
    return out


def notes_table(raw, where, section, example='"df/dd" = "the other input"') -> dict[str, str]:
    """[notes]: "key" = "remark" lines (a graph file's or a net file's); the keys are checked
    against the transcript's lines when it is written (transcript.attach_notes)."""
    if not isinstance(raw, dict) or not raw:
        where.fail(f'expected a table of "key" = "remark" lines, e.g. {example}', section=section)
    for key, text in raw.items():
        if not isinstance(text, str) or not text.strip() or "\n" in text:
            where.fail("expected a remark on one line, in quotes", key, section=section)
    return {key: " ".join(text.split()) for key, text in raw.items()}


def _data(raw, columns, inputs, where, update) -> Data:
    fail = lambda m, key="": where.fail(m, key, section="data")  # noqa: E731
    mode = raw.get("mode", "per-sample")
    if mode not in DATA_MODES:
        fail(f"mode must be one of {', '.join(DATA_MODES)}, got {mode!r}", "mode")
    if not columns:
        fail("give at least one column: name = [values, ...]")
    if update is None:
        fail("[data] needs an [update] (learning_rate, epochs) to train on it")
    sizes = set()
    out = {}
    for name, samples in columns.items():
        if not isinstance(samples, list) or not samples:
            fail("expected a list of numbers, one per sample", name)
        sizes.add(len(samples))
        out[name] = [_number(v, lambda m, name=name: fail(m, name)) for v in samples]
    if len(sizes) > 1:
        fail(f"every column needs the same number of samples; got {sorted(sizes)}")
    if sizes.pop() > MAX_SAMPLES:
        fail(f"at most {MAX_SAMPLES} samples")
    return Data(out, mode)


def _check_values(graph: GraphFile):
    """Every node must be a finite real number at the given values (per sample with data):
    a division by zero or the log of a negative number is refused here, naming the node."""
    samples = [{}]
    if graph.data is not None:
        samples = [{k: v[i] for k, v in graph.data.columns.items()} for i in range(graph.data.size)]
    if graph.predict:
        samples.append(dict(graph.predict))
    for sample in samples:
        values = {**graph.given(), **sample}
        for node in graph.graph.nodes:
            try:
                with time_budget(MAX_CHECK_SECONDS):
                    value = node.op.forward(values)
                    value = value.doit() if not value.is_number else value
                    value = carry(value)  # as the transcript carries it: 60 digits, not a nest of sigmoids
            except TooLarge as exc:
                _fail_node(graph, node.name, f"{node.op.text!r} at the given values{_sample_text(graph, sample)} "
                           f"would be too large to compute exactly: {exc}")
            except ValueError:  # max/min of two sides SymPy cannot tell apart: exp(1e-300) - 1 and 0
                _fail_node(graph, node.name, f"{node.op.text!r} at the given values{_sample_text(graph, sample)} "
                           "cannot be computed exactly: a max or min in it compares two sides too close to tell apart")
            except ZeroDivisionError:  # mpmath dividing by an underflowed zero: softplus(-745)^(-745)
                _fail_node(graph, node.name, f"{node.op.text!r} is a division by zero at the given values"
                           + _sample_text(graph, sample))
            except (OutOfTime, RecursionError, MemoryError):
                _fail_node(graph, node.name, f"{node.op.text!r} at the given values{_sample_text(graph, sample)} "
                           f"takes more than {MAX_CHECK_SECONDS} s to compute exactly (the limit)")
            if value.has(sp.zoo, sp.nan, sp.oo, -sp.oo) or not value.is_finite:
                problem = "a division by zero" if value.has(sp.zoo, sp.nan) else "not a finite number"
                _fail_node(graph, node.name, f"{node.op.text!r} is {problem} at the given values"
                           + _sample_text(graph, sample))
            if value.is_extended_real is False:
                _fail_node(graph, node.name, f"{node.op.text!r} is not a real number at the given values "
                           f"({sp.N(value, 4)}){_sample_text(graph, sample)}")
            values[node.name] = value


def _sample_text(graph, sample) -> str:
    return "" if not sample else " (sample " + ", ".join(f"{k} = {v}" for k, v in sample.items()) + ")"


def _fail_node(graph: GraphFile, name: str, message: str):
    line = graph.lines.get(name)
    raise SympropError(f"{graph.source}" + (f", line {line}" if line else "") + f", field 'nodes.{name}': {message}")
