"""Graph files with a dtype give a program's numbers: float32 or float64 one operation at a
time, in the order and grouping the formula is written, gradients by reverse-mode autodiff.

Every expected number here is computed by numpy in the test, operation by operation as a
learner's program writes it, never taken from symprop.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from symprop.symbolic.checker import check, claim_from
from symprop.symbolic.graphfile import parse_graph
from symprop.symbolic.graphfile_transcript import graph_transcript
from symprop.symbolic.ieee import Program

f32 = np.float32


def _graph(tmp_path, text, name="g.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path, parse_graph(text, str(path))


def exact_of(x) -> sp.Rational:
    return sp.Rational(float(x))


def test_float32_follows_the_written_order_not_sympys(tmp_path):
    """w1 * x * x + w2 * x + b is not b + w1*x**2 + w2*x in float32, and (x + y) - x is not y."""
    text = ('dtype = "float32"\n[inputs]\nx = 1000\ny = 0.001\n[parameters]\nw1 = 0.3\nw2 = 0.7\nb = 0.1\n'
            'z = 1.3\n[nodes]\nq = "1/((x + y) - x)"\np = "w1 * z * z + w2 * z + b"\n')
    _, graph = _graph(tmp_path, text)
    t = graph_transcript(graph)
    x, y, z, w1, w2, b = f32(1000), f32(0.001), f32(1.3), f32(0.3), f32(0.7), f32(0.1)
    q = f32(1) / ((x + y) - x)
    p = w1 * z * z + w2 * z + b
    assert t.value("q") == exact_of(q) == 1024  # (1000 + 0.001) - 1000 is 2^-10 in float32
    assert t.value("p") == exact_of(p)
    # the test can fail: SymPy's form of each gives other float32 numbers
    assert exact_of(f32(1) / y) != exact_of(q)
    assert exact_of(b + w1 * (z * z) + w2 * z) != exact_of(p)


def test_float32_overflow_is_inf_as_in_the_program_and_a_claim_of_0_is_wrong(tmp_path):
    text = 'dtype = "float32"\n[inputs]\nx = 100\ny = 1e-30\n[nodes]\nf = "exp(x) * y"\n'
    path, graph = _graph(tmp_path, text)
    with np.errstate(over="ignore"):
        assert np.isinf(np.exp(f32(100)) * f32(1e-30))
    t = graph_transcript(graph)
    assert t.value("f") == sp.oo and "f = y*exp(x) = 1.0e-30*exp(100) ≈ inf" in t.render("text")
    report = check(str(path), [claim_from("f", "0", "test")])
    (verdict,) = report.verdicts
    assert not verdict.right and verdict.code == "not_finite"
    assert "inf" in verdict.diagnoses[0].en


def test_float64_program_print_of_a_finite_difference_is_right(tmp_path):
    text = 'dtype = "float64"\n[inputs]\nx = 11\nh = 0.001\n[nodes]\nd = "((x + h)^2 - x^2) / h"\n'
    path, graph = _graph(tmp_path, text)
    x, h = 11.0, 0.001
    printed = repr(((x + h) * (x + h) - x * x) / h)
    assert printed == "22.000999999988835"
    assert graph_transcript(graph).value("d") == exact_of(float(printed))
    for written in (printed, "22.001"):
        (verdict,) = check(str(path), [claim_from("d", written, "test")]).verdicts
        assert verdict.right, (written, verdict.code)
    # without a dtype the file is exact: 22.001, and the float64 print is still recognised
    exact_path, exact_graph = _graph(tmp_path, text.replace('dtype = "float64"\n', ""), "exact.toml")
    assert graph_transcript(exact_graph).value("d") == sp.Rational("22.001")
    (verdict,) = check(str(exact_path), [claim_from("d", printed, "test")]).verdicts
    assert verdict.right and verdict.code == "right_float64", (verdict.code, [d.en for d in verdict.diagnoses])


def test_program_backward_is_reverse_mode_through_the_written_operations():
    """The gradient of one formula, by hand in numpy as autograd computes it, and by Program."""
    program = Program("(w1 * x * x + w2 * x + b - t) ^ 2", "float32")
    values = {"w1": f32(0.3), "w2": f32(-1.7), "b": f32(0.1), "x": f32(0.7), "t": f32(2.5)}
    w1, w2, b, x, t = values.values()
    a = w1 * x
    d = a * x + w2 * x + b - t
    g = f32(1) * (f32(2) * d)  # pow: grad * (2 * d)
    grads = program.backward(values)
    assert grads["w1"] == (g * x) * x and grads["w2"] == g * x and grads["b"] == g and grads["t"] == -g
    assert program.value(values) == d * d


def float32_training_log(epochs: int):
    """A learner's float32 program: the model as one formula, per-sample SGD, the gradients as
    autograd computes them through the formula's own operations; one log line per epoch."""
    w1, w2, b, lr = f32(0.3), f32(-0.2), f32(0.05), f32(0.05)
    xs, ts = [f32(v) for v in (0.1, 0.7, 1.3)], [f32(v) for v in (0.5, 1.1, 3.3)]
    lines = []
    for epoch in range(1, epochs + 1):
        for x, t in zip(xs, ts):
            d = w1 * x * x + w2 * x + b - t
            loss = d * d
            g = f32(1) * (f32(2) * d)
            dw1, dw2, db = (g * x) * x, g * x, g
            w1, w2, b = w1 - lr * dw1, w2 - lr * dw2, b - lr * db
        lines.append(f"{epoch} loss={float(loss)!r} w1={float(w1)!r} w2={float(w2)!r} b={float(b)!r}")
    return lines


