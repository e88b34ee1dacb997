"""The checker's fast paths give the values of the slow ones: formulas evaluated in Python
fractions (and remembered) equal ``Transcript.evaluate``'s, and a learner's world computed
on demand equals the same world computed in full, in the transcript's order. (Speed itself
is measured by ``python -m symprop.benchmarks.grading``, not here.)"""
from __future__ import annotations

import random

import pytest
import sympy as sp

from symprop.symbolic import rational_eval
from symprop.symbolic.checker import _dependencies, _interval, _rational, claim_from, learner_world
from symprop.symbolic.examples import EXAMPLES
from symprop.symbolic.transcript import Chain, rounded

EXAMPLES_CHECKED = ["mazur-2-2-2", "two-layer-sigmoid", "quadratic-model", "softmax-with-loss",
                    "relu-layer", "batchnorm-staged"]


def _learner_values(t, rng):
    """Each scalar quantity as a learner writes it: its value rounded to 3 to 9 digits, then
    sometimes a little off (a Rational), or left exact (a Float, an Integer)."""
    values = {}
    for key, q in t.quantities.items():
        if isinstance(q.value, sp.MatrixBase) or rng.random() < 0.2:
            values[key] = q.value
            continue
        written = sp.Rational(rounded(q.value, rng.randint(3, 9)))
        values[key] = written * sp.Rational(rng.randint(95, 105), 100) if rng.random() < 0.3 else written
    return values


@pytest.mark.parametrize("name", EXAMPLES_CHECKED)
def test_fraction_evaluation_equals_sympy_evaluation(name):
    t = EXAMPLES[name].build()
    rng = random.Random(name)
    fast = 0
    for _ in range(3):
        values = _learner_values(t, rng)
        for key, q in t.quantities.items():
            if q.formula is None:
                continue
            inputs = {k: values[k] for k in _dependencies(t, key)}
            try:
                expected = t.evaluate(q.formula, inputs)
            except Exception as exc:  # a learner's numbers can make a step no number holds: the same refusal
                with pytest.raises(type(exc)):
                    rational_eval.evaluate(t, key, inputs)
                continue
            got = rational_eval.evaluate(t, key, inputs)
            assert got == expected and type(got) is type(expected), (key, inputs)
            assert rational_eval.evaluate(t, key, inputs) is got  # remembered
            program, _ = rational_eval._compiled(t, key)
            fast += program is not None and all(getattr(v, "is_Rational", False) for v in inputs.values())
    assert fast > 0 or name == "batchnorm-staged"  # the fraction path was taken, not only SymPy's


def test_fraction_evaluation_refuses_what_it_cannot_compute_exactly():
    """Sigmoids, floats and divisions by zero go to SymPy: the result is still SymPy's."""
    t = EXAMPLES["mazur-2-2-2"].build()
    assert rational_eval._compiled(t, "h1")[0] is None  # Sigmoid(net_h1)
    chain = next(k for k, q in t.quantities.items() if isinstance(q.formula, Chain))
    assert rational_eval._compiled(t, chain)[0] is not None
    inputs = {k: sp.Float("0.25", 60) for k in _dependencies(t, chain)}
    assert rational_eval.evaluate(t, chain, inputs) == t.evaluate(t.quantities[chain].formula, inputs)
    compiled = rational_eval._compile(1 / sp.Symbol("y"))
    with pytest.raises(ZeroDivisionError):
        compiled({"y": sp.Integer(0)})


def _world_in_full(t, claims, boxed):
    """The learner's world as the checker first computed it: every quantity, in order, by
    ``Transcript.evaluate`` (the reference the on-demand world must equal)."""
    point, box, own = {}, {}, {}
    for key, q in t.quantities.items():
        if q.formula is not None:
            value = t.evaluate(q.formula, point)
            interval = _interval(t, key, point, box, value)
            if key in claims:
                own[key] = (value, interval)
        else:
            value, interval = q.value, None
        if key in claims:
            c = claims[key]
            value = c.value
            interval = (c.value - c.tolerance, c.value + c.tolerance) if key in boxed else None
        point[key] = value
        if interval is None and not isinstance(value, sp.MatrixBase):
            interval = (_rational(value), _rational(value))
        box[key] = interval
    return point, box, own


@pytest.mark.parametrize("name", ["mazur-2-2-2", "quadratic-model"])
def test_world_on_demand_equals_the_world_in_full(name):
    """Whichever quantity is asked for first (the last one, one claimed step's own values),
    the world computed on demand equals the world computed in full."""
    t = EXAMPLES[name].build()
    rng = random.Random(7)
    keys = [k for k, q in t.quantities.items() if not isinstance(q.value, sp.MatrixBase)]
    for _ in range(3):
        claims = {}
        for k in rng.sample(keys, 12):
            written = rounded(sp.sympify(t.value(k)) * sp.Rational(rng.randint(97, 103), 100), 4)
            claims[k] = claim_from(k, written, k)
        boxed = set(rng.sample(sorted(claims), 4))
        point, box, own = _world_in_full(t, claims, boxed)
        backwards = learner_world(t, claims, boxed)
        for k in reversed(list(t.quantities)):
            assert backwards.point[k] == point[k] and backwards.box[k] == box[k], k
        for k in own:
            assert learner_world(t, claims, boxed).own[k] == own[k], k
        only = {k: claims[k] for k in sorted(claims)[:1]}  # one claimed input alone, as a diagnosis asks
        point, box, _ = _world_in_full(t, only, set(only))
        alone = learner_world(t, only, set(only))
        assert all(alone.point[k] == point[k] and alone.box[k] == box[k] for k in keys)
    assert all(learner_world(t, {}, set()).point[k] == t.value(k) for k in keys)  # no claims: the exact values
