"""The date every stage works as of comes from one rule (features.dates.as_of_date): the configured date, else the
end of the data, else UNDATED; never the clock. The same data trained and scored on two days a year apart gives
the same metrics, observation dates and scoring date."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import time_machine
from config_helpers import compose_config

from features.dates import UNDATED
from features.demo.telco import TelcoSpec, generate_telco

pytestmark = pytest.mark.slow

DAYS = ("2025-01-15", "2026-01-16")  # two days a year apart the clock is moved to
SPEC = TelcoSpec(n_customers=1200, score_customers=100, seed=5)


def snapshot_config(root: Path, path: Path):
    """data=telco with no data.as_of: the table names no date, so the one rule has only the clock to misuse."""
    return compose_config(
        root, "data=telco", f"data.path={path}", "data.generate_if_missing=false", "split.n_folds=3",
        "evaluation.baseline=null", debug=False,
    )  # fmt: skip


def test_a_snapshot_trains_and_scores_the_same_on_any_day(tmp_path: Path) -> None:
    from churnwise.api import score, train

    made = generate_telco(SPEC, tmp_path / "telco.csv")
    runs = {}
    for day in DAYS:
        root = tmp_path / f"on-{day}"  # its own MLflow store, features and outputs
        with time_machine.travel(day, tick=False):
            assert date.today() == date.fromisoformat(day)
            trained = train(snapshot_config(root, made.path))
            cfg = snapshot_config(root, made.score_path)
            manifest = json.loads((Path(cfg.paths.features_dir) / "manifest.json").read_text())
            scored = score(cfg)
        runs[day] = trained, manifest, scored, pd.read_parquet(scored.path)

    (first, m1, s1, out1), (second, m2, s2, out2) = runs[DAYS[0]], runs[DAYS[1]]
    assert first.run_id != second.run_id
    test_metrics = {k: v for k, v in first.metrics.items() if k.startswith(("test_", "cv_"))}
    assert test_metrics and test_metrics == {k: second.metrics[k] for k in test_metrics}
    assert m1["observation_dates"] == m2["observation_dates"] == [UNDATED.isoformat()]
    assert m1["data_window"] == m2["data_window"] and not set(m1["observation_dates"]) & set(DAYS)
    assert s1.as_of == s2.as_of == UNDATED
    assert set(out1["as_of"].astype(str)) == set(out2["as_of"].astype(str)) == {UNDATED.isoformat()}
    pd.testing.assert_series_equal(out1["p_churn"], out2["p_churn"])


def test_dated_tables_score_as_of_the_end_of_their_data_not_the_clock(tmp_path: Path) -> None:
    from churnwise.api import score, train
    from features.engine import data_window
    from features.inputs import load_inputs

    cfg = compose_config(tmp_path, "evaluation.baseline=null")
    assert cfg.score.as_of is None
    with time_machine.travel(DAYS[0], tick=False):
        train(cfg)
    tables, _ = load_inputs(cfg)
    end = data_window(tables.con, set(tables.report.present)).end
    assert end.isoformat() not in DAYS
    for day in DAYS:
        with time_machine.travel(day, tick=False):
            assert score(cfg).as_of == end
