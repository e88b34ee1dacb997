"""The statement printer: each node type prints as the kernels need it. Statements hold SymPy
objects (symbols, indexed elements, expressions), never source text."""
from dataclasses import replace

import pytest
import sympy as sp

from symprop.codegen.backend import NUMBA
from symprop.symbolic.ir import (Accumulate, Allocate, Assignments, Call, Comment, Let, Loop, MatrixInto, as_written,
                                 difference, element as at, index, local, ratio)
from symprop.symbolic.layers import K, N

x, y, dout = (sp.Symbol(n, real=True) for n in ("x", "y", "dout"))
n, j, k = index("n"), index("j"), index("k")


def test_loops_nest_and_indent_their_bodies():
    zmax = local("zmax")
    lines, _ = NUMBA.print([Comment("layer 2: relu"),
                            Loop(n, N, (Loop(j, 4, (Let(at("a", "n", "j"), sp.Integer(0)),)),)),
                            Loop(k, K, (Let(zmax, as_written(sp.Max, zmax, at("z", "n", "k"))),), start=1)])
    assert lines == ["# layer 2: relu", "for n in range(N):", "    for j in range(4):",
                     "        a[n, j] = real(0)", "for k in range(1, K):", "    zmax = max(zmax, z[n, k])"]


def test_a_loop_keeps_the_arrays_it_names_in_locals():
    """An element written and read in one pass of the body prints as a local named after its
    array (its comment still names the element); reading one before it is written, or another
    element of it, is refused rather than printed as a wrong kernel."""
    di, i_gate = at("di", "n", "j"), at("i", "n", "j")
    body = (Let(di, at("dc", "n", "j") * at("g", "n", "j"), comment="dL/di[n, j]"),
            Assignments(((at("da", "n", "j"), dout * y * (1 - y)),), {"dout": di, "y": i_gate}))
    lines, _ = NUMBA.print([Loop(j, 4, body, in_locals=("di",))])
    assert lines == ["for j in range(4):", "    di = dc[n, j]*g[n, j]  # dL/di[n, j]",
                     "    da[n, j] = di*i[n, j]*(real(1) - i[n, j])"]
    for wrong in (body[::-1], (body[0], Let(at("x", "n", "j"), at("di", "n", 0)))):
        with pytest.raises(ValueError, match="cannot be kept in a local"):
            NUMBA.print([Loop(j, 4, wrong, in_locals=("di",))])


def test_bookkeeping_prints_in_the_order_written():
    """loss / N, x - mean and (1 - m) r + m mean print operand by operand: the kernel computes
    what was written, not SymPy's rearrangement (-mean + x)."""
    loss, m, mean, r = local("loss"), sp.Float(0.1), at("mean", "j"), at("r", "j")
    keep = difference(sp.Integer(1), m)
    lines, _ = NUMBA.print([Let(loss, ratio(loss, N)), Let(local("c"), difference(at("x", "n", "j"), mean)),
                            Let(r, as_written(sp.Add, as_written(sp.Mul, keep, r), as_written(sp.Mul, m, mean))),
                            Let(local("K"), 3), Allocate(local("dW1"), (2, 3), zeros=True, comment="dL/dW1")])
    assert lines == ["loss = loss/real(N)", "c = x[n, j] - mean[j]", "r[j] = (real(1) - real(0.1))*r[j] + real(0.1)*mean[j]",
                     "K = 3", "dW1 = np.zeros((2, 3), X.dtype)  # dL/dW1"]


def test_assignments_share_subexpressions_accumulate_and_carry_comments():
    rule = sp.exp(x) * dout
    dx, dg = at("dx", "i"), at("dg", "j")
    lines, helpers = NUMBA.print([Assignments(((dx, rule), (dg, rule * x)),
                                              {"x": at("x", "i"), "dout": at("dout", "i")},
                                              {dg: "summed over the batch"}, frozenset({dg}))])
    assert lines[0] == "t0 = dout[i]*_exp(x[i])"  # the shared exp(x) dout, computed once
    assert lines[1] == "dx[i] = t0"
    assert lines[2] == "dg[j] += t0*x[i]  # summed over the batch"
    assert helpers == {"_exp"}


def test_accumulate_prints_its_expression_as_is_with_the_row_index():
    z = sp.IndexedBase("z")
    lines, _ = NUMBA.print([Accumulate(local("s0"), sp.exp(z[k] - sp.Symbol("zmax", real=True)), {}, row=n)])
    assert lines == ["s0 += _exp(-zmax + z[n, k])"]


