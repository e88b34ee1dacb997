"""The ``symprop`` command. Each subcommand lives in its own module under ``symbolic/commands``
with ``add_arguments(parser)`` and ``run(args) -> exit status``; this file only dispatches.

Exit status: 0 success, 1 a check failed (stale kernels, wrong claims), 2 unusable input.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import SympropError

# subcommand -> (module under symbolic.commands, one-line help)
COMMANDS = {
    "derive": ("derive", "derive a layer's backward rule step by step (or a --formula activation)"),
    "demo": ("demo", "the main job on built-in inputs: derive, regenerate and verify the kernels, show a transcript"),
    "generate": ("generate", "write the numba kernels under generated/ (--check: are they up to date?)"),
    "example": ("example", "worked examples and network files: the full hand-calculation transcript"),
    "check": ("check", "check hand-calculated values: which are right, the first mistake, which convention"),
    "train": ("train", "train a network on digits, two moons or MNIST with the generated kernels"),
    "predict": ("predict", "evaluate weights saved by symprop train --save"),
    "bench": ("bench", "time a training step of the generated kernels against numpy, PyTorch and JAX"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="symprop", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"symbolic.commands.{module_name}")
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except SympropError as exc:
        print(f"symprop: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
