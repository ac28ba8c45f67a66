"""Shared fixtures: the real Hydra config, composed and shrunk, writing into a temporary project root."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from config_helpers import compose_config
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig


@pytest.fixture
def make_cfg(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """Compose `conf/config.yaml` with `debug=default`, paths under tmp_path, plus any overrides."""

    def _compose(*overrides: str, debug: bool = True, root: Path | None = None) -> DictConfig:
        return compose_config(root or tmp_path, *overrides, debug=debug)

    yield _compose
    GlobalHydra.instance().clear()
