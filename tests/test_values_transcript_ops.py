"""The values transcript of the issue-15 ops: batch and layer norm, dropout with a given mask,
softmax, the softmax losses, the multiclass hinge, Huber and an affine layer's L2 penalty.

Each spec's transcript (exact numbers, evaluated to 60 digits) is compared, gradient by
gradient, with the generated kernel's ``loss_and_grads`` in float64 (rel 1e-12), and with
central differences of the loss written here independently in numpy (rel 1e-6). Four small
networks cover every op, so only four kernels are compiled.
"""
from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradcheck import numerical_gradient, relative_error
from symprop.codegen.network import load_network
from symprop.symbolic.errors import SympropError
from symprop.symbolic.graph import parse_net
from symprop.symbolic.graph_transcript import expected_values, graph_transcript

ROOT = Path(__file__).resolve().parent.parent
KERNEL_TOL = 1e-12  # transcript (60 digits) against the float64 kernel, relative to the largest gradient
FD_TOL = 1e-6
EPS = 1e-5  # batchnorm and layernorm's default epsilon (torch's)

SPECS = [
    "affine(2,3,l2=0.1) batchnorm tanh dropout(0.5) affine(3,3) layernorm log-softmax-nll",
    "affine(2,3) softmax affine(3,3) multiclass-hinge",
    "affine(2,3,l2=0.05) sigmoid affine(3,3) softmax-cross-entropy",
    "affine(2,2) huber",
]


# --- the loss in float64 numpy, layer by layer from the spec text (not from symprop) ------

def _normalise(v, axis):
    mean = v.mean(axis=axis, keepdims=True)
    var = ((v - mean) ** 2).mean(axis=axis, keepdims=True)
    return (v - mean) / np.sqrt(var + EPS)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def numpy_loss(spec, p, X, T):
    value, k, penalty = X, 0, 0.0
    for position, layer in enumerate(spec.split(), 1):
        if layer.startswith("affine"):
            k += 1
            value = value @ p[f"W{k}"] + p[f"b{k}"]
            if "l2=" in layer:
                penalty += float(re.search(r"l2=([0-9.e-]+)", layer).group(1)) / 2 * np.sum(p[f"W{k}"] ** 2)
        elif layer in ("batchnorm", "layernorm"):
            value = p[f"scale{position}"] * _normalise(value, 0 if layer == "batchnorm" else 1) + p[f"shift{position}"]
        elif layer.startswith("dropout"):
            value = value * p[f"mask{position}"] / (1 - float(layer[8:-1]))
        elif layer == "tanh":
            value = np.tanh(value)
        elif layer == "sigmoid":
            value = 1 / (1 + np.exp(-value))
        elif layer == "softmax":
            value = _softmax(value)
        elif layer in ("log-softmax-nll", "softmax-cross-entropy"):
            return -np.mean(np.sum(T * np.log(_softmax(value)), axis=1)) + penalty
        elif layer == "multiclass-hinge":
            zy = np.sum(T * value, axis=1, keepdims=True)
            return np.mean(np.sum((1 - T) * np.maximum(0, value - zy + 1), axis=1)) + penalty
        elif layer == "huber":
            e = np.abs(value - T)
            return np.mean(np.where(e <= 1, e ** 2 / 2, e - 0.5)) + penalty
    raise AssertionError("no loss in " + spec)


# --- values: random decimals, one-hot targets, 0/1 masks ----------------------------------

def random_values(spec, rows, seed):
    graph, rng = parse_net(spec), np.random.default_rng(seed)
    values = {}
    for key, shape in expected_values(graph).items():
        shape = tuple(rows if s is None else s for s in shape)
        if key == "T" and not spec.endswith("huber"):
            numbers = np.eye(shape[1])[rng.integers(0, shape[1], rows)]
        elif key == "T":
            numbers = np.round(rng.uniform(-2, 2, shape), 3)
        elif key.startswith("mask"):
            numbers = (rng.uniform(size=shape) < 0.6).astype(float)
        else:
            numbers = np.round(rng.uniform(-1, 1, shape), 3)
        values[key] = numbers.tolist()
    return values


