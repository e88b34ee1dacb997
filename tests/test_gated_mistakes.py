"""The checker on the gated worked examples (lstm-two-steps, gru-two-steps): the classic
mistakes of backpropagation through time, as on the RNN (tests/test_rnn_mistakes.py), named by
the same codes, plus the gated cells' own: the direct path back (an LSTM's cell through its
forget gate, a GRU's state through its update gate) dropped.

Every learner's number is computed here with plain numpy, step by step as the learner made it
(never taken from symprop). A learner's way makes its mistake wherever it applies: h_t for
h_{t-1} in every gradient term that reads the old state (dWh's contributions, an LSTM's forget
gate's c_{t-1}, a GRU's update gate's h_{t-1}); tanh's derivative at the wrong value for every
tanh (an LSTM's candidate and tanh(c), a GRU's candidate); sigmoid's at the net input for every
gate."""
import numpy as np
import pytest

from symprop.cli import main
from symprop.symbolic.checker import CODES, check, claim_from
from tests.test_rnn_mistakes import _given

LSTM, GRU = "lstm-two-steps", "gru-two-steps"
STEPS = 2


def _sigmoid(u):
    return 1 / (1 + np.exp(-u))


def _sigmoid_derivative(y, u, at):
    return {"output": y * (1 - y), "net": u * (1 - u)}[at]


def _tanh_derivative(y, u, at):
    """tanh'(u) for y = tanh(u): 1 - y^2 (right), 1 - u^2 at the pre-activation, 1 - tanh(y)^2 at the output."""
    return {"state": 1 - y ** 2, "preactivation": 1 - u ** 2, "tanh_of_state": 1 - np.tanh(y) ** 2}[at]


def _readout(example, h_last):
    """z2 = h_T W2 + b2, L = (T - z2)^2 / 2: dL/dh_T."""
    z = h_last * _given("W2", example)[0, 0] + _given("b2", example)[0]
    return _given("W2", example)[0, 0] * (z - _given("T", example)[0, 0])


def _shared_gradients(stacked, da, h, xs, sum_over_time, state_read):
    """dWh's steps and each shared weight's gradient: summed over the steps, or the last step's alone."""
    steps = {t: (h[t - 1] if state_read == "previous" else h[t]) * da[t] for t in range(1, STEPS + 1)}
    summed = range(1, STEPS + 1) if sum_over_time else [STEPS]
    values = {f"dWh1_step[{t},0,{q}]": steps[t][q] for t in steps for q in range(stacked)}
    values |= {f"dL/dWh1[0,{q}]": sum(steps[t][q] for t in summed) for q in range(stacked)}
    return values, summed


def _lstm_by_hand(state_read="previous", tanh_derivative_at="state", sigmoid_derivative_at="output",
                  hidden_path=True, cell_path=True, sum_over_time=True):
    """lstm-two-steps by hand: gates i, f, g, o from a = x_t Wx + h_{t-1} Wh + b, c_t = f c_{t-1} + i g,
    h_t = o tanh(c_t) from h_0 = c_0 = 0; back through time along the hidden path (through Wh)
    and the cell path (dL/dc_{t-1} += dL/dc_t f_t). key -> value."""
    xs = _given("X", LSTM).reshape(STEPS)
    Wx, Wh, b = _given("Wx1", LSTM)[0], _given("Wh1", LSTM)[0], _given("b1", LSTM)
    h, c, a, gates = [0.0], [0.0], [None], [None]
    for t in range(1, STEPS + 1):
        a.append(xs[t - 1] * Wx + h[t - 1] * Wh + b)
        i, f, g, o = _sigmoid(a[t][0]), _sigmoid(a[t][1]), np.tanh(a[t][2]), _sigmoid(a[t][3])
        gates.append((i, f, g, o))
        c.append(f * c[t - 1] + i * g)
        h.append(o * np.tanh(c[t]))
    dh, dc, da, values = {STEPS: _readout(LSTM, h[STEPS])}, {}, {}, {}
    for t in range(STEPS, 0, -1):
        i, f, g, o = gates[t]
        dc[t] = dh[t] * o * _tanh_derivative(np.tanh(c[t]), c[t], tanh_derivative_at)
        if t < STEPS and cell_path:
            dc[t] += dc[t + 1] * gates[t + 1][1]
        df = dc[t] * (c[t - 1] if state_read == "previous" else c[t])
        local_g = _tanh_derivative(g, a[t][2], tanh_derivative_at)
        da[t] = np.array([dc[t] * g * _sigmoid_derivative(i, a[t][0], sigmoid_derivative_at),
                          df * _sigmoid_derivative(f, a[t][1], sigmoid_derivative_at),
                          dc[t] * i * local_g,
                          dh[t] * np.tanh(c[t]) * _sigmoid_derivative(o, a[t][3], sigmoid_derivative_at)])
        dh[t - 1] = Wh @ da[t] if hidden_path else 0.0
        values |= {f"dL/dcs1[0,{t},0]": dc[t], f"dL/dhs1[0,{t - 1},0]": dh[t - 1], f"dL/df1[0,{t},0]": df,
                   f"dg1[0,{t},0]/da1[0,{t},2]": local_g}
        values |= {f"dL/da1[0,{t},{q}]": da[t][q] for q in range(4)}
    weights, summed = _shared_gradients(4, da, h, xs, sum_over_time, state_read)
    values |= weights
    dWx = sum(xs[t - 1] * da[t] for t in summed)
    values |= {f"dL/dWx1[0,{q}]": dWx[q] for q in range(4)} | {f"dL/db1[{q}]": sum(da[t][q] for t in summed)
                                                                for q in range(4)}
    values |= {f"Wx1_new[0,{q}]": Wx[q] - 0.1 * dWx[q] for q in range(4)}
    return values


