"""Reading input files that are damaged or not what the config says (a corrupt Parquet page, part files of
different schemas, a Latin-1 CSV, a semicolon CSV, a repeated header, a file where a folder belongs): each is
refused with the table, file and rows, or a ConfigError naming the key, never a traceback. Paths with a quote and
columns with spaces or quotes in their names read as any other."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.errors import ConfigError
from features.snapshot import RAW, SnapshotSpec, read_snapshot
from features.validation import DataContractError, ValidatedTables, load_tables

CUSTOMERS = "customer_id,signup_date,region\n1,2023-01-05,north\n2,2023-02-10,south\n3,2023-03-15,east\n"
ORDERS = "customer_id,order_date,product_category,amount\n1,2023-02-01,devices,199.0\n2,2023-03-01,accessories,19.9\n"


def tables(folder: Path, **files: str | bytes) -> Path:
    """A folder with customers.csv and orders.csv, `files` (name -> text or bytes) written over them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in {"customers.csv": CUSTOMERS, "orders.csv": ORDERS, **files}.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return folder


def refused(folder: Path, table: str, column: str | None, rule: str, **options: str) -> str:
    """Load `folder`, which must be refused with a violation of `rule` on table.column (and no typed view
    left registered); return the violation's text."""
    con = duckdb.connect()
    with pytest.raises(DataContractError) as caught:
        load_tables(folder, con=con, **options)  # type: ignore[arg-type]
    matching = [v for v in caught.value.violations if (v.table, v.column, v.rule) == (table, column, rule)]
    assert matching, f"no {table}.{column} {rule} violation in:\n{caught.value}"
    views = {n for (n,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert not views & {"customers", "orders", "subscriptions", "events"}
    return matching[0].render()


def orders_frame(n: int = 3000) -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array([1 + i % 3 for i in range(n)], pa.int64()),
            "order_date": pa.array([f"2023-02-{1 + i % 28:02d}" for i in range(n)]),
            "product_category": pa.array(["devices"] * n),
            "amount": pa.array(np.arange(n, dtype=float)),
        }
    )


def damage_column_chunk(path: Path, column: int) -> None:
    """Overwrite bytes in the middle of a column chunk of a real Parquet file; its footer stays intact."""
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(column)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    middle = start + chunk.total_compressed_size // 2
    data = bytearray(path.read_bytes())
    data[middle : middle + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))


# -- Parquet ------------------------------------------------------------------------------------------------
def test_a_damaged_parquet_page_is_a_readable_violation_naming_the_file(tmp_path: Path) -> None:
    folder = tables(tmp_path / "t")
    (folder / "orders.csv").unlink()
    pq.write_table(orders_frame(), folder / "orders.parquet")
    damage_column_chunk(folder / "orders.parquet", 0)
    assert pq.ParquetFile(folder / "orders.parquet").metadata.num_rows == 3000  # the footer still reads
    text = refused(folder, "orders", None, "readable")
    assert "the file cannot be read as PARQUET" in text and f"in {folder / 'orders.parquet'}" in text
    assert "damaged" in text


def test_a_damaged_part_file_is_named_among_the_parts(tmp_path: Path) -> None:
    folder = tables(tmp_path / "t")
    (folder / "orders.csv").unlink()
    (folder / "orders").mkdir()
    pq.write_table(orders_frame(10), folder / "orders" / "part-0.parquet")
    pq.write_table(orders_frame(), folder / "orders" / "part-1.parquet")
    damage_column_chunk(folder / "orders" / "part-1.parquet", 0)
    text = refused(folder, "orders", None, "readable")
    assert "part-1.parquet cannot be read as PARQUET" in text and "orders/part-1.parquet" in text


def test_a_damaged_page_of_a_column_no_rule_reads_is_found_during_validation(tmp_path: Path) -> None:
    folder = tables(tmp_path / "t")
    (folder / "orders.csv").unlink()
    frame = orders_frame()
    frame = frame.append_column("note", pa.array([f"note {i}" for i in range(frame.num_rows)]))
    pq.write_table(frame, folder / "orders.parquet")
    damage_column_chunk(folder / "orders.parquet", 4)
    assert "cannot be read as PARQUET" in refused(folder, "orders", None, "readable")


