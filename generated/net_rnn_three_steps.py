# Fused kernels of the network 'rnn(1,2,3) affine(2,1) squared-error'.
# GENERATED FILE - do not edit. Written by symprop's codegen/network.py.
# Regenerate with: symprop generate
# Input: spec rnn(1,2,3) affine(2,1) squared-error
# Input hash: 41a1a6003c8d9b42 (the inputs above, their ops' definitions and sympy 1.14.0)
# Body hash: abbb55b8a59fe6af

import hashlib
import itertools
import math
import warnings

import numba
import numpy as np

_JIT_FLAGS = dict(fastmath=False, error_model="numpy", nogil=True)


def jit(function, **overrides):
    """numba.njit with an on-disk cache, so a second process loads instead of compiling.

    Where no cache location is writable, compile without one; where a cache file is corrupt,
    clear that function's cache and compile afresh (numba itself would raise); where the cache
    cannot be written (a full disk, a read-only folder), keep the compiled kernel and warn once
    (numba itself would raise from inside the first call). ``overrides`` replace entries of
    _JIT_FLAGS for one kernel. Only the public kernels get numba's CPython wrapper; see
    _wrappers_for.
    """
    flags = {**_JIT_FLAGS, **_wrappers_for(function), **overrides}
    try:
        dispatcher = numba.njit(cache=True, **flags)(function)
    except RuntimeError:
        return _guard_private(numba.njit(cache=False, **flags)(function))
    cache = getattr(dispatcher, "_cache", None)
    if cache is None:  # NUMBA_DISABLE_JIT=1: a plain Python function
        return dispatcher
    load = cache.load_overload

    def load_or_recompile(*args, **kwargs):
        try:
            return load(*args, **kwargs)
        except Exception:
            try:
                cache.flush()
            except Exception:
                pass
            return None

    cache.load_overload = load_or_recompile
    save = cache.save_overload

    def save_or_skip(*args, **kwargs):
        try:
            save(*args, **kwargs)
        except OSError as exc:
            _cache_not_written(exc)

    cache.save_overload = save_or_skip
    return _guard_private(dispatcher)


def _wrappers_for(function):
    """numba builds every kernel two wrappers: one for calls from Python and one for use as a
    first-class function value. No kernel is used as a value, and a private kernel (_im2col,
    _apply_adam) is called only from other kernels, so those wrappers are skipped: building
    and optimising them was a tenth of a conv net's first step from empty caches (measured)."""
    return dict(no_cfunc_wrapper=True, no_cpython_wrapper=function.__name__.startswith("_"))


class _KernelOnly(numba.core.registry.CPUDispatcher):
    """A private kernel's dispatcher: kernels call it as before; a call from Python, which
    has no wrapper to go through and would crash the process, raises instead."""

    def __call__(self, *args, **kwargs):
        raise TypeError(f"{self.py_func.__name__} is a private kernel: it is called only from other kernels")


def _guard_private(dispatcher):
    if dispatcher.targetoptions.get("no_cpython_wrapper"):
        dispatcher.__class__ = _KernelOnly
    return dispatcher


_CACHE_WARNED = []


def _cache_not_written(exc):
    """A full disk or a read-only cache folder costs only the cache: say so once per process."""
    if not _CACHE_WARNED:
        _CACHE_WARNED.append(exc)
        warnings.warn(f"numba could not write its kernel cache ({exc.strerror or exc}); the kernels "
                      "run but compile again in every process (free space, or set NUMBA_CACHE_DIR)",
                      RuntimeWarning, stacklevel=3)


def jit_inline(function):
    """jit for the small scalar helpers called once per element (_exp, _sigmoid): inlined
    into the caller (numba's IR inlining), so the loop around them stays one vectorisable
    body. Inlining costs compile time at every call site; helpers called once per layer
    (matrix products, column sums, the update) are plain jit functions, except the image
    helpers (im2col, pooling): a step calls each once, and compiled apart they were optimised
    by LLVM on their own and again inside the step (inlined: 0.6 s less to a conv net's first
    step, measured)."""
    return numba.njit(inline="always", **_JIT_FLAGS)(function)


def _warn_if_edited():
    """Warn when this file's body no longer matches the hash in its header (edited by hand),
    or when the header itself is not intact: a line added above it or its hash line deleted
    (the rule of symprop's codegen/files.py recorded_body_hash)."""
    try:
        with open(__file__, "rb") as stream:
            lines = stream.read().decode("utf-8", "replace").splitlines(keepends=True)
    except OSError:
        return
    header = list(itertools.takewhile(lambda line: line.startswith("#"), lines))
    hashes = [line.split() for line in header if line.startswith("# Body hash: ")]
    body = "".join(lines[len(header):])
    if (len(header) < 2 or not header[1].startswith("# GENERATED FILE") or len(hashes) != 1
            or not header[-1].startswith("# Body hash: ") or len(hashes[0]) != 4):
        problem = "its generated-file header is missing or damaged"
    elif hashlib.sha256(body.encode()).hexdigest()[:16] != hashes[0][3]:
        problem = "its body does not match the hash in its header"
    else:
        return
    warnings.warn(f"{__file__} was edited by hand: {problem}. "
                  "Regenerate it with: symprop generate", stacklevel=2)


_warn_if_edited()


def _arrays(function, **arrays):
    """The arrays, C-contiguous, after checking they are float32/float64 arrays of one dtype."""
    first = None
    checked = []
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):
            raise ValueError(f"{function}: {name} must be a numpy array, got {type(value).__name__}")
        if value.dtype not in (np.float32, np.float64):
            raise ValueError(f"{function}: {name} has dtype {value.dtype}; the kernels take float32 or float64")
        if value.ndim == 0:  # numba would treat it as shape (1,) and hand back an array
            raise ValueError(f"{function}: {name} is a 0-d array; the kernels take arrays of at least one dimension")
        if first is None:
            first = name, value.dtype
        elif value.dtype != first[1]:
            raise ValueError(f"{function}: {name} is {value.dtype} but {first[0]} is {first[1]}; use one dtype")
        checked.append(np.ascontiguousarray(value))
    return checked


def _shape(function, name, array, shape):
    if array.shape != tuple(shape):
        raise ValueError(f"{function}: {name} has shape {array.shape}, expected {tuple(shape)}")


def _output(function, name, out, shape, dtype):
    """A new array, or the caller's preallocated one after checking it fits."""
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != tuple(shape):
        raise ValueError(f"{function}: {name} must be a {np.dtype(dtype).name} array of shape {tuple(shape)}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{function}: {name} must be C-contiguous and writeable")
    return out


def _overlap(a, b):
    """Whether two arrays share memory; where numpy cannot tell cheaply, assume they do."""
    if not np.may_share_memory(a, b):
        return False
    try:
        return np.shares_memory(a, b, max_work=100_000)
    except np.exceptions.TooHardError:
        return True


def _separate(function, written, read):
    """Refuse arrays a kernel writes (outputs, parameters updated in place) that share memory
    with an array it reads or with another one it writes: the kernel would read values it has
    already overwritten and return wrong numbers. ``written`` and ``read`` map names to the
    caller's arrays (None for an output the wrapper allocates)."""
    seen = [(name, value) for name, value in read.items() if isinstance(value, np.ndarray)]
    for name, value in written.items():
        if not isinstance(value, np.ndarray):
            continue
        for other, array in seen:
            if _overlap(value, array):
                raise ValueError(f"{function}: {name} shares memory with {other}; "
                                 f"pass separate arrays (a copy: {other}.copy())")
        seen.append((name, value))


def _rate(function, lr):
    """The learning rate as a finite float: a string or NaN would reach the kernel as a numba
    typing error or a silently ruined model."""
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, (int, float, np.integer, np.floating)):
        raise ValueError(f"{function}: lr must be a number, got {type(lr).__name__} {lr!r:.40}")
    try:
        rate = float(lr)
    except OverflowError:
        rate = math.inf
    if not math.isfinite(rate):
        raise ValueError(f"{function}: lr must be finite, got {lr!r:.40}")
    return rate


MAX_STEPS = 2**31 - 1


def _step_count(function, steps):
    """The number of steps as an int the kernel's loop counter holds (0 .. MAX_STEPS)."""
    if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)):
        raise ValueError(f"{function}: steps must be an integer, got {type(steps).__name__} {steps!r:.40}")
    if not 0 <= steps <= MAX_STEPS:
        raise ValueError(f"{function}: steps must be between 0 and {MAX_STEPS}, got {steps}")
    return int(steps)


@jit
def _add_bias(y, b):
    """y += 1 b: the bias row added to every row (b of size 1 is a shared bias)."""
    shared = b.shape[0] == 1
    for n in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[n, j] += b[0] if shared else b[j]


@jit
def _column_sums(a, out):
    """out = 1^T a: the sum over the batch (rows) of each column. A caller that has no out
    passes a new array: an allocating branch in here was compiled into every step, which never
    takes it (numba's np.empty, 0.15 s of a first step)."""
    out[:] = 0
    for n in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[j] += a[n, j]
    return out


@jit
def _dot_loops(a, b, out):
    """out = a b with plain loops: for tiny matrices, cheaper than calling BLAS. A caller that
    has no out passes a new array: an allocating branch in here was compiled into every step's
    copy of it (0.1 s of a tiny net's first step, measured)."""
    for n in range(a.shape[0]):
        for j in range(b.shape[1]):
            total = a.dtype.type(0)
            for i in range(a.shape[1]):
                total += a[n, i] * b[i, j]
            out[n, j] = total
    return out

def _gemm(a, b, out, transpose_a, transpose_b, accumulate):
    """out = a b (+ out where accumulate), a or b read transposed where asked: numpy's product
    outside kernels; in kernels, one call of BLAS's gemm (MKL's where installed, else the one
    numba's np.dot calls).

    np.dot compiles a specialisation of itself for every combination of its operands'
    layouts, and a transposed operand is another layout: passing the untransposed array and a
    flag, every product of a step shares one (a conv net's first step, 3.3 -> 2.7 s of CPU).
    Its rows need only be contiguous, so a step's slab of a sequence buffer is read where it
    is, and ``accumulate`` adds into out in the same call."""
    product = np.dot(a.T if transpose_a else a, b.T if transpose_b else b)
    if accumulate:
        out += product
    else:
        out[:] = product




@jit_inline
def _leading_contiguous(matrix):
    """The leading dimension of a C-contiguous matrix: its row length."""
    return max(1, matrix.shape[1])


