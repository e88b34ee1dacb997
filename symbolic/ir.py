"""The typed statements an op family's lowering writes: what a kernel body does, as data.

Loops, assignments of SymPy expressions, matrix products into preallocated arrays, calls of
in-place helpers, comments, and the functions (kernels) they make up. Statements hold SymPy
objects, never source text: targets are symbols (loss) or indexed elements (z1[n, j]), values
are expressions, shapes are tuples of sizes, loop indices are integer symbols. Three readers share them: the code generator prints
them (``codegen/statements.py``, one ``_print_<Node>`` method per node type), passes rewrite
them (``codegen/scalar_step.py``), and the interpreter (``symbolic/interpret.py``) runs them at
a source's sizes in exact arithmetic and writes each assignment as a transcript line. They
live here, on the symbolic side, so the transcript can read them without importing codegen.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import sympy as sp


# ---- the values statements name ---------------------------------------------------------
Element = sp.Symbol | sp.Indexed  # a scalar local (loss, zmax) or one element of an array (z1[n, j])


def index(name: str) -> sp.Symbol:
    """A loop index (n, i, j, k): an integer symbol."""
    return sp.Symbol(name, integer=True)


def local(name: str) -> sp.Symbol:
    """A scalar the kernel keeps in a local variable (loss, zmax, centred)."""
    return sp.Symbol(name)


def array(name: str) -> sp.Symbol:
    """A whole array of the kernel, where a statement names it (a helper's argument, a matrix
    product's output: z1, dW1); its elements are ``element``s."""
    return sp.Symbol(name)


def arrays(*names: str) -> tuple:
    return tuple(map(array, names))


@functools.lru_cache(maxsize=4096)
def element(array: str, *indices) -> sp.Indexed:
    """array[indices]: each index a loop index's name or a whole number (z1[n, 0]). Cached: a
    tiny network's scalar step names each weight several times, and SymPy builds them slowly."""
    return sp.IndexedBase(array)[tuple(index(i) if isinstance(i, str) else sp.Integer(i) for i in indices)]


class Token(sp.Function):
    """A stored number used as an index: a token id X[n, t] picking a row of an embedding's
    table. The kernel indexes with int(X[n, t]); the interpreter reads the element's value."""

    nargs = 1
    is_integer = True

    def _sympystr(self, printer):
        return f"int({printer._print(self.args[0])})"


class Size(sp.Function):
    """The number of elements of an array (its .size), where a loop runs over a flat array."""

    nargs = 1


def _typed(node, **values):
    """Statements carry SymPy objects, never source text: a string here is a lowering bug."""
    for field_name, value in values.items():
        if isinstance(value, str):
            raise TypeError(f"{type(node).__name__}.{field_name} is the text {value!r}; "
                            "statements hold SymPy objects (statements.element, local, index)")


def parts(target: Element) -> tuple[str, tuple | None]:
    """(array name, indices) of an element; (name, None) of a scalar local."""
    if isinstance(target, sp.Indexed):
        return target.base.label.name, target.indices
    return target.name, None


def as_written(function, *args):
    """An expression kept in the order it is written, for the kernel's bookkeeping
    (loss / N, (1 - m) r + m mean): printed operand by operand, so the kernel computes exactly
    this, not SymPy's rearrangement of it."""
    return function(*args, evaluate=False)


def ratio(numerator, denominator):
    """numerator / denominator, as written."""
    return as_written(sp.Mul, numerator, as_written(sp.Pow, denominator, -1))


def difference(a, b):
    """a - b, as written."""
    return as_written(sp.Add, a, as_written(sp.Mul, -1, b))


class _GradientText(sp.printing.str.StrPrinter):
    """A rule as a backward statement's comment reads it: each gradient array d<name> as
    dL/d<name>, each sum as sum_i over its index."""

    printmethod = "_gradient_text"  # not Indexed's own _sympystr

    def _print_Indexed(self, expr):
        name = expr.base.label.name
        return f"{'dL/' if name.startswith('d') else ''}{name}[{', '.join(map(self._print, expr.indices))}]"

    def _print_Mul(self, expr):
        """The gradients first, as the chain rule writes them: dL/da1[n, t, j] * Wh1[m, j];
        attention's scale as written, / sqrt(dk)."""
        scale = sp.Mul(*(f for f in expr.args if f.is_number))
        if scale.is_positive and not scale.is_rational and (1 / scale**2).is_Integer:
            return f"{self._print(expr / scale)} / sqrt({1 / scale**2})"
        gradients = [f for f in expr.args if isinstance(f, sp.Indexed) and f.base.label.name.startswith("d")]
        if not gradients:
            return super()._print_Mul(expr)
        rest = sp.Mul(*(f for f in expr.args if f not in gradients))
        text = " * ".join(map(self._print, gradients))
        if rest == 1:
            return text
        if rest == -1:
            return f"-{text}"
        return f"{text} * {self.parenthesize(rest, sp.printing.precedence.PRECEDENCE['Mul'], strict=True)}"

    def _print_Sum(self, expr):
        over = ",".join(str(limit[0]) for limit in expr.limits)
        body = self._print(expr.function)
        return f"sum_{over} ({body})" if isinstance(expr.function, sp.Add) else f"sum_{over} {body}"


def gradient_comment(target, rule) -> str:
    """"dL/dhs1[n, 2, m] = sum_j dL/da1[n, 3, j] * Wh1[m, j]": a backward statement's comment, the
    partial derivative it computes, from the rule it was lowered from (the kernel may read a
    product in place of the sum)."""
    printer = _GradientText()
    return f"{printer.doprint(target)} = {printer.doprint(rule)}"


def gradient_let(target, value, note=None) -> "Let":
    """target = value in a backward pass, with the partial derivative it computes as its comment."""
    return Let(target, value, comment=gradient_comment(target, value), note=note)


# ---- statements -------------------------------------------------------------------------
@dataclass(frozen=True)
class Comment:
    """# text"""

    text: str


@dataclass(frozen=True)
class Let:
    """target = value, the kernel's own bookkeeping (K = 4, loss = 0, loss = loss / N, zmax =
    max(zmax, z[n, k])); ``augmented``: target += value. value is a SymPy expression (built
    ``as_written`` where the order of operations matters) or a whole number (a size, K = 4)."""

    target: Element
    value: sp.Basic | int
    augmented: bool = False
    comment: str = ""
    note: object = field(default=None, hash=False, compare=False)  # the transcript's note (a Text), not printed

    def __post_init__(self):
        _typed(self, target=self.target, value=self.value)


@dataclass(frozen=True)
class Allocate:
    """target = a new array of the given shape in X's dtype (zeros, or left uninitialised)."""

    target: sp.Symbol
    shape: tuple
    zeros: bool = False
    comment: str = ""


@dataclass(frozen=True)
class Assignments:
    """target = expression for several targets at once, so they share subexpressions (CSE).

    ``names`` renames the expressions' symbols to the values the kernel reads (x -> z1[n, j],
    by the symbol's name); ``comments`` gives a comment per target; targets in ``accumulate``
    are added to (+=); ``row`` prefixes indexed values with a row index (y[k] -> y[n, k]);
    ``scalar`` prints the straight-line variants of the helpers (see printer.SCALAR_VARIANTS);
    ``notes`` and ``upstream`` are read by the interpreter, not printed."""

    pairs: tuple[tuple[Element, sp.Basic], ...]
    names: dict = field(default_factory=dict, hash=False, compare=False)
    comments: dict = field(default_factory=dict, hash=False, compare=False)
    accumulate: frozenset = frozenset()
    row: sp.Symbol | None = None
    scalar: bool = False
    # for readers other than the printer (symbolic/interpret.py): the note a transcript gives
    # each target's first line (a bilingual Text), and the name (in ``names``) of the upstream
    # gradient whose rules here are upstream times a local derivative, so a transcript can
    # write the local derivative and the chain-rule product as lines of their own
    notes: dict = field(default_factory=dict, hash=False, compare=False)
    upstream: str | None = None
    zero_outside: bool = False  # reads outside an array are 0 (a padded input, a window's weights)

    def __post_init__(self):
        _typed(self, **{f"target {i}": t for i, (t, _) in enumerate(self.pairs)},
               **{f"names[{k!r}]": v for k, v in self.names.items()})


@dataclass(frozen=True)
class Accumulate:
    """target += expression, printed as it is (no shared subexpressions to find): the body of
    a reduction loop."""

    target: Element
    expr: sp.Basic
    names: dict = field(default_factory=dict, hash=False, compare=False)
    row: sp.Symbol | None = None


@dataclass(frozen=True)
class Call:
    """function(args) for a compiled helper that works in place (_conv2d_forward(X, W1, ...)):
    args are arrays (symbols) and whole numbers. ``means`` says what the helper computes,
    element by element, as statements (the derived index rules): the interpreter runs those,
    the printer prints the call. ``writes`` names the arguments it writes (its outputs), so a
    walk over statements knows what a call gives as well as what it reads."""

    function: str
    args: tuple
    comment: str = ""
    means: tuple = field(default=(), hash=False, compare=False)
    writes: tuple = ()


@dataclass(frozen=True)
class MatrixInto:
    """out = a matrix rule (X W + 1 b, X^T dY, 1^T dY, ...), written into the preallocated array
    out; ``names`` maps the rule's matrix symbols to the arrays (symbols) they are. A product
    plus a bias row (X W + 1 b) is two steps in a kernel, the product and then the bias added
    in place: ``comment`` is then one comment per step."""

    rule: sp.Basic
    out: sp.Symbol
    names: dict = field(default_factory=dict, hash=False, compare=False)
    small_matrices: bool = False  # tiny matrices: plain loops instead of a BLAS call
    comment: str | tuple[str, ...] = ""
    note: object = field(default=None, hash=False, compare=False)  # the transcript's note (a Text), not printed


class Slab(sp.Function):
    """array[:, t, :]: one step's (N, width) matrix of a sequence buffer (N, steps, width)."""

    nargs = 2


class Part(sp.Function):
    """array[i]: the matrix an array holds at index i of its first axis (one example's
    (T, width) matrix, one step's contribution to a weight's gradient)."""

    nargs = 2


class Columns(sp.Function):
    """array[:, start:start + width]: a block of columns (step t's inputs in a flat sequence X)."""

    nargs = 3


class Steps(sp.Function):
    """array[:, start:stop, :] copied into one contiguous block: steps start..stop-1 of a
    sequence buffer (N, steps, width), so that ``Rows`` reads them as one matrix (every step's
    term of a weight's gradient in one product)."""

    nargs = 3


class Rows(sp.Function):
    """A C-ordered array read as a matrix of rows of ``width`` elements (X (N, T*D) as the
    (N*T, D) matrix of every step's inputs)."""

    nargs = 2


class Ones(sp.Function):
    """A vector of ``count`` ones in the kernel's dtype: ones^T A sums A's rows (a bias's
    gradient over every row and step)."""

    nargs = 1


class Transposed(sp.Function):
    """The transpose of a matrix operand (Wh^T, a slab's transpose)."""

    nargs = 1


@dataclass(frozen=True)
class MatrixProduct:
    """out = left right (out += left right where ``accumulate``): the sums of several ``Summed``
    statements computed at once, over the whole batch (one BLAS call instead of a loop per
    element). Operands are arrays or their views (``Slab``, ``Part``, ``Columns``, ``Steps``,
    ``Rows``, ``Transposed``, ``Ones``); out is an array or a view whose rows are strided (a
    step's ``Slab``, a head's block of ``Columns``), written in place.

    The interpreter skips it: the ``Summed`` statements that read its elements say, element by
    element, what it computes, and the transcript writes those."""

    out: sp.Basic
    left: sp.Basic
    right: sp.Basic
    accumulate: bool = False
    comment: str = ""


@dataclass(frozen=True)
class Summed:
    """target = a derived index rule with sums (a recurrent step's pre-activation, an attention
    score) where ``MatrixProduct`` statements before it have computed the sums for the whole
    batch: the kernel writes ``value``, the rule with each sum read from its product (nothing,
    where the product wrote the target itself); the interpreter runs ``means``, the sums term by
    term, so the transcript writes the whole sum as the target's formula."""

    target: Element
    value: sp.Basic
    means: tuple = field(hash=False, compare=False)
    comment: str = field(default="", hash=False, compare=False)


def product_and_bias(rule) -> tuple[sp.Basic, sp.Basic | None]:
    """(X W, b) of a rule X W + 1 b (or X W + 1 b 1, a shared bias); (rule, None) of any other."""
    if not isinstance(rule, sp.MatAdd):
        return rule, None
    products = [t for t in rule.args if not t.has(sp.OneMatrix)]
    biases = [t for t in rule.args if t.has(sp.OneMatrix)]
    if len(products) != 1 or len(biases) != 1:
        raise ValueError(f"not a product plus a bias row: {rule}")
    (bias,) = [a for a in biases[0].args if isinstance(a, sp.MatrixSymbol)]
    return products[0], bias


@dataclass(frozen=True)
class Loop:
    """for index in range(start, stop): body

    ``in_locals`` names arrays whose elements the body both writes and reads in one pass (an
    LSTM step's gate gradients, read only by the chain-rule lines after them): the kernel keeps
    each in a scalar local named after its array, never an array in memory (storing and
    reloading them cost a hidden-256 LSTM step on a workspace 3-7 ms). Other readers, the
    transcript among them, see the elements as written."""

    index: sp.Symbol
    stop: sp.Basic | int
    body: tuple
    start: int = 0
    in_locals: tuple[str, ...] = ()

    def __post_init__(self):
        _typed(self, index=self.index, stop=self.stop)


# ---- functions: what a kernel is, around its statements ------------------------------------
class Flat(sp.Function):
    """A flat view of an array (every element in one axis), where a helper takes any rank."""

    nargs = 1


class Real(sp.Function):
    """value as a number of the kernel's real type (``DtypeOf``): the learning rate, real(lr)."""

    nargs = 1


class Axis(sp.Function):
    """The size of one axis of an array (a kernel's window from its weights' shape)."""

    nargs = 2


class InDtype(sp.Function):
    """value as a number of array's element type (the learning rate in the parameters' dtype)."""

    nargs = 2


@dataclass(frozen=True)
class Blank:
    """An empty line between a function's parts."""


@dataclass(frozen=True)
class DtypeOf:
    """real: the element type of ``array``, in which every number of the kernel is written."""

    array: sp.Symbol


@dataclass(frozen=True)
class ShapeOf:
    """The sizes of ``array``'s leading axes into locals (N = X.shape[0]; N, F = x.shape)."""

    sizes: tuple
    array: sp.Symbol


@dataclass(frozen=True)
class View:
    """target = array[start:stop] in ``shape``: a parameter's view of a packed vector."""

    target: sp.Symbol
    array: sp.Symbol
    start: int
    stop: int
    shape: tuple


@dataclass(frozen=True)
class Copy:
    """Every element of source into target, of the same size (a flattened image), or a matrix
    operand (``Transposed``) into an array of its shape."""

    target: sp.Symbol
    source: sp.Basic


@dataclass(frozen=True)
class Invoke:
    """results = function(args): a call of another function of the same module (a kernel, the
    update), not a helper the backend brings; ``results`` is () for none."""

    function: str
    args: tuple
    results: tuple = ()


@dataclass(frozen=True)
class Return:
    """return values (one value, a tuple of them, or a call's result)."""

    values: tuple


@dataclass(frozen=True)
class Function:
    """def name(params): body, as the backend writes a function. ``compiled``: a kernel the
    backend compiles ("kernel"), one compiled without releasing the GIL ("holding_gil"), or
    None for a plain function of the module."""

    name: str
    params: tuple
    body: tuple
    doc: str = ""
    compiled: str | None = "kernel"
