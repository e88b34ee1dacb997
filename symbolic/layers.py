"""The layer registry: every layer symprop knows, each defined once by its forward formula.

Backward rules are never typed in. Each layer class turns its forward formula into a
``Derivation``: SymPy differentiates, the chain rule multiplies by a symbolic upstream
gradient, and ``canonical_form`` picks the overflow-free form the kernels use (in terms of the
saved forward output where that is stabler, e.g. sigmoid' = y(1 - y)). Transcripts, kernels
and tests all read from ``REGISTRY``; adding an elementwise layer is one line in it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import sympy as sp

from .budget import OutOfTime, time_budget
from .errors import SympropError
from .formula import parse_formula
from .indexcalc import pull_constants, resolve, sift
from .kinks import CONVENTION as KINK_CONVENTION
from .kinks import diff
from .stable import Sigmoid, canonical_form, equal_numerically, masks_as_selects, stabilize

MAX_DERIVE_SECONDS = 9.0  # a formula layer's whole derivation (each rewrite has its own 5 s)
MAX_DERIVATIVE_OPS = 2000  # operations in one local derivative, as SymPy's count_ops counts them

# Sizes are symbols, so no derivation depends on them: batch N, inputs I, outputs J, classes K.
N, I, J, K = sp.symbols("N I J K", integer=True, positive=True)


@dataclass(frozen=True)
class Label:
    """A left-hand side that is a name, not a formula: dL/dz[j] in text, its LaTeX for Markdown."""

    text: str
    latex: str


def partial(of: str, wrt: str, of_tex: str | None = None, wrt_tex: str | None = None) -> Label:
    return Label(f"d{of}/d{wrt}",
                 rf"\frac{{\partial {of_tex or of}}}{{\partial {wrt_tex or wrt}}}")


@dataclass(frozen=True)
class Step:
    """One line of a derivation: ``lhs = rhs``, with a short reason."""

    title: str
    lhs: sp.Basic
    rhs: sp.Basic
    note: str = ""


@dataclass
class Derivation:
    """Everything symprop knows about one layer, derived from its forward formula."""

    layer: str
    summary: str
    inputs: tuple[str, ...]
    forward: dict[str, sp.Basic]  # output name -> canonical (stable) forward formula
    backward: dict[str, sp.Basic]  # gradient name ("dx") -> rule in upstream and saved values
    saved: tuple[str, ...]  # forward values the backward rule reads
    steps: list[Step] = field(default_factory=list)
    conventions: list[str] = field(default_factory=list)
    stability: list[str] = field(default_factory=list)
    raw_backward: dict[str, sp.Basic] = field(default_factory=dict)  # before canonical form
    # gradients whose rule above is one row's contribution, summed over the N rows of the batch
    # (a parameter shared by every row, e.g. a per-feature scale g[j]): the reduction, typed
    batch_sums: tuple[str, ...] = ()

    def _repr_markdown_(self) -> str:
        """Jupyter shows a derivation that is a cell's value as its Markdown (formulas by MathJax)."""
        from .render import derivation_markdown  # render imports this module

        return derivation_markdown(self)