@jit_inline
def _leading(matrix):
    """The distance between a matrix's rows, in elements, as BLAS reads it (its leading
    dimension), for a view whose rows may be strided; BLAS needs each row's elements side by
    side."""
    rows, columns = matrix.shape
    size = matrix.itemsize
    step = matrix.strides[0] // size if rows > 1 else columns
    if (columns > 1 and matrix.strides[1] != size) or matrix.strides[0] % size or step < columns:
        raise ValueError("_gemm: a matrix whose rows are not contiguous")
    return max(1, step)


def _mkl_runtime(choice):
    """MKL's runtime library (libmkl_rt, ``pip install mkl``), loaded, or None where it is not
    installed or SYMPROP_BLAS=openblas. At a sequence step's shapes (32 x 256 by 256 x 1024) its
    gemm was twice as fast as the OpenBLAS SciPy ships (measured: 177-201 against 99-102
    GFLOP/s in float32 on one core of an AVX-512 Xeon), and 6-10% faster at 1024 x 784 x 1024."""
    import ctypes
    import ctypes.util
    import glob
    import os
    import sys

    if choice == "openblas":
        return None
    installed = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.*")))  # the mkl wheel's
    for path in filter(None, [*installed, ctypes.util.find_library("mkl_rt")]):
        try:
            library = ctypes.CDLL(path)
            library.sgemm_, library.dgemm_  # noqa: B018  (an MKL without them is no use here)
        except (OSError, AttributeError):
            continue
        if hasattr(library, "MKL_Set_Interface_Layer"):
            library.MKL_Set_Interface_Layer(0)  # LP64: 32-bit integers, as SciPy's BLAS takes them
        return library
    if choice == "mkl":
        raise ImportError("SYMPROP_BLAS=mkl, but MKL's runtime library (libmkl_rt) was not found: pip install mkl")
    return None


def _choose_blas():
    """Point the symbols symprop_sgemm and symprop_dgemm, which the kernels call, at MKL's gemm
    where it is installed (SYMPROP_BLAS=openblas says not to), else at the gemm of the OpenBLAS
    SciPy ships, the one numba's np.dot calls. Both take gemm's Fortran arguments, and the
    kernels name only the symbols, so a kernel cached in a process with one BLAS loads in a
    process with the other. Returns the library's name."""
    import ctypes
    import os

    import llvmlite.binding  # numba's compiler, installed with it
    from numba.core.extending import get_cython_function_address

    choice = os.environ.get("SYMPROP_BLAS", "").strip().lower()
    if choice not in ("", "mkl", "openblas"):
        raise ImportError(f"SYMPROP_BLAS={choice!r}: say mkl or openblas, or leave it unset (MKL where installed)")
    mkl = _mkl_runtime(choice)
    for name in ("sgemm", "dgemm"):
        address = (ctypes.cast(getattr(mkl, name + "_"), ctypes.c_void_p).value if mkl is not None
                   else get_cython_function_address("scipy.linalg.cython_blas", name))
        llvmlite.binding.add_symbol("symprop_" + name, address)
    return "openblas" if mkl is None else "mkl"


@numba.extending.intrinsic
def _address_of(typingctx, value):
    """A pointer to a copy of value on the stack: Fortran's gemm takes every argument by address."""
    def codegen(context, builder, signature, args):
        from numba.core import cgutils

        return cgutils.alloca_once_value(builder, args[0])
    return numba.types.CPointer(value)(value), codegen


@numba.extending.intrinsic
def _data_pointer(typingctx, matrix):
    """A pointer to a matrix's first element."""
    def codegen(context, builder, signature, args):
        return context.make_array(matrix)(context, builder, args[0]).data
    return numba.types.CPointer(matrix.dtype)(matrix), codegen


def _gemm_for_dtype(a, b, out, transpose_a, transpose_b, accumulate):
    characters, integers, reals = (numba.types.CPointer(t) for t in (numba.types.uint8, numba.types.int32, a.dtype))
    gemm = numba.types.ExternalFunction("symprop_sgemm" if a.dtype == numba.types.float32 else "symprop_dgemm",
                                        numba.types.void(characters, characters, integers, integers, integers, reals,
                                                         reals, integers, reals, integers, reals, reals, integers))
    real = numba.np.numpy_support.as_dtype(a.dtype).type
    plain, transposed = np.uint8(ord("N")), np.uint8(ord("T"))
    # a C-contiguous matrix is known to be one when compiling: no strides to check
    lead_a, lead_b, lead_out = (_leading_contiguous if m.layout == "C" else _leading for m in (a, b, out))

    def gemm_call(a, b, out, transpose_a, transpose_b, accumulate):
        # out is row-major: as BLAS (column-major) reads the memory, out^T = b^T a^T
        m, n = out.shape
        k = a.shape[0] if transpose_a else a.shape[1]
        if ((a.shape[1] if transpose_a else a.shape[0]) != m or (b.shape[1] if transpose_b else b.shape[0]) != k
                or (b.shape[0] if transpose_b else b.shape[1]) != n):
            raise ValueError("_gemm: the shapes of a, b and out do not agree")
        if m == 0 or n == 0:
            return
        if k == 0:  # an empty sum
            if not accumulate:
                for i in range(m):
                    for j in range(n):
                        out[i, j] = 0
            return
        gemm(_address_of(transposed if transpose_b else plain), _address_of(transposed if transpose_a else plain),
             _address_of(np.int32(n)), _address_of(np.int32(m)), _address_of(np.int32(k)), _address_of(real(1)),
             _data_pointer(b), _address_of(np.int32(lead_b(b))), _data_pointer(a), _address_of(np.int32(lead_a(a))),
             _address_of(real(1) if accumulate else real(0)), _data_pointer(out), _address_of(np.int32(lead_out(out))))
    return gemm_call


def _once_per_process(key, function, compiled):
    """The shared record (.function, .blas) of function, for which numba compiles compiled(...)'s
    implementation in kernels: the first module's, of all the modules in this process with this
    key. Before any kernel is compiled or loaded from the cache, the BLAS gemm the kernels call
    is chosen for this process."""
    import sys
    import types

    shared = sys.modules.get(key)
    if shared is None:
        blas = _choose_blas()
        numba.extending.overload(function, jit_options={**_JIT_FLAGS, "no_cfunc_wrapper": True})(compiled)
        shared = sys.modules[key] = types.ModuleType(key, "symprop's _gemm, shared by generated modules")
        shared.function, shared.blas = function, blas
    return shared


_shared_gemm = _once_per_process("symprop_gemm_edc6af88c11659ea", _gemm, _gemm_for_dtype)
_gemm = _shared_gemm.function
GEMM_BLAS = _shared_gemm.blas  # "mkl" or "openblas": the library the kernels' products call


def _tanh(v):
    """tanh(v). In kernels: arithmetic that LLVM vectorises, chosen by dtype."""
    return np.tanh(v)


@numba.extending.overload(_tanh, jit_options={**_JIT_FLAGS, "no_cfunc_wrapper": True})
def _tanh_for_dtype(v):
    if isinstance(v, numba.types.Float) and v.bitwidth == 64:
        return lambda v: _tanh64(v)
    if isinstance(v, numba.types.Float) and v.bitwidth == 32:
        return lambda v: _tanh32(v)


@jit_inline
def _tanh64(v):
    """tanh(v) in float64, from expm1(-2|v|)."""
    real = np.float64
    w = real(-2) * abs(v)
    w = w if w > real(-746.0) else real(-746.0)  # NaN lands here too; see the last line
    k = np.floor(w * real(1.4426950408889634) + real(0.5))
    r = (w - k * real(0.6931471803691238)) - k * real(1.9082149292705877e-10)
    q0_0 = real(0.5) + real(0.16666666666666666) * r
    q0_1 = real(0.041666666666666664) + real(0.008333333333333333) * r
    q0_2 = real(0.001388888888888889) + real(0.0001984126984126984) * r
    q0_3 = real(2.48015873015873e-05) + real(2.7557319223985893e-06) * r
    q0_4 = real(2.755731922398589e-07) + real(2.505210838544172e-08) * r
    q0_5 = real(2.08767569878681e-09) + real(1.6059043836821613e-10) * r
    r2 = r * r
    q1_0 = q0_0 + q0_1 * r2
    q1_1 = q0_2 + q0_3 * r2
    q1_2 = q0_4 + q0_5 * r2
    r4 = r2 * r2
    q2_0 = q1_0 + q1_1 * r4
    r8 = r4 * r4
    q3_0 = q2_0 + q1_2 * r8
    q = q3_0
    n = np.int64(k)
    half = n >> 1
    scale = np.int64((half + 1023) << 52).view(np.float64) * np.int64((n - half + 1023) << 52).view(np.float64)
    m = (scale - real(1)) + scale * (r + (r * r) * q)  # expm1(w)
    t = math.copysign(-m / (real(2) + m), v)
    return t if v == v else v


@jit_inline
def _tanh32(v):
    """tanh(v) in float32, from expm1(-2|v|)."""
    real = np.float32
    w = real(-2) * abs(v)
    w = w if w > real(-104.0) else real(-104.0)  # NaN lands here too; see the last line
    k = np.floor(w * real(1.4426950408889634) + real(0.5))
    r = (w - k * real(0.693145751953125)) - k * real(1.4286068203094173e-06)
    q0_0 = real(0.5) + real(0.16666666666666666) * r
    q0_1 = real(0.041666666666666664) + real(0.008333333333333333) * r
    q0_2 = real(0.001388888888888889) + real(0.0001984126984126984) * r
    r2 = r * r
    q1_0 = q0_0 + q0_1 * r2
    r4 = r2 * r2
    q2_0 = q1_0 + q0_2 * r4
    q = q2_0
    n = np.int32(k)
    half = n >> 1
    scale = np.int32((half + 127) << 23).view(np.float32) * np.int32((n - half + 127) << 23).view(np.float32)
    m = (scale - real(1)) + scale * (r + (r * r) * q)  # expm1(w)
    t = math.copysign(-m / (real(2) + m), v)
    return t if v == v else v


SPEC = 'rnn(1,2,3) affine(2,1) squared-error'
PARAM_NAMES = ('Wx1', 'Wh1', 'b1', 'W2', 'b2')
PARAM_SHAPES = ((1, 2), (2, 2), (2,), (2, 1), (1,))
INPUT_SIZE = 3
OUTPUT_SIZE = 1
LOSS = 'squared-error'
# True: sgd_step_kernel / sgd_steps_kernel run the scalar-expanded step (a tiny network, every
# unit a scalar local, no workspace); sgd_step_into keeps the matrix step on a workspace.
SCALAR_STEP = False


