"""Awkward names reach the feature build intact: a data folder and an output path with a space and a single
quote, user columns (and a file) named with spaces and quotes mapped onto the contract, and an event type and
a categorical value holding a quote. Each goes into SQL only through `features.sql`, so none can end a string
or a name early."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from omegaconf import OmegaConf

from features.engine import build_feature_table, plan_build, write_feature_table
from features.validation import load_tables

CONF = Path(__file__).resolve().parents[2] / "conf"
D = date(2024, 3, 1)
NEXT = date(2024, 4, 1)
DATES = [D, NEXT]
LATE = "it's late"  # an event type with a quote: its features are events_it_s_late_{w}d
SEGMENT = "O'Brien's"  # a categorical value with a quote

CUSTOMERS = pd.DataFrame(
    {
        "customer_id": [1, 2],
        "signup_date": ["2023-01-10", "2023-06-01"],
        "segment": ["consumer", SEGMENT],
        "region": ["north", "south"],
        "channel": ["online", "retail_store"],
    }
)
SUBSCRIPTIONS = pd.DataFrame(
    {
        "customer_id": [1, 2],
        "product": ["broadband", "mobile"],
        "product_category": ["broadband", "mobile"],
        "start_date": ["2023-01-15", "2023-06-05"],
        "end_date": [None, "2024-03-20"],  # customer 2 is active on D, gone by NEXT, and churns after D
        "monthly_price": [30.0, 20.0],
        "contract_term_months": [12, 0],
        "bundle_id": ["B1", None],
    }
)
EVENTS = pd.DataFrame(
    {
        "customer_id": [1, 1, 1, 1, 2],
        "event_time": [
            "2024-01-20 10:00:00",
            "2024-02-20 10:00:00",
            "2024-02-25 10:00:00",
            "2024-03-10 10:00:00",
            "2024-02-10 10:00:00",
        ],
        "event_type": [LATE, LATE, "login", LATE, "login"],
        "quantity": [None, None, None, 1.5, None],
    }
)


def config(name: str) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.load(CONF / name))  # type: ignore[return-value]


def write_tables(folder: Path) -> Path:
    """The tables under their contract names: customers and events as CSV, subscriptions as Parquet."""
    folder.mkdir(parents=True)
    CUSTOMERS.to_csv(folder / "customers.csv", index=False)
    SUBSCRIPTIONS.to_parquet(folder / "subscriptions.parquet", index=False)
    EVENTS.to_csv(folder / "events.csv", index=False)
    return folder


def features(folder: Path, **options: Any) -> pd.DataFrame:
    """Load `folder` and build the feature table in memory (event types found in the data)."""
    tables = load_tables(folder, **options)
    build_feature_table(
        tables.con,
        set(tables.report.present),
        config("features/default.yaml"),
        {"data_end": "2025-01-01"},
        config("label/contractual.yaml"),
        dates=DATES,
    )
    return tables.con.execute("SELECT * FROM feature_table ORDER BY observation_date, customer_id").df()


def row(frame: pd.DataFrame, customer: int, day: date) -> dict[str, Any]:
    found = frame[
        (frame["customer_id"].astype(str) == str(customer)) & (frame["observation_date"] == pd.Timestamp(day))
    ]
    assert len(found) == 1, f"no single row for customer {customer} on {day}"
    return found.iloc[0].to_dict()


def test_a_folder_and_an_output_path_with_a_space_and_a_quote_build_the_feature_table(tmp_path: Path) -> None:
    folder = write_tables(tmp_path / "my data's folder")
    tables = load_tables(folder)
    assert set(tables.report.present) == {"customers", "subscriptions", "events"}
    assert tables.report.tables["events"].rows == len(EVENTS)
    present = set(tables.report.present)
    build = plan_build(
        tables.con,
        present,
        config("features/default.yaml"),
        {"data_end": "2025-01-01"},
        config("label/contractual.yaml"),
        dates=DATES,
    )
    assert set(build.plan.event_types) == {LATE, "login"}  # discovered from the data
    target = tmp_path / "it's the output" / "feature's table.parquet"
    # One date per batch: the part files go to a folder beside the target, which has the quote in its name.
    written = write_feature_table(tables.con, build, present, target, dates_per_batch=1)
    assert written.rows == 3  # customers 1 and 2 on D; only customer 1 still holds a subscription on NEXT
    frame = duckdb.connect().execute("SELECT * FROM read_parquet(?)", [str(target)]).df()
    assert len(frame) == 3 and sorted(frame.columns) == sorted(
        ["customer_id", "observation_date", *build.plan.names, "churned", "label_status"]
    )
    assert not list(target.parent.glob(".*parts*"))  # the parts folder is gone
    c1 = row(frame, 1, D)
    assert c1["days_since_signup"] == (D - date(2023, 1, 10)).days
    assert c1["tenure_days"] == (D - date(2023, 1, 15)).days
    assert c1["active_products"] == 1 and c1["monthly_revenue"] == pytest.approx(30.0)
    assert (c1["events_30d"], c1["events_login_30d"], c1["events_it_s_late_30d"]) == (2, 1, 1)
    assert c1["events_it_s_late_90d"] == 2  # 01-20 and 02-20; the one on 03-10 is after D
    assert c1["churned"] == 0
    c2 = row(frame, 2, D)
    assert c2["churned"] == 1 and c2["segment"] == SEGMENT
    assert row(frame, 1, NEXT)["events_it_s_late_30d"] == 1.5  # 03-10, its quantity


def test_user_columns_named_with_spaces_and_quotes_map_onto_the_contract(tmp_path: Path) -> None:
    plain = features(write_tables(tmp_path / "plain"))
    folder = tmp_path / "mapped 'tables'"
    folder.mkdir()
    # A file under the user's own name, with a space and a quote in it, and header names with both.
    CUSTOMERS.rename(columns={"customer_id": "customer's id", "signup_date": "sign up 'date'"}).to_csv(
        folder / "client's list.csv", index=False
    )
    SUBSCRIPTIONS.rename(columns={"monthly_price": 'price\'s "monthly" fee'}).to_csv(
        folder / "subscriptions.csv", index=False
    )
    EVENTS.assign(**{"it's extra": range(len(EVENTS))}).rename(
        columns={"event_type": "what's happened", "event_time": 'at "when"'}
    ).to_parquet(folder / "events.parquet", index=False)
    mapping = {
        "customers": {
            "from": "client's list",
            "columns": {"customer_id": "customer's id", "signup_date": "sign up 'date'"},
        },
        "subscriptions": {"columns": {"monthly_price": 'price\'s "monthly" fee'}},
        "events": {"columns": {"event_type": "what's happened", "event_time": 'at "when"'}},
    }
    mapped = features(folder, mapping=mapping)
    assert len(plain) == 3
    pd.testing.assert_frame_equal(mapped, plain)
    # The unmapped column keeps its name on the typed view, and the report says so.
    tables = load_tables(folder, mapping=mapping)
    assert tables.con.execute("""SELECT sum("it's extra") FROM events""").fetchall()[0][0] == sum(
        range(len(EVENTS))
    )
    assert "events: extra columns kept but not used by the contract: it's extra" in tables.report.notes


def test_an_event_type_and_a_category_with_a_quote_are_values_not_sql(tmp_path: Path) -> None:
    folder = write_tables(tmp_path / "o'quotes")
    # The same event type also reaches the build through the config and through the event_types lookup.
    codes = EVENTS.assign(event_type=EVENTS["event_type"].map({LATE: "L'1", "login": "LOGIN"}))
    codes.to_csv(folder / "events.csv", index=False)
    pd.DataFrame({"event_type": ["L'1", "LOGIN"], "event_type_name": [LATE, "login"]}).to_csv(
        folder / "event_types.csv", index=False
    )
    tables = load_tables(folder)
    features_cfg = {**config("features/default.yaml"), "event_types": [LATE, "login", "it''s"]}
    build = build_feature_table(
        tables.con,
        set(tables.report.present),
        features_cfg,
        {"data_end": "2025-01-01"},
        config("label/contractual.yaml"),
        dates=DATES,
    )
    late = [f for f in build.plan.features if f.name == "events_it_s_late_30d"]
    assert len(late) == 1 and "'it''s late'" in late[0].sql  # the value, escaped as an SQL string
    assert late[0].description.startswith("it's late events in the last 30 days")
    frame = tables.con.execute("SELECT * FROM feature_table").df()
    c1 = row(frame, 1, D)
    assert (c1["events_it_s_late_30d"], c1["events_it_s_late_90d"], c1["events_login_30d"]) == (1, 2, 1)
    assert (c1["events_it_s_30d"], c1["events_it_s_365d"]) == (0, 0)  # "it''s" matches no event
    assert row(frame, 2, D)["segment"] == SEGMENT
    assert (
        tables.con.execute("SELECT count(*) FROM events WHERE event_type = ?", [LATE]).fetchall()[0][0] == 3
    )
