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