def _gru_by_hand(state_read="previous", tanh_derivative_at="state", sigmoid_derivative_at="output",
                 hidden_path=True, direct_path=True, sum_over_time=True):
    """gru-two-steps by hand (PyTorch's convention): ax = x_t Wx + bx, ah = h_{t-1} Wh + bh,
    r = sigmoid(ax_r + ah_r), z = sigmoid(ax_z + ah_z), n = tanh(ax_n + r ah_n), h_t = (1 - z) n + z h_{t-1};
    back through time through Wh and directly (dL/dh_{t-1} += z dL/dh_t). key -> value."""
    xs = _given("X", GRU).reshape(STEPS)
    Wx, Wh, bx, bh = (_given(name, GRU) for name in ("Wx1", "Wh1", "bx1", "bh1"))
    Wx, Wh = Wx[0], Wh[0]
    h, ax, ah, cell = [0.0], [None], [None], [None]
    for t in range(1, STEPS + 1):
        ax.append(xs[t - 1] * Wx + bx)
        ah.append(h[t - 1] * Wh + bh)
        r, z = _sigmoid(ax[t][0] + ah[t][0]), _sigmoid(ax[t][1] + ah[t][1])
        n = np.tanh(ax[t][2] + r * ah[t][2])
        cell.append((r, z, n))
        h.append((1 - z) * n + z * h[t - 1])
    dh, dax, dah, values = {STEPS: _readout(GRU, h[STEPS])}, {}, {}, {}
    for t in range(STEPS, 0, -1):
        r, z, n = cell[t]
        dz = dh[t] * ((h[t - 1] if state_read == "previous" else h[t]) - n)
        local_n = _tanh_derivative(n, ax[t][2] + r * ah[t][2], tanh_derivative_at)
        dn_pre = dh[t] * (1 - z) * local_n
        dax[t] = np.array([ah[t][2] * dn_pre * _sigmoid_derivative(r, ax[t][0] + ah[t][0], sigmoid_derivative_at),
                           dz * _sigmoid_derivative(z, ax[t][1] + ah[t][1], sigmoid_derivative_at), dn_pre])
        dah[t] = np.array([dax[t][0], dax[t][1], dn_pre * r])
        dh[t - 1] = (Wh @ dah[t] if hidden_path else 0.0) + (z * dh[t] if direct_path else 0.0)
        values |= {f"dL/dz1[0,{t},0]": dz, f"dn1[0,{t},0]/dax1[0,{t},2]": local_n}
        if t > 1:  # the transcript has no dL/dh_0 (nothing reads the given h_0)
            values[f"dL/dhs1[0,{t - 1},0]"] = dh[t - 1]
        values |= {f"dL/dax1[0,{t},{q}]": dax[t][q] for q in range(3)} | {f"dL/dah1[0,{t},{q}]": dah[t][q]
                                                                          for q in range(3)}
    weights, summed = _shared_gradients(3, dah, h, xs, sum_over_time, state_read)
    values |= weights
    dWx = sum(xs[t - 1] * dax[t] for t in summed)
    values |= {f"dL/dWx1[0,{q}]": dWx[q] for q in range(3)}
    values |= {f"dL/dbx1[{q}]": sum(dax[t][q] for t in summed) for q in range(3)}
    values |= {f"dL/dbh1[{q}]": sum(dah[t][q] for t in summed) for q in range(3)}
    return values


