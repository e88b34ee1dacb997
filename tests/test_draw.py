"""Pictures of graph files (``symprop draw``): every name, value and gradient of a shipped
circuit is in its SVG, as the transcript computes them; PNG is a real PNG; output is
deterministic; bad input is one line, exit status 2.

The expected numbers are read from the transcript's JSON (40 significant digits) and rounded
here with Python's own formatting, so neither the picture's data nor its rounding is trusted.
"""
from __future__ import annotations

import json
import math
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from symprop.draw import GRADIENT_COLOUR, VALUE_COLOUR, render
from symprop.symbolic.examples import get_transcript
from symprop.symbolic.graphfile import load_graph
from symprop.symbolic.graphfile_circuit import circuit, gate_label

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "symbolic" / "graphs"
SHIPPED = ["add-mul-circuit", "sigmoid-neuron-gates", "max-circuit", "staged-sigmoid-ratio", "apples-oranges",
           "nested-neurons"]
SVG = "{http://www.w3.org/2000/svg}"


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "symprop", *args], capture_output=True, cwd=cwd, timeout=300)


def shown(value: str) -> str:
    """A transcript value (JSON text) as the picture prints it: 3 significant digits."""
    text = f"{float(value):.3g}"
    return "0" if text == "-0" else text


def svg_texts(svg: bytes) -> dict[str, set[str]]:
    """The SVG's text elements grouped by their fill colour ("" when none is set)."""
    found: dict[str, set[str]] = {}
    for element in ET.fromstring(svg).iter(f"{SVG}text"):
        style = element.get("style", "")
        fill = next((p.split(":")[1].strip() for p in style.split(";") if p.strip().startswith("fill")), "")
        found.setdefault(fill, set()).add("".join(element.itertext()))
    return found


@pytest.mark.parametrize("name", SHIPPED)
def test_the_svg_shows_every_name_value_and_gradient_of_the_transcript(name):
    graph = load_graph(GRAPHS / f"{name}.toml")
    quantities = get_transcript(name).to_json()["quantities"]
    texts = svg_texts(render(graph, "svg"))
    everything = set().union(*texts.values())
    values, gradients = texts[VALUE_COLOUR], texts[GRADIENT_COLOUR]
    root = "L" if graph.dout is not None else graph.objective
    for name_ in [*graph.inputs, *graph.parameters, *graph.nodes]:
        assert name_ in everything, f"{name_} is not drawn"
        assert shown(quantities[name_]["value"]) in values, f"the value of {name_}"
        key = f"d{root}/d{name_}"
        if key not in quantities:  # the objective itself: upstream gradient 1 on its outgoing wire
            assert name_ == graph.objective and "1" in gradients
            continue
        gradient = shown(quantities[key]["value"])
        users = graph.consumers(name_)
        if len(users) > 1:  # the sum under the gate, each path's share on its wire
            assert f"{key} = {gradient}" in gradients
            for user in users:
                path = quantities.get(f"{key}_via_{user}") or quantities[f"d{user}/d{name_}_direct"]
                assert shown(path["value"]) in gradients, f"{key} through {user}"
        else:
            assert gradient in gradients, f"{key} = {gradient} is not on the wire"


def test_a_fanned_out_value_sums_its_wires():
    c = circuit(load_graph(GRAPHS / "staged-sigmoid-ratio.toml"))
    into = [w for w in c.wires if w.source == "x"]
    assert sorted(w.target for w in into) == ["num", "sigx", "xpy"]
    assert abs(sum(w.gradient for w in into) - c.gate("x").gradient) < 1e-30


def test_an_upstream_gradient_dout_is_on_the_output_wire():
    c = circuit(load_graph(GRAPHS / "mul-node.toml"))
    assert c.root == "L" and c.upstream == pytest.approx(1.5)
    assert c.gate("x").gradient == pytest.approx(4.5)  # dout * y


@pytest.mark.parametrize("text, label", [
    ("x + y", "+"), ("q * z", "*"), ("2 * s", "*2"), ("ez + 1", "+1"), ("1 / den", "1/x"), ("-z", "*-1"),
    ("max(z, w)", "max"), ("exp(nz)", "exp"), ("sigmoid(y)", "sigmoid"), ("xpy^2", "x^2"),
    ("w1 * x^2 + w2 * x + b", "w1 * x^2 + w2 * x + b"),
    ("-1 * z", "*-1"), ("z * -1", "*-1"), ("x - 1", "-1"), ("x + -1", "-1"), ("x / 2", "/2"), ("max(0, z)", "max"),
    ("exp(-z)", "exp(-z)"),
])
def test_gates_get_the_labels_lecture_notes_write(text, label):
    arguments = ["x", "y", "z", "q", "s", "ez", "den", "nz", "w", "xpy", "w1", "w2", "b"]
    assert gate_label(text, arguments) == label


