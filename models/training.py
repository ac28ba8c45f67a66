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
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from features.build import FeatureTableResult
from features.errors import ConfigError
from features.labels import LabelWindow
from features.provenance import resolved_config, resolved_yaml
from features.snapshot import LabelPeriod
from features.validation import DataContractError, ValidatedTables, Violation
from models.calibration import NoCalibration, calibration_name
from models.ceiling import true_probability
from models.churn_model import ChurnModel, fit_churn_model, fit_cross_validated
from models.errors import SplitError
from models.evaluation import (
    classification_metrics,
    gains_figure,
    importance_figure,
    mean_metrics,
    reliability_figure,
    roc_pr_figures,
    segment_labels,
    segment_metrics,
    shap_summary_figure,
    targeting_profit,
)
from models.feature_ranges import training_ranges
from models.registry import register_challengers
from models.split import SplitSettings, load_snapshots, plan_split, slice_masks, unlabelled_note
from models.stability import StabilityResult, StabilitySettings, check_stability
from models.survival import DiscreteHazard, SurvivalData, fit_survival
from models.tracking import TrackingSettings, config_params, tracked_run
from models.uplift import UpliftBundle, UpliftSettings, fit_uplift

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
    stability: str = ""  # the feature stability check's line of the summary
    notes: list[str] = field(default_factory=list)
    split_kind: str = "time"  # "time" or "kfold": what the promotion gate compares the models on
    fallback: str = ""  # why split=auto fell back to K-fold (empty when it did not)
    survival: str = ""  # the survival model's line of the summary
    uplift: str = ""  # the uplift models' line of the summary


def train(cfg: DictConfig, built: FeatureTableResult) -> TrainResult:
    """Train, calibrate, evaluate, log and register on the feature table `built`; see the module docstring."""
    import mlflow

    from models.effects import Effects, effects_name, log_effects

    started = time.time()
    data, fitted = fit_configured(cfg, built)
    hazard = instantiate(cfg.survival)
    dated = isinstance(hazard, DiscreteHazard)
    tables = input_tables(cfg) if dated or cfg.uplift.get("enabled", False) else None
    survival = fit_survival(hazard, survival_data(cfg, built, data, fitted, tables if dated else None))
    uplift = fit_campaign_uplift(cfg, built, data, tables)
    manifest, stability, features = data.manifest, data.stability, data.features
    model, test_rows, p_test, split = fitted.model, fitted.test_rows, fitted.p_test, fitted.description
    y_test = test_rows["churned"].to_numpy()
    metrics = {f"test_{k}": v for k, v in mean_metrics(y_test, fitted.repeat_probabilities).items()}
    metrics |= {f"test_{k}": v for k, v in targeting_profit(y_test, p_test, cfg.evaluation.profit).items()}
    segments = segment_labels(test_rows, OmegaConf.to_container(cfg.evaluation.segments))
    metrics |= {f"test_{k}": v for k, v in segment_metrics(y_test, p_test, segments).items()}
    metrics |= fitted.extra_metrics
    metrics |= stability.metrics()
    metrics |= survival.metrics
    metrics |= uplift.bundle.metrics() if uplift.bundle is not None else {}
    metrics["raw_test_roc_auc"] = mean_metrics(y_test, fitted.repeat_raw)["roc_auc"]
    if model.best_iteration:
        metrics["best_iteration"] = float(model.best_iteration)

    truth = true_probability(cfg.data.get("truth_path"), test_rows, window=LabelWindow.from_config(cfg.label))
    if truth is not None:
        metrics |= {
            f"ceiling_test_{k}": v for k, v in classification_metrics(y_test, truth).items() if k in HEADLINE
        }

    if cfg.evaluation.get("baseline"):
        base = data.fit(instantiate(cfg.evaluation.baseline), instantiate(cfg.calibration))
        metrics |= {
            f"baseline_test_{k}": v
            for k, v in mean_metrics(y_test, base.repeat_probabilities).items()
            if k in HEADLINE
        }
        metrics |= {f"baseline_{k}": v for k, v in base.extra_metrics.items() if k.startswith("cv_")}

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
        **label_window_tags(cfg.label),
        "model.class": type(model.estimator).__name__,
        "calibration": calibration_name(model.calibrator),
        "split": split,
        "split.kind": fitted.kind,
        "stability": stability.summary()[:5000],
    }
    if fitted.fallback:
        tags["split.fallback"] = f"split=auto used K-fold: {fitted.fallback}"
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
            importance_table(model).to_csv(folder / "feature_importance.csv", index=False)
            if not stability.skipped:
                stability.table.to_csv(folder / "feature_stability.csv", index=False)
            mlflow.log_artifacts(str(folder), artifact_path="run_info")
        _log_predictions(fitted)
        model_info = _log_model(model, test_rows, features, manifest, cfg)
        _log_uplift(uplift)
        effects_info = log_effects(
            Effects(survival.model, uplift=dict(uplift.bundle.actions) if uplift.bundle is not None else {}),
            signature_example(test_rows, features, manifest),
            max(test_rows["observation_date"]),
            pinned_requirements(),
        )
        mlflow.set_tag("survival", survival.note[:5000])
        if survival.check is not None:
            with tempfile.TemporaryDirectory() as tmp:
                survival.check.to_parquet(Path(tmp) / "survival_check.parquet", index=False)
                mlflow.log_artifact(str(Path(tmp) / "survival_check.parquet"), artifact_path="predictions")
        versions = register_challengers(
            {name: model_info.model_uri, effects_name(name): effects_info.model_uri}
        )
        version = versions[name]
    return TrainResult(
        run.info.run_id, experiment_id, manifest["input"]["fingerprint"], f"models:/{name}/{version.version}",
        str(version.version), metrics, split, promoted=False, test_rows=test_rows, calibration=tags["calibration"],
        seconds=time.time() - started, split_kind=fitted.kind, fallback=fitted.fallback,
        stability=stability.summary(), survival=survival.note, uplift=uplift.note,
    )  # fmt: skip


