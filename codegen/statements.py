"""The statement printer: typed statements (``symbolic/ir.py``) as lines of numba Python.

Lowering (``symbolic/lower.py``) says *what* a kernel body does, as statements that hold SymPy
objects, never source text. ``StatementPrinter`` says *how* that reads in the target language,
one ``_print_<Node>`` method per node type, as SymPy's own printers do for expressions; it
leaves every expression to the ``KernelPrinter`` (``print_statements``). ``function`` writes a
kernel (``ir.Function``) with the decorator its ``compiled`` asks for (``decorators``: what a
sibling backend changes first). A second backend would
print the same statements with a printer of its own. Passes rewrite statements into
statements: ``codegen/scalar_step.py`` turns a tiny network's step into one batch row of
scalars.
"""
from __future__ import annotations

from dataclasses import replace

import sympy as sp

from symprop.symbolic.ir import (Accumulate, Allocate, Assignments, Axis, Blank, Call, Columns, Comment, Copy, DtypeOf,
                                 Flat, Function, InDtype, Invoke, Let, Loop, MatrixInto, MatrixProduct, Ones, Part, Real,
                                 Return, Rows, ShapeOf, Size, Slab, Steps, Summed, Transposed, View, parts,
                                 product_and_bias)

from .printer import KernelPrinter, element_text, print_statements


