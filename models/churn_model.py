"""A fitted churn model: encoder, estimator and calibrator, with early stopping on the training side."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from models.preprocessing import SnapshotEncoder

log = logging.getLogger(__name__)


def single_threaded_maths(estimator: Any) -> threadpool_limits:
    """Limit BLAS and OpenMP to one thread for estimators whose parallel sums vary in order between runs.

    The same config and seed must give the same metrics. LightGBM keeps its threads: `deterministic=True`
    makes it repeatable; scikit-learn's linear models sum in parallel (BLAS, OpenMP) in varying order.
    """
    if type(estimator).__module__.startswith("lightgbm"):
        return threadpool_limits(limits=1, user_api="blas")
    return threadpool_limits(limits=1)


@dataclass
class ChurnModel:
    """Everything needed to turn a snapshot table into calibrated churn probabilities."""

    encoder: SnapshotEncoder
    estimator: Any
    calibrator: Any
    features: list[str]
    categorical: list[str]
    best_iteration: int | None = None
    # Linear pipelines: the mean of the transformed training matrix, so contributions are relative to the
    # average training customer (as TreeSHAP's are for trees).
    linear_reference: np.ndarray | None = None

    def raw_scores(self, frame: pd.DataFrame) -> np.ndarray:
        """The estimator's uncalibrated probability of churn (one BLAS thread, so results repeat exactly)."""
        with single_threaded_maths(self.estimator):
            return self.estimator.predict_proba(self.encoder.transform(frame[self.features]))[:, 1]

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of churn in the label window."""
        return np.clip(self.calibrator.predict(self.raw_scores(frame)), 0.0, 1.0)

    @property
    def is_lightgbm(self) -> bool:
        """Whether the estimator is a LightGBM model (exact TreeSHAP contributions available)."""
        return type(self.estimator).__module__.startswith("lightgbm")

    def contributions(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-row, per-feature contributions to the raw log-odds; the last column is the bias.

        LightGBM: exact TreeSHAP (`pred_contrib`). Linear pipelines (a transformer chain ending in a model
        with `coef_`): coefficient times the transformed value's difference from its training mean, summed
        back onto the original feature (one-hot columns and missing-value indicators included); the bias is
        the log-odds of the average training customer. Either way a row's contributions sum to its raw
        log-odds.
        """
        X = self.encoder.transform(frame[self.features])
        if self.is_lightgbm:
            return np.asarray(self.estimator.predict_proba(X, pred_contrib=True))
        if not self.is_linear:
            raise NotImplementedError(
                f"per-customer contributions are implemented for LightGBM and linear pipelines, not "
                f"{type(self.estimator).__name__}"
            )
        with single_threaded_maths(self.estimator):
            transformed = np.asarray(self.estimator[:-1].transform(X), dtype=float)
        coef = np.asarray(self.estimator[-1].coef_[0], dtype=float)
        reference = (
            self.linear_reference if self.linear_reference is not None else np.zeros(transformed.shape[1])
        )
        per_column = (transformed - reference) * coef
        owner = transformed_column_owners(list(self.estimator[:-1].get_feature_names_out()), self.features)
        out = np.zeros((len(frame), len(self.features) + 1))
        for column, feature in enumerate(owner):
            out[:, feature] += per_column[:, column]
        out[:, -1] = float(self.estimator[-1].intercept_[0]) + float(reference @ coef)
        return out

    @property
    def is_linear(self) -> bool:
        """Whether the estimator is a pipeline ending in a linear model (coefficients available)."""
        steps = getattr(self.estimator, "steps", None)
        return bool(steps) and hasattr(self.estimator[-1], "coef_")

    def importance(self) -> tuple[list[str], np.ndarray]:
        """Feature importance: LightGBM gain, or absolute coefficients of a linear pipeline."""
        if self.is_lightgbm:
            return self.features, self.estimator.booster_.feature_importance(importance_type="gain")
        pipeline = self.estimator
        names = list(pipeline[:-1].get_feature_names_out())
        return names, np.abs(pipeline[-1].coef_[0])


