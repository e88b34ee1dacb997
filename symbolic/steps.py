"""Optimisers as formulas: each update rule written once, in SymPy, with its state.

A rule is a short list of assignments applied, in order, to every element of every parameter.
They are written in terms of

- ``p``, the parameter, and ``g``, its gradient dL/dp;
- the rule's state tensors (one per parameter, of its shape: momentum's velocity ``v``,
  Adam's moment estimates ``m`` and ``v``), which start at the values the rule gives;
- the hyper-parameters (``lr``, ``momentum``, ``beta1`` ...), with torch.optim's defaults;
- ``t``, for a rule that counts steps (Adam's bias correction): the number of steps taken,
  this one included, so 1 on the first step. One count serves every parameter.

Every rule starts with the same line of L2 weight decay, ``g <- g + weight_decay*p``, as
torch.optim's ``weight_decay`` adds it to the gradient (with the default 0 it changes nothing).
Each later line reads the *new* value of an earlier target: momentum's ``p <- p - lr*v``
uses the velocity just updated, as torch.optim's own code does. The conventions are
torch.optim's exactly (see each rule's ``torch`` text and ``tests/test_optimisers.py``, which
compares 10-step trajectories with torch.optim in float64).

Nothing here is derived: an update rule is a definition, not a derivative. The code generator
(``codegen/network.py``) prints each rule's fused training step from ``element_updates()``,
the same lines written in the old values only; the network transcript
(``symbolic/network_transcript.py``) shows ``lines`` one by one, with numbers.
"""
from __future__ import annotations

import functools
import math
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .errors import SympropError

if TYPE_CHECKING:
    import sympy

SYMBOL_NAMES = "p g t weight_decay momentum alpha beta1 beta2 eps lr v s m m_hat v_hat"


@functools.cache
def symbols() -> types.SimpleNamespace:
    """The rules' SymPy symbols (``sym.p``, ``sym.g``, ``sym.lr`` ...) and ``sym.sqrt``, made on first
    use: a training run whose kernels are already generated reads only the rules' names and
    hyper-parameters, and starts without importing SymPy (half a second of CPU)."""
    import sympy as sp

    names = SYMBOL_NAMES.split()
    return types.SimpleNamespace(**dict(zip(names, sp.symbols(names, real=True))), sqrt=sp.sqrt)


@functools.cache
def _shared_line(name: str) -> "Line":
    s = symbols()
    if name == "WEIGHT_DECAY_LINE":
        return Line("g", s.g + s.weight_decay * s.p, "gradient", "L2 weight decay: weight_decay * p added to the gradient")
    return Line("t", s.t + 1, "count", "the step count, shared by every parameter")


