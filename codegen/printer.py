"""Print SymPy expressions as numba-friendly Python.

One printer class with ``_print_<Node>`` methods, as in SymPy's own ``printing/``. What it adds
to SymPy's NumPy printer:

- literals in the arrays' dtype (``real(0.5)``, where the kernel sets ``real = X.dtype.type``),
  so float32 kernels stay float32 (a bare ``1.0 - y`` silently promotes to float64);
- small integer powers as products (``y*y``), which stay in the dtype and are exact;
- the stable functions (``Sigmoid``, ``Softplus``, ``tanh(Softplus(u))``) as calls to helpers
  emitted in each module, and ``exp`` as ``_exp``, arithmetic that LLVM can vectorise (with
  ``scalar=True``, for straight-line code, the same helpers with libm's exp instead);
- ``Heaviside(u, 0)`` as ``real(u > 0)`` and ``Heaviside(u, 1)`` as ``real(u >= 0)``: the
  stated tie convention of max and min (``symbolic/kinks.py``), branch free;
- ``Piecewise`` (a mask times a factor that can overflow, ``stable.masks_as_selects``) as a
  conditional expression ``(f if u >= 0 else real(0))``, so inf * 0 never makes a NaN;
- symbols and indexed values renamed through a table (``x`` -> ``x[i]``);
- matrix products of the affine rules as calls of ``_gemm`` (BLAS's gemm).
"""
from __future__ import annotations

import math

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from symprop.symbolic.stable import Softplus

# SymPy function -> how the kernels call it (known functions as one table).
KNOWN_FUNCTIONS = {
    "exp": "_exp",
    "log": "np.log",
    "sqrt": "np.sqrt",
    "tanh": "_tanh",
    "sinh": "np.sinh",
    "cosh": "np.cosh",
    "sin": "np.sin",
    "cos": "np.cos",
    "tan": "np.tan",
    "atan": "np.arctan",
    "Abs": "abs",
    "sign": "np.sign",
    "erf": "math.erf",
    "log1p": "np.log1p",
    "expm1": "np.expm1",
    "Sigmoid": "_sigmoid",
    "Softplus": "_softplus",
}

def _estrin(coefficients, variable="r", result="p") -> list[str]:
    """The polynomial sum c[i] r**i as statements in Estrin's scheme: neighbours paired as
    c[2i] + c[2i+1] r, then pairs of pairs with r**2, r**4, ... Its dependency chain is
    log2(degree) steps long instead of Horner's degree steps, which is what a scalar call (a
    tiny network's step) waits for; vector loops lose nothing."""
    terms = [f"real({c!r})" for c in coefficients]
    power, lines, level = variable, [], 0
    while len(terms) > 1:
        paired = []
        for i in range(0, len(terms), 2):
            if i + 1 < len(terms):
                name = f"{result}{level}_{i // 2}"
                lines.append(f"{name} = {terms[i]} + {terms[i + 1]} * {power}")
                paired.append(name)
            else:
                paired.append(terms[i])
        terms, level = paired, level + 1
        if len(terms) > 1:
            lines.append(f"{variable}{2 ** level} = {power} * {power}")
            power = f"{variable}{2 ** level}"
    lines.append(f"{result} = {terms[0]}")
    return lines


def _reduction(bits: int, degree: int, ln2_hi: float) -> list[str]:
    """exp(w) = 2**k (1 + r + r^2 q), |r| <= ln(2)/2, as statements: k, r (in two parts, ln 2 =
    ln2_hi + ln2_lo, where k * ln2_hi is exact), q by Estrin's scheme, and n = int(k) split in
    halves (2**k = 2**half 2**(n - half), so subnormal results and overflow to inf come out as
    libm's do)."""
    integer = "np.int64" if bits == 64 else "np.int32"
    ln2_lo = float(sp.log(2).evalf(40) - sp.Float(ln2_hi, 40))  # the rest of ln 2, beyond double's own
    coefficients = [1 / math.factorial(k) for k in range(degree + 1)]
    return [f"k = np.floor(w * real({1 / math.log(2)!r}) + real(0.5))",
            f"r = (w - k * real({ln2_hi!r})) - k * real({ln2_lo!r})",
            *_estrin(coefficients[2:], result="q"),
            f"n = {integer}(k)",
            "half = n >> 1"]


