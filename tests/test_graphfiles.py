"""Graph files: shipped circuits against an independent float64 computation and central
differences, the tie convention of max, refused files, the float32 training log, the checker
on a gate gradient, and ``derive --formula`` in several variables.

The independent computations below are written by hand in plain numpy, stage by stage as the
lecture notes write each circuit; nothing is read from the transcript or its formulas.
"""
from __future__ import annotations

import re

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from symprop.symbolic.checker import check, claims_from_arguments
from symprop.symbolic.errors import SympropError
from symprop.symbolic.examples import EXAMPLES, builtin_graph
from symprop.symbolic.graphfile import parse_graph
from symprop.symbolic.graphfile_transcript import graph_transcript

ROOT = Path(__file__).resolve().parents[1]
H = 1e-6


def sig(u):
    return 1 / (1 + math.exp(-u))


# name -> (staged float64 function of the given values; bump(node) perturbs a node's value)
CIRCUITS = {
    "add-mul-circuit": lambda v, b: _stages([("q", lambda s: v["x"] + v["y"]), ("f", lambda s: s["q"] * v["z"])], b),
    "sigmoid-neuron-gates": lambda v, b: _stages([
        ("m0", lambda s: v["w0"] * v["x0"]), ("m1", lambda s: v["w1"] * v["x1"]), ("s", lambda s: s["m0"] + s["m1"]),
        ("z", lambda s: s["s"] + v["w2"]), ("nz", lambda s: -s["z"]), ("ez", lambda s: math.exp(s["nz"])),
        ("d", lambda s: s["ez"] + 1), ("f", lambda s: 1 / s["d"])], b),
    "max-circuit": lambda v, b: _stages([
        ("m", lambda s: v["x"] * v["y"]), ("n", lambda s: max(v["z"], v["w"])), ("s", lambda s: s["m"] + s["n"]),
        ("f", lambda s: 2 * s["s"])], b),
    "staged-sigmoid-ratio": lambda v, b: _stages([
        ("sigy", lambda s: sig(v["y"])), ("num", lambda s: v["x"] + s["sigy"]), ("sigx", lambda s: sig(v["x"])),
        ("xpy", lambda s: v["x"] + v["y"]), ("xpysqr", lambda s: s["xpy"] ** 2), ("den", lambda s: s["sigx"] + s["xpysqr"]),
        ("invden", lambda s: 1 / s["den"]), ("f", lambda s: s["num"] * s["invden"])], b),
    "apples-oranges": lambda v, b: _stages([
        ("apple_price", lambda s: v["apple"] * v["apple_num"]), ("orange_price", lambda s: v["orange"] * v["orange_num"]),
        ("all_price", lambda s: s["apple_price"] + s["orange_price"]), ("price", lambda s: s["all_price"] * v["tax"])], b),
    "nested-neurons": lambda v, b: _stages([("d", lambda s: v["a"] + v["b"]), ("f", lambda s: s["d"] * v["c"])], b),
    "add-node": lambda v, b: _stages([("add_out", lambda s: v["x"] + v["y"])], b),
    "add-mul-nodes": lambda v, b: _stages([
        ("add_out", lambda s: v["x"] + v["y"]), ("mul_out", lambda s: v["x"] * v["y"]),
        ("total", lambda s: s["add_out"] + s["mul_out"])], b),
    "mul-node": lambda v, b: _stages([("mul_out", lambda s: v["x"] * v["y"])], b),
    "linear-model": lambda v, b: _stages([
        ("y_hat", lambda s: v["w"] * v["x"]), ("l", lambda s: (s["y_hat"] - v["y"]) ** 2)], b),
    "quadratic-model": lambda v, b: _stages([
        ("y_hat", lambda s: v["w1"] * v["x"] ** 2 + v["w2"] * v["x"] + v["b"]), ("l", lambda s: (s["y_hat"] - v["y"]) ** 2)], b),
    "batchnorm-staged": lambda v, b: _stages(_batchnorm_stages(v), b),
}


