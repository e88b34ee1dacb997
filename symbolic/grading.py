"""Grading a class: every student's claims checked against one exercise (or against each
student's own variant of it), marks with error carried forward, and what the class got
wrong most often.

A submission is a claims file (one per student) or a row of a CSV file as a form or a
learning-management system exports it (a student column and one column per quantity). Each
is checked by the hand-calculation checker; its verdict kind decides the marks (``CREDIT``):
a step done right on the learner's own wrong inputs (``carried``, ``precision``) earns its
marks, so one slip costs one step, not every step after it.

Why processes: checking is exact rational arithmetic in SymPy, one core per submission; a
class is split into chunks graded by a process pool (or, for a course larger than one
machine, by a Dask cluster), each worker building the exercise once.
"""
from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
import io
import os
import re
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .checker import Subject, check, claim_from, parse_written, resolve_name
from .errors import SympropError
from .examples import EXAMPLES
from .transcript import rounded
from .userfiles import parse_toml, read_text

# marks earned per verdict kind (see checker.CODES): error carried forward earns full marks;
# "missing" is a graded quantity the submission does not give
CREDIT = {"right": 1.0, "carried": 1.0, "precision": 1.0, "rounding": 0.5,
          "convention": 0.0, "own": 0.0, "given": 0.0, "missing": 0.0}
# kinds that are the student's own mistake at that step (ranked in the class summary)
MISTAKE_KINDS = ("rounding", "convention", "own", "given")
STUDENT_COLUMNS = ("student", "student_id", "id", "sid", "name", "email")
CLAIMS_FILE_FIELDS = {"student", "example", "network", "graph", "net", "values", "tolerance", "claims"}


# --- submissions ---------------------------------------------------------------------------------

