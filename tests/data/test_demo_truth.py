"""Data tests of the demo's continuation and truth table (docs/demo_data.md, "Continuing the simulation" and
"Truth table"): a continuation keeps the history, the true action values are what continuations realise, and
each action does what the mechanism says, on its target only.
"""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import features.demo.dated as demo
from features.demo.continuation import (
    chunks,
    continue_demo,
    continued_steps,
    plan_contacts,
    true_action_values,
)
from features.demo.dated import DemoSpec, TruthSpec, generate_demo
from features.demo.truth import action_values

# 3,000 customers over 29 months (the end two months after the April price review, so that price_lock and
# discount have targets); the written truth is kept cheap (it is not what these tests read)
SPEC = DemoSpec(
    n_customers=3_000, months=29, seed=21, chunk_size=3_000, truth=TruthSpec(paths=2, value_months=12)
)
FROM = date(2023, 7, 1)  # month 18 of 29
END = SPEC.end_date
ACTIONS = {a.name: a for a in SPEC.mechanism.actions}
DATES = {
    "customers": ["signup_date"],
    "subscriptions": ["start_date", "end_date"],
    "orders": ["order_date"],
    "complaints": ["opened_at", "resolved_at"],
    "events": ["event_time"],
    "referrals": ["referral_date"],
    "offers": ["offered_at"],
    "campaigns": ["assigned_at"],
    "true_churn_probability": ["month"],
    "true_offer_effects": ["offered_at"],
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> demo.DemoSummary:
    root = tmp_path_factory.mktemp("demo_truth")
    return generate_demo(SPEC, root / "tables", root / "truth")


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    """The true action values at the data end (default parameters: 16 paths, margin over 120 months)."""
    return true_action_values(SPEC, END).to_pandas()


def wide(truth: pd.DataFrame, column: str) -> pd.DataFrame:
    return truth.pivot(index="customer_id", columns="action", values=column)


def rows_before(frame: pd.DataFrame, columns: list[str], when: date) -> pd.DataFrame:
    keep = np.ones(len(frame), dtype=bool)
    for column in columns:
        keep &= (pd.to_datetime(frame[column]) < pd.Timestamp(when)).to_numpy()
    return frame[keep].reset_index(drop=True)


def test_continuation_reproduces_history_before_from_date(
    generated: demo.DemoSummary, tmp_path: Path
) -> None:
    active = pd.read_parquet(generated.truth_dir / "true_churn_probability.parquet")
    ids = active.loc[active["month"] == FROM, "customer_id"].to_numpy()[:400]
    plan = pd.DataFrame({"customer_id": ids, "action": "discount", "treated": np.arange(ids.size) % 2 == 0})
    summary = continue_demo(
        SPEC, FROM, 14, plan=plan, tables_dir=tmp_path / "t", truth_dir=tmp_path / "tt", seed=3
    )
    assert summary.end_date == date(2024, 9, 1)
    for name, columns in DATES.items():
        folder = "truth_dir" if name.startswith("true") else "tables_dir"
        old = pd.read_parquet(getattr(generated, folder) / f"{name}.parquet")
        new = pd.read_parquet(getattr(summary, folder) / f"{name}.parquet")
        if name == "customers":  # partner_since may be set after from_date
            old, new = old.drop(columns="partner_since"), new.drop(columns="partner_since")
        before = rows_before(old, columns, FROM)
        assert len(before) > 0, name
        pd.testing.assert_frame_equal(before, rows_before(new, columns, FROM), obj=name)
    # and the months after differ: a new stream
    events = pd.read_parquet(summary.tables_dir / "events.parquet")
    assert pd.to_datetime(events["event_time"]).max() >= pd.Timestamp("2024-08-01")
    # the plan: treated rows are offers on from_date, every row a campaign row
    campaigns = pd.read_parquet(summary.tables_dir / "campaigns.parquet")
    planned = campaigns[campaigns["campaign_id"] == f"plan-{FROM}"]
    assert sorted(planned["customer_id"]) == sorted(ids)
    assert (planned["assigned_at"] == FROM).all() and (planned["propensity"] == 0.5).all()
    offers = pd.read_parquet(summary.tables_dir / "offers.parquet")
    offered = offers[pd.to_datetime(offers["offered_at"]).dt.date == FROM]
    assert set(offered["customer_id"]) == set(ids[::2])
    manifest = pd.read_json(summary.tables_dir / "_manifest.json", typ="series")
    assert manifest["continued_from"] == FROM.isoformat() and manifest["plan_rows"] == ids.size


@pytest.mark.parametrize(
    ("plan", "from_date", "months", "message"),
    [
        (pd.DataFrame({"customer_id": [1], "action": ["free_lunch"], "treated": [True]}), FROM, 14, "plan.action"),
        (pd.DataFrame({"customer_id": [99_999], "action": ["discount"], "treated": [True]}), FROM, 14, "not in the data"),
        (pd.DataFrame({"customer_id": [1, 1], "action": ["discount"] * 2, "treated": [True, False]}), FROM, 14, "one planned"),
        (pd.DataFrame({"customer_id": [1], "action": ["discount"], "treated": [True], "propensity": [1.5]}), FROM, 14, "plan.propensity"),
        (pd.DataFrame({"customer_id": [1], "treated": [True]}), FROM, 14, "missing column(s) action"),
        (None, "2023-07-15", 14, "first day of a month"),
        (None, "2021-07-01", 14, "after the data start"),
        (None, FROM, 10, "ends before the data end"),
    ],
)  # fmt: skip
def test_bad_continuations_name_the_input_and_write_nothing(
    plan: pd.DataFrame | None, from_date: date | str, months: int, message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        continue_demo(
            SPEC, from_date, months, plan=plan, tables_dir=tmp_path / "t", truth_dir=tmp_path / "tt"
        )
    assert not (tmp_path / "t").exists()


def test_a_planned_customer_who_is_not_active_is_refused_and_nothing_is_written(
    generated: demo.DemoSummary, tmp_path: Path
) -> None:
    customers = pd.read_parquet(generated.tables_dir / "customers.parquet")
    later = customers.loc[
        pd.to_datetime(customers["signup_date"]) >= pd.Timestamp("2024-02-01"), "customer_id"
    ]
    plan = pd.DataFrame({"customer_id": later.head(2), "action": "discount", "treated": True})
    with pytest.raises(ValueError, match="not active on the plan's date"):
        continue_demo(SPEC, FROM, 14, plan=plan, tables_dir=tmp_path / "t", truth_dir=tmp_path / "tt")
    assert not (tmp_path / "t").exists() and not (tmp_path / "tt").exists()


def test_the_written_truth_table_is_the_truth_at_the_data_end(generated: demo.DemoSummary) -> None:
    written = pd.read_parquet(generated.truth_dir / "true_action_values.parquet")
    assert (written["as_of"] == END).all()
    assert set(written["action"]) == {"none", *ACTIONS}
    assert not written.duplicated(["customer_id", "action"]).any()
    again = true_action_values(SPEC, END, paths=2, value_months=12).to_pandas()
    pd.testing.assert_frame_equal(written, again)
    manifest = pd.read_json(generated.tables_dir / "_manifest.json", typ="series")
    assert manifest["true_action_values"]["paths"] == 2


# ------------------------------------------------------------------ truth against realised outcomes
@pytest.mark.slow
def test_true_values_match_the_realised_outcomes_of_continuations() -> None:
    """200 continuations from the data end, each customer drawn at random into arm none, service_recovery_call
    (a hazard factor), cross_sell_offer (a move with its own path) or loyalty_programme (a move that switches a
    hazard term on): the realised 3-month churn and discounted 3-month margin per arm lie within 3 standard
    errors of the mean truth over the same customers (the margin to about 0.1%)."""
    arms = ("none", "service_recovery_call", "cross_sell_offer", "loyalty_programme")
    spec_truth = TruthSpec(value_months=3, paths=16)
    ((chunk_index, first_id, size),) = chunks(SPEC)
    sim = demo._ChunkSimulation(SPEC, demo._Calendar.from_spec(SPEC), chunk_index, first_id, size)
    for month in range(SPEC.months):
        sim._step(month)
    for name in ("subscriptions", "orders", "complaints", "events", "referrals", "truth"):
        getattr(sim, name).drain()
    errors: dict[str, np.ndarray] = {}
    truth = action_values(sim, spec_truth, arms[1:], standard_errors=errors).to_pandas()
    truth = truth.assign(**{f"se_{k}": v for k, v in errors.items()})
    active = np.flatnonzero(sim.status == sim.ACTIVE)
    as_of = sim.cal.month_start[SPEC.months]
    realised = []
    for seed in range(200):
        draw = np.random.default_rng(seed).integers(0, len(arms), size=active.size)
        plan = pd.DataFrame(
            {"customer_id": sim.customer_id[active], "action": np.asarray(arms)[draw], "treated": True}
        )
        plan = plan[plan["action"] != "none"].assign(action_index=lambda d: d["action"].map({n: i for i, n in enumerate(ACTIONS)}), propensity=1.0, campaign_id="p")  # fmt: skip
        run = copy.deepcopy(sim)
        run.extra_campaigns = ["p"]
        steps = continued_steps(run, SPEC.months, SPEC.months + 3, seed=seed, campaigns=False, plan=plan_contacts(plan, first_id, ["p"]))  # fmt: skip
        for step in steps:
            step()
        realised.append(
            pd.DataFrame(
                {
                    "customer_id": run.customer_id[active],
                    "action": np.asarray(arms)[draw],
                    "churned": run.status[active] == 2,
                    "margin": paid_margin(run, active, as_of, spec_truth),
                }
            )
        )
    joined = pd.concat(realised).merge(truth, on=["customer_id", "action"])
    for arm, rows in joined.groupby("action"):
        for outcome, true in (("churned", "p_churn_horizon"), ("margin", "expected_margin")):
            difference = rows[outcome].astype(float) - rows[true]
            sampling = difference.std() / np.sqrt(len(difference))
            per_customer = rows.drop_duplicates("customer_id")
            monte_carlo = np.sqrt((per_customer[f"se_{true}"] ** 2).sum()) / len(per_customer)
            se = np.hypot(sampling, monte_carlo)
            assert abs(difference.mean()) < 3 * se, (arm, outcome, difference.mean(), se, rows[true].mean())


def paid_margin(sim: demo._ChunkSimulation, who: np.ndarray, as_of: np.int64, spec: TruthSpec) -> np.ndarray:
    """The discounted margin each customer of ``who`` paid in the ``spec.value_months`` months from ``as_of``:
    price x days held in each month / days per month (as decisions/readout.py counts), month t discounted by
    (1 + d) ** -(t + 1) monthly."""
    rows = sim.subscriptions.collect()
    held_row, held_slot = np.nonzero(sim.held)
    cust = np.concatenate([rows["cust"].astype(np.int64), held_row])
    start = np.concatenate([rows["start"], sim.row_start[held_row, held_slot]])
    end = np.concatenate([rows["end"], np.full(held_row.size, demo._NEVER)])
    price = np.concatenate([rows["price"], sim.price[held_row, held_slot]])
    monthly = (1.0 + spec.annual_discount_rate) ** (1.0 / 12.0)
    total = np.zeros(sim.size)
    month = int(np.searchsorted(sim.cal.month_start, as_of))
    for t in range(spec.value_months):
        lo, hi = sim.cal.month_start[month + t], sim.cal.month_start[month + t + 1]
        days = np.clip(np.minimum(end, hi) - np.maximum(start, lo), 0, None)
        np.add.at(total, cust, price * days / demo._DAYS_PER_MONTH * monthly ** -(t + 1))
    return spec.margin_rate * total[who]


# ------------------------------------------------------------------ what each action does
def test_each_action_works_only_on_its_target(truth: pd.DataFrame) -> None:
    awake = truth[~truth["sleeping_dog"]]
    p12, target = wide(awake, "p_churn_12m"), wide(awake, "targeted")
    corrective = [a for a in ACTIONS.values() if a.move is None]
    for action in corrective:
        effect = p12[action.name] - p12["none"]
        on, off = effect[target[action.name]], effect[~target[action.name]]
        if action.targeted_multiplier == 1.0 or action.effect_months == 0:  # loyalty_enrolment: nobody
            assert np.allclose(effect, 0.0, atol=1e-12), action.name
            continue
        assert on.mean() < -0.002, (action.name, on.mean())
        if action.untargeted_multiplier == 1.0:
            assert np.allclose(off, 0.0, atol=1e-12), action.name
        else:
            assert off.mean() > on.mean() * 0.5, (action.name, on.mean(), off.mean())
    assert np.allclose(p12["loyalty_enrolment"], p12["none"], atol=1e-12)


def test_sleeping_dogs_are_about_ten_percent_and_every_contact_hurts_them(truth: pd.DataFrame) -> None:
    dogs = truth[truth["sleeping_dog"]]
    share = truth.drop_duplicates("customer_id")["sleeping_dog"].mean()
    assert 0.06 < share < 0.15, share
    p, margin = wide(dogs, "p_churn_horizon"), wide(dogs, "expected_margin")
    for action in ACTIONS:
        assert (p[action] > p["none"]).all(), action
        assert (margin[action] < margin["none"]).all(), action


def test_ladder_moves_raise_expected_margin_for_converters_targets(truth: pd.DataFrame) -> None:
    awake = truth[~truth["sleeping_dog"]]
    margin, target = wide(awake, "expected_margin"), wide(awake, "targeted")
    for action in (a for a in ACTIONS.values() if a.move is not None):
        gain = (margin[action.name] - margin["none"])[target[action.name]]
        assert gain.mean() > 0.5, (action.name, gain.mean())
        if action.move in ("referral", "partner", "repeat_orders"):  # a hazard term only: never lower
            assert (gain > -1e-9).all(), action.name


def test_expected_cost_is_what_the_business_pays(truth: pd.DataFrame) -> None:
    cost, target = wide(truth, "expected_cost"), wide(truth, "targeted")
    assert (cost["none"] == 0).all()
    for action in ACTIONS.values():
        if action.discount_share:
            continue
        acceptance = np.where(target[action.name], action.acceptance, action.off_target_acceptance)
        expected = SPEC.mechanism.contact_cost + acceptance * action.cost
        assert np.allclose(cost[action.name], expected), action.name
    assert (cost["discount"] > SPEC.mechanism.contact_cost).all()


@pytest.mark.parametrize("campaigns", [False, True])
def test_the_demos_own_campaigns_stop_at_from_date_unless_asked(campaigns: bool, tmp_path: Path) -> None:
    summary = continue_demo(
        SPEC, END, 3, tables_dir=tmp_path / "t", truth_dir=tmp_path / "tt", seed=2, campaigns=campaigns
    )
    rows = pd.read_parquet(summary.tables_dir / "campaigns.parquet")
    after = rows[pd.to_datetime(rows["assigned_at"]) >= pd.Timestamp(END)]
    expected = (
        {"C2024-07", "C2024-08"} if campaigns else set()
    )  # none in the month of the plan (END: 2024-06)
    assert set(after["campaign_id"]) == expected
    assert summary.end_date == date(2024, 9, 1)
