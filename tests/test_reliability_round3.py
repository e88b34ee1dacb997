"""Hostile and careless inputs, third round: work that explodes ends quickly with a refusal
naming the limit; a file is never lost or replaced by one of another kind; ELU written as a
formula has its true derivative; an edited graph module is caught; the kernel API, the
training options and the file readers answer in one line naming what is wrong."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symprop.cli import main
from symprop.codegen import files
from symprop.codegen.graph_kernels import load_graph_kernels
from symprop.symbolic.errors import SympropError
from symprop.symbolic.graphfile import parse_graph

ROOT = Path(__file__).resolve().parent.parent
MUL_NODE = ROOT / "symbolic" / "graphs" / "mul-node.toml"
DEADLINE_SECONDS = 10
FUZZ = settings(max_examples=int(os.environ.get("SYMPROP_FUZZ_EXAMPLES", "40")),
                deadline=timedelta(seconds=DEADLINE_SECONDS),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def graph_text(nodes: dict, inputs: dict, output: str | None = None, extra: str = "") -> str:
    lines = ['title = "t"', f'output = "{output or list(nodes)[-1]}"', "[inputs]"]
    lines += [f"{k} = {v}" for k, v in inputs.items()]
    lines += ["[nodes]"] + [f'{k} = "{v}"' for k, v in nodes.items()]
    return "\n".join(lines) + "\n" + extra


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


# ------------------------------------------------------------------------------ hangs
def _hang_cases(tmp_path) -> dict:
    """name -> (argv, what stderr must say); each must end within DEADLINE_SECONDS."""
    squares = {"n0": "w * x", **{f"n{i}": f"n{i - 1}^2" for i in range(1, 41)}}
    sigmoids = {"n0": "w * x", **{f"n{i}": f"sigmoid(n{i - 1})" for i in range(1, 200)}}
    files_ = {
        "tower": graph_text({"f": "w * x^x^x^x^x"}, {"x": 3, "w": 1}),
        "exp-tower": graph_text({"f": "w * exp(exp(exp(exp(x))))"}, {"x": 3, "w": 1}),
        "squares": graph_text(squares, {"x": 3, "w": 3}),
        "sigmoids": graph_text(sigmoids, {"x": 3, "w": 3}),
    }
    cases = {}
    for name, text in files_.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        cases[name] = (["example", "show", str(path), "--format", "json"], "too large to compute exactly")
    cases["sigmoids"] = (cases["sigmoids"][0], None)  # deep but small: a result
    cases["left-nested power"] = (["derive", "--formula", "((((2**64)**64)**64)**64)**64"], "too large to compute")
    cases["exp of a constant tower"] = (["derive", "--formula", "x * exp(exp(exp(exp(9))))"], "too large to compute")
    values = tmp_path / "values.toml"
    values.write_text("X = [[400, 1]]\nT = [[0.03, 0.05]]\nW1 = [[1, 0.2], [0.3, 0.4]]\nb1 = [0.35, 0.35]\n"
                      "W2 = [[0.5, 0.6], [0.7, 0.8]]\nb2 = [0.1, 0.1]\nlearning_rate = 0.5\n")
    cases["exp tower in a values transcript"] = (
        ["example", "show", "--net", "affine(2,2) formula(exp(exp(exp(x)))) affine(2,2) squared-error",
         "--values", str(values)], "too large to compute")
    spec = "affine(2,2) " + "relu affine(2,2) " * 249 + "softmax-cross-entropy"
    cases["500-layer spec"] = (["generate", "--net", spec], "the limit is 64")
    # legitimate scale: a result (or, for claims with unknown names, one line per claim)
    chain = {"n1": "w * x + b", **{f"n{i}": (f"tanh(n{i - 1}) + b" if i % 2 else f"w * n{i - 1}")
                                   for i in range(2, 150)}, "l": "(n149 - y)^2"}
    long_run = tmp_path / "long-run.toml"
    long_run.write_text(graph_text(chain, {"x": 1, "y": 2}).replace("[inputs]", "[parameters]\nw = 0.5\nb = 0.1\n[inputs]")
                        + '[update]\nlearning_rate = 0.01\nsteps = 10000\ntable = ["w", "l"]\ntable_every = 1000\n')
    cases["150 nodes x 10,000 steps"] = (["example", "show", str(long_run), "--format", "json"], None)
    claims = tmp_path / "claims.toml"
    claims.write_text('example = "two-layer-sigmoid"\n[claims]\nh1 = "0.694"\n'
                      + "".join(f'claim_{i} = "0.5"\n' for i in range(1, 100_000)))
    cases["10^5 claims"] = (["check", str(claims)], ("no value named", 99_999))
    # a 10^5-row net file: the first rows exact, the sums over the batch in float64; the claims
    # about its written rows and sums are checked against a NumPy computation of the same net
    big = big_net_file(tmp_path, "big.toml", hidden=False)
    hidden = big_net_file(tmp_path, "big-hidden.toml", hidden=True)
    cases["10^5-row net file"] = (["example", "show", str(big), "--format", "json"], None)
    cases["10^5-row net file, a hidden layer"] = (["example", "show", str(hidden)], None)
    big_claims = tmp_path / "big-claims.toml"
    big_claims.write_text('network = "big.toml"\n[claims]\n'
                          + "".join(f'"{k}" = "{v:.6g}"\n' for k, v in big_net_numbers().items()))
    cases["claims about a 10^5-row net file"] = (["check", str(big_claims)], None)
    return cases


BIG_ROWS = 100_000


def big_net_inputs():
    n = np.arange(BIG_ROWS)
    x = np.stack([(n * 37 % 200 - 100) / 50, (n * 91 % 200 - 100) / 40], axis=1)
    return x, np.eye(2, dtype=int)[n * 7 % 3 % 2]


def big_net_file(tmp_path, name: str, hidden: bool) -> Path:
    """affine(2,2) softmax-cross-entropy (or with a sigmoid hidden layer of 3) on 10^5 rows."""
    x, t = big_net_inputs()
    params = ('W1 = [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]]\nb1 = [0.01, -0.02, 0.03]\n'
              'W2 = [[0.2, -0.1], [0.3, 0.1], [-0.5, 0.4]]\nb2 = [0, 0.1]\n' if hidden else
              "W1 = [[0.1, -0.2], [0.4, 0.5]]\nb1 = [0.01, -0.02]\n")
    spec = "affine(2,3) sigmoid affine(3,2) softmax-cross-entropy" if hidden else "affine(2,2) softmax-cross-entropy"
    rows = lambda a: "[" + ", ".join(f"[{u!r}, {v!r}]" for u, v in a.tolist()) + "]"  # noqa: E731
    path = tmp_path / name
    path.write_text(f'title = "a large batch"\nnet = "{spec}"\n[values]\nX = {rows(x)}\nT = {rows(t)}\n{params}'
                    "learning_rate = 0.1\n")
    return path


def big_net_numbers() -> dict:
    """Row 0's z1[0,1], the loss, a gradient and an update of the affine(2,2) file, by NumPy."""
    x, t = big_net_inputs()
    w, b = np.array([[0.1, -0.2], [0.4, 0.5]]), np.array([0.01, -0.02])
    z = x @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = (p - t) / BIG_ROWS
    loss = float(np.mean(np.log(np.exp(z).sum(axis=1)) - (z * t).sum(axis=1)))
    dw = x.T @ dz
    return {"z1[0,1]": z[0, 1], "L": loss, "dL/dW1[1,0]": dw[1, 0], "dL/db1[1]": dz[:, 1].sum(),
            "W1_new[1,0]": w[1, 0] - 0.1 * dw[1, 0]}


