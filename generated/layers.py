# Forward and backward kernels of every registered layer.
# GENERATED FILE - do not edit. Written by symprop's codegen/layer_kernels.py.
# Regenerate with: symprop generate
# Input: layers add, mul, identity, relu, sigmoid, tanh, affine, affine-shared-bias, batchnorm, layernorm, dropout, softmax, softmax-cross-entropy, squared-error, mse, binary-cross-entropy, log-softmax-nll, multiclass-hinge, huber, conv2d, maxpool, avgpool, flatten
# Input hash: cea8e4f6f30216ff (the inputs above, their ops' definitions and sympy 1.14.0)
# Body hash: 3f23d6b427611671

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


@jit_inline
def _avgpool_backward(dY, C, H, W, k, stride, dX):
    """dX[n, c, u, v] = sum over the windows holding (u, v) of dY / k^2."""
    Ho = (H - k) // stride + 1
    Wo = (W - k) // stride + 1
    share = dY.dtype.type(1.0 / (k * k))
    dX[:] = 0
    for n in range(dY.shape[0]):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    g = dY[n, (c * Ho + i) * Wo + j] * share
                    for p in range(k):
                        for q in range(k):
                            dX[n, (c * H + stride * i + p) * W + stride * j + q] += g


@jit_inline
def _avgpool_forward(X, C, H, W, k, stride, Y):
    """Y[n, c, i, j] = the mean of the k x k window at (stride*i, stride*j)."""
    Ho = (H - k) // stride + 1
    Wo = (W - k) // stride + 1
    share = X.dtype.type(1.0 / (k * k))
    for n in range(X.shape[0]):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    total = X.dtype.type(0)
                    for p in range(k):
                        for q in range(k):
                            total += X[n, (c * H + stride * i + p) * W + stride * j + q]
                    Y[n, (c * Ho + i) * Wo + j] = total * share


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


@jit_inline
def _conv2d_input_grad(dY, Wt, C, H, W, stride, pad, dcols, dX):
    """dX = col2im(W^T dY[n]): each column's gradient added back to the pixels it was copied
    from; the padding's share is dropped. This is the full convolution with the flipped kernel."""
    O, k = Wt.shape[0], Wt.shape[2]
    Wm = Wt.reshape((O, C * k * k))
    Ho = (H + 2 * pad - k) // stride + 1
    Wo = (W + 2 * pad - k) // stride + 1
    dX[:] = 0
    for n in range(dY.shape[0]):
        _gemm(Wm, dY[n].reshape((O, Ho * Wo)), dcols, True, False, False)
        for c in range(C):
            for p in range(k):
                for q in range(k):
                    row = (c * k + p) * k + q
                    for i in range(Ho):
                        h = stride * i + p - pad
                        if 0 <= h < H:
                            for j in range(Wo):
                                w = stride * j + q - pad
                                if 0 <= w < W:
                                    dX[n, (c * H + h) * W + w] += dcols[row, i * Wo + j]


@jit_inline
def _conv2d_param_grads(dY, cols, dW, db, pixel_sums):
    """dW[o] = sum_n dY[n, o] cols[n]^T (input correlated with dY), each example's product added
    to dW by BLAS in the same call; db[o] = sum of dY[:, o].
    db adds the batch up pixel by pixel first (pixel_sums, a loop LLVM vectorises), then each
    channel's pixels: one running total per channel over every example was a chain of
    dependent additions as slow as the product itself (measured)."""
    O = dW.shape[0]
    M = cols.shape[2]
    dWm = dW.reshape((O, cols.shape[1]))
    dWm[:] = 0
    pixel_sums[:] = 0
    for n in range(dY.shape[0]):
        g = dY[n].reshape((O, M))
        _gemm(g, cols[n], dWm, False, True, True)
        for o in range(O):
            for m in range(M):
                pixel_sums[o, m] += g[o, m]
    for o in range(O):
        total = db.dtype.type(0)
        for m in range(M):
            total += pixel_sums[o, m]
        db[o] = total


@jit_inline
def _conv2d_product(Wt, b, cols, Y):
    """Y[n, o, :] = W[o] . cols[n] + b[o]: one BLAS product per example, on _im2col's columns."""
    O = Wt.shape[0]
    Wm = Wt.reshape((O, cols.shape[1]))
    M = cols.shape[2]
    for n in range(cols.shape[0]):
        out = Y[n].reshape((O, M))
        _gemm(Wm, cols[n], out, False, False, False)
        for o in range(O):
            for m in range(M):
                out[o, m] += b[o]


def _exp(v):
    """exp(v). In kernels: polynomial arithmetic that LLVM vectorises, chosen by dtype."""
    return np.exp(v)


@numba.extending.overload(_exp, jit_options={**_JIT_FLAGS, "no_cfunc_wrapper": True})
def _exp_for_dtype(v):
    if isinstance(v, numba.types.Float) and v.bitwidth == 64:
        return lambda v: _exp64(v)
    if isinstance(v, numba.types.Float) and v.bitwidth == 32:
        return lambda v: _exp32(v)


@jit_inline
def _exp64(v):
    """exp(v) in float64, within 1 ulp of the correctly rounded value."""
    real = np.float64
    w = v if v > real(-746.0) else real(-746.0)  # NaN lands here too; see the last line
    w = w if w < real(710.0) else real(710.0)
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
    p = real(1) + (r + (r * r) * q)
    scale_1 = np.int64((half + 1023) << 52).view(np.float64)
    scale_2 = np.int64((n - half + 1023) << 52).view(np.float64)
    e = p * scale_1 * scale_2
    return e if v == v else v


@jit_inline
def _exp32(v):
    """exp(v) in float32, within 1 ulp of the correctly rounded value."""
    real = np.float32
    w = v if v > real(-104.0) else real(-104.0)  # NaN lands here too; see the last line
    w = w if w < real(89.0) else real(89.0)
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
    p = real(1) + (r + (r * r) * q)
    scale_1 = np.int32((half + 127) << 23).view(np.float32)
    scale_2 = np.int32((n - half + 127) << 23).view(np.float32)
    e = p * scale_1 * scale_2
    return e if v == v else v

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


@jit_inline
def _im2col(X, C, H, W, k, stride, pad, cols):
    """cols[n, (c*k + p)*k + q, i*Wo + j] = Xp[n, c, stride*i + p, stride*j + q], with Xp the
    image zero-padded by pad on each side (the conv2d rule's Xp, one column per output pixel)."""
    Wo = (W + 2 * pad - k) // stride + 1
    Ho = (H + 2 * pad - k) // stride + 1
    for n in range(X.shape[0]):
        for c in range(C):
            for p in range(k):
                for q in range(k):
                    row = (c * k + p) * k + q
                    for i in range(Ho):
                        h = stride * i + p - pad
                        for j in range(Wo):
                            w = stride * j + q - pad
                            if 0 <= h < H and 0 <= w < W:
                                cols[n, row, i * Wo + j] = X[n, (c * H + h) * W + w]
                            else:
                                cols[n, row, i * Wo + j] = 0


@jit_inline
def _maxpool_backward(dY, X, C, H, W, k, stride, dX):
    """dX = dY routed to each window's first maximum in row-major order (strict > while
    scanning: a later equal element does not take it), summed where windows overlap."""
    Ho = (H - k) // stride + 1
    Wo = (W - k) // stride + 1
    dX[:] = 0
    for n in range(X.shape[0]):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    where = (c * H + stride * i) * W + stride * j
                    best = X[n, where]
                    for p in range(k):
                        for q in range(k):
                            index = (c * H + stride * i + p) * W + stride * j + q
                            if X[n, index] > best:
                                best = X[n, index]
                                where = index
                    dX[n, where] += dY[n, (c * Ho + i) * Wo + j]


@jit_inline
def _maxpool_forward(X, C, H, W, k, stride, Y):
    """Y[n, c, i, j] = the largest X in the k x k window at (stride*i, stride*j)."""
    Ho = (H - k) // stride + 1
    Wo = (W - k) // stride + 1
    for n in range(X.shape[0]):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    best = X[n, (c * H + stride * i) * W + stride * j]
                    for p in range(k):
                        for q in range(k):
                            value = X[n, (c * H + stride * i + p) * W + stride * j + q]
                            if value > best:
                                best = value
                    Y[n, (c * Ho + i) * Wo + j] = best


@jit_inline
def _sigmoid(v):
    """1/(1 + exp(-v)) without overflow: exp is only taken of -|v|."""
    real = type(v)
    e = _exp(-abs(v))
    s = real(1) / (real(1) + e)
    return s if v >= 0 else e * s


@jit_inline
def _softplus(v):
    """log(1 + exp(v)) without overflow: max(v, 0) + log1p(exp(-|v|))."""
    real = type(v)
    return max(v, real(0)) + np.log1p(_exp(-abs(v)))


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


@jit
def _total(a, out=None):
    """1^T a 1: the sum of every element, as a 1-element array (a shared bias)."""
    total = np.empty(1, a.dtype) if out is None else out
    total[0] = 0
    for n in range(a.shape[0]):
        for j in range(a.shape[1]):
            total[0] += a[n, j]
    return total


@jit
def add_forward_kernel(x, y, h0):
    real = x.dtype.type
    N, F = x.shape
    # layer 1: add
    for n in range(N):
        for j in range(F):
            x_nj = x[n, j]
            y_nj = y[n, j]
            h0[n, j] = x_nj + y_nj


def add_forward(x, y, out=None):
    """out = x + y, element by element (addition node: passes the upstream gradient to both inputs)."""
    if out is not None:  # the caller's array must not share memory with an input
        _separate("add_forward", dict(out=out), dict(x=x, y=y))
    x, y, = _arrays("add_forward", x=x, y=y)
    _shape("add_forward", "y", y, x.shape)
    out = _output("add_forward", "out", out, x.shape, x.dtype)
    add_forward_kernel(x.reshape(1, -1), y.reshape(1, -1), out.reshape(1, -1))
    return out


