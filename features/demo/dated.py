"""Synthetic demo data for churnwise: customers, subscriptions, logs and the true churn mechanism.

The generator simulates a subscription business month by month. Every active customer has a monthly
churn hazard computed from their state at the start of the month (tenure, products and bundles,
complaints, price increases, contract, engagement, advocacy, partnership and past retention offers).
Each month one past retention campaign draws customers, gives each a random action of the catalogue
(features/demo/demo_actions.py: its true, targeted effect) and treats a logged share of them, holding out the
rest as controls. The observable tables go to ``tables_dir``; the true hazards and offer effects, which
features must never read, go to ``truth_dir``. Every coefficient lives in :class:`Mechanism` and is mirrored in
``docs/demo_data.md``.

Customers are simulated in chunks of ``DemoSpec.chunk_size``; each chunk has its own random stream
(``np.random.SeedSequence([seed, chunk_index])``) and is streamed to Parquet, so memory is bounded by
the chunk size, not by the number of customers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from features.demo.demo_actions import DEFAULT_ACTIONS, MOVES, TARGETS, ActionTruth
from features.demo.demo_actions import RetentionAction as RetentionAction
from features.demo.truth import ACTION_VALUES_SCHEMA, TruthSpec, action_values
from features.errors import ConfigError
from features.publish import LEFTOVER, RECORD, owned_files, record_files

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "churnwise-demo/2.0.0"

# --------------------------------------------------------------------------------------------------
# Business vocabularies (the allowed values of the categorical columns)
# --------------------------------------------------------------------------------------------------
SEGMENTS: tuple[str, ...] = ("consumer", "small_business", "enterprise")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "capital")
CHANNELS: tuple[str, ...] = ("online", "retail_store", "telesales", "partner", "referral")
PRODUCT_CATEGORIES: tuple[str, ...] = ("mobile", "broadband", "tv", "security", "cloud")


@dataclass(frozen=True)
class Product:
    """A subscription product: its name, category and list-price range (consumer, per month)."""

    name: str
    category: str
    price_low: float
    price_high: float


PRODUCTS: tuple[Product, ...] = (
    Product("mobile_basic", "mobile", 12.0, 25.0),
    Product("mobile_unlimited", "mobile", 30.0, 55.0),
    Product("broadband_standard", "broadband", 25.0, 40.0),
    Product("broadband_fibre", "broadband", 40.0, 70.0),
    Product("tv_essentials", "tv", 10.0, 25.0),
    Product("tv_premium", "tv", 30.0, 60.0),
    Product("home_security", "security", 15.0, 35.0),
    Product("cloud_backup", "cloud", 4.0, 12.0),
)
ORDER_CATEGORIES: tuple[str, ...] = ("devices", "accessories", "add_ons", "services")
COMPLAINT_CATEGORIES: tuple[str, ...] = ("billing", "network", "customer_service", "product", "installation")
SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
EVENT_TYPES: tuple[str, ...] = ("login", "app_session", "usage", "support_page_view", "feature_use")
TABLE_NAMES: tuple[str, ...] = (
    "customers",
    "subscriptions",
    "orders",
    "complaints",
    "events",
    "referrals",
    "offers",
    "campaigns",
)
TRUTH_NAMES: tuple[str, ...] = ("true_churn_probability", "true_offer_effects", "true_action_values")

# --------------------------------------------------------------------------------------------------
# The mechanism: every coefficient in one place (mirrored in docs/demo_data.md)
# --------------------------------------------------------------------------------------------------


RETENTION_ACTIONS: tuple[ActionTruth, ...] = DEFAULT_ACTIONS  # the name before churnwise-demo/2.0.0


@dataclass(frozen=True)
class Mechanism:
    """All knobs of the generating mechanism; the hazard coefficients are on the logit scale."""

    # population
    existing_share: float = 0.45
    existing_min_days: int = 30
    existing_max_years: float = 6.0
    existing_row_max_age_days: int = 730
    prospect_share: float = 0.08
    segment_shares: tuple[float, ...] = (0.80, 0.15, 0.05)
    region_shares: tuple[float, ...] = (0.22, 0.20, 0.20, 0.18, 0.20)
    channel_shares: tuple[float, ...] = (0.35, 0.25, 0.12, 0.10, 0.18)
    first_purchase_max_days: int = 60
    # products and bundles
    products_held_shares_new: tuple[float, ...] = (0.60, 0.28, 0.10, 0.02)
    products_held_shares_existing: tuple[float, ...] = (0.45, 0.32, 0.17, 0.06)
    category_weights: tuple[float, ...] = (0.40, 0.30, 0.15, 0.10, 0.05)
    premium_variant_share: float = 0.45
    segment_price_factor: tuple[float, ...] = (1.00, 1.25, 1.80)
    bundle_at_purchase: float = 0.65
    cross_sell_rate: float = 0.012
    cross_sell_engagement: float = 0.30
    cross_sell_bundle_share: float = 0.50
    drop_rate: float = 0.006
    # contracts
    new_term_shares: tuple[float, ...] = (0.30, 0.40, 0.30)  # month-to-month, 12, 24 months
    existing_in_term_share: float = 0.45
    existing_24_month_share: float = 0.45
    renewal_share: float = 0.55
    renewal_keeps_term_share: float = 0.80
    late_renewal_share: float = 0.25
    late_renewal_max_days: int = 10
    renewal_price_change: tuple[float, float] = (-0.03, 0.05)
    churn_on_term_end_day_share: float = 0.70
    # annual price review (month-to-month subscriptions only)
    price_review_month: int = 4
    price_review_share: float = 0.60
    price_increase_range: tuple[float, float] = (0.05, 0.15)
    # monthly churn hazard (logit scale)
    intercept: float = -2.55
    tenure_log: float = -0.30
    segment_effect: tuple[float, ...] = (0.0, -0.15, -0.45)
    channel_referral: float = -0.20
    bundle_held: float = -0.45
    bundle_extra_product: float = -0.15
    cross_sell_depth: float = -0.20
    complaint_recent: float = 0.25
    complaint_recent_cap: int = 3
    complaint_open: float = 0.70
    complaint_open_cap: int = 2
    complaint_severe: float = 0.35
    complaint_severe_cap: int = 2
    complaint_window_days: int = 90
    price_increase: float = 8.0
    price_increase_effect_months: int = 6
    price_increase_decay_months: float = 2.0
    in_term: float = -0.80
    term_end_month: float = 1.60
    engagement_drop: float = 0.60
    engagement_drop_cap: float = 3.0
    loyalty: float = -0.20
    advocate: float = -0.40
    partner: float = -1.50
    max_hazard: float = 0.95
    # latent engagement: AR(1) around a baseline with a customer-specific decline
    engagement_baseline_sd: float = 0.80
    engagement_ar: float = 0.70
    engagement_noise_sd: float = 0.35
    decliner_share: float = 0.25
    decline_per_month: tuple[float, float] = (0.03, 0.12)
    # logs
    events_per_month: float = 2.2
    events_engagement: float = 0.60
    event_type_shares: tuple[float, ...] = (0.35, 0.25, 0.25, 0.05, 0.10)
    support_views_if_open_complaint: float = 1.5
    prospect_events_mean: float = 2.0
    prospect_event_days: int = 90
    prospect_event_type_shares: tuple[float, ...] = (0.50, 0.0, 0.0, 0.30, 0.20)
    usage_gb_lognormal: tuple[float, float] = (0.5, 0.8)
    session_minutes_lognormal: tuple[float, float] = (1.8, 0.7)
    feature_uses_max: int = 5
    orders_per_month: float = 0.06
    orders_engagement: float = 0.50
    first_device_order_share: float = 0.40
    order_category_shares: tuple[float, ...] = (0.12, 0.38, 0.30, 0.20)
    order_amount_median: tuple[float, ...] = (350.0, 25.0, 12.0, 60.0)
    order_amount_sigma: float = 0.50
    free_order_share: float = 0.03
    complaint_rate: float = 0.025
    complaint_after_increase_factor: float = 2.5
    complaint_after_increase_months: int = 3
    complaint_new_customer_factor: float = 1.8
    new_customer_days: int = 90
    complaint_north_factor: float = 1.3
    complaint_loyalty: float = -0.30
    complaint_category_weights: tuple[float, ...] = (0.30, 0.25, 0.20, 0.15, 0.10)
    billing_weight_after_increase: float = 3.0
    network_weight_north: float = 2.0
    installation_weight_new_customer: float = 4.0
    severity_shares: tuple[float, ...] = (0.40, 0.35, 0.18, 0.07)
    resolution_median_days: tuple[float, ...] = (2.0, 4.0, 7.0, 12.0)
    resolution_sigma: float = 0.80
    never_resolved_share: float = 0.04
    satisfaction_base: float = 3.6
    satisfaction_loyalty: float = 0.5
    satisfaction_per_day_to_resolve: float = -0.08
    satisfaction_severe: float = -0.4
    satisfaction_noise_sd: float = 0.8
    satisfaction_missing_share: float = 0.25
    # referrals and partners
    referral_rate: float = 0.008
    referral_loyalty: float = 1.20
    referral_conversion: float = 0.50
    referral_match_days: int = 60
    partner_min_tenure_months: int = 36
    existing_partner_share: float = 0.08
    partner_rate: float = 0.002
    # past retention campaigns (docs/demo_data.md, "Past campaigns")
    offer_threshold: float = 0.035
    campaign_share_at_risk: float = 0.3
    campaign_share_low_risk: float = 0.12
    campaign_treated_shares: tuple[float, ...] = (0.5, 0.7, 0.9)
    offer_cooldown_months: int = 3
    contact_cost: float = 2.0
    offer_hours: tuple[int, int] = (8, 20)
    # action targets and effects (docs/demo_data.md, "Actions and their true effects")
    target_increase_days: int = 90
    target_new_customer_days: int = 180
    target_established_days: int = 365
    programme_orders: int = 2
    programme_member: float = -0.15
    sleeping_dog_engagement: float = -1.25
    sleeping_dog_multiplier: float = 1.35
    sleeping_dog_months: int = 3
    actions: tuple[ActionTruth, ...] = DEFAULT_ACTIONS

    def __post_init__(self) -> None:
        """Check shares and probabilities so a bad override fails early with a clear message."""
        for name, size in (
            ("segment_shares", len(SEGMENTS)),
            ("region_shares", len(REGIONS)),
            ("channel_shares", len(CHANNELS)),
            ("category_weights", len(PRODUCT_CATEGORIES)),
            ("new_term_shares", 3),
            ("event_type_shares", len(EVENT_TYPES)),
            ("prospect_event_type_shares", len(EVENT_TYPES)),
            ("order_category_shares", len(ORDER_CATEGORIES)),
            ("complaint_category_weights", len(COMPLAINT_CATEGORIES)),
            ("severity_shares", len(SEVERITIES)),
        ):
            shares = getattr(self, name)
            if len(shares) != size or min(shares) < 0 or abs(sum(shares) - 1.0) > 1e-6:
                raise ValueError(f"Mechanism.{name} must be {size} non-negative shares summing to 1")
        for name in ("products_held_shares_new", "products_held_shares_existing"):
            shares = getattr(self, name)
            if not 1 <= len(shares) <= len(PRODUCT_CATEGORIES) or abs(sum(shares) - 1.0) > 1e-6:
                raise ValueError(f"Mechanism.{name} must be 1-5 shares summing to 1")
        for name in (
            "existing_share",
            "prospect_share",
            "premium_variant_share",
            "bundle_at_purchase",
            "cross_sell_bundle_share",
            "existing_in_term_share",
            "renewal_share",
            "late_renewal_share",
            "price_review_share",
            "campaign_share_at_risk",
            "campaign_share_low_risk",
            "max_hazard",
            "referral_conversion",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Mechanism.{name} must be a probability in [0, 1]")
        if not 1 <= self.price_review_month <= 12:
            raise ValueError("Mechanism.price_review_month must be a calendar month 1..12")
        if not self.actions:
            raise ValueError("Mechanism.actions must name at least one retention action")
        names = [a.name for a in self.actions]
        if len(set(names)) != len(names):
            raise ValueError(f"Mechanism.actions must have distinct names, got {names}")
        if not self.campaign_treated_shares or not all(0.0 < s <= 1.0 for s in self.campaign_treated_shares):
            raise ValueError("Mechanism.campaign_treated_shares must be one or more shares in (0, 1]")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Mechanism:
        """Build a mechanism from a plain or Hydra mapping (lists become tuples)."""
        converted: dict[str, Any] = {}
        for key, value in values.items():
            if key == "actions":
                converted[key] = tuple(
                    a if isinstance(a, ActionTruth) else ActionTruth(**dict(a)) for a in value
                )
            elif isinstance(value, Sequence) and not isinstance(value, str):
                converted[key] = tuple(value)
            else:
                converted[key] = value
        return cls(**converted)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSpec:
    """What demo data to generate: how many customers, which window, which seed, which mechanism, and how the
    true action values at the data end are computed (``truth``)."""

    n_customers: int = 20_000
    start_date: date | str = "2022-01-01"
    months: int = 36
    seed: int = 42
    chunk_size: int = 50_000
    mechanism: Mechanism = field(default_factory=Mechanism)
    truth: TruthSpec = field(default_factory=TruthSpec)

    def __post_init__(self) -> None:
        """Normalise ``start_date`` to a date and the mechanism to :class:`Mechanism`; validate."""
        start = self.start_date
        if isinstance(start, str):
            try:
                start = date.fromisoformat(start)
            except ValueError as error:
                raise ValueError(f"start_date must be an ISO date like 2022-01-01, got {start!r}") from error
        elif isinstance(start, datetime):
            start = start.date()
        if not isinstance(start, date):
            raise ValueError(f"start_date must be a date or an ISO date string, got {start!r}")
        if start.day != 1:
            raise ValueError(f"start_date must be the first day of a month, got {start.isoformat()}")
        object.__setattr__(self, "start_date", start)
        if isinstance(self.mechanism, Mapping):
            object.__setattr__(self, "mechanism", Mechanism.from_mapping(self.mechanism))
        elif not isinstance(self.mechanism, Mechanism):
            raise ValueError("mechanism must be a Mechanism or a mapping of its fields")
        if isinstance(self.truth, Mapping):
            object.__setattr__(self, "truth", TruthSpec(**dict(self.truth)))
        elif not isinstance(self.truth, TruthSpec):
            raise ValueError("truth must be a TruthSpec or a mapping of its fields")
        for name in ("n_customers", "months", "seed", "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.n_customers <= 0:
            raise ValueError(f"n_customers must be positive, got {self.n_customers}")
        if self.months < 12:
            raise ValueError(f"months must be at least 12, got {self.months}")
        if self.chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {self.chunk_size}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")

    @property
    def end_date(self) -> date:
        """First day after the data window (exclusive): ``start_date`` plus ``months`` months."""
        month_index = self.start_date.year * 12 + self.start_date.month - 1 + self.months
        return date(month_index // 12, month_index % 12 + 1, 1)

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready values (dates as ISO strings)."""
        values = dataclasses.asdict(self)
        values["start_date"] = self.start_date.isoformat()  # type: ignore[union-attr]
        return values


