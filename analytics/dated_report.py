"""The retention report of dated tables (data=demo, data=tables; see docs/report.md):

- customer retention rate per quarter and year: the share of customers at the start of the period who are
  still customers at its end, overall and by signup cohort, product, segment, contract type and ladder rung;
- expected customer lifetime 1 / (1 - r) for the annual retention r, and what 5 and 10 more points are worth;
- Kaplan-Meier survival curves by cohort and contract type (censoring and late entry handled);
- why customers defect: complaints and unresolved complaints before churning, and the model's reasons;
- lifetime value, value at risk and the corrective plan of the latest scoring (analytics.sections).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from analytics.retention import (
    lifetime_table,
    median_survival,
    retention_figure,
    retention_table,
    survival_at,
    survival_by_group,
    survival_figure,
)
from analytics.sections import (
    Report,
    add_latest_readout,
    add_latest_scoring,
    model_reasons_of_churners,
    reason_inputs,
)
from decisions.ladder import LoyaltyLadder
from decisions.rules import referenced_names
from decisions.value import RevenueRule
from features.engine import (
    DataWindow,
    FeatureBuild,
    FeaturePlan,
    data_window,
    features_as_of,
    plan_every_feature,
    plan_features,
)
from features.errors import ConfigError
from features.labels import DAYS_PER_MONTH
from features.sql import identifier, literal


def period_starts(window: DataWindow, months: int) -> list[date]:
    """Period boundaries: first days of months divisible into periods of `months`, within the data window."""
    starts = []
    year, month = window.start.year, window.start.month
    if window.start.day != 1:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    while (month - 1) % months:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    while date(year, month, 1) <= window.end:
        starts.append(date(year, month, 1))
        month += months
        while month > 12:
            year, month = year + 1, month - 12
    return starts


def snapshot_customers(
    con: Any,
    present: set[str],
    window: DataWindow,
    dates: list[date],
    ladder: LoyaltyLadder,
    features_cfg: dict[str, Any],
    label_cfg: dict[str, Any],
    revenue: RevenueRule,
) -> pd.DataFrame:
    """The customers at each date (the label's population) with what the report groups them by, and their
    monthly revenue by the revenue rule scoring uses."""
    plan = plan_features(features_cfg, present, ())
    by_name = {f.name: f for f in plan.features}
    needed = set().union(*(referenced_names(sql, by_name) for sql in ladder.rules.values()))
    revenue_inputs = [name for name in revenue.features if name in by_name]
    needed |= ({"max_term_months"} | set(revenue_inputs)) & set(by_name)
    snapshot_plan = FeaturePlan(tuple(f for f in plan.features if f.name in needed), plan.skipped, ())
    build = FeatureBuild(snapshot_plan, tuple(dates), window, 0, label_cfg, {})
    features = features_as_of(con, build, present, dates)
    configured = {f.name for f in plan_every_feature(features_cfg).features}
    rule_inputs = sorted(set().union(*(referenced_names(sql, by_name) for sql in ladder.rules.values())))
    absent = {
        name: "DOUBLE"
        for sql in ladder.rules.values()
        for name in sorted(referenced_names(sql, configured) - needed)
    }
    columns = set(features.columns)
    segment = "c.segment" if "segment" in _columns(con, "customers") else "CAST(NULL AS VARCHAR)"
    contract = (
        contract_type_sql("f.max_term_months") if "max_term_months" in columns else "CAST(NULL AS VARCHAR)"
    )
    # The ladder's rules run on a connection that cannot reach files: the feature columns they use come out
    # with the rows (under names that cannot collide with the report's columns), the rung is computed there
    # for the same rows in the same order, and the rows go back to pandas the way DuckDB converts them.
    inputs = "".join(
        f", f.{identifier(name)} AS {identifier('__rule_input__' + name)}" for name in rule_inputs
    )
    revenue_columns = "".join(
        f", CAST(f.{identifier(name)} AS DOUBLE) AS {identifier('__revenue__' + name)}"
        for name in revenue_inputs
    )
    rows = features.query(
        "report_features",
        f"""SELECT f.observation_date AS period_start, f.customer_id,
                   CAST(year(c.signup_date) AS VARCHAR) AS cohort, {segment} AS segment,
                   {contract} AS contract_type{revenue_columns}{inputs}
            FROM report_features f JOIN customers c USING (customer_id)""",
    ).to_arrow_table()
    rule_rows = rows.select(["customer_id", *(f"__rule_input__{name}" for name in rule_inputs)])
    rungs = ladder.rungs_of(rule_rows.rename_columns(["customer_id", *rule_inputs]), absent)
    report_columns = ["period_start", "customer_id", "cohort", "segment", "contract_type"]
    snapshots = rows.select(report_columns).add_column(5, "ladder_rung", rungs)
    frame = con.from_arrow(snapshots).df()
    amounts = rows.select([f"__revenue__{name}" for name in revenue_inputs]).to_pandas()
    amounts.columns = revenue_inputs
    frame["monthly_revenue"] = revenue.monthly_revenue(amounts)
    return frame


def contract_type_sql(term_months: str) -> str:
    """The contract type of a longest term in months (SQL over the expression `term_months`): month-to-month
    for 0, else the term as it is, e.g. '6-month term', '24-month term'."""
    return (
        f"CASE WHEN {term_months} IS NULL THEN NULL WHEN {term_months} = 0 THEN 'month-to-month' "
        f"ELSE CAST(CAST(round({term_months}) AS INTEGER) AS VARCHAR) || '-month term' END"
    )


def _columns(con: Any, table: str) -> set[str]:
    return {row[0] for row in con.execute(f"DESCRIBE {identifier(table)}").fetchall()}


def period_rows(snapshots: pd.DataFrame, starts: list[date], label: str) -> pd.DataFrame:
    """One row per customer at the start of each complete period, with whether they were there at its end."""
    rows = []
    present = snapshots.groupby("period_start")["customer_id"].apply(set).to_dict()
    for begin, end in zip(starts[:-1], starts[1:], strict=True):
        at_start = snapshots[snapshots["period_start"] == pd.Timestamp(begin)]
        at_end = present.get(pd.Timestamp(end), set())
        frame = at_start.assign(
            period=_period_label(begin, label), retained=at_start["customer_id"].isin(at_end).to_numpy()
        )
        rows.append(frame)
    return (
        pd.concat(rows, ignore_index=True) if rows else snapshots.iloc[0:0].assign(period="", retained=False)
    )


def by_period_columns(table: pd.DataFrame, group: str, order: list[str] | None = None) -> pd.DataFrame:
    """A retention table with one row per group (in `order` if given) and one retention-rate column per
    period, and the customers at the start of the last period."""
    rates = table.pivot(index=group, columns="period", values="retention_rate")
    rates.columns = [f"retention {period}" for period in rates.columns]
    last = table[table["period"] == table["period"].max()].set_index(group)["customers"]
    wide = rates.assign(customers_at_last_start=last)
    if order:
        wide = wide.reindex([g for g in order if g in wide.index])
    return wide.reset_index()


def _period_label(begin: date, label: str) -> str:
    return str(begin.year) if label == "year" else f"{begin.year}-Q{(begin.month - 1) // 3 + 1}"


def customer_spells(con: Any, window: DataWindow) -> pd.DataFrame:
    """Each customer's spell as a subscriber, in months: entry (late entry when it began before the data was
    observed), duration to churn or to the end of the data (censored), the start cohort and first contract."""
    spells = con.execute(
        """WITH firsts AS (
             SELECT customer_id, min(start_date) AS origin,
                    max(end_date) AS last_end, bool_or(end_date IS NULL) AS active,
                    arg_min(contract_term_months, start_date) AS first_term
             FROM subscriptions GROUP BY customer_id)
           SELECT customer_id, origin, CASE WHEN active THEN NULL ELSE last_end END AS churn_date, first_term
           FROM firsts"""
    ).df()
    origin = pd.to_datetime(spells["origin"])
    churn = pd.to_datetime(spells["churn_date"])
    observed_from, end = pd.Timestamp(window.start), pd.Timestamp(window.end)
    exit_ = churn.fillna(end)
    spells["event"] = churn.notna().to_numpy()
    spells["duration"] = (exit_ - origin).dt.days / DAYS_PER_MONTH
    spells["entry"] = ((observed_from - origin).dt.days / DAYS_PER_MONTH).clip(lower=0)
    spells["cohort"] = np.where(
        origin < observed_from, f"before {observed_from.year}", origin.dt.year.astype(str)
    )
    spells["contract_type"] = np.where(spells["first_term"] > 0, "term contract", "month-to-month")
    return spells[spells["duration"] > spells["entry"]].reset_index(drop=True)


def defection_reasons(
    con: Any, spells: pd.DataFrame, window: DataWindow, lookback_days: int, present: set[str]
) -> pd.DataFrame:
    """Complaint categories and unresolved complaints before churning, among churners and, for comparison,
    among the customers still there at the end of the data (in the same look-back)."""
    if "complaints" not in present:
        return pd.DataFrame()
    churned = spells[spells["event"]][["customer_id", "churn_date"]].rename(columns={"churn_date": "until"})
    churned["until"] = pd.to_datetime(churned["until"])
    stayed = spells[~spells["event"]][["customer_id"]].assign(until=pd.Timestamp(window.end))
    con.register("report_people", pd.concat([churned.assign(group="churned"), stayed.assign(group="stayed")]))
    table = con.execute(
        f"""WITH people AS (SELECT customer_id, CAST(until AS TIMESTAMP) AS until, "group" FROM report_people),
                 totals AS (SELECT "group", count(*) AS n FROM people GROUP BY "group"),
                 hits AS (
                   SELECT p."group", 'complaint: ' || c.category AS reason, p.customer_id
                   FROM people p JOIN complaints c ON c.customer_id = p.customer_id
                    AND c.opened_at < p.until AND c.opened_at >= p.until - INTERVAL {int(lookback_days)} DAY
                   UNION ALL
                   SELECT p."group", 'unresolved complaint when leaving', p.customer_id
                   FROM people p JOIN complaints c ON c.customer_id = p.customer_id
                    AND c.opened_at < p.until AND (c.resolved_at IS NULL OR c.resolved_at >= p.until))
            SELECT h.reason, h."group", count(DISTINCT h.customer_id) AS customers, any_value(t.n) AS of_customers
            FROM hits h JOIN totals t USING ("group") GROUP BY h.reason, h."group" """
    ).df()
    con.unregister("report_people")
    if table.empty:
        return table
    table["share"] = table["customers"] / table["of_customers"]
    both = pd.MultiIndex.from_product([["customers", "share"], ["churned", "stayed"]])
    wide = table.pivot(index="reason", columns="group", values=["customers", "share"]).reindex(columns=both)
    wide = wide.fillna(0)
    out = pd.DataFrame(
        {
            "reason": wide.index,
            "churners": wide[("customers", "churned")].astype(int).to_numpy(),
            "share_of_churners": wide[("share", "churned")].to_numpy(),
            "share_of_stayers": wide[("share", "stayed")].to_numpy(),
        }
    )
    out["lift"] = out["share_of_churners"] / out["share_of_stayers"].replace(0, np.nan)
    return out.sort_values(["churners", "reason"], ascending=[False, True]).reset_index(drop=True)


def build_report(cfg: DictConfig, con: Any, present: set[str]) -> Report:
    """Compute every section of the report from the validated tables on `con`."""
    window = data_window(con, present)
    ladder = LoyaltyLadder.from_config(OmegaConf.to_container(cfg.ladder, resolve=True))
    months = int(cfg.report.period_months)
    starts = period_starts(window, months)
    if len(starts) < 2:
        raise ConfigError(
            f"the data ({window.start} .. {window.end}) spans no complete period of {months} months"
        )
    report = Report(f"Retention report: {cfg.data.name}, data {window.start} to {window.end}")
    features_cfg = OmegaConf.to_container(cfg.features, resolve=True)
    label_cfg = OmegaConf.to_container(cfg.label, resolve=True)
    revenue = RevenueRule.from_config(cfg.value, present)
    snapshots = snapshot_customers(con, present, window, starts, ladder, features_cfg, label_cfg, revenue)
    snapshots["period_start"] = pd.to_datetime(snapshots["period_start"])
    minimum = int(cfg.report.min_customers)

    quarters = period_rows(snapshots, starts, "quarter" if months == 3 else "period")
    years = period_rows(snapshots, [d for d in starts if d.month == 1], "year")
    by_period = {"per quarter" if months == 3 else f"per {months} months": quarters, "per year": years}
    overall = {name: retention_table(rows) for name, rows in by_period.items()}
    report.add(
        "Customer retention rate",
        "Share of the customers at the start of each period who are still customers at its end (customers: "
        f"the label's population, '{cfg.label.population}').",
        {f"overall {name}": table for name, table in overall.items()},
        {
            "retention_overall.png": retention_figure(
                overall[next(iter(overall))], None, "Retention rate per period"
            )
        },
    )
    groups = {
        "signup cohort": "cohort",
        "segment": "segment",
        "contract type": "contract_type",
        "ladder rung": "ladder_rung",
    }
    group_tables, group_figures = {}, {}
    for title, column in groups.items():
        if quarters[column].notna().any():
            table = retention_table(years if not years.empty else quarters, [column], minimum)
            order = list(ladder.rungs) if column == "ladder_rung" else None
            group_tables[f"by {title} (per year)"] = by_period_columns(table, column, order)
            group_figures[f"retention_by_{column}.png"] = retention_figure(
                retention_table(quarters, [column], minimum), column, f"Retention rate per quarter by {title}"
            )
    if "subscriptions" in present:
        products = con.execute(
            f"""SELECT DISTINCT o.observation_date AS period_start, s.customer_id, s.product
               FROM (SELECT unnest([{", ".join(literal(d) for d in starts)}]) AS observation_date) o JOIN subscriptions s
                 ON s.start_date < o.observation_date AND (s.end_date IS NULL OR s.end_date >= o.observation_date)"""
        ).df()
        products["period_start"] = pd.to_datetime(products["period_start"])
        product_rows = (years if not years.empty else quarters)[
            ["period_start", "customer_id", "period", "retained"]
        ]
        product_rows = product_rows.merge(products, on=["period_start", "customer_id"])
        group_tables["by product held at the start (per year)"] = by_period_columns(
            retention_table(product_rows, ["product"], minimum), "product"
        )
    report.add(
        "Retention by group", "Groups as they were at the start of each period.", group_tables, group_figures
    )

    annual = overall["per year"]
    if annual.empty:
        annual_rate = float(overall[next(iter(overall))]["retention_rate"].mean()) ** (12 / months)
        basis = f"the mean {months}-month rate, compounded to a year"
    else:
        annual_rate = float(annual["retained"].sum() / annual["customers"].sum())
        basis = f"all customers of the complete years {', '.join(annual['period'])}"
    latest = snapshots[snapshots["period_start"] == snapshots["period_start"].max()]
    margin = float(cfg.value.margin_rate) * 12 * float(latest["monthly_revenue"].fillna(0).mean())
    lifetimes = lifetime_table(annual_rate, margin, len(latest), list(cfg.report.improvements))
    report.metrics |= {
        "annual_retention": annual_rate,
        "expected_lifetime_years": lifetimes.loc[0, "expected_lifetime_years"],
    }
    report.add(
        "Expected lifetime and what retention is worth",
        f"Expected lifetime = 1 / (1 - r) years for the annual retention r = {annual_rate:.1%} ({basis}): "
        "80% gives 5 years, 90% gives 10. Lifetime value = annual margin x lifetime (undiscounted), with the "
        f"annual margin {margin:,.0f} = margin rate {cfg.value.margin_rate} x 12 x the mean monthly revenue of "
        f"the {len(latest):,} customers at the end of the data.",
        {"lifetime and value by annual retention": lifetimes},
    )

    if "subscriptions" in present:
        spells = customer_spells(con, window)
        curves = {
            column: survival_by_group(spells, column, minimum) for column in ("cohort", "contract_type")
        }
        summary = pd.DataFrame(
            [
                {"group": column, "value": name, "customers": int((spells[column] == name).sum()),
                 "churned": int(spells.loc[spells[column] == name, "event"].sum()),
                 **{f"S({m} months)": s for m, s in zip((12, 24, 36), survival_at(curve, [12, 24, 36]), strict=True)},
                 "median_months": median_survival(curve)}
                for column, by_value in curves.items() for name, curve in by_value.items()
            ]
        )  # fmt: skip
        report.add(
            "Survival (Kaplan-Meier)",
            "Share of customers still subscribed after each month of tenure, from their first subscription. "
            "Customers still subscribed at the end of the data are censored there; customers who started before "
            f"the data was observed ({window.start}) enter the risk set only then (late entry), so those who left "
            "earlier and are missing from the data do not bias the curves. Bands: 95% (Greenwood, log-log).",
            {"survival by group": summary},
            {
                "survival_by_cohort.png": survival_figure(curves["cohort"], "Survival by start cohort"),
                "survival_by_contract.png": survival_figure(
                    curves["contract_type"], "Survival by first contract"
                ),
            },
        )
        reasons = defection_reasons(con, spells, window, int(cfg.report.complaint_lookback_days), present)
        model_reasons, note = model_reasons_of_churners(*reason_inputs(cfg))
        report.add(
            "Why customers defect",
            f"Complaints in the {cfg.report.complaint_lookback_days} days before leaving, and complaints still "
            "unresolved when they left, among churners; stayers (in the same look-back before the end of the "
            f"data) for comparison. Then the model's reasons for the churners: {note}.",
            {"complaints before leaving": reasons, "the model's reasons (top 3 per churner)": model_reasons},
        )
        report.metrics["churners"] = float(spells["event"].sum())

    segments = None
    if "segment" in _columns(con, "customers"):  # the customer segment, beside the valuation segment
        segments = con.execute("SELECT customer_id, segment AS customer_segment FROM customers").df()
    add_latest_scoring(report, Path(cfg.score.output_dir), segments)
    add_latest_readout(report, Path(cfg.readout.output_dir))
    return report
