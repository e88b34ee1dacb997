"""The ``symprop`` command. Each subcommand lives in its own module under ``symprop/cli/commands``
with ``add_arguments(parser)`` and ``run(args) -> exit status``; this file only dispatches.

Only the command that runs is imported: ``symprop derive sigmoid`` never loads the training
code, scikit-learn or the benchmarks.

Exit status: 0 success, 1 a check failed (stale kernels, wrong claims), 2 unusable input.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from symprop import __version__
from symprop.symbolic.errors import SympropError

# subcommand -> (module under symprop.cli.commands, one-line help)
COMMANDS = {
    "derive": ("derive", "derive a layer's backward rule step by step (or a --formula activation)"),
    "demo": ("demo", "a tour on built-in inputs: derive every layer, regenerate and verify the kernels, show a transcript"),
    "generate": ("generate", "numba kernels of a network (--net) or a graph file (--graph); without either, the built-in ones (--check: up to date?)"),
    "example": ("example", "worked examples and network files: the full hand-calculation transcript"),
    "draw": ("draw", "a graph file's circuit as a picture (SVG or PNG): values above the wires, gradients below"),
    "check": ("check", "check hand-calculated values: which are right, the first mistake, which convention"),
    "grade": ("grade", "grade a class: claims files or a CSV per student, marks with error carried forward, "
                       "the class's most common mistakes, a gradebook and Gradescope results"),
    "variant": ("variant", "each student's own numbers for an exercise, and the answer key"),
    "data": ("data", "download MNIST or Fashion-MNIST (checked by SHA-256) for symprop train"),
    "train": ("train", "train a network on digits, two moons, MNIST, Fashion-MNIST, a text or sequence reversal with the generated kernels"),
    "predict": ("predict", "evaluate weights saved by symprop train --save"),
    "bench": ("bench", "time a training step of the generated kernels against numpy, PyTorch and JAX"),
}


# the top-level help's examples: one per common command (tests/test_cli.py runs each)
EXAMPLES = (
    ("symprop derive sigmoid", "a layer's backward rule, derived step by step"),
    ("symprop example show two-layer-sigmoid", "a worked example: every number of one training step"),
    ("symprop draw add-mul-circuit -o circuit.svg", "a graph file's circuit, values and gradients on the wires"),
    ("symprop check two-layer-sigmoid y1=0.5951 E=0.44", "check your hand calculation against the example"),
    ('symprop generate --net "affine(2,3) tanh affine(3,2) mse" -o net.py', "numba kernels of a network"),
    ("symprop train --data digits --epochs 5", "train a network with the generated kernels"),
    ("symprop data mnist", "download MNIST once; then: symprop train --data mnist"),
    ("symprop demo", "derive, regenerate and verify the kernels, show a transcript"),
)
DESCRIPTION = "symprop: derive, explain, generate and check backpropagation."


def _epilog() -> str:
    lines = [f"  {command}\n      {what}" for command, what in EXAMPLES]
    return ("examples:\n" + "\n".join(lines) + "\n\n"
            "symprop COMMAND --help shows a command's options. A command that needs more than the\n"
            "core install names the extra to add: pip install \"symprop[train]\" (train, predict),\n"
            "\"symprop[draw]\" (draw), \"symprop[bench]\" (bench's competitors).")


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported like every other one: one line, exit 2
    (``symprop COMMAND --help`` still shows the full usage)."""

    def error(self, message):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _tolerate_any_terminal_encoding():
    """Transcripts print symbols such as '→' and Greek letters; on a terminal whose encoding
    lacks them (PYTHONIOENCODING=cp1252) print them as escapes instead of crashing."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and (stream.encoding or "").lower().replace("-", "") != "utf8":
            stream.reconfigure(errors="backslashreplace")


def _one_line_warnings():
    """A warning from the code behind a command (a kernel file edited by hand, a kernel cache
    that cannot be written) is one line on the command line, not Python's two-line form with
    the source line of a library file."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"symprop: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``only``, the arguments of that one command are added (its
    module imported) and the others are listed by name and help alone."""
    parser = _Parser(prog="symprop", description=DESCRIPTION, epilog=_epilog(),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"symprop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            module = importlib.import_module(f"symprop.cli.commands.{module_name}")
            module.add_arguments(command)
            command.set_defaults(run=module.run)
    return parser


def _command_named(argv) -> str | None:
    """The subcommand in argv (the first argument that is not an option), if it is one."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv=None) -> int:
    _tolerate_any_terminal_encoding()
    _one_line_warnings()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(_command_named(argv)).parse_args(argv)
        return int(args.run(args) or 0)
    except SympropError as exc:
        print(f"symprop: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:  # a generated module refusing this process's SYMPROP_BLAS
        if "SYMPROP_BLAS" not in str(exc):
            raise
        print(f"symprop: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("symprop: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
