"""conv2d, max/avg pooling and flatten: the derived index rules are the textbook ones, the
network kernels match central differences (float64) over strides, paddings, odd sizes and
channel counts, the max-pool tie convention is first-maximum-in-row-major-order, and the
kernels agree with PyTorch where it is installed."""
import inspect

import numpy as np
import pytest
import sympy as sp

import symprop.generated.layers as kernels
from symprop.codegen.network import load_network
from symprop.symbolic.errors import SympropError
from symprop.symbolic.graph import parse_net
from symprop.symbolic.layers import REGISTRY
from symprop.symbolic.ops.conv import first_max_rule
from tests.gradcheck import numerical_gradient, relative_error

GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, h = 1e-6

# Each spec exercises a different geometry; together: strides 1-3, paddings 0-2, odd and even,
# non-square images, 1-3 channels, overlapping pools (stride < window), two conv layers (so an
# input gradient of conv2d is inside the chain), max and average pooling.
NETWORKS = [
    "input(2,7,6) conv2d(2,3,3,2,1) relu maxpool(2,1) conv2d(3,2,2) tanh avgpool(1) flatten affine(4,5) "
    "softmax-cross-entropy",
    "input(3,5,5) conv2d(3,2,3,1,2) sigmoid avgpool(3,2) flatten affine(18,3) mse",
    "input(1,11,8) conv2d(1,2,4,3) maxpool(2,1) flatten affine(4,2) softmax-cross-entropy",
]


def _loss(net, params, X, T):
    """The network's loss recomputed in numpy from its forward scores (an independent check)."""
    scores = net.forward(*params, X)
    if net.LOSS == "mse":
        return float(np.mean((scores - T) ** 2))
    z = scores - scores.max(axis=1, keepdims=True)
    return float(np.mean(-(T * (z - np.log(np.exp(z).sum(axis=1, keepdims=True)))).sum(axis=1)))


@pytest.mark.parametrize("spec", NETWORKS)
def test_network_gradients_match_central_differences(spec):
    net = load_network(spec)
    rng = np.random.default_rng(3)
    params = [rng.normal(size=shape) * 0.5 for shape in net.PARAM_SHAPES]  # scores of order 1: no saturated softmax
    X = rng.normal(size=(3, net.INPUT_SIZE))
    T = np.eye(net.OUTPUT_SIZE)[rng.integers(0, net.OUTPUT_SIZE, 3)]
    if net.LOSS == "mse":
        T = rng.normal(size=(3, net.OUTPUT_SIZE))
    loss, *grads = net.loss_and_grads(*params, X, T)
    assert loss == pytest.approx(_loss(net, params, X, T), rel=1e-12)
    for k, (name, grad) in enumerate(zip(net.PARAM_NAMES, grads)):
        def objective(value, k=k):
            return _loss(net, [value if i == k else p for i, p in enumerate(params)], X, T)

        assert relative_error(grad, numerical_gradient(objective, params[k])) < GRADCHECK_TOLERANCE, (spec, name)


def test_sgd_step_moves_by_the_gradient_and_keeps_the_data():
    net = load_network(NETWORKS[2])  # 1x11x8 -> 2x3x2 -> 2x2x1
    rng = np.random.default_rng(4)
    params = [rng.normal(size=shape) for shape in net.PARAM_SHAPES]
    X, T = rng.normal(size=(2, net.INPUT_SIZE)), np.eye(2)[[0, 1]]
    X0 = X.copy()
    _, *grads = net.loss_and_grads(*params, X, T)
    expected = [p - 0.1 * g for p, g in zip(params, grads)]
    net.sgd_step(*params, X, T, 0.1)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p, e, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(X, X0)


# ---- the derived rules are the textbook forms -------------------------------------------

def _evaluate(rule, arrays, sizes, free):
    """A derived index rule evaluated numerically: window arrays read as 0 outside their
    ranges (the convention the derivation states)."""
    def lookup(base, *index):
        array = arrays[str(base)]
        if any(i < 0 or i >= n for i, n in zip(index, array.shape)):
            return 0.0
        return float(array[tuple(index)])

    expr = rule.subs(sizes)
    expr = expr.replace(lambda e: isinstance(e, sp.Indexed),
                        lambda e: sp.Function("look")(sp.Symbol(str(e.base)), *e.indices))
    f = sp.lambdify(list(free), expr, modules=[{"look": lambda b, *i: lookup(b, *map(int, i))}, "math"])
    return f


