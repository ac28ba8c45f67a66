"""Survival over the months ahead: how likely a customer is still a customer t months after a date.

Two models, chosen by `_target_` in `conf/survival/`:

- `DiscreteHazard` (survival=discrete_hazard, the default): a discrete-time hazard model. It learns from the
  same point-in-time snapshots as the churn model, as person-period rows (features.labels.person_period_sql):
  one row per snapshot and lead month l of `leads`, kept while the customer is still there at the start of
  month l and while the data end confirms month l + 1; the target is churn in month l + 1, the inputs the
  snapshot's features plus l and (seasonal) the calendar month of month l + 1. LightGBM binary. The hazard
  is predicted for every month up to the largest lead and held flat after it; S(t) = prod_{k <= t} (1 - h_k).
- `ConstantHazard` (survival=constant): today's rule, a constant monthly retention taken from the churn
  probability over the label window; its lifetime value is the closed form of decisions.value.lifetime_value.

`fit_survival` fits the configured model in the train stage and measures it (metrics below); data with no
dates to build lead months from (a snapshot table) falls back to ConstantHazard with one logged note.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from features.labels import DAYS_PER_MONTH, churn_confirmation_days, churn_dates_sql, person_period_sql
from features.observation import add_months
from models.preprocessing import SnapshotEncoder

log = logging.getLogger(__name__)
LEAD_COLUMN = "months_ahead"  # the person-period rows' lead month, beside the features
MONTH_COLUMN = "month_of_year"  # the calendar month (1..12) of the month whose churn is predicted (seasonal)
SNAPSHOTS_TABLE, CHURN_DATES_TABLE = "survival_snapshots", "survival_churn_dates"
CHECK_MONTHS = (3, 6, 12)  # where predicted survival is compared with the realised one


class ConstantHazard:
    """A constant monthly retention r = (1 - p_churn) ** (30.44 / horizon_days): S(t) = r ** t."""

    def __init__(self, horizon_days: float = 90.0):
        self.horizon_days = horizon_days

    def fit(self, *args: Any, **kwargs: Any) -> ConstantHazard:
        """Nothing to learn."""
        return self

    def survival(
        self, X: pd.DataFrame, months: int, p_churn: np.ndarray | None = None, start: Any = None
    ) -> np.ndarray:
        """(n, months) survival to the end of months 1..months from the churn probability `p_churn`."""
        if p_churn is None:
            raise ValueError(
                "ConstantHazard.survival needs p_churn: its retention comes from the churn probability"
            )
        p = np.clip(np.asarray(p_churn, dtype=float), 0.0, 1.0 - 1e-9)
        r = (1.0 - p) ** (DAYS_PER_MONTH / float(self.horizon_days))
        return r[:, None] ** np.arange(1, months + 1)[None, :]


class DiscreteHazard:
    """A discrete-time hazard model on person-period rows (see the module docstring)."""

    def __init__(
        self,
        leads: Sequence[int] = (0, 1, 2, 3, 5, 8, 12, 18, 24),
        snapshot_every_months: int = 1,
        max_rows: int = 200_000,
        params: dict[str, Any] | None = None,
        seed: int = 0,
        seasonal: bool = True,
    ):
        self.leads = leads
        self.snapshot_every_months = snapshot_every_months
        self.max_rows = max_rows
        self.params = params
        self.seed = seed
        self.seasonal = seasonal

    def fit(
        self,
        rows: pd.DataFrame,
        churned: np.ndarray,
        features: list[str],
        categorical: list[str],
        min_level_rows: int = 0,
    ) -> DiscreteHazard:
        """Fit on person-period `rows` (the features, LEAD_COLUMN and, seasonal, MONTH_COLUMN) and their
        churn-next-month target."""
        from lightgbm import LGBMClassifier

        self.features_ = list(features)
        self.max_lead_ = int(max(int(v) for v in self.leads))
        self.encoder_ = SnapshotEncoder(categorical, min_level_rows).fit(rows[self.features_])
        extra = [LEAD_COLUMN] + ([MONTH_COLUMN] if self.seasonal else [])
        X = self.encoder_.transform(rows[self.features_]).assign(
            **{c: rows[c].to_numpy(dtype=float) for c in extra}
        )
        params = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 31, "verbose": -1} | dict(
            self.params or {}
        )
        self.estimator_ = LGBMClassifier(random_state=self.seed, **params).fit(
            X, np.asarray(churned, dtype=int)
        )
        return self

    def hazards(self, X: pd.DataFrame, start: Any = None) -> np.ndarray:
        """(n, max lead + 1) predicted churn probability in month l + 1, l = 0..the largest lead, for
        customers observed on `start` (a date, or one per row; needed when seasonal)."""
        encoded = self.encoder_.transform(X[self.features_])
        if self.seasonal:
            if start is None:
                raise ValueError(
                    "a seasonal DiscreteHazard needs the date its customers are observed on (start)"
                )
            first = pd.DatetimeIndex(np.broadcast_to(pd.to_datetime(start), (len(X),))).month.to_numpy() - 1
        columns = []
        for lead in range(self.max_lead_ + 1):
            inputs = encoded.assign(**{LEAD_COLUMN: float(lead)})
            if self.seasonal:
                inputs[MONTH_COLUMN] = ((first + lead) % 12 + 1).astype(float)
            columns.append(self.estimator_.predict_proba(inputs)[:, 1])
        return np.column_stack(columns)

    def survival(
        self, X: pd.DataFrame, months: int, p_churn: np.ndarray | None = None, start: Any = None
    ) -> np.ndarray:
        """(n, months) survival to the end of months 1..months: monotone non-increasing, in (0, 1]. After
        the largest lead the hazard is held flat: at the last lead's (seasonal: the mean of the last 12
        months', so a season does not stand for the whole year)."""
        predicted = np.clip(self.hazards(X, start), 1e-6, 1.0 - 1e-6)
        held = predicted[:, -12:].mean(axis=1) if self.seasonal else predicted[:, -1]
        if months > predicted.shape[1]:
            tail = np.repeat(held[:, None], months - predicted.shape[1], axis=1)
            predicted = np.hstack([predicted, tail])
        return np.cumprod(1.0 - predicted[:, :months], axis=1)