@dataclass
class Submission:
    """One student's claims as written: (name, value as written, tolerance as written or
    None, where) -- plain strings, so a submission travels to a worker process as it is."""

    student: str
    source: str  # the file (and row) it came from, for messages
    claims: list[tuple[str, str, str | None, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _written_number(lines: list[str], key: str) -> str | None:
    """The digits of ``key = 0.4580`` as written in the [claims] section (TOML's float would
    drop the trailing zero, which is part of the claimed precision)."""
    section = None
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        header = re.match(r"\[\s*([^\]]+?)\s*\]\Z", line)
        if header:
            section = header.group(1)
        elif section == "claims":
            match = re.match(r'(?:"([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_\-]+))\s*=\s*([-+0-9.eE_]+)\Z', line)
            if match and key in match.groups()[:3]:
                return match.group(4).replace("_", "")
    return None


def read_claims_file(path) -> Submission:
    """A claims file as a submission: the student is its ``student = "..."`` field or the
    file's name; the subject it names (example, network, ...) is not needed, the exercise is."""
    path = Path(path)
    text = read_text(path, "claims file")
    data = parse_toml(text, str(path))
    unknown = sorted(set(data) - CLAIMS_FILE_FIELDS)
    if unknown:
        raise SympropError(f"{path}: unknown field {unknown[0]!r} (known: {', '.join(sorted(CLAIMS_FILE_FIELDS))})")
    student = data.get("student", path.stem)
    if not isinstance(student, str) or not student.strip():
        raise SympropError(f"{path}: field 'student' must be a name in quotes")
    table = data.get("claims")
    if not isinstance(table, dict) or not table:
        raise SympropError(f"{path}: no [claims] section with name = value lines")
    default_tolerance = data.get("tolerance")
    if default_tolerance is not None and (isinstance(default_tolerance, bool)
                                          or not isinstance(default_tolerance, (int, float, str))):
        raise SympropError(f"{path}: field 'tolerance' must be a number")
    lines = text.splitlines()
    submission = Submission(student.strip(), str(path))
    for key, value in table.items():
        where = f"{path}, claim {key!r}"
        tolerance = default_tolerance
        if isinstance(value, dict):
            if "value" not in value or set(value) - {"value", "tolerance"}:
                submission.problems.append(f"{where}: write {key} = {{ value = \"0.458\", tolerance = 0.001 }}")
                continue
            tolerance, value = value.get("tolerance", tolerance), value["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            submission.problems.append(f"{where}: not a number: {value!r}")
            continue
        written = value if isinstance(value, str) else (_written_number(lines, key) or repr(value))
        submission.claims.append((key, written, None if tolerance is None else str(tolerance), where))
    return submission


def read_csv_submissions(path, quantities, student_column: str | None = None) -> tuple[list[Submission], list[str]]:
    """Each row of an exported CSV file as a submission: (submissions, ignored columns).
    Columns that name no quantity of the exercise (a timestamp, an e-mail) are ignored and
    listed; an empty cell is a quantity not answered."""
    path = Path(path)
    text = read_text(path, "submissions CSV file")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))  # a spreadsheet's byte-order mark
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise SympropError(f"{path}: empty; expected a header row (student, then one column per quantity)")
    header = [cell.strip() for cell in rows[0]]
    wanted = [student_column] if student_column else list(STUDENT_COLUMNS)
    lowered = [h.lower() for h in header]
    column = next((lowered.index(name.lower()) for name in wanted if name.lower() in lowered), None)
    if column is None:
        raise SympropError(f"{path}, line 1: no student column (looked for {', '.join(wanted)}; "
                           f"the header is {', '.join(header[:6])}{', ...' if len(header) > 6 else ''}); "
                           "name it with --student-column")
    claimed = {i: h for i, h in enumerate(header) if i != column and resolve_name(h, quantities)}
    ignored = [h for i, h in enumerate(header) if i != column and i not in claimed]
    submissions, seen = [], {}
    for line, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        student = row[column].strip() if column < len(row) else ""
        where = f"{path}, line {line}"
        if not student:
            raise SympropError(f"{where}: the student column {header[column]!r} is empty")
        if student in seen:
            raise SympropError(f"{where}: student {student!r} has a second row (the first is line {seen[student]})")
        seen[student] = line
        submission = Submission(student, where)
        for i, name in claimed.items():
            cell = row[i].strip() if i < len(row) else ""
            if cell:
                submission.claims.append((name, cell, None, f"{where}, column {name!r}"))
        submissions.append(submission)
    return submissions, ignored


def read_submissions(paths, quantities, student_column=None) -> tuple[list[Submission], list[str]]:
    """Claims files and CSV files, in the order given: (submissions, ignored CSV columns)."""
    submissions, ignored = [], []
    for path in paths:
        if str(path).lower().endswith(".csv"):
            more, skipped = read_csv_submissions(path, quantities, student_column)
            submissions += more
            ignored += [c for c in skipped if c not in ignored]
        else:
            try:
                submissions.append(read_claims_file(path))
            except SympropError as exc:  # one unreadable file: that student gets its message, the class is graded
                submissions.append(Submission(Path(path).stem, str(path), [], [str(exc)]))
    names = Counter(s.student for s in submissions)
    twice = [name for name, n in names.items() if n > 1]
    if twice:
        sources = [s.source for s in submissions if s.student == twice[0]]
        raise SympropError(f"student {twice[0]!r} has {names[twice[0]]} submissions ({', '.join(sources)}); "
                           "give each student one")
    return submissions, ignored


# --- the exercise --------------------------------------------------------------------------------

class _ReusedSubject(Subject):
    """A Subject checked against a whole class: its convention variants are built once per
    set of written decimals instead of once per submission."""

    def __init__(self, name):
        super().__init__(name)
        self._variant_cache = {}

    def variants(self, decimals):
        key = frozenset(decimals)
        if key not in self._variant_cache:
            self._variant_cache[key] = super().variants(decimals)
        return self._variant_cache[key]


def require_exercise(exercise: str):
    """An unknown example name or a missing file, refused in one line naming it."""
    if exercise not in EXAMPLES and not Path(exercise).exists():
        close = difflib.get_close_matches(exercise, EXAMPLES, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise SympropError(f"no example named {exercise!r}{hint} and no such file; an exercise is an example "
                           "name or a network, graph or net file")


@functools.lru_cache(maxsize=64)
def prepared(exercise: str):
    """(Subject, exact transcript) of an exercise, built once per process."""
    require_exercise(exercise)
    subject = _ReusedSubject(exercise)
    return subject, subject.build_exact()


def exercise_quantities(exercise: str) -> dict:
    """The exercise's quantities (key -> Quantity), for resolving column and claim names."""
    return prepared(exercise)[1].quantities


def graded_quantities(exercise: str, submissions: list[Submission]) -> list[str]:
    """The quantities any submission claims (single numbers only), in the transcript's order."""
    quantities = exercise_quantities(exercise)
    claimed = {resolve_name(name, quantities) for s in submissions for name, *_ in s.claims}
    return [k for k, q in quantities.items() if k in claimed and not hasattr(q.value, "shape")]


# --- grading -------------------------------------------------------------------------------------

@dataclass
class Mark:
    """One graded quantity of one student."""

    key: str
    written: str | None  # None: not answered
    exact: str
    kind: str  # a checker verdict kind, or "missing"
    code: str
    diagnosis: str  # the checker's first finding, in English ("" when right)
    credit: float


@dataclass
class StudentResult:
    student: str
    source: str
    exercise: str
    marks: list[Mark]
    problems: list[str]
    first_wrong: str | None

    @property
    def score(self) -> float:
        return sum(m.credit for m in self.marks)

    @property
    def max_score(self) -> float:
        return float(len(self.marks))


def _claims(submission: Submission, problems: list[str]):
    claims = []
    for name, written, tolerance, where in submission.claims:
        try:
            tol = None if tolerance is None else parse_written(tolerance, f"{where}, tolerance")[0]
            if tol is not None and tol < 0:
                raise SympropError(f"{where}: tolerance must not be negative")
            claims.append(claim_from(name, written, where, tol))
        except SympropError as exc:
            problems.append(str(exc))
    return claims


def grade_submission(exercise: str, submission: Submission, quantities: list[str],
                     credit: dict | None = None) -> StudentResult:
    """One submission checked and marked. Unusable claims (not a number, an unknown name)
    become problems of this student; the others are still checked."""
    credit = CREDIT if credit is None else credit
    subject, exact = prepared(exercise)
    problems = list(submission.problems)
    report = check(exercise, _claims(submission, problems), subject=subject, exact=exact)
    problems += report.problems
    verdicts = {v.key: v for v in report.verdicts}
    marks = []
    for key in quantities:
        v = verdicts.get(key)
        exact_text = rounded(exact.quantities[key].value, 10)
        if v is None:
            marks.append(Mark(key, None, exact_text, "missing", "missing", "", credit["missing"]))
            continue
        diagnosis = v.findings[0].text.en if v.findings and not v.right else ""
        marks.append(Mark(key, v.claim.written, exact_text, v.kind, v.code, diagnosis, float(credit[v.kind])))
    return StudentResult(submission.student, submission.source, exercise, marks, problems, report.first_wrong)


def grade_chunk(items: list[tuple[str, Submission]], quantities: list[str], credit: dict | None = None) -> list[StudentResult]:
    """A list of (exercise, submission) graded in this process: what a pool worker or a Dask
    task runs. Picklable in and out."""
    return [grade_submission(exercise, submission, quantities, credit) for exercise, submission in items]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _chunks(items: list, pieces: int) -> list[list]:
    """Consecutive chunks (a student's variant exercise is built once per chunk that holds it)."""
    size = max(1, -(-len(items) // pieces))
    return [items[i:i + size] for i in range(0, len(items), size)]


def _pool_context():
    """fork where it is safe (Linux): workers start with the exercise already built."""
    import multiprocessing

    if sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _same_answers(exercise: str, submission: Submission) -> tuple:
    """What a submission's verdicts depend on: the exercise and each claim as written."""
    return exercise, tuple((name, written, tolerance) for name, written, tolerance, _ in submission.claims)


def grade_class(items: list[tuple[str, Submission]], quantities: list[str], credit: dict | None = None,
                workers: int | None = None, dask_client=None) -> list[StudentResult]:
    """Every (exercise, submission) graded, results in the order given: on every usable core
    (``workers`` processes), or on the workers of a Dask ``distributed.Client``. Submissions
    with the same answers (students who made the same mistake and wrote the same digits) are
    checked once; one whose check found problems is checked on its own, so that its messages
    name its own file."""
    first: dict[tuple, int] = {}  # answers -> index in unique
    unique = []
    for item in items:
        answers = _same_answers(*item)
        if answers not in first:
            first[answers] = len(unique)
            unique.append(item)
    results = _grade_unique(unique, quantities, credit, workers, dask_client)
    out = []
    for exercise, submission in items:
        result = results[first[_same_answers(exercise, submission)]]
        if result.student != submission.student:
            result = (dataclasses.replace(result, student=submission.student, source=submission.source)
                      if not result.problems and not submission.problems
                      else grade_submission(exercise, submission, quantities, credit))
        out.append(result)
    return out


def _grade_unique(items, quantities, credit, workers, dask_client) -> list[StudentResult]:
    if not items:
        return []
    if dask_client is not None:
        pieces = max(1, 4 * sum(dask_client.nthreads().values()))
        futures = dask_client.map(grade_chunk, _chunks(items, pieces), quantities=quantities, credit=credit, pure=False)
        return [result for chunk in dask_client.gather(futures) for result in chunk]
    workers = workers or usable_cores()
    for exercise in dict.fromkeys(e for e, _ in items[:1]):
        prepared(exercise)  # built before the fork, so every worker starts with it
    if workers <= 1 or len(items) < 8:
        return grade_chunk(items, quantities, credit)
    chunks = _chunks(items, 4 * workers)  # several chunks per worker: a slow one does not idle the rest
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        return [r for chunk in pool.map(grade_chunk, chunks, [quantities] * len(chunks), [credit] * len(chunks))
                for r in chunk]


# --- the class summary ---------------------------------------------------------------------------

@dataclass
class Mistake:
    """One diagnosis at one quantity, and the students who made it."""

    key: str
    code: str
    text: str
    students: list[str]


@dataclass
class ClassSummary:
    exercise: str
    quantities: list[str]
    results: list[StudentResult]
    mistakes: list[Mistake]  # most students first
    per_quantity: dict[str, Counter]  # key -> Counter of kinds
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def students(self) -> int:
        return len(self.results)

    @property
    def scores(self) -> list[float]:
        return [r.score for r in self.results]


def summarize(exercise: str, quantities: list[str], results: list[StudentResult],
              ignored_columns=()) -> ClassSummary:
    """Each quantity's verdicts and the mistakes ranked by how many students made them (a
    step only carried forward from an earlier mistake is not a mistake of its own)."""
    per_quantity = {k: Counter() for k in quantities}
    found: dict[tuple[str, str], list] = {}
    texts: dict[tuple[str, str], Counter] = {}
    for r in results:
        for m in r.marks:
            per_quantity[m.key][m.kind] += 1
            if m.kind in MISTAKE_KINDS:
                found.setdefault((m.key, m.code), []).append(r.student)
                texts.setdefault((m.key, m.code), Counter())[m.diagnosis] += 1
    order = {k: i for i, k in enumerate(quantities)}
    ranked = sorted(found.items(), key=lambda item: (-len(item[1]), order[item[0][0]], item[0][1]))
    mistakes = [Mistake(key, code, texts[key, code].most_common(1)[0][0], students) for (key, code), students in ranked]
    return ClassSummary(exercise, quantities, results, mistakes, per_quantity, list(ignored_columns))
