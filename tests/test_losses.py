"""The losses beyond the seeds: log-softmax + NLL, the multiclass hinge (SVM) and Huber. Each
derived rule equals its textbook form; each network kernel matches central differences
(float64) and one SGD step is p - lr dL/dp; torch agrees where it is installed."""
import numpy as np
import pytest
import sympy as sp

import symprop.generated.layers as kernels
from symprop.codegen.network import load_network
from symprop.symbolic.layers import REGISTRY
from tests.gradcheck import numerical_gradient, relative_error

GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, h = 1e-6
NETS = {
    "log-softmax-nll": "affine(4,3) log-softmax-nll",
    "multiclass-hinge": "affine(4,3) multiclass-hinge",
    "huber": "affine(4,3) huber",
}


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def svm_loss_naive(z, labels):
    """CS231n's svm_loss_naive on scores (margin 1), loop by loop: the loss and dL/dz."""
    loss, dz = 0.0, np.zeros_like(z)
    for n in range(z.shape[0]):
        for k in range(z.shape[1]):
            if k == labels[n]:
                continue
            margin = z[n, k] - z[n, labels[n]] + 1
            if margin > 0:
                loss += margin
                dz[n, k] += 1
                dz[n, labels[n]] -= 1
    return loss / z.shape[0], dz / z.shape[0]


def test_log_softmax_nll_is_derived_in_two_stages_and_equals_softmax_minus_t():
    d = REGISTRY.derive("log-softmax-nll")
    titles = [step.title for step in d.steps]
    assert "log-softmax node" in titles and "negative log-likelihood node" in titles
    assert sp.simplify(d.backward["dz[j]"] - REGISTRY.derive("softmax-cross-entropy").backward["dz[j]"]) == 0
    y, t = sp.IndexedBase("y"), sp.IndexedBase("t")
    j = sp.Symbol("j", integer=True)
    assert sp.simplify(d.backward["dz[j]"] - (y[j] - t[j]) / sp.Symbol("N", integer=True, positive=True)) == 0


def test_loss_layer_kernels_equal_the_textbook_forms(rng):
    z, labels = rng.normal(size=(6, 4)), rng.integers(0, 4, 6)
    t = np.eye(4)[labels]
    loss, y = kernels.log_softmax_nll_forward(z, t)
    assert loss == pytest.approx(-np.mean(np.log(softmax(z))[np.arange(6), labels]), rel=1e-13)
    np.testing.assert_allclose(kernels.log_softmax_nll_backward(y, t), (softmax(z) - t) / 6, rtol=1e-12, atol=1e-15)
    expected_loss, expected_dz = svm_loss_naive(z, labels)
    assert kernels.multiclass_hinge_forward(z, t) == pytest.approx(expected_loss, rel=1e-13)
    np.testing.assert_allclose(kernels.multiclass_hinge_backward(z, t), expected_dz, rtol=1e-13)
    prediction, target = rng.normal(scale=2, size=(6, 4)), rng.normal(size=(6, 4))
    error = prediction - target
    huber = np.where(np.abs(error) <= 1, error ** 2 / 2, np.abs(error) - 0.5)
    assert kernels.huber_forward(prediction, target) == pytest.approx(huber.mean(), rel=1e-13)
    np.testing.assert_allclose(kernels.huber_backward(prediction, target), np.clip(error, -1, 1) / 24, rtol=1e-13)


@pytest.mark.parametrize("name", list(NETS))
def test_loss_networks_match_central_differences_and_step(name, rng):
    net = load_network(NETS[name])
    params = [rng.normal(size=shape) for shape in net.PARAM_SHAPES]
    X = rng.normal(size=(5, 4))
    T = rng.normal(size=(5, 3)) if name == "huber" else np.eye(3)[rng.integers(0, 3, 5)]
    loss, *grads = net.loss_and_grads(*params, X, T)
    for i, grad in enumerate(grads):
        def loss_of(v, i=i):
            changed = list(params)
            changed[i] = v
            return net.loss_and_grads(*changed, X, T)[0]
        assert relative_error(grad, numerical_gradient(loss_of, params[i])) < GRADCHECK_TOLERANCE, net.PARAM_NAMES[i]
    stepped = [p.copy() for p in params]
    assert net.sgd_step(*stepped, X, T, 0.1) == pytest.approx(loss, rel=1e-13)
    for before, after, grad in zip(params, stepped, grads):
        np.testing.assert_allclose(after, before - 0.1 * grad, rtol=1e-12, atol=1e-14)


