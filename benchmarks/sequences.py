"""Sequence layers' training step, symprop against PyTorch in the same run.

Times one training step (forward, backward and the SGD update: symprop's fused sgd_step,
torch's forward + backward + optim.SGD.step) in float32 of
  - lstm and gru at batch 32, T 32, 128 inputs, hidden 128, then affine(128,10) and softmax
    cross-entropy, against nn.LSTM / nn.GRU (batch_first) + nn.Linear;
  - one self-attention head at batch 32, T 64, width 128 (dk = dv = 128), then flatten,
    affine(8192,10) and softmax cross-entropy, against the same head written with torch ops
    (three bias-free nn.Linear projections, the same work) and nn.MultiheadAttention with one
    head and no bias (which also applies its 128 x 128 output projection: a little more work).
Prints best-of-N milliseconds and the ratio torch / symprop (above 1: symprop is faster).
Without torch, prints symprop's times alone.

    python -m symprop.benchmarks.sequences [--threads 1|all] [--repeats 10]
"""
from __future__ import annotations

import argparse
import os

from .timing import best_of

BATCH, CLASSES, LR = 32, 10, 0.01
RECURRENT = {"lstm": (32, 128, 128), "gru": (32, 128, 128)}  # family -> (T, inputs, hidden)
ATTENTION = (64, 128)  # (T, width)


def symprop_step(spec, rng, np):
    """symprop's fused SGD step on float32 parameters and a random batch, as a no-argument call."""
    from symprop.codegen.network import load_network

    net = load_network(spec)
    params = [(rng.normal(size=shape) * 0.05).astype(np.float32) for shape in net.PARAM_SHAPES]
    X = rng.normal(size=(BATCH, net.INPUT_SIZE)).astype(np.float32)
    T = np.eye(net.OUTPUT_SIZE, dtype=np.float32)[rng.integers(0, net.OUTPUT_SIZE, BATCH)]
    return lambda: net.sgd_step(*params, X, T, np.float32(LR))


def torch_step(torch, model, inputs, rng):
    """forward, cross-entropy, backward and optim.SGD's step of `model` (parameters float32)."""
    optimiser = torch.optim.SGD(model.parameters(), lr=LR)
    labels = torch.tensor(rng.integers(0, CLASSES, BATCH))

    def step():
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        optimiser.step()

    return step


def torch_models(torch, rng):
    """name -> (torch step, symprop's spec) for every row of the table."""
    nn = torch.nn

    class LastState(nn.Module):
        def __init__(self, recurrent, hidden):
            super().__init__()
            self.recurrent, self.out = recurrent, nn.Linear(hidden, CLASSES)

        def forward(self, x):
            return self.out(self.recurrent(x)[0][:, -1])

    class Head(nn.Module):
        """softmax(Q K^T / sqrt(d)) V by torch ops, or by nn.MultiheadAttention (one head)."""

        def __init__(self, tokens, width, module):
            super().__init__()
            self.module, self.width = module, width
            if not module:
                self.q, self.k, self.v = (nn.Linear(width, width, bias=False) for _ in range(3))
            else:
                self.mha = nn.MultiheadAttention(width, 1, bias=False, batch_first=True)
            self.out = nn.Linear(tokens * width, CLASSES)

        def forward(self, x):
            if self.module:
                o = self.mha(x, x, x, need_weights=False)[0]
            else:
                scores = self.q(x) @ self.k(x).transpose(1, 2) / self.width ** 0.5
                o = torch.softmax(scores, dim=-1) @ self.v(x)
            return self.out(o.flatten(1))

    rows = {}
    for family, (tokens, inputs, hidden) in RECURRENT.items():
        module = {"lstm": nn.LSTM, "gru": nn.GRU}[family](inputs, hidden, batch_first=True)
        x = torch.tensor(rng.normal(size=(BATCH, tokens, inputs)), dtype=torch.float32)
        spec = f"{family}({inputs},{hidden},{tokens}) affine({hidden},{CLASSES}) softmax-cross-entropy"
        rows[f"{family} T {tokens} hidden {hidden}"] = (
            spec, {f"nn.{family.upper()}": torch_step(torch, LastState(module, hidden), x, rng)})
    tokens, width = ATTENTION
    x = torch.tensor(rng.normal(size=(BATCH, tokens, width)), dtype=torch.float32)
    spec = (f"attention({width},{width},{width},{tokens}) flatten affine({tokens * width},{CLASSES}) "
            "softmax-cross-entropy")
    rows[f"attention head T {tokens} width {width}"] = (spec, {
        "torch ops": torch_step(torch, Head(tokens, width, module=False), x, rng),
        "nn.MultiheadAttention": torch_step(torch, Head(tokens, width, module=True), x, rng)})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", choices=("1", "all"), default="1")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    if args.threads == "1":  # before numpy, numba or torch start their thread pools
        for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ[name] = "1"
    import numpy as np

    rng = np.random.default_rng(0)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        if args.threads == "1":
            torch.set_num_threads(1)
        rows = torch_models(torch, rng)
    else:
        rows = {name: (spec, {}) for name, spec in (
            (f"{family} T {t} hidden {h}", f"{family}({d},{h},{t}) affine({h},{CLASSES}) softmax-cross-entropy")
            for family, (t, d, h) in RECURRENT.items())}
        t, w = ATTENTION
        rows[f"attention head T {t} width {w}"] = (
            f"attention({w},{w},{w},{t}) flatten affine({t * w},{CLASSES}) softmax-cross-entropy", {})
        print("torch not installed: symprop's times alone")
    print(f"one training step (forward, backward, SGD update), batch {BATCH}, float32, --threads {args.threads}, "
          f"best of {args.repeats} (ms); ratio = torch / symprop")
    for name, (spec, competitors) in rows.items():
        ours = symprop_step(spec, rng, np)
        ours()  # compiled (or loaded from the cache) before timing
        mine = best_of(ours, args.repeats)
        print(f"  {name:32s} symprop {mine:9.2f}")
        for who, step in competitors.items():
            step()
            theirs = best_of(step, args.repeats)
            print(f"  {'':32s} {who:22s} {theirs:9.2f}   ratio {theirs / mine:5.2f}")


if __name__ == "__main__":
    main()
