"""Shared test settings: one tolerance table per dtype (as JAX's gradient tests do)."""
import os
import numpy as np
import pytest

# relative error allowed when comparing to central finite differences / exact values
TOLERANCE = {np.float64: 1e-6, np.float32: 2e-3}


@pytest.fixture(scope="session")
def run_kernel_cache(tmp_path_factory):
    """One SYMPROP_CACHE for the whole test run, not the user's ~/.cache/symprop: the
    pytest-xdist workers' temporary folders sit side by side in one folder, and this cache sits
    beside them, so a network that files on both workers compile is compiled (and its numba
    cache written) once per run, not once per worker."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "symprop-cache"


@pytest.fixture(scope="session", autouse=True)
def in_run_kernel_cache(run_kernel_cache):
    """Every test generates and compiles its networks in the run's cache (see run_kernel_cache),
    the commands it runs in subprocesses too: never in the user's, and a network that two
    files load is compiled once. A test that sets SYMPROP_CACHE itself gets its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYMPROP_CACHE", str(run_kernel_cache))
        yield


# pytest-xdist (--dist loadfile) hands each worker one file at a time, in collection order, as it
# runs short of tests; its own reorder (by number of tests) sent the slow one-test files last,
# so one worker ran them while the other sat idle. The files that take longest go first instead
# (longest first, measured on 2 cores, empty caches); the rest follow by name and are short,
# so the two workers finish together. pyproject.toml turns xdist's reorder off.
# (The tutorial comes some files after test_training.py: its training runs then load the
# digits and moons kernels that file compiled into the run's cache.)
SLOW_FILES_FIRST = ("test_networks.py", "test_attention.py", "test_gated.py", "test_training.py",
                    "test_conv.py", "test_core_install.py", "test_docs.py", "test_docs_tutorial.py",
                    "test_reliability_round3.py", "test_bench.py", "test_kernels.py", "test_large_batch.py",
                    "test_norm.py", "test_embedding.py", "test_recurrent.py")


def pytest_collection_modifyitems(items):
    rank = {name: place for place, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)


# The suite's property and fuzz tests draw the same examples on every run (derandomize): a
# landing must not depend on the luck of the draw. A long fuzz run (SYMPROP_FUZZ_EXAMPLES=N)
# draws new ones each time, to find what the fixed draw does not.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("suite", derandomize=True)
_hypothesis_settings.register_profile("explore", derandomize=False)
_hypothesis_settings.load_profile("explore" if os.environ.get("SYMPROP_FUZZ_EXAMPLES") else "suite")
