"""Building the point-in-time feature table and its churn labels on DuckDB.

The observation grid holds one row per (customer_id, observation_date) for the customers active at each
date. Every feature family is one aggregate query over its point-in-time source (`features.sources`)
joined to the grid; labels look forward from each date (`features.labels`). All of it runs as SQL inside
DuckDB over the validated tables, so inputs larger than memory stream from disk.

A feature's SQL comes from config: it is parsed and allow-listed (`features.expressions`, aggregate mode,
columns limited to its family's source) when the features are planned and again when its query is built, and
what runs is the expression regenerated from the checked tree. Names and values from config or data go into
SQL only through `features.sql`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
from tqdm.auto import tqdm

from features.catalog import feature_availability
from features.contract import CONTRACT
from features.dialect import install_duckdb_functions
from features.errors import ConfigError
from features.expressions import ExpressionError, checked_expression
from features.labels import label_sql
from features.observation import ObservationGrid
from features.publish import replace_file
from features.sources import Source, activity_dates_sql, row_columns, source_for
from features.sql import identifier, literal

log = logging.getLogger(__name__)

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
KEYS = ("customer_id", "observation_date")
FLOAT_DIGITS = 9  # decimals kept in floating-point features


@dataclass(frozen=True)
class FeatureDef:
    """One feature: its name, family, the SQL aggregate computing it, and what it means."""

    name: str
    family: str
    source: str
    sql: str
    description: str
    fill: Any = None
    kind: str = "numeric"


@dataclass(frozen=True)
class FeaturePlan:
    """The features a run builds, grouped by family, and the families it skips with the reason."""

    features: tuple[FeatureDef, ...]
    skipped: dict[str, str]
    event_types: tuple[str, ...]
    lookback_days: dict[str, int] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Feature column names, in order."""
        return [f.name for f in self.features]

    @property
    def categorical(self) -> list[str]:
        """Names of the categorical features."""
        return [f.name for f in self.features if f.kind == "categorical"]

    def family(self, name: str) -> list[FeatureDef]:
        """Features of one family."""
        return [f for f in self.features if f.family == name]

    @property
    def families(self) -> list[str]:
        """Families built, in order."""
        return list(dict.fromkeys(f.family for f in self.features))


def event_type_name(event_type: str) -> str:
    """A column-safe name for an event type ('Page View' -> 'page_view')."""
    name = re.sub(r"[^a-z0-9]+", "_", event_type.lower()).strip("_")
    return name if name and name[0].isalpha() else f"t_{name}"


def plan_features(
    features_cfg: Mapping[str, Any],
    present: set[str],
    event_types: Sequence[str] = (),
    source_columns: Mapping[str, Collection[str]] | None = None,
) -> FeaturePlan:
    """Expand the configured feature set for the tables present (windows, event types) and check names, fill
    values and SQL.

    Every feature's SQL is parsed and allow-listed (`features.expressions`, aggregate mode); with
    `source_columns` (source name -> its query's columns, see `plan_build`) its columns must be its family's,
    otherwise they are checked when the plan meets the data (`compute_features`). A bad feature raises
    ConfigError naming its key (`features.families.<family>.features.<feature>.sql`).
    """
    families: Mapping[str, Any] = features_cfg["families"]
    windows = [int(w) for w in features_cfg.get("windows_days", [])]
    availability = {a.name: a for a in feature_availability(families, present)}
    features: list[FeatureDef] = []
    skipped: dict[str, str] = {}
    lookback: dict[str, int] = {}
    problems: list[str] = []
    for family, spec in families.items():
        if not availability[family].buildable:
            skipped[family] = availability[family].reason
            continue
        source = source_for(spec["source"], present, f"features.families.{family}.source")
        allowed = None
        if source_columns is not None:
            allowed = row_columns(source, source_columns[source.name])
        if spec.get("lookback_days"):
            lookback[family] = int(spec["lookback_days"])
        for template, feature in spec["features"].items():
            key = f"features.families.{family}.features.{template}"
            fill = feature.get("fill")
            try:
                literal(fill)
            except (TypeError, ValueError):
                problems.append(f"{key}.fill: {fill!r} is not a number, a text or true/false")
            window_values = windows if feature.get("per_window") else [None]
            type_values = list(event_types) if feature.get("per_event_type") else [None]
            for w in window_values:
                for event_type in type_values:
                    values: dict[str, Any] = {"w": w}
                    if event_type is not None:
                        values["event_type_name"] = event_type_name(event_type)
                    text = {} if event_type is None else {"event_type": str(event_type)}
                    sql = _fill_sql(_fill(str(feature["sql"]), values), text)
                    try:
                        checked_expression(sql, f"{key}.sql", allowed, aggregates=True)
                    except ExpressionError as error:
                        problems.append(str(error))
                    features.append(
                        FeatureDef(
                            name=_fill(template, values),
                            family=family,
                            source=spec["source"],
                            sql=sql,
                            description=_fill(str(feature.get("description", "")), {**values, **text}),
                            fill=fill,
                            kind=feature.get("kind", "numeric"),
                        )
                    )
    names = [f.name for f in features]
    bad = [n for n in names if not IDENTIFIER.match(n) or n in KEYS or n in ("churned", "label_status")]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if bad or duplicated:
        raise ConfigError(
            f"feature config: invalid names {bad} (use lower-case letters, digits and _, not a key or label "
            f"column) or duplicated names {duplicated}"
        )
    if problems:
        raise ConfigError("\n  ".join(dict.fromkeys(problems)))
    return FeaturePlan(tuple(features), skipped, tuple(event_types), lookback)


