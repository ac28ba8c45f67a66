"""A flat churn table in the public telecom layout (data=telco, a data=snapshot: blank totals, Yes / No values, no time axis):
stratified K-fold with out-of-fold metrics, the final model registered, a table of the same shape without the
label scored, the retention report; and a table that does not fit stopping before any work."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from config_helpers import compose_config
from sklearn.metrics import roc_auc_score

from features.demo.telco import TelcoSpec, generate_telco, telco_frame

pytestmark = pytest.mark.slow

SPEC = TelcoSpec(n_customers=3000, score_customers=400, seed=11)


def snapshot_config(root: Path, path: Path, *more: str):
    return compose_config(
        root,
        "data=telco",
        f"data.path={path}",
        "data.as_of=2024-06-30",
        "data.generate_if_missing=false",
        *more,
        debug=False,
    )


def test_a_telecom_snapshot_trains_with_kfold_scores_and_reports(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import mlflow

    from churnwise.api import report, score, train

    made = generate_telco(SPEC, tmp_path / "telco.csv")
    raw = pd.read_csv(made.path, dtype=str, keep_default_na=False)
    assert (raw["TotalCharges"] == " ").sum() >= 1 and set(raw["Partner"]) == {"Yes", "No"}
    cfg = snapshot_config(tmp_path / "project", made.path)
    assert cfg.split.kind == "kfold" and cfg.label.name == "snapshot"

    with caplog.at_level(logging.INFO, logger="churnwise.api"):
        trained = train(cfg)
    # the run says over what period the churn column was read (data.label.period_months: 12 in data=telco)
    assert "churned: left within 12 months (365 days)" in caplog.text
    m = trained.metrics
    assert trained.split.startswith("stratified 5-fold")
    for metric in ("roc_auc", "pr_auc", "brier", "ece"):
        assert f"test_{metric}" in m and f"cv_{metric}_mean" in m and f"cv_{metric}_std" in m
    # out-of-fold metrics recomputed from the run's own table: they are the pooled OOF predictions' AUC,
    # near the generator's true probabilities (the ceiling) and the fold mean
    truth = telco_frame(SPEC)[1][: SPEC.n_customers]
    ceiling = roc_auc_score((raw["Churn"] == "Yes").to_numpy(), truth)
    assert ceiling - 0.05 < m["test_roc_auc"] <= ceiling + 0.01
    assert abs(m["test_roc_auc"] - m["cv_roc_auc_mean"]) < 0.02 and 0 < m["cv_roc_auc_std"] < 0.05
    assert m["train_snapshots"] == SPEC.n_customers

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("churnwise_telco", "champion")
    assert str(champion.version) == trained.model_version and champion.run_id == trained.run_id
    manifest = json.loads((Path(cfg.paths.features_dir) / "manifest.json").read_text())
    kinds = {name: source["kind"] for name, source in manifest["snapshot"]["sources"].items()}
    assert kinds["total_charges"] == "numeric" and kinds["partner"] == "binary"
    assert {"tenure_days", "monthly_revenue", "max_term_months", "active_products", "categories_held"} <= set(
        kinds
    )

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="decisions.scoring"):
        scored = score(snapshot_config(tmp_path / "project", made.score_path))
    assert "churned: left within 12 months (365 days)" in caplog.text  # the scoring summary says it too
    out = pd.read_parquet(scored.path)
    to_score = pd.read_csv(made.score_path, dtype=str)
    assert "Churn" not in to_score.columns
    assert sorted(out["customer_id"]) == sorted(to_score["customerID"])
    assert out["p_churn"].between(0, 1).all() and (out["clv"] > 0).all()
    assert out.loc[out["p_churn"] > 0.5, "reason_1"].notna().all() and out["selected"].any()
    # the same customers' probabilities from the registered model on their rows of a feature table
    month_to_month = to_score.set_index("customerID")["Contract"] == "Month-to-month"
    p = out.set_index("customer_id")["p_churn"]
    assert (
        p[month_to_month[month_to_month].index].mean() > 2 * p[month_to_month[~month_to_month].index].mean()
    )

    # a table with the label scores the same: the label column is ignored
    with_label = tmp_path / "with_label.csv"
    pd.concat([to_score, pd.Series("No", index=to_score.index, name="Churn")], axis=1).to_csv(
        with_label, index=False
    )
    again = pd.read_parquet(score(snapshot_config(tmp_path / "project", with_label)).path)
    np.testing.assert_allclose(
        again.set_index("customer_id")["p_churn"].sort_index(), p.sort_index(), rtol=0, atol=1e-12
    )

    reported = report(snapshot_config(tmp_path / "project", made.path))
    r = reported.metrics
    assert r["customers"] == SPEC.n_customers and r["churners"] == (raw["Churn"] == "Yes").sum()
    assert r["period_retention"] == pytest.approx(1 - (raw["Churn"] == "Yes").mean())
    # a 26% churn over 12 months: ~97.5% a month and ~74% a year, not 74% a month and 2.4% a year
    assert r["period_months"] == 12 and r["annual_retention"] == pytest.approx(r["period_retention"])
    assert (
        r["monthly_retention"] == pytest.approx(r["period_retention"] ** (1 / 12))
        and r["monthly_retention"] > 0.97
    )
    page = reported.html_path.read_text()
    assert "Survival over tenure" in page and "Month-to-month" in page and "The corrective plan" in page
    assert "covers 12 months (365 days) (data.label.period_months)" in page

    # the same customers ten years on: every tenure beyond every training tenure (at most 72 months)
    assert scored.summary.out_of_range["tenure_days"] == 0.0
    aged = tmp_path / "aged.csv"
    plain = pd.read_csv(made.score_path, dtype=str, keep_default_na=False)
    plain.assign(tenure=(plain["tenure"].astype(int) + 120).astype(str)).to_csv(aged, index=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="decisions.checks"):
        later = score(snapshot_config(tmp_path / "project", aged))
    warned = [r.getMessage() for r in caplog.records if "outside the training range" in r.getMessage()]
    assert len(warned) == 1 and "tenure_days 100% (trained on 0 .. " in warned[0]
    assert later.summary.out_of_range["tenure_days"] == 1.0
    assert "out of range    tenure_days 100%" in later.summary.render([])
    assert client.get_run(later.run_id).data.metrics["out_of_range_share.tenure_days"] == 1.0


def test_a_snapshot_that_does_not_fit_stops_before_any_work(tmp_path: Path) -> None:
    from churnwise.api import train

    made = generate_telco(TelcoSpec(n_customers=300, score_customers=10, seed=3), tmp_path / "telco.csv")
    frame = pd.read_csv(made.path, dtype=str, keep_default_na=False)
    frame.loc[7, "Churn"] = "Unknown"
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    root = tmp_path / "project"
    from features.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data\.label \(column 'Churn'.*line 9 .*'Unknown'"):
        train(snapshot_config(root, bad))
    with pytest.raises(ConfigError, match=r"data\.label\.column: no column 'churn'; did you mean 'Churn'"):
        train(snapshot_config(root, made.path, "data.label.column=churn"))
    with pytest.raises(ConfigError, match=r"data\.types\.gender.*'(Male|Female)'"):
        train(snapshot_config(root, made.path, "+data.types.gender=numeric"))
    with pytest.raises(ConfigError, match=r"label=contractual needs dated tables"):
        train(snapshot_config(root, made.path, "label=contractual"))
    assert not (root / "data").exists() and not (root / "mlflow.db").exists()  # nothing built, nothing logged


def test_the_generic_snapshot_config_names_what_it_needs_and_reads_any_layout(tmp_path: Path) -> None:
    from omegaconf.errors import MissingMandatoryValue

    from churnwise.api import build_features

    path = tmp_path / "churn.csv"
    pd.DataFrame(
        {"id": [5, 6, 7, 8], "plan": ["a", "b", "a", "c"], "months": [1, 20, 3, 40], "left": [1, 0, 1, 0]}
    ).to_csv(path, index=False)
    with pytest.raises(MissingMandatoryValue, match="id_column"):
        build_features(
            compose_config(
                tmp_path, "data=snapshot", f"data.path={path}", "data.label.period_months=1", debug=False
            )
        )
    cfg = compose_config(
        tmp_path, "data=snapshot", f"data.path={path}", "data.id_column=id", "data.label.column=left",
        "data.label.positive=1", "data.label.negative=0", "data.label.period_months=1", "data.tenure.column=months",
        debug=False,
    )  # fmt: skip
    assert cfg.mlflow.registered_model_name == "churnwise_snapshot"
    table = pd.read_parquet(build_features(cfg).table_path)
    assert table["churned"].tolist() == [1, 0, 1, 0] and table["plan"].tolist() == ["a", "b", "a", "c"]
    assert table["tenure_days"].tolist() == [30.0, 609.0, 91.0, 1218.0]