@jit
def add_backward_kernel(dh0, dx, dy):
    real = dh0.dtype.type
    N, F = dh0.shape
    # layer 1: add
    for n in range(N):
        for j in range(F):
            dh0_nj = dh0[n, j]
            dx[n, j] = dh0_nj  # dL/dx = dL/dh0 * dh0/dx = dL/dh0 * 1
            dy[n, j] = dh0_nj  # dL/dy = dL/dh0 * dh0/dy = dL/dh0 * 1


def add_backward(dout, dx=None, dy=None):
    """dx = dout; dy = dout. Never writes its inputs."""
    if dx is not None or dy is not None:  # the caller's array must not share memory with an input
        _separate("add_backward", dict(dx=dx, dy=dy), dict(dout=dout))
    dout, = _arrays("add_backward", dout=dout)
    dx = _output("add_backward", "dx", dx, dout.shape, dout.dtype)
    dy = _output("add_backward", "dy", dy, dout.shape, dout.dtype)
    add_backward_kernel(dout.reshape(1, -1), dx.reshape(1, -1), dy.reshape(1, -1))
    return dx, dy


@jit
def add_forward_backward_kernel(x, y, dh0, h0, dx, dy):
    real = x.dtype.type
    N, F = x.shape
    for n in range(N):
        for j in range(F):
            x_nj = x[n, j]
            y_nj = y[n, j]
            dh0_nj = dh0[n, j]
            h0[n, j] = x_nj + y_nj
            dx[n, j] = dh0_nj  # dL/dx = dL/dh0 * dh0/dx = dL/dh0 * 1
            dy[n, j] = dh0_nj  # dL/dy = dL/dh0 * dh0/dy = dL/dh0 * 1


def add_forward_backward(x, y, dout):
    """Forward and backward in one pass over memory, when the upstream gradient is known with the
    inputs (an activation applied to a fixed upstream gradient); returns (out, dx, dy)."""
    x, y, dout, = _arrays("add_forward_backward", x=x, y=y, dout=dout)
    _shape("add_forward_backward", "x", x, dout.shape)
    _shape("add_forward_backward", "y", y, dout.shape)
    out = np.empty(dout.shape, dout.dtype)
    dx = np.empty(dout.shape, dout.dtype)
    dy = np.empty(dout.shape, dout.dtype)
    add_forward_backward_kernel(x.reshape(1, -1), y.reshape(1, -1), dout.reshape(1, -1), out.reshape(1, -1), dx.reshape(1, -1), dy.reshape(1, -1))
    return out, dx, dy


@jit
def mul_forward_kernel(x, y, h0):
    real = x.dtype.type
    N, F = x.shape
    # layer 1: mul
    for n in range(N):
        for j in range(F):
            x_nj = x[n, j]
            y_nj = y[n, j]
            h0[n, j] = x_nj*y_nj


def mul_forward(x, y, out=None):
    """out = x*y, element by element (multiplication node: each input gets the upstream times the other)."""
    if out is not None:  # the caller's array must not share memory with an input
        _separate("mul_forward", dict(out=out), dict(x=x, y=y))
    x, y, = _arrays("mul_forward", x=x, y=y)
    _shape("mul_forward", "y", y, x.shape)
    out = _output("mul_forward", "out", out, x.shape, x.dtype)
    mul_forward_kernel(x.reshape(1, -1), y.reshape(1, -1), out.reshape(1, -1))
    return out


@jit
def mul_backward_kernel(dh0, x, y, dx, dy):
    real = dh0.dtype.type
    N, F = dh0.shape
    # layer 1: mul
    for n in range(N):
        for j in range(F):
            x_nj = x[n, j]
            y_nj = y[n, j]
            dh0_nj = dh0[n, j]
            dx[n, j] = dh0_nj*y_nj  # dL/dx = dL/dh0 * dh0/dx = dL/dh0 * y
            dy[n, j] = dh0_nj*x_nj  # dL/dy = dL/dh0 * dh0/dy = dL/dh0 * x


def mul_backward(dout, x, y, dx=None, dy=None):
    """dx = dout*y; dy = dout*x. Never writes its inputs."""
    if dx is not None or dy is not None:  # the caller's array must not share memory with an input
        _separate("mul_backward", dict(dx=dx, dy=dy), dict(dout=dout, x=x, y=y))
    dout, x, y, = _arrays("mul_backward", dout=dout, x=x, y=y)
    _shape("mul_backward", "x", x, dout.shape)
    _shape("mul_backward", "y", y, dout.shape)
    dx = _output("mul_backward", "dx", dx, dout.shape, dout.dtype)
    dy = _output("mul_backward", "dy", dy, dout.shape, dout.dtype)
    mul_backward_kernel(dout.reshape(1, -1), x.reshape(1, -1), y.reshape(1, -1), dx.reshape(1, -1), dy.reshape(1, -1))
    return dx, dy


@jit
def mul_forward_backward_kernel(x, y, dh0, h0, dx, dy):
    real = x.dtype.type
    N, F = x.shape
    for n in range(N):
        for j in range(F):
            x_nj = x[n, j]
            y_nj = y[n, j]
            dh0_nj = dh0[n, j]
            h0[n, j] = x_nj*y_nj
            dx[n, j] = dh0_nj*y_nj  # dL/dx = dL/dh0 * dh0/dx = dL/dh0 * y
            dy[n, j] = dh0_nj*x_nj  # dL/dy = dL/dh0 * dh0/dy = dL/dh0 * x


def mul_forward_backward(x, y, dout):
    """Forward and backward in one pass over memory, when the upstream gradient is known with the
    inputs (an activation applied to a fixed upstream gradient); returns (out, dx, dy)."""
    x, y, dout, = _arrays("mul_forward_backward", x=x, y=y, dout=dout)
    _shape("mul_forward_backward", "x", x, dout.shape)
    _shape("mul_forward_backward", "y", y, dout.shape)
    out = np.empty(dout.shape, dout.dtype)
    dx = np.empty(dout.shape, dout.dtype)
    dy = np.empty(dout.shape, dout.dtype)
    mul_forward_backward_kernel(x.reshape(1, -1), y.reshape(1, -1), dout.reshape(1, -1), out.reshape(1, -1), dx.reshape(1, -1), dy.reshape(1, -1))
    return out, dx, dy


@jit
def identity_forward_kernel(X, h0):
    real = X.dtype.type
    N, F = X.shape
    # layer 1: identity
    for n in range(N):
        for j in range(F):
            X_nj = X[n, j]
            h0[n, j] = X_nj


def identity_forward(x, out=None):
    """y = x, element by element (no activation)."""
    if out is not None:  # the caller's array must not share memory with an input
        _separate("identity_forward", dict(out=out), dict(x=x))
    x, = _arrays("identity_forward", x=x)
    out = _output("identity_forward", "out", out, x.shape, x.dtype)
    identity_forward_kernel(x.reshape(1, -1), out.reshape(1, -1))
    return out


@jit
def identity_backward_kernel(dh0, dX):
    real = dh0.dtype.type
    N, F = dh0.shape
    # layer 1: identity
    for n in range(N):
        for j in range(F):
            dh0_nj = dh0[n, j]
            dX[n, j] = dh0_nj  # dL/dX = dL/dh0 * dh0/dX = dL/dh0 * 1


def identity_backward(dout, dx=None):
    """dx = dout. Never writes its inputs."""
    if dx is not None:  # the caller's array must not share memory with an input
        _separate("identity_backward", dict(dx=dx), dict(dout=dout))
    dout, = _arrays("identity_backward", dout=dout)
    dx = _output("identity_backward", "dx", dx, dout.shape, dout.dtype)
    identity_backward_kernel(dout.reshape(1, -1), dx.reshape(1, -1))
    return dx


@jit
def identity_forward_backward_kernel(X, dh0, h0, dX):
    real = X.dtype.type
    N, F = X.shape
    for n in range(N):
        for j in range(F):
            X_nj = X[n, j]
            dh0_nj = dh0[n, j]
            h0[n, j] = X_nj
            dX[n, j] = dh0_nj  # dL/dX = dL/dh0 * dh0/dX = dL/dh0 * 1


def identity_forward_backward(x, dout):
    """Forward and backward in one pass over memory, when the upstream gradient is known with the
    inputs (an activation applied to a fixed upstream gradient); returns (out, dx)."""
    x, dout, = _arrays("identity_forward_backward", x=x, dout=dout)
    _shape("identity_forward_backward", "x", x, dout.shape)
    out = np.empty(dout.shape, dout.dtype)
    dx = np.empty(dout.shape, dout.dtype)
    identity_forward_backward_kernel(x.reshape(1, -1), dout.reshape(1, -1), out.reshape(1, -1), dx.reshape(1, -1))
    return out, dx


@jit
def relu_forward_kernel(X, h0):
    real = X.dtype.type
    N, F = X.shape
    # layer 1: relu
    for n in range(N):
        for j in range(F):
            X_nj = X[n, j]
            h0[n, j] = max(real(0), X_nj)


def relu_forward(x, out=None):
    """y = Max(0, x), element by element (rectified linear unit)."""
    if out is not None:  # the caller's array must not share memory with an input
        _separate("relu_forward", dict(out=out), dict(x=x))
    x, = _arrays("relu_forward", x=x)
    out = _output("relu_forward", "out", out, x.shape, x.dtype)
    relu_forward_kernel(x.reshape(1, -1), out.reshape(1, -1))
    return out


