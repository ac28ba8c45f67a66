"""Retention measures on hand-made data: retention rates, expected lifetime, Kaplan-Meier."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.retention import (
    expected_lifetime,
    kaplan_meier,
    lifetime_table,
    median_survival,
    retention_table,
    survival_at,
)


def test_expected_lifetime_is_one_over_one_minus_retention() -> None:
    assert expected_lifetime(0.8) == pytest.approx(5.0)
    assert expected_lifetime(0.9) == pytest.approx(10.0)
    assert expected_lifetime(np.array([0.0, 0.5])) == pytest.approx([1.0, 2.0])
    with pytest.raises(ValueError, match="finite expected lifetime"):
        expected_lifetime(1.0)


def test_lifetime_table_shows_what_five_and_ten_points_of_retention_are_worth() -> None:
    table = lifetime_table(0.80, annual_margin=300.0, customers=1000)
    assert table["scenario"].tolist() == ["current", "+5 points", "+10 points"]
    assert table["annual_retention"].tolist() == pytest.approx([0.80, 0.85, 0.90])
    assert table["expected_lifetime_years"].tolist() == pytest.approx([5.0, 20 / 3, 10.0])
    assert table["lifetime_value_per_customer"].tolist() == pytest.approx([1500.0, 2000.0, 3000.0])
    assert table["value_change"].tolist() == pytest.approx([0.0, 500_000.0, 1_500_000.0])
    assert table["value_change_pct"].tolist() == pytest.approx([0.0, 100 / 3, 100.0])


def test_retention_rate_is_the_share_of_starting_customers_still_there_at_the_end() -> None:
    periods = pd.DataFrame(
        {
            "period": ["2023"] * 5 + ["2024"] * 4,
            "segment": ["a", "a", "a", "b", "b", "a", "a", "b", "b"],
            "retained": [True, True, False, True, False, True, True, True, False],
        }
    )
    overall = retention_table(periods)
    assert overall["retention_rate"].tolist() == pytest.approx([3 / 5, 3 / 4])
    by_segment = retention_table(periods, ["segment"])
    assert by_segment[["period", "segment", "customers", "retained"]].values.tolist() == [
        ["2023", "a", 3, 2], ["2023", "b", 2, 1], ["2024", "a", 2, 2], ["2024", "b", 2, 1],
    ]  # fmt: skip
    assert len(retention_table(periods, ["segment"], min_customers=3)) == 1


def test_kaplan_meier_matches_the_textbook_example() -> None:
    # Freireich et al. (1963), 6-MP arm: weeks in remission; * = censored
    weeks = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
    censored = {3, 5, 7, 8, 11, 12, 13, 16, 17, 18, 19, 20}  # positions of 6*, 9*, 10*, 11*, 17*, ...
    event = np.array([i not in censored for i in range(len(weeks))])
    curve = kaplan_meier(np.array(weeks, dtype=float), event)
    expected = {6: 0.857, 7: 0.807, 10: 0.753, 13: 0.690, 16: 0.627, 22: 0.538, 23: 0.448}
    # the event times, then flat to the last follow-up (35 weeks, censored)
    assert curve["time"].tolist() == [0.0, *map(float, expected), 35.0]
    assert curve["survival"].tolist()[1:] == pytest.approx([*expected.values(), 0.448], abs=5e-4)
    assert curve["at_risk"].tolist()[1:] == [21, 17, 15, 12, 11, 7, 6, 1]
    assert (curve["ci_low"] <= curve["survival"]).all() and (curve["survival"] <= curve["ci_high"]).all()
    at = survival_at(curve, [0, 5.9, 6, 12, 35, 40])
    assert at[:5] == pytest.approx([1.0, 1.0, 0.857, 0.753, 0.448], abs=5e-4) and np.isnan(at[5])
    assert median_survival(curve) == 23.0


def test_kaplan_meier_with_delayed_entry_counts_a_customer_at_risk_only_once_observed() -> None:
    # (entry, exit, churned): a customer who joined before the data starts enters the risk set late.
    entry = np.array([0.0, 0.0, 1.0, 3.5])
    exit_ = np.array([2.0, 4.0, 3.0, 5.0])
    churned = np.array([True, False, True, True])
    curve = kaplan_meier(exit_, churned, entry)
    # t=2: at risk 1, 2, 3 -> 2/3; t=3: 2, 3 (4 enters at 3.5) -> 1/3; t=5: only 4 (2 censored at 4) -> 0
    assert curve["time"].tolist() == [0.0, 2.0, 3.0, 5.0]
    assert curve["at_risk"].tolist()[1:] == [3, 2, 1]
    assert curve["survival"].tolist() == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    with pytest.raises(ValueError, match="entry > duration"):
        kaplan_meier(np.array([1.0]), np.array([True]), np.array([2.0]))


def test_contract_types_name_the_term_in_months() -> None:
    import duckdb

    from analytics.dated_report import contract_type_sql

    terms = (
        duckdb.connect()
        .execute(f"SELECT {contract_type_sql('t')} FROM (SELECT unnest([NULL, 0, 1, 6, 12, 24, 36]) AS t)")
        .fetchall()
    )
    assert [row[0] for row in terms] == [
        None, "month-to-month", "1-month term", "6-month term", "12-month term", "24-month term", "36-month term",
    ]  # fmt: skip
