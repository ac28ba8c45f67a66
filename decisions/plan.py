"""The features a scoring run builds: the model's own (from its training manifest), those the decision
rules and the revenue rule read, and the rule columns the data cannot provide (they read as empty)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from decisions.policy import DecisionPolicy
from decisions.value import RevenueRule
from features.engine import FeatureDef, FeaturePlan, plan_every_feature, plan_features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringPlan:
    """The features a scoring run builds: the model's own, the extra ones the decision rules use, and the
    rule columns the data cannot provide (they read as empty)."""

    plan: FeaturePlan
    model_features: list[str]
    absent: dict[str, str]  # column -> DuckDB type
    notes: list[str]
    revenue: RevenueRule


def duckdb_type(feature: FeatureDef) -> str:
    """The type a feature has in the feature table."""
    return "VARCHAR" if feature.kind == "categorical" else "DOUBLE"


def scoring_plan(
    features_cfg: dict[str, Any],
    manifest: dict[str, Any],
    present: set[str],
    policy: DecisionPolicy,
    revenue: RevenueRule,
    snapshot: bool = False,
) -> ScoringPlan:
    """The model's features from its manifest, plus the configured features (`features_cfg`) the decision
    rules and the revenue rule need (for a snapshot, only its own columns can be built: the others read as
    empty)."""
    model_features = tuple(FeatureDef(**f) for f in manifest["features"])
    names = {f.name for f in model_features}
    event_types = tuple(manifest["event_types"])
    everything = plan_every_feature(features_cfg, event_types)
    buildable = (
        {} if snapshot else {f.name: f for f in plan_features(features_cfg, present, event_types).features}
    )
    used = policy.referenced_features({f.name for f in everything.features} | names)
    used |= {name for name in revenue.features if name in names or name in buildable}
    extra = tuple(buildable[n] for n in sorted(used - names) if n in buildable)
    absent = {f.name: duckdb_type(f) for f in everything.features if f.name in used - names - set(buildable)}
    notes = []
    if absent:
        notes.append(
            f"decision rules use {', '.join(sorted(absent))}, which the data cannot provide: rules that "
            f"need them do not hold"
        )
        log.warning("%s", notes[-1])
    if extra:
        log.info("decision rules also use features the model does not: %s", ", ".join(f.name for f in extra))
    plan = FeaturePlan(model_features + extra, manifest["skipped_families"], event_types)
    columns = {f.name: duckdb_type(f) for f in plan.features} | absent
    policy.check(columns)
    return ScoringPlan(plan, [f.name for f in model_features], absent, notes, revenue)
