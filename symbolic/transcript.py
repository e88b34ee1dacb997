"""Transcripts: a worked example as named quantities, each a formula over earlier quantities.

A builder ``define``s each quantity by its formula (a SymPy expression over the symbols of
earlier quantities, or a ``Chain`` of products of them); its value is computed here by
substituting the earlier *exact* values into that very formula, so the printed formula and
the printed number cannot disagree. Values stay exact SymPy numbers (Rationals, and exact
expressions such as sigmoid(77/200)); only printing rounds them, to ``digits`` significant
digits. The same transcript renders as Markdown with LaTeX, plain text, or JSON, in English
or Chinese (the seed articles' terms: 前向传播, 反向传播, 链式法则, 偏导数, 学习率 ...).
"""
from __future__ import annotations

import json
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy as sp
from sympy.printing.latex import LatexPrinter

from .errors import SympropError
from .magnitude import TooLarge, check_bounded
from .markup import md_text
from .render import PlainPrinter, typeset_name
from .text import Text, tr

PRECISION = 60  # decimal digits used to evaluate exact values before rounding them for print
# A Rational longer than this (numerator and denominator together, in bits: about 2,000 digits)
# is carried on as a PRECISION-digit number instead: with "1/3" as the learning rate the exact
# values of a 30-step run would double in length every step and take minutes to print.
MAX_EXACT_BITS = 6700
JSON_DIGITS = 40  # significant digits of "value" in JSON
LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class Chain:
    """A sum of products of named quantities: the chain rule written out, factor by factor."""

    terms: tuple[tuple[str, ...], ...]


def read_keys(formula) -> set[str]:
    """The keys of the quantities a formula (or a Chain) reads."""
    if isinstance(formula, Chain):
        return {k for term in formula.terms for k in term}
    return {s.name for s in formula.free_symbols}  # MatrixSymbols included


@dataclass
class Quantity:
    key: str  # stable name, used in JSON and by the checker
    text: str  # how plain text writes it
    latex: str
    formula: object  # SymPy expression over earlier quantities' symbols, a Chain, or None (given)
    value: object  # exact SymPy number or Matrix
    unrounded: object = None  # under rounding_intermediates: the value before it was rounded
    result_of: object = None  # Text: a given that is the result of a computation (training), not an input


@dataclass
class Show:
    """Print one quantity: lhs = formula = formula with numbers = value."""

    key: str
    note: Text | None = None
    numbers: bool = True


@dataclass
class Table:
    headers: list[Text]
    rows: list[list[object]]  # str, Text or SymPy number


