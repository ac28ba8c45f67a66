"""What each action is worth to each customer, from evidence where there is some: the value gain, its interval,
the effect on churn, where the effect comes from (`learned` or `assumed`) and the customer's uplift segment.

Per action the source is
- `learned`: the action has an uplift model in the scored model's effects bundle (`models.effects.Effects.uplift`,
  an `ActionUplift` fitted on the business's randomised campaigns). Its estimates per customer are
  `churn_h` (change in the probability of churning over the label horizon; negative = good), `margin_w` (change
  in discounted margin over the first W = `uplift.value_window_months` months), `margin_end` (change in the
  margin of month W, 0 for a customer gone by then) and `cost` (what the action costs, treated minus control:
  its expected cost, where the campaigns record costs). The value gain is

      gain = margin_w + margin_end x annuity,   annuity = sum_{t > W} S(t) / S(W) (1 + d) ** -t

  the window's margin effect plus the month-W margin the action changes (a customer kept, a product added)
  carried over the rest of the customer's lifetime (their own survival after month W, discounted to today;
  with a constant retention r, annuity = (1 + d) ** -W x r / (1 + d - r)): the window counts what happens inside
  it, the annuity only what comes after, so nothing is counted twice. A bundle without `margin_end` (trained
  before it was learned) carries the churn effect instead: gain = margin_w + (-churn_h) x m x annuity, a customer
  kept worth the margin m they pay today. The interval is the comonotone one: low = margin_w.low +
  margin_end.low x annuity, high likewise. The cost is the learned expected cost (never below 0) where the
  bundle has it, else the configured cost (`action_cost`, what the budget counts either way).
- `assumed`: no uplift model (no campaign history for it, or too little). The configured prior of today's rule:
  corrective p_churn x clv x save_rate, ladder conversion_rate x (CLV' - clv) (`decisions.actions`), with the
  interval `prior_range` x that point value (default 0.5 .. 1.5); its effect on churn is -p_churn x save_rate,
  or conversion_rate x p_churn x (churn_multiplier - 1), with the same range.

ENV = gain - cost (low/high: the gain's interval minus the cost; the cost: the learned expected cost of a learned
action with one, else the configured cost). An action is not eligible for a customer
whose estimated effect is harmful or worthless: a gain with mean <= 0, or a learned churn effect whose whole
interval is above 0 (contact raises churn: a sleeping dog), so no selected customer has a negative estimated
effect. (An action can raise a customer's value with a churn effect not told apart from 0: a product added.) The low-risk split (`actions.low_risk_below`: corrective
at p_churn >= it, ladder below) holds for assumed priors only; a learned effect says itself whom an action helps
(a ladder intervention still needs one of its `from_rungs`).

Uplift segment, from the churn-effect interval of the customer's action (the best eligible one; with none, the
configured-eligible action with the lowest churn effect) and p_churn:
  persuadable: high < 0 (the action lowers churn);  sleeping_dog: low > 0 (contact raises churn);
  otherwise the effect is not told apart from 0: lost_cause when p_churn >= low_risk_below (at risk, and the
  action will not change it), sure_thing below it (stays anyway). No action configured-eligible: empty.
An assumed prior always reads as persuadable: that is what it assumes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from decisions.actions import Action, Customers
from decisions.errors import DecisionConfigError
from decisions.value import ValueParameters, monthly_discount_rate, monthly_retention

LEARNED, ASSUMED = "learned", "assumed"
SEGMENTS = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")
CHURN, MARGIN, MARGIN_END, COST = (
    "churn_h",
    "margin_w",
    "margin_end",
    "cost",
)  # uplift outcomes (models/uplift.py)


@dataclass(frozen=True)
class Estimate:
    """Per customer: the point estimate and its interval."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


@dataclass(frozen=True)
class ActionValues:
    """Every customer x action: value gain and churn effect (n, k) with intervals, the ENV, whether the action
    may be chosen for the customer, and each action's source (k)."""

    gain: Estimate
    churn: Estimate
    env: Estimate  # gain - cost; NaN where not usable
    usable: np.ndarray  # (n, k) bool: eligible, costed, applies, and neither harmful nor worthless
    candidate: np.ndarray  # (n, k) bool: eligible by the configured rules and costed (for the segment)
    source: tuple[str, ...]


