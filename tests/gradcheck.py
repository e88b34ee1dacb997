"""Central finite differences in float64, used by every gradient test."""
from __future__ import annotations

import numpy as np
import pytest


def numerical_gradient(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d f(x) / d x for scalar f by central differences, one coordinate at a time."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + h
        up = f(x)
        flat[i] = keep - h
        down = f(x)
        flat[i] = keep
        gflat[i] = (up - down) / (2 * h)
    return grad


def relative_error(a, b) -> float:
    """||a - b|| / (||a|| + ||b||): the usual gradient-check measure, robust to zero entries."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / scale) if scale > 0 else 0.0


def numerical_gradient_at(f, x: np.ndarray, indices, h: float = 1e-6) -> np.ndarray:
    """Central differences of scalar f at the given flat indices of x only (for big arrays)."""
    x = np.array(x, dtype=np.float64)
    flat = x.reshape(-1)
    values = []
    for i in indices:
        keep = flat[i]
        flat[i] = keep + h
        up = f(x)
        flat[i] = keep - h
        down = f(x)
        flat[i] = keep
        values.append((up - down) / (2 * h))
    return np.array(values)


def parameter_loss(net, params, k: int, X, T):
    """The loss of a network module as a function of its k-th parameter alone, the others and
    the data held fixed: what central differences perturb."""
    def loss_of(value):
        trial = [p.copy() for p in params]
        trial[k] = value
        return float(net.loss_and_grads(*trial, X, T)[0])
    return loss_of


def assert_gradients_are_central_differences(net, params, X, T, tolerance: float):
    """Every parameter's gradient from a network module's loss_and_grads is the central
    difference of its loss (relative error below tolerance)."""
    _, *grads = net.loss_and_grads(*params, X, T)
    for k, (name, grad) in enumerate(zip(net.PARAM_NAMES, grads)):
        numeric = numerical_gradient(parameter_loss(net, params, k, X, T), params[k])
        assert relative_error(grad, numeric) < tolerance, name


def assert_sgd_step_is_the_gradient_step(net, params, X, T, lr: float = 0.1):
    """One fused sgd_step returns the loss before it and moves every parameter by -lr times its
    gradient from loss_and_grads (the parameters given are left alone)."""
    loss, *grads = net.loss_and_grads(*params, X, T)
    stepped = [p.copy() for p in params]
    assert net.sgd_step(*stepped, X, T, lr) == pytest.approx(loss, rel=1e-15)
    for new, old, grad in zip(stepped, params, grads):
        np.testing.assert_allclose(new, old - lr * grad, rtol=1e-15, atol=1e-15)
