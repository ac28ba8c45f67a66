"""All or nothing: a failure injected at each step of publishing a scoring run, a report or a training run
leaves the previous state intact (output files, the history table, MLflow runs, versions and aliases), and no
temp file behind; the next run publishes normally. Cells that a spreadsheet would run as formulas are
escaped in CSV outputs and kept exact in Parquet."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import mlflow
import pandas as pd
import pytest
from config_helpers import outputs_for
from mlflow.exceptions import MlflowException
from safety_helpers import changes, project_state

import decisions.scoring as scoring
import features.publish as publish
from churnwise.api import report, score
from features.publish import PublishError

pytestmark = pytest.mark.slow

AS_OF = "2023-12-01"


def boom(*args: object, **kwargs: object) -> None:
    raise MlflowException("injected: the tracking server went away")


def fail_after(real: Callable[..., object], error: Exception) -> Callable[..., object]:
    """`real`, then raise: the step did its work, and something right after it failed."""

    def wrapped(*args: object, **kwargs: object) -> object:
        real(*args, **kwargs)
        raise error

    return wrapped


@pytest.fixture
def published(decision_project, tmp_path: Path):
    """A scoring already published in a folder of this test, and a way to compose the same run."""
    cfg, make, root = decision_project
    out = outputs_for(cfg, tmp_path, "scores")

    def again(*overrides: str):  # a history table of its own: other tests read the shared one
        return make(
            f"score.output_dir={out}", f"score.as_of={AS_OF}", "score.table=scores_publishing", *overrides
        )

    first = score(again())
    return root, again, first


def _no_temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".bak-" in p.name)


@pytest.mark.parametrize(
    "inject",
    [
        "disk_full_writing_the_csv",
        "tracking_fails_while_logging",
        "history_insert_fails",
        "second_file_cannot_be_swapped_in",
        "postgres_publish_fails",
    ],
)
def test_a_scoring_that_fails_while_publishing_leaves_everything_as_it_was(
    published, monkeypatch: pytest.MonkeyPatch, inject: str
) -> None:
    root, again, first = published
    overrides: list[str] = []
    if inject == "disk_full_writing_the_csv":

        def full(*args: object) -> str:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(scoring, "csv_copy_sql", full)
    elif inject == "tracking_fails_while_logging":
        monkeypatch.setattr(
            scoring, "log_scoring_run", fail_after(scoring.log_scoring_run, MlflowException("injected"))
        )
    elif inject == "history_insert_fails":
        real = publish.HistoryTable.replacing

        def replacing(self, source, date_column, as_of):  # noqa: ANN001, ANN202
            return real(self, "no_such_table_injected", date_column, as_of)

        monkeypatch.setattr(publish.HistoryTable, "replacing", replacing)
    elif inject == "second_file_cannot_be_swapped_in":
        real_replace = os.replace
        calls = []

        def replace(source, target):  # noqa: ANN001, ANN202
            if Path(target).name == "scores.csv" and not calls:  # once: moving the new CSV into place
                calls.append(target)
                raise OSError(errno.EIO, "Input/output error")
            return real_replace(source, target)

        monkeypatch.setattr(publish.os, "replace", replace)
    elif inject == "postgres_publish_fails":
        overrides = ["score.postgres.table=churn_scores", "score.postgres.uri=postgresql://u@127.0.0.1:1/x"]
        monkeypatch.setattr(scoring, "publish_to_postgres", boom)
    before = project_state(root)
    with pytest.raises((PublishError, MlflowException, duckdb.Error, OSError)):
        score(again("score.as_of=2023-10-01", *overrides))
    monkeypatch.undo()
    assert changes(before, project_state(root)) == []
    assert _no_temp_files(first.path.parent) == []
    assert set(pd.read_parquet(first.path)["as_of"].astype(str)) == {AS_OF}

    rerun = score(again("score.as_of=2023-10-01"))  # nothing was left half-done: the next run publishes
    assert set(pd.read_parquet(rerun.path)["as_of"].astype(str)) == {"2023-10-01"}


def test_a_report_that_fails_while_tracking_leaves_the_previous_report(
    decision_project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, make, root = decision_project
    folder = outputs_for(cfg, tmp_path, "report")
    scores = outputs_for(cfg, tmp_path, "scores")
    score(make(f"score.output_dir={scores}"))
    first = report(make(f"score.output_dir={scores}", f"report.output_dir={folder}"))
    (folder / "notes.txt").write_text("a file of the user's, beside the report")
    before = project_state(root)
    monkeypatch.setattr(mlflow, "log_artifacts", boom)
    with pytest.raises(MlflowException):
        report(make(f"score.output_dir={scores}", f"report.output_dir={folder}", "report.period_months=6"))
    monkeypatch.undo()
    assert changes(before, project_state(root)) == []
    assert _no_temp_files(folder) == []
    again = report(make(f"score.output_dir={scores}", f"report.output_dir={folder}"))
    assert sorted(p.name for p in again.files) == sorted(p.name for p in first.files)
    assert (folder / "notes.txt").read_text().startswith("a file of the user's")  # never the user's file


def test_a_training_whose_registration_fails_registers_nothing(
    decision_project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from churnwise.api import train

    cfg, make, root = decision_project
    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    monkeypatch.setattr(client.__class__, "set_registered_model_alias", boom)
    before = project_state(root)
    with pytest.raises(MlflowException):
        train(make("promotion.auto=false"))
    monkeypatch.undo()
    after = project_state(root)
    # Training rewrote its feature table (the same rows: a cache of the data, not an output); nothing else.
    assert [c for c in changes(before, after) if "data/features/" not in c] == []


def test_csv_outputs_escape_cells_a_spreadsheet_would_run(decision_project, tmp_path: Path) -> None:
    """Customer ids are the user's text: ids that start like a formula are escaped in scores.csv, exact in
    Parquet."""
    cfg, make, _ = decision_project
    tables = tmp_path / "text_ids"
    shutil.copytree(Path(cfg.data.path), tables)
    (tables / "_manifest.json").unlink()
    (tables / ".churnwise-files.json").unlink(missing_ok=True)
    prefixes = ["=", "+", "-", "@", ""]
    con = duckdb.connect()
    for path in tables.glob("*.parquet"):
        columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM '{path}'").fetchall()]
        ids = [c for c in columns if c.endswith("customer_id")]
        if not ids:
            continue
        text = ", ".join(
            f"CASE {c} % 5 {' '.join(f'WHEN {i} THEN {p!r} || {c}' for i, p in enumerate(prefixes))} END AS {c}"
            for c in ids
        )
        con.execute(f"COPY (SELECT * REPLACE ({text}) FROM '{path}') TO '{path}.new' (FORMAT parquet)")
        os.replace(f"{path}.new", path)
    out = outputs_for(cfg, tmp_path, "scores")
    result = score(
        make(f"data.path={tables}", "data.generate_if_missing=false", f"score.as_of={AS_OF}",
             f"score.output_dir={out}", "score.table=scores_text_ids")
    )  # fmt: skip
    exact = pd.read_parquet(result.path)
    risky = exact["customer_id"].str[0].isin(["=", "+", "-", "@"])
    assert risky.sum() > 100
    cells = pd.read_csv(result.csv_path, dtype={"customer_id": str})["customer_id"]
    assert (cells[risky.to_numpy()] == "'" + exact.loc[risky, "customer_id"]).all()
    assert (cells[~risky.to_numpy()] == exact.loc[~risky, "customer_id"]).all()
    assert not cells.str[0].isin(["=", "+", "-", "@"]).any()
