"""The public Python API: every stage as one call on a composed config, for notebooks, scripts and the
entry points under `pipeline/` (each of which is a Hydra `main` around one of these).

    from churnwise.api import load_config, train, score
    cfg = load_config("debug=default")
    trained = train(cfg)

Each call checks the settings it uses first (`churnwise.settings`), makes the demo data when the config asks
for it and finds none (`data.generate_if_missing`: the one place data is made as a side effect), and then
wires the library calls; the config is unpacked here, the libraries take what they need.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from churnwise.settings import check_settings, with_label_period
from churnwise.stage import project_config

if TYPE_CHECKING:  # the libraries load when a stage runs, not when the API is imported
    from analytics.report import ReportResult
    from decisions.readout import ReadoutResult
    from decisions.scoring import ScoreResult
    from features.build import FeatureTableResult
    from features.catalog import FamilyAvailability
    from features.demo.dated import DemoSummary
    from features.demo.telco import TelcoSummary
    from features.snapshot import SnapshotPlan
    from features.validation import ValidatedTables
    from models.promotion import PromotionDecision
    from models.training import TrainResult
    from models.tuning import TuneResult

log = logging.getLogger(__name__)

__all__ = [
    "build_features", "clean_data", "ensure_demo_data", "generate", "load_config", "promote", "readout", "report",
    "score", "train", "tune", "validate",
]  # fmt: skip


def _prepare(cfg: DictConfig, stage: str, *, tracking: bool = True, demo_data: bool = True) -> DictConfig:
    """What every stage does before its work: its settings checked, the tracking store checked (one that
    cannot be used stops the run before any work), the demo data made when the config asks for it; returns
    the config the stage runs on (a snapshot's label with its period, `churnwise.settings.with_label_period`)."""
    check_settings(cfg, stage)
    if tracking:
        from models.tracking import check_tracking_store

        check_tracking_store(str(cfg.mlflow.tracking_uri))
    if demo_data:
        ensure_demo_data(cfg)
    return with_label_period(cfg)


def load_config(*overrides: str, start: Path | None = None) -> DictConfig:
    """The project's config, composed as the stages compose it (see `churnwise.stage.project_config`)."""
    return project_config(*overrides, start=start)


def generate(cfg: DictConfig, *, progress: bool = True) -> DemoSummary | TelcoSummary:
    """`make data`: generate the configured demo data at the configured paths (replacing what the generator
    wrote there, refusing a folder of other files)."""
    from features.demo.configured import generate as generate_configured

    check_settings(cfg, "generate")
    return generate_configured(cfg, progress=progress)


def ensure_demo_data(cfg: DictConfig) -> bool:
    """Generate the demo data when the config uses it (`data.generate_if_missing`) and it is missing or was
    made from another spec; returns whether data was generated."""
    from features.demo.configured import ensure_demo_data as ensure

    return ensure(cfg)


def validate(cfg: DictConfig) -> tuple[ValidatedTables, list[FamilyAvailability]] | SnapshotPlan:
    """`make validate`: the inputs checked against the data contract (a snapshot against its config)."""
    from features.build import is_snapshot
    from features.checking import validate as validate_tables
    from features.checking import validate_snapshot

    cfg = _prepare(cfg, "validate", tracking=False)
    return validate_snapshot(cfg) if is_snapshot(cfg) else validate_tables(cfg)


def build_features(cfg: DictConfig) -> FeatureTableResult:
    """`make features`: the point-in-time feature table with its labels, and its manifest."""
    from features.build import build_features as build

    cfg = _prepare(cfg, "features", tracking=False)
    return build(cfg)


def train(cfg: DictConfig) -> TrainResult:
    """`make train`: features, then a model trained, calibrated, evaluated, tracked and registered as
    `challenger`, then the promotion gate (unless `promotion.auto` is false)."""
    from features.build import build_features as build
    from models.training import summary_table
    from models.training import train as train_model

    cfg = _prepare(cfg, "train")
    trained = train_model(cfg, build(cfg))
    if cfg.promotion.get("auto", True):
        trained = dataclasses.replace(
            trained, promoted=promote(cfg, trained.test_rows, trained.split_kind).promoted
        )
    log.info("%s", summary_table(trained, cfg))
    return trained


def tune(cfg: DictConfig) -> TuneResult:
    """`make tune`: an Optuna search over the model's parameters, then the best trained as `train` does."""
    from features.build import build_features as build
    from models.tuning import tune as search
    from models.tuning import tuned_config

    cfg = _prepare(cfg, "tune")
    found = search(cfg, build(cfg))
    return dataclasses.replace(found, trained=train(tuned_config(cfg, found.best_params)))


def promote(cfg: DictConfig, test_rows: Any = None, split_kind: str | None = None) -> PromotionDecision:
    """`make promote`: compare challenger and champion on the latest test slice (with K-fold, out-of-fold on
    the same folds), or on `test_rows` of a `split_kind`, and move the champion alias when the challenger is
    better."""
    from models.promotion import promote as gate

    return gate(with_label_period(cfg), test_rows=test_rows, split_kind=split_kind)


def score(cfg: DictConfig) -> ScoreResult:
    """`make score`: score the active customers with the champion and decide what to do about each one."""
    from decisions.scoring import score as score_customers

    # no demo data made: a model to score with was trained on data
    cfg = _prepare(cfg, "score", demo_data=False)
    return score_customers(cfg)


def readout(cfg: DictConfig) -> ReadoutResult:
    """`make readout`: for each past scoring run whose horizon has passed, treated against control per action
    (realised churn and margin, with intervals), value delivered against value claimed; files and MLflow run."""
    from churnwise.settings import inside_root
    from decisions.readout import readout as read_out

    # no demo data made: there is nothing to read out without scoring runs on data
    cfg = _prepare(cfg, "readout", demo_data=False)
    inside_root(cfg, "readout.output_dir", "paths.output_dir")
    return read_out(cfg)


def report(cfg: DictConfig) -> ReportResult:
    """`make report`: the retention report (HTML, plots, tables) and its MLflow run."""
    from analytics.report import report as build_and_publish

    cfg = _prepare(cfg, "report")
    return build_and_publish(cfg)


def clean_data(cfg: DictConfig) -> list[Path]:
    """`make clean-data`: remove the data churnwise generated (only files it recorded writing) and the local
    MLflow store; return the data files removed."""
    from features.publish import remove_written

    data_dir = Path(cfg.paths.data_dir)
    removed = remove_written(data_dir)
    store, artifacts = Path(cfg.paths.mlflow_db), Path(cfg.paths.artifact_dir)
    if store.is_file():
        store.unlink()
    if artifacts.is_dir():
        shutil.rmtree(artifacts)
    kept = sorted(p for p in data_dir.rglob("*") if p.is_file()) if data_dir.is_dir() else []
    log.info(
        "removed %d generated data file(s) under %s and the MLflow store %s%s",
        len(removed), data_dir, store,
        f"; kept {len(kept)} file(s) churnwise did not write, e.g. {kept[0]}" if kept else "",
    )  # fmt: skip
    return removed
