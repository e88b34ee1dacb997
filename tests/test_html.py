"""HTML pages and Jupyter display: every shipped formula becomes MathML, pages are whole and
fetch nothing, and notebooks get the same Markdown as `--format md`."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

import symprop
from symprop.symbolic.checker import render_report
from symprop.symbolic.examples import EXAMPLES
from symprop.symbolic.html_page import derivation_page, markdown_to_html, page
from symprop.symbolic.render import derivation_markdown

ROOT = Path(__file__).resolve().parents[1]


def body_text(document: str) -> str:
    """What a reader sees outside formulas: the body with MathML and tags removed."""
    body = document.split("<body>", 1)[1]
    body = re.sub(r"<math.*?</math>", "", body, flags=re.S)
    return re.sub(r"<[^>]+>", "", body)


def assert_whole_offline_page(document: str):
    assert document.startswith("<!DOCTYPE html>") and document.rstrip().endswith("</html>")
    assert '<meta charset="utf-8">' in document
    # nothing to fetch: no scripts, stylesheets, images or fonts from anywhere
    assert not re.search(r"<script|<link|<img|src=|url\(|@import", document)
    assert 'class="math-error"' not in document, "a formula was not converted to MathML"
    text = body_text(document)
    assert "$" not in text and not re.search(r"\\[a-zA-Z]+", text), "LaTeX source left in the text"


@pytest.mark.parametrize("name", list(EXAMPLES))
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_example_is_a_whole_offline_page_with_every_formula_in_mathml(name, lang):
    transcript = symprop.example(name)
    md = transcript.render("md", 4, lang)
    document = transcript.render("html", 4, lang)
    assert_whole_offline_page(document)
    assert document.count("<math ") == md.count("$") // 2  # one MathML formula per $...$
    assert f'<html lang="{"zh-Hans" if lang == "zh" else "en"}">' in document


@pytest.mark.parametrize("layer", list(symprop.REGISTRY))
def test_every_derivation_is_a_whole_offline_page(layer):
    document = derivation_page(symprop.derive(layer))
    assert_whole_offline_page(document)
    assert 'display="block"' in document  # the steps' display formulas


def test_the_seed_pages_are_small():
    for name in ("mazur-2-2-2", "two-layer-sigmoid"):
        for lang in ("en", "zh"):
            size = len(symprop.example(name).render("html", 4, lang).encode())
            assert size < 1_000_000, f"{name} ({lang}) is {size} bytes"


def test_the_page_keeps_the_numbers_and_words_of_the_markdown():
    transcript = symprop.example("mazur-2-2-2")
    document = transcript.render("html", 6, "zh")
    assert "前向传播" in document and "反向传播" in document
    assert "<mn>0.298371</mn>" in document  # E, to 6 digits, as in the md transcript
    assert "0.298371" in transcript.render("md", 6, "zh")


def test_markdown_dialect():
    md = ("# Title `x`\n\nintro with $a^{2}$ and **bold**\n\n1. **one** — first\n\n   $$ y = x $$\n\n"
          "2. **two**\n\n   $$ z $$\n\n- a\n- b\n\n| h1 | h2 |\n|---|---|\n| `a` | x \\| y |\n\nend <b>\n")
    title, body = markdown_to_html(md)
    assert title == "Title x"
    assert body.count("<ol>") == 1 and body.count("<li>") == 4  # the numbered list goes on over blank lines
    assert body.count('display="block"') == 2 and body.count('display="inline"') == 1
    assert "<td>x | y</td>" in body and "<td><code>a</code></td>" in body
    assert "<strong>bold</strong>" in body and "end &lt;b&gt;" in body


def test_a_formula_the_converter_cannot_read_is_marked_not_fatal():
    document = page("# t\n\n- $\\frac{$\n")
    assert 'class="math-error"' in document


def test_checker_report_page():
    report = symprop.check("mazur-2-2-2", {"dE/dw5": "0.0821", "E": "0.298371"})
    document = render_report(report, "html", "zh")
    assert_whole_offline_page(document)
    assert document.count("<tr>") == 3 and "手算结果检查" in document


def test_cli_writes_html_for_derive_example_and_check():
    run = lambda *a: subprocess.run([sys.executable, "-m", "symprop", *a], capture_output=True,  # noqa: E731
                                    text=True, cwd=ROOT)
    derive = run("derive", "sigmoid", "--format", "html")
    example = run("example", "show", "two-layer-sigmoid", "--format", "html", "--lang", "zh")
    check = run("check", "mazur-2-2-2", "dE/dw5=0.082167041", "--format", "html")
    for result in (derive, example, check):
        assert result.returncode == 0, result.stderr
        assert_whole_offline_page(result.stdout)
    assert "<mi>σ</mi>" in derive.stdout  # sigma (the allow-list rebuilds MathML with characters, not references)
    assert "链式法则" in example.stdout or "前向传播" in example.stdout
    assert "✅ right" in check.stdout  # the mark, and a word for where no emoji font draws it


def test_jupyter_shows_each_object_as_its_markdown():
    derivation = symprop.derive("sigmoid")
    transcript = symprop.example("nested-neurons")
    report = symprop.check("mazur-2-2-2", {"dE/dw5": "0.0821"})
    assert derivation._repr_markdown_() == derivation_markdown(derivation)
    assert transcript._repr_markdown_() == transcript.render("md")
    assert report._repr_markdown_() == render_report(report, "md")
    assert repr(transcript).startswith("<Transcript 'nested-neurons':")
