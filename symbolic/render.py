"""Derivations as text (terminal), Markdown with LaTeX, and JSON (formulas SymPy can parse back)."""
from __future__ import annotations

import json

import sympy as sp

from sympy.codegen.cfunctions import expm1, log1p
from sympy.printing.str import StrPrinter

from .layers import Derivation, Label
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


def latex(expr) -> str:
    if isinstance(expr, Label):
        return expr.latex
    return sp.latex(expr)


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
    lines = [f"## `{d.layer}`", "", d.summary, ""]
    for number, step in enumerate(d.steps, 1):
        note = f" — {step.note}" if step.note else ""
        lines.append(f"{number}. **{step.title}**{note}")
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
        lines.append(f"- convention: {note}")
    for note in d.stability:
        lines.append(f"- stability: {note}")
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
