"""Network kernels: fused loss_and_grads against finite differences, the SGD step, specs."""
import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import sympy as sp
import pytest

from symprop.codegen import files
from symprop.codegen.generate import check, generate
from symprop.codegen.network import BUILTIN_NETWORKS, load_network
from symprop.symbolic.lower import Lowering
from symprop.symbolic.graph import parse_net
from symprop.codegen.scalar_step import SCALAR_MAX_LINES, TINY_WIDTH, scalar_step
from symprop.symbolic.errors import SympropError
from tests.conftest import TOLERANCE
from tests.gradcheck import (WORKED_EXAMPLE_MODULES, numerical_gradient, numerical_gradient_at, parameter_loss,
                             relative_error)

ROOT = Path(__file__).resolve().parent.parent
GRADCHECK_TOLERANCE = 1e-6  # float64 central differences, h = 1e-6

EXTRA_NETWORKS = [
    "affine(5,4) tanh affine(4,3) softmax-cross-entropy",
    "affine(3,4) formula(x*tanh(log(1+exp(x)))) affine(4,2) mse",
    "affine(3,4) sigmoid affine(4,3) softmax affine(3,2) squared-error",
    "affine(4,3) identity affine(3,1) binary-cross-entropy",
    "affine(3,4) relu tanh affine(4,2) mse",  # two activations in a row: values h1, h1b
    "affine(12,9) sigmoid tanh affine(9,2) mse",  # the same, too wide for the scalar step
]
# the built-in networks of the sequence worked examples are checked in their families' files
# (tests/gradcheck.py WORKED_EXAMPLE_MODULES), where the example's tests compile them anyway:
# here every kernel of each would compile a second time, 20 s a network on two cores
NETWORKS = [spec for name, spec in BUILTIN_NETWORKS.items() if name not in WORKED_EXAMPLE_MODULES] + EXTRA_NETWORKS
# Tiny networks: sgd_step_kernel and sgd_steps_kernel run the scalar-expanded step
TINY_NETWORKS = [
    BUILTIN_NETWORKS["two_layer_sigmoid"],
    BUILTIN_NETWORKS["moons_logistic"],
    "affine(3,4) relu affine(4,3) softmax-cross-entropy",
    "affine(2,3) tanh affine(3,2) mse",
    EXTRA_NETWORKS[1],  # a user formula
    EXTRA_NETWORKS[2],  # a softmax layer inside the network
    EXTRA_NETWORKS[4],  # two activations in a row
]
# scalar step against the matrix step: the same arithmetic in another order
SCALAR_TOLERANCE = {np.float64: 1e-12, np.float32: 1e-5}


def random_problem(net, rng, batch=4, dtype=np.float64):
    params = [rng.normal(0, 1 / np.sqrt(shape[0]), shape).astype(dtype) for shape in net.PARAM_SHAPES]
    X = rng.normal(size=(batch, net.INPUT_SIZE)).astype(dtype)
    if net.LOSS == "softmax-cross-entropy":
        T = np.eye(net.OUTPUT_SIZE)[rng.integers(0, net.OUTPUT_SIZE, batch)].astype(dtype)
    elif net.LOSS == "binary-cross-entropy":
        T = rng.integers(0, 2, (batch, net.OUTPUT_SIZE)).astype(dtype)
    else:
        T = rng.uniform(0, 1, (batch, net.OUTPUT_SIZE)).astype(dtype)
    return params, X, T


@pytest.mark.parametrize("spec", NETWORKS)
def test_loss_and_grads_match_finite_differences(spec, rng):
    net = load_network(spec)
    params, X, T = random_problem(net, rng)
    loss, *grads = net.loss_and_grads(*params, X, T)
    for k, (param, grad) in enumerate(zip(params, grads)):
        indices = rng.choice(param.size, size=min(param.size, 12), replace=False)
        numeric = numerical_gradient_at(parameter_loss(net, params, k, X, T), param, indices)
        assert relative_error(grad.reshape(-1)[indices], numeric) < GRADCHECK_TOLERANCE, (spec, net.PARAM_NAMES[k])


