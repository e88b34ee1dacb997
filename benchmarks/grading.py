"""How fast ``symprop grade`` grades a class: submissions per second on every usable core,
and the speed-up over one process measured in the same run.

    python -m symprop.benchmarks.grading [--students 500] [--workers N]

The class is generated (``planted_class``): Mazur's 2-2-2 example, 40 claimed quantities per
student written to 6 to 9 significant digits, and four planted mistakes, each made by a share
of the students and carried forward through every later step they claim:
  - the sigmoid derivative taken at the net input at o1 (26% of the class),
  - two neighbouring digits of h2 swapped (18%),
  - the sign of w8_new flipped (12%),
  - the error E without its 1/2 (8%).
Students who made the same mistakes and chose the same digits write the same numbers, and
``symprop grade`` checks each set of answers once; ``--distinct`` writes each claim to its
own number of digits, so that every submission is checked (the worst case).
The target: 500 submissions in under 10 s on 2 cores (50 per second).
"""
from __future__ import annotations

import argparse
import random
import resource
import time


EXERCISE = "mazur-2-2-2"
QUANTITIES = [
    "net_h1", "h1", "net_h2", "h2", "net_o1", "o1", "net_o2", "o2", "E_o1", "E_o2", "E",
    "dE/do1", "dE/do2", "do1/dnet_o1", "do2/dnet_o2", "dE/dnet_o1", "dE/dnet_o2",
    "dE/dw5", "dE/dw6", "dE/dw7", "dE/dw8", "w5_new", "w6_new", "w7_new", "w8_new",
    "dE_o1/dh1", "dE_o2/dh1", "dE/dh1", "dE/dh2", "dh1/dnet_h1", "dh2/dnet_h2",
    "dE/dw1", "dE/dw2", "dE/dw3", "dE/dw4", "w1_new", "w2_new", "w3_new", "w4_new", "E_new",
]


def _swap_digits(text: str) -> str:
    """Two neighbouring different digits swapped, after the first two significant ones."""
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    significant = [i for i in digits if text[i] != "0" or any(text[j] != "0" for j in digits if j < i)]
    for a, b in zip(significant[2:], significant[3:]):
        if b == a + 1 and text[a] != text[b]:
            return text[:a] + text[b] + text[a] + text[b + 1:]
    raise ValueError(f"no two different neighbouring digits in {text}")


# name: (quantity, the code the checker gives it, the wrong value from the student's own world)
MISTAKES = {
    "sigmoid_at_net": ("do1/dnet_o1", "convention_sigmoid_at_net", lambda p: p["net_o1"] * (1 - p["net_o1"])),
    "swapped_digits": ("h2", "digits_transposed", None),  # written with two digits swapped
    "sign_flipped": ("w8_new", "sign_flipped", lambda p: -p["w8_new"]),
    "no_half": ("E", "convention_loss_no_half", lambda p: 2 * p["E"]),
}
SHARES = {"sigmoid_at_net": 0.26, "swapped_digits": 0.18, "sign_flipped": 0.12, "no_half": 0.08}
EXCLUSIVE = ("sigmoid_at_net", "swapped_digits", "no_half")  # upstream of each other: at most one each


