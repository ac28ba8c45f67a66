"""The data contract: the canonical input tables churnwise reads, their columns, types and rules.

This module is declarative. `features.validation` enforces it and `docs/data_contract.md` explains it to
users; keep the three in step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date
from enum import StrEnum
from typing import Any

from features.errors import ConfigError


class Kind(StrEnum):
    """Logical type of a column, independent of how a file stores it."""

    ID = "id"  # customer identifier: integer or text, same type as customers.customer_id
    DATE = "date"
    TIMESTAMP = "timestamp"
    TEXT = "text"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"


@dataclass(frozen=True)
class Column:
    """One column of a contract table."""

    name: str
    kind: Kind
    description: str
    required: bool = True  # the column must be present
    nullable: bool = False  # empty values allowed
    min_value: float | None = None
    max_value: float | None = None
    exclusive_min: bool = False  # min_value itself is refused too: values must be above it ("(0, 1]")
    allowed: tuple[str, ...] | None = None  # allowed values (text columns, compared case-sensitively)
    references: str | None = None  # foreign key to customers.customer_id
    # Point in time: the column whose date says when this value became known, when that is later than the
    # row itself (an end_date is known on that date, a satisfaction score when the complaint is resolved).
    known_from: str | None = None
    money: bool = False  # an amount of money: at most contract.max_amount
    open_end: bool = (
        False  # an end date, empty while open: open-ended placeholders (9999-12-31) read as empty
    )


@dataclass(frozen=True)
class DateOrder:
    """Rule `later >= earlier` on the same row (when `later` is not null)."""

    earlier: str
    later: str
    meaning: str
    hint: str


@dataclass(frozen=True)
class Periods:
    """Rule: the periods [start, end) of rows sharing `key` do not overlap (an empty end is open)."""

    key: tuple[str, ...]
    start: str
    end: str
    meaning: str
    hint: str


@dataclass(frozen=True)
class SingleValued:
    """Rule: all rows sharing `key` hold one value of `column`. Keys whose rows contradict each other are
    reported by this rule, and left out of the plain unique key's report (which names true duplicates)."""

    key: tuple[str, ...]
    column: str
    meaning: str
    hint: str


@dataclass(frozen=True)
class Table:
    """One contract table."""

    name: str
    description: str
    columns: tuple[Column, ...]
    unique_key: tuple[str, ...] = ()
    date_orders: tuple[DateOrder, ...] = ()
    required: bool = False
    known_at: str | None = None  # the column dating a row: the row exists for observation dates after it
    # The column whose dates place the observation grid: a row far before the table's latest date is refused
    # (contract.max_years_before_latest), so one stray old row cannot stretch the grid back by decades.
    grid_date: str | None = None
    periods: Periods | None = None  # periods that may not overlap (unless the contract settings allow it)
    single_valued: tuple[SingleValued, ...] = ()  # columns that may hold one value per key
    # Whether the rows' dates are data: they place the data window (its start, its end, a table's staleness).
    # A record of decisions (campaigns) is not: an assignment planned for next month does not extend the data.
    in_data_window: bool = True

    def column(self, name: str) -> Column:
        """The column called `name`."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no contract column {name!r}")

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Names of the columns a file must have."""
        return tuple(c.name for c in self.columns if c.required)


@dataclass(frozen=True)
class Contract:
    """All contract tables, and which of them a run needs."""

    tables: tuple[Table, ...]
    activity_tables: tuple[str, ...] = field(default=("subscriptions", "orders", "events"))

    def table(self, name: str) -> Table:
        """The table called `name`."""
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(f"the data contract has no table {name!r}; known: {', '.join(self.table_names)}")

    @property
    def table_names(self) -> tuple[str, ...]:
        """Names of all contract tables, in dependency order (customers first)."""
        return tuple(t.name for t in self.tables)

    @property
    def known_at(self) -> dict[str, str]:
        """Table -> the column dating its rows (a row exists for observation dates after it): declared once,
        on each table of the contract."""
        return {t.name: t.known_at for t in self.tables if t.known_at}

    @property
    def log_dates(self) -> dict[str, str]:
        """The tables that log events (every row dated, none open-ended), with the column dating a row: what
        places the data window (not customers, subscriptions, nor tables outside it: `Table.in_data_window`)."""
        window = {t.name for t in self.tables if t.in_data_window}
        return {
            name: column
            for name, column in self.known_at.items()
            if name not in ("customers", "subscriptions") and name in window
        }


