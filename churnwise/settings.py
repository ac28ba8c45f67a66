"""Checks of the settings a stage uses, before it does any work.

Each stage calls `check_settings(cfg, stage)` first: names that become folders, files or table names are
plain names, every output path resolves inside its configured root, numbers are in range and dates exist.
A setting that does not fit raises `ConfigError` naming its key, so the run stops with one line (exit 2) and
nothing is written. Dates are read by `features.dates.config_date`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from features.dates import config_date
from features.errors import ConfigError
from features.labels import LabelWindow
from features.observation import ObservationGrid
from features.postgres import IDENTIFIER as POSTGRES_IDENTIFIER
from features.snapshot import label_period
from features.sql import safe_name

# The stages that read a snapshot's label period (data.label.period_months); generating data does not.
PERIOD_STAGES = ("validate", "features", "train", "tune", "score", "report")

# The packages a config's `_target_` may build objects from: churnwise's own and the estimator libraries.
# A config string never names other code; to build objects of another package, add it here (a code change).
TARGET_PACKAGES = ("features", "models", "decisions", "sklearn", "lightgbm", "xgboost", "catboost")
TARGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def _integer(cfg: DictConfig, key: str, minimum: int, *, optional: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        need = f"a whole number of at least {minimum}" + (" (or null)" if optional else "")
        raise ConfigError(f"{key}: {value!r} is not {need}")


def _number(cfg: DictConfig, key: str, low: float, high: float = math.inf, *, low_open: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"{'above' if low_open else 'at least'} {low:g}" + (
            f" and at most {high:g}" if high < math.inf else ""
        )
        raise ConfigError(f"{key}: {value!r} is not a number {bound}")


def inside_root(cfg: DictConfig, key: str, root_key: str) -> Path:
    """The resolved path of setting `key`, refused when it lies outside the folder of setting `root_key`."""
    path = Path(str(OmegaConf.select(cfg, key))).expanduser().resolve()
    root = Path(str(OmegaConf.select(cfg, root_key))).expanduser().resolve()
    if path != root and root not in path.parents:
        raise ConfigError(
            f"{key}: {OmegaConf.select(cfg, key)} resolves to {path}, outside {root_key} ({root}); outputs stay "
            f"inside their root: choose a folder under it, or move the root ({root_key}=...)"
        )
    return path


def check_targets(node: Any, key: str = "") -> None:
    """Every `_target_` in the config names a class or function of an allowed package (TARGET_PACKAGES)."""
    if isinstance(node, dict):
        for name, value in node.items():
            where = f"{key}.{name}" if key else str(name)
            if name == "_target_":
                text = str(value)
                if not TARGET.match(text) or text.split(".", 1)[0] not in TARGET_PACKAGES:
                    raise ConfigError(
                        f"{where}: {text!r} is not a class of churnwise or of an estimator library "
                        f"({', '.join(TARGET_PACKAGES)}); a config never names other code"
                    )
            else:
                check_targets(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            check_targets(value, f"{key}[{i}]")


def check_settings(cfg: DictConfig, stage: str) -> None:
    """Check the settings `stage` uses (see the module docstring); raise ConfigError naming the first bad key."""
    check_targets(OmegaConf.to_container(cfg, resolve=False))
    safe_name(cfg.data.name, "data.name")
    safe_name(cfg.label.name, "label.name")
    safe_name(cfg.mlflow.registered_model_name, "mlflow.registered_model_name")
    if not str(cfg.mlflow.experiment_name or "").strip():
        raise ConfigError("mlflow.experiment_name: name the MLflow experiment")
    inside_root(cfg, "paths.features_dir", "paths.data_dir")
    if cfg.data.get("kind") == "postgres" and not POSTGRES_IDENTIFIER.match(str(cfg.data.schema)):
        raise ConfigError(
            f"data.schema: {cfg.data.schema!r} is not a plain identifier (letters, digits, _; not starting with a digit)"
        )
    if cfg.data.get("kind") == "snapshot" and stage in PERIOD_STAGES:
        label_period(cfg.data.get("label") or {})
        LabelWindow.from_config(OmegaConf.to_container(with_label_period(cfg).label, resolve=True))
    elif cfg.data.get("kind") != "snapshot":  # a snapshot's window is its period (with_label_period)
        LabelWindow.from_config(OmegaConf.to_container(cfg.label, resolve=True))
    if cfg.data.get("chunk_rows") is not None:
        _integer(cfg, "data.chunk_rows", 1)
    for key in ("observation.start", "observation.end", "observation.data_end"):
        config_date(OmegaConf.select(cfg, key), key)
    ObservationGrid.from_config(OmegaConf.to_container(cfg.observation, resolve=True))
    _integer(cfg, "engine.dates_per_batch", 1)
    _integer(cfg, "engine.threads", 1, optional=True)
    if stage in ("score", "report"):
        for key in ("score.output_dir", "score.database"):
            inside_root(cfg, key, "paths.output_dir")
        safe_name(cfg.score.table, "score.table")
        config_date(cfg.score.as_of, "score.as_of")
        model_uri = cfg.score.model_uri
        if model_uri is not None and not str(model_uri).startswith(("models:/", "runs:/")):
            raise ConfigError(
                f"score.model_uri: {model_uri!r} is not a model URI; use models:/<name>@<alias>, "
                f"models:/<name>/<version> or null (the champion)"
            )
    if stage == "score":
        _integer(cfg, "score.chunk_rows", 1)
        _integer(cfg, "score.max_input_lag_days", 0, optional=True)
        _number(cfg, "actions.budget", 0.0)
        _number(cfg, "actions.exact_time_limit_seconds", 0.0, low_open=True)
        _number(cfg, "actions.low_risk_below", 0.0, 1.0)
        _number(cfg, "score.out_of_range_warn_share", 0.0, 1.0)
    if stage == "report":
        inside_root(cfg, "report.output_dir", "paths.output_dir")
        months = cfg.report.period_months
        if months not in (1, 2, 3, 4, 6, 12):
            raise ConfigError(
                f"report.period_months: {months!r} does not divide a year (1, 2, 3, 4, 6 or 12)"
            )
        _integer(cfg, "report.min_customers", 1)
        _integer(cfg, "report.complaint_lookback_days", 1)
        for i, improvement in enumerate(cfg.report.improvements or []):
            if not isinstance(improvement, int | float) or not 0 < improvement < 1:
                raise ConfigError(f"report.improvements[{i}]: {improvement!r} is not a share between 0 and 1")
    if stage in ("train", "tune"):
        _integer(cfg, "seed", 0)


def with_label_period(cfg: DictConfig) -> DictConfig:
    """The config a stage runs on. For a snapshot table (data=snapshot), a copy whose label carries the period
    its churn column covers, from `data.label.period_months` (or the default `data.label.assume` accepts):
    `label.horizon_months` (or `label.horizon_days` for a fraction of a month), `label.period_months` and
    `label.period_assumed`, so retention,
    lifetime and lifetime value use it. Any other config is returned as it is."""
    if cfg.data.get("kind") != "snapshot" or cfg.label.get("population") != "snapshot":
        return cfg  # (a dated label on a snapshot is refused by the stage, features.build.snapshot_spec)
    period = label_period(cfg.data.get("label") or {})
    configured = cfg.label.get("horizon_days")
    if configured is not None and round(float(configured)) != round(period.days):
        raise ConfigError(
            f"label.horizon_days: {configured} days, but data.label.period_months says {period.describe()}: the "
            f"period of a snapshot's churn column is set by data.label.period_months alone (a period of N days is "
            f"N / 30.44 months); leave label.horizon_days unset"
        )
    months = cfg.label.get("horizon_months")
    if months is not None and float(months) != float(period.months):
        raise ConfigError(
            f"label.horizon_months: {cfg.label.horizon_months}, but the period of a snapshot's churn column is set "
            f"by data.label.period_months alone ({period.describe()}); leave label.horizon_months unset"
        )
    derived = cfg.copy()
    with open_dict(derived):
        # The label window (features.labels.LabelWindow): whole months as calendar months (N x 30.44 days
        # wherever one number of days is needed), a fraction of a month as its nearest number of days.
        whole = float(period.months).is_integer()
        derived.label.horizon_months = int(period.months) if whole else None
        derived.label.horizon_days = None if whole else max(1, round(period.days))
        derived.label.period_months = period.months
        derived.label.period_assumed = period.assumed
    return derived
