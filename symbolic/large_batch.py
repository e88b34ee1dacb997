"""The transcript of a net spec on a large batch: the first rows exact, the batch's sums in float64.

An exact transcript writes every element of every row and every sum over the rows as an exact
number, and its cost grows faster than the rows (100 rows took seconds, 1,000 rows minutes).
A batch of more than EXACT_ROWS rows is written as its first SHOWN_ROWS rows, every step exact
as for a small batch (the loss's 1/N is the whole batch's N), while each quantity that sums
over the rows (the loss, the parameters' gradients, the loss after the step) is computed over
all the rows in float64 (float32 under the checker's float32 convention) by the formulas of
one row, vectorised with NumPy: the same formulas the exact transcript prints, as a program
would run them. What follows from those sums (the L2 penalty's gradient, the update) is
exact again from them. A note in the transcript says which numbers are float64.

Batch norm (each feature's mean over the batch) mixes the rows, so no row can be written
without all of them: its transcript stays exact and is refused beyond MAX_MIXING_ROWS rows.
"""
from __future__ import annotations

import functools
import math
import re

import numpy as np
import sympy as sp

from .errors import SympropError
from .graph import Graph
from .graph_transcript import (_array, _describe, _exact, _failing, _mask_names, _shape_text, check_values, one_hot_unit,
                               expected_values, graph_transcript, plan_layers)
from .networkfile import MAX_MAGNITUDE
from .transcript import FLOAT32, ROUND_INTERMEDIATES, Chain, Show, Text, Transcript, read_keys, round_half_up, tr

EXACT_ROWS = 20  # a batch of up to this many rows is written out whole and exactly (the shipped ones have 4)
SHOWN_ROWS = 3  # the rows a larger batch writes out
MAX_MIXING_ROWS = 64  # batch norm's exact transcript at most (its rows cannot be written one by one)

_ELEMENT = re.compile(r"([A-Za-z_]\w*)\[(\d+(?:,\d+)*)\]")


def batch_rows(values) -> int:
    """The rows of X as written (0 when X is not a list: check_values says what is wrong)."""
    x = values.get("X") if isinstance(values, dict) else None
    return len(x) if isinstance(x, list) else 0


def check_batch(graph: Graph, values: dict, where: str = "values", lines: dict | None = None):
    """check_values for a batch of any size: a large batch is checked row by row in floats (a
    10^5-row X read exactly took seconds before any transcript began)."""
    if batch_rows(values) <= EXACT_ROWS:
        check_values(graph, values, where, lines)
    else:
        _checked(graph, values, where, lines)


def large_batch_transcript(graph: Graph, values: dict, learning_rate, name: str, where: str,
                           lines: dict | None, batch_sum: bool, forward_after_step: bool) -> Transcript:
    """graph_transcript of a batch of more than EXACT_ROWS rows (see the module)."""
    rows = batch_rows(values)
    if _mixes_rows(graph):
        if rows > MAX_MIXING_ROWS:
            raise SympropError(f"{where}, field 'X': batch norm averages each feature over the batch, so its "
                               f"transcript writes out every row exactly: at most {MAX_MIXING_ROWS} rows; this "
                               f"batch has {rows}")
        return graph_transcript(graph, values, learning_rate, name, where, lines, batch_sum, forward_after_step,
                                loss_rows=rows)
    head, floats = _checked(graph, values, where, lines)

    def first(n):  # the exact transcript of the first n rows, the loss divided by the whole batch's N
        return graph_transcript(graph, {k: v[:n] if k in floats else v for k, v in head.items()}, learning_rate,
                                name, where, lines, batch_sum, forward_after_step, loss_rows=1 if batch_sum else rows)

    params = {p for layer in plan_layers(graph) for p in layer.params.values()}
    shown = first(SHOWN_ROWS)  # first: a bad written row is refused as in a small batch
    sums = _batch_sums(first(1), floats, params, rows, where)
    dtype = "float32" if FLOAT32.get() else "float64"
    t = Transcript(name, shown.title, tr(
        f"A batch of {rows} rows: the first {SHOWN_ROWS} are written out, every number computed from each "
        "layer's derived rules" + (f"; the sums over all {rows} rows are computed in {dtype} (≈ with no formula)."
                                   if sums else "; the other rows are computed alike."),
        f"批量为 {rows} 行：写出前 {SHOWN_ROWS} 行，每个数都由各层推导出的规则算出"
        + (f"；对全部 {rows} 行的求和以 {dtype} 计算（≈ 且不写公式的数）。" if sums else "；其余各行算法相同。")))
    result = tr(f"the sum over the batch's {rows} rows in {dtype}", f"对批量 {rows} 行的 {dtype} 求和")
    changed = set()
    for key, q in shown.quantities.items():
        if key in sums:
            t.given(key, sums[key], text=q.text, latex=q.latex, result_of=result)
            changed.add(key)
        elif q.formula is not None and read_keys(q.formula) & changed:
            t.define(key, q.formula, text=q.text, latex=q.latex, show=False)  # from the sums, exactly
            changed.add(key)
        else:
            t.quantities[key] = q
    note = tr(f"≈ with no formula: the sum over all {rows} rows of the batch, computed in {dtype} by the formulas "
              f"of one row as a program would (the rows are too many to write out); the first {SHOWN_ROWS} rows "
              "are exact, and so is every step from these sums on",
              f"≈ 且不写公式的数：对批量全部 {rows} 行的求和，按单行的公式以 {dtype} 计算，与程序相同（行数太多，"
              f"无法逐行写出）；写出的前 {SHOWN_ROWS} 行是精确的，由这些和往后的每一步也是精确的")
    noted = False  # in this section
    for block in shown.blocks:
        if isinstance(block, Text):
            noted = False
        if isinstance(block, Show) and block.key in sums and not noted:
            t.note(note)
            noted = True
        t.blocks.append(Show(block.key, block.note, block.numbers) if isinstance(block, Show) else block)
    return t


