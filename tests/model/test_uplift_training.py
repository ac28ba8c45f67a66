"""The train stage learns an uplift model per catalogue action from the demo's own campaigns, logs its held-out
evaluation and ships it in the registered effects bundle beside the churn model; an action without campaign rows,
or a table without campaigns, leaves the effects assumed and the run trains as before."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from config_helpers import compose_config
from hydra.core.global_hydra import GlobalHydra

from churnwise.api import train
from features.validation import DataContractError
from models.effects import effects_name, load_effects
from models.uplift import ActionUplift, EffectEstimate, TLearner, fit_bags, with_propensity

pytestmark = pytest.mark.slow
DROPPED = "partner_programme"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """The debug demo (1,500 customers x 24 months, its campaigns for all 12 actions) trained once."""
    root = tmp_path_factory.mktemp("uplift")
    cfg = compose_config(root, "evaluation.baseline=null")
    result = train(cfg)
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    yield cfg, result, root
    GlobalHydra.instance().clear()


def retrain(root: Path, tmp_path: Path, change) -> tuple:
    """Train, in the same project (MLflow store), on a copy of its demo tables with `change` applied to the
    campaigns table (`change` returns None: no campaigns table at all), features in a folder of their own."""
    cfg = compose_config(root, "evaluation.baseline=null")
    tables = tmp_path / "tables"
    shutil.copytree(cfg.data.path, tables)
    changed = change(pd.read_parquet(tables / "campaigns.parquet"))
    (tables / "campaigns.parquet").unlink()
    if changed is not None:
        changed.to_parquet(tables / "campaigns.parquet", index=False)
    cfg = compose_config(
        root,
        "evaluation.baseline=null",
        f"data.path={tables}",
        f"paths.features_dir={root}/data/features/{tmp_path.name}",
    )
    return cfg, train(cfg)


def test_training_logs_uplift_metrics_plots_and_tags_per_catalogue_action(trained) -> None:
    cfg, result, _ = trained
    catalogue, outcomes = list(cfg.actions.catalogue), list(cfg.uplift.outcomes)
    assert len(catalogue) == 12
    run = mlflow.get_run(result.run_id)
    metrics, tags = run.data.metrics, run.data.tags
    qinis = {}
    for action in catalogue:
        assert metrics[f"uplift_{action}_n_control"] >= cfg.uplift.min_control
        for outcome in outcomes:
            assert (
                metrics[f"uplift_{action}_{outcome}_n_test"] > 0
                and metrics[f"uplift_{action}_{outcome}_n_train"]
            )
            if (
                f"uplift_{action}_{outcome}_qini" in metrics
            ):  # NaN (left out) when a tiny held-out arm has no churn
                qinis[action, outcome] = metrics[f"uplift_{action}_{outcome}_qini"]
                assert 0.0 <= metrics[f"uplift_{action}_{outcome}_effect_scale"] <= 1.0
    # the debug data holds ~40 held-out rows per action and outcome: most, not all, have a Qini
    assert len(qinis) >= 0.8 * len(catalogue) * len(outcomes), sorted(qinis)
    assert all(-1.5 <= q <= 1.5 for q in qinis.values()), qinis
    assert tags["uplift.assumed"] == "none"
    assert sorted(tags["uplift.learned"].split(",")) == sorted(catalogue)
    plots = {Path(a.path).name for a in mlflow.MlflowClient().list_artifacts(result.run_id, "plots/uplift")}
    for action in catalogue:
        assert {f"{action}_churn_h_qini.png", f"{action}_churn_h_deciles.png"} <= plots
    assert "12 action(s) learned" in result.uplift


def test_the_registered_effects_bundle_holds_an_uplift_model_for_every_action(trained) -> None:
    cfg, result, _ = trained
    name = cfg.mlflow.registered_model_name
    version = mlflow.MlflowClient().get_model_version_by_alias(effects_name(name), "challenger")
    assert version.run_id == result.run_id
    effects = load_effects(result.run_id)
    assert sorted(effects.uplift) == sorted(cfg.actions.catalogue)
    assert all(isinstance(u, ActionUplift) and u.action == a for a, u in effects.uplift.items())
    table = pd.read_parquet(Path(cfg.paths.features_dir) / "features.parquet").tail(200)
    estimates = effects.uplift["service_recovery_call"].effects(table)
    assert set(estimates) == set(cfg.uplift.outcomes)
    for estimate in estimates.values():
        assert np.isfinite(estimate.mean).all() and (estimate.low <= estimate.mean).all()
        assert (estimate.mean <= estimate.high).all() and (estimate.high > estimate.low).any()


def _predict(model, frame: pd.DataFrame) -> np.ndarray:
    """One outcome model's prediction on its own DataFrame (as before the shared LightGBM matrix)."""
    if model.model_ is None:
        return np.full(len(frame), model.constant_)
    if model.binary:
        return model.model_.predict_proba(frame)[:, 1]
    return np.asarray(model.model_.predict(frame), dtype=float)


def _reference_draws(bags, encoded: pd.DataFrame) -> np.ndarray:
    """Each T-learner bag's effect with every model and propensity level predicted apart."""
    draws = []
    for bag in bags:
        assert isinstance(bag, TLearner)
        total = np.zeros(len(encoded))
        for level, share in zip(bag.levels_, bag.level_shares_, strict=True):
            frame = with_propensity(encoded, level)
            total += share * (_predict(bag.treated_model_, frame) - _predict(bag.control_model_, frame))
        draws.append(total)
    return np.vstack(draws)


