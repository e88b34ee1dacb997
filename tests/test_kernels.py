"""Every generated per-layer kernel against central finite differences (float64), against the
SymPy rule evaluated numerically, float32 against float64, at extreme inputs, and for purity."""
import os

import numba
import numpy as np
import pytest
import sympy as sp

import symprop.generated.layers as kernels
from symprop.codegen.layer_kernels import python_name
from symprop.symbolic.layers import (Affine, BatchNorm, Conv2d, Dropout, Elementwise, ElementwiseLoss, Flatten,
                                     MulticlassHinge, Pool, REGISTRY, Softmax, SoftmaxCrossEntropy)
from symprop.symbolic.stable import as_raw
from tests.conftest import TOLERANCE
from tests.gradcheck import numerical_gradient, relative_error

GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, h = 1e-6
SHAPE = (3, 4)
# the layers with kernels in generated/layers.py (a recurrent layer is compiled in networks only)
LAYERS = [name for name, layer in REGISTRY.items() if layer.layer_kernels]


def of_type(*types):
    return [name for name, layer in REGISTRY.items() if isinstance(layer, types)]


def away_from_kinks(rng, shape):
    """Random values with |v| in [0.1, 2]: no relu kink, no overflow."""
    return rng.uniform(0.1, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def fn(name, suffix):
    return getattr(kernels, f"{python_name(name)}_{suffix}")


def one_hot(rng, n, k):
    return np.eye(k)[rng.integers(0, k, n)]


def run_layer(name, inputs, dout):
    """(scalar objective as a function of the inputs, analytic gradients) for one layer."""
    layer = REGISTRY[name]
    forward, backward = fn(name, "forward"), fn(name, "backward")
    if isinstance(layer, Elementwise):
        d = REGISTRY.derive(name)
        out = forward(*inputs)
        saved = {n: v for n, v in zip(layer.inputs, inputs)} | {layer.output: out}
        grads = backward(dout, *[saved[n] for n in d.saved])
        grads = grads if isinstance(grads, tuple) else (grads,)
        return (lambda *xs: float(np.sum(dout * forward(*xs)))), grads
    if isinstance(layer, ElementwiseLoss):
        pred, t = inputs
        return (lambda p, t_: float(forward(p, t))), (backward(pred, t),)
    if isinstance(layer, Affine):
        X, W, b = inputs
        return (lambda *a: float(np.sum(dout * forward(*a)))), backward(dout, X, W)
    if isinstance(layer, Softmax):
        (z,) = inputs
        return (lambda v: float(np.sum(dout * forward(v)))), (backward(dout, forward(z)),)
    if isinstance(layer, SoftmaxCrossEntropy):
        z, t = inputs
        return (lambda v, t_: float(forward(v, t)[0])), (backward(forward(z, t)[1], t),)
    if isinstance(layer, MulticlassHinge):
        z, t = inputs
        return (lambda v, t_: float(forward(v, t))), (backward(z, t),)
    if isinstance(layer, BatchNorm):  # batch and layer normalisation: backward reads xhat and s
        x, g, b = inputs
        _, xhat, s, _, _ = forward(x, g, b)
        return (lambda *a: float(np.sum(dout * forward(*a)[0]))), backward(dout, xhat, s, g)
    if isinstance(layer, Dropout):  # the mask held fixed, drop probability 0.5
        x, m = inputs
        return (lambda v, m_: float(np.sum(dout * forward(v, m, 0.5)))), (backward(dout, m, 0.5),)
    if isinstance(layer, Conv2d):  # stride 2, padding 1: the general case of the index rules
        X, W, b = inputs
        return (lambda *a: float(np.sum(dout * forward(*a, 2, 1)))), backward(dout, X, W, 2, 1)
    if isinstance(layer, Pool):  # 2x2 windows at stride 1 overlap: gradients add up
        (X,) = inputs
        return (lambda v: float(np.sum(dout * forward(v, 2, 1)))), (backward(dout, X, 2, 1),)
    if isinstance(layer, Flatten):
        (X,) = inputs
        return (lambda v: float(np.sum(dout * forward(v)))), (backward(dout, X),)
    raise AssertionError(f"no test recipe for {type(layer).__name__} ops")


def make_inputs(name, rng, dtype=np.float64):
    layer = REGISTRY[name]
    if isinstance(layer, Elementwise):
        inputs = [away_from_kinks(rng, SHAPE) for _ in layer.inputs]
        dout = rng.normal(size=SHAPE)
    elif isinstance(layer, ElementwiseLoss):
        inputs = [away_from_kinks(rng, SHAPE), rng.uniform(0, 1, SHAPE)]
        dout = None
    elif isinstance(layer, Affine):
        bias = (1,) if layer.shared_bias else (5,)
        inputs = [rng.normal(size=(3, 4)), rng.normal(size=(4, 5)), rng.normal(size=bias)]
        dout = rng.normal(size=(3, 5))
    elif isinstance(layer, Softmax):
        inputs, dout = [rng.normal(size=SHAPE)], rng.normal(size=SHAPE)
    elif isinstance(layer, BatchNorm):
        inputs = [rng.normal(size=SHAPE), rng.uniform(0.5, 2.0, SHAPE[1]), rng.normal(size=SHAPE[1])]
        dout = rng.normal(size=SHAPE)
    elif isinstance(layer, Dropout):
        inputs, dout = [rng.normal(size=SHAPE), rng.integers(0, 2, SHAPE).astype(float)], rng.normal(size=SHAPE)
    elif isinstance(layer, Conv2d):  # 2 images of 3x5x4, 2 filters of 3x3: output 2x3x2
        inputs = [rng.normal(size=(2, 3, 5, 4)), rng.normal(size=(2, 3, 3, 3)), rng.normal(size=2)]
        dout = rng.normal(size=(2, 2, 3, 2))
    elif isinstance(layer, Pool):  # a permutation scaled: every window has one clear maximum
        inputs = [rng.permutation(2 * 2 * 5 * 4).reshape(2, 2, 5, 4) / 10.0 - 2.0]
        dout = rng.normal(size=(2, 2, 4, 3))
    elif isinstance(layer, Flatten):
        inputs, dout = [rng.normal(size=(2, 3, 2, 2))], rng.normal(size=(2, 12))
    else:
        inputs, dout = [rng.normal(size=SHAPE), one_hot(rng, *SHAPE)], None
    cast = [np.asarray(v, dtype) for v in inputs]
    return cast, None if dout is None else np.asarray(dout, dtype)


def differentiable_count(name):
    layer = REGISTRY[name]
    if isinstance(layer, Elementwise):
        return len(layer.inputs)
    return 3 if isinstance(layer, (Affine, BatchNorm, Conv2d)) else 1


@pytest.mark.parametrize("name", LAYERS)
def test_kernel_gradients_match_finite_differences_float64(name, rng):
    inputs, dout = make_inputs(name, rng)
    objective, grads = run_layer(name, inputs, dout)
    for position in range(differentiable_count(name)):
        def partial(v, position=position):
            args = list(inputs)
            args[position] = v
            return objective(*args)
        numeric = numerical_gradient(partial, inputs[position])
        assert relative_error(grads[position], numeric) < GRADCHECK_TOLERANCE, (name, position)


@pytest.mark.parametrize("name", of_type(Elementwise))
def test_elementwise_kernels_equal_the_sympy_rule(name, rng):
    layer, d = REGISTRY[name], REGISTRY.derive(name)
    inputs, dout = make_inputs(name, rng)
    symbols = [sp.Symbol(n, real=True) for n in layer.inputs]
    forward = sp.lambdify(symbols, as_raw(d.forward[layer.output]), "numpy")
    expected_out = forward(*inputs) + np.zeros(SHAPE)
    np.testing.assert_allclose(fn(name, "forward")(*inputs), expected_out, rtol=1e-12)
    values = dict(zip(layer.inputs, inputs)) | {layer.output: expected_out, "dout": dout}
    grads = fn(name, "backward")(dout, *[values[n] for n in d.saved])
    grads = grads if isinstance(grads, tuple) else (grads,)
    for grad_name, grad in zip([f"d{n}" for n in layer.inputs], grads):
        rule = d.backward[grad_name]
        free = sorted(rule.free_symbols, key=lambda s: s.name)
        evaluate = sp.lambdify(free, as_raw(rule), "numpy")
        expected = evaluate(*[values[s.name] for s in free]) + np.zeros(SHAPE)
        np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", LAYERS)
def test_float32_agrees_with_float64(name, rng):
    seed = int(rng.integers(1 << 30))
    in64, d64 = make_inputs(name, np.random.default_rng(seed), np.float64)
    in32, d32 = make_inputs(name, np.random.default_rng(seed), np.float32)
    _, g64 = run_layer(name, in64, d64)
    _, g32 = run_layer(name, in32, d32)
    for a, b in zip(g32, g64):
        assert a.dtype == np.float32, "float32 inputs must give float32 gradients"
        assert relative_error(a, b) < TOLERANCE[np.float32]


@pytest.mark.parametrize("name", LAYERS)
def test_kernels_never_modify_their_inputs(name, rng):
    inputs, dout = make_inputs(name, rng)
    before = [v.copy() for v in inputs] + ([] if dout is None else [dout.copy()])
    run_layer(name, inputs, dout)
    after = list(inputs) + ([] if dout is None else [dout])
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_give_finite_values_and_gradients(dtype):
    x = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0], dtype)
    for name in ("sigmoid", "tanh"):
        y = fn(name, "forward")(x)
        dx = fn(name, "backward")(np.ones_like(x), y)
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx)), name
    np.testing.assert_allclose(kernels.sigmoid_forward(x)[[0, 4]], [0.0, 1.0])
    z = np.array([[1000.0, -1000.0, 0.0], [1000.0, 1000.0, 1000.0]], dtype)
    t = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype)
    loss, y = kernels.softmax_cross_entropy_forward(z, t)
    assert np.isfinite(loss) and np.all(np.isfinite(y))
    assert loss == pytest.approx(2000.0 / 2 + np.log(3) / 2, rel=1e-6)  # probability 0 for a true class
    assert np.all(np.isfinite(kernels.softmax_cross_entropy_backward(y, t)))
    np.testing.assert_allclose(kernels.softmax_forward(z)[1], [1 / 3] * 3, rtol=1e-6)  # equal logits
    logits = np.array([[1000.0], [-1000.0]], dtype)
    labels = np.array([[0.0], [1.0]], dtype)
    assert kernels.binary_cross_entropy_forward(logits, labels) == pytest.approx(1000.0, rel=1e-6)
    assert np.all(np.isfinite(kernels.binary_cross_entropy_backward(logits, labels)))


