"""Stage: batch scoring and retention decisions (`python -m pipeline.score`, `make score`).

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

import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from features.engine import (
    DataWindow,
    FeatureBuild,
    FeatureDef,
    FeaturePlan,
    check_plan,
    compute_features,
    count_prospects,
    data_window,
    plan_every_feature,
    plan_features,
    table_last_dates,
)
from features.errors import ConfigError
from features.io import TableFile, fingerprint
from features.publish import (
    HistoryTable,
    Publication,
    check_can_write,
    csv_copy_sql,
    spreadsheet_safe_frame,
)
from features.redaction import redact
from features.snapshot import TABLE, check_scoring_table, feature_select, read_snapshot
from features.sql import literal
from models.actions import ValueParameters, select_within_budget
from models.decision_report import ScoringSummary, summarise, summary_figures
from models.decisions import DecisionPolicy, action_index
from models.errors import DecisionConfigError
from models.ladder import LoyaltyLadder
from models.reasons import ReasonFamilies, top_reasons
from models.valuation import Valuation
from models.value import lifetime_value
from pipeline.common import (
    config_params,
    connect,
    git_commit,
    load_inputs,
    load_registered_model,
    process_temp_dir,
    resolved_config,
    resolved_yaml,
    setup_mlflow,
    stage,
    tracked_run,
)
from pipeline.features import is_snapshot
from pipeline.generate import ensure_demo_data
from pipeline.preflight import check_settings, config_date

log = logging.getLogger(__name__)


def output_columns(top_reasons: int = 3) -> list[str]:
    """The columns of the scoring output, in order (`reason_1 .. reason_<top_reasons>`)."""
    return [
        "customer_id", "as_of", "p_churn", "clv", "value_at_risk", "strategic_value", "valuation_segment",
        "ladder_rung", *(f"reason_{i + 1}" for i in range(top_reasons)), "action", "action_kind",
        "action_cost", "expected_net_value", "selected", "priority", "model_version",
    ]  # fmt: skip


SIGNATURE_TYPES = {"double": {"DOUBLE"}, "string": {"VARCHAR"}, "long": {"BIGINT"}, "boolean": {"BOOLEAN"}}


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


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model version, its training run and the feature manifest it was trained with."""

    uri: str
    version: str
    run_id: str
    manifest: dict[str, Any]


