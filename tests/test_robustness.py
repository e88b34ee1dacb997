"""Hostile formulas, extreme numbers, edited or stale generated code, broken caches, a killed
generator: symprop refuses cleanly, stays finite, and never leaves generated/ half-written."""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from symprop.codegen.generate import check, generate
from symprop.codegen.layer_kernels import python_name
from symprop.symbolic.errors import SympropError
from symprop.symbolic.formula import parse_formula
from symprop.symbolic.layers import Affine, Conv2d, ElementwiseLoss, Pool, REGISTRY
from tests.test_kernels import LAYERS, make_inputs, run_layer

ROOT = Path(__file__).resolve().parent.parent

ATTACKS = [
    "__import__('os').system('echo pwned')",
    "x.__class__.__mro__",
    "(lambda: 1)()",
    "[x for x in ()]",
    "{'a': 1}",
    "exp(x, base=2)",
    "eval('1')",
    "open('/etc/passwd')",
    "x if x else 1",
    "x; import os",
    "9**9**9",
    "(x**64)**64",
    "x" + "+x" * 60_000,
    "(" * 500 + "x" + ")" * 500,
    "x == 1",
    "'text'",
    "True",
    "1e400",
    "y + 1",
    "",
]


@pytest.mark.parametrize("text", ATTACKS, ids=lambda t: t[:30])
def test_hostile_formulas_are_refused_with_a_clear_message(text):
    with pytest.raises(SympropError) as info:
        parse_formula(text, where="--formula")
    message = str(info.value)
    assert message.startswith("--formula: ") and len(message) < 600


def test_refusal_names_the_offending_token():
    with pytest.raises(SympropError, match=r"calling \"__import__\('os'\).system\" is not allowed"):
        parse_formula("__import__('os').system('ls')")
    with pytest.raises(SympropError, match="unknown name 'y'"):
        parse_formula("x + y")
    with pytest.raises(SympropError, match="exponent 387420489 is larger than 64"):
        parse_formula("9**9**9")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", LAYERS)
def test_every_layer_is_finite_at_1e4(name, dtype):
    """Inputs of magnitude 1e4, where every true value is finite."""
    inputs, dout = make_inputs(name, np.random.default_rng(0), dtype)
    layer = REGISTRY[name]
    big = []
    for k, value in enumerate(inputs):
        is_target = layer.is_loss and k == 1
        big.append(value if is_target or (isinstance(layer, (Affine, Conv2d)) and k > 0)
                   else (np.sign(value) * 1e4).astype(dtype))
    if isinstance(layer, ElementwiseLoss) and name != "binary-cross-entropy":
        big[0] = big[0] / dtype(100)  # squares of 1e4 overflow float32; 1e2 squared does not
    objective, grads = run_layer(name, big, dout)
    for grad in grads:
        assert np.all(np.isfinite(grad)), name
    forward = getattr(__import__("symprop.generated.layers", fromlist=["x"]), f"{python_name(name)}_forward")
    result = forward(*big, 2) if isinstance(layer, Pool) else forward(*big)  # a 2x2 window
    values = result if isinstance(result, tuple) else (result,)
    assert all(np.all(np.isfinite(v)) for v in values), name


def test_hand_edited_generated_module_warns_at_import(tmp_path):
    source = (ROOT / "generated" / "net_moons_logistic.py").read_text()
    edited = source.replace("LOSS = 'binary-cross-entropy'", "LOSS = 'mse'")
    assert edited != source
    (tmp_path / "edited_net.py").write_text(edited)
    (tmp_path / "intact_net.py").write_text(source)
    script = textwrap.dedent("""
        import sys, warnings
        sys.path.insert(0, sys.argv[1])
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            import intact_net
        assert not caught, [str(w.message) for w in caught]
        with warnings.catch_warnings(record=True) as caught:
            import edited_net
        print("|".join(str(w.message) for w in caught))
    """)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "was edited by hand" in result.stdout and "symprop generate" in result.stdout


def test_stale_builtin_network_warns_on_load(monkeypatch):
    """A generator source changed since the file was written: its input hash no longer matches."""
    from symprop.codegen import files, network
    monkeypatch.setattr(files, "inputs_hash", lambda *extra: "0000000000000000")
    with pytest.warns(UserWarning, match="is stale.*symprop generate"):
        network.load_network(network.BUILTIN_NETWORKS["moons_logistic"])