@jit
def relu_backward_kernel(dh0, X, dX):
    real = dh0.dtype.type
    N, F = dh0.shape
    # layer 1: relu
    for n in range(N):
        for j in range(F):
            X_nj = X[n, j]
            dh0_nj = dh0[n, j]
            dX[n, j] = dh0_nj*real(X_nj > real(0))  # dL/dX = dL/dh0 * dh0/dX = dL/dh0 * Heaviside(X, 0)


def relu_backward(dout, x, dx=None):
    """dx = dout*Heaviside(x, 0). Never writes its inputs."""
    if dx is not None:  # the caller's array must not share memory with an input
        _separate("relu_backward", dict(dx=dx), dict(dout=dout, x=x))
    dout, x, = _arrays("relu_backward", dout=dout, x=x)
    _shape("relu_backward", "x", x, dout.shape)
    dx = _output("relu_backward", "dx", dx, dout.shape, dout.dtype)
    relu_backward_kernel(dout.reshape(1, -1), x.reshape(1, -1), dx.reshape(1, -1))
    return dx


@jit
def relu_forward_backward_kernel(X, dh0, h0, dX):
    real = X.dtype.type
    N, F = X.shape
    for n in range(N):
        for j in range(F):
            X_nj = X[n, j]
            dh0_nj = dh0[n, j]
            h0[n, j] = max(real(0), X_nj)
            dX[n, j] = dh0_nj*real(X_nj > real(0))  # dL/dX = dL/dh0 * dh0/dX = dL/dh0 * Heaviside(X, 0)


def relu_forward_backward(x, dout):
    """Forward and backward in one pass over memory, when the upstream gradient is known with the
    inputs (an activation applied to a fixed upstream gradient); returns (out, dx)."""
    x, dout, = _arrays("relu_forward_backward", x=x, dout=dout)
    _shape("relu_forward_backward", "x", x, dout.shape)
    out = np.empty(dout.shape, dout.dtype)
    dx = np.empty(dout.shape, dout.dtype)
    relu_forward_backward_kernel(x.reshape(1, -1), dout.reshape(1, -1), out.reshape(1, -1), dx.reshape(1, -1))
    return out, dx


@jit
def sigmoid_forward_kernel(X, h0):
    real = X.dtype.type
    N, F = X.shape
    # layer 1: sigmoid
    for n in range(N):
        for j in range(F):
            X_nj = X[n, j]
            h0[n, j] = _sigmoid(X_nj)


def sigmoid_forward(x, out=None):
    """y = Sigmoid(x), element by element (logistic sigmoid)."""
    if out is not None:  # the caller's array must not share memory with an input
        _separate("sigmoid_forward", dict(out=out), dict(x=x))
    x, = _arrays("sigmoid_forward", x=x)
    out = _output("sigmoid_forward", "out", out, x.shape, x.dtype)
    sigmoid_forward_kernel(x.reshape(1, -1), out.reshape(1, -1))
    return out


@jit
def sigmoid_backward_kernel(dh0, h0, dX):
    real = dh0.dtype.type
    N, F = dh0.shape
    # layer 1: sigmoid
    for n in range(N):
        for j in range(F):
            h0_nj = h0[n, j]
            dh0_nj = dh0[n, j]
            dX[n, j] = dh0_nj*h0_nj*(real(1) - h0_nj)  # dL/dX = dL/dh0 * dh0/dX = dL/dh0 * h0*(1 - h0)


def sigmoid_backward(dout, y, dx=None):
    """dx = dout*y*(1 - y). Never writes its inputs."""
    if dx is not None:  # the caller's array must not share memory with an input
        _separate("sigmoid_backward", dict(dx=dx), dict(dout=dout, y=y))
    dout, y, = _arrays("sigmoid_backward", dout=dout, y=y)
    _shape("sigmoid_backward", "y", y, dout.shape)
    dx = _output("sigmoid_backward", "dx", dx, dout.shape, dout.dtype)
    sigmoid_backward_kernel(dout.reshape(1, -1), y.reshape(1, -1), dx.reshape(1, -1))
    return dx


@jit
def sigmoid_forward_backward_kernel(X, dh0, h0, dX):
    real = X.dtype.type
    N, F = X.shape
    for n in range(N):
        for j in range(F):
            X_nj = X[n, j]
            dh0_nj = dh0[n, j]
            t0 = _sigmoid(X_nj)
            h0[n, j] = t0
            dX[n, j] = dh0_nj*t0*(real(1) - t0)  # dL/dX = dL/dh0 * dh0/dX = dL/dh0 * h0*(1 - h0)


def sigmoid_forward_backward(x, dout):
    """Forward and backward in one pass over memory, when the upstream gradient is known with the
    inputs (an activation applied to a fixed upstream gradient); returns (out, dx)."""
    x, dout, = _arrays("sigmoid_forward_backward", x=x, dout=dout)
    _shape("sigmoid_forward_backward", "x", x, dout.shape)
    out = np.empty(dout.shape, dout.dtype)
    dx = np.empty(dout.shape, dout.dtype)
    sigmoid_forward_backward_kernel(x.reshape(1, -1), dout.reshape(1, -1), out.reshape(1, -1), dx.reshape(1, -1))
    return out, dx


@jit
def tanh_forward_kernel(X, h0):
    real = X.dtype.type
    N, F = X.shape
    # layer 1: tanh
    for n in range(N):
        for j in range(F):
            X_nj = X[n, j]
            h0[n, j] = _tanh(X_nj)


def tanh_forward(x, out=None):
    """y = tanh(x), element by element (hyperbolic tangent)."""
    if out is not None:  # the caller's array must not share memory with an input
        _separate("tanh_forward", dict(out=out), dict(x=x))
    x, = _arrays("tanh_forward", x=x)
    out = _output("tanh_forward", "out", out, x.shape, x.dtype)
    tanh_forward_kernel(x.reshape(1, -1), out.reshape(1, -1))
    return out


@jit
def tanh_backward_kernel(dh0, h0, dX):
    real = dh0.dtype.type
    N, F = dh0.shape
    # layer 1: tanh
    for n in range(N):
        for j in range(F):
            h0_nj = h0[n, j]
            dh0_nj = dh0[n, j]
            dX[n, j] = dh0_nj*(real(1) - (h0_nj*h0_nj))  # dL/dX = dL/dh0 * dh0/dX = dL/dh0 * 1 - h0**2


def tanh_backward(dout, y, dx=None):
    """dx = dout*(1 - y**2). Never writes its inputs."""
    if dx is not None:  # the caller's array must not share memory with an input
        _separate("tanh_backward", dict(dx=dx), dict(dout=dout, y=y))
    dout, y, = _arrays("tanh_backward", dout=dout, y=y)
    _shape("tanh_backward", "y", y, dout.shape)
    dx = _output("tanh_backward", "dx", dx, dout.shape, dout.dtype)
    tanh_backward_kernel(dout.reshape(1, -1), y.reshape(1, -1), dx.reshape(1, -1))
    return dx


@jit
def tanh_forward_backward_kernel(X, dh0, h0, dX):
    real = X.dtype.type
    N, F = X.shape
    for n in range(N):
        for j in range(F):
            X_nj = X[n, j]
            dh0_nj = dh0[n, j]
            t0 = _tanh(X_nj)
            h0[n, j] = t0
            dX[n, j] = dh0_nj*(real(1) - (t0*t0))  # dL/dX = dL/dh0 * dh0/dX = dL/dh0 * 1 - h0**2


def tanh_forward_backward(x, dout):
    """Forward and backward in one pass over memory, when the upstream gradient is known with the
    inputs (an activation applied to a fixed upstream gradient); returns (out, dx)."""
    x, dout, = _arrays("tanh_forward_backward", x=x, dout=dout)
    _shape("tanh_forward_backward", "x", x, dout.shape)
    out = np.empty(dout.shape, dout.dtype)
    dx = np.empty(dout.shape, dout.dtype)
    tanh_forward_backward_kernel(x.reshape(1, -1), dout.reshape(1, -1), out.reshape(1, -1), dx.reshape(1, -1))
    return out, dx


@jit
def affine_forward_kernel(X, W1, b1, z1):
    # layer 1: affine
    _gemm(X, W1, z1, False, False, False)  # z1 = X W1
    _add_bias(z1, b1)  # z1 += 1 b1


def affine_forward(X, W, b, out=None):
    """Y = X*W + 1*b: X is (N, I), W is (I, J), b is (J,) (fully connected layer Y = X W + b, one bias per output)."""
    if out is not None:  # the caller's array must not share memory with an input
        _separate("affine_forward", dict(out=out), dict(X=X, W=W, b=b))
    X, W, b, = _arrays("affine_forward", X=X, W=W, b=b)
    if X.ndim != 2 or W.ndim != 2 or X.shape[1] != W.shape[0]:
        raise ValueError(f"affine_forward: X {X.shape} and W {W.shape} do not chain as (N, I) x (I, J)")
    _shape("affine_forward", "b", b, (W.shape[1],))
    out = _output("affine_forward", "out", out, (X.shape[0], W.shape[1]), X.dtype)
    affine_forward_kernel(X, W, b, out)
    return out


@jit
def affine_backward_kernel(dz1, X, W1, dX, dW1, db1):
    # layer 1: affine
    _gemm(X, dz1, dW1, True, False, False)  # dL/dW1 = X^T dL/dz1
    _column_sums(dz1, db1)  # dL/db1 = 1^T dL/dz1 (sum over the batch)
    _gemm(dz1, W1, dX, False, True, False)  # dL/dX = dL/dz1 W1^T


