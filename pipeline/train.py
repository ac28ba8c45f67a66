"""Stage: training (`python -m pipeline.train`, `make train`).

Today it makes the demo data if none exists, validates the inputs (saying which tables it found and which
feature families it can build), builds the point-in-time feature table with labels, and records all of it
as an MLflow run (resolved config, git commit, input fingerprint, data inventory, feature manifest, churn
rate per observation date). Model fitting, calibration and registration plug in here with the training
issue; the run says plainly that no model was trained yet.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline.common import config_params, setup_mlflow, stage
from pipeline.features import build_features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    run_id: str
    experiment_id: str
    data_fingerprint: str
    tables: list[str]
    feature_table: Path
    n_features: int
    snapshots: int
    labeled_snapshots: int
    skipped_families: tuple[str, ...]
    model_trained: bool


def train(cfg: DictConfig) -> TrainResult:
    """Validate the inputs and track the run in MLflow."""
    import mlflow

    built = build_features(cfg)
    manifest = built.manifest
    experiment_id = setup_mlflow(cfg)
    with mlflow.start_run(run_name=f"train-{cfg.data.name}") as run:
        mlflow.set_tags(
            {
                "stage": "train",
                "data.name": cfg.data.name,
                "data.fingerprint": manifest["input"]["fingerprint"],
                "git.commit": manifest["git"]["commit"],
                "git.dirty": str(manifest["git"]["dirty"]).lower(),
                "label": cfg.label.name,
                "model.status": "not trained: model fitting arrives with the training stage",
            }
        )
        mlflow.log_params(config_params(OmegaConf.to_container(cfg, resolve=True)))
        mlflow.log_metrics(
            {
                "snapshots": manifest["rows"],
                "labeled_snapshots": manifest["labeled_rows"],
                "n_features": len(manifest["features"]),
            }
        )
        for day, stats in manifest["churn_by_observation_date"].items():
            if stats["churn_rate"] is not None:
                timestamp = int(datetime.fromisoformat(day).timestamp() * 1000)
                mlflow.log_metric("churn_rate_by_date", stats["churn_rate"], timestamp=timestamp)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "resolved_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            (folder / "feature_manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
            mlflow.log_artifacts(str(folder), artifact_path="run_info")

    result = TrainResult(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        data_fingerprint=manifest["input"]["fingerprint"],
        tables=manifest["input"]["tables"],
        feature_table=built.table_path,
        n_features=len(manifest["features"]),
        snapshots=manifest["rows"],
        labeled_snapshots=manifest["labeled_rows"],
        skipped_families=tuple(manifest["skipped_families"]),
        model_trained=False,
    )
    log.info("%s", summary_table(result, cfg))
    return result


def summary_table(result: TrainResult, cfg: DictConfig) -> str:
    """The end-of-run summary printed on the terminal."""
    skipped = f" (skipped: {', '.join(result.skipped_families)})" if result.skipped_families else ""
    lines = [
        "",
        "churnwise train: summary",
        f"  data            {cfg.data.name} ({cfg.data.path}): {', '.join(result.tables)}",
        f"  fingerprint     {result.data_fingerprint[:16]}",
        f"  features        {result.n_features} features{skipped}, label '{cfg.label.name}'",
        f"  snapshots       {result.snapshots:,} ({result.labeled_snapshots:,} labeled) in {result.feature_table}",
        "  model           not trained yet (the training stage fills this in)",
        f"  MLflow run      {result.run_id} in experiment '{cfg.mlflow.experiment_name}'",
        f"  open the UI     make ui  (store: {cfg.mlflow.tracking_uri})",
    ]
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
