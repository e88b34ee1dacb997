"""word2vec's CBOW with negative sampling: SymPy derives the textbook score gradients
(sigmoid(s) - 1 for the target, sigmoid(s) for a negative) and the scatter-adds into both
tables; the fused kernel matches central differences (float64) and an independent numpy
CBOW, with repeated context words and negatives equal to context words; the worked example
"a CBOW step" is recomputed independently in float64."""
import functools
import re
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from symprop.cli import main
from symprop.codegen.network import load_network
from symprop.symbolic.errors import SympropError
from symprop.symbolic.graph import parse_net
from symprop.symbolic.layers import REGISTRY, N
from symprop.symbolic.ops.word2vec import C, K
from symprop.symbolic.stable import Sigmoid
from tests.gradcheck import numerical_gradient, parameter_loss, relative_error
from tests.test_examples import GOLDEN, check_golden

GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, relative


def cbow_numpy(Win, Wout, X, context):
    """CBOW with negative sampling in plain numpy, written from the textbook: (loss, dWin, dWout)."""
    ids = X.astype(int)
    contexts, outputs = ids[:, :context], ids[:, context:]  # outputs: the target, then the negatives
    rows = len(ids)
    h = Win[contexts].mean(axis=1)
    s = np.einsum("njd,nd->nj", Wout[outputs], h)
    sign = np.ones(s.shape[1])
    sign[0] = -1.0  # -log sigmoid(s) = log(1 + exp(-s)) for the target, log(1 + exp(s)) for a negative
    loss = np.logaddexp(0.0, sign * s).sum() / rows
    sigmoid = np.exp(-np.logaddexp(0.0, -s))  # 1 / (1 + exp(-s)) without overflow
    ds = (sigmoid - np.eye(1, s.shape[1])) / rows  # sigmoid(s) - 1 for the target, sigmoid(s) otherwise
    dWout = np.zeros_like(Wout)
    np.add.at(dWout, outputs, ds[:, :, None] * h[:, None, :])
    dh = np.einsum("nj,njd->nd", ds, Wout[outputs])
    dWin = np.zeros_like(Win)
    np.add.at(dWin, contexts, np.repeat(dh[:, None, :] / context, context, axis=1))
    return loss, dWin, dWout, h, s, ds, dh


def test_sympy_derives_the_textbook_score_gradients_and_scatter_adds():
    d = REGISTRY.derive("cbow")
    n, j, v, q, c = sp.symbols("n j v q c", integer=True)
    x, s, ds, h, dh, Wout = (sp.IndexedBase(name) for name in ("x", "s", "ds", "h", "dh", "Wout"))
    assert sp.simplify(d.backward["ds_target"] - (Sigmoid(s[n, 0]) - 1) / N) == 0
    assert d.backward["ds_negative"] == Sigmoid(s[n, j]) / N
    # the stabilized rules equal SymPy's raw derivatives of -log sigmoid(+-s)
    u = sp.Symbol("u", real=True)
    for key in ("ds_target", "ds_negative"):
        index = s[n, 0] if key == "ds_target" else s[n, j]
        rule = d.backward[key].rewrite(sp.exp).subs(index, u)
        raw = d.raw_backward[key].subs(index, u)
        for value in (-30, -1.5, 0, 0.7, 25):
            assert float(rule.subs({u: value, N: 3})) == pytest.approx(float(raw.subs({u: value, N: 3})), rel=1e-12)
    assert d.backward["dWout"] == sp.Sum(sp.KroneckerDelta(v, x[n, C + j]) * ds[n, j] * h[n, q],
                                         (n, 0, N - 1), (j, 0, K))
    assert d.backward["dh"] == sp.Sum(Wout[x[n, C + j], q] * ds[n, j], (j, 0, K))
    assert d.backward["dWin"] == sp.Sum(dh[n, q] * sp.Sum(sp.KroneckerDelta(v, x[n, c]), (c, 0, C - 1)),
                                        (n, 0, N - 1)) / C


