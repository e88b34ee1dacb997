"""symprop generate [--check] [--net SPEC | --graph FILE [--output FILE]] [--directory DIR]"""
from __future__ import annotations

import sys
from pathlib import Path

from symprop.symbolic.errors import SympropError


def add_arguments(parser):
    parser.add_argument("--check", action="store_true",
                        help="exit 1 with a diff if generated/ differs from what the generator writes now")
    parser.add_argument("--net", metavar="SPEC",
                        help='generate one network module, e.g. "affine(784,100) relu affine(100,10) softmax-cross-entropy"')
    parser.add_argument("--graph", metavar="FILE",
                        help="generate the value-and-gradient kernel (and training step) of a graph file")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="with --net or --graph: where to write the module (default: stdout)")
    parser.add_argument("--directory", metavar="DIR", help="write/check this directory instead of generated/")


def run(args) -> int:
    from symprop.codegen import files
    from symprop.codegen.generate import check, generate
    from symprop.codegen.graph_kernels import graph_module_text
    from symprop.codegen.network import network_module_text

    if args.net is not None and args.graph is not None:
        raise SympropError("give --net or --graph, not both")
    if args.net is not None or args.graph is not None:
        if args.output and not args.check:
            from symprop.symbolic.userfiles import check_output
            check_output(args.output, "--output", "module", inputs=[args.graph], make_folders=True)
        if args.graph is not None:
            from symprop.symbolic.userfiles import read_text
            text = graph_module_text(read_text(Path(args.graph), "graph file"), args.graph, output=args.output)
        else:
            text = network_module_text(args.net)
        if args.check:
            return _check_module(args, text)
        if args.output:
            changed = _write(files, Path(args.output), text)
            print(f"{'wrote' if changed else 'unchanged'} {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    directory = Path(args.directory) if args.directory else files.GENERATED
    if args.check:
        problems = check(directory)
        if not problems:
            print(f"generated/ is up to date ({directory})")
            return 0
        for _, diff in problems:
            sys.stdout.write(diff)
        print(f"\n{len(problems)} generated file(s) are stale. Fix: {files.REGENERATE_COMMAND}", file=sys.stderr)
        return 1
    try:
        changed = generate(directory)
    except OSError as exc:
        raise SympropError(f"cannot write {exc.filename or directory}: {exc.strerror or exc}") from None
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print(f"generated/ already up to date ({directory})")
    return 0


def _check_module(args, text: str) -> int:
    """--check with --net or --graph: the module at --output regenerated and compared whole
    (its header's hashes could have been recomputed after an edit)."""
    import difflib

    from symprop.symbolic.userfiles import read_text

    if not args.output:
        raise SympropError("--check with --net or --graph compares the module at --output: give -o FILE")
    current = read_text(Path(args.output), "generated module")
    if current == text:
        print(f"{args.output} is up to date")
        return 0
    sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                               f"{args.output} (on disk)", f"{args.output} (generated now)"))
    print(f"\n{args.output} differs from what the generator writes now. Fix: rerun without --check",
          file=sys.stderr)
    return 1


def _write(files, path: Path, text: str) -> bool:
    """write_if_changed, with a folder, an unwritable place or a full disk as one line."""
    try:
        return files.write_if_changed(path, text)
    except OSError as exc:
        raise SympropError(f"--output {path}: cannot write ({exc.strerror or exc})") from None