def test_hang_cases_end_within_the_deadline_each_in_a_subprocess(tmp_path):
    """Every case runs in one child process (one interpreter start for all); the child times
    each case (processor time) and the whole child is killed if any case hangs."""
    cases = _hang_cases(tmp_path)
    child = textwrap.dedent("""
        import contextlib, io, json, sys, time
        from symprop.cli import main
        for name, argv in json.loads(sys.argv[1]).items():
            err, out = io.StringIO(), io.StringIO()
            start = time.process_time()  # the work itself, whatever else the machine runs
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                status = main(argv)
            print(json.dumps([name, status, time.process_time() - start, err.getvalue()]), flush=True)
    """)
    argv = {name: case[0] for name, case in cases.items()}
    run = subprocess.run([sys.executable, "-c", child, json.dumps(argv)], capture_output=True, text=True,
                         timeout=3 * DEADLINE_SECONDS * len(cases), env={**os.environ, "PYTHONHASHSEED": "0"})
    results = {name: (status, seconds, err) for name, status, seconds, err in map(json.loads, run.stdout.splitlines())}
    assert set(results) == set(cases), run.stderr
    for name, (_, expected) in cases.items():
        status, seconds, err = results[name]
        assert seconds < DEADLINE_SECONDS, f"{name} took {seconds:.1f} s"
        lines = err.strip().splitlines()
        if expected is None:
            assert status == 0, f"{name}: {err}"
        elif isinstance(expected, tuple):
            assert status == 2 and len(lines) == expected[1] and all(expected[0] in line for line in lines), name
        else:
            assert status == 2 and expected in err and len(lines) == 1, f"{name}: {err}"


