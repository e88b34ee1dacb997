"""symprop example list | symprop example show NAME|NETWORK.toml [--format md|text|json] [--digits N] [--lang zh]"""
from __future__ import annotations

from symprop.symbolic.errors import SympropError
from symprop.symbolic.examples import EXAMPLES, get_transcript
from symprop.symbolic.transcript import LANGUAGES


def add_arguments(parser):
    parser.add_argument("action", choices=("list", "show"), help="list the built-in examples, or show one")
    parser.add_argument("name", nargs="?", help="a built-in example's name, or a network file (.toml)")
    parser.add_argument("--format", choices=("md", "text", "json"), default="text")
    parser.add_argument("--digits", type=int, default=4, help="significant digits printed (default 4)")
    parser.add_argument("--lang", choices=LANGUAGES, default="en", help="language of md and text (en, zh)")


def run(args) -> int:
    if args.action == "list":
        width = max(map(len, EXAMPLES))
        for name, example in EXAMPLES.items():
            print(f"{name:<{width}}  seed {example.seed:<12}  {example.summary}")
        return 0
    if not args.name:
        raise SympropError(f"name an example or a network file; known examples: {', '.join(EXAMPLES)}")
    if not 1 <= args.digits <= 30:
        raise SympropError(f"--digits must be from 1 to 30, got {args.digits}")
    # rendered completely before anything is printed: an error never leaves half a transcript
    text = get_transcript(args.name).render(args.format, args.digits, args.lang)
    print(text, end="")
    return 0
