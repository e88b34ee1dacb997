"""A warm start for `symprop train`: a spec whose kernels this generator has already written is
loaded without parsing it, so the run starts without importing SymPy (half a second of CPU, half
of a warm start).

After a run has loaded its network the usual way (parse the spec, generate the module if the
cache has no current one, import it), it leaves a receipt in the cache: which module file, the
sha256 of its text, and the training step's matrix flop per row (what the BLAS thread choice
needs). The next run with the same spec string finds the receipt, checks that the module's
text is still the one it recorded, and imports it.

The receipts sit in the generator's cache folder, which is named after a hash of the sources
of symbolic/ and codegen/ and of the SymPy version, so a changed generator never reads an old
one. Only specs made of built-in ops (and formula() ops written in the spec itself) get a
receipt: an op registered at run time, say by a test, is not there in the next process.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from symprop.codegen import files

RECEIPTS = "warm"  # the receipts' folder, inside the cache folder of network modules


def _receipt_path(spec: str) -> Path:
    return files.cache_folder("networks") / RECEIPTS / f"{hashlib.sha256(spec.encode()).hexdigest()[:16]}.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _receipt(spec: str) -> dict | None:
    """The spec's receipt if its module is unchanged; None when there is none (any doubt
    means the usual way), or when ops may have been registered in this process."""
    if "symprop.symbolic.layers" in sys.modules:
        return None
    try:
        receipt = json.loads(_receipt_path(spec).read_text(encoding="utf-8"))
        path = files.ROOT / receipt["path"] if receipt["builtin"] else Path(receipt["path"])
        if receipt["spec"] != spec or _sha256(path) != receipt["sha256"]:
            return None
        float(receipt["matrix_flop_per_row"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {**receipt, "path": path}


def recall(spec: str):
    """The network module of a spec with a receipt, or None."""
    receipt = _receipt(spec)
    if receipt is None:
        return None
    path = receipt["path"]
    if receipt["builtin"]:
        import importlib
        return importlib.import_module(f"symprop.generated.{path.stem}")
    return files.import_generated(f"symprop_{path.stem}", path)


def matrix_flop_per_row(spec: str) -> float | None:
    """The training step's matrix flop per batch row, from the spec's receipt, or None."""
    receipt = _receipt(spec)
    return None if receipt is None else float(receipt["matrix_flop_per_row"])


def remember(spec: str, net) -> None:
    """Leave the receipt for a spec whose module was just loaded the usual way, if the spec
    uses only built-in ops and its module is current (a stale built-in keeps its warning)."""
    from symprop.codegen.network import network_hash, network_path
    from symprop.symbolic.graph import parse_net
    from symprop.symbolic.layers import REGISTRY
    from symprop.training.threads import step_matrix_flop

    graph = parse_net(spec)
    if not all(REGISTRY.is_builtin(node.op) or node.op.name not in REGISTRY for node in graph.nodes):
        return
    path, builtin = network_path(graph.spec)
    if Path(getattr(net, "__file__", "")) != path or not files.is_current(path, network_hash(graph)):
        return
    receipt = {"builtin": builtin is not None,
               "path": path.relative_to(files.ROOT).as_posix() if builtin is not None else str(path),
               "sha256": _sha256(path), "matrix_flop_per_row": step_matrix_flop(graph, 1)}
    # under the spec as written and as the module names it (net.SPEC, which the thread choice reads)
    for name in dict.fromkeys((spec, graph.spec)):
        try:
            files.write_if_changed(_receipt_path(name), json.dumps({"spec": name, **receipt}, indent=1) + "\n")
        except OSError:  # a read-only cache: every start is then the usual one
            return
