"""Parse user formula strings into SymPy without executing them.

The string is read by Python's ``ast`` parser (which only builds a syntax tree) and every node
is checked against a whitelist before a SymPy expression is built from the tree by hand.
``sympify``/``eval`` never see user text, so ``__import__('os').system(...)``, attribute
access, lambdas and comprehensions are refused with the offending token named. Size limits
(length, nodes, nesting, exponents) keep a formula from hanging SymPy.
"""
from __future__ import annotations

import ast

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from .errors import SympropError
from .magnitude import TooLarge, check_bounded
from .stable import raw_sigmoid, raw_softplus

MAX_LENGTH = 1000
MAX_NODES = 300
MAX_DEPTH = 40
MAX_EXPONENT = 64
MAX_CONSTANT = 1e12
MAX_CALL_DEPTH = 12  # nested function calls: sigmoid(sigmoid(...)) 40 deep exhausts SymPy's recursion

# name in a formula -> how to build it in SymPy (known functions as one table)
FUNCTIONS = {
    "exp": sp.exp,
    "log": sp.log,
    "ln": sp.log,
    "sqrt": sp.sqrt,
    "abs": sp.Abs,
    "tanh": sp.tanh,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "sin": sp.sin,
    "cos": sp.cos,
    "tan": sp.tan,
    "atan": sp.atan,
    "erf": sp.erf,
    "max": sp.Max,
    "min": sp.Min,
    # their own functions, not log(1 + u) and exp(u) - 1: kernels print np.log1p / np.expm1,
    # which keep full precision for tiny u (log(1 + 1e-12) in float64 is off by 9e-5)
    "log1p": log1p,
    "expm1": expm1,
    "sigmoid": raw_sigmoid,
    "softplus": raw_softplus,
    "relu": lambda u: sp.Max(0, u),
}
ARITY = {"max": 2, "min": 2}
CONSTANTS = {"pi": sp.pi, "e": sp.E}
OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}


