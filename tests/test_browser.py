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


def _dumped_text(dom: str, element_id: str, what: str, stderr: str) -> str:
    """The text of <pre id=element_id> in a dumped DOM, its entities read back."""
    found = re.search(f'<pre id="{element_id}">(.*?)</pre>', dom, re.S)
    assert found and found.group(1), f"the probe did not run in {what}: {stderr[-2000:]}"
    return found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")


def write_page(document: str, folder: Path, name: str) -> Path:
    """The document with the probe at the end of its body, as a file of its own."""
    path = folder / f"{name}.html"
    path.write_text(document.replace("</body>", '<pre id="probe"></pre>' + PROBE + "</body>"), encoding="utf-8")
    return path


def open_page(document: str, folder: Path, name: str) -> tuple[dict, list[str]]:
    """(the probe's findings, console messages) for ``document`` opened from a file."""
    path = write_page(document, folder, name)
    result = chromium("--dump-dom", url=path.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    probe = json.loads(_dumped_text(result.stdout, "probe", name, result.stderr))
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return probe, console


# Once the pages have loaded, the frame page gathers what each page's own probe found.
GATHER = """<script>
window.addEventListener("load", () => {
  const found = {};
  for (const frame of document.querySelectorAll("iframe")) {
    const probe = frame.contentDocument && frame.contentDocument.getElementById("probe");
    found[frame.dataset.name] = probe ? probe.textContent : "";
  }
  document.getElementById("gathered").textContent = JSON.stringify(found);
});
</script>"""


def open_pages(documents: dict[str, str], folder: Path) -> dict[str, tuple[dict, list[str]]]:
    """open_page for many documents in one Chromium run (a start per page was most of this
    file's time): each page, probe included, is its own file, loaded whole in a frame of one
    page the size of a window; each keeps the console messages whose source is its file.
    --allow-file-access-from-files lets the frame page read its frames' probes."""
    paths = {name: write_page(document, folder, name) for name, document in documents.items()}
    frames = "".join(f'<iframe data-name="{name}" src="{path.name}" style="width:1000px;height:1300px"></iframe>'
                     for name, path in paths.items())
    frame_page = folder / "all-pages.html"
    frame_page.write_text(f'<!DOCTYPE html><html><body>{frames}<pre id="gathered"></pre>{GATHER}</body></html>',
                          encoding="utf-8")
    result = chromium("--allow-file-access-from-files", "--dump-dom", url=frame_page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    gathered = json.loads(_dumped_text(result.stdout, "gathered", "the frame page", result.stderr))
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    sources = {name: f"source: {path.as_uri()} " for name, path in paths.items()}
    unplaced = [line for line in console if not any(source in line for source in sources.values())]
    assert not unplaced, f"console messages from no page: {unplaced}"
    return {name: (json.loads(gathered[name] or "null") or {},
                   [line for line in console if sources[name] in line]) for name in paths}


def assert_rendered(probe: dict, console: list[str], name: str):
    assert probe["formulas"] > 0, name
    assert probe["sized"] == probe["formulas"], f"{name}: some formulas have no size"
    assert probe["stacked"] == probe["fractions"], f"{name}: a fraction is not laid out as one"
    text = probe["text"]
    leftovers = re.findall(r"\\[a-zA-Z]+|\$|<m[a-z]+[ >]|&#x", text)
    assert not leftovers, f"{name}: source visible as text: {leftovers[:5]}"
    assert not console, f"{name}: console messages: {console}"


PAGES = [(f"example-{name}", name, "en") for name in EXAMPLES] + [("example-mazur-2-2-2-zh", "mazur-2-2-2", "zh")]


@pytest.fixture(scope="module")
def example_pages(tmp_path_factory) -> dict[str, tuple[dict, list[str]]]:
    """page name -> (probe, console) for every example page, all opened in one Chromium run."""
    documents = {page_name: symprop.example(example).render("html", 4, lang) for page_name, example, lang in PAGES}
    return open_pages(documents, tmp_path_factory.mktemp("pages"))


@pytest.mark.parametrize("page_name, example, lang", PAGES, ids=[p[0] for p in PAGES])
def test_each_example_page_renders_its_formulas_in_chromium(page_name, example, lang, example_pages):
    probe, console = example_pages[page_name]
    assert probe, f"the probe did not run in {page_name}"
    assert_rendered(probe, console, page_name)
    if example == "mazur-2-2-2":
        assert probe["fractions"] > 10  # the chain-rule factors are fractions


def test_a_derivation_page_renders_in_chromium(tmp_path):
    probe, console = open_page(derivation_page(symprop.derive("softmax-cross-entropy")), tmp_path, "derive")
    assert_rendered(probe, console, "derive softmax-cross-entropy")
    assert probe["fractions"] >= 5


def test_the_probe_sees_raw_latex_and_console_errors(tmp_path):
    """The checks above would catch a page whose formulas stayed LaTeX, or one that errs,
    opened alone or among other pages."""
    bad = "<!DOCTYPE html><html><body><p>$\\frac{a}{b}$</p><math><mi>x</mi></math>" \
          "<script>console.error('broken')</script></body></html>"
    good = "<!DOCTYPE html><html><body><math><mi>x</mi></math></body></html>"
    (tmp_path / "together").mkdir()
    together = open_pages({"bad": bad, "good": good}, tmp_path / "together")
    for probe, console in (open_page(bad, tmp_path, "bad"), together["bad"]):
        with pytest.raises(AssertionError, match="source visible"):
            assert_rendered(probe, [], "bad")
        assert any("broken" in line for line in console)
    assert_rendered(*together["good"], "good")  # a page opened beside it keeps only its own messages


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
