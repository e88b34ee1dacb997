"""A new op family with parameters of its own, defined in this file alone: the gated unit.

y[n, k] = x[n, k] * sigmoid(a[n, k]),  a[n, k] = sum_i x[n, i] W[i, k] + b[k]

on rows x of F features, with its own weights W (F, F) and bias b (F,). Row centring
(tests/test_new_family.py) has no parameters; this family proves the same seam for one that
has: the op class names its parameters' roles and shapes, SymPy derives the gate's local
derivative and the pre-activation's index rules, and ``lower`` writes typed statements (the
parameters' gradients summed over the batch). From those come ``symprop derive``, the
transcript of a tiny net, the fused training kernel, the checker's verdicts on claims about
dW, and ``symprop generate``'s per-layer kernels, each checked against central differences.
"""
from dataclasses import dataclass

import numpy as np
import pytest
import sympy as sp

from symprop.cli import main
from symprop.codegen.network import load_network
from symprop.symbolic.errors import SympropError
from symprop.symbolic.graph import parse_net
from symprop.symbolic.graph_transcript import graph_transcript
from symprop.symbolic.indexcalc import resolve
from symprop.symbolic.ir import Assignments, Comment, Let, Loop, index
from symprop.symbolic.layers import REGISTRY, N, Derivation, Op, Step, partial
from symprop.symbolic.ops.base import _in_terms_of_output, positive_sizes, real
from symprop.symbolic.ops.builders import CHAIN_NOTE, FEATURES as F, ROW, _loops
from symprop.symbolic.stable import canonical_form
from symprop.symbolic.transcript import tr
from tests.gradcheck import (assert_gradients_are_central_differences, assert_sgd_step_is_the_gradient_step,
                             numerical_gradient, relative_error)
from tests.test_new_family import (assert_right_and_wrong_claims, assert_the_transcript_is_the_kernel,
                                   registered_while)

GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, relative

# the derivation's indices (1-based, as a sum is written) and arrays of one row
i, j, k = (sp.Symbol(name, integer=True, positive=True) for name in "ijk")
x, y, W, b, a, s, dy, da = (sp.IndexedBase(name) for name in ("x", "y", "W", "b", "a", "s", "dy", "da"))
q = sp.Symbol("q", integer=True, positive=True)  # a free index, apart from the sums'


