"""Image ops on NCHW batches: conv2d, max-pool, average-pool and flatten.

An image value has the shape (C, H, W) per example; ``output_width`` maps one shape to the
next, so ``graph.parse_net`` can chain them. Each backward rule is derived in index form: the
contraction L = sum_{n,c,h,w} dY * Y is differentiated by one element of an input, and the
Kronecker deltas are sifted by ``indexcalc.resolve``. A window's sum meets shifted deltas
(delta(u, s*i + p)), so every window array (the kernel W, the average window A, the max-pool
selector S) is read as zero outside 0 <= p, q < k: that convention is what turns the sifted
input gradient into a full convolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..errors import SympropError
from ..indexcalc import resolve
from .base import N, Derivation, Label, Op, Product, Step
from ..ir import (Assignments, Call, Comment, Let, array, arrays, as_written, index)
from ..text import tr
from .builders import (_image, _loops, features)

# Sizes as symbols, so no derivation depends on them: in/out channels, output rows/columns,
# the window size k and the stride s.
C, O, HO, WO, KW, S = sp.symbols("C O H_out W_out k s", integer=True, positive=True)
H, W_ = sp.symbols("H W", integer=True, positive=True)  # input rows and columns (flatten)
# The per-layer kernels' images (N, C, H, Wd) and the whole numbers their API takes, named as
# the API names them (Wd: W is conv2d's kernel); a number's assumptions are the range its
# wrappers check (a stride of at least 1, a padding of at least 0).
IMAGE = (C, H, sp.Symbol("Wd", integer=True, positive=True))
STRIDE, PAD = sp.Symbol("stride", integer=True, positive=True), sp.Symbol("pad", integer=True, nonnegative=True)

TIE_CONVENTION = ("max-pool ties: the gradient goes to the first maximum of the window in row-major "
                  "order (as torch's max_pool2d on CPU); every other element of the window gets 0")
ZERO_OUTSIDE = ("window arrays (the kernel W, the average window A, the max selector S) read as 0 "
                "outside 0 <= p, q < k: the sifted sum keeps only windows that contain (u, v)")


def _indices():
    return sp.symbols("n o c i j p q a e u v", integer=True)


def out_size(size: int, k: int, stride: int, pad: int = 0) -> int:
    """Rows (or columns) of a window op's output: floor((size + 2 pad - k) / stride) + 1."""
    return (size + 2 * pad - k) // stride + 1


def _positive_ints(inner, where, name, count, example):
    try:
        args = tuple(int(a) for a in (inner or "").split(","))
    except ValueError:
        args = ()
    low, high = count
    if not low <= len(args) <= high or min(args, default=0) < 0 or min(args[:low], default=0) < 1:
        raise SympropError(f"{where}: {name} needs {example}")
    return args


class ImageOp(Op):
    """An op that takes images (C, H, W): its output shape follows from the input shape."""

    accepts_images = True
    image_kernels = True

    def shape_problem(self, args, shape) -> str | None:
        if not isinstance(shape, tuple):
            return (f"{self.name} takes images (C, H, W) but the layer before gives {shape} features; "
                    "start the spec with input(C,H,W) or a conv2d layer")
        return None


