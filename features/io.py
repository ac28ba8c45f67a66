"""Finding the input tables on disk and reading them, untyped, into DuckDB.

A tables directory holds one entry per contract table: `<table>.parquet`, `<table>.csv`, or a folder
`<table>/` of Parquet (or CSV) part files. Typing and checking happen in `features.validation`.

CSV files are UTF-8 unless `data.csv_encoding` says otherwise; a file in another encoding is read through a
temporary UTF-8 copy (same lines, so line numbers hold). What can be told from a CSV file's bytes before
DuckDB reads it (its header line splits on another delimiter, names a column twice, or is not valid text in
the encoding) is found here, as `CsvProblem`s that `features.validation` and `features.snapshot` word for
their callers.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb

from features.contract import Contract
from features.errors import ConfigError
from features.sql import literal

Format = Literal["parquet", "csv"]
ROW_NUMBER = "__row"  # 1-based position of a row in its file (line number minus one for CSV)
FILE_NAME = "__file"
UTF8 = "utf-8"
# Delimiters a header line is tried with when it does not split on the configured one, and their names.
COMMON_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
HEAD_BYTES = 1 << 20  # a header line is looked for in the first MiB
BLOCK_BYTES = 1 << 22


@dataclass(frozen=True)
class TableFile:
    """Where one input table lives."""

    table: str
    path: Path
    format: Format

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


def rejects_tables(table_file: TableFile, prefix: str = "rejects") -> list[str]:
    """Names of the DuckDB tables that collect malformed CSV lines, one per file."""
    return [f"{prefix}_{table_file.table}_{i}" for i, _ in enumerate(files_of(table_file))]


def scan_sql(
    table_file: TableFile,
    csv_delimiter: str = ",",
    rejects_prefix: str = "rejects",
    readable: Mapping[Path, Path] | None = None,
) -> str:
    """A DuckDB query reading the table untyped (CSV as text), with row number and file name columns.

    `readable` maps a CSV file to the UTF-8 file DuckDB reads instead (`utf8_copies`); row numbers and file
    names are the original file's."""
    files = files_of(table_file)
    if table_file.format == "parquet":
        # union_by_name: parts whose schemas differ only in widths (int32 / int64) read as one; parts that
        # really differ are refused before this (`schema_differences`).
        return (
            f"SELECT * EXCLUDE (file_row_number, filename), file_row_number + 1 AS {ROW_NUMBER}, "
            f"filename AS {FILE_NAME} "
            f"FROM read_parquet({file_list(files)}, file_row_number = true, filename = true, "
            f"union_by_name = true)"
        )
    # all_varchar: types are checked (with row-level messages) in validation, not guessed by a sniffer.
    # store_rejects: malformed lines (a stray delimiter, say) are collected, not silently dropped.
    # One read per file, so row numbers are line numbers within that file.
    parts = []
    for file, rejects in zip(files, rejects_tables(table_file, rejects_prefix), strict=True):
        source = (readable or {}).get(file, file)
        parts.append(
            f"SELECT *, row_number() OVER () AS {ROW_NUMBER}, {literal(str(file))} AS {FILE_NAME} "
            f"FROM read_csv({literal(str(source))}, header = true, all_varchar = true, "
            f"delim = {literal(csv_delimiter)}, quote = '\"', escape = '\"', store_rejects = true, "
            f"rejects_table = {literal(rejects)}, rejects_scan = {literal(rejects + '_scan')})"
        )
    return "\nUNION ALL BY NAME\n".join(parts)


def file_list(files: Sequence[Path]) -> str:
    """Files as a DuckDB list literal, for read_parquet / read_csv."""
    return "[" + ", ".join(literal(str(f)) for f in files) + "]"


def parquet_columns(con: duckdb.DuckDBPyConnection, file: Path) -> dict[str, str]:
    """Column name -> DuckDB type of one Parquet file, from its footer."""
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({literal(str(file))})").fetchall()
    return {str(row[0]): str(row[1]) for row in described}


# Types that read as one another without loss of meaning: parts of one table may differ within a family.
_TYPE_FAMILIES = {
    "number": (
        "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
        "UBIGINT", "UHUGEINT", "FLOAT", "REAL", "DOUBLE", "DECIMAL",
    ),
    "date or timestamp": ("DATE", "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATETIME"),
    "timestamp with time zone": ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ", "TIMESTAMPTZ_NS"),
}  # fmt: skip


def type_family(kind: str) -> str:
    """The family of a DuckDB type ('number', 'date or timestamp', ...), or the type itself."""
    base = kind.split("(")[0].strip().upper()
    for family, members in _TYPE_FAMILIES.items():
        if base in members:
            return family
    return kind


