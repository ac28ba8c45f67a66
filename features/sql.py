"""The one place where SQL text is assembled from values: identifiers and literals quoted, and a DuckDB
connection that cannot reach the file system.

Every name (a table, a column from a user's file, a path) and every value that goes into an SQL string goes
through `identifier` or `literal` here; nothing else in the project quotes by hand. A config string that is
meant to be an expression (a decision rule, a feature aggregate) is never pasted in as given: it is parsed
and allow-listed first (`features.expressions`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb

from features.errors import ConfigError

# A name that becomes a folder, a file or a table name: letters, digits, '_' and '-', starting with a letter
# or digit, at most 64 characters. Nothing that could leave a folder ('..', '/') or end a quoted name.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def identifier(name: str) -> str:
    """`name` as a quoted SQL identifier ("Account Manager", "scores_acme-eu", "a""b")."""
    text = str(name)
    if not text or "\x00" in text:
        raise ValueError(f"not an SQL identifier: {name!r}")
    return '"' + text.replace('"', '""') + '"'


def qualified(*parts: str) -> str:
    """A dotted name with every part quoted: qualified('warehouse', 'scores') -> "warehouse"."scores"."""
    return ".".join(identifier(part) for part in parts)


def literal(value: Any) -> str:
    """A Python value as an SQL literal: text quoted, numbers finite, dates and timestamps typed, None NULL."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        return repr(value)
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP {literal(value.isoformat(sep=' '))}"
    if isinstance(value, dt.date):
        return f"DATE {literal(value.isoformat())}"
    if isinstance(value, Path):
        return literal(str(value))
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("an SQL string cannot hold a NUL character")
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {type(value).__name__} {value!r}")


def literal_list(values: Iterable[Any]) -> str:
    """Values as a parenthesised list of literals, for IN: ('a', 'b')."""
    return "(" + ", ".join(literal(v) for v in values) + ")"


def safe_name(value: Any, key: str) -> str:
    """A configured name that becomes a folder, a file or a table name, checked; ConfigError names the key."""
    text = str(value)
    if not SAFE_NAME.match(text):
        raise ConfigError(
            f"{key}: {text!r} cannot name a folder or a table: use letters, digits, '_' and '-' (at most 64, "
            f"starting with a letter or digit)"
        )
    return text


def locked_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that cannot read or write files, attach databases or load extensions,
    and cannot be switched back: for evaluating configured expressions over data registered on it."""
    return duckdb.connect(config={"enable_external_access": False, "lock_configuration": True})