def test_relu_kink_convention_in_the_kernel():
    x = np.array([-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(kernels.relu_backward(np.ones(3), x), [0.0, 0.0, 1.0])


def test_affine_bias_example_from_seed_000():
    dY = np.array([[1.0, 2, 3], [4, 5, 6]])
    _, _, db = kernels.affine_backward(dY, np.zeros((2, 4)), np.zeros((4, 3)))
    np.testing.assert_array_equal(db, [5.0, 7.0, 9.0])


def test_kernels_are_numba_dispatchers():
    from numba.core.registry import CPUDispatcher
    for name in LAYERS:
        for suffix in ("forward_kernel", "backward_kernel"):
            assert isinstance(fn(name, suffix), CPUDispatcher), (name, suffix)


def test_wrong_dtype_and_shape_are_clear_errors():
    with pytest.raises(ValueError, match="sigmoid_forward: x has dtype int64"):
        kernels.sigmoid_forward(np.arange(3))
    with pytest.raises(ValueError, match="mul_forward: y has shape"):
        kernels.mul_forward(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="y is float32 but x is float64"):
        kernels.add_forward(np.ones(3), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="do not chain"):
        kernels.affine_forward(np.ones((2, 3)), np.ones((4, 5)), np.ones(5))
    with pytest.raises(ValueError, match="out must be a float64 array of shape"):
        kernels.sigmoid_forward(np.ones(3), out=np.empty(4))


def test_forward_writes_into_a_preallocated_output():
    x, out = np.array([0.0, 1.0]), np.empty(2)
    assert kernels.sigmoid_forward(x, out=out) is out
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-x)))


