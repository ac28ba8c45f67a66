"""Unit tests of the feature stability check (models/stability.py) on small synthetic snapshot tables."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from features.errors import ConfigError
from models.split import SplitSettings
from models.stability import StabilitySettings, check_stability, feature_stability

DATES = [date(2023, m, 1) for m in range(1, 13)] + [date(2024, m, 1) for m in range(1, 13)]
SPLIT = SplitSettings(kind="time", test_dates=3, calibration_dates=3, gap_days=92)
FEATURES = ["usage", "drifting", "segment", "tenure_days"]


def snapshots(flip_from: date = DATES[-3], n_customers: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Monthly snapshots: `usage` and `segment` relate to churn the same way throughout; `drifting` raises
    churn until `flip_from` and lowers it from then on; `tenure_days` has no relation at all."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(["consumer", "small_business", "enterprise", "public", "partner"], n_customers)
    frames = []
    for day in DATES:
        frame = pd.DataFrame(
            {
                "customer_id": np.arange(n_customers),
                "observation_date": day,
                "usage": rng.normal(size=n_customers),
                "drifting": np.where(rng.random(n_customers) < 0.1, np.nan, rng.normal(size=n_customers)),
                "segment": segment,
                "tenure_days": rng.uniform(0, 2000, n_customers),
            }
        )
        sign = -1.0 if day >= flip_from else 1.0
        logit = (
            -2.0
            + 0.6 * frame["usage"]
            + sign * 0.6 * frame["drifting"].fillna(0)
            + 0.5 * (segment == "consumer")
        )
        frame["churned"] = (rng.random(n_customers) < 1 / (1 + np.exp(-logit))).astype(int)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_a_feature_whose_relation_flips_on_the_test_dates_is_flagged_and_a_stable_one_is_not() -> None:
    result = check_stability(StabilitySettings(), SPLIT, snapshots(), FEATURES, ["segment"])
    verdicts = dict(zip(result.table["feature"], result.table["verdict"], strict=True))
    assert verdicts == {"usage": "stable", "drifting": "flipped", "segment": "stable", "tenure_days": "weak"}
    assert result.flagged == ["drifting"] and result.dropped == []  # action flag: reported, kept
    drifting = result.table.set_index("feature").loc["drifting"]
    assert drifting["train_auc"] > 0.55 > 0.45 > drifting["later_auc"] and drifting["rate_correlation"] < 0
    assert result.metrics() == {"stability_flagged_features": 1.0, "stability_dropped_features": 0.0}
    assert (
        "drifting (flipped)" in result.summary()
        and "against test dates 2024-10-01..2024-12-01" in result.summary()
    )


def test_stable_data_flags_nothing() -> None:
    result = check_stability(
        StabilitySettings(), SPLIT, snapshots(flip_from=date(2099, 1, 1)), FEATURES, ["segment"]
    )
    assert result.flagged == [] and "no feature's relation to churn changed" in result.summary()


def test_a_relation_that_collapses_is_flagged() -> None:
    rows = snapshots(flip_from=date(2099, 1, 1))
    later = rows["observation_date"] >= DATES[-3]
    shuffled = rows.loc[later, "drifting"].sample(frac=1.0, random_state=1).to_numpy()
    rows.loc[later, "drifting"] = shuffled  # on the test dates, drifting says nothing about churn
    result = check_stability(StabilitySettings(), SPLIT, rows, FEATURES, ["segment"])
    assert result.flagged == ["drifting"]
    assert result.table.set_index("feature").loc["drifting", "verdict"] == "collapsed"


def test_drop_leaves_the_unstable_feature_out_of_the_manifest() -> None:
    result = check_stability(StabilitySettings(action="drop"), SPLIT, snapshots(), FEATURES, ["segment"])
    assert (
        result.dropped == ["drifting"] and result.table.set_index("feature")["dropped"].to_dict()["drifting"]
    )
    manifest = {"features": [{"name": f} for f in FEATURES], "categorical_features": ["segment"]}
    kept = result.without_dropped(manifest)
    assert [f["name"] for f in kept["features"]] == ["usage", "segment", "tenure_days"]
    assert kept["unstable_features"] == ["drifting"] and "dropped before fitting" in result.summary()


def test_against_calibration_compares_the_calibration_dates() -> None:
    # The relation flips on the test dates only: the calibration dates still agree with training.
    result = check_stability(
        StabilitySettings(against="calibration"), SPLIT, snapshots(), FEATURES, ["segment"]
    )
    assert result.flagged == [] and "against calibration dates" in result.compared


def test_kfold_is_skipped_with_the_reason() -> None:
    result = check_stability(
        StabilitySettings(), SplitSettings(kind="kfold"), snapshots(), FEATURES, ["segment"]
    )
    assert result.skipped == "a K-fold split has no training and later dates to compare"
    assert result.metrics() == {} and result.summary().startswith("skipped: a K-fold split")
    too_long = SplitSettings(kind="time", test_dates=20, calibration_dates=3, gap_days=92)
    result = check_stability(StabilitySettings(), too_long, snapshots(), FEATURES, ["segment"])
    assert result.skipped.startswith("no time split (split=time: the calibration slice is short")


def test_a_categorical_relation_that_flips_is_flagged() -> None:
    rows = snapshots(flip_from=date(2099, 1, 1))
    later = rows["observation_date"] >= DATES[-3]
    rows.loc[later, "segment"] = rows.loc[later, "segment"].replace(
        {"consumer": "public", "public": "consumer"}
    )
    # consumers churn more before; on the test dates the customers labelled consumer churn least
    table = feature_stability(rows[~later & (rows["observation_date"] < DATES[-7])], rows[later], ["segment"],
                              ["segment"], StabilitySettings())  # fmt: skip
    assert table.loc[0, "verdict"] in ("flipped", "collapsed") and table.loc[0, "rate_correlation"] < 0


@pytest.mark.parametrize(
    ("node", "key"), [({"action": "remove"}, "stability.action"), ({"against": "future"}, "stability.against"),
                      ({"bins": 1}, "stability.bins"), ({"keep_share": -1}, "stability.keep_share")],
)  # fmt: skip
def test_bad_settings_name_their_key(node: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        StabilitySettings.from_config(node)


def test_drop_refuses_to_leave_no_feature() -> None:
    with pytest.raises(ConfigError, match="every feature"):
        check_stability(StabilitySettings(action="drop"), SPLIT, snapshots(), ["drifting"], [])
