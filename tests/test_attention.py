"""Scaled dot-product self-attention: SymPy derives the textbook rules (the softmax Jacobian,
not elementwise, and the 1/sqrt(dk) scale in dQ and dK), the fused network kernels match
central differences (float64, T = 1 and the causal mask included) and an independent float64
attention written with plain numpy."""
import re

import numpy as np
import pytest
import sympy as sp

from symprop.cli import main
from symprop.codegen.network import load_network, network_file
from symprop.symbolic.errors import SympropError
from symprop.symbolic.graph import parse_net
from symprop.symbolic.layers import REGISTRY, N
from symprop.symbolic.ops.attention import D, DK, DV, T
from tests.gradcheck import numerical_gradient, parameter_loss, relative_error

GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, relative


# ---- attention written independently: plain numpy, float64 -----------------------------------
def attention_forward(X, Wq, Wk, Wv, tokens, causal=False):
    """(xs, Q, K, V, P, O) of each row, X read as (N, T, D); masked scores are -inf."""
    xs = X.reshape(X.shape[0], tokens, -1)
    Q, K, V = xs @ Wq, xs @ Wk, xs @ Wv
    S = Q @ K.transpose(0, 2, 1) / np.sqrt(Wq.shape[1])
    if causal:
        S = np.where(np.tril(np.ones((tokens, tokens), bool)), S, -np.inf)
    P = np.exp(S - S.max(axis=-1, keepdims=True))
    P /= P.sum(axis=-1, keepdims=True)
    return xs, Q, K, V, P, P @ V


def attention_backward(xs, Wq, Wk, Wv, Q, K, V, P, dO):
    """(dX, dWq, dWk, dWv, dS) from dL/dO, by the textbook matrix rules."""
    scale = np.sqrt(Wq.shape[1])
    dV = P.transpose(0, 2, 1) @ dO
    dP = dO @ V.transpose(0, 2, 1)
    dS = P * (dP - np.sum(dP * P, axis=-1, keepdims=True))
    dQ, dK = dS @ K / scale, dS.transpose(0, 2, 1) @ Q / scale
    per_row = lambda a, b: np.einsum("ntd,nta->da", a, b)  # noqa: E731
    dX = dQ @ Wq.T + dK @ Wk.T + dV @ Wv.T
    return dX.reshape(xs.shape[0], -1), per_row(xs, dQ), per_row(xs, dK), per_row(xs, dV), dS


# ---- the derivation -------------------------------------------------------------------------
def test_sympy_derives_the_textbook_rules_of_attention():
    d = REGISTRY.derive("attention")
    n, t, s, r, dd, a, c = sp.symbols("n t s r d a c", integer=True)
    x, Wq, Wk, Wv, Q, K, V, P, dO, dP, dS, dQ, dK, dV = (sp.IndexedBase(name) for name in (
        "x", "Wq", "Wk", "Wv", "Q", "K", "V", "P", "dO", "dP", "dS", "dQ", "dK", "dV"))
    # the softmax's Jacobian is not elementwise: dS reads the whole row of P and dP
    textbook = P[n, t, s] * (dP[n, t, s] - sp.Sum(P[n, t, r] * dP[n, t, r], (r, 0, T - 1)))
    assert sp.simplify(d.backward["dS"] - textbook) == 0
    jacobian = next(step.rhs for step in d.steps if step.title.startswith("the softmax Jacobian"))
    assert sp.simplify(jacobian - P[n, t, r] * (sp.KroneckerDelta(r, s) - P[n, t, s])) == 0
    # the 1/sqrt(dk) scale reaches the queries' and keys' gradients
    assert d.backward["dQ"] == sp.Sum(K[n, s, a] * dS[n, t, s], (s, 0, T - 1)) / sp.sqrt(DK)
    assert d.backward["dK"] == sp.Sum(Q[n, t, a] * dS[n, t, s], (t, 0, T - 1)) / sp.sqrt(DK)
    assert d.backward["dP"] == sp.Sum(V[n, s, c] * dO[n, t, c], (c, 0, DV - 1))
    assert d.backward["dV"] == sp.Sum(P[n, t, s] * dO[n, t, c], (t, 0, T - 1))
    # the projections: shared weights summed over the batch and the tokens; x feeds three paths
    assert d.backward["dWq"] == sp.Sum(x[n, t, dd] * dQ[n, t, a], (n, 0, N - 1), (t, 0, T - 1))
    assert d.backward["dWv"] == sp.Sum(x[n, t, dd] * dV[n, t, c], (n, 0, N - 1), (t, 0, T - 1))
    assert d.backward["dx"] == (sp.Sum(Wq[dd, a] * dQ[n, t, a], (a, 0, DK - 1))
                                + sp.Sum(Wk[dd, a] * dK[n, t, a], (a, 0, DK - 1))
                                + sp.Sum(Wv[dd, c] * dV[n, t, c], (c, 0, DV - 1)))
    assert d.forward["S"] == sp.Sum(Q[n, t, a] * K[n, s, a], (a, 0, DK - 1)) / sp.sqrt(DK)
    assert d.forward["Q"].has(D)
    assert REGISTRY.derive("causal-attention").backward == d.backward  # the mask changes which terms exist, not the rules


