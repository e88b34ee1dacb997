"""The graph transcript: any net spec with given numbers, every element from its op's rules.

Checked against the built-in network examples (same numbers, same values), against central
finite differences of the loss written here independently in float64 numpy, for an op that
only this file defines, and for bad values files (one-line errors naming file and field).
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from gradcheck import numerical_gradient, relative_error
from symprop.symbolic.errors import SympropError
from symprop.symbolic.examples import EXAMPLES, builtin_network
from symprop.symbolic.graph import parse_net
from symprop.symbolic.graph_transcript import expected_values, graph_transcript
from symprop.symbolic.layers import REGISTRY, Op, PerFeature

ROOT = Path(__file__).resolve().parent.parent
FD_TOL = 1e-6
SAME = 1e-40  # both transcripts evaluate to 60 digits; only the evaluation order differs


# --- the built-in 2-2-2 examples, rebuilt from a spec and the same numbers ------------------

def _from_network(net):
    """The spec and values of a network file's net, in the graph transcript's names."""
    graph, values = net.to_graph()
    return graph.spec, values


@pytest.mark.parametrize("name", ["two-layer-sigmoid", "mazur-2-2-2"])
def test_same_numbers_as_the_builtin_network_example(name):
    net, example = builtin_network(name), EXAMPLES[name].build()
    spec, values = _from_network(net)
    t = graph_transcript(parse_net(spec), values, net.learning_rate)

    def same(ours, theirs):
        a, b = t.value(ours), example.value(theirs)
        assert abs(a - b) <= SAME * max(1, abs(b)), (ours, theirs, a, b)

    same("L", "E")
    for k, layer in enumerate(net.layers, 1):
        for j, unit in enumerate(layer.units):
            same(f"z{k}[0,{j}]", f"net_{unit}")
            same(f"h{k}[0,{j}]", unit)
            for i in range(len(layer.weights)):
                weight = layer.weight_names[i][j]
                same(f"dL/dW{k}[{i},{j}]", f"dE/d{weight}")
                same(f"W{k}_new[{i},{j}]", f"{weight}_new")
        if layer.shared_bias:
            same(f"dL/db{k}[0]", f"dE/d{layer.bias_names[0]}")
            if net.update_biases:
                same(f"b{k}_new[0]", f"{layer.bias_names[0]}_new")


def test_exact_inputs_stay_exact():
    t = graph_transcript(parse_net("affine(2,1) identity mse"),
                         {"X": [["1/3", "0.5"]], "T": [[2]], "W1": [[1], ["-2/7"]], "b1": [sp.Rational(1, 5)]}, "1/10")
    z = Fraction(1, 3) - Fraction(2, 7) * Fraction(1, 2) + Fraction(1, 5)
    assert t.value("z1[0,0]") == sp.Rational(z.numerator, z.denominator)
    grad = 2 * (z - 2) * Fraction(1, 3)  # mse over N*K = 1 element: dL/dz = 2 (z - t)
    assert t.value("dL/dW1[0,0]") == sp.Rational(grad.numerator, grad.denominator)
    assert t.value("W1_new[0,0]").is_Rational


# --- finite differences of a float64 loss written independently ---------------------------

def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


ACTIVATIONS = {"identity": lambda x, p: x, "sigmoid": lambda x, p: _sigmoid(x), "tanh": lambda x, p: np.tanh(x),
               "relu": lambda x, p: np.maximum(x, 0), "test-scale": lambda x, p: p["g"] * x,
               "formula(x*tanh(log(1+exp(x))))": lambda x, p: x * np.tanh(np.log1p(np.exp(x)))}
LOSSES = {"squared-error": lambda y, t: np.sum((y - t) ** 2) / 2,
          "mse": lambda y, t: np.mean((y - t) ** 2),
          "binary-cross-entropy": lambda z, t: np.mean(np.sum(-t * np.log(_sigmoid(z))
                                                               - (1 - t) * np.log(1 - _sigmoid(z)), axis=1))}


def numpy_loss(spec: str, params: dict, X, T) -> float:
    """The spec's loss in float64, layer names read from the spec text (not from symprop)."""
    value, k = np.asarray(X, float), 0
    for layer in spec.split():
        if layer.startswith("affine"):
            k += 1
            value = value @ params[f"W{k}"] + params[f"b{k}"]
        elif layer in ACTIVATIONS:
            value = ACTIVATIONS[layer](value, {"g": params.get(f"g{k}")})
        else:
            return float(LOSSES[layer](value, np.asarray(T, float)))
    raise AssertionError("no loss in " + spec)


def _random_values(graph, rows, rng):
    """Random decimal strings (exact in the transcript, close to them in float64)."""
    values = {}
    for key, shape in expected_values(graph).items():
        shape = tuple(rows if s is None else s for s in shape)
        numbers = np.round(rng.uniform(-1, 1, shape), 3)
        if key == "T":
            numbers = np.round(rng.uniform(0, 1, shape), 2)
        values[key] = [[repr(float(v)) for v in row] for row in numbers] if numbers.ndim == 2 \
            else [repr(float(v)) for v in numbers]
    return values


def check_against_finite_differences(spec, rows, seed):
    graph = parse_net(spec)
    values = _random_values(graph, rows, np.random.default_rng(seed))
    t = graph_transcript(graph, values, learning_rate="0.1")
    params = {k: np.array(v, dtype=float) for k, v in values.items() if k not in ("X", "T")}
    X, T = np.array(values["X"], float), np.array(values["T"], float)
    assert abs(t.float_value("L") - numpy_loss(spec, params, X, T)) < 1e-12
    for name, array in params.items():
        def loss_at(p, name=name):
            return numpy_loss(spec, {**params, name: p}, X, T)
        numeric = numerical_gradient(loss_at, array)
        ours = np.array([t.float_value(f"dL/d{name}[{','.join(map(str, i))}]") for i in np.ndindex(array.shape)])
        assert relative_error(ours, numeric.reshape(-1)) < FD_TOL, (spec, name, ours, numeric)
        new = np.array([t.float_value(f"{name}_new[{','.join(map(str, i))}]") for i in np.ndindex(array.shape)])
        assert np.allclose(new, array.reshape(-1) - 0.1 * ours, rtol=0, atol=1e-15)
    return t


