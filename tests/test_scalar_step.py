"""The scalar step is a pass over the matrix step's statements (codegen/scalar_step.py): what it
makes of statements written here by hand, and the statements it must refuse (the network then
keeps the matrix step). Plain Python: the printed step runs without numba."""
from types import SimpleNamespace

import numpy as np
import pytest
import sympy as sp

from symprop.codegen.backend import NUMBA
import symprop.codegen.scalar_step as scalar_step_module
from symprop.codegen.scalar_step import scalar_step
from symprop.symbolic.ir import (Assignments, Call, Comment, Let, Loop, MatrixInto, element as at, index, local,
                                 ratio)
from symprop.symbolic.layers import I, N, real

x, g, y, t, dout = map(real, ("x", "g", "y", "t", "dout"))
n, j = index("n"), index("j")
LOSS, loss_term = local("loss"), local("loss_term")
ZERO = sp.Integer(0)


def each_element(*body):
    return Loop(n, N, (Loop(j, 2, body),))


def scaled_network(forward=None, backward=None):
    """The statements of y = g * x (g one learnable scale per feature) with the squared error
    0.5 (y - t)^2 averaged over the batch, lowered as symbolic.lower.Lowering lowers them."""
    forward = forward or [Comment("layer 1: scale"),
                          each_element(Assignments(((at("h1", "n", "j"), g * x),),
                                                   {"x": at("X", "n", "j"), "g": at("g1", "j")}))]
    rows = {"y": at("h1", "n", "j"), "t": at("T", "n", "j")}
    loss = [Comment("layer 2: squared error"), Let(LOSS, ZERO),
            each_element(Assignments(((loss_term, (y - t) ** 2 / 2),), rows), Let(LOSS, loss_term, augmented=True)),
            Let(LOSS, ratio(LOSS, N))]
    backward = backward or [
        each_element(Assignments(((at("dh1", "n", "j"), (y - t) / N),), rows)),
        Loop(j, 2, (Let(at("dg1", "j"), ZERO),)),
        each_element(Assignments(((at("dg1", "j"), dout * x),), {"dout": at("dh1", "n", "j"), "x": at("X", "n", "j")},
                                 accumulate=frozenset({at("dg1", "j")})))]
    return SimpleNamespace(params=[("g1", (2,))], widths=[2, 2], forward=forward, loss=loss, backward=backward,
                           buffers=[("h1", (N, 2)), ("dh1", (N, 2)), ("dg1", (2,))])


def run(step, *args):
    """The printed step as a plain Python function."""
    namespace = {}
    exec(NUMBA.function(step.function("step", compiled=None)), {"np": np}, namespace)
    return namespace["step"](*args)


def test_statements_become_one_row_of_scalars_and_a_correct_step():
    step = scalar_step(scaled_network())
    row = [line.split("  #")[0] for line in step.row_lines]
    # X and T read once a row; the feature loop unrolled, elements renamed to scalar locals
    assert row[:4] == ["X_0 = X[n, 0]", "X_1 = X[n, 1]", "T_0 = T[n, 0]", "T_1 = T[n, 1]"]
    assert "h1_0 = X_0*g1_0" in row and "h1_1 = X_1*g1_1" in row
    # the row-local loss_term substituted into the sum over the rows
    assert "loss += (real(0.5))*((-T_0 + h1_0)*(-T_0 + h1_0))" in row
    # the gradient of g1, an array without a batch dimension, summed over the rows in scalars
    assert "dg1_0 += X_0*dh1_0" in row
    assert step.after_lines == ["loss = loss/real(N)"]
    assert step.zero_lines == ["dg1_0 = zero  # dL/dg1[0]", "dg1_1 = zero  # dL/dg1[1]"]
    rng = np.random.default_rng(3)
    G, X, T = rng.normal(size=2), rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    before = G.copy()
    loss = run(step, G, X, T, 0.1)
    assert loss == pytest.approx(np.mean(np.sum(0.5 * (X * before - T) ** 2, axis=1)), rel=1e-14)
    gradient = np.mean((X * before - T) * X, axis=0)
    np.testing.assert_allclose(G, before - 0.1 * gradient, rtol=1e-14)


def test_a_helper_call_the_pass_does_not_know_keeps_the_matrix_step():
    forward = [Comment("layer 1: scale"), Call("_mystery_helper", (sp.Symbol("X"), sp.Symbol("h1")))]
    assert scalar_step(scaled_network(forward=forward)) is None


def test_a_row_that_reads_a_sum_over_the_rows_keeps_the_matrix_step():
    """A batch statistic (batch norm's mean) is complete only after every row: one fused loop
    over the rows cannot read it."""
    mean = real("m")
    forward = [Loop(j, 2, (Let(at("dg1", "j"), ZERO),)),
               each_element(Assignments(((at("dg1", "j"), x),), {"x": at("X", "n", "j")},
                                        accumulate=frozenset({at("dg1", "j")}))),
               each_element(Assignments(((at("h1", "n", "j"), x - mean),), {"x": at("X", "n", "j"), "m": at("dg1", "j")}))]
    assert scalar_step(scaled_network(forward=forward)) is None