@dataclass(frozen=True)
class Gated(Op):
    """y = x * sigmoid(x W + b) on each row: a gate per feature, learned from the whole row."""

    name: str = "test-gated"
    summary: str = "gated unit y = x * sigmoid(x W + b) (an op family defined in tests/test_new_family_gated.py)"
    inputs: tuple = ("x", "W", "b")
    starts_layer = True  # its own weights: W2, b2 and the value h2 after a first affine layer

    def parse_args(self, inner, where):
        """test-gated, or test-gated(F) where it starts a network and so fixes the width."""
        if inner is None:
            return ()
        return positive_sizes(inner, (1,), where, f"{self.name} takes at most one size, e.g. {self.name}(4)")

    def input_width(self, args):
        return args[0] if args else None

    def output_width(self, args, width):
        return args[0] if args else width

    def param_shapes(self, args, width):
        return [("W", (width, width)), ("b", (width,))]

    def derive(self) -> Derivation:
        """The gate's local derivative by SymPy's diff, read off the saved gate s; the
        pre-activation's index rules by differentiating its sum and sifting the deltas."""
        u, gate = real("a"), real("s")
        raw_gate = 1 / (1 + sp.exp(-u))
        local = sp.diff(raw_gate, u)
        by_gate = _in_terms_of_output(canonical_form(local, [u]), canonical_form(raw_gate, [u]), gate, [u])
        pre = sp.Sum(x[i] * W[i, k], (i, 1, F)) + b[k]
        gated = x[k] * s[k]
        rule_da = dy[k] * sp.diff(gated, s[k]) * by_gate.xreplace({gate: s[k]})

        def back(of, wrt, upstream):
            """sum over k of upstream[k] * d of[k] / d wrt: the chain rule, deltas sifted."""
            return resolve(sp.Sum(upstream[k] * sp.diff(of, wrt), (k, 1, F)))
        backward = {"dx[j]": back(gated, x[j], dy) + back(pre, x[j], da),
                    "dW[j,k]": back(pre, W[j, q], da).subs(q, k), "db[j]": back(pre, b[j], da), "da[k]": rule_da}
        sums = "summed over the batch: every row shares W and b"
        steps = [Step("forward", sp.Symbol("a[k]"), pre, "the pre-activation: each gate reads the whole row"),
                 Step("forward", sp.Symbol("s[k]"), canonical_form(raw_gate, [u]).xreplace({u: a[k]}),
                      "the gate, saved for the backward pass"),
                 Step("forward", sp.Symbol("y[k]"), gated, "the unit's output"),
                 Step("local derivative ds/da", partial("s", "a"), local, "SymPy's diff"),
                 Step("in terms of the saved gate", partial("s", "a"), by_gate, "no exp, finite for every a"),
                 Step("backward da", sp.Symbol("da[k]"), rule_da,
                      "chain rule: the upstream dy[k] times y[k]'s local derivative x[k] ds/da"),
                 Step("backward dx", sp.Symbol("dx[j]"), backward["dx[j]"],
                      "x[j] reaches the loss through y[j] and through every a[k]; Kronecker deltas sifted"),
                 Step("backward dW", sp.Symbol("dW[j,k]"), backward["dW[j,k]"], sums),
                 Step("backward db", sp.Symbol("db[j]"), backward["db[j]"], sums)]
        return Derivation(self.name, self.summary, self.inputs,
                          forward={"a[k]": pre, "s[k]": steps[1].rhs, "y[k]": gated},
                          backward=backward, saved=("x", "s", "W"), steps=steps)

    def lower(self, lowering, use):
        """Per row: the pre-activation summed term by term, the gate, the output; back, dL/da by
        the chain rule, then dx, and each row's share of dW and db."""
        d, width, position = lowering.derivation(self), lowering.width, use.position
        source = lowering.values[-1]
        Wn, bn = lowering.names.params["W"], lowering.names.params["b"]
        lowering.params += [(Wn, (width, width)), (bn, (width,))]
        out = lowering.buffer(lowering.names.value, (N, width))
        pre, gate = (lowering.buffer(f"{stem}{position}", (N, width)) for stem in ("pre", "gate"))
        dpre = lowering.buffer(f"d{pre}", (N, width))
        dW, db = lowering.buffer(f"d{Wn}", (width, width)), lowering.buffer(f"d{bn}", (width,))
        per_row = {"x": source, "a": pre, "s": gate, "y": out, "dy": f"d{out}", "da": dpre, "dx": f"d{source}"}
        rules = RowRules(per_row, {"W": Wn, "b": bn}, width)
        at = rules.at
        gate_note = tr(f"{use.text}: the gate, sigmoid of the pre-activation", f"{use.text}：门，预激活的 sigmoid")
        forward = [*rules.summed(a[k], d.forward["a[k]"]), *rules.each((k,), Assignments(
            ((at(s[k]), at(d.forward["s[k]"])), (at(y[k]), at(d.forward["y[k]"]))), notes={at(s[k]): gate_note}))]
        local_note = tr(f"local derivative of {use.text}'s output by its pre-activation, from its derived rule",
                        f"{use.text} 的输出对预激活的局部导数（由其推导得到）")
        upstream = real("dout")
        chain_rule = at(d.backward["da[k]"].xreplace({dy[k]: upstream}))  # upstream times the local derivative
        backward = [*rules.each((k,), Assignments(((at(da[k]), chain_rule),), {"dout": at(dy[k])}, upstream="dout",
                                                  notes={at(da[k]): (local_note, CHAIN_NOTE)}))]
        if source != "X" or lowering.input_gradient:  # a step never needs the gradient of the input data X
            lowering.buffer(f"d{source}", (N, width))
            backward += rules.summed(sp.IndexedBase("dx")[j], d.backward["dx[j]"])
        parameters = {dW: (W[j, k], d.backward["dW[j,k]"]), db: (b[j], d.backward["db[j]"])}
        lowering.forward += [Comment(f"layer {position}: {use.text}"), Loop(ROW, N, tuple(forward))]
        lowering.prepend_backward([Comment(f"layer {position}: {use.text}"), *rules.zeros(parameters),
                                   Loop(ROW, N, (*backward, *rules.batch_sums(parameters)))])
        lowering.values.append(out)


