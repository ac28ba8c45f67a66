"""Features and labels on a few hand-made customers, checked against values worked out by hand."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from features.engine import build_feature_table
from features.validation import load_tables

CONF = Path(__file__).resolve().parents[2] / "conf"
D = date(2024, 3, 1)  # the observation date most checks use; label window [D, D + 90) = [03-01, 05-30)
NEXT = date(2024, 4, 1)

TABLES = {
    "customers": """customer_id,signup_date,segment,region,channel,partner_since
1,2023-01-10,consumer,north,online,
2,2023-06-01,small_business,south,retail_store,
3,2024-03-01,consumer,east,referral,
4,2022-05-01,enterprise,west,partner,2024-02-15
5,2022-05-01,enterprise,west,partner,2024-03-01
6,2022-01-01,consumer,north,online,
7,2022-01-01,consumer,north,online,
8,2022-01-01,consumer,north,online,
""",
    "subscriptions": """customer_id,product,product_category,start_date,end_date,monthly_price,contract_term_months,bundle_id
1,broadband,broadband,2023-01-15,2024-01-15,30,12,B1
1,broadband,broadband,2024-01-15,,33,0,B1
1,tv,tv,2023-01-15,,10,24,B1
2,mobile,mobile,2023-06-05,2024-05-28,20,0,
2,mobile,mobile,2024-05-29,,20,0,
3,tv,tv,2024-03-01,,15,12,
4,security,security,2022-06-01,2024-05-30,25,0,
5,cloud,cloud,2022-06-01,2024-05-29,5,0,
6,mobile,mobile,2022-02-01,2024-03-20,20,0,
7,mobile,mobile,2022-02-01,2024-05-20,20,0,
7,mobile,mobile,2024-06-10,,20,0,
8,mobile,mobile,2022-02-01,2024-05-25,20,0,
8,mobile,mobile,2024-06-01,,20,0,
""",
    "orders": """customer_id,order_date,product_category,amount
1,2024-02-01,devices,100
1,2023-11-15,accessories,20
1,2024-03-01,devices,999
""",
    "complaints": """customer_id,opened_at,resolved_at,category,severity,satisfaction
6,2024-02-20 10:00:00,2024-03-05 09:00:00,network,high,2
6,2023-12-01 00:00:00,2023-12-03 12:00:00,billing,low,4
6,2024-03-01 08:00:00,,billing,critical,
""",
    "events": """customer_id,event_time,event_type,quantity
1,2024-01-20 10:00:00,login,
1,2024-02-25 10:00:00,login,
1,2024-02-29 23:59:59,usage,2.5
1,2024-03-01 00:00:00,login,
6,2024-02-10 10:00:00,login,
7,2024-02-10 10:00:00,login,
7,2024-05-30 09:00:00,login,
8,2024-02-10 10:00:00,login,
8,2024-05-29 09:00:00,login,
""",
    "referrals": """referrer_customer_id,referred_customer_id,referral_date
1,3,2024-02-20
1,,2024-03-01
""",
    "offers": """customer_id,offered_at,action,accepted,cost
