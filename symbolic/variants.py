"""One exercise, a different set of numbers for each student, so that a class cannot copy
one sheet: ``symprop variant EXERCISE --students roster.csv --seed S``.

Each student's numbers are drawn from a random generator seeded by the seed and the
student's name (the same roster and seed give the same sheets on any machine). A draw is
kept only when the exercise stays a good hand calculation: readable values (the decimals
of the original, at least two), every sigmoid output between 0.05 and 0.95 (no saturated
unit, whose gradient would be too small to see on paper), no relu or max exactly at its
kink, no two given numbers equal and no new ties among the computed values (a tie would
hide which of two quantities a learner used).

Written: one exercise file per student (the same kind of file as the exercise: network,
graph or net file), the answer key (a CSV with every computed value of every variant) and
``variants.toml``, which ``symprop grade`` takes as its exercise to check each student
against their own numbers.
"""
from __future__ import annotations

import copy
import csv
import io
import random
import re
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path

import sympy as sp

from .errors import SympropError
from .examples import EXAMPLES, get_transcript
from .graphfile import is_graph_file
from .netfile import is_net_file
from .transcript import rounded
from .userfiles import parse_toml, read_text

MANIFEST = "variants.toml"
ATTEMPTS = 500  # draws per student before giving up on an exercise whose numbers cannot be varied
SIGMOID_RANGE = (sp.Rational(1, 20), sp.Rational(19, 20))
KINK_MARGIN = sp.Rational(1, 100)


# --- the exercise file ----------------------------------------------------------------------------

def exercise_source(exercise: str) -> tuple[str, str, str]:
    """(text, kind, name) of an exercise: a built-in example's shipped file or the user's file;
    kind is "network", "graph" or "net"."""
    from .grading import require_exercise

    require_exercise(exercise)
    if exercise in EXAMPLES:
        for folder, kind in (("networks", "network"), ("graphs", "graph"), ("nets", "net")):
            entry = resources.files(__package__).joinpath(folder, f"{exercise}.toml")
            if entry.is_file():
                return entry.read_text(encoding="utf-8"), kind, exercise
        raise SympropError(f"the example {exercise!r} has no file of numbers to vary")
    path = Path(exercise)
    text = read_text(path, "exercise file")
    kind = "graph" if is_graph_file(path) else "net" if is_net_file(path) else "network"
    return text, kind, path.stem


def _number_slots(data: dict, kind: str) -> list[tuple]:
    """Where the exercise's given numbers are: a path of keys and indexes into the TOML data."""
    slots = []

    def walk(value, path):
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            slots.append(path)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, (*path, i))

    if kind == "network":
        for section in ("inputs", "targets"):
            for key, value in data.get(section, {}).items():
                walk(value, (section, key))
        for i, layer in enumerate(data.get("layers", [])):
            for key in ("weights", "bias"):
                if key in layer:
                    walk(layer[key], ("layers", i, key))
    elif kind == "graph":
        for section in ("inputs", "parameters", "data"):
            for key, value in data.get(section, {}).items():
                if key != "mode":
                    walk(value, (section, key))
    else:  # a net file: every value but the learning rate and the targets (labels, one-hot rows)
        for key, value in data.get("values", {}).items():
            if key not in ("learning_rate", "T"):
                walk(value, ("values", key))
    return slots


def _get(data, path):
    for step in path:
        data = data[step]
    return data


def _set(data, path, value):
    for step in path[:-1]:
        data = data[step]
    data[path[-1]] = value


def _decimals(x) -> int:
    text = repr(x)
    if "e" in text or "E" in text:
        return 3
    return len(text.split(".")[1]) if "." in text else 0


