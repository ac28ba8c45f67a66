"""Data tests: the realised churn in the demo tables moves the way docs/demo_data.md says it should.

Everything except the truth-file tests is computed from the emitted tables only (as a feature pipeline
would see them): a customer is active at a month start if their first subscription row started on or
before it and they had not churned before it; they churn in the month holding the last end_date of
all their rows (when every row has ended).
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from features.demo.dated import DemoSpec, DemoSummary, generate_demo

SPEC = DemoSpec(n_customers=3_000, start_date="2022-01-01", months=24, seed=11, chunk_size=1_000)


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    """A modest demo data set generated once for this module."""
    root = tmp_path_factory.mktemp("demo_mechanism")
    return generate_demo(SPEC, root / "tables", root / "truth")


def connect_panel(demo_data: DemoSummary) -> duckdb.DuckDBPyConnection:
    """DuckDB over the demo tables plus a customer-month panel of state at each month start."""
    con = duckdb.connect()
    for name in ("customers", "subscriptions", "complaints", "offers"):
        con.execute(
            f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{demo_data.tables_dir / name}.parquet')"
        )
    for name in ("true_churn_probability", "true_offer_effects"):
        con.execute(
            f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{demo_data.truth_dir / name}.parquet')"
        )
    start, end = demo_data.start_date.isoformat(), demo_data.end_date.isoformat()
    con.execute(
        f"""
        CREATE TABLE customer_life AS
        SELECT customer_id,
               min(start_date) AS first_start,
               CASE WHEN count(*) = count(end_date) THEN max(end_date) END AS churn_date
        FROM subscriptions GROUP BY customer_id;

        CREATE TABLE month_starts AS
        SELECT CAST(range AS DATE) AS month_start
        FROM range(DATE '{start}', DATE '{end}', INTERVAL 1 MONTH);

        CREATE TABLE customer_months AS
        SELECT l.customer_id, m.month_start,
               coalesce(l.churn_date < m.month_start + INTERVAL 1 MONTH, false) AS churned
        FROM customer_life l JOIN month_starts m
          ON l.first_start <= m.month_start AND (l.churn_date IS NULL OR l.churn_date >= m.month_start);

        CREATE TABLE held_at_month_start AS
        SELECT cm.customer_id, cm.month_start,
               count(DISTINCT s.product) AS products_held,
               bool_or(s.bundle_id IS NOT NULL) AS holds_bundle,
               max(s.contract_term_months) AS longest_term
        FROM customer_months cm JOIN subscriptions s
          ON s.customer_id = cm.customer_id AND s.start_date <= cm.month_start
         AND (s.end_date IS NULL OR s.end_date > cm.month_start)
        GROUP BY ALL;

        CREATE TABLE open_complaints_at_month_start AS
        SELECT cm.customer_id, cm.month_start, count(*) AS open_complaints
        FROM customer_months cm JOIN complaints c
          ON c.customer_id = cm.customer_id AND c.opened_at < cm.month_start
         AND (c.resolved_at IS NULL OR c.resolved_at >= cm.month_start)
        GROUP BY ALL;

        CREATE TABLE panel AS
        SELECT cm.*, h.products_held, coalesce(h.holds_bundle, false) AS holds_bundle, h.longest_term,
               coalesce(o.open_complaints, 0) AS open_complaints,
               date_diff('month', cu.signup_date, cm.month_start) AS tenure_months
        FROM customer_months cm
        JOIN customers cu USING (customer_id)
        LEFT JOIN held_at_month_start h USING (customer_id, month_start)
        LEFT JOIN open_complaints_at_month_start o USING (customer_id, month_start);
        """
    )
    return con


@pytest.fixture(scope="module")
def db(demo_data: DemoSummary) -> Iterator[duckdb.DuckDBPyConnection]:
    """The panel connection for this module's demo data."""
    con = connect_panel(demo_data)
    yield con
    con.close()


def churn_rate(db: duckdb.DuckDBPyConnection, where: str) -> tuple[float, int]:
    """Realised monthly churn rate and number of customer-months of the panel rows matching ``where``."""
    rate, months = db.execute(f"SELECT avg(churned::INT), count(*) FROM panel WHERE {where}").fetchall()[0]
    assert months > 300, f"too few customer-months for a stable rate where {where}: {months}"
    return rate, months