def sources(catalogue: Sequence[Action], uplift: Mapping[str, Any]) -> tuple[str, ...]:
    """`learned` for each action with an uplift model in `uplift`, else `assumed`."""
    return tuple(LEARNED if a.name in uplift else ASSUMED for a in catalogue)


def annuity_after(customers: Customers, value: ValueParameters, window_months: int) -> np.ndarray:
    """Per customer alive at month W: sum over t > W of S(t) / S(W) (1 + d) ** -t, what 1 a month from then on is
    worth today (see the module docstring)."""
    d = monthly_discount_rate(value.annual_discount_rate)
    w = int(window_months)
    if customers.survival is None:
        r = monthly_retention(customers.p_churn, value.horizon_days)
        return (1.0 + d) ** -w * r / (1.0 + d - r)
    survival = np.clip(np.asarray(customers.survival, dtype=float), 0.0, 1.0)
    if w >= survival.shape[1]:
        return np.zeros(len(survival))
    at_w = survival[:, w - 1] if w > 0 else np.ones(len(survival))
    later = survival[:, w:] @ ((1.0 + d) ** -np.arange(w + 1, survival.shape[1] + 1, dtype=float))
    return np.divide(later, at_w, out=np.zeros(len(survival)), where=at_w > 0)


def tail_value(
    customers: Customers, value: ValueParameters, window_months: int, annuity: np.ndarray | None = None
) -> np.ndarray:
    """Discounted margin from month W + 1 on of a customer alive at month W paying today's margin (`annuity`:
    `annuity_after`, when already computed)."""
    margin = value.margin_rate * np.nan_to_num(np.asarray(customers.monthly_revenue, dtype=float), nan=0.0)
    return margin * (annuity_after(customers, value, window_months) if annuity is None else annuity)


def learned_value(
    uplift: Any, features: pd.DataFrame, tail: np.ndarray, annuity: np.ndarray
) -> tuple[Estimate, Estimate, np.ndarray | None]:
    """(gain, churn effect, expected cost or None) of one learned action (an `ActionUplift`) for the customers of
    `features`; `tail` = `tail_value` (a bundle without margin_end), `annuity` = `annuity_after`."""
    missing = sorted(set(uplift.features) - set(features.columns))
    if missing:
        raise DecisionConfigError(
            f"the uplift model of {uplift.action} reads feature(s) {', '.join(missing)} that scoring did not build: "
            f"retrain it with the churn model's features"
        )
    effects = uplift.effects(features)
    churn, margin = effects[CHURN], effects[MARGIN]
    if MARGIN_END in effects:
        end = effects[MARGIN_END]
        gain = Estimate(margin.mean + end.mean * annuity, margin.low + end.low * annuity,
                        margin.high + end.high * annuity)  # fmt: skip
    else:
        gain = Estimate(
            margin.mean - churn.mean * tail, margin.low - churn.high * tail, margin.high - churn.low * tail
        )
    cost = np.maximum(effects[COST].mean, 0.0) if COST in effects else None
    return gain, Estimate(churn.mean, churn.low, churn.high), cost


def assumed_value(
    action: Action, customers: Customers, cost: np.ndarray, value: ValueParameters
) -> tuple[Estimate, Estimate]:
    """(gain, churn effect) of one action's configured prior, with its `prior_range` as interval."""
    point = action.expected_net_value(customers, np.zeros(len(cost)), value)
    if action.kind == "corrective":
        churn = -customers.p_churn * action.rate_for(customers)
    else:
        churn = float(action.conversion_rate) * customers.p_churn * (float(action.churn_multiplier) - 1.0)
    low, high = (float(x) for x in action.prior_range)
    ranged = [np.minimum(point * low, point * high), np.maximum(point * low, point * high)]
    return Estimate(point, *ranged), Estimate(churn, np.minimum(churn * low, churn * high),
                                              np.maximum(churn * low, churn * high))  # fmt: skip


