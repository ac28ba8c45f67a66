"""The batch-scoring job (`make score`): score every active customer as of a date and decide what to do
about each one.

Loads a registered model (`models:/churnwise@champion` by default) and the feature manifest of the run that
trained it, rebuilds exactly those features for every customer active as of a date (default: the end of the
data), and scores them in chunks. For each customer it adds the lifetime value and value at risk, the rung on
the loyalty ladder, the strategic value and valuation segment, the top reasons behind the score, and the
retention action with the highest expected net value; customers are ranked by that value and selected within
the budget.

The output (one row per scored customer) is written atomically as Parquet and CSV, and upserted by
(customer_id, as_of) into a DuckDB table that keeps every run. The run is logged to MLflow with counts per
rung and action, the budget used and the expected value saved. See docs/scoring.md.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
from omegaconf import DictConfig, OmegaConf

from decisions.actions import ValueParameters
from decisions.batch import ADDED_COLUMNS, finalise, score_chunks
from decisions.checks import (
    check_feature_types,
    check_inputs_cover,
    check_model_inputs,
    check_model_matches_manifest,
    check_training_ranges,
)
from decisions.control import ControlSettings
from decisions.effects import sources
from decisions.plan import ScoringPlan, scoring_plan
from decisions.policy import DecisionPolicy, decision_policy
from decisions.publishing import log_scoring_run, publish_to_postgres, scoring_tags
from decisions.summary import ScoringSummary, summarise
from decisions.value import RevenueRule
from features.build import is_snapshot, snapshot_data_end, snapshot_spec
from features.dates import as_of_date, config_date
from features.engine import FeatureBuild, FeatureDef, check_plan, count_prospects, data_window, features_as_of
from features.errors import ConfigError
from features.inputs import EngineSettings, connect, load_inputs, process_temp_dir
from features.io import TableFile, fingerprint
from features.labels import LabelWindow
from features.provenance import resolved_config, resolved_yaml
from features.publish import HistoryTable, Publication, check_can_write, csv_copy_sql
from features.snapshot import TABLE, check_scoring_table, feature_select, read_snapshot
from features.sql import literal
from models.registry import RegisteredModel, load_registered_model, registered_model
from models.tracking import TrackingSettings, tracked_run
from models.training import population_description

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreResult:
    """Where the scoring output went and what it holds."""

    path: Path
    csv_path: Path
    database: Path
    table: str
    as_of: date
    model_uri: str
    model_version: str
    run_id: str
    customers: int
    mean_p_churn: float
    summary: ScoringSummary
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per phase
    notes: list[str] = field(default_factory=list)


def score(cfg: DictConfig) -> ScoreResult:
    """Score every active customer as of the configured date and decide what to do about each one.

    Everything that can refuse the run (the tracking store, the model, the inputs, the output folder, the
    history table) is checked before anything is published; the files, the history table and the MLflow run
    are then published together, or not at all."""
    clock = Phases()
    policy = decision_policy(cfg)
    control = ControlSettings.from_config(cfg.actions.get("control"))
    postgres = cfg.score.postgres
    if postgres.get("table") and not postgres.get("uri"):
        raise ConfigError(
            f"score.postgres.table is {postgres.table} but there is no score.postgres.uri: set the "
            f"environment variable CHURNWISE_PG_URI, or score.postgres.uri in conf/local/default.yaml"
        )
    out_dir = Path(cfg.score.output_dir)
    path, csv_path = out_dir / "scores.parquet", out_dir / "scores.csv"
    check_can_write(out_dir, [path.name, csv_path.name], "score.output_dir")
    tracking = TrackingSettings.from_config(cfg.mlflow)
    tracking.setup()
    registered = registered_model(cfg.score.model_uri or tracking.champion_uri)
    inputs = (snapshot_inputs if is_snapshot(cfg) else table_inputs)(cfg, registered, policy)
    con, planned, as_of, model = inputs.con, inputs.planned, inputs.as_of, inputs.model
    history = HistoryTable(con, Path(cfg.score.database), str(cfg.score.table), addable=ADDED_COLUMNS)
    if history.database.exists():
        history.attach()  # a history in use by another job, or damaged, stops the run now
    clock.lap("validate")
    features = inputs.build()
    rows = int(features.shape[0])
    if rows == 0:
        raise ConfigError(f"no customers are active on score.as_of {as_of}: nothing to score")
    check_feature_types(features, model, registered.uri)
    warn_share = float(cfg.score.get("out_of_range_warn_share", 0.05))
    out_of_range = check_training_ranges(features, registered.manifest, registered.uri, warn_share)
    prospects = inputs.prospects()
    clock.lap("features")
    log.info(
        "scoring %s customers active on %s with %s (version %s)", f"{rows:,}", as_of, registered.uri,
        registered.version,
    )  # fmt: skip

    value = ValueParameters(
        horizon_days=LabelWindow.from_config(registered.manifest["label"]).approx_days,
        margin_rate=float(cfg.value.margin_rate),
        annual_discount_rate=float(cfg.value.annual_discount_rate),
        horizon_months=int(cfg.value.get("horizon_months", 120)),
        as_of=as_of,
        **scoring_effects(cfg, registered),
    )
    configured_days = LabelWindow.from_config(cfg.label).approx_days if is_snapshot(cfg) else None
    if configured_days is not None and round(configured_days) != round(value.horizon_days):
        log.warning(
            "data.label.period_months says the churn column covers %.0f days, but %s was trained on one covering "
            "%.0f days: p_churn and lifetime values are over the model's period", configured_days, registered.uri,
            value.horizon_days,
        )  # fmt: skip
    spill = process_temp_dir(Path(cfg.engine.temp_directory)) if cfg.engine.get("temp_directory") else None
    with tempfile.TemporaryDirectory(dir=spill) as tmp:  # removed if the job is killed
        scored = score_chunks(
            features, model, policy, planned, value, as_of, registered.version,
            chunk_rows=int(cfg.score.chunk_rows), into=Path(tmp) / "scored.parquet",
        )  # fmt: skip
        clock.lap("score_and_decide")
        output = finalise(con, scored, policy, control, as_of)
    customers = int(output.shape[0])
    summary = dataclasses.replace(
        summarise(output, policy, prospects, float(policy.budget), control.share, sources(policy.catalogue, value.uplift)),
        out_of_range=out_of_range, out_of_range_warn_share=warn_share,
        training_ranges=registered.manifest.get("training_ranges") or {},
    )  # fmt: skip
    clock.lap("rank_and_select")
    log.info(summary.assumed_line())

    database, table = history.database, history.table
    history.check("scoring_output")
    data_fingerprint, _ = fingerprint(inputs.files)
    tags = scoring_tags(registered, as_of, str(cfg.data.name), data_fingerprint, str(cfg.actions.selection))
    published = False
    try:
        with Publication() as publication:
            publication.stage(
                path,
                lambda temp: con.execute(
                    f"COPY scoring_output TO {literal(temp)} (FORMAT parquet, COMPRESSION zstd)"
                ),
                "score.output_dir",
            )
            publication.stage(
                csv_path,
                lambda temp: con.execute(csv_copy_sql(con, "scoring_output", temp)),
                "score.output_dir",
            )
            with tracked_run(f"score-{as_of}", tags) as run:
                log_scoring_run(resolved_config(cfg), resolved_yaml(cfg), summary)
                with history.replacing("scoring_output", "as_of", as_of):
                    publication.swap()
                    if postgres.get("table"):
                        publish_to_postgres(str(postgres.uri), str(postgres.table), path, as_of)
        published = True
    finally:
        history.detach(failed=not published)
    run_id = run.info.run_id
    clock.lap("write_and_track")
    header = [
        f"churnwise score as of {as_of}: {registered.uri} (version {registered.version}), "
        f"{clock.total:.0f} s ({clock.render()}), selection '{policy.selection}'",
        f"  who and when    {population_description(OmegaConf.create(registered.manifest['label']))}",
    ]
    log.info(
        "%s\n  output          %s (and .csv), table %s in %s\n  MLflow run      %s",
        summary.render(header), path, table, database, run_id,
    )  # fmt: skip
    return ScoreResult(
        path, csv_path, database, table, as_of, registered.uri, registered.version, run_id, customers,
        summary.mean_p_churn, summary, dict(clock.seconds), planned.notes,
    )  # fmt: skip


def scoring_effects(cfg: DictConfig, registered: RegisteredModel) -> dict[str, Any]:
    """The `ValueParameters` fields the effects bundle of the scored model's own training run fills
    (`runs:/<run_id>/effects`, so the two never drift apart): `survival`, the survival model lifetime value
    discounts (None, a constant monthly retention, with survival=constant), and `uplift`, the learned action
    effects (decisions/effects.py; an action without one keeps its assumed prior). A model trained before
    bundles existed: constant retention and every effect assumed, said once."""
    from hydra.utils import instantiate

    from models.effects import load_effects
    from models.survival import ConstantHazard

    effects = load_effects(registered.run_id)
    window = int(cfg.get("uplift", {}).get("value_window_months", 12))
    if effects is None:
        log.info(
            "%s (version %s) has no effects bundle in its training run (trained before survival models): lifetime "
            "value uses a constant monthly retention, as survival=constant", registered.uri, registered.version,
        )  # fmt: skip
        return {"survival": None, "uplift": {}, "window_months": window}
    constant = "survival" in cfg and isinstance(instantiate(cfg.survival), ConstantHazard)
    return {
        "survival": None if constant else effects.survival,
        "uplift": dict(effects.uplift or {}),
        "window_months": window,
    }


@dataclass
class ScoringInputs:
    """Validated inputs of a scoring run: the connection, the plan, the date, the model, and how to build the
    feature rows (returned as a relation) and count the prospects."""

    con: Any
    planned: ScoringPlan
    as_of: date
    model: Any
    files: dict[str, TableFile]
    build: Callable[[], duckdb.DuckDBPyRelation]
    prospects: Callable[[], int | None]


def table_inputs(cfg: DictConfig, registered: RegisteredModel, policy: DecisionPolicy) -> ScoringInputs:
    """Dated contract tables (data=demo, data=tables): checked, and the features of `as_of` rebuilt from them."""
    tables, _ = load_inputs(cfg)
    con, present = tables.con, set(tables.report.present)
    revenue = RevenueRule.from_config(cfg.value, registered.manifest["input"]["tables"])
    check_model_inputs(registered, present, revenue, str(cfg.data.path))
    features_cfg = OmegaConf.to_container(cfg.features, resolve=True)
    planned = scoring_plan(features_cfg, registered.manifest, present, policy, revenue)
    check_plan(con, planned.plan, present)  # the manifest's feature SQL, checked before the model loads
    model = load_registered_model(registered.uri)
    check_model_matches_manifest(model, registered.manifest, registered.uri)
    window = data_window(con, present)
    as_of = as_of_date(config_date(cfg.score.as_of, "score.as_of"), window.end)
    lag = cfg.score.get("max_input_lag_days")
    check_inputs_cover(con, present, registered.manifest, window, as_of, None if lag is None else int(lag))
    build = FeatureBuild(planned.plan, (as_of,), window, 0, registered.manifest["label"], {})
    return ScoringInputs(
        con, planned, as_of, model, tables.files,
        build=lambda: features_as_of(con, build, present, [as_of]),
        prospects=lambda: count_prospects(con, as_of, present),
    )  # fmt: skip


def snapshot_inputs(cfg: DictConfig, registered: RegisteredModel, policy: DecisionPolicy) -> ScoringInputs:
    """A snapshot table of the shape the model was trained on (data=snapshot; its label, if any, is ignored):
    checked, and the training run's feature expressions evaluated on it."""
    recorded = registered.manifest.get("snapshot")
    if recorded is None:
        raise ConfigError(
            f"model {registered.uri} was trained on dated tables, not on a snapshot table: score it with the data "
            f"config it was trained with, or train a model with data=snapshot"
        )
    spec = snapshot_spec(cfg)
    con = connect(EngineSettings.from_config(cfg.engine))
    table = read_snapshot(con, spec)
    features = tuple(FeatureDef(**f) for f in registered.manifest["features"])
    check_scoring_table(con, table, recorded, features)
    revenue = RevenueRule.from_config(cfg.value, registered.manifest["input"]["tables"])
    check_model_inputs(registered, {TABLE}, revenue, str(cfg.data.path))
    features_cfg = OmegaConf.to_container(cfg.features, resolve=True)
    planned = scoring_plan(features_cfg, registered.manifest, set(), policy, revenue, snapshot=True)
    model = load_registered_model(registered.uri)
    check_model_matches_manifest(model, registered.manifest, registered.uri)
    configured = config_date(cfg.score.as_of, "score.as_of") or spec.as_of
    as_of = as_of_date(configured, snapshot_data_end(con, table))
    select = feature_select(table, recorded["id_column"], features, as_of)

    def build() -> duckdb.DuckDBPyRelation:
        con.execute(f"CREATE OR REPLACE TEMP TABLE feature_table AS {select}")
        return con.table("feature_table")

    return ScoringInputs(
        con, planned, as_of, model, {TABLE: table.file}, build=build, prospects=lambda: None
    )  # fmt: skip


class Phases:
    """Wall time of the consecutive phases of a run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = self._start = time.perf_counter()

    def lap(self, name: str) -> None:
        """Close the phase `name`, started where the previous one ended."""
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 3)
        self._last = now

    @property
    def total(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self._start

    def render(self) -> str:
        """'validate 1.2 s, features 3.4 s, ...'."""
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())
