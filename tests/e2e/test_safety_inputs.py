"""Bad tables a user feeds to `make train` (a copy of the demo data with one realistic fault each): the run
stops with exit code 2 and a message naming the table, column, rule and rows, no traceback, and nothing is
written: no feature table, no MLflow run, no model version (the project's state is compared before and after).
Implausible values, time zones and unreadable files; the unit tests beside the contract cover each rule in
detail (tests/data/test_implausible_inputs.py, tests/unit/test_reading_inputs.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from safety_helpers import changes, project_state, run_stage

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class InputCase:
    """A fault put into a copy of the demo tables, and what the refusal must say."""

    id: str
    fault: Callable[[Path], None]
    expect: tuple[str, ...]


def edit(table: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    """Rewrite one Parquet table of the copy through `change`."""

    def apply(folder: Path) -> None:
        path = folder / f"{table}.parquet"
        change(pd.read_parquet(path)).to_parquet(path, index=False)

    return apply


def as_csv(table: str, text: Callable[[str], str], encoding: str = "utf-8") -> Callable[[Path], None]:
    """Replace one table by a CSV file, its text passed through `text` and saved in `encoding`."""

    def apply(folder: Path) -> None:
        path = folder / f"{table}.parquet"
        csv = pd.read_parquet(path).to_csv(index=False)
        path.unlink()
        (folder / f"{table}.csv").write_bytes(text(csv).encode(encoding))

    return apply


def first_row(column: str, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame[column] = frame[column].astype(object)
        frame.loc[frame.index[0], column] = value
        return frame

    return change


def damaged_page(folder: Path) -> None:
    """Overwrite bytes in the middle of a column chunk of orders.parquet (the footer stays readable)."""
    path = folder / "orders.parquet"
    con = duckdb.connect()
    offset, size = con.execute(
        "SELECT data_page_offset, total_compressed_size FROM parquet_metadata(?) "
        "WHERE path_in_schema = 'amount' ORDER BY row_group_id LIMIT 1",
        [str(path)],
    ).fetchall()[0]
    data = bytearray(path.read_bytes())
    data[offset + 16 : offset + min(size, 400)] = b"\xff" * (min(size, 400) - 16)
    path.write_bytes(bytes(data))


def parts_of_different_shapes(folder: Path) -> None:
    """events as a folder of part files, one of them with a column renamed."""
    events = pd.read_parquet(folder / "events.parquet")
    (folder / "events.parquet").unlink()
    parts = folder / "events"
    parts.mkdir()
    half = len(events) // 2
    events.iloc[:half].to_parquet(parts / "part-0.parquet", index=False)
    events.iloc[half:].rename(columns={"event_type": "type"}).to_parquet(
        parts / "part-1.parquet", index=False
    )


def zone_names(abbreviation: bool) -> Callable[[Path], None]:
    def text(csv: str) -> str:
        lines = csv.splitlines()
        header, first = lines[0].split(","), lines[1].split(",")
        at = header.index("opened_at")
        first[at] = first[at][:19] + (" CET" if abbreviation else " Mars/Olympus_Mons")
        return "\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n"

    return as_csv("complaints", text)


def latin1(csv: str) -> str:
    lines = csv.splitlines()
    return "\n".join([lines[0], lines[1].replace("consumer", "clientèle"), *lines[2:]]) + "\n"


INPUT_CASES = [
    InputCase("amount_of_a_trillion_and_more", edit("orders", first_row("amount", 1e18)),
              ("[orders.amount] rule 'plausible_amount'", "contract.max_amount")),
    InputCase("subscriptions_exported_twice", edit("subscriptions", lambda f: pd.concat([f, f.head(289)])),
              ("[subscriptions", "no_overlapping_periods", "contract.allow_overlapping_subscriptions")),
    InputCase("order_dated_1900", edit("orders", first_row("order_date", pd.Timestamp("1900-05-01").date())),
              ("[orders.order_date]", "1900-05-01")),
    InputCase("event_decades_before_the_others", edit("events", first_row("event_time", pd.Timestamp("1975-01-01"))),
              ("[events.event_time] rule 'near_latest_date'", "contract.max_years_before_latest")),
    InputCase("end_date_in_the_far_future", edit("subscriptions", first_row("end_date", pd.Timestamp("5000-01-01").date())),
              ("[subscriptions.end_date] rule 'plausible_date'", "5000-01-01")),
    InputCase("time_zone_abbreviation", zone_names(abbreviation=True),
              ("[complaints.opened_at] rule 'time_zone'", "CET")),
    InputCase("unknown_time_zone_name", zone_names(abbreviation=False),
              ("[complaints.opened_at] rule 'time_zone'", "Mars/Olympus_Mons")),
    InputCase("damaged_parquet_page", damaged_page, ("[orders] rule 'readable'", "orders.parquet")),
    InputCase("part_files_of_different_shapes", parts_of_different_shapes,
              ("[events] rule 'same_schema'", "part-1.parquet", "type")),
    InputCase("latin1_csv", as_csv("customers", latin1, "latin-1"),
              ("[customers] rule 'encoding'", "data.csv_encoding", "line 2")),
    InputCase("semicolon_csv", as_csv("customers", lambda csv: csv.replace(",", ";")),
              ("[customers] rule 'csv_delimiter'", "data.csv_delimiter")),
    InputCase("duplicate_header_names", as_csv("customers", lambda csv: csv.replace("segment", "customer_id", 1)),
              ("[customers.customer_id] rule 'unique_header'", "names the column 'customer_id' 2 times")),
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project that has trained once, so a refused run has runs, versions and features to leave alone."""
    root = tmp_path_factory.mktemp("inputs")
    done = run_stage("train", f"paths.root_dir={root}", "debug=default")
    assert done.returncode == 0, done.output
    return root