def schema_differences(schemas: Mapping[Path, Mapping[str, str]]) -> list[str]:
    """How each part file's columns differ from the first file's (empty when they agree).

    `schemas` maps each file, in order, to its columns (name -> type; types are compared by family, and not
    at all when they are all text, as CSV columns are)."""
    items = list(schemas.items())
    if len(items) < 2:
        return []
    first_file, first = items[0]
    out = []
    for file, columns in items[1:]:
        missing = [c for c in first if c not in columns]
        extra = [c for c in columns if c not in first]
        retyped = [
            f"'{c}' is {columns[c]} where {first_file.name} has {first[c]}"
            for c in first
            if c in columns and type_family(columns[c]) != type_family(first[c])
        ]
        parts = []
        if missing and extra:
            parts.append(
                f"has {', '.join(repr(c) for c in extra)} instead of {', '.join(repr(c) for c in missing)} "
                f"(renamed?)"
            )
        elif missing:
            parts.append(f"lacks {', '.join(repr(c) for c in missing)}")
        elif extra:
            parts.append(f"has {', '.join(repr(c) for c in extra)}, which {first_file.name} has not")
        parts.extend(retyped)
        if parts:
            out.append(f"{file.name}: {'; '.join(parts)}")
    return out


# -- CSV text ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CsvProblem:
    """Something about a CSV file's bytes that stops it being read as configured."""

    rule: str  # 'encoding', 'csv_delimiter' or 'unique_header'
    message: str  # what is wrong, without the file name
    hint: str  # what to do, naming the setting
    line: int = 1
    column: str | None = None
    examples: tuple[str, ...] = ()


def canonical_encoding(value: object, key: str = "data.csv_encoding") -> str:
    """The canonical name of a configured CSV encoding ('utf-8', 'cp1252', 'iso8859-1', ...).

    Any encoding Python knows works; a name it does not know stops here, naming the key."""
    text = str(value or UTF8).strip()
    try:
        name = codecs.lookup(text).name
    except LookupError as error:
        raise ConfigError(
            f"{key}: unknown encoding {text!r}; use utf-8 (the default), windows-1252 (Excel on Windows in "
            f"Western Europe), latin-1, utf-16 or another Python codec name"
        ) from error
    return UTF8 if name == "utf-8-sig" else name


def _ascii_lines(encoding: str) -> bool:
    """Whether a newline is the byte 0x0A in this encoding (so lines can be counted in bytes)."""
    try:
        return "\n".encode(encoding) == b"\n" and "a".encode(encoding) == b"a"
    except (UnicodeError, LookupError):
        return False


def _suggested_encoding(raw: bytes) -> tuple[str, str]:
    """The encoding a line that is not UTF-8 is most likely in, and why."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "it starts with a UTF-16 byte order mark"
    try:
        raw.decode("cp1252")
    except UnicodeDecodeError:
        return "latin-1", "ISO-8859-1"
    return "windows-1252", "what Excel on Windows saves in Western Europe; latin-1 is ISO-8859-1"


def _encoding_problem(encoding: str, line: int, raw: bytes, start: int, end: int) -> CsvProblem:
    """The problem of undecodable bytes raw[start:end] of `line`."""
    shown = raw[max(0, start - 30) : end + 20].decode(encoding, "backslashreplace")
    byte_text = " ".join(f"0x{b:02x}" for b in raw[start:end][:4])
    if encoding == UTF8:
        suggestion, why = _suggested_encoding(raw)
        hint = f"Save the file as UTF-8, or set data.csv_encoding={suggestion} to read it as it is ({why})."
    else:
        hint = (
            f"Check data.csv_encoding ({encoding}): these bytes are not text in it. Set the encoding the file "
            f"was saved in, or save it as UTF-8."
        )
    return CsvProblem(
        "encoding",
        f"the file is not valid {encoding} text: line {line} holds the byte(s) {byte_text}",
        hint,
        line,
        examples=(f"line {line}: ...{shown}...",),
    )


def _undecodable(encoding: str, error: UnicodeError) -> CsvProblem:
    """The problem of a file the codec refuses as a whole (a UTF-16 file without a byte order mark)."""
    return CsvProblem(
        "encoding",
        f"the file is not valid {encoding} text: {error}",
        f"Check data.csv_encoding ({encoding}): set the encoding the file was saved in, or save it as UTF-8.",
    )


def undecodable_line(path: Path, encoding: str = UTF8) -> CsvProblem | None:
    """The first place where `path` is not text in `encoding`, or None: read in blocks, so any size works."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    lines_before = 0
    with path.open("rb") as handle:
        while True:
            block = handle.read(BLOCK_BYTES)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as error:
                if not _ascii_lines(encoding) or not isinstance(error.object, bytes):
                    return _undecodable(encoding, error)
                raw = error.object  # the block, after any bytes left over from the one before
                line_start = raw.rfind(b"\n", 0, error.start) + 1
                line_end = raw.find(b"\n", error.start)
                line_raw = raw[line_start : line_end if line_end >= 0 else len(raw)]
                line = lines_before + raw.count(b"\n", 0, error.start) + 1
                return _encoding_problem(
                    encoding, line, line_raw, error.start - line_start, error.end - line_start
                )
            except UnicodeError as error:
                return _undecodable(encoding, error)
            if not block:
                return None
            lines_before += block.count(b"\n")


