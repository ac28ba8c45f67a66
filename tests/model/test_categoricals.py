"""Model tests of categorical features (#14 item 7): a many-level category without signal does not lead the
model, and a feature whose relation to churn flips between the training and test dates is reported in the
run and, with `stability.action=drop`, left out of the model."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig

from features.build import FeatureTableResult
from models.calibration import NoCalibration
from models.churn_model import fit_churn_model
from models.preprocessing import OTHER_LEVEL


def noisy_region_table(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A 30-level `region` with no relation to churn (15 common levels, 15 of about 50 rows each) and one
    weak real signal, `usage`: the shape on which the region was a real model's top feature."""
    rng = np.random.default_rng(seed)
    weights = np.r_[np.full(15, 6.0), np.full(15, 0.5)]
    frame = pd.DataFrame(
        {
            "region": rng.choice([f"region_{i:02d}" for i in range(30)], n, p=weights / weights.sum()),
            "usage": rng.normal(size=n),
        }
    )
    frame["churned"] = (rng.random(n) < 1 / (1 + np.exp(2.0 - 0.15 * frame["usage"]))).astype(int)
    return frame


def test_a_many_level_region_without_signal_is_not_the_top_feature(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg()
    rows = noisy_region_table()
    model = fit_churn_model(
        instantiate(cfg.model), NoCalibration(), rows, rows, features=["region", "usage"], categorical=["region"],
        min_level_rows=int(cfg.encoding.min_level_rows),
    )  # fmt: skip
    names, gain = model.importance()
    importance = dict(zip(names, gain, strict=True))
    assert importance["region"] < importance["usage"], importance
    # The 15 rare regions (about 50 rows each) share one level; the common ones keep theirs.
    assert len(model.encoder.rare_levels_["region"]) == 15
    assert model.encoder.categories_["region"] == [f"region_{i:02d}" for i in range(15)] + [OTHER_LEVEL]
    # The region is not the leading reason of most customers (57% on the real data that raised this).
    contributions = model.contributions(rows)[:, :2]
    assert (np.argmax(contributions, axis=1) == 0).mean() < 0.5