def test_symprop_derive_shows_the_forward_formulas_and_the_derived_rules(capsys):
    assert main(["derive", "attention"]) == 0
    out = capsys.readouterr().out
    assert "S[n, t, s] = Sum(K[n, s, a]*Q[n, t, a], (a, 0, d_k - 1))/sqrt(d_k)" in out
    assert "P[n, t, s] = exp(S[n, t, s] - Smax[n, t])/Sum(exp(S[n, t, r] - Smax[n, t]), (r, 0, T - 1))" in out
    assert "dP[n,t,r]/dS[n,t,s] = (KroneckerDelta(r, s) - P[n, t, s])*P[n, t, r]" in out
    assert "dS = (dP[n, t, s] - Sum(P[n, t, r]*dP[n, t, r], (r, 0, T - 1)))*P[n, t, s]" in out
    assert main(["derive", "causal-attention"]) == 0
    assert "token t attends to the tokens s <= t only" in capsys.readouterr().out
    assert main(["derive", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "attention " in listed and "causal-attention " in listed


@pytest.mark.parametrize("spec, message", [
    ("attention(2,2,4) flatten affine(8,1) mse", "attention needs four positive sizes"),
    ("causal-attention(2,0,2,4) flatten affine(8,1) mse", "causal-attention needs four positive sizes"),
    ("attention(2,2,2,4) affine(8,1) mse", "put flatten before it"),
    ("attention(2,2,3,4) attention(2,2,2,4) flatten affine(8,1) mse",
     "layer 2 'attention(2,2,2,4)' (column 20): takes (4, 2) inputs but the layer before gives (4, 3)"),
])
def test_bad_attention_specs_are_one_clear_line(spec, message):
    with pytest.raises(SympropError, match=re.escape(message)):
        parse_net(spec)


# ---- the fused kernels ----------------------------------------------------------------------
def _random_spec(rng, tokens, op):
    inputs, keys, values, classes = (int(v) + 1 for v in rng.integers(0, 3, 4))
    return (f"{op}({inputs},{keys},{values},{tokens}) flatten affine({tokens * values},{classes + 1}) "
            "softmax-cross-entropy")


@pytest.mark.parametrize("op", ["attention", "causal-attention"])
@pytest.mark.parametrize("tokens", [1, 2, 5])
def test_fused_kernel_agrees_with_central_differences(op, tokens, rng):
    """Random sizes (T = 1: one token attends to itself alone); every parameter, float64, rel 1e-6."""
    spec = _random_spec(rng, tokens, op)
    _gradcheck(spec, rng)


def test_stacked_attention_carries_the_gradient_to_its_input_sequence(rng):
    """A second head reads the first one's output: its dL/dx (three paths: query, key and value)
    reaches the first head's projections, checked by central differences."""
    _gradcheck("causal-attention(2,3,3,4) attention(3,2,2,4) flatten affine(8,2) softmax-cross-entropy", rng)


def _gradcheck(spec, rng):
    net = load_network(spec)
    params = [rng.normal(0, 0.8, shape) for shape in net.PARAM_SHAPES]
    rows = int(rng.integers(1, 4))
    X = rng.normal(size=(rows, net.INPUT_SIZE))
    labels = np.eye(net.OUTPUT_SIZE)[rng.integers(0, net.OUTPUT_SIZE, rows)]
    loss, *grads = net.loss_and_grads(*params, X, labels)
    for k, (name, grad) in enumerate(zip(net.PARAM_NAMES, grads)):
        numeric = numerical_gradient(parameter_loss(net, params, k, X, labels), params[k])
        assert relative_error(grad, numeric) < GRADCHECK_TOLERANCE, (spec, name)


@pytest.mark.parametrize("causal", [False, True])
def test_fused_kernel_equals_an_independent_float64_attention(causal, rng):
    """Loss and gradients against the plain numpy attention above; backward leaves its inputs alone."""
    inputs, keys, values, tokens = 3, 2, 4, 5
    op = "causal-attention" if causal else "attention"
    net = load_network(f"{op}({inputs},{keys},{values},{tokens}) flatten squared-error")
    Wq, Wk, Wv = (rng.normal(0, 0.7, shape) for shape in net.PARAM_SHAPES)
    X, target = rng.normal(size=(3, tokens * inputs)), rng.normal(size=(3, tokens * values))
    before = X.copy(), Wq.copy()
    loss, dWq, dWk, dWv = net.loss_and_grads(Wq, Wk, Wv, X, target)
    np.testing.assert_array_equal(X, before[0])  # backward never writes its inputs
    np.testing.assert_array_equal(Wq, before[1])
    xs, Q, K, V, P, O = attention_forward(X, Wq, Wk, Wv, tokens, causal)
    dO = O.reshape(3, -1) - target
    assert loss == pytest.approx(0.5 * np.sum(dO ** 2), rel=1e-12)
    _, want_dWq, want_dWk, want_dWv, _ = attention_backward(xs, Wq, Wk, Wv, Q, K, V, P, dO.reshape(O.shape))
    for got, want in ((dWq, want_dWq), (dWk, want_dWk), (dWv, want_dWv)):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-14)


def test_large_scores_do_not_overflow(rng):
    """Scores in the thousands: the row maximum is subtracted before exp, so the loss and the
    gradients stay finite (a plain exp would overflow to inf and give NaN)."""
    net = load_network("attention(2,2,2,3) flatten squared-error")
    params = [rng.normal(0, 30, shape) for shape in net.PARAM_SHAPES]
    X, target = rng.normal(0, 10, size=(2, 6)), rng.normal(size=(2, 6))
    loss, *grads = net.loss_and_grads(*params, X, target)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads)


