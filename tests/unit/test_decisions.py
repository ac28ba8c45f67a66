"""Unit tests of the decision layer on hand-made rows: reasons, rules, ladder, valuation, expected net value,
the choice of action and the selection within a budget."""

from __future__ import annotations

import itertools
import math

import duckdb
import numpy as np
import pandas as pd
import pytest

from decisions.actions import (
    CorrectiveAction,
    Customers,
    LadderIntervention,
    ValueParameters,
    choose_actions,
    expected_net_values,
    select_within_budget,
)
from decisions.errors import DecisionConfigError
from decisions.ladder import LoyaltyLadder
from decisions.policy import DecisionPolicy, action_index, cost_column, eligible_column
from decisions.reasons import ReasonFamilies, top_reasons
from decisions.rules import Rule, check_rules, referenced_names
from decisions.valuation import Valuation
from decisions.value import lifetime_value

FAMILIES = ReasonFamilies.from_config(
    {
        "families": {
            "complaints": {"label": "complaints", "features": ["complaints_*", "open_complaints"]},
            "price": {"label": "price", "features": ["price_*"]},
            "tenure": {"label": "short tenure", "features": ["tenure_days"]},
        }
    }
)
VALUE = ValueParameters(horizon_days=90, margin_rate=0.5, annual_discount_rate=0.0)
LADDER_CFG = {
    "rungs": ["prospect", "customer", "client", "advocate"],
    "rules": {"advocate": "referrals >= 1", "client": "tenure_days >= 365"},
}
VALUATION_CFG = {
    "financial": {"high_clv_quantile": None, "high_clv_min": 1000.0},
    "strategic": {"points": {"ref": {"when": "referrals >= 1", "points": 2}}, "high_at": 2},
    "segments": {
        "invest": {"financial": "high", "strategic": "high"},
        "maintain": {"financial": "high", "strategic": "low"},
        "serve_differently": {"financial": "low", "strategic": "high"},
        "review": {"financial": "low", "strategic": "low"},
    },
}


def test_features_go_to_the_first_family_that_matches_and_the_rest_to_other() -> None:
    assert FAMILIES.family_of("complaints_90d") == "complaints"
    assert FAMILIES.family_of("open_complaints") == "complaints"
    assert FAMILIES.family_of("price_increase_pct_90d") == "price"
    assert FAMILIES.family_of("segment") == "other"
    matrix = FAMILIES.membership(["open_complaints", "segment", "price_x"])
    assert matrix.tolist() == [[1, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]]


def test_top_reasons_sum_features_per_family_and_keep_only_risk_raising_ones() -> None:
    features = ["complaints_90d", "open_complaints", "price_increase", "tenure_days", "segment"]
    contributions = np.array(
        [
            # complaints 0.3 + 0.4 = 0.7, price 0.5, tenure -0.2, other 0.1; bias last
            [0.3, 0.4, 0.5, -0.2, 0.1, -3.0],
            # only tenure raises risk
            [-0.1, 0.0, -0.5, 0.6, -0.2, -3.0],
            # complaints cancel out (0.2 - 0.2 = 0): not a reason; price and other tie at 0.3 -> price (listed first)
            [0.2, -0.2, 0.3, -0.1, 0.3, -3.0],
        ]
    )
    top = top_reasons(contributions, features, FAMILIES, k=3)
    assert top.labels.tolist() == [
        ["complaints", "price", "other factors"],
        ["short tenure", None, None],
        ["price", "other factors", None],
    ]
    assert top.keys[0].tolist() == ["complaints", "price", "other"]
    assert top.codes.tolist() == [[0, 1, 3], [2, -1, -1], [1, 3, -1]]
    assert top.contribution[0] == pytest.approx([0.7, 0.5, 0.1])
    with pytest.raises(ValueError, match="columns for"):
        top_reasons(contributions[:, :3], features, FAMILIES)


def test_reason_families_config_errors_name_the_key() -> None:
    with pytest.raises(DecisionConfigError, match=r"reasons.families.price: needs a label"):
        ReasonFamilies.from_config({"families": {"price": {"features": ["price_*"]}}})
    with pytest.raises(DecisionConfigError, match="unique"):
        ReasonFamilies.from_config(
            {"families": {"a": {"label": "x", "features": ["a"]}, "b": {"label": "x", "features": ["b"]}}}
        )


