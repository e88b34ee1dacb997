"""A real browser opens each shipped example's HTML page: the formulas must be laid out as
mathematics (a fraction's numerator above its denominator, every formula with a size), no
LaTeX or MathML source may be visible as text, and the console must stay quiet.

Headless Chromium from the system package manager (`.ci/run` installs it); skipped, saying
so, where it is absent. The screenshots go to out/browser/ for a person to look at.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import symprop
from symprop.symbolic.examples import EXAMPLES
from symprop.symbolic.html_page import derivation_page

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: `apt-get install -y chromium` (.ci/run does) to run the browser test")

# Run inside the page after it loaded: what the reader sees, and where the formulas landed.
PROBE = """<script>
(() => {
  const maths = [...document.querySelectorAll("math")];
  const fractions = [...document.querySelectorAll("mfrac")].map(f => {
    const [top, bottom] = [...f.children].map(c => c.getBoundingClientRect());
    return top.bottom <= bottom.top + 0.5;  // numerator above the denominator
  });
  const probe = {
    formulas: maths.length,
    sized: maths.filter(m => { const r = m.getBoundingClientRect(); return r.width > 0 && r.height > 0; }).length,
    fractions: fractions.length,
    stacked: fractions.filter(Boolean).length,
    text: document.body.innerText,
    // boxes that scroll sideways on their own (a scroll bar per formula): none wanted
    scrollers: [...document.querySelectorAll("body *")]
      .filter(e => ["auto", "scroll"].includes(getComputedStyle(e).overflowX)).length,
    // each wire of an inline circuit (groups wire-SOURCE-TARGET-i) and whether its last stretch has a head
    wires: Object.values([...document.querySelectorAll("svg g[id^='wire-']")].reduce((found, g) => {
      const wire = g.id.replace(/-\\d+$/, "");
      found[wire] = g.querySelectorAll("path").length > 1;  // the last stretch wins: line and head
      return found;
    }, {})),
  };
  document.getElementById("probe").textContent = JSON.stringify(probe);
})();
</script>"""


def chromium(*args, url):
    """Run headless Chromium once, in a fresh profile, with the network switched off."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
             "--enable-logging=stderr", "--v=0", *args, url],
            capture_output=True, text=True, timeout=120)


def open_page(document: str, folder: Path, name: str) -> tuple[dict, list[str]]:
    """(the probe's findings, console messages) for ``document`` opened from a file."""
    path = folder / f"{name}.html"
    path.write_text(document.replace("</body>", '<pre id="probe"></pre>' + PROBE + "</body>"), encoding="utf-8")
    result = chromium("--dump-dom", url=path.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found and found.group(1), f"the probe did not run in {name}: {result.stderr[-2000:]}"
    probe = json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
                       .replace("&quot;", '"'))
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return probe, console


def assert_rendered(probe: dict, console: list[str], name: str):
    assert probe["formulas"] > 0, name
    assert probe["sized"] == probe["formulas"], f"{name}: some formulas have no size"
    assert probe["stacked"] == probe["fractions"], f"{name}: a fraction is not laid out as one"
    text = probe["text"]
    leftovers = re.findall(r"\\[a-zA-Z]+|\$|<m[a-z]+[ >]|&#x", text)
    assert not leftovers, f"{name}: source visible as text: {leftovers[:5]}"
    assert not console, f"{name}: console messages: {console}"


PAGES = [(f"example-{name}", name, "en") for name in EXAMPLES] + [("example-mazur-2-2-2-zh", "mazur-2-2-2", "zh")]


@pytest.mark.parametrize("page_name, example, lang", PAGES, ids=[p[0] for p in PAGES])
def test_each_example_page_renders_its_formulas_in_chromium(page_name, example, lang, tmp_path):
    probe, console = open_page(symprop.example(example).render("html", 4, lang), tmp_path, page_name)
    assert_rendered(probe, console, page_name)
    if example == "mazur-2-2-2":
        assert probe["fractions"] > 10  # the chain-rule factors are fractions


def test_a_derivation_page_renders_in_chromium(tmp_path):
    probe, console = open_page(derivation_page(symprop.derive("softmax-cross-entropy")), tmp_path, "derive")
    assert_rendered(probe, console, "derive softmax-cross-entropy")
    assert probe["fractions"] >= 5


def test_the_probe_sees_raw_latex_and_console_errors(tmp_path):
    """The checks above would catch a page whose formulas stayed LaTeX, or one that errs."""
    bad = "<!DOCTYPE html><html><body><p>$\\frac{a}{b}$</p><math><mi>x</mi></math>" \
          "<script>console.error('broken')</script></body></html>"
    probe, console = open_page(bad, tmp_path, "bad")
    with pytest.raises(AssertionError, match="source visible"):
        assert_rendered(probe, [], "bad")
    assert any("broken" in line for line in console)


def test_screenshot_of_the_mazur_page():
    """The picture a person checks (and the README shows): out/browser/mazur-2-2-2.png."""
    folder = ROOT / "out" / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "mazur-2-2-2.html"
    page.write_text(symprop.example("mazur-2-2-2").render("html"), encoding="utf-8")
    shot = folder / "mazur-2-2-2.png"
    shot.unlink(missing_ok=True)
    result = chromium(f"--screenshot={shot}", "--window-size=1000,1300", "--hide-scrollbars", url=page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.path.getsize(shot) > 20_000


def test_a_graph_page_shows_its_circuit_with_arrowheads_and_no_formula_scrolls(tmp_path):
    """The circuit inside the page has a head on every wire; no formula gets a scroll bar of
    its own (the page scrolls once, if ever); the picture goes to out/browser/ to look at."""
    from symprop.draw import render
    from symprop.symbolic.graphfile import load_graph

    graph = load_graph(ROOT / "symbolic" / "graphs" / "sigmoid-neuron-gates.toml")
    document = symprop.example("sigmoid-neuron-gates").render("html", figure_svg=render(graph, "svg", 4).decode())
    probe, console = open_page(document, tmp_path, "sigmoid-neuron-gates")
    assert_rendered(probe, console, "sigmoid-neuron-gates")
    assert probe["wires"] and all(probe["wires"]), f"wires without an arrowhead: {probe['wires']}"
    assert probe["scrollers"] == 0
    folder = ROOT / "out" / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sigmoid-neuron-gates.html").write_text(document, encoding="utf-8")
    shot = folder / "sigmoid-neuron-gates.png"
    shot.unlink(missing_ok=True)
    result = chromium(f"--screenshot={shot}", "--window-size=1000,1300", "--hide-scrollbars",
                      url=(folder / "sigmoid-neuron-gates.html").as_uri())
    assert result.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", result.stderr[-2000:]


def test_the_widest_derivation_has_no_scroll_bar_per_formula(tmp_path):
    probe, console = open_page(derivation_page(symprop.derive("conv2d")), tmp_path, "conv2d")
    assert_rendered(probe, console, "derive conv2d")
    assert probe["scrollers"] == 0


def test_the_probe_sees_a_scrolling_formula_and_a_headless_wire(tmp_path):
    """The two checks above would catch the old style (overflow-x: auto) and a wire without a head."""
    bad = ('<!DOCTYPE html><html><body><div style="overflow-x:auto"><math display="block"><mi>x</mi></math></div>'
           '<svg><g id="wire-a-b-0"><path d="M 0 0 L 9 9"/></g></svg></body></html>')
    probe, _ = open_page(bad, tmp_path, "bad-scroll")
    assert probe["scrollers"] == 1 and probe["wires"] == [False]