def make_workspace(X):
    """Every intermediate array of a step for a batch like X, allocated once (plain Python:
    nothing to compile for a caller that keeps its workspace, as symprop train does)."""
    N = X.shape[0]
    return (np.empty((N, 2), X.dtype), np.empty((N, 4, 2), X.dtype), np.empty((N, 4, 2), X.dtype), np.empty((N, 3, 2), X.dtype), np.empty((N, 2), X.dtype), np.empty((N, 2), X.dtype), np.empty((N, 1), X.dtype), np.empty((2, 2), X.dtype), np.empty((N, 4, 2), X.dtype), np.empty((N, 4, 2), X.dtype), np.empty((4, 2, 2), X.dtype), np.empty((1, 2), X.dtype), np.empty((2, 2), X.dtype), np.empty((2,), X.dtype), np.empty((N, 1), X.dtype), np.empty((2, 1), X.dtype), np.empty((1,), X.dtype), np.empty((N, 2), X.dtype), np.empty((N, 1), X.dtype),)


_make_workspace = jit(make_workspace)  # the same, for the kernels that allocate their own


@jit
def forward_kernel(Wx1, Wh1, b1, W2, b2, X):
    real = X.dtype.type
    N = X.shape[0]
    h1 = np.empty((N, 2), X.dtype)
    a1 = np.empty((N, 4, 2), X.dtype)
    hs1 = np.empty((N, 4, 2), X.dtype)
    xWx1 = np.empty((N, 3, 2), X.dtype)
    hWh1 = np.empty((N, 2), X.dtype)
    z2 = np.empty((N, 1), X.dtype)
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    return z2


@jit
def loss_and_grads_into(Wx1, Wh1, b1, W2, b2, X, T, h1, a1, hs1, xWx1, hWh1, backWh1, backWx1, Wh1T, da1, dhs1, dWh1_step, dWx1, dWh1, db1, z2, dW2, db2, dh1, dz2):
    """The loss; gradients and intermediates are written into the workspace buffers."""
    real = X.dtype.type
    N = X.shape[0]
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    return loss


@jit
def loss_and_grads_kernel(Wx1, Wh1, b1, W2, b2, X, T):
    """loss_and_grads_into's statements on arrays of its own: written out, not called, because
    numba links a called kernel into its caller and LLVM optimises it all again there."""
    real = X.dtype.type
    N = X.shape[0]
    h1 = np.empty((N, 2), X.dtype)
    a1 = np.empty((N, 4, 2), X.dtype)
    hs1 = np.empty((N, 4, 2), X.dtype)
    xWx1 = np.empty((N, 3, 2), X.dtype)
    hWh1 = np.empty((N, 2), X.dtype)
    backWh1 = np.empty((N, 2), X.dtype)
    backWx1 = np.empty((N, 1), X.dtype)
    Wh1T = np.empty((2, 2), X.dtype)
    da1 = np.empty((N, 4, 2), X.dtype)
    dhs1 = np.empty((N, 4, 2), X.dtype)
    dWh1_step = np.empty((4, 2, 2), X.dtype)
    dWx1 = np.empty((1, 2), X.dtype)
    dWh1 = np.empty((2, 2), X.dtype)
    db1 = np.empty((2,), X.dtype)
    z2 = np.empty((N, 1), X.dtype)
    dW2 = np.empty((2, 1), X.dtype)
    db2 = np.empty((1,), X.dtype)
    dh1 = np.empty((N, 2), X.dtype)
    dz2 = np.empty((N, 1), X.dtype)
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    return loss, dWx1, dWh1, db1, dW2, db2


@jit
def _sgd_update(param, grad, step):
    """param -= step * grad, in place (the gradient is complete before any weight changes).
    Called with vectors (a matrix as a flat view), so one compiled signature serves
    parameters of every rank."""
    for i in range(param.shape[0]):
        param[i] -= step * grad[i]


@jit
def sgd_step_into(Wx1, Wh1, b1, W2, b2, X, T, lr, h1, a1, hs1, xWx1, hWh1, backWh1, backWx1, Wh1T, da1, dhs1, dWh1_step, dWx1, dWh1, db1, z2, dW2, db2, dh1, dz2):
    """One gradient-descent step in place, using a workspace from make_workspace(X). The
    gradient statements are loss_and_grads_into's, written out here rather than called:
    numba links a called kernel into the caller and LLVM optimises it again there, which
    made the first step's compile take twice as long as the body alone."""
    real = X.dtype.type
    N = X.shape[0]
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    step = X.dtype.type(lr)
    _sgd_update(Wx1.reshape(-1), dWx1.reshape(-1), step)
    _sgd_update(Wh1.reshape(-1), dWh1.reshape(-1), step)
    _sgd_update(b1, db1, step)
    _sgd_update(W2.reshape(-1), dW2.reshape(-1), step)
    _sgd_update(b2, db2, step)
    return loss


@jit
def sgd_step_kernel(Wx1, Wh1, b1, W2, b2, X, T, lr):
    """sgd_step_into's statements on a workspace of its own (written out, not called)."""
    real = X.dtype.type
    N = X.shape[0]
    h1 = np.empty((N, 2), X.dtype)
    a1 = np.empty((N, 4, 2), X.dtype)
    hs1 = np.empty((N, 4, 2), X.dtype)
    xWx1 = np.empty((N, 3, 2), X.dtype)
    hWh1 = np.empty((N, 2), X.dtype)
    backWh1 = np.empty((N, 2), X.dtype)
    backWx1 = np.empty((N, 1), X.dtype)
    Wh1T = np.empty((2, 2), X.dtype)
    da1 = np.empty((N, 4, 2), X.dtype)
    dhs1 = np.empty((N, 4, 2), X.dtype)
    dWh1_step = np.empty((4, 2, 2), X.dtype)
    dWx1 = np.empty((1, 2), X.dtype)
    dWh1 = np.empty((2, 2), X.dtype)
    db1 = np.empty((2,), X.dtype)
    z2 = np.empty((N, 1), X.dtype)
    dW2 = np.empty((2, 1), X.dtype)
    db2 = np.empty((1,), X.dtype)
    dh1 = np.empty((N, 2), X.dtype)
    dz2 = np.empty((N, 1), X.dtype)
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    step = X.dtype.type(lr)
    _sgd_update(Wx1.reshape(-1), dWx1.reshape(-1), step)
    _sgd_update(Wh1.reshape(-1), dWh1.reshape(-1), step)
    _sgd_update(b1, db1, step)
    _sgd_update(W2.reshape(-1), dW2.reshape(-1), step)
    _sgd_update(b2, db2, step)
    return loss


@jit
def sgd_steps_kernel(Wx1, Wh1, b1, W2, b2, X, T, lr, steps):
    """`steps` gradient-descent steps on one workspace: sgd_step_into's statements in the loop."""
    N = X.shape[0]
    h1 = np.empty((N, 2), X.dtype)
    a1 = np.empty((N, 4, 2), X.dtype)
    hs1 = np.empty((N, 4, 2), X.dtype)
    xWx1 = np.empty((N, 3, 2), X.dtype)
    hWh1 = np.empty((N, 2), X.dtype)
    backWh1 = np.empty((N, 2), X.dtype)
    backWx1 = np.empty((N, 1), X.dtype)
    Wh1T = np.empty((2, 2), X.dtype)
    da1 = np.empty((N, 4, 2), X.dtype)
    dhs1 = np.empty((N, 4, 2), X.dtype)
    dWh1_step = np.empty((4, 2, 2), X.dtype)
    dWx1 = np.empty((1, 2), X.dtype)
    dWh1 = np.empty((2, 2), X.dtype)
    db1 = np.empty((2,), X.dtype)
    z2 = np.empty((N, 1), X.dtype)
    dW2 = np.empty((2, 1), X.dtype)
    db2 = np.empty((1,), X.dtype)
    dh1 = np.empty((N, 2), X.dtype)
    dz2 = np.empty((N, 1), X.dtype)
    loss = X.dtype.type(0)
    for _ in range(steps):
        real = X.dtype.type
        N = X.shape[0]
        # ---- forward ----
        # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
        _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
        for n in range(N):
            for j in range(2):
                hs1[n, 0, j] = real(0)
        for t in range(1, 4):
            _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
            for n in range(N):
                for j in range(2):
                    a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                    hs1[n, t, j] = _tanh(a1[n, t, j])
        for n in range(N):
            for j in range(2):
                h1[n, j] = hs1[n, 3, j]
        # layer 2: affine(2,1)
        _dot_loops(h1, W2, z2)  # z2 = h1 W2
        _add_bias(z2, b2)  # z2 += 1 b2
        # ---- loss ----
        # layer 3: squared-error
        K = 1
        loss = real(0)
        for n in range(N):
            for j in range(K):
                loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
                loss += loss_term
        # ---- backward (chain rule, from the loss back to the first layer) ----
        K = 1
        for n in range(N):
            for j in range(K):
                dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
        # layer 2: affine(2,1)
        _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
        _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
        _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
        # layer 1: rnn(1,2,3): back through time
        for n in range(N):
            for j in range(2):
                dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
        for i_copy in range(Wh1T.shape[0]):
            for j_copy in range(Wh1T.shape[1]):
                Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
        for r in range(2):
            for n in range(N):
                for j in range(2):
                    da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
            _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
            for n in range(N):
                for m in range(2):
                    dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
        for n in range(N):
            for j in range(2):
                da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
        _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
        _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
        _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
        step = X.dtype.type(lr)
        _sgd_update(Wx1.reshape(-1), dWx1.reshape(-1), step)
        _sgd_update(Wh1.reshape(-1), dWh1.reshape(-1), step)
        _sgd_update(b1, db1, step)
        _sgd_update(W2.reshape(-1), dW2.reshape(-1), step)
        _sgd_update(b2, db2, step)
    return loss


PARAM_OFFSETS = (0, 2, 6, 8, 10, 11)  # where each parameter starts in a packed vector; the last is its size


def pack(Wx1, Wh1, b1, W2, b2):
    """The parameters as one new flat array (PARAM_NAMES order), for sgd_step_packed."""
    return np.concatenate([np.ravel(p) for p in (Wx1, Wh1, b1, W2, b2,)])


