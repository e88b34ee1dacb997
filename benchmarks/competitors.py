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
    """jax.jit of value_and_grad plus the SGD update (jax_sgd_step); each call waits for its result."""
    jnp = jax.numpy
    activation = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid}[case.activation]

    def loss_fn(p, x, t):
        W1, b1, W2, b2 = p
        z = activation(x @ W1 + b1) @ W2 + b2
        if case.loss == "softmax-cross-entropy":
            return jax_cross_entropy(jax, z, t)
        y = jax.nn.sigmoid(z)
        return 0.5 * jnp.sum((y - t) ** 2)

    return jax_sgd_step(jax, loss_fn, params, X, T, case.lr)


def jax_sgd_step(jax, loss_fn, params, x, t, lr):
    """One step callable (with snapshot()) of jax.jit of value_and_grad of loss_fn(params, x, t)
    plus the SGD update, params a tuple; each call waits for its result, as a training loop
    that reads the loss would."""
    jnp = jax.numpy

    @jax.jit
    def update(p, x, t):
        loss, grads = jax.value_and_grad(loss_fn)(p, x, t)
        return tuple(w - lr * g for w, g in zip(p, grads)), loss

    state = [tuple(jnp.asarray(p) for p in _copies(params))]
    x, t = jnp.asarray(x), jnp.asarray(t)

    def step():
        state[0], loss = update(state[0], x, t)
        return loss.block_until_ready()

    return _with_snapshot(step, lambda: [np.asarray(p) for p in state[0]])


def jax_cross_entropy(jax, scores, t):
    """Softmax cross-entropy of scores against one-hot targets t, the mean over the batch (symprop's loss)."""
    return -jax.numpy.sum(t * jax.nn.log_softmax(scores, axis=1)) / t.shape[0]


def torch_gemm(torch, a, b):
    """torch.mm on the GEMM-peak operands into a preallocated output, as np.dot(a, b, out)."""
    a, b = torch.from_numpy(a), torch.from_numpy(b)
    out = torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    return lambda: torch.mm(a, b, out=out)


def jax_gemm(jax, a, b):
    """jax.jit of jnp.dot on the GEMM-peak operands (on the device already); each call waits
    for its result. XLA allocates the output each call: that is how JAX runs a product."""
    dot = jax.jit(jax.numpy.dot)
    a, b = jax.numpy.asarray(a), jax.numpy.asarray(b)
    return lambda: dot(a, b).block_until_ready()


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


# --- networks beyond the two-layer stacks (issues 15 and 16) --------------------------------
#
# Each builder takes a ``NetCase`` (benchmarks/bench.py), the starting parameters in symprop's
# layout (PARAM_NAMES order: W as inputs x outputs, conv kernels as O x C x k x k), X (N x
# features, images flattened C, H, W) and one-hot T, and returns a no-argument step callable
# with a ``snapshot()`` attribute: {"params": [...], "running": [...]} as numpy arrays in
# symprop's layout, so a test can check that every implementation took the same step.

BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # batch norm's defaults in symprop and torch
LN_EPS = 1e-5  # layer norm's, in symprop's mha block and torch's nn.LayerNorm
ADAM = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}  # torch.optim.Adam's defaults (and symprop's)


def _with_snapshot(step, params, running=()):
    """Attach snapshot(): the step's current parameters (and running averages) as numpy copies."""
    def snapshot():
        return {"params": [np.array(p, copy=True) for p in params()],
                "running": [np.array(r, copy=True) for r in running()] if running else []}
    step.snapshot = snapshot
    return step


def symprop_adam_step(net, case, params, X, T, workspace=False):
    """train_step_adam_kernel (the raw dispatcher; it allocates its workspace each call), or
    with workspace=True train_step_adam_into on one workspace from make_workspace, as a
    training loop keeps it. Batch norm's running averages are updated in place too."""
    params = _copies(params)
    adam = net.init_state_adam(*params)
    running = net.init_state(X.dtype)
    hyper = (case.lr, ADAM["beta1"], ADAM["beta2"], ADAM["eps"], 0.0)  # lr, betas, eps, weight decay
    if workspace:
        step = functools.partial(net.train_step_adam_into, *params, *adam, X, T, *hyper, *running,
                                 *net.make_workspace(X))
    else:
        step = functools.partial(net.train_step_adam_kernel, *params, *adam, X, T, *hyper, *running)
    return _with_snapshot(step, lambda: params, lambda: running)


