"""Data tests of the orders-only (retail) and app-log demo generators: their truth is the probability of the
inactivity label the feature pipeline builds from their tables (mean truth = realised rate within sampling
error, per date too), it ranks better than a model fitted on the features, and it is exact on a hand-made
history."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from features.demo.activity import (
    AppSpec,
    RetailSpec,
    generate_activity,
    history_inactivity_probability,
    season,
    true_inactivity_probability,
)
from features.engine import build_feature_table
from features.validation import load_tables

CONF = Path(__file__).resolve().parents[2] / "conf"
CASES = {
    "retail": (RetailSpec(n_customers=4000, months=24, seed=5), 90, 90,
               ["days_since_last_order", "orders_30d", "orders_90d", "orders_365d", "order_amount_365d"]),
    "app": (AppSpec(n_customers=4000, months=16, seed=5), 28, 28,
            ["days_since_last_event", "events_30d", "events_90d", "events_365d", "quantity_30d"]),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(CASES))
def labelled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[pd.DataFrame, list[str]]:
    """The labelled snapshots of a small generated business, with the truth of each row (column `truth`)."""
    spec, horizon, lookback, model_features = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    summary = generate_activity(spec, root / "tables", root / "truth")
    tables = load_tables(summary.tables_dir)
    label_cfg = OmegaConf.to_container(OmegaConf.load(CONF / "label" / "inactivity.yaml"))
    label_cfg |= {"horizon_days": horizon, "activity_lookback_days": lookback}
    build_feature_table(
        tables.con,
        set(tables.report.present),
        OmegaConf.to_container(OmegaConf.load(CONF / "features" / "default.yaml")),
        OmegaConf.to_container(OmegaConf.load(CONF / "observation" / "monthly.yaml")),
        label_cfg,
    )
    snapshots = tables.con.execute("SELECT * FROM feature_table WHERE churned IS NOT NULL").df()
    snapshots["churned"] = snapshots["churned"].astype(int)
    snapshots["truth"] = true_inactivity_probability(summary.truth_dir, snapshots, horizon_days=horizon)
    snapshots.attrs.update(tables_dir=summary.tables_dir, truth_dir=summary.truth_dir, horizon=horizon)
    return snapshots, model_features


def test_mean_truth_is_the_realised_inactivity_rate(labelled: tuple[pd.DataFrame, list[str]]) -> None:
    snapshots, _ = labelled
    assert len(snapshots) > 5000 and snapshots["truth"].notna().all()
    assert 0.1 < snapshots["churned"].mean() < 0.6
    by_date = snapshots.groupby("observation_date").agg(n=("churned", "size"), rate=("churned", "mean"),
                                                       p=("truth", "mean"))  # fmt: skip
    assert len(by_date) >= 8
    # Overall, within 3 standard errors of the summed Bernoulli variances (rows of one customer on nearby
    # dates are dependent, so the bound is loose, not exact).
    variance = float((snapshots["truth"] * (1 - snapshots["truth"])).sum())
    gap = abs(float(snapshots["churned"].sum() - snapshots["truth"].sum()))
    assert gap <= 3 * math.sqrt(variance) * 2, (gap, variance)
    for day, row in by_date.iterrows():
        se = math.sqrt(row.p * (1 - row.p) / row.n)
        assert abs(row.rate - row.p) <= 4 * se + 0.02, (day, row.rate, row.p)


def test_truth_ranks_better_than_a_model_on_the_features(labelled: tuple[pd.DataFrame, list[str]]) -> None:
    snapshots, model_features = labelled
    dates = sorted(snapshots["observation_date"].unique())
    train, test = (
        snapshots[snapshots["observation_date"] < dates[-4]],
        snapshots[snapshots["observation_date"] >= dates[-3]],
    )
    X = lambda rows: np.log1p(rows[model_features].astype(float).fillna(0.0).clip(lower=0.0))  # noqa: E731
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X(train), train["churned"])
    model_auc = roc_auc_score(test["churned"], model.predict_proba(X(test))[:, 1])
    truth_auc = roc_auc_score(test["churned"], test["truth"])
    assert model_auc > 0.65  # the features carry the signal...
    assert truth_auc >= model_auc  # ...and the truth, which knows each customer's latent rate, more of it
    # The best prediction from the tables alone (the truth averaged over the latent rate and attention span
    # given the history) lies between: at least as good as the model, short of the truth, and calibrated.
    best = history_inactivity_probability(
        snapshots.attrs["tables_dir"], snapshots.attrs["truth_dir"],
        test.reset_index(drop=True), horizon_days=snapshots.attrs["horizon"], draws=200,
    )  # fmt: skip
    best_auc = roc_auc_score(test["churned"], best)
    assert model_auc - 0.005 <= best_auc <= truth_auc, (model_auc, best_auc, truth_auc)
    assert abs(best.mean() - test["churned"].mean()) <= 0.03


def test_truth_is_exact_on_a_hand_made_history(tmp_path: Path) -> None:
    """One customer, known rate and attention span: P = exp(-sum of the intensity along the silent path), with
    the last activity strictly before the date (activity on the date itself falls in the window)."""
    spec = RetailSpec(n_customers=3, months=12, seed=1)
    summary = generate_activity(spec, tmp_path / "tables", tmp_path / "truth")
    rates = pd.read_parquet(summary.truth_dir / "true_activity_rates.parquet").set_index("customer_id")
    days = pd.read_parquet(summary.truth_dir / "true_activity_days.parquet")
    customer = int(days["customer_id"].value_counts().index[0])  # the one with the most active days
    active = sorted(pd.to_datetime(days.loc[days["customer_id"] == customer, "activity_date"]))
    assert len(active) >= 2
    observation = active[-1]  # active on the date itself: the state is the previous active day
    last = active[-2]
    horizon = 30
    window = np.array([np.datetime64(observation.date()) + np.timedelta64(k, "D") for k in range(horizon)])
    since = (window - np.datetime64(last.date())).astype(float)
    rate, decay = rates.loc[customer, "rate"], rates.loc[customer, "decay_days"]
    expected = math.exp(-float(np.sum(rate * season(spec, window) * (spec.floor + np.exp(-since / decay)))))
    keys = pd.DataFrame({"customer_id": [customer], "observation_date": [observation.date()]})
    found = true_inactivity_probability(summary.truth_dir, keys, horizon_days=horizon)
    assert found[0] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="lead_days"):
        true_inactivity_probability(summary.truth_dir, keys, horizon_days=horizon, lead_days=7)


def test_same_spec_same_data_and_the_truth_is_not_among_the_tables(tmp_path: Path) -> None:
    spec = AppSpec(n_customers=200, months=6, seed=3)
    first = generate_activity(spec, tmp_path / "a", tmp_path / "a_truth")
    second = generate_activity(spec, tmp_path / "b", tmp_path / "b_truth")
    for name in ("customers", "events"):
        pd.testing.assert_frame_equal(pd.read_parquet(first.tables_dir / f"{name}.parquet"),
                                      pd.read_parquet(second.tables_dir / f"{name}.parquet"))  # fmt: skip
    assert sorted(p.name for p in first.tables_dir.glob("*.parquet")) == [
        "customers.parquet",
        "events.parquet",
    ]
    events = pd.read_parquet(first.tables_dir / "events.parquet")
    assert set(events["event_type"]) <= {"app_session", "feature_use", "purchase"}
    assert (events["event_time"] < pd.Timestamp(spec.end_date)).all()
