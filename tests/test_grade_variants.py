"""symprop variant: each student's own numbers (readable, unsaturated, untied, reproducible)
and the answer key; symprop grade checks each student against their own variant."""
import csv
import re
from decimal import Decimal

import pytest
import sympy as sp

from symprop.cli import main
from symprop.symbolic import variants
from symprop.symbolic.errors import SympropError
from symprop.symbolic.examples import get_transcript
from symprop.symbolic.userfiles import parse_toml

STUDENTS = ["ann", "bob", "cy", "dee", "eli", "fay"]


@pytest.fixture
def roster(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text("Email,Student\n" + "".join(f"{s}@uni.example,{s}\n" for s in STUDENTS))
    return path


def _given_numbers(path):
    data = parse_toml(path.read_text(), str(path))
    numbers = [*data["inputs"].values(), *data["targets"].values()]
    for layer in data["layers"]:
        numbers += [x for row in layer["weights"] for x in row] + [layer["bias"]]
    return numbers


def test_variants_are_reproducible_readable_unsaturated_and_untied(tmp_path, roster):
    assert main(["variant", "mazur-2-2-2", "--students", str(roster), "--seed", "11", "--out", str(tmp_path / "a")]) == 0
    assert main(["variant", "mazur-2-2-2", "--students", str(roster), "--seed", "11", "--out", str(tmp_path / "b")]) == 0
    assert main(["variant", "mazur-2-2-2", "--students", str(roster), "--seed", "12", "--out", str(tmp_path / "c")]) == 0
    sheets = {}
    for student in STUDENTS:
        text = (tmp_path / "a" / f"{student}.toml").read_text()
        assert text == (tmp_path / "b" / f"{student}.toml").read_text()  # same roster and seed: same sheet
        assert text != (tmp_path / "c" / f"{student}.toml").read_text()
        numbers = _given_numbers(tmp_path / "a" / f"{student}.toml")
        assert len(set(numbers)) == len(numbers)  # no two given numbers tied
        assert all(re.fullmatch(r"-?\d+\.\d{1,2}", repr(x)) for x in numbers), numbers  # readable: two decimals
        sheets[student] = tuple(numbers)
        t = get_transcript(str(tmp_path / "a" / f"{student}.toml"))
        for unit in ("h1", "h2", "o1", "o2"):  # no saturated sigmoid
            assert sp.Rational(1, 20) <= sp.N(t.value(unit)) <= sp.Rational(19, 20)
    assert len(set(sheets.values())) == len(STUDENTS)  # nobody shares a sheet
    key = list(csv.DictReader((tmp_path / "a" / "answer-key.csv").open()))
    assert [row["student"] for row in key] == STUDENTS
    t = get_transcript(str(tmp_path / "a" / "bob.toml"))
    assert float(key[1]["dE/dw5"]) == pytest.approx(float(sp.N(t.value("dE/dw5"))), rel=1e-9)


def test_saturation_and_kinks_are_seen():
    t = get_transcript("relu-layer")  # X has no zero entry: not at the kink
    assert variants._saturated_or_at_kink(t) is None
    from symprop.symbolic.networkfile import parse_network
    from symprop.symbolic.network_transcript import network_transcript

    text = variants.exercise_source("mazur-2-2-2")[0].replace("bias = 0.60", "bias = 6.0")
    saturated = network_transcript(parse_network(text, "m.toml"), "m")
    assert "saturated sigmoid" in variants._saturated_or_at_kink(saturated)


def test_toml_writer_round_trips():
    from fractions import Fraction

    data = {"title": 'a "quoted" title', "steps": 1, "update": False, "x": Fraction(-7, 100),
            "inputs": {"i1": Fraction(5, 100), "odd key": 2}, "layers": [{"weights": [[Fraction(1, 4), 3]], "units": ["h1"]}]}
    back = parse_toml(variants.to_toml(data, "header"), "t")
    assert back == {"title": 'a "quoted" title', "steps": 1, "update": False, "x": -0.07,
                    "inputs": {"i1": 0.05, "odd key": 2}, "layers": [{"weights": [[0.25, 3]], "units": ["h1"]}]}


def _claims_file(path, values: dict, student=None):
    head = f'student = "{student}"\n' if student else ""
    path.write_text(head + "[claims]\n" + "".join(f'"{k}" = "{v}"\n' for k, v in values.items()))


def test_grade_matches_each_submission_to_its_variant(tmp_path, roster):
    out = tmp_path / "v"
    assert main(["variant", "mazur-2-2-2", "--students", str(roster), "--seed", "3", "--out", str(out)]) == 0
    key = {row["student"]: row for row in csv.DictReader((out / "answer-key.csv").open())}
    asked = ["h1", "o1", "E", "dE/dw5", "w5_new", "dE/dw1"]
    digits = lambda v: format(Decimal(v), ".6g")  # noqa: E731 - six significant digits, as a student writes
    subs = tmp_path / "subs"
    subs.mkdir()
    _claims_file(subs / "ann.toml", {q: digits(key["ann"][q]) for q in asked})
    _claims_file(subs / "b.toml", {q: digits(key["ann"][q]) for q in asked}, student="bob")  # bob copied ann's sheet
    _claims_file(subs / "zed.toml", {q: digits(key["ann"][q]) for q in asked})  # not on the roster
    _claims_file(subs / "c.toml", {q: digits(key["cy"][q]) for q in asked}, student=" CY ")  # as a form writes it
    assert main(["grade", str(out / "variants.toml"), str(subs), "--out", str(tmp_path / "g"), "--workers", "1"]) == 0
    book = {row[0]: row for row in csv.reader((tmp_path / "g" / "gradebook.csv").open())}
    assert float(book["ann"][1]) == len(asked)
    assert float(book["bob"][1]) < 2  # ann's numbers are wrong for bob's variant
    assert float(book["zed"][1]) == 0
    assert float(book["CY"][1]) == len(asked)  # matched to cy's variant
    assert "no variant for 'zed'" in (tmp_path / "g" / "students" / "zed.md").read_text()


def test_roster_mistakes_are_named(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("student\nann\nann\n")
    with pytest.raises(SympropError, match=r"r.csv, line 3: 'ann' is listed twice"):
        variants.read_roster(path)
    path.write_text("who\nann\n")
    with pytest.raises(SympropError, match="no student column"):
        variants.read_roster(path)
    assert variants.read_roster(path, "who") == ["ann"]


@pytest.mark.parametrize("command", [["variant", "mazur-2-2", "--students", "r.csv", "--seed", "1"],
                                     ["grade", "mazur-2-2", "a.toml"]])
def test_an_unknown_exercise_is_named(command, capsys):
    assert main(command) == 2
    assert "no example named 'mazur-2-2' (did you mean mazur-2-2-2" in capsys.readouterr().err
