"""Batch normalisation, layer normalisation and inverted dropout: the derived backward rules
proven equal to the textbook compact form, the network kernels against central differences
(float64), training versus inference mode, and agreement with PyTorch where it is installed."""
import numpy as np
import pytest
import sympy as sp

import symprop.generated.layers as kernels
from symprop.codegen.network import load_network
from symprop.symbolic.errors import SympropError
from symprop.symbolic.graph import parse_net
from symprop.symbolic.indexcalc import pull_constants
from symprop.symbolic.layers import REGISTRY, N
from symprop.symbolic.ops.norm import F
from tests.gradcheck import numerical_gradient, relative_error

GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, h = 1e-6
TORCH_TOLERANCE = 1e-10  # float64, the same arithmetic in another order
BN_NET = "affine(4,5) batchnorm relu affine(5,3) softmax-cross-entropy"
LN_NET = "affine(4,5) layernorm tanh dropout(0.5) affine(5,3) softmax-cross-entropy"

x, dy, gi = sp.IndexedBase("x"), sp.IndexedBase("dy"), sp.IndexedBase("g")
n, p = sp.symbols("n p", integer=True)
g, eps = sp.Symbol("g", real=True), sp.Symbol("epsilon", positive=True)


def compact_form(size, q, upstream):
    """The textbook rule dx[q] = (1 / (M s)) (M u[q] - sum u - xhat[q] sum u xhat), u = dL/dxhat,
    written out for a vector of `size` elements (batch norm: u = g dy, with g in front)."""
    items = range(1, size + 1)
    mu = sp.Add(*[x[i] for i in items]) / size
    s = sp.sqrt(sp.Add(*[(x[i] - mu) ** 2 for i in items]) / size + eps)
    xhat = {i: (x[i] - mu) / s for i in items}
    u = {i: upstream(i) for i in items}
    return (size * u[q] - sp.Add(*u.values()) - xhat[q] * sp.Add(*[u[i] * xhat[i] for i in items])) / (size * s)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_batchnorm_derivative_equals_the_compact_form_exactly(size):
    """SymPy's own derivative of sum_n dy[n] y[n] (before any renaming by the derivation),
    written out for N = size, minus dx = (g / (N s)) (N dy - sum dy - xhat sum dy xhat): zero."""
    raw = REGISTRY.derive("batchnorm").raw_backward["dx"].subs(N, size)
    for q in range(1, size + 1):
        exact = raw.subs(p, q).doit()
        assert sp.simplify(exact - compact_form(size, q, lambda i: g * dy[i])) == 0, (size, q)


@pytest.mark.parametrize("size", [2, 3])
def test_layernorm_derivative_equals_the_compact_form_exactly(size):
    raw = REGISTRY.derive("layernorm").raw_backward["dx"].subs(F, size)
    for q in range(1, size + 1):
        assert sp.simplify(raw.subs(p, q).doit() - compact_form(size, q, lambda i: gi[i] * dy[i])) == 0


def test_batchnorm_sifted_derivative_equals_the_compact_form_for_symbolic_n():
    """For any batch size N: the derivative after sifting the deltas (mu and sigma2 named, the
    sums over the batch kept) minus the compact form simplifies to zero."""
    d = REGISTRY.derive("batchnorm")
    sifted = next(step.rhs for step in d.steps if step.title.startswith("sift"))
    mu, sigma2 = sp.Symbol("mu", real=True), sp.Symbol("sigma2", nonnegative=True)
    s = sp.sqrt(sigma2 + eps)
    xhat = lambda i: (x[i] - mu) / s  # noqa: E731
    compact = g / (N * s) * (N * dy[p] - sp.Sum(dy[n], (n, 1, N)) - xhat(p) * sp.Sum(dy[n] * xhat(n), (n, 1, N)))
    assert sp.simplify(sp.expand(pull_constants(compact)) - sp.expand(sifted)) == 0
    # and the rule the kernels print is that form in xhat, s and the two named sums
    rule = d.backward["dx"]
    names = {s_.name: s_ for s_ in rule.free_symbols}
    textbook = names["g"] / (N * names["s"]) * (N * names["dy"] - names["sum_dy"]
                                                  - names["xhat"] * names["sum_dy_xhat"])
    assert sp.simplify(rule - textbook) == 0