def test_cached_network_is_reused_without_sympy_and_regenerated_when_edited(tmp_path, monkeypatch):
    from symprop.codegen import network
    monkeypatch.setenv("SYMPROP_CACHE", str(tmp_path))
    spec = "affine(3,4) tanh affine(4,2) mse"
    first = network.load_network(spec)
    path = Path(first.__file__)
    original = path.read_text()

    def printing_again(*args, **kwargs):
        raise AssertionError("an up-to-date cached module was printed again")

    monkeypatch.setattr(network, "network_module_text", printing_again)
    assert network.load_network(spec) is first  # header hashes match: no SymPy printing
    edited = original.replace("loss = real(0)", "loss = real(1)", 1)  # a hand edit
    assert edited != original
    path.write_text(edited)
    monkeypatch.undo()
    monkeypatch.setenv("SYMPROP_CACHE", str(tmp_path))
    network.load_network(spec)
    assert path.read_text() == original  # the body hash caught the edit: written afresh


def _run_copy(tmp_path, prelude=""):
    """Import a copy of a generated network in a fresh process and take one step. Without
    NUMBA_CACHE_DIR, which would send numba's cache files away from the copy's __pycache__,
    where these tests look for them."""
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        {prelude}
        sys.path.insert(0, sys.argv[1])
        import netcopy as net
        params = [np.full(s, 0.3) for s in net.PARAM_SHAPES]
        print(net.sgd_step(*params, np.array([[0.05, 0.1]]), np.array([[0.03, 0.05]]), 0.5))
    """)
    env = {name: value for name, value in os.environ.items() if name != "NUMBA_CACHE_DIR"}
    return subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, env=env)


def test_corrupt_numba_cache_falls_back_to_compiling(tmp_path):
    shutil.copy(ROOT / "generated" / "net_two_layer_sigmoid.py", tmp_path / "netcopy.py")
    first = _run_copy(tmp_path)
    assert first.returncode == 0, first.stderr
    cached = list((tmp_path / "__pycache__").glob("*.nb*"))
    assert cached, "numba wrote no cache files"
    for path in cached:
        path.write_bytes(b"garbage")
    second = _run_copy(tmp_path)
    assert second.returncode == 0, second.stderr
    assert float(second.stdout) == float(first.stdout)


def test_no_writable_cache_location_falls_back_to_compiling(tmp_path):
    shutil.copy(ROOT / "generated" / "net_two_layer_sigmoid.py", tmp_path / "netcopy.py")
    result = _run_copy(tmp_path, prelude="import numba.core.caching as c; c.CacheImpl._locator_classes = []")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "__pycache__").exists() or not list((tmp_path / "__pycache__").glob("*.nbi"))


def test_generation_killed_midway_leaves_importable_files_and_check_says_what_is_stale(tmp_path):
    """SIGKILL after the first file is rewritten: every file is old or new, never half-written."""
    target = tmp_path / "generated"
    generate(target)
    originals = {p.name: p.read_text() for p in target.glob("*.py")}
    made_stale = set()
    for path in target.glob("*.py"):  # make every generated module stale, so generation rewrites each
        path.write_text(path.read_text().replace("# Body hash:", "# Body hash (old):"))
        if "# Body hash (old):" in path.read_text():
            made_stale.add(path.name)
    script = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        import symprop.codegen.files as files
        from symprop.codegen.generate import generate
        write = files.write_if_changed
        def slow_write(path, text):
            changed = write(path, text)
            print("wrote", Path(path).name, flush=True)
            time.sleep(30)
            return changed
        files.write_if_changed = slow_write
        generate(Path(sys.argv[1]))
    """)
    process = subprocess.Popen([sys.executable, "-c", script, str(target)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    first_line = process.stdout.readline()
    assert first_line.startswith("wrote ")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stdout.close()
    written = first_line.split()[1]
    assert (target / written).read_text() == originals[written]
    assert not list(target.glob(".*.tmp")), "a temporary file was left behind"
    stale = sorted(p.name for p, _ in check(target))
    assert stale == sorted(made_stale - {written})
    for path in target.glob("net_*.py"):  # old or new, each file still compiles as Python
        compile(path.read_text(), str(path), "exec")
