"""The compiled helpers that image ops lower to (conv2d, max/avg pooling), as module text.

Images travel between layers as 2-D arrays (N, C*H*W) in NCHW order, like any other value of
a network, so activations, flatten and the affine rules need no new code; each helper gets the
image geometry as integers and indexes ``X[n, (c*H + h)*W + w]``.

conv2d lowers to im2col (its own statement, so a per-layer backward can recompute the columns
a network's step keeps) plus one BLAS product per example (the derived rules: Y = W cols + b,
dW = sum_n dY[n] cols[n]^T, dcols = W^T dY[n] scattered back by col2im, which is the full
convolution with the flipped kernel). ``benchmarks/conv_lowering.py`` measures this against
direct loops in the same run; see README "Convolution" for the numbers behind the choice.
The helpers are inlined into the kernel that calls them (jit_inline: each is called once per
layer), so LLVM optimises their loops once, inside the step. Max-pool routes each window's gradient to its first maximum in row-major order (strict >
while scanning), forward and backward scanning the same way, so no arg-max buffer is kept;
where the windows tile the image (stride k, the default) a network's step uses
_maxpool_backward_tiled, which stores each gradient instead of zeroing dX and adding into it.
"""
from __future__ import annotations

IMAGE_HELPERS = {
    "_im2col": '''
@jit_inline
def _im2col(X, C, H, W, k, stride, pad, cols):
    """cols[n, (c*k + p)*k + q, i*Wo + j] = Xp[n, c, stride*i + p, stride*j + q], with Xp the
    image zero-padded by pad on each side (the conv2d rule's Xp, one column per output pixel)."""
    Wo = (W + 2 * pad - k) // stride + 1
    Ho = (H + 2 * pad - k) // stride + 1
    for n in range(X.shape[0]):
        for c in range(C):
            for p in range(k):
                for q in range(k):
                    row = (c * k + p) * k + q
                    for i in range(Ho):
                        h = stride * i + p - pad
                        for j in range(Wo):
                            w = stride * j + q - pad
                            if 0 <= h < H and 0 <= w < W:
                                cols[n, row, i * Wo + j] = X[n, (c * H + h) * W + w]
                            else:
                                cols[n, row, i * Wo + j] = 0
''',
    "_conv2d_product": '''
@jit_inline
def _conv2d_product(Wt, b, cols, Y):
    """Y[n, o, :] = W[o] . cols[n] + b[o]: one BLAS product per example, on _im2col's columns."""
    O = Wt.shape[0]
    Wm = Wt.reshape((O, cols.shape[1]))
    M = cols.shape[2]
    for n in range(cols.shape[0]):
        out = Y[n].reshape((O, M))
        _gemm(Wm, cols[n], out, False, False, False)
        for o in range(O):
            for m in range(M):
                out[o, m] += b[o]
''',
    "_conv2d_param_grads": '''
@jit_inline
def _conv2d_param_grads(dY, cols, dW, db, pixel_sums):
    """dW[o] = sum_n dY[n, o] cols[n]^T (input correlated with dY), each example's product added
    to dW by BLAS in the same call; db[o] = sum of dY[:, o].
    db adds the batch up pixel by pixel first (pixel_sums, a loop LLVM vectorises), then each
    channel's pixels: one running total per channel over every example was a chain of
    dependent additions as slow as the product itself (measured)."""
    O = dW.shape[0]
    M = cols.shape[2]
    dWm = dW.reshape((O, cols.shape[1]))
    dWm[:] = 0
    pixel_sums[:] = 0
    for n in range(dY.shape[0]):
        g = dY[n].reshape((O, M))
        _gemm(g, cols[n], dWm, False, True, True)
        for o in range(O):
            for m in range(M):
                pixel_sums[o, m] += g[o, m]
    for o in range(O):
        total = db.dtype.type(0)
        for m in range(M):
            total += pixel_sums[o, m]
        db[o] = total
''',
    "_conv2d_input_grad": '''
@jit_inline
def _conv2d_input_grad(dY, Wt, C, H, W, stride, pad, dcols, dX):
    """dX = col2im(W^T dY[n]): each column's gradient added back to the pixels it was copied
    from; the padding's share is dropped. This is the full convolution with the flipped kernel."""
    O, k = Wt.shape[0], Wt.shape[2]
    Wm = Wt.reshape((O, C * k * k))
    Ho = (H + 2 * pad - k) // stride + 1
    Wo = (W + 2 * pad - k) // stride + 1
    dX[:] = 0
    for n in range(dY.shape[0]):
        _gemm(Wm, dY[n].reshape((O, Ho * Wo)), dcols, True, False, False)
        for c in range(C):
            for p in range(k):
                for q in range(k):
                    row = (c * k + p) * k + q
                    for i in range(Ho):
                        h = stride * i + p - pad
                        if 0 <= h < H:
                            for j in range(Wo):
                                w = stride * j + q - pad
                                if 0 <= w < W:
                                    dX[n, (c * H + h) * W + w] += dcols[row, i * Wo + j]
''',
    "_maxpool_forward": '''
@jit_inline
def _maxpool_forward(X, C, H, W, k, stride, Y):
    """Y[n, c, i, j] = the largest X in the k x k window at (stride*i, stride*j)."""
    Ho = (H - k) // stride + 1
    Wo = (W - k) // stride + 1
    for n in range(X.shape[0]):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    best = X[n, (c * H + stride * i) * W + stride * j]
                    for p in range(k):
                        for q in range(k):
                            value = X[n, (c * H + stride * i + p) * W + stride * j + q]
                            if value > best:
                                best = value
                    Y[n, (c * Ho + i) * Wo + j] = best
''',
    "_maxpool_backward": '''
@jit_inline
def _maxpool_backward(dY, X, C, H, W, k, stride, dX):
    """dX = dY routed to each window's first maximum in row-major order (strict > while
    scanning: a later equal element does not take it), summed where windows overlap."""
    Ho = (H - k) // stride + 1
    Wo = (W - k) // stride + 1
    dX[:] = 0
    for n in range(X.shape[0]):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    where = (c * H + stride * i) * W + stride * j
                    best = X[n, where]
                    for p in range(k):
                        for q in range(k):
                            index = (c * H + stride * i + p) * W + stride * j + q
                            if X[n, index] > best:
                                best = X[n, index]
                                where = index
                    dX[n, where] += dY[n, (c * Ho + i) * Wo + j]
''',
    "_maxpool_backward_tiled": '''
@jit_inline
def _maxpool_backward_tiled(dY, X, C, H, W, k, stride, dX):
    """_maxpool_backward where the windows tile the image (stride == k, maxpool's default): no
    two windows share an element, so dX is zeroed a row of windows at a time (contiguous rows,
    still in cache when the maxima are written) and each window's dY is stored, not added.
    The general helper zeroes all of dX in a pass of its own, then reads it back to add."""
    Ho = H // k
    Wo = W // k
    for n in range(X.shape[0]):
        for c in range(C):
            for h in range(Ho * k, H):  # rows past the last whole window get no gradient
                for w in range(W):
                    dX[n, (c * H + h) * W + w] = 0
            for i in range(Ho):
                start = (c * H + k * i) * W  # the first of the k rows this row of windows covers
                for index in range(start, start + k * W):
                    dX[n, index] = 0
                for j in range(Wo):
                    where = start + k * j
                    best = X[n, where]
                    for p in range(k):
                        for q in range(k):
                            value = X[n, start + p * W + k * j + q]
                            where = start + p * W + k * j + q if value > best else where
                            best = max(best, value)
                    dX[n, where] = dY[n, (c * Ho + i) * Wo + j]
''',
    "_avgpool_forward": '''
@jit_inline
def _avgpool_forward(X, C, H, W, k, stride, Y):
    """Y[n, c, i, j] = the mean of the k x k window at (stride*i, stride*j)."""
    Ho = (H - k) // stride + 1
    Wo = (W - k) // stride + 1
    share = X.dtype.type(1.0 / (k * k))
    for n in range(X.shape[0]):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    total = X.dtype.type(0)
                    for p in range(k):
                        for q in range(k):
                            total += X[n, (c * H + stride * i + p) * W + stride * j + q]
                    Y[n, (c * Ho + i) * Wo + j] = total * share
''',
    "_avgpool_backward": '''
@jit_inline
def _avgpool_backward(dY, C, H, W, k, stride, dX):
    """dX[n, c, u, v] = sum over the windows holding (u, v) of dY / k^2."""
    Ho = (H - k) // stride + 1
    Wo = (W - k) // stride + 1
    share = dY.dtype.type(1.0 / (k * k))
    dX[:] = 0
    for n in range(dY.shape[0]):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    g = dY[n, (c * Ho + i) * Wo + j] * share
                    for p in range(k):
                        for q in range(k):
                            dX[n, (c * H + stride * i + p) * W + stride * j + q] += g
''',
}

# helper -> the helpers it calls (they must be defined in the module too)
IMAGE_HELPER_NEEDS = {name: {"_gemm"} for name in ("_conv2d_product", "_conv2d_param_grads", "_conv2d_input_grad")}
