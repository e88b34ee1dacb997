"""A quantity's formula evaluated in plain Python fractions, for the checker's learner worlds.

Checking one submission recomputes the exercise's formulas thousands of times, from the
learner's own numbers and from every corner of their written precision; through SymPy
(substitute, simplify, evaluate) that was most of a check's time. Most formulas of a hand
calculation are rational functions (sums, products, integer powers: net inputs, losses,
the chain rule, updates), and a learner's written numbers are Rationals: there the exact
value is unique, and ``fractions.Fraction`` computes it about a hundred times faster. Every
other case (sigmoid, exp, max, a matrix, a float input, a division by zero) goes through
``Transcript.evaluate`` as before, so the values, and the verdicts, are the same.
"""
from __future__ import annotations

from fractions import Fraction

import sympy as sp

from .transcript import Chain, Transcript, carry

MAX_POWER = 64  # larger integer powers are left to SymPy (its own limits then apply)


MEMO_SIZE = 50_000  # remembered results per transcript (a class repeats the same written numbers)


def evaluate(t: Transcript, key: str, values: dict):
    """``t.evaluate`` of quantity ``key``'s formula with ``values`` (key -> value) for its inputs.
    Results are remembered per transcript by the exact inputs: the students of a class write
    the same few roundings of each number, so the same sigmoid is asked for again and again."""
    program, names = _compiled(t, key)
    try:
        memo_key = (key, *(_memo_key(values.get(name)) for name in names))
    except _NotRational:
        memo_key = None
    memo = t.__dict__.setdefault("_evaluated", {})
    known = memo.get(memo_key) if memo_key is not None else None
    if known is not None:
        return known
    result = None
    if program is not None:
        try:
            exact = program(values)
        except (_NotRational, ZeroDivisionError, KeyError):
            pass
        else:
            result = carry(sp.Rational(exact.numerator, exact.denominator))
    if result is None:
        result = t.evaluate(t.quantities[key].formula, values)
    if memo_key is not None:
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[memo_key] = result
    return result


def _memo_key(value):
    """What identifies an input value exactly (None: the transcript's own value)."""
    if value is None:
        return None
    if getattr(value, "is_Rational", False) is True:
        return int(value.p), int(value.q)
    if isinstance(value, sp.Float):
        return "float", value._mpf_, value._prec
    if value is sp.nan or value is sp.oo or value is sp.S.NegativeInfinity or value is sp.zoo:
        return str(value)
    raise _NotRational  # a matrix, an exact expression: not remembered


class _NotRational(Exception):
    """An input that is not an exact Rational (a float, a matrix, nan): SymPy evaluates it."""


def _fraction(value) -> Fraction:
    if getattr(value, "is_Rational", False) is True:
        return Fraction(int(value.p), int(value.q))
    raise _NotRational


def _compiled(t: Transcript, key: str):
    """(the formula of ``key`` as a function of a values dict, or None when it is not a
    rational function of its inputs; the names of its inputs), cached on the transcript:
    compiled once per exercise."""
    cache = t.__dict__.setdefault("_rational_programs", {})
    if key not in cache:
        formula = t.quantities[key].formula
        if isinstance(formula, Chain):
            names = {name for term in formula.terms for name in term}
            cache[key] = _chain(formula.terms), tuple(sorted(names))
        else:
            names = {s.name for s in formula.free_symbols | set(formula.atoms(sp.MatrixSymbol))}
            cache[key] = _compile(formula) if isinstance(formula, sp.Expr) else None, tuple(sorted(names))
    return cache[key]


def _chain(terms):
    def run(values):
        total = Fraction(0)
        for term in terms:
            product = Fraction(1)
            for name in term:
                product *= _fraction(values[name])
            total += product
        return total
    return run


def _compile(expr):
    """A function of the values dict for a sum, product or integer power of symbols and
    Rationals; None for anything else."""
    if isinstance(expr, sp.Symbol):
        name = expr.name
        return lambda values: _fraction(values[name])
    if expr.is_Rational:
        constant = Fraction(int(expr.p), int(expr.q))
        return lambda values: constant
    if isinstance(expr, (sp.Add, sp.Mul)):
        parts = [_compile(arg) for arg in expr.args]
        if any(p is None for p in parts):
            return None
        if isinstance(expr, sp.Add):
            def add(values):
                total = Fraction(0)
                for part in parts:
                    total += part(values)
                return total
            return add

        def multiply(values):
            product = Fraction(1)
            for part in parts:
                product *= part(values)
            return product
        return multiply
    if isinstance(expr, sp.Pow) and expr.exp.is_Integer and abs(int(expr.exp)) <= MAX_POWER:
        base, exponent = _compile(expr.base), int(expr.exp)
        if base is None:
            return None
        return lambda values: base(values) ** exponent
    return None