@pytest.mark.parametrize("case", INPUT_CASES, ids=[c.id for c in INPUT_CASES])
def test_bad_tables_stop_training_before_anything_is_written(
    trained: Path, tmp_path: Path, case: InputCase
) -> None:
    tables = tmp_path / "tables"
    shutil.copytree(trained / "data" / "demo_debug", tables)
    case.fault(tables)
    copy_before = {p.name: p.read_bytes() for p in tables.rglob("*") if p.is_file()}
    before = project_state(trained)
    done = run_stage(
        "train",
        f"paths.root_dir={trained}",
        "debug=default",
        f"data.path={tables}",
        "data.generate_if_missing=false",
    )
    assert done.returncode == 2, done.output
    assert "Traceback" not in done.output, done.output
    for phrase in case.expect:
        assert phrase in done.output, f"{phrase!r} not in:\n{done.output}"
    assert changes(before, project_state(trained)) == []
    assert {p.name: p.read_bytes() for p in tables.rglob("*") if p.is_file()} == copy_before  # the input too


def test_an_open_ended_end_date_is_read_as_open(trained: Path, tmp_path: Path) -> None:
    """9999-12-31, the common 'no end' placeholder, is an open subscription, said in the run's log."""
    tables = tmp_path / "tables"
    shutil.copytree(trained / "data" / "demo_debug", tables)
    subscriptions = pd.read_parquet(tables / "subscriptions.parquet")
    open_rows = subscriptions["end_date"].isna()
    subscriptions["end_date"] = (
        subscriptions["end_date"].astype(object).where(~open_rows, pd.Timestamp("9999-12-31").date())
    )
    subscriptions.to_parquet(tables / "subscriptions.parquet", index=False)
    done = run_stage(
        "validate",
        f"paths.root_dir={tmp_path}",
        "debug=default",
        f"data.path={tables}",
        "data.generate_if_missing=false",
    )
    assert done.returncode == 0, done.output
    assert (
        f"{int(open_rows.sum()):,}" in done.output
        and "9999-12-31" in done.output
        and "read as" in done.output
    )


def test_a_folder_path_with_a_quote_and_a_column_with_a_space_are_read(trained: Path, tmp_path: Path) -> None:
    tables = tmp_path / "it's data"
    shutil.copytree(trained / "data" / "demo_debug", tables)
    edit("orders", lambda f: f.assign(**{"Account Manager": "Ann O'Neil"}))(tables)
    quoted = f'data.path="{tables}"'  # the command line quotes a path with a quote and a space in it
    done = run_stage(
        "validate", f"paths.root_dir={tmp_path}", "debug=default", quoted, "data.generate_if_missing=false"
    )
    assert done.returncode == 0, done.output
    assert "input data meets the data contract" in done.output and "Account Manager" in done.output
