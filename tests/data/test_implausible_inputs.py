"""Implausible inputs: values of the right type that no business has (an order of 10^18, an order of 1900 in a
2024 export, a subscription billed twice at once, a local time that never happened) are refused with table,
column, rule and rows; open-ended placeholders read as open. The bounds come from the config group `contract`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from omegaconf import OmegaConf
from test_bad_inputs import VALID, replace, write

from features.contract import OPEN_END_DATES, ContractSettings
from features.engine import data_window
from features.errors import ConfigError
from features.validation import DataContractError, ValidatedTables, load_tables

CONF = Path(__file__).resolve().parents[2] / "conf"
CONTRACT_TABLES = {
    "customers", "subscriptions", "orders", "complaints", "events", "referrals", "offers", "campaigns",
}  # fmt: skip


def typed_views(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Contract tables registered as typed views on `con`."""
    return {
        name for (name,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }


def refused(folder: Path, table: str, column: str | None, rule: str, **settings: object) -> str:
    """Load `folder`, which must be refused with a violation of `rule` on table.column; return its text,
    after checking that no typed view is left registered."""
    con = duckdb.connect()
    with pytest.raises(DataContractError) as caught:
        load_tables(folder, con=con, settings=ContractSettings(**settings))  # type: ignore[arg-type]
    matching = [v for v in caught.value.violations if (v.table, v.column, v.rule) == (table, column, rule)]
    assert matching, f"no {table}.{column} {rule} violation in:\n{caught.value}"
    assert not typed_views(con) & CONTRACT_TABLES, "a refused input must leave no typed view"
    where = f"[{table}.{column}]" if column else f"[{table}]"
    assert f"{where} rule '{rule}'" in str(caught.value)
    return matching[0].render()


def accepted(folder: Path, **settings: object) -> ValidatedTables:
    return load_tables(folder, settings=ContractSettings(**settings))  # type: ignore[arg-type]


def corpus(tmp_path: Path, *changes: Callable[[Path], None]) -> Path:
    folder = write(tmp_path / "tables", VALID)
    for change in changes:
        change(folder)
    return folder


# -- amounts ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("table", "old", "value", "column", "line"),
    [
        ("orders", ",19.9", "1000000000000000000", "amount", "line 3"),
        ("subscriptions", ",15.0,", "2e15", "monthly_price", "line 4"),
        ("offers", ",10.0", "99999999999999", "cost", "line 2"),
        ("campaigns", ",10.0", "99999999999999", "cost", "line 3"),
    ],
)
def test_an_amount_no_business_has_is_refused_with_its_row(
    tmp_path: Path, table: str, old: str, value: str, column: str, line: str
) -> None:
    new = "," + value + ("," if old.endswith(",") else "")
    text = refused(corpus(tmp_path, replace(table, old, new)), table, column, "plausible_amount")
    assert "1 of" in text and "amounts above 1,000,000,000,000 (contract.max_amount)" in text
    assert f"{line}: customer_id=" in text and f"{column}='{value}'" in text
    assert "raise contract.max_amount" in text


def test_the_largest_amount_is_a_setting(tmp_path: Path) -> None:
    folder = corpus(tmp_path, replace("orders", ",199.0", ",250000.0"))
    assert accepted(folder).con.execute("SELECT max(amount) FROM orders").fetchall() == [(250000.0,)]
    text = refused(folder, "orders", "amount", "plausible_amount", max_amount=100_000.0)
    assert "amounts above 100,000" in text and "line 2: customer_id='1', amount='250000.0'" in text


# -- dates: absolute bounds and the grid --------------------------------------------------------------------
def test_an_order_of_1900_is_refused_and_would_be_even_with_wider_absolute_bounds(tmp_path: Path) -> None:
    folder = corpus(tmp_path, replace("orders", "2,2023-03-01", "2,1900-03-01"))
    text = refused(folder, "orders", "order_date", "plausible_date")
    assert (
        "dates outside 1920-01-01 .. 2075-12-31" in text
        and "line 3: customer_id='2', order_date='1900-03-01'" in text
    )
    # With the absolute bound moved, the rule relative to the data still keeps it off the observation grid.
    text = refused(folder, "orders", "order_date", "near_latest_date", earliest_date=date(1800, 1, 1))
    assert "more than 25 years before the table's latest order_date (2023-02-01)" in text
    assert "line 3: customer_id='2', order_date='1900-03-01'" in text
    assert "contract.max_years_before_latest" in text


