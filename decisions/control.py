"""Control groups: a random share of the customers selected for each action is held out and not contacted, so
every campaign measures what its actions do (`make readout`, decisions.readout).

Within each action, `hold_out` draws the control group among the selected customers at random: the number held
out is `share` x the action's selected customers, rounded up or down at random so that every selected customer
is held out with probability exactly `share`. The draw is seeded by (seed, as_of) and made in customer_id
order, so a rerun of one date holds out the same customers (the history stays idempotent).

`actions.control.spend` says what the budget pays for:
- `budget` (default): the selection is made with budget / (1 - share) and capacities / (1 - share), so the
  treated customers spend about the budget; controls are not contacted and cost nothing. When the draw leaves
  the treated over the budget (or an action's treated over its capacity), the lowest-priority selected
  customers are dropped from the selection until they fit (`within_budget`);
- `selection`: the selection is made with the budget and capacities, and 1 - share of it is treated.

`share` 0 turns control groups off: every selected customer is treated (probability 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from decisions.errors import DecisionConfigError

TREATED, CONTROL = "treated", "control"
SPENDS = ("budget", "selection")


@dataclass(frozen=True)
class ControlSettings:
    """The control group's share of each action's selection, its seed, and what the budget pays for."""

    share: float = 0.10
    seed: int = 0
    spend: str = "budget"

    def __post_init__(self) -> None:
        share = self.share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0.0 <= share < 1.0:
            raise DecisionConfigError(
                f"actions.control.share: {share!r} is not a share in [0, 1) (0: no controls)"
            )
        if self.spend not in SPENDS:
            raise DecisionConfigError(f"actions.control.spend: {self.spend!r} is not budget or selection")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise DecisionConfigError(f"actions.control.seed: {self.seed!r} is not a whole number >= 0")

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | None) -> ControlSettings:
        """The settings of an `actions.control` node; none: no control groups."""
        if node is None:
            return cls(share=0.0)
        return cls(
            share=node.get("share", 0.10), seed=node.get("seed", 0), spend=str(node.get("spend", "budget"))
        )

    @property
    def scale(self) -> float:
        """How much larger the selection is than what the treated spend: 1 / (1 - share) with spend 'budget'."""
        return 1.0 / (1.0 - self.share) if self.spend == "budget" else 1.0

    def selection_budget(self, budget: float) -> float:
        """The budget the selection is made with."""
        return float(budget) * self.scale

    def selection_capacities(self, capacity: Mapping[int, int | None]) -> dict[int, int | None]:
        """The capacities the selection is made with (None: no limit)."""
        return {
            a: None if c is None else int(math.floor(int(c) * self.scale + 1e-9)) for a, c in capacity.items()
        }


def hold_out(
    selected: np.ndarray, action: np.ndarray, customer_id: np.ndarray, share: float, seed: int, as_of: date
) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's assignment ('treated', 'control', or None when not selected) and its probability of
    being treated given that they were selected for their action (1 - share; NaN when not selected).

    Random within each action: of the n customers selected for an action, floor(share n) are held out, one
    more with probability frac(share n), chosen uniformly; seeded by (seed, as_of), in customer_id order."""
    selected = np.asarray(selected, dtype=bool)
    action = np.asarray(action)
    n = len(selected)
    assignment = np.full(n, None, dtype=object)
    probability = np.full(n, np.nan)
    assignment[selected] = TREATED
    probability[selected] = 1.0 - float(share)
    if share <= 0 or not selected.any():
        return assignment, probability
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), as_of.toordinal()]))
    chosen = np.flatnonzero(selected)
    for a in sorted(set(action[chosen].tolist()), key=str):
        members = chosen[action[chosen] == a]
        members = members[np.argsort(np.asarray(customer_id)[members], kind="stable")]
        expected = float(share) * len(members)
        count = int(math.floor(expected)) + int(rng.random() < expected - math.floor(expected))
        assignment[rng.permutation(members)[:count]] = CONTROL
    return assignment, probability


def within_budget(
    assignment: np.ndarray,
    action: np.ndarray,
    cost: np.ndarray,
    budget: float,
    capacity: Mapping[int, int | None],
) -> np.ndarray:
    """`assignment` (arrays in priority order) with the lowest-priority selected customers dropped (None) until
    the treated fit the budget and each action's treated fit its capacity: per action, the longest run from
    the top whose treated stay within the capacity; then the longest run from the top whose treated cost stays
    within the budget. Controls cost nothing and are dropped only with the tail they stand in."""
    kept = np.asarray(assignment, dtype=object).copy()
    treated = kept == TREATED
    for a, limit in capacity.items():
        if limit is not None:
            counted = np.cumsum(treated & (action == a))
            kept[(action == a) & (counted > int(limit))] = None
    treated = kept == TREATED
    spent = np.cumsum(np.where(treated, np.nan_to_num(np.asarray(cost, dtype=float)), 0.0))
    over = np.flatnonzero(spent > float(budget) + 1e-9)
    if len(over):
        kept[over[0] :] = None
    return kept
