"""Hyper-parameter tuning (`make tune`).

Runs an Optuna study (TPE, seeded) over the search space in the `tune` config group. Each trial fits the
model on the training dates before a gap and is scored on the latest training dates: the calibration and
test slices are never seen. Data without a usable time axis (split=kfold, data=snapshot) holds out one fold
of customers the study never sees and scores trials by stratified K-fold over the other rows; the held-out
fold then compares the best parameters with the defaults. Trials are nested MLflow runs under one parent; the best parameters are then
trained, calibrated, evaluated and registered by the normal training (the caller runs it with `tuned_config`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from features.build import FeatureTableResult
from features.errors import ConfigError
from models.calibration import NoCalibration
from models.churn_model import fit_churn_model
from models.evaluation import classification_metrics
from models.split import (
    SplitSettings,
    apart,
    load_snapshots,
    plan_split,
    slice_masks,
    stratified_folds,
    unlabelled_note,
)
from models.tracking import TrackingSettings, tracked_run
from models.training import without_empty_features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneResult:
    """The best trial; `trained` is the model trained with it (set by the caller that trains it)."""

    best_params: dict[str, Any]
    best_value: float
    parent_run_id: str
    trained: Any = None
    holdout_best: float | None = None  # K-fold: the metric on the held-out fold with the best parameters
    holdout_default: float | None = None  # ... and with the model's default parameters


def suggest(trial: optuna.Trial, space: dict[str, Any]) -> dict[str, Any]:
    """Parameters for one trial from the configured search space."""
    params = {}
    for name, spec in space.items():
        if spec["type"] == "int":
            params[name] = trial.suggest_int(
                name, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log", False))
            )
        elif spec["type"] == "float":
            params[name] = trial.suggest_float(
                name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False))
            )
        else:
            raise ConfigError(f"tune.search_space.{name}: type must be int or float, not {spec['type']!r}")
    return params


@dataclass(frozen=True)
class TuningRows:
    """What a study is scored on: (fit rows, validation rows) pairs, and for K-fold a held-out fold of
    customers the study never sees, on which the best and the default parameters are then compared."""

    pairs: list[tuple[pd.DataFrame, pd.DataFrame]]
    holdout: pd.DataFrame | None = None
    tuning: pd.DataFrame | None = None  # the rows the pairs are drawn from, when there is a holdout


def validation_pairs(
    settings: SplitSettings, snapshots: pd.DataFrame, validation_dates: int, seed: int, note: str = ""
) -> TuningRows:
    """(fit rows, validation rows) a trial is scored on, never the calibration or test slice.

    Time split: the training slice's latest `validation_dates` dates (`tune.validation_dates`) (after a
    label-window gap) validate a model fitted on the earlier ones. K-fold (split=kfold, or split=auto without
    a usable time axis, e.g. data=snapshot): one stratified fold of customers is held out and never tuned
    on; a trial's score is its mean over stratified folds of the other rows, and the held-out fold then
    measures the best parameters against the defaults without the optimism of having chosen them there.
    """
    plan = plan_split(settings, snapshots, note)
    if plan.time is not None:
        split = plan.time
        train_rows = snapshots[slice_masks(snapshots["observation_date"], split)["train"]]
        held_dates = sorted(split.train)[-validation_dates:]
        fit_dates = [d for d in split.train if apart(d, held_dates[0], settings.gap_days)]
        if not fit_dates:
            raise ConfigError(
                f"tune.validation_dates={validation_dates}: the training slice ({len(split.train)} date(s), "
                f"{split.train[0]}..{split.train[-1]}) has no date left to fit on {settings.gap_days} days before "
                f"the validation dates; lower it"
            )
        fit_rows = train_rows[train_rows["observation_date"].isin(fit_dates)]
        validation_rows = train_rows[train_rows["observation_date"].isin(held_dates)]
        log.info(
            "tuning on %s snapshots (%d dates), validating on %s (%s .. %s)", f"{len(fit_rows):,}",
            len(fit_dates), f"{len(validation_rows):,}", held_dates[0], held_dates[-1],
        )  # fmt: skip
        return TuningRows([(fit_rows, validation_rows)])
    folds = settings.n_folds
    tuning_index, holdout_index = stratified_folds(snapshots, folds, seed)[0]
    tuning, holdout = snapshots.iloc[tuning_index], snapshots.iloc[holdout_index]
    log.info(
        "tuning with stratified %d-fold cross-validation over %s rows; %s rows (one fold of customers) held out "
        "to compare the best parameters with the defaults", folds, f"{len(tuning):,}", f"{len(holdout):,}",
    )  # fmt: skip
    pairs = [(tuning.iloc[fit], tuning.iloc[held]) for fit, held in stratified_folds(tuning, folds, seed)]
    return TuningRows(pairs, holdout, tuning)


def tune(cfg: DictConfig, built: FeatureTableResult) -> TuneResult:
    """Search the configured space on the feature table `built`; each trial is a nested MLflow run."""
    import mlflow

    snapshots = load_snapshots(built.table_path)
    manifest = without_empty_features(built.manifest, snapshots)  # the features training will use
    features = [f["name"] for f in manifest["features"]]
    settings = SplitSettings.from_config(cfg.split, cfg.label)
    rows = validation_pairs(
        settings,
        snapshots,
        int(cfg.tune.validation_dates),
        int(cfg.tune.seed),
        unlabelled_note(built.manifest),
    )
    pairs = rows.pairs
    space = OmegaConf.to_container(cfg.tune.search_space, resolve=True)
    metric = cfg.tune.metric

    TrackingSettings.from_config(cfg.mlflow).setup()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tags = {"stage": "tune", "data.fingerprint": manifest["input"]["fingerprint"]}
    with tracked_run("tune", tags) as parent:

        def objective(trial: optuna.Trial) -> float:
            params = suggest(trial, space)
            estimator = instantiate(cfg.model).set_params(**params)
            per_pair = []
            for fit_rows, validation_rows in pairs:
                model = fit_churn_model(
                    estimator, NoCalibration(), fit_rows, validation_rows,
                    features=features, categorical=manifest["categorical_features"],
                    min_level_rows=int(cfg.encoding.min_level_rows),
                )  # fmt: skip
                y_validation = validation_rows["churned"].to_numpy()
                per_pair.append(classification_metrics(y_validation, model.predict_proba(validation_rows)))
            scores = {k: float(np.mean([m[k] for m in per_pair])) for k in per_pair[0]}
            with tracked_run(f"trial-{trial.number}", {"stage": "tune-trial"}, nested=True):
                mlflow.log_params(params)
                mlflow.log_metrics({f"validation_{k}": v for k, v in scores.items()})
            log.info("trial %d: validation %s %.4f", trial.number, metric, scores[metric])
            return scores[metric]

        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=int(cfg.tune.seed))
        )
        study.optimize(objective, n_trials=int(cfg.tune.n_trials), show_progress_bar=True)
        mlflow.log_params({f"best_{k}": v for k, v in study.best_params.items()})
        mlflow.log_metric(f"best_validation_{metric}", study.best_value)
        holdout = {}
        if rows.holdout is not None:
            for label, estimator in (
                ("holdout", instantiate(cfg.model).set_params(**study.best_params)),
                ("holdout_default", instantiate(cfg.model)),
            ):
                model = fit_churn_model(
                    estimator, NoCalibration(), rows.tuning, rows.holdout,
                    features=features, categorical=manifest["categorical_features"],
                )  # fmt: skip
                y_holdout = rows.holdout["churned"].to_numpy()
                holdout[label] = classification_metrics(y_holdout, model.predict_proba(rows.holdout))[metric]
            mlflow.log_metrics({f"{k}_{metric}": v for k, v in holdout.items()})
            log.info(
                "held-out fold (never tuned on): %s %.4f with the best parameters, %.4f with the defaults",
                metric, holdout["holdout"], holdout["holdout_default"],
            )  # fmt: skip

    log.info(
        "best trial %d: %s %.4f with %s", study.best_trial.number, metric, study.best_value, study.best_params
    )
    return TuneResult(
        dict(study.best_params), float(study.best_value), parent.info.run_id,
        holdout_best=holdout.get("holdout"), holdout_default=holdout.get("holdout_default"),
    )  # fmt: skip


def tuned_config(cfg: DictConfig, best_params: dict[str, Any]) -> DictConfig:
    """The config with the model's parameters set to the best trial's."""
    tuned = cfg.copy()
    with open_dict(tuned):
        for name, value in best_params.items():
            tuned.model[name] = value
    return tuned
