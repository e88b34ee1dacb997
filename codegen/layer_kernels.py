"""Per-layer kernels: ``<layer>_forward`` and ``<layer>_backward`` for every registered layer.

Each kernel is a plain ``@jit`` function (``<name>_kernel``) whose loop bodies are printed from
the layer's derivation, plus a checked wrapper (``<name>``) that validates shapes and dtypes,
allocates outputs unless the caller passes them, and never modifies its inputs. Templates here
hold only function skeletons (loops, signatures, checks); every formula comes from the registry.
"""
from __future__ import annotations

import sympy as sp

from symprop.symbolic.errors import SympropError
from symprop.symbolic.graph import parse_net
from symprop.symbolic.ir import Assignments, element as at, local
from symprop.symbolic.layers import (REGISTRY, K, Affine, BatchNorm, Conv2d, Derivation, Dropout, Elementwise,
                                     ElementwiseLoss, Flatten, MulticlassHinge, PerFeature, Pool, Softmax, SoftmaxCrossEntropy)
from symprop.symbolic.ir import index
from symprop.symbolic.lower import Lowering
from symprop.symbolic.ops.elementwise import per_feature_statements
from symprop.symbolic.ops.losses import hinge_row_statements
from symprop.symbolic.ops.norm import normalisation_backward, normalisation_forward
from symprop.symbolic.ops.builders import FEATURES, row_max, row_reduction, _row_index

from .backend import NUMBA
from .common import indent
from .printer import KernelPrinter, print_statements
from .statements import print_lines, shape_text


def python_name(layer_name: str) -> str:
    return layer_name.replace("-", "_")


class ModuleText:
    """Collects functions and the helpers they use."""

    def __init__(self):
        self.functions: list[str] = []
        self.helpers: set[str] = set()

    def add(self, text: str, helpers=()):
        self.functions.append(text.strip("\n") + "\n")
        self.helpers |= set(helpers)


def _element_statements(assignments, arrays, comment_for=None):
    """A loop body over element i: each input element read once into a local (x_i = x[i]),
    then the statements. Outputs may alias inputs, so a value read again after a store is
    reloaded, and LLVM could no longer share the work (one exp) of two helpers applied to it."""
    lines, used = print_statements(assignments, {n: local(f"{n}_i") for n in arrays}, comment_for=comment_for)
    return [f"{n}_i = {n}[i]" for n in arrays] + lines, used


def _elementwise(layer, d: Derivation, module: ModuleText):
    base = python_name(layer.name)
    inputs = list(layer.inputs)
    forward = d.forward[layer.output]
    # forward
    lines, used = _element_statements([(at("out", "i"), forward)], inputs)
    args = ", ".join(inputs)
    module.add(f'''
@jit
def {base}_forward_kernel({args}, out):
    real = out.dtype.type
    for i in range(out.size):
{chr(10).join(indent(lines, 2))}


def {base}_forward({args}, out=None):
    """{layer.output} = {sp.sstr(forward)}, element by element ({layer.summary})."""
    _separate("{base}_forward", dict(out=out), dict({", ".join(f"{n}={n}" for n in inputs)}))
    {args}, = _arrays("{base}_forward", {", ".join(f"{n}={n}" for n in inputs)})
{chr(10).join(f'    _shape("{base}_forward", "{n}", {n}, {inputs[0]}.shape)' for n in inputs[1:])}
    out = _output("{base}_forward", "out", out, {inputs[0]}.shape, {inputs[0]}.dtype)
    {base}_forward_kernel({", ".join(f"{n}.reshape(-1)" for n in inputs)}, out.reshape(-1))
    return out
''', used)
    # backward: one output array per input, rules read dout and the saved values
    saved = list(d.saved)
    grads = [f"d{n}" for n in inputs]
    assignments = [(at(g, "i"), d.backward[g]) for g in grads]
    # "d out/dx" would read as the upstream dout over dx: bracket an output named out
    output_name = f"({layer.output})" if layer.output == "out" else layer.output
    partial = {at(g, "i"): f"{g} = dout * d{output_name}/d{g[1:]}" for g in grads}
    lines, used = _element_statements(assignments, ["dout", *saved], comment_for=partial.get)
    params = ", ".join(["dout", *saved])
    outs = ", ".join(f"{g}=None" for g in grads)
    returns = ", ".join(grads)
    checks = "\n".join(f'    _shape("{base}_backward", "{n}", {n}, dout.shape)' for n in saved)
    allocs = "\n".join(f'    {g} = _output("{base}_backward", "{g}", {g}, dout.shape, dout.dtype)' for g in grads)
    rules = "; ".join(f"{g} = {sp.sstr(d.backward[g])}" for g in grads)
    module.add(f'''
@jit
def {base}_backward_kernel({params}, {", ".join(grads)}):
    real = dout.dtype.type
    for i in range(dout.size):
{chr(10).join(indent(lines, 2))}


def {base}_backward({params}, {outs}):
    """{rules}. Reads {", ".join(saved) or "only dout"}; never writes its inputs."""
    _separate("{base}_backward", dict({", ".join(f"{g}={g}" for g in grads)}), dict({", ".join(f"{n}={n}" for n in ["dout", *saved])}))
    {params}, = _arrays("{base}_backward", {", ".join(f"{n}={n}" for n in ["dout", *saved])})
{checks}
{allocs}
    {base}_backward_kernel({", ".join(f"{n}.reshape(-1)" for n in ["dout", *saved, *grads])})
    return {returns}
''', used)
    # fused: one pass computing the output and the gradients, sharing subexpressions (CSE)
    output = sp.Symbol(layer.output, real=True)
    fused = [(at("out", "i"), forward)] + [(at(g, "i"), d.backward[g].subs(output, forward)) for g in grads]
    lines, used = _element_statements(fused, [*inputs, "dout"], comment_for=partial.get)
    module.add(f'''
@jit
def {base}_forward_backward_kernel({args}, dout, out, {", ".join(grads)}):
    real = out.dtype.type
    for i in range(out.size):
{chr(10).join(indent(lines, 2))}


def {base}_forward_backward({args}, dout):
    """Forward and backward in one pass over memory, when dout is known with the inputs
    (an activation applied to a fixed upstream gradient); returns ({layer.output}, {returns})."""
    {args}, dout, = _arrays("{base}_forward_backward", {", ".join(f"{n}={n}" for n in [*inputs, "dout"])})
{chr(10).join(f'    _shape("{base}_forward_backward", "{n}", {n}, dout.shape)' for n in inputs)}
    out = np.empty_like(dout)
{chr(10).join(f"    {g} = np.empty_like(dout)" for g in grads)}
    {base}_forward_backward_kernel({", ".join(f"{n}.reshape(-1)" for n in [*inputs, "dout", "out", *grads])})
    return out, {returns}
''', used)


