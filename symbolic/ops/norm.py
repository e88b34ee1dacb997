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
from ..ir import (Accumulate, Assignments, Comment, Let, Loop, as_written, difference, element as at, index, local,
                  ratio)
from ..text import tr
from .builders import (FEATURES, ROW)

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
    else:
        steps += [Step("backward dg (one row's share)", Label("dg[p]", "dg_p"), rule_g, "summed over the batch"),
                  Step("backward db (one row's share)", Label("db[p]", "db_p"), rule_b, "summed over the batch")]
    backward = {"dx": rule_x, "dg": rule_g, "db": rule_b}
    # the kernels compute mu and sigma2 as sums over the vector (the "mean" and "variance" steps)
    forward = {"s": sp.sqrt(sigma2 + eps), "xhat": (real("x") - mu) / s, "y": real("g") * xhat_p + real("b")}
    # the two sums rule_x reads, as the "name the sums" step defines them (sum_x rewritten in xhat)
    named_sums = {a_text: sp.Sum(upstream, (n, 1, M)), c_text: sp.Sum(upstream * xhat_n, (n, 1, M))}
    return Derivation(name, summary, ("x", "g", "b"), forward, backward, ("xhat", "s", "g"), steps, [],
                      ["s = sqrt(sigma2 + epsilon) with epsilon > 0: never a division by zero"],
                      {"dx": raw}, named_sums=named_sums)


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

    def lower(self, lowering, use):
        """Batch norm (each feature over the batch) or layer norm (each row over its features),
        from the statement builders below: mean and biased variance by reductions, xhat and y from
        the derived forward; on the way back the two sums of the derived three-term rule."""
        d = lowering.derivation(self)
        batch = self.mixes_rows  # batch norm: statistics over the batch; layer norm: over a row
        eps, *momentum = self.settings(use.args)
        source, width, k = lowering.values[-1], lowering.width, use.position
        g, b = lowering.names.params["g"], lowering.names.params["b"]
        lowering.params += [(g, (width,)), (b, (width,))]
        lowering.scales.append(g)
        out = lowering.buffer(lowering.names.value, (N, width))
        xhat = lowering.buffer(f"xhat{k}", (N, width))
        stat_shape = (width,) if batch else (N,)  # per feature (batch norm) or per row
        s, mean, var = (lowering.buffer(f"{v}{k}", stat_shape) for v in ("s", "mean", "var"))
        lowering.scratch += [xhat, s, mean, var]
        arrays = dict(x=source, y=out, xhat=xhat, s=s, mean=mean, var=var, g=g, b=b)
        head = f"layer {use.position}: {use.text}"
        epsilon = lowering.show(local(f"eps{k}"), f"eps{k}")  # numbered: a fused Adam step takes its own eps
        set_epsilon = Let(epsilon, sp.Float(eps), note=tr(f"epsilon of {use.text}", f"{use.text} 的 epsilon"))
        lowering.forward += [Comment(f"{head} (mean and biased variance over "
                                 + ("the batch, per feature)" if batch else "each row's features)")), set_epsilon,
                         *normalisation_forward(d, batch, width, epsilon, arrays, text=use.text)]
        if batch:
            running_mean, running_var = (f"running_mean{k}", f"running_var{k}")
            lowering.state += [(running_mean, (width,)), (running_var, (width,))]
            lowering._inference_statements = [
                Comment(f"{head} (inference: the running averages)"), set_epsilon,
                *normalisation_forward(d, batch, width, epsilon, arrays, (running_mean, running_var))]
            m = sp.Float(momentum[0])
            keep = difference(sp.Integer(1), m)  # (1 - m), as written
            rm, rv = at(running_mean, "j"), at(running_var, "j")
            lowering.after_update += [
                Comment(f"{head}: running averages (momentum {momentum[0]}, the running variance "
                        "unbiased, as torch)"),
                Loop(index("j"), width, (
                    Let(rm, as_written(sp.Add, as_written(sp.Mul, keep, rm), as_written(sp.Mul, m, at(mean, "j")))),
                    Let(rv, as_written(sp.Add, as_written(sp.Mul, keep, rv), ratio(
                        as_written(sp.Mul, m, at(var, "j"), N), as_written(sp.Add, N, -1))))))]
        dg, db = lowering.buffer(f"d{g}", (width,)), lowering.buffer(f"d{b}", (width,))
        dsource = lowering.buffer(f"d{source}", (N, width))
        grads = dict(dy=f"d{out}", dx=dsource, dg=dg, db=db)
        for name in d.named_sums:  # the two sums of the three-term rule, per feature or per row
            if batch:  # one per feature, added up row by row: arrays (see normalisation_backward)
                grads[name] = lowering.buffer(f"{name}{k}", (width,))
            else:
                lowering.show(local(name), f"{name}{k}", ROW)
        lowering.prepend_backward([Comment(head), *normalisation_backward(d, batch, width, arrays | grads, use.text)])
        lowering.values.append(out)