class RowRules:
    """A family's index rules for one row, as statements over a kernel's arrays: a per-row array
    gains the row index n (x[k] -> z1[n, k]), a parameter keeps its indices (W[j, k] -> W2[j, k])
    and each sum in a rule becomes loops that add one term at a time (a kernel cannot print a
    Sum; the transcript writes the whole sum as one line)."""

    def __init__(self, per_row: dict, params: dict, width):
        self.per_row, self.params, self.width = per_row, params, width

    def at(self, expr):
        def kernel_element(e):
            name, indices = e.base.label.name, _loop_indices(e.indices)
            if name in self.per_row:
                return sp.IndexedBase(self.per_row[name])[(ROW, *indices)]
            return sp.IndexedBase(self.params[name])[indices]
        return expr.xreplace({e: kernel_element(e) for e in expr.atoms(sp.Indexed)})

    def each(self, indices, *body) -> tuple:
        """for each of the indices (outermost first), over the width: body"""
        return _loops([(v, self.width) for v in _loop_indices(indices)], body)

    def summed(self, target, rule, start=True) -> tuple:
        """target = rule, started at 0 (start=False: added to, a batch sum's next row)."""
        return self.each(target.indices, *([Let(self.at(target), sp.Integer(0))] if start else []),
                         *self._terms(target, rule))

    def _terms(self, target, rule) -> list:
        out = []
        for term in sp.Add.make_args(rule):
            sums = [factor for factor in sp.Mul.make_args(term) if isinstance(factor, sp.Sum)]
            if sums:  # c * Sum(f, limits): for each limit, target += c f
                total, = sums
                out += self.each([v for v, _, _ in total.limits], *self._terms(target, term / total * total.function))
            else:
                out.append(_add(self.at(target), self.at(term)))
        return out

    def zeros(self, parameters) -> list:
        """Each parameter's gradient set to 0 before the rows add their shares: {gradient array:
        (the parameter's element, its rule)}."""
        return [s for gradient, (of, _) in parameters.items()
                for s in self.each(of.indices, Let(sp.IndexedBase(gradient)[_loop_indices(of.indices)],
                                                   sp.Integer(0)))]

    def batch_sums(self, parameters) -> list:
        """Each parameter's gradient += this row's share, its rule."""
        return [s for gradient, (of, rule) in parameters.items()
                for s in self.each(of.indices, _add(sp.IndexedBase(gradient)[_loop_indices(of.indices)],
                                                    self.at(rule)))]


def _loop_indices(indices) -> tuple:
    """The derivation's indices (positive integers, from 1) as the kernel's loop indices (from 0)."""
    return tuple(index(v.name) for v in indices)


def _add(target, value):
    """target += value: one term of a sum (the interpreter writes the whole sum as one line)."""
    return Assignments(((target, value),), accumulate=frozenset({target}))


SPEC = "affine(2,2) test-gated affine(2,1) squared-error"  # the gated layer inside: its dx is used
VALUES = {"X": [[0.5, -1], [2, 0.25]], "T": [[1], [-0.5]], "W1": [[1, -0.5], [0.5, 1]], "b1": [0, 0.5],
          "W2": [[0.5, -1], [1, 0.25]], "b2": [0.25, -0.5], "W3": [[1], [-1]], "b3": [0.25]}


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    yield from registered_while(Gated(), tmp_path_factory)


