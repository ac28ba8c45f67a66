"""Helpers shared by the stage entry points: running a stage, data loading, MLflow set-up, provenance."""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import duckdb
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from features.catalog import FamilyAvailability, feature_availability, render_availability
from features.errors import ConfigError
from features.publish import PublishError, process_folder_name, process_running, remove_leftovers
from features.redaction import install_secret_filter, redact, redacted_config, scrub, secret_values
from features.validation import DataContractError, ValidatedTables, load_tables
from models.errors import DecisionConfigError, SplitError

log = logging.getLogger(__name__)
T = TypeVar("T")


CLEAR_ERRORS = (
    DataContractError,
    ConfigError,
    SplitError,
    DecisionConfigError,
    FileNotFoundError,
    PublishError,
)
TRACKING_TIMEOUT_S = 5  # how long a tracking server may take to accept a connection before the run stops


def stage(func: Callable[[DictConfig], T]) -> Callable[[DictConfig], T]:
    """Run a stage: secrets kept out of every console line and log file, plots to files only, the redacted
    config beside the log, and input and configuration errors as one clear message and exit code 2."""

    @functools.wraps(func)
    def wrapper(cfg: DictConfig) -> T:
        import matplotlib

        matplotlib.use("Agg")  # a stage's plots are files (logged to MLflow), never windows
        try:
            secrets = secret_values(OmegaConf.to_container(cfg, resolve=True))
        except OmegaConfBaseException:
            secrets = secret_values(OmegaConf.to_container(cfg, resolve=False))
        install_secret_filter(secrets)
        try:
            _write_run_config(cfg)
            return func(cfg)
        except CLEAR_ERRORS as error:
            log.error("%s", error)
            raise SystemExit(2) from None
        except MissingMandatoryValue as error:
            log.error(
                "%s: set %s=... on the command line or in conf/local",
                str(error).splitlines()[0],
                error.full_key,
            )
            raise SystemExit(2) from None
        except OmegaConfBaseException as error:
            key = getattr(error, "full_key", None)
            log.error("%s%s", f"{key}: " if key else "", str(error).splitlines()[0])
            raise SystemExit(2) from None
        except Exception as error:
            if _tracking_failure(error):
                log.error(
                    "mlflow.tracking_uri %s: MLflow failed (%s); nothing was published",
                    redact(str(OmegaConf.select(cfg, "mlflow.tracking_uri"))), _first_line(error),
                )  # fmt: skip
                raise SystemExit(2) from None
            # A bug, not a bad input: the traceback helps to fix it (the secret filter scrubs it). Caught here,
            # so Hydra does not print the command line's overrides, which may hold a URI.
            log.exception("churnwise stopped on an unexpected error; nothing further was published")
            raise SystemExit(1) from None

    return wrapper


def _write_run_config(cfg: DictConfig) -> None:
    """The resolved, redacted config in the Hydra run folder (Hydra's own copies are off: they keep secrets)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    folder = Path(HydraConfig.get().runtime.output_dir)
    with contextlib.suppress(OSError, OmegaConfBaseException):
        (folder / "resolved_config.yaml").write_text(resolved_yaml(cfg))


def project_config(*overrides: str, start: Path | None = None) -> DictConfig:
    """The project's Hydra config composed as the stages compose it, for notebooks and scripts.

    The project is the first folder holding `conf/config.yaml` from `start` (default: the working directory)
    upwards; `paths.root_dir` is that folder unless CHURNWISE_HOME is set; CHURNWISE_OVERRIDES adds Hydra
    overrides (e.g. "debug=default"), before `overrides`.
    """
    import os
    import shlex

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    here = (start or Path.cwd()).resolve()
    root = next((p for p in (here, *here.parents) if (p / "conf" / "config.yaml").is_file()), None)
    if root is None:
        raise FileNotFoundError(f"no churnwise project (conf/config.yaml) in {here} or above it")
    extra = [] if os.environ.get("CHURNWISE_HOME") else [f"paths.root_dir={root}"]
    extra += shlex.split(os.environ.get("CHURNWISE_OVERRIDES", ""))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[*extra, *overrides])


def connect(cfg: DictConfig) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the configured memory limit, threads and a spill folder of this process."""
    settings: dict[str, Any] = {}
    if cfg.engine.get("memory_limit"):
        settings["memory_limit"] = str(cfg.engine.memory_limit)
    if cfg.engine.get("threads"):
        settings["threads"] = int(cfg.engine.threads)
    if cfg.engine.get("temp_directory"):
        settings["temp_directory"] = str(process_temp_dir(cfg))
    return duckdb.connect(config=settings)


def process_temp_dir(cfg: DictConfig) -> Path:
    """This process's own folder under `engine.temp_directory` (DuckDB's spill files, scoring chunks), removed
    when the process ends; folders that killed runs left there are removed first."""
    root = Path(cfg.engine.temp_directory).resolve()
    own = root / process_folder_name(os.getpid())
    remove_leftovers(root)
    if not own.exists():
        own.mkdir(parents=True, exist_ok=True)
        atexit.register(shutil.rmtree, own, True)
    return own