def test_calls_and_matrix_products_name_their_helpers():
    X, W = sp.MatrixSymbol("X", 3, 2), sp.MatrixSymbol("W", 2, 2)
    z1, b1 = sp.symbols("z1 b1")
    big, used_big = NUMBA.print([MatrixInto(X * W, z1, {"X": sp.Symbol("h0")}, False, "z1 = h0 W")])
    small, used_small = NUMBA.print([MatrixInto(X * W, z1, {}, True), Call("_add_bias", (z1, b1), "bias")])
    assert big == ["_gemm(h0, W, z1, False, False, False)  # z1 = h0 W"] and used_big == {"_gemm"}
    # a transposed operand is its array and a flag: one compiled _gemm for every product
    dY = sp.MatrixSymbol("dY", 3, 2)
    transposed, _ = NUMBA.print([MatrixInto(X.T * dY, z1, {"dY": sp.Symbol("dz1")}),
                                 MatrixInto(dY * W.T, z1, {"dY": sp.Symbol("dz1")})])
    assert transposed == ["_gemm(X, dz1, z1, True, False, False)", "_gemm(dz1, W, z1, False, True, False)"]
    assert small == ["_dot_loops(X, W, z1)", "_add_bias(z1, b1)  # bias"]
    assert used_small == {"_dot_loops", "_add_bias"}
    # a product without a target allocates in the caller: _dot_loops always writes into out
    from symprop.codegen.printer import KernelPrinter
    assert KernelPrinter(small_matrices=True).print_into(X * W, None) == \
        "_dot_loops(X, W, np.empty((X.shape[0], W.shape[1]), X.dtype))"


def test_a_product_the_printer_has_no_form_for_is_refused_not_printed_as_text():
    """ones^T A is a column sum, which writes its out: added into out it would be wrong; and an
    operand with no printed form (a step's slab read as a column sum's input) is an error, where
    it used to come out as its SymPy text, a kernel that does not compile."""
    from symprop.symbolic.ir import MatrixProduct, Ones, Slab
    out, A, h = sp.Symbol("db1"), sp.Symbol("dz1"), sp.Symbol("hs1")
    lines, used = NUMBA.print([MatrixProduct(out, Ones(N), A)])
    assert lines == ["_column_sums(dz1, db1)"] and used == {"_column_sums"}
    with pytest.raises(ValueError, match="_column_sums writes its out, it does not add"):
        NUMBA.print([MatrixProduct(out, Ones(N), A, accumulate=True)])
    with pytest.raises(ValueError, match=r"no matrix operand is printed for Slab\(hs1, t\)"):
        NUMBA.print([MatrixProduct(out, Ones(N), Slab(h, index("t")))])


def test_source_text_in_a_statement_is_refused():
    import pytest
    with pytest.raises(TypeError, match="Let.value is the text 'loss / real"):
        Let(local("loss"), "loss / real(N)")
    with pytest.raises(TypeError, match="Assignments.target 0 is the text"):
        Assignments((("z1[n, j]", x),))
    with pytest.raises(TypeError, match=r"Assignments.names\['x'\] is the text"):
        Assignments(((at("z1", "n", "j"), x),), {"x": "X[n, j]"})
    with pytest.raises(TypeError, match="Loop.index is the text"):
        Loop("n", N, ())


def test_a_function_prints_its_decorator_docstring_and_body_once_per_statement():
    """A kernel is a Function of statements; the backend's printer writes the decorator its
    ``compiled`` asks for, and a statement shared by two kernels is printed once (same lines)."""
    from symprop.codegen.backend import NUMBA
    from symprop.symbolic.ir import DtypeOf, Flat, Function, InDtype, Invoke, Return, ShapeOf, array, arrays

    X, W, loss, step = array("X"), array("W"), local("loss"), local("step")
    shared = Let(loss, as_written(sp.Mul, loss, sp.Integer(2)))
    printer = NUMBA.printer()
    printed, print_let = [], printer._print_Let
    printer._print_Let = lambda node: printed.append(node) or print_let(node)
    kernel = NUMBA.function(Function("k", (W, X), (DtypeOf(X), ShapeOf((N,), X), Let(step, InDtype(0, X)), shared,
                                                   Invoke("_update", (Flat(W), step)), Return((loss,))),
                                     "One kernel."), printer)
    assert kernel.splitlines() == ["@jit", "def k(W, X):", '    """One kernel."""', "    real = X.dtype.type",
                                   "    N = X.shape[0]", "    step = X.dtype.type(0)", "    loss = loss*real(2)",
                                   "    _update(W.reshape(-1), step)", "    return loss"]
    plain = NUMBA.function(Function("p", arrays("W", "X"), (shared,), compiled=None), printer)
    assert plain.splitlines() == ["def p(W, X):", "    loss = loss*real(2)"]
    assert [node for node in printed if node is shared] == [shared]  # printed for k, its lines reused for p


def test_a_layer_kernel_takes_what_its_statements_read_and_gives_what_they_write():
    """The per-layer kernels printed from a lowering take the arrays their statements read and
    return those they write (a walk over the statements, no text): softmax's backward reads the
    upstream gradient and the saved output, and writes the input's gradient."""
    from symprop.codegen.layer_kernels import reads_and_writes
    from symprop.symbolic.graph import parse_net
    from symprop.symbolic.lower import Lowering
    from symprop.symbolic.ops.builders import FEATURES

    low = Lowering(parse_net("softmax", loss_optional=True, input_width=FEATURES), input_gradient=True)
    (value,) = [name for name in low.values if name != "X"]
    read, written = reads_and_writes(low.backward)
    assert {f"d{value}", value} <= set(read) and "X" not in read
    assert "dX" in written and "dX" not in read
    read, written = reads_and_writes(low.forward)
    assert "X" in read and value in written


