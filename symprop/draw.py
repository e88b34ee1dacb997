"""The picture of a graph file's circuit, as lecture notes draw it (CS231n's style).

Inputs and parameters on the left, the output on the right, each gate a labelled node; above
every wire its forward value (green), below it the gradient flowing back along it (red).
The numbers come from ``symbolic.graphfile_circuit`` (read from the transcript); this module
only lays them out and renders them.

Layout: networkx's layered layout, one column per topological generation
(``topological_generations`` and ``multipartite_layout``), the order inside a column chosen
so that wires cross little. networkx and matplotlib are pip packages, so the picture needs
no system program (graphviz's ``dot`` would). Output is deterministic: no date in the SVG,
fixed ids, text kept as text, so a test can read the numbers in it.
"""
from __future__ import annotations

import io
import itertools
import math

from symprop.symbolic.graphfile import GraphFile
from symprop.symbolic.graphfile_circuit import Circuit, circuit, number

VALUE_COLOUR = "#1b7a2f"  # green: forward values, above the wires
GRADIENT_COLOUR = "#c0262d"  # red: gradients, below the wires
GATE_FILL = {"input": "#eef3fb", "parameter": "#fff4d6", "node": "#ffffff"}
COLUMN = 2.2  # inches between columns
ROW = 1.25  # inches between gates in a column
MARGIN = 0.6
MIN_WIDTH = 8.0  # inches: the legend's width
FORMATS = ("svg", "png")
DPI = 110  # the same when the boxes are placed and when the picture is saved


def layout(c: Circuit) -> tuple[dict[str, tuple[float, float]], dict[tuple[str, str], list]]:
    """Each gate's centre in inches, and the bends of each wire that spans several columns.

    Column: a node's topological generation; an input or parameter sits just left of the first
    gate that uses it. A wire across several columns gets a waypoint in each column it crosses
    (as Sugiyama's layered drawing does), so it runs between gates, never through one. Rows:
    ordered by the mean row of the neighbours (a few sweeps each way), so wires cross little."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(g.name for g in c.gates)
    graph.add_edges_from((w.source, w.target) for w in c.wires)
    column = {n: i for i, generation in enumerate(nx.topological_generations(graph)) for n in generation}
    for gate in c.gates:
        if gate.kind != "node":
            column[gate.name] = max(0, min((column[s] for s in graph.successors(gate.name)), default=1) - 1)
    order = {g.name: i for i, g in enumerate(c.gates)}
    # the layered graph: long wires split by waypoints ("source>target#k"), which take a row too
    layered = nx.DiGraph()
    layered.add_nodes_from(graph)
    bends = {}
    for source, target in graph.edges:
        chain = [source]
        for k in range(column[source] + 1, column[target]):
            point = f"{source}>{target}#{k}"
            column[point], order[point] = k, order[target] + 0.5
            chain.append(point)
        bends[source, target] = chain[1:]
        nx.add_path(layered, [*chain, target])
    columns = [sorted((n for n in layered if column[n] == i), key=order.get)
               for i in range(max(column.values()) + 1)]
    row = {}
    for names in columns:
        _center(names, row)

    def sweep(names, first, second):
        def key(n):
            near = list(first(n)) or list(second(n))
            return (sum(row[m] for m in near) / len(near) if near else 0.0, order[n])
        names.sort(key=key)
        _center(names, row)

    for _ in range(3):  # left to right by predecessors, then right to left by successors
        for names in columns[1:]:
            sweep(names, layered.predecessors, layered.successors)
        for names in reversed(columns[:-1]):
            sweep(names, layered.successors, layered.predecessors)

    _transpose(columns, layered)
    # networkx keeps a layer's order when the layers are given as lists
    raw = nx.multipartite_layout(layered, subset_key={i: names for i, names in enumerate(columns)})
    # multipartite_layout scales both axes alike: back to one unit per column and per row
    xs = sorted({round(float(x), 9) for x, _ in raw.values()})
    unit = (xs[1] - xs[0]) if len(xs) > 1 else 1.0
    pos = {n: ((float(x) - xs[0]) / unit * COLUMN, -float(y) / unit * ROW) for n, (x, y) in raw.items()}
    return {n: pos[n] for n in graph}, {edge: [pos[p] for p in points] for edge, points in bends.items()}


def _crossings(left, right, graph) -> int:
    """How badly the wires between two neighbouring columns cross: a crossing counts more
    where a wire leaves a gate that fans out, since those gates' numbers crowd already."""
    rank_left = {n: i for i, n in enumerate(left)}
    rank_right = {n: i for i, n in enumerate(right)}
    wires = [(rank_left[u], rank_right[v], graph.out_degree(u) > 1) for u in left for v in graph.successors(u)
             if v in rank_right]
    return sum(1 + a[2] + b[2] for i, a in enumerate(wires) for b in wires[i + 1:]
               if (a[0] - b[0]) * (a[1] - b[1]) < 0)