def plan_every_feature(features_cfg: Mapping[str, Any], event_types: Sequence[str] = ()) -> FeaturePlan:
    """Every configured feature, as if every contract table were present (per-event-type features expanded
    for `event_types`, or a placeholder type): the names and kinds rules may refer to."""
    from features.contract import CONTRACT

    return plan_features(features_cfg, set(CONTRACT.table_names), tuple(event_types) or ("event",))


def _fill(template: str, values: Mapping[str, Any]) -> str:
    out = template
    for key, value in values.items():
        if value is not None:
            out = out.replace("{" + key + "}", str(value))
    return out


_STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")


def _fill_sql(sql: str, texts: Mapping[str, str]) -> str:
    """Put text values (an event type from the data) into feature SQL as SQL strings: `'{event_type}'` and
    a bare `{event_type}` become the quoted literal, `'{event_type}%'` keeps its quotes around the escaped
    text."""
    for key, value in texts.items():
        placeholder, quoted = "{" + key + "}", literal(value)
        pieces, last = [], 0
        for string in _STRING_LITERAL.finditer(sql):
            pieces.append(sql[last : string.start()].replace(placeholder, quoted))
            pieces.append(string.group(0).replace(placeholder, quoted[1:-1]))
            last = string.end()
        pieces.append(sql[last:].replace(placeholder, quoted))
        sql = "".join(pieces)
    return sql


def feature_key(feature: FeatureDef) -> str:
    """The config key of a planned feature's SQL (its expanded name: events_login_30d)."""
    return f"features.families.{feature.family}.features.{feature.name}.sql"


def checked_feature_sql(feature: FeatureDef, columns: Collection[str]) -> str:
    """A feature's SQL allow-listed against its family's row `columns` and regenerated: the SQL that runs."""
    return checked_expression(feature.sql, feature_key(feature), columns, aggregates=True)


@dataclass(frozen=True)
class DataWindow:
    """Where the data starts (its logs) and ends (exclusive: the first day without data), and the latest date
    of each dated table."""

    start: date
    end: date
    last_dates: dict[str, date] = field(default_factory=dict, compare=False)


# The date column of each log table: when its rows happened.
LOG_DATES = CONTRACT.log_dates  # the tables that log events, with the column dating a row


def table_last_dates(con: duckdb.DuckDBPyConnection, present: set[str]) -> dict[str, date]:
    """The latest date each dated table holds (for subscriptions and complaints, their end dates too)."""
    latest = {t: [c] for t, c in LOG_DATES.items() if t in present}
    if "subscriptions" in present:
        latest["subscriptions"] = ["start_date", "end_date"]
    if "complaints" in present:
        latest["complaints"].append("resolved_at")
    out = {}
    for table, columns in latest.items():
        maxima = ", ".join(f"CAST(max({identifier(c)}) AS DATE)" for c in columns)
        values = con.execute(f"SELECT {maxima} FROM {identifier(table)}").fetchall()[0]
        known = [v for v in values if v is not None]
        if known:
            out[table] = max(known)
    return out