def _batchnorm_stages(v):
    """Batch norm of a 3 x 2 batch, feature by feature, then the contraction with dy."""
    stages = []
    for j in (1, 2):
        rows = [f"x{n}{j}" for n in (1, 2, 3)]
        stages += [(f"mu{j}", lambda s, rows=rows: sum(v[r] for r in rows) / 3),
                   (f"var{j}", lambda s, rows=rows, j=j: sum((v[r] - s[f"mu{j}"]) ** 2 for r in rows) / 3),
                   (f"s{j}", lambda s, j=j: math.sqrt(s[f"var{j}"] + 1e-5))]
        stages += [(f"xhat{n}{j}", lambda s, n=n, j=j: (v[f"x{n}{j}"] - s[f"mu{j}"]) / s[f"s{j}"]) for n in (1, 2, 3)]
        stages += [(f"y{n}{j}", lambda s, n=n, j=j: v[f"g{j}"] * s[f"xhat{n}{j}"] + v[f"b{j}"]) for n in (1, 2, 3)]
    stages.append(("f", lambda s: sum(v[f"dy{n}{j}"] * s[f"y{n}{j}"] for n in (1, 2, 3) for j in (1, 2))))
    return stages


def _stages(stages, bump):
    values = {}
    for name, f in stages:
        values[name] = f(values) + bump(name)
    return values


def test_every_shipped_graph_file_has_an_independent_check():
    shipped = {p.stem for p in (ROOT / "symbolic" / "graphs").glob("*.toml")}
    assert shipped - {"linear-model-float32"} == set(CIRCUITS)
    assert shipped <= set(EXAMPLES)


@pytest.mark.parametrize("name", list(CIRCUITS))
def test_values_and_every_gradient_against_float64_and_central_differences(name):
    graph, t = builtin_graph(name), EXAMPLES[name].build()
    given = {k: float(v) for k, v in graph.given().items()}
    circuit = CIRCUITS[name]
    top = graph.objective
    root = "L" if graph.dout is not None else top
    scale = float(graph.dout) if graph.dout is not None else 1.0
    values = circuit(given, lambda n: 0.0)
    for node, value in values.items():
        assert t.float_value(node) == pytest.approx(value, rel=1e-12, abs=1e-12), node

    def objective(v=given, bump=lambda n: 0.0):
        return circuit(v, bump)[top]

    checked = 0
    for name_ in [*graph.given(), *graph.nodes]:
        key = f"d{root}/d{name_}"
        if name_ == top or key not in t.quantities:
            continue
        if name_ in graph.nodes:
            numeric = (objective(bump=lambda n: H if n == name_ else 0.0)
                       - objective(bump=lambda n: -H if n == name_ else 0.0)) / (2 * H)
        else:
            numeric = (objective({**given, name_: given[name_] + H}) - objective({**given, name_: given[name_] - H})) / (2 * H)
        assert t.float_value(key) == pytest.approx(scale * numeric, rel=1e-6, abs=1e-8), key
        checked += 1
    assert checked >= len(graph.given()), "every input and parameter has a gradient"


def test_a_value_feeding_several_nodes_sums_each_path():
    t = EXAMPLES["staged-sigmoid-ratio"].build()
    paths = [k for k in t.quantities if k.startswith("df/dx_via_")]
    assert sorted(paths) == ["df/dx_via_num", "df/dx_via_sigx", "df/dx_via_xpy"]
    assert t.float_value("df/dx") == pytest.approx(sum(t.float_value(k) for k in paths), rel=1e-15)
    assert "x feeds num, sigx, xpy" in t.render("text")


