"""Training: calibrate, evaluate, track and register a churn model (`make train`).

From the point-in-time feature table, splits its labelled
snapshots by time into train / calibration / test slices, fits the configured model with early stopping on
the training side, calibrates it on the calibration slice, evaluates it on the test slice (beside the
baseline and, on demo data, the generator's true probabilities), and logs everything to MLflow: resolved
config, git commit, input fingerprint, feature manifest, metrics, plots and the model as one pyfunc. The
model is registered with the alias `challenger`; the promotion gate (models.promotion) then decides whether it
becomes `champion`.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from features.build import FeatureTableResult
from features.errors import ConfigError
from features.provenance import resolved_config, resolved_yaml
from models.calibration import calibration_name
from models.ceiling import true_probability
from models.churn_model import ChurnModel, fit_churn_model, fit_cross_validated
from models.errors import SplitError
from models.evaluation import (
    classification_metrics,
    gains_figure,
    importance_figure,
    reliability_figure,
    roc_pr_figures,
    segment_labels,
    segment_metrics,
    shap_summary_figure,
    targeting_profit,
)
from models.registry import register_challenger
from models.split import SplitSettings, configured_split, load_snapshots, slice_masks
from models.tracking import TrackingSettings, config_params, tracked_run

log = logging.getLogger(__name__)
HEADLINE = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_at_10", "capture_at_20")


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    run_id: str
    experiment_id: str
    data_fingerprint: str
    model_uri: str
    model_version: str
    metrics: dict[str, float]
    split: str
    promoted: bool  # whether the promotion gate made it the champion (set by the caller that runs the gate)
    test_rows: pd.DataFrame | None = field(default=None, repr=False, compare=False)  # what the gate scores
    seconds: float = 0.0
    calibration: str = ""  # the calibrator used (the choice, with calibration=auto)
    notes: list[str] = field(default_factory=list)


def train(cfg: DictConfig, built: FeatureTableResult) -> TrainResult:
    """Train, calibrate, evaluate, log and register on the feature table `built`; see the module docstring."""
    import mlflow

    started = time.time()
    snapshots = load_snapshots(built.table_path)
    manifest = without_empty_features(built.manifest, snapshots)
    features = [f["name"] for f in manifest["features"]]
    categorical = manifest["categorical_features"]
    settings, seed = SplitSettings.from_config(cfg.split, cfg.label), int(cfg.seed)
    fitted = fit_and_evaluate(
        settings, snapshots, features, categorical, instantiate(cfg.model), instantiate(cfg.calibration), seed
    )
    model, test_rows, p_test, split = fitted.model, fitted.test_rows, fitted.p_test, fitted.description
    y_test = test_rows["churned"].to_numpy()
    metrics = {f"test_{k}": v for k, v in classification_metrics(y_test, p_test).items()}
    metrics |= {f"test_{k}": v for k, v in targeting_profit(y_test, p_test, cfg.evaluation.profit).items()}
    segments = segment_labels(test_rows, OmegaConf.to_container(cfg.evaluation.segments))
    metrics |= {f"test_{k}": v for k, v in segment_metrics(y_test, p_test, segments).items()}
    metrics |= fitted.extra_metrics
    metrics["raw_test_roc_auc"] = classification_metrics(y_test, fitted.raw_test)["roc_auc"]
    if model.best_iteration:
        metrics["best_iteration"] = float(model.best_iteration)

    truth = true_probability(
        cfg.data.get("truth_path"), test_rows,
        horizon_days=int(cfg.label.horizon_days), lead_days=int(cfg.label.get("lead_days", 0)),
    )  # fmt: skip
    if truth is not None:
        metrics |= {
            f"ceiling_test_{k}": v for k, v in classification_metrics(y_test, truth).items() if k in HEADLINE
        }

    if cfg.evaluation.get("baseline"):
        base = fit_and_evaluate(
            settings, snapshots, features, categorical, instantiate(cfg.evaluation.baseline),
            instantiate(cfg.calibration), seed,
        )  # fmt: skip
        metrics |= {
            f"baseline_test_{k}": v
            for k, v in classification_metrics(y_test, base.p_test).items()
            if k in HEADLINE
        }

    tracking = TrackingSettings.from_config(cfg.mlflow)
    experiment_id = tracking.setup()
    name = tracking.registered_model_name
    tags = {
        "stage": "train",
        "data.name": cfg.data.name,
        "data.fingerprint": manifest["input"]["fingerprint"],
        "git.commit": manifest["git"]["commit"],
        "git.dirty": str(manifest["git"]["dirty"]).lower(),
        "label": cfg.label.name,
        "label.population": str(cfg.label.population),
        "label.horizon_days": str(cfg.label.horizon_days),
        "model.class": type(model.estimator).__name__,
        "calibration": calibration_name(model.calibrator),
        "split": split,
    }
    run_name = f"train-{cfg.data.name}-{OmegaConf.select(cfg, 'model._target_').split('.')[-1]}"
    with tracked_run(run_name, tags) as run:
        mlflow.log_params(config_params(resolved_config(cfg)) | {"calibration.chosen": tags["calibration"]})
        mlflow.log_metrics(metrics)
        _log_churn_by_date(manifest)
        _log_plots(model, test_rows, y_test, p_test, truth)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "resolved_config.yaml").write_text(resolved_yaml(cfg))
            (folder / "feature_manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
            mlflow.log_artifacts(str(folder), artifact_path="run_info")
        model_info = _log_model(model, test_rows, features, manifest, cfg)
        version = register_challenger(model_info.model_uri, name)
    return TrainResult(
        run.info.run_id, experiment_id, manifest["input"]["fingerprint"], f"models:/{name}/{version.version}",
        str(version.version), metrics, split, promoted=False, test_rows=test_rows, calibration=tags["calibration"],
        seconds=time.time() - started,
    )  # fmt: skip


def without_empty_features(manifest: dict[str, Any], snapshots: pd.DataFrame) -> dict[str, Any]:
    """The feature manifest without the features that are empty in every labelled snapshot (e.g. segment,
    region and channel of an export that leaves them blank): no model learns from them, and some cannot be
    fitted with a column of nothing. They are listed under `empty_features` and said in one log line; the
    model's signature, and so what scoring rebuilds for it, is the features kept."""
    empty = [f["name"] for f in manifest["features"] if snapshots[f["name"]].isna().all()]
    if not empty:
        return manifest
    if len(empty) == len(manifest["features"]):
        raise ConfigError(
            f"every feature is empty in the labelled snapshots ({', '.join(empty)}): there is nothing to learn "
            f"from; check the input tables (make validate) and the feature families they support"
        )
    log.info("left out %d feature(s) empty in every labelled snapshot: %s", len(empty), ", ".join(empty))
    return {
        **manifest,
        "features": [f for f in manifest["features"] if f["name"] not in empty],
        "categorical_features": [c for c in manifest["categorical_features"] if c not in empty],
        "empty_features": empty,
    }


