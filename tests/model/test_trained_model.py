"""Model tests on a model trained end to end on small demo data: loading, behaviour, reproducibility, gate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from config_helpers import compose_config
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from churnwise.api import train
from models.promotion import decide
from models.split import load_snapshots
from models.training import TrainResult

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[DictConfig, TrainResult, Callable[..., DictConfig]]:
    root = tmp_path_factory.mktemp("trained")

    def make(*overrides: str) -> DictConfig:
        return compose_config(root, *overrides)

    cfg = make()
    result = train(cfg)
    yield cfg, result, make
    GlobalHydra.instance().clear()


def champion(cfg: DictConfig):
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{cfg.mlflow.registered_model_name}@champion")


def test_first_model_is_registered_as_champion_with_all_metrics(trained) -> None:
    cfg, result, _ = trained
    assert result.promoted and result.model_version == "1"
    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    run = client.get_run(result.run_id)
    for name in ("test_roc_auc", "test_pr_auc", "test_brier", "test_log_loss", "test_ece", "test_lift_at_10",
                 "test_capture_at_20", "ceiling_test_roc_auc", "baseline_test_roc_auc", "test_best_target_share_pct"):  # fmt: skip
        assert name in run.data.metrics, name
    assert any(k.startswith("test_tenure_band_") for k in run.data.metrics)
    assert run.data.tags["data.fingerprint"] == result.data_fingerprint
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert "plots/calibration_reliability.png" in plots and "plots/shap_summary.png" in plots


def test_the_run_says_whom_it_models_and_over_what_period(trained) -> None:
    from models.training import summary_table

    cfg, result, _ = trained
    tags = mlflow.MlflowClient(cfg.mlflow.tracking_uri).get_run(result.run_id).data.tags
    assert tags["label.population"] == "contract" and tags["label.horizon_days"] == "90"
    assert (
        "who and when    customers holding a subscription at each observation date (population 'contract'); "
        "churned: left within 90 days" in summary_table(result, cfg)
    )


def test_calibration_is_chosen_per_run_and_costs_no_ranking(trained) -> None:
    cfg, result, _ = trained
    run = mlflow.MlflowClient(cfg.mlflow.tracking_uri).get_run(result.run_id)
    assert cfg.calibration._target_ == "models.calibration.AutoCalibrator"  # the default
    assert run.data.tags["calibration"] in ("isotonic", "sigmoid")
    assert run.data.params["calibration.chosen"] == run.data.tags["calibration"] == result.calibration
    metrics = run.data.metrics
    assert abs(metrics["test_roc_auc"] - metrics["raw_test_roc_auc"]) < 1e-9
    p_churn = champion(cfg).predict(result.test_rows)["p_churn"].to_numpy()
    assert ((p_churn > 0) & (p_churn < 1)).all()


def test_champion_returns_calibrated_probabilities_for_the_feature_table(trained) -> None:
    cfg, _, _ = trained
    table = load_snapshots(Path(cfg.paths.features_dir) / "features.parquet")
    predictions = champion(cfg).predict(table)
    assert list(predictions.columns) == ["p_churn", "raw_score"] and len(predictions) == len(table)
    assert predictions["p_churn"].between(0, 1).all()
    # Calibrated: the mean probability is close to the observed churn rate.
    assert abs(predictions["p_churn"].mean() - table["churned"].mean()) < 0.02


def test_more_unresolved_complaints_or_losing_a_bundle_never_lowers_average_risk(trained) -> None:
    cfg, _, _ = trained
    model = champion(cfg)
    table = load_snapshots(Path(cfg.paths.features_dir) / "features.parquet")
    base = model.predict(table)["p_churn"]
    more_complaints = table.assign(
        open_complaints=table["open_complaints"] + 1,
        complaints_30d=table["complaints_30d"] + 1,
        complaints_90d=table["complaints_90d"] + 1,
        complaints_365d=table["complaints_365d"] + 1,
    )
    assert model.predict(more_complaints)["p_churn"].mean() >= base.mean()
    bundled = table[table["bundled_products"] > 0]
    unbundled = bundled.assign(bundled_products=0, distinct_bundles=0)
    assert model.predict(unbundled)["p_churn"].mean() >= base[bundled.index].mean()


def test_same_config_and_seed_reproduce_the_metrics_exactly_and_an_equal_model_is_not_promoted(
    trained,
) -> None:
    cfg, first, _ = trained
    second = train(cfg)
    assert second.metrics == first.metrics
    assert not second.promoted  # no gain over the champion: the alias stays
    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    assert str(client.get_model_version_by_alias(cfg.mlflow.registered_model_name, "champion").version) == "1"


def test_a_worse_challenger_is_refused(trained) -> None:
    _, _, make = trained
    cfg = make("model.n_estimators=1", "model.num_leaves=2", "evaluation.baseline=null", "calibration=none")
    worse = train(cfg)
    assert not worse.promoted
    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    name = cfg.mlflow.registered_model_name
    assert str(client.get_model_version_by_alias(name, "challenger").version) == worse.model_version
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    decision = client.search_runs(
        [client.get_experiment_by_name(cfg.mlflow.experiment_name).experiment_id],
        "tags.stage = 'promote'", order_by=["attributes.start_time DESC"], max_results=1,
    )[0]  # fmt: skip
    assert decision.data.tags["promotion.decision"] == "refused"


def test_a_champion_for_another_label_or_features_is_not_compared_and_stays(trained) -> None:
    _, _, make = trained
    cfg = make("label=inactivity", "evaluation.baseline=null")
    other = train(cfg)  # same registered name, another label: the gate cannot compare them, and says so
    assert not other.promoted
    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    assert str(client.get_model_version_by_alias(cfg.mlflow.registered_model_name, "champion").version) == "1"
    decision = client.search_runs(
        [client.get_experiment_by_name(cfg.mlflow.experiment_name).experiment_id],
        "tags.stage = 'promote'", order_by=["attributes.start_time DESC"], max_results=1,
    )[0]  # fmt: skip
    assert "predicts another label (contractual" in decision.data.tags["promotion.reason"]

    fewer = make("~features.families.complaints", "evaluation.baseline=null")
    assert not train(fewer).promoted  # without the complaint features the champion cannot score the rows
    decision = client.search_runs(
        [client.get_experiment_by_name(cfg.mlflow.experiment_name).experiment_id],
        "tags.stage = 'promote'", order_by=["attributes.start_time DESC"], max_results=1,
    )[0]  # fmt: skip
    assert (
        "trained on features this data does not have (complaints_30d"
        in decision.data.tags["promotion.reason"]
    )
    assert str(client.get_model_version_by_alias(cfg.mlflow.registered_model_name, "champion").version) == "1"


def test_kfold_split_logs_out_of_fold_and_per_fold_metrics(trained) -> None:
    _, _, make = trained
    cfg = make("split=kfold", "evaluation.baseline=null")
    result = train(cfg)
    assert "fold" in result.split
    assert 0.5 < result.metrics["test_roc_auc"] < 1 and result.metrics["test_ece"] < 0.05
    assert result.metrics["cv_roc_auc_std"] >= 0 and "cv_roc_auc_mean" in result.metrics


def test_gate_rule_both_ways() -> None:
    champion_metrics = {"roc_auc": 0.70, "ece": 0.010}
    assert decide(
        {"roc_auc": 0.71, "ece": 0.012}, champion_metrics, metric="roc_auc", margin=0.002, ece_tolerance=0.005
    )[0]
    assert not decide(
        {"roc_auc": 0.701, "ece": 0.010},
        champion_metrics,
        metric="roc_auc",
        margin=0.002,
        ece_tolerance=0.005,
    )[0]
    assert not decide(
        {"roc_auc": 0.75, "ece": 0.030}, champion_metrics, metric="roc_auc", margin=0.002, ece_tolerance=0.005
    )[0]
    assert decide({"roc_auc": 0.5, "ece": 0.5}, None, metric="roc_auc", margin=0.002, ece_tolerance=0.005)[0]
