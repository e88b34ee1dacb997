"""Built-in worked examples: golden transcripts, gradients against finite differences,
valid Markdown, LaTeX-free text.

Golden files are rewritten only when SYMPROP_UPDATE_GOLDEN=1 is set (then review the diff).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from gradcheck import numerical_gradient, relative_error
from symprop.symbolic.examples import EXAMPLES, NET_FILES, builtin_network
from symprop.symbolic.networkfile import Network

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("SYMPROP_UPDATE_GOLDEN") == "1"
FD_TOL = 1e-6  # relative error of a transcript gradient against central differences (float64)
TRANSCRIPTS = {}


def transcript(name):
    if name not in TRANSCRIPTS:
        TRANSCRIPTS[name] = EXAMPLES[name].build()
    return TRANSCRIPTS[name]


def check_golden(path: Path, text: str):
    if UPDATE:
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path.name} missing: run with SYMPROP_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} differs (SYMPROP_UPDATE_GOLDEN=1 rewrites it)"


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_golden_markdown_and_json(name):
    t = transcript(name)
    check_golden(GOLDEN / f"{name}.md", t.render("md"))
    check_golden(GOLDEN / f"{name}.json", t.render("json"))


def test_golden_chinese_two_layer_sigmoid():
    t = transcript("two-layer-sigmoid")
    md = t.render("md", lang="zh")
    check_golden(GOLDEN / "two-layer-sigmoid.zh.md", md)
    for term in ("前向传播", "反向传播", "链式法则", "偏导数", "学习率", "误差", "权重", "偏置"):
        assert term in md, term


def _math_spans_balanced(line: str) -> bool:
    return line.replace("$$", "").count("$") % 2 == 0 and line.count("$$") % 2 == 0


@pytest.mark.parametrize("name", list(EXAMPLES))
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_markdown_math_balanced_and_text_without_latex(name, lang):
    t = transcript(name)
    md = t.render("md", lang=lang)
    for line in md.splitlines():
        assert _math_spans_balanced(line), line
        for span in re.findall(r"\$([^$]*)\$", line):
            assert span.count("{") == span.count("}"), span
            assert span.count(r"\left") == span.count(r"\right"), span
    text = t.render("text", lang=lang)
    assert not re.search(r"\\[A-Za-z]+|\$", text), re.search(r".*(\\[A-Za-z]+|\$).*", text).group(0)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_json_has_every_quantity_at_full_precision(name):
    t = transcript(name)
    data = json.loads(t.render("json"))
    assert list(data["quantities"]) == list(t.quantities)
    for key, entry in data["quantities"].items():
        value = t.value(key)
        if isinstance(value, sp.MatrixBase):
            continue
        assert abs(float(entry["value"]) - t.float_value(key)) <= 1e-15 * max(1.0, abs(t.float_value(key)))
        if value.is_Rational:
            assert sp.Rational(entry["exact"]) == value


def test_digits_option_rounds_to_significant_digits():
    t = transcript("two-layer-sigmoid")
    assert "b_{11}^{\\mathrm{new}}" in t.render("md")
    assert "≈ 0.45804" in t.render("text", digits=5)
    assert "≈ 0.458" in t.render("text", digits=3)


# --- gradients against central finite differences ----------------------------------------

ACTIVATIONS = {"sigmoid": lambda x: 1 / (1 + np.exp(-x)), "relu": lambda x: np.maximum(x, 0.0),
               "tanh": np.tanh, "identity": lambda x: x}


def network_loss(net: Network, params: dict[str, float]) -> float:
    """The network's error in plain float64, written from the file's definition."""
    values = np.array([float(v) for v in net.inputs])
    for layer in net.layers:
        W = np.array([[params[n] for n in row] for row in layer.weight_names])
        b = np.array([params[layer.bias_of(j)] for j in range(len(layer.units))])
        values = ACTIVATIONS[layer.activation.name](values @ W + b)
    t = np.array([float(v) for v in net.targets])
    if net.loss == "squared-error":
        return 0.5 * np.sum((values - t) ** 2)
    if net.loss == "mse":
        return np.mean((values - t) ** 2)
    return -np.sum(t * np.log(values) + (1 - t) * np.log(1 - values))


def check_gradients(t, loss, point: dict[str, np.ndarray], gradient_keys: dict[str, str]):
    """Every transcript gradient equals the central difference of loss at point."""
    for grad_key, param in gradient_keys.items():
        def f(v, param=param):
            return loss({**point, param: v})
        numeric = numerical_gradient(f, point[param])
        exact = t.value(grad_key)
        exact = np.array(exact.tolist(), dtype=float) if isinstance(exact, sp.MatrixBase) else float(exact)
        assert relative_error(exact, numeric) < FD_TOL, (grad_key, exact, numeric)


@pytest.mark.parametrize("name", ["two-layer-sigmoid", "mazur-2-2-2"])
def test_network_gradients_updates_and_new_error(name):
    net, t = builtin_network(name), transcript(name)
    params = {p: float(v) for p, v in net.parameters().items()}
    assert abs(t.float_value("E") - network_loss(net, params)) < 1e-12
    point = {p: np.array(v) for p, v in params.items()}
    check_gradients(t, lambda p: network_loss(net, {k: float(v) for k, v in p.items()}), point,
                    {f"dE/d{p}": p for p in params})
    biases = {n for layer in net.layers for n in layer.bias_names}
    new = {}
    for p, v in params.items():
        if p in biases and not net.update_biases:
            assert f"{p}_new" not in t.quantities
            new[p] = v
        else:
            new[p] = t.float_value(f"{p}_new")
            assert abs(new[p] - (v - float(net.learning_rate) * t.float_value(f"dE/d{p}"))) < 1e-12
    assert abs(t.float_value("E_new") - network_loss(net, new)) < 1e-12
    assert t.float_value("E_new") < t.float_value("E")


def test_nested_neurons_gradients():
    t = transcript("nested-neurons")
    point = {k: np.array(float(t.value(k))) for k in "abc"}
    check_gradients(t, lambda p: float((p["a"] + p["b"]) * p["c"]), point, {f"df/d{k}": k for k in "abc"})
    assert t.value("f") == -7 and t.float_value("f_new") > -7
    assert t.value("f_new") == sp.Rational("-6.0114")


def test_graph_node_gradients():
    t = transcript("add-mul-nodes")
    point = {"x": np.array(2.0), "y": np.array(3.0)}
    dout = float(t.value("dL/dtotal"))  # the upstream gradient given at the sum node
    # each node's path alone, then both nodes: L = dout * (x + y) + dout * x y
    check_gradients(t, lambda p: dout * float(p["x"] + p["y"]), point, {"dL/dx_via_add_out": "x", "dL/dy_via_add_out": "y"})
    check_gradients(t, lambda p: dout * float(p["x"] * p["y"]), point, {"dL/dx_via_mul_out": "x", "dL/dy_via_mul_out": "y"})
    check_gradients(t, lambda p: dout * float(p["x"] + p["y"] + p["x"] * p["y"]), point, {"dL/dx": "x", "dL/dy": "y"})


def given(name, key) -> np.ndarray:
    """A value of a net file's [values] table as a float64 array."""
    return np.array([[float(sp.Rational(str(v))) for v in row] for row in NET_FILES[name].values[key]])


