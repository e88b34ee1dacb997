"""The hand-calculation checker: which of a learner's numbers are right, where the first
mistake is, and which convention or rounding explains the others.

A claim names a transcript quantity (the JSON names of ``symprop example show``, or a common
notation such as out_h1, w5+, E_total, delta_o1) and the value as the learner wrote it; the
digits written set the tolerance (``0.458`` claims 0.458 +- 0.0005). All comparisons are in
exact rationals. Each verdict gets a stable code (``CODES``); for a wrong claim the checker
- says *rounding only* when the claim is the exact value rounded or cut off (and only then);
- recomputes that step from the learner's own earlier claimed values, each anywhere within
  its written precision: if that reproduces the claim, the step itself was done right and
  the mistake (or the lost digits) is upstream, and it names the input that explains it;
- rebuilds the transcript under common alternative conventions (biases updated or not,
  per-unit biases, updated output weights in hidden gradients, gradient ascent, sigmoid' at
  the net input, float32, other losses, relu'(0) = 1, rounded intermediates);
- names a slip: sign, factor 2, 1/2 or N, two swapped digits, another quantity's value.
Claims files are TOML read with ``tomllib``; nothing in them is executed.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import itertools
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sympy as sp

from .errors import SympropError
from .userfiles import parse_toml, read_text
from .examples import EXAMPLES, builtin_graph, builtin_network
from .graphfile import formula_variables, is_graph_file, load_graph
from .graphfile_transcript import graph_transcript
from .netfile import is_net_file, load_net_file, net_file_transcript
from .networkfile import load_network, loss_op
from .ops.builders import features
from .equivalence import compare, plain_formula, with_placeholders
from .formula import parse_formula
from .magnitude import TooLarge
from .graph import chain_names
from .mistakes import mistakes, replay
from .numbers import exact_number
from .rational_eval import evaluate
from .markup import md_code, md_text
from .network_transcript import Conventions, network_transcript
from .rule_conventions import (derivation_variant, has_kink, node_has_kink, node_reads_its_output, partials_variant,
                               reads_its_output)
from .transcript import (PRECISION, Text, Transcript, display_width, in_float32, read_keys, round_half_up, rounded,
                         rounding_intermediates, tr)

DECIMAL = re.compile(r"\s*[+-]?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?\s*\Z")
FRACTION = re.compile(r"\s*[+-]?\d+\s*/\s*\d+\s*\Z")


@dataclass
class Claim:
    key: str
    written: str  # exactly as the learner wrote it
    value: sp.Rational
    tolerance: sp.Rational
    where: str  # "line 7" or "argument 2", for messages
    decimals: int | None = None  # decimals written (None for fractions)
    formula: str | None = None  # a formula claimed instead of a number ("y - t"); value is then None
    entries: list | None = None  # a whole matrix claimed at once: its rows, each entry as written
    transposed_from: str | None = None  # an entry of a matrix claimed whole in the other layout: its name


@dataclass
class Verdict:
    claim: Claim
    exact: sp.Expr
    right: bool
    key: str = ""  # the transcript key the claim's name resolved to (w5+ -> w5_new)
    findings: list = field(default_factory=list)  # Finding, most certain first
    derived: str = ""  # a formula claim: the derived rule in the learner's names

    @property
    def code(self) -> str:
        """The stable diagnosis code (see CODES): "right" when nothing was found."""
        return self.findings[0].code if self.findings else "right"

    @property
    def kind(self) -> str:
        return CODES[self.code]

    @property
    def diagnoses(self) -> list[Text]:
        return [f.text for f in self.findings]


@dataclass
class Report:
    subject: str
    verdicts: list[Verdict]
    first_wrong: str | None
    problems: list[str] = field(default_factory=list)  # claims not checked (unknown names, ...)

    @property
    def all_right(self) -> bool:
        return all(v.right for v in self.verdicts)

    def _repr_markdown_(self) -> str:
        """Jupyter shows a report as its Markdown table."""
        return render_report(self, "md")


# --- reading claims --------------------------------------------------------------------------

def parse_written(text: str, where: str) -> tuple[sp.Rational, sp.Rational, int | None]:
    """(value, tolerance, decimals) from a number as written: half a unit in the last digit."""
    value = exact_number(text, where)  # bounded: "1e-999999999" and "1/0" are refused here
    if FRACTION.match(text):
        return value, sp.S.Zero, None
    match = DECIMAL.match(text)
    decimals = len(match.group(2) or "") - int(match.group(3) or 0)
    return value, sp.Rational(1, 2) * sp.Integer(10) ** (-decimals), decimals


def claim_from(key: str, written: str, where: str, tolerance=None) -> Claim:
    """A claim of a number (its tolerance from the digits written), of a whole matrix
    ("[[0.1, 0.2], [0.3, 0.4]]", row by row), or of a formula when the text is not a number
    but names something ("y - t")."""
    if written.strip().startswith("["):
        return Claim(key, " ".join(written.split()), None, tolerance, where, None,
                     entries=_matrix_rows(written, where))
    try:
        value, inferred, decimals = parse_written(written, where)
    except SympropError:
        if not re.search(r"[A-Za-z_]", written) or re.fullmatch(r"\s*[+-]?(inf|nan)\s*", written, re.I):
            raise
        text = " ".join(written.split())
        try:  # checked now, so a bad one is refused where it is written (never executed)
            syntax = with_placeholders(text)[0]
            parse_formula(syntax, tuple(formula_variables(syntax)), where)
        except SympropError as exc:
            reason = str(exc).split(": ", 1)[-1] if str(exc).startswith(where) else str(exc)
            raise SympropError(f"{where}: {text[:40]!r} is not a number, nor a formula ({reason})") from None
        return Claim(key, text, None, sp.S.Zero, where, None, text)
    return Claim(key, written.strip(), value, inferred if tolerance is None else tolerance, where, decimals)


def _matrix_rows(text: str, where: str) -> list[list[str]]:
    """The rows of a matrix as written, "[[1, 2], [3, 4]]" (or a vector, "[1, 2, 3]": one row),
    each entry checked as a number."""
    inner = text.strip()[1:-1].strip() if text.strip().endswith("]") else None
    if inner is None or not inner:
        raise SympropError(f"{where}: {text[:40]!r} is not a matrix: write [[1, 2], [3, 4]], row by row")
    if inner.startswith("["):
        rows = re.findall(r"\[([^\[\]]*)\]", inner)
        if re.sub(r"\[[^\[\]]*\]|[\s,]", "", inner):
            raise SympropError(f"{where}: {text[:40]!r} is not a matrix: write [[1, 2], [3, 4]], row by row")
    else:
        rows = [inner]
    table = [[cell.strip().strip("\"'") for cell in row.split(",") if cell.strip()] for row in rows]  # "0.50" keeps its 0
    if not all(table) or len({len(row) for row in table}) != 1:
        raise SympropError(f"{where}: the rows of {text[:40]!r} are not all of one length")
    for i, row in enumerate(table, 1):
        for j, cell in enumerate(row, 1):
            parse_written(cell, f"{where}, row {i}, column {j}")
    return table


def _raw_value_texts(lines: list[str]) -> dict[str, tuple[str, int]]:
    """key -> (its value in the [claims] section as written, its line), in one pass over the
    file (looking each key up line by line took minutes for 10^5 claims)."""
    section, found = None, {}
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        header = re.match(r"\[\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\]\Z", line)
        if header:
            section = header.group(1)
            continue
        if section != "claims":
            continue
        match = re.match(r'("([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_\-]+))\s*=\s*(.*)\Z', line)
        if not match:
            continue
        key = match.group(2) or match.group(3) or match.group(4)
        if key in found:
            continue
        value = match.group(5).strip()
        inner = re.search(r'value\s*=\s*("?)([^",}]+)\1', value)
        if value.startswith("{") and inner:
            value = inner.group(2)
        found[key] = (value.strip().strip('"\''), number)
    return found


def _tolerance(value, where) -> sp.Rational:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SympropError(f"{where}: tolerance must be a number, got {value!r}")
    tol, _, _ = parse_written(str(value), where)
    if tol < 0:
        raise SympropError(f"{where}: tolerance must not be negative")
    return tol


def _net_values(path: Path, data: dict) -> NetValues:
    """net = "SPEC" and values = "FILE.toml" (relative to the claims file), and nothing else
    that names a subject."""
    if "example" in data or "network" in data:
        raise SympropError(f"{path}: name one subject: example, network (or graph), or net with values")
    if not isinstance(data.get("net"), str) or not isinstance(data.get("values"), str):
        raise SympropError(f'{path}: net = "my-net.toml" names a net file; net = "affine(2,2) sigmoid affine(2,2) '
                           'mse" (a net spec) needs values = "my-values.toml", the file with its numbers')
    values = path.parent / data["values"]
    if not values.exists():
        raise SympropError(f"{path}: the values file {data['values']!r} does not exist")
    return NetValues(data["net"], str(values))


def _names_a_file(text: str) -> bool:
    """``net = "my-net.toml"`` names a file; ``net = "affine(2,2) sigmoid ..."`` is a spec."""
    return text.strip().endswith(".toml") and "(" not in text


def load_claims(path) -> tuple[str, list[Claim]]:
    """(subject, claims): subject is a built-in example name or a network file path."""
    path = Path(path)
    text = read_text(path, "claims file")
    data = parse_toml(text, str(path))
    lines = text.splitlines()
    unknown = set(data) - {"example", "network", "graph", "net", "values", "tolerance", "claims"}
    if unknown:
        raise SympropError(f"{path}: unknown field {sorted(unknown)[0]!r} (known: example, network, graph, "
                           "net, values, tolerance, claims)")
    if "graph" in data and "network" not in data:  # a graph file is named like a network file
        data["network"] = data.pop("graph")
    if isinstance(data.get("net"), str) and "values" not in data and "network" not in data \
            and _names_a_file(data["net"]):  # net = "my-net.toml": a net file, named like a network file
        data["network"] = data.pop("net")
    if "net" in data or "values" in data:
        subject = _net_values(path, data)
    elif ("example" in data) == ("network" in data):
        raise SympropError(f"{path}: say which example the claims are about: example = \"two-layer-sigmoid\" "
                           "(a built-in example) or network = \"my-net.toml\" (a network file)")
    if "net" in data or "values" in data:
        pass
    elif "example" in data:
        subject = data["example"]
        if not isinstance(subject, str) or subject not in EXAMPLES:
            close = difflib.get_close_matches(str(subject), EXAMPLES, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise SympropError(f"{path}: there is no built-in example {subject!r}{hint}; "
                               f"known: {', '.join(EXAMPLES)}")
    else:
        if not isinstance(data["network"], str):
            raise SympropError(f"{path}: network must be a file name")
        subject = str((path.parent / data["network"]))
        if not Path(subject).exists():
            raise SympropError(f"{path}: the network file {data['network']!r} does not exist")
    default = _tolerance(data["tolerance"], f"{path}, field 'tolerance'") if "tolerance" in data else None
    table = data.get("claims")
    if not isinstance(table, dict) or not table:
        raise SympropError(f"{path}: no [claims] section with name = value lines")
    claims = []
    raw_texts = _raw_value_texts(lines)
    for key, value in table.items():
        written, line = raw_texts.get(key, (None, None))
        where = f"{path}, line {line}" if line else f"{path}, claim {key!r}"
        tolerance = default
        if isinstance(value, dict):
            if "value" not in value or set(value) - {"value", "tolerance"}:
                raise SympropError(f"{where}: write {key} = {{ value = \"0.458\", tolerance = 0.001 }}")
            if "tolerance" in value:
                tolerance = _tolerance(value["tolerance"], where)
            value = value["value"]
        if isinstance(value, list):  # a matrix claimed at once: its digits as written, where on one line
            written = written if written and written.startswith("[") and written.endswith("]") else _array_text(value)
        elif isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise SympropError(f"{where}: claim {key!r} is not a number: {value!r}")
        elif isinstance(value, str) or written is None:
            written = value if isinstance(value, str) else repr(value)
        claims.append(claim_from(key, written, f"{where}, claim {key!r}", tolerance))
    return subject, claims


def _array_text(value) -> str:
    """A TOML array read back as text: [[1, 2], [3, 4]]."""
    if isinstance(value, list):
        return "[" + ", ".join(_array_text(v) for v in value) + "]"
    return value if isinstance(value, str) else repr(value)


def claims_from_arguments(pairs: list[str]) -> list[Claim]:
    claims = []
    for index, pair in enumerate(pairs, 1):
        if "=" not in pair:
            raise SympropError(f"argument {pair!r}: write NAME=VALUE, e.g. b11_new=0.458")
        key, written = pair.split("=", 1)
        claims.append(claim_from(key.strip(), written, f"argument {index} ({pair!r})"))
    return claims


# --- diagnosis codes -----------------------------------------------------------------------------

# Every verdict carries one of these codes (stable: scripts and tests use them, not the English).
# code -> kind, the verdict column: right | rounding | carried | precision | convention | own | given
CODES = {
    "right": "right",
    "right_float64": "right",  # 3.3000000000000003 for 3.3: the double a float64 program prints
    "rounded": "rounding",  # the exact value rounded to fewer digits than the tolerance asks for
    "truncated": "rounding",  # the exact value cut off instead of rounded
    "carried_forward": "carried",  # right for the learner's own wrong upstream values
    "carried_precision": "precision",  # right for the learner's upstream values as rounded and written
    "convention_rounded_intermediates": "convention",
    "convention_batch_sum": "convention",
    "convention_biases_not_updated": "convention",
    "convention_biases_updated": "convention",
    "convention_some_biases_fixed": "convention",  # per parameter: only some biases kept fixed
    "convention_some_biases_updated": "convention",
    "convention_per_unit_bias": "convention",
    "convention_updated_weights": "convention",
    "convention_loss_no_half": "convention",
    "convention_loss_mean": "convention",
    "convention_loss_half_sum": "convention",
    "convention_loss_sum": "convention",
    "convention_relu0": "convention",
    "convention_gradient_ascent": "convention",
    "convention_sigmoid_at_net": "convention",
    "convention_float32": "convention",
    "sign_flipped": "own",
    "digits_transposed": "own",
    "factor_2": "own",
    "factor_half": "own",
    "factor_n": "own",
    "other_quantity": "own",
    "wrong_value": "own",  # no likely cause found
    "wrong_result": "own",  # a result computed outside the formulas (training) differs
    "wrong_given": "given",  # a given value of the example, written differently
    "not_finite": "own",  # the program's value overflows (inf or nan in the file's dtype)
    "rounded_intermediate": "precision",  # an unclaimed intermediate rounded or cut off before use
    "slip_carried": "own",  # a slip in an unclaimed intermediate, carried forward
    "forgot_sigmoid_derivative": "own",  # the sigmoid's derivative left out of the chain (taken as 1)
    "softmax_jacobian_elementwise": "own",  # attention's dS = dP P (1 - P): the softmax Jacobian's diagonal only
    "forgot_attention_scale": "own",  # attention's scores (and dQ, dK) without 1/sqrt(dk)
    "attention_scores_transposed": "own",  # attention's scores K Q^T for Q K^T
    "tanh_derivative_at_preactivation": "own",  # tanh' as 1 - a^2 with the pre-activation a, not 1 - h^2
    "tanh_derivative_of_state": "own",  # tanh' evaluated at the state: 1 - tanh(h)^2
    "recurrent_state_off_by_one": "own",  # a step's dWh term with the state it produced, h_t, for the one it read, h_{t-1}
    "dropped_recurrent_path": "own",  # an earlier state's gradient without the terms back from the next step
    "dropped_direct_state_path": "own",  # an LSTM's c_{t-1} (a GRU's h_{t-1}) without the next step's direct term
    "forgot_sum_over_time": "own",  # a shared weight's gradient from the last step's contribution only
    "formula_equivalent": "right",  # a formula claimed: equivalent to the derived rule
    "formula_differs": "own",  # a formula claimed: not the derived rule
    "convention_layout": "convention",  # a matrix gradient's entry [j,i] for [i,j], or a whole matrix transposed: numerator layout
}


@dataclass
class Finding:
    code: str
    text: Text
    inputs: list[str] = field(default_factory=list)  # carried_*: the rounded inputs that explain it


# --- the subject and its alternative conventions ----------------------------------------------

@dataclass
class Variant:
    code: str
    description: Text
    transcript: Transcript
    aliases: dict[str, list[str]] = field(default_factory=dict)  # claim key -> keys in this variant
    float32: bool = False  # match claims to within a few float32 units in the last place


LOSS_VARIANTS = {
    "squared-error": [("sum-of-squares", "convention_loss_no_half", tr("squared error without the 1/2", "平方误差没有乘 1/2")),
                      ("mse", "convention_loss_mean", tr("squared error as a mean over the outputs", "平方误差对输出取平均"))],
    "mse": [("squared-error", "convention_loss_half_sum", tr("1/2 sum of squared errors instead of the mean", "用 1/2 误差平方和代替平均")),
            ("sum-of-squares", "convention_loss_sum", tr("sum of squared errors instead of the mean", "用误差平方和代替平均"))],
}
BATCH_SUM = tr("the loss summed over the batch instead of averaged (no 1/N)", "误差对批量求和而不是取平均（没有 1/N）")
BIASES_NOT_UPDATED = tr("biases not updated", "偏置未更新")


def _one_bias_fixed(b: str) -> Text:
    return tr(f"the bias {b} kept fixed while the other biases are updated", f"偏置 {b} 未更新，其余偏置更新了")


@dataclass(frozen=True)
class NetValues:
    """Claims about a net spec worked with the numbers of a values file (the transcript of
    ``symprop example show --net SPEC --values FILE``)."""

    spec: str
    values: str

    def __str__(self) -> str:
        return f'--net "{self.spec}" --values {self.values}'


def _graph_batch_size(graph) -> int:
    """The N of a graph's 1/N: its samples when the loss is a full-batch mean, else 1."""
    return graph.data.size if graph.full_batch else 1


