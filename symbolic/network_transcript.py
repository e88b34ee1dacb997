"""The hand-calculation transcript of a network file: the seed-001 article's order, exactly.

Forward pass (each net input, each activation), the error, then backward from the output
layer: for every weight and bias the chain rule written out factor by factor, each factor's
formula and number, the product, the update and the new value; then the forward pass with the
new values and the new error. Every local derivative comes from the layer registry (the
activation's and the loss's derived backward rules) or from SymPy differentiating the net
input formula; nothing is typed in here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import sympy as sp

from .layers import K, N, REGISTRY, real
from .networkfile import CROSS_ENTROPY, EXTRA_LOSSES, FULL_STEPS, SUM_OF_SQUARES, Network, loss_op  # noqa: F401
from .network_table import long_run
from .steps import RULES, STEP_COUNT_LINE
from .steps import g as GRADIENT, p as PARAMETER, t as STEP_COUNT
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
    The checker rebuilds a transcript under the alternatives to explain a learner's numbers."""

    hidden_uses_updated_weights: bool = False  # dE/dy from the output weights already updated
    relu_derivative_at_zero: int = 0  # relu'(0): 0 (PyTorch, JAX) or 1
    gradient_ascent: bool = False  # new = old + rate * gradient (a sign slip in the update)
    sigmoid_derivative_at_net: bool = False  # y(1 - y) evaluated at the net input instead of the output
    updated_biases: frozenset | None = None  # the biases that are updated; None: as the network says

    def updates(self, net, bias: str) -> bool:
        return net.update_biases if self.updated_biases is None else bias in self.updated_biases


def loss_derivation(name: str):
    return EXTRA_LOSSES[name].derive() if name in EXTRA_LOSSES else REGISTRY.derive(name)


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
    current = {p: p for p in net.parameters()}  # parameter -> key of its current value
    for step in range(1, net.steps + 1):
        prefix = "" if step == 1 else f"step{step}:"
        if step > 1:
            current = _start_step(t, net, current, prefix, step)
        forward(t, net, current, prefix, suffix="", step=step)
        new = backward(t, net, current, prefix, step, conventions, optimizer)
        t.heading(tr("Forward pass with the new values", "用更新后的参数重新前向传播")
                  if net.steps == 1 else tr(f"Step {step}: forward pass with the new values",
                                            f"第 {step} 步：用更新后的参数重新前向传播"))
        forward(t, net, new, prefix, suffix="_new", step=step)
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


def _key(prefix, name):
    return prefix + name


def forward(t: Transcript, net: Network, params: dict, prefix: str, suffix: str, step: int):
    """net_u = sum_i w_iu * in_i + b_u, u = activation(net_u), for every unit; then the error E."""
    if not suffix:
        t.heading(tr("Forward pass", "前向传播") if step == 1 else
                  tr(f"Step {step}: forward pass", f"第 {step} 步：前向传播"))
    sym = lambda key: t.symbol(key)  # noqa: E731
    previous = [sym(n) for n in net.input_names]
    for layer in net.layers:
        derivation = _activation_derivation(layer)
        outputs = []
        for j, unit in enumerate(layer.units):
            products = [sp.Mul(sym(params[layer.weight_names[i][j]]), x, evaluate=False)
                        for i, x in enumerate(previous)]
            net_input = sp.Add(*products, sym(params[layer.bias_of(j)]), evaluate=False)
            net_sym = t.define(_key(prefix, f"net_{unit}{suffix}"), net_input)
            activation = derivation.forward["y"].xreplace({real("x"): net_sym})
            outputs.append(t.define(_key(prefix, f"{unit}{suffix}"), activation))
        previous = outputs
    t.heading(tr("Error", "误差") if not suffix else tr("New error", "新的误差"))
    loss = loss_derivation(net.loss)
    per_unit = next(iter(loss.forward.values()))
    scale = _loss_scale(net)
    terms = [per_unit.xreplace({real("y"): y, real("t"): sym(tn)}) for y, tn in zip(previous, net.target_names)]
    for unit, term in zip(net.layers[-1].units, terms):  # each output's share of E (E_o1 in Mazur's article)
        t.define(_key(prefix, f"E_{unit}{suffix}"), scale * term, show=False)
    t.define(_key(prefix, f"E{suffix}"), scale * sp.Add(*terms), note=LOSS_NOTES[net.loss])


def _loss_scale(net):
    return loss_op(net.loss).loss_scale.subs({N: 1, K: len(net.layers[-1].units)})


