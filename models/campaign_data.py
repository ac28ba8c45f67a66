"""Campaign training data: each past campaign assignment with its customer's features and outcomes, point in time.

The contract table `campaigns` says who was assigned which action on which day, treated or held out as control.
Its rows are what the uplift learners fit on (treated against control, within campaign and action):

- features: the customer's row of the feature table at the last observation date on or before `assigned_at`
  (only data before that date; the demo assigns inside months, its snapshots are on month starts), so a
  campaign's own contact, and anything after it, never reaches its features;
- outcomes, from the customer tables after `assigned_at`:
  - `churn_h`: the configured label (`features.labels.label_sql`) for a window starting on `assigned_at`;
    NaN when the window passes the data end;
  - `survive_w`: 1 when the customer still holds a subscription at the end of the value window of
    `window_months` calendar months after `assigned_at`, else 0;
  - `margin_w`: the discounted margin over that window, sum over months t = 1..W of
    margin_rate x recurring monthly revenue at `assigned_at` + t months x (1 + d)^-t, with d the monthly
    rate of `annual_discount_rate` (the terms of `decisions.value.lifetime_value`); the recurring revenue at a
    day is the `monthly_revenue` feature's rule: the monthly prices of the subscriptions held on the day
    before it. Both NaN when the window passes the data end (or without subscriptions);
  - `margin_end`: the margin of the window's last month, margin_rate x recurring monthly revenue at
    `assigned_at` + W months, undiscounted (0 when no subscription is held then): what the customer is worth a
    month once the window ends, so an action's effect on it, carried over the customer's remaining lifetime,
    values what the action changes for good (a product added, a customer kept; decisions/effects.py); NaN as
    margin_w;
  - `cost`: what the assignment cost, from the table's optional `cost` column: a treated row's cost (NaN when
    empty), 0 for a control (not contacted); NaN for every row without the column. Its treated-minus-control
    effect is the action's expected cost per customer (paid on acceptance, say, or depending on the customer).

Rows on or after `as_of` (the training or scoring date) are not known then: they are ignored, with one note
of how many. An action that is not in the catalogue stops the run (`DataContractError`, with its lines).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from features.dialect import install_duckdb_functions
from features.labels import label_sql
from features.sql import literal
from features.validation import ValidatedTables, check_campaign_actions

log = logging.getLogger(__name__)

TABLE = "campaigns"
ROW_COLUMNS = (
    "campaign_id", "customer_id", "action", "assigned_at", "observation_date", "treated", "propensity",
    "churn_h", "survive_w", "margin_w", "margin_end", "cost",
)  # fmt: skip
KEYS = ("customer_id", "observation_date")
NOT_FEATURES = (*KEYS, "churned", "label_status")


@dataclass(frozen=True)
class CampaignData:
    """Campaign rows (`ROW_COLUMNS`) and their customers' features, aligned by index."""

    rows: pd.DataFrame
    features: pd.DataFrame
    notes: tuple[str, ...] = field(default=())


def campaign_data(
    tables: ValidatedTables,
    snapshots: pd.DataFrame,
    label_cfg: Mapping[str, Any],
    catalogue: Collection[str],
    *,
    data_end: date,
    margin_rate: float,
    annual_discount_rate: float,
    window_months: int = 12,
    as_of: date | None = None,
    features: Sequence[str] | None = None,
) -> CampaignData:
    """The campaign rows known before `as_of`, with features from `snapshots` (the feature table: one row per
    customer_id and observation_date, labelled or not; `features` its feature columns, default all but keys
    and labels) and outcomes from the tables of `tables` up to `data_end` (exclusive). Empty without a
    campaigns table. Raises DataContractError when a row names an action that is not in `catalogue`."""
    names = list(features) if features is not None else [c for c in snapshots if c not in NOT_FEATURES]
    if not tables.has(TABLE):
        return CampaignData(_empty_rows(), snapshots[names].iloc[0:0].reset_index(drop=True))
    if window_months < 1:
        raise ValueError(f"window_months must be at least 1, not {window_months}")
    con = tables.con
    install_duckdb_functions(con)
    check_campaign_actions(tables, catalogue)
    notes = []
    known = "TRUE" if as_of is None else f"assigned_at < {literal(as_of)}"
    if as_of is not None:
        later = con.execute(f"SELECT count(*) FROM campaigns WHERE NOT ({known})").fetchall()[0][0]
        if later:
            notes.append(
                f"campaigns: {later:,} row(s) assigned on or after {as_of} ignored (not known on that date)"
            )
    has_cost = "cost" in {c[0] for c in con.execute("DESCRIBE campaigns").fetchall()}
    rows = con.execute(
        f"SELECT campaign_id, customer_id, action, assigned_at, treated, propensity, "
        f"{'CAST(cost AS DOUBLE)' if has_cost else 'CAST(NULL AS DOUBLE)'} AS cost FROM campaigns "
        f"WHERE {known} ORDER BY assigned_at, campaign_id, customer_id"
    ).df()
    treated = rows["treated"].astype(bool).to_numpy()
    rows["cost"] = np.where(treated, rows["cost"].astype(float), 0.0 if has_cost else np.nan)
    rows["assigned_at"] = pd.to_datetime(rows["assigned_at"]).dt.date
    # An empty propensity is the campaign-action's treated share.
    share = rows.groupby(["campaign_id", "action"])["treated"].transform("mean")
    rows["propensity"] = rows["propensity"].astype(float).fillna(share.astype(float))

    rows, matched, note = _with_snapshots(rows, snapshots, names)
    if note:
        notes.append(note)
    outcomes = _outcomes(
        tables, label_cfg, known, data_end=data_end, window_months=window_months,
        margin_rate=margin_rate, annual_discount_rate=annual_discount_rate,
    )  # fmt: skip
    rows = rows.merge(outcomes, on=["customer_id", "assigned_at"], how="left", validate="many_to_one")
    for note in notes:
        log.info("%s", note)
    return CampaignData(rows[list(ROW_COLUMNS)].reset_index(drop=True), matched, tuple(notes))