def data_window(con: duckdb.DuckDBPyConnection, present: set[str]) -> DataWindow:
    """The span of the data: logs' first date, and the day after the latest date in any table."""
    starts = [
        f"SELECT CAST(min({identifier(c)}) AS DATE) AS d FROM {identifier(t)}"
        for t, c in LOG_DATES.items()
        if t in present
    ]
    if not starts:
        starts = ["SELECT min(start_date) AS d FROM subscriptions"]
    start = con.execute(f"SELECT min(d) FROM ({' UNION ALL '.join(starts)})").fetchall()[0][0]
    last_dates = table_last_dates(con, present)
    last = max(last_dates.values(), default=None)
    if start is None or last is None:
        raise ConfigError("the input tables hold no dates to place observation dates on")
    return DataWindow(start, date.fromordinal(last.toordinal() + 1), last_dates)


def count_prospects(con: duckdb.DuckDBPyConnection, as_of: date, present: set[str]) -> int | None:
    """Customers known before `as_of` who never bought before it (no subscription start, no order).

    None when the data has neither subscriptions nor orders, so buying cannot be told apart.
    """
    purchases = []
    if "subscriptions" in present:
        purchases.append("SELECT customer_id FROM subscriptions WHERE start_date < $as_of")
    if "orders" in present:
        purchases.append("SELECT customer_id FROM orders WHERE order_date < $as_of")
    if not purchases:
        return None
    return con.execute(
        f"""SELECT count(*) FROM customers c
            WHERE c.signup_date < $as_of
              AND c.customer_id NOT IN ({" UNION ".join(purchases)})""",
        {"as_of": as_of},
    ).fetchall()[0][0]


def default_observation_dates(window: DataWindow, observation_cfg: Mapping[str, Any]) -> list[date]:
    """Observation dates from config (`features.observation`), with defaults derived from the data window:
    from the first grid anchor `warmup_days` after the data start to the last anchor on its last day."""
    grid = ObservationGrid.from_config(observation_cfg)
    start = observation_cfg.get("start")
    end = observation_cfg.get("end")
    warmup = int(observation_cfg.get("warmup_days", 90))
    start_date = (
        date.fromisoformat(str(start))
        if start
        else grid.first_on_or_after(date.fromordinal(window.start.toordinal() + warmup))
    )
    if end:
        end_date = date.fromisoformat(str(end))
    else:
        end_date = grid.last_on_or_before(date.fromordinal(window.end.toordinal() - 1))
    dates = grid.dates(start_date, end_date)
    if not dates:
        raise ConfigError(
            f"no observation dates between {start_date} and {end_date} ({grid.describe()}): set "
            f"observation.start and observation.end"
        )
    return dates


def ranked_event_types(con: duckdb.DuckDBPyConnection, before: date) -> list[str]:
    """Every event type seen before a date, the most frequent first (ties broken by name)."""
    rows = con.execute(
        "SELECT event_type FROM events WHERE event_time < ? GROUP BY event_type ORDER BY count(*) DESC, event_type",
        [before],
    ).fetchall()
    return [r[0] for r in rows]


DEFAULT_MAX_EVENT_TYPES = 40
SHOWN_LEFT_OUT = 20  # event types beyond the cap named in the log line; the rest are counted


def capped_event_types(ranked: Sequence[str], limit: int) -> list[str]:
    """The first `limit` of the ranked event types; the ones beyond the cap are said in one log line."""
    if limit < 1:
        raise ConfigError(f"features.max_event_types must be at least 1, not {limit}")
    kept, left_out = list(ranked[:limit]), list(ranked[limit:])
    if left_out:
        shown = ", ".join(left_out[:SHOWN_LEFT_OUT])
        more = f" and {len(left_out) - SHOWN_LEFT_OUT} more" if len(left_out) > SHOWN_LEFT_OUT else ""
        log.info(
            "events: %d event types; features for the %d most frequent (features.max_event_types), "
            "%d left out: %s%s",
            len(ranked), limit, len(left_out), shown, more,
        )  # fmt: skip
    return kept


