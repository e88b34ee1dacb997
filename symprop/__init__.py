"""symprop: derive, explain, generate and check backpropagation.

The public API, each name imported only when first used (``import symprop`` stays cheap and
the ``symprop`` command loads only what its subcommand needs):

- ``derive(layer)``: the step-by-step derivation of a registered layer, or of an elementwise
  activation given as a formula in x (``derive("x*tanh(log(1+exp(x)))")``);
- ``example(name)``: a built-in worked example (or a network file) as a ``Transcript``; render
  it with ``.render("md" | "text" | "json")``;
- ``check(subject, claims)``: grade hand-calculated values (``{"dE/dw5": "0.082167041"}``)
  against a worked example;
- ``load_network(spec)``: the generated fused kernels of a layer stack;
- ``REGISTRY``: every layer symprop knows.

The project's folders are installed as subpackages: ``symprop.symbolic`` (mathematics only),
``symprop.codegen``, ``symprop.generated``, ``symprop.training``, ``symprop.benchmarks``, and
the command line in ``symprop.cli``.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["derive", "example", "check", "load_network", "REGISTRY"]


def derive(layer: str):
    """The Derivation of a registered layer name, or of an activation formula in x (shown as
    Markdown when it is the value of a notebook cell)."""
    from symprop.symbolic.layers import REGISTRY, formula_layer

    if layer in REGISTRY:
        return REGISTRY.derive(layer)
    return formula_layer(layer).derive()


def example(name: str):
    """A built-in worked example by name, or a network file (.toml), as a Transcript."""
    from symprop.symbolic.examples import get_transcript

    return get_transcript(name)


def check(subject: str, claims):
    """Check claimed values against a worked example. ``claims`` maps quantity names to the
    written numbers (strings keep their written precision), or is a list of "name=value"."""
    from symprop.symbolic.checker import check as check_claims, claims_from_arguments

    pairs = [f"{k}={v}" for k, v in claims.items()] if isinstance(claims, dict) else list(claims)
    return check_claims(subject, claims_from_arguments(pairs))


def load_network(spec: str):
    """The imported kernel module (forward, loss_and_grads, sgd_step, ...) for a net spec."""
    from symprop.codegen.network import load_network as load

    return load(spec)


def __getattr__(name):
    if name == "REGISTRY":
        from symprop.symbolic.layers import REGISTRY

        return REGISTRY
    raise AttributeError(f"module 'symprop' has no attribute {name!r}")
