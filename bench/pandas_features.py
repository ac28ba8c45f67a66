"""A plain pandas reference of the point-in-time feature table and the contractual churn label.

Written from the documented meaning of every feature (conf/features/default.yaml, features/sources.py,
features/labels.py), not from the engine's SQL, so that tests can check the DuckDB engine against it and
the benchmark can compare the two on the same data. For each observation date it keeps the rows known
strictly before that date, hides values learned later (an end date, a resolution and its satisfaction
score, a partner date, the next period's start) unless they too lie before the date, groups per customer,
aggregates, and joins the result onto the customers holding a subscription at that date.

It reads the demo's Parquet tables (customers, subscriptions, orders, complaints, events, referrals,
offers) as they are written by `features.demo.dated`, and is meant for data that fits in memory.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

SEVERE = ("high", "critical")
RENEWAL_GAP_DAYS = 31  # a period starting at most this long after the previous one ended continues it
EVENT_LOOKBACK_DAYS = 365
NO_RECENT_EVENT_DAYS = 366


@dataclass(frozen=True)
class InputTables:
    """The input tables as pandas frames, with the columns derived once from each table's full history."""

    customers: pd.DataFrame
    subscriptions: pd.DataFrame
    orders: pd.DataFrame
    complaints: pd.DataFrame
    events: pd.DataFrame
    referrals: pd.DataFrame
    offers: pd.DataFrame
    first_category_dates: pd.DataFrame  # customer_id, product_category, first_date (held or bought)


def event_type_name(event_type: str) -> str:
    """The column-safe name of an event type, as in the engine's column names ('Page View' -> 'page_view')."""
    name = re.sub(r"[^a-z0-9]+", "_", event_type.lower()).strip("_")
    return name if name and name[0].isalpha() else f"t_{name}"


def feature_columns(event_types: Sequence[str], windows: Sequence[int] = (30, 90, 365)) -> list[str]:
    """The feature columns, in the order of the engine's feature table."""
    per_window = [f"complaints_{w}d" for w in windows]
    return [
        "days_since_signup", "tenure_days", "observation_month",
        "active_products", "bundled_products", "distinct_bundles", "products_dropped_90d",
        "categories_held", "categories_ever", "categories_bought_365d", "categories_added_90d",
        *per_window, "open_complaints", "open_severe_complaints", "days_since_last_complaint",
        "mean_resolution_days", "severe_share_365d", "last_satisfaction", "last_complaint_category",
        "monthly_revenue", "monthly_revenue_90d_ago", "price_increase_pct_90d",
        *[f"orders_{w}d" for w in windows], *[f"order_amount_{w}d" for w in windows],
        "days_since_last_order", "mean_order_amount",
        *[f"order_days_{w}d" for w in windows], "order_gap_mean_days", "order_gap_last_days",
        "order_gap_last_vs_mean", "order_recency_vs_gap", "order_amount_trend_90d",
        "max_term_months", "in_term_products", "month_to_month_share", "days_to_term_end",
        "days_since_last_renewal",
        *[f"events_{w}d" for w in windows], *[f"active_days_{w}d" for w in windows],
        *[f"events_{event_type_name(t)}_{w}d" for w in windows for t in event_types],
        *[f"events_{event_type_name(t)}_trend" for t in event_types],
        "events_trend_30d", "quantity_30d", "days_since_last_event",
        "referrals_made", "referrals_made_365d", "offers_received", "offers_accepted",
        "days_since_last_offer", "last_offer_action",
        "segment", "region", "channel", "is_partner",
    ]  # fmt: skip


CATEGORICAL = (
    "observation_month",
    "last_complaint_category",
    "last_offer_action",
    "segment",
    "region",
    "channel",
)
FLOATING = (
    "mean_resolution_days", "severe_share_365d", "monthly_revenue", "monthly_revenue_90d_ago",
    "price_increase_pct_90d", "mean_order_amount", "month_to_month_share", "events_trend_30d",
    "quantity_30d", "order_gap_mean_days", "order_gap_last_vs_mean", "order_recency_vs_gap",
)  # fmt: skip
FLOATING_PREFIXES = ("order_amount_", "events_")  # events_*: sums of quantity, trends


