"""The promotion gate (`make promote`; also the end of `make train`).

Compares the registered `challenger` with the `champion` on the same, latest test slice (with K-fold: on
out-of-fold predictions of the same folds, each model's estimator refitted fold by fold) and moves the
`champion` alias (on the churn model and the effects bundle of its training run, together) only if the challenger is better on the configured metric by the configured margin and its
calibration (ECE) is not worse beyond the tolerance. The first model becomes champion. The decision is
logged as an MLflow run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from features.errors import ConfigError
from features.labels import LabelWindow
from models.churn_model import ChurnModel, repeated_out_of_fold
from models.evaluation import classification_metrics, mean_metrics
from models.registry import load_registered_model, move_aliases, run_version
from models.split import SplitSettings, load_snapshots, plan_split, slice_masks
from models.tracking import TrackingSettings, tracked_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromotionDecision:
    """What the gate decided and why."""

    promoted: bool
    reason: str
    challenger_version: str
    champion_version: str | None
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float]


def decide(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    *,
    metric: str,
    margin: float,
    ece_tolerance: float,
) -> tuple[bool, str]:
    """The gate's rule on two sets of test metrics."""
    if champion is None:
        return True, "no champion yet: the first model becomes champion"
    gain = challenger[metric] - champion[metric]
    if gain < margin:
        return (
            False,
            f"{metric} {challenger[metric]:.4f} vs champion {champion[metric]:.4f}: gain {gain:+.4f} < margin {margin}",
        )
    if challenger["ece"] > champion["ece"] + ece_tolerance:
        return (
            False,
            f"calibration worse: ECE {challenger['ece']:.4f} vs champion {champion['ece']:.4f} (+{ece_tolerance} allowed)",
        )
    return (
        True,
        f"{metric} {challenger[metric]:.4f} vs champion {champion[metric]:.4f} (gain {gain:+.4f}); ECE {challenger['ece']:.4f}",
    )


def latest_test_slice(cfg: DictConfig) -> tuple[pd.DataFrame, str]:
    """The rows the gate compares the models on, from the current feature table (`make features` or `make
    train` writes it), and the split kind: the latest test slice of a time split ("time"), or every labelled
    row for K-fold ("kfold"), where both models are scored out-of-fold on the same folds."""
    table = Path(cfg.paths.features_dir) / "features.parquet"
    if not table.is_file():
        raise ConfigError(
            f"paths.features_dir {cfg.paths.features_dir}: no feature table to compare the models on; build it "
            f"with `make features` (or `make train`) first"
        )
    snapshots = load_snapshots(table)
    plan = plan_split(SplitSettings.from_config(cfg.split, cfg.label), snapshots)
    if plan.time is None:
        return snapshots, "kfold"
    return snapshots[slice_masks(snapshots["observation_date"], plan.time)["test"]], "time"


def out_of_fold_metrics(
    model: ChurnModel, rows: pd.DataFrame, settings: SplitSettings, seed: int
) -> dict[str, float]:
    """Metrics of a model's estimator and calibrator refitted fold by fold on `rows` and scored on the rows
    each fold held out (the K-fold of `settings` and `seed`, every repeat; averaged over repeats). Two models
    scored this way are compared on the same folds, never on rows they were fitted on."""
    repeats = repeated_out_of_fold(
        model.estimator, model.calibrator, rows, features=model.features, categorical=model.categorical,
        n_folds=settings.n_folds, seed=seed, n_repeats=settings.n_repeats,
        min_level_rows=int(getattr(model.encoder, "min_level_rows", 0)),
    )  # fmt: skip
    return mean_metrics(rows["churned"].to_numpy(dtype=int), [r.probability for r in repeats])


