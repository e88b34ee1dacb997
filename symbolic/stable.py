"""Numerically stable building blocks and the rewrite rules that introduce them.

SymPy differentiates the plain formulas (``1/(1 + exp(-x))``, ``log(1 + exp(x))``); their
results overflow in floating point (``exp(1000)``). ``stabilize`` rewrites an expression into
``Sigmoid`` and ``Softplus``, which the kernel printer emits with overflow-free code. Each rule
is an identity, listed once in ``RULES``; ``equal_numerically`` and ``Sigmoid.rewrite(exp)``
let tests prove a rewritten form equal to the raw one.
"""
from __future__ import annotations

import mpmath
import sympy as sp

from .budget import OutOfTime, time_budget


class Sigmoid(sp.Function):
    """The logistic function 1/(1 + exp(-u)), printed without overflow."""

    nargs = 1

    def _eval_rewrite_as_exp(self, u, **kwargs):
        return 1 / (1 + sp.exp(-u))

    def _eval_evalf(self, prec):
        return self._eval_rewrite_as_exp(*self.args)._eval_evalf(prec)

    def _latex(self, printer):
        return rf"\sigma\left({printer._print(self.args[0])}\right)"


class Softplus(sp.Function):
    """log(1 + exp(u)), printed as max(u, 0) + log1p(exp(-|u|))."""

    nargs = 1

    def _eval_rewrite_as_exp(self, u, **kwargs):
        return sp.log(1 + sp.exp(u))

    def _eval_evalf(self, prec):
        return self._eval_rewrite_as_exp(*self.args)._eval_evalf(prec)

    def _latex(self, printer):
        return rf"\operatorname{{softplus}}\left({printer._print(self.args[0])}\right)"


def raw_sigmoid(u):
    """The sigmoid as SymPy differentiates it: 1/(1 + exp(-u))."""
    return 1 / (1 + sp.exp(-u))


def raw_softplus(u):
    """Softplus as SymPy differentiates it: log(1 + exp(u))."""
    return sp.log(1 + sp.exp(u))


def _exp_argument_of_one_plus_exp(expr):
    """u if expr is 1 + exp(u), else None."""
    if isinstance(expr, sp.Add) and len(expr.args) == 2 and sp.S.One in expr.args:
        other = expr.args[0] if expr.args[1] == 1 else expr.args[1]
        if isinstance(other, sp.exp):
            return other.args[0]
    return None


def _rule_reciprocal(expr):
    """(1 + exp(u))**-n  ->  Sigmoid(-u)**n"""
    if isinstance(expr, sp.Pow) and expr.exp.is_integer and expr.exp.is_negative:
        u = _exp_argument_of_one_plus_exp(expr.base)
        if u is not None:
            return Sigmoid(-u) ** (-expr.exp)
    return None


def _rule_log_one_plus_exp(expr):
    """log(1 + exp(u))  ->  Softplus(u)"""
    if isinstance(expr, sp.log):
        u = _exp_argument_of_one_plus_exp(expr.args[0])
        if u is not None:
            return Softplus(u)
    return None


def _rule_exp_times_sigmoid(expr):
    """exp(k*u) * Sigmoid(-u)**n  ->  Sigmoid(u)**k * Sigmoid(-u)**(n-k)   (integer 1 <= k <= n)"""
    if not isinstance(expr, sp.Mul):
        return None
    factors = list(expr.args)
    for i, factor in enumerate(factors):
        if not isinstance(factor, sp.exp):
            continue
        for j, other in enumerate(factors):
            base, power = other.as_base_exp()
            if not (isinstance(base, Sigmoid) and power.is_integer and power.is_positive):
                continue
            u = -base.args[0]
            k = sp.simplify(factor.args[0] / u)
            if k.is_integer and k.is_positive and k <= power:
                factors[i] = Sigmoid(u) ** k
                factors[j] = base ** (power - k)
                return sp.Mul(*factors)
    return None


def _rule_one_minus_sigmoid(expr):
    """1 - Sigmoid(u)  ->  Sigmoid(-u)"""
    if isinstance(expr, sp.Add) and sp.S.One in expr.args:
        for term in expr.args:
            if isinstance(-term, Sigmoid):
                rest = [a for a in expr.args if a is not term and a != 1]
                return sp.Add(Sigmoid(-(-term).args[0]), *rest)
    return None


def _rule_log_sigmoid(expr):
    """log(Sigmoid(u))  ->  -Softplus(-u)"""
    if isinstance(expr, sp.log) and isinstance(expr.args[0], Sigmoid):
        return -Softplus(-expr.args[0].args[0])
    return None


def _rule_log_reciprocal(expr):
    """log(1/A)  ->  -log(A) for A = 1 + exp(u) > 0"""
    if isinstance(expr, sp.log) and isinstance(expr.args[0], sp.Pow) and expr.args[0].exp == -1:
        if _exp_argument_of_one_plus_exp(expr.args[0].base) is not None:
            return -sp.log(expr.args[0].base)
    return None


