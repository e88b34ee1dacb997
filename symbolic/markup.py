"""Words from users (titles, descriptions, notes, claim names, file names) in our Markdown.

A graph file's title or a claim's name is text, never markup: ``<img src=x onerror=...>``
must show as those characters wherever the Markdown is rendered (GitHub, Jupyter, our own
HTML pages), ``$\\href{...}$`` must not become a formula with a link, and ``**`` or ``|``
must not change the page's structure. Our own prose goes through the same escaping, so one
rule covers every sentence; only the formulas our printers write are left as LaTeX.

Why entities for ``<``, ``>`` and ``&`` and backslashes for the rest: an entity is text in
every HTML-producing renderer, even one that ignores Markdown's backslash escapes, so the
one character that could open a tag is safe everywhere; the backslash escapes are
CommonMark's way to make any other punctuation literal.
"""
from __future__ import annotations

import re

_BACKSLASHED = "\\`*_[]$|~#"
_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}
# a line that begins like a list item, a quote or a thematic break
_BLOCK_START = re.compile(r"^([-+*=]|\d+[.)])")


def md_text(text: str, block: bool = False) -> str:
    """``text`` as Markdown that renders as exactly these characters. Line breaks become spaces
    (a line of it cannot start a heading or a list). ``block``: the text starts a line of its
    own (an introduction, a note), so a leading "- " or "1. " is escaped too, and a blank line
    still separates paragraphs."""
    if block:
        return "\n\n".join(_start_of_line(md_text(p)) for p in re.split(r"\n\s*\n", text.strip()) if p.strip())
    flat = " ".join(text.split())
    return "".join(_ENTITIES.get(ch) or ("\\" + ch if ch in _BACKSLASHED and not _inside_word(flat, i) else ch)
                   for i, ch in enumerate(flat))


def _inside_word(text: str, i: int) -> bool:
    """An underscore between two letters or digits (``mu_j``, ``add_out``) emphasises nothing in
    CommonMark, so it stays as written and the Markdown stays readable."""
    return text[i] == "_" and 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()


def _start_of_line(out: str) -> str:
    start = _BLOCK_START.match(out)
    if start:  # "- x", "1. x" or "===" at the start of a line: keep it a sentence
        at = start.end() - 1
        out = out[:at] + "\\" + out[at:]
    return out


def md_code(text: str, in_table: bool = False) -> str:
    """``text`` as a code span (shown in a fixed-width font, nothing in it read as markup); a
    name with a backtick or a line break cannot be one, so it becomes escaped text instead.
    ``in_table``: a pipe inside a table cell is written ``\\|`` even in code (GitHub's rule)."""
    if "`" in text or "\n" in text or not text.strip():
        return md_text(text)
    return f"`{text.replace('|', chr(92) + '|') if in_table else text}`"
