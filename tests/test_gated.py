"""The gated recurrent families (LSTM, GRU): SymPy derives the textbook gate derivatives and the
rules of backpropagation through time, the fused network kernels match central differences
(float64, T = 1 included) and independent float64 LSTM and GRU written here."""
import inspect
import re

import numpy as np
import pytest
import sympy as sp

from symprop.cli import main
from symprop.codegen.network import load_network
from symprop.symbolic.errors import SympropError
from symprop.symbolic.graph import parse_net
from symprop.symbolic.layers import REGISTRY
from symprop.symbolic.ops.gated import H
from tests.gradcheck import (assert_committed_module_is_the_worked_example, assert_sgd_step_is_the_gradient_step,
                             numerical_gradient, parameter_loss, relative_error)
from tests.test_examples import GOLDEN, check_golden

GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, relative


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


# ---- an LSTM written independently: plain numpy, float64, PyTorch's gate order i, f, g, o -----
def lstm_forward(X, Wx, Wh, b, steps):
    """Every step's gates, cells and states of each row: a dict of (N, T+1, H) arrays, [:, 0] the
    initial h_0 = c_0 = 0 (the gates' [:, 0] unused)."""
    n, (inputs, four) = X.shape[0], Wx.shape
    hidden = four // 4
    xs = X.reshape(n, steps, inputs)
    out = {key: np.zeros((n, steps + 1, hidden)) for key in ("i", "f", "g", "o", "c", "h")}
    for t in range(1, steps + 1):
        a = xs[:, t - 1] @ Wx + out["h"][:, t - 1] @ Wh + b
        i, f, g, o = (a[:, k * hidden:(k + 1) * hidden] for k in range(4))
        out["i"][:, t], out["f"][:, t], out["g"][:, t], out["o"][:, t] = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
        out["c"][:, t] = out["f"][:, t] * out["c"][:, t - 1] + out["i"][:, t] * out["g"][:, t]
        out["h"][:, t] = out["o"][:, t] * np.tanh(out["c"][:, t])
    return out


def lstm_backward(X, Wx, Wh, s, dlast, steps):
    """Backpropagation through time from dL/dh_T: dX, dWx, dWh, db, each step's dWh term, and
    each step's dL/dh and dL/dc (dicts by step)."""
    n, (inputs, four) = X.shape[0], Wx.shape
    xs = X.reshape(n, steps, inputs)
    dX, dWx, db = np.zeros_like(xs), np.zeros_like(Wx), np.zeros(four)
    contributions = np.zeros((steps + 1,) + Wh.shape)
    dh, dc_next, seen = dlast, 0.0, {"dh": {}, "dc": {}}
    for t in range(steps, 0, -1):
        tc = np.tanh(s["c"][:, t])
        dc = dh * s["o"][:, t] * (1 - tc ** 2) + (dc_next * s["f"][:, t + 1] if t < steps else 0)
        seen["dh"][t], seen["dc"][t] = dh, dc
        i, f, g, o = (s[key][:, t] for key in "ifgo")
        da = np.concatenate([dc * g * i * (1 - i), dc * s["c"][:, t - 1] * f * (1 - f), dc * i * (1 - g ** 2),
                             dh * tc * o * (1 - o)], axis=1)
        contributions[t] = s["h"][:, t - 1].T @ da
        dWx += xs[:, t - 1].T @ da
        db += da.sum(axis=0)
        dX[:, t - 1] = da @ Wx.T
        dh, dc_next = da @ Wh.T, dc
    return dX.reshape(n, -1), dWx, contributions.sum(axis=0), db, contributions, seen