def _mixes_rows(graph: Graph) -> bool:
    return any(node.op.mixes_rows for node in graph.nodes)


# --- the values: the first rows exact, every row as floats -------------------------------------

def _checked(graph: Graph, values: dict, where: str, lines: dict | None) -> tuple[dict, dict]:
    """The values with each batch array cut to its first SHOWN_ROWS rows, checked exactly
    (check_values: names, shapes, the parameters), and every row of each batch array as a
    float array, checked as check_values would check it, with its messages."""
    line = (lines or {}).get
    shapes = expected_values(graph)
    batch = [k for k, shape in shapes.items() if shape[0] is None and k in values]
    rows = len(values["X"])
    for key in batch:
        if key != "X" and isinstance(values[key], list) and len(values[key]) != rows:
            _failing(where, key, line(key))(f"expected {rows} rows, shape {_shape_text(shapes[key], rows)}; "
                                            f"got {len(values[key])}")
    head = {k: v[:SHOWN_ROWS] if k in batch and isinstance(v, list) else v for k, v in values.items()}
    check_values(graph, head, where, lines)
    floats = {key: _float_rows(values[key], shapes[key], rows, key, where, line(key)) for key in batch}
    for key in _mask_names(graph):
        bad = np.argwhere((floats[key] != 0) & (floats[key] != 1))
        if len(bad):
            n, j = bad[0]
            fail = _failing(where, key, line(key))
            fail(f"a dropout mask holds 0 (dropped) or 1 (kept); got {_exact(values[key][n][j], fail)} at [{n},{j}]")
    for node in graph.nodes:
        if node.op.one_hot_targets:
            width = floats["T"].shape[1]
            group = node.op.one_hot_group(node.args) or width
            targets = floats["T"].reshape(rows, -1, group)
            one_hot = (((targets == 0) | (targets == 1)).all(axis=2) & (targets.sum(axis=2) == 1)).all(axis=1)
            if not one_hot.all():
                n = int(np.argmin(one_hot))
                row = [str(_exact(v, _failing(where, "T", line("T")))) for v in values["T"][n]]
                raise SympropError(f"{where}, field 'T': {node.op.name} takes one-hot targets "
                                   f"({one_hot_unit(group, width)}, the rest 0), as its derivation assumes; "
                                   f"row {n} is {row}")
    return head, floats


def _float_rows(value: list, shape: tuple, rows: int, key: str, where: str, line) -> np.ndarray:
    """Every row of a batch array as float64, each row of the expected shape and each number
    one that check_values would read (an int, a float or a string such as "1/3", finite, at most
    MAX_MAGNITUDE in size); the first that is not is refused with check_values' message."""
    fail = _failing(where, key, line)
    try:
        array = np.array(value, dtype=object)
    except ValueError:  # ragged deeper down
        array = None
    types = set(map(type, array.ravel())) if array is not None else {list}
    if array is None or array.shape != (rows, *shape[1:]) or list in types:
        if len(shape) == 2:  # check_values' message for the first bad row, without reading the others exactly
            expected = _shape_text(shape, "N" if key == "X" else rows)
            for i, row in enumerate(value):
                if not isinstance(row, list) or len(row) != shape[1] or any(isinstance(v, list) for v in row):
                    fail(f"row {i} should hold {shape[1]} numbers, shape {expected}; got {_describe(row)}")
        # images: read exactly, which names what is wrong as a small batch would
        return np.array(_array(value, shape, None if key == "X" else rows, key, where, line), dtype=np.float64)
    flat = array.ravel()
    if types <= {int, float}:
        try:
            numbers = np.asarray(flat, dtype=np.float64)
        except OverflowError:
            numbers = None
        if numbers is not None and np.isfinite(numbers).all() and (np.abs(numbers) <= MAX_MAGNITUDE).all():
            return numbers.reshape(array.shape)
    # a string, a bool, a number out of range: each read as check_values reads it (and refused as it is)
    return np.array([float(_exact(v, fail)) for v in flat], dtype=np.float64).reshape(array.shape)


