"""symprop check CLAIMS.toml | symprop check EXAMPLE NAME=VALUE ... | symprop check --net SPEC --values FILE
NAME=VALUE ... [--format text|md|json|html]

Exit status 0 when every claim holds, 1 when any is wrong, 2 for unusable input (an unknown
name: the other claims are still checked and reported), so a course can grade a folder of
submissions in a shell loop.
"""
from __future__ import annotations

import sys

from symprop.symbolic.checker import NetValues, check, claims_from_arguments, load_claims, render_report
from symprop.symbolic.errors import SympropError
from symprop.symbolic.transcript import LANGUAGES


def add_arguments(parser):
    parser.add_argument("target", nargs="?", help="a claims file (.toml), or an example name / network file "
                                                  "followed by NAME=VALUE claims")
    parser.add_argument("values", nargs="*", metavar="NAME=VALUE",
                        help="claims on the command line, e.g. b11_new=0.458 'dE/db22=0.0810'")
    parser.add_argument("--net", metavar="SPEC", help="claims about this net spec worked with --values FILE "
                        "(the transcript of symprop example show --net SPEC --values FILE)")
    parser.add_argument("--values", dest="values_file", metavar="FILE.toml", help="the numbers for --net")
    parser.add_argument("--format", choices=("text", "md", "json", "html"), default="text",
                        help="html: one self-contained page (MathML formulas, opens offline)")
    parser.add_argument("--lang", choices=LANGUAGES, default="en", help="language of text, md and html (en, zh)")


def run(args) -> int:
    if args.net is not None or args.values_file is not None:
        if args.net is None or args.values_file is None:
            raise SympropError("--net SPEC and --values FILE.toml go together: the spec says the layers, "
                               "the file their numbers")
        written = ([args.target] if args.target else []) + args.values
        if not written:
            raise SympropError("give the claims after --net and --values, e.g. 'dL/dW1[0,0]=0.0123'")
        subject, claims = NetValues(args.net, args.values_file), claims_from_arguments(written)
    elif args.target is None:
        raise SympropError("give a claims file (.toml), an example name followed by NAME=VALUE claims, "
                           "or --net SPEC --values FILE with claims")
    elif args.values:
        subject, claims = args.target, claims_from_arguments(args.values)
    elif args.target.endswith(".toml"):
        subject, claims = load_claims(args.target)
    else:
        raise SympropError(f"give a claims file (.toml), or {args.target} followed by NAME=VALUE claims")
    report = check(subject, claims)
    print(render_report(report, args.format, args.lang), end="")
    for problem in report.problems:  # also on stderr, where scripts look for unusable input
        print(f"symprop: error: {problem}", file=sys.stderr)
    if report.problems:
        return 2
    return 0 if report.all_right else 1