# ---- the derivation -------------------------------------------------------------------------
def test_sympy_derives_the_textbook_lstm_gate_derivatives_and_bptt_rules():
    d = REGISTRY.derive("lstm")
    n, t, j, m, q, u, p, e = sp.symbols("n t j m q u p e", integer=True)
    A, c, tc, h, dc, dh, da = (sp.IndexedBase(s) for s in ("a", "c", "tc", "h", "dc", "dh", "da"))
    i, f, g, o, di, df, dg, do = (sp.IndexedBase(s) for s in ("i", "f", "g", "o", "di", "df", "dg", "do"))
    y = sp.Symbol("y", real=True)
    # each gate's forward formula: sigmoid or tanh of its block of the stacked pre-activations
    steps = {s.title: s for s in d.steps}
    raw = lambda z: 1 / (1 + sp.exp(-z))  # noqa: E731
    assert steps["forward, input gate"].rhs == raw(A[n, t, j])
    assert steps["forward, forget gate"].rhs == raw(A[n, t, H + j])
    assert steps["forward, candidate"].rhs == sp.tanh(A[n, t, 2 * H + j])
    assert steps["forward, output gate"].rhs == raw(A[n, t, 3 * H + j])
    assert steps["forward, the cell"].rhs == f[n, t, j] * c[n, t - 1, j] + i[n, t, j] * g[n, t, j]
    assert steps["forward, the state"].rhs == o[n, t, j] * sp.tanh(c[n, t, j])
    # the local derivatives from the saved outputs: sigmoid' = y(1 - y), tanh' = 1 - y^2
    saved = [s.rhs for s in d.steps if s.title == "in terms of the saved output"]
    assert [sp.expand(r) for r in saved] == [sp.expand(y * (1 - y))] * 2 + [1 - y ** 2] + [sp.expand(y * (1 - y))]
    assert sp.simplify(d.backward["da_i"] - di[n, t, j] * i[n, t, j] * (1 - i[n, t, j])) == 0
    assert sp.simplify(d.backward["da_g"] - dg[n, t, j] * (1 - g[n, t, j] ** 2)) == 0
    # the cell's and the state's local partials
    local = {s.lhs.text: s.rhs for s in d.steps if s.title.startswith("local partial")}
    assert local["dc/df"] == c[n, t - 1, j] and local["dc/di"] == g[n, t, j] and local["dc/dg"] == i[n, t, j]
    assert local["dc[n,t,j]/dc[n,t-1,j]"] == f[n, t, j] and local["dh/do"] == sp.tanh(c[n, t, j])
    # back through time: the cell's two paths, the gates' gradients, the hidden path
    assert sp.expand(d.backward["dc"] - (dh[p, u, m] * o[p, u, m] * (1 - tc[p, u, m] ** 2)
                                         + dc[p, u + 1, m] * f[p, u + 1, m])) == 0
    assert d.backward["df"] == dc[p, u, m] * c[p, u - 1, m] and d.backward["do"] == dh[p, u, m] * tc[p, u, m]
    assert d.backward["di"] == dc[p, u, m] * g[p, u, m] and d.backward["dg"] == dc[p, u, m] * i[p, u, m]
    w = sp.Symbol("w", integer=True)
    Wh, Wx, x = sp.IndexedBase("Wh"), sp.IndexedBase("Wx"), sp.IndexedBase("x")
    assert d.backward["dh_prev"] == sp.Sum(Wh[m, w] * da[p, u + 1, w], (w, 0, 4 * H - 1))
    N, T = sp.Symbol("N", integer=True, positive=True), sp.Symbol("T", integer=True, positive=True)
    assert d.backward["dWh"] == sp.Sum(h[n, t - 1, m] * da[n, t, q], (n, 0, N - 1), (t, 1, T))
    assert d.backward["dWx"] == sp.Sum(x[n, t, e] * da[n, t, q], (n, 0, N - 1), (t, 1, T))


def test_symprop_derive_lstm_shows_each_gate_and_its_local_partials(capsys):
    assert main(["derive", "lstm"]) == 0
    out = capsys.readouterr().out
    for line in ("i[n, t, j] = 1/(1 + exp(-a[n, t, j]))", "f[n, t, j] = 1/(1 + exp(-a[n, t, H + j]))",
                 "g[n, t, j] = tanh(a[n, t, 2*H + j])", "o[n, t, j] = 1/(1 + exp(-a[n, t, 3*H + j]))",
                 "di/da = y*(1 - y)", "dg/da = 1 - y**2", "dc/df = c[n, t - 1, j]",
                 "dc[p, u, m] = (1 - tc[p, u, m]**2)*dh[p, u, m]*o[p, u, m] + dc[p, u + 1, m]*f[p, u + 1, m]"):
        assert line in out, line
    assert main(["derive", "--list"]) == 0
    assert "lstm " in capsys.readouterr().out


@pytest.mark.parametrize("spec, message", [
    ("lstm(3,2) affine(2,1) mse", "lstm needs three positive sizes"),
    ("lstm(2,3,4) affine(2,1) mse", "takes 2 inputs but the layer before gives 3"),
])
def test_bad_lstm_specs_are_one_clear_line(spec, message):
    with pytest.raises(SympropError, match=re.escape(message)):
        parse_net(spec)