@functools.lru_cache(maxsize=None)
def _case(spec):
    """(spec, values, transcript), built once per spec for every test that reads it."""
    values = random_values(spec, rows=3, seed=len(spec))
    if spec.endswith("huber"):  # both sides of the kink at |y - t| = 1, none near it
        values.update(X=[[0.5, -1.0], [2.0, 1.5], [-1.0, 0.25]], W1=[[1.0, 0.5], [-0.5, 1.0]], b1=[0.1, -0.2],
                      T=[[0.3, 2.5], [-1.0, 0.8], [0.2, 0.4]])
    return spec, values, graph_transcript(parse_net(spec), values)


@pytest.fixture(params=SPECS)
def case(request):
    return _case(request.param)


def _transcript_gradient(t, name, shape):
    return np.array([t.float_value(f"dL/d{name}[{','.join(map(str, i))}]") for i in np.ndindex(shape)]).reshape(shape)


def test_every_gradient_equals_the_generated_kernel(case):
    spec, values, t = case
    net = load_network(spec)
    arrays = {k: np.array(v, dtype=np.float64) for k, v in values.items()}
    params = [arrays[name] for name in net.PARAM_NAMES]
    masks = [arrays[name] for name in getattr(net, "MASK_NAMES", ())]
    loss, *grads = net.loss_and_grads(*params, arrays["X"], arrays["T"], **({"masks": masks} if masks else {}))
    assert abs(t.float_value("L") - loss) <= KERNEL_TOL * max(1.0, abs(loss))
    for name, grad in zip(net.PARAM_NAMES, grads):
        ours = _transcript_gradient(t, name, grad.shape)
        scale = max(np.max(np.abs(grad)), 1e-3)  # batch norm's bias before it has gradient 0: compare absolutely
        assert np.max(np.abs(ours - grad)) <= KERNEL_TOL * scale, (spec, name, ours, grad)


def test_every_gradient_equals_central_differences(case):
    spec, values, t = case
    arrays = {k: np.array(v, dtype=np.float64) for k, v in values.items()}
    X, T = arrays.pop("X"), arrays.pop("T")
    assert abs(t.float_value("L") - numpy_loss(spec, arrays, X, T)) < 1e-12
    for name, array in arrays.items():
        if name.startswith("mask"):
            continue
        numeric = numerical_gradient(lambda a, name=name: numpy_loss(spec, {**arrays, name: a}, X, T), array)
        ours = _transcript_gradient(t, name, array.shape)
        if np.max(np.abs(numeric)) < 1e-8:  # the bias right before batch norm: no effect on the loss
            assert np.max(np.abs(ours)) < 1e-40, (spec, name, ours)
            continue
        assert relative_error(ours, numeric) < FD_TOL, (spec, name, ours, numeric)


def test_batch_norm_is_written_out_through_its_named_sums():
    _, _, t = _case(SPECS[0])
    q = t.quantities
    # the statistics of each feature over the 3 rows, then the sums the three-term rule reads
    assert {"mean2[0]", "var2[2]", "s2[1]", "xhat2[2,1]", "sum_dy2[0]", "sum_dy_xhat2[2]", "sum_gdy6[2]"} <= set(q)
    rule = str(q["dL/dz1[1,0]"].formula)
    assert "sum_dy2[0]" in rule and "sum_dy_xhat2[0]" in rule and "s2[0]" in rule
    # dg and db of batch norm are the derived sums over the batch
    assert t.value("dL/dscale2[1]") == t.value("sum_dy_xhat2[1]")
    assert t.value("dL/dshift2[1]") == t.value("sum_dy2[1]")
    # the penalty: added to L, its gradient lambda W added to the data gradient
    assert t.float_value("L") == pytest.approx(t.float_value("L_data") + t.float_value("penalty_W1"), abs=1e-50)
    assert set(map(str, q["dL/dW1[0,1]"].formula.args)) == {"dL_data/dW1[0,1]", "W1[0,1]*lambda1"}


def test_the_hinge_writes_its_tie_convention():
    spec = "affine(2,2) multiclass-hinge"
    # z = X W + b = [[1, 0]] with class 0 true: the wrong class's margin z[1] - z[0] + 1 is exactly 0
    t = graph_transcript(parse_net(spec), {"X": [[1, 0]], "T": [[1, 0]], "W1": [[1, 0], [0, 1]], "b1": [0, 0]})
    assert t.value("L") == 0
    assert t.value("dL/dz1[0,0]") == 0 and t.value("dL/dz1[0,1]") == 0  # a margin of 0 counts as met
    assert "Heaviside(0) = 0" in t.render("text", 6)


# --- refusals: one line naming the file and field -----------------------------------------

