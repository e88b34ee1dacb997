"""The hand-calculation transcript of a network file: the seed-001 article's order, exactly.

The network is its Graph (``Network.to_graph``: the layer stack a net spec writes), lowered
once (``symbolic/lower.py``) and run by the interpreter (``symbolic/interpret.py``) under the
file's own names: each unit's net input ``net_h1`` and output ``h1``, each weight and bias by
its name, the error ``E``, the gradients. So every formula here is one the interpreter wrote
from the statements the kernels are printed from. What this module adds is Mazur's
presentation: the forward pass unit by unit, then backward from the output layer, every
weight's and bias's gradient written as a chain of factors (dE/do1 * do1/dnet_o1 *
dnet_o1/dw5, the last factor read off the interpreter's gradient of the parameter), its
update right after it, then the forward pass with the new values and the new error.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import sympy as sp

from .graph import chain_names
from .interpret import GRADIENT, Interpreter, evaluated
from .layers import N
from .lower import Lowering
from .networkfile import FULL_STEPS, Network
from .network_table import long_run
from .ops.builders import LOSS
from .rule_conventions import derivation_variant
from .steps import RULES, STEP_COUNT_LINE
from .steps import g as GRADIENT_SYMBOL, p as PARAMETER, t as STEP_COUNT
from .transcript import Chain, Transcript, _latex_name, tr

LOSS_NOTES = {
    "sum-of-squares": tr("E = sum of squared errors (no 1/2)", "误差 E = 误差平方和（无 1/2）"),
    "squared-error": tr("E = 1/2 sum of squared errors", "误差 E = 1/2 × 误差平方和"),
    "mse": tr("E = mean of the squared errors over the output units", "误差 E = 各输出单元误差平方的平均"),
    "cross-entropy": tr("E = sum of the output units' binary cross-entropies", "误差 E = 各输出单元的交叉熵之和"),
    "huber": tr("E = mean over the output units of the Huber loss (delta 1): squared near the target, "
                "linear far from it", "误差 E = 各输出单元 Huber 误差（delta 1）的平均：靠近目标时为平方，远离时为线性"),
}


@dataclass(frozen=True)
class Conventions:
    """Choices a hand calculation can make differently; the defaults are the standard ones.
    The checker rebuilds a transcript under the alternatives to explain a learner's numbers.
    Two change a rule of the computation (the lowering reads the changed derivation, see
    ``_variant``); the others change what the presentation updates and with what."""

    hidden_uses_updated_weights: bool = False  # dE/dy from the output weights already updated
    kink_from_the_right: bool = False  # at a kink the derivative from the right: relu'(0) = 1, not 0
    gradient_ascent: bool = False  # new = old + rate * gradient (a sign slip in the update)
    derivative_at_net: bool = False  # a rule in the saved output (sigmoid's y(1 - y)) evaluated at the net input
    updated_biases: frozenset | None = None  # the biases that are updated; None: as the network says

    def updates(self, net, bias: str) -> bool:
        return net.update_biases if self.updated_biases is None else bias in self.updated_biases


# --- the conventions that change a rule, asked of the op (rule_conventions.py) ------------------

def _variant(conventions: Conventions):
    """The conventions that change an activation's rule, as the change of its derivation the
    lowering reads (None: every rule as derived)."""
    return derivation_variant(conventions.kink_from_the_right, conventions.derivative_at_net)


# --- the interpreter's record, under the file's names -------------------------------------------

_RECORDS: dict = {}  # network shape -> its record; a few dozen formulas each


def interpreted(net: Network, conventions: Conventions = Conventions()) -> dict:
    """Every value the interpreter computes from the network's lowered statements: key ->
    formula (a SymPy expression or a Chain) over the file's names. Forward: ``net_h1``, ``h1``,
    ``E``; backward: ``dL/do1``, the local derivative ``do1/dnet_o1``, ``dL/dnet_o1`` (a Chain),
    ``dL/dw5``, ``dL/db2``, ``dL/dh1``. The numbers do not enter it: every step, and the
    checker's variants of one network, read the same record (read only) under their names."""
    shape = (tuple(net.input_names), tuple(net.target_names), net.loss, conventions.kink_from_the_right,
             conventions.derivative_at_net, *((tuple(layer.units), layer.activation, str(layer.weight_names),
                                               tuple(layer.bias_names)) for layer in net.layers))
    record = _RECORDS.get(shape)
    if record is None:
        if len(_RECORDS) >= 64:
            _RECORDS.clear()
        record = _RECORDS[shape] = _interpret(net, conventions)
    return record


