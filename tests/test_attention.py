"""Scaled dot-product self-attention: SymPy derives the textbook rules (the softmax Jacobian,
not elementwise, and the 1/sqrt(dk) scale in dQ and dK), the fused network kernels match
central differences (float64, T = 1 and the causal mask included) and an independent float64
attention written with plain numpy."""
import functools
import re

import numpy as np
import pytest
import sympy as sp

from symprop.cli import main
from symprop.codegen.network import load_network, network_module_text
from symprop.symbolic.errors import SympropError
from symprop.symbolic.graph import parse_net
from symprop.symbolic.layers import REGISTRY, N
from symprop.symbolic.ops.attention import D, DK, DV, T
from tests.gradcheck import (assert_committed_module_is_the_worked_example, assert_sgd_step_is_the_gradient_step,
                             numerical_gradient, parameter_loss, relative_error)
from tests.test_examples import GOLDEN, check_golden

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
    # the mask changes which terms exist, not the rules
    assert REGISTRY.derive("causal-attention").backward == d.backward


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
     "layer 2 'attention(2,2,2,4)' (column 20): takes sequences (4, 2) of 4 steps of 2 values but the layer "
     "before gives sequences (4, 3) of 4 steps of 3 values"),
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
def test_fused_kernel_agrees_with_central_differences(op, rng):
    """Random sizes, one token (T = 1: it attends to itself alone); every parameter, float64,
    rel 1e-6. Several tokens: the stacked test below checks both kinds that way."""
    spec = _random_spec(rng, 1, op)
    _gradcheck(spec, rng)


def test_stacked_attention_carries_the_gradient_to_its_input_sequence(rng):
    """A second head reads the first one's output: its dL/dx (three paths: query, key and value)
    reaches the first head's projections, checked by central differences. Every parameter of
    both kinds at T = 4 (causal reading the input, plain reading the first head), with sizes
    above 1 (a network of random sizes for each at T = 4 drew 1-wide ones and checked nothing
    more)."""
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
    net = load_network("attention(2,2,2,4) flatten squared-error")  # the worked example's, compiled below
    params = [rng.normal(0, 30, shape) for shape in net.PARAM_SHAPES]
    X, target = rng.normal(0, 10, size=(2, 8)), rng.normal(size=(2, 8))
    loss, *grads = net.loss_and_grads(*params, X, target)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads)


def test_attention_keeps_the_matrix_step_and_its_sgd_step_is_the_gradient_step(rng):
    """The scalar-step pass has no scalar form for attention's loops (3-axis buffers, the
    mask's bounds): the network keeps the matrix step, and one SGD step moves each parameter
    by -lr times its gradient."""
    assert "\nSCALAR_STEP = False" in network_module_text(parse_net("attention(1,1,1,3) flatten affine(3,1) squared-error"))
    spec = "causal-attention(1,1,1,3) flatten affine(3,1) squared-error"
    assert "\nSCALAR_STEP = False" in network_module_text(parse_net(spec))
    net = load_network(spec)
    params = [rng.normal(0, 0.7, shape) for shape in net.PARAM_SHAPES]
    X, target = rng.normal(size=(2, 3)), rng.normal(size=(2, 1))
    assert_sgd_step_is_the_gradient_step(net, params, X, target)


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


# ---- the worked example (symbolic/nets/attention-four-tokens.toml) -------------------------
EXAMPLE = "attention-four-tokens"


def _given(name):
    """A value of the example's [values] table as float64, from the file's own numbers."""
    from fractions import Fraction
    from symprop.symbolic.examples import NET_FILES

    return np.vectorize(lambda v: float(Fraction(str(v))))(np.array(NET_FILES[EXAMPLE].values[name], dtype=object))


@functools.cache
def _example():
    from symprop.symbolic.examples import EXAMPLES

    return EXAMPLES[EXAMPLE].build()


def _keyed(name, array):
    """name[0,i,j] -> value for every element of a (1, ...) array."""
    return {f"{name}[{','.join(map(str, index))}]": array[index] for index in np.ndindex(array.shape)}