def unpack(theta):
    """The parameters as views into a packed vector: updating theta updates them."""
    return tuple(theta[start:end].reshape(shape)
                 for start, end, shape in zip(PARAM_OFFSETS, PARAM_OFFSETS[1:], PARAM_SHAPES))


@jit
def sgd_step_packed_kernel(theta, X, T, lr):
    Wx1 = theta[0:2].reshape((1, 2))
    Wh1 = theta[2:6].reshape((2, 2))
    b1 = theta[6:8]
    W2 = theta[8:10].reshape((2, 1))
    b2 = theta[10:11]
    real = X.dtype.type
    N = X.shape[0]
    h1 = np.empty((N, 2), X.dtype)
    a1 = np.empty((N, 4, 2), X.dtype)
    hs1 = np.empty((N, 4, 2), X.dtype)
    xWx1 = np.empty((N, 3, 2), X.dtype)
    hWh1 = np.empty((N, 2), X.dtype)
    backWh1 = np.empty((N, 2), X.dtype)
    backWx1 = np.empty((N, 1), X.dtype)
    Wh1T = np.empty((2, 2), X.dtype)
    da1 = np.empty((N, 4, 2), X.dtype)
    dhs1 = np.empty((N, 4, 2), X.dtype)
    dWh1_step = np.empty((4, 2, 2), X.dtype)
    dWx1 = np.empty((1, 2), X.dtype)
    dWh1 = np.empty((2, 2), X.dtype)
    db1 = np.empty((2,), X.dtype)
    z2 = np.empty((N, 1), X.dtype)
    dW2 = np.empty((2, 1), X.dtype)
    db2 = np.empty((1,), X.dtype)
    dh1 = np.empty((N, 2), X.dtype)
    dz2 = np.empty((N, 1), X.dtype)
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    step = X.dtype.type(lr)
    _sgd_update(Wx1.reshape(-1), dWx1.reshape(-1), step)
    _sgd_update(Wh1.reshape(-1), dWh1.reshape(-1), step)
    _sgd_update(b1, db1, step)
    _sgd_update(W2.reshape(-1), dW2.reshape(-1), step)
    _sgd_update(b2, db2, step)
    return loss


def sgd_step_packed(theta, X, T, lr):
    """sgd_step on a packed parameter vector (see pack and unpack), in place; returns the loss."""
    if not isinstance(theta, np.ndarray) or theta.shape != (PARAM_OFFSETS[-1],):
        raise ValueError(f"sgd_step_packed: theta must be a flat array of {PARAM_OFFSETS[-1]} parameters "
                         f"(pack(...) makes one), got {getattr(theta, 'shape', type(theta).__name__)}")
    _check("sgd_step_packed", unpack(theta), X, T)
    if not theta.flags.c_contiguous or not theta.flags.writeable:
        raise ValueError("sgd_step_packed: theta must be C-contiguous and writeable (updated in place)")
    _separate("sgd_step_packed", dict(theta=theta), dict(X=X, T=T))
    return sgd_step_packed_kernel(theta, np.ascontiguousarray(X), np.ascontiguousarray(T), _rate("sgd_step_packed", lr))


def _check(function, params, X, T=None):
    arrays = dict(zip(PARAM_NAMES, params), X=X)
    if T is not None:
        arrays["T"] = T
    checked = _arrays(function, **arrays)
    for name, array, shape in zip(PARAM_NAMES, checked, PARAM_SHAPES):
        _shape(function, name, array, shape)
    X = checked[len(PARAM_NAMES)]
    if X.ndim != 2 or X.shape[1] != INPUT_SIZE or X.shape[0] == 0:
        raise ValueError(f"{function}: X has shape {X.shape}, expected (batch, {INPUT_SIZE}) with batch >= 1")
    if T is not None:
        _shape(function, "T", checked[-1], (X.shape[0], OUTPUT_SIZE))
    return checked


def _updated_in_place(function, params, X, T):
    """The parameters a step overwrites must be the caller's own arrays (C-contiguous and
    writeable, so no copy is taken) and share no memory with each other or with X and T."""
    for name, array in zip(PARAM_NAMES, params):
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise ValueError(f"{function}: {name} must be C-contiguous and writeable (updated in place)")
    _separate(function, dict(zip(PARAM_NAMES, params)), dict(X=X, T=T))


def forward(Wx1, Wh1, b1, W2, b2, X):
    """Scores of the last layer before the loss, for a batch X of shape (N, INPUT_SIZE)."""
    return forward_kernel(*_check("forward", (Wx1, Wh1, b1, W2, b2,), X))


def loss_and_grads(Wx1, Wh1, b1, W2, b2, X, T):
    """(loss, dWx1, dWh1, db1, dW2, db2) for a batch: X is (N, INPUT_SIZE), T is (N, OUTPUT_SIZE)."""
    return loss_and_grads_kernel(*_check("loss_and_grads", (Wx1, Wh1, b1, W2, b2,), X, T))


def sgd_step(Wx1, Wh1, b1, W2, b2, X, T, lr):
    """One gradient-descent step in place (p -= lr * dL/dp); returns the loss before it."""
    _check("sgd_step", (Wx1, Wh1, b1, W2, b2,), X, T)
    _updated_in_place("sgd_step", (Wx1, Wh1, b1, W2, b2,), X, T)
    return sgd_step_kernel(Wx1, Wh1, b1, W2, b2, np.ascontiguousarray(X), np.ascontiguousarray(T), _rate("sgd_step", lr))


def sgd_steps(Wx1, Wh1, b1, W2, b2, X, T, lr, steps):
    """`steps` full-batch gradient-descent steps in one call; returns the last step's loss."""
    _check("sgd_steps", (Wx1, Wh1, b1, W2, b2,), X, T)
    _updated_in_place("sgd_steps", (Wx1, Wh1, b1, W2, b2,), X, T)
    return sgd_steps_kernel(Wx1, Wh1, b1, W2, b2, np.ascontiguousarray(X), np.ascontiguousarray(T), _rate("sgd_steps", lr),
                            _step_count("sgd_steps", steps))


# ---- optimisers: the update rules of symbolic/steps.py, each fused with the step ----


def _check_params(function, params):
    checked = _arrays(function, **dict(zip(PARAM_NAMES, params)))
    for name, array, shape in zip(PARAM_NAMES, checked, PARAM_SHAPES):
        _shape(function, name, array, shape)


def _hyper(function, name, value, low, high, closed):
    """A hyper-parameter as a float inside its interval (the rule's, from symbolic/steps.py)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{function}: {name} must be a number, got {type(value).__name__} {value!r:.40}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    above = number >= low if closed[0] else number > low
    below = number <= high if closed[1] else number < high
    if not (math.isfinite(number) and above and below):
        interval = f"{'[' if closed[0] else '('}{low:g}, {high:g}{']' if closed[1] else ')'}"
        raise ValueError(f"{function}: {name} must be in {interval}, got {value!r:.40}")
    return number


def _check_state(function, state, names, params, X, T):
    """The state tuple of init_state_<rule>: one array per name, each of its parameter's
    shape and dtype (the step count: 1 float64), writeable and sharing memory with nothing."""
    if not isinstance(state, tuple) or len(state) != len(names):
        raise ValueError(f"{function}: state must be the tuple of {len(names)} arrays from init_state "
                         f"({', '.join(names) or 'empty'}), got {type(state).__name__}")
    shapes = dict(zip(PARAM_NAMES, params))
    for name, array in zip(names, state):
        owner = shapes.get(name.rsplit("_", 1)[0])
        shape, dtype = (owner.shape, owner.dtype) if name != "step_count" else ((1,), np.float64)
        if (not isinstance(array, np.ndarray) or array.shape != shape or array.dtype != dtype
                or not array.flags.c_contiguous or not array.flags.writeable):
            raise ValueError(f"{function}: state {name} must be a writeable C-contiguous "
                             f"{np.dtype(dtype).name} array of shape {shape} (from init_state)")
    _separate(function, {**dict(zip(PARAM_NAMES, params)), **dict(zip(names, state))}, dict(X=X, T=T))
    return state


@jit
def _apply_sgd(param, grad, lr, weight_decay):
    """gradient descent: p <- p - lr*g: one parameter and its state in place, element by element, the rule's
    lines in order (symbolic/steps.py; each reads the new values of the lines above it):
      g <- g + p*weight_decay
      p <- -g*lr + p
    Arguments are in the parameter's dtype; the arrays are flat views (one compiled signature
    serves parameters of every rank). c0, c1 ...: what every element shares, computed once."""
    real = param.dtype.type
    param_flat = param.reshape(-1)
    grad_flat = grad.reshape(-1)
    c0 = -lr
    for i in range(param_flat.size):
        p = param_flat[i]
        g = grad_flat[i]
        p_new = c0*(g + p*weight_decay) + p  # p <- -g*lr + p
        param_flat[i] = p_new


@jit
def train_step_sgd_into(Wx1, Wh1, b1, W2, b2, X, T, lr, weight_decay, h1, a1, hs1, xWx1, hWh1, backWh1, backWx1, Wh1T, da1, dhs1, dWh1_step, dWx1, dWh1, db1, z2, dW2, db2, dh1, dz2):
    """One sgd step in place, on a workspace from make_workspace(X): the gradients, then
    every parameter and its state."""
    real = X.dtype.type
    N = X.shape[0]
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    _apply_sgd(Wx1.reshape(-1), dWx1.reshape(-1), real(lr), real(weight_decay))
    _apply_sgd(Wh1.reshape(-1), dWh1.reshape(-1), real(lr), real(weight_decay))
    _apply_sgd(b1.reshape(-1), db1.reshape(-1), real(lr), real(weight_decay))
    _apply_sgd(W2.reshape(-1), dW2.reshape(-1), real(lr), real(weight_decay))
    _apply_sgd(b2.reshape(-1), db2.reshape(-1), real(lr), real(weight_decay))
    return loss


@jit
def train_step_sgd_kernel(Wx1, Wh1, b1, W2, b2, X, T, lr, weight_decay):
    """train_step_sgd_into's statements on a workspace of its own (written out, not called)."""
    real = X.dtype.type
    N = X.shape[0]
    h1 = np.empty((N, 2), X.dtype)
    a1 = np.empty((N, 4, 2), X.dtype)
    hs1 = np.empty((N, 4, 2), X.dtype)
    xWx1 = np.empty((N, 3, 2), X.dtype)
    hWh1 = np.empty((N, 2), X.dtype)
    backWh1 = np.empty((N, 2), X.dtype)
    backWx1 = np.empty((N, 1), X.dtype)
    Wh1T = np.empty((2, 2), X.dtype)
    da1 = np.empty((N, 4, 2), X.dtype)
    dhs1 = np.empty((N, 4, 2), X.dtype)
    dWh1_step = np.empty((4, 2, 2), X.dtype)
    dWx1 = np.empty((1, 2), X.dtype)
    dWh1 = np.empty((2, 2), X.dtype)
    db1 = np.empty((2,), X.dtype)
    z2 = np.empty((N, 1), X.dtype)
    dW2 = np.empty((2, 1), X.dtype)
    db2 = np.empty((1,), X.dtype)
    dh1 = np.empty((N, 2), X.dtype)
    dz2 = np.empty((N, 1), X.dtype)
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    _apply_sgd(Wx1.reshape(-1), dWx1.reshape(-1), real(lr), real(weight_decay))
    _apply_sgd(Wh1.reshape(-1), dWh1.reshape(-1), real(lr), real(weight_decay))
    _apply_sgd(b1.reshape(-1), db1.reshape(-1), real(lr), real(weight_decay))
    _apply_sgd(W2.reshape(-1), dW2.reshape(-1), real(lr), real(weight_decay))
    _apply_sgd(b2.reshape(-1), db2.reshape(-1), real(lr), real(weight_decay))
    return loss