def _network_gradcheck(net, params, X, T, masks=(), zero=()):
    loss, *grads = net.loss_and_grads(*params, X, T, masks=masks)
    for i, (name, grad) in enumerate(zip(net.PARAM_NAMES, grads)):
        def loss_of(v, i=i):
            changed = list(params)
            changed[i] = v
            return net.loss_and_grads(*changed, X, T, masks=masks)[0]
        numeric = numerical_gradient(loss_of, params[i])
        if name in zero:  # batch norm subtracts the batch mean: a bias just before it has no effect
            assert np.abs(grad).max() < 1e-12 and np.abs(numeric).max() < 1e-8, name
        else:
            assert relative_error(grad, numeric) < GRADCHECK_TOLERANCE, name


@pytest.fixture(scope="module")
def bn_net():
    return load_network(BN_NET)


@pytest.fixture(scope="module")
def ln_net():
    return load_network(LN_NET)


def _random_params(net, rng):
    return [rng.normal(size=shape) if name.startswith(("W", "b")) else rng.uniform(0.5, 2.0, shape)
            for name, shape in zip(net.PARAM_NAMES, net.PARAM_SHAPES)]


def test_batchnorm_network_gradients_match_central_differences(bn_net, rng):
    assert bn_net.PARAM_NAMES == ("W1", "b1", "scale2", "shift2", "W2", "b2")
    params = _random_params(bn_net, rng)
    X, T = rng.normal(size=(6, 4)), np.eye(3)[rng.integers(0, 3, 6)]
    _network_gradcheck(bn_net, params, X, T, zero={"b1"})


def test_layernorm_dropout_network_gradients_match_central_differences(ln_net, rng):
    params = _random_params(ln_net, rng)
    X, T = rng.normal(size=(6, 4)), np.eye(3)[rng.integers(0, 3, 6)]
    masks = ln_net.make_masks(6, np.random.default_rng(1))
    assert set(np.unique(masks[0])) == {0.0, 1.0}
    _network_gradcheck(ln_net, params, X, T, masks)


@pytest.mark.parametrize("which", ["batchnorm", "layernorm"])
def test_adam_step_on_a_norm_network_uses_the_callers_eps(bn_net, ln_net, rng, which):
    """One fused Adam step equals p - lr g / (|g| + eps) (Adam's first step) with the gradients
    of loss_and_grads: the norm layer's own epsilon (1e-5) once shadowed Adam's eps argument
    inside the fused kernel, moving every small-gradient weight by the wrong amount."""
    net = bn_net if which == "batchnorm" else ln_net
    params = _random_params(net, rng)
    X, T = rng.normal(size=(6, 4)), np.eye(3)[rng.integers(0, 3, 6)]
    masks = net.make_masks(6, np.random.default_rng(2)) if net.MASK_NAMES else None
    loss, *grads = net.loss_and_grads(*params, X, T, masks=masks)
    before = [p.copy() for p in params]
    lr, eps = 0.01, 1e-3  # eps large enough to change each step well above round-off
    net.train_step_adam(*params, net.init_state_adam(*params), X, T, lr=lr, eps=eps,
                        running=net.init_state() if which == "batchnorm" else None, masks=masks)
    for name, p, p0, g in zip(net.PARAM_NAMES, params, before, grads):
        real = np.abs(g) > 1e-9  # b1 before batch norm: round-off gradients, no digits to compare
        expected = p0 - lr * g / (np.abs(g) + eps)
        np.testing.assert_allclose(p[real], expected[real], rtol=1e-12, atol=0, err_msg=name)