def test_worked_example_numbers_recomputed_independently_in_float64():
    """Every forward value (queries, keys, values, scores, row maxima and sums, weights,
    outputs), every gradient back through the softmax Jacobian and the projections, the update
    and the loss after it, recomputed by the plain numpy attention above."""
    t = _example()
    X, target = _given("X").reshape(1, -1), _given("T")
    Wq, Wk, Wv = (_given(name) for name in ("Wq1", "Wk1", "Wv1"))
    rate, tokens = 0.1, 4
    xs, Q, K, V, P, O = attention_forward(X, Wq, Wk, Wv, tokens)
    S = Q @ K.transpose(0, 2, 1) / np.sqrt(2)
    dO = O - target.reshape(O.shape)
    dX, dWq, dWk, dWv, dS = attention_backward(xs, Wq, Wk, Wv, Q, K, V, P, dO)
    dP = dO @ V.transpose(0, 2, 1)
    dV = P.transpose(0, 2, 1) @ dO
    dQ, dK = dS @ K / np.sqrt(2), dS.transpose(0, 2, 1) @ Q / np.sqrt(2)
    want = {**_keyed("Q1", Q), **_keyed("K1", K), **_keyed("V1", V), **_keyed("S1", S), **_keyed("P1", P),
            **_keyed("O1", O), **_keyed("S1max", S.max(axis=-1)),
            **_keyed("S1sum", np.exp(S - S.max(axis=-1, keepdims=True)).sum(axis=-1)),
            **_keyed("P1dot", np.sum(P * dP, axis=-1)), "L": 0.5 * np.sum(dO ** 2)}
    for name, grad in (("O1", dO), ("V1", dV), ("P1", dP), ("S1", dS), ("Q1", dQ), ("K1", dK)):
        want |= {f"dL/d{key}": value for key, value in _keyed(name, grad).items()}
    params, grads = {"Wq1": Wq, "Wk1": Wk, "Wv1": Wv}, {"Wq1": dWq, "Wk1": dWk, "Wv1": dWv}
    for name in params:
        want |= {f"dL/d{key}": value for key, value in _keyed(name, grads[name]).items()}
        stepped = _keyed(name, params[name] - rate * grads[name])
        want |= {key.replace("[", "_new[", 1): value for key, value in stepped.items()}
    new = {name: params[name] - rate * grads[name] for name in params}
    *_, O_new = attention_forward(X, new["Wq1"], new["Wk1"], new["Wv1"], tokens)
    want["L_new"] = 0.5 * np.sum((O_new.reshape(1, -1) - target) ** 2)
    assert want["L_new"] < want["L"]
    assert len(want) == 3 * 8 + 2 * 16 + 8 + 3 * 4 + 1 + (8 + 8 + 16 + 16 + 8 + 8) + 2 * 12 + 1  # every number
    for key, value in want.items():
        assert t.float_value(key) == pytest.approx(value, rel=1e-12, abs=1e-15), key
    # each row of the attention weights sums to 1; each row of dS sums to 0 (the Jacobian's rows do)
    for row in range(tokens):
        assert sum(t.float_value(f"P1[0,{row},{s}]") for s in range(tokens)) == pytest.approx(1, rel=1e-14)
        assert sum(t.float_value(f"dL/dS1[0,{row},{s}]") for s in range(tokens)) == pytest.approx(0, abs=1e-15)


def test_the_committed_kernel_agrees_with_central_differences_and_the_transcript(rng):
    """generated/net_attention_four_tokens.py, the example's network committed as a built-in:
    central differences (float64, rel 1e-6), and the transcript's numbers (the transcript runs
    the lowered statements in exact arithmetic, the kernel prints them) in float64."""
    assert_committed_module_is_the_worked_example("attention_four_tokens", rng)


def test_the_chinese_transcript_is_its_golden_file():
    """The notes the lowering gives each line, in Chinese (SYMPROP_UPDATE_GOLDEN=1 rewrites it)."""
    md = _example().render("md", lang="zh")
    check_golden(GOLDEN / f"{EXAMPLE}.zh.md", md)
    for term in ("前向传播", "反向传播", "查询向量", "注意力权重", "雅可比矩阵", "sqrt(2)", "序列按词元顺序读作特征"):
        assert term in md, term


