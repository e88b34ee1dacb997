"""The registry's derived rules: equal to the textbook forms, to finite differences, and derived."""
import numpy as np
import pytest
import sympy as sp

from symprop.symbolic import layers
from symprop.symbolic.layers import Elementwise, ElementwiseLoss, K, N, REGISTRY, formula_layer
from symprop.symbolic.stable import Sigmoid, as_raw, equal_numerically
from tests.gradcheck import numerical_gradient, relative_error

x, y, out, dout, t, z = (sp.Symbol(n, real=True) for n in ("x", "y", "out", "dout", "t", "z"))

# The textbook backward rules (seed 000, seed 001), written here only to compare against.
TEXTBOOK = {
    "add": {"dx": dout, "dy": dout},
    "mul": {"dx": dout * y, "dy": dout * x},
    "identity": {"dx": dout},
    "relu": {"dx": dout * sp.Heaviside(x, 0)},
    "sigmoid": {"dx": dout * y * (1 - y)},
    "tanh": {"dx": dout * (1 - y**2)},
    "squared-error": {"dy": y - t},
    "mse": {"dy": 2 * (y - t) / (N * K)},
    "binary-cross-entropy": {"dz": (Sigmoid(z) - t) / N},
    # the error where it is small, its sign beyond 1 (the error clipped to [-1, 1])
    "huber": {"dy": sp.Piecewise((y - t, sp.Abs(y - t) <= 1), (sp.sign(y - t), True)) / (N * K)},
}

SCALAR_LAYERS = [n for n, layer in REGISTRY.items() if isinstance(layer, (Elementwise, ElementwiseLoss))]


def test_every_scalar_layer_has_a_textbook_rule_to_compare_with():
    assert set(SCALAR_LAYERS) == set(TEXTBOOK)


@pytest.mark.parametrize("name", SCALAR_LAYERS)
def test_derived_rule_equals_textbook_symbolically(name):
    derived = REGISTRY.derive(name).backward
    assert set(derived) == set(TEXTBOOK[name])
    for grad, rule in derived.items():
        assert sp.simplify(rule - TEXTBOOK[name][grad]) == 0, (grad, rule)


@pytest.mark.parametrize("name", SCALAR_LAYERS)
def test_canonical_form_equals_raw_sympy_derivative(name):
    d = REGISTRY.derive(name)
    layer = REGISTRY[name]
    inputs = [sp.Symbol(n, real=True) for n in layer.inputs]
    forward = list(d.forward.values())[0]
    output = sp.Symbol(getattr(layer, "output", "y"), real=True)
    for grad, rule in d.backward.items():
        as_inputs = rule.subs(output, forward) if isinstance(layer, Elementwise) else rule
        assert equal_numerically(as_inputs, d.raw_backward[grad], inputs + [dout])


@pytest.mark.parametrize("name", SCALAR_LAYERS)
def test_rule_matches_finite_differences(name, rng):
    d = REGISTRY.derive(name)
    layer = REGISTRY[name]
    names = list(layer.inputs)
    symbols = [sp.Symbol(n, real=True) for n in names]
    forward_expr = as_raw(list(d.forward.values())[0])
    f = sp.lambdify(symbols, forward_expr, "numpy")
    output = sp.Symbol(getattr(layer, "output", "y"), real=True)
    differentiable = names if isinstance(layer, Elementwise) else names[:1]
    for _ in range(5):
        point = {n: float(v) for n, v in zip(names, rng.uniform(0.2, 2.0, len(names)) * rng.choice([-1, 1], len(names)))}
        if isinstance(layer, ElementwiseLoss):
            point["t"] = float(rng.uniform(0, 1))
        upstream = float(rng.normal())
        values = {s: point[s.name] for s in symbols}
        if isinstance(layer, Elementwise):
            values[output] = float(forward_expr.subs(values))
        values[dout] = upstream
        for name_ in differentiable:
            rule = d.backward["d" + name_]
            if isinstance(layer, ElementwiseLoss):  # scale the single-element loss's rule by the reduction's 1/count
                rule = rule.subs({N: 1, K: 1})
            exact = float(rule.subs(values))
            index = names.index(name_)

            def g(v):
                args = [point[n] for n in names]
                args[index] = float(v[0])
                return f(*args) * (upstream if isinstance(layer, Elementwise) else 1.0)

            numeric = numerical_gradient(g, np.array([point[name_]]))[0]
            assert relative_error(exact, numeric) < 1e-6, (name, name_, exact, numeric)


def test_relu_kink_convention_is_exactly_zero_at_zero():
    rule = REGISTRY.derive("relu").backward["dx"]
    assert rule.subs({x: 0, dout: 1}) == 0
    assert rule.subs({x: sp.Rational(1, 10**9), dout: 1}) == 1
    assert "relu'(0) = 0" in " ".join(REGISTRY.derive("relu").conventions)


def test_sigmoid_rule_reads_the_saved_output_not_exp():
    d = REGISTRY.derive("sigmoid")
    assert d.saved == ("y",)
    assert not d.backward["dx"].has(sp.exp)


