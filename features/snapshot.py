"""One flat table per customer (a "snapshot" such as the public telecom churn layout) as features and labels.

A snapshot has no time axis: one row per customer, the customer's attributes as columns (demographics,
services held with values such as Yes / No / No internet service, tenure, contract, charges) and, for
training, a churn column. `data=snapshot` (conf/data/snapshot.yaml) names the id, label and tenure columns,
the columns to drop, and optional roles: the monthly revenue column, the contract column with its term in
months per value, the product columns by product group, and a segment column.

Every other column becomes one feature, typed from its values unless `data.types` says otherwise:
- numeric: every non-blank value is a number (blanks, such as the blank totals of new customers, are empty);
- binary: every non-blank value is one of `true_values` / `false_values` (1 / 0);
- categorical: anything else (at most `max_categories` distinct values; a column with more is dropped and
  the run says so).
Roles add the features the decision layer knows: `tenure_days`, `monthly_revenue`, `max_term_months` and
`month_to_month_share`, `active_products` (bundle count) and `categories_held` (cross-sell depth: product
groups with at least one product held), `segment`.

Each feature is a row-level SQL expression over the raw table, recorded in the feature manifest, so scoring
evaluates exactly the expressions training used on a table of the same shape (the label may be absent).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from features.dates import config_date
from features.engine import IDENTIFIER, KEYS, FeatureDef
from features.errors import ConfigError
from features.io import (
    ROW_NUMBER,
    CsvProblem,
    TableFile,
    canonical_encoding,
    file_list,
    inspect_csv_header,
    undecodable_line,
    utf8_copies,
)
from features.labels import DAYS_PER_MONTH
from features.sql import identifier, literal, literal_list

log = logging.getLogger(__name__)

RAW = "snapshot_raw"
TABLE = "snapshot"
KINDS = ("numeric", "binary", "categorical")
DAYS_PER = {"days": 1.0, "weeks": 7.0, "months": 30.4375, "years": 365.25}
RESERVED = {*KEYS, "churned", "label_status"}
EXAMPLES = 5
ASSUMED_PERIOD_MONTHS = 1  # what `data.label.assume: true` accepts: "left within the last month"
PERIOD_HELP = (
    "the period the churn column covers, in months: 1 if it means 'left within the last month', 12 if "
    "'churned within the year'; retention per month, expected lifetime and lifetime value are computed from it"
)


@dataclass(frozen=True)
class LabelPeriod:
    """The period a snapshot's churn column covers (`data.label.period_months`), or the stated default
    accepted with `data.label.assume: true`."""

    months: float
    assumed: bool = False

    @property
    def days(self) -> float:
        """The period in days (30.44 days a month, not rounded: a month's retention is exactly that of
        one month), the snapshot label's `horizon_days`."""
        return self.months * DAYS_PER_MONTH

    @property
    def span(self) -> str:
        """'12 months (365 days)'."""
        return f"{self.months:g} month" + ("" if self.months == 1 else "s") + f" ({self.days:.0f} days)"

    def describe(self) -> str:
        """The span, with ', assumed ...' when taken from `data.label.assume`."""
        return self.span + (
            ", assumed (data.label.assume; set data.label.period_months)" if self.assumed else ""
        )


def label_period(label: Mapping[str, Any]) -> LabelPeriod:
    """The churn column's period from `data.label`: `period_months`, or with `assume: true` the stated default
    of one month; neither stops the run naming `data.label.period_months`."""
    months, assume = label.get("period_months"), label.get("assume", False)
    if not isinstance(assume, bool):
        raise ConfigError(f"data.label.assume must be true or false, got {assume!r}")
    if months is None:
        if assume:
            return LabelPeriod(float(ASSUMED_PERIOD_MONTHS), assumed=True)
        raise ConfigError(
            f"data.label.period_months is not set: {PERIOD_HELP}. Set it (e.g. data.label.period_months=12), "
            f"or data.label.assume=true to accept {ASSUMED_PERIOD_MONTHS} month (every summary then says 'assumed')"
        )
    if isinstance(months, bool) or not isinstance(months, int | float) or not 0 < months <= 120:
        raise ConfigError(
            f"data.label.period_months: {months!r} is not a number of months above 0 and at most 120 ({PERIOD_HELP})"
        )
    return LabelPeriod(float(months))