# --- the sums: one row's formulas over every row ------------------------------------------------

def _per_row(key: str, params: set) -> bool:
    """Whether a key names one row's element (z1[0,1], dL/dz1[0,1], dh1[0,1]/dg1[1], L_n[0],
    z1_new[0,1]) rather than something of the whole batch (L, dL/dW1[0,1], W1_new[0,1], a part
    of a parameter's gradient such as an RNN step's contribution dWh1_step[2,0,1])."""
    for name, _ in _ELEMENT.findall(key):
        base = name.removesuffix("_new")
        if base not in params and not (base.startswith("d") and base[1:].partition("_")[0] in params):
            return True
    return False


def _at_row(key: str, n: int, params: set) -> str:
    """Row 0's key as row n's: z1[0,1] -> z1[7,1], dh1[0,1]/dg1[1] -> dh1[7,1]/dg1[1]."""
    def row(match):
        name, (_, comma, rest) = match.group(1), match.group(2).partition(",")
        return f"{name}[{n}{comma}{rest}]" if _per_row(match.group(0), params) else match.group(0)
    return _ELEMENT.sub(row, key)


def _stable_sigmoid(u):
    e = np.exp(-np.abs(u))
    return np.where(u >= 0, 1 / (1 + e), e / (1 + e))


def _stable_softplus(u):
    return np.maximum(u, 0) + np.log1p(np.exp(-np.abs(u)))


NUMPY = {"Sigmoid": _stable_sigmoid, "sigmoid": _stable_sigmoid, "Softplus": _stable_softplus}


def _batch_sums(one: Transcript, floats: dict, params: set, rows: int, where: str) -> dict[str, sp.Rational]:
    """Each quantity of the one-row transcript ``one`` over every row of the batch: a row's
    quantity as an array of all rows, a quantity of the batch that reads rows (a sum over the
    batch, the mean loss) as the sum of its row formula over the rows. Returns those sums, as
    the float64 (or float32) numbers they are, exactly."""
    dtype = np.float32 if FLOAT32.get() else np.float64
    decimals = ROUND_INTERMEDIATES.get()
    env, sums = {}, {}
    with np.errstate(all="ignore"):
        for key, q in one.quantities.items():
            per_row = _per_row(key, params)
            if q.formula is None:
                if per_row:
                    name, index = _ELEMENT.match(key).groups()
                    column = tuple(int(i) for i in index.split(","))[1:]
                    env[key] = floats[name][(slice(None), *column)].astype(dtype)
                else:
                    env[key] = dtype(float(q.value))
                continue
            value = _evaluate(q.formula, env, dtype)
            summed = not per_row and any(_per_row(k, params) for k in read_keys(q.formula))
            if per_row:
                value = np.broadcast_to(np.asarray(value, dtype=dtype), (rows,))
            elif summed:
                value = dtype(np.sum(value, dtype=dtype))
            else:
                value = dtype(value)
            if decimals is not None:
                value = _round(value, decimals, dtype)
            finite = np.isfinite(value)
            if not np.all(finite):
                name = _at_row(key, int(np.argmin(finite)), params) if per_row else key
                raise SympropError(f"{where}: {name} is not a finite number in {dtype.__name__} (a batch of more "
                                   f"than {EXACT_ROWS} rows is summed in {dtype.__name__}): check the inputs")
            env[key] = value
            if summed:
                sums[key] = sp.Rational(float(value))
                if decimals is not None:
                    sums[key] = round_half_up(sums[key], decimals)
    return sums


def _round(value, decimals: int, dtype):
    """Half up to ``decimals`` (the checker's rounded-intermediates convention, as round_half_up)."""
    scale = 10.0 ** decimals
    return (np.floor(np.asarray(value, dtype=np.float64) * scale + 0.5) / scale).astype(dtype)


def _evaluate(formula, env: dict, dtype):
    """A formula over earlier quantities, each an array of all rows or one number."""
    if isinstance(formula, Chain):
        return sum(math.prod(env[k] for k in term) for term in formula.terms)
    names = sorted(s.name for s in formula.free_symbols)
    arguments = [env[n] for n in names]
    try:
        return _compiled(formula, "numpy")(*arguments)
    except (TypeError, NameError):  # a function NumPy lacks (math.erf): row by row
        one = _compiled(formula, "math")

        def number(*a):
            try:
                return one(*a)
            except (ValueError, OverflowError, ZeroDivisionError):  # refused as not finite, naming the row
                return math.nan
        return np.vectorize(number, otypes=[dtype])(*arguments)


@functools.lru_cache(maxsize=4096)
def _compiled(formula, module: str):
    """The formula as a function of its symbols in sorted order (the checker builds a
    transcript several times over, from the same formulas)."""
    symbols = sorted(formula.free_symbols, key=lambda s: s.name)
    return sp.lambdify(symbols, formula, [NUMPY, module], dummify=True)
