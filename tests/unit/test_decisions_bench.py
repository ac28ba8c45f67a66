"""bench/decisions.py's comparison on a hand-made truth: each plan's true value, the project's claim, the checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PATH = Path(__file__).resolve().parents[2] / "bench" / "decisions.py"
SPEC = importlib.util.spec_from_file_location("churnwise_bench_decisions", PATH)
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)

NAMES = ["call", "offer"]


def truth(gain: np.ndarray, dogs: np.ndarray) -> dict[str, np.ndarray]:
    """A truth whose margin with each action is the no-action margin + `gain`, paid 1 per contact."""
    n = len(dogs)
    none = np.full(n, 100.0)
    return {
        "margin": none[:, None] + gain + 1.0, "margin_none": none, "cost": np.ones((n, 2)),
        "p_12m_none": np.full(n, 0.3),
        "p_12m": np.full((n, 2), 0.25), "sleeping_dog": dogs, "as_of": np.array(["2025-01-01"]),
    }  # fmt: skip


@pytest.fixture
def case() -> dict:
    rng = np.random.default_rng(0)
    n = 40
    gain = rng.normal(5, 10, (n, 2))
    dogs = np.zeros(n, dtype=bool)
    dogs[:4] = True
    gain[dogs] = -20.0
    eligible = np.ones((n, 2), dtype=bool)
    eligible[::5, 1] = False
    costs = np.tile([3.0, 5.0], (n, 1))
    best = np.argsort(-gain[:, 0])[:5]  # the project treats five customers with `call`
    scores = pd.DataFrame(
        {
            "customer_id": np.arange(n), "p_churn": rng.uniform(0, 1, n), "action": "call",
            "selected": np.isin(np.arange(n), best), "expected_net_value": gain[:, 0] * 1.1,
            "expected_net_value_low": gain[:, 0] - 5, "expected_net_value_high": gain[:, 0] + 5,
            "assignment": np.where(np.isin(np.arange(n), best[:1]), "control", None),
            "effect_source": "learned", "action_cost": 3.0,
        }
    )  # fmt: skip
    scores.loc[best[:1], "selected"] = False  # the control: chosen, not contacted
    return {"gain": gain, "dogs": dogs, "eligible": eligible, "costs": costs, "scores": scores, "n": n}


def test_every_plan_is_valued_on_the_truth_and_the_claim_set_beside_it(case: dict) -> None:
    t = truth(case["gain"], case["dogs"])
    result = bench.compare(30.0, case["scores"], np.arange(case["n"]), NAMES, case["eligible"], case["costs"],
                           [None, None], t, t, random_draws=5, seed=1)  # fmt: skip
    plans = result["plans"]
    treated = case["scores"]["selected"].to_numpy()
    assert plans["project"]["treated"] == int(treated.sum()) == 4
    assert plans["project"]["true_value"] == pytest.approx(case["gain"][treated, 0].sum())
    assert plans["project"]["claimed"] == pytest.approx(1.1 * case["gain"][treated, 0].sum())
    assert plans["project"]["claimed_over_true"] == pytest.approx(1.1)
    assert plans["project"]["controls"] == 1 and plans["project"]["sleeping_dogs_treated"] == 0
    # the oracle (chosen and valued on the same table here) beats every other plan within the same budget
    assert plans["oracle"]["share_of_oracle"] == 1.0
    assert all(plans[p]["true_value"] <= plans["oracle"]["true_value"] + 1e-9 for p in bench.PLANS)
    assert all(plans[p]["spent"] <= 30.0 for p in ("oracle", "risk_only"))
    assert plans["risk_only"]["offer"] in NAMES and plans["random"]["draws"] == 5
    assert result["checks"]["claimed_within_25pct"] and result["checks"]["sleeping_dogs_at_most_random_rate"]
    assert result["sleeping_dog_share_eligible"] == pytest.approx(0.1)


def test_the_oracle_chooses_with_one_table_and_is_valued_on_the_other(case: dict) -> None:
    chosen_with = truth(case["gain"], case["dogs"])
    other = truth(-case["gain"], case["dogs"])  # the same customers, the opposite effects
    result = bench.compare(30.0, case["scores"], np.arange(case["n"]), NAMES, case["eligible"], case["costs"],
                           [None, None], chosen_with, other, random_draws=2, seed=1)  # fmt: skip
    oracle = result["plans"]["oracle"]
    assert oracle["value_on_its_own_table"] > 0 > oracle["true_value"]


def test_a_project_action_outside_the_rules_stops_the_bench(case: dict) -> None:
    eligible = case["eligible"].copy()
    eligible[case["scores"]["selected"].to_numpy(), 0] = False
    t = truth(case["gain"], case["dogs"])
    with pytest.raises(SystemExit, match="not eligible"):
        bench.compare(30.0, case["scores"], np.arange(case["n"]), NAMES, eligible, case["costs"], [None, None],
                      t, t, random_draws=1, seed=1)  # fmt: skip
