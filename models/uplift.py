"""Per-customer effects of retention actions learned from randomised campaigns (uplift models).

Each action's campaigns assign customers at random to treated or control, with a logged propensity (the
probability of being treated). Per action and outcome a learner on LightGBM estimates the effect
    effect(x) = E[y | treated, x] - E[y | control, x]
- `TLearner`: one outcome model per arm, effect = the difference of their predictions (averaged over the
  training campaigns' propensity levels when the models split on it).
- `XLearner`: the T-learner's models impute each customer's effect (treated: y - m0(x); control:
  m1(x) - y), one model per arm learns those, combined as p * tau0(x) + (1 - p) * tau1(x) with p the mean
  LOGGED propensity (assignment is random given the campaign, so the propensity does not depend on x).
- `DRLearner`: the AIPW pseudo-outcome m1 - m0 + t (y - m1) / p - (1 - t) (y - m0) / (1 - p) with the
  logged p and outcome models cross-fitted on two folds, regressed on x.
Every outcome model sees the logged propensity as one more input: within a propensity level assignment is
random, so campaigns that treated different shares (0.5 here, 0.9 there) and differ in ways the features
miss do not pass that difference off as an effect. (Weighting the rows by 1/p and 1/(1-p) instead biased
the small trees' leaf means: a few heavily weighted controls pull each leaf's ratio estimate down.)
Binary outcomes (values 0/1 only) use classifier probabilities, any other a regressor.

Sign convention: an effect on churn is a change in churn probability, so an action that saves customers
has a NEGATIVE effect; an effect on margin is a change in margin (positive = good). To rank customers by
benefit use score = -effect for churn (models/uplift_eval.py reads curves that way).

Intervals: `n_bags` bootstrap fits, resampled within the treated and within the control; per customer the
bag mean and a 90% interval from the bags' spread (`EffectEstimate`). `fit_uplift` fits every action with enough evidence
on all but the latest `test_campaigns` campaigns (per outcome: the latest where it is known), evaluates
on those (Qini, AUUC, predicted against observed by decile). The train fit is kept (not refitted on all
campaigns): the model that is used is the one that was evaluated and calibrated, at half the cost.

Calibrated effect (`ActionUplift.effects`), per customer and outcome:
1. the action's average effect in its campaigns, read within each campaign and combined at each campaign's
   precision (`models.uplift_eval.stratified_uplift`), with its interval;
2. plus the learners' deviation from their own mean on the training rows, times the held-out slope of observed
   on predicted effect by decile (with an intercept, clipped to [0, 1]: only the differences between customers
   that the held-out campaigns confirm, never inflated);
3. shrunk toward no effect by its noise, under a sceptical prior N(0, tau^2) whose variance is the spread of
   the training rows' effects beyond their noise (`EffectEstimate.posterior`): a noisy estimate counts for
   little, so a plan does not chase the largest of many noisy estimates (bench/results/decisions.md).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import lightgbm
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import norm
from scipy.stats import t as student_t
from tqdm.auto import tqdm

from features.errors import ConfigError
from models.preprocessing import SnapshotEncoder
from models.uplift_eval import (
    arm_weights,
    auuc,
    decile_figure,
    observed_uplift,
    qini_auc,
    qini_curve,
    qini_figure,
    stratified_uplift,
    uplift_by_decile,
)

log = logging.getLogger(__name__)

# Small, regularised base models: a few thousand campaign rows per action carry a weak signal.
BASE_PARAMS: dict[str, Any] = {
    "n_estimators": 200,
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 50,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "deterministic": True,  # with force_row_wise: the same seed gives the same trees on any thread count
    "force_row_wise": True,
    # One thread: on a few thousand rows, threads cost more than they give (a T-learner fit on 5,000 rows took
    # 0.27 s with one thread, 4.1 s with two on a loaded two-core machine); the churn model keeps its two.
    "n_jobs": 1,
    "verbose": -1,
}
ROW_KEYS = ("campaign_id", "customer_id", "action", "assigned_at", "treated", "propensity")


class UpliftLearner(Protocol):
    """What `fit_uplift` needs of a learner (a dataclass with a `seed` field, so bags can reseed it)."""

    seed: int

    def fit(
        self,
        X: pd.DataFrame,
        treated: np.ndarray,
        y: np.ndarray,
        propensity: np.ndarray,
        sample_weight: np.ndarray | None = None,
    ) -> UpliftLearner: ...

    def effect(self, X: pd.DataFrame | Matrix) -> np.ndarray: ...


class _OutcomeModel:
    """A LightGBM classifier (probability of 1) or regressor; a constant when the labels do not vary."""

    def __init__(self, binary: bool, params: Mapping[str, Any], seed: int):
        self.binary, self.params, self.seed = binary, {**BASE_PARAMS, **dict(params)}, seed

    def fit(self, X: pd.DataFrame, y: np.ndarray, weight: np.ndarray) -> _OutcomeModel:
        self.constant_ = float(np.average(y, weights=weight)) if len(y) else 0.0
        self.model_ = None
        if len(y) >= 2 and np.ptp(y) > 0:
            kind = lightgbm.LGBMClassifier if self.binary else lightgbm.LGBMRegressor
            self.model_ = kind(**{**self.params, "random_state": self.seed})
            self.model_.fit(X, y.astype(int) if self.binary else y, sample_weight=weight)
        return self

    def uses(self, column: str) -> bool:
        """Whether any tree splits on `column`."""
        if self.model_ is None:
            return False
        names = list(self.model_.booster_.feature_name())
        return bool(self.model_.booster_.feature_importance("split")[names.index(column)] > 0)

    def predict(self, X: pd.DataFrame | Matrix) -> np.ndarray:
        if self.model_ is None:
            return np.full(len(X), self.constant_)
        if isinstance(X, Matrix):
            if X.fits(self.model_.booster_):
                # LightGBM's own prediction on the matrix its pandas conversion would build: the same numbers
                return np.asarray(self.model_.booster_.predict(X.values), dtype=float)
            X = X.frame()
        if self.binary:
            return self.model_.predict_proba(X)[:, 1]
        return np.asarray(self.model_.predict(X), dtype=float)


@dataclass(frozen=True)
class Matrix:
    """Encoded features as the numeric matrix LightGBM predicts on (a categorical column as its category
    codes, missing as NaN), built once and shared by every model of an action: converting the DataFrame
    for each bag, arm and propensity level cost more than the predictions (38 s for 20k customers)."""

    values: np.ndarray  # (rows, columns), float64
    columns: tuple[str, ...]
    categories: tuple[list[Any], ...]  # per categorical column, in column order: its categories
    dtypes: tuple[Any, ...]  # the source frame's dtypes, to rebuild it (`frame`)

    @classmethod
    def of(cls, X: pd.DataFrame | Matrix) -> Matrix:
        """X as a matrix (a matrix as it is)."""
        if isinstance(X, Matrix):
            return X
        columns = []
        for column in X.columns:
            values = X[column]
            if isinstance(values.dtype, pd.CategoricalDtype):
                codes = values.cat.codes.to_numpy()
                columns.append(np.where(codes < 0, np.nan, codes.astype(float)))
            else:
                columns.append(values.to_numpy(dtype=float, na_value=np.nan))
        values = np.column_stack(columns) if columns else np.empty((len(X), 0))
        categories = tuple(
            list(X[c].cat.categories) for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)
        )
        return cls(values, tuple(X.columns), categories, tuple(X.dtypes))

    def __len__(self) -> int:
        return len(self.values)

    def with_levels(self, levels: Sequence[float]) -> Matrix:
        """The rows once per propensity level (level after level), with the level as the last column."""
        n = len(self.values)
        stacked = np.vstack([np.column_stack([self.values, np.full(n, level)]) for level in levels])
        return Matrix(stacked, (*self.columns, PROPENSITY), self.categories, (*self.dtypes, np.dtype(float)))

    def fits(self, booster: lightgbm.Booster) -> bool:
        """Whether the booster was trained on these columns and categories (else predict on `frame`)."""
        trained = booster.pandas_categorical or []
        return booster.num_feature() == len(self.columns) and [list(c) for c in trained] == [
            list(c) for c in self.categories
        ]

    def frame(self) -> pd.DataFrame:
        """Back to a DataFrame of the source's columns and dtypes."""
        out, categories = {}, iter(self.categories)
        for k, (column, dtype) in enumerate(zip(self.columns, self.dtypes, strict=True)):
            if isinstance(dtype, pd.CategoricalDtype):
                codes = np.nan_to_num(self.values[:, k], nan=-1).astype(int)
                out[column] = pd.Categorical.from_codes(codes, categories=next(categories))
            else:
                out[column] = self.values[:, k]
        return pd.DataFrame(out)