@pytest.mark.parametrize("spec", NETWORKS)
def test_sgd_step_updates_in_place_with_the_gradient(spec, rng):
    net = load_network(spec)
    params, X, T = random_problem(net, rng)
    X_before, T_before = X.copy(), T.copy()
    loss, *grads = net.loss_and_grads(*params, X, T)
    expected = [p - 0.1 * g for p, g in zip(params, grads)]
    assert net.sgd_step(*params, X, T, 0.1) == pytest.approx(loss, rel=1e-12)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p, e, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(T, T_before)


@pytest.mark.parametrize("batch", [1, 17])
@pytest.mark.parametrize("spec", [BUILTIN_NETWORKS["two_layer_sigmoid"], *TINY_NETWORKS[2:4], EXTRA_NETWORKS[0]])
def test_sgd_steps_equals_repeated_steps(spec, batch, rng):
    net = load_network(spec)
    params, X, T = random_problem(net, rng, batch=batch)
    copies = [p.copy() for p in params]
    for _ in range(3):
        last = net.sgd_step_kernel(*copies, X, T, 0.5)
    assert net.sgd_steps_kernel(*params, X, T, 0.5, 3) == pytest.approx(last, rel=1e-12)
    for a, b in zip(params, copies):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert net.sgd_steps(*params, X, T, 0.5, 0) == 0  # no step: nothing changes
    for a, b in zip(params, copies):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("spec", NETWORKS)
def test_packed_step_is_the_same_step_on_one_flat_vector(spec, dtype, rng):
    """sgd_step_packed(theta) computes exactly what sgd_step does on the unpacked parameters."""
    net = load_network(spec)
    params, X, T = random_problem(net, rng, batch=5, dtype=dtype)
    theta = net.pack(*params)
    assert theta.shape == (net.PARAM_OFFSETS[-1],) and theta.dtype == dtype
    views = net.unpack(theta)
    for view, param in zip(views, params):
        np.testing.assert_array_equal(view, param)
    loss = net.sgd_step_packed(theta, X, T, 0.3)
    assert loss == net.sgd_step(*params, X, T, 0.3)
    for name, view, param in zip(net.PARAM_NAMES, views, params):
        np.testing.assert_array_equal(view, param, err_msg=name)  # the views follow theta's update


def test_packed_step_refuses_a_vector_of_the_wrong_size():
    net = load_network(BUILTIN_NETWORKS["two_layer_sigmoid"])
    with pytest.raises(ValueError, match="theta must be a flat array of 10 parameters"):
        net.sgd_step_packed(np.zeros(9), np.zeros((1, 2)), np.zeros((1, 2)), 0.1)
    with pytest.raises(ValueError, match="X has shape"):
        net.sgd_step_packed(np.zeros(10), np.zeros((1, 3)), np.zeros((1, 2)), 0.1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch", [1, 3, 17])
@pytest.mark.parametrize("spec", TINY_NETWORKS)
def test_scalar_step_equals_the_matrix_step(spec, batch, dtype, rng):
    """sgd_step_kernel (scalar step) against sgd_step_into (the matrix step on a workspace)."""
    net = load_network(spec)
    assert net.SCALAR_STEP
    params, X, T = random_problem(net, rng, batch=batch, dtype=dtype)
    scalar, matrix = [p.copy() for p in params], [p.copy() for p in params]
    loss = net.sgd_step_kernel(*scalar, X, T, 0.3)
    expected = net.sgd_step_into(*matrix, X, T, 0.3, *net.make_workspace(X))
    tolerance = SCALAR_TOLERANCE[dtype]
    assert loss == pytest.approx(expected, rel=tolerance)
    for name, a, b, before in zip(net.PARAM_NAMES, scalar, matrix, params):
        assert a.dtype == dtype
        assert not np.array_equal(b, before), name  # the step moved every parameter
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * np.abs(b).max(), err_msg=name)


