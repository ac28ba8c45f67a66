"""Churn labels: whether a customer active at an observation date churns in the label window after it.

The label window is [observation_date + lead, observation_date + lead + horizon): features see the days
strictly before the observation date, labels the days from observation_date + lead on, so with lead 0 no
day is in both and none falls between them. The lead is in days, the horizon in days (`horizon_days`) or
in calendar months (`horizon_months`: 2024-01-31 + 1 month is 2024-02-29, as cw_add_months counts);
`LabelWindow` is the one place that reads them, for the SQL here and for every later stage (split gap,
ceiling, lifetime value).

- contractual: every subscription the customer holds (started before the window's end) has ended before
  the window's end, the last one ending within the window, and no subscription starts again within
  `grace_days` after that last end (a renewal a few days late is not churn). A customer whose last
  subscription ended before the window (possible only with a lead) is left unlabeled.
- inactivity: no order and no event in the label window.

A snapshot is unlabeled when the data end does not cover its window (plus the grace gap): it can be scored
but never trained on. `label_status` says why a label is missing.

The configured numbers and the data end go into the SQL as literals (`features.sql.literal`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from features.errors import ConfigError
from features.observation import add_months
from features.sources import activity_dates_sql
from features.sql import identifier, literal

DAYS_PER_MONTH = 365.25 / 12  # an average calendar month
LONGEST_MONTH_DAYS = 31


def _count(label_cfg: Mapping[str, Any], key: str, minimum: int, default: int | None = None) -> int:
    value = label_cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"label.{key}: {value!r} is not a whole number of at least {minimum}")
    return value


@dataclass(frozen=True)
class LabelWindow:
    """The label window of a snapshot at date t: [t + lead_days, t + lead_days + horizon), the horizon in
    days or in calendar months (exactly one of them), and the contractual label's grace gap after it."""

    lead_days: int = 0
    horizon_days: int | None = 90
    horizon_months: int | None = None
    grace_days: int = 0

    @classmethod
    def from_config(cls, label_cfg: Mapping[str, Any]) -> LabelWindow:
        """The window of a `label` config node (or a manifest's label); ConfigError naming the bad key."""
        days, months = label_cfg.get("horizon_days"), label_cfg.get("horizon_months")
        if days is not None and months is not None:
            raise ConfigError(
                f"label.horizon_days ({days!r}) and label.horizon_months ({months!r}) are both set: the label "
                f"window is counted in days or in calendar months; set the other to null "
                f"(e.g. label.horizon_days=null label.horizon_months={months!r})"
            )
        if days is None and months is None:
            raise ConfigError(
                "label.horizon_days: set the label window's length in days (or label.horizon_months)"
            )
        return cls(
            lead_days=_count(label_cfg, "lead_days", 0, 0),
            horizon_days=None if days is None else _count(label_cfg, "horizon_days", 1),
            horizon_months=None if months is None else _count(label_cfg, "horizon_months", 1),
            grace_days=_count(label_cfg, "grace_days", 0, 0),
        )

    def start(self, day: date) -> date:
        """The first day of the window of a snapshot at `day`."""
        return day + timedelta(days=self.lead_days)

    def end(self, day: date) -> date:
        """The first day after the window of a snapshot at `day` (exclusive end)."""
        start = self.start(day)
        if self.horizon_months is not None:
            return add_months(start, self.horizon_months)
        return start + timedelta(days=int(self.horizon_days or 0))

    def length_days(self, day: date) -> int:
        """How many days the window of a snapshot at `day` holds."""
        return (self.end(day) - self.start(day)).days

    @property
    def approx_days(self) -> float:
        """The window's length in days where one number must do (months at 365.25 / 12 days each)."""
        if self.horizon_months is not None:
            return self.horizon_months * DAYS_PER_MONTH
        return float(self.horizon_days or 0)

    @property
    def longest_days(self) -> int:
        """The most days a window can hold (months at 31 days each)."""
        if self.horizon_months is not None:
            return self.horizon_months * LONGEST_MONTH_DAYS
        return int(self.horizon_days or 0)

    @property
    def reach_days(self) -> int:
        """The most days after a snapshot its label can look at: lead, the longest window and the grace gap.
        Snapshots this far apart have labels that never reach the later one's date."""
        return self.lead_days + self.longest_days + self.grace_days

    def describe(self) -> str:
        """The window in words: '90 days', '1 calendar month, starting 7 days after the date'."""
        if self.horizon_months is not None:
            n = self.horizon_months
            text = f"{n} calendar month{'s' if n != 1 else ''}"
        else:
            text = f"{self.horizon_days} days"
        return text + (f", starting {self.lead_days} days after the date" if self.lead_days else "")

    def sql(self) -> tuple[str, str]:
        """SQL of the window's start and (exclusive) end for the grid's observation_date."""
        start = f"cw_add_days(observation_date, {literal(self.lead_days)})"
        if self.horizon_months is not None:
            return start, f"cw_add_months({start}, {literal(self.horizon_months)})"
        return (
            start,
            f"cw_add_days(observation_date, {literal(self.lead_days + int(self.horizon_days or 0))})",
        )


