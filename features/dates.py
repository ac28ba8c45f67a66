"""The one rule for dates a stage works on: a date setting read and checked, and the date a stage scores,
reports or stamps a snapshot with. Never today's date: the same data gives the same date on any day."""

from __future__ import annotations

import logging
import re
from datetime import date
from typing import Any

from features.errors import ConfigError

log = logging.getLogger(__name__)
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
UNDATED = date(1970, 1, 1)  # the stamp of a snapshot that says nowhere which day it describes


def config_date(value: Any, key: str) -> date | None:
    """A date setting (YYYY-MM-DD, or null), or ConfigError naming the key (2024-02-30 does not exist)."""
    if value is None:
        return None
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if not ISO_DATE.match(text):
        raise ConfigError(f"{key}: {text!r} is not a date; write it as YYYY-MM-DD, e.g. 2024-10-01")
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise ConfigError(f"{key}: {text!r} is not a date ({error})") from error


def as_of_date(configured: date | None, data_end: date | None) -> date:
    """The date a stage works as of: the configured one, else the end of the data (the day after its last
    date: every row of the data is known by then), else UNDATED (a snapshot that names no date)."""
    if configured is not None:
        return configured
    if data_end is not None:
        return data_end
    log.warning(
        "the data names no date it describes: it is stamped %s; set data.as_of (or score.as_of) to date it",
        UNDATED,
    )
    return UNDATED