def elements(t, key, shape) -> np.ndarray:
    """The transcript's elements key[i,j] as a float64 array."""
    return np.array([[t.float_value(f"{key}[{i},{j}]") for j in range(shape[1])] for i in range(shape[0])])


@pytest.mark.parametrize("layer", ["relu", "sigmoid"])
def test_activation_layer_gradients(layer):
    t = transcript(f"{layer}-layer")
    x, dout = given(f"{layer}-layer", "X"), given(f"{layer}-layer", "dout")
    assert np.all(np.abs(x) > 0.1)  # the layer's inputs are away from relu's kink
    act = ACTIVATIONS[layer]
    numeric = numerical_gradient(lambda v: float(np.sum(dout * act(v))), x)
    assert relative_error(elements(t, "dL/dX", x.shape), numeric) < FD_TOL
    assert np.allclose(elements(t, "h0", x.shape), act(x), rtol=1e-15, atol=0)


def test_affine_layer_gradients_and_article_dB():
    t = transcript("affine-layer")
    X, W, dY = (given("affine-layer", k) for k in ("X", "W1", "dout"))
    B = np.array([[float(sp.Rational(str(v))) for v in NET_FILES["affine-layer"].values["b1"]]])
    point = {"X": X, "W": W, "B": B}
    loss = lambda p: float(np.sum(dY * (p["X"] @ p["W"] + p["B"])))  # noqa: E731
    for key, param, shape in (("dL/dX", "X", X.shape), ("dL/dW1", "W", W.shape)):
        numeric = numerical_gradient(lambda v, param=param: loss({**point, param: v}), point[param])
        assert relative_error(elements(t, key, shape), numeric) < FD_TOL, key
    assert [t.value(f"dL/db1[{j}]") for j in range(3)] == [5, 7, 9]


def test_softmax_with_loss_gradients():
    t = transcript("softmax-with-loss")
    z, target = given("softmax-with-loss", "X"), given("softmax-with-loss", "T")

    def loss(v):
        shifted = v - v.max(axis=1, keepdims=True)
        log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-np.sum(target * log_softmax) / v.shape[0])

    assert abs(t.float_value("L") - loss(z)) < 1e-12
    assert relative_error(elements(t, "dL/dX", z.shape), numerical_gradient(loss, z)) < FD_TOL


