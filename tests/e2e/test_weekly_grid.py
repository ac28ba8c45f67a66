"""A weekly-churn business on its own cadence: a weekly observation grid (Mondays) with a label window of one
calendar month builds features on weekly dates, trains with a gap derived from the window, and scores; grid and
window settings that cannot work stop the stage with exit 2 naming the key."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from config_helpers import PROJECT_ROOT, compose_config
from mlflow.tracking import MlflowClient

from features.labels import LabelWindow
from models.split import SplitSettings

WEEKLY = (
    "observation=weekly",
    "label.horizon_days=null",
    "label.horizon_months=1",
    "label.grace_days=7",
    "observation.start=2022-12-29",  # a Thursday: the grid starts on the Monday after (a year of weeks, not two)
    "evaluation.baseline=null",
    "model.n_estimators=100",
)


@pytest.mark.slow
def test_a_weekly_grid_with_a_calendar_month_window_trains_and_scores(tmp_path: Path) -> None:
    from churnwise.api import score, train

    cfg = compose_config(tmp_path, *WEEKLY)
    trained = train(cfg)

    manifest = json.loads((Path(cfg.paths.features_dir) / "manifest.json").read_text())
    dates = [date.fromisoformat(d) for d in manifest["observation_dates"]]
    assert dates[0] == date(2023, 1, 2) and len(dates) == 52 and {d.weekday() for d in dates} == {0}
    assert all(b - a == timedelta(days=7) for a, b in zip(dates, dates[1:], strict=False))
    assert manifest["label"]["horizon_months"] == 1 and manifest["label"]["horizon_days"] is None
    # the last labelled Monday's month (plus grace) ends within the data; the next Monday's would not
    labelled = sorted(
        date.fromisoformat(d) for d, v in manifest["churn_by_observation_date"].items() if v["labeled"]
    )
    data_end = date.fromisoformat(manifest["data_window"]["end_exclusive"])
    window, grace = LabelWindow.from_config(manifest["label"]), timedelta(days=7)
    assert window.end(labelled[-1]) + grace <= data_end < window.end(labelled[-1] + timedelta(days=7)) + grace

    # the time split counts weeks, apart by the longest one-month window plus grace (31 + 7 days)
    assert SplitSettings.from_config(cfg.split, cfg.label).gap_days == 38
    slices = {m[1]: (int(m[2]), date.fromisoformat(m[3]), date.fromisoformat(m[4]))
              for m in re.finditer(r"(\w+) (\d+) date\(s\) ([\d-]+)\.\.([\d-]+)", trained.split)}  # fmt: skip
    assert slices["test"][0] == slices["calibration"][0] == 3, trained.split
    assert 38 <= (slices["test"][1] - slices["calibration"][2]).days < 38 + 7, trained.split
    assert 38 <= (slices["calibration"][1] - slices["train"][2]).days < 38 + 7, trained.split
    test_rows = trained.test_rows
    test_dates = sorted(set(pd.to_datetime(test_rows["observation_date"]).dt.date))
    assert len(test_dates) == 3 and test_dates[-1] == labelled[-1]
    assert all(b - a == timedelta(days=7) for a, b in zip(test_dates, test_dates[1:], strict=False))
    assert 0.5 < trained.metrics["test_roc_auc"] <= 1 and "ceiling_test_roc_auc" in trained.metrics

    mlflow.set_tracking_uri(str(cfg.mlflow.tracking_uri))
    run = MlflowClient().get_run(trained.run_id)
    assert run.data.tags["label.horizon_months"] == "1" and "label.horizon_days" not in run.data.tags

    scored = pd.read_parquet(score(compose_config(tmp_path, *WEEKLY)).path)
    assert len(scored) > 100 and scored["clv"].notna().all() and (scored["clv"] >= 0).all()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["observation.unit=fortnights"], "observation.unit: 'fortnights' is not a unit of the grid"),
        (["observation=weekly", "observation.every=0"], "observation.every: 0 is not a whole number"),
        (["label.horizon_months=3"], "label.horizon_days (90) and label.horizon_months (3) are both set"),
    ],
)
def test_a_grid_or_window_that_cannot_work_exits_2_naming_the_key(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.features", f"paths.root_dir={tmp_path}", "debug=default", *overrides],
        cwd=PROJECT_ROOT, env={**os.environ, "HYDRA_FULL_ERROR": "0"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert message in output and "Traceback" not in output
    assert not (tmp_path / "data").exists()  # stopped before any demo data or features were made
