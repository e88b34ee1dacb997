"""Position-wise layers and the attention model on sequence reversal.

``tokenwise-affine(D,E,T)`` and ``token-softmax-cross-entropy(K,T)`` keep the tokens apart, so
on ``--data reverse`` whatever an output token knows of another token came through attention:
SymPy derives their rules, the fused kernels match central differences (float64, T = 1
included), a transcript runs the lowering and agrees with the kernel, and a short training run
reaches the accuracy the README states.
"""
import re

import numpy as np
import pytest
import sympy as sp

from symprop.cli import main
from symprop.codegen import files
from symprop.codegen.network import load_network, network_module_text
from symprop.symbolic.errors import SympropError
from symprop.symbolic.graph import parse_net
from symprop.symbolic.graph_transcript import graph_transcript
from symprop.symbolic.layers import REGISTRY, N
from symprop.symbolic.ops.tokenwise import E, K, T
from symprop.training.datasets import REVERSE_SYMBOLS, REVERSE_TOKENS, load_dataset, reverse_sequences
from tests.gradcheck import numerical_gradient, parameter_loss, relative_error
from tests.test_backends import PLAIN_PYTHON

GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, relative


def token_cross_entropy(z, targets, tokens):
    """The loss written independently: the mean over the N*T tokens of log-sum-exp minus the true logit."""
    z = z.reshape(len(z), tokens, -1)
    top = z.max(axis=2, keepdims=True)
    lse = top[..., 0] + np.log(np.exp(z - top).sum(axis=2))
    return float(np.mean(lse - (z * targets.reshape(z.shape)).sum(axis=2)))


def one_hot_tokens(labels, classes):
    return np.eye(classes)[labels].reshape(len(labels), -1)


# ---- the derivations -----------------------------------------------------------------------
def test_sympy_derives_the_position_wise_rules():
    n, t, d, e, j = sp.symbols("n t d e j", integer=True)
    x, W, dy, y, target = (sp.IndexedBase(name) for name in ("x", "W", "dy", "y", "t"))
    affine = REGISTRY.derive("tokenwise-affine").backward
    # the weights are shared by the tokens: their gradients are sums over the batch and the tokens
    assert affine["dW"] == sp.Sum(dy[n, t, e] * x[n, t, d], (n, 0, N - 1), (t, 0, T - 1))
    assert affine["db"] == sp.Sum(dy[n, t, e], (n, 0, N - 1), (t, 0, T - 1))
    assert affine["dx"] == sp.Sum(W[d, e] * dy[n, t, e], (e, 0, E - 1))  # token t's own upstream only
    loss = REGISTRY.derive("token-softmax-cross-entropy")
    assert sp.simplify(loss.backward["dz"] - (y[n, t, j] - target[n, t, j]) / (N * T)) == 0
    assert loss.forward["L_nt"].has(K)


