"""Two small rules of index calculus that SymPy does not apply by itself.

Differentiating ``Sum(f(k), (k, 1, K))`` by ``z[j]`` leaves ``KroneckerDelta(j, k)`` inside
sums. ``sift`` applies the sifting property ``sum_k f(k) delta(j, k) = f(j)`` (valid because
the index j lies in 1..K) and ``pull_constants`` moves factors that do not depend on the
summation indices out of the sum. ``resolve`` applies both until nothing changes.

A convolution's sum meets shifted deltas such as ``delta(u, s*i + p)``. With ``shifted=True``
these sift too, to ``p = u - s*i``; that value may fall outside p's range, so the result reads
its window arrays (a kernel W[o, c, p, q], an average or max-selector window) as zero outside
their ranges. Without ``shifted`` such a delta is left as it is.
"""
from __future__ import annotations

import sympy as sp


def _is_sum(e):
    return isinstance(e, sp.Sum)


def _solved_for(delta, index, shifted):
    """The value of index where delta is 1, or None: delta(j, k) gives j for k; with shifted,
    delta(u, s*i + p) gives u - s*i for p (p's coefficient is 1, so the solution is an integer)."""
    if delta.args[0] == index:
        return delta.args[1]
    if delta.args[1] == index:
        return delta.args[0]
    difference = sp.expand(delta.args[0] - delta.args[1])
    if not shifted or difference.coeff(index) not in (1, -1):
        return None
    return sp.solve(difference, index)[0]


def _sift_term(term, limits, shifted=False):
    """Sift every delta of term over one of the limits' indices; return term and remaining limits."""
    limits = list(limits)
    changed = True
    while changed:
        changed = False
        for limit in limits:
            index = limit[0]
            deltas = [(f, _solved_for(f, index, shifted)) for f in sp.Mul.make_args(term)
                      if isinstance(f, sp.KroneckerDelta) and index in f.free_symbols]
            deltas = [(delta, other) for delta, other in deltas if other is not None]
            if deltas:
                delta, other = deltas[0]
                term = (term / delta).subs(index, other)
                limits.remove(limit)
                changed = True
                break
    return term, limits


def sift(expr: sp.Expr, shifted: bool = False) -> sp.Expr:
    """Evaluate every sum over a Kronecker delta by the sifting property."""

    def rule(total):
        pieces = []
        for term in sp.Add.make_args(sp.expand(total.function)):
            term, limits = _sift_term(term, total.limits, shifted)
            pieces.append(sp.Sum(term, *limits) if limits else term)
        return sp.Add(*pieces)

    return expr.replace(_is_sum, rule)


def pull_constants(expr: sp.Expr) -> sp.Expr:
    """Sum(c * f(k), k) -> c * Sum(f(k), k) for factors c free of the summation indices."""

    def rule(total):
        indices = {limit[0] for limit in total.limits}
        pieces = []
        for term in sp.Add.make_args(sp.expand(total.function)):
            factors = sp.Mul.make_args(term)
            inside = [f for f in factors if f.free_symbols & indices]
            outside = [f for f in factors if not f.free_symbols & indices]
            pieces.append(sp.Mul(*outside) * sp.Sum(sp.Mul(*inside), *total.limits))
        return sp.Add(*pieces)

    return expr.replace(_is_sum, rule)


def resolve(expr: sp.Expr, shifted: bool = False) -> sp.Expr:
    """Pull constants out of sums and sift Kronecker deltas until nothing changes."""
    for _ in range(10):
        simpler = sift(pull_constants(expr), shifted)
        if simpler == expr:
            break
        expr = simpler
    return expr
