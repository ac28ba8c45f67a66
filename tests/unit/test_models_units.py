"""Unit tests of the modelling parts on a few hand-made values: split, metrics, calibration, encoding."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from models.calibration import IsotonicCalibrator, NoCalibration, SigmoidCalibrator
from models.evaluation import (
    capture_at,
    classification_metrics,
    expected_calibration_error,
    lift_at,
    targeting_profit,
)
from models.preprocessing import SnapshotEncoder
from models.split import time_split

MONTHS = [date(2023, m, 1) for m in range(1, 13)] + [date(2024, m, 1) for m in range(1, 13)]


def test_time_split_keeps_a_label_window_between_slices() -> None:
    split = time_split(MONTHS, test_dates=3, calibration_dates=3, gap_days=104)
    assert split.test == (date(2024, 10, 1), date(2024, 11, 1), date(2024, 12, 1))
    assert split.calibration[-1] <= date(2024, 6, 19) and len(split.calibration) == 3
    assert all((split.calibration[0] - d).days >= 104 for d in split.train)
    assert not set(split.train) & set(split.calibration) and not set(split.calibration) & set(split.test)


def test_time_split_names_the_slice_it_cannot_fill() -> None:
    with pytest.raises(
        ValueError,
        match="the test slice needs split.test_dates=3 labelled observation dates and the table has 2",
    ):
        time_split(MONTHS[:2], test_dates=3, calibration_dates=3, gap_days=104)
    with pytest.raises(ValueError, match="the calibration slice is empty"):
        time_split(MONTHS[:6], test_dates=3, calibration_dates=3, gap_days=104)
    with pytest.raises(ValueError, match="the training slice is empty: no labelled date is at least"):
        time_split(MONTHS[:11], test_dates=3, calibration_dates=3, gap_days=104)
    with pytest.raises(ValueError, match="split.test_dates=0: must be at least 1"):
        time_split(MONTHS, test_dates=0, calibration_dates=3, gap_days=104)
    with pytest.raises(ValueError, match="split.gap_days=-1"):
        time_split(MONTHS, test_dates=3, calibration_dates=3, gap_days=-1)
    note = "2 observation date(s) (2025-01-01..2025-02-01) have no label"
    with pytest.raises(ValueError, match=r"have no label"):
        time_split(MONTHS[:6], test_dates=3, calibration_dates=3, gap_days=104, unlabelled_note=note)


def test_time_split_without_calibration_dates_has_no_calibration_slice() -> None:
    split = time_split(MONTHS, test_dates=3, calibration_dates=0, gap_days=104)
    assert split.calibration == () and max(split.train) + timedelta(days=104) <= split.test[0]


def test_metrics_on_hand_made_values() -> None:
    y = np.array([0, 0, 0, 0, 1, 0, 0, 1, 0, 1])
    p = np.array([0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.8, 0.1, 0.9])
    # Two equal-frequency bins: the lower five (0.1, 0.1, 0.1, 0.2, 0.2) hold no churner; the upper five
    # (0.3, 0.3, 0.4, 0.8, 0.9) hold three: ECE = (5 * |0 - 0.14| + 5 * |0.6 - 0.54|) / 10 = 0.10.
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(0.10)
    assert lift_at(y, p, 0.2) == pytest.approx(1.0 / 0.3)  # top two (0.9, 0.8) are both churners
    assert capture_at(y, p, 0.2) == pytest.approx(2 / 3)
    metrics = classification_metrics(y, p)
    assert metrics["roc_auc"] == pytest.approx(19.5 / 21)  # 0.9 and 0.8 beat all 7; 0.3 beats 5, ties 1
    profit = targeting_profit(
        y, p, {"save_rate": 0.5, "value_per_saved_customer": 100.0, "contact_cost": 10.0}
    )
    # Contacting the top four (3 churners) pays best: 3 * 0.5 * 100 - 4 * 10 = 110; 31% of 10 rounds up to 4.
    assert profit["best_target_share_pct"] == 31.0 and profit["best_target_profit"] == pytest.approx(110.0)


def test_calibrators_map_scores_to_observed_rates() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, 20_000)
    y = (rng.uniform(0, 1, 20_000) < scores**2).astype(int)  # true probability is score squared
    from models.calibration import AutoCalibrator

    for calibrator in (IsotonicCalibrator(), SigmoidCalibrator(), AutoCalibrator()):
        p = calibrator.fit(scores, y).predict(scores)
        assert expected_calibration_error(y, p) < 0.02, type(calibrator).__name__
    assert expected_calibration_error(y, NoCalibration().fit(scores, y).predict(scores)) > 0.1


def test_encoder_fixes_columns_and_categories_at_fit_time() -> None:
    train = pd.DataFrame({"segment": ["a", "b", None], "n": [1, 2, 3]})
    encoder = SnapshotEncoder(categorical=["segment"]).fit(train)
    out = encoder.transform(pd.DataFrame({"n": [5], "segment": ["z"], "extra": [1]}))
    assert list(out.columns) == ["segment", "n"] and list(out["segment"].cat.categories) == ["a", "b"]
    assert out["segment"].isna().all() and out["n"].dtype == "float64"
    with pytest.raises(ValueError, match="lacks feature columns"):
        encoder.transform(pd.DataFrame({"n": [1]}))


def test_encoder_folds_rare_levels_into_one_other_level() -> None:
    from models.preprocessing import OTHER_LEVEL

    train = pd.DataFrame({"region": ["a"] * 5 + ["b"] * 3 + ["c"] + ["d"] * 2 + [None], "n": range(12)})
    encoder = SnapshotEncoder(categorical=["region"], min_level_rows=3).fit(train)
    assert encoder.categories_["region"] == ["a", "b", OTHER_LEVEL] and encoder.rare_levels_["region"] == [
        "c",
        "d",
    ]
    scored = encoder.transform(pd.DataFrame({"region": ["a", "c", "d", "never_seen", None], "n": range(5)}))
    assert list(scored["region"].cat.categories) == ["a", "b", OTHER_LEVEL]
    assert scored["region"].astype(object).tolist()[:4] == ["a", OTHER_LEVEL, OTHER_LEVEL, OTHER_LEVEL]
    assert pd.isna(scored["region"].iloc[4])  # empty stays missing, it is not a rare level
    # With no rare level there is no "(other)": unseen categories are missing, as before.
    plain = SnapshotEncoder(categorical=["region"], min_level_rows=1).fit(train)
    assert OTHER_LEVEL not in plain.categories_["region"]
    assert plain.transform(pd.DataFrame({"region": ["never_seen"], "n": [0]}))["region"].isna().all()


def test_lifetime_value_follows_the_documented_formula() -> None:
    from decisions.value import lifetime_value, monthly_retention

    # 10% churn over 90 days -> monthly retention 0.9 ** (30.4375 / 90); 10% a year -> monthly discount rate.
    r = 0.9 ** (30.4375 / 90)
    d = 1.1 ** (1 / 12) - 1
    expected = 0.35 * 100.0 * r / (1 + d - r)
    clv = lifetime_value(np.array([0.1, 0.0]), np.array([100.0, 100.0]), horizon_days=90, margin_rate=0.35,
                         annual_discount_rate=0.10)  # fmt: skip
    assert clv[0] == pytest.approx(expected) and expected == pytest.approx(785.8, abs=0.1)
    assert clv[1] == pytest.approx(35.0 / d)  # never churns: the discounted margin forever
    assert monthly_retention(np.array([0.5]), 30.4375)[0] == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["isotonic", "sigmoid", "auto"])
def test_calibrators_keep_the_ranking_and_never_say_0_or_1(name: str) -> None:
    from sklearn.metrics import roc_auc_score

    from models.calibration import AutoCalibrator

    calibrator = {"isotonic": IsotonicCalibrator(), "sigmoid": SigmoidCalibrator(), "auto": AutoCalibrator()}[
        name
    ]
    rng = np.random.default_rng(1)
    # A small table: 400 rows, a block of low scores with no churner and a block of high scores all churners,
    # the shape on which a plain isotonic step function says exactly 0 and 1.
    scores = np.concatenate(
        [rng.uniform(0.0, 0.05, 150), rng.uniform(0.05, 0.9, 200), rng.uniform(0.9, 1, 50)]
    )
    y = np.concatenate([np.zeros(150), (rng.uniform(0, 1, 200) < scores[150:350]).astype(int), np.ones(50)])
    fitted = calibrator.fit(scores, y)
    grid = np.linspace(0.0, 1.0, 2001)  # beyond the data's range too
    p = fitted.predict(grid)
    assert np.all((p > 0.0) & (p < 1.0)), name
    assert np.all(np.diff(p) > 0), f"{name} is not strictly increasing: ties would cost ranking"
    assert roc_auc_score(y, fitted.predict(scores)) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


def test_auto_calibration_picks_the_curve_the_data_needs() -> None:
    from models.calibration import AutoCalibrator, calibration_name

    rng = np.random.default_rng(2)
    scores = rng.uniform(0, 1, 8_000)
    logistic = (rng.uniform(0, 1, 8_000) < 1 / (1 + np.exp(-(4 * scores - 2)))).astype(int)
    stepped = (rng.uniform(0, 1, 8_000) < np.where(scores < 0.5, 0.05, 0.6)).astype(int)
    # Raw scores whose log-odds relate linearly to the truth favour the sigmoid; a step favours isotonic.
    on_logit = 1 / (1 + np.exp(-(4 * scores - 2)))
    assert calibration_name(AutoCalibrator().fit(on_logit, logistic)) == "sigmoid"
    assert calibration_name(AutoCalibrator().fit(scores, stepped)) == "isotonic"


def test_the_baseline_fits_a_fold_where_a_feature_is_empty_without_warnings() -> None:
    """A K-fold fold (or an orders-only export) can hold a feature with no value at all: the baseline keeps
    its column (so contributions stay one per feature) and says nothing the user cannot act on."""
    import warnings

    from models.churn_model import fit_churn_model
    from models.estimators import logistic_regression

    rng = np.random.default_rng(0)
    rows = pd.DataFrame(
        {
            "customer_id": np.arange(400),
            "spend": rng.normal(size=400),
            "days_since_last_complaint": np.nan,  # no complaint in this fold
            "segment": pd.Series(["a", "b"] * 200),
        }
    )
    rows["churned"] = (rows["spend"] + rng.normal(size=400) > 0.5).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = fit_churn_model(
            logistic_regression(), NoCalibration(), rows, rows,
            features=["spend", "days_since_last_complaint", "segment"], categorical=["segment"],
        )  # fmt: skip
        p = model.predict_proba(rows)
    assert 0 < p.min() < p.max() < 1
    assert model.contributions(rows).shape == (400, 4)
