"""Per-customer contributions are exact: they sum to each row's raw log-odds, for trees and linear models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier

from models.calibration import NoCalibration
from models.churn_model import fit_churn_model, transformed_column_owners
from models.estimators import logistic_regression


@pytest.fixture(scope="module")
def snapshots() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame(
        {
            "open_complaints": rng.poisson(0.3, n).astype(float),
            "tenure_days": rng.uniform(0, 2000, n),
            "days_since_last_order": np.where(rng.random(n) < 0.3, np.nan, rng.uniform(0, 400, n)),
            "segment": rng.choice(["consumer", "small_business", "enterprise"], n),
        }
    )
    logit = (
        -2.5
        + 0.9 * frame["open_complaints"]
        - 0.001 * frame["tenure_days"]
        + 0.4 * (frame["segment"] == "consumer")
    )
    frame["churned"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


FEATURES = ["open_complaints", "tenure_days", "days_since_last_order", "segment"]


def log_odds(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


@pytest.mark.parametrize(
    "estimator",
    [
        LGBMClassifier(n_estimators=30, num_leaves=7, min_child_samples=50, verbose=-1, random_state=0),
        logistic_regression(C=1.0),
    ],
    ids=["lightgbm", "logistic"],
)
def test_contributions_sum_to_the_raw_log_odds(snapshots: pd.DataFrame, estimator) -> None:
    model = fit_churn_model(
        estimator, NoCalibration(), snapshots, snapshots, features=FEATURES, categorical=["segment"]
    )
    rows = snapshots.head(200)
    contributions = model.contributions(rows)
    assert contributions.shape == (200, len(FEATURES) + 1)
    assert contributions.sum(axis=1) == pytest.approx(log_odds(model.raw_scores(rows)), abs=1e-6)
    # Complaints drive risk in this data: customers with more open complaints get a larger contribution.
    complaints = contributions[:, 0]
    many, none = rows["open_complaints"].to_numpy() >= 2, rows["open_complaints"].to_numpy() == 0
    assert complaints[many].mean() > 0 > complaints[none].mean()


def test_linear_contributions_are_relative_to_the_average_training_customer(snapshots: pd.DataFrame) -> None:
    model = fit_churn_model(
        logistic_regression(C=1.0),
        NoCalibration(),
        snapshots,
        snapshots,
        features=FEATURES,
        categorical=["segment"],
    )
    contributions = model.contributions(snapshots)
    # Centred on the training mean: each feature's contributions average to zero over the training rows.
    assert contributions[:, :-1].mean(axis=0) == pytest.approx(np.zeros(len(FEATURES)), abs=1e-9)
    assert np.ptp(contributions[:, -1]) == 0.0  # one bias for everyone


def test_transformed_columns_map_back_to_their_feature() -> None:
    features = ["segment", "segment_size", "days_since_last_order", "tenure_days"]
    columns = [
        "categorical__segment_consumer",
        "categorical__segment_size_large",
        "categorical__segment_infrequent_sklearn",
        "numeric__days_since_last_order",
        "numeric__missingindicator_days_since_last_order",
        "numeric__tenure_days",
    ]
    assert transformed_column_owners(columns, features) == [0, 1, 0, 2, 2, 3]
    with pytest.raises(ValueError, match="cannot tell which feature"):
        transformed_column_owners(["numeric__unknown"], features)


@pytest.mark.parametrize(
    "estimator",
    [
        LGBMClassifier(n_estimators=30, num_leaves=7, min_child_samples=50, verbose=-1, random_state=0),
        logistic_regression(C=1.0),
    ],
    ids=["lightgbm", "logistic"],
)
def test_contributions_stay_exact_and_per_feature_with_rare_levels_folded(
    snapshots: pd.DataFrame, estimator
) -> None:
    rng = np.random.default_rng(3)
    rows = snapshots.assign(
        region=rng.choice(
            [f"region_{i:02d}" for i in range(12)], len(snapshots), p=[0.3, 0.3, 0.3] + [0.1 / 9] * 9
        )
    )
    features = [*FEATURES, "region"]
    model = fit_churn_model(
        estimator, NoCalibration(), rows, rows, features=features, categorical=["segment", "region"],
        min_level_rows=100,
    )  # fmt: skip
    assert len(model.encoder.rare_levels_["region"]) == 9  # about 33 rows each
    scored = rows.head(300).assign(region=["region_05", "never_seen", None] * 100)  # rare, unseen, empty
    contributions = model.contributions(scored)
    assert contributions.shape == (300, len(features) + 1)  # one column per feature, not per level
    assert contributions.sum(axis=1) == pytest.approx(log_odds(model.raw_scores(scored)), abs=1e-6)
    # A rare level and an unseen one are the same level to the model: the same customer otherwise gets the same
    # contributions with either.
    twins = model.contributions(pd.concat([rows.head(1)] * 2).assign(region=["region_05", "never_seen"]))
    assert twins[0] == pytest.approx(twins[1], abs=1e-12)
