"""Time budgets for SymPy work that can explode (expand, simplify, high-precision checks).

SymPy cannot be told to stop, and some formulas make it run for hours
(``((x+1)**64+1)**64`` expanded, ``exp(exp(exp(exp(x))))`` evaluated to 40 digits). A budget is
a real-time timer (``signal.setitimer``) that raises ``OutOfTime`` inside SymPy when it
expires; the caller skips that candidate or refuses the formula with a clear message. Timers
only work in the main thread; elsewhere a budget does nothing, and the size limits of
``formula.py`` and ``layers.py`` still bound the work.
"""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager


class OutOfTime(Exception):
    """A time budget ran out."""


_deadline: list[float] = []  # the deadlines of the budgets now open, innermost last


def _on_alarm(signum, frame):
    raise OutOfTime()


@contextmanager
def time_budget(seconds: float):
    """Raise OutOfTime in the body if it runs longer than ``seconds`` (or than an enclosing
    budget allows)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    now = time.monotonic()
    deadline = min([now + seconds, *_deadline])
    outer = signal.getsignal(signal.SIGALRM) if not _deadline else None
    _deadline.append(deadline)
    signal.signal(signal.SIGALRM, _on_alarm)
    try:
        if deadline <= now:
            raise OutOfTime()
        signal.setitimer(signal.ITIMER_REAL, deadline - now)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _deadline.pop()
        if _deadline:  # re-arm the enclosing budget for its remaining time
            signal.setitimer(signal.ITIMER_REAL, max(_deadline[-1] - time.monotonic(), 1e-3))
        else:
            signal.signal(signal.SIGALRM, outer if outer is not None else signal.SIG_DFL)