def test_rules_are_checked_against_the_columns_and_errors_name_the_config_key() -> None:
    columns = {"tenure_days": "DOUBLE", "segment": "VARCHAR"}
    check_rules(columns, [Rule("a", "tenure_days >= 365"), Rule("b", "10 + 0.5 * tenure_days", "DOUBLE")])
    with pytest.raises(DecisionConfigError) as error:
        check_rules(
            columns,
            [
                Rule("ladder.rules.client", "tenure_dayz >= 365"),
                Rule("actions.catalogue.x.eligible", "tenure_days"),
                Rule("actions.catalogue.x.cost", "segment", "DOUBLE"),
                Rule("valuation.strategic.points.p.when", "tenure_days >="),
            ],
        )
    message = str(error.value)
    assert "ladder.rules.client: 'tenure_dayz >= 365' cannot be evaluated" in message
    assert 'Referenced column "tenure_dayz" not found' in message
    assert "actions.catalogue.x.eligible: 'tenure_days' yields DOUBLE, not a condition" in message
    assert "actions.catalogue.x.cost: 'segment' yields VARCHAR, not a number" in message
    assert "valuation.strategic.points.p.when" in message


def test_referenced_names_ignore_text_inside_string_literals() -> None:
    names = {"segment", "tenure_days", "enterprise"}
    assert referenced_names("segment IN ('enterprise') AND tenure_days > 1", names) == {
        "segment",
        "tenure_days",
    }


def rows_of(sql: str, frame: pd.DataFrame) -> list:
    con = duckdb.connect()
    con.register("t", frame)
    return [r[0] for r in con.execute(f"SELECT {sql} FROM t").fetchall()]


def test_ladder_puts_each_customer_on_the_highest_rung_whose_rule_holds() -> None:
    ladder = LoyaltyLadder.from_config(LADDER_CFG)
    frame = pd.DataFrame(
        {"tenure_days": [10.0, 400.0, 10.0, 400.0, None], "referrals": [0.0, 0.0, 2.0, 1.0, None]}
    )
    assert rows_of(ladder.rung_sql(), frame) == ["customer", "client", "advocate", "advocate", "customer"]
    assert ladder.prospect == "prospect" and ladder.base == "customer"


def test_ladder_config_errors() -> None:
    with pytest.raises(
        DecisionConfigError, match=r"ladder.rules: \['prospect'\] are not rungs above 'customer'"
    ):
        LoyaltyLadder.from_config(
            {"rungs": ["prospect", "customer", "client"], "rules": {"prospect": "TRUE"}}
        )
    with pytest.raises(DecisionConfigError, match="distinct"):
        LoyaltyLadder.from_config({"rungs": ["prospect", "prospect"], "rules": {}})


def test_valuation_segments_combine_financial_and_strategic_value() -> None:
    valuation = Valuation.from_config(VALUATION_CFG)
    frame = pd.DataFrame({"referrals": [1.0, 0.0, 3.0, None], "clv": [1500.0, 1000.0, 999.0, 10.0]})
    con = duckdb.connect()
    con.register("t", frame)
    con.execute(f"CREATE TABLE s AS SELECT *, {valuation.strategic_sql()} AS strategic_value FROM t")
    got = con.execute(f"SELECT strategic_value, {valuation.segment_sql(1000.0)} FROM s").fetchall()
    assert got == [(2.0, "invest"), (0.0, "maintain"), (2.0, "serve_differently"), (0.0, "review")]


def test_valuation_config_errors() -> None:
    cfg = {
        **VALUATION_CFG,
        "segments": {**VALUATION_CFG["segments"], "review": {"financial": "high", "strategic": "low"}},
    }
    with pytest.raises(DecisionConfigError, match="valuation.segments.review: maintain already covers"):
        Valuation.from_config(cfg)
    cfg = {**VALUATION_CFG, "financial": {"high_clv_quantile": 1.5, "high_clv_min": None}}
    with pytest.raises(DecisionConfigError, match="high_clv_quantile"):
        Valuation.from_config(cfg)


def customers(
    p: list[float], clv: list[float], revenue: list[float], rungs: list[str], codes=None
) -> Customers:
    return Customers(
        np.asarray(p), np.asarray(clv), np.asarray(revenue), np.asarray(rungs, dtype=object),
        None if codes is None else np.asarray(codes), FAMILIES.keys,
    )  # fmt: skip


