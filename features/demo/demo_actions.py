"""The true effect of every retention action of the demo business (docs/demo_data.md, "Actions and their true
effects").

An action works on a *target group* defined by state the feature table exposes at the contact's month start
(:data:`TARGETS`, each named with the feature that shows it). A corrective action, if accepted, multiplies the
monthly churn hazard for `effect_months` months from the month after the contact (`targeted_multiplier` on
target, `untargeted_multiplier` off it). A ladder intervention (and `cross_sell_offer`), if accepted, makes an
observable *move* (:data:`MOVES`: a new product, repeat orders, a referral, partner status) that the ladder rules
(conf/ladder/default.yaml) read and that changes the hazard and revenue through the mechanism's own terms.
Contacting a sleeping dog replaces all of this with the sleeping-dog effect (dated.Mechanism).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

# The simulation state a target or move reads: features.demo.dated._ChunkSimulation, which imports this module
# (so it is not imported here, not even for type checking: no import circle).
_ChunkSimulation = Any


@dataclass(frozen=True)
class ActionTruth:
    """One retention action of the demo and its true, heterogeneous effect.

    ``cost`` is paid on acceptance (plus the mechanism's contact cost on every contact), and
    ``discount_share * monthly revenue * discount_months`` on top (the catalogue's discount:
    0.2 x monthly revenue x 6). ``acceptance`` is P(accept) on target, ``untargeted_acceptance`` off target
    (None: the same); for a ladder intervention acceptance is the conversion probability of its ``move``.
    """

    name: str
    cost: float
    acceptance: float
    targeted_multiplier: float = 1.0
    untargeted_multiplier: float = 1.0
    effect_months: int = 0
    kind: Literal["corrective", "ladder"] = "corrective"
    target: str = "nobody"
    move: str | None = None
    untargeted_acceptance: float | None = None
    discount_share: float = 0.0
    discount_months: int = 0

    def __post_init__(self) -> None:
        """Refuse unknown targets, moves or kinds and out-of-range probabilities, naming the action."""
        where = f"Mechanism.actions[{self.name}]"
        if self.kind not in ("corrective", "ladder"):
            raise ValueError(f"{where}.kind must be corrective or ladder, got {self.kind!r}")
        if self.target not in TARGETS:
            raise ValueError(f"{where}.target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.move is not None and self.move not in MOVES:
            raise ValueError(f"{where}.move must be one of {', '.join(MOVES)} or null, got {self.move!r}")
        for name in ("acceptance", "untargeted_acceptance"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{where}.{name} must be a probability in [0, 1]")
        if min(self.targeted_multiplier, self.untargeted_multiplier) <= 0 or self.effect_months < 0:
            raise ValueError(f"{where}: multipliers must be positive and effect_months non-negative")

    @property
    def off_target_acceptance(self) -> float:
        """P(accept) off target."""
        return self.acceptance if self.untargeted_acceptance is None else self.untargeted_acceptance


RetentionAction = ActionTruth  # the name before churnwise-demo/2.0.0; kept for one release


def _tenure_days(sim: _ChunkSimulation, who: np.ndarray) -> np.ndarray:
    """Days from the first subscription start to the month start (the feature `tenure_days`)."""
    return sim.month_start - sim.first_start[who]


def _price_increase(sim: _ChunkSimulation, who: np.ndarray) -> np.ndarray:
    since = sim.month_start - sim.last_increase_day[who]
    return (since > 0) & (since <= sim.mech.target_increase_days)


# Who an action works on, from state at the contact's month start: (simulation, customers) -> mask.
TARGETS: dict[str, Callable[[_ChunkSimulation, np.ndarray], np.ndarray]] = {
    # open_complaints > 0 OR complaints_90d > 0 (a complaint still open, or opened in complaint_window_days)
    "complaint": lambda sim, who: (sim.still_open[who] > 0) | (sim.recent_complaints[who] > 0),
    # price_increase_pct_90d > 0 (a price rise within target_increase_days)
    "price_increase": _price_increase,
    # active_products = 1 (so bundled_products = 0, categories_held = 1)
    "single_product": lambda sim, who: sim.held[who].sum(axis=1) == 1,
    # month_to_month_share = 1
    "month_to_month": lambda sim, who: sim.term[who] == 0,
    # categories_held <= 2
    "few_categories": lambda sim, who: sim.held[who].sum(axis=1) <= 2,
    # categories_held <= 1
    "one_category": lambda sim, who: sim.held[who].sum(axis=1) <= 1,
    # tenure_days < target_new_customer_days
    "new_customer": lambda sim, who: _tenure_days(sim, who) < sim.mech.target_new_customer_days,
    # rung client or supporter: tenure_days >= target_established_days OR categories_held >= 2
    "established": lambda sim, who: (
        (_tenure_days(sim, who) >= sim.mech.target_established_days) | (sim.held[who].sum(axis=1) >= 2)
    ),
    # segment IN ('small_business', 'enterprise') AND is_partner = 0
    "business": lambda sim, who: (sim.segment[who] > 0) & (sim.partner_since[who] == sim.NEVER),
    "everyone": lambda sim, who: np.ones(who.size, dtype=bool),
    "nobody": lambda sim, who: np.zeros(who.size, dtype=bool),
}


def _add_product(sim: _ChunkSimulation, who: np.ndarray, day: np.ndarray, until: np.ndarray) -> np.ndarray:
    return sim.add_products(who, day, bundle_it=np.ones(who.size, dtype=bool), rng=sim.move_rng)


def _repeat_orders(sim: _ChunkSimulation, who: np.ndarray, day: np.ndarray, until: np.ndarray) -> np.ndarray:
    count = sim.mech.programme_orders
    row = np.repeat(np.arange(who.size), count)
    span = (until - day + 1)[row]
    order_day = day[row] + np.floor(sim.move_rng.random(row.size) * span).astype(np.int64)
    sim.add_orders(who[row], order_day, np.full(row.size, sim.ACCESSORIES, dtype=np.int64), sim.move_rng)
    sim.member_since[who] = np.minimum(sim.member_since[who], day)
    return who


def _referral(sim: _ChunkSimulation, who: np.ndarray, day: np.ndarray, until: np.ndarray) -> np.ndarray:
    sim.referrals.add(cust=who, day=day)
    np.add.at(sim.referrals_made, who, 1)
    return who


def _partner_move(sim: _ChunkSimulation, who: np.ndarray, day: np.ndarray, until: np.ndarray) -> np.ndarray:
    new = sim.partner_since[who] == sim.NEVER
    sim.partner_since[who[new]] = day[new]
    return who[new]


# The observable state change of an accepted move, on the contact day: (simulation, customers, contact day,
# last day live this month) -> the customers whose state changed. A move draws only from `sim.move_rng` (the
# simulation's stream in the generator; its own in the truth's state paths, so that the arms of
# features.demo.truth consume the main stream alike).
MOVES: dict[str, Callable[[_ChunkSimulation, np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    # a new subscription row in a category not held, sold as a bundle with what they hold (categories_held,
    # bundled_products, monthly_revenue rise; hazard: cross_sell_depth, bundle_held)
    "add_product": _add_product,
    # `programme_orders` accessory orders before the month ends (orders_365d >= 2: rung client) and
    # programme membership (hazard: programme_member)
    "repeat_orders": _repeat_orders,
    # a referral row on the contact day (referrals_made_365d >= 1: rung advocate; hazard: advocate)
    "referral": _referral,
    # partner_since = the contact day (is_partner = 1: rung partner; hazard: partner)
    "partner": _partner_move,
}


# The default catalogue (the names and costs of conf/actions/default.yaml).
DEFAULT_ACTIONS: tuple[ActionTruth, ...] = (
    ActionTruth("service_recovery_call", 15.0, 0.60, 0.55, 0.95, 3, target="complaint"),
    ActionTruth("price_lock", 25.0, 0.35, 0.65, 0.95, 12, target="price_increase"),
    ActionTruth(
        "discount", 0.0, 0.50, 0.60, 0.90, 6, target="price_increase", discount_share=0.2, discount_months=6
    ),
    ActionTruth("bundle_offer", 40.0, 0.25, 0.60, 0.95, 12, target="single_product"),
    ActionTruth(
        "cross_sell_offer",
        30.0,
        0.25,
        target="few_categories",
        move="add_product",
        untargeted_acceptance=0.05,
    ),
    ActionTruth("contract_upgrade", 30.0, 0.30, 0.55, 1.00, 12, target="month_to_month"),
    ActionTruth("loyalty_enrolment", 10.0, 0.45, 1.00, 1.00, 0, target="nobody"),
    ActionTruth("onboarding_education", 12.0, 0.50, 0.70, 1.00, 3, target="new_customer"),
    ActionTruth("loyalty_programme", 8.0, 0.15, kind="ladder", target="everyone", move="repeat_orders"),
    ActionTruth(
        "cross_sell_programme",
        30.0,
        0.08,
        kind="ladder",
        target="one_category",
        move="add_product",
        untargeted_acceptance=0.02,
    ),
    ActionTruth(
        "referral_programme",
        5.0,
        0.08,
        kind="ladder",
        target="established",
        move="referral",
        untargeted_acceptance=0.02,
    ),
    ActionTruth(
        "partner_programme",
        150.0,
        0.03,
        kind="ladder",
        target="business",
        move="partner",
        untargeted_acceptance=0.0,
    ),
)
