"""Business rules written as SQL expressions over a customer's features: allow-listed, checked before any work
is done, and evaluated on a connection that cannot reach files.

The loyalty ladder, the strategic value of a customer and the eligibility and cost of retention actions are
configured as SQL expressions over the scoring-date feature columns (`open_complaints > 0`,
`tenure_days >= 365 AND categories_held >= 2`, `10 + 1.2 * monthly_revenue`). Each one is parsed and
allow-listed (`features.expressions`): columns, literals, operators, CASE, CAST and a few pure functions, no
subqueries, table functions, comments or second statements. What runs is the expression regenerated from the
checked tree. `check_rules` binds each one against an empty table of the feature columns, so a typo or a type
error stops the run at start with the config key that holds it; `evaluate_locked` runs rules over batches of
Arrow rows on `features.sql.locked_connection()`, which cannot read, write or attach files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from decisions.errors import DecisionConfigError
from features.expressions import ExpressionError, checked_expression, referenced_columns
from features.sql import identifier, locked_connection

# The name a batch of feature rows is registered under on the locked connection.
RULE_INPUTS = "rule_inputs"

_DUCKDB_TYPE = re.compile(r"^[A-Z][A-Z0-9_ ]*(\(\d+(, ?\d+)?\))?$")
_BOOLEAN = {"BOOLEAN", '"NULL"', "NULL"}
_NUMERIC = {
    "DOUBLE",
    "FLOAT",
    "BIGINT",
    "INTEGER",
    "SMALLINT",
    "TINYINT",
    "HUGEINT",
    "UBIGINT",
    "UINTEGER",
    '"NULL"',
}


@dataclass(frozen=True)
class Rule:
    """One configured SQL expression: where it is configured, its text and the type it must yield."""

    key: str  # config key, e.g. 'ladder.rules.advocate'
    sql: str
    kind: str = "BOOLEAN"  # BOOLEAN (a condition) or DOUBLE (an amount)

    def checked(self, columns: Iterable[str] | None = None) -> str:
        """The rule parsed, allow-listed (against `columns` when given) and regenerated: the SQL that runs."""
        try:
            return checked_expression(self.sql, self.key, None if columns is None else set(columns))
        except ExpressionError as error:
            raise DecisionConfigError(str(error)) from None


def refuse_unsafe(rules: Iterable[Rule]) -> None:
    """Parse and allow-list every rule (their columns are checked against the features later).

    Raises DecisionConfigError naming the config key of every rule that does not parse or uses anything
    outside the allow-list (a subquery, a table function, a comment, a second statement, ...).
    """
    problems = []
    for rule in rules:
        try:
            checked_expression(rule.sql, rule.key)
        except ExpressionError as error:
            problems.append(str(error))
    if problems:
        raise DecisionConfigError(_listed(problems))


def referenced_names(sql: str, names: Iterable[str]) -> set[str]:
    """Which of `names` an SQL expression uses as columns (text inside string literals ignored; compared
    without case, as DuckDB binds them); none when it does not parse (the check says why)."""
    by_lower = {str(name).lower(): str(name) for name in names}
    return {by_lower[c.lower()] for c in referenced_columns(sql) if c.lower() in by_lower}


def duckdb_type(kind: str) -> str:
    """A DuckDB type name from code (DOUBLE, VARCHAR, DECIMAL(18, 3)), checked before it goes into SQL."""
    text = str(kind).upper()
    if not _DUCKDB_TYPE.match(text):
        raise ValueError(f"not a DuckDB type name: {kind!r}")
    return text


def with_absent(table: str, absent: Mapping[str, str] | None = None) -> str:
    """SELECT every column of `table` plus the `absent` ones (name -> DuckDB type) as typed NULLs."""
    empty = "".join(
        f", CAST(NULL AS {duckdb_type(kind)}) AS {identifier(name)}" for name, kind in (absent or {}).items()
    )
    return f"SELECT *{empty} FROM {identifier(table)}"


def bind_rules(
    columns: Mapping[str, str] | pa.Schema, rules: Iterable[Rule], absent: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """Allow-list every rule against the columns and bind it on an empty table of them, on a locked
    connection: the checked SQL by config key, and the problems found.

    `columns` are name -> DuckDB type, or the Arrow schema of the rows the rules will run on; `absent`
    (name -> DuckDB type) are more columns, read as empty.
    """
    checked: dict[str, str] = {}
    problems: list[str] = []
    con = locked_connection()
    try:
        if isinstance(columns, pa.Schema):
            con.register("rule_columns", columns.empty_table())
            names = set(columns.names)
        else:
            definition = ", ".join(
                f"{identifier(name)} {duckdb_type(kind)}" for name, kind in columns.items()
            )
            con.execute(f"CREATE TABLE rule_columns ({definition or '__no_columns BOOLEAN'})")
            names = set(columns)
        names |= set(absent or {})
        inputs = with_absent("rule_columns", absent)
        for rule in rules:
            try:
                sql = checked_expression(rule.sql, rule.key, names)
            except ExpressionError as error:
                problems.append(str(error))
                continue
            try:
                yields = con.execute(f"DESCRIBE SELECT ({sql}) AS value FROM ({inputs}) t").fetchall()[0][1]
            except duckdb.Error as error:
                first = str(error).strip().splitlines()[0]
                problems.append(f"{rule.key}: {rule.sql!r} cannot be evaluated ({first})")
                continue
            numeric = yields in _NUMERIC or yields.startswith("DECIMAL")
            if (rule.kind == "BOOLEAN" and yields not in _BOOLEAN) or (rule.kind == "DOUBLE" and not numeric):
                what = "a condition (true/false)" if rule.kind == "BOOLEAN" else "a number"
                problems.append(f"{rule.key}: {rule.sql!r} yields {yields}, not {what}")
                continue
            checked[rule.key] = sql
    finally:
        con.close()
    return checked, problems


def check_rules(
    columns: Mapping[str, str] | pa.Schema, rules: Iterable[Rule], absent: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Allow-list and bind every rule against an empty table with `columns` (name -> DuckDB type, or an Arrow
    schema) and the `absent` ones, on a connection that cannot reach files; return the checked SQL of each
    rule by config key.

    Raises DecisionConfigError naming the config key of every rule that does not parse, uses something outside
    the allow-list or an unknown column, or yields the wrong type.
    """
    checked, problems = bind_rules(columns, rules, absent)
    if problems:
        raise DecisionConfigError(_listed(problems))
    return checked


def evaluate_locked(query: str, batches: Iterable[pa.RecordBatch | pa.Table]) -> Iterator[pa.Table]:
    """`query` (over `rule_inputs`) for each batch of rows in turn, on one connection that cannot reach files.

    Each batch is registered as `rule_inputs`, queried and unregistered before the next: memory is bounded by
    the batch. Rows come back in the batch's order (the query must only project and filter).
    """
    con = locked_connection()
    try:
        for batch in batches:
            con.register(RULE_INPUTS, batch)
            try:
                result = con.sql(query).to_arrow_table()
            finally:
                con.unregister(RULE_INPUTS)
            yield result
    finally:
        con.close()


def _listed(problems: list[str]) -> str:
    """Problems one per line, the first one first (so the message starts with its config key)."""
    return "\n  ".join(problems)
