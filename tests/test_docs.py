"""The README and the pages under docs/: the website builds with no broken link, every code block
meant to run runs as written, and no page names a workplace path, commit, branch or issue.

A fenced block in ```sh or ```python runs unless the line before it says why not, as
``<!-- no-run: REASON -->`` (a download, the test suite itself, minutes of benchmark). A
```toml block preceded by ``<!-- file: NAME -->`` is saved under that name before the page's
blocks run. Blocks of one page run in order in one empty folder, as a reader following the page
would: the sh blocks by bash with ``set -e``, the python blocks as one program. The ``symprop``
the sh blocks find first on PATH is a fork of one process that imported symprop once, and so
is the python program (tests/forked_cli.py): the same code, without a second of imports each time.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.forked_cli import forked_symprop

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
MARK = re.compile(r"^<!-- (no-run|file): (.+?) -->$")
RUNNABLE = ("sh", "python")
# The files the pages call the reader's own (my-net.toml, ...): shipped examples stand in.
STAND_INS = {"my-net.toml": "symbolic/networks/two-layer-sigmoid.toml",
             "my-graph.toml": "symbolic/graphs/staged-sigmoid-ratio.toml"}


@dataclass
class Block:
    page: Path
    line: int
    language: str
    code: str
    mark: tuple[str, str] | None  # ("no-run", reason) or ("file", name)

    @property
    def runs(self) -> bool:
        return self.language in RUNNABLE and not (self.mark and self.mark[0] == "no-run")


def code_blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        mark = MARK.match(before.strip())
        blocks.append(Block(page, i + 1, opening.group(1), "\n".join(lines[i + 1:end]) + "\n",
                            mark.groups() if mark else None))
        i = end + 1
    return blocks


def _environment(folder: Path) -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "SYMPROP_DATA": str(folder / "data"), "COLUMNS": "100"}


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else page.name


def _run_page(page: Path, folder: Path, server: str | None = None) -> int:
    """Run the page's blocks meant to run (sh one by one, python together); return how many ran.
    server: the clients' folder of a forked_symprop already running (else one starts here)."""
    for name, shipped in STAND_INS.items():
        shutil.copy(ROOT / shipped, folder / name)
    shutil.copytree(ROOT / "examples", folder / "examples")
    (folder / "docs").mkdir()
    blocks = code_blocks(page)
    for block in blocks:
        if block.mark and block.mark[0] == "file":
            (folder / block.mark[1]).write_text(block.code)
    python, shell = [], []
    for block in blocks:
        if block.runs:
            where = f"{_name(page)}, line {block.line}"
            (python if block.language == "python" else shell).append((where, block.code))
    if not (python or shell):
        return 0
    with (nullcontext(server) if server else forked_symprop(_environment(folder))) as fast:
        env = _environment(folder)
        env["PATH"] = f"{fast}{os.pathsep}{env['PATH']}"
        for where, code in shell:
            result = subprocess.run(["bash", "-e", "-c", code], cwd=folder, env=env,
                                    capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"{where}: exit status {result.returncode}\n{result.stderr[-3000:]}"
            assert "Traceback" not in result.stderr, f"{where}:\n{result.stderr[-3000:]}"
        if python:
            program = "\n".join(f"# {where}\n{code}" for where, code in python)
            result = subprocess.run([os.path.join(fast, "python-program"), program], cwd=folder, env=env,
                                    capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"{_name(page)}'s python blocks:\n{result.stderr[-3000:]}"
    return len(python) + len(shell)


# the tutorial's blocks train five networks: tests/test_docs_tutorial.py runs them, in its own
# file so that pytest-xdist (--dist loadfile) can give it a worker of its own
SLOW_PAGE = ROOT / "docs" / "tutorial.md"


@pytest.fixture(scope="module")
def symprop_server(tmp_path_factory):
    """One forked_symprop for every page here (each start imports for seconds): a command is
    still a fresh fork of it, run in its page's folder with its page's environment."""
    with forked_symprop(_environment(tmp_path_factory.mktemp("server"))) as fast:
        yield fast


@pytest.mark.parametrize("page", [p for p in PAGES if p != SLOW_PAGE], ids=lambda p: p.name)
def test_every_code_block_meant_to_run_runs(page, tmp_path, symprop_server):
    assert _run_page(page, tmp_path, symprop_server) == sum(block.runs for block in code_blocks(page))


def test_the_block_reader_sees_marks_and_languages(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n<!-- no-run: downloads -->\n```sh\nsymprop data mnist\n```\n\n"
                    "```python\nprint(1)\n```\n<!-- file: a.toml -->\n```toml\nx = 1\n```\n")
    download, program, data = code_blocks(page)
    assert (download.language, download.mark, download.runs) == ("sh", ("no-run", "downloads"), False)
    assert (program.language, program.code, program.mark, program.runs) == ("python", "print(1)\n", None, True)
    assert (data.mark, data.runs, data.line) == (("file", "a.toml"), False, 12)


def test_a_failing_block_fails_the_page(tmp_path, symprop_server):
    page = tmp_path / "page.md"
    page.write_text("```sh\nsymprop derive no-such-layer\n```\n")
    (tmp_path / "run").mkdir()
    with pytest.raises(AssertionError, match="page.md, line 1: exit status 2"):
        _run_page(page, tmp_path / "run", symprop_server)


def test_the_site_builds_strictly(tmp_path):
    """mkdocs --strict: a link to a missing page or anchor is an error, not a warning."""
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "limits" / "index.html").is_file()


def test_a_broken_link_fails_the_strict_build(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    (docs / "index.md").write_text((docs / "index.md").read_text() + "\n[gone](no-such-page.md)\n")
    config = (ROOT / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {docs}")
    (tmp_path / "mkdocs.yml").write_text(config)
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "no-such-page.md" in result.stderr


def test_the_readme_links_only_to_files_that_exist():
    text = (ROOT / "README.md").read_text()
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not t.startswith(("http", "#"))]
    assert targets and not [t for t in targets if not (ROOT / t.split("#")[0]).exists()]
    anchors = re.findall(r"\]\(#([^)]+)\)", text)
    headings = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", text, re.M)}
    assert not [a for a in anchors if a not in headings]


def test_the_command_reference_is_the_parsers_help():
    from symprop.cli.reference import reference_text

    assert (ROOT / "docs" / "commands.md").read_text() == reference_text(), \
        "docs/commands.md is stale: python -m symprop.cli.reference > docs/commands.md"


# workplace paths, commit hashes, branch names, issue numbers
NOT_FOR_USERS = re.compile(r"/work/|\.\./shared|/root/|\bissues? \d+|\bissue's\b|\bbranch\b|"
                           r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,12}\b")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_names_a_workplace_path_commit_branch_or_issue(page):
    hits = [(n, m.group()) for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
            for m in [NOT_FOR_USERS.search(line)] if m]
    assert not hits, hits


def test_the_pattern_catches_what_it_should():
    for bad in ("before (a945687) and after", "issue 16's network", "../shared/data/mnist",
                "(branch compile-latency)", "/work/h29/README.md"):
        assert NOT_FOR_USERS.search(bad), bad
    assert not NOT_FOR_USERS.search("784-100-10 at batch 100, 0.0621 us, sha256 of the file")