def source_columns(con: duckdb.DuckDBPyConnection, source: Source) -> list[str]:
    """Column names of a source's query."""
    return [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM ({source.sql}) s").fetchall()]


def planned_source_columns(
    con: duckdb.DuckDBPyConnection, features_cfg: Mapping[str, Any], present: set[str]
) -> dict[str, list[str]]:
    """The columns of every source a buildable family reads (its query described, nothing computed)."""
    install_duckdb_functions(con)
    families: Mapping[str, Any] = features_cfg["families"]
    names = {
        str(families[a.name]["source"]): f"features.families.{a.name}.source"
        for a in feature_availability(families, present)
        if a.buildable
    }
    return {name: source_columns(con, source_for(name, present, key)) for name, key in names.items()}


def check_plan(con: duckdb.DuckDBPyConnection, plan: FeaturePlan, present: set[str]) -> None:
    """Allow-list every planned feature's SQL against its family's source columns on `con` (nothing computed);
    ConfigError names each bad feature. For plans not made by `plan_build` (a training run's manifest)."""
    install_duckdb_functions(con)
    problems, columns = [], {}
    for feature in plan.features:
        if feature.source not in columns:
            source = source_for(feature.source, present, f"features.families.{feature.family}.source")
            columns[feature.source] = row_columns(source, source_columns(con, source))
        try:
            checked_feature_sql(feature, columns[feature.source])
        except ExpressionError as error:
            problems.append(str(error))
    if problems:
        raise ConfigError("\n  ".join(problems))


def family_sql(
    source: Source,
    columns: Sequence[str],
    features: Sequence[FeatureDef],
    lookback_days: int | None,
    dates: Sequence[date] = (),
) -> str:
    """One family's aggregate query: its source joined to the grid, point in time, grouped per snapshot.

    With `dates` (the grid's observation dates), source rows outside [first date - lookback, last date) are
    dropped before the join, which a scan can skip cheaply; the join condition alone decides correctness.
    """
    selected = []
    for column in columns:
        if column == "customer_id":
            continue
        name = identifier(column)
        if column in source.masked:
            known_from = identifier(source.masked[column])
            selected.append(f"CASE WHEN s.{known_from} < g.observation_date THEN s.{name} END AS {name}")
        else:
            selected.append(f"s.{name}")
    post = "".join(f", {expr} AS {identifier(name)}" for name, expr in source.post.items())
    known_at = identifier(source.known_at)
    bound = ""
    if lookback_days:
        bound = f" AND s.{known_at} >= cw_add_days(g.observation_date, {literal(-int(lookback_days))})"
    allowed = row_columns(source, columns)
    aggregates = ",\n       ".join(
        f"{checked_feature_sql(f, allowed)} AS {identifier(f.name)}" for f in features
    )
    prune = ""
    if dates:
        prune = f" WHERE {known_at} < {literal(max(dates))}"
        if lookback_days:
            earliest = date.fromordinal(min(dates).toordinal() - int(lookback_days))
            prune += f" AND {known_at} >= {literal(earliest)}"
    return f"""
SELECT customer_id, observation_date,
       {aggregates}
FROM (
  SELECT m.*{post}
  FROM (
    SELECT g.customer_id, g.observation_date, {", ".join(selected)}
    FROM grid g
    JOIN (SELECT * FROM ({source.sql}) u{prune}) s
      ON s.customer_id = g.customer_id AND s.{known_at} < g.observation_date{bound}
  ) m
) p
GROUP BY customer_id, observation_date"""


def grid_sql(population: str, activity_lookback_days: int, present: set[str]) -> str:
    """Customers active at each observation date.

    contract: holding a subscription started before the date and not known to have ended before it;
    activity: with an order or event in the look-back window before the date.
    """
    if population == "contract":
        if "subscriptions" not in present:
            raise ConfigError("label population 'contract' needs the subscriptions table")
        return """
SELECT DISTINCT s.customer_id, o.observation_date
FROM subscriptions s
JOIN observation_dates o
  ON s.start_date < o.observation_date AND (s.end_date IS NULL OR s.end_date >= o.observation_date)"""
    if population == "activity":
        return f"""
SELECT DISTINCT a.customer_id, o.observation_date
FROM ({activity_dates_sql(present, "label population 'activity'")}) a
JOIN observation_dates o
  ON a.activity_date < o.observation_date
 AND a.activity_date >= cw_add_days(o.observation_date, -{int(activity_lookback_days)})"""
    raise ConfigError(f"unknown label population {population!r}: use contract or activity")


def prepare(con: duckdb.DuckDBPyConnection, dates: Sequence[date], population_sql: str) -> int:
    """Create the observation dates and the grid on the connection; return the grid's row count."""
    install_duckdb_functions(con)
    con.execute("CREATE OR REPLACE TEMP TABLE observation_dates (observation_date DATE)")
    con.executemany("INSERT INTO observation_dates VALUES (?)", [[d] for d in dates])
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE grid AS {population_sql} ORDER BY customer_id, observation_date"
    )
    return con.execute("SELECT count(*) FROM grid").fetchall()[0][0]


