"""Verify generated kernels at run time: central finite differences in float64.

Used by ``symprop demo`` so that a user sees, on their own machine, that the kernels they
just regenerated compute the gradients of the functions they compute.
"""
from __future__ import annotations

import numpy as np


def random_problem(net, rng, batch=4):
    """Random float64 parameters, inputs and targets that fit a network module."""
    params = [rng.normal(0, 1 / np.sqrt(shape[0]), shape) for shape in net.PARAM_SHAPES]  # O(1) activations
    X = rng.normal(size=(batch, net.INPUT_SIZE))
    if net.LOSS == "softmax-cross-entropy":
        T = np.eye(net.OUTPUT_SIZE)[rng.integers(0, net.OUTPUT_SIZE, batch)]
    elif net.LOSS == "binary-cross-entropy":
        T = rng.integers(0, 2, (batch, net.OUTPUT_SIZE)).astype(np.float64)
    else:
        T = rng.uniform(0, 1, (batch, net.OUTPUT_SIZE))
    return params, X, T


def network_gradient_error(net, seed=0, samples=8, h=1e-6) -> float:
    """Largest relative error between the kernel's gradients and central differences,
    over ``samples`` random coordinates of each parameter."""
    rng = np.random.default_rng(seed)
    params, X, T = random_problem(net, rng)
    _, *grads = net.loss_and_grads(*params, X, T)
    worst = 0.0
    for param, grad in zip(params, grads):
        flat, gflat = param.reshape(-1), grad.reshape(-1)
        picks = rng.choice(flat.size, size=min(samples, flat.size), replace=False)
        numeric, analytic = [], []
        for i in picks:
            keep = flat[i]
            flat[i] = keep + h
            up = net.loss_and_grads(*params, X, T)[0]
            flat[i] = keep - h
            down = net.loss_and_grads(*params, X, T)[0]
            flat[i] = keep
            numeric.append((up - down) / (2 * h))
            analytic.append(gflat[i])
        worst = max(worst, relative_error(np.array(analytic), np.array(numeric)))
    return worst


NOISE_FLOOR = 1e-9  # below this both values are finite-difference noise around an exact 0


def relative_error(analytic, numeric) -> float:
    """||a - n|| / (||a|| + ||n||), over the coordinates where either exceeds the noise floor
    (an exactly-zero gradient, e.g. an inactive relu unit, has no relative error to measure)."""
    keep = (np.abs(analytic) > NOISE_FLOOR) | (np.abs(numeric) > NOISE_FLOOR)
    a, n = analytic[keep], numeric[keep]
    scale = np.linalg.norm(a) + np.linalg.norm(n)
    return float(np.linalg.norm(a - n) / scale) if scale > 0 else 0.0
