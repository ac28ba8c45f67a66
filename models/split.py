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


def apart(day: date, first_of_next: date, gap_days: int) -> bool:
    """Whether a snapshot at `day` may sit in the slice before one starting at `first_of_next`: strictly
    before it, and at least `gap_days` before it, so its label window does not reach the next slice."""
    return day < first_of_next and day + timedelta(days=gap_days) <= first_of_next


def time_split(
    labelled_dates: Sequence[date],
    *,
    test_dates: int,
    calibration_dates: int,
    gap_days: int,
    early_stopping_dates: int = 0,
    unlabelled_note: str = "",
) -> TimeSplit:
    """Split labelled observation dates: latest for test, before them calibration, earliest for training.

    A slice's dates are strictly before the next slice's first date and at least `gap_days` before it (with
    a gap of 0, calibration and test still share no date). When a slice cannot be filled, SplitError says
    which slice is empty and why; `unlabelled_note` (e.g. dates whose label window ends after the data end)
    is added to that message."""
    for key, value, least in (
        ("test_dates", test_dates, 1), ("calibration_dates", calibration_dates, 0),
        ("gap_days", gap_days, 0), ("early_stopping_dates", early_stopping_dates, 0),
    ):  # fmt: skip
        if value < least:
            raise SplitError(f"split.{key}={value}: must be at least {least}")
    dates = sorted(set(labelled_dates))
    why = f" {unlabelled_note}" if unlabelled_note else ""
    shown = f" ({dates[0]}..{dates[-1]})" if dates else ""

    def empty(reason: str, advice: str) -> SplitError:
        # what split=auto says when it falls back: the reason and the note, not the advice
        said = f"{reason}.{why}".removesuffix(".") if why else reason
        return SplitError(f"split=time: {reason}.{why} {advice}, or use split=kfold (or split=auto)", said)

    if len(dates) < test_dates:
        raise empty(
            f"the test slice needs split.test_dates={test_dates} labelled observation dates and the table has "
            f"{len(dates)}{shown}",
            "Add dates (observation.start/end), lower split.test_dates",
        )
    test = dates[-test_dates:]
    before_test = [d for d in dates if apart(d, test[0], gap_days)]
    calibration = before_test[-calibration_dates:] if calibration_dates else []
    if len(calibration) < calibration_dates:
        raise empty(
            f"the calibration slice is {'empty' if not calibration else 'short'}: it needs "
            f"split.calibration_dates={calibration_dates} labelled dates at least split.gap_days={gap_days} days "
            f"before the first test date {test[0]}, and {len(before_test)} of the {len(dates)} labelled dates"
            f"{shown} are",
            "Add earlier dates, lower split.calibration_dates or split.test_dates",
        )
    boundary = calibration[0] if calibration else test[0]
    train = [d for d in dates if apart(d, boundary, gap_days)]
    next_slice = "calibration" if calibration else "test"
    if not train:
        raise empty(
            f"the training slice is empty: no labelled date is at least split.gap_days={gap_days} days before "
            f"the first {next_slice} date {boundary} (labelled dates{shown or ': none'})",
            "Add earlier dates (observation.start), lower split.test_dates / split.calibration_dates",
        )
    if early_stopping_dates and early_stopping_dates >= len(train):
        raise SplitError(
            f"split.early_stopping_dates={early_stopping_dates} takes every one of the {len(train)} training "
            f"date(s) ({train[0]}..{train[-1]}), leaving none to fit the model on: lower it (0 turns early "
            f"stopping off) or add earlier dates"
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


SPLIT_KINDS = ("time", "kfold", "auto")


@dataclass(frozen=True)
class SplitSettings:
    """How labelled snapshots are split (`split`, with the gap derived from `label`): by time (test,
    calibration and training dates apart by `gap_days`), stratified K-fold grouped by customer (repeated
    `n_repeats` times with different shuffles), or `auto`: by time when the dates allow it, else K-fold,
    said in the run summary and tagged `split.fallback`."""

    kind: str = "time"
    test_dates: int = 3
    calibration_dates: int = 3
    early_stopping_dates: int = 0
    gap_days: int = 0
    n_folds: int = 5
    n_repeats: int = 1

    @classmethod
    def from_config(cls, split_cfg: Any, label_cfg: Any) -> SplitSettings:
        """The settings of the `split` and `label` config nodes: without `split.gap_days`, the gap is the
        most days a label can reach (lead + the longest window + grace; a month counts 31 days). Settings that cannot work raise SplitError naming the key."""
        kind = str(split_cfg.kind)
        if kind not in SPLIT_KINDS:
            raise SplitError(
                f"split.kind={kind!r}: use one of {', '.join(SPLIT_KINDS)} (split=time, split=kfold, split=auto)"
            )
        gap = split_cfg.get("gap_days")
        if gap is None:
            gap = LabelWindow.from_config(label_cfg).reach_days
        settings = cls(
            kind=kind,
            test_dates=int(split_cfg.get("test_dates", 3)),
            calibration_dates=int(split_cfg.get("calibration_dates", 3)),
            early_stopping_dates=int(split_cfg.get("early_stopping_dates") or 0),
            gap_days=int(gap),
            n_folds=int(split_cfg.get("n_folds", 5)),
            n_repeats=int(split_cfg.get("n_repeats", 1)),
        )
        if settings.n_folds < 2:
            raise SplitError(f"split.n_folds={settings.n_folds}: K-fold needs at least 2 folds")
        if settings.n_repeats < 1:
            raise SplitError(f"split.n_repeats={settings.n_repeats}: must be at least 1")
        return settings


@dataclass(frozen=True)
class SplitPlan:
    """The split a run uses: a time split, or K-fold (`fallback` says why split=auto chose K-fold)."""

    kind: str  # "time" or "kfold"
    time: TimeSplit | None = None
    fallback: str = ""


def unlabelled_note(manifest: dict[str, Any] | None) -> str:
    """Why the latest observation dates of a feature table have no label, from its manifest: their label
    window ends after the data end. Empty when every date is labelled."""
    if not manifest:
        return ""
    by_date = manifest.get("churn_by_observation_date") or {}
    unlabelled = sorted(d for d, stats in by_date.items() if not stats.get("labeled"))
    if not unlabelled:
        return ""
    end = (manifest.get("data_window") or {}).get("end_exclusive", "the data end")
    shown = unlabelled[0] if len(unlabelled) == 1 else f"{unlabelled[0]}..{unlabelled[-1]}"
    return (
        f"{len(unlabelled)} observation date(s) ({shown}) have no label: their label window ends after the "
        f"data end ({end}, exclusive)."
    )


def configured_split(settings: SplitSettings, snapshots: pd.DataFrame, note: str = "") -> TimeSplit:
    """The time split the settings ask for, over the labelled snapshots' dates."""
    return time_split(
        snapshots["observation_date"].unique(),
        test_dates=settings.test_dates,
        calibration_dates=settings.calibration_dates,
        gap_days=settings.gap_days,
        early_stopping_dates=settings.early_stopping_dates,
        unlabelled_note=note,
    )


def plan_split(settings: SplitSettings, snapshots: pd.DataFrame, note: str = "") -> SplitPlan:
    """The split the settings ask for: split=time raises SplitError (naming the empty slice) when the dates
    do not fit; split=auto then falls back to K-fold and says why."""
    if settings.kind == "kfold":
        return SplitPlan("kfold")
    try:
        return SplitPlan("time", configured_split(settings, snapshots, note))
    except SplitError as error:
        if settings.kind != "auto":
            raise
        return SplitPlan("kfold", fallback=error.reason)
