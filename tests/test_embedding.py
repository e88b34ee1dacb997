"""The embedding family: SymPy derives the lookup's gradient as a scatter-add, the fused kernels
match central differences (float64) and numpy's np.add.at, bad token ids are refused with one
line (kernel and transcript), and an embedding feeds a sequence into rnn(D,H,T)."""
import re

import numpy as np
import pytest
import sympy as sp

from symprop.cli import main
from symprop.codegen.network import load_network
from symprop.symbolic.errors import SympropError
from symprop.symbolic.graph import parse_net
from symprop.symbolic.graph_transcript import graph_transcript
from symprop.symbolic.layers import REGISTRY, N
from symprop.symbolic.ops.embedding import T
from tests.gradcheck import numerical_gradient, parameter_loss, relative_error

GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, relative


def test_sympy_derives_the_scatter_add():
    d = REGISTRY.derive("embedding")
    n, t, v, q = sp.symbols("n t v q", integer=True)
    x, dY = sp.IndexedBase("x"), sp.IndexedBase("dY")
    assert d.backward["dW"] == sp.Sum(sp.KroneckerDelta(v, x[n, t]) * dY[n, t, q], (n, 0, N - 1), (t, 0, T - 1))


def test_symprop_derive_shows_the_lookup(capsys):
    assert main(["derive", "embedding"]) == 0
    out = capsys.readouterr().out
    assert "Y[n, t, d] = W[x[n, t], d]" in out and "a scatter-add" in out


@pytest.mark.parametrize("spec, message", [
    ("embedding(5) affine(2,1) mse", "embedding needs the vocabulary size, the width"),
    ("embedding(5,0) affine(2,1) mse", "embedding needs the vocabulary size, the width"),
    ("embedding(5,2,3) affine(2,1) mse", "takes 2 features but the layer before gives sequences (3, 2) of 3 "
     "steps of 2 values"),
    ("embedding(5,2,3) rnn(2,4,2) affine(4,1) mse", "takes sequences (2, 2) of 2 steps of 2 values but the layer "
     "before gives sequences (3, 2) of 3 steps of 2 values"),
])
def test_bad_embedding_specs_are_one_clear_line(spec, message):
    with pytest.raises(SympropError, match=re.escape(message)):
        parse_net(spec)


def test_an_embedding_after_another_layer_is_refused_naming_it():
    with pytest.raises(SympropError, match=re.escape("layer 2 'embedding(4,2)' (column 13): embedding reads token "
                                                     "ids from the data X: it must be the first layer")):
        load_network("affine(3,1) embedding(4,2) affine(2,1) mse")


def _ids(rng, rows, columns, vocabulary):
    return rng.integers(0, vocabulary, size=(rows, columns)).astype(np.float64)


@pytest.mark.parametrize("spec", ["embedding(5,3) affine(3,2) softmax-cross-entropy",
                                  "embedding(6,2,4) rnn(2,3,4) affine(3,2) softmax-cross-entropy",
                                  # one id per example: its row is a sequence of one step for the rnn
                                  "embedding(5,3,1) rnn(3,2,1) affine(2,2) mse"])
def test_fused_kernel_agrees_with_central_differences(spec, rng):
    net = load_network(spec)
    params = [rng.normal(0, 0.7, shape) for shape in net.PARAM_SHAPES]
    X = _ids(rng, 6, net.INPUT_SIZE, net.PARAM_SHAPES[0][0])
    labels = np.eye(net.OUTPUT_SIZE)[rng.integers(0, net.OUTPUT_SIZE, 6)]
    loss, *grads = net.loss_and_grads(*params, X, labels)
    for k, (name, grad) in enumerate(zip(net.PARAM_NAMES, grads)):
        numeric = numerical_gradient(parameter_loss(net, params, k, X, labels), params[k])
        assert relative_error(grad, numeric) < GRADCHECK_TOLERANCE, (spec, name)


# ten rows, as many as the positions of two rows of five ids: one network (one compile) serves
# both as the table with repeated and unused ids and as the one with a row per position
TABLE_NET = "embedding(10,3,5) rnn(3,2,5) affine(2,1) squared-error"


