"""The transcript of a graph file: every gate's value, local partials, gradients, the update.

The lines are the circuit's lowered statements (``GraphFile.lowering``, which the graph
kernels print), run by the interpreter (``interpret.py``): each node's value, each local
partial derivative (SymPy's ``diff``, with max and min at a tie following ``kinks``' stated
convention) and the paths each gradient takes. This module is the presentation, in the order
lecture notes use for a circuit: the given values, the forward pass node by node, every
node's local partials, then the gradient of the output (or the loss) at every node from the
output back. Where a value feeds several nodes its gradient is written as the sum of each
path's contribution (``df/dx_via_q``, one key per path). Then the update of the parameters
and the forward pass with the new values; with more steps (or a data set), a table of chosen
quantities per step or epoch, from the same statements printed as one Python function (at 60
significant digits, or float64 for a long run). With ``dtype`` written, every number is a
program's instead (``ieee.py``: the formula's operations as written, reverse-mode autodiff).

JSON keys: inputs, parameters and nodes by their names; ``d<node>/d<arg>`` the local
partials; ``d<f>/d<name>`` the gradient at every name (``dL/d<name>`` with a given ``dout``);
``<name>_new`` after the update; ``step<k>:<name>`` (``epoch<k>:<name>`` with data) in the table.
"""
from __future__ import annotations

import keyword
import math
from dataclasses import dataclass
from pathlib import Path

import mpmath
import numpy as np
import sympy as sp

from .errors import SympropError
from .graphfile import GraphFile, _fail_node, load_graph, symbol
from .ieee import TYPES, Program
from .interpret import GRADIENT, Interpreter, evaluated
from .ir import Assignments, Let
from .transcript import (FLOAT32, PRECISION, Chain, Quantity, Show, Transcript, _latex_name, attach_notes,
                         in_float32, tr)


class _Names:
    """The transcript keys of one pass over the graph (``tag``: "" or "[2]" for sample 2)."""

    def __init__(self, graph: GraphFile, tag: str = ""):
        self.g, self.tag = graph, tag
        self.top = graph.objective
        self.root = "L" if graph.dout is not None else self.top
        self.relevant = graph.ancestors(self.top)

    def value(self, name):
        """A node or data column carries the sample's tag; parameters and fixed inputs do not."""
        data = self.g.data.columns if self.g.data is not None else {}
        return name + self.tag if name in self.g.nodes or name in data else name

    def grad(self, name):
        return f"d{self.root}/d{name}{self.tag}"

    def local(self, node, arg):
        # "_direct" only where the gradient of arg has other paths to add: consumers that a
        # side node (one the objective does not use) feeds are no path
        paths = [c for c in self.g.consumers(arg) if c in self.relevant]
        direct = node == self.top and self.g.dout is None and len(paths) > 1
        return f"d{node}/d{arg}" + ("_direct" if direct else "") + self.tag

    def path(self, name, consumer):
        return f"d{self.root}/d{name}_via_{consumer}{self.tag}"


def graph_transcript(graph: GraphFile, name: str | None = None, batch_sum: bool = False) -> Transcript:
    """The worked example of a graph file: exact, or with ``dtype`` written (or under the
    checker's ``in_float32``) the numbers of a program in that type, operation by operation in
    the order each formula is written. ``batch_sum``: a full batch's loss and gradients summed
    instead of averaged (a convention the checker tries)."""
    if graph.dtype == "float32" and graph.dtype_written and not FLOAT32.get():
        with in_float32():
            return graph_transcript(graph, name, batch_sum)
    return _Builder(graph, name or Path(graph.source).stem, batch_sum).build()


def graph_file_transcript(path) -> Transcript:
    return graph_transcript(load_graph(path), Path(path).stem)


def program_dtype(graph: GraphFile) -> str | None:
    """The type a program computes this graph in ("float32", "float64"), or None for exact."""
    return "float32" if FLOAT32.get() else graph.arithmetic


def to_exact(value) -> sp.Expr:
    """A program's number as an exact SymPy number (inf and nan as SymPy's)."""
    x = float(value)
    if math.isnan(x):
        return sp.nan
    if math.isinf(x):
        return sp.oo if x > 0 else -sp.oo
    return sp.Rational(x)


