"""Data tests: the demo's past campaigns are randomised experiments, and each action does what
docs/demo_data.md ("Actions and their true effects", "Past campaigns") says, on its target only.

Effects are read from the truth (next month's true hazard over the contact month's, treated against the
controls of the same action); ladder moves from the observable tables through the real feature build and the
configured loyalty ladder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

import features.demo.dated as demo
from decisions.ladder import LoyaltyLadder
from features.demo.dated import DemoSpec, DemoSummary, Mechanism, generate_demo
from features.engine import build_feature_table
from features.validation import load_tables

# 12,000 customers (1,500 campaign rows per action, ~1 s to generate): the smallest size on which a x0.84
# effect on a target of a tenth of the rows stands clear of the month-to-month noise of the true hazard.
SPEC = DemoSpec(n_customers=12_000, start_date="2022-01-01", months=24, seed=11, chunk_size=6_000)
CONF = Path(__file__).resolve().parents[2] / "conf"
MECHANISM = Mechanism()
ACTIONS = {a.name: a for a in MECHANISM.actions}


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    """12,000 customers over 24 months, generated once for this module."""
    root = tmp_path_factory.mktemp("demo_campaigns")
    return generate_demo(SPEC, root / "tables", root / "truth")


@pytest.fixture(scope="module")
def db(demo_data: DemoSummary) -> Iterator[duckdb.DuckDBPyConnection]:
    """The campaign connection of this module's demo data."""
    con = connect_campaigns(demo_data)
    yield con
    con.close()


def connect_campaigns(demo_data: DemoSummary) -> duckdb.DuckDBPyConnection:
    """DuckDB over the tables and the truth, with `campaign_rows`: each campaign row, its truth and hazards."""
    con = duckdb.connect()
    for folder, names in ((demo_data.tables_dir, demo.TABLE_NAMES), (demo_data.truth_dir, demo.TRUTH_NAMES)):
        for name in names:
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{folder / name}.parquet')")
    con.execute(
        """
        CREATE TABLE campaign_rows AS
        SELECT c.*, e.accepted, e.targeted, e.sleeping_dog, e.hazard_multiplier, e.effect_months, e.moved,
               now_.p_churn AS p_now, next_.p_churn AS p_next, next_.p_churn / now_.p_churn AS ratio,
               date_diff('day', cu.signup_date, c.assigned_at) AS days_since_signup
        FROM campaigns c
        JOIN true_offer_effects e USING (campaign_id, customer_id)
        JOIN customers cu USING (customer_id)
        JOIN true_churn_probability now_
          ON now_.customer_id = c.customer_id AND now_.month = date_trunc('month', c.assigned_at)
        LEFT JOIN true_churn_probability next_
          ON next_.customer_id = c.customer_id
         AND next_.month = date_trunc('month', c.assigned_at) + INTERVAL 1 MONTH
        """
    )
    return con


def arm_means(db: duckdb.DuckDBPyConnection, where: str) -> pd.DataFrame:
    """Per action and arm (rows matching ``where``): the mean log of next month's true hazard over the contact
    month's, and its standard error.

    Means are inverse-propensity weighted (Hajek): treated shares differ between campaigns, and campaign months
    differ (a price review month raises everyone's next hazard). Logs keep the heavy tail of hazard jumps (a
    term end, a new complaint) from drowning the effect; they make the effect of an action m ** acceptance."""
    return db.execute(
        f"""
        WITH weighted AS (
          SELECT action, treated, ln(ratio) AS y,
                 CASE WHEN treated THEN 1 / propensity ELSE 1 / (1 - propensity) END AS w
          FROM campaign_rows WHERE p_next IS NOT NULL AND ({where})),
        means AS (SELECT action, treated, sum(w * y) / sum(w) AS mean FROM weighted GROUP BY ALL)
        SELECT action, treated, count(*) AS n, any_value(m.mean) AS mean,
               sqrt(sum(w * w * (y - m.mean) ^ 2)) / sum(w) AS se
        FROM weighted JOIN means m USING (action, treated) GROUP BY ALL
        """
    ).df()


def effects(db: duckdb.DuckDBPyConnection, where: str) -> pd.DataFrame:
    """Per action: the realised effect on next month's true hazard (treated over control, geometric means),
    its standard error on the log scale, and the arm sizes."""
    means = arm_means(db, where).pivot(index="action", columns="treated")
    treated, control = means.xs(True, axis=1, level=1), means.xs(False, axis=1, level=1)
    return pd.DataFrame(
        {
            "effect": np.exp(treated["mean"] - control["mean"]),
            "log_se": np.sqrt(treated["se"] ** 2 + control["se"] ** 2),
            "n_treated": treated["n"],
            "n_control": control["n"],
        }
    ).dropna()


