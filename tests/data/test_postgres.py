"""PostgreSQL in and out against a real server: exported Parquet keeps values and types; scoring outputs are
published idempotently per scoring date, in one transaction."""

from __future__ import annotations

import datetime as dt
import socket
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.errors import ConfigError
from features.postgres import export_tables, redact, write_scores
from features.publish import RECORD, owned_files, record_files

pytest_plugins = ["postgres_server"]

UTC = dt.UTC
A, B = dt.date(2024, 3, 31), dt.date(2024, 4, 30)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_sql(uri: str, *statements: str) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def fetch(uri: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(uri) as conn:
        return conn.execute(query).fetchall()


@pytest.fixture(scope="module")
def crm(postgres_server: str) -> str:
    """A schema `crm` with contract-like tables (NULLs, time zones, numerics) and a view."""
    run_sql(
        postgres_server,
        "CREATE SCHEMA crm",
        "CREATE TABLE crm.customers (customer_id bigint PRIMARY KEY, signup_date date, segment text)",
        "INSERT INTO crm.customers VALUES (1, '2023-01-05', 'consumer'), (2, '2023-02-01', NULL), "
        "(3, NULL, 'smb ''quoted'', tab\tand é')",
        "CREATE TABLE crm.subscriptions (subscription_id integer, customer_id bigint, product varchar(20), "
        "started_at timestamptz, ended_at timestamptz, monthly_price numeric(10, 2), discount real, "
        "auto_renew boolean, plan_code char(3), booked_at timestamp, seats smallint)",
        "INSERT INTO crm.subscriptions VALUES "
        "(10, 1, 'fibre', '2023-03-01 10:00:00+02', NULL, 29.99, 0.5, true, 'F1', '2023-03-01 09:59:58.123456', 2), "
        "(11, 2, 'mobile', '2023-04-01 23:30:00-05', '2023-12-31 00:00:00+00', NULL, NULL, false, NULL, NULL, NULL), "
        "(12, 3, NULL, NULL, NULL, 1234567.89, -1.25, NULL, 'MOB', '2024-02-29 00:00:00', 32000)",
        "CREATE VIEW crm.open_subscriptions AS SELECT subscription_id, customer_id FROM crm.subscriptions "
        "WHERE ended_at IS NULL",
        "CREATE TABLE crm.events (customer_id bigint, event_time timestamptz, event_type text)",
        "INSERT INTO crm.events SELECT i % 37, timestamptz '2023-01-01 00:00:00+00' + i * interval '1 hour', "
        "CASE WHEN i % 5 = 0 THEN NULL ELSE 'login' END FROM generate_series(1, 1000) AS i",
    )
    return postgres_server


def test_export_keeps_values_types_and_nulls(crm: str, tmp_path: Path) -> None:
    stale = tmp_path / "complaints.parquet"
    stale.write_bytes(b"an export of a table that has since been dropped")
    record_files(tmp_path, [stale.name])  # written by an earlier export

    exported = export_tables(
        crm, tmp_path, schema="crm", tables=["customers", "subscriptions", "open_subscriptions", "complaints"]
    )

    assert exported == {
        "customers": tmp_path / "customers.parquet",
        "subscriptions": tmp_path / "subscriptions.parquet",
        "open_subscriptions": tmp_path / "open_subscriptions.parquet",
    }
    assert not stale.exists()  # requested, absent in the database: the old file must not be read as current
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [RECORD, *(p.name for p in exported.values())]
    )
    assert owned_files(tmp_path) == {p.name for p in exported.values()}

    customers = pq.read_table(exported["customers"])
    assert customers.schema == pa.schema(
        [("customer_id", pa.int64()), ("signup_date", pa.date32()), ("segment", pa.string())]
    )
    assert customers.to_pylist() == [
        {"customer_id": 1, "signup_date": dt.date(2023, 1, 5), "segment": "consumer"},
        {"customer_id": 2, "signup_date": dt.date(2023, 2, 1), "segment": None},
        {"customer_id": 3, "signup_date": None, "segment": "smb 'quoted', tab\tand é"},
    ]

    subscriptions = pq.read_table(exported["subscriptions"])
    assert subscriptions.schema == pa.schema(
        [
            ("subscription_id", pa.int64()),
            ("customer_id", pa.int64()),
            ("product", pa.string()),
            ("started_at", pa.timestamp("us", tz="UTC")),
            ("ended_at", pa.timestamp("us", tz="UTC")),
            ("monthly_price", pa.float64()),
            ("discount", pa.float64()),
            ("auto_renew", pa.bool_()),
            ("plan_code", pa.string()),
            ("booked_at", pa.timestamp("us")),
            ("seats", pa.int64()),
        ]
    )
    rows = sorted(subscriptions.to_pylist(), key=lambda r: r["subscription_id"])
    assert rows[0] == {
        "subscription_id": 10,
        "customer_id": 1,
        "product": "fibre",
        "started_at": dt.datetime(2023, 3, 1, 8, 0, tzinfo=UTC),  # +02 converted to UTC
        "ended_at": None,
        "monthly_price": 29.99,
        "discount": 0.5,
        "auto_renew": True,
        "plan_code": "F1 ",  # char(3) keeps PostgreSQL's blank padding
        "booked_at": dt.datetime(2023, 3, 1, 9, 59, 58, 123456),
        "seats": 2,
    }
    assert rows[0]["started_at"].utcoffset() == dt.timedelta(0)
    assert rows[1] == {
        "subscription_id": 11,
        "customer_id": 2,
        "product": "mobile",
        "started_at": dt.datetime(2023, 4, 2, 4, 30, tzinfo=UTC),  # -05 crosses midnight in UTC
        "ended_at": dt.datetime(2023, 12, 31, tzinfo=UTC),
        "monthly_price": None,
        "discount": None,
        "auto_renew": False,
        "plan_code": None,
        "booked_at": None,
        "seats": None,
    }
    assert rows[2]["product"] is None and rows[2]["started_at"] is None and rows[2]["auto_renew"] is None
    assert rows[2]["monthly_price"] == 1234567.89 and rows[2]["discount"] == -1.25
    assert rows[2]["booked_at"] == dt.datetime(2024, 2, 29) and rows[2]["seats"] == 32000

    view = pq.read_table(exported["open_subscriptions"])
    assert sorted(view.column("subscription_id").to_pylist()) == [10, 12]


