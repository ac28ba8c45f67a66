"""Stage: batch scoring with a registered model (`python -m pipeline.score`, `make score`).

Loads a registered model (`models:/churnwise@champion` by default), rebuilds for every active customer, as
of a date (default: the end of the data), exactly the features it was trained on — the feature SQL, event
types and label population recorded in its training run's feature manifest — and scores them in chunks.
Writes `scores.parquet` and `scores.csv` atomically and logs the scoring run to MLflow.

The decision layer of the scoring issue (customer value, valuation, loyalty ladder, reasons, actions under a
budget) builds on this output.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
from omegaconf import DictConfig

from features.engine import DataWindow, FeatureBuild, FeatureDef, FeaturePlan, compute_features, data_window
from features.errors import ConfigError
from features.io import replace_atomically
from models.value import lifetime_value
from pipeline.common import load_inputs, setup_mlflow, stage
from pipeline.generate import ensure_demo_data

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreResult:
    """Where the scores went and what they hold."""

    path: Path
    csv_path: Path
    as_of: date
    model_uri: str
    model_version: str
    customers: int
    mean_p_churn: float


def training_manifest(model_uri: str) -> tuple[dict[str, Any], str, str]:
    """The feature manifest of the run that trained a registered model, its version and run id."""
    import mlflow

    client = mlflow.MlflowClient()
    name, _, ref = model_uri.removeprefix("models:/").partition("@")
    if ref:
        version = client.get_model_version_by_alias(name, ref)
    else:
        name, _, number = model_uri.removeprefix("models:/").partition("/")
        version = client.get_model_version(name, number)
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(version.run_id, "run_info/feature_manifest.json", tmp)
        manifest = json.loads(Path(path).read_text())
    return manifest, str(version.version), version.run_id


def score(cfg: DictConfig) -> ScoreResult:
    """Score every active customer as of the configured date with the configured registered model."""
    import mlflow

    ensure_demo_data(cfg)
    tables, _ = load_inputs(cfg)
    present = set(tables.report.present)
    setup_mlflow(cfg)
    model_uri = cfg.score.model_uri or f"models:/{cfg.mlflow.registered_model_name}@champion"
    manifest, version, train_run = training_manifest(model_uri)
    missing = sorted(set(manifest["input"]["tables"]) - present)
    if missing:
        raise ConfigError(
            f"model {model_uri} was trained with the tables {', '.join(manifest['input']['tables'])}; the input "
            f"data at {cfg.data.path} lacks {', '.join(missing)}, so its features cannot be rebuilt: provide them "
            f"or train a model on the tables you have"
        )
    if cfg.value.revenue_feature not in {f["name"] for f in manifest["features"]}:
        raise ConfigError(
            f"value.revenue_feature '{cfg.value.revenue_feature}' is not a feature of model {model_uri}; "
            f"set it to the feature holding monthly revenue"
        )
    window = data_window(tables.con, present)
    as_of = date.fromisoformat(str(cfg.score.as_of)) if cfg.score.as_of else window.end
    if as_of > window.end:
        raise ConfigError(
            f"score.as_of {as_of} is after the end of the input data ({window.end}): no inputs for it"
        )
    plan = FeaturePlan(
        tuple(FeatureDef(**f) for f in manifest["features"]),
        manifest["skipped_families"],
        tuple(manifest["event_types"]),
    )
    build = FeatureBuild(plan, (as_of,), DataWindow(window.start, window.end), 0, manifest["label"], {})
    rows = compute_features(tables.con, build, present, [as_of])
    log.info("scoring %s customers active on %s with %s (version %s)", f"{rows:,}", as_of, model_uri, version)

    model = mlflow.pyfunc.load_model(model_uri)
    chunks = []
    query = "SELECT * EXCLUDE (churned, label_status) FROM feature_table ORDER BY customer_id"
    reader = tables.con.sql(query).to_arrow_reader(int(cfg.score.chunk_rows))
    for batch in reader:
        frame = batch.to_pandas()
        predicted = model.predict(frame)
        p_churn = predicted["p_churn"].to_numpy()
        clv = lifetime_value(
            p_churn,
            frame[cfg.value.revenue_feature].to_numpy(),
            horizon_days=int(manifest["label"]["horizon_days"]),
            margin_rate=float(cfg.value.margin_rate),
            annual_discount_rate=float(cfg.value.annual_discount_rate),
        )
        chunks.append(
            pd.DataFrame(
                {
                    "customer_id": frame["customer_id"].to_numpy(),
                    "as_of": as_of,
                    "p_churn": p_churn,
                    "clv": clv,
                    "value_at_risk": p_churn * clv,
                    "model_version": version,
                }
            )
        )
    scores = (
        pd.concat(chunks, ignore_index=True)
        if chunks
        else pd.DataFrame(columns=["customer_id", "as_of", "p_churn", "model_version"])
    )
    out_dir = Path(cfg.score.output_dir)
    path = replace_atomically(lambda temp: scores.to_parquet(temp, index=False), out_dir / "scores.parquet")
    csv_path = replace_atomically(lambda temp: scores.to_csv(temp, index=False), out_dir / "scores.csv")
    mean_p = float(scores["p_churn"].mean()) if len(scores) else float("nan")
    with mlflow.start_run(run_name=f"score-{as_of}"):
        mlflow.set_tags(
            {"stage": "score", "model.uri": model_uri, "model.version": version, "model.run_id": train_run,
             "as_of": as_of.isoformat()}
        )  # fmt: skip
        mlflow.log_metrics(
            {
                "customers_scored": float(len(scores)),
                "mean_p_churn": mean_p,
                "total_clv": float(scores["clv"].sum()),
                "total_value_at_risk": float(scores["value_at_risk"].sum()),
            }
        )
    log.info("wrote %s and %s: %s customers, mean p_churn %.4f", path, csv_path, f"{len(scores):,}", mean_p)
    return ScoreResult(path, csv_path, as_of, model_uri, version, len(scores), mean_p)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    score(cfg)


if __name__ == "__main__":
    main()
