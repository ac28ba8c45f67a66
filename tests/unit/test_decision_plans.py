"""The decision benchmark's plans (bench/decision_plans.py): the oracle is the best plan with the true effects,
and the plain plans keep to the budget, the capacities and eligibility."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parents[2] / "bench" / "decision_plans.py"
SPEC = importlib.util.spec_from_file_location("churnwise_bench_decision_plans", PATH)
plans = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(plans)


def problem(seed: int, n: int = 8, k: int = 3):
    rng = np.random.default_rng(seed)
    margin_none = rng.uniform(50, 500, size=n)
    margin = margin_none[:, None] + rng.normal(5.0, 20.0, size=(n, k))  # some actions lose value
    costs = rng.choice([5.0, 10.0, 30.0], size=(n, k))
    eligible = rng.random((n, k)) < 0.8
    return margin, margin_none, costs, eligible


def best_by_brute_force(gains, costs, budget, capacity) -> float:
    n, k = gains.shape
    best = 0.0
    for plan in itertools.product(range(-1, k), repeat=n):
        plan = np.asarray(plan)
        rows = np.flatnonzero(plan >= 0)
        if np.isnan(gains[rows, plan[rows]]).any() or costs[rows, plan[rows]].sum() > budget:
            continue
        if any(c is not None and (plan == a).sum() > c for a, c in enumerate(capacity)):
            continue
        best = max(best, plans.true_value(plan, gains))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_oracle_is_the_best_plan_with_the_true_effects(seed: int) -> None:
    margin, margin_none, costs, eligible = problem(seed)
    gains = plans.true_gains(margin, margin_none, costs, eligible)
    capacity = [None, 2, None]
    plan = plans.oracle(gains, costs, 40.0, capacity)
    assert plans.spent(plan, costs) <= 40.0
    assert plans.true_value(plan, gains) == pytest.approx(best_by_brute_force(gains, costs, 40.0, capacity))
    assert plans.true_value(plan, gains) >= plans.true_value(
        plans.random_targeting(eligible, costs, 40.0, capacity, seed), gains
    )


def test_risk_only_takes_the_highest_risk_with_the_generic_offer() -> None:
    n = 6
    costs = np.full((n, 2), 10.0)
    eligible = np.ones((n, 2), dtype=bool)
    eligible[1, 0] = False  # the second-riskiest cannot get the generic offer
    p = np.array([0.9, 0.8, 0.1, 0.5, 0.7, 0.2])
    plan = plans.risk_only(p, 0, eligible, costs, 30.0, [None, None])
    assert sorted(np.flatnonzero(plan >= 0).tolist()) == [0, 3, 4]
    assert set(plan[plan >= 0].tolist()) == {0}


def test_random_targeting_keeps_budget_capacity_and_eligibility() -> None:
    rng = np.random.default_rng(0)
    n, k = 500, 4
    eligible = rng.random((n, k)) < 0.5
    costs = rng.choice([1.0, 3.0, 8.0], size=(n, k))
    plan = plans.random_targeting(eligible, costs, 200.0, [None, 5, None, None], seed=1)
    rows = np.flatnonzero(plan >= 0)
    assert plans.spent(plan, costs) <= 200.0
    assert eligible[rows, plan[rows]].all()
    assert (plan == 1).sum() <= 5
    assert len(rows) > 40  # it spends the budget
    again = plans.random_targeting(eligible, costs, 200.0, [None, 5, None, None], seed=1)
    assert (again == plan).all()