def input_tables(cfg: DictConfig) -> ValidatedTables | None:
    """The validated tables the features were built from (None for a snapshot table), for the models that
    read the customer tables beside the feature table (survival, uplift)."""
    from features.build import is_snapshot
    from features.dialect import install_duckdb_functions
    from features.inputs import load_inputs

    if is_snapshot(cfg):
        return None
    tables, _ = load_inputs(cfg, copy=False)
    install_duckdb_functions(tables.con)
    return tables


def data_end(built: FeatureTableResult) -> date | None:
    """The end (exclusive) of the data the feature table was built from, when the manifest says it."""
    end = (built.manifest.get("data_window") or {}).get("end_exclusive")
    return date.fromisoformat(end) if end else None


def survival_data(
    cfg: DictConfig,
    built: FeatureTableResult,
    data: TrainingData,
    fitted: Fitted,
    tables: ValidatedTables | None,
) -> SurvivalData:
    """What `fit_survival` reads for this run: the tables the features were built from (`tables`; None: a
    snapshot table, or a survival model without dates), the labelled snapshots and the churn model's
    probabilities."""
    con, present = (tables.con, set(tables.report.present)) if tables is not None else (None, set())
    end = data_end(built)
    return SurvivalData(
        con, present, dict(built.manifest["label"]), end or date.max,
        data.snapshots, data.features, data.categorical, data.min_level_rows,
        LabelWindow.from_config(cfg.label).approx_days, fitted.model.predict_proba, fitted.test_rows,
    )  # fmt: skip


@dataclass(frozen=True)
class UpliftResult:
    """The uplift models a training run learned from the campaigns table (`bundle` None: none tried) and the
    run summary's line about them."""

    bundle: UpliftBundle | None
    note: str
    seconds: float = 0.0