@dataclass(frozen=True)
class Conv2d(ImageOp):
    """Y[n,o,i,j] = b[o] + sum_{c,p,q} W[o,c,p,q] Xp[n,c,s*i+p,s*j+q], Xp = X zero-padded."""

    value_stem = "z"  # z1 = W1 * X + b1, named as an affine layer's
    starts_layer = True
    size_args = (C, O, KW)  # the per-layer kernels read them off X and W
    run_time_args = ((STRIDE, 1), (PAD, 0))

    name: str
    summary: str
    inputs: tuple[str, ...] = ("X", "W", "b")

    def parse_args(self, inner, where):
        args = _positive_ints(inner, where, self.name, (3, 5),
                              "in-channels, out-channels, kernel size[, stride[, padding]], e.g. conv2d(1,30,5)")
        if len(args) > 3 and args[3] < 1:
            raise SympropError(f"{where}: {self.name} needs a stride of at least 1")
        return args

    @staticmethod
    def geometry(args):
        """(in channels, out channels, kernel size, stride, padding), defaults filled in."""
        cin, cout, k, *rest = args
        stride, pad = (list(rest) + [1, 0][len(rest):])[:2]
        return cin, cout, k, stride, pad

    def input_channels(self, args):
        return args[0]

    def shape_problem(self, args, shape):
        problem = super().shape_problem(args, shape)
        if problem:
            return problem
        cin, _, k, stride, pad = self.geometry(args)
        if shape[0] != cin:
            return f"takes {cin} channels but the layer before gives {shape[0]} (shape {shape})"
        if min(shape[1:]) + 2 * pad < k:
            return f"a {k}x{k} kernel does not fit the {shape[1]}x{shape[2]} image (padding {pad})"
        return None

    def output_width(self, args, shape):
        _, cout, k, stride, pad = self.geometry(args)
        return (cout, out_size(shape[1], k, stride, pad), out_size(shape[2], k, stride, pad))

    def param_shapes(self, args, width):
        cin, cout, k, _, _ = self.geometry(args)
        return [("W", (cout, cin, k, k)), ("b", (cout,))]

    def step_products(self, args, shape_in, shape_out, batch, first):
        """The im2col products, one per image: W (O, C k^2) by the image's columns (C k^2,
        pixels) forward; dW from dY (O, pixels) by the columns transposed; the columns'
        gradient from W transposed by dY."""
        cin, cout, k, _, _ = self.geometry(args)
        window, pixels = cin * k * k, shape_out[1] * shape_out[2]
        products = [Product("W cols", cout, window, pixels, count=batch, shared=("left",)),
                    Product("dW = dY cols^T", cout, pixels, window, count=batch, right_transposed=True,
                            shared=("out",))]
        if not first:
            products.append(Product("dcols = W^T dY", window, cout, pixels, count=batch, left_transposed=True,
                                    shared=("left", "out")))
        return products

    def derive(self) -> Derivation:
        n, o, c, i, j, p, q, a, e, u, v = _indices()
        X, Wt, b, dY = (sp.IndexedBase(name) for name in ("Xp", "W", "b", "dY"))
        Y = b[o] + sp.Sum(Wt[o, c, p, q] * X[n, c, S * i + p, S * j + q], (c, 0, C - 1), (p, 0, KW - 1),
                          (q, 0, KW - 1))
        L = sp.Sum(dY[n, o, i, j] * Y, (n, 0, N - 1), (o, 0, O - 1), (i, 0, HO - 1), (j, 0, WO - 1))
        dX = resolve(L.diff(X[a, e, u, v]), shifted=True)
        dW = resolve(L.diff(Wt[a, e, u, v]))
        db = resolve(L.diff(b[a]))
        # stride 1: i = u - (k-1) + r turns W[o, e, u - i, ...] into the flipped kernel at r
        r, t = sp.symbols("r t", integer=True)
        flipped, padded = sp.IndexedBase("Wflip"), sp.IndexedBase("dYpad")
        full = dX.subs(S, 1).change_index(i, i - u + KW - 1, r).change_index(j, j - v + KW - 1, t)
        full = full.replace(lambda x: isinstance(x, sp.Indexed) and x.base == Wt,
                            lambda x: flipped[x.indices[0], x.indices[1], KW - 1 - x.indices[2],
                                              KW - 1 - x.indices[3]])
        full = full.replace(lambda x: isinstance(x, sp.Indexed) and x.base == dY,
                            lambda x: padded[x.indices[0], x.indices[1], x.indices[2] + KW - 1,
                                             x.indices[3] + KW - 1])
        full = sp.simplify(full)
        steps = [
            Step("forward", sp.IndexedBase("Y")[n, o, i, j], Y,
                 "Xp is X with pad zero rows and columns on each side; s is the stride"),
            Step("chain rule", Label("dL", "dL"), L, "dL = sum_{n,o,i,j} dY[n,o,i,j] * (change in Y[n,o,i,j])"),
            Step("differentiate by Xp[a,e,u,v], sift the deltas", Label("dXp[a,e,u,v]", r"dXp_{a,e,u,v}"), dX,
                 "p = u - s*i, q = v - s*j; " + ZERO_OUTSIDE),
            Step("stride 1: full convolution with the flipped kernel", Label("dXp[a,e,u,v]", r"dXp_{a,e,u,v}"), full,
                 "i = u - (k-1) + r; Wflip[o,c,r,t] = W[o,c,k-1-r,k-1-t]; dYpad is dY with k-1 zero rows "
                 "and columns on each side"),
            Step("crop the padding", Label("dX[a,e,u,v]", r"dX_{a,e,u,v}"),
                 sp.IndexedBase("dXp")[a, e, u + sp.Symbol("pad"), v + sp.Symbol("pad")],
                 "the padding zeros are constants: their gradient is dropped"),
            Step("differentiate by W[a,e,u,v], sift the deltas", Label("dW[a,e,u,v]", r"dW_{a,e,u,v}"), dW,
                 "a correlation of the (padded) input with the upstream gradient"),
            Step("differentiate by b[a]", Label("db[a]", r"db_{a}"), db, "the sum of dY over the batch and positions"),
        ]
        return Derivation(self.name, self.summary, self.inputs, {"Y": Y}, {"dX": dX, "dW": dW, "db": db},
                          ("X", "W"), steps, [ZERO_OUTSIDE], [], {"dX": dX, "dW": dW, "db": db})

    def lower(self, lowering, use):
        """im2col + one BLAS product per example (image_helpers.py; benchmarks/conv_lowering.py
        measured it against direct loops); the rules are conv2d's derived index forms."""
        k = lowering.names.layer  # the layer's scratch arrays are cols1, dcols1 beside W1
        C, H, W = lowering.shapes[use.position - 1]
        cin, cout, size, stride, pad = self.geometry(use.args)
        out_shape = self.output_width(use.args, (C, H, W))
        pixels = out_shape[1] * out_shape[2]
        Wt, b = lowering.names.params["W"], lowering.names.params["b"]
        lowering.params += [(Wt, (cout, cin, size, size)), (b, (cout,))]
        source = lowering.values[-1]
        out = lowering.buffer(lowering.names.value, (N, features(out_shape)))
        cols = lowering.buffer(f"cols{k}", (N, cin * size * size, pixels))
        lowering.scratch.append(cols)
        geometry = (C, H, W, stride, pad)
        means = _conv2d_means(lowering.derivation(self), use.text, (C, H, W), out_shape, (cout, size, stride, pad),
                              (source, Wt, b, out))
        # the columns are their own statement: a per-layer backward, which is given X and not the
        # columns a network's step keeps, recomputes them (and only them)
        lowering.forward += [Comment(f"layer {use.position}: {use.text} ({C}x{H}x{W} -> {'x'.join(map(str, out_shape))})"),
                             Call("_im2col", (array(source), C, H, W, size, stride, pad, array(cols)),
                                  f"{cols}[n]: each window of the padded {source} as a column",
                                  (Comment("the columns only rearrange the input: the product's rule reads the "
                                           "windows themselves"),), writes=arrays(cols)),
                             Call("_conv2d_product", arrays(Wt, b, cols, out),
                                  f"{out}[n,o,i,j] = {b}[o] + sum_c,p,q {Wt}[o,c,p,q] {source}p[n,c,s*i+p,s*j+q]",
                                  means["Y"], writes=arrays(out))]
        dW, db = lowering.buffer(f"d{Wt}", (cout, cin, size, size)), lowering.buffer(f"d{b}", (cout,))
        pixel_sums = lowering.buffer(f"d{b}_pixels", (cout, pixels))
        backward = [Comment(f"layer {use.position}: {use.text}"),
                    Call("_conv2d_param_grads", arrays(f"d{out}", cols, dW, db, pixel_sums),
                         f"dL/d{Wt}[o,c,p,q] = sum_n,i,j dL/d{out}[n,o,i,j] {source}p[n,c,s*i+p,s*j+q]; "
                         f"dL/d{b}[o] = sum_n,i,j dL/d{out}[n,o,i,j]", means["dW"] + means["db"],
                         writes=arrays(dW, db, pixel_sums))]
        if source != "X" or lowering.input_gradient:  # a step never needs the gradient of the input data X
            dsource = lowering.buffer(f"d{source}", (N, C * H * W))
            dcols = lowering.buffer(f"dcols{k}", (cin * size * size, pixels))
            backward.append(Call("_conv2d_input_grad", (*arrays(f"d{out}", Wt), *geometry, *arrays(dcols, dsource)),
                                 f"dL/d{source}p[n,c,u,v] = sum_o,i,j dL/d{out}[n,o,i,j] {Wt}[o,c,u-s*i,v-s*j] "
                                 "(full convolution with the flipped kernel)", means["dX"], writes=arrays(dcols, dsource)))
        lowering.prepend_backward(backward)
        lowering.values.append(out)
        lowering.widths.append(features(out_shape))


