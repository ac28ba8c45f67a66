"""Composing the project's real Hydra config for tests (imported by conftest.py files and test modules)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
PROJECT_ROOT = CONF_DIR.parent
# Debug data is too small for the model to learn the complaint effect: the scoring and report tests train on
# 4,000 customers, a fifth of the demo, with the minimum counts scaled down with it (leaves of 100, not 400,
# customers; categorical levels and sides of a categorical cut of 25 and 50 rows, not 100 and 200), which
# takes about 15 s.
SHRUNK = (
    "evaluation.baseline=null", "data.generator.n_customers=4000", "model.min_child_samples=100",
    "encoding.min_level_rows=25", "model.min_data_per_group=50", "model.cat_smooth=12",
)  # fmt: skip


def compose_config(root: Path, *overrides: str, debug: bool = True) -> DictConfig:
    """`conf/config.yaml` with paths under `root`, `debug=default` unless told otherwise, plus overrides."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            config_name="config",
            overrides=[f"paths.root_dir={root}", *(["debug=default"] if debug else []), *overrides],
        )


def outputs_for(cfg: DictConfig, tmp_path: Path, name: str = "out") -> Path:
    """A folder of a test's own under the project's outputs (outputs stay inside paths.output_dir)."""
    return Path(cfg.paths.output_dir) / "tests" / tmp_path.name / name