@pytest.fixture(scope="module")
def net(registered):
    return load_network(SPEC)


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def rule_at(rule, size, given, **indices):
    """A derived index rule at F = size and the free indices given (from 1), each of its arrays'
    elements read off the numbers in ``given`` (by the array's name)."""
    expr = rule.subs(F, size).xreplace({v: sp.Integer(indices[v.name]) for v in rule.free_symbols
                                        if v.name in indices}).doit()
    return float(expr.xreplace({e: given[e.base.label.name][tuple(int(v) - 1 for v in e.indices)]
                                for e in expr.atoms(sp.Indexed)}))


def test_sympy_derives_the_gated_rules(registered):
    """The derived index rules are the textbook ones, and at F = 3 they are SymPy's own
    gradient of the whole unit written out element by element (no sums, no deltas)."""
    d = REGISTRY.derive("test-gated")
    assert sp.simplify(d.backward["da[k]"] - dy[k] * x[k] * s[k] * (1 - s[k])) == 0
    assert d.backward["dx[j]"] == dy[j] * s[j] + sp.Sum(W[j, k] * da[k], (k, 1, F))
    assert (d.backward["dW[j,k]"], d.backward["db[j]"]) == (x[j] * da[k], da[j])
    size, numbers = 3, np.random.default_rng(7)
    given = {"x": numbers.normal(size=size), "W": numbers.normal(size=(size, size)), "b": numbers.normal(size=size),
             "dy": numbers.normal(size=size)}
    xv, bv = sp.symbols("x1:4", real=True), sp.symbols("b1:4", real=True)
    Wv = sp.Matrix(size, size, sp.symbols("W1:10", real=True))
    pre = [sum(xv[r] * Wv[r, c] for r in range(size)) + bv[c] for c in range(size)]
    loss = sum(given["dy"][c] * xv[c] / (1 + sp.exp(-pre[c])) for c in range(size))  # sum_k dy[k] y[k]
    at = {**dict(zip(xv, given["x"])), **dict(zip(Wv, given["W"].flat)), **dict(zip(bv, given["b"]))}
    given["s"] = sigmoid(given["x"] @ given["W"] + given["b"])

    def rule(name, **indices):
        return rule_at(d.backward[name], size, given, **indices)
    given["da"] = np.array([rule("da[k]", k=c) for c in range(1, size + 1)])
    for r in range(1, size + 1):
        assert rule("dx[j]", j=r) == pytest.approx(float(loss.diff(xv[r - 1]).xreplace(at)), rel=1e-12)
        assert rule("db[j]", j=r) == pytest.approx(float(loss.diff(bv[r - 1]).xreplace(at)), rel=1e-12)
        for c in range(1, size + 1):
            whole = float(loss.diff(Wv[r - 1, c - 1]).xreplace(at))
            assert rule("dW[j,k]", j=r, k=c) == pytest.approx(whole, rel=1e-12)


def test_symprop_derive_shows_the_gated_family(registered, capsys):
    assert main(["derive", "test-gated"]) == 0
    out = capsys.readouterr().out
    assert "ds/da = s*(1 - s)" in out and "dW[j,k] = da[k]*x[j]" in out


def test_a_spec_may_start_with_it_and_a_wrong_width_is_one_line(registered):
    assert parse_net("test-gated(2) affine(2,1) squared-error").shapes[:2] == [2, 2]
    with pytest.raises(SympropError, match=r"layer 2 'test-gated\(3\)'.*takes 3 inputs but the layer before gives 2"):
        parse_net("affine(1,2) test-gated(3) affine(3,1) squared-error")


def test_the_fused_kernel_agrees_with_central_differences(net, rng):
    params = [rng.normal(0, 1, shape) for shape in net.PARAM_SHAPES]
    assert net.PARAM_NAMES == ("W1", "b1", "W2", "b2", "W3", "b3") and net.PARAM_SHAPES[2] == (2, 2)
    X, T = rng.normal(size=(5, 2)), rng.normal(size=(5, 1))
    assert_gradients_are_central_differences(net, params, X, T, GRADCHECK_TOLERANCE)
    assert_sgd_step_is_the_gradient_step(net, params, X, T)