@dataclass(frozen=True)
class Pool(ImageOp):
    """Max or average over k x k windows of each channel, moved by the stride (default k)."""

    value_stem = "pool"
    run_time_args = ((KW, None), (STRIDE, KW))  # k has no default; the stride's is k

    name: str
    summary: str
    mode: str = "max"  # "max" or "avg"
    inputs: tuple[str, ...] = ("X",)

    @property
    def selects_one(self) -> bool:
        """Max-pooling passes a window's gradient to one element (its first maximum) and needs
        the input to find it; average pooling shares it among the window."""
        return self.mode == "max"

    def parse_args(self, inner, where):
        args = _positive_ints(inner, where, self.name, (1, 2), f"a window size[, stride], e.g. {self.name}(2)")
        if len(args) > 1 and args[1] < 1:
            raise SympropError(f"{where}: {self.name} needs a stride of at least 1")
        return args

    @staticmethod
    def geometry(args):
        """(window size, stride)."""
        return args[0], (args[1] if len(args) > 1 else args[0])

    def shape_problem(self, args, shape):
        problem = super().shape_problem(args, shape)
        if problem:
            return problem
        k, _ = self.geometry(args)
        if min(shape[1:]) < k:
            return f"a {k}x{k} window does not fit the {shape[1]}x{shape[2]} image"
        return None

    def output_width(self, args, shape):
        k, stride = self.geometry(args)
        return (shape[0], out_size(shape[1], k, stride), out_size(shape[2], k, stride))

    def derive(self) -> Derivation:
        n, o, c, i, j, p, q, a, e, u, v = _indices()
        X, dY = sp.IndexedBase("X"), sp.IndexedBase("dY")
        window = sp.IndexedBase("S" if self.mode == "max" else "A")
        weight = window[n, c, i, j, p, q] if self.mode == "max" else window[p, q]
        Y = sp.Sum(weight * X[n, c, S * i + p, S * j + q], (p, 0, KW - 1), (q, 0, KW - 1))
        L = sp.Sum(dY[n, c, i, j] * Y, (n, 0, N - 1), (c, 0, C - 1), (i, 0, HO - 1), (j, 0, WO - 1))
        dX = resolve(L.diff(X[a, e, u, v]), shifted=True)
        label = Label("dX[a,e,u,v]", r"dX_{a,e,u,v}")
        steps, conventions = [], [ZERO_OUTSIDE]
        if self.mode == "max":
            xs = sp.symbols("x0:4", real=True)
            window_max = sp.Max(*xs)
            sympy_rule = sp.diff(window_max, xs[1])
            steps += [
                Step("forward", sp.IndexedBase("Y")[n, c, i, j],
                     sp.Function("max")(X[n, c, S * i + p, S * j + q]), "the largest element of each window"),
                Step("one 2x2 window, SymPy's derivative", Label("dY/dx1", r"\frac{\partial y}{\partial x_1}"),
                     sympy_rule, "1 where x1 is the largest, 0 where smaller; open at a tie"),
                Step("tie convention", Label("dY/dx1", r"\frac{\partial y}{\partial x_1}"),
                     first_max_rule(xs, 1),
                     "first maximum in row-major order wins: x1 beats earlier x0 only strictly, "
                     "later x2, x3 also at a tie"),
                Step("as a selector", sp.IndexedBase("Y")[n, c, i, j], Y,
                     "S[n,c,i,j,p,q] is 1 at the window's first maximum and 0 elsewhere; "
                     "it is constant between ties, so it has no derivative of its own"),
            ]
            conventions.append(TIE_CONVENTION)
        else:
            steps.append(Step("forward", sp.IndexedBase("Y")[n, c, i, j], Y, "A[p, q] = 1/k^2 inside the window"))
        steps += [Step("chain rule", Label("dL", "dL"), L, "dL = sum_{n,c,i,j} dY[n,c,i,j] * (change in Y)"),
                  Step("differentiate by X[a,e,u,v], sift the deltas", label, dX,
                       "p = u - s*i, q = v - s*j: every window that contains (u, v) passes its dY back")]
        if self.mode == "avg":
            share = dX.replace(lambda x: isinstance(x, sp.Indexed) and x.base == window, lambda x: 1 / KW**2)
            steps.append(Step("inside each window A = 1/k^2", label, share,
                              "summed over the (i, j) whose window contains (u, v): 0 <= u - s*i, v - s*j < k"))
        return Derivation(self.name, self.summary, self.inputs, {"Y": Y}, {"dX": dX},
                          ("X",) if self.mode == "max" else (), steps, conventions, [], {"dX": dX})

    def lower(self, lowering, use):
        C, H, W = lowering.shapes[use.position - 1]
        size, stride = self.geometry(use.args)
        out_shape = self.output_width(use.args, (C, H, W))
        source = lowering.values[-1]
        out = lowering.buffer(lowering.names.value, (N, features(out_shape)))
        geometry = (C, H, W, size, stride)
        mode = self.mode
        what = "max" if self.selects_one else "mean"
        forward_means, backward_means = _pool_means(use, (C, H, W), out_shape, size, stride, source, out)
        lowering.forward += [Comment(f"layer {use.position}: {use.text} ({C}x{H}x{W} -> {'x'.join(map(str, out_shape))})"),
                             Call(f"_{mode}pool_forward", (array(source), *geometry, array(out)),
                                  f"{out}[n,c,i,j] = {what} of {source}[n,c,s*i+p,s*j+q] over the window", forward_means,
                                  writes=arrays(out))]
        if source != "X" or lowering.input_gradient:  # a step never needs the gradient of the input data X
            dsource = lowering.buffer(f"d{source}", (N, C * H * W))
            reads = arrays(f"d{out}", source) if self.selects_one else arrays(f"d{out}")
            rule = (f"dL/d{out}[n,c,i,j] to the window's first maximum (row-major)" if self.selects_one
                    else f"dL/d{out}[n,c,i,j] / k^2 to each element of the window")
            # windows that tile the image (stride k, sizes known) let max-pool write each element once
            tiled = "_tiled" if self.selects_one and _whole(size, stride) and stride == size else ""
            lowering.prepend_backward([Comment(f"layer {use.position}: {use.text}"), Call(
                f"_{mode}pool_backward{tiled}", (*reads, *geometry, array(dsource)), f"dL/d{source}: {rule}",
                backward_means, writes=arrays(dsource))])
        lowering.values.append(out)
        lowering.widths.append(features(out_shape))


