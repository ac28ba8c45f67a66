"""`make readout` on a demo scoring history whose horizon has passed gives treated-vs-control effects whose
intervals cover the generator's true average effects (issue 15, "Done when").

The demo is trained and scored at its data end with half of every action's selection held out; the same world
is then continued past the scoring date with that plan applied on it (treated rows contacted, controls not),
and the readout runs on the continued tables. The truth is `true_action_values` at the scoring date.

Chance failures: each interval misses its truth 5% of the time at 95%, so with k actions read out the test
would fail by chance with probability about 1 - 0.95 ** k. The readout therefore runs at a Bonferroni
confidence 1 - 0.05 / 12 (12 catalogue actions): the family of intervals covers with at least 95% at any seed.
The label is 3 calendar months without a grace gap, so that it counts the event the truth counts.

At this size (10,000 customers; about 10 minutes of CPU would be needed for much more) the selection, still
made from assumed effects, gives 3-4 actions at least `readout.min_group` (20) customers per arm, mostly
ladder interventions whose true 3-month effects are near zero, and intervals about +-0.04 to +-0.17 wide: the
test catches a readout biased by more than that (a label on the wrong date, treated compared with the
non-selected), not a small bias.
"""

from __future__ import annotations

import pandas as pd
import pytest
from config_helpers import SHRUNK, compose_config

from churnwise.api import readout, score, train
from features.demo.configured import demo_spec
from features.demo.continuation import continue_demo, true_action_values

pytestmark = pytest.mark.slow

N, SEED, MONTHS_AFTER = 10_000, 42, 4
CONFIDENCE = 1 - 0.05 / 12
LABEL = ("label.horizon_days=null", "label.horizon_months=3", "label.grace_days=0")


@pytest.fixture(scope="module")
def read_out(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, float]:
    root = tmp_path_factory.mktemp("readout_truth")

    def make(*overrides: str):  # noqa: ANN202
        return compose_config(
            root,
            *SHRUNK,
            f"data.generator.n_customers={N}",
            f"data.generator.seed={SEED}",
            *LABEL,
            *overrides,
        )

    cfg = make()
    train(cfg)
    scored = score(make("actions.control.share=0.5", "actions.budget=100000"))
    plan = (
        pd.read_parquet(scored.path)
        .query("assignment.notna()")
        .assign(treated=lambda d: d["assignment"] == "treated", campaign_id=f"score-{scored.as_of}")
        .loc[:, ["customer_id", "action", "treated", "campaign_id", "assignment_probability"]]
        .rename(columns={"assignment_probability": "propensity"})
    )
    spec = demo_spec(cfg)
    continued = root / "continued"
    continue_demo(
        spec, scored.as_of, MONTHS_AFTER, plan=plan, tables_dir=continued, truth_dir=root / "continued_truth"
    )
    margin_rate = float(cfg.value.margin_rate)
    truth = true_action_values(
        spec,
        scored.as_of,
        horizon_months=3,
        value_months=3,
        annual_discount_rate=0.0,
        margin_rate=margin_rate,
    ).to_pandas()
    result = readout(
        make(f"data.path={continued}", f"readout.confidence={CONFIDENCE}", "readout.min_group=20")
    )
    return plan, truth, result.by_action, margin_rate


def true_effects(plan: pd.DataFrame, truth: pd.DataFrame, column: str) -> pd.Series:
    """Per action: the mean over everyone assigned to it (treated and controls) of the true effect on ``column``
    (the action's value minus `none`'s): what a randomised treated-minus-control difference estimates."""
    wide = truth.pivot(index="customer_id", columns="action", values=column)
    effect = [
        wide.at[c, a] - wide.at[c, "none"] for c, a in zip(plan["customer_id"], plan["action"], strict=True)
    ]
    return plan.assign(effect=effect).groupby("action")["effect"].mean()


def test_readout_intervals_cover_the_true_average_effects(read_out) -> None:  # noqa: ANN001
    plan, truth, by_action, _ = read_out
    true = true_effects(plan, truth, "p_churn_horizon")
    rows = by_action.set_index("action")
    read = rows[rows["low"].notna()]
    assert len(read) >= 3, rows[["n_treated", "n_control"]]
    missed = [a for a, r in read.iterrows() if not r["low"] <= true[a] <= r["high"]]
    assert missed == [], (read[["n_treated", "n_control", "effect", "low", "high"]].assign(true=true), missed)


def test_value_delivered_interval_covers_the_true_margin_gain(read_out) -> None:  # noqa: ANN001
    plan, truth, by_action, _ = read_out
    true = true_effects(plan, truth, "expected_margin")
    rows = by_action.set_index("action")
    read = rows[rows["margin_low"].notna()]
    assert len(read) >= 3, rows[["n_treated", "n_control"]]
    missed = [a for a, r in read.iterrows() if not r["margin_low"] <= true[a] <= r["margin_high"]]
    shown = read[["n_treated", "margin_effect", "margin_low", "margin_high"]].assign(true=true)
    assert missed == [], (shown, missed)
