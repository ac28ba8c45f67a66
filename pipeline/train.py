"""Stage: training (`python -m pipeline.train`, `make train`).

Today it makes the demo data if none exists, validates the inputs, says which tables it found and which
feature families it can build, and records all of it as an MLflow run (resolved config, git commit, input
fingerprint, data inventory). Model fitting, calibration and registration plug in here with the training
issue; the run says plainly that no model was trained yet.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from features.catalog import FamilyAvailability
from features.io import fingerprint
from pipeline.common import flatten, git_commit, load_inputs, setup_mlflow, stage
from pipeline.generate import ensure_demo_data

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    run_id: str
    experiment_id: str
    data_fingerprint: str
    tables: dict[str, int]
    buildable_families: tuple[str, ...]
    skipped_families: tuple[str, ...]
    model_trained: bool


def train(cfg: DictConfig) -> TrainResult:
    """Validate the inputs and track the run in MLflow."""
    import mlflow

    ensure_demo_data(cfg)
    tables, availability = load_inputs(cfg)
    data_fingerprint, table_fingerprints = fingerprint(tables.files)
    commit, dirty = git_commit()
    experiment_id = setup_mlflow(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    rows = {name: summary.rows for name, summary in tables.report.tables.items()}

    with mlflow.start_run(run_name=f"train-{cfg.data.name}") as run:
        mlflow.set_tags(
            {
                "stage": "train",
                "data.name": cfg.data.name,
                "data.fingerprint": data_fingerprint,
                "git.commit": commit,
                "git.dirty": str(dirty).lower(),
                "model.status": "not trained: model fitting arrives with the training stage",
            }
        )
        mlflow.log_params({k: str(v)[:6000] for k, v in flatten(resolved).items()})
        mlflow.log_metrics({f"rows_{name}": count for name, count in rows.items()})
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "resolved_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            inventory = {
                "tables_dir": str(tables.report.tables_dir),
                "customer_id_type": tables.report.id_type,
                "tables": {n: {**asdict(s), "path": str(s.path)} for n, s in tables.report.tables.items()},
                "absent_tables": list(tables.report.absent),
                "fingerprint": {"overall": data_fingerprint, "tables": table_fingerprints},
                "feature_families": [asdict(a) for a in availability],
                "git": {"commit": commit, "dirty": dirty},
            }
            (folder / "data_inventory.json").write_text(json.dumps(inventory, indent=2))
            mlflow.log_artifacts(str(folder), artifact_path="run_info")

    result = TrainResult(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        data_fingerprint=data_fingerprint,
        tables=rows,
        buildable_families=tuple(a.name for a in availability if a.buildable),
        skipped_families=tuple(a.name for a in availability if not a.buildable),
        model_trained=False,
    )
    log.info("%s", summary_table(result, cfg, availability))
    return result


def summary_table(result: TrainResult, cfg: DictConfig, availability: list[FamilyAvailability]) -> str:
    """The end-of-run summary printed on the terminal."""
    lines = [
        "",
        "churnwise train: summary",
        f"  data            {cfg.data.name} ({cfg.data.path})",
        f"  fingerprint     {result.data_fingerprint[:16]}",
        f"  tables          {', '.join(f'{n} {c:,}' for n, c in result.tables.items())}",
        f"  features        {len(result.buildable_families)}/{len(availability)} families buildable",
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