def affine_backward(dY, X, W):
    """dX = dY*W.T; dW = X.T*dY; db = 1*dY. Never writes its inputs."""
    dY, X, W, = _arrays("affine_backward", dY=dY, X=X, W=W)
    if X.ndim != 2 or W.ndim != 2 or X.shape[1] != W.shape[0]:
        raise ValueError(f"affine_backward: X {X.shape} and W {W.shape} do not chain as (N, I) x (I, J)")
    _shape("affine_backward", "dY", dY, (X.shape[0], W.shape[1]))
    dX = np.empty((X.shape[0], X.shape[1]), X.dtype)
    dW = np.empty((X.shape[1], W.shape[1]), X.dtype)
    db = np.empty((W.shape[1],), X.dtype)
    affine_backward_kernel(dY, X, W, dX, dW, db)
    return dX, dW, db


@jit
def affine_shared_bias_forward_kernel(X, W1, b1, z1):
    # layer 1: affine-shared-bias
    _gemm(X, W1, z1, False, False, False)  # z1 = X W1
    _add_bias(z1, b1)  # z1 += 1 b1


def affine_shared_bias_forward(X, W, b, out=None):
    """Y = X*W + 1*b*1: X is (N, I), W is (I, J), b is (1,) (fully connected layer Y = X W + c, one bias shared by all outputs (the seeds' worked example))."""
    if out is not None:  # the caller's array must not share memory with an input
        _separate("affine_shared_bias_forward", dict(out=out), dict(X=X, W=W, b=b))
    X, W, b, = _arrays("affine_shared_bias_forward", X=X, W=W, b=b)
    if X.ndim != 2 or W.ndim != 2 or X.shape[1] != W.shape[0]:
        raise ValueError(f"affine_shared_bias_forward: X {X.shape} and W {W.shape} do not chain as (N, I) x (I, J)")
    _shape("affine_shared_bias_forward", "b", b, (1,))
    out = _output("affine_shared_bias_forward", "out", out, (X.shape[0], W.shape[1]), X.dtype)
    affine_shared_bias_forward_kernel(X, W, b, out)
    return out


@jit
def affine_shared_bias_backward_kernel(dz1, X, W1, dX, dW1, db1):
    # layer 1: affine-shared-bias
    _gemm(X, dz1, dW1, True, False, False)  # dL/dW1 = X^T dL/dz1
    _total(dz1, db1)  # dL/db1 = 1^T dL/dz1 1 (shared bias)
    _gemm(dz1, W1, dX, False, True, False)  # dL/dX = dL/dz1 W1^T


def affine_shared_bias_backward(dY, X, W):
    """dX = dY*W.T; dW = X.T*dY; db = 1*dY*1. Never writes its inputs."""
    dY, X, W, = _arrays("affine_shared_bias_backward", dY=dY, X=X, W=W)
    if X.ndim != 2 or W.ndim != 2 or X.shape[1] != W.shape[0]:
        raise ValueError(f"affine_shared_bias_backward: X {X.shape} and W {W.shape} do not chain as (N, I) x (I, J)")
    _shape("affine_shared_bias_backward", "dY", dY, (X.shape[0], W.shape[1]))
    dX = np.empty((X.shape[0], X.shape[1]), X.dtype)
    dW = np.empty((X.shape[1], W.shape[1]), X.dtype)
    db = np.empty((1,), X.dtype)
    affine_shared_bias_backward_kernel(dY, X, W, dX, dW, db)
    return dX, dW, db


@jit
def batchnorm_forward_kernel(X, scale1, shift1, eps1, h0, xhat1, s1, mean1, var1):
    real = X.dtype.type
    N, F = X.shape
    # layer 1: batchnorm (mean and biased variance over the batch, per feature)
    eps1 = real(eps1)
    for j in range(F):
        mean1[j] = real(0)
    for n in range(N):
        for j in range(F):
            mean1[j] += X[n, j]
    for j in range(F):
        mean1[j] = mean1[j]/real(N)
        var1[j] = real(0)
    for n in range(N):
        for j in range(F):
            centred = X[n, j] - mean1[j]
            var1[j] += centred*centred
    for j in range(F):
        var1[j] = var1[j]/real(N)
    for j in range(F):
        s1[j] = np.sqrt(eps1 + var1[j])
    for n in range(N):
        for j in range(F):
            xhat1[n, j] = (-mean1[j] + X[n, j])/s1[j]
            h0[n, j] = shift1[j] + scale1[j]*xhat1[n, j]


def batchnorm_forward(x, g, b, eps1=1e-05, out=None):
    """s = sqrt(epsilon + sigma2); xhat = (-mu + x)/s; y = b + g*xhat (batch normalisation: each feature normalised over the batch, then g xhat + b (running averages at inference)), on a batch of rows (N, F)"""
    if out is not None:  # the caller's array must not share memory with an input
        _separate("batchnorm_forward", dict(out=out), dict(x=x, g=g, b=b))
    x, g, b, = _arrays("batchnorm_forward", x=x, g=g, b=b)
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError(f"batchnorm_forward: x must be 2-D (batch, features) with at least one row and one feature, got shape {x.shape}")
    _shape("batchnorm_forward", "g", g, (x.shape[1],))
    _shape("batchnorm_forward", "b", b, (x.shape[1],))
    out = _output("batchnorm_forward", "out", out, x.shape, x.dtype)
    xhat = np.empty(x.shape, x.dtype)
    s = np.empty((x.shape[1],), x.dtype)
    mean = np.empty((x.shape[1],), x.dtype)
    var = np.empty((x.shape[1],), x.dtype)
    batchnorm_forward_kernel(x, g, b, eps1, out, xhat, s, mean, var)
    return out, xhat, s, mean, var


@jit
def batchnorm_backward_kernel(dh0, xhat1, s1, scale1, dX, dscale1, dshift1, sum_dy1, sum_dy_xhat1):
    real = dh0.dtype.type
    N, F = dh0.shape
    # layer 1: batchnorm
    # dg = Sum(dy[n]*xhat[n], (n, 1, N)), db = Sum(dy[n], (n, 1, N))
    for j in range(F):
        sum_dy1[j] = real(0)
        sum_dy_xhat1[j] = real(0)
    for n in range(N):
        for j in range(F):
            sum_dy1[j] += dh0[n, j]
            sum_dy_xhat1[j] += dh0[n, j]*xhat1[n, j]
    for j in range(F):
        dscale1[j] = sum_dy_xhat1[j]
        dshift1[j] = sum_dy1[j]
    for n in range(N):
        for j in range(F):
            dX[n, j] = scale1[j]*(real(N)*dh0[n, j] - sum_dy1[j] - sum_dy_xhat1[j]*xhat1[n, j])/(real(N)*s1[j])  # dx = g*(N*dy - sum_dy - sum_dy_xhat*xhat)/(N*s)


def batchnorm_backward(dy, xhat, s, g, dx=None):
    """dx = g*(N*dy - sum_dy - sum_dy_xhat*xhat)/(N*s); dg = Sum(dy[n]*xhat[n], (n, 1, N)); db = Sum(dy[n], (n, 1, N)). Never writes its inputs."""
    if dx is not None:  # the caller's array must not share memory with an input
        _separate("batchnorm_backward", dict(dx=dx), dict(dy=dy, xhat=xhat, s=s, g=g))
    dy, xhat, s, g, = _arrays("batchnorm_backward", dy=dy, xhat=xhat, s=s, g=g)
    if dy.ndim != 2 or 0 in dy.shape:
        raise ValueError(f"batchnorm_backward: dy must be 2-D (batch, features) with at least one row and one feature, got shape {dy.shape}")
    _shape("batchnorm_backward", "xhat", xhat, dy.shape)
    _shape("batchnorm_backward", "s", s, (dy.shape[1],))
    _shape("batchnorm_backward", "g", g, (dy.shape[1],))
    dx = _output("batchnorm_backward", "dx", dx, dy.shape, dy.dtype)
    dg = np.empty((dy.shape[1],), dy.dtype)
    db = np.empty((dy.shape[1],), dy.dtype)
    sum_dy1 = np.empty((dy.shape[1],), dy.dtype)
    sum_dy_xhat1 = np.empty((dy.shape[1],), dy.dtype)
    batchnorm_backward_kernel(dy, xhat, s, g, dx, dg, db, sum_dy1, sum_dy_xhat1)
    return dx, dg, db


@jit
def layernorm_forward_kernel(X, scale1, shift1, eps1, h0, xhat1, s1, mean1, var1):
    real = X.dtype.type
    N, F = X.shape
    # layer 1: layernorm (mean and biased variance over each row's features)
    eps1 = real(eps1)
    for n in range(N):
        mean1[n] = real(0)
        for j in range(F):
            mean1[n] += X[n, j]
        mean1[n] = mean1[n]/real(F)
        var1[n] = real(0)
        for j in range(F):
            centred = X[n, j] - mean1[n]
            var1[n] += centred*centred
        var1[n] = var1[n]/real(F)
        s1[n] = np.sqrt(eps1 + var1[n])
        for j in range(F):
            xhat1[n, j] = (-mean1[n] + X[n, j])/s1[n]
            h0[n, j] = shift1[j] + scale1[j]*xhat1[n, j]


def layernorm_forward(x, g, b, eps1=1e-05, out=None):
    """s = sqrt(epsilon + sigma2); xhat = (-mu + x)/s; y = b + g*xhat (layer normalisation: each row normalised over its features, then g xhat + b), on a batch of rows (N, F)"""
    if out is not None:  # the caller's array must not share memory with an input
        _separate("layernorm_forward", dict(out=out), dict(x=x, g=g, b=b))
    x, g, b, = _arrays("layernorm_forward", x=x, g=g, b=b)
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError(f"layernorm_forward: x must be 2-D (batch, features) with at least one row and one feature, got shape {x.shape}")
    _shape("layernorm_forward", "g", g, (x.shape[1],))
    _shape("layernorm_forward", "b", b, (x.shape[1],))
    out = _output("layernorm_forward", "out", out, x.shape, x.dtype)
    xhat = np.empty(x.shape, x.dtype)
    s = np.empty((x.shape[0],), x.dtype)
    mean = np.empty((x.shape[0],), x.dtype)
    var = np.empty((x.shape[0],), x.dtype)
    layernorm_forward_kernel(x, g, b, eps1, out, xhat, s, mean, var)
    return out, xhat, s, mean, var


