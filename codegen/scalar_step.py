"""The scalar-expanded training step of tiny networks (every layer at most TINY_WIDTH wide).

A step of the 2-2-2 worked example is a few dozen multiplications. Looping over 2 x 2 matrices
and allocating a workspace costs more than that arithmetic, so for tiny networks the step is
written out unit by unit instead:

- the parameters are read once into scalar locals (``W1_0_1 = W1_row0[1]``, through a view
  of each row);
- each batch row n is one pass of straight-line code in which every unit is a named scalar
  (``z1_0``, ``h1_0``, ..., and on the way back ``dh1_0``, ``dz1_0``);
- the gradients are summed over the rows: a bias's in scalar locals (``db1_0 += dz1_0``), a
  weight matrix's (of at least LOOP_MIN_WEIGHTS entries) in a small array, by a loop over row
  n's term (``dW1[i, j] += X[n, i] * dz1_row[j]``, the units copied into ``dz1_row`` first):
  numba compiles that loop once, where one scalar sum per weight cost compile time for each
  (``_RowPass.outer_product``);
- only after the last row, with the gradient complete, is the SGD update written into the
  parameter arrays.

No workspace, only a few arrays of a layer's width. This step is not lowered a second time:
``scalarize`` is a pass over the statements ``symbolic.lower.Lowering`` already built for the
matrix step (forward, loss, backward), which rewrites them for one batch row at concrete sizes:

- a loop over a feature index (``for j in range(2)``, ``for k in range(K)``) is unrolled, and
  an element of a row, ``z1[n, j]`` at j = 0, becomes the scalar local ``z1_0`` (the step's
  inputs X and T are read once a row into locals, ``X_0 = X[n, 0]``);
- a matrix rule (``MatrixInto``: Z = X W, dW = X^T dY, ...) is multiplied out for one row on
  explicit matrices of those scalars, and a bias row (X W + 1 b) adds b's scalars to its result;
- an array without a batch dimension written inside a row (a parameter's gradient) is a sum
  over the rows: a scalar accumulator, zero before the rows, added to in each (a weight
  gradient X^T dY: the loop above);
- a row's own bookkeeping (``zmax``, the softmax sums ``s0``, ``row_loss``) is kept as a SymPy
  expression and substituted where it is read, so the units of a layer are one group of
  expressions whose common subexpressions are shared (``exp`` of a softmax row once);
- the loops over the batch rows of all layers become one loop; what the matrix step does
  after its rows (the loss's 1/N) it does after that loop.

The result is statements again, printed by the same backend printer as the matrix step, so an
op type needs one lowering (its op class's ``lower()``) for both steps. Nothing here
is a formula typed by hand: the expressions are the layers' own derivations, as lowered.

``scalar_step`` returns None for a network it has no scalar form for: a layer wider than
TINY_WIDTH, a step longer than SCALAR_MAX_LINES, or a statement the pass cannot rewrite for one
row (``NotScalar``: a helper call it does not know, a row that reads a sum over the rows, ...).
Such a network keeps the matrix step.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import sympy as sp

from symprop.symbolic.layers import N
from symprop.symbolic.ops.base import real

from .backend import NUMBA, Backend
from .printer import element_text
from symprop.symbolic.ir import (Accumulate, Allocate, Assignments, Blank, Comment, DtypeOf, Function, Let, Loop,
                                 MatrixInto, Real, Return, ShapeOf, array, arrays, as_written,
                                 difference, element, index, local, parts, product_and_bias)

# A network whose every affine layer has at most this many inputs and outputs gets the scalar
# step. Measured (sigmoid + softmax-cross-entropy, per step in sgd_steps, matrix -> scalar):
# 4-4-4 1.00 -> 0.12 us at batch 1, 2.8 -> 1.3 us at 16; 8-8-8 0.95 -> 0.36 us, 5.1 -> 3.1 us,
# and it compiles faster (4.0 -> 2.3 s). At 16 wide it does not pay: 16-16-16 runs 6.3 -> 12.6
# us a step at batch 16 and compiles in 6.5 s instead of 3.6.
TINY_WIDTH = 8

# ...and whose scalar step is at most this many lines per batch row (``ScalarStep.size``).
# numba's compile time grows with the straight-line body, the matrix step's with the layers.
# CPU seconds of numba compiling the first sgd_step in a fresh process, scalar against matrix
# step, median of 3 (python -m symprop.benchmarks.first_step --forms; 2 shared cores, load 2-4),
# since the matrix step's _dot_loops and _sgd_update stopped compiling branches and reshapes
# they never need:
#   2-2-2 (31 lines) 0.5 / 1.8,  3-8-4-2 softsign (142) 1.7 / 2.1,  3-8-8-2 (159) 2.2 / 2.2,
#   2-8-8-8-1 softplus/Mish (197) 2.8 / 2.5,  8-8-8-8-8 (237) 3.5 / 2.3,  4-8-8-8-3 (241) 3.3 / 2.5,
#   six 8x8 layers (355) 5.8 / 3.0,  eight 8x8 layers (485) 9.1 / 3.7.
# Up to ~160 lines the scalar step compiles as fast or faster (and runs faster: Mish's 197-line
# step 12-17% faster than its matrix step at batch 32-100); past it the matrix step compiles
# faster, and a learner waits for the compile on every new spec.
SCALAR_MAX_LINES = 160

# A weight matrix with at least this many entries sums its gradient over the rows in a loop
# (``_RowPass.outer_product``), a smaller one in scalar locals. CPU seconds compiling the first
# sgd_step, and time per step in sgd_steps at batch 1, scalar sums -> loop for the matrices
# named (the threshold set just above and just below their size):
#   4-4-4, both 4 x 4 (16 weights): 1.4 -> 1.4 s, 119 -> 193 ns;
#   3-8-4-2, its 8 x 4 (32):        2.0 -> 2.0 s, 174 -> 218 ns;
#   3-6-8-2, its 6 x 8 (48):        2.3 -> 2.1 s, 240 -> 290 ns;
#   3-8-8-2, its 8 x 8 (64):        3.0 -> 2.3 s, 285 -> 335 ns.
# Below ~48 the loop saves no compile time and still costs its arrays and copies each step.
LOOP_MIN_WEIGHTS = 48

INPUTS = ("X", "T")  # the batch's arrays: read in the rows, never written
STEP, ZERO = local("step"), local("zero")  # the step's learning rate and zero, in the dtype
LOSS = "loss"  # the sum the loss statements add each row's loss to (the step returns it)


class NotScalar(Exception):
    """A statement the pass cannot rewrite for one row: the network keeps the matrix step."""


def unit(base: str, *index: int) -> sp.Symbol:
    """The scalar local holding one unit (z1_0) or one parameter entry (W1_0_1)."""
    return real("_".join([base, *map(str, index)]))


def _reads(expr):
    """The values an expression reads: its Indexed values (z[k]) and the symbols outside them."""
    if isinstance(expr, (sp.Indexed, sp.Symbol)):
        yield expr
    else:
        for arg in expr.args:
            yield from _reads(arg)


def _sums_over_rows(rule) -> bool:
    """Whether a matrix rule contracts the batch dimension: X^T dY and 1^T dY do, X W does not."""
    return any(isinstance(e, sp.MatMul) and any(getattr(a, "shape", (0, 0))[1] == N for a in e.args[:-1])
               for e in sp.preorder_traversal(rule))


def _evaluated(expr):
    """expr with every operation carried out: a Let's value is built as written (unevaluated),
    the row's scalars are plain SymPy expressions, simplified and shared as derived ones are."""
    return expr.func(*map(_evaluated, expr.args)) if expr.args and not isinstance(expr, sp.Indexed) else expr


