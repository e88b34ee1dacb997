"""Sequence layers' training step, symprop against PyTorch and JAX in the same run: a quick look
at the rows `symprop bench --only " b32 "` reports in full.

Times one training step (forward, backward and the SGD update) in float32 at batch 32 of
lstm and gru at T 32, 128 inputs, hidden 128, one self-attention head and the 4-head block
(projections, residual, layer norm) at T 64, width 128 (the bench's cases,
``bench.sequence_cases``), against the bench's competitors: the nn modules with optim.SGD,
the same step written with torch ops and autograd (``competitors.torch_sequence_*_step``)
and JAX's jit of value_and_grad (``competitors.jax_sequence_step``). Prints best-of-N
milliseconds and the ratio theirs / symprop (above 1: symprop is faster). Without torch or
JAX, their lines are left out. --forward also times the forward pass alone (symprop's
forward_kernel, JAX's jitted loss), which says whether a gap between the two lies in the
forward or in the backward and update.

    python -m symprop.benchmarks.sequences [--threads 1|all] [--repeats 10] [--hidden 256] [--forward]
"""
from __future__ import annotations

import argparse
import functools
import os

from .timing import best_of


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", choices=("1", "all"), default="1")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--hidden", type=int, choices=(128, 256), default=128, help="the lstm's and gru's")
    parser.add_argument("--forward", action="store_true", help="also time symprop's and JAX's forward pass alone")
    args = parser.parse_args(argv)
    if args.threads == "1":  # before numpy, numba or torch start their thread pools
        for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ[name] = "1"
    from . import bench
    from . import competitors as comp

    if args.threads == "1":
        bench.pin_to_one_core()  # XLA sizes its pool from the machine: only pinning holds it to one core
    libs = bench.optional_libraries(1 if args.threads == "1" else None)
    torch, jax = libs["torch"], libs["jax"]
    for name, library in libs.items():
        if library is None:
            print(f"{name} not installed: its lines are left out")
    if torch is not None and args.threads == "1":
        torch.set_num_threads(1)
    print(f"one training step (forward, backward, SGD update), batch 32, float32, --threads {args.threads}, "
          f"best of {args.repeats} (ms); ratio = theirs / symprop")
    for case in bench.sequence_cases():
        if case.kind not in bench.ATTENTION and case.sizes[1] != args.hidden:
            continue
        params, X, T = bench.make_net_data(case)
        net, why = bench.load_symprop_network(case.spec)
        if net is None:
            print(f"  {case.name:44s} {why}")
            continue
        steps = {"symprop": comp.symprop_sgd_net_step(net, case, params, X, T)}
        if torch is not None:
            steps |= {"nn modules": comp.torch_sequence_module_step(torch, case, params, X, T),
                      "torch ops": comp.torch_sequence_manual_step(torch, case, params, X, T)}
        if jax is not None:
            steps["JAX jit"] = comp.jax_sequence_step(jax, case, params, X, T)
        if args.forward:
            steps["symprop forward"] = functools.partial(net.forward_kernel, *params, X)
            if jax is not None:
                steps["JAX forward"] = jax_forward(jax, comp.jax_sequence_loss(jax, case), params,
                                                   X.reshape(len(X), case.steps, -1), T)
        times = {}
        for who, step in steps.items():
            step()  # compiled (or loaded from the cache) before timing
            times[who] = best_of(step, args.repeats)
        print(f"  {case.name:44s} symprop {times['symprop']:9.2f}")
        for who, theirs in list(times.items())[1:]:
            ours = times["symprop forward" if who.endswith("forward") else "symprop"]
            ratio = "" if who == "symprop forward" else f"   ratio {theirs / ours:5.2f}"
            print(f"  {'':44s} {who:15s} {theirs:9.2f}{ratio}")


def jax_forward(jax, loss_fn, params, sequences, T):
    """The JAX step's loss alone, jitted: the forward pass its step differentiates."""
    jnp, loss = jax.numpy, jax.jit(loss_fn)
    args = tuple(jnp.asarray(p) for p in params), jnp.asarray(sequences), jnp.asarray(T)
    return lambda: loss(*args).block_until_ready()


if __name__ == "__main__":
    main()
