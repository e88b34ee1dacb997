"""The baseline: a two-layer network as numpy layer classes, in the style of the seeds' code.

Each layer keeps what its backward pass needs and hands the upstream gradient on, exactly as
a user following the seed articles writes it. That includes the gradient with respect to the
input data (``Affine.backward`` of the first layer computes ``dx`` that nobody reads): the
benchmark times the code people actually write, so this work stays in.
"""
from __future__ import annotations

import numpy as np


class Affine:
    """out = x W + b. A bias of shape (1,) is shared by all outputs (the 2-2-2 example)."""

    def __init__(self, W, b):
        self.W, self.b = W, b
        self.x = self.dW = self.db = None

    def forward(self, x):
        self.x = x
        return np.dot(x, self.W) + self.b

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0) if self.b.shape[0] > 1 else np.sum(dout, keepdims=True).reshape(1)
        return dx


class Relu:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout = dout.copy()
        dout[self.mask] = 0
        return dout


class Sigmoid:
    def __init__(self):
        self.out = None

    def forward(self, x):
        # 1/(1+exp(-x)) overflows exp for x < -709 in float64 (-88 in float32); the
        # tanh form is the same function and never overflows.
        self.out = 0.5 * (np.tanh(0.5 * x) + 1)
        return self.out

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out


class SoftmaxWithLoss:
    """Softmax then cross-entropy with one-hot targets, mean over the batch."""

    def __init__(self):
        self.y = self.t = None

    def forward(self, x, t):
        self.t = t
        shifted = x - x.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.y = np.exp(shifted - log_sum)
        return -np.sum(t * (shifted - log_sum)) / x.shape[0]

    def backward(self, dout=1):
        return dout * (self.y - self.t) / self.t.shape[0]


class SquaredErrorLoss:
    """E = 1/2 sum (y - t)^2, the seeds' worked-example loss."""

    def __init__(self):
        self.y = self.t = None

    def forward(self, y, t):
        self.y, self.t = y, t
        return 0.5 * np.sum((y - t) ** 2)

    def backward(self, dout=1):
        return dout * (self.y - self.t)


class TwoLayerNet:
    """affine, activation, affine, (activation,) loss: the layer list the seeds build by hand.

    ``params`` are the caller's arrays and are updated in place by ``sgd_step``, so every
    competitor in the benchmark starts from the same numbers.
    """

    ACTIVATIONS = {"relu": Relu, "sigmoid": Sigmoid}
    LOSSES = {"softmax-cross-entropy": SoftmaxWithLoss, "squared-error": SquaredErrorLoss}

    def __init__(self, params, activation: str, loss: str, output_activation: str | None = None):
        W1, b1, W2, b2 = params
        self.params = params
        self.layers = [Affine(W1, b1), self.ACTIVATIONS[activation](), Affine(W2, b2)]
        if output_activation:
            self.layers.append(self.ACTIVATIONS[output_activation]())
        self.last_layer = self.LOSSES[loss]()

    def loss(self, x, t):
        for layer in self.layers:
            x = layer.forward(x)
        return self.last_layer.forward(x, t)

    def gradients(self):
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        first, second = self.layers[0], self.layers[2]
        return first.dW, first.db, second.dW, second.db

    def sgd_step(self, x, t, lr):
        """One training step: forward, backward, p -= lr * dp. Returns the loss before it."""
        loss = self.loss(x, t)
        for param, grad in zip(self.params, self.gradients()):
            param -= lr * grad
        return loss