def test_part_files_with_different_schemas_are_refused_saying_which_and_how(tmp_path: Path) -> None:
    folder = tables(tmp_path / "t")
    (folder / "orders.csv").unlink()
    parts = folder / "orders"
    parts.mkdir()
    base = {
        "customer_id": [1],
        "order_date": ["2023-02-01"],
        "product_category": ["devices"],
        "amount": [5.0],
    }
    pd.DataFrame(base).to_parquet(parts / "part-0.parquet")
    pd.DataFrame({**base, "customer_id": np.array([2], dtype="int32"), "amount": [7]}).to_parquet(
        parts / "part-1.parquet"
    )  # other integer widths: the same schema
    assert load_tables(folder).report.tables["orders"].rows == 2

    pd.DataFrame({**base, "coupon": ["X"]}).to_parquet(parts / "part-2.parquet")
    renamed = {k: v for k, v in base.items() if k != "amount"} | {"total": [1.0]}
    pd.DataFrame(renamed).to_parquet(parts / "part-3.parquet")
    pd.DataFrame({**base, "amount": ["5.0"]}).to_parquet(parts / "part-4.parquet")
    text = refused(folder, "orders", None, "same_schema")
    assert "3 of 5 part files do not have the columns of part-0.parquet" in text
    assert "part-2.parquet: has 'coupon', which part-0.parquet has not" in text
    assert "part-3.parquet: has 'total' instead of 'amount' (renamed?)" in text
    assert "part-4.parquet: 'amount' is VARCHAR where part-0.parquet has DOUBLE" in text


def test_csv_part_files_with_different_headers_are_refused(tmp_path: Path) -> None:
    folder = tables(
        tmp_path / "t",
        **{"orders/a.csv": ORDERS, "orders/b.csv": ORDERS.replace(",amount", ",total")},
    )
    (folder / "orders.csv").unlink()
    assert "b.csv: has 'total' instead of 'amount'" in refused(folder, "orders", None, "same_schema")


# -- CSV text -----------------------------------------------------------------------------------------------
WINDOWS_1252 = CUSTOMERS.replace("north", "Zürich €").encode("cp1252")


def test_a_windows_1252_csv_is_refused_naming_file_and_line_and_read_with_the_setting(tmp_path: Path) -> None:
    folder = tables(tmp_path / "t", **{"customers.csv": WINDOWS_1252})
    text = refused(folder, "customers", None, "encoding")
    assert "the file is not valid utf-8 text: line 2 holds the byte(s) 0xfc" in text
    assert f"in {folder / 'customers.csv'}" in text and "line 2: ...1,2023-01-05,Z\\xfcrich" in text
    assert "set data.csv_encoding=windows-1252" in text and "delimiter" not in text

    read: ValidatedTables = load_tables(folder, csv_encoding="windows-1252")
    regions = read.con.execute("SELECT region FROM customers ORDER BY customer_id").fetchall()
    assert regions == [("Zürich €",), ("south",), ("east",)]


def test_a_latin_1_header_line_is_refused_at_line_1(tmp_path: Path) -> None:
    folder = tables(
        tmp_path / "t", **{"customers.csv": CUSTOMERS.replace("region", "région").encode("latin-1")}
    )
    text = refused(folder, "customers", None, "encoding")
    assert "line 1 holds the byte(s) 0xe9" in text
    read = load_tables(folder, csv_encoding="latin-1")
    assert "région" in read.report.tables["customers"].columns


def test_an_unknown_encoding_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^data\.csv_encoding: unknown encoding 'latin-9000'"):
        load_tables(tables(tmp_path / "t"), csv_encoding="latin-9000")


@pytest.mark.parametrize(
    ("delimiter", "suggested"),
    [(";", "data.csv_delimiter=';'"), ("\t", "data.csv_delimiter='\\t'"), ("|", "data.csv_delimiter='|'")],
)
def test_a_csv_with_another_delimiter_suggests_the_setting(
    tmp_path: Path, delimiter: str, suggested: str
) -> None:
    folder = tables(tmp_path / "t", **{"orders.csv": ORDERS.replace(",", delimiter)})
    text = refused(folder, "orders", None, "csv_delimiter")
    assert "the header line does not split on the delimiter ','" in text and "into 4 columns" in text
    assert suggested in text and f"in {folder / 'orders.csv'}" in text and "line 1 reads" in text
    read = load_tables(
        tables(
            tmp_path / "all",
            **{
                n: t.replace(",", delimiter)
                for n, t in {"customers.csv": CUSTOMERS, "orders.csv": ORDERS}.items()
            },
        ),
        csv_delimiter=delimiter,
    )
    assert read.report.tables["orders"].rows == 2


@pytest.mark.parametrize("second", ["customer_id", "Customer_ID"])
def test_a_column_named_twice_in_the_header_is_refused(tmp_path: Path, second: str) -> None:
    folder = tables(tmp_path / "t", **{"customers.csv": CUSTOMERS.replace(",region\n", f",{second}\n")})
    text = refused(folder, "customers", "customer_id", "unique_header")
    assert f"names the column 'customer_id' 2 times ('customer_id' and '{second}', columns 1 and 3)" in text
    assert (
        f"in {folder / 'customers.csv'}" in text
        and f"line 1 reads 'customer_id,signup_date,{second}'" in text
    )