def _with_snapshots(
    rows: pd.DataFrame, snapshots: pd.DataFrame, features: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Each row's observation date (the last snapshot date on or before assigned_at) and its customer's
    features there; rows without one (assigned before the first date, or a customer the grid leaves out at
    that date) are left out, said in the note."""
    dates = np.array(sorted(set(pd.to_datetime(snapshots["observation_date"]).dt.date)), dtype=object)
    position = np.searchsorted(dates, rows["assigned_at"].to_numpy(), side="right") - 1
    rows = rows.assign(observation_date=[dates[p] if p >= 0 else None for p in position])
    keyed = snapshots[[*KEYS, *features]].assign(
        observation_date=pd.to_datetime(snapshots["observation_date"]).dt.date
    )
    joined = rows.merge(keyed, on=list(KEYS), how="inner", validate="many_to_one")
    note = ""
    if len(joined) < len(rows):
        note = (
            f"campaigns: {len(rows) - len(joined):,} of {len(rows):,} row(s) left out: no feature row of their "
            f"customer at an observation date on or before assigned_at"
        )
    joined = joined.reset_index(drop=True)
    return joined.drop(columns=features), joined[features], note


def _outcomes(
    tables: ValidatedTables,
    label_cfg: Mapping[str, Any],
    known: str,
    *,
    data_end: date,
    window_months: int,
    margin_rate: float,
    annual_discount_rate: float,
) -> pd.DataFrame:
    """customer_id, assigned_at, churn_h, survive_w, margin_w, margin_end for each distinct assignment day."""
    present = set(tables.report.present)
    grid = f"SELECT DISTINCT customer_id, assigned_at AS observation_date FROM campaigns WHERE {known}"
    labels = tables.con.execute(
        f"WITH grid AS ({grid}) SELECT customer_id, observation_date AS assigned_at, "
        f"CAST(churned AS DOUBLE) AS churn_h FROM ({label_sql(label_cfg, data_end, present)}) l"
    ).df()
    if "subscriptions" not in present:
        values = labels[["customer_id", "assigned_at"]].assign(
            survive_w=np.nan, margin_w=np.nan, margin_end=np.nan
        )
    else:
        monthly_discount = (1.0 + annual_discount_rate) ** (1.0 / 12.0) - 1.0
        w = literal(int(window_months))
        values = tables.con.execute(
            f"""WITH grid AS ({grid}),
                points AS (
                  SELECT g.customer_id, g.observation_date AS assigned_at, m.t,
                         cw_add_months(g.observation_date, m.t) AS day
                  FROM grid g CROSS JOIN range(1, {w} + 1) m(t)
                ),
                monthly AS (
                  SELECT p.customer_id, p.assigned_at, p.t,
                         coalesce(sum(s.monthly_price), 0) AS revenue, count(s.customer_id) > 0 AS active
                  FROM points p LEFT JOIN subscriptions s
                    ON s.customer_id = p.customer_id AND s.start_date < p.day
                   AND (s.end_date IS NULL OR s.end_date >= p.day)
                  GROUP BY p.customer_id, p.assigned_at, p.t
                )
                SELECT customer_id, assigned_at,
                       CASE WHEN cw_add_months(assigned_at, {w}) > {literal(data_end)} THEN NULL
                            ELSE CAST(bool_or(active) FILTER (WHERE t = {w}) AS DOUBLE) END AS survive_w,
                       CASE WHEN cw_add_months(assigned_at, {w}) > {literal(data_end)} THEN NULL
                            ELSE sum({literal(float(margin_rate))} * revenue
                                     * power(1 + {literal(monthly_discount)}, -t)) END AS margin_w,
                       CASE WHEN cw_add_months(assigned_at, {w}) > {literal(data_end)} THEN NULL
                            ELSE sum({literal(float(margin_rate))} * revenue) FILTER (WHERE t = {w})
                       END AS margin_end
                FROM monthly GROUP BY customer_id, assigned_at"""
        ).df()
    out = labels.merge(values, on=["customer_id", "assigned_at"], how="outer", validate="one_to_one")
    out["assigned_at"] = pd.to_datetime(out["assigned_at"]).dt.date
    return out


def _empty_rows() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in ROW_COLUMNS})
