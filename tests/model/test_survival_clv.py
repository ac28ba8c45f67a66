"""Survival lifetime value on demo data: the effects bundle trained, registered and promoted with the churn
model, checked against the customers' realised survival, and used by scoring (or not, for an older model)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
import pytest
from config_helpers import SHRUNK, compose_config, outputs_for
from hydra.core.global_hydra import GlobalHydra
from mlflow.exceptions import MlflowException

from churnwise.api import score, train
from decisions.value import lifetime_value
from models.registry import register_challengers

pytestmark = pytest.mark.slow
# 36 months (not the debug data's 24), so the survival check date has a year of history before it to
# learn from and a year after it to check on
DEMO = (*SHRUNK, "data.generator.months=36")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("survival")
    cfg = compose_config(root, *DEMO)
    result = train(cfg)
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    yield cfg, result, root
    GlobalHydra.instance().clear()


def test_training_logs_survival_metrics_and_registers_the_effects_bundle_with_the_model(trained) -> None:
    cfg, result, _ = trained
    m = result.metrics
    for key in ("survival_brier_3m", "survival_brier_12m", "survival_vs_label_gap"):
        assert 0 <= m[key] < 0.25, (key, m[key])
    assert m["survival_brier_3m"] < m["survival_brier_12m"]  # a year ahead is harder than a quarter
    client = mlflow.MlflowClient()
    name = cfg.mlflow.registered_model_name
    for alias in ("challenger", "champion"):  # the first model is champion, with its own bundle
        model = client.get_model_version_by_alias(name, alias)
        effects = client.get_model_version_by_alias(f"{name}-effects", alias)
        assert model.run_id == effects.run_id == result.run_id
    bundle = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/effects")
    table = pd.read_parquet(Path(cfg.paths.features_dir) / "features.parquet").head(50)
    curves = bundle.predict(
        table[bundle.metadata.get_input_schema().input_names()], params={"months": 30, "as_of": "2024-01-01"}
    )
    assert curves.shape == (50, 30) and (np.diff(curves.to_numpy(), axis=1) <= 0).all()
    assert ((curves > 0) & (curves <= 1)).all().all()


def test_survival_is_closer_to_the_realised_survival_and_margin_than_constant_retention(trained) -> None:
    # The check date is the latest one the data follows for a year. The survival model there was fitted on
    # what was known on that date; "flat" is the constant retention of the same model's 3-month survival
    # (the same information, so only the curve's shape differs). The churn model's own constant retention
    # ("constant") was trained on later dates and knows part of these customers' outcome: it is no fair
    # comparison and is only logged (survival_constant_*).
    cfg, result, _ = trained
    path = mlflow.artifacts.download_artifacts(f"runs:/{result.run_id}/predictions/survival_check.parquet")
    check = pd.read_parquet(path)
    assert len(check) > 1000
    months = [3, 6, 12]
    # every customer of the check date is followed for the whole year: the realised survival is the plain
    # share still there (Kaplan-Meier without censoring)
    realised = np.array([check[f"realised_{t}"].mean() for t in months])
    predicted = np.array([check[f"predicted_{t}"].mean() for t in months])
    flat = np.array([check[f"flat_{t}"].mean() for t in months])
    assert (np.diff(realised) < 0).all()
    assert predicted[0] == pytest.approx(flat[0])  # the same 3 months, extrapolated two ways
    assert (np.abs(predicted - realised)[1:] < np.abs(flat - realised)[1:]).all(), (realised, predicted, flat)
    assert np.abs(predicted - realised).max() < 0.05, (realised, predicted)

    # the year's value: the realised discounted margin of each customer against each curve's prediction
    table = pd.read_parquet(Path(cfg.paths.features_dir) / "features.parquet")
    table["observation_date"] = pd.to_datetime(table["observation_date"]).dt.date
    revenue = check.merge(table, on=["customer_id", "observation_date"], how="left")["monthly_revenue"]
    margin = float(cfg.value.margin_rate) * np.nan_to_num(revenue.to_numpy(dtype=float))
    d = (1 + float(cfg.value.annual_discount_rate)) ** (1 / 12) - 1
    discount = (1 + d) ** -np.arange(1, 13)

    def year_value(kind: str) -> np.ndarray:
        return margin * (check[[f"{kind}_{t}" for t in range(1, 13)]].to_numpy(dtype=float) @ discount)

    # in total (a per-customer absolute error would reward the median, "stays", of a 0/1 outcome)
    truth = year_value("realised")
    assert abs(year_value("predicted").sum() / truth.sum() - 1) < abs(
        year_value("flat").sum() / truth.sum() - 1
    )


def test_a_model_without_an_effects_bundle_scores_with_constant_retention(trained, tmp_path, caplog) -> None:
    cfg, result, root = trained
    # A second training run whose bundle is then removed, as for a model trained before bundles existed.
    older = compose_config(root, *DEMO, "promotion.auto=false", "mlflow.registered_model_name=churnwise-old")
    old = train(older)
    info = mlflow.models.get_model_info(f"runs:/{old.run_id}/effects")
    shutil.rmtree(urlparse(mlflow.MlflowClient().get_logged_model(info.model_id).artifact_location).path)
    table = pd.read_parquet(Path(older.paths.features_dir) / "features.parquet")
    table["observation_date"] = pd.to_datetime(table["observation_date"]).dt.date
    as_of = table["observation_date"].max()
    out = outputs_for(older, tmp_path)
    overrides = (f"score.model_uri={old.model_uri}", f"score.output_dir={out}", f"score.as_of={as_of}")
    with caplog.at_level(logging.INFO, logger="decisions.scoring"):
        scored = score(compose_config(root, *DEMO, *overrides))
    assert "no effects bundle" in caplog.text
    rows = pd.read_parquet(scored.path).merge(table[table["observation_date"] == as_of], on="customer_id")
    expected = lifetime_value(
        rows["p_churn"].to_numpy(), rows["monthly_revenue"].to_numpy(), horizon_days=int(cfg.label.horizon_days),
        margin_rate=float(cfg.value.margin_rate), annual_discount_rate=float(cfg.value.annual_discount_rate),
    )  # fmt: skip
    assert len(rows) > 1000
    np.testing.assert_allclose(rows["clv"].to_numpy(), expected, rtol=1e-9)


def test_registering_the_model_and_its_bundle_is_both_or_neither(trained) -> None:
    cfg, result, _ = trained
    name = cfg.mlflow.registered_model_name
    client = mlflow.MlflowClient()
    before = {v.version for v in client.search_model_versions(f"name = '{name}'")}
    challenger = client.get_model_version_by_alias(name, "challenger").version
    model_uri = f"models:/{name}/{challenger}"
    with mlflow.start_run(), pytest.raises(MlflowException):
        register_challengers({name: model_uri, f"{name}-effects": "runs:/0123456789abcdef/none"})
    assert {v.version for v in client.search_model_versions(f"name = '{name}'")} == before
    assert client.get_model_version_by_alias(name, "challenger").version == challenger
