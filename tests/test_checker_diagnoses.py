"""Issue 14: a table of learner answers (right, rounded, truncated, carried forward, each slip
and each convention, on several examples) and the diagnosis code each must get.

Claims are made from the transcripts (exact values, or the values under another convention,
rounded, cut off or altered the way a learner would), never typed in, so a row fails when the
checker names the wrong cause; the three numbers quoted in the issue are kept as written.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import sympy as sp

from symprop.symbolic.checker import CODES, check, claim_from, render_report
from symprop.cli import main
from symprop.symbolic.examples import EXAMPLES, builtin_network
from symprop.symbolic.network_transcript import Conventions, network_transcript
from symprop.symbolic.transcript import rounding_intermediates

EXACT = {name: EXAMPLES[name].build() for name in
         ("mazur-2-2-2", "two-layer-sigmoid", "moons-logistic", "linear-model", "softmax-with-loss")}


def value(example, key):
    return EXACT[example].value(key)


def fixed(x, decimals: int) -> str:
    """x written with ``decimals`` decimals, rounded half up (exact rationals)."""
    x = sp.Rational(sp.N(x, 50)) if not sp.sympify(x).is_Rational else sp.sympify(x)
    n = int(sp.floor(abs(x) * 10 ** decimals + sp.Rational(1, 2)))
    return _digits(n, decimals, x < 0)


def cut(x, decimals: int) -> str:
    """x cut off after ``decimals`` decimals (truncated, not rounded)."""
    x = sp.Rational(sp.N(x, 50))
    n = int(sp.floor(abs(x) * 10 ** decimals))
    return _digits(n, decimals, x < 0)


def _digits(n: int, decimals: int, negative: bool) -> str:
    text = str(n).rjust(decimals + 1, "0")
    return ("-" if negative else "") + text[:-decimals] + "." + text[-decimals:]


def cut_not_rounded(x) -> str:
    """x cut off at the first number of decimals (from 4) where that differs from rounding."""
    return next(cut(x, d) for d in range(4, 12) if cut(x, d) != fixed(x, d))


def swap(text: str, position: int) -> str:
    """Two neighbouring digits swapped (position counts digits after the point)."""
    point = text.index(".")
    i = point + position
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]


def variant(example, **changes):
    """The example's network transcript with the network or the conventions changed."""
    net = builtin_network(example)
    conventions = Conventions(**{k: v for k, v in changes.items() if k in Conventions.__dataclass_fields__})
    net = dataclasses.replace(net, **{k: v for k, v in changes.items() if k not in Conventions.__dataclass_fields__})
    return network_transcript(net, example, conventions)


def float32_mazur():
    """Mazur's forward pass as a float32 program computes it (written here, not via the checker)."""
    f = np.float32
    i = np.array([0.05, 0.10], f)
    w_h = np.array([[0.15, 0.25], [0.20, 0.30]], f)
    w_o = np.array([[0.40, 0.50], [0.45, 0.55]], f)
    h = f(1) / (f(1) + np.exp(-(i @ w_h + f(0.35))))
    o = f(1) / (f(1) + np.exp(-(h @ w_o + f(0.60))))
    return {"h1": h[0], "o1": o[0], "o2": o[1]}


def float32_sgd(epochs=100):
    """The linear model's per-sample SGD in float32 (a learner's PyTorch loop)."""
    w, lr = np.float32(1), np.float32(0.01)
    for _ in range(epochs):
        for x, y in ((1, 2), (2, 4), (3, 6)):
            x, y = np.float32(x), np.float32(y)
            w = w - lr * (np.float32(2) * (w * x - y) * x)
    return w


MZ, TL, MOONS, LIN, SOFT = "mazur-2-2-2", "two-layer-sigmoid", "moons-logistic", "linear-model", "softmax-with-loss"
dy1 = value(TL, "dE/dy1") * sp.Rational(11, 10)  # a slip in the sum over h1 and h2
h1_from_wrong_net = 1 / (1 + sp.exp(-sp.Rational("0.3875")))

