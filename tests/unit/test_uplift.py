"""Uplift learners recover known effects on synthetic randomised campaigns; fit_uplift keeps to the evidence."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import numpy as np
import pandas as pd
import pytest
from omegaconf import DictConfig

from features.errors import ConfigError
from models.uplift import (
    DRLearner,
    EffectEstimate,
    TLearner,
    UpliftSettings,
    XLearner,
    bagged_effect,
    fit_bags,
    fit_uplift,
)
from models.uplift_eval import qini_auc

LEARNERS = [TLearner, XLearner, DRLearner]
FAST: dict = {}  # BASE_PARAMS as they are


def customers(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Features, baseline churn probability and the true effect: -0.15 in segment a (the action saves
    them), +0.10 in segment c (it drives them away), none in b."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(["a", "b", "c"], n)
    X = pd.DataFrame(
        {
            "tenure": rng.uniform(size=n),
            "usage": rng.normal(size=n),
            "segment": pd.Categorical(segment, categories=["a", "b", "c"]),
            "noise": rng.normal(size=n),
        }
    )
    base = np.clip(0.25 + 0.075 * X["usage"] + 0.1 * (X["tenure"] - 0.5), 0.02, 0.9).to_numpy()
    effect = np.select([segment == "a", segment == "c"], [-0.15, 0.10], 0.0)
    return X, base, effect


def campaign(
    n: int, seed: int, *, effect: bool = True, shares: tuple[float, ...] = (0.5,), shift: float = 0.0
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Customers assigned at random with the campaign's treated share; later campaigns churn `shift` more
    (something the features do not show)."""
    rng = np.random.default_rng(seed + 1000)
    X, base, tau = customers(n, seed)
    which = rng.integers(0, len(shares), n)
    propensity = np.asarray(shares)[which]
    treated = rng.uniform(size=n) < propensity
    tau = tau if effect else np.zeros(n)
    y = (rng.uniform(size=n) < np.clip(base + shift * which + treated * tau, 0, 1)).astype(float)
    return X, treated, y, propensity, tau


@pytest.fixture(scope="module")
def training() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return campaign(6000, 1)


@pytest.fixture(scope="module")
def fresh() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return campaign(4000, 2)


@pytest.mark.parametrize("learner", LEARNERS, ids=lambda c: c.__name__)
def test_learners_recover_an_effect_that_exists_in_one_segment_and_a_harm_in_another(
    learner: type, training: tuple, fresh: tuple
) -> None:
    X, treated, y, propensity, _ = training
    fitted = learner(params=FAST, seed=3).fit(X, treated, y, propensity)
    X_new, treated_new, y_new, _, tau_new = fresh
    effect = fitted.effect(X_new)
    segment = X_new["segment"].to_numpy()
    for group, truth in (("a", -0.15), ("b", 0.0), ("c", 0.10)):
        assert effect[segment == group].mean() == pytest.approx(truth, abs=0.04), group
    # ranked by benefit (lower churn first) on a new campaign, far above random (0) and near the truth's
    model_qini = qini_auc(-y_new, treated_new, -effect)
    assert model_qini > 0.5 * qini_auc(-y_new, treated_new, -tau_new) > 0.1


@pytest.mark.parametrize("learner", LEARNERS, ids=lambda c: c.__name__)
def test_no_effect_is_estimated_near_zero(learner: type, fresh: tuple) -> None:
    X, treated, y, propensity, _ = campaign(6000, 4, effect=False)
    effect = learner(params=FAST, seed=3).fit(X, treated, y, propensity).effect(fresh[0])
    # the difference of two churn rates on 3,000 customers each has a standard error of about 0.011
    assert abs(effect.mean()) < 0.035
    segment = fresh[0]["segment"].to_numpy()
    assert max(abs(effect[segment == g].mean()) for g in "abc") < 0.05


@pytest.mark.parametrize("learner", LEARNERS, ids=lambda c: c.__name__)
def test_uneven_logged_propensities_do_not_bias_the_effect(learner: type, fresh: tuple) -> None:
    # two campaigns treated 50% and 90%; the second churns 15 points more for reasons the features miss, so
    # a comparison that ignores the propensity sees the action raise churn by about 7 points
    X, treated, y, propensity, _ = campaign(8000, 5, effect=False, shares=(0.5, 0.9), shift=0.15)
    naive = TLearner(params=FAST, seed=3).fit(X, treated, y, np.full(len(y), treated.mean()))
    assert naive.effect(fresh[0]).mean() > 0.05
    fitted = learner(params=FAST, seed=3).fit(X, treated, y, propensity)
    assert abs(fitted.effect(fresh[0]).mean()) < 0.03
    if learner is TLearner:  # it splits on the propensity, so it averages over both campaigns' levels
        assert fitted.levels_.tolist() == [0.5, 0.9]
        assert naive.levels_.size == 1


