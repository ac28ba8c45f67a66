"""Unit tests of reading and typing input tables: what a valid input becomes."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.contract import CONTRACT
from features.demo.dated import SCHEMAS
from features.engine import data_window
from features.io import discover_tables, fingerprint
from features.validation import DataContractError, example_rows, load_tables

# The Arrow schema the demo generator writes the campaigns table in.
CAMPAIGNS_SCHEMA = SCHEMAS["campaigns"]


def write_csv(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.csv").write_text(text)


def test_csv_values_become_typed_columns(tmp_path: Path) -> None:
    write_csv(
        tmp_path, "customers", "customer_id,signup_date,segment\nA1,2023-01-05,consumer\nA2,2023-02-01,\n"
    )
    write_csv(
        tmp_path,
        "complaints",
        "customer_id,opened_at,resolved_at,category,severity\n"
        "A1,2023-04-01T09:00:00+02:00,2023-04-01T12:00:00Z,billing,low\n",
    )
    write_csv(
        tmp_path, "offers", "customer_id,offered_at,action,accepted,cost\nA2,2023-05-01,discount,yes,5\n"
    )
    write_csv(tmp_path, "events", "customer_id,event_time,event_type\nA1,2023-03-01 10:00:00,login\n")
    tables = load_tables(tmp_path)
    con = tables.con
    assert tables.report.id_type == "VARCHAR"
    opened, resolved = con.execute("SELECT opened_at, resolved_at FROM complaints").fetchall()[0]
    # Values with an offset are converted to UTC.
    assert opened == datetime(2023, 4, 1, 7, 0) and resolved == datetime(2023, 4, 1, 12, 0)
    accepted, cost, offered = con.execute("SELECT accepted, cost, offered_at FROM offers").fetchall()[0]
    assert accepted is True and cost == 5.0 and offered == datetime(2023, 5, 1)
    # Optional columns that are absent exist as typed NULLs.
    assert con.execute("SELECT satisfaction FROM complaints").fetchall() == [(None,)]
    assert con.execute("SELECT count(*) FROM customers WHERE segment IS NULL").fetchall() == [(1,)]
    assert tables.report.absent == ("subscriptions", "orders", "event_types", "referrals", "campaigns")


def test_event_type_codes_read_as_names_from_the_lookup_table(tmp_path: Path) -> None:
    write_csv(tmp_path, "customers", "customer_id,signup_date\n1,2023-01-05\n2,2023-01-06\n")
    write_csv(
        tmp_path,
        "events",
        "customer_id,event_time,event_type\n1,2023-03-01 10:00:00,1\n1,2023-03-02 10:00:00,2\n"
        "2,2023-03-03 10:00:00,9\n",
    )
    write_csv(tmp_path, "event_types", "event_type,event_type_name\n1,login\n2,usage\n")
    tables = load_tables(tmp_path)
    names = tables.con.execute("SELECT event_type FROM events ORDER BY event_time").fetchall()
    assert [n for (n,) in names] == ["login", "usage", "9"]  # a code without a name is kept as it is
    assert (
        "events: 2 event type code(s) named from event_types; 1 code(s) without a name kept"
        in tables.report.render()
    )

    write_csv(tmp_path, "event_types", "event_type,event_type_name\n1,login\n1,session\n")
    with pytest.raises(DataContractError, match=r"\[event_types.event_type\] rule 'unique'"):
        load_tables(tmp_path)


def test_parquet_integer_ids_and_native_types(tmp_path: Path) -> None:
    pd.DataFrame(
        {
            "customer_id": [1, 2],
            "signup_date": pd.to_datetime(["2022-01-01", "2022-06-01"]),
            "vip": [True, False],
        }
    ).to_parquet(tmp_path / "customers.parquet")
    pd.DataFrame(
        {
            "customer_id": [1, 2],
            "order_date": [date(2022, 2, 1), date(2022, 7, 1)],
            "product_category": ["devices", "devices"],
            "amount": [10.0, float("nan")],
        }
    ).to_parquet(tmp_path / "orders.parquet")
    with pytest.raises(DataContractError) as caught:  # NaN is a missing amount, and amount is required
        load_tables(tmp_path)
    assert [(v.table, v.column, v.rule) for v in caught.value.violations] == [
        ("orders", "amount", "not_null")
    ]
    assert "row 2" in str(caught.value)

    pd.read_parquet(tmp_path / "orders.parquet").fillna({"amount": 0.0}).to_parquet(
        tmp_path / "orders.parquet"
    )
    tables = load_tables(tmp_path)
    assert tables.report.id_type == "BIGINT"
    kinds = dict(tables.con.execute("SELECT column_name, column_type FROM (DESCRIBE orders)").fetchall())
    assert kinds["customer_id"] == "BIGINT" and kinds["order_date"] == "DATE" and kinds["amount"] == "DOUBLE"
    # Extra customer attributes are kept.
    assert tables.con.execute("SELECT vip FROM customers ORDER BY customer_id").fetchall() == [
        (True,),
        (False,),
    ]
    assert tables.report.tables["customers"].extra_columns == ("vip",)


def test_folder_of_part_files_reports_the_file_and_line(tmp_path: Path) -> None:
    write_csv(tmp_path, "customers", "customer_id,signup_date\n1,2023-01-01\n2,2023-01-02\n")
    parts = tmp_path / "orders"
    write_csv(parts, "part-0", "customer_id,order_date,product_category,amount\n1,2023-02-01,devices,5\n")
    write_csv(
        parts, "part-1", "customer_id,order_date,product_category,amount\n2,2023-02-01,devices,5\n2,x,y,1\n"
    )
    with pytest.raises(DataContractError) as caught:
        load_tables(tmp_path)
    assert "part-1.csv line 3: customer_id='2', order_date='x'" in str(caught.value)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make data"):
        load_tables(tmp_path / "nowhere")


def test_fingerprint_changes_with_content_only(tmp_path: Path) -> None:
    write_csv(tmp_path, "customers", "customer_id,signup_date\n1,2023-01-01\n")
    files, _ = discover_tables(tmp_path, CONTRACT)
    first, per_table = fingerprint(files)
    assert fingerprint(files)[0] == first and set(per_table) == {"customers"}
    write_csv(tmp_path, "customers", "customer_id,signup_date\n1,2023-01-02\n")
    assert fingerprint(files)[0] != first


def test_a_mapping_reads_tables_and_columns_under_the_users_names(tmp_path: Path) -> None:
    write_csv(
        tmp_path, "accounts", "acct_no,opened_on,segment\n101,2023-01-05,consumer\n102,2023-02-01,sme\n"
    )
    write_csv(
        tmp_path,
        "purchases",
        "acct,day,category,total\n101,2023-03-01,devices,99.5\n102,2023-03-02,add_ons,5\n",
    )
    mapping = {
        "customers": {"from": "accounts", "columns": {"customer_id": "acct_no", "signup_date": "opened_on"}},
        "orders": {
            "from": "purchases",
            "columns": {
                "customer_id": "acct",
                "order_date": "day",
                "product_category": "category",
                "amount": "total",
            },
        },
    }
    tables = load_tables(tmp_path, mapping=mapping)
    assert tables.report.present == ("customers", "orders")
    rows = tables.con.execute(
        "SELECT customer_id, order_date, amount FROM orders ORDER BY customer_id"
    ).fetchall()
    assert rows == [("101", date(2023, 3, 1), 99.5), ("102", date(2023, 3, 2), 5.0)]  # CSV ids read as text

    # A value of the wrong type is reported in the user's names as well as the contract's.
    write_csv(tmp_path, "purchases", "acct,day,category,total\n101,03/01/2023,devices,99.5\n")
    with pytest.raises(DataContractError) as error:
        load_tables(tmp_path, mapping=mapping)
    assert "[orders.order_date] rule 'type'" in str(error.value)
    assert "(your column 'day', data.mapping.orders.columns.order_date)" in str(error.value)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"acounts": {"from": "accounts"}}, r"data.mapping.acounts: not a contract table"),
        ({"customers": {"from": "accounts", "columns": {"cust_id": "acct_no"}}},
         r"data.mapping.customers.columns.cust_id: customers has no contract column 'cust_id'"),
        ({"customers": {"from": "accounts", "columns": {"customer_id": "account"}}},
         r"data.mapping.customers.columns.customer_id: column 'account' is not in .*accounts.csv \(its columns: acct_no, opened_on\)"),
        ({"customers": {"from": "clients"}}, r"data.mapping.customers.from: no clients.parquet, clients.csv or folder clients/"),
        ({"customers": {"form": "accounts"}}, r"data.mapping.customers: unknown key\(s\) \['form'\]"),
        ({"customers": {"from": "../elsewhere/accounts"}}, r"data.mapping.customers.from: '../elsewhere/accounts' is not a file name in data.path"),
        ({"customers": {"from": "/etc/passwd"}}, r"data.mapping.customers.from: '/etc/passwd' is not a file name"),
        ({"customers": {"from": ".."}}, r"data.mapping.customers.from: '..' is not a file name"),
    ],
)  # fmt: skip
def test_a_malformed_mapping_fails_before_any_check_naming_the_key(
    tmp_path: Path, mapping: dict, message: str
) -> None:
    from features.errors import ConfigError

    write_csv(tmp_path, "accounts", "acct_no,opened_on\n101,not a date\n")
    write_csv(tmp_path, "orders", "customer_id,order_date,product_category,amount\n999,2023-03-01,x,-1\n")
    with pytest.raises(ConfigError, match=message):
        load_tables(tmp_path, mapping=mapping)


def test_an_orders_only_export_gets_customers_derived_from_their_first_order(tmp_path: Path) -> None:
    write_csv(
        tmp_path,
        "orders",
        "customer_id,order_date,product_category,amount\n7,2023-03-05,devices,10\n7,2023-01-02,x,5\n"
        "9,2023-02-01,x,1\n",
    )
    with pytest.raises(DataContractError, match="no customers table found"):
        load_tables(tmp_path)  # not asked to derive: customers is required
    tables = load_tables(tmp_path, derive_customers=True)
    rows = tables.con.execute(
        "SELECT customer_id, signup_date FROM customers ORDER BY customer_id"
    ).fetchall()
    assert rows == [("7", date(2023, 1, 2)), ("9", date(2023, 2, 1))]
    assert (
        "customers: no customers table, so 2 customers were derived from their first appearance in orders"
        in (tables.report.render())
    )
    assert "customers" not in tables.files  # the fingerprint covers the files given, not the derived table


def campaigns_folder(folder: Path, rows: dict[str, list]) -> Path:
    """customers 1-3 with orders, and a campaigns Parquet file of `rows` in the generator's schema."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {"customer_id": [1, 2, 3], "signup_date": [date(2023, 1, 1), date(2023, 1, 2), date(2023, 1, 3)]}
    ).to_parquet(folder / "customers.parquet")
    pd.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "order_date": [date(2023, 2, 1), date(2023, 3, 1), date(2023, 6, 30)],
            "product_category": ["devices"] * 3,
            "amount": [5.0, 6.0, 7.0],
        }
    ).to_parquet(folder / "orders.parquet")
    pq.write_table(pa.table(rows, schema=CAMPAIGNS_SCHEMA), folder / "campaigns.parquet")
    return folder