@dataclass(frozen=True)
class DemoSummary:
    """Where the demo data went and how much of it there is (rows per table and truth file)."""

    tables_dir: Path
    truth_dir: Path
    rows: dict[str, int]
    n_customers: int
    start_date: date
    end_date: date
    seconds: float


def generate_demo(
    spec: DemoSpec,
    tables_dir: Path,
    truth_dir: Path,
    *,
    progress: bool = False,
    keys: tuple[str, str] = ("data.path", "data.truth_path"),
) -> DemoSummary:
    """Generate the demo tables into ``tables_dir`` and the truth files into ``truth_dir``.

    Both directories are replaced atomically: the data is written beside them and moved into place
    only when complete; on failure the previous contents are left untouched. Only a missing or empty folder,
    or one this generator wrote and nobody added to, is ever replaced: any other raises ConfigError naming
    `keys` (the settings that chose the two folders) before anything is written.
    """
    calendar = _Calendar.from_spec(spec)
    return write_demo(
        spec,
        tables_dir,
        truth_dir,
        lambda chunk_index, first_id, size: _simulate_chunk(spec, calendar, chunk_index, first_id, size),
        end_date=spec.end_date,
        progress=progress,
        keys=keys,
    )


def write_demo(
    spec: DemoSpec,
    tables_dir: Path,
    truth_dir: Path,
    chunk_tables: Callable[[int, int, int], Iterable[tuple[str, pa.Table]]],
    *,
    end_date: date,
    manifest: Mapping[str, Any] | None = None,
    progress: bool = False,
    keys: tuple[str, str] = ("data.path", "data.truth_path"),
) -> DemoSummary:
    """Write the tables ``chunk_tables(chunk_index, first_id, size)`` yields for every chunk of ``spec`` into
    ``tables_dir`` and ``truth_dir`` (staged, replaced atomically, see :func:`generate_demo`); ``end_date``
    is the window end and ``manifest`` adds entries to the manifest (a continuation's)."""
    began = time.perf_counter()
    tables_dir = Path(tables_dir).absolute()
    truth_dir = Path(truth_dir).absolute()
    if tables_dir == truth_dir or tables_dir in truth_dir.parents or truth_dir in tables_dir.parents:
        raise ConfigError(
            f"{keys[0]} and {keys[1]} must be separate directories, neither inside the other "
            f"({tables_dir}, {truth_dir})"
        )
    check_generated_folder(tables_dir, TABLE_NAMES, keys[0])
    check_generated_folder(truth_dir, TRUTH_NAMES, keys[1])
    n_chunks = -(-spec.n_customers // spec.chunk_size)
    logger.info(
        "Generating demo data: %d customers, %s to %s, seed %d, %d chunk(s) of up to %d",
        spec.n_customers,
        spec.start_date,
        end_date,
        spec.seed,
        n_chunks,
        spec.chunk_size,
    )
    rows = dict.fromkeys(TABLE_NAMES + TRUTH_NAMES, 0)
    with staged_folders(tables_dir, truth_dir) as staging:
        with contextlib.ExitStack() as open_writers:
            writers = {
                name: open_writers.enter_context(
                    pq.ParquetWriter(
                        staging[directory] / f"{name}.parquet", SCHEMAS[name], compression="zstd"
                    )
                )
                for directory, names in ((tables_dir, TABLE_NAMES), (truth_dir, TRUTH_NAMES))
                for name in names
            }
            with tqdm(total=n_chunks, disable=not progress, unit="chunk", desc="demo data") as bar:
                for chunk_index in range(n_chunks):
                    first_id = chunk_index * spec.chunk_size + 1
                    size = min(spec.chunk_size, spec.n_customers - first_id + 1)
                    for name, table in chunk_tables(chunk_index, first_id, size):
                        if table.num_rows:
                            writers[name].write_table(table)
                        rows[name] += table.num_rows
                        del table  # release it before the chunk builds its next table
                    logger.debug(
                        "Chunk %d/%d done: customers %d..%d",
                        chunk_index + 1,
                        n_chunks,
                        first_id,
                        first_id + size - 1,
                    )
                    bar.update(1)
        written = {
            "generator_version": GENERATOR_VERSION,
            "spec": spec.to_dict(),
            "start_date": spec.start_date.isoformat(),  # type: ignore[union-attr]
            "end_date": end_date.isoformat(),
            "rows": {name: rows[name] for name in TABLE_NAMES},
            "truth_rows": {name: rows[name] for name in TRUTH_NAMES},
            "true_action_values": {"as_of": end_date.isoformat(), **dataclasses.asdict(spec.truth)},
            **(manifest or {}),
        }
        (staging[tables_dir] / "_manifest.json").write_text(json.dumps(written, indent=2) + "\n")
        for directory, names in ((tables_dir, TABLE_NAMES), (truth_dir, TRUTH_NAMES)):
            files = [f"{name}.parquet" for name in names] + (
                ["_manifest.json"] if directory == tables_dir else []
            )
            record_files(staging[directory], files)
    seconds = time.perf_counter() - began
    logger.info(
        "Demo data written to %s (truth in %s) in %.1f s: %s",
        tables_dir,
        truth_dir,
        seconds,
        ", ".join(f"{name}={count:,}" for name, count in rows.items()),
    )
    return DemoSummary(
        tables_dir=tables_dir,
        truth_dir=truth_dir,
        rows=rows,
        n_customers=spec.n_customers,
        start_date=spec.start_date,  # type: ignore[arg-type]
        end_date=end_date,
        seconds=seconds,
    )


def check_generated_folder(folder: Path, names: Sequence[str], key: str) -> None:
    """Refuse to replace `folder` unless it is missing, empty, or holds only what this generator writes there
    (its record of files, or, from before records, its manifest and tables): nothing of anyone else's is
    ever deleted."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{key}: {folder} is a file; the demo data is written into a folder")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    ours = owned_files(folder)
    legacy = {f"{name}.parquet" for name in names} | {"_manifest.json"}
    if not ours and (folder / "_manifest.json").is_file():
        try:
            made_here = "generator_version" in json.loads((folder / "_manifest.json").read_text())
        except (OSError, ValueError):
            made_here = False
        ours = legacy if made_here else set()
    if not ours and names == TRUTH_NAMES:
        ours = {f"{name}.parquet" for name in names}  # truth folders of earlier versions have no manifest
    entries = sorted(e.name for e in folder.iterdir() if not LEFTOVER.match(e.name))
    foreign = [name for name in entries if name not in ours | {RECORD}]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ConfigError(
            f"{key}: {folder} holds files the demo generator did not write ({shown}); it never replaces a folder "
            f"with files of yours in it. Point {key} at a new or empty folder (for your own tables set "
            f"data.generate_if_missing=false and use `make validate`, not `make data`)"
        )


@contextlib.contextmanager
def staged_folders(*targets: Path) -> Iterator[dict[Path, Path]]:
    """Fresh temporary folders beside `targets` (target -> its temporary folder) to write a data set into:
    when the block completes, each replaces its target (only once the move works); when it fails, they are
    removed and the targets are left as they were."""
    staging = {d: d.parent / f".{d.name}.tmp-{os.getpid()}" for d in targets}
    try:
        for temp in staging.values():
            if temp.exists():
                shutil.rmtree(temp)
            temp.mkdir(parents=True)
        yield staging
        for target, temp in staging.items():
            _replace_directory(temp, target)
    finally:
        for temp in staging.values():
            if temp.exists():
                shutil.rmtree(temp, ignore_errors=True)


def _replace_directory(complete_dir: Path, target: Path) -> None:
    """Move ``complete_dir`` to ``target``, replacing an existing ``target`` only once the move works."""
    backup = target.parent / f".{target.name}.bak-{os.getpid()}"
    if backup.exists():
        shutil.rmtree(backup)
    had_target = target.exists()
    if had_target:
        target.rename(backup)
    try:
        complete_dir.rename(target)
    except BaseException:
        if had_target:
            backup.rename(target)
        raise
    if had_target:
        shutil.rmtree(backup, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Output schemas (exact column names and Arrow types of every table)
# --------------------------------------------------------------------------------------------------
SCHEMAS: dict[str, pa.Schema] = {
    "customers": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("signup_date", pa.date32()),
            ("segment", pa.string()),
            ("region", pa.string()),
            ("channel", pa.string()),
            ("partner_since", pa.date32()),
        ]
    ),
    "subscriptions": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("product", pa.string()),
            ("product_category", pa.string()),
            ("start_date", pa.date32()),
            ("end_date", pa.date32()),
            ("monthly_price", pa.float64()),
            ("contract_term_months", pa.int32()),
            ("bundle_id", pa.string()),
        ]
    ),
    "orders": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("order_date", pa.date32()),
            ("product_category", pa.string()),
            ("amount", pa.float64()),
        ]
    ),
    "complaints": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("opened_at", pa.timestamp("us")),
            ("resolved_at", pa.timestamp("us")),
            ("category", pa.string()),
            ("severity", pa.string()),
            ("satisfaction", pa.int8()),
        ]
    ),
    "events": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("event_time", pa.timestamp("us")),
            ("event_type", pa.string()),
            ("quantity", pa.float64()),
        ]
    ),
    "referrals": pa.schema(
        [
            ("referrer_customer_id", pa.int64()),
            ("referred_customer_id", pa.int64()),
            ("referral_date", pa.date32()),
        ]
    ),
    "offers": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("offered_at", pa.timestamp("us")),
            ("action", pa.string()),
            ("accepted", pa.bool_()),
            ("cost", pa.float64()),
        ]
    ),
    "true_churn_probability": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("month", pa.date32()),
            ("p_churn", pa.float64()),
        ]
    ),
    "campaigns": pa.schema(
        [
            ("campaign_id", pa.string()),
            ("customer_id", pa.int64()),
            ("action", pa.string()),
            ("assigned_at", pa.date32()),
            ("treated", pa.bool_()),
            ("propensity", pa.float64()),
            ("cost", pa.float64()),
        ]
    ),
    "true_action_values": ACTION_VALUES_SCHEMA,
    "true_offer_effects": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("campaign_id", pa.string()),
            ("offered_at", pa.timestamp("us")),
            ("action", pa.string()),
            ("treated", pa.bool_()),
            ("accepted", pa.bool_()),
            ("targeted", pa.bool_()),
            ("sleeping_dog", pa.bool_()),
            ("hazard_multiplier", pa.float64()),
            ("effect_months", pa.int32()),
            ("moved", pa.bool_()),
        ]
    ),
}

# --------------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------------
_SECONDS_PER_DAY = 86_400
_US_PER_SECOND = 1_000_000
_US_PER_DAY = _SECONDS_PER_DAY * _US_PER_SECOND
_NEVER = np.int64(2**40)  # a day number far beyond any data window ("no such date")
_NEVER_US = np.int64(2**62)  # the same idea in microseconds
_PENDING, _ACTIVE, _CHURNED = 0, 1, 2
_DAYS_PER_MONTH = 30.4375
_CAMPAIGN_DESIGN = 1  # spawn key of the random stream of the campaigns' treated shares
_REFERRAL_MATCHING = 2  # third seed word of a chunk's referral matching stream
_FLUSH_ROWS = 1_000_000  # events and truth rows buffered before they are written as a row group


def _add_months(days: np.ndarray, months: np.ndarray | int) -> np.ndarray:
    """Day numbers ``months`` calendar months after ``days`` (same day of month, clamped to its end)."""
    as_dates = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    month = as_dates.astype("datetime64[M]")
    day_of_month = as_dates - month.astype("datetime64[D]")
    target = month + np.asarray(months, dtype=np.int64).astype("timedelta64[M]")
    last_day = (target + np.timedelta64(1, "M")).astype("datetime64[D]") - np.timedelta64(1, "D")
    return np.minimum(target.astype("datetime64[D]") + day_of_month, last_day).astype(np.int64)


@dataclass(frozen=True)
class _Calendar:
    """The data window as day numbers (days since 1970-01-01)."""

    month_start: np.ndarray  # months + 1 month starts; the last one is the (exclusive) data end
    calendar_month: np.ndarray  # 1..12 for each window month

    @classmethod
    def from_spec(cls, spec: DemoSpec) -> _Calendar:
        """The month starts of the window of ``spec``."""
        first = np.datetime64(spec.start_date, "M")
        months = np.arange(first, first + spec.months + 1)
        return cls(
            month_start=months.astype("datetime64[D]").astype(np.int64),
            calendar_month=(months[:-1].astype(np.int64) % 12 + 1).astype(np.int64),
        )

    @property
    def start(self) -> np.int64:
        """First day of the window."""
        return self.month_start[0]

    @property
    def end(self) -> np.int64:
        """First day after the window."""
        return self.month_start[-1]


def _weighted_rank(rng: np.random.Generator, weights: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Rank of each allowed column in a weighted draw without replacement (Gumbel keys); -1 if barred."""
    keys = np.log(np.maximum(weights, 1e-300)) - np.log(-np.log(rng.random(allowed.shape)))
    keys = np.where(allowed, keys, -np.inf)
    order = np.argsort(-keys, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(allowed.shape[1])[None, :], axis=1)
    return np.where(allowed, rank, -1)


def _draw_categories(rng: np.random.Generator, shares: np.ndarray) -> np.ndarray:
    """One category index per row of ``shares`` (rows of probabilities)."""
    cumulative = np.cumsum(shares, axis=1)
    draw = rng.random(shares.shape[0])[:, None] * cumulative[:, -1:]
    return np.minimum((draw >= cumulative).sum(axis=1), shares.shape[1] - 1)


class _Buffer:
    """Column arrays of one output table collected over a chunk's months, in compact dtypes."""

    def __init__(self, **dtypes: type) -> None:
        self.dtypes = {name: np.dtype(dtype) for name, dtype in dtypes.items()}
        self.columns: dict[str, list[np.ndarray]] = {name: [] for name in dtypes}
        self.rows = 0

    def add(self, **arrays: np.ndarray) -> None:
        """Append one batch of rows (every column must be given)."""
        for name, parts in self.columns.items():
            parts.append(np.asarray(arrays[name], dtype=self.dtypes[name]))
        self.rows += len(parts[-1])

    def collect(self) -> dict[str, np.ndarray]:
        """The rows so far as one array per column."""
        return {
            name: np.concatenate(parts) if parts else np.empty(0, dtype=self.dtypes[name])
            for name, parts in self.columns.items()
        }

    def drain(self) -> dict[str, np.ndarray]:
        """The rows so far as one array per column, releasing the buffer's own copies."""
        collected = self.collect()
        for parts in self.columns.values():
            parts.clear()
        self.rows = 0
        return collected


class _ChunkSimulation:
    """Simulates one chunk of customers over the data window and returns its output tables."""

    ACCESSORIES = ORDER_CATEGORIES.index("accessories")
    NEVER = _NEVER
    PENDING, ACTIVE = _PENDING, _ACTIVE
    US_PER_DAY = _US_PER_DAY
    DAYS_PER_MONTH = _DAYS_PER_MONTH

    def __init__(self, spec: DemoSpec, calendar: _Calendar, chunk_index: int, first_id: int, size: int):
        self.mech = spec.mechanism
        self.cal = calendar
        self.rng = np.random.default_rng(np.random.SeedSequence([spec.seed, chunk_index]))
        self.move_rng = self.rng  # the draws of ladder moves (their own stream only in truth paths)
        self.seed_key = (spec.seed, chunk_index)
        self.truth_spec = spec.truth
        self.next_month = 0  # the month the next step simulates
        self.extra_campaigns: list[
            str
        ] = []  # campaign ids of planned contacts (continue_demo), codes -1, -2, ..
        # the campaigns' design (a treated share per month and action) is one for all chunks: its own stream
        design = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(_CAMPAIGN_DESIGN,)))
        self.treated_shares = design.choice(
            np.asarray(self.mech.campaign_treated_shares),
            size=(len(calendar.calendar_month), len(self.mech.actions)),
        )
        self.size = size
        self.customer_id = np.arange(first_id, first_id + size, dtype=np.int64)
        i32, i64, f64 = np.int32, np.int64, np.float64
        self.subscriptions = _Buffer(
            cust=i32, slot=np.int8, product=np.int8, start=i64, end=i64, price=f64, term=np.int16, bundle=i64
        )
        self.orders = _Buffer(cust=i32, day=i32, category=np.int8, amount=f64)
        self.complaints = _Buffer(
            cust=i32, opened=i64, resolved=i64, category=np.int8, severity=np.int8, satisfaction=np.int8
        )
        self.events = _Buffer(cust=i32, time=i64, type=np.int8, quantity=f64)
        self.referrals = _Buffer(cust=i32, day=i32)
        # every campaign row (treated and control) with its truth; treated rows are the offers
        self.contacts = _Buffer(
            cust=i32,
            month=i32,
            campaign=i32,
            time=i64,
            action=np.int8,
            treated=bool,
            propensity=f64,
            accepted=bool,
            cost=f64,
            multiplier=f64,
            months=i32,
            applied=bool,
            targeted=bool,
            sleeping_dog=bool,
            moved=bool,
        )
        self.truth = _Buffer(cust=i32, month=i32, p=f64)
        # complaint state used by the hazard (kept beside the output buffer for quick counting)
        self.complaint_state = _Buffer(cust=i32, opened=i64, resolved=i64, severe=bool)
        self._init_customers()
        self._init_holdings()

    # ---------------------------------------------------------------- initial state
    def _init_customers(self) -> None:
        """Draw who the customers are: signup, segment, region, channel, loyalty, engagement."""
        rng, mech, n = self.rng, self.mech, self.size
        start, end = self.cal.start, self.cal.end
        self.segment = rng.choice(len(SEGMENTS), size=n, p=mech.segment_shares)
        self.region = rng.choice(len(REGIONS), size=n, p=mech.region_shares)
        self.channel = rng.choice(len(CHANNELS), size=n, p=mech.channel_shares)
        self.existing = rng.random(n) < mech.existing_share
        self.prospect = rng.random(n) < mech.prospect_share
        back_days = rng.integers(mech.existing_min_days, int(mech.existing_max_years * 365.25) + 1, size=n)
        new_days = rng.integers(0, end - start, size=n)
        self.signup = np.where(self.existing, start - back_days, start + new_days).astype(np.int64)
        purchase_delay = rng.integers(0, mech.first_purchase_max_days + 1, size=n)
        first_start = np.where(self.existing, start - 1, self.signup + purchase_delay)
        self.buyer = ~self.prospect & (first_start < end)
        self.first_start = np.where(self.buyer, first_start, _NEVER).astype(np.int64)
        self.loyalty = rng.standard_normal(n)
        self.engagement_baseline = rng.normal(0.0, mech.engagement_baseline_sd, size=n)
        decliner = rng.random(n) < mech.decliner_share
        self.engagement_drift = np.where(decliner, -rng.uniform(*mech.decline_per_month, size=n), 0.0)
        first_month = np.clip(
            np.searchsorted(self.cal.month_start, self.first_start, side="right") - 1,
            0,
            len(self.cal.calendar_month) - 1,
        )
        self.decline_onset = rng.integers(first_month, len(self.cal.calendar_month) + 1)
        stationary_sd = mech.engagement_noise_sd / np.sqrt(1.0 - mech.engagement_ar**2)
        self.engagement_noise = rng.normal(0.0, stationary_sd, size=n)
        self.engagement = self.engagement_baseline + self.engagement_noise  # last month's engagement
        self.status = np.full(n, _PENDING, dtype=np.int8)
        self.referrals_made = np.zeros(n, dtype=np.int64)
        self.last_increase_month = np.full(n, -999, dtype=np.int64)
        self.last_increase_size = np.zeros(n)
        self.last_increase_day = np.full(n, -_NEVER, dtype=np.int64)
        self.last_offer_month = np.full(n, -999, dtype=np.int64)
        self.member_since = np.full(n, _NEVER, dtype=np.int64)  # loyalty programme membership
        # state at the start of the month being simulated (read by demo_actions.TARGETS)
        self.month_start = self.cal.start
        self.still_open = np.zeros(n, dtype=np.int64)
        self.recent_complaints = np.zeros(n, dtype=np.int64)
        # partners already before the window: long-tenure business buyers
        eligible = (
            self.existing
            & self.buyer
            & (self.segment > 0)
            & (_add_months(self.signup, mech.partner_min_tenure_months) < start)
        )
        partner = eligible & (rng.random(n) < mech.existing_partner_share)
        earliest = _add_months(self.signup, mech.partner_min_tenure_months)
        since = earliest + np.floor(rng.random(n) * np.maximum(start - earliest, 1)).astype(np.int64)
        self.partner_since = np.where(partner, since, _NEVER).astype(np.int64)
        self._prospect_events()

    def _init_holdings(self) -> None:
        """Draw each buyer's products, bundle and contract at the start of their current rows."""
        rng, mech, n = self.rng, self.mech, self.size
        n_slots = len(PRODUCT_CATEGORIES)
        start = self.cal.start
        shares_new = np.zeros(n_slots)
        shares_new[: len(mech.products_held_shares_new)] = mech.products_held_shares_new
        shares_existing = np.zeros(n_slots)
        shares_existing[: len(mech.products_held_shares_existing)] = mech.products_held_shares_existing
        count = 1 + np.where(
            self.existing,
            _draw_categories(rng, np.broadcast_to(shares_existing, (n, n_slots))),
            _draw_categories(rng, np.broadcast_to(shares_new, (n, n_slots))),
        )
        rank = _weighted_rank(rng, np.asarray(mech.category_weights)[None, :], np.ones((n, n_slots), bool))
        self.held = self.buyer[:, None] & (rank < count[:, None])
        self.product = self._draw_products(np.broadcast_to(np.arange(n_slots), (n, n_slots)))
        self.price = self._list_price(self.product, np.broadcast_to(self.segment[:, None], (n, n_slots)))
        bundled = self.buyer & (count >= 2) & (rng.random(n) < mech.bundle_at_purchase)
        self.in_bundle = self.held & bundled[:, None]
        self.bundle_number = np.where(bundled, self.customer_id * 10, -1)
        self.bundles_formed = bundled.astype(np.int64)
        # contracts: existing customers are mid-term or month-to-month; new ones sign at first start
        new_term = np.asarray([0, 12, 24])[
            _draw_categories(rng, np.broadcast_to(mech.new_term_shares, (n, 3)))
        ]
        existing_term = np.where(rng.random(n) < mech.existing_24_month_share, 24, 12)
        existing_term = np.where(rng.random(n) < mech.existing_in_term_share, existing_term, 0)
        self.term = np.where(self.existing, existing_term, new_term).astype(np.int64)
        term_floor = _add_months(np.full(n, start), -self.term) + 1
        month_to_month_floor = np.full(n, start - mech.existing_row_max_age_days)
        floor = np.maximum(self.signup, np.where(self.term > 0, term_floor, month_to_month_floor))
        existing_start = floor + np.floor(rng.random(n) * np.maximum(start - floor, 1)).astype(np.int64)
        self.first_start = np.where(self.buyer & self.existing, existing_start, self.first_start)
        self.row_start = np.broadcast_to(self.first_start[:, None], (n, n_slots)).copy()
        self.term_end = np.where(self.term > 0, _add_months(self.first_start, self.term), _NEVER)

    def _draw_products(self, slot: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """A product index for each category slot (basic or premium variant where there are two)."""
        first_of_category = np.asarray(
            [next(i for i, p in enumerate(PRODUCTS) if p.category == c) for c in PRODUCT_CATEGORIES]
        )
        variants = np.asarray([sum(p.category == c for p in PRODUCTS) for c in PRODUCT_CATEGORIES])
        rng = self.rng if rng is None else rng
        premium = (rng.random(slot.shape) < self.mech.premium_variant_share) & (variants[slot] > 1)
        return first_of_category[slot] + premium.astype(np.int64)

    def _list_price(
        self, product: np.ndarray, segment: np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """A monthly list price for each product, scaled by the segment's price factor."""
        low = np.asarray([p.price_low for p in PRODUCTS])[product]
        high = np.asarray([p.price_high for p in PRODUCTS])[product]
        factor = np.asarray(self.mech.segment_price_factor)[segment]
        return np.round((self.rng if rng is None else rng).uniform(low, high) * factor, 2)

    def _prospect_events(self) -> None:
        """A few events (browsing) in the days after signup (or window start) for customers who never buy."""
        rng, mech = self.rng, self.mech
        start, end = self.cal.start, self.cal.end
        who = np.flatnonzero(~self.buyer)
        begin = np.maximum(self.signup[who], start)
        finish = np.minimum(begin + mech.prospect_event_days, end)
        counts = rng.poisson(mech.prospect_events_mean, size=who.size) * (finish > begin)
        self._add_events(who, begin, finish, counts, np.asarray(mech.prospect_event_type_shares))

    # ---------------------------------------------------------------- monthly step
    def run(self, steps: Iterable[Callable[[], object]] | None = None) -> Iterator[tuple[str, pa.Table]]:
        """Simulate every month of the window (or run ``steps``, one month each), yielding tables as they are
        ready (large logs in batches), then the final tables and the true action values at the end."""
        if steps is None:
            steps = (functools.partial(self._step, month) for month in range(len(self.cal.calendar_month)))
        for step in steps:
            step()
            if self.events.rows >= _FLUSH_ROWS:
                yield "events", self._events_table()
            if self.truth.rows >= _FLUSH_ROWS:
                yield "true_churn_probability", self._truth_table()
        values = action_values(self, self.truth_spec)  # before the final tables drain the contacts
        yield from self._final_tables()
        yield "true_action_values", values

    def extend_calendar(self, months: int, design: np.random.Generator) -> None:
        """Extend the window to ``months`` months from its start (a continuation past the data end); the
        campaigns' treated shares of the new months are drawn from ``design``."""
        have = len(self.cal.calendar_month)
        if months <= have:
            return
        first = self.cal.month_start[:1].astype("datetime64[D]").astype("datetime64[M]")[0]
        starts = np.arange(first, first + months + 1)
        self.cal = _Calendar(
            month_start=starts.astype("datetime64[D]").astype(np.int64),
            calendar_month=(starts[:-1].astype(np.int64) % 12 + 1).astype(np.int64),
        )
        extra = design.choice(
            np.asarray(self.mech.campaign_treated_shares), size=(months - have, len(self.mech.actions))
        )
        self.treated_shares = np.concatenate([self.treated_shares, extra])

    def _complaint_counts(self, month_start: np.int64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per customer at a month start: recent complaints, open (unresolved) ones, and severe recent ones."""
        state = self.complaint_state.collect()
        n = self.size
        if state["cust"].size == 0:
            zeros = np.zeros(n, dtype=np.int64)
            return zeros, zeros, zeros
        cust = state["cust"].astype(np.int64)
        at = month_start * _US_PER_DAY
        before = state["opened"] < at
        recent = before & (state["opened"] >= at - self.mech.complaint_window_days * _US_PER_DAY)
        still_open = before & (state["resolved"] >= at)
        return (
            np.bincount(cust[recent], minlength=n),
            np.bincount(cust[still_open], minlength=n),
            np.bincount(cust[recent & state["severe"]], minlength=n),
        )

    def _offer_multiplier(self, month: int) -> np.ndarray:
        """Product of the hazard multipliers of offers in effect this month, per customer."""
        offers = self.contacts.collect()
        multiplier = np.ones(self.size)
        if offers["cust"].size:
            on = offers["applied"] & (month > offers["month"]) & (month <= offers["month"] + offers["months"])
            np.multiply.at(multiplier, offers["cust"][on].astype(np.int64), offers["multiplier"][on])
        return multiplier

    def _hazard(
        self,
        who: np.ndarray,
        month: int,
        month_start: np.int64,
        month_end: np.int64,
        recent: np.ndarray,
        still_open: np.ndarray,
        severe: np.ndarray,
    ) -> np.ndarray:
        """The monthly churn probability of customers ``who`` from their state at the month start: the logistic
        hazard times the multipliers of offers in effect, capped at ``max_hazard`` (both parts are kept in
        ``hazard_parts`` for the truth's state paths)."""
        base = self._base_hazard(who, month, month_start, month_end, recent, still_open, severe)
        multiplier = self._offer_multiplier(month)[who]
        self.hazard_parts = (who, base, multiplier)
        return np.minimum(base * multiplier, self.mech.max_hazard)

    def _base_hazard(
        self,
        who: np.ndarray,
        month: int,
        month_start: np.int64,
        month_end: np.int64,
        recent: np.ndarray,
        still_open: np.ndarray,
        severe: np.ndarray,
    ) -> np.ndarray:
        """The logistic monthly hazard of customers ``who`` from their state at the month start."""
        mech = self.mech
        held = self.held[who]
        n_held = held.sum(axis=1)
        n_bundled = (held & self.in_bundle[who]).sum(axis=1)
        tenure_months = (month_start - self.signup[who]) / _DAYS_PER_MONTH
        months_since_increase = month - self.last_increase_month[who]
        after_increase = (months_since_increase >= 1) & (
            months_since_increase <= mech.price_increase_effect_months
        )
        increase_effect = np.where(
            after_increase,
            self.last_increase_size[who]
            * np.exp(-(months_since_increase - 1) / mech.price_increase_decay_months),
            0.0,
        )
        in_term = self.term[who] > 0
        term_ends = in_term & (self.term_end[who] < month_end)
        engagement_drop = np.clip(
            self.engagement_baseline[who] - self.engagement[who], 0.0, mech.engagement_drop_cap
        )
        logit = (
            mech.intercept
            + mech.tenure_log * np.log1p(np.maximum(tenure_months, 0.0))
            + np.asarray(mech.segment_effect)[self.segment[who]]
            + mech.channel_referral * (self.channel[who] == CHANNELS.index("referral"))
            + mech.bundle_held * (n_bundled >= 2)
            + mech.bundle_extra_product * np.maximum(n_bundled - 2, 0)
            + mech.cross_sell_depth * np.maximum(n_held - 1, 0)
            + mech.complaint_recent * np.minimum(recent[who], mech.complaint_recent_cap)
            + mech.complaint_open * np.minimum(still_open[who], mech.complaint_open_cap)
            + mech.complaint_severe * np.minimum(severe[who], mech.complaint_severe_cap)
            + mech.price_increase * increase_effect
            + mech.in_term * in_term
            + mech.term_end_month * term_ends
            + mech.engagement_drop * engagement_drop
            + mech.loyalty * self.loyalty[who]
            + mech.advocate * (self.referrals_made[who] > 0)
            + mech.partner * (self.partner_since[who] < month_start)
            + mech.programme_member * (self.member_since[who] < month_start)
        )
        return 1.0 / (1.0 + np.exp(-logit))

    def _step(
        self,
        month: int,
        *,
        churn: bool = True,
        logs: bool = True,
        campaigns: bool = True,
        plan: Callable[..., np.ndarray] | None = None,
    ) -> None:
        """One month: hazards, churn, the month's campaign, logs, then contract and product changes of survivors.

        ``churn=False`` keeps every customer (hazards are still computed and recorded); ``logs=False`` emits
        no events or orders (neither feeds the hazard; complaints and referrals, which do, still happen);
        ``campaigns=False`` runs no campaign this month. ``plan(simulation, month, active, month_start,
        month_end, churns, churn_day)`` makes planned contacts after the campaign (through ``_contact``) and
        returns who made a move (features/demo/continuation.py, features/demo/truth.py).
        """
        rng, mech = self.rng, self.mech
        month_start = self.cal.month_start[month]
        month_end = self.cal.month_start[month + 1]
        n_days = int(month_end - month_start)
        self.status[(self.status == _PENDING) & (self.first_start <= month_start)] = _ACTIVE
        active = np.flatnonzero(self.status == _ACTIVE)
        recent, still_open, severe = self._complaint_counts(month_start)
        self.month_start, self.still_open, self.recent_complaints = month_start, still_open, recent

        # engagement of this month (drives this month's logs and next month's hazard)
        self.engagement_noise = mech.engagement_ar * self.engagement_noise + rng.normal(
            0.0, mech.engagement_noise_sd, size=self.size
        )
        engagement_now = (
            self.engagement_baseline
            + self.engagement_drift * np.maximum(month - self.decline_onset, 0)
            + self.engagement_noise
        )

        hazard = self._hazard(active, month, month_start, month_end, recent, still_open, severe)
        self.truth.add(cust=active, month=np.full(active.size, month_start), p=hazard)
        churns = (rng.random(active.size) < hazard) & churn
        churn_day = month_start + rng.integers(0, n_days, size=active.size)
        term_ends = (self.term[active] > 0) & (self.term_end[active] < month_end)
        on_term_end = term_ends & (rng.random(active.size) < mech.churn_on_term_end_day_share)
        churn_day = np.where(on_term_end, self.term_end[active], churn_day)
        churn_day = np.maximum(churn_day, self._latest_row_start(active))

        moved = (
            self._run_campaign(active, month, month_start, month_end, hazard, churns, churn_day)
            if campaigns
            else np.empty(0, dtype=np.int64)
        )
        if plan is not None:
            moved = np.union1d(moved, plan(self, month, active, month_start, month_end, churns, churn_day))

        churners = active[churns]
        self._close_rows(churners, self.held[churners], churn_day[churns])
        self.held[churners] = False
        self.status[churners] = _CHURNED

        starters = np.flatnonzero((self.status == _PENDING) & (self.first_start < month_end))
        live = np.concatenate([active, starters])
        live_from = np.concatenate([np.full(active.size, month_start), self.first_start[starters]])
        live_until = np.concatenate(
            [np.where(churns, churn_day + 1, month_end), np.full(starters.size, month_end)]
        )
        self._logs(month, month_start, n_days, live, live_from, live_until, engagement_now, still_open, logs)
        if logs:
            self._first_orders(starters)

        survivors = active[~churns]
        renewing = survivors[self.term_end[survivors] < month_end]
        self._end_terms(renewing)
        remaining = np.setdiff1d(survivors, np.union1d(renewing, moved), assume_unique=True)
        if self.cal.calendar_month[month] == mech.price_review_month:
            reviewed = self._review_prices(remaining[self.term[remaining] == 0], month, month_start, n_days)
            remaining = np.setdiff1d(remaining, reviewed, assume_unique=True)
        cross_sold = self._cross_sell(remaining, month_start, n_days, engagement_now)
        remaining = np.setdiff1d(remaining, cross_sold, assume_unique=True)
        self._drop_products(remaining, month_start, n_days)
        self._make_partners(survivors, month_start, n_days)
        self.engagement = engagement_now
        self.next_month = month + 1

    # ---------------------------------------------------------------- subscription rows
    def _latest_row_start(self, who: np.ndarray) -> np.ndarray:
        """The latest start day among the rows a customer holds (so an end is never before a start)."""
        return np.where(self.held[who], self.row_start[who], -_NEVER).max(axis=1, initial=-_NEVER)

    def _close_rows(self, who: np.ndarray, slots: np.ndarray, end_day: np.ndarray) -> None:
        """Emit the rows of ``who`` in ``slots`` (customers x categories mask) as ending on ``end_day``."""
        row, slot = np.nonzero(slots & self.held[who])
        cust = who[row]
        self.subscriptions.add(
            cust=cust,
            slot=slot,
            product=self.product[cust, slot],
            start=self.row_start[cust, slot],
            end=np.asarray(end_day)[row],
            price=self.price[cust, slot],
            term=self.term[cust],
            bundle=np.where(self.in_bundle[cust, slot], self.bundle_number[cust], -1),
        )

    def _reopen_rows(self, who: np.ndarray, slots: np.ndarray, start_day: np.ndarray) -> None:
        """Start new rows for ``who`` in ``slots`` on ``start_day`` (the attributes are set by the caller)."""
        self.row_start[who] = np.where(slots & self.held[who], start_day[:, None], self.row_start[who])

    def _end_terms(self, who: np.ndarray) -> None:
        """At term end, renew to a new term (sometimes a few days late) or roll to month-to-month."""
        if who.size == 0:
            return
        rng, mech = self.rng, self.mech
        end = self.term_end[who]
        renew = rng.random(who.size) < mech.renewal_share
        late = renew & (rng.random(who.size) < mech.late_renewal_share)
        new_start = end + np.where(late, rng.integers(1, mech.late_renewal_max_days + 1, size=who.size), 0)
        new_start = np.where(new_start < self.cal.end, new_start, end)
        self._close_rows(who, self.held[who], end)
        keep = rng.random(who.size) < mech.renewal_keeps_term_share
        new_term = np.where(renew, np.where(keep, self.term[who], 36 - self.term[who]), 0)
        change = np.where(
            renew[:, None], rng.uniform(*mech.renewal_price_change, size=(who.size, self.held.shape[1])), 0.0
        )
        self.price[who] = np.round(self.price[who] * (1.0 + change), 2)
        self._reopen_rows(who, self.held[who], new_start)
        self.term[who] = new_term
        self.term_end[who] = np.where(new_term > 0, _add_months(new_start, new_term), _NEVER)

    def _review_prices(self, who: np.ndarray, month: int, month_start: np.int64, n_days: int) -> np.ndarray:
        """Annual price review: raise a share of month-to-month subscriptions by 5-15%; return who."""
        rng, mech = self.rng, self.mech
        hit = self.held[who] & (rng.random((who.size, self.held.shape[1])) < mech.price_review_share)
        size = rng.uniform(*mech.price_increase_range, size=hit.shape)
        day = np.maximum(month_start + rng.integers(0, n_days, size=who.size), self._latest_row_start(who))
        raised = hit.any(axis=1)
        who, hit, size, day = who[raised], hit[raised], size[raised], day[raised]
        self._close_rows(who, hit, day)
        self.price[who] = np.where(hit, np.round(self.price[who] * (1.0 + size), 2), self.price[who])
        self._reopen_rows(who, hit, day)
        self.last_increase_month[who] = month
        self.last_increase_day[who] = day
        self.last_increase_size[who] = np.where(hit, size, 0.0).max(axis=1)
        return who

    def _cross_sell(
        self, who: np.ndarray, month_start: np.int64, n_days: int, engagement_now: np.ndarray
    ) -> np.ndarray:
        """Add a product in a new category (sometimes into a bundle); return who bought one."""
        rng, mech = self.rng, self.mech
        has_room = self.held[who].sum(axis=1) < self.held.shape[1]
        rate = mech.cross_sell_rate * np.exp(mech.cross_sell_engagement * engagement_now[who])
        who = who[has_room & (rng.random(who.size) < rate)]
        if who.size == 0:
            return who
        day = month_start + rng.integers(0, n_days, size=who.size)
        return self.add_products(who, day, bundle_it=rng.random(who.size) < mech.cross_sell_bundle_share)

    def add_products(
        self,
        who: np.ndarray,
        day: np.ndarray,
        *,
        bundle_it: np.ndarray,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Add a product in a category not held yet on ``day`` (or the latest row start, if later), into the
        customer's bundle or forming one where ``bundle_it``; return who bought one (those with room). Draws
        from ``rng`` (default: the simulation's stream)."""
        rng, mech = self.rng if rng is None else rng, self.mech
        has_room = self.held[who].sum(axis=1) < self.held.shape[1]
        who, day, bundle_it = who[has_room], np.asarray(day)[has_room], bundle_it[has_room]
        if who.size == 0:
            return who
        rank = _weighted_rank(rng, np.asarray(mech.category_weights)[None, :], ~self.held[who])
        new_slot = rank == 0
        day = np.maximum(day, self._latest_row_start(who))
        has_bundle = self.bundle_number[who] >= 0
        join_bundle = bundle_it & has_bundle
        form_bundle = bundle_it & ~has_bundle & (self.bundles_formed[who] < 10)
        in_term = self.term[who] > 0
        restart = form_bundle | in_term
        self._close_rows(who[restart], self.held[who[restart]], day[restart])
        self._reopen_rows(who[restart], self.held[who[restart]], day[restart])
        formers = who[form_bundle]
        self.bundle_number[formers] = self.customer_id[formers] * 10 + self.bundles_formed[formers]
        self.bundles_formed[formers] += 1
        self.in_bundle[formers] = self.held[formers]
        recontract = who[in_term]
        self.term_end[recontract] = _add_months(day[in_term], self.term[recontract])
        row, slot = np.nonzero(new_slot)
        cust = who[row]
        self.held[cust, slot] = True
        self.product[cust, slot] = self._draw_products(slot, rng)
        self.price[cust, slot] = self._list_price(self.product[cust, slot], self.segment[cust], rng)
        self.row_start[cust, slot] = day[row]
        self.in_bundle[cust, slot] = (join_bundle | form_bundle)[row]
        return who

    def _drop_products(self, who: np.ndarray, month_start: np.int64, n_days: int) -> None:
        """Month-to-month multi-product customers sometimes drop one product (maybe losing a bundle)."""
        rng, mech = self.rng, self.mech
        eligible = (self.term[who] == 0) & (self.held[who].sum(axis=1) >= 2)
        who = who[eligible & (rng.random(who.size) < mech.drop_rate)]
        if who.size == 0:
            return
        rank = _weighted_rank(rng, np.ones((1, self.held.shape[1])), self.held[who])
        dropped = rank == 0
        day = np.maximum(month_start + rng.integers(0, n_days, size=who.size), self._latest_row_start(who))
        self._close_rows(who, dropped, day)
        self.held[who] = self.held[who] & ~dropped
        self.in_bundle[who] = self.in_bundle[who] & ~dropped
        left_in_bundle = (self.held[who] & self.in_bundle[who]).sum(axis=1)
        dissolve = (left_in_bundle == 1) & (self.bundle_number[who] >= 0)
        lone = who[dissolve]
        lone_slot = self.held[lone] & self.in_bundle[lone]
        self._close_rows(lone, lone_slot, day[dissolve])
        self.in_bundle[lone] = False
        self.bundle_number[lone] = -1
        self._reopen_rows(lone, lone_slot, day[dissolve])
        emptied = who[left_in_bundle == 0]
        self.bundle_number[emptied] = -1

    def _make_partners(self, who: np.ndarray, month_start: np.int64, n_days: int) -> None:
        """A small share of long-tenure business customers become partners this month."""
        mech = self.mech
        eligible = (
            (self.segment[who] > 0)
            & (self.partner_since[who] == _NEVER)
            & (_add_months(self.signup[who], mech.partner_min_tenure_months) < month_start)
        )
        become = who[eligible & (self.rng.random(who.size) < mech.partner_rate)]
        self.partner_since[become] = month_start + self.rng.integers(0, n_days, size=become.size)

    # ---------------------------------------------------------------- retention campaigns
    def _run_campaign(
        self,
        active: np.ndarray,
        month: int,
        month_start: np.int64,
        month_end: np.int64,
        hazard: np.ndarray,
        churns: np.ndarray,
        churn_day: np.ndarray,
    ) -> np.ndarray:
        """This month's campaign: draw customers out of cooldown (risk-stratified), give each a random action,
        treat each with the campaign-action's treated share (the rest are controls), apply the effects;
        return who made a move (they make no other product change this month)."""
        rng, mech = self.rng, self.mech
        n_actions = len(mech.actions)
        treated_share = self.treated_shares[month]
        share = np.where(
            hazard > mech.offer_threshold, mech.campaign_share_at_risk, mech.campaign_share_low_risk
        )
        drawn = (month - self.last_offer_month[active] >= mech.offer_cooldown_months) & (
            rng.random(active.size) < share
        )
        contact_day = month_start + rng.integers(0, int(month_end - month_start), size=active.size)
        drawn &= ~churns | (contact_day <= churn_day)  # nobody is contacted after they left
        who, day = active[drawn], contact_day[drawn]
        until = np.where(churns, churn_day, month_end - 1)[drawn]
        contact_time = (
            day * _US_PER_DAY
            + rng.integers(mech.offer_hours[0] * 3600, mech.offer_hours[1] * 3600, size=who.size)
            * _US_PER_SECOND
        )
        action = rng.integers(0, n_actions, size=who.size)
        propensity = treated_share[action]
        treated = rng.random(who.size) < propensity
        return self._contact(month, who, contact_time, until, action, treated, propensity)

    def _contact(
        self,
        month: int,
        who: np.ndarray,
        contact_time: np.ndarray,
        until: np.ndarray,
        action: np.ndarray,
        treated: np.ndarray,
        propensity: np.ndarray,
        *,
        campaign: np.ndarray | None = None,
        accepted: np.ndarray | None = None,
    ) -> np.ndarray:
        """Record campaign rows (customers ``who``, action indices, treated or control) assigned at
        ``contact_time`` (us) in ``month``, with their truth, and apply the effects to the treated: a hazard
        multiplier from next month, or a move (``until``: the customer's last day live this month).
        ``campaign``: campaign codes (default: the month's campaign; -1, -2, ..: ``extra_campaigns``);
        ``accepted``: given acceptance instead of drawn (the truth's accepted branch). Return who made a move."""
        rng, mech = self.rng, self.mech
        day = contact_time // _US_PER_DAY
        targeted = np.zeros(who.size, dtype=bool)
        for index, truth in enumerate(mech.actions):
            mine = action == index
            targeted[mine] = TARGETS[truth.target](self, who[mine])
        acceptance = np.where(
            targeted,
            np.asarray([a.acceptance for a in mech.actions])[action],
            np.asarray([a.off_target_acceptance for a in mech.actions])[action],
        )
        if accepted is None:  # for controls: would have accepted, had they been asked
            accepted = rng.random(who.size) < acceptance
        sleeping_dog = self.engagement[who] < mech.sleeping_dog_engagement
        multiplier = np.where(
            targeted,
            np.asarray([a.targeted_multiplier for a in mech.actions])[action],
            np.asarray([a.untargeted_multiplier for a in mech.actions])[action],
        )
        months = np.asarray([a.effect_months for a in mech.actions])[action]
        multiplier = np.where(sleeping_dog, mech.sleeping_dog_multiplier, multiplier)
        months = np.where(sleeping_dog, mech.sleeping_dog_months, months)
        revenue = (self.price[who] * self.held[who]).sum(axis=1)
        action_cost = (
            np.asarray([a.cost for a in mech.actions])[action]
            + np.asarray([a.discount_share * a.discount_months for a in mech.actions])[action] * revenue
        )
        cost = np.round(mech.contact_cost + accepted * action_cost, 2)
        moved = np.zeros(who.size, dtype=bool)
        for index, truth in enumerate(mech.actions):
            movers = np.flatnonzero((action == index) & treated & accepted & ~sleeping_dog)
            if truth.move is not None and movers.size:
                changed = MOVES[truth.move](self, who[movers], day[movers], until[movers])
                moved[movers[np.isin(who[movers], changed)]] = True
        self.contacts.add(
            cust=who,
            month=np.full(who.size, month),
            campaign=np.full(who.size, month) if campaign is None else campaign,
            time=contact_time,
            action=action,
            treated=treated,
            propensity=propensity,
            accepted=accepted,
            cost=cost,
            multiplier=multiplier,
            months=months,
            applied=treated & (accepted | sleeping_dog) & (multiplier != 1.0) & (months > 0),
            targeted=targeted,
            sleeping_dog=sleeping_dog,
            moved=moved,
        )
        self.last_offer_month[who[treated]] = month
        return who[moved]

    # ---------------------------------------------------------------- logs
    def _add_events(
        self,
        who: np.ndarray,
        begin: np.ndarray,
        finish: np.ndarray,
        counts: np.ndarray,
        type_shares: np.ndarray,
    ) -> None:
        """Emit ``counts`` events per customer at uniform times in [begin, finish) (day numbers)."""
        rng, mech = self.rng, self.mech
        total = int(counts.sum())
        if total == 0:
            return
        row = np.repeat(np.arange(who.size), counts)
        span_seconds = (finish - begin)[row] * _SECONDS_PER_DAY
        when = (
            begin[row] * _US_PER_DAY
            + np.floor(rng.random(total) * span_seconds).astype(np.int64) * _US_PER_SECOND
        )
        kind = np.minimum(
            np.searchsorted(np.cumsum(type_shares), rng.random(total) * type_shares.sum(), side="right"),
            len(EVENT_TYPES) - 1,
        )
        quantity = np.full(total, np.nan)
        usage = kind == EVENT_TYPES.index("usage")
        quantity[usage] = np.round(rng.lognormal(*mech.usage_gb_lognormal, size=int(usage.sum())), 3)
        session = kind == EVENT_TYPES.index("app_session")
        quantity[session] = np.round(
            rng.lognormal(*mech.session_minutes_lognormal, size=int(session.sum())), 1
        )
        feature = kind == EVENT_TYPES.index("feature_use")
        quantity[feature] = rng.integers(1, mech.feature_uses_max + 1, size=int(feature.sum())).astype(
            np.float64
        )
        self.events.add(cust=who[row], time=when, type=kind, quantity=quantity)

    def _logs(
        self,
        month: int,
        month_start: np.int64,
        n_days: int,
        live: np.ndarray,
        live_from: np.ndarray,
        live_until: np.ndarray,
        engagement_now: np.ndarray,
        still_open: np.ndarray,
        logs: bool = True,
    ) -> None:
        """Events, orders, complaints and referrals of the customers live in (part of) this month (without
        events and orders when not ``logs``)."""
        share_of_month = (live_until - live_from) / n_days
        engagement = engagement_now[live]
        if logs:
            self._usage_logs(live, live_from, live_until, share_of_month, engagement, still_open)
        self._complaints_and_referrals(month, month_start, live, live_from, live_until, share_of_month)

    def _usage_logs(
        self,
        live: np.ndarray,
        live_from: np.ndarray,
        live_until: np.ndarray,
        share_of_month: np.ndarray,
        engagement: np.ndarray,
        still_open: np.ndarray,
    ) -> None:
        """Events and orders of the live customers (they do not feed the hazard)."""
        rng, mech = self.rng, self.mech
        # events
        counts = rng.poisson(
            mech.events_per_month * np.exp(mech.events_engagement * engagement) * share_of_month
        )
        self._add_events(live, live_from, live_until, counts, np.asarray(mech.event_type_shares))
        support = rng.poisson(mech.support_views_if_open_complaint * share_of_month) * (still_open[live] > 0)
        only_support = np.zeros(len(EVENT_TYPES))
        only_support[EVENT_TYPES.index("support_page_view")] = 1.0
        self._add_events(live, live_from, live_until, support, only_support)
        # orders
        counts = rng.poisson(
            mech.orders_per_month * np.exp(mech.orders_engagement * engagement) * share_of_month
        )
        row = np.repeat(np.arange(live.size), counts)
        day = live_from[row] + np.floor(rng.random(row.size) * (live_until - live_from)[row]).astype(np.int64)
        self.add_orders(
            live[row], day, rng.choice(len(ORDER_CATEGORIES), size=row.size, p=mech.order_category_shares)
        )

    def _complaints_and_referrals(
        self,
        month: int,
        month_start: np.int64,
        live: np.ndarray,
        live_from: np.ndarray,
        live_until: np.ndarray,
        share_of_month: np.ndarray,
    ) -> None:
        """Complaints and referrals of the live customers (both feed the hazard)."""
        rng, mech = self.rng, self.mech
        # complaints
        since_increase = month - self.last_increase_month[live]
        rate = (
            mech.complaint_rate
            * np.where(
                (since_increase >= 1) & (since_increase <= mech.complaint_after_increase_months),
                mech.complaint_after_increase_factor,
                1.0,
            )
            * np.where(
                month_start - self.first_start[live] < mech.new_customer_days,
                mech.complaint_new_customer_factor,
                1.0,
            )
            * np.where(self.region[live] == REGIONS.index("north"), mech.complaint_north_factor, 1.0)
            * np.exp(mech.complaint_loyalty * self.loyalty[live])
            * share_of_month
        )
        counts = rng.poisson(rate)
        row = np.repeat(np.arange(live.size), counts)
        if row.size:
            cust = live[row]
            span_seconds = (live_until - live_from)[row] * _SECONDS_PER_DAY
            opened = (
                live_from[row] * _US_PER_DAY
                + np.floor(rng.random(row.size) * span_seconds).astype(np.int64) * _US_PER_SECOND
            )
            weights = np.broadcast_to(np.asarray(mech.complaint_category_weights), (row.size, 5)).copy()
            after_increase = (since_increase[row] >= 1) & (
                since_increase[row] <= mech.complaint_after_increase_months
            )
            weights[:, 0] *= np.where(after_increase, mech.billing_weight_after_increase, 1.0)
            weights[:, 1] *= np.where(
                self.region[cust] == REGIONS.index("north"), mech.network_weight_north, 1.0
            )
            new_customer = month_start - self.first_start[cust] < mech.new_customer_days
            weights[:, 4] *= np.where(new_customer, mech.installation_weight_new_customer, 1.0)
            category = _draw_categories(rng, weights)
            severity = rng.choice(len(SEVERITIES), size=row.size, p=mech.severity_shares)
            days_to_resolve = rng.lognormal(
                np.log(np.asarray(mech.resolution_median_days)[severity]), mech.resolution_sigma
            )
            never = rng.random(row.size) < mech.never_resolved_share
            seconds_to_resolve = np.round(days_to_resolve * _SECONDS_PER_DAY).astype(np.int64)
            resolved = np.where(never, _NEVER_US, opened + seconds_to_resolve * _US_PER_SECOND)
            score = (
                mech.satisfaction_base
                + mech.satisfaction_loyalty * self.loyalty[cust]
                + mech.satisfaction_per_day_to_resolve * days_to_resolve
                + mech.satisfaction_severe * (severity >= 2)
                + rng.normal(0.0, mech.satisfaction_noise_sd, size=row.size)
            )
            satisfaction = np.clip(np.round(score), 1, 5).astype(np.int64)
            answered = (resolved < self.cal.end * _US_PER_DAY) & (
                rng.random(row.size) >= mech.satisfaction_missing_share
            )
            satisfaction = np.where(answered, satisfaction, -1)
            self.complaints.add(
                cust=cust,
                opened=opened,
                resolved=resolved,
                category=category,
                severity=severity,
                satisfaction=satisfaction,
            )
            self.complaint_state.add(cust=cust, opened=opened, resolved=resolved, severe=severity >= 2)
        # referrals
        rate = mech.referral_rate * np.exp(mech.referral_loyalty * self.loyalty[live]) * share_of_month
        counts = rng.poisson(rate)
        row = np.repeat(np.arange(live.size), counts)
        if row.size:
            day = live_from[row] + np.floor(rng.random(row.size) * (live_until - live_from)[row]).astype(
                np.int64
            )
            self.referrals.add(cust=live[row], day=day)
            np.add.at(self.referrals_made, live[row], 1)

    def _first_orders(self, starters: np.ndarray) -> None:
        """A share of new customers buy a device on the day their first subscription starts."""
        buys = starters[self.rng.random(starters.size) < self.mech.first_device_order_share]
        self.add_orders(buys, self.first_start[buys], np.zeros(buys.size, dtype=np.int64))

    def add_orders(
        self, cust: np.ndarray, day: np.ndarray, category: np.ndarray, rng: np.random.Generator | None = None
    ) -> None:
        """Emit orders with amounts drawn per order category (a few are free), from ``rng`` (default: the
        simulation's stream)."""
        if cust.size == 0:
            return
        rng, mech = self.rng if rng is None else rng, self.mech
        median = np.asarray(mech.order_amount_median)[category]
        amount = np.round(rng.lognormal(np.log(median), mech.order_amount_sigma), 2)
        amount = np.where(rng.random(cust.size) < mech.free_order_share, 0.0, amount)
        self.orders.add(cust=cust, day=day, category=category, amount=amount)

    # ---------------------------------------------------------------- output
    def _match_referrals(self, referrer: np.ndarray, referral_day: np.ndarray) -> np.ndarray:
        """Link referrals to new referral-channel customers of this chunk who signed up soon after."""
        mech = self.mech
        candidates = np.flatnonzero(~self.existing & (self.channel == CHANNELS.index("referral")))
        candidates = candidates[np.argsort(self.signup[candidates], kind="stable")]
        candidate_day = self.signup[candidates]
        referred = np.full(referrer.size, -1, dtype=np.int64)
        # its own stream, so that the referrals before a date match alike in a continuation (continue_demo)
        matching = np.random.default_rng(np.random.SeedSequence([*self.seed_key, _REFERRAL_MATCHING]))
        converts = matching.random(referrer.size) < mech.referral_conversion
        next_free = np.arange(candidates.size + 1)  # union-find over taken candidates

        def find(position: int) -> int:
            root = position
            while next_free[root] != root:
                root = next_free[root]
            while next_free[position] != root:
                next_free[position], position = root, next_free[position]
            return root

        first_candidate = np.searchsorted(candidate_day, referral_day, side="left")
        for row in np.flatnonzero(converts):
            position = find(int(first_candidate[row]))
            if (
                position < candidates.size
                and candidate_day[position] <= referral_day[row] + mech.referral_match_days
            ):
                referred[row] = candidates[position]
                next_free[position] = position + 1
        return referred

    def _final_tables(self) -> Iterator[tuple[str, pa.Table]]:
        """This chunk's tables after the last month, one at a time, each sorted by customer and time."""
        open_holders = np.flatnonzero(
            (self.status == _ACTIVE) | ((self.status == _PENDING) & (self.first_start < self.cal.end))
        )
        self._close_rows(open_holders, self.held[open_holders], np.full(open_holders.size, _NEVER))
        yield "customers", self._customers_table()
        yield "subscriptions", self._subscriptions_table()
        yield "orders", self._orders_table()
        yield "complaints", self._complaints_table()
        yield "events", self._events_table()
        yield "referrals", self._referrals_table()
        yield from self._offer_tables()
        yield "true_churn_probability", self._truth_table()

    def _ids(self, rows: np.ndarray) -> np.ndarray:
        """Customer ids of chunk-local row indices."""
        return self.customer_id[rows.astype(np.int64)]

    def _customers_table(self) -> pa.Table:
        """One row per customer of the chunk."""
        return pa.table(
            {
                "customer_id": self.customer_id,
                "signup_date": _dates(self.signup),
                "segment": _labels(SEGMENTS, self.segment),
                "region": _labels(REGIONS, self.region),
                "channel": _labels(CHANNELS, self.channel),
                "partner_since": _dates(self.partner_since, self.partner_since >= self.cal.end),
            },
            schema=SCHEMAS["customers"],
        )

    def _subscriptions_table(self) -> pa.Table:
        """Every contract period (row) emitted so far, open ones with a null end."""
        rows = self.subscriptions.drain()
        order = np.lexsort((rows["slot"], rows["start"], rows["cust"]))
        rows = {key: value[order] for key, value in rows.items()}
        bundle = rows["bundle"]
        bundle_ids = pc.binary_join_element_wise(
            "B", pc.utf8_lpad(pa.array(bundle, mask=bundle < 0).cast(pa.string()), 9, "0"), ""
        )
        return pa.table(
            {
                "customer_id": self._ids(rows["cust"]),
                "product": _labels(tuple(p.name for p in PRODUCTS), rows["product"]),
                "product_category": _labels(tuple(p.category for p in PRODUCTS), rows["product"]),
                "start_date": _dates(rows["start"]),
                "end_date": _dates(rows["end"], rows["end"] >= self.cal.end),
                "monthly_price": rows["price"],
                "contract_term_months": rows["term"].astype(np.int32),
                "bundle_id": bundle_ids,
            },
            schema=SCHEMAS["subscriptions"],
        )

    def _orders_table(self) -> pa.Table:
        """The orders of the chunk."""
        rows = self.orders.drain()
        order = np.lexsort((rows["day"], rows["cust"]))
        return pa.table(
            {
                "customer_id": self._ids(rows["cust"][order]),
                "order_date": _dates(rows["day"][order]),
                "product_category": _labels(ORDER_CATEGORIES, rows["category"][order]),
                "amount": rows["amount"][order],
            },
            schema=SCHEMAS["orders"],
        )

    def _complaints_table(self) -> pa.Table:
        """The complaints of the chunk; resolutions on or after the data end are null (still open)."""
        rows = self.complaints.drain()
        order = np.lexsort((rows["opened"], rows["cust"]))
        resolved = rows["resolved"][order]
        satisfaction = rows["satisfaction"][order]
        return pa.table(
            {
                "customer_id": self._ids(rows["cust"][order]),
                "opened_at": _timestamps(rows["opened"][order]),
                "resolved_at": _timestamps(resolved, resolved >= self.cal.end * _US_PER_DAY),
                "category": _labels(COMPLAINT_CATEGORIES, rows["category"][order]),
                "severity": _labels(SEVERITIES, rows["severity"][order]),
                "satisfaction": pa.array(satisfaction, mask=satisfaction < 0, type=pa.int8()),
            },
            schema=SCHEMAS["complaints"],
        )

    def _events_table(self) -> pa.Table:
        """The events buffered since the last flush."""
        rows = self.events.drain()
        order = np.lexsort((rows["time"], rows["cust"]))
        customer_id = self._ids(rows["cust"][order])
        event_time = _timestamps(rows["time"][order])
        event_type = _labels(EVENT_TYPES, rows["type"][order])
        del rows["cust"], rows["time"], rows["type"]
        quantity = rows.pop("quantity")[order]
        return pa.table(
            {
                "customer_id": customer_id,
                "event_time": event_time,
                "event_type": event_type,
                "quantity": pa.array(quantity, mask=np.isnan(quantity), type=pa.float64()),
            },
            schema=SCHEMAS["events"],
        )

    def _referrals_table(self) -> pa.Table:
        """The referrals of the chunk, linked to the referred customer where one signed up."""
        rows = self.referrals.drain()
        order = np.lexsort((rows["cust"], rows["day"]))
        referrer = rows["cust"][order].astype(np.int64)
        referral_day = rows["day"][order].astype(np.int64)
        referred = self._match_referrals(referrer, referral_day)
        order = np.lexsort((referral_day, referrer))
        referred = referred[order]
        return pa.table(
            {
                "referrer_customer_id": self._ids(referrer[order]),
                "referred_customer_id": pa.array(
                    np.where(referred >= 0, self._ids(np.maximum(referred, 0)), 0),
                    mask=referred < 0,
                    type=pa.int64(),
                ),
                "referral_date": _dates(referral_day[order]),
            },
            schema=SCHEMAS["referrals"],
        )

    def _offer_tables(self) -> Iterator[tuple[str, pa.Table]]:
        """The offers (treated campaign rows), the campaigns (every row) and their truth twin."""
        rows = self.contacts.drain()
        order = np.lexsort((rows["time"], rows["cust"]))
        rows = {key: value[order] for key, value in rows.items()}
        treated = rows["treated"]
        customer_id = self._ids(rows["cust"])
        offered_at = _timestamps(rows["time"])
        action = _labels(tuple(a.name for a in self.mech.actions), rows["action"])
        accepted = pa.array(rows["accepted"], type=pa.bool_())
        months = self.cal.month_start[:-1].astype("datetime64[D]").astype("datetime64[M]")
        names = tuple(f"C{m}" for m in months.astype(str)) + tuple(self.extra_campaigns)
        code = rows["campaign"].astype(np.int64)
        campaign_id = _labels(names, np.where(code >= 0, code, len(months) - 1 - code))
        keep = pa.array(treated)
        yield (
            "offers",
            pa.table(
                {
                    "customer_id": customer_id,
                    "offered_at": offered_at,
                    "action": action,
                    "accepted": accepted,
                    "cost": rows["cost"],
                },
                schema=SCHEMAS["offers"],
            ).filter(keep),
        )
        yield (
            "campaigns",
            pa.table(
                {
                    "campaign_id": campaign_id,
                    "customer_id": customer_id,
                    "action": action,
                    "assigned_at": _dates(rows["time"] // _US_PER_DAY),
                    "treated": pa.array(treated, type=pa.bool_()),
                    "propensity": rows["propensity"],
                    "cost": pa.array(rows["cost"], mask=~treated, type=pa.float64()),
                },
                schema=SCHEMAS["campaigns"],
            ),
        )
        yield (
            "true_offer_effects",
            pa.table(
                {
                    "customer_id": customer_id,
                    "campaign_id": campaign_id,
                    "offered_at": offered_at,
                    "action": action,
                    "treated": pa.array(treated, type=pa.bool_()),
                    "accepted": accepted,
                    "targeted": pa.array(rows["targeted"], type=pa.bool_()),
                    "sleeping_dog": pa.array(rows["sleeping_dog"], type=pa.bool_()),
                    "hazard_multiplier": rows["multiplier"],
                    "effect_months": rows["months"],
                    "moved": pa.array(rows["moved"], type=pa.bool_()),
                },
                schema=SCHEMAS["true_offer_effects"],
            ),
        )

    def _truth_table(self) -> pa.Table:
        """The true monthly churn probabilities buffered since the last flush."""
        rows = self.truth.drain()
        order = np.lexsort((rows["month"], rows["cust"]))
        return pa.table(
            {
                "customer_id": self._ids(rows["cust"][order]),
                "month": _dates(rows["month"][order]),
                "p_churn": rows["p"][order],
            },
            schema=SCHEMAS["true_churn_probability"],
        )


def _dates(days: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """A date32 array from day numbers (``missing`` marks nulls)."""
    days = np.asarray(days, dtype=np.int64)
    if missing is not None:
        days = np.where(missing, 0, days)
    return pa.array(days.astype(np.int32), type=pa.date32(), mask=missing)


def _timestamps(microseconds: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """A naive timestamp[us] array from microseconds since 1970 (``missing`` marks nulls)."""
    microseconds = np.asarray(microseconds, dtype=np.int64)
    if missing is not None:
        microseconds = np.where(missing, 0, microseconds)
    return pa.array(microseconds, type=pa.timestamp("us"), mask=missing)


def _labels(names: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    """A string array of ``names[code]`` for each code."""
    return pa.array(names, type=pa.string()).take(pa.array(np.asarray(codes, dtype=np.int64)))


def _simulate_chunk(
    spec: DemoSpec, calendar: _Calendar, chunk_index: int, first_id: int, size: int
) -> Iterator[tuple[str, pa.Table]]:
    """The output tables of one chunk of customers (ids ``first_id`` .. ``first_id + size - 1``)."""
    yield from _ChunkSimulation(spec, calendar, chunk_index, first_id, size).run()