STATE_NAMES_SGD = ()


def init_state_sgd(Wx1, Wh1, b1, W2, b2):
    """sgd's state for these parameters, allocated once and updated in place by
    train_step_sgd: per parameter none."""
    _check_params("init_state_sgd", (Wx1, Wh1, b1, W2, b2,))
    return ()


def train_step_sgd(Wx1, Wh1, b1, W2, b2, state, X, T, lr=0.001, weight_decay=0.0):
    """One step of torch.optim.SGD(params, lr, weight_decay=weight_decay) in place (parameters and state, from init_state_sgd);
    returns the loss before it."""
    _check("train_step_sgd", (Wx1, Wh1, b1, W2, b2,), X, T)
    _updated_in_place("train_step_sgd", (Wx1, Wh1, b1, W2, b2,), X, T)
    state = _check_state("train_step_sgd", state, STATE_NAMES_SGD, (Wx1, Wh1, b1, W2, b2,), X, T)
    hyper = (_hyper("train_step_sgd", "lr", lr, 0.0, math.inf, (False, False)), _hyper("train_step_sgd", "weight_decay", weight_decay, 0.0, math.inf, (True, False)),)
    return train_step_sgd_kernel(Wx1, Wh1, b1, W2, b2, *state, np.ascontiguousarray(X), np.ascontiguousarray(T), *hyper)


@jit
def _apply_momentum(param, grad, state_v, lr, momentum, weight_decay):
    """heavy-ball momentum: v <- momentum*v + g, p <- p - lr*v: one parameter and its state in place, element by element, the rule's
    lines in order (symbolic/steps.py; each reads the new values of the lines above it):
      g <- g + p*weight_decay
      v <- g + momentum*v
      p <- -lr*v + p
    Arguments are in the parameter's dtype; the arrays are flat views (one compiled signature
    serves parameters of every rank). c0, c1 ...: what every element shares, computed once."""
    real = param.dtype.type
    param_flat = param.reshape(-1)
    grad_flat = grad.reshape(-1)
    state_v_flat = state_v.reshape(-1)
    c0 = -lr
    for i in range(param_flat.size):
        p = param_flat[i]
        g = grad_flat[i]
        v = state_v_flat[i]
        t0 = g + momentum*v + p*weight_decay
        v_new = t0  # v <- g + momentum*v
        p_new = c0*t0 + p  # p <- -lr*v + p
        state_v_flat[i] = v_new
        param_flat[i] = p_new