def _transpose(columns, graph):
    """Reorder each column to remove crossings with its neighbours: every order of a small
    column is tried (a circuit's columns are short), a long one swaps neighbours; repeated
    until nothing improves. Deterministic: ties keep the current order."""
    def total(i):
        return ((_crossings(columns[i - 1], columns[i], graph) if i > 0 else 0)
                + (_crossings(columns[i], columns[i + 1], graph) if i + 1 < len(columns) else 0))

    for _ in range(10):
        improved = False
        for i, names in enumerate(columns):
            best, best_order = total(i), list(names)
            candidates = (itertools.permutations(best_order) if len(names) <= 6 else
                          (best_order[:k] + [best_order[k + 1], best_order[k]] + best_order[k + 2:]
                           for k in range(len(names) - 1)))
            for candidate in candidates:
                names[:] = candidate
                if total(i) < best:
                    best, best_order, improved = total(i), list(candidate), True
            names[:] = best_order
        if not improved:
            break


def _center(names, row):
    offset = (len(names) - 1) / 2
    for i, name in enumerate(names):
        row[name] = i - offset


def figure(c: Circuit, digits: int = 3):
    """A matplotlib Figure of the circuit (no pyplot: nothing global, no window)."""
    from matplotlib.figure import Figure

    pos, bends = layout(c)
    stub = COLUMN * 0.75  # the wire leaving the objective, carrying the upstream gradient
    points = [*pos.values(), *(p for route in bends.values() for p in route)]
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    left, right = min(xs) - MARGIN - 0.4, max(xs) + stub + MARGIN
    bottom, top = min(ys) - MARGIN - 0.75, max(ys) + MARGIN + 0.45
    if right - left < MIN_WIDTH:  # room for the title and the legend
        widen = (MIN_WIDTH - (right - left)) / 2
        left, right = left - widen, right + widen
    fig = Figure(figsize=(right - left, top - bottom), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_axis_off()

    boxes, taken = {}, []  # taken: rectangles (inches) that wire labels must not cover
    for gate in c.gates:
        x, y = pos[gate.name]
        short = len(gate.label) <= 4 and gate.kind == "node"
        half = max(0.32, 0.055 * len(gate.label) + 0.15)
        taken.append((x - half, y - 0.32, x + half, y + (0.58 if gate.kind == "node" else 0.32)))
        if gate.fan_out > 1:
            taken.append((x - 0.7, y - 0.55, x + 0.7, y - 0.3))
        style = "circle,pad=0.35" if short else "round,pad=0.35"
        text = ax.text(x, y, gate.label, ha="center", va="center", fontsize=13 if short else 11,
                       fontweight="bold" if gate.kind != "node" else "normal", zorder=3,
                       bbox=dict(boxstyle=style, facecolor=GATE_FILL[gate.kind], edgecolor="#333333", lw=1.3))
        boxes[gate.name] = text
        if gate.kind == "node":  # the node's name above it (its formula is in the gate)
            ax.annotate(gate.name, (x, y), xytext=(0, 19 if short else 16), textcoords="offset points",
                        ha="center", va="bottom", fontsize=10, color="#555555", style="italic")
        if gate.fan_out > 1 and gate.gradient is not None:  # the sum of its paths' gradients
            ax.annotate(f"d{c.root}/d{gate.name} = {number(gate.gradient, digits)}", (x, y),
                        xytext=(0, -17), textcoords="offset points", ha="center", va="top",
                        fontsize=10, color=GRADIENT_COLOUR, fontweight="bold", zorder=4,
                        bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor=GRADIENT_COLOUR, lw=0.6))

    fig.draw_without_rendering()  # places the gates' boxes, so the wires can stop at their edges
    ox, oy = pos[c.objective]
    _wire(ax, [(ox, oy), (ox + stub, oy)], boxes[c.objective], None, number(c.gate(c.objective).value, digits),
          number(c.upstream, digits), taken)
    for wire in c.wires:
        _wire(ax, [pos[wire.source], *bends[wire.source, wire.target], pos[wire.target]],
              boxes[wire.source], boxes[wire.target], number(wire.value, digits),
              None if wire.gradient is None else number(wire.gradient, digits), taken)

    ax.text((left + right) / 2, top - 0.15, " ".join(c.title.split()), ha="center", va="top", fontsize=13, fontweight="bold")
    legend = [f"above each wire: its forward value   ·   below: d{c.root}/d(wire), the gradient flowing back"]
    extra = ["yellow: parameters (an update changes them)"] if any(g.kind == "parameter" for g in c.gates) else []
    extra += [c.note] if c.note else []
    if extra:
        legend.append("   ·   ".join(extra))
    ax.text((left + right) / 2, bottom + 0.12, "\n".join(legend), ha="center", va="bottom", fontsize=9.5,
            color="#444444", linespacing=1.5)
    return fig