def fit_campaign_uplift(
    cfg: DictConfig, built: FeatureTableResult, data: TrainingData, tables: ValidatedTables | None
) -> UpliftResult:
    """Per catalogue action, an uplift model learned from the business's own campaigns (`uplift` config,
    models/uplift.py) on the churn model's features, from the full feature table (a campaign is assigned on
    a date whose label may not be known yet; its outcomes come from the customer tables). Without
    `uplift.enabled` or a campaigns table, every action keeps its assumed effect (one log line). Campaign
    rows that cannot be learned from raise DataContractError naming the table and rows."""
    from models.campaign_data import KEYS, TABLE, campaign_data

    started = time.time()
    end = data_end(built)
    skip = (
        "uplift.enabled is false" if not cfg.uplift.get("enabled", False)
        else "no campaigns table" if tables is None or not tables.has(TABLE)
        else "no data window in the feature manifest" if end is None
        else ""
    )  # fmt: skip
    if skip:
        note = f"{skip}: every action keeps its assumed effect"
        log.info("uplift: %s", note)
        return UpliftResult(None, note)
    snapshots = pd.read_parquet(built.table_path, columns=[*KEYS, *data.features])
    campaigns = campaign_data(
        tables, snapshots, dict(built.manifest["label"]), list(cfg.actions.catalogue), data_end=end,
        margin_rate=float(cfg.value.margin_rate), annual_discount_rate=float(cfg.value.annual_discount_rate),
        window_months=int(cfg.uplift.value_window_months), as_of=end, features=data.features,
    )  # fmt: skip
    if campaigns.rows.empty:
        note = "the campaigns table has no row before the data end: every action keeps its assumed effect"
        log.info("uplift: %s", note)
        return UpliftResult(None, note)
    settings = UpliftSettings.from_config(cfg.uplift)
    try:
        bundle = fit_uplift(
            campaigns.rows,
            campaigns.features,
            settings,
            data.categorical,
            actions=list(cfg.actions.catalogue),
        )
    except ConfigError:
        raise
    except ValueError as error:  # rows the learners refuse (e.g. a control row with propensity 1)
        raise DataContractError([Violation(TABLE, None, "uplift_rows", str(error))]) from None
    seconds = time.time() - started
    learner = type(settings.learner).__name__
    note = (
        f"{len(bundle.actions)} action(s) learned from {len(campaigns.rows):,} campaign rows ({learner}, "
        f"{settings.n_bags} bags, {seconds:.0f} s)"
        + (f"; {bundle.assumed_message().removeprefix('uplift: ')}" if bundle.assumed else "")
    )
    return UpliftResult(bundle, note, seconds)  # fit_uplift said which actions stay assumed


def _log_uplift(uplift: UpliftResult) -> None:
    """The uplift tags and held-out figures (`plots/uplift/`) in the active run."""
    import matplotlib.pyplot as plt
    import mlflow

    if uplift.bundle is None:
        mlflow.set_tag("uplift", uplift.note[:5000])
        return
    bundle = uplift.bundle
    mlflow.set_tags(
        {
            "uplift": uplift.note[:5000],
            "uplift.learned": ",".join(sorted(bundle.actions)) or "none",
            "uplift.assumed": ",".join(sorted(bundle.assumed)) or "none",
        }
    )
    if bundle.assumed_message():
        mlflow.set_tag("uplift.assumed_reasons", bundle.assumed_message()[:5000])
    mlflow.log_metric("uplift_seconds", uplift.seconds)
    for path, figure in bundle.iter_figures():
        mlflow.log_figure(figure, f"plots/{path}")
        plt.close(figure)


def importance_table(model: ChurnModel) -> pd.DataFrame:
    """Each feature's importance, most important first: LightGBM's total gain and split count, or a linear
    model's absolute coefficient per transformed column (the run's run_info/feature_importance.csv)."""
    if model.is_lightgbm:
        booster = model.estimator.booster_
        table = pd.DataFrame(
            {
                "feature": model.features,
                "gain": booster.feature_importance(importance_type="gain"),
                "splits": booster.feature_importance(importance_type="split"),
            }
        )
        table["gain_share"] = table["gain"] / max(float(table["gain"].sum()), 1e-300)
        return table.sort_values(["gain", "splits"], ascending=False, kind="stable").reset_index(drop=True)
    names, values = model.importance()
    table = pd.DataFrame({"feature": names, "abs_coefficient": np.asarray(values, dtype=float)})
    return table.sort_values("abs_coefficient", ascending=False, kind="stable").reset_index(drop=True)