SurvivalModel = DiscreteHazard | ConstantHazard


@dataclass(frozen=True)
class SurvivalFit:
    """The survival model a training run fitted, its metrics and what to say about it."""

    model: SurvivalModel
    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""  # one line for the training summary
    # per customer of the check date: customer_id, observation_date, and for months t = 1..12 the realised
    # survival (realised_<t>, 0/1), the held-out model's S(t) (predicted_<t>) and the two constant
    # retentions' (constant_<t>, flat_<t>; see fit_survival); the run's predictions/survival_check.parquet.
    check: pd.DataFrame | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class SurvivalData:
    """What fitting and measuring survival reads: the labelled snapshots (features), the tables' connection
    with the label's churn dates, and the churn model's probabilities for the comparison."""

    con: Any  # DuckDB connection holding the contract tables (None: no dates, e.g. a snapshot table)
    present: set[str]
    label: dict[str, Any]
    data_end: date  # first day without data (the feature table's data window end)
    snapshots: pd.DataFrame
    features: list[str]
    categorical: list[str]
    min_level_rows: int
    horizon_days: float
    churn_probability: Any  # callable rows -> calibrated p_churn of the churn model
    test_rows: pd.DataFrame


def person_period_rows(
    data: SurvivalData, snapshots: pd.DataFrame, leads: Sequence[int], data_end: date
) -> pd.DataFrame:
    """The person-period rows of `snapshots` (index kept as `snapshot`): snapshot, lead, churned."""
    con = data.con
    con.register(
        SNAPSHOTS_TABLE, snapshots[["customer_id", "observation_date"]].assign(snapshot=snapshots.index)
    )
    try:
        return con.execute(
            person_period_sql(data.label, SNAPSHOTS_TABLE, CHURN_DATES_TABLE, leads, data_end)
        ).df()
    finally:
        con.unregister(SNAPSHOTS_TABLE)


