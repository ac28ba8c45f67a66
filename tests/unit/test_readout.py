"""The readout's statistics (decisions.readout.effects_by_action) on synthetic campaigns with a known effect:
intervals that cover it at their nominal rate, propensity weighting that recovers it when the probability
of treatment differs within an action, small arms without an interval, and the value delivered."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from decisions.readout import due_runs, effects_by_action, newcombe, wilson
from features.labels import LabelWindow

AS_OF = date(2024, 3, 1)


def campaign(
    rng: np.random.Generator,
    n: int,
    p_treated: np.ndarray | float,
    churn_control: np.ndarray | float,
    effect: float,
    action: str = "price_lock",
    margin_effect: float = 0.0,
) -> pd.DataFrame:
    """n selected customers, treated with probability p_treated, churning with churn_control (+ effect if
    treated); margin 100 for stayers, plus margin_effect if treated."""
    p = np.broadcast_to(np.asarray(p_treated, dtype=float), n)
    base = np.broadcast_to(np.asarray(churn_control, dtype=float), n)
    treated = rng.random(n) < p
    churned = (rng.random(n) < base + effect * treated).astype(float)
    margin = 100.0 * (1 - churned) + margin_effect * treated + rng.normal(0, 5, n)
    return pd.DataFrame(
        {
            "as_of": AS_OF, "action": action, "assignment": np.where(treated, "treated", "control"),
            "assignment_probability": p, "churned": churned, "margin": margin, "action_cost": 10.0,
            "expected_net_value": 4.0,
        }
    )  # fmt: skip


def test_wilson_and_newcombe_match_published_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17, table II, example (a): 56/70 - 48/80, method 10:
    # 0.0524 .. 0.3339; Wilson interval of 81/263: 0.2553 .. 0.3662 (z = 1.96).
    low, high = newcombe(56, 70, 48, 80, 0.95)
    assert (low, high) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert wilson(81, 263, 1.959964) == pytest.approx((0.2553, 0.3662), abs=1e-4)


def test_the_95_interval_covers_the_true_effect_in_about_95_percent_of_campaigns() -> None:
    rng = np.random.default_rng(20261201)
    covered, effects = [], []
    for _ in range(400):
        rows = campaign(rng, 900, 0.9, 0.30, -0.08, margin_effect=0.0)
        (row,) = effects_by_action(rows, 0.95).itertuples()
        assert row.method == "newcombe" and row.note == ""
        covered.append(row.low <= -0.08 <= row.high)
        effects.append(row.effect)
    assert 0.92 <= np.mean(covered) <= 0.98, np.mean(covered)
    assert np.mean(effects) == pytest.approx(-0.08, abs=0.01)


def test_hajek_weighting_recovers_the_effect_when_propensities_differ_within_an_action() -> None:
    # Riskier customers were treated more often (p 0.9 against 0.5): the plain difference of means mixes the
    # risk with the effect; weighting by 1/p and 1/(1 - p) removes it.
    rng = np.random.default_rng(7)
    estimates, plain, covered = [], [], []
    for _ in range(200):
        risky = rng.random(2000) < 0.5
        rows = campaign(rng, 2000, np.where(risky, 0.9, 0.5), np.where(risky, 0.45, 0.10), -0.06)
        (row,) = effects_by_action(rows, 0.95).itertuples()
        assert row.method == "hajek"
        estimates.append(row.effect)
        covered.append(row.low <= -0.06 <= row.high)
        treated = rows["assignment"] == "treated"
        plain.append(rows.loc[treated, "churned"].mean() - rows.loc[~treated, "churned"].mean())
    assert np.mean(estimates) == pytest.approx(-0.06, abs=0.005)
    assert np.mean(plain) > 0.0  # unweighted, the treatment even seems to raise churn
    assert 0.90 <= np.mean(covered) <= 0.99, np.mean(covered)


def test_groups_below_min_group_get_no_interval_and_value_is_delivered_against_claimed() -> None:
    rng = np.random.default_rng(3)
    big = campaign(rng, 3000, 0.9, 0.30, -0.10, action="price_lock", margin_effect=20.0)
    small = campaign(rng, 60, 0.9, 0.30, -0.10, action="discount")
    alone = campaign(rng, 40, 1.0, 0.30, 0.0, action="bundle_offer")  # no controls (share 0)
    unlabelled = big.index[:25]
    big.loc[unlabelled, "churned"] = np.nan
    result = effects_by_action(pd.concat([big, small, alone], ignore_index=True), 0.95, min_group=30)
    rows = result.set_index("action")
    assert list(result["action"]) == ["bundle_offer", "discount", "price_lock"]

    lock = rows.loc["price_lock"]
    treated = big["assignment"] == "treated"
    assert lock.n_treated == treated.sum() and lock.n_control == (~treated).sum()
    assert lock.churn_treated == pytest.approx(big.loc[treated, "churned"].mean())  # NaN rows left out
    assert lock.low < lock.effect < lock.high and lock.low <= -0.10 <= lock.high
    assert "25 without a churn label" in lock.note
    margin = big.loc[treated, "margin"].mean() - big.loc[~treated, "margin"].mean()
    assert lock.margin_effect == pytest.approx(margin)
    assert lock.value_delivered == pytest.approx(treated.sum() * margin - 10.0 * treated.sum())
    assert lock.value_delivered_low < lock.value_delivered < lock.value_delivered_high
    assert lock.value_claimed == pytest.approx(4.0 * treated.sum())

    few = rows.loc["discount"]
    assert few.n_control < 30 and np.isnan(few.low) and np.isnan(few.margin_low) and np.isfinite(few.effect)
    assert "fewer than readout.min_group 30: no interval" in few.note
    assert rows.loc["bundle_offer"].note == "no control group" and np.isnan(rows.loc["bundle_offer"].effect)


def test_only_runs_whose_horizon_and_grace_have_passed_are_due() -> None:
    window = LabelWindow(horizon_days=90, grace_days=14)
    runs = pd.DataFrame(
        {"as_of": [date(2023, 9, 1), date(2023, 10, 1), date(2023, 6, 1)], "control": [5, 5, 0]}
    )
    due = due_runs(runs, window, date(2023, 12, 14))
    assert list(due["as_of"]) == [date(2023, 9, 1)]  # 2023-06-01 has no control group
    assert due["horizon_end"].iloc[0] == date(2023, 9, 1) + timedelta(days=104)
    assert due_runs(runs, window, date(2023, 12, 13)).empty