# (id, example, {name: written}, the claim looked at, the expected code)
ROWS = [
    # right, at any number of digits; exact ties; aliases
    ("right-8", MZ, lambda: {"o1": fixed(value(MZ, "o1"), 8)}, "o1", "right"),
    ("right-3", TL, lambda: {"E": fixed(value(TL, "E"), 3)}, "E", "right"),
    ("right-moons", MOONS, lambda: {"W1_new[0,0]": fixed(value(MOONS, "W1_new[0,0]"), 6)}, "W1_new[0,0]", "right"),
    ("right-softmax", SOFT, lambda: {"dL/dX[0,0]": fixed(value(SOFT, "dL/dX[0,0]"), 5)}, "dL/dX[0,0]", "right"),
    ("alias-out", MZ, lambda: {"out_h1": fixed(value(MZ, "h1"), 9)}, "h1", "right"),
    ("alias-plus", MZ, lambda: {"w5+": fixed(value(MZ, "w5_new"), 9)}, "w5_new", "right"),
    ("alias-total", MZ, lambda: {"E_total": fixed(value(MZ, "E"), 9)}, "E", "right"),
    ("alias-delta", MZ, lambda: {"delta_o1": fixed(value(MZ, "dE/dnet_o1"), 9)}, "dE/dnet_o1", "right"),
    ("per-output", MZ, lambda: {"E_o1": fixed(value(MZ, "E_o1"), 9)}, "E_o1", "right"),
    ("per-path", MZ, lambda: {"dE_o1/dout_h1": fixed(value(MZ, "dE_o1/dh1"), 9)}, "dE_o1/dh1", "right"),
    # rounding only: the exact value rounded to fewer digits than asked for, or cut off
    ("rounded-fewer", MZ, lambda: {"E": fixed(value(MZ, "E"), 4) + "0000"}, "E", "rounded"),
    ("rounded-fewer-2", TL, lambda: {"dE/db22": fixed(value(TL, "dE/db22"), 4) + "0"}, "dE/db22", "rounded"),
    ("truncated", MZ, lambda: {"o1": cut_not_rounded(value(MZ, "o1"))}, "o1", "truncated"),
    ("truncated-2", TL, lambda: {"h1": cut_not_rounded(value(TL, "h1"))}, "h1", "truncated"),
    ("truncated-moons", MOONS, lambda: {"dL/dz1[1,0]": cut_not_rounded(value(MOONS, "dL/dz1[1,0]"))}, "dL/dz1[1,0]",
     "truncated"),
    # carried forward: right for the learner's own (wrong) earlier values
    ("carried", MZ, lambda: {"net_h1": "0.3875", "h1": fixed(h1_from_wrong_net, 9)}, "h1", "carried_forward"),
    ("carried-issue-1", MZ, lambda: {"net_h1": "0.3875", "h1": "0.595680731", "net_o1": "1.106870262"},
     "net_o1", "carried_forward"),
    ("carried-tie", MZ, lambda: {"dE/dw5": "0.439829649", "w5_new": "0.180085176"}, "w5_new", "carried_forward"),
    ("carried-2", TL, lambda: {"dE/dy1": fixed(dy1, 4),
                               "dE/da11": fixed(sp.Rational(fixed(dy1, 4)) * value(TL, "dy1/dnet_y1")
                                                * value(TL, "dnet_y1/da11"), 4)}, "dE/da11", "carried_forward"),
    ("carried-issue-2", MZ, lambda: {"dE/do1": "0.74136507", "do1/dnet_o1": "0.19", "h1": "0.593269992",
                                     "dE/dw5": "0.083568"}, "dE/dw5", "carried_precision"),
    ("carried-seed", TL, lambda: {"h1": "0.694", "h2": "0.718", "E": "0.444"}, "E", "carried_precision"),
    # wrong values, with the likely cause
    ("sign", MZ, lambda: {"o1": "-" + fixed(value(MZ, "o1"), 8)}, "o1", "sign_flipped"),
    ("sign-2", MZ, lambda: {"dE/do2": fixed(-value(MZ, "dE/do2"), 8)}, "dE/do2", "sign_flipped"),
    ("sign-moons", MOONS, lambda: {"dL/dz1[0,0]": fixed(-value(MOONS, "dL/dz1[0,0]"), 6)}, "dL/dz1[0,0]",
     "sign_flipped"),
    ("transposed", MZ, lambda: {"o1": swap(fixed(value(MZ, "o1"), 8), 5)}, "o1", "digits_transposed"),
    ("transposed-2", TL, lambda: {"dE/db22": swap(fixed(value(TL, "dE/db22"), 5), 3)}, "dE/db22", "digits_transposed"),
    ("factor-2", MZ, lambda: {"net_h1": fixed(2 * value(MZ, "net_h1"), 4)}, "net_h1", "factor_2"),
    ("factor-half", MZ, lambda: {"h2": fixed(value(MZ, "h2") / 2, 8)}, "h2", "factor_half"),
    ("factor-n", MOONS, lambda: {"z1[1,0]": fixed(4 * value(MOONS, "z1[1,0]"), 6)}, "z1[1,0]", "factor_n"),
    ("other-quantity", MZ, lambda: {"o1": fixed(value(MZ, "o2"), 8)}, "o1", "other_quantity"),
    ("other-quantity-seed", TL, lambda: {"h1_new": "0.667", "h2_new": "0.693", "E_new": "0.44356"},
     "E_new", "other_quantity"),
    ("trivial-one", MZ, lambda: {"dE/dw5": "1"}, "dE/dw5", "wrong_value"),
    ("slip-5th-digit", MZ, lambda: {"o1": fixed(value(MZ, "o1") + sp.Rational(1, 10 ** 5), 8)}, "o1", "wrong_value"),
    ("issue-not-rounding", MZ, lambda: {"o1": "0.75136079"}, "o1", "wrong_value"),
    ("given", MZ, lambda: {"w3": "0.24"}, "w3", "wrong_given"),
    ("epoch-table", LIN, lambda: {"epoch5:w": fixed(value(LIN, "epoch5:w"), 4)}, "epoch5:w", "right"),
    ("epoch-table-wrong", LIN, lambda: {"epoch10:l": fixed(2 * value(LIN, "epoch10:l"), 6)}, "epoch10:l", "factor_2"),
    ("result", LIN, lambda: {"w_trained": "1.5"}, "w_trained", "wrong_result"),
    # conventions
    ("biases-updated", MZ, lambda: {"o1_new": fixed(variant(MZ, update_biases=True).value("o1_new"), 8)},
     "o1_new", "convention_biases_updated"),
    ("biases-fixed", TL, lambda: {"E_new": fixed(variant(TL, update_biases=False).value("E_new"), 6)},
     "E_new", "convention_biases_not_updated"),
    ("only-b2-updated", MZ, lambda: {"o1_new": fixed(variant(MZ, updated_biases=frozenset({"b2"})).value("o1_new"), 8)},
     "o1_new", "convention_some_biases_updated"),
    ("only-c1-fixed", TL, lambda: {"E_new": fixed(variant(TL, updated_biases=frozenset({"c2"})).value("E_new"), 6)},
     "E_new", "convention_some_biases_fixed"),
    ("ascent-issue", MZ, lambda: {"w1_new": "0.150219284"}, "w1_new", "convention_gradient_ascent"),
    ("ascent", TL, lambda: {"b11_new": fixed(variant(TL, gradient_ascent=True).value("b11_new"), 5)},
     "b11_new", "convention_gradient_ascent"),
    ("sigmoid-at-net", MZ, lambda: {"do1/dnet_o1": fixed(variant(MZ, derivative_at_net=True)
                                                         .value("do1/dnet_o1"), 8)},
     "do1/dnet_o1", "convention_sigmoid_at_net"),
    ("sigmoid-at-net-2", TL, lambda: {"dE/da11": fixed(variant(TL, derivative_at_net=True).value("dE/da11"), 6)},
     "dE/da11", "convention_sigmoid_at_net"),
    ("updated-weights", TL, lambda: {"a11_new": fixed(variant(TL, hidden_uses_updated_weights=True)
                                                      .value("a11_new"), 6)}, "a11_new", "convention_updated_weights"),
    ("per-unit-bias", TL, lambda: {"h2_new": "0.693"}, "h2_new", "convention_per_unit_bias"),
    ("no-half", MZ, lambda: {"dE/do1": fixed(variant(MZ, loss="sum-of-squares").value("dE/do1"), 8)},
     "dE/do1", "convention_loss_no_half"),
    ("batch-sum", MOONS, lambda: {"dL/dW1[0,0]": fixed(EXAMPLES[MOONS].build_batch_sum().value("dL/dW1[0,0]"), 6)},
     "dL/dW1[0,0]", "convention_batch_sum"),
    ("float32-sgd", LIN, lambda: {"w_trained": repr(float(float32_sgd()))}, "w_trained", "convention_float32"),
    ("float32-epoch", LIN, lambda: {"epoch3:w": repr(float(float32_sgd(3)))}, "epoch3:w", "convention_float32"),
    ("float32-forward", MZ, lambda: {"o1": repr(float(float32_mazur()["o1"]))}, "o1", "convention_float32"),
]


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_learner_answer_gets_its_code(row):
    _, example, make, key, code = row
    report = check(example, [claim_from(k, v, f"test {k}") for k, v in make().items()])
    assert not report.problems, report.problems
    verdict = next(v for v in report.verdicts if v.key == key)
    assert verdict.code == code, (verdict.claim.written, verdict.code, [d.en for d in verdict.diagnoses])
    assert verdict.right == (CODES[code] == "right")
    assert verdict.right or verdict.diagnoses  # a wrong value always says why in a sentence


