"""Business rules written as SQL expressions over a customer's features, checked before any work is done.

The loyalty ladder, the strategic value of a customer and the eligibility and cost of retention actions are
configured as SQL expressions over the scoring-date feature columns (`open_complaints > 0`,
`tenure_days >= 365 AND categories_held >= 2`, `10 + 1.2 * monthly_revenue`). DuckDB evaluates them in the
scoring query; `check_rules` binds each one against an empty table of the same columns first, so a typo or a
type error stops the run at start with the config key that holds it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import duckdb

from models.errors import DecisionConfigError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")
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


def sql_text(text: str) -> str:
    """A string (a name, a path) as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def referenced_names(sql: str, names: Iterable[str]) -> set[str]:
    """Which of `names` an SQL expression uses as identifiers (text inside string literals ignored)."""
    return set(_IDENTIFIER.findall(_STRING_LITERAL.sub("''", sql))) & set(names)


def check_rules(columns: Mapping[str, str], rules: Iterable[Rule]) -> None:
    """Bind every rule against an empty table with `columns` (name -> DuckDB type).

    Raises DecisionConfigError naming the config key of every rule that does not parse, uses an unknown
    column or yields the wrong type.
    """
    con = duckdb.connect()
    definition = ", ".join(f'"{name}" {kind}' for name, kind in columns.items())
    con.execute(f"CREATE TABLE rule_inputs ({definition})")
    problems = []
    for rule in rules:
        try:
            yields = con.execute(f"DESCRIBE SELECT ({rule.sql}) AS value FROM rule_inputs").fetchall()[0][1]
        except duckdb.Error as error:
            first = str(error).strip().splitlines()[0]
            problems.append(f"{rule.key}: {rule.sql!r} cannot be evaluated ({first})")
            continue
        numeric = yields in _NUMERIC or yields.startswith("DECIMAL")
        if (rule.kind == "BOOLEAN" and yields not in _BOOLEAN) or (rule.kind == "DOUBLE" and not numeric):
            what = "a condition (true/false)" if rule.kind == "BOOLEAN" else "a number"
            problems.append(f"{rule.key}: {rule.sql!r} yields {yields}, not {what}")
    con.close()
    if problems:
        raise DecisionConfigError(
            "decision rules that cannot be evaluated on the scoring features:\n  " + "\n  ".join(problems)
        )