def test_seed_examples_are_graph_files_with_the_seeds_numbers():
    """Same names, same numbers as the seeds (shared/spec/worked-examples.md), now from shipped files."""
    nested = EXAMPLES["nested-neurons"].build()
    assert nested.value("f") == -7 and nested.value("f_new") == sp.Rational("-6.0114")
    assert [nested.value(f"df/d{k}") for k in "abc"] == [7, 7, -1]
    # seed 000: the addition node passes dout = 3/2 through, the multiplication node swaps its inputs
    add, mul, both = (EXAMPLES[n].build() for n in ("add-node", "mul-node", "add-mul-nodes"))
    half3 = sp.Rational(3, 2)
    assert add.value("dL/dx") == add.value("dL/dy") == half3
    assert mul.value("dL/dx") == half3 * 3 and mul.value("dL/dy") == half3 * 2
    for v in "xy":  # in the combined file each node's path carries what the node alone gives
        assert both.value(f"dL/d{v}_via_add_out") == add.value(f"dL/d{v}")
        assert both.value(f"dL/d{v}_via_mul_out") == mul.value(f"dL/d{v}")
        assert both.value(f"dL/d{v}") == add.value(f"dL/d{v}") + mul.value(f"dL/d{v}")
    # seed 003: prediction at x = 4 before and after 100 epochs of per-sample SGD
    linear, quadratic = EXAMPLES["linear-model"].build(), EXAMPLES["quadratic-model"].build()
    assert linear.value("y_hat_test") == 4 and abs(linear.float_value("y_hat_test_trained") - 8) < 1e-9
    assert linear.value("w_trained") == linear.value("epoch100:w")
    assert quadratic.value("y_hat_test") == 21


def test_predict_refuses_a_name_that_is_not_an_input():
    text = "[inputs]\nx = 1\n[parameters]\nw = 2\n[nodes]\ny = \"w * x\"\n[predict]\nw = 4\n"
    with pytest.raises(SympropError, match=r"g.toml, line 8, field 'predict.w': 'w' is not an input"):
        parse_graph(text, "g.toml")


def _graph(text, source="g.toml"):
    return parse_graph(text, source)


MAX_TIE = """
[inputs]
z = 2
w = 2
[nodes]
n = "max(z, w)"
m = "min(z, w)"
f = "n + 3 * m"
"""


def test_max_and_min_at_a_tie_take_the_derivative_from_the_left():
    """kinks' convention (relu'(0) = 0): at z = w each partial is the one-sided derivative from
    below, so max(z, w) has d/dz = d/dw = 0 and min(z, w) has d/dz = d/dw = 1."""
    t = graph_transcript(_graph(MAX_TIE))
    assert [t.value(k) for k in ("dn/dz", "dn/dw", "dm/dz", "dm/dw")] == [0, 0, 1, 1]
    for name in ("z", "w"):  # the left difference quotient of the whole circuit agrees
        g = {"z": 2.0, "w": 2.0}
        f = lambda v: max(v["z"], v["w"]) + 3 * min(v["z"], v["w"])  # noqa: E731
        left = (f(g) - f({**g, name: g[name] - H})) / H
        assert t.float_value(f"df/d{name}") == pytest.approx(left, abs=1e-6)