def test_the_table_covers_the_issue():
    codes = {r[4] for r in ROWS}
    assert len(ROWS) >= 40 and len({r[1] for r in ROWS}) >= 3
    assert set(CODES) - codes <= {"right_float64", "convention_rounded_intermediates", "convention_loss_mean",
                                  "convention_loss_half_sum", "convention_loss_sum", "convention_relu0",
                                  # tests/test_checker_programs.py, _file_kinds.py, _round3.py:
                                  "not_finite", "forgot_sigmoid_derivative", "rounded_intermediate", "slip_carried",
                                  "formula_equivalent", "formula_differs", "convention_layout",
                                  # tests/test_attention.py:
                                  "softmax_jacobian_elementwise", "forgot_attention_scale",
                                  "attention_scores_transposed",
                                  # tests/test_rnn_mistakes.py, tests/test_gated_mistakes.py:
                                  "tanh_derivative_at_preactivation", "tanh_derivative_of_state",
                                  "recurrent_state_off_by_one", "dropped_recurrent_path", "forgot_sum_over_time",
                                  "dropped_direct_state_path"}


def test_rounding_only_only_for_the_rounded_or_truncated_exact_value():
    """Every verdict in the table that says 'rounding' has a claim equal to the exact value
    rounded or cut off at some number of decimals (checked here independently)."""
    for _, example, make, _, _ in ROWS:
        for v in check(example, [claim_from(k, w, "t") for k, w in make().items()]).verdicts:
            says_rounding = v.kind == "rounding" or any("rounding only" in d.en for d in v.diagnoses)
            if not says_rounding:
                continue
            c = v.claim
            assert any(c.value == sp.Rational(f(v.exact, k)) for k in range(1, c.decimals + 1)
                       for f in (fixed, cut)), (example, c.key, c.written)


