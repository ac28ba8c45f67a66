"""End-to-end: the stage entry points run as a user runs them (python -m pipeline.<stage>, make)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def run_stage(stage: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", f"pipeline.{stage}", *overrides],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_make_help_lists_the_targets() -> None:
    out = subprocess.run(
        ["make", "help"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    listed = {line.split()[0] for line in plain.splitlines()[1:] if line.strip()}
    assert {"setup", "data", "validate", "train", "test", "bench", "ui", "lint", "format", "clean"} <= listed


def test_bad_input_stops_train_before_anything_is_written(tmp_path: Path) -> None:
    tables = tmp_path / "mine"
    tables.mkdir()
    (tables / "customers.csv").write_text("customer_id,signup_date\n1,2023-01-01\n1,2023-02-01\n")
    (tables / "orders.csv").write_text("customer_id,order_date,product_category,amount\n7,2023-03-01,x,-1\n")
    result = run_stage(
        "train",
        f"paths.root_dir={tmp_path}",
        f"data.path={tables}",
        "data.name=mine",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    output = result.stdout + result.stderr
    assert "[customers.customer_id] rule 'unique'" in output
    assert "[orders.amount] rule '>= 0'" in output
    assert "Traceback" not in output
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_train_from_nothing_generates_validates_and_tracks(tmp_path: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    result = run_stage("train", f"paths.root_dir={tmp_path}", "debug=default", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "no demo data" in output and "generating it" in output
    assert "Feature families buildable (9/9)" in output
    assert (tmp_path / "data" / "demo_debug" / "customers.parquet").is_file()
    assert (tmp_path / "data" / "demo_debug_truth" / "true_churn_probability.parquet").is_file()

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient()
    experiment = client.get_experiment_by_name("churnwise-debug")
    runs = client.search_runs([experiment.experiment_id], "tags.stage = 'train'")
    assert len(runs) == 1
    run = runs[0]
    assert len(run.data.tags["data.fingerprint"]) == 64
    assert run.data.tags["git.commit"]
    assert run.data.params["data.generator.n_customers"] == "1500"
    assert run.data.metrics["train_snapshots"] > 0 and 0.5 < run.data.metrics["test_roc_auc"] <= 1
    assert "churnwise train:" in output and "now champion" in output
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "run_info")}
    assert artifacts == {
        "run_info/resolved_config.yaml", "run_info/feature_manifest.json", "run_info/feature_importance.csv",
        "run_info/feature_stability.csv",
    }  # fmt: skip
    predictions = {a.path for a in client.list_artifacts(run.info.run_id, "predictions")}
    # the churn model's test slice, and the survival model's check (models/survival.py)
    assert predictions == {"predictions/test_slice.parquet", "predictions/survival_check.parquet"}
    # the effects bundle (survival) is logged in the same run and is champion with the model
    assert client.get_model_version_by_alias("churnwise-effects", "champion").run_id == run.info.run_id
    assert "survival_brier_12m" in run.data.metrics
    assert (tmp_path / "data" / "features" / "demo_debug_contractual" / "features.parquet").is_file()

    # A second run reuses the data (same spec) and records the same fingerprint.
    again = run_stage("train", f"paths.root_dir={tmp_path}", "debug=default", cwd=tmp_path)
    assert again.returncode == 0 and "generating it" not in again.stdout + again.stderr
    runs = client.search_runs([experiment.experiment_id], "tags.stage = 'train'")
    assert len(runs) == 2
    assert runs[0].data.tags["data.fingerprint"] == runs[1].data.tags["data.fingerprint"]


def test_a_folder_of_user_tables_is_never_replaced_by_demo_data(make_cfg, tmp_path: Path) -> None:
    from churnwise.api import ensure_demo_data

    tables = tmp_path / "mine"
    tables.mkdir()
    (tables / "customers.csv").write_text("customer_id,signup_date\n1,2023-01-01\n")
    assert ensure_demo_data(make_cfg(f"data.path={tables}")) is False
    assert [p.name for p in tables.iterdir()] == ["customers.csv"]


def test_a_config_that_cannot_work_exits_cleanly_naming_the_key(tmp_path: Path) -> None:
    result = run_stage(
        "features", f"paths.root_dir={tmp_path}", "debug=default", "label.name=bogus", cwd=tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "unknown label 'bogus': use contractual or inactivity" in output
    assert "Traceback" not in output
    assert not (tmp_path / "data" / "features").exists() or not any(
        (tmp_path / "data" / "features").rglob("*.parquet")
    )


def test_score_before_any_training_exits_cleanly_saying_what_to_do(tmp_path: Path) -> None:
    result = run_stage("score", f"paths.root_dir={tmp_path}", "debug=default", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "score.model_uri models:/churnwise@champion: no such registered model version" in output
    assert "run `make train` first" in output and "Traceback" not in output
    assert not (tmp_path / "outputs" / "scores").exists()


def test_a_required_setting_left_unset_exits_cleanly_naming_it(tmp_path: Path) -> None:
    result = run_stage("validate", f"paths.root_dir={tmp_path}", "data=tables", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Missing mandatory value: data.path: set data.path=... on the command line" in output
    assert "Traceback" not in output
