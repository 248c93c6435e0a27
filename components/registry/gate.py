"""The promotion gate, pure: compare a candidate's evaluation metrics with the champion's under the
rules of ``GateConfig`` and say why (``decide``). No MLflow here: ``promote`` applies the decision.

The rule, exactly: for each rule let ``improvement`` be ``candidate - champion`` (direction
``higher``) or ``champion - candidate`` (``lower``), and ``margin`` the rule's margin (absolute), or
``margin × |champion|`` (``margin_type: relative``). The rule passes only when
``improvement > margin`` — strictly. So with ``margin: 0`` a tie fails (the candidate must be
better); a negative margin tolerates a regression smaller than ``|margin|`` (a tie then passes); a
positive margin asks for more than that gain. A required rule whose metric is missing (absent,
null or non-finite) on the candidate's side *or* on the champion's fails the gate with a reason
naming the metric: nothing is promoted on a comparison that could not be made (``mosa promote
VERSION --force`` moves the champion by hand, logged as ``manual``). The candidate is promoted
when every required rule passes; rules with ``required: false`` are reported only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from components.registry.config import GateConfig


@dataclasses.dataclass(frozen=True)
class GateRow:
    """One line of the comparison table; ``passed`` is None when there was nothing to compare."""

    metric: str
    direction: str
    candidate: float | None
    champion: float | None
    margin: str
    threshold: float | None
    required: bool
    passed: bool | None
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the gate decided and why, with the table it decided from."""

    promote: bool
    rows: list[GateRow]
    reason: str

    def table_markdown(self) -> str:
        """The comparison table as GitHub markdown."""

        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:.6g}"

        lines = [
            "| metric | direction | candidate | champion | margin | threshold | required | pass | note |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            verdict = {True: "yes", False: "**no**", None: "-"}[r.passed]
            lines.append(
                f"| {r.metric} | {r.direction} | {num(r.candidate)} | {num(r.champion)} | {r.margin} | "
                f"{num(r.threshold)} | {'yes' if r.required else 'no'} | {verdict} | {r.note} |"
            )
        return "\n".join(lines) + "\n"


def _value(metrics: Mapping[str, float | None], name: str) -> float | None:
    v = metrics.get(name)
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def decide(
    candidate_metrics: Mapping[str, float | None],
    champion_metrics: Mapping[str, float | None] | None,
    gate: GateConfig,
) -> Decision:
    """Compare the candidate with the champion (None: there is none) rule by rule.

    Missing, None and non-finite values count as absent. A rule passes when the candidate's
    improvement is strictly greater than its margin (:meth:`GateRule.passes`). The candidate is
    promoted when every required rule passes; a required metric absent on either side fails.
    """
    rows: list[GateRow] = []
    for rule in gate.rules:
        cand = _value(candidate_metrics, rule.metric)
        champ = None if champion_metrics is None else _value(champion_metrics, rule.metric)
        common = {
            "metric": rule.metric,
            "direction": rule.direction,
            "candidate": cand,
            "champion": champ,
            "margin": rule.margin_text(),
            "required": rule.required,
        }
        if cand is None:
            rows.append(GateRow(**common, threshold=None, passed=False, note="candidate lacks this metric"))
        elif champion_metrics is None:
            rows.append(GateRow(**common, threshold=None, passed=None, note="no champion"))
        elif champ is None:
            passed = False if rule.required else None
            rows.append(GateRow(**common, threshold=None, passed=passed, note="champion lacks this metric"))
        else:
            rows.append(GateRow(**common, threshold=rule.threshold(champ), passed=rule.passes(cand, champ)))

    missing = [r.metric for r in rows if r.required and r.candidate is None]
    champ_missing = [
        r.metric
        for r in rows
        if r.required and champion_metrics is not None and r.champion is None and r.candidate is not None
    ]
    failed = [r for r in rows if r.required and r.passed is False and None not in (r.candidate, r.champion)]
    advisory = [r.metric for r in rows if not r.required and r.passed is False]
    if missing:
        return Decision(False, rows, f"rejected: the candidate lacks required metric(s) {', '.join(missing)}")
    if champion_metrics is None:
        if gate.promote_first:
            return Decision(True, rows, "promoted: there is no champion yet, so the first model becomes it")
        return Decision(
            False,
            rows,
            "rejected: there is no champion and the gate has promote_first=false (promote by hand)",
        )
    reasons = []
    if champ_missing:
        reasons.append(
            f"the champion lacks required metric(s) {', '.join(champ_missing)}, so the gate cannot "
            "compare them (`mosa promote VERSION --force` promotes by hand)"
        )
    for r in failed:
        sign = ">" if r.direction == "higher" else "<"
        tie = ", a tie" if r.candidate == r.champion else ""
        reasons.append(
            f"{r.metric} {r.candidate:.6g} vs champion {r.champion:.6g}{tie} "
            f"(needs {sign} {r.threshold:.6g}, margin {r.margin})"
        )
    if reasons:
        return Decision(False, rows, "rejected: " + "; ".join(reasons))
    extra = f" (advisory rule(s) failed: {', '.join(advisory)})" if advisory else ""
    n_required = sum(r.required for r in rows)
    return Decision(True, rows, f"promoted: all {n_required} required rule(s) pass{extra}")


def rule_records(gate: GateConfig, decision: Decision) -> list[dict]:
    """The ``rules`` of a promotion-log record: each rule's settings beside the row it produced."""
    return [
        {
            "metric": rule.metric,
            "direction": rule.direction,
            "margin": rule.margin,
            "margin_type": rule.margin_type,
            "required": rule.required,
            "candidate": row.candidate,
            "champion": row.champion,
            "threshold": row.threshold,
            "passed": row.passed,
            "note": row.note,
        }
        for rule, row in zip(gate.rules, decision.rows, strict=True)
    ]