# ---- the fused kernels ----------------------------------------------------------------------
def _check_central_differences(spec, rng, rows):
    net = load_network(spec)
    params = [rng.normal(0, 0.8, shape) for shape in net.PARAM_SHAPES]
    X = rng.normal(size=(rows, net.INPUT_SIZE))
    labels = np.eye(net.OUTPUT_SIZE)[rng.integers(0, net.OUTPUT_SIZE, rows)]
    loss, *grads = net.loss_and_grads(*params, X, labels)
    for k, (name, grad) in enumerate(zip(net.PARAM_NAMES, grads)):
        numeric = numerical_gradient(parameter_loss(net, params, k, X, labels), params[k])
        assert relative_error(grad, numeric) < GRADCHECK_TOLERANCE, (spec, name)


BRIEF_SPEC = "lstm(2,3,4) affine(3,2) softmax-cross-entropy"


def _check_one_loop_per_statement(net, hidden):
    """At a width of 16 or more the kernel computes each of a step's elementwise lines in a loop
    of its own (codegen/statements.one_loop_per_statement), the new state's line among them; below
    that, in one loop. The comparisons after this check the kernel either way."""
    lines = [line.strip() for line in inspect.getsource(net.loss_and_grads_into.py_func).splitlines()]
    state = next(i for i, line in enumerate(lines) if line.startswith("hs1[n, t, j] = "))
    assert (lines[state - 1] == f"for j in range({hidden}):") == (hidden >= 16)


def test_an_lstm_classifier_kernel_agrees_with_central_differences(rng):
    _check_central_differences(BRIEF_SPEC, rng, rows=3)


def test_lstm_kernels_of_random_sizes_agree_with_central_differences(rng):
    """Random sizes, one step (T = 1: no recurrent step, no cell state's path); every parameter.
    Several steps, at sizes above 1, are checked the same way by the classifier above (T = 4)
    and the word table's test below (T = 3): a third network of 5 s of compiling checked nothing more."""
    inputs, hidden, classes = (int(v) for v in rng.integers(1, 4, 3))
    _check_central_differences(f"lstm({inputs},{hidden},1) affine({hidden},{classes + 1}) "
                               "softmax-cross-entropy", rng, rows=int(rng.integers(1, 4)))


@pytest.mark.parametrize("spec", ["embedding(6,2,3) lstm(2,3,3) affine(3,2) softmax-cross-entropy",
                                  "embedding(5,2,2) gru(2,2,2) affine(2,3) softmax-cross-entropy"])
def test_a_word_table_before_a_gated_layer_gets_its_gradient_through_the_sequence(spec, rng):
    """A layer before the gated one (an embedding): the kernel carries dL/dX of the sequence
    back through Wx, checked on the table's gradient by central differences."""
    net = load_network(spec)
    params = [rng.normal(0, 0.7, shape) for shape in net.PARAM_SHAPES]
    X = rng.integers(0, net.PARAM_SHAPES[0][0], size=(4, net.INPUT_SIZE)).astype(np.float64)
    labels = np.eye(net.OUTPUT_SIZE)[rng.integers(0, net.OUTPUT_SIZE, 4)]
    loss, *grads = net.loss_and_grads(*params, X, labels)
    for k, (name, grad) in enumerate(zip(net.PARAM_NAMES, grads)):
        numeric = numerical_gradient(parameter_loss(net, params, k, X, labels), params[k])
        assert relative_error(grad, numeric) < GRADCHECK_TOLERANCE, (spec, name)
    assert np.abs(grads[0]).max() > 0  # the table's gradient is not trivially zero


# hidden 16: wide enough that the kernel writes the step's elementwise lines one loop each
# (codegen/statements.one_loop_per_statement); hidden 3 keeps them in one loop
@pytest.mark.parametrize("hidden", [3, 16])
def test_the_lstm_kernel_equals_an_independent_float64_lstm(rng, hidden):
    """Forward and BPTT gradients against the numpy LSTM above; backward never writes its inputs."""
    steps, inputs = 3, 2
    net = load_network(f"lstm({inputs},{hidden},{steps}) affine({hidden},1) squared-error")
    _check_one_loop_per_statement(net, hidden)
    Wx, Wh, b, W2, b2 = (rng.normal(0, 0.6, shape) for shape in net.PARAM_SHAPES)
    X, target = rng.normal(size=(2, steps * inputs)), rng.normal(size=(2, 1))
    before = X.copy(), Wh.copy()
    loss, dWx, dWh, db, dW2, db2 = net.loss_and_grads(Wx, Wh, b, W2, b2, X, target)
    np.testing.assert_array_equal(X, before[0])
    np.testing.assert_array_equal(Wh, before[1])
    s = lstm_forward(X, Wx, Wh, b, steps)
    scores = s["h"][:, -1] @ W2 + b2
    assert loss == pytest.approx(0.5 * np.sum((scores - target) ** 2), rel=1e-12)
    _, want_dWx, want_dWh, want_db, _, _ = lstm_backward(X, Wx, Wh, s, (scores - target) @ W2.T, steps)
    for got, want in ((dWx, want_dWx), (dWh, want_dWh), (db, want_db), (dW2, s["h"][:, -1].T @ (scores - target))):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-14)