def test_export_in_chunks_equals_export_at_once(crm: str, tmp_path: Path) -> None:
    at_once = export_tables(crm, tmp_path / "whole", schema="crm", tables=["events", "customers"])
    chunked = export_tables(
        crm, tmp_path / "chunked", schema="crm", tables=["events", "customers"], chunk_rows=7
    )

    for table in ("events", "customers"):
        assert pq.read_table(chunked[table]).equals(pq.read_table(at_once[table]))
    events = pq.ParquetFile(chunked["events"])
    assert events.metadata.num_rows == 1000
    assert events.metadata.num_row_groups == -(-1000 // 7)  # written chunk by chunk, never all at once
    assert pq.ParquetFile(at_once["events"]).metadata.num_row_groups == 1
    assert pq.read_table(at_once["events"]).column("event_type").null_count == 200


def test_export_never_replaces_or_removes_a_file_it_did_not_write(crm: str, tmp_path: Path) -> None:
    theirs = tmp_path / "customers.parquet"
    theirs.write_bytes(b"the user's own file")
    dropped = tmp_path / "complaints.parquet"
    dropped.write_bytes(b"also theirs")
    with pytest.raises(
        ConfigError,
        match=r"data.path: .* holds complaints.parquet, customers.parquet, which churnwise did not write",
    ):
        export_tables(crm, tmp_path, schema="crm", tables=["customers", "complaints"])
    assert theirs.read_bytes() == b"the user's own file" and dropped.read_bytes() == b"also theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["complaints.parquet", "customers.parquet"]


def test_export_of_an_empty_table_has_its_columns(crm: str, tmp_path: Path) -> None:
    run_sql(crm, "CREATE TABLE crm.offers (customer_id bigint, offered_at date, cost numeric)")

    exported = export_tables(crm, tmp_path, schema="crm", tables=["offers"])

    offers = pq.read_table(exported["offers"])
    assert offers.num_rows == 0
    assert offers.schema == pa.schema(
        [("customer_id", pa.int64()), ("offered_at", pa.date32()), ("cost", pa.float64())]
    )


def test_a_campaigns_table_exports_in_the_schema_the_demo_writes(crm: str, tmp_path: Path) -> None:
    """campaigns is a contract table, so data=postgres copies it; its Parquet is the generator's schema."""
    from campaign_helpers import CAMPAIGNS_SCHEMA

    run_sql(
        crm,
        "CREATE TABLE crm.campaigns (campaign_id text, customer_id bigint, action text, assigned_at date, "
        "treated boolean, propensity double precision, cost numeric(10, 2))",
        "INSERT INTO crm.campaigns VALUES ('C2024-03', 1, 'discount', '2024-03-04', true, 0.7, 12.5), "
        "('C2024-03', 2, 'discount', '2024-03-04', false, NULL, NULL)",
    )
    exported = export_tables(crm, tmp_path, schema="crm", tables=["campaigns"])
    table = pq.read_table(exported["campaigns"])
    assert table.schema.equals(CAMPAIGNS_SCHEMA)
    assert table.column("propensity").to_pylist() == [0.7, None] and table.column("cost").null_count == 1


def test_export_of_an_unknown_schema_names_it(crm: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="schema 'warehouse' does not exist"):
        export_tables(crm, tmp_path, schema="warehouse", tables=["customers"])


def test_unreachable_server_names_the_uri_without_its_password(tmp_path: Path) -> None:
    uri = f"postgresql://postgres:s3cret-pw@127.0.0.1:{closed_port()}/churnwise"
    shown = f"postgresql://postgres:***@127.0.0.1:{uri.rsplit(':', 1)[1].split('/')[0]}/churnwise"
    assert redact(uri) == shown

    with pytest.raises(ConfigError) as export_error:
        export_tables(uri, tmp_path, tables=["customers"])
    with pytest.raises(ConfigError) as write_error:
        write_scores(uri, "churn_scores", scores_file(tmp_path, A, [(1, 0.5, None)]), A)

    for error in (export_error.value, write_error.value):
        message = str(error)
        assert shown in message
        assert "s3cret-pw" not in message
        assert "data.uri" in message and "CHURNWISE_PG_URI" in message and "conf/local" in message


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (
            "postgresql://u:p%40ss@db.example:5432/x?sslmode=require",
            "postgresql://u:***@db.example:5432/x?sslmode=require",
        ),
        (
            "postgresql://u@db/x?password=pw&sslmode=require",
            "postgresql://u@db/x?password=***&sslmode=require",
        ),
        ("postgresql://db/x", "postgresql://db/x"),
        ("host=db user=u password='se cret' dbname=x", "host=db user=u password=*** dbname=x"),
        ("host=db password=pw dbname=x", "host=db password=*** dbname=x"),
        ("host=db password='unterminated secret", "host=db password=***"),
        ("postgresql://u:p@ss@db/x", "postgresql://u:***@db/x"),
    ],
)
def test_redact_hides_every_form_of_password(uri: str, shown: str) -> None:
    assert redact(uri) == shown


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://u:s3cret-pw@[::1/x",
        "host=db password='s3cret-pw",
        "postgresql://u:s3cret-pw@db/x?nope=1",
    ],
)
def test_malformed_uri_is_reported_without_its_password(uri: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot connect to PostgreSQL") as error:
        export_tables(uri, tmp_path, tables=["customers"])
    assert "s3cret-pw" not in str(error.value) and "***" in str(error.value)


def scores_file(
    folder: Path, as_of: dt.date, rows: list[tuple[int | None, float, str | None]], name: str = "scores"
) -> Path:
    """A scoring output like `pipeline.score` writes: ids, date, probability, strings, booleans, bigint."""
    path = folder / f"{name}-{as_of}-{len(rows)}-{rows[0][1]}.parquet"
    table = pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.int64()),
            "as_of": pa.array([as_of] * len(rows), pa.date32()),
            "p_churn": pa.array([r[1] for r in rows], pa.float64()),
            "ladder_rung": pa.array(["high" if r[1] > 0.5 else "low" for r in rows], pa.string()),
            "reason_1": pa.array([r[2] for r in rows], pa.string()),
            "selected": pa.array([r[1] > 0.5 for r in rows], pa.bool_()),
            "priority": pa.array(range(1, len(rows) + 1), pa.int64()),
        }
    )
    pq.write_table(table, path)
    return path


