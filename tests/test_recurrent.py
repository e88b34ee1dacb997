"""The vanilla RNN (tanh) family: SymPy derives the textbook rules of backpropagation through
time, the fused network kernels match central differences (float64, T = 1 included) and an
independent float64 recurrence, and the worked example's transcript shows the recurrent
weight's gradient as the sum of the per-step contributions it prints."""
import re

import numpy as np
import pytest
import sympy as sp

from symprop.cli import main
from symprop.codegen.network import load_network, network_module_text
from symprop.symbolic.errors import SympropError
from symprop.symbolic.graph import parse_net
from symprop.symbolic.layers import REGISTRY, N
from symprop.symbolic.ops.recurrent import D, H, T
from tests.gradcheck import (assert_committed_module_is_the_worked_example, assert_sgd_step_is_the_gradient_step,
                             numerical_gradient, parameter_loss, relative_error)
from tests.test_examples import GOLDEN, check_golden

GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, relative


# ---- an RNN written independently: plain numpy, float64 --------------------------------------
def rnn_forward(X, Wx, Wh, b, steps):
    """The states h_0 = 0, h_1, ..., h_T of each row (N, T+1, H), X read as (N, T, D)."""
    n, (inputs, hidden) = X.shape[0], Wx.shape
    xs = X.reshape(n, steps, inputs)
    states = np.zeros((n, steps + 1, hidden))
    for t in range(1, steps + 1):
        states[:, t] = np.tanh(xs[:, t - 1] @ Wx + states[:, t - 1] @ Wh + b)
    return states


def rnn_backward(X, Wx, Wh, states, dlast, steps):
    """Backpropagation through time from dL/dh_T: (dX, dWx, dWh, db, each step's dWh term)."""
    n, (inputs, hidden) = X.shape[0], Wx.shape
    xs = X.reshape(n, steps, inputs)
    dX, dWx, db = np.zeros_like(xs), np.zeros_like(Wx), np.zeros(hidden)
    contributions = np.zeros((steps + 1, hidden, hidden))
    dh = dlast
    for t in range(steps, 0, -1):
        da = dh * (1 - states[:, t] ** 2)
        contributions[t] = states[:, t - 1].T @ da
        dWx += xs[:, t - 1].T @ da
        db += da.sum(axis=0)
        dX[:, t - 1] = da @ Wx.T
        dh = da @ Wh.T
    return dX.reshape(n, -1), dWx, contributions.sum(axis=0), db, contributions


# ---- the derivation -------------------------------------------------------------------------
def test_sympy_derives_the_textbook_rules_of_backpropagation_through_time():
    d = REGISTRY.derive("rnn")
    n, t, dd, j, k, e, m, q, u, a = sp.symbols("n t d j k e m q u a", integer=True)
    x, Wx, Wh, b, h, da, dh = (sp.IndexedBase(s) for s in ("x", "Wx", "Wh", "b", "h", "da", "dh"))
    # tanh' from the saved state, times the upstream gradient
    assert sp.simplify(d.backward["da"] - dh[n, t, j] * (1 - h[n, t, j] ** 2)) == 0
    assert any(s.title == "in terms of the saved output" and s.rhs == 1 - sp.Symbol("h", real=True) ** 2
               for s in d.steps)
    # the recurrent path: dL/dh_{u} = sum_j Wh[m, j] da_{u+1}[j]
    assert d.backward["dh"] == sp.Sum(Wh[m, j] * da[a, u + 1, j], (j, 0, H - 1))
    assert d.backward["dx"] == sp.Sum(Wx[e, j] * da[a, u, j], (j, 0, H - 1))
    # the shared weights: sums over the batch and over the steps
    assert d.backward["dWh"] == sp.Sum(h[n, t - 1, m] * da[n, t, q], (n, 0, N - 1), (t, 1, T))
    assert d.backward["dWx"] == sp.Sum(x[n, t, e] * da[n, t, q], (n, 0, N - 1), (t, 1, T))
    assert d.backward["db"] == sp.Sum(da[n, t, q], (n, 0, N - 1), (t, 1, T))
    assert d.backward["dWh_step"] == sp.Sum(h[n, t - 1, m] * da[n, t, q], (n, 0, N - 1))
    # the pre-activation's local partials
    local = {s.lhs.text: s.rhs for s in d.steps if s.title.startswith("local partial")}
    assert local["da[n,t,j]/dh[n,t-1,m]"] == Wh[m, j]
    assert local["da[n,t,j]/dWh[m,q]"] == sp.KroneckerDelta(j, q) * h[n, t - 1, m]
    assert local["da[n,t,j]/dx[n,t,e]"] == Wx[e, j]
    assert d.forward["a"].has(h[n, t - 1, k] * Wh[k, j]) and d.forward["a"].has(D)