def test_the_generators_campaigns_schema_is_read_with_its_nulls(tmp_path: Path) -> None:
    folder = campaigns_folder(
        tmp_path,
        {
            "campaign_id": ["C2023-03", "C2023-03", "C2023-04"],
            "customer_id": [1, 2, 1],
            "action": ["discount", "discount", "price_lock"],
            "assigned_at": [date(2023, 3, 14), date(2023, 3, 14), date(2023, 4, 2)],
            "treated": [True, False, True],
            "propensity": [0.7, 0.7, None],  # empty: the campaign's treated share
            "cost": [10.0, None, 0.0],  # empty for a control row
        },
    )
    tables = load_tables(folder)
    kinds = dict(tables.con.execute("SELECT column_name, column_type FROM (DESCRIBE campaigns)").fetchall())
    assert kinds == {
        "campaign_id": "VARCHAR", "customer_id": "BIGINT", "action": "VARCHAR", "assigned_at": "DATE",
        "treated": "BOOLEAN", "propensity": "DOUBLE", "cost": "DOUBLE",
    }  # fmt: skip
    assert tables.con.execute(
        "SELECT count(*) FILTER (WHERE propensity IS NULL), count(*) FILTER (WHERE cost IS NULL) FROM campaigns"
    ).fetchall() == [(1, 1)]


