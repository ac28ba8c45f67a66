"""PostgreSQL in and out: export input tables to Parquet, publish scoring outputs into a table.

`export_tables` streams tables (or views) of one schema into `<dest>/<table>.parquet`, the layout
`features.io.discover_tables` reads, from one consistent snapshot and with memory bounded by `chunk_rows`.
`write_scores` replaces one scoring date's rows of a PostgreSQL table with a scoring output (Parquet) in a single
transaction. Connection problems and mismatches a user fixes in the configuration raise `ConfigError`; every
message shows the URI with its password replaced by `***`.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg import sql

from features.errors import ConfigError
from features.publish import check_can_write, owned_files, record_files, remove_leftovers
from features.redaction import redact, scrub, secret_values

log = logging.getLogger(__name__)

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
URI_SOURCES = "data.uri, the environment variable CHURNWISE_PG_URI, or conf/local"
CONNECT_TIMEOUT_S = 10

# PostgreSQL type name (pg_type.typname) -> (SQL cast applied when reading, Arrow type). Types not listed are
# read as text. Every integer type becomes int64 so ids join across tables whatever their declared width;
# numeric is cast to double precision on the server (float64 in Arrow).
EXPORT_TYPES: dict[str, tuple[str | None, pa.DataType]] = {
    "int2": (None, pa.int64()),
    "int4": (None, pa.int64()),
    "int8": (None, pa.int64()),
    "oid": (None, pa.int64()),
    "numeric": ("float8", pa.float64()),
    "float4": (None, pa.float64()),
    "float8": (None, pa.float64()),
    "money": ("numeric::float8", pa.float64()),
    "bool": (None, pa.bool_()),
    "text": (None, pa.string()),
    "varchar": (None, pa.string()),
    "bpchar": (None, pa.string()),
    "name": (None, pa.string()),
    "date": (None, pa.date32()),
    "timestamp": (None, pa.timestamp("us")),
    "timestamptz": (None, pa.timestamp("us", tz="UTC")),
}
RELATION_KINDS = ("r", "p", "v", "m", "f")  # table, partitioned table, view, materialized view, foreign table


def _scrub(text: str, uri: str) -> str:
    """`text` (a driver message) with `uri`'s password and any URI- or key/value-style password hidden."""
    secrets = set(secret_values({"uri": uri}, environ={}))
    try:
        password = psycopg.conninfo.conninfo_to_dict(uri).get("password")
    except psycopg.Error:
        password = None
    if password:
        secrets.add(str(password))
    return scrub(text.replace(uri, redact(uri)), secrets)


def _connect(uri: str) -> psycopg.Connection[Any]:
    """Open a connection, or raise ConfigError naming the redacted URI and where it is configured."""
    try:
        options = psycopg.conninfo.conninfo_to_dict(uri)
        extra = {} if "connect_timeout" in options else {"connect_timeout": CONNECT_TIMEOUT_S}
        return psycopg.connect(uri, **extra)
    except psycopg.Error as err:
        raise ConfigError(
            f"cannot connect to PostgreSQL at {redact(uri)}: {_scrub(str(err).strip(), uri)}\n"
            f"The URI comes from {URI_SOURCES}; check its host, port, database, user and password."
        ) from None


def _check_identifier(name: str, what: str) -> None:
    if not IDENTIFIER.match(name):
        raise ConfigError(
            f"{what} {name!r} is not a plain identifier (letters, digits, _; not starting with a digit)"
        )


def _schema_exists(conn: psycopg.Connection[Any], schema: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone() is not None


def _relation_columns(conn: psycopg.Connection[Any], schema: str, name: str) -> list[tuple[str, str]] | None:
    """(column, type name) of a table or view in `schema`, in order; None if there is no such relation."""
    found = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND c.relkind = ANY(%s)",
        [schema, name, list(RELATION_KINDS)],
    ).fetchone()
    if found is None:
        return None
    rows = conn.execute(
        "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        [found[0]],
    ).fetchall()
    return [(str(column), str(typname)) for column, typname in rows]