def test_exact_sizes_are_bounded_by_their_growth_not_by_the_formula_depth():
    """Horner's nesting grows a fraction by a few bits per level and is computed; squaring a
    fraction over and over doubles it and is refused before SymPy starts."""
    import sympy as sp

    from symprop.symbolic.magnitude import TooLarge, check_bounded

    x = sp.Symbol("x", real=True)
    horner = logistic = x
    for _ in range(30):
        horner, logistic = (horner + 1) * x, 4 * logistic * (1 - logistic)
    check_bounded(horner, {x: sp.Rational(1, 3)})
    with pytest.raises(TooLarge, match="exact fraction of about .* bits"):
        check_bounded(logistic, {x: sp.Rational(1, 3)})


def test_a_big_number_within_the_limits_is_still_computed_exactly():
    graph = parse_graph(graph_text({"f": "x^x^x"}, {"x": 3}))  # 3^27 = 7625597484987
    from symprop.symbolic.graphfile_transcript import graph_transcript

    assert graph_transcript(graph).value("f") == 3**27


# ------------------------------------------------------------------------------ scale
def test_a_long_run_is_computed_in_float64_and_agrees_with_60_digits(monkeypatch):
    """Beyond EXACT_TABLE_WORK node evaluations the table is float64 (one compiled step), and
    says so; its numbers agree with the 60-digit ones to float64's precision."""
    from symprop.symbolic import graphfile_transcript as gt

    graph = parse_graph((ROOT / "symbolic" / "graphs" / "quadratic-model.toml").read_text(), "q.toml")
    assert gt.arithmetic(graph) == "mpmath"
    exact = gt.run(graph)
    monkeypatch.setattr(gt, "EXACT_TABLE_WORK", 0)
    assert gt.arithmetic(graph) == "float64"
    fast = gt.run(graph)
    assert len(fast) == len(exact) == graph.update.steps
    for slow_record, fast_record in zip(exact, fast):
        assert slow_record.keys() == fast_record.keys()
        for key, value in slow_record.items():
            assert float(fast_record[key]) == pytest.approx(float(value), rel=1e-12, abs=1e-300), key
    text = gt.graph_transcript(graph).render("text")
    assert "the table is computed in float64" in text


def test_a_float64_run_that_overflows_ends_its_table_as_diverging(monkeypatch):
    from symprop.symbolic import graphfile_transcript as gt

    monkeypatch.setattr(gt, "EXACT_TABLE_WORK", 0)
    graph = parse_graph(graph_text({"f": "exp(w * x)"}, {"x": 1}, extra="[update]\nlearning_rate = -100\nsteps = 50\n")
                        .replace("[inputs]", "[parameters]\nw = 1\n[inputs]"), "up.toml")
    training = gt.Training(graph)
    records = list(training.records())  # the run ends where it diverges; the report says so
    assert len(records) < graph.update.steps
    assert "not a finite number" in training.diverged and "smaller learning_rate" in training.diverged


