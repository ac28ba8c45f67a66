"""The retention report end to end (after train and score), checked against independent computations."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from config_helpers import outputs_for

from churnwise.api import report, score
from features.publish import RECORD

pytestmark = pytest.mark.slow


def active_at(subscriptions: pd.DataFrame, day: str) -> set:
    """Customers holding a subscription on `day`, as the contract population defines it."""
    t = pd.Timestamp(day)
    start, end = pd.to_datetime(subscriptions["start_date"]), pd.to_datetime(subscriptions["end_date"])
    return set(subscriptions.loc[(start < t) & (end.isna() | (end >= t)), "customer_id"])


def test_report_after_train_and_score_is_written_tracked_and_right(decision_project, tmp_path: Path) -> None:
    cfg, make, _ = decision_project
    folder = outputs_for(cfg, tmp_path, "")
    score(make(f"score.output_dir={folder / 'scores'}"))
    result = report(make(f"score.output_dir={folder / 'scores'}", f"report.output_dir={folder / 'report'}"))

    page = result.html_path.read_text()
    for title in (
        "Customer retention rate", "Retention by group", "Expected lifetime and what retention is worth",
        "Survival (Kaplan-Meier)", "Why customers defect", "Lifetime value and value at risk", "The corrective plan",
    ):  # fmt: skip
        assert f"<h2>{title}</h2>" in page
    assert page.count("data:image/png;base64,") >= 8  # self-contained: the plots are in the page
    pngs = sorted(p.name for p in (folder / "report").glob("*.png"))
    assert {"retention_overall.png", "survival_by_cohort.png", "survival_by_contract.png"} <= set(pngs)
    assert [p.name for p in (folder / "report").iterdir() if p.name.startswith(".")] == [RECORD]

    # Annual retention, computed here from the subscriptions: customers on 1 January still there a year later.
    subscriptions = pd.read_parquet(Path(cfg.data.path) / "subscriptions.parquet")
    jan = {year: active_at(subscriptions, f"{year}-01-01") for year in (2022, 2023, 2024)}
    per_year = pd.read_csv(folder / "report" / "customer_retention_rate_overall_per_year.csv")
    assert per_year["period"].tolist() == [2022, 2023]  # the debug data covers two complete years
    assert per_year["customers"].tolist() == [len(jan[2022]), len(jan[2023])]
    assert per_year["retained"].tolist() == [len(jan[2022] & jan[2023]), len(jan[2023] & jan[2024])]
    expected = (len(jan[2022] & jan[2023]) + len(jan[2023] & jan[2024])) / (len(jan[2022]) + len(jan[2023]))
    assert result.metrics["annual_retention"] == pytest.approx(expected)
    assert result.metrics["expected_lifetime_years"] == pytest.approx(1 / (1 - expected))

    by_segment = pd.read_csv(folder / "report" / "lifetime_value_and_value_at_risk_by_customer_segment.csv")
    assert set(by_segment["customer_segment"]) == {"consumer", "small_business", "enterprise"}
    plan = pd.read_csv(folder / "report" / "the_corrective_plan_actions.csv")
    scores = pd.read_parquet(folder / "scores" / "scores.parquet")
    assert plan["selected"].sum() == scores["selected"].sum() > 0

    run = mlflow.MlflowClient(cfg.mlflow.tracking_uri).get_run(result.run_id)
    assert run.data.tags["stage"] == "report" and len(run.data.tags["data.fingerprint"]) == 64
    artifacts = {
        a.path for a in mlflow.MlflowClient(cfg.mlflow.tracking_uri).list_artifacts(result.run_id, "report")
    }
    assert {"report/report.html", "report/retention_overall.png"} <= artifacts
