"""The interpreter reads lowered statements as transcript lines (symbolic/interpret.py).

Each test runs a few hand-written statements, the kind a lowering writes, and checks the
lines they become: which assignments are lines, which kernel locals are carried along as
formulas, where a value built over several statements is written, and how a chain-rule
statement becomes a local derivative and a product.
"""
import sympy as sp

from symprop.symbolic.interpret import Interpreter
from symprop.symbolic.ir import Accumulate, Assignments, Call, Let, Loop, element as at, index, local
from symprop.symbolic.transcript import Chain, Transcript, tr

n, j, k = index("n"), index("j"), index("k")
N, K = sp.Symbol("N", integer=True, positive=True), sp.Symbol("K", integer=True, positive=True)


def run(statements, given: dict, rows=2, shown=None, shapes=None):
    """The transcript the statements write, from the given elements (key -> value)."""
    t = Transcript("test", tr("test"))
    for key, value in given.items():
        t.given(key, value)
    notes = set()

    def once(note):
        if note.en in notes:
            return None
        notes.add(note.en)
        return note

    def key_of(array, idx):
        if array.startswith("d"):
            return f"dL/d{array[1:]}[{','.join(map(str, idx))}]"
        return f"{array}[{','.join(map(str, idx))}]"

    interpreter = Interpreter(key_of, lambda key, formula, note: t.define(key, formula, note=note), once, {N: rows},
                              shown=shown or {}, shapes=shapes or {}, defined=lambda key: key in t.quantities)
    interpreter.run(statements)
    interpreter.finish()
    return t


def lines(t):
    return [key for key, q in t.quantities.items() if q.formula is not None]


def test_each_assignment_is_a_line_with_the_statements_formula_and_its_note_once():
    x = sp.Symbol("x", real=True)
    note = tr("relu, from its derivation")
    t = run([Loop(n, N, (Loop(j, 2, (Assignments(((at("h", "n", "j"), sp.Max(0, x)),), {"x": at("X", "n", "j")},
                                                 notes={at("h", "n", "j"): note}),)),))],
            {"X[0,0]": 1, "X[0,1]": -2, "X[1,0]": 3, "X[1,1]": -4})
    assert lines(t) == ["h[0,0]", "h[0,1]", "h[1,0]", "h[1,1]"]
    assert t.quantities["h[0,1]"].formula == sp.Max(0, sp.Symbol("X[0,1]"))
    assert [t.value(key) for key in lines(t)] == [1, 0, 3, 0]
    assert t.render("text", 4).count("relu, from its derivation") == 1


def test_a_local_is_carried_into_the_formula_that_reads_it_and_a_running_sum_stays_one_sum():
    total = local("s0")
    statements = [Loop(n, N, (Let(total, sp.Integer(0)), Loop(k, 3, (Accumulate(total, at("X", "n", "k")),)),
                              Loop(k, 3, (Assignments(((at("y", "n", "k"), at("X", "n", "k") - total / 3),)),))))]
    t = run(statements, {f"X[{r},{c}]": 3 * r + c for r in range(2) for c in range(3)})
    assert "s0" not in t.quantities  # a register, not a line
    formula = t.quantities["y[1,0]"].formula
    assert str(formula) == "X[1,0] - (X[1,0] + X[1,1] + X[1,2])/3"
    assert t.value("y[1,0]") == -1 and sum(t.value(f"y[1,{c}]") for c in range(3)) == 0


def test_a_value_built_over_statements_is_one_line_written_when_it_is_complete():
    loss = local("loss")
    statements = [Let(loss, sp.Integer(0), note=tr("the sum of the squares")),
                  Loop(n, N, (Let(loss, at("X", "n", 0) ** 2, augmented=True),)),
                  Let(loss, sp.Mul(loss, sp.Pow(N, -1, evaluate=False), evaluate=False))]
    t = run(statements, {"X[0,0]": 2, "X[1,0]": 4}, shown={loss: ("L", ())})
    assert lines(t) == ["L"]
    assert t.value("L") == 10  # (4 + 16) / 2: the division read the sum so far
    assert "the sum of the squares" in t.render("text", 4)