def _export_one(
    conn: psycopg.Connection[Any],
    schema: str,
    table: str,
    columns: list[tuple[str, str]],
    path: Path,
    chunk_rows: int,
) -> int:
    """Stream one relation into `path` (atomically) through a server-side cursor; return the row count."""
    selected: list[sql.Composable] = []
    fields: list[pa.Field] = []
    for column, typname in columns:
        cast, arrow_type = EXPORT_TYPES.get(typname, ("text", pa.string()))
        expression: sql.Composable = sql.Identifier(column)
        if cast is not None:
            expression = sql.SQL("{}::{}").format(expression, sql.SQL(cast))
        selected.append(expression)
        fields.append(pa.field(column, arrow_type))
        if typname not in EXPORT_TYPES:
            log.info("%s.%s.%s has type %s: exported as text", schema, table, column, typname)
    schema_arrow = pa.schema(fields)
    query = sql.SQL("SELECT {} FROM {}.{}").format(
        sql.SQL(", ").join(selected), sql.Identifier(schema), sql.Identifier(table)
    )
    temp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    rows = 0
    try:
        with (
            conn.cursor(name=f"churnwise_export_{table}") as cursor,
            pq.ParquetWriter(temp, schema_arrow, compression="zstd") as writer,
        ):
            cursor.itersize = chunk_rows
            cursor.execute(query)
            while chunk := cursor.fetchmany(chunk_rows):
                values = list(zip(*chunk, strict=True))
                batch = pa.record_batch(
                    [pa.array(values[i], type=f.type) for i, f in enumerate(schema_arrow)],
                    schema=schema_arrow,
                )
                writer.write_batch(batch)
                rows += len(chunk)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return rows


def export_tables(
    uri: str,
    dest: Path,
    *,
    schema: str = "public",
    tables: Sequence[str],
    chunk_rows: int = 50_000,
) -> dict[str, Path]:
    """Export each of `tables` that exists in `schema` (as a table or view) to `dest/<table>.parquet`.

    All tables are read in one read-only, repeatable-read transaction, so they come from the same snapshot.
    Types: integers -> int64, numeric/real/double -> float64, text/varchar/char -> string, boolean -> bool,
    date -> date32, timestamp -> timestamp[us], timestamptz -> timestamp[us, UTC], anything else -> string;
    NULLs are kept. Requested tables that do not exist are left out of the result and an old
    `dest/<table>.parquet` of theirs that an earlier export wrote is removed. Only files churnwise wrote in
    `dest` are ever replaced or removed (features.publish): a folder of other files is refused before any
    query. Returns {table: path}.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    _check_identifier(schema, "schema")
    for table in tables:
        _check_identifier(table, "table")
    check_can_write(dest, [f"{table}.parquet" for table in tables], "data.path")
    dest.mkdir(parents=True, exist_ok=True)
    remove_leftovers(dest, [f"{table}.parquet" for table in tables])
    exported: dict[str, Path] = {}
    removed: list[str] = []
    with _connect(uri) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        conn.execute("SET TIME ZONE 'UTC'")
        if not _schema_exists(conn, schema):
            raise ConfigError(f"schema {schema!r} does not exist in the PostgreSQL database at {redact(uri)}")
        for table in dict.fromkeys(tables):
            path = dest / f"{table}.parquet"
            columns = _relation_columns(conn, schema, table)
            if columns is None:
                if path.exists() and path.name in owned_files(dest):
                    path.unlink()
                    removed.append(path.name)
                    log.info("%s.%s does not exist: removed the old %s", schema, table, path)
                else:
                    log.info("%s.%s does not exist: not exported", schema, table)
                continue
            rows = _export_one(conn, schema, table, columns, path, chunk_rows)
            log.info("exported %s.%s: %s rows -> %s", schema, table, f"{rows:,}", path)
            exported[table] = path
            record_files(dest, [path.name])
    record_files(dest, [], forget=removed)
    return exported


def _postgres_type(field: pa.Field) -> str:
    """The PostgreSQL column type that holds an Arrow field's values."""
    kind = field.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_int8(kind) or pa.types.is_int16(kind) or pa.types.is_uint8(kind):
        return "smallint"
    if pa.types.is_int32(kind) or pa.types.is_uint16(kind):
        return "integer"
    if pa.types.is_int64(kind) or pa.types.is_uint32(kind):
        return "bigint"
    if pa.types.is_uint64(kind) or pa.types.is_decimal(kind):
        return "numeric"
    if pa.types.is_float16(kind) or pa.types.is_float32(kind):
        return "real"
    if pa.types.is_float64(kind):
        return "double precision"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return "text"
    if pa.types.is_date(kind):
        return "date"
    if pa.types.is_timestamp(kind):
        return "timestamptz" if kind.tz else "timestamp"
    raise ConfigError(
        f"column {field.name!r} has type {field.type}, which write_scores cannot store in PostgreSQL"
    )


def _split_table(table: str) -> list[str]:
    parts = table.split(".")
    if len(parts) > 2:
        raise ConfigError(f"table {table!r} must be 'table' or 'schema.table'")
    for part in parts:
        _check_identifier(part, "table name part")
    return parts