@dataclass(frozen=True)
class ContractRole:
    """The contract-type column and the term in months each of its values means."""

    column: str
    term_months: dict[str, float]


@dataclass(frozen=True)
class SnapshotSpec:
    """What `data=snapshot` says about the table (conf/data/snapshot.yaml)."""

    path: Path
    id_column: str
    label_column: str | None
    positive: str
    negative: str | None
    tenure_column: str | None = None
    tenure_unit: str = "months"
    drop: tuple[str, ...] = ()
    types: dict[str, str] = field(default_factory=dict)
    true_values: tuple[str, ...] = ("yes", "true", "y")
    false_values: tuple[str, ...] = ("no", "false", "n")
    max_categories: int = 50
    monthly_revenue: str | None = None
    contract: ContractRole | None = None
    products: dict[str, tuple[str, ...]] = field(default_factory=dict)
    not_held: tuple[str, ...] = ("no", "0", "false", "none", "")
    segment: str | None = None
    as_of: date | None = None
    csv_delimiter: str = ","
    csv_encoding: str = "utf-8"  # canonical (features.io.canonical_encoding)

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> SnapshotSpec:
        """Read `data.*`; a setting of the wrong shape stops here, naming its key."""

        def text(key: str, value: Any, optional: bool = False) -> str | None:
            if value is None and optional:
                return None
            if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
                raise ConfigError(f"data.{key} must be a column name, got {value!r}")
            return str(value)

        def names(key: str, value: Any) -> tuple[str, ...]:
            if value is None:
                return ()
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise ConfigError(f"data.{key} must be a list of column names, got {value!r}")
            return tuple(text(key, v) for v in value)  # type: ignore[misc]

        def values(key: str, value: Any) -> tuple[str, ...]:
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise ConfigError(f"data.{key} must be a list of values, got {value!r}")
            return tuple(str(v).strip().lower() for v in value)

        known = {
            "name", "kind", "path", "truth_path", "csv_delimiter", "csv_encoding", "generate_if_missing",
            "generator", "as_of",
            "id_column", "label", "tenure", "drop", "types", "true_values", "false_values", "max_categories",
            "roles",
        }  # fmt: skip
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"data: unknown setting(s) {unknown} for data=snapshot (known: {sorted(known)})"
            )
        label = data.get("label") or {}
        if not isinstance(label, Mapping) or set(label) - {
            "column",
            "positive",
            "negative",
            "period_months",
            "assume",
        }:
            raise ConfigError(
                f"data.label must be {{column, positive, negative, period_months, assume}}, got {label!r}"
            )
        if label.get("column") is not None and label.get("positive") is None:
            raise ConfigError(
                "data.label.positive: the value of the label column that means churned is required"
            )
        tenure = data.get("tenure") or {}
        if not isinstance(tenure, Mapping) or set(tenure) - {"column", "unit"}:
            raise ConfigError(f"data.tenure must be {{column, unit}}, got {tenure!r}")
        unit = str(tenure.get("unit") or "months")
        if unit not in DAYS_PER:
            raise ConfigError(f"data.tenure.unit must be one of {sorted(DAYS_PER)}, got {unit!r}")
        types = dict(data.get("types") or {})
        for column, kind in types.items():
            if kind not in KINDS:
                raise ConfigError(f"data.types.{column} must be one of {list(KINDS)}, got {kind!r}")
        roles = dict(data.get("roles") or {})
        unknown_roles = sorted(
            set(roles) - {"monthly_revenue", "contract", "products", "not_held", "segment"}
        )
        if unknown_roles:
            raise ConfigError(
                f"data.roles: unknown role(s) {unknown_roles} (known: monthly_revenue, contract, products, "
                f"not_held, segment)"
            )
        contract = None
        if roles.get("contract") is not None:
            spec = roles["contract"]
            terms = spec.get("term_months") if isinstance(spec, Mapping) else None
            if not isinstance(spec, Mapping) or not isinstance(terms, Mapping) or not terms:
                raise ConfigError(
                    "data.roles.contract must be {column, term_months: {<value>: <months>, ...}}, got "
                    f"{spec!r}"
                )
            try:
                term_months = {str(k).strip(): float(v) for k, v in terms.items()}
            except (TypeError, ValueError) as error:
                raise ConfigError(
                    f"data.roles.contract.term_months: months must be numbers ({error})"
                ) from error
            contract = ContractRole(text("roles.contract.column", spec.get("column")), term_months)  # type: ignore[arg-type]
        products = roles.get("products") or {}
        if not isinstance(products, Mapping):
            raise ConfigError(
                f"data.roles.products must map a product group to its columns, got {products!r}"
            )
        described = config_date(data.get("as_of") or None, "data.as_of")
        max_categories = data.get("max_categories", 50)
        if not isinstance(max_categories, int) or max_categories < 2:
            raise ConfigError(f"data.max_categories must be an integer of at least 2, got {max_categories!r}")
        return cls(
            path=Path(str(data["path"])),
            id_column=text("id_column", data.get("id_column")),  # type: ignore[arg-type]
            label_column=text("label.column", label.get("column"), optional=True),
            positive=str(label.get("positive", "")).strip(),
            negative=None if label.get("negative") is None else str(label["negative"]).strip(),
            tenure_column=text("tenure.column", tenure.get("column"), optional=True),
            tenure_unit=unit,
            drop=names("drop", data.get("drop")),
            types={str(k): str(v) for k, v in types.items()},
            true_values=values("true_values", data.get("true_values", ["yes", "true", "y"])),
            false_values=values("false_values", data.get("false_values", ["no", "false", "n"])),
            max_categories=max_categories,
            monthly_revenue=text("roles.monthly_revenue", roles.get("monthly_revenue"), optional=True),
            contract=contract,
            products={str(g): names(f"roles.products.{g}", cols) for g, cols in products.items()},
            not_held=values("roles.not_held", roles.get("not_held", ["no", "0", "false", "none"])) + ("",),
            segment=text("roles.segment", roles.get("segment"), optional=True),
            as_of=described,
            csv_delimiter=str(data.get("csv_delimiter", ",")),
            csv_encoding=canonical_encoding(data.get("csv_encoding", "utf-8")),
        )

    def keyed_columns(self, *, with_label: bool) -> list[tuple[str, str]]:
        """(config key, column) for every column the config names."""
        out = [("data.id_column", self.id_column)]
        if with_label and self.label_column:
            out.append(("data.label.column", self.label_column))
        if self.tenure_column:
            out.append(("data.tenure.column", self.tenure_column))
        out += [("data.drop", c) for c in self.drop]
        out += [(f"data.types.{c}", c) for c in self.types]
        if self.monthly_revenue:
            out.append(("data.roles.monthly_revenue", self.monthly_revenue))
        if self.contract:
            out.append(("data.roles.contract.column", self.contract.column))
        out += [(f"data.roles.products.{g}", c) for g, cols in self.products.items() for c in cols]
        if self.segment:
            out.append(("data.roles.segment", self.segment))
        return out


