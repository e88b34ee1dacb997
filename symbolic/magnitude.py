"""Bounds on exact values before SymPy computes them.

Substituting numbers into a formula makes SymPy compute at once, exactly: ``x^x^x^x^x`` at
x = 3 is an integer with 10^12 digits, 40 chained squares of 3 one with 10^11, and
``exp(exp(exp(exp(3))))`` sends mpmath after 10^8 digits of e. Such work cannot be stopped
once it starts (one multiplication of huge integers runs in C and ignores timers), so it is
estimated first: ``check_bounded`` walks the formula with 53-bit numbers, whose exponents
never overflow, and refuses before SymPy starts when a value would lie beyond 10^MAX_DIGITS
(or below 10^-MAX_DIGITS) or an exact fraction would need more than MAX_EXACT_BITS bits.
"""
from __future__ import annotations

import mpmath
import sympy as sp

MAX_DIGITS = 10_000  # |value| between 10^-MAX_DIGITS and 10^MAX_DIGITS, or exactly 0
MAX_EXACT_BITS = 200_000  # numerator and denominator of an exact fraction together (60,000 digits)

_CONTEXT = mpmath.MPContext()
_CONTEXT.prec = 53
_LOG10_LIMIT = _CONTEXT.mpf(MAX_DIGITS)


class TooLarge(ValueError):
    """A value, or an exact fraction, beyond the limits; the message says which."""


def check_bounded(expr, values: dict | None = None) -> None:
    """Raise TooLarge if evaluating ``expr`` exactly, with its symbols replaced by ``values``
    (symbol -> SymPy number), would make a number beyond the limits. ``values`` are exact
    numbers already within them (they were checked when they were made)."""
    _Walker(values or {}).walk(sp.sympify(expr))


class _Walker:
    """(approximate value, (numerator bits, denominator bits) of the exact fraction, or None
    when it is not a fraction) per subterm; the bits are upper bounds."""

    def __init__(self, values):
        self.values = values
        self.seen = {}

    def walk(self, expr):
        if expr in self.seen:
            return self.seen[expr]
        result = self._walk(expr)
        approx = result[0]
        if _CONTEXT.isfinite(approx) and approx != 0 and abs(_CONTEXT.log10(abs(approx))) > _LOG10_LIMIT:
            raise TooLarge(f"a value of about 10^{_exponent10(approx)} (the limit is 10^{MAX_DIGITS})")
        if result[1] is not None and sum(result[1]) > MAX_EXACT_BITS:
            raise TooLarge(f"an exact fraction of about {sum(result[1]):,} bits (the limit is {MAX_EXACT_BITS:,})")
        self.seen[expr] = result
        return result

    def _walk(self, expr):
        ctx = _CONTEXT
        if isinstance(expr, sp.Symbol) and expr in self.values:
            return self.walk(sp.sympify(self.values[expr]))  # a number, or an exact expression such as sigmoid(4)
        if expr.is_Number or isinstance(expr, sp.NumberSymbol):
            return self.number(expr)
        if isinstance(expr, sp.Piecewise):
            pieces = [self.walk(e) for e, _ in expr.args]
            finite = [a for a, _ in pieces if _CONTEXT.isfinite(a)]
            return (max(finite, key=abs) if finite else _CONTEXT.nan), None
        parts = [self.walk(arg) for arg in expr.args if isinstance(arg, sp.Expr)]
        exact = all(bits is not None for _, bits in parts)
        if isinstance(expr, sp.Add):
            total = ctx.fsum(a for a, _ in parts)
            if not exact:
                return total, None
            # sum n_i/d_i = (sum n_i * prod_{j != i} d_j) / prod d_j
            denominator = sum(d for _, (_, d) in parts)
            numerator = max(n + denominator - d for _, (n, d) in parts) + len(parts).bit_length()
            return total, (numerator, denominator)
        if isinstance(expr, sp.Mul):
            bits = (sum(n for _, (n, _) in parts), sum(d for _, (_, d) in parts)) if exact else None
            return ctx.fprod(a for a, _ in parts), bits
        if isinstance(expr, sp.Pow):
            return self.power(*parts, expr.exp)
        if isinstance(expr, sp.exp):
            (a, _), = parts
            if ctx.isfinite(a) and a > _LOG10_LIMIT * ctx.ln10 + 1:
                raise TooLarge(f"exp of {ctx.nstr(a, 6)} (the limit is 10^{MAX_DIGITS})")
            return ctx.exp(a) if ctx.isfinite(a) else a, None
        if isinstance(expr, sp.log):
            (a, _), = parts
            return (ctx.log(abs(a)) if a != 0 and ctx.isfinite(a) else a), None
        if not parts:
            return ctx.nan, None  # a boolean or a name without a value: no bound to check
        return self.function(expr, parts), None

    def number(self, value):
        if value.is_Rational:
            bits = (value.p.bit_length(), value.q.bit_length())
            if sum(bits) > MAX_EXACT_BITS:
                raise TooLarge(f"an exact fraction of {sum(bits):,} bits (the limit is {MAX_EXACT_BITS:,})")
            return _CONTEXT.mpf(value.p) / value.q, bits
        if value.is_Float or isinstance(value, sp.NumberSymbol):
            return _CONTEXT.mpf(sp.Float(value, 17)), None
        return _CONTEXT.nan, None  # zoo, nan, I: SymPy's own checks refuse them

    def power(self, base, exponent, exact_exponent):
        ctx = _CONTEXT
        (b, b_bits), (e, _) = base, exponent
        if not (ctx.isfinite(b) and ctx.isfinite(e)):
            return ctx.nan, None
        if b == 0:
            return (ctx.zero if e > 0 else ctx.inf), ((1, 1) if b_bits is not None else None)
        log10_size = e * ctx.log10(abs(b))
        if abs(log10_size) > _LOG10_LIMIT:
            raise TooLarge(f"a power of about 10^{_exponent10_of_log(log10_size)} (the limit is 10^{MAX_DIGITS})")
        bits = None
        if b_bits is not None and exact_exponent.is_Rational:  # a root of a fraction to an integer power
            times = abs(int(exact_exponent.p))
            numerator, denominator = b_bits if exact_exponent > 0 else b_bits[::-1]
            bits = (numerator * times, denominator * times)
        return ctx.power(abs(b), e), bits

    def function(self, expr, parts):
        """Any other function (tanh, sigmoid, max, Heaviside, Piecewise ...) of bounded arguments:
        its value at those arguments, rounded (unknown: NaN, which bounds nothing further)."""
        ctx = _CONTEXT
        if isinstance(expr, (sp.Max, sp.Min)):
            finite = [a for a, _ in parts if ctx.isfinite(a)]
            return (max(finite, key=abs) if finite else ctx.nan)
        try:
            args = [sp.Float(str(a), 17) if ctx.isfinite(a) else sp.nan for a, _ in parts]
            if len(args) != len(expr.args):
                return ctx.nan
            value = expr.func(*args).evalf(17)
            return ctx.mpf(value) if value.is_real and value.is_finite else ctx.nan
        except (TypeError, ValueError, ArithmeticError, RecursionError):
            return ctx.nan


def _exponent10(value) -> str:
    return _exponent10_of_log(_CONTEXT.log10(abs(value)))


def _exponent10_of_log(log10_size) -> str:
    return f"{int(_CONTEXT.nint(log10_size)):,}"
