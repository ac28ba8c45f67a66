"""Control groups (decisions.control): random within each action, of the configured share, the same for a
rerun of a date and different across dates; the treated within the budget and capacities; and a history
written before control groups migrated while any other shape is still refused."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pytest

from decisions.actions import select_within_budget
from decisions.control import CONTROL, TREATED, ControlSettings, hold_out, within_budget
from decisions.errors import DecisionConfigError
from features.errors import ConfigError
from features.publish import HistoryTable

AS_OF = date(2024, 3, 1)


def selection(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Selected flags, action index (three actions of uneven sizes) and shuffled customer ids."""
    rng = np.random.default_rng(seed)
    selected = rng.random(n) < 0.6
    action = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    return selected, action, rng.permutation(np.arange(10_000, 10_000 + n))


def test_controls_are_drawn_within_each_action_at_the_configured_share() -> None:
    selected, action, ids = selection()
    assignment, probability = hold_out(selected, action, ids, 0.2, seed=7, as_of=AS_OF)
    assert (assignment[~selected] == None).all() and np.isnan(probability[~selected]).all()  # noqa: E711
    assert set(assignment[selected]) == {TREATED, CONTROL}
    assert probability[selected] == pytest.approx(0.8)
    for a in range(3):
        members = selected & (action == a)
        held = int((assignment[members] == CONTROL).sum())
        # floor or ceil of share x n: the share holds within every action, not only overall
        assert abs(held - 0.2 * members.sum()) < 1, (a, held, members.sum())


def test_every_selected_customer_is_held_out_with_probability_share() -> None:
    # Over many dates, each customer of a small action (5 x 0.3 = 1.5 controls) is a control 30% of the time.
    selected = np.ones(5, dtype=bool)
    action, ids = np.zeros(5, dtype=int), np.arange(5)
    held = np.zeros(5)
    days = 4000
    for day in range(days):
        assignment, _ = hold_out(
            selected, action, ids, 0.3, seed=1, as_of=date.fromordinal(AS_OF.toordinal() + day)
        )
        held += assignment == CONTROL
    share = held / days
    assert np.abs(share - 0.3).max() < 4 * np.sqrt(0.3 * 0.7 / days), share


def test_a_rerun_of_a_date_holds_out_the_same_customers_and_another_date_others() -> None:
    selected, action, ids = selection()
    first, _ = hold_out(selected, action, ids, 0.1, seed=42, as_of=AS_OF)
    again, _ = hold_out(selected, action, ids, 0.1, seed=42, as_of=AS_OF)
    assert (first == again).all()
    # the same customers in another order get the same assignment: it follows customer_id, not the row order
    order = np.random.default_rng(3).permutation(len(ids))
    shuffled, _ = hold_out(selected[order], action[order], ids[order], 0.1, seed=42, as_of=AS_OF)
    assert (shuffled == first[order]).all()
    later, _ = hold_out(selected, action, ids, 0.1, seed=42, as_of=date(2024, 4, 1))
    other_seed, _ = hold_out(selected, action, ids, 0.1, seed=43, as_of=AS_OF)
    controls = set(ids[first == CONTROL])
    for different in (later, other_seed):
        overlap = len(controls & set(ids[different == CONTROL])) / len(controls)
        assert overlap < 0.3, overlap  # independent draws share about 10% of their controls


def test_share_zero_treats_everyone_selected() -> None:
    selected, action, ids = selection()
    assignment, probability = hold_out(selected, action, ids, 0.0, seed=1, as_of=AS_OF)
    assert (assignment[selected] == TREATED).all() and (probability[selected] == 1.0).all()
    assert ControlSettings.from_config(None).share == 0.0


