"""Planning the feature set: expansion over windows and event types, skipped families, bad configs."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from features.engine import build_feature_table, event_type_name, plan_features
from features.observation import ObservationGrid
from features.validation import load_tables

CONF = Path(__file__).resolve().parents[2] / "conf"
FEATURES = OmegaConf.to_container(OmegaConf.load(CONF / "features" / "default.yaml"))


def test_windows_and_event_types_expand_into_named_features() -> None:
    plan = plan_features(FEATURES, {"customers", "events"}, ["login", "Page View"])
    names = plan.names
    assert {"events_30d", "events_90d", "events_365d", "events_login_90d", "events_page_view_365d"} <= set(
        names
    )
    assert "FILTER (WHERE event_type = 'Page View'" in next(
        f.sql for f in plan.features if f.name == "events_page_view_30d"
    )
    assert set(plan.skipped) == {"bundles", "cross_sell", "complaints", "spend", "contract", "loyalty"}
    assert plan.skipped["complaints"] == "needs complaints"
    assert event_type_name("2-Factor Auth") == "t_2_factor_auth"


def test_a_bad_feature_name_is_refused() -> None:
    broken = {
        **FEATURES,
        "families": {
            "attributes": {**FEATURES["families"]["attributes"], "features": {"Bad Name": {"sql": "1"}}}
        },
    }
    with pytest.raises(ValueError, match="invalid names"):
        plan_features(broken, {"customers", "orders"})


def test_observation_dates_step_by_months_and_clamp_the_day() -> None:
    assert ObservationGrid(1, "months").dates(date(2024, 1, 1), date(2024, 4, 1)) == [
        date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1), date(2024, 4, 1)
    ]  # fmt: skip
    assert ObservationGrid(1, "months").dates(date(2024, 1, 31), date(2024, 3, 31))[1] == date(2024, 2, 29)
    assert ObservationGrid(3, "months").dates(date(2024, 1, 1), date(2024, 12, 1))[-1] == date(2024, 10, 1)


def test_families_whose_tables_are_absent_are_skipped_and_the_rest_built(tmp_path: Path) -> None:
    (tmp_path / "customers.csv").write_text("customer_id,signup_date\n1,2023-01-01\n2,2023-01-01\n")
    (tmp_path / "orders.csv").write_text(
        "customer_id,order_date,product_category,amount\n1,2023-02-01,a,10\n2,2023-03-15,b,5\n1,2023-05-01,a,7\n"
    )
    tables = load_tables(tmp_path)
    label = OmegaConf.to_container(OmegaConf.load(CONF / "label" / "inactivity.yaml"))
    build = build_feature_table(
        tables.con, set(tables.report.present), FEATURES, {"data_end": "2023-12-01"}, label,
        dates=[date(2023, 4, 1)],
    )  # fmt: skip
    assert set(build.plan.skipped) == {"bundles", "complaints", "contract", "engagement", "loyalty"}
    columns = [r[0] for r in tables.con.execute("DESCRIBE feature_table").fetchall()]
    assert "orders_90d" in columns and "active_products" not in columns and "complaints_30d" not in columns
    rows = tables.con.execute(
        "SELECT customer_id, orders_90d, churned FROM feature_table ORDER BY 1"
    ).fetchall()
    assert rows == [("1", 1, 0), ("2", 1, 1)]  # CSV ids stay text


def test_batched_parquet_output_equals_the_one_pass_build(tmp_path: Path) -> None:
    import pandas as pd

    from features.demo.dated import DemoSpec, generate_demo
    from features.engine import plan_build, write_feature_table

    summary = generate_demo(
        DemoSpec(n_customers=300, months=18, seed=4, chunk_size=300), tmp_path / "t", tmp_path / "x"
    )
    label = OmegaConf.to_container(OmegaConf.load(CONF / "label" / "contractual.yaml"))
    observation = {"start": "2022-05-01", "end": "2023-06-01"}
    one_pass = load_tables(summary.tables_dir)
    whole = build_feature_table(one_pass.con, set(one_pass.report.present), FEATURES, observation, label)
    expected = one_pass.con.execute("SELECT * FROM feature_table").df()

    batched = load_tables(summary.tables_dir)
    present = set(batched.report.present)
    planned = plan_build(batched.con, present, FEATURES, observation, label)
    written = write_feature_table(
        batched.con, planned, present, tmp_path / "out" / "features.parquet", dates_per_batch=4
    )
    written_frame = batched.con.execute(
        f"SELECT * FROM read_parquet('{tmp_path / 'out' / 'features.parquet'}')"
    ).df()
    pd.testing.assert_frame_equal(written_frame, expected)
    assert written.rows == whole.rows == len(expected)
    assert written.churn_by_date == whole.churn_by_date
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["features.parquet"]


def test_a_failed_write_leaves_the_previous_file_and_no_temp(tmp_path: Path) -> None:
    from features.publish import replace_file

    target = tmp_path / "table.parquet"
    target.write_text("previous")

    def crash(temp: Path) -> None:
        temp.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        replace_file(crash, target, None)
    assert target.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["table.parquet"]


def test_publishing_several_files_renames_none_until_all_are_written(tmp_path: Path) -> None:
    from features.publish import publish_files

    first, second = tmp_path / "scores.parquet", tmp_path / "scores.csv"
    first.write_text("previous parquet")
    second.write_text("previous csv")

    def crash(temp: Path) -> None:
        temp.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        publish_files({first: lambda temp: temp.write_text("new parquet"), second: crash}, None)
    assert first.read_text() == "previous parquet" and second.read_text() == "previous csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv", "scores.parquet"]

    # A temp file left by a process that was killed (it no longer runs) is removed by the next write;
    # one of a process still running is left alone.
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f".scores.csv.tmp-{dead.stdout.strip()}"
    stale.write_text("half")
    live = tmp_path / f".scores.csv.tmp-{os.getppid()}"
    live.write_text("someone else's")
    publish_files(
        {first: lambda temp: temp.write_text("new parquet"), second: lambda t: t.write_text("new csv")}, None
    )
    assert first.read_text() == "new parquet" and second.read_text() == "new csv"
    assert not stale.exists() and live.exists()


def test_event_types_beyond_the_cap_are_named_in_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    from features.engine import capped_event_types
    from features.errors import ConfigError

    ranked = [f"type_{k:02d}" for k in range(30)]
    with caplog.at_level("INFO", logger="features.engine"):
        assert capped_event_types(ranked, 40) == ranked  # under the cap: all kept, nothing said
        assert capped_event_types(ranked, 5) == ranked[:5]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1
    assert said[0].startswith(
        "events: 30 event types; features for the 5 most frequent (features.max_event_types), "
        "25 left out: type_05, type_06"
    )
    assert said[0].endswith("type_24 and 5 more")
    with pytest.raises(ConfigError, match="features.max_event_types must be at least 1"):
        capped_event_types(ranked, 0)
