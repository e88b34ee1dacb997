"""A warm start: a spec loaded once by this generator is loaded again without SymPy
(training/warm.py), and any doubt about the receipt means the usual way."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest

from symprop.symbolic.graph import parse_net
from symprop.symbolic.layers import REGISTRY, Elementwise
from symprop.training import warm
from symprop.training.threads import step_matrix_flop
from symprop.training.train import load_net

BUILTIN = "affine(2,1) binary-cross-entropy"  # moons' net: a module in generated/
CACHED = "affine(3,2) tanh affine(2,2) softmax-cross-entropy"  # generated into the cache

# A fresh process loads a spec the way `symprop train` does and says what it imported.
LOAD = """
import json, sys
from symprop.training.train import load_net
net = load_net(sys.argv[1])
print(json.dumps({"file": net.__file__, "spec": net.SPEC, "sympy": "sympy" in sys.modules}))
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMPROP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _load_in_fresh_process(spec: str, cache) -> dict:
    env = {**os.environ, "SYMPROP_CACHE": str(cache)}
    result = subprocess.run([sys.executable, "-c", LOAD, spec], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("spec", [BUILTIN, CACHED])
def test_the_second_start_imports_no_sympy_and_gets_the_same_module(spec, cache):
    first = _load_in_fresh_process(spec, cache)
    second = _load_in_fresh_process(spec, cache)
    assert first["sympy"] and not second["sympy"]
    assert second["file"] == first["file"] and second["spec"] == first["spec"]


def _receipt_file(spec):
    return warm._receipt_path(spec)


def _without_the_registry(monkeypatch):
    """This test process has imported the registry; a fresh `symprop train` has not."""
    monkeypatch.delitem(sys.modules, "symprop.symbolic.layers")


def test_the_receipt_holds_the_step_flop_the_thread_choice_needs(cache, monkeypatch):
    load_net(CACHED)
    flop, canonical = step_matrix_flop(parse_net(CACHED), 64), parse_net(CACHED).spec
    _without_the_registry(monkeypatch)
    assert warm.matrix_flop_per_row(CACHED) * 64 == flop
    assert warm.recall(CACHED).SPEC == canonical


def test_a_spec_written_another_way_leaves_the_receipt_the_thread_choice_reads(cache, monkeypatch):
    written = CACHED.replace(",", ", ")  # the module's SPEC is the canonical one, without spaces
    net = load_net(written)
    flop = step_matrix_flop(parse_net(CACHED), 1)
    _without_the_registry(monkeypatch)
    assert net.SPEC == CACHED and warm.matrix_flop_per_row(net.SPEC) == flop
    assert warm.recall(written).__file__ == net.__file__


def test_a_changed_module_is_not_recalled(cache, monkeypatch):
    net = load_net(CACHED)
    with open(net.__file__, "a", encoding="utf-8") as module:
        module.write("# edited by hand\n")
    _without_the_registry(monkeypatch)
    assert warm.recall(CACHED) is None and warm.matrix_flop_per_row(CACHED) is None


@pytest.mark.parametrize("damage", ["not json", '{"spec": 1}', ""])
def test_a_damaged_receipt_means_the_usual_way(cache, monkeypatch, damage):
    load_net(CACHED)
    _receipt_file(CACHED).write_text(damage, encoding="utf-8")
    _without_the_registry(monkeypatch)
    assert warm.recall(CACHED) is None


def test_no_receipt_is_read_while_ops_may_have_been_registered(cache):
    load_net(CACHED)
    assert _receipt_file(CACHED).exists()
    assert warm.recall(CACHED) is None  # the registry is imported in this process


def test_a_spec_with_an_op_registered_at_run_time_gets_no_receipt(cache):
    op = REGISTRY.register(Elementwise("warm_square", "x**2", "a test op"))
    try:
        spec = "affine(2,2) warm_square affine(2,1) mse"
        load_net(spec)
        assert not _receipt_file(spec).exists()
    finally:
        REGISTRY.remove(op.name)
    load_net(CACHED)
    assert _receipt_file(CACHED).exists()


def test_a_stale_builtin_module_keeps_its_warning_and_gets_no_receipt(cache, monkeypatch):
    from symprop.codegen import network

    monkeypatch.setattr(network, "network_hash", lambda graph: "0" * 16)  # as if the generator changed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_net(BUILTIN)
    assert any("is stale" in str(w.message) for w in caught)
    assert not _receipt_file(BUILTIN).exists()
