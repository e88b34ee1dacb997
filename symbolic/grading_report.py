"""What ``symprop grade`` writes: a report per student (Markdown, HTML, JSON), the class
summary, a gradebook CSV, Gradescope's ``results.json`` and a picture of the scores.

Everything a student typed (their name, a claim's name or value, a problem quoting it) is
escaped before it lands in Markdown or HTML, so a submission cannot inject markup into the
pages a teacher opens or hands back.
"""
from __future__ import annotations

import csv
import html
import io
import json
import re
import statistics
from pathlib import Path
from collections import Counter

from .grading import ClassSummary, StudentResult
from .html_page import STYLE

VERDICT = {"right": "right", "carried": "right for your own earlier values (error carried forward)",
           "precision": "right for your own rounded earlier values", "rounding": "rounding",
           "convention": "another convention", "own": "wrong", "given": "given value differs",
           "missing": "not answered"}


def md_escape(text: str) -> str:
    """User text safe inside Markdown (and inside a table cell): HTML characters as entities,
    Markdown's punctuation backslash-escaped, line breaks as spaces."""
    text = html.escape(str(text), quote=False)
    text = re.sub(r"([\\`*_\[\]|$~])", r"\\\1", text)  # emphasis, code, links, cells, math
    return " ".join(text.split())


def _points(x: float) -> str:
    return f"{x:g}"


# --- one student -----------------------------------------------------------------------------------

def student_json(r: StudentResult) -> dict:
    return {"student": r.student, "source": r.source, "exercise": r.exercise, "score": r.score,
            "max_score": r.max_score, "first_wrong": r.first_wrong, "problems": r.problems,
            "quantities": [{"name": m.key, "claimed": m.written, "exact": m.exact, "kind": m.kind, "code": m.code,
                            "diagnosis": m.diagnosis, "credit": m.credit} for m in r.marks]}


