"""Point-in-time sources: the rows each feature family aggregates, as known on each observation date.

A source is a query over the validated tables (full history, with derived columns that only look backwards
from each row) plus two rules that make it point in time when joined to the observation grid:

- `known_at`: a row exists for an observation date only when this column is strictly before it;
- `masked`: columns whose value is learned later (an end date, a resolution, a score given at resolution)
  read as NULL unless the column that dates them is strictly before the observation date.

`post` columns are computed after masking (e.g. `is_active` from the masked end date). All SQL here is
plain ANSI SQL plus window functions and the `cw_*` functions of `features.dialect`, so the same sources
run on DuckDB and on Spark.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from features.contract import CONTRACT
from features.errors import ConfigError


@dataclass(frozen=True)
class Source:
    """One point-in-time source."""

    name: str
    requires_any: tuple[str, ...]
    sql: str  # one row per fact, with customer_id and the known_at column
    known_at: str
    masked: dict[str, str] = field(default_factory=dict)  # column -> column whose date makes it known
    post: dict[str, str] = field(default_factory=dict)  # column -> SQL over the masked columns


def _union(parts: list[str]) -> str:
    return "\nUNION ALL\n".join(parts)


def source_for(name: str, present: set[str], key: str = "features.families.*.source") -> Source:
    """The source called `name`, built from the tables present; ConfigError naming `key` if there is none."""
    builders = {
        "customers": _customers,
        "subscriptions": _subscriptions,
        "complaints": _complaints,
        "events": _events,
        "categories": _categories,
        "spend": _spend,
        "loyalty": _loyalty,
    }
    if name not in builders:
        raise ConfigError(f"{key}: unknown feature source {name!r}; known: {', '.join(sorted(builders))}")
    return builders[name](present)


def row_columns(source: Source, columns: Iterable[str]) -> tuple[str, ...]:
    """The columns a feature of the family may aggregate: the source query's `columns` (masked ones as known
    on the date), its `post` columns, and the snapshot's customer_id and observation_date."""
    names = ["customer_id", "observation_date", *columns, *source.post]
    return tuple(dict.fromkeys(names))


def _customers(present: set[str]) -> Source:
    firsts = []
    if "subscriptions" in present:
        firsts.append(
            "SELECT customer_id, min(start_date) AS first_date FROM subscriptions GROUP BY customer_id"
        )
    if "orders" in present:
        firsts.append("SELECT customer_id, min(order_date) AS first_date FROM orders GROUP BY customer_id")
    if "events" in present:
        firsts.append(
            "SELECT customer_id, CAST(min(event_time) AS DATE) AS first_date FROM events GROUP BY customer_id"
        )
    if firsts:
        first = (
            f"LEFT JOIN (SELECT customer_id, min(first_date) AS first_activity_date FROM ({_union(firsts)}) f "
            f"GROUP BY customer_id) a ON a.customer_id = c.customer_id"
        )
        first_col = "a.first_activity_date"
    else:
        first, first_col = "", "CAST(NULL AS DATE)"
    # The earliest activity is a fact of the past once it lies before the observation date: the minimum of
    # all dates equals the minimum of the dates before it, so masking it by its own date leaks nothing.
    # Customers are not filtered by signup_date: their static attributes hold whatever the date.
    return Source(
        name="customers",
        requires_any=("customers",),
        sql=f"SELECT c.*, CAST('1900-01-01' AS DATE) AS always_known, {first_col} AS first_activity_date "
        f"FROM customers c {first}",
        known_at="always_known",
        masked={"partner_since": "partner_since", "first_activity_date": "first_activity_date"},
    )


# Each subscription row with its neighbours for the same product: the previous period (known when this
# one starts) and the next one (known only once it has started).
_SUBSCRIPTION_HISTORY = """
SELECT s.*,
       lag(monthly_price) OVER w AS previous_price,
       lag(end_date) OVER w AS previous_end_date,
       lead(start_date) OVER w AS next_start_date,
       CASE WHEN contract_term_months > 0 THEN cw_add_months(start_date, contract_term_months) END
         AS term_end_date
FROM subscriptions s
WINDOW w AS (PARTITION BY customer_id, product ORDER BY start_date, end_date)
"""


def _subscriptions(present: set[str]) -> Source:
    return Source(
        name="subscriptions",
        requires_any=("subscriptions",),
        sql=f"""
SELECT h.*,
       previous_end_date IS NOT NULL AND previous_end_date >= cw_add_days(start_date, -31)
         AS continued_from_previous
FROM ({_SUBSCRIPTION_HISTORY}) h""",
        known_at="start_date",
        masked={"end_date": "end_date", "next_start_date": "next_start_date"},
        post={"is_active": "end_date IS NULL"},
    )


