"""Derivations as text (terminal), Markdown with LaTeX, and JSON (formulas SymPy can parse back)."""
from __future__ import annotations

import json
import re

import sympy as sp

from sympy.codegen.cfunctions import expm1, log1p
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from .layers import Derivation, Label
from .markup import md_code, md_text
from .stable import Sigmoid, Softplus

# Names SymPy needs to parse our formula strings back (``sympy.sympify(s, locals=PARSE_LOCALS)``).
PARSE_LOCALS = {"Sigmoid": Sigmoid, "Softplus": Softplus, "log1p": log1p, "expm1": expm1}


class PlainPrinter(StrPrinter):
    """SymPy's str form with the stable functions in lower case, as a reader writes them."""

    def _print_Sigmoid(self, expr):
        return f"sigmoid({self._print(expr.args[0])})"

    def _print_Softplus(self, expr):
        return f"softplus({self._print(expr.args[0])})"


def plain(expr) -> str:
    """Readable one-line form without LaTeX."""
    if isinstance(expr, Label):
        return expr.text
    return PlainPrinter().doprint(expr)


class NameLatexPrinter(LatexPrinter):
    """SymPy's LaTeX with every symbol typeset as a name (``typeset_name``): dout upright."""

    def _print_Symbol(self, expr, style="plain"):
        return typeset_name(expr.name)


def latex(expr) -> str:
    if isinstance(expr, Label):  # a hand-written name: a leading word (dL, dXp_{a,e,u,v}) set upright
        if expr.latex == expr.text:
            return typeset_name(expr.text)
        return re.sub(r"^([A-Za-z]{2,})(?=_|$)", r"\\mathrm{\1}", expr.latex)
    return NameLatexPrinter().doprint(expr)


_MODIFIERS = ("hat", "bar", "tilde", "vec", "dot")
_CHUNKS = re.compile(r"(?:[A-Za-z]+\d+)+[A-Za-z]*\Z")


def typeset_name(name: str) -> str:
    """LaTeX for a name as a reader means it, the same way everywhere: one letter italic with
    its digits as a subscript (w2 -> w_{2}); a word upright, as a name and not a product of
    letters (sum01 -> sum_{01}, dout, target); letters-and-digits pairs each subscripted (w0x0
    -> w_{0} x_{0}); after an underscore, a subscript (mu_j, E_total, out_h1, y_hat -> hat y),
    except between two words, where the name stays whole (add_out, learning_rate); Greek
    letter names as the letters (mu, eta)."""
    indexed = re.fullmatch(r"([A-Za-z][A-Za-z0-9_]*)(\[[\w, +-]*\])", name)
    if indexed:  # dX[p, q]: the name, then its index as written
        return typeset_name(indexed.group(1)) + indexed.group(2)
    if not name or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        return sp.latex(sp.Symbol(name)) if name else name
    parts = [part for part in name.split("_") if part]
    if len(parts) > 1 and all(map(_is_word, parts)):  # add_out, learning_rate: one name
        return r"\mathrm{" + name.replace("_", r"\_") + "}"
    head, subscripts = parts[0], parts[1:]
    if subscripts and subscripts[0] in _MODIFIERS:  # y_hat_test -> hat y, subscript test
        head, subscripts = head + subscripts[0], subscripts[1:]
    numbered = re.fullmatch(r"([A-Za-z]+)(\d+)", head)
    if numbered:  # w2, sum01, xhat11, w1_trained: the digits lead the subscript
        head, subscripts = numbered.group(1), [numbered.group(2), *subscripts]
    base = _typeset_base(head)
    if not subscripts:
        return base
    if "_" in base:  # w0x0_a: the pairs braced, so the subscript is not a second one on x_{0}
        base = "{" + base + "}"
    return base + "_{" + ",".join(sub if sub.isdigit() else typeset_name(sub) for sub in subscripts) + "}"