# Ten 8 x 8 layers: every layer tiny, the step too long (SCALAR_MAX_LINES) for the scalar form.
LONG_TINY_NETWORK = " ".join([f"affine({TINY_WIDTH},{TINY_WIDTH}) tanh"] * 9) + f" affine({TINY_WIDTH},2) mse"


def scalar_step_of(spec):
    """The scalar step the pass derives from a spec's lowered statements (None: matrix step)."""
    return scalar_step(Lowering(parse_net(spec)))


@pytest.mark.parametrize("spec, tiny", [
    ("affine(3,8) sigmoid affine(8,4) formula(x/(1+abs(x))) affine(4,2) mse", True),  # 142 lines a row
    ("affine(8,8) sigmoid affine(8,8) mse", True),  # 119 lines a row
    (LONG_TINY_NETWORK, False),  # past SCALAR_MAX_LINES: compiles slower than the matrix step
    (f"affine(2,{TINY_WIDTH + 1}) relu affine({TINY_WIDTH + 1},2) mse", False),
    (BUILTIN_NETWORKS["two_layer_relu"], False),
    (BUILTIN_NETWORKS["two_layer_sigmoid"], True),
])
def test_only_tiny_networks_get_the_scalar_step(spec, tiny):
    assert (scalar_step_of(spec) is not None) == tiny


def compiled_kernels(net) -> dict:
    """name -> number of compiled signatures, for every numba dispatcher of a network module."""
    return {name: len(f.signatures) for name, f in vars(net).items()
            if isinstance(f, numba.core.dispatcher.Dispatcher) and f.signatures}


def fresh_network(spec):
    """The module for a spec that no other test loads, so nothing in it is compiled yet."""
    net = load_network(spec)
    assert compiled_kernels(net) == {}, "another test compiled this network first: pick another spec"
    return net


def test_tiny_network_entry_points_share_one_compiled_scalar_step(rng):
    """sgd_step compiles sgd_step_kernel alone; sgd_steps and sgd_step_packed call that same
    compiled body instead of compiling the whole scalar step again (issue 19: each did)."""
    net = fresh_network("affine(2,3) sigmoid affine(3,3) tanh affine(3,1) mse")
    assert net.SCALAR_STEP
    params, X, T = random_problem(net, rng, batch=3)
    net.sgd_step(*params, X, T, 0.1)
    # and the scalar sigmoid it calls, a small jit function of its own (not inlined by numba)
    assert compiled_kernels(net) == {"sgd_step_kernel": 1, "_sigmoid_libm": 1}
    net.sgd_steps(*params, X, T, 0.1, 2)
    net.sgd_step_packed(net.pack(*params), X, T, 0.1)
    assert compiled_kernels(net) == {"sgd_step_kernel": 1, "_sigmoid_libm": 1, "sgd_steps_kernel": 1,
                                     "sgd_step_packed_kernel": 1}
    source = Path(net.__file__).read_text()
    assert source.count("# ---- parameters, read once ----") == 1  # one scalar step in the module


def test_matrix_step_compiles_only_what_sgd_step_calls(rng):
    """A network too wide for the scalar step: its first sgd_step compiles the step's own
    functions, not forward_kernel, loss_and_grads_kernel or sgd_steps_kernel."""
    net = fresh_network(f"affine(3,{TINY_WIDTH + 1}) sigmoid affine({TINY_WIDTH + 1},2) squared-error")
    assert not net.SCALAR_STEP
    params, X, T = random_problem(net, rng, batch=3)
    net.sgd_step(*params, X, T, 0.1)
    compiled = compiled_kernels(net)
    assert "sgd_step_kernel" in compiled
    assert not {"forward_kernel", "loss_and_grads_kernel", "sgd_steps_kernel", "sgd_step_packed_kernel"} & set(compiled)
    # one dtype: one signature per kernel (a helper has one per argument layout, e.g. W and W.T)
    assert all(count == 1 for name, count in compiled.items() if not name.startswith("_")), compiled