def _powers_of_two(bits: int) -> tuple[str, str]:
    """2**half and 2**(n - half) from exponent bits."""
    integer, mantissa, bias = ("np.int64", 52, 1023) if bits == 64 else ("np.int32", 23, 127)
    return (f"{integer}((half + {bias}) << {mantissa}).view(np.float{bits})",
            f"{integer}((n - half + {bias}) << {mantissa}).view(np.float{bits})")


def _exp_helper(bits: int, degree: int, clamp: tuple[float, float], ln2_hi: float) -> str:
    """exp for one float width as plain arithmetic, which LLVM vectorises (libm's exp is a
    scalar call in every loop iteration).

    exp(v) = 2**k * exp(r) with k = round(v / ln 2) and |r| <= ln(2)/2. r is computed in two
    parts (ln 2 = ln2_hi + ln2_lo, where k * ln2_hi is exact) and exp(r) by its Taylor
    polynomial (evaluated by Estrin's scheme), whose truncation error (ln(2)/2)**(degree+1)/(degree+1)! is far below half an
    ulp. 2**k is built from exponent bits in two halves, so subnormal results and overflow to
    inf come out as libm's do.
    """
    low, high = clamp
    scale_1, scale_2 = _powers_of_two(bits)
    body = [
        f"real = np.float{bits}",
        f"w = v if v > real({low!r}) else real({low!r})  # NaN lands here too; see the last line",
        f"w = w if w < real({high!r}) else real({high!r})",
        *_reduction(bits, degree, ln2_hi),
        # 1 + r + r**2 (1/2 + r/6 + ...): the two leading terms added last keep the error near 0.5 ulp
        "p = real(1) + (r + (r * r) * q)",
        f"scale_1 = {scale_1}",
        f"scale_2 = {scale_2}",
        "e = p * scale_1 * scale_2",
        "return e if v == v else v",
    ]
    lines = "\n".join("    " + line for line in body)
    return (f'\n\n@jit_inline\ndef _exp{bits}(v):\n    """exp(v) in float{bits}, within 1 ulp of the correctly rounded value."""\n'
            f"{lines}\n")


def _tanh_helper(bits: int, degree: int, low: float, ln2_hi: float) -> str:
    """tanh for one float width as plain arithmetic that LLVM vectorises (np.tanh is a scalar
    libm call per element, 12.7 ns against _sigmoid's 0.5 ns): with m = expm1(-2|v|),
    tanh|v| = -m / (2 + m), the sign restored. m is _exp's reduction 2**k (1 + r + r^2 q) with
    the 1 taken out, (2**k - 1) + 2**k (r + r^2 q): no cancellation near 0 (k = 0 there, m is
    the polynomial alone), so the result stays within a few ulp for tiny |v| as for large;
    for large |v|, 2**k underflows to 0, m = -1 and tanh is 1 (no overflow)."""
    scale_1, scale_2 = _powers_of_two(bits)
    body = [
        f"real = np.float{bits}",
        "w = real(-2) * abs(v)",
        f"w = w if w > real({low!r}) else real({low!r})  # NaN lands here too; see the last line",
        *_reduction(bits, degree, ln2_hi),
        f"scale = {scale_1} * {scale_2}",
        "m = (scale - real(1)) + scale * (r + (r * r) * q)  # expm1(w)",
        "t = math.copysign(-m / (real(2) + m), v)",
        "return t if v == v else v",
    ]
    lines = "\n".join("    " + line for line in body)
    return (f'\n\n@jit_inline\ndef _tanh{bits}(v):\n    """tanh(v) in float{bits}, from expm1(-2|v|)."""\n'
            f"{lines}\n")


def _dtype_dispatch(name: str, what: str) -> str:
    """``name``(v): numpy's function outside kernels; in kernels, numba picks the float64 or the
    float32 helper (``name``64, ``name``32) by v's type."""
    return f'''
def {name}(v):
    """{name[1:]}(v). In kernels: {what} that LLVM vectorises, chosen by dtype."""
    return np.{name[1:]}(v)


@numba.extending.overload({name}, jit_options={{**_JIT_FLAGS, "no_cfunc_wrapper": True}})
def {name}_for_dtype(v):
    if isinstance(v, numba.types.Float) and v.bitwidth == 64:
        return lambda v: {name}64(v)
    if isinstance(v, numba.types.Float) and v.bitwidth == 32:
        return lambda v: {name}32(v)
'''