def test_symprop_derive_shows_the_rules(capsys):
    assert main(["derive", "cbow"]) == 0
    out = capsys.readouterr().out
    assert "L_n = softplus(-s[n, 0]) + Sum(softplus(s[n, j]), (j, 1, K))" in out
    assert "sigmoid(s[n, 0]) - 1" in out and "a scatter-add" in out


@pytest.mark.parametrize("spec, message", [
    ("cbow(5,2,2)", "cbow needs the vocabulary size, the width, the context words and the negatives"),
    ("cbow(5,2,0,2)", "cbow needs the vocabulary size, the width, the context words and the negatives"),
    ("cbow(5,2,2,1) mse", "a loss can only be the last layer"),
])
def test_bad_cbow_specs_are_one_clear_line(spec, message):
    with pytest.raises(SympropError, match=re.escape(message)):
        parse_net(spec)


def _ids(rng, rows, context, negatives, vocabulary):
    """Random examples with a context word repeated and a negative equal to a context word."""
    X = rng.integers(0, vocabulary, size=(rows, context + 1 + negatives))
    X[0, 1] = X[0, 0]  # a word twice in the context
    X[1, context + 1] = X[1, 0]  # a negative that is also a context word
    X[2, context] = X[2, context - 1]  # the target is also a context word
    return X.astype(np.float64)


@pytest.mark.parametrize("vocabulary, width, context, negatives, rows",
                         [(7, 3, 2, 2, 5), (4, 2, 3, 1, 3), (9, 5, 4, 3, 6), (3, 1, 2, 4, 4)])
def test_fused_kernel_agrees_with_central_differences_and_numpy(vocabulary, width, context, negatives, rows, rng):
    net = load_network(f"cbow({vocabulary},{width},{context},{negatives})")
    assert net.PARAM_NAMES == ("Win1", "Wout1") and net.INPUT_SIZE == context + 1 + negatives
    params = [rng.normal(0, 0.9, shape) for shape in net.PARAM_SHAPES]
    X = _ids(rng, rows, context, negatives, vocabulary)
    T = np.zeros((rows, net.OUTPUT_SIZE))
    loss, *grads = net.loss_and_grads(*params, X, T)
    for k, (name, grad) in enumerate(zip(net.PARAM_NAMES, grads)):
        numeric = numerical_gradient(parameter_loss(net, params, k, X, T), params[k])
        assert relative_error(grad, numeric) < GRADCHECK_TOLERANCE, name
    want_loss, want_dWin, want_dWout, *_ = cbow_numpy(*params, X, context)
    assert loss == pytest.approx(want_loss, rel=1e-13)
    np.testing.assert_allclose(grads[0], want_dWin, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads[1], want_dWout, rtol=1e-12, atol=1e-15)


def test_large_scores_do_not_overflow(rng):
    """Scores of +-1000: softplus and sigmoid printed without exp overflow, the numpy reference
    (logaddexp) agrees."""
    net = load_network("cbow(4,1,1,1)")
    Win, Wout = np.array([[10.0], [-10.0], [1.0], [2.0]]), np.array([[100.0], [-100.0], [3.0], [4.0]])
    X = np.array([[0, 1, 0], [1, 1, 0]], float)  # scores 1000 and -1000
    with np.errstate(over="raise"):
        loss, dWin, dWout = net.loss_and_grads(Win, Wout, X, np.zeros((2, 3)))
    want_loss, want_dWin, want_dWout, *_ = cbow_numpy(Win, Wout, X, 1)
    assert np.isfinite(loss) and loss == pytest.approx(want_loss, rel=1e-13)
    np.testing.assert_allclose(dWin, want_dWin, rtol=1e-12)
    np.testing.assert_allclose(dWout, want_dWout, rtol=1e-12)


