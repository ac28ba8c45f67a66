"""Provenance of a run: the resolved config with every secret hidden, and the git commit of the code."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from features.redaction import redacted_config, secret_values


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config to log and record, with every secret hidden: passwords in URIs and in settings
    named like a secret replaced by ***, wherever they appear."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    return redacted_config(plain, secret_values(plain))


def resolved_yaml(cfg: DictConfig) -> str:
    """`resolved_config` as YAML (the `resolved_config.yaml` artifact of every run)."""
    return OmegaConf.to_yaml(OmegaConf.create(resolved_config(cfg)))


def git_commit(cwd: Path | None = None) -> tuple[str, bool]:
    """The current git commit and whether the work tree has uncommitted changes ('unknown' outside git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=cwd,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return commit, dirty
