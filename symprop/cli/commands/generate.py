"""symprop generate [--check] [--net SPEC [--output FILE]] [--directory DIR]"""
from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(parser):
    parser.add_argument("--check", action="store_true",
                        help="exit 1 with a diff if generated/ differs from what the generator writes now")
    parser.add_argument("--net", metavar="SPEC",
                        help='generate one network module, e.g. "affine(784,100) relu affine(100,10) softmax-cross-entropy"')
    parser.add_argument("--output", "-o", metavar="FILE", help="with --net: where to write the module (default: stdout)")
    parser.add_argument("--directory", metavar="DIR", help="write/check this directory instead of generated/")


def run(args) -> int:
    from symprop.codegen import files
    from symprop.codegen.generate import check, generate
    from symprop.codegen.network import network_module_text

    if args.net is not None:
        text = network_module_text(args.net)
        if args.output:
            changed = files.write_if_changed(Path(args.output), text)
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
    changed = generate(directory)
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print(f"generated/ already up to date ({directory})")
    return 0