EDGE = """
title = "edge"
loss = "squared-error"
learning_rate = 0.5
[inputs]
x1 = {x}
[targets]
t1 = 0
[[layers]]
units = ["y"]
activation = "{activation}"
weights = [[{w}]]
bias = {b}
"""


def _edge(tmp_path, written, x="1.1", w="3", b="0", activation="identity", key="net_y"):
    path = tmp_path / "edge.toml"
    path.write_text(EDGE.format(x=x, w=w, b=b, activation=activation), encoding="utf-8")
    return check(str(path), [claim_from(key, written, "t")]).verdicts[0]


def test_float64_rendering_is_right(tmp_path):
    written = repr(1.1 * 3.0)  # what a float64 program prints for 3.3
    assert written != "3.3"
    v = _edge(tmp_path, written)
    assert v.right and v.code == "right_float64"
    assert not _edge(tmp_path, "3.3000000000001").right  # not a double's print: a wrong value


def test_relu_derivative_at_zero_convention(tmp_path):
    v = _edge(tmp_path, "1", x="1", w="1", b="-1", activation="relu", key="dy/dnet_y")
    assert not v.right and v.code == "convention_relu0"


def test_leaky_relu_kink_from_the_right(tmp_path):
    """Asked of the op, not its name: a leaky relu written as a formula has a kink too, and
    its derivative at 0 from the right is 1 (its slope there from the left is 1/10)."""
    v = _edge(tmp_path, "1", x="1", w="1", b="-1", activation="max(x/10, x)", key="dy/dnet_y")
    assert not v.right and v.code == "convention_relu0"
    assert _edge(tmp_path, "0.1", x="1", w="1", b="-1", activation="max(x/10, x)", key="dy/dnet_y").right
    assert _edge(tmp_path, "1.1", x="1", w="1", b="-1", activation="max(x/10, x)", key="dy/dnet_y").code != "convention_relu0"


def test_rounded_intermediates_convention():
    with rounding_intermediates(4):
        rounded_world = EXAMPLES[MZ].build()
    # the new net input from every earlier value rounded to 4 decimals: not the exact one at 4 decimals
    written = fixed(rounded_world.value("net_o2_new"), 4)
    assert abs(sp.Rational(written) - value(MZ, "net_o2_new")) > sp.Rational(1, 20000)
    v = check(MZ, [claim_from("net_o2_new", written, "t")]).verdicts[0]
    assert v.code == "convention_rounded_intermediates", (v.code, [d.en for d in v.diagnoses])