def _wire(ax, route, box_from, box_to, value: str, gradient: str | None, taken: list):
    """An arrow from gate to gate through its waypoints; on its first stretch, the value on
    the upper side and the gradient on the lower side, at the first spot along it (the middle
    if free) where they cover no gate and no label already placed (``taken`` grows)."""
    for i, (start, end) in enumerate(zip(route, route[1:])):
        last = i == len(route) - 2
        arrow = dict(arrowstyle="-|>" if last else "-", color="#333333", lw=1.3, mutation_scale=14,
                     shrinkA=2 if i == 0 else 0, shrinkB=2 if last else 0,
                     patchA=box_from.get_bbox_patch() if i == 0 and box_from is not None else None,
                     patchB=box_to.get_bbox_patch() if last and box_to is not None else None)
        ax.annotate("", xy=end, xytext=start, arrowprops=arrow, zorder=1)
    (x0, y0), (x1, y1) = route[0], route[1]
    length = math.hypot(x1 - x0, y1 - y0) or 1.0
    normal = (-(y1 - y0) / length, (x1 - x0) / length)  # the wire's upper side
    labels = [(value, normal, VALUE_COLOUR)]
    if gradient is not None:
        labels.append((gradient, (-normal[0], -normal[1]), GRADIENT_COLOUR))

    def rectangles(along):
        at = (x0 + along * (x1 - x0), y0 + along * (y1 - y0))
        return [(at, _extent(at, n, text)) for text, n, _ in labels]

    def clashes(along):
        return sum(_overlap(r, t) for _, r in rectangles(along) for t in taken)

    best = min(LABEL_SPOTS, key=lambda along: (clashes(along) > 0, clashes(along), LABEL_SPOTS.index(along)))
    for (at, rectangle), (text, n, colour) in zip(rectangles(best), labels):
        taken.append(rectangle)
        _label(ax, at, n, text, colour)


LABEL_SPOTS = [0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78]  # fractions of a wire's first stretch, best first
LABEL_OFFSET = 5  # points between a wire and its numbers
LABEL_SIZE = 11.5


def _alignment(normal):
    nx_, ny_ = normal
    return ("right" if nx_ < -0.35 else "left" if nx_ > 0.35 else "center"), ("bottom" if ny_ > 0 else "top")


def _extent(at, normal, text):
    """The rectangle (inches) a label covers, estimated from its length (bold digits)."""
    ha, va = _alignment(normal)
    x = at[0] + normal[0] * LABEL_OFFSET / 72
    y = at[1] + normal[1] * LABEL_OFFSET / 72
    width, height = len(text) * LABEL_SIZE * 0.62 / 72 + 0.04, LABEL_SIZE * 1.2 / 72
    x0 = x - width if ha == "right" else x if ha == "left" else x - width / 2
    y0 = y if va == "bottom" else y - height
    return (x0, y0, x0 + width, y0 + height)


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _label(ax, at, normal, text, colour):
    ha, va = _alignment(normal)
    ax.annotate(text, at, xytext=(LABEL_OFFSET * normal[0], LABEL_OFFSET * normal[1]), textcoords="offset points",
                ha=ha, va=va, fontsize=LABEL_SIZE, color=colour, fontweight="bold", zorder=2,
                bbox=dict(boxstyle="square,pad=0.05", facecolor="white", edgecolor="none", alpha=0.85))


def render(graph: GraphFile, fmt: str = "svg", digits: int = 3) -> bytes:
    """The picture as SVG or PNG bytes, the same for the same file (no date, fixed ids)."""
    import matplotlib

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    # text.parse_math off: a title or name is drawn as written, never read as mathtext ("$\\foo$")
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "symprop", "font.family": "DejaVu Sans",
                                "text.usetex": False, "text.parse_math": False}):
        fig = figure(circuit(graph), digits)
        out = io.BytesIO()
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(out, format=fmt, dpi=DPI, metadata=metadata)
    return out.getvalue()