def _per_feature(layer, d: Derivation, module: ModuleText):
    base = python_name(layer.name)
    params, grads = list(layer.params), [f"d{p}" for p in layer.params]
    arrays = dict(x="x", y="out", dy="dout", dx="dx", **{p: p for p in params}, **{g: g for g in grads})
    forward, backward = per_feature_statements(layer, d, arrays, FEATURES)
    (forward_lines, forward_used), (backward_lines, backward_used) = print_lines(forward), print_lines(backward)
    p_args = ", ".join(params)
    shape_checks = "\n".join(f'    _shape(function, "{p}", {p}, (x.shape[1],))' for p in params)
    module.add(f'''
def _{base}_arrays(function, x, {p_args}):
    x, {p_args}, = _arrays(function, x=x, {", ".join(f"{p}={p}" for p in params)})
    if x.ndim != 2:
        raise ValueError(f"{{function}}: x must be (N, F), got shape {{x.shape}}")
{shape_checks}
    return x, {p_args}


@jit
def {base}_forward_kernel(x, {p_args}, out):
    real = out.dtype.type
    N, F = x.shape
{chr(10).join(indent(forward_lines, 1))}


def {base}_forward(x, {p_args}, out=None):
    """{layer.output}[n, j] = {sp.sstr(d.forward[layer.output])} with one {p_args} per feature j ({layer.summary})."""
    _separate("{base}_forward", dict(out=out), dict(x=x, {", ".join(f"{p}={p}" for p in params)}))
    x, {p_args}, = _{base}_arrays("{base}_forward", x, {p_args})
    out = _output("{base}_forward", "out", out, x.shape, x.dtype)
    {base}_forward_kernel(x, {p_args}, out)
    return out


@jit
def {base}_backward_kernel(dout, x, {p_args}, dx, {", ".join(grads)}):
    real = dx.dtype.type
    N, F = x.shape
{chr(10).join(indent(backward_lines, 1))}


def {base}_backward(dout, x, {p_args}):
    """(dx, {", ".join(grads)}): {"; ".join(f"{g} = {sp.sstr(d.backward[g])}" for g in ["dx", *grads])}, the
    parameters' gradients summed over the batch. Never writes its inputs."""
    x, {p_args}, = _{base}_arrays("{base}_backward", x, {p_args})
    dout, = _arrays("{base}_backward", dout=dout)
    _shape("{base}_backward", "dout", dout, x.shape)
    dx = np.empty_like(x)
{chr(10).join(f"    {g} = np.empty(x.shape[1], x.dtype)" for g in grads)}
    {base}_backward_kernel(dout, x, {p_args}, dx, {", ".join(grads)})
    return dx, {", ".join(grads)}
''', forward_used | backward_used)