def _whole(*sizes) -> bool:
    """True for a network's sizes; False where they are symbols (the per-layer kernels take them
    at run time): a helper's element-by-element meaning is spelled out at whole sizes only."""
    return all(isinstance(size, int) for size in sizes)


def first_max_rule(xs, r):
    """d max(xs) / d xs[r] with ties going to the first maximum: xs[r] must beat every earlier
    element strictly and every later one or equal it (Heaviside(0) = 0 before, 1 after)."""
    earlier, later = xs[:r], xs[r + 1:]
    rule = sp.S.One
    if earlier:
        rule *= sp.Heaviside(xs[r] - sp.Max(*earlier), 0)
    if later:
        rule *= sp.Heaviside(xs[r] - sp.Max(*later), 1)
    return rule


@dataclass(frozen=True)
class Flatten(ImageOp):
    """Y[n, (c*H + h)*W + w] = X[n, c, h, w]: images become features, in NCHW order."""

    value_stem = "f"

    name: str
    summary: str
    inputs: tuple[str, ...] = ("X",)

    def output_width(self, args, shape):
        return features(shape)  # C*H*W of an image, T*D of a sequence (T, D)

    def derive(self) -> Derivation:
        n, o, c, i, j, p, q, a, e, u, v = _indices()
        h, w = sp.symbols("h w", integer=True)
        X, dY = sp.IndexedBase("X"), sp.IndexedBase("dY")
        L = sp.Sum(dY[n, (c * H + h) * W_ + w] * X[n, c, h, w], (n, 0, N - 1), (c, 0, C - 1), (h, 0, H - 1),
                   (w, 0, W_ - 1))
        dX = resolve(L.diff(X[a, e, u, v]))
        steps = [Step("forward", sp.IndexedBase("Y")[n, (c * H + h) * W_ + w], X[n, c, h, w],
                      "row-major (NCHW) order: the same memory, read as N x (C H W)"),
                 Step("chain rule", Label("dL", "dL"), L, "dL = sum dY * Y, written over X's indices"),
                 Step("differentiate by X[a,e,u,v], sift the deltas", Label("dX[a,e,u,v]", r"dX_{a,e,u,v}"), dX,
                      "the upstream gradient read back as images")]
        return Derivation(self.name, self.summary, self.inputs, {"Y": X[n, c, h, w]}, {"dX": dX}, (), steps,
                          [], [], {"dX": dX})

    def lower(self, lowering, use):
        """Images already travel as (N, C*H*W) arrays in NCHW order: the flattened value is
        the same array under its own name (and its gradient the same array as the image's)."""
        source, out = lowering.values[-1], lowering.names.value
        lowering.views[out] = source
        images = len(lowering.shapes[use.position - 1]) == 3  # or a sequence (T, D), read token after token
        note, back = ((tr("the images read as features, in NCHW order", "图像按 NCHW 顺序读作特征"),
                       tr("flatten's gradient, read back as images", "flatten 的梯度按图像形状读回")) if images else
                      (tr("the sequence read as features, token after token", "序列按词元顺序读作特征"),
                       tr("flatten's gradient, read back as a sequence", "flatten 的梯度按序列形状读回")))
        lowering.forward += [Comment(f"layer {use.position}: {use.text} ({source} read as features)"), Let(
            array(out), array(source), note=note)]
        lowering.prepend_backward([Comment(f"layer {use.position}: {use.text}"), Let(
            array(f"d{source}"), array(f"d{out}"), comment=f"dL/d{source} = dL/d{out}, the same numbers", note=back)])
        lowering.values.append(out)