class Subject:
    """What the claims are about: a built-in example or a network file, buildable under variants."""

    def __init__(self, name: str):
        self.name = name
        example = EXAMPLES.get(name)
        self.graph = None  # a graph file's GraphFile (built-in or the learner's own)
        # the subject with its loss summed over the batch instead of averaged, where it averages
        self.build_batch_sum = example.build_batch_sum if example is not None else None
        # a net spec's graph (a net file's, or with a values file), and the subject built from it
        # under a change of its rules (rule_conventions.derivation_variant) or of the graph itself
        self.spec_graph, self.build_varied = None, None
        if isinstance(name, NetValues):
            from .graph import parse_net
            from .graph_transcript import _read_values
            from .graph_transcript import graph_transcript as spec_transcript

            graph = parse_net(name.spec)  # a bad spec or values file fails here, once
            values, lines = _read_values(name.values)  # read once: a 10^5-row file takes a second to parse
            self.build_exact = lambda: spec_transcript(graph, values, name=Path(name.values).stem,
                                                       where=str(name.values), lines=lines)
            self.spec_graph = graph
            self.build_varied = lambda variant, graph=graph: spec_transcript(
                graph, values, name=Path(name.values).stem, where=str(name.values), lines=lines, variant=variant)
            self.build_exact()
            self.network, self.batch_size = None, 1
        elif example is not None:
            self.build_exact = example.build
            self.network = builtin_network(name) if name in ("two-layer-sigmoid", "mazur-2-2-2") else None
            self.graph = builtin_graph(name)
            self.batch_size = example.batch_size if self.graph is None else _graph_batch_size(self.graph)
        elif is_graph_file(name):
            self.graph, self.network = load_graph(name), None
            self.build_exact = lambda: graph_transcript(self.graph, Path(name).stem)
            self.batch_size = _graph_batch_size(self.graph)
        elif is_net_file(name):
            net_file, self.network = load_net_file(name), None
            self.build_exact = lambda: net_file_transcript(net_file)
            self.spec_graph = net_file.graph
            self.build_varied = lambda variant, graph=net_file.graph: net_file_transcript(
                dataclasses.replace(net_file, graph=graph), variant=variant)
            self.batch_size = net_file.batch_size
            if net_file.averages_over_batch:
                self.build_batch_sum = lambda: net_file_transcript(net_file, batch_sum=True)
        else:
            self.network = load_network(name)
            self.build_exact = lambda: network_transcript(self.network, Path(name).stem)
            self.batch_size = 1
        outputs = len(self.network.layers[-1].units) if self.network else 1
        self.factors_n = sorted({n for n in (self.batch_size, outputs) if n > 2})

    def training_records(self) -> list:
        """Every step's (or epoch's) record of a graph file's training, once."""
        if not hasattr(self, "_records"):
            from .graphfile_transcript import Training

            self._records = list(Training(self.graph).records())
        return self._records

    @functools.cached_property
    def _float64_transcript(self):
        graph = dataclasses.replace(self.graph, dtype="float64", dtype_written=True)
        return graph_transcript(graph, self.build_exact().name)

    def float64_program(self) -> Transcript | None:
        """The graph as a float64 program computes it (None for other subjects, or when the
        graph file already names its dtype: its transcript is then the program's)."""
        if self.graph is None or self.graph.dtype_written:
            return None
        try:
            return self._float64_transcript
        except SympropError:
            return None

    def build(self, network=None, conventions=Conventions()):
        if self.network is None:
            return self.build_exact()
        return network_transcript(network or self.network, self.name, conventions)

    def variants(self, decimals: set[int]) -> list[Variant]:
        """The subject rebuilt under every alternative convention (cached for built-in examples:
        building them is most of a check's time)."""
        if self.name in EXAMPLES:
            return _builtin_variants(self.name, frozenset(decimals))
        return self._variants(decimals)

    def _variants(self, decimals) -> list[Variant]:
        out = []
        # rounded or float32 values can make a later step incomputable (Adam's step divides by
        # the root of a second moment that rounds to 0): that convention is then no candidate
        for d in sorted(decimals)[:3]:
            with rounding_intermediates(d):
                try:
                    out.append(Variant("convention_rounded_intermediates",
                                       tr(f"every intermediate value rounded to {d} decimals before it is used",
                                          f"每个中间结果先四舍五入到 {d} 位小数再继续计算"), self.build()))
                except SympropError:
                    pass
        with in_float32():
            try:
                out.append(Variant("convention_float32", tr("the whole calculation done in float32 (e.g. PyTorch's default dtype)",
                                                            "整个计算都用 float32 完成（例如 PyTorch 的默认类型）"),
                                   self.build(), float32=True))
            except SympropError:
                pass
        # the common mistakes, found and made in the transcript itself (the same for every file kind)
        exact = self.build_exact()
        out += [Variant(m.code, m.description, m.transcript) for m in mistakes(exact)]
        graph = self.graph
        if graph is not None and graph.update is not None and (graph.update.steps > 1 or graph.data is not None):
            # the sign of every step's update flipped, for the table's values
            flipped = dataclasses.replace(graph, update=dataclasses.replace(graph.update, ascent=not graph.update.ascent))
            out.append(Variant("convention_gradient_ascent",
                               tr("gradient descent instead of ascent (the update's sign flipped)",
                                  "用了梯度下降而不是梯度上升（更新的符号反了）") if graph.update.ascent else
                               tr("gradient ascent: new = old + learning rate * gradient (the update's sign flipped)",
                                  "梯度上升：新值 = 旧值 + 学习率 × 偏导数（更新的符号反了）"),
                               graph_transcript(flipped, exact.name)))
        if graph is not None and graph.full_batch:
            out.append(Variant("convention_batch_sum", BATCH_SUM, graph_transcript(graph, exact.name, batch_sum=True)))
        if self.build_batch_sum is not None:
            out.append(Variant("convention_batch_sum", BATCH_SUM, self.build_batch_sum()))
        net = self.network
        if net is None:
            return out + self._spec_bias_variants(exact) + self._spec_loss_variants() + self._rule_variants()
        if net.update_biases:
            out.append(Variant("convention_biases_not_updated", BIASES_NOT_UPDATED,
                               self.build(dataclasses.replace(net, update_biases=False))))
        else:
            out.append(Variant("convention_biases_updated",
                               tr("biases updated, although this example keeps them fixed",
                                  "更新了偏置，而本例中偏置保持不变"),
                               self.build(dataclasses.replace(net, update_biases=True))))
        biases = [b for layer in net.layers for b in layer.bias_names]
        if len(biases) > 1:  # per parameter: one bias frozen (or, when all are fixed, one updated)
            for b in biases:
                updated = frozenset(biases) - {b} if net.update_biases else frozenset([b])
                description = (_one_bias_fixed(b) if net.update_biases else
                               tr(f"only the bias {b} updated, although this example keeps the biases fixed",
                                  f"只更新了偏置 {b}，而本例中偏置保持不变"))
                out.append(Variant("convention_some_biases_fixed" if net.update_biases else "convention_some_biases_updated",
                                   description, self.build(conventions=Conventions(updated_biases=updated))))
        if any(layer.shared_bias for layer in net.layers) and net.update_biases:
            out.append(self._per_unit_variant(net))
        k = len(net.layers[-1].units)
        for loss, code, description in LOSS_VARIANTS.get(net.loss, []):
            if {net.loss, loss} == {"squared-error", "mse"} and k == 2:
                continue  # identical for two outputs
            out.append(Variant(code, description, self.build(dataclasses.replace(net, loss=loss))))
        return out + self._rule_variants()

    def _spec_bias_variants(self, t: Transcript) -> list[Variant]:
        """A net spec's biases (each layer's b) not updated, all of them or one array, as a
        network file's biases: each b_new made b again and everything after it recomputed."""
        if self.spec_graph is None:
            return []
        biases = [names.params["b"] for names in chain_names(self.spec_graph) if "b" in names.params]
        new = {b: [key for key in t.quantities if key.partition("[")[0] == f"{b}_new"] for b in biases}
        biases = [b for b in biases if new[b]]  # a transcript without a learning rate updates nothing

        def kept(fixed):
            return replay(t, {key: sp.Symbol(key.replace("_new", "", 1)) for b in fixed for key in new[b]})
        out = [Variant("convention_biases_not_updated", BIASES_NOT_UPDATED, kept(biases))] if biases else []
        if len(biases) > 1:
            out += [Variant("convention_some_biases_fixed", _one_bias_fixed(b), kept([b])) for b in biases]
        return out

    def _spec_loss_variants(self) -> list[Variant]:
        """A net spec's squared-error or mse loss taken as the other (or as a plain sum of
        squares), as a network file's loss field is: its loss node's op replaced."""
        graph = self.spec_graph
        if graph is None or not graph.nodes[-1].op.is_loss:
            return []
        last = graph.nodes[-1]
        out = []
        for loss, code, description in LOSS_VARIANTS.get(last.op.name, []):
            if {last.op.name, loss} == {"squared-error", "mse"} and features(graph.shapes[len(graph.nodes) - 1]) == 2:
                continue  # identical for two outputs
            other = dataclasses.replace(last, op=loss_op(loss), text=loss)
            try:
                out.append(Variant(code, description, self.build_varied(
                    None, dataclasses.replace(graph, nodes=(*graph.nodes[:-1], other)))))
            except SympropError:
                pass
        return out

    def _rule_variants(self) -> list[Variant]:
        """The conventions that change a rule, relu'(0) from the right and a rule written in the
        output (sigmoid's y(1 - y), tanh's 1 - y^2) taken at the net input, offered where an op
        of the computation has a kink or such a rule, and built as a variant of the rules the
        lowering reads (rule_conventions.py): the same for a network file, a net file and a graph
        file. The ops are asked, never their names."""
        if self.network is not None:
            ops = [(layer.activation.name, has_kink(layer.activation), reads_its_output(layer.activation))
                   for layer in self.network.layers]

            def build(kink, at_net):
                return self.build(conventions=Conventions(kink_from_the_right=kink, derivative_at_net=at_net))
        elif self.spec_graph is not None:
            ops = [(node.op.name, has_kink(node.op), reads_its_output(node.op))
                   for node in self.spec_graph.nodes if not node.op.is_loss]

            def build(kink, at_net):
                return self.build_varied(derivation_variant(kink, at_net))
        elif self.graph is not None:
            ops = [(node.name, node_has_kink(node.op), node_reads_its_output(node.op)) for node in self.graph.graph.nodes]
            name = self.build_exact().name if any(kink or reads for _, kink, reads in ops) else None

            def build(kink, at_net):
                return graph_transcript(dataclasses.replace(self.graph, variant=partials_variant(kink, at_net)), name)
        else:
            return []
        out = []
        kinked = [name for name, kink, _ in ops if kink]
        at_net = list(dict.fromkeys(name for name, _, reads in ops if reads))
        try:
            if kinked:  # relu, leaky relu, a formula with max or abs: the derivative at the kink from the right
                out.append(Variant("convention_relu0", tr(f"the derivative of {kinked[0]} at its kink taken from the right "
                                                          "(relu'(0) = 1)", f"{kinked[0]} 在折点处取右导数（relu'(0) = 1）"),
                                   build(True, False)))
            if at_net:  # sigmoid, tanh: the derivative written in the output, evaluated at the net input
                names = ", ".join(at_net)
                out.append(Variant("convention_sigmoid_at_net",
                                   tr("the derivative written in the output y (sigmoid's y(1 - y), tanh's 1 - y^2) "
                                      f"taken at the net input instead of the output ({names})",
                                      f"用输出 y 表示的导数（sigmoid 的 y(1 - y)、tanh 的 1 - y^2）用了净输入而不是输出（{names}）"),
                                   build(False, True)))
        except SympropError:
            pass  # a rule changed makes a value undefined, or the batch is too large to work exactly
        return out

    def _per_unit_variant(self, net):
        layers, aliases = [], {}
        for layer in net.layers:
            if layer.shared_bias:
                b = layer.bias_names[0]
                names = [f"{b}_{j + 1}" for j in range(len(layer.units))]
                aliases[f"dE/d{b}"] = [f"dE/d{n}" for n in names]
                aliases[f"{b}_new"] = [f"{n}_new" for n in names]
                layer = dataclasses.replace(layer, biases=layer.biases * len(layer.units), bias_names=names)
            layers.append(layer)
        return Variant("convention_per_unit_bias",
                       tr("one bias per unit (each with its own unit's gradient) instead of one shared bias",
                          "把共用偏置当成每个神经元各自的偏置（只用本神经元的梯度）"),
                       self.build(dataclasses.replace(net, layers=layers)), aliases)


