"""The scalar step is a pass over the matrix step's statements (codegen/scalar_step.py): what it
makes of statements written here by hand, and the statements it must refuse (the network then
keeps the matrix step). Plain Python: the printed step runs without numba."""
from types import SimpleNamespace

import numpy as np
import pytest
import sympy as sp

from symprop.codegen.scalar_step import scalar_step
from symprop.codegen.statements import Assignments, Call, Comment, Let, Loop, MatrixInto
from symprop.symbolic.layers import I, N, real

x, g, y, t, dout = map(real, ("x", "g", "y", "t", "dout"))


def each_element(*body):
    return Loop("n", "N", (Loop("j", 2, body),))


def scaled_network(forward=None, backward=None):
    """The statements of y = g * x (g one learnable scale per feature) with the squared error
    0.5 (y - t)^2 averaged over the batch, lowered as network._NetworkPrinter lowers them."""
    forward = forward or [Comment("layer 1: scale"),
                          each_element(Assignments((("h1[n, j]", g * x),), {"x": "X[n, j]", "g": "g1[j]"}))]
    loss = [Comment("layer 2: squared error"), Let("loss", "real(0)"),
            each_element(Assignments((("loss_term", (y - t) ** 2 / 2),), {"y": "h1[n, j]", "t": "T[n, j]"}),
                         Let("loss", "loss_term", augmented=True)),
            Let("loss", "loss / real(N)")]
    backward = backward or [
        each_element(Assignments((("dh1[n, j]", (y - t) / N),), {"y": "h1[n, j]", "t": "T[n, j]"})),
        Loop("j", 2, (Let("dg1[j]", "real(0)"),)),
        each_element(Assignments((("dg1[j]", dout * x),), {"dout": "dh1[n, j]", "x": "X[n, j]"},
                                 accumulate=frozenset({"dg1[j]"})))]
    return SimpleNamespace(params=[("g1", (2,))], widths=[2, 2], forward=forward, loss=loss, backward=backward,
                           buffers=[("h1", "(N, 2)"), ("dh1", "(N, 2)"), ("dg1", "(2,)")])


def run(step, *args):
    """The printed step as a plain Python function."""
    namespace = {}
    exec(step.function_text("step", "plain"), {"plain": lambda f: f, "np": np}, namespace)
    return namespace["step"](*args)


def test_statements_become_one_row_of_scalars_and_a_correct_step():
    step = scalar_step(scaled_network())
    row = [line.split("  #")[0] for line in step.row_lines]
    # the feature loop unrolled, elements renamed to scalar locals, X and T read where used
    assert "h1_0 = X[n, 0]*g1_0" in row and "h1_1 = X[n, 1]*g1_1" in row
    # the row-local loss_term substituted into the sum over the rows
    assert "loss += (real(0.5))*((-T[n, 0] + h1_0)*(-T[n, 0] + h1_0))" in row
    # the gradient of g1, an array without a batch dimension, summed over the rows in scalars
    assert "dg1_0 += X[n, 0]*dh1_0" in row
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
    forward = [Comment("layer 1: scale"), Call("_mystery_helper", ("X", "h1"))]
    assert scalar_step(scaled_network(forward=forward)) is None


def test_a_row_that_reads_a_sum_over_the_rows_keeps_the_matrix_step():
    """A batch statistic (batch norm's mean) is complete only after every row: one fused loop
    over the rows cannot read it."""
    mean = real("m")
    forward = [Loop("j", 2, (Let("dg1[j]", "real(0)"),)),
               each_element(Assignments((("dg1[j]", x),), {"x": "X[n, j]"}, accumulate=frozenset({"dg1[j]"}))),
               each_element(Assignments((("h1[n, j]", x - mean),), {"x": "X[n, j]", "m": "dg1[j]"}))]
    assert scalar_step(scaled_network(forward=forward)) is None


def test_a_parameter_whose_gradient_the_pass_never_sees_summed_keeps_the_matrix_step():
    """Otherwise the update would subtract zero from it, silently."""
    backward = [each_element(Assignments((("dh1[n, j]", (y - t) / N),), {"y": "h1[n, j]", "t": "T[n, j]"}))]
    assert scalar_step(scaled_network(backward=backward)) is None


def test_a_loss_scaled_between_the_rows_keeps_the_matrix_step():
    net = scaled_network()
    net.loss.insert(2, Let("loss", "loss * real(2)"))  # before the loss's own loop over the rows
    assert scalar_step(net) is None


def test_a_matrix_rule_that_mixes_the_rows_keeps_the_matrix_step():
    """h1 = 1 1^T X (every row the batch's column sums) is no rule of one row."""
    column_sums = sp.OneMatrix(N, N) * sp.MatrixSymbol("X", N, I)
    forward = [MatrixInto(column_sums, "h1", {"X": "X"})]
    assert scalar_step(scaled_network(forward=forward)) is None
