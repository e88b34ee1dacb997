"""Two small rules of index calculus that SymPy does not apply by itself.

Differentiating ``Sum(f(k), (k, 1, K))`` by ``z[j]`` leaves ``KroneckerDelta(j, k)`` inside
sums. ``sift`` applies the sifting property ``sum_k f(k) delta(j, k) = f(j)`` (valid because
the index j lies in 1..K) and ``pull_constants`` moves factors that do not depend on the
summation indices out of the sum. ``resolve`` applies both until nothing changes.
"""
from __future__ import annotations

import sympy as sp


def _is_sum(e):
    return isinstance(e, sp.Sum)


def _sift_term(term, limits):
    """Sift every delta of term over one of the limits' indices; return term and remaining limits."""
    limits = list(limits)
    changed = True
    while changed:
        changed = False
        for limit in limits:
            index = limit[0]
            deltas = [f for f in sp.Mul.make_args(term)
                      if isinstance(f, sp.KroneckerDelta) and index in f.free_symbols]
            if deltas:
                delta = deltas[0]
                other = delta.args[0] if delta.args[1] == index else delta.args[1]
                term = (term / delta).subs(index, other)
                limits.remove(limit)
                changed = True
                break
    return term, limits


def sift(expr: sp.Expr) -> sp.Expr:
    """Evaluate every sum over a Kronecker delta by the sifting property."""

    def rule(total):
        pieces = []
        for term in sp.Add.make_args(sp.expand(total.function)):
            term, limits = _sift_term(term, total.limits)
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


def resolve(expr: sp.Expr) -> sp.Expr:
    """Pull constants out of sums and sift Kronecker deltas until nothing changes."""
    for _ in range(10):
        simpler = sift(pull_constants(expr))
        if simpler == expr:
            break
        expr = simpler
    return expr