def _interpret(net: Network, conventions: Conventions) -> dict:
    graph, _ = net.to_graph()
    lowering = Lowering(graph, variant=_variant(conventions))
    names = {"X": lambda index: net.input_names[index[1]], "T": lambda index: net.target_names[index[1]]}
    for node, given in zip(graph.nodes, chain_names(graph)):
        layer = net.layers[given.layer - 1]
        if node.op.starts_layer:  # the affine layer: net inputs, weights and biases
            names[given.value] = lambda index, layer=layer: f"net_{layer.units[index[1]]}"
            names[given.params["W"]] = lambda index, layer=layer: layer.weight_names[index[0]][index[1]]
            names[given.params["b"]] = lambda index, layer=layer: layer.bias_of(index[0])
        elif given.value is not None:  # the activation: the units' outputs
            names[given.value] = lambda index, layer=layer: layer.units[index[1]]

    def key_of(array, index):
        if array in names:
            return names[array](index)
        if array.startswith("d") and array[1:] in names:
            return GRADIENT + names[array[1:]](index)
        return None

    record = {}
    run = Interpreter(key_of, lambda key, formula, note=None: record.setdefault(key, formula), lambda note: None,
                      {N: 1}, shown={LOSS: ("E", ())}, shapes=lowering.array_shapes(), defined=record.__contains__)
    run.run([*lowering.forward, *lowering.loss, *lowering.backward])
    run.finish()
    return record


class _Names:
    """The record's keys as one pass of the transcript names them: parameters by the key of
    their current value (w5, step2:w5, w5_new), computed values with the step's prefix and the
    pass's suffix (step2:net_h1, h1_new), gradients dE/d... as the article writes them."""

    def __init__(self, net: Network, record: dict, params: dict, prefix: str, suffix: str = ""):
        self.record, self.params, self.prefix, self.suffix = record, params, prefix, suffix
        self.given = set(net.input_names) | set(net.target_names)

    def key(self, name: str) -> str:
        if name in self.params:
            return self.params[name]
        if name in self.given:
            return name
        if name.startswith(GRADIENT):
            name = "dE/d" + name[len(GRADIENT):]
        return self.prefix + name + self.suffix

    def rename(self, formula):
        if isinstance(formula, Chain):
            return Chain(tuple(tuple(map(self.key, term)) for term in formula.terms))
        return evaluated(formula.xreplace({s: sp.Symbol(self.key(s.name)) for s in formula.free_symbols}))

    def formula(self, name: str):
        return self.rename(self.record[name])

    def factor(self, gradient: str, unit: str):
        """d net_unit / d (what the gradient is of): the coefficient of dL/dnet_unit in the
        interpreter's gradient (dL/dw5 = h1 * dL/dnet_o1: dnet_o1/dw5 = h1)."""
        return self.rename(sp.diff(self.record[gradient], sp.Symbol(f"{GRADIENT}net_{unit}")))

    def feeds(self, gradient: str, units) -> list[str]:
        """The units whose net input reads what ``gradient`` is of, in order: those whose
        dL/dnet the interpreter's gradient reads."""
        read = {s.name for s in self.record[gradient].free_symbols}
        return [unit for unit in units if f"{GRADIENT}net_{unit}" in read]


