"""Kernel bodies as statement nodes, and the printer that turns them into lines.

Lowering (``codegen/network.py``, ``codegen/layer_kernels.py``) says *what* a kernel body
does: loops, assignments of SymPy expressions, matrix products into preallocated arrays,
comments. ``StatementPrinter`` says *how* that reads in the target
language, one ``_print_<Node>`` method per node type, as SymPy's own printers do for
expressions; it leaves every expression to the ``KernelPrinter`` (``print_statements``). A
second backend would print the same statements with a printer of its own. Passes rewrite
statements into statements: ``codegen/scalar_step.py`` turns a tiny network's step into one
batch row of scalars.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .printer import KernelPrinter, print_statements


@dataclass(frozen=True)
class Comment:
    """# text"""

    text: str


@dataclass(frozen=True)
class Let:
    """target = value, for the kernel's own bookkeeping (K = 4, loss = real(0), loss += row_loss),
    where value is code, not a formula. ``augmented``: target += value."""

    target: str
    value: str
    augmented: bool = False
    comment: str = ""


@dataclass(frozen=True)
class Assignments:
    """target = expression for several targets at once, so they share subexpressions (CSE).

    ``names`` renames the expressions' symbols to what the kernel reads (x -> z1[n, j]);
    ``comments`` gives a comment per target; targets in ``accumulate`` are added to (+=);
    ``row`` prefixes indexed values with a row index (y[k] -> y[n, k]); ``scalar`` prints the
    straight-line variants of the helpers (see printer.SCALAR_VARIANTS)."""

    pairs: tuple[tuple[str, sp.Basic], ...]
    names: dict = field(default_factory=dict, hash=False, compare=False)
    comments: dict = field(default_factory=dict, hash=False, compare=False)
    accumulate: frozenset = frozenset()
    row: str | None = None
    scalar: bool = False


@dataclass(frozen=True)
class Accumulate:
    """target += expression, printed as it is (no shared subexpressions to find): the body of
    a reduction loop."""

    target: str
    expr: sp.Basic
    names: dict = field(default_factory=dict, hash=False, compare=False)
    row: str | None = None


@dataclass(frozen=True)
class Call:
    """function(args) for a helper that works in place (_add_bias(z1, b1))."""

    function: str
    args: tuple[str, ...]
    comment: str = ""


@dataclass(frozen=True)
class MatrixInto:
    """out = a matrix rule (X^T dY, 1^T dY, ...), written into the preallocated array out."""

    rule: sp.Basic
    out: str
    names: dict = field(default_factory=dict, hash=False, compare=False)
    small_matrices: bool = False  # tiny matrices: plain loops instead of a BLAS call
    comment: str = ""


@dataclass(frozen=True)
class Loop:
    """for index in range(start, stop): body"""

    index: str
    stop: str | int
    body: tuple
    start: int = 0


class StatementPrinter:
    """Prints statement nodes as lines of numba-compatible Python; collects the helpers used."""

    indent_unit = "    "

    def __init__(self):
        self.helpers_used: set[str] = set()

    def lines(self, statements) -> list[str]:
        out = []
        for statement in statements:
            out += getattr(self, f"_print_{type(statement).__name__}")(statement)
        return out

    def _print_Comment(self, node: Comment):
        return [f"# {node.text}"]

    def _print_Let(self, node: Let):
        text = f"{node.target} {'+=' if node.augmented else '='} {node.value}"
        return [f"{text}  # {node.comment}" if node.comment else text]

    def _print_Assignments(self, node: Assignments):
        lines, used = print_statements(list(node.pairs), node.names, comment_for=node.comments.get,
                                       row=node.row, scalar=node.scalar, accumulate=node.accumulate)
        self.helpers_used |= used
        return lines

    def _print_Accumulate(self, node: Accumulate):
        printer = KernelPrinter(node.names, row=node.row)
        text = printer.doprint(node.expr)
        self.helpers_used |= printer.helpers_used
        return [f"{node.target} += {text}"]

    def _print_Call(self, node: Call):
        self.helpers_used.add(node.function)
        text = f"{node.function}({', '.join(node.args)})"
        return [f"{text}  # {node.comment}" if node.comment else text]

    def _print_MatrixInto(self, node: MatrixInto):
        printer = KernelPrinter(node.names, small_matrices=node.small_matrices)
        text = printer.print_into(node.rule, node.out)
        self.helpers_used |= printer.helpers_used
        return [f"{text}  # {node.comment}" if node.comment else text]

    def _print_Loop(self, node: Loop):
        bounds = f"{node.start}, {node.stop}" if node.start else f"{node.stop}"
        return [f"for {node.index} in range({bounds}):",
                *((self.indent_unit + line) if line else "" for line in self.lines(node.body))]


def print_lines(statements) -> tuple[list[str], set[str]]:
    """(lines, helpers used) of a statement list."""
    printer = StatementPrinter()
    return printer.lines(statements), printer.helpers_used
