"""Net files: a worked example written as data, a net spec and the numbers to work it with.

A net file (format in README.md, "Net files"; the built-in ones are ``symbolic/nets/*.toml``)
holds ``title``, ``summary``, ``seed``, optionally ``description`` and the Chinese
``title_zh``/``description_zh``, ``net = "SPEC"`` and a ``[values]`` table in the format of a
values file (``symprop example show --net SPEC --values FILE``): X, T, the parameters W1, b1,
..., an optional learning_rate. Its transcript is the any-spec transcript
(``graph_transcript.py``); ``forward_after_step = true`` adds the forward pass with the
updated parameters (the new loss ``L_new``); ``[notes]`` put a teacher's remark beside a
line of it.

A spec may end without a loss (a layer alone, ``net = "relu"``): then the values give
``dout``, the upstream gradient of the last value, and the transcript works back from it.
Where no layer fixes the input width (``relu``, ``softmax-cross-entropy``) X's columns do.
This is for transcripts only: codegen and training call ``parse_net`` without the opt-in.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import SympropError
from .graph import Graph, parse_net
from .graph_transcript import ends_with_loss, graph_transcript
from .large_batch import check_batch
from .layers import N
from .networkfile import _Where
from .graphfile import notes_table
from .transcript import Transcript, attach_notes, tr
from .userfiles import is_toml_with, parse_toml, read_text

TOP_LEVEL = {"title", "summary", "seed", "description", "title_zh", "description_zh", "net", "values",
             "forward_after_step", "notes", "notes_zh"}


@dataclass(frozen=True)
class NetFile:
    """A net spec with its numbers and the words around them, as a net file gives them."""

    source: str
    title: str
    summary: str
    seed: str
    spec: str
    graph: Graph
    values: dict  # the [values] table as written (check_batch reads it)
    value_lines: dict[str, int] = field(default_factory=dict)  # field -> line, for messages
    description: str = ""
    title_zh: str = ""
    description_zh: str = ""
    notes: dict[str, str] = field(default_factory=dict)  # transcript key -> remark
    notes_zh: dict[str, str] = field(default_factory=dict)
    note_lines: dict[str, int] = field(default_factory=dict)
    forward_after_step: bool = False  # the forward pass again with the new parameters (z1_new, L_new)

    @property
    def batch_size(self) -> int:
        """The rows of X: the N of a loss averaged over the batch."""
        return len(self.values["X"])

    @property
    def averages_over_batch(self) -> bool:
        """Whether the loss divides by the batch size N, so that summing instead is a convention
        a learner may have followed: an elementwise loss says so by its ``loss_scale`` (1, 1/N
        or 1/(N K)); the row-wise losses (softmax-cross-entropy, the hinge) are the mean of
        their rows' losses, as the transcript writes them."""
        if not ends_with_loss(self.graph) or self.batch_size < 2:
            return False
        scale = getattr(self.graph.nodes[-1].op, "loss_scale", None)
        return scale is None or scale.has(N)


def is_net_file(path) -> bool:
    """Whether path names a net file (a top-level ``net = "..."`` line)."""
    return is_toml_with(path, r"^\s*net\s*=", "net file")


def load_net_file(path) -> NetFile:
    path = Path(path)
    return parse_net_file(read_text(path, "net file"), str(path))


def parse_net_file(text: str, source: str = "<net file>") -> NetFile:
    """Read and check a net file: errors name the file, the line and the field."""
    where = _Where(source, text)
    data = parse_toml(text, source)
    where.refuse_unknown(data, TOP_LEVEL)

    def text_field(key, default=""):
        value = data.get(key, default)
        if not isinstance(value, str):
            where.fail(f"expected text in quotes, got {type(value).__name__}", key)
        return " ".join(value.split()) if key != "net" else value

    if "net" not in data:
        raise SympropError(f'{source}: missing field \'net\' (a net spec, e.g. net = "affine(2,1) binary-cross-entropy")')
    spec = text_field("net")
    values = data.get("values")
    if not isinstance(values, dict) or not values:
        if "values" in data:
            where.fail("expected a table of values: X, T (or dout) and the parameters", section="values")
        raise SympropError(f"{source}: missing section [values] (X, T or dout, the parameters W1, b1, ..., "
                           "an optional learning_rate)")
    try:
        graph = parse_net(spec, loss_optional=True, input_width=_columns(values.get("X")))
    except SympropError as exc:
        where.fail(str(exc), "net")
    notes, notes_zh = (notes_table(data[section], where, section, example='"dL/dX[0,1]" = "relu passes nothing back"')
                       if section in data else {} for section in ("notes", "notes_zh"))
    note_lines = {key: where.line_of(key, section="notes" if key in notes else "notes_zh")
                  for key in [*notes, *notes_zh]}
    after = data.get("forward_after_step", False)
    if not isinstance(after, bool):
        where.fail(f"expected true or false, got {after!r}", "forward_after_step")
    if after and ("learning_rate" not in values or not ends_with_loss(graph)):
        where.fail("the forward pass after the step needs a loss and a learning_rate in [values]", "forward_after_step")
    value_lines = {key: where.line_of(key, section="values") for key in values}
    # checked now (X, T or dout, the parameters; the learning rate when the transcript is written),
    # so that a file with a bad table is refused on loading, before anything reads X's rows
    check_batch(graph, {k: v for k, v in values.items() if k != "learning_rate"}, source, value_lines)
    return NetFile(source, text_field("title", Path(source).stem), text_field("summary"), text_field("seed"), spec,
                   graph, values, value_lines,
                   text_field("description"), text_field("title_zh"), text_field("description_zh"),
                   notes, notes_zh, note_lines, after)


def _columns(x):
    """The columns of X written as rows of numbers (features), or None (images, or not yet
    a table: check_values says what is wrong with it)."""
    if isinstance(x, list) and x and isinstance(x[0], list) and x[0] and not isinstance(x[0][0], list):
        return len(x[0])
    return None


def net_file_transcript(net: NetFile, name: str | None = None, batch_sum: bool = False, variant=None) -> Transcript:
    """The any-spec transcript of the file's net and values, titled and annotated as the file
    says. ``batch_sum``: the loss summed over the batch instead of averaged; ``variant``: a
    convention that changes a rule (rule_conventions.py), as the lowering reads it (for the checker)."""
    t = graph_transcript(net.graph, net.values, name=name or Path(net.source).stem, where=net.source,
                         lines=net.value_lines, batch_sum=batch_sum, forward_after_step=net.forward_after_step,
                         variant=variant)
    t.title = tr(net.title, net.title_zh or net.title)
    if net.description:
        t.intro = tr(net.description, net.description_zh or net.description)
    attach_notes(t, net.source, net.notes, net.notes_zh, net.note_lines)
    return t


