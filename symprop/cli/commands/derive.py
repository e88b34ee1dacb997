"""symprop derive LAYER | --formula F | --list"""
from __future__ import annotations

from symprop.symbolic.errors import SympropError
from symprop.symbolic.layers import REGISTRY, formula_layer
from symprop.symbolic.render import render


def add_arguments(parser):
    parser.add_argument("layer", nargs="?", help="a registered layer (see --list)")
    parser.add_argument("--formula", help='an elementwise activation in x, e.g. "x*tanh(log(1+exp(x)))", '
                        'or a formula in several variables, e.g. "(x + y)*z" (each partial derivative)')
    parser.add_argument("--list", action="store_true", help="list the registered layers")
    parser.add_argument("--format", choices=("text", "md", "json", "html"), default="text",
                        help="html: one self-contained page (MathML formulas, opens offline)")


def run(args) -> int:
    if args.list:
        width = max(map(len, REGISTRY))
        for name, layer in REGISTRY.items():
            print(f"{name:<{width}}  {layer.summary}")
        return 0
    if args.formula is not None and args.layer:
        raise SympropError("give either a LAYER or --formula, not both")
    if args.formula is not None:
        from symprop.symbolic.graphfile import formula_variables
        if formula_variables(args.formula) != ["x"]:
            return _partials(args.formula, args.format)
        derivation = formula_layer(args.formula).derive()
    elif args.layer:
        derivation = REGISTRY.derive(args.layer)
    else:
        raise SympropError(f"name a layer or give --formula; known layers: {', '.join(REGISTRY)}")
    if args.format == "html":
        from symprop.symbolic.html_page import derivation_page

        print(derivation_page(derivation), end="")
    else:
        print(render(derivation, args.format), end="")
    return 0


def _partials(text, fmt) -> int:
    """A formula in several variables: each partial derivative, simplified."""
    import json

    import sympy as sp

    from symprop.symbolic.graphfile import formula_partials
    from symprop.symbolic.render import PlainPrinter

    expr, partials = formula_partials(text)
    plain = lambda e: PlainPrinter().doprint(e)  # noqa: E731
    if fmt == "json":
        print(json.dumps({"formula": plain(expr), "variables": list(partials),
                          "partials": {f"d/d{v}": {"text": plain(p), "latex": sp.latex(p), "sympy": sp.srepr(p)}
                                       for v, p in partials.items()}}, indent=2))
        return 0
    if fmt in ("md", "html"):
        lines = [f"# Partial derivatives of ${sp.latex(expr)}$", ""]
        lines += [rf"- $\frac{{\partial f}}{{\partial {sp.latex(sp.Symbol(v))}}} = {sp.latex(p)}$"
                  for v, p in partials.items()]
        text_out = "\n".join(lines) + "\n"
        if fmt == "html":
            from symprop.symbolic.html_page import page
            text_out = page(text_out, "en")
        print(text_out, end="")
        return 0
    print(f"f = {plain(expr)}")
    for v, p in partials.items():
        print(f"  df/d{v} = {plain(p)}")
    if expr.has(sp.Max, sp.Min):
        from symprop.symbolic.kinks import CONVENTION
        print(f"  ({CONVENTION})")
    return 0
