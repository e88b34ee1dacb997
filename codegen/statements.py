"""The statement printer: typed statements (``symbolic/ir.py``) as lines of numba Python.

Lowering (``symbolic/lower.py``) says *what* a kernel body does, as statements that hold SymPy
objects, never source text. ``StatementPrinter`` says *how* that reads in the target language,
one ``_print_<Node>`` method per node type, as SymPy's own printers do for expressions; it
leaves every expression to the ``KernelPrinter`` (``print_statements``). A second backend would
print the same statements with a printer of its own. Passes rewrite statements into
statements: ``codegen/scalar_step.py`` turns a tiny network's step into one batch row of
scalars.
"""
from __future__ import annotations

import sympy as sp

from symprop.symbolic.ir import (Accumulate, Allocate, Assignments, Call, Comment, Let, Loop, MatrixInto,
                                 Size, product_and_bias)

from .printer import KernelPrinter, element_text, print_statements


class StatementPrinter:
    """Prints statement nodes as lines of numba-compatible Python; collects the helpers used."""

    indent_unit = "    "

    def __init__(self):
        self.helpers_used: set[str] = set()
        self._let_printer = None

    def lines(self, statements) -> list[str]:
        out = []
        for statement in statements:
            out += getattr(self, f"_print_{type(statement).__name__}")(statement)
        return out

    def _print_Comment(self, node: Comment):
        return [f"# {node.text}"]

    def _print_Let(self, node: Let):
        value = str(node.value) if isinstance(node.value, int) else self._written(node.value)
        text = f"{element_text(node.target)} {'+=' if node.augmented else '='} {value}"
        return [f"{text}  # {node.comment}" if node.comment else text]

    def _written(self, expr) -> str:
        """A Let's value in the order it is written (one printer for them all: making one costs
        more than printing a short value)."""
        if isinstance(expr, (sp.Symbol, sp.Indexed)):  # a plain read (W1_0_0 = W1_row0[0])
            return element_text(expr)
        if self._let_printer is None:
            self._let_printer = KernelPrinter(order="none")
        text = self._let_printer.doprint(expr)
        self.helpers_used |= self._let_printer.helpers_used
        return text

    def _print_Allocate(self, node: Allocate):
        text = f"{node.target} = np.{'zeros' if node.zeros else 'empty'}({shape_text(node.shape)}, X.dtype)"
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
        return [f"{element_text(node.target)} += {text}"]

    def _print_Call(self, node: Call):
        self.helpers_used.add(node.function)
        text = f"{node.function}({', '.join(str(a) for a in node.args)})"
        return [f"{text}  # {node.comment}" if node.comment else text]

    def _print_MatrixInto(self, node: MatrixInto):
        printer = KernelPrinter(node.names, small_matrices=node.small_matrices)
        product, bias = product_and_bias(node.rule)
        texts = [printer.print_into(product, str(node.out))]
        if bias is not None:  # X W + 1 b: the product, then the bias added in place
            texts.append(f"_add_bias({node.out}, {node.names.get(bias.name, bias)})")
            printer.helpers_used.add("_add_bias")
        self.helpers_used |= printer.helpers_used
        comments = node.comment if isinstance(node.comment, tuple) else (node.comment,) * len(texts)
        return [f"{text}  # {comment}" if comment else text for text, comment in zip(texts, comments)]

    def _print_Loop(self, node: Loop):
        stop = f"{node.stop.args[0]}.size" if isinstance(node.stop, Size) else f"{node.stop}"
        bounds = f"{node.start}, {stop}" if node.start else stop
        return [f"for {node.index} in range({bounds}):",
                *((self.indent_unit + line) if line else "" for line in self.lines(node.body))]


def shape_text(shape) -> str:
    """An array shape as Python writes it: (N, 2), (2,); a length alone (2) for a vector."""
    return str(shape) if isinstance(shape, int) else repr(tuple(shape))


def print_lines(statements) -> tuple[list[str], set[str]]:
    """(lines, helpers used) of a statement list."""
    printer = StatementPrinter()
    return printer.lines(statements), printer.helpers_used
