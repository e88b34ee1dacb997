"""A new op *family*, defined in this file alone: an op class and its lowering, side by side.

Row centring, y[n, j] = x[n, j] - (1/K) sum_k x[n, k], has an index structure none of the
built-in families has the same way (each output reads the whole row). SymPy derives its
backward rule here; its ``lower`` method writes typed statements. From those two pieces come
the derivation shown by ``symprop derive``, the transcript of a tiny net using it (the
interpreter runs the lowered statements), the fused training kernel (the code generator
prints them), a central-difference check, the checker's verdicts on claims about it and
``symprop generate`` with the family registered (its per-layer kernels printed from the
lowering of a one-node graph).
"""
from dataclasses import dataclass

import numpy as np
import pytest
import sympy as sp

from symprop.cli import main
from symprop.codegen.network import load_network
from symprop.symbolic.checker import check, claim_from
from symprop.symbolic.graph import parse_net
from symprop.symbolic.graph_transcript import graph_transcript
from symprop.symbolic.ir import Comment, Let, Loop, array, element
from symprop.symbolic.layers import REGISTRY, K, N, Derivation, Op
from symprop.symbolic.ops.builders import ROW, row_reduction, _row_index
from symprop.symbolic.transcript import tr
from tests.gradcheck import numerical_gradient, parameter_loss, relative_error

GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, relative


@dataclass(frozen=True)
class RowCentre(Op):
    """Each row minus its mean."""

    name: str = "test-row-centre"
    summary: str = "each row minus its mean (an op family defined in tests/test_new_family.py)"
    inputs: tuple = ("x",)

    def derive(self) -> Derivation:
        """SymPy derives dx from the forward formula: dx[j] = sum_i dy[i] dy[i]/dx[j]."""
        i, j, k = (sp.Symbol(name, integer=True, positive=True) for name in "ijk")
        x, dy = sp.IndexedBase("x"), sp.IndexedBase("dy")
        y = x[i] - sp.Sum(x[k], (k, 1, K)) / K
        vjp = sp.simplify(sp.Sum(dy[i] * sp.diff(y, x[j]), (i, 1, K)).doit())
        (dx, _), _ = vjp.args  # Piecewise((rule, j <= K), (0, True)): j is always in range
        return Derivation(self.name, self.summary, self.inputs, forward={"y[k]": y.xreplace({i: k, k: i})},
                          backward={"dx[j]": dx}, saved=())

    def lower(self, lowering, use):
        """Per row: the sum as an accumulation, then each element; back, the derived rule."""
        d = self.derive()
        source, out = lowering.values[-1], lowering.buffer(lowering.names.value, (N, lowering.width))
        dsource = lowering.buffer(f"d{source}", (N, lowering.width))
        y, dx = element(out, "n", "k"), element(dsource, "n", "k")
        forward = row_reduction([(y, _row_index(d.forward["y[k]"]))], {"x": array(source)},
                                notes={y: tr(f"{use.text}: the row minus its mean", f"{use.text}：该行减去其均值")})
        backward = row_reduction([(dx, _row_index(d.backward["dx[j]"]))], {"dy": array(f"d{out}")},
                                 notes={dx: tr("its derived rule: dy minus the row's mean of dy",
                                               "推导出的规则：dy 减去该行 dy 的均值")})
        lowering.forward += [Comment(f"layer {use.position}: {use.text}"), Let(K, lowering.width),
                             Loop(ROW, N, tuple(forward))]
        lowering.prepend_backward([Comment(f"layer {use.position}: {use.text}"), Let(K, lowering.width),
                                   Loop(ROW, N, tuple(backward))])
        lowering.values.append(out)


SPEC = "affine(2,3) test-row-centre tanh affine(3,1) squared-error"
VALUES = {"X": [[0.5, -1], [2, 0.25]], "T": [[1], [-0.5]], "W1": [[1, -0.5, 0.25], [0.5, 1, -1]],
          "b1": [0, 0.5, -0.25], "W2": [[1], [-1], [0.5]], "b2": [0.25]}


@pytest.fixture
def registered(in_run_kernel_cache):
    """The family in the registry for one test; its network is generated into the run's cache,
    so the two kernel tests compile it once."""
    op = REGISTRY.register(RowCentre())
    yield op
    REGISTRY.remove(op.name)


