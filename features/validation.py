"""Enforcing the data contract with DuckDB, and exposing the validated, typed tables.

`load_tables` reads every contract table found in a folder, checks it (columns, types, missing values, keys,
foreign keys, date order, ranges, allowed values, time zones, CSV structure) and either raises
`DataContractError`, which lists every problem with the table, column, rule and a few offending rows, or
returns a DuckDB connection holding one typed view per table under its contract name.

The checks run as SQL over the files, so they work out of core on inputs larger than memory.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb

from features.contract import CONTRACT, Column, Contract, Kind, Table
from features.errors import ConfigError
from features.io import FILE_NAME, ROW_NUMBER, TableFile, discover_tables, rejects_tables, scan_sql
from features.mapping import TableMapping, parse_mapping, sources

log = logging.getLogger(__name__)

MAX_EXAMPLES = 5
# A UTC offset or 'Z' after a time of day, e.g. 2024-03-01T10:00:00+02:00, 2024-03-01 10:00Z.
TZ_SUFFIX = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)$"
INTEGER_TYPES = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
}  # fmt: skip
FLOAT_TYPES = {"FLOAT", "DOUBLE", "REAL"}
TIMESTAMP_TYPES = {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATETIME"}
KIND_PHRASE = {
    Kind.ID: "customer ids",
    Kind.DATE: "dates (YYYY-MM-DD)",
    Kind.TIMESTAMP: "timestamps (YYYY-MM-DD HH:MM:SS, optionally with a UTC offset)",
    Kind.TEXT: "text",
    Kind.NUMBER: "numbers",
    Kind.INTEGER: "whole numbers",
    Kind.BOOLEAN: "true/false values",
}
PARSE_HINT = {
    Kind.ID: "Use the same kind of id as customers.customer_id (all integers, or all text).",
    Kind.DATE: "Write dates as ISO YYYY-MM-DD (e.g. 2024-03-31); day-first or month-first formats are ambiguous.",
    Kind.TIMESTAMP: "Write timestamps as ISO YYYY-MM-DD HH:MM:SS, e.g. 2024-03-31 14:05:00.",
    Kind.NUMBER: "Use a plain decimal number with '.' as decimal mark and no currency sign or thousands separator.",
    Kind.INTEGER: "Use a whole number such as 0, 12 or 24.",
    Kind.BOOLEAN: "Use true/false (also accepted: t/f, yes/no, y/n, 1/0).",
    Kind.TEXT: "",
}


@dataclass(frozen=True)
class Violation:
    """One broken rule of the contract, with what a person needs to fix it."""

    table: str
    column: str | None
    rule: str
    message: str
    hint: str = ""
    examples: tuple[str, ...] = ()
    source: str | None = None

    def render(self) -> str:
        """The violation as a few readable lines."""
        where = f"{self.table}.{self.column}" if self.column else self.table
        lines = [f"[{where}] rule '{self.rule}': {self.message}"]
        if self.source:
            lines.append(f"    in {self.source}")
        lines.extend(f"    {example}" for example in self.examples)
        if self.hint:
            lines.append(f"    Fix: {self.hint}")
        return "\n".join(lines)


class DataContractError(ValueError):
    """Input tables break the data contract; `violations` lists every problem found."""

    def __init__(self, violations: list[Violation]):
        self.violations = list(violations)
        super().__init__(self._render())

    def _render(self) -> str:
        tables = sorted({v.table for v in self.violations})
        head = (
            f"The input data breaks the data contract: {len(self.violations)} problem(s) in "
            f"{', '.join(tables)}. Nothing was written. See docs/data_contract.md."
        )
        return "\n".join([head, *(v.render() for v in self.violations)])


@dataclass(frozen=True)
class TableSummary:
    """What was found for one table."""

    name: str
    path: Path
    format: str
    rows: int
    columns: tuple[str, ...]
    extra_columns: tuple[str, ...]
    first_date: str | None = None
    last_date: str | None = None


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of a successful validation."""

    tables_dir: Path
    tables: dict[str, TableSummary]
    absent: tuple[str, ...]
    id_type: str
    notes: tuple[str, ...] = ()

    @property
    def present(self) -> tuple[str, ...]:
        """Names of the tables found."""
        return tuple(self.tables)

    def render(self) -> str:
        """A short table of what was found."""
        lines = [f"Input tables in {self.tables_dir} (customer ids: {self.id_type}):"]
        for t in self.tables.values():
            span = f"{t.first_date} .. {t.last_date}" if t.first_date else ""
            extra = f" +{len(t.extra_columns)} extra column(s)" if t.extra_columns else ""
            lines.append(f"  {t.name:<14} {t.rows:>12,} rows  {t.format:<7} {span}{extra}")
        if self.absent:
            lines.append(f"  absent (optional): {', '.join(self.absent)}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


@dataclass
class ValidatedTables:
    """A DuckDB connection with one typed view per input table, named as in the contract."""

    con: duckdb.DuckDBPyConnection
    report: ValidationReport
    files: dict[str, TableFile] = field(default_factory=dict)

    def has(self, table: str) -> bool:
        """Whether the table was provided."""
        return table in self.report.tables


# Main date column of each table, used for the date range in reports.
MAIN_DATE = {
    "customers": "signup_date",
    "subscriptions": "start_date",
    "orders": "order_date",
    "complaints": "opened_at",
    "events": "event_time",
    "referrals": "referral_date",
    "offers": "offered_at",
}


def load_tables(
    tables_dir: Path | str,
    *,
    contract: Contract = CONTRACT,
    csv_delimiter: str = ",",
    con: duckdb.DuckDBPyConnection | None = None,
    mapping: Mapping[str, Any] | None = None,
    derive_customers: bool = False,
) -> ValidatedTables:
    """Validate the tables in `tables_dir` against the contract and register typed views.

    `mapping` (`data.mapping`, see `features.mapping`) says under which file and column names the user's
    tables hold the contract's. Raises `ConfigError` naming the mapping key when the mapping does not fit the
    files (before any check), `DataContractError` listing every problem; `FileNotFoundError` if the folder
    does not exist. With `derive_customers`, a folder without a customers table gets one derived from each
    customer's first subscription, order or event (an orders-only or events-only export), and the report
    says so.
    """
    mappings = parse_mapping(mapping, contract)
    tables_dir = Path(tables_dir)
    if not tables_dir.is_dir():
        raise FileNotFoundError(
            f"input folder {tables_dir} does not exist; generate demo data with `make data` or point "
            f"data.path at your tables"
        )
    con = con if con is not None else duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    checker = _Checker(con, contract, csv_delimiter, mappings)
    files, problems = discover_tables(tables_dir, contract, sources(mappings))
    unfound = [m for m in mappings.values() if m.table not in files and m.source != m.table]
    if unfound:
        raise ConfigError(
            "the data mapping names files that are not there:\n  "
            + "\n  ".join(
                f"{m.key()}.from: no {m.source}.parquet, {m.source}.csv or folder {m.source}/ in {tables_dir}"
                for m in unfound
            )
        )
    checker.violations.extend(
        Violation(p.table, None, "one_input_per_table", p.message, "Remove or rename all but one of them.")
        for p in problems
    )
    deriving = (
        derive_customers and "customers" not in files and any(t in files for t in contract.activity_tables)
    )
    _check_presence(files, contract, checker, tables_dir, derived={"customers"} if deriving else set())

    summaries: dict[str, TableSummary] = {}
    id_type = "BIGINT"
    order = [name for name in contract.table_names if name in files]
    readable = [name for name in order if checker.read(files[name])]
    if checker.mapping_problems:
        raise ConfigError(
            "the data mapping does not fit the files:\n  " + "\n  ".join(checker.mapping_problems)
        )
    checked = dict(files)
    notes = []
    activity = [t for t in readable if t in contract.activity_tables]
    if deriving and activity:  # (an unreadable activity table is already a violation)
        checked["customers"] = TableFile("customers", tables_dir / "(derived customers)", "parquet")
        notes.append(checker.derive_customers(activity))
        order, readable = ["customers", *order], ["customers", *readable]
        log.info("%s", notes[-1])
    for name in readable:
        log.info("checking %s (%s)", name, checked[name].path)
        if name == "customers":
            id_type = checker.customer_id_type()
        summary = checker.check_table(checked[name], id_type)
        if summary is not None:
            summaries[name] = summary
    if "customers" in summaries and not checker.failed("customers", "customer_id"):
        for name in order:
            if name in summaries and name != "customers":
                checker.check_foreign_keys(checked[name])
    if checker.violations:
        raise DataContractError([_in_users_names(v, mappings) for v in checker.violations])

    if "events" in summaries and "event_types" in summaries:
        notes.append(_name_event_types(con))
    for name in order:
        extra = summaries[name].extra_columns
        if extra and name != "customers":
            notes.append(f"{name}: extra columns kept but not used by the contract: {', '.join(extra)}")
    absent = tuple(n for n in contract.table_names if n not in summaries)
    report = ValidationReport(tables_dir, summaries, absent, id_type, tuple(notes))
    log.info("validated %d table(s) in %s", len(summaries), tables_dir)
    return ValidatedTables(con, report, dict(files))


def _name_event_types(con: duckdb.DuckDBPyConnection) -> str:
    """Make the `events` view carry event type names from the `event_types` lookup (codes without a name are
    kept as they are); return what was done, for the run's report."""
    con.execute("ALTER VIEW events RENAME TO events_by_code")
    con.execute(
        """CREATE OR REPLACE TEMP VIEW events AS
           SELECT e.* REPLACE (coalesce(t.event_type_name, e.event_type) AS event_type)
           FROM events_by_code e LEFT JOIN event_types t ON t.event_type = e.event_type"""
    )
    named, unnamed = con.execute(
        """SELECT count(DISTINCT e.event_type) FILTER (WHERE t.event_type IS NOT NULL),
                  count(DISTINCT e.event_type) FILTER (WHERE t.event_type IS NULL)
           FROM events_by_code e LEFT JOIN event_types t ON t.event_type = e.event_type"""
    ).fetchall()[0]
    text = f"events: {named} event type code(s) named from event_types"
    return text + (f"; {unnamed} code(s) without a name kept as they are" if unnamed else "")


def _in_users_names(violation: Violation, mappings: Mapping[str, TableMapping]) -> Violation:
    """A violation of a mapped column, saying which of the user's columns it is and which mapping key."""
    mapped = mappings.get(violation.table)
    if mapped is None or violation.column not in mapped.columns:
        return violation
    source = mapped.columns[violation.column]
    return replace(
        violation, message=f"{violation.message} (your column {source!r}, {mapped.key(violation.column)})"
    )


def _check_presence(
    files: dict[str, TableFile], contract: Contract, checker: _Checker, tables_dir: Path, derived: set[str]
) -> None:
    for table in contract.tables:
        if table.required and table.name not in files and table.name not in derived:
            checker.violations.append(
                Violation(
                    table.name,
                    None,
                    "required_table",
                    f"no {table.name} table found in {tables_dir}",
                    f"Provide {table.name}.parquet, {table.name}.csv or a folder {table.name}/ of part files.",
                )
            )
    if not any(name in files for name in contract.activity_tables):
        names = ", ".join(contract.activity_tables)
        checker.violations.append(
            Violation(
                "|".join(contract.activity_tables),
                None,
                "activity_table",
                f"none of {names} was found in {tables_dir}; churn needs at least one of them",
                f"Provide at least one of {names} (as .parquet, .csv or a folder of part files).",
            )
        )


def _sql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class _Expr:
    """How one contract column is read: the value as given (NULL when blank) and its typed form."""

    present: str
    typed: str
    raw: str


@dataclass(frozen=True)
class _Check:
    """A row-level rule: rows matching `condition` break it."""

    column: str
    rule: str
    condition: str
    meaning: str
    show: list[str]
    hint: str


class _Checker:
    """Runs the contract's checks for one connection and collects violations."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        contract: Contract,
        csv_delimiter: str,
        mappings: Mapping[str, TableMapping] | None = None,
    ):
        self.con = con
        self.contract = contract
        self.csv_delimiter = csv_delimiter
        self.mappings = dict(mappings or {})
        self.mapping_problems: list[str] = []
        self.violations: list[Violation] = []
        self.raw_types: dict[str, dict[str, str]] = {}
        self.exprs: dict[str, dict[str, _Expr]] = {}

    # -- helpers ---------------------------------------------------------------------------------
    def add(self, table_file: TableFile, column: str | None, rule: str, message: str, hint: str = "",
            examples: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.violations.append(
            Violation(table_file.table, column, rule, message, hint, examples, str(table_file.path))
        )

    def failed(self, table: str, column: str | None = None) -> bool:
        return any(v.table == table and (column is None or v.column == column) for v in self.violations)

    def _raw(self, table: str) -> str:
        return f"raw_{table}"

    def _examples(self, table_file: TableFile, condition: str, columns: list[str]) -> tuple[str, ...]:
        shown = [c for c in dict.fromkeys(columns) if c in self.raw_types[table_file.table]]
        select = ", ".join(f"CAST({_sql_name(c)} AS VARCHAR)" for c in shown)
        rows = self.con.execute(
            f"SELECT {ROW_NUMBER}, {FILE_NAME}{', ' + select if select else ''} "
            f"FROM {self._raw(table_file.table)} WHERE {condition} ORDER BY {FILE_NAME}, {ROW_NUMBER} "
            f"LIMIT {MAX_EXAMPLES}"
        ).fetchall()
        out = []
        for row in rows:
            values = ", ".join(
                f"{c}={'(empty)' if v is None else repr(v) if isinstance(v, str) else v}"
                for c, v in zip(shown, row[2:], strict=True)
            )
            out.append(f"{table_file.where(row[0], row[1])}: {values}")
        return tuple(out)

    def _id_columns(self, table: Table) -> list[str]:
        return [c.name for c in table.columns if c.kind == Kind.ID][:1]

    # -- reading -----------------------------------------------------------------------------------
    def read(self, table_file: TableFile) -> bool:
        """Register the raw table; report unreadable files and malformed CSV lines."""
        name = table_file.table
        sql = scan_sql(table_file, self.csv_delimiter)
        # CSV is parsed once into a temporary table; Parquet is scanned in place.
        kind = "TABLE" if table_file.format == "csv" else "VIEW"
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP {kind} {self._raw(name)} AS {sql}")
        except duckdb.Error as error:
            first = "; ".join(line for line in str(error).splitlines()[:2] if line.strip())
            self.add(
                table_file,
                None,
                "readable",
                f"the file cannot be read as {table_file.format.upper()}: {first}",
                "Check that the file is complete, in the format its extension says, and (CSV) comma-separated "
                "with a header line; set data.csv_delimiter for another delimiter.",
            )
            return False
        if table_file.format == "csv" and not self._check_csv_rejects(table_file):
            return False
        described = self.con.execute(f"DESCRIBE {self._raw(name)}").fetchall()
        self.raw_types[name] = {
            row[0]: str(row[1]) for row in described if row[0] not in (ROW_NUMBER, FILE_NAME)
        }
        if name in self.mappings:
            return self._rename(table_file, self.mappings[name], kind)
        return True

    def derive_customers(self, activity: list[str]) -> str:
        """Register a raw customers table derived from the activity tables: one row per customer id seen,
        signed up on the day of their first subscription start, order or event. Returns what was done."""
        first = {"subscriptions": "start_date", "orders": "order_date", "events": "event_time"}
        parts = " UNION ALL ".join(
            f"SELECT customer_id, TRY_CAST(left(CAST({first[t]} AS VARCHAR), 10) AS DATE) AS first_date "
            f"FROM {self._raw(t)}"
            for t in activity
        )
        self.con.execute(
            f"""CREATE OR REPLACE TEMP VIEW {self._raw("customers")} AS
                SELECT customer_id, CAST(min(first_date) AS VARCHAR) AS signup_date,
                       row_number() OVER (ORDER BY customer_id) AS {ROW_NUMBER}, '(derived)' AS {FILE_NAME}
                FROM ({parts}) WHERE customer_id IS NOT NULL GROUP BY customer_id"""
        )
        described = self.con.execute(f"DESCRIBE {self._raw('customers')}").fetchall()
        self.raw_types["customers"] = {
            r[0]: str(r[1]) for r in described if r[0] not in (ROW_NUMBER, FILE_NAME)
        }
        count = self.con.execute(f"SELECT count(*) FROM {self._raw('customers')}").fetchall()[0][0]
        return (
            f"customers: no customers table, so {count:,} customers were derived from their first "
            f"appearance in {', '.join(activity)} (signup_date = the day of their first "
            f"{' / '.join(first[t].removesuffix('_date').removesuffix('_time') for t in activity)})"
        )

    def _rename(self, table_file: TableFile, mapping: TableMapping, kind: str) -> bool:
        """Give the mapped columns of a raw table their contract names; record what does not fit."""
        raw = self.raw_types[mapping.table]
        renames = {source: column for column, source in mapping.columns.items() if source != column}
        problems = [
            f"{mapping.key(column)}: column {source!r} is not in {table_file.path} (its columns: {', '.join(raw)})"
            for column, source in mapping.columns.items()
            if source not in raw
        ]
        problems += [
            f"{mapping.key(column)}: {table_file.path} has a column {column!r} of its own besides {source!r}; "
            f"map one of them or rename the other"
            for source, column in renames.items()
            if column in raw and column not in renames
        ]
        if problems:
            self.mapping_problems.extend(problems)
            return False
        if renames:
            renamed = ", ".join(f"{_sql_name(s)} AS {_sql_name(c)}" for s, c in renames.items())
            stage = f"{self._raw(mapping.table)}_as_given"
            self.con.execute(f"ALTER {kind} {self._raw(mapping.table)} RENAME TO {stage}")
            self.con.execute(
                f"CREATE OR REPLACE TEMP VIEW {self._raw(mapping.table)} AS SELECT * RENAME ({renamed}) FROM {stage}"
            )
            self.raw_types[mapping.table] = {renames.get(c, c): t for c, t in raw.items()}
        return True

    def _check_csv_rejects(self, table_file: TableFile) -> bool:
        rejected = []
        for rejects in rejects_tables(table_file):
            rejected += self.con.execute(
                f"SELECT line, error_type, error_message, csv_line FROM {rejects} ORDER BY line"
            ).fetchall()
        if not rejected:
            return True
        examples = tuple(
            f"line {line}: {error_type.lower()}: {message.split('.')[0]}; the line reads {csv_line!r}"
            for line, error_type, message, csv_line in rejected[:MAX_EXAMPLES]
        )
        self.add(
            table_file,
            None,
            "csv_structure",
            f"{len(rejected)} line(s) do not split into the header's columns (a stray delimiter "
            f"'{self.csv_delimiter}' or an unquoted text value containing it)",
            'Quote text values that contain the delimiter ("a, b") or remove the stray delimiter.',
            examples,
        )
        return False

    def customer_id_type(self) -> str:
        """Type all customer ids are compared as: BIGINT when customers.customer_id holds integers."""
        raw = self.raw_types.get("customers", {}).get("customer_id", "VARCHAR")
        if raw in INTEGER_TYPES or raw in FLOAT_TYPES:
            return "BIGINT"
        return "VARCHAR"

    # -- per-table checks -------------------------------------------------------------------------
    def check_table(self, table_file: TableFile, id_type: str) -> TableSummary | None:
        name = table_file.table
        table = self.contract.table(name)
        raw_types = self.raw_types[name]
        for column in table.columns:
            if column.required and column.name not in raw_types:
                self._missing_column(table_file, column, list(raw_types))
        rows = self.con.execute(f"SELECT count(*) FROM {self._raw(name)}").fetchall()[0][0]
        if rows == 0:
            self.add(
                table_file,
                None,
                "not_empty",
                "the table has no rows",
                f"Re-export it, or remove the file if you have no {name} (the table is optional)"
                if not table.required
                else "Re-export it: churnwise needs at least one customer.",
            )
            return None

        exprs: dict[str, _Expr] = {}
        checks: list[_Check] = []
        show_key = self._id_columns(table)
        for column in table.columns:
            if column.name not in raw_types:
                continue
            expr = self._expression(table_file, column, raw_types[column.name], id_type)
            if expr is None:
                continue
            exprs[column.name] = expr
            checks.extend(self._column_checks(column, expr, show_key))
        for rule in table.date_orders:
            if rule.earlier in exprs and rule.later in exprs:
                condition = f"({exprs[rule.later].typed}) < ({exprs[rule.earlier].typed})"
                checks.append(
                    _Check(
                        rule.later,
                        f"{rule.later} >= {rule.earlier}",
                        condition,
                        f"{rule.later} before {rule.earlier} ({rule.meaning})",
                        [*show_key, rule.earlier, rule.later],
                        rule.hint,
                    )
                )
        self._run_checks(table_file, rows, checks)
        self._check_mixed_time_zones(table_file, table, raw_types, show_key)
        self.exprs[name] = exprs
        if table.unique_key and all(k in exprs for k in table.unique_key):
            self._check_unique(table_file, table, exprs, rows)
        if self.failed(name):
            return None
        return self._register_typed(table_file, table, exprs, rows)

    def _missing_column(self, table_file: TableFile, column: Column, available: list[str]) -> None:
        close = difflib.get_close_matches(column.name, available, n=1, cutoff=0.6)
        close += [c for c in available if c.lower() == column.name.lower() and c not in close]
        hint = (
            f"Rename '{close[0]}' to '{column.name}'." if close else f"Add the column ({column.description})"
        )
        self.add(
            table_file,
            column.name,
            "required_column",
            f"required column '{column.name}' is missing; the file has: {', '.join(available) or '(none)'}",
            hint,
        )

    def _expression(self, table_file: TableFile, column: Column, raw_type: str, id_type: str) -> _Expr | None:
        """Typed SQL for a column, or None (and a violation) when its storage type cannot hold the kind."""
        c = _sql_name(column.name)
        base = raw_type.split("(")[0]
        text = base == "VARCHAR"
        present = f"NULLIF(trim({c}), '')" if text else c
        if not text and base in FLOAT_TYPES:
            present = f"CASE WHEN isnan({c}) THEN NULL ELSE {c} END"
        kind = column.kind
        if kind == Kind.ID:
            is_key = table_file.table == "customers" and column.name == "customer_id"
            target = self.customer_id_type() if is_key else id_type
            if target == "VARCHAR":
                typed = present if text else f"CAST({c} AS VARCHAR)"
            elif text:
                typed = f"TRY_CAST({present} AS BIGINT)"
            elif base in INTEGER_TYPES:
                typed = f"CAST({c} AS BIGINT)"
            elif base in FLOAT_TYPES:
                typed = f"CASE WHEN {present} = floor({present}) THEN CAST({present} AS BIGINT) END"
            else:
                return self._storage(table_file, column, raw_type)
        elif kind == Kind.DATE:
            if text:
                typed = f"TRY_CAST({present} AS DATE)"
            elif base == "DATE":
                typed = c
            elif base in TIMESTAMP_TYPES:
                typed = f"CAST({c} AS DATE)"
            elif base == "TIMESTAMP WITH TIME ZONE":
                typed = f"CAST({c} AT TIME ZONE 'UTC' AS DATE)"
            else:
                return self._storage(table_file, column, raw_type)
        elif kind == Kind.TIMESTAMP:
            if text:
                typed = (
                    f"CASE WHEN regexp_matches({present}, {_literal(TZ_SUFFIX)}) "
                    f"THEN TRY_CAST({present} AS TIMESTAMPTZ) AT TIME ZONE 'UTC' "
                    f"ELSE TRY_CAST({present} AS TIMESTAMP) END"
                )
            elif base in TIMESTAMP_TYPES or base == "DATE":
                typed = f"CAST({c} AS TIMESTAMP)"
            elif base == "TIMESTAMP WITH TIME ZONE":
                typed = f"({c} AT TIME ZONE 'UTC')"
            else:
                return self._storage(table_file, column, raw_type)
        elif kind == Kind.NUMBER:
            if text:
                typed = f"CASE WHEN isfinite(TRY_CAST({present} AS DOUBLE)) THEN TRY_CAST({present} AS DOUBLE) END"
            elif base in INTEGER_TYPES or base == "DECIMAL":
                typed = f"CAST({c} AS DOUBLE)"
            elif base in FLOAT_TYPES:
                typed = f"CASE WHEN isfinite({present}) THEN CAST({present} AS DOUBLE) END"
            else:
                return self._storage(table_file, column, raw_type)
        elif kind == Kind.INTEGER:
            if base in INTEGER_TYPES:
                typed = f"CAST({c} AS BIGINT)"
            elif text or base in FLOAT_TYPES or base == "DECIMAL":
                number = f"TRY_CAST({present} AS DOUBLE)"
                typed = f"CASE WHEN isfinite({number}) AND {number} = floor({number}) THEN CAST({number} AS BIGINT) END"
            else:
                return self._storage(table_file, column, raw_type)
        elif kind == Kind.BOOLEAN:
            if text:
                typed = (
                    f"CASE WHEN lower({present}) IN ('true', 't', 'yes', 'y', '1') THEN true "
                    f"WHEN lower({present}) IN ('false', 'f', 'no', 'n', '0') THEN false END"
                )
            elif base == "BOOLEAN":
                typed = c
            elif base in INTEGER_TYPES:
                typed = f"CASE {c} WHEN 1 THEN true WHEN 0 THEN false END"
            else:
                return self._storage(table_file, column, raw_type)
        else:  # TEXT
            typed = present if text else f"CAST({c} AS VARCHAR)"
        return _Expr(present=present, typed=typed, raw=c)

    def _storage(self, table_file: TableFile, column: Column, raw_type: str) -> None:
        self.add(
            table_file,
            column.name,
            "type",
            f"column is stored as {raw_type}, which cannot hold {KIND_PHRASE[column.kind]}",
            f"Store '{column.name}' as {KIND_PHRASE[column.kind]} (or as ISO text). {PARSE_HINT[column.kind]}",
        )
        return None

    def _column_checks(self, column: Column, expr: _Expr, show_key: list[str]) -> list[_Check]:
        show = [*show_key, column.name]
        checks = [
            _Check(column.name, "type", f"{expr.present} IS NOT NULL AND ({expr.typed}) IS NULL",
                   f"values that are not {KIND_PHRASE[column.kind]}", show, PARSE_HINT[column.kind]),
        ]  # fmt: skip
        if not column.nullable:
            checks.append(
                _Check(column.name, "not_null", f"{expr.present} IS NULL", "empty values", show,
                       f"Fill in '{column.name}' ({column.description}) or drop those rows.")
            )  # fmt: skip
        if column.min_value is not None:
            checks.append(
                _Check(column.name, f">= {column.min_value:g}", f"({expr.typed}) < {column.min_value}",
                       f"values below {column.min_value:g}", show,
                       f"'{column.name}' must be at least {column.min_value:g}: {column.description}")
            )  # fmt: skip
        if column.max_value is not None:
            checks.append(
                _Check(column.name, f"<= {column.max_value:g}", f"({expr.typed}) > {column.max_value}",
                       f"values above {column.max_value:g}", show,
                       f"'{column.name}' must be at most {column.max_value:g}: {column.description}")
            )  # fmt: skip
        if column.allowed:
            allowed = ", ".join(_literal(a) for a in column.allowed)
            checks.append(
                _Check(column.name, "allowed_values", f"({expr.typed}) NOT IN ({allowed})",
                       f"values outside {', '.join(column.allowed)}", show,
                       f"Map your values onto {', '.join(column.allowed)}.")
            )  # fmt: skip
        return checks

    def _run_checks(self, table_file: TableFile, rows: int, checks: list[_Check]) -> None:
        if not checks:
            return
        filters = ", ".join(f"count(*) FILTER (WHERE {check.condition})" for check in checks)
        counts = self.con.execute(f"SELECT {filters} FROM {self._raw(table_file.table)}").fetchall()[0]
        unparsed: set[str] = set()
        for check, count in zip(checks, counts, strict=True):
            # A value that does not parse is reported once, not again as out of range.
            if not count or (check.column in unparsed and check.rule not in ("type", "not_null")):
                continue
            if check.rule == "type":
                unparsed.add(check.column)
            self.add(
                table_file,
                check.column,
                check.rule,
                f"{count:,} of {rows:,} rows have {check.meaning}",
                check.hint,
                self._examples(table_file, check.condition, check.show),
            )

    def _check_mixed_time_zones(
        self, table_file: TableFile, table: Table, raw_types: dict[str, str], show_key: list[str]
    ) -> None:
        for column in table.columns:
            if column.kind != Kind.TIMESTAMP or raw_types.get(column.name) != "VARCHAR":
                continue
            value = f"NULLIF(trim({_sql_name(column.name)}), '')"
            with_tz = f"{value} IS NOT NULL AND regexp_matches({value}, {_literal(TZ_SUFFIX)})"
            without_tz = f"{value} IS NOT NULL AND NOT regexp_matches({value}, {_literal(TZ_SUFFIX)})"
            n_with, n_without = self.con.execute(
                f"SELECT count(*) FILTER (WHERE {with_tz}), count(*) FILTER (WHERE {without_tz}) "
                f"FROM {self._raw(table_file.table)}"
            ).fetchall()[0]
            if n_with and n_without:
                show = [*show_key, column.name]
                examples = (
                    self._examples(table_file, with_tz, show)[:2]
                    + self._examples(table_file, without_tz, show)[:2]
                )
                self.add(
                    table_file,
                    column.name,
                    "one_time_zone",
                    f"mixed time zones: {n_with:,} values carry a UTC offset and {n_without:,} do not, so "
                    f"the instants of the latter are ambiguous",
                    "Give every value an offset (e.g. +00:00) or none; values with offsets are converted to UTC.",
                    examples,
                )

    def _check_unique(self, table_file: TableFile, table: Table, exprs: dict[str, _Expr], rows: int) -> None:
        key = ", ".join(f"({exprs[k].typed})" for k in table.unique_key)
        duplicated = self.con.execute(
            f"SELECT {key}, count(*) AS n, list({ROW_NUMBER} ORDER BY {ROW_NUMBER})[1:3] "
            f"FROM {self._raw(table.name)} WHERE ({exprs[table.unique_key[0]].typed}) IS NOT NULL "
            f"GROUP BY ALL HAVING count(*) > 1 ORDER BY n DESC, 1 LIMIT {MAX_EXAMPLES}"
        ).fetchall()
        if not duplicated:
            return
        total = self.con.execute(
            f"SELECT count(*), sum(n) FROM (SELECT count(*) AS n FROM {self._raw(table.name)} "
            f"WHERE ({exprs[table.unique_key[0]].typed}) IS NOT NULL GROUP BY {key} HAVING count(*) > 1)"
        ).fetchall()[0]
        names = ", ".join(table.unique_key)
        examples = tuple(
            f"{names}={', '.join(map(str, row[:-2]))} appears {row[-2]} times, at "
            f"{', '.join(table_file.where(r) for r in row[-1])}"
            for row in duplicated
        )
        self.add(
            table_file,
            ",".join(table.unique_key),
            "unique",
            f"{total[0]:,} value(s) of {names} appear more than once ({total[1]:,} of {rows:,} rows)",
            f"Keep one row per {names}: remove or merge the duplicates.",
            examples,
        )

    def _register_typed(
        self, table_file: TableFile, table: Table, exprs: dict[str, _Expr], rows: int
    ) -> TableSummary:
        raw_types = self.raw_types[table.name]
        known = {c.name for c in table.columns}
        extra = [c for c in raw_types if c not in known]
        select = [f"{e.typed} AS {_sql_name(n)}" for n, e in exprs.items()]
        # Optional contract columns that are absent become typed NULLs, so later SQL can rely on them.
        for column in table.columns:
            if column.name not in exprs:
                select.append(
                    f"CAST(NULL AS {_null_type(column.kind, self.customer_id_type())}) AS {_sql_name(column.name)}"
                )
        select += [_sql_name(c) for c in extra]
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {_sql_name(table.name)} AS SELECT {', '.join(select)} "
            f"FROM {self._raw(table.name)}"
        )
        first = last = None
        date_column = MAIN_DATE.get(table.name)
        if date_column in exprs:
            first, last = self.con.execute(
                f"SELECT CAST(min({_sql_name(date_column)}) AS VARCHAR), CAST(max({_sql_name(date_column)}) AS VARCHAR) "
                f"FROM {_sql_name(table.name)}"
            ).fetchall()[0]
        return TableSummary(
            table.name, table_file.path, table_file.format, rows, tuple(raw_types), tuple(extra), first, last
        )

    # -- cross-table checks -----------------------------------------------------------------------
    def check_foreign_keys(self, table_file: TableFile) -> None:
        table = self.contract.table(table_file.table)
        exprs = self.exprs.get(table.name, {})
        for column in table.columns:
            if column.references != "customers" or column.name not in exprs:
                continue
            typed = exprs[column.name].typed
            # Not a correlated subquery: inside one, the bare column name would resolve to customers'.
            condition = f"({typed}) IS NOT NULL AND ({typed}) NOT IN (SELECT customer_id FROM customers)"
            orphans, ids = self.con.execute(
                f"SELECT count(*), count(DISTINCT ({typed})) FROM {self._raw(table.name)} WHERE {condition}"
            ).fetchall()[0]
            if orphans:
                self.add(
                    table_file,
                    column.name,
                    "references customers.customer_id",
                    f"{orphans:,} row(s) refer to {ids:,} customer id(s) that are not in the customers table",
                    "Add those customers to the customers table, or drop the orphan rows (check that ids have "
                    "the same form in both files, e.g. no leading zeros lost).",
                    self._examples(table_file, condition, [column.name]),
                )


def _null_type(kind: Kind, id_type: str) -> str:
    return {
        Kind.ID: id_type,
        Kind.DATE: "DATE",
        Kind.TIMESTAMP: "TIMESTAMP",
        Kind.TEXT: "VARCHAR",
        Kind.NUMBER: "DOUBLE",
        Kind.INTEGER: "BIGINT",
        Kind.BOOLEAN: "BOOLEAN",
    }[kind]
