"""The package's shape: one installed name, imports that point one way, a CLI that loads only
the command it runs."""
import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("symbolic", "codegen", "generated", "training", "benchmarks")
# What the derivation package must never import: printing, training, benchmarks, the CLI.
FORBIDDEN_FROM_SYMBOLIC = ("codegen", "training", "benchmarks", "generated", "cli")


def _imported_modules(path: Path):
    """(line, absolute module name) of every import in a file of the symprop.symbolic package."""
    package = "symprop.symbolic"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                parts = package.split(".")
                depth = len(path.relative_to(ROOT / "symbolic").parts) - 1
                parts += list(path.relative_to(ROOT / "symbolic").parts[:depth])
                base = parts[:len(parts) - node.level + 1]
                yield node.lineno, ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.lineno, node.module


def _forbidden(module: str) -> bool:
    parts = module.split(".")
    if parts[0] in FORBIDDEN_FROM_SYMBOLIC:
        return True
    return parts[0] == "symprop" and (len(parts) == 1 or parts[1] in FORBIDDEN_FROM_SYMBOLIC)


def test_symbolic_imports_nothing_from_codegen_training_benchmarks_or_the_cli():
    hits = [f"{path.relative_to(ROOT)}:{line} imports {module}"
            for path in sorted((ROOT / "symbolic").rglob("*.py"))
            for line, module in _imported_modules(path) if _forbidden(module)]
    assert not hits, "symbolic/ knows mathematics only:\n" + "\n".join(hits)


@pytest.mark.parametrize("module", ["codegen.network", "symprop", "symprop.cli", "symprop.training.train"])
def test_the_import_direction_check_catches_a_forbidden_import(module):
    assert _forbidden(module)
    assert not _forbidden("symprop.symbolic.layers") and not _forbidden("sympy")


def _imports_of_command(*argv) -> set[str]:
    """Every module a fresh ``python -X importtime -m symprop ARGV`` imports."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "symprop", *argv],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}


def test_derive_imports_neither_training_nor_benchmarks():
    modules = _imports_of_command("derive", "sigmoid")
    assert "symprop.symbolic.layers" in modules  # the probe sees our own imports
    heavy = sorted(m for m in modules if m.split(".")[0] in ("sklearn", "matplotlib", "networkx", "tqdm", "numba")
                   or m.startswith(("symprop.training", "symprop.benchmarks", "symprop.codegen")))
    assert not heavy, heavy


def test_example_show_does_not_load_scikit_learn():
    modules = _imports_of_command("example", "show", "two-layer-sigmoid")
    assert "symprop.symbolic.examples" in modules
    assert not [m for m in modules if m.split(".")[0] in ("sklearn", "matplotlib", "networkx", "tqdm")]
    assert not [m for m in modules if m.startswith(("symprop.training", "symprop.benchmarks"))]


def test_top_level_help_lists_every_command_without_importing_them():
    from symprop.cli import COMMANDS

    result = subprocess.run([sys.executable, "-m", "symprop", "--help"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


def test_public_api():
    import symprop

    derivation = symprop.derive("sigmoid")
    assert "dx" in derivation.backward
    assert "relu" in symprop.REGISTRY
    assert symprop.derive("x**2").backward["dx"].free_symbols  # a formula in x
    report = symprop.check("two-layer-sigmoid", {"E": "0.0"})
    assert not all(v.right for v in report.verdicts)
    assert symprop.example("add-mul-nodes").render("text", 4, "en")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The project built as a wheel and installed into an empty folder (dependencies come from
    this environment's site-packages, read without its .pth files, so the checkout's editable
    install is not on the path)."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"  # a copy, so no build/ folder is left in (or reused from) the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", "out"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp / "wheel"), str(source)], check=True, capture_output=True, timeout=300)
    wheel, = (tmp / "wheel").glob("symprop-*.whl")
    target = tmp / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    env = {**os.environ, "PYTHONPATH": f"{target}{os.pathsep}{sysconfig.get_paths()['purelib']}",
           "SYMPROP_CACHE": str(tmp / "cache"), "NUMBA_CACHE_DIR": str(tmp / "numba")}
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()

    def run(*args):
        # -S: no site module, so no .pth file (the editable install) is read
        return subprocess.run([sys.executable, "-S", *args], capture_output=True, text=True, cwd=elsewhere,
                              env=env, timeout=600)
    return target, run


def test_an_install_adds_one_top_level_name(installed):
    target, _ = installed
    names = sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info"))
    assert names == ["symprop"]
    for folder in FOLDERS:
        assert (target / "symprop" / folder / "__init__.py").is_file(), folder
    assert (target / "symprop" / "symbolic" / "networks" / "mazur-2-2-2.toml").is_file()
    for folder in ("graphs", "nets"):  # graph files and net files: the built-in examples that are data
        shipped = {p.name for p in (Path(__file__).resolve().parents[1] / "symbolic" / folder).glob("*.toml")}
        assert shipped and {p.name for p in (target / "symprop" / "symbolic" / folder).glob("*.toml")} == shipped
    shipped_text = ROOT / "training" / "texts" / "shakespeare.txt"  # --data text's corpus, byte for byte
    assert (target / "symprop" / "training" / "texts" / "shakespeare.txt").read_bytes() == shipped_text.read_bytes()
    assert (target / "symprop" / "training" / "texts" / "README.md").is_file()


def test_the_installed_package_runs_from_another_directory(installed):
    target, run = installed
    where = run("-c", "import symprop, sys; print(symprop.__file__)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(target))
    shown = run("-m", "symprop", "example", "show", "two-layer-sigmoid")
    assert shown.returncode == 0, shown.stderr
    assert "dE/dw" in shown.stdout or "dE/d" in shown.stdout
    graph = run("-m", "symprop", "example", "show", "apples-oranges")  # a graph file, read as package data
    assert graph.returncode == 0 and "dprice/dtax = all_price = 650" in graph.stdout, graph.stderr
    generated = run("-m", "symprop", "generate", "--net", "affine(2,3) tanh affine(3,2) mse")
    assert generated.returncode == 0, generated.stderr
    assert "def sgd_step(" in generated.stdout
    current = run("-m", "symprop", "generate", "--check")
    assert current.returncode == 0, current.stdout[-2000:] + current.stderr[-2000:]
