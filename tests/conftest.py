"""Shared fixtures: the real Hydra config, composed and shrunk, writing into a temporary project root."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
PROJECT_ROOT = CONF_DIR.parent


def compose_config(root: Path, *overrides: str, debug: bool = True) -> DictConfig:
    """`conf/config.yaml` with paths under `root`, `debug=default` unless told otherwise, plus overrides."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            config_name="config",
            overrides=[f"paths.root_dir={root}", *(["debug=default"] if debug else []), *overrides],
        )


@pytest.fixture
def make_cfg(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """Compose `conf/config.yaml` with `debug=default`, paths under tmp_path, plus any overrides."""

    def _compose(*overrides: str, debug: bool = True, root: Path | None = None) -> DictConfig:
        return compose_config(root or tmp_path, *overrides, debug=debug)

    yield _compose
    GlobalHydra.instance().clear()
