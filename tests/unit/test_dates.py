"""The one rule for a stage's date (features.dates): a date setting read and checked, and the date a stage works
as of: the configured one, else the end of the data, else UNDATED with a warning; never the clock."""

from __future__ import annotations

import logging
from datetime import date

import pytest
import time_machine

from features.dates import UNDATED, as_of_date, config_date
from features.errors import ConfigError


def test_config_date_reads_iso_dates_and_passes_none_and_dates_through() -> None:
    assert config_date("2024-02-29", "score.as_of") == date(2024, 2, 29)
    assert config_date(" 2024-10-01 ", "data.as_of") == date(2024, 10, 1)
    assert config_date(date(2023, 5, 6), "data.as_of") == date(2023, 5, 6)
    assert config_date(None, "score.as_of") is None


@pytest.mark.parametrize(
    "value", ["2024-02-30", "2024-13-01", "20240101", "2024-1-5", "today", "last-monday", ""]
)
def test_config_date_names_the_key_of_a_value_that_is_not_a_date(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^score\.as_of: .* is not a date"):
        config_date(value, "score.as_of")


def test_the_configured_date_wins_over_the_end_of_the_data() -> None:
    assert as_of_date(date(2024, 6, 30), date(2025, 1, 1)) == date(2024, 6, 30)
    assert as_of_date(date(2024, 6, 30), None) == date(2024, 6, 30)


def test_without_a_configured_date_the_end_of_the_data_is_used(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="features.dates"):
        assert as_of_date(None, date(2025, 1, 1)) == date(2025, 1, 1)
    assert not caplog.records


def test_with_no_date_anywhere_the_stamp_is_undated_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="features.dates"):
        assert as_of_date(None, None) == UNDATED == date(1970, 1, 1)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "data.as_of" in caplog.text and "score.as_of" in caplog.text and "1970-01-01" in caplog.text


@pytest.mark.parametrize("day", ["2025-01-15", "2026-01-15"])
def test_the_date_never_follows_the_clock(day: str) -> None:
    with time_machine.travel(day, tick=False):
        assert date.today() == date.fromisoformat(day)
        assert as_of_date(None, None) == UNDATED
        assert as_of_date(None, date(2024, 3, 1)) == date(2024, 3, 1)