def _loss(layer, d: Derivation, module: ModuleText):
    base = python_name(layer.name)
    p = layer.prediction
    scale = layer.loss_scale
    names = {p: at(p, "n", "k"), "t": at("t", "n", "k")}
    lines, used = print_statements([(local("total"), d.forward["l"])], names, accumulate={local("total")})
    printer = KernelPrinter()
    scale_text = printer.doprint(scale)
    grad = f"d{p}"
    blines, bused = print_statements([(at(grad, "n", "k"), d.backward[grad])], names,
                                     comment_for=lambda _: f"{grad} = dL/d{p}")
    module.add(f'''
@jit
def {base}_forward_kernel({p}, t):
    real = {p}.dtype.type
    N, K = {p}.shape
    total = real(0)
    for n in range(N):
        for k in range(K):
{chr(10).join(indent(lines, 3))}
    return total * {scale_text}


def {base}_forward({p}, t):
    """L = {sp.sstr(scale)} * sum of {sp.sstr(d.forward["l"])} ({layer.summary}); {p} and t are (N, K)."""
    {p}, t = _arrays("{base}_forward", {p}={p}, t=t)
    if {p}.ndim != 2 or {p}.shape[0] == 0:
        raise ValueError(f"{base}_forward: {p} must be 2-D (batch, outputs) with at least one row, got shape {{{p}.shape}}")
    _shape("{base}_forward", "t", t, {p}.shape)
    return {base}_forward_kernel({p}, t)


@jit
def {base}_backward_kernel({p}, t, {grad}):
    real = {p}.dtype.type
    N, K = {p}.shape
    for n in range(N):
        for k in range(K):
{chr(10).join(indent(blines, 3))}


def {base}_backward({p}, t, {grad}=None):
    """{grad} = {sp.sstr(d.backward[grad])}; the loss's upstream gradient is 1."""
    _separate("{base}_backward", dict({grad}={grad}), dict({p}={p}, t=t))
    {p}, t = _arrays("{base}_backward", {p}={p}, t=t)
    if {p}.ndim != 2 or {p}.shape[0] == 0:
        raise ValueError(f"{base}_backward: {p} must be 2-D (batch, outputs) with at least one row, got shape {{{p}.shape}}")
    _shape("{base}_backward", "t", t, {p}.shape)
    {grad} = _output("{base}_backward", "{grad}", {grad}, {p}.shape, {p}.dtype)
    {base}_backward_kernel({p}, t, {grad})
    return {grad}
''', used | bused)


def _affine(layer, d: Derivation, module: ModuleText):
    base = python_name(layer.name)
    printer = KernelPrinter()
    dX, dW, db = (printer.doprint(d.backward[g]) for g in ("dX", "dW", "db"))
    bias_shape = "(1,)" if layer.shared_bias else "(W.shape[1],)"
    module.add(f'''
@jit
def {base}_forward_kernel(X, W, b, out):
    np.dot(X, W, out)
    _add_bias(out, b)


def {base}_forward(X, W, b, out=None):
    """Y = {sp.sstr(d.forward["Y"])}: X is (N, I), W is (I, J), b is {"(1,)" if layer.shared_bias else "(J,)"}."""
    _separate("{base}_forward", dict(out=out), dict(X=X, W=W, b=b))
    X, W, b = _arrays("{base}_forward", X=X, W=W, b=b)
    if X.ndim != 2 or W.ndim != 2 or X.shape[1] != W.shape[0]:
        raise ValueError(f"{base}_forward: X {{X.shape}} and W {{W.shape}} do not chain as (N, I) x (I, J)")
    _shape("{base}_forward", "b", b, {bias_shape})
    out = _output("{base}_forward", "out", out, (X.shape[0], W.shape[1]), X.dtype)
    {base}_forward_kernel(X, W, b, out)
    return out


@jit
def {base}_backward_kernel(dY, X, W):
    dX = {dX}  # dL/dX = dY W^T
    dW = {dW}  # dL/dW = X^T dY
    db = {db}  # dL/db = 1^T dY{" 1 (one shared bias)" if layer.shared_bias else " (sum over the batch)"}
    return dX, dW, db


def {base}_backward(dY, X, W):
    """dX = {sp.sstr(d.backward["dX"])}, dW = {sp.sstr(d.backward["dW"])}, db = {sp.sstr(d.backward["db"])}."""
    dY, X, W = _arrays("{base}_backward", dY=dY, X=X, W=W)
    if X.ndim != 2 or W.ndim != 2 or X.shape[1] != W.shape[0]:
        raise ValueError(f"{base}_backward: X {{X.shape}} and W {{W.shape}} do not chain as (N, I) x (I, J)")
    _shape("{base}_backward", "dY", dY, (X.shape[0], W.shape[1]))
    return {base}_backward_kernel(dY, X, W)
''', {"_add_bias", *printer.helpers_used, "_total" if layer.shared_bias else "_column_sums"})