def network_transcript(net: Network, name: str, conventions: Conventions = Conventions()) -> Transcript:
    if net.steps > FULL_STEPS:  # the first step in full, then a table (network_table.py)
        first = network_transcript(dataclasses.replace(net, steps=1), name, conventions)
        return long_run(first, net, net.steps)
    t = Transcript(name, tr(net.title, net.title_zh),
                   tr(net.description, net.description_zh) if net.description else None)
    t.heading(tr("Given", "已知"))
    for i, (n, v) in enumerate(zip(net.input_names, net.inputs)):
        t.given(n, v, show=True, note=tr("inputs", "输入") if i == 0 else None)
    for i, (n, v) in enumerate(zip(net.target_names, net.targets)):
        t.given(n, v, show=True, note=tr("targets", "目标输出") if i == 0 else None)
    biases = {n for layer in net.layers for n in layer.bias_names}
    for p, v in net.parameters().items():
        t.given(p, v, show=True, note=(tr("bias", "偏置") if p in biases else tr("weight", "权重")))
    t.given("learning_rate", net.learning_rate, text="ρ", latex=r"\rho", show=True,
            note=tr("learning rate", "学习率"))
    if not net.update_biases:
        t.note(tr("Bias convention: the biases are kept fixed; only the weights are updated.",
                  "偏置约定：偏置保持不变，只更新权重。"))
    optimizer = None if net.plain_gradient_descent else OptimizerLines(t, net)
    record = interpreted(net, conventions)
    current = {p: p for p in net.parameters()}  # parameter -> key of its current value
    for step in range(1, net.steps + 1):
        prefix = "" if step == 1 else f"step{step}:"
        if step > 1:
            current = _start_step(t, net, current, prefix, step)
        forward(t, net, _Names(net, record, current, prefix), step=step)
        new = backward(t, net, _Names(net, record, current, prefix), step, conventions, optimizer)
        t.heading(tr("Forward pass with the new values", "用更新后的参数重新前向传播")
                  if net.steps == 1 else tr(f"Step {step}: forward pass with the new values",
                                            f"第 {step} 步：用更新后的参数重新前向传播"))
        forward(t, net, _Names(net, record, new, prefix, "_new"), step=step)
        current = new
    return t


def _start_step(t, net, current, prefix, step):
    """Step k > 1 starts from step k-1's new values, given again under step-k names."""
    t.heading(tr(f"Step {step}: starting values", f"第 {step} 步：初始参数"))
    start = {}
    for p, key in current.items():
        start[p] = prefix + p
        t.given(prefix + p, t.value(key), show=True)
    return start


def forward(t: Transcript, net: Network, names: _Names, step: int):
    """net_u = w * in + ... + b_u, then u = activation(net_u), unit by unit; then the error E and
    each output's share of it. The interpreter's net input is written weight times input, in
    the order of the unit's inputs, bias last, as the article writes it."""
    if not names.suffix:
        t.heading(tr("Forward pass", "前向传播") if step == 1 else
                  tr(f"Step {step}: forward pass", f"第 {step} 步：前向传播"))
    for layer in net.layers:
        for j, unit in enumerate(layer.units):
            terms = list(sp.Add.make_args(names.formula(f"net_{unit}")))
            products = []
            for row in layer.weight_names:
                weight = sp.Symbol(names.key(row[j]))
                (term,) = [term for term in terms if weight in term.free_symbols]
                terms.remove(term)
                products.append(sp.Mul(weight, term / weight, evaluate=False))
            t.define(names.key(f"net_{unit}"), sp.Add(*products, *terms, evaluate=False))
            t.define(names.key(unit), names.formula(unit))
    t.heading(tr("Error", "误差") if not names.suffix else tr("New error", "新的误差"))
    scale, total = names.record["E"].as_coeff_Mul()
    for unit, term in zip(net.layers[-1].units, sp.Add.make_args(total)):  # each output's share (E_o1 in Mazur's article)
        t.define(names.key(f"E_{unit}"), names.rename(scale * term), show=False)
    t.define(names.key("E"), names.formula("E"), note=LOSS_NOTES[net.loss])