@functools.lru_cache(maxsize=32)
def _builtin_variants(name: str, decimals: frozenset) -> list[Variant]:
    return Subject(name)._variants(decimals)


# --- names -----------------------------------------------------------------------------------------

def resolve_name(key: str, quantities) -> str | None:
    """The transcript key a claim's name means: the key itself, or a common notation of it
    (Mazur's out_h1, E_total, dE_total/dw5, w5+, delta_o1, δ_o1, ∂E/∂w5, δo1)."""
    if key in quantities:
        return key
    k = unicodedata.normalize("NFKC", key.strip()).replace("∂", "d").replace(" ", "")
    k = re.sub(r"\+\Z", "_new", k)
    k = re.sub(r"(?<![A-Za-ce-z])E_?total", "E", k)  # E_total, dE_total/dw5
    k = re.sub(r"(\Ad|/d|\A)out_", r"\1", k)
    delta = re.match(r"(?:delta|δ|Δ)_?\{?([A-Za-z]\w*?)\}?\Z", k)
    if delta:
        unit = delta.group(1)
        for candidate in (f"dE/dnet_{unit}", f"dL/dnet_{unit}", f"dE/dz{unit}", f"dL/d{unit}", f"dE/d{unit}"):
            if candidate in quantities:
                return candidate
    if k in quantities:
        return k
    top = re.match(r"d(\w+)/d(\w+)\Z", k)  # dE/dw5 or dL/dz where the loss has another name
    if top and top.group(1) in ("E", "L", "J", "C", "loss"):
        tops = Counter(m.group(1) for m in map(re.compile(r"d(\w+)/d").match, quantities) if m)
        for name in ("E", "L", *(t for t, _ in tops.most_common(1))):
            if f"d{name}/d{top.group(2)}" in quantities:
                return f"d{name}/d{top.group(2)}"
    indexed = re.fullmatch(r"(.*?)([A-Za-z_]+)\[([\d,]+)\]", k)
    if indexed:  # xhat[0,1] for xhat1[0,1]: a net file's layer number left out, where one layer has the name
        head, base, index = indexed.groups()
        pattern = re.compile(re.escape(head + base) + r"\d+\[" + re.escape(index) + r"\]\Z")
        matches = [name for name in quantities if pattern.match(name)]
        if len(matches) == 1:
            return matches[0]
    return None


