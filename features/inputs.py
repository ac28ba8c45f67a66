"""The configured inputs of a stage: a DuckDB connection set up from `engine`, and the contract tables of
`data` read, validated and described (copied from PostgreSQL first with data=postgres)."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from omegaconf import DictConfig, OmegaConf

from features.catalog import FamilyAvailability, feature_availability, render_availability
from features.errors import ConfigError
from features.publish import process_folder_name, remove_leftovers
from features.validation import ValidatedTables, check_campaign_actions, load_tables

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    """How DuckDB runs: memory limit, threads and the folder for spill files and scoring chunks (`engine`)."""

    memory_limit: str | None = None
    threads: int | None = None
    temp_directory: Path | None = None

    @classmethod
    def from_config(cls, engine: Any) -> EngineSettings:
        """The settings of an `engine` config node."""
        return cls(
            str(engine.memory_limit) if engine.get("memory_limit") else None,
            int(engine.threads) if engine.get("threads") else None,
            Path(engine.temp_directory) if engine.get("temp_directory") else None,
        )


def connect(engine: EngineSettings) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the configured memory limit, threads and a spill folder of this process."""
    settings: dict[str, Any] = {}
    if engine.memory_limit:
        settings["memory_limit"] = engine.memory_limit
    if engine.threads:
        settings["threads"] = engine.threads
    if engine.temp_directory is not None:
        settings["temp_directory"] = str(process_temp_dir(engine.temp_directory))
    return duckdb.connect(config=settings)


def process_temp_dir(root: Path) -> Path:
    """This process's own folder under `root` (DuckDB's spill files, scoring chunks), removed when the process
    ends; folders that killed runs left there are removed first."""
    root = Path(root).resolve()
    own = root / process_folder_name(os.getpid())
    remove_leftovers(root)
    if not own.exists():
        own.mkdir(parents=True, exist_ok=True)
        atexit.register(shutil.rmtree, own, True)
    return own


def load_inputs(cfg: DictConfig, *, copy: bool = True) -> tuple[ValidatedTables, list[FamilyAvailability]]:
    """Validate the configured input tables, log what was found and which feature families can be built.

    With data=postgres the tables are first copied from the database into Parquet under `data.path` (unless
    `copy` is false: a later stage of the same run reads the copy the features were built from)."""
    from features.contract import ContractSettings

    settings = ContractSettings.from_config(OmegaConf.to_container(cfg.contract, resolve=True))
    if cfg.data.get("kind") == "postgres" and copy:
        copy_from_postgres(cfg)
    tables = load_tables(
        Path(cfg.data.path),
        csv_delimiter=cfg.data.csv_delimiter,
        csv_encoding=cfg.data.get("csv_encoding", "utf-8"),
        settings=settings,
        con=connect(EngineSettings.from_config(cfg.engine)),
        mapping=OmegaConf.to_container(cfg.data.mapping, resolve=True) if cfg.data.get("mapping") else None,
        derive_customers=bool(cfg.data.get("derive_customers", False)),
    )
    if cfg.get("actions") is not None and cfg.actions.get("catalogue") is not None:
        check_campaign_actions(tables, list(cfg.actions.catalogue))  # a campaign names a catalogue action
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