def __getattr__(name: str):
    """``p``, ``g``, ``t`` and the lines every rule shares (``WEIGHT_DECAY_LINE``,
    ``STEP_COUNT_LINE``): SymPy objects, made on first use (see ``symbols``)."""
    if name in ("p", "g", "t"):
        return getattr(symbols(), name)
    if name in ("WEIGHT_DECAY_LINE", "STEP_COUNT_LINE"):
        return _shared_line(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class HyperParameter:
    """A hyper-parameter: its name in code and on the command line (--beta1), torch.optim's
    default, and the interval it must lie in (``closed``: whether each end belongs to it)."""

    name: str
    default: float
    low: float
    high: float
    closed: tuple[bool, bool]
    description: str
    text: str  # how a transcript writes it
    latex: str

    @property
    def symbol(self):
        return getattr(symbols(), self.name)

    def interval(self) -> str:
        def end(v):
            return "inf" if v == math.inf else f"{v:g}"
        return f"{'[' if self.closed[0] else '('}{end(self.low)}, {end(self.high)}{']' if self.closed[1] else ')'}"

    def contains(self, value: float) -> bool:
        above = value >= self.low if self.closed[0] else value > self.low
        below = value <= self.high if self.closed[1] else value < self.high
        return math.isfinite(value) and above and below


@dataclass(frozen=True)
class Line:
    """target <- formula. ``kind``: "gradient" (weight decay), "state", "intermediate" (a
    named value such as Adam's bias-corrected m_hat, kept nowhere) or "param"."""

    target: str
    formula: "sympy.Expr"
    kind: str
    note: str


@dataclass(frozen=True)
class UpdateRule:
    name: str
    summary: str
    torch: str  # the torch.optim call this rule equals
    hyper: tuple[HyperParameter, ...]
    state: tuple[tuple[str, int], ...]  # (state tensor, its initial value)
    body: Callable[[types.SimpleNamespace], tuple[Line, ...]]  # symbols() -> the lines after weight decay
    counts_steps: bool = False  # t <- t + 1 once per step, before the lines

    @property
    def lines(self) -> tuple[Line, ...]:
        return (_shared_line("WEIGHT_DECAY_LINE"), *self.body(symbols()))

    @property
    def hyper_names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hyper)

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.state)

    def hyper_parameter(self, name: str) -> HyperParameter:
        return next(h for h in self.hyper if h.name == name)

    def element_updates(self) -> list[tuple[Line, "sympy.Expr"]]:
        """(line, formula in the old values of p, g and the state) for every state tensor and
        the parameter, in order: the lines with every earlier new value substituted, which
        is how a kernel can read all old values first and then write all new ones."""
        import sympy as sp

        new = {}
        updates = []
        for line in self.lines:
            value = line.formula.xreplace(new)
            new[sp.Symbol(line.target, real=True)] = value
            if line.kind in ("state", "param"):
                updates.append((line, value))
        return updates

    def check(self, values: dict, where: str = "") -> dict[str, float]:
        """Every hyper-parameter as a float: ``values`` (name -> number) over the defaults.
        An unknown name or a value outside its interval is a SympropError naming it."""
        prefix = f"{where}: " if where else ""
        for name in values:
            if name not in self.hyper_names:
                raise SympropError(f"{prefix}optimizer {self.name} has no hyper-parameter {name!r} "
                                   f"(it takes {', '.join(self.hyper_names)})")
        checked = {}
        for h in self.hyper:
            value = values.get(h.name, h.default)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SympropError(f"{prefix}{h.name} must be a number, got {value!r}")
            if not h.contains(float(value)):
                raise SympropError(f"{prefix}{h.name} must be in {h.interval()} ({h.description}), got {value!r}")
            checked[h.name] = float(value)
        return checked


def _hyper(name, default, low, high, closed, description, text, latex):
    return HyperParameter(name, default, low, high, closed, description, text, latex)


def learning_rate(default):
    return _hyper("lr", default, 0.0, math.inf, (False, False), "the learning rate", "lr", r"\eta")


WEIGHT_DECAY = _hyper("weight_decay", 0.0, 0.0, math.inf, (True, False),
                      "L2 weight decay, added to the gradient", "λ", r"\lambda")
EPS_NOTE = "added to the square root in the denominator"


MOMENTUM = _hyper("momentum", 0.9, 0.0, 1.0, (True, False),
                  "the velocity's decay; torch.optim.SGD's default 0 is plain SGD", "μ", r"\mu")