def _read(tables_dir: Path, name: str, columns: list[str], dictionary: Sequence[str] = ()) -> pd.DataFrame:
    """One table (a `<name>.parquet` file or a `<name>/` folder of parts) with the given columns."""
    path = tables_dir / f"{name}.parquet"
    if not path.exists():
        path = tables_dir / name
    if not path.exists():
        raise FileNotFoundError(f"no {name} table in {tables_dir}")
    table = pq.read_table(path, columns=columns, read_dictionary=list(dictionary) or None)
    return table.to_pandas(date_as_object=False)


def _add_months(days: pd.Series, months: pd.Series) -> pd.Series:
    """`days` plus `months` calendar months, the day clamped to the target month's last day."""
    day = days.to_numpy(dtype="datetime64[D]")
    month = day.astype("datetime64[M]")
    target = month + months.to_numpy(dtype=np.int64).astype("timedelta64[M]")
    day_of_month = (day - month.astype("datetime64[D]")).astype(np.int64)
    month_length = ((target + 1).astype("datetime64[D]") - target.astype("datetime64[D]")).astype(np.int64)
    result = target.astype("datetime64[D]") + np.minimum(day_of_month, month_length - 1)
    return pd.Series(result, index=days.index).astype("datetime64[s]")


def _subscription_history(subscriptions: pd.DataFrame) -> pd.DataFrame:
    """Subscription periods with their neighbours for the same product and the committed term's end."""
    periods = subscriptions.sort_values(
        ["customer_id", "product", "start_date", "end_date"], na_position="last", kind="stable"
    ).reset_index(drop=True)
    same_product = periods.groupby(["customer_id", "product"], sort=False)
    previous_price = same_product["monthly_price"].shift(1)
    previous_end_date = same_product["end_date"].shift(1)
    next_start_date = same_product["start_date"].shift(-1)
    has_term = periods["contract_term_months"] > 0
    term_end_date = _add_months(periods["start_date"], periods["contract_term_months"].clip(lower=0))
    continues_previous = previous_end_date.notna() & (
        previous_end_date >= periods["start_date"] - pd.Timedelta(days=RENEWAL_GAP_DAYS)
    )
    price_change_pct = ((periods["monthly_price"] - previous_price) / previous_price).where(
        (previous_price > 0) & continues_previous
    )
    return periods.assign(
        next_start_date=next_start_date,
        term_end_date=term_end_date.where(has_term),
        continued_from_previous=continues_previous,
        price_change_pct=price_change_pct,
    )


def load_input_tables(tables_dir: Path) -> InputTables:
    """Read the input tables and derive the history columns that do not depend on the observation date."""
    tables_dir = Path(tables_dir)
    customers = _read(
        tables_dir,
        "customers",
        ["customer_id", "signup_date", "segment", "region", "channel", "partner_since"],
    )
    subscriptions = _read(
        tables_dir,
        "subscriptions",
        ["customer_id", "product", "product_category", "start_date", "end_date", "monthly_price",
         "contract_term_months", "bundle_id"],
    )  # fmt: skip
    orders = _read(tables_dir, "orders", ["customer_id", "order_date", "product_category", "amount"])
    complaints = _read(
        tables_dir,
        "complaints",
        ["customer_id", "opened_at", "resolved_at", "category", "severity", "satisfaction"],
    )
    events = _read(
        tables_dir,
        "events",
        ["customer_id", "event_time", "event_type", "quantity"],
        dictionary=["event_type"],
    )
    referrals = _read(tables_dir, "referrals", ["referrer_customer_id", "referral_date"])
    offers = _read(tables_dir, "offers", ["customer_id", "offered_at", "action", "accepted"])

    first_activity = pd.concat(
        [
            subscriptions.groupby("customer_id")["start_date"].min(),
            orders.groupby("customer_id")["order_date"].min(),
            events.groupby("customer_id")["event_time"].min().dt.floor("D"),
        ],
        axis=1,
    ).min(axis=1)
    customers = customers.assign(first_activity_date=customers["customer_id"].map(first_activity)).set_index(
        "customer_id", drop=False
    )

    categories = pd.concat(
        [
            subscriptions[["customer_id", "product_category", "start_date"]].rename(
                columns={"start_date": "first_date"}
            ),
            orders[["customer_id", "product_category", "order_date"]].rename(
                columns={"order_date": "first_date"}
            ),
        ],
        ignore_index=True,
    )
    first_category_dates = categories.groupby(["customer_id", "product_category"], as_index=False)[
        "first_date"
    ].min()
    return InputTables(
        customers=customers,
        subscriptions=_subscription_history(subscriptions),
        orders=orders,
        complaints=complaints,
        events=events,
        referrals=referrals.rename(columns={"referrer_customer_id": "customer_id"}),
        offers=offers,
        first_category_dates=first_category_dates,
    )