# ------------------------------------------------------------------------------ lost or damaged files
def test_draw_on_a_full_disk_keeps_the_old_picture(tmp_path, monkeypatch, capsys):
    picture = tmp_path / "old.svg"
    picture.write_text("<svg>old</svg>")

    def full_disk(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    assert main(["draw", str(MUL_NODE), "-o", str(picture)]) == 2
    assert "No space left" in one_line_error(capsys)
    assert picture.read_text() == "<svg>old</svg>"
    assert [p.name for p in tmp_path.iterdir()] == ["old.svg"]  # no temporary file left behind


def test_train_plot_on_a_full_disk_keeps_the_old_plot(tmp_path, monkeypatch, capsys):
    plot = tmp_path / "curves.png"
    plot.write_bytes(b"\x89PNG old")

    def full_disk(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    assert main(["train", "--data", "moons", "--epochs", "1", "--no-progress", "--plot", str(plot)]) == 2
    assert "--plot" in capsys.readouterr().err
    assert plot.read_bytes() == b"\x89PNG old"


@pytest.mark.parametrize("device", ["/dev/full", "/dev/null"])
def test_devices_are_refused_as_outputs_before_any_work(device, capsys):
    if not Path(device).exists():
        pytest.skip(f"no {device} here")
    for argv in (["train", "--save", device], ["train", "--history", device],
                 ["generate", "--net", "affine(2,1) mse", "-o", device]):
        assert main(argv) == 2
        err = one_line_error(capsys)
        assert "not a regular file" in err and device in err


def test_an_input_or_a_file_of_another_kind_is_not_replaced(tmp_path, capsys):
    graph = tmp_path / "g.toml"
    graph.write_bytes(MUL_NODE.read_bytes())
    original = graph.read_bytes()
    attempts = {
        "is also an input": ["generate", "--graph", str(graph), "-o", str(graph)],
        "not a weights file": ["train", "--data", "moons", "--save", str(graph)],
        "not a history file": ["train", "--data", "moons", "--history", str(graph)],
        "not a generated module": ["generate", "--net", "affine(2,1) mse", "-o", str(graph)],
        "also written by another option": ["train", "--save", str(tmp_path / "a.npz"),
                                           "--history", str(tmp_path / "a.npz")],
    }
    for expected, argv in attempts.items():
        assert main(argv) == 2, argv
        assert expected in one_line_error(capsys)
    assert graph.read_bytes() == original
    picture = tmp_path / "notes.svg"
    picture.write_text("my notes")
    assert main(["draw", str(graph), "-o", str(picture)]) == 2
    assert "not a picture" in one_line_error(capsys) and picture.read_text() == "my notes"
    assert main(["draw", str(graph), "-o", str(tmp_path / "new.svg")]) == 0
    assert main(["draw", str(graph), "-o", str(tmp_path / "new.svg")]) == 0  # a picture is replaced


def test_an_output_folder_that_cannot_be_entered_is_one_line(tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if str(path).startswith(str(locked)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    assert main(["generate", "--net", "affine(2,1) mse", "-o", str(locked / "net.py")]) == 2
    err = one_line_error(capsys)
    assert "--output" in err and "Permission denied" in err


# ------------------------------------------------------------------------------ ELU as a formula
ELU = "max(0, x) + min(0, exp(x) - 1)"


def test_elu_formula_kernel_has_the_true_derivative_at_tiny_and_huge_inputs(tmp_path):
    path = tmp_path / "elu.toml"
    path.write_text(graph_text({"f": ELU}, {"x": 1}))
    module = load_graph_kernels(path)
    for dtype in (np.float64, np.float32):
        for x in (1e-17, -1e-17, 0.0, 5e-8, 1e-9, 1.0, 88.0, 89.0, 709.0, 710.0, 1000.0):
            value, gradient = module.value_and_grad(x, dtype=dtype)
            assert gradient == 1, (dtype, x, gradient)
        for x in (-1.0, -3.0):  # the exp side: exp(x), against central differences in float64
            _, gradient = module.value_and_grad(x, dtype=np.float64)
            h = 1e-6
            central = (module.forward(x + h)[0] - module.forward(x - h)[0]) / (2 * h)
            assert gradient == pytest.approx(central, rel=1e-6)
            assert gradient == pytest.approx(np.exp(x), rel=1e-12)


def test_elu_formula_transcript_has_the_true_derivative_just_above_zero(tmp_path):
    from symprop.symbolic.graphfile_transcript import graph_transcript

    for x in ("1e-17", "800"):
        transcript = graph_transcript(parse_graph(graph_text({"f": ELU}, {"x": x})))
        assert transcript.value("df/dx") == 1


# ------------------------------------------------------------------------------ edited modules
def test_an_edited_graph_module_with_recomputed_hashes_is_regenerated(tmp_path, capsys):
    graph = tmp_path / "mul.toml"
    graph.write_bytes(MUL_NODE.read_bytes())
    module = load_graph_kernels(graph)
    good = module.value_and_grad()
    target = Path(module.__file__)
    text = target.read_text()
    edited_body = files.generated_body(text).replace("dx = ", "dx = 2*", 1)
    assert edited_body != files.generated_body(text)
    edited = text.replace(files.generated_body(text), edited_body).replace(
        f"# Body hash: {files.recorded_body_hash(text)}", f"# Body hash: {files.body_hash(edited_body)}")
    assert files.recorded_body_hash(edited) == files.body_hash(files.generated_body(edited))  # looks untouched
    target.write_text(edited)
    assert load_graph_kernels(graph).value_and_grad() == good
    assert target.read_text() == text

    written = tmp_path / "module.py"
    assert main(["generate", "--graph", str(graph), "-o", str(written)]) == 0
    assert main(["generate", "--check", "--graph", str(graph), "-o", str(written)]) == 0
    written.write_text(written.read_text().replace(files.generated_body(text), edited_body))
    capsys.readouterr()
    assert main(["generate", "--check", "--graph", str(graph), "-o", str(written)]) == 1
    assert "dx = 2*" in capsys.readouterr().out


# ------------------------------------------------------------------------------ kernel API
def test_kernel_api_refuses_0d_arrays_and_zero_classes():
    from symprop.generated import layers

    with pytest.raises(ValueError, match="relu_forward: x is a 0-d array"):
        layers.relu_forward(np.array(3.0))
    for name in ("softmax_cross_entropy_forward", "log_softmax_nll_forward", "multiclass_hinge_forward"):
        with pytest.raises(ValueError, match=f"{name}: z must be 2-D .* one class"):
            getattr(layers, name)(np.zeros((2, 0)), np.zeros((2, 0)))
    with pytest.raises(ValueError, match="softmax_cross_entropy_backward: y must be .* one class"):
        layers.softmax_cross_entropy_backward(np.zeros((2, 0)), np.zeros((2, 0)))


# ------------------------------------------------------------------------------ messages
def test_training_options_out_of_range_name_the_option_once(capsys):
    cases = {
        "--lr-decay 1e+300": ["--lr-decay", "1e300", "--epochs", "3"],
        "--lr 1e+300": ["--optimizer", "adam", "--lr", "1e300"],
        "--weight-decay 1e+308": ["--weight-decay", "1e308", "--lr", "0.1"],
    }
    for expected, options in cases.items():
        assert main(["train", "--data", "moons", "--no-progress", *options]) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1 and expected in err, err


def test_a_divergence_from_weight_decay_is_blamed_on_weight_decay(capsys):
    assert main(["train", "--data", "moons", "--epochs", "1", "--no-progress", "--dtype", "float64",
                 "--weight-decay", "1e308", "--lr", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--weight-decay" in err[0] and "--lr" not in err[0]


def test_avgpool_stride_zero_and_huge_integers_are_one_line(tmp_path, capsys):
    assert main(["generate", "--net", "input(1,4,4) avgpool(2,0) affine(4,2) softmax-cross-entropy"]) == 2
    assert "avgpool needs a stride of at least 1" in one_line_error(capsys)
    graph = tmp_path / "lr.toml"
    graph.write_text(graph_text({"f": "w * w"}, {}).replace("[inputs]", "[parameters]\nw = 1")
                     + f"[update]\nlearning_rate = {'1' * 5000}\nsteps = 2\n")
    assert main(["example", "show", str(graph)]) == 2
    assert "a number in the file is too long" in one_line_error(capsys)
    history = tmp_path / "h.json"
    history.write_text('{"format": ' + "1" * 5000 + "}")
    assert main(["train", "--data", "moons", "--plot", str(tmp_path / "p.png"), "--plot-with", str(history)]) == 2
    assert "not a training history" in one_line_error(capsys)


# ------------------------------------------------------------------------------ fuzz: hostile values
VALUES = st.sampled_from(["0", "1", "-1", "3", "0.5", "1e-300", "1e300", "-1e12", '"1/3"', '"2/7"', "1e12",
                          "709", "710", "-745", "0.1"])
FORMULAS = st.sampled_from(["{a}^{b}^{a}", "exp(exp(exp({a})))", "{a}^64", "({a}^64)^64", "sigmoid({a})*{b}",
                            "{a}/({b} - {b})", "log({a})", "sqrt({a} - {b})", "max(0, {a}) + min(0, exp({a}) - 1)",
                            "{a}*{a}*{a}*{a}*{a}*{a}", "tanh(exp({a}))", "softplus({a})^{b}", "expm1({a})/{a}",
                            "({a} + {b})^{a}", "erf({a})*exp({b}^2)", "{a}*(1 - {a})*4"])


@st.composite
def hostile_graph_files(draw):
    """Chains of formulas over the previous two values, with values from tiny to huge."""
    count = draw(st.integers(1, 8))
    nodes = {}
    names = ["x", "y"]
    for i in range(count):
        a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
        nodes[f"n{i}"] = draw(FORMULAS).format(a=a, b=b)
        names.append(f"n{i}")
    if not draw(st.booleans()):
        return graph_text(nodes, {"x": draw(VALUES), "y": draw(VALUES)})
    nodes["z"] = f"{names[-1]} * w"
    text = graph_text(nodes, {"x": draw(VALUES), "y": draw(VALUES)})
    text = text.replace("[inputs]", f"[parameters]\nw = {draw(VALUES)}\n[inputs]")
    return text + f"[update]\nlearning_rate = {draw(VALUES)}\nsteps = {draw(st.sampled_from([1, 3, 500]))}\n"


@FUZZ
@given(text=hostile_graph_files())
def test_hostile_graph_files_explain_or_refuse_quickly(tmp_path, text):
    from symprop.symbolic.graphfile_transcript import graph_file_transcript

    path = tmp_path / "hostile.toml"
    path.write_text(text)
    try:
        graph_file_transcript(path).render("json", 6, "en")
    except SympropError as exc:
        assert "hostile.toml" in str(exc) and "\n" not in str(exc)


@FUZZ
@given(rows=st.integers(1, 40), value=VALUES, net=st.sampled_from(["relu", "sigmoid", "tanh"]))
def test_hostile_net_files_explain_or_refuse_quickly(tmp_path, rows, value, net):
    from symprop.symbolic.netfile import load_net_file, net_file_transcript

    matrix = "[" + ", ".join(f"[{value}, 1]" for _ in range(rows)) + "]"
    path = tmp_path / "net.toml"
    path.write_text(f'title = "t"\nnet = "{net}"\n[values]\nX = {matrix}\ndout = {matrix}\n')
    try:
        net_file_transcript(load_net_file(path)).render("json", 6, "en")
    except SympropError as exc:
        assert "net.toml" in str(exc) and "\n" not in str(exc)


@FUZZ
@given(claims=st.lists(st.tuples(st.sampled_from(["h1", "E", "b11_new", "nope", "dE/da11", "E_new"]),
                                 st.sampled_from(["0.694", "1e300", "1" * 80, "-0", "nan", "inf", "1/3", "x"])),
                       min_size=1, max_size=12))
def test_hostile_claims_files_check_or_refuse_quickly(tmp_path, claims):
    from symprop.symbolic.checker import check, load_claims

    body = "\n".join(f'"{name}" = "{value}"' for name, value in dict(claims).items())
    path = tmp_path / "claims.toml"
    path.write_text(f'example = "two-layer-sigmoid"\n[claims]\n{body}\n')
    try:
        check(*load_claims(path))
    except SympropError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(values=st.lists(VALUES, min_size=9, max_size=9))
def test_hostile_values_files_explain_or_refuse_quickly(tmp_path, values):
    from symprop.symbolic.graph import parse_net
    from symprop.symbolic.graph_transcript import values_transcript

    v = iter(values)
    text = (f"X = [[{next(v)}, {next(v)}]]\nT = [[0.03, 0.05]]\nW1 = [[{next(v)}, 0.2], [0.3, {next(v)}]]\n"
            f"b1 = [{next(v)}, 0.35]\nW2 = [[{next(v)}, 0.6], [0.7, {next(v)}]]\nb2 = [{next(v)}, 0.1]\n"
            f"learning_rate = {next(v)}\n")
    path = tmp_path / "values.toml"
    path.write_text(text)
    try:
        values_transcript(parse_net("affine(2,2) sigmoid affine(2,2) squared-error"), path).render("json", 6, "en")
    except SympropError as exc:
        assert "values.toml" in str(exc) and "\n" not in str(exc)


def test_an_underflowed_power_is_refused_as_a_division_by_zero(tmp_path):
    """softplus(-745) underflows to an mpmath zero and ^(-745) divides by it: one line naming
    the node (was ZeroDivisionError from mpmath; found by the fuzz test)."""
    path = tmp_path / "under.toml"
    path.write_text('[inputs]\nx = -745\n[nodes]\nn0 = "softplus(x)^x"\n')
    with pytest.raises(SympropError, match=r"field 'nodes.n0': 'softplus\(x\)\^x' is a division by zero"):
        parse_graph(path.read_text(), str(path))
