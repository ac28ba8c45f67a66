"""No leakage: features see only what was known before the observation date, labels only their window.

Each test perturbs the demo tables in a way that must not matter (rows dated on or after the date, end
and resolution dates that lie after it, rows after the label window) and rebuilds: the features (or
labels) must come out identical.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from features.contract import ContractSettings
from features.demo.dated import DemoSpec, generate_demo
from features.engine import build_feature_table
from features.validation import load_tables

CONF = Path(__file__).resolve().parents[2] / "conf"
DATES = [date(2022, 9, 1), date(2023, 3, 1)]
EVENT_TYPES = ["login", "app_session", "usage", "support_page_view", "feature_use"]
DATE_COLUMNS = {
    "customers": ["signup_date"],
    "subscriptions": ["start_date"],
    "orders": ["order_date"],
    "complaints": ["opened_at"],
    "events": ["event_time"],
    "referrals": ["referral_date"],
    "offers": ["offered_at"],
    "campaigns": ["assigned_at"],  # a campaign is known after its assignment day; no feature reads it
}
LATER_KNOWN = {"subscriptions": ["end_date"], "complaints": ["resolved_at"], "customers": ["partner_since"]}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    root = tmp_path_factory.mktemp("leakage")
    summary = generate_demo(
        DemoSpec(n_customers=700, months=24, seed=8, chunk_size=700), root / "t", root / "truth"
    )
    return {name: pd.read_parquet(summary.tables_dir / f"{name}.parquet") for name in DATE_COLUMNS}


def build(tables: dict[str, pd.DataFrame], folder: Path, label: str = "contractual") -> pd.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    # The perturbations copy subscriptions onto random customers and move end dates, which can make one
    # customer hold one product twice at once: allowed here, where only what features can see is tested.
    validated = load_tables(folder, settings=ContractSettings(allow_overlapping_subscriptions=True))
    build_feature_table(
        validated.con,
        set(validated.report.present),
        OmegaConf.to_container(OmegaConf.load(CONF / "features" / "default.yaml")),
        {"data_end": "2024-01-01"},
        OmegaConf.to_container(OmegaConf.load(CONF / "label" / f"{label}.yaml")),
        event_types=EVENT_TYPES,
        dates=DATES,
    )
    frame = validated.con.execute("SELECT * FROM feature_table ORDER BY observation_date, customer_id").df()
    return frame.reset_index(drop=True)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("churned", "label_status")]


def future_rows(
    tables: dict[str, pd.DataFrame], cutoff: date, rng: np.random.Generator
) -> dict[str, pd.DataFrame]:
    """Every table plus copies of some of its rows moved to dates on or after `cutoff` (some exactly on it)."""
    out = {}
    customers = tables["customers"]["customer_id"].to_numpy()
    for name, frame in tables.items():
        extra = frame.sample(n=min(len(frame), 300), random_state=1, replace=len(frame) < 300).copy()
        offsets = rng.integers(0, 400, size=len(extra))
        offsets[: len(extra) // 3] = 0  # on the observation date itself
        for column in DATE_COLUMNS[name]:
            moved = pd.Timestamp(cutoff) + pd.to_timedelta(offsets, unit="D")
            if name in ("complaints", "events", "offers"):
                moved = moved + pd.to_timedelta(rng.integers(0, 86_400, size=len(extra)), unit="s")
                moved = moved.where(offsets != 0, pd.Timestamp(cutoff))  # exactly midnight on the date
            extra[column] = (
                moved.to_numpy().astype(frame[column].dtype)
                if frame[column].dtype != object
                else [d.date() for d in moved]
            )
        if name == "customers":
            extra["customer_id"] = np.arange(len(extra)) + customers.max() + 1
            extra["partner_since"] = None
        elif name == "referrals":
            extra["referrer_customer_id"] = rng.choice(customers, size=len(extra))
            extra["referred_customer_id"] = None
        else:
            extra["customer_id"] = rng.choice(customers, size=len(extra))
        if name == "campaigns":  # later campaigns of their own: one row per campaign and customer
            extra["campaign_id"] = [f"future-{i}" for i in range(len(extra))]
        if name == "subscriptions":
            extra["end_date"] = None
        if name == "complaints":
            extra["resolved_at"] = pd.NaT
            extra["satisfaction"] = None
        out[name] = pd.concat([frame, extra], ignore_index=True)
    return out


@pytest.mark.parametrize("cutoff", DATES)
def test_rows_on_or_after_the_date_change_no_feature_for_that_date(
    demo: dict[str, pd.DataFrame], tmp_path: Path, cutoff: date
) -> None:
    base = build(demo, tmp_path / "base")
    perturbed = build(future_rows(demo, cutoff, np.random.default_rng(3)), tmp_path / "future")
    columns = feature_columns(base)
    at = base["observation_date"].dt.date == cutoff
    at_perturbed = perturbed["observation_date"].dt.date == cutoff
    assert at.sum() > 200
    pd.testing.assert_frame_equal(
        base.loc[at, columns].reset_index(drop=True),
        perturbed.loc[at_perturbed, columns].reset_index(drop=True),
    )


def test_moving_later_known_dates_within_the_future_changes_no_feature(
    demo: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    cutoff = DATES[0]
    rng = np.random.default_rng(5)
    moved = {name: frame.copy() for name, frame in demo.items()}
    changed = 0
    for name, columns in LATER_KNOWN.items():
        frame = moved[name]
        for column in columns:
            values = pd.to_datetime(frame[column])
            later = values >= pd.Timestamp(cutoff)
            shift = pd.to_timedelta(rng.integers(1, 200, size=len(frame)), unit="D")
            new = (values + shift).where(rng.random(len(frame)) < 0.5, pd.NaT)  # later, or empty
            new = new.where(later, values)
            changed += int(later.sum())
            frame[column] = new.dt.date if name != "complaints" else new
        if name == "complaints":
            frame["satisfaction"] = frame["satisfaction"].where(
                ~(pd.to_datetime(frame["resolved_at"]) >= pd.Timestamp(cutoff)), 5
            )  # scores given after the date change too
    assert changed > 100
    base = build(demo, tmp_path / "base")
    perturbed = build(moved, tmp_path / "moved")
    columns = feature_columns(base)
    at = base["observation_date"].dt.date == cutoff
    pd.testing.assert_frame_equal(
        base.loc[at, columns].reset_index(drop=True),
        perturbed.loc[perturbed["observation_date"].dt.date == cutoff, columns].reset_index(drop=True),
    )


@pytest.mark.parametrize("label", ["contractual", "inactivity"])
def test_rows_after_the_label_window_change_no_label(
    demo: dict[str, pd.DataFrame], tmp_path: Path, label: str
) -> None:
    cutoff = DATES[0]
    label_cfg = OmegaConf.load(CONF / "label" / f"{label}.yaml")
    beyond = cutoff + timedelta(days=label_cfg.lead_days + label_cfg.horizon_days + label_cfg.grace_days)
    rng = np.random.default_rng(11)
    changed = {name: frame.copy() for name, frame in demo.items()}
    subs = changed["subscriptions"]
    ends = pd.to_datetime(subs["end_date"])
    after = ends >= pd.Timestamp(beyond)
    subs["end_date"] = (
        (ends + pd.to_timedelta(rng.integers(1, 100, size=len(subs)), unit="D")).where(after, ends).dt.date
    )
    restarts = subs.sample(200, random_state=2).assign(
        start_date=lambda f: [beyond + timedelta(days=int(x)) for x in rng.integers(0, 200, size=len(f))],
        end_date=None,
    )
    changed["subscriptions"] = pd.concat([subs, restarts], ignore_index=True)
    events = changed["events"]
    late = events.sample(500, random_state=3).assign(
        event_time=lambda f: [
            datetime.combine(beyond, datetime.min.time()) + timedelta(hours=int(h))
            for h in rng.integers(0, 5000, size=len(f))
        ]
    )
    changed["events"] = pd.concat(
        [
            events.drop(
                events[events["event_time"] >= pd.Timestamp(beyond)].sample(frac=0.5, random_state=4).index
            ),
            late,
        ],
        ignore_index=True,
    )
    base = build(demo, tmp_path / "base", label)
    perturbed = build(changed, tmp_path / "changed", label)
    keys = ["customer_id", "observation_date"]
    at = base["observation_date"].dt.date == cutoff
    merged = base.loc[at, [*keys, "churned", "label_status"]].merge(
        perturbed[[*keys, "churned", "label_status"]], on=keys, how="left", suffixes=("", "_changed")
    )
    assert len(merged) > 200 and merged["churned"].notna().all()
    assert (merged["churned"] == merged["churned_changed"]).all()
    assert (merged["label_status"] == merged["label_status_changed"]).all()