@pytest.mark.parametrize("name", of_type(Elementwise))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_forward_backward_equals_the_two_passes(name, dtype, rng):
    layer, d = REGISTRY[name], REGISTRY.derive(name)
    inputs, dout = make_inputs(name, rng, dtype)
    out = fn(name, "forward")(*inputs)
    saved = dict(zip(layer.inputs, inputs)) | {layer.output: out}
    grads = fn(name, "backward")(dout, *[saved[n] for n in d.saved])
    grads = grads if isinstance(grads, tuple) else (grads,)
    fused_out, *fused_grads = fn(name, "forward_backward")(*inputs, dout)
    # the same formulas; sharing subexpressions may move the last bit only
    ulps = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(fused_out, out, rtol=ulps, atol=0)
    for fused, separate in zip(fused_grads, grads):
        np.testing.assert_allclose(fused, separate, rtol=ulps, atol=ulps * np.abs(separate).max())


# ---- the vectorisable exp every kernel calls (polynomial + exponent bits, not libm) ----
@numba.njit
def _exp_loop(x, out):
    for i in range(x.size):
        out[i] = kernels._exp(x[i])


EXP_RANGE = {np.float64: (-745.0, 709.7), np.float32: (-103.0, 88.7)}
EXP_MAX_ULPS = {np.float64: 1, np.float32: 1}  # against exp rounded from float64 (float32)


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="without the JIT, _exp is np.exp")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_exp_within_one_ulp_of_the_correctly_rounded_value(dtype, rng):
    low, high = EXP_RANGE[dtype]
    x = np.concatenate([rng.uniform(low, high, 100_000), rng.normal(0, 3, 100_000)]).astype(dtype)
    out = np.empty_like(x)
    _exp_loop(x, out)
    if dtype == np.float64:  # libm's exp is within 1 ulp itself: compare with 40-digit values
        sample = rng.choice(x.size, 2000, replace=False)
        x, out = x[sample], out[sample]
        reference = np.array([float(sp.exp(sp.Float(float(v), 40)).evalf(40)) for v in x])
    else:
        reference = np.exp(x.astype(np.float64)).astype(np.float32)
    ulps = np.abs(out.astype(np.float64) - reference) / np.spacing(reference).astype(np.float64)
    assert ulps.max() <= EXP_MAX_ULPS[dtype]


