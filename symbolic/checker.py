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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sympy as sp

from .errors import SympropError
from .userfiles import parse_toml, read_text
from .examples import EXAMPLES, builtin_graph, builtin_network
from .graphfile import is_graph_file, load_graph
from .graphfile_transcript import graph_transcript
from .netfile import is_net_file, load_net_file, net_file_transcript
from .networkfile import load_network
from .numbers import exact_number
from .network_transcript import Conventions, network_transcript
from .transcript import PRECISION, Chain, Text, Transcript, in_float32, rounded, rounding_intermediates, tr

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


@dataclass
class Verdict:
    claim: Claim
    exact: sp.Expr
    right: bool
    key: str = ""  # the transcript key the claim's name resolved to (w5+ -> w5_new)
    findings: list = field(default_factory=list)  # Finding, most certain first

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
    value, inferred, decimals = parse_written(written, where)
    return Claim(key, written.strip(), value, inferred if tolerance is None else tolerance, where, decimals)


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
        raise SympropError(f'{path}: net = "affine(2,2) sigmoid affine(2,2) mse" and values = "my-values.toml" '
                           "go together (a net spec and the file with its numbers)")
    values = path.parent / data["values"]
    if not values.exists():
        raise SympropError(f"{path}: the values file {data['values']!r} does not exist")
    return NetValues(data["net"], str(values))


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
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise SympropError(f"{where}: claim {key!r} is not a number: {value!r}")
        if isinstance(value, str) or written is None:
            written = value if isinstance(value, str) else repr(value)
        claims.append(claim_from(key, written, f"{where}, claim {key!r}", tolerance))
    return subject, claims


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
    data = graph.data
    return data.size if data is not None and data.mode == "full-batch" else 1


