"""The multi-head self-attention block (mha, causal-mha): its derivation reuses one head's and
layer norm's rules, the fused network kernels match central differences (float64, T = 1, the
causal mask and the input's gradient included) and the transcript of a tiny block matches a
block written independently with plain numpy. PyTorch's nn.MultiheadAttention is the other
reference, in tests/test_torch_sequences.py."""
import re

import numpy as np
import pytest
import sympy as sp

from symprop.cli import main
from symprop.codegen.network import load_network
from symprop.symbolic.errors import SympropError
from symprop.symbolic.graph import parse_net
from symprop.symbolic.layers import REGISTRY, N
from symprop.symbolic.ops.attention import D, T
from tests.gradcheck import numerical_gradient, parameter_loss, relative_error

GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, relative
ZERO_GRADIENT = 1e-9  # central differences of a gradient that is exactly zero: their noise, at h = 1e-6
KEY_BIAS = re.compile(r"bk\d+$")


# ---- the block written independently: plain numpy, float64 ------------------------------------
def block_forward(X, params, heads, tokens, causal=False, eps=1e-5):
    """y of each row, X read as (N, T, D); params in mha's order (Wq, bq, Wk, bk, Wv, bv, Wo, bo,
    scale, shift)."""
    Wq, bq, Wk, bk, Wv, bv, Wo, bo, g, b = params
    xs = X.reshape(X.shape[0], tokens, -1)
    split = lambda a: a.reshape(*a.shape[:2], heads, -1).transpose(0, 2, 1, 3)  # noqa: E731 (N, H, T, dh)
    Q, K, V = split(xs @ Wq + bq), split(xs @ Wk + bk), split(xs @ Wv + bv)
    S = Q @ K.transpose(0, 1, 3, 2) / np.sqrt(Q.shape[-1])
    if causal:
        S = np.where(np.tril(np.ones((tokens, tokens), bool)), S, -np.inf)
    P = np.exp(S - S.max(axis=-1, keepdims=True))
    P /= P.sum(axis=-1, keepdims=True)
    O = (P @ V).transpose(0, 2, 1, 3).reshape(xs.shape)
    R = xs + O @ Wo + bo
    xhat = (R - R.mean(axis=-1, keepdims=True)) / np.sqrt(R.var(axis=-1, keepdims=True) + eps)
    return (g * xhat + b).reshape(X.shape[0], -1)


# ---- the derivation ---------------------------------------------------------------------------
def test_the_block_derives_each_part_from_its_own_rules():
    """One head's rules are attention's (d_h for dk and dv), layer norm's are layernorm's, and
    SymPy derives the output projection, the residual and the biases here."""
    d, head = REGISTRY.derive("mha"), REGISTRY.derive("attention")
    d_h = sp.Symbol("d_h", integer=True, positive=True)
    dk, dv = sp.symbols("d_k d_v", integer=True, positive=True)
    for rule in ("dS", "dP", "dV", "dQ", "dK"):
        assert d.backward[rule] == head.backward[rule].xreplace({dk: d_h, dv: d_h}), rule
    n, t, c, j, dd = sp.symbols("n t c j d", integer=True)
    O, Wo, dR, dQ, dK, dV, x, Wq, Wk, Wv = (sp.IndexedBase(name) for name in (
        "O", "Wo", "dR", "dQ", "dK", "dV", "x", "Wq", "Wk", "Wv"))
    a = sp.Symbol("a", integer=True)
    assert d.backward["dO"] == sp.Sum(Wo[c, j] * dR[n, t, j], (j, 0, D - 1))
    assert d.backward["dWo"] == sp.Sum(O[n, t, c] * dR[n, t, j], (n, 0, N - 1), (t, 0, T - 1))
    assert d.backward["dbo"] == sp.Sum(dR[n, t, j], (n, 0, N - 1), (t, 0, T - 1))
    assert d.backward["dbk"] == sp.Sum(dK[n, t, a], (n, 0, N - 1), (t, 0, T - 1))
    # x reaches the loss four ways: its query, its key, its value, and the residual directly
    assert d.backward["dx"] == (dR[n, t, dd] + sp.Sum(Wq[dd, a] * dQ[n, t, a], (a, 0, D - 1))
                                + sp.Sum(Wk[dd, a] * dK[n, t, a], (a, 0, D - 1))
                                + sp.Sum(Wv[dd, c] * dV[n, t, c], (c, 0, D - 1)))
    assert d.backward["dR"] == REGISTRY.derive("layernorm").backward["dx"]
    assert REGISTRY.derive("causal-mha").backward == d.backward  # the mask changes which terms exist