def test_conv2d_rules_are_the_full_convolution_and_the_correlation():
    d = REGISTRY.derive("conv2d")
    rng = np.random.default_rng(5)
    N_, C_, O_, k_, s_ = 2, 2, 3, 3, 2
    Xp = rng.normal(size=(N_, C_, 9, 7))  # an already padded input
    Ho, Wo = (9 - k_) // s_ + 1, (7 - k_) // s_ + 1
    W, dY = rng.normal(size=(O_, C_, k_, k_)), rng.normal(size=(N_, O_, Ho, Wo))
    sizes = {sp.Symbol(n, integer=True, positive=True): v
             for n, v in dict(N=N_, C=C_, O=O_, k=k_, s=s_, H_out=Ho, W_out=Wo).items()}
    a, e, u, v = sp.symbols("a e u v", integer=True)
    arrays = {"Xp": Xp, "W": W, "dY": dY}
    # dX: for every input pixel, the sum over the windows that read it (direct definition)
    expected_dX = np.zeros_like(Xp)
    for i in range(Ho):
        for j in range(Wo):
            window = np.einsum("no,ocpq->ncpq", dY[:, :, i, j], W)
            expected_dX[:, :, s_ * i:s_ * i + k_, s_ * j:s_ * j + k_] += window
    dX = _evaluate(d.backward["dX"], arrays, sizes, (a, e, u, v))
    got = np.array([[[[dX(n, c, h, w) for w in range(7)] for h in range(9)] for c in range(C_)] for n in range(N_)])
    np.testing.assert_allclose(got, expected_dX, rtol=1e-12)
    # dW: the correlation of the input with the upstream gradient
    dW = _evaluate(d.backward["dW"], arrays, sizes, (a, e, u, v))
    expected_dW = np.einsum("noij,ncijpq->ocpq", dY, np.lib.stride_tricks.sliding_window_view(
        Xp, (k_, k_), axis=(2, 3))[:, :, ::s_, ::s_])
    got = np.array([[[[dW(o, c, p, q) for q in range(k_)] for p in range(k_)] for c in range(C_)] for o in range(O_)])
    np.testing.assert_allclose(got, expected_dW, rtol=1e-12)


def test_stride_one_input_gradient_is_a_full_convolution_with_the_flipped_kernel():
    """The derivation's step: dXp = sum_{o,r,t} dYpad[a,o,u+r,v+t] Wflip[o,e,r,t]; evaluated
    with numpy's own full convolution (np.convolve of each row pair, flipped kernel)."""
    d = REGISTRY.derive("conv2d")
    step = next(s for s in d.steps if s.title.startswith("stride 1"))
    rng = np.random.default_rng(6)
    k_, Ho, Wo = 3, 4, 5
    W, dY = rng.normal(size=(1, 1, k_, k_)), rng.normal(size=(1, 1, Ho, Wo))
    flipped = W[:, :, ::-1, ::-1]
    padded = np.pad(dY, ((0, 0), (0, 0), (k_ - 1, k_ - 1), (k_ - 1, k_ - 1)))
    sizes = {sp.Symbol(n, integer=True, positive=True): v for n, v in dict(N=1, C=1, O=1, k=k_, H_out=Ho, W_out=Wo).items()}
    a, e, u, v = sp.symbols("a e u v", integer=True)
    f = _evaluate(step.rhs, {"Wflip": flipped, "dYpad": padded}, sizes, (a, e, u, v))
    got = np.array([[f(0, 0, h, w) for w in range(Wo + k_ - 1)] for h in range(Ho + k_ - 1)])
    # the full 2-D convolution of dY with W (not flipped: convolution flips it itself)
    full = np.zeros((Ho + k_ - 1, Wo + k_ - 1))
    for p in range(k_):
        for q in range(k_):
            full[p:p + Ho, q:q + Wo] += W[0, 0, p, q] * dY[0, 0]
    np.testing.assert_allclose(got, full, rtol=1e-12)