def test_training_and_inference_modes(bn_net, ln_net, rng):
    params = _random_params(bn_net, rng)
    W1, b1, g, b, W2, b2 = params
    X, T = rng.normal(size=(8, 4)), np.eye(3)[rng.integers(0, 3, 8)]
    state = bn_net.init_state()
    np.testing.assert_array_equal(state[1], np.ones(5))
    z = X @ W1 + b1
    bn_net.sgd_step(*params, X, T, 0.0, state=state)  # lr 0: only the running averages move
    np.testing.assert_allclose(state[0], 0.1 * z.mean(0), rtol=1e-13)
    np.testing.assert_allclose(state[1], 0.9 + 0.1 * z.var(0, ddof=1), rtol=1e-13)
    hidden = np.maximum(0, g * (z - state[0]) / np.sqrt(state[1] + 1e-5) + b)
    np.testing.assert_allclose(bn_net.forward(*params, X, state=state), hidden @ W2 + b2, rtol=1e-12)
    trained = np.maximum(0, g * (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5) + b)
    np.testing.assert_allclose(bn_net.forward(*params, X, training=True), trained @ W2 + b2, rtol=1e-12)
    # dropout: the identity at inference; training multiplies by mask / (1 - p)
    lparams = _random_params(ln_net, rng)
    masks = ln_net.make_masks(8, np.random.default_rng(2))
    W1, b1, g, b, W2, b2 = lparams
    z = X @ W1 + b1
    normed = np.tanh(g * (z - z.mean(1, keepdims=True)) / np.sqrt(z.var(1, keepdims=True) + 1e-5) + b)
    np.testing.assert_allclose(ln_net.forward(*lparams, X, state=()), normed @ W2 + b2, rtol=1e-12)
    np.testing.assert_allclose(ln_net.forward(*lparams, X, training=True, masks=masks),
                               (normed * masks[0] * 2) @ W2 + b2, rtol=1e-12)


def test_clear_errors_for_missing_state_masks_and_bad_specs(bn_net, ln_net, rng):
    params = _random_params(bn_net, rng)
    X, T = rng.normal(size=(4, 4)), np.eye(3)[[0, 1, 2, 0]]
    with pytest.raises(ValueError, match="state must be the 2 arrays"):
        bn_net.forward(*params, X)
    with pytest.raises(ValueError, match="at least 2 rows"):
        bn_net.sgd_step(*params, X[:1], T[:1], 0.1, state=bn_net.init_state())
    with pytest.raises(ValueError, match="masks must be the 1 dropout masks"):
        ln_net.loss_and_grads(*_random_params(ln_net, rng), X, T)
    with pytest.raises(SympropError, match="drop probability"):
        parse_net("affine(2,2) dropout(1.5) mse")
    with pytest.raises(SympropError, match="batchnorm takes up to 2 positive numbers"):
        parse_net("affine(2,2) batchnorm(a) mse")


def test_batchnorm_layer_kernel_matches_the_network_step(bn_net, rng):
    """The per-layer kernels (generated/layers.py) give the same dx, dg, db as the fused step."""
    x_, g_, b_, dy_ = rng.normal(size=(5, 3)), rng.uniform(0.5, 2, 3), rng.normal(size=3), rng.normal(size=(5, 3))
    y, xhat, s, mean, var = kernels.batchnorm_forward(x_, g_, b_)
    np.testing.assert_allclose(mean, x_.mean(0), rtol=1e-13)
    np.testing.assert_allclose(var, x_.var(0), rtol=1e-13)
    dx, dg, db = kernels.batchnorm_backward(dy_, xhat, s, g_)
    compact = g_ / (5 * s) * (5 * dy_ - dy_.sum(0) - xhat * (dy_ * xhat).sum(0))
    np.testing.assert_allclose(dx, compact, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dg, (dy_ * xhat).sum(0), rtol=1e-13)
    np.testing.assert_allclose(db, dy_.sum(0), rtol=1e-13)


# ---- PyTorch as an independent reference (float64) ----

