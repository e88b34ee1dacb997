"""symprop variant EXERCISE --students roster.csv --seed S [--out DIR]

Writes each student's own numbers for an exercise (readable values, no saturated units, no
ties), the answer key, and variants.toml, which ``symprop grade`` takes as its exercise.
"""
from __future__ import annotations

from symprop.symbolic.errors import SympropError


def add_arguments(parser):
    parser.add_argument("exercise", help="an example name, or a network, graph or net file")
    parser.add_argument("--students", required=True, metavar="ROSTER.csv",
                        help="a CSV file with a student column (student, id, name or email)")
    parser.add_argument("--student-column", metavar="NAME", help="the roster's column naming the student")
    parser.add_argument("--seed", type=int, required=True, metavar="S",
                        help="the same roster and seed give the same sheets")
    parser.add_argument("--out", default="variants", metavar="DIR", help="where the files go (default: variants)")


def run(args) -> int:
    from symprop.symbolic import variants

    if args.seed < 0:
        raise SympropError("--seed must be a whole number, 0 or more")
    from symprop.symbolic.grading import require_exercise

    require_exercise(args.exercise)
    students = variants.read_roster(args.students, args.student_column)
    manifest = variants.write_variants(args.exercise, students, args.seed, args.out)
    print(f"{len(students)} variants of {args.exercise} in {args.out}/: one exercise file per student, "
          f"answer-key.csv, and {manifest.name} (grade with: symprop grade {manifest} SUBMISSIONS...)")
    return 0
