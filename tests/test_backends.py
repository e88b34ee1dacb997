"""A second backend, built in this file from the backend seam alone: plain Python, no JIT.

Everything numba-specific (imports, the jit decorator and its flags, the decorators a function
definition gets, the module-level update and workspace definitions, the exp dispatch) is the
numba backend's; the statements, the functions they make up and the input checks are shared.
So a tiny network's module printed through this backend runs as ordinary Python and NumPy, and
its gradients and training steps must give the numba kernels' numbers."""
import numpy as np
import pytest

from symprop.codegen import common, files
from symprop.codegen.backend import Backend
from symprop.codegen.network import load_network, network_module_text
from symprop.codegen.statements import StatementPrinter

PLAIN_START = '''
import hashlib
import itertools
import math
import warnings

import numpy as np


def jit(function, **overrides):
    """No compiler: the function runs as Python."""
    return function


jit_inline = jit


'''

PLAIN_EXP = '''
def _exp(v):
    """exp(v), NumPy's."""
    return np.exp(v)
'''


PLAIN_TANH = '''
def _tanh(v):
    """tanh(v), NumPy's."""
    return np.tanh(v)
'''


PLAIN_GEMM = '''
def _gemm(a, b, out, transpose_a, transpose_b, accumulate):
    """out = a b (+ out), a or b transposed where asked, NumPy's."""
    product = np.dot(a.T if transpose_a else a, b.T if transpose_b else b)
    if accumulate:
        out += product
    else:
        out[:] = product
'''

# the numba backend's helpers that are numba's (exp's and tanh's dtype dispatches, the BLAS call)
# -> this backend's own
PLAIN_HELPERS = {"_exp": PLAIN_EXP, "_tanh": PLAIN_TANH, "_gemm": PLAIN_GEMM}


def plain_helper_source(names) -> str:
    """The numba backend's helpers with the numba-only ones replaced."""
    text = common.helper_source(names)
    used = [name for name in PLAIN_HELPERS if common.ALL_HELPERS[name] in text]
    for name in used:
        text = text.replace(common.ALL_HELPERS[name], "")
    return text + "".join(PLAIN_HELPERS[name] for name in used)


class PlainStatementPrinter(StatementPrinter):
    """The numba backend's statement printer, with every function left undecorated."""

    decorators = {"kernel": None, "holding_gil": None, None: None}


PLAIN_DEFINITIONS = {
    "sgd_update": '''
def _sgd_update(param, grad, step):
    """param -= step * grad, in place, with NumPy."""
    param.reshape(-1)[:] -= step * grad.reshape(-1)
''',
    "holding_gil": "# (no GIL to hold: the functions run as Python)",
    "workspace": lambda buffers: f'''
def make_workspace(X):
    N = X.shape[0]
    return ({"".join(f"np.empty({shape!r}, X.dtype), " for _, shape in buffers)})


_make_workspace = make_workspace
''',
}

PLAIN_PYTHON = Backend("python", PLAIN_START + common.CHECKS, PlainStatementPrinter, plain_helper_source,
                       PLAIN_DEFINITIONS)


@pytest.mark.parametrize("spec", [
    "affine-shared-bias(2,2) sigmoid affine-shared-bias(2,2) sigmoid squared-error",  # the 2-2-2 worked example
    "affine(3,4) tanh affine(4,3) softmax-cross-entropy",
])
def test_a_plain_python_backend_steps_to_the_numba_numbers(spec, tmp_path, rng):
    text = network_module_text(spec, backend=PLAIN_PYTHON)
    assert "import numba" not in text and "numba." not in text  # nothing of the numba backend
    assert "@jit\ndef forward_kernel" not in text and "\ndef forward_kernel" in text  # its kernels undecorated
    path = tmp_path / "plain_net.py"
    path.write_text(text)
    plain = files.import_generated("plain_python_net", path)
    compiled = load_network(spec)
    assert plain.PARAM_SHAPES == compiled.PARAM_SHAPES
    params = [rng.normal(0, 0.5, shape) for shape in compiled.PARAM_SHAPES]
    X = rng.normal(size=(5, compiled.INPUT_SIZE))
    T = (np.eye(compiled.OUTPUT_SIZE)[rng.integers(0, compiled.OUTPUT_SIZE, 5)]
         if compiled.LOSS == "softmax-cross-entropy" else rng.uniform(0, 1, (5, compiled.OUTPUT_SIZE)))
    plain_grads, compiled_grads = plain.loss_and_grads(*params, X, T), compiled.loss_and_grads(*params, X, T)
    for name, a, b in zip(("loss", *compiled.PARAM_NAMES), plain_grads, compiled_grads):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15, err_msg=name)
    plain_params, compiled_params = [p.copy() for p in params], [p.copy() for p in params]
    for _ in range(3):
        plain_loss = plain.sgd_step(*plain_params, X, T, 0.5)
        compiled_loss = compiled.sgd_step(*compiled_params, X, T, 0.5)
        assert plain_loss == pytest.approx(compiled_loss, rel=1e-13)
    for name, a, b in zip(compiled.PARAM_NAMES, plain_params, compiled_params):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15, err_msg=name)
    assert not np.allclose(plain_params[0], params[0])  # the steps moved the weights


def test_the_per_layer_kernels_print_through_the_plain_backend_to_the_numba_numbers(tmp_path, rng):
    """generated/layers.py's kernels are functions of statements too: printed by the plain
    backend (none of its kernels decorated), every layer family gives the numba kernels' numbers."""
    import symprop.generated.layers as compiled
    from symprop.codegen.layer_kernels import layers_module_body

    body, _ = layers_module_body(backend=PLAIN_PYTHON)
    assert "import numba" not in body and "@jit\ndef softmax_forward_kernel" not in body
    path = tmp_path / "plain_layers.py"
    path.write_text(files.header("Per-layer kernels, plain Python.", "codegen/layer_kernels.py",
                                 "tests/test_backends.py", [], "test", body) + body)
    plain = files.import_generated("plain_python_layers", path)
    x, W, b = rng.normal(size=(5, 4)), rng.normal(size=(4, 3)), rng.normal(size=3)
    t, g, dy = np.eye(4)[rng.integers(0, 4, 5)], rng.uniform(0.5, 1.5, 4), rng.normal(size=(5, 4))
    calls = {"softmax_forward": (x,), "softmax_backward": (dy, x), "mse_forward": (x, t), "mse_backward": (x, t),
             "softmax_cross_entropy_forward": (x, t), "multiclass_hinge_backward": (x, t),
             "batchnorm_forward": (x, g, g), "layernorm_backward": (dy, x, g[:1].repeat(5), g),
             "sigmoid_forward_backward": (x, dy),
             "affine_forward": (x, W, b), "affine_backward": (rng.normal(size=(5, 3)), x, W), "dropout_forward": (x, t)}
    images = rng.normal(size=(2, 2, 5, 4)).round()  # ties for max-pooling
    calls |= {"maxpool_backward": (rng.normal(size=(2, 2, 2, 2)), images, 2), "flatten_backward": (images.reshape(2, -1), images)}
    for name, args in calls.items():
        expected, got = getattr(compiled, name)(*args), getattr(plain, name)(*args)
        for a, c in zip(*(r if isinstance(r, tuple) else (r,) for r in (expected, got))):
            np.testing.assert_allclose(c, a, rtol=1e-12, atol=1e-15, err_msg=name)