6,2024-01-10 09:00:00,discount,true,10
6,2024-02-28 09:00:00,service_recovery_call,false,15
6,2024-03-01 09:00:00,price_lock,true,20
""",
}


def days(a: date, b: date) -> int:
    return (b - a).days


@pytest.fixture
def build(tmp_path: Path) -> Callable[..., dict[tuple[int, date], dict[str, Any]]]:
    """Build features and labels for the hand-made tables; returns rows keyed by (customer, date)."""
    for name, text in TABLES.items():
        (tmp_path / f"{name}.csv").write_text(text)

    def _build(label: str = "contractual", dates: tuple[date, ...] = (D, NEXT)) -> dict:
        tables = load_tables(tmp_path)
        features_cfg = OmegaConf.to_container(OmegaConf.load(CONF / "features" / "default.yaml"))
        label_cfg = OmegaConf.to_container(OmegaConf.load(CONF / "label" / f"{label}.yaml"))
        observation_cfg = {"data_end": "2025-01-01"}
        build = build_feature_table(
            tables.con, set(tables.report.present), features_cfg, observation_cfg, label_cfg,
            event_types=["login", "usage"], dates=list(dates),
        )  # fmt: skip
        assert build.plan.skipped == {}
        frame = tables.con.execute("SELECT * FROM feature_table").df()
        return {
            (int(r["customer_id"]), r["observation_date"].date()): r.to_dict() for _, r in frame.iterrows()
        }

    return _build


def test_grid_holds_customers_active_before_the_date(build) -> None:
    rows = build()
    at_d = sorted(c for c, d in rows if d == D)
    assert at_d == [1, 2, 4, 5, 6, 7, 8]  # customer 3 signs up and starts on D itself: not yet a customer
    assert (3, NEXT) in rows
    assert (6, NEXT) not in rows  # customer 6's only subscription ended on 2024-03-20


def test_tenure_bundles_cross_sell(build) -> None:
    c1 = build()[(1, D)]
    assert c1["days_since_signup"] == days(date(2023, 1, 10), D)
    assert c1["tenure_days"] == days(date(2023, 1, 15), D)
    assert (c1["active_products"], c1["bundled_products"], c1["distinct_bundles"]) == (2, 2, 1)
    assert c1["products_dropped_90d"] == 0  # the broadband period that ended on 01-15 was continued
    assert c1["categories_held"] == 2  # broadband, tv
    assert c1["categories_ever"] == 4  # + devices, accessories (the order on D is not seen)
    assert c1["categories_bought_365d"] == 2
    assert c1["categories_added_90d"] == 1  # devices, first bought 2024-02-01


def test_spend_and_price_increase(build) -> None:
    c1 = build()[(1, D)]
    assert c1["monthly_revenue"] == pytest.approx(43.0)
    assert c1["monthly_revenue_90d_ago"] == pytest.approx(40.0)  # 2023-12-02: broadband at 30 + tv at 10
    assert c1["price_increase_pct_90d"] == pytest.approx(0.10)
    assert (c1["orders_30d"], c1["orders_90d"], c1["orders_365d"]) == (1, 1, 2)
    assert (c1["order_amount_30d"], c1["order_amount_365d"]) == (100.0, 120.0)
    assert c1["days_since_last_order"] == days(date(2024, 2, 1), D)
    assert c1["mean_order_amount"] == pytest.approx(60.0)


def test_contract_and_switching_costs(build) -> None:
    c1 = build()[(1, D)]
    assert c1["max_term_months"] == 24
    assert c1["in_term_products"] == 1  # tv, term ends 2025-01-15
    assert c1["month_to_month_share"] == pytest.approx(0.5)
    assert c1["days_to_term_end"] == days(D, date(2025, 1, 15))  # from start_date + term, not an end_date
    assert c1["days_since_last_renewal"] == days(date(2024, 1, 15), D)


def test_complaint_open_at_the_date_and_resolved_after_it(build) -> None:
    c6 = build()[(6, D)]
    assert (c6["complaints_30d"], c6["complaints_90d"], c6["complaints_365d"]) == (1, 1, 2)
    assert c6["open_complaints"] == 1  # opened 02-20, resolved 03-05: still open on D
    assert c6["open_severe_complaints"] == 1
    assert c6["days_since_last_complaint"] == days(date(2024, 2, 20), D)
    assert c6["mean_resolution_days"] == pytest.approx(2.5)  # only the complaint resolved before D
    assert c6["severe_share_365d"] == pytest.approx(0.5)
    assert c6["last_satisfaction"] == 4  # the later score is given at a resolution after D
    assert c6["last_complaint_category"] == "network"  # the critical one opened on D is not seen


def test_engagement_and_loyalty(build) -> None:
    rows = build()
    c1 = rows[(1, D)]
    # Per type, amounts: a login (no quantity) counts 1, the usage event its quantity 2.5; over every type,
    # rows. The login at 00:00 on D is not seen.
    assert (c1["events_30d"], c1["events_90d"]) == (2, 3)
    assert (c1["events_login_30d"], c1["events_usage_30d"]) == (1, 2.5)
    assert (c1["active_days_30d"], c1["active_days_90d"]) == (2, 3)  # 02-25, 02-29; + 01-20
    # Last 30 days [01-31, D): 2 events; the 60 before [12-02, 01-31): the login of 01-20.
    assert c1["events_trend_30d"] == pytest.approx((1 + 2) / (1 + 1 / 2))
    assert c1["events_login_trend"] == pytest.approx((1 + 1) / (1 + 1 / 2))
    assert c1["events_usage_trend"] == pytest.approx((1 + 2.5) / 1)
    assert c1["quantity_30d"] == pytest.approx(2.5)
    assert c1["days_since_last_event"] == 1
    assert (c1["referrals_made"], c1["referrals_made_365d"]) == (1, 1)
    assert (c1["offers_received"], c1["offers_accepted"]) == (0, 0)
    assert c1["days_since_last_offer"] is None or c1["days_since_last_offer"] != c1["days_since_last_offer"]
    c6 = rows[(6, D)]
    assert (c6["offers_received"], c6["offers_accepted"]) == (2, 1)
    assert c6["days_since_last_offer"] == 2 and c6["last_offer_action"] == "service_recovery_call"
    assert c6["events_30d"] == 1 and c6["days_since_last_event"] == days(date(2024, 2, 10), D)


def test_attributes_and_partner_status(build) -> None:
    rows = build()
    assert rows[(1, D)]["segment"] == "consumer" and rows[(1, D)]["channel"] == "online"
    assert rows[(1, D)]["observation_month"] == str(D.month)  # the calendar month, a category
    assert rows[(4, D)]["is_partner"] == 1
    assert rows[(5, D)]["is_partner"] == 0  # became a partner on D itself
    assert rows[(5, NEXT)]["is_partner"] == 1


def test_contractual_labels(build) -> None:
    rows = build()
    label = {c: rows[(c, D)]["churned"] for c, d in rows if d == D}
    assert label[1] == 0  # still subscribed
    assert label[2] == 0  # renewal one day late, inside the window
    assert label[4] == 0  # ends exactly on the window end D + 90: not within [D, D + 90)
    assert rows[(4, NEXT)]["churned"] == 1  # ... but within the next snapshot's window
    assert label[5] == 1  # ends on D + 89
    assert label[6] == 1
    assert label[7] == 1  # restarts 21 days later: beyond the 14-day grace
    assert label[8] == 0  # restarts 7 days later, after the window end: within grace, so a late renewal
    assert all(rows[key]["label_status"] == "labeled" for key in rows)


def test_unlabeled_when_the_window_passes_the_data_end(build) -> None:
    rows = build(dates=(date(2024, 10, 1), date(2024, 9, 1)))
    assert (
        rows[(1, date(2024, 10, 1))]["label_status"] == "window_after_data_end"
    )  # 10-01 + 90 + 14 > 2025-01-01
    assert rows[(1, date(2024, 9, 1))]["label_status"] == "labeled"


def test_inactivity_labels(build) -> None:
    rows = build(label="inactivity", dates=(D,))
    label = {c: r["churned"] for (c, _), r in rows.items()}
    # Population: an order or event in the 90 days before D.
    assert sorted(label) == [1, 6, 7, 8]
    assert label[1] == 0  # the login at 00:00 on D opens the window
    assert label[6] == 1  # nothing after D
    assert label[7] == 1  # its next login is on D + 90, the first day after the window
    assert label[8] == 0  # login on D + 89


def build_tables(
    folder: Path,
    tables: Mapping[str, str],
    *,
    dates: tuple[date, ...] = (D,),
    label: str = "inactivity",
    **features: Any,
) -> tuple[dict[tuple[int, date], dict[str, Any]], list[str]]:
    """Features for other hand-made tables (default config, with `features` overriding its top-level keys,
    event types discovered from the data): rows keyed by (customer, date), and the feature names."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in tables.items():
        (folder / f"{name}.csv").write_text(text)
    loaded = load_tables(folder)
    features_cfg = OmegaConf.to_container(OmegaConf.load(CONF / "features" / "default.yaml")) | features
    label_cfg = OmegaConf.to_container(OmegaConf.load(CONF / "label" / f"{label}.yaml"))
    build = build_feature_table(
        loaded.con, set(loaded.report.present), features_cfg, {"data_end": "2025-01-01"}, label_cfg,
        dates=list(dates),
    )  # fmt: skip
    frame = loaded.con.execute("SELECT * FROM feature_table").df()
    rows = {(int(r["customer_id"]), r["observation_date"].date()): r.to_dict() for _, r in frame.iterrows()}
    return rows, build.plan.names