class StatementPrinter:
    """Prints statement nodes as lines of numba-compatible Python; collects the helpers used.

    A module's kernels share statements (loss_and_grads_into's are written out in every step
    kernel): each statement object is printed once per printer and its lines reused."""

    indent_unit = "    "
    # how a Function's ``compiled`` reads: the decorators the numba prelude defines
    decorators = {"kernel": "@jit", "holding_gil": "@jit_holding_gil", None: None}

    def __init__(self):
        self.helpers_used: set[str] = set()
        self._let_printer = None
        self._printed: dict[int, tuple] = {}  # id(statement) -> (statement, its lines)

    def lines(self, statements) -> list[str]:
        out = []
        for statement in statements:
            known = self._printed.get(id(statement))
            if known is None:
                known = self._printed[id(statement)] = (
                    statement, getattr(self, f"_print_{type(statement).__name__}")(statement))
            out += known[1]
        return out

    def function(self, node: Function) -> str:
        """A function as the module writes it: decorator, def line, docstring, body."""
        decorator = self.decorators[node.compiled]
        doc = [f'{self.indent_unit}"""{node.doc}"""'] if node.doc else []
        body = [(self.indent_unit + line) if line else "" for line in self.lines(node.body)]
        return "\n".join([*([decorator] if decorator else []),
                          f"def {node.name}({', '.join(map(str, node.params))}):", *doc, *body]) + "\n"

    def _print_Function(self, node: Function):
        return self.function(node).splitlines()

    def _print_DtypeOf(self, node: DtypeOf):
        return [f"real = {node.array}.dtype.type"]

    def _print_ShapeOf(self, node: ShapeOf):
        if len(node.sizes) == 1:
            return [f"{node.sizes[0]} = {node.array}.shape[0]"]
        return [f"{', '.join(map(str, node.sizes))} = {node.array}.shape"]

    def _print_View(self, node: View):
        view = f"{node.array}[{node.start}:{node.stop}]"
        return [f"{node.target} = {view}" + (f".reshape({tuple(node.shape)})" if len(node.shape) > 1 else "")]

    def _print_Blank(self, node: Blank):
        return [""]

    def _print_Copy(self, node: Copy):
        """Two loops, not `target[:] = source`: numba compiles an array-to-array slice
        assignment for about 3 s the first time in a process, two loops in 0.4 s (measured)."""
        match node.source:
            case Transposed(args=(matrix,)):
                element = f"{matrix_operand(matrix)}[j_copy, i_copy]"
            case _:
                element = f"{matrix_operand(node.source)}[i_copy, j_copy]"
        return [f"for i_copy in range({node.target}.shape[0]):",
                f"    for j_copy in range({node.target}.shape[1]):",
                f"        {node.target}[i_copy, j_copy] = {element}"]

    def _argument(self, value) -> str:
        if isinstance(value, Axis):
            return f"{value.args[0]}.shape[{value.args[1]}]"
        if isinstance(value, Real):
            return f"real({value.args[0]})"
        if isinstance(value, Flat):
            return f"{value.args[0]}.reshape(-1)"
        if isinstance(value, InDtype):
            return f"{value.args[1]}.dtype.type({value.args[0]})"
        return str(value)

    def _call(self, node: Invoke) -> str:
        return f"{node.function}({', '.join(map(self._argument, node.args))})"

    def _print_Invoke(self, node: Invoke):
        if isinstance(node.results, tuple):  # unpacked: a, b, = f(X)
            results = "".join(f"{r}, " for r in node.results)
            return [f"{results}= {self._call(node)}" if results else self._call(node)]
        return [f"{node.results} = {self._call(node)}"]

    def _print_Return(self, node: Return):
        values = [self._call(v) if isinstance(v, Invoke) else self._argument(v) for v in node.values]
        return [f"return {', '.join(values)}"]

    def _print_Comment(self, node: Comment):
        return [f"# {node.text}"]

    def _print_Let(self, node: Let):
        value = (str(node.value) if isinstance(node.value, int) else self._argument(node.value)
                 if isinstance(node.value, (Flat, InDtype, Real)) else self._written(node.value))
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
        text = f"{node.function}({', '.join(map(self._argument, node.args))})"
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

    def _print_MatrixProduct(self, node: MatrixProduct):
        comment = f"  # {node.comment}" if node.comment else ""
        if isinstance(node.left, Ones):  # ones^T A: the sum of A's rows, with no vector of ones to make
            if node.accumulate:
                raise ValueError(f"{node.out} += ones^T {node.right}: _column_sums writes its out, it does not add")
            self.helpers_used.add("_column_sums")
            return [f"_column_sums({matrix_operand(node.right)}, {matrix_operand(node.out)}){comment}"]
        self.helpers_used.add("_gemm")
        (left, left_transposed), (right, right_transposed) = (gemm_operand(m) for m in (node.left, node.right))
        return [f"_gemm({left}, {right}, {gemm_operand(node.out)[0]}, {left_transposed}, {right_transposed}, "
                f"{node.accumulate}){comment}"]

    def _print_Summed(self, node: Summed):
        if node.value == node.target:  # a product wrote the target itself
            return []
        text = f"{element_text(node.target)} = {self._written(node.value)}"
        return [f"{text}  # {node.comment}" if node.comment else text]

    def _print_Loop(self, node: Loop):
        statements = in_locals(node.body, node.in_locals) if node.in_locals else node.body
        pieces = one_loop_per_statement(node, statements)
        if pieces:
            return [line for piece in pieces for line in self._print_Loop(piece)]
        body = self.lines(statements)
        if not any(body):  # every statement of the body was computed by a product before it
            return []
        stop = f"{node.stop.args[0]}.size" if isinstance(node.stop, Size) else f"{node.stop}"
        bounds = f"{node.start}, {stop}" if node.start else stop
        return [f"for {node.index} in range({bounds}):",
                *((self.indent_unit + line) if line else "" for line in body)]


# LLVM's loop vectoriser checks at run time that the arrays a loop writes do not overlap the
# other arrays it reads or writes (numba cannot tell it that they never do), and gives up on a
# loop that would need more checks than this (its runtime-memory-check-threshold): the loop
# then runs one element at a time.
VECTORISER_OVERLAP_CHECKS = 8
SHORTEST_LOOP_SPLIT = 16  # fewer iterations (known when generating): no vector of them to gain