def load_inputs(cfg: DictConfig) -> tuple[ValidatedTables, list[FamilyAvailability]]:
    """Validate the configured input tables, log what was found and which feature families can be built.

    With data=postgres the tables are first copied from the database into Parquet under `data.path`."""
    from features.contract import ContractSettings

    settings = ContractSettings.from_config(OmegaConf.to_container(cfg.contract, resolve=True))
    if cfg.data.get("kind") == "postgres":
        copy_from_postgres(cfg)
    tables = load_tables(
        Path(cfg.data.path),
        csv_delimiter=cfg.data.csv_delimiter,
        csv_encoding=cfg.data.get("csv_encoding", "utf-8"),
        settings=settings,
        con=connect(cfg),
        mapping=OmegaConf.to_container(cfg.data.mapping, resolve=True) if cfg.data.get("mapping") else None,
        derive_customers=bool(cfg.data.get("derive_customers", False)),
    )
    availability = feature_availability(OmegaConf.to_container(cfg.features.families), tables.report.present)
    log.info("%s", tables.report.render())
    log.info("%s", render_availability(availability))
    return tables, availability


def copy_from_postgres(cfg: DictConfig) -> dict[str, Path]:
    """Copy the contract tables (under their mapped names) of `data.schema` into Parquet files in `data.path`."""
    from features.contract import CONTRACT
    from features.mapping import parse_mapping, sources
    from features.postgres import export_tables

    if not cfg.data.get("uri"):
        raise ConfigError(
            "data.uri: no PostgreSQL connection URI; set the environment variable CHURNWISE_PG_URI, or data.uri "
            "in conf/local/default.yaml (git-ignored), e.g. postgresql://user:password@host:5432/database"
        )
    mapped = sources(parse_mapping(OmegaConf.to_container(cfg.data.mapping, resolve=True) or {}))
    names = [mapped.get(table, table) for table in CONTRACT.table_names]
    return export_tables(
        str(cfg.data.uri), Path(cfg.data.path), schema=str(cfg.data.schema), tables=names,
        chunk_rows=int(cfg.data.get("chunk_rows", 50_000)),
    )  # fmt: skip


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config to log and record, with every secret hidden: passwords in URIs and in settings
    named like a secret replaced by ***, wherever they appear."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    return redacted_config(plain, secret_values(plain))


def resolved_yaml(cfg: DictConfig) -> str:
    """`resolved_config` as YAML (the `resolved_config.yaml` artifact of every run)."""
    return OmegaConf.to_yaml(OmegaConf.create(resolved_config(cfg)))


def git_commit(cwd: Path | None = None) -> tuple[str, bool]:
    """The current git commit and whether the work tree has uncommitted changes ('unknown' outside git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=cwd,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return commit, dirty


def setup_mlflow(cfg: DictConfig) -> str:
    """Point MLflow at the configured store and experiment, after checking that the store answers and can be
    written; mark runs of killed jobs failed. Returns the experiment id; ConfigError names the key at fault."""
    import mlflow  # imported here: mlflow is slow to import and not every stage needs it

    uri = str(cfg.mlflow.tracking_uri)
    check_tracking_store(uri)
    # A server that stops answering mid-run: a few quick retries, not MLflow's default of minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    if uri.startswith("sqlite:///"):
        sqlite_path(uri).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    name = cfg.mlflow.experiment_name
    with tracking_errors(uri):
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is not None:
            mlflow.set_experiment(experiment_id=experiment.experiment_id)
            mark_killed_runs_failed(experiment.experiment_id)
            return experiment.experiment_id
        artifact_location = None
        if cfg.mlflow.get("artifact_location"):
            folder = Path(cfg.mlflow.artifact_location).resolve()
            folder.mkdir(parents=True, exist_ok=True)
            artifact_location = folder.as_uri()
        experiment_id = mlflow.create_experiment(name, artifact_location=artifact_location)
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
            f"{key} {redact(uri)}: it does not answer as an MLflow tracking server ({_first_line(error)}); "
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
        if not (isinstance(error, OSError) or _tracking_failure(error)):
            raise
        raise ConfigError(f"{key} {redact(uri)}: the tracking store failed: {_first_line(error)}") from None


def _tracking_failure(error: BaseException) -> bool:
    """Whether an error comes from the tracking store (MLflow, its database or its server)."""
    seen: BaseException | None = error
    while seen is not None:
        if type(seen).__module__.split(".")[0] in ("mlflow", "sqlalchemy", "requests", "urllib3", "sqlite3"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_line(error: BaseException) -> str:
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
                "could not remove the unfinished MLflow run %s: %s", run.info.run_id, _first_line(error)
            )
        raise
    try:
        mlflow.end_run()
    except Exception as error:  # everything is published; only the run's final status could not be set
        log.warning("MLflow run %s could not be marked finished: %s", run.info.run_id, _first_line(error))


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


def load_registered_model(model_uri: str, key: str = "score.model_uri") -> Any:
    """The pyfunc model at `model_uri`, or ConfigError when its artifacts cannot be read (moved or deleted)."""
    import mlflow

    try:
        return mlflow.pyfunc.load_model(model_uri)
    except Exception as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(
            f"{key} {model_uri}: the model's files cannot be read ({_first_line(error)}); its artifacts were moved "
            f"or deleted: restore them, or train and register a model again (make train)"
        ) from None


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
