"""Retention actions: the catalogue, the expected net value of each action for each customer, and the selection
of customers to act on within a budget.

Two kinds of action, each a class built from `_target_` in `conf/actions/`:

- a **corrective action** addresses the reasons behind an at-risk customer's score (a service recovery call
  for complaints, a price lock, a bundle offer, ...). Its expected net value is
  `p_churn * clv * save_rate - cost`, where `save_rate` is the action's save rate for the customer's reasons:
  the highest rate the action has for any of the customer's top reasons, else its `default` rate;
- a **ladder intervention** moves a low-risk customer up the loyalty ladder (loyalty programme, cross-sell,
  referral programme, partner programme). Its expected net value is
  `conversion_rate * (CLV after the move - clv) - cost`, where the CLV after the move is the customer's CLV
  with `p_churn * churn_multiplier` (with a survival model: every month's hazard times churn_multiplier) and
  `monthly_revenue + revenue_uplift`.

`cost` and `eligible` are SQL expressions over the features (or a number for `cost`): the decision policy
allow-lists them, checks them against the features and evaluates them where files cannot be reached
(`decisions.rules`, docs/scoring.md#decision-rules).

Each customer gets the eligible action with the highest expected net value (corrective actions for customers
with `p_churn >= low_risk_below`, ladder interventions below it). Customers are ranked by that value, and
`select_within_budget` picks whom to act on under the budget and each action's capacity.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from decisions.errors import DecisionConfigError
from decisions.value import ValueParameters

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Customers:
    """The per-customer inputs of the expected-value rule, for one chunk of customers."""

    p_churn: np.ndarray
    clv: np.ndarray
    monthly_revenue: np.ndarray
    ladder_rung: np.ndarray  # object array of rung names
    reason_codes: np.ndarray | None = None  # (n, k) index into `reason_families` of each top reason; -1: none
    reason_families: Sequence[str] = ()
    survival: np.ndarray | None = None  # (n, months) survival curves behind clv; None: constant retention
    features: Any = (
        None  # the chunk's feature rows (a DataFrame), read by learned effects (decisions.effects)
    )


def check_prior_range(name: str, prior_range: Sequence[float]) -> None:
    """`prior_range` is [low, high] with 0 <= low <= 1 <= high."""
    ok = len(prior_range) == 2 and 0.0 <= float(prior_range[0]) <= 1.0 <= float(prior_range[1])
    if not ok:
        raise DecisionConfigError(
            f"actions.catalogue.{name}.prior_range: give [low, high] with 0 <= low <= 1 <= high, got "
            f"{list(prior_range)}"
        )


@dataclass(frozen=True)
class CorrectiveAction:
    """An action that addresses why an at-risk customer may leave."""

    name: str
    cost: str | float  # SQL over the features, or a number
    save_rate: Mapping[
        str, float
    ]  # reason family key -> share of would-be churners saved; 'default' required
    eligible: str = "TRUE"  # SQL condition over the features
    capacity: int | None = None  # at most this many selected per run (None: no limit)
    description: str = ""
    prior_range: Sequence[float] = (0.5, 1.5)  # interval of the assumed effect, x its point value
    kind: str = field(default="corrective", init=False)

    def __post_init__(self) -> None:
        check_prior_range(self.name, self.prior_range)
        if "default" not in self.save_rate:
            raise DecisionConfigError(f"actions.catalogue.{self.name}.save_rate: needs a 'default' rate")
        bad = {k: v for k, v in self.save_rate.items() if not 0.0 <= float(v) <= 1.0}
        if bad:
            raise DecisionConfigError(
                f"actions.catalogue.{self.name}.save_rate: rates must be in [0, 1]: {bad}"
            )

    def applies_to(self, customers: Customers, low_risk_below: float) -> np.ndarray:
        """Corrective actions are for customers at risk."""
        return customers.p_churn >= low_risk_below

    def rate_for(self, customers: Customers) -> np.ndarray:
        """The save rate for each customer: the best rate among their listed reasons, else the default."""
        default = float(self.save_rate["default"])
        codes = customers.reason_codes
        if codes is None or codes.size == 0:
            return np.full(len(customers.p_churn), default)
        by_family = np.array(
            [float(self.save_rate.get(k, default)) for k in customers.reason_families] + [default]
        )
        rates = by_family[np.where(codes >= 0, codes, len(by_family) - 1)]
        return np.maximum(rates.max(axis=1), default)

    def expected_net_value(
        self, customers: Customers, cost: np.ndarray, value: ValueParameters
    ) -> np.ndarray:
        """p_churn * clv * save_rate - cost."""
        rate = self.rate_for(customers)
        return customers.p_churn * customers.clv * rate - cost


@dataclass(frozen=True)
class LadderIntervention:
    """An action that moves a low-risk customer up a rung of the loyalty ladder."""

    name: str
    cost: str | float
    from_rungs: Sequence[str]  # rungs the intervention is offered to
    target_rung: str  # the rung it moves a customer to
    conversion_rate: float  # share of customers offered it who move up
    churn_multiplier: float = 1.0  # churn probability after the move, relative to before
    revenue_uplift: float = 0.0  # monthly revenue added by the move (e.g. a cross-sold product)
    eligible: str = "TRUE"
    capacity: int | None = None
    description: str = ""
    prior_range: Sequence[float] = (0.5, 1.5)  # interval of the assumed effect, x its point value
    kind: str = field(default="ladder", init=False)

    def __post_init__(self) -> None:
        check_prior_range(self.name, self.prior_range)
        if not 0.0 <= float(self.conversion_rate) <= 1.0 or float(self.churn_multiplier) < 0.0:
            raise DecisionConfigError(
                f"actions.catalogue.{self.name}: conversion_rate must be in [0, 1] and churn_multiplier >= 0"
            )
        if not self.from_rungs:
            raise DecisionConfigError(f"actions.catalogue.{self.name}.from_rungs: name at least one rung")

    def applies_to(self, customers: Customers, low_risk_below: float) -> np.ndarray:
        """Ladder interventions are for low-risk customers standing on one of `from_rungs`."""
        on_rung = np.isin(customers.ladder_rung.astype(object), list(self.from_rungs))
        return (customers.p_churn < low_risk_below) & on_rung

    def expected_net_value(
        self, customers: Customers, cost: np.ndarray, value: ValueParameters
    ) -> np.ndarray:
        """conversion_rate * (CLV after the move - clv) - cost."""
        moved = value.moved_lifetime_value(
            customers.p_churn,
            np.nan_to_num(customers.monthly_revenue, nan=0.0) + float(self.revenue_uplift),
            customers.survival,
            float(self.churn_multiplier),
        )
        return float(self.conversion_rate) * (moved - customers.clv) - cost


Action = CorrectiveAction | LadderIntervention


@dataclass(frozen=True)
class Choice:
    """The best action of each customer (index into the catalogue, -1 for none), its cost and value."""

    action: np.ndarray
    cost: np.ndarray
    expected_net_value: np.ndarray


def expected_net_values(
    catalogue: Sequence[Action],
    customers: Customers,
    eligible: np.ndarray,
    costs: np.ndarray,
    value: ValueParameters,
    low_risk_below: float,
) -> np.ndarray:
    """(n, actions) expected net values, NaN where an action is not eligible or does not apply.

    `eligible` and `costs` are (n, actions): the configured eligibility rule (with the contact rule) and
    the cost expression evaluated per customer; a missing cost makes the action ineligible.
    """
    n = len(customers.p_churn)
    values = np.full((n, len(catalogue)), np.nan)
    for j, action in enumerate(catalogue):
        usable = eligible[:, j] & ~np.isnan(costs[:, j]) & action.applies_to(customers, low_risk_below)
        if usable.any():
            values[:, j] = np.where(usable, action.expected_net_value(customers, costs[:, j], value), np.nan)
    return values


def choose_actions(values: np.ndarray, costs: np.ndarray) -> Choice:
    """Each customer's action with the highest expected net value (ties: the one listed first)."""
    n = values.shape[0]
    has_any = ~np.isnan(values).all(axis=1) if values.shape[1] else np.zeros(n, dtype=bool)
    best = np.full(n, -1)
    if has_any.any():
        best[has_any] = np.nanargmax(values[has_any], axis=1)
    rows = np.arange(n)
    pick = np.where(best >= 0, best, 0)
    chosen_value = np.where(best >= 0, values[rows, pick] if values.shape[1] else np.nan, np.nan)
    chosen_cost = np.where(best >= 0, costs[rows, pick] if costs.shape[1] else np.nan, np.nan)
    return Choice(best, chosen_cost, chosen_value)


