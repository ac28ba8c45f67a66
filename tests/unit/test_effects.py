"""The expected-value rules of decisions/effects.py with a real uplift model fitted on synthetic randomised
campaigns: learned against assumed effects, their intervals, the never-negative rule, uplift segments, and the
joint selection the batch uses."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from decisions.actions import CorrectiveAction, Customers, LadderIntervention
from decisions.batch import finalise, output_columns, pairs_file
from decisions.control import ControlSettings
from decisions.effects import action_values, tail_value, uplift_segment
from decisions.errors import DecisionConfigError
from decisions.ladder import LoyaltyLadder
from decisions.policy import DecisionPolicy, cost_column, eligible_column
from decisions.reasons import ReasonFamilies
from decisions.summary import summarise
from decisions.valuation import Valuation
from decisions.value import ValueParameters, lifetime_value, monthly_discount_rate
from models.uplift import TLearner, UpliftSettings, fit_uplift

VALUE = ValueParameters(horizon_days=90, margin_rate=0.5, annual_discount_rate=0.1)
WINDOW = 12


def features(n: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "usage": rng.normal(size=n),
            "segment": rng.choice(["a", "b", "c"], n),  # the action saves a, does nothing for b, hurts c
        }
    )


@pytest.fixture(scope="module")
def bundle():
    """`discount` from ten randomised monthly campaigns: churn effect -0.2 in segment a, +0.15 in c."""
    rng = np.random.default_rng(3)
    n = 6000
    X = features(n, rng)
    month = rng.integers(1, 11, n)
    treated = rng.uniform(size=n) < 0.5
    effect = np.select([X["segment"] == "a", X["segment"] == "c"], [-0.2, 0.15], 0.0)
    churn = (rng.uniform(size=n) < np.clip(0.3 + 0.05 * X["usage"] + treated * effect, 0, 1)).astype(float)
    rows = pd.DataFrame(
        {
            "campaign_id": [f"C{m:02d}" for m in month],
            "customer_id": np.arange(n),
            "action": "discount",
            "assigned_at": [date(2025, m, 1) for m in month],
            "treated": treated,
            "propensity": 0.5,
            "churn_h": churn,
            "margin_w": 60 - 50 * churn + rng.normal(0, 5, n),
        }
    )
    settings = UpliftSettings(
        learner=TLearner(params={}), n_bags=5, min_outcomes=200, test_campaigns=2, seed=1
    )
    return fit_uplift(rows, X, settings)


def catalogue() -> tuple:
    return (
        CorrectiveAction("discount", cost=10, save_rate={"default": 0.2}),
        CorrectiveAction("call", cost=5, save_rate={"default": 0.1}, prior_range=(0.25, 2.0)),
        LadderIntervention(
            "loyalty", cost=2, from_rungs=["customer"], target_rung="client", conversion_rate=0.3
        ),
    )


def people(n: int = 300, seed: int = 8) -> Customers:
    rng = np.random.default_rng(seed)
    X = features(n, rng)
    p = rng.uniform(0.01, 0.6, n)
    revenue = rng.uniform(20, 80, n)
    return Customers(
        p_churn=p,
        clv=VALUE.lifetime_value(p, revenue, None),
        monthly_revenue=revenue,
        ladder_rung=np.full(n, "customer", dtype=object),
        features=X,
    )


def test_learned_gain_is_the_window_margin_plus_the_churn_effect_over_the_rest_of_the_lifetime(
    bundle,
) -> None:
    who = people()
    n = len(who.p_churn)
    costs = np.tile([10.0, 5.0, 2.0], (n, 1))
    values = action_values(
        catalogue(), who, np.ones((n, 3), bool), costs, VALUE, 0.05, bundle.actions, WINDOW
    )
    assert values.source == ("learned", "assumed", "assumed")
    effects = bundle.actions["discount"].effects(who.features)
    tail = tail_value(who, VALUE, WINDOW)
    churn, margin = effects["churn_h"], effects["margin_w"]
    assert np.allclose(values.gain.mean[:, 0], margin.mean - churn.mean * tail)
    assert np.allclose(values.gain.low[:, 0], margin.low - churn.high * tail)
    assert np.allclose(values.gain.high[:, 0], margin.high - churn.low * tail)
    assert np.all(values.gain.low[:, 0] <= values.gain.mean[:, 0] + 1e-9)
    assert np.allclose(values.churn.mean[:, 0], churn.mean)
    usable = values.usable[:, 0]
    assert np.allclose(values.env.mean[usable, 0], values.gain.mean[usable, 0] - 10.0)
    # the learner found who it works on: most of segment a can get it, few of segment c (it hurts them)
    segment = who.features["segment"].to_numpy()
    assert usable[segment == "a"].mean() > 0.8 and usable[segment == "c"].mean() < 0.3


def test_no_usable_action_has_a_harmful_or_worthless_estimated_effect(bundle) -> None:
    who = people(seed=9)
    n = len(who.p_churn)
    costs = np.tile([10.0, 5.0, 2.0], (n, 1))
    values = action_values(
        catalogue(), who, np.ones((n, 3), bool), costs, VALUE, 0.05, bundle.actions, WINDOW
    )
    learned = values.usable[:, 0]
    assert learned.any() and (~learned).any()
    assert not np.any(values.churn.low[learned, 0] > 0) and np.all(values.gain.mean[values.usable] > 0)
    assert np.isnan(values.env.mean[~values.usable]).all()
    harmful = values.churn.low[:, 0] > 0  # contact raises churn beyond doubt (segment c, a sleeping dog)
    worthless = values.gain.mean[:, 0] <= 0
    assert harmful.any() and worthless.any() and not learned[harmful | worthless].any()


def test_the_tail_is_the_lifetime_value_after_the_window_discounted_to_today() -> None:
    who = people(n=5)
    d = monthly_discount_rate(VALUE.annual_discount_rate)
    constant = tail_value(who, VALUE, WINDOW)
    assert np.allclose(constant, (1 + d) ** -WINDOW * who.clv)  # constant retention: CLV restarts at W
    months = np.arange(1, 121)
    survival = np.tile(0.98**months, (5, 1))
    curved = tail_value(Customers(**{**who.__dict__, "survival": survival}), VALUE, WINDOW)
    margin = 0.5 * who.monthly_revenue
    by_hand = margin * np.sum(0.98 ** (months[WINDOW:] - WINDOW) * (1 + d) ** -months[WINDOW:])
    assert np.allclose(curved, by_hand)


def test_assumed_effects_are_the_configured_prior_with_its_range_and_keep_the_low_risk_split() -> None:
    who = people(n=50)
    n = len(who.p_churn)
    costs = np.tile([10.0, 5.0, 2.0], (n, 1))
    values = action_values(catalogue(), who, np.ones((n, 3), bool), costs, VALUE, 0.05, {}, WINDOW)
    assert values.source == ("assumed",) * 3
    point = who.p_churn * who.clv * 0.1
    assert np.allclose(values.gain.mean[:, 1], point)
    assert np.allclose(values.gain.low[:, 1], 0.25 * point) and np.allclose(values.gain.high[:, 1], 2 * point)
    assert np.allclose(values.churn.mean[:, 1], -who.p_churn * 0.1)
    low_risk = who.p_churn < 0.05
    assert low_risk.any()
    assert not values.usable[low_risk, 1].any() and not values.usable[~low_risk, 2].any()
    assert np.allclose(values.env.low[~low_risk, 1], 0.25 * point[~low_risk] - 5.0)
    with pytest.raises(DecisionConfigError, match=r"actions.catalogue.x.prior_range"):
        CorrectiveAction("x", cost=1, save_rate={"default": 0.1}, prior_range=(1.2, 1.5))


def test_uplift_segments_follow_the_churn_effect_interval_and_the_risk() -> None:
    p = np.array([0.5, 0.01, 0.5, 0.01, 0.3, 0.3])
    low = np.array([-0.2, -0.1, -0.1, -0.1, 0.02, np.nan])
    high = np.array([-0.05, 0.05, 0.1, 0.05, 0.2, np.nan])
    assert uplift_segment(p, low, high, 0.04).tolist() == [
        "persuadable", "sure_thing", "lost_cause", "sure_thing", "sleeping_dog", None,
    ]  # fmt: skip


def test_with_a_learned_effect_the_decision_names_its_source_interval_and_segment(bundle) -> None:
    who = people(n=400, seed=10)
    policy = small_policy((CorrectiveAction("discount", cost=10, save_rate={"default": 0.2}),), budget=1e9)
    frame = rule_frame(who.features, policy, [10.0])
    value = ValueParameters(90, 0.5, 0.1, uplift=bundle.actions, window_months=WINDOW)
    decided, pairs = policy.decide_chunk(frame, who.p_churn, who.clv, who.monthly_revenue, None, value)
    chosen = decided["action"].notna()
    assert (decided.loc[chosen, "effect_source"] == "learned").all()
    # never a harmful or worthless estimate (a churn effect not told apart from 0 may go with a gain)
    assert (decided.loc[chosen, "value_gain"] > 0).all() and (
        decided.loc[chosen, "effect_on_churn"] < 0.02
    ).all()
    assert (decided.loc[chosen, "value_gain_low"] <= decided.loc[chosen, "value_gain_high"]).all()
    segment = decided["uplift_segment"].to_numpy()
    by_segment = pd.crosstab(who.features["segment"], segment, normalize="index")
    share = by_segment.reindex(columns=["persuadable", "sleeping_dog"], fill_value=0.0)
    assert share.loc["a", "persuadable"] > share.loc["c", "persuadable"] + 0.2  # a: saved, c: hurt
    assert share.loc["c", "sleeping_dog"] > share.loc["a", "sleeping_dog"] + 0.2
    assert set(pairs["row"]) <= set(np.flatnonzero(chosen.to_numpy()))


def small_policy(catalogue: tuple, **changes) -> DecisionPolicy:
    parts = dict(
        ladder=LoyaltyLadder.from_config({"rungs": ["prospect", "customer", "client"], "rules": {}}),
        valuation=Valuation.from_config(
            {
                "financial": {"high_clv_quantile": None, "high_clv_min": 1000.0},
                "strategic": {"points": {}, "high_at": 1},
                "segments": {
                    "keep": {"financial": "high", "strategic": "high"},
                    "grow": {"financial": "high", "strategic": "low"},
                    "serve": {"financial": "low", "strategic": "high"},
                    "review": {"financial": "low", "strategic": "low"},
                },
            }
        ),  # fmt: skip
        reasons=ReasonFamilies.from_config({"families": {}}),
        catalogue=catalogue,
        low_risk_below=0.05,
        explain=False,
    )
    return DecisionPolicy(**(parts | changes))


def rule_frame(X: pd.DataFrame, policy: DecisionPolicy, costs: list[float]) -> pd.DataFrame:
    """Feature rows with the rule columns `DecisionPolicy.rules_sql` adds (every action eligible)."""
    extra = {"ladder_rung": "customer", "strategic_value": 0.0}
    for action, cost in zip(policy.catalogue, costs, strict=True):
        extra |= {eligible_column(action.name): True, cost_column(action.name): cost}
    return X.assign(**extra)


def test_the_batch_selects_jointly_a_second_action_where_it_is_worth_more_to_the_plan(tmp_path) -> None:
    # customer 1: A worth 10 net (cost 10) or B 8 (cost 1); customer 2: A 9 or B 7.55. Budget 11: each one's
    # best action (A) fits once (10); jointly customer 1 gets A and customer 2 B (17.55).
    actions = (
        CorrectiveAction("a", cost=10, save_rate={"default": 0.4}),
        CorrectiveAction("b", cost=1, save_rate={"default": 0.18}),
    )
    results = {}
    for selection in ("exact", "joint"):
        policy = small_policy(actions, budget=11.0, selection=selection)
        frame = rule_frame(pd.DataFrame({"customer_id": [1, 2]}), policy, [10.0, 1.0])
        results[selection], summary = run_batch(policy, frame, np.array([0.5, 0.5]), np.array([100.0, 95.0]),
                                                tmp_path / f"{selection}.parquet")  # fmt: skip
    exact, joint = results["exact"], results["joint"]
    assert exact["selected"].tolist() == [True, False]
    assert joint["selected"].tolist() == [True, True]
    assert joint["action"].tolist() == ["a", "b"]
    assert joint.loc[2, "expected_net_value"] == pytest.approx(0.5 * 95 * 0.18 - 1)
    assert joint.loc[2, "value_gain_low"] == pytest.approx(0.5 * 0.5 * 95 * 0.18)
    assert joint.loc[joint["selected"], "expected_net_value"].sum() == pytest.approx(17.55)
    # the joint run's summary: nothing is learned, so all the budget spent goes to assumed effects
    assert summary.budget_used_assumed == pytest.approx(11.0)
    assert summary.metrics()["budget_share_assumed"] == pytest.approx(1.0)
    assert summary.metrics()["expected_value_saved_low"] == pytest.approx(0.5 * (20 + 0.5 * 95 * 0.18))
    assert summary.assumed_line().startswith("assumed effects take 100% of the budget spent (a, b:")
    segments = summary.tables()["uplift_segments"].set_index("uplift_segment")
    assert segments.loc["persuadable", "selected"] == 2 == segments.loc["persuadable", "assumed"]
    assert segments.loc["persuadable", "value_gain"] == pytest.approx(20 + 0.5 * 95 * 0.18)


def run_batch(policy: DecisionPolicy, frame: pd.DataFrame, p: np.ndarray, clv: np.ndarray, path):
    """Decide one chunk, write its scored rows and pairs as `score_chunks` does, and finalise."""
    decided, pairs = policy.decide_chunk(frame, p, clv, np.full(len(p), 50.0), None, VALUE)
    ids = frame["customer_id"].to_numpy()
    scored = pd.concat(
        [pd.DataFrame({"customer_id": ids, "as_of": date(2026, 1, 1), "p_churn": p, "clv": clv,
                       "value_at_risk": p * clv}), decided], axis=1,
    ).assign(model_version="1")  # fmt: skip
    scored.to_parquet(path)
    pairs.insert(0, "customer_id", ids[pairs.pop("row").to_numpy()])
    pairs.to_parquet(pairs_file(path))
    con = duckdb.connect()
    out = finalise(con, path, policy, ControlSettings(share=0.0), date(2026, 1, 1)).df()
    assert list(out.columns) == output_columns(policy.top_reasons)
    summary = summarise(con.table("scoring_output"), policy, None, policy.budget, 0.0)
    assert summary.budget_used <= policy.budget
    return out.set_index("customer_id"), summary


def test_the_joint_pruning_keeps_every_free_action_the_budget_does_not_limit(tmp_path) -> None:
    # five customers with a free action, one with a paid one that takes the whole budget: all six fit
    actions = (
        CorrectiveAction("free", cost=0, save_rate={"default": 0.2}),
        CorrectiveAction("paid", cost=1, save_rate={"default": 0.2}),
    )
    policy = small_policy(actions, budget=1.0, selection="joint")
    frame = rule_frame(pd.DataFrame({"customer_id": np.arange(1, 7)}), policy, [0.0, 1.0])
    frame[eligible_column("free")] = frame["customer_id"] <= 5
    frame[eligible_column("paid")] = frame["customer_id"] == 6
    out, _ = run_batch(policy, frame, np.full(6, 0.5), np.arange(1.0, 7.0) * 20, tmp_path / "free.parquet")
    assert out["selected"].all()
    assert out["action"].tolist() == ["paid", *["free"] * 5]  # in priority order: the paid one is worth most


def test_constant_retention_value_in_the_tail_matches_lifetime_value() -> None:
    p, revenue = np.array([0.1, 0.3]), np.array([40.0, 60.0])
    who = Customers(
        p, VALUE.lifetime_value(p, revenue, None), revenue, np.array(["customer"] * 2, dtype=object)
    )
    direct = lifetime_value(p, revenue, horizon_days=90, margin_rate=0.5, annual_discount_rate=0.1)
    assert np.allclose(tail_value(who, VALUE, 0), direct)


def test_the_joint_solver_keeps_free_pairs_beyond_what_the_budget_buys() -> None:
    from decisions.selection import select_multi_choice

    values = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan], [np.nan, 10.0]])
    costs = np.array([[0.0, np.nan], [0.0, np.nan], [0.0, np.nan], [np.nan, 1.0]])
    assert select_multi_choice(values, costs, 1.0, [None, None]).tolist() == [0, 0, 0, 1]
