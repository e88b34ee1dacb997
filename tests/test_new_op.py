"""A new structured op defined here, in the test file alone, gets everything the built-in ops
get: a derivation (``symprop derive``), a generated fused network kernel, and gradients that
agree with central finite differences. Nothing outside this file knows about it."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from symprop.cli import main
from symprop.codegen.network import load_network
from symprop.symbolic.graph import parse_net
from symprop.symbolic.layers import REGISTRY, PerFeature, real
from tests.gradcheck import numerical_gradient, parameter_loss, relative_error

GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, h = 1e-6, relative


@dataclass(frozen=True)
class LearnableScale(PerFeature):
    """y[n, j] = g[j] * x[n, j]: one learnable scale per feature."""

    name: str = "test-learnable-scale"
    formula: str = "g * x"
    summary: str = "a learnable scale per feature (defined in tests/test_new_op.py)"


@dataclass(frozen=True)
class LearnablePReLU(PerFeature):
    """y = max(0, x) + a min(0, x): a leaky slope a[j] learned per feature."""

    name: str = "test-prelu"
    formula: str = "max(0, x) + a * min(0, x)"
    summary: str = "parametric ReLU, one slope per feature (defined in tests/test_new_op.py)"
    params: tuple = ("a",)


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """Both ops in the registry for one test; kernels generated into a private cache."""
    monkeypatch.setenv("SYMPROP_CACHE", str(tmp_path / "cache"))
    ops = [REGISTRY.register(LearnableScale()), REGISTRY.register(LearnablePReLU())]
    yield ops
    for op in ops:
        REGISTRY.remove(op.name)


def test_sympy_derives_the_rules(registered):
    scale = REGISTRY.derive("test-learnable-scale")
    x, g, dout = real("x"), real("g"), real("dout")
    assert sp.simplify(scale.backward["dx"] - dout * g) == 0
    assert sp.simplify(scale.backward["dg"] - dout * x) == 0
    prelu = REGISTRY.derive("test-prelu")
    a = real("a")
    assert sp.simplify(prelu.backward["da"] - dout * sp.Min(0, x)) == 0
    for value in (-1.5, 2.0):  # away from the kink: slope 1 on the right, a on the left
        local = prelu.backward["dx"].subs({dout: 1, x: value, a: sp.Rational(1, 4)})
        assert local == (1 if value > 0 else sp.Rational(1, 4))


def test_symprop_derive_shows_the_new_op(registered, capsys):
    assert main(["derive", "test-learnable-scale"]) == 0
    out = capsys.readouterr().out
    assert "dx = dout*g" in out
    assert "dg = Sum(dout[n]*x[n], (n, 1, N))" in out  # the batch sum, shown as one
    assert main(["derive", "--list"]) == 0
    assert "test-prelu" in capsys.readouterr().out


def test_a_spec_with_the_new_op_parses_with_its_parameter_shapes(registered):
    graph = parse_net("affine(3,4) test-learnable-scale affine(4,2) mse")
    assert [node.op.name for node in graph.nodes] == ["affine", "test-learnable-scale", "affine", "mse"]
    assert graph.nodes[1].op.param_shapes((), 4) == [("g", (4,))]
    assert graph.widths == [3, 4, 4, 2, 2]


@pytest.mark.parametrize("spec", [
    "affine(3,4) test-learnable-scale affine(4,2) mse",
    "affine(3,5) test-prelu sigmoid affine(5,3) softmax-cross-entropy",
    "affine(2,3) tanh test-learnable-scale test-learnable-scale affine(3,1) binary-cross-entropy",
])
def test_the_generated_kernel_agrees_with_central_differences(registered, spec, rng):
    net = load_network(spec)
    source = open(net.__file__).read()
    assert "GENERATED FILE" in source and "sum over the batch" in source
    assert "g1" in net.PARAM_NAMES or "a1" in net.PARAM_NAMES
    params = [rng.normal(0, 1, shape) for shape in net.PARAM_SHAPES]
    for name, p in zip(net.PARAM_NAMES, params):
        if name[0] in "ga":  # per-feature parameters away from 0; PReLU slopes in (0, 1)
            p[...] = rng.uniform(0.2, 0.9, p.shape)
    X = rng.uniform(0.2, 1.5, (5, net.INPUT_SIZE)) * rng.choice([-1.0, 1.0], (5, net.INPUT_SIZE))
    if net.LOSS == "softmax-cross-entropy":
        T = np.eye(net.OUTPUT_SIZE)[rng.integers(0, net.OUTPUT_SIZE, 5)]
    elif net.LOSS == "binary-cross-entropy":
        T = rng.integers(0, 2, (5, net.OUTPUT_SIZE)).astype(float)
    else:
        T = rng.normal(size=(5, net.OUTPUT_SIZE))
    loss, *grads = net.loss_and_grads(*params, X, T)
    for k, (name, grad) in enumerate(zip(net.PARAM_NAMES, grads)):
        expected = numerical_gradient(parameter_loss(net, params, k, X, T), params[k])
        assert relative_error(grad, expected) < GRADCHECK_TOLERANCE, (spec, name)
    before = [p.copy() for p in params]
    # a tiny network: its fused step is the scalar step, made from the same statements by
    # codegen/scalar_step.py with no code for this op
    assert net.SCALAR_STEP
    net.sgd_step(*params, X, T, 0.1)  # the fused step updates the new parameters too
    for name, p, b, grad in zip(net.PARAM_NAMES, params, before, grads):
        np.testing.assert_allclose(p, b - 0.1 * grad, rtol=1e-12, atol=1e-14, err_msg=name)


def test_a_tiny_network_with_the_new_op_has_a_transcript_that_agrees_with_its_kernel(registered, rng):
    """The hand calculation (exact, from the op's derived rules) and the generated kernel
    (float64) give the same gradients, element by element, for the new parameter g1 too."""
    from symprop.symbolic.graph_transcript import graph_transcript

    spec = "affine(2,2) test-learnable-scale affine(2,1) squared-error"
    net = load_network(spec)
    quarters = lambda *shape: (rng.integers(-8, 9, shape) / 4).tolist()  # exact in binary and in decimal
    values = {"X": quarters(2, 2), "T": quarters(2, 1), "W1": quarters(2, 2), "b1": quarters(2),
              "g1": [0.75, -1.25], "W2": quarters(2, 1), "b2": quarters(1)}
    transcript = graph_transcript(parse_net(spec), values, learning_rate="1/10")
    for fmt in ("text", "md", "json"):
        assert "dL/dg1[1]" in transcript.render(fmt, 6, "en") or "g_{1}" in transcript.render(fmt, 6, "en")
    params = [np.array(values[name], dtype=np.float64) for name in net.PARAM_NAMES]
    X, T = np.array(values["X"]), np.array(values["T"])
    loss, *grads = net.loss_and_grads(*params, X, T)
    assert float(transcript.value("L")) == pytest.approx(loss, rel=1e-12)
    for name, grad in zip(net.PARAM_NAMES, grads):
        for index in np.ndindex(grad.shape):
            key = f"dL/d{name}[{','.join(map(str, index))}]"
            assert float(transcript.value(key)) == pytest.approx(grad[index], rel=1e-12, abs=1e-15), key


def test_an_op_type_without_a_lowering_is_named(registered):
    from symprop.codegen.network import network_module_text
    from symprop.symbolic.errors import SympropError
    from symprop.symbolic.layers import Op

    @dataclass(frozen=True)
    class Unlowered(Op):
        name: str = "test-unlowered"
        summary: str = "an op type the code generator has never seen"

    REGISTRY.register(Unlowered())
    try:
        with pytest.raises(SympropError, match="layer 2 'test-unlowered'.*no lowering for Unlowered"):
            network_module_text("affine(2,2) test-unlowered mse")
    finally:
        REGISTRY.remove("test-unlowered")


README_PER_FEATURE_LINES = ['PerFeature("scale", "g * x", "a learnable scale per feature"),',
                            'PerFeature("prelu", "max(0, x) + a * min(0, x)", "parametric ReLU", params=("a",)),']


def _documented(line: str) -> bool:
    root = Path(__file__).resolve().parents[1]
    pages = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    return any(line in page.read_text(encoding="utf-8") for page in pages if page.is_file())


@pytest.fixture
def readme_ops(tmp_path, monkeypatch):
    """The documentation's two PerFeature lines, added to REGISTRY as a contributor would."""
    monkeypatch.setenv("SYMPROP_CACHE", str(tmp_path / "cache"))
    ops = [REGISTRY.register(PerFeature("scale", "g * x", "a learnable scale per feature")),
           REGISTRY.register(PerFeature("prelu", "max(0, x) + a * min(0, x)", "parametric ReLU", params=("a",)))]
    yield ops
    for op in ops:
        REGISTRY.remove(op.name)


def test_the_documented_per_feature_lines_regenerate_with_layer_kernels(readme_ops, tmp_path, rng):
    """`symprop generate` with the documented lines in REGISTRY writes every module (into a
    temporary folder here), and the new layers' kernels agree with central differences."""
    from symprop.codegen import files
    from symprop.codegen.generate import generate

    assert all(_documented(line) for line in README_PER_FEATURE_LINES)
    written = generate(tmp_path / "generated")
    assert (tmp_path / "generated" / "layers.py") in written
    layers = files.import_generated("layers_with_per_feature_ops", tmp_path / "generated" / "layers.py")
    for op in readme_ops:
        forward, backward = getattr(layers, f"{op.name}_forward"), getattr(layers, f"{op.name}_backward")
        x = rng.uniform(0.2, 1.5, (4, 3)) * rng.choice([-1.0, 1.0], (4, 3))  # away from PReLU's kink
        p = rng.uniform(0.2, 0.9, 3)
        upstream = rng.normal(size=(4, 3))
        x_before, p_before = x.copy(), p.copy()
        dx, dp = backward(upstream, x, p)
        np.testing.assert_array_equal(x, x_before)  # backward never writes its inputs
        np.testing.assert_array_equal(p, p_before)
        objective_x = lambda value: float(np.sum(forward(value, p) * upstream))  # noqa: E731
        objective_p = lambda value: float(np.sum(forward(x, value) * upstream))  # noqa: E731
        assert relative_error(dx, numerical_gradient(objective_x, x)) < GRADCHECK_TOLERANCE, op.name
        assert relative_error(dp, numerical_gradient(objective_p, p)) < GRADCHECK_TOLERANCE, op.name
        with pytest.raises(ValueError, match=f"{op.name}_forward: .* has shape"):
            forward(x, p[:2])