def test_symprop_derive_shows_the_cell_and_its_local_partials(capsys):
    assert main(["derive", "rnn"]) == 0
    out = capsys.readouterr().out
    assert "h[n, t, j] = tanh(a[n, t, j])" in out
    assert "dh/da = 1 - h**2" in out
    assert "da[n,t,j]/dh[n,t-1,m] = Wh[m, j]" in out
    assert "dWh_step[t, m, q] = Sum(" in out
    assert main(["derive", "--list"]) == 0
    assert "rnn " in capsys.readouterr().out


@pytest.mark.parametrize("spec, message", [
    ("rnn(3,2) affine(2,1) mse", "rnn needs three positive sizes"),
    ("rnn(3,0,2) affine(0,1) mse", "rnn needs three positive sizes"),
    ("rnn(2,3,4) affine(2,1) mse", "takes 2 inputs but the layer before gives 3"),
    ("rnn(3,2,3,4) affine(2,1) mse", "rnn truncates the gradient to 4 steps but runs only 3"),
    ("affine(4,6) rnn(2,3,3) affine(3,1) mse", "layer 2 'rnn(2,3,3)' (column 13): takes sequences (3, 2) of 3 "
     "steps of 2 values but the layer before gives 6 features"),
])
def test_bad_rnn_specs_are_one_clear_line(spec, message):
    with pytest.raises(SympropError, match=re.escape(message)):
        parse_net(spec)


# ---- the fused kernels ----------------------------------------------------------------------
def _random_spec(rng, steps):
    inputs, hidden, classes = (int(v) for v in rng.integers(1, 4, 3))
    return f"rnn({inputs},{hidden + 1},{steps}) affine({hidden + 1},{classes + 1}) softmax-cross-entropy"


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_fused_kernel_agrees_with_central_differences(steps, rng):
    """Random sizes (T = 1: no recurrent step at all); every parameter, float64, rel 1e-6."""
    spec = _random_spec(rng, steps)
    net = load_network(spec)
    params = [rng.normal(0, 0.8, shape) for shape in net.PARAM_SHAPES]
    rows = int(rng.integers(1, 5))
    X = rng.normal(size=(rows, net.INPUT_SIZE))
    labels = np.eye(net.OUTPUT_SIZE)[rng.integers(0, net.OUTPUT_SIZE, rows)]
    loss, *grads = net.loss_and_grads(*params, X, labels)
    for k, (name, grad) in enumerate(zip(net.PARAM_NAMES, grads)):
        numeric = numerical_gradient(parameter_loss(net, params, k, X, labels), params[k])
        assert relative_error(grad, numeric) < GRADCHECK_TOLERANCE, (spec, name)