# Sources that are plain reads of one table stay views; derived ones (window functions, unions) are
# computed once per connection, not once per batch of dates.
PLAIN_SOURCES = {"events", "complaints"}


def materialized_source(con: duckdb.DuckDBPyConnection, name: str, present: set[str]) -> Source:
    """The source, with its full-history query computed once into a temp table `src_<name>`."""
    source = source_for(name, present)
    if name in PLAIN_SOURCES:
        return source
    table = identifier(f"src_{name}")
    con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} AS {source.sql}")
    return replace(source, sql=f"SELECT * FROM {table}")


def features_sql(
    con: duckdb.DuckDBPyConnection, plan: FeaturePlan, present: set[str], dates: Sequence[date] = ()
) -> str:
    """The whole feature query: the grid left-joined to every family's aggregates, with fill values."""
    joins, columns = [], []
    for i, family in enumerate(plan.families):
        features = plan.family(family)
        source = materialized_source(con, features[0].source, present)
        sql = family_sql(source, source_columns(con, source), features, plan.lookback_days.get(family), dates)
        alias = f"f{i}"
        joins.append(
            f"LEFT JOIN ({sql}) {alias} ON {alias}.customer_id = g.customer_id AND {alias}.observation_date = g.observation_date"
        )
        for feature in features:
            value = f"{alias}.{identifier(feature.name)}"
            if feature.fill is not None:
                value = f"coalesce({value}, {_fill_literal(feature)})"
            columns.append(f"{value} AS {identifier(feature.name)}")
    return (
        f"SELECT g.customer_id, g.observation_date{''.join(', ' + c for c in columns)}\nFROM grid g\n"
        + "\n".join(joins)
    )


def _fill_literal(feature: FeatureDef) -> str:
    try:
        return literal(feature.fill)
    except (TypeError, ValueError):
        raise ConfigError(
            f"features.families.{feature.family}.features.{feature.name}.fill: {feature.fill!r} is not a number, "
            f"a text or true/false"
        ) from None


@dataclass(frozen=True)
class FeatureBuild:
    """A feature table's plan and what it holds."""

    plan: FeaturePlan
    dates: tuple[date, ...]
    window: DataWindow
    rows: int
    label_cfg: dict[str, Any]
    churn_by_date: dict[str, dict[str, Any]]


def plan_build(
    con: duckdb.DuckDBPyConnection,
    present: set[str],
    features_cfg: Mapping[str, Any],
    observation_cfg: Mapping[str, Any],
    label_cfg: Mapping[str, Any],
    *,
    event_types: Sequence[str] | None = None,
    dates: Sequence[date] | None = None,
) -> FeatureBuild:
    """Decide dates, data window, event types and features for a build (nothing is computed yet)."""
    install_duckdb_functions(con)
    window = data_window(con, present)
    if observation_cfg.get("data_end"):
        window = DataWindow(window.start, date.fromisoformat(str(observation_cfg["data_end"])))
    dates = sorted(dates) if dates is not None else default_observation_dates(window, observation_cfg)
    if event_types is None:
        event_types = []
        if "events" in present:
            configured = features_cfg.get("event_types", "auto")
            if configured == "auto":
                limit = int(features_cfg.get("max_event_types", DEFAULT_MAX_EVENT_TYPES))
                event_types = capped_event_types(ranked_event_types(con, max(dates)), limit)
            else:
                event_types = [str(e) for e in configured]
    # Every feature's SQL is checked against its family's source columns now, before anything is computed.
    columns = planned_source_columns(con, features_cfg, present)
    plan = plan_features(features_cfg, present, event_types, columns)
    for family, reason in plan.skipped.items():
        log.info("skipped feature family %s: %s", family, reason)
    return FeatureBuild(plan, tuple(dates), window, 0, dict(label_cfg), {})