def test_a_chain_rule_statement_writes_the_local_derivative_then_the_product():
    x, dout = sp.Symbol("x", real=True), sp.Symbol("dout")
    rule = dout * sp.Heaviside(x, 0)
    statement = Assignments(((at("dX", "n", "j"), rule),), {"x": at("X", "n", "j"), "dout": at("dh", "n", "j")},
                            upstream="dout", notes={at("dX", "n", "j"): (tr("local"), tr("chain rule"))})
    t = run([Loop(n, N, (Loop(j, 1, (statement,)),))], {"X[0,0]": 1, "X[1,0]": -1, "dL/dh[0,0]": 5, "dL/dh[1,0]": 7})
    assert lines(t) == ["dh[0,0]/dX[0,0]", "dL/dX[0,0]", "dh[1,0]/dX[1,0]", "dL/dX[1,0]"]
    assert t.quantities["dL/dX[0,0]"].formula == Chain((("dL/dh[0,0]", "dh[0,0]/dX[0,0]"),))
    assert t.value("dL/dX[0,0]") == 5 and t.value("dL/dX[1,0]") == 0


def test_a_gradient_summed_over_the_batch_is_one_chain_after_its_local_derivatives():
    x, g, dout = sp.Symbol("x", real=True), sp.Symbol("g", real=True), sp.Symbol("dout")
    dg = at("dg", "j")
    statements = [Loop(j, 1, (Let(dg, sp.Integer(0)),)), Loop(n, N, (Loop(j, 1, (Assignments(
        ((dg, dout * x),), {"x": at("X", "n", "j"), "g": at("g", "j"), "dout": at("dy", "n", "j")},
        accumulate=frozenset({dg}), upstream="dout"),)),))]
    t = run(statements, {"X[0,0]": 2, "X[1,0]": 3, "g[0]": 1, "dL/dy[0,0]": 10, "dL/dy[1,0]": 100})
    assert lines(t) == ["dy[0,0]/dg[0]", "dy[1,0]/dg[0]", "dL/dg[0]"]
    assert t.value("dL/dg[0]") == 320


def test_a_shown_local_updated_in_a_loop_is_one_line_when_another_value_reads_it():
    zmax, z = local("zmax"), at("z", "n", "k")
    statements = [Loop(n, N, (Let(zmax, at("z", "n", 0)),
                              Loop(k, 3, (Let(zmax, sp.Max(zmax, z, evaluate=False)),), start=1),
                              Loop(k, 3, (Assignments(((at("d", "n", "k"), z - zmax),)),))))]
    t = run(statements, {f"z[{r},{c}]": (c - 1) * (2 * r - 1) for r in range(2) for c in range(3)},
            shown={zmax: ("zmax", (n,))})
    assert lines(t)[:4] == ["zmax[0]", "dL/d[0,0]", "dL/d[0,1]", "dL/d[0,2]"]
    assert t.quantities["zmax[0]"].formula == sp.Max(*(sp.Symbol(f"z[0,{c}]") for c in range(3)))
    assert t.value("zmax[0]") == 1 and t.value("zmax[1]") == 1


def test_a_helper_call_runs_what_it_means_reading_outside_an_array_as_zero():
    """A padded read (a convolution's zero padding) is 0 where the statement says so."""
    def key_of_bounded(array, idx):
        if not 0 <= idx[0] < 2:
            raise IndexError(idx)
        return f"{array}[{idx[0]}]"

    t = Transcript("test", tr("test"))
    for i in range(2):
        t.given(f"X[{i}]", i + 1)
    means = (Loop(j, 2, (Assignments(((at("Y", "j"), sp.IndexedBase("X")[j - 1] + at("X", "j")),),
                                     zero_outside=True),)),)
    interpreter = Interpreter(key_of_bounded, lambda key, formula, note: t.define(key, formula, note=note),
                              lambda note: note, {N: 1})
    interpreter.run([Call("_helper", (sp.Symbol("X"), sp.Symbol("Y")), means=means)])
    interpreter.finish()
    assert t.value("Y[0]") == 1 and t.value("Y[1]") == 3  # X[-1] is the padding's 0
