"""The checker on the RNN worked example (rnn-three-steps): the classic mistakes of
backpropagation through time, each made by a learner computing by hand, named by its own code.

Every learner's number is computed here with plain numpy, step by step as the learner made it
(never taken from symprop): the right way, with h_t where h_{t-1} belongs in a step's
contribution to dL/dWh, with tanh's derivative taken at the wrong value (1 - a^2, or
tanh'(h) = 1 - tanh(h)^2), without the recurrent path (an earlier state's gradient missing
the term that comes back through Wh from the next step), or with the sum over time forgotten
(each shared weight's gradient from the last step alone)."""
from fractions import Fraction

import numpy as np
import pytest

from symprop.cli import main
from symprop.symbolic.checker import CODES, check, claim_from

EXAMPLE = "rnn-three-steps"
STEPS, HIDDEN = 3, 2


def _given(name, example=EXAMPLE):
    """A value of the example's [values] table as float64, from the file's own numbers."""
    from symprop.symbolic.examples import NET_FILES

    return np.vectorize(lambda v: float(Fraction(str(v))))(np.array(NET_FILES[example].values[name], dtype=object))


def _keyed(name, array):
    return {f"{name}[{','.join(map(str, index))}]": float(array[index]) for index in np.ndindex(array.shape)}


def _rnn_by_hand(state_read="previous", tanh_derivative_at="state", recurrent_path=True, sum_over_time=True):
    """The worked example by hand: forward h_t = tanh(x_t Wx + h_{t-1} Wh + b) from h_0 = 0, a
    linear readout of h_3, squared error, then back through time. The learner's way:
    state_read "previous" (h_{t-1}, right) or "produced" (h_t) in step t's dWh term;
    tanh_derivative_at "state" (1 - h^2, right), "preactivation" (1 - a^2) or "tanh_of_state"
    (1 - tanh(h)^2); recurrent_path False: dL/dh_{t-1} gets nothing back through Wh;
    sum_over_time False: each shared weight's gradient from step 3 alone. key -> value."""
    xs = _given("X").reshape(STEPS)  # one sequence of scalar inputs
    target = _given("T")[0, 0]
    Wx, Wh, b = _given("Wx1")[0], _given("Wh1"), _given("b1")
    W2, b2 = _given("W2")[:, 0], _given("b2")[0]
    h = [np.zeros(HIDDEN)]
    a = [None]
    for t in range(1, STEPS + 1):
        a.append(xs[t - 1] * Wx + h[t - 1] @ Wh + b)
        h.append(np.tanh(a[t]))
    z = h[STEPS] @ W2 + b2
    values = {"z2[0,0]": z, "L": 0.5 * (target - z) ** 2}
    dz = z - target
    dh = {STEPS: W2 * dz}
    da, local = {}, {}
    for t in range(STEPS, 0, -1):
        local[t] = {"state": 1 - h[t] ** 2, "preactivation": 1 - a[t] ** 2,
                    "tanh_of_state": 1 - np.tanh(h[t]) ** 2}[tanh_derivative_at]
        da[t] = dh[t] * local[t]
        if t > 1:
            dh[t - 1] = Wh @ da[t] if recurrent_path else np.zeros(HIDDEN)
    steps = {t: np.outer(h[t - 1] if state_read == "previous" else h[t], da[t]) for t in range(1, STEPS + 1)}
    summed = range(1, STEPS + 1) if sum_over_time else [STEPS]
    dWh = sum(steps[t] for t in summed)
    dWx = sum(xs[t - 1] * da[t] for t in summed).reshape(1, HIDDEN)
    db = sum(da[t] for t in summed)
    for t in range(1, STEPS + 1):
        values |= _keyed(f"hs1[0,{t}]", h[t]) | _keyed(f"a1[0,{t}]", a[t])
        values |= _keyed(f"dL/dhs1[0,{t}]", dh[t]) | _keyed(f"dL/da1[0,{t}]", da[t])
        values |= _keyed(f"dWh1_step[{t}]", steps[t])
        values |= {f"dhs1[0,{t},{j}]/da1[0,{t},{j}]": float(local[t][j]) for j in range(HIDDEN)}
    values |= _keyed("dL/dWh1", dWh) | _keyed("dL/dWx1", dWx) | _keyed("dL/db1", db)
    rate = 0.1
    values |= _keyed("Wh1_new", Wh - rate * dWh) | _keyed("Wx1_new", _given("Wx1") - rate * dWx)
    # the keys are written hs1[0,t][j]: make them hs1[0,t,j] as the transcript names them
    return {key.replace("][", ","): value for key, value in values.items()}


OFF_BY_ONE = {"state_read": "produced"}
AT_PRE = {"tanh_derivative_at": "preactivation"}
OF_STATE = {"tanh_derivative_at": "tanh_of_state"}
NO_RECURRENCE = {"recurrent_path": False}
LAST_STEP_ONLY = {"sum_over_time": False}