def test_conv_net_first_step_compiles_its_kernel_with_the_image_helpers_inside(rng):
    """A conv net's first sgd_step compiles its step kernel and the per-layer helpers it calls
    (the update, column sums), not another entry point's kernel. The image helpers are inlined
    into the step (compiled apart, LLVM optimised them twice), so none is compiled on its own;
    the helpers that are carry no CPython wrapper, and calling one from Python raises rather
    than crashing the process."""
    net = fresh_network("input(1,5,5) conv2d(1,2,2) relu maxpool(2) flatten affine(8,3) softmax-cross-entropy")
    params, X, T = random_problem(net, rng, batch=3, dtype=np.float32)
    net.sgd_step(*params, X, T, 0.1)
    compiled = compiled_kernels(net)
    assert "sgd_step_kernel" in compiled
    assert set(compiled) <= reachable_from(net, "sgd_step_kernel"), compiled
    assert not {"forward_kernel", "loss_and_grads_kernel", "sgd_steps_kernel", "sgd_step_packed_kernel"} & set(compiled)
    image_helpers = {"_im2col", "_conv2d_product", "_conv2d_param_grads", "_maxpool_forward", "_maxpool_backward_tiled"}
    assert image_helpers <= reachable_from(net, "sgd_step_kernel")  # the step does call them
    assert not image_helpers & set(compiled), compiled
    helpers = [name for name in compiled if name.startswith("_")]
    assert helpers, compiled
    for name in helpers:
        assert getattr(net, name).targetoptions["no_cpython_wrapper"], name
    assert not net.sgd_step_kernel.targetoptions["no_cpython_wrapper"]
    with pytest.raises(TypeError, match=f"{helpers[0]} is a private kernel"):
        getattr(net, helpers[0])(X, X)


MATRIX_NETWORK = f"affine(3,{TINY_WIDTH + 2}) tanh affine({TINY_WIDTH + 2},2) softmax-cross-entropy"
MODES_NETWORK = "affine(3,5) batchnorm relu dropout(0.5) affine(5,2) softmax-cross-entropy"


def entry_point_calls(net, rng):
    """entry point -> (a call of it on float32 arrays, the kernel it calls)."""
    params, X, T = random_problem(net, rng, batch=3, dtype=np.float32)
    if hasattr(net, "STATE_NAMES"):  # training and inference modes (batch norm, dropout)
        state, masks = net.init_state(np.float32), net.make_masks(3, rng, np.float32)
        return {"forward": (lambda: net.forward(*params, X, state=state), "predict_kernel"),
                "loss": (lambda: net.loss(*params, X, T, state=state), "inference_loss_kernel"),
                "loss_and_grads": (lambda: net.loss_and_grads(*params, X, T, masks=masks), "loss_and_grads_kernel"),
                "sgd_step": (lambda: net.sgd_step(*params, X, T, 0.1, state=state, masks=masks), "sgd_step_kernel"),
                "train_step_adam": (lambda: net.train_step_adam(*params, net.init_state_adam(*params), X, T,
                                                                running=state, masks=masks), "train_step_adam_kernel")}
    return {"forward": (lambda: net.forward(*params, X), "forward_kernel"),
            "loss_and_grads": (lambda: net.loss_and_grads(*params, X, T), "loss_and_grads_kernel"),
            "sgd_step": (lambda: net.sgd_step(*params, X, T, 0.1), "sgd_step_kernel"),
            "sgd_steps": (lambda: net.sgd_steps(*params, X, T, 0.1, 2), "sgd_steps_kernel"),
            "sgd_step_packed": (lambda: net.sgd_step_packed(net.pack(*params), X, T, 0.1), "sgd_step_packed_kernel"),
            "train_step_momentum": (lambda: net.train_step_momentum(*params, net.init_state_momentum(*params), X, T),
                                    "train_step_momentum_kernel")}


def reachable_from(module, name) -> set[str]:
    """The module-level functions a function's source can reach by name (ast), itself included
    (``f = jit(g)`` defines f as reaching g)."""
    tree = ast.parse(Path(module.__file__).read_text())
    defined = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    defined |= {node.targets[0].id: node.value for node in tree.body
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}
    reached, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in reached or current not in defined:
            continue
        reached.add(current)
        todo += [node.id for node in ast.walk(defined[current]) if isinstance(node, ast.Name)]
    return reached


