"""symprop draw GRAPH.toml|SHIPPED-NAME [-o OUT.svg|OUT.png] [--digits N]: the circuit as a picture,
forward values above the wires and gradients below (SVG on standard output without -o)."""
from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from symprop.symbolic.errors import SympropError

FORMATS = ("svg", "png")


def add_arguments(parser):
    parser.add_argument("graph", help="a graph file (.toml with a [nodes] table) or a shipped one's name, "
                        "e.g. add-mul-circuit")
    parser.add_argument("-o", "--output", metavar="OUT.svg|OUT.png",
                        help="the file to write; its ending says the format (default: SVG on standard output)")
    parser.add_argument("--digits", type=int, default=3, help="significant digits on the wires (default 3)")


def load(name: str):
    """A shipped graph file by name (symbolic/graphs/NAME.toml), or a graph file by path."""
    from symprop.symbolic.graphfile import is_graph_file, load_graph, parse_graph

    shipped = resources.files("symprop.symbolic").joinpath("graphs", f"{name}.toml")
    if "/" not in name and not name.endswith(".toml") and shipped.is_file():
        return parse_graph(shipped.read_text(encoding="utf-8"), f"{name}.toml")
    if not Path(name).exists():
        raise SympropError(f"{name}: no such graph file (give a .toml file with a [nodes] table, "
                           "or a shipped graph such as add-mul-circuit)")
    if not is_graph_file(name):
        raise SympropError(f"{name}: not a graph file (a graph file is a .toml file with a [nodes] table; "
                           "network files have no circuit to draw)")
    return load_graph(name)


def picture_of(graph, fmt: str, digits: int) -> bytes:
    """The circuit as SVG or PNG bytes (for `draw` and `example show --format svg|png`)."""
    try:  # matplotlib and networkx: only now that there is something to draw
        import matplotlib  # noqa: F401
        import networkx  # noqa: F401
    except ImportError as exc:
        raise SympropError(f"drawing a circuit needs networkx and matplotlib ({exc.name} is missing): "
                           "pip install \"symprop[draw]\"") from None
    from symprop.draw import render

    return render(graph, fmt, digits)


def run(args) -> int:
    if not 1 <= args.digits <= 12:
        raise SympropError(f"--digits must be from 1 to 12, got {args.digits}")
    fmt = "svg"
    if args.output is not None:
        fmt = Path(args.output).suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise SympropError(f"-o {args.output}: the file must end in .svg or .png")
    from symprop.symbolic.userfiles import check_output, write_atomically

    if args.output is not None:
        check_output(args.output, "-o", "picture", inputs=[args.graph])
    picture = picture_of(load(args.graph), fmt, args.digits)
    if args.output is None:
        sys.stdout.write(picture.decode("utf-8"))
        return 0
    write_atomically(args.output, "-o", lambda stream: stream.write(picture))  # a full disk keeps the old one
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