BY_HAND = {LSTM: _lstm_by_hand, GRU: _gru_by_hand}
OFF_BY_ONE = {"state_read": "produced"}
AT_PRE = {"tanh_derivative_at": "preactivation"}
OF_STATE = {"tanh_derivative_at": "tanh_of_state"}
SIGMOID_AT_NET = {"sigmoid_derivative_at": "net"}
LAST_STEP_ONLY = {"sum_over_time": False}
NO_RECURRENCE = {LSTM: {"hidden_path": False, "cell_path": False}, GRU: {"hidden_path": False, "direct_path": False}}
NO_DIRECT_PATH = {LSTM: {"cell_path": False}, GRU: {"direct_path": False}}

ROWS = [
    # (example, claimed key, the learner's way, the diagnosis code)
    (LSTM, "dL/dcs1[0,1,0]", {}, "right"),
    (LSTM, "dL/dWh1[0,2]", {}, "right"),
    (LSTM, "dL/dWx1[0,0]", {}, "right"),
    (GRU, "dL/dhs1[0,1,0]", {}, "right"),
    (GRU, "dL/dWx1[0,1]", {}, "right"),
    (GRU, "dL/dbh1[2]", {}, "right"),
    # h_t where h_{t-1} belongs: step 2's contribution to dWh1, and the LSTM's forget gate's
    # c_{t-1} (c_t for it), the GRU's update gate's h_{t-1} - n (h_t - n)
    (LSTM, "dWh1_step[2,0,0]", OFF_BY_ONE, "recurrent_state_off_by_one"),
    (LSTM, "dL/dWh1[0,2]", OFF_BY_ONE, "recurrent_state_off_by_one"),
    (LSTM, "dL/df1[0,2,0]", OFF_BY_ONE, "recurrent_state_off_by_one"),
    (LSTM, "dL/dWx1[0,1]", OFF_BY_ONE, "recurrent_state_off_by_one"),
    (GRU, "dWh1_step[2,0,2]", OFF_BY_ONE, "recurrent_state_off_by_one"),
    (GRU, "dL/dz1[0,1,0]", OFF_BY_ONE, "recurrent_state_off_by_one"),
    (GRU, "dL/dWh1[0,1]", OFF_BY_ONE, "recurrent_state_off_by_one"),
    (GRU, "dL/dWx1[0,1]", OFF_BY_ONE, "recurrent_state_off_by_one"),
    # tanh's derivative at the pre-activation: the candidate's 1 - a^2, the LSTM's 1 - c^2 for tanh'(c)
    (LSTM, "dg1[0,2,0]/da1[0,2,2]", AT_PRE, "tanh_derivative_at_preactivation"),
    (LSTM, "dL/dcs1[0,1,0]", AT_PRE, "tanh_derivative_at_preactivation"),
    (LSTM, "dL/dWx1[0,2]", AT_PRE, "tanh_derivative_at_preactivation"),
    (GRU, "dn1[0,2,0]/dax1[0,2,2]", AT_PRE, "tanh_derivative_at_preactivation"),
    (GRU, "dL/dWx1[0,2]", AT_PRE, "tanh_derivative_at_preactivation"),
    # tanh's derivative at its output: 1 - tanh(y)^2
    (LSTM, "dL/dcs1[0,1,0]", OF_STATE, "tanh_derivative_of_state"),
    (LSTM, "dL/db1[2]", OF_STATE, "tanh_derivative_of_state"),
    (GRU, "dn1[0,1,0]/dax1[0,1,2]", OF_STATE, "tanh_derivative_of_state"),
    (GRU, "dL/dbx1[2]", OF_STATE, "tanh_derivative_of_state"),
    # a gate's sigmoid derivative s(1 - s) written in its net input
    (LSTM, "dL/da1[0,2,3]", SIGMOID_AT_NET, "convention_sigmoid_at_net"),
    (LSTM, "dL/dWx1[0,0]", SIGMOID_AT_NET, "convention_sigmoid_at_net"),
    (GRU, "dL/dax1[0,2,1]", SIGMOID_AT_NET, "convention_sigmoid_at_net"),
    (GRU, "dL/dWx1[0,0]", SIGMOID_AT_NET, "convention_sigmoid_at_net"),
    # the sum over time forgotten: each shared weight's gradient from step 2 alone
    (LSTM, "dL/dWx1[0,2]", LAST_STEP_ONLY, "forgot_sum_over_time"),
    (LSTM, "dL/db1[0]", LAST_STEP_ONLY, "forgot_sum_over_time"),
    (GRU, "dL/dWx1[0,1]", LAST_STEP_ONLY, "forgot_sum_over_time"),
    (GRU, "dL/dbh1[2]", LAST_STEP_ONLY, "forgot_sum_over_time"),
    # the recurrent path dropped: nothing back from step 2 to h_1 (nor to the LSTM's c_1)
    (LSTM, "dL/dhs1[0,1,0]", NO_RECURRENCE, "dropped_recurrent_path"),
    (LSTM, "dL/dcs1[0,1,0]", NO_RECURRENCE, "dropped_recurrent_path"),
    (GRU, "dL/dhs1[0,1,0]", NO_RECURRENCE, "dropped_recurrent_path"),
    (GRU, "dL/dax1[0,1,2]", NO_RECURRENCE, "dropped_recurrent_path"),
    # the direct path dropped: the LSTM's c_1 without f_2 dL/dc_2, the GRU's h_1 without z_2 dL/dh_2
    (LSTM, "dL/dcs1[0,1,0]", NO_DIRECT_PATH, "dropped_direct_state_path"),
    (LSTM, "dL/dWx1[0,2]", NO_DIRECT_PATH, "dropped_direct_state_path"),
    (GRU, "dL/dhs1[0,1,0]", NO_DIRECT_PATH, "dropped_direct_state_path"),
    (GRU, "dL/dWx1[0,1]", NO_DIRECT_PATH, "dropped_direct_state_path"),
]