def one_loop_per_statement(loop: Loop, body: tuple) -> tuple[Loop, ...] | None:
    """An innermost elementwise loop split into one loop per array statement, where together
    its statements write and read too many arrays for LLVM to vectorise the loop. Measured on
    a kept workspace, hidden 256, 32 steps: an LSTM step's gate, cell and state lines (7
    arrays written) took 7.8 ms as one loop, 1.3 ms as seven. ``body`` is the loop's body as
    the kernel writes it (a gate's gradient in a scalar local): a piece recomputes the locals
    it reads. None where the loop stays as it is: few iterations, few enough checks, a
    statement that is not an assignment, or an element a statement writes that another
    statement might read or write at another iteration. Splitting is safe otherwise: each
    piece runs for every index before the next, and no element is shared between iterations."""
    known_trips = sp.sympify(loop.stop) - loop.start
    if (known_trips.is_number and known_trips < SHORTEST_LOOP_SPLIT) or len(body) < 2:
        return None
    locals_by_symbol: dict[sp.Symbol, Let] = {}
    writes: dict[str, set] = {}
    accesses: dict[str, set] = {}
    pieces = []
    for statement in body:
        targets, read = _written_and_read(statement)
        if targets is None:
            return None
        for element in read.atoms(sp.Indexed):
            accesses.setdefault(parts(element)[0], set()).add(element.indices)
        if isinstance(statement, Let) and isinstance(statement.target, sp.Symbol):
            # a local: computed again in each piece that reads it
            if statement.augmented or statement.target in locals_by_symbol:
                return None
            locals_by_symbol[statement.target] = statement
            continue
        for target in targets:
            if not isinstance(target, sp.Indexed):
                return None
            name, indices = parts(target)
            writes.setdefault(name, set()).add(indices)
            accesses.setdefault(name, set()).add(indices)
        pieces.append((*_locals_read(read, locals_by_symbol), statement))
    read_only = len(accesses) - len(writes)
    if (len(pieces) < 2 or len(writes) * (len(writes) - 1) // 2 + len(writes) * read_only
            <= VECTORISER_OVERLAP_CHECKS):
        return None
    if not all(other == target or _never_the_same(target, other, loop.index, known_trips)
               for name, written in writes.items() for target in written for other in accesses[name]):
        return None
    return tuple(replace(loop, body=piece, in_locals=()) for piece in pieces)


def _written_and_read(statement) -> tuple[tuple | None, sp.Basic]:
    """(the elements or locals a statement writes, an expression holding everything it reads);
    (None, ...) for a statement a loop cannot be split around."""
    match statement:
        case Let(value=sp.Basic() as value):
            return (statement.target,), value
        case Let():  # a whole number
            return (statement.target,), sp.Integer(0)
        case Assignments(row=None):
            return (tuple(target for target, _ in statement.pairs),
                    sp.Tuple(*(rule for _, rule in statement.pairs), *statement.names.values()))
    return None, sp.Integer(0)


def _locals_read(value, locals_by_symbol) -> list:
    """The local statements value reads, with those they read, in the order they were written."""
    needed = {}
    for symbol in sorted(value.free_symbols & locals_by_symbol.keys(), key=str):
        statement = locals_by_symbol[symbol]
        needed.update(dict.fromkeys(_locals_read(_written_and_read(statement)[1], locals_by_symbol)))
        needed[statement] = None
    order = list(locals_by_symbol.values())
    return sorted(needed, key=order.index)


def _never_the_same(a: tuple, b: tuple, loop_index: sp.Symbol, trips) -> bool:
    """Index tuples a and b name different elements at every two iterations of the loop over
    loop_index: in one position they differ by a nonzero constant, and either neither involves
    the loop's index (cs[n, t - 1, j] and cs[n, t, j]) or both are the index plus a constant
    at least the number of iterations apart (da[n, t, j] and da[n, t, j + 256], 256 of j)."""
    def apart(i, k):
        difference = i - k
        if not difference.is_number or difference == 0:
            return False
        if not (i.has(loop_index) or k.has(loop_index)):
            return True
        return (not (i - loop_index).has(loop_index) and trips.is_number and abs(difference) >= trips)
    return len(a) == len(b) and any(apart(i, k) for i, k in zip(a, b))


