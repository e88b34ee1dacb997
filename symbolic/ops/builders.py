"""Statement builders the op families' lowerings share: row reductions (softmax, the row-wise
losses), the row maximum, image elements and nested loops, and the notes several families give
their transcript lines. See ``symbolic/lower.py`` for the lowering context the families write
into."""
from __future__ import annotations

import math

import sympy as sp

from ..ir import Accumulate, Assignments, Let, Loop, as_written, element as at, index, local
from ..text import tr
from .base import K

FEATURES = sp.Symbol("F", integer=True, positive=True)  # a layer's width where a kernel reads it from x
ROW = index("n")  # the row index that row kernels put before every indexed value
n, i, j, k = (index(name) for name in "nijk")  # the loop indices
LOSS, ROW_LOSS = local("loss"), local("row_loss")  # the step's loss, summed over the rows

SOFTMAX_NOTE = tr("softmax of the row, from the derivation's stable form", "该行的 softmax（由推导中的稳定形式得到）")
CHAIN_NOTE = tr("chain rule: upstream gradient times local derivative", "链式法则：上游梯度乘以局部导数")


def features(shape) -> int:
    """The number of features of a value: its width (a number, or a size symbol), or C*H*W of an
    image."""
    return math.prod(shape) if isinstance(shape, tuple) else shape


def _mean_note(name: str):
    return tr(f"{name}: the mean of the rows' losses over the batch", f"{name}：各行误差在批量上的平均")


def _local_note(text: str, more: tuple[str, str] = ("", "")):
    return tr(f"local derivative of {text}, from its derived rule{more[0]}", f"{text} 的局部导数（由其推导得到）{more[1]}")


def _image(name: str, *index) -> sp.Indexed:
    """An element of an image array, indexed [n, c, h, w] (the kernels keep it flat)."""
    return sp.IndexedBase(name)[index]


def _loops(indices_and_sizes, body) -> tuple:
    """Nested loops, the first index outermost."""
    for index_, size in reversed(indices_and_sizes):
        body = (Loop(index_, size, body),)
    return body


def row_reduction(assignments, names=None, comment_for=None, notes=None) -> list:
    """Statements for one row n of a row-wise rule: each Sum becomes an accumulation loop over
    the row's K elements (index k).

    ``assignments`` are (target, expr). Sums are computed first (s0, s1, ... in a fixed order),
    then scalar targets, then one loop over the row for targets that depend on the index.
    ``comment_for(target)`` gives the comment printed after a target's statement.
    """
    names = names or {}
    sums = sorted({total for _, e in assignments for total in e.atoms(sp.Sum)}, key=sp.srepr)
    named = {total: sp.Symbol(f"s{i}") for i, total in enumerate(sums)}
    statements = []
    for total, symbol in named.items():
        (m, _, _), = total.limits
        statements += [Let(symbol, sp.Integer(0)),
                       Loop(k, K, (Accumulate(symbol, total.function.subs(m, k), names, row=ROW),))]
    comments = {t: comment_for(t) for t, _ in assignments} if comment_for else {}
    notes = notes or {}  # target -> the transcript's note
    scalar = [(t, e.xreplace(named)) for t, e in assignments if k not in e.xreplace(named).free_symbols]
    per_element = [(t, e.xreplace(named)) for t, e in assignments if k in e.xreplace(named).free_symbols]
    if scalar:
        statements.append(Assignments(tuple(scalar), names, comments, row=ROW, notes=notes))
    if per_element:
        statements.append(Loop(k, K, (Assignments(tuple(per_element), names, comments, row=ROW, notes=notes),)))
    return statements


def _row_index(expr):
    """Rename the free row index of a softmax rule (j or k) to the loop variable k."""
    frees = [s for s in expr.free_symbols if s.is_integer and s.name in ("j", "k")]
    return expr.subs({s: k for s in frees})


def row_max(source: str = "z") -> list:
    """zmax = the largest element of row n of source, subtracted before exp (no overflow)."""
    zmax = local("zmax")
    return [Let(zmax, at(source, "n", 0), note=tr("the row maximum zmax: subtracted before exp, so no exponent is positive",
                                                  "行最大值 zmax：exp 之前减去，使指数都不为正")),
            Loop(index("k"), K, (Let(zmax, as_written(sp.Max, zmax, at(source, "n", "k"))),), start=1)]
