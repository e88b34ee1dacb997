"""Run lowered statements at concrete sizes and write each assignment as a transcript line.

The kernels print a family's statements (``symbolic/lower.py``); this module reads the same
statements another way: loops run at the source's sizes, every index is a number, and each
element a statement writes becomes a quantity of the transcript whose formula is the
statement's own right-hand side, over the transcript's names (``h1[0,1] = max(0, z1[0,1])``).
So the transcript, the kernel and the checker (which reads the transcript) cannot disagree
about what a family computes.

What the kernel keeps in registers is not a transcript line: a plain local (``loss_term``, a
running sum) is carried along as a formula and written out where it is read. A value built
up over several statements (``loss = 0; loss += ...``, a parameter gradient summed over the
batch) is one line, written when the run ends, with the whole sum as its formula. Where a
statement says its rules are an upstream gradient times a local derivative (``upstream`` in
``Assignments``), the local derivative and the chain-rule product are lines of their own, as
the source articles teach them.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import sympy as sp

from .errors import SympropError
from .ir import (Accumulate, Allocate, Assignments, Call, Comment, Copy, Let, Loop, MatrixInto, MatrixProduct, Summed, Token,
                 element)
from .transcript import Chain, Text

GRADIENT = "dL/d"  # the transcript's keys of gradients: dL/dz1[0,1]


@dataclass
class _Pending:
    """A value still being built up: its formula so far (or the chain-rule terms so far) and
    the local derivatives to write just before it."""

    summands: list = field(default_factory=list)  # a sum built up term by term, kept as written
    formula: object = sp.S.Zero
    terms: list = field(default_factory=list)
    locals: list = field(default_factory=list)  # (key, formula, note) of each local derivative
    note: Text | None = None
    zero_note: Text | None = None  # the note of the value a sum starts from, where nothing is added


class Interpreter:
    """Runs statements; ``key_of(array, index)`` names an element as the transcript does
    (None: the element is not a quantity), ``define(key, formula, note)`` writes a line,
    ``once(note)`` gives a note the first time only. ``loop_sizes`` and ``expr_sizes`` give
    the numbers of the size symbols in loop bounds and in formulas; they differ where a
    batch-mean loss is read as a sum (N rows, divided by 1), and the caller may share them
    between runs, as a kernel's sizes hold from its forward statements to its backward ones. ``shown`` names the kernel
    locals that are quantities: local symbol -> (key name, index symbols), as the loss
    ``loss`` -> ``L``. ``shapes`` gives each array's shape (the batch as the size symbol N),
    where a matrix rule reads whole arrays."""

    def __init__(self, key_of: Callable, define: Callable, once: Callable, loop_sizes: dict,
                 expr_sizes: dict | None = None, shown: dict | None = None, shapes: dict | None = None,
                 defined: Callable = lambda key: False, value_of: Callable | None = None):
        self.key_of, self.define, self.once, self.defined = key_of, define, once, defined
        self.value_of = value_of  # key -> its exact value, for an index read from the data (a token id)
        self.shapes = shapes or {}
        self.loop_sizes = loop_sizes  # shared by the runs of one kernel's statements (K set once)
        self.expr_sizes = loop_sizes if expr_sizes is None else expr_sizes
        self.shown = {str(local): where for local, where in (shown or {}).items()}  # by name
        self.bound: dict[sp.Symbol, int] = {}  # loop index -> its value now
        self.locals: dict[str, object] = {}  # kernel local (by name) -> its formula
        self._local_sums: dict[str, list] = {}  # a local summed term by term -> its terms
        self.pending: dict[str, _Pending] = {}
        self._writing: str | None = None  # the key of the value being computed now
        self._noted: set = set()  # statements whose note was given (first element only)

    # ---- running -------------------------------------------------------------------------
    def run(self, statements) -> None:
        for statement in statements:
            getattr(self, f"_run_{type(statement).__name__}", self._cannot)(statement)

    def finish(self) -> None:
        """Write every value that was built up over several statements, grouped by array in
        the order each was first written, then by index."""
        arrays: dict[str, list[str]] = {}
        for key in self.pending:
            arrays.setdefault(key.partition("[")[0], []).append(key)
        for keys in arrays.values():
            for key in sorted(keys, key=_index_order):
                self._flush(key)

    def _cannot(self, statement):
        raise SympropError(f"the transcript cannot yet run a {type(statement).__name__} statement "
                           f"({getattr(statement, 'comment', '') or statement})")

    def _run_Comment(self, statement: Comment):
        pass

    def _run_Allocate(self, statement: Allocate):
        pass

    def _size(self, size) -> int:
        """A loop bound or an array's extent as a number (K, N: the sizes of this run; a bound
        that reads an outer loop's index, as a causal mask's t + 1, at its value now)."""
        return int(sp.sympify(size).xreplace({**self.loop_sizes, **self.bound}))

    def _run_Loop(self, loop: Loop):
        for value in range(self._size(loop.start), self._size(loop.stop)):
            self.bound[loop.index] = value
            self.run(loop.body)
        self.bound.pop(loop.index, None)

    def _run_Let(self, let: Let):
        if isinstance(let.target, sp.Symbol) and let.target.is_integer:  # a size: K = 4
            self.loop_sizes[let.target] = self.expr_sizes[let.target] = int(let.value)
            return
        if isinstance(let.value, sp.Symbol) and str(let.value) in self.shapes:  # a whole array under another name
            self._view(let)
            return
        self._writing = self._key(let.target)
        self._write(let.target, self._concrete(sp.sympify(let.value), written=True), let.augmented, let.note, let)

    def _run_Accumulate(self, statement: Accumulate):
        self._writing = self._key(statement.target)
        self._write(statement.target, self._concrete(statement.expr, statement.names, statement.row), True, None,
                    statement)

    def _view(self, let: Let) -> None:
        """target = source for whole arrays (a flattened image is the same array): each element
        of the target is its element of the source."""
        for index in itertools.product(*(range(self._size(size)) for size in self.shapes[str(let.value)])):
            self._writing = self._key(element(str(let.target), *index))
            self._write(element(str(let.target), *index), self._read(element(str(let.value), *index)), False,
                        let.note, let)

    def _run_Call(self, call: Call):
        if not call.means:
            self._cannot(call)
        self.run(call.means)

    def _run_MatrixProduct(self, node: MatrixProduct):
        """Nothing to write: the Summed statements after it say what each of its elements is."""

    def _run_Copy(self, node: Copy):
        """Nothing to write: the same numbers in another layout (Wh^T for the products back)."""

    def _run_Summed(self, node: Summed):
        self.run(node.means)

    def _run_MatrixInto(self, node: MatrixInto):
        """A matrix rule on explicit matrices of the transcript's symbols, multiplied out: one
        line per element of out (a vector is a matrix of one row)."""
        matrices, sizes = {}, {}
        for m in node.rule.atoms(sp.MatrixSymbol):
            array = str(node.names.get(m.name, m.name))
            shape = [self._size(size) for size in self.shapes[array]]
            rows, cols = (1, shape[0]) if len(shape) == 1 else shape
            read = ((lambda i, j, a=array: self._read(element(a, j))) if len(shape) == 1 else
                    (lambda i, j, a=array: self._read(element(a, i, j))))
            matrices[m.name] = sp.ImmutableMatrix(rows, cols, read)
            sizes |= {s: n for s, n in zip(m.shape, (rows, cols)) if not s.is_number}
        concrete, self._writing = node.rule.subs(sizes), None
        result = sp.ImmutableMatrix(concrete.xreplace({m: matrices[m.name] for m in concrete.atoms(sp.MatrixSymbol)}).doit())
        out = str(node.out)
        for i, j in itertools.product(range(result.rows), range(result.cols)):
            target = element(out, j) if len(self.shapes[out]) == 1 else element(out, i, j)
            self._write(target, result[i, j], False, node.note, node)

    def _run_Assignments(self, statement: Assignments):
        for target, rule in statement.pairs:
            note = statement.notes.get(target)
            if statement.upstream is not None:
                self._chain(statement, target, rule, note or (None, None))
            else:
                self._writing = self._key(target)
                formula = self._concrete(rule, statement.names, statement.row, zero_outside=statement.zero_outside)
                self._write(target, formula, target in statement.accumulate, note, statement)

    # ---- values --------------------------------------------------------------------------
    def _key(self, target) -> str | None:
        """The transcript key of a target or read value at the current indices (None: a plain
        local the kernel keeps in a register)."""
        if isinstance(target, sp.Indexed):
            index = tuple(int(self._token_ids(sp.sympify(i).xreplace(self.bound))) for i in target.indices)
            return self.key_of(target.base.label.name, index)
        if str(target) in self.shown:
            name, indices = self.shown[str(target)]
            return name + (f"[{','.join(str(self.bound[i]) for i in indices)}]" if indices else "")
        return None

    def _token_ids(self, index):
        """An index with each token id in it (Token(X[0,1])) replaced by that element's value,
        which must be a whole number."""
        index = sp.sympify(index)
        if not index.has(Token):
            return index

        def value(token):
            key = self._key(token.args[0])
            number = self.value_of(key) if key is not None and self.value_of is not None else None
            if number is None or not sp.sympify(number).is_integer:
                raise SympropError(f"{key or token.args[0]} = {number} is used as an index (a token id): "
                                   "it must be a whole number")
            return number
        return index.replace(lambda e: isinstance(e, Token), value)

    def _read(self, value, zero_outside: bool = False):
        try:
            key = self._key(value)
        except IndexError:  # outside the array
            if zero_outside:
                return sp.S.Zero
            raise SympropError(f"the transcript reads {value} outside its array") from None
        if key is None:
            if str(value) not in self.locals:
                raise SympropError(f"the transcript reads {value} before any statement writes it")
            return self.locals[str(value)]
        if key in self.pending:
            if key == self._writing:  # read while still being built (loss = loss / N): its formula so far
                return self.pending[key].formula
            self._flush(key)  # read by another value: it is complete
        return sp.Symbol(key)

    def _flush(self, key: str) -> None:
        item = self.pending.pop(key)
        for local_key, formula, note in item.locals:
            self.define(local_key, formula, note)
        if item.terms:  # a chain-rule sum: its own note
            note = item.note
        else:  # a sum of terms (the loss), or nothing added (an element in no pooling window): the
            note = item.note or (item.zero_note and self.once(item.zero_note))  # note where it started, once
        self.define(key, Chain(tuple(item.terms)) if item.terms else item.formula, note)

    def _concrete(self, expr, names=None, row=None, written=False, zero_outside=False):
        """expr over the transcript's names: the statement's names put in, indices and sizes
        made numbers, every element and local read. ``written``: the kernel's bookkeeping
        (loss / N), kept in the order it is written rather than rearranged by SymPy."""
        if expr.has(sp.Float):  # a number the kernel writes as a float literal (an epsilon) is the decimal it prints
            expr = expr.xreplace({f: sp.Rational(repr(float(f))) for f in expr.atoms(sp.Float)})
        if names:
            arrays = {e: sp.IndexedBase(names[e.base.label.name])[e.indices] for e in expr.atoms(sp.Indexed)
                      if e.base.label.name in names and isinstance(names[e.base.label.name], sp.Symbol)}
            expr = expr.xreplace(arrays)
            expr = expr.xreplace({s: names[s.name] for s in expr.free_symbols if s.name in names})
        if row is not None:
            expr = expr.replace(lambda e: isinstance(e, sp.Indexed) and len(e.indices) == 1,
                                lambda e: e.base[(row, *e.indices)])
        if expr.has(sp.Sum):  # a sum runs over the loop's sizes (all N rows), then is written out
            expr = expr.replace(lambda e: isinstance(e, sp.Sum), lambda e: e.xreplace(self.loop_sizes))
        expr = expr.xreplace({**self.expr_sizes, **{i: sp.Integer(v) for i, v in self.bound.items()}})
        if expr.has(sp.Sum):
            expr = expr.doit()
        elements = {e: self._read(e, zero_outside) for e in expr.atoms(sp.Indexed)}
        locals_ = {s: self._read(s) for s in expr.free_symbols
                   if isinstance(s, sp.Symbol) and (s.name in self.locals or s.name in self.shown)}
        if written:
            with sp.evaluate(False):
                return _running(expr.xreplace(elements | locals_))
        expr = expr.xreplace(elements)
        with sp.evaluate(False):  # a local's formula goes in as it was built (a sum stays a sum)
            return expr.xreplace(locals_)

    def _write(self, target, formula, augmented: bool, note, statement) -> None:
        key, name = self._key(target), str(target)
        if key is None:  # a local: carried along as a formula (a running sum as one sum)
            summands = self._local_sums.pop(name, [])
            if augmented:
                summands, formula = _plus(summands, self.locals.get(name, sp.S.Zero), formula)
                self._local_sums[name] = summands
            self.locals[name] = formula
            return
        if self.defined(key) and key not in self.pending:  # computed again (a kernel recomputes what it did not keep)
            return
        starts_sum = isinstance(statement, Let) and formula == 0 and not augmented
        if augmented or key in self.pending or name in self.shown or starts_sum:  # a shown local may still change (zmax)
            item = self.pending.setdefault(key, _Pending())
            if starts_sum:
                item.zero_note = item.zero_note or note
            else:
                item.note = item.note or self._first(statement, note)
            if augmented:  # one more term of the sum
                item.summands, formula = _plus(item.summands, item.formula, formula)
            else:  # a new formula (loss = loss / N reads the sum so far)
                item.summands = []
            item.formula = formula
            return
        self.define(key, formula, self._first(statement, note))

    def _first(self, statement, note):
        """A statement's note on its first line only."""
        if note is None or id(statement) in self._noted:
            return None
        self._noted.add(id(statement))
        return note

    def _chain(self, statement: Assignments, target, rule, notes) -> None:
        """target = upstream * local: the local derivative as a line, then the product (or, for
        a target summed over the batch, one more term of its sum)."""
        local_note, note = notes
        upstream = statement.names[statement.upstream]
        up_key = self._key(upstream)
        key = self._writing = self._key(target)
        if up_key is None or key is None or not (up_key.startswith(GRADIENT) and key.startswith(GRADIENT)):
            raise SympropError(f"a chain-rule statement must write and read gradients ({target}, {upstream})")
        local_key = f"d{up_key[len(GRADIENT):]}/d{key[len(GRADIENT):]}"
        upstream_symbol = next(s for s in rule.free_symbols if s.name == statement.upstream)
        local = self._concrete(rule.xreplace({upstream_symbol: sp.S.One}), statement.names, statement.row)
        if target in statement.accumulate:
            item = self.pending.setdefault(key, _Pending())
            item.note = item.note or (self.once(note) if note else None)
            item.locals.append((local_key, local, self.once(local_note) if local_note else None))
            item.terms.append((up_key, local_key))
            return
        self.define(local_key, local, self.once(local_note) if local_note else None)
        self.define(key, Chain(((up_key, local_key),)), self.once(note) if note else None)