def test_a_parameter_whose_gradient_the_pass_never_sees_summed_keeps_the_matrix_step():
    """Otherwise the update would subtract zero from it, silently."""
    backward = [each_element(Assignments(((at("dh1", "n", "j"), (y - t) / N),),
                                         {"y": at("h1", "n", "j"), "t": at("T", "n", "j")}))]
    assert scalar_step(scaled_network(backward=backward)) is None


def test_a_loss_scaled_between_the_rows_keeps_the_matrix_step():
    net = scaled_network()
    net.loss.insert(2, Let(LOSS, 2 * LOSS))  # before the loss's own loop over the rows
    assert scalar_step(net) is None


def test_a_matrix_rule_that_mixes_the_rows_keeps_the_matrix_step():
    """h1 = 1 1^T X (every row the batch's column sums) is no rule of one row."""
    column_sums = sp.OneMatrix(N, N) * sp.MatrixSymbol("X", N, I)
    forward = [MatrixInto(column_sums, sp.Symbol("h1"), {"X": sp.Symbol("X")})]
    assert scalar_step(scaled_network(forward=forward)) is None


def linear_network(extra_backward=()):
    """y = X W (W 2 x 3, no bias) with the squared error averaged over the batch, its products
    as the matrix step lowers them (MatrixInto): Z = X W forward, dW = X^T dY backward."""
    X_, W_, dY_ = sp.MatrixSymbol("X", N, 2), sp.MatrixSymbol("W", 2, 3), sp.MatrixSymbol("dY", N, 3)
    X, W1, h1, dh1, dW1 = sp.symbols("X W1 h1 dh1 dW1")
    forward = [MatrixInto(X_ * W_, h1, {"X": X, "W": W1}, comment="h1 = X W1")]
    rows = {"y": at("h1", "n", "j"), "t": at("T", "n", "j")}
    loss = [Let(LOSS, ZERO),
            Loop(n, N, (Loop(j, 3, (Assignments(((loss_term, (y - t) ** 2 / 2),), rows),
                                    Let(LOSS, loss_term, augmented=True))),)),
            Let(LOSS, ratio(LOSS, N))]
    backward = [Loop(n, N, (Loop(j, 3, (Assignments(((at("dh1", "n", "j"), (y - t) / N),), rows),)),)),
                MatrixInto(X_.T * dY_, dW1, {"X": X, "dY": dh1}, comment="dL/dW1 = X^T dL/dh1"),
                *extra_backward]
    return SimpleNamespace(params=[("W1", (2, 3))], widths=[2, 3], forward=forward, loss=loss, backward=backward,
                           buffers=[("h1", (N, 3)), ("dh1", (N, 3)), ("dW1", (2, 3))])


@pytest.mark.parametrize("loop", [True, False])
def test_a_weight_gradient_is_summed_in_a_loop_from_loop_min_weights_entries(monkeypatch, loop):
    """dW = X^T dY is one loop over a small gradient array for a matrix of LOOP_MIN_WEIGHTS
    entries or more (numba compiles one scalar sum per weight), scalar sums below that; the
    weights are read through a view of each row. Both forms take the same step."""
    monkeypatch.setattr(scalar_step_module, "LOOP_MIN_WEIGHTS", 6 if loop else 7)  # W1 is 2 x 3
    step = scalar_step(linear_network())
    row = [line.split("  #")[0].strip() for line in step.row_lines]
    assert step.read_lines[:2] == ["W1_row0 = W1[0]", "W1_0_0 = W1_row0[0]"]
    assert "W1_1_2 = W1_row1[2]" in step.read_lines
    if loop:
        assert "dh1_row[0] = dh1_0" in row and "dh1_row[2] = dh1_2" in row  # the units, copied once a row
        first = row.index("for i in range(2):")
        assert row[first:first + 3] == ["for i in range(2):", "for j in range(3):",
                                        "dW1[i, j] += X[n, i]*dh1_row[j]"]
        assert not any(line.startswith("dW1_") for line in row)  # no scalar sums of W1's entries
        assert "dW1 = np.zeros((2, 3), X.dtype)  # dL/dW1" in step.zero_lines
    else:
        assert "dW1_1_2 += X_1*dh1_2" in row and not any("_row[" in line for line in row)
    rng = np.random.default_rng(4)
    W, X, T = rng.normal(size=(2, 3)), rng.normal(size=(5, 2)), rng.normal(size=(5, 3))
    before = W.copy()
    loss = run(step, W, X, T, 0.1)
    assert loss == pytest.approx(np.mean(np.sum(0.5 * (X @ before - T) ** 2, axis=1)), rel=1e-14)
    np.testing.assert_allclose(W, before - 0.1 * X.T @ (X @ before - T) / 5, rtol=1e-13)


def test_a_weight_summed_both_in_a_loop_and_entry_by_entry_keeps_the_matrix_step(monkeypatch):
    """The loop's array and a scalar sum of the same gradient would each hold part of it."""
    monkeypatch.setattr(scalar_step_module, "LOOP_MIN_WEIGHTS", 1)
    extra = [Loop(n, N, (Assignments(((at("dW1", 0, 0), x),), {"x": at("X", "n", 0)},
                                     accumulate=frozenset({at("dW1", 0, 0)})),))]
    assert scalar_step(linear_network(extra_backward=extra)) is None