@dataclass(frozen=True)
class SnapshotTable:
    """The raw snapshot in DuckDB (temp table `snapshot_raw`, with its row numbers) and its columns."""

    file: TableFile
    columns: dict[str, str]  # column -> DuckDB type
    rows: int

    def where(self, row: int) -> str:
        """How a person finds a row of the file."""
        return self.file.where(row)


def read_snapshot(
    con: duckdb.DuckDBPyConnection, spec: SnapshotSpec, key: str = "data.path"
) -> SnapshotTable:
    """Load the file (CSV: every column as text; Parquet: as typed) into `snapshot_raw` with row numbers.

    A CSV file that is not text in `data.csv_encoding`, splits on another delimiter than `data.csv_delimiter`
    or names a column twice stops here with a ConfigError naming the key and the line."""
    path = spec.path
    if not path.exists():
        raise ConfigError(f"{key}: {path} does not exist (a CSV or Parquet file with one row per customer)")
    if path.is_dir():
        parts = sorted(path.glob("*.parquet")) or sorted(path.glob("*.csv"))
        if not parts:
            raise ConfigError(f"{key}: the folder {path} holds no .parquet or .csv files")
        fmt = "parquet" if parts[0].suffix == ".parquet" else "csv"
    else:
        parts = [path]
        fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    file = TableFile(TABLE, path, fmt)  # type: ignore[arg-type]
    if fmt == "csv":
        for part in parts:
            try:
                _, problems = inspect_csv_header(part, spec.csv_delimiter, spec.csv_encoding)
            except OSError as error:
                raise ConfigError(f"{key}: cannot read {part}: {error}") from error
            if problems:
                raise _csv_config_error(problems[0], part, key)
        with utf8_copies(parts, spec.csv_encoding) as copies:
            for part, problem in copies.problems.items():
                raise _csv_config_error(problem, part, key)
            source = (
                f"read_csv({file_list([copies.paths[p] for p in parts])}, header = true, all_varchar = true, "
                f"delim = {literal(spec.csv_delimiter)})"
            )
            _load_raw(con, source, path, fmt, parts, spec.csv_encoding, key)
    else:
        _load_raw(con, f"read_parquet({file_list(parts)})", path, fmt, parts, spec.csv_encoding, key)
    columns = {
        name: kind for name, kind, *_ in con.execute(f"DESCRIBE {RAW}").fetchall() if name != ROW_NUMBER
    }
    rows = con.execute(f"SELECT count(*) FROM {RAW}").fetchall()[0][0]
    if rows == 0:
        raise ConfigError(f"{key}: {path} has no rows")
    return SnapshotTable(file, columns, rows)