def test_float32_graph_file_reproduces_a_float32_training_log_line_for_line(tmp_path):
    epochs = 200
    text = f"""dtype = "float32"
loss = "l"
[parameters]
w1 = 0.3
w2 = -0.2
b = 0.05
[nodes]
l = "(w1 * x * x + w2 * x + b - t) ^ 2"
[data]
x = [0.1, 0.7, 1.3]
t = [0.5, 1.1, 3.3]
[update]
learning_rate = 0.05
epochs = {epochs}
table = ["l", "w1", "w2", "b"]
"""
    _, graph = _graph(tmp_path, text)
    t = graph_transcript(graph)
    mine = []
    for epoch in range(1, epochs + 1):
        loss, w1, w2, b = (float(t.value(f"epoch{epoch}:{n}")) for n in ("l", "w1", "w2", "b"))
        mine.append(f"{epoch} loss={loss!r} w1={w1!r} w2={w2!r} b={b!r}")
    assert mine == float32_training_log(epochs)


def test_the_log_test_can_fail():
    """Grouping x * x first (as SymPy's w1*x**2 does) changes the float32 log."""
    def regrouped(epochs):
        w1, w2, b, lr = f32(0.3), f32(-0.2), f32(0.05), f32(0.05)
        out = []
        for _ in range(epochs):
            for x, t in zip([f32(0.1), f32(0.7), f32(1.3)], [f32(0.5), f32(1.1), f32(3.3)]):
                d = b + w1 * (x * x) + w2 * x - t
                g = f32(2) * d
                w1, w2, b = w1 - lr * (g * (x * x)), w2 - lr * (g * x), b - lr * g
            out.append(float(w1))
        return out
    written = [float(line.split("w1=")[1].split()[0]) for line in float32_training_log(200)]
    assert written != regrouped(200)


@pytest.mark.parametrize("formula", ["max(0, x) + min(0, exp(x) - 1)", "sigmoid(x) * x", "log1p(exp(x)) / x"])
def test_program_matches_numpy_for_functions(formula):
    program = Program(formula, "float64")
    for x in (-2.5, -0.3, 0.4, 3.0):
        expected = {"max(0, x) + min(0, exp(x) - 1)": max(0.0, x) + min(0.0, np.exp(x) - 1.0),
                    "sigmoid(x) * x": (1 / (1 + np.exp(-x)) if x >= 0 else np.exp(x) / (1 + np.exp(x))) * x,
                    "log1p(exp(x)) / x": np.log1p(np.exp(x)) / x}[formula]
        assert program.value({"x": np.float64(x)}) == pytest.approx(expected, rel=1e-15)


def test_float32_full_batch_with_dout_matches_the_program(tmp_path):
    """A full batch in float32 with an upstream gradient of 2: the mean of the samples'
    gradients, summed in order, then the update, as a numpy loop does it."""
    text = """dtype = "float32"
output = "yh"
loss = "l"
dout = 2
[parameters]
w = 0.5
[nodes]
yh = "w * x"
l = "(yh - y)^2"
[data]
x = [1, 2, 3]
y = [2, 4, 6.5]
mode = "full-batch"
[update]
learning_rate = 0.01
epochs = 20
[predict]
x = 4
"""
    _, graph = _graph(tmp_path, text)
    t = graph_transcript(graph)
    w, lr = f32(0.5), f32(0.01)
    for epoch in range(1, 21):
        grads = []
        for x, y in ((f32(1), f32(2)), (f32(2), f32(4)), (f32(3), f32(6.5))):
            d = w * x - y
            grads.append((f32(2) * (f32(2) * d)) * x)
        w = w - lr * ((grads[0] + grads[1] + grads[2]) / f32(3))
        assert t.value(f"epoch{epoch}:w") == exact_of(w)
    assert t.value("yh_test_trained") == exact_of(w * f32(4))
