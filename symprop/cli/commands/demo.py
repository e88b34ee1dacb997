"""symprop demo: the main job on built-in inputs.

Derives every registered layer and every built-in worked example, regenerates generated/ and
checks it is up to date, verifies each built-in network kernel against finite differences,
and shows the transcript of the seed-001 2-2-2 network.
"""
from __future__ import annotations

import time

GRADIENT_TOLERANCE = 1e-6


def add_arguments(parser):
    parser.add_argument("--format", choices=("text", "md"), default="text", help="format of the transcript")
    parser.add_argument("--example", default="two-layer-sigmoid", help="which worked example's transcript to show")


def run(args) -> int:
    from symprop.codegen.generate import check, generate
    from symprop.codegen.network import BUILTIN_NETWORKS, load_network
    from symprop.symbolic.layers import REGISTRY
    from symprop.symbolic.render import plain
    from symprop.symbolic.verify import network_gradient_error

    print("== 1. Derive: every layer's backward rule, by SymPy ==")
    for name in REGISTRY:
        started = time.perf_counter()
        d = REGISTRY.derive(name)
        rules = "; ".join(f"{g} = {plain(r)}" for g, r in d.backward.items())
        print(f"  {name:<22} {rules}   ({time.perf_counter() - started:.2f} s)")

    from symprop.symbolic.examples import EXAMPLES, get_transcript
    print("\n   every built-in worked example, computed exactly:")
    for name in EXAMPLES:
        started = time.perf_counter()
        quantities = get_transcript(name).render("json", 4, "en").count('"value"')
        print(f"  {name:<22} {quantities:>4} named values   ({time.perf_counter() - started:.2f} s)")

    print("\n== 2. Generate: kernels under generated/ ==")
    changed = generate()
    print("  " + ("\n  ".join(f"rewrote {p.name}" for p in changed) if changed else "all files already up to date"))
    stale = check()
    if stale:
        print("  STALE after generation: " + ", ".join(str(p) for p, _ in stale))
        return 1
    print("  symprop generate --check: clean")

    print("\n== 3. Verify: each built-in network's gradients against central differences (float64) ==")
    failed, width = False, max(map(len, BUILTIN_NETWORKS))
    for name, spec in BUILTIN_NETWORKS.items():
        started = time.perf_counter()
        error = network_gradient_error(load_network(spec))
        ok = error < GRADIENT_TOLERANCE
        failed |= not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {name:<{width}} max relative error {error:.1e} "
              f"(tolerance {GRADIENT_TOLERANCE:g}; {time.perf_counter() - started:.1f} s incl. compile)  {spec}")

    print(f"\n== 4. A transcript: symprop example show {args.example} ==\n")
    print(get_transcript(args.example).render(args.format, 4, "en"), end="")
    return 1 if failed else 0