def _log_predictions(fitted: Fitted) -> None:
    """The honest predictions per customer and date as `predictions/<kind>.parquet`: out-of-fold for K-fold
    (with repeat and fold), the test slice for a time split."""
    import mlflow

    name = "out_of_fold.parquet" if fitted.kind == "kfold" else "test_slice.parquet"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        fitted.predictions.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path="predictions")


def feature_stability(cfg: DictConfig, snapshots: pd.DataFrame, manifest: dict[str, Any]) -> StabilityResult:
    """The feature stability check (models/stability.py) of the `stability` config on the manifest's
    features, over the split's training dates against its later ones."""
    return check_stability(
        StabilitySettings.from_config(cfg.get("stability")),
        SplitSettings.from_config(cfg.split, cfg.label),
        snapshots,
        [f["name"] for f in manifest["features"]],
        list(manifest["categorical_features"]),
    )


@dataclass(frozen=True)
class TrainingData:
    """The rows, features and split a training run fits its models on (`fit_configured`)."""

    snapshots: pd.DataFrame
    manifest: dict[str, Any]  # the features kept (empty and dropped-as-unstable left out), training ranges
    stability: StabilityResult
    features: list[str]
    categorical: list[str]
    settings: SplitSettings
    seed: int
    note: str  # why the latest dates have no label (for split errors)
    min_level_rows: int

    def fit(self, estimator: Any, calibrator: Any) -> Fitted:
        """A model fitted and evaluated on these rows, features and split (the configured one, the baseline)."""
        return fit_and_evaluate(
            self.settings, self.snapshots, self.features, self.categorical, estimator, calibrator, self.seed,
            self.note, min_level_rows=self.min_level_rows,
        )  # fmt: skip


def fit_configured(cfg: DictConfig, built: FeatureTableResult) -> tuple[TrainingData, Fitted]:
    """The model of `cfg` fitted and evaluated on the feature table `built` as `train` does it, without MLflow
    (also what bench/quality.py measures): empty features left out, the stability check (and its drops), the
    split, the fit with calibration, the honest predictions; and the data, to fit other models on."""
    snapshots = load_snapshots(built.table_path)
    manifest = without_empty_features(built.manifest, snapshots)
    stability = feature_stability(cfg, snapshots, manifest)
    manifest = stability.without_dropped(manifest)  # stability.action=drop: unstable features left out
    features = [f["name"] for f in manifest["features"]]
    categorical = list(manifest["categorical_features"])
    # each numeric feature's training range, which scoring checks its customers against
    manifest = manifest | {"training_ranges": training_ranges(snapshots, features, categorical)}
    data = TrainingData(
        snapshots, manifest, stability, features, categorical, SplitSettings.from_config(cfg.split, cfg.label),
        int(cfg.seed), unlabelled_note(built.manifest), int(cfg.encoding.min_level_rows),
    )  # fmt: skip
    return data, data.fit(instantiate(cfg.model), instantiate(cfg.calibration))


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
    description: str
    extra_metrics: dict[str, float]
    kind: str  # the split used: "time" or "kfold"
    # The calibrated probabilities of test_rows per repeat of a K-fold (out-of-fold), or the one set of a time
    # split: the headline test_* metrics are their mean over repeats. The same before calibration.
    repeat_probabilities: list[np.ndarray]
    repeat_raw: list[np.ndarray]
    predictions: pd.DataFrame  # per customer and date: the honest predictions (an artifact)
    fallback: str = ""  # why split=auto fell back to K-fold

    @property
    def p_test(self) -> np.ndarray:
        """The (first repeat's) calibrated probabilities of test_rows."""
        return self.repeat_probabilities[0]

    @property
    def raw_test(self) -> np.ndarray:
        """The same before calibration."""
        return self.repeat_raw[0]