def row_reduction_lines(assignments, names=None, index=index("k"), size=K, comment_for=None):
    """row_reduction's statements as printed lines, and the helpers they use."""
    return print_lines(row_reduction(assignments, names, index, size, comment_for))


def _softmax(layer, d: Derivation, module: ModuleText):
    base = python_name(layer.name)
    forward, used = row_reduction_lines([(at("y", "n", "k"), _row_index(d.forward["y[k]"]))], {})
    backward, bused = row_reduction_lines([(at("dz", "n", "k"), _row_index(d.backward["dz[j]"]))], {},
                                          comment_for=lambda _: f"dz = {sp.sstr(d.backward['dz[j]'])}")
    module.add(f'''
@jit
def {base}_forward_kernel(z, y):
    real = z.dtype.type
    N, K = z.shape
    for n in range(N):
{chr(10).join(indent(print_lines(row_max())[0] + forward, 2))}


def {base}_forward(z, out=None):
    """y = softmax(z) over each row, with the row maximum subtracted before exp."""
    _separate("{base}_forward", dict(out=out), dict(z=z))
    z, = _arrays("{base}_forward", z=z)
    if z.ndim != 2:
        raise ValueError(f"{base}_forward: z must be 2-D (batch, classes), got shape {{z.shape}}")
    out = _output("{base}_forward", "out", out, z.shape, z.dtype)
    {base}_forward_kernel(z, out)
    return out


@jit
def {base}_backward_kernel(dy, y, dz):
    real = y.dtype.type
    N, K = y.shape
    for n in range(N):
{chr(10).join(indent(backward, 2))}


def {base}_backward(dy, y, dz=None):
    """dz[j] = {sp.sstr(d.backward["dz[j]"])}, from the saved output y."""
    _separate("{base}_backward", dict(dz=dz), dict(dy=dy, y=y))
    dy, y = _arrays("{base}_backward", dy=dy, y=y)
    if y.ndim != 2:
        raise ValueError(f"{base}_backward: y must be 2-D (batch, classes), got shape {{y.shape}}")
    _shape("{base}_backward", "dy", dy, y.shape)
    dz = _output("{base}_backward", "dz", dz, y.shape, y.dtype)
    {base}_backward_kernel(dy, y, dz)
    return dz
''', used | bused)


def _softmax_cross_entropy(layer, d: Derivation, module: ModuleText):
    base = python_name(layer.name)
    forward, used = row_reduction_lines(
        [(at("y", "n", "k"), _row_index(d.forward["y[k]"])), (local("row_loss"), d.forward["L_n"])], {})
    backward, bused = row_reduction_lines([(at("dz", "n", "k"), _row_index(d.backward["dz[j]"]))], {},
                                          comment_for=lambda _: f"dz = dL/dz = {sp.sstr(d.backward['dz[j]'])}")
    module.add(f'''
@jit
def {base}_forward_kernel(z, t, y):
    real = z.dtype.type
    N, K = z.shape
    total = real(0)
    for n in range(N):
{chr(10).join(indent(print_lines(row_max())[0] + forward, 2))}
        total += row_loss
    return total / real(N)


def {base}_forward(z, t, out=None):
    """Mean over the batch of -sum_k t log softmax(z); also returns y = softmax(z).

    Computed as log-sum-exp with the row maximum subtracted: log(0) is never taken.
    """
    _separate("{base}_forward", dict(out=out), dict(z=z, t=t))
    z, t = _arrays("{base}_forward", z=z, t=t)
    if z.ndim != 2 or 0 in z.shape:
        raise ValueError(f"{base}_forward: z must be 2-D (batch, classes) with at least one row and one class, got shape {{z.shape}}")
    _shape("{base}_forward", "t", t, z.shape)
    out = _output("{base}_forward", "out", out, z.shape, z.dtype)
    loss = {base}_forward_kernel(z, t, out)
    return loss, out

''' + _row_loss_backward_text(base, "y", f'dz = {sp.sstr(d.backward["dz[j]"])}, from the saved softmax output y and one-hot t.',
                               backward), used | bused)


