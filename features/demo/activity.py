"""Demo businesses without contracts, with a known activity mechanism: a retailer (customers + orders) and a
consumer app (customers + a raw event log), for the inactivity label (docs/demo_data.md, "Orders-only and
app-log demo data").

Each customer's activity is a self-exciting daily process: on day t after signup the number of orders (or
app sessions) is Poisson with mean

    lambda(t) = rate * season(t) * (floor + exp(-(t - last_active_day) / decay_days))

where `last_active_day` is the customer's latest day with activity before t (the signup day is always
active), `rate` and `decay_days` are the customer's latent purchase rate and attention span, and
season(t) = month factor * weekday factor. Activity keeps a customer warm; the longer the silence, the
colder they get, down to a small `floor` of reactivation. Along a path with no activity the intensity is a
known function of the state at the observation date, so the probability of the inactivity label (no
activity in [T, T + h)) is exactly

    P = exp(-sum over days t in [T, T + h) of lambda(t) with last_active_day fixed at the last day before T)

which `true_inactivity_probability` computes from the truth files (never read by features).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.demo.dated import check_generated_folder, staged_folders
from features.errors import ConfigError
from features.publish import record_files

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
TRUTH_NAMES = ("true_activity_rates", "true_activity_days")
TRUTH_FILES = (*(f"{n}.parquet" for n in TRUTH_NAMES), "true_activity_mechanism.json")
REGIONS = ("north", "south", "east", "west", "capital")
REGION_RATE = (0.9, 1.0, 1.0, 1.0, 1.2)  # purchase-rate factor per region
CHANNELS = ("online", "store", "marketplace")
CHANNEL_SHARES = (0.5, 0.3, 0.2)
CHANNEL_DECAY = (1.0, 1.3, 0.7)  # attention-span factor per acquisition channel
ORDER_CATEGORIES = ("apparel", "home", "beauty", "electronics")
ORDER_CATEGORY_SHARES = (0.4, 0.25, 0.25, 0.1)
APP_EVENT_TYPES = ("app_session", "feature_use", "purchase")


@dataclass(frozen=True)
class ActivitySpec:
    """Size, window, seed and mechanism of an activity demo business (see the module docstring)."""

    n_customers: int = 20_000
    start_date: str = "2022-01-01"  # first signup day (a month start); signups are uniform over the window
    months: int = 36
    seed: int = 42
    rate_mean: float = 0.035  # mean latent rate (orders or sessions per day when just active), gamma
    rate_shape: float = 2.0  # gamma shape of the latent rate across customers
    decay_days_median: float = 60.0  # median attention span, lognormal across customers
    decay_days_sigma: float = 0.5
    floor: float = 0.02  # share of the rate left to a customer long silent (reactivation)
    month_factors: tuple[float, ...] = (0.8, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 0.9, 1.0, 1.0, 1.4, 1.7)
    weekday_factors: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # Monday first
    value_decay: float = 0.25  # attention span times exp(this * z) for the customer's spend/time level z
    amount_median: float = 40.0  # median order amount (retail) or session minutes (app) at z = 0
    amount_sigma: float = 0.45  # sd of log amount around the customer's level

    def __post_init__(self) -> None:
        """Reject specs that cannot make data, naming the field."""
        start = date.fromisoformat(str(self.start_date))
        if start.day != 1:
            raise ValueError(f"start_date must be the first day of a month, got {self.start_date}")
        if self.n_customers < 1 or self.months < 6:
            raise ValueError("n_customers must be at least 1 and months at least 6")
        if len(self.month_factors) != 12 or len(self.weekday_factors) != 7:
            raise ValueError("month_factors needs 12 values and weekday_factors 7")
        if min(self.rate_mean, self.rate_shape, self.decay_days_median) <= 0 or self.floor < 0:
            raise ValueError(
                "rate_mean, rate_shape, decay_days_median must be positive and floor not negative"
            )
        for name in ("month_factors", "weekday_factors"):  # Hydra hands lists over
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        object.__setattr__(self, "start_date", start.isoformat())

    @property
    def kind(self) -> str:
        """Which activity table this business keeps: orders or events."""
        raise NotImplementedError

    @property
    def end_date(self) -> date:
        """The first day after the window (exclusive)."""
        start = date.fromisoformat(self.start_date)
        month = start.month - 1 + self.months
        return date(start.year + month // 12, month % 12 + 1, 1)


@dataclass(frozen=True)
class RetailSpec(ActivitySpec):
    """A retailer that keeps only customers and orders; a customer defects by no longer buying."""

    @property
    def kind(self) -> str:
        """Retail keeps orders."""
        return "orders"


@dataclass(frozen=True)
class AppSpec(ActivitySpec):
    """A consumer app that keeps customers and a raw event log (sessions, feature uses, purchases)."""

    n_customers: int = 15_000
    months: int = 24
    rate_mean: float = 0.25
    rate_shape: float = 1.5
    decay_days_median: float = 9.0
    decay_days_sigma: float = 0.5
    floor: float = 0.01
    month_factors: tuple[float, ...] = (1.1, 1.0, 1.0, 1.0, 1.0, 0.9, 0.85, 0.85, 1.0, 1.0, 1.05, 1.15)
    weekday_factors: tuple[float, ...] = (0.9, 0.9, 0.9, 0.95, 1.05, 1.3, 1.3)
    amount_median: float = 6.0  # session minutes
    feature_uses_per_session: float = 1.2  # Poisson mean of feature_use events per session
    purchase_share: float = 0.03  # chance that a session ends in an in-app purchase event

    @property
    def kind(self) -> str:
        """The app keeps events."""
        return "events"


@dataclass(frozen=True)
class ActivitySummary:
    """What `generate_activity` wrote."""

    tables_dir: Path
    truth_dir: Path
    rows: dict[str, int] = field(default_factory=dict)
    end_date: date | None = None
    seconds: float = 0.0


def spec_dict(spec: ActivitySpec) -> dict[str, Any]:
    """The spec as JSON-ready values (what the manifest records and ensure_demo_data compares)."""
    return json.loads(json.dumps(asdict(spec), default=str))


def season(spec: ActivitySpec, days: np.ndarray) -> np.ndarray:
    """The calendar factor of each day (numpy datetime64[D]): month factor times weekday factor."""
    days = np.asarray(days, dtype="datetime64[D]")
    months = days.astype("datetime64[M]").astype(int) % 12
    weekdays = (days.astype(int) + 3) % 7  # 1970-01-01 was a Thursday (weekday 3)
    return np.asarray(spec.month_factors)[months] * np.asarray(spec.weekday_factors)[weekdays]


def generate_activity(
    spec: ActivitySpec,
    tables_dir: Path,
    truth_dir: Path,
    *,
    keys: tuple[str, str] = ("data.path", "data.truth_path"),
) -> ActivitySummary:
    """Simulate the business day by day and write its tables into `tables_dir` and the truth into `truth_dir`
    (both replaced together, only if missing, empty or written by a demo generator)."""
    began = time.perf_counter()
    tables_dir, truth_dir = Path(tables_dir).absolute(), Path(truth_dir).absolute()
    if tables_dir == truth_dir or tables_dir in truth_dir.parents or truth_dir in tables_dir.parents:
        raise ConfigError(f"{keys[0]} and {keys[1]} must be separate directories, neither inside the other")
    table_names = ("customers", spec.kind)
    check_generated_folder(tables_dir, table_names, keys[0])
    check_generated_folder(truth_dir, TRUTH_NAMES, keys[1])
    customers, activity, rates = _simulate(spec)
    tables = {"customers": customers, spec.kind: _activity_table(spec, activity, rates)}
    active_days = activity[["customer_id", "activity_date", "count"]]
    rows = {name: len(frame) for name, frame in tables.items()}
    with staged_folders(tables_dir, truth_dir) as staging:
        for name, frame in tables.items():
            pq.write_table(
                pa.Table.from_pandas(frame, preserve_index=False), staging[tables_dir] / f"{name}.parquet"
            )
        truth = staging[truth_dir]
        pq.write_table(
            pa.Table.from_pandas(rates, preserve_index=False), truth / "true_activity_rates.parquet"
        )
        pq.write_table(
            pa.Table.from_pandas(active_days, preserve_index=False), truth / "true_activity_days.parquet"
        )
        (truth / "true_activity_mechanism.json").write_text(
            json.dumps({"generator": type(spec).__name__, "spec": spec_dict(spec)}, indent=2) + "\n"
        )
        manifest = {
            "generator_version": GENERATOR_VERSION,
            "generator": type(spec).__name__,
            "spec": spec_dict(spec),
            "start_date": spec.start_date,
            "end_date": spec.end_date.isoformat(),
            "rows": rows,
        }
        (staging[tables_dir] / "_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        record_files(staging[tables_dir], [*(f"{n}.parquet" for n in table_names), "_manifest.json"])
        record_files(truth, list(TRUTH_FILES))
    seconds = time.perf_counter() - began
    logger.info("%s data written to %s (truth in %s) in %.1f s: %s", type(spec).__name__, tables_dir, truth_dir,
                seconds, rows)  # fmt: skip
    return ActivitySummary(tables_dir, truth_dir, rows, spec.end_date, seconds)


def _simulate(spec: ActivitySpec) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Customers, their activity (customer_id, activity_date, count, level) and latent rates."""
    rng = np.random.default_rng(spec.seed)
    n = spec.n_customers
    start, end = np.datetime64(spec.start_date, "D"), np.datetime64(spec.end_date, "D")
    n_days = int((end - start).astype(int))
    signup = rng.integers(0, n_days, size=n)  # day index of signup (always active that day)
    region = rng.integers(0, len(REGIONS), size=n)
    channel = rng.choice(len(CHANNELS), size=n, p=CHANNEL_SHARES)
    level = rng.normal(size=n)  # spend (retail) or session-length (app) level; longer attention when higher
    rate = (
        rng.gamma(spec.rate_shape, spec.rate_mean / spec.rate_shape, size=n) * np.asarray(REGION_RATE)[region]
    )
    decay = (
        spec.decay_days_median
        * np.exp(spec.decay_days_sigma * rng.normal(size=n) + spec.value_decay * level)
        * np.asarray(CHANNEL_DECAY)[channel]
    )
    factors = season(spec, start + np.arange(n_days))
    last = signup.copy()
    ids = np.arange(1, n + 1, dtype=np.int64)
    day_rows, id_rows, count_rows = [], [], []
    for day in range(n_days):
        joined = signup == day
        after = signup < day
        intensity = np.where(after, rate * factors[day] * (spec.floor + np.exp(-(day - last) / decay)), 0.0)
        counts = rng.poisson(intensity)
        counts[joined] = np.maximum(counts[joined], 1)
        active = counts > 0
        last[active] = day
        if active.any():
            id_rows.append(ids[active])
            count_rows.append(counts[active])
            day_rows.append(np.full(int(active.sum()), day))
    days = np.concatenate(day_rows)
    activity = pd.DataFrame(
        {
            "customer_id": np.concatenate(id_rows),
            "activity_date": (start + days).astype("datetime64[D]").astype(object),
            "count": np.concatenate(count_rows),
        }
    ).sort_values(["customer_id", "activity_date"], kind="stable", ignore_index=True)
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": (start + signup).astype("datetime64[D]").astype(object),
            "segment": "consumer",
            "region": np.asarray(REGIONS)[region],
            "channel": np.asarray(CHANNELS)[channel],
        }
    )
    rates = pd.DataFrame({"customer_id": ids, "rate": rate, "decay_days": decay, "level": level})
    return customers, activity, rates


