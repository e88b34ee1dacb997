"""The kernels' matrix product, _gemm, compiled: every combination of transposes, adding into
out, operands and outputs whose rows are strided (a step's slab of a sequence buffer, a block
of columns), empty sizes, and a clear error for shapes that do not agree or rows BLAS cannot
read. Its Python body (numpy's product) is what runs with numba's JIT disabled; both must
agree with numpy, in float32 and float64."""
from __future__ import annotations

import numba
import numpy as np
import pytest

from symprop.generated import net_two_layer_relu as module

TOLERANCE = {np.float32: 1e-5, np.float64: 1e-13}  # relative to the largest element of the product


@numba.njit
def compiled_gemm(a, b, out, transpose_a, transpose_b, accumulate):
    module._gemm(a, b, out, transpose_a, transpose_b, accumulate)


def expected(a, b, out, transpose_a, transpose_b, accumulate):
    product = (a.T if transpose_a else a).astype(np.float64) @ (b.T if transpose_b else b).astype(np.float64)
    return product + out if accumulate else product


def check(gemm, a, b, out, transpose_a, transpose_b, accumulate):
    want = expected(a, b, out, transpose_a, transpose_b, accumulate)
    gemm(a, b, out, transpose_a, transpose_b, accumulate)
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(out, want, rtol=0, atol=TOLERANCE[out.dtype.type] * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gemm", [compiled_gemm, module._gemm], ids=["compiled", "python"])
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
def test_every_transpose_and_accumulate(dtype, gemm, transpose_a, transpose_b, accumulate, rng):
    m, k, n = 5, 3, 4
    a = rng.normal(size=(k, m) if transpose_a else (m, k)).astype(dtype)
    b = rng.normal(size=(n, k) if transpose_b else (k, n)).astype(dtype)
    out = rng.normal(size=(m, n)).astype(dtype)
    check(gemm, a, b, out, transpose_a, transpose_b, accumulate)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_rows_are_read_and_written_in_place(dtype, rng):
    sequence = rng.normal(size=(4, 6, 3)).astype(dtype)  # (N, T, width): a step's slab has strided rows
    W = rng.normal(size=(3, 5)).astype(dtype)
    out = np.zeros((4, 5), dtype)
    check(compiled_gemm, sequence[:, 2, :], W, out, False, False, False)
    wide = rng.normal(size=(4, 12)).astype(dtype)  # a block of columns, written through its view
    before = wide.copy()
    block = wide[:, 3:8]
    check(compiled_gemm, sequence[:, 1, :], W, block, False, False, True)
    np.testing.assert_array_equal(wide[:, :3], before[:, :3])  # nothing outside the block is touched
    np.testing.assert_array_equal(wide[:, 8:], before[:, 8:])
    check(compiled_gemm, W, sequence[:, 0, :], np.zeros((5, 4), dtype), True, True, False)


@pytest.mark.parametrize("accumulate", [False, True])
def test_an_empty_sum_is_zero_and_empty_outputs_are_left_alone(accumulate):
    a, b = np.zeros((3, 0)), np.zeros((0, 2))
    out = np.full((3, 2), 7.0)
    compiled_gemm(a, b, out, False, False, accumulate)
    assert (out == (7.0 if accumulate else 0.0)).all()
    compiled_gemm(np.zeros((0, 4)), np.ones((4, 2)), np.zeros((0, 2)), False, False, False)


def test_shapes_that_do_not_agree_and_unreadable_rows_are_errors():
    with pytest.raises(ValueError, match="shapes of a, b and out do not agree"):
        compiled_gemm(np.ones((3, 2)), np.ones((3, 2)), np.zeros((3, 2)), False, False, False)
    with pytest.raises(ValueError, match="shapes of a, b and out do not agree"):
        compiled_gemm(np.ones((3, 2)), np.ones((2, 4)), np.zeros((3, 5)), False, False, False)
    every_other = np.ones((3, 8))[:, ::2]  # elements not side by side in a row: BLAS cannot read it
    with pytest.raises(ValueError, match="rows are not contiguous"):
        compiled_gemm(every_other, np.ones((4, 2)), np.zeros((3, 2)), False, False, False)


def test_the_modules_of_one_generator_share_one_compiled_gemm():
    """numba compiles _gemm's implementation once per function object it is registered on: every
    module written by this generator uses the first one's, so a process that loads many
    networks compiles it once (as numba's own np.dot)."""
    from symprop.generated import layers, net_lstm_two_steps

    assert module._gemm is layers._gemm is net_lstm_two_steps._gemm


# ---- which BLAS: MKL's gemm where installed, else SciPy's OpenBLAS --------------------------
MKL_INSTALLED = module.GEMM_BLAS == "mkl" or module._mkl_runtime("") is not None
CHILD = """
import json, sys
import numpy as np
from symprop.codegen.network import load_network
net = load_network("affine(30,20) tanh affine(20,3) mse")  # big enough for BLAS products
rng = np.random.default_rng(0)
params = [rng.normal(0, 0.5, shape) for shape in net.PARAM_SHAPES]
X, T = rng.normal(size=(5, 30)), rng.normal(size=(5, 3))
loss, *grads = net.loss_and_grads_kernel(*params, X, T)
stats = net.loss_and_grads_kernel.stats
print(json.dumps({"blas": net.GEMM_BLAS, "loss": loss, "grads": [g.tolist() for g in grads],
                  "compiled": stats.cache_misses and sum(stats.cache_misses.values())}))
"""


def _run_child(tmp_path, blas: str, check=True):
    """A fresh process that loads a network (its numba cache in tmp_path) with SYMPROP_BLAS=blas."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "SYMPROP_BLAS": blas, "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
           "SYMPROP_CACHE": str(tmp_path / "symprop")}
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300)
    if not check:
        return proc
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_symprop_blas_openblas_calls_the_blas_numba_s_np_dot_calls(tmp_path):
    """SYMPROP_BLAS=openblas: the kernels' gemm symbols point at SciPy's OpenBLAS (what numba's
    np.dot calls), whether or not MKL is installed; the products are right."""
    result = _run_child(tmp_path, "openblas")
    assert result["blas"] == "openblas" and result["compiled"]
    assert np.isfinite(result["loss"]) and len(result["grads"]) == 4


def test_a_symprop_blas_that_is_not_known_or_not_installed_is_a_clear_error(tmp_path):
    proc = _run_child(tmp_path, "atlas", check=False)
    assert proc.returncode != 0 and "SYMPROP_BLAS='atlas': say mkl or openblas" in proc.stderr
    if not MKL_INSTALLED:
        proc = _run_child(tmp_path, "mkl", check=False)
        assert proc.returncode != 0 and "MKL's runtime library (libmkl_rt) was not found: pip install mkl" in proc.stderr
    # from the command line, one line naming the setting, no traceback
    import os
    import subprocess
    import sys
    env = {**os.environ, "SYMPROP_BLAS": "atlas", "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
           "SYMPROP_CACHE": str(tmp_path / "symprop")}
    proc = subprocess.run([sys.executable, "-m", "symprop", "train", "--data", "digits", "--epochs", "1"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "symprop: error: SYMPROP_BLAS='atlas': say mkl or openblas, or leave it unset (MKL where installed)"]


@pytest.mark.skipif(not MKL_INSTALLED, reason="MKL is the optional fast BLAS (pip install mkl), not a test dependency")
def test_kernels_cached_with_one_blas_load_with_the_other_and_agree(tmp_path):
    """The kernels name the gemm symbols, not a library: a kernel compiled in a process that uses
    MKL loads from the cache in one that uses OpenBLAS (nothing compiled again) and gives the same
    loss and gradients to float64 rounding."""
    with_mkl = _run_child(tmp_path, "mkl")
    with_openblas = _run_child(tmp_path, "openblas")
    assert (with_mkl["blas"], with_openblas["blas"]) == ("mkl", "openblas")
    assert with_mkl["compiled"] and not with_openblas["compiled"]
    assert with_openblas["loss"] == pytest.approx(with_mkl["loss"], rel=1e-13)
    for got, want in zip(with_openblas["grads"], with_mkl["grads"]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