# Helper functions a module needs when an expression uses them (stable forward forms).
HELPERS = {
    "_exp": _dtype_dispatch("_exp", "polynomial arithmetic") + _exp_helper(64, 13, (-746.0, 710.0), 0.6931471803691238)
    + _exp_helper(32, 7, (-104.0, 89.0), 0.693145751953125),
    "_tanh": _dtype_dispatch("_tanh", "arithmetic") + _tanh_helper(64, 13, -746.0, 0.6931471803691238)
    + _tanh_helper(32, 7, -104.0, 0.693145751953125),
    "_sigmoid": '''
@jit_inline
def _sigmoid(v):
    """1/(1 + exp(-v)) without overflow: exp is only taken of -|v|."""
    real = type(v)
    e = _exp(-abs(v))
    s = real(1) / (real(1) + e)
    return s if v >= 0 else e * s
''',
    "_softplus": '''
@jit_inline
def _softplus(v):
    """log(1 + exp(v)) without overflow: max(v, 0) + log1p(exp(-|v|))."""
    real = type(v)
    return max(v, real(0)) + np.log1p(_exp(-abs(v)))
''',
    "_tanh_softplus": '''
@jit_inline
def _tanh_softplus(v):
    """tanh(log(1 + exp(v))), Mish's gate, from one exp: with e = exp(-|v|) it is
    (1 + 2e)/(1 + 2e + 2e^2) for v >= 0 and (e^2 + 2e)/(e^2 + 2e + 2) below; neither
    overflows or cancels."""
    real = type(v)
    e = _exp(-abs(v))
    numerator = real(1) + real(2) * e if v >= 0 else e * e + real(2) * e
    return numerator / (numerator + (real(2) * e * e if v >= 0 else real(2)))
''',
}

# Helpers that call other helpers (helper_source emits these too).
HELPER_NEEDS = {"_sigmoid": {"_exp"}, "_softplus": {"_exp"}, "_tanh_softplus": {"_exp"}}

# Straight-line scalar code (a tiny network's step) never vectorises and waits on each exp's
# latency, where libm's beats the polynomial (2-2-2: 0.10 -> 0.075 us per step). Its printer
# calls these variants, made from the helpers above with libm's exp. They are plain jit
# functions, not inlined by numba: with no loop to keep vectorisable, numba's IR inlining only
# costs compile time at each of the step's calls (a 2-8-8-8-1 softplus/Mish step: 4.8 -> 3.0 s),
# and LLVM inlines them anyway (the same time per step).
SCALAR_VARIANTS = {"_exp": "np.exp", "_tanh": "np.tanh"}
for _name in HELPER_NEEDS.keys() - SCALAR_VARIANTS.keys():
    SCALAR_VARIANTS[_name] = f"{_name}_libm"
    HELPERS[f"{_name}_libm"] = HELPERS[_name].replace(f"def {_name}(", f"def {_name}_libm(").replace(
        "_exp(", "np.exp(").replace("@jit_inline\n", "@jit\n")

MAX_INLINE_POWER = 4


def element_text(value) -> str:
    """A target or a value a kernel reads, as written: loss, z1[n, 0]."""
    if isinstance(value, sp.Indexed):
        return f"{value.base.label.name}[{', '.join(str(i) for i in value.indices)}]"
    return str(value)