RULES_LIST = (
    UpdateRule(
        "sgd", "gradient descent: p <- p - lr*g", "torch.optim.SGD(params, lr, weight_decay=weight_decay)",
        (learning_rate(1e-3), WEIGHT_DECAY), (),
        lambda sym: (Line("p", sym.p - sym.lr * sym.g, "param", "gradient descent"),)),
    UpdateRule(
        "momentum", "heavy-ball momentum: v <- momentum*v + g, p <- p - lr*v",
        "torch.optim.SGD(params, lr, momentum, weight_decay=weight_decay)",
        (learning_rate(1e-3), MOMENTUM, WEIGHT_DECAY), (("v", 0),),
        lambda sym: (Line("v", sym.momentum * sym.v + sym.g, "state", "velocity: the decayed sum of past gradients"),
                     Line("p", sym.p - sym.lr * sym.v, "param", "a step along the velocity"))),
    UpdateRule(
        "nesterov", "Nesterov momentum: v <- momentum*v + g, p <- p - lr*(g + momentum*v)",
        "torch.optim.SGD(params, lr, momentum, weight_decay=weight_decay, nesterov=True)",
        (learning_rate(1e-3), MOMENTUM, WEIGHT_DECAY), (("v", 0),),
        lambda sym: (Line("v", sym.momentum * sym.v + sym.g, "state", "velocity: the decayed sum of past gradients"),
                     Line("p", sym.p - sym.lr * (sym.g + sym.momentum * sym.v), "param",
                          "a step along the gradient plus the looked-ahead velocity"))),
    UpdateRule(
        "adagrad", "AdaGrad: s <- s + g^2, p <- p - lr*g/(sqrt(s) + eps)",
        "torch.optim.Adagrad(params, lr, eps=eps, weight_decay=weight_decay)",
        (learning_rate(1e-2), _hyper("eps", 1e-10, 0.0, math.inf, (True, False), EPS_NOTE, "ε", r"\varepsilon"),
         WEIGHT_DECAY), (("s", 0),),
        lambda sym: (Line("s", sym.s + sym.g**2, "state", "the sum of the squared gradients so far"),
                     Line("p", sym.p - sym.lr * sym.g / (sym.sqrt(sym.s) + sym.eps), "param",
                          "each element's step scaled by its own history"))),
    UpdateRule(
        "rmsprop", "RMSprop: s <- alpha*s + (1 - alpha)*g^2, p <- p - lr*g/(sqrt(s) + eps)",
        "torch.optim.RMSprop(params, lr, alpha, eps, weight_decay)",
        (learning_rate(1e-2), _hyper("alpha", 0.99, 0.0, 1.0, (True, True), "the squared gradients' decay", "α", r"\alpha"),
         _hyper("eps", 1e-8, 0.0, math.inf, (True, False), EPS_NOTE, "ε", r"\varepsilon"), WEIGHT_DECAY),
        (("s", 0),),
        lambda sym: (Line("s", sym.alpha * sym.s + (1 - sym.alpha) * sym.g**2, "state", "a running average of the squared gradients"),
                     Line("p", sym.p - sym.lr * sym.g / (sym.sqrt(sym.s) + sym.eps), "param",
                          "each element's step scaled by its recent gradients"))),
    UpdateRule(
        "adam", "Adam: moment estimates m and v with bias correction",
        "torch.optim.Adam(params, lr, betas=(beta1, beta2), eps, weight_decay)",
        (learning_rate(1e-3),
         _hyper("beta1", 0.9, 0.0, 1.0, (True, False), "the first moment's decay", "β1", r"\beta_1"),
         _hyper("beta2", 0.999, 0.0, 1.0, (True, False), "the second moment's decay", "β2", r"\beta_2"),
         _hyper("eps", 1e-8, 0.0, math.inf, (True, False), EPS_NOTE, "ε", r"\varepsilon"), WEIGHT_DECAY),
        (("m", 0), ("v", 0)),
        lambda sym: (Line("m", sym.beta1 * sym.m + (1 - sym.beta1) * sym.g, "state", "first moment: a running average of the gradients"),
                     Line("v", sym.beta2 * sym.v + (1 - sym.beta2) * sym.g**2, "state",
                          "second moment: a running average of the squared gradients"),
                     Line("m_hat", sym.m / (1 - sym.beta1**sym.t), "intermediate", "bias correction of m (both moments start at 0)"),
                     Line("v_hat", sym.v / (1 - sym.beta2**sym.t), "intermediate", "bias correction of v"),
                     Line("p", sym.p - sym.lr * sym.m_hat / (sym.sqrt(sym.v_hat) + sym.eps), "param", "the Adam step")),
        counts_steps=True),
)
RULES = {rule.name: rule for rule in RULES_LIST}


def rule_named(name: str, where: str = "--optimizer") -> UpdateRule:
    """The update rule of an optimiser name; an unknown name is a SympropError."""
    if name not in RULES:
        raise SympropError(f"{where}: unknown optimizer {name!r} (known: {', '.join(RULES)})")
    return RULES[name]