@pytest.mark.parametrize("name, weights", [("linear-model", ["w"]), ("quadratic-model", ["w1", "w2", "b"])])
def test_sgd_model_gradients_and_training(name, weights):
    DATA_X, DATA_Y = [1, 2, 3], [2, 4, 6]  # seed 003's data, written here independently of the file
    t = transcript(name)
    x, y = float(DATA_X[0]), float(DATA_Y[0])

    def model(p, xv):
        if name == "linear-model":
            return p["w"] * xv
        return p["w1"] * xv ** 2 + p["w2"] * xv + p["b"]

    point = {w: np.array(float(t.value(w))) for w in weights}
    check_gradients(t, lambda p: float((model(p, x) - y) ** 2), point, {f"dl/d{w}": w for w in weights})
    # 100 epochs of per-sample SGD in float64 reach the transcript's exact trained weights
    p = {w: float(t.value(w)) for w in weights}
    for _ in range(100):
        for xv, yv in zip(DATA_X, DATA_Y):
            g = 2 * (model(p, xv) - yv)
            grads = {"w": g * xv, "w1": g * xv ** 2, "w2": g * xv, "b": g}
            p = {w: p[w] - 0.01 * grads[w] for w in weights}
    for w in weights:
        assert abs(p[w] - t.float_value(f"{w}_trained")) < 1e-9
    if name == "quadratic-model":
        assert t.value("y_hat_test") == 21
    else:
        assert t.value("y_hat_test") == 4 and abs(t.float_value("y_hat_test_trained") - 8) < 1e-9


def test_moons_logistic_gradients():
    t = transcript("moons-logistic")
    X, target = given("moons-logistic", "X"), given("moons-logistic", "T")[:, 0]

    def loss(p):
        z = X @ np.array([p["w1"], p["w2"]], dtype=float) + p["b"]
        return float(np.mean(np.logaddexp(0, z) - target * z))

    keys = {"w1": "W1[0,0]", "w2": "W1[1,0]", "b": "b1[0]"}
    point = {k: np.array(t.float_value(key)) for k, key in keys.items()}
    assert abs(t.float_value("L") - loss(point)) < 1e-12
    check_gradients(t, loss, point, {f"dL/d{key}": k for k, key in keys.items()})
    new = {k: t.float_value(f"{key[:2]}_new{key[2:]}") for k, key in keys.items()}
    # the file's forward_after_step: the loss at the new weights, lower after one step of 0.05
    assert abs(t.float_value("L_new") - loss(new)) < 1e-12 and t.float_value("L_new") < t.float_value("L")


def test_seed_numbers_survive_in_the_net_files():
    """The seeds' numbers, written here from the articles, on the data files' transcripts."""
    affine = transcript("affine-layer")
    assert [affine.value(f"dL/db1[{j}]") for j in range(3)] == [5, 7, 9]  # dY = [[1,2,3],[4,5,6]]
    relu = transcript("relu-layer")  # x = [[1, -0.5], [-2, 3]], dout = [[0.5, -1], [2, 0.25]]
    assert [[relu.value(f"dL/dX[{n},{k}]") for k in range(2)] for n in range(2)] == \
        [[sp.Rational(1, 2), 0], [0, sp.Rational(1, 4)]]  # zeroed where x < 0
    soft = transcript("softmax-with-loss")
    for n in range(2):
        for k in range(3):
            y, target = soft.value(f"P[{n},{k}]"), soft.value(f"T[{n},{k}]")
            assert sp.simplify(soft.value(f"dL/dX[{n},{k}]") - (y - target) / 2) == 0  # (y - t)/N, N = 2
    moons = transcript("moons-logistic")
    assert moons.value("learning_rate") == sp.Rational(1, 20)
    for key in ("W1[0,0]", "W1[1,0]", "b1[0]"):
        new = f"{key[:2]}_new{key[2:]}"
        assert moons.value(new) == moons.value(key) - sp.Rational(1, 20) * moons.value(f"dL/d{key}")
    # the one step, in float64 from the seed's formulas: dL/dz_n = (sigmoid(z_n) - t_n) / 4
    X = np.array([[-1.2, 0.8], [0.3, 1.1], [0.9, -0.6], [1.5, -0.2]])
    t, w, b = np.array([0, 0, 1, 1.0]), np.array([0.5, -0.5]), 0.0
    dz = (1 / (1 + np.exp(-(X @ w + b))) - t) / 4
    w_new, b_new = w - 0.05 * X.T @ dz, b - 0.05 * dz.sum()
    assert np.allclose([moons.float_value(k) for k in ("W1_new[0,0]", "W1_new[1,0]", "b1_new[0]")],
                       [*w_new, b_new], rtol=1e-13, atol=0)


