"""The built-in worked examples of the source articles, each under a stable name.

Most are data: graph files shipped in ``symbolic/graphs/`` (the seed examples nested-neurons,
add-mul-nodes, linear-model, quadratic-model, and the lecture-note circuits) and network files
in ``symbolic/networks/`` (the seed-001 2-2-2 network, the same network trained by one Adam
step, and Matt Mazur's classic 2-2-2 example). The layer examples written here show one
registered layer's derived rules on a small batch (``REGISTRY.derive(...)``), and
moons-logistic the binary-cross-entropy layer's. The numbers are computed from the printed
formulas by ``Transcript``.
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
from .layers import I, J, N, REGISTRY, real
from .graphfile import is_graph_file, parse_graph
from .graphfile_transcript import graph_file_transcript, graph_transcript
from .networkfile import load_network, parse_network
from .network_transcript import network_transcript
from .stable import Sigmoid
from .transcript import Chain, Text, Transcript, tr

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


# --- seed 000: layers of the two-layer classifier ----------------------------------------

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


# the shipped graph files (symbolic/graphs/): name, seed, summary
GRAPH_FILES = [
    ("nested-neurons", "002", "f = (a + b) * c: add and mul nodes, one gradient-ascent step"),
    ("add-mul-nodes", "000", "backward through addition and multiplication nodes (dout = 3/2 into each)"),
    ("add-node", "000", "the addition node alone: passes dout through"),
    ("mul-node", "000", "the multiplication node alone: swaps its inputs"),
    ("linear-model", "003", "y_hat = w x, per-sample SGD for 100 epochs (table of epochs), prediction at x = 4"),
    ("quadratic-model", "003", "y_hat = w1 x^2 + w2 x + b: prediction 21 at x = 4, then SGD"),
    ("linear-model-float32", "003", "linear-model computed in float32, as a PyTorch program prints it"),
    ("add-mul-circuit", "(CS231n)", "f = (x + y) z: an add gate feeds a multiply gate"),
    ("sigmoid-neuron-gates", "(CS231n)", "a 2-D sigmoid neuron drawn gate by gate"),
    ("max-circuit", "(CS231n)", "f = 2 (x y + max(z, w)): add, multiply and max gates"),
    ("staged-sigmoid-ratio", "(CS231n)", "f = (x + sigmoid(y)) / (sigmoid(x) + (x + y)^2), staged; x feeds three nodes"),
    ("apples-oranges", "(Saito)", "the apples-and-oranges shopping graph with consumption tax"),
    ("batchnorm-staged", "(CS231n)", "batch norm of 3 samples x 2 features staged: mean, variance, s, xhat, y"),
]


def _network_example(file_name: str, name: str) -> Callable[[], Transcript]:
    def build():
        text = resources.files(__package__).joinpath("networks", file_name).read_text(encoding="utf-8")
        return network_transcript(parse_network(text, file_name), name)
    return build


# The convolution example: a 1x4x4 image, one 2x2 kernel at stride 1 (a 3x3 map), then 2x2
# max-pool windows at stride 1 (overlapping, so gradients of shared elements add up). The
# top-left window holds a tie (5 and 5): the gradient goes to the first in row-major order.
CONV_SPEC = "input(1,4,4) conv2d(1,1,2) maxpool(2,1) flatten squared-error"
CONV_VALUES = {
    "X": [[[[1, 2, 0, 1], [1, 1, 3, 1], [2, 0, 1, 2], [1, 1, 0, 1]]]],
    "T": [[1, 0, 2, 1]],
    "W1": [[[[1, -1], [2, 0]]]],
    "b1": [1],
    "learning_rate": "1/10",
}


def conv_maxpool() -> Transcript:
    from .graph import parse_net  # graph -> layers -> ... imports nothing from here, but keep it local
    from .graph_transcript import graph_transcript as net_spec_transcript

    return net_spec_transcript(parse_net(CONV_SPEC), CONV_VALUES, name="conv-maxpool")


EXAMPLES = {e.name: e for e in [
    *[Example(name, summary, _graph_example(f"{name}.toml", name), seed)
      for name, seed, summary in GRAPH_FILES if not seed.startswith("(")],
    Example("two-layer-sigmoid", "the 2-2-2 sigmoid network with shared biases, one gradient-descent step",
            _network_example("two-layer-sigmoid.toml", "two-layer-sigmoid"), "001"),
    Example("mazur-2-2-2", "Matt Mazur's step-by-step backpropagation example (biases kept fixed)",
            _network_example("mazur-2-2-2.toml", "mazur-2-2-2"), "(Mazur 2015)"),
    Example("two-layer-sigmoid-adam", "the 2-2-2 sigmoid network of two-layer-sigmoid, one Adam step",
            _network_example("two-layer-sigmoid-adam.toml", "two-layer-sigmoid-adam"), "001"),
    Example("relu-layer", "ReLU layer forward and backward on a 2 x 2 batch", relu_layer, "000"),
    Example("sigmoid-layer", "Sigmoid layer forward and backward on a 2 x 2 batch", sigmoid_layer, "000"),
    Example("affine-layer", "Affine layer Y = X W + B on a batch; dY = [[1,2,3],[4,5,6]] gives dB = [5,7,9]",
            affine_layer, "000"),
    Example("softmax-with-loss", "softmax + cross-entropy on a batch of two: dL/dz = (y - t)/N",
            softmax_with_loss, "000", functools.partial(softmax_with_loss, batch_sum=True), batch_size=2),
    Example("moons-logistic", "logistic regression (two moons): gradient formulas and one step on four points",
            moons_logistic, "001", functools.partial(moons_logistic, batch_sum=True), batch_size=4),
    *[Example(name, summary, _graph_example(f"{name}.toml", name), seed)
      for name, seed, summary in GRAPH_FILES if seed.startswith("(")],
    Example("conv-maxpool", "a 1x4x4 image, one 2x2 kernel (stride 1), 2x2 max-pool with a tie, flatten, "
            "squared error: every element forward and back, one SGD step", conv_maxpool, "(issue 16)"),
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
    file_name = {"two-layer-sigmoid": "two-layer-sigmoid.toml", "mazur-2-2-2": "mazur-2-2-2.toml",
                 "two-layer-sigmoid-adam": "two-layer-sigmoid-adam.toml"}[name]
    text = resources.files(__package__).joinpath("networks", file_name).read_text(encoding="utf-8")
    return parse_network(text, file_name)


def builtin_graph(name: str):
    """The GraphFile of a built-in graph example, or None (for the checker's conventions)."""
    if name not in {n for n, _, _ in GRAPH_FILES}:
        return None
    text = resources.files(__package__).joinpath("graphs", f"{name}.toml").read_text(encoding="utf-8")
    return parse_graph(text, f"{name}.toml")