@dataclass
class Transcript:
    name: str
    title: Text
    intro: Text | None = None
    quantities: dict[str, Quantity] = field(default_factory=dict)
    blocks: list = field(default_factory=list)

    # --- building ---------------------------------------------------------------------
    def symbol(self, key: str):
        """The symbol standing for quantity ``key`` inside formulas."""
        value = self.quantities[key].value
        if isinstance(value, sp.MatrixBase):
            return sp.MatrixSymbol(key, *value.shape)
        return sp.Symbol(key)

    def given(self, key, value, text=None, latex=None, show=False, note=None, result_of=None):
        """A quantity the example starts from (input, weight, target, learning rate); with
        ``result_of`` (a Text such as "100 epochs of SGD") one computed outside the formulas."""
        value = sp.ImmutableMatrix(value) if isinstance(value, (list, sp.MatrixBase)) else sp.sympify(value)
        if FLOAT32.get() and not isinstance(value, sp.MatrixBase):
            value = to_float32(value)
        self._add(Quantity(key, text or key, latex or _latex_name(key), None, value, result_of=result_of))
        if show:
            self.blocks.append(Show(key, note, numbers=False))
        return self.symbol(key)

    def define(self, key, formula, text=None, latex=None, note=None, show=True):
        """A quantity computed from earlier ones by ``formula``; its value is the formula's."""
        try:
            value = unrounded = self.evaluate(formula)
        except TooLarge as exc:
            raise SympropError(f"{key} = {formula} is too large to compute at the given values: {exc}") from None
        if not isinstance(value, sp.MatrixBase) and not value.is_finite:
            raise SympropError(f"{key} = {formula} is not a finite number ({value}): check the inputs")
        if any(v.is_extended_real is False for v in (value if isinstance(value, sp.MatrixBase) else [value])):
            raise SympropError(f"{key} = {formula} is not a real number ({sp.N(value, 4)}){self._negative_in(formula)}: "
                               "a hand calculation needs real values; check the inputs, the activation and the loss")
        decimals = ROUND_INTERMEDIATES.get()
        if decimals is not None and not isinstance(value, sp.MatrixBase):
            value = round_half_up(value, decimals)
        if FLOAT32.get() and not isinstance(value, sp.MatrixBase):
            value = to_float32(value)
        self._add(Quantity(key, text or key, latex or _latex_name(key), formula, value,
                           unrounded if decimals is not None else None))
        if show:
            self.blocks.append(Show(key, note))
        return self.symbol(key)

    def evaluate(self, formula, values=None):
        """The formula's value from the earlier quantities' values (``values``: key -> value
        overrides them, e.g. a learner's own numbers)."""
        lookup = lambda key: values[key] if values is not None and key in values else self.quantities[key].value  # noqa: E731
        if isinstance(formula, Chain):
            return carry(sp.Add(*[sp.Mul(*[lookup(k) for k in term]) for term in formula.terms]))
        substitution = {}
        for s in formula.free_symbols | set(formula.atoms(sp.MatrixSymbol)):
            if s.name not in self.quantities:
                raise KeyError(f"formula uses {s.name!r}, which is not defined yet")
            substitution[s] = lookup(s.name)
        result = formula.xreplace(substitution)
        if isinstance(result, (sp.MatrixExpr, sp.MatrixBase)):
            return sp.ImmutableMatrix(result.doit()).applyfunc(carry)
        return carry(result.doit())

    def _negative_in(self, formula) -> str:
        """", because log(1 - h1) takes log of -0.3": the first log or root of a negative number."""
        if isinstance(formula, Chain):
            return ""
        for node in sp.preorder_traversal(formula):
            if isinstance(node, sp.log) or (isinstance(node, sp.Pow) and not node.exp.is_integer):
                argument = node.args[0]
                value = sp.N(self.evaluate(argument), 4) if argument.free_symbols else sp.N(argument, 4)
                if value.is_extended_negative:
                    kind = ("log" if isinstance(node, sp.log) else "square root" if node.exp == sp.S.Half
                            else f"power {node.exp}")
                    return f", because {node} takes the {kind} of {value}"
        return ""

    def heading(self, text: Text):
        self.blocks.append(text)

    def note(self, text: Text):
        self.blocks.append(("note", text))

    def table(self, headers, rows):
        self.blocks.append(Table(headers, rows))

    def _add(self, q: Quantity):
        if q.key in self.quantities:
            raise KeyError(f"quantity {q.key!r} defined twice")
        self.quantities[q.key] = q

    def value(self, key):
        return self.quantities[key].value

    def float_value(self, key) -> float:
        return float(sp.N(self.quantities[key].value, PRECISION))

    # --- rendering --------------------------------------------------------------------
    def render(self, fmt: str = "md", digits: int = 4, lang: str = "en", figure_svg: str | None = None) -> str:
        """The transcript as "md" (Markdown with LaTeX), "text", "json" or "html" (one
        self-contained page, formulas as MathML; ``figure_svg``: a picture to show inline)."""
        if fmt == "json":
            return json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"
        if fmt == "html":
            from .html_page import page

            return page(self.render("md", digits, lang), lang, figure_svg)
        return _Renderer(self, digits, lang, markdown=(fmt == "md")).render()

    def _repr_markdown_(self) -> str:
        """Jupyter shows a transcript as its Markdown (formulas through the notebook's MathJax)."""
        return self.render("md")

    def __repr__(self) -> str:
        return (f"<Transcript {self.name!r}: {len(self.quantities)} quantities; "
                f'.render("md" | "text" | "json" | "html", digits, lang)>')

    def to_json(self) -> dict:
        return {
            "example": self.name,
            "title": self.title.en,
            "quantities": {key: _quantity_json(self, q) for key, q in self.quantities.items()},
        }


# --- numbers -------------------------------------------------------------------------------

# When set (by the checker), every computed value is rounded to this many decimals before the
# next step uses it: how a hand calculation that copies rounded numbers forward proceeds.
ROUND_INTERMEDIATES: ContextVar[int | None] = ContextVar("ROUND_INTERMEDIATES", default=None)


@contextmanager
def rounding_intermediates(decimals: int):
    token = ROUND_INTERMEDIATES.set(decimals)
    try:
        yield
    finally:
        ROUND_INTERMEDIATES.reset(token)