def select_within_budget(
    action: np.ndarray,
    cost: np.ndarray,
    value: np.ndarray,
    budget: float,
    capacity: Mapping[int, int | None],
    method: str = "greedy",
    time_limit_seconds: float = 60.0,
) -> np.ndarray:
    """Which customers to act on: only positive expected net value, total cost within `budget`, at most
    `capacity[a]` customers for action `a`.

    The arrays are in priority order (highest expected net value first).

    - `greedy`: walk the priority order and take each customer whose action still fits the remaining budget
      and its capacity. Simple to explain (the list is worked from the top), but not always the best use of
      the budget: an expensive action can crowd out several cheaper ones worth more together.
    - `exact`: the 0/1 knapsack with capacity constraints, solved as a mixed-integer program (HiGHS through
      `scipy.optimize.milp`) over the customers an optimal selection may need (`undominated`): the largest
      total expected net value that fits. Bounded by `time_limit_seconds`: the best solution found by then is
      used (with a warning), or the greedy selection if none was found.
    """
    n = len(action)
    candidates = np.flatnonzero((action >= 0) & (value > 0) & (cost >= 0) & ~np.isnan(value))
    if not len(candidates) or budget <= 0:
        return np.zeros(n, dtype=bool)
    if method == "greedy":
        return _greedy_selection(action, cost, candidates, budget, capacity)
    if method == "exact":
        selected = _exact_selection(action, cost, value, candidates, budget, capacity, time_limit_seconds)
        if selected is None:
            log.warning(
                "the exact selection found no solution within %g s (actions.exact_time_limit_seconds); "
                "using the greedy selection instead",
                time_limit_seconds,
            )
            return _greedy_selection(action, cost, candidates, budget, capacity)
        return selected
    raise DecisionConfigError(f"actions.selection: unknown method {method!r}; use greedy or exact")


