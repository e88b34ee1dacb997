"""symprop grade: marks with error carried forward, the class's mistakes ranked, submissions
from claims files and CSV exports, escaped reports, Gradescope's results.json, Dask."""
import csv
import re
import json

import pytest

from symprop.benchmarks.grading import EXERCISE, MISTAKES, QUANTITIES, planted_class
from symprop.cli import main
from symprop.symbolic import grading, grading_report
from symprop.symbolic.errors import SympropError
from symprop.symbolic.grading import Submission, grade_class, grade_submission, summarize


@pytest.fixture(scope="module")
def planted():
    """A class of 120 with four planted mistakes, graded on two processes."""
    submissions, who = planted_class(120, seed=3)
    results = grade_class([(EXERCISE, s) for s in submissions], QUANTITIES, workers=2)
    return submissions, who, results, summarize(EXERCISE, QUANTITIES, results)


def test_planted_mistakes_rank_first_with_their_counts(planted):
    submissions, who, results, summary = planted
    assert len(results) == 120 and [r.student for r in results] == [s.student for s in submissions]
    ranked = [((m.key, m.code), set(m.students)) for m in summary.mistakes]
    expected = sorted(who.items(), key=lambda item: -len(item[1]))
    assert len({len(s) for s in who.values()}) == len(who)  # distinct counts: the order is defined
    assert ranked[:len(who)] == expected
    assert ranked[len(who):] == []  # nothing else was planted, and a carried-forward step is no mistake
    top = summary.mistakes[0]
    text = grading_report.summary_markdown(summary)
    assert f"| {len(top.students)} of 120 | do1/dnet\\_o1 |" in text and "net input" in text


def test_error_carried_forward_earns_the_marks(planted):
    """Each planted mistake costs its own step only: every later step, computed from the
    student's own wrong value, is carried forward and earns full marks."""
    submissions, who, results, _ = planted
    for r in results:
        made = [m for m in MISTAKES if r.student in who[MISTAKES[m][:2]]]
        assert r.score == len(QUANTITIES) - len(made), r.student
        lost = {m.key for m in r.marks if m.credit < 1}
        assert lost == {MISTAKES[m][0] for m in made}
    sigmoid = next(r for r in results if r.student in who[MISTAKES["sigmoid_at_net"][:2]])
    kinds = {m.key: m.kind for m in sigmoid.marks}
    assert kinds["do1/dnet_o1"] == "convention" and kinds["dE/dnet_o1"] == "carried" and kinds["w5_new"] == "carried"


def test_credit_per_kind_and_missing_quantities():
    claims = [("h1", "0.5933", None, "a"), ("net_o1", "1.106", None, "b"), ("E", "0.29", None, "c")]
    r = grade_submission(EXERCISE, Submission("ann", "ann.toml", claims), ["h1", "net_o1", "E", "o1"])
    marks = {m.key: m for m in r.marks}
    assert marks["h1"].kind == "right" and marks["h1"].credit == 1
    assert marks["E"].kind == "rounding" and marks["E"].credit == 0.5  # 0.2983... cut to 0.29
    assert marks["o1"].kind == "missing" and marks["o1"].credit == 0 and marks["o1"].written is None
    strict = grade_submission(EXERCISE, Submission("ann", "ann.toml", claims), ["E"], {**grading.CREDIT, "rounding": 0})
    assert strict.score == 0


def test_a_bad_claim_is_a_problem_of_that_student_only():
    claims = [("h1", "0.5933", None, "ann.toml, claim 'h1'"), ("h2", "zero point six", None, "ann.toml, claim 'h2'"),
              ("nonsense", "1.0", None, "ann.toml, claim 'nonsense'")]
    r = grade_submission(EXERCISE, Submission("ann", "ann.toml", claims), ["h1", "h2"])
    assert [m.credit for m in r.marks] == [1.0, 0.0]
    assert len(r.problems) == 2 and "ann.toml, claim 'h2'" in r.problems[0] and "'nonsense'" in r.problems[1]