def test_grid_dates_far_before_their_tables_latest_are_refused(tmp_path: Path) -> None:
    folder = corpus(
        tmp_path,
        replace("events", "2023-04-01 08:00:00", "1970-01-01 00:00:00"),
        replace("subscriptions", "2023-03-20,,25.0", "1985-03-20,,25.0"),
    )
    with pytest.raises(DataContractError) as caught:
        load_tables(folder)
    found = {(v.table, v.column, v.rule): v.render() for v in caught.value.violations}
    assert (
        "line 2: customer_id='1', event_time='1970-01-01 00:00:00'"
        in found[("events", "event_time", "near_latest_date")]
    )
    # A subscription held since long before the logs begin is a long-tenured customer, not a stray row.
    assert ("subscriptions", "start_date", "near_latest_date") not in found
    # A table that really spans decades is read once the setting says so.
    assert accepted(folder, max_years_before_latest=60).report.tables["events"].first_date.startswith("1970")


def test_long_tenured_customers_are_not_refused_but_a_century_of_tenure_is(tmp_path: Path) -> None:
    folder = corpus(tmp_path, replace("customers", "2023-02-10", "1961-02-10"))
    assert accepted(folder).report.tables["customers"].first_date == "1961-02-10"  # 62 years of tenure
    replace("customers", "1961-02-10", "1900-01-01")(folder)
    text = refused(folder, "customers", "signup_date", "plausible_date")
    assert "line 3: customer_id='2', signup_date='1900-01-01'" in text


def test_a_date_beyond_the_latest_plausible_one_is_refused(tmp_path: Path) -> None:
    folder = corpus(tmp_path, replace("subscriptions", "2023-01-10,,35.0", "2023-01-10,9000-12-31,35.0"))
    text = refused(folder, "subscriptions", "end_date", "plausible_date")
    assert "line 2: customer_id='1', end_date='9000-12-31'" in text and "contract.open_end_dates" in text
    # An open-ended placeholder outside an end-date column is a wrong date, not an open one.
    folder = corpus(tmp_path, replace("orders", "2,2023-03-01", "2,9999-12-31"))
    assert "order_date='9999-12-31'" in refused(folder, "orders", "order_date", "plausible_date")


def test_a_campaign_assigned_in_1900_is_refused_but_campaign_dates_are_not_grid_dates(tmp_path: Path) -> None:
    """assigned_at has the absolute bounds of every date; it is no grid date, so an old campaign (decades
    before the logs, yet plausible) is read as it is."""
    folder = corpus(tmp_path, replace("campaigns", "2,discount,2023-07-01", "2,discount,1900-07-01"))
    text = refused(folder, "campaigns", "assigned_at", "plausible_date")
    assert "line 3: customer_id='2', assigned_at='1900-07-01'" in text
    replace("campaigns", "1900-07-01", "1975-07-01")(folder)
    assert accepted(folder).report.tables["campaigns"].first_date == "1975-07-01"


# -- open-ended placeholders --------------------------------------------------------------------------------
@pytest.mark.parametrize("placeholder", [d.isoformat() for d in OPEN_END_DATES])
def test_open_ended_end_dates_read_as_open_and_the_report_says_so(tmp_path: Path, placeholder: str) -> None:
    folder = corpus(
        tmp_path,
        replace("subscriptions", "2023-01-10,,35.0", f"2023-01-10,{placeholder},35.0"),
        replace("complaints", "2023-05-02 11:00:00,,", f"2023-05-02 11:00:00,{placeholder} 23:59:59,"),
    )
    tables = accepted(folder)
    con = tables.con
    assert con.execute(
        "SELECT end_date FROM subscriptions WHERE customer_id = '1' AND product = 'broadband_500'"
    ).fetchall() == [(None,)]
    assert con.execute("SELECT count(*) FROM complaints WHERE resolved_at IS NULL").fetchall() == [(1,)]
    report = tables.report.render()
    assert f"subscriptions.end_date: 1 row(s) dated {placeholder} (open-ended placeholders" in report
    assert f"complaints.resolved_at: 1 row(s) dated {placeholder}" in report
    # The data window ends with the real data (a 9999-12-31 end date used to overflow here).
    window = data_window(con, set(tables.report.present))
    assert window.end == date(2023, 8, 13)