def _load_raw(
    con: duckdb.DuckDBPyConnection,
    source: str,
    path: Path,
    fmt: str,
    parts: list[Path],
    encoding: str,
    key: str,
) -> None:
    """Create `snapshot_raw` from `source`; a file DuckDB cannot read stops with a ConfigError naming the key
    (data.csv_encoding and the first bad line for a CSV file that is not UTF-8)."""
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {RAW} AS SELECT row_number() OVER () AS {ROW_NUMBER}, * FROM {source}"
        )
    except duckdb.Error as error:
        if fmt == "csv" and ("not utf-8 encoded" in str(error) or "Invalid unicode" in str(error)):
            for part in parts:
                problem = undecodable_line(part, encoding)
                if problem is not None:
                    raise _csv_config_error(problem, part, key) from error
        raise ConfigError(f"{key}: cannot read {path} as {fmt}: {str(error).splitlines()[0]}") from error


def _csv_config_error(problem: CsvProblem, file: Path, key: str) -> ConfigError:
    """A CSV problem as a ConfigError naming the setting to change (or `key`, the file's) and the line."""
    setting = {"encoding": "data.csv_encoding", "csv_delimiter": "data.csv_delimiter"}.get(problem.rule, key)
    shown = f"; {problem.examples[0]}" if problem.examples else ""
    return ConfigError(f"{setting}: {file}: {problem.message}{shown}. {problem.hint}")


# Kept for callers that quote a column with it (pipeline.report_snapshot); features.sql.identifier is the one
# quoting rule.


def _text(column: str) -> str:
    """The trimmed text of a column, empty when blank."""
    return f"NULLIF(trim(CAST({identifier(column)} AS VARCHAR)), '')"