def fit_and_evaluate(
    settings: SplitSettings,
    snapshots: pd.DataFrame,
    features: list[str],
    categorical: list[str],
    estimator: Any,
    calibrator: Any,
    seed: int,
    note: str = "",
    min_level_rows: int = 0,
) -> Fitted:
    """Fit on the split the settings ask for: time slices, or stratified K-fold (split=kfold, or split=auto
    when the dates do not fit the time slices). A split that cannot work raises SplitError naming the empty
    slice, before any model is fitted; `note` says why the latest dates have no label.
    Categories with fewer than `min_level_rows` training rows are folded into one level."""
    plan = plan_split(settings, snapshots, note)
    if plan.time is not None:
        split = plan.time
        if not split.calibration and not isinstance(calibrator, NoCalibration):
            raise SplitError(
                f"split.calibration_dates=0 leaves the calibration slice empty, but calibration="
                f"{calibration_name(calibrator)} is fitted on it: set split.calibration_dates to 1 or more, or "
                f"calibration=none"
            )
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
            min_level_rows=min_level_rows,
        )  # fmt: skip
        extra = {
            "train_snapshots": float(len(train_rows)),
            "calibration_snapshots": float(len(calibration_rows)),
        }
        p_test, raw_test = model.predict_proba(test_rows), model.raw_scores(test_rows)
        predictions = prediction_table(test_rows, {"p_churn_raw": raw_test, "p_churn": p_test})
        return Fitted(model, test_rows, split.describe(), extra, "time", [p_test], [raw_test], predictions)
    folds, repeats = settings.n_folds, settings.n_repeats
    if plan.fallback:
        log.warning("split=auto: %s; using stratified %d-fold cross-validation instead", plan.fallback, folds)
    log.info(
        "stratified %d-fold cross-validation%s (grouped by customer); fitting %s",
        folds, f", repeated {repeats} times" if repeats > 1 else "", type(estimator).__name__,
    )  # fmt: skip
    result = fit_cross_validated(
        estimator, calibrator, snapshots, features=features, categorical=categorical, n_folds=folds, seed=seed,
        n_repeats=repeats, min_level_rows=min_level_rows,
    )  # fmt: skip
    extra = {"train_snapshots": float(len(snapshots))} | cv_metrics(
        snapshots["churned"].to_numpy(), result.repeats
    )
    description = f"stratified {folds}-fold CV{f' x{repeats}' if repeats > 1 else ''}, out-of-fold"
    if plan.fallback:
        description += " (split=auto fell back from time)"
    predictions = pd.concat(
        [
            prediction_table(
                snapshots, {"p_churn_raw": r.raw, "p_churn": r.probability}, repeat=k, fold=r.fold_of_row
            )
            for k, r in enumerate(result.repeats)
        ],
        ignore_index=True,
    )
    return Fitted(
        result.model, snapshots, description, extra, "kfold", [r.probability for r in result.repeats],
        [r.raw for r in result.repeats], predictions, plan.fallback,
    )  # fmt: skip