@jit
def layernorm_backward_kernel(dh0, xhat1, s1, scale1, dX, dscale1, dshift1):
    real = dh0.dtype.type
    N, F = dh0.shape
    # layer 1: layernorm
    for j in range(F):
        dscale1[j] = real(0)
        dshift1[j] = real(0)
    for n in range(N):
        sum_gdy = real(0)
        sum_gdy_xhat = real(0)
        for j in range(F):
            sum_gdy += dh0[n, j]*scale1[j]
            sum_gdy_xhat += dh0[n, j]*scale1[j]*xhat1[n, j]
        for j in range(F):
            dX[n, j] = (real(F)*dh0[n, j]*scale1[j] - sum_gdy - sum_gdy_xhat*xhat1[n, j])/(real(F)*s1[n])  # dx = (F*dy*g - sum_gdy - sum_gdy_xhat*xhat)/(F*s)
        for j in range(F):
            dscale1[j] += dh0[n, j]*xhat1[n, j]  # dg: each row's dy * xhat, summed over the batch
            dshift1[j] += dh0[n, j]  # db: each row's dy, summed over the batch


def layernorm_backward(dy, xhat, s, g, dx=None):
    """dx = (F*dy*g - sum_gdy - sum_gdy_xhat*xhat)/(F*s); dg = dy*xhat; db = dy. Never writes its inputs."""
    if dx is not None:  # the caller's array must not share memory with an input
        _separate("layernorm_backward", dict(dx=dx), dict(dy=dy, xhat=xhat, s=s, g=g))
    dy, xhat, s, g, = _arrays("layernorm_backward", dy=dy, xhat=xhat, s=s, g=g)
    if dy.ndim != 2 or 0 in dy.shape:
        raise ValueError(f"layernorm_backward: dy must be 2-D (batch, features) with at least one row and one feature, got shape {dy.shape}")
    _shape("layernorm_backward", "xhat", xhat, dy.shape)
    _shape("layernorm_backward", "s", s, (dy.shape[0],))
    _shape("layernorm_backward", "g", g, (dy.shape[1],))
    dx = _output("layernorm_backward", "dx", dx, dy.shape, dy.dtype)
    dg = np.empty((dy.shape[1],), dy.dtype)
    db = np.empty((dy.shape[1],), dy.dtype)
    layernorm_backward_kernel(dy, xhat, s, g, dx, dg, db)
    return dx, dg, db


@jit
def dropout_forward_kernel(X, mask1, p, h0):
    real = X.dtype.type
    N, F = X.shape
    p = real(p)
    # layer 1: dropout (mask mask1: 0 or 1)
    for n in range(N):
        for j in range(F):
            X_nj = X[n, j]
            mask1_nj = mask1[n, j]
            h0[n, j] = mask1_nj*X_nj/(real(1) - p)


def dropout_forward(x, m, p=0.5):
    """y = m*x/(1 - p), element by element (inverted dropout: units dropped with probability p, survivors scaled by 1/(1-p); identity at inference)."""
    x, m, = _arrays("dropout_forward", x=x, m=m)
    _shape("dropout_forward", "m", m, x.shape)
    out = np.empty(x.shape, x.dtype)
    dropout_forward_kernel(x.reshape(1, -1), m.reshape(1, -1), p, out.reshape(1, -1))
    return out


@jit
def dropout_backward_kernel(dh0, mask1, p, dX):
    real = dh0.dtype.type
    N, F = dh0.shape
    p = real(p)
    # layer 1: dropout
    for n in range(N):
        for j in range(F):
            mask1_nj = mask1[n, j]
            dh0_nj = dh0[n, j]
            dX[n, j] = dh0_nj*mask1_nj/(real(1) - p)  # dL/dX = dy*m/(1 - p)


def dropout_backward(dy, m, p=0.5):
    """dx = dy*m/(1 - p). Never writes its inputs."""
    dy, m, = _arrays("dropout_backward", dy=dy, m=m)
    _shape("dropout_backward", "m", m, dy.shape)
    dx = np.empty(dy.shape, dy.dtype)
    dropout_backward_kernel(dy.reshape(1, -1), m.reshape(1, -1), p, dx.reshape(1, -1))
    return dx


@jit
def softmax_forward_kernel(X, p0):
    real = X.dtype.type
    N, F = X.shape
    # layer 1: softmax
    K = F
    for n in range(N):
        zmax = X[n, 0]
        for k in range(1, K):
            zmax = max(zmax, X[n, k])
        s0 = real(0)
        for k in range(K):
            s0 += _exp(-zmax + X[n, k])
        for k in range(K):
            p0[n, k] = _exp(-zmax + X[n, k])/s0


def softmax_forward(z, out=None):
    """y[k] = exp(-zmax + z[k])/Sum(exp(-zmax + z[m]), (m, 1, K)) (softmax over each row), on a batch of rows (N, F)"""
    if out is not None:  # the caller's array must not share memory with an input
        _separate("softmax_forward", dict(out=out), dict(z=z))
    z, = _arrays("softmax_forward", z=z)
    if z.ndim != 2 or 0 in z.shape:
        raise ValueError(f"softmax_forward: z must be 2-D (batch, features) with at least one row and one feature, got shape {z.shape}")
    out = _output("softmax_forward", "out", out, z.shape, z.dtype)
    softmax_forward_kernel(z, out)
    return out


@jit
def softmax_backward_kernel(dp0, p0, dX):
    real = dp0.dtype.type
    N, F = dp0.shape
    # layer 1: softmax
    K = F
    for n in range(N):
        s0 = real(0)
        for k in range(K):
            s0 += dp0[n, k]*p0[n, k]
        for k in range(K):
            dX[n, k] = (-s0 + dp0[n, k])*p0[n, k]


def softmax_backward(dy, y, dz=None):
    """dz = (dy[j] - Sum(dy[k]*y[k], (k, 1, K)))*y[j]. Never writes its inputs."""
    if dz is not None:  # the caller's array must not share memory with an input
        _separate("softmax_backward", dict(dz=dz), dict(dy=dy, y=y))
    dy, y, = _arrays("softmax_backward", dy=dy, y=y)
    if dy.ndim != 2 or 0 in dy.shape:
        raise ValueError(f"softmax_backward: dy must be 2-D (batch, features) with at least one row and one feature, got shape {dy.shape}")
    _shape("softmax_backward", "y", y, dy.shape)
    dz = _output("softmax_backward", "dz", dz, dy.shape, dy.dtype)
    softmax_backward_kernel(dy, y, dz)
    return dz


@jit
def softmax_cross_entropy_forward_kernel(X, T, P):
    real = X.dtype.type
    N, F = X.shape
    # layer 1: softmax-cross-entropy (log-sum-exp, row maximum subtracted; P = softmax, saved for backward)
    K = F
    loss = real(0)
    for n in range(N):
        zmax = X[n, 0]
        for k in range(1, K):
            zmax = max(zmax, X[n, k])
        s0 = real(0)
        for k in range(K):
            s0 += T[n, k]*X[n, k]
        s1 = real(0)
        for k in range(K):
            s1 += _exp(-zmax + X[n, k])
        row_loss = -s0 + zmax + np.log(s1)
        for k in range(K):
            P[n, k] = _exp(-zmax + X[n, k])/s1
        loss += row_loss
    loss = loss/real(N)
    return loss


def softmax_cross_entropy_forward(z, t, out=None):
    """y[k] = exp(-zmax + z[k])/Sum(exp(-zmax + z[m]), (m, 1, K)); L_n = zmax + log(Sum(exp(-zmax + z[m]), (m, 1, K))) - Sum(t[k]*z[k], (k, 1, K)) (softmax then cross-entropy with one-hot targets, mean over the batch), on a batch of rows (N, F); returns the loss and out, saved for backward"""
    if out is not None:  # the caller's array must not share memory with an input
        _separate("softmax_cross_entropy_forward", dict(out=out), dict(z=z, t=t))
    z, t, = _arrays("softmax_cross_entropy_forward", z=z, t=t)
    if z.ndim != 2 or 0 in z.shape:
        raise ValueError(f"softmax_cross_entropy_forward: z must be 2-D (batch, classes) with at least one row and one class, got shape {z.shape}")
    _shape("softmax_cross_entropy_forward", "t", t, z.shape)
    out = _output("softmax_cross_entropy_forward", "out", out, z.shape, z.dtype)
    loss = softmax_cross_entropy_forward_kernel(z, t, out)
    return loss, out


@jit
def softmax_cross_entropy_backward_kernel(P, T, dX):
    real = P.dtype.type
    N, F = P.shape
    K = F
    for n in range(N):
        for k in range(K):
            dX[n, k] = (-T[n, k] + P[n, k])/real(N)  # dL/dX = (-t[j] + y[j])/N


def softmax_cross_entropy_backward(y, t, dz=None):
    """dz = (-t[j] + y[j])/N. Never writes its inputs."""
    if dz is not None:  # the caller's array must not share memory with an input
        _separate("softmax_cross_entropy_backward", dict(dz=dz), dict(y=y, t=t))
    y, t, = _arrays("softmax_cross_entropy_backward", y=y, t=t)
    if y.ndim != 2 or 0 in y.shape:
        raise ValueError(f"softmax_cross_entropy_backward: y must be 2-D (batch, classes) with at least one row and one class, got shape {y.shape}")
    _shape("softmax_cross_entropy_backward", "t", t, y.shape)
    dz = _output("softmax_cross_entropy_backward", "dz", dz, y.shape, y.dtype)
    softmax_cross_entropy_backward_kernel(y, t, dz)
    return dz


