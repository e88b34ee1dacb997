"""Smoke tests of the benchmark: it runs, its output has every row, and its competitors compute
the same training step. No timing is asserted (timings are the benchmark's business)."""
from __future__ import annotations

import json
import math
import sys
import types
from collections import Counter

import numpy as np
import pytest

from symprop.benchmarks import bench
from symprop.benchmarks import competitors as comp
from symprop.cli import build_parser
from symprop.cli.commands import bench as bench_command


def run_quick(tmp_path, capsys):
    path, table = tmp_path / "bench.json", tmp_path / "bench.md"
    assert bench.main(["--quick", "--no-subprocess", "--json", str(path), "--markdown", str(table)]) == 0
    report = json.loads(path.read_text())
    rows = [line for line in table.read_text().splitlines() if line.startswith("| 2-2-2 b1 ")]
    assert [row.split(" | ")[0] for row in rows] == [f"| {case['case']}" for case in report["cases"]]
    header = next(line for line in table.read_text().splitlines() if line.startswith("| case |"))
    assert all(row.count(" | ") == header.count(" | ") for row in rows)  # every column filled
    assert "| products alone: % of step, % of peak |" in header
    assert table.read_text().startswith("`symprop bench --quick`")
    return report, capsys.readouterr().out


def test_quick_run_reports_every_row(tmp_path, capsys):
    report, out = run_quick(tmp_path, capsys)
    assert [c["case"] for c in report["cases"]] == ["2-2-2 b1 sigmoid float32", "2-2-2 b1 sigmoid float64"]
    for case in report["cases"]:
        rows = case["results"]
        assert set(rows) == set(bench.LABELS)
        assert "median_s" in rows[bench.SYMPROP], rows[bench.SYMPROP]  # codegen is part of the repo
        for key, row in rows.items():
            if "skipped" in row:
                library = "torch" if key.startswith("torch") else "jax"
                assert comp.import_optional(library) is None, f"{key} skipped although {library} is installed"
                assert "not installed" in row["skipped"]
                continue
            assert 0 < row["q1_s"] <= row["median_s"] <= row["q3_s"]
            assert row["x_numpy"] > 0 and row["vs_symprop"] > 0 and row["gflops"] > 0
        assert rows[bench.NUMPY]["x_numpy"] == 1.0
        assert rows[bench.SYMPROP]["vs_symprop"] == 1.0
        assert case["spec"] in out and case["case"] in out
        # the step's products alone: each layer's X W and dW = X^T dY, the second layer's dX = dY W^T
        alone = case["products_alone"]
        assert [(p["what"], p["rows"], p["inner"], p["columns"]) for p in alone["products"]] == [
            ("X W", 1, 2, 2), ("dW = X^T dY", 2, 1, 2), ("X W", 1, 2, 2), ("dW = X^T dY", 2, 1, 2),
            ("dX = dY W^T", 1, 2, 2)]
        assert alone["mflop"] == case["matrix_mflop"] and alone["gflops"] > 0
        assert alone["share_of_step"] == pytest.approx(alone["median_s"] / rows[bench.SYMPROP]["median_s"])
        assert set(case["gemm"]) == set(bench.GEMM_LABELS)
        assert case["gemm"][bench.GEMM]["gflops"] == case["gemm_peak"]["gflops"]
        for key, gemm in case["gemm"].items():
            library = {bench.GEMM_TORCH: "torch", bench.GEMM_JAX: "jax"}.get(key, "numpy")
            assert ("gflops" in gemm) == (comp.import_optional(library) is not None), key
        assert bench.roofline_figure(case) in out
    assert all(report["gemm_peak"][d]["gflops"] > 0 for d in bench.DTYPES)
    assert [e["dtype"] for e in report["steps_per_call"]] == list(bench.DTYPES)
    assert all(e["per_step_in_loop_s"] > 0 for e in report["steps_per_call"])
    assert [m["dtype"] for m in report["mish"]] == list(bench.DTYPES)
    for mish in report["mish"]:
        assert mish["speedup"] > 0
        assert mish["max_abs_difference"] < (1e-4 if mish["dtype"] == "float32" else 1e-12)
    assert report["machine"]["numpy"] == np.__version__
    assert report["targets"] and all(t["met"] is None for t in report["targets"])  # --quick judges nothing
    for label in ("targets (reported, not asserted)", "GEMM peak float32", "k steps in one call"):
        assert label in out


