"""The feature job (`make features`, and the first step of `make train`): the point-in-time feature table
with its labels, from dated tables or from a snapshot table.

Writes `<paths.features_dir>/features.parquet` (one row per customer_id and observation_date: the
features, `churned` and `label_status`) and `manifest.json` (feature list, config, input fingerprint, row
counts, churn rate per observation date), each atomically.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from features.dates import as_of_date
from features.engine import DataWindow, FeatureBuild, FeaturePlan, plan_build, write_feature_table
from features.errors import ConfigError
from features.inputs import EngineSettings, connect, load_inputs
from features.io import fingerprint
from features.provenance import git_commit, resolved_config
from features.publish import check_can_write, remove_leftovers, replace_file
from features.snapshot import (
    RAW,
    SnapshotPlan,
    SnapshotSpec,
    SnapshotTable,
    check_snapshot,
    feature_select,
    label_expression,
    plan_snapshot,
    read_snapshot,
)
from features.sql import identifier, literal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureTableResult:
    """Where the feature table was written and what it holds."""

    table_path: Path
    manifest_path: Path
    manifest: dict[str, Any]


def build_features(cfg: DictConfig) -> FeatureTableResult:
    """Validate the inputs, build features and labels, and write the table and its manifest."""
    claim_features_dir(cfg)
    if is_snapshot(cfg):
        return build_snapshot_features(cfg)
    if cfg.label.get("population") == "snapshot":
        raise ConfigError(
            f"label={cfg.label.name} is the churn column of a snapshot table: use it with data=snapshot, or choose "
            f"a label computed from dated tables (label=contractual or label=inactivity)"
        )
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
        tables.con, planned, present, table_path, dates_per_batch=int(cfg.engine.dates_per_batch),
        key=FEATURES_KEY,
    )  # fmt: skip
    data_fingerprint, table_fingerprints = fingerprint(tables.files)
    manifest = feature_manifest(cfg, build, data_fingerprint, table_fingerprints, tables.report.present)
    manifest_path = out_dir / "manifest.json"
    replace_file(
        lambda temp: temp.write_text(json.dumps(manifest, indent=2, default=str)), manifest_path, FEATURES_KEY
    )
    labeled = sum(v["labeled"] for v in build.churn_by_date.values())
    log.info(
        "wrote %s: %s snapshots (%s labeled), %d features; manifest %s",
        table_path, f"{build.rows:,}", f"{labeled:,}", len(build.plan.features), manifest_path,
    )  # fmt: skip
    return FeatureTableResult(table_path, manifest_path, manifest)


FEATURE_FILES = ("features.parquet", "manifest.json")
FEATURES_KEY = "paths.features_dir"


def claim_features_dir(cfg: DictConfig) -> Path:
    """The feature table's folder, refused when it holds files churnwise did not write; files that killed
    builds left there are removed."""
    out_dir = Path(cfg.paths.features_dir)
    check_can_write(out_dir, FEATURE_FILES, FEATURES_KEY)
    remove_leftovers(out_dir, FEATURE_FILES)
    return out_dir


def is_snapshot(cfg: DictConfig) -> bool:
    """Whether the data is one flat table per customer (data=snapshot)."""
    return cfg.data.get("kind") == "snapshot"


def snapshot_spec(cfg: DictConfig) -> SnapshotSpec:
    """The snapshot settings of `data`, checked."""
    if cfg.label.get("population") != "snapshot":
        raise ConfigError(
            f"data=snapshot takes its label from the table (label=snapshot); label={cfg.label.name} needs dated "
            f"tables (data=tables)"
        )
    return SnapshotSpec.from_config(OmegaConf.to_container(cfg.data, resolve=True, throw_on_missing=True))


@dataclass(frozen=True)
class LoadedSnapshot:
    """A snapshot table read into DuckDB (`snapshot_raw`), checked against its config, its columns typed."""

    con: Any
    spec: SnapshotSpec
    table: SnapshotTable
    planned: SnapshotPlan
    with_label: bool


def load_snapshot(cfg: DictConfig, *, require_label: bool = True) -> LoadedSnapshot:
    """Read, check (before any work) and type the configured snapshot; with `require_label` false, a table
    without its label column is checked as a table to score."""
    spec = snapshot_spec(cfg)
    con = connect(EngineSettings.from_config(cfg.engine))
    table = read_snapshot(con, spec)
    with_label = require_label or spec.label_column in table.columns
    check_snapshot(con, spec, table, with_label=with_label)
    return LoadedSnapshot(con, spec, table, plan_snapshot(con, spec, table), with_label)


def build_snapshot_features(cfg: DictConfig) -> FeatureTableResult:
    """The feature table of a snapshot: one row per customer, its columns typed as features, its label.

    The config and the values are checked before anything is written (features.snapshot.check_snapshot)."""
    loaded = load_snapshot(cfg)
    con, spec, table, planned = loaded.con, loaded.spec, loaded.table, loaded.planned
    as_of = as_of_date(spec.as_of, snapshot_data_end(con, table))
    out_dir = Path(cfg.paths.features_dir)
    table_path = out_dir / "features.parquet"
    select = feature_select(
        table, spec.id_column, planned.features, as_of,
        extra=f"{label_expression(spec)} AS churned, 'labeled' AS label_status",
    )  # fmt: skip
    replace_file(
        lambda temp: con.execute(
            f"COPY ({select} ORDER BY {RAW}.__row) TO {literal(temp)} (FORMAT parquet, COMPRESSION zstd)"
        ),
        table_path,
        FEATURES_KEY,
    )
    churned = con.execute(f"SELECT avg({label_expression(spec)}) FROM {RAW}").fetchall()[0][0]
    day = as_of.isoformat()
    build = FeatureBuild(
        FeaturePlan(planned.features, {}, ()), (as_of,), DataWindow(as_of, as_of), table.rows,
        OmegaConf.to_container(cfg.label, resolve=True) | {"column": spec.label_column, "positive": spec.positive},
        {day: {"snapshots": table.rows, "labeled": table.rows, "churn_rate": round(float(churned), 6)}},
    )  # fmt: skip
    data_fingerprint, table_fingerprints = fingerprint({"snapshot": table.file})
    manifest = feature_manifest(cfg, build, data_fingerprint, table_fingerprints, ("snapshot",))
    manifest["snapshot"] = planned.manifest(spec)
    manifest_path = out_dir / "manifest.json"
    replace_file(
        lambda temp: temp.write_text(json.dumps(manifest, indent=2, default=str)), manifest_path, FEATURES_KEY
    )
    kinds = [s["kind"] for s in planned.sources.values()]
    log.info(
        "wrote %s: %s customers of %s as of %s (churn rate %.1f%%), %d features (%s)",
        table_path, f"{table.rows:,}", spec.path, as_of, 100 * churned, len(planned.features),
        ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds)),
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
        "config": resolved_config(cfg),
        "git": {"commit": commit, "dirty": dirty},
    }


def snapshot_data_end(con: Any, table: SnapshotTable) -> date | None:
    """The day after the latest date in the snapshot's date and time columns (None when it has none)."""
    dated = [c for c, kind in table.columns.items() if kind.startswith(("DATE", "TIMESTAMP"))]
    if not dated:
        return None
    latest = con.execute(
        f"SELECT max(d) FROM ({' UNION ALL '.join(f'SELECT CAST(max({identifier(c)}) AS DATE) AS d FROM {RAW}' for c in dated)})"
    ).fetchall()[0][0]
    return None if latest is None else date.fromordinal(latest.toordinal() + 1)