def test_fast_effects_give_exactly_the_numbers_of_per_model_predictions(trained) -> None:
    cfg, result, _ = trained
    effects = load_effects(result.run_id)
    X = pd.read_parquet(Path(cfg.paths.features_dir) / "features.parquet").sample(500, random_state=3)
    for name in ("discount", "loyalty_programme", "cross_sell_offer"):
        action = effects.uplift[name]
        fast = action.effects(
            X, calibrated=False
        )  # the learners' own (calibration: tests/unit/test_uplift.py)
        encoded = action.encoder.transform(X[action.features])
        for outcome, bags in action.outcomes.items():
            slow = EffectEstimate.from_draws(_reference_draws(bags, encoded), action.level)
            for part in ("mean", "low", "high"):
                np.testing.assert_array_equal(getattr(fast[outcome], part), getattr(slow, part))
    # campaigns whose outcome differs by treated share: the models split on the logged propensity, so each
    # arm predicts all three levels in one stacked call
    rng = np.random.default_rng(4)
    n = 3000
    frame = pd.DataFrame(
        {"usage": rng.normal(size=n), "segment": pd.Categorical(rng.choice(["a", "b", "c"], n))}
    )
    propensity = rng.choice([0.5, 0.7, 0.9], n)
    treated = rng.uniform(size=n) < propensity
    y = (
        rng.uniform(size=n) < 0.1 + 0.4 * (propensity - 0.5) + 0.1 * treated * (frame["segment"] == "a")
    ).astype(float)
    bags = fit_bags(TLearner(), frame, treated, y, propensity, 3, 0)
    assert all(len(bag.levels_) == 3 for bag in bags)
    np.testing.assert_array_equal(
        np.vstack([bag.effect(frame) for bag in bags]), _reference_draws(bags, frame)
    )


def test_an_action_without_campaign_rows_stays_assumed_with_one_message(trained, tmp_path, caplog) -> None:
    cfg, _, root = trained
    with caplog.at_level(logging.WARNING, logger="models.uplift"):
        cfg2, result = retrain(root, tmp_path, lambda c: c[c["action"] != DROPPED])
    tags = mlflow.get_run(result.run_id).data.tags
    assert tags["uplift.assumed"] == DROPPED
    messages = [r.getMessage() for r in caplog.records if "stay assumed" in r.getMessage()]
    assert messages == [f"uplift: {DROPPED} (no campaign rows) stay assumed"]
    assert tags["uplift.assumed_reasons"] == messages[0]
    effects = load_effects(result.run_id)
    assert sorted(effects.uplift) == sorted(a for a in cfg2.actions.catalogue if a != DROPPED)


def test_a_table_without_campaigns_trains_as_before(trained, tmp_path, caplog) -> None:
    cfg, first, root = trained
    with caplog.at_level(logging.INFO, logger="models.training"):
        cfg2, result = retrain(root, tmp_path, lambda c: None)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("uplift")]
    assert lines == ["uplift: no campaigns table: every action keeps its assumed effect"]
    run = mlflow.get_run(result.run_id)
    assert not [k for k in run.data.metrics if k.startswith("uplift_")]
    assert "uplift.assumed" not in run.data.tags
    effects = load_effects(result.run_id)
    assert effects is not None and effects.uplift == {} and effects.survival is not None
    assert result.metrics["test_roc_auc"] > 0.6


def test_campaign_rows_the_learners_refuse_stop_the_run_before_anything_is_logged(trained, tmp_path) -> None:
    cfg, _, root = trained

    def control_at_one(campaigns: pd.DataFrame) -> pd.DataFrame:
        first = campaigns.index[~campaigns["treated"]][0]
        return campaigns.assign(propensity=campaigns["propensity"].where(campaigns.index != first, 1.0))

    runs_before = len(mlflow.search_runs(experiment_names=[cfg.mlflow.experiment_name]))
    with pytest.raises(DataContractError, match=r"(?s)campaigns.*propensity.*below 1 for control rows"):
        retrain(root, tmp_path, control_at_one)
    assert len(mlflow.search_runs(experiment_names=[cfg.mlflow.experiment_name])) == runs_before


def test_scoring_with_learned_effects_never_contacts_a_harmful_estimate_nor_sleeping_dogs_beyond_chance(
    trained,
) -> None:
    """Scored with the learned effects: every selected customer's action is learned, with a positive value gain
    and ENV; the generator's sleeping dogs (its truth table) are selected at most at the rate a random draw of as
    many scored customers would reach (its 95% binomial quantile)."""
    from scipy.stats import binom

    from churnwise.api import score

    cfg, result, root = trained  # the fixture's own version (other tests here train more)
    name = cfg.mlflow.registered_model_name
    scored = score(
        compose_config(
            root, "evaluation.baseline=null", f"score.model_uri=models:/{name}/{result.model_version}"
        )
    )
    scores = pd.read_parquet(scored.path)
    selected = scores[scores["selected"]]
    assert len(selected) > 0 and (selected["effect_source"] == "learned").all()
    assert (selected["value_gain"] > 0).all() and (selected["expected_net_value"] > 0).all()
    truth = pd.read_parquet(Path(cfg.data.truth_path) / "true_action_values.parquet")
    dogs = truth[truth["action"] == "none"].set_index("customer_id")["sleeping_dog"]
    assert set(scores["customer_id"]) <= set(dogs.index)
    rate = float(dogs.reindex(scores["customer_id"]).mean())
    picked = int(dogs.reindex(selected["customer_id"]).sum())
    assert 0 < rate < 0.5
    assert picked <= binom.ppf(0.95, len(selected), rate), (picked, len(selected), rate)