def _torch():
    return pytest.importorskip("torch", reason="PyTorch is the independent reference for batch norm and "
                               "layer norm; it is not a test dependency (pip install torch to run these)")


@pytest.mark.parametrize("name", ["batchnorm", "layernorm"])
def test_layer_kernels_agree_with_torch(name, rng):
    torch = _torch()
    x_, g_, b_, dy_ = rng.normal(size=(7, 4)), rng.uniform(0.5, 2, 4), rng.normal(size=4), rng.normal(size=(7, 4))
    module = (torch.nn.BatchNorm1d(4) if name == "batchnorm" else torch.nn.LayerNorm(4)).double()
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(g_))
        module.bias.copy_(torch.from_numpy(b_))
    xt = torch.from_numpy(x_).requires_grad_()
    yt = module.train()(xt)
    yt.backward(torch.from_numpy(dy_))
    y, xhat, s, _, _ = getattr(kernels, f"{name}_forward")(x_, g_, b_)
    dx, dg, db = getattr(kernels, f"{name}_backward")(dy_, xhat, s, g_)
    for ours, theirs in ((y, yt), (dx, xt.grad), (dg, module.weight.grad), (db, module.bias.grad)):
        assert relative_error(ours, theirs.detach().numpy()) < TORCH_TOLERANCE


def test_batchnorm_network_agrees_with_torch_over_steps(bn_net, rng):
    """Three SGD steps of the batch-norm network and of the same torch model: parameters,
    running averages and the inference-mode output agree."""
    torch = _torch()
    params = _random_params(bn_net, rng)
    W1, b1, g_, b_, W2, b2 = (torch.tensor(v.copy()) for v in params)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5), torch.nn.ReLU(),
                                torch.nn.Linear(5, 3)).double()
    with torch.no_grad():
        for target, value in zip([model[0].weight, model[0].bias, model[1].weight, model[1].bias,
                                  model[3].weight, model[3].bias], [W1.T, b1, g_, b_, W2.T, b2]):
            target.copy_(value)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    state = bn_net.init_state()
    for _ in range(3):
        X, labels = rng.normal(size=(6, 4)), rng.integers(0, 3, 6)
        loss = bn_net.sgd_step(*params, X, np.eye(3)[labels], 0.1, state=state)
        optimiser.zero_grad()
        theirs = torch.nn.functional.cross_entropy(model.train()(torch.from_numpy(X)), torch.from_numpy(labels))
        theirs.backward()
        optimiser.step()
        assert abs(loss - theirs.item()) < TORCH_TOLERANCE
    ours = [params[0].T, params[1], params[2], params[3], params[4].T, params[5]]
    for mine, theirs in zip(ours, model.parameters()):
        assert relative_error(mine, theirs.detach().numpy()) < TORCH_TOLERANCE
    assert relative_error(state[0], model[1].running_mean.numpy()) < TORCH_TOLERANCE
    assert relative_error(state[1], model[1].running_var.numpy()) < TORCH_TOLERANCE
    X = rng.normal(size=(5, 4))
    expected = model.eval()(torch.from_numpy(X)).detach().numpy()
    assert relative_error(bn_net.forward(*params, X, state=state), expected) < TORCH_TOLERANCE


