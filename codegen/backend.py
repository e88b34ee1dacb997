"""The numba backend: everything that decides how lowered kernels read as numba Python.

A backend is a configuration object, as in SymForce's code generation: the statement printer
(which also writes function definitions, ``ir.Function``, with their decorators), the prelude
every module starts with (imports, the jit decorator and its flags, input checks), the helper
functions the printed expressions call, and the few module-level definitions the kernels call
(``definitions``: the in-place update, the GIL-holding decorator, the compiled workspace).
Lowering (``network.py``, ``layer_kernels.py``, ``optimizer_steps.py``) builds statements and
functions and asks the backend to print them; a second target language would be a second
``Backend`` with a printer of its own; a sibling Python-syntax backend keeps the statement
printer and the shared input checks (``common.CHECKS``) and brings its own start and helpers
(``tests/test_backends.py`` builds a plain-Python one, no JIT).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .common import DEFINITIONS, PRELUDE, helper_source  # PRELUDE = NUMBA_START (imports, jit) + CHECKS (shared)
from .statements import StatementPrinter


@dataclass(frozen=True)
class Backend:
    name: str
    prelude: str  # the start of every module
    statement_printer: type
    helper_source: Callable[[set], str]  # the text of the helpers a module uses
    # name -> a definition a module writes where it needs it (sgd_update, holding_gil, workspace)
    definitions: dict = field(default_factory=lambda: dict(DEFINITIONS))

    def printer(self):
        """A statement printer for one module: it prints each statement object once and
        collects the helpers the module's kernels use."""
        return self.statement_printer()

    def print(self, statements, printer=None) -> tuple[list[str], set[str]]:
        """(lines, helpers used) of a list of statements."""
        printer = printer or self.printer()
        return printer.lines(statements), printer.helpers_used

    def function(self, node, printer=None) -> str:
        """A function definition (``ir.Function``) as the module writes it."""
        return (printer or self.printer()).function(node)

    @staticmethod
    def shape(shape: tuple) -> str:
        """An array shape as the target language writes it: (N, 2), (2,)."""
        return repr(tuple(shape))

    def module_start(self, helpers_used) -> str:
        """The prelude and the helpers a module's kernels call."""
        return self.prelude + self.helper_source(helpers_used)


NUMBA = Backend("numba", PRELUDE, StatementPrinter, helper_source)