# ---- the vectorisable tanh (expm1 of -2|v| from _exp's reduction, not libm) ----
@numba.njit
def _tanh_loop(x, out):
    for i in range(x.size):
        out[i] = kernels._tanh(x[i])


TANH_MAX_ULPS = 4  # against tanh rounded from 40 digits (float64) or from float64 (float32)


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="without the JIT, _tanh is np.tanh")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_tanh_within_four_ulps_from_tiny_to_huge(dtype, rng):
    tiny = float(np.finfo(dtype).smallest_subnormal)
    magnitudes = np.concatenate([np.geomspace(tiny, 40.0, 40_000), rng.uniform(0, 25, 40_000), [0.35, 0.1733, 19.1, 1e30]])
    x = np.concatenate([magnitudes, -magnitudes]).astype(dtype)
    out = np.empty_like(x)
    _tanh_loop(x, out)
    if dtype == np.float64:  # np.tanh is within an ulp or so itself: compare a sample with 40-digit values
        sample = rng.choice(x.size, 2000, replace=False)
        x, out = x[sample], out[sample]
        reference = np.array([float(sp.tanh(sp.Float(float(v), 40)).evalf(40)) for v in x])
    else:
        reference = np.tanh(x.astype(np.float64)).astype(np.float32)
    ulps = np.abs(out.astype(np.float64) - reference) / np.spacing(np.abs(reference)).astype(np.float64)
    assert ulps.max() <= TANH_MAX_ULPS


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_tanh_edge_cases_match_numpy(dtype):
    info = np.finfo(dtype)
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, float(info.max), -float(info.max), float(info.smallest_subnormal),
                  -float(info.tiny), 1e-30, 400.0, -400.0], dtype)
    out = np.empty_like(x)
    _tanh_loop(x, out)
    expected = np.tanh(x)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.signbit(out), np.signbit(expected))  # -0.0 stays -0.0
    finite = ~np.isnan(expected)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=2 * info.eps, atol=0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_exp_edge_cases_match_numpy(dtype):
    info = np.finfo(dtype)
    values = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, float(np.log(info.max)),
              float(np.log(info.max)) * 1.001, float(np.log(info.tiny)), float(np.log(info.smallest_subnormal)),
              float(np.log(info.smallest_subnormal)) - 1.0, 1e30, -1e30, float(info.tiny)]
    x = np.array(values, dtype)
    out = np.empty_like(x)
    _exp_loop(x, out)
    with np.errstate(over="ignore", under="ignore"):
        expected = np.exp(x)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    finite = ~np.isnan(expected)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=2 * info.eps, atol=float(info.smallest_subnormal))