def _known_before(rows: pd.DataFrame, column: str, observation: pd.Timestamp, grid: pd.Index) -> pd.DataFrame:
    """Rows of the grid's customers dated strictly before the observation date."""
    return rows[(rows[column] < observation) & rows["customer_id"].isin(grid)]


def _masked(values: pd.Series, known_from: pd.Series, observation: pd.Timestamp) -> pd.Series:
    """Values hidden (missing) unless the date that makes them known lies before the observation date."""
    return values.where(known_from < observation)


def _days_since(observation: pd.Timestamp, moments: pd.Series) -> pd.Series:
    """Whole days from each moment's calendar day to the observation date."""
    return (observation - moments.dt.floor("D")).dt.days


def _count(rows: pd.DataFrame, condition: pd.Series | None = None) -> pd.Series:
    """Rows per customer (those meeting `condition`, if given)."""
    selected = rows if condition is None else rows[condition]
    return selected.groupby("customer_id").size()


def _distinct(rows: pd.DataFrame, column: str, condition: pd.Series | None = None) -> pd.Series:
    """Distinct non-missing values of `column` per customer (among rows meeting `condition`)."""
    selected = rows if condition is None else rows[condition]
    return selected.groupby("customer_id")[column].nunique()


def _value_at_latest(rows: pd.DataFrame, value: str, moment: str) -> pd.Series:
    """Per customer, `value` on the row with the latest non-missing `moment` (the value may be missing)."""
    dated = rows[rows[moment].notna()].sort_values(["customer_id", moment], kind="stable")
    latest = dated.drop_duplicates("customer_id", keep="last")
    return latest.set_index("customer_id")[value]


def _holding_customers(subscriptions: pd.DataFrame, observation: pd.Timestamp) -> pd.Index:
    """Customers holding a subscription at the observation date (started before it, not ended before it)."""
    held = (subscriptions["start_date"] < observation) & (
        subscriptions["end_date"].isna() | (subscriptions["end_date"] >= observation)
    )
    return pd.Index(np.sort(subscriptions.loc[held, "customer_id"].unique()), name="customer_id")


def _tenure_and_attributes(
    customers: pd.DataFrame, grid: pd.Index, observation: pd.Timestamp
) -> pd.DataFrame:
    """Signup, first activity, the observation's calendar month, segment, region, channel and partner status
    of the grid's customers."""
    rows = customers.reindex(grid)
    first_activity = _masked(rows["first_activity_date"], rows["first_activity_date"], observation)
    partner_since = _masked(rows["partner_since"], rows["partner_since"], observation)
    return pd.DataFrame(
        {
            "days_since_signup": (observation - rows["signup_date"]).dt.days,
            "tenure_days": (observation - first_activity).dt.days,
            "observation_month": str(observation.month),
            "segment": rows["segment"],
            "region": rows["region"],
            "channel": rows["channel"],
            "is_partner": partner_since.notna().astype(np.int64),
        },
        index=grid,
    )