CHECKER_ROWS = [
    # (claimed key, the learner's way, the diagnosis code)
    ("hs1[0,2,1]", {}, "right"),
    ("dL/da1[0,1,0]", {}, "right"),
    ("dWh1_step[2,1,0]", {}, "right"),
    ("dL/dWh1[0,0]", {}, "right"),
    ("dL/dWx1[0,1]", {}, "right"),
    ("dL/db1[1]", {}, "right"),
    # h_t where h_{t-1} belongs in step t's contribution to dL/dWh1
    ("dWh1_step[2,0,1]", OFF_BY_ONE, "recurrent_state_off_by_one"),
    ("dWh1_step[1,1,0]", OFF_BY_ONE, "recurrent_state_off_by_one"),  # step 1 read h_0 = 0, not h_1
    ("dL/dWh1[0,0]", OFF_BY_ONE, "recurrent_state_off_by_one"),
    ("dL/dWh1[1,1]", OFF_BY_ONE, "recurrent_state_off_by_one"),
    ("Wh1_new[0,1]", OFF_BY_ONE, "recurrent_state_off_by_one"),
    # tanh's derivative from the pre-activation: 1 - a^2
    ("dhs1[0,3,1]/da1[0,3,1]", AT_PRE, "tanh_derivative_at_preactivation"),
    ("dL/da1[0,2,0]", AT_PRE, "tanh_derivative_at_preactivation"),
    ("dL/dWx1[0,0]", AT_PRE, "tanh_derivative_at_preactivation"),
    ("dL/dWh1[0,1]", AT_PRE, "tanh_derivative_at_preactivation"),
    ("dL/db1[1]", AT_PRE, "tanh_derivative_at_preactivation"),
    # tanh's derivative at the state: tanh'(h) = 1 - tanh(h)^2
    ("dhs1[0,2,0]/da1[0,2,0]", OF_STATE, "tanh_derivative_of_state"),
    ("dL/da1[0,1,1]", OF_STATE, "tanh_derivative_of_state"),
    ("dL/dWx1[0,1]", OF_STATE, "tanh_derivative_of_state"),
    ("dL/dWh1[1,0]", OF_STATE, "tanh_derivative_of_state"),
    ("dL/db1[0]", OF_STATE, "tanh_derivative_of_state"),
    # the recurrent path dropped: earlier states get no gradient back through Wh1
    ("dL/dhs1[0,2,0]", NO_RECURRENCE, "dropped_recurrent_path"),
    ("dL/da1[0,2,1]", NO_RECURRENCE, "dropped_recurrent_path"),
    # ... so the earlier steps' gradients are 0 and the shared weights' gradients are the last
    # step's alone: the same numbers as the sum over time forgotten, named first (both are said)
    ("dL/dWx1[0,0]", NO_RECURRENCE, "forgot_sum_over_time"),
    ("dL/db1[0]", NO_RECURRENCE, "forgot_sum_over_time"),
    # the sum over time forgotten: each shared weight's gradient from step 3 alone
    ("dL/dWx1[0,1]", LAST_STEP_ONLY, "forgot_sum_over_time"),
    ("dL/db1[1]", LAST_STEP_ONLY, "forgot_sum_over_time"),
    ("dL/dWh1[1,1]", LAST_STEP_ONLY, "forgot_sum_over_time"),
    ("Wx1_new[0,0]", LAST_STEP_ONLY, "forgot_sum_over_time"),
]


@pytest.mark.parametrize("key, way, code", CHECKER_ROWS, ids=[f"{k}-{c}" for k, _, c in CHECKER_ROWS])
def test_the_checker_names_the_classic_rnn_mistakes(key, way, code):
    """A learner's number, computed by hand the right way or with one classic mistake, written
    to 6 decimals: the checker names the mistake."""
    value = _rnn_by_hand(**way)[key]
    if way:
        assert abs(value - _rnn_by_hand()[key]) > 1e-4  # the mistake changes this number
    report = check(EXAMPLE, [claim_from(key, f"{value:.6f}", "claim 1")])
    assert not report.problems, report.problems
    (verdict,) = report.verdicts
    assert verdict.code == code, (key, verdict.code, [d.en for d in verdict.diagnoses])
    assert verdict.right == (CODES[code] == "right")
    if way == NO_RECURRENCE:
        assert "dropped_recurrent_path" in {f.code for f in verdict.findings}


def test_the_table_covers_each_mistake_on_the_gradients_of_the_shared_weights():
    """Each mistake is named on at least one gradient of Wx1 or Wh1, the numbers a learner hands in."""
    for code in ("recurrent_state_off_by_one", "tanh_derivative_at_preactivation", "tanh_derivative_of_state",
                 "forgot_sum_over_time"):
        assert any(c == code and k.startswith(("dL/dWh1", "dL/dWx1")) for k, _, c in CHECKER_ROWS), code


def test_the_right_answers_stay_right_all_together():
    """Every number of the right calculation, claimed at once to 6 decimals: all right."""
    right = _rnn_by_hand()
    report = check(EXAMPLE, [claim_from(key, f"{value:.6f}", f"claim {i}") for i, (key, value) in enumerate(right.items())])
    assert not report.problems, report.problems
    assert len(report.verdicts) == len(right)
    wrong = [(v.key, v.code) for v in report.verdicts if not v.right]
    assert not wrong


def test_symprop_check_says_which_mistake_in_words(capsys):
    """The command line: the off-by-one state and the dropped recurrent path, named in words;
    the dropped path's dL/dWh1 is also step 3's contribution alone (the sum over time forgotten)."""
    off_by_one, dropped = _rnn_by_hand(**OFF_BY_ONE), _rnn_by_hand(**NO_RECURRENCE)
    assert main(["check", EXAMPLE, f"dL/dWh1[0,1]={off_by_one['dL/dWh1[0,1]']:.4f}",
                 f"dL/dWx1[0,0]={dropped['dL/dWx1[0,0]']:.4f}", f"dL/dWh1[0,0]={dropped['dL/dWh1[0,0]']:.4f}"]) == 1
    out = capsys.readouterr().out
    assert "the state it produced, h_t" in out and "the recurrent path dropped" in out
    assert "dWh1_step[3,0,0]" in out
