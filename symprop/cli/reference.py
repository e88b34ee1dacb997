"""The command reference page (docs/commands.md): every command's --help, as the parser prints
it at a fixed width, so the page cannot drift from the options.

Rewrite it with: python -m symprop.cli.reference > docs/commands.md
"""
from __future__ import annotations

import os

from symprop.cli import COMMANDS, build_parser

WIDTH = "100"  # argparse wraps help at $COLUMNS


def reference_text() -> str:
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parts = ["# Command reference", "",
                 "Every command's `--help`, as `symprop COMMAND --help` prints it. Exit status: 0 success, "
                 "1 a check failed (stale kernels, wrong claims), 2 unusable input.", "",
                 "## symprop", "", "<!-- no-run: help text -->", "```text", parser.format_help().rstrip(), "```", ""]
        for name in COMMANDS:
            parts += [f"## symprop {name}", "", "<!-- no-run: help text -->", "```text",
                      subparsers.choices[name].format_help().rstrip(), "```", ""]
        return "\n".join(parts)
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


if __name__ == "__main__":
    print(reference_text(), end="")