def is_binary(y: np.ndarray) -> bool:
    """Whether an outcome holds only 0 and 1."""
    return bool(np.isin(np.unique(y), (0.0, 1.0)).all())


PROPENSITY = "__logged_propensity__"  # the outcome models' extra input column
MAX_LEVELS = 3  # propensity levels the T-learner averages over (each costs a prediction per arm)


def with_propensity(X: pd.DataFrame, propensity: np.ndarray | float) -> pd.DataFrame:
    """X with the logged propensity as one more column (the outcome models' input)."""
    return X.assign(**{PROPENSITY: propensity})


def propensity_levels(propensity: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct propensities and their (weighted) shares; more than MAX_LEVELS: equal-share quantiles."""
    levels, index = np.unique(np.round(propensity, 2), return_inverse=True)
    if len(levels) <= MAX_LEVELS:
        shares = np.bincount(index, weights=weight, minlength=len(levels))
        return levels, shares / shares.sum()
    order = np.argsort(propensity, kind="stable")
    cumulative = np.cumsum(weight[order]) / weight.sum()
    midpoints = (np.arange(MAX_LEVELS) + 0.5) / MAX_LEVELS
    return propensity[order][np.searchsorted(cumulative, midpoints)], np.full(MAX_LEVELS, 1.0 / MAX_LEVELS)


@dataclass
class _Learner:
    """Shared inputs of the learners: LightGBM parameters over BASE_PARAMS, outcome kind, seed."""

    params: dict[str, Any] = field(default_factory=dict)
    outcome: Literal["auto", "binary", "continuous"] = "auto"
    seed: int = 0

    def _prepare(
        self,
        X: pd.DataFrame,
        treated: np.ndarray,
        y: np.ndarray,
        propensity: np.ndarray,
        sample_weight: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Checked arrays (treated, y, propensity, row weights) and the outcome kind (`binary_`)."""
        treated = np.asarray(treated, dtype=bool)
        y, propensity = np.asarray(y, dtype=float), np.asarray(propensity, dtype=float)
        weight = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        if not len(X) == len(treated) == len(y) == len(propensity) == len(weight):
            raise ValueError("X, treated, y, propensity and sample_weight differ in length")
        if np.isnan(y).any():
            raise ValueError(f"y has {int(np.isnan(y).sum())} missing value(s): leave unlabelled rows out")
        if treated.all() or not treated.any():
            raise ValueError("an uplift learner needs treated and control rows")
        arm_weights(treated, propensity)  # refuses propensities outside (0, 1] and control rows at 1
        self.binary_ = is_binary(y) if self.outcome == "auto" else self.outcome == "binary"
        return treated, y, propensity, weight

    def _model(self, offset: int, binary: bool | None = None) -> _OutcomeModel:
        return _OutcomeModel(self.binary_ if binary is None else binary, self.params, self.seed * 7 + offset)


@dataclass
class TLearner(_Learner):
    """One outcome model per arm (on x and the logged propensity); effect = treated - control prediction,
    averaged over the training campaigns' propensity levels."""

    def fit(
        self,
        X: pd.DataFrame,
        treated: np.ndarray,
        y: np.ndarray,
        propensity: np.ndarray,
        sample_weight: np.ndarray | None = None,
    ) -> TLearner:
        """Fit both arms' outcome models."""
        t, y, p, w = self._prepare(X, treated, y, propensity, sample_weight)
        Xp = with_propensity(X, p)
        self.treated_model_ = self._model(1).fit(Xp[t], y[t], w[t])
        self.control_model_ = self._model(2).fit(Xp[~t], y[~t], w[~t])
        self.levels_, self.level_shares_ = propensity_levels(p, w)
        if not (self.treated_model_.uses(PROPENSITY) or self.control_model_.uses(PROPENSITY)):
            self.levels_, self.level_shares_ = self.levels_[:1], np.ones(1)  # the same at every level
        return self

    def effect(self, X: pd.DataFrame | Matrix) -> np.ndarray:
        """E[y | treated, x] - E[y | control, x] (each arm's model predicts every level in one call)."""
        X = Matrix.of(X)
        treated, control = (self._at_levels(m, X) for m in (self.treated_model_, self.control_model_))
        total = np.zeros(len(X))
        for k, share in enumerate(self.level_shares_):
            total += share * (treated[k] - control[k])
        return total

    def _at_levels(self, model: _OutcomeModel, X: Matrix) -> np.ndarray:
        """(levels, rows): the model's predictions at each propensity level; predicted at one level when it
        never splits on the propensity (the same numbers at every level)."""
        n, levels = len(X), len(self.levels_)
        if levels == 1 or not model.uses(PROPENSITY):
            return np.broadcast_to(model.predict(X.with_levels(self.levels_[:1])), (levels, n))
        return model.predict(X.with_levels(self.levels_)).reshape(levels, n)


@dataclass
class XLearner(_Learner):
    """Imputed effects per arm, combined with the mean logged propensity (Kuenzel et al. 2019)."""

    def fit(
        self,
        X: pd.DataFrame,
        treated: np.ndarray,
        y: np.ndarray,
        propensity: np.ndarray,
        sample_weight: np.ndarray | None = None,
    ) -> XLearner:
        """Outcome models per arm (on x and the logged propensity), then effect models on each arm's
        imputed effects (on x)."""
        t, y, p, w = self._prepare(X, treated, y, propensity, sample_weight)
        Xp = with_propensity(X, p)
        treated_model = self._model(1).fit(Xp[t], y[t], w[t])
        control_model = self._model(2).fit(Xp[~t], y[~t], w[~t])
        imputed_treated = y[t] - control_model.predict(Xp[t])
        imputed_control = treated_model.predict(Xp[~t]) - y[~t]
        self.treated_effect_ = self._model(3, binary=False).fit(X[t], imputed_treated, w[t])
        self.control_effect_ = self._model(4, binary=False).fit(X[~t], imputed_control, w[~t])
        self.propensity_ = float(np.average(p, weights=w))
        return self

    def effect(self, X: pd.DataFrame | Matrix) -> np.ndarray:
        """p tau0(x) + (1 - p) tau1(x): the arm with more rows imputes the other's effect model."""
        p, X = self.propensity_, Matrix.of(X)
        return p * self.control_effect_.predict(X) + (1.0 - p) * self.treated_effect_.predict(X)


@dataclass
class DRLearner(_Learner):
    """Doubly robust (AIPW) pseudo-outcomes with the logged propensity, cross-fitted, regressed on x."""

    folds: int = 2

    def fit(
        self,
        X: pd.DataFrame,
        treated: np.ndarray,
        y: np.ndarray,
        propensity: np.ndarray,
        sample_weight: np.ndarray | None = None,
    ) -> DRLearner:
        """Out-of-fold outcome models per arm, then one regressor on the pseudo-outcome."""
        t, y, p, w = self._prepare(X, treated, y, propensity, sample_weight)
        Xp = with_propensity(X, p)
        rng = np.random.default_rng(self.seed)
        fold = np.empty(len(y), dtype=int)
        for arm in (t, ~t):  # each fold holds its share of both arms
            rows = np.flatnonzero(arm)
            fold[rng.permutation(rows)] = np.arange(len(rows)) % self.folds
        mu_t, mu_c = np.empty(len(y)), np.empty(len(y))
        for k in range(self.folds):
            fit, out = fold != k, fold == k
            mu_t[out] = self._model(10 + k).fit(Xp[fit & t], y[fit & t], w[fit & t]).predict(Xp[out])
            mu_c[out] = self._model(20 + k).fit(Xp[fit & ~t], y[fit & ~t], w[fit & ~t]).predict(Xp[out])
        correction = np.where(t, (y - mu_t) / p, -(y - mu_c) / np.where(t, 0.5, 1.0 - p))
        self.effect_model_ = self._model(3, binary=False).fit(X, mu_t - mu_c + correction, w)
        return self

    def effect(self, X: pd.DataFrame | Matrix) -> np.ndarray:
        """The regression of the pseudo-outcome on x."""
        return self.effect_model_.predict(Matrix.of(X))


@dataclass(frozen=True)
class EffectEstimate:
    """Per customer: the mean effect over the bags and its `level` interval."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def from_draws(cls, draws: np.ndarray, level: float = 0.90) -> EffectEstimate:
        """From an array (bags, customers) of effects: mean +- t(level, bags - 1) x the bags' standard
        deviation (one bag: no interval). The 5-95% quantiles of 10 bags covered the true effect for 71% of
        synthetic customers, this interval for 85% (20 bags: 77% and 87%; tests/unit/test_uplift.py)."""
        mean = draws.mean(axis=0)
        if len(draws) < 2:
            return cls(mean, mean.copy(), mean.copy())
        half = float(student_t.ppf(0.5 + level / 2.0, len(draws) - 1)) * draws.std(axis=0, ddof=1)
        return cls(mean, mean - half, mean + half)

    def scaled(self, factor: float) -> EffectEstimate:
        """Every effect times `factor` (>= 0)."""
        return EffectEstimate(self.mean * factor, self.low * factor, self.high * factor)

    def standard_error(self, level: float = 0.90) -> np.ndarray:
        """Each customer's standard error as the `level` interval states it (its half-width over the normal
        quantile: with few bags the t interval is wider, and so is this, as the bags' spread is itself uncertain)."""
        return (self.high - self.low) / (2.0 * float(norm.ppf(0.5 + level / 2.0)))

    def prior_variance(self, level: float = 0.90) -> float:
        """tau^2 = max(0, mean(mean^2 - se^2)): how far effects spread around none beyond their noise (the
        method-of-moments variance of a prior centred on 0)."""
        return (
            max(0.0, float(np.mean(self.mean**2 - self.standard_error(level) ** 2)))
            if len(self.mean)
            else 0.0
        )

    def posterior(self, prior_variance: float, level: float = 0.90) -> EffectEstimate:
        """Shrunk toward 0 under a sceptical normal prior N(0, tau^2): mean k x mean, k = tau^2 / (tau^2 + se^2)
        per customer (a noisy estimate counts for little); the interval spans the posterior's (half-width sqrt(k)
        x the half-width) and the estimate's own."""
        se2 = self.standard_error(level) ** 2
        k = np.divide(
            prior_variance, prior_variance + se2, out=np.ones_like(se2), where=(prior_variance + se2) > 0
        )
        mean, half = k * self.mean, np.sqrt(k) * (self.high - self.low) / 2.0
        # the interval also keeps the estimate's own: shrinking says what to expect, not that the data is surer
        low, high = np.minimum(mean - half, self.low), np.maximum(mean + half, self.high)
        return EffectEstimate(mean, low, high)

    def shrunk(self, average: float, average_half: float, center: float, scale: float) -> EffectEstimate:
        """The effect as the action's observed average effect plus `scale` x this estimate's deviation from
        `center` (the learners' mean effect on their training rows): mean = average + scale x (mean - center);
        the interval's half-widths combine the bags' (times scale) and the average's (`average_half`)."""
        mean = average + scale * (self.mean - center)
        below = np.hypot(scale * (self.mean - self.low), average_half)
        above = np.hypot(scale * (self.high - self.mean), average_half)
        return EffectEstimate(mean, mean - below, mean + above)


def fit_bags(
    learner: UpliftLearner,
    X: pd.DataFrame,
    treated: np.ndarray,
    y: np.ndarray,
    propensity: np.ndarray,
    n_bags: int,
    seed: int | Sequence[int],
) -> list[UpliftLearner]:
    """`n_bags` copies of `learner`, each fitted on a bootstrap resample drawn within the treated and within
    the control (as row counts, so a row never sits on both sides of a cross-fit); one bag = one fit on
    all rows. Each copy gets its own seed drawn from `seed`."""
    treated = np.asarray(treated, dtype=bool)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    arms = [np.flatnonzero(treated), np.flatnonzero(~treated)]
    bags = []
    for _ in range(n_bags):
        counts = np.ones(len(treated))
        if n_bags > 1:
            drawn = np.concatenate([rng.choice(rows, size=len(rows), replace=True) for rows in arms])
            counts = np.bincount(drawn, minlength=len(treated)).astype(float)
        keep = counts > 0
        copy = dataclasses.replace(learner, seed=int(rng.integers(2**31 - 1)))
        bags.append(
            copy.fit(X[keep], treated[keep], np.asarray(y)[keep], np.asarray(propensity)[keep], counts[keep])
        )
    return bags


def bagged_effect(
    bags: Sequence[UpliftLearner], X: pd.DataFrame | Matrix, level: float = 0.90
) -> EffectEstimate:
    """The bags' effects on X as mean and interval (X converted for LightGBM once, for all bags)."""
    X = Matrix.of(X)
    return EffectEstimate.from_draws(np.vstack([bag.effect(X) for bag in bags]), level)


@dataclass(frozen=True)
class UpliftSettings:
    """The `uplift` config group: learner prototype, outcomes and what counts as enough evidence.

    `outcomes` maps each outcome column of the campaign rows to the direction of benefit ("lower" for
    churn, "higher" for margin or survival)."""

    learner: UpliftLearner
    outcomes: Mapping[str, Literal["lower", "higher"]] = field(
        default_factory=lambda: {"churn_h": "lower", "margin_w": "higher"}
    )
    n_bags: int = 10
    min_outcomes: int = 300  # labelled rows per arm and outcome in the training campaigns
    min_control: int = 100  # control rows in the training campaigns
    test_campaigns: int = 6  # the latest campaigns, held out for evaluation and calibration
    min_level_rows: int = 0  # categorical levels rarer than this fold into "(other)" (encoding)
    level: float = 0.90  # interval of the bagged effects and of the observed uplift by decile
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("n_bags", "min_outcomes", "min_control", "test_campaigns", "min_level_rows"):
            value, least = getattr(self, key), 1 if key == "n_bags" else 0
            if int(value) != value or value < least:
                raise ConfigError(f"uplift.{key} must be an integer >= {least}, got {value!r}")
        if not 0 < self.level < 1:
            raise ConfigError(f"uplift.level must be in (0, 1), got {self.level!r}")
        bad = {k: v for k, v in self.outcomes.items() if v not in ("lower", "higher")}
        if not self.outcomes or bad:
            raise ConfigError(f"uplift.outcomes must map outcome columns to 'lower' or 'higher', got {bad}")

    @classmethod
    def from_config(cls, uplift: Mapping[str, Any]) -> UpliftSettings:
        """From the composed `uplift` group (`learner` is built from its `_target_`)."""
        from hydra.utils import instantiate

        keys = ("n_bags", "min_outcomes", "min_control", "test_campaigns", "min_level_rows", "level", "seed")
        return cls(
            learner=instantiate(uplift["learner"], _convert_="all"),
            outcomes=dict(uplift["outcomes"]),
            **{k: uplift[k] for k in keys if k in uplift},
        )


@dataclass(frozen=True)
class OutcomeEvaluation:
    """One outcome of one action on the held-out campaigns: the Qini curve (ranked by benefit) and the
    predicted (uncalibrated) against observed effect by decile."""

    curve: pd.DataFrame
    deciles: pd.DataFrame


@dataclass(frozen=True)
class ActionUplift:
    """One action's bagged learners per outcome, with its evidence, held-out metrics and effect scale."""

    action: str
    features: list[str]
    encoder: SnapshotEncoder
    outcomes: dict[str, list[UpliftLearner]]
    n_treated: int  # the action's campaign rows (held-out ones included)
    n_control: int
    metrics: dict[str, float]
    scale: dict[str, float]  # per outcome, from the held-out campaigns (1 = the learners at face value)
    evaluation: dict[str, OutcomeEvaluation]
    level: float = 0.90
    # Per outcome (bundles from before them: None, effects = scale x the bags'): the action's observed average
    # effect in its campaigns (Hajek), its interval's half-width, and the learners' mean effect on their training rows.
    average: dict[str, float] | None = None
    average_half: dict[str, float] | None = None
    center: dict[str, float] | None = None
    prior_variance: dict[str, float] | None = (
        None  # per outcome, the sceptical prior's (EffectEstimate.posterior)
    )

    def effects(self, X: pd.DataFrame, calibrated: bool = True) -> dict[str, EffectEstimate]:
        """Per outcome, each customer's effect of this action: calibrated, the observed average effect plus the
        held-out scale x the learners' deviation from their mean (`EffectEstimate.shrunk`), then shrunk toward 0
        by its noise (`EffectEstimate.posterior`); else the bags' mean and interval."""
        encoded = Matrix.of(self.encoder.transform(X[self.features]))  # once for every outcome and bag
        out = {}
        for outcome, bags in self.outcomes.items():
            raw = bagged_effect(bags, encoded, self.level)
            if not calibrated:
                out[outcome] = raw
            elif self.average is None:
                out[outcome] = raw.scaled(self.scale[outcome])
            else:
                out[outcome] = raw.shrunk(
                    self.average[outcome],
                    self.average_half[outcome],
                    self.center[outcome],
                    self.scale[outcome],
                ).posterior(self.prior_variance[outcome], self.level)
        return out


@dataclass(frozen=True)
class UpliftBundle:
    """Every learned action, and the actions that stay assumed with the reason."""

    actions: dict[str, ActionUplift]
    assumed: dict[str, str]  # action -> why it stays assumed ("0 controls", "41 churn_h outcomes < 300")
    test_campaigns: dict[str, tuple[str, ...]]  # per outcome, the held-out campaigns

    def assumed_message(self) -> str | None:
        """One line naming every action left to its assumed effect, or None."""
        if not self.assumed:
            return None
        listed = ", ".join(f"{action} ({reason})" for action, reason in self.assumed.items())
        return f"uplift: {listed} stay assumed"

    def effect_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per customer (X's index): `<action>__<outcome>` and its `__low` / `__high`, calibrated."""
        columns: dict[str, np.ndarray] = {}
        for name, action in self.actions.items():
            for outcome, estimate in action.effects(X).items():
                prefix = f"{name}__{outcome}"
                columns |= {
                    prefix: estimate.mean,
                    f"{prefix}__low": estimate.low,
                    f"{prefix}__high": estimate.high,
                }
        return pd.DataFrame(columns, index=X.index)

    def metrics(self) -> dict[str, float]:
        """`uplift_<action>_<metric>` for every learned action (NaN-free: missing metrics are left out)."""
        return {
            f"uplift_{name}_{key}": value
            for name, action in self.actions.items()
            for key, value in action.metrics.items()
            if np.isfinite(value)
        }

    def figures(self) -> dict[str, Figure]:
        """Per learned action and outcome with a held-out evaluation: `uplift/<action>_<outcome>_qini.png`
        and `uplift/<action>_<outcome>_deciles.png` (close them after logging)."""
        return dict(self.iter_figures())

    def iter_figures(self) -> Iterator[tuple[str, Figure]]:
        """The same figures one by one (log and close each before the next is drawn)."""
        for name, action in self.actions.items():
            for outcome, evaluation in action.evaluation.items():
                yield (
                    f"uplift/{name}_{outcome}_qini.png",
                    qini_figure(evaluation.curve, f"{name}: {outcome} Qini (held-out campaigns)"),
                )
                yield (
                    f"uplift/{name}_{outcome}_deciles.png",
                    decile_figure(evaluation.deciles, f"{name}: effect on {outcome} by decile (held-out)"),
                )


def calibration_scale(deciles: pd.DataFrame, level: float = 0.90) -> float:
    """How much of the predicted differences between customers the held-out campaigns confirm: the slope of
    observed on predicted effect by decile, with an intercept (the level is the shrunk average's, not the
    slope's), inverse-variance weighted, clipped to [0, 1]; 1 when the deciles cannot say (no interval, or
    every decile predicted alike)."""
    half = (deciles["high"] - deciles["low"]) / 2.0
    usable = np.isfinite(deciles["observed"]) & (half > 0)
    if usable.sum() < 2:
        return 1.0
    z = float(norm.ppf(0.5 + level / 2.0))
    weight = (z / half[usable]) ** 2
    predicted, observed = deciles["predicted"][usable], deciles["observed"][usable]
    dx = predicted - np.average(predicted, weights=weight)
    dy = observed - np.average(observed, weights=weight)
    denominator = float(np.sum(weight * dx**2))
    if denominator <= 0:
        return 1.0
    return float(np.clip(np.sum(weight * dx * dy) / denominator, 0.0, 1.0))


def _checked_rows(rows: pd.DataFrame, features: pd.DataFrame, outcomes: Sequence[str]) -> pd.DataFrame:
    """The campaign rows with propensity filled (NaN -> the campaign-action's treated share); clear errors
    for missing columns, misaligned features and impossible propensities."""
    missing = [c for c in (*ROW_KEYS, *outcomes) if c not in rows.columns]
    if missing:
        raise ValueError(f"campaign rows lack column(s) {missing} (uplift.outcomes lists {list(outcomes)})")
    if not features.index.equals(rows.index):
        raise ValueError("features must have the campaign rows' index (one feature row per campaign row)")
    if rows["treated"].isna().any() or not set(rows["treated"].unique()) <= {True, False}:
        raise ValueError("campaign rows: column treated must be True or False on every row")
    treated = rows["treated"].astype(bool)
    share = treated.groupby([rows["campaign_id"], rows["action"]]).transform("mean")
    propensity = rows["propensity"].astype(float).fillna(share)
    bad = ~((propensity > 0) & (propensity <= 1)) | (~treated & (propensity >= 1))
    if bad.any():
        examples = rows.loc[bad, ["campaign_id", "customer_id", "propensity"]].head(3).to_dict("records")
        raise ValueError(
            f"campaign rows: column propensity must be in (0, 1] (below 1 for control rows); "
            f"{int(bad.sum())} row(s) are not, e.g. {examples}"
        )
    return rows.assign(treated=treated, propensity=propensity)


def held_out_campaigns(rows: pd.DataFrame, n: int, outcome: str) -> tuple[str, ...]:
    """The `n` latest campaigns with a known `outcome` (by their latest assigned_at, ties by id)."""
    if n == 0:
        return ()
    known = rows[rows[outcome].notna()]
    latest = known.groupby("campaign_id")["assigned_at"].max().reset_index()
    latest = latest.sort_values(["assigned_at", "campaign_id"])
    if len(latest) <= n:
        # too short a history to learn from some campaigns and test on later ones: nothing is left to train on,
        # so every action stays assumed (with its count of training outcomes, 0) rather than training failing
        log.warning(
            "uplift: only %d campaign(s) with a known %s, not more than uplift.test_campaigns = %d held out: "
            "none left to learn %s from",
            len(latest), outcome, n, outcome,
        )  # fmt: skip
        return tuple(latest["campaign_id"].tolist())
    return tuple(latest["campaign_id"].iloc[-n:].tolist())


def _shortfall(rows: pd.DataFrame, training: Mapping[str, pd.Series], settings: UpliftSettings) -> str | None:
    """Why an action's campaign rows are not enough evidence, or None: too few controls among them, or
    too few labelled rows in an arm of an outcome's training campaigns."""
    n_control = int((~rows["treated"]).sum())
    if n_control == 0:
        return "0 controls"
    if n_control < settings.min_control:
        return f"{n_control} controls < {settings.min_control}"
    for outcome, train in training.items():
        fewest = min(int((train & rows["treated"]).sum()), int((train & ~rows["treated"]).sum()))
        if fewest < settings.min_outcomes:
            return f"{fewest} {outcome} outcomes < {settings.min_outcomes}"
    return None


def _evaluate(
    bags: list[UpliftLearner], X: pd.DataFrame, test: pd.DataFrame, outcome: str, settings: UpliftSettings
) -> tuple[dict[str, float], float, OutcomeEvaluation | None]:
    """Held-out metrics, the effect scale and the curves of one outcome (`test`: its labelled rows)."""
    t = test["treated"].to_numpy()
    if min(int(t.sum()), int((~t).sum())) < 2:
        return {f"{outcome}_n_test": float(len(test))}, 1.0, None
    y, p = test[outcome].to_numpy(dtype=float), test["propensity"].to_numpy()
    effect = bagged_effect(bags, X, settings.level).mean
    sign = -1.0 if settings.outcomes[outcome] == "lower" else 1.0  # rank and read the curve by benefit
    deciles = uplift_by_decile(y, t, effect, p, confidence=settings.level)
    scale = calibration_scale(deciles, settings.level)
    metrics = {
        f"{outcome}_qini": qini_auc(sign * y, t, sign * effect, p),
        f"{outcome}_auuc": auuc(sign * y, t, sign * effect, p),
        f"{outcome}_effect_scale": scale,
        f"{outcome}_predicted_effect": float(effect.mean()),
        f"{outcome}_observed_effect": observed_uplift(y, t, p, settings.level)[0],
        f"{outcome}_n_test": float(len(test)),
    }
    return metrics, scale, OutcomeEvaluation(qini_curve(sign * y, t, sign * effect, p), deciles)


def fit_uplift(
    rows: pd.DataFrame,
    features: pd.DataFrame,
    settings: UpliftSettings,
    categorical: Sequence[str] | None = None,
    actions: Sequence[str] = (),
) -> UpliftBundle:
    """Fit, evaluate and calibrate an uplift model per action of the campaign rows (and of `actions`, the
    catalogue: one without campaign rows stays assumed, "no campaign rows").

    `rows`: campaign_id, customer_id, action, assigned_at, treated (bool), propensity (in (0, 1]; NaN ->
    the campaign-action's treated share) and the outcome columns of `settings.outcomes` (NaN = unknown);
    `features`: the model's feature columns, one row per campaign row (same index); `categorical`: its
    categorical columns (default: every non-numeric column).
    Per outcome, the latest `test_campaigns` campaigns where it is known are held out (a margin window that
    runs past the data end leaves the latest campaigns unlabelled; churn's are held out regardless) and
    the learners fit on the rest. Actions with fewer than `min_control` controls, or fewer than
    `min_outcomes` labelled training rows in an arm of an outcome, stay assumed (`bundle.assumed`).
    """
    rows = _checked_rows(rows, features, list(settings.outcomes))
    # an outcome the data never shows (campaign costs, say, from a table without a cost column) is not learned
    unknown = [o for o in settings.outcomes if not rows[o].notna().any()]
    if unknown:
        log.info("uplift: %s unknown in every campaign row: not learned", ", ".join(unknown))
    outcomes = [o for o in settings.outcomes if o not in unknown]
    if categorical is None:
        categorical = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    held_out = {o: held_out_campaigns(rows, settings.test_campaigns, o) for o in outcomes}
    is_test = {o: rows["campaign_id"].isin(held_out[o]) & rows[o].notna() for o in outcomes}
    is_train = {o: ~rows["campaign_id"].isin(held_out[o]) & rows[o].notna() for o in outcomes}
    learned, assumed = {}, {}
    names = sorted(set(rows["action"]) | set(actions))
    for action in tqdm(names, desc="uplift", unit="action", disable=len(names) < 2):
        mine = rows["action"] == action
        reason = (
            "no campaign rows"
            if not mine.any()
            else _shortfall(rows[mine], {o: is_train[o][mine] for o in outcomes}, settings)
        )
        if reason:
            assumed[action] = reason
            continue
        started = time.time()
        encoder = SnapshotEncoder(categorical=list(categorical), min_level_rows=settings.min_level_rows)
        encoder.fit(features.loc[mine])
        bags, metrics, scale, evaluation, center, average, average_half = {}, {}, {}, {}, {}, {}, {}
        for index, outcome in enumerate(outcomes):
            train, test = rows[mine & is_train[outcome]], rows[mine & is_test[outcome]]
            bags[outcome] = fit_bags(
                settings.learner,
                encoder.transform(features.loc[train.index]),
                train["treated"].to_numpy(),
                train[outcome].to_numpy(dtype=float),
                train["propensity"].to_numpy(),
                settings.n_bags,
                (settings.seed, zlib.crc32(action.encode()), index),
            )
            X_test = encoder.transform(features.loc[test.index])
            found, scale[outcome], curves = _evaluate(bags[outcome], X_test, test, outcome, settings)
            metrics |= found | {f"{outcome}_n_train": float(len(train))}
            on_train = bagged_effect(
                bags[outcome], encoder.transform(features.loc[train.index]), settings.level
            )
            center[outcome] = float(on_train.mean.mean())
            known = rows[mine & rows[outcome].notna()]
            # within each campaign (one treated share), combined at each campaign's precision
            observed, low, high = stratified_uplift(
                known[outcome].to_numpy(dtype=float), known["treated"].to_numpy(),
                known["campaign_id"].astype(str).to_numpy(), settings.level,
            )  # fmt: skip
            average[outcome], average_half[outcome] = float(observed), float((high - low) / 2.0)
            if curves is not None:
                evaluation[outcome] = curves
        prior = {}
        for (
            outcome
        ) in outcomes:  # the sceptical prior's variance, from the calibrated effects on the training rows
            train = rows[mine & is_train[outcome]]
            calibrated = bagged_effect(
                bags[outcome], encoder.transform(features.loc[train.index]), settings.level
            ).shrunk(average[outcome], average_half[outcome], center[outcome], scale[outcome])
            prior[outcome] = calibrated.prior_variance(settings.level)
            metrics |= {
                f"{outcome}_average_effect": average[outcome],
                f"{outcome}_prior_sd": float(np.sqrt(prior[outcome])),
            }
        n_treated, n_control = int(rows.loc[mine, "treated"].sum()), int((~rows.loc[mine, "treated"]).sum())
        log.info(
            "uplift: %s learned from %s treated and %s control rows (%.1f s)",
            action, f"{n_treated:,}", f"{n_control:,}", time.time() - started,
        )  # fmt: skip
        learned[action] = ActionUplift(
            action,
            list(features.columns),
            encoder,
            bags,
            n_treated,
            n_control,
            metrics | {"n_treated": float(n_treated), "n_control": float(n_control)},
            scale,
            evaluation,
            settings.level,
            average=average,
            average_half=average_half,
            center=center,
            prior_variance=prior,
        )
    bundle = UpliftBundle(learned, assumed, held_out)
    if bundle.assumed_message():
        log.warning(bundle.assumed_message())
    return bundle