def _complaints(present: set[str]) -> Source:
    return Source(
        name="complaints",
        requires_any=("complaints",),
        sql="SELECT * FROM complaints",
        known_at=CONTRACT.known_at["complaints"],
        masked={"resolved_at": "resolved_at", "satisfaction": "resolved_at"},
    )


def _events(present: set[str]) -> Source:
    return Source(
        name="events",
        requires_any=("events",),
        sql="SELECT * FROM events",
        known_at=CONTRACT.known_at["events"],
    )


def _categories(present: set[str]) -> Source:
    parts = []
    if "subscriptions" in present:
        parts.append(
            "SELECT customer_id, product_category, start_date AS category_date, end_date, "
            "'subscription' AS origin FROM subscriptions"
        )
    if "orders" in present:
        parts.append(
            "SELECT customer_id, product_category, order_date AS category_date, CAST(NULL AS DATE) AS end_date, "
            "'order' AS origin FROM orders"
        )
    # first_in_category looks only backwards: it is decided by rows dated before this one.
    return Source(
        name="categories",
        requires_any=("subscriptions", "orders"),
        sql=f"""
SELECT u.*,
       row_number() OVER (PARTITION BY customer_id, product_category ORDER BY category_date, origin) = 1
         AS first_in_category
FROM ({_union(parts)}) u""",
        known_at="category_date",
        masked={"end_date": "end_date"},
        post={"is_active": "origin = 'subscription' AND end_date IS NULL"},
    )


def _spend(present: set[str]) -> Source:
    parts = []
    if "subscriptions" in present:
        parts.append(
            f"""
SELECT customer_id, start_date AS spend_date, end_date, monthly_price, CAST(NULL AS DOUBLE) AS amount,
       CASE WHEN previous_price > 0 AND previous_end_date >= cw_add_days(start_date, -31)
            THEN (monthly_price - previous_price) / previous_price END AS price_change_pct,
       'subscription' AS origin, CAST(NULL AS DATE) AS previous_order_date
FROM ({_SUBSCRIPTION_HISTORY}) h"""
        )
    if "orders" in present:
        # previous_order_date: the customer's purchase day before this order's day (empty for the first), from
        # earlier orders only, so an order known on a date brings nothing later with it.
        parts.append(
            """
SELECT o.customer_id, o.order_date AS spend_date, CAST(NULL AS DATE) AS end_date,
       CAST(NULL AS DOUBLE) AS monthly_price, o.amount, CAST(NULL AS DOUBLE) AS price_change_pct,
       'order' AS origin, d.previous_order_date
FROM orders o
JOIN (SELECT customer_id, order_date,
             lag(order_date) OVER (PARTITION BY customer_id ORDER BY order_date) AS previous_order_date
      FROM (SELECT DISTINCT customer_id, order_date FROM orders) days) d
  ON d.customer_id = o.customer_id AND d.order_date = o.order_date"""
        )
    return Source(
        name="spend",
        requires_any=("subscriptions", "orders"),
        sql=_union(parts),
        known_at="spend_date",
        masked={"end_date": "end_date"},
        post={"is_active": "origin = 'subscription' AND end_date IS NULL"},
    )


def _loyalty(present: set[str]) -> Source:
    parts = []
    if "referrals" in present:
        parts.append(
            "SELECT referrer_customer_id AS customer_id, CAST(referral_date AS TIMESTAMP) AS loyalty_date, "
            "CAST(NULL AS VARCHAR) AS action, CAST(NULL AS BOOLEAN) AS accepted, 'referral' AS origin "
            "FROM referrals"
        )
    if "offers" in present:
        parts.append(
            "SELECT customer_id, offered_at AS loyalty_date, action, accepted, 'offer' AS origin FROM offers"
        )
    return Source(
        name="loyalty",
        requires_any=("referrals", "offers"),
        sql=_union(parts),
        known_at="loyalty_date",
    )


def activity_dates_sql(present: set[str], needed_by: str) -> str:
    """customer_id and activity_date of every order and event: the activity that defines inactivity."""
    parts = []
    if "orders" in present:
        parts.append("SELECT customer_id, order_date AS activity_date FROM orders")
    if "events" in present:
        parts.append("SELECT customer_id, CAST(event_time AS DATE) AS activity_date FROM events")
    if not parts:
        raise ConfigError(f"{needed_by} needs orders or events")
    return _union(parts)
