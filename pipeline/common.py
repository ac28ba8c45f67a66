"""Helpers shared by the stage entry points: running a stage, data loading, MLflow set-up, provenance."""

from __future__ import annotations

import functools
import json
import logging
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import duckdb
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from features.catalog import FamilyAvailability, feature_availability, render_availability
from features.errors import ConfigError
from features.validation import DataContractError, ValidatedTables, load_tables
from models.errors import DecisionConfigError, SplitError

log = logging.getLogger(__name__)
T = TypeVar("T")


def stage(func: Callable[[DictConfig], T]) -> Callable[[DictConfig], T]:
    """Run a stage: plots to files only, and input and configuration errors as a clear message and exit code 2,
    no traceback."""

    @functools.wraps(func)
    def wrapper(cfg: DictConfig) -> T:
        import matplotlib

        matplotlib.use("Agg")  # a stage's plots are files (logged to MLflow), never windows
        try:
            return func(cfg)
        except (DataContractError, ConfigError, SplitError, DecisionConfigError, FileNotFoundError) as error:
            log.error("%s", error)
            raise SystemExit(2) from error
        except MissingMandatoryValue as error:
            log.error(
                "%s: set %s=... on the command line or in conf/local",
                str(error).splitlines()[0],
                error.full_key,
            )
            raise SystemExit(2) from error

    return wrapper


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
    """A DuckDB connection with the configured memory limit, threads and spill folder."""
    settings: dict[str, Any] = {}
    if cfg.engine.get("memory_limit"):
        settings["memory_limit"] = str(cfg.engine.memory_limit)
    if cfg.engine.get("threads"):
        settings["threads"] = int(cfg.engine.threads)
    if cfg.engine.get("temp_directory"):
        settings["temp_directory"] = str(Path(cfg.engine.temp_directory).resolve())
    return duckdb.connect(config=settings)


def load_inputs(cfg: DictConfig) -> tuple[ValidatedTables, list[FamilyAvailability]]:
    """Validate the configured input tables, log what was found and which feature families can be built.

    With data=postgres the tables are first copied from the database into Parquet under `data.path`."""
    if cfg.data.get("kind") == "postgres":
        copy_from_postgres(cfg)
    tables = load_tables(
        Path(cfg.data.path),
        csv_delimiter=cfg.data.csv_delimiter,
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
    """The resolved config to log and record, with the password of every `uri` setting replaced by ***."""
    from features.postgres import redact

    def scrub(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: scrub(v, str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return redact(node) if key.endswith("uri") and isinstance(node, str) else node

    return scrub(OmegaConf.to_container(cfg, resolve=True))


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
    """Point MLflow at the configured store and experiment; return the experiment id."""
    import mlflow  # imported here: mlflow is slow to import and not every stage needs it

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    name = cfg.mlflow.experiment_name
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
        return experiment.experiment_id
    artifact_location = None
    if cfg.mlflow.get("artifact_location"):
        folder = Path(cfg.mlflow.artifact_location).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        artifact_location = folder.as_uri()
    experiment_id = mlflow.create_experiment(name, artifact_location=artifact_location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


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
