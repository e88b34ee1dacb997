"""One source of truth: the transcripts' numbers equal the generated network kernels' numbers.

The kernels (codegen, generated/) and the transcripts (symbolic/transcript.py) both start from
the layer registry's derivations; here the two computations of loss, every gradient and the
gradient-descent step are compared in float64 for the built-in networks.
"""
from __future__ import annotations

import numpy as np
import pytest

from symprop.codegen.network import load_network
from symprop.symbolic.examples import EXAMPLES, builtin_network

TOL = 1e-12  # float64 kernels against 60-digit transcript values: rounding only


def close(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.all(np.abs(a - b) <= TOL * np.maximum(1.0, np.abs(b)))


def network_arrays(net):
    """W[i, j] is the weight from input i to unit j; a shared bias is an array of shape (1,)."""
    arrays = []
    for layer in net.layers:
        arrays.append(np.array([[float(w) for w in row] for row in layer.weights]))
        arrays.append(np.array([float(b) for b in layer.biases]))
    return arrays


def spec_of(net) -> str:
    return net.to_graph()[0].spec


@pytest.mark.parametrize("name", ["two-layer-sigmoid", "mazur-2-2-2"])
def test_network_transcript_equals_kernel(name):
    net, t = builtin_network(name), EXAMPLES[name].build()
    spec = spec_of(net)
    assert spec == "affine-shared-bias(2,2) sigmoid affine-shared-bias(2,2) sigmoid squared-error"
    kernel = load_network(spec)
    params = network_arrays(net)
    X = np.array([[float(v) for v in net.inputs]])
    T = np.array([[float(v) for v in net.targets]])
    assert close(kernel.forward(*params, X)[0], [t.float_value(u) for u in net.layers[-1].units])
    loss, *grads = kernel.loss_and_grads(*params, X, T)
    assert close(loss, t.float_value("E"))
    for layer, dW, db in zip(net.layers, grads[0::2], grads[1::2]):
        assert close(dW, [[t.float_value(f"dE/d{n}") for n in row] for row in layer.weight_names])
        assert close(db, [t.float_value(f"dE/d{n}") for n in layer.bias_names])
    lr = float(net.learning_rate)
    stepped = [p.copy() for p in params]
    kernel.sgd_step(*stepped, X, T, lr)
    for layer, W, b in zip(net.layers, stepped[0::2], stepped[1::2]):
        assert close(W, [[t.float_value(f"{n}_new") for n in row] for row in layer.weight_names])
        if net.update_biases:
            assert close(b, [t.float_value(f"{n}_new") for n in layer.bias_names])
    if net.update_biases:
        assert close(kernel.loss_and_grads(*stepped, X, T)[0], t.float_value("E_new"))


def test_moons_transcript_equals_kernel():
    """The net file's spec and values through the generated kernel; the transcript's names
    are the kernel's (W1, b1, z1)."""
    t = EXAMPLES["moons-logistic"].build()
    kernel = load_network("affine(2,1) binary-cross-entropy")
    rows = range(4)
    W = np.array([[t.float_value("W1[0,0]")], [t.float_value("W1[1,0]")]])
    b = np.array([t.float_value("b1[0]")])
    X = np.array([[t.float_value(f"X[{n},{k}]") for k in range(2)] for n in rows])
    T = np.array([[t.float_value(f"T[{n},0]")] for n in rows])
    assert close(kernel.forward(W, b, X)[:, 0], [t.float_value(f"z1[{n},0]") for n in rows])
    loss, dW, db = kernel.loss_and_grads(W, b, X, T)
    assert close(loss, t.float_value("L"))
    assert close(dW[:, 0], [t.float_value("dL/dW1[0,0]"), t.float_value("dL/dW1[1,0]")])
    assert close(db, [t.float_value("dL/db1[0]")])
    kernel.sgd_step(W, b, X, T, float(t.value("learning_rate")))
    assert close(W[:, 0], [t.float_value("W1_new[0,0]"), t.float_value("W1_new[1,0]")])
    assert close(b, [t.float_value("b1_new[0]")])