def _is_number_type(kind: str) -> bool:
    return bool(
        re.match(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U\w*INT|FLOAT|DOUBLE|REAL|DECIMAL)", kind)
    )


def offending_rows(
    con: duckdb.DuckDBPyConnection,
    table: SnapshotTable,
    condition: str,
    column: str,
    id_column: str | None = None,
) -> tuple[int, str]:
    """How many rows of `snapshot_raw` meet `condition`, and the first few: where each is in the file, its id
    (with `id_column`) and its value of `column`."""
    count = con.execute(f"SELECT count(*) FROM {RAW} WHERE {condition}").fetchall()[0][0]
    ident = f"CAST({identifier(id_column)} AS VARCHAR)" if id_column else "NULL"
    shown = con.execute(
        f"""SELECT {ROW_NUMBER}, {ident}, CAST({identifier(column)} AS VARCHAR) FROM {RAW} WHERE {condition}
            ORDER BY {ROW_NUMBER} LIMIT {EXAMPLES}"""
    ).fetchall()
    listed = ", ".join(
        table.where(row) + (f" ({id_column} {ident_value})" if id_column else "")
        + f": {'blank' if value is None else repr(value)}"
        for row, ident_value, value in shown
    )  # fmt: skip
    return count, listed


def check_snapshot(
    con: duckdb.DuckDBPyConnection, spec: SnapshotSpec, table: SnapshotTable, *, with_label: bool
) -> None:
    """The columns the config names exist, play one role each, and hold values they can: before any work.

    Raises ConfigError naming the config key, the column and example rows."""
    problems: list[str] = []
    available = list(table.columns)
    for key, column in spec.keyed_columns(with_label=with_label):
        if column not in table.columns:
            close = [c for c in available if c.lower() == column.lower()]
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(f"{key}: no column '{column}'{hint}")
    if with_label and not spec.label_column:
        problems.append("data.label.column: training needs the column holding the churn label")
    roles = [("data.id_column", spec.id_column), ("data.tenure.column", spec.tenure_column),
             ("data.roles.monthly_revenue", spec.monthly_revenue), ("data.roles.segment", spec.segment),
             ("data.roles.contract.column", spec.contract.column if spec.contract else None)]  # fmt: skip
    if spec.label_column:
        roles.append(("data.label.column", spec.label_column))
    seen: dict[str, str] = {}
    for key, column in roles:
        if column is None:
            continue
        if column in seen:
            problems.append(f"{key}: column '{column}' already plays another role ({seen[column]})")
        seen[column] = key
        if column in spec.drop:
            problems.append(f"{key}: column '{column}' is also listed in data.drop")
    if problems:
        raise ConfigError(
            f"data=snapshot: the config does not fit the table {table.file.path} (its columns: "
            f"{', '.join(available)}):\n  " + "\n  ".join(problems)
        )

    def check(key: str, column: str, condition: str, what: str) -> None:
        count, listed = offending_rows(con, table, condition, column, spec.id_column)
        if count:
            problems.append(
                f"{key} (column '{column}' of {table.file.path.name}): {count} row(s) {what}: {listed}"
                + (" ..." if count > EXAMPLES else "")
            )

    check("data.id_column", spec.id_column, f"{_text(spec.id_column)} IS NULL", "have no customer id")
    check(
        "data.id_column", spec.id_column,
        f"{_text(spec.id_column)} IN (SELECT {_text(spec.id_column)} FROM {RAW} GROUP BY 1 HAVING count(*) > 1)",
        "repeat a customer id (one row per customer)",
    )  # fmt: skip
    if with_label and spec.label_column:
        allowed = [spec.positive] + ([spec.negative] if spec.negative is not None else [])
        if spec.negative is None:
            condition = f"{_text(spec.label_column)} IS NULL"
            what = "have no label"
        else:
            condition = f"coalesce({_text(spec.label_column)}, '') NOT IN {literal_list(allowed)}"
            what = f"hold a label other than {' / '.join(repr(v) for v in allowed)} (data.label.positive / negative)"
        check("data.label", spec.label_column, condition, what)
    numeric = [
        ("data.tenure.column", spec.tenure_column),
        ("data.roles.monthly_revenue", spec.monthly_revenue),
    ]
    numeric += [(f"data.types.{c}", c) for c, kind in spec.types.items() if kind == "numeric"]
    for key, column in numeric:
        if column and not _is_number_type(table.columns[column]):
            check(
                key, column, f"{_text(column)} IS NOT NULL AND TRY_CAST({_text(column)} AS DOUBLE) IS NULL",
                "are not numbers",
            )  # fmt: skip
    if spec.tenure_column:
        check(
            "data.tenure.column", spec.tenure_column, f"TRY_CAST({_text(spec.tenure_column)} AS DOUBLE) < 0",
            "are negative",
        )  # fmt: skip
    for column, kind in spec.types.items():
        if kind == "binary":
            known = [*spec.true_values, *spec.false_values]
            check(
                f"data.types.{column}", column,
                f"{_text(column)} IS NOT NULL AND lower({_text(column)}) NOT IN {literal_list(known)}",
                f"are not one of the true_values / false_values {known}",
            )  # fmt: skip
    if spec.contract:
        column = spec.contract.column
        check(
            "data.roles.contract.term_months", column,
            f"{_text(column)} IS NOT NULL AND {_text(column)} NOT IN {literal_list(list(spec.contract.term_months))}",
            f"hold a contract type that term_months does not list ({list(spec.contract.term_months)})",
        )  # fmt: skip
    if problems:
        raise ConfigError("data=snapshot: the table does not fit the config:\n  " + "\n  ".join(problems))