# When set (by the checker), every given and computed value is rounded to the nearest float32:
# a learner's program that does the whole calculation in float32 (PyTorch's default dtype).
FLOAT32: ContextVar[bool] = ContextVar("FLOAT32", default=False)


@contextmanager
def in_float32():
    token = FLOAT32.set(True)
    try:
        yield
    finally:
        FLOAT32.reset(token)


def to_float32(value) -> sp.Rational:
    """The float32 nearest to ``value``, as an exact Rational."""
    return sp.Rational(float(np.float32(float(sp.N(value, 30)))))


def round_half_up(value, decimals: int) -> sp.Rational:
    scale = sp.Integer(10) ** decimals
    return sp.Integer(sp.floor(sp.sympify(value) * scale + sp.Rational(1, 2))) / scale


def carry(value):
    """Rationals stay exact; anything transcendental (sigmoid(77/200), log 2) is evaluated to
    PRECISION significant digits, so later formulas never nest ever-growing expressions."""
    value = sp.sympify(value)
    if value.is_Rational and value.p.bit_length() + value.q.bit_length() <= MAX_EXACT_BITS:
        return value
    if not value.is_Rational:
        check_bounded(value)  # exp(exp(exp(400))) would send mpmath after 10^173 digits
    result = value.evalf(PRECISION)
    if not result.is_number:
        raise ValueError(f"value {value} is not a number")
    return result


def rounded(value, digits: int) -> str:
    """``value`` to ``digits`` significant digits (integers and short decimals as they are)."""
    if isinstance(value, sp.MatrixBase):
        rows = [[rounded(v, digits) for v in value.row(i)] for i in range(value.rows)]
        return "[" + ", ".join("[" + ", ".join(r) + "]" for r in rows) + "]"
    value = sp.sympify(value)
    if value.is_Integer:
        return str(value)
    if value in NON_FINITE:  # a float32 or float64 program's overflow (graph files with a dtype)
        return NON_FINITE[value]
    number = mpmath.mpmathify(sp.N(value, PRECISION))
    text = mpmath.nstr(number, digits, min_fixed=-6, max_fixed=9)
    return text[:-2] if text.endswith(".0") else text


NON_FINITE = {sp.oo: "inf", -sp.oo: "-inf", sp.nan: "nan"}


def is_exact_in_print(value, digits: int) -> bool:
    """True when the rounded print equals the value (so '=' rather than '≈')."""
    if isinstance(value, sp.MatrixBase):
        return all(is_exact_in_print(v, digits) for v in value)
    value = sp.sympify(value)
    if not value.is_Rational:
        return False
    return sp.Rational(rounded(value, digits)) == value


def full_precision(value):
    if isinstance(value, sp.MatrixBase):
        return [[full_precision(v) for v in value.row(i)] for i in range(value.rows)]
    value = sp.sympify(value)
    if value.is_Integer:
        return str(value)
    if value in NON_FINITE:
        return NON_FINITE[value]
    return mpmath.nstr(mpmath.mpmathify(sp.N(value, PRECISION)), JSON_DIGITS, min_fixed=-6, max_fixed=9)


def _quantity_json(t: Transcript, q: Quantity) -> dict:
    entry = {"text": q.text}
    if isinstance(q.formula, Chain):
        entry["formula"] = _chain_plain(t, q.formula)
        entry["factors"] = [list(term) for term in q.formula.terms]
    elif q.formula is not None:
        entry["formula"] = _SubstitutingPlain(t, None).doprint(q.formula)
    entry["value"] = full_precision(q.value)
    if isinstance(q.value, sp.MatrixBase):
        if all(v.is_Rational for v in q.value):
            entry["exact"] = [[str(v) for v in q.value.row(i)] for i in range(q.value.rows)]
    elif q.value.is_Rational:
        entry["exact"] = str(q.value)
    return entry


# --- printers: a quantity's symbol printed as its name or as its rounded value ------------

def _latex_name(key: str) -> str:
    """LaTeX for a quantity key: net_h1 -> net_{h_{1}}, dE/db22 -> dE/db_{22} as a fraction,
    b22_new -> b_{22}^{new}, step2:b22 -> {b_{22}}^{[2]} (the values of step 2)."""
    step = re.match(r"step(\d+):", key)
    if step:
        return "{" + _latex_name(key[step.end():]) + "}^{[" + step.group(1) + "]}"
    if key.startswith("d") and "/d" in key:
        top, bottom = key[1:].split("/d", 1)
        return rf"\frac{{\partial {_latex_name(top)}}}{{\partial {_latex_name(bottom)}}}"
    for suffix, mark in (("_new", r"^{\mathrm{new}}"),):
        if key.endswith(suffix):
            return _latex_name(key[: -len(suffix)]) + mark
    return typeset_name(key)



