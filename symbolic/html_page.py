"""Self-contained HTML pages: the Markdown that derivations, transcripts and checker reports
already print, with every LaTeX formula turned into MathML.

Why this way: the Markdown renderers are the one tested source of each page's words and
formulas, so the page cannot say something the Markdown does not. MathML (MathML Core, which
browsers render natively) needs no script and no font download, so a page opens offline and
weighs tens of kilobytes; latex2mathml (pure Python, no dependencies) converts the LaTeX that
SymPy and the transcript printers already write, so there is no second printer to keep in
step with the first.

The Markdown here is the small dialect our renderers write: ``#``/``##`` headings, ``- ``
and ``1. `` list items (a numbered item may continue on indented lines, such as a display
formula), ``|`` tables, paragraphs, ``$...$`` and ``$$...$$`` math, ``**bold**`` and
``` `code` ```.
"""
from __future__ import annotations

import html
import re
from xml.etree import ElementTree

from latex2mathml.converter import convert as _latex_to_mathml

STYLE = """
body { font-family: "DejaVu Sans", "Noto Sans", "Noto Sans CJK SC", "PingFang SC", sans-serif;
       max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.6; color: #1d1d1f; }
h1 { font-size: 1.6rem; border-bottom: 1px solid #ccc; padding-bottom: .3rem; }
h2 { font-size: 1.25rem; margin-top: 1.8rem; }
math { font-family: "STIX Two Math", "Latin Modern Math", "DejaVu Math TeX Gyre", "Cambria Math", math;
       font-size: 1.1em; }
math[display="block"] { margin: .4rem 0; }  /* no overflow box: a wide formula widens the page (one scroll bar), not a bar per formula */
li { margin: .25rem 0; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: .2rem .6rem; text-align: right; }
td:first-child, th:first-child { text-align: left; }
code { background: #f3f3f3; padding: 0 .2rem; border-radius: 3px; }
.math-error { color: #b00020; }
footer { margin-top: 2rem; color: #777; font-size: .85rem; }
figure.circuit { margin: 1rem 0; max-width: none; position: relative; left: 50%; transform: translateX(-50%); }
figure.circuit svg { width: 100%; height: auto; }
"""


def math(latex: str, display: bool = False) -> str:
    """One formula as MathML, cleaned by ``safe_mathml``; a formula the converter cannot read
    is shown as marked code rather than breaking the page (the tests assert no shipped formula
    ends up so)."""
    try:
        return safe_mathml(_latex_to_mathml(latex.strip(), display="block" if display else "inline"))
    except Exception:  # noqa: BLE001 - any converter failure: show the source, marked
        return f'<code class="math-error" title="formula not converted">{html.escape(latex)}</code>'


# What a formula needs, and nothing that links, runs, styles or fetches: MathML Core's
# presentation elements and their layout attributes. No href (latex2mathml turns \href into
# one), no style, class, id or event handler.
MATHML_ELEMENTS = {
    "math", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "msub", "msup", "msubsup", "mfrac", "msqrt",
    "mroot", "mover", "munder", "munderover", "mtable", "mtr", "mtd", "mstyle", "mpadded", "mphantom",
    "menclose", "merror", "mmultiscripts", "mprescripts", "none", "semantics"}
MATHML_ATTRIBUTES = {
    "display", "mathvariant", "stretchy", "fence", "separator", "form", "accent", "accentunder", "lspace",
    "rspace", "width", "height", "depth", "linethickness", "displaystyle", "scriptlevel", "columnalign",
    "rowalign", "columnspacing", "rowspacing", "columnlines", "rowlines", "frame", "framespacing",
    "minsize", "maxsize", "movablelimits", "largeop", "symmetric", "notation", "voffset", "align"}
_ATTRIBUTE_VALUE = re.compile(r"[\w .,%+-]*\Z")
_MATHML_NS = "{http://www.w3.org/1998/Math/MathML}"


def safe_mathml(markup: str) -> str:
    """latex2mathml's output rebuilt from an allow-list: elements outside it are dropped (their
    content kept), attributes outside it removed, every text escaped. Output that is not
    well-formed XML (latex2mathml copies ``\text{<b>}`` through raw) raises ValueError."""
    try:
        root = ElementTree.fromstring(markup)
    except ElementTree.ParseError as error:
        raise ValueError(f"not well-formed MathML: {error}") from None
    out: list[str] = []

    def write(element):
        tag = element.tag.removeprefix(_MATHML_NS)
        keep = tag in MATHML_ELEMENTS
        if keep:
            attributes = "".join(f' {name}="{value}"' for name, value in sorted(element.attrib.items())
                                 if name in MATHML_ATTRIBUTES and _ATTRIBUTE_VALUE.match(value))
            if tag == "math":
                attributes = ' xmlns="http://www.w3.org/1998/Math/MathML"' + attributes
            out.append(f"<{tag}{attributes}>")
        out.append(html.escape(element.text or "", quote=False))
        children = list(element)
        while children:
            word = _upright_letters(children)
            if len(word) > 1:  # \mathrm{dout}: one identifier <mi>dout</mi>, not four letters
                out.append(f"<mi>{html.escape(''.join(c.text for c in word), quote=False)}</mi>")
                children = children[len(word):]
                continue
            child = children.pop(0)
            write(child)
            out.append(html.escape(child.tail or "", quote=False))
        if keep:
            out.append(f"</{tag}>")

    write(root)
    return "".join(out)


def _upright_letters(children) -> list:
    """The run of upright one-letter identifiers (latex2mathml's \\mathrm{...}) that starts the list."""
    run = []
    for child in children:
        if (child.tag.removeprefix(_MATHML_NS) == "mi" and child.get("mathvariant") == "normal" and len(child) == 0
                and child.text and len(child.text) == 1 and not (child.tail or "").strip()):
            run.append(child)
        else:
            break
    return run