def test_open_ended_placeholders_are_a_setting_and_hold_in_parquet(tmp_path: Path) -> None:
    folder = corpus(tmp_path)
    (folder / "subscriptions.csv").unlink()
    pd.DataFrame(
        {
            "customer_id": [1, 2],
            "product": ["broadband_500", "mobile_s"],
            "product_category": ["broadband", "mobile"],
            "start_date": [date(2023, 1, 10), date(2023, 2, 12)],
            "end_date": [date(9999, 12, 31), date(2023, 8, 12)],
            "monthly_price": [35.0, 15.0],
            "contract_term_months": [12, 0],
            "bundle_id": [None, None],
        }
    ).to_parquet(folder / "subscriptions.parquet")
    tables = accepted(folder)
    assert tables.con.execute("SELECT count(*) FROM subscriptions WHERE end_date IS NULL").fetchall() == [
        (1,)
    ]
    text = refused(folder, "subscriptions", "end_date", "plausible_date", open_end_dates=())
    assert "row 1: customer_id='1', end_date='9999-12-31'" in text


# -- overlapping subscriptions ------------------------------------------------------------------------------
REAPPENDED = "3,broadband_100,broadband,2023-03-20,,25.0,24,\n"


def test_a_reappended_subscription_export_is_refused_naming_customer_product_periods_and_lines(
    tmp_path: Path,
) -> None:
    folder = corpus(
        tmp_path,
        replace(
            "subscriptions", REAPPENDED, REAPPENDED * 2 + "1,tv_basic,tv,2023-02-01,2023-03-01,12.5,12,B1\n"
        ),
    )
    text = refused(folder, "subscriptions", "customer_id,product", "no_overlapping_periods")
    assert (
        "2 of 6 rows overlap the period [start_date, end_date) of an earlier row with the same customer_id"
        in text
    )
    assert (
        "customer_id='3', product='broadband_100': line 6 (2023-03-20 .. open) overlaps line 5 (2023-03-20 .. open)"
        in text
    )
    assert (
        "customer_id='1', product='tv_basic': line 7 (2023-02-01 .. 2023-03-01) overlaps line 3 (2023-01-10 .. open)"
        in text
    )
    assert "contract.allow_overlapping_subscriptions=true" in text
    # Several lines of one product at once are real for some businesses: the setting accepts them.
    assert accepted(folder, allow_overlapping_subscriptions=True).report.tables["subscriptions"].rows == 6


def test_a_period_ending_on_the_day_the_next_starts_does_not_overlap_it(tmp_path: Path) -> None:
    renewal = "2,mobile_s,mobile,2023-02-12,2023-08-12,15.0,0,\n"
    folder = corpus(
        tmp_path, replace("subscriptions", renewal, renewal + "2,mobile_s,mobile,2023-08-12,,16.0,0,\n")
    )
    assert accepted(folder).report.tables["subscriptions"].rows == 5
    replace("subscriptions", "2023-08-12,,16.0", "2023-08-11,,16.0")(folder)  # one day held twice
    text = refused(folder, "subscriptions", "customer_id,product", "no_overlapping_periods")
    assert "line 5 (2023-08-11 .. open) overlaps line 4 (2023-02-12 .. 2023-08-12)" in text


# -- time zones ---------------------------------------------------------------------------------------------
def events(tmp_path: Path, *times: str) -> Path:
    folder = tmp_path / "zones"
    folder.mkdir(exist_ok=True)
    (folder / "customers.csv").write_text("customer_id,signup_date\n1,2023-01-01\n")
    (folder / "events.csv").write_text(
        "customer_id,event_time,event_type\n" + "".join(f"1,{t},login\n" for t in times)
    )
    return folder


