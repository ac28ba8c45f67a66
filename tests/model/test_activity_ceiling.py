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