def _draw(x, rng: random.Random):
    """A readable number like x: the same sign and kind; about the same size; integers stay
    integers; 0, 1 and -1 (structure: one-hot rows, unit weights) stay as they are."""
    if x in (0, 1, -1):
        return x
    sign = -1 if x < 0 else 1
    if isinstance(x, int):
        return sign * rng.randint(max(2, abs(x) // 2), abs(x) * 3 // 2 + 1)
    decimals = min(3, max(2, _decimals(x)))
    unit = 10 ** decimals
    low, high = max(1, round(abs(x) * unit * 0.5)), max(2, round(abs(x) * unit * 1.5))
    if 0 < abs(x) < 1:  # a probability or target stays below 1
        high = min(high, unit - 1)
    return sign * Fraction(rng.randint(low, max(low, high)), unit)


# --- checks on a drawn exercise ---------------------------------------------------------------------

def _elements(value):
    return list(value) if isinstance(value, sp.MatrixBase) else [value]


def _saturated_or_at_kink(t) -> str | None:
    """Why this transcript is a poor hand calculation, or None: a sigmoid output outside
    [0.05, 0.95], a tanh beyond +-0.95, a relu or max at (or within 0.01 of) its kink."""
    for key, q in t.quantities.items():
        if q.formula is None or not isinstance(q.formula, sp.Basic):
            continue
        for node in sp.preorder_traversal(q.formula):
            name = type(node).__name__.lower()
            try:
                if name == "sigmoid":
                    values = _elements(t.evaluate(node))
                    if any(not SIGMOID_RANGE[0] <= sp.N(v) <= SIGMOID_RANGE[1] for v in values):
                        return f"{key}: a saturated sigmoid"
                elif name == "tanh":
                    if any(abs(sp.N(v)) > SIGMOID_RANGE[1] for v in _elements(t.evaluate(node))):
                        return f"{key}: a saturated tanh"
                elif name in ("heaviside", "max", "min"):
                    args = [_elements(t.evaluate(a)) for a in node.args[:2] if a.free_symbols or a.is_number]
                    if name == "heaviside" and any(abs(sp.N(v)) < KINK_MARGIN for v in args[0]):
                        return f"{key}: at a kink"
                    if name != "heaviside" and len(args) == 2 and any(
                            abs(sp.N(a - b)) < KINK_MARGIN for a, b in zip(args[0], args[1])):
                        return f"{key}: at a kink"
            except (TypeError, ValueError, KeyError, AttributeError, SympropError):
                continue  # a node that is not a scalar function of given values: nothing to check
    return None


def _distinct_values(t) -> int:
    values = set()
    for q in t.quantities.values():
        for v in _elements(q.value):
            values.add(rounded(v, 12))
    return len(values)


# --- writing ------------------------------------------------------------------------------------------

def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Fraction):
        return _decimal_text(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise SympropError(f"cannot write {value!r} to a TOML file")


def _decimal_text(value: Fraction) -> str:
    """A Fraction with a power-of-ten denominator as the decimal it is (0.37, not 37/100)."""
    digits = 0
    while (value * 10 ** digits).denominator != 1:
        digits += 1
    text = f"{abs(value.numerator) * 10 ** digits // value.denominator:0{digits + 1}d}"
    body = text if digits == 0 else f"{text[:-digits]}.{text[-digits:]}"
    return ("-" if value < 0 else "") + body


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def to_toml(data: dict, header: str = "") -> str:
    """The TOML text of an exercise's data: top-level values, then tables, then arrays of
    tables (the shapes network, graph and net files use)."""
    lines = [f"# {line}" for line in header.splitlines()]
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)
               and not (isinstance(v, list) and v and all(isinstance(i, dict) for i in v))}
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars.items()]
    for key, value in data.items():
        if isinstance(value, dict):
            lines += ["", f"[{_toml_key(key)}]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()]
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
            for table in value:
                lines += ["", f"[[{_toml_key(key)}]]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# --- the variants --------------------------------------------------------------------------------------

@dataclass
class Variant:
    student: str
    file_name: str
    text: str  # the student's exercise file
    key: dict  # quantity -> exact value, rounded for the answer key


def _answer_key(t) -> dict:
    return {k: rounded(q.value, 10) for k, q in t.quantities.items()
            if q.formula is not None and not isinstance(q.value, sp.MatrixBase)}


def make_variants(exercise: str, students: list[str], seed: int, work_dir: Path) -> list[Variant]:
    """Each student's own exercise; ``work_dir`` holds the files while they are checked."""
    from .grading_report import student_file_name

    text, kind, name = exercise_source(exercise)
    original = parse_toml(text, exercise)
    slots = _number_slots(original, kind)
    varied = [s for s in slots if _get(original, s) not in (0, 1, -1)]
    if not varied:
        raise SympropError(f"{exercise}: no given numbers to vary")
    baseline = _distinct_values(get_transcript(exercise))
    taken, seen_numbers, variants = set(), set(), []
    for student in students:
        file_name = student_file_name(student, taken) + ".toml"
        rng = random.Random(f"{seed}:{student}")
        for _ in range(ATTEMPTS):
            data = copy.deepcopy(original)
            for field in ("description", "description_zh"):  # they quote the original numbers
                data.pop(field, None)
            numbers = []
            for slot in varied:
                numbers.append(_draw(_get(original, slot), rng))
                _set(data, slot, numbers[-1])
            if len({abs(n) for n in numbers}) < len({abs(_get(original, s)) for s in varied}) or tuple(numbers) in seen_numbers:
                continue  # two given numbers tied (or another student's sheet)
            variant_text = to_toml(data, f"{name} with {student}'s numbers (symprop variant, seed {seed})")
            path = work_dir / file_name
            path.write_text(variant_text, encoding="utf-8")
            try:
                t = get_transcript(str(path))
            except SympropError:
                continue  # numbers this exercise refuses (a log of a negative number, ...)
            if _saturated_or_at_kink(t) or _distinct_values(t) < baseline:
                continue
            seen_numbers.add(tuple(numbers))
            variants.append(Variant(student, file_name, variant_text, _answer_key(t)))
            break
        else:
            raise SympropError(f"{exercise}: no readable variant for {student!r} in {ATTEMPTS} draws "
                               "(every draw saturated a unit or tied two values)")
    return variants


def read_roster(path, column: str | None = None) -> list[str]:
    """The students of a roster CSV: the column named ``column``, or student / id / name / email."""
    from .grading import STUDENT_COLUMNS

    text = read_text(Path(path), "roster")
    rows = [r for r in csv.reader(io.StringIO(text.removeprefix("\ufeff"))) if any(c.strip() for c in r)]
    if not rows:
        raise SympropError(f"{path}: the roster is empty")
    header = [c.strip().lower() for c in rows[0]]
    wanted = [column.lower()] if column else list(STUDENT_COLUMNS)
    index = next((header.index(w) for w in wanted if w in header), None)
    if index is None:
        raise SympropError(f"{path}, line 1: no student column (looked for {', '.join(wanted)})")
    students, seen = [], set()
    for line, row in enumerate(rows[1:], 2):
        student = row[index].strip() if index < len(row) else ""
        if not student:
            raise SympropError(f"{path}, line {line}: no student name")
        if student in seen:
            raise SympropError(f"{path}, line {line}: {student!r} is listed twice")
        seen.add(student)
        students.append(student)
    if not students:
        raise SympropError(f"{path}: the roster lists no students")
    return students


def write_variants(exercise: str, students: list[str], seed: int, out_dir) -> Path:
    """Every student's exercise file, answer-key.csv and variants.toml in ``out_dir``;
    returns the manifest's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variants = make_variants(exercise, students, seed, out)
    keys = list(dict.fromkeys(k for v in variants for k in v.key))
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["student", "file", *keys])
    for v in variants:
        writer.writerow([v.student, v.file_name, *[v.key.get(k, "") for k in keys]])
    (out / "answer-key.csv").write_text(table.getvalue(), encoding="utf-8")
    manifest = to_toml({"variants_of": exercise, "seed": seed, "students": {v.student: v.file_name for v in variants}},
                       "written by symprop variant: symprop grade takes this file as its exercise")
    (out / MANIFEST).write_text(manifest, encoding="utf-8")
    return out / MANIFEST


def is_manifest(path) -> bool:
    return str(path).endswith(".toml") and Path(path).is_file() and re.search(
        r"^variants_of\s*=", read_text(Path(path), "variants file"), re.MULTILINE) is not None


def read_manifest(path) -> tuple[str, dict[str, str]]:
    """(the exercise the variants are of, student -> their exercise file)."""
    path = Path(path)
    data = parse_toml(read_text(path, "variants file"), str(path))
    students = data.get("students")
    if not isinstance(data.get("variants_of"), str) or not isinstance(students, dict) or not students:
        raise SympropError(f"{path}: expected variants_of = \"EXERCISE\" and a [students] table (as symprop variant writes)")
    files = {}
    for student, file_name in students.items():
        if not isinstance(file_name, str) or not (path.parent / file_name).is_file():
            raise SympropError(f"{path}: the variant of {student!r}, {file_name!r}, does not exist")
        files[student] = str(path.parent / file_name)
    return data["variants_of"], files