def backward(t: Transcript, net: Network, params: dict, prefix: str, step: int,
             conventions: Conventions = Conventions(), optimizer: "OptimizerLines | None" = None) -> dict:
    """Gradients from the output layer down, each parameter's update right after its gradient
    (``optimizer``: the lines of the network's update rule instead of gradient descent).
    Returns parameter -> key of its new value."""
    sym = lambda name: t.symbol(name)  # noqa: E731
    key = lambda name: _key(prefix, name)  # noqa: E731

    def _update(t, key, param, current_key, ascent):
        if optimizer is not None:
            return optimizer.update(key, param, current_key, prefix, step)
        return gradient_descent(t, key, param, current_key, ascent)
    outputs = net.layers[-1].units
    loss = loss_derivation(net.loss)
    rule = next(iter(loss.backward.values())).subs({N: 1, K: len(outputs)})
    new = dict(params)
    t.heading(tr("Backward pass", "反向传播") if net.steps == 1 else
              tr(f"Step {step}: backward pass", f"第 {step} 步：反向传播"))
    t.note(tr("Each partial derivative of the error follows the chain rule, from the output layer back.",
              "按链式法则，从输出层开始逐层向后求误差对各参数的偏导数。"))
    above = None  # the layer above the current one, with its units' net-input formulas
    for index in range(len(net.layers) - 1, -1, -1):
        layer = net.layers[index]
        role = (tr("output layer", "输出层") if index == len(net.layers) - 1 else tr("hidden layer", "隐藏层"))
        t.heading(tr(f"Layer {index + 1} ({role.en}: {', '.join(layer.units)})",
                     f"第 {index + 1} 层（{role.zh}：{', '.join(layer.units)}）"))
        if above is None:  # the error's derivative with respect to each output
            for j, (unit, target) in enumerate(zip(layer.units, net.target_names)):
                t.define(key(f"dE/d{unit}"), rule.xreplace({real("y"): sym(key(unit)), real("t"): sym(target)}),
                         note=tr(f"partial derivative of the error ({net.loss}) with respect to the output",
                                f"误差（{net.loss}）对输出的偏导数")
                         if j == 0 else None)
        else:  # each unit passes its output to every unit above: it receives the sum of their errors
            updated = ({sym(params[w]): sym(new[w]) for w in above[2]}
                       if conventions.hidden_uses_updated_weights else {})
            _error_from_above(t, key, layer.units, above[0], above[1], updated)
        derivation = _activation_derivation(layer)
        local = derivation.backward["dx"].xreplace({real("dout"): sp.S.One})
        if conventions.relu_derivative_at_zero:
            local = local.replace(lambda e: isinstance(e, sp.Heaviside),
                                  lambda e: sp.Heaviside(e.args[0], conventions.relu_derivative_at_zero))
        nets = {unit: t.quantities[key(f"net_{unit}")].formula for unit in layer.units}
        at_net = conventions.sigmoid_derivative_at_net and layer.activation.name == "sigmoid"
        for j, unit in enumerate(layer.units):
            output = sym(key(f"net_{unit}")) if at_net else sym(key(unit))
            t.define(key(f"d{unit}/dnet_{unit}"),
                     local.xreplace({real("y"): output, real("x"): sym(key(f"net_{unit}"))}),
                     note=tr(f"local derivative of {layer.activation.name}, from its derivation",
                             f"{layer.activation.name} 的局部导数（由其推导得到）") if j == 0 else None)
            # the unit's delta (dE/dnet), which hand calculations often name: not printed
            t.define(key(f"dE/dnet_{unit}"), Chain(((key(f"dE/d{unit}"), key(f"d{unit}/dnet_{unit}")),)), show=False)
        for j, unit in enumerate(layer.units):
            for i in range(len(layer.weights)):
                weight = layer.weight_names[i][j]
                _gradient(t, key, weight, sym(params[weight]), [(unit, nets[unit])])
                new[weight] = _update(t, key, weight, params[weight], conventions.gradient_ascent)
            if not layer.shared_bias:
                bias = layer.bias_of(j)
                _gradient(t, key, bias, sym(params[bias]), [(unit, nets[unit])])
                if conventions.updates(net, bias):
                    new[bias] = _update(t, key, bias, params[bias], conventions.gradient_ascent)
        if layer.shared_bias:
            bias = layer.bias_names[0]
            _gradient(t, key, bias, sym(params[bias]), list(nets.items()),
                      note=tr(f"the bias {bias} is shared by {', '.join(layer.units)}: the sum over its units",
                              f"偏置 {bias} 由 {', '.join(layer.units)} 共用：对各神经元的偏导数求和"))
            if conventions.updates(net, bias):
                new[bias] = _update(t, key, bias, params[bias], conventions.gradient_ascent)
        above = (layer.units, nets, [w for row in layer.weight_names for w in row])
    return new


def _activation_derivation(layer):
    name = layer.activation.name
    return REGISTRY.derive(name) if name in REGISTRY else layer.activation.derive()


def _error_from_above(t, key, sources, units_above, nets_above, updated=None):
    """dE/dsource = sum over the units above of dE/du * du/dnet_u * dnet_u/dsource.
    ``updated`` (weight -> new weight) only for the checker's updated-weights convention."""
    for source in sources:
        terms = []
        for unit in units_above:
            factor = key(f"dnet_{unit}/d{source}")
            t.define(factor, sp.diff(nets_above[unit], t.symbol(key(source))).xreplace(updated or {}))
            terms.append((key(f"dE/d{unit}"), key(f"d{unit}/dnet_{unit}"), factor))
        if len(terms) > 1:  # each path's contribution (dE_o1/dh1 in Mazur's article): not printed
            for unit, term in zip(units_above, terms):
                t.define(key(f"dE_{unit}/d{source}"), Chain((term,)), show=False)
        note = (tr(f"{source} feeds {', '.join(units_above)}, so it receives error from each of them: the sum",
                   f"{source} 的输出传给 {', '.join(units_above)}，因此要接收它们各自传回的误差并求和")
                if len(terms) > 1 else None)
        t.define(key(f"dE/d{source}"), Chain(tuple(terms)), note=note)


def _gradient(t, key, param, param_sym, units, note=None):
    """dE/dparam = sum over the units it feeds of dE/du * du/dnet_u * dnet_u/dparam."""
    terms = []
    for unit, formula in units:
        factor = key(f"dnet_{unit}/d{param}")
        t.define(factor, sp.diff(formula, param_sym))
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
        names[GRADIENT] = t.symbol(key(f"dE/d{param}"))
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