def test_attention_keeps_the_matrix_step_and_its_sgd_step_is_the_gradient_step(rng):
    """The scalar-step pass has no scalar form for the causal mask's loops: the network keeps
    the matrix step, and one SGD step moves each parameter by -lr times its gradient."""
    spec = "causal-attention(1,1,1,3) flatten affine(3,1) squared-error"
    assert "\nSCALAR_STEP = False" in network_file(spec)[1]
    net = load_network(spec)
    params = [rng.normal(0, 0.7, shape) for shape in net.PARAM_SHAPES]
    X, target = rng.normal(size=(2, 3)), rng.normal(size=(2, 1))
    loss, *grads = net.loss_and_grads(*params, X, target)
    stepped = [p.copy() for p in params]
    assert net.sgd_step(*stepped, X, target, 0.1) == pytest.approx(loss, rel=1e-15)
    for new, old, grad in zip(stepped, params, grads):
        np.testing.assert_allclose(new, old - 0.1 * grad, rtol=1e-15, atol=1e-15)


def test_a_layer_alone_carries_the_gradient_to_its_input_sequence():
    """causal attention alone with a given upstream gradient dout: the transcript's dL/dX (the
    lowering's input-gradient statements) equals the numpy attention's, element by element."""
    from symprop.symbolic.graph_transcript import graph_transcript

    values = {"X": [[[1, 0], [0.5, -1], [1, 1]]], "dout": [[[1, -2], [0.5, 0], [-1, 0.25]]],
              "Wq1": [[1, 0.5], [0, 1]], "Wk1": [[0.5, 1], [-1, 0.5]], "Wv1": [[1, -1], [0.5, 1]]}
    t = graph_transcript(parse_net("causal-attention(2,2,2,3)", loss_optional=True), values)
    X = np.array(values["X"], float).reshape(1, -1)
    Wq, Wk, Wv = (np.array(values[k], float) for k in ("Wq1", "Wk1", "Wv1"))
    xs, Q, K, V, P, O = attention_forward(X, Wq, Wk, Wv, 3, causal=True)
    dX, dWq, _, _, dS = attention_backward(xs, Wq, Wk, Wv, Q, K, V, P, np.array(values["dout"], float))
    for s in range(3):
        for e in range(2):
            assert t.float_value(f"dL/dX[0,{s},{e}]") == pytest.approx(dX[0, 2 * s + e], rel=1e-12), (s, e)
    assert t.float_value("dL/dWq1[1,0]") == pytest.approx(dWq[1, 0], rel=1e-12)
    assert t.float_value("dL/dS1[0,2,1]") == pytest.approx(dS[0, 2, 1], rel=1e-12)
    assert "P1[0,0,1]" not in t.quantities and "S1[0,1,2]" not in t.quantities  # masked: never computed