@jit
def squared_error_forward_kernel(X, T):
    real = X.dtype.type
    N, F = X.shape
    # layer 1: squared-error
    K = F
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = (real(0.5))*((T[n, j] - X[n, j])*(T[n, j] - X[n, j]))
            loss += loss_term
    return loss


def squared_error_forward(y, t):
    """l = (t - y)**2/2 (1/2 sum of squared errors (the seeds' E)), on a batch of rows (N, F); returns the loss"""
    y, t, = _arrays("squared_error_forward", y=y, t=t)
    if y.ndim != 2 or 0 in y.shape:
        raise ValueError(f"squared_error_forward: y must be 2-D (batch, classes) with at least one row and one class, got shape {y.shape}")
    _shape("squared_error_forward", "t", t, y.shape)
    loss = squared_error_forward_kernel(y, t)
    return loss


@jit
def squared_error_backward_kernel(X, T, dX):
    real = X.dtype.type
    N, F = X.shape
    K = F
    for n in range(N):
        for j in range(K):
            dX[n, j] = -T[n, j] + X[n, j]  # dL/dX = -t + y


def squared_error_backward(y, t, dy=None):
    """dy = -t + y. Never writes its inputs."""
    if dy is not None:  # the caller's array must not share memory with an input
        _separate("squared_error_backward", dict(dy=dy), dict(y=y, t=t))
    y, t, = _arrays("squared_error_backward", y=y, t=t)
    if y.ndim != 2 or 0 in y.shape:
        raise ValueError(f"squared_error_backward: y must be 2-D (batch, classes) with at least one row and one class, got shape {y.shape}")
    _shape("squared_error_backward", "t", t, y.shape)
    dy = _output("squared_error_backward", "dy", dy, y.shape, y.dtype)
    squared_error_backward_kernel(y, t, dy)
    return dy


@jit
def mse_forward_kernel(X, T):
    real = X.dtype.type
    N, F = X.shape
    # layer 1: mse
    K = F
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = ((T[n, j] - X[n, j])*(T[n, j] - X[n, j]))
            loss += loss_term
    loss = (real(1)/(real(K)*real(N)))*loss
    return loss


def mse_forward(y, t):
    """l = (t - y)**2 (mean squared error over all elements), on a batch of rows (N, F); returns the loss"""
    y, t, = _arrays("mse_forward", y=y, t=t)
    if y.ndim != 2 or 0 in y.shape:
        raise ValueError(f"mse_forward: y must be 2-D (batch, classes) with at least one row and one class, got shape {y.shape}")
    _shape("mse_forward", "t", t, y.shape)
    loss = mse_forward_kernel(y, t)
    return loss


@jit
def mse_backward_kernel(X, T, dX):
    real = X.dtype.type
    N, F = X.shape
    K = F
    for n in range(N):
        for j in range(K):
            dX[n, j] = (-real(2)*T[n, j] + real(2)*X[n, j])/(real(K)*real(N))  # dL/dX = (-2*t + 2*y)/(K*N)


def mse_backward(y, t, dy=None):
    """dy = (-2*t + 2*y)/(K*N). Never writes its inputs."""
    if dy is not None:  # the caller's array must not share memory with an input
        _separate("mse_backward", dict(dy=dy), dict(y=y, t=t))
    y, t, = _arrays("mse_backward", y=y, t=t)
    if y.ndim != 2 or 0 in y.shape:
        raise ValueError(f"mse_backward: y must be 2-D (batch, classes) with at least one row and one class, got shape {y.shape}")
    _shape("mse_backward", "t", t, y.shape)
    dy = _output("mse_backward", "dy", dy, y.shape, y.dtype)
    mse_backward_kernel(y, t, dy)
    return dy


@jit
def binary_cross_entropy_forward_kernel(X, T):
    real = X.dtype.type
    N, F = X.shape
    # layer 1: binary-cross-entropy
    K = F
    loss = real(0)
    for n in range(N):
        for j in range(K):
            loss_term = -T[n, j]*X[n, j] + _softplus(X[n, j])
            loss += loss_term
    loss = loss/real(N)
    return loss


def binary_cross_entropy_forward(z, t):
    """l = -t*z + Softplus(z) (sigmoid then binary cross-entropy, mean over the batch (takes logits z)), on a batch of rows (N, F); returns the loss"""
    z, t, = _arrays("binary_cross_entropy_forward", z=z, t=t)
    if z.ndim != 2 or 0 in z.shape:
        raise ValueError(f"binary_cross_entropy_forward: z must be 2-D (batch, classes) with at least one row and one class, got shape {z.shape}")
    _shape("binary_cross_entropy_forward", "t", t, z.shape)
    loss = binary_cross_entropy_forward_kernel(z, t)
    return loss


@jit
def binary_cross_entropy_backward_kernel(X, T, dX):
    real = X.dtype.type
    N, F = X.shape
    K = F
    for n in range(N):
        for j in range(K):
            dX[n, j] = (-T[n, j] + _sigmoid(X[n, j]))/real(N)  # dL/dX = (-t + Sigmoid(z))/N


def binary_cross_entropy_backward(z, t, dz=None):
    """dz = (-t + Sigmoid(z))/N. Never writes its inputs."""
    if dz is not None:  # the caller's array must not share memory with an input
        _separate("binary_cross_entropy_backward", dict(dz=dz), dict(z=z, t=t))
    z, t, = _arrays("binary_cross_entropy_backward", z=z, t=t)
    if z.ndim != 2 or 0 in z.shape:
        raise ValueError(f"binary_cross_entropy_backward: z must be 2-D (batch, classes) with at least one row and one class, got shape {z.shape}")
    _shape("binary_cross_entropy_backward", "t", t, z.shape)
    dz = _output("binary_cross_entropy_backward", "dz", dz, z.shape, z.dtype)
    binary_cross_entropy_backward_kernel(z, t, dz)
    return dz


@jit
def log_softmax_nll_forward_kernel(X, T, P):
    real = X.dtype.type
    N, F = X.shape
    # layer 1: log-softmax-nll (log-sum-exp, row maximum subtracted; P = softmax, saved for backward)
    K = F
    loss = real(0)
    for n in range(N):
        zmax = X[n, 0]
        for k in range(1, K):
            zmax = max(zmax, X[n, k])
        s0 = real(0)
        for k in range(K):
            s0 += T[n, k]*X[n, k]
        s1 = real(0)
        for k in range(K):
            s1 += _exp(-zmax + X[n, k])
        row_loss = -s0 + zmax + np.log(s1)
        for k in range(K):
            P[n, k] = _exp(-zmax + X[n, k])/s1
        loss += row_loss
    loss = loss/real(N)
    return loss


def log_softmax_nll_forward(z, t, out=None):
    """y[k] = exp(-zmax + z[k])/Sum(exp(-zmax + z[m]), (m, 1, K)); L_n = zmax + log(Sum(exp(-zmax + z[m]), (m, 1, K))) - Sum(t[k]*z[k], (k, 1, K)) (log-softmax then the negative log-likelihood of the true class (one-hot targets), mean over the batch), on a batch of rows (N, F); returns the loss and out, saved for backward"""
    if out is not None:  # the caller's array must not share memory with an input
        _separate("log_softmax_nll_forward", dict(out=out), dict(z=z, t=t))
    z, t, = _arrays("log_softmax_nll_forward", z=z, t=t)
    if z.ndim != 2 or 0 in z.shape:
        raise ValueError(f"log_softmax_nll_forward: z must be 2-D (batch, classes) with at least one row and one class, got shape {z.shape}")
    _shape("log_softmax_nll_forward", "t", t, z.shape)
    out = _output("log_softmax_nll_forward", "out", out, z.shape, z.dtype)
    loss = log_softmax_nll_forward_kernel(z, t, out)
    return loss, out


@jit
def log_softmax_nll_backward_kernel(P, T, dX):
    real = P.dtype.type
    N, F = P.shape
    K = F
    for n in range(N):
        for k in range(K):
            dX[n, k] = (-T[n, k] + P[n, k])/real(N)  # dL/dX = (-t[j] + y[j])/N


def log_softmax_nll_backward(y, t, dz=None):
    """dz = (-t[j] + y[j])/N. Never writes its inputs."""
    if dz is not None:  # the caller's array must not share memory with an input
        _separate("log_softmax_nll_backward", dict(dz=dz), dict(y=y, t=t))
    y, t, = _arrays("log_softmax_nll_backward", y=y, t=t)
    if y.ndim != 2 or 0 in y.shape:
        raise ValueError(f"log_softmax_nll_backward: y must be 2-D (batch, classes) with at least one row and one class, got shape {y.shape}")
    _shape("log_softmax_nll_backward", "t", t, y.shape)
    dz = _output("log_softmax_nll_backward", "dz", dz, y.shape, y.dtype)
    log_softmax_nll_backward_kernel(y, t, dz)
    return dz


@jit
def multiclass_hinge_forward_kernel(X, T):
    real = X.dtype.type
    N, F = X.shape
    # layer 1: multiclass-hinge (zy: the score of the correct class)
    K = F
    loss = real(0)
    for n in range(N):
        s0 = real(0)
        for k in range(K):
            s0 += T[n, k]*X[n, k]
        zy = s0
        s0 = real(0)
        for k in range(K):
            s0 += (real(1) - T[n, k])*max(real(0), -zy + X[n, k] + real(1))
        row_loss = s0
        loss += row_loss
    loss = loss/real(N)
    return loss