MAX_SUGGESTIONS = 100  # unknown names given the closest known ones (difflib: 1 ms each; 10^5 took minutes)


def _unknown_name(key: str, subject: str, quantities, suggest: bool = True) -> str:
    close = _close_names(key, list(quantities)) if suggest else []
    if key.endswith("+"):
        close = [n for n in [key[:-1] + "_new"] if n in quantities] + [n for n in close if n != key[:-1] + "_new"]
    hint = f"; closest names: {', '.join(close[:4])}" if close else ""
    return f"{subject} has no value named {key!r}{hint} (all names: symprop example show {subject} --format json)"


def _close_names(key: str, names: list[str]) -> list[str]:
    """Names like ``key``: those written the same but for their numbers first, nearest number
    first (epoch0:l -> epoch1:l before epoch90:l), then difflib's closest."""
    shape = re.sub(r"\d+", "#", key)
    numbers = [int(n) for n in re.findall(r"\d+", key)]
    same_shape = []
    for name in names:
        if re.sub(r"\d+", "#", name) == shape:
            theirs = [int(n) for n in re.findall(r"\d+", name)]
            same_shape.append((sum(abs(a - b) for a, b in zip(numbers, theirs)), name))
    nearest = [name for _, name in sorted(same_shape)[:4]]
    rest = difflib.get_close_matches(key, names, n=4, cutoff=0.5)
    return nearest + [n for n in rest if n not in nearest]


# --- exact numbers ----------------------------------------------------------------------------------

def _rational(value) -> sp.Rational:
    """The value as an exact Rational: Rationals as they are, anything else from 60 digits."""
    value = sp.sympify(value)
    if value.is_Rational:
        return value
    if isinstance(value, sp.Float) and value.is_finite:  # most values: remembered, a class asks for the same ones
        key = (value._mpf_, value._prec)
        known = _FLOAT_RATIONALS.get(key)
        if known is None:
            if len(_FLOAT_RATIONALS) >= 100_000:
                _FLOAT_RATIONALS.clear()
            known = _FLOAT_RATIONALS[key] = sp.Rational(sp.N(value, PRECISION))
        return known
    if value in (sp.oo, -sp.oo, sp.nan) or value.has(sp.oo, -sp.oo, sp.zoo, sp.nan):
        return sp.oo if value is sp.nan else value  # a program's overflow: within no claim
    if value.is_extended_real is False:
        raise NotReal(f"{sp.N(value, 6)} is not a real number")
    return sp.Rational(sp.N(value, PRECISION))


class NotReal(TooLarge):
    """A learner's numbers make a step no real number holds (the root of a claimed negative
    variance): like a value too large to compute, within no claim, and no cause to name."""


_FLOAT_RATIONALS: dict = {}  # (mpf, precision) of a Float -> its Rational


def _within(claim: Claim, value) -> bool:
    """|claim - value| <= tolerance, in exact rationals: a half-unit tie counts as right."""
    if isinstance(value, sp.MatrixBase):
        return False
    x, c, tol = _rational(value), claim.value, claim.tolerance
    if x.is_Rational and c.is_Rational and tol.is_Rational:  # in integers: |x - c| <= tol, without SymPy's arithmetic
        return abs(x.p * c.q - c.p * x.q) * tol.q <= tol.p * x.q * c.q
    return bool(abs(x - c) <= tol)


def _matches(claim: Claim, q) -> bool:
    """The claim equals the quantity's value (or, in a rounding variant, its value just before
    it was rounded: a learner may round inputs but write the result to more digits)."""
    return _within(claim, q.value) or (q.unrounded is not None and _within(claim, q.unrounded))


def _near_keys(claim: Claim, t: Transcript) -> list[str]:
    """A float pre-check for ``_matches``: the single-number quantities of ``t``, in order, but
    for those whose value (and value before rounding) is certainly farther from the claim
    than the tolerance. Looking for the one other quantity a wrong claim equals compares it
    with every quantity of every convention's transcript: exact comparisons for all of them,
    then a float comparison per quantity, were most of a check's time; the floats are now
    compared all at once (the same IEEE operations, element by element)."""
    table = t.__dict__.get("_float_table")  # per transcript, built once
    if table is None:
        keys = [k for k, q in t.quantities.items() if not isinstance(q.value, sp.MatrixBase)]
        values = np.array([float(sp.N(t.quantities[k].value, 20)) for k in keys], dtype=float)
        before = [t.quantities[k].unrounded for k in keys]
        has_before = np.array([v is not None for v in before], dtype=bool)
        unrounded = np.array([float(sp.N(v, 20)) if v is not None else 0.0 for v in before], dtype=float)
        table = t.__dict__["_float_table"] = (keys, values, has_before, unrounded)
    keys, values, has_before, unrounded = table
    c, tol = claim.value.p / claim.value.q, claim.tolerance.p / claim.tolerance.q  # ints: no mpmath

    def near(f):
        with np.errstate(invalid="ignore", over="ignore"):
            return ~(np.isfinite(f) & np.isfinite(c)) | (np.abs(f - c) <= tol + 1e-9 * (np.abs(f) + abs(c)))

    mask = near(values) | (has_before & near(unrounded))
    return [keys[i] for i in np.flatnonzero(mask)]


def _is_float(written: str, np_type) -> bool:
    """The written number is exactly a value of that binary type (float32 printed via float64)."""
    try:
        x = float(written)
    except ValueError:
        return False
    return np.isfinite(x) and float(np_type(x)) == x


def _ulp(value, np_type) -> sp.Rational:
    x = abs(float(value)) or float(np.finfo(np_type).tiny)
    return _rational(float(np.spacing(np_type(x))))