def test_losses_agree_with_torch(rng):
    torch = pytest.importorskip("torch", reason="PyTorch is an independent reference for the losses; "
                                "it is not a test dependency (pip install torch to run this)")
    z, labels = rng.normal(size=(6, 4)), rng.integers(0, 4, 6)
    t = np.eye(4)[labels]
    zt = torch.tensor(z, requires_grad=True)
    nll = torch.nn.functional.nll_loss(torch.log_softmax(zt, 1), torch.from_numpy(labels))
    nll.backward()
    loss, y = kernels.log_softmax_nll_forward(z, t)
    assert abs(loss - nll.item()) < 1e-12
    assert relative_error(kernels.log_softmax_nll_backward(y, t), zt.grad.numpy()) < 1e-12
    zt = torch.tensor(z, requires_grad=True)
    hinge = torch.nn.functional.multi_margin_loss(zt, torch.from_numpy(labels))  # mean over classes too
    hinge.backward()
    assert kernels.multiclass_hinge_forward(z, t) / 4 == pytest.approx(hinge.item(), rel=1e-12)
    assert relative_error(kernels.multiclass_hinge_backward(z, t) / 4, zt.grad.numpy()) < 1e-12
    p, target = rng.normal(scale=2, size=(6, 4)), rng.normal(size=(6, 4))
    pt = torch.tensor(p, requires_grad=True)
    huber = torch.nn.functional.huber_loss(pt, torch.from_numpy(target))
    huber.backward()
    assert kernels.huber_forward(p, target) == pytest.approx(huber.item(), rel=1e-12)
    assert relative_error(kernels.huber_backward(p, target), pt.grad.numpy()) < 1e-12


def test_l2_penalty_is_derived_and_added_to_loss_and_gradient(rng):
    from symprop.symbolic.errors import SympropError
    from symprop.symbolic.graph import parse_net
    from symprop.symbolic.ops.affine import l2_penalty_derivation

    d = l2_penalty_derivation()
    lam, w = sp.Symbol("lambda", positive=True), sp.Symbol("w", real=True)
    assert d.backward["dW"] == lam * w  # weight decay: the textbook lambda W
    matrix_rule = next(step.rhs for step in d.steps if step.title == "backward dW")
    assert sp.simplify(matrix_rule - lam * sp.MatrixSymbol("W", *matrix_rule.shape)) == sp.ZeroMatrix(*matrix_rule.shape)
    spec = "affine(4,3, l2=0.1) softmax-cross-entropy"
    assert parse_net(spec).spec == "affine(4,3,l2=0.1) softmax-cross-entropy"
    assert parse_net(parse_net(spec).spec).spec == parse_net(spec).spec
    with pytest.raises(SympropError, match="l2= needs a number >= 0"):
        parse_net("affine(4,3,l2=-1) softmax-cross-entropy")
    net = load_network(spec)
    W, b = rng.normal(size=(4, 3)), rng.normal(size=3)
    X, T = rng.normal(size=(5, 4)), np.eye(3)[rng.integers(0, 3, 5)]
    loss, dW, db = net.loss_and_grads(W, b, X, T)
    data_loss = -np.mean(np.sum(T * np.log(softmax(X @ W + b)), 1))
    assert loss == pytest.approx(data_loss + 0.05 * np.sum(W * W), rel=1e-13)
    np.testing.assert_allclose(dW, X.T @ (softmax(X @ W + b) - T) / 5 + 0.1 * W, rtol=1e-12)
    numeric = numerical_gradient(lambda v: net.loss_and_grads(v, b, X, T)[0], W)
    assert relative_error(dW, numeric) < GRADCHECK_TOLERANCE