def test_affine_rules_match_textbook_matrix_forms():
    d = REGISTRY.derive("affine")
    X, W, dY = sp.MatrixSymbol("X", layers.N, layers.I), sp.MatrixSymbol("W", layers.I, layers.J), sp.MatrixSymbol("dY", layers.N, layers.J)
    assert d.backward["dX"] == dY * W.T
    assert d.backward["dW"] == X.T * dY
    assert d.backward["db"] == sp.OneMatrix(1, layers.N) * dY  # the column sums of dY


def test_affine_index_form_agrees_with_matrix_form():
    steps = {s.lhs.text: s.rhs for s in REGISTRY.derive("affine").steps if s.title == "index notation"}
    Xi, Wi, dYi = (sp.IndexedBase(s) for s in ("X", "W", "dY"))
    n, j, p, q = sp.symbols("n j p q", integer=True)
    assert steps["dW[p, q]"] == sp.Sum(Xi[n, p] * dYi[n, q], (n, 1, layers.N))
    assert steps["dX[p, q]"] == sp.Sum(Wi[q, j] * dYi[p, j], (j, 1, layers.J))
    assert steps["db[q]"] == sp.Sum(dYi[n, q], (n, 1, layers.N))


def test_affine_bias_example_from_seed_000():
    """dY = [[1, 2, 3], [4, 5, 6]] gives dB = [5, 7, 9] through the derived rule 1^T dY."""
    rule = REGISTRY.derive("affine").backward["db"]
    dY = sp.Matrix([[1, 2, 3], [4, 5, 6]])
    value = rule.subs({layers.N: 2, layers.J: 3}).subs(sp.MatrixSymbol("dY", 2, 3), dY).doit()
    assert sp.Matrix(value) == sp.Matrix([[5, 7, 9]])


def test_softmax_cross_entropy_is_y_minus_t_over_n_and_uses_one_hot_sum():
    d = REGISTRY.derive("softmax-cross-entropy")
    yb, tb = sp.IndexedBase("y"), sp.IndexedBase("t")
    j = sp.Symbol("j", integer=True)
    assert sp.simplify(d.backward["dz[j]"] - (yb[j] - tb[j]) / N) == 0
    one_hot = [s for s in d.steps if s.title == "one-hot targets"]
    assert one_hot and "sum_k t[k] = 1" in one_hot[0].note


def test_softmax_backward_is_y_times_dy_minus_weighted_sum():
    d = REGISTRY.derive("softmax")
    yb, dyb = sp.IndexedBase("y"), sp.IndexedBase("dy")
    j, k = sp.symbols("j k", integer=True)
    expected = yb[j] * (dyb[j] - sp.Sum(dyb[k] * yb[k], (k, 1, K)))
    assert sp.expand(d.backward["dz[j]"] - expected) == 0


def test_softmax_derivation_numerically_against_finite_differences(rng):
    """Evaluate the derived index rule at K = 4 and compare with differences of softmax."""
    d = REGISTRY.derive("softmax")
    zv, dyv = rng.normal(size=4), rng.normal(size=4)
    yv = np.exp(zv - zv.max()) / np.exp(zv - zv.max()).sum()
    yb, dyb = sp.IndexedBase("y"), sp.IndexedBase("dy")
    j = sp.Symbol("j", integer=True)
    rule = d.backward["dz[j]"].subs(K, 4)
    exact = [float(rule.subs(j, jj).doit().subs({yb[i]: yv[i - 1] for i in range(1, 5)})
                   .subs({dyb[i]: dyv[i - 1] for i in range(1, 5)})) for jj in range(1, 5)]

    def f(v):
        e = np.exp(v - v.max())
        return float(dyv @ (e / e.sum()))

    assert relative_error(exact, numerical_gradient(f, zv)) < 1e-6


def test_rules_are_derived_not_typed():
    """The registry holds forward formulas only: no layer definition mentions a derivative."""
    for layer in REGISTRY.values():
        fields = {k: v for k, v in vars(layer).items() if not k.startswith("_") and k != "expr"}
        text = repr(fields)
        for forbidden in ("dout", "backward", "dx", "(1 - y)"):
            assert forbidden not in text, (layer.name, forbidden)
    # deriving twice from the forward formula gives the same rule: nothing is looked up
    assert REGISTRY["sigmoid"].derive().backward == REGISTRY.derive("sigmoid").backward


def test_user_formula_mish_derives_stable_form():
    d = formula_layer("x*tanh(log(1+exp(x)))").derive()
    rule = d.backward["dx"]
    assert not rule.has(sp.exp) and not any(isinstance(a, sp.log) for a in sp.preorder_traversal(rule))
    raw = sp.diff(x * sp.tanh(sp.log(1 + sp.exp(x))), x) * dout
    assert equal_numerically(rule, raw, [x, dout])
    f = sp.lambdify([x, dout], as_raw(rule), "mpmath")
    assert abs(float(f(1000, 1)) - 1.0) < 1e-12  # finite where exp(1000) is not


def test_adding_an_elementwise_layer_is_one_definition():
    layer = layers.Elementwise("softsign", "x/(1 + abs(x))", "test layer")
    registry = layers.Registry([*REGISTRY.values(), layer])
    rule = registry.derive("softsign").backward["dx"]
    assert equal_numerically(rule, dout / (1 + sp.Abs(x)) ** 2, [x, dout])