DROPOUT_SPEC = "affine(2,2) dropout(0.5) mse"
DROPOUT_VALUES = """X = [[1, 2], [3, 4]]
T = [[0, 1], [1, 0]]
W1 = [[0.1, 0.2], [0.3, 0.4]]
b1 = [0, 0]
mask2 = [[1, 0], [1, 1]]
"""


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "symprop", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_writes_a_dropout_transcript_with_the_mask(tmp_path):
    values = tmp_path / "drop.toml"
    values.write_text(DROPOUT_VALUES)
    result = run_cli("example", "show", "--net", DROPOUT_SPEC, "--values", str(values))
    assert result.returncode == 0, result.stderr
    assert "h1[0,1] = 2*mask2[0,1]*z1[0,1]" in result.stdout


def test_cli_refuses_a_missing_mask_in_one_line(tmp_path):
    values = tmp_path / "bad.toml"
    values.write_text(DROPOUT_VALUES.replace("mask2 = [[1, 0], [1, 1]]\n", ""))
    result = run_cli("example", "show", "--net", DROPOUT_SPEC, "--values", str(values))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and str(values) in lines[0], result.stderr
    assert "missing mask2" in lines[0] and result.stdout == ""


@pytest.mark.parametrize("mask, message", [
    ([[1, 0.5], [1, 1]], "field 'mask2': a dropout mask holds 0 (dropped) or 1 (kept); got 1/2 at [0,1]"),
    ([[1, -1], [1, 1]], "field 'mask2': a dropout mask holds 0 (dropped) or 1 (kept); got -1 at [0,1]"),
    ([[1, 0]], "field 'mask2': expected 2 rows"),
])
def test_a_bad_mask_is_refused_naming_the_field(mask, message):
    values = {"X": [[1, 2], [3, 4]], "T": [[0, 1], [1, 0]], "W1": [[1, 0], [0, 1]], "b1": [0, 0], "mask2": mask}
    with pytest.raises(SympropError) as error:
        graph_transcript(parse_net(DROPOUT_SPEC), values, where="my.toml")
    assert str(error.value).startswith("my.toml, field 'mask2'") and message in str(error.value)


def test_targets_that_are_not_one_hot_are_refused():
    values = {"X": [[1, 2]], "T": [[0.3, 0.7]], "W1": [[1, 0], [0, 1]], "b1": [0, 0]}
    with pytest.raises(SympropError, match=r"my.toml, field 'T': softmax-cross-entropy takes one-hot targets"):
        graph_transcript(parse_net("affine(2,2) softmax-cross-entropy"), values, where="my.toml")


def test_the_checker_takes_claims_on_a_spec_with_values(tmp_path):
    """symprop check --net SPEC --values FILE, and a claims file with net = ... and values = ...:
    a right element is right, a wrong one is named, with the first wrong step."""
    from symprop.symbolic.checker import NetValues, check, claims_from_arguments, load_claims

    values = tmp_path / "drop.toml"
    values.write_text(DROPOUT_VALUES)
    from symprop.symbolic.graph_transcript import values_transcript

    exact = values_transcript(parse_net(DROPOUT_SPEC), values)
    grads = [k for k in exact.quantities if k.startswith("dL/dW1[")]
    right, wrong = grads[0], grads[1]
    claims = [f"{right}={float(exact.value(right)):.6g}", f"{wrong}={2 * float(exact.value(wrong)) + 1:.6g}"]
    report = check(NetValues(DROPOUT_SPEC, str(values)), claims_from_arguments(claims))
    verdicts = {v.key: v for v in report.verdicts}
    assert verdicts[right].right and not verdicts[wrong].right and not report.problems
    result = run_cli("check", "--net", DROPOUT_SPEC, "--values", str(values), *claims)
    assert result.returncode == 1 and wrong in result.stdout, result.stderr
    claims_file = tmp_path / "claims.toml"
    claims_file.write_text(f'net = "{DROPOUT_SPEC}"\nvalues = "drop.toml"\n\n[claims]\n"{right}" = '
                           f'"{float(exact.value(right)):.6g}"\n')
    subject, loaded = load_claims(claims_file)
    assert subject == NetValues(DROPOUT_SPEC, str(values)) and check(subject, loaded).all_right
    half = run_cli("check", "--net", DROPOUT_SPEC, claims[0])
    assert half.returncode == 2 and "go together" in half.stderr
