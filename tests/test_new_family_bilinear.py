"""A second op family with parameters, defined in this file alone: a bilinear form of the row.

y[n, k] = sum_i sum_j x[n, i] W[i, j, k] x[n, j] + b[k]

with a weight of three axes, W (F, F, F), and a bias b (F,). Where the gated unit
(tests/test_new_family_gated.py) has a square weight, this family has a weight of rank 3 and
an input that enters twice, so its backward rule for x has two terms (the product rule), both
derived by SymPy. Networks are chains of one-input layers, so both of the bilinear map's
arguments are the same row here. The same readers follow from its op class and lowering:
``symprop derive``, a transcript equal to the fused kernel, the kernel against central
differences, the checker on a claim that kept only one of the product rule's terms, and
``symprop generate``'s per-layer kernels.
"""
from dataclasses import dataclass

import numpy as np
import pytest
import sympy as sp

from symprop.cli import main
from symprop.codegen.network import load_network
from symprop.symbolic.graph import parse_net
from symprop.symbolic.graph_transcript import graph_transcript
from symprop.symbolic.indexcalc import resolve
from symprop.symbolic.ir import Comment, Loop
from symprop.symbolic.layers import REGISTRY, N, Derivation, Op, Step
from symprop.symbolic.ops.builders import FEATURES as F, ROW
from tests.gradcheck import assert_gradients_are_central_differences, numerical_gradient, relative_error
from tests.test_new_family import (assert_right_and_wrong_claims, assert_the_transcript_is_the_kernel,
                                   registered_while)
from tests.test_new_family_gated import RowRules, rule_at

GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, relative

i, j, k, m, p, q, r = (sp.Symbol(name, integer=True, positive=True) for name in "ijkmpqr")
x, y, W, b, dy = (sp.IndexedBase(name) for name in ("x", "y", "W", "b", "dy"))


@dataclass(frozen=True)
class Bilinear(Op):
    """y[k] = x^T W[:, :, k] x + b[k] on each row: every output a quadratic form of the row."""

    name: str = "test-bilinear"
    summary: str = "bilinear form y[k] = x W[k] x + b[k] (an op family defined in tests/test_new_family_bilinear.py)"
    inputs: tuple = ("x", "W", "b")
    starts_layer = True

    def param_shapes(self, args, width):
        return [("W", (width, width, width)), ("b", (width,))]

    def derive(self) -> Derivation:
        """Each rule the chain rule's sum over the outputs k, differentiated by SymPy and its
        Kronecker deltas sifted: x appears twice, so dx has a term for each appearance."""
        forward = sp.Sum(x[i] * W[i, j, k] * x[j], (i, 1, F), (j, 1, F)) + b[k]

        def back(wrt):
            return resolve(sp.Sum(dy[k] * sp.diff(forward, wrt), (k, 1, F)))
        backward = {"dx[m]": back(x[m]), "dW[p,q,r]": back(W[p, q, r]), "db[r]": back(b[r])}
        steps = [Step("forward", sp.Symbol("y[k]"), forward, "both arguments of the bilinear map are the row x"),
                 Step("backward dx", sp.Symbol("dx[m]"), backward["dx[m]"],
                      "product rule: x[m] is the first argument in one term, the second in the other"),
                 *(Step(f"backward {name[:2]}", sp.Symbol(name), backward[name],
                        "one row's share; summed over the batch: every row shares W and b")
                   for name in ("dW[p,q,r]", "db[r]"))]
        return Derivation(self.name, self.summary, self.inputs, {"y[k]": forward}, backward, ("x", "W"), steps)

    def lower(self, lowering, use):
        """Per row: each output summed term by term; back, dx's two sums, each row's share of dW and db."""
        d, width = lowering.derivation(self), lowering.width
        source = lowering.values[-1]
        Wn, bn = lowering.names.params["W"], lowering.names.params["b"]
        lowering.params += [(Wn, (width, width, width)), (bn, (width,))]
        out = lowering.buffer(lowering.names.value, (N, width))
        dW, db = lowering.buffer(f"d{Wn}", (width, width, width)), lowering.buffer(f"d{bn}", (width,))
        rules = RowRules({"x": source, "y": out, "dy": f"d{out}", "dx": f"d{source}"}, {"W": Wn, "b": bn}, width)
        forward = rules.summed(y[k], d.forward["y[k]"])
        backward = []
        if source != "X" or lowering.input_gradient:  # a step never needs the gradient of the input data X
            lowering.buffer(f"d{source}", (N, width))
            backward += rules.summed(sp.IndexedBase("dx")[m], d.backward["dx[m]"])
        parameters = {dW: (W[p, q, r], d.backward["dW[p,q,r]"]), db: (b[r], d.backward["db[r]"])}
        head = Comment(f"layer {use.position}: {use.text}")
        lowering.forward += [head, Loop(ROW, N, tuple(forward))]
        lowering.prepend_backward([head, *rules.zeros(parameters),
                                   Loop(ROW, N, (*backward, *rules.batch_sums(parameters)))])
        lowering.values.append(out)


SPEC = "affine(2,2) test-bilinear affine(2,1) squared-error"  # inside a net: its dx is used
VALUES = {"X": [[0.5, -1], [2, 0.25]], "T": [[1], [-0.5]], "W1": [[1, -0.5], [0.5, 1]], "b1": [0, 0.5],
          "W2": [[[0.5, -1], [1, 0.25]], [[0, 0.5], [-0.5, 1]]], "b2": [0.25, -0.5], "W3": [[1], [-1]], "b3": [0.25]}


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    yield from registered_while(Bilinear(), tmp_path_factory)