def _row_loss_backward_text(base: str, x: str, doc: str, backward: list[str]) -> str:
    """The backward kernel and checked wrapper of a row-wise loss with one-hot targets t:
    dz[n, k] from ``x`` (the saved softmax output y, or the scores z) and t, row by row."""
    return f'''
@jit
def {base}_backward_kernel({x}, t, dz):
    real = {x}.dtype.type
    N, K = {x}.shape
    for n in range(N):
{chr(10).join(indent(backward, 2))}


def {base}_backward({x}, t, dz=None):
    """{doc}"""
    _separate("{base}_backward", dict(dz=dz), dict({x}={x}, t=t))
    {x}, t = _arrays("{base}_backward", {x}={x}, t=t)
    if {x}.ndim != 2 or 0 in {x}.shape:
        raise ValueError(f"{base}_backward: {x} must be 2-D (batch, classes) with at least one row and one class, got shape {{{x}.shape}}")
    _shape("{base}_backward", "t", t, {x}.shape)
    dz = _output("{base}_backward", "dz", dz, {x}.shape, {x}.dtype)
    {base}_backward_kernel({x}, t, dz)
    return dz
'''


def _hinge(layer, d: Derivation, module: ModuleText):
    base = python_name(layer.name)
    forward, used = print_lines(hinge_row_statements(d, {}))
    backward, bused = print_lines(hinge_row_statements(d, {}, "dz"))
    module.add(f'''
@jit
def {base}_forward_kernel(z, t):
    real = z.dtype.type
    N, K = z.shape
    total = real(0)
    for n in range(N):
{chr(10).join(indent(forward, 2))}
        total += row_loss
    return total / real(N)


def {base}_forward(z, t):
    """Mean over the batch of sum over the wrong classes k of max(0, z[k] - z[y] + 1), one-hot t."""
    z, t = _arrays("{base}_forward", z=z, t=t)
    if z.ndim != 2 or 0 in z.shape:
        raise ValueError(f"{base}_forward: z must be 2-D (batch, classes) with at least one row and one class, got shape {{z.shape}}")
    _shape("{base}_forward", "t", t, z.shape)
    return {base}_forward_kernel(z, t)

''' + _row_loss_backward_text(base, "z", f'dz = {sp.sstr(d.backward["dz[j]"])}.', backward), used | bused)


def _normalisation(layer, d: Derivation, module: ModuleText):
    batch = layer.mixes_rows  # batch norm: statistics over the batch; layer norm: over a row
    base = python_name(layer.name)
    arrays = dict(x="x", y="y", xhat="xhat", s="s", mean="mean", var="var", g="g", b="b",
                  dy="dy", dx="dx", dg="dg", db="db")
    forward, used = print_lines(normalisation_forward(d, batch, FEATURES, sp.Symbol("eps"), arrays))
    backward, bused = print_lines(normalisation_backward(d, batch, FEATURES, arrays))
    over, stats = ("feature over the batch", "F") if batch else ("row over its features", "N")
    module.add(f'''
@jit
def {base}_forward_kernel(x, g, b, eps, y, xhat, s, mean, var):
    real = x.dtype.type
    N, F = x.shape
    eps = real(eps)
{chr(10).join(indent(forward, 1))}


def {base}_forward(x, g, b, eps={layer.defaults[0]!r}):
    """Training mode: each {over} normalised with its mean and biased variance, then
    y = g xhat + b. Returns (y, xhat, s, mean, var); backward reads xhat and s."""
    x, g, b = _arrays("{base}_forward", x=x, g=g, b=b)
    if x.ndim != 2 or x.shape[{0 if batch else 1}] < 1:
        raise ValueError(f"{base}_forward: x must be 2-D (batch, features), got shape {{x.shape}}")
    _shape("{base}_forward", "g", g, (x.shape[1],))
    _shape("{base}_forward", "b", b, (x.shape[1],))
    y, xhat = np.empty_like(x), np.empty_like(x)
    s, mean, var = (np.empty(x.shape[{1 if batch else 0}], x.dtype) for _ in range(3))
    {base}_forward_kernel(x, g, b, eps, y, xhat, s, mean, var)
    return y, xhat, s, mean, var


@jit
def {base}_backward_kernel(dy, xhat, s, g, dx, dg, db):
    real = dy.dtype.type
    N, F = dy.shape
{chr(10).join(indent(backward, 1))}


def {base}_backward(dy, xhat, s, g):
    """(dx, dg, db) from the saved xhat and s (the derived three-term rule)."""
    dy, xhat, s, g = _arrays("{base}_backward", dy=dy, xhat=xhat, s=s, g=g)
    if dy.ndim != 2:
        raise ValueError(f"{base}_backward: dy must be 2-D (batch, features), got shape {{dy.shape}}")
    _shape("{base}_backward", "xhat", xhat, dy.shape)
    _shape("{base}_backward", "s", s, (dy.shape[{1 if batch else 0}],))
    _shape("{base}_backward", "g", g, (dy.shape[1],))
    dx, dg, db = np.empty_like(dy), np.empty(dy.shape[1], dy.dtype), np.empty(dy.shape[1], dy.dtype)
    {base}_backward_kernel(dy, xhat, s, g, dx, dg, db)
    return dx, dg, db
''', used | bused)


