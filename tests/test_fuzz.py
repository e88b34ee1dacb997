"""Property-based tests (hypothesis): random and mutated inputs to every file reader (network,
graph, net, claims, values, IDX and weights files), the formula parser, net specs and the generated
kernel API give a valid result or a clean error, never another exception or a hang."""
import gzip
import io
import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symprop.symbolic.graph import parse_net
from symprop.symbolic.checker import check, load_claims
from symprop.symbolic.errors import SympropError
from symprop.symbolic.formula import parse_formula
from symprop.symbolic.networkfile import load_network
from symprop.training.datasets import read_idx
from symprop.training.train import load_model

ROOT = Path(__file__).resolve().parent.parent
NETWORK_FILE = (ROOT / "symbolic" / "networks" / "two-layer-sigmoid.toml").read_bytes()
CLAIMS_FILE = (ROOT / "examples" / "seed-001-claims.toml").read_bytes()
GRAPH_FILE = (ROOT / "symbolic" / "graphs" / "staged-sigmoid-ratio.toml").read_bytes()
TRAINING_GRAPH_FILE = (ROOT / "symbolic" / "graphs" / "quadratic-model.toml").read_bytes()
LAYER_NET_FILE = (ROOT / "symbolic" / "nets" / "relu-layer.toml").read_bytes()  # no loss: dout given
TRAINING_NET_FILE = (ROOT / "symbolic" / "nets" / "moons-logistic.toml").read_bytes()  # a step, notes
# SYMPROP_FUZZ_EXAMPLES raises the number of examples for a long fuzz run (the suite uses 60);
# each example must finish within 10 s either way (a hang is a failure, not a slow test).
FUZZ = settings(max_examples=int(os.environ.get("SYMPROP_FUZZ_EXAMPLES", "60")),
                deadline=timedelta(seconds=10),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def mutations(original: bytes):
    """original with a few bytes replaced, inserted or deleted at random places."""
    edit = st.tuples(st.integers(0, len(original)), st.sampled_from(["replace", "insert", "delete"]),
                     st.binary(min_size=1, max_size=4))

    def apply(edits):
        data = bytearray(original)
        for position, kind, payload in edits:
            position = min(position, len(data))
            if kind == "replace":
                data[position:position + len(payload)] = payload
            elif kind == "insert":
                data[position:position] = payload
            else:
                del data[position:position + len(payload)]
        return bytes(data)

    return st.lists(edit, min_size=1, max_size=6).map(apply)


def write(tmp_path, name, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@FUZZ
@given(data=st.one_of(mutations(GRAPH_FILE), mutations(TRAINING_GRAPH_FILE)))
def test_mutated_graph_files_explain_or_fail_cleanly(tmp_path, data):
    """A mutated graph file gives its whole transcript or one SympropError naming the file."""
    from symprop.symbolic.graphfile_transcript import graph_file_transcript

    try:
        graph_file_transcript(write(tmp_path, "graph.toml", data)).render("json", 6, "en")
    except SympropError as exc:
        assert "graph.toml" in str(exc)


@FUZZ
@given(data=st.one_of(mutations(LAYER_NET_FILE), mutations(TRAINING_NET_FILE)))
def test_mutated_net_files_explain_or_fail_cleanly(tmp_path, data):
    """A mutated net file (a spec and its numbers) gives its whole transcript, in both of the
    checker's conventions, or one SympropError naming the file."""
    from symprop.symbolic.netfile import load_net_file, net_file_transcript

    try:
        net = load_net_file(write(tmp_path, "example.toml", data))
        net_file_transcript(net).render("json", 6, "en")
        net_file_transcript(net, batch_sum=True).render("text", 6, "en")
    except SympropError as exc:
        assert "example.toml" in str(exc)


@FUZZ
@given(data=mutations(NETWORK_FILE))
def test_mutated_network_files_load_or_fail_cleanly(tmp_path, data):
    try:
        load_network(write(tmp_path, "net.toml", data))
    except SympropError as exc:
        assert "net.toml" in str(exc)


@FUZZ
@given(data=mutations(CLAIMS_FILE))
def test_mutated_claims_files_check_or_fail_cleanly(tmp_path, data):
    try:
        subject, claims = load_claims(write(tmp_path, "claims.toml", data))
        check(subject, claims)
    except SympropError as exc:
        assert str(exc)


@FUZZ
@given(data=st.binary(max_size=64) | mutations(b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03" + bytes(6)))
def test_random_idx_bytes_read_or_fail_cleanly(tmp_path, data):
    for name, payload in (("plain-idx3-ubyte", data), ("zipped-idx3-ubyte.gz", gzip.compress(data))):
        try:
            array = read_idx(write(tmp_path, name, payload))
        except SympropError as exc:
            assert name in str(exc)
        else:
            assert array.ndim >= 1


def _weights_file() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, format_version=1, spec="affine(2,1) binary-cross-entropy",
             param_names=np.array(["W1", "b1"]), dataset="moons", n_classes=2, dtype="float64",
             scaling_mean=np.zeros(2), scaling_scale=np.ones(2),
             param_W1=np.zeros((2, 1)), param_b1=np.zeros(1))
    return buffer.getvalue()


@FUZZ
@given(data=mutations(_weights_file()) | st.binary(max_size=200))
def test_mutated_weights_files_load_or_fail_cleanly(tmp_path, data):
    try:
        load_model(write(tmp_path, "weights.npz", data))
    except SympropError as exc:
        assert "weights.npz" in str(exc)


FORMULA_ALPHABET = st.sampled_from(list("x+-*/()^.,0123456789 e") + ["exp", "log", "tanh", "sigmoid", "max", "**", "__", "'", "[", "lambda"])


@FUZZ
@given(pieces=st.lists(FORMULA_ALPHABET, max_size=30))
def test_random_formulas_parse_or_fail_cleanly(pieces):
    try:
        parse_formula("".join(pieces))
    except SympropError as exc:
        assert str(exc).startswith("formula: ")


@FUZZ
@given(spec=st.lists(st.sampled_from(["affine(2,3)", "affine(3,2)", "relu", "sigmoid", "mse", "softmax",
                                      "softmax-cross-entropy", "(", ")", "affine(", "formula(x", " ", "add"]),
                     max_size=8).map(" ".join))
def test_random_specs_parse_or_fail_cleanly(spec):
    try:
        parse_net(spec)
    except SympropError as exc:
        assert "net spec" in str(exc)


VALUES_SPEC = "affine(2,2) sigmoid affine(2,2) squared-error"
VALUES_FILE = b"""X = [[0.05, 0.1]]
T = [[0.03, 0.05]]
W1 = [[0.1, 0.2], [0.3, 0.4]]
b1 = [0.35, 0.35]
W2 = [[0.5, 0.6], [0.7, 0.8]]
b2 = ["1/10", 0.1]
learning_rate = 0.5
"""


@FUZZ
@given(data=mutations(VALUES_FILE))
def test_mutated_values_files_explain_or_fail_cleanly(tmp_path, data):
    """`example show --net SPEC --values FILE`: the whole transcript, or one error naming the file."""
    from symprop.symbolic.graph_transcript import values_transcript

    try:
        values_transcript(parse_net(VALUES_SPEC), write(tmp_path, "values.toml", data)).render("json", 6, "en")
    except SympropError as exc:
        assert "values.toml" in str(exc)


# The kernel API of a generated module (the moons network: W1 (2, 1), b1 (1,)): any arguments give
# a result or a ValueError / TypeError that names the function, never a numba error or a crash.
def _filled(shape, dtype, fill):
    """np.full, quietly: nan, inf and 1e300 cast into integers, booleans or float32 are the point of
    the fuzz, so numpy's cast warning (overflow, invalid value) is about making the input, not
    about the code under test."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.full(shape, fill, dtype=dtype)


def _argument():
    arrays = st.builds(_filled,
                       st.lists(st.integers(0, 3), min_size=0, max_size=3).map(tuple),
                       st.sampled_from([np.float64, np.float32, np.int64, np.bool_, np.complex128]),
                       st.sampled_from([0.5, -1.0, 0.0, np.nan, np.inf, 1e300]))
    return st.one_of(arrays, st.sampled_from([None, "0.1", 3, 0.1, [[1.0, 2.0]], object()]))


@FUZZ
@given(function=st.sampled_from(["forward", "loss_and_grads", "sgd_step", "sgd_steps"]),
       arguments=st.lists(_argument(), min_size=3, max_size=6))
def test_random_kernel_api_calls_compute_or_refuse_cleanly(function, arguments):
    from symprop.generated import net_moons_logistic as net

    call = getattr(net, function)
    if function in ("sgd_step", "sgd_steps"):  # the parameters are updated in place: copies
        arguments = [a.copy() if isinstance(a, np.ndarray) else a for a in arguments]
    try:
        call(*arguments)
    except (ValueError, TypeError) as exc:
        assert function in str(exc), (function, exc)


@FUZZ
@given(name=st.sampled_from(["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]),
       state=st.one_of(st.lists(_argument(), min_size=0, max_size=3).map(tuple), _argument()),
       hyper=st.sampled_from(["lr", "momentum", "alpha", "beta1", "beta2", "eps", "weight_decay"]),
       value=_argument())
def test_random_optimizer_states_and_hyper_parameters_compute_or_refuse_cleanly(name, state, hyper, value):
    """train_step_<rule> with a random state (and with its own) and a random hyper-parameter
    value: a step, or a ValueError / TypeError naming the function."""
    from symprop.generated import net_moons_logistic as net

    init, step, _ = net.OPTIMIZERS[name]
    W1, b1 = np.full((2, 1), 0.5), np.zeros(1)
    for candidate in (state, init(W1, b1)):
        try:
            step(W1.copy(), b1.copy(), candidate, np.ones((3, 2)), np.ones((3, 1)), **{hyper: value})
        except (ValueError, TypeError) as exc:
            assert f"train_step_{name}" in str(exc), (name, exc)


HISTORY_FILE = (b'{"format": "symprop training history 1", "label": "sgd lr 0.5: affine(2,1) binary-cross-entropy", '
                b'"epochs": [1, 2], "train_loss": [0.7, 0.5], "val_loss": [0.8, null], "train_accuracy": [0.5, 0.75], '
                b'"val_accuracy": [0.5, 0.5], "test_accuracy": 0.75}')


@FUZZ
@given(data=mutations(HISTORY_FILE))
def test_mutated_history_files_read_or_fail_cleanly(tmp_path, data):
    from symprop.training.history import read_history

    try:
        read_history(write(tmp_path, "run.json", data))
    except SympropError as exc:
        assert "run.json" in str(exc)