MONEY: dict[str, Any] = {"min_value": 0.0, "money": True}

CUSTOMERS = Table(
    name="customers",
    description="One row per known customer, including prospects who never bought.",
    required=True,
    unique_key=("customer_id",),
    known_at="signup_date",
    columns=(
        Column("customer_id", Kind.ID, "Customer identifier (integer or text), unique."),
        Column("signup_date", Kind.DATE, "Date the customer became known (account created)."),
        Column("segment", Kind.TEXT, "Customer segment, e.g. consumer / small_business.", False, True),
        Column("region", Kind.TEXT, "Region or market.", False, True),
        Column("channel", Kind.TEXT, "Acquisition channel.", False, True),
        Column(
            "partner_since",
            Kind.DATE,
            "Date the customer became a business partner (empty if never).",
            required=False,
            nullable=True,
            known_from="partner_since",
        ),
    ),
)

SUBSCRIPTIONS = Table(
    name="subscriptions",
    known_at="start_date",
    periods=Periods(
        key=("customer_id", "product"),
        start="start_date",
        end="end_date",
        meaning="the same customer holds the same product twice at once",
        hint=(
            "Remove the duplicated rows (a re-appended export repeats every row); a period ends on its end_date, "
            "the first day without it, so a row ending on day X and the next starting on day X do not overlap. "
            "If customers really hold several lines of one product at once (two mobile lines), set "
            "contract.allow_overlapping_subscriptions=true."
        ),
    ),
    description=(
        "Contractual products held. One row per contract period at one price: a price change or renewal "
        "closes the row and opens a new one for the same product."
    ),
    date_orders=(
        DateOrder(
            "start_date",
            "end_date",
            "a subscription cannot end before it starts",
            "Correct start_date or end_date; leave end_date empty if the subscription is still active.",
        ),
    ),
    columns=(
        Column("customer_id", Kind.ID, "Customer holding the product.", references="customers"),
        Column("product", Kind.TEXT, "Product name, e.g. broadband_500."),
        Column("product_category", Kind.TEXT, "Product category, e.g. broadband, mobile, tv."),
        Column("start_date", Kind.DATE, "First day of the contract period."),
        Column(
            "end_date",
            Kind.DATE,
            "Day the period ended (the first day without it); empty while still active.",
            nullable=True,
            known_from="end_date",
            open_end=True,
        ),
        Column("monthly_price", Kind.NUMBER, "Price per month, in the reporting currency.", **MONEY),
        Column(
            "contract_term_months",
            Kind.INTEGER,
            "Committed term in months; 0 = month-to-month (no commitment).",
            min_value=0,
            max_value=120,
        ),
        Column(
            "bundle_id",
            Kind.TEXT,
            "Products sold together share a bundle id; empty when not sold as a bundle.",
            nullable=True,
        ),
    ),
)

ORDERS = Table(
    name="orders",
    known_at="order_date",
    grid_date="order_date",
    description="One row per purchase (one-off or repeat).",
    columns=(
        Column("customer_id", Kind.ID, "Buying customer.", references="customers"),
        Column("order_date", Kind.DATE, "Date of the purchase."),
        Column("product_category", Kind.TEXT, "Category bought."),
        Column("amount", Kind.NUMBER, "Amount paid (refunds belong in a separate table).", **MONEY),
    ),
)