def test_absent_competitors_get_a_skipped_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    monkeypatch.setitem(sys.modules, "jax", None)
    report, out = run_quick(tmp_path, capsys)
    for case in report["cases"]:
        for key in (bench.TORCH_NN, bench.TORCH_MANUAL, bench.JAX):
            assert case["results"][key]["skipped"].startswith("skipped: not installed")
        for key in (bench.GEMM_TORCH, bench.GEMM_JAX):  # nor their GEMMs; numpy's and numba's are timed
            assert case["gemm"][key]["skipped"].startswith("skipped: not installed")
        assert case["gemm"][bench.GEMM_NUMBA]["gflops"] > 0
    assert out.count("skipped: not installed") == 5 * len(report["cases"])
    assert report["machine"].get("torch") is None and report["machine"].get("jax") is None


@pytest.mark.parametrize("case", [bench.worked_example("float64"),
                                  bench.Case((784, 100, 10), 8, "relu", "float64")], ids=lambda c: c.name)
def test_competitors_take_the_same_training_step(case, monkeypatch, tmp_path):
    """Two steps from the same start give the same losses in every implementation, so the
    benchmark compares like with like (the second loss depends on the first update)."""
    monkeypatch.setenv("SYMPROP_CACHE", str(tmp_path))
    libs = bench.optional_libraries()
    steps, _ = bench.build_steps(case, libs)
    assert bench.SYMPROP in steps and bench.NUMPY in steps
    losses = {key: [float(step()) for _ in range(2)] for key, step in steps.items()}
    reference = losses[bench.NUMPY]
    assert reference[1] < reference[0]  # the step went downhill
    for key, values in losses.items():
        np.testing.assert_allclose(values, reference, rtol=1e-10, err_msg=key)


def test_symprop_bench_is_a_subcommand():
    args = build_parser().parse_args(["bench", "--quick", "--json", "out.json"])
    assert args.quick and args.json == "out.json" and args.run is bench_command.run


