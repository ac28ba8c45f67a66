"""The range of each numeric feature over the rows a model was trained on, recorded in its training run's
feature manifest (`training_ranges`) so that scoring can say when customers lie outside it (e.g. tenure at
scoring beyond every training tenure: the model has never seen such customers and extrapolates flat)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def training_ranges(
    rows: pd.DataFrame, features: Sequence[str], categorical: Sequence[str]
) -> dict[str, dict[str, float]]:
    """{feature: {min, max, p01, p99}} of every numeric feature with a value in `rows` (blanks ignored)."""
    ranges = {}
    for name in features:
        if name in categorical:
            continue
        values = pd.to_numeric(rows[name], errors="coerce").astype("float64").dropna().to_numpy()
        if values.size == 0:
            continue
        p01, p99 = np.quantile(values, [0.01, 0.99])
        ranges[name] = {
            "min": float(values.min()), "max": float(values.max()), "p01": float(p01), "p99": float(p99),
        }  # fmt: skip
    return ranges