def _header_line(path: Path, encoding: str) -> tuple[str | None, CsvProblem | None]:
    """The first line of `path` decoded, or the encoding problem in it."""
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    try:
        text = decoder.decode(head, final=len(head) < HEAD_BYTES)
    except UnicodeDecodeError as error:
        if not _ascii_lines(encoding):
            return None, _undecodable(encoding, error)
        text = head[: error.start].decode(encoding, "ignore")
        if "\n" not in text:
            end = head.find(b"\n")
            first = head[: end if end >= 0 else len(head)]
            return None, _encoding_problem(encoding, 1, first, error.start, error.end)
    except UnicodeError as error:
        return None, _undecodable(encoding, error)
    return text.split("\n", 1)[0].removeprefix("\ufeff").rstrip("\r"), None


def _split(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter, quotechar='"', doublequote=True), [])


def _shown_delimiter(delimiter: str) -> str:
    return "'\\t' (a tab)" if delimiter == "\t" else f"'{delimiter}'"


def inspect_csv_header(
    path: Path, delimiter: str, encoding: str = UTF8
) -> tuple[list[str], list[CsvProblem]]:
    """The header line's column names, and what is wrong with it: not text in the encoding, split on another
    delimiter than the configured one, or naming a column twice (DuckDB would silently rename the second)."""
    line, problem = _header_line(path, encoding)
    if problem is not None or line is None:
        return [], [problem] if problem else []
    names = _split(line, delimiter)
    problems = []
    if len(names) <= 1:
        splits = {d: _split(line, d) for d in COMMON_DELIMITERS if d != delimiter}
        best = max(splits, key=lambda d: len(splits[d]))
        if len(splits[best]) > 1:
            problems.append(
                CsvProblem(
                    "csv_delimiter",
                    f"the header line does not split on the delimiter {_shown_delimiter(delimiter)} but splits "
                    f"on {_shown_delimiter(best)} into {len(splits[best])} columns "
                    f"({', '.join(splits[best][:6])}{', ...' if len(splits[best]) > 6 else ''})",
                    f"Set data.csv_delimiter={_shown_delimiter(best)}: the file is "
                    f"{COMMON_DELIMITERS[best]}-separated.",
                    examples=(f"line 1 reads {line[:120]!r}",),
                )
            )
            return names, problems
    seen: dict[str, list[int]] = {}
    for position, name in enumerate(names, 1):
        seen.setdefault(name.strip().lower(), []).append(position)
    for positions in seen.values():
        if len(positions) > 1:
            name = names[positions[0] - 1]
            spelled = " and ".join(repr(names[p - 1]) for p in positions)
            problems.append(
                CsvProblem(
                    "unique_header",
                    f"the header line names the column {name!r} {len(positions)} times ({spelled}, columns "
                    f"{', '.join(map(str, positions[:-1]))} and {positions[-1]}), so which one holds it is unclear",
                    "Rename or remove all but one of them (column names are compared without case).",
                    column=name,
                    examples=(f"line 1 reads {line[:120]!r}",),
                )
            )
    return names, problems


@dataclass
class Utf8Copies:
    """CSV files as DuckDB reads them: each original file -> itself (UTF-8) or its UTF-8 copy."""

    paths: dict[Path, Path] = field(default_factory=dict)
    problems: dict[Path, CsvProblem] = field(default_factory=dict)


@contextmanager
def utf8_copies(files: Sequence[Path], encoding: str = UTF8) -> Iterator[Utf8Copies]:
    """UTF-8 versions of CSV files in `encoding` (a canonical name, see `csv_encoding`), for as long as the
    block runs: the files themselves when they are UTF-8, else temporary copies (same lines) that are deleted
    afterwards. A file that is not text in the encoding gets a problem instead of a copy."""
    copies = Utf8Copies()
    if encoding == UTF8:
        copies.paths = {file: file for file in files}
        yield copies
        return
    folder = Path(tempfile.mkdtemp(prefix="churnwise-csv-"))
    try:
        for number, file in enumerate(files):
            target = folder / f"{number}.csv"
            problem = _transcode(file, encoding, target)
            if problem is None:
                copies.paths[file] = target
            else:
                copies.problems[file] = problem
        yield copies
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _transcode(source: Path, encoding: str, target: Path) -> CsvProblem | None:
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    with source.open("rb") as handle, target.open("w", encoding=UTF8, newline="") as out:
        while True:
            block = handle.read(BLOCK_BYTES)
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeError:
                return undecodable_line(source, encoding) or _undecodable(encoding, UnicodeError(encoding))
            out.write(text.removeprefix("\ufeff") if out.tell() == 0 else text)
            if not block:
                return None


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