def test_the_picture_is_deterministic_and_undated():
    graph = load_graph(GRAPHS / "max-circuit.toml")
    first, second = render(graph, "svg"), render(graph, "svg")
    assert first == second
    assert b"<dc:date>" not in first
    assert render(graph, "png") == render(graph, "png")


def test_draw_writes_a_png_of_a_reasonable_size(tmp_path):
    out = tmp_path / "circuit.png"
    result = run_cli("draw", str(GRAPHS / "add-mul-circuit.toml"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert 400 <= width <= 4000 and 200 <= height <= 2000, (width, height)
    assert 5_000 < len(data) < 1_000_000


def test_draw_prints_svg_for_a_shipped_name_and_honours_digits():
    result = run_cli("draw", "sigmoid-neuron-gates", "--digits", "5")
    assert result.returncode == 0, result.stderr
    gradients = svg_texts(result.stdout)[GRADIENT_COLOUR]
    quantities = get_transcript("sigmoid-neuron-gates").to_json()["quantities"]
    assert f"{float(quantities['df/dx0']['value']):.5g}" in gradients


def _graph_file(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("args, words", [
    (["{cycle}"], ["bad.toml", "line", "nodes.a", "cycle"]),
    (["{network}"], ["two-layer-sigmoid.toml", "not a graph file"]),
    (["no-such-graph.toml"], ["no-such-graph.toml", "no such graph file"]),
    (["add-mul-circuit", "-o", "out.jpg"], ["out.jpg", ".svg or .png"]),
])
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, args, words):
    cycle = _graph_file(tmp_path, '[inputs]\nx = 1\n\n[nodes]\na = "b + x"\nb = "a * 2"\n')
    network = ROOT / "symbolic" / "networks" / "two-layer-sigmoid.toml"
    args = [a.format(cycle=cycle, network=network) for a in args]
    result = run_cli("draw", *args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0]
    assert result.stdout == b"" and not (tmp_path / "out.jpg").exists()


def test_the_draw_command_loads_nothing_heavy_until_it_draws():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "symprop", "draw", "--help"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0 and "--digits" in result.stdout  # the draw command's own arguments
    modules = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "symprop.cli" in modules  # the probe sees our imports
    assert not [m for m in modules if m.split(".")[0] in ("matplotlib", "networkx", "sklearn")]


def test_the_json_of_a_drawn_file_and_the_svg_agree_on_the_output():
    """The output's value is on the wire leaving it, with the upstream gradient below."""
    quantities = json.loads(get_transcript("apples-oranges").render("json"))["quantities"]
    texts = svg_texts(render(load_graph(GRAPHS / "apples-oranges.toml"), "svg"))
    assert shown(quantities["price"]["value"]) in texts[VALUE_COLOUR]
    assert "1" in texts[GRADIENT_COLOUR]


@pytest.mark.parametrize("name", ["sigmoid-neuron-gates", "staged-sigmoid-ratio"])
def test_the_readme_pictures_are_what_the_command_draws(name):
    """The pictures of the README and the tutorial are made by `symprop draw NAME -o
    docs/NAME.png` (the tutorial says so); redraw them so when the drawing changes."""
    assert f"symprop draw {name} -o docs/{name}.png" in (ROOT / "docs" / "tutorial.md").read_text()
    drawn = render(load_graph(GRAPHS / f"{name}.toml"), "png")
    assert (ROOT / "docs" / f"{name}.png").read_bytes() == drawn, f"redraw: symprop draw {name} -o docs/{name}.png"


def test_a_graph_files_html_page_shows_its_circuit_inline():
    """example show --format html of a graph file puts the circuit picture (inline SVG, no file
    fetched) after the title; a network example's page has no picture to show."""
    import subprocess
    import sys

    def page(name):
        result = subprocess.run([sys.executable, "-m", "symprop", "example", "show", name, "--format", "html"],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    html = page("max-circuit")
    figure = html[html.index('<figure class="circuit"'):html.index("</figure>")]
    assert html.index("</h1>") < html.index('<figure class="circuit"') < html.index("Given")
    assert "<svg" in figure and "<?xml" not in figure and "href=\"http" not in figure
    for name in ("x", "y", "z", "w", "max"):
        assert f">{name}<" in figure, name
    assert '<figure class="circuit"' not in page("mazur-2-2-2")


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_example_show_draws_a_graph_example_as_draw_does(tmp_path, fmt):
    shown = run_cli("example", "show", "nested-neurons", "--format", fmt, "--digits", "3")
    drawn = run_cli("draw", "nested-neurons", "-o", str(tmp_path / f"c.{fmt}"))
    assert shown.returncode == 0 and drawn.returncode == 0, shown.stderr + drawn.stderr
    assert shown.stdout == (tmp_path / f"c.{fmt}").read_bytes()
    assert shown.stdout.startswith(b"\x89PNG" if fmt == "png" else b"<?xml")


def test_example_show_refuses_a_picture_of_a_layer_example():
    result = run_cli("example", "show", "relu-layer", "--format", "svg")
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and result.stdout == b""
    assert "relu-layer is not one" in lines[0] and "nested-neurons" in lines[0]


# --- where the numbers sit: read back from the SVG's geometry --------------------------------

SIGMOID_NEURON = """
title = "A sigmoid neuron: one node for the weighted sum"
output = "f"

[inputs]
x0 = -1
x1 = -2

[parameters]
w0 = 2
w1 = -3
w2 = -3

[nodes]
dot = "w0*x0 + w1*x1 + w2"
neg = "-1 * dot"
ex = "exp(neg)"
den = "1 + ex"
f = "1 / den"
"""


def svg_geometry(svg: bytes):
    """(wires, labels) of a drawn circuit: wire id -> its polyline (every stretch, arrowhead
    included) and its arrowhead count; label id -> (its white box, the box's centre), in SVG units."""
    wires, heads, labels = {}, {}, {}
    for group in ET.fromstring(svg).iter(f"{SVG}g"):
        gid = group.get("id", "")
        paths = [p.get("d") for p in group.iter(f"{SVG}path")]
        points = [[(float(x), float(y)) for x, y in re.findall(r"(-?[\d.]+) (-?[\d.]+)", d)] for d in paths]
        if gid.startswith("wire-"):
            key = gid[len("wire-"):].rsplit("-", 1)[0]
            wires.setdefault(key, []).append(points[0])
            heads[key] = heads.get(key, 0) + (len(paths) > 1)  # "-|>": the line, then its head
        elif gid.startswith(("value-", "gradient-")):
            xs, ys = [x for x, _ in points[0]], [y for _, y in points[0]]
            box = (min(xs), min(ys), max(xs), max(ys))
            labels[gid] = (box, ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
    return wires, heads, labels


def distance_to(point, lines) -> float:
    best = math.inf
    for line in lines:
        for (ax, ay), (bx, by) in zip(line, line[1:]):
            dx, dy = bx - ax, by - ay
            t = max(0.0, min(1.0, ((point[0] - ax) * dx + (point[1] - ay) * dy) / ((dx * dx + dy * dy) or 1.0)))
            best = min(best, math.hypot(point[0] - ax - t * dx, point[1] - ay - t * dy))
    return best


def crosses(box, lines) -> bool:
    inner = (box[0] + 0.5, box[1] + 0.5, box[2] - 0.5, box[3] - 0.5)
    for line in lines:
        for (ax, ay), (bx, by) in zip(line, line[1:]):
            for k in range(201):
                x, y = ax + (bx - ax) * k / 200, ay + (by - ay) * k / 200
                if inner[0] < x < inner[2] and inner[1] < y < inner[3]:
                    return True
    return False


def assert_labels_on_their_own_wires(graph):
    c = circuit(graph)
    wires, heads, labels = svg_geometry(render(graph, "svg"))
    expected = {f"{c.objective}-": True, **{f"{w.source}-{w.target}": w.gradient is not None for w in c.wires}}
    assert set(wires) == set(expected)
    for key, has_gradient in expected.items():
        assert heads[key] == 1, f"the wire {key} has no arrowhead"
        for kind in ("value", "gradient") if has_gradient else ("value",):
            box, centre = labels[f"{kind}-{key}"]
            own = distance_to(centre, wires[key])
            for other, lines in wires.items():
                if other != key:
                    assert own < distance_to(centre, lines), f"the {kind} of {key} is nearer the wire {other}"
            for other, lines in wires.items():
                assert not crosses(box, lines), f"the {kind} of {key} sits on the wire {other}"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_label_is_nearest_its_own_wire_and_off_every_line(name):
    assert_labels_on_their_own_wires(load_graph(GRAPHS / f"{name}.toml"))


def test_a_fan_in_gate_keeps_each_inputs_numbers_on_its_wire(tmp_path):
    """Five wires meet the weighted sum of a sigmoid neuron: the gradient for x0 is on the x0
    wire (it sat on the x1 wire), and -1 * dot is drawn as the *-1 gate."""
    path = tmp_path / "neuron.toml"
    path.write_text(SIGMOID_NEURON, encoding="utf-8")
    graph = load_graph(path)
    assert_labels_on_their_own_wires(graph)
    assert "*-1" in set().union(*svg_texts(render(graph, "svg")).values())


def test_the_circuit_inside_an_html_page_has_its_arrowheads():
    """The page's inline SVG is the drawing itself: every wire ends in a head there too."""
    graph = load_graph(GRAPHS / "sigmoid-neuron-gates.toml")
    page = get_transcript("sigmoid-neuron-gates").render("html", figure_svg=render(graph, "svg", 4).decode())
    figure = page[page.index("<svg"):page.index("</svg>") + len("</svg>")]
    _, heads, _ = svg_geometry(figure.encode())
    assert len(heads) == len(circuit(graph).wires) + 1 and all(count == 1 for count in heads.values())