class _SubstitutingPlain(PlainPrinter):
    """Plain text; with ``digits`` set, every quantity symbol is printed as its rounded value."""

    def __init__(self, transcript, digits):
        super().__init__({"order": "none"})
        self.t, self.digits = transcript, digits

    def _name(self, name):
        q = self.t.quantities.get(name)
        if q is None:
            return name
        if self.digits is None:
            return q.text
        text = rounded(q.value, self.digits)
        return f"({text})" if text.startswith("-") else text

    def _print_Symbol(self, expr):
        return self._name(expr.name)

    _print_MatrixSymbol = _print_Symbol


class _SubstitutingLatex(LatexPrinter):
    def __init__(self, transcript, digits):
        super().__init__({"mul_symbol": "dot", "order": "none"})
        self.t, self.digits = transcript, digits

    def _name(self, name):
        q = self.t.quantities.get(name)
        if q is None:
            return typeset_name(name)
        if self.digits is None:
            return q.latex
        value = q.value
        if isinstance(value, sp.MatrixBase):
            return _latex_matrix(value, self.digits)
        text = rounded(value, self.digits)
        return rf"\left({text}\right)" if text.startswith("-") else text

    def _print_Symbol(self, expr, style="plain"):
        return self._name(expr.name)

    _print_MatrixSymbol = _print_Symbol

    def _print_Pow(self, expr):
        """A power of a name that is a fraction or has a superscript of its own (dE/db11,
        b11^new) needs brackets: \frac{...}{...}^{2} reads ambiguously and x^{new}^{2} is no LaTeX."""
        if isinstance(expr.base, sp.Symbol) and expr.exp.is_Integer and expr.exp > 1:
            name = self._name(expr.base.name)
            if "\\frac" in name or "^" in name:
                return rf"\left({name}\right)^{{{self._print(expr.exp)}}}"
        return super()._print_Pow(expr)


def _latex_matrix(value, digits):
    rows = [" & ".join(rounded(v, digits) for v in value.row(i)) for i in range(value.rows)]
    return r"\begin{bmatrix}" + r" \\ ".join(rows) + r"\end{bmatrix}"


def _chain_plain(t, chain: Chain, digits=None) -> str:
    printer = _SubstitutingPlain(t, digits)
    return " + ".join(" * ".join(printer._name(k) for k in term) for term in chain.terms)


def _chain_latex(t, chain: Chain, digits=None) -> str:
    printer = _SubstitutingLatex(t, digits)
    return " + ".join(r" \cdot ".join(printer._name(k) for k in term) for term in chain.terms)


# --- the renderer ----------------------------------------------------------------------------