def published(uri: str, table: str) -> list[tuple[Any, ...]]:
    return fetch(uri, f"SELECT * FROM {table} ORDER BY as_of, customer_id")


def test_write_scores_replaces_one_date_and_keeps_the_others(postgres_server: str, tmp_path: Path) -> None:
    uri = postgres_server
    run_sql(uri, "CREATE SCHEMA scoring")
    table = "scoring.churn_scores"

    first = scores_file(tmp_path, A, [(1, 0.9, "tenure"), (2, 0.1, None), (3, 0.6, "complaints")])
    assert write_scores(uri, table, first, A) == 3
    assert published(uri, table) == [
        (1, A, 0.9, "high", "tenure", True, 1),
        (2, A, 0.1, "low", None, False, 2),
        (3, A, 0.6, "high", "complaints", True, 3),
    ]
    columns = fetch(
        uri,
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'scoring' AND table_name = 'churn_scores' ORDER BY ordinal_position",
    )
    assert columns == [
        ("customer_id", "bigint", "NO"),
        ("as_of", "date", "NO"),
        ("p_churn", "double precision", "YES"),
        ("ladder_rung", "text", "YES"),
        ("reason_1", "text", "YES"),
        ("selected", "boolean", "YES"),
        ("priority", "bigint", "YES"),
    ]
    key = fetch(
        uri,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'scoring.churn_scores'::regclass AND i.indisprimary",
    )
    assert sorted(k for (k,) in key) == ["as_of", "customer_id"]

    rerun = scores_file(tmp_path, A, [(1, 0.2, None), (3, 0.7, "price")])
    assert write_scores(uri, table, rerun, A) == 2
    assert write_scores(uri, table, rerun, A) == 2  # the same rerun again: still no duplicates
    assert published(uri, table) == [
        (1, A, 0.2, "low", None, False, 1),
        (3, A, 0.7, "high", "price", True, 2),
    ]

    later = scores_file(tmp_path, B, [(1, 0.3, None), (4, 0.8, "usage")])
    assert write_scores(uri, table, later, B) == 2
    assert published(uri, table) == [
        (1, A, 0.2, "low", None, False, 1),
        (3, A, 0.7, "high", "price", True, 2),
        (1, B, 0.3, "low", None, False, 1),
        (4, B, 0.8, "high", "usage", True, 2),
    ]


