"""Finding the input tables on disk and reading them, untyped, into DuckDB.

A tables directory holds one entry per contract table: `<table>.parquet`, `<table>.csv`, or a folder
`<table>/` of Parquet (or CSV) part files. Typing and checking happen in `features.validation`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from features.contract import Contract

Format = Literal["parquet", "csv"]
ROW_NUMBER = "__row"  # 1-based position of a row in its file (line number minus one for CSV)
FILE_NAME = "__file"


@dataclass(frozen=True)
class TableFile:
    """Where one input table lives."""

    table: str
    path: Path
    format: Format

    @property
    def glob(self) -> str:
        """Path or glob DuckDB reads."""
        if self.path.is_dir():
            return str(self.path / f"*.{self.format}")
        return str(self.path)

    def where(self, row: int, file: str | None = None) -> str:
        """How a person finds a row: 'line N' for CSV (header is line 1), 'row N' for Parquet."""
        prefix = f"{Path(file).name} " if file and self.path.is_dir() else ""
        if self.format == "csv":
            return f"{prefix}line {row + 1}"
        return f"{prefix}row {row}"


@dataclass(frozen=True)
class DiscoveryProblem:
    """A table that cannot be located unambiguously."""

    table: str
    message: str


def discover_tables(
    tables_dir: Path, contract: Contract, sources: Mapping[str, str] | None = None
) -> tuple[dict[str, TableFile], list[DiscoveryProblem]]:
    """Find each contract table in `tables_dir` (under its name in `sources`, if mapped); report ambiguous or
    unusable entries."""
    found: dict[str, TableFile] = {}
    problems: list[DiscoveryProblem] = []
    for name in contract.table_names:
        stem = (sources or {}).get(name, name)
        candidates: list[TableFile] = []
        for fmt in ("parquet", "csv"):
            file = tables_dir / f"{stem}.{fmt}"
            if file.is_file():
                candidates.append(TableFile(name, file, fmt))  # type: ignore[arg-type]
        folder = tables_dir / stem
        if folder.is_dir():
            formats = [f for f in ("parquet", "csv") if any(folder.glob(f"*.{f}"))]
            if len(formats) == 1:
                candidates.append(TableFile(name, folder, formats[0]))  # type: ignore[arg-type]
            elif len(formats) == 2:
                problems.append(
                    DiscoveryProblem(
                        name, f"folder {folder} mixes .parquet and .csv part files; keep one format"
                    )
                )
                continue
            else:
                problems.append(DiscoveryProblem(name, f"folder {folder} holds no .parquet or .csv files"))
                continue
        if len(candidates) > 1:
            places = ", ".join(str(c.path) for c in candidates)
            problems.append(
                DiscoveryProblem(name, f"found several inputs for {name}: {places}; keep exactly one")
            )
        elif candidates:
            found[name] = candidates[0]
    return found, problems


def files_of(table_file: TableFile) -> list[Path]:
    """The files holding the table, sorted (one, or the part files of a folder)."""
    if table_file.path.is_dir():
        return sorted(table_file.path.glob(f"*.{table_file.format}"))
    return [table_file.path]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def rejects_tables(table_file: TableFile, prefix: str = "rejects") -> list[str]:
    """Names of the DuckDB tables that collect malformed CSV lines, one per file."""
    return [f"{prefix}_{table_file.table}_{i}" for i, _ in enumerate(files_of(table_file))]


def scan_sql(table_file: TableFile, csv_delimiter: str = ",", rejects_prefix: str = "rejects") -> str:
    """A DuckDB query reading the table untyped (CSV as text), with row number and file name columns."""
    if table_file.format == "parquet":
        return (
            f"SELECT * EXCLUDE (file_row_number, filename), file_row_number + 1 AS {ROW_NUMBER}, "
            f"filename AS {FILE_NAME} "
            f"FROM read_parquet({_quote(table_file.glob)}, file_row_number = true, filename = true)"
        )
    # all_varchar: types are checked (with row-level messages) in validation, not guessed by a sniffer.
    # store_rejects: malformed lines (a stray delimiter, say) are collected, not silently dropped.
    # One read per file, so row numbers are line numbers within that file.
    parts = []
    for file, rejects in zip(files_of(table_file), rejects_tables(table_file, rejects_prefix), strict=True):
        parts.append(
            f"SELECT *, row_number() OVER () AS {ROW_NUMBER}, {_quote(str(file))} AS {FILE_NAME} "
            f"FROM read_csv({_quote(str(file))}, header = true, all_varchar = true, "
            f"delim = {_quote(csv_delimiter)}, quote = '\"', escape = '\"', store_rejects = true, "
            f"rejects_table = {_quote(rejects)}, rejects_scan = {_quote(rejects + '_scan')})"
        )
    return "\nUNION ALL BY NAME\n".join(parts)


def fingerprint(files: dict[str, TableFile]) -> tuple[str, dict[str, str]]:
    """Content hash of the input tables: one sha256 per table and one over all of them."""
    per_table: dict[str, str] = {}
    for name in sorted(files):
        digest = hashlib.sha256()
        for file in files_of(files[name]):
            digest.update(file.name.encode())
            with file.open("rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 22), b""):
                    digest.update(block)
        per_table[name] = digest.hexdigest()
    overall = hashlib.sha256("".join(f"{k}={v};" for k, v in per_table.items()).encode()).hexdigest()
    return overall, per_table


def _temp_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.tmp-{os.getpid()}")


def remove_stale_temps(target: Path) -> list[Path]:
    """Delete temp files of `target` left by processes that no longer run (killed mid-write)."""
    removed = []
    for temp in target.parent.glob(f".{target.name}.tmp-*"):
        pid = temp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish_atomically(writers: Mapping[Path, Callable[[Path], None]]) -> list[Path]:
    """Write several files, each through `write(temp_path)` beside its target, then rename them all into place.

    All files are written before any is renamed, so a crash or error while writing (the slow part) leaves
    every previous target untouched, and the renames that follow take microseconds. Temp files of an earlier
    run that was killed are removed first.
    """
    temps = {}
    try:
        for target, write in writers.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(target)
            temps[target] = _temp_path(target)
            write(temps[target])
        for target, temp in temps.items():
            os.replace(temp, target)
    finally:
        for temp in temps.values():
            if temp.exists():
                temp.unlink()
    return list(writers)


def replace_atomically(write: Callable[[Path], None], target: Path) -> Path:
    """Write a file through `write(temp_path)` beside `target`, then rename it into place.

    A crash or error leaves any previous `target` untouched and no partial file behind.
    """
    return publish_atomically({target: write})[0]
