"""Which lowering for conv2d: im2col + one BLAS product per example, or direct loops?

Times, in one run, the forward and the backward (dW, db and dX) of one conv2d layer both ways
at the issue's sizes (batch 100, 1 -> 30 channels, 5x5 kernel, 28x28 images) and at a layer
with more input channels (30 -> 16, 3x3, 12x12), float32, BLAS limited to one thread. Both
lowerings are checked to agree before anything is timed. Prints the same-run ratios. Where
torch is installed, also the whole training step of the issue's network (sgd_step) against
torch nn + optim.SGD at batch 100, float32, one thread (JAX is not compared here).

    .venv/bin/python -m benchmarks.conv_lowering [--repeats 20]
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads BLAS: one thread, as training

import numba  # noqa: E402
import numpy as np  # noqa: E402

import symprop.generated.layers as generated  # noqa: E402 (the im2col helpers, compiled)

from .timing import best_of  # noqa: E402

SHAPES = {  # name -> (N, C, H, W, O, k)
    "convnet conv2d(1,30,5) on 28x28": (100, 1, 28, 28, 30, 5),
    "conv2d(30,16,3) on 12x12": (100, 30, 12, 12, 16, 3),
}


@numba.njit(cache=True, nogil=True)
def direct_forward(X, Wt, b, Y):
    """Y[n,o,i,j] = b[o] + sum_c,p,q W[o,c,p,q] X[n,c,i+p,j+q] (stride 1), loops ordered so the
    innermost runs along a row (j) of contiguous memory, which LLVM vectorises."""
    N, C, H, W = X.shape
    O, _, k, _ = Wt.shape
    Ho, Wo = H - k + 1, W - k + 1
    for n in range(N):
        for o in range(O):
            Y[n, o] = b[o]
            for c in range(C):
                for p in range(k):
                    for q in range(k):
                        w = Wt[o, c, p, q]
                        for i in range(Ho):
                            for j in range(Wo):
                                Y[n, o, i, j] += w * X[n, c, i + p, j + q]


@numba.njit(cache=True, nogil=True)
def direct_backward(dY, X, Wt, dX, dW, db):
    """dW, db and dX (the full convolution with the flipped kernel) by direct loops, innermost
    along a row as in direct_forward."""
    N, C, H, W = X.shape
    O, _, k, _ = Wt.shape
    Ho, Wo = H - k + 1, W - k + 1
    dX[:] = 0
    dW[:] = 0
    db[:] = 0
    for n in range(N):
        for o in range(O):
            db[o] += dY[n, o].sum()
            for c in range(C):
                for p in range(k):
                    for q in range(k):
                        w = Wt[o, c, p, q]
                        total = np.float32(0)
                        for i in range(Ho):
                            for j in range(Wo):
                                g = dY[n, o, i, j]
                                total += g * X[n, c, i + p, j + q]
                                dX[n, c, i + p, j + q] += g * w
                        dW[o, c, p, q] += total


def measure(shape, repeats):
    N, C, H, W, O, k = shape
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, C, H, W)).astype(np.float32)
    Wt = (rng.normal(size=(O, C, k, k)) * 0.1).astype(np.float32)
    b = rng.normal(size=O).astype(np.float32)
    Ho, Wo = H - k + 1, W - k + 1
    dY = rng.normal(size=(N, O, Ho, Wo)).astype(np.float32)
    flat, dY_flat = X.reshape(N, -1), dY.reshape(N, -1)
    cols = np.empty((N, C * k * k, Ho * Wo), np.float32)
    dcols = np.empty((C * k * k, Ho * Wo), np.float32)
    product = np.empty((O, C * k * k), np.float32)
    pixel_sums = np.empty((O, Ho * Wo), np.float32)
    Y = np.empty((N, O, Ho, Wo), np.float32)
    Y2, dX, dW, db = np.empty_like(Y), np.empty_like(X), np.empty_like(Wt), np.empty_like(b)
    dX2, dW2, db2 = np.empty_like(X), np.empty_like(Wt), np.empty_like(b)

    def im2col_forward():
        generated.conv2d_forward_kernel(flat, C, H, W, k, 1, 0, Wt, b, cols, Y.reshape(N, -1))

    def im2col_backward():  # the network step keeps cols from the forward pass: no second im2col
        generated._conv2d_param_grads(dY_flat, cols, dW, db, product, pixel_sums)
        generated._conv2d_input_grad(dY_flat, Wt, C, H, W, 1, 0, dcols, dX.reshape(N, -1))

    im2col_forward(), im2col_backward()
    direct_forward(X, Wt, b, Y2), direct_backward(dY, X, Wt, dX2, dW2, db2)
    for ours, loops in ((Y, Y2), (dX, dX2), (dW, dW2), (db, db2)):
        np.testing.assert_allclose(ours, loops, rtol=2e-3, atol=2e-3)
    return {
        "forward": (best_of(im2col_forward, repeats), best_of(lambda: direct_forward(X, Wt, b, Y2), repeats)),
        "backward": (best_of(im2col_backward, repeats),
                     best_of(lambda: direct_backward(dY, X, Wt, dX2, dW2, db2), repeats)),
    }


NETWORK = "conv2d(1,30,5) relu maxpool(2) flatten affine(4320,100) relu affine(100,10) softmax-cross-entropy"


def versus_torch(repeats):
    """(symprop's step on a kept workspace, torch nn + optim step) in ms for NETWORK at batch
    100, or None."""
    try:
        import torch
    except ImportError:
        return None
    from symprop.codegen.network import load_network

    torch.set_num_threads(1)
    net = load_network(NETWORK)
    rng = np.random.default_rng(0)
    params = [(rng.normal(size=shape) * 0.05).astype(np.float32) for shape in net.PARAM_SHAPES]
    X = rng.random((100, 784), dtype=np.float32)
    T = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 100)]
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 30, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(4320, 100), torch.nn.ReLU(),
                                torch.nn.Linear(100, 10))
    optimiser, loss = torch.optim.SGD(model.parameters(), lr=0.01), torch.nn.CrossEntropyLoss()
    images, labels = torch.tensor(X.reshape(100, 1, 28, 28)), torch.tensor(T.argmax(axis=1))

    def torch_step():
        optimiser.zero_grad()
        loss(model(images), labels).backward()
        optimiser.step()

    workspace = net.make_workspace(X)  # kept between steps, as symprop train keeps it

    def ours():
        net.sgd_step_into(*params, X, T, np.float32(0.01), *workspace)

    ours(), torch_step()
    return best_of(ours, repeats), best_of(torch_step, repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    print("conv2d lowering, float32, best of", args.repeats, "calls (ms); ratio = loops / im2col")
    for name, shape in SHAPES.items():
        for part, (im2col, loops) in measure(shape, args.repeats).items():
            print(f"  {name:32s} {part:8s}  im2col+BLAS {im2col:8.2f}   direct loops {loops:8.2f}   "
                  f"ratio {loops / im2col:5.2f}")
    steps = versus_torch(args.repeats)
    if steps is None:
        print("torch not installed: no comparison of the whole training step")
    else:
        ours, theirs = steps
        print(f"training step of {NETWORK!r}, batch 100, float32, 1 thread (ms):")
        print(f"  symprop sgd_step_into {ours:8.2f}   torch nn + optim {theirs:8.2f}   ratio torch/symprop {theirs / ours:5.2f}")


if __name__ == "__main__":
    main()
