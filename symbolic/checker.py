"""The hand-calculation checker: which of a learner's numbers are right, where the first
mistake is, and which convention or rounding explains the others.

A claim names a transcript quantity (the JSON names of ``symprop example show``) and the value
as the learner wrote it; the digits written set the tolerance (``0.458`` claims
0.458 +- 0.0005). For each wrong claim the checker
- recomputes that step from the learner's own earlier claimed values: if that reproduces the
  claim, the step itself was done right and the mistake is carried forward from upstream;
- rebuilds the transcript under common alternative conventions (biases not updated, per-unit
  instead of shared biases, hidden-layer gradients with the already-updated output weights,
  squared error without the 1/2 or as a mean, relu'(0) = 1, intermediate values rounded to
  the digits the learner writes) and says under which one the claim is right;
- says when the claim is right to fewer digits than written (rounding only).
Claims files are TOML read with ``tomllib``; nothing in them is executed.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import sympy as sp

from .errors import SympropError
from .examples import EXAMPLES, builtin_network
from .networkfile import load_network
from .network_transcript import Conventions, network_transcript
from .transcript import Chain, Text, Transcript, rounded, rounding_intermediates, tr

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
    kind: str  # right | carried | convention | rounding | own | given
    diagnoses: list[Text] = field(default_factory=list)


@dataclass
class Report:
    subject: str
    verdicts: list[Verdict]
    first_wrong: str | None

    @property
    def all_right(self) -> bool:
        return all(v.right for v in self.verdicts)


# --- reading claims --------------------------------------------------------------------------

def parse_written(text: str, where: str) -> tuple[sp.Rational, sp.Rational, int | None]:
    """(value, tolerance, decimals) from a number as written: half a unit in the last digit."""
    if FRACTION.match(text):
        return sp.Rational(text.replace(" ", "")), sp.S.Zero, None
    match = DECIMAL.match(text)
    if not match or not (match.group(1) or match.group(2)):
        raise SympropError(f"{where}: {text!r} is not a number")
    decimals = len(match.group(2) or "") - int(match.group(3) or 0)
    return sp.Rational(text.strip()), sp.Rational(1, 2) * sp.Integer(10) ** (-decimals), decimals


def claim_from(key: str, written: str, where: str, tolerance=None) -> Claim:
    value, inferred, decimals = parse_written(written, where)
    return Claim(key, written.strip(), value, inferred if tolerance is None else tolerance, where, decimals)


def _raw_value_text(lines: list[str], key: str) -> tuple[str | None, int | None]:
    """The value of ``key = ...`` in the [claims] section as written, and its line."""
    section = None
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        header = re.match(r"\[\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\]\Z", line)
        if header:
            section = header.group(1)
            continue
        if section != "claims":
            continue
        match = re.match(r'("([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_\-]+))\s*=\s*(.*)\Z', line)
        if match and (match.group(2) or match.group(3) or match.group(4)) == key:
            value = match.group(5).strip()
            inner = re.search(r'value\s*=\s*("?)([^",}]+)\1', value)
            if value.startswith("{") and inner:
                value = inner.group(2)
            return value.strip().strip('"\''), number
    return None, None


def _tolerance(value, where) -> sp.Rational:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SympropError(f"{where}: tolerance must be a number, got {value!r}")
    tol, _, _ = parse_written(str(value), where)
    if tol < 0:
        raise SympropError(f"{where}: tolerance must not be negative")
    return tol


def load_claims(path) -> tuple[str, list[Claim]]:
    """(subject, claims): subject is a built-in example name or a network file path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SympropError(f"{path}: cannot read the claims file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise SympropError(f"{path}: not UTF-8 text (byte {exc.start}); a claims file is TOML") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SympropError(f"{path}: TOML syntax error: {exc}") from None
    lines = text.splitlines()
    unknown = set(data) - {"example", "network", "tolerance", "claims"}
    if unknown:
        raise SympropError(f"{path}: unknown field {sorted(unknown)[0]!r} (known: example, network, tolerance, claims)")
    if ("example" in data) == ("network" in data):
        raise SympropError(f"{path}: say which example the claims are about: example = \"two-layer-sigmoid\" "
                           "(a built-in example) or network = \"my-net.toml\" (a network file)")
    if "example" in data:
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
    for key, value in table.items():
        written, line = _raw_value_text(lines, key)
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


# --- the subject and its alternative conventions ----------------------------------------------

@dataclass
class Variant:
    description: Text
    transcript: Transcript
    aliases: dict[str, list[str]] = field(default_factory=dict)  # claim key -> keys in this variant


class Subject:
    """What the claims are about: a built-in example or a network file, buildable under variants."""

    def __init__(self, name: str):
        self.name = name
        if name in EXAMPLES:
            self.build_exact = EXAMPLES[name].build
            self.network = builtin_network(name) if name in ("two-layer-sigmoid", "mazur-2-2-2") else None
        else:
            self.network = load_network(name)
            self.build_exact = lambda: network_transcript(self.network, Path(name).stem)

    def build(self, network=None, conventions=Conventions()):
        if self.network is None:
            return self.build_exact()
        return network_transcript(network or self.network, self.name, conventions)

    def variants(self, decimals: set[int]) -> list[Variant]:
        out = []
        for d in sorted(decimals)[:3]:
            with rounding_intermediates(d):
                out.append(Variant(tr(f"every intermediate value rounded to {d} decimals before it is used",
                                      f"每个中间结果先四舍五入到 {d} 位小数再继续计算"), self.build()))
        example = EXAMPLES.get(self.name)
        if example is not None and example.build_batch_sum is not None:
            out.append(Variant(tr("the loss summed over the batch instead of averaged (no 1/N)",
                                  "误差对批量求和而不是取平均（没有 1/N）"), example.build_batch_sum()))
        net = self.network
        if net is None:
            return out
        if net.update_biases:
            out.append(Variant(tr("biases not updated", "偏置未更新"),
                               self.build(dataclasses.replace(net, update_biases=False))))
        shared = [layer for layer in net.layers if layer.shared_bias]
        if shared:
            out.append(self._per_unit_variant(net))
        if len(net.layers) > 1:
            out.append(Variant(tr("hidden-layer gradients taken with the already-updated output weights",
                                  "隐藏层梯度用了已经更新过的输出层权重"),
                               self.build(conventions=Conventions(hidden_uses_updated_weights=True))))
        k = len(net.layers[-1].units)
        losses = {"squared-error": [("sum-of-squares", tr("squared error without the 1/2", "平方误差没有乘 1/2")),
                                    ("mse", tr("squared error as a mean over the outputs", "平方误差对输出取平均"))],
                  "mse": [("squared-error", tr("1/2 sum of squared errors instead of the mean", "用 1/2 误差平方和代替平均")),
                          ("sum-of-squares", tr("sum of squared errors instead of the mean", "用误差平方和代替平均"))]}
        for loss, description in losses.get(net.loss, []):
            if {net.loss, loss} == {"squared-error", "mse"} and k == 2:
                continue  # identical for two outputs
            out.append(Variant(description, self.build(dataclasses.replace(net, loss=loss))))
        if any(layer.activation.name == "relu" for layer in net.layers):
            out.append(Variant(tr("relu'(0) = 1", "relu'(0) = 1"),
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
        return Variant(tr("one bias per unit (each with its own unit's gradient) instead of one shared bias",
                          "把共用偏置当成每个神经元各自的偏置（只用本神经元的梯度）"),
                       self.build(dataclasses.replace(net, layers=layers)), aliases)


# --- checking ------------------------------------------------------------------------------------

def _number(value) -> sp.Float:
    return sp.N(value, 60)


def _within(claim: Claim, value) -> bool:
    if isinstance(value, sp.MatrixBase):
        return False
    return bool(abs(_number(value) - claim.value) <= claim.tolerance)


def _matches(claim: Claim, q) -> bool:
    """The claim equals the quantity's value (or, in a rounding variant, its value just before
    it was rounded: a learner may round inputs but write the result to more digits)."""
    return _within(claim, q.value) or (q.unrounded is not None and _within(claim, q.unrounded))


def _dependencies(t: Transcript, key: str) -> set[str]:
    q = t.quantities[key]
    if q.formula is None:
        return set()
    if isinstance(q.formula, Chain):
        return {k for term in q.formula.terms for k in term}
    return {s.name for s in q.formula.free_symbols | set(q.formula.atoms(sp.MatrixSymbol))}


def check(subject_name: str, claims: list[Claim]) -> Report:
    subject = Subject(subject_name)
    exact = subject.build_exact()
    by_key = {}
    for claim in claims:
        if claim.key not in exact.quantities:
            close = difflib.get_close_matches(claim.key, exact.quantities, n=4, cutoff=0.5)
            hint = f"; closest names: {', '.join(close)}" if close else ""
            raise SympropError(f"{claim.where}: {subject_name} has no value named {claim.key!r}{hint} "
                               f"(all names: symprop example show {subject_name} --format json)")
        if isinstance(exact.value(claim.key), sp.MatrixBase):
            raise SympropError(f"{claim.where}: {claim.key!r} is a matrix; claim single numbers")
        if claim.key in by_key:
            raise SympropError(f"{claim.where}: {claim.key!r} is claimed twice")
        by_key[claim.key] = claim

    # The learner's world: their claimed values, everything else recomputed from them.
    learner, own = {}, {}
    for key, q in exact.quantities.items():
        if q.formula is not None:
            recomputed = exact.evaluate(q.formula, learner)
            if key in by_key:
                own[key] = recomputed
            learner[key] = by_key[key].value if key in by_key else recomputed
        else:
            learner[key] = by_key[key].value if key in by_key else q.value

    right = {k: _within(c, exact.value(k)) for k, c in by_key.items()}
    upstream = {k: _claimed_upstream(exact, k, by_key) for k in by_key}
    decimals = {c.decimals for c in claims if c.decimals is not None and 1 <= c.decimals <= 8}
    variants = subject.variants(decimals) if not all(right.values()) else []

    order = [k for k in exact.quantities if k in by_key]
    verdicts, first_wrong = [], None
    for key in order:
        claim = by_key[key]
        verdict = Verdict(claim, exact.value(key), right[key], "right")
        if not right[key]:
            _diagnose(verdict, exact, variants, own.get(key), upstream[key], right)
            if verdict.kind in ("own", "given", "convention", "rounding") and first_wrong is None:
                first_wrong = key
        verdicts.append(verdict)
    return Report(subject_name, verdicts, first_wrong)


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


def _diagnose(verdict: Verdict, exact: Transcript, variants, own_value, upstream, right):
    claim = verdict.claim
    wrong_upstream = sorted((k for k in upstream if not right[k]), key=list(exact.quantities).index)
    if own_value is None:
        verdict.kind = "given"
        verdict.diagnoses.append(tr("this is a given value of the example, and it differs",
                                    "这是题目给定的值，与题目不符"))
        return
    own_ok = _within(claim, own_value)
    if own_ok and wrong_upstream:
        verdict.kind = "carried"
        verdict.diagnoses.append(tr(
            f"carried forward: this step is right for the learner's own {', '.join(wrong_upstream)}; "
            "the mistake is upstream",
            f"错误是从前面带下来的：用你自己算出的 {', '.join(wrong_upstream)} 计算，这一步是对的"))
    for variant in variants:
        candidates = variant.aliases.get(claim.key, [claim.key])
        for candidate in candidates:
            if candidate in variant.transcript.quantities and _matches(claim, variant.transcript.quantities[candidate]):
                if verdict.kind == "right":
                    verdict.kind = "convention"
                verdict.diagnoses.append(tr(f"right under another convention: {variant.description.en}",
                                            f"在另一种约定下是对的：{variant.description.zh or variant.description.en}"))
                break
    if claim.decimals is not None:
        for d in range(claim.decimals - 1, 0, -1):
            if _significant(claim.value, d) < 2:
                break
            if _round(claim.value, d) == _round(_number(verdict.exact), d):
                if verdict.kind == "right":
                    verdict.kind = "rounding"
                verdict.diagnoses.append(tr(f"rounding only: right to {d} decimals, not to the {claim.decimals} written",
                                            f"只是舍入问题：精确到 {d} 位小数是对的，写出的 {claim.decimals} 位不对"))
                break
    if _significant(claim.value, claim.decimals or 0) >= 3:
        for variant_name, t in [(None, exact)] + [(v.description, v.transcript) for v in variants]:
            other = next((k for k, q in t.quantities.items() if k != claim.key and q.formula is not None
                          and not isinstance(q.value, sp.MatrixBase) and _matches(claim, q)), None)
            if other:
                under = f" ({variant_name.en})" if variant_name else ""
                under_zh = f"（{variant_name.zh or variant_name.en}）" if variant_name else ""
                verdict.diagnoses.append(tr(f"the number is the value of {other}{under}",
                                            f"这个数其实是 {other} 的值{under_zh}"))
                break
    if verdict.kind == "right":
        verdict.kind = "own"
        verdict.diagnoses.insert(0, tr(
            "mistake in this step: recomputing it from the learner's own earlier values does not give this number"
            if upstream else "mistake in this step",
            "这一步算错了：用你自己前面的数值重新计算也得不到这个数" if upstream else "这一步算错了"))


def _round(value, decimals):
    """value * 10**decimals rounded half up, as an integer."""
    return sp.floor(sp.sympify(value) * sp.Integer(10) ** decimals + sp.Rational(1, 2))


def _significant(value, decimals: int) -> int:
    """How many significant digits ``value`` has when written with ``decimals`` decimals."""
    digits = str(abs(int(_round(sp.Rational(value), decimals))))
    return len(digits.lstrip("0"))


# --- output ----------------------------------------------------------------------------------------

KIND = {
    "right": tr("right", "正确"), "carried": tr("wrong (carried forward)", "错误（前面带下来的）"),
    "convention": tr("wrong (other convention)", "错误（另一种约定）"), "rounding": tr("wrong (rounding)", "错误（舍入）"),
    "own": tr("WRONG", "错误"), "given": tr("WRONG (given value)", "错误（给定值）"),
}


def render_report(report: Report, fmt: str = "text", lang: str = "en") -> str:
    if fmt == "json":
        return json.dumps(_report_json(report), indent=2, ensure_ascii=False) + "\n"
    rows = []
    for v in report.verdicts:
        c = v.claim
        rows.append([c.key, c.written, rounded(v.exact, 8), "±" + rounded(c.tolerance, 3), KIND[v.kind](lang),
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
        "claims": [{"name": v.claim.key, "claimed": v.claim.written, "exact": rounded(v.exact, 30),
                    "tolerance": str(v.claim.tolerance), "right": v.right, "kind": v.kind,
                    "diagnoses": [d.en for d in v.diagnoses]} for v in report.verdicts],
    }
