"""Normalisation layers: batch normalisation (each feature over the batch) and layer
normalisation (each row over its features), with a learnable scale g and shift b per feature.

Both normalise a vector v[1..M] the same way: mean mu, biased variance sigma2, s = sqrt(sigma2
+ eps), xhat = (v - mu) / s, y = g xhat + b. Batch norm runs it down each feature column (M = N
rows, g one number for the column); layer norm along each row (M = the F features, g[k] one per
element). SymPy differentiates the contraction sum_n dy[n] y[n] by one element x[p]; the
Kronecker deltas are sifted (``indexcalc.resolve``) and the sums that remain are named, which
leaves the compact three-term rule the kernels use (``tests/test_norm.py`` proves it equal to the
textbook form).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..errors import SympropError
from ..indexcalc import resolve
from .base import N, Derivation, Label, Op, Step, fresh_name, real

F = sp.Symbol("F", integer=True, positive=True)  # features of a row (layer norm's M)

EPS = 1e-5  # torch's default
MOMENTUM = 0.1  # torch's default: running = (1 - momentum) running + momentum * batch value


def _sum_names(kind):
    """The names the kernels give the two sums of the backward rule."""
    return ("sum_dy", "sum_dy_xhat") if kind == "batch" else ("sum_gdy", "sum_gdy_xhat")


def normalisation_derivation(name: str, summary: str, kind: str) -> Derivation:
    """Derive the backward rules of y[n] = g xhat[n] + b over one normalised vector.

    kind "batch": the vector is a feature column over the N rows, g and b are numbers;
    kind "layer": the vector is a row over its F features, g[n] and b[n] one per element."""
    M = N if kind == "batch" else F
    x, dy, gi, bi = (sp.IndexedBase(s) for s in ("x", "dy", "g", "b"))
    n, m, k, p = sp.symbols("n m k p", integer=True)
    eps = sp.Symbol("epsilon", positive=True)
    g_of = (lambda i: real("g")) if kind == "batch" else (lambda i: gi[i])
    b_of = (lambda i: real("b")) if kind == "batch" else (lambda i: bi[i])
    mean = sp.Sum(x[m], (m, 1, M)) / M
    variance = sp.Sum((x[k] - mean) ** 2, (k, 1, M)) / M
    y = g_of(n) * (x[n] - mean) / sp.sqrt(variance + eps) + b_of(n)
    contraction = sp.Sum(dy[n] * y, (n, 1, M))
    raw = contraction.diff(x[p])

    mu, sigma2 = real("mu"), sp.Symbol("sigma2", nonnegative=True)
    s, xhat_p = sp.Symbol("s", positive=True), real("xhat")
    named = raw.xreplace({variance: sigma2}).xreplace({mean: mu})
    sifted = resolve(named)

    def is_input_sum(e):  # sum_m x[m] over the whole vector, which is M mu
        return (isinstance(e, sp.Sum) and len(e.limits) == 1 and e.function == x[e.limits[0][0]]
                and tuple(e.limits[0][1:]) == (1, M))

    sifted = sifted.replace(is_input_sum, lambda e: M * mu).doit()
    upstream = dy[n] * (1 if kind == "batch" else gi[n])  # dL/dxhat[n]
    sum_a, sum_c = (real(s_) for s_ in _sum_names(kind))
    sum_b = real("sum_x")  # sum_n upstream[n] x[n]: rewritten below in terms of xhat
    totals = {sp.Sum(upstream, (n, 1, M)): sum_a, sp.Sum(upstream * x[n], (n, 1, M)): sum_b}
    if not all(sp.expand(sifted).has(total) for total in totals):
        raise AssertionError(f"{name}: the derivative never met the sums {list(totals)}")
    in_sums = sp.expand(sifted).xreplace(totals)
    # x[p] = mu + s xhat[p]; sum u x = s sum u xhat + mu sum u; sigma2 = s^2 - eps
    rule_x = sp.factor(sp.simplify(in_sums.xreplace({x[p]: mu + s * xhat_p})
                                   .subs({sum_b: s * sum_c + mu * sum_a, sigma2: s ** 2 - eps})))
    if rule_x.free_symbols & {mu, sigma2, sum_b}:
        raise AssertionError(f"{name}: the backward rule still reads {rule_x.free_symbols}")

    dout = real("dy")
    rule_x = rule_x.xreplace({dy[p]: dout, gi[p]: real("g")})
    xhat_n = sp.IndexedBase("xhat")[n]
    rule_g = sp.Sum(dy[n] * xhat_n, (n, 1, M)) if kind == "batch" else dout * xhat_p
    rule_b = sp.Sum(dy[n], (n, 1, M)) if kind == "batch" else dout
    a_text, c_text = _sum_names(kind)
    over = "the batch (the N rows of the column)" if kind == "batch" else "the row's F features"
    dxl = Label("dx[p]", r"\frac{\partial L}{\partial x_p}")
    steps = [
        Step("mean", mu, mean, f"over {over}"),
        Step("variance", sigma2, variance, "biased (divided by " + sp.sstr(M) + "), as torch normalises"),
        Step("normalise", sp.IndexedBase("xhat")[n], (x[n] - mu) / s, "s = sqrt(sigma2 + epsilon)"),
        Step("forward", sp.IndexedBase("y")[n], g_of(n) * xhat_n + b_of(n), "learnable scale g and shift b"),
        Step("chain rule", dxl, raw,
             f"dx[p] = d/dx[p] of sum_n dy[n] y[n]: every y[n] reads x[p] through mu and sigma2"),
        Step("sift the Kronecker deltas, name mu and sigma2", dxl, sifted, f"p lies in 1..{sp.sstr(M)}"),
        Step("name the sums", dxl, in_sums,
             f"{a_text} = {sp.sstr(sp.Sum(upstream, (n, 1, M)))}, "
             f"sum_x = {sp.sstr(sp.Sum(upstream * x[n], (n, 1, M)))}"),
        Step("in terms of xhat and s", dxl, rule_x,
             f"x[p] = mu + s xhat[p], sum_x = s {c_text} + mu {a_text}, sigma2 = s^2 - epsilon"),
    ]
    if kind == "batch":
        steps += [Step("backward dg", Label("dg", "dg"), rule_g, "g scales every row of the column"),
                  Step("backward db", Label("db", "db"), rule_b, "b shifts every row of the column")]
        backward = {"dx": rule_x, "dg": rule_g, "db": rule_b}
        sums = ()
    else:
        steps += [Step("backward dg (one row's share)", Label("dg[p]", "dg_p"), rule_g, "summed over the batch"),
                  Step("backward db (one row's share)", Label("db[p]", "db_p"), rule_b, "summed over the batch")]
        backward = {"dx": rule_x, "dg": rule_g, "db": rule_b}
        sums = ("dg", "db")
    # the kernels compute mu and sigma2 as sums over the vector (the "mean" and "variance" steps)
    forward = {"s": sp.sqrt(sigma2 + eps), "xhat": (real("x") - mu) / s, "y": real("g") * xhat_p + real("b")}
    # the two sums rule_x reads, as the "name the sums" step defines them (sum_x rewritten in xhat)
    named_sums = {a_text: sp.Sum(upstream, (n, 1, M)), c_text: sp.Sum(upstream * xhat_n, (n, 1, M))}
    return Derivation(name, summary, ("x", "g", "b"), forward, backward, ("xhat", "s", "g"), steps, [],
                      ["s = sqrt(sigma2 + epsilon) with epsilon > 0: never a division by zero"],
                      {"dx": raw}, sums, named_sums)


def _float_args(op, inner, where, names):
    """Optional positive float arguments in order (eps, momentum ...); () when none is written."""
    if inner is None:
        return ()
    try:
        args = tuple(float(a) for a in inner.split(","))
    except ValueError:
        args = ()
    if not args or len(args) > len(names) or min(args) <= 0:
        raise SympropError(f"{where}: {op.name} takes up to {len(names)} positive numbers "
                           f"({', '.join(names)}), e.g. {op.name} or {op.name}({', '.join(map(str, op.defaults))})")
    return args


@dataclass(frozen=True)
class BatchNorm(Op):
    """Batch normalisation: each feature normalised over the batch, then y = g xhat + b.

    Training mode uses the batch's mean and biased variance; each training step also updates
    running averages (momentum 0.1, the running variance unbiased, as torch), which inference
    mode uses instead. ``batchnorm(EPS, MOMENTUM)`` overrides torch's 1e-5 and 0.1."""

    @property
    def mixes_rows(self) -> bool:
        """Batch norm's statistics are over the batch; layer norm's over each row alone."""
        return self.kind == "batch"

    def param_names(self, roles, layer, position, taken):
        """scale<position>, shift<position>: never an affine layer's W1, b1 nor a hyper-parameter
        (beta2)."""
        stems = {"g": "scale", "b": "shift"}
        return {role: fresh_name(f"{stems[role]}{position}", taken) for role in roles}

    name: str
    summary: str
    inputs: tuple[str, ...] = ("x", "g", "b")
    defaults: tuple[float, ...] = (EPS, MOMENTUM)
    kind: str = "batch"

    def parse_args(self, inner, where):
        return _float_args(self, inner, where, ("eps", "momentum"))

    def settings(self, args) -> tuple[float, float]:
        """(eps, momentum) of a node."""
        return (*args, *self.defaults[len(args):])

    def param_shapes(self, args, width):
        return [("g", (width,)), ("b", (width,))]

    def state_shapes(self, args, width):
        """Arrays a network keeps between steps that are not learned: the running averages."""
        return [("running_mean", (width,)), ("running_var", (width,))]

    def derive(self) -> Derivation:
        return normalisation_derivation(self.name, self.summary, self.kind)


@dataclass(frozen=True)
class LayerNorm(BatchNorm):
    """Layer normalisation: each row normalised over its features, then y = g xhat + b. The
    same in training and inference (no running averages). ``layernorm(EPS)``."""

    defaults: tuple[float, ...] = (EPS,)
    kind: str = "layer"

    def parse_args(self, inner, where):
        return _float_args(self, inner, where, ("eps",))

    def settings(self, args):
        return (*args, *self.defaults[len(args):])

    def state_shapes(self, args, width):
        return []
