"""Timing shared by the standalone benchmark scripts; imports nothing that starts a thread pool,
so a script can still set its thread counts before numpy, numba or torch load."""
from __future__ import annotations

import time


def best_of(function, repeats):
    """The fastest of `repeats` calls, in milliseconds (the least disturbed by other jobs)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)
