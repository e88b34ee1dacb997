"""What a newcomer reads first: ``symprop --help``, ``--version``, each command's options, and
the one-line message when an optional library is missing."""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import symprop
from symprop.cli import COMMANDS, EXAMPLES, build_parser, main
from symprop.extras import EXTRA_OF, need
from symprop.symbolic.errors import SympropError

# words a user-facing help text must not carry: issue numbers, reST markup, source paths
DEVELOPER_TEXT = re.compile(r"\bissues?\b|#\d|``|\w/\w+\.py\b|\bseed[- ]?0\d\d")


def _subparsers(parser):
    action, = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def _help_of(*argv) -> str:
    """What symprop ARGV --help prints (in this process: argparse prints, then exits 0)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return out.getvalue()


def test_version_is_the_package_version():
    result = subprocess.run([sys.executable, "-m", "symprop", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"symprop {symprop.__version__}"
    from importlib.metadata import version
    assert version("symprop") == symprop.__version__  # pyproject.toml and the module agree


def test_every_option_of_every_command_has_help():
    missing = [f"symprop {name} {action.option_strings or action.dest}"
               for name, sub in _subparsers(build_parser()).items()
               for action in sub._actions if not action.help]
    assert not missing, missing


def test_the_top_level_help_shows_an_example_of_each_common_command_and_no_developer_notes():
    text = _help_of()
    for command, what in EXAMPLES:
        assert f"  {command}\n      {what}\n" in text
    assert {shlex.split(command)[1] for command, _ in EXAMPLES} >= {"derive", "example", "draw", "check",
                                                                     "generate", "train"}
    assert not DEVELOPER_TEXT.search(text), DEVELOPER_TEXT.search(text)


@pytest.mark.parametrize("command", COMMANDS)
def test_no_command_help_carries_developer_notes(command):
    text = _help_of(command)
    assert not DEVELOPER_TEXT.search(text), (command, DEVELOPER_TEXT.search(text))


def test_the_developer_text_pattern_catches_what_it_should():
    for bad in ("(issue 15's batch norm)", "see ``symprop``", "symbolic/steps.py", "seed 001's moons"):
        assert DEVELOPER_TEXT.search(bad), bad
    assert not DEVELOPER_TEXT.search("the seed of the split (default 0)")


@pytest.mark.parametrize("command", [c for c, _ in EXAMPLES if c != "symprop demo"])  # demo: test_core_install
def test_each_example_of_the_top_level_help_runs(command, tmp_path, monkeypatch, capsys):
    argv = shlex.split(command)[1:]
    if argv[0] == "data":  # no network in tests: where it would download (tests/test_download.py downloads)
        argv.append("--where")
    monkeypatch.chdir(tmp_path)  # in this process (no interpreter start-up), in an empty folder
    assert main(argv) == 0, capsys.readouterr().err[-2000:]


def test_a_missing_optional_library_is_one_line_naming_its_extra(monkeypatch, capsys):
    for module in ("sklearn", "sklearn.datasets"):  # importing them now raises ModuleNotFoundError
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(SympropError, match=r'^the digits data set needs scikit-learn, which is not installed: '
                                           r'pip install "symprop\[train\]"$'):
        need("sklearn.datasets", "the digits data set")
    assert main(["train", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err == 'symprop: error: symprop train needs scikit-learn, which is not installed: pip install "symprop[train]"\n'


def test_each_optional_library_belongs_to_an_extra_of_pyproject():
    import tomllib

    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    names = {"sklearn": "scikit-learn", "jax": "jax"}
    for module, extra in EXTRA_OF.items():
        assert any(re.match(rf"{re.escape(names.get(module, module))}\b", r) for r in extras[extra]), module


def test_the_suite_reports_why_each_test_was_skipped():
    """./dev test passes pyproject's addopts to pytest: -rs lists every skip with its reason."""
    import shlex
    import tomllib

    options = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["tool"][
        "pytest"]["ini_options"]["addopts"]
    assert any(o.startswith("-r") and "s" in o[2:] for o in shlex.split(options)), options


def test_example_list_says_where_each_example_comes_from(capsys):
    """A column of the seed exercise (000-003) each example reproduces, or of its article."""
    assert main(["example", "list"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["name", "source", "what", "it", "shows"]
    sources = {row.split()[0]: " ".join(row.split()[1:3]) for row in rows}
    assert sources["two-layer-sigmoid"] == "exercise 001" and sources["mazur-2-2-2"] == "Mazur 2015"
    assert not [row for row in rows if "seed" in row.split()[1:2]]