COMPLAINTS = Table(
    name="complaints",
    known_at="opened_at",
    grid_date="opened_at",
    description="Complaints and support tickets.",
    date_orders=(
        DateOrder(
            "opened_at",
            "resolved_at",
            "a complaint cannot be resolved before it is opened",
            "Correct opened_at or resolved_at; leave resolved_at empty if the complaint is still open.",
        ),
    ),
    columns=(
        Column("customer_id", Kind.ID, "Complaining customer.", references="customers"),
        Column("opened_at", Kind.TIMESTAMP, "When the complaint was opened."),
        Column(
            "resolved_at",
            Kind.TIMESTAMP,
            "When it was resolved; empty while still open.",
            nullable=True,
            known_from="resolved_at",
            open_end=True,
        ),
        Column("category", Kind.TEXT, "What it is about, e.g. billing, network."),
        Column("severity", Kind.TEXT, "How serious it is.", allowed=("low", "medium", "high", "critical")),
        Column(
            "satisfaction",
            Kind.INTEGER,
            "Satisfaction score after resolution, 1 (worst) to 5 (best).",
            required=False,
            nullable=True,
            min_value=1,
            max_value=5,
            known_from="resolved_at",
        ),
    ),
)

EVENTS = Table(
    name="events",
    known_at="event_time",
    grid_date="event_time",
    description="Engagement log: logins, sessions, usage.",
    columns=(
        Column("customer_id", Kind.ID, "Customer the event belongs to.", references="customers"),
        Column("event_time", Kind.TIMESTAMP, "When the event happened."),
        Column("event_type", Kind.TEXT, "What happened, e.g. login, usage."),
        Column(
            "quantity",
            Kind.NUMBER,
            "Optional amount (minutes, GB, items).",
            required=False,
            nullable=True,
            min_value=0.0,
        ),
    ),
)

EVENT_TYPES = Table(
    name="event_types",
    description="Optional lookup of event type codes to names, for event logs that store a code (e.g. 3).",
    columns=(
        Column("event_type", Kind.TEXT, "The code as events.event_type holds it."),
        Column("event_type_name", Kind.TEXT, "Its name, e.g. login; features and reports use the name."),
    ),
    unique_key=("event_type",),
)

REFERRALS = Table(
    name="referrals",
    known_at="referral_date",
    grid_date="referral_date",
    description="Referrals made by customers (a loyalty signal).",
    columns=(
        Column("referrer_customer_id", Kind.ID, "Customer who referred.", references="customers"),
        Column(
            "referred_customer_id",
            Kind.ID,
            "Customer who was referred, when they became one.",
            required=False,
            nullable=True,
            references="customers",
        ),
        Column("referral_date", Kind.DATE, "Date of the referral."),
    ),
)

OFFERS = Table(
    name="offers",
    known_at="offered_at",
    grid_date="offered_at",
    description="Past retention offers and interventions.",
    columns=(
        Column("customer_id", Kind.ID, "Customer who received the offer.", references="customers"),
        Column("offered_at", Kind.TIMESTAMP, "When the offer was made."),
        Column("action", Kind.TEXT, "Which action, e.g. discount, service_recovery_call."),
        Column("accepted", Kind.BOOLEAN, "Whether the customer accepted it."),
        Column("cost", Kind.NUMBER, "Cost of the offer.", **MONEY),
    ),
)

CAMPAIGNS = Table(
    name="campaigns",
    # Dated by its assignment (a row exists for observation dates after it), but not a grid date: campaigns
    # neither place the observation grid nor the data window.
    known_at="assigned_at",
    in_data_window=False,
    description=(
        "Past campaigns: who was assigned which action on which day, treated (contacted) or held out as "
        "control. Outcomes are not columns: they come from the customer tables, point in time."
    ),
    unique_key=("campaign_id", "customer_id"),
    single_valued=(
        SingleValued(
            key=("campaign_id", "customer_id"),
            column="treated",
            meaning="a customer is both treated and control in one campaign",
            hint=(
                "A customer is either contacted or held out in a campaign, never both: keep the row of the "
                "assignment that was carried out and drop the other."
            ),
        ),
    ),
    columns=(
        Column("campaign_id", Kind.TEXT, "Campaign identifier; a scoring run writes score-<as_of>."),
        Column("customer_id", Kind.ID, "Customer assigned in the campaign.", references="customers"),
        Column("action", Kind.TEXT, "Which action of actions.catalogue, e.g. discount."),
        Column("assigned_at", Kind.DATE, "Day the customer was assigned (treated or held out)."),
        Column("treated", Kind.BOOLEAN, "true = contacted with the action, false = held-out control."),
        Column(
            "propensity",
            Kind.NUMBER,
            "Probability of being treated under the campaign's randomisation; empty = the campaign's "
            "treated share.",
            required=False,
            nullable=True,
            min_value=0.0,
            exclusive_min=True,
            max_value=1.0,
        ),
        Column(
            "cost",
            Kind.NUMBER,
            "Cost paid for the action (treated rows; empty for controls).",
            required=False,
            nullable=True,
            **MONEY,
        ),
    ),
)