def test_an_lstm_alone_carries_the_gradient_to_its_input_sequence():
    """lstm alone with a given upstream gradient dout: the transcript's dL/dX (the lowering's
    input-gradient statements, run in exact arithmetic) equals the numpy LSTM's."""
    from symprop.symbolic.graph_transcript import graph_transcript

    values = {"X": [[[1, -1], [0.5, 2]]], "dout": [[1, -2]],
              "Wx1": [[0.5, -1, 0.25, 0.5, -0.5, 1, 0.75, -0.25], [0.25, 0.5, -1, 0, 0.5, -0.5, 1, 0.25]],
              "Wh1": [[0.25, 0.5, -0.5, 1, 0, 0.5, -0.25, 0.75], [-0.5, 1, 0.25, -0.25, 0.5, 0, 1, -1]],
              "b1": [0, 0.25, 0.5, -0.25, 0, 0.5, -0.5, 0.25]}
    t = graph_transcript(parse_net("lstm(2,2,2)", loss_optional=True), values)
    X = np.array(values["X"], float).reshape(1, -1)
    Wx, Wh, b = (np.array(values[k], float) for k in ("Wx1", "Wh1", "b1"))
    s = lstm_forward(X, Wx, Wh, b, 2)
    dX, dWx, dWh, db, _, _ = lstm_backward(X, Wx, Wh, s, np.array(values["dout"], float), 2)
    for step in range(2):
        for e in range(2):
            assert t.float_value(f"dL/dX[0,{step},{e}]") == pytest.approx(dX[0, 2 * step + e], rel=1e-12), (step, e)
    for index in np.ndindex(dWh.shape):
        assert t.float_value(f"dL/dWh1[{index[0]},{index[1]}]") == pytest.approx(dWh[index], rel=1e-12, abs=1e-15)


def test_an_lstm_network_stays_finite_at_inputs_of_1e4(rng):
    """Pre-activations of magnitude 1e4 saturate every gate (exp(1e4) overflows float64): the
    stable sigmoid and tanh keep the loss and the gradients finite."""
    net = load_network(BRIEF_SPEC)  # compiled once for this test and the gradient check above
    params = [rng.normal(0, 1, shape) for shape in net.PARAM_SHAPES]
    X = np.sign(rng.normal(size=(3, net.INPUT_SIZE))) * 1e4
    loss, *grads = net.loss_and_grads(*params, X, np.eye(2)[[0, 1, 0]])
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads)


# ---- the worked example (symbolic/nets/lstm-two-steps.toml) ---------------------------------
EXAMPLE = "lstm-two-steps"


def _given(name, example=EXAMPLE):
    """A value of the example's [values] table as float64, from the file's own numbers."""
    from fractions import Fraction
    from symprop.symbolic.examples import NET_FILES

    return np.vectorize(lambda v: float(Fraction(str(v))))(np.array(NET_FILES[example].values[name], dtype=object))


def _example():
    from symprop.symbolic.examples import EXAMPLES

    return EXAMPLES[EXAMPLE].build()


