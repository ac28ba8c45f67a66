"""Stage: check the configured input tables against the data contract (`python -m pipeline.validate`)."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from features.catalog import FamilyAvailability
from features.snapshot import SnapshotPlan
from features.validation import ValidatedTables
from pipeline.common import load_inputs, stage
from pipeline.features import is_snapshot, load_snapshot
from pipeline.generate import ensure_demo_data
from pipeline.preflight import check_settings

log = logging.getLogger(__name__)


def validate(cfg: DictConfig) -> tuple[ValidatedTables, list[FamilyAvailability]]:
    """Validate the inputs (making the demo data first if it is configured and missing)."""
    check_settings(cfg, "validate")
    ensure_demo_data(cfg)
    tables, availability = load_inputs(cfg)
    log.info("input data meets the data contract")
    return tables, availability


def validate_snapshot(cfg: DictConfig) -> SnapshotPlan:
    """Check a snapshot table against its config (data=snapshot) and say how each column will be read; a table
    without the label column is checked as a table to score."""
    check_settings(cfg, "validate")
    loaded = load_snapshot(cfg, require_label=False)
    spec, table, planned, with_label = loaded.spec, loaded.table, loaded.planned, loaded.with_label
    lines = [
        f"{spec.path}: {table.rows:,} customers, {len(table.columns)} columns"
        + ("" if with_label else f" (no label column '{spec.label_column}': a table to score)")
    ]
    for name, source in planned.sources.items():
        lines.append(f"  {name:<28} {source['kind']:<12} from {', '.join(source['columns'])}")
    log.info("%s", "\n".join(lines))
    log.info("the snapshot table fits its config")
    return planned


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    if is_snapshot(cfg):
        validate_snapshot(cfg)
    else:
        validate(cfg)


if __name__ == "__main__":
    main()
