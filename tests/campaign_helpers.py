"""A synthetic `campaigns` table for a demo table folder, in the Arrow schema the demo generator writes: monthly
campaigns, each drawing some customers holding a subscription at the month start, assigned inside the month to a
random action, treated with the campaign-action's share (the rest held out as control)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.demo.dated import SCHEMAS

CAMPAIGNS_SCHEMA = SCHEMAS["campaigns"]  # the schema the demo generator writes
ACTIONS = ("service_recovery_call", "discount", "price_lock", "loyalty_enrolment")


def synthetic_campaigns(
    subscriptions: pd.DataFrame,
    *,
    actions: Sequence[str] = ACTIONS,
    first: date = date(2022, 4, 1),
    last: date = date(2023, 11, 1),
    share: float = 0.12,
    seed: int = 0,
) -> pd.DataFrame:
    """Campaign rows for the customers of `subscriptions` holding one at each month start first .. last."""
    rng = np.random.default_rng(seed)
    starts = pd.to_datetime(subscriptions["start_date"])
    ends = pd.to_datetime(subscriptions["end_date"])
    frames = []
    for month in pd.date_range(first, last, freq="MS"):
        held = (starts < month) & (ends.isna() | (ends >= month))
        active = np.unique(subscriptions.loc[held, "customer_id"].to_numpy())
        chosen = rng.choice(active, size=int(len(active) * share), replace=False)
        action = rng.choice(np.asarray(actions), size=len(chosen))
        treated_share = {a: rng.choice([0.5, 0.7, 0.9]) for a in actions}
        probability = np.array([treated_share[a] for a in action])
        treated = rng.random(len(chosen)) < probability
        frames.append(
            pd.DataFrame(
                {
                    "campaign_id": f"C{month:%Y-%m}",
                    "customer_id": chosen.astype("int64"),
                    "action": action,
                    "assigned_at": [
                        (month + pd.Timedelta(days=int(d))).date() for d in rng.integers(0, 25, len(chosen))
                    ],
                    "treated": treated,
                    # Some rows leave the propensity empty: the campaign-action's treated share stands in.
                    "propensity": np.where(rng.random(len(chosen)) < 0.2, np.nan, probability),
                    "cost": np.where(treated, 10.0, np.nan),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def write_campaigns(frame: pd.DataFrame, folder: Path) -> Path:
    """Write `frame` as `folder`/campaigns.parquet in the generator's schema."""
    path = folder / "campaigns.parquet"
    pq.write_table(pa.Table.from_pandas(frame, schema=CAMPAIGNS_SCHEMA, preserve_index=False), path)
    return path