class _RowPass:
    """Rewrites a network's statements for one batch row (see the module docstring).

    ``self.row`` collects the statements of the row loop, ``self.after`` those after it.
    Expressions are rewritten to read scalar symbols; ``self.input_reads`` holds the inputs'
    ones, read once a row (X_0 = X[n, 0]). Emitted assignments wait in ``self.group`` until a
    statement needs one of them by name, so independent units (a layer's z1_0, z1_1) share one
    group.
    """

    def __init__(self, shapes: dict, params: list[str]):
        self.shapes = shapes  # array name -> shape; the symbol N marks the batch dimension
        self.params = set(params)
        self.known: dict[str, int] = {}  # sizes (K) and the current value of unrolled indices
        self.pending: dict[str, sp.Expr] = {}  # row-local name -> its value, substituted where read
        self.carried = {LOSS}  # plain names summed over the rows
        self.finished: set[str] = set()  # carried names already scaled after the rows
        self.accumulators: list[str] = []  # scalar locals summed over the rows, in order
        self.array_sums: dict[str, tuple] = {}  # gradient arrays summed over the rows in a loop
        self.scalar_sums: set[str] = set()  # arrays summed over the rows entry by entry
        self.row_arrays: dict[str, int] = {}  # a row's units copied into name_row for a loop
        self.input_reads: dict[str, str] = {}  # input scalars, read once a row (X_0 = X[n, 0])
        self.row: list = []
        self.after: list = []
        self.group: list[tuple[str, sp.Expr, bool, str | None]] = []

    # ---- values -------------------------------------------------------------------------
    def index(self, index) -> int:
        if isinstance(index, int) or getattr(index, "is_Integer", False):
            return int(index)
        text = str(index)
        if text in self.known:
            return self.known[text]
        raise NotScalar(f"index {text} is not a known size or unrolled loop")

    def batch(self, array: str) -> bool:
        if array not in self.shapes:
            raise NotScalar(f"no shape known for {array}")
        return self.shapes[array][0] == N

    def element(self, array: str, indices) -> sp.Symbol:
        """The scalar of one element: a row's element drops its row index (z1[n, 0] -> z1_0)."""
        indices = list(indices)
        if self.batch(array):
            if not indices or str(indices[0]) != "n":
                raise NotScalar(f"{array} is read at another row than n")
            indices = indices[1:]
        symbol = unit(array, *(self.index(i) for i in indices))
        if array in INPUTS:
            self.input_reads[symbol.name] = element(array, "n", *(self.index(i) for i in indices))
        return symbol

    def read_element(self, array: str, indices) -> sp.Symbol:
        if not self.batch(array) and array not in self.params:
            raise NotScalar(f"a row reads {array}, a sum over the rows")
        return self.element(array, indices)

    def value_of(self, value, after_rows: bool = False) -> sp.Expr:
        """What a value a statement reads (x -> z1[n, j] -> z1_0) stands for in row n."""
        if isinstance(value, sp.Indexed):
            return self.read_element(*parts(value))
        if not isinstance(value, sp.Symbol):
            return value  # a number (an L2 penalty's lambda)
        name = value.name
        if name == N.name:
            return N
        if name in self.pending:
            return self.pending[name]
        if name in self.known:
            return sp.Integer(self.known[name])
        if name in self.carried and after_rows:
            return real(name)
        raise NotScalar(f"a row reads {name}, which it does not define")

    def expression(self, expr: sp.Expr, names: dict, row) -> sp.Expr:
        """An expression of a statement with every value it reads replaced by its scalar."""
        replacements = {}
        for read in set(_reads(expr)):
            if isinstance(read, sp.Indexed):
                label = read.base.label.name
                base = str(names.get(label, label))
                indices = [names.get(str(i), i) for i in read.indices]
                replacements[read] = self.read_element(base, [row, *indices] if row is not None else indices)
            else:
                replacements[read] = self.value_of(names.get(read.name, read))
        return expr.xreplace(replacements)

    def code(self, value, after_rows: bool = False) -> sp.Expr:
        """A Let's value (zmax = max(zmax, z2[n, k]), loss = loss / N) for row n, evaluated."""
        replacements = {read: self.value_of(read, after_rows) for read in set(_reads(value))
                        if not read.is_number}
        return _evaluated(value.xreplace(replacements))

    # ---- writes -------------------------------------------------------------------------
    def emit(self, target: str, value: sp.Expr, accumulate: bool, comment: str | None):
        """One printed assignment; a value that reads a target waiting in the group goes after it."""
        if {s.name for s in value.free_symbols} & {t for t, *_ in self.group}:
            self.flush()
        self.group.append((target, value, accumulate, comment))

    def flush(self):
        if self.group:
            self.row.append(Assignments(
                tuple((local(t), v) for t, v, *_ in self.group), {},
                {local(t): c for t, _, _, c in self.group if c}, frozenset(local(t) for t, _, a, _ in self.group if a),
                scalar=True))
            self.group = []

    def accumulator(self, name: str):
        if name not in self.accumulators:
            self.accumulators.append(name)

    def assign(self, target, value: sp.Expr, accumulate: bool, comment: str | None = None):
        array, indices = parts(target)
        if indices is None:
            if array in self.carried:  # loss += row_loss: a sum over the rows
                if not accumulate or array in self.finished:
                    raise NotScalar(f"{array} is changed in a row after its sum over the rows")
                self.emit(array, value, True, comment)
            elif accumulate:
                if array not in self.pending:
                    raise NotScalar(f"{array} is added to before it is set")
                self.pending[array] = self.pending[array] + value
            else:
                self.pending[array] = value
        elif self.batch(array):
            if accumulate:
                raise NotScalar(f"{target} is added to inside a row")
            if array in self.row_arrays:
                raise NotScalar(f"{target} is changed after a loop read its row")
            self.emit(self.element(array, indices).name, value, False, comment)
        else:  # an array without a batch dimension, written in every row: a sum over the rows
            if not accumulate or array in self.params or array in self.array_sums:
                raise NotScalar(f"{target} is overwritten in every row")
            self.scalar_sums.add(array)
            name = self.element(array, indices).name
            self.accumulator(name)
            self.emit(name, value, True, comment and f"{comment}, row n's term")

    # ---- statements ---------------------------------------------------------------------
    def top(self, statement):
        """A statement outside the loops over the batch rows."""
        match statement:
            case Comment():
                self.flush()
                self.row.append(statement)
            case Loop() if str(statement.index) == "n":
                if statement.stop != N or statement.start:
                    raise NotScalar("a loop over part of the batch")
                for inner in statement.body:
                    self.in_row(inner)
            case Loop():
                self.unrolled(statement, self.top)
            case MatrixInto():
                product, bias = product_and_bias(statement.rule)
                comments = statement.comment if isinstance(statement.comment, tuple) else (statement.comment, "")
                self.matrix(replace(statement, rule=product, comment=comments[0]))
                if bias is not None:  # X W + 1 b: b's scalars added to the product's
                    self.add_bias(str(statement.out), str(statement.names.get(bias.name, bias)), comments[1])
            case Let(value=int() as size) if not statement.augmented:
                self.known[str(statement.target)] = size  # a size, K = 4
            case Let():
                self.top_let(statement)
            case _:
                raise NotScalar(f"no scalar form of {statement}")

    def top_let(self, let: Let):
        value = self.code(let.value, after_rows=True)
        array, indices = parts(let.target)
        if value == 0 and not let.augmented:  # a sum over the rows starts (loss = real(0))
            if indices is None:
                self.carried.add(array)
                if array != LOSS:
                    self.accumulator(array)
            elif self.batch(array):
                raise NotScalar(f"{let.target} is set outside the rows")
            else:
                self.accumulator(self.element(array, indices).name)
            return
        if indices is not None or array not in self.carried:
            raise NotScalar(f"{let.target} is set between the rows")
        # the rows' sum made final (loss = loss / real(N)): after the last row
        self.finished.add(array)
        self.after.append(Assignments(((local(array), real(array) + value if let.augmented else value),),
                                      scalar=True))

    def in_row(self, statement):
        """A statement inside the loop over the batch rows, for row n."""
        match statement:
            case Comment():
                self.flush()
                self.row.append(statement)
            case Loop() if str(statement.index) == "n":
                raise NotScalar("a loop over the batch inside a row")
            case Loop():
                self.unrolled(statement, self.in_row)
            case Assignments():
                for target, expr in statement.pairs:
                    self.assign(target, self.expression(expr, statement.names, statement.row),
                                target in statement.accumulate, statement.comments.get(target))
            case Accumulate():
                self.assign(statement.target, self.expression(statement.expr, statement.names, statement.row), True)
            case Let():
                self.assign(statement.target, self.code(statement.value), statement.augmented)
            case _:
                raise NotScalar(f"no scalar form of {statement} in a row")

    def unrolled(self, loop: Loop, each):
        """The loop's body once for each value of its index (a feature index of a tiny layer)."""
        name = str(loop.index)
        if name in self.known:
            raise NotScalar(f"loop index {name} is already taken")
        stop = self.index(loop.stop)
        for value in range(self.index(loop.start), stop):
            self.known[name] = value
            for inner in loop.body:
                each(inner)
        self.known.pop(name, None)

    def matrix(self, node: MatrixInto):
        """A matrix rule for one row: every matrix an explicit one of its scalars, multiplied out
        (as_explicit on the symbolic product sums each entry with Sum.doit: seconds per network
        where this takes milliseconds). A weight gradient X^T dY is a loop instead
        (``outer_product``)."""
        if self.outer_product(node):
            return
        out_name = str(node.out)
        out = self.shapes.get(out_name)
        if out is None or (out[0] == N) == _sums_over_rows(node.rule):
            # a row's own output must not mix rows (1 1^T X); an output without a batch
            # dimension must be a sum over them (X^T dY), or adding it up row by row is wrong
            raise NotScalar(f"{node.out} = {node.rule} is not one row's")
        arrays = {m: str(node.names.get(m.name, m.name)) for m in node.rule.atoms(sp.MatrixSymbol)}
        sizes = {}
        for m, array in arrays.items():
            shape = self.shapes.get(array)
            if shape is None:
                raise NotScalar(f"no shape known for {array}")
            concrete = (1, shape[1]) if shape[0] == N else (shape if len(shape) == 2 else (1, *shape))
            for symbolic, size in zip(m.shape, concrete):
                if (symbolic != size) if symbolic.is_number else (sizes.setdefault(symbolic, size) != size):
                    raise NotScalar(f"{array} does not fit {node.rule}")
        rule = node.rule.subs(sizes)

        def entries(array):
            if self.batch(array):
                return lambda i, j: self.read_element(array, ["n", int(j)])
            if len(self.shapes[array]) == 1:
                return lambda i, j: self.read_element(array, [int(j)])
            return lambda i, j: self.read_element(array, [int(i), int(j)])

        explicit = {m: sp.ImmutableMatrix(*m.shape, entries(str(node.names.get(m.name, m.name))))
                    for m in rule.atoms(sp.MatrixSymbol)}
        result = sp.ImmutableMatrix(rule.xreplace(explicit).doit().as_explicit())
        if result.shape != ((1, out[1]) if out[0] == N else out if len(out) == 2 else (1, *out)):
            raise NotScalar(f"{node.out} does not hold {node.rule}")
        for i, j in itertools.product(range(result.rows), range(result.cols)):
            target = (element(out_name, "n", j) if out[0] == N else
                      element(out_name, j) if len(out) == 1 else element(out_name, i, j))
            self.assign(target, result[i, j], out[0] != N, node.comment or None)

    def outer_product(self, node: MatrixInto) -> bool:
        """A weight gradient summed over the rows, dW = X^T dY, as row n's term
        dW[i, j] += X[n, i] dY[n, j] in a loop over a gradient array, where the rule is that
        product of two row arrays.

        Written out, it is one scalar sum per weight (64 for an 8 x 8 layer), each a value numba
        carries around the loop over the rows, and numba's compile time grows with every one of
        them. The loop compiles once whatever the layer's size and adds the same products in the
        same order, so the step's numbers do not change. It costs time per step (the arrays, the
        copies into them, a loop instead of registers), so a matrix with fewer than
        LOOP_MIN_WEIGHTS entries keeps its scalar sums. (A bias's 1^T dY stays scalar sums too:
        as a loop it compiled no faster, and ran 25% slower at 64 rows.)"""
        rule, out_name = node.rule, str(node.out)
        out = self.shapes.get(out_name)
        if not (isinstance(rule, sp.MatMul) and len(rule.args) == 2 and isinstance(rule.args[0], sp.Transpose)
                and isinstance(rule.args[0].arg, sp.MatrixSymbol) and isinstance(rule.args[1], sp.MatrixSymbol)):
            return False
        left, right = (str(node.names.get(m.name, m.name)) for m in (rule.args[0].arg, rule.args[1]))
        if (out is None or len(out) != 2 or out[0] == N or not self.batch(left) or not self.batch(right)
                or out != (self.shapes[left][1], self.shapes[right][1]) or out[0] * out[1] < LOOP_MIN_WEIGHTS):
            return False
        if out_name in self.params:
            raise NotScalar(f"{out_name} is overwritten in every row")
        if out_name in self.scalar_sums:
            raise NotScalar(f"{out_name} is summed over the rows both as an array and entry by entry")
        self.flush()  # the units the loop reads are assigned before it
        self.array_sums[out_name] = out
        term = as_written(sp.Mul, self.row_array(left, "i"), self.row_array(right, "j"))
        comment = node.comment and f"{node.comment}, row n's term"
        self.row.append(Loop(index("i"), out[0], (Loop(index("j"), out[1], (
            Let(element(out_name, "i", "j"), term, True, comment),)),)))
        return True

    def row_array(self, array: str, at: str) -> sp.Indexed:
        """How a loop reads row n of a batch array at ``index``: an input (X) from its own row,
        another array's units from a small array they are copied into once a row (h1_row)."""
        if array in INPUTS:
            return element(array, "n", at)
        if array not in self.row_arrays:
            width = self.shapes[array][1]
            self.row_arrays[array] = width
            self.row.append(Assignments(tuple((element(f"{array}_row", j), self.element(array, ["n", j]))
                                              for j in range(width)), {}, scalar=True))
        return element(f"{array}_row", at)

    def add_bias(self, out: str, bias: str, comment: str):
        """_add_bias(out, b): out[n, j] += b[j] (b[0] for a shared bias), added to the values
        of out waiting in the group."""
        waiting = {t: k for k, (t, *_) in enumerate(self.group)}
        shared = self.shapes.get(bias) == (1,)
        for j in range(self.shapes[out][1]):
            target = unit(out, j).name
            if target not in waiting:
                raise NotScalar(f"{out} gets its bias apart from its product")
            _, value, accumulate, note = self.group[waiting[target]]
            bias_value = self.read_element(bias, [0 if shared else j])
            self.group[waiting[target]] = (target, value + bias_value, accumulate,
                                           "; ".join(filter(None, [note, comment])) or None)


