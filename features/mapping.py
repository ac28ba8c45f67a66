"""Reading a user's tables under their own names: which file holds each contract table and which column holds
each contract column (`data.mapping` in config, docs/your_data.md).

    mapping:
      customers: {from: accounts, columns: {customer_id: acct_no, signup_date: opened_on}}
      subscriptions: {from: contracts, columns: {customer_id: acct_no, product: plan}}

`from` names the file (`accounts.csv`, `accounts.parquet` or a folder `accounts/`) instead of the contract
name; `columns` maps contract column -> the user's column. Unmapped tables and columns keep the contract's
names. A malformed mapping fails before anything is read, with the config key at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from features.contract import CONTRACT, Contract
from features.errors import ConfigError


@dataclass(frozen=True)
class TableMapping:
    """Where one contract table is in the user's data."""

    table: str
    source: str  # file or folder name (without extension) in the tables folder
    columns: dict[str, str] = field(default_factory=dict)  # contract column -> the user's column

    def key(self, column: str | None = None) -> str:
        """The config key of this table's mapping, or of one of its columns."""
        return f"data.mapping.{self.table}" + (f".columns.{column}" if column else "")


def parse_mapping(raw: Mapping[str, Any] | None, contract: Contract = CONTRACT) -> dict[str, TableMapping]:
    """Check a `data.mapping` config against the contract; raise ConfigError naming every bad key."""
    problems, mappings = [], {}
    for table, spec in (raw or {}).items():
        if table not in contract.table_names:
            problems.append(
                f"data.mapping.{table}: not a contract table (tables: {', '.join(contract.table_names)})"
            )
            continue
        spec = spec or {}
        unknown = sorted(set(spec) - {"from", "columns"})
        if unknown:
            problems.append(f"data.mapping.{table}: unknown key(s) {unknown}; use 'from' and 'columns'")
        columns = {str(k): str(v) for k, v in (spec.get("columns") or {}).items()}
        known = {c.name for c in contract.table(table).columns}
        for column in sorted(set(columns) - known):
            problems.append(
                f"data.mapping.{table}.columns.{column}: {table} has no contract column {column!r} "
                f"(its columns: {', '.join(sorted(known))})"
            )
        sources = list(columns.values())
        for source in sorted({s for s in sources if sources.count(s) > 1}):
            problems.append(
                f"data.mapping.{table}.columns: column {source!r} is mapped to more than one contract column"
            )
        source = str(spec.get("from") or table)
        if "/" in source or "\\" in source or source.startswith(".") or "\x00" in source:
            problems.append(
                f"data.mapping.{table}.from: {source!r} is not a file name in data.path (no folders, no leading "
                f"'.'): the tables are read from data.path only"
            )
            continue
        mappings[table] = TableMapping(table, source, columns)
    if problems:
        raise ConfigError("the data mapping cannot work:\n  " + "\n  ".join(problems))
    return mappings


def sources(mappings: Mapping[str, TableMapping]) -> dict[str, str]:
    """The file name to look for, for each mapped table."""
    return {table: m.source for table, m in mappings.items()}