def _float64_rendering(claim: Claim, exact) -> bool:
    """A full float64 print (at least 15 significant digits, the shortest repr of a double)
    within a few float64 units in the last place of the exact value."""
    text = claim.written.strip().lstrip("+")
    if _significant_written(text) < 15 or isinstance(exact, sp.MatrixBase):
        return False
    try:
        x = float(text)
    except ValueError:
        return False
    if repr(x) != text and repr(x) != text.lower():
        return False
    return abs(_rational(x) - _rational(exact)) <= 64 * _ulp(exact, np.float64)


def _float32_match(claim: Claim, value) -> bool:
    """A float32 result printed in full: exactly a float32, within 8 float32 units in the last
    place (the order of operations of a program may differ from the transcript's)."""
    if isinstance(value, sp.MatrixBase) or _significant_written(claim.written) < 7:
        return False
    return _is_float(claim.written, np.float32) and abs(claim.value - _rational(value)) <= 8 * _ulp(value, np.float32)


def _significant_written(text: str) -> int:
    mantissa = re.split(r"[eE]", text.strip())[0]
    return len(re.sub(r"\D", "", mantissa).lstrip("0"))


def _rounding(claim: Claim, exact) -> tuple[str, int] | None:
    """("rounded", k) when the claim is the exact value rounded to k decimals (k at most the
    digits written, and with at least 2 significant digits); ("truncated", k) when it is the
    exact value cut off at k decimals. Exact rationals throughout, so a tie rounds either way."""
    if claim.decimals is None or isinstance(exact, sp.MatrixBase):
        return None
    x = _rational(exact)
    for k in range(claim.decimals, 0, -1):
        unit = sp.Integer(10) ** -k
        significant = _significant(claim.value, k)
        if not (claim.value / unit).is_integer or significant < 1:
            continue
        if significant >= 2 and abs(claim.value - x) <= unit / 2:
            return "rounded", k
        # cut off: at least 2 significant digits, or 1 after zeros (sigmoid(-5) = 0.006 for 0.0067)
        if (significant >= 2 or (k >= 3 and abs(claim.value) < sp.Rational(1, 10))) \
                and claim.value * x > 0 and abs(claim.value) < abs(x) < abs(claim.value) + unit:
            return "truncated", k
    return None