def test_sympy_derives_the_product_rule_and_symprop_derive_shows_it(registered, capsys):
    """Both of dx's terms, and at F = 2 every rule is SymPy's gradient of the written-out form."""
    d = REGISTRY.derive("test-bilinear")
    assert d.backward["dx[m]"] == (sp.Sum(dy[k] * sp.Sum(W[i, m, k] * x[i], (i, 1, F)), (k, 1, F))
                                   + sp.Sum(dy[k] * sp.Sum(W[m, j, k] * x[j], (j, 1, F)), (k, 1, F)))
    size, numbers = 2, np.random.default_rng(11)
    given = {"x": numbers.normal(size=size), "W": numbers.normal(size=(size,) * 3), "dy": numbers.normal(size=size)}
    xv, bv = sp.symbols("x1:3", real=True), sp.symbols("b1:3", real=True)
    weights = sp.symbols("W1:9", real=True)
    Wv = sp.Array(weights, (size,) * 3)  # row-major, as numpy's
    loss = sum(given["dy"][c] * (sum(xv[a] * Wv[a, e, c] * xv[e] for a in range(size) for e in range(size)) + bv[c])
               for c in range(size))  # sum_k dy[k] y[k]
    at = {**dict(zip(xv, given["x"])), **dict(zip(weights, given["W"].flat))}
    for first in range(1, size + 1):
        whole = float(loss.diff(xv[first - 1]).xreplace(at))
        assert rule_at(d.backward["dx[m]"], size, given, m=first) == pytest.approx(whole, rel=1e-12)
        assert rule_at(d.backward["db[r]"], size, given, r=first) == given["dy"][first - 1]
        for second, third in np.ndindex(size, size):
            whole = float(loss.diff(Wv[first - 1, second, third]).xreplace(at))
            share = rule_at(d.backward["dW[p,q,r]"], size, given, p=first, q=second + 1, r=third + 1)
            assert share == pytest.approx(whole, rel=1e-12)
    assert main(["derive", "test-bilinear"]) == 0
    assert "dW[p,q,r] = dy[r]*x[p]*x[q]" in capsys.readouterr().out


def test_the_fused_kernel_agrees_with_central_differences_and_the_transcript(registered, rng):
    net = load_network(SPEC)
    assert net.PARAM_SHAPES[2] == (2, 2, 2)
    params = [rng.normal(0, 1, shape) for shape in net.PARAM_SHAPES]
    X, T = rng.normal(size=(5, 2)), rng.normal(size=(5, 1))
    assert_gradients_are_central_differences(net, params, X, T, GRADCHECK_TOLERANCE)
    t = graph_transcript(parse_net(SPEC), VALUES, learning_rate="1/10")
    assert "dL/dW2[1,0,1] = " in t.render("text", 6, "en")  # a weight of three axes, element by element
    assert_the_transcript_is_the_kernel(t, net, VALUES)
    v = {name: np.array(value, dtype=np.float64) for name, value in VALUES.items()}
    z1 = v["X"] @ v["W1"] + v["b1"]
    h2 = np.einsum("ni,ijk,nj->nk", z1, v["W2"], z1) + v["b2"]  # the same layer, written independently
    assert [float(t.value(f"h2[{n},{c}]")) for n, c in np.ndindex(h2.shape)] == pytest.approx(h2.ravel(), rel=1e-12)


def test_the_checker_names_a_gradient_that_kept_one_term_of_the_product_rule(registered, tmp_path):
    t = graph_transcript(parse_net(SPEC), VALUES)
    v = {name: np.array(value, dtype=np.float64) for name, value in VALUES.items()}
    z1 = v["X"] @ v["W1"] + v["b1"]
    dh2 = np.array([[float(t.value(f"dL/dh2[{n},{c}]")) for c in range(2)] for n in range(2)])
    one_term = float(np.einsum("k,mjk,j->m", dh2[0], v["W2"], z1[0])[0])  # dL/dz1[0,0] without sum_i W[i,m,k] x[i]
    assert abs(one_term - float(t.value("dL/dz1[0,0]"))) > 1e-3
    assert_right_and_wrong_claims(tmp_path, SPEC, VALUES, ("dL/dW2[0,1,1]", float(t.value("dL/dW2[0,1,1]"))),
                                  ("dL/dz1[0,0]", one_term))


def test_symprop_generate_prints_its_per_layer_kernels_from_the_lowering(registered, tmp_path, rng):
    """Its per-layer kernels, from `symprop generate` into a temporary folder: the forward is
    the einsum, and the backward agrees with central differences for x, W and b."""
    from symprop.codegen import files

    assert main(["generate", "--directory", str(tmp_path / "generated")]) == 0
    layers = files.import_generated("layers_with_bilinear", tmp_path / "generated" / "layers.py")
    forward, backward = layers.test_bilinear_forward, layers.test_bilinear_backward
    arguments = [rng.normal(size=shape) for shape in ((4, 3), (3, 3, 3), (3,))]
    upstream = rng.normal(size=(4, 3))
    xv, Wv, bv = arguments
    np.testing.assert_allclose(forward(*arguments), np.einsum("ni,ijk,nj->nk", xv, Wv, xv) + bv, rtol=1e-12)
    given = [value.copy() for value in (upstream, xv, Wv)]
    gradients = backward(upstream, xv, Wv)
    for before, after in zip(given, (upstream, xv, Wv)):
        np.testing.assert_array_equal(before, after)  # backward never writes its inputs
    for position, (name, grad) in enumerate(zip("xWb", gradients)):
        def objective(value, position=position):
            trial = [*arguments[:position], value, *arguments[position + 1:]]
            return float(np.sum(forward(*trial) * upstream))
        assert relative_error(grad, numerical_gradient(objective, arguments[position])) < GRADCHECK_TOLERANCE, name