def every_nth_date(snapshots: pd.DataFrame, months: int, before: date | None = None) -> pd.DataFrame:
    """The snapshots of observation dates at least `months` calendar months apart, counted back from the
    latest (on or before `before`): every third of a monthly grid with 3, about every 13th of a weekly one."""
    kept: list[date] = []
    for day in sorted(snapshots["observation_date"].unique(), reverse=True):
        if (before is None or day <= before) and (
            not kept or add_months(day, max(1, int(months))) <= kept[-1]
        ):
            kept.append(day)
    return snapshots[snapshots["observation_date"].isin(kept)]


def _fit_on(model: DiscreteHazard, data: SurvivalData, data_end: date, features: list[str]) -> DiscreteHazard:
    """A fresh copy of `model` fitted on the person-period rows censored at `data_end`."""
    chosen = every_nth_date(data.snapshots, model.snapshot_every_months, before=data_end)
    rows = person_period_rows(data, chosen, model.leads, data_end)
    if len(rows) > model.max_rows:
        rows = rows.sample(n=int(model.max_rows), random_state=model.seed)
    if rows.empty or rows["churned"].nunique() < 2:
        raise ValueError(f"no person-period rows with both outcomes before {data_end}")
    frame = data.snapshots.loc[rows["snapshot"].to_numpy(), features].reset_index(drop=True)
    frame[LEAD_COLUMN] = rows["lead"].to_numpy()
    frame[MONTH_COLUMN] = rows["month_of_year"].to_numpy()
    fresh = DiscreteHazard(
        model.leads, model.snapshot_every_months, model.max_rows, model.params, model.seed, model.seasonal
    )
    log.info("survival: fitting the hazard on %s person-period rows up to %s", f"{len(rows):,}", data_end)
    return fresh.fit(frame, rows["churned"].to_numpy(), features, data.categorical, data.min_level_rows)


def realised_survival(outcomes: pd.DataFrame, snapshots: pd.Index, months: int) -> np.ndarray:
    """(n, months) whether each snapshot is still there at the end of months 1..months, from its
    person-period rows over leads 0..months-1 (every month confirmed: a cohort the data covers)."""
    churn_month = outcomes[outcomes["churned"] == 1].set_index("snapshot")["lead"] + 1
    first = churn_month.reindex(snapshots).fillna(np.inf).to_numpy()
    return first[:, None] > np.arange(1, months + 1)[None, :]


def evaluation_date(data: SurvivalData, months: int) -> date | None:
    """The latest labelled observation date whose next `months` months the data end confirms."""
    reach = timedelta(days=churn_confirmation_days(data.label))
    dates = [
        d
        for d in data.snapshots["observation_date"].unique()
        if add_months(d, months) + reach <= data.data_end
    ]
    return max(dates) if dates else None


