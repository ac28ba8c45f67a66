"""Feature SQL is an allow-listed aggregate over its family's source: hostile or foreign SQL is refused naming
its key before anything is computed, the shipped features pass and mean what they meant, and names, values
and paths from config or data are quoted (issue 12)."""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
from omegaconf import OmegaConf

from features.dialect import install_duckdb_functions
from features.engine import (
    FeatureBuild,
    FeatureDef,
    FeaturePlan,
    build_feature_table,
    compute_features,
    plan_build,
    plan_features,
    write_feature_table,
)
from features.errors import ConfigError
from features.expressions import AGGREGATE_FUNCTIONS, DATE_FUNCTIONS, checked_expression
from features.validation import load_tables

CONF = Path(__file__).resolve().parents[2] / "conf"
FEATURES = OmegaConf.to_container(OmegaConf.load(CONF / "features" / "default.yaml"))
LABEL = OmegaConf.to_container(OmegaConf.load(CONF / "label" / "inactivity.yaml"))
OBSERVATION = {"data_end": "2024-06-01"}
D = date(2024, 3, 1)
KEY = "features.families.spend.features.probe.sql"

TABLES = {
    "customers": """customer_id,signup_date,segment,Account Manager
1,2023-01-10,consumer,Ann O'Neil
2,2023-06-01,small_business,
""",
    "orders": """customer_id,order_date,product_category,amount
1,2024-02-01,devices,100
1,2023-11-15,accessories,20
2,2024-01-20,devices,5
2,2024-04-01,devices,7
""",
    "events": '''customer_id,event_time,event_type,quantity
1,2024-02-20 10:00:00,login,
1,2024-02-25 10:00:00,"it's ""new""",
1,2024-02-26 10:00:00,"it's ""new""",
2,2024-02-10 10:00:00,"it's ""new""",
2,2024-04-10 10:00:00,login,
''',
}


