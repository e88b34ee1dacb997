"""The kernel printer: printed code evaluates to the same number as the SymPy expression."""
import math

import numpy as np
import pytest
import sympy as sp

from symprop.codegen.printer import HELPERS, KernelPrinter
from symprop.symbolic.stable import Sigmoid, Softplus, as_raw

x, y = sp.symbols("x y", real=True)

EXPRESSIONS = [
    y / sp.cos(x) ** 2,
    y / (1 + x) ** 3,
    (x + y) ** 2 / (x - 3) ** 4,
    x ** -1 + y ** -2,
    sp.sqrt(x * x + 1) / y,
    sp.Rational(1, 3) * x - sp.Rational(5, 2) * y,
    Sigmoid(-x) * Sigmoid(x) * y,
    Softplus(x) - x * y,
    sp.Heaviside(x, 0) * y,
    sp.Max(0, x) - sp.Min(y, x),
    sp.sign(x) * sp.Abs(y),
    sp.exp(-x ** 2 / 2) / sp.sqrt(2 * sp.pi),
    x ** 7,
    x * sp.tanh(Softplus(x)),  # Mish, printed with the one-exp helper _tanh_softplus
    x * (1 - sp.tanh(Softplus(x)) ** 2) * Sigmoid(x) + sp.tanh(Softplus(x)),  # its derivative
    sp.tanh(Softplus(-30 * x)) * y,
]


def _namespace(dtype):
    namespace = {"np": np, "math": math, "real": dtype}
    for name, source in HELPERS.items():
        plain = "\n".join(line for line in source.splitlines() if not line.startswith("@"))
        exec(plain, namespace)  # the helpers as plain Python
    return namespace


@pytest.mark.parametrize("scalar", [False, True], ids=["loops", "straight-line"])
@pytest.mark.parametrize("expr", EXPRESSIONS, ids=str)
def test_printed_code_evaluates_like_sympy(expr, scalar):
    code = KernelPrinter(scalar=scalar).doprint(expr)
    namespace = _namespace(np.float64)
    for xv, yv in ((0.7, -1.3), (-2.1, 0.4), (1.9, 2.5)):
        # 40-digit Floats: substituting Python floats would evaluate 1 + exp(-21) to 15 digits
        expected = float(as_raw(expr).subs({x: sp.Float(xv, 40), y: sp.Float(yv, 40)}).evalf(30))
        got = eval(code, dict(namespace, x=np.float64(xv), y=np.float64(yv)))
        assert got == pytest.approx(expected, rel=1e-13, abs=1e-300), code


def test_literals_keep_float32():
    code = KernelPrinter().doprint(sp.Rational(1, 2) * x + 1 - y / 3)
    value = eval(code, dict(_namespace(np.float32), x=np.float32(0.5), y=np.float32(1.5)))
    assert isinstance(value, np.float32)


def test_tanh_of_softplus_prints_as_the_one_exp_helper():
    printer = KernelPrinter()
    assert printer.doprint(sp.tanh(Softplus(x))) == "_tanh_softplus(x)"
    assert printer.helpers_used == {"_tanh_softplus"}
    assert KernelPrinter().doprint(sp.tanh(x)) == "_tanh(x)"  # the vectorisable helper in loops
    assert KernelPrinter(scalar=True).doprint(sp.tanh(x)) == "np.tanh(x)"  # libm's in straight-line code


def test_straight_line_code_calls_the_libm_variants_of_the_helpers():
    printer = KernelPrinter(scalar=True)
    assert printer.doprint(Sigmoid(x) + sp.exp(y)) == "np.exp(y) + _sigmoid_libm(x)"
    assert printer.helpers_used == {"_sigmoid_libm"}
    assert "_exp(" not in HELPERS["_sigmoid_libm"] and "np.exp(" in HELPERS["_sigmoid_libm"]