def test_truth_has_one_row_per_active_customer_month(db: duckdb.DuckDBPyConnection) -> None:
    only_in_tables, only_in_truth = (
        db.execute(f"SELECT count(*) FROM ({query})").fetchall()[0][0]
        for query in (
            "SELECT customer_id, month_start FROM customer_months "
            "EXCEPT SELECT customer_id, month FROM true_churn_probability",
            "SELECT customer_id, month FROM true_churn_probability "
            "EXCEPT SELECT customer_id, month_start FROM customer_months",
        )
    )
    assert (only_in_tables, only_in_truth) == (0, 0)


def test_realised_churn_agrees_with_the_true_probabilities(db: duckdb.DuckDBPyConnection) -> None:
    realised = db.execute("SELECT avg(churned::INT) FROM customer_months").fetchall()[0][0]
    expected = db.execute("SELECT avg(p_churn) FROM true_churn_probability").fetchall()[0][0]
    assert 0.015 <= expected <= 0.025, f"mean true monthly churn {expected:.4f} outside 1.5-2.5%"
    assert abs(realised - expected) <= 0.12 * expected, f"realised {realised:.4f} vs true {expected:.4f}"


def test_open_complaints_at_month_start_raise_churn(db: duckdb.DuckDBPyConnection) -> None:
    with_open, _ = churn_rate(db, "open_complaints > 0")
    without, _ = churn_rate(db, "open_complaints = 0")
    assert with_open > 1.5 * without


def test_bundle_holders_churn_less_than_single_product_customers(db: duckdb.DuckDBPyConnection) -> None:
    bundle, _ = churn_rate(db, "holds_bundle")
    single, _ = churn_rate(db, "NOT holds_bundle AND products_held = 1")
    assert bundle < 0.75 * single


def test_month_to_month_customers_churn_more_than_in_term(db: duckdb.DuckDBPyConnection) -> None:
    month_to_month, _ = churn_rate(db, "longest_term = 0")
    in_term, _ = churn_rate(db, "longest_term > 0")
    assert month_to_month > 1.2 * in_term


def test_new_customers_churn_more_than_long_tenure_customers(db: duckdb.DuckDBPyConnection) -> None:
    new, _ = churn_rate(db, "tenure_months < 12")
    long_tenure, _ = churn_rate(db, "tenure_months > 36")
    assert new > 1.2 * long_tenure


def test_accepted_offers_with_a_known_positive_effect_lower_the_true_hazard(
    db: duckdb.DuckDBPyConnection,
) -> None:
    """Next month's true hazard relative to the offer month's, by acceptance and known effect (controls of the
    campaigns: what they would have been offered)."""
    ratios = dict(
        db.execute(
            """
            SELECT CASE WHEN e.treated AND e.sleeping_dog THEN 'sleeping_dog'
                        WHEN e.sleeping_dog THEN NULL
                        WHEN NOT e.treated AND e.hazard_multiplier < 1 THEN 'control_helpful'
                        WHEN e.accepted AND e.hazard_multiplier < 1 THEN 'accepted_helpful'
                        WHEN NOT e.accepted AND e.hazard_multiplier < 1 THEN 'declined_helpful'
                   END AS offer_group,
                   avg(after.p_churn / offer_month.p_churn) AS hazard_ratio
            FROM true_offer_effects e
            JOIN true_churn_probability offer_month
              ON offer_month.customer_id = e.customer_id
             AND offer_month.month = CAST(date_trunc('month', e.offered_at) AS DATE)
            JOIN true_churn_probability after
              ON after.customer_id = e.customer_id
             AND after.month = CAST(date_trunc('month', e.offered_at) + INTERVAL 1 MONTH AS DATE)
            GROUP BY ALL
            """
        ).fetchall()
    )
    # at-risk customers drift back towards the mean either way; an accepted helpful offer lowers it further
    assert ratios["accepted_helpful"] < ratios["declined_helpful"] - 0.05
    assert ratios["accepted_helpful"] < ratios["control_helpful"] - 0.05
    assert ratios["sleeping_dog"] > ratios["declined_helpful"]
    applied = db.execute(
        "SELECT count(*) FROM true_offer_effects e JOIN offers o USING (customer_id, offered_at, action, accepted) "
        "WHERE e.treated"
    ).fetchall()[0][0]
    assert applied == db.execute("SELECT count(*) FROM offers").fetchall()[0][0]