def test_the_lstm_worked_example_recomputed_independently_in_float64():
    """Every gate, cell and state of both steps, every gradient back through time (both paths
    into the cell), each step's dWh term, the update and the loss after it, by the numpy LSTM."""
    t = _example()
    X, target = _given("X").reshape(1, -1), _given("T")
    Wx, Wh, b, W2, b2 = (_given(name) for name in ("Wx1", "Wh1", "b1", "W2", "b2"))
    rate, steps = 0.1, 2
    s = lstm_forward(X, Wx, Wh, b, steps)
    scores = s["h"][:, -1] @ W2 + b2
    dz = scores - target
    dX, dWx, dWh, db, contributions, seen = lstm_backward(X, Wx, Wh, s, dz @ W2.T, steps)
    close = lambda key, want: pytest.approx(want, rel=1e-12, abs=1e-15) == t.float_value(key)  # noqa: E731
    names = {"i": "i1", "f": "f1", "g": "g1", "o": "o1", "c": "cs1", "h": "hs1"}
    for step in range(1, steps + 1):
        for key, name in names.items():
            assert close(f"{name}[0,{step},0]", s[key][0, step, 0]), (name, step)
        assert close(f"tc1[0,{step},0]", np.tanh(s["c"][0, step, 0]))
        assert close(f"dL/dhs1[0,{step},0]", seen["dh"][step][0, 0]) and close(f"dL/dcs1[0,{step},0]", seen["dc"][step][0, 0])
    assert close("L", 0.5 * np.sum(dz ** 2))
    # the cell state's path: dL/dc_1 is the part through h_1 plus dL/dc_2 times f_2
    through_h1 = seen["dh"][1][0, 0] * s["o"][0, 1, 0] * (1 - np.tanh(s["c"][0, 1, 0]) ** 2)
    assert close("dL/dcs1[0,1,0]", through_h1 + seen["dc"][2][0, 0] * s["f"][0, 2, 0])
    for step in (1, 2):
        for q in range(4):
            assert close(f"dWh1_step[{step},0,{q}]", contributions[step, 0, q]), (step, q)
    grads = {"Wx1": dWx, "Wh1": dWh, "b1": db, "W2": s["h"][:, -1].T @ dz, "b2": dz.sum(axis=0)}
    params = {"Wx1": Wx, "Wh1": Wh, "b1": b, "W2": W2, "b2": b2}
    for name, grad in grads.items():
        for index in np.ndindex(grad.shape):
            key = ",".join(map(str, index))
            assert close(f"dL/d{name}[{key}]", grad[index]), (name, key)
            assert close(f"{name}_new[{key}]", params[name][index] - rate * grad[index]), (name, key)
    new = {name: params[name] - rate * grads[name] for name in params}
    s_new = lstm_forward(X, new["Wx1"], new["Wh1"], new["b1"], steps)
    loss_new = 0.5 * np.sum((s_new["h"][:, -1] @ new["W2"] + new["b2"] - target) ** 2)
    assert close("L_new", loss_new) and loss_new < t.float_value("L")


def test_the_lstm_recurrent_weights_gradient_is_the_sum_of_the_printed_step_contributions():
    """In the transcript as printed (JSON, 40 digits): dL/dWh1[0,q] is written as the sum of
    the two steps' contributions dWh1_step[t,0,q], and its value is their sum; step 1's is 0
    (h_0 = 0), step 2's is not."""
    import json
    from decimal import Decimal, localcontext

    quantities = json.loads(_example().render("json"))["quantities"]
    for q in range(4):
        terms = [f"dWh1_step[{s},0,{q}]" for s in (1, 2)]
        total = quantities[f"dL/dWh1[0,{q}]"]
        assert total["formula"] == " + ".join(terms)
        printed = [Decimal(quantities[term]["value"]) for term in terms]
        assert printed[0] == 0 and printed[1] != 0
        with localcontext() as exact:
            exact.prec = 60
            assert abs(sum(printed) - Decimal(total["value"])) < Decimal("1e-38")


def test_the_committed_lstm_kernel_agrees_with_central_differences_and_the_transcript(rng):
    """generated/net_lstm_two_steps.py, the example's network committed as a built-in: central
    differences (float64, rel 1e-6) and the transcript's exact numbers in float64."""
    assert_committed_module_is_the_worked_example("lstm_two_steps", rng)


def test_one_sgd_step_of_the_example_network_moves_each_parameter_by_its_gradient():
    """The example's tiny network keeps the matrix step (no scalar form for the time loop), and
    its fused SGD step is the gradient step, as for the other recurrent family."""
    from symprop.codegen.network import network_module_text

    spec = "lstm(1,1,2) affine(1,1) squared-error"
    assert "\nSCALAR_STEP = False" in network_module_text(parse_net(spec))
    net = load_network(spec)
    params = [_given(name).reshape(shape) for name, shape in zip(net.PARAM_NAMES, net.PARAM_SHAPES)]
    X, target = _given("X").reshape(1, -1), _given("T")
    assert_sgd_step_is_the_gradient_step(net, params, X, target)


def test_the_lstm_chinese_transcript_is_its_golden_file():
    """The notes the lowering gives each line, in Chinese (SYMPROP_UPDATE_GOLDEN=1 rewrites it)."""
    md = _example().render("md", lang="zh")
    check_golden(GOLDEN / f"{EXAMPLE}.zh.md", md)
    for term in ("前向传播", "反向传播", "初始细胞状态 c_0 = 0", "遗忘门", "细胞状态路径", "各步贡献之和", "链式法则"):
        assert term in md, term


