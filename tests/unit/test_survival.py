"""Survival lifetime value, the person-period rows behind the hazard model, and the hazard model itself."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from decisions.value import (
    ValueParameters,
    lifetime_value,
    scaled_hazard,
    survival_lifetime_value,
)
from features.dialect import install_duckdb_functions
from features.labels import churn_dates_sql, person_period_sql
from models.survival import LEAD_COLUMN, ConstantHazard, DiscreteHazard

CONTRACTUAL = {"name": "contractual", "lead_days": 0, "horizon_days": 90, "grace_days": 14}
INACTIVITY = {"name": "inactivity", "lead_days": 0, "horizon_days": 30, "grace_days": 0}


def test_survival_clv_never_exceeds_margin_over_discount() -> None:
    rng = np.random.default_rng(3)
    curves = np.cumprod(1 - rng.uniform(0, 0.1, size=(200, 600)), axis=1)
    curves[0] = 1.0  # never leaves: the perpetuity is the bound, reached only in the limit
    margin = rng.uniform(0, 100, size=200)
    d = (1.10) ** (1 / 12) - 1
    value = survival_lifetime_value(curves, margin, 0.10)
    assert (value <= margin / d + 1e-9).all()
    assert value[0] == pytest.approx(margin[0] / d * (1 - (1 + d) ** -600))
    # an impossible curve above 1 is clipped, so still below the perpetuity
    assert (survival_lifetime_value(np.full((1, 5000), 1.5), 10.0, 0.10) <= 10.0 / d + 1e-9).all()


def test_constant_hazard_reproduces_lifetime_value() -> None:
    p, revenue = np.array([0.05, 0.3, 0.0, 0.9]), np.array([100.0, 40.0, 10.0, 250.0])
    before = lifetime_value(p, revenue, horizon_days=90, margin_rate=0.35, annual_discount_rate=0.10)
    value = ValueParameters(90, 0.35, 0.10, horizon_months=120, survival=ConstantHazard(90))
    assert value.curves(pd.DataFrame(index=range(4))) is None  # the closed form, exactly
    assert np.array_equal(value.lifetime_value(p, revenue, None), before)
    # and its curve r ** t summed over (practically) every month is that closed form
    curves = ConstantHazard(90).survival(pd.DataFrame(index=range(4)), 3000, p)
    assert survival_lifetime_value(curves, 0.35 * revenue, 0.10) == pytest.approx(before, rel=1e-9)
    # the ladder's CLV after a move keeps today's rule: churn probability times the multiplier
    moved = value.moved_lifetime_value(p, revenue + 5, None, 0.5)
    expected = lifetime_value(
        np.clip(p * 0.5, 0, 1), revenue + 5, horizon_days=90, margin_rate=0.35, annual_discount_rate=0.10
    )
    assert np.array_equal(moved, expected)


def test_scaled_hazard_multiplies_each_months_hazard() -> None:
    hazard = np.array([[0.1, 0.2, 0.05, 0.5]])
    curve = np.cumprod(1 - hazard, axis=1)
    assert scaled_hazard(curve, 1.0) == pytest.approx(curve)
    assert scaled_hazard(curve, 0.5) == pytest.approx(np.cumprod(1 - hazard / 2, axis=1))
    assert scaled_hazard(curve, 0.0) == pytest.approx(np.ones_like(curve))
    assert scaled_hazard(curve, 3.0)[0, -1] == 0.0  # a hazard above 1 is 1: gone


def _connection(tables: dict[str, pd.DataFrame]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    install_duckdb_functions(con)
    for name, frame in tables.items():
        con.register(f"{name}_frame", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_frame")
    return con


def _rows(con, label, snapshots: pd.DataFrame, leads, data_end: date) -> dict[int, list[tuple[int, int]]]:
    con.execute(
        f"CREATE OR REPLACE TABLE churn_dates AS {churn_dates_sql(label, {'subscriptions', 'orders'})}"
    )
    con.register("snapshots", snapshots)
    out = con.execute(person_period_sql(label, "snapshots", "churn_dates", leads, data_end)).fetchall()
    rows: dict[int, list[tuple[int, int]]] = {}
    for snapshot, lead, _, churned in out:
        rows.setdefault(snapshot, []).append((lead, churned))
    return rows


def test_person_period_rows_drop_months_after_churn_and_censor_at_the_data_end() -> None:
    d = date
    subscriptions = pd.DataFrame(
        {
            "customer_id": [1, 2, 2, 3, 4, 4],
            "start_date": [
                d(2023, 1, 1),
                d(2023, 1, 1),
                d(2023, 3, 20),
                d(2023, 1, 1),
                d(2023, 1, 1),
                d(2023, 5, 1),
            ],
            # 1 leaves on 2023-03-15; 2 renews 5 days late (no churn), then leaves 2023-06-10;
            # 3 never leaves; 4 leaves 2023-02-10 and comes back after the grace gap, then stays
            "end_date": [d(2023, 3, 15), d(2023, 3, 15), d(2023, 6, 10), None, d(2023, 2, 10), None],
        }
    )
    con = _connection({"subscriptions": subscriptions})
    snapshots = pd.DataFrame(
        {"snapshot": [10, 20, 30, 40], "customer_id": [1, 2, 3, 4], "observation_date": [d(2023, 2, 1)] * 4}
    )
    rows = _rows(con, CONTRACTUAL, snapshots, range(6), d(2023, 7, 1))
    # churn in month 2 (March): months 1 and 2 kept, nothing after
    assert rows[10] == [(0, 0), (1, 1)]
    # the late renewal is no churn; the leaving on 2023-06-10 falls in month 5 (June), whose end + grace
    # (2023-07-15) the data end (2023-07-01) does not confirm: censored, as are the months after it
    assert rows[20] == [(0, 0), (1, 0), (2, 0), (3, 0)]
    assert rows[30] == [(0, 0), (1, 0), (2, 0), (3, 0)]
    # customer 4's churn in February is their first after the date, so month 1 is a churn and nothing after
    assert rows[40] == [(0, 1)]
    # a later data end confirms June: customer 2 churns in month 5
    assert _rows(con, CONTRACTUAL, snapshots, [0, 2, 4, 5], d(2024, 1, 1))[20] == [(0, 0), (2, 0), (4, 1)]


def test_inactivity_churn_is_the_first_label_window_without_activity() -> None:
    d = date
    orders = pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 2, 2],
            # 1 buys every ~3 weeks until 2023-02-20, then nothing: gone from 2023-02-21 (a 30-day window
            # without an order follows); 2 buys on 2023-01-25 and again 2023-04-01: a gap from 2023-01-26
            "order_date": [d(2023, 1, 10), d(2023, 1, 31), d(2023, 2, 20), d(2023, 1, 25), d(2023, 4, 1)],
            "amount": [1.0] * 5,
        }
    )
    con = _connection({"orders": orders})
    snapshots = pd.DataFrame(
        {"snapshot": [1, 2, 3], "customer_id": [1, 2, 3], "observation_date": [d(2023, 2, 1)] * 3}
    )
    rows = _rows(con, INACTIVITY, snapshots, range(4), d(2023, 6, 1))
    assert rows[1] == [(0, 1)]  # gone on 2023-02-21, in month 1 (February)
    assert rows[2] == [(0, 1)]  # no order in [2023-02-01, 2023-03-03): churned at the date itself
    # customer 3 (no order here) never churns; month 4 (May) ends 2023-06-01 and needs a 30-day window
    # after its last day: censored at this data end
    assert rows[3] == [(0, 0), (1, 0), (2, 0)]


def test_discrete_hazard_survival_is_monotone_and_holds_the_last_hazard() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    risk = rng.uniform(0, 1, n)
    lead = rng.choice([0, 1, 2, 3, 6], n)
    churned = rng.uniform(0, 1, n) < 0.02 + 0.1 * risk
    rows = pd.DataFrame({"risk": risk, "segment": rng.choice(["a", "b"], n), LEAD_COLUMN: lead})
    model = DiscreteHazard(
        leads=[0, 1, 2, 3, 6], params={"n_estimators": 30, "min_child_samples": 50}, seasonal=False
    ).fit(rows, churned, ["risk", "segment"], ["segment"])
    X = pd.DataFrame({"risk": [0.05, 0.5, 0.95], "segment": ["a", "b", "zzz"]})
    curves = model.survival(X, 24)
    assert curves.shape == (3, 24)
    assert ((curves > 0) & (curves <= 1)).all() and (np.diff(curves, axis=1) <= 0).all()
    hazard = 1 - curves[:, 1:] / curves[:, :-1]
    assert hazard[:, 7:] == pytest.approx(np.repeat(hazard[:, [7]], 16, axis=1))  # flat after lead 6
    assert curves[2, -1] < curves[0, -1]  # the riskier customer leaves sooner


def test_the_survival_config_group_builds_both_models(make_cfg) -> None:
    from hydra.utils import instantiate

    assert isinstance(instantiate(make_cfg().survival), DiscreteHazard)
    assert isinstance(instantiate(make_cfg("survival=constant").survival), ConstantHazard)
    hazard = instantiate(make_cfg().survival)
    assert list(hazard.leads) == [0, 1, 2, 3, 5, 8, 12, 18, 24] and isinstance(hazard.params, dict)


def test_data_without_dates_falls_back_to_constant_retention_with_one_note(caplog) -> None:
    from models.survival import SurvivalData, fit_survival

    rows = pd.DataFrame({"customer_id": [1], "observation_date": [date(2024, 1, 1)], "x": [1.0]})
    data = SurvivalData(
        None, set(), {"name": "snapshot"}, date(2024, 6, 1), rows, ["x"], [], 0, 365.25, lambda r: 0.1, rows
    )
    with caplog.at_level("INFO", logger="models.survival"):
        fitted = fit_survival(DiscreteHazard(), data)
    assert isinstance(fitted.model, ConstantHazard) and fitted.model.horizon_days == 365.25
    assert fitted.metrics == {} and "falls back to survival=constant" in fitted.note
    assert caplog.text.count("falls back") == 1
