"""The best possible predictions on demo data, from the generator's true churn probabilities.

Only evaluation reads the truth files; features never do.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from features.labels import LabelWindow
from features.sql import literal


def true_window_probability(truth_path: Path, snapshots: pd.DataFrame, *, window: LabelWindow) -> np.ndarray:
    """P(churn within the label window) for each (customer_id, observation_date) from the true hazard at
    that date.

    The generator's monthly hazard for the month holding the observation date (its state then) is
    extended over the window as a constant hazard: 1 - (1 - p) ** (window days / days in that month), the
    window's days counted at each date (a calendar-month window holds 28 to 31). This is
    the best prediction from what was true at the date; it ignores changes the future brings (a term
    ending, a complaint), which a model may partly anticipate, so a model can come close to it but should
    not beat it by much.
    """
    truth = Path(truth_path) / "true_churn_probability.parquet"
    keys = snapshots[["customer_id", "observation_date"]].reset_index(drop=True).copy()
    keys["observation_date"] = pd.to_datetime(keys["observation_date"]).dt.date
    keys["row"] = np.arange(len(keys))
    con = duckdb.connect()
    con.register("snapshots", keys)
    rows = con.execute(
        f"""
        SELECT s.row, t.p_churn,
               date_diff('day', date_trunc('month', CAST(s.observation_date AS DATE)),
                         CAST(date_trunc('month', CAST(s.observation_date AS DATE)) + INTERVAL 1 MONTH AS DATE))
        FROM snapshots s LEFT JOIN read_parquet({literal(truth)}) t
          ON t.customer_id = s.customer_id AND t.month = date_trunc('month', CAST(s.observation_date AS DATE))
        ORDER BY s.row"""
    ).fetchall()
    hazard = np.array([np.nan if p is None else float(p) for _, p, _ in rows])
    month_days = np.array([d for _, _, d in rows], dtype=float)
    hazard = np.where(np.isnan(hazard), np.nanmean(hazard), hazard)
    window_days = np.array([window.length_days(d) for d in keys["observation_date"]], dtype=float)
    return 1.0 - (1.0 - hazard) ** (window_days / month_days)


def true_probability(
    truth_path: Path | None, snapshots: pd.DataFrame, *, window: LabelWindow
) -> np.ndarray | None:
    """The generator's true probability of each snapshot's label, from whichever demo truth `truth_path`
    holds (None when it holds none): the dated demo's monthly hazards, the exact inactivity probability of
    the retail and app demos (features.demo.activity), or the telecom table's per-row probability."""
    from features.demo.activity import is_activity_truth, true_inactivity_probability
    from features.demo.telco import TELCO_TRUTH_FILE

    if not truth_path:
        return None
    folder = Path(truth_path)
    if (folder / "true_churn_probability.parquet").is_file():
        return true_window_probability(folder, snapshots, window=window)
    if is_activity_truth(folder):
        if (
            window.lead_days
        ):  # exact only for a window that starts at the date (no activity in between to foresee)
            return None
        out = np.full(len(snapshots), np.nan)
        lengths = np.array(
            [window.length_days(d) for d in pd.to_datetime(snapshots["observation_date"]).dt.date]
        )
        for days in np.unique(lengths):  # calendar-month windows differ in length from date to date
            rows = np.flatnonzero(lengths == days)
            out[rows] = true_inactivity_probability(folder, snapshots.iloc[rows], horizon_days=int(days))
        return out
    if (folder / TELCO_TRUTH_FILE).is_file():
        truth = pd.read_parquet(folder / TELCO_TRUTH_FILE)
        by_id = dict(zip(truth["customer_id"].astype(str), truth["p_churn"], strict=True))
        return np.array([by_id.get(str(c), np.nan) for c in snapshots["customer_id"]], dtype=float)
    return None