# Each rule: (identity it applies, function that applies it or returns None).
RULES = [
    ("log(1/A) = -log(A)", _rule_log_reciprocal),
    ("1/(1 + exp(u)) = sigmoid(-u)", _rule_reciprocal),
    ("log(1 + exp(u)) = softplus(u)", _rule_log_one_plus_exp),
    ("exp(u) * sigmoid(-u) = sigmoid(u)", _rule_exp_times_sigmoid),
    ("1 - sigmoid(u) = sigmoid(-u)", _rule_one_minus_sigmoid),
    ("log(sigmoid(u)) = -softplus(-u)", _rule_log_sigmoid),
]


def stabilize(expr: sp.Expr) -> sp.Expr:
    """Rewrite expr bottom-up with RULES until nothing changes."""
    for _ in range(20):
        rewritten = _rewrite_once(expr)
        if rewritten == expr:
            return expr
        expr = rewritten
    return expr


def _rewrite_once(expr):
    if expr.args:
        expr = expr.func(*[_rewrite_once(a) for a in expr.args])
    for _, rule in RULES:
        result = rule(expr)
        if result is not None:
            return result
    return expr


def as_raw(expr: sp.Expr) -> sp.Expr:
    """Undo stabilize: Sigmoid and Softplus back to exp and log (nothing else is touched)."""
    return expr.replace(Sigmoid, raw_sigmoid).replace(Softplus, raw_softplus)


def equal_numerically(a, b, symbols, points=24, digits=40, seed=0, scale=3.0) -> bool:
    """True if a and b agree to 25 digits on random points (mpmath at ``digits`` digits).

    For identities SymPy cannot prove by simplify; points avoid 0 (kinks of max/abs).
    A point where either side is not finite in float64 is skipped: there mpmath would work with
    numbers of millions of digits (exp(exp(exp(exp(3))))); with fewer than half the points left
    the identity counts as unproven.
    """
    import random

    import numpy as np

    rng = random.Random(seed)
    fa = sp.lambdify(symbols, as_raw(a), modules="mpmath")
    fb = sp.lambdify(symbols, as_raw(b), modules="mpmath")
    screen = sp.lambdify(symbols, [as_raw(a), as_raw(b)], modules="numpy")
    checked = 0
    with mpmath.workdps(digits), np.errstate(all="ignore"):
        for _ in range(points):
            values = [mpmath.mpf(rng.uniform(0.05, scale)) * rng.choice((-1, 1)) for _ in symbols]
            if _overflows(screen, [float(v) for v in values]):
                continue
            va, vb = fa(*values), fb(*values)
            if abs(va - vb) > mpmath.mpf(10) ** -25 * (1 + abs(va)):
                return False
            checked += 1
    return checked >= points // 2


def _overflows(screen, values) -> bool:
    """True if a side is infinite in float64 at values (or NaN there and not finite at the same
    complex point either: inf - inf). NaN from a log of a negative number is not overflow:
    mpmath compares such points in the complex plane, as before."""
    import numpy as np

    try:
        results = [complex(v) for v in screen(*values)]
    except Exception:  # noqa: BLE001 - only a screen: a side numpy cannot evaluate is checked as before
        return False
    if any(np.isinf(v) for v in results):
        return True
    if any(np.isnan(v) for v in results):
        try:
            return not all(np.isfinite(complex(v)) for v in screen(*[complex(v) for v in values]))
        except Exception:  # noqa: BLE001 - e.g. heaviside has no complex form: check as before
            return False
    return False


def _sigmoid_args(expr):
    return {f.args[0] for f in expr.atoms(Sigmoid)}


def in_positive_sigmoids(expr: sp.Expr) -> sp.Expr:
    """Replace Sigmoid(-u) by 1 - Sigmoid(u) wherever Sigmoid(u) also occurs or u is a
    negated symbol, and expand: collects terms such as -t*sigmoid(-z) + (1-t)*sigmoid(z)
    into sigmoid(z) - t."""
    replacements = {}
    for u in _sigmoid_args(expr):
        if u.could_extract_minus_sign():
            replacements[Sigmoid(u)] = 1 - Sigmoid(-u)
    if not replacements:
        return expr
    return sp.expand(expr.xreplace(replacements))


# Nodes whose value stays finite when their arguments are finite and moderate: a product of
# them with a 0/1 mask is safe as a product. Anything else (exp, division, powers, log, ...)
# can be inf where the mask is 0, and inf * 0 is NaN.
_BOUNDED = (sp.Symbol, sp.Number, sp.Add, sp.Mul, sp.Heaviside, Sigmoid, sp.tanh, sp.sign, sp.Abs)


