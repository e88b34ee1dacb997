"""Kernels from graph files (codegen/graph_kernels.py): for every shipped graph file, the
generated numba kernel's values against the transcript, its gradients against central
differences of its own forward pass and against the transcript, the training step against the
transcript's update; the command, the header and hash, the cache, refused files."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from symprop.codegen import files
from symprop.codegen.graph_kernels import graph_module_text, load_graph_kernels
from symprop.symbolic.errors import SympropError
from symprop.symbolic.examples import EXAMPLES
from symprop.symbolic.graphfile import load_graph
from symprop.symbolic.graphfile_transcript import graph_transcript

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "symbolic" / "graphs"
SHIPPED = sorted(p.stem for p in GRAPHS.glob("*.toml"))
H = 1e-6


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Every module of this file is generated into one fresh cache."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYMPROP_CACHE", str(folder))
        yield folder


def _kernels(name):
    return load_graph_kernels(GRAPHS / f"{name}.toml")


def _transcript(name):
    return EXAMPLES[name].build()


def test_every_shipped_graph_file_is_tested():
    assert len(SHIPPED) >= 11 and "max-circuit" in SHIPPED and "linear-model-float32" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_values_and_gradients_against_the_transcript_and_central_differences(cache, name):
    graph, t, k = load_graph(GRAPHS / f"{name}.toml"), _transcript(name), _kernels(name)
    given = {a: float(v) for a, v in graph.given().items()}
    root = "L" if graph.dout is not None else graph.objective
    scale = float(graph.dout) if graph.dout is not None else 1.0
    if graph.dtype == "float32":  # the transcript is in float32 too: compare the float32 kernel
        values = k.forward()
        assert all(isinstance(v, np.float32) for v in values)
        for node, value in zip(k.NODES, values):
            assert value == np.float32(t.float_value(node)), node
        given64 = dict(zip(k.INPUTS + k.PARAMETERS, k.value_and_grad(dtype=np.float32)[1:]))
        for a, g in given64.items():
            assert g == np.float32(t.float_value(f"d{root}/d{a}")), a
    dtype = np.float64
    values = k.forward(**given, dtype=dtype)
    if graph.dtype == "float64":
        for node, value in zip(k.NODES, values):
            assert value == pytest.approx(t.float_value(node), rel=1e-12, abs=1e-300), node
    value, *grads = k.value_and_grad(**given, dtype=dtype)
    assert value == values[list(k.NODES).index(graph.objective)]
    assert len(grads) == len(given) and k.GRADIENTS == tuple(f"d{root}/d{a}" for a in given)
    assert value == pytest.approx(t.float_value(graph.objective), rel=1e-12 if graph.dtype == "float64" else 1e-6)

    def objective(**changed):
        return k.forward(**{**given, **changed}, dtype=dtype)[list(k.NODES).index(graph.objective)]

    for a, grad in zip(given, grads):
        step = H * max(1.0, abs(given[a]))
        numeric = scale * (objective(**{a: given[a] + step}) - objective(**{a: given[a] - step})) / (2 * step)
        assert grad == pytest.approx(numeric, rel=1e-6, abs=1e-8), a
        key = f"d{root}/d{a}"
        if key in t.quantities:  # the transcript leaves out names that do not reach the objective
            assert grad == pytest.approx(t.float_value(key), rel=1e-12 if graph.dtype == "float64" else 1e-6), key
        else:
            assert grad == 0.0, a


@pytest.mark.parametrize("name", [n for n in SHIPPED if load_graph(GRAPHS / f"{n}.toml").update is not None])
def test_training_step_reproduces_the_transcripts_update(cache, name):
    graph, t, k = load_graph(GRAPHS / f"{name}.toml"), _transcript(name), _kernels(name)
    first = {c: float(v[0]) for c, v in graph.data.columns.items()} if graph.data is not None else {}
    params = [float(v) for v in graph.parameters.values()]
    inputs = [first.get(i, float(v)) for i, v in graph.inputs.items()]
    *new, value = k.sgd_step(*params, *inputs)  # in the file's dtype, as its transcript
    assert k.sgd_step() == (*new, value)  # every argument defaults to the file's value
    assert k.RULE == ("ascent" if graph.update.ascent else "descent")
    for p, after in zip(graph.parameters, new):
        if graph.dtype == "float32":
            assert after == np.float32(t.float_value(f"{p}_new")), p
        else:
            assert after == pytest.approx(t.float_value(f"{p}_new"), rel=1e-12), p
    assert value == pytest.approx(t.float_value(graph.objective), rel=1e-12)
    *trained, _ = k.train()  # the file's steps (or epochs over its data), in its dtype
    last = graph.update.steps
    unit = "epoch" if graph.data is not None else "step"
    if last == 1 and graph.data is None:  # no table: train is the one step
        assert trained == new
        return
    for p, after in zip(graph.parameters, trained):
        if p in graph.update.table:
            expected = t.float_value(f"{unit}{last}:{p}")
            if graph.dtype == "float32":  # the PyTorch-style float32 loop, value for value
                assert after == np.float32(expected), p
            else:
                assert after == pytest.approx(expected, rel=1e-10), p


def test_a_max_tie_takes_the_stated_convention_exactly(cache, tmp_path):
    """At max(z, w) with z = w both partials are the derivative from the left: 0 for max, 1 for min."""
    path = tmp_path / "tie.toml"
    path.write_text('[inputs]\nz = 2\nw = 2\n[nodes]\nm = "max(z, w)"\nn = "min(z, w)"\nf = "3 * m + 5 * n"\n')
    f, dz, dw = load_graph_kernels(path).value_and_grad()
    assert (f, dz, dw) == (16.0, 5.0, 5.0)  # 3 * 0 + 5 * 1 for each
    t = graph_transcript(load_graph(path))
    assert (t.float_value("df/dz"), t.float_value("df/dw")) == (dz, dw)


def test_full_batch_training_is_the_mean_gradient(cache, tmp_path):
    path = tmp_path / "batch.toml"
    path.write_text('output = "y_hat"\nloss = "l"\n[parameters]\nw = 1\n[nodes]\ny_hat = "w * x"\n'
                    'l = "(y_hat - y)^2"\n[data]\nx = [1, 2, 3]\ny = [2, 4, 7]\nmode = "full-batch"\n'
                    '[update]\nlearning_rate = 0.01\nepochs = 3\n')
    k = load_graph_kernels(path)
    xs, ys = np.array([1.0, 2, 3]), np.array([2.0, 4, 7])
    w = 1.0
    for _ in range(3):
        mean_loss = float(np.mean((w * xs - ys) ** 2))
        w -= 0.01 * float(np.mean(2 * (w * xs - ys) * xs))
    w_trained, loss = k.train()
    assert w_trained == pytest.approx(w, rel=1e-14) and loss == pytest.approx(mean_loss, rel=1e-14)


def test_module_is_cached_and_regenerated_when_the_file_changes(cache, tmp_path):
    path = tmp_path / "circuit.toml"
    path.write_text('[inputs]\nx = -2\ny = 5\nz = -4\n[nodes]\nq = "x + y"\nf = "q * z"\n')
    first = load_graph_kernels(path)
    generated = Path(first.__file__)
    assert generated.parent == cache / "graphs" / files.generator_fingerprint()
    stamp = generated.stat().st_mtime_ns
    assert load_graph_kernels(path) is first and generated.stat().st_mtime_ns == stamp  # reused
    assert first.value_and_grad() == (-12.0, -4.0, -4.0, 3.0)
    path.write_text(path.read_text().replace("z = -4", "z = 4"))
    second = load_graph_kernels(path)
    assert Path(second.__file__) != generated and second.value_and_grad() == (12.0, 4.0, 4.0, 3.0)
    head = generated.read_text()
    assert files.header_field(head, "Input hash") != files.header_field(Path(second.__file__).read_text(),
                                                                         "Input hash")


def test_generated_module_header_comments_and_imports(cache):
    text = graph_module_text((GRAPHS / "staged-sigmoid-ratio.toml").read_text(), "staged-sigmoid-ratio.toml")
    head = text.split("\n\n")[0]
    assert "GENERATED FILE - do not edit. Written by symprop's codegen/graph_kernels.py" in head
    assert "Regenerate with: symprop generate --graph staged-sigmoid-ratio.toml" in head
    assert files.recorded_body_hash(text) == files.body_hash(files.generated_body(text))
    imports = {alias.name.split(".")[0] for node in ast.walk(ast.parse(text))
               if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    assert imports <= {"numpy", "numba", "math", "hashlib", "itertools", "warnings"}, imports
    kernel = text.split("def value_and_grad_kernel")[1].split("\n\n\n")[0]
    backward = kernel.split("# ---- backward")[1].splitlines()[1:]
    gradient_lines = [line for line in backward if line.strip().startswith("d")]
    assert len(gradient_lines) >= 12
    assert all("# df/d" in line and "/d" in line.split("; ")[-1] for line in gradient_lines), gradient_lines
    # x feeds num, sigx and xpy: the sum of three paths
    assert sum(line.strip().startswith("dx ") for line in backward) == 3
    assert sum(line.strip().startswith("dx += ") for line in backward) == 2
    assert text == graph_module_text((GRAPHS / "staged-sigmoid-ratio.toml").read_text(), "staged-sigmoid-ratio.toml")


def test_graph_names_that_clash_with_the_kernels_own_are_renamed(cache, tmp_path):
    path = tmp_path / "clash.toml"
    path.write_text('[inputs]\nreal = 2\nt0 = 3\nlr = 5\n[nodes]\nn = "real * t0"\ndreal = "n + lr"\n')
    assert load_graph_kernels(path).value_and_grad() == (11.0, 3.0, 2.0, 1.0)


def _symprop(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "symprop", *args], capture_output=True, text=True, cwd=cwd)


def test_generate_graph_prints_writes_and_regenerates_byte_for_byte(tmp_path):
    graph = "symbolic/graphs/linear-model.toml"
    printed = _symprop("generate", "--graph", graph)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("# Value-and-gradient kernel of the graph file linear-model.toml")
    assert "def sgd_step(" in printed.stdout and "def train(" in printed.stdout
    out = tmp_path / "kernels.py"
    wrote = _symprop("generate", "--graph", graph, "-o", str(out))
    assert wrote.returncode == 0 and wrote.stderr.strip() == f"wrote {out}"
    # the same module, but the header's regenerate line names the -o that was used
    assert f"# Regenerate with: symprop generate --graph {graph} -o {out}\n" in out.read_text()
    assert "# Regenerate with: symprop generate --graph symbolic/graphs/linear-model.toml\n" in printed.stdout
    assert (files.generated_body(out.read_text()) == files.generated_body(printed.stdout))
    again = _symprop("generate", "--graph", graph, "-o", str(out))
    assert again.stderr.strip() == f"unchanged {out}" and files.generated_body(out.read_text()) == files.generated_body(printed.stdout)


def test_a_bad_graph_file_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[inputs]\nx = 1\n[nodes]\na = "b + x"\nb = "a * 2"\n')
    result = _symprop("generate", "--graph", str(bad))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "bad.toml, line 4, field 'nodes.a'" in result.stderr
    assert "cycle" in result.stderr
    missing = _symprop("generate", "--graph", str(tmp_path / "nowhere.toml"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_load_graph_kernels_refuses_a_bad_file_naming_it(tmp_path):
    bad = tmp_path / "zero.toml"
    bad.write_text('[inputs]\nx = 1\nd = 0\n[nodes]\nq = "x / d"\n')
    with pytest.raises(SympropError, match=r"zero.toml, line 5, field 'nodes.q'.*division by zero"):
        load_graph_kernels(bad)


@pytest.mark.parametrize("y", [-1e4, 1e4])
def test_a_sigmoid_node_never_overflows(cache, y):
    """sigmoid(y) in a graph file parses as 1/(1 + exp(-y)); the kernel prints it as the stable
    helper (exp only of -|y|), so its value and gradients stay finite far out, in float32 too."""
    import math

    kernels = _kernels("staged-sigmoid-ratio")
    source = Path(kernels.__file__).read_text()
    assert "_sigmoid" in source and "np.exp(-y)" not in source and "_exp(-y)" not in source
    for dtype in (np.float64, np.float32):
        value, *grads = kernels.value_and_grad(x=3.0, y=y, dtype=dtype)
        assert math.isfinite(value) and all(math.isfinite(g) for g in grads), (dtype, value, grads)
    sigmoid = 1 / (1 + math.exp(-y)) if y > 0 else math.exp(y) / (1 + math.exp(y))
    expected = (3 + sigmoid) / (1 / (1 + math.exp(-3)) + (3 + y) ** 2)
    assert kernels.value_and_grad(x=3.0, y=y, dtype=np.float64)[0] == pytest.approx(expected, rel=1e-12)


def test_the_kernel_the_transcript_and_its_table_read_one_lowering(monkeypatch):
    """A graph file's node is lowered once (Expression.lower): a change there reaches the
    kernel's text, the transcript's local derivative and gradient, and the table's gradient."""
    from dataclasses import replace

    from symprop.symbolic import graphfile_transcript as gt
    from symprop.symbolic.graphfile import parse_graph
    from symprop.symbolic.ops.expression import Expression

    text = '[parameters]\nx = 3\n[inputs]\ny = 4\n[nodes]\nf = "x * y"\n[update]\nlearning_rate = 0.5\nsteps = 2\n'
    before = graph_module_text(text, "g.toml")
    assert "dx = df*y" in before
    lower = Expression.lower

    def doubled(self, lowering, use):  # every local derivative of the node twice as large
        lower(self, lowering, use)
        comment, chain = lowering.backward[:2]
        lowering.backward[1] = replace(chain, pairs=tuple((t, 2 * rule) for t, rule in chain.pairs))

    monkeypatch.setattr(Expression, "lower", doubled)
    after = graph_module_text(text, "g.toml")
    assert "real(2)*df" in after and "dx = df*y" not in after
    t = graph_transcript(parse_graph(text, "g.toml"))
    assert (t.value("df/dx"), t.value("x_new")) == (8, 3 - 4)  # dx = 2 y; x - 0.5 * 8
    assert [float(record["df/dx"]) for record in gt.run(parse_graph(text, "g.toml"))] == [8.0, 8.0]
