"""MLflow tracking: the store checked and set up before any work, runs that are published whole or not at
all (killed runs marked failed, failed runs removed), and config as run parameters."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from features.errors import ConfigError
from features.publish import process_running
from features.redaction import redact, scrub

log = logging.getLogger(__name__)
TRACKING_TIMEOUT_S = 5  # how long a tracking server may take to accept a connection before the run stops


def setup_mlflow(uri: str, experiment_name: str, artifact_location: str | Path | None = None) -> str:
    """Point MLflow at the store `uri` and the experiment, after checking that the store answers and can be
    written; mark runs of killed jobs failed. Returns the experiment id; ConfigError names the key at fault.
    A new experiment keeps its artifacts in `artifact_location` (default: the store's own place)."""
    import mlflow  # imported here: mlflow is slow to import and not every stage needs it

    check_tracking_store(uri)
    # A server that stops answering mid-run: a few quick retries, not MLflow's default of minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    if uri.startswith("sqlite:///"):
        sqlite_path(uri).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    name = experiment_name
    with tracking_errors(uri):
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is not None:
            mlflow.set_experiment(experiment_id=experiment.experiment_id)
            mark_killed_runs_failed(experiment.experiment_id)
            return experiment.experiment_id
        location = None
        if artifact_location:
            folder = Path(artifact_location).resolve()
            folder.mkdir(parents=True, exist_ok=True)
            location = folder.as_uri()
        experiment_id = mlflow.create_experiment(name, artifact_location=location)
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id


def sqlite_path(uri: str) -> Path:
    """The database file of an `sqlite:///<path>` tracking URI (relative, or absolute with a fourth slash)."""
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def check_tracking_store(uri: str, key: str = "mlflow.tracking_uri") -> None:
    """Refuse, before any work, a tracking store that cannot be used: an sqlite file that is read-only, locked
    by another process or not a database, or a server that does not accept a connection within a few seconds."""
    shown = redact(uri)
    if uri.startswith("sqlite:///"):
        path = sqlite_path(uri)
        folder = path.parent if str(path.parent) else Path(".")
        if not path.exists():
            existing = next((p for p in (folder.resolve(), *folder.resolve().parents) if p.exists()), None)
            if existing is not None and not existing.is_dir():
                raise ConfigError(
                    f"{key} {shown}: {existing} is a file, so the store cannot be created there"
                )
            return
        if path.is_dir():
            raise ConfigError(f"{key} {shown}: {path} is a folder, not an MLflow database")
        with path.open("rb") as handle:
            header = handle.read(16)
        if header and header != b"SQLite format 3\x00":
            raise ConfigError(
                f"{key} {shown}: {path} is not an SQLite database (damaged, or another kind of file); restore it "
                f"from a backup, or point {key} at another store"
            )
        try:
            con = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=2)
            try:  # a write that is rolled back: sqlite opens a file it cannot write read-only, and says so here
                con.execute("BEGIN IMMEDIATE")
                con.execute("CREATE TABLE churnwise_write_check (x INTEGER)")
                con.execute("ROLLBACK")
            finally:
                con.close()
        except sqlite3.Error as error:
            reason = str(error)
            if "locked" in reason or "busy" in reason:
                hint = "another process is writing to it (a running job or UI); try again when it is done"
            elif "readonly" in reason or "unable to open" in reason or "read-only" in reason:
                hint = "it cannot be written (read-only file, folder or disk); fix its permissions or choose another store"
            else:
                hint = "it cannot be used; restore it from a backup or point the key at another store"
            raise ConfigError(f"{key} {shown}: {path}: {reason}: {hint}") from None
    elif uri.startswith(("http://", "https://")):
        parts = urlsplit(uri)
        try:
            host = parts.hostname or "localhost"
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as error:
            raise ConfigError(f"{key} {shown}: not a valid URL ({error})") from None
        try:
            with socket.create_connection((host, port), timeout=TRACKING_TIMEOUT_S):
                pass
        except OSError as error:
            raise ConfigError(
                f"{key} {shown}: no tracking server answers at {host}:{port} ({error.strerror or error}); "
                f"start it (make ui) or point {key} at the store"
            ) from None
        _check_tracking_server(uri, key)


