"""The hand-calculation checker: injected mistakes are diagnosed, tolerance comes from the
digits written, bad claims files are refused with a line number."""
from __future__ import annotations

from pathlib import Path

import pytest
import sympy as sp

from symprop.symbolic.checker import check, claim_from, load_claims, parse_written, render_report
from symprop.cli import main
from symprop.symbolic.errors import SympropError
from symprop.symbolic.examples import EXAMPLES
from symprop.symbolic.transcript import rounded

SEED_CLAIMS = Path(__file__).parents[1] / "examples" / "seed-001-claims.toml"
EXACT = EXAMPLES["two-layer-sigmoid"].build()


def claims(**values):
    return [claim_from(k.replace("__", "/"), v, f"test {k}") for k, v in values.items()]


def verdicts(report):
    return {v.claim.key: v for v in report.verdicts}


def test_all_correct_claims_pass_at_every_rounding():
    keys = ["h1", "E", "dE/db22", "dE/dy1", "dE/da11", "a11_new", "c2_new", "E_new"]
    for digits in range(2, 9):
        report = check("two-layer-sigmoid", [claim_from(k, rounded(EXACT.value(k), digits), "test") for k in keys])
        assert report.all_right, (digits, [(v.claim.key, v.claim.written) for v in report.verdicts if not v.right])


def test_wrong_hidden_gradient_is_the_first_wrong_step_and_later_claims_inherit_it():
    wrong_dy1 = EXACT.value("dE/dy1") * sp.Rational(11, 10)  # a slip in the sum over h1 and h2
    learner_da11 = wrong_dy1 * EXACT.value("dy1/dnet_y1") * EXACT.value("dnet_y1/da11")
    learner_a11 = EXACT.value("a11") - EXACT.value("learning_rate") * sp.Rational(rounded(learner_da11, 4))
    report = check("two-layer-sigmoid", [
        claim_from("dE/db22", rounded(EXACT.value("dE/db22"), 4), "t"),
        claim_from("dE/dy1", rounded(wrong_dy1, 4), "t"),
        claim_from("dE/da11", rounded(learner_da11, 4), "t"),
        claim_from("a11_new", rounded(learner_a11, 6), "t"),
    ])
    v = verdicts(report)
    assert v["dE/db22"].right
    assert v["dE/dy1"].kind == "own" and not v["dE/dy1"].right
    assert v["dE/da11"].kind == "carried" and "dE/dy1" in v["dE/da11"].diagnoses[0].en
    assert v["a11_new"].kind == "carried" and "dE/da11" in v["a11_new"].diagnoses[0].en
    assert report.first_wrong == "dE/dy1"
    text = render_report(report)
    assert "First wrong step: dE/dy1." in text and "Only inherited from earlier mistakes: dE/da11, a11_new." in text


@pytest.mark.parametrize("variant, convention", [
    ({"update_biases": False}, "biases not updated"),
    ({"hidden_uses_updated_weights": True}, "already-updated output weights"),
    ({"loss": "sum-of-squares"}, "without the 1/2"),
])
def test_convention_changes_are_named(variant, convention):
    import dataclasses

    from symprop.symbolic.examples import builtin_network
    from symprop.symbolic.network_transcript import Conventions, network_transcript
    net = builtin_network("two-layer-sigmoid")
    if "hidden_uses_updated_weights" in variant:
        other = network_transcript(net, "v", Conventions(hidden_uses_updated_weights=True))
        keys = ["a11_new", "c1_new"]
    else:
        other = network_transcript(dataclasses.replace(net, **variant), "v")
        keys = ["h1_new", "E_new"] if "update_biases" in variant else ["dE/db11", "b11_new"]
    report = check("two-layer-sigmoid", [claim_from(k, rounded(other.value(k), 5), "t") for k in keys])
    first, *later = report.verdicts
    assert first.kind == "convention"
    for v in report.verdicts:  # a later claim may also just inherit the first: then it says both
        assert not v.right and v.kind in ("convention", "carried"), v
        assert any(convention in d.en for d in v.diagnoses), [d.en for d in v.diagnoses]


@pytest.mark.parametrize("example, keys", [
    ("moons-logistic", ["L", "dL/dz1[0,0]", "dL/dW1[0,0]", "W1_new[0,0]"]),
    ("softmax-with-loss", ["L", "dL/dX[0,0]", "dL/dX[1,2]"]),
])
def test_loss_summed_over_the_batch_is_named(example, keys):
    """A learner who sums the loss over the batch instead of averaging gets that convention named."""
    summed = EXAMPLES[example].build_batch_sum()
    exact = EXAMPLES[example].build()
    assert all(summed.value(k) != exact.value(k) for k in keys[:2])  # the convention changes these
    report = check(example, [claim_from(k, rounded(summed.value(k), 5), "t") for k in keys])
    assert report.verdicts[0].kind == "convention"
    for v in report.verdicts:
        assert not v.right and v.kind in ("convention", "carried"), v
        assert any("summed over the batch" in d.en for d in v.diagnoses), [d.en for d in v.diagnoses]


