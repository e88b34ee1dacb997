"""Issue 18, formulas and numbers: kinks of max/min, masks times overflowing factors, log1p and
expm1, complex values, bombs, unreadable numbers and undefined formulas."""
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symprop.codegen.network import load_network, network_module_text
from symprop.symbolic.checker import parse_written
from symprop.symbolic.errors import SympropError
from symprop.symbolic.formula import parse_formula
from symprop.symbolic.layers import MAX_DERIVE_SECONDS, formula_layer
from symprop.symbolic.networkfile import parse_network
from tests.gradcheck import numerical_gradient, relative_error

ROOT = Path(__file__).resolve().parent.parent
x, dout = sp.Symbol("x", real=True), sp.Symbol("dout", real=True)
GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, h = 1e-6

LEAKY = "max(x, 0.01*x)"
ELU = "max(0, x) + min(0, exp(x) - 1)"
# formula -> derivative at exactly 0 under the stated convention (PyTorch's relu, leaky_relu, elu)
AT_ZERO = {"max(0, x)": 0, "relu(x)": 0, LEAKY: sp.Rational(1, 100), "max(0.01*x, x)": sp.Rational(1, 100),
           ELU: 1, "min(x, 0)": 1, "min(0, x)": 1, "max(x, x**3)": 0, "max(x, 0) - max(-x, 0)": 1}


def rule(formula):
    return formula_layer(formula).derive().backward["dx"]


# --- 1. max/min at a tie -----------------------------------------------------------------------

@pytest.mark.parametrize("formula", list(AT_ZERO))
def test_derivative_at_the_kink_follows_the_left_derivative_convention(formula):
    assert rule(formula).subs({x: 0, dout: 1}) == AT_ZERO[formula]


def test_convention_is_stated_with_the_derivation():
    conventions = " ".join(formula_layer(LEAKY).derive().conventions)
    assert "from the left" in conventions and "leaky_relu'(0)" in conventions


@pytest.mark.parametrize("formula", [LEAKY, ELU, "max(x, x**3)", "min(max(x, -1), 1)", "max(0, x) + min(0, exp(x) - 1)"])
def test_kinked_rules_match_finite_differences_away_from_the_kinks(formula, rng):
    layer = formula_layer(formula)
    f = sp.lambdify(x, layer.expr, "numpy")
    g = sp.lambdify((x, dout), rule(formula), "numpy")
    points = rng.uniform(-3, 3, 40)
    points = points[np.abs(points) > 0.05]
    points = points[np.abs(np.abs(points) - 1) > 0.05]
    numeric = numerical_gradient(lambda v: float(np.sum(f(v))), points.copy())
    assert relative_error(g(points, np.ones_like(points)), numeric) < GRADCHECK_TOLERANCE


def _one_unit_net(formula):
    """affine(1,1) formula affine(1,1) mse: with W1 = b1 = 0 the formula sees exactly x = b1."""
    return load_network(f"affine(1,1) formula({formula}) affine(1,1) mse")


def _grads_at(net, z, dtype):
    W1, b1 = np.zeros((1, 1), dtype), np.full((1,), z, dtype)
    W2, b2 = np.ones((1, 1), dtype), np.zeros((1,), dtype)
    X, T = np.ones((1, 1), dtype), np.ones((1, 1), dtype)
    return net.loss_and_grads(W1, b1, W2, b2, X, T)


