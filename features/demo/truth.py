"""The true value of every retention action of the demo, per customer, at a date (docs/demo_data.md, "Truth
table"): the probability of churning within a horizon and within 12 months, and the expected discounted margin,
with no action and under each action of the catalogue, and what the business would pay for it.

Exact by construction, up to Monte-Carlo error over the customer's future state (complaints, engagement, price
reviews, renewals, product changes): every customer active at the date is copied ``paths`` times and their state
is simulated forward with the generator's own monthly step, with churn switched off (the hazard is recorded
instead), no campaigns and no logs. Survival is then analytic, S(t) = prod_{s<t} (1 - h_s), so churn itself adds
no noise. An accepted corrective action only multiplies the hazard for its effect months, so its arm is the
no-action path with that factor (before the ``max_hazard`` cap); a sleeping dog's contact likewise. Acceptance
enters as a mixture: value = acceptance x value(accepted) + (1 - acceptance) x value(no action) (a sleeping dog:
the sleeping-dog value whatever they answer). Only actions whose acceptance makes a move (a new product, orders,
a referral, partner status) get their own state path, on the same seeds; their moves draw from their own stream
so that the paths stay on the same main stream until the move changes what the month does.

The simulation object is features.demo.dated._ChunkSimulation (which imports this module, so it is not
imported here: no import circle).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from features.demo.demo_actions import TARGETS

_ChunkSimulation = Any
_TRUTH_STREAM = 7  # the truth's state paths: SeedSequence([seed, chunk, 7, truth seed, first path of batch])
_BATCH_ROWS = 400_000  # copies of a customer simulated at a time (a batch of paths; bounds the memory)
_EFFECT_KEYS = ("p_churn_horizon", "p_churn_12m", "expected_margin")

ACTION_VALUES_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("as_of", pa.date32()),
        ("action", pa.string()),
        ("p_churn_horizon", pa.float64()),
        ("p_churn_12m", pa.float64()),
        ("expected_margin", pa.float64()),
        ("expected_cost", pa.float64()),
        ("targeted", pa.bool_()),
        ("sleeping_dog", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class TruthSpec:
    """How the true action values are computed (`data.generator.truth`): churn within ``horizon_months``,
    margin ``margin_rate`` x recurring revenue over ``value_months`` discounted monthly at
    ``annual_discount_rate`` (as decisions/value.py), averaged over ``paths`` simulated futures (``seed``)."""

    horizon_months: int = 3
    value_months: int = 120
    margin_rate: float = 0.35
    annual_discount_rate: float = 0.10
    paths: int = 16
    seed: int = 7

    def __post_init__(self) -> None:
        """Refuse values that make no sense, naming the field."""
        for name in ("horizon_months", "value_months", "paths", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < (name != "seed"):
                raise ValueError(f"truth.{name} must be a {'non-negative' if name == 'seed' else 'positive'} "
                                 f"integer, got {value!r}")  # fmt: skip
        if not 0.0 <= self.margin_rate <= 1.0:
            raise ValueError(f"truth.margin_rate must be in [0, 1], got {self.margin_rate!r}")
        if not 0.0 <= self.annual_discount_rate < 10.0:
            raise ValueError(
                f"truth.annual_discount_rate must be in [0, 10), got {self.annual_discount_rate!r}"
            )


# Moves whose only effect on the future is a hazard term of the logit (the state they set is read by nothing
# else that shapes the path): their accepted arm is the no-action path with that term switched on from the month
# after the contact, wherever the path does not have it yet. move -> (Mechanism coefficient, "not yet" test).
_LOGIT_MOVES: dict[str, tuple[str, Callable[[_ChunkSimulation, np.int64], np.ndarray]]] = {
    "repeat_orders": ("programme_member", lambda sim, start: sim.member_since >= start),
    "referral": ("advocate", lambda sim, start: sim.referrals_made == 0),
    "partner": ("partner", lambda sim, start: sim.partner_since >= start),
}


@dataclass(frozen=True)
class _Arm:
    """How an arm's hazard differs from its path's: ``factor`` in months 1..``effect_months`` after the contact,
    and the logit term of a move (``shift``: a key of :data:`_LOGIT_MOVES`) from month 1."""

    factor: np.ndarray | float = 1.0
    effect_months: np.ndarray | int = 0
    shift: str | None = None


def action_values(
    sim: _ChunkSimulation,
    spec: TruthSpec,
    actions: Sequence[str] | None = None,
    *,
    standard_errors: dict[str, np.ndarray] | None = None,
) -> pa.Table:
    """The true action values (:data:`ACTION_VALUES_SCHEMA`) of the customers of ``sim`` active at the start of
    the month it would simulate next, for arm ``none`` and each of ``actions`` (default: the catalogue).
    ``sim`` is not changed. If ``standard_errors`` is given, it receives the Monte-Carlo standard error of
    each value column (``<column>`` -> one value per output row) for the documentation's measurement."""
    mech = sim.mech
    names = [a.name for a in mech.actions]
    chosen = names if actions is None else list(actions)
    unknown = [a for a in chosen if a not in names]
    if unknown:
        raise ValueError(
            f"actions: unknown action(s) {', '.join(map(repr, unknown))}; the catalogue: {', '.join(names)}"
        )
    month = sim.next_month
    as_of = sim.cal.month_start[month]
    active = np.flatnonzero(
        (sim.status == sim.ACTIVE) | ((sim.status == sim.PENDING) & (sim.first_start <= as_of))
    )
    if active.size == 0:
        return ACTION_VALUES_SCHEMA.empty_table()
    months = max(spec.value_months, spec.horizon_months, 12)

    def accepted_arm(truth: Any) -> Callable[[dict[str, Any]], _Arm]:
        index = names.index(truth.name)
        return lambda at: _Arm(
            np.where(at["targeted"][index], truth.targeted_multiplier, truth.untargeted_multiplier),
            truth.effect_months,
            truth.move if truth.move in _LOGIT_MOVES else None,
        )

    arms: dict[str, Callable[[dict[str, Any]], _Arm]] = {
        "none": lambda at: _Arm(),
        "sleeping_dog": lambda at: _Arm(mech.sleeping_dog_multiplier, mech.sleeping_dog_months),
    }
    own_paths: dict[tuple[Any, ...], list[str]] = {}  # actions whose move changes the path: one path per kind
    for name in chosen:
        truth = mech.actions[names.index(name)]
        if truth.move is None or truth.move in _LOGIT_MOVES:
            arms[name] = accepted_arm(truth)
        else:
            key = (
                truth.move,
                truth.target,
                truth.targeted_multiplier,
                truth.untargeted_multiplier,
                truth.effect_months,
            )
            own_paths.setdefault(key, []).append(name)
    # a batch of paths at a time, so that memory stays within about _BATCH_ROWS copies of a customer
    per_batch = max(1, min(spec.paths, _BATCH_ROWS // active.size))
    batches = [
        _batch(
            sim,
            active,
            spec,
            (first, min(per_batch, spec.paths - first)),
            month,
            months,
            arms,
            own_paths,
            chosen,
        )
        for first in range(0, spec.paths, per_batch)
    ]
    values = {
        arm: {key: np.concatenate([b[0][arm][key] for b in batches]) for key in _EFFECT_KEYS}
        for arm in ("none", *chosen)
    }
    costs = {arm: np.concatenate([b[1][arm] for b in batches]) for arm in ("none", *chosen)}
    at = {
        "targeted": [
            np.concatenate(parts) for parts in zip(*(b[2]["targeted"] for b in batches), strict=True)
        ],
        "sleeping_dog": np.concatenate([b[2]["sleeping_dog"] for b in batches]),
    }
    return _table(sim, active, as_of, values, costs, at, spec.paths, standard_errors)


def _batch(
    sim: _ChunkSimulation,
    active: np.ndarray,
    spec: TruthSpec,
    paths: tuple[int, int],
    month: int,
    months: int,
    arms: dict[str, Callable[[dict[str, Any]], _Arm]],
    own_paths: dict[tuple[Any, ...], list[str]],
    chosen: list[str],
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray], dict[str, Any]]:
    """The values and costs per copy of ``paths`` (first path, count) of every arm, and the state at the
    contact: arms that are factors or hazard terms on the no-action path, then one path per kind of move."""
    mech = sim.mech
    names = [a.name for a in mech.actions]
    base = _Path(sim, active, spec, paths, month, months, action=None, arms=arms)
    at, values = base.at_contact, base.values
    for group in own_paths.values():
        moved = _Path(
            sim,
            active,
            spec,
            paths,
            month,
            months,
            action=names.index(group[0]),
            arms={"moved": arms["none"]},
        )
        for name in group:
            values[name] = moved.values["moved"]
    sleeping = values.pop("sleeping_dog")
    costs = {"none": np.zeros(active.size * paths[1])}
    for name in chosen:
        index = names.index(name)
        truth = mech.actions[index]
        acceptance = np.where(at["targeted"][index], truth.acceptance, truth.off_target_acceptance)
        values[name] = {
            key: np.where(
                at["sleeping_dog"],
                sleeping[key],
                acceptance * values[name][key] + (1.0 - acceptance) * values["none"][key],
            )
            for key in _EFFECT_KEYS
        }
        action_cost = truth.cost + truth.discount_share * truth.discount_months * at["revenue"]
        costs[name] = mech.contact_cost + acceptance * action_cost
    return values, costs, at


def _table(
    sim: _ChunkSimulation,
    active: np.ndarray,
    as_of: np.int64,
    values: dict[str, dict[str, np.ndarray]],
    costs: dict[str, np.ndarray],
    at: dict[str, Any],
    paths: int,
    standard_errors: dict[str, np.ndarray] | None,
) -> pa.Table:
    """One row per customer and arm (customers in id order, arms in catalogue order after ``none``)."""
    n = active.size
    names = [a.name for a in sim.mech.actions]
    arms = list(values)
    columns: dict[str, list[np.ndarray]] = {key: [] for key in (*_EFFECT_KEYS, "expected_cost")}
    errors: dict[str, list[np.ndarray]] = {key: [] for key in columns}
    targeted, sleeping = [], []
    for arm in arms:
        for key, per_path in (*values[arm].items(), ("expected_cost", costs[arm])):
            by_path = np.asarray(per_path, dtype=float).reshape(paths, n)
            columns[key].append(by_path.mean(axis=0))
            errors[key].append(
                by_path.std(axis=0, ddof=1) / np.sqrt(paths) if paths > 1 else np.full(n, np.nan)
            )
        targeted.append(np.zeros(n, bool) if arm == "none" else at["targeted"][names.index(arm)][:n])
        sleeping.append(at["sleeping_dog"][:n])
    order = np.arange(len(arms) * n).reshape(len(arms), n).T.ravel()  # customer-major
    if standard_errors is not None:
        standard_errors.update({key: np.concatenate(parts)[order] for key, parts in errors.items()})
    days = np.full(order.size, as_of, dtype=np.int64).astype(np.int32)
    return pa.table(
        {
            "customer_id": np.repeat(sim.customer_id[active], len(arms)),
            "as_of": pa.array(days, type=pa.date32()),
            "action": pa.array(np.asarray(arms, dtype=object)[order // n], type=pa.string()),
            **{key: np.concatenate(parts)[order] for key, parts in columns.items()},
            "targeted": np.concatenate(targeted)[order],
            "sleeping_dog": np.concatenate(sleeping)[order],
        },
        schema=ACTION_VALUES_SCHEMA,
    )


class _Path:
    """The customers ``active`` of ``sim`` copied once per path of ``batch`` (first path, count) and simulated
    ``months`` months from
    ``month`` with churn switched off (contacted with the action of index ``action`` on the first day,
    accepted, or not contacted); ``values`` holds each of ``arms``' values per copy (built from the state at
    the contact, ``at_contact``), accumulated month by month."""

    def __init__(
        self,
        sim: _ChunkSimulation,
        active: np.ndarray,
        spec: TruthSpec,
        batch: tuple[int, int],
        month: int,
        months: int,
        *,
        action: int | None,
        arms: dict[str, Callable[[dict[str, Any]], _Arm]],
    ) -> None:
        mech = sim.mech
        self.at_contact: dict[str, Any] = {}
        paths = _stacked(sim, active, spec, batch, month + months)
        size = paths.size
        discount = (1.0 + spec.annual_discount_rate) ** (-1.0 / 12.0)
        survival = {arm: np.ones(size) for arm in arms}
        margin = {arm: np.zeros(size) for arm in arms}
        self.values: dict[str, dict[str, np.ndarray]] = {arm: {} for arm in arms}
        shapes: dict[str, _Arm] = {}
        for t in range(months):
            m = month + t
            start, end = paths.cal.month_start[m], paths.cal.month_start[m + 1]
            n_days = int(end - start)
            revenue_start = _revenue(paths)
            ending = (paths.term > 0) & (paths.term_end < end)
            on_end = mech.churn_on_term_end_day_share
            churn_days = np.where(
                ending,
                on_end * (paths.term_end - start) + (1.0 - on_end) * (n_days - 1) / 2.0,
                (n_days - 1) / 2.0,
            )
            not_yet = {key: test(paths, start) for key, (_, test) in _LOGIT_MOVES.items()}
            _prune(paths, m, start)
            paths._step(
                m, churn=False, logs=False, campaigns=False, plan=self._contact(action) if t == 0 else None
            )
            who, base, multiplier = paths.hazard_parts
            if who.size != size:  # every copy stays active: churn is off and none was pending
                raise RuntimeError(f"truth path lost customers in month {m}")
            if t == 0:
                revenue_start = self.at_contact["revenue_after"]  # moves start on the contact day
                shapes = {arm: make(self.at_contact) for arm, make in arms.items()}
            full = 0.5 * (revenue_start + _revenue(paths)) * n_days / sim.DAYS_PER_MONTH
            churn = revenue_start * churn_days / sim.DAYS_PER_MONTH
            logit = np.log(base) - np.log1p(-base)
            for arm, shape in shapes.items():
                hazard = base
                if shape.shift is not None and t >= 1:
                    term = getattr(mech, _LOGIT_MOVES[shape.shift][0])
                    hazard = 1.0 / (1.0 + np.exp(-(logit + term * not_yet[shape.shift])))
                factor = np.where(t <= np.asarray(shape.effect_months), shape.factor, 1.0) if t >= 1 else 1.0
                h = np.minimum(hazard * multiplier * factor, mech.max_hazard)
                if (
                    t < spec.value_months
                ):  # paid over the month, discounted as if at its end (decisions/value.py)
                    margin[arm] += survival[arm] * ((1.0 - h) * full + h * churn) * discount ** (t + 1)
                survival[arm] = survival[arm] * (1.0 - h)
                if t + 1 == spec.horizon_months:
                    self.values[arm]["p_churn_horizon"] = 1.0 - survival[arm]
                if t + 1 == 12:
                    self.values[arm]["p_churn_12m"] = 1.0 - survival[arm]
            for name in ("subscriptions", "orders", "complaints", "events", "referrals", "truth"):
                getattr(paths, name).drain()
        for arm in arms:
            self.values[arm]["expected_margin"] = spec.margin_rate * margin[arm]

    def _contact(self, action: int | None) -> Callable[..., np.ndarray]:
        """The first month's planned step: note targets, sleeping dogs and revenue; contact with ``action``."""

        def contact(
            sim: _ChunkSimulation,
            month: int,
            active: np.ndarray,
            month_start: np.int64,
            month_end: np.int64,
            churns: np.ndarray,
            churn_day: np.ndarray,
        ) -> np.ndarray:
            mech = sim.mech
            self.at_contact["targeted"] = [TARGETS[a.target](sim, active) for a in mech.actions]
            self.at_contact["sleeping_dog"] = sim.engagement[active] < mech.sleeping_dog_engagement
            self.at_contact["revenue"] = _revenue(sim)[active]
            moved = np.empty(0, dtype=np.int64)
            if action is not None:
                time = month_start * sim.US_PER_DAY + mech.offer_hours[0] * 3_600_000_000
                everyone = np.ones(active.size, dtype=bool)
                moved = sim._contact(
                    month,
                    active,
                    np.full(active.size, time, dtype=np.int64),
                    np.full(active.size, month_end - 1, dtype=np.int64),
                    np.full(active.size, action, dtype=np.int64),
                    everyone,
                    np.ones(active.size),
                    accepted=everyone,
                )
            self.at_contact["revenue_after"] = _revenue(sim)[active]
            return moved

        return contact


def _revenue(sim: _ChunkSimulation) -> np.ndarray:
    """Monthly recurring revenue of every customer of ``sim`` (the prices of the products held)."""
    return (sim.price * sim.held).sum(axis=1)


def _stacked(
    sim: _ChunkSimulation, active: np.ndarray, spec: TruthSpec, batch: tuple[int, int], months: int
) -> _ChunkSimulation:
    """A copy of ``sim`` holding only ``active``, once per path of ``batch`` (first path, count; row path * n +
    i), with the truth's streams of that batch and a window of ``months`` months; ``sim`` is not changed."""
    n, paths = active.size, batch[1]
    rows = np.tile(active, paths)
    stacked = copy.copy(sim)
    for name, value in vars(sim).items():
        if name == "treated_shares":
            continue
        if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == sim.size:
            setattr(stacked, name, value[rows])
        elif hasattr(value, "dtypes") and hasattr(value, "collect"):  # an output or state buffer
            setattr(stacked, name, type(value)(**value.dtypes))
    position = np.full(sim.size, -1, dtype=np.int64)
    position[active] = np.arange(n)
    for name in ("complaint_state", "contacts"):
        rows_of = getattr(sim, name).collect()
        keep = position[rows_of["cust"].astype(np.int64)] >= 0
        kept = {key: value[keep] for key, value in rows_of.items()}
        copies = {key: np.tile(value, paths) for key, value in kept.items()}
        copies["cust"] = (
            np.arange(paths)[:, None] * n + position[kept["cust"].astype(np.int64)][None, :]
        ).ravel()
        getattr(stacked, name).add(**copies)
    stacked.size = rows.size
    stacked.extra_campaigns = list(sim.extra_campaigns)
    stream = np.random.SeedSequence([*sim.seed_key, _TRUTH_STREAM, spec.seed, batch[0]])
    main, moves = stream.spawn(2)
    stacked.rng, stacked.move_rng = np.random.default_rng(main), np.random.default_rng(moves)
    stacked.extend_calendar(months, np.random.default_rng(0))  # no campaigns run in truth paths
    return stacked


def _prune(sim: _ChunkSimulation, month: int, month_start: np.int64) -> None:
    """Drop complaints that no longer count (resolved and older than the window) and contacts no longer in
    effect: they cannot change a hazard again, and the truth's paths are long."""
    at = month_start * sim.US_PER_DAY
    window = sim.mech.complaint_window_days * sim.US_PER_DAY
    for name, keep_of in (
        ("complaint_state", lambda r: (r["resolved"] >= at) | (r["opened"] >= at - window)),
        ("contacts", lambda r: r["applied"] & (r["month"] + r["months"] >= month)),
    ):
        buffer = getattr(sim, name)
        rows = buffer.collect()
        keep = keep_of(rows)
        if keep.all():
            continue
        fresh = type(buffer)(**buffer.dtypes)
        fresh.add(**{key: value[keep] for key, value in rows.items()})
        setattr(sim, name, fresh)