def test_symprop_derive_lists_and_shows_the_block(capsys):
    assert main(["derive", "mha"]) == 0
    out = capsys.readouterr().out
    assert "R[n, t, j] = bo[j] + x[n, t, j] + Sum(O[n, t, c]*Wo[c, j], (c, 0, D - 1))" in out
    assert "S[n, t, s] = Sum(K[n, s, a]*Q[n, t, a], (a, 0, d_h - 1))/sqrt(d_h)" in out
    assert "layer norm of each token: in terms of xhat and s" in out
    assert "head h = 0..H-1 reads columns h*d_h" in out
    assert main(["derive", "causal-mha"]) == 0
    assert "token t attends to the tokens s <= t only" in capsys.readouterr().out
    assert main(["derive", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "\nmha " in listed and "causal-mha " in listed


@pytest.mark.parametrize("spec, message", [
    ("mha(4,3,2) flatten affine(8,1) mse", "layer 1 'mha(4,3,2)' (column 1): the width 4 does not split into 3 heads "
     "(D must be a multiple of H, e.g. mha(3,3,2))"),
    ("mha(4,2) flatten affine(8,1) mse", "mha needs three positive sizes: the token width D, the heads H and"),
    ("causal-mha(4,0,2) flatten affine(8,1) mse", "causal-mha needs three positive sizes"),
    ("mha(4,2,3) affine(12,1) mse", "put flatten before it"),
    ("attention(2,2,3,4) mha(4,2,4) flatten affine(16,1) mse", "takes sequences (4, 4)"),
])
def test_bad_block_specs_are_one_clear_line(spec, message):
    with pytest.raises(SympropError, match=re.escape(message)) as caught:
        parse_net(spec)
    assert "\n" not in str(caught.value)


# ---- the fused kernels ------------------------------------------------------------------------
# One network (a numba compilation is most of this file's time): an embedding, then a block,
# random sizes. Central differences check every parameter and, through the table (its gradient
# is the block's dL/dx scattered to the rows), the block's input gradient: its query, key, value
# and residual paths. T = 1 and the causal mask are checked on the same printed step run as
# plain Python, on transcripts (the statements run by the interpreter) and against PyTorch
# (tests/test_torch_sequences.py).
def _embedded_block(rng):
    """(spec, vocabulary, heads, tokens): embedding, then mha, random sizes, T >= 2."""
    heads, head_width, tokens, classes, vocabulary = (int(v) for v in rng.integers(1, 4, 5))
    heads, head_width = heads % 2 + 2, head_width % 2 + 2  # several heads, each wide enough that 1/sqrt(dh) != 1
    width, tokens, vocabulary = heads * head_width, tokens + 1, vocabulary + 2
    spec = (f"embedding({vocabulary},{width},{tokens}) mha({width},{heads},{tokens}) flatten "
            f"affine({tokens * width},{classes + 1}) softmax-cross-entropy")
    return spec, vocabulary, heads, tokens


def _draw(net, rng, token_ids=None, spread=0.8):
    params = [rng.normal(0, spread, shape) for shape in net.PARAM_SHAPES]
    rows = int(rng.integers(1, 4))
    if token_ids is None:
        X = rng.normal(size=(rows, net.INPUT_SIZE))
    else:
        X = rng.integers(0, token_ids, size=(rows, net.INPUT_SIZE)).astype(np.float64)
    return params, X, np.eye(net.OUTPUT_SIZE)[rng.integers(0, net.OUTPUT_SIZE, rows)]


def _gradcheck(net, params, X, labels):
    """Every parameter's gradient against central differences; the key bias's is exactly zero
    (it adds q . bk to every score of a row, which the softmax ignores), so it is checked as
    zero, not relatively."""
    loss, *grads = net.loss_and_grads(*params, X, labels)
    for k, (name, grad) in enumerate(zip(net.PARAM_NAMES, grads)):
        numeric = numerical_gradient(parameter_loss(net, params, k, X, labels), params[k])
        if KEY_BIAS.match(name):
            assert np.abs(grad).max() < 1e-14 and np.abs(numeric).max() < ZERO_GRADIENT, (net.SPEC, name)
        else:
            assert relative_error(grad, numeric) < GRADCHECK_TOLERANCE, (net.SPEC, name)


def test_fused_kernel_agrees_with_central_differences(rng):
    spec, vocabulary, _, _ = _embedded_block(rng)
    net = load_network(spec)
    _gradcheck(net, *_draw(net, rng, vocabulary))


def _softmax_cross_entropy(z, labels):
    z = z - z.max(axis=1, keepdims=True)
    return float(np.mean(-np.sum(labels * (z - np.log(np.exp(z).sum(axis=1, keepdims=True))), axis=1)))


def test_fused_kernel_equals_the_numpy_block(rng):
    """The network's loss, computed by the numpy block above (embedding rows looked up, the
    block, affine, softmax cross-entropy); backward leaves its inputs alone."""
    spec, vocabulary, heads, tokens = _embedded_block(rng)
    net = load_network(spec)
    params, X, labels = _draw(net, rng, vocabulary)
    before = [p.copy() for p in (X, *params)]
    loss, *_ = net.loss_and_grads(*params, X, labels)
    for now, then in zip((X, *params), before):
        np.testing.assert_array_equal(now, then)  # backward never writes its inputs
    table, block, (W, b) = params[0], params[1:11], params[11:]
    out = block_forward(table[X.astype(int)].reshape(X.shape[0], -1), block, heads, tokens)
    assert loss == pytest.approx(_softmax_cross_entropy(out @ W + b, labels), rel=1e-12)


def test_large_scores_do_not_overflow(rng):
    """Scores in the thousands: the row maximum is subtracted before exp in every head."""
    spec, vocabulary, _, _ = _embedded_block(rng)
    net = load_network(spec)
    params, X, labels = _draw(net, rng, vocabulary, spread=30)
    loss, *grads = net.loss_and_grads(*params, X, labels)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize("op, tokens", [("mha", 1), ("causal-mha", 3)])
def test_the_printed_step_run_as_plain_python(op, tokens, tmp_path, rng):
    """The fused step's printed code at T = 1 and with the mask, run as plain Python (the same
    statements, printed by a backend without numba: nothing to compile): its loss is the numpy
    block's squared error and every gradient the central differences of it."""
    from symprop.codegen import files
    from symprop.codegen.network import network_module_text
    from tests.test_backends import PLAIN_PYTHON

    width, heads = 4, 2
    path = tmp_path / "plain_block.py"
    path.write_text(network_module_text(f"{op}({width},{heads},{tokens}) flatten squared-error", backend=PLAIN_PYTHON))
    net = files.import_generated(f"plain_{op.replace('-', '_')}_{tokens}", path)
    params = [rng.normal(0, 0.7, shape) for shape in net.PARAM_SHAPES]
    X, target = rng.normal(size=(2, tokens * width)), rng.normal(size=(2, tokens * width))
    loss, *grads = net.loss_and_grads(*params, X, target)

    def numpy_loss(k):
        def loss_of(value):
            trial = [*params]
            trial[k] = value
            return 0.5 * float(np.sum((block_forward(X, trial, heads, tokens, op == "causal-mha") - target) ** 2))
        return loss_of

    assert loss == pytest.approx(numpy_loss(0)(params[0]), rel=1e-12)
    for k, (name, grad) in enumerate(zip(net.PARAM_NAMES, grads)):
        numeric = numerical_gradient(numpy_loss(k), params[k])
        if KEY_BIAS.match(name):
            assert np.abs(grad).max() < 1e-14 and np.abs(numeric).max() < ZERO_GRADIENT, name
        else:
            assert relative_error(grad, numeric) < GRADCHECK_TOLERANCE, name


# ---- a transcript of a tiny block -------------------------------------------------------------
@pytest.mark.parametrize("causal, tokens", [(True, 3), (False, 1)])
def test_a_tiny_block_transcript_matches_the_numpy_block(causal, tokens, rng):
    """A block of width 4 and 2 heads alone, with a given upstream gradient dout: the transcript
    (the lowered statements run in exact arithmetic) gives y as the numpy block does, and dL/dX
    and every parameter's gradient as central differences of the numpy block's sum(dout * y),
    float64, rel 1e-6 (the key bias's, exactly zero, to 1e-9)."""
    from symprop.symbolic.graph_transcript import graph_transcript

    width, heads = 4, 2
    quarters = lambda *shape: rng.integers(-4, 5, shape) / 4  # noqa: E731 (numbers a hand can carry)
    names = ("Wq1", "bq1", "Wk1", "bk1", "Wv1", "bv1", "Wo1", "bo1", "scale1", "shift1")
    params = [quarters(width, width) if name.startswith("W") else quarters(width) for name in names]
    params[8] = np.array([1, 0.5, 2, 1])  # a gain of zero would hide a token's features
    X, dout = quarters(1, tokens * width), quarters(1, tokens * width)
    values = {"X": X.reshape(1, tokens, width).tolist(), "dout": dout.reshape(1, tokens, width).tolist(),
              **{name: p.tolist() for name, p in zip(names, params)}}
    op = "causal-mha" if causal else "mha"
    t = graph_transcript(parse_net(f"{op}({width},{heads},{tokens})", loss_optional=True), values)
    y = block_forward(X, params, heads, tokens, causal)
    for k in range(tokens * width):
        assert t.float_value(f"y1[0,{k // width},{k % width}]") == pytest.approx(y[0, k], rel=1e-12)

    def loss_of(at):
        """sum(dout * y) as a function of X (at None) or of one parameter."""
        def loss(value):
            trial = [*params]
            if at is not None:
                trial[at] = value
            return float(np.sum(dout * block_forward(X if at is not None else value, trial, heads, tokens, causal)))
        return loss

    for at, (name, value) in enumerate([*zip(names, params), ("X", X)]):
        numeric = numerical_gradient(loss_of(None if name == "X" else at), value)
        shape = (1, tokens, width) if name == "X" else numeric.shape
        ours = np.array([t.float_value(f"dL/d{name}[{','.join(map(str, i))}]")
                         for i in np.ndindex(shape)]).reshape(numeric.shape)
        if KEY_BIAS.match(name):
            assert np.abs(ours).max() < 1e-14 and np.abs(numeric).max() < ZERO_GRADIENT
        else:
            assert relative_error(ours, numeric) < GRADCHECK_TOLERANCE, name
    if causal:
        assert "P1[0,0,0,1]" not in t.quantities and "S1[0,1,1,2]" not in t.quantities  # masked: never computed


# ---- the checker on a block: attention's classic mistakes, named in every head ----------------
CHECK_SPEC = "mha(4,2,3) flatten mse"
CHECK_NAMES = ("Wq1", "bq1", "Wk1", "bk1", "Wv1", "bv1", "Wo1", "bo1", "scale1", "shift1")


def _check_values():
    """X, T and the block's parameters in quarters (numbers a hand can carry), fixed."""
    draw = np.random.default_rng(7)
    quarters = lambda *shape: draw.integers(-4, 5, shape) / 4  # noqa: E731
    params = [quarters(4, 4) if name.startswith("W") else quarters(4) for name in CHECK_NAMES]
    params[8] = np.array([1, 0.5, 2, 1])
    return quarters(1, 12), quarters(1, 12), params


def _block_by_hand(scale=True, transposed=False, elementwise_jacobian=False):
    """The block by plain numpy, done right or with one classic mistake in every head: the scores
    without 1/sqrt(dh), the scores transposed (K Q^T), or the softmax Jacobian taken as
    elementwise (dS = dP P (1 - P); dL/dO, which that mistake does not touch, by central
    differences of the numpy block after the heads, so dS agrees to about 1e-9). key -> value."""
    X, target, (Wq, bq, Wk, bk, Wv, bv, Wo, bo, g, b) = _check_values()
    xs = X.reshape(3, 4)
    heads = [slice(0, 2), slice(2, 4)]
    Q, K, V = xs @ Wq + bq, xs @ Wk + bk, xs @ Wv + bv
    root = np.sqrt(2) if scale else 1.0
    S = np.stack([(K[:, h] @ Q[:, h].T if transposed else Q[:, h] @ K[:, h].T) / root for h in heads])
    P = np.exp(S - S.max(axis=-1, keepdims=True))
    P /= P.sum(axis=-1, keepdims=True)
    O = np.concatenate([P[k] @ V[:, h] for k, h in enumerate(heads)], axis=1)

    def after_heads(O):
        R = xs + O @ Wo + bo
        y = g * (R - R.mean(axis=-1, keepdims=True)) / np.sqrt(R.var(axis=-1, keepdims=True) + 1e-5) + b
        return y, float(np.mean((y.reshape(1, -1) - target) ** 2))

    y, loss = after_heads(O)
    dO = numerical_gradient(lambda o: after_heads(o)[1], O)
    dP = np.stack([dO[:, h] @ V[:, h].T for h in heads])
    dS = dP * P * (1 - P) if elementwise_jacobian else P * (dP - np.sum(dP * P, axis=-1, keepdims=True))
    keyed = lambda name, a: {f"{name}[0,{','.join(map(str, i))}]": float(a[i]) for i in np.ndindex(a.shape)}  # noqa: E731
    return {**keyed("S1", S), **keyed("P1", P), **keyed("y1", y), "L": loss,
            **{f"dL/d{key}": value for key, value in keyed("S1", dS).items()}}


MISTAKE_ROWS = [
    # (key, the learner's way, the mistake that explains it)
    ("S1[0,1,0,2]", {"scale": False}, "forgot_attention_scale"),
    ("P1[0,0,2,1]", {"scale": False}, "forgot_attention_scale"),
    ("y1[0,1,3]", {"scale": False}, "forgot_attention_scale"),
    ("S1[0,0,0,1]", {"transposed": True}, "attention_scores_transposed"),
    ("P1[0,1,2,0]", {"transposed": True}, "attention_scores_transposed"),
    ("y1[0,2,0]", {"transposed": True}, "attention_scores_transposed"),
    ("dL/dS1[0,1,1,0]", {"elementwise_jacobian": True}, "softmax_jacobian_elementwise"),
    ("dL/dS1[0,0,2,2]", {"elementwise_jacobian": True}, "softmax_jacobian_elementwise"),
]


@pytest.fixture(scope="module")
def block_mistakes():
    """The block's transcript (X, T and parameters of _check_values) and each mistake the checker
    finds in it, by code: the transcripts the checker matches a learner's claims against."""
    from symprop.symbolic.graph_transcript import graph_transcript
    from symprop.symbolic.mistakes import mistakes

    X, target, params = _check_values()
    values = {"X": X.reshape(1, 3, 4).tolist(), "T": target.tolist(),
              **{name: p.tolist() for name, p in zip(CHECK_NAMES, params)}}
    t = graph_transcript(parse_net(CHECK_SPEC), values)
    return t, {m.code: m.transcript for m in mistakes(t)}


def test_the_transcript_is_the_block_by_hand(block_mistakes):
    t, _ = block_mistakes
    for key, value in _block_by_hand().items():
        assert t.float_value(key) == pytest.approx(value, rel=1e-6, abs=1e-9), key


@pytest.mark.parametrize("key, way, code", MISTAKE_ROWS, ids=[f"{k}-{c}" for k, _, c in MISTAKE_ROWS])
def test_attention_mistakes_are_found_in_every_head_of_a_block(key, way, code, block_mistakes):
    """The checker's attention mistakes apply to a block: each, made in the block's transcript,
    gives the number a learner computes by hand with that mistake (plain numpy, not symprop),
    which the right transcript does not; the checker names a claim by this match. The
    transposed scores need S[n,h,s,t] beside S[n,h,t,s], so this block is not causal."""
    t, found = block_mistakes
    mistaken = _block_by_hand(**way)[key]
    assert abs(mistaken - t.float_value(key)) > 1e-4  # the mistake changes this number
    assert found[code].float_value(key) == pytest.approx(mistaken, rel=1e-6, abs=1e-9), (key, code)
