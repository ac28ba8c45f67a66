"""Stage: remove the data churnwise generated (`python -m pipeline.clean`, `make clean-data`).

Removes the files churnwise wrote under `paths.data_dir` (demo data, feature tables, PostgreSQL copies, the
synthetic telecom table: each listed in its folder's record of files, or marked beside it) and the folders
left empty, then the local MLflow store (`paths.mlflow_db`, `paths.artifact_dir`). A file of yours under
`data/` (your copy of the public telecom table, an export) is never removed.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import hydra
from omegaconf import DictConfig

from features.publish import remove_written
from pipeline.common import stage

log = logging.getLogger(__name__)


def clean_data(cfg: DictConfig) -> list[Path]:
    """Remove the generated data and the local MLflow store; return the data files removed."""
    removed = remove_written(Path(cfg.paths.data_dir))
    store, artifacts = Path(cfg.paths.mlflow_db), Path(cfg.paths.artifact_dir)
    if store.is_file():
        store.unlink()
    if artifacts.is_dir():
        shutil.rmtree(artifacts)
    kept = (
        sorted(p for p in Path(cfg.paths.data_dir).rglob("*") if p.is_file())
        if Path(cfg.paths.data_dir).is_dir()
        else []
    )
    log.info(
        "removed %d generated data file(s) under %s and the MLflow store %s%s",
        len(removed), cfg.paths.data_dir, store,
        f"; kept {len(kept)} file(s) churnwise did not write, e.g. {kept[0]}" if kept else "",
    )  # fmt: skip
    return removed


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    clean_data(cfg)


if __name__ == "__main__":
    main()
