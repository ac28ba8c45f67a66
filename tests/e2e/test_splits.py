"""Splits that cannot work stop before training, naming the empty slice; split=auto falls back to K-fold
and says so; K-fold runs keep their out-of-fold predictions, and the gate compares models on them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from churnwise import api
from models.errors import SplitError
from models.evaluation import classification_metrics
from tests.config_helpers import PROJECT_ROOT, compose_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project root for the module: the debug demo data is made once (1,500 customers, 24 months)."""
    folder = tmp_path_factory.mktemp("splits")
    api.generate(compose_config(folder))
    return folder


def config(root: Path, *overrides: str):
    return compose_config(root, "evaluation.baseline=null", *overrides)


def test_a_split_setting_that_cannot_work_exits_2_naming_the_empty_slice(root: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "debug=default", f"paths.root_dir={root}",
         "split.calibration_dates=0"],
        cwd=PROJECT_ROOT, env={**os.environ, "HYDRA_FULL_ERROR": "0"}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "split.calibration_dates=0 leaves the calibration slice empty" in output
    assert "calibration=none" in output and "Traceback" not in output


def test_too_few_training_dates_for_early_stopping_stop_before_lightgbm(root: Path) -> None:
    # Labelled dates 2022-08 .. 2023-09: two training dates before the calibration slice's gap, both of
    # which early stopping would take (LightGBM then failed on an empty matrix).
    cfg = config(root, "observation.start=2022-08-01")
    with pytest.raises(SplitError, match=r"early_stopping_dates=3 takes every one of the 2 training date"):
        api.train(cfg)


def test_split_time_that_does_not_fit_names_the_slice_and_the_dates_without_label(root: Path) -> None:
    cfg = config(root, "observation.start=2023-06-01")
    with pytest.raises(SplitError) as raised:
        api.train(cfg)
    message = str(raised.value)
    assert "the calibration slice is empty" in message
    assert "have no label: their label window ends after the data end (2024-01-01" in message


def test_split_auto_falls_back_to_kfold_and_says_so(root: Path) -> None:
    cfg = config(
        root, "split=auto", "observation.start=2023-06-01", "promotion.auto=false", "split.n_folds=3",
        "calibration=sigmoid",
    )  # fmt: skip
    trained = api.train(cfg)
    assert trained.split_kind == "kfold" and "calibration slice is empty" in trained.fallback
    run = mlflow.get_run(trained.run_id)
    assert run.data.tags["split.kind"] == "kfold"
    assert run.data.tags["split.fallback"].startswith(
        "split=auto used K-fold: the calibration slice is empty"
    )
    from models.training import summary_table

    assert "split=auto used K-fold, not time" in summary_table(trained, cfg)
    assert "out-of-fold metrics" in summary_table(trained, cfg)