def masks_as_selects(expr: sp.Expr) -> sp.Expr:
    """Rewrite ``f * Heaviside(u, h)`` as ``Piecewise((f, u > 0 or u >= 0), (0, True))`` when f
    can overflow, so no rule multiplies an overflowing factor by a zero mask (ELU's
    exp(x) * H(1 - exp(x), 1) is inf * 0 = NaN at x >= 710). The kernel printer prints the
    Piecewise as a conditional expression, which never evaluates f's value into the result
    where the mask is 0. Products of bounded factors (relu's dout * H(x, 0)) stay products:
    branch-free and identical to before."""

    def select(mul):
        masks = [f for f in mul.args if isinstance(f, sp.Heaviside)]
        rest = sp.Mul(*[f for f in mul.args if not isinstance(f, sp.Heaviside)])
        if not masks or any(m.args[1] not in (0, 1) for m in masks):
            return None
        if all(isinstance(n, _BOUNDED) for n in sp.preorder_traversal(rest)):
            return None
        conditions = [sp.StrictGreaterThan(m.args[0], 0) if m.args[1] == 0 else sp.GreaterThan(m.args[0], 0)
                      for m in masks]
        return sp.Piecewise((rest, sp.And(*conditions)), (0, True))

    return expr.replace(lambda e: isinstance(e, sp.Mul) and select(e) is not None, select)


def overflow_risk(expr: sp.Expr) -> int:
    """How many exp, log, sinh and cosh calls remain outside the stable functions."""
    return sum(1 for f in sp.preorder_traversal(expr) if isinstance(f, (sp.exp, sp.log, sp.sinh, sp.cosh)))


def cost(expr: sp.Expr) -> tuple:
    """Ordering for candidate forms: fewest risky calls first, then fewest operations."""
    return (overflow_risk(expr), sp.count_ops(expr), len(str(expr)))


SIMPLIFY_LIMIT = 400  # count_ops above which simplify() is skipped (it can take minutes)
# Time budget of each rewriting attempt and each numerical check: a backstop far above what
# the registry's and usual formulas need (Mish's simplify: 0.1-1.3 s on a loaded 2-core
# machine), so generated code does not depend on the machine's speed.
STEP_SECONDS = 5.0


def _attempt(make, *args):
    """make(*args), or None when it runs past STEP_SECONDS (expand of ((x+1)**64+1)**64, an
    mpmath check of exp(exp(exp(exp(x))))): one candidate less, never a hang."""
    try:
        with time_budget(STEP_SECONDS):
            return make(*args)
    except (OutOfTime, RecursionError, OverflowError, MemoryError):
        return None


MAX_EXPANDED_TERMS = 200  # expand only what multiplies out to at most this many terms
MAX_SIMPLIFY_NESTING = 6  # expand and simplify only functions nested at most this deep


def _expanded_terms(expr) -> int:
    """An upper estimate of the terms expand() makes of expr, here or inside any argument:
    products multiply their factors' counts, integer powers of sums raise them."""
    inner = max((_expanded_terms(a) for a in expr.args), default=1)
    return max(_terms(expr), inner)


def _terms(expr) -> int:
    if isinstance(expr, sp.Add):
        return min(sum(_terms(a) for a in expr.args), 10**9)
    if isinstance(expr, sp.Mul):
        count = 1
        for factor in expr.args:
            count = min(count * _terms(factor), 10**9)
        return count
    if isinstance(expr, sp.Pow) and expr.exp.is_Integer and abs(expr.exp) > 1:
        return min(_terms(expr.base) ** min(abs(int(expr.exp)), 64), 10**9)
    return 1


def _nesting(expr) -> int:
    """How deep functions nest in expr: tanh(log(1 + exp(x))) is 3."""
    inner = max((_nesting(a) for a in expr.args), default=0)
    return inner + 1 if isinstance(expr, sp.Function) else inner


def _explodes(expr) -> bool:
    """True if expand would multiply out more than MAX_EXPANDED_TERMS terms: a sum to a high
    power (((x+1)**64 + 1)**64), the chain rule through 12 tanh's, or functions nested deeper
    than MAX_SIMPLIFY_NESTING (expand splits exp of a sum into products, level after level).
    Deciding by size, not by the clock, keeps the canonical form (and so the generated code)
    the same on any machine."""
    return _expanded_terms(expr) > MAX_EXPANDED_TERMS or _nesting(expr) > MAX_SIMPLIFY_NESTING


def canonical_form(expr: sp.Expr, symbols) -> sp.Expr:
    """The cheapest overflow-free form of expr that is provably (numerically) equal to it.

    Candidates: expr, expanded, simplified (when small enough), each stabilized and with
    sigmoids collected; the winner is checked against expr on random points. Each attempt has
    a time budget; one that runs out is skipped (expr itself is always a valid answer).
    """
    if _explodes(expr):
        starts = [expr]
    else:
        starts = [expr, _attempt(sp.expand, expr)]
    if sp.count_ops(expr) <= SIMPLIFY_LIMIT and not _explodes(expr):
        simplified = _attempt(sp.simplify, expr)
        starts += [simplified, _attempt(sp.expand, simplified) if simplified is not None else None]
    candidates = []
    for start in filter(lambda s: s is not None, starts):
        stable = _attempt(stabilize, start)
        if stable is None:
            continue
        candidates.append(stable)
        if not _explodes(stable):
            candidates += [_attempt(in_positive_sigmoids, stable), _attempt(lambda e: stabilize(sp.expand(e)), stable)]
    for candidate in sorted({c for c in candidates if c is not None}, key=cost):
        if candidate == expr or _attempt(equal_numerically, candidate, expr, symbols):
            return candidate
    return expr