def expected_effect(action: str, targeted: bool) -> float:
    """The documented effect of contacting a (non sleeping-dog) customer on next month's hazard (geometric
    mean over those who accept and those who do not)."""
    truth = ACTIONS[action]
    if targeted:
        return truth.targeted_multiplier**truth.acceptance
    return truth.untargeted_multiplier**truth.off_target_acceptance


def test_every_action_gets_hundreds_of_campaign_rows_in_many_campaigns(db: duckdb.DuckDBPyConnection) -> None:
    per_action = dict(db.execute("SELECT action, count(*) FROM campaigns GROUP BY ALL").fetchall())
    assert set(per_action) == set(ACTIONS)
    assert min(per_action.values()) >= 300, per_action
    campaigns, repeat_customers = db.execute(
        "SELECT count(DISTINCT campaign_id), "
        "(SELECT count(*) FROM (SELECT customer_id FROM campaigns GROUP BY 1 HAVING count(*) >= 3)) FROM campaigns"
    ).fetchall()[0]
    assert campaigns == SPEC.months
    assert repeat_customers >= 500
    # offers are exactly the treated campaign rows, on the contact day
    assert (
        db.execute(
            "SELECT count(*) FROM (SELECT customer_id, CAST(offered_at AS DATE), action, cost FROM offers "
            "EXCEPT SELECT customer_id, assigned_at, action, cost FROM campaigns WHERE treated)"
        ).fetchall()[0][0]
        == 0
    )
    assert (
        db.execute("SELECT count(*) FROM offers").fetchall()[0][0]
        == db.execute("SELECT count(*) FROM campaigns WHERE treated").fetchall()[0][0]
    )


def test_campaigns_are_randomised_within_campaign_and_action(db: duckdb.DuckDBPyConnection) -> None:
    shares = db.execute(
        "SELECT campaign_id, action, count(DISTINCT propensity), any_value(propensity) FROM campaigns GROUP BY ALL"
    ).df()
    assert (shares.iloc[:, 2] == 1).all(), "one treated share per campaign and action"
    assert set(shares.iloc[:, 3]) <= set(MECHANISM.campaign_treated_shares)
    # the treated share follows the logged propensity, per propensity
    for propensity, n, treated in db.execute(
        "SELECT propensity, count(*), avg(treated::INT) FROM campaigns GROUP BY 1"
    ).fetchall():
        se = (propensity * (1 - propensity) / n) ** 0.5
        assert abs(treated - propensity) <= 3.5 * se, (propensity, treated, n)
    # covariates at assignment are balanced between treated and controls (inverse-propensity weighted)
    for covariate in ("p_now", "days_since_signup", "sleeping_dog::INT", "targeted::INT"):
        treated_mean, control_mean, pooled_sd = db.execute(
            f"""
            SELECT sum({covariate} / propensity) FILTER (WHERE treated)
                     / sum(1 / propensity) FILTER (WHERE treated),
                   sum({covariate} / (1 - propensity)) FILTER (WHERE NOT treated)
                     / sum(1 / (1 - propensity)) FILTER (WHERE NOT treated),
                   stddev_samp({covariate})
            FROM campaign_rows
            """
        ).fetchall()[0]
        assert abs(treated_mean - control_mean) / pooled_sd < 0.1, (covariate, treated_mean, control_mean)


def test_each_action_works_only_on_its_target(db: duckdb.DuckDBPyConnection) -> None:
    on = effects(db, "NOT sleeping_dog AND targeted")
    off = effects(db, "NOT sleeping_dog AND NOT targeted")
    assert set(on.index) == {a for a, t in ACTIONS.items() if t.target != "nobody"}
    assert set(off.index) == {a for a, t in ACTIONS.items() if t.target != "everyone"}
    for table, targeted in ((on, True), (off, False)):
        for action, row in table.iterrows():
            assert min(row["n_treated"], row["n_control"]) >= 25, (action, targeted, row)
            z = (np.log(row["effect"]) - np.log(expected_effect(action, targeted))) / row["log_se"]
            if ACTIONS[action].move is None:
                assert abs(z) <= 3.5, (action, targeted, row, expected_effect(action, targeted))
            else:  # a move lowers the hazard through the state it changes: never raises it
                assert np.log(row["effect"]) <= 3.5 * row["log_se"], (action, targeted, row)
    # the corrective actions that do nothing off target do something on it
    for action in ("contract_upgrade", "onboarding_education"):
        assert on.loc[action, "effect"] < 0.92 < off.loc[action, "effect"], (on.loc[action], off.loc[action])
    # loyalty_enrolment does nothing for anyone: no multiplier other than a sleeping dog's is ever applied
    assert (
        db.execute(
            "SELECT count(*) FROM campaign_rows WHERE action = 'loyalty_enrolment' AND NOT sleeping_dog "
            "AND (hazard_multiplier <> 1 OR targeted OR moved)"
        ).fetchall()[0][0]
        == 0
    )


