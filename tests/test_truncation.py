"""Truncated backpropagation through time: rnn/lstm/gru(D,H,T,k) against central differences of
a model whose first T-k steps are constants (the state they leave is detached)."""
from __future__ import annotations

import numpy as np
import pytest

from symprop.codegen.network import load_network
from tests.gradcheck import numerical_gradient, relative_error

STEPS, WINDOW = 5, 2  # the gradient flows back through the last 2 of 5 steps


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def cell(family, params, x, state):
    """One step of the family from state (h, c) on inputs x: the next (h, c), plain numpy."""
    h, c = state
    if family == "rnn":
        Wx, Wh, b = params
        return np.tanh(x @ Wx + h @ Wh + b), c
    if family == "lstm":
        Wx, Wh, b = params
        i, f, g, o = np.split(x @ Wx + h @ Wh + b, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c), c
    Wx, Wh, bx, bh = params
    ax, ah = np.split(x @ Wx + bx, 3, axis=1), np.split(h @ Wh + bh, 3, axis=1)
    r, z = sigmoid(ax[0] + ah[0]), sigmoid(ax[1] + ah[1])
    n = np.tanh(ax[2] + r * ah[2])
    return (1 - z) * n + z * h, c


def run(family, params, xs, state):
    for t in range(xs.shape[1]):
        state = cell(family, params, xs[:, t], state)
    return state


def loss(family, params, readout, xs, labels, state):
    """Softmax cross-entropy (batch mean) of h_T W + b, the steps of xs run from ``state``."""
    W, b = readout
    scores = run(family, params, xs, state)[0] @ W + b
    scores = scores - scores.max(axis=1, keepdims=True)
    logp = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    return -(labels * logp).sum() / xs.shape[0]


@pytest.mark.parametrize("family", ["rnn", "lstm", "gru"])
def test_the_truncated_gradient_is_the_gradient_with_the_state_detached_k_steps_back(family, rng):
    inputs, hidden, classes, rows = 2, 3, 2, 3
    net = load_network(f"{family}({inputs},{hidden},{STEPS},{WINDOW}) affine({hidden},{classes}) softmax-cross-entropy")
    params = [rng.normal(0, 0.8, shape) for shape in net.PARAM_SHAPES]
    X = rng.normal(size=(rows, net.INPUT_SIZE))
    labels = np.eye(classes)[rng.integers(0, classes, rows)]
    _, *grads = net.loss_and_grads(*params, X, labels)

    xs = X.reshape(rows, STEPS, inputs)
    cut = STEPS - WINDOW
    layer, readout = params[:-2], params[-2:]
    zeros = np.zeros((rows, hidden))
    detached = run(family, layer, xs[:, :cut], (zeros, zeros))  # computed once: constants from here on
    for k, (name, grad) in enumerate(zip(net.PARAM_NAMES, grads)):
        def of(value, k=k):
            trial = [value if i == k else p for i, p in enumerate(params)]
            return loss(family, trial[:-2], trial[-2:], xs[:, cut:], labels, detached)
        assert relative_error(grad, numerical_gradient(of, params[k])) < 1e-6, (family, name)
    # and it is not the full gradient: the steps before the window would have added to it
    full = [numerical_gradient(lambda v, k=k: loss(family, [v if i == k else p for i, p in enumerate(params)][:-2],
                                                        readout, xs, labels, (zeros, zeros)), params[k])
            for k in range(2)]
    assert relative_error(grads[0], full[0]) > 1e-3
    if family == "lstm":  # forward (predictions) computes the scores with the same products
        W, b = readout
        np.testing.assert_allclose(net.forward(*params, X), run(family, layer, xs, (zeros, zeros))[0] @ W + b,
                                   rtol=1e-12)


def test_the_transcript_of_a_truncated_rnn_stops_at_the_window_with_the_truncated_gradient():
    """The transcript runs the truncated statements in exact arithmetic: no gradient line
    before step T-k+1, notes that say the sums are truncated, and each parameter's gradient
    the central difference of the loss with the state after step T-k held constant."""
    from symprop.symbolic.graph import parse_net
    from symprop.symbolic.graph_transcript import graph_transcript

    values = {"X": [[[1], [0.5], [-1]]], "T": [[0, 1]], "Wx1": [[0.5, -1]], "Wh1": [[0.25, 0.5], [-0.5, 1]],
              "b1": [0, 0.25], "W2": [[1, 0.5], [-1, 0.25]], "b2": [0, 0.5]}
    t = graph_transcript(parse_net("rnn(1,2,3,2) affine(2,2) softmax-cross-entropy"), values)
    text = t.render("text")
    assert "truncated: the last 2 steps only, from step 2" in text
    assert "dL/da1[0,1,0]" not in text and "dL/da1[0,2,0]" in text
    params = {name: np.array(values[name], float) for name in ("Wx1", "Wh1", "b1", "W2", "b2")}
    xs, labels = np.array(values["X"], float), np.array(values["T"], float)
    zeros = np.zeros((1, 2))
    detached = run("rnn", [params["Wx1"], params["Wh1"], params["b1"]], xs[:, :1], (zeros, zeros))
    for name, value in params.items():
        def of(v, name=name):
            trial = {**params, name: v}
            return loss("rnn", [trial["Wx1"], trial["Wh1"], trial["b1"]], [trial["W2"], trial["b2"]], xs[:, 1:],
                        labels, detached)
        numeric = numerical_gradient(of, value)
        for index in np.ndindex(value.shape):
            key = f"dL/d{name}[{','.join(map(str, index))}]"
            assert t.float_value(key) == pytest.approx(numeric[index], rel=1e-6, abs=1e-9), key