class _Builder:
    def __init__(self, graph: GraphFile, name: str, batch_sum: bool = False):
        self.g, self.batch_sum = graph, batch_sum
        intro = tr(graph.description, graph.description_zh) if graph.description else None
        self.t = Transcript(name, tr(graph.title, graph.title_zh or graph.title), intro)
        self.relevant = graph.ancestors(graph.objective)
        self.final = None  # the values after the last step or epoch, once the table has run
        dtype = program_dtype(graph)
        self.program = ProgramRun(graph, dtype) if dtype else None
        self.num = {}  # in a program's arithmetic: key -> the program's number
        self.low = graph.lowering()  # the statements the kernels print; this transcript runs them

    # --- one line: its value exact, or the program's own number --------------------------------
    def give(self, key, value, **kw):
        if self.program is not None:
            self.num[key] = self.program.number(value)
            value = to_exact(self.num[key])
        return self.t.given(key, value, **kw)

    def put(self, key, formula, number=None, note=None):
        """``key = formula``; in a program's arithmetic its value is the program's ``number``
        (the formula only says how it was computed), never the formula re-evaluated exactly."""
        t = self.t
        if self.program is None:
            return t.define(key, formula, note=note)
        self.num[key] = number
        t._add(Quantity(key, key, _latex_name(key), formula, to_exact(number)))
        t.blocks.append(Show(key, note, True))
        return t.symbol(key)

    def build(self) -> Transcript:
        g, t = self.g, self.t
        full_batch = g.full_batch
        t.heading(tr("Given", "已知"))
        data = g.data.columns if full_batch else {}
        for i, v in g.inputs.items():
            if i not in data:  # a full batch's samples are given sample by sample below
                self.give(i, v, show=True)
        for p, v in g.parameters.items():
            self.give(p, v, show=True)
        if g.dout is not None:
            self.give(f"dL/d{g.objective}", g.dout, text="dout", show=True,
                      note=tr("the upstream gradient arriving at the output", "从输出端传来的上游梯度"))
        if g.update is not None:
            self.give(g.update.rate_name, g.update.learning_rate,
                      latex=r"\eta" if g.update.rate_name == "learning_rate" else None, show=True,
                      note=tr("learning rate", "学习率"))
        if self.program is not None:
            t.note(tr(f"Every number as a {self.program.dtype} program computes it: one operation at a time, in the "
                      "order each formula is written, gradients by reverse-mode autodiff",
                      f"每个数值都按 {self.program.dtype} 程序的算法计算：按公式书写的顺序逐个运算，梯度由反向模式自动微分得到"))
        if g.predict:
            self.predict_before()
        samples = list(range(1, g.data.size + 1)) if full_batch else [None]
        for n in samples:
            names = _Names(g, f"[{n}]" if n else "")
            if n:
                t.heading(tr(f"Sample {n}", f"第 {n} 个样本"))
            elif g.data is not None:
                t.heading(tr("One step on the first sample", "第一个样本上的一步"))
            for i in data:
                self.give(names.value(i), data[i][n - 1], show=True)
            self.forward_backward(names, n)
        if full_batch:
            self.batch_mean(len(samples))
        if g.update is not None:
            self.update(_Names(g) if not full_batch else None)
            if g.update.steps > 1 or g.data is not None:
                self.table()
            if g.predict:
                self.predict_after()
        self.attach_notes()
        return t

    def attach_notes(self):
        g = self.g
        attach_notes(self.t, g.source, g.notes, g.notes_zh, g.note_lines)

    # --- [predict]: the output at other input values -------------------------------------------
    def _at(self):
        return ", ".join(f"{k} = {v}" for k, v in self.g.predict.items())

    def _predict(self, params: dict, suffix: str):
        """``<node>_test<suffix>`` for the output and the nodes it needs, at the [predict] inputs."""
        g, t = self.g, self.t
        keys = {i: f"{i}_test" if i in g.predict else i for i in g.inputs}
        keys.update(params)
        keys = {name: key for name, key in keys.items() if key in t.quantities}  # a full batch's columns are per sample
        needed = g.ancestors(g.output)
        numbers = {name: self.num.get(key) for name, key in keys.items()}

        def write(node, formula, note):
            if node in needed:
                numbers[node] = self.program.forward(node, numbers) if self.program else None
                self.put(f"{node}_test{suffix}", formula, numbers[node],
                         note=tr("the prediction", "预测值") if node == g.output else None)
        self.run_forward(keys | {node.name: f"{node.name}_test{suffix}" for node in g.graph.nodes}, write)

    def predict_before(self):
        g, t = self.g, self.t
        trains = g.update is not None
        t.heading(tr(f"Prediction at {self._at()}" + (" before training" if trains else ""),
                     f"{self._at()} 时的预测值" + ("（训练前）" if trains else "")))
        for i, v in g.predict.items():
            self.give(f"{i}_test", v, show=True)
        self._predict({p: p for p in g.parameters}, "")

    def predict_after(self):
        g, t = self.g, self.t
        trained = self.final is not None
        t.heading(tr(f"Prediction at {self._at()} after " + ("training" if trained else "the update"),
                     f"{self._at()} 时的预测值（{'训练后' if trained else '更新后'}）"))
        if not trained:
            self._predict({p: f"{p}_new" if f"{p}_new" in t.quantities else p for p in g.parameters}, "_new")
            return
        result = tr("the training above", "上面的训练")
        for p in g.parameters:
            self.give(f"{p}_trained", self.final[p], result_of=result)
        self._predict({p: f"{p}_trained" for p in g.parameters}, "_trained")

    # --- one pass: forward, local partials, gradients ------------------------------------------
    def forward_backward(self, names: _Names, sample):
        g, t = self.g, self.t
        run = None
        if self.program is not None:  # the program's own numbers for this sample
            run = self.program.step({n: self.num[names.value(n)] for n in [*g.inputs, *g.parameters]},
                                    self.num.get(f"dL/d{g.objective}"))
        t.heading(tr("Forward pass", "前向传播"))
        self.run_forward({n: names.value(n) for n in [*g.inputs, *g.parameters, *g.nodes]},
                         lambda node, formula, note: self.put(names.value(node), formula, run and run.values[node],
                                                              note=note))
        locals_, reaches = self.run_backward(names)
        t.heading(tr("Local derivatives of each node (SymPy's diff)", "每个节点的局部导数（由 SymPy 求导）"))
        for node in (n for n in g.graph.nodes if n.name in self.relevant):
            for arg in node.inputs:
                formula, note = locals_[node.name, arg]
                try:
                    self.put(names.local(node.name, arg), formula, run and run.locals[node.name, arg], note=note)
                except SympropError as exc:  # sqrt(x) at x = 0: the value exists, its slope does not
                    _fail_node(g, node.name, f"its derivative by {arg} at the given values: {exc}")
        t.heading(tr(f"Backward pass: the gradient of {names.top} at every node",
                     f"反向传播：{names.top} 对每个节点的梯度"))
        order = [n for n in reversed(g.nodes) if n in self.relevant and n != names.top]
        order += [n for n in [*g.parameters, *g.inputs] if n in self.relevant]
        for name in order:
            consumers = [c for c in g.consumers(name) if (c, name) in reaches]
            paths = []
            for c in consumers:
                if c == names.top and g.dout is None:
                    paths.append(names.local(c, name))  # upstream gradient 1: the local partial itself
                    continue
                term = (names.grad(c), names.local(c, name))
                if len(consumers) == 1:
                    paths.append(Chain((term,)))
                else:
                    latex = (rf"\left({_latex_name(names.grad(name))}\right)_{{\mathrm{{via}}\ "
                             rf"{_latex_name(c)}}}")
                    if run is None:
                        t.define(names.path(name, c), Chain((term,)), latex=latex,
                                 note=tr(f"the path through {c}", f"经过 {c} 的路径"))
                    else:
                        self.put(names.path(name, c), Chain((term,)), run.contributions[c, name],
                                 note=tr(f"the path through {c}", f"经过 {c} 的路径"))
                        t.quantities[names.path(name, c)].latex = latex
                    paths.append(names.path(name, c))
            key = names.grad(name)
            if len(paths) == 1 and isinstance(paths[0], Chain):
                self.put(key, paths[0], run and run.grads[name],
                         note=tr("upstream gradient times local derivative", "上游梯度乘以局部导数"))
            elif len(paths) == 1:  # feeds only the output: its gradient is the local derivative
                t.blocks.append(Show(key, tr(f"upstream gradient 1 at {names.top} times the local derivative",
                                             f"{names.top} 处的上游梯度 1 乘以局部导数")))
            else:
                self.put(key, sp.Add(*[t.symbol(p) for p in paths], evaluate=False), run and run.grads[name],
                         note=tr(f"{name} feeds {', '.join(consumers)}: the sum of each path's contribution",
                                 f"{name} 输入到 {', '.join(consumers)}：各路径贡献之和"))

    # --- the lowering's statements, run by the interpreter ----------------------------------------
    def run_forward(self, keys: dict, write):
        """The forward statements with each value named ``keys[name]`` in formulas; ``write(node,
        formula, note)`` for each node, in the graph's order (the formula over those keys)."""
        node_of = {key: name for name, key in keys.items()}
        interpreter = self._interpreter(keys, lambda key, formula, note: write(node_of[key], evaluated(formula), note))
        for statement in self.low.forward:
            interpreter.run([statement])
            interpreter.finish()  # each node's line when it is computed

    def run_backward(self, names: _Names):
        """The backward statements: each node's local derivative by each value it reads, (node,
        value) -> (formula over the pass's keys, note), and the set of (node, value) paths the
        gradient takes (a chain-rule term of value's gradient through node)."""
        locals_, paths = {}, set()

        def record(key, formula, note):
            if key.startswith(GRADIENT):  # a gradient: the chain-rule terms it is the sum of
                for _, local in formula.terms if isinstance(formula, Chain) else ():
                    paths.add(tuple(local[1:].split("/d", 1)))
            else:  # d<node>/d<value>
                locals_[tuple(key[1:].split("/d", 1))] = (evaluated(formula), note)
        interpreter = self._interpreter({n: names.value(n) for n in [*self.g.given(), *self.g.nodes]}, record)
        for statement in self.low.backward:
            interpreter.run([statement])
            interpreter.finish()
        return locals_, paths

    def _interpreter(self, keys: dict, define) -> Interpreter:
        """Values read as the transcript's keys; gradients as dL/d<name>, so a chain-rule
        statement's local derivative is d<node>/d<name>."""
        shown = {self.low.value[name]: (key, ()) for name, key in keys.items()}
        shown |= {self.low.grad[name]: (GRADIENT + name, ()) for name in self.low.grad}
        return Interpreter(lambda array, index: None, define, lambda note: note, {}, shown=shown)

    def batch_mean(self, size: int):
        """Full batch: the loss and the parameters' gradients are means over the samples."""
        g, t = self.g, self.t
        top = g.objective
        t.heading(tr(f"Mean over the {size} samples", f"对 {size} 个样本取平均"))
        divisor = 1 if self.batch_sum else size
        keys = [f"{top}[{n}]" for n in range(1, size + 1)]
        self.put("L", sp.Add(*[t.symbol(k) for k in keys], evaluate=False) / divisor, self._mean(keys, divisor),
                 note=tr("the mean loss", "平均误差") if divisor > 1 else tr("the summed loss", "误差之和"))
        for p in (p for p in g.parameters if p in self.relevant):
            keys = [_Names(g, f"[{n}]").grad(p) for n in range(1, size + 1)]
            self.put(f"dL/d{p}", sp.Add(*[t.symbol(k) for k in keys], evaluate=False) / divisor,
                     self._mean(keys, divisor))

    def _mean(self, keys, divisor):
        """The program's sum of these numbers in order, divided by ``divisor`` (None when exact)."""
        if self.program is None:
            return None
        real = self.program.real
        total = self.num[keys[0]]
        for k in keys[1:]:
            total = real(total + self.num[k])
        return real(total / real(divisor))

    # --- the update ----------------------------------------------------------------------------
    def grad_key(self, p, names):
        return names.grad(p) if names is not None else f"dL/d{p}"

    def update(self, names):
        g, t = self.g, self.t
        u = g.update
        rule = tr(f"Gradient ascent: p += {u.rate_name} * gradient", f"梯度上升：p += {u.rate_name} * 梯度") if u.ascent \
            else tr(f"Gradient descent: p -= {u.rate_name} * gradient", f"梯度下降：p -= {u.rate_name} * 梯度")
        t.heading(rule)
        lr = t.symbol(u.rate_name)
        new = {}
        for p in g.parameters:
            if p not in self.relevant:
                continue
            grad = t.symbol(self.grad_key(p, names))
            step = sp.Mul(lr, grad, evaluate=False) if u.ascent else sp.Mul(-1, lr, grad, evaluate=False)
            number = None
            if self.program is not None:
                number = self.program.descend(self.num[p], self.num[u.rate_name], self.num[self.grad_key(p, names)],
                                              u.ascent)
            new[p] = self.put(f"{p}_new", sp.Add(t.symbol(p), step, evaluate=False), number)
        if names is None:
            return  # full batch: the table shows the mean loss after each step
        t.heading(tr("Forward pass with the new values", "用更新后的值重新前向传播"))
        changed = set(new)
        for node in g.graph.nodes:
            if set(node.inputs) & changed:
                changed.add(node.name)
        keys = {n: f"{n}_new" if n in changed else n for n in [*g.inputs, *g.parameters, *g.nodes]}
        numbers = {n: self.num.get(key) for n, key in keys.items()}

        def write(node, formula, note):
            if node in changed:
                numbers[node] = self.program.forward(node, numbers) if self.program else None
                self.put(f"{node}_new", formula, numbers[node])
        self.run_forward(keys, write)

    def table(self):
        g, t = self.g, self.t
        u = g.update
        unit = "epoch" if g.data is not None else "step"
        per_sample = g.data is not None and g.data.per_sample
        rows = []
        result = tr(f"{unit}s of gradient {'ascent' if u.ascent else 'descent'}", f"梯度{'上升' if u.ascent else '下降'}")
        training = Training(g, self.batch_sum)
        for k, record in enumerate(training.records(), 1):
            self.final = record
            if not (k <= 5 or k % u.table_every == 0 or k == u.steps):
                continue
            row = [str(k)]
            for name in u.table:
                value = record.get(name)
                if value is None:
                    continue
                t.given(f"{unit}{k}:{name}", value, result_of=result)
                row.append(value)
            rows.append(row)
        headers = [tr(unit, "轮次" if unit == "epoch" else "步")]
        headers += [tr(n + (" after" if n in g.parameters else ""), n + ("（更新后）" if n in g.parameters else ""))
                    for n in u.table]
        if g.data is not None:
            mode = "per-sample updates" if g.data.per_sample else "full-batch mean"
            title = tr(f"{u.steps} epochs on {g.data.size} samples ({mode})",
                       f"在 {g.data.size} 个样本上训练 {u.steps} 轮（{'逐样本更新' if g.data.per_sample else '全批量平均'}）")
        else:
            title = tr(f"{u.steps} steps", f"{u.steps} 步")
        t.heading(title)
        if per_sample:
            t.note(tr("nodes and gradients: at the epoch's last sample, before its update; parameters: after the epoch"
                      + (f"; a claim may name any sample's value, e.g. epoch1:{u.table[0]}[2] for sample 2 of epoch 1"
                         if g.data.size > 1 and u.table else ""),
                      "节点与梯度：本轮最后一个样本、更新之前的值；参数：本轮结束后的值"))
        else:
            t.note(tr("nodes and gradients: before the step's update; parameters: after it",
                      "节点与梯度：本步更新之前的值；参数：更新之后的值"))
        if self.program is None and u.steps > 1 and arithmetic(g) == "float64":
            t.note(FAST_TABLE_NOTE)
        elif self.program is None and u.steps > 1:
            t.note(tr(f"the table is computed at {PRECISION} significant digits",
                      f"表中数值按 {PRECISION} 位有效数字计算"))
        t.table(headers, rows)
        if training.diverged:
            t.note(tr(training.diverged, training.diverged))
            t.diverged = training.diverged  # the checker reports claims past this point as not computable