def _round(value, decimals):
    """value * 10**decimals rounded half up, as an integer."""
    value = sp.sympify(value)
    if value.is_Rational:  # in integers: floor(n/d + 1/2) = (2n + d) // 2d (the checker's hottest arithmetic)
        n, d = int(value.p), int(value.q)
        n, d = (n * 10 ** decimals, d) if decimals >= 0 else (n, d * 10 ** -decimals)
        return sp.Integer((2 * n + d) // (2 * d))
    return sp.floor(value * sp.Integer(10) ** decimals + sp.Rational(1, 2))


def _significant(value, decimals: int) -> int:
    """How many significant digits ``value`` has when written with ``decimals`` decimals."""
    digits = str(abs(int(_round(sp.Rational(value), decimals))))
    return len(digits.lstrip("0"))


def _digits(value, decimals: int) -> str:
    return str(abs(int(_round(value, decimals))))


def _decimal(value, decimals: int) -> str:
    """value written with ``decimals`` decimals."""
    return f"{float(value):.{decimals}f}"


def _swaps(x, decimals: int) -> list:
    """x written with ``decimals`` decimals with two different neighbouring digits swapped."""
    digits = _digits(x, decimals)
    sign = -1 if x < 0 else 1
    out = []
    for i in range(len(digits) - 1):
        if digits[i] != digits[i + 1]:
            swapped = digits[:i] + digits[i + 1] + digits[i] + digits[i + 2:]
            out.append(sign * sp.Integer(int(swapped)) / sp.Integer(10) ** decimals)
    return out


def _transposed(claim: Claim, x) -> bool:
    """The claim's digits are those of x (rounded or cut to the same decimals) with two
    neighbouring digits swapped."""
    if claim.decimals is None or claim.decimals < 0:
        return False
    mine = _digits(claim.value, claim.decimals)
    for theirs in {_digits(x, claim.decimals), str(abs(int(sp.floor(abs(x) * sp.Integer(10) ** claim.decimals))))}:
        if len(mine) != len(theirs) or mine == theirs:
            continue
        diff = [i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b]
        if len(diff) == 2 and diff[1] == diff[0] + 1 and mine[diff[0]] == theirs[diff[1]] and mine[diff[1]] == theirs[diff[0]]:
            return True
    return False


# --- the learner's world -------------------------------------------------------------------------

def _dependencies(t: Transcript, key: str) -> frozenset[str]:
    """The quantities ``key``'s formula reads (cached on the transcript: a class's checks ask
    for them hundreds of thousands of times, and walking a SymPy formula is slow)."""
    cache = t.__dict__.setdefault("_dependencies", {})
    if key not in cache:
        formula = t.quantities[key].formula
        cache[key] = frozenset(read_keys(formula)) if formula is not None else frozenset()
    return cache[key]


def _position(t: Transcript) -> dict[str, int]:
    """key -> its place in the transcript (cached on the transcript)."""
    if "_position" not in t.__dict__:
        t.__dict__["_position"] = {k: i for i, k in enumerate(t.quantities)}
    return t.__dict__["_position"]


class World:
    """Every quantity recomputed from the learner's claimed values: ``point`` from the claims as
    written, ``box`` the interval each value can take when the claims named in ``boxed`` may lie
    anywhere within their written precision. ``own``: a claimed step recomputed (point, box).

    Computed on demand, in the transcript's order: a diagnosis asks for one quantity of many
    worlds (each claimed input alone, each set of boxed inputs), and recomputing every
    quantity of each was most of a check's time. A quantity none of whose inputs depends on a
    claim has its value from the world without claims, built once per transcript."""

    def __init__(self, t: Transcript, claims: dict[str, Claim], boxed: set[str], reference: World | None = None):
        self.t, self.claims, self.boxed, self.reference = t, claims, set(boxed), reference
        self._point, self._box, self._own, self._computed = {}, {}, {}, {}
        self._changed = set()  # claimed, or computed from a claimed value
        self.point = _OnDemand(self, self._point, t.quantities)
        self.box = _OnDemand(self, self._box, t.quantities)
        self.own = _OnDemand(self, self._own, [k for k in t.quantities if k in claims and t.quantities[k].formula is not None])

    def compute(self, key: str):
        """``key`` and every quantity it is computed from that is not computed yet."""
        if key in self._point:
            return
        if key not in self.t.quantities:
            raise KeyError(key)
        needed, stack = {key}, [key]
        while stack:
            for dep in _dependencies(self.t, stack.pop()):
                if dep not in self._point and dep not in needed:
                    needed.add(dep)
                    stack.append(dep)
        position = _position(self.t)
        for k in sorted(needed, key=position.__getitem__):
            self._one(k)

    def _one(self, key: str):
        t, q = self.t, self.t.quantities[key]
        claimed = key in self.claims
        deps = _dependencies(t, key)
        if q.formula is not None:
            if self.reference is not None and not (deps & self._changed):
                self.reference.compute(key)
                value, interval = self.reference._computed[key]
            else:
                if deps & self._changed:
                    self._changed.add(key)
                point = {k: self._point[k] for k in deps}
                try:
                    value = evaluate(t, key, point)
                    interval = _interval(t, key, point, self._box, value)
                except TooLarge:  # claims can make a step no number holds (exp(-1e300)): within no claim
                    value, interval = sp.nan, None
            self._computed[key] = (value, interval)
            if claimed:
                self._own[key] = (value, interval)
        else:
            value, interval = q.value, None
        if claimed:
            self._changed.add(key)
            c = self.claims[key]
            value = c.value
            interval = (c.value - c.tolerance, c.value + c.tolerance) if key in self.boxed else None
        if interval is None and not isinstance(value, sp.MatrixBase):
            interval = (_rational(value), _rational(value))
        self._box[key] = interval
        self._point[key] = value  # last: a value in point means the quantity is done (a world may be shared by threads)


class _OnDemand(Mapping):
    """One of a World's tables, each entry computed when it is first read."""

    def __init__(self, world: World, store: dict, keys):
        self._world, self._store, self._keys = world, store, keys

    def __getitem__(self, key):
        if key not in self._store:
            self._world.compute(key)
        return self._store[key]

    def __iter__(self):
        return iter(self._keys)

    def __len__(self):
        return len(self._keys)


def learner_world(t: Transcript, claims: dict[str, Claim], boxed: set[str]) -> World:
    """The learner's world (see World); the world without claims is shared per transcript."""
    if "_no_claims_world" not in t.__dict__:
        t.__dict__["_no_claims_world"] = World(t, {}, set())
    reference = t.__dict__["_no_claims_world"]
    return reference if not claims else World(t, claims, boxed, reference)


def _interval(t, key, point, box, value):
    """[lo, hi] of ``key``'s formula over the boxes of its inputs: every corner of the box and its
    centre. That is exact for formulas monotone in each input (sums, products, sigmoid, the
    chain rule's products); for others (y(1 - y)) it is close for the narrow boxes of written
    digits. More than 6 varying inputs: centre plus the sum of each input's own swing.
    ``point``: the values of the formula's inputs."""
    if isinstance(value, sp.MatrixBase):
        return None
    inputs = _dependencies(t, key)
    varying = [k for k in inputs if box.get(k) is not None and box[k][0] != box[k][1]]
    if not varying:
        return (_rational(value), _rational(value))
    centre = _rational(value)
    if len(varying) <= 6:
        values = [centre]
        for corner in itertools.product(*[box[k] for k in varying]):
            values.append(_rational(evaluate(t, key, {**point, **dict(zip(varying, corner))})))
        return (min(values), max(values))
    swing = sp.S.Zero
    for k in varying:
        ends = [_rational(evaluate(t, key, {**point, k: end})) for end in box[k]]
        swing += max(abs(e - centre) for e in ends)
    return (centre - swing, centre + swing)


def _consistent(claim: Claim, interval) -> bool:
    return interval is not None and interval[0] - claim.tolerance <= claim.value <= interval[1] + claim.tolerance


# --- checking ------------------------------------------------------------------------------------

def check(subject_name: str, claims: list[Claim], subject: Subject | None = None,
          exact: Transcript | None = None) -> Report:
    """Check every claim with a known name; unknown names, matrices and repeated names are
    reported in ``Report.problems`` (the CLI exits 2) without stopping the others.
    ``subject`` and ``exact``: the Subject and its exact transcript already built (a grader
    checks a whole class against one exercise and builds them once)."""
    subject = subject or Subject(subject_name)
    exact = exact or subject.build_exact()
    exact = _with_claimable(subject, exact, [c.key for c in claims if resolve_name(c.key, exact.quantities) is None])
    by_key, problems = {}, []
    formula_verdicts = []
    for claim in _matrix_entries(exact, claims, problems, subject_name):
        if claim.formula is not None:
            _check_formula(exact, claim, formula_verdicts, problems, subject_name)
            continue
        key = resolve_name(claim.key, exact.quantities)
        if key is None:
            diverged = getattr(exact, "diverged", None)
            if diverged and re.match(r"(step|epoch)\d+:", claim.key):
                problems.append(f"{claim.where}: {claim.key!r} cannot be checked: {diverged}")
            else:
                suggest = len(problems) < MAX_SUGGESTIONS
                problems.append(f"{claim.where}: {_unknown_name(claim.key, subject_name, exact.quantities, suggest)}")
            continue
        if isinstance(exact.value(key), sp.MatrixBase):
            problems.append(f"{claim.where}: {claim.key!r} is a matrix; claim single numbers")
            continue
        if key in by_key:
            problems.append(f"{claim.where}: {claim.key!r} is claimed twice"
                            + (f" (as {by_key[key].key!r} and {claim.key!r})" if by_key[key].key != claim.key else ""))
            continue
        by_key[key] = claim

    right = {k: _within(c, exact.value(k)) for k, c in by_key.items()}
    upstream = {k: _claimed_upstream(exact, k, by_key) for k in by_key}
    decimals = {c.decimals for c in by_key.values() if c.decimals is not None and 1 <= c.decimals <= 8}
    context = _Context(subject, exact, by_key, right, upstream,
                       subject.variants(decimals) if not all(right.values()) else [])

    verdicts, first_wrong = [], None
    for key in (k for k in exact.quantities if k in by_key):
        claim = by_key[key]
        verdict = Verdict(claim, exact.value(key), right[key], key=key)
        if claim.transposed_from and right[key]:  # the right number in the other layout's place
            verdict.right = False
            verdict.findings.append(_layout_finding(claim.transposed_from, key))
        elif not right[key]:
            try:
                context.diagnose(verdict)
            except TooLarge:  # the claims make a recomputation no number holds: the verdict stands, no cause
                pass
        if verdict.kind != "carried" and not verdict.right and first_wrong is None:
            first_wrong = key
        verdicts.append(verdict)
    if formula_verdicts:
        order = list(exact.quantities)
        verdicts = sorted(verdicts + formula_verdicts, key=lambda v: order.index(v.key))
        first_wrong = next((v.key for v in verdicts if not v.right and v.kind != "carried"), None)
    return Report(subject_name, verdicts, first_wrong, problems)


def _matrix_entries(exact: Transcript, claims: list[Claim], problems: list, subject_name: str) -> list[Claim]:
    """The claims with each whole matrix claimed at once ("dL/dW1 = [[...], [...]]") replaced by
    a claim per entry. A matrix written with its rows as columns (3 x 2 for a 2 x 3 gradient)
    is the other layout convention: its entries are read transposed, each named a layout
    convention where it is then right. A shape that is neither is refused, not guessed."""
    out = []
    for claim in claims:
        if claim.entries is None:
            out.append(claim)
            continue
        family = _matrix_family(exact, claim.key)
        rows = claim.entries
        shape = (len(rows), len(rows[0]))
        if family is None:
            problems.append(f"{claim.where}: {_unknown_name(claim.key + '[0,0]', subject_name, exact.quantities)}")
            continue
        base, keys, (m, n) = family
        vector = n is None
        transposed = False
        if vector and shape in ((1, m), (m, 1)):
            cells = {(i,): (rows[0][i] if shape == (1, m) else rows[i][0]) for i in range(m)}
        elif not vector and shape == (m, n):
            cells = {(i, j): rows[i][j] for i in range(m) for j in range(n)}
        elif not vector and shape == (n, m) and _is_gradient(base):
            cells, transposed = {(i, j): rows[j][i] for i in range(m) for j in range(n)}, True
        else:
            size = f"{m} entries" if vector else f"{m} x {n} (rows x columns)"
            flipped = " (its transpose: write a matrix row by row)" if not vector and shape == (n, m) else ""
            problems.append(f"{claim.where}: {base} is {size}; the claim is {shape[0]} x {shape[1]}{flipped}")
            continue
        for index, written in cells.items():
            where = f"{claim.where}, entry [{','.join(map(str, index))}]"
            try:
                entry = claim_from(f"{claim.key}[{','.join(map(str, index))}]", written, where, claim.tolerance)
            except SympropError as exc:
                problems.append(str(exc))
                continue
            entry.key = keys[index] if resolve_name(entry.key, exact.quantities) is None else entry.key
            entry.transposed_from = claim.key if transposed else None
            out.append(entry)
    return out


def _matrix_family(exact: Transcript, name: str):
    """(base name, (i, j) -> key of each entry, (rows, columns)) of the matrix ``name`` names
    (dL/dW1 -> dL/dW1[0,0], dL/dW1[0,1], ...; a vector: (i,) -> key, (length, None)), or None."""
    first = resolve_name(f"{name}[0,0]", exact.quantities) or resolve_name(f"{name}[0]", exact.quantities)
    if first is None:
        return None
    base = first[:first.rindex("[")]
    keys = {}
    for key in exact.quantities:
        match = re.fullmatch(re.escape(base) + r"\[(\d+)(?:,(\d+))?\]", key)
        if match:
            keys[tuple(int(g) for g in match.groups() if g is not None)] = key
    if all(len(index) == 1 for index in keys):
        return base, keys, (max(i for i, in keys) + 1, None)
    return base, keys, (max(i for i, _ in keys) + 1, max(j for _, j in keys) + 1)


def _is_gradient(name: str) -> bool:
    return bool(re.match(r"d\w+/d", name))


def _layout_finding(name: str, key: str) -> Finding:
    base = key[:key.rindex("[")]
    return Finding("convention_layout", tr(
        f"right in the other layout: {name} is written transposed (numerator layout, one row per output); "
        f"symprop writes {base} in denominator layout, the shape of the value it is taken by",
        f"按另一种布局是对的：{name} 写成了转置（分子布局）；这里按分母布局书写，与求导变量形状相同"))


def _check_formula(exact: Transcript, claim: Claim, verdicts: list, problems: list, subject_name: str):
    """A formula claimed for a quantity: equivalent to the derived rule (and the rewrite that
    shows it), or not (and the simplest input where they differ)."""
    key = resolve_name(claim.key, exact.quantities)
    if key is None:
        problems.append(f"{claim.where}: {_unknown_name(claim.key, subject_name, exact.quantities)}")
        return
    if isinstance(exact.value(key), sp.MatrixBase) or exact.quantities[key].formula is None:
        problems.append(f"{claim.where}: {claim.key!r} is " + ("a matrix" if isinstance(exact.value(key), sp.MatrixBase)
                                                             else "a given value") + "; claim a formula for a computed value")
        return
    try:
        result = compare(exact, key, claim.formula, claim.where, resolve_name)
    except SympropError as exc:
        problems.append(str(exc))
        return
    code = "formula_equivalent" if result.equivalent else "formula_differs"
    verdict = Verdict(claim, exact.value(key), result.equivalent, key=key,
                      findings=[Finding(code, tr(result.explanation))], derived=plain_formula(result.derived))
    verdicts.append(verdict)


def _with_claimable(subject: Subject, exact: Transcript, names: list[str]) -> Transcript:
    """The transcript with the quantities these claims name that it computes but does not
    print: the gradient of the output by itself (df/df = 1), and any value of any step or
    epoch of a graph file's training (epoch3:dl/dw, or epoch3:dl/dw[2]: sample 2 of epoch 3
    with per-sample updates). A copy: the built transcript may be shared."""
    extra = {}
    for name in names:
        own = re.match(r"d(\w+)/d(\w+)\Z", name)
        if own and own.group(1) == own.group(2) and own.group(1) in exact.quantities:
            extra[name] = (sp.S.One, tr("the definition of a derivative", "导数的定义"))
            continue
        epoch = re.match(r"(step|epoch)(\d+):(.+?)(?:\[(\d+)\])?\Z", name)
        graph = subject.graph
        if not epoch or graph is None or graph.update is None:
            continue
        records = subject.training_records()
        k = int(epoch.group(2))
        if not 1 <= k <= len(records):
            continue
        record = records[k - 1]
        if epoch.group(4) is None:
            value = record.get(epoch.group(3))
        else:
            n = int(epoch.group(4))
            value = record.samples[n - 1].get(epoch.group(3)) if 1 <= n <= len(record.samples) else None
        if value is not None:
            extra[name] = (value, tr("the training", "训练"))
    if not extra:
        return exact
    copy = dataclasses.replace(exact, quantities=dict(exact.quantities), blocks=list(exact.blocks))
    for name, (value, result) in extra.items():
        copy.given(name, value, result_of=result)
    if hasattr(exact, "diverged"):
        copy.diverged = exact.diverged
    return copy


def _claimed_upstream(t: Transcript, key: str, claims: dict) -> set[str]:
    """The claimed quantities this one is computed from (through unclaimed intermediates)."""
    found, stack, seen = set(), list(_dependencies(t, key)), set()
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        if k in claims:
            found.add(k)
        else:
            stack.extend(_dependencies(t, k))
    return found


class _Context:
    """Everything the diagnosis of one claim compares against, built once per check."""

    def __init__(self, subject, exact, claims, right, upstream, variants):
        self.subject, self.exact, self.claims, self.right = subject, exact, claims, right
        self.upstream, self.variants = upstream, variants
        self.order = list(exact.quantities)
        self._worlds = {}

    def world(self, boxed: frozenset, only: frozenset | None = None) -> World:
        """The learner's world from all claims (or ``only`` those), ``boxed`` ones as intervals."""
        if (boxed, only) not in self._worlds:
            claims = self.claims if only is None else {k: self.claims[k] for k in only}
            self._worlds[boxed, only] = learner_world(self.exact, claims, set(boxed))
        return self._worlds[boxed, only]

    def _explains(self, key: str, claim: Claim, inputs: list[str], boxed: bool) -> bool:
        """Recomputing ``key`` from these claimed inputs alone (everything else exact) gives the claim."""
        w = self.world(frozenset(inputs) if boxed else frozenset(), frozenset(inputs))
        return _within(claim, w.point[key]) or (boxed and _consistent(claim, w.box[key]))

    def diagnose(self, verdict: Verdict):
        """Findings in order of how certain they are: the first one is the verdict's code."""
        claim, key = verdict.claim, verdict.key
        exact_value = verdict.exact
        q = self.exact.quantities[key]
        add = verdict.findings.append
        if not isinstance(exact_value, sp.MatrixBase) and not _rational(exact_value).is_finite:
            add(Finding("not_finite", tr(f"the program's value is {rounded(exact_value, 4)}: it overflows in the "
                                         "file's dtype, so no finite number is right",
                                         f"程序中的值是 {rounded(exact_value, 4)}：在文件的数据类型中溢出，任何有限数都不对")))
            return
        if _float64_rendering(claim, exact_value) or self._float64_program_print(claim, key):
            verdict.right = True
            add(Finding("right_float64", tr("right: this is the exact value as a float64 program prints it",
                                            "正确：这是精确值在 float64 程序中的打印结果")))
            return
        rounding = _rounding(claim, exact_value)
        if rounding:
            how, k = rounding
            add(Finding(how, tr(f"rounding only: the exact value {'rounded' if how == 'rounded' else 'truncated (cut off instead of rounded)'} "
                                f"to {k} decimals" + ("" if claim.decimals == k else f", written with {claim.decimals}"),
                                f"只是舍入问题：精确值{'四舍五入' if how == 'rounded' else '直接截断（没有四舍五入）'}到 {k} 位小数")))
        if q.formula is not None:
            self._carried(verdict)
        for variant in self.variants:
            if variant.code in {f.code for f in verdict.findings}:
                continue
            for candidate in variant.aliases.get(key, [key]):
                other = variant.transcript.quantities.get(candidate)
                if other is not None and (_matches(claim, other) or (variant.float32 and _float32_match(claim, other.value))):
                    if CODES[variant.code] == "convention":
                        add(Finding(variant.code, tr(f"right under another convention: {variant.description.en}",
                                                     f"在另一种约定下是对的：{variant.description.zh or variant.description.en}")))
                    else:  # a mistake, not a convention: say which
                        add(Finding(variant.code, variant.description))
                    break
        self._slips(verdict)
        if not verdict.findings and q.formula is not None:
            self._intermediates(verdict)
        if not verdict.findings:
            if q.formula is None and q.result_of is not None:
                add(Finding("wrong_result", tr(f"this is the result of {q.result_of.en} (not a given value), and it differs",
                                               f"这是{q.result_of.zh or q.result_of.en}的结果（不是给定值），与之不符")))
            elif q.formula is None:
                add(Finding("wrong_given", tr("this is a given value of the example, and it differs",
                                              "这是题目给定的值，与题目不符")))
            else:
                add(Finding("wrong_value", tr(
                    "mistake in this step: recomputing it from the learner's own earlier values does not give this number"
                    if self.upstream[key] else "mistake in this step",
                    "这一步算错了：用你自己前面的数值重新计算也得不到这个数" if self.upstream[key] else "这一步算错了")))

    def _float64_program_print(self, claim: Claim, key: str) -> bool:
        """A full float64 print equal to what a float64 program computing the graph's formulas
        as written gives (a finite difference loses digits no exact value has)."""
        if _significant_written(claim.written) < 15 or not _is_float(claim.written, np.float64):
            return False
        program = self.subject.float64_program()
        q = program.quantities.get(key) if program is not None else None
        return (q is not None and not isinstance(q.value, sp.MatrixBase)
                and sp.Rational(float(claim.written)) == _rational(q.value))

    def _carried(self, verdict: Verdict):
        """The step recomputed from the learner's own upstream claims: as written, then with
        each claim anywhere within its written precision."""
        claim, key = verdict.claim, verdict.key
        upstream = sorted(self.upstream[key], key=self.order.index)
        if not upstream:
            return
        wrong = [k for k in upstream if not self.right[k]]
        point, _ = self.world(frozenset()).own[key]
        boxed = not _within(claim, point)
        # a value written exactly (0.05 for a given 0.05) lost no digits: never blame its rounding
        boxable = [k for k in upstream if self.claims[k].tolerance
                   and self.claims[k].value != _rational(self.exact.value(k))]
        if boxed and (not boxable or not _consistent(claim, self.world(frozenset(boxable)).own[key][1])):
            return
        rounded_inputs = [k for k in boxable if self.right[k]]
        if wrong and not boxed:
            inputs = []  # the learner's own values as written give it: nothing to explain
        else:
            inputs = ([k for k in upstream if self._explains(key, claim, [k], False)]
                      or [k for k in boxable if self._explains(key, claim, [k], True)]
                      or (rounded_inputs if not wrong else boxable))
        written = ", ".join(f"{k} = {self.claims[k].written}" for k in (inputs or upstream))
        because = (f"; the difference comes from the rounding of {written} (within its written precision)"
                   if inputs else "")
        because_zh = f"；差别来自 {written} 的舍入（在其写出的精度之内）" if inputs else ""
        if wrong:
            verdict.findings.append(Finding("carried_forward", tr(
                f"carried forward: this step is right for the learner's own {', '.join(wrong)}; "
                f"the mistake is upstream{because}",
                f"错误是从前面带下来的：用你自己算出的 {', '.join(wrong)} 计算，这一步是对的{because_zh}"), inputs))
        else:
            verdict.findings.append(Finding("carried_precision", tr(
                f"this step is right for the learner's rounded {written}: the digits lost there make this value wrong",
                f"用你舍入后的 {written} 计算，这一步是对的：是那里丢掉的位数使这个值出错"), inputs or upstream))

    def _intermediates(self, verdict: Verdict):
        """An unclaimed intermediate value the learner worked with but did not write down:
        rounded (or cut off) before it was used (0.0475 from a rounded 0.95), or with a slip
        (sign, factor 2, two swapped digits) that the rest of the step then carried forward.
        Only values whose rounding changes them: a value exact as written is never blamed."""
        claim, key = verdict.claim, verdict.key
        if isinstance(verdict.exact, sp.MatrixBase) or _significant_written(claim.written) < 2:
            return
        if abs(claim.value - _rational(verdict.exact)) <= 10 * claim.tolerance:
            return  # off by a few units in the last digit: any small change would explain it
        base = self.world(frozenset()).point
        for u in self._unclaimed_inputs(key):
            exact_u = _rational(self.exact.value(u))
            candidates = []
            for d in range(1, 6):
                for how, value in (("rounded", round_half_up(exact_u, d)),
                                   ("cut off", sp.sign(exact_u) * sp.floor(abs(exact_u) * 10 ** d) / 10 ** d)):
                    if value != exact_u and value != 0:
                        candidates.append(("rounded_intermediate", value,
                                           tr(f"right if {u} = {rounded(exact_u, 8)} is {how} to {d} decimals "
                                              f"({_decimal(value, d)}) before it is used: keep all digits until the end",
                                              f"如果先把 {u} = {rounded(exact_u, 8)} 舍入到 {d} 位小数（{_decimal(value, d)}）"
                                              "再使用，这个结果就对了：中间结果应保留全部位数")))
            for factor, en, zh in ((-1, "its sign flipped", "符号反了"), (2, "twice its value", "乘了 2"),
                                   (sp.Rational(1, 2), "half its value", "少乘了 2")):
                candidates.append(("slip_carried", factor * exact_u,
                                   tr(f"a slip in {u} ({en}) carried forward: the rest of the calculation is right",
                                      f"{u} 算错了（{zh}），后面的计算沿用了这个错误，其余都对")))
            for d in {claim.decimals or 4, 4}:
                for swapped in _swaps(exact_u, d):
                    candidates.append(("slip_carried", swapped,
                                       tr(f"a slip in {u} (two digits swapped: {_decimal(swapped, d)}) carried "
                                          "forward: the rest of the calculation is right",
                                          f"{u} 写错了（两位数字颠倒：{_decimal(swapped, d)}），后面沿用了这个错误")))
            for code, value, text in candidates:
                if _within(claim, self._recompute(key, base, {u: value})):
                    verdict.findings.append(Finding(code, text, [u]))
                    return

    def _unclaimed_inputs(self, key: str, limit: int = 12) -> list[str]:
        """Computed quantities this one depends on that the learner did not claim, nearest first."""
        found, frontier, seen = [], [key], {key}
        while frontier and len(found) < limit:
            next_frontier = []
            for k in frontier:
                for dep in sorted(_dependencies(self.exact, k), key=self.order.index, reverse=True):
                    if dep in seen or dep in self.claims:
                        continue
                    seen.add(dep)
                    if self.exact.quantities[dep].formula is not None:
                        found.append(dep)
                        next_frontier.append(dep)
            frontier = next_frontier
        return found[:limit]

    def _recompute(self, key: str, base: dict, overrides: dict):
        """``key`` recomputed in the learner's world with some values replaced."""
        values, changed = dict(base), set(overrides)
        values.update(overrides)
        start = min(self.order.index(k) for k in overrides)
        for k in self.order[start:self.order.index(key) + 1]:
            if k in overrides:
                continue
            q = self.exact.quantities[k]
            if q.formula is not None and (k == key or k not in self.claims) and _dependencies(self.exact, k) & changed:
                values[k] = evaluate(self.exact, k, values)
                changed.add(k)
        return values[key]

    def _slips(self, verdict: Verdict):
        """A sign, a factor, two swapped digits, or another quantity's value: compared with the
        learner's own recomputation of this step (when it has claimed inputs) and the exact value."""
        claim, key = verdict.claim, verdict.key
        if isinstance(verdict.exact, sp.MatrixBase):
            return
        targets = [_rational(verdict.exact)]
        if self.upstream[key]:
            own = _rational(self.world(frozenset()).own[key][0])
            targets.insert(0, own)
        codes = {f.code for f in verdict.findings}

        def add(code, en, zh):  # each cause once, however many targets show it
            if code not in codes:
                codes.add(code)
                verdict.findings.append(Finding(code, tr(en, zh)))

        factors = [(sp.Integer(-1), "sign_flipped", "the sign is flipped", "符号反了"),
                   (sp.Integer(2), "factor_2", "twice the right value (a factor of 2)", "是正确值的 2 倍"),
                   (sp.Rational(1, 2), "factor_half", "half the right value (a factor of 1/2)", "是正确值的一半")]
        for n in self.subject.factors_n:
            factors += [(sp.Integer(n), "factor_n", f"{n} times the right value (a factor of N = {n})", f"是正确值的 {n} 倍"),
                        (sp.Rational(1, n), "factor_n", f"1/{n} of the right value (a factor of 1/N, N = {n})", f"是正确值的 1/{n}")]
        for x in targets:
            if not x.is_finite or abs(x) <= claim.tolerance:  # a recomputation no number holds: no slip to name
                continue
            for factor, code, en, zh in factors:
                if abs(claim.value - factor * x) <= claim.tolerance:
                    add(code, en, zh)
            if _transposed(claim, x):
                add("digits_transposed", "two neighbouring digits are swapped", "相邻两位数字写反了")
        entry = re.match(r"(.+)\[(\d+),(\d+)\]\Z", key)
        if entry and entry.group(2) != entry.group(3) and key.startswith("d") and "/d" in key:
            mirror = f"{entry.group(1)}[{entry.group(3)},{entry.group(2)}]"
            if mirror in self.exact.quantities and _within(claim, self.exact.value(mirror)):
                add("convention_layout",
                    f"this is {mirror}: the gradient written in numerator layout (transposed); symprop writes "
                    f"{entry.group(1)} in denominator layout, the shape of the value it is taken by",
                    f"这是 {mirror} 的值：梯度按分子布局（转置）书写；这里按分母布局书写，与求导变量形状相同")
                return
        if _significant(claim.value, claim.decimals or 0) < 3 or "other_quantity" in codes:
            return
        for name, t in [(None, self.exact)] + [(v.description, v.transcript) for v in self.variants]:
            other = self._other_quantity(claim, key, t)
            if other:
                under = f" ({name.en})" if name else ""
                under_zh = f"（{name.zh or name.en}）" if name else ""
                add("other_quantity", f"the number is the value of {other}{under}", f"这个数其实是 {other} 的值{under_zh}")
                return

    def _other_quantity(self, claim, key, t) -> str | None:
        """The one other quantity whose value the claim is (quantities equal by definition, such
        as h1 and dnet_o1/dw5, count as one); none for 0, 1 or several different values."""
        own = _rational(self.exact.value(key)) if not isinstance(self.exact.value(key), sp.MatrixBase) else None
        found = {}
        for k in _near_keys(claim, t):
            q = t.quantities[k]
            if k == key:
                continue
            v = _rational(q.value)
            if abs(v) in (0, 1) or v == own or not _matches(claim, q):
                continue
            found.setdefault(v, []).append(k)
        if len(found) != 1:
            return None
        names = next(iter(found.values()))
        return names[0] + (f" (= {', '.join(names[1:3])})" if len(names) > 1 else "")


# --- output ----------------------------------------------------------------------------------------

KIND = {
    "right": tr("right", "正确"), "carried": tr("wrong (carried forward)", "错误（前面带下来的）"),
    "precision": tr("wrong (rounded input)", "错误（输入被舍入）"),
    "convention": tr("wrong (other convention)", "错误（另一种约定）"), "rounding": tr("wrong (rounding)", "错误（舍入）"),
    "own": tr("WRONG", "错误"), "given": tr("WRONG (given value)", "错误（给定值）"),
}


# A mark and a word: the word is read where no emoji font draws the mark.
MARK = {True: tr("✅ right", "✅ 正确"), False: tr("❌ wrong", "❌ 错误")}


def _exact_text(v: Verdict) -> str:
    """The exact value with at least as many significant digits as the claim, so that a claim
    written to 16 digits is not shown beside an exact '8'."""
    if v.claim.formula is not None:
        return v.derived
    digits = min(30, max(8, _significant_written(v.claim.written)))
    return rounded(v.exact, digits)


def render_report(report: Report, fmt: str = "text", lang: str = "en") -> str:
    if fmt == "html":
        from .html_page import page

        return page(render_report(report, "md", lang), lang)
    if fmt == "json":
        return json.dumps(_report_json(report), indent=2, ensure_ascii=False) + "\n"
    rows = []
    for v in report.verdicts:
        c = v.claim
        name = c.key if c.key == v.key else f"{c.key} ({v.key})"
        rows.append([name, c.written, _exact_text(v), "±" + rounded(c.tolerance, 3), KIND[v.kind](lang),
                     "; ".join(d(lang) for d in v.diagnoses)])
    headers = [tr("value", "数值"), tr("claimed", "你的答案"), tr("exact", "精确值"), tr("tolerance", "容差"),
               tr("verdict", "判定"), tr("diagnosis", "诊断")]
    headers = [h(lang) for h in headers]
    wrong = [v for v in report.verdicts if not v.right]
    summary = [tr(f"{len(report.verdicts) - len(wrong)} of {len(report.verdicts)} claims right.",
                  f"{len(report.verdicts)} 个数值中 {len(report.verdicts) - len(wrong)} 个正确。")(lang)]
    if report.first_wrong:
        inherited = [v.claim.key for v in wrong if v.kind == "carried"]
        summary.append(tr(f"First wrong step: {report.first_wrong}.", f"第一个出错的步骤：{report.first_wrong}。")(lang))
        if inherited:
            summary.append(tr(f"Only inherited from earlier mistakes: {', '.join(inherited)}.",
                              f"只是继承了前面错误的：{', '.join(inherited)}。")(lang))
    if report.problems:
        summary.append(tr(f"Not checked ({len(report.problems)}):", f"未检查（{len(report.problems)} 个）：")(lang))
        summary += [f"  {p}" for p in report.problems]
    if fmt == "md":  # claim names, the subject and the problems are users' text: escaped (markup.py)
        lines = [f"# {tr('Hand-calculation check', '手算结果检查')(lang)}: {md_code(report.subject)}", "",
                 "| | " + " | ".join(headers) + " |", "|---|" + "---|" * len(headers)]
        for v, row in zip(report.verdicts, rows):
            cells = [md_code(row[0], in_table=True), *map(md_text, row[1:])]
            lines.append(f"| {MARK[v.right](lang)} | " + " | ".join(cells) + " |")
        summary = [md_text(line, block=True) for line in summary]
        return "\n".join(lines + [""] + summary) + "\n"
    widths = [max(display_width(x) for x in col) for col in zip(headers, *[r[:5] for r in rows])]
    out = [f"{tr('Checking claims about', '检查以下例子的数值')(lang)} {report.subject}", ""]
    fmt_row = lambda r: "  ".join(x + " " * (w - display_width(x)) for x, w in zip(r, widths))  # noqa: E731
    out.append(fmt_row(headers[:5]) + "  " + headers[5])
    for row in rows:
        out.append(fmt_row(row[:5]) + "  " + row[5])
    return "\n".join(out + [""] + summary) + "\n"


def _report_json(report: Report) -> dict:
    return {
        "subject": report.subject,
        "all_right": report.all_right,
        "first_wrong": report.first_wrong,
        "claims": [{"name": v.key, "written_name": v.claim.key, "claimed": v.claim.written,
                    "exact": v.derived if v.claim.formula is not None else rounded(v.exact, 30),
                    "tolerance": str(v.claim.tolerance), "right": v.right,
                    "kind": v.kind, "code": v.code, "codes": [f.code for f in v.findings],
                    "diagnoses": [f.text.en for f in v.findings],
                    **({"explained_by": v.findings[0].inputs} if v.findings and v.findings[0].inputs else {})}
                   for v in report.verdicts],
        "problems": report.problems,
    }