def test_same_answers_are_checked_once_but_reported_per_student(monkeypatch):
    claims = [("h1", "0.59", None, "x")]
    items = [(EXERCISE, Submission(name, f"{name}.toml", list(claims))) for name in ("a", "b", "c")]
    calls = []
    original = grading.grade_chunk
    monkeypatch.setattr(grading, "grade_chunk", lambda chunk, *a: calls.append(len(chunk)) or original(chunk, *a))
    results = grade_class(items, ["h1"], workers=1)
    assert calls == [1] and [r.student for r in results] == ["a", "b", "c"]
    assert [r.source for r in results] == ["a.toml", "b.toml", "c.toml"]


# --- reading submissions ---------------------------------------------------------------------------

def test_claims_file_keeps_written_digits_and_student_field(tmp_path):
    path = tmp_path / "s1.toml"
    path.write_text('student = "Ann Lee"\nexample = "mazur-2-2-2"\n[claims]\nh1 = 0.5930\n"dE/dw5" = "0.0822"\n'
                    'E = { value = "0.3", tolerance = 0.01 }\n')
    s = grading.read_claims_file(path)
    assert s.student == "Ann Lee"
    assert [(c[0], c[1], c[2]) for c in s.claims] == [("h1", "0.5930", None), ("dE/dw5", "0.0822", None), ("E", "0.3", "0.01")]
    r = grade_submission(EXERCISE, s, ["h1", "dE/dw5", "E"])
    assert [m.kind for m in r.marks] == ["rounding", "right", "right"]  # 0.5930 claims 4 decimals: 0.59327 is not it


def test_csv_export(tmp_path):
    quantities = grading.exercise_quantities(EXERCISE)
    path = tmp_path / "form.csv"
    path.write_text("\ufeffTimestamp,Email,Student,h1,out_h2,E_total\n"
                    "2026-01-05,a@x,ann,0.5933,0.5969,0.2984\n"
                    "2026-01-05,b@x,bob,0.5933,,0.29\n", encoding="utf-8")
    submissions, ignored = grading.read_submissions([path], quantities)
    assert ignored == ["Timestamp", "Email"]
    assert [s.student for s in submissions] == ["ann", "bob"]
    assert [c[:2] for c in submissions[1].claims] == [("h1", "0.5933"), ("E_total", "0.29")]
    assert submissions[1].claims[0][3].endswith("form.csv, line 3, column 'h1'")
    wanted = grading.graded_quantities(EXERCISE, submissions)
    assert wanted == ["h1", "h2", "E"]
    results = grade_class([(EXERCISE, s) for s in submissions], wanted, workers=1)
    assert [r.score for r in results] == [3.0, 1.5]  # bob: h2 not answered, E cut off (0.29 for 0.2984)


@pytest.mark.parametrize("text, message", [
    ("who,h1\nann,0.59\n", "no student column"),
    ("student,h1\nann,0.59\nann,0.6\n", "line 3: student 'ann' has a second row (the first is line 2)"),
    ("student,h1\n,0.59\n", "line 2: the student column 'student' is empty"),
])
def test_csv_mistakes_are_named(tmp_path, text, message):
    path = tmp_path / "c.csv"
    path.write_text(text)
    with pytest.raises(SympropError, match=re.escape(message)):
        grading.read_submissions([path], grading.exercise_quantities(EXERCISE))


# --- reports ---------------------------------------------------------------------------------------

HOSTILE = "<img src=x onerror=alert(1)> *bold* | $x$"


def test_user_text_is_escaped_in_md_and_html():
    claims = [("h1", "0.5933", None, "a"), ("<b>h9</b>", "1", None, "<script>x</script>")]
    r = grade_submission(EXERCISE, Submission(HOSTILE, "<i>file</i>", claims), ["h1"])
    page = grading_report.student_html(r)
    assert "<img" not in page and "<script>" not in page and "<b>" not in page and "&lt;img src=x" in page
    md = grading_report.student_markdown(r)
    assert "<img" not in md and "<script>" not in md and "&lt;img" in md
    assert "\\*bold\\*" in md and "\\| \\$x\\$" in md
    summary = summarize(EXERCISE, ["h1"], [r])
    assert "<img" not in grading_report.summary_html(summary) and "<img" not in grading_report.summary_markdown(summary)
    assert grading_report.gradebook_csv(summarize(EXERCISE, ["h1"], [grading.dataclasses.replace(r, student="=cmd()")])
                                        ).splitlines()[1].startswith("'=cmd()")


