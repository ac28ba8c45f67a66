"""The data contract: the canonical input tables churnwise reads, their columns, types and rules.

This module is declarative. `features.validation` enforces it and `docs/data_contract.md` explains it to
users; keep the three in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


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
    allowed: tuple[str, ...] | None = None  # allowed values (text columns, compared case-sensitively)
    references: str | None = None  # foreign key to customers.customer_id
    # Point in time: the column whose date says when this value became known, when that is later than the
    # row itself (an end_date is known on that date, a satisfaction score when the complaint is resolved).
    known_from: str | None = None


@dataclass(frozen=True)
class DateOrder:
    """Rule `later >= earlier` on the same row (when `later` is not null)."""

    earlier: str
    later: str
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


MONEY = {"min_value": 0.0}

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
    description="Past retention offers and interventions.",
    columns=(
        Column("customer_id", Kind.ID, "Customer who received the offer.", references="customers"),
        Column("offered_at", Kind.TIMESTAMP, "When the offer was made."),
        Column("action", Kind.TEXT, "Which action, e.g. discount, service_recovery_call."),
        Column("accepted", Kind.BOOLEAN, "Whether the customer accepted it."),
        Column("cost", Kind.NUMBER, "Cost of the offer.", **MONEY),
    ),
)

CONTRACT = Contract(
    tables=(CUSTOMERS, SUBSCRIPTIONS, ORDERS, COMPLAINTS, EVENTS, EVENT_TYPES, REFERRALS, OFFERS)
)