def fit_survival(model: Any, data: SurvivalData) -> SurvivalFit:
    """Fit the configured survival model and measure it; ConstantHazard where the data has no dates.

    The model kept is fitted on everything up to the data end. It is checked on the customers of the latest
    observation date the data follows for 12 months after (the check date), with a copy fitted only on what
    was known on that date, against their realised survival (every one followed for the whole year: the
    share still there, Kaplan-Meier without censoring). Beside it, two constant retentions: `constant`, the
    churn model's (what survival=constant scores with; that model was trained on later dates, so on these
    customers it knows part of the outcome), and `flat`, the copy's own h-month survival extrapolated at a
    constant rate (the same information as the copy: the difference is the curve's shape alone).

    Metrics: `survival_brier_3m`, `survival_brier_12m` (Brier score of S(t) against still there at t, on
    the check date), `survival_constant_brier_*`, `survival_flat_brier_*` (the same for the constant
    retentions), `survival_{realised,predicted,constant,flat}_<t>m` (mean survival at t = 3, 6, 12 months)
    and `survival_vs_label_gap` = mean |1 - S(h) - p_churn| on the churn model's test slice (h: the label
    horizon in months)."""
    if not isinstance(model, DiscreteHazard):
        return SurvivalFit(
            ConstantHazard(data.horizon_days), {}, "constant monthly retention (survival=constant)"
        )
    if data.con is None:
        note = (
            "constant monthly retention: the data has no dates to build lead months from "
            f"(label '{data.label['name']}'), so survival=discrete_hazard falls back to survival=constant"
        )
        log.info("survival: %s", note)
        return SurvivalFit(ConstantHazard(data.horizon_days), {}, note)
    data.con.execute(
        f"CREATE OR REPLACE TEMP TABLE {CHURN_DATES_TABLE} AS {churn_dates_sql(data.label, data.present)}"
    )
    features = data.features
    fitted = _fit_on(model, data, data.data_end, features)
    horizon = max(1, round(data.horizon_days / DAYS_PER_MONTH))
    test = data.test_rows
    survival_test = fitted.survival(test, horizon, start=test["observation_date"])[:, -1]
    gap = float(np.mean(np.abs(1 - survival_test - data.churn_probability(test))))
    metrics = {"survival_vs_label_gap": gap}
    note = f"discrete hazard; 1 - S({horizon}m) vs p_churn on the test slice: mean gap {gap:.4f}"
    longest = max(CHECK_MONTHS)
    origin = evaluation_date(data, longest)
    if origin is None:
        log.info("survival: no observation date has %d months of data after it: no Brier score", longest)
        return SurvivalFit(
            fitted, metrics, note + f"; no date with {longest} months of data after it to check on"
        )
    try:
        held = _fit_on(model, data, origin, features)
    except ValueError as error:
        log.info("survival: %s: no Brier score", error)
        return SurvivalFit(fitted, metrics, note)
    cohort = data.snapshots[data.snapshots["observation_date"] == origin]
    outcomes = person_period_rows(data, cohort, range(longest), data.data_end)
    curves = {"realised": realised_survival(outcomes, cohort.index, longest).astype(float)}
    curves["predicted"] = held.survival(cohort, longest, start=origin)
    curves["constant"] = ConstantHazard(data.horizon_days).survival(
        cohort, longest, data.churn_probability(cohort)
    )
    rate = curves["predicted"][:, horizon - 1] ** (1.0 / horizon)
    curves["flat"] = rate[:, None] ** np.arange(1, longest + 1)[None, :]
    realised = curves["realised"]
    for name in ("predicted", "constant", "flat"):
        prefix = "survival" if name == "predicted" else f"survival_{name}"
        for t in (3, 12):
            metrics[f"{prefix}_brier_{t}m"] = float(
                np.mean((curves[name][:, t - 1] - realised[:, t - 1]) ** 2)
            )
    for name, values in curves.items():
        for t in CHECK_MONTHS:
            metrics[f"survival_{name}_{t}m"] = float(values[:, t - 1].mean())
    note += (
        f"; checked from {origin} ({len(cohort):,} customers): Brier 3m {metrics['survival_brier_3m']:.4f}, "
        f"12m {metrics['survival_brier_12m']:.4f}; S(12m) realised {metrics['survival_realised_12m']:.3f}, "
        f"predicted {metrics['survival_predicted_12m']:.3f}, its 3m rate held flat {metrics['survival_flat_12m']:.3f}, "
        f"the churn model's constant retention {metrics['survival_constant_12m']:.3f}"
    )
    check = cohort[["customer_id", "observation_date"]].reset_index(drop=True)
    for name, values in curves.items():
        check = check.assign(**{f"{name}_{t + 1}": values[:, t] for t in range(longest)})
    return SurvivalFit(fitted, metrics, note, check)