def test_timestamps_with_iana_zone_names_become_their_exact_utc_instants(tmp_path: Path) -> None:
    folder = events(
        tmp_path,
        "2024-03-31 01:30:00 Europe/Paris",  # winter time, UTC+1, half an hour before the change
        "2024-03-31 03:30:00 Europe/Paris",  # summer time, UTC+2
        "2024-07-01 12:00:00 America/New_York",
        "2024-07-01 12:00:00 europe/paris",  # case does not matter
        "2024-07-01T12:00:00+02:00",  # offsets and names may be mixed in one column
        "2024-07-01 12:00:00 +0530",
        "2024-07-01 12:00:00 UTC",
        "2024-04-07 02:15:00 Australia/Lord_Howe",  # just after a half-hour daylight-saving shift
    )
    got = accepted(folder).con.execute("SELECT event_time FROM events").fetchall()
    assert [t for (t,) in got] == [
        datetime(2024, 3, 31, 0, 30), datetime(2024, 3, 31, 1, 30), datetime(2024, 7, 1, 16, 0),
        datetime(2024, 7, 1, 10, 0), datetime(2024, 7, 1, 10, 0), datetime(2024, 7, 1, 6, 30),
        datetime(2024, 7, 1, 12, 0), datetime(2024, 4, 6, 15, 45),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        ("2024-07-01 12:00:00 CET", "a time zone abbreviation (CET)"),
        ("2024-07-01 12:00:00 BST", "a time zone abbreviation (BST)"),
        ("2024-07-01 12:00:00 EST", "a time zone abbreviation (EST)"),
        (
            "2024-07-01 12:00:00 Europe/Pariss",
            "a time zone name that is not in the IANA time zone database (Europe/Pariss)",
        ),
        (
            "2024-03-31 02:30:00 Europe/Paris",
            "a local time that does not exist or occurs twice in its zone",
        ),  # skipped hour
        (
            "2024-10-27 02:30:00 Europe/Paris",
            "a local time that does not exist or occurs twice in its zone",
        ),  # repeated hour
        (
            "2024-04-07 01:45:00 Australia/Lord_Howe",
            "a local time that does not exist or occurs twice",
        ),  # half an hour
    ],
)
def test_a_zone_that_does_not_give_an_exact_instant_is_refused_with_its_rows(
    tmp_path: Path, value: str, phrase: str
) -> None:
    folder = events(tmp_path, "2024-07-01 12:00:00 Europe/Paris", value)
    text = refused(folder, "events", "event_time", "time_zone")
    assert f"1 of 2 rows have {phrase}" in text and f"line 3: customer_id='1', event_time='{value}'" in text
    assert "offset" in text  # the hint says how to make the instant exact


def test_zone_names_mixed_with_naive_timestamps_are_refused(tmp_path: Path) -> None:
    folder = events(tmp_path, "2024-07-01 12:00:00 Europe/Paris", "2024-07-01 13:00:00")
    text = refused(folder, "events", "event_time", "one_time_zone")
    assert "1 values carry a UTC offset or a time zone name and 1 do not" in text
    assert "line 3: customer_id='1', event_time='2024-07-01 13:00:00'" in text


def test_a_parquet_timestamp_with_a_time_zone_reads_as_its_utc_instant(tmp_path: Path) -> None:
    folder = events(tmp_path, "2024-01-01 00:00:00")
    (folder / "events.csv").unlink()
    local = pd.to_datetime(["2024-03-31 01:30:00", "2024-03-31 03:30:00"]).tz_localize("Europe/Paris")
    pd.DataFrame({"customer_id": ["1", "1"], "event_time": local, "event_type": ["a", "b"]}).to_parquet(
        folder / "events.parquet"
    )
    got = accepted(folder).con.execute("SELECT event_time FROM events ORDER BY event_type").fetchall()
    assert [t for (t,) in got] == [datetime(2024, 3, 31, 0, 30), datetime(2024, 3, 31, 1, 30)]


# -- the settings -------------------------------------------------------------------------------------------
def test_the_contract_config_is_the_settings_defaults() -> None:
    conf = OmegaConf.to_container(OmegaConf.load(CONF / "contract" / "default.yaml"))
    assert ContractSettings.from_config(conf) == ContractSettings()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"max_amount": "lots"}, "contract.max_amount"),
        ({"max_amount": -5}, "contract.max_amount"),
        ({"earliest_date": "01/01/1900"}, "contract.earliest_date"),
        ({"latest_date": "1900-01-01"}, "contract.earliest_date"),  # before the earliest
        ({"open_end_dates": "9999-12-31"}, "contract.open_end_dates"),
        ({"allow_overlapping_subscriptions": "yes"}, "contract.allow_overlapping_subscriptions"),
        ({"max_amonut": 5}, "contract: unknown setting(s) ['max_amonut']"),
    ],
)
def test_a_malformed_contract_setting_is_named(settings: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ContractSettings.from_config(settings)
    assert str(caught.value).startswith(key)


def test_the_configured_bounds_reach_the_checks_through_load_inputs(tmp_path: Path, make_cfg) -> None:
    from features.inputs import load_inputs

    folder = corpus(tmp_path, replace("orders", ",199.0", ",250000.0"))
    cfg = make_cfg("data=tables", f"data.path={folder}", "contract.max_amount=100000")
    with pytest.raises(DataContractError, match=r"\[orders.amount\] rule 'plausible_amount'"):
        load_inputs(cfg)
    cfg = make_cfg("data=tables", f"data.path={folder}", "contract.max_amount=1000000")
    tables, _ = load_inputs(cfg)
    assert tables.report.tables["orders"].rows == 2
