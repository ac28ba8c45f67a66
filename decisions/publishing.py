"""What a scoring run publishes besides its files: the PostgreSQL table, and the MLflow run's tags, settings,
counts, tables and plots."""

from __future__ import annotations

import logging
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from decisions.summary import ScoringSummary, summary_figures
from features.provenance import git_commit
from features.publish import spreadsheet_safe_frame
from models.registry import RegisteredModel
from models.tracking import config_params

log = logging.getLogger(__name__)


def publish_to_postgres(uri: str, table: str, path: Path, as_of: date) -> int:
    """Replace this as_of's rows of the PostgreSQL table `table` with the output at `path`, in one
    transaction (the table is created, keyed by customer_id and as_of, if it does not exist)."""
    from features.postgres import redact, write_scores

    rows = write_scores(uri, table, path, as_of)
    log.info("published %s rows to PostgreSQL table %s at %s", f"{rows:,}", table, redact(uri))
    return rows


def scoring_tags(
    registered: RegisteredModel, as_of: date, data_name: str, data_fingerprint: str, selection: str
) -> dict[str, str]:
    """The tags of a scoring run: the model version, the date, the data and the code."""
    commit, dirty = git_commit()
    return {
        "stage": "score",
        "model.uri": registered.uri,
        "model.version": registered.version,
        "model.run_id": registered.run_id,
        "as_of": as_of.isoformat(),
        "data.name": data_name,
        "data.fingerprint": data_fingerprint,
        "git.commit": commit,
        "git.dirty": str(dirty).lower(),
        "selection": selection,
    }


def log_scoring_run(resolved: dict[str, Any], resolved_yaml: str, summary: ScoringSummary) -> None:
    """Log a scoring into the active MLflow run: its settings (from the resolved, redacted config and its
    YAML), counts, budget and value, tables and plots."""
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.log_params(
        config_params(
            {k: resolved[k] for k in ("score", "value", "actions", "ladder", "valuation", "reasons")}
        )
    )
    mlflow.log_metrics(summary.metrics())
    mlflow.set_tags(
        {
            "effects.assumed": ",".join(summary.assumed_actions) or "none",
            "effects.note": summary.assumed_line(),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "resolved_config.yaml").write_text(resolved_yaml)
        for name, frame in summary.tables().items():
            spreadsheet_safe_frame(frame).to_csv(folder / f"{name}.csv", index=False)
        mlflow.log_artifacts(str(folder), artifact_path="run_info")
    for file_name, figure in summary_figures(summary).items():
        mlflow.log_figure(figure, f"plots/{file_name}")
        plt.close(figure)
