"""symprop example list | symprop example show NAME|NETWORK.toml [--format md|text|json|html] [--digits N] [--lang zh]
symprop example show --net SPEC --values VALUES.toml [...]: the transcript of any net spec with given numbers"""
from __future__ import annotations

from symprop.symbolic.errors import SympropError
from symprop.symbolic.examples import EXAMPLES, get_transcript
from symprop.symbolic.transcript import LANGUAGES


def add_arguments(parser):
    parser.add_argument("action", choices=("list", "show"), help="list the built-in examples, or show one")
    parser.add_argument("name", nargs="?", help="a built-in example's name, or a network file (.toml)")
    parser.add_argument("--net", metavar="SPEC", help='a net spec, e.g. "affine(2,2) sigmoid affine(2,2) mse" '
                        "(with --values)")
    parser.add_argument("--values", metavar="FILE.toml", help="the numbers for --net: X, T, W1, b1, ..., "
                        "optional learning_rate")
    parser.add_argument("--format", choices=("md", "text", "json", "html"), default="text",
                        help="html: one self-contained page (MathML formulas, opens offline)")
    parser.add_argument("--digits", type=int, default=4, help="significant digits printed (default 4)")
    parser.add_argument("--lang", choices=LANGUAGES, default="en", help="language of md, html and text (en, zh)")


def _transcript(args):
    if args.net is None and args.values is None:
        if not args.name:
            raise SympropError(f"name an example or a network file, or give --net SPEC --values FILE.toml; "
                               f"known examples: {', '.join(EXAMPLES)}")
        return get_transcript(args.name)
    if args.name:
        raise SympropError(f"give either an example name ({args.name!r}) or --net and --values, not both")
    if args.net is None or args.values is None:
        raise SympropError("--net SPEC and --values FILE.toml go together: the spec says the layers, "
                           "the file their numbers")
    from symprop.symbolic.graph import parse_net
    from symprop.symbolic.graph_transcript import values_transcript
    return values_transcript(parse_net(args.net), args.values)


def _circuit_svg(args) -> str | None:
    """For an HTML page of a graph file: its circuit picture, when the drawing extra is there."""
    if args.format != "html" or args.net is not None or not args.name:
        return None
    from symprop.symbolic.examples import EXAMPLES, builtin_graph
    from symprop.symbolic.graphfile import is_graph_file, load_graph

    graph = builtin_graph(args.name) if args.name in EXAMPLES else (
        load_graph(args.name) if is_graph_file(args.name) else None)
    if graph is None:
        return None
    from symprop.draw import render

    try:
        return render(graph, "svg", digits=min(args.digits, 4)).decode("utf-8")
    except ImportError:  # the draw extra (matplotlib, networkx) is not installed: the page goes without
        return None


def run(args) -> int:
    if args.action == "list":
        width = max(map(len, EXAMPLES))
        for name, example in EXAMPLES.items():
            print(f"{name:<{width}}  seed {example.seed:<12}  {example.summary}")
        return 0
    if not 1 <= args.digits <= 30:
        raise SympropError(f"--digits must be from 1 to 30, got {args.digits}")
    # rendered completely before anything is printed: an error never leaves half a transcript
    text = _transcript(args).render(args.format, args.digits, args.lang, _circuit_svg(args))
    print(text, end="")
    return 0