def _dropout(layer, d: Derivation, module: ModuleText):
    base = python_name(layer.name)
    names = {"x": at("x", "i"), "m": at("m", "i"), "dy": at("dy", "i"), "p": local("rate")}
    forward, used = print_lines([Assignments(((at("y", "i"), d.forward["y"]),), names)])
    backward, bused = print_lines([Assignments(((at("dx", "i"), d.backward["dx"]),), names,
                                               {at("dx", "i"): f"dx = {sp.sstr(d.backward['dx'])}"})])
    module.add(f'''
@jit
def {base}_forward_kernel(x, m, p, y):
    real = x.dtype.type
    rate = real(p)
    for i in range(x.size):
{chr(10).join(indent(forward, 2))}


def {base}_forward(x, m, p=0.5):
    """Training mode: y = x m / (1 - p) for the 0/1 mask m (inference mode is the identity)."""
    x, m = _arrays("{base}_forward", x=x, m=m)
    _shape("{base}_forward", "m", m, x.shape)
    y = np.empty_like(x)
    {base}_forward_kernel(x.reshape(-1), m.reshape(-1), p, y.reshape(-1))
    return y


@jit
def {base}_backward_kernel(dy, m, p, dx):
    real = dy.dtype.type
    rate = real(p)
    for i in range(dy.size):
{chr(10).join(indent(backward, 2))}


def {base}_backward(dy, m, p=0.5):
    """dx = {sp.sstr(d.backward["dx"])}."""
    dy, m = _arrays("{base}_backward", dy=dy, m=m)
    _shape("{base}_backward", "m", m, dy.shape)
    dx = np.empty_like(dy)
    {base}_backward_kernel(dy.reshape(-1), m.reshape(-1), p, dx.reshape(-1))
    return dx
''', used | bused)
_IMAGE_CHECK = '''
def _images(function, X, ndim=4):
    if X.ndim != ndim or X.shape[0] == 0:
        raise ValueError(f"{function}: expected a batch of NCHW images (N, C, H, W), got shape {X.shape}")
    return X


def _window(function, X, k, stride):
    k = int(k)
    stride = k if stride is None else int(stride)
    if k < 1 or stride < 1 or k > min(X.shape[2:]):
        raise ValueError(f"{function}: a {k}x{k} window with stride {stride} does not fit images {X.shape[2:]}")
    return k, stride
'''


def _conv2d(layer, d: Derivation, module: ModuleText):
    """conv2d on 4-D NCHW arrays: the network's im2col helpers on (N, C*H*W) views."""
    base = python_name(layer.name)
    module.add(_IMAGE_CHECK)
    module.add(f'''
@jit
def {base}_forward_kernel(X, Wt, b, C, H, W, stride, pad, cols, Y):
    _conv2d_forward(X, Wt, b, C, H, W, stride, pad, cols, Y)


def {base}_forward(X, W, b, stride=1, pad=0):
    """Y[n,o,i,j] = b[o] + sum_c,p,q W[o,c,p,q] Xp[n,c,s*i+p,s*j+q] (Xp: X zero-padded by pad);
    X is (N, C, H, W), W is (O, C, k, k), b is (O,); returns Y as (N, O, Ho, Wo)."""
    X, W, b = _arrays("{base}_forward", X=X, W=W, b=b)
    N, C, H, Wd = _images("{base}_forward", X).shape
    if W.ndim != 4 or W.shape[1] != C or W.shape[2] != W.shape[3] or W.shape[2] > min(H, Wd) + 2 * pad:
        raise ValueError(f"{base}_forward: W {{W.shape}} is not (O, {{C}}, k, k) with k fitting {{X.shape[2:]}}")
    _shape("{base}_forward", "b", b, (W.shape[0],))
    O, k = W.shape[0], W.shape[2]
    Ho, Wo = (H + 2 * pad - k) // stride + 1, (Wd + 2 * pad - k) // stride + 1
    Y = np.empty((N, O, Ho, Wo), X.dtype)
    cols = np.empty((N, C * k * k, Ho * Wo), X.dtype)
    {base}_forward_kernel(X.reshape(N, -1), W, b, C, H, Wd, stride, pad, cols, Y.reshape(N, -1))
    return Y


@jit
def {base}_backward_kernel(dY, X, Wt, C, H, W, stride, pad, cols, dcols, product, dX, dW, db):
    _im2col(X, C, H, W, Wt.shape[2], stride, pad, cols)
    _conv2d_param_grads(dY, cols, dW, db, product)
    _conv2d_input_grad(dY, Wt, C, H, W, stride, pad, dcols, dX)


def {base}_backward(dY, X, W, stride=1, pad=0):
    """(dX, dW, db): dXp[a,e,u,v] = {sp.sstr(d.backward["dX"])} (a full convolution with the flipped
    kernel), dW[a,e,u,v] = {sp.sstr(d.backward["dW"])}, db[a] = {sp.sstr(d.backward["db"])}."""
    dY, X, W = _arrays("{base}_backward", dY=dY, X=X, W=W)
    N, C, H, Wd = _images("{base}_backward", X).shape
    O, k = W.shape[0], W.shape[2]
    Ho, Wo = (H + 2 * pad - k) // stride + 1, (Wd + 2 * pad - k) // stride + 1
    _shape("{base}_backward", "dY", dY, (N, O, Ho, Wo))
    cols = np.empty((N, C * k * k, Ho * Wo), X.dtype)
    dcols = np.empty((C * k * k, Ho * Wo), X.dtype)
    product = np.empty((O, C * k * k), X.dtype)
    dX, dW, db = np.empty_like(X), np.empty_like(W), np.empty(O, X.dtype)
    {base}_backward_kernel(dY.reshape(N, -1), X.reshape(N, -1), W, C, H, Wd, stride, pad, cols, dcols, product,
                           dX.reshape(N, -1), dW, db)
    return dX, dW, db
''', {"_conv2d_forward", "_im2col", "_conv2d_param_grads", "_conv2d_input_grad"})


