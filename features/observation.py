"""The observation calendar (`conf/observation`): the dates on which snapshots are taken, every `every`
days, weeks or months.

- months: from `start`, the same day of each `every`-th month (clamped to the month's last day, as
  `cw_add_months` does); by default from the first month start after the warm-up to the first day of the
  month holding the data's last day.
- weeks: every `every`-th `weekday` (monday by default); an explicit `start` moves to the first such weekday
  on or after it; by default up to the last such weekday on or before the data's last day.
- days: every `every`-th day from `start`; by default up to the data's last day.

The old spelling `every_months: N` still works: it means `every: N` with `unit: months`.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from features.errors import ConfigError

log = logging.getLogger(__name__)

UNITS = ("days", "weeks", "months")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def add_months(day: date, months: int) -> date:
    """The date `months` calendar months after `day`, clamped to the month's last day (2024-01-31 + 1 month
    is 2024-02-29): the rule of the SQL function cw_add_months."""
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _whole_number(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: {value!r} is not a whole number of at least 1")
    return value


@dataclass(frozen=True)
class ObservationGrid:
    """How often snapshots are taken: every `every` `unit`s (days, weeks or months), weeks on `weekday`
    (0 = Monday)."""

    every: int = 1
    unit: str = "months"
    weekday: int = 0

    @classmethod
    def from_config(cls, observation_cfg: Mapping[str, Any]) -> ObservationGrid:
        """The grid of an `observation` config node; ConfigError naming the key that cannot work."""
        unit = observation_cfg.get("unit", "months")
        every = observation_cfg.get("every", 1)
        old = observation_cfg.get("every_months")
        if old is not None:
            if unit != "months" or every not in (1, old):
                raise ConfigError(
                    f"observation.every_months ({old!r}) is the old spelling of observation.every with "
                    f"observation.unit=months, but observation.every is {every!r} and observation.unit "
                    f"{unit!r}: set observation.every and observation.unit only"
                )
            log.warning(
                "observation.every_months is deprecated: write observation.every=%s observation.unit=months",
                old,
            )
            every = _whole_number(old, "observation.every_months")
        if unit not in UNITS:
            raise ConfigError(
                f"observation.unit: {unit!r} is not a unit of the grid; use one of {', '.join(UNITS)}"
            )
        every = _whole_number(every, "observation.every")
        weekday = str(observation_cfg.get("weekday") or "monday").strip().lower()
        if weekday not in WEEKDAYS:
            raise ConfigError(
                f"observation.weekday: {weekday!r} is not a weekday; use one of {', '.join(WEEKDAYS)}"
            )
        return cls(every, str(unit), WEEKDAYS.index(weekday))

    def step(self, start: date, n: int) -> date:
        """The n-th date of the grid that starts at `start`."""
        if self.unit == "months":
            return add_months(start, n * self.every)
        days = n * self.every * (7 if self.unit == "weeks" else 1)
        return start + timedelta(days=days)

    def first_on_or_after(self, day: date) -> date:
        """The first grid anchor on or after `day`: a month start, the grid's weekday, or the day itself."""
        if self.unit == "months":
            return day if day.day == 1 else add_months(day.replace(day=1), 1)
        if self.unit == "weeks":
            return day + timedelta(days=(self.weekday - day.weekday()) % 7)
        return day

    def last_on_or_before(self, day: date) -> date:
        """The last grid anchor on or before `day`: its month's start, the grid's weekday, or the day itself."""
        if self.unit == "months":
            return day.replace(day=1)
        if self.unit == "weeks":
            return day - timedelta(days=(day.weekday() - self.weekday) % 7)
        return day

    def dates(self, start: date, end: date) -> list[date]:
        """The grid's dates from `start` (moved to the grid's weekday for weeks) to `end` inclusive."""
        if self.unit == "weeks":
            start = self.first_on_or_after(start)
        out: list[date] = []
        while (current := self.step(start, len(out))) <= end:
            out.append(current)
        return out

    def describe(self) -> str:
        """The grid in words: 'every month', 'every 2 weeks on Monday', 'every day'."""
        unit = self.unit[:-1] if self.every == 1 else self.unit
        text = f"every {unit}" if self.every == 1 else f"every {self.every} {unit}"
        return text + (f" on {WEEKDAYS[self.weekday].title()}" if self.unit == "weeks" else "")