def test_expected_net_value_follows_the_documented_rules() -> None:
    call = CorrectiveAction("call", cost=10, save_rate={"complaints": 0.4, "default": 0.05})
    move = LadderIntervention(
        "loyalty", cost=5, from_rungs=["customer"], target_rung="client", conversion_rate=0.2,
        churn_multiplier=0.5, revenue_uplift=10.0,
    )  # fmt: skip
    people = customers(
        p=[0.2, 0.2, 0.01, 0.01],
        clv=[1000.0, 1000.0, 500.0, 500.0],
        revenue=[50.0, 50.0, 40.0, 40.0],
        rungs=["customer", "client", "customer", "client"],
        codes=[[0, 1, -1], [1, -1, -1], [-1, -1, -1], [0, -1, -1]],  # complaints first / price only / none
    )
    eligible = np.ones((4, 2), dtype=bool)
    costs = np.array([[10.0, 5.0]] * 4)
    values = expected_net_values([call, move], people, eligible, costs, VALUE, low_risk_below=0.05)
    # at risk: 0.2 * 1000 * 0.4 - 10 = 70 (complaints among the reasons); 0.2 * 1000 * 0.05 - 10 = 0 (default)
    assert values[0, 0] == pytest.approx(70.0) and values[1, 0] == pytest.approx(0.0)
    assert np.isnan(values[:2, 1]).all()  # ladder interventions are for low-risk customers only
    after = lifetime_value(
        np.array([0.005]), np.array([50.0]), horizon_days=90, margin_rate=0.5, annual_discount_rate=0.0
    )
    assert values[2, 1] == pytest.approx(0.2 * (after[0] - 500.0) - 5.0)
    assert np.isnan(values[3, 1])  # a client is not on the intervention's from_rungs
    assert np.isnan(values[2:, 0]).all()  # corrective actions are for customers at risk

    # Ineligible or cost unknown: no value.
    eligible[0, 0] = False
    costs[1, 0] = np.nan
    values = expected_net_values([call, move], people, eligible, costs, VALUE, low_risk_below=0.05)
    assert np.isnan(values[0, 0]) and np.isnan(values[1, 0])


def test_without_reasons_the_default_save_rate_applies() -> None:
    call = CorrectiveAction("call", cost=10, save_rate={"complaints": 0.4, "default": 0.05})
    people = customers([0.2], [1000.0], [50.0], ["customer"], codes=None)
    values = expected_net_values([call], people, np.ones((1, 1), bool), np.array([[10.0]]), VALUE, 0.05)
    assert values[0, 0] == pytest.approx(0.0)


def test_choice_is_the_argmax_with_ties_to_the_first_listed_and_none_when_nothing_applies() -> None:
    values = np.array([[1.0, 3.0, 2.0], [5.0, 5.0, np.nan], [np.nan, np.nan, np.nan], [-4.0, np.nan, -1.0]])
    costs = np.array([[10.0, 20.0, 30.0]] * 4)
    choice = choose_actions(values, costs)
    assert choice.action.tolist() == [1, 0, -1, 2]
    assert choice.cost[[0, 1, 3]].tolist() == [20.0, 10.0, 30.0] and np.isnan(choice.cost[2])
    assert choice.expected_net_value[[0, 1, 3]].tolist() == [3.0, 5.0, -1.0]


def test_greedy_walks_the_priority_list_and_takes_what_still_fits() -> None:
    action = np.array([0, 0, 1, 1, 0, 1, -1])
    cost = np.array([60.0, 50.0, 10.0, 10.0, 30.0, 5.0, np.nan])
    value = np.array([100.0, 90.0, 50.0, 40.0, 20.0, -1.0, np.nan])
    selected = select_within_budget(action, cost, value, budget=100.0, capacity={0: None, 1: 1})
    # 60 fits (40 left); 50 does not; 10 fits (30 left); the next action 1 is over capacity; 30 fits (0 left);
    # negative value and no action are never selected.
    assert selected.tolist() == [True, False, True, False, True, False, False]


def test_exact_selection_is_the_best_feasible_set_and_never_worse_than_greedy() -> None:
    rng = np.random.default_rng(3)
    for _ in range(25):
        n = 9
        action = rng.integers(0, 3, n)
        cost = rng.uniform(1, 40, n).round(1)
        value = rng.uniform(-5, 50, n).round(1)
        budget, capacity = 60.0, {0: 2, 1: None, 2: 1}
        exact = select_within_budget(action, cost, value, budget, capacity, method="exact")
        greedy = select_within_budget(action, cost, value, budget, capacity)
        best = 0.0
        for picks in itertools.product([0, 1], repeat=n):
            chosen = np.array(picks, dtype=bool)
            fits = cost[chosen].sum() <= budget and all(
                limit is None or (action[chosen] == a).sum() <= limit for a, limit in capacity.items()
            )
            if fits and (value[chosen] > 0).all():
                best = max(best, value[chosen].sum())
        for chosen in (exact, greedy):
            assert cost[chosen].sum() <= budget + 1e-9 and (value[chosen] > 0).all()
            assert all(limit is None or (action[chosen] == a).sum() <= limit for a, limit in capacity.items())
        assert value[exact].sum() == pytest.approx(best)
        assert value[exact].sum() >= value[greedy].sum() - 1e-9


