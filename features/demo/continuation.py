"""Continue the demo simulation past a date with a plan of contacts, and the true value of every action at a
date (docs/demo_data.md, "Continuing the simulation" and "Truth table").

A continuation re-simulates every chunk exactly as :func:`features.demo.dated.generate_demo` up to
``from_date`` (same streams, same steps: every row dated before it is the same), then switches to a new stream
(``SeedSequence([spec.seed, chunk, 1000 + seed])``) and simulates ``months`` more months. The plan's contacts
are made on ``from_date`` through the generator's own contact (targets, acceptance, sleeping dogs, effects,
costs, moves) as the demo's campaigns are: treated rows become offers and campaign rows, controls campaign rows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features.demo.dated import (
    _CAMPAIGN_DESIGN,
    DemoSpec,
    DemoSummary,
    _Calendar,
    _ChunkSimulation,
    write_demo,
)
from features.demo.truth import TruthSpec, action_values

_CONTINUATION = 1_000  # continuation streams: SeedSequence([spec.seed, chunk, 1000 + seed])
PLAN_COLUMNS = ("customer_id", "action", "treated")  # required; optional: propensity, campaign_id


def continue_demo(
    spec: DemoSpec,
    from_date: date | str,
    months: int,
    *,
    plan: pd.DataFrame | None = None,
    tables_dir: Path,
    truth_dir: Path,
    seed: int = 1,
    campaigns: bool = False,
) -> DemoSummary:
    """Write the demo of ``spec`` continued from ``from_date`` (a month start after the data start, at most
    the data end) for ``months`` months (reaching at least the data end) into ``tables_dir`` / ``truth_dir``:
    a complete table set with the truth (its action values at the new end), staged and replaced atomically.

    ``plan`` (customer_id, action, treated; optional propensity, campaign_id) is contacted on ``from_date``;
    every planned customer must be active then. Without ``campaigns`` the demo's own monthly campaigns stop at
    ``from_date``; with it they go on from the month after. Raises ValueError naming the bad input.
    """
    from_month = month_index(spec, from_date, "from_date")
    if isinstance(months, bool) or not isinstance(months, int | np.integer) or months < 1:
        raise ValueError(f"months must be a positive integer, got {months!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    total = from_month + months
    if total < spec.months:
        raise ValueError(
            f"months: from_date {_month_start(spec, from_month)} + {months} months ends before the data end "
            f"{spec.end_date}; continue at least {spec.months - from_month} months"
        )
    planned = checked_plan(plan, spec, _month_start(spec, from_month))
    campaign_ids = list(dict.fromkeys(planned["campaign_id"]))
    calendar = _Calendar.from_spec(spec)

    def chunk_tables(chunk_index: int, first_id: int, size: int) -> Iterator[tuple[str, pa.Table]]:
        sim = _ChunkSimulation(spec, calendar, chunk_index, first_id, size)
        sim.extra_campaigns = campaign_ids
        mine = planned[(planned["customer_id"] >= first_id) & (planned["customer_id"] < first_id + size)]
        contacts = plan_contacts(mine, first_id, campaign_ids)
        steps = continued_steps(sim, from_month, total, seed=seed, campaigns=campaigns, plan=contacts)
        yield from sim.run(steps)

    return write_demo(
        spec,
        tables_dir,
        truth_dir,
        chunk_tables,
        end_date=_month_start(spec, total),
        manifest={
            "continued_from": _month_start(spec, from_month).isoformat(),
            "continuation_months": int(months),
            "continuation_seed": int(seed),
            "continuation_campaigns": bool(campaigns),
            "plan_rows": len(planned),
            "plan_campaigns": campaign_ids,
        },
        keys=("tables_dir", "truth_dir"),
    )


def true_action_values(
    spec: DemoSpec,
    as_of: date | str,
    *,
    actions: Sequence[str] | None = None,
    horizon_months: int = 3,
    value_months: int = 120,
    margin_rate: float = 0.35,
    annual_discount_rate: float = 0.10,
    paths: int = 16,
    seed: int = 7,
) -> pa.Table:
    """The true action values (features.demo.truth.ACTION_VALUES_SCHEMA) of every customer of the demo of
    ``spec`` active at ``as_of`` (a month start after the data start, at most the data end): arm ``none``
    and each of ``actions`` (default: the catalogue), contacted on ``as_of``."""
    month = month_index(spec, as_of, "as_of")
    truth = TruthSpec(horizon_months, value_months, margin_rate, annual_discount_rate, paths, seed)
    calendar = _Calendar.from_spec(spec)
    tables = []
    for chunk_index, first_id, size in chunks(spec):
        sim = _ChunkSimulation(spec, calendar, chunk_index, first_id, size)
        for m in range(month):
            sim._step(m)
            for name in ("subscriptions", "orders", "complaints", "events", "referrals", "truth"):
                getattr(sim, name).drain()  # not needed for the state
        tables.append(action_values(sim, truth, actions))
    return pa.concat_tables(tables)


def continued_steps(
    sim: _ChunkSimulation,
    from_month: int,
    total: int,
    *,
    seed: int,
    campaigns: bool,
    plan: Callable[..., np.ndarray] | None,
) -> Iterator[Callable[[], object]]:
    """The months of a continuation as steps for ``_ChunkSimulation.run``: the history as generated (from the
    month ``sim`` is at), then (the window extended to ``total`` months, the stream switched) the continued
    months, ``plan`` on the first."""
    for month in range(sim.next_month, from_month):
        yield functools.partial(sim._step, month)
    spec_seed, chunk_index = sim.seed_key
    design = np.random.SeedSequence(spec_seed, spawn_key=(_CAMPAIGN_DESIGN, _CONTINUATION + seed))
    sim.extend_calendar(total, np.random.default_rng(design))
    sim.rng = sim.move_rng = np.random.default_rng(
        np.random.SeedSequence([spec_seed, chunk_index, _CONTINUATION + seed])
    )
    for month in range(from_month, total):
        yield functools.partial(
            sim._step,
            month,
            campaigns=campaigns and month > from_month,
            plan=plan if month == from_month else None,
        )


def chunks(spec: DemoSpec) -> Iterator[tuple[int, int, int]]:
    """(chunk index, first customer id, size) of every chunk of ``spec``."""
    for chunk_index in range(-(-spec.n_customers // spec.chunk_size)):
        first_id = chunk_index * spec.chunk_size + 1
        yield chunk_index, first_id, min(spec.chunk_size, spec.n_customers - first_id + 1)


def month_index(spec: DemoSpec, when: date | str, name: str) -> int:
    """The window month that starts on ``when`` (1 .. spec.months: after the data start, at most its end), or
    ValueError naming ``name``."""
    if isinstance(when, str):
        try:
            when = date.fromisoformat(when)
        except ValueError:
            raise ValueError(f"{name} must be an ISO date like 2025-01-01, got {when!r}") from None
    if isinstance(when, datetime):
        when = when.date()
    if not isinstance(when, date):
        raise ValueError(f"{name} must be a date, got {when!r}")
    if when.day != 1:
        raise ValueError(f"{name} must be the first day of a month, got {when.isoformat()}")
    start: date = spec.start_date  # type: ignore[assignment]
    index = (when.year - start.year) * 12 + when.month - start.month
    if not 1 <= index <= spec.months:
        raise ValueError(
            f"{name} must be after the data start {start} and at most the data end {spec.end_date}, "
            f"got {when.isoformat()}"
        )
    return index


def checked_plan(plan: pd.DataFrame | None, spec: DemoSpec, from_date: date) -> pd.DataFrame:
    """The plan with its columns checked and completed (propensity: given, else the plan's treated share of
    the action; campaign_id: given, else ``plan-<from_date>``), or ValueError naming the column and rows."""
    if plan is None:
        plan = pd.DataFrame({"customer_id": [], "action": [], "treated": []})
    missing = [c for c in PLAN_COLUMNS if c not in plan.columns]
    if missing:
        raise ValueError(f"plan: missing column(s) {', '.join(missing)} (needs {', '.join(PLAN_COLUMNS)})")
    frame = plan.reset_index(drop=True)

    def refuse(column: str, bad: pd.Series, rule: str) -> None:
        rows = np.flatnonzero(bad.to_numpy(dtype=bool))
        if rows.size:
            shown = ", ".join(f"row {r}: {frame[column].iloc[r]!r}" for r in rows[:5])
            more = f" and {rows.size - 5} more" if rows.size > 5 else ""
            raise ValueError(f"plan.{column}: {rule} ({shown}{more})")

    ids = pd.to_numeric(frame["customer_id"], errors="coerce")
    refuse("customer_id", ids.isna() | (ids % 1 != 0), "must be a customer id")
    refuse(
        "customer_id",
        (ids < 1) | (ids > spec.n_customers),
        f"customer not in the data (ids 1..{spec.n_customers})",
    )
    refuse("customer_id", ids.duplicated(keep=False), "one planned contact per customer")
    names = [a.name for a in spec.mechanism.actions]  # type: ignore[union-attr]
    refuse("action", ~frame["action"].isin(names), f"unknown action (the catalogue: {', '.join(names)})")
    refuse(
        "treated", ~frame["treated"].map(lambda v: isinstance(v, bool | np.bool_)), "must be true or false"
    )
    treated = frame["treated"].astype(bool)
    propensity = (
        pd.to_numeric(frame["propensity"], errors="coerce")
        if "propensity" in frame
        else pd.Series(np.nan, index=frame.index)
    )
    refuse(
        "propensity",
        propensity.notna() & ~propensity.between(0.0, 1.0, inclusive="right"),
        "must be in (0, 1]",
    )
    share = treated.groupby(frame["action"]).transform("mean")
    refuse(
        "propensity",
        propensity.isna() & (share == 0),
        "missing, and the action has no treated rows to set it",
    )
    campaign = (
        frame["campaign_id"] if "campaign_id" in frame else pd.Series(None, index=frame.index, dtype=object)
    )
    return pd.DataFrame(
        {
            "customer_id": ids.astype(np.int64),
            "action": frame["action"].astype(str),
            "action_index": frame["action"].map({n: i for i, n in enumerate(names)}).astype(np.int64),
            "treated": treated,
            "propensity": propensity.fillna(share).astype(float),
            "campaign_id": campaign.where(campaign.notna(), f"plan-{from_date.isoformat()}").astype(str),
        }
    )


def plan_contacts(plan: pd.DataFrame, first_id: int, campaign_ids: list[str]) -> Callable[..., np.ndarray]:
    """The planned step of a chunk: contact its planned customers on the month's first day (``_contact``)."""
    who = plan["customer_id"].to_numpy(dtype=np.int64) - first_id
    order = np.argsort(who, kind="stable")
    who = who[order]
    action = plan["action_index"].to_numpy()[order]
    treated = plan["treated"].to_numpy(dtype=bool)[order]
    propensity = plan["propensity"].to_numpy(dtype=float)[order]
    code = (
        -1
        - plan["campaign_id"].map({c: i for i, c in enumerate(campaign_ids)}).to_numpy(dtype=np.int64)[order]
    )

    def contact(
        sim: _ChunkSimulation,
        month: int,
        active: np.ndarray,
        month_start: np.int64,
        month_end: np.int64,
        churns: np.ndarray,
        churn_day: np.ndarray,
    ) -> np.ndarray:
        if who.size == 0:
            return who
        position = np.minimum(np.searchsorted(active, who), max(active.size - 1, 0))
        inactive = active.size == 0 or not np.array_equal(active[position], who)
        if inactive:
            lost = who if active.size == 0 else who[active[position] != who]
            shown = ", ".join(str(c) for c in sim.customer_id[lost[:5]])
            raise ValueError(
                f"plan.customer_id: {lost.size} planned customer(s) not active on the plan's date "
                f"(customer_id {shown}{' ...' if lost.size > 5 else ''})"
            )
        until = np.where(churns, churn_day, month_end - 1)[position]
        time = month_start * sim.US_PER_DAY + sim.mech.offer_hours[0] * 3_600_000_000
        return sim._contact(
            month,
            who,
            np.full(who.size, time, dtype=np.int64),
            until,
            action,
            treated,
            propensity,
            campaign=code,
        )

    return contact


def _month_start(spec: DemoSpec, index: int) -> date:
    """The first day of window month ``index`` (``index = spec.months``: the data end)."""
    start: date = spec.start_date  # type: ignore[assignment]
    months = start.year * 12 + start.month - 1 + index
    return date(months // 12, months % 12 + 1, 1)
