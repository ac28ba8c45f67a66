"""The Hydra configuration composes, and every config group's options instantiate or resolve."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from features.demo import DemoSpec

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in {"local", "hydra"})


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "override",
    [f"{group}={option}" for group in GROUPS for option in options(group)],
)
def test_every_config_option_composes_and_resolves(
    make_cfg: Callable[..., DictConfig], override: str
) -> None:
    cfg = make_cfg(override, debug=False)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict) and resolved["paths"]["data_dir"].endswith("/data")


def test_demo_generator_is_built_from_target(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    spec = instantiate(make_cfg().data.generator)
    assert isinstance(spec, DemoSpec)
    assert spec.n_customers == 1500  # debug shrinks the data
    assert make_cfg(debug=False).data.generator.n_customers == 20_000


def test_paths_follow_root(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    cfg = make_cfg()
    assert cfg.data.path == f"{tmp_path}/data/demo_debug"
    assert cfg.mlflow.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"


def test_required_groups_present() -> None:
    assert {"paths", "data", "mlflow", "debug", "features"} <= set(GROUPS)