def test_a_campaigns_table_of_treated_rows_only_is_valid(tmp_path: Path) -> None:
    """No control rows is not a contract problem: the actions stay assumed (said at training)."""
    folder = campaigns_folder(
        tmp_path,
        {
            "campaign_id": ["C1", "C1"], "customer_id": [1, 2], "action": ["discount", "discount"],
            "assigned_at": [date(2023, 3, 1)] * 2, "treated": [True, True], "propensity": [1.0, 1.0],
            "cost": [10.0, 10.0],
        },
    )  # fmt: skip
    assert load_tables(folder).con.execute("SELECT count(*) FROM campaigns").fetchall() == [(2,)]


def test_campaign_dates_neither_place_the_data_window_nor_count_as_far_from_the_rest(tmp_path: Path) -> None:
    """assigned_at dates a row for point in time, but a campaign is no data: one planned after the data or
    assigned decades before it moves neither the window's start nor its end, and is not refused."""
    rows = {
        "campaign_id": ["C1", "C1", "C2"], "customer_id": [1, 2, 3], "action": ["discount"] * 3,
        "assigned_at": [date(1990, 3, 1), date(2023, 3, 1), date(2031, 1, 1)], "treated": [True, False, True],
        "propensity": [0.5, 0.5, 1.0], "cost": [1.0, None, 1.0],
    }  # fmt: skip
    tables = load_tables(campaigns_folder(tmp_path, rows))
    window = data_window(tables.con, set(tables.report.present))
    assert (window.start, window.end) == (date(2023, 2, 1), date(2023, 7, 1))
    assert "campaigns" not in window.last_dates