def _holdings(subscriptions: pd.DataFrame, grid: pd.Index, observation: pd.Timestamp) -> pd.DataFrame:
    """Products held, bundles, drops, contract terms, renewals and recurring revenue (subscriptions)."""
    periods = _known_before(subscriptions, "start_date", observation, grid)
    end_date = _masked(periods["end_date"], periods["end_date"], observation)
    next_start_date = _masked(periods["next_start_date"], periods["next_start_date"], observation)
    active = end_date.isna()
    ninety_days_ago = observation - pd.Timedelta(days=90)
    running_term = active & (periods["term_end_date"] > observation)
    no_running_term = (periods["term_end_date"].isna() | (periods["term_end_date"] <= observation)).astype(
        float
    )
    active_periods = periods[active]
    renewals = periods[periods["continued_from_previous"]]
    features = {
        "active_products": _count(periods, active),
        "bundled_products": _count(periods, active & periods["bundle_id"].notna()),
        "distinct_bundles": _distinct(periods, "bundle_id", active),
        "products_dropped_90d": _count(periods, (end_date >= ninety_days_ago) & next_start_date.isna()),
        "max_term_months": active_periods.groupby("customer_id")["contract_term_months"].max(),
        "in_term_products": _count(periods, running_term),
        "month_to_month_share": no_running_term[active].groupby(active_periods["customer_id"]).mean(),
        "days_to_term_end": (periods.loc[running_term, "term_end_date"] - observation)
        .dt.days.groupby(periods.loc[running_term, "customer_id"])
        .min(),
        "days_since_last_renewal": (
            observation - renewals.groupby("customer_id")["start_date"].max()
        ).dt.days,
        "monthly_revenue": active_periods.groupby("customer_id")["monthly_price"].sum(),
        "monthly_revenue_90d_ago": periods[
            (periods["start_date"] < ninety_days_ago) & (end_date.isna() | (end_date >= ninety_days_ago))
        ]
        .groupby("customer_id")["monthly_price"]
        .sum(),
        "price_increase_pct_90d": periods[periods["start_date"] >= ninety_days_ago]
        .groupby("customer_id")["price_change_pct"]
        .max(),
    }
    frame = pd.DataFrame(features).reindex(grid)
    zero_when_none = [
        "active_products", "bundled_products", "distinct_bundles", "products_dropped_90d", "max_term_months",
        "in_term_products", "monthly_revenue", "monthly_revenue_90d_ago", "price_increase_pct_90d",
    ]  # fmt: skip
    return frame.fillna(dict.fromkeys(zero_when_none, 0))


def _categories(
    subscriptions: pd.DataFrame,
    orders: pd.DataFrame,
    first_category_dates: pd.DataFrame,
    grid: pd.Index,
    observation: pd.Timestamp,
) -> pd.DataFrame:
    """Breadth across product categories: held now, ever held or bought, bought lately, newly added."""
    periods = _known_before(subscriptions, "start_date", observation, grid)
    held = periods[periods["end_date"].isna() | (periods["end_date"] >= observation)]
    bought = _known_before(orders, "order_date", observation, grid)
    ever = pd.concat(
        [periods[["customer_id", "product_category"]], bought[["customer_id", "product_category"]]]
    )
    year_ago = observation - pd.Timedelta(days=365)
    ninety_days_ago = observation - pd.Timedelta(days=90)
    firsts = first_category_dates[
        first_category_dates["customer_id"].isin(grid)
        & (first_category_dates["first_date"] >= ninety_days_ago)
        & (first_category_dates["first_date"] < observation)
    ]
    features = {
        "categories_held": _distinct(held, "product_category"),
        "categories_ever": _distinct(ever, "product_category"),
        "categories_bought_365d": _distinct(bought, "product_category", bought["order_date"] >= year_ago),
        "categories_added_90d": _distinct(firsts, "product_category"),
    }
    return pd.DataFrame(features).reindex(grid).fillna(0)


def _complaints(
    complaints: pd.DataFrame, grid: pd.Index, observation: pd.Timestamp, windows: Sequence[int]
) -> pd.DataFrame:
    """Complaint counts, open complaints, resolution times, severity share, last satisfaction and category."""
    opened = _known_before(complaints, "opened_at", observation, grid)
    resolved_at = _masked(opened["resolved_at"], opened["resolved_at"], observation)
    satisfaction = _masked(opened["satisfaction"], opened["resolved_at"], observation)
    is_open = resolved_at.isna()
    severe = opened["severity"].isin(SEVERE)
    year_ago = observation - pd.Timedelta(days=365)
    last_year = opened["opened_at"] >= year_ago
    resolution_days = (resolved_at - opened["opened_at"]).dt.total_seconds() / 86400.0
    known = opened.assign(resolved_at=resolved_at, satisfaction=satisfaction)
    features = {
        **{
            f"complaints_{w}d": _count(opened, opened["opened_at"] >= observation - pd.Timedelta(days=w))
            for w in windows
        },
        "open_complaints": _count(opened, is_open),
        "open_severe_complaints": _count(opened, is_open & severe),
        "days_since_last_complaint": _days_since(
            observation, opened.groupby("customer_id")["opened_at"].max()
        ),
        "mean_resolution_days": resolution_days.groupby(opened["customer_id"]).mean(),
        "severe_share_365d": severe[last_year]
        .astype(float)
        .groupby(opened.loc[last_year, "customer_id"])
        .mean(),
        "last_satisfaction": _value_at_latest(known, "satisfaction", "resolved_at"),
        "last_complaint_category": _value_at_latest(known, "category", "opened_at"),
    }
    frame = pd.DataFrame(features).reindex(grid)
    counts = [*(f"complaints_{w}d" for w in windows), "open_complaints", "open_severe_complaints"]
    return frame.fillna(dict.fromkeys(counts, 0))