def _activity_table(spec: ActivitySpec, activity: pd.DataFrame, rates: pd.DataFrame) -> pd.DataFrame:
    """The orders (retail) or events (app) of the active days: `count` rows (sessions) on each."""
    rng = np.random.default_rng([spec.seed, 1])
    repeat = activity["count"].to_numpy()
    customer = np.repeat(activity["customer_id"].to_numpy(), repeat)
    day = np.repeat(pd.to_datetime(activity["activity_date"]).to_numpy().astype("datetime64[D]"), repeat)
    level = rates["level"].to_numpy()[customer - 1]
    amount = spec.amount_median * np.exp(0.5 * level + spec.amount_sigma * rng.normal(size=len(customer)))
    if spec.kind == "orders":
        return pd.DataFrame(
            {
                "customer_id": customer,
                "order_date": day.astype(object),
                "product_category": rng.choice(ORDER_CATEGORIES, size=len(customer), p=ORDER_CATEGORY_SHARES),
                "amount": np.round(amount, 2),
            }
        )
    assert isinstance(spec, AppSpec)
    seconds = rng.integers(6 * 3600, 24 * 3600, size=len(customer)).astype("timedelta64[s]")
    session_time = day.astype("datetime64[s]") + seconds
    uses = rng.poisson(spec.feature_uses_per_session, size=len(customer))
    bought = rng.random(len(customer)) < spec.purchase_share
    parts = [
        pd.DataFrame(
            {
                "customer_id": customer,
                "event_time": session_time,
                "event_type": "app_session",
                "quantity": np.round(amount, 1),
            }
        ),  # fmt: skip
        pd.DataFrame(
            {
                "customer_id": np.repeat(customer, uses),
                "event_time": np.repeat(session_time, uses) + np.timedelta64(60, "s"),
                "event_type": "feature_use",
                "quantity": np.nan,
            }
        ),  # fmt: skip
        pd.DataFrame(
            {
                "customer_id": customer[bought],
                "event_time": session_time[bought] + np.timedelta64(120, "s"),
                "event_type": "purchase",
                "quantity": np.round(rng.uniform(1, 20, int(bought.sum())), 2),
            }
        ),  # fmt: skip
    ]
    events = pd.concat(parts, ignore_index=True)
    # keep the whole log inside the day: a session late in the evening does not spill into the next day
    end_of_day = events["event_time"].dt.floor("D") + pd.Timedelta(hours=23, minutes=59, seconds=59)
    events["event_time"] = events["event_time"].where(events["event_time"] <= end_of_day, end_of_day)
    return events.sort_values(["customer_id", "event_time"], kind="stable", ignore_index=True)


