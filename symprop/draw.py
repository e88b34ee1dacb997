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

import functools
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
    from matplotlib.backends.backend_agg import FigureCanvasAgg
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
    FigureCanvasAgg(fig)  # a renderer to measure text with before saving
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_axis_off()

    boxes, taken = {}, []  # taken: rectangles (inches) that wire labels must not cover
    marks = []  # the node names and fan-out sums around the gates: measured once drawn
    for gate in c.gates:
        x, y = pos[gate.name]
        short = len(gate.label) <= 4 and gate.kind == "node"
        style = "circle,pad=0.35" if short else "round,pad=0.35"
        boxes[gate.name] = ax.text(x, y, gate.label, ha="center", va="center", fontsize=13 if short else 11,
                                   fontweight="bold" if gate.kind != "node" else "normal", zorder=3, gid=f"gate-{gate.name}",
                                   bbox=dict(boxstyle=style, facecolor=GATE_FILL[gate.kind], edgecolor="#333333", lw=1.3))
        if gate.kind == "node":  # the node's name above it (its formula is in the gate)
            marks.append(ax.annotate(gate.name, (x, y), xytext=(0, 19 if short else 16), textcoords="offset points",
                                     ha="center", va="bottom", fontsize=10, color="#555555", style="italic"))
        if gate.fan_out > 1 and gate.gradient is not None:  # the sum of its paths' gradients
            marks.append(ax.annotate(
                f"d{c.root}/d{gate.name} = {number(gate.gradient, digits)}", (x, y), xytext=(0, -17),
                textcoords="offset points", ha="center", va="top", fontsize=10, color=GRADIENT_COLOUR,
                fontweight="bold", zorder=4, gid=f"sum-{gate.name}",
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor=GRADIENT_COLOUR, lw=0.6)))

    # Measure what was placed, in inches (the axes' data units), so that wires stop at the gates'
    # edges and labels keep off them. Computed here, not left to matplotlib's patch clipping at
    # save time, which an SVG (saved at 72 dpi) would do against stale boxes, hiding arrowheads.
    fig.draw_without_rendering()
    to_inches = ax.transData.inverted()
    shapes = {name: _shape(text.get_bbox_patch().get_window_extent(), to_inches, text.get_bbox_patch())
              for name, text in boxes.items()}
    taken += [shape[1] for shape in shapes.values()]
    renderer = fig.canvas.get_renderer()
    taken += [_inches(mark.get_window_extent(renderer), to_inches) for mark in marks]
    measure = _measurer(fig, renderer)

    ox, oy = pos[c.objective]
    # (target's name in ids, route, source, target gate, value, gradient); "" names the output's own wire
    wires = [("", [(ox, oy), (ox + stub, oy)], c.objective, None, c.gate(c.objective).value, c.upstream)]
    wires += [(w.target, [pos[w.source], *bends[w.source, w.target], pos[w.target]], w.source, w.target, w.value,
               w.gradient) for w in c.wires]
    routes = {}
    for target_name, route, source, target, _, _ in wires:
        route = list(route)
        route[0] = _edge(shapes[source], route[1])
        if target is not None:
            route[-1] = _edge(shapes[target], route[-2])
        routes[source, target_name] = route
    for (source, target_name), route in routes.items():
        _arrow(ax, route, f"wire-{source}-{target_name}")
    for target_name, _, source, _, value, gradient in wires:
        labels = [("value", number(value, digits), VALUE_COLOUR, +1)]
        if gradient is not None:
            labels.append(("gradient", number(gradient, digits), GRADIENT_COLOUR, -1))
        _place_labels(ax, (source, target_name), routes, labels, taken, measure)

    ax.text((left + right) / 2, top - 0.15, " ".join(c.title.split()), ha="center", va="top", fontsize=13, fontweight="bold")
    legend = [f"above each wire: its forward value   ·   below: d{c.root}/d(wire), the gradient flowing back"]
    extra = ["yellow: parameters (an update changes them)"] if any(g.kind == "parameter" for g in c.gates) else []
    extra += [c.note] if c.note else []
    if extra:
        legend.append("   ·   ".join(extra))
    ax.text((left + right) / 2, bottom + 0.12, "\n".join(legend), ha="center", va="bottom", fontsize=9.5,
            color="#444444", linespacing=1.5)
    return fig


def _inches(extent, to_inches) -> tuple[float, float, float, float]:
    (x0, y0), (x1, y1) = to_inches.transform([(extent.x0, extent.y0), (extent.x1, extent.y1)])
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _shape(extent, to_inches, patch):
    """("circle" or "box", the rectangle it fills) of a gate, in inches."""
    kind = "circle" if type(patch.get_boxstyle()).__name__ == "Circle" else "box"
    return kind, _inches(extent, to_inches)


def _edge(shape, toward, gap=0.03):
    """Where a wire leaving a gate toward ``toward`` crosses the gate's edge (plus a small gap)."""
    kind, (x0, y0, x1, y1) = shape
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    dx, dy = toward[0] - cx, toward[1] - cy
    length = math.hypot(dx, dy) or 1.0
    ux, uy = dx / length, dy / length
    if kind == "circle":
        reach = min(hw, hh)
    else:
        reach = min(hw / abs(ux) if ux else math.inf, hh / abs(uy) if uy else math.inf)
    return (cx + ux * (reach + gap), cy + uy * (reach + gap))