def fit_churn_model(
    estimator: Any,
    calibrator: Any,
    train: pd.DataFrame,
    calibration: pd.DataFrame,
    *,
    features: list[str],
    categorical: list[str],
    target: str = "churned",
    early_stopping: pd.DataFrame | None = None,
    early_stopping_rounds: int = 50,
    min_level_rows: int = 0,
) -> ChurnModel:
    """Fit estimator on `train`, then the calibrator on its scores for `calibration`.

    Categories held by fewer than `min_level_rows` training rows are folded into one level (SnapshotEncoder).
    For LightGBM, `early_stopping` (later dates of the training period) picks the number of trees; the
    final model is refitted on all of `train` with that many trees. The calibration slice is never used to
    fit or stop the estimator.
    """
    encoder = SnapshotEncoder(categorical=categorical, min_level_rows=min_level_rows).fit(train[features])
    X_train, y_train = encoder.transform(train[features]), train[target].to_numpy(dtype=int)
    best_iteration = None
    model = clone(estimator)
    if type(model).__module__.startswith("lightgbm") and early_stopping is not None and len(early_stopping):
        import lightgbm

        fit_rows = ~train.index.isin(early_stopping.index)
        probe = clone(estimator).fit(
            X_train[fit_rows],
            y_train[fit_rows],
            eval_X=(encoder.transform(early_stopping[features]),),
            eval_y=(early_stopping[target].to_numpy(dtype=int),),
            eval_metric="binary_logloss",
            callbacks=[lightgbm.early_stopping(early_stopping_rounds, verbose=False)],
        )
        best_iteration = int(probe.best_iteration_ or probe.n_estimators)
        model.set_params(n_estimators=best_iteration)
        log.info("early stopping on the training side chose %d trees", best_iteration)
    with single_threaded_maths(model):
        model.fit(X_train, y_train)
    fitted = ChurnModel(
        encoder,
        model,
        None,
        list(features),
        list(categorical),
        best_iteration,
        linear_reference(model, X_train),
    )
    raw = fitted.raw_scores(calibration)
    fitted.calibrator = clone(calibrator).fit(raw, calibration[target].to_numpy(dtype=int))
    return fitted


@dataclass(frozen=True)
class OutOfFold:
    """One repeat of a K-fold: every row's honest (out-of-fold) raw score and calibrated probability."""

    fold_of_row: np.ndarray
    raw: np.ndarray
    probability: np.ndarray


@dataclass(frozen=True)
class CrossValidated:
    """A model fitted on all rows, with the out-of-fold predictions of each repeat of its K-fold."""

    model: ChurnModel
    repeats: list[OutOfFold]


def kfold_assignments(
    rows: pd.DataFrame,
    n_folds: int,
    seed: int,
    n_repeats: int = 1,
    target: str = "churned",
    group: str = "customer_id",
) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """The folds of each repeat (repeat r shuffled with seed + r): the same rows, settings and seed give the
    same folds, so two models scored on them are compared on the same held-out rows."""
    from models.split import stratified_folds  # training only: the served model does not import it

    return [stratified_folds(rows, n_folds, seed + r, target, group) for r in range(n_repeats)]


def out_of_fold(
    estimator: Any,
    calibrator: Any,
    rows: pd.DataFrame,
    folds: list[tuple[np.ndarray, np.ndarray]],
    *,
    features: list[str],
    categorical: list[str],
    target: str = "churned",
    min_level_rows: int = 0,
) -> OutOfFold:
    """Each fold's estimator scores the rows it did not see; the calibrator for a fold is fitted on the other
    folds' out-of-fold scores, so every out-of-fold probability is honest."""
    y = rows[target].to_numpy(dtype=int)
    fold_of_row = np.zeros(len(rows), dtype=int)
    raw = np.zeros(len(rows))
    for k, (fit_index, held_index) in enumerate(folds):
        fold_of_row[held_index] = k
        fold_model = _fit_uncalibrated(
            estimator, rows.iloc[fit_index], y[fit_index], features, categorical, min_level_rows
        )
        raw[held_index] = fold_model.raw_scores(rows.iloc[held_index])
    probability = np.zeros(len(rows))
    for k in range(len(folds)):
        held = fold_of_row == k
        probability[held] = clone(calibrator).fit(raw[~held], y[~held]).predict(raw[held])
    return OutOfFold(fold_of_row, raw, np.clip(probability, 0.0, 1.0))