def _greedy_selection(
    action: np.ndarray,
    cost: np.ndarray,
    candidates: np.ndarray,
    budget: float,
    capacity: Mapping[int, int | None],
) -> np.ndarray:
    selected = np.zeros(len(action), dtype=bool)
    remaining = float(budget)
    left = {a: (None if c is None else int(c)) for a, c in capacity.items()}
    cheapest = float(np.min(cost[candidates]))
    for i in candidates:
        a, c = int(action[i]), float(cost[i])
        if c <= remaining and (left.get(a) is None or left[a] > 0):
            selected[i] = True
            remaining -= c
            if left.get(a) is not None:
                left[a] -= 1
            if remaining < cheapest:
                break
    return selected


def undominated(
    action: np.ndarray,
    cost: np.ndarray,
    value: np.ndarray,
    candidates: np.ndarray,
    budget: float,
    capacity: Mapping[int, int | None],
) -> np.ndarray:
    """The candidates an optimal selection may need; the others can be left out without losing value.

    Swapping a selected customer for an unselected one with the same action who costs no more and is worth no
    less keeps the selection within budget and capacity and is no worse. At most `limit` customers of an
    action can be selected (its capacity, and the budget over its cheapest cost), so a customer with at least
    `limit` such better customers is never needed. (Ties are ordered by value, then cost, then position, so
    of many identical customers the first `limit` stay.)
    """
    kept = []
    for a in np.unique(action[candidates]):
        items = candidates[action[candidates] == a]
        c, v = cost[items], value[items]
        cheapest = float(c.min())
        limit = len(items) if cheapest <= 0 else int(budget // cheapest)
        if capacity.get(int(a)) is not None:
            limit = min(limit, int(capacity[int(a)]))
        if len(items) > limit:
            items = items[fewer_betters_than(c, v, limit)]
        kept.append(items)
    return np.sort(np.concatenate(kept))


def fewer_betters_than(cost: np.ndarray, value: np.ndarray, limit: int) -> np.ndarray:
    """For each item, whether fewer than `limit` items come before it (higher value, then lower cost) and cost
    no more than it."""
    order = np.lexsort((np.arange(len(cost)), cost, -value))
    keep = np.zeros(len(cost), dtype=bool)
    if np.all(cost == cost[0]):
        keep[order[:limit]] = True
        return keep
    # Count, in that order, the earlier items costing no more (a Fenwick tree over the cost ranks).
    distinct = np.unique(cost)
    rank = np.searchsorted(distinct, cost, side="right")  # 1 .. len(distinct)
    tree = [0] * (len(distinct) + 1)
    for i in order:
        count, r = 0, int(rank[i])
        while r > 0:
            count += tree[r]
            r -= r & -r
        if count < limit:
            keep[i] = True
        r = int(rank[i])
        while r <= len(distinct):
            tree[r] += 1
            r += r & -r
    return keep


def _exact_selection(
    action: np.ndarray,
    cost: np.ndarray,
    value: np.ndarray,
    candidates: np.ndarray,
    budget: float,
    capacity: Mapping[int, int | None],
    time_limit_seconds: float,
) -> np.ndarray | None:
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_array, vstack

    candidates = undominated(action, cost, value, candidates, budget, capacity)
    m = len(candidates)
    rows = [csr_array(cost[candidates].reshape(1, -1))]
    upper = [float(budget)]
    for a, limit in capacity.items():
        if limit is not None:
            rows.append(csr_array((action[candidates] == a).astype(float).reshape(1, -1)))
            upper.append(float(limit))
    result = milp(
        c=-value[candidates],
        constraints=LinearConstraint(vstack(rows), -np.inf, np.asarray(upper)),
        integrality=np.ones(m),
        bounds=Bounds(0, 1),
        options={"time_limit": float(time_limit_seconds), "mip_rel_gap": 0.0},
    )
    if result.x is None:
        return None
    if result.status != 0:
        log.warning("exact selection stopped before proving optimality: %s", result.message)
    chosen = candidates[np.round(result.x) > 0.5]
    # The solver's feasibility tolerance could let the total cost pass the budget by a rounding error: drop
    # the least valuable picks until it fits.
    chosen = chosen[np.argsort(-value[chosen], kind="stable")]
    while len(chosen) and float(cost[chosen].sum()) > budget:
        chosen = chosen[:-1]
    selected = np.zeros(len(action), dtype=bool)
    selected[chosen] = True
    return selected
