"""A bare install (``pip install symprop``, no extras) runs every core command.

Everything else in the suite runs in the development environment, where scikit-learn brings in
SciPy (numba's ``np.dot`` needs it): a missing core dependency would only show on a user's
machine. Here pip installs the package into a new, empty virtual environment. The tests reach
no network, so pip gets no index; the distributions the package's core requirements need
(followed through their own requirements, with no extra) are shown to the new environment
from this one, through a folder of links, and pip finds them already installed. A dependency
left out of pyproject.toml is then missing in the new environment, as it would be for a user.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from symprop.codegen.network import BUILTIN_NETWORKS

ROOT = Path(__file__).resolve().parent.parent
OPTIONAL = ("sklearn", "matplotlib", "networkx", "tqdm", "torch", "jax")


def _requirements(requires: list[str] | None) -> list[Requirement]:
    """The requirements that apply with no extra on this interpreter."""
    out = []
    for text in requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            out.append(requirement)
    return out


def core_closure(wheel: Path) -> dict[str, importlib.metadata.Distribution]:
    """The distributions a no-extras install of the wheel pulls in, found in this environment."""
    with zipfile.ZipFile(wheel) as archive:
        metadata, = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        requires = Parser().parsestr(archive.read(metadata).decode()).get_all("Requires-Dist")
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = _requirements(requires)
    while todo:
        name = canonicalize_name(todo.pop().name)
        if name in found:
            continue
        found[name] = importlib.metadata.distribution(name)
        todo += _requirements(found[name].requires)
    return found


def link_distributions(distributions, folder: Path) -> None:
    """Links in folder to each distribution's top-level files (its packages, modules, bundled
    libraries and .dist-info), as if pip had installed only these."""
    folder.mkdir()
    for dist in distributions:
        base = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in sorted(tops - {"..", "__pycache__"}):
            if (base / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(base / top)


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """run(program, *args): a program of a new virtual environment into which pip installed the
    wheel with no extras, run from a folder outside the checkout."""
    tmp = tmp_path_factory.mktemp("bare")
    source = tmp / "source"  # a copy, so no build/ folder is left in (or reused from) the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", "out", "site"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp / "wheel"), str(source)], check=True, capture_output=True, timeout=300)
    wheel, = (tmp / "wheel").glob("symprop-*.whl")
    venv = tmp / "venv"
    # no pip inside (ensurepip may be missing): this environment's pip installs into it (--python)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True,
                   timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    link_distributions(core_closure(wheel).values(), tmp / "core-dependencies")
    Path(site, "core-dependencies.pth").write_text(f"{tmp / 'core-dependencies'}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env.update(SYMPROP_CACHE=str(tmp / "cache"), NUMBA_CACHE_DIR=str(tmp / "numba"),
               PIP_CONFIG_FILE=os.devnull, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
                                "--disable-pip-version-check", str(wheel)], capture_output=True, text=True, env=env,
                               timeout=300)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()

    def run(program, *args, timeout=600):
        return subprocess.run([str(venv / "bin" / program), *args], capture_output=True, text=True,
                              cwd=elsewhere, env=env, timeout=timeout)
    return run


def test_the_closure_follows_requirements_and_leaves_out_the_extras():
    wheel_requires = ["numba", "tqdm; extra == 'train'"]
    assert [r.name for r in _requirements(wheel_requires)] == ["numba"]
    assert "llvmlite" in {canonicalize_name(r.name) for r in _requirements(importlib.metadata.requires("numba"))}


def test_a_bare_install_has_no_optional_library(bare):
    probe = bare("python", "-c", "import importlib.util, symprop; print(symprop.__file__); "
                 f"print([m for m in {OPTIONAL!r} if importlib.util.find_spec(m)])")
    assert probe.returncode == 0, probe.stderr
    where, optional = probe.stdout.splitlines()
    assert str(ROOT) not in where and optional == "[]"


def test_a_bare_install_trains_a_784_100_10_step(bare):
    """The matrix products of a real-sized net go through numba to SciPy's BLAS."""
    script = """
import numpy as np
import symprop
net = symprop.load_network("affine(784,100) relu affine(100,10) softmax-cross-entropy")
rng = np.random.default_rng(0)
params = [rng.normal(0, 0.05, shape) for shape in net.PARAM_SHAPES]
X = rng.random((32, 784))
T = np.eye(10)[rng.integers(0, 10, 32)]
first = net.sgd_step(*params, X, T, 0.1)
for _ in range(20):
    last = net.sgd_step(*params, X, T, 0.1)
print(first, last)
"""
    result = bare("python", "-c", script)
    assert result.returncode == 0, result.stderr[-3000:]
    first, last = map(float, result.stdout.split())
    assert 0 < last < first  # the steps updated the parameters in place and the loss fell


def test_a_bare_install_runs_the_demo_from_another_folder(bare):
    """The suite's one run of `symprop demo`: it derives, generates, verifies every built-in
    network against central differences and shows a transcript."""
    result = bare("symprop", "demo")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    assert "symprop generate --check: clean" in out
    assert out.count("  ok   ") == len(BUILTIN_NETWORKS) and "FAIL" not in out
    assert "== 4. A transcript" in out and "b11_new" in out and "E_new" in out


@pytest.mark.parametrize("argv, extra", [(["train", "--epochs", "1"], "train"),
                                         (["draw", "add-mul-circuit"], "draw")])
def test_a_command_that_needs_an_extra_says_which_in_one_line(bare, argv, extra):
    result = bare("symprop", *argv)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert f'pip install "symprop[{extra}]"' in result.stderr