@dataclass(frozen=True)
class Fitted:
    """A fitted model and its honest predictions for the rows it is evaluated on."""

    model: ChurnModel
    test_rows: pd.DataFrame
    p_test: np.ndarray
    description: str
    extra_metrics: dict[str, float]
    raw_test: np.ndarray  # the same predictions before calibration


def fit_and_evaluate(
    settings: SplitSettings,
    snapshots: pd.DataFrame,
    features: list[str],
    categorical: list[str],
    estimator: Any,
    calibrator: Any,
    seed: int,
) -> Fitted:
    """Fit on the split the settings ask for: time slices, or stratified K-fold (also when the data has too
    few dates for the time split and the settings allow the fallback)."""
    if settings.kind == "time":
        try:
            split = configured_split(settings, snapshots)
        except SplitError as error:
            if not settings.kfold_fallback:
                raise
            log.warning("%s; falling back to stratified %d-fold cross-validation", error, settings.n_folds)
        else:
            masks = slice_masks(snapshots["observation_date"], split)
            train_rows, calibration_rows, test_rows = (
                snapshots[masks[k]] for k in ("train", "calibration", "test")
            )
            early_dates = (
                sorted(split.train)[-settings.early_stopping_dates :] if settings.early_stopping_dates else []
            )
            log.info("time split: %s; fitting %s", split.describe(), type(estimator).__name__)
            model = fit_churn_model(
                estimator, calibrator, train_rows, calibration_rows, features=features, categorical=categorical,
                early_stopping=train_rows[train_rows["observation_date"].isin(early_dates)],
            )  # fmt: skip
            extra = {
                "train_snapshots": float(len(train_rows)),
                "calibration_snapshots": float(len(calibration_rows)),
            }
            return Fitted(
                model, test_rows, model.predict_proba(test_rows), split.describe(), extra,
                model.raw_scores(test_rows),
            )  # fmt: skip
    folds = settings.n_folds
    log.info(
        "stratified %d-fold cross-validation (grouped by customer); fitting %s",
        folds,
        type(estimator).__name__,
    )
    result = fit_cross_validated(
        estimator,
        calibrator,
        snapshots,
        features=features,
        categorical=categorical,
        n_folds=folds,
        seed=seed,
    )
    y = snapshots["churned"].to_numpy()
    per_fold = [
        classification_metrics(y[result.fold_of_row == k], result.oof_probability[result.fold_of_row == k])
        for k in range(folds)
    ]
    extra = {"train_snapshots": float(len(snapshots))}
    for metric in HEADLINE:
        values = [m[metric] for m in per_fold if metric in m]
        extra[f"cv_{metric}_mean"], extra[f"cv_{metric}_std"] = float(np.mean(values)), float(np.std(values))
    return Fitted(
        result.model, snapshots, result.oof_probability, f"stratified {folds}-fold CV, out-of-fold", extra,
        result.oof_raw,
    )  # fmt: skip