def write_tables(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in TABLES.items():
        (folder / f"{name}.csv").write_text(text)
    return folder


def with_feature(sql: str, family: str = "spend", **spec: Any) -> dict[str, Any]:
    """The default feature set with one more feature, `probe`, in `family`."""
    cfg = copy.deepcopy(FEATURES)
    cfg["families"][family]["features"]["probe"] = {"sql": sql, "description": "a probe", **spec}
    return cfg


HOSTILE = [
    ("(SELECT max(amount) FROM orders)", "is not allowed: a subquery (SELECT ...)"),
    ("max(amount) + (SELECT count(*) FROM read_parquet('/etc/x.parquet'))", "is not allowed: a subquery"),
    ("count(*) FILTER (WHERE customer_id IN (SELECT customer_id FROM complaints))", "IN over a subquery"),
    ("max(read_csv('/etc/passwd'))", "is not allowed: the function read_csv()"),
    ("count(*) FILTER (WHERE glob('/etc/*') IS NOT NULL)", "is not allowed: the function glob()"),
    ("count(*); DROP TABLE customers; --", "is not allowed: more than one statement"),
    ("count(*) -- FILTER (WHERE origin = 'order')", "is not allowed: a comment"),
    ("any_value(getenv('HOME'))", "is not allowed: the function getenv()"),
    ("max(current_setting('threads'))", "is not allowed: the function current_setting()"),
    ("max(o.amount)", "is not allowed: the qualified column o.amount"),
    ("max(main.orders.amount)", "is not allowed: the qualified column"),
    ('"amount"; select 1', "is not allowed: more than one statement"),
    ("count(*) FILTER (WHERE origin = 'order)", "cannot be parsed"),
    ("*", "is not allowed: '*'"),
    ("sum(amount) OVER ()", "is not allowed: a window function"),
    ("max(amount) FILTER (WHERE amount > $1)", "is not allowed: the parameter $1"),
    ("list(amount)", "is not allowed: the function"),
]


@pytest.mark.parametrize(("sql", "problem"), HOSTILE)
def test_hostile_feature_sql_is_refused_when_the_features_are_planned_naming_its_key(
    sql: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as error:
        plan_features(with_feature(sql), {"customers", "orders"})
    assert str(error.value).startswith(f"{KEY}: {sql!r} ")
    assert problem in str(error.value)


def test_a_feature_reaching_another_table_or_an_unknown_column_stops_the_build_before_any_work(
    tmp_path: Path,
) -> None:
    for sql, column in (("max(severity)", "severity"), ("max(amountz)", "amountz")):
        tables = load_tables(write_tables(tmp_path / column))
        with pytest.raises(ConfigError) as error:
            plan_build(tables.con, set(tables.report.present), with_feature(sql), OBSERVATION, LABEL)
        assert str(error.value).startswith(f"{KEY}: {sql!r} cannot be evaluated")
        assert f'Referenced column "{column}" not found' in str(error.value)
        temp = {row[0] for row in tables.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert not temp & {"grid", "feature_table", "observation_dates"}
    # the source's own columns, its derived ones and observation_date are what a feature may use
    tables = load_tables(write_tables(tmp_path / "fine"))
    fine = "count(*) FILTER (WHERE is_active OR cw_days_between(spend_date, observation_date) < 40)"
    plan_build(tables.con, set(tables.report.present), with_feature(fine), OBSERVATION, LABEL)


def test_a_plan_not_made_here_is_checked_before_the_grid_is_built(tmp_path: Path) -> None:
    tables = load_tables(write_tables(tmp_path))
    present = set(tables.report.present)
    build = plan_build(tables.con, present, FEATURES, OBSERVATION, LABEL, dates=[D])
    smuggled = FeatureDef("orders_seen", "spend", "spend", "(SELECT count(*) FROM orders)", "from a manifest")
    plan = FeaturePlan((*build.plan.features, smuggled), build.plan.skipped, build.plan.event_types)
    with pytest.raises(ConfigError, match=r"^features.families.spend.features.orders_seen.sql: .*a subquery"):
        compute_features(tables.con, FeatureBuild(plan, (D,), build.window, 0, LABEL, {}), present, [D])
    temp = {row[0] for row in tables.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert "grid" not in temp and "feature_table" not in temp


def test_names_and_values_from_data_and_config_are_quoted(tmp_path: Path) -> None:
    tables = load_tables(write_tables(tmp_path))
    cfg = with_feature('any_value("Account Manager")', "attributes", kind="categorical", fill="n/a' OR 'x")
    cfg["families"]["engagement"]["features"]["events_{event_type_name}_like_{w}d"] = {
        "sql": "count(*) FILTER (WHERE event_type LIKE '{event_type}%' AND event_time >= cw_add_days(observation_date, -{w}))",
        "description": "{event_type} events (LIKE) in the last {w} days",
        "per_window": True,
        "per_event_type": True,
        "fill": 0,
    }
    build = build_feature_table(tables.con, set(tables.report.present), cfg, OBSERVATION, LABEL, dates=[D])
    assert build.plan.event_types == ('it\'s "new"', "login")
    rows = tables.con.execute(
        'SELECT customer_id, probe, "events_it_s_new_30d", "events_it_s_new_like_30d", events_login_30d '
        "FROM feature_table ORDER BY customer_id"
    ).fetchall()
    assert rows == [("1", "Ann O'Neil", 2.0, 2.0, 1.0), ("2", "n/a' OR 'x", 1.0, 1.0, 0.0)]
    described = {f.name: f.description for f in build.plan.features}
    assert described["events_it_s_new_30d"].startswith('it\'s "new" events in the last 30 days')


def test_a_fill_value_that_is_not_a_literal_is_refused_naming_its_key() -> None:
    with pytest.raises(ConfigError, match=r"^features.families.spend.features.probe.fill: \[1, 2\] is not a"):
        plan_features(with_feature("max(amount)", fill=[1, 2]), {"customers", "orders"})
    with pytest.raises(ConfigError, match=r"^features.families.spend.source: unknown feature source 'sales'"):
        plan_features({**FEATURES, "families": {"spend": {**FEATURES["families"]["spend"], "source": "sales"}}},
                      {"customers", "orders"})  # fmt: skip


def test_the_feature_table_is_written_to_a_folder_whose_name_has_quotes_and_glob_characters(
    tmp_path: Path,
) -> None:
    tables = load_tables(write_tables(tmp_path / "tables"))
    present = set(tables.report.present)
    dates = [date(2024, 2, 1), D, date(2024, 4, 1)]
    expected = build_feature_table(tables.con, present, FEATURES, OBSERVATION, LABEL, dates=dates)
    one_pass = tables.con.execute("SELECT * FROM feature_table").fetchall()
    target = tmp_path / "it's [a] *folder?" / "features.parquet"
    planned = plan_build(tables.con, present, FEATURES, OBSERVATION, LABEL, dates=dates)
    written = write_feature_table(tables.con, planned, present, target, dates_per_batch=1)
    assert written.rows == expected.rows == len(one_pass) > 0
    con = duckdb.connect()
    assert con.execute("SELECT * FROM read_parquet(?)", [str(target)]).fetchall() == one_pass
    assert [p.name for p in target.parent.iterdir()] == ["features.parquet"]


def test_every_shipped_feature_passes_against_its_source_columns(tmp_path: Path) -> None:
    from features.demo.dated import DemoSpec, generate_demo

    summary = generate_demo(
        DemoSpec(n_customers=200, months=14, seed=5, chunk_size=200), tmp_path / "t", tmp_path / "x"
    )
    tables = load_tables(summary.tables_dir)
    build = plan_build(tables.con, set(tables.report.present), FEATURES, {}, LABEL)
    configured = {name for family in FEATURES["families"].values() for name in family["features"]}
    assert not build.plan.skipped and len(build.plan.features) > len(configured)


AGGREGATE_EXAMPLES = {
    "any_value": "any_value(s)",
    "arg_max": "arg_max(s, x) || max_by(s, x)",
    "arg_min": "arg_min(s, x) || min_by(s, x)",
    "avg": "avg(x) FILTER (WHERE x > 1)",
    "bool_and": "bool_and(x > 0)",
    "bool_or": "bool_or(x > 5)",
    "count": "count(*) + count(DISTINCT s) + count(x) FILTER (WHERE s IS NOT NULL)",
    "count_if": "count_if(x > 1)",
    "max": "max(x)",
    "median": "median(x)",
    "min": "min(x)",
    "quantile": "quantile(x, 0.5)",
    "quantile_cont": "quantile_cont(x, 0.25)",
    "quantile_disc": "quantile_disc(x, 0.75)",
    "stddev": "stddev(x)",
    "stddev_pop": "stddev_pop(x)",
    "stddev_samp": "stddev_samp(x)",
    "sum": "sum(DISTINCT x) + sum(x)",
    "var_pop": "var_pop(x)",
    "variance": "variance(x) + var_samp(x)",
}
DATE_EXAMPLES = {
    "cw_add_days": "max(cw_add_days(d, 10))",
    "cw_add_months": "max(cw_add_months(d, 1))",
    "cw_days_between": "cw_days_between(min(d), observation_date)",
    "cw_month_of_year": "max(cw_month_of_year(d))",
    "cw_seconds_between": "sum(cw_seconds_between(d, observation_date))",
}


@pytest.mark.parametrize("sql", [*AGGREGATE_EXAMPLES.values(), *DATE_EXAMPLES.values()])
def test_allowed_aggregates_mean_the_same_once_regenerated(sql: str) -> None:
    con = duckdb.connect()
    install_duckdb_functions(con)
    con.execute(
        "CREATE TABLE t AS SELECT * FROM (VALUES (1, 1.0, 'a', DATE '2024-01-31'), (1, 4.0, 'b', DATE '2024-02-10'),"
        " (1, 4.0, NULL, NULL), (2, 9.0, 'c', DATE '2023-12-01')) v(g, x, s, d)"
    )
    regenerated = checked_expression(sql, KEY, {"g", "x", "s", "d", "observation_date"}, aggregates=True)
    query = "SELECT g, ({}) FROM (SELECT *, DATE '2024-03-01' AS observation_date FROM t) "
    query += "GROUP BY g, observation_date ORDER BY g"
    assert con.execute(query.format(regenerated)).fetchall() == con.execute(query.format(sql)).fetchall()


def test_every_allowed_aggregate_and_date_function_has_an_example() -> None:
    assert set(AGGREGATE_EXAMPLES) == set(AGGREGATE_FUNCTIONS)
    assert set(DATE_EXAMPLES) == set(DATE_FUNCTIONS) == {
        "cw_add_days", "cw_add_months", "cw_days_between", "cw_month_of_year", "cw_seconds_between"
    }  # fmt: skip
    with pytest.raises(ConfigError, match="the function cw_add_days"):
        checked_expression("cw_add_days(x, 1) > x", "ladder.rules.client")  # rules do not get them