def action_values(
    catalogue: Sequence[Action],
    customers: Customers,
    eligible: np.ndarray,
    costs: np.ndarray,
    value: ValueParameters,
    low_risk_below: float,
    uplift: Mapping[str, Any] | None = None,
    window_months: int = 12,
) -> ActionValues:
    """Value gain, churn effect and ENV of every action for every customer (module docstring); `eligible` and
    `costs` (n, k) are the configured rules evaluated per customer, `uplift` the learned actions by name and
    `customers.features` the rows their models read."""
    uplift = dict(uplift or {})
    n, k = len(customers.p_churn), len(catalogue)
    arrays = {key: np.full((n, k), np.nan) for key in ("g", "gl", "gh", "c", "cl", "ch")}
    usable = np.zeros((n, k), dtype=bool)
    candidate = eligible & ~np.isnan(costs)
    source = sources(catalogue, uplift)
    annuity = annuity_after(customers, value, window_months) if uplift else None
    tail = tail_value(customers, value, window_months, annuity) if uplift else None
    spend = np.array(costs, dtype=float)  # what ENV subtracts: the learned expected cost where there is one
    for j, action in enumerate(catalogue):
        if not candidate[:, j].any():
            continue
        if source[j] == LEARNED:
            gain, churn, expected = learned_value(uplift[action.name], customers.features, tail, annuity)
            if expected is not None:
                spend[:, j] = np.where(np.isnan(costs[:, j]), np.nan, expected)
            applies = (
                np.isin(customers.ladder_rung.astype(object), list(action.from_rungs))
                if action.kind == "ladder"
                else np.ones(n, dtype=bool)
            )
            harmless = ~(churn.low > 0)  # not a sleeping dog by its interval (contact raises churn)
        else:
            gain, churn = assumed_value(action, customers, costs[:, j], value)
            applies, harmless = action.applies_to(customers, low_risk_below), np.ones(n, dtype=bool)
        for key, array in zip(arrays, (gain.mean, gain.low, gain.high, churn.mean, churn.low, churn.high),
                              strict=True):  # fmt: skip
            arrays[key][:, j] = array
        usable[:, j] = candidate[:, j] & applies & harmless & (gain.mean > 0)
    cost = np.where(usable, spend, np.nan)
    gain = Estimate(arrays["g"], arrays["gl"], arrays["gh"])
    env = Estimate(*(np.where(usable, g, np.nan) - cost for g in (gain.mean, gain.low, gain.high)))
    return ActionValues(
        gain, Estimate(arrays["c"], arrays["cl"], arrays["ch"]), env, usable, candidate, source
    )


def uplift_segment(
    p_churn: np.ndarray, low: np.ndarray, high: np.ndarray, low_risk_below: float
) -> np.ndarray:
    """Each customer's segment from the churn-effect interval of their action (NaN: no action -> None)."""
    segment = np.where(np.asarray(p_churn) >= low_risk_below, "lost_cause", "sure_thing").astype(object)
    segment[high < 0] = "persuadable"
    segment[low > 0] = "sleeping_dog"
    segment[np.isnan(low) | np.isnan(high)] = None
    return segment


def segment_action(values: ActionValues, best: np.ndarray) -> np.ndarray:
    """The action whose interval decides each customer's segment: `best` (the chosen action, -1: none), else the
    configured-eligible action with the lowest churn effect; -1 when there is none."""
    churn = np.where(values.candidate, values.churn.mean, np.inf)
    lowest = np.argmin(churn, axis=1) if churn.shape[1] else np.full(len(best), -1)
    fallback = np.where(np.isfinite(churn.min(axis=1)) if churn.shape[1] else False, lowest, -1)
    return np.where(best >= 0, best, fallback)


def pick(matrix: np.ndarray, column: np.ndarray) -> np.ndarray:
    """matrix[i, column[i]] per row, NaN where column is -1."""
    if not matrix.shape[1]:
        return np.full(len(column), np.nan)
    rows = np.arange(len(column))
    return np.where(column >= 0, matrix[rows, np.maximum(column, 0)], np.nan)