def test_staged_graph_file_gradients_equal_the_kernel_backward():
    """symbolic/graphs/batchnorm-staged.toml works a 3 x 2 batch through mu, var, s, xhat and y
    node by node (exact values); its gradients are the batch-norm kernel's dx, dg, db."""
    from symprop.symbolic.examples import EXAMPLES, builtin_graph

    graph, t = builtin_graph("batchnorm-staged"), EXAMPLES["batchnorm-staged"].build()
    given = {name: float(value) for name, value in graph.given().items()}
    X = np.array([[given[f"x{n}{j}"] for j in (1, 2)] for n in (1, 2, 3)])
    dY = np.array([[given[f"dy{n}{j}"] for j in (1, 2)] for n in (1, 2, 3)])
    g_, b_ = np.array([given["g1"], given["g2"]]), np.array([given["b1"], given["b2"]])
    y, xhat, s, _, _ = kernels.batchnorm_forward(X, g_, b_)
    dx, dg, db = kernels.batchnorm_backward(dY, xhat, s, g_)
    for n_ in (1, 2, 3):
        for j in (1, 2):
            assert t.float_value(f"y{n_}{j}") == pytest.approx(y[n_ - 1, j - 1], rel=1e-13)
            assert t.float_value(f"df/dx{n_}{j}") == pytest.approx(dx[n_ - 1, j - 1], rel=1e-12, abs=1e-13)
    for j in (1, 2):
        assert t.float_value(f"df/dg{j}") == pytest.approx(dg[j - 1], rel=1e-12)
        assert t.float_value(f"df/db{j}") == pytest.approx(db[j - 1], rel=1e-12)
    # the variance's path through the mean carries nothing: d var / d mu = 0 at the batch mean
    assert t.float_value("dvar1/dmu1") == 0 and t.float_value("dvar2/dmu2") == 0


def test_inference_loss_uses_the_running_averages(bn_net, rng):
    params = _random_params(bn_net, rng)
    X, T = rng.normal(size=(6, 4)), np.eye(3)[rng.integers(0, 3, 6)]
    state = (rng.normal(size=5), rng.uniform(0.5, 2, 5))
    scores = bn_net.forward(*params, X, state=state)
    shifted = scores - scores.max(1, keepdims=True)
    expected = -np.mean(np.sum(T * (shifted - np.log(np.exp(shifted).sum(1, keepdims=True))), 1))
    assert bn_net.loss(*params, X, T, state=state) == pytest.approx(expected, rel=1e-13)


def test_batchnorm_network_with_adam_agrees_with_torch(bn_net, rng):
    """The fused optimiser steps carry batch norm too: train_step_adam(..., running=state)
    against torch.optim.Adam over three steps (parameters and running averages)."""
    torch = _torch()
    params = _random_params(bn_net, rng)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5), torch.nn.ReLU(),
                                torch.nn.Linear(5, 3)).double()
    with torch.no_grad():
        for target, value in zip([model[0].weight, model[0].bias, model[1].weight, model[1].bias,
                                  model[3].weight, model[3].bias],
                                 [params[0].T, params[1], params[2], params[3], params[4].T, params[5]]):
            target.copy_(torch.tensor(value.copy()))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    running, adam = bn_net.init_state(), bn_net.init_state_adam(*params)
    b1_start = params[1].copy()
    for _ in range(3):
        X, labels = rng.normal(size=(6, 4)), rng.integers(0, 3, 6)
        loss = bn_net.train_step_adam(*params, adam, X, np.eye(3)[labels], lr=0.01, running=running)
        optimiser.zero_grad()
        theirs = torch.nn.functional.cross_entropy(model.train()(torch.from_numpy(X)), torch.from_numpy(labels))
        theirs.backward()
        optimiser.step()
        assert abs(loss - theirs.item()) < TORCH_TOLERANCE
    ours = [params[0].T, params[1], params[2], params[3], params[4].T, params[5]]
    for name, mine, theirs in zip(bn_net.PARAM_NAMES, ours, model.parameters()):
        if name == "b1":
            # the bias just before batch norm has gradient 0 in exact arithmetic (the batch mean
            # removes it); each side's is round-off, which Adam's m / sqrt(v) scales up to steps
            # of at most lr: no digits to compare, only that bound
            assert np.abs(mine - b1_start).max() <= 3 * 0.01 * (1 + 1e-6)
            continue
        assert relative_error(mine, theirs.detach().numpy()) < TORCH_TOLERANCE, name
    assert relative_error(running[0], model[1].running_mean.numpy()) < TORCH_TOLERANCE
    assert relative_error(running[1], model[1].running_var.numpy()) < TORCH_TOLERANCE