def multiclass_hinge_forward(z, t):
    """zy = Sum(t[k]*z[k], (k, 1, K)); L_n = Sum((1 - t[k])*Max(0, -zy + z[k] + 1), (k, 1, K)) (multiclass SVM loss: sum over wrong classes of max(0, z[k] - z[y] + 1), mean over the batch), on a batch of rows (N, F); returns the loss"""
    z, t, = _arrays("multiclass_hinge_forward", z=z, t=t)
    if z.ndim != 2 or 0 in z.shape:
        raise ValueError(f"multiclass_hinge_forward: z must be 2-D (batch, classes) with at least one row and one class, got shape {z.shape}")
    _shape("multiclass_hinge_forward", "t", t, z.shape)
    loss = multiclass_hinge_forward_kernel(z, t)
    return loss


@jit
def multiclass_hinge_backward_kernel(X, T, dX):
    real = X.dtype.type
    N, F = X.shape
    K = F
    for n in range(N):
        s0 = real(0)
        for k in range(K):
            s0 += T[n, k]*X[n, k]
        zy = s0
        s0 = real(0)
        for k in range(K):
            s0 += real(-zy + X[n, k] + real(1) > real(0))
        s1 = real(0)
        for k in range(K):
            s1 += real(-zy + X[n, k] + real(1) > real(0))*T[n, k]
        for k in range(K):
            t0 = real(-zy + X[n, k] + real(1) > real(0))
            dX[n, k] = (-s0*T[n, k] + s1*T[n, k] - t0*T[n, k] + t0)/real(N)  # dz = dL/dz = (-Heaviside(-zy + z[j] + 1, 0)*t[j] + Heaviside(-zy + z[j] + 1, 0) + t[j]*Sum(Heaviside(-zy + z[k] + 1, 0)*t[k], (k, 1, K)) - t[j]*Sum(Heaviside(-zy + z[k] + 1, 0), (k, 1, K)))/N


def multiclass_hinge_backward(z, t, dz=None):
    """dz = (-Heaviside(-zy + z[j] + 1, 0)*t[j] + Heaviside(-zy + z[j] + 1, 0) + t[j]*Sum(Heaviside(-zy + z[k] + 1, 0)*t[k], (k, 1, K)) - t[j]*Sum(Heaviside(-zy + z[k] + 1, 0), (k, 1, K)))/N. Never writes its inputs."""
    if dz is not None:  # the caller's array must not share memory with an input
        _separate("multiclass_hinge_backward", dict(dz=dz), dict(z=z, t=t))
    z, t, = _arrays("multiclass_hinge_backward", z=z, t=t)
    if z.ndim != 2 or 0 in z.shape:
        raise ValueError(f"multiclass_hinge_backward: z must be 2-D (batch, classes) with at least one row and one class, got shape {z.shape}")
    _shape("multiclass_hinge_backward", "t", t, z.shape)
    dz = _output("multiclass_hinge_backward", "dz", dz, z.shape, z.dtype)
    multiclass_hinge_backward_kernel(z, t, dz)
    return dz


@jit
def huber_forward_kernel(X, T):
    real = X.dtype.type
    N, F = X.shape
    # layer 1: huber
    K = F
    loss = real(0)
    for n in range(N):
        for j in range(K):
            t0 = T[n, j] - X[n, j]
            t1 = abs(t0)
            loss_term = ((real(0.5))*(t0*t0) if t1 <= real(1) else t1 + real(-0.5))
            loss += loss_term
    loss = (real(1)/(real(K)*real(N)))*loss
    return loss


def huber_forward(y, t):
    """l = Piecewise(((t - y)**2/2, Abs(t - y) <= 1), (Abs(t - y) - 1/2, True)) (Huber loss (delta 1), mean over all elements), on a batch of rows (N, F); returns the loss"""
    y, t, = _arrays("huber_forward", y=y, t=t)
    if y.ndim != 2 or 0 in y.shape:
        raise ValueError(f"huber_forward: y must be 2-D (batch, classes) with at least one row and one class, got shape {y.shape}")
    _shape("huber_forward", "t", t, y.shape)
    loss = huber_forward_kernel(y, t)
    return loss


@jit
def huber_backward_kernel(X, T, dX):
    real = X.dtype.type
    N, F = X.shape
    K = F
    for n in range(N):
        for j in range(K):
            t0 = T[n, j] - X[n, j]
            dX[n, j] = (-t0 if abs(t0) <= real(1) else -np.sign(t0))/(real(K)*real(N))  # dL/dX = Piecewise((-t + y, Abs(t - y) <= 1), (-sign(t - y), True))/(K*N)


def huber_backward(y, t, dy=None):
    """dy = Piecewise((-t + y, Abs(t - y) <= 1), (-sign(t - y), True))/(K*N). Never writes its inputs."""
    if dy is not None:  # the caller's array must not share memory with an input
        _separate("huber_backward", dict(dy=dy), dict(y=y, t=t))
    y, t, = _arrays("huber_backward", y=y, t=t)
    if y.ndim != 2 or 0 in y.shape:
        raise ValueError(f"huber_backward: y must be 2-D (batch, classes) with at least one row and one class, got shape {y.shape}")
    _shape("huber_backward", "t", t, y.shape)
    dy = _output("huber_backward", "dy", dy, y.shape, y.dtype)
    huber_backward_kernel(y, t, dy)
    return dy


@jit
def conv2d_forward_kernel(X, C, H, Wd, k, stride, pad, W1, b1, cols1, z1):
    _im2col(X, C, H, Wd, k, stride, pad, cols1)  # cols1[n]: each window of the padded X as a column
    _conv2d_product(W1, b1, cols1, z1)  # z1[n,o,i,j] = b1[o] + sum_c,p,q W1[o,c,p,q] Xp[n,c,s*i+p,s*j+q]


def conv2d_forward(X, W, b, stride=1, pad=0):
    """Y = b[o] + Sum(W[o, c, p, q]*Xp[n, c, i*s + p, j*s + q], (c, 0, C - 1), (p, 0, k - 1), (q, 0, k - 1)) (2-D convolution (cross-correlation) over NCHW images: conv2d(in, out, k[, stride[, pad]]), zero padding, one bias per output channel); X is (N, C, H, Wd), W is (O, C, k, k), b is (O,); returns Y as (N, O, Ho, Wo)."""
    X, W, b = _arrays("conv2d_forward", X=X, W=W, b=b)
    if X.ndim != 4 or X.shape[0] == 0:
        raise ValueError(f"conv2d_forward: expected a batch of NCHW images (N, C, H, W), got shape {X.shape}")
    N, C, H, Wd = X.shape
    if W.ndim != 4 or W.shape[0] < 1 or W.shape[2] < 1 or W.shape[1] != C or W.shape[3] != W.shape[2]:
        raise ValueError(f"conv2d_forward: W {W.shape} is not (O, C, k, k) for images {X.shape}")
    O, k = W.shape[0], W.shape[2]
    stride, pad = int(stride), int(pad)
    if stride < 1 or pad < 0:
        raise ValueError(f"conv2d_forward: needs stride >= 1 and pad >= 0, got stride={stride}, pad={pad}")
    Ho, Wo = (H - k + 2*pad) // stride + 1, (Wd - k + 2*pad) // stride + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"conv2d_forward: images {X.shape[2:]} are too small for k={k}, pad={pad}, stride={stride}")
    _shape("conv2d_forward", "b", b, (O,))
    Y = np.empty((N, O, Ho, Wo), X.dtype)
    cols1 = np.empty((N, C*k**2, Ho*Wo), X.dtype)
    conv2d_forward_kernel(X.reshape(N, -1), C, H, Wd, k, stride, pad, W, b, cols1, Y.reshape(N, -1))
    return Y


@jit
def conv2d_backward_kernel(X, C, H, Wd, k, stride, pad, dz1, W1, cols1, dW1, db1, db1_pixels, dcols1, dX):
    _im2col(X, C, H, Wd, k, stride, pad, cols1)  # cols1[n]: each window of the padded X as a column
    _conv2d_param_grads(dz1, cols1, dW1, db1, db1_pixels)  # dL/dW1[o,c,p,q] = sum_n,i,j dL/dz1[n,o,i,j] Xp[n,c,s*i+p,s*j+q]; dL/db1[o] = sum_n,i,j dL/dz1[n,o,i,j]
    _conv2d_input_grad(dz1, W1, C, H, Wd, stride, pad, dcols1, dX)  # dL/dXp[n,c,u,v] = sum_o,i,j dL/dz1[n,o,i,j] W1[o,c,u-s*i,v-s*j] (full convolution with the flipped kernel)