def test_greedy_can_be_beaten_by_exact_when_an_expensive_action_crowds_out_cheaper_ones() -> None:
    action = np.array([0, 0, 0])
    cost, value = np.array([100.0, 50.0, 50.0]), np.array([60.0, 40.0, 40.0])
    greedy = select_within_budget(action, cost, value, 100.0, {0: None})
    exact = select_within_budget(action, cost, value, 100.0, {0: None}, method="exact")
    assert greedy.tolist() == [True, False, False] and exact.tolist() == [False, True, True]
    with pytest.raises(DecisionConfigError, match="unknown method"):
        select_within_budget(action, cost, value, 100.0, {0: None}, method="best")


def policy(**changes) -> DecisionPolicy:
    catalogue = (
        CorrectiveAction("call", cost="5 + tenure_days / 100", eligible="complaints_90d > 0",
                         save_rate={"complaints": 0.5, "default": 0.1}),
        LadderIntervention("loyalty", cost=2, from_rungs=["customer"], target_rung="client", conversion_rate=0.3),
    )  # fmt: skip
    parts = dict(
        ladder=LoyaltyLadder.from_config(LADDER_CFG),
        valuation=Valuation.from_config(VALUATION_CFG),
        reasons=FAMILIES,
        catalogue=catalogue,
        low_risk_below=0.05,
        contact_rule="days_since_last_offer IS NULL OR days_since_last_offer >= 90",
        budget=100.0,
    )
    return DecisionPolicy(**(parts | changes))


def test_policy_rules_sql_evaluates_rung_strategic_value_eligibility_and_cost() -> None:
    frame = pd.DataFrame(
        {
            "tenure_days": [100.0, 400.0, 100.0],
            "complaints_90d": [1.0, 0.0, 2.0],
            "days_since_last_offer": [None, None, 30.0],
        }
    )
    con = duckdb.connect()
    con.register("features", frame)
    out = con.execute(policy().rules_sql("features", {"referrals": "DOUBLE"})).df()
    assert out["ladder_rung"].tolist() == ["customer", "client", "customer"]
    assert out["strategic_value"].tolist() == [0.0, 0.0, 0.0]  # referrals are absent: read as empty
    assert out[eligible_column("call")].tolist() == [True, False, False]  # third: contacted 30 days ago
    assert out[cost_column("call")].tolist() == [6.0, 9.0, 6.0]
    assert out[eligible_column("loyalty")].tolist() == [True, True, False]


def test_policy_refuses_unknown_reason_families_rungs_and_names() -> None:
    bad_rate = CorrectiveAction("call", cost=5, save_rate={"complaint": 0.5, "default": 0.1})
    with pytest.raises(
        DecisionConfigError, match=r"actions.catalogue.call.save_rate: \['complaint'\] are not reason"
    ):
        policy(catalogue=(bad_rate,))
    bad_rung = LadderIntervention(
        "up", cost=1, from_rungs=["client"], target_rung="customer", conversion_rate=0.1
    )
    with pytest.raises(DecisionConfigError, match="target_rung customer is not above"):
        policy(catalogue=(bad_rung,))
    unknown = LadderIntervention("up", cost=1, from_rungs=["fan"], target_rung="client", conversion_rate=0.1)
    with pytest.raises(DecisionConfigError, match=r"rungs \['fan'\] are not on the ladder"):
        policy(catalogue=(unknown,))
    with pytest.raises(DecisionConfigError, match="unique lower-case identifiers"):
        policy(catalogue=(bad_rung, bad_rung))
    with pytest.raises(DecisionConfigError, match="needs a 'default' rate"):
        CorrectiveAction("call", cost=5, save_rate={"complaints": 0.5})
    with pytest.raises(DecisionConfigError, match="conversion_rate must be in"):
        LadderIntervention("up", cost=1, from_rungs=["customer"], target_rung="client", conversion_rate=2.0)
    assert policy().selection == "joint"  # the default: every customer x action at once
    with pytest.raises(
        DecisionConfigError, match="actions.selection: 'best' is not one of joint, exact, greedy"
    ):
        policy(selection="best")
    with pytest.raises(DecisionConfigError, match=r"loyalty.prior_range: give \[low, high\]"):
        LadderIntervention("loyalty", cost=1, from_rungs=["customer"], target_rung="client", conversion_rate=0.1,
                           prior_range=(0.5, 0.9))  # fmt: skip


