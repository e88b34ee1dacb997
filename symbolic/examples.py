"""The built-in worked examples of the source articles, each under a stable name.

All are data: graph files shipped in ``symbolic/graphs/`` (the seed examples nested-neurons,
add-mul-nodes, linear-model, quadratic-model, and the lecture-note circuits), network files
in ``symbolic/networks/`` (the seed-001 2-2-2 network, the same network trained by one Adam
step, and Matt Mazur's classic 2-2-2 example) and net files in ``symbolic/nets/`` (a net spec
with its numbers, worked by the any-spec transcript: the layer examples relu-layer,
sigmoid-layer, affine-layer and softmax-with-loss, moons-logistic, conv-maxpool). Adding a
net file there adds an example; its title, summary and seed are in the file.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from .errors import SympropError
from .graphfile import is_graph_file, parse_graph
from .graphfile_transcript import graph_file_transcript, graph_transcript
from .netfile import NetFile, is_net_file, load_net_file, net_file_transcript, parse_net_file
from .networkfile import load_network, parse_network
from .network_transcript import network_transcript
from .transcript import Transcript


@dataclass(frozen=True)
class Example:
    name: str
    summary: str
    build: Callable[[], Transcript]
    seed: str
    # For a loss averaged over a batch: the same example with the loss summed over the batch,
    # a convention the hand-calculation checker tries when a learner's numbers disagree.
    build_batch_sum: Callable[[], Transcript] | None = None
    # Samples in the batch (the N of a 1/N), for the checker's "off by a factor of N" diagnosis.
    batch_size: int = 1


# --- the registry of examples --------------------------------------------------------------

def _graph_example(file_name: str, name: str) -> Callable[[], Transcript]:
    def build():
        text = resources.files(__package__).joinpath("graphs", file_name).read_text(encoding="utf-8")
        return graph_transcript(parse_graph(text, file_name), name)
    return build


# the shipped graph files (symbolic/graphs/): name, seed, summary
GRAPH_FILES = [
    ("nested-neurons", "002", "f = (a + b) * c: add and mul nodes, one gradient-ascent step"),
    ("add-mul-nodes", "000", "backward through addition and multiplication nodes (dout = 3/2 into each)"),
    ("add-node", "000", "the addition node alone: passes dout through"),
    ("mul-node", "000", "the multiplication node alone: swaps its inputs"),
    ("linear-model", "003", "y_hat = w x, per-sample SGD for 100 epochs (table of epochs), prediction at x = 4"),
    ("quadratic-model", "003", "y_hat = w1 x^2 + w2 x + b: prediction 21 at x = 4, then SGD"),
    ("linear-model-float32", "003", "linear-model computed in float32, as a PyTorch program prints it"),
    ("add-mul-circuit", "(CS231n)", "f = (x + y) z: an add gate feeds a multiply gate"),
    ("sigmoid-neuron-gates", "(CS231n)", "a 2-D sigmoid neuron drawn gate by gate"),
    ("max-circuit", "(CS231n)", "f = 2 (x y + max(z, w)): add, multiply and max gates"),
    ("staged-sigmoid-ratio", "(CS231n)", "f = (x + sigmoid(y)) / (sigmoid(x) + (x + y)^2), staged; x feeds three nodes"),
    ("apples-oranges", "(Saito)", "the apples-and-oranges shopping graph with consumption tax"),
    ("batchnorm-staged", "(CS231n)", "batch norm of 3 samples x 2 features staged: mean, variance, s, xhat, y"),
]


def _network_example(file_name: str, name: str) -> Callable[[], Transcript]:
    def build():
        text = resources.files(__package__).joinpath("networks", file_name).read_text(encoding="utf-8")
        return network_transcript(parse_network(text, file_name), name)
    return build


def _net_example(net: NetFile, name: str, batch_sum: bool = False) -> Callable[[], Transcript]:
    return lambda: net_file_transcript(net, name, batch_sum)


def _net_files() -> dict[str, NetFile]:
    """The shipped net files (symbolic/nets/), by name, ordered by seed then name."""
    folder = resources.files(__package__).joinpath("nets")
    nets = {entry.name.removesuffix(".toml"): parse_net_file(entry.read_text(encoding="utf-8"), entry.name)
            for entry in folder.iterdir() if entry.name.endswith(".toml")}
    return dict(sorted(nets.items(), key=lambda item: (item[1].seed, item[0])))


NET_FILES = _net_files()


def _net_examples(seeds_in_brackets: bool) -> list[Example]:
    return [Example(name, net.summary, _net_example(net, name), net.seed,
                    _net_example(net, name, batch_sum=True) if net.averages_over_batch else None, net.batch_size)
            for name, net in NET_FILES.items() if net.seed.startswith("(") == seeds_in_brackets]


EXAMPLES = {e.name: e for e in [
    *[Example(name, summary, _graph_example(f"{name}.toml", name), seed)
      for name, seed, summary in GRAPH_FILES if not seed.startswith("(")],
    Example("two-layer-sigmoid", "the 2-2-2 sigmoid network with shared biases, one gradient-descent step",
            _network_example("two-layer-sigmoid.toml", "two-layer-sigmoid"), "001"),
    Example("mazur-2-2-2", "Matt Mazur's step-by-step backpropagation example (biases kept fixed)",
            _network_example("mazur-2-2-2.toml", "mazur-2-2-2"), "(Mazur 2015)"),
    Example("two-layer-sigmoid-adam", "the 2-2-2 sigmoid network of two-layer-sigmoid, one Adam step",
            _network_example("two-layer-sigmoid-adam.toml", "two-layer-sigmoid-adam"), "001"),
    *_net_examples(seeds_in_brackets=False),
    *[Example(name, summary, _graph_example(f"{name}.toml", name), seed)
      for name, seed, summary in GRAPH_FILES if seed.startswith("(")],
    *_net_examples(seeds_in_brackets=True),
]}


def get_transcript(name_or_file: str) -> Transcript:
    """A built-in example by name, or the transcript of a network, graph or net file (a path
    ending in .toml; a graph file has a [nodes] table, a net file a net = "SPEC" line)."""
    if name_or_file in EXAMPLES:
        return EXAMPLES[name_or_file].build()
    if is_graph_file(name_or_file):
        return graph_file_transcript(name_or_file)
    if is_net_file(name_or_file):
        return net_file_transcript(load_net_file(name_or_file))
    if name_or_file.endswith(".toml") or Path(name_or_file).exists():
        net = load_network(name_or_file)
        return network_transcript(net, Path(name_or_file).stem)
    close = difflib.get_close_matches(name_or_file, EXAMPLES, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise SympropError(f"no example named {name_or_file!r}{hint}; known examples: {', '.join(EXAMPLES)}; "
                       "or give a network, graph or net file ending in .toml")


def builtin_network(name: str):
    """The Network of a built-in network example (for tests and the checker)."""
    file_name = {"two-layer-sigmoid": "two-layer-sigmoid.toml", "mazur-2-2-2": "mazur-2-2-2.toml",
                 "two-layer-sigmoid-adam": "two-layer-sigmoid-adam.toml"}[name]
    text = resources.files(__package__).joinpath("networks", file_name).read_text(encoding="utf-8")
    return parse_network(text, file_name)


def builtin_graph(name: str):
    """The GraphFile of a built-in graph example, or None (for the checker's conventions)."""
    if name not in {n for n, _, _ in GRAPH_FILES}:
        return None
    text = resources.files(__package__).joinpath("graphs", f"{name}.toml").read_text(encoding="utf-8")
    return parse_graph(text, f"{name}.toml")