def test_carried_forward_names_the_rounded_input():
    report = check(MZ, [claim_from(k, w, "t") for k, w in
                        {"dE/do1": "0.74136507", "do1/dnet_o1": "0.19", "h1": "0.593269992", "dE/dw5": "0.083568"}.items()])
    data = json.loads(render_report(report, "json"))
    dw5 = next(c for c in data["claims"] if c["name"] == "dE/dw5")
    assert dw5["code"] == "carried_precision" and dw5["explained_by"] == ["do1/dnet_o1"]
    assert "do1/dnet_o1 = 0.19" in dw5["diagnoses"][0]
    report = check(MZ, [claim_from(k, w, "t") for k, w in
                        {"net_h1": "0.3875", "h1": "0.595680731", "net_o1": "1.106870262"}.items()])
    net_o1 = report.verdicts[-1]
    assert net_o1.findings[0].inputs == ["h1"] and report.first_wrong == "net_h1"


def test_exact_column_shows_the_claims_digits():
    claimed = repr(float(4 * float32_sgd()))
    report = check(LIN, [claim_from("y_hat_test_trained", claimed, "t")])
    row = next(line for line in render_report(report).splitlines() if line.startswith("y_hat_test_trained"))
    exact_text = row.split()[2]
    assert exact_text != "8" and len(exact_text.replace(".", "")) >= len(claimed.replace(".", "")) - 1


def test_unknown_names_do_not_stop_the_others(capsys):
    status = main(["check", MZ, "w5+=0.1", "out_h1=" + fixed(value(MZ, "h1"), 9), "nonsense=3"])
    out, err = capsys.readouterr()
    assert status == 2
    assert "h1" in out and "right" in out  # the known claims were still checked
    assert "'nonsense'" in err and "'nonsense'" in out
    # w5+ is understood as w5_new; an unknown 'w9+' suggests the _new name first
    assert main(["check", MZ, "w8+x=0.1"]) == 2
    assert main(["check", MZ, "w9_new+=0.1"]) == 2
    capsys.readouterr()
    assert main(["check", MZ, "w5_ne+=0.1"]) == 2
    assert "closest names: w5_new" in capsys.readouterr().err


def test_json_codes_for_every_claim():
    report = check(TL, [claim_from(k, w, "t") for k, w in {"h1": "0.694", "h2": "0.718", "E": "0.444",
                                                           "h1_new": "0.667"}.items()])
    data = json.loads(render_report(report, "json"))
    assert [c["code"] for c in data["claims"]] == [v.code for v in report.verdicts]
    assert all(c["code"] in CODES for c in data["claims"]) and data["problems"] == []
    assert data["claims"][0]["code"] == "right" and data["claims"][0]["codes"] == []


def test_half_unit_ties_are_right_in_exact_rationals(tmp_path):
    # 0.4 - 0.5 * 0.439829649 = 0.1800851755 exactly: 0.180085176 and 0.180085175 are both right
    for written in ("0.180085176", "0.180085175"):
        assert _edge(tmp_path, written, x="1", w="0.1800851755").right
    assert not _edge(tmp_path, "0.180085177", x="1", w="0.1800851755").right
    # the issue's pair: w5_new follows from the learner's dE/dw5 as written, no rounding needed
    report = check(MZ, [claim_from("dE/dw5", "0.439829649", "t"), claim_from("w5_new", "0.180085176", "t")])
    w5 = report.verdicts[-1]
    assert w5.code == "carried_forward" and w5.findings[0].inputs == []


def test_claims_file_with_an_unknown_name_checks_the_rest(tmp_path, capsys):
    path = tmp_path / "claims.toml"
    path.write_text(f'example = "{MZ}"\n[claims]\nout_h1 = "{fixed(value(MZ, "h1"), 9)}"\nw9_new = "0.1"\n'
                    f'"w5+" = "{fixed(value(MZ, "w5_new"), 9)}"\n', encoding="utf-8")
    assert main(["check", str(path), "--format", "json"]) == 2
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert [c["name"] for c in data["claims"]] == ["h1", "w5_new"] and data["all_right"]
    assert len(data["problems"]) == 1 and "line 4" in data["problems"][0] and "'w9_new'" in err
