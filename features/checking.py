"""The validation job (`make validate`): the configured inputs checked against the data contract, or a
snapshot table against its config, and what was found said."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from features.build import load_snapshot
from features.catalog import FamilyAvailability
from features.inputs import load_inputs
from features.snapshot import SnapshotPlan, label_period
from features.validation import ValidatedTables

log = logging.getLogger(__name__)


def validate(cfg: DictConfig) -> tuple[ValidatedTables, list[FamilyAvailability]]:
    """Validate the configured input tables."""
    tables, availability = load_inputs(cfg)
    log.info("input data meets the data contract")
    return tables, availability


def validate_snapshot(cfg: DictConfig) -> SnapshotPlan:
    """Check a snapshot table against its config (data=snapshot) and say how each column will be read; a table
    without the label column is checked as a table to score."""
    loaded = load_snapshot(cfg, require_label=False)
    spec, table, planned, with_label = loaded.spec, loaded.table, loaded.planned, loaded.with_label
    lines = [
        f"{spec.path}: {table.rows:,} customers, {len(table.columns)} columns"
        + ("" if with_label else f" (no label column '{spec.label_column}': a table to score)"),
        f"  churn column period: {label_period(cfg.data.label).describe()} (data.label.period_months)",
    ]
    for name, source in planned.sources.items():
        lines.append(f"  {name:<28} {source['kind']:<12} from {', '.join(source['columns'])}")
    log.info("%s", "\n".join(lines))
    log.info("the snapshot table fits its config")
    return planned
