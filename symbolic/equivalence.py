"""A learner's claim that is a formula, not a number ("dL/dz = y - t"): is it the derived rule?

The derived rule is the transcript's own formula for that quantity, written out in the names
the learner used (a chain-rule product is expanded through its factors' formulas until only
those names and the example's given values remain). If the two are equal, the rewrite that
shows it is named (the same formula, or both expand / factor / simplify to one form); if not,
the simplest input where they differ is given, and the values at the example's own numbers.
The learner's text goes through ``parse_formula`` (never executed).
"""
from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass

import sympy as sp

from .errors import SympropError
from .formula import parse_formula
from .graphfile import formula_variables
from .transcript import Chain, Transcript, rounded

MAX_DEPTH = 12
POINTS = (0, 1, -1, 2, sp.Rational(1, 2), -2, 3)
MAX_POINTS = 3000


@dataclass
class Comparison:
    equivalent: bool
    derived: sp.Expr  # the rule in the learner's names
    explanation: str  # the rewrite that makes them equal, or where they differ


# a name with an index, as transcripts of net files write them: xhat1[0,1], dL/dz1[1,0], b1[2]
INDEXED_NAME = re.compile(r"(?<![\w\]])(?:d\w+\s*/\s*d)?[A-Za-z_]\w*\s*\[\s*\d+(?:\s*,\s*\d+)*\s*\]")
PLACEHOLDER = "_name{}_"


def with_placeholders(text: str, names=()) -> tuple[str, dict[str, str]]:
    """``text`` with every value name that is not a plain identifier (``xhat1[0,1]``,
    ``dL/dh0[2,1]``, ``dE/do1``) replaced by a placeholder the formula language reads as one
    variable: (new text, placeholder -> name as written, its spaces removed). ``names``: the
    exercise's names, matched longest first, so ``dL/dz1[0,1]`` is one name, not ``dL`` divided
    by ``dz1[0,1]``; without them, indexed names only (enough to check the syntax)."""
    found: dict[str, str] = {}

    def replace(name: str) -> str:
        name = re.sub(r"\s+", "", name)
        for placeholder, known in found.items():
            if known == name:
                return placeholder
        placeholder = PLACEHOLDER.format(len(found))
        found[placeholder] = name
        return placeholder

    text = re.sub(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]", text)
    for name in sorted((n for n in names if not n.isidentifier()), key=len, reverse=True):
        text = re.sub(r"(?<![\w\]])" + re.escape(name) + r"(?![\w\[])", lambda m: replace(m.group(0)), text)
    text = INDEXED_NAME.sub(lambda m: replace(m.group(0)), text)
    return text, found


def compare(t: Transcript, key: str, text: str, where: str, resolve=None) -> Comparison:
    """The learner's formula ``text`` for quantity ``key`` against the transcript's rule, both
    written out down to the example's given values (kept as symbols): equivalent when they
    agree as functions of those (at the example's values and at random ones near them)."""
    text, written = with_placeholders(text, t.quantities)
    names = formula_variables(text)
    rename = {}
    for name in names:
        shown = written.get(name, name)
        target = shown if shown in t.quantities else (resolve(shown, t.quantities) if resolve else None)
        if target is None:
            raise SympropError(f"{where}: the formula uses {shown!r}, which is not a value of this example")
        rename[name] = target
    learner = parse_formula(text, tuple(names), where)
    learner = learner.xreplace({sp.Symbol(n, real=True): sp.Symbol(rename[n]) for n in names})
    rule = _as_expr(t.quantities[key].formula)
    mine, theirs = _leaves(t, learner, 0), _leaves(t, rule, 0)
    givens = sorted(mine.free_symbols | theirs.free_symbols, key=lambda s: s.name)
    if _agree(t, mine, theirs, givens):
        return Comparison(True, rule, _rewrite(t, learner.rewrite(sp.exp), rule.rewrite(sp.exp)))
    return Comparison(False, rule, _difference(t, mine, theirs, givens, rule))


def _as_expr(formula) -> sp.Expr:
    if isinstance(formula, Chain):
        return sp.Add(*[sp.Mul(*[sp.Symbol(k) for k in term]) for term in formula.terms])
    return formula