def cv_metrics(y: np.ndarray, repeats: list[Any]) -> dict[str, float]:
    """`cv_<metric>_mean` and `cv_<metric>_std` (sample standard deviation, ddof=1) over every fold of every
    repeat of a K-fold."""
    per_fold = [
        classification_metrics(y[r.fold_of_row == k], r.probability[r.fold_of_row == k])
        for r in repeats
        for k in np.unique(r.fold_of_row)
    ]
    out = {}
    for metric in HEADLINE:
        values = [m[metric] for m in per_fold if metric in m]
        out[f"cv_{metric}_mean"] = float(np.mean(values))
        out[f"cv_{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return out


def prediction_table(rows: pd.DataFrame, columns: dict[str, np.ndarray], **extra: Any) -> pd.DataFrame:
    """Per customer and observation date: the label and the honest predictions (out-of-fold, or on the test
    slice), the run's `predictions/` artifact."""
    table = rows[["customer_id", "observation_date", "churned"]].reset_index(drop=True).copy()
    for name, values in extra.items():
        table[name] = values
    for name, values in columns.items():
        table[name] = np.asarray(values, dtype=float)
    return table


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


def signature_example(test_rows: pd.DataFrame, features: list[str], manifest: dict[str, Any]) -> pd.DataFrame:
    """Five rows of the features, numeric ones as doubles (so a batch where a count happens to be missing
    still fits the signature)."""
    example = test_rows[features].head(5).copy()
    for column in features:
        if column not in manifest["categorical_features"]:
            example[column] = example[column].astype("float64")
    return example


def _log_model(
    model: ChurnModel, test_rows: pd.DataFrame, features: list[str], manifest: dict[str, Any], cfg: DictConfig
) -> Any:
    """Log the model as code (models/model_code.py) with the fitted ChurnModel as its artifact."""
    import mlflow
    from mlflow.models import infer_signature

    from models.pyfunc import MODEL_ARTIFACT, PARAMS, ChurnPyfunc, save_churn_model

    example = signature_example(test_rows, features, manifest)
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
    window = LabelWindow.from_config(label).describe()
    if label.get("period_months") is not None:  # a snapshot's churn column (features.snapshot.LabelPeriod)
        window = LabelPeriod(float(label.period_months), bool(label.get("period_assumed"))).describe()
    return f"{who} (population '{population}'); churned: left within {window}"


def label_window_tags(label: Any) -> dict[str, str]:
    """The label window as run tags: label.horizon_days or label.horizon_months, as configured."""
    window = LabelWindow.from_config(label)
    if window.horizon_months is not None:
        return {"label.horizon_months": str(window.horizon_months)}
    return {"label.horizon_days": str(window.horizon_days)}


def summary_table(result: TrainResult, cfg: DictConfig) -> str:
    """The end-of-run summary printed on the terminal."""
    m = result.metrics
    rows = [("model", "test_"), ("ceiling (truth)", "ceiling_test_"), ("baseline", "baseline_test_")]
    lines = ["", f"churnwise train: {result.seconds:.0f} s, label '{cfg.label.name}', {result.split}"]
    if result.fallback:
        lines.append(f"  split           split=auto used K-fold, not time: {result.fallback}")
    test = "test" if result.split_kind == "time" else "out-of-fold"
    lines.append(f"  who and when    {population_description(cfg.label)}")
    lines.append(f"  {test + ' metrics':<16}" + "".join(f"{k:>14}" for k in HEADLINE))
    for label, prefix in rows:
        if f"{prefix}roc_auc" in m:
            lines.append(
                f"  {label:<16}" + "".join(f"{m.get(prefix + k, float('nan')):>14.4f}" for k in HEADLINE)
            )
    if "cv_roc_auc_std" in m:
        lines.append(
            f"  across folds    roc_auc {m['cv_roc_auc_mean']:.4f} ± {m['cv_roc_auc_std']:.4f} (sd over folds)"
            + (f"; baseline {m['baseline_cv_roc_auc_mean']:.4f}" if "baseline_cv_roc_auc_mean" in m else "")
        )
    if "raw_test_roc_auc" in m:
        lines.append(
            f"  calibration     {result.calibration or 'as configured'}; roc_auc before it {m['raw_test_roc_auc']:.4f}"
        )
    if result.stability:
        lines.append(f"  stability       {result.stability}")
    if result.survival:
        lines.append(f"  survival        {result.survival}")
    if result.uplift:
        lines.append(f"  uplift          {result.uplift}")
    lines += [
        f"  MLflow run      {result.run_id} (experiment '{cfg.mlflow.experiment_name}')",
        f"  model           {cfg.mlflow.registered_model_name} version {result.model_version}: challenger"
        + (", now champion" if result.promoted else " (champion unchanged)"),
        f"  open the UI     make ui  (store: {cfg.mlflow.tracking_uri})",
    ]
    return "\n".join(lines)
