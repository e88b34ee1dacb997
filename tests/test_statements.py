"""The statement printer: each node type prints as the kernels need it."""
import sympy as sp

from symprop.codegen.statements import (Accumulate, Assignments, Call, Comment, Let, Loop, MatrixInto,
                                        print_lines)

x, y, dout = (sp.Symbol(n, real=True) for n in ("x", "y", "dout"))


def test_loops_nest_and_indent_their_bodies():
    lines, _ = print_lines([Comment("layer 2: relu"),
                            Loop("n", "N", (Loop("j", 4, (Let("a[n, j]", "real(0)"),)),)),
                            Loop("k", "K", (Let("zmax", "max(zmax, z[n, k])"),), start=1)])
    assert lines == ["# layer 2: relu", "for n in range(N):", "    for j in range(4):",
                     "        a[n, j] = real(0)", "for k in range(1, K):", "    zmax = max(zmax, z[n, k])"]


def test_assignments_share_subexpressions_accumulate_and_carry_comments():
    rule = sp.exp(x) * dout
    lines, helpers = print_lines([Assignments((("dx[i]", rule), ("dg[j]", rule * x)),
                                              {"x": "x[i]", "dout": "dout[i]"},
                                              {"dg[j]": "summed over the batch"}, frozenset({"dg[j]"}))])
    assert lines[0] == "t0 = dout[i]*_exp(x[i])"  # the shared exp(x) dout, computed once
    assert lines[1] == "dx[i] = t0"
    assert lines[2] == "dg[j] += t0*x[i]  # summed over the batch"
    assert helpers == {"_exp"}


def test_accumulate_prints_its_expression_as_is_with_the_row_index():
    z = sp.IndexedBase("z")
    k = sp.Symbol("k", integer=True)
    lines, _ = print_lines([Accumulate("s0", sp.exp(z[k] - sp.Symbol("zmax", real=True)), {}, row="n")])
    assert lines == ["s0 += _exp(-zmax + z[n, k])"]


def test_calls_and_matrix_products_name_their_helpers():
    X, W = sp.MatrixSymbol("X", 3, 2), sp.MatrixSymbol("W", 2, 2)
    big, used_big = print_lines([MatrixInto(X * W, "z1", {"X": "h0"}, False, "z1 = h0 W")])
    small, used_small = print_lines([MatrixInto(X * W, "z1", {}, True), Call("_add_bias", ("z1", "b1"), "bias")])
    assert big == ["np.dot(h0, W, z1)  # z1 = h0 W"] and not used_big
    assert small == ["_dot_loops(X, W, z1)", "_add_bias(z1, b1)  # bias"]
    assert used_small == {"_dot_loops", "_add_bias"}
