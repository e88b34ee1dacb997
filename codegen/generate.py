"""What ``symprop generate`` writes: the per-layer module and the built-in networks (and, with
``--graph FILE``, a graph file's module, ``graph_kernels.graph_module_text``)."""
from __future__ import annotations

from pathlib import Path

from symprop.symbolic.layers import REGISTRY

from . import files
from .layer_kernels import layers_module_body
from .network import BUILTIN_NETWORKS, network_module_text


def layers_module_text() -> str:
    body, names = layers_module_body()
    head = files.header(
        "Forward and backward kernels of every registered layer.",
        "codegen/layer_kernels.py", files.REGENERATE_COMMAND,
        [f"layers {', '.join(names)}"],
        files.inputs_hash("layers", *(repr(REGISTRY[name]) for name in names)), body)
    return head + body


def expected_files(directory: Path = files.GENERATED) -> dict[Path, str]:
    """Every generated file and its text, as the generator would write it now."""
    directory = Path(directory)
    expected = {directory / "layers.py": layers_module_text()}
    for name, spec in BUILTIN_NETWORKS.items():
        expected[directory / f"net_{name}.py"] = network_module_text(spec, name)
    expected[directory / "__init__.py"] = INIT_TEXT
    return expected


INIT_TEXT = '''"""Kernels written by symprop's code generator. Do not edit: run `symprop generate`.

layers.py holds <layer>_forward / <layer>_backward for every registered layer whose kernels
its arrays can size (a recurrent layer's steps come from its spec, so it
is compiled inside networks only); net_<name>.py holds the fused network kernels of the
built-in networks (see codegen/network.py): three MLPs, and the networks of the sequence
worked examples, whose loss_and_grads_kernel is a whole step back through time
(net_rnn_three_steps.py, net_lstm_two_steps.py, net_gru_two_steps.py) or back through an
attention head's softmax (net_attention_four_tokens.py), each gradient line commented with
the partial derivative it computes.
"""
'''


def generate(directory: Path = files.GENERATED) -> list[Path]:
    """Write all generated files; return those that changed."""
    return [path for path, text in expected_files(directory).items() if files.write_if_changed(path, text)]


def check(directory: Path = files.GENERATED):
    """[(path, diff)] for generated files that differ from what the generator writes now."""
    expected = expected_files(directory)
    return files.stale_files(expected, directory)
