"""The optional libraries and the extra that installs each.

``pip install symprop`` runs the core commands (derive, example, check, generate, demo); the
rest come with an extra (pyproject.toml's [project.optional-dependencies]). Importing an
optional library through ``need`` turns a missing one into one line that names the extra,
instead of a traceback ending in ``No module named 'sklearn'``.
"""
from __future__ import annotations

import importlib

from symprop.symbolic.errors import SympropError

# top-level module -> the extra that installs it
EXTRA_OF = {
    "sklearn": "train", "tqdm": "train", "threadpoolctl": "train", "matplotlib": "train",
    "networkx": "draw",
    "torch": "bench", "jax": "bench",
}


def need(module: str, purpose: str):
    """The imported module, or a SympropError such as: symprop train needs scikit-learn, which
    is not installed: pip install "symprop[train]"."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != top:
            raise  # the library is there but broken: its own error says more than ours would
        extra = EXTRA_OF[top]
        package = {"sklearn": "scikit-learn"}.get(top, top)
        raise SympropError(f"{purpose} needs {package}, which is not installed: "
                           f"pip install \"symprop[{extra}]\"") from None


def require(module: str, purpose: str) -> None:
    """Check that an optional library is installed without importing it (``need`` imports):
    a command checks its extra before any work, and scikit-learn alone takes 0.8 s to import,
    most of a warm ``symprop train``'s start on MNIST, which never calls it."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        package = {"sklearn": "scikit-learn"}.get(module, module)
        raise SympropError(f"{purpose} needs {package}, which is not installed: "
                           f"pip install \"symprop[{EXTRA_OF[module]}]\"")