@pytest.mark.parametrize("learner", LEARNERS, ids=lambda c: c.__name__)
def test_bagged_intervals_cover_the_true_effect_for_most_customers(
    learner: type, training: tuple, fresh: tuple
) -> None:
    X, treated, y, propensity, _ = training
    bags = fit_bags(learner(params=FAST), X, treated, y, propensity, n_bags=10, seed=0)  # the default
    estimate = bagged_effect(bags, fresh[0], level=0.90)
    assert np.all(estimate.low <= estimate.mean) and np.all(estimate.mean <= estimate.high)
    covered = np.mean((estimate.low <= fresh[4]) & (fresh[4] <= estimate.high))
    assert 0.75 <= covered <= 0.99


def test_the_bag_interval_is_the_mean_plus_minus_t_times_the_bags_spread() -> None:
    estimate = EffectEstimate.from_draws(np.array([[0.0, -1.0], [1.0, -1.0], [2.0, -1.0]]), level=0.90)
    assert np.allclose(estimate.mean, [1.0, -1.0])
    assert np.allclose(estimate.high - estimate.mean, [2.919986, 0.0])  # t(0.95, 2 df) x sd 1; no spread
    assert np.allclose(estimate.mean - estimate.low, [2.919986, 0.0])
    single = EffectEstimate.from_draws(np.array([[0.3, -0.2]]))
    assert np.array_equal(single.low, single.high) and np.array_equal(single.low, [0.3, -0.2])
    assert np.allclose(estimate.scaled(0.5).low, estimate.low * 0.5)


def test_a_continuous_outcome_is_learned_with_a_regressor(training: tuple, fresh: tuple) -> None:
    X, treated, _, propensity, _ = training
    rng = np.random.default_rng(9)
    margin = 100 + 20 * X["usage"].to_numpy() + treated * np.where(X["segment"] == "a", 30.0, 0.0)
    margin = margin + rng.normal(0, 10, len(margin))
    fitted = TLearner(params=FAST, seed=1).fit(X, treated, margin, propensity)
    assert not fitted.binary_
    effect, segment = fitted.effect(fresh[0]), fresh[0]["segment"].to_numpy()
    assert effect[segment == "a"].mean() == pytest.approx(30, abs=5)
    assert effect[segment == "b"].mean() == pytest.approx(0, abs=5)


def test_the_same_seed_gives_the_same_effects_and_another_seed_others(training: tuple, fresh: tuple) -> None:
    X, treated, y, propensity, _ = training

    def effects(seed: int) -> np.ndarray:
        return bagged_effect(
            fit_bags(DRLearner(params=FAST), X, treated, y, propensity, 3, seed), fresh[0]
        ).mean

    assert np.array_equal(effects(0), effects(0))
    assert not np.array_equal(effects(0), effects(1))


