"""A project trained once per test session on small demo data, shared by the scoring and report tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from config_helpers import SHRUNK, compose_config
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig


@pytest.fixture(scope="session")
def decision_project(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[DictConfig, Callable[..., DictConfig], Path]]:
    """(config, a function composing the config with more overrides, the project root) after `train`.

    Without uplift models (uplift.enabled=false): the tests on it check the documented rules of the assumed
    effects (save rates, conversion rates, priors); learned effects are tested on their own."""
    from churnwise.api import train

    root = tmp_path_factory.mktemp("decisions")

    def make(*overrides: str) -> DictConfig:
        return compose_config(root, *SHRUNK, "uplift.enabled=false", *overrides)

    cfg = make()
    train(cfg)
    yield cfg, make, root
    GlobalHydra.instance().clear()