def label_sql(label_cfg: Mapping[str, Any], data_end: date, present: set[str]) -> str:
    """SQL giving customer_id, observation_date, churned (1/0/NULL) and label_status for every grid row."""
    label_window = LabelWindow.from_config(label_cfg)
    window_start, window_end = label_window.sql()
    end = literal(data_end)
    window = f"""
SELECT customer_id, observation_date,
       {window_start} AS window_start,
       {window_end} AS window_end
FROM grid"""
    name = label_cfg["name"]
    if name == "contractual":
        if "subscriptions" not in present:
            raise ConfigError("the contractual label needs the subscriptions table")
        grace = label_window.grace_days
        return f"""
WITH w AS ({window}),
held AS (
  SELECT w.customer_id, w.observation_date, w.window_start, w.window_end,
         bool_and(s.end_date IS NOT NULL AND s.end_date < w.window_end) AS all_ended,
         max(s.end_date) AS last_end
  FROM w JOIN subscriptions s ON s.customer_id = w.customer_id AND s.start_date < w.window_end
  GROUP BY w.customer_id, w.observation_date, w.window_start, w.window_end
),
restarted AS (
  SELECT DISTINCT h.customer_id, h.observation_date
  FROM held h JOIN subscriptions s
    ON s.customer_id = h.customer_id AND h.all_ended
   AND s.start_date >= h.last_end AND s.start_date <= cw_add_days(h.last_end, {literal(grace)})
)
SELECT w.customer_id, w.observation_date,
       CASE WHEN cw_add_days(w.window_end, {literal(grace)}) > {end} THEN NULL
            WHEN h.all_ended AND r.customer_id IS NULL AND h.last_end >= w.window_start THEN 1
            WHEN h.all_ended AND r.customer_id IS NULL THEN NULL
            ELSE 0 END AS churned,
       CASE WHEN cw_add_days(w.window_end, {literal(grace)}) > {end} THEN 'window_after_data_end'
            WHEN h.all_ended AND r.customer_id IS NULL AND h.last_end < w.window_start
              THEN 'churned_before_window'
            ELSE 'labeled' END AS label_status
FROM w
LEFT JOIN held h ON h.customer_id = w.customer_id AND h.observation_date = w.observation_date
LEFT JOIN restarted r ON r.customer_id = w.customer_id AND r.observation_date = w.observation_date"""
    if name == "inactivity":
        activity = activity_dates_sql(present, "the inactivity label")
        return f"""
WITH w AS ({window}),
active AS (
  SELECT DISTINCT w.customer_id, w.observation_date
  FROM w JOIN ({activity}) a
    ON a.customer_id = w.customer_id AND a.activity_date >= w.window_start AND a.activity_date < w.window_end
)
SELECT w.customer_id, w.observation_date,
       CASE WHEN w.window_end > {end} THEN NULL WHEN a.customer_id IS NULL THEN 1 ELSE 0 END AS churned,
       CASE WHEN w.window_end > {end} THEN 'window_after_data_end' ELSE 'labeled' END AS label_status
FROM w LEFT JOIN active a ON a.customer_id = w.customer_id AND a.observation_date = w.observation_date"""
    raise ConfigError(f"unknown label {name!r}: use contractual or inactivity")


def _window_end_from(start_sql: str, window: LabelWindow) -> str:
    """SQL of the exclusive end of a label-length window starting at `start_sql` (no lead)."""
    if window.horizon_months is not None:
        return f"cw_add_months({start_sql}, {literal(window.horizon_months)})"
    return f"cw_add_days({start_sql}, {literal(int(window.horizon_days or 0))})"


