"""Hyper-parameter tuning (`make tune`).

Runs an Optuna study (TPE, seeded) over the search space in the `tune` config group. Each trial fits the
model on the training dates before a gap and is scored on the latest training dates: the calibration and
test slices are never seen. Data without a usable time axis (split=kfold, data=snapshot) is scored by
stratified K-fold over all rows instead. Trials are nested MLflow runs under one parent; the best parameters are then
trained, calibrated, evaluated and registered by the normal training (the caller runs it with `tuned_config`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
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
from models.errors import SplitError
from models.evaluation import classification_metrics
from models.split import SplitSettings, configured_split, load_snapshots, slice_masks, stratified_folds
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


def validation_pairs(
    settings: SplitSettings, snapshots: pd.DataFrame, validation_dates: int, seed: int
) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """(fit rows, validation rows) a trial is scored on, never the calibration or test slice.

    Time split: the training slice's latest `validation_dates` dates (`tune.validation_dates`) (after a label-window gap) validate a
    model fitted on the earlier ones. K-fold (no usable time axis, e.g. data=snapshot): stratified folds over
    all rows, grouped by customer; a trial's score is the mean over the folds. The final K-fold metrics are
    then measured on rows that also chose the parameters, so they are slightly optimistic.
    """
    if settings.kind == "time":
        try:
            split = configured_split(settings, snapshots)
        except SplitError:
            if not settings.kfold_fallback:
                raise
        else:
            train_rows = snapshots[slice_masks(snapshots["observation_date"], split)["train"]]
            held_dates = sorted(split.train)[-validation_dates:]
            fit_dates = [d for d in split.train if d + timedelta(days=settings.gap_days) <= held_dates[0]]
            if not fit_dates:
                raise ConfigError(
                    "too few training dates to hold out tune.validation_dates after a gap; lower it"
                )
            fit_rows = train_rows[train_rows["observation_date"].isin(fit_dates)]
            validation_rows = train_rows[train_rows["observation_date"].isin(held_dates)]
            log.info(
                "tuning on %s snapshots (%d dates), validating on %s (%s .. %s)", f"{len(fit_rows):,}",
                len(fit_dates), f"{len(validation_rows):,}", held_dates[0], held_dates[-1],
            )  # fmt: skip
            return [(fit_rows, validation_rows)]
    folds = settings.n_folds
    log.info("tuning with stratified %d-fold cross-validation over %s rows", folds, f"{len(snapshots):,}")
    return [
        (snapshots.iloc[fit], snapshots.iloc[held]) for fit, held in stratified_folds(snapshots, folds, seed)
    ]


def tune(cfg: DictConfig, built: FeatureTableResult) -> TuneResult:
    """Search the configured space on the feature table `built`; each trial is a nested MLflow run."""
    import mlflow

    snapshots = load_snapshots(built.table_path)
    manifest = without_empty_features(built.manifest, snapshots)  # the features training will use
    features = [f["name"] for f in manifest["features"]]
    settings = SplitSettings.from_config(cfg.split, cfg.label)
    pairs = validation_pairs(settings, snapshots, int(cfg.tune.validation_dates), int(cfg.tune.seed))
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

    log.info(
        "best trial %d: %s %.4f with %s", study.best_trial.number, metric, study.best_value, study.best_params
    )
    return TuneResult(dict(study.best_params), float(study.best_value), parent.info.run_id)


def tuned_config(cfg: DictConfig, best_params: dict[str, Any]) -> DictConfig:
    """The config with the model's parameters set to the best trial's."""
    tuned = cfg.copy()
    with open_dict(tuned):
        for name, value in best_params.items():
            tuned.model[name] = value
    return tuned