# --- the numbers of many steps: the same staged formulas, evaluated fast --------------------------

def _heaviside(u, at_zero=sp.S.Half):
    return 1 if u > 0 else 0 if u < 0 else at_zero


@dataclass
class StepNumbers:
    """One forward and backward pass: node values, the gradient at every name and (a program's
    pass, for the transcript's lines) each node's local derivative by each argument and each
    path's contribution."""

    values: dict
    locals: dict
    contributions: dict
    grads: dict


class ProgramRun:
    """The graph's statements (``GraphFile.lowering``) as a float32 or float64 program runs
    them: every node's formula operation by operation as written, each chain-rule statement's
    gradients by reverse-mode autodiff through the node's operations, added in the
    statements' order."""

    def __init__(self, graph: GraphFile, dtype: str):
        self.g, self.dtype, self.real = graph, dtype, TYPES[dtype]
        self.programs = {node.name: Program(node.op.text, dtype) for node in graph.graph.nodes}
        self.low = graph.lowering()
        self.name_of = {s.name: name for table in (self.low.value, self.low.grad) for name, s in table.items()}

    def number(self, value):
        value = sp.sympify(value)
        if value.is_infinite or value is sp.nan:
            return self.real(float(value))
        return self.real(float(sp.N(value, 30)))

    def forward(self, node: str, values: dict):
        return self.programs[node].value(values)

    def forward_names(self):
        return list(self.programs)

    def descend(self, p, rate, grad, ascent: bool):
        """p - rate * grad (or +), as ``p -= lr * p.grad`` computes it."""
        r = self.real
        with np.errstate(all="ignore"):
            step = r(rate * grad)
            return r(p + step) if ascent else r(p - step)

    def step(self, given: dict, dout=None, with_locals: bool = True) -> StepNumbers:
        r, values = self.real, dict(given)
        for statement in self.low.forward:
            ((target, _),) = statement.pairs
            node = self.name_of[target.name]
            values[node] = self.programs[node].value(values)
        grads = {self.low.objective: r(1) if dout is None else r(dout)}
        locals_, contributions = {}, {}
        with np.errstate(all="ignore"):
            for statement in (s for s in self.low.backward if isinstance(s, Assignments)):
                node, program = self.name_of[statement.upstream], self.programs[self.name_of[statement.upstream]]
                args = [self.name_of[target.name] for target, _ in statement.pairs]
                if with_locals:
                    one = program.backward(values)
                    locals_.update({(node, a): one.get(a, r(0)) for a in args})
                parts = program.backward(values, grads[node])
                for a in args:
                    part = parts.get(a, r(0))
                    contributions[node, a] = part
                    grads[a] = r(grads[a] + part) if a in grads else part
        return StepNumbers(values, locals_, contributions, grads)