def _check_tracking_server(uri: str, key: str) -> None:
    """One quick MLflow request (MLflow's own client, so its auth and TLS settings apply), no retries: something
    that accepts connections but is not an MLflow server, or refuses our credentials, stops the run now."""
    import mlflow

    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(TRACKING_TIMEOUT_S)}
    saved = {name: os.environ.get(name) for name in quick}
    os.environ.update(quick)
    try:
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as error:
        raise ConfigError(
            f"{key} {redact(uri)}: it does not answer as an MLflow tracking server ({first_line(error)}); "
            f"check the URI and the credentials (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)"
        ) from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def tracking_errors(uri: str, key: str = "mlflow.tracking_uri") -> Iterator[None]:
    """Turn a failure of the tracking store into one line naming the key (the URI redacted)."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as error:
        if not (isinstance(error, OSError) or tracking_failure(error)):
            raise
        raise ConfigError(f"{key} {redact(uri)}: the tracking store failed: {first_line(error)}") from None


def tracking_failure(error: BaseException) -> bool:
    """Whether an error comes from the tracking store (MLflow, its database or its server)."""
    seen: BaseException | None = error
    while seen is not None:
        if type(seen).__module__.split(".")[0] in ("mlflow", "sqlalchemy", "requests", "urllib3", "sqlite3"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def first_line(error: BaseException) -> str:
    """The most specific message of an error: its driver's own (a database error wrapped by SQLAlchemy and
    MLflow says 'attempt to write a readonly database'), first line, secrets scrubbed."""
    deepest = error
    while getattr(deepest, "orig", None) is not None or deepest.__cause__ is not None:
        deepest = getattr(deepest, "orig", None) or deepest.__cause__
    text = str(getattr(deepest, "message", None) or deepest).strip() or str(error).strip()
    return scrub(text.splitlines()[0] if text else type(error).__name__)


def process_tags() -> dict[str, str]:
    """Tags that tell a later run whether the process that ran this one still runs (host, pid, start time)."""
    return {
        "churnwise.host": socket.gethostname(),
        "churnwise.pid": str(os.getpid()),
        "churnwise.started": _start_ticks(os.getpid()),
    }


def _start_ticks(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, from /proc), so a reused pid is not mistaken for it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def mark_killed_runs_failed(experiment_id: str) -> list[str]:
    """Runs of this machine left RUNNING by a process that no longer runs (killed) are marked FAILED, and the
    model versions they registered without an alias are deleted. Returns the ids of the runs marked."""
    import mlflow
    from mlflow.entities import RunStatus

    client = mlflow.MlflowClient()
    host = socket.gethostname()
    marked = []
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=200):
        tags = run.data.tags
        pid = tags.get("churnwise.pid", "")
        if tags.get("churnwise.host") != host or not pid.isdigit():
            continue
        if process_running(int(pid)) and _start_ticks(int(pid)) == tags.get("churnwise.started", ""):
            continue
        client.set_tag(
            run.info.run_id, "churnwise.stopped", f"process {pid} ended without finishing the run (killed)"
        )
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
        for found in client.search_model_versions(f"run_id = '{run.info.run_id}'"):
            version = client.get_model_version(found.name, found.version)  # search results carry no aliases
            if not version.aliases:
                client.delete_model_version(version.name, version.version)
                log.warning(
                    "deleted version %s of %s: its training run was killed before it was published",
                    version.version,
                    version.name,
                )
        marked.append(run.info.run_id)
        log.warning(
            "MLflow run %s (%s) was left running by a killed process: marked failed",
            run.info.run_id,
            run.info.run_name,
        )
    return marked


@contextlib.contextmanager
def tracked_run(run_name: str, tags: dict[str, str] | None = None, *, nested: bool = False) -> Iterator[Any]:
    """An MLflow run that either describes what the stage published or does not stay: started with tags that
    let a later run detect a killed process, ended FINISHED when the block completes, and deleted (with the
    failure logged) when the block raises, so no run describes an output that was not published."""
    import mlflow

    run = mlflow.start_run(run_name=run_name, nested=nested, tags={**(tags or {}), **process_tags()})
    try:
        yield run
    except BaseException:
        try:
            mlflow.end_run(status="FAILED")
            discard_run(run.info.run_id)
            log.info("MLflow run %s deleted: the stage failed before publishing", run.info.run_id)
        except Exception as error:  # the store itself may be what failed
            log.warning(
                "could not remove the unfinished MLflow run %s: %s", run.info.run_id, first_line(error)
            )
        raise
    try:
        mlflow.end_run()
    except Exception as error:  # everything is published; only the run's final status could not be set
        log.warning("MLflow run %s could not be marked finished: %s", run.info.run_id, first_line(error))


def discard_run(run_id: str) -> None:
    """Delete a run that published nothing: the models it logged and every artifact it wrote, then the run
    itself (MLflow keeps a deleted run's record in its trash; `mlflow gc` removes it for good)."""
    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    for model in client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    ):
        get_artifact_repository(model.artifact_location).delete_artifacts()
        client.delete_logged_model(model.model_id)
    get_artifact_repository(run.info.artifact_uri).delete_artifacts()
    client.delete_run(run_id)


def config_params(config: dict[str, Any], skip: tuple[str, ...] = ("features.families",)) -> dict[str, str]:
    """Nested config as dotted keys for MLflow params; `skip` subtrees (e.g. feature SQL) go to artifacts only."""
    flat: dict[str, str] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if name in skip:
                continue
            if isinstance(value, dict):
                walk(value, f"{name}.")
            else:
                text = json.dumps(value) if isinstance(value, list) else str(value)
                flat[re.sub(r"[^A-Za-z0-9_\-. :/]", "_", name)] = text[:6000]

    walk(config, "")
    return flat


@dataclass(frozen=True)
class TrackingSettings:
    """Where runs and models go (`mlflow`): the store, the experiment, new experiments' artifacts, the
    registered model's name."""

    uri: str
    experiment_name: str
    registered_model_name: str
    artifact_location: str | None = None

    @classmethod
    def from_config(cls, mlflow_cfg: Any) -> TrackingSettings:
        """The settings of an `mlflow` config node."""
        return cls(
            str(mlflow_cfg.tracking_uri), str(mlflow_cfg.experiment_name), str(mlflow_cfg.registered_model_name),
            str(mlflow_cfg.artifact_location) if mlflow_cfg.get("artifact_location") else None,
        )  # fmt: skip

    def setup(self) -> str:
        """`setup_mlflow` for these settings; returns the experiment id."""
        return setup_mlflow(self.uri, self.experiment_name, self.artifact_location)

    @property
    def champion_uri(self) -> str:
        """The champion's model URI."""
        return f"models:/{self.registered_model_name}@champion"