class _Renderer:
    def __init__(self, t: Transcript, digits: int, lang: str, markdown: bool):
        self.t, self.digits, self.lang, self.md = t, digits, lang, markdown

    def words(self, text: Text, block: bool = False) -> str:
        """A sentence in the chosen language; in Markdown, escaped so that it is only text
        (titles, descriptions and notes come from users' files)."""
        return md_text(text(self.lang), block) if self.md else text(self.lang)

    def render(self) -> str:
        lines = [f"# {self.words(self.t.title)}" if self.md else self.t.title(self.lang)]
        if not self.md:
            lines.append("=" * min(78, display_width(lines[0])))
        lines.append("")
        if self.t.intro:
            lines += [self.words(self.t.intro, block=True), ""]
        self.notes_shown = set()
        for block in self.t.blocks:
            if isinstance(block, Text):
                self.notes_shown = set()  # each section states a note once
                lines += (["", f"## {self.words(block)}", ""] if self.md
                          else ["", block(self.lang), "-" * min(78, display_width(block(self.lang)))])
            elif isinstance(block, tuple) and block[0] == "note":
                lines += ["", self.words(block[1], block=True), ""] if self.md else ["  " + block[1](self.lang)]
            elif isinstance(block, Show):
                lines.append(self.show(block))
            elif isinstance(block, Table):
                lines += self.table(block)
        text = "\n".join(lines)
        while "\n\n\n" in text:
            text = text.replace("\n\n\n", "\n\n")
        return text.strip() + "\n"

    def note(self, block: Show) -> str:
        if block.note is None or block.note in self.notes_shown:
            return ""
        self.notes_shown.add(block.note)
        return f" ({self.words(block.note)})" if self.md else f"   ({block.note(self.lang)})"

    def show(self, block: Show) -> str:
        q = self.t.quantities[block.key]
        exact = is_exact_in_print(q.value, self.digits)
        formula = q.formula
        if formula is not None and not isinstance(formula, Chain) and not formula.free_symbols:
            formula = None  # a number: print it once
        if self.md:
            parts = [q.latex]
            if formula is not None:
                parts.append(self.formula_latex(formula, None))
                if block.numbers and not _is_single_symbol(formula):
                    parts.append(self.formula_latex(formula, self.digits))
            value = (_latex_matrix(q.value, self.digits) if isinstance(q.value, sp.MatrixBase)
                     else rounded(q.value, self.digits))
            equation = " = ".join(parts) + (" = " if exact else r" \approx ") + value
            return f"- ${equation}${self.note(block)}"
        parts = [q.text]
        if formula is not None:
            parts.append(self.formula_plain(formula, None))
            if block.numbers and not _is_single_symbol(formula):
                parts.append(self.formula_plain(formula, self.digits))
        equation = " = ".join(parts) + (" = " if exact else " ≈ ") + rounded(q.value, self.digits)
        return f"  {equation}{self.note(block)}"

    def formula_latex(self, formula, digits):
        if isinstance(formula, Chain):
            return _chain_latex(self.t, formula, digits)
        text = _SubstitutingLatex(self.t, digits).doprint(formula)
        # a negative number as a function's only argument needs no second pair of parentheses
        return re.sub(r"\\left\(\\left\((-[^\\]*)\\right\)\\right\)", r"\\left(\1\\right)", text)

    def formula_plain(self, formula, digits):
        if isinstance(formula, Chain):
            return _chain_plain(self.t, formula, digits)
        text = _SubstitutingPlain(self.t, digits).doprint(formula)
        return re.sub(r"\(\((-[0-9.e+-]*)\)\)", r"(\1)", text)

    def cell(self, value) -> str:
        if isinstance(value, Text):
            return self.words(value)
        if isinstance(value, str):
            return md_text(value) if self.md else value
        return rounded(value, self.digits)

    def table(self, table: Table) -> list[str]:
        headers = [self.words(h) for h in table.headers]
        rows = [[self.cell(c) for c in row] for row in table.rows]
        if self.md:
            out = ["", "| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
            out += ["| " + " | ".join(r) + " |" for r in rows]
            return out + [""]
        widths = [max(display_width(x) for x in col) for col in zip(headers, *rows)]
        fmt = lambda r: "  " + "  ".join(" " * (w - display_width(x)) + x for x, w in zip(r, widths))  # noqa: E731
        return ["", fmt(headers), fmt(["-" * w for w in widths]), *map(fmt, rows), ""]


def display_width(text: str) -> int:
    """Display width: CJK characters take two columns."""
    return sum(2 if "\u2e80" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" else 1 for ch in text)


def _is_single_symbol(formula) -> bool:
    if isinstance(formula, Chain):
        return len(formula.terms) == 1 and len(formula.terms[0]) == 1
    return isinstance(formula, (sp.Symbol, sp.MatrixSymbol))


def attach_notes(t: Transcript, source: str, notes: dict, notes_zh: dict, note_lines: dict):
    """A file's [notes] / [notes_zh]: each remark beside the line its key shows (a key shown
    twice, e.g. a local partial that is also a gradient: the first). A key no line shows is
    refused, naming the file, line and field."""
    shown = {}
    for block in t.blocks:
        if isinstance(block, Show):
            shown.setdefault(block.key, block)
    for key in [*notes, *(k for k in notes_zh if k not in notes)]:
        if key not in shown:
            line = note_lines.get(key)
            section = "notes" if key in notes else "notes_zh"
            raise SympropError(f"{source}" + (f", line {line}" if line else "") + f", field '{section}.{key}': "
                               f"no line of the transcript shows {key!r} (shown: {', '.join(list(shown)[:12])}, ...)")
        en = notes.get(key, "")
        shown[key].note = tr(en or notes_zh[key], notes_zh.get(key, en))