def _purchases(
    orders: pd.DataFrame, grid: pd.Index, observation: pd.Timestamp, windows: Sequence[int]
) -> pd.DataFrame:
    """Orders, amounts and purchase days per window, days since the last order, average order amount, the
    gaps between purchase days and the 90-day spend trend."""
    bought = _known_before(orders, "order_date", observation, grid)
    by_customer = bought.groupby("customer_id")
    features: dict[str, pd.Series] = {}
    for w in windows:
        recent = bought["order_date"] >= observation - pd.Timedelta(days=w)
        features[f"orders_{w}d"] = _count(bought, recent)
    for w in windows:
        recent = bought["order_date"] >= observation - pd.Timedelta(days=w)
        features[f"order_amount_{w}d"] = bought[recent].groupby("customer_id")["amount"].sum()
    last_order = by_customer["order_date"].max()
    days_since_last_order = (observation - last_order).dt.days
    mean_amount = by_customer["amount"].mean()
    features["days_since_last_order"] = days_since_last_order
    features["mean_order_amount"] = mean_amount
    for w in windows:
        recent = bought["order_date"] >= observation - pd.Timedelta(days=w)
        features[f"order_days_{w}d"] = _distinct(bought, "order_date", recent)

    # Gaps between consecutive distinct purchase days; none with fewer than two days.
    purchase_days = (
        bought[["customer_id", "order_date"]].drop_duplicates().sort_values(["customer_id", "order_date"])
    )
    gaps = (purchase_days["order_date"] - purchase_days.groupby("customer_id")["order_date"].shift(1)).dt.days
    gaps_by_customer = gaps.groupby(purchase_days["customer_id"])
    mean_gap = gaps_by_customer.mean()
    last_gap = gaps_by_customer.last()  # the gap ending on the last purchase day
    features["order_gap_mean_days"] = mean_gap
    features["order_gap_last_days"] = last_gap
    features["order_gap_last_vs_mean"] = last_gap / mean_gap
    features["order_recency_vs_gap"] = days_since_last_order / mean_gap

    # Spend in the last 90 days against the 90 before, each plus the customer's average order.
    age = (observation - bought["order_date"]).dt.days
    last_90 = bought["amount"].where(age <= 90, 0.0).groupby(bought["customer_id"]).sum()
    previous_90 = bought["amount"].where((age > 90) & (age <= 180), 0.0).groupby(bought["customer_id"]).sum()
    denominator = (previous_90 + mean_amount).replace(0.0, np.nan)
    features["order_amount_trend_90d"] = (last_90 + mean_amount) / denominator
    frame = pd.DataFrame(features).reindex(grid)
    zero_when_none = [
        *(f"orders_{w}d" for w in windows), *(f"order_amount_{w}d" for w in windows),
        *(f"order_days_{w}d" for w in windows),
    ]  # fmt: skip
    return frame.fillna(dict.fromkeys(zero_when_none, 0) | {"order_amount_trend_90d": 1.0})