def test_latex_brackets_a_power_of_a_fraction_or_a_superscripted_name():
    from symprop.symbolic.transcript import Transcript, tr

    t = Transcript("powers", tr("powers"))
    t.given("dE/db", sp.Rational(1, 2), show=True)
    t.given("w_new", 3, show=True)
    t.define("v", t.symbol("dE/db") ** 2 + t.symbol("w_new") ** 2)
    md = t.render("md")
    assert r"\left(\frac{\partial E}{\partial b}\right)^{2}" in md
    assert r"\left(w^{\mathrm{new}}\right)^{2}" in md and "}^{2}^" not in md


# --- net files: a spec and its numbers as data (symbolic/nets/) ---------------------------

NET_FILE = """title = "mine"
summary = "a layer alone"
net = "{net}"
{top}
[values]
X = [[1, -2]]
{values}
"""


def test_a_spec_without_a_loss_is_only_for_transcripts():
    from symprop.symbolic.graph import parse_net
    from symprop.symbolic.errors import SympropError

    with pytest.raises(SympropError, match=r"layer 1 'affine\(2,3\)': a network ends with a loss"):
        parse_net("affine(2,3)")  # codegen, train and generate call it so
    with pytest.raises(SympropError, match="a network starts with an affine layer"):
        parse_net("relu")
    graph = parse_net("relu", loss_optional=True, input_width=2)
    assert graph.widths == [2, 2] and graph.spec == "relu"
    assert parse_net("affine(2,3)", loss_optional=True, input_width=7).widths == [2, 3]  # the layer's width wins


def test_net_files_of_your_own_and_their_mistakes(tmp_path, capsys):
    from symprop.cli import main

    def write(net, values, extra="", top=""):
        path = tmp_path / f"mine{len(list(tmp_path.iterdir()))}.toml"
        path.write_text(NET_FILE.format(net=net, values=values, top=top) + extra, encoding="utf-8")
        return str(path)

    path = write("tanh", "dout = [[2, 3]]", '\n[notes]\n"dL/dX[0,1]" = "my remark"\n')
    assert main(["example", "show", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mine\n====") and "dL/dh0[0,1] = dout[0,1] = 3" in out and "(my remark)" in out
    assert main(["check", path, "dL/dX[0,0]=0.84", "h0[0,1]=-0.964"]) == 0
    capsys.readouterr()
    assert main(["check", write("tanh", "dout = 3"), "h0[0,1]=-0.964"]) == 2  # refused on loading, one line
    assert "field 'dout': expected a list of rows" in capsys.readouterr().err
    mistakes = [
        (write("tanh", "dout = [[2, 3, 4]]"), "mine\\d.toml, line 7, field 'dout': row 0 should hold 2 numbers"),
        (write("tanh", "T = [[2, 3]]"), "missing dout; .* dout is the upstream gradient"),
        (write("tanh frob", "dout = [[2, 3]]"), "mine\\d.toml, line 3, field 'net': .*unknown layer 'frob'"),
        (write("tanh", "dout = [[2, 3]]", '\n[notes]\n"dL/dX[0,2]" = "no such line"\n'),
         r"mine\d.toml, line 10, field 'notes.dL/dX\[0,2\]': no line of the transcript shows"),
        (write("affine(2,1) mse", "T = [[1]]\nW1 = [[1], [2]]\nb1 = [0]\nlearning_rate = \"fast\""),
         "mine\\d.toml, line 10, field 'learning_rate': expected a number"),
        (write("tanh", "dout = 3"), "mine\\d.toml, line 7, field 'dout': expected a list of rows"),
        (write("tanh", "dout = [[2, 3]]", top="forward_after_step = true"),
         "mine\\d.toml, line 4, field 'forward_after_step': the forward pass after the step needs a loss"),
    ]
    for path, message in mistakes:
        assert main(["example", "show", path]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and re.search(message, err), err


def test_batch_sum_multiplies_a_batch_mean_loss_and_its_gradients_by_n():
    """The checker's convention: the loss summed over the batch instead of averaged (N = 2)."""
    exact, summed = transcript("softmax-with-loss"), EXAMPLES["softmax-with-loss"].build_batch_sum()
    for key in ("L", "dL/dX[0,0]", "dL/dX[1,2]"):
        assert sp.simplify(summed.value(key) - 2 * exact.value(key)) == 0, key
    assert EXAMPLES["softmax-with-loss"].batch_size == 2 and EXAMPLES["moons-logistic"].batch_size == 4
    assert EXAMPLES["relu-layer"].build_batch_sum is None and EXAMPLES["conv-maxpool"].build_batch_sum is None