def registered_model(model_uri: str) -> RegisteredModel:
    """Resolve `models:/name@alias` or `models:/name/version` and fetch its training feature manifest."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    name, _, ref = model_uri.removeprefix("models:/").partition("@")
    try:
        if ref:
            version = client.get_model_version_by_alias(name, ref)
        else:
            name, _, number = model_uri.removeprefix("models:/").partition("/")
            version = client.get_model_version(name, number)
    except MlflowException as error:
        raise ConfigError(
            f"score.model_uri {model_uri}: no such registered model version in {redact(mlflow.get_tracking_uri())} "
            f"({error.message.splitlines()[0]}); run `make train` first or point score.model_uri at one"
        ) from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(version.run_id, "run_info/feature_manifest.json", tmp)
        except (MlflowException, OSError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(
                f"model {model_uri} (version {version.version}) has no feature manifest that can be read in its "
                f"training run {version.run_id} (run_info/feature_manifest.json: {reason}): only models trained by "
                f"`make train` can rebuild their features for scoring; if it was, its artifacts were moved or deleted"
            ) from None
        manifest = json.loads(Path(path).read_text())
    return RegisteredModel(model_uri, str(version.version), version.run_id, manifest)


def decision_policy(cfg: DictConfig) -> DecisionPolicy:
    """The decision policy the `reasons`, `ladder`, `valuation` and `actions` configs describe."""
    from hydra.errors import InstantiationException

    actions = cfg.actions
    catalogue = []
    for name, spec in actions.catalogue.items():
        try:
            catalogue.append(instantiate(spec, name=str(name), _convert_="all"))
        except InstantiationException as error:
            if isinstance(error.__cause__, DecisionConfigError):
                raise error.__cause__ from error
            cause = str(error.__cause__ or error).strip().splitlines()[0]
            raise DecisionConfigError(f"actions.catalogue.{name}: {cause}") from error
    return DecisionPolicy(
        ladder=LoyaltyLadder.from_config(OmegaConf.to_container(cfg.ladder, resolve=True)),
        valuation=Valuation.from_config(OmegaConf.to_container(cfg.valuation, resolve=True)),
        reasons=ReasonFamilies.from_config(OmegaConf.to_container(cfg.reasons, resolve=True)),
        catalogue=tuple(catalogue),
        top_reasons=int(cfg.reasons.top_k),
        explain=bool(cfg.reasons.enabled),
        low_risk_below=float(actions.low_risk_below),
        contact_rule=str(actions.contact_rule or "TRUE"),
        budget=float(actions.budget),
        selection=str(actions.selection),
        exact_time_limit_seconds=float(actions.exact_time_limit_seconds),
    )


@dataclass(frozen=True)
class ScoringPlan:
    """The features a scoring run builds: the model's own, the extra ones the decision rules use, and the
    rule columns the data cannot provide (they read as empty)."""

    plan: FeaturePlan
    model_features: list[str]
    absent: dict[str, str]  # column -> DuckDB type
    notes: list[str]
    revenue: tuple[str, str | None] = ("monthly_revenue", None)  # recurring, purchases (conf/value)


def duckdb_type(feature: FeatureDef) -> str:
    """The type a feature has in the feature table."""
    return "VARCHAR" if feature.kind == "categorical" else "DOUBLE"


def scoring_plan(
    cfg: DictConfig,
    manifest: dict[str, Any],
    present: set[str],
    policy: DecisionPolicy,
    snapshot: bool = False,
) -> ScoringPlan:
    """The model's features from its manifest, plus the configured features the decision rules need (for a
    snapshot, only its own columns can be built: the others read as empty)."""
    model_features = tuple(FeatureDef(**f) for f in manifest["features"])
    names = {f.name for f in model_features}
    features_cfg = OmegaConf.to_container(cfg.features, resolve=True)
    event_types = tuple(manifest["event_types"])
    everything = plan_every_feature(features_cfg, event_types)
    buildable = (
        {} if snapshot else {f.name: f for f in plan_features(features_cfg, present, event_types).features}
    )
    revenue = revenue_features(cfg, manifest)
    used = policy.referenced_features({f.name for f in everything.features} | names)
    used |= {name for name in revenue if name is not None and (name in names or name in buildable)}
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


def check_model_matches_manifest(model: Any, manifest: dict[str, Any], model_uri: str) -> None:
    """The model's input signature must be the feature list its training run recorded."""
    schema = model.metadata.get_input_schema()
    if schema is None:
        return
    signature = [c.name for c in schema.inputs]
    recorded = [f["name"] for f in manifest["features"]]
    if signature != recorded:
        only_model = sorted(set(signature) - set(recorded))
        only_manifest = sorted(set(recorded) - set(signature))
        raise ConfigError(
            f"model {model_uri}: its input signature does not match the feature manifest of its training run "
            f"(only in the signature: {only_model or 'none'}; only in the manifest: {only_manifest or 'none'}"
            f"{'; same names in another order' if not only_model and not only_manifest else ''}); "
            f"re-register the model with `make train`"
        )


def check_feature_types(con: Any, model: Any, model_uri: str) -> None:
    """Each feature column must have the type the model's signature declares."""
    schema = model.metadata.get_input_schema()
    if schema is None:
        return
    types = {name: kind for name, kind, *_ in con.execute("DESCRIBE feature_table").fetchall()}
    wrong = []
    for column in schema.inputs:
        expected = str(column.type).split(".")[-1].lower()
        if types.get(column.name) not in SIGNATURE_TYPES.get(expected, {types.get(column.name)}):
            wrong.append(
                f"{column.name} is {types.get(column.name)} in the data, the model expects {expected}"
            )
    if wrong:
        raise ConfigError(
            f"model {model_uri} does not match the data's feature types: {'; '.join(wrong)}. Give the source "
            f"columns the types the model was trained on, or train a model on this data"
        )


