"""Users' words never become markup: a graph file, a claims file and a transcript full of
markup characters render to Markdown (as GitHub and Jupyter read it: CommonMark), to an HTML
page and to an SVG picture, and each output is parsed here to see that every title,
description, note and claim name is text in it, shown as written, and that nothing in it links,
runs or loads anything. Hypothesis then tries many more strings.
"""
from __future__ import annotations

import dataclasses
import html
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from symprop.draw import render as draw
from symprop.symbolic.checker import check, load_claims, render_report
from symprop.symbolic.graphfile import load_graph
from symprop.symbolic.graphfile_transcript import graph_transcript
from symprop.symbolic.html_page import MATHML_ELEMENTS, math, page
from symprop.symbolic.markup import md_code, md_text
from symprop.symbolic.transcript import Transcript, tr

ROOT = Path(__file__).resolve().parents[1]
TITLE = r"<img src=x onerror=alert(1)> $\foo$ **bold** `code` | a_b [x](javascript:alert(2)) &amp; #"
TITLE_ZH = r"<script>alert(3)</script> 标题 $\href{javascript:alert(4)}{click}$"
DESCRIPTION = (r"- a list? <b>no</b> & $\href{javascript:alert(5)}{click}$ <!-- comment -->" "\n\n"
               r"# not a heading <iframe src=javascript:alert(6)>")
NOTE = r"<img src=y onerror=alert(7)> \(x\) ~~gone~~ $\mathrm{x}$"
EVIL_GRAPH = f'''
title = {json.dumps(TITLE)}
title_zh = {json.dumps(TITLE_ZH)}
description = {json.dumps(DESCRIPTION)}
output = "f"

[inputs]
x = 2
y = 3

[nodes]
q = "x * y"
f = "q + x"

[notes]
q = {json.dumps(NOTE)}

[notes_zh]
q = {json.dumps(NOTE)}
'''
# user strings that must come through as text, whitespace aside
USER_TEXTS = [TITLE, TITLE_ZH, *DESCRIPTION.split("\n\n"), NOTE]

COMMONMARK = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")
# the tags a page of ours may contain (MathML apart): what html_page.py writes
PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "br", "ul", "ol", "li",
             "table", "tr", "th", "td", "code", "strong", "footer", "figure"}
SVG_TAGS = {"svg", "defs", "style", "g", "path", "text", "clippath", "rect", "use", "metadata", "title", "rdf:rdf",
            "cc:work", "dc:format", "dc:type", "dc:date", "dc:creator", "cc:agent", "dc:title", "desc"}


def flat(text: str) -> str:
    return " ".join(text.split())


def markdown_tokens(md: str):
    """Every token CommonMark reads in ``md``, inline children included."""
    for token in COMMONMARK.parse(md):
        yield token
        yield from token.children or []


def assert_markdown_is_text(md: str, user_texts):
    """No HTML, link, image or emphasis-made-of-user-text in ``md``; each user text is shown."""
    kinds = {t.type for t in markdown_tokens(md)}
    assert not kinds & {"html_inline", "html_block", "link_open", "image", "s_open"}, kinds
    shown = flat(html.unescape(re.sub(r"<[^>]+>", " ", COMMONMARK.render(md))))
    for text in user_texts:
        assert flat(text) in shown, f"{text!r} is not shown as written"
    # a formula of ours is $...$ with no user text in it; a user's dollar is escaped
    for formula in re.findall(r"(?<!\\)\$(.+?)(?<!\\)\$", md):
        assert not re.search(r"href|foo|alert|mathrm\{x\}", formula), formula