@pytest.mark.parametrize("spec", [MATRIX_NETWORK, MODES_NETWORK])
def test_a_first_call_compiles_only_the_kernel_it_calls(spec, rng):
    """Each entry point's first call, in a module no other call has touched, compiles (or loads
    from numba's cache) the kernel it calls and what that kernel calls, and nothing else: no
    other entry point's kernel, no warm-up at import, and one dtype only (float32 here)."""
    path = load_network(spec).__file__
    for number, entry in enumerate(entry_point_calls(load_network(spec), rng)):
        net = files.import_generated(f"first_call_{abs(hash(spec))}_{number}", Path(path))
        assert compiled_kernels(net) == {}, "importing a module compiled something"
        call, kernel = entry_point_calls(net, np.random.default_rng(0))[entry]
        call()
        compiled = compiled_kernels(net)
        assert kernel in compiled, (entry, compiled)
        assert set(compiled) <= reachable_from(net, kernel), (entry, set(compiled) - reachable_from(net, kernel))
        # one dtype: one signature per kernel (a helper has one per argument layout, e.g. W and W.T)
        assert all(count == 1 for name, count in compiled.items() if not name.startswith("_")), (entry, compiled)


def test_scalar_step_falls_back_to_the_matrix_step_past_its_size_limit():
    """Past SCALAR_MAX_LINES a scalar step compiles slower than the matrix step: None."""
    assert scalar_step_of(LONG_TINY_NETWORK) is None
    small = scalar_step_of("affine(3,8) sigmoid affine(8,4) formula(x/(1+abs(x))) affine(4,2) mse")
    assert small is not None and small.size <= SCALAR_MAX_LINES


@pytest.mark.parametrize("spec", [BUILTIN_NETWORKS["two_layer_relu"], EXTRA_NETWORKS[0]])
def test_float32_agrees_with_float64(spec, rng):
    net = load_network(spec)
    seed = int(rng.integers(1 << 30))
    p64, X64, T64 = random_problem(net, np.random.default_rng(seed), batch=8)
    p32, X32, T32 = random_problem(net, np.random.default_rng(seed), batch=8, dtype=np.float32)
    loss64, *g64 = net.loss_and_grads(*p64, X64, T64)
    loss32, *g32 = net.loss_and_grads(*p32, X32, T32)
    assert float(np.float32(loss32)) == loss32  # computed in float32 (numba returns it as a Python float)
    assert abs(loss32 - loss64) / abs(loss64) < TOLERANCE[np.float32]
    for a, b in zip(g32, g64):
        assert a.dtype == np.float32
        assert relative_error(a, b) < TOLERANCE[np.float32]


def test_forward_gives_the_scores_before_the_loss(rng):
    net = load_network(BUILTIN_NETWORKS["moons_logistic"])
    (W, b), X, _ = random_problem(net, rng)
    np.testing.assert_allclose(net.forward(W, b, X), X @ W + b, rtol=1e-12)


def test_shape_and_dtype_errors_are_clear(rng):
    net = load_network(BUILTIN_NETWORKS["moons_logistic"])
    (W, b), X, T = random_problem(net, rng)
    with pytest.raises(ValueError, match=r"X has shape \(4, 3\), expected \(batch, 2\)"):
        net.loss_and_grads(W, b, np.ones((4, 3)), T)
    with pytest.raises(ValueError, match=r"W1 has shape"):
        net.sgd_step(np.ones((3, 1)), b, X, T, 0.1)
    with pytest.raises(ValueError, match="b1 is float64 but W1 is float32"):
        net.loss_and_grads(W.astype(np.float32), b, X, T)
    with pytest.raises(ValueError, match="C-contiguous"):
        net.sgd_step(np.ones((2, 2))[:, :1], b, X, T, 0.1)