def conv2d_backward(dY, X, W, stride=1, pad=0):
    """dX = Sum(W[o, e, -i*s + u, -j*s + v]*dY[a, o, i, j], (o, 0, O - 1), (i, 0, H_out - 1), (j, 0, W_out - 1)); dW = Sum(Xp[n, e, i*s + u, j*s + v]*dY[n, a, i, j], (n, 0, N - 1), (i, 0, H_out - 1), (j, 0, W_out - 1)); db = Sum(dY[n, a, i, j], (n, 0, N - 1), (i, 0, H_out - 1), (j, 0, W_out - 1)); window arrays (the kernel W, the average window A, the max selector S) read as 0 outside 0 <= p, q < k: the sifted sum keeps only windows that contain (u, v). Never writes its inputs."""
    dY, X, W = _arrays("conv2d_backward", dY=dY, X=X, W=W)
    if X.ndim != 4 or X.shape[0] == 0:
        raise ValueError(f"conv2d_backward: expected a batch of NCHW images (N, C, H, W), got shape {X.shape}")
    N, C, H, Wd = X.shape
    if W.ndim != 4 or W.shape[0] < 1 or W.shape[2] < 1 or W.shape[1] != C or W.shape[3] != W.shape[2]:
        raise ValueError(f"conv2d_backward: W {W.shape} is not (O, C, k, k) for images {X.shape}")
    O, k = W.shape[0], W.shape[2]
    stride, pad = int(stride), int(pad)
    if stride < 1 or pad < 0:
        raise ValueError(f"conv2d_backward: needs stride >= 1 and pad >= 0, got stride={stride}, pad={pad}")
    Ho, Wo = (H - k + 2*pad) // stride + 1, (Wd - k + 2*pad) // stride + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"conv2d_backward: images {X.shape[2:]} are too small for k={k}, pad={pad}, stride={stride}")
    _shape("conv2d_backward", "dY", dY, (N, O, Ho, Wo))
    dX = np.empty((N, C, H, Wd), X.dtype)
    dW = np.empty((O, C, k, k), X.dtype)
    db = np.empty((O,), X.dtype)
    cols1 = np.empty((N, C*k**2, Ho*Wo), X.dtype)
    db1_pixels = np.empty((O, Ho*Wo), X.dtype)
    dcols1 = np.empty((C*k**2, Ho*Wo), X.dtype)
    conv2d_backward_kernel(X.reshape(N, -1), C, H, Wd, k, stride, pad, dY.reshape(N, -1), W, cols1, dW, db, db1_pixels, dcols1, dX.reshape(N, -1))
    return dX, dW, db


@jit
def maxpool_forward_kernel(X, C, H, Wd, k, stride, pool0):
    _maxpool_forward(X, C, H, Wd, k, stride, pool0)  # pool0[n,c,i,j] = max of X[n,c,s*i+p,s*j+q] over the window


def maxpool_forward(X, k, stride=None):
    """Y = Sum(S[n, c, i, j, p, q]*X[n, c, i*s + p, j*s + q], (p, 0, k - 1), (q, 0, k - 1)) (max over k x k windows of each channel: maxpool(k[, stride]), stride k by default); X is (N, C, H, Wd); returns Y as (N, C, Ho, Wo)."""
    X, = _arrays("maxpool_forward", X=X)
    if X.ndim != 4 or X.shape[0] == 0:
        raise ValueError(f"maxpool_forward: expected a batch of NCHW images (N, C, H, W), got shape {X.shape}")
    N, C, H, Wd = X.shape
    stride = k if stride is None else stride
    k, stride = int(k), int(stride)
    if k < 1 or stride < 1:
        raise ValueError(f"maxpool_forward: needs k >= 1 and stride >= 1, got k={k}, stride={stride}")
    Ho, Wo = (H - k) // stride + 1, (Wd - k) // stride + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"maxpool_forward: images {X.shape[2:]} are too small for k={k}, stride={stride}")
    Y = np.empty((N, C, Ho, Wo), X.dtype)
    maxpool_forward_kernel(X.reshape(N, -1), C, H, Wd, k, stride, Y.reshape(N, -1))
    return Y


@jit
def maxpool_backward_kernel(dpool0, X, C, H, Wd, k, stride, dX):
    _maxpool_backward(dpool0, X, C, H, Wd, k, stride, dX)  # dL/dX: dL/dpool0[n,c,i,j] to the window's first maximum (row-major)


def maxpool_backward(dY, X, k, stride=None):
    """dX = Sum(S[a, e, i, j, -i*s + u, -j*s + v]*dY[a, e, i, j], (i, 0, H_out - 1), (j, 0, W_out - 1)); window arrays (the kernel W, the average window A, the max selector S) read as 0 outside 0 <= p, q < k: the sifted sum keeps only windows that contain (u, v); max-pool ties: the gradient goes to the first maximum of the window in row-major order (as torch's max_pool2d on CPU); every other element of the window gets 0. Never writes its inputs."""
    dY, X = _arrays("maxpool_backward", dY=dY, X=X)
    if X.ndim != 4 or X.shape[0] == 0:
        raise ValueError(f"maxpool_backward: expected a batch of NCHW images (N, C, H, W), got shape {X.shape}")
    N, C, H, Wd = X.shape
    stride = k if stride is None else stride
    k, stride = int(k), int(stride)
    if k < 1 or stride < 1:
        raise ValueError(f"maxpool_backward: needs k >= 1 and stride >= 1, got k={k}, stride={stride}")
    Ho, Wo = (H - k) // stride + 1, (Wd - k) // stride + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"maxpool_backward: images {X.shape[2:]} are too small for k={k}, stride={stride}")
    _shape("maxpool_backward", "dY", dY, (N, C, Ho, Wo))
    dX = np.empty((N, C, H, Wd), X.dtype)
    maxpool_backward_kernel(dY.reshape(N, -1), X.reshape(N, -1), C, H, Wd, k, stride, dX.reshape(N, -1))
    return dX


@jit
def avgpool_forward_kernel(X, C, H, Wd, k, stride, pool0):
    _avgpool_forward(X, C, H, Wd, k, stride, pool0)  # pool0[n,c,i,j] = mean of X[n,c,s*i+p,s*j+q] over the window


def avgpool_forward(X, k, stride=None):
    """Y = Sum(A[p, q]*X[n, c, i*s + p, j*s + q], (p, 0, k - 1), (q, 0, k - 1)) (mean over k x k windows of each channel: avgpool(k[, stride]), stride k by default); X is (N, C, H, Wd); returns Y as (N, C, Ho, Wo)."""
    X, = _arrays("avgpool_forward", X=X)
    if X.ndim != 4 or X.shape[0] == 0:
        raise ValueError(f"avgpool_forward: expected a batch of NCHW images (N, C, H, W), got shape {X.shape}")
    N, C, H, Wd = X.shape
    stride = k if stride is None else stride
    k, stride = int(k), int(stride)
    if k < 1 or stride < 1:
        raise ValueError(f"avgpool_forward: needs k >= 1 and stride >= 1, got k={k}, stride={stride}")
    Ho, Wo = (H - k) // stride + 1, (Wd - k) // stride + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"avgpool_forward: images {X.shape[2:]} are too small for k={k}, stride={stride}")
    Y = np.empty((N, C, Ho, Wo), X.dtype)
    avgpool_forward_kernel(X.reshape(N, -1), C, H, Wd, k, stride, Y.reshape(N, -1))
    return Y


@jit
def avgpool_backward_kernel(dpool0, C, H, Wd, k, stride, dX):
    _avgpool_backward(dpool0, C, H, Wd, k, stride, dX)  # dL/dX: dL/dpool0[n,c,i,j] / k^2 to each element of the window


def avgpool_backward(dY, X, k, stride=None):
    """dX = Sum(A[-i*s + u, -j*s + v]*dY[a, e, i, j], (i, 0, H_out - 1), (j, 0, W_out - 1)); window arrays (the kernel W, the average window A, the max selector S) read as 0 outside 0 <= p, q < k: the sifted sum keeps only windows that contain (u, v). Never writes its inputs."""
    dY, X = _arrays("avgpool_backward", dY=dY, X=X)
    if X.ndim != 4 or X.shape[0] == 0:
        raise ValueError(f"avgpool_backward: expected a batch of NCHW images (N, C, H, W), got shape {X.shape}")
    N, C, H, Wd = X.shape
    stride = k if stride is None else stride
    k, stride = int(k), int(stride)
    if k < 1 or stride < 1:
        raise ValueError(f"avgpool_backward: needs k >= 1 and stride >= 1, got k={k}, stride={stride}")
    Ho, Wo = (H - k) // stride + 1, (Wd - k) // stride + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"avgpool_backward: images {X.shape[2:]} are too small for k={k}, stride={stride}")
    _shape("avgpool_backward", "dY", dY, (N, C, Ho, Wo))
    dX = np.empty((N, C, H, Wd), X.dtype)
    avgpool_backward_kernel(dY.reshape(N, -1), C, H, Wd, k, stride, dX.reshape(N, -1))
    return dX


@jit
def flatten_forward_kernel(X, f0):
    for i_copy in range(f0.shape[0]):
        for j_copy in range(f0.shape[1]):
            f0[i_copy, j_copy] = X[i_copy, j_copy]


def flatten_forward(X):
    """Y = X[n, c, h, w] (images (C, H, W) read as C*H*W features, in NCHW order); X is (N, C, H, Wd); returns Y as (N, C*H*Wd)."""
    X, = _arrays("flatten_forward", X=X)
    if X.ndim != 4 or X.shape[0] == 0:
        raise ValueError(f"flatten_forward: expected a batch of NCHW images (N, C, H, W), got shape {X.shape}")
    N, C, H, Wd = X.shape
    Y = np.empty((N, C*H*Wd), X.dtype)
    flatten_forward_kernel(X.reshape(N, -1), Y)
    return Y


@jit
def flatten_backward_kernel(df0, dX):
    for i_copy in range(dX.shape[0]):
        for j_copy in range(dX.shape[1]):
            dX[i_copy, j_copy] = df0[i_copy, j_copy]


def flatten_backward(dY, X):
    """dX = dY[a, W*(H*e + u) + v]. Never writes its inputs."""
    dY, X = _arrays("flatten_backward", dY=dY, X=X)
    if X.ndim != 4 or X.shape[0] == 0:
        raise ValueError(f"flatten_backward: expected a batch of NCHW images (N, C, H, W), got shape {X.shape}")
    N, C, H, Wd = X.shape
    _shape("flatten_backward", "dY", dY, (N, C*H*Wd))
    dX = np.empty((N, C, H, Wd), X.dtype)
    flatten_backward_kernel(dY, dX.reshape(N, -1))
    return dX