def _pool(layer, d: Derivation, module: ModuleText):
    base, mode = python_name(layer.name), layer.mode
    reads = "dY, X" if layer.selects_one else "dY"
    module.add(_IMAGE_CHECK)
    module.add(f'''
@jit
def {base}_forward_kernel(X, C, H, W, k, stride, Y):
    _{mode}pool_forward(X, C, H, W, k, stride, Y)


def {base}_forward(X, k, stride=None):
    """{layer.summary}; X is (N, C, H, W); returns (N, C, Ho, Wo)."""
    X, = _arrays("{base}_forward", X=X)
    N, C, H, W = _images("{base}_forward", X).shape
    k, stride = _window("{base}_forward", X, k, stride)
    Y = np.empty((N, C, (H - k) // stride + 1, (W - k) // stride + 1), X.dtype)
    {base}_forward_kernel(X.reshape(N, -1), C, H, W, k, stride, Y.reshape(N, -1))
    return Y


@jit
def {base}_backward_kernel(dY, X, C, H, W, k, stride, dX):
    _{mode}pool_backward({reads}, C, H, W, k, stride, dX)


def {base}_backward(dY, X, k, stride=None):
    """dX[a,e,u,v] = {sp.sstr(d.backward["dX"])}{" (S: 1 at the window's first maximum in row-major order)" if layer.selects_one else ""}."""
    dY, X = _arrays("{base}_backward", dY=dY, X=X)
    N, C, H, W = _images("{base}_backward", X).shape
    k, stride = _window("{base}_backward", X, k, stride)
    _shape("{base}_backward", "dY", dY, (N, C, (H - k) // stride + 1, (W - k) // stride + 1))
    dX = np.empty_like(X)
    {base}_backward_kernel(dY.reshape(N, -1), X.reshape(N, -1), C, H, W, k, stride, dX.reshape(N, -1))
    return dX
''', {f"_{mode}pool_forward", f"_{mode}pool_backward"})


def _flatten(layer, d: Derivation, module: ModuleText):
    base = python_name(layer.name)
    module.add(_IMAGE_CHECK)
    module.add(f'''
@jit
def {base}_forward_kernel(X, Y):
    Y[:] = X


def {base}_forward(X):
    """{layer.summary}: (N, C, H, W) -> a new (N, C*H*W) array."""
    X, = _arrays("{base}_forward", X=X)
    N = _images("{base}_forward", X).shape[0]
    Y = np.empty((N, X.size // N), X.dtype)
    {base}_forward_kernel(X.reshape(N, -1), Y)
    return Y


@jit
def {base}_backward_kernel(dY, dX):
    dX[:] = dY


def {base}_backward(dY, X):
    """dX[a,e,u,v] = {sp.sstr(d.backward["dX"])}: dY read back in X's shape (a new array)."""
    dY, X = _arrays("{base}_backward", dY=dY, X=X)
    N = _images("{base}_backward", X).shape[0]
    _shape("{base}_backward", "dY", dY, (N, X.size // N))
    dX = np.empty_like(X)
    {base}_backward_kernel(dY, dX.reshape(N, -1))
    return dX
''')


