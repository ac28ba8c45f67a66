"""Time-based splits of a snapshot table into train, calibration and test slices.

The latest labelled observation dates form the test slice, the dates before them (after a gap) the
calibration slice, and earlier dates (after another gap) the training slice. A gap is as long as a label
window (lead + horizon + grace): no label of one slice looks into the next slice's dates. A customer may
appear in several slices at different dates; one (customer, date) row is in exactly one slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.labels import LabelWindow
from models.errors import SplitError


@dataclass(frozen=True)
class TimeSplit:
    """Observation dates of each slice."""

    train: tuple[date, ...]
    calibration: tuple[date, ...]
    test: tuple[date, ...]
    gap_days: int

    def describe(self) -> str:
        """One line per slice."""
        return "; ".join(
            f"{name} {len(dates)} date(s) {dates[0]}..{dates[-1]}" if dates else f"{name} none"
            for name, dates in (("train", self.train), ("calibration", self.calibration), ("test", self.test))
        )


def time_split(
    labelled_dates: Sequence[date], *, test_dates: int, calibration_dates: int, gap_days: int
) -> TimeSplit:
    """Split labelled observation dates: latest for test, before them calibration, earliest for training."""
    dates = sorted(set(labelled_dates))
    gap = timedelta(days=gap_days)
    test = dates[-test_dates:]
    before_test = [d for d in dates if d + gap <= test[0]]
    calibration = before_test[-calibration_dates:] if calibration_dates else []
    boundary = calibration[0] if calibration else test[0]
    train = [d for d in dates if d + gap <= boundary]
    if len(test) < test_dates or (calibration_dates and len(calibration) < calibration_dates) or not train:
        raise SplitError(
            f"{len(dates)} labelled observation dates are too few for {test_dates} test and {calibration_dates} "
            f"calibration dates with {gap_days}-day gaps; add dates (observation.start/end) or shrink the split"
        )
    return TimeSplit(tuple(train), tuple(calibration), tuple(test), gap_days)


def slice_masks(observation_dates: pd.Series, split: TimeSplit) -> dict[str, np.ndarray]:
    """Boolean row masks for each slice of a snapshot table."""
    days = pd.to_datetime(observation_dates).dt.date
    return {
        "train": days.isin(split.train).to_numpy(),
        "calibration": days.isin(split.calibration).to_numpy(),
        "test": days.isin(split.test).to_numpy(),
    }


def stratified_folds(
    rows: pd.DataFrame, n_folds: int, seed: int, target: str = "churned", group: str = "customer_id"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit, held-out) row positions of each fold of a stratified K-fold grouped by customer (shuffled with
    `seed`): for data without a usable time axis. A customer's rows are held out together."""
    from sklearn.model_selection import StratifiedGroupKFold

    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(folds.split(rows, rows[target].to_numpy(dtype=int), groups=rows[group].to_numpy()))


def load_snapshots(table_path: Path) -> pd.DataFrame:
    """The labelled snapshots of a feature table."""
    frame = pd.read_parquet(table_path)
    frame = frame[frame["churned"].notna()].copy()
    frame["churned"] = frame["churned"].astype(int)
    frame["observation_date"] = pd.to_datetime(frame["observation_date"]).dt.date
    return frame.reset_index(drop=True)


@dataclass(frozen=True)
class SplitSettings:
    """How labelled snapshots are split (`split`, with the gap derived from `label`): by time (test,
    calibration and training dates apart by `gap_days`), or stratified K-fold grouped by customer."""

    kind: str = "time"
    test_dates: int = 3
    calibration_dates: int = 3
    early_stopping_dates: int = 0
    gap_days: int = 0
    kfold_fallback: bool = True
    n_folds: int = 5

    @classmethod
    def from_config(cls, split_cfg: Any, label_cfg: Any) -> SplitSettings:
        """The settings of the `split` and `label` config nodes: without `split.gap_days`, the gap is the
        most days a label can reach (lead + the longest window + grace; a month counts 31 days)."""
        gap = split_cfg.get("gap_days")
        if gap is None:
            gap = LabelWindow.from_config(label_cfg).reach_days
        return cls(
            kind=str(split_cfg.kind),
            test_dates=int(split_cfg.get("test_dates", 3)),
            calibration_dates=int(split_cfg.get("calibration_dates", 3)),
            early_stopping_dates=int(split_cfg.get("early_stopping_dates") or 0),
            gap_days=int(gap),
            kfold_fallback=bool(split_cfg.get("kfold_fallback", True)),
            n_folds=int(split_cfg.n_folds),
        )


def configured_split(settings: SplitSettings, snapshots: pd.DataFrame) -> TimeSplit:
    """The time split the settings ask for, over the labelled snapshots' dates."""
    return time_split(
        snapshots["observation_date"].unique(),
        test_dates=settings.test_dates,
        calibration_dates=settings.calibration_dates,
        gap_days=settings.gap_days,
    )