def load_spec(truth_dir: Path) -> ActivitySpec:
    """The spec recorded in an activity truth folder."""
    recorded = json.loads((Path(truth_dir) / "true_activity_mechanism.json").read_text())
    kinds = {"RetailSpec": RetailSpec, "AppSpec": AppSpec}
    spec_class = kinds[recorded["generator"]]
    names = {f.name for f in fields(spec_class)}
    return spec_class(**{k: v for k, v in recorded["spec"].items() if k in names})


def is_activity_truth(truth_dir: Path) -> bool:
    """Whether `truth_dir` holds the truth of an activity demo business."""
    return (Path(truth_dir) / "true_activity_mechanism.json").is_file()


def true_inactivity_probability(
    truth_dir: Path, snapshots: pd.DataFrame, *, horizon_days: int, lead_days: int = 0
) -> np.ndarray:
    """P(no activity in [T, T + horizon)) for each (customer_id, observation_date T), exactly, from the
    mechanism (module docstring): the intensity along the path with no activity, summed over the window."""
    if lead_days:
        raise ValueError("the exact inactivity truth is defined for label.lead_days = 0 only")
    truth_dir = Path(truth_dir)
    spec = load_spec(truth_dir)
    rates = pd.read_parquet(truth_dir / "true_activity_rates.parquet").set_index("customer_id")
    days = pd.read_parquet(truth_dir / "true_activity_days.parquet")
    keys = snapshots[["customer_id", "observation_date"]].reset_index(drop=True).copy()
    keys["row"] = np.arange(len(keys))
    keys["observation"] = pd.to_datetime(keys["observation_date"]).astype("datetime64[ns]")
    days["day"] = pd.to_datetime(days["activity_date"]).astype("datetime64[ns]")
    keys["before"] = keys["observation"] - pd.Timedelta(days=1)  # last activity strictly before T
    last = pd.merge_asof(
        keys.sort_values("before"), days[["customer_id", "day"]].sort_values("day"),
        left_on="before", right_on="day", by="customer_id", direction="backward",
    ).sort_values("row")  # fmt: skip
    observation = last["observation"].to_numpy().astype("datetime64[D]")
    last_day = last["day"].to_numpy().astype("datetime64[D]")
    known = ~np.isnat(last_day)
    customer = last["customer_id"].to_numpy()
    rate = rates["rate"].reindex(customer).to_numpy()
    decay = rates["decay_days"].reindex(customer).to_numpy()
    offsets = np.arange(horizon_days)
    out = np.ones(len(keys))
    for begin in range(0, len(keys), 50_000):
        rows = slice(begin, begin + 50_000)
        window = observation[rows, None] + offsets[None, :]
        since = (window - np.where(known[rows], last_day[rows], observation[rows])[:, None]).astype(float)
        intensity = (
            rate[rows, None] * season(spec, window) * (spec.floor + np.exp(-since / decay[rows, None]))
        )
        out[rows] = np.exp(-intensity.sum(axis=1))
    out[~known] = np.nan  # a customer with no activity before T is not in any inactivity population
    return out