@pytest.mark.parametrize("spec, rows", [
    ("affine(2,2) sigmoid affine(2,2) sigmoid squared-error", 1),
    ("affine(3,2) tanh affine(2,2) mse", 2),
    ("affine-shared-bias(2,3) relu affine(3,1) binary-cross-entropy", 3),
    ("affine(2,2) formula(x*tanh(log(1+exp(x)))) affine(2,2) mse", 2),
])
def test_gradients_equal_finite_differences(spec, rows):
    check_against_finite_differences(spec, rows, seed=rows)


# --- an op defined only here ---------------------------------------------------------------

@pytest.fixture
def scale_op():
    op = REGISTRY.register(PerFeature("test-scale", "g*x", "learnable per-feature scale (defined in a test)"))
    yield op
    REGISTRY.remove(op.name)


def test_a_per_feature_op_defined_in_a_test_gets_a_transcript(scale_op):
    spec = "affine(2,3) test-scale tanh affine(3,2) mse"
    t = check_against_finite_differences(spec, rows=2, seed=7)
    assert {"g1[0]", "dL/dg1[2]", "g1_new[1]", "dh1[1,2]/dg1[2]", "h1b[1,2]"} <= set(t.quantities)
    # the parameter's gradient is the sum of the batch rows' chain-rule products
    assert t.quantities["dL/dg1[0]"].formula.terms == (("dL/dh1[0,0]", "dh1[0,0]/dg1[0]"),
                                                      ("dL/dh1[1,0]", "dh1[1,0]/dg1[0]"))
    assert "dL/dg1[0] = dL/dh1[0,0] * dh1[0,0]/dg1[0] + dL/dh1[1,0] * dh1[1,0]/dg1[0]" in t.render("text", 6)
    assert r"\frac{\partial L}{\partial g_{1}[0]}" in t.render("md", 6)


@dataclass(frozen=True)
class _Mystery(Op):
    """An op class with no lowering (defined only in this test)."""

    name: str
    summary: str


def test_an_op_the_transcript_cannot_write_is_refused_clearly():
    op = REGISTRY.register(_Mystery("test-mystery", "an op with no lowering"))
    try:
        graph = parse_net("affine(2,2) test-mystery mse")
        with pytest.raises(SympropError, match=r"layer 2 'test-mystery'.*no lowering for _Mystery ops"):
            graph_transcript(graph, {"X": [[1, 2]], "T": [[0, 1]], "W1": [[1, 0], [0, 1]], "b1": [0, 0]})
    finally:
        REGISTRY.remove(op.name)


# --- bad values ------------------------------------------------------------------------------

GOOD = """X = [[0.05, 0.1]]
T = [[0.03, 0.05]]
W1 = [[0.1, 0.2], [0.3, 0.4]]
b1 = [0.35, 0.35]
W2 = [[0.5, 0.6], [0.7, 0.8]]
b2 = ["1/10", 0.1]
learning_rate = 0.5
"""
SPEC = "affine(2,2) sigmoid affine(2,2) squared-error"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "symprop", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_shows_the_transcript(tmp_path):
    values = tmp_path / "good.toml"
    values.write_text(GOOD)
    result = run_cli("example", "show", "--net", SPEC, "--values", str(values), "--format", "json")
    assert result.returncode == 0, result.stderr
    import json
    quantities = json.loads(result.stdout)["quantities"]
    assert quantities["b2[0]"]["exact"] == "1/10" and "W1_new[1,1]" in quantities
    assert quantities["dL/dW1[0,0]"]["formula"] == "X[0,0]*dL/dz1[0,0]"


@pytest.mark.parametrize("text, message", [
    (GOOD.replace("W2 = [[0.5, 0.6], [0.7, 0.8]]\n", ""), "missing W2"),
    (GOOD + "W3 = [[1]]\n", "unknown 'W3'"),
    (GOOD.replace("W1 = [[0.1, 0.2], [0.3, 0.4]]", "W1 = [[0.1, 0.2, 0.5], [0.3, 0.4, 0.6]]"),
     "field 'W1': row 0 should hold 2 numbers, shape (2, 2)"),
    (GOOD.replace("b1 = [0.35, 0.35]", "b1 = [0.35]"), "field 'b1': expected a list of 2 numbers, shape (2,)"),
    (GOOD.replace("T = [[0.03, 0.05]]", "T = [[0.03, 0.05], [0, 1]]"), "field 'T': expected 1 rows, shape (1, 2)"),
    (GOOD.replace('"1/10"', '"one tenth"'), "field 'b2': expected a number, got 'one tenth'"),
    (GOOD.replace("learning_rate = 0.5", "learning_rate = true"), "field 'learning_rate': expected a number"),
    (GOOD.replace("X = [[", "X = [[["), "TOML syntax error"),
])
def test_bad_values_file_gives_one_line_naming_file_and_field(tmp_path, text, message):
    values = tmp_path / "bad.toml"
    values.write_text(text)
    result = run_cli("example", "show", "--net", SPEC, "--values", str(values))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(values) in lines[0] and message in lines[0], result.stderr
    assert result.stdout == ""


def test_net_and_values_go_together():
    result = run_cli("example", "show", "--net", SPEC)
    assert result.returncode == 2 and "go together" in result.stderr