def _engagement(
    events: pd.DataFrame,
    grid: pd.Index,
    observation: pd.Timestamp,
    windows: Sequence[int],
    event_types: Sequence[str],
) -> pd.DataFrame:
    """Events (rows, over every type) and per type their amounts (quantity, 1 for a row without one) and
    active days per window over the last year, the 30-against-previous-60-days trends, quantity, days since
    the last event."""
    since = observation - pd.Timedelta(days=EVENT_LOOKBACK_DAYS)
    recent = events[
        (events["event_time"] >= since)
        & (events["event_time"] < observation)
        & events["customer_id"].isin(grid)
    ]
    time = recent["event_time"]
    amount = recent["quantity"].fillna(1.0)
    customer = recent["customer_id"]
    in_window = {w: time >= observation - pd.Timedelta(days=w) for w in (*windows, 30, 90)}
    previous_60d = in_window[90] & ~in_window[30]
    is_type = {t: recent["event_type"] == t for t in event_types}
    masks: dict[str, pd.Series] = {f"events_{w}d": in_window[w] for w in windows}
    for w in windows:
        for event_type in event_types:
            masks[f"events_{event_type_name(event_type)}_{w}d"] = is_type[event_type] & in_window[w]
    masks["last_30d"] = in_window[30]
    masks["previous_60d"] = previous_60d
    for event_type in event_types:
        masks[f"{event_type}/last_30d"] = is_type[event_type] & in_window[30]
        masks[f"{event_type}/previous_60d"] = is_type[event_type] & previous_60d
    sums = (
        pd.DataFrame({name: amount.where(mask, 0.0) for name, mask in masks.items()}).groupby(customer).sum()
    )
    # the totals over every type count rows (amounts of different types do not add up)
    counted = [f"events_{w}d" for w in windows] + ["last_30d", "previous_60d"]
    sums[counted] = pd.DataFrame({n: masks[n].astype(float) for n in counted}).groupby(customer).sum()

    def trend(last: pd.Series, previous: pd.Series) -> pd.Series:
        return (1.0 + last) / (1.0 + previous / 2.0)

    day = time.dt.floor("D")
    active_days = {
        f"active_days_{w}d": day[in_window[w]].groupby(customer[in_window[w]]).nunique() for w in windows
    }
    type_trends = {
        f"events_{event_type_name(t)}_trend": trend(sums[f"{t}/last_30d"], sums[f"{t}/previous_60d"])
        for t in event_types
    }
    quantity = recent["quantity"].where(in_window[30]).groupby(customer).sum()
    last_event = recent.groupby("customer_id")["event_time"].max()
    totals = [f"events_{w}d" for w in windows]
    per_type = [f"events_{event_type_name(t)}_{w}d" for w in windows for t in event_types]
    frame = pd.concat(
        [
            sums[totals],
            pd.DataFrame(active_days, index=sums.index),
            sums[per_type],
            pd.DataFrame(type_trends, index=sums.index),
        ],
        axis=1,
    ).assign(
        events_trend_30d=trend(sums["last_30d"], sums["previous_60d"]),
        quantity_30d=quantity,
        days_since_last_event=_days_since(observation, last_event),
    )
    frame = frame.reindex(grid)
    fills = dict.fromkeys([*totals, *active_days, *per_type], 0) | dict.fromkeys(type_trends, 1.0)
    fills |= {"events_trend_30d": 1.0, "quantity_30d": 0.0, "days_since_last_event": NO_RECENT_EVENT_DAYS}
    return frame.fillna(fills)


def _loyalty(
    referrals: pd.DataFrame, offers: pd.DataFrame, grid: pd.Index, observation: pd.Timestamp
) -> pd.DataFrame:
    """Referrals made, retention offers received and accepted, and the last offer."""
    referred = _known_before(referrals, "referral_date", observation, grid)
    offered = _known_before(offers, "offered_at", observation, grid)
    year_ago = observation - pd.Timedelta(days=365)
    features = {
        "referrals_made": _count(referred),
        "referrals_made_365d": _count(referred, referred["referral_date"] >= year_ago),
        "offers_received": _count(offered),
        "offers_accepted": _count(offered, offered["accepted"].fillna(False).astype(bool)),
        "days_since_last_offer": _days_since(observation, offered.groupby("customer_id")["offered_at"].max()),
        "last_offer_action": _value_at_latest(offered, "action", "offered_at"),
    }
    frame = pd.DataFrame(features).reindex(grid)
    counts = ["referrals_made", "referrals_made_365d", "offers_received", "offers_accepted"]
    return frame.fillna(dict.fromkeys(counts, 0))


