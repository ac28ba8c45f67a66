"""What a scoring run decided, summed up: counts per ladder rung, valuation segment, action and reason, the
budget used and the value expected from it, the control groups held out, as tables, MLflow metrics, a printed
summary and plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from decisions.policy import DecisionPolicy
from features.sql import identifier

CURVE_POINTS = 2000  # points kept of the budget curve


@dataclass(frozen=True)
class ScoringSummary:
    """Totals and per-group tables of one scoring run's output."""

    customers: int
    prospects: int | None
    mean_p_churn: float
    total_clv: float
    total_value_at_risk: float
    budget: float
    budget_used: float  # spent on the treated (controls are not contacted and cost nothing)
    selected: int  # the treated: customers to contact
    expected_saved_value: float  # sum over selected customers of p_churn * clv * save rate (or ladder gain)
    expected_net_value: float  # the same minus the cost of the actions
    ladder: pd.DataFrame  # rung, customers, value_at_risk, selected (prospects included, not scored)
    valuation: pd.DataFrame  # valuation_segment, customers, clv, value_at_risk, selected
    actions: (
        pd.DataFrame
    )  # action, kind, capacity, best_for, selected, control, cost, expected_saved_value, ...
    reasons: pd.DataFrame  # reason, first (as reason_1), top (among the listed reasons), share_top
    budget_curve: pd.DataFrame  # cumulative cost and expected net value along the priority list
    # share of scored customers outside each numeric feature's training range (empty: not checked), the share
    # above which a feature is named (score.out_of_range_warn_share) and the training ranges, for the summary
    out_of_range: dict[str, float] = field(default_factory=dict)
    out_of_range_warn_share: float = 1.0  # (1: none named)
    training_ranges: dict[str, dict[str, float]] = field(default_factory=dict)
    control_share: float = 0.0  # of each action's selection held out as its control group (actions.control)
    controls: int = 0  # customers held out: chosen by the selection, not contacted
    # the value saved's interval (sum of the selected customers' value_gain_low / _high: each customer's
    # interval at its end at once, so wider than a joint interval of the total) and its split by effect source
    expected_saved_low: float = 0.0
    expected_saved_high: float = 0.0
    expected_saved_learned: float = 0.0
    expected_saved_assumed: float = 0.0
    budget_used_assumed: float = 0.0  # spent on the treated whose action's effect is assumed
    assumed_actions: tuple[str, ...] = ()  # catalogue actions without a learned effect
    # uplift_segment, customers, selected, value_gain, value_gain_low, value_gain_high (the last three over the
    # selected), assumed (selected customers whose action's effect is assumed)
    segments: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def budget_share_assumed(self) -> float:
        """Share of the budget spent that goes to assumed effects (0 when nothing is spent)."""
        return self.budget_used_assumed / self.budget_used if self.budget_used > 0 else 0.0

    def assumed_line(self) -> str:
        """'assumed effects take 23% of the budget (loyalty_programme, ...: no learned effect ...)'."""
        if not self.assumed_actions:
            return "every action's effect is learned from campaign history: none is assumed"
        return (
            f"assumed effects take {self.budget_share_assumed:.0%} of the budget spent "
            f"({', '.join(self.assumed_actions)}: no learned effect from campaign history)"
        )

    def metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow."""
        out = {
            "customers_scored": float(self.customers),
            "mean_p_churn": self.mean_p_churn,
            "total_clv": self.total_clv,
            "total_value_at_risk": self.total_value_at_risk,
            "budget": self.budget,
            "budget_used": self.budget_used,
            "customers_selected": float(self.selected),
            "control_share": self.control_share,
            "customers_control": float(self.controls),
            "expected_value_saved": self.expected_saved_value,
            "expected_value_saved_low": self.expected_saved_low,
            "expected_value_saved_high": self.expected_saved_high,
            "expected_value_saved_learned": self.expected_saved_learned,
            "expected_value_saved_assumed": self.expected_saved_assumed,
            "budget_used_assumed": self.budget_used_assumed,
            "budget_share_assumed": self.budget_share_assumed,
            "expected_net_value_selected": self.expected_net_value,
        }
        if self.prospects is not None:
            out["prospects"] = float(self.prospects)
        out |= {f"out_of_range_share.{name}": share for name, share in self.out_of_range.items()}
        out |= {f"ladder_{r.rung}": float(r.customers) for r in self.ladder.itertuples()}
        out |= {f"valuation_{r.valuation_segment}": float(r.customers) for r in self.valuation.itertuples()}
        for r in self.actions.itertuples():
            out[f"action_{r.action}_best_for"] = float(r.best_for)
            out[f"action_{r.action}_selected"] = float(r.selected)
            out[f"action_{r.action}_control"] = float(r.control)
            out[f"action_{r.action}_learned"] = float(r.source == "learned")
        return out

    def tables(self) -> dict[str, pd.DataFrame]:
        """The per-group tables, by file name."""
        return {
            "ladder_counts": self.ladder,
            "valuation_segments": self.valuation,
            "actions": self.actions,
            "reasons": self.reasons,
            "uplift_segments": self.segments,
        }

    def render(self, header: list[str]) -> str:
        """The end-of-run summary printed on the terminal."""
        lines = ["", *header]
        lines.append(
            f"  customers       {self.customers:,} scored, mean p_churn {self.mean_p_churn:.4f}; "
            f"CLV {self.total_clv:,.0f}, value at risk {self.total_value_at_risk:,.0f}"
        )
        ladder = " | ".join(f"{r.rung} {int(r.customers):,}" for r in self.ladder.itertuples())
        lines.append(f"  loyalty ladder  {ladder}")
        valuation = " | ".join(
            f"{r.valuation_segment} {int(r.customers):,} (VaR {r.value_at_risk:,.0f})"
            for r in self.valuation.itertuples()
        )
        lines.append(f"  valuation       {valuation}")
        top = ", ".join(f"{r.reason} {r.share_top:.0%}" for r in self.reasons.head(5).itertuples())
        lines.append(
            f"  top reasons     {top or 'not computed'} (share of customers with it among their reasons)"
        )
        lines.append(
            f"  {'action':<24}{'kind':<12}{'source':<9}{'best for':>10}{'selected':>10}{'control':>9}{'cost':>12}"
            f"{'exp. saved':>13}{'exp. net':>12}"
        )
        for r in self.actions.itertuples():
            lines.append(
                f"  {r.action:<24}{r.kind:<12}{r.source:<9}{int(r.best_for):>10,}{int(r.selected):>10,}{int(r.control):>9,}"
                f"{r.cost:>12,.0f}"
                f"{r.expected_saved_value:>13,.0f}{r.expected_net_value:>12,.0f}"
            )
        lines.append(
            f"  budget          {self.budget_used:,.0f} of {self.budget:,.0f} on {self.selected:,} customers: "
            f"expected value saved {self.expected_saved_value:,.0f} (interval {self.expected_saved_low:,.0f} .. "
            f"{self.expected_saved_high:,.0f}; {self.expected_saved_assumed:,.0f} of it assumed), "
            f"net {self.expected_net_value:,.0f}"
        )
        lines.append(f"  effects         {self.assumed_line()}")
        if self.control_share > 0:
            lines.append(
                f"  control groups  {self.control_share:.0%} of each action's selection held out: "
                f"{self.controls:,} customers not contacted ('selected' false, assignment 'control'), "
                f"read out by `make readout` once the horizon has passed"
            )
        else:
            lines.append("  control groups  none (actions.control.share 0): no campaign can be read out")
        flagged = {n: s for n, s in self.out_of_range.items() if s > self.out_of_range_warn_share}
        if flagged:
            lines.append(
                f"  out of range    {out_of_range_text(flagged, self.training_ranges)}: share of customers "
                f"outside the feature's training range"
            )
        return "\n".join(lines)


def out_of_range_text(shares: dict[str, float], ranges: dict[str, dict[str, float]]) -> str:
    """'tenure_days 100% (trained on 0 .. 2190)', worst first."""
    return ", ".join(
        f"{name} {share:.0%} (trained on {ranges[name]['min']:g} .. {ranges[name]['max']:g})"
        for name, share in sorted(shares.items(), key=lambda item: -item[1])
    )


def summarise(
    output: Any,
    policy: DecisionPolicy,
    prospects: int | None,
    budget: float,
    control_share: float = 0.0,
    sources: Sequence[str] | None = None,
) -> ScoringSummary:
    """Sum up the scoring output (a DuckDB relation); `control_share` is the share held out of each action's
    selection (`selected` marks the treated, `assignment` 'control' the held-out); `sources`: each catalogue
    action's effect source (decisions.effects.sources; default: every one assumed)."""
    sources = list(sources) if sources is not None else ["assumed"] * len(policy.catalogue)

    def query(sql: str) -> Any:
        return output.query("output_rows", sql)

    totals = query(
        """SELECT count(*), avg(p_churn), sum(clv), sum(value_at_risk),
                   coalesce(sum(action_cost) FILTER (WHERE selected), 0),
                   count(*) FILTER (WHERE selected),
                   coalesce(sum(expected_net_value + action_cost) FILTER (WHERE selected), 0),
                   coalesce(sum(expected_net_value) FILTER (WHERE selected), 0),
                   count(*) FILTER (WHERE assignment = 'control')
            FROM output_rows"""
    ).fetchall()[0]
    claimed = query(
        """SELECT coalesce(sum(value_gain_low), 0), coalesce(sum(value_gain_high), 0),
                   coalesce(sum(value_gain) FILTER (WHERE effect_source = 'learned'), 0),
                   coalesce(sum(value_gain) FILTER (WHERE effect_source = 'assumed'), 0),
                   coalesce(sum(action_cost) FILTER (WHERE effect_source = 'assumed'), 0)
            FROM output_rows WHERE selected"""
    ).fetchall()[0]
    ladder = query(
        """SELECT ladder_rung AS rung, count(*) AS customers, sum(value_at_risk) AS value_at_risk,
                   count(*) FILTER (WHERE selected) AS selected
            FROM output_rows GROUP BY ladder_rung"""
    ).df()
    rungs = pd.DataFrame({"rung": list(policy.ladder.rungs)})
    ladder = rungs.merge(ladder, on="rung", how="left")
    ladder[["customers", "value_at_risk", "selected"]] = ladder[
        ["customers", "value_at_risk", "selected"]
    ].fillna(0)
    if prospects is not None:
        ladder.loc[ladder["rung"] == policy.ladder.prospect, "customers"] = prospects
    valuation = query(
        """SELECT valuation_segment, count(*) AS customers, sum(clv) AS clv, sum(value_at_risk) AS value_at_risk,
                   count(*) FILTER (WHERE selected) AS selected
            FROM output_rows GROUP BY valuation_segment ORDER BY sum(clv) DESC"""
    ).df()
    actions = query(
        """SELECT action, count(*) AS best_for, count(*) FILTER (WHERE selected) AS selected,
                   count(*) FILTER (WHERE assignment = 'control') AS control,
                   coalesce(sum(action_cost) FILTER (WHERE selected), 0) AS cost,
                   coalesce(sum(expected_net_value + action_cost) FILTER (WHERE selected), 0) AS expected_saved_value,
                   coalesce(sum(expected_net_value) FILTER (WHERE selected), 0) AS expected_net_value
            FROM output_rows WHERE action IS NOT NULL GROUP BY action"""
    ).df()
    catalogue = pd.DataFrame(
        {
            "action": policy.action_names,
            "kind": [a.kind for a in policy.catalogue],
            "capacity": [a.capacity for a in policy.catalogue],
            "source": sources,
        }
    )
    actions = catalogue.merge(actions, on="action", how="left")
    counts = ["best_for", "selected", "control", "cost", "expected_saved_value", "expected_net_value"]
    actions[counts] = actions[counts].fillna(0)
    segments = query(
        """SELECT uplift_segment, count(*) AS customers, count(*) FILTER (WHERE selected) AS selected,
                   coalesce(sum(value_gain) FILTER (WHERE selected), 0) AS value_gain,
                   coalesce(sum(value_gain_low) FILTER (WHERE selected), 0) AS value_gain_low,
                   coalesce(sum(value_gain_high) FILTER (WHERE selected), 0) AS value_gain_high,
                   count(*) FILTER (WHERE selected AND effect_source = 'assumed') AS assumed
            FROM output_rows WHERE uplift_segment IS NOT NULL GROUP BY uplift_segment ORDER BY uplift_segment"""
    ).df()
    reason_columns = [f"reason_{i + 1}" for i in range(policy.top_reasons)]
    if reason_columns:
        listed = " UNION ALL ".join(
            f"SELECT {identifier(c)} AS reason, {i == 0} AS first FROM output_rows WHERE {identifier(c)} IS NOT NULL"
            for i, c in enumerate(reason_columns)
        )
        reasons = query(
            f"""SELECT reason, count(*) FILTER (WHERE first) AS first, count(*) AS top
                FROM ({listed}) GROUP BY reason ORDER BY count(*) DESC, reason"""
        ).df()
    else:
        reasons = pd.DataFrame({"reason": [], "first": [], "top": []})
    reasons["share_top"] = reasons["top"] / max(int(totals[0]), 1)
    curve = query(
        """SELECT sum(action_cost) OVER w AS cumulative_cost, sum(expected_net_value) OVER w AS cumulative_value
            FROM output_rows WHERE expected_net_value > 0
            WINDOW w AS (ORDER BY priority ROWS UNBOUNDED PRECEDING) ORDER BY priority"""
    ).df()
    if len(curve) > CURVE_POINTS:
        keep = np.unique(np.linspace(0, len(curve) - 1, CURVE_POINTS).astype(int))
        curve = curve.iloc[keep].reset_index(drop=True)
    return ScoringSummary(
        customers=int(totals[0]),
        prospects=prospects,
        mean_p_churn=float(totals[1]) if totals[1] is not None else float("nan"),
        total_clv=float(totals[2] or 0.0),
        total_value_at_risk=float(totals[3] or 0.0),
        budget=float(budget),
        budget_used=float(totals[4]),
        selected=int(totals[5]),
        expected_saved_value=float(totals[6]),
        expected_net_value=float(totals[7]),
        ladder=ladder,
        valuation=valuation,
        actions=actions,
        reasons=reasons,
        budget_curve=curve,
        control_share=float(control_share),
        controls=int(totals[8]),
        expected_saved_low=float(claimed[0]),
        expected_saved_high=float(claimed[1]),
        expected_saved_learned=float(claimed[2]),
        expected_saved_assumed=float(claimed[3]),
        budget_used_assumed=float(claimed[4]),
        segments=segments,
        assumed_actions=tuple(
            a.name for a, s in zip(policy.catalogue, sources, strict=True) if s != "learned"
        ),
    )