@dataclass(frozen=True)
class LayerNorm(BatchNorm):
    """Layer normalisation: each row normalised over its features, then y = g xhat + b. The
    same in training and inference (no running averages). ``layernorm(EPS)``."""

    defaults: tuple[float, ...] = (EPS,)
    kind: str = "layer"

    def parse_args(self, inner, where):
        return _float_args(self, inner, where, ("eps",))

    def state_shapes(self, args, width):
        return []


@dataclass(frozen=True)
class Rows:
    """Where a normalisation's vectors lie in its arrays. Batch norm: feature j's column (N, F);
    layer norm: row n of (N, F) arrays, or with ``tokens`` each token t of row n of (N, T, F)
    arrays (a transformer block normalises each token), its statistics at [n, t]; the arrays
    named in ``flat`` are sequences kept flat, (N, T*F), as a layer's values are."""

    batch: bool
    width: int
    tokens: int | None = None
    flat: frozenset = frozenset()

    def element(self, name):
        """name[n, j]: the vector's element j of row n (of token t: name[n, t, j] or name[n, t*F + j])."""
        if self.tokens is None:
            return at(name, "n", "j")
        if name in self.flat:
            return sp.IndexedBase(name)[index("n"), index("t") * self.width + index("j")]
        return at(name, "n", "t", "j")

    def statistic(self, name):
        """A statistic of the vector: per feature (batch norm), per row, or per token."""
        return at(name, *("j",) if self.batch else ("n",) if self.tokens is None else ("n", "t"))

    def each(self, body: tuple) -> Loop:
        """for every vector: body (per feature j; per row n; per row n and token t)."""
        if self.batch:
            return Loop(index("j"), self.width, body)
        if self.tokens is None:
            return Loop(index("n"), N, body)
        return Loop(index("n"), N, (Loop(index("t"), self.tokens, body),))


def normalisation_forward(d: Derivation, batch: bool, width, eps, a: dict, running=None, text: str = "",
                          rows: Rows | None = None) -> list:
    """Statements of a normalisation's forward pass over arrays named in ``a`` (x, y, xhat, s,
    mean, var, g, b). Batch norm: per feature j, the mean and biased variance over the N rows
    (or, for inference, the running averages ``running`` = (mean, var) arrays); layer norm: per
    row n over the ``width`` features (or as ``rows`` says: per token of a sequence).
    xhat and y are the derivation's forward formulas. ``eps`` is a number or a symbol the kernel
    holds (its argument, or a local set before)."""
    rows = rows or Rows(batch, width)
    inner, size = ("n", N) if batch else ("j", width)
    mean, var = (rows.statistic(a["mean"]), rows.statistic(a["var"])) if running is None else (
        rows.statistic(running[0]), rows.statistic(running[1]))
    x = rows.element(a["x"])
    names = {"x": x, "mu": mean, "sigma2": var, "s": rows.statistic(a["s"]), "xhat": rows.element(a["xhat"]),
             "g": at(a["g"], "j"), "b": at(a["b"], "j")}
    epsilon = eps if isinstance(eps, sp.Basic) else sp.Float(eps)  # a number, or the kernel's argument
    s_rule = d.forward["s"].xreplace({sp.Symbol("epsilon", positive=True): epsilon})
    centred = local("centred")
    over = tr("each feature over the batch", "每个特征在批量上") if batch else tr("each row over its features",
                                                                          "每一行在其特征上")
    start_mean = Let(mean, sp.Integer(0), note=tr(f"{text}: the mean of {over.en}", f"{text}：{over.zh}的均值"))
    add_x = (Let(mean, x, augmented=True),)
    start_var = Let(var, sp.Integer(0), note=tr("the biased variance (divided by the vector's size, as torch normalises)",
                                                "有偏方差（除以向量长度，与 torch 相同）"))
    add_square = (Let(centred, difference(x, mean)), Let(var, as_written(sp.Mul, centred, centred), augmented=True))
    set_s = Assignments(((names["s"], s_rule),), names, notes={names["s"]: tr(
        "s = sqrt(variance + epsilon), from the derivation", "s = sqrt(方差 + epsilon)（由推导得到）")})
    normalise = (Assignments(((names["xhat"], d.forward["xhat"]), (rows.element(a["y"]), d.forward["y"])), names, notes={
        names["xhat"]: tr("xhat = (x - mean) / s, then y = g xhat + b", "xhat = (x - 均值) / s，再 y = g xhat + b")}),)
    if batch and rows.tokens is None:  # row by row, each row's features side by side (see _row_major)
        statistics = [] if running is not None else [
            rows.each((start_mean,)), _row_major(width, add_x), rows.each((Let(mean, ratio(mean, size)), start_var)),
            _row_major(width, add_square), rows.each((Let(var, ratio(var, size)),))]
        return [*statistics, rows.each((set_s,)), _row_major(width, normalise)]
    statistics = [] if running is not None else [
        start_mean, Loop(index(inner), size, add_x), Let(mean, ratio(mean, size)),
        start_var, Loop(index(inner), size, add_square), Let(var, ratio(var, size))]
    return [rows.each((*statistics, set_s, Loop(index(inner), size, normalise)))]


