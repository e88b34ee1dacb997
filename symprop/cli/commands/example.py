"""symprop example list | symprop example show NAME|FILE.toml [--format md|text|json|html|svg|png] [--digits N] [--lang zh]
symprop example show --net SPEC --values VALUES.toml [...]: the transcript of any net spec with given numbers"""
from __future__ import annotations

from symprop.symbolic.errors import SympropError
from symprop.symbolic.examples import EXAMPLES, get_transcript
from symprop.symbolic.transcript import LANGUAGES

PICTURES = ("svg", "png")


def add_arguments(parser):
    parser.add_argument("action", choices=("list", "show"), help="list the built-in examples, or show one")
    parser.add_argument("name", nargs="?", help="a built-in example's name, or a network file (.toml)")
    parser.add_argument("--net", metavar="SPEC", help='a net spec, e.g. "affine(2,2) sigmoid affine(2,2) mse" '
                        "(with --values)")
    parser.add_argument("--values", metavar="FILE.toml", help="the numbers for --net: X, T, W1, b1, ..., "
                        "optional learning_rate")
    parser.add_argument("--format", choices=("md", "text", "json", "html", *PICTURES), default="text",
                        help="html: one self-contained page (MathML formulas, opens offline); svg, png: "
                        "a graph file's circuit picture (as symprop draw)")
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


def _graph(args):
    """The GraphFile behind the example, or None (a network file, a layer example, --net)."""
    if args.net is not None or not args.name:
        return None
    from symprop.symbolic.examples import builtin_graph
    from symprop.symbolic.graphfile import is_graph_file, load_graph

    return builtin_graph(args.name) if args.name in EXAMPLES else (
        load_graph(args.name) if is_graph_file(args.name) else None)


def _show_picture(args) -> int:
    import sys

    graph = _graph(args)
    if graph is None:
        from symprop.symbolic.examples import GRAPH_FILES

        known = ", ".join(name for name, _, _ in GRAPH_FILES)
        raise SympropError(f"--format {args.format}: only a graph file has a circuit to draw "
                           f"({args.name or '--net'} is not one); graph examples: {known}")
    if args.format == "png" and sys.stdout.isatty():
        raise SympropError("--format png writes binary data: redirect it to a file (> circuit.png) "
                           "or use symprop draw NAME -o circuit.png")
    from .draw import picture_of

    picture = picture_of(graph, args.format, min(args.digits, 12))
    sys.stdout.buffer.write(picture)
    sys.stdout.flush()
    return 0


def _circuit_svg(args) -> str | None:
    """For an HTML page of a graph file: its circuit picture, when the drawing extra is there."""
    graph = _graph(args) if args.format == "html" else None
    if graph is None:
        return None
    from symprop.draw import render

    try:
        return render(graph, "svg", digits=min(args.digits, 4)).decode("utf-8")
    except ImportError:  # the draw extra (matplotlib, networkx) is not installed: the page goes without
        return None


def run(args) -> int:
    if args.action == "list":
        # source: the seed exercise (000-003) an example reproduces, or the article it is from
        sources = {name: example.seed.strip("()") if example.seed.startswith("(") else f"exercise {example.seed}"
                   for name, example in EXAMPLES.items()}
        width, source_width = max(map(len, EXAMPLES)), max(map(len, sources.values()))
        print(f"{'name':<{width}}  {'source':<{source_width}}  what it shows")
        for name, example in EXAMPLES.items():
            print(f"{name:<{width}}  {sources[name]:<{source_width}}  {example.summary}")
        return 0
    if not 1 <= args.digits <= 30:
        raise SympropError(f"--digits must be from 1 to 30, got {args.digits}")
    if args.format in PICTURES:
        return _show_picture(args)
    # rendered completely before anything is printed: an error never leaves half a transcript
    text = _transcript(args).render(args.format, args.digits, args.lang, _circuit_svg(args))
    print(text, end="")
    return 0