class Record(dict):
    """name -> value after one step or epoch, as exact SymPy numbers; ``samples``: with
    per-sample updates, each sample's nodes, gradients and parameters after its update.
    Holds the numbers as computed and makes a value exact when it is read: a table of 10,000
    steps shows a few dozen rows, and making every value exact took longer than the run."""

    samples: list = []

    def __getitem__(self, key):
        return _exact(super().__getitem__(key))

    def get(self, key, default=None):
        return self[key] if key in self else default


class Training:
    """Many steps (or epochs) of the graph's update: in the program's dtype when the file asks
    for one (or the checker's float32), else at 60 significant digits. A step whose numbers
    are not finite ends the run; ``diverged`` then says where."""

    def __init__(self, graph: GraphFile, batch_sum: bool = False):
        self.g, self.batch_sum = graph, batch_sum
        self.diverged = None

    def records(self):
        with mpmath.workdps(PRECISION), np.errstate(all="ignore"):
            yield from self._records()

    def _records(self):
        graph, u = self.g, self.g.update
        dtype = program_dtype(graph)
        staged = ProgramRun(graph, dtype) if dtype else StepFunction(graph, arithmetic(graph))
        rate = staged.number(u.learning_rate)
        dout = staged.number(graph.dout) if graph.dout is not None else None
        params = {p: staged.number(v) for p, v in graph.parameters.items()}
        fixed = {i: staged.number(v) for i, v in graph.inputs.items()}
        names = _Names(graph)
        unit = "epoch" if graph.data is not None else "step"
        if graph.data is None:
            batches = [[{}]]
        else:
            samples = [{k: staged.number(v[i]) for k, v in graph.data.columns.items()} for i in range(graph.data.size)]
            batches = [[s] for s in samples] if graph.data.per_sample else [samples]
        for k in range(1, u.steps + 1):
            per_sample = []
            for batch in batches:
                grads_sum, values_sum = {}, {}
                for sample in batch:
                    try:
                        numbers = staged.step({**fixed, **params, **sample}, dout, with_locals=False)
                        values, grads = numbers.values, numbers.grads
                    except (OverflowError, ZeroDivisionError, ValueError):  # float64: inf, 1/0, log(-1)
                        self.diverged = (f"a value is not a finite number in {unit} {k}: the updates diverge "
                                         f"(try a smaller learning_rate); the table ends at {unit} {k - 1}")
                        return
                    for key, v in grads.items():
                        grads_sum[key] = grads_sum[key] + v if key in grads_sum else v
                    for key, v in values.items():
                        values_sum[key] = values_sum[key] + v if key in values_sum else v
                if len(batch) > 1:
                    size = staged.number(1 if self.batch_sum else len(batch))
                    grads = {key: v / size for key, v in grads_sum.items()}
                    values = {key: v / size for key, v in values_sum.items()}
                for p in params:
                    if p in grads:
                        params[p] = staged.descend(params[p], rate, grads[p], u.ascent)
                if len(batch) == 1:
                    per_sample.append(self._record(staged, names, values, grads, params, 1))
            record = self._record(staged, names, values, grads, params, len(batch))
            bad = next((key for key, v in record.items() if not _finite(v)), None)
            if bad is not None:
                self.diverged = (f"{bad} is not a finite number after {unit} {k}: the updates diverge (try a "
                                 f"smaller learning_rate); the table ends at {unit} {k - 1}")
                return
            out = Record(record)
            out.samples = [Record(r) for r in per_sample]
            yield out

    @staticmethod
    def _record(staged, names, values, grads, params, batch):
        record = {n: values[n] for n in staged.forward_names()}
        record.update({names.grad(key) if batch == 1 else f"dL/d{key}": v for key, v in grads.items()})
        record.update(params)
        return record


