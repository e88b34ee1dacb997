"""A formula run as a float32 or float64 program runs it: one IEEE operation at a time, in the
order and grouping the formula is written, with the backward pass of reverse-mode autodiff.

SymPy reorders ``w1 * x * x + w2 * x + b`` into ``b + w1*x**2 + w2*x`` and simplifies
``1/((x + y) - x)`` to ``1/y`` before any number is rounded; a learner's program (numpy,
PyTorch) does neither, so its float32 numbers differ. Here the formula's text is read again
(by ``ast`` only: ``parse_formula`` has already checked it against the whitelist) into a short
list of operations, which ``run`` evaluates in numpy scalars of the chosen type: ``exp(100)``
is ``inf`` in float32, as in the program and the generated kernel. ``backward`` pushes an
upstream gradient through the same operations last to first, with each operation's own
derivative (PyTorch's formulas), so a gradient is the one autograd prints.
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass

import numpy as np

TYPES = {"float32": np.float32, "float64": np.float64}


@dataclass(frozen=True)
class Op:
    kind: str  # "const", "var", "+", "-", "*", "/", "**", "neg", or a function name
    args: tuple[int, ...] = ()  # positions of earlier operations
    value: object = None  # const: the number; var: the name


class Program:
    """One formula as a list of operations (each reads earlier ones), ready to run in a dtype."""

    def __init__(self, text: str, dtype: str = "float32"):
        self.real = TYPES[dtype]
        self.ops: list[Op] = []
        tree = ast.parse(" ".join(text.split()).replace("^", "**"), mode="eval")
        self._compile(tree.body)

    def _add(self, op: Op) -> int:
        self.ops.append(op)
        return len(self.ops) - 1

    def _compile(self, node) -> int:
        if isinstance(node, ast.Constant):
            return self._add(Op("const", value=node.value))
        if isinstance(node, ast.Name):
            if node.id in ("pi", "e"):
                return self._add(Op("const", value=math.pi if node.id == "pi" else math.e))
            return self._add(Op("var", value=node.id))
        if isinstance(node, ast.UnaryOp):
            inner = self._compile(node.operand)
            return inner if isinstance(node.op, ast.UAdd) else self._add(Op("neg", (inner,)))
        if isinstance(node, ast.BinOp):
            symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}[type(node.op)]
            left = self._compile(node.left)
            return self._add(Op(symbol, (left, self._compile(node.right))))
        if isinstance(node, ast.Call):
            name = "log" if node.func.id == "ln" else node.func.id
            return self._add(Op(name, tuple(self._compile(a) for a in node.args)))
        raise ValueError(f"not a formula node: {ast.dump(node)}")  # parse_formula refused it already

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(op.value for op in self.ops if op.kind == "var"))

    def run(self, values: dict) -> list:
        """Every operation's value (the last is the formula's), from name -> number."""
        r = self.real
        out = []
        with np.errstate(all="ignore"):
            for op in self.ops:
                a = [out[i] for i in op.args]
                if op.kind == "const":
                    out.append(r(op.value))
                elif op.kind == "var":
                    out.append(r(values[op.value]))
                else:
                    out.append(r(_FORWARD[op.kind](r, *a)))
        return out

    def value(self, values: dict):
        return self.run(values)[-1]

    def backward(self, values: dict, upstream=None) -> dict:
        """name -> the gradient the program's autodiff gives each variable for ``upstream``
        (1 if not given) at the output: operations last to first, contributions summed in
        the order they arrive."""
        r = self.real
        out = self.run(values)
        grads = [None] * len(self.ops)
        grads[-1] = r(1) if upstream is None else r(upstream)
        found = {}
        with np.errstate(all="ignore"):
            for i in range(len(self.ops) - 1, -1, -1):
                op, g = self.ops[i], grads[i]
                if g is None:
                    continue
                if op.kind == "var":
                    found[op.value] = r(found[op.value] + g) if op.value in found else g
                    continue
                if op.kind == "const":
                    continue
                parts = _BACKWARD[op.kind](r, g, out[i], *[out[j] for j in op.args])
                for j, part in zip(op.args, parts):
                    if part is None:
                        continue
                    part = r(part)
                    grads[j] = part if grads[j] is None else r(grads[j] + part)
        return found


def _sigmoid(r, v):
    """As the generated kernels compute it: exp only of -|v|."""
    e = np.exp(-abs(v))
    s = r(1) / (r(1) + e)
    return s if v >= 0 else e * s


def _softplus(r, v):
    return max(v, r(0)) + np.log1p(np.exp(-abs(v)))


def _erf(r, v):
    return r(math.erf(float(v))) if np.isfinite(v) else r(np.sign(v))


_FORWARD = {
    "+": lambda r, a, b: a + b, "-": lambda r, a, b: a - b, "*": lambda r, a, b: a * b,
    "/": lambda r, a, b: a / b, "**": lambda r, a, b: a * a if b == 2 else np.power(a, b),
    "neg": lambda r, a: -a,
    "exp": lambda r, a: np.exp(a), "log": lambda r, a: np.log(a), "sqrt": lambda r, a: np.sqrt(a),
    "abs": lambda r, a: abs(a), "tanh": lambda r, a: np.tanh(a), "sinh": lambda r, a: np.sinh(a),
    "cosh": lambda r, a: np.cosh(a), "sin": lambda r, a: np.sin(a), "cos": lambda r, a: np.cos(a),
    "tan": lambda r, a: np.tan(a), "atan": lambda r, a: np.arctan(a), "erf": _erf,
    "max": lambda r, a, b: b if b > a else a, "min": lambda r, a, b: b if b < a else a,
    "log1p": lambda r, a: np.log1p(a), "expm1": lambda r, a: np.expm1(a),
    "sigmoid": _sigmoid, "softplus": _softplus, "relu": lambda r, a: a if a > 0 else r(0),
}

# operation -> (g, its output, its inputs) -> each input's share of g (None: no gradient)
_BACKWARD = {
    "+": lambda r, g, y, a, b: (g, g),
    "-": lambda r, g, y, a, b: (g, -g),
    "*": lambda r, g, y, a, b: (g * b, g * a),
    "/": lambda r, g, y, a, b: (g / b, -g * a / (b * b)),
    "**": lambda r, g, y, a, b: (g * (b * (a if b == 2 else np.power(a, b - r(1)))),
                                 g * y * np.log(a) if a > 0 else None),
    "neg": lambda r, g, y, a: (-g,),
    "exp": lambda r, g, y, a: (g * y,),
    "log": lambda r, g, y, a: (g / a,),
    "sqrt": lambda r, g, y, a: (g / (r(2) * y),),
    "abs": lambda r, g, y, a: (g * r(np.sign(a)),),
    "tanh": lambda r, g, y, a: (g * (r(1) - y * y),),
    "sinh": lambda r, g, y, a: (g * np.cosh(a),),
    "cosh": lambda r, g, y, a: (g * np.sinh(a),),
    "sin": lambda r, g, y, a: (g * np.cos(a),),
    "cos": lambda r, g, y, a: (g * -np.sin(a),),
    "tan": lambda r, g, y, a: (g * (r(1) + y * y),),
    "atan": lambda r, g, y, a: (g / (r(1) + a * a),),
    "erf": lambda r, g, y, a: (g * (r(2 / math.sqrt(math.pi)) * np.exp(-(a * a))),),
    # the branch the comparison written takes; at a tie the first argument (relu'(0) = 0)
    "max": lambda r, g, y, a, b: (None, g) if b > a else (g, None),
    "min": lambda r, g, y, a, b: (None, g) if b < a else (g, None),
    "log1p": lambda r, g, y, a: (g / (r(1) + a),),
    "expm1": lambda r, g, y, a: (g * (y + r(1)),),
    "sigmoid": lambda r, g, y, a: (g * (r(1) - y) * y,),
    "softplus": lambda r, g, y, a: (g * _sigmoid(r, a),),
    "relu": lambda r, g, y, a: (g if a > 0 else r(0),),
}