@pytest.mark.parametrize("spec, message", [
    ("", "empty"),
    ("affine(2,3) relu affine(4,1) mse", r"layer 3 'affine\(4,1\)' \(column 18\): takes 4 inputs but the layer before gives 3"),
    ("affine(2,3) swish affine(3,1) mse", "layer 2 'swish' \\(column 13\\): unknown layer 'swish'"),
    ("affine(2,3) relu", "ends with a loss"),
    ("relu affine(2,3) mse", "starts with an affine layer"),
    ("affine(2) mse", "needs two positive sizes"),
    ("affine(2,3 mse", "never closed"),
    ("affine(2,1) sigmoid binary-cross-entropy", "applies the sigmoid itself"),
    ("affine(2,2) mse affine(2,2) mse", "loss can only be the last layer"),
    ("affine(2,2) formula(__import__('os')) mse", "layer 2"),
    ("affine(2,2) add mse", "two-input graph node"),
])
def test_bad_specs_name_the_position(spec, message):
    with pytest.raises(SympropError, match=message):
        parse_net(spec)


@pytest.fixture(scope="module")
def generated_afresh(tmp_path_factory):
    """What `symprop generate` writes into an empty folder (written once: 2 s of SymPy printing)."""
    folder = tmp_path_factory.mktemp("generated")
    generate(folder)
    return folder


def test_regenerating_reproduces_generated_byte_for_byte(generated_afresh):
    for path in sorted(files.GENERATED.glob("*.py")):
        assert (generated_afresh / path.name).read_bytes() == path.read_bytes(), path.name
    assert sorted(p.name for p in generated_afresh.glob("*.py")) == sorted(p.name for p in files.GENERATED.glob("*.py"))
    assert generate(generated_afresh) == []  # nothing rewritten when nothing changed