def check_inputs_cover(
    cfg: DictConfig, con: Any, present: set[str], manifest: dict[str, Any], window: DataWindow, as_of: date
) -> None:
    """Refuse a scoring date the inputs do not cover: outside the data, or a table that stops well before it."""
    if as_of > window.end:
        raise ConfigError(
            f"score.as_of {as_of} is after the end of the input data ({window.end}): no inputs for it"
        )
    if as_of <= window.start:
        raise ConfigError(
            f"score.as_of {as_of} is not after the start of the input data ({window.start}): no history to "
            f"build features from"
        )
    lag = cfg.score.get("max_input_lag_days")
    if lag is not None:
        last = window.last_dates or table_last_dates(con, present)
        stale = {
            t: d for t, d in last.items() if t in manifest["input"]["tables"] and (as_of - d).days > int(lag)
        }
        if stale:
            listed = ", ".join(
                f"{t} ends on {d} ({(as_of - d).days} days before)" for t, d in sorted(stale.items())
            )
            raise ConfigError(
                f"inputs are missing for score.as_of {as_of}: {listed}; their features would read as no activity. "
                f"Provide data up to the scoring date, score an earlier date (score.as_of), or raise "
                f"score.max_input_lag_days (now {lag})"
            )
    event_types = manifest["event_types"]
    if event_types and "events" in present:
        seen = {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT event_type FROM events WHERE event_time < ? AND event_time >= ?",
                [as_of, date.fromordinal(as_of.toordinal() - 365)],
            ).fetchall()
        }
        missing = [t for t in event_types if t not in seen]
        if len(missing) == len(event_types):
            raise ConfigError(
                f"the model's event types {event_types} do not occur in the events of the year before {as_of} "
                f"(found: {sorted(seen)[:10]}): its engagement features cannot be rebuilt from this data"
            )
        if missing:
            log.warning("event types the model uses but absent in the year before %s: %s", as_of, missing)


def score(cfg: DictConfig) -> ScoreResult:
    """Score every active customer as of the configured date and decide what to do about each one.

    Everything that can refuse the run (settings, the tracking store, the model, the inputs, the output folder,
    the history table) is checked before anything is published; the files, the history table and the MLflow
    run are then published together, or not at all."""

    check_settings(cfg, "score")
    clock = Phases()
    policy = decision_policy(cfg)
    if cfg.score.postgres.get("table") and not cfg.score.postgres.get("uri"):
        raise ConfigError(
            f"score.postgres.table is {cfg.score.postgres.table} but there is no score.postgres.uri: set the "
            f"environment variable CHURNWISE_PG_URI, or score.postgres.uri in conf/local/default.yaml"
        )
    out_dir = Path(cfg.score.output_dir)
    path, csv_path = out_dir / "scores.parquet", out_dir / "scores.csv"
    check_can_write(out_dir, [path.name, csv_path.name], "score.output_dir")
    setup_mlflow(cfg)
    registered = registered_model(
        cfg.score.model_uri or f"models:/{cfg.mlflow.registered_model_name}@champion"
    )
    if is_snapshot(cfg):
        inputs = snapshot_inputs(cfg, registered, policy)
    else:
        inputs = table_inputs(cfg, registered, policy)
    con, planned, as_of, model = inputs.con, inputs.planned, inputs.as_of, inputs.model
    history = HistoryTable(con, Path(cfg.score.database), str(cfg.score.table))
    if history.database.exists():
        history.attach()  # a history in use by another job, or damaged, stops the run now
    clock.lap("validate")
    rows = inputs.build()
    if rows == 0:
        raise ConfigError(f"no customers are active on score.as_of {as_of}: nothing to score")
    check_feature_types(con, model, registered.uri)
    prospects = inputs.prospects()
    clock.lap("features")
    log.info(
        "scoring %s customers active on %s with %s (version %s)", f"{rows:,}", as_of, registered.uri,
        registered.version,
    )  # fmt: skip

    value = ValueParameters(
        horizon_days=int(registered.manifest["label"]["horizon_days"]),
        margin_rate=float(cfg.value.margin_rate),
        annual_discount_rate=float(cfg.value.annual_discount_rate),
    )
    score_chunks(con, cfg, model, policy, planned, value, as_of, registered.version, rows)
    clock.lap("score_and_decide")
    customers = finalise(con, policy)
    summary = summarise(con, "scoring_output", policy, prospects, float(policy.budget))
    clock.lap("rank_and_select")

    database, table = history.database, history.table
    history.check("scoring_output")
    data_fingerprint, _ = fingerprint(inputs.files)
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
            with tracked_run(f"score-{as_of}", scoring_tags(cfg, registered, as_of, data_fingerprint)) as run:
                log_scoring_run(cfg, summary)
                with history.replacing("scoring_output", "as_of", as_of):
                    publication.swap()
                    if cfg.score.postgres.get("table"):
                        publish_to_postgres(cfg, path, as_of)
        published = True
    finally:
        history.detach(failed=not published)
    run_id = run.info.run_id
    clock.lap("write_and_track")
    header = [
        f"churnwise score as of {as_of}: {registered.uri} (version {registered.version}), "
        f"{clock.total:.0f} s ({clock.render()}), selection '{policy.selection}'"
    ]
    log.info(
        "%s\n  output          %s (and .csv), table %s in %s\n  MLflow run      %s",
        summary.render(header), path, table, database, run_id,
    )  # fmt: skip
    return ScoreResult(
        path, csv_path, database, table, as_of, registered.uri, registered.version, run_id, customers,
        summary.mean_p_churn, summary, dict(clock.seconds), planned.notes,
    )  # fmt: skip


