"""Text shared by every generated module: imports, the jit decorator, input checks, helpers.

Generated modules import only numpy, numba and the standard library, so a user can copy one
into another project.
"""
from __future__ import annotations

import hashlib

from .files import JIT_FLAGS
from .image_helpers import IMAGE_HELPER_NEEDS, IMAGE_HELPERS
from .printer import HELPER_NEEDS, HELPERS
from .sequence_helpers import SEQUENCE_HELPERS

NUMBA_START = f'''
import hashlib
import itertools
import math
import warnings

import numba
import numpy as np

_JIT_FLAGS = {JIT_FLAGS}


def jit(function, **overrides):
    """numba.njit with an on-disk cache, so a second process loads instead of compiling.

    Where no cache location is writable, compile without one; where a cache file is corrupt,
    clear that function's cache and compile afresh (numba itself would raise); where the cache
    cannot be written (a full disk, a read-only folder), keep the compiled kernel and warn once
    (numba itself would raise from inside the first call). ``overrides`` replace entries of
    _JIT_FLAGS for one kernel. Only the public kernels get numba's CPython wrapper; see
    _wrappers_for.
    """
    flags = {{**_JIT_FLAGS, **_wrappers_for(function), **overrides}}
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
        raise TypeError(f"{{self.py_func.__name__}} is a private kernel: it is called only from other kernels")


def _guard_private(dispatcher):
    if dispatcher.targetoptions.get("no_cpython_wrapper"):
        dispatcher.__class__ = _KernelOnly
    return dispatcher


_CACHE_WARNED = []


def _cache_not_written(exc):
    """A full disk or a read-only cache folder costs only the cache: say so once per process."""
    if not _CACHE_WARNED:
        _CACHE_WARNED.append(exc)
        warnings.warn(f"numba could not write its kernel cache ({{exc.strerror or exc}}); the kernels "
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


'''

# The input checks, the edit warning and the argument readers every module starts with after
# its backend's imports and jit: plain Python, shared by every Python-syntax backend.
CHECKS = '''def _warn_if_edited():
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
'''

PRELUDE = NUMBA_START + CHECKS


def _gemm_helper(python: str, compiled: str) -> str:
    """_gemm's text: its Python definition, then what numba compiles in its place, registered once
    per process. numba compiles an overload once for each function object it is registered on;
    with a _gemm of every module's own, each network loaded after the first compiled it again
    (0.15-0.3 s a module, measured: the test suite, ``symprop demo``), where numba's own np.dot
    is compiled once. Modules written by the same generator (the same text, so the same key)
    share the first one's."""
    key = "symprop_gemm_" + hashlib.sha256((python + compiled).encode()).hexdigest()[:16]
    return python + "\n\n" + compiled + f'''

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
        numba.extending.overload(function, jit_options={{**_JIT_FLAGS, "no_cfunc_wrapper": True}})(compiled)
        shared = sys.modules[key] = types.ModuleType(key, "symprop's _gemm, shared by generated modules")
        shared.function, shared.blas = function, blas
    return shared


_shared_gemm = _once_per_process("{key}", _gemm, _gemm_for_dtype)
_gemm = _shared_gemm.function
GEMM_BLAS = _shared_gemm.blas  # "mkl" or "openblas": the library the kernels' products call
'''


# Matrix helpers the affine rules print. Each writes into ``out`` when given (no allocation
# inside a training step) and allocates otherwise. _column_sums is 1^T dY, _total is 1^T dY 1.
# They are compiled once each (plain jit), not inlined at every call site: inlining made a
# network's first step compile ~2 s longer (8-8-8-8-8: 7.0 -> 5.0 s of CPU) and gained
# nothing measurable (batch 1: 3.05 -> 3.23 us a step; batch 64: 43.0 -> 35.5 us).
MATRIX_HELPERS = {
    "_column_sums": '''
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
''',
    "_total": '''
@jit
def _total(a, out=None):
    """1^T a 1: the sum of every element, as a 1-element array (a shared bias)."""
    total = np.empty(1, a.dtype) if out is None else out
    total[0] = 0
    for n in range(a.shape[0]):
        for j in range(a.shape[1]):
            total[0] += a[n, j]
    return total
''',
    "_dot_loops": '''
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
''',
    "_gemm": _gemm_helper('''def _gemm(a, b, out, transpose_a, transpose_b, accumulate):
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

''', '''
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
'''),
    "_add_bias": '''
@jit
def _add_bias(y, b):
    """y += 1 b: the bias row added to every row (b of size 1 is a shared bias)."""
    shared = b.shape[0] == 1
    for n in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[n, j] += b[0] if shared else b[j]
''',
}

ALL_HELPERS = {**HELPERS, **MATRIX_HELPERS, **IMAGE_HELPERS, **SEQUENCE_HELPERS}
ALL_NEEDS = {**HELPER_NEEDS, **IMAGE_HELPER_NEEDS}  # helper -> the helpers it calls


def helper_source(names) -> str:
    """The helper functions a module uses, in a fixed order."""
    names = set(names)
    for name in list(names):
        names |= ALL_NEEDS.get(name, set())
    return "".join("\n" + ALL_HELPERS[name] for name in sorted(names))


def indent(lines, depth: int) -> list[str]:
    return [("    " * depth + line) if line else "" for line in lines]


def _workspace(buffers) -> str:
    """make_workspace (plain Python) and its compiled twin for the kernels that allocate their own."""
    allocations = ", ".join(f"np.empty({repr(tuple(shape))}, X.dtype)" for _, shape in buffers)
    return f'''
def make_workspace(X):
    """Every intermediate array of a step for a batch like X, allocated once (plain Python:
    nothing to compile for a caller that keeps its workspace, as symprop train does)."""
    N = X.shape[0]
    return ({allocations},)


_make_workspace = jit(make_workspace)  # the same, for the kernels that allocate their own
'''


# Module-level definitions a network module's kernels call, written where the module needs
# them: the in-place SGD update, the decorator of a kernel shorter than releasing the GIL, the
# workspace.
DEFINITIONS = {
    "sgd_update": '''
@jit
def _sgd_update(param, grad, step):
    """param -= step * grad, in place (the gradient is complete before any weight changes).
    Called with vectors (a matrix as a flat view), so one compiled signature serves
    parameters of every rank."""
    for i in range(param.shape[0]):
        param[i] -= step * grad[i]
''',
    "holding_gil": '''
def jit_holding_gil(function):
    """jit without nogil, for a kernel shorter than releasing the GIL: letting it go and
    taking it back costs ~0.06 us a call, about a whole 2-2-2 step (measured, 0.68 -> 0.61 us)."""
    return jit(function, nogil=False)
''',
    "workspace": _workspace,
}