def test_fused_kernel_equals_an_independent_float64_rnn(rng):
    """Forward states and BPTT gradients against the plain numpy recurrence above."""
    steps, inputs, hidden = 4, 3, 5
    net = load_network(f"rnn({inputs},{hidden},{steps}) affine({hidden},1) squared-error")
    Wx, Wh, b, W2, b2 = (rng.normal(0, 0.6, shape) for shape in net.PARAM_SHAPES)
    X, target = rng.normal(size=(3, steps * inputs)), rng.normal(size=(3, 1))
    before = X.copy(), Wh.copy()
    loss, dWx, dWh, db, dW2, db2 = net.loss_and_grads(Wx, Wh, b, W2, b2, X, target)
    np.testing.assert_array_equal(X, before[0])  # backward never writes its inputs
    np.testing.assert_array_equal(Wh, before[1])
    states = rnn_forward(X, Wx, Wh, b, steps)
    scores = states[:, -1] @ W2 + b2
    assert loss == pytest.approx(0.5 * np.sum((scores - target) ** 2), rel=1e-12)
    _, want_dWx, want_dWh, want_db, _ = rnn_backward(X, Wx, Wh, states, (scores - target) @ W2.T, steps)
    for got, want in ((dWx, want_dWx), (dWh, want_dWh), (db, want_db)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_a_tiny_rnn_keeps_the_matrix_step_and_its_sgd_step_is_the_gradient_step(rng):
    """The scalar-step pass has no scalar form for the time loop: the network keeps the matrix
    step, and one SGD step moves each parameter by -lr times its gradient."""
    spec = "rnn(1,2,3) affine(2,1) squared-error"
    assert "\nSCALAR_STEP = False" in network_module_text(parse_net(spec))
    net = load_network(spec)
    params = [rng.normal(0, 0.7, shape) for shape in net.PARAM_SHAPES]
    X, target = rng.normal(size=(2, 3)), rng.normal(size=(2, 1))
    assert_sgd_step_is_the_gradient_step(net, params, X, target)


# ---- the worked example (symbolic/nets/rnn-three-steps.toml) --------------------------------
EXAMPLE = "rnn-three-steps"


def _given(name):
    """A value of the example's [values] table as float64, from the file's own numbers."""
    from fractions import Fraction
    from symprop.symbolic.examples import NET_FILES

    return np.vectorize(lambda v: float(Fraction(str(v))))(np.array(NET_FILES[EXAMPLE].values[name], dtype=object))


def _example():
    from symprop.symbolic.examples import EXAMPLES

    return EXAMPLES[EXAMPLE].build()


def test_worked_example_numbers_recomputed_independently_in_float64():
    """Every forward value, every gradient back through time, each step's dWh term, the update
    and the loss after it, recomputed by the plain numpy RNN above."""
    t = _example()
    X, target = _given("X").reshape(1, -1), _given("T")
    Wx, Wh, b, W2, b2 = (_given(name) for name in ("Wx1", "Wh1", "b1", "W2", "b2"))
    rate, steps, hidden = 0.1, 3, 2
    states = rnn_forward(X, Wx, Wh, b, steps)
    scores = states[:, -1] @ W2 + b2
    dz = scores - target
    dX, dWx, dWh, db, contributions = rnn_backward(X, Wx, Wh, states, dz @ W2.T, steps)
    close = lambda key, want: pytest.approx(want, rel=1e-12, abs=1e-15) == t.float_value(key)  # noqa: E731
    for s in range(steps + 1):
        for j in range(hidden):
            assert close(f"hs1[0,{s},{j}]", states[0, s, j]), (s, j)
    assert close("L", 0.5 * np.sum(dz ** 2))
    # back through time: dL/dh_t from the readout at t = 3, through Wh before it
    dh = dz @ W2.T
    for s in range(steps, 0, -1):
        da = dh * (1 - states[:, s] ** 2)
        for j in range(hidden):
            assert close(f"dL/dhs1[0,{s},{j}]", dh[0, j]) and close(f"dL/da1[0,{s},{j}]", da[0, j]), (s, j)
            assert close(f"dhs1[0,{s},{j}]/da1[0,{s},{j}]", 1 - states[0, s, j] ** 2)
        dh = da @ Wh.T
    for s in range(1, steps + 1):
        for k in range(hidden):
            for j in range(hidden):
                assert close(f"dWh1_step[{s},{k},{j}]", contributions[s, k, j]), (s, k, j)
    grads = {"Wx1": dWx, "Wh1": dWh, "b1": db, "W2": states[:, -1].T @ dz, "b2": dz.sum(axis=0)}
    params = {"Wx1": Wx, "Wh1": Wh, "b1": b, "W2": W2, "b2": b2}
    for name, grad in grads.items():
        for index in np.ndindex(grad.shape):
            key = f"{name}[{','.join(map(str, index))}]"
            assert close(f"dL/d{key}", grad[index]), key
            assert close(f"{name}_new[{','.join(map(str, index))}]", params[name][index] - rate * grad[index]), key
    new = {name: params[name] - rate * grads[name] for name in params}
    states_new = rnn_forward(X, new["Wx1"], new["Wh1"], new["b1"], steps)
    loss_new = 0.5 * np.sum((states_new[:, -1] @ new["W2"] + new["b2"] - target) ** 2)
    assert close("L_new", loss_new) and loss_new < t.float_value("L")


def test_the_recurrent_weights_gradient_is_the_sum_of_the_printed_step_contributions():
    """In the transcript as printed (JSON, 40 digits): dL/dWh1[k,j] is written as the sum of
    the three steps' contributions dWh1_step[t,k,j], and its value is their sum; step 1's
    contribution is 0 (h_0 = 0), the others are not."""
    import json
    from decimal import Decimal, localcontext

    quantities = json.loads(_example().render("json"))["quantities"]
    for k in range(2):
        for j in range(2):
            terms = [f"dWh1_step[{s},{k},{j}]" for s in (1, 2, 3)]
            total = quantities[f"dL/dWh1[{k},{j}]"]
            assert total["formula"] == " + ".join(terms)
            printed = [Decimal(quantities[term]["value"]) for term in terms]
            assert printed[0] == 0 and all(p != 0 for p in printed[1:])
            with localcontext() as exact:
                exact.prec = 60  # the 40 printed digits add without rounding
                assert abs(sum(printed) - Decimal(total["value"])) < Decimal("1e-38")


def test_the_committed_kernel_agrees_with_central_differences_and_the_transcript(rng):
    """generated/net_rnn_three_steps.py, the example's network committed as a built-in: central
    differences (float64, rel 1e-6), and the transcript's numbers (the transcript runs the
    lowered statements in exact arithmetic, the kernel prints them) in float64."""
    assert_committed_module_is_the_worked_example("rnn_three_steps", rng)


def test_a_layer_alone_carries_the_gradient_to_its_input_sequence():
    """rnn alone with a given upstream gradient dout: the transcript's dL/dX (the lowering's
    input-gradient statements) equals the numpy recurrence's, element by element."""
    from symprop.symbolic.graph_transcript import graph_transcript

    values = {"X": [[[1, -1], [0.5, 2]]], "dout": [[1, -2]], "Wx1": [[0.5, -1], [0.25, 0.5]],
              "Wh1": [[0.25, 0.5], [-0.5, 1]], "b1": [0, 0.25]}
    t = graph_transcript(parse_net("rnn(2,2,2)", loss_optional=True), values)
    X = np.array(values["X"], float).reshape(1, -1)
    Wx, Wh, b = (np.array(values[k], float) for k in ("Wx1", "Wh1", "b1"))
    states = rnn_forward(X, Wx, Wh, b, 2)
    dX, dWx, dWh, db, _ = rnn_backward(X, Wx, Wh, states, np.array(values["dout"], float), 2)
    for s in range(2):
        for e in range(2):
            assert t.float_value(f"dL/dX[0,{s},{e}]") == pytest.approx(dX[0, 2 * s + e], rel=1e-12), (s, e)
    assert t.float_value("dL/dWh1[1,0]") == pytest.approx(dWh[1, 0], rel=1e-12)


def test_the_chinese_transcript_is_its_golden_file():
    """The notes the lowering gives each line, in Chinese (SYMPROP_UPDATE_GOLDEN=1 rewrites it)."""
    md = _example().render("md", lang="zh")
    check_golden(GOLDEN / f"{EXAMPLE}.zh.md", md)
    for term in ("前向传播", "反向传播", "初始状态 h_0 = 0", "沿时间反向", "循环路径", "各步贡献之和", "链式法则"):
        assert term in md, term


def test_the_checker_names_the_last_steps_contribution_claimed_as_the_whole_gradient(capsys):
    """Forgetting the sum over time: a learner who gives only step 3's term for dL/dWh1[0,0]
    is told the number is that step's contribution; the right sum is right."""
    assert main(["check", EXAMPLE, "dL/dWh1[0,0]=-0.7885", "hs1[0,2,1]=-0.5744"]) == 0
    capsys.readouterr()
    assert main(["check", EXAMPLE, "dL/dWh1[0,0]=-0.7767"]) == 1
    out = capsys.readouterr().out
    assert "WRONG" in out and "dWh1_step[3,0,0]" in out


def test_a_large_batch_sums_each_steps_contribution_over_every_row(rng):
    """More than 20 rows: the first rows are written out, the sums over the batch are float64.
    Each step's contribution to dL/dWh1 is such a sum, so the printed contributions still add
    up to the printed gradient, which equals the kernel's over all the rows."""
    from symprop.symbolic.graph_transcript import graph_transcript

    spec, rows = "rnn(1,2,3) affine(2,1) squared-error", 25
    values = {"X": rng.integers(-2, 3, size=(rows, 3, 1)).tolist(), "T": rng.integers(-1, 2, size=(rows, 1)).tolist(),
              "Wx1": [[0.5, -1]], "Wh1": [[0.25, 0.5], [-0.5, 1]], "b1": [0, 0.25], "W2": [[1], [-1]], "b2": [0]}
    t = graph_transcript(parse_net(spec), values)
    net = load_network(spec)
    params = [np.array(values[name], float) for name in net.PARAM_NAMES]
    X, target = np.array(values["X"], float).reshape(rows, 3), np.array(values["T"], float)
    _, _, dWh, *_ = net.loss_and_grads(*params, X, target)
    states = rnn_forward(X, *params[:3], 3)
    dz = states[:, -1] @ params[3] + params[4] - target
    *_, contributions = rnn_backward(X, params[0], params[1], states, dz @ params[3].T, 3)
    for k in range(2):
        for j in range(2):
            steps = [t.value(f"dWh1_step[{s},{k},{j}]") for s in (1, 2, 3)]
            assert t.value(f"dL/dWh1[{k},{j}]") == sum(steps)
            assert float(t.value(f"dL/dWh1[{k},{j}]")) == pytest.approx(dWh[k, j], rel=1e-12)
            for s in (1, 2, 3):
                assert float(steps[s - 1]) == pytest.approx(contributions[s, k, j], rel=1e-12, abs=1e-15)