@jit
def train_step_momentum_into(Wx1, Wh1, b1, W2, b2, Wx1_v, Wh1_v, b1_v, W2_v, b2_v, X, T, lr, momentum, weight_decay, h1, a1, hs1, xWx1, hWh1, backWh1, backWx1, Wh1T, da1, dhs1, dWh1_step, dWx1, dWh1, db1, z2, dW2, db2, dh1, dz2):
    """One momentum step in place, on a workspace from make_workspace(X): the gradients, then
    every parameter and its state."""
    real = X.dtype.type
    N = X.shape[0]
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    _apply_momentum(Wx1.reshape(-1), dWx1.reshape(-1), Wx1_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    _apply_momentum(Wh1.reshape(-1), dWh1.reshape(-1), Wh1_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    _apply_momentum(b1.reshape(-1), db1.reshape(-1), b1_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    _apply_momentum(W2.reshape(-1), dW2.reshape(-1), W2_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    _apply_momentum(b2.reshape(-1), db2.reshape(-1), b2_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    return loss


@jit
def train_step_momentum_kernel(Wx1, Wh1, b1, W2, b2, Wx1_v, Wh1_v, b1_v, W2_v, b2_v, X, T, lr, momentum, weight_decay):
    """train_step_momentum_into's statements on a workspace of its own (written out, not called)."""
    real = X.dtype.type
    N = X.shape[0]
    h1 = np.empty((N, 2), X.dtype)
    a1 = np.empty((N, 4, 2), X.dtype)
    hs1 = np.empty((N, 4, 2), X.dtype)
    xWx1 = np.empty((N, 3, 2), X.dtype)
    hWh1 = np.empty((N, 2), X.dtype)
    backWh1 = np.empty((N, 2), X.dtype)
    backWx1 = np.empty((N, 1), X.dtype)
    Wh1T = np.empty((2, 2), X.dtype)
    da1 = np.empty((N, 4, 2), X.dtype)
    dhs1 = np.empty((N, 4, 2), X.dtype)
    dWh1_step = np.empty((4, 2, 2), X.dtype)
    dWx1 = np.empty((1, 2), X.dtype)
    dWh1 = np.empty((2, 2), X.dtype)
    db1 = np.empty((2,), X.dtype)
    z2 = np.empty((N, 1), X.dtype)
    dW2 = np.empty((2, 1), X.dtype)
    db2 = np.empty((1,), X.dtype)
    dh1 = np.empty((N, 2), X.dtype)
    dz2 = np.empty((N, 1), X.dtype)
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    _apply_momentum(Wx1.reshape(-1), dWx1.reshape(-1), Wx1_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    _apply_momentum(Wh1.reshape(-1), dWh1.reshape(-1), Wh1_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    _apply_momentum(b1.reshape(-1), db1.reshape(-1), b1_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    _apply_momentum(W2.reshape(-1), dW2.reshape(-1), W2_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    _apply_momentum(b2.reshape(-1), db2.reshape(-1), b2_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    return loss


STATE_NAMES_MOMENTUM = ('Wx1_v', 'Wh1_v', 'b1_v', 'W2_v', 'b2_v')


def init_state_momentum(Wx1, Wh1, b1, W2, b2):
    """momentum's state for these parameters, allocated once and updated in place by
    train_step_momentum: per parameter v (0)."""
    _check_params("init_state_momentum", (Wx1, Wh1, b1, W2, b2,))
    return (np.zeros_like(Wx1), np.zeros_like(Wh1), np.zeros_like(b1), np.zeros_like(W2), np.zeros_like(b2), )


def train_step_momentum(Wx1, Wh1, b1, W2, b2, state, X, T, lr=0.001, momentum=0.9, weight_decay=0.0):
    """One step of torch.optim.SGD(params, lr, momentum, weight_decay=weight_decay) in place (parameters and state, from init_state_momentum);
    returns the loss before it."""
    _check("train_step_momentum", (Wx1, Wh1, b1, W2, b2,), X, T)
    _updated_in_place("train_step_momentum", (Wx1, Wh1, b1, W2, b2,), X, T)
    state = _check_state("train_step_momentum", state, STATE_NAMES_MOMENTUM, (Wx1, Wh1, b1, W2, b2,), X, T)
    hyper = (_hyper("train_step_momentum", "lr", lr, 0.0, math.inf, (False, False)), _hyper("train_step_momentum", "momentum", momentum, 0.0, 1.0, (True, False)), _hyper("train_step_momentum", "weight_decay", weight_decay, 0.0, math.inf, (True, False)),)
    return train_step_momentum_kernel(Wx1, Wh1, b1, W2, b2, *state, np.ascontiguousarray(X), np.ascontiguousarray(T), *hyper)


@jit
def _apply_nesterov(param, grad, state_v, lr, momentum, weight_decay):
    """Nesterov momentum: v <- momentum*v + g, p <- p - lr*(g + momentum*v): one parameter and its state in place, element by element, the rule's
    lines in order (symbolic/steps.py; each reads the new values of the lines above it):
      g <- g + p*weight_decay
      v <- g + momentum*v
      p <- -lr*(g + momentum*v) + p
    Arguments are in the parameter's dtype; the arrays are flat views (one compiled signature
    serves parameters of every rank). c0, c1 ...: what every element shares, computed once."""
    real = param.dtype.type
    param_flat = param.reshape(-1)
    grad_flat = grad.reshape(-1)
    state_v_flat = state_v.reshape(-1)
    c0 = -lr
    for i in range(param_flat.size):
        p = param_flat[i]
        g = grad_flat[i]
        v = state_v_flat[i]
        t0 = g + p*weight_decay
        t1 = momentum*v + t0
        v_new = t1  # v <- g + momentum*v
        p_new = c0*(momentum*t1 + t0) + p  # p <- -lr*(g + momentum*v) + p
        state_v_flat[i] = v_new
        param_flat[i] = p_new


@jit
def train_step_nesterov_into(Wx1, Wh1, b1, W2, b2, Wx1_v, Wh1_v, b1_v, W2_v, b2_v, X, T, lr, momentum, weight_decay, h1, a1, hs1, xWx1, hWh1, backWh1, backWx1, Wh1T, da1, dhs1, dWh1_step, dWx1, dWh1, db1, z2, dW2, db2, dh1, dz2):
    """One nesterov step in place, on a workspace from make_workspace(X): the gradients, then
    every parameter and its state."""
    real = X.dtype.type
    N = X.shape[0]
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    _apply_nesterov(Wx1.reshape(-1), dWx1.reshape(-1), Wx1_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    _apply_nesterov(Wh1.reshape(-1), dWh1.reshape(-1), Wh1_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    _apply_nesterov(b1.reshape(-1), db1.reshape(-1), b1_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    _apply_nesterov(W2.reshape(-1), dW2.reshape(-1), W2_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    _apply_nesterov(b2.reshape(-1), db2.reshape(-1), b2_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    return loss


@jit
def train_step_nesterov_kernel(Wx1, Wh1, b1, W2, b2, Wx1_v, Wh1_v, b1_v, W2_v, b2_v, X, T, lr, momentum, weight_decay):
    """train_step_nesterov_into's statements on a workspace of its own (written out, not called)."""
    real = X.dtype.type
    N = X.shape[0]
    h1 = np.empty((N, 2), X.dtype)
    a1 = np.empty((N, 4, 2), X.dtype)
    hs1 = np.empty((N, 4, 2), X.dtype)
    xWx1 = np.empty((N, 3, 2), X.dtype)
    hWh1 = np.empty((N, 2), X.dtype)
    backWh1 = np.empty((N, 2), X.dtype)
    backWx1 = np.empty((N, 1), X.dtype)
    Wh1T = np.empty((2, 2), X.dtype)
    da1 = np.empty((N, 4, 2), X.dtype)
    dhs1 = np.empty((N, 4, 2), X.dtype)
    dWh1_step = np.empty((4, 2, 2), X.dtype)
    dWx1 = np.empty((1, 2), X.dtype)
    dWh1 = np.empty((2, 2), X.dtype)
    db1 = np.empty((2,), X.dtype)
    z2 = np.empty((N, 1), X.dtype)
    dW2 = np.empty((2, 1), X.dtype)
    db2 = np.empty((1,), X.dtype)
    dh1 = np.empty((N, 2), X.dtype)
    dz2 = np.empty((N, 1), X.dtype)
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    _apply_nesterov(Wx1.reshape(-1), dWx1.reshape(-1), Wx1_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    _apply_nesterov(Wh1.reshape(-1), dWh1.reshape(-1), Wh1_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    _apply_nesterov(b1.reshape(-1), db1.reshape(-1), b1_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    _apply_nesterov(W2.reshape(-1), dW2.reshape(-1), W2_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    _apply_nesterov(b2.reshape(-1), db2.reshape(-1), b2_v.reshape(-1), real(lr), real(momentum), real(weight_decay))
    return loss


STATE_NAMES_NESTEROV = ('Wx1_v', 'Wh1_v', 'b1_v', 'W2_v', 'b2_v')


def init_state_nesterov(Wx1, Wh1, b1, W2, b2):
    """nesterov's state for these parameters, allocated once and updated in place by
    train_step_nesterov: per parameter v (0)."""
    _check_params("init_state_nesterov", (Wx1, Wh1, b1, W2, b2,))
    return (np.zeros_like(Wx1), np.zeros_like(Wh1), np.zeros_like(b1), np.zeros_like(W2), np.zeros_like(b2), )


def train_step_nesterov(Wx1, Wh1, b1, W2, b2, state, X, T, lr=0.001, momentum=0.9, weight_decay=0.0):
    """One step of torch.optim.SGD(params, lr, momentum, weight_decay=weight_decay, nesterov=True) in place (parameters and state, from init_state_nesterov);
    returns the loss before it."""
    _check("train_step_nesterov", (Wx1, Wh1, b1, W2, b2,), X, T)
    _updated_in_place("train_step_nesterov", (Wx1, Wh1, b1, W2, b2,), X, T)
    state = _check_state("train_step_nesterov", state, STATE_NAMES_NESTEROV, (Wx1, Wh1, b1, W2, b2,), X, T)
    hyper = (_hyper("train_step_nesterov", "lr", lr, 0.0, math.inf, (False, False)), _hyper("train_step_nesterov", "momentum", momentum, 0.0, 1.0, (True, False)), _hyper("train_step_nesterov", "weight_decay", weight_decay, 0.0, math.inf, (True, False)),)
    return train_step_nesterov_kernel(Wx1, Wh1, b1, W2, b2, *state, np.ascontiguousarray(X), np.ascontiguousarray(T), *hyper)


@jit
def _apply_adagrad(param, grad, state_s, lr, eps, weight_decay):
    """AdaGrad: s <- s + g^2, p <- p - lr*g/(sqrt(s) + eps): one parameter and its state in place, element by element, the rule's
    lines in order (symbolic/steps.py; each reads the new values of the lines above it):
      g <- g + p*weight_decay
      s <- g**2 + s
      p <- -g*lr/(eps + sqrt(s)) + p
    Arguments are in the parameter's dtype; the arrays are flat views (one compiled signature
    serves parameters of every rank). c0, c1 ...: what every element shares, computed once."""
    real = param.dtype.type
    param_flat = param.reshape(-1)
    grad_flat = grad.reshape(-1)
    state_s_flat = state_s.reshape(-1)
    c0 = -lr
    for i in range(param_flat.size):
        p = param_flat[i]
        g = grad_flat[i]
        s = state_s_flat[i]
        t0 = g + p*weight_decay
        t1 = s + (t0*t0)
        s_new = t1  # s <- g**2 + s
        p_new = c0*t0/(eps + np.sqrt(t1)) + p  # p <- -g*lr/(eps + sqrt(s)) + p
        state_s_flat[i] = s_new
        param_flat[i] = p_new


@jit
def train_step_adagrad_into(Wx1, Wh1, b1, W2, b2, Wx1_s, Wh1_s, b1_s, W2_s, b2_s, X, T, lr, eps, weight_decay, h1, a1, hs1, xWx1, hWh1, backWh1, backWx1, Wh1T, da1, dhs1, dWh1_step, dWx1, dWh1, db1, z2, dW2, db2, dh1, dz2):
    """One adagrad step in place, on a workspace from make_workspace(X): the gradients, then
    every parameter and its state."""
    real = X.dtype.type
    N = X.shape[0]
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    _apply_adagrad(Wx1.reshape(-1), dWx1.reshape(-1), Wx1_s.reshape(-1), real(lr), real(eps), real(weight_decay))
    _apply_adagrad(Wh1.reshape(-1), dWh1.reshape(-1), Wh1_s.reshape(-1), real(lr), real(eps), real(weight_decay))
    _apply_adagrad(b1.reshape(-1), db1.reshape(-1), b1_s.reshape(-1), real(lr), real(eps), real(weight_decay))
    _apply_adagrad(W2.reshape(-1), dW2.reshape(-1), W2_s.reshape(-1), real(lr), real(eps), real(weight_decay))
    _apply_adagrad(b2.reshape(-1), db2.reshape(-1), b2_s.reshape(-1), real(lr), real(eps), real(weight_decay))
    return loss


@jit
def train_step_adagrad_kernel(Wx1, Wh1, b1, W2, b2, Wx1_s, Wh1_s, b1_s, W2_s, b2_s, X, T, lr, eps, weight_decay):
    """train_step_adagrad_into's statements on a workspace of its own (written out, not called)."""
    real = X.dtype.type
    N = X.shape[0]
    h1 = np.empty((N, 2), X.dtype)
    a1 = np.empty((N, 4, 2), X.dtype)
    hs1 = np.empty((N, 4, 2), X.dtype)
    xWx1 = np.empty((N, 3, 2), X.dtype)
    hWh1 = np.empty((N, 2), X.dtype)
    backWh1 = np.empty((N, 2), X.dtype)
    backWx1 = np.empty((N, 1), X.dtype)
    Wh1T = np.empty((2, 2), X.dtype)
    da1 = np.empty((N, 4, 2), X.dtype)
    dhs1 = np.empty((N, 4, 2), X.dtype)
    dWh1_step = np.empty((4, 2, 2), X.dtype)
    dWx1 = np.empty((1, 2), X.dtype)
    dWh1 = np.empty((2, 2), X.dtype)
    db1 = np.empty((2,), X.dtype)
    z2 = np.empty((N, 1), X.dtype)
    dW2 = np.empty((2, 1), X.dtype)
    db2 = np.empty((1,), X.dtype)
    dh1 = np.empty((N, 2), X.dtype)
    dz2 = np.empty((N, 1), X.dtype)
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    _apply_adagrad(Wx1.reshape(-1), dWx1.reshape(-1), Wx1_s.reshape(-1), real(lr), real(eps), real(weight_decay))
    _apply_adagrad(Wh1.reshape(-1), dWh1.reshape(-1), Wh1_s.reshape(-1), real(lr), real(eps), real(weight_decay))
    _apply_adagrad(b1.reshape(-1), db1.reshape(-1), b1_s.reshape(-1), real(lr), real(eps), real(weight_decay))
    _apply_adagrad(W2.reshape(-1), dW2.reshape(-1), W2_s.reshape(-1), real(lr), real(eps), real(weight_decay))
    _apply_adagrad(b2.reshape(-1), db2.reshape(-1), b2_s.reshape(-1), real(lr), real(eps), real(weight_decay))
    return loss


STATE_NAMES_ADAGRAD = ('Wx1_s', 'Wh1_s', 'b1_s', 'W2_s', 'b2_s')


def init_state_adagrad(Wx1, Wh1, b1, W2, b2):
    """adagrad's state for these parameters, allocated once and updated in place by
    train_step_adagrad: per parameter s (0)."""
    _check_params("init_state_adagrad", (Wx1, Wh1, b1, W2, b2,))
    return (np.zeros_like(Wx1), np.zeros_like(Wh1), np.zeros_like(b1), np.zeros_like(W2), np.zeros_like(b2), )


def train_step_adagrad(Wx1, Wh1, b1, W2, b2, state, X, T, lr=0.01, eps=1e-10, weight_decay=0.0):
    """One step of torch.optim.Adagrad(params, lr, eps=eps, weight_decay=weight_decay) in place (parameters and state, from init_state_adagrad);
    returns the loss before it."""
    _check("train_step_adagrad", (Wx1, Wh1, b1, W2, b2,), X, T)
    _updated_in_place("train_step_adagrad", (Wx1, Wh1, b1, W2, b2,), X, T)
    state = _check_state("train_step_adagrad", state, STATE_NAMES_ADAGRAD, (Wx1, Wh1, b1, W2, b2,), X, T)
    hyper = (_hyper("train_step_adagrad", "lr", lr, 0.0, math.inf, (False, False)), _hyper("train_step_adagrad", "eps", eps, 0.0, math.inf, (True, False)), _hyper("train_step_adagrad", "weight_decay", weight_decay, 0.0, math.inf, (True, False)),)
    return train_step_adagrad_kernel(Wx1, Wh1, b1, W2, b2, *state, np.ascontiguousarray(X), np.ascontiguousarray(T), *hyper)


@jit
def _apply_rmsprop(param, grad, state_s, lr, alpha, eps, weight_decay):
    """RMSprop: s <- alpha*s + (1 - alpha)*g^2, p <- p - lr*g/(sqrt(s) + eps): one parameter and its state in place, element by element, the rule's
    lines in order (symbolic/steps.py; each reads the new values of the lines above it):
      g <- g + p*weight_decay
      s <- alpha*s + g**2*(1 - alpha)
      p <- -g*lr/(eps + sqrt(s)) + p
    Arguments are in the parameter's dtype; the arrays are flat views (one compiled signature
    serves parameters of every rank). c0, c1 ...: what every element shares, computed once."""
    real = param.dtype.type
    param_flat = param.reshape(-1)
    grad_flat = grad.reshape(-1)
    state_s_flat = state_s.reshape(-1)
    c0 = real(1) - alpha
    c1 = -lr
    for i in range(param_flat.size):
        p = param_flat[i]
        g = grad_flat[i]
        s = state_s_flat[i]
        t0 = g + p*weight_decay
        t1 = alpha*s + c0*(t0*t0)
        s_new = t1  # s <- alpha*s + g**2*(1 - alpha)
        p_new = c1*t0/(eps + np.sqrt(t1)) + p  # p <- -g*lr/(eps + sqrt(s)) + p
        state_s_flat[i] = s_new
        param_flat[i] = p_new


@jit
def train_step_rmsprop_into(Wx1, Wh1, b1, W2, b2, Wx1_s, Wh1_s, b1_s, W2_s, b2_s, X, T, lr, alpha, eps, weight_decay, h1, a1, hs1, xWx1, hWh1, backWh1, backWx1, Wh1T, da1, dhs1, dWh1_step, dWx1, dWh1, db1, z2, dW2, db2, dh1, dz2):
    """One rmsprop step in place, on a workspace from make_workspace(X): the gradients, then
    every parameter and its state."""
    real = X.dtype.type
    N = X.shape[0]
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    _apply_rmsprop(Wx1.reshape(-1), dWx1.reshape(-1), Wx1_s.reshape(-1), real(lr), real(alpha), real(eps), real(weight_decay))
    _apply_rmsprop(Wh1.reshape(-1), dWh1.reshape(-1), Wh1_s.reshape(-1), real(lr), real(alpha), real(eps), real(weight_decay))
    _apply_rmsprop(b1.reshape(-1), db1.reshape(-1), b1_s.reshape(-1), real(lr), real(alpha), real(eps), real(weight_decay))
    _apply_rmsprop(W2.reshape(-1), dW2.reshape(-1), W2_s.reshape(-1), real(lr), real(alpha), real(eps), real(weight_decay))
    _apply_rmsprop(b2.reshape(-1), db2.reshape(-1), b2_s.reshape(-1), real(lr), real(alpha), real(eps), real(weight_decay))
    return loss


@jit
def train_step_rmsprop_kernel(Wx1, Wh1, b1, W2, b2, Wx1_s, Wh1_s, b1_s, W2_s, b2_s, X, T, lr, alpha, eps, weight_decay):
    """train_step_rmsprop_into's statements on a workspace of its own (written out, not called)."""
    real = X.dtype.type
    N = X.shape[0]
    h1 = np.empty((N, 2), X.dtype)
    a1 = np.empty((N, 4, 2), X.dtype)
    hs1 = np.empty((N, 4, 2), X.dtype)
    xWx1 = np.empty((N, 3, 2), X.dtype)
    hWh1 = np.empty((N, 2), X.dtype)
    backWh1 = np.empty((N, 2), X.dtype)
    backWx1 = np.empty((N, 1), X.dtype)
    Wh1T = np.empty((2, 2), X.dtype)
    da1 = np.empty((N, 4, 2), X.dtype)
    dhs1 = np.empty((N, 4, 2), X.dtype)
    dWh1_step = np.empty((4, 2, 2), X.dtype)
    dWx1 = np.empty((1, 2), X.dtype)
    dWh1 = np.empty((2, 2), X.dtype)
    db1 = np.empty((2,), X.dtype)
    z2 = np.empty((N, 1), X.dtype)
    dW2 = np.empty((2, 1), X.dtype)
    db2 = np.empty((1,), X.dtype)
    dh1 = np.empty((N, 2), X.dtype)
    dz2 = np.empty((N, 1), X.dtype)
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    _apply_rmsprop(Wx1.reshape(-1), dWx1.reshape(-1), Wx1_s.reshape(-1), real(lr), real(alpha), real(eps), real(weight_decay))
    _apply_rmsprop(Wh1.reshape(-1), dWh1.reshape(-1), Wh1_s.reshape(-1), real(lr), real(alpha), real(eps), real(weight_decay))
    _apply_rmsprop(b1.reshape(-1), db1.reshape(-1), b1_s.reshape(-1), real(lr), real(alpha), real(eps), real(weight_decay))
    _apply_rmsprop(W2.reshape(-1), dW2.reshape(-1), W2_s.reshape(-1), real(lr), real(alpha), real(eps), real(weight_decay))
    _apply_rmsprop(b2.reshape(-1), db2.reshape(-1), b2_s.reshape(-1), real(lr), real(alpha), real(eps), real(weight_decay))
    return loss


STATE_NAMES_RMSPROP = ('Wx1_s', 'Wh1_s', 'b1_s', 'W2_s', 'b2_s')


def init_state_rmsprop(Wx1, Wh1, b1, W2, b2):
    """rmsprop's state for these parameters, allocated once and updated in place by
    train_step_rmsprop: per parameter s (0)."""
    _check_params("init_state_rmsprop", (Wx1, Wh1, b1, W2, b2,))
    return (np.zeros_like(Wx1), np.zeros_like(Wh1), np.zeros_like(b1), np.zeros_like(W2), np.zeros_like(b2), )


def train_step_rmsprop(Wx1, Wh1, b1, W2, b2, state, X, T, lr=0.01, alpha=0.99, eps=1e-08, weight_decay=0.0):
    """One step of torch.optim.RMSprop(params, lr, alpha, eps, weight_decay) in place (parameters and state, from init_state_rmsprop);
    returns the loss before it."""
    _check("train_step_rmsprop", (Wx1, Wh1, b1, W2, b2,), X, T)
    _updated_in_place("train_step_rmsprop", (Wx1, Wh1, b1, W2, b2,), X, T)
    state = _check_state("train_step_rmsprop", state, STATE_NAMES_RMSPROP, (Wx1, Wh1, b1, W2, b2,), X, T)
    hyper = (_hyper("train_step_rmsprop", "lr", lr, 0.0, math.inf, (False, False)), _hyper("train_step_rmsprop", "alpha", alpha, 0.0, 1.0, (True, True)), _hyper("train_step_rmsprop", "eps", eps, 0.0, math.inf, (True, False)), _hyper("train_step_rmsprop", "weight_decay", weight_decay, 0.0, math.inf, (True, False)),)
    return train_step_rmsprop_kernel(Wx1, Wh1, b1, W2, b2, *state, np.ascontiguousarray(X), np.ascontiguousarray(T), *hyper)


@jit
def _apply_adam(param, grad, state_m, state_v, lr, beta1, beta2, eps, weight_decay, t):
    """Adam: moment estimates m and v with bias correction: one parameter and its state in place, element by element, the rule's
    lines in order (symbolic/steps.py; each reads the new values of the lines above it):
      g <- g + p*weight_decay
      m <- beta1*m + g*(1 - beta1)
      v <- beta2*v + g**2*(1 - beta2)
      m_hat <- m/(1 - beta1**t)
      v_hat <- v/(1 - beta2**t)
      p <- -lr*m_hat/(eps + sqrt(v_hat)) + p
    Arguments are in the parameter's dtype; the arrays are flat views (one compiled signature
    serves parameters of every rank). c0, c1 ...: what every element shares, computed once."""
    real = param.dtype.type
    param_flat = param.reshape(-1)
    grad_flat = grad.reshape(-1)
    state_m_flat = state_m.reshape(-1)
    state_v_flat = state_v.reshape(-1)
    c0 = real(1) - beta1
    c1 = real(1) - beta2
    c2 = -lr/(real(1) - beta1**t)
    c3 = real(1)/(real(1) - beta2**t)
    for i in range(param_flat.size):
        p = param_flat[i]
        g = grad_flat[i]
        m = state_m_flat[i]
        v = state_v_flat[i]
        t0 = g + p*weight_decay
        t1 = beta1*m + c0*t0
        t2 = beta2*v + c1*(t0*t0)
        m_new = t1  # m <- beta1*m + g*(1 - beta1)
        v_new = t2  # v <- beta2*v + g**2*(1 - beta2)
        p_new = c2*t1/(eps + np.sqrt(c3*t2)) + p  # p <- -lr*m_hat/(eps + sqrt(v_hat)) + p
        state_m_flat[i] = m_new
        state_v_flat[i] = v_new
        param_flat[i] = p_new


@jit
def train_step_adam_into(Wx1, Wh1, b1, W2, b2, Wx1_m, Wx1_v, Wh1_m, Wh1_v, b1_m, b1_v, W2_m, W2_v, b2_m, b2_v, step_count, X, T, lr, beta1, beta2, eps, weight_decay, h1, a1, hs1, xWx1, hWh1, backWh1, backWx1, Wh1T, da1, dhs1, dWh1_step, dWx1, dWh1, db1, z2, dW2, db2, dh1, dz2):
    """One adam step in place, on a workspace from make_workspace(X): the gradients, then
    every parameter and its state."""
    real = X.dtype.type
    N = X.shape[0]
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    step_count[0] = step_count[0] + real(1)  # t <- t + 1: the step count, shared by every parameter
    t = real(step_count[0])
    _apply_adam(Wx1.reshape(-1), dWx1.reshape(-1), Wx1_m.reshape(-1), Wx1_v.reshape(-1), real(lr), real(beta1), real(beta2), real(eps), real(weight_decay), t)
    _apply_adam(Wh1.reshape(-1), dWh1.reshape(-1), Wh1_m.reshape(-1), Wh1_v.reshape(-1), real(lr), real(beta1), real(beta2), real(eps), real(weight_decay), t)
    _apply_adam(b1.reshape(-1), db1.reshape(-1), b1_m.reshape(-1), b1_v.reshape(-1), real(lr), real(beta1), real(beta2), real(eps), real(weight_decay), t)
    _apply_adam(W2.reshape(-1), dW2.reshape(-1), W2_m.reshape(-1), W2_v.reshape(-1), real(lr), real(beta1), real(beta2), real(eps), real(weight_decay), t)
    _apply_adam(b2.reshape(-1), db2.reshape(-1), b2_m.reshape(-1), b2_v.reshape(-1), real(lr), real(beta1), real(beta2), real(eps), real(weight_decay), t)
    return loss


@jit
def train_step_adam_kernel(Wx1, Wh1, b1, W2, b2, Wx1_m, Wx1_v, Wh1_m, Wh1_v, b1_m, b1_v, W2_m, W2_v, b2_m, b2_v, step_count, X, T, lr, beta1, beta2, eps, weight_decay):
    """train_step_adam_into's statements on a workspace of its own (written out, not called)."""
    real = X.dtype.type
    N = X.shape[0]
    h1 = np.empty((N, 2), X.dtype)
    a1 = np.empty((N, 4, 2), X.dtype)
    hs1 = np.empty((N, 4, 2), X.dtype)
    xWx1 = np.empty((N, 3, 2), X.dtype)
    hWh1 = np.empty((N, 2), X.dtype)
    backWh1 = np.empty((N, 2), X.dtype)
    backWx1 = np.empty((N, 1), X.dtype)
    Wh1T = np.empty((2, 2), X.dtype)
    da1 = np.empty((N, 4, 2), X.dtype)
    dhs1 = np.empty((N, 4, 2), X.dtype)
    dWh1_step = np.empty((4, 2, 2), X.dtype)
    dWx1 = np.empty((1, 2), X.dtype)
    dWh1 = np.empty((2, 2), X.dtype)
    db1 = np.empty((2,), X.dtype)
    z2 = np.empty((N, 1), X.dtype)
    dW2 = np.empty((2, 1), X.dtype)
    db2 = np.empty((1,), X.dtype)
    dh1 = np.empty((N, 2), X.dtype)
    dz2 = np.empty((N, 1), X.dtype)
    # ---- forward ----
    # layer 1: rnn(1,2,3) (3 steps of 1 -> 2 states)
    _gemm(X.reshape(-1, 1), Wx1, xWx1.reshape(-1, 2), False, False, False)  # x_t Wx for every step t at once
    for n in range(N):
        for j in range(2):
            hs1[n, 0, j] = real(0)
    for t in range(1, 4):
        _gemm(hs1[:, t - 1, :], Wh1, hWh1, False, False, False)  # h_{t-1} Wh for every row
        for n in range(N):
            for j in range(2):
                a1[n, t, j] = b1[j] + hWh1[n, j] + xWx1[n, t - 1, j]
                hs1[n, t, j] = _tanh(a1[n, t, j])
    for n in range(N):
        for j in range(2):
            h1[n, j] = hs1[n, 3, j]
    # layer 2: affine(2,1)
    _dot_loops(h1, W2, z2)  # z2 = h1 W2
    _add_bias(z2, b2)  # z2 += 1 b2
    # ---- loss ----
    # layer 3: squared-error
    K = 1
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - z2[n, j])*(T[n, j] - z2[n, j]))
            loss += loss_term
    # ---- backward (chain rule, from the loss back to the first layer) ----
    K = 1
    for n in range(N):
        for j in range(K):
            dz2[n, j] = -T[n, j] + z2[n, j]  # dL/dz2 = -t + y
    # layer 2: affine(2,1)
    _dot_loops(h1.T, dz2, dW2)  # dL/dW2 = h1^T dL/dz2
    _column_sums(dz2, db2)  # dL/db2 = 1^T dL/dz2 (sum over the batch)
    _dot_loops(dz2, W2.T, dh1)  # dL/dh1 = dL/dz2 W2^T
    # layer 1: rnn(1,2,3): back through time
    for n in range(N):
        for j in range(2):
            dhs1[n, 3, j] = dh1[n, j]  # dL/dhs1[n, 3, j] = dL/dh1[n, j]
    for i_copy in range(Wh1T.shape[0]):
        for j_copy in range(Wh1T.shape[1]):
            Wh1T[i_copy, j_copy] = Wh1[j_copy, i_copy]
    for r in range(2):
        for n in range(N):
            for j in range(2):
                da1[n, 3 - r, j] = dhs1[n, 3 - r, j]*(real(1) - (hs1[n, 3 - r, j]*hs1[n, 3 - r, j]))  # dL/da1[n, 3 - r, j] = dL/dhs1[n, 3 - r, j] * (1 - hs1[n, 3 - r, j]**2)
        _gemm(da1[:, 3 - r, :], Wh1T, backWh1, False, False, False)  # back through Wh for every row
        for n in range(N):
            for m in range(2):
                dhs1[n, 2 - r, m] = backWh1[n, m]  # dL/dhs1[n, 2 - r, m] = sum_j dL/da1[n, 3 - r, j] * Wh1[m, j]
    for n in range(N):
        for j in range(2):
            da1[n, 1, j] = dhs1[n, 1, j]*(real(1) - (hs1[n, 1, j]*hs1[n, 1, j]))  # dL/da1[n, 1, j] = dL/dhs1[n, 1, j] * (1 - hs1[n, 1, j]**2)
    _gemm(X.reshape(-1, 1), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWx1, True, False, False)  # dL/dWx1: x_t^T da_t of every step at once
    _gemm(np.ascontiguousarray(hs1[:, 0:3, :]).reshape(-1, 2), np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), dWh1, True, False, False)  # dL/dWh1: h_(t-1)^T da_t of every step at once
    _column_sums(np.ascontiguousarray(da1[:, 1:4, :]).reshape(-1, 2), db1)  # dL/db1: every row and step's
    step_count[0] = step_count[0] + real(1)  # t <- t + 1: the step count, shared by every parameter
    t = real(step_count[0])
    _apply_adam(Wx1.reshape(-1), dWx1.reshape(-1), Wx1_m.reshape(-1), Wx1_v.reshape(-1), real(lr), real(beta1), real(beta2), real(eps), real(weight_decay), t)
    _apply_adam(Wh1.reshape(-1), dWh1.reshape(-1), Wh1_m.reshape(-1), Wh1_v.reshape(-1), real(lr), real(beta1), real(beta2), real(eps), real(weight_decay), t)
    _apply_adam(b1.reshape(-1), db1.reshape(-1), b1_m.reshape(-1), b1_v.reshape(-1), real(lr), real(beta1), real(beta2), real(eps), real(weight_decay), t)
    _apply_adam(W2.reshape(-1), dW2.reshape(-1), W2_m.reshape(-1), W2_v.reshape(-1), real(lr), real(beta1), real(beta2), real(eps), real(weight_decay), t)
    _apply_adam(b2.reshape(-1), db2.reshape(-1), b2_m.reshape(-1), b2_v.reshape(-1), real(lr), real(beta1), real(beta2), real(eps), real(weight_decay), t)
    return loss


STATE_NAMES_ADAM = ('Wx1_m', 'Wx1_v', 'Wh1_m', 'Wh1_v', 'b1_m', 'b1_v', 'W2_m', 'W2_v', 'b2_m', 'b2_v', 'step_count')


def init_state_adam(Wx1, Wh1, b1, W2, b2):
    """adam's state for these parameters, allocated once and updated in place by
    train_step_adam: per parameter m (0), v (0); the step count t (0)."""
    _check_params("init_state_adam", (Wx1, Wh1, b1, W2, b2,))
    return (np.zeros_like(Wx1), np.zeros_like(Wx1), np.zeros_like(Wh1), np.zeros_like(Wh1), np.zeros_like(b1), np.zeros_like(b1), np.zeros_like(W2), np.zeros_like(W2), np.zeros_like(b2), np.zeros_like(b2), np.zeros(1, np.float64), )


def train_step_adam(Wx1, Wh1, b1, W2, b2, state, X, T, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.0):
    """One step of torch.optim.Adam(params, lr, betas=(beta1, beta2), eps, weight_decay) in place (parameters and state, from init_state_adam);
    returns the loss before it."""
    _check("train_step_adam", (Wx1, Wh1, b1, W2, b2,), X, T)
    _updated_in_place("train_step_adam", (Wx1, Wh1, b1, W2, b2,), X, T)
    state = _check_state("train_step_adam", state, STATE_NAMES_ADAM, (Wx1, Wh1, b1, W2, b2,), X, T)
    hyper = (_hyper("train_step_adam", "lr", lr, 0.0, math.inf, (False, False)), _hyper("train_step_adam", "beta1", beta1, 0.0, 1.0, (True, False)), _hyper("train_step_adam", "beta2", beta2, 0.0, 1.0, (True, False)), _hyper("train_step_adam", "eps", eps, 0.0, math.inf, (True, False)), _hyper("train_step_adam", "weight_decay", weight_decay, 0.0, math.inf, (True, False)),)
    return train_step_adam_kernel(Wx1, Wh1, b1, W2, b2, *state, np.ascontiguousarray(X), np.ascontiguousarray(T), *hyper)


# name -> (init_state, train_step, hyper-parameter defaults)
OPTIMIZERS = {
    'sgd': (init_state_sgd, train_step_sgd, {'lr': 0.001, 'weight_decay': 0.0}),
    'momentum': (init_state_momentum, train_step_momentum, {'lr': 0.001, 'momentum': 0.9, 'weight_decay': 0.0}),
    'nesterov': (init_state_nesterov, train_step_nesterov, {'lr': 0.001, 'momentum': 0.9, 'weight_decay': 0.0}),
    'adagrad': (init_state_adagrad, train_step_adagrad, {'lr': 0.01, 'eps': 1e-10, 'weight_decay': 0.0}),
    'rmsprop': (init_state_rmsprop, train_step_rmsprop, {'lr': 0.01, 'alpha': 0.99, 'eps': 1e-08, 'weight_decay': 0.0}),
    'adam': (init_state_adam, train_step_adam, {'lr': 0.001, 'beta1': 0.9, 'beta2': 0.999, 'eps': 1e-08, 'weight_decay': 0.0}),
}