def test_symprop_derive_lists_and_shows_them(capsys):
    assert main(["derive", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "tokenwise-affine " in listed and "token-softmax-cross-entropy " in listed
    assert main(["derive", "tokenwise-affine"]) == 0
    assert "dW[d, e] = Sum(dy[n, t, e]*x[n, t, d], (n, 0, N - 1), (t, 0, T - 1))" in capsys.readouterr().out
    assert main(["derive", "token-softmax-cross-entropy"]) == 0
    assert "dz[n,t,j] = (-t[n, t, j] + y[n, t, j])/(N*T)" in capsys.readouterr().out


@pytest.mark.parametrize("spec, message", [
    ("tokenwise-affine(2,3) token-softmax-cross-entropy(3,2)", "tokenwise-affine needs three positive sizes"),
    ("tokenwise-affine(2,3,2) token-softmax-cross-entropy(3)", "token-softmax-cross-entropy needs two positive sizes"),
    ("attention(2,2,2,4) tokenwise-affine(3,2,4) token-softmax-cross-entropy(2,4)",
     "layer 2 'tokenwise-affine(3,2,4)' (column 20): takes sequences (4, 3) of 4 steps of 3 values but the layer "
     "before gives sequences (4, 2) of 4 steps of 2 values"),
    ("affine(8,4) token-softmax-cross-entropy(2,2)", "takes sequences (2, 2) of 2 steps of 2 values but the layer "
     "before gives 4"),
])
def test_bad_specs_are_one_clear_line(spec, message):
    with pytest.raises(SympropError, match=re.escape(message)):
        parse_net(spec)


# ---- the fused kernels ---------------------------------------------------------------------
@pytest.mark.parametrize("tokens", [1, 3])
def test_fused_kernel_agrees_with_central_differences(tokens, rng):
    """Random sizes; a tokenwise layer first (reads X), one after attention (carries dx back
    into it), the per-token loss last; every parameter, float64, rel 1e-6."""
    inputs, hidden, keys, values, classes = (int(v) for v in rng.integers(1, 4, 5))
    classes += 1
    spec = (f"tokenwise-affine({inputs},{hidden},{tokens}) tanh attention({hidden},{keys},{values},{tokens}) "
            f"tokenwise-affine({values},{classes},{tokens}) token-softmax-cross-entropy({classes},{tokens})")
    net = load_network(spec)
    params = [rng.normal(0, 0.8, shape) for shape in net.PARAM_SHAPES]
    rows = int(rng.integers(1, 4))
    X = rng.normal(size=(rows, net.INPUT_SIZE))
    targets = one_hot_tokens(rng.integers(0, classes, (rows, tokens)), classes)
    loss, *grads = net.loss_and_grads(*params, X, targets)
    assert loss == pytest.approx(token_cross_entropy(net.forward(*params, X), targets, tokens), rel=1e-12)
    for k, (name, grad) in enumerate(zip(net.PARAM_NAMES, grads)):
        numeric = numerical_gradient(parameter_loss(net, params, k, X, targets), params[k])
        assert relative_error(grad, numeric) < GRADCHECK_TOLERANCE, (spec, name)


SPEC = "attention(2,2,2,2) tokenwise-affine(2,3,2) token-softmax-cross-entropy(3,2)"
VALUES = {"X": [[[1, 0], [0.5, -1]]], "T": [[0, 0, 1, 1, 0, 0]], "Wq1": [[1, 0], [0.5, 1]],
          "Wk1": [[1, -0.5], [0, 1]], "Wv1": [[1, 0.5], [-1, 1]], "W2": [[0.5, 0, -1], [0, 1, 0.25]],
          "b2": [0, 0.25, -0.5]}


def test_the_transcript_is_the_lowering_run_and_agrees_with_the_printed_step(tmp_path):
    """The interpreter's reading of the statements (exact) against the printer's, printed as
    plain Python (as tests/test_one_lowering.py does: nothing to compile)."""
    t = graph_transcript(parse_net(SPEC), VALUES, learning_rate="1/10")
    text = t.render("text", 6, "en")
    assert "token t's output, the bias plus x_t times W2" in text
    assert "the token's loss: log-sum-exp (maximum subtracted) minus the true class's logit" in text
    path = tmp_path / "net.py"
    path.write_text(network_module_text(SPEC, backend=PLAIN_PYTHON))
    net = files.import_generated("plain_tokenwise_net", path)
    params = [np.array(VALUES[name], dtype=np.float64) for name in net.PARAM_NAMES]
    X, targets = np.array(VALUES["X"], float).reshape(1, -1), np.array(VALUES["T"], float)
    loss, *grads = net.loss_and_grads(*params, X, targets)
    assert float(t.value("L")) == pytest.approx(loss, rel=1e-12)
    for name, grad in zip(net.PARAM_NAMES, grads):
        for index in np.ndindex(grad.shape):
            key = f"dL/d{name}[{','.join(map(str, index))}]"
            assert float(t.value(key)) == pytest.approx(grad[index], rel=1e-12, abs=1e-15), key


def test_targets_are_one_hot_per_token_not_per_row():
    """Two tokens: two 1s in a row is right, a token without its 1 is named."""
    bad = {**VALUES, "T": [[0, 0, 1, 0, 0, 0]]}
    with pytest.raises(SympropError, match=re.escape("one 1 in each group of 3, a token's classes")):
        graph_transcript(parse_net(SPEC), bad)


# ---- the data set and training -------------------------------------------------------------
def test_reverse_targets_are_the_input_reversed_and_the_parts_do_not_overlap():
    data = load_dataset("reverse")
    tokens, symbols = REVERSE_TOKENS, REVERSE_SYMBOLS
    assert data.tokens == tokens and data.n_classes == symbols
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        codes = x.reshape(len(x), tokens, symbols + tokens)
        assert (codes.sum(axis=2) == 2).all()  # one symbol and one position per token
        np.testing.assert_array_equal(codes[:, :, symbols:].argmax(axis=2), np.tile(np.arange(tokens), (len(x), 1)))
        inputs = codes[:, :, :symbols].argmax(axis=2)
        np.testing.assert_array_equal(y, inputs[:, ::-1])
    train, test = ({row.tobytes() for row in part} for part in (data.x_train, data.x_test))
    assert len(train) == len(data.x_train) and not train & test
    again = reverse_sequences(5)
    np.testing.assert_array_equal(again[0], data.x_train[:5])  # a fixed seed: the same examples every time


def test_a_net_that_does_not_fit_the_data_is_one_line(capsys):
    assert main(["train", "--data", "reverse", "--net", "affine(128,8) softmax-cross-entropy"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "a class per token (8 tokens of 8 classes): end the net with " \
        "token-softmax-cross-entropy(8,8)" in err
    assert main(["train", "--data", "reverse", "--net",
                 "attention(16,4,4,8) tokenwise-affine(4,10,8) token-softmax-cross-entropy(10,8)"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "ends in token-softmax-cross-entropy(10,8) but data set reverse has 8 tokens of " \
        "8 classes" in err


def _test_accuracy(out: str) -> float:
    return float(re.search(r"test accuracy (\d\.\d+)", out).group(1))


def test_attention_learns_to_reverse(capsys):
    """The README's command, its defaults: at least 99% of the held-out tokens right (the same
    output layer and loss without attention see one token at a time: chance, 1/8)."""
    assert main(["train", "--data", "reverse", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert _test_accuracy(out) >= 0.99, out
    assert float(re.search(r"every token right: (\d\.\d+)", out).group(1)) >= 0.95, out