def test_sympy_derives_the_textbook_rule(registered):
    d = REGISTRY.derive("test-row-centre")
    j, i = sp.Symbol("j", integer=True, positive=True), sp.Symbol("i", integer=True, positive=True)
    dy = sp.IndexedBase("dy")
    assert sp.simplify(d.backward["dx[j]"] - (dy[j] - sp.Sum(dy[i], (i, 1, K)).doit() / K)) == 0


def test_symprop_derive_shows_the_new_family(registered, capsys):
    assert main(["derive", "test-row-centre"]) == 0
    assert "dx[j]" in capsys.readouterr().out


def test_the_fused_kernel_agrees_with_central_differences(registered, rng):
    net = load_network(SPEC)
    params = [rng.normal(0, 1, shape) for shape in net.PARAM_SHAPES]
    X, T = rng.normal(size=(5, 2)), rng.normal(size=(5, 1))
    loss, *grads = net.loss_and_grads(*params, X, T)
    for k, (name, grad) in enumerate(zip(net.PARAM_NAMES, grads)):
        numeric = numerical_gradient(parameter_loss(net, params, k, X, T), params[k])
        assert relative_error(grad, numeric) < GRADCHECK_TOLERANCE, name


def test_the_transcript_is_the_lowering_run_and_agrees_with_the_kernel(registered):
    t = graph_transcript(parse_net(SPEC), VALUES, learning_rate="1/10")
    text = t.render("text", 6, "en")
    assert "the row minus its mean" in text  # the note the lowering gave its statement
    net = load_network(SPEC)
    params = [np.array(VALUES[name], dtype=np.float64) for name in net.PARAM_NAMES]
    loss, *grads = net.loss_and_grads(*params, np.array(VALUES["X"], float), np.array(VALUES["T"], float))
    assert float(t.value("L")) == pytest.approx(loss, rel=1e-12)
    for name, grad in zip(net.PARAM_NAMES, grads):
        for index in np.ndindex(grad.shape):
            key = f"dL/d{name}[{','.join(map(str, index))}]"
            assert float(t.value(key)) == pytest.approx(grad[index], rel=1e-12, abs=1e-15), key
    # the centred row sums to zero, exactly
    assert sum(t.value(f"h1[0,{j}]") for j in range(3)) == 0


def test_the_checker_reads_claims_about_the_new_family(registered, tmp_path):
    """A learner's net file using the family: a right claim is right, a wrong one is named."""
    t = graph_transcript(parse_net(SPEC), VALUES)
    rows = "\n".join(f"{name} = {value!r}" for name, value in VALUES.items())
    path = tmp_path / "centred.toml"
    path.write_text(f'title = "centred"\nnet = "{SPEC}"\n[values]\n{rows}\nlearning_rate = 0.1\n', encoding="utf-8")
    exact = float(t.value("dL/dz1[1,2]"))
    report = check(str(path), [claim_from("dL/dz1[1,2]", f"{exact:.9f}", "claim 1"),
                               claim_from("h1[0,1]", f"{float(t.value('h1[0,1]')) + 0.5:.9f}", "claim 2")])
    assert not report.problems, report.problems
    verdicts = {v.key: v for v in report.verdicts}
    assert verdicts["dL/dz1[1,2]"].right and not verdicts["h1[0,1]"].right
    assert report.first_wrong == "h1[0,1]"


def test_symprop_generate_prints_its_per_layer_kernels_from_the_lowering(registered, tmp_path, rng):
    """`symprop generate` with the family registered writes every module (into a temporary
    folder here); its per-layer kernels agree with central differences and leave their
    inputs alone."""
    from symprop.codegen import files
    from symprop.codegen.generate import generate

    written = generate(tmp_path / "generated")
    assert (tmp_path / "generated" / "layers.py") in written
    layers = files.import_generated("layers_with_row_centre", tmp_path / "generated" / "layers.py")
    forward, backward = layers.test_row_centre_forward, layers.test_row_centre_backward
    x, upstream = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    y = forward(x)
    np.testing.assert_allclose(y, x - x.mean(axis=1, keepdims=True), rtol=1e-12, atol=1e-15)
    x_before, upstream_before = x.copy(), upstream.copy()
    dx = backward(upstream)  # backward takes what its statements read: the upstream gradient alone
    np.testing.assert_array_equal(x, x_before)  # backward never writes its inputs
    np.testing.assert_array_equal(upstream, upstream_before)
    objective = lambda value: float(np.sum(forward(value) * upstream))  # noqa: E731
    assert relative_error(dx, numerical_gradient(objective, x)) < GRADCHECK_TOLERANCE