def test_rounding_only_means_the_exact_value_rounded():
    exact = EXACT.value("dE/db22")  # 0.0809594...
    assert rounded(exact, 4) == "0.08096"
    v = check("two-layer-sigmoid", claims(dE__db22="0.08100")).verdicts[0]  # 0.0810 written with 5 decimals
    assert not v.right and v.kind == "rounding" and v.code == "rounded"
    assert "rounded to 4 decimals, written with 5" in v.diagnoses[0].en
    # a slip in the last digit agrees to 4 decimals but is not the exact value rounded: a wrong value
    v = check("two-layer-sigmoid", claims(dE__db22="0.08097")).verdicts[0]
    assert not v.right and v.code == "wrong_value" and not any("rounding" in d.en for d in v.diagnoses)


EDGE_NET = """
title = "edge"
loss = "squared-error"
learning_rate = 0.5
[inputs]
x1 = 1
[targets]
t1 = 0
[[layers]]
units = ["y"]
activation = "identity"
weights = [[{w}]]
bias = 0
"""


def _edge(tmp_path, w, written):
    path = tmp_path / "edge.toml"
    path.write_text(EDGE_NET.format(w=w), encoding="utf-8")
    return verdicts(check(str(path), claims(net_y=written)))["net_y"]


def test_tolerance_from_written_digits_at_the_edges(tmp_path):
    # exactly half way: 0.4585 may be written 0.458 or 0.459 (half a unit of the third decimal)
    assert _edge(tmp_path, "0.4585", "0.458").right
    assert _edge(tmp_path, "0.4585", "0.459").right
    assert not _edge(tmp_path, "0.4585", "0.457").right
    # just above half way only 0.459 is right; 0.458 is right to two decimals only
    assert _edge(tmp_path, "0.45851", "0.459").right
    wrong = _edge(tmp_path, "0.45851", "0.458")
    assert not wrong.right and wrong.kind == "rounding"
    assert parse_written("0.4580", "t")[1] == sp.Rational(1, 20000)
    assert parse_written("1.2e-3", "t") == (sp.Rational(12, 10000), sp.Rational(1, 20000), 4)
    assert parse_written("1/3", "t") == (sp.Rational(1, 3), 0, None)


def test_seed_001_printed_numbers():
    subject, cs = load_claims(SEED_CLAIMS)
    report = check(subject, cs)
    v = verdicts(report)
    right = {k for k, x in v.items() if x.right}
    assert right == {"h1", "h2", "b11_new", "b12_new", "b21_new", "a12_new", "a21_new", "a22_new", "c1_new"}
    assert any("rounded to 3 decimals" in d.en for d in v["E"].diagnoses)
    # 0.444 is not 0.44343 rounded: it follows from the rounded outputs 0.694 and 0.718
    assert v["E"].code == "carried_precision" and not any("rounding only" in d.en for d in v["E"].diagnoses)
    assert v["h1_new"].kind == "own"
    assert any("value of E" in d.en for d in v["E_new"].diagnoses)
    assert report.first_wrong == "E"


def test_cli_exit_status_and_formats(tmp_path, capsys):
    assert main(["check", "two-layer-sigmoid", "b11_new=0.458", "E=0.4434"]) == 0
    assert main(["check", str(SEED_CLAIMS), "--format", "json"]) == 1
    assert '"first_wrong": "E"' in capsys.readouterr().out
    assert main(["check", str(SEED_CLAIMS), "--format", "md", "--lang", "zh"]) == 1
    out = capsys.readouterr().out
    assert "❌" in out and "✅" in out and "第一个出错的步骤" in out
    assert main(["check", "two-layer-sigmoid", "b11_nwe=0.458"]) == 2
    assert "closest names: b11_new" in capsys.readouterr().err


@pytest.mark.parametrize("text, expected", [
    ('example = "two-layer-sigmoid"\n[claims]\nb11_new = "0.45a"\n', ["line 3", "'0.45a' is not a number"]),
    ('example = "two-layer-sigmoid"\n[claims]\nb11_new = "__import__(\'os\')"\n', ["line 3", "is not a number"]),
    ('example = "two-layer-sigmoidd"\n[claims]\nb11_new = 0.458\n', ["no built-in example", "two-layer-sigmoid"]),
    ('network = "missing.toml"\n[claims]\nb11_new = 0.458\n', ["'missing.toml' does not exist"]),
    ('example = "two-layer-sigmoid"\n[claims]\nb11_new = true\n', ["line 3", "not a number"]),
    ('example = "two-layer-sigmoid"\n[claims\n', ["TOML syntax error", "line 2"]),
    ('[claims]\nb11_new = 0.458\n', ["say which example"]),
])
def test_bad_claims_files(tmp_path, text, expected):
    path = tmp_path / "claims.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SympropError) as info:
        subject, cs = load_claims(path)
        check(subject, cs)
    for part in expected:
        assert part in str(info.value), (part, str(info.value))


def test_numbers_written_as_toml_floats_keep_their_digits(tmp_path):
    path = tmp_path / "claims.toml"
    path.write_text('example = "two-layer-sigmoid"\n[claims]\nb12_new = 0.560\n'
                    '"dE/db22" = { value = 0.0810, tolerance = 0.001 }\n', encoding="utf-8")
    _, cs = load_claims(path)
    assert cs[0].written == "0.560" and cs[0].tolerance == sp.Rational(1, 2000)
    assert cs[1].written == "0.0810" and cs[1].tolerance == sp.Rational(1, 1000)