# op type -> the kernels it gets in generated/layers.py (dispatch on the type, through base classes)
EMITTERS = {
    Elementwise: _elementwise,
    PerFeature: _per_feature,
    ElementwiseLoss: _loss,
    Affine: _affine,
    Softmax: _softmax,
    SoftmaxCrossEntropy: _softmax_cross_entropy,
    BatchNorm: _normalisation,
    Dropout: _dropout,
    MulticlassHinge: _hinge,
    Conv2d: _conv2d,
    Pool: _pool,
    Flatten: _flatten,
}


def _from_lowering(layer, d: Derivation, module: ModuleText):
    """The kernels of a family that brings its own lowering (an op class with ``lower()``):
    the lowering of a one-node graph at a width F read from x, printed as it is in a network
    kernel. The backward kernel runs the forward statements first, so it reads what they
    saved without the caller passing it."""
    if layer.is_loss:
        raise SympropError(f"layer {layer.name!r}: a loss's per-layer kernels are not printed from its lowering yet")
    low = Lowering(parse_net(layer.name, loss_optional=True, input_width=FEATURES), input_gradient=True)
    if low.masks or low.state:
        raise SympropError(f"layer {layer.name!r}: an op with masks or state needs per-layer kernels of its own")
    base = python_name(layer.name)
    params = [name for name, _ in low.params]
    out, grads = low.values[-1], ["dX", *(f"d{p}" for p in params)]
    forward_buffers = [(name, shape) for name, shape in low.buffers if name not in grads]
    (forward, used), (backward, bused) = print_lines(low.forward), print_lines(low.backward)
    args = ", ".join(["X", *params])
    shapes = lambda buffers: "\n".join(f"    {name} = np.empty({shape_text(shape)}, X.dtype)"  # noqa: E731
                                       for name, shape in buffers)
    checks = "\n".join(f'    _shape(function, "{p}", {p}, {shape_text(shape)})' for p, shape in low.params)
    module.add(f'''
def _{base}_arrays(function, {args}):
    {args}, = _arrays(function, X=X, {", ".join(f"{p}={p}" for p in params)})
    if X.ndim != 2:
        raise ValueError(f"{{function}}: x must be (N, F), got shape {{X.shape}}")
    N, F = X.shape
{checks}
    return ({args},)


@jit
def {base}_forward_kernel({args}, {", ".join(name for name, _ in forward_buffers)}):
    real = X.dtype.type
    N, F = X.shape
{chr(10).join(indent(forward, 1))}


def {base}_forward({args}):
    """{layer.summary} (printed from its lowering)."""
    {args}, = _{base}_arrays("{base}_forward", {args})
    N, F = X.shape
{shapes(forward_buffers)}
    {base}_forward_kernel({args}, {", ".join(name for name, _ in forward_buffers)})
    return {out}


@jit
def {base}_backward_kernel(d{out}, {args}, {", ".join(name for name, _ in low.buffers)}):
    real = X.dtype.type
    N, F = X.shape
{chr(10).join(indent(forward, 1))}
{chr(10).join(indent(backward, 1))}


def {base}_backward(dout, {args}):
    """({", ".join(grads)}): the gradients from the upstream gradient dout (printed from its lowering).
    Never writes its inputs."""
    {args}, = _{base}_arrays("{base}_backward", {args})
    dout, = _arrays("{base}_backward", dout=dout)
    N, F = X.shape
    _shape("{base}_backward", "dout", dout, (N, F))
{shapes(low.buffers)}
    {base}_backward_kernel(dout, {args}, {", ".join(name for name, _ in low.buffers)})
    return ({", ".join(grads)},)
''', used | bused)


def _emitter(layer, name: str):
    """A built-in family's hand-shaped emitter (through the op's base classes), else the
    kernels printed from the family's own lowering."""
    for cls in type(layer).__mro__:
        if cls in EMITTERS:
            return EMITTERS[cls]
    if callable(getattr(layer, "lower", None)):
        return _from_lowering
    raise SympropError(f"layer {name!r}: symprop has no lowering for {type(layer).__name__} ops")


def layers_module_body(registry=REGISTRY, backend=NUMBA) -> tuple[str, list[str]]:
    """The text of generated/layers.py below its header, and the layer names it covers: each
    built-in family by its emitter, a family that brings its own lowering from that (an op
    without per-layer kernels, ``layer_kernels = False``, is compiled in networks only)."""
    module = ModuleText()
    names = [name for name, layer in registry.items() if layer.layer_kernels]
    for name in names:
        _emitter(registry[name], name)(registry[name], registry.derive(name), module)
    functions = list(dict.fromkeys(module.functions))  # a shared check (_images) once
    body = backend.module_start(module.helpers) + "\n\n" + "\n\n".join(functions)
    return body, names