# Gradescope's autograder results.json, as its documentation ("Autograder Specifications",
# output format) describes it: every field optional, but a score on the top level or on every test.
VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
FORMAT = {"enum": ["text", "html", "simple_format", "md", "ansi"]}
GRADESCOPE_SCHEMA = {
    "type": "object",
    "properties": {
        "score": {"type": "number"},
        "execution_time": {"type": "number"},
        "output": {"type": "string"},
        "output_format": FORMAT, "test_output_format": FORMAT, "test_name_format": FORMAT,
        "visibility": VISIBILITY, "stdout_visibility": VISIBILITY,
        "extra_data": {"type": "object"},
        "tests": {"type": "array", "items": {
            "type": "object",
            "properties": {
                "score": {"type": "number"}, "max_score": {"type": "number"},
                "status": {"enum": ["passed", "failed"]},
                "name": {"type": "string"}, "name_format": FORMAT, "number": {"type": "string"},
                "output": {"type": "string"}, "output_format": FORMAT,
                "tags": {"type": "array", "items": {"type": "string"}},
                "visibility": VISIBILITY, "extra_data": {"type": "object"},
            },
            "additionalProperties": False,
        }},
        "leaderboard": {"type": "array", "items": {
            "type": "object", "required": ["name", "value"],
            "properties": {"name": {"type": "string"}, "value": {"type": ["number", "string"]},
                           "order": {"enum": ["asc", "desc"]}},
        }},
    },
    "additionalProperties": False,
    "anyOf": [{"required": ["score"]},
              {"required": ["tests"], "properties": {"tests": {"items": {"required": ["score"]}}}}],
}


def test_gradescope_results_validate_against_the_documented_format(planted):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft7Validator(GRADESCOPE_SCHEMA)
    _, who, results, _ = planted
    for r in results[:10]:
        document = json.loads(json.dumps(grading_report.gradescope_results(r)))
        assert not list(validator.iter_errors(document)), r.student
        assert document["score"] == r.score == sum(t["score"] for t in document["tests"])
        assert sum(t["max_score"] for t in document["tests"]) == len(QUANTITIES)
    # the schema bites: what Gradescope would refuse is refused here
    for broken in ({"tests": [{"name": "h1"}]}, {"score": "39"}, {"score": 1, "tests": [{"score": 1, "status": "ok"}]},
                   {"score": 1, "visibility": "always"}):
        assert list(validator.iter_errors(broken)), broken