def summary_figures(summary: ScoringSummary) -> dict[str, Figure]:
    """Plots of the run: the budget curve, the loyalty ladder and value at risk by valuation segment."""
    figures = {}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    curve = summary.budget_curve
    if len(curve):
        ax.plot(curve["cumulative_cost"], curve["cumulative_value"], color="tab:blue", label="priority order")
    ax.axvline(summary.budget, color="tab:red", linestyle="--", label=f"budget {summary.budget:,.0f}")
    ax.scatter(
        [summary.budget_used], [summary.expected_net_value], color="tab:red", zorder=3,
        label=f"selected: {summary.selected:,} customers",
    )  # fmt: skip
    ax.set_xlabel("cumulative cost of actions")
    ax.set_ylabel("cumulative expected net value")
    ax.set_title(
        "What more budget buys\n(customers with positive expected net value, in priority order)", fontsize=10
    )
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    figures["budget_curve.png"] = fig

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ladder = summary.ladder
    bars = ax.bar(ladder["rung"], ladder["customers"], color="tab:green")
    for bar, (_, row) in zip(bars, ladder.iterrows(), strict=True):
        text = f"{int(row.customers):,}" + (f"\nVaR {row.value_at_risk:,.0f}" if row.value_at_risk else "")
        ax.annotate(
            text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8
        )
    ax.set_ylim(top=max(float(ladder["customers"].max()), 1.0) * 1.18)
    ax.set_ylabel("customers")
    ax.set_title("Loyalty ladder (prospects are counted, not scored)")
    figures["loyalty_ladder.png"] = fig

    fig, ax = plt.subplots(figsize=(7, 4.5))
    valuation = summary.valuation
    ax.bar(valuation["valuation_segment"], valuation["value_at_risk"], color="tab:orange")
    ax.set_ylabel("value at risk (p_churn x CLV)")
    ax.set_title("Value at risk by valuation segment")
    figures["value_at_risk_by_segment.png"] = fig
    return figures
