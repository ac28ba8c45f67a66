"""The joint selection (decisions.selection): the most value within budget and capacity, one action per customer,
checked against brute force on small random problems."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from decisions.selection import select_multi_choice


def brute_force(values: np.ndarray, costs: np.ndarray, budget: float, capacity: list[int | None]) -> float:
    """The best total value over every assignment (each customer: no action or one action)."""
    n, k = values.shape
    best = 0.0
    for assignment in itertools.product(range(-1, k), repeat=n):
        picked = [(i, a) for i, a in enumerate(assignment) if a >= 0]
        if any(np.isnan(values[i, a]) or values[i, a] <= 0 for i, a in picked):
            continue
        if sum(costs[i, a] for i, a in picked) > budget + 1e-9:
            continue
        counts = np.bincount([a for _, a in picked], minlength=k)
        if any(c is not None and counts[a] > c for a, c in enumerate(capacity)):
            continue
        best = max(best, sum(values[i, a] for i, a in picked))
    return best


def total(chosen: np.ndarray, values: np.ndarray, costs: np.ndarray) -> tuple[float, float]:
    rows = np.flatnonzero(chosen >= 0)
    return float(values[rows, chosen[rows]].sum()), float(costs[rows, chosen[rows]].sum())


@pytest.mark.parametrize("seed", range(12))
def test_joint_selection_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = 7, 3
    values = np.round(rng.normal(3.0, 4.0, size=(n, k)), 1)
    values[rng.random((n, k)) < 0.2] = np.nan  # not eligible
    costs = np.round(rng.uniform(0.0, 6.0, size=(n, k)), 1)
    budget = float(rng.uniform(4.0, 15.0))
    capacity = [None, int(rng.integers(1, 3)), None]
    chosen = select_multi_choice(values, costs, budget, capacity)
    value, cost = total(chosen, values, costs)
    assert cost <= budget + 1e-9
    assert all(np.bincount(chosen[chosen >= 0], minlength=k)[1:2] <= capacity[1])
    assert all(values[i, a] > 0 for i, a in enumerate(chosen) if a >= 0)
    assert value == pytest.approx(brute_force(values, costs, budget, capacity), abs=1e-9)


def test_second_choice_is_taken_when_the_first_is_full() -> None:
    # both customers are worth most under action 0, which has room for one: the other gets action 1
    values = np.array([[10.0, 6.0], [9.0, 5.0]])
    costs = np.ones((2, 2))
    chosen = select_multi_choice(values, costs, budget=10.0, capacity=[1, None])
    assert sorted(chosen.tolist()) == [0, 1]
    assert total(chosen, values, costs)[0] == 15.0


def test_pruning_keeps_the_optimum() -> None:
    # many customers, a budget for a few: the pruned problem finds what the solver finds on every pair
    from decisions.selection import _candidates, _solve

    rng = np.random.default_rng(3)
    n, k = 400, 3
    values = rng.gamma(2.0, 5.0, size=(n, k)) - 3.0
    costs = rng.choice([1.0, 2.0, 5.0], size=(n, k))
    budget, capacity = 12.0, [None, 2, None]
    customer, action = _candidates(values, costs, budget, capacity)
    assert len(customer) < 0.2 * (values > 0).sum()  # the rule prunes most pairs
    every = np.argwhere(values > 0)
    full = _solve(every[:, 0], every[:, 1], values[values > 0], costs[values > 0], budget, capacity, 60.0)
    best = float(values[values > 0][full].sum())
    value, cost = total(select_multi_choice(values, costs, budget, capacity), values, costs)
    assert cost <= budget
    assert value == pytest.approx(best, rel=1e-9)


def test_nothing_positive_or_no_budget_selects_no_one() -> None:
    values = np.array([[-1.0, np.nan], [0.0, -2.0]])
    assert (select_multi_choice(values, np.ones((2, 2)), 10.0, [None, None]) == -1).all()
    assert (select_multi_choice(np.ones((2, 2)), np.ones((2, 2)), 0.0, [None, None]) == -1).all()
