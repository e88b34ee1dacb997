"""symprop grade EXERCISE SUBMISSIONS... [--out DIR]

Grades a class: each submission (a claims file per student, or a CSV file with a student
column and a column per quantity) is checked against the exercise, or against the student's
own variant when EXERCISE is the variants.toml that ``symprop variant`` wrote. Writes a
report per student, the class summary, a gradebook CSV, a results.json per student for
Gradescope's autograder and a picture of the scores.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from symprop.symbolic.errors import SympropError


def add_arguments(parser):
    parser.add_argument("exercise", help="an example name, a network, graph or net file, or the variants.toml "
                                         "written by symprop variant")
    parser.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                        help="claims files (.toml, one per student), CSV files (a row per student) or folders of them")
    parser.add_argument("--out", default="grades", metavar="DIR", help="where the reports go (default: grades)")
    parser.add_argument("--quantities", metavar="A,B,...",
                        help="the quantities graded, one mark each (default: every quantity any submission claims)")
    parser.add_argument("--student-column", metavar="NAME", help="the CSV column naming the student "
                        "(default: student, student_id, id, sid, name or email)")
    parser.add_argument("--credit", action="append", default=[], metavar="KIND=FRACTION",
                        help="marks for a verdict kind, e.g. rounding=1 or convention=0.5 (kinds: right, carried, "
                             "precision, rounding, convention, own, given, missing)")
    parser.add_argument("--workers", type=int, metavar="N", help="processes (default: every usable core)")
    parser.add_argument("--dask", metavar="ADDRESS", help="grade on this Dask scheduler (tcp://host:8786) "
                        "instead of local processes (needs the dask extra)")
    parser.add_argument("--gradescope", metavar="FILE", help="also write the one submission's results.json here "
                        "(inside Gradescope's autograder: /autograder/results/results.json)")


def _expand(paths) -> list[Path]:
    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".toml", ".csv") and p.is_file())
            if not found:
                raise SympropError(f"{path}: no claims (.toml) or CSV files in this folder")
            files += found
        elif not path.exists():
            raise SympropError(f"{path}: no such submission file")
        else:
            files.append(path)
    return files


def _credit(pairs) -> dict:
    from symprop.symbolic.grading import CREDIT

    credit = dict(CREDIT)
    for pair in pairs:
        kind, _, value = pair.partition("=")
        if kind not in credit:
            raise SympropError(f"--credit {pair}: unknown kind {kind!r} (kinds: {', '.join(credit)})")
        try:
            fraction = float(value)
        except ValueError:
            fraction = -1.0
        if not 0 <= fraction <= 1:
            raise SympropError(f"--credit {pair}: the marks must be a number from 0 to 1")
        credit[kind] = fraction
    return credit


def _dask_client(address):
    try:
        from distributed import Client
    except ImportError:
        raise SympropError("--dask needs Dask: pip install 'symprop[dask]'") from None
    return Client(address)


def run(args) -> int:
    from symprop.symbolic import grading, grading_report, variants

    credit = _credit(args.credit)
    if args.workers is not None and args.workers < 1:
        raise SympropError("--workers must be at least 1")
    grading.require_exercise(args.exercise)
    files = _expand(args.submissions)
    own_variant = variants.read_manifest(args.exercise)[1] if variants.is_manifest(args.exercise) else None
    names_from = next(iter(own_variant.values())) if own_variant else args.exercise
    quantities_of = grading.exercise_quantities(names_from)
    submissions, ignored = grading.read_submissions(files, quantities_of, args.student_column)
    if args.quantities:
        quantities = []
        for name in args.quantities.split(","):
            key = grading.resolve_name(name.strip(), quantities_of)
            if key is None:
                raise SympropError(f"--quantities: {args.exercise} has no value named {name.strip()!r}")
            quantities.append(key)
    else:
        quantities = grading.graded_quantities(names_from, submissions)
    if not quantities:
        raise SympropError("no submission claims a quantity of the exercise; nothing to grade")
    items, unmatched = [], []
    by_folded = {}  # a form may write "ann lee" for the roster's "Ann Lee"
    for student, path in (own_variant or {}).items():
        by_folded.setdefault(" ".join(student.casefold().split()), []).append(path)
    for s in submissions:
        folded = by_folded.get(" ".join(s.student.casefold().split()), [])
        if own_variant is None:
            items.append((args.exercise, s))
        elif s.student in own_variant:
            items.append((own_variant[s.student], s))
        elif len(folded) == 1:
            items.append((folded[0], s))
        else:
            unmatched.append(s)
    client = _dask_client(args.dask) if args.dask else None
    try:
        results = grading.grade_class(items, quantities, credit, workers=args.workers, dask_client=client)
    finally:
        if client is not None:
            client.close()
    for s in unmatched:  # graded as nothing answered, with the reason
        empty = grading.Submission(s.student, s.source, [], [f"{s.source}: no variant for {s.student!r} in {args.exercise}"])
        results.append(grading.grade_submission(names_from, empty, quantities, credit))
    order = {s.student: i for i, s in enumerate(submissions)}
    results.sort(key=lambda r: order[r.student])
    summary = grading.summarize(args.exercise, quantities, results, ignored)
    written = grading_report.write_class(summary, args.out)
    if args.gradescope:
        if len(results) != 1:
            raise SympropError(f"--gradescope writes one submission's results.json; got {len(results)} submissions "
                               f"(each student's is in {written['gradescope']})")
        Path(args.gradescope).write_text(json.dumps(grading_report.gradescope_results(results[0]), indent=2) + "\n",
                                         encoding="utf-8")
    print(grading_report._stats(summary))
    for row in grading_report.mistake_rows(summary, limit=5):
        print(f"  {row[0]}: {row[1]}: {row[2]}")
    if "picture" not in written:
        print("symprop: the score picture needs matplotlib (pip install 'symprop[train]'); skipped", file=sys.stderr)
    problems = sum(len(r.problems) for r in results)
    if problems:
        print(f"symprop: {problems} claims not checked (unknown names, not numbers); see the student reports",
              file=sys.stderr)
    print(f"Reports in {args.out}/: summary.md (and .html, .json), gradebook.csv, students/, gradescope/")
    return 0