@pytest.mark.parametrize("bad", [0.5, -1.0, 5.0, np.nan])
def test_the_kernel_refuses_an_id_that_is_not_a_row(bad, rng):
    net = load_network("cbow(5,2,2,2)")
    params = [rng.normal(0, 0.5, shape) for shape in net.PARAM_SHAPES]
    X = _ids(rng, 3, 2, 2, 5)
    X[1, 3] = bad
    with pytest.raises(ValueError, match="X holds token ids, whole numbers from 0 to V-1"):
        net.loss_and_grads(*params, X, np.zeros((3, 5)))


# ---- the worked example (symbolic/nets/cbow-step.toml) ---------------------------------------
EXAMPLE = "cbow-step"


def _given(name):
    """A value of the example's [values] table as float64, from the file's own numbers."""
    from symprop.symbolic.examples import NET_FILES

    return np.vectorize(lambda v: float(Fraction(str(v))))(np.array(NET_FILES[EXAMPLE].values[name], dtype=object))


@functools.cache
def _example():
    from symprop.symbolic.examples import EXAMPLES

    return EXAMPLES[EXAMPLE].build()


def _keyed(name, array):
    return {f"{name}[{','.join(map(str, index))}]": array[index] for index in np.ndindex(array.shape)}


def test_worked_example_numbers_recomputed_independently_in_float64():
    """The context mean, the scores, the loss, every gradient, the update and the loss after
    it, recomputed by the plain numpy CBOW above."""
    t = _example()
    X, Win, Wout, rate = _given("X"), _given("Win1"), _given("Wout1"), 0.5
    loss, dWin, dWout, h, s, ds, dh = cbow_numpy(Win, Wout, X, 2)
    want = {**_keyed("h1", h), **_keyed("s1", s), "L": loss}
    for name, grad in (("s1", ds), ("h1", dh), ("Win1", dWin), ("Wout1", dWout)):
        want |= {f"dL/d{key}": value for key, value in _keyed(name, grad).items()}
    for name, param, grad in (("Win1", Win, dWin), ("Wout1", Wout, dWout)):
        want |= {key.replace("[", "_new[", 1): value for key, value in _keyed(name, param - rate * grad).items()}
    want["L_new"] = cbow_numpy(Win - rate * dWin, Wout - rate * dWout, X, 2)[0]
    assert want["L_new"] < want["L"]
    assert len(want) == 2 + 3 + 1 + 3 + 2 + 10 + 10 + 10 + 10 + 1  # every number
    for key, value in want.items():
        assert t.float_value(key) == pytest.approx(value, rel=1e-12, abs=1e-15), key
    # word 1 is a context word and a negative: both of its rows move, each by its own table's rule
    assert t.float_value("dL/dWin1[1,0]") == pytest.approx(dh[0, 0] / 2, rel=1e-12)
    assert t.float_value("dL/dWout1[1,0]") == pytest.approx(ds[0, 2] * h[0, 0], rel=1e-12)
    assert t.float_value("dL/ds1[0,0]") == pytest.approx(1 / (1 + np.exp(-1.0)) - 1, rel=1e-12)


def test_the_transcript_and_the_kernel_agree_on_the_worked_example():
    t = _example()
    net = load_network("cbow(5,2,2,2)")
    loss, *grads = net.loss_and_grads(_given("Win1"), _given("Wout1"), _given("X"), _given("T"))
    assert t.float_value("L") == pytest.approx(loss, rel=1e-14)
    for name, grad in zip(net.PARAM_NAMES, grads):
        for index in np.ndindex(grad.shape):
            key = f"dL/d{name}[{','.join(map(str, index))}]"
            assert t.float_value(key) == pytest.approx(grad[index], rel=1e-13, abs=1e-15), key


def test_the_chinese_transcript_is_its_golden_file():
    """The notes the lowering gives each line, in Chinese (SYMPROP_UPDATE_GOLDEN=1 rewrites it)."""
    md = _example().render("md", lang="zh")
    check_golden(GOLDEN / f"{EXAMPLE}.zh.md", md)
    for term in ("前向传播", "反向传播", "上下文", "负样本", "散射相加"):
        assert term in md, term


