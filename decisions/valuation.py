"""Customer valuation: financial value (CLV) and strategic value place each customer in one of four segments.

Financial value is high when the customer's CLV reaches a threshold (a quantile of the scored customers' CLV,
or a fixed amount); strategic value is the sum of configured points (partner status, referrals made,
influence) and is high from a configured total. The four combinations are named segments (invest, maintain,
serve differently, review) that tell a retention team where to invest in the relationship and which
relationships to serve at lower cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from decisions.errors import DecisionConfigError
from decisions.rules import Rule, refuse_unsafe
from features.sql import literal


@dataclass(frozen=True)
class Valuation:
    """Financial (CLV) and strategic (points) value, and the segment for each of their four combinations."""

    high_clv_quantile: float | None
    high_clv_min: float | None
    strategic_points: dict[str, tuple[str, float]]  # name -> (SQL condition, points)
    high_strategic_at: float
    segments: dict[tuple[bool, bool], str]  # (high financial, high strategic) -> segment name

    def __post_init__(self) -> None:
        refuse_unsafe(self.rules_to_check())

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Valuation:
        """Build from the `valuation` config group."""
        financial = cfg["financial"]
        quantile, minimum = financial.get("high_clv_quantile"), financial.get("high_clv_min")
        if minimum is None and (quantile is None or not 0.0 < float(quantile) < 1.0):
            raise DecisionConfigError(
                "valuation.financial: set high_clv_min (a CLV) or high_clv_quantile (between 0 and 1)"
            )
        points = {}
        for name, spec in (cfg["strategic"].get("points") or {}).items():
            if "when" not in spec or "points" not in spec:
                raise DecisionConfigError(f"valuation.strategic.points.{name}: needs 'when' and 'points'")
            points[str(name)] = (str(spec["when"]), float(spec["points"]))
        segments: dict[tuple[bool, bool], str] = {}
        for name, spec in cfg["segments"].items():
            levels = (spec.get("financial"), spec.get("strategic"))
            if any(level not in ("high", "low") for level in levels):
                raise DecisionConfigError(
                    f"valuation.segments.{name}: financial and strategic must each be 'high' or 'low'"
                )
            key = (levels[0] == "high", levels[1] == "high")
            if key in segments:
                raise DecisionConfigError(
                    f"valuation.segments.{name}: {segments[key]} already covers financial={levels[0]}, "
                    f"strategic={levels[1]}"
                )
            segments[key] = str(name)
        if len(segments) != 4:
            raise DecisionConfigError(
                "valuation.segments: name one segment for each of the four high/low combinations"
            )
        return cls(
            None if quantile is None else float(quantile),
            None if minimum is None else float(minimum),
            points,
            float(cfg["strategic"]["high_at"]),
            segments,
        )

    def rules_to_check(self) -> list[Rule]:
        """The strategic-value conditions, keyed by their place in the config."""
        return [
            Rule(f"valuation.strategic.points.{name}.when", sql)
            for name, (sql, _) in self.strategic_points.items()
        ]

    def strategic_sql(self) -> str:
        """SQL giving a customer's strategic value: the points of every condition that holds (each condition
        the allow-listed expression regenerated from its parsed text)."""
        terms = [
            f"CASE WHEN coalesce(({rule.checked()}), FALSE) THEN {literal(float(points))} ELSE 0.0 END"
            for rule, (_, points) in zip(self.rules_to_check(), self.strategic_points.values(), strict=True)
        ]
        return " + ".join(terms) if terms else "0.0"

    def segment_sql(self, clv_threshold: float) -> str:
        """SQL giving the segment from `clv` and `strategic_value`, with CLV high from `clv_threshold`."""
        high_financial = f"clv >= {literal(float(clv_threshold))}"
        high_strategic = f"strategic_value >= {literal(float(self.high_strategic_at))}"
        s = self.segments
        return (
            f"CASE WHEN {high_financial} AND {high_strategic} THEN {literal(s[(True, True)])} "
            f"WHEN {high_financial} THEN {literal(s[(True, False)])} "
            f"WHEN {high_strategic} THEN {literal(s[(False, True)])} "
            f"ELSE {literal(s[(False, False)])} END"
        )
