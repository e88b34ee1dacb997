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
from symprop.symbolic.examples import (ACTIVATION_DOUT, ACTIVATION_X, EXAMPLES, MOONS_B, MOONS_T,
                               MOONS_W, MOONS_X, SOFTMAX_T, SOFTMAX_Z, builtin_network)
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


@pytest.mark.parametrize("layer", ["relu", "sigmoid"])
def test_activation_layer_gradients(layer):
    t = transcript(f"{layer}-layer")
    x = np.array(ACTIVATION_X, dtype=float)
    dout = np.array(ACTIVATION_DOUT, dtype=float)
    act = ACTIVATIONS[layer]
    point = {"x": x}
    numeric = numerical_gradient(lambda v: float(np.sum(dout * act(v))), x)
    for n in range(2):
        for k in range(2):
            assert relative_error(t.float_value(f"dL/dx{n + 1}{k + 1}"), numeric[n, k]) < FD_TOL
    assert point  # the layer's inputs are away from relu's kink
    assert np.all(np.abs(x) > 0.1)


def test_affine_layer_gradients_and_article_dB():
    t = transcript("affine-layer")
    X, W, B, dY = (np.array(t.value(k).tolist(), dtype=float) for k in ("X", "W", "B", "dL/dY"))
    point = {"X": X, "W": W, "B": B}
    check_gradients(t, lambda p: float(np.sum(dY * (p["X"] @ p["W"] + p["B"]))), point,
                    {"dL/dX": "X", "dL/dW": "W", "dL/dB": "B"})
    assert t.value("dL/dB").tolist() == [[5, 7, 9]]


def test_softmax_with_loss_gradients():
    t = transcript("softmax-with-loss")
    z = np.array(SOFTMAX_Z, dtype=float)
    target = np.array(SOFTMAX_T, dtype=float)

    def loss(v):
        shifted = v - v.max(axis=1, keepdims=True)
        log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-np.sum(target * log_softmax) / v.shape[0])

    assert abs(t.float_value("L") - loss(z)) < 1e-12
    numeric = numerical_gradient(loss, z)
    for n in range(z.shape[0]):
        for k in range(z.shape[1]):
            assert relative_error(t.float_value(f"dL/dz{n + 1}{k + 1}"), numeric[n, k]) < FD_TOL


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
    X = np.array(MOONS_X, dtype=float)
    target = np.array(MOONS_T, dtype=float)

    def loss(p):
        z = X @ np.array([p["w1"], p["w2"]], dtype=float) + p["B"]
        return float(np.mean(np.logaddexp(0, z) - target * z))

    point = {"w1": np.array(float(MOONS_W[0])), "w2": np.array(float(MOONS_W[1])), "B": np.array(float(MOONS_B))}
    assert abs(t.float_value("L") - loss(point)) < 1e-12
    check_gradients(t, loss, point, {"dL/dw1": "w1", "dL/dw2": "w2", "dL/dB": "B"})
    new = {k: t.float_value(f"{k}_new") for k in point}
    assert abs(t.float_value("L_new") - loss(new)) < 1e-12 and t.float_value("L_new") < t.float_value("L")


def test_latex_brackets_a_power_of_a_fraction_or_a_superscripted_name():
    from symprop.symbolic.transcript import Transcript, tr

    t = Transcript("powers", tr("powers"))
    t.given("dE/db", sp.Rational(1, 2), show=True)
    t.given("w_new", 3, show=True)
    t.define("v", t.symbol("dE/db") ** 2 + t.symbol("w_new") ** 2)
    md = t.render("md")
    assert r"\left(\frac{\partial E}{\partial b}\right)^{2}" in md
    assert r"\left(w^{\mathrm{new}}\right)^{2}" in md and "}^{2}^" not in md