def _conv2d_means(d: Derivation, text: str, shape_in, shape_out, geometry, names) -> dict:
    """conv2d's derived index rules as statements over the layer's arrays: Y, then dW and db,
    then dX. The padded input Xp[n, c, h, w] is the input at [h - pad, w - pad], and reads
    outside an array are the padding's zeros (or outside the window's weights)."""
    if not _whole(*shape_in, *geometry):
        return dict.fromkeys(("Y", "dW", "db", "dX"), ())
    (channels, rows, cols), (outs, out_rows, out_cols) = shape_in, shape_out
    cout, k, stride, pad = geometry
    source, Wt, b, out = names
    n_, o, c, i, j, p, q, a, e, u, v = _indices()
    h, w = index("h"), index("w")
    sizes = tuple(Let(symbol, size) for symbol, size in
                  ((C, channels), (O, outs), (HO, out_rows), (WO, out_cols), (KW, k), (S, stride)))

    def named(rule):
        return rule.replace(lambda x: isinstance(x, sp.Indexed), lambda x: {
            "Xp": lambda: _image(source, x.indices[0], x.indices[1], x.indices[2] - pad, x.indices[3] - pad),
            "W": lambda: sp.IndexedBase(Wt)[x.indices], "b": lambda: sp.IndexedBase(b)[x.indices],
            "dY": lambda: _image(f"d{out}", *x.indices)}[str(x.base)]())

    def each(target, rule, over, note=None):
        return _loops(over, (Assignments(((target, named(rule)),), zero_outside=True,
                                         notes={target: note} if note else {}),))

    return {
        "Y": sizes + each(_image(out, n_, o, i, j), d.forward["Y"], ((n_, N), (o, outs), (i, out_rows), (j, out_cols)), tr(
            f"{text}: the bias plus the kernel times each window of the (padded) input",
            f"{text}：偏置加上卷积核与（补零后）输入每个窗口的乘积之和")),
        "dW": sizes + each(sp.IndexedBase(f"d{Wt}")[a, e, u, v], d.backward["dW"], ((a, cout), (e, channels), (u, k), (v, k)), tr(
            f"{text}: dW is the input correlated with the upstream gradient; db its sum",
            f"{text}：dW 为输入与上游梯度的互相关；db 为上游梯度之和")),
        "db": each(sp.IndexedBase(f"d{b}")[a], d.backward["db"], ((a, cout),)),
        "dX": sizes + each(_image(f"d{source}", a, e, h, w), d.backward["dX"].xreplace({u: h + pad, v: w + pad}),
                           ((a, N), (e, channels), (h, rows), (w, cols)), tr(
                               "the full convolution of the upstream gradient with the flipped kernel",
                               "上游梯度与翻转后卷积核的完全卷积")),
    }


