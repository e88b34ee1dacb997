"""One lowering, read two ways, for every op in the registry.

A net's transcript is the interpreter's reading of the lowered statements; its module is the
printer's. Here the module is printed through the plain-Python backend of
``tests/test_backends.py`` (no JIT, so nothing compiles) and run on the same numbers: every
gradient must be the transcript's exact value in float64 (rel 1e-12). The ops come from the
registry, so a family added there is checked with no edit here.
"""
import numpy as np
import pytest

from symprop.codegen import files
from symprop.codegen.network import network_module_text
from symprop.symbolic.graph import parse_net
from symprop.symbolic.graph_transcript import graph_transcript
from symprop.symbolic.layers import REGISTRY
from test_backends import PLAIN_PYTHON

TOLERANCE = 1e-12  # exact (60 digits) against float64, relative to the largest gradient of the net
# (a bias right before batch norm has gradient 0 exactly: float64 leaves ~1e-16 of round-off there)
WITH_ARGUMENTS = ["affine(3,3,l2=0.1)", "affine-shared-bias(3,3)", "dropout(0.5)", "formula(x*tanh(x))"]


def _specs():
    specs = []
    for name, op in REGISTRY.items():
        spec = f"affine(2,3) {name}" if op.is_loss else f"affine(2,3) {name} affine(3,3) mse"
        try:
            parse_net(spec)
        except Exception:  # an op that needs arguments or images: WITH_ARGUMENTS and test_conv cover them
            continue
        specs.append(spec)
    return specs + [f"affine(2,3) {layer} affine(3,3) mse" for layer in WITH_ARGUMENTS]


@pytest.mark.parametrize("spec", _specs())
def test_the_transcript_and_the_printed_step_give_the_same_gradients(spec, tmp_path):
    rng = np.random.default_rng(abs(hash(spec)) % 2**32)
    quarters = lambda *shape: rng.integers(-8, 9, shape) / 4  # noqa: E731  exact in binary and in decimal
    path = tmp_path / "net.py"
    path.write_text(network_module_text(spec, backend=PLAIN_PYTHON))
    net = files.import_generated("plain_net_" + str(abs(hash(spec))), path)
    loss_op = parse_net(spec).nodes[-1].op
    rows = 3
    X = quarters(rows, 2)
    if loss_op.one_hot_targets:
        T = np.eye(3)[rng.integers(0, 3, rows)]
    elif loss_op.applies:  # logits into a sigmoid: targets are 0 or 1
        T = rng.integers(0, 2, (rows, 3)).astype(float)
    else:
        T = quarters(rows, 3)
    params = [quarters(*shape) for shape in net.PARAM_SHAPES]
    values = {"X": X.tolist(), "T": T.tolist(), **{n: p.tolist() for n, p in zip(net.PARAM_NAMES, params)}}
    extra = {}
    if getattr(net, "MASK_NAMES", ()):
        masks = [rng.integers(0, 2, (rows, width)).astype(float) for width in net.MASK_WIDTHS]
        values |= {n: m.tolist() for n, m in zip(net.MASK_NAMES, masks)}
        extra = {"masks": masks}
    t = graph_transcript(parse_net(spec), values)
    loss, *grads = net.loss_and_grads(*params, X, T, **extra)
    assert float(t.value("L")) == pytest.approx(loss, rel=TOLERANCE)
    exact = {name: np.array([float(t.value(f"dL/d{name}[{','.join(map(str, i))}]")) for i in np.ndindex(grad.shape)])
             for name, grad in zip(net.PARAM_NAMES, grads)}
    scale = max(np.max(np.abs(e)) for e in exact.values())
    assert scale > 0
    for name, grad in zip(net.PARAM_NAMES, grads):
        assert np.max(np.abs(exact[name] - grad.reshape(-1))) <= TOLERANCE * scale, (spec, name)