def planted_class(students: int, seed: int = 0, distinct: bool = False):
    """(submissions, planted): a generated class, and for each planted mistake
    (quantity, code) the students who made it. Students who made the same mistakes and chose
    the same digits write the same numbers (and are checked once); ``distinct``: each claim
    is written to its own 6 to 9 digits, so that (almost) no two submissions are the same."""
    from symprop.symbolic.checker import claim_from, learner_world
    from symprop.symbolic.grading import Submission, prepared
    from symprop.symbolic.transcript import rounded

    exact = prepared(EXERCISE)[1]
    rng = random.Random(seed)
    names = [f"student{i:04d}" for i in range(students)]
    who = {}
    pool = names[:]
    rng.shuffle(pool)
    start = 0
    for name in EXCLUSIVE:  # disjoint groups: each of these mistakes changes the others' inputs
        count = round(SHARES[name] * students)
        who[name] = set(pool[start:start + count])
        start += count
    who["sign_flipped"] = set(rng.sample(names, round(SHARES["sign_flipped"] * students)))
    order = list(exact.quantities)
    right = {d: {k: rounded(exact.value(k), d) for k in QUANTITIES} for d in (6, 7, 8, 9)}
    submissions = []
    for student in names:
        digits = rng.choice((6, 7, 8, 9))
        made = sorted((m for m in MISTAKES if student in who[m]), key=lambda m: order.index(MISTAKES[m][0]))
        wrong = {}
        for mistake in made:  # in the transcript's order, each from the student's own values so far
            key, _, value_of = MISTAKES[mistake]
            point = learner_world(exact, wrong, set()).point
            written = _swap_digits(rounded(point[key], digits)) if value_of is None else rounded(value_of(point), digits)
            wrong[key] = claim_from(key, written, "planted")
        if distinct:
            point = learner_world(exact, wrong, set()).point if wrong else None
            written = {k: wrong[k].written if k in wrong else
                       rounded(point[k], d) if point else right[d][k]
                       for k, d in ((k, rng.choice((6, 7, 8, 9))) for k in QUANTITIES)}
        elif wrong:
            point = learner_world(exact, wrong, set()).point
            written = {k: wrong[k].written if k in wrong else rounded(point[k], digits) for k in QUANTITIES}
        else:
            written = right[digits]
        claims = [(k, written[k], None, f"{student}, {k}") for k in QUANTITIES]
        submissions.append(Submission(student, f"{student}.toml", claims))
    planted = {MISTAKES[m][:2]: who[m] for m in MISTAKES}
    return submissions, planted


def _timed(items, workers) -> tuple[float, list]:
    """Seconds to grade the class from cold caches (the exercise, its conventions and the
    values remembered per exercise built inside the timing, as a fresh ``symprop grade``
    builds them)."""
    from symprop.symbolic import checker, grading

    grading.prepared.cache_clear()
    checker._builtin_variants.cache_clear()
    checker._FLOAT_RATIONALS.clear()  # what the checker remembers is built inside the timing too
    start, cpu = time.perf_counter(), _cpu_seconds()
    results = grading.grade_class(items, QUANTITIES, workers=workers)
    return time.perf_counter() - start, _cpu_seconds() - cpu, results


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv=None) -> int:
    from symprop.symbolic import grading

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=500)
    parser.add_argument("--workers", type=int, default=None, help="default: every usable core")
    parser.add_argument("--distinct", action="store_true",
                        help="every claim written to its own number of digits: no two submissions alike")
    args = parser.parse_args(argv)
    submissions, _ = planted_class(args.students, distinct=args.distinct)
    items = [(EXERCISE, s) for s in submissions]
    distinct = len({grading._same_answers(*item) for item in items})
    workers = args.workers or grading.usable_cores()
    seconds, cpu, results = _timed(items, workers)
    single, single_cpu, _ = _timed(items, 1)
    rate = len(results) / seconds
    print(f"{len(results)} submissions of {len(QUANTITIES)} claims ({EXERCISE}, planted mistakes; "
          f"{distinct} different sets of answers, each checked once)")
    print(f"{workers} processes: {seconds:.2f} s = {rate:.1f} submissions per second "
          f"({cpu:.2f} CPU seconds; {distinct / seconds:.1f} different sets of answers per second)")
    print(f"1 process: {single:.2f} s = {len(results) / single:.1f} submissions per second "
          f"({single_cpu:.2f} CPU seconds); speed-up {single / seconds:.2f}x on {workers} processes")
    print(f"target: 500 in 10 s on 2 cores (50 per second): {rate / 50:.2f}x the target rate "
          "(wall time: on a busy machine, compare the CPU seconds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