def repeated_out_of_fold(
    estimator: Any,
    calibrator: Any,
    rows: pd.DataFrame,
    *,
    features: list[str],
    categorical: list[str],
    n_folds: int,
    seed: int,
    n_repeats: int = 1,
    target: str = "churned",
    group: str = "customer_id",
    min_level_rows: int = 0,
) -> list[OutOfFold]:
    """`out_of_fold` for every repeat of the stratified K-fold (`kfold_assignments`): what a K-fold run
    reports, and what the promotion gate scores two models on, fold for fold."""
    return [
        out_of_fold(
            estimator,
            calibrator,
            rows,
            folds,
            features=features,
            categorical=categorical,
            target=target,
            min_level_rows=min_level_rows,
        )  # fmt: skip
        for folds in kfold_assignments(rows, n_folds, seed, n_repeats, target, group)
    ]


def fit_cross_validated(
    estimator: Any,
    calibrator: Any,
    rows: pd.DataFrame,
    *,
    features: list[str],
    categorical: list[str],
    n_folds: int,
    seed: int,
    n_repeats: int = 1,
    target: str = "churned",
    group: str = "customer_id",
    min_level_rows: int = 0,
) -> CrossValidated:
    """Stratified K-fold (grouped by customer, repeated `n_repeats` times) for data without a usable time
    axis: the out-of-fold predictions of every repeat (`repeated_out_of_fold`), and the estimator refitted on all
    rows with a calibrator fitted on the out-of-fold scores of every repeat. Each fit folds categories with
    fewer than `min_level_rows` of its own rows (SnapshotEncoder)."""
    repeats = repeated_out_of_fold(
        estimator, calibrator, rows, features=features, categorical=categorical, n_folds=n_folds, seed=seed,
        n_repeats=n_repeats, target=target, group=group, min_level_rows=min_level_rows,
    )  # fmt: skip
    y = rows[target].to_numpy(dtype=int)
    final = _fit_uncalibrated(estimator, rows, y, features, categorical, min_level_rows)
    final.calibrator = clone(calibrator).fit(
        np.concatenate([r.raw for r in repeats]), np.tile(y, len(repeats))
    )
    return CrossValidated(final, repeats)


def _fit_uncalibrated(
    estimator: Any,
    rows: pd.DataFrame,
    y: np.ndarray,
    features: list[str],
    categorical: list[str],
    min_level_rows: int = 0,
) -> ChurnModel:
    """Encoder and a clone of the estimator fitted on `rows`, not yet calibrated."""
    encoder = SnapshotEncoder(categorical=categorical, min_level_rows=min_level_rows).fit(rows[features])
    X = encoder.transform(rows[features])
    model = clone(estimator)
    with single_threaded_maths(model):
        model.fit(X, y)
    return ChurnModel(
        encoder, model, None, list(features), list(categorical), linear_reference=linear_reference(model, X)
    )


def linear_reference(estimator: Any, X: pd.DataFrame) -> np.ndarray | None:
    """For a fitted pipeline ending in a linear model: the mean of its transformed training matrix."""
    steps = getattr(estimator, "steps", None)
    if not steps or not hasattr(estimator[-1], "coef_"):
        return None
    with single_threaded_maths(estimator):
        return np.asarray(estimator[:-1].transform(X), dtype=float).mean(axis=0)


def transformed_column_owners(columns: list[str], features: list[str]) -> list[int]:
    """For each output column of a ColumnTransformer, the index of the original feature it comes from.

    Names look like `numeric__tenure_days`, `numeric__missingindicator_days_since_last_order` or
    `categorical__segment_small_business` (a one-hot column: the longest feature name that prefixes it).
    """
    by_length = sorted(range(len(features)), key=lambda i: -len(features[i]))
    owners = []
    for column in columns:
        name = column.split("__", 1)[-1].removeprefix("missingindicator_")
        owner = next(
            (i for i in by_length if name == features[i] or name.startswith(features[i] + "_")), None
        )
        if owner is None:
            raise ValueError(f"cannot tell which feature the model column {column!r} comes from")
        owners.append(owner)
    return owners