def backward(t: Transcript, net: Network, names: _Names, step: int,
             conventions: Conventions = Conventions(), optimizer: "OptimizerLines | None" = None) -> dict:
    """Gradients from the output layer down, each parameter's update right after its gradient
    (``optimizer``: the lines of the network's update rule instead of gradient descent).
    Returns parameter -> key of its new value."""
    key, params = names.key, names.params

    def _update(param):
        if optimizer is not None:
            return optimizer.update(key, param, params[param], names.prefix, step)
        return gradient_descent(t, key, param, params[param], conventions.gradient_ascent)
    new = dict(params)
    t.heading(tr("Backward pass", "反向传播") if net.steps == 1 else
              tr(f"Step {step}: backward pass", f"第 {step} 步：反向传播"))
    t.note(tr("Each partial derivative of the error follows the chain rule, from the output layer back.",
              "按链式法则，从输出层开始逐层向后求误差对各参数的偏导数。"))
    above = None  # the layer above the current one
    for index in range(len(net.layers) - 1, -1, -1):
        layer = net.layers[index]
        role = (tr("output layer", "输出层") if index == len(net.layers) - 1 else tr("hidden layer", "隐藏层"))
        t.heading(tr(f"Layer {index + 1} ({role.en}: {', '.join(layer.units)})",
                     f"第 {index + 1} 层（{role.zh}：{', '.join(layer.units)}）"))
        if above is None:  # the error's derivative with respect to each output
            for j, unit in enumerate(layer.units):
                t.define(key(f"dE/d{unit}"), names.formula(f"{GRADIENT}{unit}"),
                         note=tr(f"partial derivative of the error ({net.loss}) with respect to the output",
                                f"误差（{net.loss}）对输出的偏导数") if j == 0 else None)
        else:  # each unit passes its output to every unit above: it receives the sum of their errors
            updated = ({sp.Symbol(params[w]): sp.Symbol(new[w]) for row in above.weight_names for w in row}
                       if conventions.hidden_uses_updated_weights else {})
            _error_from_above(t, names, layer.units, above.units, updated)
        for j, unit in enumerate(layer.units):
            local = f"d{unit}/dnet_{unit}"
            t.define(key(local), names.formula(local),
                     note=tr(f"local derivative of {layer.activation.name}, from its derivation",
                             f"{layer.activation.name} 的局部导数（由其推导得到）") if j == 0 else None)
            # the unit's delta (dE/dnet), which hand calculations often name: not printed
            t.define(key(f"dE/dnet_{unit}"), names.formula(f"{GRADIENT}net_{unit}"), show=False)
        for j, unit in enumerate(layer.units):
            for row in layer.weight_names:
                _gradient(t, names, row[j], layer.units)
                new[row[j]] = _update(row[j])
            if not layer.shared_bias:
                bias = layer.bias_of(j)
                _gradient(t, names, bias, layer.units)
                if conventions.updates(net, bias):
                    new[bias] = _update(bias)
        if layer.shared_bias:
            bias = layer.bias_names[0]
            _gradient(t, names, bias, layer.units, note=tr(f"the bias {bias} is shared by {', '.join(layer.units)}: the sum over its units",
                                               f"偏置 {bias} 由 {', '.join(layer.units)} 共用：对各神经元的偏导数求和"))
            if conventions.updates(net, bias):
                new[bias] = _update(bias)
        above = layer
    return new


def _error_from_above(t, names: _Names, sources, units_above, updated=None):
    """dE/dsource = sum over the units above of dE/du * du/dnet_u * dnet_u/dsource.
    ``updated`` (weight -> new weight) only for the checker's updated-weights convention."""
    key = names.key
    for source in sources:
        terms = []
        gradient = f"{GRADIENT}{source}"
        for unit in names.feeds(gradient, units_above):
            factor = key(f"dnet_{unit}/d{source}")
            t.define(factor, names.factor(gradient, unit).xreplace(updated or {}))
            terms.append((key(f"dE/d{unit}"), key(f"d{unit}/dnet_{unit}"), factor))
        if len(terms) > 1:  # each path's contribution (dE_o1/dh1 in Mazur's article): not printed
            for unit, term in zip(units_above, terms):
                t.define(key(f"dE_{unit}/d{source}"), Chain((term,)), show=False)
        note = (tr(f"{source} feeds {', '.join(units_above)}, so it receives error from each of them: the sum",
                   f"{source} 的输出传给 {', '.join(units_above)}，因此要接收它们各自传回的误差并求和")
                if len(terms) > 1 else None)
        t.define(key(f"dE/d{source}"), Chain(tuple(terms)), note=note)


def _gradient(t, names: _Names, param, units, note=None):
    """dE/dparam = sum over the units it feeds (of ``units``) of dE/du * du/dnet_u * dnet_u/dparam."""
    key, gradient, terms = names.key, f"{GRADIENT}{param}", []
    for unit in names.feeds(gradient, units):
        factor = key(f"dnet_{unit}/d{param}")
        t.define(factor, names.factor(gradient, unit))
        terms.append((key(f"dE/d{unit}"), key(f"d{unit}/dnet_{unit}"), factor))
    t.define(key(f"dE/d{param}"), Chain(tuple(terms)), note=note)


def gradient_descent(t, key, param, current_key, ascent=False) -> str:
    """param_new = param - ρ * dE/dparam: one step of gradient descent (``ascent``: the
    checker's sign-slip convention, + instead of -)."""
    new_key = key(f"{param}_new")
    step = sp.Mul(1 if ascent else -1, t.symbol("learning_rate"), t.symbol(key(f"dE/d{param}")), evaluate=False)
    t.define(new_key, sp.Add(t.symbol(current_key), step, evaluate=False),
             note=tr("gradient descent: new value = old value - learning rate * partial derivative",
                     "梯度下降：新值 = 旧值 - 学习率 × 偏导数"))
    return new_key