def compute_features(
    con: duckdb.DuckDBPyConnection, build: FeatureBuild, present: set[str], dates: Sequence[date]
) -> int:
    """Compute grid, features and labels for `dates` into the temp table `feature_table`; return its rows.

    The plan's feature SQL is checked against the source columns first, so a bad feature (a plan not made
    here, such as a training run's manifest) stops before the grid is built."""
    check_plan(con, build.plan, present)
    label_cfg = build.label_cfg
    population = grid_sql(label_cfg["population"], int(label_cfg.get("activity_lookback_days", 90)), present)
    prepare(con, dates, population)
    labels = label_sql(label_cfg, build.window.end, present)
    query = features_sql(con, build.plan, present, dates)
    # Numeric features are all DOUBLE, so training and scoring see one type whatever a batch holds.
    # Parallel floating-point sums differ in their last bits from run to run; rounding makes the same input
    # give the same features, so the same config and seed give the same model.
    categorical = set(build.plan.categorical)
    columns = ", ".join(
        ["f.customer_id", "f.observation_date"]
        + [
            f"f.{identifier(name)}"
            if name in categorical
            else f"round(CAST(f.{identifier(name)} AS DOUBLE), {FLOAT_DIGITS}) AS {identifier(name)}"
            for name in build.plan.names
        ]
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE feature_table AS
SELECT {columns}, l.churned, l.label_status
FROM ({query}) f
JOIN ({labels}) l ON l.customer_id = f.customer_id AND l.observation_date = f.observation_date
ORDER BY f.observation_date, f.customer_id"""
    )
    return con.execute("SELECT count(*) FROM feature_table").fetchall()[0][0]


def _churn_by_date(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    rows = con.execute(
        """SELECT CAST(observation_date AS VARCHAR), count(*), count(churned), avg(churned)
           FROM feature_table GROUP BY observation_date ORDER BY observation_date"""
    ).fetchall()
    return {
        d: {"snapshots": n, "labeled": labeled, "churn_rate": None if rate is None else round(rate, 6)}
        for d, n, labeled, rate in rows
    }


def build_feature_table(
    con: duckdb.DuckDBPyConnection,
    present: set[str],
    features_cfg: Mapping[str, Any],
    observation_cfg: Mapping[str, Any],
    label_cfg: Mapping[str, Any],
    *,
    event_types: Sequence[str] | None = None,
    dates: Sequence[date] | None = None,
) -> FeatureBuild:
    """Build grid, features and labels for all dates into the temp table `feature_table` on `con`."""
    build = plan_build(
        con, present, features_cfg, observation_cfg, label_cfg, event_types=event_types, dates=dates
    )
    rows = compute_features(con, build, present, build.dates)
    return replace(build, rows=rows, churn_by_date=_churn_by_date(con))


def write_feature_table(
    con: duckdb.DuckDBPyConnection,
    build: FeatureBuild,
    present: set[str],
    path: Path,
    *,
    dates_per_batch: int = 6,
    key: str | None = None,
) -> FeatureBuild:
    """Compute the planned dates a batch at a time and write one Parquet file, atomically (`key`: the setting
    that chose the folder, which must then be churnwise's; see features.publish).

    Memory is bounded by the batch (the grid of `dates_per_batch` dates), not by the number of dates.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = path.parent / f".{path.name}.parts-{os.getpid()}"
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir()
    rows, churn = 0, {}
    batches = [build.dates[i : i + dates_per_batch] for i in range(0, len(build.dates), dates_per_batch)]
    files: list[Path] = []
    try:
        for number, batch in enumerate(
            tqdm(batches, desc="features", unit="batch", disable=len(batches) < 2)
        ):
            batch_rows = compute_features(con, build, present, batch)
            rows += batch_rows
            churn |= _churn_by_date(con)
            files.append(parts / f"part-{number:04d}.parquet")
            con.execute(f"COPY feature_table TO {literal(files[-1])} (FORMAT parquet)")
            log.info("features for %s .. %s: %s snapshots", batch[0], batch[-1], f"{batch_rows:,}")
        con.execute("DROP TABLE IF EXISTS feature_table")
        # Parts are in date order and each is sorted: reading them in that order keeps the order. They are
        # listed one by one (not a glob), so a folder name with '*', '?' or '[' is read as it is.
        listed = "[" + ", ".join(literal(file) for file in files) + "]"
        replace_file(
            lambda temp: con.execute(
                f"COPY (SELECT * FROM read_parquet({listed})) TO {literal(temp)} (FORMAT parquet, COMPRESSION zstd)"
            ),
            path,
            key,
        )
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    return replace(build, rows=rows, churn_by_date=churn)


def features_as_of(
    con: duckdb.DuckDBPyConnection, build: FeatureBuild, present: set[str], dates: Sequence[date]
) -> duckdb.DuckDBPyRelation:
    """The feature rows of `dates` (as `compute_features` builds them), handed back as a relation."""
    compute_features(con, build, present, dates)
    return con.table("feature_table")