def symprop_sgd_net_step(net, case, params, X, T, workspace=False):
    """sgd_step_kernel, or sgd_step_into on a kept workspace (workspace=True)."""
    params = _copies(params)
    if workspace:
        step = functools.partial(net.sgd_step_into, *params, X, T, case.lr, *net.make_workspace(X))
    else:
        step = functools.partial(net.sgd_step_kernel, *params, X, T, case.lr)
    return _with_snapshot(step, lambda: params)


def _torch_linear(torch, W, b):
    layer = torch.nn.Linear(W.shape[0], W.shape[1], dtype=torch.from_numpy(W).dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W.T.copy()))
        layer.bias.copy_(torch.from_numpy(b))
    return layer


def _torch_linear_params(layer):
    return [layer.weight.detach().numpy().T, layer.bias.detach().numpy()]


def torch_batchnorm_adam_module_step(torch, case, params, X, T):
    """nn.Linear, nn.BatchNorm1d (training mode), nn.ReLU, nn.Linear, CrossEntropyLoss and
    torch.optim.Adam, as the tutorials write it."""
    W1, b1, scale, shift, W2, b2 = _copies(params)
    norm = torch.nn.BatchNorm1d(W1.shape[1], eps=BN_EPS, momentum=BN_MOMENTUM, dtype=torch.from_numpy(W1).dtype)
    with torch.no_grad():
        norm.weight.copy_(torch.from_numpy(scale))
        norm.bias.copy_(torch.from_numpy(shift))
    model = torch.nn.Sequential(_torch_linear(torch, W1, b1), norm, torch.nn.ReLU(), _torch_linear(torch, W2, b2))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=case.lr, betas=(ADAM["beta1"], ADAM["beta2"]),
                                 eps=ADAM["eps"])
    loss_fn = torch.nn.CrossEntropyLoss()
    x, target = torch.from_numpy(X), torch.from_numpy(T.argmax(axis=1))

    def step():
        optimizer.zero_grad()
        loss = loss_fn(model(x), target)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return _with_snapshot(
        step,
        lambda: [*_torch_linear_params(model[0]), norm.weight.detach().numpy(), norm.bias.detach().numpy(),
                 *_torch_linear_params(model[3])],
        lambda: [norm.running_mean.numpy(), norm.running_var.numpy()])