def test_cli_grades_a_folder_and_a_csv(tmp_path, capsys):
    submissions, who = planted_class(12, seed=5)
    folder = tmp_path / "subs"
    folder.mkdir()
    for s in submissions[:10]:
        lines = "".join(f'"{name}" = "{written}"\n' for name, written, _, _ in s.claims)
        (folder / f"{s.student}.toml").write_text(f'example = "{EXERCISE}"\n[claims]\n{lines}')
    table = tmp_path / "rest.csv"
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *QUANTITIES])
        for s in submissions[10:]:
            writer.writerow([s.student, *[w for _, w, _, _ in s.claims]])
    out = tmp_path / "out"
    assert main(["grade", EXERCISE, str(folder), str(table), "--out", str(out), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "12 students, 40 quantities" in printed
    book = list(csv.reader((out / "gradebook.csv").open()))
    assert book[0][:3] == ["student", "score", "max_score"] and len(book) == 13 and len(book[0]) == 43
    scores = {row[0]: float(row[1]) for row in book[1:]}
    for s in submissions:
        made = sum(s.student in students for students in who.values())
        assert scores[s.student] == 40 - made
    summary = json.loads((out / "summary.json").read_text())
    assert summary["students"] == 12 and summary["mistakes"][0]["of"] == 12
    for name in ("summary.md", "summary.html", "students/student0000.html", "students/student0011.json",
                 "gradescope/student0003/results.json"):
        assert (out / name).is_file(), name
    assert (out / "scores.png").read_bytes()[:4] == b"\x89PNG"
    single = tmp_path / "results.json"
    assert main(["grade", EXERCISE, str(folder / "student0001.toml"), "--out", str(tmp_path / "one"),
                 "--gradescope", str(single)]) == 0
    assert json.loads(single.read_text())["score"] == scores["student0001"]


def test_cli_refuses_bad_options(tmp_path, capsys):
    (tmp_path / "a.toml").write_text('[claims]\nh1 = "0.59"\n')
    assert main(["grade", EXERCISE, str(tmp_path / "a.toml"), "--credit", "rounding=2"]) == 2
    assert "--credit rounding=2: the marks must be a number from 0 to 1" in capsys.readouterr().err
    assert main(["grade", EXERCISE, str(tmp_path / "a.toml"), "--quantities", "h1,zz"]) == 2
    assert "no value named 'zz'" in capsys.readouterr().err
    assert main(["grade", EXERCISE, str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml: no such submission file" in capsys.readouterr().err


def test_grading_on_a_local_dask_cluster(planted, tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed (the dask extra)")
    submissions, _, results, _ = planted
    items = [(EXERCISE, s) for s in submissions[:24]]
    (tmp_path / "a.toml").write_text('[claims]\nh1 = "0.5933"\nE = "0.29"\n')
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        on_dask = grade_class(items, QUANTITIES, dask_client=client)
        assert main(["grade", EXERCISE, str(tmp_path / "a.toml"), "--out", str(tmp_path / "g"),
                     "--dask", cluster.scheduler_address]) == 0
    assert [(r.student, r.score, [m.code for m in r.marks]) for r in on_dask] == \
           [(r.student, r.score, [m.code for m in r.marks]) for r in results[:24]]
    assert (tmp_path / "g" / "gradebook.csv").read_text().splitlines()[1] == "a,1.5,2,1,0.5"


def test_the_teachers_session_in_docs_runs_as_written(tmp_path, capsys, monkeypatch):
    """docs/grading.md: its roster and form export, its commands, and the output it shows."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "grading.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(\w+)\n(.*?)```", doc, re.DOTALL)
    csvs = [text for kind, text in blocks if kind == "csv"]
    (tmp_path / "roster.csv").write_text(csvs[0])
    (tmp_path / "answers.csv").write_text(csvs[1])
    monkeypatch.chdir(tmp_path)
    shown = iter(text for kind, text in blocks if kind == "text")
    for kind, text in blocks:
        if kind == "sh" and text.startswith("symprop variant"):
            assert main(text.split()[1:]) == 0
            assert capsys.readouterr().out == next(shown)
        elif kind == "sh" and text.startswith("symprop grade mazur-2-2-2 answers.csv"):
            assert main(text.split()[1:]) == 0
            assert capsys.readouterr().out == next(shown)
    ben = (tmp_path / "grades" / "students" / "Ben_Okafor.md").read_text().replace("\\_", "_")
    for row in next(shown).splitlines()[1:]:
        assert row in ben


def test_without_matplotlib_the_picture_is_skipped_with_one_line(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    (tmp_path / "a.toml").write_text('[claims]\nh1 = "0.5933"\n')
    assert main(["grade", EXERCISE, str(tmp_path / "a.toml"), "--out", str(tmp_path / "g")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["symprop: the score picture needs matplotlib (pip install 'symprop[train]'); skipped"]
    assert not (tmp_path / "g" / "scores.png").exists()
    assert "![score distribution]" not in (tmp_path / "g" / "summary.md").read_text()


@pytest.mark.parametrize("exercise, right, wrong", [
    ("quadratic-model", {"y_hat": "3", "dl/dw1": "2", "w1_new": "0.98"}, {"dl/dw1": "-2"}),  # a graph file
    ("relu-layer", {"dL/dX[0,0]": "0.5", "dL/dX[1,1]": "0.25"}, {"dL/dX[1,1]": "0.5"}),  # a net file
])
def test_any_kind_of_exercise_file(tmp_path, exercise, right, wrong):
    from symprop.symbolic.variants import exercise_source

    path = tmp_path / f"{exercise}.toml"  # the teacher's own copy of the file
    path.write_text(exercise_source(exercise)[0])
    for name in (exercise, str(path)):
        quantities = [grading.resolve_name(k, grading.exercise_quantities(name)) for k in right]
        good = grade_submission(name, Submission("a", "a", [(k, v, None, k) for k, v in right.items()]), quantities)
        bad = grade_submission(name, Submission("b", "b", [(k, wrong.get(k, v), None, k) for k, v in right.items()]),
                               quantities)
        assert good.score == len(right) and bad.score == len(right) - len(wrong), name
