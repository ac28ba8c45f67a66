"""The Hydra configuration composes, and every config group's options instantiate or resolve."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from features.demo.dated import DemoSpec

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


def test_decision_configs_build_a_policy_whose_rules_bind_to_the_default_features(
    make_cfg: Callable[..., DictConfig],
) -> None:
    from decisions.plan import duckdb_type
    from decisions.policy import decision_policy
    from features.engine import plan_every_feature

    cfg = make_cfg(debug=False)
    policy = decision_policy(cfg)
    assert [a.kind for a in policy.catalogue].count("ladder") == 4
    assert "service_recovery_call" in policy.action_names
    assert policy.ladder.rungs == ("prospect", "customer", "client", "supporter", "advocate", "partner")
    plan = plan_every_feature(OmegaConf.to_container(cfg.features, resolve=True), ["login", "usage"])
    policy.check({f.name: duckdb_type(f) for f in plan.features})  # raises naming any rule that does not bind
    # every feature of the default set belongs to a named reason family
    assert all(policy.reasons.family_of(f.name) != policy.reasons.other_key for f in plan.features)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "+actions.catalogue.discount.save_rates.price=0.3",
            "actions.catalogue.discount: .*unexpected keyword argument 'save_rates'",
        ),
        (
            "actions.catalogue.discount.save_rate.default=2",
            r"actions.catalogue.discount.save_rate: rates must be in \[0, 1\]",
        ),
        (
            "~actions.catalogue.discount.cost",
            "actions.catalogue.discount: .*missing 1 required positional argument: 'cost'",
        ),
        ("actions.selection=best", "actions.selection: 'best' is not one of joint, exact, greedy"),
        ("+ladder.rules.fan='tenure_days > 1'", r"ladder.rules: \['fan'\] are not rungs"),
    ],
)
def test_a_malformed_decision_config_names_its_key(
    make_cfg: Callable[..., DictConfig], override: str, message: str
) -> None:
    from decisions.errors import DecisionConfigError
    from decisions.policy import decision_policy

    with pytest.raises(DecisionConfigError, match=message):
        decision_policy(make_cfg(override))