def student_markdown(r: StudentResult) -> str:
    lines = [f"# {md_escape(r.student)}: {_points(r.score)} of {_points(r.max_score)}", "",
             f"Exercise: {md_escape(Path(r.exercise).name)}. A step done right on your own earlier (wrong) values "
             "earns its marks.", "",
             "| quantity | your answer | exact | verdict | marks | diagnosis |", "|---|---|---|---|---|---|"]
    for m in r.marks:
        answer = md_escape(m.written) if m.written is not None else "—"
        lines.append(f"| {md_escape(m.key)} | {answer} | {md_escape(m.exact)} | {md_escape(VERDICT[m.kind])} "
                     f"| {_points(m.credit)} | {md_escape(m.diagnosis)} |")
    if r.first_wrong:
        lines += ["", f"First wrong step: {md_escape(r.first_wrong)}."]
    if r.problems:
        lines += ["", "Not checked:", ""] + [f"- {md_escape(p)}" for p in r.problems]
    return "\n".join(lines) + "\n"


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    """A table of plain text cells, every cell escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def student_html(r: StudentResult) -> str:
    e = html.escape
    parts = [f"<h1>{e(r.student)}: {_points(r.score)} of {_points(r.max_score)}</h1>",
             f"<p>Exercise: {e(Path(r.exercise).name)}. A step done right on your own earlier (wrong) values earns its marks.</p>",
             _html_table(["quantity", "your answer", "exact", "verdict", "marks", "diagnosis"],
                         [[m.key, m.written if m.written is not None else "—", m.exact, VERDICT[m.kind],
                           _points(m.credit), m.diagnosis] for m in r.marks])]
    if r.first_wrong:
        parts.append(f"<p>First wrong step: {e(r.first_wrong)}.</p>")
    if r.problems:
        parts.append("<p>Not checked:</p><ul>" + "".join(f"<li>{e(p)}</li>" for p in r.problems) + "</ul>")
    return _page(f"{r.student}: {_points(r.score)} of {_points(r.max_score)}", "\n".join(parts))


def gradescope_results(r: StudentResult) -> dict:
    """Gradescope's autograder results.json for one submission: the total score and one test
    per quantity (its marks, and the verdict as the test's output)."""
    tests = []
    for number, m in enumerate(r.marks, 1):
        output = f"your answer: {m.written if m.written is not None else '(none)'}; verdict: {VERDICT[m.kind]}"
        if m.diagnosis:
            output += f"; {m.diagnosis}"
        tests.append({"name": m.key, "number": str(number), "score": m.credit, "max_score": 1.0,
                      "status": "passed" if m.credit >= 1 else "failed", "output": output,
                      "output_format": "text", "tags": [m.code]})
    summary = f"{_points(r.score)} of {_points(r.max_score)} marks."
    if r.first_wrong:
        summary += f" First wrong step: {r.first_wrong}."
    if r.problems:
        summary += " Not checked: " + " ".join(r.problems)
    return {"score": r.score, "output": summary, "output_format": "text", "tests": tests}


# --- the class --------------------------------------------------------------------------------------

def gradebook_csv(summary: ClassSummary) -> str:
    """One row per student: the total, then the marks of each quantity (spreadsheet-ready)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["student", "score", "max_score", *summary.quantities])
    for r in summary.results:
        writer.writerow([_spreadsheet_safe(r.student), _points(r.score), _points(r.max_score),
                         *[_points(m.credit) for m in r.marks]])
    return out.getvalue()


def _spreadsheet_safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (=, +, -, @ at the start)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _share(n: int, total: int) -> str:
    return f"{n} ({100 * n / total:.0f}%)" if total else "0"


def quantity_rows(summary: ClassSummary) -> list[list[str]]:
    n = summary.students
    rows = []
    for key in summary.quantities:
        kinds = summary.per_quantity[key]
        ecf = kinds["carried"] + kinds["precision"]
        wrong = n - kinds["right"] - ecf - kinds["missing"]
        rows.append([key, _share(kinds["right"], n), _share(kinds["right"] + ecf, n), _share(wrong, n),
                     _share(kinds["missing"], n)])
    return rows


QUANTITY_HEADERS = ["quantity", "right", "full marks (with error carried forward)", "wrong", "not answered"]
MISTAKE_HEADERS = ["students", "quantity", "diagnosis", "code"]


def mistake_rows(summary: ClassSummary, limit: int = 20) -> list[list[str]]:
    return [[f"{len(m.students)} of {summary.students}", m.key, m.text, m.code] for m in summary.mistakes[:limit]]


def score_histogram(summary: ClassSummary, bins: int = 10) -> list[tuple[str, int]]:
    """(marks, students), highest marks first: each score when there are at most 20 different
    ones, else ``bins`` equal ranges [low, high) of the marks (the last includes full marks)."""
    scores = Counter(summary.scores)
    if len(scores) <= 20:
        return [(_points(score), n) for score, n in sorted(scores.items(), reverse=True)]
    top = max((r.max_score for r in summary.results), default=0.0) or 1.0
    counts = [0] * bins
    for s in summary.scores:
        counts[min(bins - 1, int(s / top * bins))] += 1
    ranges = [f"{_points(top * i / bins)} to {_points(top * (i + 1) / bins)}{']' if i == bins - 1 else ')'}"
              for i in range(bins)]
    return [("[" + r, c) for r, c in zip(ranges, counts)][::-1]


def _stats(summary: ClassSummary) -> str:
    scores = summary.scores
    if not scores:
        return "No submissions."
    top = summary.results[0].max_score
    return (f"{summary.students} students, {len(summary.quantities)} quantities. Mean {statistics.mean(scores):.1f} "
            f"of {_points(top)}, median {_points(statistics.median(scores))}, "
            f"{sum(s == top for s in scores)} with full marks.")


def summary_markdown(summary: ClassSummary, picture: str | None = None) -> str:
    lines = [f"# Class summary: {md_escape(summary.exercise)}", "", md_escape(_stats(summary)), "",
             "## Mistakes, by how many students made them", "",
             "Only a step's own mistakes count here: a step that is right for a student's own earlier "
             "(wrong) values is carried forward and earns its marks.", ""]
    if summary.mistakes:
        lines += ["| " + " | ".join(MISTAKE_HEADERS) + " |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in mistake_rows(summary)]
    else:
        lines.append("None: every answer is right or carried forward.")
    lines += ["", "## Each quantity", "", "| " + " | ".join(QUANTITY_HEADERS) + " |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in quantity_rows(summary)]
    lines += ["", "## Scores", ""]
    if picture:
        lines += [f"![score distribution]({picture})", ""]
    lines += ["| marks | students |", "|---|---|"] + [f"| {r} | {c} |" for r, c in score_histogram(summary)]
    if summary.ignored_columns:
        lines += ["", "Columns that name no quantity (ignored): " + ", ".join(md_escape(c) for c in summary.ignored_columns)]
    return "\n".join(lines) + "\n"


def summary_html(summary: ClassSummary, picture: str | None = None) -> str:
    e = html.escape
    parts = [f"<h1>Class summary: {e(summary.exercise)}</h1>", f"<p>{e(_stats(summary))}</p>",
             "<h2>Mistakes, by how many students made them</h2>",
             "<p>Only a step's own mistakes count here: a step that is right for a student's own earlier "
             "(wrong) values is carried forward and earns its marks.</p>",
             _html_table(MISTAKE_HEADERS, mistake_rows(summary)) if summary.mistakes
             else "<p>None: every answer is right or carried forward.</p>",
             "<h2>Each quantity</h2>", _html_table(QUANTITY_HEADERS, quantity_rows(summary)), "<h2>Scores</h2>"]
    if picture:
        parts.append(f'<p><img src="{e(picture)}" alt="score distribution" width="640"></p>')
    parts.append(_html_table(["marks", "students"], [[r, str(c)] for r, c in score_histogram(summary)]))
    if summary.ignored_columns:
        parts.append("<p>Columns that name no quantity (ignored): " + e(", ".join(summary.ignored_columns)) + "</p>")
    return _page(f"Class summary: {summary.exercise}", "\n".join(parts))


def summary_json(summary: ClassSummary) -> dict:
    n = summary.students
    return {"exercise": summary.exercise, "students": n, "quantities": summary.quantities,
            "scores": {r.student: r.score for r in summary.results},
            "mistakes": [{"quantity": m.key, "code": m.code, "diagnosis": m.text, "students": len(m.students),
                          "of": n, "who": m.students} for m in summary.mistakes],
            "per_quantity": {k: dict(c) for k, c in summary.per_quantity.items()},
            "histogram": [{"marks": r, "students": c} for r, c in score_histogram(summary)],
            "ignored_columns": summary.ignored_columns}


def draw_scores(summary: ClassSummary, path) -> bool:
    """The score distribution as a PNG (matplotlib, from the train or draw extra); False when
    matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    top = summary.results[0].max_score if summary.results else 1.0
    counts = Counter(summary.scores)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    halves = any(score != int(score) for score in counts)  # partial credit: bars half a mark apart
    ax.bar(list(counts), list(counts.values()), width=0.4 if halves else 0.8, color="#4c72b0")
    ax.set_xlim(-0.5, top + 0.5)
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # students come whole
    ax.set_xlabel(f"marks (of {_points(top)})")
    ax.set_ylabel("students")
    ax.set_title(f"Scores: {summary.exercise} ({summary.students} students)")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return True


def student_file_name(student: str, taken: set) -> str:
    """A file name from a student's name: letters, digits, '-', '_' and '.'; unique."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", student).strip("._") or "student"
    name, n = base, 2
    while name.lower() in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name.lower())
    return name


def write_class(summary: ClassSummary, out_dir, formats=("md", "html", "json")) -> dict:
    """Every output in ``out_dir``: students/NAME.{md,html,json}, gradescope/NAME/results.json,
    summary.{md,html,json}, gradebook.csv and scores.png. Returns {what: path}."""
    out = Path(out_dir)
    (out / "students").mkdir(parents=True, exist_ok=True)
    taken: set = set()
    for r in summary.results:
        name = student_file_name(r.student, taken)
        if "md" in formats:
            (out / "students" / f"{name}.md").write_text(student_markdown(r), encoding="utf-8")
        if "html" in formats:
            (out / "students" / f"{name}.html").write_text(student_html(r), encoding="utf-8")
        if "json" in formats:
            (out / "students" / f"{name}.json").write_text(json.dumps(student_json(r), indent=2, ensure_ascii=False) + "\n",
                                                           encoding="utf-8")
        gradescope = out / "gradescope" / name
        gradescope.mkdir(parents=True, exist_ok=True)
        (gradescope / "results.json").write_text(json.dumps(gradescope_results(r), indent=2, ensure_ascii=False) + "\n",
                                                 encoding="utf-8")
    written = {"students": out / "students", "gradescope": out / "gradescope"}
    picture = "scores.png" if draw_scores(summary, out / "scores.png") else None
    if picture:
        written["picture"] = out / picture
    (out / "summary.md").write_text(summary_markdown(summary, picture), encoding="utf-8")
    (out / "summary.html").write_text(summary_html(summary, picture), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(summary_json(summary), indent=2, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    (out / "gradebook.csv").write_text(gradebook_csv(summary), encoding="utf-8")
    written.update(summary=out / "summary.md", gradebook=out / "gradebook.csv")
    return written