def test_example_rows_name_the_input_lines_of_a_validated_table(tmp_path: Path) -> None:
    write_csv(tmp_path, "customers", "customer_id,signup_date\n1,2023-01-01\n2,2023-01-02\n")
    write_csv(tmp_path, "orders", "customer_id,order_date,product_category,amount\n1,2023-02-01,devices,5\n")
    write_csv(
        tmp_path,
        "campaigns",
        "campaign_id,customer_id,action,assigned_at,treated\n"
        "C1,1,discount,2023-03-01,true\nC1,2, upsell ,2023-03-01,false\n",
    )
    tables = load_tables(tmp_path)
    found = example_rows(
        tables.con, tables.files["campaigns"], "trim(action) = 'upsell'", ["customer_id", "action"]
    )
    assert found == ("line 3: customer_id='2', action=' upsell '",)


def test_an_exclusive_lower_bound_without_an_upper_one_is_its_own_rule(tmp_path: Path) -> None:
    """The generic piece behind '(0, 1]': a column bounded only below, the bound itself excluded."""
    from dataclasses import replace

    from features.contract import CUSTOMERS, ORDERS, Contract

    amount = replace(ORDERS.column("amount"), exclusive_min=True)
    orders = replace(ORDERS, columns=tuple(amount if c.name == "amount" else c for c in ORDERS.columns))
    write_csv(tmp_path, "customers", "customer_id,signup_date\n1,2023-01-01\n2,2023-01-02\n")
    write_csv(
        tmp_path,
        "orders",
        "customer_id,order_date,product_category,amount\n1,2023-02-01,a,0\n2,2023-02-01,a,0.01\n",
    )
    with pytest.raises(DataContractError) as caught:
        load_tables(tmp_path, contract=Contract(tables=(CUSTOMERS, orders)))
    [violation] = caught.value.violations
    assert (violation.column, violation.rule) == ("amount", "> 0")
    assert "1 of 2 rows have values of 0 or below" in violation.message
    assert violation.examples == ("line 2: customer_id='1', amount='0'",)
    assert load_tables(tmp_path).report.tables["orders"].rows == 2  # the contract's own bound: >= 0