def _typeset_base(word: str) -> str:
    """A name without underscores or trailing digits: one letter, a Greek letter's name, a word
    (upright), or letters-and-digits pairs (w0x0 -> w_{0} x_{0})."""
    if _CHUNKS.match(word):
        return " ".join(typeset_name(chunk) for chunk in re.findall(r"[A-Za-z]+\d*", word))
    if not word.isalpha():
        return r"\mathrm{" + word + "}"
    translated = sp.latex(sp.Symbol(word))  # Greek letters and SymPy's modifiers (xhat)
    if translated != word or len(word) == 1:
        return translated
    return r"\mathrm{" + word + "}"


def _is_word(part: str) -> bool:
    """A part of a name that is a word of two letters or more, not a Greek letter's name."""
    return len(part) > 1 and part.isalpha() and sp.latex(sp.Symbol(part)) == part


def derivation_text(d: Derivation) -> str:
    lines = [f"{d.layer}: {d.summary}", ""]
    for step in d.steps:
        lines.append(f"  {step.title}:")
        lines.append(f"      {plain(step.lhs)} = {plain(step.rhs)}")
        if step.note:
            lines.append(f"      ({step.note})")
    lines.append("")
    lines.append("  backward rules used by the kernels:")
    for name, rule in d.backward.items():
        lines.append(f"      {name} = {plain(rule)}")
    if d.saved:
        lines.append(f"  saved from the forward pass: {', '.join(d.saved)}")
    for note in d.conventions:
        lines.append(f"  convention: {note}")
    for note in d.stability:
        lines.append(f"  stability: {note}")
    return "\n".join(lines) + "\n"


def derivation_markdown(d: Derivation) -> str:
    """Markdown with LaTeX; the prose escaped (markup.py), so "dY[n,j] * (change in Y)" or a
    user's formula in a title is text, not emphasis or a link."""
    lines = [f"## {md_code(d.layer)}", "", md_text(d.summary, block=True), ""]
    for number, step in enumerate(d.steps, 1):
        note = f" — {md_text(step.note)}" if step.note else ""
        lines.append(f"{number}. **{md_text(step.title)}**{note}")
        lines.append("")
        lines.append(f"   $$ {latex(step.lhs)} = {latex(step.rhs)} $$")
        lines.append("")
    lines.append("**Backward rules used by the kernels**")
    lines.append("")
    for name, rule in d.backward.items():
        lines.append(f"- ${latex(sp.Symbol(name))} = {latex(rule)}$")
    if d.saved:
        lines.append(f"- saved from the forward pass: {', '.join(f'${latex(sp.Symbol(s))}$' for s in d.saved)}")
    for note in d.conventions:
        lines.append(f"- convention: {md_text(note)}")
    for note in d.stability:
        lines.append(f"- stability: {md_text(note)}")
    return "\n".join(lines) + "\n"


def _formula(expr) -> dict:
    """A formula three ways: exact (``sympy.sympify(f["sympy"], locals=PARSE_LOCALS)`` gives it
    back), readable text, and LaTeX."""
    if isinstance(expr, Label):
        return {"text": expr.text, "latex": expr.latex}
    return {"sympy": sp.srepr(expr), "text": plain(expr), "latex": latex(expr)}


def derivation_json(d: Derivation) -> dict:
    return {
        "layer": d.layer,
        "summary": d.summary,
        "inputs": list(d.inputs),
        "forward": {name: _formula(e) for name, e in d.forward.items()},
        "backward": {name: _formula(e) for name, e in d.backward.items()},
        "saved": list(d.saved),
        "steps": [{"title": s.title, "lhs": _formula(s.lhs), "rhs": _formula(s.rhs), "note": s.note}
                  for s in d.steps],
        "conventions": d.conventions,
        "stability": d.stability,
    }


def render(d: Derivation, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(derivation_json(d), indent=2, ensure_ascii=False) + "\n"
    if fmt == "md":
        return derivation_markdown(d)
    return derivation_text(d)