def torch_batchnorm_adam_manual_step(torch, case, params, X, T):
    """Tensors without autograd: batch norm's compact backward
    dz = (g / (N s)) (N dy - sum dy - xhat sum dy xhat) and torch.optim.Adam's algorithm
    written out with in-place tensor operations."""
    tensors = [torch.from_numpy(p) for p in _copies(params)]
    W1, b1, scale, shift, W2, b2 = tensors
    width = W1.shape[1]
    running_mean, running_var = torch.zeros(width, dtype=W1.dtype), torch.ones(width, dtype=W1.dtype)
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in tensors]
    beta1, beta2, eps, lr = ADAM["beta1"], ADAM["beta2"], ADAM["eps"], case.lr
    x, t = torch.from_numpy(X), torch.from_numpy(T)
    n = X.shape[0]
    count = [0]

    def step():
        z = torch.addmm(b1, x, W1)
        mean = z.mean(0)
        centred = z - mean
        var = (centred * centred).mean(0)
        s = torch.sqrt(var + BN_EPS)
        xhat = centred / s
        y = xhat * scale + shift
        a = torch.relu(y)
        scores = torch.addmm(b2, a, W2)
        log_p = torch.log_softmax(scores, 1)
        loss = -(t * log_p).sum() / n
        dscores = (log_p.exp() - t) / n
        dW2, db2 = a.T @ dscores, dscores.sum(0)
        dy = (dscores @ W2.T) * (y > 0)
        dshift, dscale = dy.sum(0), (dy * xhat).sum(0)
        dz = (scale / (n * s)) * (n * dy - dshift - xhat * dscale)
        dW1, db1 = x.T @ dz, dz.sum(0)
        running_mean.mul_(1 - BN_MOMENTUM).add_(mean, alpha=BN_MOMENTUM)
        running_var.mul_(1 - BN_MOMENTUM).add_(var, alpha=BN_MOMENTUM * n / (n - 1))
        count[0] += 1
        correction1, correction2 = 1 - beta1 ** count[0], 1 - beta2 ** count[0]
        for p, g, (m, v) in zip(tensors, (dW1, db1, dscale, dshift, dW2, db2), moments):
            m.mul_(beta1).add_(g, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denominator = (v.sqrt() / correction2 ** 0.5).add_(eps)
            p.addcdiv_(m, denominator, value=-lr / correction1)
        return loss

    return _with_snapshot(step, lambda: [p.numpy() for p in tensors],
                          lambda: [running_mean.numpy(), running_var.numpy()])


def jax_batchnorm_adam_step(jax, case, params, X, T):
    """jax.jit of value_and_grad (batch norm in training mode, its batch mean and variance
    returned as aux for the running averages) plus Adam written in jax.numpy."""
    jnp = jax.numpy
    beta1, beta2, eps, lr = ADAM["beta1"], ADAM["beta2"], ADAM["eps"], case.lr
    n = X.shape[0]

    def loss_fn(p, x, t):
        W1, b1, scale, shift, W2, b2 = p
        z = x @ W1 + b1
        mean = z.mean(0)
        var = ((z - mean) ** 2).mean(0)
        a = jax.nn.relu(scale * (z - mean) / jnp.sqrt(var + BN_EPS) + shift)
        scores = a @ W2 + b2
        return jax_cross_entropy(jax, scores, t), (mean, var)

    @jax.jit
    def update(p, m, v, count, running, x, t):
        (loss, (mean, var)), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, x, t)
        count = count + 1
        m = tuple(beta1 * mi + (1 - beta1) * g for mi, g in zip(m, grads))
        v = tuple(beta2 * vi + (1 - beta2) * g * g for vi, g in zip(v, grads))
        correction1, correction2 = 1 - beta1 ** count, 1 - beta2 ** count
        p = tuple(w - (lr / correction1) * mi / (jnp.sqrt(vi) / jnp.sqrt(correction2) + eps)
                  for w, mi, vi in zip(p, m, v))
        running = ((1 - BN_MOMENTUM) * running[0] + BN_MOMENTUM * mean,
                   (1 - BN_MOMENTUM) * running[1] + BN_MOMENTUM * var * (n / (n - 1)))
        return p, m, v, count, running, loss

    start = tuple(jnp.asarray(p) for p in _copies(params))
    width = params[0].shape[1]
    state = {"p": start, "m": tuple(jnp.zeros_like(p) for p in start), "v": tuple(jnp.zeros_like(p) for p in start),
             "count": jnp.zeros((), X.dtype),
             "running": (jnp.zeros(width, X.dtype), jnp.ones(width, X.dtype))}
    x, t = jnp.asarray(X), jnp.asarray(T)

    def step():
        s = state
        s["p"], s["m"], s["v"], s["count"], s["running"], loss = update(s["p"], s["m"], s["v"], s["count"],
                                                                        s["running"], x, t)
        return loss.block_until_ready()

    return _with_snapshot(step, lambda: [np.asarray(p) for p in state["p"]],
                          lambda: [np.asarray(r) for r in state["running"]])


