"""Observation grids of any cadence (days, weeks, months) and label windows in days or calendar months: the
dates, the window ends (the SQL and Python agree), the split's gap and the value rule derived from them, and
the settings that cannot work."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from omegaconf import DictConfig, OmegaConf

from churnwise.settings import check_settings
from decisions.value import monthly_retention
from features.dialect import install_duckdb_functions
from features.engine import DataWindow, default_observation_dates
from features.errors import ConfigError
from features.labels import LabelWindow, label_sql
from features.observation import ObservationGrid
from models.ceiling import true_window_probability
from models.split import SplitSettings
from models.training import population_description

CONF = Path(__file__).resolve().parents[2] / "conf"
WINDOW = DataWindow(date(2023, 1, 4), date(2023, 12, 21))  # a Wednesday; last day Wednesday 2023-12-20


def observation(name: str, **overrides: object) -> dict:
    cfg = OmegaConf.load(CONF / "observation" / f"{name}.yaml")
    own = {k: v for k, v in OmegaConf.to_container(cfg).items() if k != "defaults"}
    base = OmegaConf.to_container(OmegaConf.load(CONF / "observation" / "monthly.yaml"))
    return base | own | overrides


def test_a_weekly_grid_takes_every_monday_from_the_warmup_to_the_data_end() -> None:
    dates = default_observation_dates(WINDOW, observation("weekly"))
    assert dates[0] == date(2023, 4, 10)  # the first Monday on or after 2023-01-04 + 90 days (Tuesday 04-04)
    assert dates[-1] == date(2023, 12, 18)  # the last Monday on or before the data's last day
    assert {d.weekday() for d in dates} == {0}
    assert all(b - a == timedelta(days=7) for a, b in zip(dates, dates[1:], strict=False))
    thursdays = default_observation_dates(WINDOW, observation("weekly", weekday="thursday", every=2))
    assert thursdays[:2] == [date(2023, 4, 6), date(2023, 4, 20)] and thursdays[-1] <= date(2023, 12, 20)
    # an explicit start moves to the grid's weekday
    assert default_observation_dates(WINDOW, observation("weekly", start="2023-06-01"))[0] == date(2023, 6, 5)


def test_a_daily_grid_and_the_monthly_default_keep_their_own_anchors() -> None:
    daily = default_observation_dates(WINDOW, observation("daily"))
    assert daily[0] == date(2023, 4, 4) and daily[-1] == date(2023, 12, 20) and len(daily) == 261
    monthly = default_observation_dates(WINDOW, observation("monthly"))
    assert monthly[0] == date(2023, 5, 1) and monthly[-1] == date(2023, 12, 1) and len(monthly) == 8
    assert ObservationGrid(1, "months").dates(date(2024, 1, 31), date(2024, 4, 30)) == [
        date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30)
    ]  # fmt: skip


def test_the_old_every_months_still_reads_as_a_grid_of_months() -> None:
    old = {k: v for k, v in observation("monthly").items() if k not in ("every", "unit")} | {
        "every_months": 3
    }
    assert default_observation_dates(WINDOW, old) == [date(2023, 5, 1), date(2023, 8, 1), date(2023, 11, 1)]
    for clash in ({"unit": "weeks"}, {"every": 2}):
        with pytest.raises(ConfigError, match=r"observation.every_months \(3\) is the old spelling"):
            ObservationGrid.from_config(old | clash)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"unit": "fortnights"}, r"observation.unit: 'fortnights' is not a unit .* days, weeks, months"),
        ({"every": 0}, r"observation.every: 0 is not a whole number of at least 1"),
        ({"every": -2, "unit": "weeks"}, r"observation.every: -2"),
        ({"every_months": 0}, r"observation.every_months: 0"),
        ({"unit": "weeks", "weekday": "funday"}, r"observation.weekday: 'funday' is not a weekday"),
    ],
)
def test_a_grid_that_cannot_work_names_its_key(override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        default_observation_dates(WINDOW, observation("monthly") | override)


def test_a_window_of_one_calendar_month_ends_on_the_same_day_next_month() -> None:
    month = LabelWindow.from_config({"horizon_days": None, "horizon_months": 1})
    assert month.end(date(2024, 1, 15)) == date(2024, 2, 15)
    assert month.end(date(2024, 1, 31)) == date(2024, 2, 29)  # clamped, as cw_add_months counts
    assert month.end(date(2024, 2, 29)) == date(2024, 3, 29)
    assert [month.length_days(d) for d in (date(2024, 2, 1), date(2024, 3, 1), date(2023, 2, 1))] == [
        29,
        31,
        28,
    ]
    later = LabelWindow.from_config({"horizon_days": None, "horizon_months": 3, "lead_days": 7})
    assert later.start(date(2024, 1, 24)) == date(2024, 1, 31) and later.end(date(2024, 1, 24)) == date(
        2024, 4, 30
    )
    assert month.describe() == "1 calendar month" and later.describe().startswith(
        "3 calendar months, starting 7"
    )

    # the SQL window ends where the Python one does, on every day of a leap year
    con = duckdb.connect()
    install_duckdb_functions(con)
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(366)]
    con.execute("CREATE TABLE d (observation_date DATE)")
    con.executemany("INSERT INTO d VALUES (?)", [[d] for d in days])
    for window in (month, later, LabelWindow.from_config({"horizon_days": 28, "lead_days": 2})):
        start_sql, end_sql = window.sql()
        rows = con.execute(f"SELECT observation_date, {start_sql}, {end_sql} FROM d ORDER BY 1").fetchall()
        assert [(s, e) for _, s, e in rows] == [(window.start(d), window.end(d)) for d in days]


def test_a_calendar_month_label_looks_at_that_month_and_is_labelled_when_the_data_covers_it() -> None:
    con = duckdb.connect()
    install_duckdb_functions(con)
    con.execute("CREATE TABLE grid AS SELECT * FROM (VALUES (1, DATE '2024-01-31'), (2, DATE '2024-01-31')) "
                "g(customer_id, observation_date)")  # fmt: skip
    con.execute("CREATE TABLE events AS SELECT * FROM (VALUES (1, TIMESTAMP '2024-02-28 12:00'), "
                "(2, TIMESTAMP '2024-02-29 08:00')) e(customer_id, event_time)")  # fmt: skip

    def labels(**window: object) -> dict[int, tuple]:
        cfg = {"name": "inactivity", "lead_days": 0, "grace_days": 0} | window
        sql = label_sql(cfg, date(2024, 2, 29), {"events"})
        return {r[0]: r[2:] for r in con.execute(f"SELECT * FROM ({sql}) ORDER BY 1").fetchall()}

    # [2024-01-31, 2024-02-29): customer 2's only event falls on the day after; the data ends in time
    assert labels(horizon_days=None, horizon_months=1) == {1: (0, "labeled"), 2: (1, "labeled")}
    # 30 days reach 2024-03-01, past the data end
    assert labels(horizon_days=30, horizon_months=None) == {
        1: (None, "window_after_data_end"), 2: (None, "window_after_data_end")
    }  # fmt: skip


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (
            {"horizon_days": 90, "horizon_months": 3},
            r"label.horizon_days \(90\) and label.horizon_months \(3\) are both set",
        ),
        (
            {"horizon_days": None, "horizon_months": None},
            r"label.horizon_days: set the label window's length",
        ),
        ({"horizon_days": 0}, r"label.horizon_days: 0 is not a whole number of at least 1"),
        ({"horizon_days": None, "horizon_months": 0}, r"label.horizon_months: 0"),
        ({"horizon_days": 90, "lead_days": -1}, r"label.lead_days: -1"),
    ],
)
def test_a_label_window_that_cannot_work_names_its_keys(window: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        label_sql({"name": "inactivity"} | window, date(2024, 6, 1), {"events"})


def test_the_split_gap_is_the_longest_label_reach() -> None:
    split = OmegaConf.create({"kind": "time", "gap_days": None, "n_folds": 5})
    days = OmegaConf.create({"lead_days": 0, "horizon_days": 90, "horizon_months": None, "grace_days": 14})
    assert SplitSettings.from_config(split, days).gap_days == 104
    months = OmegaConf.create({"lead_days": 3, "horizon_days": None, "horizon_months": 3, "grace_days": 14})
    assert SplitSettings.from_config(split, months).gap_days == 3 + 93 + 14  # 31 days a month
    # no window of 3 calendar months reaches further than the gap
    window = LabelWindow.from_config(months)
    longest = max(window.end(date(2020, 1, 1) + timedelta(days=i)) - date(2020, 1, 1) - timedelta(days=i)
                  for i in range(4 * 366))  # fmt: skip
    assert longest.days + window.grace_days <= SplitSettings.from_config(split, months).gap_days
    explicit = OmegaConf.create({"kind": "time", "gap_days": 10, "n_folds": 5})
    assert SplitSettings.from_config(explicit, months).gap_days == 10


def test_the_ceiling_and_the_summary_count_the_window_of_each_date(tmp_path: Path) -> None:
    truth = pd.DataFrame({"customer_id": ["a", "a"], "month": [date(2024, 2, 1), date(2024, 3, 1)],
                          "p_churn": [0.1, 0.2]})  # fmt: skip
    truth.to_parquet(tmp_path / "true_churn_probability.parquet")
    rows = pd.DataFrame({"customer_id": ["a", "a"], "observation_date": [date(2024, 2, 1), date(2024, 3, 1)]})
    month = LabelWindow.from_config({"horizon_days": None, "horizon_months": 1})
    np.testing.assert_allclose(true_window_probability(tmp_path, rows, window=month), [0.1, 0.2])
    thirty = LabelWindow.from_config({"horizon_days": 30})
    np.testing.assert_allclose(
        true_window_probability(tmp_path, rows, window=thirty), [1 - 0.9 ** (30 / 29), 1 - 0.8 ** (30 / 31)]
    )
    label = OmegaConf.create({"population": "contract", "horizon_days": None, "horizon_months": 2})
    assert population_description(label).endswith("churned: left within 2 calendar months")
    assert month.approx_days == pytest.approx(365.25 / 12) and thirty.approx_days == 30
    # lifetime value's monthly rate: churn 27.1% over 3 calendar months is 10% a month
    quarter = LabelWindow.from_config({"horizon_days": None, "horizon_months": 3})
    assert monthly_retention(np.array([0.271]), quarter.approx_days)[0] == pytest.approx(0.9)


def test_bad_grid_and_window_settings_stop_every_stage_naming_the_key(
    make_cfg: Callable[..., DictConfig],
) -> None:
    check_settings(
        make_cfg("observation=weekly", "label.horizon_days=null", "label.horizon_months=1"), "train"
    )
    for override, message in (
        (["observation.unit=fortnights"], "observation.unit"),
        (["observation.every=0"], "observation.every"),
        (["label.horizon_months=3"], "label.horizon_days (90) and label.horizon_months (3) are both set"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            check_settings(make_cfg(*override), "features")
