"""End-to-end: `make readout` through the real entry points on the small demo: trained, scored at an earlier
date whose horizon passes before the data ends, read out per action with intervals, logged to MLflow with its
plot, and shown in the report; with no history, or no run whose horizon has passed, one line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import mlflow
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EARLIER = "2023-09-01"  # + 90 days + 14 grace days = 2023-12-14, before the debug data ends (2024-01-01)


def run(stage: str, root: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"pipeline.{stage}", f"paths.root_dir={root}", "debug=default", *overrides],
        cwd=PROJECT_ROOT,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        capture_output=True,
        text=True,
        timeout=900,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readout")
    trained = run("train", root)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    return root


def test_readout_without_history_or_without_a_due_run_exits_with_one_line(project: Path) -> None:
    line = one_error_line(run("readout", project))
    assert "readout: no scoring history at" in line and "run `make score` first" in line

    scored = run("score", project)  # at the end of the data: its horizon has not passed
    assert scored.returncode == 0, scored.stdout + scored.stderr
    line = one_error_line(run("readout", project))
    assert "no scoring run in scores" in line and "has passed by readout.as_of 2024-01-01" in line
    assert "runs: 2024-01-01" in line
    line = one_error_line(run("readout", project, "readout.as_of=2030-01-01"))
    assert "readout.as_of: 2030-01-01 is after the end of the input data (2024-01-01)" in line
    (project / "outputs" / "not_a_database.duckdb").write_text("scores")
    line = one_error_line(run("readout", project, f"score.database={project}/outputs/not_a_database.duckdb"))
    assert "readout: score.database" in line and "cannot be read" in line
    assert not (project / "outputs" / "readout").exists()


def test_a_past_run_is_read_out_per_action_logged_and_reported(project: Path) -> None:
    scored = run(
        "score", project, f"score.as_of={EARLIER}", "actions.control.share=0.5", "actions.budget=20000"
    )
    assert scored.returncode == 0, scored.stdout + scored.stderr
    assert "control groups  50% of each action's selection held out" in scored.stdout + scored.stderr
    history = duckdb.connect(str(project / "outputs" / "churnwise.duckdb"), read_only=True)
    assigned = history.execute(
        f"""SELECT action, count(*) FILTER (WHERE assignment = 'treated'), count(*) FILTER (WHERE assignment = 'control'),
                   bool_and(selected = (assignment = 'treated')), min(assignment_probability), max(assignment_probability)
            FROM scores WHERE as_of = DATE '{EARLIER}' AND assignment IS NOT NULL GROUP BY action"""
    ).fetchall()
    history.close()
    assert assigned and all(same and low == high == 0.5 for _, _, _, same, low, high in assigned)

    # the debug run's learned effects, shrunk by their noise, pick few actions; 20 per arm gives one an interval
    result = run("readout", project, "readout.min_group=20")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "churnwise readout as of 2024-01-01" in output

    by_action = pd.read_parquet(project / "outputs" / "readout" / "readout_by_action.parquet")
    assert set(by_action["as_of"].astype(str)) == {EARLIER}  # the run at the data end is not due
    expected = {a: (t, c) for a, t, c, *_ in assigned}
    assert {r.action: (r.n_treated, r.n_control) for r in by_action.itertuples()} == expected
    with_interval = by_action[by_action["low"].notna()]
    assert len(with_interval) >= 1, by_action
    assert ((with_interval["n_treated"] >= 20) & (with_interval["n_control"] >= 20)).all()
    assert (with_interval["low"] <= with_interval["effect"]).all()
    assert (with_interval["effect"] <= with_interval["high"]).all()
    assert (by_action.loc[by_action["low"].isna(), "note"] != "").all()

    # The margin is the demo's own revenue: margin_rate x monthly_price for each day held within the 90 days
    # after the run's date, recomputed here from the subscriptions table.
    row = with_interval.iloc[0]
    start, end = pd.Timestamp(EARLIER), pd.Timestamp(EARLIER) + pd.Timedelta(days=90)
    subscriptions = pd.read_parquet(project / "data" / "demo_debug" / "subscriptions.parquet")
    first = pd.to_datetime(subscriptions["start_date"]).clip(lower=start)
    last = pd.to_datetime(subscriptions["end_date"]).fillna(end).clip(upper=end)
    paid = subscriptions["monthly_price"] * (last - first).dt.days.clip(lower=0) / (365.25 / 12)
    by_customer = paid.groupby(subscriptions["customer_id"]).sum()
    history = duckdb.connect(str(project / "outputs" / "churnwise.duckdb"), read_only=True)
    treated_ids = [
        c for (c,) in history.execute(
            f"SELECT customer_id FROM scores WHERE as_of = DATE '{EARLIER}' AND action = ? AND assignment = 'treated'",
            [row.action],
        ).fetchall()
    ]  # fmt: skip
    history.close()
    margin = 0.35 * by_customer.reindex(treated_ids, fill_value=0.0)
    assert row.margin_treated == pytest.approx(margin.mean(), rel=1e-6)

    mlflow.set_tracking_uri(f"sqlite:///{project}/mlflow.db")
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("churnwise-debug").experiment_id
    (readout_run,) = client.search_runs([experiment], "tags.stage = 'readout'")
    metrics = readout_run.data.metrics
    action = with_interval.iloc[0]["action"]
    for name in ("effect", "low", "high"):
        assert metrics[f"readout_{EARLIER}_{action}_{name}"] == pytest.approx(with_interval.iloc[0][name])
    artifacts = {
        a.path
        for folder in ("plots", "readout")
        for a in client.list_artifacts(readout_run.info.run_id, folder)
    }
    assert {
        "plots/readout_effects.png",
        "readout/readout_by_action.csv",
        "readout/readout_runs.csv",
    } <= artifacts

    report = run("report", project)
    assert report.returncode == 0, report.stdout + report.stderr
    page = (project / "outputs" / "report" / "report.html").read_text()
    assert "Did the last campaigns work?" in page and "readout_effects.png" in page
    table = pd.read_csv(
        project / "outputs" / "report" / "did_the_last_campaigns_work__treated_vs_control.csv"
    )
    assert list(table["action"]) == list(by_action["action"])
