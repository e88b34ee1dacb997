"""Print SymPy expressions as numba-friendly Python.

One printer class with ``_print_<Node>`` methods, as in SymPy's own ``printing/``. What it adds
to SymPy's NumPy printer:

- literals in the arrays' dtype (``real(0.5)``, where the kernel sets ``real = X.dtype.type``),
  so float32 kernels stay float32 (a bare ``1.0 - y`` silently promotes to float64);
- small integer powers as products (``y*y``), which stay in the dtype and are exact;
- the stable functions (``Sigmoid``, ``Softplus``) as calls to helpers emitted in each module;
- ``Heaviside(u, 0)`` as ``real(u > 0)``: the stated relu'(0) = 0 convention, branch free;
- symbols and indexed values renamed through a table (``x`` -> ``x[i]``);
- matrix products of the affine rules as ``np.dot`` calls.
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

# SymPy function -> how the kernels call it (known functions as one table).
KNOWN_FUNCTIONS = {
    "exp": "np.exp",
    "log": "np.log",
    "sqrt": "np.sqrt",
    "tanh": "np.tanh",
    "sinh": "np.sinh",
    "cosh": "np.cosh",
    "sin": "np.sin",
    "cos": "np.cos",
    "tan": "np.tan",
    "atan": "np.arctan",
    "Abs": "abs",
    "sign": "np.sign",
    "erf": "math.erf",
    "Sigmoid": "_sigmoid",
    "Softplus": "_softplus",
}

# Helper functions a module needs when an expression uses them (stable forward forms).
HELPERS = {
    "_sigmoid": '''
@jit_inline
def _sigmoid(v):
    """1/(1 + exp(-v)) without overflow: exp is only taken of -|v|."""
    real = type(v)
    e = np.exp(-abs(v))
    s = real(1) / (real(1) + e)
    return s if v >= 0 else e * s
''',
    "_softplus": '''
@jit_inline
def _softplus(v):
    """log(1 + exp(v)) without overflow: max(v, 0) + log1p(exp(-|v|))."""
    real = type(v)
    return max(v, real(0)) + np.log1p(np.exp(-abs(v)))
''',
}

MAX_INLINE_POWER = 4


class KernelPrinter(NumPyPrinter):
    """Prints one scalar expression of a kernel's loop body (or a matrix rule)."""

    def __init__(self, names: dict | None = None, row: str | None = None, small_matrices: bool = False):
        super().__init__({"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": False})
        self.names = {} if names is None else dict(names)
        self.row = row  # in row kernels, y[k] prints as y[n, k] with row = "n"
        # tiny matrices (the 2-2-2 example): plain loops beat a BLAS call's fixed overhead
        self.small_matrices = small_matrices
        self.helpers_used: set[str] = set()

    # --- names --------------------------------------------------------------------------
    def _print_Symbol(self, expr):
        name = self.names.get(expr.name, expr.name)
        # sizes (N, K) are integers in the kernel: cast so arithmetic stays in the dtype
        return f"real({name})" if expr.is_integer and expr.name not in self.names else name

    def _print_Indexed(self, expr):
        base = self.names.get(expr.base.label.name, expr.base.label.name)
        indices = [self.names.get(i.name, i.name) for i in expr.indices]
        if self.row is not None:
            indices.insert(0, self.row)
        return f"{base}[{', '.join(indices)}]"

    def _print_MatrixSymbol(self, expr):
        return self.names.get(expr.name, expr.name)

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
        target = KNOWN_FUNCTIONS[name]
        if target in HELPERS:
            self.helpers_used.add(target)
        return f"{target}({', '.join(self._print(a) for a in expr.args)})"

    _print_exp = _print_log = _print_tanh = _print_sinh = _print_cosh = _print_Function
    _print_sin = _print_cos = _print_tan = _print_atan = _print_Abs = _print_erf = _print_Function
    _print_Sigmoid = _print_Softplus = _print_sign = _print_Function

    def _print_Heaviside(self, expr):
        if expr.args[1:] != (0,):
            raise ValueError("Heaviside must carry the stated convention H(0) = 0")
        return f"real({self._print(expr.args[0])} > real(0))"

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
        (or allocating when out is None): np.dot for products, helpers for 1^T dY."""
        factors = [a for a in expr.args if not isinstance(a, sp.OneMatrix)]
        ones = [a for a in expr.args if isinstance(a, sp.OneMatrix)]
        target = "" if out is None else f", {out}"
        if ones and len(factors) == 1:
            # 1^T dY sums the rows (column sums); 1^T dY 1 sums everything (a shared bias)
            helper = "_column_sums" if len(ones) == 1 else "_total"
            self.helpers_used.add(helper)
            return f"{helper}({self._print(factors[0])}{target})"
        if len(factors) != 2 or ones:
            raise ValueError(f"cannot print matrix product {expr}")
        a, b = (self._print(f) for f in factors)
        if self.small_matrices:
            self.helpers_used.add("_dot_loops")
            return f"_dot_loops({a}, {b}{target})"
        return f"np.dot({a}, {b}{target})"


def print_statements(assignments, names, comment_for=None, row=None):
    """Common-subexpression-eliminated statements for ``[(target, expr), ...]``.

    Returns (lines, helpers_used). Temporaries are named t0, t1, ... in a canonical order,
    so the output is deterministic.
    """
    printer = KernelPrinter(names, row=row)
    targets = [t for t, _ in assignments]
    exprs = [e for _, e in assignments]
    temporaries, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("t"), order="canonical")
    lines = []
    for symbol, value in temporaries:
        lines.append(f"{symbol.name} = {printer.doprint(value)}")
    for target, expr in zip(targets, reduced):
        comment = f"  # {comment_for(target)}" if comment_for else ""
        lines.append(f"{target} = {printer.doprint(expr)}{comment}")
    return lines, printer.helpers_used