def test_write_scores_failing_midway_leaves_the_table_unchanged(postgres_server: str, tmp_path: Path) -> None:
    uri = postgres_server
    table = "failing_scores"
    write_scores(uri, table, scores_file(tmp_path, A, [(1, 0.9, "tenure"), (2, 0.1, None)]), A)
    write_scores(uri, table, scores_file(tmp_path, B, [(1, 0.4, None)]), B)
    before = published(uri, table)

    # The delete of A's rows has run and some rows are copied when the NULL id violates the key.
    broken = scores_file(tmp_path, A, [(5, 0.5, None), (None, 0.6, "x"), (6, 0.7, None)], name="broken")
    with pytest.raises(psycopg.errors.NotNullViolation) as error:
        write_scores(uri, table, broken, A)

    assert any("rolled back" in note for note in error.value.__notes__)
    assert published(uri, table) == before
    assert fetch(uri, f"SELECT count(*) FROM {table}") == [(3,)]


def test_write_scores_with_string_ids(postgres_server: str, tmp_path: Path) -> None:
    path = tmp_path / "text_ids.parquet"
    pq.write_table(
        pa.table(
            {
                "customer_id": pa.array(["C-001", "C-002"]),
                "as_of": pa.array([A, A], pa.date32()),
                "p_churn": [0.25, 0.75],
                "clv": pa.array([Decimal("12.50"), None], pa.decimal128(10, 2)),
            }
        ),
        path,
    )

    assert write_scores(postgres_server, "text_id_scores", path, A) == 2
    assert fetch(postgres_server, "SELECT * FROM text_id_scores ORDER BY customer_id") == [
        ("C-001", A, 0.25, Decimal("12.50")),
        ("C-002", A, 0.75, None),
    ]


def test_write_scores_into_a_table_lacking_a_column_names_it(postgres_server: str, tmp_path: Path) -> None:
    uri = postgres_server
    run_sql(
        uri,
        "CREATE TABLE thin_scores (customer_id bigint, as_of date, p_churn double precision, "
        "ladder_rung text, selected boolean, priority bigint, PRIMARY KEY (customer_id, as_of))",
        "INSERT INTO thin_scores VALUES (9, '2024-03-31', 0.5, 'low', false, 1)",
    )

    with pytest.raises(ConfigError, match=r"thin_scores .*has no column reason_1"):
        write_scores(uri, "thin_scores", scores_file(tmp_path, A, [(1, 0.9, "tenure")]), A)

    assert published(uri, "thin_scores") == [(9, A, 0.5, "low", False, 1)]  # neither altered nor emptied


def test_write_scores_refuses_bad_names_and_other_dates(postgres_server: str, tmp_path: Path) -> None:
    scores = scores_file(tmp_path, A, [(1, 0.9, None)])
    with pytest.raises(ConfigError, match="not a plain identifier"):
        write_scores(postgres_server, "scores; DROP TABLE thin_scores", scores, A)
    with pytest.raises(ConfigError, match="'table' or 'schema.table'"):
        write_scores(postgres_server, "db.scoring.scores", scores, A)
    with pytest.raises(ConfigError, match=f"as_of values other than {B}: {A}"):
        write_scores(postgres_server, "other_date_scores", scores, B)
    assert fetch(postgres_server, "SELECT to_regclass('other_date_scores')") == [(None,)]
