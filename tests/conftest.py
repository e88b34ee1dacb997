"""Shared test settings: one tolerance table per dtype (as JAX's gradient tests do)."""
import numpy as np
import pytest

# relative error allowed when comparing to central finite differences / exact values
TOLERANCE = {np.float64: 1e-6, np.float32: 2e-3}


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)
