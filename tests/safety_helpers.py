"""What the safety tests compare: the whole state of a project (files, MLflow runs, versions and aliases, the
scoring history), and how they run a stage as a user does (`python -m pipeline.<stage>`)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOT_STATE = ("outputs/logs/",)  # a run's own log folder is expected to appear


@dataclass(frozen=True)
class StageRun:
    """A stage run as a user runs it: exit code, everything printed, and how long it took."""

    returncode: int
    output: str
    seconds: float


def run_stage(
    stage: str,
    *overrides: str,
    env: dict[str, str] | None = None,
    config_path: Path | None = None,
    timeout: float = 900,
) -> StageRun:
    """Run `python -m pipeline.<stage> <overrides>` from the project folder."""
    command = [sys.executable, "-m", f"pipeline.{stage}"]
    if config_path is not None:
        command += ["--config-path", str(config_path)]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, *overrides],
        cwd=PROJECT_ROOT,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return StageRun(done.returncode, done.stdout + done.stderr, time.perf_counter() - started)


def file_digests(root: Path, skip: tuple[str, ...] = NOT_STATE) -> dict[str, str]:
    """sha256 of every file under `root` except the MLflow and DuckDB stores (compared by content instead)."""
    out = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if not path.is_file() or relative.startswith(skip):
            continue
        if path.name.startswith("mlflow.db") or path.suffix in (".duckdb", ".wal"):
            continue
        out[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def mlflow_state(tracking_uri: str) -> dict[str, Any]:
    """Every visible run (with its status), model version and alias of a tracking store. A deleted run is in
    MLflow's trash, hidden from the experiment: a failed publication deletes its run."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    runs = []
    for experiment in client.search_experiments(view_type=ViewType.ALL):
        for run in client.search_runs(
            [experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=5000
        ):
            runs.append((run.info.run_id, run.info.status, run.info.lifecycle_stage))
    versions = sorted((v.name, v.version, v.status) for v in client.search_model_versions())
    aliases = {m.name: dict(m.aliases) for m in client.search_registered_models()}
    return {"runs": sorted(runs), "versions": versions, "aliases": aliases}


def history_state(database: Path) -> dict[str, Any]:
    """Each table of a DuckDB history database, as a digest of its sorted rows."""
    import duckdb

    if not database.exists():
        return {}
    con = duckdb.connect(str(database), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        return {
            table: hashlib.sha256(
                repr(con.execute(f'SELECT * FROM "{table}" ORDER BY ALL').fetchall()).encode()
            ).hexdigest()
            for table in tables
        }
    finally:
        con.close()


def project_state(root: Path) -> dict[str, Any]:
    """Everything a failed run must leave as it was: files, MLflow runs/versions/aliases, the history."""
    state: dict[str, Any] = {"files": file_digests(root)}
    if (root / "mlflow.db").exists():
        state["mlflow"] = mlflow_state(f"sqlite:///{root}/mlflow.db")
    state["history"] = history_state(root / "outputs" / "churnwise.duckdb")
    return state


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two project states, in words (empty: nothing changed)."""
    out = []
    files_before, files_after = before["files"], after["files"]
    out += [f"new file {f}" for f in sorted(set(files_after) - set(files_before))]
    out += [f"removed file {f}" for f in sorted(set(files_before) - set(files_after))]
    out += [
        f"changed file {f}"
        for f in sorted(set(files_before) & set(files_after))
        if files_before[f] != files_after[f]
    ]
    for part in ("mlflow", "history"):
        if before.get(part) != after.get(part):
            out.append(f"{part} changed: {before.get(part)} -> {after.get(part)}")
    return out