def evaluated(expr):
    """expr with every operation carried out: the interpreter writes formulas as the statements
    build them (sums in the order written), a value to show is the simplified one."""
    return expr.func(*map(evaluated, expr.args)) if isinstance(expr, sp.Basic) and expr.args else expr


def _plus(summands: list, so_far, term) -> tuple[list, object]:
    """so_far + term for a value summed term by term, kept as one sum in the order written:
    (its terms, its formula). ``summands`` are so_far's terms, or empty when so_far is a single
    formula (or the 0 a sum starts from)."""
    summands = [*(summands or ([so_far] if so_far != 0 else [])), term]
    return summands, summands[0] if len(summands) == 1 else sp.Add(*summands, evaluate=False)


def _index_order(key: str):
    """z1[1,10] after z1[1,9]: the numbers of an element's index, compared as numbers."""
    _, _, rest = key.partition("[")
    return tuple(int(i) for i in rest.rstrip("]").split(",") if i)


def _running(expr):
    """max(max(a, b), c) -> max(a, b, c): a running maximum (or minimum) the kernel updates in a
    loop is one max of the elements (SymPy orders a max's arguments itself)."""
    if not isinstance(expr, (sp.Max, sp.Min)):
        return expr
    args = []
    for arg in expr.args:
        args += _running(arg).args if isinstance(arg, type(expr)) else [arg]
    return type(expr)(*args, evaluate=False)
