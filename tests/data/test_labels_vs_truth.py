"""On demo data, the labelled churn rate per observation date is close to the generator's truth."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from features.demo.dated import DemoSpec, generate_demo
from features.engine import build_feature_table
from features.validation import load_tables

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_contractual_churn_rate_matches_the_true_probabilities(tmp_path: Path) -> None:
    summary = generate_demo(
        DemoSpec(n_customers=6000, months=30, seed=21, chunk_size=3000), tmp_path / "t", tmp_path / "truth"
    )
    tables = load_tables(summary.tables_dir)
    label_cfg = OmegaConf.to_container(OmegaConf.load(CONF / "label" / "contractual.yaml"))
    build_feature_table(
        tables.con,
        set(tables.report.present),
        OmegaConf.to_container(OmegaConf.load(CONF / "features" / "default.yaml")),
        OmegaConf.to_container(OmegaConf.load(CONF / "observation" / "monthly.yaml")),
        label_cfg,
    )
    truth = summary.truth_dir / "true_churn_probability.parquet"
    horizon = int(label_cfg["horizon_days"])
    # The truth is a hazard per calendar month (churn day uniform within it); a month only partly inside
    # the label window contributes the covered share of its hazard.
    rows = tables.con.execute(
        f"""
        WITH snapshots AS (SELECT customer_id, observation_date, churned FROM feature_table WHERE churned IS NOT NULL),
        months AS (
          SELECT s.customer_id, s.observation_date, any_value(s.churned) AS churned,
                 1 - exp(sum(ln(1 - t.p_churn * (
                     date_diff('day', greatest(t.month, s.observation_date),
                               least(t.month + INTERVAL 1 MONTH, s.observation_date + INTERVAL {horizon} DAY))
                     / date_diff('day', t.month, t.month + INTERVAL 1 MONTH))))) AS p_truth
          FROM snapshots s
          LEFT JOIN read_parquet('{truth}') t
            ON t.customer_id = s.customer_id AND t.month + INTERVAL 1 MONTH > s.observation_date
           AND t.month < s.observation_date + INTERVAL {horizon} DAY
          GROUP BY s.customer_id, s.observation_date)
        SELECT observation_date, count(*), avg(churned), avg(coalesce(p_truth, 0)) FROM months
        GROUP BY observation_date ORDER BY observation_date"""
    ).fetchall()
    assert len(rows) >= 20
    snapshots = sum(r[1] for r in rows)
    observed = sum(r[1] * r[2] for r in rows) / snapshots
    expected = sum(r[1] * r[3] for r in rows) / snapshots
    assert observed == pytest.approx(expected, rel=0.08), (observed, expected)
    # Per date, within sampling noise (3 standard errors plus 15%) of the truth.
    for day, n, rate, p in rows:
        se = (p * (1 - p) / n) ** 0.5
        assert abs(rate - p) <= 3 * se + 0.15 * p, (day, rate, p)