def _arrow(ax, route, gid):
    """A wire through its waypoints, its arrowhead at the end: straight stretches, no clipping;
    each stretch a group ``gid-i`` in the SVG (the tests read the wires' geometry there)."""
    from matplotlib.patches import FancyArrowPatch

    for i, (start, end) in enumerate(zip(route, route[1:])):
        last = i == len(route) - 2
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>" if last else "-", color="#333333", lw=1.3,
                                     mutation_scale=14, shrinkA=0, shrinkB=0, zorder=1, gid=f"{gid}-{i}"))


def _measurer(fig, renderer):
    """(width, height) in inches of a label's text as the renderer lays it out (bold, LABEL_SIZE)."""
    from matplotlib.font_manager import FontProperties

    font = FontProperties(family="DejaVu Sans", size=LABEL_SIZE, weight="bold")

    @functools.lru_cache(maxsize=None)
    def measure(text):
        width, height, _ = renderer.get_text_width_height_descent(text, font, ismath=False)
        return width / fig.dpi + 2 * LABEL_PAD, height / fig.dpi + 2 * LABEL_PAD
    return measure


# fractions of a wire's first stretch, best first (near the source, where wires that meet at
# one gate are still apart, before near the target)
LABEL_SPOTS = [0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.15, 0.78]
LABEL_GAP = 0.05  # inches between a wire and the nearest corner of its label's box
LABEL_CLEARANCE = 0.12  # inches: a label's centre is at least this much nearer its own wire than any other
LABEL_PAD = 0.02  # inches of white around a label's text
LABEL_SIZE = 11.5


def _place_labels(ax, wire, routes, labels, taken, measure):
    """A wire's value on its upper side and its gradient on the lower side, beside its first
    stretch: each label's box is pushed off the line until its nearest corner clears it (a
    sloped wire pushes a wide label further), and the spot along the stretch is the first one
    (the middle if free) where no label covers a gate, a label already placed or another wire,
    and where each label is nearer its own wire than any other."""
    (x0, y0), (x1, y1) = routes[wire][0], routes[wire][1]
    length = math.hypot(x1 - x0, y1 - y0) or 1.0
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    upper = (-uy, ux) if ux > 0 or (ux == 0 and uy < 0) else (uy, -ux)  # the side above the wire
    others = [(route, _bounds(route)) for key, route in routes.items() if key != wire]

    def boxes(along):
        px, py = x0 + along * (x1 - x0), y0 + along * (y1 - y0)
        out = []
        for _, text, _, side in labels:
            nx, ny = upper[0] * side, upper[1] * side
            width, height = measure(text)
            reach = LABEL_GAP + abs(nx) * width / 2 + abs(ny) * height / 2
            cx, cy = px + nx * reach, py + ny * reach
            out.append((cx, cy, (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)))
        return out

    def faults(along):
        count = 0
        for cx, cy, box in boxes(along):
            count += sum(_overlap(box, t) for t in taken)
            own = _distance((cx, cy), routes[wire])
            near = (cx - own - LABEL_CLEARANCE, cy - own - LABEL_CLEARANCE, cx + own + LABEL_CLEARANCE,
                    cy + own + LABEL_CLEARANCE)  # only a wire that comes this close can be nearer
            for route, bounds in others:
                if _overlap(near, bounds) or _overlap(box, bounds):
                    count += _crosses(box, route) + (_distance((cx, cy), route) < own + LABEL_CLEARANCE)
        return count

    best = min(LABEL_SPOTS, key=lambda along: (faults(along), LABEL_SPOTS.index(along)))
    for (cx, cy, box), (kind, text, colour, _) in zip(boxes(best), labels):
        taken.append(box)
        ax.text(cx, cy, text, ha="center", va="center", fontsize=LABEL_SIZE, color=colour, fontweight="bold",
                zorder=2, gid=f"{kind}-{wire[0]}-{wire[1]}",
                bbox=dict(boxstyle=f"square,pad={LABEL_PAD * 72 / LABEL_SIZE:.3f}", facecolor="white",
                          edgecolor="none", alpha=0.85))


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _distance(point, route) -> float:
    """From a point to the nearest point of a polyline."""
    return min(_to_segment(point, a, b) for a, b in zip(route, route[1:]))


def _to_segment(p, a, b) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    t = ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / ((dx * dx + dy * dy) or 1.0)
    t = max(0.0, min(1.0, t))
    return math.hypot(p[0] - a[0] - t * dx, p[1] - a[1] - t * dy)


def _bounds(route) -> tuple[float, float, float, float]:
    xs, ys = [x for x, _ in route], [y for _, y in route]
    return (min(xs), min(ys), max(xs), max(ys))


def _crosses(box, route) -> bool:
    """Whether a polyline passes through a rectangle (Liang and Barsky's clipping of each stretch)."""
    for (x0, y0), (x1, y1) in zip(route, route[1:]):
        dx, dy = x1 - x0, y1 - y0
        low, high = 0.0, 1.0
        for p, q in ((-dx, x0 - box[0]), (dx, box[2] - x0), (-dy, y0 - box[1]), (dy, box[3] - y0)):
            if p == 0:
                if q <= 0:
                    break  # parallel to this side and outside it
            elif p < 0:
                low = max(low, q / p)
            else:
                high = min(high, q / p)
        else:
            if low < high:
                return True
    return False


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