# ---- one loop per statement, where one loop would not vectorise -----------------------------
def _gate_lines(stop):
    """An LSTM step's gate, cell and state lines: seven arrays written in one loop over j."""
    t = index("t")
    a = lambda offset: sp.IndexedBase("a")[n, t, j + offset]  # noqa: E731
    gate = lambda name: sp.IndexedBase(name)[n, t, j]  # noqa: E731
    c_before = sp.IndexedBase("c")[n, t - 1, j]
    body = (Let(gate("i"), 1 / (1 + sp.exp(-a(0)))), Let(gate("f"), 1 / (1 + sp.exp(-a(stop)))),
            Let(gate("g"), sp.tanh(a(2 * stop))), Let(gate("o"), 1 / (1 + sp.exp(-a(3 * stop)))),
            Let(gate("c"), c_before * gate("f") + gate("g") * gate("i")), Let(gate("tc"), sp.tanh(gate("c"))),
            Let(gate("h"), gate("o") * gate("tc")))
    return Loop(j, stop, body)


def _loops(lines):
    return [line for line in lines if line.lstrip().startswith("for ")]


def test_a_loop_writing_many_arrays_prints_as_one_loop_per_statement():
    """Seven arrays written: too many overlap checks for LLVM's vectoriser, so each statement
    gets its own loop over j, in the order written, each line unchanged."""
    whole = _gate_lines(256)
    lines, _ = NUMBA.print([whole])
    assert _loops(lines) == ["for j in range(256):"] * 7
    assert [line.strip() for line in lines if not line.startswith("for ")] == [
        line.strip() for line in NUMBA.print([replace(whole, stop=8)])[0][1:]]


def test_a_loop_stays_whole_when_it_is_short_or_writes_few_arrays():
    assert _loops(NUMBA.print([_gate_lines(8)])[0]) == ["for j in range(8):"]  # no vector of 8 to gain
    few = Loop(j, 256, (Let(at("y", "n", "j"), sp.exp(at("x", "n", "j"))),
                        Let(at("z", "n", "j"), at("y", "n", "j") * at("w", "n", "j"))))
    assert _loops(NUMBA.print([few])[0]) == ["for j in range(256):"]


def test_a_loop_stays_whole_where_an_element_is_shared_between_iterations():
    """c[n, t, j - 1] is written by the iteration before: split, every c would be read before
    any was written. The same holds for an offset shorter than the loop (a[n, t, j + 100])."""
    t = index("t")
    whole = _gate_lines(256)
    carried = Let(sp.IndexedBase("h")[n, t, j], sp.IndexedBase("c")[n, t, j - 1])
    assert _loops(NUMBA.print([replace(whole, body=(*whole.body[:-1], carried))])[0]) == ["for j in range(256):"]
    overlapping = Let(sp.IndexedBase("i")[n, t, j + 100], sp.Integer(0))
    assert _loops(NUMBA.print([replace(whole, body=(*whole.body, overlapping))])[0]) == ["for j in range(256):"]
    # offsets a whole loop apart never meet: da[n, t, j] and da[n, t, j + 256] for j < 256 (at 257, j = 256 meets j = 0)
    blocks = tuple(Let(sp.IndexedBase("da")[n, t, j + 256 * b], sp.IndexedBase(g)[n, t, j] * at("s", "n", "j"))
                   for b, g in enumerate("ifgo"))
    assert len(_loops(NUMBA.print([Loop(j, 256, blocks + whole.body)])[0])) == 11
    assert _loops(NUMBA.print([Loop(j, 257, blocks + whole.body)])[0]) == ["for j in range(257):"]


def test_a_split_loop_computes_each_local_again_in_the_piece_that_reads_it():
    """A gate's gradient kept in a local (in_locals) is computed in the loop of the line that
    reads it, with the locals it reads in turn, and in no other loop."""
    t = index("t")
    el = lambda name, offset=0: sp.IndexedBase(name)[n, t, j + offset]  # noqa: E731
    body = [Let(el("dc"), el("dh") * el("o") * (1 - el("tc") ** 2))]
    for block, gate in enumerate("ifgo"):
        body += [Let(el(f"d{gate}"), el("dc") * el(gate) * el("g")),
                 Assignments(((el("da", 64 * block), dout * y * (1 - y)),), {"dout": el(f"d{gate}"), "y": el(gate)})]
    lines, _ = NUMBA.print([Loop(j, 64, tuple(body), in_locals=("di", "df", "dg", "do"))])
    assert _loops(lines) == ["for j in range(64):"] * 5
    pieces = "\n".join(lines).split("for j in range(64):\n")[1:]
    assert [piece.count(" = ") for piece in pieces] == [1, 2, 2, 2, 2]
    assert all(f"    d{gate} = " in piece for gate, piece in zip("ifgo", pieces[1:]))