def test_a_time_run_keeps_its_test_predictions_and_importance_table(
    root: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(root, "promotion.auto=false")
    trained = api.train(cfg)
    capfd.readouterr()
    api.promote(cfg)  # the gate scores the test slice: only the model's own columns, so no MLflow warning
    said = capfd.readouterr()
    assert "extra inputs" not in said.out + said.err + caplog.text
    client = mlflow.MlflowClient()
    predictions = pd.read_parquet(client.download_artifacts(trained.run_id, "predictions/test_slice.parquet"))
    assert len(predictions) == len(trained.test_rows) and predictions["p_churn"].between(0, 1).all()
    auc = classification_metrics(predictions["churned"].to_numpy(), predictions["p_churn"].to_numpy())[
        "roc_auc"
    ]
    assert auc == pytest.approx(trained.metrics["test_roc_auc"], abs=1e-12)
    importance = pd.read_csv(client.download_artifacts(trained.run_id, "run_info/feature_importance.csv"))
    assert {"feature", "gain", "splits", "gain_share"} <= set(importance.columns)
    assert importance["gain"].is_monotonic_decreasing and importance["gain_share"].sum() == pytest.approx(1.0)


def test_gap_zero_never_lets_calibration_and_test_share_a_date() -> None:
    from datetime import date

    from models.split import time_split

    dates = [date(2023, m, 1) for m in range(1, 13)]
    split = time_split(dates, test_dates=3, calibration_dates=3, gap_days=0)
    assert split.test == (date(2023, 10, 1), date(2023, 11, 1), date(2023, 12, 1))
    assert split.calibration == (date(2023, 7, 1), date(2023, 8, 1), date(2023, 9, 1))
    assert max(split.train) < min(split.calibration) and max(split.calibration) < min(split.test)


@pytest.fixture(scope="module")
def telco_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kfold")
    api.generate(compose_config(folder, "data=telco", "data.generator.n_customers=2500", debug=False))
    return folder


def telco(root: Path, *overrides: str):
    """The telco layout, small, K-fold (3 folds) with Platt calibration: a few seconds a model."""
    return compose_config(
        root, "data=telco", "data.generator.n_customers=2500", "split.n_folds=3", "calibration=sigmoid", *overrides,
        debug=False,
    )  # fmt: skip


def test_kfold_keeps_out_of_fold_predictions_per_repeat_and_sample_std(telco_root: Path) -> None:
    cfg = telco(telco_root, "split.n_repeats=2", "promotion.auto=false")
    trained = api.train(cfg)
    client = mlflow.MlflowClient()
    oof = pd.read_parquet(client.download_artifacts(trained.run_id, "predictions/out_of_fold.parquet"))
    labelled = len(trained.test_rows)
    assert len(oof) == 2 * labelled and sorted(oof["repeat"].unique()) == [0, 1]
    assert oof.groupby("repeat")["customer_id"].nunique().eq(labelled).all()  # every row once per repeat
    per_fold = [
        classification_metrics(g["churned"].to_numpy(), g["p_churn"].to_numpy())["roc_auc"]
        for _, g in oof.groupby(["repeat", "fold"])
    ]
    assert len(per_fold) == 6
    m = trained.metrics
    assert m["cv_roc_auc_std"] == pytest.approx(np.std(per_fold, ddof=1), rel=1e-9)
    assert m["cv_roc_auc_mean"] == pytest.approx(np.mean(per_fold), rel=1e-9)
    pooled = [
        classification_metrics(g["churned"].to_numpy(), g["p_churn"].to_numpy())["roc_auc"]
        for _, g in oof.groupby("repeat")
    ]
    assert m["test_roc_auc"] == pytest.approx(np.mean(pooled), rel=1e-9)
    assert "baseline_cv_roc_auc_mean" in m and "baseline_cv_roc_auc_std" in m


def test_the_gate_promotes_the_model_with_better_out_of_fold_auc(telco_root: Path) -> None:
    """An overfitted champion scores near 1 on its own training rows; the gate must compare both models on
    rows each did not see (the same folds), so the better-generalising challenger wins."""
    name = "telco-gate"
    overfit = telco(
        telco_root, f"mlflow.registered_model_name={name}", "evaluation.baseline=null", "model.num_leaves=63",
        "model.min_child_samples=2", "model.n_estimators=150", "model.learning_rate=0.3", "model.reg_lambda=0",
    )  # fmt: skip
    first = api.train(overfit)
    assert first.promoted
    sensible = telco(
        telco_root, f"mlflow.registered_model_name={name}", "evaluation.baseline=null", "model.num_leaves=7",
        "model.n_estimators=150", "model.learning_rate=0.05",
    )  # fmt: skip
    second = api.train(sensible)
    assert second.metrics["test_roc_auc"] > first.metrics["test_roc_auc"]  # out-of-fold, same folds
    assert second.promoted
    gate = mlflow.search_runs(
        filter_string="tags.stage = 'promote'", order_by=["attributes.start_time DESC"], max_results=1
    ).iloc[0]
    assert gate["tags.promotion.compared_on"].startswith("out-of-fold predictions of the same 3 folds")
    assert gate["metrics.challenger_roc_auc"] == pytest.approx(second.metrics["test_roc_auc"], abs=1e-9)
    assert gate["metrics.champion_roc_auc"] == pytest.approx(first.metrics["test_roc_auc"], abs=1e-9)