def test_the_treated_spend_stays_within_the_budget_and_the_capacities() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    action = rng.choice(3, size=n)
    cost = np.round(rng.uniform(5, 60, size=n), 2)
    value = np.sort(rng.gamma(2.0, 20.0, size=n))[::-1]  # priority order: value descending
    ids = np.arange(n)
    budget, capacity = 5000.0, {0: 40, 1: None, 2: None}
    settings = ControlSettings(share=0.1, seed=3, spend="budget")
    spent = []
    for day in range(30):
        chosen = select_within_budget(
            action, cost, value, settings.selection_budget(budget), settings.selection_capacities(capacity)
        )
        as_of = date.fromordinal(AS_OF.toordinal() + day)
        assignment, _ = hold_out(chosen, action, ids, settings.share, settings.seed, as_of)
        kept = within_budget(assignment, action, cost, budget, capacity)
        treated = kept == TREATED
        assert cost[treated].sum() <= budget + 1e-9
        assert (treated & (action == 0)).sum() <= 40
        # what is dropped is the tail of the priority list, treated and controls alike
        dropped = np.flatnonzero((assignment != None) & (kept == None))  # noqa: E711
        if len(dropped):
            assert (kept[dropped.min() :] == None).all()  # noqa: E711
        spent.append(cost[treated].sum())
    # the selection was made with budget / 0.9: the treated spend about the budget, not 90% of it
    assert np.mean(spent) > 0.95 * budget, np.mean(spent)
    assert settings.selection_capacities(capacity) == {0: 44, 1: None, 2: None}

    plain = ControlSettings(share=0.1, seed=3, spend="selection")
    assert plain.selection_budget(budget) == budget and plain.selection_capacities(capacity) == capacity


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"share": 1.0}, r"actions.control.share: 1.0 is not a share in \[0, 1\)"),
        ({"share": -0.1}, "actions.control.share"),
        ({"share": 0.1, "spend": "all"}, "actions.control.spend: 'all' is not budget or selection"),
        ({"share": 0.1, "seed": -1}, "actions.control.seed"),
    ],
)
def test_bad_control_settings_name_their_key(node: dict, message: str) -> None:
    with pytest.raises(DecisionConfigError, match=message):
        ControlSettings.from_config(node)


def test_a_history_written_before_control_groups_is_migrated_and_another_shape_still_refused(
    tmp_path: Path,
) -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TEMP TABLE scoring_output AS SELECT 1::BIGINT AS customer_id, DATE '2024-01-01' AS as_of, "
        "0.5 AS p_churn, TRUE AS selected"
    )
    old = HistoryTable(con, tmp_path / "h.duckdb", "scores")
    with old.replacing("scoring_output", "as_of", date(2024, 1, 1)):
        pass
    old.detach()

    con.execute(
        "CREATE OR REPLACE TEMP TABLE scoring_output AS SELECT 2::BIGINT AS customer_id, DATE '2024-02-01' AS as_of, "
        "0.4 AS p_churn, FALSE AS selected, 'control' AS assignment, 0.9::DOUBLE AS assignment_probability"
    )
    history = HistoryTable(
        con, tmp_path / "h.duckdb", "scores", addable=("assignment", "assignment_probability")
    )
    history.check("scoring_output")  # lacking only the added columns: accepted
    # a failed publication leaves the old table as it was, columns included
    with pytest.raises(RuntimeError), history.replacing("scoring_output", "as_of", date(2024, 2, 1)):
        raise RuntimeError("the file swap failed")
    assert [c for c, _ in history.columns(history.name)] == ["customer_id", "as_of", "p_churn", "selected"]
    with history.replacing("scoring_output", "as_of", date(2024, 2, 1)):
        pass
    assert dict(history.columns(history.name)) == {
        "customer_id": "BIGINT", "as_of": "DATE", "p_churn": "DECIMAL(2,1)", "selected": "BOOLEAN",
        "assignment": "VARCHAR", "assignment_probability": "DOUBLE",
    }  # fmt: skip
    rows = con.execute(
        f"SELECT customer_id, assignment, assignment_probability FROM {history.name} ORDER BY customer_id"
    ).fetchall()
    assert rows == [(1, None, None), (2, "control", 0.9)]
    history.check("scoring_output")  # now the same shape

    # Any other difference is still refused, the added columns notwithstanding.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE scoring_output AS SELECT 3::BIGINT AS customer_id, DATE '2024-03-01' AS as_of, "
        "0.4 AS p_churn, FALSE AS selected, 'control' AS assignment, 0.9::DOUBLE AS assignment_probability, "
        "1 AS segment"
    )
    with pytest.raises(ConfigError, match=r"another shape \(it lacks segment\)"):
        history.check("scoring_output")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE scoring_output AS SELECT 3::BIGINT AS customer_id, DATE '2024-03-01' AS as_of"
    )
    with pytest.raises(
        ConfigError, match=r"it has assignment, assignment_probability, p_churn, selected, which"
    ):
        history.check("scoring_output")
    history.detach()