def test_step_breakdown_runs_on_a_small_network(capsys):
    """benchmarks/breakdown.py (the step against its products, together and each alone) on a
    small two-layer network and on a bench case picked by name."""
    from symprop.benchmarks import breakdown
    result = breakdown.measure(bench.Case((784, 16, 10), 8, "relu", "float64"), rounds=1, sample_s=0.0)
    median = result["median_s"]
    assert set(median) == {"step", "products", "peak"} and all(v > 0 for v in median.values())
    assert result["peak_gflops"] > 0 and result["step_of_peak"] > 0 and result["products_of_peak"] > 0
    assert result["spec"] == "affine(784,16) relu affine(16,10) softmax-cross-entropy"
    assert [each["product"].what for each in result["each"]] == ["X W", "dW = X^T dY", "X W", "dW = X^T dY",
                                                                  "dX = dY W^T"]
    assert all(each["median_s"] > 0 for each in result["each"])
    assert breakdown.main(["--case", "2-2-2 b1 sigmoid float64", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2-2-2 b1 sigmoid float64: ") and "    dX = dY W^T     1x2 by 2x2^T" in out


def test_gemm_shapes_times_each_blas_at_the_steps_shapes(capsys):
    """benchmarks/gemm_shapes.py: numba's np.dot (OpenBLAS) and the kernels' _gemm, named by
    the BLAS it calls, at each shape asked for; PyTorch's torch.mm too where installed."""
    from symprop.benchmarks import gemm_shapes
    (row,) = gemm_shapes.measure("float64", [(4, 3, 5)])
    assert row["shape"] == (4, 3, 5) and f"_gemm ({gemm_shapes.GEMM_BLAS})" in row
    assert all(value > 0 for key, value in row.items() if key != "shape")
    assert gemm_shapes.GEMM_BLAS in ("mkl", "openblas")


PINNED_PROBE = """
import json, os, subprocess, sys
import numpy as np
from symprop.benchmarks import bench
core = bench.pin_to_one_core()
a = np.random.default_rng(0).random((400, 400))
timing = bench.time_round_robin({"dot": lambda: a @ a}, 3, 1, 0.02)["dot"]
child = subprocess.run([sys.executable, "-c", "import os; print(len(os.sched_getaffinity(0)))"],
                       capture_output=True, text=True).stdout
thread_cores = [sorted(os.sched_getaffinity(int(task))) for task in os.listdir("/proc/self/task")]
print(json.dumps({"core": core, "cores": sorted(os.sched_getaffinity(0)), "child": int(child),
                  "cores_used": timing.cores_used, "threads": timing.threads, "thread_cores": thread_cores}))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="Linux only")
def test_threads_1_pins_the_process_and_its_children_to_one_core():
    """--threads 1 pins the benchmark to one core (in a child process here, so pytest itself
    keeps its cores); a multithreaded BLAS product then measures at most one core's CPU time."""
    import subprocess
    out = subprocess.run([sys.executable, "-c", PINNED_PROBE], capture_output=True, text=True, check=True).stdout
    probe = json.loads(out)
    assert probe["cores"] == [probe["core"]] and probe["child"] == 1
    assert 0 < probe["cores_used"] <= 1.05 and probe["threads"] >= 1
    # numpy's OpenBLAS threads started at import, before the pinning: they are pinned too
    assert probe["thread_cores"] == [[probe["core"]]] * len(probe["thread_cores"])


def test_first_step_measures_a_new_spec_with_empty_caches_then_warm(tmp_path, capsys, monkeypatch):
    """bench --first-step SPEC: a fresh process with empty caches compiles the first sgd_step
    (only sgd_step_kernel: the scalar step of a tiny network); a second one with those caches
    compiles nothing. The exit status follows the targets (wiring, not timing: the targets are
    set here so that one run passes and the same results then miss)."""
    from symprop.benchmarks import first_step
    spec = "affine(2,3) tanh affine(3,1) mse"
    monkeypatch.setattr(first_step, "COLD_TARGET_S", math.inf)
    path = tmp_path / "first.json"
    assert bench.main(["--first-step", spec, "--json", str(path)]) == 0
    (result,) = json.loads(path.read_text())["first_step"]
    cold, warm = result["cold"], result["warm"]
    assert cold["kernels"] == warm["kernels"] == {"sgd_step_kernel": 1} and cold["scalar_step"]
    assert [name.split("(")[0] for name in cold["compiled"]] == ["net.sgd_step_kernel"]
    assert cold["compile_s"] > 0 and warm["compiled"] == {} and warm["compile_s"] == 0
    assert set(cold["phases"]) == {"import_s", "generate_s", "first_step_s"}
    assert 0 < cold["phases"]["first_step_s"] <= cold["cpu_s"]
    assert spec in capsys.readouterr().out
    result["targets"]["cold"] = cold["cpu_s"] / 2
    assert first_step.missed([result]) == [f"{spec} (cold): {cold['cpu_s']:.1f} s CPU > {cold['cpu_s'] / 2:g} s"]
    monkeypatch.setattr(first_step, "run", lambda names, specs: [result])
    assert bench.main(["--first-step", spec]) == 1
    assert "NOT MET" in capsys.readouterr().out


def test_timed_children_keep_python_bytecode_as_a_learner_has_it(monkeypatch, tmp_path):
    """A shell that sets PYTHONDONTWRITEBYTECODE would make every timed process compile
    symprop's modules again: the warm figures are measured with Python's bytecode cache on,
    and each child gets the cache folders it is given."""
    from symprop.benchmarks import first_step
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    _, proc = bench.run_subprocess(["-c", "import os, sys; print(sys.flags.dont_write_bytecode, "
                                    "os.environ['NUMBA_CACHE_DIR'])"], {"NUMBA_CACHE_DIR": str(tmp_path)}, 60)
    assert proc.stdout.split() == ["0", str(tmp_path)]
    env = first_step.child_environment(SYMPROP_CACHE="a", NUMBA_CACHE_DIR="b")
    assert "PYTHONDONTWRITEBYTECODE" not in env and (env["SYMPROP_CACHE"], env["NUMBA_CACHE_DIR"]) == ("a", "b")


def test_first_step_of_a_spec_with_dropout_passes_its_masks():
    """A new spec with dropout (or batch norm) takes its running averages and masks in
    sgd_step: the probe gives them, where it used to stop at the kernel's missing-masks error."""
    from symprop.benchmarks import first_step
    result = first_step.child("affine(3,4) relu dropout(0.5) affine(4,2) mse")
    assert math.isfinite(result["loss"]) and result["kernels"]


def test_first_step_runs_a_training_command_to_its_first_step(tmp_path):
    """The moons command as the docs give it, to the end of its first training step: with empty
    caches numba compiles its step, with warm caches nothing."""
    from symprop.benchmarks import first_step
    result = first_step.measure_command("moons")
    assert result["command"] == "symprop train --data moons"
    cold, warm = result["cold"], result["warm"]
    assert "error" not in cold and "error" not in warm, result
    assert any(name.startswith("net.sgd_step_kernel(") for name in cold["compiled"])
    assert warm["compiled"] == {}
    assert set(cold["phases"]) == {"import_s", "load_s", "step_compile_s", "other_s"}
    assert cold["phases"]["step_compile_s"] > 0 and cold["cpu_s"] > 0


def test_forms_compiles_both_steps_of_a_tiny_network():
    """first_step --forms (what SCALAR_MAX_LINES is set from) times the scalar and the matrix
    step of one spec, each module checked to be the form it claims (compare_forms asserts it)."""
    from symprop.benchmarks import first_step
    result = first_step.compare_forms("affine(2,2) sigmoid affine(2,2) mse", runs=1)
    assert 0 < result["scalar_lines"] <= result["limit"]
    assert result["scalar_cpu_s"] > 0 and result["matrix_cpu_s"] > 0


def _report(times: dict[str, float], load=0.5) -> dict:
    """A minimal bench report: one case with the given median times (numpy, symprop, ...)."""
    rows = {k: {"median_s": t, "vs_symprop": t / times[bench.SYMPROP], "peak_fraction": 0.01 / t}
            for k, t in times.items()}
    return {"settings": {"threads": 1}, "machine": {"load_average": {"start": load, "end": load}},
            "cases": [{"case": "784-100-10 b100 relu float32", "results": rows}]}


def test_compare_flags_a_ratio_that_fell_more_than_ten_percent(tmp_path, capsys):
    old = _report({bench.SYMPROP: 1.0, bench.NUMPY: 2.0, bench.TORCH_NN: 1.5, bench.JAX: 1.2})
    new = _report({bench.SYMPROP: 1.0, bench.NUMPY: 2.1, bench.TORCH_NN: 1.45, bench.JAX: 1.0})
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    status = bench.main(["--compare", str(tmp_path / "old.json"), str(tmp_path / "new.json")])
    out = capsys.readouterr().out
    jax_line = next(line for line in out.splitlines() if f"{bench.LABELS[bench.JAX]} / symprop" in line)
    torch_line = next(line for line in out.splitlines() if f"{bench.LABELS[bench.TORCH_NN]} / symprop" in line)
    assert status == 1
    assert "1.20" in jax_line and "1.00" in jax_line and "-16.7%" in jax_line and "REGRESSION" in jax_line
    assert "-3.3%" in torch_line and "REGRESSION" not in torch_line  # within 10%: noise, not flagged
    assert "1 of 4 ratios fell by more than 10%" in out


def test_compare_without_regressions_exits_0_and_a_bad_file_is_one_line(tmp_path, capsys):
    report = _report({bench.SYMPROP: 1.0, bench.NUMPY: 2.0})
    (tmp_path / "a.json").write_text(json.dumps(report))
    assert bench.main(["--compare", str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0
    assert "+0.0%" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(bench.SympropError, match="--compare .*bad.json: cannot read a bench report"):
        bench.main(["--compare", str(tmp_path / "bad.json")])


def test_threads_all_gives_every_library_every_usable_core(tmp_path, capsys):
    import os

    path = tmp_path / "all.json"
    assert bench.main(["--quick", "--no-subprocess", "--threads", "all", "--json", str(path)]) == 0
    settings = json.loads(path.read_text())["settings"]
    assert settings["all_cores"] is True and settings["pinned_core"] is None
    assert settings["threads"] == len(os.sched_getaffinity(0))
    case = json.loads(path.read_text())["cases"][0]
    assert case["symprop_blas_threads"] == 1  # the quick case's products are tiny: one thread by size
    with pytest.raises(SystemExit):
        bench.main(["--threads", "many"])
    assert "expected a number of threads or 'all'" in capsys.readouterr().err


def test_symprop_threads_sets_only_the_blas_numba_calls_and_restores_it():
    """--threads all gives symprop the BLAS threads symprop train would choose by size, on the
    OpenBLAS numba's np.dot calls (SciPy's), leaving numpy's copy to the numpy classes."""
    libs = bench.numba_blas()
    assert len(libs) == 1 and "numpy.libs" not in libs[0].filepath
    before = libs[0].num_threads
    large = bench.Case((784, 1024, 10), 1024, "relu", "float32")
    with bench.symprop_threads(large, cores=2) as threads:
        assert threads == 2 and libs[0].num_threads == 2
    assert libs[0].num_threads == before
    with bench.symprop_threads(bench.Case((784, 50, 10), 32, "relu", "float32"), cores=2) as threads:
        assert threads == 1 and libs[0].num_threads == 1
    assert libs[0].num_threads == before


def test_parallel_loops_probe_times_the_same_loop_both_ways(capsys):
    import numpy as np

    from symprop.benchmarks import parallel_loops

    (serial, _), (parallel, _) = parallel_loops.compiled(False, "float64"), parallel_loops.compiled(True, "float64")
    Z, b = np.random.default_rng(1).normal(size=(7, 5)), np.linspace(-1, 1, 5)
    (Z1, H1), (Z2, H2) = (Z.copy(), np.empty_like(Z)), (Z.copy(), np.empty_like(Z))
    serial(Z1, b, H1)
    parallel(Z2, b, H2)
    assert np.array_equal(Z1, Z + b) and np.array_equal(H1, np.maximum(Z + b, 0))
    assert np.array_equal(Z2, Z1) and np.array_equal(H2, H1)
    rows = parallel_loops.measure(repeats=1, sample_s=0.0, sizes=[(4, 3)], dtypes=("float64",))
    assert rows[0]["serial_s"] > 0 and rows[0]["parallel_s"] > 0 and "speed-up" in capsys.readouterr().out


def test_parallel_loops_step_variant_runs_the_row_loops_with_prange(capsys):
    """parallel_loops --step: the module text with loss_and_grads_into parallel, prange on its
    loops over the batch rows and nothing else changed; timed against the module as written."""
    from pathlib import Path

    from symprop.benchmarks import parallel_loops
    from symprop.codegen.network import load_network

    spec = "affine(3,9) sigmoid affine(9,2) softmax-cross-entropy"
    source = Path(load_network(spec).__file__).read_text()
    variant = parallel_loops._prange_variant(source)
    start = variant.index("def loss_and_grads_into(")
    body = variant[start:variant.index("\n\n\n", start)]
    assert variant[start - len("@jit_parallel\n"):start] == "@jit_parallel\n"
    assert "for n in numba.prange(N):" in body and "for n in range(N):" not in body
    helper = "def jit_parallel(function):\n    return jit(function, parallel=True)\n\n\n"
    assert variant.replace(helper, "").replace("@jit_parallel\n", "@jit\n").replace(
        "for n in numba.prange(N):", "for n in range(N):") == source
    parallel_loops.measure_step(spec, batch=16, repeats=1, dtypes=("float64",))
    assert "prange loops" in capsys.readouterr().out


def test_blas_threads_probe_times_both_variants(capsys):
    from symprop.benchmarks import blas_threads

    rows = blas_threads.measure(repeats=1, sample_s=0.0, sizes=[((4, 8, 2), 4)])
    assert [r["case"] for r in rows] == ["4-8-2 b4 relu float32"]
    assert rows[0]["one_thread_s"] > 0 and rows[0]["all_cores_s"] > 0 and rows[0]["speedup"] > 0
    assert "speed-up" in capsys.readouterr().out


# ---- the networks of issues 15 (batch norm + Adam) and 16 (conv net): the same step everywhere ----

NET_CASES = [bench.batchnorm_adam_case("float64", sizes=(4, 5, 3), batch=6, lr=0.01),
             bench.convnet_case("float64", image=(1, 6, 6), conv=(2, 3), sizes=(4, 3), batch=5, lr=0.1)]


@pytest.mark.parametrize("case", NET_CASES, ids=lambda c: c.kind)
def test_net_case_competitors_take_the_same_step(case):
    """Two steps from the same start (float64, a small network of the benchmark's kind): every
    implementation gives the same losses, parameters and batch-norm running averages to 1e-10,
    so the benchmark's batchnorm-adam and convnet rows time the same computation."""
    libs = bench.optional_libraries()
    if libs["torch"] is None and libs["jax"] is None:
        pytest.skip("the comparison needs PyTorch or JAX (pip install -r requirements-bench.txt; not test extras)")
    steps, skipped = bench.build_net_steps(case, libs, workspace=True)
    assert bench.SYMPROP in steps and bench.SYMPROP_WORKSPACE in steps, skipped
    start = bench.make_net_data(case)[0]
    losses, first_running = {}, {}
    for key, step in steps.items():
        losses[key] = [float(step())]
        first_running[key] = step.snapshot()["running"]
        losses[key].append(float(step()))
    reference = losses[bench.SYMPROP]
    assert reference[1] < reference[0]  # the steps went downhill
    ours = steps[bench.SYMPROP].snapshot()
    for key, step in steps.items():
        np.testing.assert_allclose(losses[key], reference, rtol=1e-10, err_msg=key)
        theirs = step.snapshot()
        # running averages after the first step; after the second only the variance, since the
        # running mean then holds 0.1 b1, which carries the round-off of b1's step (below)
        for mine, other in zip(first_running[bench.SYMPROP], first_running[key]):
            np.testing.assert_allclose(other, mine, rtol=1e-10, atol=1e-14, err_msg=f"{key} running averages")
        for mine, other in zip(ours["running"][1:], theirs["running"][1:]):
            np.testing.assert_allclose(other, mine, rtol=1e-10, err_msg=f"{key} running variance")
        for name, mine, other, first in zip(step_param_names(case), ours["params"], theirs["params"], start):
            if name == "b1" and case.kind == bench.BATCHNORM_ADAM:
                # the bias just before batch norm has gradient 0 in exact arithmetic (the batch mean
                # removes it); each side's is round-off (~1e-16), which Adam turns into steps of
                # lr g / (|g| + eps), eps = 1e-8: about 1e-9 here. No digits to compare, only that
                # every implementation left it where it was to that order
                assert np.abs(other - first).max() < 1e-8, f"{key} {name}"
                continue
            assert np.abs(mine - first).max() > 1e-4, name  # every parameter moved: not a comparison of starts
            np.testing.assert_allclose(other, mine, rtol=1e-10, atol=1e-14, err_msg=f"{key} {name}")
    if case.kind == bench.BATCHNORM_ADAM:
        assert len(ours["running"]) == 2
    for key in (bench.TORCH_NN, bench.JAX):
        library = "torch" if key.startswith("torch") else "jax"
        assert (key in steps) == (libs[library] is not None), skipped.get(key)


def step_param_names(case):
    return ("W1", "b1", "scale2", "shift2", "W2", "b2") if case.kind == bench.BATCHNORM_ADAM else \
        ("K1", "c1", "W2", "b2", "W3", "b3")


def test_net_cases_are_named_for_only_and_stay_out_of_quick():
    names = [c.name for c in bench.all_cases(quick=False)]
    assert [n for n in names if "batchnorm-adam" in n] == ["batchnorm-adam 784-100-10 b100 float32"]
    assert [n for n in names if "convnet" in n] == ["convnet 1x28x28 conv30k5-100-10 b100 float32"]
    assert [n for n in names if " b32 " in n] == [  # --only b32: the sequence rows
        "lstm T32 hidden 128 b32 float32", "lstm T32 hidden 256 b32 float32", "gru T32 hidden 128 b32 float32",
        "gru T32 hidden 256 b32 float32", "attention-head T64 width 128 b32 float32",
        "mha T64 width 128 heads 4 b32 float32"]
    assert not any(isinstance(c, bench.NetCase) for c in bench.all_cases(quick=True))
    conv = bench.convnet_case()
    assert conv.spec == ("input(1,28,28) conv2d(1,30,5) relu maxpool(2) flatten affine(4320,100) relu "
                         "affine(100,10) softmax-cross-entropy")
    # im2col forward and dW (30 x 25 by 25 x 576 per image, x2), the affine layers' 3 products each
    assert conv.matrix_flop == 2 * 100 * (2 * 30 * 25 * 576 + 3 * 4320 * 100 + 3 * 100 * 10)
    assert bench.batchnorm_adam_case().matrix_flop == 2 * 100 * (2 * 784 * 100 + 3 * 100 * 10)


def test_compile_probe_finds_every_generated_module_without_compiling():
    """The load-time probe's default run (no specs) lists the built-in networks and the other
    generated modules; a NameError here once made the bench's compile and load rows fail."""
    from symprop.benchmarks import compile_probe
    from symprop.codegen.network import BUILTIN_NETWORKS

    networks, others = compile_probe.generated_modules()
    assert compile_probe.builtin_specs() == list(BUILTIN_NETWORKS.values())
    assert {module.SPEC for module in networks} >= set(BUILTIN_NETWORKS.values())
    layers = next(module for module in others if module.__name__ == "symprop.generated.layers")
    wrappers = compile_probe.layer_wrappers(layers)
    assert {"relu_forward", "relu_backward", "affine_backward"} <= set(wrappers)
    assert not [name for name in wrappers if name.startswith("_")]  # image helpers take (C, H, W, ...)


def test_compare_keeps_a_long_case_name_apart_from_its_ratio():
    from symprop.benchmarks import compare

    case = "convnet 1x28x28 conv30k5-100-10 b100 float32"
    text = compare.describe([compare.Change(case, "JAX jit(value_and_grad) / symprop", 5.11, 5.25),
                             compare.Change("2-2-2 b1 sigmoid float32", "symprop fraction of GEMM peak", 1.0, 0.8)],
                            "old.json", {}, {})
    rows = [line for line in text.splitlines() if "/ symprop" in line or "fraction" in line]
    assert f"{case}  JAX" in rows[0]
    assert rows[0].index("JAX") == rows[1].index("symprop fraction")  # one column for the ratios


def test_report_paths_are_refused_before_the_timing(tmp_path, capsys):
    """--json and --markdown are checked first, as every other output path: a device, a file
    of another kind, or the report being compared against is refused in one line, exit 2,
    before minutes of timing; the file already there is left as it was."""
    from symprop.cli import main

    picture = tmp_path / "plot.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n")
    old = tmp_path / "old.json"
    old.write_text('{"rows": []}')
    for argv, message in [(["--json", "/dev/null"], "--json /dev/null"),
                          (["--markdown", str(picture)], "--markdown"),
                          (["--json", str(old), "--compare", str(old)], "--json")]:
        assert main(["bench", "--quick", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert picture.read_bytes() == b"\x89PNG\r\n\x1a\n" and old.read_text() == '{"rows": []}'


SEQUENCE_CASES = [bench.NetCase(bench.LSTM, (3, 4), 5, "float64", 0.5, steps=3),
                  bench.NetCase(bench.GRU, (3, 4), 5, "float64", 0.5, steps=3),
                  bench.NetCase(bench.ATTENTION_HEAD, (4,), 5, "float64", 0.5, steps=3),
                  bench.NetCase(bench.MHA, (4, 2), 5, "float64", 0.5, steps=3)]


@pytest.mark.parametrize("case", SEQUENCE_CASES, ids=lambda c: c.kind)
def test_sequence_case_competitors_take_the_same_steps(case):
    """Three steps from the same start (float64, small sizes of the benchmark's kinds): symprop,
    the torch nn modules, the torch ops and JAX's jit (whichever are installed) give the same
    losses to 1e-10, and JAX the same parameters after them, so the lstm, gru, attention-head
    and mha rows time the same computation (a different gradient changes the next loss)."""
    libs = bench.optional_libraries()
    if libs["torch"] is None and libs["jax"] is None:
        pytest.skip("the comparison needs PyTorch or JAX (pip install -r requirements-bench.txt; not test extras)")
    steps, skipped = bench.build_net_steps(case, libs)
    expected = {bench.SYMPROP, *((bench.TORCH_NN, bench.TORCH_MANUAL) if libs["torch"] else ()),
                *((bench.JAX,) if libs["jax"] else ())}
    assert set(steps) == expected, skipped
    losses = {key: [float(step()) for _ in range(3)] for key, step in steps.items()}
    reference = losses[bench.SYMPROP]
    assert reference[2] < reference[0]
    for key, values in losses.items():
        np.testing.assert_allclose(values, reference, rtol=1e-10, err_msg=key)
    if bench.JAX in steps:  # its parameters come back in symprop's layout
        start, ours = bench.make_net_data(case)[0], steps[bench.SYMPROP].snapshot()["params"]
        # mha's key bias bk stays: it adds q . bk to a query's every score, which softmax ignores
        still = {3} if case.kind == bench.MHA else set()
        for i, (first, mine, theirs) in enumerate(zip(start, ours, steps[bench.JAX].snapshot()["params"], strict=True)):
            moved = np.abs(mine - first).max()
            assert moved == 0 if i in still else moved > 1e-4  # not a comparison of starts
            np.testing.assert_allclose(theirs, mine, rtol=1e-10, atol=1e-14)


def test_jax_attention_splits_heads_as_column_blocks():
    """jax_attention with several heads is each head's own attention on its block of Q, K and V's
    columns, scaled by the head's width, the outputs side by side: the split the mha layers use."""
    jax = pytest.importorskip("jax", reason="JAX is a benchmark competitor, not a test dependency")
    comp.enable_jax_float64(jax)
    rng = np.random.default_rng(3)
    x, (Wq, Wk, Wv) = rng.normal(size=(2, 5, 6)), rng.normal(size=(3, 6, 6))
    blocks = [np.asarray(comp.jax_attention(jax, x, Wq[:, cols], Wk[:, cols], Wv[:, cols]))
              for cols in (slice(0, 3), slice(3, 6))]
    two_heads = np.asarray(comp.jax_attention(jax, x, Wq, Wk, Wv, heads=2))
    np.testing.assert_allclose(two_heads, np.concatenate(blocks, axis=2), rtol=1e-12)
    one_head = np.asarray(comp.jax_attention(jax, x, Wq, Wk, Wv))
    assert np.abs(one_head - two_heads).max() > 1e-3  # the split changes the result: the test can tell


def test_step_statements_run_the_step_one_statement_at_a_time():
    """benchmarks/step_statements.py (where a step's time goes): its kernel, asked for each
    statement in turn, takes the step that numpy takes (784-100-10, float64). (Its products
    alone are the bench's ``products_call`` of the ops' list, checked against the kernels by
    test_the_products_alone_are_the_kernels_products.)"""
    from symprop.benchmarks import step_statements
    from symprop.codegen.network import load_network

    net = load_network("affine(784,100) relu affine(100,10) softmax-cross-entropy")
    labels, kernel = step_statements.statement_kernel(net)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 784))
    T = np.eye(10)[rng.integers(0, 10, 8)]
    W1, b1, W2, b2 = params = [rng.normal(size=shape) * 0.1 for shape in net.PARAM_SHAPES]
    workspace = net.make_workspace(X)
    stepped = [p.copy() for p in params]
    for which in range(len(labels)):
        kernel(which, *stepped, X, T, 0.5, *workspace)
    z1 = X @ W1 + b1
    z2 = np.maximum(z1, 0) @ W2 + b2
    P = np.exp(z2 - z2.max(axis=1, keepdims=True))
    dz2 = (P / P.sum(axis=1, keepdims=True) - T) / len(X)
    dz1 = (dz2 @ W2.T) * (z1 > 0)
    grads = [X.T @ dz1, dz1.sum(axis=0), np.maximum(z1, 0).T @ dz2, dz2.sum(axis=0)]
    for ours, param, grad in zip(stepped, params, grads):
        np.testing.assert_allclose(ours, param - 0.5 * grad, rtol=1e-12, atol=1e-15)


def kernel_products(case) -> Counter:
    """The matrix products the bench's symprop step of ``case`` computes: the generated kernels
    run as plain Python (each numba function's own source, on the same module's names) with
    _gemm, np.dot and the small-matrix loops recording every product of two matrices (a vector of
    ones times a matrix sums a bias's gradient: no product). (rows, inner, columns, left read
    transposed, right read transposed) -> how many times."""
    net = bench.load_symprop_network(case.spec)[0]
    calls = Counter()

    def transposed(a):
        return a.flags.f_contiguous and not a.flags.c_contiguous

    def recording(product):
        def call(a, b, *out):
            if a.ndim == 2 and b.ndim == 2:
                calls[(a.shape[0], a.shape[1], b.shape[1], transposed(a), transposed(b))] += 1
            return product(a, b, *out)
        return call

    names = dict(vars(net))
    names["np"] = numpy = types.ModuleType("np")
    numpy.__getattr__ = lambda name: getattr(np, name)
    numpy.dot = recording(np.dot)
    for name, value in vars(net).items():
        if hasattr(value, "py_func"):  # a numba dispatcher: its Python function, reading `names`
            f = value.py_func
            names[name] = types.FunctionType(f.__code__, names, f.__name__, f.__defaults__, f.__closure__)

    def gemm(a, b, out, transpose_a, transpose_b, accumulate):  # the product as _gemm is told to read it
        rows, inner = a.shape[::-1] if transpose_a else a.shape
        calls[(rows, inner, b.shape[0] if transpose_b else b.shape[1], transpose_a, transpose_b)] += 1
        return net._gemm(a, b, out, transpose_a, transpose_b, accumulate)
    if "_gemm" in names:
        names["_gemm"] = gemm
    if "_dot_loops" in names:
        names["_dot_loops"] = recording(names["_dot_loops"])
    params, X, T = bench.make_net_data(case)
    make = comp.symprop_adam_step if case.kind == bench.BATCHNORM_ADAM else comp.symprop_sgd_net_step
    make(types.SimpleNamespace(**names), case, params, X, T)()
    return calls


@pytest.mark.parametrize("case", [*NET_CASES, *SEQUENCE_CASES], ids=lambda c: c.kind)
def test_the_products_alone_are_the_kernels_products(case):
    """The products the bench times alone as a step's roofline (each layer's op's
    ``step_products``) are the ones its kernel calls, at the same shapes, read as stored or
    transposed as the kernel reads them, as many times: a kernel that changes its products
    fails here until its op says so (no sizes of 1 here: a (1, k) matrix reads as either)."""
    listed = Counter()
    for p in bench.case_products(case):
        listed[(p.rows, p.inner, p.columns, p.left_transposed, p.right_transposed)] += p.count
    assert kernel_products(case) == listed
