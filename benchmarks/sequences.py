"""Sequence layers' training step, symprop against PyTorch in the same run: a quick look at the
rows `symprop bench --only " b32 "` reports in full.

Times one training step (forward, backward and the SGD update) in float32 at batch 32 of
lstm and gru at T 32, 128 inputs, hidden 128, one self-attention head and the 4-head block
(projections, residual, layer norm) at T 64, width 128 (the bench's cases,
``bench.sequence_cases``), against the bench's competitors: the nn modules with optim.SGD and
the same step written with torch ops and autograd (``competitors.torch_sequence_*_step``).
Prints best-of-N milliseconds and the ratio torch / symprop (above 1: symprop is faster).
Without torch, prints symprop's times alone.

    python -m symprop.benchmarks.sequences [--threads 1|all] [--repeats 10]
"""
from __future__ import annotations

import argparse
import os

from .timing import best_of


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", choices=("1", "all"), default="1")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    if args.threads == "1":  # before numpy, numba or torch start their thread pools
        for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ[name] = "1"
    from . import bench
    from . import competitors as comp

    torch = comp.import_optional("torch")
    if torch is None:
        print("torch not installed: symprop's times alone")
    elif args.threads == "1":
        torch.set_num_threads(1)
    print(f"one training step (forward, backward, SGD update), batch 32, float32, --threads {args.threads}, "
          f"best of {args.repeats} (ms); ratio = torch / symprop")
    for case in bench.sequence_cases():
        if case.kind not in bench.ATTENTION and case.sizes[1] != 128:
            continue  # hidden 256: in symprop bench
        params, X, T = bench.make_net_data(case)
        net, why = bench.load_symprop_network(case.spec)
        if net is None:
            print(f"  {case.name:44s} {why}")
            continue
        steps = {"symprop": comp.symprop_sgd_net_step(net, case, params, X, T)}
        if torch is not None:
            steps |= {"nn modules": comp.torch_sequence_module_step(torch, case, params, X, T),
                      "torch ops": comp.torch_sequence_manual_step(torch, case, params, X, T)}
        times = {}
        for who, step in steps.items():
            step()  # compiled (or loaded from the cache) before timing
            times[who] = best_of(step, args.repeats)
        print(f"  {case.name:44s} symprop {times['symprop']:9.2f}")
        for who, theirs in list(times.items())[1:]:
            print(f"  {'':44s} {who:10s} {theirs:9.2f}   ratio {theirs / times['symprop']:5.2f}")


if __name__ == "__main__":
    main()