def test_max_pool_tie_convention_is_first_maximum_in_row_major_order():
    xs = sp.symbols("x0:4", real=True)
    # away from ties the convention is SymPy's derivative of Max
    rng = np.random.default_rng(7)
    for _ in range(20):
        values = dict(zip(xs, rng.permutation(4)))
        for r in range(4):
            assert first_max_rule(xs, r).subs(values) == sp.diff(sp.Max(*xs), xs[r]).subs(values)
    # at a tie exactly one element gets the gradient: the first
    tie = dict(zip(xs, [1, 3, 3, 3]))
    assert [first_max_rule(xs, r).subs(tie) for r in range(4)] == [0, 1, 0, 0]
    x = np.array([[[[1.0, 3, 2, 2], [3, 2, 2, 2], [0, 5, 1, 1], [5, 5, 1, 1]]]])
    dX = kernels.maxpool_backward(np.array([[[[1.0, 2], [3, 4]]]]), x, 2)
    np.testing.assert_array_equal(dX, [[[[0, 1, 2, 0], [0, 0, 0, 0], [0, 3, 4, 0], [0, 0, 0, 0]]]])


def test_per_layer_image_kernels_recompute_only_the_columns_and_return_new_arrays(rng):
    """The per-layer kernels are conv2d's, pooling's and flatten's lowering: a backward given X
    reruns the forward statement that writes the columns, not the product; flatten, a view in
    networks, returns a new array; a bad shape, window or stride is a one-line ValueError."""
    import inspect
    backward = inspect.getsource(kernels.conv2d_backward_kernel.py_func)
    assert "_im2col(" in backward and "_conv2d_product(" not in backward
    X = rng.normal(size=(2, 3, 4, 4))
    flat = kernels.flatten_forward(X)
    assert not np.shares_memory(flat, X)
    np.testing.assert_array_equal(flat, X.reshape(2, -1))
    W, b = rng.normal(size=(2, 3, 2, 2)), np.zeros(2)
    for call, message in [(lambda: kernels.conv2d_forward(X, W, b, 0), r"conv2d_forward: needs stride >= 1"),
                          (lambda: kernels.conv2d_forward(X, W[:, :2], b), r"conv2d_forward: W \(2, 2, 2, 2\) is not"),
                          (lambda: kernels.maxpool_backward(X, X, 5), r"maxpool_backward: images \(4, 4\) are too small"),
                          (lambda: kernels.flatten_forward(flat), r"flatten_forward: expected a batch of NCHW images")]:
        with pytest.raises(ValueError, match=message):
            call()


# ---- PyTorch, where installed ----------------------------------------------------------