def test_sleeping_dogs_are_about_ten_percent_of_active_customers() -> None:
    spec = DemoSpec(n_customers=4_000, months=18, seed=5, chunk_size=4_000)
    simulation = demo._ChunkSimulation(spec, demo._Calendar.from_spec(spec), 0, 1, spec.n_customers)
    shares = []
    for month in range(spec.months):
        started = (simulation.status == demo._PENDING) & (
            simulation.first_start <= simulation.cal.month_start[month]
        )
        active = (simulation.status == demo._ACTIVE) | started
        if month > 0:
            shares.append(np.mean(simulation.engagement[active] < MECHANISM.sleeping_dog_engagement))
        simulation._step(month)
    assert 0.08 <= np.mean(shares) <= 0.12, shares


def test_every_contact_of_a_sleeping_dog_raises_their_hazard(db: duckdb.DuckDBPyConnection) -> None:
    recorded = db.execute(
        "SELECT action, hazard_multiplier, effect_months, bool_or(moved) AS moved FROM campaign_rows "
        "WHERE sleeping_dog GROUP BY ALL"
    ).df()
    assert set(recorded["action"]) == set(ACTIONS)
    assert (recorded["hazard_multiplier"] == MECHANISM.sleeping_dog_multiplier).all()
    assert (recorded["effect_months"] == MECHANISM.sleeping_dog_months).all()
    assert not recorded["moved"].any(), "a sleeping dog makes no ladder move"
    dogs = effects(db, "sleeping_dog")
    assert (dogs["effect"] > 1.0).all(), dogs
    weight = 1 / dogs["log_se"] ** 2
    pooled = float((np.log(dogs["effect"]) * weight).sum() / weight.sum())
    pooled_se = float(weight.sum() ** -0.5)
    assert abs(pooled - np.log(MECHANISM.sleeping_dog_multiplier)) <= 3.5 * pooled_se, (
        np.exp(pooled),
        pooled_se,
    )


def test_costs_follow_the_catalogue(db: duckdb.DuckDBPyConnection) -> None:
    costs = db.execute(
        "SELECT action, accepted, min(cost), max(cost) FROM campaign_rows WHERE treated AND action <> 'discount' GROUP BY ALL"
    ).fetchall()
    for action, accepted, low, high in costs:
        expected = MECHANISM.contact_cost + (ACTIONS[action].cost if accepted else 0.0)
        assert low == pytest.approx(expected) and high == pytest.approx(expected), (
            action,
            accepted,
            low,
            high,
        )
    # discount: 0.2 x monthly revenue x 6 on acceptance, from the subscriptions active on the contact day
    mismatched = db.execute(
        f"""
        SELECT count(*) FROM (
          SELECT r.customer_id, r.assigned_at, any_value(r.cost) AS cost, sum(s.monthly_price) AS revenue
          FROM campaign_rows r JOIN subscriptions s
            ON s.customer_id = r.customer_id AND s.start_date <= date_trunc('month', r.assigned_at)
           AND (s.end_date IS NULL OR s.end_date > date_trunc('month', r.assigned_at))
          WHERE r.treated AND r.accepted AND r.action = 'discount' GROUP BY ALL)
        WHERE abs(cost - ({MECHANISM.contact_cost} + 0.2 * revenue * 6)) > 0.05 * cost
        """
    ).fetchall()[0][0]
    accepted = db.execute(
        "SELECT count(*) FROM campaign_rows WHERE treated AND accepted AND action = 'discount'"
    ).fetchall()[0][0]
    assert accepted >= 20 and mismatched <= 0.05 * accepted, (mismatched, accepted)


