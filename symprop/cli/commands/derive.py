"""symprop derive LAYER | --formula F | --list"""
from __future__ import annotations

from symprop.symbolic.errors import SympropError
from symprop.symbolic.layers import REGISTRY, formula_layer
from symprop.symbolic.render import render


def add_arguments(parser):
    parser.add_argument("layer", nargs="?", help="a registered layer (see --list)")
    parser.add_argument("--formula", help='an elementwise activation in x, e.g. "x*tanh(log(1+exp(x)))"')
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