def feature_name(column: str) -> str:
    """A snake_case feature name for a column ('MonthlyCharges' -> 'monthly_charges', 'StreamingTV' ->
    'streaming_tv')."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column)
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return name if name and name[0].isalpha() else f"c_{name}"


@dataclass(frozen=True)
class SnapshotPlan:
    """The features of a snapshot and how each is read: enough to rebuild them on a table of the same shape."""

    features: tuple[FeatureDef, ...]
    sources: dict[
        str, dict[str, Any]
    ]  # feature -> {columns: [...], kind: numeric|binary|categorical|derived}
    notes: list[str]

    def manifest(self, spec: SnapshotSpec) -> dict[str, Any]:
        """What the feature manifest records about the snapshot."""
        return {
            "id_column": spec.id_column,
            "label": {"column": spec.label_column, "positive": spec.positive, "negative": spec.negative},
            "sources": self.sources,
            "notes": self.notes,
        }


def _kind_of(con: duckdb.DuckDBPyConnection, spec: SnapshotSpec, table: SnapshotTable, column: str) -> str:
    declared = spec.types.get(column)
    if declared:
        return declared
    raw = table.columns[column]
    if _is_number_type(raw):
        return "numeric"
    if raw == "BOOLEAN":
        return "binary"
    text = _text(column)
    non_blank, not_numbers, outside = con.execute(
        f"""SELECT count({text}), count(*) FILTER (WHERE {text} IS NOT NULL AND TRY_CAST({text} AS DOUBLE) IS NULL),
                   count(*) FILTER (WHERE {text} IS NOT NULL AND lower({text}) NOT IN
                                    {literal_list([*spec.true_values, *spec.false_values])})
            FROM {RAW}"""
    ).fetchall()[0]
    if non_blank and not not_numbers:
        return "numeric"
    if non_blank and not outside:
        return "binary"
    return "categorical"


def _expression(column: str, kind: str, raw_type: str, spec: SnapshotSpec) -> str:
    if kind == "numeric":
        return f"CAST({identifier(column)} AS DOUBLE)" if _is_number_type(raw_type) else (
            f"TRY_CAST({_text(column)} AS DOUBLE)"
        )  # fmt: skip
    if kind == "binary":
        text = f"lower({_text(column)})"
        return (
            f"CASE WHEN {text} IN {literal_list(spec.true_values)} THEN 1.0 "
            f"WHEN {text} IN {literal_list(spec.false_values)} THEN 0.0 END"
        )
    return _text(column)


def plan_snapshot(con: duckdb.DuckDBPyConnection, spec: SnapshotSpec, table: SnapshotTable) -> SnapshotPlan:
    """Type every remaining column and add the role features (see the module docstring)."""
    features: list[FeatureDef] = []
    sources: dict[str, dict[str, Any]] = {}
    notes: list[str] = []

    def add(name: str, family: str, sql: str, description: str, columns: list[str], kind: str) -> None:
        features.append(
            FeatureDef(
                name=name, family=family, source=TABLE, sql=sql, description=description,
                kind="categorical" if kind == "categorical" else "numeric",
            )
        )  # fmt: skip
        sources[name] = {"columns": columns, "kind": kind}

    consumed = {spec.id_column, spec.label_column, spec.tenure_column, spec.monthly_revenue, spec.segment}
    consumed |= {spec.contract.column} if spec.contract else set()
    consumed |= set(spec.drop)
    for column, raw_type in table.columns.items():
        if column in consumed:
            continue
        blanks = con.execute(f"SELECT count(*) FROM {RAW} WHERE {_text(column)} IS NULL").fetchall()[0][0]
        if blanks == table.rows:
            notes.append(f"column '{column}' is blank in every row: not used")
            continue
        kind = _kind_of(con, spec, table, column)
        name = feature_name(column)
        if kind == "categorical":
            levels = con.execute(f"SELECT count(DISTINCT {_text(column)}) FROM {RAW}").fetchall()[0][0]
            if levels > spec.max_categories:
                notes.append(
                    f"column '{column}' has {levels} distinct values (more than data.max_categories = "
                    f"{spec.max_categories}): not used; list it in data.drop, or type it in data.types"
                )
                continue
        if blanks:
            notes.append(f"column '{column}' ({kind}): {blanks} blank value(s) read as empty")
        meaning = {"binary": f"1 for {'/'.join(spec.true_values)}, 0 for {'/'.join(spec.false_values)}"}
        add(
            name, "snapshot", _expression(column, kind, raw_type, spec),
            f"column '{column}' ({kind}{': ' + meaning[kind] if kind in meaning else ''})", [column], kind,
        )  # fmt: skip
    if spec.tenure_column:
        column = spec.tenure_column
        add(
            "tenure_days", "tenure",
            f"round({_expression(column, 'numeric', table.columns[column], spec)} * {DAYS_PER[spec.tenure_unit]})",
            f"tenure: column '{column}' in {spec.tenure_unit}, as days", [column], "numeric",
        )  # fmt: skip
    if spec.monthly_revenue:
        column = spec.monthly_revenue
        add(
            "monthly_revenue", "spend", _expression(column, "numeric", table.columns[column], spec),
            f"monthly revenue: column '{column}'", [column], "numeric",
        )  # fmt: skip
    if spec.contract:
        column, terms = spec.contract.column, spec.contract.term_months
        cases = " ".join(f"WHEN {literal(v)} THEN {m!r}" for v, m in terms.items())
        term = f"CASE {_text(column)} {cases} END"
        add(
            "max_term_months",
            "contract",
            term,
            f"contract term in months: column '{column}'",
            [column],
            "term",
        )
        add(
            "month_to_month_share", "contract", f"CASE WHEN {term} <= 1 THEN 1.0 WHEN {term} > 1 THEN 0.0 END",
            f"1 when the contract (column '{column}') is month-to-month (term of at most 1 month)", [column],
            "term",
        )  # fmt: skip
    if spec.products:
        not_held = literal_list(spec.not_held)

        def held(column: str) -> str:
            return f"coalesce(lower({_text(column)}), '') NOT IN {not_held}"

        columns = [c for cols in spec.products.values() for c in cols]
        add(
            "active_products", "bundles", " + ".join(f"CAST({held(c)} AS INTEGER)" for c in columns),
            f"products held among {', '.join(columns)} (a value other than {spec.not_held[:-1]})", columns,
            "derived",
        )  # fmt: skip
        groups = " + ".join(
            f"CAST(({' OR '.join(held(c) for c in cols)}) AS INTEGER)"
            for cols in spec.products.values()
            if cols
        )
        add(
            "categories_held", "cross_sell", groups,
            f"product groups with a product held ({', '.join(spec.products)})", columns, "derived",
        )  # fmt: skip
    if spec.segment:
        add("segment", "profile", _text(spec.segment), f"segment: column '{spec.segment}'", [spec.segment],
            "categorical")  # fmt: skip
    names = [f.name for f in features]
    clashes = sorted({n for n in names if names.count(n) > 1})
    bad = [n for n in names if n in RESERVED or not IDENTIFIER.match(n)]
    if clashes or bad:
        owners = {n: [c for f, s in sources.items() if f == n for c in s["columns"]] for n in clashes + bad}
        raise ConfigError(
            f"data=snapshot: columns give clashing or reserved feature names {owners}: rename them, list one in "
            f"data.drop, or give the role to another column"
        )
    for note in notes:
        log.info("%s", note)
    return SnapshotPlan(tuple(features), sources, notes)


def check_scoring_table(
    con: duckdb.DuckDBPyConnection,
    table: SnapshotTable,
    recorded: Mapping[str, Any],
    features: Sequence[FeatureDef],
) -> None:
    """A table to score holds every column the model's features read, with values those features can read."""
    missing = sorted(
        {c for name in (f.name for f in features) for c in recorded["sources"][name]["columns"]}
        - set(table.columns)
    )
    if recorded["id_column"] not in table.columns:
        missing.insert(0, recorded["id_column"])
    if missing:
        raise ConfigError(
            f"data.path {table.file.path}: the model was trained on a table with the column(s) {missing}, which this "
            f"table lacks (its columns: {', '.join(table.columns)})"
        )
    problems = []
    for feature in features:
        source = recorded["sources"][feature.name]
        if source["kind"] not in ("numeric", "binary", "term"):
            continue
        column = source["columns"][0]
        condition = f"{_text(column)} IS NOT NULL AND ({feature.sql}) IS NULL"
        count, listed = offending_rows(con, table, condition, column)
        if count:
            problems.append(
                f"column '{column}' ({feature.name}, {source['kind']} when the model was trained): {count} row(s) "
                f"it cannot read: {listed}"
            )
    if problems:
        raise ConfigError(
            f"data.path {table.file.path}: values the model cannot read:\n  " + "\n  ".join(problems)
        )


def id_expression(table: SnapshotTable, id_column: str) -> str:
    """The customer id: integer ids as they are, text trimmed."""
    kind = table.columns[id_column]
    return identifier(id_column) if kind in ("BIGINT", "INTEGER", "SMALLINT", "HUGEINT") else _text(id_column)


def feature_select(
    table: SnapshotTable, id_column: str, features: Sequence[FeatureDef], as_of: date, extra: str = ""
) -> str:
    """SELECT customer_id, observation_date, the features (and `extra` columns) from `snapshot_raw`."""
    typed = [
        f"CAST(({f.sql}) AS {'VARCHAR' if f.kind == 'categorical' else 'DOUBLE'}) AS {identifier(f.name)}"
        for f in features
    ]
    columns = ", ".join(typed + ([extra] if extra else []))
    return (
        f"SELECT {id_expression(table, id_column)} AS customer_id, {literal(as_of)} AS observation_date, "
        f"{columns} FROM {RAW}"
    )


def label_expression(spec: SnapshotSpec) -> str:
    """churned: 1 for the positive label value, 0 otherwise (values were checked before)."""
    return f"CASE WHEN {_text(spec.label_column)} = {literal(spec.positive)} THEN 1 ELSE 0 END"  # type: ignore[arg-type]