@dataclass
class ScalarStep:
    """One network's scalar step: its statements (the parameters read into scalar locals, the
    sums over the rows started at zero, one batch row, what follows the last row, the update)
    and their printed lines (``size`` counts the row's)."""

    params: list  # (name, shape) in argument order
    statements: tuple  # (reads, zeros, row, after, updates), each a list of statements
    read_lines: list[str]  # every parameter element into its scalar local
    zero_lines: list[str]  # the sums over the rows start at zero (the gradients)
    row_lines: list[str]  # one batch row: forward, loss, backward
    after_lines: list[str]  # after the last row (the loss's 1/N)
    update_lines: list[str]  # the SGD update, written into the parameter arrays
    helpers: set[str]

    @property
    def size(self) -> int:
        """Lines in one batch row: what numba and LLVM compile, and what compile time grows with."""
        return sum(1 for line in self.row_lines if line.strip() and not line.lstrip().startswith("#"))

    def function(self, name: str, compiled: str | None = "kernel") -> Function:
        """The step as one function ``name(W1, b1, ..., X, T, lr)``: the network module makes it
        sgd_step_kernel itself, and sgd_steps_kernel and sgd_step_packed_kernel call it, so all
        three share one compiled body (per dtype) instead of each compiling the whole step again."""
        reads, zeros, row, after, updates = self.statements
        X = array("X")
        return Function(name, (*arrays(*(p for p, _ in self.params)), X, array("T"), array("lr")), (
            DtypeOf(X), ShapeOf((N,), X), Comment("---- parameters, read once ----"), *reads,
            Comment("---- gradients, summed over the batch rows ----"), Let(ZERO, sp.Integer(0)), *zeros,
            Let(local(LOSS), sp.Integer(0)), Loop(index("n"), N, (*row, Blank())), *after,
            Comment("---- SGD update: p -= lr * dL/dp, the gradient complete ----"), Let(STEP, Real(array("lr"))),
            *updates, Return((local(LOSS),))),
            "One gradient-descent step in place with every unit a scalar local (the tiny-network\n"
            "    form): no workspace. The gradient is summed over the batch rows first; the parameters\n"
            "    change only after the last row. Returns the loss before the step.", compiled)