def _contractual_label(
    subscriptions: pd.DataFrame,
    grid: pd.Index,
    observation: pd.Timestamp,
    *,
    horizon_days: int,
    lead_days: int,
    grace_days: int,
    data_end: pd.Timestamp,
) -> pd.DataFrame:
    """churned (1/0/missing) and label_status of the grid's customers at one observation date."""
    window_start = observation + pd.Timedelta(days=lead_days)
    window_end = observation + pd.Timedelta(days=lead_days + horizon_days)
    grace = pd.Timedelta(days=grace_days)
    if window_end + grace > data_end:
        return pd.DataFrame(
            {"churned": pd.Series(pd.NA, index=grid, dtype="Int64"), "label_status": "window_after_data_end"},
            index=grid,
        )
    held = subscriptions[(subscriptions["start_date"] < window_end) & subscriptions["customer_id"].isin(grid)]
    ended_in_time = held["end_date"].notna() & (held["end_date"] < window_end)
    all_ended = ended_in_time.groupby(held["customer_id"]).all().reindex(grid, fill_value=False)
    last_end = held.groupby("customer_id")["end_date"].max().reindex(grid)

    leavers = pd.DataFrame(
        {"customer_id": grid[all_ended.to_numpy()], "last_end": last_end[all_ended].to_numpy()}
    )
    restarts = leavers.merge(subscriptions[["customer_id", "start_date"]], on="customer_id")
    restarts = restarts[
        (restarts["start_date"] >= restarts["last_end"])
        & (restarts["start_date"] <= restarts["last_end"] + grace)
    ]
    restarted = pd.Series(grid.isin(restarts["customer_id"].unique()), index=grid)

    gone = all_ended & ~restarted
    churned = pd.Series(0, index=grid, dtype="Int64")
    churned[gone & (last_end >= window_start)] = 1
    churned[gone & (last_end < window_start)] = pd.NA
    status = pd.Series("labeled", index=grid, dtype=object)
    status[gone & (last_end < window_start)] = "churned_before_window"
    return pd.DataFrame({"churned": churned, "label_status": status}, index=grid)


def _features_at(
    tables: InputTables,
    observation: pd.Timestamp,
    *,
    event_types: Sequence[str],
    windows: Sequence[int],
    horizon_days: int,
    lead_days: int,
    grace_days: int,
    data_end: pd.Timestamp,
) -> pd.DataFrame:
    """The feature table's rows for one observation date."""
    grid = _holding_customers(tables.subscriptions, observation)
    parts = [
        _tenure_and_attributes(tables.customers, grid, observation),
        _holdings(tables.subscriptions, grid, observation),
        _categories(tables.subscriptions, tables.orders, tables.first_category_dates, grid, observation),
        _complaints(tables.complaints, grid, observation, windows),
        _purchases(tables.orders, grid, observation, windows),
        _engagement(tables.events, grid, observation, windows, event_types),
        _loyalty(tables.referrals, tables.offers, grid, observation),
        _contractual_label(
            tables.subscriptions, grid, observation,
            horizon_days=horizon_days, lead_days=lead_days, grace_days=grace_days, data_end=data_end,
        ),
    ]  # fmt: skip
    frame = pd.concat(parts, axis=1)
    frame.insert(0, "observation_date", observation)
    log.info("observation date %s: %d customers", observation.date(), len(grid))
    return frame.reset_index()


def _column_types(columns: Sequence[str]) -> dict[str, str]:
    """Output dtype per feature column: float64, nullable Int64, or object for categorical features."""
    types = {}
    for column in columns:
        if column in CATEGORICAL:
            types[column] = "object"
        elif column in FLOATING or column.startswith(FLOATING_PREFIXES):
            types[column] = "float64"
        else:
            types[column] = "Int64"
    return types


def build_features_pandas(
    tables_dir: Path,
    dates: list[date],
    event_types: list[str],
    *,
    windows: Sequence[int] = (30, 90, 365),
    horizon_days: int = 90,
    lead_days: int = 0,
    grace_days: int = 14,
    data_end: date,
) -> pd.DataFrame:
    """The point-in-time feature table with the contractual churn label, one row per customer and date.

    Columns as in the engine's `feature_table`: customer_id, observation_date, the features, churned and
    label_status; rows ordered by observation_date, customer_id.
    """
    tables = load_input_tables(Path(tables_dir))
    end = pd.Timestamp(data_end)
    frames = [
        _features_at(
            tables, pd.Timestamp(observation),
            event_types=event_types, windows=windows, horizon_days=horizon_days, lead_days=lead_days,
            grace_days=grace_days, data_end=end,
        )
        for observation in sorted(dates)
    ]  # fmt: skip
    columns = feature_columns(event_types, windows)
    table = pd.concat(frames, ignore_index=True)
    del frames
    table = table[["customer_id", "observation_date", *columns, "churned", "label_status"]]
    return table.astype(_column_types(columns) | {"churned": "Int64", "label_status": "object"})