class Subject:
    """What the claims are about: a built-in example or a network file, buildable under variants."""

    def __init__(self, name: str):
        self.name = name
        example = EXAMPLES.get(name)
        self.graph = None  # a graph file's GraphFile (built-in or the learner's own)
        # the subject with its loss summed over the batch instead of averaged, where it averages
        self.build_batch_sum = example.build_batch_sum if example is not None else None
        if isinstance(name, NetValues):
            from .graph import parse_net
            from .graph_transcript import values_transcript

            graph = parse_net(name.spec)  # a bad spec or values file fails here, once
            values_transcript(graph, name.values)
            self.network, self.batch_size = None, 1
            self.build_exact = lambda: values_transcript(graph, name.values)
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
            self.batch_size = net_file.batch_size
            if net_file.averages_over_batch:
                self.build_batch_sum = lambda: net_file_transcript(net_file, batch_sum=True)
        else:
            self.network = load_network(name)
            self.build_exact = lambda: network_transcript(self.network, Path(name).stem)
            self.batch_size = 1
        outputs = len(self.network.layers[-1].units) if self.network else 1
        self.factors_n = sorted({n for n in (self.batch_size, outputs) if n > 2})

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
        for d in sorted(decimals)[:3]:
            with rounding_intermediates(d):
                out.append(Variant("convention_rounded_intermediates",
                                   tr(f"every intermediate value rounded to {d} decimals before it is used",
                                      f"每个中间结果先四舍五入到 {d} 位小数再继续计算"), self.build()))
        with in_float32():
            out.append(Variant("convention_float32", tr("the whole calculation done in float32 (e.g. PyTorch's default dtype)",
                                                        "整个计算都用 float32 完成（例如 PyTorch 的默认类型）"),
                               self.build(), float32=True))
        graph = self.graph
        if graph is not None and graph.update is not None:  # the update's sign flipped
            flipped = dataclasses.replace(graph, update=dataclasses.replace(graph.update, ascent=not graph.update.ascent))
            out.append(Variant("convention_gradient_ascent",
                               tr("gradient descent instead of ascent (the update's sign flipped)",
                                  "用了梯度下降而不是梯度上升（更新的符号反了）") if graph.update.ascent else
                               tr("gradient ascent: new = old + learning rate * gradient (the update's sign flipped)",
                                  "梯度上升：新值 = 旧值 + 学习率 × 偏导数（更新的符号反了）"),
                               graph_transcript(flipped, self.build_exact().name)))
        if graph is not None and graph.data is not None and graph.data.mode == "full-batch":
            out.append(Variant("convention_batch_sum", tr("the loss summed over the batch instead of averaged (no 1/N)",
                                                          "误差对批量求和而不是取平均（没有 1/N）"),
                               graph_transcript(graph, self.build_exact().name, batch_sum=True)))
        if self.build_batch_sum is not None:
            out.append(Variant("convention_batch_sum", tr("the loss summed over the batch instead of averaged (no 1/N)",
                                                          "误差对批量求和而不是取平均（没有 1/N）"), self.build_batch_sum()))
        net = self.network
        if net is None:
            return out
        if net.update_biases:
            out.append(Variant("convention_biases_not_updated", tr("biases not updated", "偏置未更新"),
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
                description = (tr(f"the bias {b} kept fixed while the other biases are updated",
                                  f"偏置 {b} 未更新，其余偏置更新了") if net.update_biases else
                               tr(f"only the bias {b} updated, although this example keeps the biases fixed",
                                  f"只更新了偏置 {b}，而本例中偏置保持不变"))
                out.append(Variant("convention_some_biases_fixed" if net.update_biases else "convention_some_biases_updated",
                                   description, self.build(conventions=Conventions(updated_biases=updated))))
        if any(layer.shared_bias for layer in net.layers) and net.update_biases:
            out.append(self._per_unit_variant(net))
        if len(net.layers) > 1:
            out.append(Variant("convention_updated_weights",
                               tr("hidden-layer gradients taken with the already-updated output weights",
                                  "隐藏层梯度用了已经更新过的输出层权重"),
                               self.build(conventions=Conventions(hidden_uses_updated_weights=True))))
        out.append(Variant("convention_gradient_ascent",
                           tr("gradient ascent: new = old + learning rate * gradient (the update's sign flipped)",
                              "梯度上升：新值 = 旧值 + 学习率 × 偏导数（更新的符号反了）"),
                           self.build(conventions=Conventions(gradient_ascent=True))))
        if any(layer.activation.name == "sigmoid" for layer in net.layers):
            out.append(Variant("convention_sigmoid_at_net",
                               tr("the sigmoid derivative y(1 - y) taken at the net input instead of the output",
                                  "sigmoid 的导数 y(1 - y) 用了净输入而不是输出"),
                               self.build(conventions=Conventions(sigmoid_derivative_at_net=True))))
        k = len(net.layers[-1].units)
        for loss, code, description in LOSS_VARIANTS.get(net.loss, []):
            if {net.loss, loss} == {"squared-error", "mse"} and k == 2:
                continue  # identical for two outputs
            out.append(Variant(code, description, self.build(dataclasses.replace(net, loss=loss))))
        if any(layer.activation.name == "relu" for layer in net.layers):
            out.append(Variant("convention_relu0", tr("relu'(0) = 1", "relu'(0) = 1"),
                               self.build(conventions=Conventions(relu_derivative_at_zero=1))))
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
    (Mazur's out_h1, E_total, w5+, delta_o1)."""
    if key in quantities:
        return key
    k = re.sub(r"\+\Z", "_new", key.strip())
    k = re.sub(r"(?<![A-Za-z])E_total", "E", k)
    k = re.sub(r"(\Ad|/d|\A)out_", r"\1", k)
    k = re.sub(r"\Adelta_(\w+)\Z", r"dE/dnet_\1", k)
    return k if k in quantities else None


MAX_SUGGESTIONS = 100  # unknown names given the closest known ones (difflib: 1 ms each; 10^5 took minutes)


def _unknown_name(key: str, subject: str, quantities, suggest: bool = True) -> str:
    close = difflib.get_close_matches(key, quantities, n=4, cutoff=0.5) if suggest else []
    if key.endswith("+"):
        close = [n for n in [key[:-1] + "_new"] if n in quantities] + [n for n in close if n != key[:-1] + "_new"]
    hint = f"; closest names: {', '.join(close)}" if close else ""
    return f"{subject} has no value named {key!r}{hint} (all names: symprop example show {subject} --format json)"


# --- exact numbers ----------------------------------------------------------------------------------

def _rational(value) -> sp.Rational:
    """The value as an exact Rational: Rationals as they are, anything else from 60 digits."""
    value = sp.sympify(value)
    if value.is_Rational:
        return value
    return sp.Rational(sp.N(value, PRECISION))


def _within(claim: Claim, value) -> bool:
    """|claim - value| <= tolerance, in exact rationals: a half-unit tie counts as right."""
    if isinstance(value, sp.MatrixBase):
        return False
    return bool(abs(_rational(value) - claim.value) <= claim.tolerance)


def _matches(claim: Claim, q) -> bool:
    """The claim equals the quantity's value (or, in a rounding variant, its value just before
    it was rounded: a learner may round inputs but write the result to more digits)."""
    return _within(claim, q.value) or (q.unrounded is not None and _within(claim, q.unrounded))


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
        if not (claim.value / unit).is_integer or _significant(claim.value, k) < 2:
            continue
        if abs(claim.value - x) <= unit / 2:
            return "rounded", k
        if claim.value * x > 0 and abs(claim.value) < abs(x) < abs(claim.value) + unit:
            return "truncated", k
    return None


def _round(value, decimals):
    """value * 10**decimals rounded half up, as an integer."""
    return sp.floor(sp.sympify(value) * sp.Integer(10) ** decimals + sp.Rational(1, 2))


def _significant(value, decimals: int) -> int:
    """How many significant digits ``value`` has when written with ``decimals`` decimals."""
    digits = str(abs(int(_round(sp.Rational(value), decimals))))
    return len(digits.lstrip("0"))


def _digits(value, decimals: int) -> str:
    return str(abs(int(_round(value, decimals))))


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

def _dependencies(t: Transcript, key: str) -> set[str]:
    q = t.quantities[key]
    if q.formula is None:
        return set()
    if isinstance(q.formula, Chain):
        return {k for term in q.formula.terms for k in term}
    return {s.name for s in q.formula.free_symbols | set(q.formula.atoms(sp.MatrixSymbol))}


@dataclass
class World:
    """Every quantity recomputed from the learner's claimed values: ``point`` from the claims as
    written, ``box`` the interval each value can take when the claims named in ``boxed`` may lie
    anywhere within their written precision. ``own``: a claimed step recomputed (point, box)."""

    point: dict
    box: dict
    own: dict


def learner_world(t: Transcript, claims: dict[str, Claim], boxed: set[str]) -> World:
    point, box, own = {}, {}, {}
    for key, q in t.quantities.items():
        if q.formula is not None:
            value = t.evaluate(q.formula, point)
            interval = _interval(t, q.formula, key, point, box, value)
            if key in claims:
                own[key] = (value, interval)
        else:
            value, interval = q.value, None
        if key in claims:
            c = claims[key]
            value = c.value
            interval = (c.value - c.tolerance, c.value + c.tolerance) if key in boxed else None
        point[key] = value
        if interval is None and not isinstance(value, sp.MatrixBase):
            interval = (_rational(value), _rational(value))
        box[key] = interval
    return World(point, box, own)


def _interval(t, formula, key, point, box, value):
    """[lo, hi] of the formula over the boxes of its inputs: every corner of the box and its
    centre. That is exact for formulas monotone in each input (sums, products, sigmoid, the
    chain rule's products); for others (y(1 - y)) it is close for the narrow boxes of written
    digits. More than 6 varying inputs: centre plus the sum of each input's own swing."""
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
            values.append(_rational(t.evaluate(formula, {**point, **dict(zip(varying, corner))})))
        return (min(values), max(values))
    swing = sp.S.Zero
    for k in varying:
        ends = [_rational(t.evaluate(formula, {**point, k: end})) for end in box[k]]
        swing += max(abs(e - centre) for e in ends)
    return (centre - swing, centre + swing)


def _consistent(claim: Claim, interval) -> bool:
    return interval is not None and interval[0] - claim.tolerance <= claim.value <= interval[1] + claim.tolerance


# --- checking ------------------------------------------------------------------------------------

def check(subject_name: str, claims: list[Claim]) -> Report:
    """Check every claim with a known name; unknown names, matrices and repeated names are
    reported in ``Report.problems`` (the CLI exits 2) without stopping the others."""
    subject = Subject(subject_name)
    exact = subject.build_exact()
    by_key, problems = {}, []
    for claim in claims:
        key = resolve_name(claim.key, exact.quantities)
        if key is None:
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
        if not right[key]:
            context.diagnose(verdict)
            if verdict.kind != "carried" and not verdict.right and first_wrong is None:
                first_wrong = key
        verdicts.append(verdict)
    return Report(subject_name, verdicts, first_wrong, problems)


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
        if _float64_rendering(claim, exact_value):
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
            for candidate in variant.aliases.get(key, [key]):
                other = variant.transcript.quantities.get(candidate)
                if other is not None and (_matches(claim, other) or (variant.float32 and _float32_match(claim, other.value))):
                    add(Finding(variant.code, tr(f"right under another convention: {variant.description.en}",
                                                 f"在另一种约定下是对的：{variant.description.zh or variant.description.en}")))
                    break
        self._slips(verdict)
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
        if boxed and not _consistent(claim, self.world(frozenset(upstream)).own[key][1]):
            return
        rounded_inputs = [k for k in upstream if self.right[k] and self.claims[k].value != _rational(self.exact.value(k))]
        if wrong and not boxed:
            inputs = []  # the learner's own values as written give it: nothing to explain
        else:
            inputs = ([k for k in upstream if self._explains(key, claim, [k], False)]
                      or [k for k in upstream if self.claims[k].tolerance and self._explains(key, claim, [k], True)]
                      or (rounded_inputs if not wrong else [k for k in upstream if self.claims[k].tolerance]))
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
            if abs(x) <= claim.tolerance:
                continue
            for factor, code, en, zh in factors:
                if abs(claim.value - factor * x) <= claim.tolerance:
                    add(code, en, zh)
            if _transposed(claim, x):
                add("digits_transposed", "two neighbouring digits are swapped", "相邻两位数字写反了")
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
        for k, q in t.quantities.items():
            if k == key or isinstance(q.value, sp.MatrixBase):
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


def _exact_text(v: Verdict) -> str:
    """The exact value with at least as many significant digits as the claim, so that a claim
    written to 16 digits is not shown beside an exact '8'."""
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
    if fmt == "md":
        mark = {True: "✅", False: "❌"}
        lines = [f"# {tr('Hand-calculation check', '手算结果检查')(lang)}: `{report.subject}`", "",
                 "| | " + " | ".join(headers) + " |", "|---|" + "---|" * len(headers)]
        for v, row in zip(report.verdicts, rows):
            cells = [f"`{row[0]}`", *row[1:]]
            lines.append(f"| {mark[v.right]} | " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        return "\n".join(lines + [""] + summary) + "\n"
    widths = [max(_width(x) for x in col) for col in zip(headers, *[r[:5] for r in rows])]
    out = [f"{tr('Checking claims about', '检查以下例子的数值')(lang)} {report.subject}", ""]
    fmt_row = lambda r: "  ".join(x + " " * (w - _width(x)) for x, w in zip(r, widths))  # noqa: E731
    out.append(fmt_row(headers[:5]) + "  " + headers[5])
    for row in rows:
        out.append(fmt_row(row[:5]) + "  " + row[5])
    return "\n".join(out + [""] + summary) + "\n"


def _width(text: str) -> int:
    return sum(2 if "\u2e80" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" else 1 for ch in text)


def _report_json(report: Report) -> dict:
    return {
        "subject": report.subject,
        "all_right": report.all_right,
        "first_wrong": report.first_wrong,
        "claims": [{"name": v.key, "written_name": v.claim.key, "claimed": v.claim.written,
                    "exact": rounded(v.exact, 30), "tolerance": str(v.claim.tolerance), "right": v.right,
                    "kind": v.kind, "code": v.code, "codes": [f.code for f in v.findings],
                    "diagnoses": [f.text.en for f in v.findings],
                    **({"explained_by": v.findings[0].inputs} if v.findings and v.findings[0].inputs else {})}
                   for v in report.verdicts],
        "problems": report.problems,
    }