@pytest.mark.parametrize("formula, slope", [(LEAKY, 0.01), (ELU, 1.0), ("max(0, x)", 0.0)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_generated_kernel_takes_the_convention_at_exactly_zero(formula, slope, dtype):
    # y = f(0) = 0, T = 1, mse: dL/dy = -2, so db1 = -2 f'(0)
    loss, dW1, db1, dW2, db2 = _grads_at(_one_unit_net(formula), 0.0, dtype)
    assert db1[0] == pytest.approx(-2 * slope, rel=1e-6)


# --- 2. no inf * 0 -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("z", [1e4, -1e4, 800.0, 100.0, -800.0])
def test_elu_backward_is_finite_far_out(z, dtype):
    with np.errstate(over="ignore"):
        loss, dW1, db1, dW2, db2 = _grads_at(_one_unit_net(ELU), z, dtype)
    expected = 1.0 if z > 0 else math.exp(z)  # ELU'(z)
    y = z if z > 0 else math.expm1(z)
    assert np.isfinite(db1[0]) and db1[0] == pytest.approx(2 * (y - 1) * expected, rel=1e-5, abs=1e-30)


def test_mask_times_an_overflowing_factor_is_a_conditional_in_the_kernel():
    text = network_module_text(f"affine(1,1) formula({ELU}) affine(1,1) mse")
    assert " if " in text and "*real(1 - " not in text


def test_relu_rule_stays_a_branch_free_product():
    text = network_module_text("affine(1,1) formula(max(0, x)) affine(1,1) mse")
    assert "real(" in text and " > real(0))" in text


# --- 3. log1p and expm1 ----------------------------------------------------------------------------

def test_log1p_and_expm1_keep_their_precision_in_the_derivation():
    assert parse_formula("log1p(x)") != sp.log(1 + x)
    tiny = sp.Rational(1, 10**12)
    for formula, exact in (("log1p(x)", sp.log(1 + tiny)), ("expm1(x)", sp.exp(tiny) - 1)):
        value = parse_formula(formula).subs(x, tiny).evalf(30)
        assert abs(value - exact.evalf(50)) < 1e-40
        assert float(sp.lambdify(x, parse_formula(formula), "numpy")(1e-12)) == pytest.approx(float(exact.evalf(30)),
                                                                                              rel=1e-15)


@pytest.mark.parametrize("formula, exact", [("log1p(x)", math.log1p(1e-12)), ("expm1(x)", math.expm1(1e-12))])
def test_log1p_and_expm1_keep_their_precision_in_kernels(formula, exact):
    net = _one_unit_net(formula)
    W1, b1 = np.zeros((1, 1)), np.full((1,), 1e-12)
    y = net.forward(W1, b1, np.ones((1, 1)), np.zeros((1,)), np.ones((1, 1)))
    assert y[0, 0] == pytest.approx(exact, rel=1e-15)
    assert "np.log1p" in network_module_text(f"affine(1,1) formula({formula}) affine(1,1) mse") or formula == "expm1(x)"


def test_log1p_derivative_matches_finite_differences():
    g = sp.lambdify((x, dout), rule("log1p(x) + expm1(x)"), "numpy")
    points = np.linspace(-0.5, 2, 11)
    numeric = numerical_gradient(lambda v: float(np.sum(np.log1p(v) + np.expm1(v))), points.copy())
    assert relative_error(g(points, np.ones_like(points)), numeric) < GRADCHECK_TOLERANCE


# --- 4. complex values are refused -----------------------------------------------------------------

NET = """
loss = "{loss}"
learning_rate = 0.5
[inputs]
x1 = 0.05
x2 = 0.1
[targets]
t1 = 0.03
t2 = 0.05
[[layers]]
units = ["h1", "h2"]
activation = "{activation}"
weights = [[-0.5, 0.6], [-0.7, 0.8]]
bias = {bias}
"""


def _transcript(text):
    from symprop.symbolic.network_transcript import network_transcript
    return network_transcript(parse_network(text, "net.toml"), "net")


@pytest.mark.parametrize("loss, activation, bias, named", [
    ("squared-error", "sqrt(x)", 0.0, "square root of -0.095"),
    ("squared-error", "log(x)", 0.0, "log of -0.095"),
    ("cross-entropy", "identity", 2.0, "log(1 - h1) takes the log of -0.9"),
])
def test_a_complex_value_is_refused_naming_the_node_and_value(loss, activation, bias, named):
    with pytest.raises(SympropError, match="not a real number") as error:
        _transcript(NET.format(loss=loss, activation=activation, bias=bias))
    assert named in str(error.value)


def test_the_checker_refuses_rather_than_grades_a_complex_value(tmp_path):
    net = tmp_path / "net.toml"
    net.write_text(NET.format(loss="squared-error", activation="sqrt(x)", bias=0.0))
    result = _cli("check", str(net), "E=0.1")
    assert result.returncode == 2 and "not a real number" in result.stderr and "j)" not in result.stdout


# --- 5. bombs and numbers --------------------------------------------------------------------------

BOMBS = ["exp(exp(exp(exp(x))))", "(x+sin(x)+cos(x)+exp(x)+tanh(x))**64", "((x+1)**64+1)**64",
         "sigmoid(" * 40 + "x" + ")" * 40, "tanh(" * 12 + "x" + ")" * 12, "exp(" * 12 + "x" + ")" * 12]


@pytest.mark.parametrize("formula", BOMBS, ids=range(len(BOMBS)))
def test_explosive_formulas_finish_or_are_refused_within_seconds(formula):
    start = time.monotonic()
    try:
        formula_layer(formula).derive()
    except SympropError as exc:
        assert "\n" not in str(exc)
    assert time.monotonic() - start < MAX_DERIVE_SECONDS + 2


@pytest.mark.parametrize("text, problem", [
    ("1e999999999", "exponent"), ("1e-999999999", "exponent"), ("1/0", "divides by zero"),
    ("1" * 100, "digits"), ("0." + "0" * 80 + "1", "digits"), ("abc", "not a number"),
])
def test_unreadable_numbers_are_one_line(text, problem):
    with pytest.raises(SympropError, match=problem):
        parse_written(text, "argument 1")
    network = NET.format(loss="squared-error", activation="sigmoid", bias=0.0).replace(
        "learning_rate = 0.5", f'learning_rate = "{text}"')
    with pytest.raises(SympropError, match="line 3, field 'learning_rate'"):
        parse_network(network, "net.toml")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.from_regex(r"[+-]?[0-9]{0,80}(\.[0-9]{0,80})?([eE][+-]?[0-9]{1,12})?|[0-9]{1,70}/[0-9]{1,70}",
                     fullmatch=True))
def test_any_number_text_is_read_quickly_or_refused(text):
    start = time.monotonic()
    try:
        value, tolerance, _ = parse_written(text, "claim")
        assert value.is_Rational and tolerance >= 0
    except SympropError as exc:
        assert "\n" not in str(exc)
    assert time.monotonic() - start < 1


def test_exact_arithmetic_of_many_steps_finishes_in_seconds():
    network = NET.format(loss="squared-error", activation="identity", bias=0.1).replace(
        "learning_rate = 0.5", 'learning_rate = "1/3"\nsteps = 30')
    start = time.monotonic()
    t = _transcript(network)
    assert time.monotonic() - start < 15
    assert t.float_value("step30:E_new") < t.float_value("E")


# --- 6. undefined formulas and whitespace ----------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "symprop",
                           *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("formula, named", [("0/0", "'0/0' is undefined"), ("x/0", "'x/0' is undefined"),
                                            ("log(0)+x", "'log(0)' is undefined"),
                                            ("sqrt(-1)*x", "'sqrt(-1)' is not a real number"),
                                            ("x + log1p(-1)", "'log1p(-1)' is undefined")])
def test_undefined_formulas_are_one_line_with_exit_2(formula, named):
    result = _cli("derive", "--formula", formula)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr and len(result.stderr.strip().splitlines()) == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["x", "0", "1", "(", ")", "/", "*", "+", "-", "log(", "sqrt(", "exp(", "max(x,",
                                 "min(0,", "log1p(", "expm1(", "\n", " ", "**2", "0.5", "abs("]),
                min_size=1, max_size=12))
