"""Stage: build the point-in-time feature table with labels (`python -m pipeline.features`, `make features`).

Writes `<paths.features_dir>/features.parquet` (one row per customer_id and observation_date: the
features, `churned` and `label_status`) and `manifest.json` (feature list, config, input fingerprint, row
counts, churn rate per observation date), each atomically.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from features.engine import FeatureBuild, plan_build, write_feature_table
from features.io import fingerprint, replace_atomically
from pipeline.common import git_commit, load_inputs, stage
from pipeline.generate import ensure_demo_data

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureTableResult:
    """Where the feature table was written and what it holds."""

    table_path: Path
    manifest_path: Path
    manifest: dict[str, Any]


def build_features(cfg: DictConfig) -> FeatureTableResult:
    """Validate the inputs, build features and labels, and write the table and its manifest."""
    ensure_demo_data(cfg)
    tables, _ = load_inputs(cfg)
    present = set(tables.report.present)
    planned = plan_build(
        tables.con,
        present,
        OmegaConf.to_container(cfg.features, resolve=True),
        OmegaConf.to_container(cfg.observation, resolve=True),
        OmegaConf.to_container(cfg.label, resolve=True),
    )
    log.info(
        "building %d features in %d families for %d observation dates (%s .. %s), label '%s'",
        len(planned.plan.features), len(planned.plan.families), len(planned.dates),
        planned.dates[0], planned.dates[-1], cfg.label.name,
    )  # fmt: skip
    out_dir = Path(cfg.paths.features_dir)
    table_path = out_dir / "features.parquet"
    build = write_feature_table(
        tables.con, planned, present, table_path, dates_per_batch=int(cfg.engine.dates_per_batch)
    )
    data_fingerprint, table_fingerprints = fingerprint(tables.files)
    manifest = feature_manifest(cfg, build, data_fingerprint, table_fingerprints, tables.report.present)
    manifest_path = out_dir / "manifest.json"
    replace_atomically(
        lambda temp: temp.write_text(json.dumps(manifest, indent=2, default=str)), manifest_path
    )
    labeled = sum(v["labeled"] for v in build.churn_by_date.values())
    log.info(
        "wrote %s: %s snapshots (%s labeled), %d features; manifest %s",
        table_path, f"{build.rows:,}", f"{labeled:,}", len(build.plan.features), manifest_path,
    )  # fmt: skip
    return FeatureTableResult(table_path, manifest_path, manifest)


def feature_manifest(
    cfg: DictConfig,
    build: FeatureBuild,
    data_fingerprint: str,
    table_fingerprints: dict[str, str],
    present: tuple[str, ...],
) -> dict[str, Any]:
    """What a feature table holds and how it was made: enough to rebuild it, or the same features, later."""
    commit, dirty = git_commit()
    return {
        "features": [asdict(f) for f in build.plan.features],
        "categorical_features": build.plan.categorical,
        "skipped_families": build.plan.skipped,
        "event_types": list(build.plan.event_types),
        "label": build.label_cfg,
        "observation_dates": [d.isoformat() for d in build.dates],
        "data_window": {
            "start": build.window.start.isoformat(),
            "end_exclusive": build.window.end.isoformat(),
        },
        "rows": build.rows,
        "labeled_rows": sum(v["labeled"] for v in build.churn_by_date.values()),
        "churn_by_observation_date": build.churn_by_date,
        "input": {
            "path": str(cfg.data.path),
            "tables": list(present),
            "fingerprint": data_fingerprint,
            "table_fingerprints": table_fingerprints,
        },
        "config": OmegaConf.to_container(cfg, resolve=True),
        "git": {"commit": commit, "dirty": dirty},
    }


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    build_features(cfg)


if __name__ == "__main__":
    main()