def parse_formula(text: str, variables=("x",), where: str = "formula") -> sp.Expr:
    """Return the SymPy expression for ``text``, whose only free names are ``variables``.

    ``where`` says where the text came from (a file and field, a CLI option) for error messages.
    """
    if not isinstance(text, str):
        raise SympropError(f"{where}: a formula must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise SympropError(f"{where}: formula is {len(text)} characters long; the limit is {MAX_LENGTH}")
    # any run of whitespace (a newline, a tab) is one space: a formula is one line wherever
    # it is echoed (a generated module's header, an error message)
    text = " ".join(text.split())
    source = text.replace("^", "**")
    if not source:
        raise SympropError(f"{where}: formula is empty")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        column = exc.offset or 0
        raise SympropError(f"{where}: formula {text!r} does not parse (column {column}: {exc.msg})") from None
    except (ValueError, RecursionError, MemoryError):
        raise SympropError(f"{where}: formula {text!r} does not parse") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise SympropError(f"{where}: formula has {nodes} syntax nodes; the limit is {MAX_NODES}")
    symbols = {name: sp.Symbol(name, real=True) for name in variables}
    expr = _Builder(text, where, symbols).build(tree.body, depth=0)
    _check_size(expr, text, where)
    return expr


def _check_size(expr, text, where):
    """Refuse what SymPy built but a kernel could not hold: huge powers, numbers beyond float64."""
    for power in expr.atoms(sp.Pow):
        if power.exp.is_number and abs(power.exp) > MAX_EXPONENT:
            raise SympropError(f"{where}: exponent {power.exp} is larger than {MAX_EXPONENT} in {text!r}")
    for number in expr.atoms(sp.Number):
        if abs(number) > MAX_CONSTANT**8:
            raise SympropError(f"{where}: the number {sp.sstr(number)[:40]} is too large in {text!r}")


class _Builder:
    """Builds SymPy from a whitelisted Python syntax tree, refusing everything else."""

    def __init__(self, text, where, symbols):
        self.text, self.where, self.symbols = text, where, symbols

    def fail(self, node, message):
        column = getattr(node, "col_offset", -1) + 1
        raise SympropError(f"{self.where}: {message} at column {column} of {self.text!r}")

    def build(self, node, depth, calls=0):
        """The SymPy expression of ``node``; refuses a result that is undefined (0/0, x/0,
        log(0)) at the node that made it, so it never reaches the derivation or a kernel."""
        result = self._build(node, depth, calls)
        if result.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
            token = ast.get_source_segment(self.text.replace("^", "**"), node) or "this term"
            self.fail(node, f"{token!r} is undefined (it evaluates to {result}: a division by zero "
                            "or the log of 0)")
        if result.is_number and result.is_extended_real is False:
            token = ast.get_source_segment(self.text.replace("^", "**"), node) or "this term"
            self.fail(node, f"{token!r} is not a real number (it is {result})")
        return result

    def _build(self, node, depth, calls):
        if depth > MAX_DEPTH:
            self.fail(node, f"formula nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(node, f"{value!r} is not a number")
            if abs(value) > MAX_CONSTANT:
                self.fail(node, f"constant {value!r} is larger than {MAX_CONSTANT:g}")
            return sp.Integer(value) if isinstance(value, int) else sp.Rational(str(value))
        if isinstance(node, ast.Name):
            if node.id in self.symbols:
                return self.symbols[node.id]
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            allowed = ", ".join(sorted(self.symbols))
            self.fail(node, f"unknown name {node.id!r} (variables: {allowed}; constants: pi, e)")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.build(node.operand, depth + 1, calls)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            left = self.build(node.left, depth + 1, calls)
            right = self.build(node.right, depth + 1, calls)
            if isinstance(node.op, ast.Pow):
                self.check_exponent(node, right)
                self.check_bounded(node, sp.Pow(left, right, evaluate=False))
            return OPERATORS[type(node.op)](left, right)
        if isinstance(node, ast.Call):
            if calls >= MAX_CALL_DEPTH:
                self.fail(node, f"function calls nest deeper than {MAX_CALL_DEPTH} levels")
            return self.build_call(node, depth, calls + 1)
        token = ast.get_source_segment(self.text.replace("^", "**"), node) or type(node).__name__
        self.fail(node, f"{token!r} is not allowed in a formula (only numbers, variables, + - * / ** and "
                        f"the functions {', '.join(sorted(FUNCTIONS))})")

    def build_call(self, node, depth, calls):
        if not isinstance(node.func, ast.Name):
            token = ast.get_source_segment(self.text.replace("^", "**"), node.func) or "this call"
            self.fail(node, f"calling {token!r} is not allowed (only known functions such as exp(x))")
        name = node.func.id
        if name not in FUNCTIONS:
            self.fail(node, f"unknown function {name!r} (known: {', '.join(sorted(FUNCTIONS))})")
        if node.keywords:
            self.fail(node, f"{name}() takes no keyword arguments")
        arity = ARITY.get(name, 1)
        if len(node.args) != arity:
            self.fail(node, f"{name}() takes {arity} argument{'s' if arity > 1 else ''}, got {len(node.args)}")
        args = [self.build(arg, depth + 1, calls) for arg in node.args]
        result = FUNCTIONS[name](*args)
        self.check_bounded(node, result)
        return result

    def check_bounded(self, node, expr):
        """A number such as ((2**64)**64)**64 is refused before SymPy computes it exactly."""
        if expr.is_number:
            try:
                check_bounded(expr)
            except TooLarge as exc:
                token = ast.get_source_segment(self.text.replace("^", "**"), node) or "this term"
                self.fail(node, f"{token!r} is too large to compute exactly: {exc}")

    def check_exponent(self, node, exponent):
        if exponent.is_number:
            if abs(float(exponent)) > MAX_EXPONENT:
                self.fail(node, f"exponent {exponent} is larger than {MAX_EXPONENT}")