# ---- skip-gram: CBOW with the centre word as its one context word ----------------------------
def skipgram_numpy(Win, Wout, X):
    """Skip-gram with negative sampling on (centre, context, negatives) rows, from the textbook:
    (loss, dWin, dWout)."""
    ids = X.astype(int)
    centre, outputs = ids[:, 0], ids[:, 1:]
    rows = len(ids)
    h = Win[centre]
    s = np.einsum("njd,nd->nj", Wout[outputs], h)
    loss = (np.logaddexp(0.0, -s[:, 0]).sum() + np.logaddexp(0.0, s[:, 1:]).sum()) / rows
    ds = np.exp(-np.logaddexp(0.0, -s)) / rows
    ds[:, 0] -= 1.0 / rows
    dWout, dWin = np.zeros_like(Wout), np.zeros_like(Win)
    for n in range(rows):
        for j, word in enumerate(outputs[n]):
            dWout[word] += ds[n, j] * h[n]
            dWin[centre[n]] += ds[n, j] * Wout[word]
    return loss, dWin, dWout


def test_sympy_derives_skipgrams_rules_at_one_context_word():
    d = REGISTRY.derive("skipgram")
    n, j, v, q = sp.symbols("n j v q", integer=True)
    x, s, ds, h, dh = (sp.IndexedBase(name) for name in ("x", "s", "ds", "h", "dh"))
    assert d.forward["h"] == sp.IndexedBase("Win")[x[n, 0], sp.Symbol("d", integer=True)]
    assert sp.simplify(d.backward["ds_target"] - (Sigmoid(s[n, 0]) - 1) / N) == 0
    assert d.backward["ds_negative"] == Sigmoid(s[n, j]) / N
    assert d.backward["dWin"] == sp.Sum(sp.KroneckerDelta(v, x[n, 0]) * dh[n, q], (n, 0, N - 1))
    assert d.backward["dWout"] == sp.Sum(sp.KroneckerDelta(v, x[n, j + 1]) * ds[n, j] * h[n, q],
                                         (n, 0, N - 1), (j, 0, K))


def test_bad_skipgram_spec_is_one_clear_line():
    with pytest.raises(SympropError, match=re.escape("skipgram needs the vocabulary size, the width and the "
                                                     "negatives per example")):
        parse_net("skipgram(5,2,2,2)")


@pytest.mark.parametrize("vocabulary, width, negatives, rows", [(6, 3, 2, 5), (3, 1, 4, 4), (8, 4, 1, 3)])
def test_skipgram_kernel_agrees_with_central_differences_and_numpy(vocabulary, width, negatives, rows, rng):
    net = load_network(f"skipgram({vocabulary},{width},{negatives})")
    assert net.INPUT_SIZE == 2 + negatives
    params = [rng.normal(0, 0.9, shape) for shape in net.PARAM_SHAPES]
    X = rng.integers(0, vocabulary, size=(rows, 2 + negatives)).astype(np.float64)
    X[0, 2] = X[0, 0]  # a negative that is the centre word
    X[1, 1] = X[1, 0]  # the context word is the centre word
    X[2, 2] = X[2, 1]  # a negative that is the context word
    T = np.zeros((rows, net.OUTPUT_SIZE))
    loss, *grads = net.loss_and_grads(*params, X, T)
    for k, (name, grad) in enumerate(zip(net.PARAM_NAMES, grads)):
        numeric = numerical_gradient(parameter_loss(net, params, k, X, T), params[k])
        assert relative_error(grad, numeric) < GRADCHECK_TOLERANCE, name
    want_loss, want_dWin, want_dWout = skipgram_numpy(*params, X)
    assert loss == pytest.approx(want_loss, rel=1e-13)
    np.testing.assert_allclose(grads[0], want_dWin, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads[1], want_dWout, rtol=1e-12, atol=1e-15)