def run(graph: GraphFile, batch_sum: bool = False) -> list[dict]:
    """After each step (or epoch), a dict name -> value of the parameters after it and the
    nodes and gradients computed in it ("d<f>/d<name>" keys), as exact SymPy numbers; it ends
    early where the updates diverge."""
    return list(Training(graph, batch_sum).records())


def _finite(value) -> bool:
    """Finite, and within float64's range (60-digit numbers never overflow on their own)."""
    if isinstance(value, (np.floating, float)):
        return bool(np.isfinite(value))
    return bool(mpmath.isfinite(value)) and abs(value) < 1e300


def _exact(value):
    if isinstance(value, (np.floating, float)):
        return to_exact(value)
    if isinstance(value, sp.Basic):
        return value
    return sp.Float(mpmath.nstr(value, PRECISION), PRECISION)


# node evaluations (nodes x samples x steps) a table computes at 60 digits; a longer run is
# computed in float64, the file's dtype (150 nodes x 10,000 steps at 60 digits took minutes)
EXACT_TABLE_WORK = 20_000
FAST_TABLE_NOTE = tr("the table is computed in float64, one operation at a time as a program would (the steps "
                     "are too many for 60-digit arithmetic); the step written out above is exact",
                     "表中数值以 float64 逐个运算得到，与程序相同（步数太多，不用 60 位精度）；上面写出的那一步是精确的")


