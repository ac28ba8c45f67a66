"""Does each feature relate to churn on the later dates as it did on the training dates?

A feature whose relation to churn holds only on the training dates (a many-level `region` whose churn rates
per level are noise, a field whose meaning changed) is what a model learns best and what fails it first.
For each feature the check learns, on the training dates, a churn rate per level (a categorical's levels; a
number's training quantile bins, with missing as a level of its own; each rate shrunk towards the overall
rate by `prior_rows` pseudo-rows) and measures, as an AUC, how well those rates order the customers:

- `train_auc`: on the training rows themselves (in-sample: for a many-level feature this includes what the
  rates learned from noise);
- `later_auc`: on the later dates (the test slice, or the calibration slice with `against: calibration`),
  with the training rates, so it shows how much of the relation carries over; `later_auc_se` is its
  standard error (Hanley-McNeil, with the rows counted as customers when a customer has several dates).

Verdicts: `weak` (train_auc below 0.5 + `min_strength`: nothing to lose, not judged), `flipped` (the later
dates order churners the other way: later_auc below 0.5 by more than `z` standard errors), `collapsed`
(later_auc keeps less than `keep_share` of the training strength, by more than `z` standard errors),
`stable`. Flipped and collapsed features are flagged; with `action: drop` they are left out before any
model is fitted. `rate_correlation` (per-level churn rates on the two slices, weighted by the later rows)
is reported beside them. A K-fold split has no later dates: the check is skipped, with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.errors import ConfigError
from models.errors import SplitError
from models.split import SplitSettings, configured_split, slice_masks

log = logging.getLogger(__name__)
ACTIONS = ("flag", "drop", "off")
AGAINST = ("test", "calibration")
FLAGGED = ("flipped", "collapsed")
COLUMNS = (
    "feature", "kind", "levels", "train_auc", "later_auc", "later_auc_se", "rate_correlation", "verdict",
    "dropped",
)  # fmt: skip


@dataclass(frozen=True)
class StabilitySettings:
    """The `stability` config node: what to do with unstable features and when a feature is unstable."""

    action: str = "flag"
    against: str = "test"
    min_strength: float = 0.02
    keep_share: float = 0.25
    z: float = 3.0
    bins: int = 10
    prior_rows: float = 50.0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ConfigError(f"stability.action must be one of {', '.join(ACTIONS)}, not '{self.action}'")
        if self.against not in AGAINST:
            raise ConfigError(f"stability.against must be one of {', '.join(AGAINST)}, not '{self.against}'")
        for key in ("min_strength", "keep_share", "z", "prior_rows"):
            if getattr(self, key) < 0:
                raise ConfigError(f"stability.{key} must be 0 or more, not {getattr(self, key)}")
        if self.bins < 2:
            raise ConfigError(f"stability.bins must be 2 or more, not {self.bins}")

    @classmethod
    def from_config(cls, node: Any) -> StabilitySettings:
        """The settings of a `stability` config node (defaults for the keys it leaves out; None: defaults)."""
        if node is None:
            return cls()
        defaults = cls()
        return cls(
            action=str(node.get("action", defaults.action)),
            against=str(node.get("against", defaults.against)),
            min_strength=float(node.get("min_strength", defaults.min_strength)),
            keep_share=float(node.get("keep_share", defaults.keep_share)),
            z=float(node.get("z", defaults.z)),
            bins=int(node.get("bins", defaults.bins)),
            prior_rows=float(node.get("prior_rows", defaults.prior_rows)),
        )


@dataclass(frozen=True)
class StabilityResult:
    """The check's table (one row per feature; empty when skipped) and what was done with it."""

    action: str
    compared: str  # "training dates a..b against test dates c..d", or "" when skipped
    table: pd.DataFrame
    skipped: str = ""  # why the check did not run
    flagged: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def without_dropped(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The feature manifest without the dropped features (listed under `unstable_features`)."""
        if not self.dropped:
            return manifest
        return {
            **manifest,
            "features": [f for f in manifest["features"] if f["name"] not in self.dropped],
            "categorical_features": [c for c in manifest["categorical_features"] if c not in self.dropped],
            "unstable_features": list(self.dropped),
        }

    def metrics(self) -> dict[str, float]:
        """Counts for MLflow (none when the check was skipped or off)."""
        if self.skipped:
            return {}
        return {
            "stability_flagged_features": float(len(self.flagged)),
            "stability_dropped_features": float(len(self.dropped)),
        }

    def summary(self) -> str:
        """One line for the run summary."""
        if self.skipped:
            return f"skipped: {self.skipped}"
        if not self.flagged:
            return f"no feature's relation to churn changed ({self.compared}; {len(self.table)} checked)"
        verdicts = dict(zip(self.table["feature"], self.table["verdict"], strict=True))
        named = ", ".join(f"{name} ({verdicts[name]})" for name in self.flagged)
        done = (
            "dropped before fitting"
            if self.dropped
            else "flagged, kept (stability.action=drop leaves them out)"
        )
        return f"{len(self.flagged)} feature(s) {done}: {named}; {self.compared}"


def check_stability(
    settings: StabilitySettings,
    split: SplitSettings,
    snapshots: pd.DataFrame,
    features: list[str],
    categorical: list[str],
    target: str = "churned",
) -> StabilityResult:
    """Run the check on the split's training dates against its test (or calibration) dates; skipped (with the
    reason) under K-fold or when the time split does not fit the data (the fit then says why, or falls back)."""
    if settings.action == "off":
        return _skipped(settings, "stability.action is off")
    if split.kind == "kfold":
        return _skipped(settings, "a K-fold split has no training and later dates to compare")
    try:
        time_split = configured_split(split, snapshots)
    except SplitError as error:
        return _skipped(settings, f"no time split ({error})")
    masks = slice_masks(snapshots["observation_date"], time_split)
    later_dates = time_split.test if settings.against == "test" else time_split.calibration
    if not later_dates:
        return _skipped(settings, f"the split has no {settings.against} dates")
    table = feature_stability(
        snapshots[masks["train"]], snapshots[masks[settings.against]], features, categorical, settings, target
    )
    flagged = table.loc[table["verdict"].isin(FLAGGED), "feature"].tolist()
    dropped = flagged if settings.action == "drop" else []
    if dropped and len(dropped) == len(features):
        raise ConfigError(
            f"stability.action=drop would leave out every feature ({', '.join(dropped)}): nothing would be "
            f"left to learn from; use stability.action=flag or loosen stability.keep_share"
        )
    table = table.assign(dropped=table["feature"].isin(dropped))
    compared = (
        f"training dates {time_split.train[0]}..{time_split.train[-1]} against {settings.against} dates "
        f"{later_dates[0]}..{later_dates[-1]}"
    )
    result = StabilityResult(settings.action, compared, table, flagged=flagged, dropped=dropped)
    log.info("feature stability: %s", result.summary())
    return result


def _skipped(settings: StabilitySettings, reason: str) -> StabilityResult:
    log.info("feature stability check skipped: %s", reason)
    return StabilityResult(settings.action, "", pd.DataFrame(columns=list(COLUMNS)), skipped=reason)


def feature_stability(
    earlier: pd.DataFrame,
    later: pd.DataFrame,
    features: list[str],
    categorical: list[str],
    settings: StabilitySettings,
    target: str = "churned",
) -> pd.DataFrame:
    """One row per feature: its relation to churn on `earlier` rows and how much of it holds on `later`."""
    y_earlier, y_later = earlier[target].to_numpy(dtype=int), later[target].to_numpy(dtype=int)
    rows_per_customer = _rows_per_customer(later)
    records = []
    for feature in features:
        kind = "categorical" if feature in categorical else "numeric"
        if kind == "categorical":
            earlier_levels, later_levels = (
                _category_levels(earlier[feature]),
                _category_levels(later[feature]),
            )
        else:
            earlier_levels, later_levels = _bin_levels(earlier[feature], later[feature], settings.bins)
        rates = _level_rates(earlier_levels, y_earlier, settings.prior_rows)
        overall = float(y_earlier.mean()) if len(y_earlier) else float("nan")
        train_auc = _auc(earlier_levels.map(rates).to_numpy(dtype=float), y_earlier)
        later_score = later_levels.map(rates).astype(float).fillna(overall).to_numpy()
        later_auc = _auc(later_score, y_later)
        se = _auc_standard_error(later_auc, y_later, rows_per_customer)
        records.append(
            {
                "feature": feature,
                "kind": kind,
                "levels": int(earlier_levels.nunique()),
                "train_auc": train_auc,
                "later_auc": later_auc,
                "later_auc_se": se,
                "rate_correlation": _rate_correlation(earlier_levels, y_earlier, later_levels, y_later),
                "verdict": verdict(train_auc, later_auc, se, settings),
                "dropped": False,
            }
        )
    return pd.DataFrame.from_records(records, columns=list(COLUMNS))


def verdict(train_auc: float, later_auc: float, se: float, settings: StabilitySettings) -> str:
    """weak, flipped, collapsed or stable (see the module docstring); `not judged` without both classes."""
    if not (np.isfinite(train_auc) and np.isfinite(later_auc)):
        return "not judged"
    strength, later_strength = train_auc - 0.5, later_auc - 0.5
    if strength < settings.min_strength:
        return "weak"
    noise = settings.z * (se if np.isfinite(se) else 0.0)
    if later_strength < -noise:
        return "flipped"
    if later_strength < settings.keep_share * strength and strength - later_strength > noise:
        return "collapsed"
    return "stable"


def _category_levels(values: pd.Series) -> pd.Series:
    """A categorical feature's levels as text, missing as a level of its own."""
    return values.astype("string").fillna("(missing)").astype(object)