def test_check_reports_an_edited_file_with_a_diff_and_the_fix(generated_afresh, tmp_path):
    shutil.copytree(generated_afresh, tmp_path, dirs_exist_ok=True)
    target = tmp_path / "layers.py"
    target.write_text(target.read_text().replace("real = X.dtype.type", "real = np.float64", 1))
    result = subprocess.run([sys.executable, "-m", "symprop", "generate", "--check", "--directory", str(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    assert "-    real = np.float64" in result.stdout and "layers.py" in result.stdout
    assert "symprop generate" in result.stderr
    assert [p.name for p, _ in check(tmp_path)] == ["layers.py"]


def test_generated_files_are_marked_and_import_only_numpy_and_numba():
    for path in sorted(files.GENERATED.glob("*.py")):
        text = path.read_text()
        imports = {name.split(".")[0] for node in ast.walk(ast.parse(text))
                   for name in ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                                else [node.module] if isinstance(node, ast.ImportFrom) else [])}
        # llvmlite is numba's compiler, installed with it: the kernels' gemm symbols are its
        assert imports - set(sys.stdlib_module_names) <= {"numpy", "numba", "llvmlite"}, (path.name, imports)
        if path.name == "__init__.py":
            continue
        head = text.split("\n\n")[0]
        assert "GENERATED FILE - do not edit" in head and "Regenerate with: symprop generate" in head
        assert "Input hash: " in head and "Body hash: " in head
    # matrix and scalar steps, steps back through time and through attention: every gradient
    # statement (a write of a layer's gradient array, dz2[n, j] = ..., dhs1[n, 2 - r, m] = ...,
    # dz2_0 = ...) says which derivative it is; allocations of the arrays are not ones
    for path in sorted(files.GENERATED.glob("net_*.py")):
        gradient_lines = [line for line in map(str.strip, path.read_text().splitlines())
                          if re.match(r"d\w*\d(\[[^\]]*\])? \+?= ", line) and "np.empty" not in line]
        assert gradient_lines and all("# dL/d" in line for line in gradient_lines), path.name


def test_every_built_in_network_is_gradient_checked():
    """The built-ins left out of NETWORKS above are each checked, against central differences
    and their transcript, by a test of their family's file."""
    assert set(WORKED_EXAMPLE_MODULES) <= set(BUILTIN_NETWORKS)
    sources = "".join(path.read_text() for path in (ROOT / "tests").glob("test_*.py"))
    for name in WORKED_EXAMPLE_MODULES:
        assert f'assert_committed_module_is_the_worked_example("{name}", rng)' in sources, name


def test_network_outside_generated_goes_to_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMPROP_CACHE", str(tmp_path))
    net = load_network("affine(3,2) tanh affine(2,2) softmax-cross-entropy")
    assert Path(net.__file__).parent == tmp_path / "networks" / files.generator_fingerprint()
    assert net.SPEC == "affine(3,2) tanh affine(2,2) softmax-cross-entropy"


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="already running without the JIT")
def test_kernels_pass_with_the_jit_disabled():
    """The same kernel tests, run as plain Python (NUMBA_DISABLE_JIT=1) in a subprocess."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                             "tests/test_kernels.py", "-k", "not dispatchers"],
                            capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-2000:]


def _whitelist_formulas():
    from symprop.symbolic.formula import ARITY, FUNCTIONS
    return [f"{name}(x, x/2)" if ARITY.get(name) == 2 else f"{name}(x*x/4 + 1/2)" if name in ("log", "ln", "sqrt") else f"{name}(x)"
            for name in sorted(FUNCTIONS)]


def _formula_module(folder, module_name, formulas):
    """A generated module with one elementwise layer f0, f1, ... per formula, imported."""
    import importlib.util
    from symprop.codegen.layer_kernels import layers_module_body
    from symprop.symbolic.layers import Registry, formula_layer
    from symprop.codegen import files
    body, _ = layers_module_body(Registry([formula_layer(f, name=f"f{i}") for i, f in enumerate(formulas)]))
    path = folder / f"{module_name}.py"
    # with a header, as the generator writes it (a module without one warns that it was edited)
    path.write_text(files.header(f"Kernels of {len(formulas)} test formulas.", "codegen/layer_kernels.py",
                                 "tests/test_networks.py", [], "test", body) + body)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def whitelist_kernels(tmp_path_factory):
    """One generated module with an elementwise layer for every whitelisted function."""
    return _formula_module(tmp_path_factory.mktemp("whitelist"), "whitelist_kernels", _whitelist_formulas())


MISH = "x*tanh(log(1+exp(x)))"


def test_mish_kernels_are_accurate_from_minus_800_to_800(tmp_path):
    """Mish prints with the one-exp helper _tanh_softplus; forward, backward and the fused
    kernel must stay within a few ulps of 40-digit values where exp(x) under- or overflows."""
    module = _formula_module(tmp_path, "mish_kernels", [MISH])
    x = np.array([-800.0, -100.0, -30.0, -21.0, -5.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 3.0, 21.0, 100.0, 800.0])
    X = sp.Symbol("X", real=True)
    mish = X * sp.tanh(sp.log(1 + sp.exp(X)))
    exact_y = np.array([float(mish.subs(X, sp.Float(v, 60)).evalf(40)) for v in x])
    exact_dx = np.array([float(sp.diff(mish, X).subs(X, sp.Float(v, 60)).evalf(40)) for v in x])
    dout = np.ones_like(x)
    y, dx = module.f0_forward(x), module.f0_backward(dout, x)
    fused_y, fused_dx = module.f0_forward_backward(x, dout)
    for got in (y, fused_y):
        np.testing.assert_allclose(got, exact_y, rtol=1e-14, atol=1e-300)
    for got in (dx, fused_dx):
        np.testing.assert_allclose(got, exact_dx, rtol=1e-14, atol=1e-300)
    y32, dx32 = module.f0_forward_backward(x.astype(np.float32), dout.astype(np.float32))
    assert y32.dtype == np.float32 and np.all(np.isfinite(y32)) and np.all(np.isfinite(dx32))
    np.testing.assert_allclose(y32, exact_y.astype(np.float32), rtol=1e-6, atol=1e-37)
    np.testing.assert_allclose(dx32, exact_dx.astype(np.float32), rtol=1e-6, atol=1e-37)


@pytest.mark.parametrize("index, formula", list(enumerate(_whitelist_formulas())))
def test_every_whitelisted_function_prints_and_has_correct_gradients(whitelist_kernels, index, formula, rng):
    """Each function a formula may use has a printing rule, and its derived rule is right."""
    from symprop.symbolic.layers import formula_layer
    forward = getattr(whitelist_kernels, f"f{index}_forward")
    backward = getattr(whitelist_kernels, f"f{index}_backward")
    saved = formula_layer(formula).derive().saved
    x = rng.uniform(0.2, 1.2, 6) * rng.choice([-1.0, 1.0], 6)
    dout = rng.normal(size=6)
    y = forward(x)
    dx = backward(dout, *[{"x": x, "y": y}[name] for name in saved])
    numeric = numerical_gradient(lambda v: float(np.sum(dout * forward(v))), x)
    assert relative_error(dx, numeric) < GRADCHECK_TOLERANCE, formula


def test_the_generator_fingerprint_follows_every_source_of_symbolic_and_codegen(tmp_path):
    """The run-time cache is named after the generator's fingerprint: an edit to any module of
    symbolic/ or codegen/ must give a new one, so no stale cached module is ever reused."""
    for folder in files.GENERATOR_FOLDERS:
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    before = files._fingerprint(tmp_path)
    assert before == files._fingerprint.__wrapped__(ROOT)  # the same sources, the same fingerprint
    for edited in ("codegen/printer.py", "symbolic/ops/elementwise.py"):
        path = tmp_path / edited
        path.write_text(path.read_text() + "\n# an edit\n")
        assert files._fingerprint.__wrapped__(tmp_path) != before, edited


def test_generated_headers_do_not_hash_the_generator_sources(monkeypatch):
    """A comment edit in codegen/ must not churn every committed module: the committed text
    (header included) depends on the modules' inputs and what the printer prints, never on a
    hash of the generator's files. That hash names the run-time cache folder instead."""
    from symprop.codegen.generate import expected_files
    before = {path.name: text for path, text in expected_files().items()}

    def edited_generator():
        raise AssertionError("the committed headers read the generator's sources")
    monkeypatch.setattr(files, "generator_fingerprint", edited_generator)
    assert {path.name: text for path, text in expected_files().items()} == before
    monkeypatch.setattr(files, "generator_fingerprint", lambda: "another-generator")
    assert files.cache_folder("networks").name == "another-generator"


def test_input_hash_follows_the_spec_and_the_ops_definitions():
    from symprop.codegen.network import network_hash
    first = network_hash(parse_net("affine(2,3) tanh affine(3,1) mse"))
    assert first == network_hash(parse_net("affine(2,3) tanh affine(3,1) mse"))
    assert first != network_hash(parse_net("affine(2,3) relu affine(3,1) mse"))
    assert files.inputs_hash("ab", "c") != files.inputs_hash("a", "bc")


@pytest.mark.parametrize("spec", [
    "affine(2,3,l2=0.1) batchnorm tanh dropout(0.5) affine(3,3) layernorm log-softmax-nll",
    "input(1,6,6) conv2d(1,2,3) relu maxpool(2) flatten affine(8,2) softmax mse",
    "affine(2,3) relu tanh affine(3,1) mse",
])
def test_kernels_and_transcripts_read_one_set_of_names(spec, tmp_path, monkeypatch):
    """Values and parameters are named once, when the spec is parsed (graph.chain_names): the
    kernel's parameters and the transcript's are the same names in the same order."""
    from symprop.symbolic.graph import chain_names
    from symprop.symbolic.graph_transcript import plan_layers
    monkeypatch.setenv("SYMPROP_CACHE", str(tmp_path))
    graph = parse_net(spec)
    transcript_params = [name for layer in plan_layers(graph) for name in layer.params.values()]
    assert load_network(spec).PARAM_NAMES == tuple(transcript_params)
    assert [layer.out for layer in plan_layers(graph)] == [n.value or "L" for n in chain_names(graph)]
    assert len({n.value for n in chain_names(graph) if n.value}) == sum(1 for n in chain_names(graph) if n.value)
