"""Each numeric feature's training range, recorded at training and checked at scoring: the share of scored
customers outside it, a warning naming the features beyond score.out_of_range_warn_share, and old models
without the ranges skipped with one info line."""

from __future__ import annotations

import logging

import duckdb
import pandas as pd
import pytest

from decisions.checks import check_training_ranges, out_of_range_shares
from models.feature_ranges import training_ranges


def test_training_ranges_of_numeric_features_by_hand() -> None:
    rows = pd.DataFrame(
        {
            "tenure_days": [30.0, 90.0, None, 400.0, 60.0],
            "is_paperless": [1, 0, 1, 1, 0],
            "segment": ["a", "b", "a", "a", "b"],
            "blank": [None] * 5,
        }
    )
    ranges = training_ranges(rows, ["tenure_days", "is_paperless", "segment", "blank"], ["segment"])
    assert set(ranges) == {"tenure_days", "is_paperless"}  # categorical and empty features have no range
    assert ranges["tenure_days"]["min"] == 30.0 and ranges["tenure_days"]["max"] == 400.0
    assert ranges["tenure_days"]["p01"] == pytest.approx(30 + 0.01 * 3 * 30)  # between 30 and 60
    assert ranges["is_paperless"] == {"min": 0.0, "max": 1.0, "p01": 0.0, "p99": 1.0}


def test_scoring_values_beyond_the_training_range_are_shared_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    con = duckdb.connect()
    scored = con.sql(
        "SELECT * FROM (VALUES ('c1', 500.0, 1, 'a'), ('c2', 2500.0, 0, 'b'), ('c3', NULL, 1, 'a'), "
        "('c4', 3000.0, 1, 'b')) AS t(customer_id, tenure_days, is_paperless, segment)"
    )
    ranges = {
        "tenure_days": {"min": 0.0, "max": 2190.0, "p01": 10.0, "p99": 2100.0},
        "is_paperless": {"min": 0.0, "max": 1.0, "p01": 0.0, "p99": 1.0},
        "not_scored": {"min": 0.0, "max": 1.0, "p01": 0.0, "p99": 1.0},
    }
    # by hand: 2 of 4 customers above 2190 days (the blank one is not outside), none outside 0 .. 1
    assert out_of_range_shares(scored, ranges) == {"tenure_days": 0.5, "is_paperless": 0.0}

    with caplog.at_level(logging.INFO, logger="decisions.checks"):
        shares = check_training_ranges(scored, {"training_ranges": ranges}, "models:/m/1", 0.01)
    assert shares["tenure_days"] == 0.5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "tenure_days 50% (trained on 0 .. 2190)" in warnings[0]
    assert "is_paperless" not in warnings[0] and "score.out_of_range_warn_share 1%" in warnings[0]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="decisions.checks"):
        assert check_training_ranges(scored, {"training_ranges": ranges}, "models:/m/1", 0.6) == shares
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]  # 50% is within a 60% threshold


def test_a_model_without_training_ranges_is_skipped_with_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scored = duckdb.connect().sql("SELECT 'c1' AS customer_id, 5000.0 AS tenure_days")
    with caplog.at_level(logging.INFO, logger="decisions.checks"):
        assert check_training_ranges(scored, {"features": []}, "models:/old/3", 0.01) == {}
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "models:/old/3 records no training ranges" in caplog.records[0].getMessage()