def _pool_means(use, shape_in, shape_out, k: int, stride: int, source: str, out: str) -> tuple[tuple, tuple]:
    """Max- and average-pooling window by window: each output the max (or mean) of its window;
    back, each window element gets the upstream gradient times its local derivative, summed
    over the windows that hold it (max-pool's ties go to the first maximum, row-major)."""
    if not _whole(*shape_in, k, stride):
        return (), ()
    (C, H, W), (_, HO, WO) = shape_in, shape_out
    n_, c, i, j, h, w = (index(name) for name in "ncijhw")
    window = [(p, q) for p in range(k) for q in range(k)]
    cells = [_image(source, n_, c, stride * i + p, stride * j + q) for p, q in window]
    if use.op.selects_one:
        value, what = as_written(sp.Max, *cells), ("largest element", "最大值")
        locals_ = [first_max_rule(cells, r) for r in range(len(window))]
        local_note = tr("1 if it is the window's first maximum in row-major order, else 0 "
                        "(Heaviside(0) = 0 against earlier elements, 1 against later ones)",
                        "若为窗口中按行优先的第一个最大值则为 1，否则为 0")
    else:
        value, what = as_written(sp.Mul, sp.Rational(1, k * k), as_written(sp.Add, *cells)), ("mean", "平均值")
        locals_ = [sp.Rational(1, k * k)] * len(window)
        local_note = tr("each element's share of the mean", "每个元素在平均值中的份额")
    outputs = ((n_, N), (c, C), (i, HO), (j, WO))
    forward = _loops(outputs, (Let(_image(out, n_, c, i, j), value, note=tr(
        f"{use.text}: the {what[0]} of each window", f"{use.text}：每个窗口的{what[1]}")),))
    chain_note = tr("the sum over the windows that hold this element", "对包含该元素的所有窗口求和")
    targets = [_image(f"d{source}", n_, c, stride * i + p, stride * j + q) for p, q in window]
    dout = sp.Symbol("dout")
    backward = (*_loops(((n_, N), (c, C), (h, H), (w, W)), (Let(_image(f"d{source}", n_, c, h, w), sp.Integer(0),
                                                                  note=tr("in no window: no gradient", "不在任何窗口中：梯度为 0")),)),
                *_loops(outputs, (Assignments(tuple((t, dout * local_) for t, local_ in zip(targets, locals_)),
                                              {"dout": _image(f"d{out}", n_, c, i, j)}, accumulate=frozenset(targets),
                                              upstream="dout", notes={t: (local_note, chain_note) for t in targets}),)))
    return forward, backward