def campaign_rows(seed: int = 11) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Ten monthly campaigns: `discount` works as in `campaign`, `loyalty_programme` was never held out,
    `partner_programme` reached few customers; margin unknown (NaN) for the last two campaigns."""
    rng = np.random.default_rng(seed + 500)  # not the features' own seed
    parts = []
    for action, n, control in (
        ("discount", 4000, 0.5),
        ("loyalty_programme", 600, 0.0),
        ("partner_programme", 150, 0.5),
    ):
        X, base, tau = customers(n, seed + len(parts))
        month = rng.integers(1, 11, n)
        treated = rng.uniform(size=n) >= control
        churn = (rng.uniform(size=n) < np.clip(base + treated * tau, 0, 1)).astype(float)
        margin = np.where(month > 8, np.nan, 50 - 40 * churn + rng.normal(0, 5, n))
        rows = pd.DataFrame(
            {
                "campaign_id": [f"C{m:02d}" for m in month],
                "customer_id": np.arange(n) + 100_000 * len(parts),
                "action": action,
                "assigned_at": [date(2025, m, 1) for m in month],
                "treated": treated,
                "propensity": np.where(rng.uniform(size=n) < 0.1, np.nan, 1.0 - control),  # some not logged
                "churn_h": churn,
                "margin_w": margin,
            }
        )
        parts.append((rows, X, tau))
    rows = pd.concat([p[0] for p in parts], ignore_index=True)
    features = pd.concat([p[1] for p in parts], ignore_index=True)
    features["segment"] = features["segment"].astype(str)  # as a feature table has it: text, not category
    return rows, features, np.concatenate([p[2] for p in parts])


def settings(**changes: object) -> UpliftSettings:
    values = {
        "learner": TLearner(params=FAST),
        "n_bags": 5,
        "min_outcomes": 200,
        "min_control": 100,
        "test_campaigns": 2,
        "seed": 5,
    } | changes
    return UpliftSettings(**values)


@pytest.fixture(scope="module")
def bundle_and_data() -> tuple:
    rows, features, tau = campaign_rows()
    return fit_uplift(rows, features, settings()), rows, features, tau


def test_fit_uplift_leaves_actions_without_controls_or_enough_outcomes_assumed(
    bundle_and_data: tuple,
) -> None:
    bundle, rows, features, _ = bundle_and_data
    assert list(bundle.actions) == ["discount"]
    few = int(((rows["action"] == "partner_programme") & ~rows["treated"]).sum())
    assert 0 < few < 100
    assert bundle.assumed == {"loyalty_programme": "0 controls", "partner_programme": f"{few} controls < 100"}
    assert bundle.assumed_message() == (
        f"uplift: loyalty_programme (0 controls), partner_programme ({few} controls < 100) stay assumed"
    )
    short = fit_uplift(rows, features, settings(min_control=10, min_outcomes=2000, n_bags=1))
    train = (rows["action"] == "discount") & ~rows["campaign_id"].isin(["C09", "C10"])
    fewest = min(int((train & rows["treated"]).sum()), int((train & ~rows["treated"]).sum()))
    assert short.assumed["discount"] == f"{fewest} churn_h outcomes < 2000"
    assert short.assumed["partner_programme"].endswith("churn_h outcomes < 2000") and not short.actions


def test_fit_uplift_evaluates_on_the_latest_campaigns_and_calibrates(bundle_and_data: tuple) -> None:
    bundle, rows, features, _ = bundle_and_data
    # margin is unknown for the last two campaigns, so its held-out campaigns are the two before them
    assert bundle.test_campaigns == {"churn_h": ("C09", "C10"), "margin_w": ("C07", "C08")}
    discount = bundle.actions["discount"]
    mine = rows["action"] == "discount"
    assert discount.n_treated + discount.n_control == int(mine.sum())
    metrics = bundle.metrics()
    assert metrics["uplift_discount_churn_h_n_train"] == int(
        (mine & ~rows["campaign_id"].isin(["C09", "C10"])).sum()
    )
    assert metrics["uplift_discount_margin_w_n_test"] == int(
        (mine & rows["campaign_id"].isin(["C07", "C08"])).sum()
    )
    assert metrics["uplift_discount_churn_h_qini"] > 0.1  # ranks the customers it saves first
    assert metrics["uplift_discount_margin_w_qini"] > 0  # margin: mostly churn noise, a weaker ranking
    assert all(0 <= discount.scale[o] <= 1 for o in ("churn_h", "margin_w"))
    assert metrics["uplift_discount_churn_h_effect_scale"] == discount.scale["churn_h"]
    assert discount.evaluation["churn_h"].deciles["decile"].tolist() == list(range(1, 11))
    # per customer and outcome: calibrated mean inside its interval; segment a saved, segment c hurt
    frame = bundle.effect_frame(features.loc[mine])
    assert {"discount__churn_h", "discount__churn_h__low", "discount__margin_w__high"} <= set(frame.columns)
    assert (frame["discount__churn_h__low"] <= frame["discount__churn_h"]).all()
    assert (frame["discount__churn_h"] <= frame["discount__churn_h__high"]).all()
    # the learners find whom it saves (a) and whom it hurts (c)
    raw = discount.effects(features.loc[mine], calibrated=False)["churn_h"]
    by_segment = pd.Series(raw.mean).groupby(features.loc[mine, "segment"].to_numpy()).mean()
    assert by_segment["a"] < -0.03 and by_segment["c"] > 0.01
    odd = features.head(3).assign(segment=["never seen", None, "a"])  # unseen and missing levels: no error
    assert np.isfinite(bundle.effect_frame(odd).to_numpy()).all()
    # calibrated = the observed average + the held-out scale x the learners' deviation, then shrunk toward 0
    shrunk = raw.shrunk(
        discount.average["churn_h"], discount.average_half["churn_h"], discount.center["churn_h"],
        discount.scale["churn_h"],
    )  # fmt: skip
    assert np.allclose(frame["discount__churn_h"], shrunk.posterior(discount.prior_variance["churn_h"]).mean)
    assert np.all(np.abs(frame["discount__churn_h"]) <= np.abs(shrunk.mean) + 1e-12)
    assert (
        frame["discount__churn_h__low"] <= shrunk.low + 1e-12
    ).all()  # the estimate's own interval is kept
    assert metrics["uplift_discount_churn_h_average_effect"] == pytest.approx(discount.average["churn_h"])
    assert sorted(bundle.figures()) == [
        f"uplift/discount_{o}_{kind}.png" for o in ("churn_h", "margin_w") for kind in ("deciles", "qini")
    ]


def test_fit_uplift_is_deterministic_with_its_seed(bundle_and_data: tuple) -> None:
    bundle, rows, features, _ = bundle_and_data
    again = fit_uplift(rows, features, settings())
    other = fit_uplift(rows, features, settings(seed=6))
    X = features.loc[rows["action"] == "discount"].head(500)
    assert bundle.effect_frame(X).equals(again.effect_frame(X))
    assert bundle.metrics() == again.metrics()
    first, second = (
        b.actions["discount"].effects(X, calibrated=False)["churn_h"].mean for b in (bundle, other)
    )
    assert not np.array_equal(first, second)


def test_fit_uplift_refuses_bad_campaign_rows(bundle_and_data: tuple) -> None:
    _, rows, features, _ = bundle_and_data
    bad = rows.assign(propensity=rows["propensity"].where(rows.index != 7, 1.5))
    with pytest.raises(ValueError, match=r"propensity must be in \(0, 1\].*1 row\(s\).*'propensity': 1.5"):
        fit_uplift(bad, features, settings())
    with pytest.raises(ValueError, match=r"lack column\(s\) \['margin_w'\]"):
        fit_uplift(rows.drop(columns="margin_w"), features, settings())
    with pytest.raises(ValueError, match="same index|campaign rows' index"):
        fit_uplift(rows, features.iloc[1:], settings())
    # a history too short to hold out test_campaigns and learn from the rest: every action stays assumed
    short = fit_uplift(rows, features, settings(test_campaigns=10))
    assert not short.actions and set(short.assumed) == set(rows["action"])
    with pytest.raises(ConfigError, match="uplift.n_bags must be an integer >= 1"):
        settings(n_bags=0)


@pytest.mark.parametrize(
    ("option", "learner"), [("t_learner", TLearner), ("x_learner", XLearner), ("dr_learner", DRLearner)]
)
def test_each_uplift_config_builds_its_learner(
    make_cfg: Callable[..., DictConfig], option: str, learner: type
) -> None:
    cfg = make_cfg(f"uplift={option}", debug=False)
    built = UpliftSettings.from_config(cfg.uplift)
    assert type(built.learner) is learner and built.learner.params["num_leaves"] == 7
    assert built.seed == cfg.seed and built.min_level_rows == cfg.encoding.min_level_rows
    assert dict(built.outcomes) == {
        "churn_h": "lower",
        "margin_w": "higher",
        "margin_end": "higher",
        "cost": "lower",
    }
    assert built.n_bags == 5


def test_the_posterior_shrinks_a_noisy_estimate_toward_none_and_keeps_a_clear_one() -> None:
    """k = tau^2 / (tau^2 + se^2), se from the interval at its level; the interval keeps the estimate's own."""
    z = 1.6448536269514722  # the normal quantile of a 90% interval
    estimate = EffectEstimate(
        np.array([1.0, 1.0, -2.0]), np.array([0.0, 0.9, -3.0]), np.array([2.0, 1.1, -1.0])
    )
    se = np.array([1.0, 0.1, 1.0]) / z
    assert np.allclose(estimate.standard_error(0.90), se)
    tau2 = 0.5
    posterior = estimate.posterior(tau2, 0.90)
    k = tau2 / (tau2 + se**2)
    assert np.allclose(posterior.mean, k * estimate.mean)
    assert (
        posterior.mean[1] == pytest.approx(1.0, abs=0.02) and posterior.mean[0] < 0.7
    )  # clear kept, noisy shrunk
    assert np.all(posterior.low <= estimate.low) and np.all(posterior.high >= estimate.high)
    assert np.all((posterior.low <= posterior.mean) & (posterior.mean <= posterior.high))
    # the prior variance is the spread beyond the noise; none beyond it: every estimate is none
    assert estimate.prior_variance(0.90) == pytest.approx(max(0.0, np.mean(estimate.mean**2 - se**2)))
    nothing = EffectEstimate(np.array([0.1, -0.1]), np.array([-1.0, -1.2]), np.array([1.2, 1.0]))
    assert nothing.prior_variance(0.90) == 0.0
    assert np.all(nothing.posterior(0.0, 0.90).mean == 0.0)
