"""The joint selection: which action, if any, each customer gets, for the most total expected net value within
the budget and each action's capacity (a multiple-choice knapsack).

Given every customer's expected net value and cost under every action (NaN: not eligible, or an effect that
must not be used), `select_multi_choice` solves

    maximise   sum_ia value[i, a] x[i, a]
    subject to sum_a x[i, a] <= 1                 (one action per customer at most)
               sum_ia cost[i, a] x[i, a] <= budget
               sum_i x[i, a] <= capacity[a]        (where an action has a capacity)
               x[i, a] in {0, 1}

as a mixed-integer program (HiGHS through `scipy.optimize.milp`). Choosing each customer's best action first
and then selecting customers (`decisions.actions.select_within_budget`) can miss value: a customer's second
action may be worth taking when the first one's capacity is used up, or cost far less for nearly the same
value. The joint problem sees both at once; the decision benchmark's oracle (bench/decisions.py) is this
problem with the true effects.

Only positive values are candidates. Pairs that an optimal selection never needs are left out before the
solver runs (the dominance rule of `decisions.actions.undominated`, per action, with the number of customers
the whole selection can hold as the limit: see `_candidates`), so 10^6 customers come down to a few thousand binaries.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from decisions.actions import fewer_betters_than

log = logging.getLogger(__name__)


def select_multi_choice(
    values: np.ndarray,
    costs: np.ndarray,
    budget: float,
    capacity: Sequence[int | None],
    time_limit_seconds: float = 60.0,
) -> np.ndarray:
    """Each customer's chosen action (column index into `values`), or -1: see the module docstring.

    `values` and `costs` are (customers, actions); `capacity[a]` caps action `a` (None: no cap). When the solver
    finds no solution within `time_limit_seconds`, the greedy walk down the pairs by value is used instead
    (with a warning)."""
    values, costs = np.asarray(values, dtype=float), np.asarray(costs, dtype=float)
    n, k = values.shape
    chosen = np.full(n, -1, dtype=np.int64)
    customer, action = _candidates(values, costs, budget, capacity)
    if not len(customer):
        return chosen
    value, cost = values[customer, action], costs[customer, action]
    picked = _solve(customer, action, value, cost, budget, capacity, time_limit_seconds)
    if picked is None:
        log.warning(
            "the joint selection found no solution within %g s; using the greedy one", time_limit_seconds
        )
        picked = _greedy(customer, action, value, cost, budget, capacity)
    chosen[customer[picked]] = action[picked]
    return chosen


def _candidates(
    values: np.ndarray, costs: np.ndarray, budget: float, capacity: Sequence[int | None]
) -> tuple[np.ndarray, np.ndarray]:
    """(customer, action) pairs an optimal selection may need.

    A pair (i, a) with at least L better pairs (j, a) — the same action, costing no more, worth no less — where
    L is the most customers any selection can hold (those with a free pair, plus the budget over the cheapest
    paid cost), is never needed: in a selection that gives i action a, at
    most L - 1 other customers are selected, so one of those better j is unselected, and giving a to j instead
    of i keeps budget, capacity and the one-action rule and loses no value."""
    eligible = ~np.isnan(values) & (values > 0) & ~np.isnan(costs) & (costs >= 0)
    if budget <= 0 or not eligible.any():
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    positive = costs[eligible & (costs > 0)]
    # every customer with a free pair, plus as many paid ones as the budget buys at the cheapest paid cost
    free = int((eligible & (costs <= 0)).any(axis=1).sum())
    most = int(eligible.any(axis=1).sum()) if not len(positive) else free + int(budget // positive.min())
    capped = [c for c in capacity if c is not None]
    if len(capped) == values.shape[1]:
        most = min(most, int(sum(capped)))
    most = max(min(most, int(eligible.any(axis=1).sum())), 1)
    customers, actions = [], []
    for a in range(values.shape[1]):
        rows = np.flatnonzero(eligible[:, a])
        if not len(rows):
            continue
        kept = rows[fewer_betters_than(costs[rows, a], values[rows, a], most)] if len(rows) > most else rows
        customers.append(kept)
        actions.append(np.full(len(kept), a, dtype=np.int64))
    return np.concatenate(customers), np.concatenate(actions)


def _solve(
    customer: np.ndarray,
    action: np.ndarray,
    value: np.ndarray,
    cost: np.ndarray,
    budget: float,
    capacity: Sequence[int | None],
    time_limit_seconds: float,
) -> np.ndarray | None:
    """The chosen pairs (a boolean mask over them), or None when HiGHS found none in time."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_array, vstack

    m = len(customer)
    people, position = np.unique(customer, return_inverse=True)
    one_each = csr_array((np.ones(m), (position, np.arange(m))), shape=(len(people), m))
    rows, upper = [csr_array(cost.reshape(1, -1)), one_each], [float(budget), *np.ones(len(people))]
    for a, limit in enumerate(capacity):
        if limit is not None and (action == a).any():
            rows.append(csr_array((action == a).astype(float).reshape(1, -1)))
            upper.append(float(limit))
    result = milp(
        c=-value,
        constraints=LinearConstraint(vstack(rows), -np.inf, np.asarray(upper)),
        integrality=np.ones(m),
        bounds=Bounds(0, 1),
        options={"time_limit": float(time_limit_seconds), "mip_rel_gap": 0.0},
    )
    if result.x is None:
        return None
    if result.status != 0:
        log.warning("joint selection stopped before proving optimality: %s", result.message)
    picked = np.round(result.x) > 0.5
    # The solver's feasibility tolerance could let the total cost pass the budget by a rounding error: drop
    # the least valuable picks until it fits.
    order = np.flatnonzero(picked)[np.argsort(value[picked], kind="stable")]
    for i in order:
        if float(cost[picked].sum()) <= budget:
            break
        picked[i] = False
    return picked


def _greedy(
    customer: np.ndarray,
    action: np.ndarray,
    value: np.ndarray,
    cost: np.ndarray,
    budget: float,
    capacity: Sequence[int | None],
) -> np.ndarray:
    """Walk the pairs by value (highest first) and take each that still fits."""
    picked = np.zeros(len(customer), dtype=bool)
    taken: set[int] = set()
    left = [None if c is None else int(c) for c in capacity]
    remaining = float(budget)
    for i in np.argsort(-value, kind="stable"):
        a = int(action[i])
        if int(customer[i]) in taken or cost[i] > remaining or (left[a] is not None and left[a] <= 0):
            continue
        picked[i] = True
        taken.add(int(customer[i]))
        remaining -= float(cost[i])
        if left[a] is not None:
            left[a] -= 1
    return picked