def _bin_levels(earlier: pd.Series, later: pd.Series, bins: int) -> tuple[pd.Series, pd.Series]:
    """A number's quantile bins of the earlier rows (missing is bin -1), applied to both slices."""
    earlier_values = pd.to_numeric(earlier, errors="coerce").astype("float64")
    later_values = pd.to_numeric(later, errors="coerce").astype("float64")
    present = earlier_values.dropna().to_numpy()
    edges = (
        np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])) if len(present) else np.array([])
    )

    def binned(values: pd.Series) -> pd.Series:
        codes = np.searchsorted(edges, values.to_numpy(), side="right")
        return pd.Series(np.where(values.isna().to_numpy(), -1, codes), index=values.index)

    return binned(earlier_values), binned(later_values)


def _level_rates(levels: pd.Series, y: np.ndarray, prior_rows: float) -> pd.Series:
    """Each level's churn rate, shrunk towards the overall rate by `prior_rows` pseudo-rows."""
    if not len(y):
        return pd.Series(dtype=float)
    overall = float(y.mean())
    grouped = pd.Series(y, index=levels.index).groupby(levels.to_numpy())
    churners, rows = grouped.sum(), grouped.size()
    return (churners + prior_rows * overall) / (rows + prior_rows)


def _auc(score: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC of a score (ties count half); nan without both classes."""
    from sklearn.metrics import roc_auc_score

    if not len(y) or y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, score))


def _rows_per_customer(rows: pd.DataFrame) -> float:
    """How many rows a customer has on average (1 without a customer_id column)."""
    if "customer_id" not in rows.columns or not len(rows):
        return 1.0
    return max(1.0, len(rows) / rows["customer_id"].nunique())


def _auc_standard_error(auc: float, y: np.ndarray, rows_per_customer: float) -> float:
    """Hanley-McNeil standard error of an AUC, with rows counted as customers (rows per customer)."""
    if not np.isfinite(auc):
        return float("nan")
    positives = y.sum() / rows_per_customer
    negatives = (len(y) - y.sum()) / rows_per_customer
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (
        positives * negatives
    )
    return float(np.sqrt(max(variance, 0.0)))


def _rate_correlation(
    earlier_levels: pd.Series, y_earlier: np.ndarray, later_levels: pd.Series, y_later: np.ndarray
) -> float:
    """Correlation of per-level churn rates between the slices (levels in both; weighted by later rows)."""
    earlier_rates = pd.Series(y_earlier, index=earlier_levels.index).groupby(earlier_levels.to_numpy()).mean()
    grouped = pd.Series(y_later, index=later_levels.index).groupby(later_levels.to_numpy())
    later_rates, weights = grouped.mean(), grouped.size()
    common = earlier_rates.index.intersection(later_rates.index)
    if len(common) < 2:
        return float("nan")
    a, b, w = earlier_rates[common].to_numpy(), later_rates[common].to_numpy(), weights[common].to_numpy()
    a, b = a - np.average(a, weights=w), b - np.average(b, weights=w)
    denominator = np.sqrt(np.average(a**2, weights=w) * np.average(b**2, weights=w))
    return float(np.average(a * b, weights=w) / denominator) if denominator > 0 else float("nan")