def torch_conv_module_step(torch, case, params, X, T):
    """nn.Conv2d, ReLU, MaxPool2d, Flatten, Linear, ReLU, Linear, CrossEntropyLoss and
    torch.optim.SGD, as the tutorials write it (NCHW images)."""
    K1, c1, W2, b2, W3, b3 = _copies(params)
    channels, height, width = case.image
    conv = torch.nn.Conv2d(channels, K1.shape[0], K1.shape[2], dtype=torch.from_numpy(K1).dtype)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(K1))
        conv.bias.copy_(torch.from_numpy(c1))
    model = torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                _torch_linear(torch, W2, b2), torch.nn.ReLU(), _torch_linear(torch, W3, b3))
    optimizer = torch.optim.SGD(model.parameters(), lr=case.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    images = torch.from_numpy(X.reshape(X.shape[0], channels, height, width).copy())
    target = torch.from_numpy(T.argmax(axis=1))

    def step():
        optimizer.zero_grad()
        loss = loss_fn(model(images), target)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return _with_snapshot(step, lambda: [conv.weight.detach().numpy(), conv.bias.detach().numpy(),
                                         *_torch_linear_params(model[4]), *_torch_linear_params(model[6])])


def jax_conv_step(jax, case, params, X, T):
    """jax.jit of value_and_grad through lax.conv_general_dilated (NCHW, OIHW, valid) and a
    2x2 max-pool by lax.reduce_window, plus the SGD update."""
    lax = jax.lax
    channels, height, width = case.image
    n = X.shape[0]

    def loss_fn(p, x, t):
        K1, c1, W2, b2, W3, b3 = p
        z = lax.conv_general_dilated(x, K1, (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW"))
        a = jax.nn.relu(z + c1[None, :, None, None])
        pooled = lax.reduce_window(a, np.array(-np.inf, a.dtype), lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        h = jax.nn.relu(pooled.reshape(n, -1) @ W2 + b2)
        return jax_cross_entropy(jax, h @ W3 + b3, t)

    return jax_sgd_step(jax, loss_fn, params, X.reshape(n, channels, height, width), T, case.lr)


# ---- sequence layers (NetCase kinds lstm, gru, attention-head, mha) --------------------------
def _torch_sequence_data(torch, case, X, T):
    """X as (N, T, D) sequences and the targets as class indices."""
    return torch.from_numpy(X.reshape(X.shape[0], case.steps, -1).copy()), torch.from_numpy(T.argmax(axis=1))


def _torch_sgd_step(torch, model, optimizer, inputs, target):
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), target)
        loss.backward()
        optimizer.step()
        return loss.detach()
    return step


def _torch_attention_module(torch, case, params, dtype):
    """(modules, forward): nn.MultiheadAttention with symprop's parameters copied in (torch
    stores the transposes: in_proj_weight stacks Wq^T, Wk^T, Wv^T). The head: one head, no
    biases, its output projection held at the identity and not trained (a little more work
    than symprop's head, which has none). The mha block: its heads, biases and output
    projection, then x + its output into nn.LayerNorm (eps 1e-5 in both)."""
    nn, tensor = torch.nn, torch.from_numpy
    block = case.kind == "mha"
    if block:
        Wq, bq, Wk, bk, Wv, bv, Wo, bo, scale, shift = params[:10]
    else:
        Wq, Wk, Wv = params[:3]
    width = Wq.shape[0]
    attention = nn.MultiheadAttention(width, case.sizes[1] if block else 1, bias=block, batch_first=True,
                                      dtype=dtype)
    with torch.no_grad():
        attention.in_proj_weight.copy_(tensor(np.concatenate([Wq.T, Wk.T, Wv.T])))
        attention.out_proj.weight.copy_(tensor(Wo.T.copy()) if block else torch.eye(width, dtype=dtype))
    if not block:
        attention.out_proj.weight.requires_grad_(False)
        return [attention], lambda x: attention(x, x, x, need_weights=False)[0]
    norm = nn.LayerNorm(width, eps=LN_EPS, dtype=dtype)
    with torch.no_grad():
        attention.in_proj_bias.copy_(tensor(np.concatenate([bq, bk, bv])))
        attention.out_proj.bias.copy_(tensor(bo))
        norm.weight.copy_(tensor(scale))
        norm.bias.copy_(tensor(shift))
    return [attention, norm], lambda x: norm(x + attention(x, x, x, need_weights=False)[0])


def torch_sequence_module_step(torch, case, params, X, T):
    """The nn modules as the tutorials write them, optim.SGD: nn.LSTM / nn.GRU (batch_first)
    with the last state into nn.Linear; or nn.MultiheadAttention (as one head, or as the mha
    block with the residual and nn.LayerNorm: ``_torch_attention_module``), flattened into
    nn.Linear. symprop's parameters are copied in, so every implementation takes the same step."""
    nn, params = torch.nn, _copies(params)
    inputs, target = _torch_sequence_data(torch, case, X, T)
    dtype = inputs.dtype
    if case.kind in ("attention-head", "mha"):
        layers, attend = _torch_attention_module(torch, case, params, dtype)
        readout = _torch_linear(torch, *params[-2:])

        class Attention(nn.Module):
            def __init__(self):
                super().__init__()
                self.layers, self.readout = nn.ModuleList(layers), readout

            def forward(self, x):
                return self.readout(attend(x).flatten(1))
        model = Attention()
    else:
        Wx, Wh, *biases, W, b = params
        recurrent = {"lstm": nn.LSTM, "gru": nn.GRU}[case.kind](Wx.shape[0], Wh.shape[0], batch_first=True, dtype=dtype)
        with torch.no_grad():
            recurrent.weight_ih_l0.copy_(torch.from_numpy(Wx.T.copy()))
            recurrent.weight_hh_l0.copy_(torch.from_numpy(Wh.T.copy()))
            recurrent.bias_ih_l0.copy_(torch.from_numpy(biases[0]))  # the LSTM's one bias b, the GRU's bx
            if len(biases) > 1:
                recurrent.bias_hh_l0.copy_(torch.from_numpy(biases[1]))
        if len(biases) == 1:  # the LSTM's second bias would be a second copy of b: zero and kept there
            recurrent.bias_hh_l0.requires_grad_(False).zero_()
        readout = _torch_linear(torch, W, b)

        class LastState(nn.Module):
            def __init__(self):
                super().__init__()
                self.recurrent, self.readout = recurrent, readout

            def forward(self, x):
                return self.readout(self.recurrent(x)[0][:, -1])
        model = LastState()
    trained = [p for p in model.parameters() if p.requires_grad]
    step = _torch_sgd_step(torch, model, torch.optim.SGD(trained, lr=case.lr), inputs, target)
    return _with_snapshot(step, lambda: [p.detach().numpy() for p in model.parameters()])


def torch_sequence_manual_step(torch, case, params, X, T):
    """The same step written with torch ops, as the from-scratch courses do: the cell's
    equations over a Python loop of steps (x_t Wx for every step at once), or the head's
    softmax(Q K^T / sqrt(d)) V (the mha block: per head, d = D/H, then x + O Wo + bo through
    F.layer_norm); autograd for the gradients and the SGD update by hand."""
    tensors = [torch.from_numpy(p).requires_grad_() for p in _copies(params)]
    inputs, target = _torch_sequence_data(torch, case, X, T)
    F = torch.nn.functional

    def scores():
        if case.kind == "attention-head":
            Wq, Wk, Wv, W, b = tensors
            q, k, v = inputs @ Wq, inputs @ Wk, inputs @ Wv
            o = torch.softmax(q @ k.transpose(1, 2) / Wq.shape[1] ** 0.5, dim=-1) @ v
            return o.flatten(1) @ W + b
        if case.kind == "mha":
            Wq, bq, Wk, bk, Wv, bv, Wo, bo, scale, shift, W, b = tensors
            n, steps, width = inputs.shape
            heads = case.sizes[1]

            def split(y):  # (N, T, D) -> (N, H, T, D/H), head h reading columns h D/H .. (h + 1) D/H - 1
                return y.view(n, steps, heads, width // heads).transpose(1, 2)
            q, k, v = split(inputs @ Wq + bq), split(inputs @ Wk + bk), split(inputs @ Wv + bv)
            o = torch.softmax(q @ k.transpose(2, 3) / (width // heads) ** 0.5, dim=-1) @ v
            r = inputs + o.transpose(1, 2).reshape(n, steps, width) @ Wo + bo
            return F.layer_norm(r, (width,), scale, shift, eps=LN_EPS).flatten(1) @ W + b
        Wx, Wh, *biases, W, b = tensors
        hidden = Wh.shape[0]
        xw = inputs @ Wx + biases[0]
        h = torch.zeros(inputs.shape[0], hidden, dtype=inputs.dtype)
        c = torch.zeros_like(h)
        for t in range(case.steps):
            if case.kind == "lstm":
                i, f, g, o = (xw[:, t] + h @ Wh).chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                ax, ah = xw[:, t], h @ Wh + biases[1]
                r = torch.sigmoid(ax[:, :hidden] + ah[:, :hidden])
                z = torch.sigmoid(ax[:, hidden:2 * hidden] + ah[:, hidden:2 * hidden])
                n = torch.tanh(ax[:, 2 * hidden:] + r * ah[:, 2 * hidden:])
                h = (1 - z) * n + z * h
        return h @ W + b

    def step():
        for p in tensors:
            p.grad = None
        loss = F.cross_entropy(scores(), target)
        loss.backward()
        with torch.no_grad():
            for p in tensors:
                p -= case.lr * p.grad
        return loss.detach()

    return _with_snapshot(step, lambda: [p.detach().numpy() for p in tensors])


def jax_sequence_step(jax, case, params, X, T):
    """jax.jit of value_and_grad of jax_sequence_loss plus the SGD update (jax_sgd_step), X as
    (N, T, D) sequences."""
    n = X.shape[0]
    return jax_sgd_step(jax, jax_sequence_loss(jax, case), params, X.reshape(n, case.steps, -1), T, case.lr)


def jax_sequence_loss(jax, case):
    """loss(params, sequences, one-hot targets) as JAX's users write it: the cell over lax.scan
    (jax_recurrent_last_state), its last state into the readout; or the head (jax_attention)
    or the mha block (jax_mha_block), flattened into the readout. Softmax cross-entropy."""
    def loss_fn(p, x, t):
        *layer, W, b = p
        if case.kind == "attention-head":
            features = jax_attention(jax, x, *layer).reshape(x.shape[0], -1)
        elif case.kind == "mha":
            features = jax_mha_block(jax, x, *layer, heads=case.sizes[1]).reshape(x.shape[0], -1)
        else:
            features = jax_recurrent_last_state(jax, case.kind, x, *layer)
        return jax_cross_entropy(jax, features @ W + b, t)
    return loss_fn


def jax_recurrent_last_state(jax, kind, x, Wx, Wh, *biases):
    """The last hidden state of an lstm (one bias b; gates i, f, g, o) or a gru (biases bx, bh;
    gates r, z, n, with n = tanh(x Wx_n + bx_n + r (h Wh_n + bh_n))) over (N, T, D) sequences
    from a zero state: x_t Wx + b for every step in one product, then lax.scan over the steps,
    which XLA compiles to one loop instead of T unrolled copies of the cell."""
    jnp, sigmoid = jax.numpy, jax.nn.sigmoid
    hidden = Wh.shape[0]
    inputs_by_step = jnp.swapaxes(x @ Wx + biases[0], 0, 1)  # (T, N, gates): scan walks the first axis
    zeros = jnp.zeros((x.shape[0], hidden), x.dtype)

    def lstm_cell(state, xw):
        h, c = state
        i, f, g, o = jnp.split(xw + h @ Wh, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(g)
        return (sigmoid(o) * jnp.tanh(c), c), None

    def gru_cell(h, xw):
        hw = h @ Wh + biases[1]
        r = sigmoid(xw[:, :hidden] + hw[:, :hidden])
        z = sigmoid(xw[:, hidden:2 * hidden] + hw[:, hidden:2 * hidden])
        candidate = jnp.tanh(xw[:, 2 * hidden:] + r * hw[:, 2 * hidden:])
        return (1 - z) * candidate + z * h, None

    if kind == "lstm":
        (h, _), _ = jax.lax.scan(lstm_cell, (zeros, zeros), inputs_by_step)
    else:
        h, _ = jax.lax.scan(gru_cell, zeros, inputs_by_step)
    return h


def jax_attention(jax, x, Wq, Wk, Wv, heads=1, biases=(0.0, 0.0, 0.0)):
    """Self-attention of (N, T, D) sequences: Q = x Wq + bq, K and V likewise (the head has no
    biases), their columns split into ``heads`` equal blocks (as symprop's mha and torch's
    nn.MultiheadAttention split them), each head softmax(Q K^T / sqrt(d_head)) V, the heads'
    outputs side by side (N, T, dv)."""
    jnp = jax.numpy
    n, steps, _ = x.shape

    def by_head(W, b):
        return (x @ W + b).reshape(n, steps, heads, -1)

    q, k, v = (by_head(W, b) for W, b in zip((Wq, Wk, Wv), biases, strict=True))
    scores = jnp.einsum("nqhd,nkhd->nhqk", q, k) / q.shape[-1] ** 0.5
    return jnp.einsum("nhqk,nkhd->nqhd", jax.nn.softmax(scores, axis=-1), v).reshape(n, steps, -1)


def jax_mha_block(jax, x, Wq, bq, Wk, bk, Wv, bv, Wo, bo, scale, shift, heads):
    """symprop's mha block (nn.MultiheadAttention with biases, then nn.LayerNorm of x + its
    output): the heads by jax_attention, R = x + O Wo + bo, then each token's layer norm with
    the biased variance, scale and shift."""
    jnp = jax.numpy
    r = x + jax_attention(jax, x, Wq, Wk, Wv, heads, biases=(bq, bk, bv)) @ Wo + bo
    centred = r - r.mean(axis=-1, keepdims=True)
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / jnp.sqrt(variance + LN_EPS) * scale + shift