def _log_churn_by_date(manifest: dict[str, Any]) -> None:
    import mlflow

    for day, stats in manifest["churn_by_observation_date"].items():
        if stats["churn_rate"] is not None:
            timestamp = int(datetime.fromisoformat(day).timestamp() * 1000)
            mlflow.log_metric("churn_rate_by_date", stats["churn_rate"], timestamp=timestamp)


def _log_plots(
    model: ChurnModel, test_rows: pd.DataFrame, y: np.ndarray, p: np.ndarray, truth: np.ndarray | None
) -> None:
    import matplotlib.pyplot as plt
    import mlflow

    figures = {"calibration_reliability.png": reliability_figure(y, p, reference=truth)}
    figures["roc_curve.png"], figures["precision_recall.png"] = roc_pr_figures(y, p)
    figures["cumulative_gains_lift.png"] = gains_figure(y, p)
    names, importance = model.importance()
    figures["feature_importance.png"] = importance_figure(
        names, np.asarray(importance, dtype=float), "Feature importance"
    )
    if model.is_lightgbm:
        sample = test_rows.sample(n=min(3000, len(test_rows)), random_state=0)
        contributions = model.contributions(sample)[:, :-1]
        figures["shap_summary.png"] = shap_summary_figure(
            contributions, model.encoder.transform(sample[model.features])
        )
    for file_name, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{file_name}")
        plt.close(figure)


# What the model imports at inference (models/pyfunc.py, models/churn_model.py and the fitted objects).
INFERENCE_PACKAGES = (
    "mlflow", "lightgbm", "scikit-learn", "pandas", "numpy", "scipy", "pyarrow", "joblib", "threadpoolctl",
)  # fmt: skip
LOCK_FILE = Path(__file__).resolve().parents[1] / "requirements.lock"