# ---- the GRU (PyTorch's convention) ---------------------------------------------------------
def gru_forward(X, Wx, Wh, bx, bh, steps):
    """Every step's gates r, z, candidate n, the state's part of the pre-activations ah and the
    states h of each row: a dict of (N, T+1, ...) arrays, h[:, 0] = h_0 = 0."""
    n, (inputs, three) = X.shape[0], Wx.shape
    hidden = three // 3
    xs = X.reshape(n, steps, inputs)
    out = {key: np.zeros((n, steps + 1, hidden)) for key in ("r", "z", "n", "h")}
    out["ah"] = np.zeros((n, steps + 1, three))
    for t in range(1, steps + 1):
        ax, ah = xs[:, t - 1] @ Wx + bx, out["h"][:, t - 1] @ Wh + bh
        out["ah"][:, t] = ah
        r = sigmoid(ax[:, :hidden] + ah[:, :hidden])
        z = sigmoid(ax[:, hidden:2 * hidden] + ah[:, hidden:2 * hidden])
        cand = np.tanh(ax[:, 2 * hidden:] + r * ah[:, 2 * hidden:])
        out["r"][:, t], out["z"][:, t], out["n"][:, t] = r, z, cand
        out["h"][:, t] = (1 - z) * cand + z * out["h"][:, t - 1]
    return out


def gru_backward(X, Wx, Wh, s, dlast, steps):
    """Backpropagation through time from dL/dh_T: dX, dWx, dWh, dbx, dbh, each step's dWh term."""
    n, (inputs, three) = X.shape[0], Wx.shape
    hidden = three // 3
    xs = X.reshape(n, steps, inputs)
    dX, dWx, dbx, dbh = np.zeros_like(xs), np.zeros_like(Wx), np.zeros(three), np.zeros(three)
    contributions = np.zeros((steps + 1,) + Wh.shape)
    dh = dlast
    for t in range(steps, 0, -1):
        r, z, cand, h_prev = s["r"][:, t], s["z"][:, t], s["n"][:, t], s["h"][:, t - 1]
        dan = dh * (1 - z) * (1 - cand ** 2)
        dar = dan * s["ah"][:, t, 2 * hidden:] * r * (1 - r)
        daz = dh * (h_prev - cand) * z * (1 - z)
        dax = np.concatenate([dar, daz, dan], axis=1)
        dah = np.concatenate([dar, daz, dan * r], axis=1)
        contributions[t] = h_prev.T @ dah
        dWx += xs[:, t - 1].T @ dax
        dbx += dax.sum(axis=0)
        dbh += dah.sum(axis=0)
        dX[:, t - 1] = dax @ Wx.T
        dh = dh * z + dah @ Wh.T
    return dX.reshape(n, -1), dWx, contributions.sum(axis=0), dbx, dbh, contributions


def test_sympy_derives_the_gru_gates_and_its_two_paths_back_through_time():
    d = REGISTRY.derive("gru")
    n, t, j, m, u, p = sp.symbols("n t j m u p", integer=True)
    ax, ah, h, dh, dax, dah = (sp.IndexedBase(s) for s in ("ax", "ah", "h", "dh", "dax", "dah"))
    r, z, hc, dr, dz, dhc = (sp.IndexedBase(s) for s in ("r", "z", "hc", "dr", "dz", "dhc"))
    y = sp.Symbol("y", real=True)
    steps = {s.title: s for s in d.steps}
    assert steps["forward, reset gate"].rhs == 1 / (1 + sp.exp(-(ax[n, t, j] + ah[n, t, j])))
    assert steps["forward, the candidate"].rhs == sp.tanh(ax[n, t, 2 * H + j] + r[n, t, j] * ah[n, t, 2 * H + j])
    assert steps["forward, the state"].rhs == (1 - z[n, t, j]) * hc[n, t, j] + z[n, t, j] * h[n, t - 1, j]
    saved = [s.rhs for s in d.steps if s.title == "in terms of the saved output"]
    assert [sp.expand(v) for v in saved] == [sp.expand(y * (1 - y))] * 2 + [1 - y ** 2]
    assert sp.expand(d.backward["dz"] - dh[p, u, m] * (h[p, u - 1, m] - hc[p, u, m])) == 0
    assert sp.expand(d.backward["dhc"] - dh[p, u, m] * (1 - z[p, u, m])) == 0
    assert d.backward["dr"] == dax[p, u, 2 * H + m] * ah[p, u, 2 * H + m]
    assert d.backward["dah_n"] == dax[p, u, 2 * H + m] * r[p, u, m]
    w, Wh = sp.Symbol("w", integer=True), sp.IndexedBase("Wh")
    assert d.backward["dh_prev"] == dh[p, u + 1, m] * z[p, u + 1, m] + sp.Sum(Wh[m, w] * dah[p, u + 1, w],
                                                                             (w, 0, 3 * H - 1))