def _way(example, way):
    """The learner's way on this example (the paths back are each cell's own)."""
    return way[example] if example in way else way


@pytest.mark.parametrize("example, key, way, code", ROWS, ids=[f"{e}-{k}-{c}" for e, k, _, c in ROWS])
def test_the_checker_names_the_classic_gated_mistakes(example, key, way, code):
    """A learner's number, computed by hand the right way or with one classic mistake, written
    to 6 decimals: the checker names the mistake."""
    way = _way(example, way)
    value = BY_HAND[example](**way)[key]
    if way:
        assert abs(value - BY_HAND[example]()[key]) > 1e-4  # the mistake changes this number
    report = check(example, [claim_from(key, f"{value:.6f}", "claim 1")])
    assert not report.problems, report.problems
    (verdict,) = report.verdicts
    assert verdict.code == code, (key, verdict.code, [d.en for d in verdict.diagnoses])
    assert verdict.right == (CODES[code] == "right")


def test_the_table_covers_each_mistake_on_both_cells():
    """Each classic mistake is named on both examples, and on a gradient of a shared weight
    (the numbers a learner hands in) wherever it changes one."""
    for code in {c for *_, c in ROWS}:
        assert {e for e, *_, c in ROWS if c == code} == {LSTM, GRU}, code
    for code in {c for *_, c in ROWS} - {"right", "dropped_recurrent_path"}:
        assert any(c == code and k.startswith(("dL/dW", "dL/db")) for _, k, _, c in ROWS), code


@pytest.mark.parametrize("example", [LSTM, GRU])
def test_the_right_answers_stay_right_all_together(example):
    """Every number of the right calculation by hand, claimed at once to 6 decimals: all right
    (so the hand calculation above is the example's, and no mistake is found in a right answer)."""
    right = BY_HAND[example]()
    report = check(example, [claim_from(key, f"{value:.6f}", f"claim {i}") for i, (key, value) in enumerate(right.items())])
    assert not report.problems, report.problems
    assert len(report.verdicts) == len(right)
    assert not [(v.key, v.code) for v in report.verdicts if not v.right]


def test_symprop_check_says_which_mistake_in_words(capsys):
    """The command line on the LSTM: the cell's direct path dropped and the sum over time
    forgotten, named in words, and exit status 1."""
    no_cell_path, last_step = _lstm_by_hand(cell_path=False), _lstm_by_hand(sum_over_time=False)
    assert main(["check", LSTM, f"dL/dcs1[0,1,0]={no_cell_path['dL/dcs1[0,1,0]']:.4f}",
                 f"dL/dWx1[0,2]={last_step['dL/dWx1[0,2]']:.4f}"]) == 1
    out = capsys.readouterr().out
    assert "the direct path dropped" in out and "the sum over time forgotten" in out