def pinned_requirements(
    lock_file: Path = LOCK_FILE, packages: tuple[str, ...] = INFERENCE_PACKAGES
) -> list[str]:
    """`name==version` for each package, the versions read from the project's lock file."""
    import re

    def canonical(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pins = {}
    for line in lock_file.read_text().splitlines():
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)", line)
        if match:
            pins[canonical(match[1])] = match[2]
    missing = [p for p in packages if canonical(p) not in pins]
    if missing:
        raise ValueError(f"{lock_file} pins no version of {missing}: the model's requirements need one")
    return [f"{p}=={pins[canonical(p)]}" for p in packages]


def _log_model(
    model: ChurnModel, test_rows: pd.DataFrame, features: list[str], manifest: dict[str, Any], cfg: DictConfig
) -> Any:
    """Log the model as code (models/model_code.py) with the fitted ChurnModel as its artifact."""
    import mlflow
    from mlflow.models import infer_signature

    from models.pyfunc import MODEL_ARTIFACT, PARAMS, ChurnPyfunc, save_churn_model

    # Numeric features are declared as doubles, so a batch where a count happens to be missing still fits.
    example = test_rows[features].head(5).copy()
    for column in features:
        if column not in manifest["categorical_features"]:
            example[column] = example[column].astype("float64")
    signature = infer_signature(example, ChurnPyfunc(model).predict(None, example), params=PARAMS)
    package = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(package / "model_code.py"),
            artifacts={MODEL_ARTIFACT: str(save_churn_model(model, Path(tmp)))},
            signature=signature,
            input_example=example,
            code_paths=[str(package)],
            pip_requirements=pinned_requirements(),
            metadata={
                "features": features,
                "categorical_features": manifest["categorical_features"],
                "label": dict(manifest["label"]),
            },
        )


POPULATIONS = {
    "contract": "customers holding a subscription at each observation date",
    "activity": "customers with an order or event in the {activity_lookback_days} days before each date",
    "snapshot": "every row of the snapshot table",
}


def population_description(label: Any) -> str:
    """Who the model is about and what it predicts, in words (the label's population and period)."""
    population = str(label.population)
    who = POPULATIONS.get(population, f"population '{population}'").format(
        activity_lookback_days=label.get("activity_lookback_days", 90)
    )
    lead = int(label.get("lead_days", 0))
    window = f"{int(label.horizon_days)} days" + (f", starting {lead} days after the date" if lead else "")
    return f"{who} (population '{population}'); churned: left within {window}"


def summary_table(result: TrainResult, cfg: DictConfig) -> str:
    """The end-of-run summary printed on the terminal."""
    m = result.metrics
    rows = [("model", "test_"), ("ceiling (truth)", "ceiling_test_"), ("baseline", "baseline_test_")]
    lines = ["", f"churnwise train: {result.seconds:.0f} s, label '{cfg.label.name}', {result.split}"]
    lines.append(f"  who and when    {population_description(cfg.label)}")
    lines.append(f"  {'':<16}" + "".join(f"{k:>14}" for k in HEADLINE))
    for label, prefix in rows:
        if f"{prefix}roc_auc" in m:
            lines.append(
                f"  {label:<16}" + "".join(f"{m.get(prefix + k, float('nan')):>14.4f}" for k in HEADLINE)
            )
    if "raw_test_roc_auc" in m:
        lines.append(
            f"  calibration     {result.calibration or 'as configured'}; roc_auc before it {m['raw_test_roc_auc']:.4f}"
        )
    lines += [
        f"  MLflow run      {result.run_id} (experiment '{cfg.mlflow.experiment_name}')",
        f"  model           {cfg.mlflow.registered_model_name} version {result.model_version}: challenger"
        + (", now champion" if result.promoted else " (champion unchanged)"),
        f"  open the UI     make ui  (store: {cfg.mlflow.tracking_uri})",
    ]
    return "\n".join(lines)