def scalarize(statements, shapes: dict, params: list[str]) -> _RowPass:
    """A network's step statements rewritten for one batch row n at the concrete sizes of
    ``shapes`` (array name -> shape, the symbol N for the batch dimension): the pass, holding the row's
    statements, those after the rows and the sums over the rows. Raises NotScalar where it has
    no scalar form."""
    rows = _RowPass(shapes, params)
    for statement in statements:
        rows.top(statement)
    rows.flush()
    return rows


def scalar_step(net, backend: Backend = NUMBA, printer=None) -> ScalarStep | None:
    """The scalar step of a lowered network (``symbolic.lower.Lowering``: its parameters,
    workspace buffers and forward, loss and backward statements), or None when it is not tiny,
    has a statement without a scalar form, or would take longer to compile than the matrix step
    (SCALAR_MAX_LINES). ``printer``: the module's statement printer, which prints each
    statement once (the module prints the step's function with it again)."""
    shapes = {**dict(net.params), **dict(net.buffers), "X": (N, net.widths[0]), "T": (N, net.widths[-1])}
    if any(size != N and size > TINY_WIDTH for shape in shapes.values() for size in shape):
        return None
    statements = [Comment("---- forward ----"), *net.forward, Comment("---- loss ----"), *net.loss,
                  Comment("---- backward (chain rule, from the loss back to the first layer) ----"), *net.backward]
    try:
        rows = scalarize(statements, shapes, [name for name, _ in net.params])
    except NotScalar:
        return None
    row, after, accumulators = rows.row, rows.after, rows.accumulators
    reads, zeros, updates = [], [], []
    for name, shape in net.params:
        grad = "d" + name
        if grad in rows.array_sums:  # summed over the rows in a loop (_RowPass.outer_product)
            zeros.append(Allocate(local(grad), shape, zeros=True, comment=f"dL/d{name}"))
            updates.append(Loop(index("i"), shape[0], (Loop(index("j"), shape[1], (
                Let(element(name, "i", "j"), difference(element(name, "i", "j"),
                                                        as_written(sp.Mul, STEP, element(grad, "i", "j")))),)),)))
        for at in itertools.product(*map(range, shape)):
            value = unit(name, *at)
            if len(shape) == 2:  # through a view of each row: numba compiles W1_row0[1] faster than W1[0, 1]
                if at[1] == 0:
                    reads.append(Let(local(f"{name}_row{at[0]}"), element(name, at[0])))
                reads.append(Let(value, element(f"{name}_row{at[0]}", at[1])))
            else:
                reads.append(Let(value, element(name, *at)))
            if grad in rows.array_sums:
                continue
            grad_local = unit(grad, *at)
            if grad_local.name not in accumulators:  # the pass did not see this gradient summed: no step
                return None
            zeros.append(Let(grad_local, ZERO, comment=f"dL/d{element_text(element(name, *at))}"))
            # p = p_local - step * dp: the same number as p -= step * dp without reading p again.
            # Both this and `zero` are for numba, whose compile time grows with every typed
            # operation of the straight-line body (3-8-8-2: 4.2-4.3 -> 3.3-3.6 s of CPU together).
            updates.append(Let(element(name, *at), difference(value, as_written(sp.Mul, STEP, grad_local))))
    gradients = {str(statement.target) for statement in zeros}
    zeros += [Let(local(name), ZERO) for name in accumulators if name not in gradients]
    zeros += [Allocate(local(f"{array}_row"), width, comment=f"row n of {array}, for the loops")
              for array, width in rows.row_arrays.items()]
    row = [Let(local(name), value) for name, value in rows.input_reads.items()] + row
    parts = (reads, zeros, row, after, updates)
    printer = printer or backend.printer()
    step = ScalarStep(list(net.params), parts, *(printer.lines(part) for part in parts), printer.helpers_used)
    return step if step.size <= SCALAR_MAX_LINES else None