def test_symprop_derive_gru_shows_its_gates_and_local_partials(capsys):
    assert main(["derive", "gru"]) == 0
    out = capsys.readouterr().out
    for line in ("r[n, t, j] = 1/(exp(-ah[n, t, j] - ax[n, t, j]) + 1)", "dr/da = y*(1 - y)", "dn/da = 1 - y**2",
                 "dh/dz[n, t, j] = h[n, t - 1, j] - hc[n, t, j]", "PyTorch's convention"):
        assert line in out, line


def test_gru_kernels_of_random_sizes_agree_with_central_differences(rng):
    """Random sizes, one step (T = 1: no recurrent step); every parameter. Several steps: every
    parameter by central differences in the word table's test (T = 2) and the committed
    example's (T = 2), and the BPTT gradients at T = 3 against the numpy GRU below."""
    inputs, hidden, classes = (int(v) for v in rng.integers(1, 4, 3))
    _check_central_differences(f"gru({inputs},{hidden},1) affine({hidden},{classes + 1}) "
                               "softmax-cross-entropy", rng, rows=int(rng.integers(1, 4)))


@pytest.mark.parametrize("hidden", [3, 16])
def test_the_gru_kernel_equals_an_independent_float64_gru(rng, hidden):
    steps, inputs = 3, 2
    net = load_network(f"gru({inputs},{hidden},{steps}) affine({hidden},1) squared-error")
    _check_one_loop_per_statement(net, hidden)
    Wx, Wh, bx, bh, W2, b2 = (rng.normal(0, 0.6, shape) for shape in net.PARAM_SHAPES)
    X, target = rng.normal(size=(2, steps * inputs)), rng.normal(size=(2, 1))
    before = X.copy(), Wh.copy()
    loss, dWx, dWh, dbx, dbh, dW2, db2 = net.loss_and_grads(Wx, Wh, bx, bh, W2, b2, X, target)
    np.testing.assert_array_equal(X, before[0])
    np.testing.assert_array_equal(Wh, before[1])
    s = gru_forward(X, Wx, Wh, bx, bh, steps)
    scores = s["h"][:, -1] @ W2 + b2
    assert loss == pytest.approx(0.5 * np.sum((scores - target) ** 2), rel=1e-12)
    _, want_dWx, want_dWh, want_dbx, want_dbh, _ = gru_backward(X, Wx, Wh, s, (scores - target) @ W2.T, steps)
    for got, want in ((dWx, want_dWx), (dWh, want_dWh), (dbx, want_dbx), (dbh, want_dbh)):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-14)


def test_a_gru_alone_carries_the_gradient_to_its_input_sequence():
    from symprop.symbolic.graph_transcript import graph_transcript

    values = {"X": [[[1, -1], [0.5, 2]]], "dout": [[1, -2]],
              "Wx1": [[0.5, -1, 0.25, 0.5, -0.5, 1], [0.25, 0.5, -1, 0, 0.5, -0.5]],
              "Wh1": [[0.25, 0.5, -0.5, 1, 0, 0.5], [-0.5, 1, 0.25, -0.25, 0.5, 0]],
              "bx1": [0, 0.25, 0.5, -0.25, 0, 0.5], "bh1": [0.5, 0, -0.25, 0.25, 0.5, -0.5]}
    t = graph_transcript(parse_net("gru(2,2,2)", loss_optional=True), values)
    X = np.array(values["X"], float).reshape(1, -1)
    Wx, Wh, bx, bh = (np.array(values[k], float) for k in ("Wx1", "Wh1", "bx1", "bh1"))
    s = gru_forward(X, Wx, Wh, bx, bh, 2)
    dX, dWx, dWh, dbx, dbh, _ = gru_backward(X, Wx, Wh, s, np.array(values["dout"], float), 2)
    for step in range(2):
        for e in range(2):
            assert t.float_value(f"dL/dX[0,{step},{e}]") == pytest.approx(dX[0, 2 * step + e], rel=1e-12), (step, e)
    for index in np.ndindex(dWh.shape):
        assert t.float_value(f"dL/dWh1[{index[0]},{index[1]}]") == pytest.approx(dWh[index], rel=1e-12, abs=1e-15)


# ---- the GRU worked example (symbolic/nets/gru-two-steps.toml) ------------------------------
GRU_EXAMPLE = "gru-two-steps"