def test_policy_check_names_every_bad_rule() -> None:
    broken = CorrectiveAction(
        "call", cost="price * 2", eligible="complaints_90d > 0", save_rate={"default": 0.1}
    )
    with pytest.raises(
        DecisionConfigError, match=r"actions.catalogue.call.cost: 'price \* 2' cannot be evaluated"
    ):
        policy(catalogue=(broken,)).check(
            {
                "tenure_days": "DOUBLE",
                "complaints_90d": "DOUBLE",
                "days_since_last_offer": "DOUBLE",
                "referrals": "DOUBLE",
            }
        )


def test_decide_picks_the_best_action_per_customer_with_its_reasons() -> None:
    frame = pd.DataFrame(
        {
            "ladder_rung": ["customer", "customer", "client"],
            "strategic_value": [0.0, 2.0, 0.0],
            eligible_column("call"): [True, False, True],
            cost_column("call"): [10.0, 10.0, 10.0],
            eligible_column("loyalty"): [True, True, True],
            cost_column("loyalty"): [2.0, 2.0, 2.0],
        }
    )
    reasons = top_reasons(
        np.array([[0.5, 0.1, 0.0], [0.0, 0.2, 0.0], [0.1, 0.0, 0.3]]), ["open_complaints", "price_x", "tenure_days"],
        FAMILIES, k=3,
    )  # fmt: skip
    decided = policy().decide(
        frame, np.array([0.2, 0.01, 0.3]), np.array([500.0, 800.0, 100.0]), np.array([40.0, 60.0, 10.0]),
        reasons, VALUE,
    )  # fmt: skip
    assert decided["reason_1"].tolist() == ["complaints", "price", "short tenure"]
    assert [None if pd.isna(v) else v for v in decided["reason_2"]] == ["price", None, "complaints"]
    assert decided["action"].tolist() == ["call", "loyalty", "call"]
    assert decided["action_kind"].tolist() == ["corrective", "ladder", "corrective"]
    assert decided["expected_net_value"].iloc[0] == pytest.approx(0.2 * 500 * 0.5 - 10)
    assert decided["expected_net_value"].iloc[2] == pytest.approx(0.3 * 100 * 0.5 - 10)
    after = lifetime_value(
        np.array([0.01]), np.array([60.0]), horizon_days=90, margin_rate=0.5, annual_discount_rate=0.0
    )
    assert decided["expected_net_value"].iloc[1] == pytest.approx(0.3 * (after[0] - 800.0) - 2.0)
    assert action_index(["loyalty", None, "call"], ["call", "loyalty"]).tolist() == [1, -1, 0]


def test_clv_formula_matches_the_documented_example() -> None:
    # docs/scoring.md: 10% churn over 90 days, 100 a month in revenue, margin 35%, 10% a year -> about 786
    clv = lifetime_value(
        np.array([0.1]), np.array([100.0]), horizon_days=90, margin_rate=0.35, annual_discount_rate=0.1
    )
    assert math.isclose(clv[0], 786, rel_tol=0.01)


def optimum(
    items: np.ndarray, action: np.ndarray, cost: np.ndarray, value: np.ndarray, budget: float, calls: int
) -> float:
    """The best total value of a selection among `items` within the budget and at most `calls` of action 0."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    rows = np.vstack([cost[items], (action[items] == 0).astype(float)])
    result = milp(
        -value[items], constraints=LinearConstraint(rows, -np.inf, [budget, float(calls)]),
        integrality=np.ones(len(items)), bounds=Bounds(0, 1), options={"mip_rel_gap": 0.0},
    )  # fmt: skip
    return -result.fun


def test_leaving_out_dominated_customers_keeps_the_optimum() -> None:
    from decisions.actions import undominated

    rng = np.random.default_rng(11)
    for _ in range(5):
        n = 400
        action = rng.integers(0, 3, n)
        # action 0 costs the same for everyone (e.g. a call), actions 1 and 2 depend on the customer
        cost = np.where(action == 0, 15.0, rng.uniform(5, 60, n).round(0))
        value = rng.uniform(0.1, 40, n).round(1)
        value[:20] = value[20:40]  # identical customers must not drop each other
        cost[:20] = cost[20:40]
        action[:20] = action[20:40]
        budget, capacity = 200.0, {0: 4, 1: None, 2: None}
        candidates = np.arange(n)
        kept = undominated(action, cost, value, candidates, budget, capacity)
        assert len(kept) < n / 2  # the reduction is substantial ...

        best = [optimum(items, action, cost, value, budget, calls=4) for items in (kept, candidates)]
        assert best[0] == pytest.approx(best[1])  # ... and loses nothing
