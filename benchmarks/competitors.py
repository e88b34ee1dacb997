"""One training step (forward, backward, SGD update) of the same two-layer network, written
the way each library's users write it. Every builder takes a ``Case`` and the starting
parameters, copies them, and returns a no-argument callable that runs one step in place.

PyTorch and JAX are optional: ``import_optional`` returns None when they are not installed,
and the benchmark prints a "skipped: not installed" line instead of a row.
"""
from __future__ import annotations

import functools
import importlib

import numpy as np

from .numpy_layers import TwoLayerNet


def import_optional(name: str):
    """The module, or None when it is not installed (ImportError of any kind)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _copies(params):
    return tuple(np.array(p, copy=True) for p in params)


# --- symprop -----------------------------------------------------------------------------

def symprop_step(net, case, params, X, T):
    """The generated fused kernel, called through the raw numba dispatcher (no Python checks)."""
    args = (*_copies(params), X, T, case.lr)
    return functools.partial(net.sgd_step_kernel, *args)


def symprop_step_packed(net, case, params, X, T):
    """The same step on one flat parameter vector (net.pack): fewer arguments to unbox."""
    return functools.partial(net.sgd_step_packed_kernel, net.pack(*params), X, T, case.lr)


def symprop_steps(net, case, params, X, T, k):
    """k full-batch steps in one call of the generated loop kernel."""
    args = (*_copies(params), X, T, case.lr, k)
    return functools.partial(net.sgd_steps_kernel, *args)


# --- numpy layer classes (the baseline) --------------------------------------------------

def numpy_step(case, params, X, T):
    net = TwoLayerNet(_copies(params), case.activation, case.loss, case.output_activation)
    return functools.partial(net.sgd_step, X, T, case.lr)


# --- PyTorch -----------------------------------------------------------------------------

def torch_module_step(torch, case, params, X, T):
    """nn.Module + autograd + torch.optim.SGD, as the tutorials write it."""
    nn = torch.nn

    class SharedBiasLinear(nn.Module):
        """x W + c with one bias for all outputs (the 2-2-2 example); nn.Linear has one per output."""

        def __init__(self, W, b):
            super().__init__()
            self.weight = nn.Parameter(torch.from_numpy(W))
            self.bias = nn.Parameter(torch.from_numpy(b))

        def forward(self, x):
            return x @ self.weight + self.bias

    def linear(W, b):
        if b.shape[0] == 1 and W.shape[1] > 1:
            return SharedBiasLinear(W, b)
        layer = nn.Linear(W.shape[0], W.shape[1], dtype=torch.from_numpy(W).dtype)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(W.T.copy()))
            layer.bias.copy_(torch.from_numpy(b))
        return layer

    activation = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}
    W1, b1, W2, b2 = _copies(params)
    layers = [linear(W1, b1), activation[case.activation](), linear(W2, b2)]
    if case.output_activation:
        layers.append(activation[case.output_activation]())
    model = nn.Sequential(*layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=case.lr)
    x = torch.from_numpy(X)
    if case.loss == "softmax-cross-entropy":
        target = torch.from_numpy(T.argmax(axis=1))
        loss_fn = nn.CrossEntropyLoss()
    else:
        target = torch.from_numpy(T)
        loss_fn = lambda y, t: 0.5 * ((y - t) ** 2).sum()  # noqa: E731  (the seeds' E)

    def step():
        optimizer.zero_grad()
        loss = loss_fn(model(x), target)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def torch_manual_step(torch, case, params, X, T):
    """Tensors without autograd and the backward pass written out: the fastest eager PyTorch."""
    W1, b1, W2, b2 = (torch.from_numpy(p) for p in _copies(params))
    x, t = torch.from_numpy(X), torch.from_numpy(T)
    n, lr = X.shape[0], case.lr
    relu = case.activation == "relu"

    def bias_grad(d, b):
        return d.sum(0) if b.shape[0] > 1 else d.sum().reshape(1)

    def step():
        h = torch.addmm(b1, x, W1)
        a = torch.relu(h) if relu else torch.sigmoid(h)
        z = torch.addmm(b2, a, W2)
        if case.loss == "softmax-cross-entropy":
            log_p = torch.log_softmax(z, 1)
            loss = -(t * log_p).sum() / n
            dz = (log_p.exp() - t) / n
        else:
            y = torch.sigmoid(z)
            loss = 0.5 * ((y - t) ** 2).sum()
            dz = (y - t) * y * (1 - y)
        dW2, db2 = a.T @ dz, bias_grad(dz, b2)
        da = dz @ W2.T
        dh = da * (h > 0) if relu else da * a * (1 - a)
        dW1, db1 = x.T @ dh, bias_grad(dh, b1)
        for p, g in ((W1, dW1), (b1, db1), (W2, dW2), (b2, db2)):
            p.sub_(g, alpha=lr)
        return loss

    return step


# --- JAX ---------------------------------------------------------------------------------

def jax_step(jax, case, params, X, T):
    """jax.jit of value_and_grad plus the SGD update; each call waits for its result."""
    jnp = jax.numpy
    activation = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid}[case.activation]
    lr = case.lr

    def loss_fn(p, x, t):
        W1, b1, W2, b2 = p
        z = activation(x @ W1 + b1) @ W2 + b2
        if case.loss == "softmax-cross-entropy":
            return -jnp.sum(t * jax.nn.log_softmax(z, axis=1)) / x.shape[0]
        y = jax.nn.sigmoid(z)
        return 0.5 * jnp.sum((y - t) ** 2)

    @jax.jit
    def update(p, x, t):
        loss, grads = jax.value_and_grad(loss_fn)(p, x, t)
        return tuple(w - lr * g for w, g in zip(p, grads)), loss

    state = [tuple(jnp.asarray(p) for p in _copies(params))]
    x, t = jnp.asarray(X), jnp.asarray(T)

    def step():
        state[0], loss = update(state[0], x, t)
        return loss.block_until_ready()

    return step


def enable_jax_float64(jax):
    """JAX computes in float32 unless told otherwise; the float64 rows need real float64."""
    jax.config.update("jax_enable_x64", True)


# --- the user-formula activation composed from numpy ---------------------------------------

def mish_numpy(x, dout):
    """Mish forward and backward, x * tanh(log(1 + exp(x))), composed from numpy operations."""
    t = np.tanh(np.log(1 + np.exp(x)))
    y = x * t
    dx = dout * (t + x * (1 - t * t) / (1 + np.exp(-x)))
    return y, dx