def arithmetic(graph: GraphFile) -> str:
    """How a graph file without a dtype computes its table: "mpmath" (60 digits) or, for a
    run longer than EXACT_TABLE_WORK node evaluations, "float64"."""
    samples = graph.data.size if graph.data is not None else 1
    work = len(graph.graph.nodes) * samples * graph.update.steps
    return "mpmath" if work <= EXACT_TABLE_WORK else "float64"


class StepFunction:
    """One forward and backward pass as one Python function, printed from the circuit's
    statements (``GraphFile.lowering``, as the kernels are): at 60 significant digits (mpmath,
    as lambdify prints a formula) or in float64 (math; a run of 10,000 steps through 150 nodes
    takes seconds). Each gradient is its upstream gradient times the local partial's value, in
    the order of the statements. In float64 an overflow, a division by zero or a log of a
    negative number raises (OverflowError, ZeroDivisionError, ValueError), which the run
    reports as a divergence."""

    def __init__(self, graph: GraphFile, arithmetic: str):
        from sympy.printing.pycode import MpmathPrinter, PythonCodePrinter

        from .stable import masks_as_selects

        self.g, self.float64 = graph, arithmetic == "float64"
        if self.float64:
            namespace = {name: getattr(math, name) for name in dir(math) if not name.startswith("_")}
            namespace.update(exp=_exp, Heaviside=_float_heaviside, max=max, min=min, abs=abs, float=float)
            printer = PythonCodePrinter({"fully_qualified_modules": False, "strict": True})
        else:
            namespace = {name: getattr(mpmath, name) for name in dir(mpmath) if not name.startswith("_")}
            namespace.update(Heaviside=_heaviside)
            printer = MpmathPrinter({"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True,
                                     "user_functions": {"Heaviside": "Heaviside"}})
        low = graph.lowering(taken=set(namespace) | set(keyword.kwlist) | {"step"})
        renamed = {symbol(name): s for name, s in low.value.items()}

        def text(expr):
            expr = expr.xreplace(renamed)
            if self.float64:  # never inf * 0 where a mask is 0 (ELU's exp(x) * H(...))
                return f"float({printer.doprint(masks_as_selects(expr))})"
            return f"({printer.doprint(expr)})"

        self.given = [*graph.inputs, *graph.parameters]
        self.nodes = [node.name for node in graph.graph.nodes]
        self.grad_names = [name for name in low.grad if name in low.relevant]
        lines = [f"def step({', '.join(low.value[n].name for n in self.given)}):"]
        for statement in low.forward + low.backward:
            if isinstance(statement, Let):  # the upstream gradient (1 or dout), a gradient 0
                number = text(sp.sympify(statement.value))
                lines.append(f"    {statement.target} = {number if self.float64 else 'mpf' + number}")
            elif isinstance(statement, Assignments):
                upstream = statement.names.get(statement.upstream, sp.S.One)
                for target, rule in statement.pairs:
                    local = rule.xreplace({upstream: sp.S.One})
                    value = f"{upstream} * {text(local)}" if statement.upstream else text(local)
                    lines.append(f"    {target} {'+=' if target in statement.accumulate else '='} {value}")
        lines.append(f"    return ({''.join(low.value[n].name + ', ' for n in self.nodes)}), "
                     f"({''.join(low.grad[n].name + ', ' for n in self.grad_names)})")
        exec(compile("\n".join(lines), f"<steps of {graph.source}>", "exec"), namespace)  # noqa: S102
        self.function = namespace["step"]

    def number(self, value):
        if self.float64:
            return float(sp.N(value, 20))
        return mpmath.mpf(sp.Rational(value).p) / sp.Rational(value).q if sp.sympify(value).is_Rational \
            else mpmath.mpf(str(sp.N(value, PRECISION)))

    def forward_names(self):
        return list(self.nodes)

    def descend(self, p, rate, grad, ascent: bool):
        return p + rate * grad if ascent else p - rate * grad

    def step(self, values: dict, dout=None, with_locals=False) -> StepNumbers:
        """Node values and the objective's gradient at every name it depends on, for the given
        values (the file's dout is compiled in)."""
        node_values, grad_values = self.function(*[values[n] for n in self.given])
        return StepNumbers({**values, **dict(zip(self.nodes, node_values))}, {}, {},
                           dict(zip(self.grad_names, grad_values)))


def _exp(v: float) -> float:
    """math.exp, but inf past float64's range (a select may discard it) instead of raising."""
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def _float_heaviside(u: float, at_zero: float) -> float:
    return 1.0 if u > 0 else 0.0 if u < 0 else float(at_zero)
