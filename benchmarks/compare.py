"""``symprop bench --compare OLD.json``: how each ratio of this run moved against an older run.

Absolute times move by 10-20% between runs on a shared machine, so only same-run ratios are
compared: for every case both runs measured, each competitor's time over symprop's
(``t/symprop``; above 1 symprop is faster), numpy's time over symprop's, and symprop's
fraction of the GEMM peak timed in the same rounds. A ratio that fell by more than
``REGRESSION`` (10%) is flagged: symprop lost ground against that competitor.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from symprop.symbolic.errors import SympropError

REGRESSION = 0.10  # a ratio that fell by more than this fraction is flagged


@dataclass(frozen=True)
class Change:
    case: str
    ratio: str  # what the ratio compares, e.g. "PyTorch nn+optim / symprop"
    old: float
    new: float

    @property
    def change(self) -> float:
        """Relative change of the ratio: +0.05 = symprop 5% further ahead."""
        return self.new / self.old - 1

    @property
    def regression(self) -> bool:
        return self.change < -REGRESSION


def load_report(path) -> dict:
    """A report written by ``symprop bench --json``, or one line saying why it cannot be used."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SympropError(f"--compare {path}: cannot read a bench report ({exc})") from None
    if not isinstance(report, dict) or not isinstance(report.get("cases"), list):
        raise SympropError(f"--compare {path}: not a report of symprop bench --json (no 'cases' list)")
    return report


def _ratios(case: dict, labels: dict) -> dict[str, float]:
    """ratio name -> value, for one case of a report (only what was measured)."""
    rows = case.get("results", {})
    ours = rows.get("symprop", {})
    out = {}
    if "median_s" not in ours:
        return out
    for key, label in labels.items():
        row = rows.get(key, {})
        if key != "symprop" and row.get("vs_symprop"):
            out[f"{label} / symprop"] = row["vs_symprop"]
    if ours.get("peak_fraction"):
        out["symprop fraction of GEMM peak"] = ours["peak_fraction"]
    return out


def compare(old: dict, new: dict, labels: dict) -> list[Change]:
    """Every ratio that both reports measured, case by case in the new report's order."""
    old_cases = {c.get("case"): c for c in old["cases"] if isinstance(c, dict)}
    changes = []
    for case in new["cases"]:
        before = old_cases.get(case["case"])
        if before is None:
            continue
        old_ratios = _ratios(before, labels)
        for name, value in _ratios(case, labels).items():
            if old_ratios.get(name):
                changes.append(Change(case["case"], name, old_ratios[name], value))
    return changes


def describe(changes: list[Change], old_path, old: dict, new: dict) -> str:
    """The comparison as text: one line per ratio, regressions marked."""
    def settings(report):
        s = report.get("settings", {})
        return f"threads {s.get('threads', '?')}, load average {report.get('machine', {}).get('load_average', {})}"

    width = max([34, *(len(c.case) + 2 for c in changes)])  # the conv case's name is long
    lines = [f"\nratios against {old_path} ({settings(old)}; this run: {settings(new)})",
             f"  {'case':<{width}}{'ratio':<40}{'old':>8}{'new':>8}{'change':>9}"]
    if not changes:
        lines.append("  no case of this run was measured in the old report")
    for c in changes:
        flag = f"  <- REGRESSION (more than {REGRESSION:.0%} down)" if c.regression else ""
        lines.append(f"  {c.case:<{width}}{c.ratio:<40}{c.old:>8.2f}{c.new:>8.2f}{c.change:>+9.1%}{flag}")
    regressions = sum(c.regression for c in changes)
    lines.append(f"  {regressions} of {len(changes)} ratios fell by more than {REGRESSION:.0%}")
    return "\n".join(lines)