@dataclass
class ScoringInputs:
    """Validated inputs of a scoring run: the connection, the plan, the date, the model, and how to build the
    feature table `feature_table` (returns its rows) and count the prospects."""

    con: Any
    planned: ScoringPlan
    as_of: date
    model: Any
    files: dict[str, TableFile]
    build: Callable[[], int]
    prospects: Callable[[], int | None]


def table_inputs(cfg: DictConfig, registered: RegisteredModel, policy: DecisionPolicy) -> ScoringInputs:
    """Dated contract tables (data=demo, data=tables): checked, and the features of `as_of` rebuilt from them."""
    ensure_demo_data(cfg)
    tables, _ = load_inputs(cfg)
    con, present = tables.con, set(tables.report.present)
    check_model_inputs(cfg, registered, present)
    planned = scoring_plan(cfg, registered.manifest, present, policy)
    check_plan(con, planned.plan, present)  # the manifest's feature SQL, checked before the model loads
    model = load_registered_model(registered.uri)
    check_model_matches_manifest(model, registered.manifest, registered.uri)
    window = data_window(con, present)
    as_of = config_date(cfg.score.as_of, "score.as_of") or window.end
    check_inputs_cover(cfg, con, present, registered.manifest, window, as_of)
    build = FeatureBuild(planned.plan, (as_of,), window, 0, registered.manifest["label"], {})
    return ScoringInputs(
        con, planned, as_of, model, tables.files,
        build=lambda: compute_features(con, build, present, [as_of]),
        prospects=lambda: count_prospects(con, as_of, present),
    )  # fmt: skip


def snapshot_inputs(cfg: DictConfig, registered: RegisteredModel, policy: DecisionPolicy) -> ScoringInputs:
    """A snapshot table of the shape the model was trained on (data=snapshot; its label, if any, is ignored):
    checked, and the training run's feature expressions evaluated on it."""
    from pipeline.features import snapshot_spec

    recorded = registered.manifest.get("snapshot")
    if recorded is None:
        raise ConfigError(
            f"model {registered.uri} was trained on dated tables, not on a snapshot table: score it with the data "
            f"config it was trained with, or train a model with data=snapshot"
        )
    spec = snapshot_spec(cfg)
    con = connect(cfg)
    table = read_snapshot(con, spec)
    features = tuple(FeatureDef(**f) for f in registered.manifest["features"])
    check_scoring_table(con, table, recorded, features)
    check_model_inputs(cfg, registered, {TABLE})
    planned = scoring_plan(cfg, registered.manifest, set(), policy, snapshot=True)
    model = load_registered_model(registered.uri)
    check_model_matches_manifest(model, registered.manifest, registered.uri)
    as_of = config_date(cfg.score.as_of, "score.as_of") or spec.as_of or date.today()
    select = feature_select(table, recorded["id_column"], features, as_of)

    def build() -> int:
        con.execute(f"CREATE OR REPLACE TEMP TABLE feature_table AS {select}")
        return con.execute("SELECT count(*) FROM feature_table").fetchall()[0][0]

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


def check_model_inputs(cfg: DictConfig, registered: RegisteredModel, present: set[str]) -> None:
    """The data must hold every table the model was trained with, and the model the revenue feature."""
    manifest = registered.manifest
    missing = sorted(set(manifest["input"]["tables"]) - present)
    if missing:
        raise ConfigError(
            f"model {registered.uri} was trained with the tables {', '.join(manifest['input']['tables'])}; the "
            f"input data at {cfg.data.path} lacks {', '.join(missing)}, so its features cannot be rebuilt: provide "
            f"them or train a model on the tables you have"
        )
    recurring, purchases = revenue_features(cfg, manifest)
    model_features = {f["name"] for f in manifest["features"]}
    if recurring not in model_features and purchases is None:
        raise ConfigError(
            f"value.revenue_feature '{cfg.value.revenue_feature}' is not a feature of model {registered.uri}; "
            f"set it to the feature holding monthly revenue (or value.purchase_feature and "
            f"value.include_purchases=true to value purchases)"
        )