def forward_in_numpy(values):
    """The tiny net's values, written independently: z1, the gated layer's pre-activation and
    gate, h2 and the loss."""
    v = {name: np.array(value, dtype=np.float64) for name, value in values.items()}
    z1 = v["X"] @ v["W1"] + v["b1"]
    pre = z1 @ v["W2"] + v["b2"]
    h2 = z1 * sigmoid(pre)
    z3 = h2 @ v["W3"] + v["b3"]
    return z1, sigmoid(pre), h2, float(np.sum((z3 - v["T"]) ** 2) / 2)


def test_the_transcript_is_the_lowering_run_and_agrees_with_the_kernel(net):
    t = graph_transcript(parse_net(SPEC), VALUES, learning_rate="1/10")
    text = t.render("text", 6, "en")
    assert "the gate, sigmoid of the pre-activation" in text  # the note the lowering gave its statement
    assert "pre2[0,1] = b2[1] + W2[0,1]*z1[0,0] + W2[1,1]*z1[0,1]" in text  # the derived sum, written out
    assert_the_transcript_is_the_kernel(t, net, VALUES)
    _, _, h2, independent_loss = forward_in_numpy(VALUES)
    assert float(t.value("L")) == pytest.approx(independent_loss, rel=1e-12)
    for n, c in np.ndindex(h2.shape):
        assert float(t.value(f"h2[{n},{c}]")) == pytest.approx(h2[n, c], rel=1e-12)


def test_the_checker_reads_claims_about_the_gated_layers_weights(registered, tmp_path):
    """A learner's net file using the family: a right dW claim is right; one that forgot the
    gate's derivative s (1 - s) is named as the first wrong step."""
    t = graph_transcript(parse_net(SPEC), VALUES)
    z1, _, _, _ = forward_in_numpy(VALUES)
    dh2 = np.array([[float(t.value(f"dL/dh2[{n},{c}]")) for c in range(2)] for n in range(2)])
    forgot_the_gate_derivative = float(np.sum(z1[:, 1] * dh2[:, 0] * z1[:, 0]))  # dW2[1,0] without s (1 - s)
    assert abs(forgot_the_gate_derivative - float(t.value("dL/dW2[1,0]"))) > 1e-3
    assert_right_and_wrong_claims(tmp_path, SPEC, VALUES, ("dL/dW2[0,1]", float(t.value("dL/dW2[0,1]"))),
                                  ("dL/dW2[1,0]", forgot_the_gate_derivative))


def test_symprop_generate_prints_its_per_layer_kernels_from_the_lowering(registered, tmp_path, rng):
    """`symprop generate` with the family registered writes every module (into a temporary
    folder here); its per-layer kernels take the parameters by their roles, agree with numpy and
    with central differences for x, W and b, and leave their inputs alone."""
    from symprop.codegen import files

    assert main(["generate", "--directory", str(tmp_path / "generated")]) == 0
    layers = files.import_generated("layers_with_gated", tmp_path / "generated" / "layers.py")
    forward, backward = layers.test_gated_forward, layers.test_gated_backward
    x, Wv, bv, upstream = (rng.normal(size=shape) for shape in ((4, 3), (3, 3), (3,), (4, 3)))
    y, pre, gate = forward(x, Wv, bv)
    np.testing.assert_allclose(pre, x @ Wv + bv, rtol=1e-12)
    np.testing.assert_allclose(y, x * sigmoid(x @ Wv + bv), rtol=1e-12)
    given = [value.copy() for value in (upstream, x, gate, Wv)]
    dx, dW, db = backward(upstream, x, gate, Wv)
    for before, after in zip(given, (upstream, x, gate, Wv)):
        np.testing.assert_array_equal(before, after)  # backward never writes its inputs
    arguments = [x, Wv, bv]
    for position, (name, grad) in enumerate(zip("xWb", (dx, dW, db))):
        def objective(value, position=position):
            trial = [*arguments[:position], value, *arguments[position + 1:]]
            return float(np.sum(forward(*trial)[0] * upstream))
        assert relative_error(grad, numerical_gradient(objective, arguments[position])) < GRADCHECK_TOLERANCE, name
