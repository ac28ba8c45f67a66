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


def test_a_many_level_region_without_signal_is_not_the_top_feature(
    make_cfg: Callable[..., DictConfig],
) -> None:
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


DATES = [date(2022, m, 1) for m in range(1, 13)] + [date(2023, m, 1) for m in range(1, 13)]


def drifting_feature_table(root: Path, n_customers: int = 1200, seed: int = 0) -> FeatureTableResult:
    """A feature table of monthly snapshots: `usage` and `segment` relate to churn throughout; `drifting`
    raises churn before the last three (test) dates and lowers it on them."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(["consumer", "small_business", "enterprise"], n_customers)
    frames = []
    for day in DATES:
        frame = pd.DataFrame(
            {
                "customer_id": [f"C{i:05d}" for i in range(n_customers)],
                "observation_date": pd.Timestamp(day),
                "usage": rng.normal(size=n_customers),
                "drifting": rng.normal(size=n_customers),
                "segment": segment,
            }
        )
        sign = -1.0 if day >= DATES[-3] else 1.0
        logit = -2.0 + 0.7 * frame["usage"] + sign * 0.7 * frame["drifting"] + 0.5 * (segment == "consumer")
        frame["churned"] = (rng.random(n_customers) < 1 / (1 + np.exp(-logit))).astype(int)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    table_path = root / "features.parquet"
    table.to_parquet(table_path, index=False)
    churn_by_date = {
        day.isoformat(): {"labeled": n_customers, "churn_rate": float(rate)}
        for day, rate in zip(DATES, table.groupby("observation_date")["churned"].mean(), strict=True)
    }
    manifest = {
        "features": [{"name": name} for name in ("usage", "drifting", "segment")],
        "categorical_features": ["segment"],
        "label": {"name": "contractual"},
        "churn_by_observation_date": churn_by_date,
        "input": {"fingerprint": "synthetic"},
        "git": {"commit": "test", "dirty": False},
    }
    return FeatureTableResult(table_path, root / "manifest.json", manifest)


@pytest.mark.slow
def test_a_feature_that_flips_on_the_test_dates_is_reported_and_dropped(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    from models.training import summary_table, train

    # a hand-made feature table, no input tables behind it: no survival model, no campaigns to learn from
    cfg = make_cfg(
        "stability.action=drop",
        "evaluation.baseline=null",
        "model.min_child_samples=100",
        "survival=constant",
        "uplift.enabled=false",
    )
    result = train(cfg, drifting_feature_table(tmp_path))
    assert "drifting (flipped)" in result.stability and "dropped before fitting" in result.stability
    assert "stability       1 feature(s) dropped before fitting: drifting (flipped)" in summary_table(
        result, cfg
    )
    assert result.metrics["stability_flagged_features"] == 1.0 == result.metrics["stability_dropped_features"]

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    model = mlflow.pyfunc.load_model(result.model_uri)
    assert model.metadata.get_input_schema().input_names() == ["usage", "segment"]  # drifting is not used
    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    table = pd.read_csv(
        client.download_artifacts(result.run_id, "run_info/feature_stability.csv", str(tmp_path))
    )
    verdicts = table.set_index("feature")[["verdict", "dropped"]].to_dict("index")
    assert verdicts == {
        "usage": {"verdict": "stable", "dropped": False},
        "drifting": {"verdict": "flipped", "dropped": True},
        "segment": {"verdict": "stable", "dropped": False},
    }
    assert client.get_run(result.run_id).data.tags["stability"] == result.stability