def _lock_id(name: str) -> int:
    """A stable 64-bit advisory-lock id for a table name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def _rows(parquet: pq.ParquetFile, columns: list[str]) -> Iterator[tuple[Any, ...]]:
    for batch in parquet.iter_batches(batch_size=10_000, columns=columns):
        yield from zip(*(batch.column(c).to_pylist() for c in columns), strict=True)


def write_scores(
    uri: str,
    table: str,
    parquet_path: Path,
    as_of: datetime.date,
    *,
    key: tuple[str, ...] = ("customer_id", "as_of"),
) -> int:
    """Replace the rows of scoring date `as_of` in PostgreSQL table `table` ('table' or 'schema.table') with
    the scoring output in `parquet_path`, in one transaction; return the number of rows written.

    The last column of `key` holds the scoring date; every row of the output must carry `as_of` there. A
    missing table is created with column types from the Parquet schema and PRIMARY KEY `key`; an existing
    table must have every column of the output (it is never altered). On any error nothing changes.
    """
    parts = _split_table(table)
    parquet = pq.ParquetFile(parquet_path)
    arrow_schema = parquet.schema_arrow
    columns = list(arrow_schema.names)
    missing_key = [k for k in key if k not in columns]
    if missing_key:
        raise ConfigError(
            f"the scoring output {parquet_path} has no column {', '.join(missing_key)} (key {list(key)})"
        )
    date_column = key[-1]
    if not pa.types.is_date(arrow_schema.field(date_column).type):
        raise ConfigError(
            f"column {date_column!r} of {parquet_path} is {arrow_schema.field(date_column).type}, not a date"
        )
    dates = pc.unique(pq.read_table(parquet_path, columns=[date_column]).column(date_column)).to_pylist()
    other = [d for d in dates if d != as_of]
    if other:
        raise ConfigError(
            f"the scoring output {parquet_path} holds {date_column} values other than {as_of}: "
            f"{', '.join(map(str, other[:5]))}"
        )
    column_types = {f.name: _postgres_type(f) for f in arrow_schema}

    try:
        written, deleted = _replace_rows(uri, table, parts, parquet, as_of, key, column_types)
    except psycopg.Error as err:
        err.add_note(
            f"while writing {parquet_path} into {table} at {redact(uri)}: rolled back, the table is unchanged"
        )
        raise
    log.info(
        "wrote %s rows for %s into PostgreSQL table %s (replaced %s)",
        f"{written:,}",
        as_of,
        table,
        f"{deleted:,}",
    )
    return written


def _replace_rows(
    uri: str,
    table: str,
    parts: list[str],
    parquet: pq.ParquetFile,
    as_of: datetime.date,
    key: tuple[str, ...],
    column_types: dict[str, str],
) -> tuple[int, int]:
    """The transaction of `write_scores`: create the table if needed, delete `as_of`, copy the rows in;
    return (rows written, rows deleted)."""
    target = sql.Identifier(*parts)
    arrow_schema = parquet.schema_arrow
    columns = list(arrow_schema.names)
    date_column = key[-1]
    with _connect(uri) as conn, conn.transaction():
        # Serialise writers of this table (creation and delete + insert); readers are not blocked.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_id(target.as_string(conn))])
        if len(parts) == 2 and not _schema_exists(conn, parts[0]):
            raise ConfigError(f"schema {parts[0]!r} of table {table!r} does not exist at {redact(uri)}")
        existing = conn.execute(
            "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) "
            "AND a.attnum > 0 AND NOT a.attisdropped",
            [target.as_string(conn)],
        ).fetchall()
        if existing:
            present = {str(name) for (name,) in existing}
            absent = [c for c in columns if c not in present]
            if absent:
                raise ConfigError(
                    f"PostgreSQL table {table} at {redact(uri)} has no column {', '.join(absent)} that the "
                    "scoring output has; add it to the table (or write to a new table)"
                )
        else:
            definitions = [
                sql.SQL("{} {}{}").format(
                    sql.Identifier(c),
                    sql.SQL(column_types[c]),
                    sql.SQL(" NOT NULL" if not arrow_schema.field(c).nullable or c in key else ""),
                )
                for c in columns
            ]
            definitions.append(
                sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, key)))
            )
            conn.execute(sql.SQL("CREATE TABLE {} ({})").format(target, sql.SQL(", ").join(definitions)))
            log.info("created PostgreSQL table %s", table)
        deleted = conn.execute(
            sql.SQL("DELETE FROM {} WHERE {} = %s").format(target, sql.Identifier(date_column)), [as_of]
        ).rowcount
        written = 0
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
            target, sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
            for row in _rows(parquet, columns):
                copy.write_row(row)
                written += 1
    return written, deleted