def test_the_gru_worked_example_recomputed_independently_in_float64():
    """Every gate, candidate and state of both steps, dL/dh back through time (the direct path
    and the Wh path), each step's dWh term, every gradient, the update and the loss after it."""
    from symprop.symbolic.examples import EXAMPLES

    t = EXAMPLES[GRU_EXAMPLE].build()
    given = lambda name: _given(name, GRU_EXAMPLE)  # noqa: E731
    X, target = given("X").reshape(1, -1), given("T")
    Wx, Wh, bx, bh, W2, b2 = (given(name) for name in ("Wx1", "Wh1", "bx1", "bh1", "W2", "b2"))
    rate, steps = 0.1, 2
    s = gru_forward(X, Wx, Wh, bx, bh, steps)
    scores = s["h"][:, -1] @ W2 + b2
    dz = scores - target
    dX, dWx, dWh, dbx, dbh, contributions = gru_backward(X, Wx, Wh, s, dz @ W2.T, steps)
    close = lambda key, want: pytest.approx(want, rel=1e-12, abs=1e-15) == t.float_value(key)  # noqa: E731
    for step in (1, 2):
        for key, name in (("r", "r1"), ("z", "z1"), ("n", "n1"), ("h", "hs1")):
            assert close(f"{name}[0,{step},0]", s[key][0, step, 0]), (name, step)
    assert close("L", 0.5 * np.sum(dz ** 2))
    dh2 = (dz @ W2.T)[0, 0]
    assert close("dL/dhs1[0,2,0]", dh2)
    hidden_path = s["z"][0, 2, 0] * dh2 + sum(Wh[0, q] * t.float_value(f"dL/dah1[0,2,{q}]") for q in range(3))
    assert close("dL/dhs1[0,1,0]", hidden_path)
    for step in (1, 2):
        for q in range(3):
            assert close(f"dWh1_step[{step},0,{q}]", contributions[step, 0, q]), (step, q)
    grads = {"Wx1": dWx, "Wh1": dWh, "bx1": dbx, "bh1": dbh, "W2": s["h"][:, -1].T @ dz, "b2": dz.sum(axis=0)}
    params = {"Wx1": Wx, "Wh1": Wh, "bx1": bx, "bh1": bh, "W2": W2, "b2": b2}
    for name, grad in grads.items():
        for index in np.ndindex(grad.shape):
            key = ",".join(map(str, index))
            assert close(f"dL/d{name}[{key}]", grad[index]), (name, key)
            assert close(f"{name}_new[{key}]", params[name][index] - rate * grad[index]), (name, key)
    new = {name: params[name] - rate * grads[name] for name in params}
    s_new = gru_forward(X, new["Wx1"], new["Wh1"], new["bx1"], new["bh1"], steps)
    loss_new = 0.5 * np.sum((s_new["h"][:, -1] @ new["W2"] + new["b2"] - target) ** 2)
    assert close("L_new", loss_new) and loss_new < t.float_value("L")


def test_the_gru_recurrent_weights_gradient_is_the_sum_of_the_printed_step_contributions():
    import json
    from decimal import Decimal, localcontext

    from symprop.symbolic.examples import EXAMPLES

    quantities = json.loads(EXAMPLES[GRU_EXAMPLE].build().render("json"))["quantities"]
    for q in range(3):
        terms = [f"dWh1_step[{s},0,{q}]" for s in (1, 2)]
        total = quantities[f"dL/dWh1[0,{q}]"]
        assert total["formula"] == " + ".join(terms)
        printed = [Decimal(quantities[term]["value"]) for term in terms]
        assert printed[0] == 0 and printed[1] != 0
        with localcontext() as exact:
            exact.prec = 60
            assert abs(sum(printed) - Decimal(total["value"])) < Decimal("1e-38")


def test_the_committed_gru_kernel_agrees_with_central_differences_and_the_transcript(rng):
    """generated/net_gru_two_steps.py, the example's network committed as a built-in: central
    differences (float64, rel 1e-6) and the transcript's exact numbers in float64."""
    assert_committed_module_is_the_worked_example("gru_two_steps", rng)


def test_the_gru_chinese_transcript_is_its_golden_file():
    from symprop.symbolic.examples import EXAMPLES

    md = EXAMPLES[GRU_EXAMPLE].build().render("md", lang="zh")
    check_golden(GOLDEN / f"{GRU_EXAMPLE}.zh.md", md)
    for term in ("前向传播", "反向传播", "重置门", "更新门", "候选状态", "直接路径", "各步贡献之和"):
        assert term in md, term