BAD = {
    "cycle": ("[inputs]\nx = 1\n[nodes]\na = \"b + x\"\nb = \"a * 2\"\n", "line 4, field 'nodes.a'", "cycle"),
    "undefined": ("[inputs]\nx = 1\n[nodes]\na = \"x + q\"\n", "line 4, field 'nodes.a'", "unknown name 'q'"),
    "twice in a table": ("[inputs]\nx = 1\nx = 2\n[nodes]\na = \"x\"\n", "line 3, field 'inputs.x'", "used twice"),
    "twice across tables": ("[inputs]\nx = 1\n[nodes]\nx = \"2 * x\"\n", "line 4, field 'nodes.x'", "used twice"),
    "outside the whitelist": ("[inputs]\nx = 1\n[nodes]\na = \"__import__('os').system('true')\"\n",
                              "line 4, field 'nodes.a'", "is not allowed"),
    "division by zero": ("[inputs]\nx = 1\ny = 1\n[nodes]\nd = \"x - y\"\nq = \"x / d\"\n", "line 6, field 'nodes.q'",
                         "division by zero"),
    "slope not finite": ("[inputs]\nx = 0\n[nodes]\na = \"sqrt(x)\"\n", "line 4, field 'nodes.a'", "derivative by x"),
    "not real": ("[inputs]\nx = 1\n[nodes]\na = \"log(x - 2)\"\n", "line 4, field 'nodes.a'", "not a real number"),
    "steps": ("[parameters]\nw = 1\n[nodes]\nf = \"w^2\"\n[update]\nlearning_rate = 0.1\nsteps = 10001\n",
              "line 7, field 'update.steps'", "10,000"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_graph_files_are_refused_with_file_line_and_field(case, tmp_path):
    text, where, message = BAD[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "symprop", "example", "show", str(path)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and where in lines[0] and message in lines[0], lines


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_diverging_updates_end_the_table_naming_the_step(dtype):
    """The table stops at the last finite step and says which value diverged where (the
    transcript and the checker's other claims stay usable)."""
    text = f'dtype = "{dtype}"\n[parameters]\nw = 1\n[nodes]\nf = "w^4"\n[update]\nlearning_rate = 10\nsteps = 50\n'
    t = graph_transcript(_graph(text))
    assert re.match(r"\w+ is not a finite number after step (\d+)", t.diverged), t.diverged
    last = int(re.search(r"the table ends at step (\d+)", t.diverged).group(1))
    assert 1 <= last < 50 and f"step{last}:w" in t.quantities and f"step{last + 1}:w" not in t.quantities
    assert "the updates diverge" in t.render("text")


def test_multi_step_descent_and_full_batch_mean():
    text = """
output = "f"
[parameters]
w = 0.5
[nodes]
f = "(w - 3)^2"
[update]
learning_rate = 0.25
steps = 7
table = ["w", "f", "df/dw"]
"""
    t = graph_transcript(_graph(text))
    w = 0.5
    for k in range(1, 8):  # w <- w - 0.25 * 2 (w - 3): halves the distance to 3
        assert t.float_value(f"step{k}:df/dw") == pytest.approx(2 * (w - 3))
        w = w - 0.25 * 2 * (w - 3)
        assert t.float_value(f"step{k}:w") == pytest.approx(w, rel=1e-15)
    batch = FULL_BATCH
    t = graph_transcript(_graph(batch))
    xs, ys = np.array([1.0, 2, 3]), np.array([2.0, 4, 7])
    mean_loss = lambda w: float(np.mean((w * xs - ys) ** 2))  # noqa: E731
    assert t.float_value("L") == pytest.approx(mean_loss(1.0))
    assert t.float_value("dL/dw") == pytest.approx((mean_loss(1 + H) - mean_loss(1 - H)) / (2 * H), rel=1e-7)
    w = 1.0
    for k in range(1, 4):
        w -= 0.01 * (mean_loss(w + H) - mean_loss(w - H)) / (2 * H)
        assert t.float_value(f"epoch{k}:w") == pytest.approx(w, rel=1e-8)


FULL_BATCH = """
output = "y_hat"
loss = "l"
[parameters]
w = 1
[nodes]
y_hat = "w * x"
l = "(y_hat - y)^2"
[data]
x = [1, 2, 3]
y = [2, 4, 7]
mode = "full-batch"
[update]
learning_rate = 0.01
epochs = 3
"""


def test_float32_graph_file_reproduces_a_float32_training_log_line_for_line():
    """The PyTorch tutorial's loop, in numpy float32: forward, loss, backward, update per sample."""
    t = EXAMPLES["linear-model-float32"].build()
    w, lr = np.float32(1.0), np.float32(0.01)
    log, table = [], []
    for epoch in range(1, 101):
        for x, y in zip(np.float32([1, 2, 3]), np.float32([2, 4, 6])):
            y_hat = w * x
            loss = (y_hat - y) ** 2
            grad = np.float32(2) * (y_hat - y) * x
            w = w - lr * grad
        log.append(f"epoch {epoch}: w = {w!r}, loss = {loss!r}")
        table.append(f"epoch {epoch}: w = {np.float32(float(t.value(f'epoch{epoch}:w')))!r}, "
                     f"loss = {np.float32(float(t.value(f'epoch{epoch}:l')))!r}")
        assert t.value(f"epoch{epoch}:w") == sp.Rational(float(w))  # exactly that float32
    assert table == log
    assert len(set(log)) > 10  # the log changes over the run: a real comparison


def test_checker_finds_a_wrong_gate_gradient_and_marks_inherited_claims():
    claims = claims_from_arguments(["df/dden=-0.7916", "df/dxpy=1.483", "df/dx_via_xpy=1.483", "df/dx=1.96"])
    report = check("staged-sigmoid-ratio", claims)
    codes = {v.key: v.code for v in report.verdicts}
    assert report.first_wrong == "df/dxpy"
    assert codes["df/dden"] == "right" and codes["df/dxpy"] == "wrong_value"
    assert codes["df/dx_via_xpy"] == "carried_forward" and codes["df/dx"] == "carried_forward"


def test_checker_on_a_graph_file_and_its_update_convention(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text((ROOT / "symbolic" / "graphs" / "nested-neurons.toml").read_text())
    t = EXAMPLES["nested-neurons"].build()
    descent = t.value("a") - t.value("h") * t.value("df/da")  # a step the wrong way
    report = check(str(path), claims_from_arguments([f"a_new={sp.N(descent, 6)}", "df/da=7"]))
    verdict = {v.key: v for v in report.verdicts}
    assert verdict["df/da"].right and verdict["a_new"].code == "convention_gradient_ascent"


def test_derive_formula_with_several_variables():
    result = subprocess.run([sys.executable, "-m", "symprop", "derive", "--formula", "(x + y)*z / w", "--format", "json"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    import json
    data = json.loads(result.stdout)
    x, y, z, w = sp.symbols("x y z w", real=True)
    f = (x + y) * z / w
    assert data["variables"] == ["x", "y", "z", "w"]
    for v in (x, y, z, w):
        got = sp.sympify(data["partials"][f"d/d{v}"]["text"], locals={"x": x, "y": y, "z": z, "w": w})
        assert sp.simplify(got - sp.diff(f, v)) == 0


@pytest.mark.parametrize("fmt", ["text", "md", "html"])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_format_and_language_prints_the_gradients(fmt, lang):
    t = EXAMPLES["staged-sigmoid-ratio"].build()
    text = t.render(fmt, 4, lang)
    assert "2.06" in text  # df/dx = 2.0596 to 4 digits
    assert ("反向传播" in text) == (lang == "zh")


def test_json_keys_for_every_value_and_gradient():
    import json
    graph = builtin_graph("staged-sigmoid-ratio")
    keys = json.loads(EXAMPLES["staged-sigmoid-ratio"].build().render("json"))["quantities"]
    for name in [*graph.given(), *graph.nodes]:
        assert name in keys and (name == "f" or f"df/d{name}" in keys), name
    for node in graph.nodes:
        for arg in graph.graph.node(node).inputs:
            assert any(k.startswith(f"d{node}/d{arg}") for k in keys), (node, arg)
    steps = json.loads(EXAMPLES["linear-model"].build().render("json"))["quantities"]
    assert {"epoch1:w", "epoch1:l", "epoch100:w", "w_new", "dl/dw", "dl/dy_hat"} <= set(steps)


def test_checker_on_a_full_batch_graph_knows_the_summed_loss(tmp_path):
    path = tmp_path / "batch.toml"
    path.write_text(FULL_BATCH)
    t = graph_transcript(_graph(FULL_BATCH))
    summed = 3 * t.value("dL/dw")  # the mean's gradient without its 1/N, N = 3
    report = check(str(path), claims_from_arguments([f"dL/dw={sp.N(summed, 6)}", f"L={sp.N(t.value('L'), 6)}"]))
    verdict = {v.key: v for v in report.verdicts}
    assert verdict["L"].right
    assert verdict["dL/dw"].code == "convention_batch_sum" or "convention_batch_sum" in \
        [f.code for f in verdict["dL/dw"].findings]


def test_notes_sit_beside_their_lines_in_both_languages_and_a_stray_key_is_refused():
    t = EXAMPLES["nested-neurons"].build()
    assert "df/dd = c = 7   (mul node: the other input)" in t.render("text")
    assert "(乘法节点：另一个输入)" in t.render("text", 4, "zh")
    assert "(multiplication node)" in t.render("md")
    text = '[inputs]\nx = 1\n[nodes]\ny = "2*x"\n[notes]\n"dq/dx" = "a remark"\n'
    with pytest.raises(SympropError, match=r"g.toml, line 6, field 'notes.dq/dx': no line of the transcript shows 'dq/dx'"):
        graph_transcript(parse_graph(text, "g.toml"))
    with pytest.raises(SympropError, match=r"g.toml, line 6, field 'notes.y': expected a remark on one line"):
        parse_graph('[inputs]\nx = 1\n[nodes]\ny = "2*x"\n[notes]\ny = 3\n', "g.toml")


@pytest.mark.parametrize("output, gradient, expected", [
    ("J", "dJ/dw", 24),  # a = 2w feeds J = a^2 and a side node; J's gradient has one path
    ("side", "dside/dw", 2),  # the side node as the output: J is the node off the path
])
def test_a_node_that_also_feeds_a_side_node(tmp_path, output, gradient, expected):
    """A value with a consumer off the objective's path: the transcript, the checker and the
    kernel all take the gradient along the paths that reach the objective."""
    from symprop.codegen.graph_kernels import load_graph_kernels
    path = tmp_path / "side.toml"
    path.write_text(f'output = "{output}"\n[inputs]\nw = 3\n[nodes]\na = "2*w"\nJ = "a^2"\nside = "a + 1"\n')
    t = graph_transcript(parse_graph(path.read_text(), str(path)))
    assert t.value(gradient) == expected
    report = check(str(path), claims_from_arguments([f"{gradient}={expected}", f"{gradient[:-1]}a={expected // 2}"]))
    assert [v.code for v in report.verdicts] == ["right", "right"]
    kernel = load_graph_kernels(path)
    assert float(kernel.value_and_grad()[-1]) == expected


@pytest.mark.parametrize("fast", [False, True])
def test_a_table_of_nodes_named_like_the_step_functions_own_names(monkeypatch, fast):
    """A node may be called mpf, fabs or exp_ (names the 60-digit or float64 step function's
    namespace uses): the table's numbers are those of the same graph with other names."""
    from symprop.symbolic import graphfile_transcript as gt
    if fast:
        monkeypatch.setattr(gt, "EXACT_TABLE_WORK", 0)
    text = ('[parameters]\nw = 0.5\n[inputs]\nx = 3\n[nodes]\nmpf = "w * x"\nfabs = "(mpf - 1)^2 + sqrt(w)"\n'
            '[update]\nlearning_rate = 0.1\nsteps = 3\n')
    renamed = text.replace("mpf", "p").replace("fabs", "q")
    clash, plain = gt.run(parse_graph(text, "g.toml")), gt.run(parse_graph(renamed, "h.toml"))
    assert [float(r["w"]) for r in clash] == [float(r["w"]) for r in plain] != [0.5] * 3
    assert [float(r["dfabs/dmpf"]) for r in clash] == [float(r["dq/dp"]) for r in plain]
