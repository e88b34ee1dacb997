"""Derivatives at kinks: the one stated convention for max, min and relu at a tie.

SymPy differentiates ``Max(a, b)`` to ``a' H(a - b) + b' H(b - a)`` and leaves H(0) open. Set
to 0 that gives 0 at every tie: right for relu (relu'(0) = 0) but wrong for leaky ReLU
``max(x, 0.01 x)`` (PyTorch: 0.01) and for ELU ``max(0, x) + min(0, exp(x) - 1)``, which is
differentiable at 0 with slope 1.

The convention here: **at a tie, max and min take the derivative of the side that wins just
to the left (the one-sided derivative from below)**. For max that is the side with the
smaller slope, for min the side with the larger one. It gives relu'(0) = 0, leaky_relu'(0) =
the negative slope and ELU'(0) = 1, as PyTorch's relu, leaky_relu and elu do, and the true
derivative wherever the function is differentiable. (A mean of the sides would give
relu'(0) = 1/2.)

When SymPy can tell which slope is smaller (relu, leaky ReLU, ELU: the difference of the
slopes has a known sign), the rule stays in Heaviside form, ``H(u, 0)`` for the side that
loses the tie and ``H(u, 1)`` for the side that wins it. Otherwise it is a Piecewise that
takes ``min(a', b')`` (max) or ``max(a', b')`` (min) at the tie.
"""
from __future__ import annotations

import sympy as sp

CONVENTION = (
    "At a kink of max or min the derivative is the one-sided derivative from the left: "
    "relu'(0) = 0, leaky_relu'(0) = its negative slope, ELU'(0) = 1, as PyTorch's relu, "
    "leaky_relu and elu do; H(u, 0) is 0 at u = 0, H(u, 1) is 1."
)


class _TieMax(sp.Function):
    """Max(a, b) while differentiating: only its derivative differs (see the module)."""

    nargs = 2

    def _eval_derivative(self, s):
        return _tie_derivative(*self.args, s, largest=True)


class _TieMin(sp.Function):
    """Min(a, b) while differentiating."""

    nargs = 2

    def _eval_derivative(self, s):
        return _tie_derivative(*self.args, s, largest=False)


def _tie_derivative(a, b, s, largest):
    a_, b_ = _back(a), _back(b)
    da, db = _back(sp.diff(a, s)), _back(sp.diff(b, s))
    # H(u) (SymPy's open H(0) = 1/2) is the strict side; layers.py sets it to H(u, 0)
    a_wins, b_wins = (a_ - b_, b_ - a_) if largest else (b_ - a_, a_ - b_)
    a_wins, b_wins = _accurate(a_wins), _accurate(b_wins)
    slope = sp.simplify(da - db)
    # max: the smaller slope wins the tie (it is larger just left of it); min: the larger
    a_takes_tie = slope.is_negative if largest else slope.is_positive
    b_takes_tie = slope.is_positive if largest else slope.is_negative
    if slope.is_zero:
        a_takes_tie = True
    if a_takes_tie:
        return da * sp.Heaviside(a_wins, 1) + db * sp.Heaviside(b_wins)
    if b_takes_tie:
        return da * sp.Heaviside(a_wins) + db * sp.Heaviside(b_wins, 1)
    at_tie = sp.Min(da, db) if largest else sp.Max(da, db)
    return sp.Piecewise((da, sp.StrictGreaterThan(a_wins, 0)), (db, sp.StrictGreaterThan(b_wins, 0)),
                        (at_tie, True))


def _accurate(difference):
    """The difference of a tie's two sides in a form whose sign survives rounding: ELU's
    min(0, exp(x) - 1) compares 0 with exp(x) - 1, which is 0 in float64 for |x| < 1e-16 and
    so a false tie (the derivative came out 2); -expm1(x) keeps the sign of x. Only exp(u) - 1
    and log(1 + u) are rewritten (as expm1 and log1p); any other difference stays as written."""
    from sympy.codegen.rewriting import expm1_opt, log1p_opt, optimize

    if not difference.has(sp.exp, sp.log):
        return difference
    return optimize(difference, [expm1_opt, log1p_opt])


def _pairwise(cls, args):
    """Max(a, b, c) as Max(a, Max(b, c)): the tie rule is stated for two sides."""
    args = list(args)
    result = args[-1]
    for arg in reversed(args[:-1]):
        result = cls(arg, result)
    return result


def _to_tie(expr):
    return expr.replace(lambda e: isinstance(e, sp.Max), lambda e: _pairwise(_TieMax, e.args)).replace(
        lambda e: isinstance(e, sp.Min), lambda e: _pairwise(_TieMin, e.args))


def _back(expr):
    return expr.replace(_TieMax, sp.Max).replace(_TieMin, sp.Min)


def diff(expr, symbol):
    """SymPy's diff of expr by symbol, with max and min following the tie convention above."""
    if not expr.has(sp.Max, sp.Min):
        return sp.diff(expr, symbol)
    return _back(sp.diff(_to_tie(expr), symbol))