def test_the_tables_gradient_is_numpys_scatter_add(rng):
    """Repeated ids add up, rows no id picked get exactly 0: np.add.at of each position's
    upstream gradient, which a table with one row per position gives (each row picked once)."""
    net = load_network(TABLE_NET)
    W, *rest = (rng.normal(0, 0.5, shape) for shape in net.PARAM_SHAPES)
    X = np.array([[0, 2, 2, 5, 0], [5, 5, 2, 0, 2]], float)  # ids 1, 3, 4, 6, 7, 8, 9 unused
    target = rng.normal(size=(2, 1))
    loss, dW, *_ = net.loss_and_grads(W, *rest, X, target)
    copies = W[X.astype(int)].reshape(10, 3)  # position k looks up row k, a copy of its row of W
    same_loss, upstream, *_ = net.loss_and_grads(copies, *rest, np.arange(10.0).reshape(2, 5), target)
    assert same_loss == pytest.approx(loss, rel=1e-14)
    expected = np.zeros_like(W)
    np.add.at(expected, X.astype(int).reshape(-1), upstream)
    np.testing.assert_allclose(dW, expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(dW[[1, 3, 4, 6, 7, 8, 9]], 0.0)


@pytest.mark.parametrize("bad", [0.5, -1.0, 10.0, np.nan])
def test_the_kernel_refuses_an_id_that_is_not_a_row(bad, rng):
    net = load_network(TABLE_NET)
    params = [rng.normal(0, 0.5, shape) for shape in net.PARAM_SHAPES]
    X = _ids(rng, 2, 5, 10)
    X[1, 3] = bad
    with pytest.raises(ValueError, match="X holds token ids, whole numbers from 0 to V-1"):
        net.loss_and_grads(*params, X, np.zeros((2, 1)))


VALUES = {"X": [[3, 1, 3]], "T": [[0.5]], "W1": [[0.5, -1], [1, 2], [0, 0], [0.25, -0.5]],
          "Wx2": [[0.5], [-1]], "Wh2": [[0.5]], "b2": [0.25], "W3": [[2]], "b3": [0]}
SPEC = "embedding(4,2,3) rnn(2,1,3) affine(1,1) squared-error"


def test_the_transcript_looks_up_rows_and_scatters_the_gradient_back():
    """e1[0,t,:] is the row of W1 the id X[0,t] picks; dL/dW1[3,:] sums the two positions that
    picked row 3, rows 0 and 2 get 0; every number equals the kernel's."""
    t = graph_transcript(parse_net(SPEC), VALUES)
    assert t.quantities["e1[0,2,1]"].formula == sp.Symbol("W1[3,1]")
    assert str(t.quantities["dL/dW1[3,0]"].formula) == "dL/de1[0,0,0] + dL/de1[0,2,0]"
    assert t.value("dL/dW1[0,0]") == 0 and t.value("dL/dW1[2,1]") == 0
    net = load_network(SPEC)
    params = [np.array(VALUES[name], float) for name in net.PARAM_NAMES]
    loss, *grads = net.loss_and_grads(*params, np.array(VALUES["X"], float), np.array(VALUES["T"], float))
    assert t.float_value("L") == pytest.approx(loss, rel=1e-13)
    for name, grad in zip(net.PARAM_NAMES, grads):
        for index in np.ndindex(grad.shape):
            key = f"dL/d{name}[{','.join(map(str, index))}]"
            assert t.float_value(key) == pytest.approx(grad[index], rel=1e-12, abs=1e-15), key


@pytest.mark.parametrize("ids, message", [([[3, 1.5, 3]], "X[0,1] = 3/2 is used as an index (a token id): it must "
                                                          "be a whole number"),
                                          ([[3, 4, 3]], "reads W1[int(X[0, 1]), 0] outside its array")])
def test_the_transcript_refuses_an_id_that_is_not_a_row(ids, message):
    with pytest.raises(SympropError, match=re.escape(message)):
        graph_transcript(parse_net(SPEC), {**VALUES, "X": ids})