@pytest.mark.parametrize("stride, pad", [(1, 0), (2, 1), (3, 2)])
def test_conv2d_and_max_pool_agree_with_torch(stride, pad):
    torch = pytest.importorskip("torch", reason="torch is not a test dependency; install it to compare")
    rng = np.random.default_rng(8)
    X, W, b = rng.normal(size=(2, 3, 8, 7)), rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4)
    Xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (X, W, b))
    Yt = torch.nn.functional.conv2d(Xt, Wt, bt, stride=stride, padding=pad)
    dY = rng.normal(size=tuple(Yt.shape))
    Yt.backward(torch.tensor(dY))
    np.testing.assert_allclose(kernels.conv2d_forward(X, W, b, stride, pad), Yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    for ours, theirs in zip(kernels.conv2d_backward(dY, X, W, stride, pad), (Xt.grad, Wt.grad, bt.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-10, atol=1e-12)
    # max-pool with ties (integers repeat): torch on CPU also takes the first maximum
    ints = rng.integers(0, 3, size=(2, 3, 8, 7)).astype(np.float64)
    window, step = 2, (1 if stride == 1 else 2)
    It = torch.tensor(ints, requires_grad=True)
    Pt = torch.nn.functional.max_pool2d(It, window, step)
    dP = rng.normal(size=tuple(Pt.shape))
    Pt.backward(torch.tensor(dP))
    np.testing.assert_array_equal(kernels.maxpool_forward(ints, window, step), Pt.detach().numpy())
    np.testing.assert_allclose(kernels.maxpool_backward(dP, ints, window, step), It.grad.numpy(), rtol=1e-12)
    At = torch.tensor(X, requires_grad=True)
    Qt = torch.nn.functional.avg_pool2d(At, 3, stride)
    Qt.backward(torch.ones_like(Qt))
    np.testing.assert_allclose(kernels.avgpool_forward(X, 3, stride), Qt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(kernels.avgpool_backward(np.ones(tuple(Qt.shape)), X, 3, stride), At.grad.numpy(),
                               rtol=1e-12)


# ---- shapes in the graph ----------------------------------------------------------------

def test_image_size_is_inferred_or_given():
    graph = parse_net("conv2d(1,30,5) relu maxpool(2) flatten affine(4320,100) relu affine(100,10) "
                      "softmax-cross-entropy")
    assert graph.shapes[:5] == [(1, 28, 28), (30, 24, 24), (30, 24, 24), (30, 12, 12), 4320]
    assert graph.input_size == 784 and graph.output_size == 10
    given = parse_net("input(1,4,4) conv2d(1,1,2) maxpool(2) flatten affine(1,1) mse")
    assert given.spec.startswith("input(1,4,4) ") and given.shapes[1] == (1, 3, 3)
    assert parse_net("affine(784,100) relu affine(100,10) softmax-cross-entropy").shapes == [784, 100, 100, 10, 10]


@pytest.mark.parametrize("spec, message", [
    ("conv2d(1,4,3) relu affine(4320,10) mse", "put flatten before it"),
    ("conv2d(1,4,3) flatten mse", "nothing fixes the image size"),
    ("input(2,5,5) conv2d(1,1,2) flatten affine(16,1) mse", "takes 1 channels but the layer before gives 2"),
    ("input(1,2,2) conv2d(1,1,3) flatten affine(1,1) mse", "3x3 kernel does not fit"),
    ("affine(4,4) maxpool(2) flatten mse", "maxpool takes images"),
    ("input(1,0,3) flatten mse", "input needs three positive sizes"),
    ("conv2d(1,1,2,0) flatten affine(1,1) mse", "stride of at least 1"),
])
def test_bad_image_specs_are_one_clear_line(spec, message):
    with pytest.raises(SympropError, match=message):
        parse_net(spec)


# ---- the hand-sized transcript ----------------------------------------------------------

def test_conv_maxpool_transcript_equals_the_kernels_and_routes_ties_to_the_first_maximum():
    from symprop.symbolic.examples import EXAMPLES, NET_FILES

    t = EXAMPLES["conv-maxpool"].build()
    conv = NET_FILES["conv-maxpool"]  # symbolic/nets/conv-maxpool.toml
    net = load_network(conv.spec)
    X = np.array(conv.values["X"], float).reshape(1, -1)
    W, b, T = (np.array(conv.values[k], float) for k in ("W1", "b1", "T"))
    loss, dW, db = net.loss_and_grads(W, b, X, T)
    assert float(t.value("L")) == pytest.approx(loss, rel=1e-12)
    for index in np.ndindex(dW.shape):
        assert float(t.value(f"dL/dW1[{','.join(map(str, index))}]")) == pytest.approx(dW[index], rel=1e-12)
    assert float(t.value("dL/db1[0]")) == pytest.approx(db[0], rel=1e-12)
    # the top-left window holds 2, 5, 5, -1: its gradient goes to z1[0,0,0,1], the first 5
    assert t.value("z1[0,0,0,1]") == t.value("z1[0,0,1,0]") == t.value("pool1[0,0,0,0]") == 5
    assert t.value("dpool1[0,0,0,0]/dz1[0,0,0,1]") == 1 and t.value("dpool1[0,0,0,0]/dz1[0,0,1,0]") == 0


def test_check_takes_claims_on_image_elements(capsys):
    from symprop.cli import main

    assert main(["check", "conv-maxpool", "dL/dW1[0,0,1,0]=32", "pool1[0,0,0,1]=6", "W1_new[0,0,0,0]=-1.3"]) == 0
    assert main(["check", "conv-maxpool", "dL/dz1[0,0,1,0]=5"]) == 1  # 3: the tie sends pool1[0,0,0,0]'s 4 elsewhere
    assert "WRONG" in capsys.readouterr().out


def _quarter_values(net, rng, examples: int, largest: int) -> dict:
    """X, T and every parameter of a net as nested lists of quarters up to largest/4 (exact in
    binary and decimal, so a transcript and a kernel can be compared to 1e-12)."""
    quarters = lambda *shape: (rng.integers(-largest, largest + 1, shape) / 4).tolist()  # noqa: E731
    return {"X": quarters(examples, *net.INPUT_IMAGE), "T": quarters(examples, net.OUTPUT_SIZE),
            **{name: quarters(*shape) for name, shape in zip(net.PARAM_NAMES, net.PARAM_SHAPES)}}


def _assert_gradients_are_the_transcripts(t, net, grads):
    for name, grad in zip(net.PARAM_NAMES, grads):
        for index in np.ndindex(grad.shape):
            key = f"dL/d{name}[{','.join(map(str, index))}]"
            assert float(t.value(key)) == pytest.approx(grad[index], rel=1e-12, abs=1e-14), key


def test_a_padded_strided_conv_and_average_pooling_transcript_equals_the_kernels():
    """The transcript runs the image families' lowered statements (their helpers' derived index
    rules: zero padding, a stride, average windows, a conv's gradient flowing back into the
    layer below); every gradient equals the generated kernel's (float64, rel 1e-12)."""
    from symprop.symbolic.graph_transcript import graph_transcript

    spec = "input(1,5,5) conv2d(1,2,3,2,1) relu avgpool(2,1) conv2d(2,1,2) flatten affine(1,1) mse"
    net = load_network(spec)
    values = _quarter_values(net, np.random.default_rng(3), examples=2, largest=8)
    values["b1"] = [0.5, 0.75]  # the relu sees positive and negative inputs
    t = graph_transcript(parse_net(spec), values)
    params = [np.array(values[name], float) for name in net.PARAM_NAMES]
    loss, *grads = net.loss_and_grads(*params, np.array(values["X"], float).reshape(2, -1), np.array(values["T"], float))
    assert float(t.value("L")) == pytest.approx(loss, rel=1e-12)
    _assert_gradients_are_the_transcripts(t, net, grads)
    assert "dpool1[0,0,0,0]/dh1[0,0,0,0]" in t.quantities  # average pooling's local derivative, 1/4
    assert t.value("dpool1[0,0,0,0]/dh1[0,0,0,0]") == sp.Rational(1, 4)


def test_tiled_max_pool_routes_ties_like_the_transcript_and_zeroes_what_no_window_covers():
    """maxpool(2) on a 3x3 map covers all but the last row and column: the step's helper for
    windows that tile the image stores each window's gradient and zeroes the rest itself, so
    on a workspace full of NaN every gradient still equals the transcript's (the derived rules:
    first maximum in row-major order). The kernel reads the top-left pixel only, so the first
    image's top-left window ties where the windows the weights' gradient reads differ."""
    from symprop.symbolic.graph_transcript import graph_transcript

    spec = "input(1,4,4) conv2d(1,2,2) relu maxpool(2) flatten affine(2,1) mse"
    net = load_network(spec)
    values = _quarter_values(net, np.random.default_rng(5), examples=3, largest=4)
    values["X"][0] = [[[1, 1, 0.25, -0.5], [1, 1, 0.75, 0], [0.5, -0.25, 1, 0.25], [0, 0.5, -1, 1]]]
    values["W1"], values["b1"] = [[[[1, 0], [0, 0]]], [[[0.5, 0], [0, 0]]]], [0.25, -0.25]
    values["T"][0] = [-1]  # an error to pass back (the quarters could make it 0)
    t = graph_transcript(parse_net(spec), values)
    params = [np.array(values[name], float) for name in net.PARAM_NAMES]
    X, T = np.array(values["X"], float).reshape(3, -1), np.array(values["T"], float)
    workspace = net.make_workspace(X)
    for array in workspace:
        array.fill(np.nan)
    loss = net.loss_and_grads_into(*params, X, T, *workspace)
    buffers = dict(zip(list(inspect.signature(net.loss_and_grads_into.py_func).parameters)[len(params) + 2:], workspace))
    assert float(t.value("L")) == pytest.approx(loss, rel=1e-12)
    windows = buffers["h1"].reshape(6, 3, 3)[:, :2, :2].reshape(6, 4)
    assert any(window.max() > 0 and (window == window.max()).sum() > 1 for window in windows)  # a tie relu passes
    _assert_gradients_are_the_transcripts(t, net, [buffers[f"d{name}"] for name in net.PARAM_NAMES])