# A daily log: one row per day and type, the day's count in quantity (empty for a plain login).
DAILY_LOG = {
    "customers": "customer_id,signup_date\n1,2023-01-01\n",
    "events": """customer_id,event_time,event_type,quantity
1,2023-12-15 10:00:00,api_calls,2
1,2024-01-10 10:00:00,api_calls,4
1,2024-02-20 09:00:00,api_calls,5
1,2024-02-20 17:00:00,login,
1,2024-02-25 10:00:00,api_calls,3
1,2024-03-01 00:00:00,api_calls,100
""",
}


def test_event_quantities_are_summed_and_active_days_counted_once(tmp_path: Path) -> None:
    rows, _ = build_tables(tmp_path, DAILY_LOG)
    c1 = rows[(1, D)]
    # [01-31, D): api_calls 5 + 3, the login counts 1; over every type 3 rows (a call count and a login do
    # not add up); the 100 calls on D are not seen.
    assert (c1["events_api_calls_30d"], c1["events_login_30d"], c1["events_30d"]) == (8, 1, 3)
    assert c1["events_api_calls_90d"] == 2 + 4 + 5 + 3
    assert c1["quantity_30d"] == 8  # recorded quantities only
    assert (c1["active_days_30d"], c1["active_days_90d"]) == (2, 4)  # 02-20 (twice) and 02-25; + 12-15, 01-10