# Our Markdown's inline pieces: a backslash escape (markup.py writes them), display and inline
# math, code, bold.
_INLINE = re.compile(r"\\([!-/:-@\[-`{-~])|\$\$(.+?)\$\$|\$(.+?)\$|`([^`]+)`|\*\*(.+?)\*\*")


def _words(text: str) -> str:
    """Text between inline pieces, as HTML: Markdown's entities (``&lt;``) read, all escaped."""
    return html.escape(html.unescape(text), quote=False)


def inline(text: str) -> str:
    """A line of Markdown text: math to MathML, code and bold to tags, the rest escaped."""
    out, end = [], 0
    for m in _INLINE.finditer(text):
        out.append(_words(text[end:m.start()]))
        escaped, display, formula, code, bold = m.groups()
        if escaped is not None:
            out.append(html.escape(escaped, quote=False))
        elif display is not None:
            out.append(math(display, display=True))
        elif formula is not None:
            out.append(math(formula))
        elif code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        else:
            out.append(f"<strong>{inline(bold)}</strong>")
        end = m.end()
    out.append(_words(text[end:]))
    return "".join(out)


def plain_text(text: str) -> str:
    """A line of Markdown as the words it shows (a page's <title>): markers and escapes gone,
    a formula as its source."""
    def piece(m):
        escaped, display, formula, code, bold = m.groups()
        return escaped or display or formula or code or plain_text(bold)

    out, end = [], 0
    for m in _INLINE.finditer(text):
        out += [html.unescape(text[end:m.start()]), piece(m)]
        end = m.end()
    return "".join(out + [html.unescape(text[end:])]).strip()


def _cells(row: str) -> list[str]:
    """The cells of a table row ``| a | b |``; ``\\|`` is a pipe inside a cell."""
    row = row.strip().removeprefix("|")
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    cells = re.split(r"(?<!\\)\|", row)
    return [c.strip().replace("\\|", "|") for c in cells]


def _item_kind(line: str) -> str | None:
    """"ul" for a bullet item, "ol" for a numbered one, None for any other line."""
    if line.startswith("- "):
        return "ul"
    return "ol" if re.match(r"\d+\. ", line) else None


def markdown_to_html(md: str) -> tuple[str, str]:
    """(title, body) of our Markdown dialect as HTML; the title is the first heading's text."""
    body, title = [], None
    lines = md.splitlines()
    i = 0
    open_list = None  # "ul" or "ol" while a list is open
    paragraph: list[str] = []

    def close():
        nonlocal open_list
        if paragraph:
            body.append("<p>" + "<br>".join(inline(p) for p in paragraph) + "</p>")
            paragraph.clear()
        if open_list:
            body.append(f"</li></{open_list}>")
            open_list = None

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        item = re.match(r"(- |\d+\. )(.*)", line)
        if not stripped:
            following = next((x for x in lines[i + 1:] if x.strip()), "")
            if open_list and (following.startswith("   ") or _item_kind(following) == open_list):
                i += 1  # the list goes on after a blank line: a continuation or the next item
                continue
            close()
        elif line.startswith("#"):
            close()
            level = len(line) - len(line.lstrip("#"))
            text = line[level:].strip()
            title = plain_text(text) if title is None else title
            body.append(f"<h{level}>{inline(text)}</h{level}>")
        elif item:
            kind = "ul" if item.group(1) == "- " else "ol"
            if paragraph or open_list != kind:
                close()
                body.append(f"<{kind}><li>")
                open_list = kind
            else:
                body.append("</li><li>")
            body.append(inline(item.group(2)))
        elif open_list and line.startswith("   "):
            body.append(" " + inline(stripped))  # the continuation of the open item
        elif stripped.startswith("|"):
            close()
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(lines[i])
                i += 1
            body.append(_table(rows))
            continue
        else:
            if open_list:
                close()
            paragraph.append(stripped)
        i += 1
    close()
    return title or "", "\n".join(body)


def _table(rows: list[str]) -> str:
    header, *rest = rows
    if rest and re.fullmatch(r"[\s|:-]+", rest[0]):
        rest = rest[1:]
    out = ["<table>", "<tr>" + "".join(f"<th>{inline(c)}</th>" for c in _cells(header)) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(r)) + "</tr>" for r in rest]
    return "\n".join(out + ["</table>"])


def page(md: str, lang: str = "en", figure_svg: str | None = None) -> str:
    """A complete HTML document of ``md``: inline style, MathML formulas, nothing fetched; with
    ``figure_svg``, that picture (a circuit) inline after the title."""
    title, body = markdown_to_html(md)
    if figure_svg:
        svg = figure_svg[figure_svg.index("<svg"):]  # inline SVG: no XML declaration or doctype
        natural = re.search(r'<svg[^>]*\swidth="([\d.]+)pt"', svg)
        # wider than the text when the window allows: its numbers are as large as in the file
        width = f' style="width: min(calc(100vw - 2rem), {float(natural.group(1)):.0f}pt)"' if natural else ""
        first_break = body.find("</h1>")
        at = first_break + len("</h1>") if first_break >= 0 else 0
        body = body[:at] + f'\n<figure class="circuit"{width}>{svg}</figure>\n' + body[at:]
    html_lang = "zh-Hans" if lang == "zh" else "en"
    return (f'<!DOCTYPE html>\n<html lang="{html_lang}">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
            f"<footer>symprop</footer>\n</body>\n</html>\n")


def derivation_page(derivation) -> str:
    """A derivation's page (here, not in render.py: render.py feeds the generator's input hash,
    so page making stays out of what stamps generated/)."""
    from .render import derivation_markdown

    return page(derivation_markdown(derivation))