def test_the_forward_kernel_runs_and_checks_the_ids():
    """The inference path computes the context mean in its own workspace (a scratch array) and
    gives what the loss reads, X; a bad id is refused there too."""
    net = load_network("cbow(5,2,2,2)")
    X = np.array([[1, 3, 2, 4, 1]], float)
    np.testing.assert_array_equal(net.forward(np.ones((5, 2)), np.ones((5, 2)), X), X)
    with pytest.raises(ValueError, match="X holds token ids"):
        net.forward(np.ones((5, 2)), np.ones((5, 2)), np.array([[1, 3, 2, 4, 5]], float))


def test_the_checker_names_a_forgotten_one_over_c(capsys):
    """Win's gradient without the mean's 1/C is dL/dh itself: the checker says so."""
    right, forgot = _example().float_value("dL/dWin1[1,0]"), _example().float_value("dL/dh1[0,0]")
    assert main(["check", EXAMPLE, f"dL/dWin1[1,0]={right:.4f}", f"dL/dWin1[3,1]={2 * _example().float_value('dL/dWin1[3,1]'):.4f}"]) != 0
    out = capsys.readouterr().out
    assert "right" in out.splitlines()[3]
    assert "twice the right value" in out and "dL/dh1[0,1]" in out
    assert forgot == pytest.approx(2 * right, rel=1e-12)


# ---- the skip-gram worked example (symbolic/nets/skipgram-step.toml) --------------------------
SKIPGRAM_EXAMPLE = "skipgram-step"


def test_skipgram_worked_example_recomputed_independently_in_float64():
    """Every gradient, the update and the loss after it, by the plain numpy skip-gram above;
    the transcript also agrees with the kernel."""
    from symprop.symbolic.examples import EXAMPLES, NET_FILES

    t = EXAMPLES[SKIPGRAM_EXAMPLE].build()
    given = lambda name: np.vectorize(lambda v: float(Fraction(str(v))))(  # noqa: E731
        np.array(NET_FILES[SKIPGRAM_EXAMPLE].values[name], dtype=object))
    X, Win, Wout, rate = given("X"), given("Win1"), given("Wout1"), 0.5
    loss, dWin, dWout = skipgram_numpy(Win, Wout, X)
    want = {"L": loss, "L_new": skipgram_numpy(Win - rate * dWin, Wout - rate * dWout, X)[0]}
    assert want["L_new"] < want["L"]
    for name, param, grad in (("Win1", Win, dWin), ("Wout1", Wout, dWout)):
        want |= {f"dL/d{key}": value for key, value in _keyed(name, grad).items()}
        want |= {key.replace("[", "_new[", 1): value for key, value in _keyed(name, param - rate * grad).items()}
    for key, value in want.items():
        assert t.float_value(key) == pytest.approx(value, rel=1e-12, abs=1e-15), key
    # word 0 is the centre and a negative: both tables' rows 0 move
    assert dWin[0, 0] != 0 and dWout[0, 0] != 0 and not dWin[1:].any()
    kernel_loss, *grads = load_network("skipgram(4,2,2)").loss_and_grads(Win, Wout, X, given("T"))
    assert kernel_loss == pytest.approx(t.float_value("L"), rel=1e-14)
    np.testing.assert_allclose(grads[0], dWin, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grads[1], dWout, rtol=1e-13, atol=1e-15)


def test_the_skipgram_chinese_transcript_is_its_golden_file():
    from symprop.symbolic.examples import EXAMPLES

    md = EXAMPLES[SKIPGRAM_EXAMPLE].build().render("md", lang="zh")
    check_golden(GOLDEN / f"{SKIPGRAM_EXAMPLE}.zh.md", md)
    for term in ("中心词", "负样本", "散射相加"):
        assert term in md, term