CONTRACT = Contract(
    tables=(CUSTOMERS, SUBSCRIPTIONS, ORDERS, COMPLAINTS, EVENTS, EVENT_TYPES, REFERRALS, OFFERS, CAMPAIGNS)
)


OPEN_END_DATES = (
    date(9999, 12, 31), date(9999, 12, 30), date(9999, 1, 1), date(2999, 12, 31), date(3000, 1, 1),
    date(2099, 12, 31), date(2100, 1, 1),
)  # fmt: skip


@dataclass(frozen=True)
class ContractSettings:
    """The contract's plausibility bounds (config group `contract`, conf/contract/default.yaml).

    Values outside them are refused with their rows, as any other broken rule: no real business has an order
    of 10^18, a customer since 1900 or an order of 1900 in a 2024 export.
    """

    max_amount: float = 1e12  # money columns (Column.money): larger amounts are refused
    earliest_date: date = date(1920, 1, 1)  # every date and timestamp column: earlier dates are refused
    latest_date: date = date(2075, 12, 31)  # ... and later ones (open-ended placeholders aside)
    max_years_before_latest: float = 25.0  # grid dates (Table.grid_date) this long before the table's latest
    open_end_dates: tuple[date, ...] = OPEN_END_DATES  # in end-date columns (Column.open_end): read as open
    allow_overlapping_subscriptions: bool = False  # several lines of one product per customer at once

    @classmethod
    def from_config(cls, settings: Mapping[str, Any] | None, key: str = "contract") -> ContractSettings:
        """Read `contract.*`; a setting of the wrong shape stops here, naming its key."""
        settings = dict(settings or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ConfigError(f"{key}: unknown setting(s) {unknown} (known: {', '.join(known)})")
        values: dict[str, Any] = {}
        for name in ("max_amount", "max_years_before_latest"):
            if name in settings:
                value = settings[name]
                number = _number(value)
                if number is None or not number > 0:
                    raise ConfigError(f"{key}.{name} must be a positive number, got {value!r}")
                values[name] = number
        for name in ("earliest_date", "latest_date"):
            if name in settings:
                values[name] = _date(settings[name], f"{key}.{name}")
        if "open_end_dates" in settings:
            listed = settings["open_end_dates"]
            if listed is None:
                listed = []
            if isinstance(listed, str) or not isinstance(listed, list | tuple):
                raise ConfigError(f"{key}.open_end_dates must be a list of dates YYYY-MM-DD, got {listed!r}")
            values["open_end_dates"] = tuple(_date(v, f"{key}.open_end_dates") for v in listed)
        if "allow_overlapping_subscriptions" in settings:
            flag = settings["allow_overlapping_subscriptions"]
            if not isinstance(flag, bool):
                raise ConfigError(
                    f"{key}.allow_overlapping_subscriptions must be true or false, got {flag!r}"
                )
            values["allow_overlapping_subscriptions"] = flag
        chosen = cls(**values)
        if chosen.earliest_date >= chosen.latest_date:
            raise ConfigError(
                f"{key}.earliest_date ({chosen.earliest_date}) must be before {key}.latest_date "
                f"({chosen.latest_date})"
            )
        return chosen


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _date(value: Any, key: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as error:
        raise ConfigError(f"{key} must be a date YYYY-MM-DD, got {value!r}") from error
