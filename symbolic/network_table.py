"""Long runs of a network file: the first step written out in full, then a table of the error
and the parameters over every step, as published examples run them (Mazur's 10,000 steps).

Writing 10,000 steps out line by line in exact arithmetic would take hours and nobody reads
it. The table's numbers come from the first step's own formulas (each quantity's formula
over earlier ones, the update p_new = p - rate * dE/dp included), compiled once and run again
from each step's parameters in float64, the arithmetic of the learner's program.
"""
from __future__ import annotations

import math

import sympy as sp

from .errors import SympropError
from .transcript import Chain, Transcript, tr

TABLE_ROWS = 20  # about this many rows after the first five


def _sigmoid(u: float) -> float:
    if u >= 0:
        return 1.0 / (1.0 + math.exp(-u))
    e = math.exp(u)
    return e / (1.0 + e)


def _softplus(u: float) -> float:
    return max(u, 0.0) + math.log1p(math.exp(-abs(u)))


NAMESPACE = {"Sigmoid": _sigmoid, "Softplus": _softplus, "sigmoid": _sigmoid,
             "Heaviside": lambda u, at_zero=0.5: 1.0 if u > 0 else 0.0 if u < 0 else at_zero}


class CompiledStep:
    """One step's quantities as Python functions over earlier quantities' float values."""

    def __init__(self, t: Transcript):
        self.order = []
        for key, q in t.quantities.items():
            if q.formula is None:
                continue
            if isinstance(q.formula, Chain):
                terms = q.formula.terms
                self.order.append((key, lambda v, terms=terms: sum(math.prod(v[k] for k in term) for term in terms)))
                continue
            names = sorted(s.name for s in q.formula.free_symbols)
            f = sp.lambdify([sp.Symbol(n) for n in names], q.formula, [NAMESPACE, "math"], dummify=True)
            self.order.append((key, lambda v, f=f, names=names: f(*[v[n] for n in names])))

    def run(self, values: dict) -> dict:
        values = dict(values)
        for key, f in self.order:
            values[key] = float(f(values))
        return values


def long_run(t: Transcript, net, steps: int) -> Transcript:
    """Append the table of ``steps`` steps to ``t``, the transcript of the first step."""
    params = list(net.parameters())
    given = {k: float(sp.N(q.value, 30)) for k, q in t.quantities.items() if q.formula is None}
    step = CompiledStep(t)
    every = max(1, steps // TABLE_ROWS)
    rows = []
    result = tr(f"{steps} steps of gradient descent", f"{steps} 步梯度下降")
    current = {p: given[p] for p in params}
    for k in range(1, steps + 1):
        values = step.run({**given, **current})
        if not math.isfinite(values["E"]):
            raise SympropError(f"{t.name}, field 'steps': the error E is not a finite number at step {k} "
                               "(the updates diverge: try a smaller learning_rate)")
        if k <= 5 or k % every == 0 or k == steps:
            row = [str(k), sp.Float(values["E"])]
            key = "E" if k == 1 else f"step{k}:E"
            if k > 1:
                t.given(key, sp.Rational(values["E"]), result_of=result)
                for p in params:
                    t.given(f"step{k}:{p}", sp.Rational(current[p]), result_of=result)
            row += [sp.Rational(current[p]) for p in params]
            rows.append(row)
        current = {p: values.get(f"{p}_new", current[p]) for p in params}
    final = step.run({**given, **current})
    for p in params:
        t.given(f"{p}_trained", sp.Rational(current[p]), result_of=result)
    t.given("E_trained", sp.Rational(final["E"]), result_of=result)
    t.heading(tr(f"{steps} steps", f"{steps} 步"))
    t.note(tr(f"E and the parameters at the start of each step (step k's values are named stepk:E, stepk:w; after "
              f"the last step E_trained and w_trained); computed from the first step's formulas in float64",
              f"每一步开始时的 E 和参数（第 k 步的值记作 stepk:E、stepk:w；最后一步之后为 E_trained、w_trained）；"
              "按第一步的公式用 float64 计算"))
    t.table([tr("step", "步"), tr("E", "E"), *[tr(p, p) for p in params]], rows)
    return t
