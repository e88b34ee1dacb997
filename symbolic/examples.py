"""The built-in worked examples of the source articles, each under a stable name.

Two are network files shipped in ``symbolic/networks/`` (the seed-001 2-2-2 network and Matt
Mazur's classic 2-2-2 example); the others are small graphs written here. In all of them the
local derivatives are the layer registry's derived backward rules (``REGISTRY.derive(...)``)
or SymPy's ``diff`` of a forward formula, and the numbers are computed from the printed
formulas by ``Transcript``. ``LOSS_FUNCTIONS`` gives each example's objective in plain
float64 numpy, written independently, so tests can compare every gradient with central
finite differences.
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import sympy as sp

from .errors import SympropError
from .layers import I, J, K, N, REGISTRY, real
from .graphfile import is_graph_file, parse_graph
from .graphfile_transcript import graph_file_transcript, graph_transcript
from .networkfile import load_network, parse_network
from .network_transcript import network_transcript
from .stable import Sigmoid
from .transcript import FLOAT32, Chain, Text, Transcript, to_float32, tr

R = sp.Rational


@dataclass(frozen=True)
class Example:
    name: str
    summary: str
    build: Callable[[], Transcript]
    seed: str
    # For a loss averaged over a batch: the same example with the loss summed over the batch,
    # a convention the hand-calculation checker tries when a learner's numbers disagree.
    build_batch_sum: Callable[[], Transcript] | None = None
    # Samples in the batch (the N of a 1/N), for the checker's "off by a factor of N" diagnosis.
    batch_size: int = 1


def _local(layer: str, grad: str, **names) -> sp.Expr:
    """A registry layer's local derivative (its backward rule with upstream 1), with the
    layer's variables renamed to the example's quantities."""
    rule = REGISTRY.derive(layer).backward[grad].xreplace({real("dout"): sp.S.One})
    return rule.xreplace({real(k): v for k, v in names.items()})


def _forward(layer: str, **names) -> sp.Expr:
    derivation = REGISTRY.derive(layer)
    formula = next(iter(derivation.forward.values()))
    return formula.xreplace({real(k): v for k, v in names.items()})


# --- seed 002: nested neurons ------------------------------------------------------------

def nested_neurons() -> Transcript:
    t = Transcript("nested-neurons", tr("Nested neurons f = (a + b) * c, one gradient-ascent step",
                                         "嵌套神经元 f = (a + b) * c：一步梯度上升"),
                   tr("An addition node d = a + b feeds a multiplication node f = d * c. We move a, b and c "
                      "a small step h along their gradients so that f increases.",
                      "加法节点 d = a + b 的输出送入乘法节点 f = d * c。沿梯度方向把 a、b、c 各移动一小步 h，使 f 增大。"))
    t.heading(tr("Given", "已知"))
    a, b, c = (t.given(k, v, show=True) for k, v in (("a", 5), ("b", -6), ("c", 7)))
    h = t.given("h", R(1, 100), show=True)
    t.heading(tr("Forward pass", "前向传播"))
    d = t.define("d", _forward("add", x=a, y=b), note=tr("addition node", "加法节点"))
    t.define("f", _forward("mul", x=d, y=c), note=tr("multiplication node", "乘法节点"))
    t.heading(tr("Local derivatives (from the add and mul nodes' derivations)", "局部导数（由加法、乘法节点的推导得到）"))
    t.define("df/dd", _local("mul", "dx", x=d, y=c), note=tr("mul node: the other input", "乘法节点：另一个输入"))
    t.define("df/dc", _local("mul", "dy", x=d, y=c))
    t.define("dd/da", _local("add", "dx", x=a, y=b), note=tr("add node: passes the gradient on", "加法节点：梯度原样传递"))
    t.define("dd/db", _local("add", "dy", x=a, y=b))
    t.heading(tr("Chain rule", "链式法则"))
    t.define("df/da", Chain((("df/dd", "dd/da"),)))
    t.define("df/db", Chain((("df/dd", "dd/db"),)))
    t.heading(tr("Gradient ascent: x += h * df/dx", "梯度上升：x += h * df/dx"))
    new = {}
    for name in ("a", "b", "c"):
        new[name] = t.define(f"{name}_new", sp.Add(t.symbol(name), sp.Mul(h, t.symbol(f"df/d{name}"),
                                                                             evaluate=False), evaluate=False))
    t.heading(tr("Forward pass with the new values", "用更新后的值重新前向传播"))
    d_new = t.define("d_new", _forward("add", x=new["a"], y=new["b"]))
    t.define("f_new", _forward("mul", x=d_new, y=new["c"]), note=tr("larger than f = -7", "比 f = -7 大"))
    return t


# --- seed 000: layers of the two-layer classifier ----------------------------------------

def graph_nodes() -> Transcript:
    t = Transcript("add-mul-nodes", tr("Addition and multiplication nodes", "加法节点与乘法节点的反向传播"),
                   tr("Backward through a node: the upstream gradient dout times the node's local derivative.",
                      "反向传播：上游传来的导数 dout 乘以本节点的局部导数。"))
    t.heading(tr("Given", "已知"))
    x, y = t.given("x", 2, show=True), t.given("y", 3, show=True)
    dout = t.given("dout", R(3, 2), show=True)
    t.heading(tr("Addition node out = x + y", "加法节点 out = x + y"))
    t.define("add_out", _forward("add", x=x, y=y))
    for v in ("x", "y"):
        t.define(f"dadd_out/d{v}", _local("add", f"d{v}", x=x, y=y))
        t.define(f"dL/d{v}_add", Chain((("dout", f"dadd_out/d{v}"),)),
                 note=tr("passes dout through", "原样传递 dout") if v == "x" else None)
    t.heading(tr("Multiplication node out = x * y", "乘法节点 out = x * y"))
    t.define("mul_out", _forward("mul", x=x, y=y))
    for v in ("x", "y"):
        t.define(f"dmul_out/d{v}", _local("mul", f"d{v}", x=x, y=y))
        t.define(f"dL/d{v}_mul", Chain((("dout", f"dmul_out/d{v}"),)),
                 note=tr("dout times the other input (the inputs swap)", "dout 乘以另一个输入（输入互换）") if v == "x" else None)
    return t


ACTIVATION_X = [[R(1), R(-1, 2)], [R(-2), R(3)]]
ACTIVATION_DOUT = [[R(1, 2), R(-1)], [R(2), R(1, 4)]]


def _activation_layer(layer: str, title: Text, intro: Text) -> Transcript:
    t = Transcript(f"{layer}-layer", title, intro)
    t.heading(tr("Given (a 2 x 2 batch)", "已知（2 x 2 的输入）"))
    for n in range(2):
        for k in range(2):
            t.given(f"x{n + 1}{k + 1}", ACTIVATION_X[n][k], show=True)
    for n in range(2):
        for k in range(2):
            t.given(f"dout{n + 1}{k + 1}", ACTIVATION_DOUT[n][k], show=True)
    t.heading(tr("Forward pass", "前向传播"))
    for n in range(2):
        for k in range(2):
            t.define(f"y{n + 1}{k + 1}", _forward(layer, x=t.symbol(f"x{n + 1}{k + 1}")))
    t.heading(tr("Backward pass: dL/dx = dout * dy/dx", "反向传播：dL/dx = dout * dy/dx"))
    for n in range(2):
        for k in range(2):
            i = f"{n + 1}{k + 1}"
            t.define(f"dy{i}/dx{i}", _local(layer, "dx", x=t.symbol(f"x{i}"), y=t.symbol(f"y{i}")),
                     note=tr(f"the {layer} layer's derived local derivative", f"{layer} 层推导出的局部导数")
                     if i == "11" else None)
            t.define(f"dL/dx{i}", Chain(((f"dout{i}", f"dy{i}/dx{i}"),)))
    return t


def relu_layer() -> Transcript:
    return _activation_layer("relu", tr("ReLU layer", "ReLU 层的反向传播"),
                             tr("dL/dx = dout where x > 0, else 0 (relu'(0) = 0 by convention).",
                                "x > 0 时 dL/dx = dout，否则为 0（约定 relu'(0) = 0）。"))


def sigmoid_layer() -> Transcript:
    return _activation_layer("sigmoid", tr("Sigmoid layer", "Sigmoid 层的反向传播"),
                             tr("dL/dx = dout * y * (1 - y), from the saved output y.",
                                "dL/dx = dout * y * (1 - y)，只用到前向保存的输出 y。"))


def affine_layer() -> Transcript:
    t = Transcript("affine-layer", tr("Affine layer on a batch: Y = X W + B", "Affine 层（批量）：Y = X W + B"),
                   tr("The article's example: dY = [[1, 2, 3], [4, 5, 6]] gives dB = [5, 7, 9], the sum over the batch.",
                      "文章中的例子：dY = [[1, 2, 3], [4, 5, 6]]，对批量求和得 dB = [5, 7, 9]。"))
    t.heading(tr("Given", "已知"))
    X = t.given("X", [[1, 2], [3, 4]], show=True)
    W = t.given("W", [[R(1, 10), R(3, 10), R(5, 10)], [R(2, 10), R(4, 10), R(6, 10)]], show=True)
    B = t.given("B", [[1, 2, 3]], show=True)
    dY = t.given("dL/dY", [[1, 2, 3], [4, 5, 6]], text="dY", latex=r"\frac{\partial L}{\partial Y}", show=True)
    derivation = REGISTRY.derive("affine")
    sizes = {N: 2, I: 2, J: 3}
    regs = {sp.MatrixSymbol("X", N, I).subs(sizes): X, sp.MatrixSymbol("W", I, J).subs(sizes): W,
            sp.MatrixSymbol("b", 1, J).subs(sizes): B, sp.MatrixSymbol("dY", N, J).subs(sizes): dY}
    t.heading(tr("Forward pass", "前向传播"))
    t.define("Y", derivation.forward["Y"].subs(sizes).xreplace(regs),
             note=tr("1 is a column of ones: B is added to every row", "1 是全 1 列向量：B 加到每一行"))
    t.heading(tr("Backward pass (the affine layer's derived rules)", "反向传播（Affine 层推导出的规则）"))
    t.define("dL/dX", derivation.backward["dX"].subs(sizes).xreplace(regs), text="dX")
    t.define("dL/dW", derivation.backward["dW"].subs(sizes).xreplace(regs), text="dW")
    t.define("dL/dB", derivation.backward["db"].subs(sizes).xreplace(regs), text="dB",
             note=tr("1 is a row of ones: the sum of dY over the batch", "1 是全 1 行向量：dY 沿批量方向求和"))
    return t


SOFTMAX_Z = [[R(3, 10), R(29, 10), R(4)], [R(1, 10), R(2, 10), R(7, 10)]]
SOFTMAX_T = [[0, 0, 1], [0, 1, 0]]


def softmax_with_loss(batch_sum: bool = False) -> Transcript:
    """batch_sum: the loss summed over the rows instead of averaged (the rule's N set to 1)."""
    t = Transcript("softmax-with-loss", tr("Softmax-with-loss on a batch of two", "Softmax-with-Loss 层（批量为 2）"),
                   tr("Softmax then cross-entropy against one-hot targets, averaged over the batch: "
                      "dL/dz = (y - t) / batch_size.",
                      "Softmax 后接交叉熵误差（one-hot 标签），对批量取平均：dL/dz = (y - t) / batch_size。"))
    rows, classes = len(SOFTMAX_Z), len(SOFTMAX_Z[0])
    idx = [(n, k) for n in range(1, rows + 1) for k in range(1, classes + 1)]
    t.heading(tr("Given", "已知"))
    for n, k in idx:
        t.given(f"z{n}{k}", SOFTMAX_Z[n - 1][k - 1], show=True)
    for n, k in idx:
        t.given(f"t{n}{k}", SOFTMAX_T[n - 1][k - 1], show=True)
    t.heading(tr("Forward pass: softmax of each row", "前向传播：逐行 softmax"))
    for n, k in idx:
        denominator = sp.Add(*[sp.exp(t.symbol(f"z{n}{m}")) for m in range(1, classes + 1)], evaluate=False)
        t.define(f"y{n}{k}", sp.exp(t.symbol(f"z{n}{k}")) / denominator)
    t.heading(tr("Loss: cross-entropy, mean over the batch", "误差：交叉熵，对批量取平均"))
    batch = 1 if batch_sum else rows
    t.define("L", -sp.Add(*[t.symbol(f"t{n}{k}") * sp.log(t.symbol(f"y{n}{k}")) for n, k in idx]) / batch)
    t.heading(tr("Backward pass (the softmax-cross-entropy layer's derived rule)", "反向传播（由 softmax-cross-entropy 的推导得到）"))
    rule = REGISTRY.derive("softmax-cross-entropy").backward["dz[j]"].subs(N, batch)
    y, tb = sp.IndexedBase("y"), sp.IndexedBase("t")
    j = sp.Symbol("j", integer=True)
    for n, k in idx:
        t.define(f"dL/dz{n}{k}", rule.xreplace({y[j]: t.symbol(f"y{n}{k}"), tb[j]: t.symbol(f"t{n}{k}")}))
    return t


# --- seed 003: linear and quadratic models trained by per-sample SGD ----------------------

DATA_X, DATA_Y = [1, 2, 3], [2, 4, 6]


def _sgd_model(name, title, intro, weights, start, model_formula):
    """Per-sample SGD on (DATA_X, DATA_Y), loss (y_hat - y)^2: one step in full, then 100 epochs."""
    t = Transcript(name, title, intro)
    t.heading(tr("Given", "已知"))
    params = {w: t.given(w, start[w], show=True) for w in weights}
    x, y = t.given("x", DATA_X[0], show=True), t.given("y", DATA_Y[0], show=True)
    lr = t.given("learning_rate", R(1, 100), text="lr", latex=r"\eta", show=True)
    x4 = t.given("x_test", 4, show=True)
    t.heading(tr("Prediction at x = 4 before training", "训练前 x = 4 的预测值"))
    t.define("y_hat_test", model_formula(params, x4))
    t.heading(tr("One SGD step on the first sample", "第一个样本上的一步随机梯度下降"))
    y_hat = t.define("y_hat", model_formula(params, x))
    t.define("l", _forward("mse", y=y_hat, t=y), note=tr("squared error of one sample", "单个样本的平方误差"))
    t.define("dl/dy_hat", _local("mse", "dy", y=y_hat, t=y).subs({N: 1, K: 1}),
             note=tr("the loss's derived local derivative", "误差函数推导出的局部导数"))
    model = model_formula(params, x)
    for w in weights:
        t.define(f"dy_hat/d{w}", sp.diff(model, params[w]))
        t.define(f"dl/d{w}", Chain((("dl/dy_hat", f"dy_hat/d{w}"),)))
        t.define(f"{w}_new", sp.Add(params[w], sp.Mul(-1, lr, t.symbol(f"dl/d{w}"), evaluate=False), evaluate=False))
    # the same formulas, applied sample by sample for 100 epochs (exact rationals)
    step_formulas = {}
    for w in weights:
        factors = t.quantities[f"dl/d{w}"].formula.terms[0]
        product = sp.Mul(*[t.quantities[k].formula for k in factors]).xreplace({t.symbol("y_hat"): model})
        step_formulas[w] = params[w] - lr * product
    loss_formula = t.quantities["l"].formula.xreplace({t.symbol("y_hat"): model})
    values = dict(start)
    rows = []
    for epoch in range(1, 101):
        for xv, yv in zip(DATA_X, DATA_Y):
            subs = {params[w]: values[w] for w in weights} | {x: xv, y: yv, lr: R(1, 100)}
            last_loss = loss_formula.xreplace(subs)  # before the update, as the tutorial prints it
            values = {w: step_formulas[w].xreplace(subs) for w in weights}
            if FLOAT32.get():  # the checker's float32 convention: a program's float32 weights
                values = {w: to_float32(v) for w, v in values.items()}
        if epoch <= 5 or epoch % 10 == 0:
            rows.append([str(epoch), *[values[w] for w in weights], last_loss])
            for w in weights:  # the table's numbers under names a learner can claim (JSON only)
                t.given(f"epoch{epoch}:{w}", values[w], result_of=tr(f"{epoch} epochs of per-sample SGD",
                                                                      f"逐样本训练 {epoch} 轮"))
            t.given(f"epoch{epoch}:l", last_loss, result_of=tr(f"{epoch} epochs of per-sample SGD",
                                                               f"逐样本训练 {epoch} 轮"))
    t.heading(tr("100 epochs of per-sample SGD on x = [1, 2, 3], y = [2, 4, 6]",
                 "在 x = [1, 2, 3]、y = [2, 4, 6] 上逐样本训练 100 轮"))
    t.table([tr("epoch", "轮次"), *[tr(f"{w} after the epoch", f"本轮后 {w}") for w in weights],
             tr("loss of the epoch's last sample", "本轮最后一个样本的误差")], rows)
    t.heading(tr("Prediction at x = 4 after training", "训练后 x = 4 的预测值"))
    trained = tr("100 epochs of per-sample SGD", "逐样本训练 100 轮")
    final = {w: t.given(f"{w}_trained", values[w], result_of=trained) for w in weights}
    t.define("y_hat_test_trained", model_formula(final, x4))
    return t


def linear_model() -> Transcript:
    return _sgd_model("linear-model", tr("Linear model y_hat = w * x trained by SGD", "线性模型 y_hat = w * x 的随机梯度下降"),
                      tr("Loss (y_hat - y)^2 per sample, w starts at 1, learning rate 0.01.",
                         "每个样本的误差为 (y_hat - y)^2，w 初始为 1，学习率 0.01。"),
                      ["w"], {"w": R(1)}, lambda p, x: sp.Mul(p["w"], x, evaluate=False))


def quadratic_model() -> Transcript:
    return _sgd_model("quadratic-model", tr("Quadratic model y_hat = w1 x^2 + w2 x + b", "二次模型 y_hat = w1 x^2 + w2 x + b"),
                      tr("With w1 = w2 = b = 1 (the model y = x^2 + x + 1) the prediction at x = 4 is 21; then "
                         "per-sample SGD on the linear data, loss (y_hat - y)^2, learning rate 0.01.",
                         "w1 = w2 = b = 1（即 y = x^2 + x + 1）时 x = 4 的预测值为 21；随后在同一组数据上逐样本训练。"),
                      ["w1", "w2", "b"], {"w1": R(1), "w2": R(1), "b": R(1)},
                      lambda p, x: sp.Add(sp.Mul(p["w1"], x ** 2, evaluate=False),
                                          sp.Mul(p["w2"], x, evaluate=False), p["b"], evaluate=False))


# --- seed 001 part 2: logistic regression on two moons --------------------------------------

MOONS_X = [[R(-12, 10), R(8, 10)], [R(3, 10), R(11, 10)], [R(9, 10), R(-6, 10)], [R(15, 10), R(-2, 10)]]
MOONS_T = [0, 0, 1, 1]
MOONS_W, MOONS_B = [R(1, 2), R(-1, 2)], R(0)


def moons_logistic(batch_sum: bool = False) -> Transcript:
    """batch_sum: the loss summed over the points instead of averaged (the rule's N set to 1)."""
    t = Transcript("moons-logistic", tr("Logistic regression on two moons: one gradient step",
                                        "两个月牙数据上的逻辑回归：一步梯度下降"),
                   tr("One sigmoid unit z = w1 x1 + w2 x2 + B, binary cross-entropy averaged over the batch, "
                      "learning rate 0.05, on four standardised points of a moons data set. "
                      "Gradient formulas: dL/dz_n = (sigmoid(z_n) - t_n) / N, dL/dw = sum_n dL/dz_n x_n, dL/dB = sum_n dL/dz_n.",
                      "一个 sigmoid 单元 z = w1 x1 + w2 x2 + B，交叉熵误差对批量取平均，学习率 0.05，"
                      "数据为月牙数据集中标准化后的四个点。梯度公式：dL/dz_n = (sigmoid(z_n) - t_n) / N，"
                      "dL/dw = sum_n dL/dz_n x_n，dL/dB = sum_n dL/dz_n。"))
    rows = len(MOONS_X)
    t.heading(tr("Given", "已知"))
    for n in range(rows):
        for k in range(2):
            t.given(f"x{n + 1}_{k + 1}", MOONS_X[n][k], show=True)
        t.given(f"t{n + 1}", MOONS_T[n], show=True)
    params = {"w1": MOONS_W[0], "w2": MOONS_W[1], "B": MOONS_B}
    for k, v in params.items():
        t.given(k, v, show=True)
    t.given("learning_rate", R(5, 100), text="lr", latex=r"\eta", show=True)
    derivation = REGISTRY.derive("binary-cross-entropy")
    batch = 1 if batch_sum else rows
    scale = REGISTRY["binary-cross-entropy"].loss_scale.subs(N, batch)
    grad_rule = derivation.backward["dz"].subs(N, batch)

    def forward(names, suffix):
        zs = []
        for n in range(1, rows + 1):
            z = sp.Add(sp.Mul(t.symbol(names["w1"]), t.symbol(f"x{n}_1"), evaluate=False),
                       sp.Mul(t.symbol(names["w2"]), t.symbol(f"x{n}_2"), evaluate=False),
                       t.symbol(names["B"]), evaluate=False)
            zs.append(t.define(f"z{n}{suffix}", z))
            t.define(f"p{n}{suffix}", Sigmoid(zs[-1]), note=tr("predicted probability of class 1", "属于类别 1 的预测概率")
                     if n == 1 else None)
        losses = [derivation.forward["l"].xreplace({real("z"): zs[n], real("t"): t.symbol(f"t{n + 1}")})
                  for n in range(rows)]
        t.define(f"L{suffix}", scale * sp.Add(*losses),
                 note=tr("binary cross-entropy from the logits, written with softplus (no overflow)",
                         "由 logit 计算的交叉熵，用 softplus 写出（不会溢出）"))
        return zs

    t.heading(tr("Forward pass", "前向传播"))
    zs = forward({k: k for k in params}, "")
    t.heading(tr("Backward pass", "反向传播"))
    for n in range(rows):
        t.define(f"dL/dz{n + 1}", grad_rule.xreplace({real("z"): zs[n], real("t"): t.symbol(f"t{n + 1}")}),
                 note=tr("the binary-cross-entropy layer's derived rule", "由 binary-cross-entropy 层推导得到") if n == 0 else None)
    model = {n: t.quantities[f"z{n + 1}"].formula for n in range(rows)}
    for p in params:
        terms = []
        for n in range(rows):
            t.define(f"dz{n + 1}/d{p}", sp.diff(model[n], t.symbol(p)), show=False)
            terms.append((f"dL/dz{n + 1}", f"dz{n + 1}/d{p}"))
        t.define(f"dL/d{p}", Chain(tuple(terms)), note=tr("sum over the batch", "对批量求和"))
        t.define(f"{p}_new", sp.Add(t.symbol(p), sp.Mul(-1, t.symbol("learning_rate"), t.symbol(f"dL/d{p}"),
                                                          evaluate=False), evaluate=False),
                 note=tr("gradient descent", "梯度下降"))
    t.heading(tr("Forward pass with the new values", "用更新后的参数重新前向传播"))
    forward({k: f"{k}_new" for k in params}, "_new")
    return t


# --- the registry of examples --------------------------------------------------------------

def _graph_example(file_name: str, name: str) -> Callable[[], Transcript]:
    def build():
        text = resources.files(__package__).joinpath("graphs", file_name).read_text(encoding="utf-8")
        return graph_transcript(parse_graph(text, file_name), name)
    return build


# the shipped graph files (symbolic/graphs/): name, seed, summary. The seed examples keep their
# Python versions above (their golden transcripts); the graph files give the same numbers.
GRAPH_FILES = [
    ("add-mul-circuit", "(CS231n)", "f = (x + y) z: an add gate feeds a multiply gate"),
    ("sigmoid-neuron-gates", "(CS231n)", "a 2-D sigmoid neuron drawn gate by gate"),
    ("max-circuit", "(CS231n)", "f = 2 (x y + max(z, w)): add, multiply and max gates"),
    ("staged-sigmoid-ratio", "(CS231n)", "f = (x + sigmoid(y)) / (sigmoid(x) + (x + y)^2), staged; x feeds three nodes"),
    ("apples-oranges", "(Saito)", "the apples-and-oranges shopping graph with consumption tax"),
    ("nested-neurons-graph", "002", "nested-neurons as a graph file"),
    ("add-node-graph", "000", "the addition node of add-mul-nodes as a graph file"),
    ("mul-node-graph", "000", "the multiplication node of add-mul-nodes as a graph file"),
    ("linear-model-graph", "003", "linear-model as a graph file (per-sample SGD, 100 epochs)"),
    ("quadratic-model-graph", "003", "quadratic-model as a graph file (per-sample SGD, 100 epochs)"),
    ("linear-model-float32", "003", "linear-model computed in float32, as a PyTorch program prints it"),
]


def _network_example(file_name: str, name: str) -> Callable[[], Transcript]:
    def build():
        text = resources.files(__package__).joinpath("networks", file_name).read_text(encoding="utf-8")
        return network_transcript(parse_network(text, file_name), name)
    return build


EXAMPLES = {e.name: e for e in [
    Example("nested-neurons", "f = (a + b) * c: add and mul nodes, one gradient-ascent step", nested_neurons, "002"),
    Example("two-layer-sigmoid", "the 2-2-2 sigmoid network with shared biases, one gradient-descent step",
            _network_example("two-layer-sigmoid.toml", "two-layer-sigmoid"), "001"),
    Example("mazur-2-2-2", "Matt Mazur's step-by-step backpropagation example (biases kept fixed)",
            _network_example("mazur-2-2-2.toml", "mazur-2-2-2"), "(Mazur 2015)"),
    Example("add-mul-nodes", "backward through addition and multiplication nodes", graph_nodes, "000"),
    Example("relu-layer", "ReLU layer forward and backward on a 2 x 2 batch", relu_layer, "000"),
    Example("sigmoid-layer", "Sigmoid layer forward and backward on a 2 x 2 batch", sigmoid_layer, "000"),
    Example("affine-layer", "Affine layer Y = X W + B on a batch; dY = [[1,2,3],[4,5,6]] gives dB = [5,7,9]",
            affine_layer, "000"),
    Example("softmax-with-loss", "softmax + cross-entropy on a batch of two: dL/dz = (y - t)/N",
            softmax_with_loss, "000", functools.partial(softmax_with_loss, batch_sum=True), batch_size=2),
    Example("linear-model", "y_hat = w x, per-sample SGD for 100 epochs (table of epochs)", linear_model, "003", batch_size=3),
    Example("quadratic-model", "y_hat = w1 x^2 + w2 x + b: prediction 21 at x = 4, then SGD", quadratic_model, "003", batch_size=3),
    Example("moons-logistic", "logistic regression (two moons): gradient formulas and one step on four points",
            moons_logistic, "001", functools.partial(moons_logistic, batch_sum=True), batch_size=4),
    *[Example(name, summary, _graph_example(f"{name}.toml", name), seed) for name, seed, summary in GRAPH_FILES],
]}


def get_transcript(name_or_file: str) -> Transcript:
    """A built-in example by name, or the transcript of a network or graph file (a path ending
    in .toml; a graph file has a [nodes] table)."""
    if name_or_file in EXAMPLES:
        return EXAMPLES[name_or_file].build()
    if is_graph_file(name_or_file):
        return graph_file_transcript(name_or_file)
    if name_or_file.endswith(".toml") or Path(name_or_file).exists():
        net = load_network(name_or_file)
        return network_transcript(net, Path(name_or_file).stem)
    close = difflib.get_close_matches(name_or_file, EXAMPLES, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise SympropError(f"no example named {name_or_file!r}{hint}; known examples: {', '.join(EXAMPLES)}; "
                       "or give a network or graph file ending in .toml")


def builtin_network(name: str):
    """The Network of a built-in network example (for tests and the checker)."""
    file_name = {"two-layer-sigmoid": "two-layer-sigmoid.toml", "mazur-2-2-2": "mazur-2-2-2.toml"}[name]
    text = resources.files(__package__).joinpath("networks", file_name).read_text(encoding="utf-8")
    return parse_network(text, file_name)


def builtin_graph(name: str):
    """The GraphFile of a built-in graph example, or None (for the checker's conventions)."""
    if name not in {n for n, _, _ in GRAPH_FILES}:
        return None
    text = resources.files(__package__).joinpath("graphs", f"{name}.toml").read_text(encoding="utf-8")
    return parse_graph(text, f"{name}.toml")