def test_data_path_pointing_at_a_file_says_a_folder_is_expected(tmp_path: Path) -> None:
    folder = tables(tmp_path / "t")
    with pytest.raises(ConfigError) as caught:
        load_tables(folder / "orders.csv")
    assert str(caught.value).startswith(f"data.path: {folder / 'orders.csv'} is a file")
    assert "customers.csv or customers.parquet" in str(caught.value) and "data=snapshot" in str(caught.value)


# -- quoting ------------------------------------------------------------------------------------------------
def test_a_path_with_a_quote_and_columns_with_spaces_and_quotes_read_as_any_other(tmp_path: Path) -> None:
    folder = tables(
        tmp_path / "O'Brien's exports",
        **{
            "customers.csv": 'customer_id,signup_date,Account Manager,"a""b"\n1,2023-01-05,Ann,x\n2,2023-02-10,Bob,y\n'
        },
    )
    (folder / "orders.csv").unlink()
    pd.DataFrame(
        {"customer_id": [1, 2], "order_date": ["2023-02-01", "2023-03-01"], "product_category": ["d", "d"],
         "amount": [1.0, 2.0], "Sales Rep": ["Cy", "Di"], 'it"s': [1, 2]}
    ).to_parquet(folder / "orders.parquet")  # fmt: skip
    read = load_tables(folder)
    con = read.con
    assert con.execute('SELECT "Account Manager", "a""b" FROM customers ORDER BY customer_id').fetchall() == [
        ("Ann", "x"),
        ("Bob", "y"),
    ]
    assert con.execute('SELECT "Sales Rep", "it""s" FROM orders ORDER BY customer_id').fetchall() == [
        ("Cy", 1),
        ("Di", 2),
    ]
    # A problem in such a folder is reported with its rows, as anywhere else.
    (folder / "customers.csv").write_text(
        "customer_id,signup_date,Account Manager\n1,2023-01-05,Ann\n2,x,Bob\n"
    )
    assert "line 3: customer_id='2', signup_date='x'" in refused(folder, "customers", "signup_date", "type")


# -- the flat snapshot table --------------------------------------------------------------------------------
SNAPSHOT = "id,plan,left\nA1,basic,Yes\nA2,pro,No\nA3,basic,No\n"


def snapshot_spec(path: Path, **data: object) -> SnapshotSpec:
    return SnapshotSpec.from_config(
        {
            "path": str(path),
            "id_column": "id",
            "label": {"column": "left", "positive": "Yes", "negative": "No"},
            **data,
        }
    )


@pytest.mark.parametrize(
    ("content", "options", "key", "phrases"),
    [
        (SNAPSHOT.replace(",", ";"), {}, "data.csv_delimiter",
         ["splits on ';' into 3 columns", "line 1 reads 'id;plan;left'", "Set data.csv_delimiter=';'"]),
        (SNAPSHOT.replace("A2,pro", "A2,prö").encode("cp1252"), {}, "data.csv_encoding",
         ["not valid utf-8 text: line 3 holds the byte(s) 0xf6", "line 3: ...A2,pr\\xf6,No", "data.csv_encoding=windows-1252"]),
        (SNAPSHOT.replace("left\n", "ID\n"), {}, "data.path",
         ["names the column 'id' 2 times ('id' and 'ID', columns 1 and 3)", "line 1 reads 'id,plan,ID'"]),
        (SNAPSHOT.encode("utf-8"), {"csv_encoding": "utf-16"}, "data.csv_encoding", ["not valid utf-16 text"]),
    ],
)  # fmt: skip
def test_a_snapshot_csv_that_cannot_be_read_as_configured_names_the_key_and_line(
    tmp_path: Path, content: str | bytes, options: dict[str, str], key: str, phrases: list[str]
) -> None:
    path = tmp_path / "churn.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    con = duckdb.connect()
    with pytest.raises(ConfigError) as caught:
        read_snapshot(con, snapshot_spec(path, **options))
    message = str(caught.value)
    assert message.startswith(f"{key}: {path}: ")
    for phrase in phrases:
        assert phrase in message, message
    assert not con.execute(f"SELECT * FROM duckdb_tables() WHERE table_name = '{RAW}'").fetchall()


def test_a_windows_1252_snapshot_reads_with_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "O'Neil churn.csv"
    path.write_bytes(SNAPSHOT.replace("A2,pro", "A2,prö €").encode("cp1252"))
    con = duckdb.connect()
    table = read_snapshot(con, snapshot_spec(path, csv_encoding="windows-1252"))
    assert table.rows == 3
    assert con.execute(f"SELECT plan FROM {RAW} ORDER BY __row").fetchall() == [
        ("basic",),
        ("prö €",),
        ("basic",),
    ]
    with pytest.raises(ConfigError, match=r"^data\.csv_encoding: unknown encoding"):
        snapshot_spec(path, csv_encoding="martian")
