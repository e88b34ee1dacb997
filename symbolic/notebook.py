"""Jupyter display of derivations.

``Derivation`` lives in layers.py, whose text stamps every file in generated/ (the generator's
input hash), so a notebook convenience there would make all kernels look stale. The public
``symprop.derive`` hands out this subclass instead: the same fields, plus ``_repr_markdown_``.
"""
from __future__ import annotations

from dataclasses import fields

from .layers import Derivation
from .render import derivation_markdown


class ShownDerivation(Derivation):
    """A Derivation that Jupyter shows as its Markdown (formulas through the notebook's MathJax)."""

    def _repr_markdown_(self) -> str:
        return derivation_markdown(self)


def shown(derivation: Derivation) -> ShownDerivation:
    return ShownDerivation(**{f.name: getattr(derivation, f.name) for f in fields(Derivation)})