# ---- the checker on the worked example: the classic mistakes, named --------------------------
def _attention_by_hand(elementwise_jacobian=False, scale=True, transposed=False):
    """The worked example's numbers by plain numpy, done right or with one classic mistake:
    the softmax Jacobian taken elementwise (dS = dP P (1 - P)), the 1/sqrt(dk) scale left out
    (of the scores, so of dQ and dK too), or the scores transposed (K Q^T; forward values only).
    key -> value."""
    X, target = _given("X").reshape(1, -1), _given("T")
    Wq, Wk, Wv = (_given(name) for name in ("Wq1", "Wk1", "Wv1"))
    xs = X.reshape(1, 4, 2)
    Q, K, V = xs @ Wq, xs @ Wk, xs @ Wv
    root = np.sqrt(2) if scale else 1.0
    S = (K @ Q.transpose(0, 2, 1) if transposed else Q @ K.transpose(0, 2, 1)) / root
    P = np.exp(S - S.max(axis=-1, keepdims=True))
    P /= P.sum(axis=-1, keepdims=True)
    O = P @ V
    dO = O - target.reshape(O.shape)
    dP = dO @ V.transpose(0, 2, 1)
    dS = dP * P * (1 - P) if elementwise_jacobian else P * (dP - np.sum(dP * P, axis=-1, keepdims=True))
    dQ, dK = dS @ K / root, dS.transpose(0, 2, 1) @ Q / root
    values = {**_keyed("S1", S), **_keyed("P1", P), **_keyed("O1", O), "L": 0.5 * np.sum(dO ** 2)}
    for name, grad in (("S1", dS), ("Q1", dQ), ("K1", dK), ("Wq1", np.einsum("ntd,nta->da", xs, dQ)),
                       ("Wk1", np.einsum("ntd,nta->da", xs, dK))):
        values |= {f"dL/d{key}": value for key, value in _keyed(name, grad).items()}
    return values


CHECKER_ROWS = [
    # (claimed key, the learner's way, the diagnosis code)
    ("S1[0,0,2]", {}, "right"),
    ("dL/dS1[0,1,0]", {}, "right"),
    ("dL/dS1[0,1,0]", {"elementwise_jacobian": True}, "softmax_jacobian_elementwise"),
    ("dL/dS1[0,2,3]", {"elementwise_jacobian": True}, "softmax_jacobian_elementwise"),
    ("dL/dQ1[0,0,1]", {"elementwise_jacobian": True}, "softmax_jacobian_elementwise"),
    ("dL/dWk1[0,1]", {"elementwise_jacobian": True}, "softmax_jacobian_elementwise"),
    ("S1[0,0,2]", {"scale": False}, "forgot_attention_scale"),
    ("P1[0,3,3]", {"scale": False}, "forgot_attention_scale"),
    ("O1[0,1,0]", {"scale": False}, "forgot_attention_scale"),
    ("dL/dQ1[0,2,1]", {"scale": False}, "forgot_attention_scale"),
    ("dL/dWq1[1,1]", {"scale": False}, "forgot_attention_scale"),
    ("S1[0,0,1]", {"transposed": True}, "attention_scores_transposed"),
    ("P1[0,1,3]", {"transposed": True}, "attention_scores_transposed"),
    ("O1[0,2,1]", {"transposed": True}, "attention_scores_transposed"),
]


@pytest.mark.parametrize("key, way, code", CHECKER_ROWS, ids=[f"{k}-{c}" for k, _, c in CHECKER_ROWS])
def test_the_checker_names_the_classic_attention_mistakes(key, way, code):
    """A learner's number, computed by hand the right way or with one classic mistake, written
    to 6 decimals: the checker names the mistake (numbers from plain numpy, not from symprop)."""
    from symprop.symbolic.checker import CODES, check, claim_from

    value = _attention_by_hand(**way)[key]
    if way:
        assert abs(value - _attention_by_hand()[key]) > 1e-4  # the mistake changes this number
    report = check(EXAMPLE, [claim_from(key, f"{value:.6f}", "claim 1")])
    assert not report.problems, report.problems
    (verdict,) = report.verdicts
    assert verdict.code == code, (key, verdict.code, [d.en for d in verdict.diagnoses])
    assert verdict.right == (CODES[code] == "right")


def test_symprop_check_says_which_mistake(capsys):
    """The command line: the elementwise Jacobian and the missing scale, named in words."""
    right = _attention_by_hand()
    elementwise = _attention_by_hand(elementwise_jacobian=True)
    assert main(["check", EXAMPLE, f"S1[0,0,2]={right['S1[0,0,2]']:.4f}",
                 f"dL/dS1[0,0,0]={right['dL/dS1[0,0,0]']:.6f}"]) == 0
    capsys.readouterr()
    assert main(["check", EXAMPLE, f"dL/dS1[0,1,0]={elementwise['dL/dS1[0,1,0]']:.6f}", "S1[0,0,2]=2"]) == 1
    out = capsys.readouterr().out
    assert "WRONG" in out and "softmax Jacobian taken as elementwise" in out and "1/sqrt(dk) scale" in out