def promote(
    cfg: DictConfig, test_rows: pd.DataFrame | None = None, split_kind: str | None = None
) -> PromotionDecision:
    """Run the gate and move the champion alias when the challenger wins. `test_rows` and `split_kind` (what
    training just evaluated on) default to the current feature table's (`latest_test_slice`)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    tracking = TrackingSettings.from_config(cfg.mlflow)
    tracking.setup()
    client = mlflow.MlflowClient()
    name = tracking.registered_model_name
    try:
        challenger = client.get_model_version_by_alias(name, "challenger")
    except MlflowException as error:
        raise ConfigError(
            f"mlflow.registered_model_name {name}: no version has the alias 'challenger' "
            f"({error.message.splitlines()[0]}); run `make train` first"
        ) from None
    try:
        champion = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        champion = None
    if test_rows is None:
        test_rows, split_kind = latest_test_slice(cfg)
    kind = split_kind or "time"
    y = test_rows["churned"].to_numpy()
    settings = SplitSettings.from_config(cfg.split, cfg.label)
    if kind == "kfold":
        compared_on = (
            f"out-of-fold predictions of the same {settings.n_folds} folds"
            + (f" x {settings.n_repeats} repeats" if settings.n_repeats > 1 else "")
            + f" (seed {int(cfg.seed)}) over {len(test_rows):,} labelled rows"
        )
    else:
        compared_on = f"the test slice ({len(test_rows):,} rows)"

    def score(version: str) -> dict[str, float]:
        model = load_registered_model(f"models:/{name}/{version}", "mlflow.registered_model_name")
        if kind == "kfold":
            return out_of_fold_metrics(model.unwrap_python_model().model, test_rows, settings, int(cfg.seed))
        schema = model.metadata.get_input_schema()
        columns = schema.input_names() if schema is not None else list(test_rows.columns)
        predictions = model.predict(
            test_rows[columns]
        )  # only what the model takes: no "extra inputs" warning
        return classification_metrics(y, predictions["p_churn"].to_numpy())

    challenger_metrics = score(challenger.version)
    champion_metrics = None
    incomparable = None
    if champion is not None and champion.version != challenger.version:
        incomparable = why_incomparable(
            f"models:/{name}/{champion.version}", f"models:/{name}/{challenger.version}", test_rows
        )
        if incomparable is None:
            champion_metrics = score(champion.version)
    elif champion is not None:
        champion_metrics = challenger_metrics
    promotion = cfg.promotion
    if champion is not None and champion.version == challenger.version:
        promoted, reason = False, "the challenger is already the champion"
    elif incomparable is not None:
        promoted = False
        reason = (
            f"champion version {champion.version} cannot be compared with the challenger on its test slice: "
            f"{incomparable}. The champion is unchanged; to replace it, move the alias 'champion' to version "
            f"{challenger.version} (MLflow UI, or MlflowClient().set_registered_model_alias), or train under a "
            f"name of its own (mlflow.registered_model_name=...)"
        )
        log.warning("%s", reason)
    else:
        promoted, reason = decide(
            challenger_metrics, champion_metrics, metric=promotion.metric,
            margin=float(promotion.margin), ece_tolerance=float(promotion.ece_tolerance),
        )  # fmt: skip
    tags = {
        "stage": "promote",
        "promotion.decision": "promoted" if promoted else "refused",
        "promotion.reason": reason,
        "challenger.version": str(challenger.version),
        "champion.version": str(champion.version) if champion else "none",
        "promotion.compared_on": compared_on,
    }
    with tracked_run("promotion", tags):
        mlflow.log_metrics({f"challenger_{k}": v for k, v in challenger_metrics.items()})
        if champion_metrics is not None:
            mlflow.log_metrics({f"champion_{k}": v for k, v in champion_metrics.items()})
        if promoted:  # last: the aliases move only once the run that says why is logged
            move_aliases(champion_versions(name, challenger), "champion")
    log.info("promotion gate: %s (%s)", "promoted" if promoted else "refused", reason)
    return PromotionDecision(
        promoted, reason, str(challenger.version), str(champion.version) if champion else None,
        challenger_metrics, champion_metrics or {},
    )  # fmt: skip


def champion_versions(name: str, challenger: Any) -> dict[str, str]:
    """The versions that become champion together: the challenger and the effects bundle of its training
    run (none for a model trained before bundles existed)."""
    from models.effects import effects_name

    versions = {name: str(challenger.version)}
    effects = run_version(effects_name(name), challenger.run_id)
    if effects is not None:
        versions[effects_name(name)] = effects
    else:
        log.info("%s version %s has no effects bundle: the alias champion of %s stays", name, challenger.version,
                 effects_name(name))  # fmt: skip
    return versions


def why_incomparable(champion_uri: str, challenger_uri: str, test_rows: pd.DataFrame) -> str | None:
    """Why the champion cannot be scored on the challenger's test rows (features it needs are not there, or
    it predicts another label), or None when it can."""
    import mlflow

    champion = mlflow.models.get_model_info(champion_uri)
    challenger = mlflow.models.get_model_info(challenger_uri)
    schema = champion.signature.inputs.input_names() if champion.signature else []
    missing = [c for c in schema if c not in test_rows.columns]
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        return f"it was trained on features this data does not have ({shown})"
    label = (champion.metadata or {}).get("label")
    if label and _set_keys(label) != _set_keys((challenger.metadata or {}).get("label")):
        return f"it predicts another label ({label.get('name')}, {LabelWindow.from_config(label).describe()})"
    return None


def _set_keys(label: dict[str, Any] | None) -> dict[str, Any]:
    """A label's settings without the unset ones: a label from before a key existed (no horizon_months)
    equals the same label with that key null."""
    return {k: v for k, v in (label or {}).items() if v is not None}