def test_moves_lower_the_hazard_through_the_state_they_change(db: duckdb.DuckDBPyConnection) -> None:
    """Among treated customers on target, acceptance is random: those who moved against those who did not."""
    gaps = dict(
        db.execute(
            """
            SELECT action, avg(ln(ratio)) FILTER (WHERE moved) - avg(ln(ratio)) FILTER (WHERE NOT moved)
            FROM campaign_rows WHERE treated AND targeted AND NOT sleeping_dog AND p_next IS NOT NULL
             AND action IN ('cross_sell_offer', 'loyalty_programme', 'cross_sell_programme', 'referral_programme',
                            'partner_programme')
            GROUP BY 1
            """
        ).fetchall()
    )
    # about the hazard terms of the new state: bundle and depth (-0.65), programme (-0.15), advocate (-0.4),
    # partner (-1.5) on the logit
    limits = {"cross_sell_offer": -0.4, "cross_sell_programme": -0.4, "loyalty_programme": -0.08}
    limits |= {"referral_programme": -0.2, "partner_programme": -0.8}
    for action, limit in limits.items():
        assert gaps[action] < limit, (action, gaps[action])
    assert db.execute("SELECT count(*) FROM campaign_rows WHERE moved AND NOT treated").fetchall()[0][0] == 0


@pytest.mark.slow
def test_ladder_moves_change_the_rung_the_ladder_rules_read(
    demo_data: DemoSummary, db: duckdb.DuckDBPyConnection
) -> None:
    tables = load_tables(demo_data.tables_dir)
    build_feature_table(
        tables.con,
        set(tables.report.present),
        OmegaConf.to_container(OmegaConf.load(CONF / "features" / "default.yaml")),
        OmegaConf.to_container(OmegaConf.load(CONF / "observation" / "monthly.yaml")),
        OmegaConf.to_container(OmegaConf.load(CONF / "label" / "contractual.yaml")),
    )
    ladder = LoyaltyLadder.from_config(
        OmegaConf.to_container(OmegaConf.load(CONF / "ladder" / "default.yaml"))
    )
    features = tables.con.sql(
        "SELECT customer_id, observation_date, tenure_days, orders_365d, days_since_last_renewal, categories_held, "
        "referrals_made_365d, is_partner, monthly_revenue FROM feature_table"
    ).to_arrow_table()
    db.register("rungs", features.append_column("ladder_rung", ladder.rungs_of(features)))
    # each campaign row with the features and rung at its month start (before) and the next (after)
    columns = ", ".join(
        f"{when}.{c} AS {c}_{when}"
        for when in ("before", "after")
        for c in (
            "tenure_days",
            "orders_365d",
            "categories_held",
            "referrals_made_365d",
            "is_partner",
            "monthly_revenue",
            "ladder_rung",
        )
    )
    rows = db.sql(
        f"""
        SELECT r.customer_id, r.action, r.treated, r.targeted, r.moved, {columns}
        FROM campaign_rows r
        JOIN rungs before ON before.customer_id = r.customer_id
         AND before.observation_date = date_trunc('month', r.assigned_at)
        JOIN rungs after ON after.customer_id = r.customer_id
         AND after.observation_date = date_trunc('month', r.assigned_at) + INTERVAL 1 MONTH
        """
    ).df()
    rank = {rung: index for index, rung in enumerate(ladder.rungs)}
    moves = {
        "loyalty_programme": ("orders_365d", 2, "client"),
        "cross_sell_programme": ("categories_held", None, "supporter"),
        "cross_sell_offer": ("categories_held", None, None),
        "referral_programme": ("referrals_made_365d", 1, "advocate"),
        "partner_programme": ("is_partner", 1, "partner"),
    }
    for action, (feature, at_least, rung) in moves.items():
        mine = rows[rows["action"] == action]
        moved = mine[mine["treated"] & mine["moved"]]
        assert len(moved) >= 3, (action, len(moved))
        gained = moved[f"{feature}_after"] - moved[f"{feature}_before"]
        if at_least is None:  # one more product category held, and paid for
            assert (gained == 1).all(), (action, gained.value_counts())
            assert (moved["monthly_revenue_after"] > moved["monthly_revenue_before"]).all(), action
        else:
            assert (moved[f"{feature}_after"] >= at_least).all(), action
        if rung is not None:
            reached = moved["ladder_rung_after"].map(rank) >= rank[rung]
            if action == "cross_sell_programme":  # supporter also needs a year of tenure
                reached |= moved["tenure_days_after"] < 365
            assert reached.all(), (action, moved["ladder_rung_after"].value_counts())
        # on target, the rung is reached far more often by the treated than by the controls of the same action
        if rung is not None and rung != "supporter":
            climbs = (
                mine[mine["targeted"]]
                .assign(
                    climbed=(mine["ladder_rung_after"].map(rank) >= rank[rung])
                    & (mine["ladder_rung_before"].map(rank) < rank[rung])
                )
                .groupby("treated")["climbed"]
                .mean()
            )
            conversion = ACTIONS[action].acceptance
            assert climbs[True] - climbs[False] > conversion / 4, (action, climbs)
