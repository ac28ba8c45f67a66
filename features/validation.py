"""Enforcing the data contract with DuckDB, and exposing the validated, typed tables.

`load_tables` reads every contract table found in a folder, checks it (columns, types, missing values, keys,
foreign keys, date order, ranges, allowed values, time zones, CSV structure and encoding, and plausibility:
amounts, dates, overlapping subscriptions) and either raises `DataContractError`, which lists every problem
with the table, column, rule and a few offending rows, or returns a DuckDB connection holding one typed view
per table under its contract name.

The checks run as SQL over the files, so they work out of core on inputs larger than memory. A DuckDB error
while reading or checking a table (a damaged Parquet page, say) is a `readable` violation of that table, never
a traceback.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from features.contract import CONTRACT, Column, Contract, ContractSettings, Kind, SingleValued, Table
from features.errors import ConfigError
from features.io import (
    FILE_NAME,
    ROW_NUMBER,
    CsvProblem,
    TableFile,
    canonical_encoding,
    discover_tables,
    files_of,
    inspect_csv_header,
    parquet_columns,
    rejects_tables,
    scan_sql,
    schema_differences,
    undecodable_line,
    utf8_copies,
)
from features.mapping import TableMapping, parse_mapping, sources
from features.sql import identifier, literal, literal_list

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_EXAMPLES = 5
CAMPAIGNS = "campaigns"
DEFAULT_SETTINGS = ContractSettings()
# A UTC offset or 'Z' after a time of day, e.g. 2024-03-01T10:00:00+02:00, 2024-03-01 10:00Z, 10:00 +0200.
TZ_SUFFIX = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)$"
OFFSET_SPACE = r"\s+(Z|[+-]\d{2}(:?\d{2})?)$"  # a space before the offset, which DuckDB does not read
# A time zone name or abbreviation after a date or time, e.g. 2024-03-31 01:30:00 Europe/Paris, ... CET.
ZONE_SUFFIX = r"\d\s+([A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*)$"
ZONE_TAIL = r"\s+\S+$"
# Zone names without a '/' that are exact (UTC itself); other slashless names are abbreviations (CET, EST,
# PST, IST, BST, ...) whose meaning depends on who wrote them, unless they are IANA links with a lowercase
# letter (Japan, Singapore, Eire).
UTC_NAMES = {"utc", "uct", "gmt", "gmt0", "gmt+0", "gmt-0", "greenwich", "universal", "zulu"}
NOT_ZONES = {"am", "pm", "factory"}
INTEGER_TYPES = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
}  # fmt: skip
FLOAT_TYPES = {"FLOAT", "DOUBLE", "REAL"}
TIMESTAMP_TYPES = {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATETIME"}
TIMESTAMPTZ_TYPES = {"TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ", "TIMESTAMPTZ_NS"}
KIND_PHRASE = {
    Kind.ID: "customer ids",
    Kind.DATE: "dates (YYYY-MM-DD)",
    Kind.TIMESTAMP: "timestamps (YYYY-MM-DD HH:MM:SS, optionally with a UTC offset or an IANA time zone name)",
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
MAIN_DATE = CONTRACT.known_at  # the column dating each table's rows (declared in the contract)


def load_tables(
    tables_dir: Path | str,
    *,
    contract: Contract = CONTRACT,
    csv_delimiter: str = ",",
    csv_encoding: str = "utf-8",
    settings: ContractSettings = DEFAULT_SETTINGS,
    con: duckdb.DuckDBPyConnection | None = None,
    mapping: Mapping[str, Any] | None = None,
    derive_customers: bool = False,
) -> ValidatedTables:
    """Validate the tables in `tables_dir` against the contract and register typed views.

    `mapping` (`data.mapping`, see `features.mapping`) says under which file and column names the user's
    tables hold the contract's; `settings` (config group `contract`) are the plausibility bounds;
    `csv_encoding` (`data.csv_encoding`) the encoding of CSV files. Raises `ConfigError` naming the key when
    a setting does not fit the files (before any check), `DataContractError` listing every problem;
    `FileNotFoundError` if the folder does not exist. With `derive_customers`, a folder without a customers
    table gets one derived from each customer's first subscription, order or event (an orders-only or
    events-only export), and the report says so.
    """
    mappings = parse_mapping(mapping, contract)
    encoding = canonical_encoding(csv_encoding)
    tables_dir = Path(tables_dir)
    if tables_dir.is_file():
        raise ConfigError(
            f"data.path: {tables_dir} is a file, but data.path must be a folder holding one file per table "
            f"(customers.csv or customers.parquet, and subscriptions, orders or events the same way); a single "
            f"flat table with one row per customer is read with data=snapshot"
        )
    if not tables_dir.is_dir():
        raise FileNotFoundError(
            f"input folder {tables_dir} does not exist; generate demo data with `make data` or point "
            f"data.path at your tables"
        )
    con = con if con is not None else duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    checker = _Checker(con, contract, csv_delimiter, mappings, encoding=encoding, settings=settings)
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
        derived = checker.guarded(checked["customers"], checker.derive_customers, activity)
        if derived is not None:
            notes.append(derived)
            order, readable = ["customers", *order], ["customers", *readable]
            log.info("%s", notes[-1])
    for name in readable:
        log.info("checking %s (%s)", name, checked[name].path)
        if name == "customers":
            id_type = checker.customer_id_type()
        summary = checker.guarded(checked[name], checker.check_table, checked[name], id_type)
        if summary is not None:
            summaries[name] = summary
    if "customers" in summaries and not checker.failed("customers", "customer_id"):
        for name in order:
            if name in summaries and name != "customers":
                checker.guarded(checked[name], checker.check_foreign_keys, checked[name])
    if "events" in summaries and "event_types" in summaries and not checker.violations:
        named = checker.guarded(checked["event_types"], _name_event_types, con)
        if named is not None:
            notes.append(named)
    if checker.violations:
        # The tables that passed had typed views for the cross-table checks; a failed validation leaves none.
        for name in summaries:
            con.execute(f"DROP VIEW IF EXISTS {identifier(name)}")
        raise DataContractError([_in_users_names(v, mappings) for v in checker.violations])

    notes.extend(checker.notes)
    for name in order:
        extra = summaries[name].extra_columns
        if extra and name != "customers":
            notes.append(f"{name}: extra columns kept but not used by the contract: {', '.join(extra)}")
    absent = tuple(n for n in contract.table_names if n not in summaries)
    report = ValidationReport(tables_dir, summaries, absent, id_type, tuple(notes))
    log.info("validated %d table(s) in %s", len(summaries), tables_dir)
    return ValidatedTables(con, report, dict(files))


def example_rows(
    con: duckdb.DuckDBPyConnection, table_file: TableFile, condition: str, columns: list[str]
) -> tuple[str, ...]:
    """The first few rows of a table's input (as read, before typing) matching the SQL `condition`, as a person
    finds them: 'line 3: customer_id=2, action='upsell'' (CSV) or 'row 2: ...' (Parquet), with `columns`.

    Works on a connection `load_tables` validated (its raw input views stay registered), so a later stage can
    report broken rows as the contract checks do; `condition` reads the raw columns under their contract names.
    """
    shown = list(dict.fromkeys(columns))
    select = ", ".join(f"CAST({identifier(c)} AS VARCHAR)" for c in shown)
    rows = con.execute(
        f"SELECT {ROW_NUMBER}, {FILE_NAME}{', ' + select if select else ''} "
        f"FROM {identifier('raw_' + table_file.table)} WHERE {condition} ORDER BY {FILE_NAME}, {ROW_NUMBER} "
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


def check_campaign_actions(tables: ValidatedTables, catalogue: Collection[str]) -> None:
    """Refuse campaign rows whose action is not in `catalogue` (the names of actions.catalogue), naming the
    actions, their counts and lines: the rule `known_action` of campaigns.action, which needs the config."""
    if not tables.has(CAMPAIGNS):
        return

    def outside(column: str) -> str:
        return f"{column} NOT IN {literal_list(sorted(catalogue))}" if catalogue else "TRUE"

    unknown = tables.con.execute(
        f"SELECT action, count(*) FROM campaigns WHERE {outside('action')} GROUP BY action "
        f"ORDER BY count(*) DESC, action"
    ).fetchall()
    if not unknown:
        return
    total = sum(n for _, n in unknown)
    # The raw input, as the contract checks read it: text trimmed, blank as NULL.
    raw = f"NULLIF(trim(CAST({identifier('action')} AS VARCHAR)), '')"
    examples = example_rows(
        tables.con, tables.files[CAMPAIGNS], outside(raw), ["campaign_id", "customer_id", "action"]
    )
    listed = ", ".join(f"{action} ({n:,})" for action, n in unknown)
    raise DataContractError(
        [
            Violation(
                CAMPAIGNS,
                "action",
                "known_action",
                f"{total:,} row(s) name actions not in actions.catalogue: {listed}",
                f"Name each campaign's action as actions.catalogue does ({', '.join(sorted(catalogue))}), "
                f"or add the action to the catalogue.",
                examples,
                str(tables.files[CAMPAIGNS].path),
            )
        ]
    )


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


@dataclass
class _Expr:
    """How one contract column is read: the value as given (NULL when blank), its parsed form, and its typed
    form (parsed, with open-ended placeholders read as NULL).

    `excused` holds rows another rule reports (a time zone that cannot be converted), so `type` does not
    report them again; `checks` are that column's own extra rules."""

    present: str
    parsed: str
    typed: str
    raw: str
    excused: str = "false"
    checks: list[_Check] = field(default_factory=list)


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
        *,
        encoding: str = "utf-8",
        settings: ContractSettings = DEFAULT_SETTINGS,
    ):
        self.con = con
        self.contract = contract
        self.csv_delimiter = csv_delimiter
        self.encoding = encoding
        self.settings = settings
        self.mappings = dict(mappings or {})
        self.mapping_problems: list[str] = []
        self.violations: list[Violation] = []
        self.notes: list[str] = []
        self.raw_types: dict[str, dict[str, str]] = {}
        self.exprs: dict[str, dict[str, _Expr]] = {}
        self._zones: dict[str, str] | None = None

    # -- helpers ---------------------------------------------------------------------------------
    def add(self, table_file: TableFile, column: str | None, rule: str, message: str, hint: str = "",
            examples: tuple[str, ...] = (), source: Path | None = None) -> None:  # fmt: skip
        self.violations.append(
            Violation(table_file.table, column, rule, message, hint, examples, str(source or table_file.path))
        )

    def failed(self, table: str, column: str | None = None) -> bool:
        return any(v.table == table and (column is None or v.column == column) for v in self.violations)

    def _raw(self, table: str) -> str:
        return identifier(f"raw_{table}")

    def _examples(self, table_file: TableFile, condition: str, columns: list[str]) -> tuple[str, ...]:
        shown = [c for c in columns if c in self.raw_types[table_file.table]]
        return example_rows(self.con, table_file, condition, shown)

    def _id_columns(self, table: Table) -> list[str]:
        return [c.name for c in table.columns if c.kind == Kind.ID][:1]

    def guarded(self, table_file: TableFile, step: Callable[..., T], *args: Any) -> T | None:
        """Run one step of reading or checking a table; a DuckDB error becomes a `readable` violation of
        that table (a damaged data page only shows when the checks read it), never a traceback."""
        try:
            return step(*args)
        except duckdb.Error as error:
            self.unreadable(table_file, error, while_checking=True)
            return None

    def unreadable(
        self, table_file: TableFile, error: duckdb.Error | OSError, while_checking: bool = False
    ) -> None:
        """Report that (a file of) the table cannot be read, naming the file at fault when it can be found."""
        culprit, error = self._failing_file(table_file, error)
        first = "; ".join(line for line in str(error).splitlines()[:2] if line.strip())
        what = "the file" if culprit == table_file.path else culprit.name
        if while_checking:
            hint = (
                "The file is damaged (its footer reads, but a data page does not): export or copy it again. "
                "If it holds no damage, the message above says what DuckDB could not do."
            )
        else:
            hint = (
                "Check that the file is complete, in the format its extension says, and (CSV) comma-separated "
                "with a header line; set data.csv_delimiter for another delimiter."
            )
        self.add(
            table_file,
            None,
            "readable",
            f"{what} cannot be read as {table_file.format.upper()}: {first}",
            hint,
            source=culprit,
        )

    def _failing_file(
        self, table_file: TableFile, error: duckdb.Error | OSError
    ) -> tuple[Path, duckdb.Error | OSError]:
        """The part file that fails to read in full (and its own error), for a folder of Parquet parts."""
        if table_file.format != "parquet" or not table_file.path.is_dir():
            return table_file.path, error
        for file in files_of(table_file):
            try:
                self.con.execute(f"SELECT max(hash(COLUMNS(*))) FROM read_parquet({literal(str(file))})")
            except duckdb.Error as own:
                return file, own
        return table_file.path, error

    # -- reading -----------------------------------------------------------------------------------
    def read(self, table_file: TableFile) -> bool:
        """Register the raw table; report unreadable files, part files of different schemas, and CSV files
        that are not text in the encoding, split on another delimiter, repeat a header or have malformed
        lines."""
        try:
            return self._read(table_file)
        except (duckdb.Error, OSError) as error:  # OSError: a file the header check cannot open
            self.unreadable(table_file, error)
            return False

    def _read(self, table_file: TableFile) -> bool:
        name = table_file.table
        files = files_of(table_file)
        raw = self._raw(name)
        if table_file.format == "csv":
            schemas: dict[Path, dict[str, str]] = {}
            fine = True
            for file in files:
                header, problems = inspect_csv_header(file, self.csv_delimiter, self.encoding)
                for problem in problems:
                    self._csv_problem(table_file, file, problem)
                fine = fine and not problems
                schemas[file] = {column: "VARCHAR" for column in header}
            if not fine or not self._same_schema(table_file, schemas):
                return False
            # CSV is parsed once into a temporary table (from a UTF-8 copy if it is in another encoding).
            with utf8_copies(files, self.encoding) as copies:
                for file, problem in copies.problems.items():
                    self._csv_problem(table_file, file, problem)
                if copies.problems:
                    return False
                sql = scan_sql(table_file, self.csv_delimiter, readable=copies.paths)
                self.con.execute(f"CREATE OR REPLACE TEMP TABLE {raw} AS {sql}")
            if not self._check_csv_rejects(table_file):
                return False
            kind = "TABLE"
        else:
            if len(files) > 1 and not self._same_schema(
                table_file, {file: parquet_columns(self.con, file) for file in files}
            ):
                return False
            # Parquet is scanned in place.
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW {raw} AS {scan_sql(table_file)}")
            kind = "VIEW"
        described = self.con.execute(f"DESCRIBE {raw}").fetchall()
        self.raw_types[name] = {
            row[0]: str(row[1]) for row in described if row[0] not in (ROW_NUMBER, FILE_NAME)
        }
        if name in self.mappings:
            return self._rename(table_file, self.mappings[name], kind)
        return True

    def _csv_problem(self, table_file: TableFile, file: Path, problem: CsvProblem) -> None:
        prefix = f"{file.name} " if table_file.path.is_dir() else ""
        self.add(
            table_file,
            problem.column,
            problem.rule,
            problem.message,
            problem.hint,
            tuple(prefix + example for example in problem.examples),
            source=file,
        )

    def _same_schema(self, table_file: TableFile, schemas: Mapping[Path, Mapping[str, str]]) -> bool:
        differences = schema_differences(schemas)
        if differences:
            first = next(iter(schemas))
            self.add(
                table_file,
                None,
                "same_schema",
                f"{len(differences)} of {len(schemas)} part files do not have the columns of {first.name}",
                "Export every part with the same columns and types (a column renamed or retyped in one part "
                "would read as two half-empty columns, or as wrong values).",
                tuple(differences[:MAX_EXAMPLES]),
            )
            return False
        return True

    def derive_customers(self, activity: list[str]) -> str:
        """Register a raw customers table derived from the activity tables: one row per customer id seen,
        signed up on the day of their first subscription start, order or event. Returns what was done."""
        first = {"subscriptions": "start_date", "orders": "order_date", "events": "event_time"}
        parts = " UNION ALL ".join(
            f"SELECT customer_id, TRY_CAST(left(CAST({identifier(first[t])} AS VARCHAR), 10) AS DATE) "
            f"AS first_date FROM {self._raw(t)}"
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
            renamed = ", ".join(f"{identifier(s)} AS {identifier(c)}" for s, c in renames.items())
            stage = identifier(f"raw_{mapping.table}_as_given")
            self.con.execute(f"ALTER {kind} {self._raw(mapping.table)} RENAME TO {stage}")
            self.con.execute(
                f"CREATE OR REPLACE TEMP VIEW {self._raw(mapping.table)} AS SELECT * RENAME ({renamed}) FROM {stage}"
            )
            self.raw_types[mapping.table] = {renames.get(c, c): t for c, t in raw.items()}
        return True

    def _check_csv_rejects(self, table_file: TableFile) -> bool:
        rejected = []
        badly_encoded: list[Path] = []
        for file, rejects in zip(files_of(table_file), rejects_tables(table_file), strict=True):
            rows = self.con.execute(
                f"SELECT line, error_type, error_message, csv_line FROM {identifier(rejects)} ORDER BY line"
            ).fetchall()
            if any(error_type == "INVALID ENCODING" for _, error_type, _, _ in rows):
                badly_encoded.append(file)
            rejected += [row for row in rows if row[1] != "INVALID ENCODING"]
        for file in badly_encoded:
            problem = undecodable_line(file, self.encoding)
            if problem is None:  # DuckDB saw what Python does not: say what DuckDB said
                problem = CsvProblem(
                    "encoding",
                    f"the file is not valid {self.encoding} text",
                    "Save the file as UTF-8, or set data.csv_encoding to the encoding it was saved in.",
                )
            self._csv_problem(table_file, file, problem)
        if not rejected:
            return not badly_encoded
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
            expr = self._expression(table_file, column, raw_types[column.name], id_type, show_key)
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
        if table.grid_date in exprs:
            checks.extend(self._grid_date_check(table, exprs[table.grid_date], show_key))
        extra = [c for c in raw_types if c not in {col.name for col in table.columns}]
        self._run_checks(table_file, rows, checks, decode=extra if table_file.format == "parquet" else [])
        self._check_mixed_time_zones(table_file, table, raw_types, show_key)
        self.exprs[name] = exprs
        for rule in table.single_valued:
            if all(c in exprs for c in (*rule.key, rule.column)):
                self._check_single_valued(table_file, rule, exprs, rows)
        if table.unique_key and all(k in exprs for k in table.unique_key):
            self._check_unique(table_file, table, exprs, rows)
        if table.periods is not None and not self.failed(name):
            self._check_overlaps(table_file, table, exprs, rows)
        if self.failed(name):
            return None
        self._note_open_ends(table, exprs)
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

    def _expression(
        self, table_file: TableFile, column: Column, raw_type: str, id_type: str, show_key: list[str]
    ) -> _Expr | None:
        """Typed SQL for a column, or None (and a violation) when its storage type cannot hold the kind."""
        c = identifier(column.name)
        base = raw_type.split("(")[0]
        text = base == "VARCHAR"
        present = f"NULLIF(trim({c}), '')" if text else c
        if not text and base in FLOAT_TYPES:
            present = f"CASE WHEN isnan({c}) THEN NULL ELSE {c} END"
        kind = column.kind
        excused = "false"
        extra_checks: list[_Check] = []
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
            elif base in TIMESTAMPTZ_TYPES:
                typed = f"CAST({c} AT TIME ZONE 'UTC' AS DATE)"
            else:
                return self._storage(table_file, column, raw_type)
        elif kind == Kind.TIMESTAMP:
            if text:
                typed, excused, extra_checks = self._timestamp_text(table_file, column, present, show_key)
            elif base in TIMESTAMP_TYPES or base == "DATE":
                typed = f"CAST({c} AS TIMESTAMP)"
            elif base in TIMESTAMPTZ_TYPES:  # Parquet stores these as UTC instants: exact
                typed = f"CAST({c} AT TIME ZONE 'UTC' AS TIMESTAMP)"
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
        parsed = typed
        if column.open_end and self.settings.open_end_dates:
            typed = (
                f"CASE WHEN CAST(({parsed}) AS DATE) IN {literal_list(self.settings.open_end_dates)} "
                f"THEN NULL ELSE ({parsed}) END"
            )
        return _Expr(present, parsed, typed, c, excused, extra_checks)

    def _storage(self, table_file: TableFile, column: Column, raw_type: str) -> None:
        self.add(
            table_file,
            column.name,
            "type",
            f"column is stored as {raw_type}, which cannot hold {KIND_PHRASE[column.kind]}",
            f"Store '{column.name}' as {KIND_PHRASE[column.kind]} (or as ISO text). {PARSE_HINT[column.kind]}",
        )
        return None

    # -- time zones ---------------------------------------------------------------------------------
    def _zone_names(self) -> dict[str, str]:
        """Time zone names that convert exactly, lower-cased -> as ICU spells them: IANA names (Europe/Paris,
        America/New_York, Etc/GMT+5), their links with a lowercase letter (Japan) and UTC / GMT."""
        if self._zones is None:
            names = [r[0] for r in self.con.execute("SELECT name FROM pg_timezone_names()").fetchall()]
            self._zones = {
                n.lower(): n
                for n in names
                if n.lower() in UTC_NAMES or (n.lower() not in NOT_ZONES and ("/" in n or n != n.upper()))
            }
        return self._zones

    def _timestamp_text(
        self, table_file: TableFile, column: Column, value: str, show_key: list[str]
    ) -> tuple[str, str, list[_Check]]:
        """The UTC instant of a text timestamp, which rows another rule reports, and those rules.

        A value with an offset (+02:00, Z) is converted to UTC; one with an IANA zone name (Europe/Paris) is
        converted exactly, unless its local time does not exist or occurs twice there (a daylight-saving
        change), and an abbreviation (CET, EST) or unknown name is refused: DuckDB would read the first with
        the zone silently dropped, and guess at the others. A value without either is taken as it is."""
        offset = f"regexp_matches({value}, {literal(TZ_SUFFIX)})"
        named = f"(NOT {offset} AND regexp_matches({value}, {literal(ZONE_SUFFIX)}))"
        with_offset = f"TRY_CAST(regexp_replace({value}, {literal(OFFSET_SPACE)}, '\\1') AS TIMESTAMPTZ) AT TIME ZONE 'UTC'"
        token = f"regexp_extract({value}, {literal(ZONE_SUFFIX)}, 1)"
        found = [
            r[0]
            for r in self.con.execute(
                f"SELECT DISTINCT {token} FROM {self._raw(table_file.table)} WHERE {value} IS NOT NULL AND {named}"
            ).fetchall()
        ]
        naive = f"TRY_CAST({value} AS TIMESTAMP)"
        if not found:
            return f"CASE WHEN {offset} THEN {with_offset} ELSE {naive} END", "false", []
        zones = self._zone_names()
        exact = {t: zones[t.lower()] for t in found if t.lower() in zones}
        abbreviations = sorted(
            t for t in found if t not in exact and "/" not in t and t.lower() not in NOT_ZONES
        )
        unknown = sorted(
            t for t in found if t not in exact and t not in abbreviations and t.lower() not in NOT_ZONES
        )
        zone = (
            f"CASE {token} {' '.join(f'WHEN {literal(t)} THEN {literal(z)}' for t, z in exact.items())} END"
            if exact
            else "CAST(NULL AS VARCHAR)"
        )
        local = f"TRY_CAST(regexp_replace({value}, {literal(ZONE_TAIL)}, '') AS TIMESTAMP)"
        in_zone = _exact_instant(local, zone)
        typed = f"CASE WHEN {offset} THEN {with_offset} WHEN {named} THEN {in_zone} ELSE {naive} END"
        show = [*show_key, column.name]
        checks = []
        if abbreviations:
            checks.append(
                _Check(
                    column.name,
                    "time_zone",
                    f"{named} AND {token} IN {literal_list(abbreviations)}",
                    f"a time zone abbreviation ({', '.join(abbreviations[:6])}), which does not say its UTC "
                    f"offset exactly",
                    show,
                    "Write an IANA zone name (Europe/Paris, America/New_York) or an offset (+01:00) instead: "
                    "abbreviations mean different offsets to different writers (CST: US Central, China or "
                    "Cuba; IST: India, Ireland or Israel; BST: British Summer or Bangladesh; CET in summer).",
                )
            )
        if unknown:
            checks.append(
                _Check(
                    column.name,
                    "time_zone",
                    f"{named} AND {token} IN {literal_list(unknown)}",
                    f"a time zone name that is not in the IANA time zone database ({', '.join(unknown[:6])})",
                    show,
                    "Use an IANA zone name such as Europe/Paris or America/New_York (case does not matter), or "
                    "an offset such as +01:00.",
                )
            )
        if exact:
            checks.append(
                _Check(
                    column.name,
                    "time_zone",
                    f"{named} AND {token} IN {literal_list(list(exact))} AND {local} IS NOT NULL "
                    f"AND ({in_zone}) IS NULL",
                    "a local time that does not exist or occurs twice in its zone (a daylight-saving change), "
                    "so its instant is not exact",
                    show,
                    "Give these values a UTC offset (e.g. 2024-10-27 02:30:00+01:00), which says which instant "
                    "is meant.",
                )
            )
        # The rows these rules report are not reported again as values that are not timestamps.
        reported = [f"{token} IN {literal_list(abbreviations + unknown)}"] if abbreviations or unknown else []
        if exact:
            reported.append(f"({token} IN {literal_list(list(exact))} AND {local} IS NOT NULL)")
        excused = f"({named} AND ({' OR '.join(reported)}))" if reported else "false"
        return typed, excused, checks

    # -- row rules ----------------------------------------------------------------------------------
    def _column_checks(self, column: Column, expr: _Expr, show_key: list[str]) -> list[_Check]:
        show = [*show_key, column.name]
        checks = [
            *expr.checks,
            _Check(column.name, "type", f"{expr.present} IS NOT NULL AND ({expr.parsed}) IS NULL AND NOT {expr.excused}",
                   f"values that are not {KIND_PHRASE[column.kind]}", show, PARSE_HINT[column.kind]),
        ]  # fmt: skip
        if not column.nullable:
            checks.append(
                _Check(column.name, "not_null", f"{expr.present} IS NULL", "empty values", show,
                       f"Fill in '{column.name}' ({column.description}) or drop those rows.")
            )  # fmt: skip
        low, high = column.min_value, column.max_value
        if low is not None and column.exclusive_min:
            # An open lower bound: one rule for the interval, "(0, 1]", or "> 0" without an upper bound.
            interval = f"({low:g}, {high:g}]" if high is not None else f"> {low:g}"
            above = f" OR ({expr.typed}) > {high}" if high is not None else ""
            checks.append(
                _Check(column.name, interval, f"({expr.typed}) <= {low}{above}",
                       f"values outside {interval}" if high is not None else f"values of {low:g} or below", show,
                       f"'{column.name}' must be above {low:g}"
                       + (f" and at most {high:g}" if high is not None else "") + f": {column.description}")
            )  # fmt: skip
        elif low is not None:
            checks.append(
                _Check(column.name, f">= {low:g}", f"({expr.typed}) < {low}",
                       f"values below {low:g}", show,
                       f"'{column.name}' must be at least {low:g}: {column.description}")
            )  # fmt: skip
        if high is not None and not (column.exclusive_min and low is not None):  # else in the interval
            checks.append(
                _Check(column.name, f"<= {column.max_value:g}", f"({expr.typed}) > {column.max_value}",
                       f"values above {column.max_value:g}", show,
                       f"'{column.name}' must be at most {column.max_value:g}: {column.description}")
            )  # fmt: skip
        if column.money:
            most = self.settings.max_amount
            checks.append(
                _Check(column.name, "plausible_amount", f"({expr.typed}) > {literal(float(most))}",
                       f"amounts above {most:,.0f} (contract.max_amount), more than any real business charges",
                       show,
                       "Correct these amounts (a value in the wrong unit, digits pasted twice, a placeholder such "
                       "as 999999999999?); raise contract.max_amount only if they are real.")
            )  # fmt: skip
        if column.kind in (Kind.DATE, Kind.TIMESTAMP):
            earliest, latest = self.settings.earliest_date, self.settings.latest_date
            day = f"CAST(({expr.typed}) AS DATE)"
            placeholders = self.settings.open_end_dates
            open_hint = (
                f" Open-ended placeholders ({', '.join(str(d) for d in placeholders[:3])}"
                f"{', ...' if len(placeholders) > 3 else ''}: contract.open_end_dates) already read as open."
                if column.open_end and placeholders
                else ""
            )
            checks.append(
                _Check(column.name, "plausible_date", f"{day} < {literal(earliest)} OR {day} > {literal(latest)}",
                       f"dates outside {earliest} .. {latest} (contract.earliest_date, contract.latest_date)",
                       show,
                       "Correct these dates" + (" or leave them empty" if column.nullable else "")
                       + f" (a placeholder for an unknown date?).{open_hint} Widen contract.earliest_date / "
                       "contract.latest_date only if such dates are real.")
            )  # fmt: skip
        if column.allowed:
            checks.append(
                _Check(column.name, "allowed_values", f"({expr.typed}) NOT IN {literal_list(column.allowed)}",
                       f"values outside {', '.join(column.allowed)}", show,
                       f"Map your values onto {', '.join(column.allowed)}.")
            )  # fmt: skip
        return checks

    def _grid_date_check(self, table: Table, expr: _Expr, show_key: list[str]) -> list[_Check]:
        """Rows of a grid date column far before the table's latest date (one stray old row would stretch the
        observation grid back by decades)."""
        earliest, latest = self.settings.earliest_date, self.settings.latest_date
        column = table.grid_date
        assert column is not None
        day = f"CAST(({expr.typed}) AS DATE)"
        months = max(1, round(self.settings.max_years_before_latest * 12))
        reference, cutoff = self.con.execute(
            f"SELECT max(d), CAST(max(d) - to_months({months}) AS DATE) FROM (SELECT {day} AS d "
            f"FROM {self._raw(table.name)} WHERE {day} BETWEEN {literal(earliest)} AND {literal(latest)})"
        ).fetchall()[0]
        if reference is None:
            return []
        return [
            _Check(
                column,
                "near_latest_date",
                f"{day} < {literal(cutoff)} AND {day} >= {literal(earliest)}",
                f"dates more than {self.settings.max_years_before_latest:g} years before the table's latest "
                f"{column} ({reference}), far from the rest of the data",
                [*show_key, column],
                "Correct or drop these rows (a placeholder such as 1900-01-01 or 1970-01-01 for an unknown date?): "
                "they would stretch the observation grid back by decades. Raise "
                "contract.max_years_before_latest only if the table really spans that long.",
            )
        ]

    def _run_checks(
        self, table_file: TableFile, rows: int, checks: list[_Check], decode: list[str] | None = None
    ) -> None:
        """Count every rule's offending rows in one scan (which also decodes the `decode` columns, so a damaged
        page of a column no rule reads is found now, not by a later stage), and report each broken rule."""
        if not checks and not decode:
            return
        filters = [f"count(*) FILTER (WHERE {check.condition})" for check in checks]
        if decode:
            filters.append(f"max(hash({', '.join(identifier(c) for c in decode)}))")
        counts = self.con.execute(
            f"SELECT {', '.join(filters)} FROM {self._raw(table_file.table)}"
        ).fetchall()[0][: len(checks)]
        unparsed: set[str] = set()
        for check, count in zip(checks, counts, strict=True):
            # A value that does not parse is reported once, not again as out of range.
            if not count or (
                check.column in unparsed and check.rule not in ("type", "not_null", "time_zone")
            ):
                continue
            if check.rule in ("type", "time_zone"):
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
            value = f"NULLIF(trim({identifier(column.name)}), '')"
            offset = f"regexp_matches({value}, {literal(TZ_SUFFIX)})"
            named = f"regexp_matches({value}, {literal(ZONE_SUFFIX)})"
            with_tz = f"{value} IS NOT NULL AND ({offset} OR {named})"
            without_tz = f"{value} IS NOT NULL AND NOT ({offset} OR {named})"
            n_with, n_without, n_named = self.con.execute(
                f"SELECT count(*) FILTER (WHERE {with_tz}), count(*) FILTER (WHERE {without_tz}), "
                f"count(*) FILTER (WHERE {value} IS NOT NULL AND NOT {offset} AND {named}) "
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
                    f"mixed time zones: {n_with:,} values carry a UTC offset"
                    f"{' or a time zone name' if n_named else ''} and {n_without:,} do not, so the instants of "
                    f"the latter are ambiguous",
                    "Give every value an offset (e.g. +00:00) or none; values with offsets are converted to UTC.",
                    examples,
                )

    def _check_unique(self, table_file: TableFile, table: Table, exprs: dict[str, _Expr], rows: int) -> None:
        key = ", ".join(f"({exprs[k].typed})" for k in table.unique_key)
        # Keys whose rows contradict each other are a single_valued problem, reported as such, not again here.
        having = "".join(
            f" AND count(DISTINCT ({exprs[rule.column].typed})) <= 1"
            for rule in table.single_valued
            if rule.key == table.unique_key and rule.column in exprs
        )
        duplicated = self.con.execute(
            f"SELECT {key}, count(*) AS n, list({ROW_NUMBER} ORDER BY {ROW_NUMBER})[1:3] "
            f"FROM {self._raw(table.name)} WHERE ({exprs[table.unique_key[0]].typed}) IS NOT NULL "
            f"GROUP BY ALL HAVING count(*) > 1{having} ORDER BY n DESC, 1 LIMIT {MAX_EXAMPLES}"
        ).fetchall()
        if not duplicated:
            return
        total = self.con.execute(
            f"SELECT count(*), sum(n) FROM (SELECT count(*) AS n FROM {self._raw(table.name)} "
            f"WHERE ({exprs[table.unique_key[0]].typed}) IS NOT NULL GROUP BY {key} HAVING count(*) > 1{having})"
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

    def _check_single_valued(
        self, table_file: TableFile, rule: SingleValued, exprs: dict[str, _Expr], rows: int
    ) -> None:
        """Keys whose rows hold more than one value of `rule.column` (a customer both treated and control in
        one campaign), with the lines of each."""
        key = ", ".join(f"({exprs[k].typed})" for k in rule.key)
        value = f"({exprs[rule.column].typed})"
        not_null = " AND ".join(f"({exprs[k].typed}) IS NOT NULL" for k in rule.key)
        found = self.con.execute(
            f"SELECT count(*) OVER (), sum(n) OVER (), * EXCLUDE (n) FROM ("
            f"SELECT {key}, count(*) AS n, list({ROW_NUMBER} ORDER BY {ROW_NUMBER})[1:4] AS r, "
            f"list(DISTINCT CAST({value} AS VARCHAR) ORDER BY CAST({value} AS VARCHAR)) AS v "
            f"FROM {self._raw(table_file.table)} WHERE {not_null} AND {value} IS NOT NULL "
            f"GROUP BY ALL HAVING count(DISTINCT {value}) > 1) ORDER BY r[1] LIMIT {MAX_EXAMPLES}"
        ).fetchall()
        if not found:
            return
        width = len(rule.key)
        examples = tuple(
            ", ".join(
                f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                for k, v in zip(rule.key, row[2 : 2 + width], strict=True)
            )
            + f" holds {rule.column}={' and '.join(row[-1])}, at {', '.join(table_file.where(r) for r in row[-2])}"
            for row in found
        )
        names = ", ".join(rule.key)
        self.add(
            table_file,
            rule.column,
            "single_valued",
            f"{found[0][0]:,} value(s) of {names} hold more than one {rule.column} ({found[0][1]:,} of {rows:,} "
            f"rows): {rule.meaning}",
            rule.hint,
            examples,
        )

    def _check_overlaps(
        self, table_file: TableFile, table: Table, exprs: dict[str, _Expr], rows: int
    ) -> None:
        """Rows whose period [start, end) overlaps an earlier row's of the same key (an empty end is open)."""
        periods = table.periods
        assert periods is not None
        if self.settings.allow_overlapping_subscriptions or not all(
            c in exprs for c in (*periods.key, periods.start, periods.end)
        ):
            return
        keys = [f"({exprs[k].typed}) AS {identifier('k_' + k)}" for k in periods.key]
        key_names = [identifier("k_" + k) for k in periods.key]
        start, end = exprs[periods.start].typed, exprs[periods.end].typed
        found = self.con.execute(
            f"""WITH given AS (
                    SELECT {", ".join(keys)}, {FILE_NAME} AS f, {ROW_NUMBER} AS r, ({start}) AS s, ({end}) AS e
                    FROM {self._raw(table.name)}
                ), periods AS (
                    SELECT * FROM given
                    WHERE {" AND ".join(f"{k} IS NOT NULL" for k in key_names)} AND s IS NOT NULL
                      AND (e IS NULL OR e > s)  -- an empty period [s, s) overlaps nothing
                ), ordered AS (
                    SELECT *, max(coalesce(e, DATE 'infinity')) OVER earlier AS earlier_end,
                           arg_max({{'f': f, 'r': r, 's': s, 'e': e}}, coalesce(e, DATE 'infinity')) OVER earlier
                               AS other
                    FROM periods
                    WINDOW earlier AS (PARTITION BY {", ".join(key_names)} ORDER BY s, f, r
                                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                )
                SELECT count(*) OVER (), {", ".join(key_names)}, f, r, s, e, other FROM ordered
                WHERE s < earlier_end ORDER BY f, r LIMIT {MAX_EXAMPLES}"""
        ).fetchall()
        if not found:
            return

        def period(start_day: date, end_day: date | None) -> str:
            return f"{start_day} .. {end_day if end_day is not None else 'open'}"

        width = len(periods.key)
        examples = []
        for row in found:
            key_text = ", ".join(
                f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                for k, v in zip(periods.key, row[1 : 1 + width], strict=True)
            )
            f, r, s, e, other = row[1 + width :]
            examples.append(
                f"{key_text}: {table_file.where(r, f)} ({period(s, e)}) overlaps "
                f"{table_file.where(other['r'], other['f'])} ({period(other['s'], other['e'])})"
            )
        names = " and ".join(periods.key)
        self.add(
            table_file,
            ",".join(periods.key),
            "no_overlapping_periods",
            f"{found[0][0]:,} of {rows:,} rows overlap the period [{periods.start}, {periods.end}) of an earlier "
            f"row with the same {names} ({periods.meaning})",
            periods.hint,
            tuple(examples),
        )

    def _note_open_ends(self, table: Table, exprs: dict[str, _Expr]) -> None:
        """Say how many end dates were open-ended placeholders read as open."""
        placeholders = literal_list(self.settings.open_end_dates) if self.settings.open_end_dates else None
        for column in table.columns:
            if not column.open_end or column.name not in exprs or placeholders is None:
                continue
            day = f"CAST(({exprs[column.name].parsed}) AS DATE)"
            count, seen = self.con.execute(
                f"SELECT count(*), list(DISTINCT CAST({day} AS VARCHAR) ORDER BY CAST({day} AS VARCHAR)) "
                f"FROM {self._raw(table.name)} WHERE {day} IN {placeholders}"
            ).fetchall()[0]
            if count:
                self.notes.append(
                    f"{table.name}.{column.name}: {count:,} row(s) dated {', '.join(seen)} (open-ended "
                    f"placeholders, contract.open_end_dates) read as open (empty)"
                )

    def _register_typed(
        self, table_file: TableFile, table: Table, exprs: dict[str, _Expr], rows: int
    ) -> TableSummary:
        raw_types = self.raw_types[table.name]
        known = {c.name for c in table.columns}
        extra = [c for c in raw_types if c not in known]
        select = [f"{e.typed} AS {identifier(n)}" for n, e in exprs.items()]
        # Optional contract columns that are absent become typed NULLs, so later SQL can rely on them.
        for column in table.columns:
            if column.name not in exprs:
                select.append(
                    f"CAST(NULL AS {_null_type(column.kind, self.customer_id_type())}) AS {identifier(column.name)}"
                )
        select += [identifier(c) for c in extra]
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {identifier(table.name)} AS SELECT {', '.join(select)} "
            f"FROM {self._raw(table.name)}"
        )
        first = last = None
        date_column = MAIN_DATE.get(table.name)
        if date_column in exprs:
            first, last = self.con.execute(
                f"SELECT CAST(min({identifier(date_column)}) AS VARCHAR), "
                f"CAST(max({identifier(date_column)}) AS VARCHAR) FROM {identifier(table.name)}"
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


def _exact_instant(local: str, zone: str) -> str:
    """SQL for the UTC instant (TIMESTAMP) at which the wall clock of `zone` reads `local`, or NULL when
    there is none (a skipped hour) or two (a repeated hour): the offsets in force 12 hours before and after
    give the only candidates, and a candidate counts when it reads back as `local`."""
    guess = f"timezone({zone}, {local})"  # ICU's pick, a TIMESTAMPTZ near the answer

    def offset(at: str) -> str:
        return f"(timezone({zone}, {at}) - timezone('UTC', {at}))"

    before = f"({local} - {offset(f'({guess} - INTERVAL 12 HOUR)')})"
    after = f"({local} - {offset(f'({guess} + INTERVAL 12 HOUR)')})"

    def reads_back(candidate: str) -> str:
        return f"(timezone({zone}, timezone('UTC', {candidate})) = {local})"

    return (
        f"CASE WHEN {reads_back(before)} AND {reads_back(after)} AND {before} <> {after} THEN NULL "
        f"WHEN {reads_back(before)} THEN {before} WHEN {reads_back(after)} THEN {after} END"
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
