"""Churn labels: whether a customer active at an observation date churns in the label window after it.

The label window is [observation_date + lead, observation_date + lead + horizon): features see the days
strictly before the observation date, labels the days from observation_date + lead on, so with lead 0 no
day is in both and none falls between them.

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

from collections.abc import Mapping
from datetime import date
from typing import Any

from features.errors import ConfigError
from features.sources import activity_dates_sql
from features.sql import literal


def label_sql(label_cfg: Mapping[str, Any], data_end: date, present: set[str]) -> str:
    """SQL giving customer_id, observation_date, churned (1/0/NULL) and label_status for every grid row."""
    lead = int(label_cfg.get("lead_days", 0))
    horizon = int(label_cfg["horizon_days"])
    if horizon <= 0 or lead < 0:
        raise ConfigError("label.horizon_days must be positive and label.lead_days not negative")
    end = literal(data_end)
    window = f"""
SELECT customer_id, observation_date,
       cw_add_days(observation_date, {literal(lead)}) AS window_start,
       cw_add_days(observation_date, {literal(lead + horizon)}) AS window_end
FROM grid"""
    name = label_cfg["name"]
    if name == "contractual":
        if "subscriptions" not in present:
            raise ConfigError("the contractual label needs the subscriptions table")
        grace = int(label_cfg.get("grace_days", 0))
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