def _leaves(t: Transcript, expr, depth: int) -> sp.Expr:
    """``expr`` with every computed quantity replaced by its own formula, down to givens."""
    if depth > MAX_DEPTH:
        raise SympropError("the formula is too deep to write out")
    replace = {}
    for s in expr.free_symbols:
        q = t.quantities.get(s.name)
        if q is not None and q.formula is not None:
            replace[s] = _leaves(t, _as_expr(q.formula), depth + 1)
    return expr.xreplace(replace).rewrite(sp.exp) if replace or expr.has(sp.Function) else expr


def _value(expr, point):
    try:
        value = sp.N(expr.xreplace(point), 40)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return value if value.is_number and value.is_finite and value.is_real is not False else None


def _agree(t, mine, theirs, givens) -> bool:
    """Equal at the example's values and at four random points near them."""
    rng = random.Random(0)
    base = {s: t.quantities[s.name].value for s in givens if s.name in t.quantities}
    points = [base] + [{s: sp.Rational(v) * sp.Rational(rng.randint(70, 130), 100) + sp.Rational(rng.randint(-20, 20), 100)
                        for s, v in base.items()} for _ in range(4)]
    checked = 0
    for point in points:
        a, b = _value(mine, point), _value(theirs, point)
        if a is None or b is None:
            continue
        if abs(a - b) > sp.Float("1e-30") * (1 + abs(b)):
            return False
        checked += 1
    return checked >= 2


def plain_formula(expr) -> str:
    """A formula as a learner types it (x^2, not x**2)."""
    return str(expr).replace("**", "^")


def _rewrite(t, learner, rule) -> str:
    if learner == rule:
        return f"equivalent: the derived rule is {plain_formula(rule)}, the same formula"
    for name, how in (("expand", sp.expand), ("factor", sp.factor), ("together", sp.together)):
        a, b = how(learner), how(rule)
        if a == b:
            return f"equivalent: the derived rule is {plain_formula(rule)}; both {name} to {plain_formula(a)}"
    # they use different names: say which of them stands for what
    mine, theirs = {s.name for s in learner.free_symbols}, {s.name for s in rule.free_symbols}
    through = [n for n in sorted(mine ^ theirs) if n in t.quantities and t.quantities[n].formula is not None]
    how = "; ".join(f"{n} = {plain_formula(_as_expr(t.quantities[n].formula).rewrite(sp.exp))}" for n in through[:4])
    return (f"equivalent: the derived rule is {plain_formula(rule)}; equal once " + (f"{how} is written in" if how else
            "both are written out down to the given values"))


def _difference(t, mine, theirs, givens, rule) -> str:
    base = {s: t.quantities[s.name].value for s in givens if s.name in t.quantities}
    a, b = _value(mine, base), _value(theirs, base)
    at_example = (f"; at this example's values yours is {rounded(a, 6)}, the rule {rounded(b, 6)}"
                  if a is not None and b is not None else "")
    point = _simplest_difference(mine, theirs, givens)
    where = ""
    if point is not None:
        values, x, y = point
        at = ", ".join(f"{s} = {v}" for s, v in values.items()) or "any input"
        where = f"; the simplest input where they differ: {at} (yours {rounded(x, 6)}, the rule {rounded(y, 6)})"
    else:
        changed = _one_change(mine, theirs, givens, base)
        if changed is not None:
            (s, v), x, y = changed
            where = (f"; they differ at this example's values with {s} = {v} instead "
                     f"(yours {rounded(x, 6)}, the rule {rounded(y, 6)})")
    return f"not equivalent: the derived rule is {plain_formula(rule)}{where}{at_example}"


def _one_change(mine, theirs, symbols, base):
    """Where small values for every input find no difference in time (a batch norm has a dozen
    inputs, and 0 for all of them divides by zero): the example's values with one input
    changed to a small value, the first input first."""
    for s in symbols:
        for v in POINTS:
            if s not in base or base[s] == v:
                continue
            point = {**base, s: v}
            a, b = _value(mine, point), _value(theirs, point)
            if a is not None and b is not None and abs(a - b) > sp.Float("1e-30") * (1 + abs(b)):
                return (s, v), a, b
    return None


def _simplest_difference(mine, theirs, symbols):
    """The first point of small values (0, 1, -1, 2, 1/2, ...) where both are defined and differ."""
    for count, values in enumerate(itertools.product(POINTS, repeat=len(symbols))):
        if count >= MAX_POINTS:
            return None
        point = dict(zip(symbols, values))
        a, b = _value(mine, point), _value(theirs, point)
        if a is not None and b is not None and abs(a - b) > sp.Float("1e-30") * (1 + abs(b)):
            return point, a, b
    return None
