"""The engine-specific bits of the feature and label SQL, in one place.

Feature, source and label SQL is written in portable SQL plus five `cw_*` date functions. Each engine
defines them: DuckDB as macros here; a Spark engine defines the same names as SQL functions.
"""

from __future__ import annotations

import duckdb

DUCKDB_MACROS = (
    # cw_add_days(d, n): the date n days after d (n may be negative)
    "CREATE OR REPLACE TEMP MACRO cw_add_days(d, n) AS CAST(CAST(d AS DATE) + CAST(n AS INTEGER) AS DATE)",
    # cw_add_months(d, n): the date n calendar months after d (clamped to the month's last day)
    "CREATE OR REPLACE TEMP MACRO cw_add_months(d, n) AS CAST(CAST(d AS DATE) + to_months(CAST(n AS INTEGER)) AS DATE)",
    # cw_days_between(a, b): whole days from a to b (b - a), on dates
    "CREATE OR REPLACE TEMP MACRO cw_days_between(a, b) AS date_diff('day', CAST(a AS DATE), CAST(b AS DATE))",
    # cw_month_of_year(d): the calendar month of d, 1 (January) to 12
    "CREATE OR REPLACE TEMP MACRO cw_month_of_year(d) AS CAST(month(CAST(d AS DATE)) AS INTEGER)",
    # cw_seconds_between(a, b): seconds from a to b
    "CREATE OR REPLACE TEMP MACRO cw_seconds_between(a, b) AS "
    "epoch(CAST(b AS TIMESTAMP)) - epoch(CAST(a AS TIMESTAMP))",
)


def install_duckdb_functions(con: duckdb.DuckDBPyConnection) -> None:
    """Define the cw_* functions on a DuckDB connection."""
    for macro in DUCKDB_MACROS:
        con.execute(macro)
