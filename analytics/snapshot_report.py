"""The retention report of a snapshot table (data=snapshot; see docs/report.md).

A snapshot holds one row per customer and whether each left within one label period
(`data.label.period_months`, features.snapshot.label_period), so the report is built from that period:

- retention rate r = 1 - churn rate over the period, overall and by contract, segment and every column with
  few values, with the expected lifetime 1 / (1 - r) periods, r per month (r ** (1 / period_months)) and r per
  year (r ** (12 / period_months));
- what 5 and 10 more points of annual retention are worth;
- Kaplan-Meier curves over tenure by contract type, with churn as the event and stayers censored at their
  tenure. A snapshot only holds customers still there at the start of its period, so customers who left
  earlier are missing: read the curves as "among today's customers", not as a cohort's history;
- lifetime value and value at risk, the corrective plan (latest scoring) and the model's reasons for churners.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from analytics.retention import expected_lifetime, kaplan_meier, lifetime_table, survival_at, survival_figure
from analytics.sections import Report, add_latest_scoring, model_reasons_of_churners, reason_inputs
from features.build import load_snapshot, snapshot_data_end
from features.dates import as_of_date
from features.io import TableFile
from features.labels import DAYS_PER_MONTH
from features.snapshot import RAW, feature_select, label_expression, label_period
from features.sql import identifier

MAX_LEVELS = 12  # columns with more values are not broken down


def retention_by(frame: pd.DataFrame, column: str, periods_per_year: float, minimum: int) -> pd.DataFrame:
    """Customers, churn and retention rate over the period, expected lifetime, monthly and annual retention per
    value of `column` (values with fewer than `minimum` customers left out)."""
    table = (
        frame.groupby(column, observed=True, dropna=False)["churned"]
        .agg(customers="size", churned="sum")
        .reset_index()
    )
    table = table[table["customers"] >= minimum].copy()
    table["retention_rate"] = 1.0 - table["churned"] / table["customers"]
    rate = table["retention_rate"].clip(upper=0.999)
    table["expected_lifetime_periods"] = expected_lifetime(rate.to_numpy())
    table["monthly_retention"] = rate ** (periods_per_year / 12)
    table["annual_retention"] = rate**periods_per_year
    return table.sort_values("retention_rate").reset_index(drop=True)


def build_snapshot_report(cfg: DictConfig) -> tuple[Report, dict[str, TableFile]]:
    """Every section of a snapshot's report (see the module docstring)."""
    import matplotlib.pyplot as plt

    loaded = load_snapshot(cfg)
    con, spec, table, planned = loaded.con, loaded.spec, loaded.table, loaded.planned
    period = label_period(cfg.data.label)
    horizon = round(period.days)
    periods_per_year = 12 / period.months
    minimum = int(cfg.report.min_customers)
    as_of = as_of_date(spec.as_of, snapshot_data_end(con, table))
    breakdown = [
        c for c, s in ((c, planned.sources.get(n)) for n, c in _raw_columns(planned.sources).items())
        if s and s["kind"] in ("binary", "categorical", "term")
    ]  # fmt: skip
    first = [c for c in (spec.contract.column if spec.contract else None, spec.segment) if c]
    breakdown = list(dict.fromkeys(first + breakdown))  # contract and segment first, each column once
    raw = ", ".join(f"CAST({identifier(c)} AS VARCHAR) AS {identifier('by ' + c)}" for c in breakdown)
    select = feature_select(
        table, spec.id_column, planned.features, as_of,
        extra=f"{label_expression(spec)} AS churned" + (f", {raw}" if raw else ""),
    )  # fmt: skip
    frame = con.sql(f"{select} ORDER BY {RAW}.__row").df()
    customers, churners = len(frame), int(frame["churned"].sum())
    r = 1.0 - churners / customers
    annual = min(r, 0.999) ** periods_per_year
    monthly = min(r, 0.999) ** (1 / period.months)
    report = Report(f"Retention report: {cfg.data.name} ({spec.path.name}), {customers:,} customers")
    report.metrics |= {
        "customers": float(customers),
        "churners": float(churners),
        "period_retention": r,
        "period_months": period.months,
        "monthly_retention": monthly,
        "annual_retention": annual,
        "expected_lifetime_years": float(expected_lifetime(min(annual, 0.999))),
    }
    overall = pd.DataFrame(
        [
            {
                "customers": customers,
                "churned": churners,
                "period_months": period.months,
                "period_days": horizon,
                "retention_rate": r,
                "monthly_retention": monthly,
                "expected_lifetime_periods": float(expected_lifetime(min(r, 0.999))),
                "annual_retention": annual,
                "expected_lifetime_years": report.metrics["expected_lifetime_years"],
            }
        ]
    )
    by_column = {
        f"by {column}": retention_by(frame, f"by {column}", periods_per_year, minimum).rename(
            columns={f"by {column}": column}
        )
        for column in breakdown
        if frame[f"by {column}"].nunique(dropna=False) <= MAX_LEVELS
    }
    figures: dict[str, Any] = {}
    if spec.contract and f"by {spec.contract.column}" in by_column:
        contract = by_column[f"by {spec.contract.column}"]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.barh(contract[spec.contract.column].astype(str), contract["retention_rate"], color="tab:blue")
        ax.set_xlabel(f"retention rate over {period.span}")
        ax.set_xlim(0, 1)
        ax.set_title(f"Retention by {spec.contract.column}", fontsize=10)
        figures["retention_by_contract.png"] = fig
    report.add(
        "Retention rate and expected lifetime",
        f"The snapshot's churn column ({spec.label_column} = {spec.positive!r}) covers {period.describe()} "
        f"(data.label.period_months). Retention r = 1 - churn rate over that period; expected lifetime "
        f"1 / (1 - r) periods; r per month = r ** (1 / {period.months:g}) ({monthly:.2%} overall); r per year = "
        f"r ** (12 / {period.months:g}). Breakdowns by every column with at most {MAX_LEVELS} values (groups of "
        f"at least {minimum} customers), lowest retention first.",
        {"overall": overall, **by_column},
        figures,
    )
    revenue = frame["monthly_revenue"] if "monthly_revenue" in frame else pd.Series(dtype=float)
    annual_margin = (
        float(cfg.value.margin_rate) * 12 * float(revenue.mean()) if revenue.notna().any() else 0.0
    )
    report.add(
        "What more retention is worth",
        f"Expected lifetime 1 / (1 - r) years for annual retention r, and the undiscounted value of the base at an "
        f"annual margin of {annual_margin:,.0f} per customer (value.margin_rate x 12 x mean monthly revenue).",
        {"lifetime": lifetime_table(annual, annual_margin, customers)},
    )
    if "tenure_days" in frame:
        spells = pd.DataFrame(
            {
                "duration": frame["tenure_days"].to_numpy(dtype=float) / DAYS_PER_MONTH,
                "event": frame["churned"].to_numpy(dtype=int),
                "group": frame[f"by {spec.contract.column}"] if spec.contract else "all customers",
            }
        ).dropna(subset=["duration"])
        curves = {
            str(name): kaplan_meier(rows["duration"].to_numpy(), rows["event"].to_numpy())
            for name, rows in spells.groupby("group")
            if len(rows) >= minimum
        }
        at = [12.0, 24.0, 48.0]
        survival = pd.DataFrame(
            [{"group": name, **{f"S({m:.0f} months)": s for m, s in zip(at, survival_at(c, at), strict=True)}}
             for name, c in curves.items()]
        )  # fmt: skip
        report.add(
            "Survival over tenure",
            "Kaplan-Meier over tenure in months: churners leave at their tenure, stayers are censored at it. The "
            "snapshot holds only customers present at the start of its period (those who left earlier are not "
            "in it), so these curves describe today's customers, not a cohort followed from signup.",
            {"survival at 1, 2 and 4 years": survival},
            {"survival_by_contract.png": survival_figure(curves, "Survival over tenure (Kaplan-Meier)")},
        )
    model_reasons, note = model_reasons_of_churners(*reason_inputs(cfg))
    report.add(
        "Why customers defect",
        f"The model's reasons for the churners of the snapshot ({note}).",
        {"the model's reasons (top 3 per churner)": model_reasons},
    )
    add_latest_scoring(report, Path(cfg.score.output_dir))
    return report, {"snapshot": table.file}


def _raw_columns(sources: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Feature -> the raw column it reads, for features that read exactly one column."""
    return {name: s["columns"][0] for name, s in sources.items() if len(s["columns"]) == 1}