def test_per_type_trend_is_the_last_30_days_against_the_60_before(tmp_path: Path) -> None:
    rows, _ = build_tables(tmp_path, DAILY_LOG)
    c1 = rows[(1, D)]
    # api_calls: 8 in [01-31, D), 4 + 2 in [12-02, 01-31): per 30 days 8 against 3, each plus 1.
    assert c1["events_api_calls_trend"] == pytest.approx((1 + 8) / (1 + 6 / 2))
    assert c1["events_login_trend"] == pytest.approx(2.0)  # one login lately, none before
    assert c1["events_trend_30d"] == pytest.approx((1 + 3) / (1 + 2 / 2))  # rows: 3 lately, 2 before


def many_types(n: int) -> dict[str, str]:
    """Customer 1 with `n` event types: type_k occurs k times (so type_n is the most frequent)."""
    lines = [
        f"1,2024-02-{day:02d} 10:00:00,type_{k:02d}," for k in range(1, n + 1) for day in range(1, k + 1)
    ]
    return {
        "customers": "customer_id,signup_date\n1,2023-01-01\n",
        "events": "customer_id,event_time,event_type,quantity\n" + "\n".join(lines) + "\n",
    }


def test_more_than_eight_event_types_all_become_features_up_to_the_cap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows, names = build_tables(tmp_path / "all", many_types(12))
    per_type = {n for n in names if n.startswith("events_type_") and n.endswith("_30d")}
    assert per_type == {f"events_type_{k:02d}_30d" for k in range(1, 13)}
    assert rows[(1, D)]["events_type_03_30d"] == 3
    assert {f"events_type_{k:02d}_trend" for k in range(1, 13)} <= set(names)

    with caplog.at_level(logging.INFO, logger="features.engine"):
        _, capped = build_tables(tmp_path / "capped", many_types(12), max_event_types=10)
    kept = {n for n in capped if n.startswith("events_type_") and n.endswith("_30d")}
    assert kept == {f"events_type_{k:02d}_30d" for k in range(3, 13)}  # the two rarest are left out
    said = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert said == [
        "events: 12 event types; features for the 10 most frequent (features.max_event_types), 2 left out: "
        "type_02, type_01"
    ]


ORDERS_ONLY = {
    "customers": "customer_id,signup_date\n1,2023-01-01\n2,2023-01-01\n",
    "orders": """customer_id,order_date,product_category,amount
1,2023-10-15,shoes,60
1,2024-01-01,shoes,10
1,2024-01-01,socks,20
1,2024-01-11,shoes,30
1,2024-02-10,shoes,40
1,2024-03-01,shoes,999
2,2024-02-01,shoes,50
""",
}


def test_order_rhythm_by_hand(tmp_path: Path) -> None:
    rows, _ = build_tables(tmp_path, ORDERS_ONLY)
    c1 = rows[(1, D)]
    # Purchase days before D: 2023-10-15, 2024-01-01 (two orders), 01-11, 02-10; the order on D is not seen.
    assert (c1["order_days_30d"], c1["order_days_90d"], c1["order_days_365d"]) == (1, 3, 4)
    assert c1["orders_90d"] == 4  # rows, beside the three days
    gaps = [days(date(2023, 10, 15), date(2024, 1, 1)), 10, 30]
    assert gaps[0] == 78
    assert c1["order_gap_mean_days"] == pytest.approx(sum(gaps) / 3)
    assert c1["order_gap_last_days"] == 30
    assert c1["order_gap_last_vs_mean"] == pytest.approx(30 / (118 / 3))
    assert c1["days_since_last_order"] == 20
    assert c1["order_recency_vs_gap"] == pytest.approx(20 / (118 / 3))
    # Last 90 days [12-02, D): 10 + 20 + 30 + 40; the 90 before: 60; each plus the average order (160 / 5).
    assert c1["order_amount_trend_90d"] == pytest.approx((100 + 32) / (60 + 32))
    c2 = rows[(2, D)]  # one purchase: no rhythm yet
    assert c2["order_days_365d"] == 1
    rhythm = ["order_gap_mean_days", "order_gap_last_days", "order_gap_last_vs_mean", "order_recency_vs_gap"]
    assert all(c2[name] != c2[name] for name in rhythm)  # NaN
    assert c2["order_amount_trend_90d"] == pytest.approx((50 + 50) / (0 + 50))