def _row_major(width, body: tuple) -> Loop:
    """for n: for j: body. Batch norm's per-feature passes, each feature's sum still added
    over n = 0 .. N-1 in order (the same numbers as feature by feature): the inner loop runs
    along a row of the (N, F) arrays, which the compiler vectorises across features; feature
    by feature it strode down a column (a 784-100 batch-norm step: 30 of its 500 us)."""
    return Loop(index("n"), N, (Loop(index("j"), width, body),))


def normalisation_backward(d: Derivation, batch: bool, width, a: dict, text: str = "",
                           rows: Rows | None = None) -> list:
    """Statements of a normalisation's backward pass: the two sums of the derived rule over the
    normalised vector, then dx from the derived three-term rule; dg and db (batch norm: the
    sums themselves; layer norm: each row's (or token's) share, added over the batch). ``a``
    names the arrays as normalisation_forward's, plus dy, dx, dg, db (batch norm: and sum_dy,
    sum_dy_xhat, the two sums per feature)."""
    rows = rows or Rows(batch, width)
    inner, size = ("n", N) if batch else ("j", width)
    names = {"s": rows.statistic(a["s"]), "xhat": rows.element(a["xhat"]), "g": at(a["g"], "j"),
             "dy": rows.element(a["dy"])}
    dy, g, xhat = (sp.Symbol(v, real=True) for v in ("dy", "g", "xhat"))
    upstream = dy if batch else g * dy  # dL/dxhat
    sum_a, sum_c = (at(a["sum_dy"], "j"), at(a["sum_dy_xhat"], "j")) if batch else map(local, ("sum_gdy", "sum_gdy_xhat"))
    if batch:
        names |= {"sum_dy": sum_a, "sum_dy_xhat": sum_c}
    rule = d.backward["dx"]
    if not batch and isinstance(width, int):
        rule = rule.xreplace({FEATURES: sp.Integer(width)})
    dx_at, dg_at, db_at = rows.element(a["dx"]), at(a["dg"], "j"), at(a["db"], "j")
    j = index("j")
    shared = {p: tr(f"{a[p]}[j] is shared by every row: the derived rule, summed over the batch",
                    f"{a[p]}[j] 由每一行共用：推导出的规则对批量求和") for p in ("g", "b")}
    sums = [Let(sum_a, sp.Integer(0), note=tr(f"{text}: the two sums of the derived backward rule",
                                              f"{text}：推导出的反向规则中的两个求和")), Let(sum_c, sp.Integer(0)),
            Loop(index(inner), size, (Accumulate(sum_a, upstream, names), Accumulate(sum_c, upstream * xhat, names)))]
    dx = Assignments(((dx_at, rule),), names, {dx_at: f"dx = {sp.sstr(d.backward['dx'])}"}, notes={dx_at: tr(
        f"the derived three-term rule {sp.sstr(d.backward['dx'])}", f"推导出的三项规则 {sp.sstr(d.backward['dx'])}")})
    if batch:  # the sums in arrays a["sum_dy"], a["sum_dy_xhat"] (one per feature), row by row: see _row_major
        return [Comment(f"dg = {sp.sstr(d.backward['dg'])}, db = {sp.sstr(d.backward['db'])}"),
                Loop(j, width, (Let(sum_a, sp.Integer(0), note=sums[0].note), Let(sum_c, sp.Integer(0)))),
                _row_major(width, (Accumulate(sum_a, upstream, names), Accumulate(sum_c, upstream * xhat, names))),
                Loop(j, width, (Let(dg_at, sum_c, note=shared["g"]), Let(db_at, sum_a, note=shared["b"]))),
                _row_major(width, (dx,))]
    shares = Assignments(((dg_at, d.backward["dg"]), (db_at, d.backward["db"])), names,
                         {dg_at: "dg: each row's dy * xhat, summed over the batch",
                          db_at: "db: each row's dy, summed over the batch"}, frozenset({dg_at, db_at}))
    return [Loop(j, width, (Let(dg_at, sp.Integer(0), note=shared["g"]), Let(db_at, sp.Integer(0), note=shared["b"]))),
            rows.each((*sums, Loop(j, width, (dx, shares))))]