def real(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def _apply_kink_convention(expr):
    """Heaviside(u) -> Heaviside(u, 0) where SymPy left H(0) open: the side of a max or min
    that loses a tie (kinks.py; the derivative of max(0, u) is 0 at u = 0)."""
    return expr.replace(lambda e: isinstance(e, sp.Heaviside) and e.args[1] == sp.S.Half,
                        lambda e: sp.Heaviside(e.args[0], 0))


def _in_terms_of_output(derivative, forward, output, inputs):
    """Rewrite derivative using the saved output y = forward, if that removes the inputs."""
    if forward in inputs or not forward.free_symbols:
        return None
    expr = derivative
    if isinstance(forward, Sigmoid):  # sigmoid(-u) = 1 - sigmoid(u), then name sigmoid(u) y
        expr = expr.xreplace({Sigmoid(-forward.args[0]): 1 - forward})
    expr = expr.xreplace({forward: output})
    if expr.free_symbols & set(inputs):
        return None
    return sp.factor(expr) if sp.count_ops(sp.factor(expr)) <= sp.count_ops(expr) else expr


class Op:
    """What every op answers about itself in a net spec (``graph.parse_net`` asks; nothing
    branches on an op's name). The defaults fit an op with no arguments and no parameters that
    keeps the number of features, e.g. an activation."""

    is_loss = False  # a loss ends a network: it takes the targets T and gives the scalar L
    applies = ""  # a loss that takes logits names the activation it applies itself

    def network_problem(self) -> str | None:
        """Why this op cannot be a layer of a network, or None."""
        return None

    def parse_args(self, inner: str | None, where: str) -> tuple:
        """The arguments written in NAME(ARGS) (inner is None without parentheses)."""
        if inner is not None:
            raise SympropError(f"{where}: {self.name} takes no arguments")
        return ()

    def input_width(self, args) -> int | None:
        """The number of features this op needs, when its arguments fix it."""
        return None

    def output_width(self, args, width: int) -> int:
        return width

    def param_shapes(self, args, width: int) -> list[tuple[str, tuple[int, ...]]]:
        """(role, shape) of each learnable parameter, e.g. [("W", (2, 3)), ("b", (3,))]."""
        return []


@dataclass(frozen=True)
class Elementwise(Op):
    """y = f(x) (or f(x, y) for graph nodes), applied element by element."""

    name: str
    formula: str
    summary: str
    inputs: tuple[str, ...] = ("x",)
    output: str = "y"

    def network_problem(self):
        if len(self.inputs) != 1:
            return (f"{self.name} is a two-input graph node; a network is a chain of "
                    f"one-input layers (use symprop derive {self.name} for the node itself)")
        return None

    @cached_property
    def expr(self) -> sp.Expr:
        return parse_formula(self.formula, self.inputs, where=f"layer {self.name!r}")

    def derive(self) -> Derivation:
        """The derivation, within MAX_DERIVE_SECONDS and MAX_DERIVATIVE_OPS, or a SympropError
        saying which bound the formula exceeds."""
        try:
            with time_budget(MAX_DERIVE_SECONDS):
                return self._derive()
        except (OutOfTime, RecursionError):
            raise SympropError(f"layer {self.name!r}: deriving {self.formula!r} takes longer than "
                               f"{MAX_DERIVE_SECONDS:g} s; simplify the formula") from None

    def _derive(self) -> Derivation:
        xs = [real(n) for n in self.inputs]
        out, dout = real(self.output), real("dout")
        raw = self.expr
        forward = canonical_form(raw, xs)
        steps = [Step("forward", out, raw, "the layer's definition")]
        stability = []
        if forward != raw:
            steps.append(Step("stable forward", out, forward, "same function, no overflow"))
            stability.append(f"forward {forward} evaluates exp only of non-positive arguments")
        backward, raw_backward, conventions, saved = {}, {}, [], set()
        for x in xs:
            local_raw = diff(raw, x)
            size = sp.count_ops(local_raw)
            if size > MAX_DERIVATIVE_OPS:
                raise SympropError(f"layer {self.name!r}: the derivative of {self.formula!r} by {x} has "
                                   f"{size} operations; the limit is {MAX_DERIVATIVE_OPS}")
            local = _apply_kink_convention(local_raw)
            if local != local_raw or raw.has(sp.Max, sp.Min):
                conventions.append(KINK_CONVENTION)
            stable = canonical_form(local, xs)
            by_output = next((form for form in (_in_terms_of_output(c, forward, out, xs) for c in (stable, local))
                              if form is not None), None)
            grad = real("d" + x.name)
            dd = partial(out.name, x.name)
            steps.append(Step(f"local derivative d{out}/d{x}", dd, local_raw, "SymPy's diff"))
            if local != local_raw:
                steps.append(Step("kink convention", dd, local, KINK_CONVENTION))
            if stable != local:
                steps.append(Step("canonical form", dd, stable, "cheapest overflow-free equal form"))
            if by_output is not None:
                steps.append(Step("in terms of the saved output", dd, by_output,
                                  f"substituting {out} = {forward}"))
                stability.append(f"d{out}/d{x} = {by_output} reads the saved output {out}: "
                                 "no exp, finite for every input")
                stable = by_output
            rule = masks_as_selects(dout * stable)
            steps.append(Step(f"backward (chain rule: upstream times local)", grad, rule,
                              f"{grad} = {dout} * d{out}/d{x}"))
            backward[grad.name] = rule
            raw_backward[grad.name] = dout * local
            saved |= {s.name for s in rule.free_symbols} - {dout.name}
        order = [*self.inputs, self.output]
        return Derivation(self.name, self.summary, self.inputs, {self.output: forward}, backward,
                          tuple(n for n in order if n in saved), steps, sorted(set(conventions)),
                          stability, raw_backward)


@dataclass(frozen=True)
class PerFeature(Op):
    """y[n, j] = f(x[n, j], g[j]): elementwise, with learnable parameters that hold one value per
    feature j, shared by every row n of the batch (a learnable scale y = g * x, a per-feature
    PReLU ...). Each parameter's gradient is its rows' contributions summed over the batch."""

    name: str
    formula: str
    summary: str
    params: tuple[str, ...] = ("g",)
    output: str = "y"

    @property
    def inputs(self) -> tuple[str, ...]:
        return ("x", *self.params)

    @cached_property
    def expr(self) -> sp.Expr:
        return parse_formula(self.formula, self.inputs, where=f"layer {self.name!r}")

    def param_shapes(self, args, width):
        return [(p, (width,)) for p in self.params]

    def derive(self) -> Derivation:
        names = [real(v) for v in self.inputs]
        out, dout = real(self.output), real("dout")
        raw = self.expr
        forward = canonical_form(raw, names)
        n = sp.Symbol("n", integer=True)
        steps = [Step("forward", out, raw, "element [n, j]; each parameter is indexed by the feature j alone")]
        backward, raw_backward, conventions, saved = {}, {}, [], set()
        for v in names:
            local_raw = diff(raw, v)
            local = _apply_kink_convention(local_raw)
            if local != local_raw or raw.has(sp.Max, sp.Min):
                conventions.append(KINK_CONVENTION)
            stable = canonical_form(local, names)
            grad, dd = "d" + v.name, partial(out.name, v.name)
            steps.append(Step(f"local derivative d{out}/d{v}", dd, local_raw, "SymPy's diff"))
            if stable != local_raw:
                steps.append(Step("canonical form", dd, stable, "kink convention, cheapest overflow-free form"))
            rule = masks_as_selects(dout * stable)
            if v.name == "x":
                steps.append(Step("backward (chain rule: upstream times local)", real(grad), rule,
                                  f"{grad}[n, j] = dout[n, j] * d{out}/d{v}"))
            else:
                rows = {s: sp.Indexed(sp.IndexedBase(s.name), n) for s in rule.free_symbols if s not in names[1:]}
                steps.append(Step("backward, summed over the batch", real(grad),
                                  sp.Sum(rule.xreplace(rows), (n, 1, N)),
                                  f"{v}[j] is shared by the N rows: its gradient adds each row's dout * d{out}/d{v}"))
            backward[grad], raw_backward[grad] = rule, dout * local
            saved |= {s.name for s in rule.free_symbols} - {dout.name}
        return Derivation(self.name, self.summary, self.inputs, {self.output: forward}, backward,
                          tuple(v for v in self.inputs if v in saved), steps, sorted(set(conventions)), [],
                          raw_backward, tuple("d" + p for p in self.params))


REDUCTIONS = {
    "sum": (sp.S.One, "summed over every element"),
    "mean": (1 / (N * K), "averaged over all N*K elements"),
    "batch-mean": (1 / N, "summed over outputs, averaged over the batch of N"),
}


@dataclass(frozen=True)
class ElementwiseLoss(Op):
    """L = scale * sum over the batch of l(prediction, t); the end of a network."""

    name: str
    formula: str
    summary: str
    reduction: str = "sum"
    prediction: str = "y"
    applies: str = ""  # binary-cross-entropy takes logits z and applies the sigmoid itself
    is_loss = True

    @property
    def loss_scale(self) -> sp.Expr:
        """The factor in front of the sum over the batch (N rows) and outputs (K): 1, 1/N or 1/(N K)."""
        return REDUCTIONS[self.reduction][0]

    @cached_property
    def expr(self) -> sp.Expr:
        return parse_formula(self.formula, (self.prediction, "t"), where=f"layer {self.name!r}")

    @property
    def inputs(self):
        return (self.prediction, "t")

    def derive(self) -> Derivation:
        p, t = real(self.prediction), real("t")
        scale, said = self.loss_scale, REDUCTIONS[self.reduction][1]
        raw = self.expr
        forward = canonical_form(raw, [p, t])
        n, k = sp.symbols("n k", integer=True)
        total = scale * sp.Sum(sp.Function("l")(p, t), (n, 1, N), (k, 1, K))
        steps = [Step("loss per element", sp.Function("l")(p, t), raw, "the layer's definition"),
                 Step("total loss", real("L"), total, said)]
        if forward != raw:
            steps.append(Step("stable form", sp.Function("l")(p, t), forward, "same function, no overflow"))
        local_raw = _apply_kink_convention(diff(raw, p))
        local = canonical_form(local_raw, [p, t])
        dl = partial("l", p.name, r"\ell")
        steps.append(Step(f"local derivative dl/d{p}", dl, local_raw, "SymPy's diff"))
        if local != local_raw:
            steps.append(Step("canonical form", dl, local, "cheapest overflow-free equal form"))
        rule = masks_as_selects(scale * local)
        grad = "d" + p.name
        steps.append(Step("backward", real(grad), rule,
                          f"dL/d{p} = scale * dl/d{p}; the loss is the end of the graph, so its upstream gradient is 1"))
        saved = tuple(s for s in (p.name, "t") if real(s) in rule.free_symbols)
        stability = ([f"{forward} uses softplus, which never overflows"] if forward.has(sp.Function) else [])
        return Derivation(self.name, self.summary, self.inputs, {"l": forward}, {grad: rule}, saved,
                          steps, [], stability, {grad: scale * local_raw})


@dataclass(frozen=True)
class Affine(Op):
    """Y = X W + b on a batch: X is N x I, W is I x J, b one bias per output (or one shared)."""

    name: str
    summary: str
    shared_bias: bool = False
    inputs: tuple[str, ...] = ("X", "W", "b")

    def parse_args(self, inner, where):
        try:
            args = tuple(int(a) for a in (inner or "").split(","))
        except ValueError:
            args = ()
        if len(args) != 2 or min(args) < 1:
            raise SympropError(f"{where}: {self.name} needs two positive sizes, e.g. {self.name}(784,100)")
        return args

    def input_width(self, args):
        return args[0]

    def output_width(self, args, width):
        return args[1]

    def param_shapes(self, args, width):
        return [("W", tuple(args)), ("b", (1,) if self.shared_bias else (args[1],))]

    def derive(self) -> Derivation:
        X, W, dY = sp.MatrixSymbol("X", N, I), sp.MatrixSymbol("W", I, J), sp.MatrixSymbol("dY", N, J)
        if self.shared_bias:
            b = sp.MatrixSymbol("b", 1, 1)
            bias = sp.OneMatrix(N, 1) * b * sp.OneMatrix(1, J)
        else:
            b = sp.MatrixSymbol("b", 1, J)
            bias = sp.OneMatrix(N, 1) * b
        Y = X * W + bias
        contraction = sp.Trace(dY.T * Y)
        steps = [Step("forward", sp.MatrixSymbol("Y", N, J), Y,
                      "1 is a column of N ones: the bias is added to every row"),
                 Step("chain rule", Label("dL", "dL"), contraction,
                      "the upstream gradient dY weights each output: dL = sum_n,j dY[n,j] * (change in Y[n,j]), "
                      "written tr(dY^T Y); its gradient with respect to each input is that input's rule")]
        backward = {}
        for name, var in (("dX", X), ("dW", W), ("db", b)):
            rule = sp.simplify(contraction.diff(var))
            backward[name] = rule
            steps.append(Step(f"backward {name}", sp.MatrixSymbol(name, *var.shape), rule,
                              "matrix calculus: d tr(dY^T Y) / d" + var.name))
        steps += self._index_form_steps()
        return Derivation(self.name, self.summary, self.inputs, {"Y": Y}, backward, ("X", "W"),
                          steps, [], [], dict(backward))

    def _index_form_steps(self):
        """The same rules in index notation, derived by differentiating the scalar contraction."""
        Xi, Wi, bi, dYi = (sp.IndexedBase(s) for s in ("X", "W", "b", "dY"))
        n, i, j, p, q = sp.symbols("n i j p q", integer=True)
        bias = bi[0] if self.shared_bias else bi[j]
        Yi = sp.Sum(Xi[n, i] * Wi[i, j], (i, 1, I)) + bias
        L = sp.Sum(sp.Sum(dYi[n, j] * Yi, (j, 1, J)), (n, 1, N))
        rows = []
        for target, label in ((Xi[p, q], "dX[p, q]"), (Wi[p, q], "dW[p, q]"),
                              (bi[0] if self.shared_bias else bi[q], "db[q]" if not self.shared_bias else "db")):
            rule = resolve(L.diff(target))
            rows.append(Step("index notation", Label(label, label), sp.simplify(rule),
                             "sifting property of the Kronecker delta"))
        return rows


DZ = Label("dz[j]", r"\frac{\partial L}{\partial z_j}")
DLN = Label("dL_n/dz[j]", r"\frac{\partial L_n}{\partial z_j}")


def _softmax_symbols():
    z, y, t, dy = (sp.IndexedBase(s) for s in ("z", "y", "t", "dy"))
    j, k, m = sp.symbols("j k m", integer=True)
    return z, y, t, dy, j, k, m


def _name_softmax_outputs(expr, z, y, S):
    """exp(z[i]) -> y[i] * S, since y[i] = exp(z[i]) / S (S itself is left alone)."""
    placeholder = sp.Symbol("S", positive=True)
    named = expr.xreplace({S: placeholder}).replace(
        lambda e: isinstance(e, sp.exp) and isinstance(e.args[0], sp.Indexed) and e.args[0].base == z,
        lambda e: y[e.args[0].indices[0]] * placeholder)
    return sp.simplify(pull_constants(named)).xreplace({placeholder: S})


@dataclass(frozen=True)
class Softmax(Op):
    """y[k] = exp(z[k]) / sum_m exp(z[m]) over the K classes of each row."""

    name: str
    summary: str
    inputs: tuple[str, ...] = ("z",)

    def derive(self) -> Derivation:
        z, y, _, dy, j, k, m = _softmax_symbols()
        S = sp.Sum(sp.exp(z[m]), (m, 1, K))
        yk = sp.exp(z[k]) / S
        zmax = sp.Symbol("zmax", real=True)
        stable = sp.exp(z[k] - zmax) / sp.Sum(sp.exp(z[m] - zmax), (m, 1, K))
        contraction = sp.Sum(dy[k] * yk, (k, 1, K))
        raw = contraction.diff(z[j])
        sifted = pull_constants(sift(raw))
        named = _name_softmax_outputs(sifted, z, y, S)
        rule = named
        steps = [
            Step("forward", y[k], yk, "exponentials normalised over the row"),
            Step("stable forward", y[k], stable,
                 "numerator and denominator multiplied by exp(-zmax), zmax = max_m z[m]: "
                 "no exponent is positive, so nothing overflows"),
            Step("chain rule", DZ, raw, "dz[j] = sum_k dy[k] * dy[k]/dz[j]"),
            Step("sift the Kronecker deltas", DZ, sifted, "j lies in 1..K"),
            Step("name the outputs", DZ, named, "exp(z[i]) = y[i] * sum_m exp(z[m])"),
            Step("backward", DZ, rule, "reads only the saved output y"),
        ]
        return Derivation(self.name, self.summary, self.inputs, {"y[k]": stable}, {"dz[j]": rule},
                          ("y",), steps, [], ["max subtracted before exp"], {"dz[j]": raw})


@dataclass(frozen=True)
class SoftmaxCrossEntropy(Op):
    """L = -(1/N) sum_n sum_k t[n,k] log softmax(z[n])[k], one-hot targets t."""

    name: str
    summary: str
    inputs: tuple[str, ...] = ("z", "t")
    is_loss = True
    applies = "softmax"

    def derive(self) -> Derivation:
        z, y, t, _, j, k, m = _softmax_symbols()
        S = sp.Sum(sp.exp(z[m]), (m, 1, K))
        log_softmax = z[k] - sp.log(S)
        per_row = -sp.Sum(t[k] * log_softmax, (k, 1, K))
        raw = per_row.diff(z[j])
        sifted = pull_constants(sift(raw))
        target_sum = sp.Sum(t[k], (k, 1, K))
        one_hot = sifted.subs(target_sum, 1)
        if one_hot == sifted:
            raise AssertionError("softmax-cross-entropy derivation never met sum_k t[k]")
        named = _name_softmax_outputs(one_hot, z, y, S)
        rule = sp.simplify(named) / N
        zmax = sp.Symbol("zmax", real=True)
        lse = zmax + sp.log(sp.Sum(sp.exp(z[m] - zmax), (m, 1, K)))
        steps = [
            Step("forward", y[k], sp.exp(z[k]) / S, "softmax over the row"),
            Step("loss of one row", Label("L_n", "L_n"), -sp.Sum(t[k] * sp.log(y[k]), (k, 1, K)), "cross-entropy"),
            Step("log of softmax", sp.log(y[k]), log_softmax, "log(exp(z[k]) / S) = z[k] - log S"),
            Step("stable log-sum-exp", sp.log(S), lse, "zmax = max_m z[m]; no exponent is positive"),
            Step("differentiate", DLN, raw, "SymPy's diff"),
            Step("sift the Kronecker deltas", DLN, sifted, "j lies in 1..K"),
            Step("one-hot targets", DLN, one_hot,
                 "sum_k t[k] = 1 because t is one-hot: this is where the target's sum is used"),
            Step("name the outputs", DLN, sp.simplify(named), "exp(z[j]) / S = y[j]"),
            Step("mean over the batch", DZ, rule, "L = (1/N) sum_n L_n"),
        ]
        return Derivation(self.name, self.summary, self.inputs, {"y[k]": sp.exp(z[k] - zmax) / sp.exp(lse - zmax),
                                                                 "L_n": lse - sp.Sum(t[k] * z[k], (k, 1, K))},
                          {"dz[j]": rule}, ("y", "t"), steps,
                          ["targets are one-hot (each row sums to 1)"],
                          ["log-sum-exp with the row maximum subtracted; log(0) never taken"],
                          {"dz[j]": raw / N})


class Registry(dict):
    """name -> layer, in definition order; derivations computed once and cached."""

    def __init__(self, layers):
        super().__init__((layer.name, layer) for layer in layers)
        self._derivations = {}

    def get_layer(self, name: str):
        if name not in self:
            raise SympropError(f"unknown layer {name!r}; known layers: {', '.join(self)}")
        return self[name]

    def register(self, op):
        """Add an op (defined anywhere, e.g. in a test file); returns it."""
        if op.name in self:
            raise SympropError(f"a layer named {op.name!r} is already registered")
        self[op.name] = op
        return op

    def remove(self, name: str) -> None:
        self.pop(name, None)
        self._derivations.pop(name, None)

    def derive(self, name: str) -> Derivation:
        if name not in self._derivations:
            self._derivations[name] = self.get_layer(name).derive()
        return self._derivations[name]


# ---------------------------------------------------------------------------------------
# THE REGISTRY. One definition per layer; everything else (derivations, transcripts,
# kernels, tests) follows from it. To add an elementwise activation, add one Elementwise line.
# ---------------------------------------------------------------------------------------
REGISTRY = Registry([
    Elementwise("add", "x + y", "addition node: passes the upstream gradient to both inputs",
                inputs=("x", "y"), output="out"),
    Elementwise("mul", "x * y", "multiplication node: each input gets the upstream times the other",
                inputs=("x", "y"), output="out"),
    Elementwise("identity", "x", "no activation"),
    Elementwise("relu", "max(0, x)", "rectified linear unit"),
    Elementwise("sigmoid", "1/(1 + exp(-x))", "logistic sigmoid"),
    Elementwise("tanh", "tanh(x)", "hyperbolic tangent"),
    Affine("affine", "fully connected layer Y = X W + b, one bias per output"),
    Affine("affine-shared-bias", "fully connected layer Y = X W + c, one bias shared by all outputs "
           "(the seeds' worked example)", shared_bias=True),
    Softmax("softmax", "softmax over each row"),
    SoftmaxCrossEntropy("softmax-cross-entropy", "softmax then cross-entropy with one-hot targets, "
                        "mean over the batch"),
    ElementwiseLoss("squared-error", "(y - t)**2 / 2", "1/2 sum of squared errors (the seeds' E)",
                    reduction="sum"),
    ElementwiseLoss("mse", "(y - t)**2", "mean squared error over all elements", reduction="mean"),
    ElementwiseLoss("binary-cross-entropy", "-t*log(sigmoid(z)) - (1 - t)*log(1 - sigmoid(z))",
                    "sigmoid then binary cross-entropy, mean over the batch (takes logits z)",
                    reduction="batch-mean", prediction="z", applies="sigmoid"),
])


def formula_layer(formula: str, name: str | None = None) -> Elementwise:
    """An elementwise activation from a user's formula in x (checked by parse_formula).
    Whitespace runs become one space, so the name is one line wherever it is printed."""
    formula = " ".join(formula.split()) if isinstance(formula, str) else formula
    layer = Elementwise(name or f"formula({formula})", formula, "user formula activation")
    layer.expr  # parse now, so a bad formula fails here with its message
    return layer