def test_random_formulas_derive_or_are_refused_on_one_line(pieces):
    formula = "".join(pieces)
    try:
        derivation = formula_layer(formula).derive()
    except SympropError as exc:
        assert "\n" not in str(exc)
        return
    for expr in [*derivation.forward.values(), *derivation.backward.values()]:
        assert not expr.has(sp.nan, sp.zoo, sp.I)


def test_a_newline_inside_formula_is_one_space_in_the_module():
    text = network_module_text("affine(2,3) formula(x*\n   sigmoid(x)) affine(3,1) mse")
    assert "formula(x* sigmoid(x))" in text
    assert not any(line.startswith("   sigmoid") for line in text.splitlines())
    header = text.split("\n\n", 1)[0]
    assert all(line.startswith("#") or not line for line in header.splitlines())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_zero_initialised_elu_layer_trains_with_the_fused_step(dtype):
    """The issue's symptom: with ELU'(0) = 0 a layer whose net inputs start at 0 never moves."""
    W1, b1 = np.zeros((1, 1), dtype), np.zeros((1,), dtype)
    W2, b2 = np.ones((1, 1), dtype), np.zeros((1,), dtype)
    _one_unit_net(ELU).sgd_step(W1, b1, W2, b2, np.ones((1, 1), dtype), np.ones((1, 1), dtype), dtype(0.1))
    assert b1[0] == pytest.approx(0.2, rel=1e-6) and W1[0, 0] == pytest.approx(0.2, rel=1e-6)


def test_prelu_takes_its_learned_slope_at_exactly_zero():
    from symprop.symbolic.layers import PerFeature, real
    prelu = PerFeature("test-prelu-kink", "max(0, x) + a*min(0, x)", "PReLU", params=("a",)).derive()
    a = real("a")
    assert prelu.backward["dx"].subs({x: 0, dout: 1, a: sp.Rational(1, 4)}) == sp.Rational(1, 4)  # PyTorch: a
    assert prelu.backward["da"].subs({x: 0, dout: 1}) == 0


def test_the_graph_parser_reads_a_multiline_formula_as_one_line():
    from symprop.symbolic.graph import parse_net
    assert parse_net("affine(2,3) formula(x*\n   sigmoid(x)) affine(3,1) mse").spec == \
        "affine(2,3) formula(x* sigmoid(x)) affine(3,1) mse"
