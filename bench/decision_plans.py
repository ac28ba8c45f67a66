"""The plans the decision benchmark compares, and their true value (bench/decisions.py).

Every plan is one action (or none) per customer, `plan[i]` a column index into the catalogue's actions or -1,
chosen under the same budget, capacities, eligibility and configured costs:

- `oracle`: the best selection with the true effects (`decisions.selection.select_multi_choice` on the true
  gains), what no plan can beat in expectation;
- `risk_only`: the highest churn probabilities first, one generic offer each, while the budget lasts;
- `random_targeting`: customers in random order, each a random eligible action, while the budget lasts.

`true_value` is a plan's expected net value under the generator's truth: for each treated customer, the true
expected discounted margin with the action minus without it, minus the cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from decisions.selection import select_multi_choice


def true_gains(
    margin: np.ndarray, margin_none: np.ndarray, costs: np.ndarray, eligible: np.ndarray
) -> np.ndarray:
    """(customers, actions) true expected net value of each eligible action: margin with it - without - cost;
    NaN where not eligible."""
    gains = margin - margin_none[:, None] - costs
    return np.where(eligible, gains, np.nan)


def true_value(plan: np.ndarray, gains: np.ndarray) -> float:
    """The true expected net value of a plan (sum over the customers it treats)."""
    rows = np.flatnonzero(plan >= 0)
    return float(np.nansum(gains[rows, plan[rows]]))


def spent(plan: np.ndarray, costs: np.ndarray) -> float:
    """What a plan costs."""
    rows = np.flatnonzero(plan >= 0)
    return float(costs[rows, plan[rows]].sum())


def oracle(gains: np.ndarray, costs: np.ndarray, budget: float, capacity: Sequence[int | None]) -> np.ndarray:
    """The best plan with the true effects, under the budget and capacities."""
    return select_multi_choice(gains, costs, budget, capacity)


def _walk(order: np.ndarray, action: np.ndarray, costs: np.ndarray, budget: float,
          capacity: Sequence[int | None]) -> np.ndarray:  # fmt: skip
    """Take customers in `order` with their `action` while the budget and the action's capacity allow."""
    plan = np.full(len(action), -1, dtype=np.int64)
    left = [None if c is None else int(c) for c in capacity]
    remaining = float(budget)
    for i in order:
        a = int(action[i])
        if a < 0:
            continue
        c = float(costs[i, a])
        if c > remaining or (left[a] is not None and left[a] <= 0):
            continue
        plan[i] = a
        remaining -= c
        if left[a] is not None:
            left[a] -= 1
    return plan


def risk_only(p_churn: np.ndarray, generic: int, eligible: np.ndarray, costs: np.ndarray, budget: float,
              capacity: Sequence[int | None]) -> np.ndarray:  # fmt: skip
    """The highest churn probabilities first, each the one generic offer (where eligible)."""
    action = np.where(eligible[:, generic], generic, -1)
    return _walk(np.argsort(-np.asarray(p_churn), kind="stable"), action, costs, budget, capacity)


def random_targeting(eligible: np.ndarray, costs: np.ndarray, budget: float, capacity: Sequence[int | None],
                     seed: int) -> np.ndarray:  # fmt: skip
    """Customers in random order, each a random one of their eligible actions."""
    rng = np.random.default_rng(seed)
    n, k = eligible.shape
    draws = np.where(eligible, rng.random((n, k)), -1.0)
    action = np.where(eligible.any(axis=1), draws.argmax(axis=1), -1)
    return _walk(rng.permutation(n), action, costs, budget, capacity)