class OptimizerLines:
    """The network's update rule (symbolic/steps.py) written out for each parameter: every
    line of the rule with its formula and numbers, after the parameter's gradient. The
    state (one value per parameter and state tensor, and the step count) starts at the rule's
    initial values and carries over from step to step."""

    def __init__(self, t: Transcript, net: Network):
        self.t, self.net, self.rule = t, net, RULES[net.optimizer]
        settings = net.optimizer_settings or {}
        self.weight_decay = settings.get("weight_decay", 0)
        self.names = {self.rule.hyper_parameter("lr").symbol: t.symbol("learning_rate")}
        for hyper in self.rule.hyper:
            if hyper.name != "lr":
                self.names[hyper.symbol] = t.given(
                    f"{self.rule.name}.{hyper.name}", settings[hyper.name], text=hyper.text, latex=hyper.latex,
                    show=hyper.name != "weight_decay" or bool(self.weight_decay), note=tr(hyper.description))
        lines = "; ".join(f"{line.target} <- {line.formula}" for line in self.rule.lines
                          if line.kind != "gradient" or self.weight_decay)
        t.note(tr(f"Optimizer {self.rule.name} ({self.rule.torch}), for every parameter p with gradient g: "
                  f"{lines}" + ("; t counts the steps, this one included" if self.rule.counts_steps else "")
                  + ". The learning rate lr is ρ."))
        self.state = {}  # (state tensor, parameter) -> key of its current value
        for param in net.parameters():
            for name, initial in self.rule.state:
                self.state[(name, param)] = t.given(f"{name}_0[{param}]", initial, text=f"{name}_0[{param}]",
                                                    latex=f"{name}^{{(0)}}_{{{_latex_name(param)}}}").name
        if self.rule.counts_steps:
            self.count = t.given("t[0]", 0, latex="t^{(0)}").name
        if self.rule.state or self.rule.counts_steps:
            t.note(tr(f"The state starts at 0: {', '.join(n + ' = 0' for n in self.rule.state_names)}"
                      f"{' and t = 0' if self.rule.counts_steps else ''} for every parameter."))
        self.counted = set()

    def _count(self, step: int):
        """t[step] = t[step - 1] + 1, once per step, at its first update."""
        if step not in self.counted:
            self.counted.add(step)
            key = f"t[{step}]"
            self.t.define(key, STEP_COUNT_LINE.formula.xreplace({STEP_COUNT: self.t.symbol(self.count)}),
                          latex=f"t^{{({step})}}", note=tr(STEP_COUNT_LINE.note))
            self.count = key
        return self.t.symbol(self.count)

    def update(self, key, param: str, current_key: str, prefix: str, step: int) -> str:
        """The rule's lines for one parameter; returns the key of its new value."""
        t, first = self.t, not self.counted or step not in self.counted
        names = dict(self.names)
        names[PARAMETER] = t.symbol(current_key)
        names[GRADIENT_SYMBOL] = t.symbol(key(f"dE/d{param}"))
        for name in self.rule.state_names:
            names[sp.Symbol(name, real=True)] = t.symbol(self.state[(name, param)])
        if self.rule.counts_steps:
            names[STEP_COUNT] = self._count(step)
        new_key = key(f"{param}_new")
        for line in self.rule.lines:
            if line.kind == "gradient" and not self.weight_decay:
                continue
            if line.kind == "param":
                target, latex = new_key, None
            else:
                target = key(f"{line.target}[{param}]")
                name_latex = {"m_hat": r"\hat{m}", "v_hat": r"\hat{v}"}.get(line.target, line.target)
                latex = f"{name_latex}_{{{_latex_name(param)}}}"
                if prefix:
                    latex = "{" + latex + "}^{[" + str(step) + "]}"
            symbol = t.define(target, line.formula.xreplace(names), latex=latex,
                              note=tr(f"{self.rule.name}: {line.note}") if first else None)
            names[sp.Symbol(line.target, real=True)] = symbol
            if line.kind == "state":
                self.state[(line.target, param)] = target
        self.counted.add(step)
        return new_key