def revenue_features(cfg: DictConfig, manifest: dict[str, Any]) -> tuple[str, str | None]:
    """The recurring revenue feature, and the purchase feature when purchases count (conf/value)."""
    purchases = cfg.value.get("purchase_feature")
    include = cfg.value.get("include_purchases", "auto")
    if include == "auto":
        include = (
            "subscriptions" not in manifest["input"]["tables"] and "orders" in manifest["input"]["tables"]
        )
    return str(cfg.value.revenue_feature), str(purchases) if purchases and include else None


def monthly_revenue(frame: pd.DataFrame, recurring: str, purchases: str | None, months: float) -> np.ndarray:
    """Monthly revenue for lifetime value: the recurring revenue (empty: 0) plus purchases as a monthly average."""
    total = np.zeros(len(frame))
    if recurring in frame:
        total += np.nan_to_num(frame[recurring].to_numpy(dtype=float, na_value=np.nan))
    if purchases is not None:
        total += np.nan_to_num(frame[purchases].to_numpy(dtype=float, na_value=np.nan)) / months
    return total


def score_chunks(
    con: Any,
    cfg: DictConfig,
    model: Any,
    policy: DecisionPolicy,
    planned: ScoringPlan,
    value: ValueParameters,
    as_of: date,
    model_version: str,
    rows: int,
) -> None:
    """Score the feature table a chunk at a time into the temp table `scored`.

    Memory is bounded by the chunk: customers stream out of DuckDB, and each chunk's results are appended
    to a Parquet file on disk, read back into DuckDB once the stream is drained.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    churn_model = model.unwrap_python_model().model if policy.explain else None
    recurring, purchases = planned.revenue
    months = float(cfg.value.get("purchase_months", 12))
    # The rules run chunk by chunk on a connection that cannot reach files, not on this one.
    features = con.sql("SELECT * FROM feature_table ORDER BY customer_id")
    reader = policy.rules_reader(features.to_arrow_reader(int(cfg.score.chunk_rows)), planned.absent)
    schema = pa.schema(
        [("customer_id", reader.schema.field("customer_id").type), ("as_of", pa.date32())]
        + [(c, pa.float64()) for c in ("p_churn", "clv", "value_at_risk", "strategic_value")]
        + [("ladder_rung", pa.string())]
        + [(f"reason_{i + 1}", pa.string()) for i in range(policy.top_reasons)]
        + [("action", pa.string()), ("action_kind", pa.string())]
        + [
            ("action_cost", pa.float64()),
            ("expected_net_value", pa.float64()),
            ("model_version", pa.string()),
        ]
    )
    spill = (
        process_temp_dir(cfg) if cfg.engine.get("temp_directory") else None
    )  # removed if the job is killed
    with tempfile.TemporaryDirectory(dir=spill) as tmp:
        results = Path(tmp) / "scored.parquet"
        with (
            pq.ParquetWriter(results, schema) as writer,
            tqdm(
                total=rows, desc="scoring", unit="customer", disable=rows <= int(cfg.score.chunk_rows)
            ) as bar,
        ):
            for batch in reader:
                frame = batch.to_pandas()
                inputs = frame[planned.model_features]
                p_churn = model.predict(inputs)["p_churn"].to_numpy(dtype=float)
                revenue = monthly_revenue(frame, recurring, purchases, months)
                clv = lifetime_value(
                    p_churn, revenue, horizon_days=value.horizon_days, margin_rate=value.margin_rate,
                    annual_discount_rate=value.annual_discount_rate,
                )  # fmt: skip
                explained = None
                if churn_model is not None:
                    explained = top_reasons(
                        churn_model.contributions(inputs),
                        churn_model.features,
                        policy.reasons,
                        policy.top_reasons,
                    )
                decided = policy.decide(frame, p_churn, clv, revenue, explained, value)
                chunk = pd.concat(
                    [
                        pd.DataFrame(
                            {
                                "customer_id": frame["customer_id"],
                                "as_of": as_of,
                                "p_churn": p_churn,
                                "clv": clv,
                                "value_at_risk": p_churn * clv,
                            },
                            index=frame.index,
                        ),
                        decided,
                    ],
                    axis=1,
                ).assign(model_version=model_version)
                writer.write_table(pa.Table.from_pandas(chunk, schema=schema, preserve_index=False))
                bar.update(len(frame))
        con.execute(f"CREATE OR REPLACE TEMP TABLE scored AS SELECT * FROM read_parquet({literal(results)})")


def finalise(con: Any, policy: DecisionPolicy) -> int:
    """Valuation segments, priority and the budgeted selection over all scored customers, into the temp
    table `scoring_output` in priority order; returns its rows."""
    valuation = policy.valuation
    if valuation.high_clv_min is not None:
        threshold = valuation.high_clv_min
    else:
        threshold = con.execute(
            "SELECT quantile_cont(clv, ?) FROM scored", [valuation.high_clv_quantile]
        ).fetchall()[0][0]
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ranked AS
            SELECT *, {valuation.segment_sql(float(threshold))} AS valuation_segment,
                   row_number() OVER (ORDER BY expected_net_value DESC NULLS LAST, customer_id) AS priority
            FROM scored"""
    )
    ordered = con.execute("SELECT action, action_cost, expected_net_value FROM ranked ORDER BY priority").df()
    selected = select_within_budget(
        action_index(ordered["action"].to_numpy(dtype=object), policy.action_names),
        ordered["action_cost"].to_numpy(dtype=float, na_value=np.nan),
        ordered["expected_net_value"].to_numpy(dtype=float, na_value=np.nan),
        policy.budget,
        policy.capacities(),
        method=policy.selection,
        time_limit_seconds=policy.exact_time_limit_seconds,
    )
    selection = pd.DataFrame({"priority": np.arange(1, len(selected) + 1), "selected": selected})
    con.register("selection", selection)
    select = ", ".join(
        "s.selected" if c == "selected" else f"r.{c}" for c in output_columns(policy.top_reasons)
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE scoring_output AS
            SELECT {select} FROM ranked r JOIN selection s USING (priority) ORDER BY r.priority"""
    )
    con.unregister("selection")
    con.execute("DROP TABLE ranked")
    con.execute("DROP TABLE scored")
    return con.execute("SELECT count(*) FROM scoring_output").fetchall()[0][0]


def publish_to_postgres(cfg: DictConfig, path: Path, as_of: date) -> int:
    """Replace this as_of's rows of the PostgreSQL table `score.postgres.table` with the output, in one
    transaction (the table is created, keyed by customer_id and as_of, if it does not exist)."""
    from features.postgres import redact, write_scores

    settings = cfg.score.postgres
    rows = write_scores(str(settings.uri), str(settings.table), path, as_of)
    log.info(
        "published %s rows to PostgreSQL table %s at %s", f"{rows:,}", settings.table, redact(settings.uri)
    )
    return rows


def scoring_tags(
    cfg: DictConfig, registered: RegisteredModel, as_of: date, data_fingerprint: str
) -> dict[str, str]:
    """The tags of a scoring run: the model version, the date, the data and the code."""
    commit, dirty = git_commit()
    return {
        "stage": "score",
        "model.uri": registered.uri,
        "model.version": registered.version,
        "model.run_id": registered.run_id,
        "as_of": as_of.isoformat(),
        "data.name": cfg.data.name,
        "data.fingerprint": data_fingerprint,
        "git.commit": commit,
        "git.dirty": str(dirty).lower(),
        "selection": str(cfg.actions.selection),
    }


def log_scoring_run(cfg: DictConfig, summary: ScoringSummary) -> None:
    """Log a scoring into the active MLflow run: its settings, counts, budget and value, tables and plots."""
    import matplotlib.pyplot as plt
    import mlflow

    resolved = resolved_config(cfg)
    mlflow.log_params(
        config_params(
            {k: resolved[k] for k in ("score", "value", "actions", "ladder", "valuation", "reasons")}
        )
    )
    mlflow.log_metrics(summary.metrics())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "resolved_config.yaml").write_text(resolved_yaml(cfg))
        for name, frame in summary.tables().items():
            spreadsheet_safe_frame(frame).to_csv(folder / f"{name}.csv", index=False)
        mlflow.log_artifacts(str(folder), artifact_path="run_info")
    for file_name, figure in summary_figures(summary).items():
        mlflow.log_figure(figure, f"plots/{file_name}")
        plt.close(figure)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    score(cfg)


if __name__ == "__main__":
    main()
