"""Numbers as a learner writes them ("0.05", "1/3", "2.5e-3"), read exactly but bounded.

``sympy.Rational("1e-999999999")`` builds a billion-digit integer and never returns, and
``"1/0"`` raises ZeroDivisionError deep in SymPy. Every exact number read from a network file
or a claim goes through ``exact_number``, which refuses such text on one line first.
"""
from __future__ import annotations

import re

import sympy as sp

from .errors import SympropError

MAX_DIGITS = 60  # digits written in one number (numerator or denominator of a fraction)
MAX_EXPONENT = 400  # |e| in 1.5e-7; float64 itself ends near 1e308 and 5e-324

DECIMAL = re.compile(r"\s*[+-]?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?\s*\Z")
FRACTION = re.compile(r"\s*[+-]?(\d+)\s*/\s*(\d+)\s*\Z")


def exact_number(text: str, where: str) -> sp.Rational:
    """The exact Rational ``text`` writes; SympropError naming ``where`` if it is not a number,
    divides by zero, or is too long or too large to compute with."""
    fraction = FRACTION.match(text)
    if fraction:
        numerator, denominator = fraction.groups()
        if max(len(numerator), len(denominator)) > MAX_DIGITS:
            raise SympropError(f"{where}: {_short(text)} has more than {MAX_DIGITS} digits")
        if int(denominator) == 0:
            raise SympropError(f"{where}: {_short(text)} divides by zero")
        return sp.Rational(int(numerator), int(denominator)) * (-1 if text.strip().startswith("-") else 1)
    decimal = DECIMAL.match(text)
    if not decimal or not (decimal.group(1) or decimal.group(2)):
        raise SympropError(f"{where}: {_short(text)} is not a number")
    whole, fractional, exponent = decimal.groups()
    if len(whole) + len(fractional or "") > MAX_DIGITS:
        raise SympropError(f"{where}: {_short(text)} has more than {MAX_DIGITS} digits")
    if exponent is not None and (len(exponent.lstrip("+-")) > 4 or abs(int(exponent)) > MAX_EXPONENT):
        raise SympropError(f"{where}: the exponent of {_short(text)} is out of range "
                           f"(at most {MAX_EXPONENT} in size)")
    return sp.Rational(text.strip())


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")
