"""Model test: a model trained on the orders-only retail demo is scored beside its ceiling, the generator's
exact inactivity probability, and comes close to it without beating it."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_helpers import compose_config
from hydra.core.global_hydra import GlobalHydra

from churnwise.api import train

pytestmark = pytest.mark.slow


def test_a_retail_run_logs_its_ceiling_and_stays_below_it(tmp_path: Path) -> None:
    cfg = compose_config(
        tmp_path, "data=retail", "data.generator.n_customers=3000", "data.generator.months=20",
        "evaluation.baseline=null", "model.min_child_samples=100", debug=False,
    )  # fmt: skip
    try:
        metrics = train(cfg).metrics
    finally:
        GlobalHydra.instance().clear()
    assert {"ceiling_test_roc_auc", "ceiling_test_log_loss", "ceiling_test_ece"} <= set(metrics)
    assert metrics["test_roc_auc"] > 0.7
    assert metrics["test_roc_auc"] <= metrics["ceiling_test_roc_auc"]
    assert metrics["ceiling_test_log_loss"] < metrics["test_log_loss"]


def test_the_app_demo_trains_weekly_and_scores_its_customers_by_their_purchases(tmp_path: Path) -> None:
    """data=app as a user runs it: a weekly grid, a 28-day window, and customer value from in-app purchases
    (there is no recurring revenue to value them by)."""
    import pandas as pd

    from churnwise.api import score

    overrides = (
        "data=app",
        "data.generator.n_customers=2000",
        "data.generator.months=12",
        "evaluation.baseline=null",
    )
    try:
        trained = train(compose_config(tmp_path, *overrides, debug=False))
        scored = score(compose_config(tmp_path, *overrides, debug=False))
    finally:
        GlobalHydra.instance().clear()
    assert "ceiling_test_roc_auc" in trained.metrics and trained.metrics["test_roc_auc"] > 0.8
    dates = pd.read_parquet(Path(tmp_path) / "data" / "features" / "app_inactivity" / "features.parquet")[
        "observation_date"
    ]
    assert {pd.Timestamp(d).day_name() for d in dates.unique()} == {"Monday"}
    out = pd.read_parquet(scored.path)
    assert (
        len(out) > 100 and out["clv"].gt(0).any() and out["p_churn"].between(0, 1, inclusive="neither").all()
    )