def history_inactivity_probability(
    tables_dir: Path,
    truth_dir: Path,
    snapshots: pd.DataFrame,
    *,
    horizon_days: int,
    draws: int = 400,
    seed: int = 0,
) -> np.ndarray:
    """The best prediction from what the tables show (the Bayes posterior given each customer's history before
    the date, region, channel and amounts), for the same label as `true_inactivity_probability`.

    The truth knows each customer's latent rate and attention span; this averages over them given the history:
    the rate is integrated exactly (a gamma prior, Poisson counts), the attention span by `draws` draws from its
    prior (the level z drawn from its posterior given the amounts), weighted by the likelihood of the history.
    It is what a perfect model of these tables could reach, so the gap between it and the truth is information
    no feature can recover."""
    truth_dir, tables_dir = Path(truth_dir), Path(tables_dir)
    spec = load_spec(truth_dir)
    customers = pd.read_parquet(tables_dir / "customers.parquet").set_index("customer_id")
    region_factor = pd.Series(REGION_RATE, index=REGIONS)[customers["region"]].to_numpy()
    channel_factor = pd.Series(CHANNEL_DECAY, index=CHANNELS)[customers["channel"]].to_numpy()
    position = pd.Series(np.arange(len(customers)), index=customers.index)
    days = pd.read_parquet(truth_dir / "true_activity_days.parquet")
    days["day"] = pd.to_datetime(days["activity_date"]).to_numpy().astype("datetime64[D]")
    if spec.kind == "orders":
        amounts = pd.read_parquet(
            tables_dir / "orders.parquet", columns=["customer_id", "order_date", "amount"]
        )
        amounts["day"] = pd.to_datetime(amounts["order_date"]).to_numpy().astype("datetime64[D]")
        amounts = amounts.rename(columns={"amount": "value"})
    else:
        amounts = pd.read_parquet(tables_dir / "events.parquet")
        amounts = amounts[amounts["event_type"] == "app_session"]
        amounts = pd.DataFrame({"customer_id": amounts["customer_id"], "value": amounts["quantity"],
                                "day": amounts["event_time"].to_numpy().astype("datetime64[D]")})  # fmt: skip
    amounts["y"] = np.log(amounts["value"].clip(lower=1e-3) / spec.amount_median)
    by_customer = {c: g for c, g in days.groupby("customer_id")}
    amounts_by = {c: g for c, g in amounts.groupby("customer_id")}
    rng = np.random.default_rng(seed)
    noise_decay = rng.normal(size=draws)
    noise_level = rng.normal(size=draws)
    alpha = spec.rate_shape
    start = np.datetime64(date.fromisoformat(spec.start_date), "D")
    calendar = season(
        spec, start + np.arange((np.datetime64(spec.end_date, "D") - start).astype(int) + horizon_days)
    )
    out = np.full(len(snapshots), np.nan)
    for row, (customer, observed) in enumerate(
        zip(snapshots["customer_id"], snapshots["observation_date"], strict=True)
    ):
        T = np.datetime64(pd.Timestamp(observed).date(), "D")
        history = by_customer[customer]
        history = history[history["day"] < T]
        if history.empty:
            continue
        active = (history["day"].to_numpy().astype("datetime64[D]") - start).astype(int)
        counts = history["count"].to_numpy()
        t_end = int((T - start).astype(int))
        # each day after signup up to T-1: days since the last active day before it
        t = np.arange(active[0] + 1, t_end)
        last = active[np.searchsorted(active, t, side="left") - 1]
        since = (t - last).astype(float)
        s = calendar[t]
        later = active[1:]  # active days after signup and their counts (the signup day is forced)
        later_since = (later - active[np.searchsorted(active, later, side="left") - 1]).astype(float)
        later_counts = counts[1:]
        amount = amounts_by.get(customer)
        y = amount.loc[amount["day"] < T, "y"].to_numpy() if amount is not None else np.empty(0)
        precision = 1.0 + len(y) * 0.25 / spec.amount_sigma**2
        level = (0.5 * y.sum() / spec.amount_sigma**2) / precision + noise_level / np.sqrt(precision)
        decay = (spec.decay_days_median * np.exp(spec.decay_days_sigma * noise_decay + spec.value_decay * level)
                 * channel_factor[position[customer]])  # fmt: skip
        beta = alpha / (spec.rate_mean * region_factor[position[customer]])
        exposure = (s[None, :] * (spec.floor + np.exp(-since[None, :] / decay[:, None]))).sum(axis=1)
        log_fit = (
            later_counts[None, :] * np.log(spec.floor + np.exp(-later_since[None, :] / decay[:, None]))
        ).sum(axis=1)
        n = float(later_counts.sum())
        log_weight = log_fit - (alpha + n) * np.log(beta + exposure)
        weight = np.exp(log_weight - log_weight.max())
        window = t_end + np.arange(horizon_days)
        ahead = (
            calendar[window][None, :]
            * (spec.floor + np.exp(-(window - active[-1])[None, :] / decay[:, None]))
        ).sum(axis=1)
        p = ((beta + exposure) / (beta + exposure + ahead)) ** (alpha + n)
        out[row] = float((weight * p).sum() / weight.sum())
    return out
