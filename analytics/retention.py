"""Retention measures: retention rate per period and group, expected lifetime 1 / (1 - r), and Kaplan-Meier
survival with censoring and delayed entry, with their plots.

The functions take plain tables (one row per customer and period, or per customer spell) and return tables;
which customers are "customers" at a date is decided upstream, from the data (`pipeline.report`).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def retention_table(periods: pd.DataFrame, by: Sequence[str] = (), min_customers: int = 1) -> pd.DataFrame:
    """Customer retention rate per period (and group): retained / customers at the start of the period.

    `periods` has one row per customer and period: `period` (a label), `retained` (still a customer at the end
    of the period) and the grouping columns `by` (as they were at the start of the period). Groups with fewer
    than `min_customers` customers at the start are left out.
    """
    keys = ["period", *by]
    table = (
        periods.groupby(keys, observed=True, dropna=False)["retained"]
        .agg(customers="size", retained="sum")
        .reset_index()
    )
    table["retained"] = table["retained"].astype(int)
    table["retention_rate"] = table["retained"] / table["customers"]
    return table[table["customers"] >= min_customers].reset_index(drop=True)


def expected_lifetime(retention_rate: float | np.ndarray) -> float | np.ndarray:
    """Expected customer lifetime in periods, 1 / (1 - r), for a constant retention rate r per period."""
    r = np.asarray(retention_rate, dtype=float)
    if np.any((r < 0) | (r >= 1)):
        raise ValueError("a retention rate must be in [0, 1) for a finite expected lifetime")
    lifetime = 1.0 / (1.0 - r)
    return float(lifetime) if lifetime.ndim == 0 else lifetime


def lifetime_table(
    annual_retention: float,
    annual_margin: float,
    customers: int,
    improvements: Sequence[float] = (0.05, 0.10),
) -> pd.DataFrame:
    """How lifetime and value change when annual retention improves by each of `improvements` (in points).

    Lifetime = 1 / (1 - r) years; lifetime value per customer = annual margin x lifetime (undiscounted); the
    value of the base = customers x lifetime value. Improved rates are capped just below 1.
    """
    rows = []
    for gain in (0.0, *improvements):
        r = min(annual_retention + gain, 0.999)
        lifetime = expected_lifetime(r)
        rows.append(
            {
                "scenario": "current" if gain == 0 else f"+{gain * 100:.0f} points",
                "annual_retention": r,
                "expected_lifetime_years": lifetime,
                "lifetime_value_per_customer": annual_margin * lifetime,
                "value_of_the_base": customers * annual_margin * lifetime,
            }
        )
    table = pd.DataFrame(rows)
    base = table.loc[0, "value_of_the_base"]
    table["value_change"] = table["value_of_the_base"] - base
    table["value_change_pct"] = 100.0 * table["value_change"] / base if base else np.nan
    return table


def kaplan_meier(
    duration: np.ndarray, event: np.ndarray, entry: np.ndarray | None = None, z: float = 1.959964
) -> pd.DataFrame:
    """Kaplan-Meier survival estimate with right censoring and (optionally) delayed entry.

    `duration` is each subject's time at exit (event or censoring), `event` whether the exit was the event
    (churn), `entry` the time from which the subject was observed (left truncation: a customer who joined
    before the data starts is at risk only from then). At each distinct event time t, the risk set holds the
    subjects with entry < t <= duration; S(t) = prod (1 - d_i / n_i). Greenwood's variance gives a pointwise
    confidence interval on the log(-log) scale. Returns one row per distinct event time, starting at time 0.
    """
    duration = np.asarray(duration, dtype=float)
    event = np.asarray(event, dtype=bool)
    entry = np.zeros_like(duration) if entry is None else np.asarray(entry, dtype=float)
    if np.any(entry > duration):
        raise ValueError("a subject cannot leave before it enters (entry > duration)")
    times = np.unique(duration[event])
    rows = [
        {
            "time": 0.0,
            "at_risk": int(np.sum(entry <= 0)),
            "events": 0,
            "censored": 0,
            "survival": 1.0,
            "greenwood": 0.0,
        }
    ]
    survival, greenwood = 1.0, 0.0
    for t in times:
        at_risk = int(np.sum((entry < t) & (duration >= t)))
        events = int(np.sum(event & (duration == t)))
        censored = int(np.sum(~event & (duration == t)))
        if at_risk == 0:
            continue
        survival *= 1.0 - events / at_risk
        if at_risk > events:
            greenwood += events / (at_risk * (at_risk - events))
        rows.append(
            {"time": t, "at_risk": at_risk, "events": events, "censored": censored, "survival": survival,
             "greenwood": greenwood}
        )  # fmt: skip
    follow_up = float(duration.max()) if len(duration) else 0.0
    if follow_up > rows[-1]["time"]:  # the curve runs on, flat, to the last censored customer
        at_risk = int(np.sum((entry < follow_up) & (duration >= follow_up)))
        rows.append({**rows[-1], "time": follow_up, "at_risk": at_risk, "events": 0,
                     "censored": int(np.sum(~event & (duration == follow_up)))})  # fmt: skip
    table = pd.DataFrame(rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.log(table["survival"].to_numpy())
        spread = z * np.sqrt(table["greenwood"].to_numpy()) / np.abs(log_s)
        low = np.exp(-np.exp(np.log(-log_s) + spread))
        high = np.exp(-np.exp(np.log(-log_s) - spread))
    positive = (table["survival"] > 0) & (table["survival"] < 1)
    table["ci_low"] = np.where(positive, low, table["survival"])
    table["ci_high"] = np.where(positive, high, table["survival"])
    return table.drop(columns="greenwood")


def survival_at(curve: pd.DataFrame, times: Sequence[float]) -> list[float]:
    """S(t) of a Kaplan-Meier table at each of `times` (the step function, right-continuous); NaN after the
    last follow-up, where the data says nothing."""
    known = curve["time"].to_numpy()
    index = np.searchsorted(known, np.asarray(times, dtype=float), side="right") - 1
    return [
        float(curve["survival"].iloc[i]) if t <= known[-1] else float("nan")
        for i, t in zip(index, times, strict=True)
    ]


def median_survival(curve: pd.DataFrame) -> float:
    """The first time S(t) <= 0.5 (NaN when the curve stays above one half)."""
    below = curve[curve["survival"] <= 0.5]
    return float(below["time"].iloc[0]) if len(below) else float("nan")


def survival_by_group(spells: pd.DataFrame, group: str, min_customers: int = 30) -> dict[str, pd.DataFrame]:
    """Kaplan-Meier curves of `spells` (duration, event, entry) per value of `group`, for groups big enough."""
    curves = {}
    for value, rows in spells.groupby(group, observed=True):
        if len(rows) >= min_customers:
            curves[str(value)] = kaplan_meier(rows["duration"], rows["event"], rows["entry"])
    return curves


def survival_figure(curves: dict[str, pd.DataFrame], title: str, unit: str = "months") -> Figure:
    """Step plots of Kaplan-Meier curves with their confidence bands."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in curves.items():
        line = ax.step(curve["time"], curve["survival"], where="post", label=name)[0]
        ax.fill_between(curve["time"], curve["ci_low"], curve["ci_high"], step="post", alpha=0.15,
                        color=line.get_color())  # fmt: skip
    ax.set_xlabel(f"tenure ({unit})")
    ax.set_ylabel("share still a customer (Kaplan-Meier)")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def retention_figure(table: pd.DataFrame, group: str | None, title: str) -> Figure:
    """Retention rate per period, one line per group."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    periods = sorted(table["period"].astype(str).unique())  # one shared, ordered axis for every group
    position = {period: i for i, period in enumerate(periods)}
    for value, rows in [(None, table)] if group is None else table.groupby(group, observed=True):
        x = rows["period"].astype(str).map(position)
        ax.plot(x, rows["retention_rate"], marker="o", label=None if value is None else str(value))
    if group is not None:
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(periods)), periods)
    ax.set_ylabel("retention rate")
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", rotation=45)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