def in_locals(body, names) -> tuple:
    """A loop body with each element of the arrays ``names`` read as a scalar local of the
    array's name (di1[n, t, j] -> di1). Every element of such an array must be one element,
    written before it is read: anything else is a lowering's mistake, said here rather than
    left to print a wrong kernel."""
    names = set(names)
    seen: dict[str, sp.Indexed] = {}

    def local_of(expr, writing=False):
        for element in sorted(expr.atoms(sp.Indexed), key=str) if isinstance(expr, sp.Basic) else ():
            name = element.base.label.name
            if name not in names:
                continue
            if seen.setdefault(name, element) != element or (not writing and name not in written):
                raise ValueError(f"{element} cannot be kept in a local: read before it is written, "
                                 f"or another element than {seen[name]}")
        return expr.xreplace({e: sp.Symbol(e.base.label.name) for e in expr.atoms(sp.Indexed)
                              if e.base.label.name in names}) if isinstance(expr, sp.Basic) else expr

    written: set[str] = set()
    out = []
    for statement in body:
        match statement:
            case Let():
                value = local_of(statement.value)
                target = local_of(statement.target, writing=True)
                written.add(parts(statement.target)[0])
                out.append(replace(statement, target=target, value=value))
            case Assignments():
                names_read = {key: local_of(value) for key, value in statement.names.items()}
                pairs = tuple((local_of(target, writing=True), local_of(rule)) for target, rule in statement.pairs)
                written.update(parts(target)[0] for target, _ in statement.pairs)
                renamed = dict(zip((t for t, _ in statement.pairs), (t for t, _ in pairs)))
                out.append(replace(statement, pairs=pairs, names=names_read,
                                   comments={renamed.get(t, t): c for t, c in statement.comments.items()},
                                   accumulate=frozenset(renamed.get(t, t) for t in statement.accumulate)))
            case _:
                raise ValueError(f"a loop that keeps arrays in locals cannot hold {type(statement).__name__}")
    return tuple(out)


def gemm_operand(value) -> tuple[str, bool]:
    """(the array or view _gemm is given, whether it reads it transposed) for a product's
    operand or its out. _gemm reads and writes a matrix whose rows are strided (a step's slab of
    a sequence buffer, a block of columns) where it is, so those are views here, not copies."""
    match value:
        case Transposed(args=(matrix,)):
            return gemm_operand(matrix)[0], True
        case Slab(args=(array, t)):
            return f"{array}[:, {t}, :]", False
        case Columns(args=(array, start, width)):
            return f"{matrix_operand(array)}[:, {start}:{start + width}]", False
    return matrix_operand(value), False


def matrix_operand(value) -> str:
    """A matrix operand as numpy writes it: an array, or a view of one (a contiguous copy where
    it is read as rows of another width)."""
    match value:
        case Part(args=(array, i)):
            return f"{matrix_operand(array)}[{i}]"
        case Columns(args=(array, start, width)):
            return f"np.ascontiguousarray({matrix_operand(array)}[:, {start}:{start + width}])"
        case Steps(args=(array, start, stop)):
            return f"np.ascontiguousarray({array}[:, {start}:{stop}, :])"
        case Rows(args=(array, width)):
            return f"{matrix_operand(array)}.reshape(-1, {width})"
        case sp.Symbol():
            return str(value)
    # a step's Slab and a transposed operand are _gemm's (gemm_operand), a row of ones is a
    # column sum (_print_MatrixProduct): anything else here is a lowering this printer lacks
    raise ValueError(f"no matrix operand is printed for {value}")


def shape_text(shape) -> str:
    """An array shape as Python writes it: (N, 2), (2,); a length alone (2) for a vector."""
    return str(shape) if isinstance(shape, int) else repr(tuple(shape))