class Tags(HTMLParser):
    """The tags and attributes of a document, and the text of its title and first heading."""

    def __init__(self, document: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.attributes, self.texts, self._in = set(), [], {}, []
        self.feed(document)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes += attrs
        self._in.append(tag)

    def handle_endtag(self, tag):
        if tag in self._in:
            while self._in.pop() != tag:
                pass

    def handle_data(self, data):
        if self._in and self._in[-1] in ("title", "h1"):
            self.texts[self._in[-1]] = self.texts.get(self._in[-1], "") + data


def assert_page_is_safe(document: str, title: str, svg: bool = False):
    found = Tags(document)
    allowed = PAGE_TAGS | MATHML_ELEMENTS | (SVG_TAGS if svg else set())
    assert found.tags <= allowed, found.tags - allowed
    for name, value in found.attributes:
        assert not name.startswith("on") and name not in ("href", "src", "xlink:href", "style") or \
            (name == "style" and svg), (name, value)
        assert "javascript" not in (value or "").lower(), (name, value)
    assert flat(found.texts.get("title", "")) == flat(title) and flat(found.texts.get("h1", "")) == flat(title)


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    path = tmp_path_factory.mktemp("evil") / "evil.toml"
    path.write_text(EVIL_GRAPH, encoding="utf-8")
    graph = load_graph(path)
    return graph, graph_transcript(graph)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_markdown_and_the_notebook_show_users_words_as_text(evil, lang):
    _, transcript = evil
    md = transcript.render("md", lang=lang)
    assert_markdown_is_text(md, [TITLE if lang == "en" else TITLE_ZH, *DESCRIPTION.split("\n\n"), NOTE])
    assert transcript._repr_markdown_() == transcript.render("md")


def test_the_html_page_has_no_markup_from_users(evil):
    graph, transcript = evil
    document = transcript.render("html", figure_svg=draw(graph, "svg").decode())
    assert_page_is_safe(document, TITLE, svg=True)
    assert "javascript" not in document.replace("javascript:alert", "")  # only inside escaped text
    for text in ("&lt;img src=x onerror=alert(1)&gt;", "&lt;iframe src=javascript:alert(6)&gt;"):
        assert text in document


def test_the_svg_picture_shows_the_title_as_text_not_mathtext(evil):
    graph, _ = evil
    svg = draw(graph, "svg")
    root = ET.fromstring(svg)  # well-formed: the title's < and & are escaped
    texts = ["".join(e.itertext()) for e in root.iter("{http://www.w3.org/2000/svg}text")]
    assert TITLE in texts
    assert draw(graph, "png")[:4] == b"\x89PNG"  # "$\foo$" is not read as mathtext


def test_the_command_line_outputs_of_a_hostile_file(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "evil.toml"
    path.write_text(EVIL_GRAPH, encoding="utf-8")
    for fmt in ("md", "html", "svg", "png"):
        result = subprocess.run([sys.executable, "-m", "symprop", "example", "show", str(path), "--format", fmt],
                                capture_output=True, timeout=300)
        assert result.returncode == 0, result.stderr.decode()[-500:]
        assert b"<img" not in result.stdout and b"<script" not in result.stdout


def test_a_users_latex_cannot_link_and_mathml_is_allow_listed():
    assert "href" not in math(r"\href{javascript:alert(1)}{click}")
    assert "style" not in math(r"\style{color:red}{x}")
    # latex2mathml copies \text{...} through unescaped: such a formula is shown as source, escaped
    assert "<img" not in math(r"\text{<img src=x onerror=alert(1)>}")
    found = Tags(math(r"\frac{\partial E}{\partial w_{1}} \approx \begin{bmatrix}1 & 2\end{bmatrix}", True))
    assert found.tags <= MATHML_ELEMENTS and {"mfrac", "mtable"} <= found.tags


def test_a_claims_report_shows_claim_names_as_text(tmp_path):
    claims = tmp_path / "claims.toml"
    claims.write_text('example = "mazur-2-2-2"\n[claims]\nE = 0.2984\n"<img src=x onerror=alert(1)>|x" = 0.5\n'
                      '"`dE/dw5`" = 0.08217\n', encoding="utf-8")
    report = check(*load_claims(claims))
    md = render_report(report, "md")
    assert md == report._repr_markdown_()
    assert_markdown_is_text(md, ["<img src=x onerror=alert(1)>|x"])
    cells = [t.content for t in markdown_tokens(md) if t.type == "inline"]
    assert "✅ right" in cells  # the mark has its word beside it
    document = render_report(report, "html")
    assert "<img" not in document and "&lt;img src=x onerror=alert(1)&gt;" in document


def test_code_spans_and_escapes():
    assert md_code("dE/dw5") == "`dE/dw5`" and md_code("a|b", in_table=True) == "`a\\|b`"
    assert md_code("a`b") == "a\\`b"  # a backtick cannot close the span early: escaped text instead
    assert md_text("- x\n\n1. y", block=True) == "\\- x\n\n1\\. y"
    assert md_text("a <b> & c") == "a &lt;b&gt; &amp; c"


# --- fuzz: any text in any place ---------------------------------------------------------------

WORDS = st.text(alphabet=st.sampled_from(list("<>&\"'`*_[]()$\\|#~!-+=.:;/ \n{}ab01") + ["é", "梯", "度", "\u00a0"]),
                min_size=1, max_size=40).filter(lambda s: s.strip(" \n"))


def small_transcript(title, intro, note, heading):
    t = Transcript("fuzz", tr(title), tr(intro))
    x = t.given("x", 2, show=True)
    t.heading(tr(heading))
    t.define("y", 3 * x, note=tr(note))
    return t


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(WORDS, WORDS, WORDS, WORDS)
def test_fuzz_markdown_and_html(title, intro, note, heading):
    t = small_transcript(title, intro, note, heading)
    md = t.render("md")
    assert_markdown_is_text(md, [title, intro, note, heading])
    h1 = re.search(r"<h1>(.*?)</h1>", COMMONMARK.render(md), re.S)
    assert h1 and flat(html.unescape(h1.group(1))) == flat(title)  # the title is the heading, all of it
    assert_page_is_safe(page(md), title)


@pytest.fixture(scope="module")
def small_graph():
    return load_graph(ROOT / "symbolic" / "graphs" / "add-mul-circuit.toml")


@pytest.mark.filterwarnings("ignore:Glyph.*missing from font")  # CJK letters: DejaVu has none
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(WORDS)
def test_fuzz_svg_title(small_graph, title):
    svg = draw(dataclasses.replace(small_graph, title=title), "svg")
    texts = ["".join(e.itertext()) for e in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")]
    assert flat(title) in texts or not flat(title)  # on one line, as written (a blank title draws no text)
    elements = {e.tag.rsplit("}", 1)[-1].lower() for e in ET.fromstring(svg).iter()}
    assert elements <= {tag.split(":")[-1] for tag in SVG_TAGS}, elements


# --- names typeset as names --------------------------------------------------------------------

@pytest.mark.parametrize("name, identifiers", [
    ("sum01", ["sum"]), ("dout", ["dout"]), ("target", ["target"]), ("w0x0", ["w", "x"]), ("w2", ["w"]),
    ("add_out", ["add_out"]), ("nz", ["nz"]), ("E_total", ["E", "total"]), ("w1_trained", ["w", "trained"]),
])
def test_a_name_is_one_identifier_and_its_digits_a_subscript(name, identifiers):
    """sum01 is the word sum with subscript 01 (not s·u·m), w0x0 is w₀x₀ as w2 is w₂: the MathML's
    identifiers are whole words, and every digit is in a subscript."""
    from symprop.symbolic.render import typeset_name

    mathml = math(typeset_name(name))
    assert re.findall(r"<mi>([^<]*)</mi>", mathml) == identifiers, mathml
    digits = "".join(re.findall(r"\d", name))
    assert "".join(re.findall(r"<msub>.*?<mn>(\d+)</mn>", mathml)) == digits, mathml


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,12}", fullmatch=True))
def test_fuzz_every_name_typesets_to_mathml(name):
    from symprop.symbolic.render import typeset_name

    latex = typeset_name(name)
    assert "math-error" not in math(latex), (name, latex)


def prose_tokens(md: str):
    """CommonMark's reading of ``md`` with every formula taken out (Jupyter, like MathJax
    pages, lifts the math out before reading the Markdown)."""
    prose = re.sub(r"(?<!\\)\$\$.+?(?<!\\)\$\$|(?<!\\)\$.+?(?<!\\)\$", "FORMULA", md)
    return {token.type for token in markdown_tokens(prose)}


def test_every_derivation_and_example_has_prose_that_is_only_text():
    """Our own sentences go through the same escaping: "dY[n,j] * (change in Y[n,j])" or
    "learning_rate * gradient" make no emphasis, link or HTML in any shipped page."""
    import symprop
    from symprop.symbolic.examples import EXAMPLES
    from symprop.symbolic.render import derivation_markdown

    pages = {layer: derivation_markdown(symprop.derive(layer)) for layer in symprop.REGISTRY}
    pages.update({name: symprop.example(name).render("md") for name in EXAMPLES})
    for name, md in pages.items():
        kinds = prose_tokens(md)
        assert not kinds & {"em_open", "link_open", "image", "html_inline", "html_block", "s_open"}, (name, kinds)