class KernelPrinter(NumPyPrinter):
    """Prints one scalar expression of a kernel's loop body (or a matrix rule)."""

    def __init__(self, names: dict | None = None, row=None, small_matrices: bool = False,
                 scalar: bool = False, order: str | None = None):
        settings = {"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": False}
        super().__init__(settings if order is None else {**settings, "order": order})
        # symbol name -> the value the kernel reads for it: an element (x -> z1[n, j]), an
        # array (z -> z2) or a number (lambda -> 0.01)
        self.names = {} if names is None else dict(names)
        self.row = row  # in row kernels, y[k] prints as y[n, k] with row n
        # tiny matrices (the 2-2-2 example): plain loops beat a BLAS call's fixed overhead
        self.small_matrices = small_matrices
        self.scalar = scalar  # straight-line code: SCALAR_VARIANTS of the helpers
        self.helpers_used: set[str] = set()

    # --- names --------------------------------------------------------------------------
    def _renamed(self, name: str) -> str | None:
        value = self.names.get(name)
        if value is None:
            return None
        if isinstance(value, (sp.Symbol, sp.Indexed, sp.IndexedBase)):
            return element_text(value)
        return self._print(value)

    def _print_Symbol(self, expr):
        renamed = self._renamed(expr.name)
        if renamed is not None:
            return renamed
        # sizes (N, K) are integers in the kernel: cast so arithmetic stays in the dtype
        return f"real({expr.name})" if expr.is_integer else expr.name

    def _print_Indexed(self, expr):
        base = self._renamed(expr.base.label.name) or expr.base.label.name
        indices = [str(int(i)) if i.is_Integer else (self._renamed(i.name) or i.name) if i.is_Symbol
                   else str(i) for i in expr.indices]  # index arithmetic (t - 1, 3*t + d) in whole numbers
        if self.row is not None:
            indices.insert(0, str(self.row))
        return f"{base}[{', '.join(indices)}]"

    def _print_MatrixSymbol(self, expr):
        return self._renamed(expr.name) or expr.name

    # --- numbers ------------------------------------------------------------------------
    def _print_Integer(self, expr):
        return f"real({int(expr)})"

    def _print_Rational(self, expr):
        return f"real({float(expr)!r})"

    def _print_Float(self, expr):
        return f"real({float(expr)!r})"

    def _print_NegativeOne(self, expr):
        return "real(-1)"

    def _print_One(self, expr):
        return "real(1)"

    def _print_Zero(self, expr):
        return "real(0)"

    def _print_Half(self, expr):
        return "real(0.5)"

    def _print_Exp1(self, expr):
        return f"real({float(sp.E)!r})"

    def _print_Pi(self, expr):
        return f"real({float(sp.pi)!r})"

    # --- arithmetic ---------------------------------------------------------------------
    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.as_base_exp()
        if exponent.is_Integer and 1 <= abs(int(exponent)) <= MAX_INLINE_POWER:
            factor = self.parenthesize(base, sp.printing.precedence.PRECEDENCE["Mul"])
            product = "*".join([factor] * abs(int(exponent)))
            if abs(int(exponent)) > 1:
                product = f"({product})"  # x**2 inside a/x**2 must stay one factor: a/(x*x)
            return product if exponent > 0 else f"real(1)/{product}"
        if exponent == sp.S.Half:
            return f"np.sqrt({self._print(base)})"
        return f"{self.parenthesize(base, 60)}**{self.parenthesize(exponent, 60)}"

    # --- functions ----------------------------------------------------------------------
    def _print_Function(self, expr):
        name = type(expr).__name__
        if name not in KNOWN_FUNCTIONS:
            raise ValueError(f"the kernel printer has no rule for {name}(); add one to KNOWN_FUNCTIONS")
        return self._call(KNOWN_FUNCTIONS[name], expr.args)

    def _print_tanh(self, expr):
        if isinstance(expr.args[0], Softplus):  # Mish's gate: one exp instead of exp, log1p, tanh
            return self._call("_tanh_softplus", expr.args[0].args)
        return self._print_Function(expr)

    def _call(self, target, args):
        if self.scalar:
            target = SCALAR_VARIANTS.get(target, target)
        if target in HELPERS:
            self.helpers_used.add(target)
        return f"{target}({', '.join(self._print(a) for a in args)})"

    _print_exp = _print_log = _print_sinh = _print_cosh = _print_Function
    _print_sin = _print_cos = _print_tan = _print_atan = _print_Abs = _print_erf = _print_Function
    _print_Sigmoid = _print_Softplus = _print_sign = _print_log1p = _print_expm1 = _print_Function

    def _print_Heaviside(self, expr):
        if expr.args[1:] not in ((0,), (1,)):
            raise ValueError("Heaviside must carry a stated convention, H(0) = 0 or H(0) = 1")
        return f"real({self._print(expr.args[0])} {'>' if expr.args[1] == 0 else '>='} real(0))"

    def _print_Piecewise(self, expr):
        """(a if c1 else (b if c2 else d)): only the chosen branch's value reaches the result."""
        *branches, (last, last_condition) = expr.args
        if last_condition != sp.true:
            raise ValueError("a Piecewise in a kernel needs a final (value, True) branch")
        text = self._print(last)
        for value, condition in reversed(branches):
            text = f"({self._print(value)} if {self._print(condition)} else {text})"
        return text

    def _print_Relational(self, expr):
        if expr.rel_op not in (">", ">=", "<", "<="):
            raise ValueError(f"cannot print the condition {expr}")
        return f"{self.parenthesize(expr.lhs, 40)} {expr.rel_op} {self.parenthesize(expr.rhs, 40)}"

    def _print_And(self, expr):
        return " and ".join(f"({self._print(a)})" for a in expr.args)

    def _print_Max(self, expr):
        return self._fold("max", expr.args)

    def _print_Min(self, expr):
        return self._fold("min", expr.args)

    def _fold(self, name, args):
        text = self._print(args[0])
        for arg in args[1:]:
            text = f"{name}({text}, {self._print(arg)})"
        return text

    # --- matrices (the affine rules) -----------------------------------------------------
    def _print_Transpose(self, expr):
        return f"{self._print(expr.arg)}.T"

    def _print_MatMul(self, expr):
        return self.print_into(expr, None)

    def print_into(self, expr, out: str | None) -> str:
        """A matrix rule as one call writing into the preallocated array ``out``
        (or allocating when out is None): _gemm for products, helpers for 1^T dY."""
        factors = [a for a in expr.args if not isinstance(a, sp.OneMatrix)]
        ones = [a for a in expr.args if isinstance(a, sp.OneMatrix)]
        target = "" if out is None else f", {out}"
        if ones and len(factors) == 1:
            # 1^T dY sums the rows (column sums); 1^T dY 1 sums everything (a shared bias)
            helper = "_column_sums" if len(ones) == 1 else "_total"
            self.helpers_used.add(helper)
            summed = self._print(factors[0])
            if helper == "_column_sums" and out is None:
                target = f", np.empty({summed}.shape[1], {summed}.dtype)"
            return f"{helper}({summed}{target})"
        if len(factors) != 2 or ones:
            raise ValueError(f"cannot print matrix product {expr}")
        if out is not None and not self.small_matrices:  # the untransposed arrays and two flags
            self.helpers_used.add("_gemm")
            (a, a_transposed), (b, b_transposed) = (_untransposed(f) for f in factors)
            return f"_gemm({self._print(a)}, {self._print(b)}, {out}, {a_transposed}, {b_transposed}, False)"
        a, b = (self._print(f) for f in factors)
        if self.small_matrices:
            self.helpers_used.add("_dot_loops")
            if out is None:
                target = f", np.empty(({a}.shape[0], {b}.shape[1]), {a}.dtype)"
            return f"_dot_loops({a}, {b}{target})"
        return f"np.dot({a}, {b}{target})"


def _untransposed(matrix) -> tuple:
    """(A, True) for A^T, (A, False) for A: what _gemm is given for a product's operand."""
    return (matrix.arg, True) if isinstance(matrix, sp.Transpose) else (matrix, False)


def print_statements(assignments, names, comment_for=None, row=None, scalar=False, accumulate=()):
    """Common-subexpression-eliminated statements for ``[(target, expr), ...]``; targets in
    ``accumulate`` are added to (``target += expr``: a sum over the batch rows).

    Returns (lines, helpers_used). Temporaries are named t0, t1, ... in a canonical order,
    so the output is deterministic.
    """
    printer = KernelPrinter(names, row=row, scalar=scalar)
    targets = [t for t, _ in assignments]
    exprs = [e for _, e in assignments]
    temporaries, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("t"), order="canonical")
    lines = []
    for symbol, value in temporaries:
        lines.append(f"{symbol.name} = {printer.doprint(value)}")
    for target, expr in zip(targets, reduced):
        note = comment_for(target) if comment_for else None
        comment = f"  # {note}" if note else ""
        operator = "+=" if target in accumulate else "="
        lines.append(f"{element_text(target)} {operator} {printer.doprint(expr)}{comment}")
    return lines, printer.helpers_used