def churn_dates_sql(label_cfg: Mapping[str, Any], present: set[str]) -> str:
    """SQL giving customer_id, churn_date and return_date (the next start or activity after it, NULL: none)
    of every churn the tables show under the label's rule, for survival over many months (models/survival.py).

    - contractual: the end of a subscription that no other subscription of the customer covers or restarts
      within `grace_days` after (a renewal a few days late is not churn);
    - inactivity: the day after an order or event followed by no other for a label window (or never).
    Whether a churn this close to the data end is known is the person-period rows' business
    (`person_period_sql` censors them)."""
    window = LabelWindow.from_config(label_cfg)
    name = label_cfg["name"]
    if name == "contractual":
        if "subscriptions" not in present:
            raise ConfigError("the contractual label needs the subscriptions table")
        grace = literal(window.grace_days)
        return f"""
SELECT DISTINCT s.customer_id, s.end_date AS churn_date,
       (SELECT min(n.start_date) FROM subscriptions n
        WHERE n.customer_id = s.customer_id AND n.start_date > s.end_date) AS return_date
FROM subscriptions s
WHERE s.end_date IS NOT NULL
  AND NOT EXISTS (
    SELECT 1 FROM subscriptions o
    WHERE o.customer_id = s.customer_id AND o.start_date <= cw_add_days(s.end_date, {grace})
      AND (o.end_date IS NULL OR o.end_date > s.end_date))"""
    if name == "inactivity":
        activity = activity_dates_sql(present, "the inactivity label")
        return f"""
WITH a AS (SELECT DISTINCT customer_id, CAST(activity_date AS DATE) AS activity_date FROM ({activity})),
n AS (SELECT customer_id, activity_date,
             lead(activity_date) OVER (PARTITION BY customer_id ORDER BY activity_date) AS next_date
      FROM a)
SELECT customer_id, cw_add_days(activity_date, 1) AS churn_date, next_date AS return_date
FROM n
WHERE next_date IS NULL OR next_date >= {_window_end_from("cw_add_days(activity_date, 1)", window)}"""
    raise ConfigError(
        f"label {name!r} has no churn dates to build survival from: use contractual or inactivity"
    )


def person_period_sql(
    label_cfg: Mapping[str, Any], snapshots: str, churn_dates: str, leads: Sequence[int], data_end: date
) -> str:
    """SQL giving snapshot, lead, month_of_year (of month l + 1) and churned for the person-period rows of the table `snapshots` (columns
    snapshot, customer_id, observation_date): one row per snapshot and lead month l in `leads` while the
    customer is still there at the start of month l (l calendar months after the date), churned = 1 when
    the snapshot's first churn (of the table `churn_dates`, `churn_dates_sql`) falls in month l + 1. A row
    whose month the data end does not confirm (plus the grace gap, or a label window for inactivity) is
    censored (left out), as `label_sql` leaves such snapshots unlabelled."""
    window = LabelWindow.from_config(label_cfg)
    name = label_cfg["name"]
    if name == "contractual":
        first = "c.churn_date"
        qualifies = "c.churn_date >= s.observation_date"
        known = f"cw_add_days(p.month_end, {literal(window.grace_days)})"
    elif name == "inactivity":
        first = "greatest(c.churn_date, s.observation_date)"
        end = _window_end_from("greatest(c.churn_date, s.observation_date)", window)
        qualifies = f"(c.return_date IS NULL OR c.return_date >= {end})"
        known = _window_end_from("cw_add_days(p.month_end, -1)", window)
    else:
        raise ConfigError(
            f"label {name!r} has no churn dates to build survival from: use contractual or inactivity"
        )
    lead_list = ", ".join(literal(int(lead)) for lead in leads)
    return f"""
WITH leads AS (SELECT unnest([{lead_list}]) AS lead),
p AS (
  SELECT s.snapshot, l.lead,
         cw_add_months(s.observation_date, l.lead) AS month_start,
         cw_add_months(s.observation_date, l.lead + 1) AS month_end
  FROM {identifier(snapshots)} s CROSS JOIN leads l
),
f AS (
  SELECT s.snapshot, min({first}) AS churn_date
  FROM {identifier(snapshots)} s JOIN {identifier(churn_dates)} c
    ON c.customer_id = s.customer_id AND {qualifies}
  GROUP BY s.snapshot
)
SELECT p.snapshot, p.lead, cw_month_of_year(p.month_start) AS month_of_year,
       CASE WHEN f.churn_date < p.month_end THEN 1 ELSE 0 END AS churned
FROM p LEFT JOIN f ON f.snapshot = p.snapshot
WHERE (f.churn_date IS NULL OR f.churn_date >= p.month_start) AND {known} <= {literal(data_end)}
ORDER BY p.snapshot, p.lead"""


def churn_confirmation_days(label_cfg: Mapping[str, Any]) -> int:
    """The most days after a churn the data must reach to confirm it: the grace gap (contractual) or a
    label window (inactivity; months at 31 days each)."""
    window = LabelWindow.from_config(label_cfg)
    return window.grace_days if label_cfg["name"] == "contractual" else window.longest_days
