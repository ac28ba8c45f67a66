"""The model registry: resolving a registered version and its training manifest, loading it, and
registering new versions with the alias `challenger` (the churn model and its effects bundle: all or none),
and moving an alias on several models together."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.errors import ConfigError
from features.redaction import redact
from models.tracking import first_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model version, its training run and the feature manifest it was trained with."""

    uri: str
    version: str
    run_id: str
    manifest: dict[str, Any]


def registered_model(model_uri: str) -> RegisteredModel:
    """Resolve `models:/name@alias` or `models:/name/version` and fetch its training feature manifest."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    name, _, ref = model_uri.removeprefix("models:/").partition("@")
    try:
        if ref:
            version = client.get_model_version_by_alias(name, ref)
        else:
            name, _, number = model_uri.removeprefix("models:/").partition("/")
            version = client.get_model_version(name, number)
    except MlflowException as error:
        raise ConfigError(
            f"score.model_uri {model_uri}: no such registered model version in {redact(mlflow.get_tracking_uri())} "
            f"({error.message.splitlines()[0]}); run `make train` first or point score.model_uri at one"
        ) from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(version.run_id, "run_info/feature_manifest.json", tmp)
        except (MlflowException, OSError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(
                f"model {model_uri} (version {version.version}) has no feature manifest that can be read in its "
                f"training run {version.run_id} (run_info/feature_manifest.json: {reason}): only models trained by "
                f"`make train` can rebuild their features for scoring; if it was, its artifacts were moved or deleted"
            ) from None
        manifest = json.loads(Path(path).read_text())
    return RegisteredModel(model_uri, str(version.version), version.run_id, manifest)


def load_registered_model(model_uri: str, key: str = "score.model_uri") -> Any:
    """The pyfunc model at `model_uri`, or ConfigError when its artifacts cannot be read (moved or deleted)."""
    import mlflow

    try:
        return mlflow.pyfunc.load_model(model_uri)
    except Exception as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(
            f"{key} {model_uri}: the model's files cannot be read ({first_line(error)}); its artifacts were moved "
            f"or deleted: restore them, or train and register a model again (make train)"
        ) from None


def register_challenger(model_uri: str, name: str) -> Any:
    """Register the model and give it the alias `challenger`, both or neither (`register_challengers`)."""
    return register_challengers({name: model_uri})[name]


def register_challengers(models: Mapping[str, str]) -> dict[str, Any]:
    """Register each model (registered name -> model URI) and give it the alias `challenger`: all of them or
    none. When a step fails, every new version is deleted and each alias goes back to the version that held
    it. The first is the run's model (tag `model.version`); each gets the tag `registered.<name>`."""
    import mlflow

    client = mlflow.MlflowClient()
    done: list[tuple[str, Any, str | None]] = []  # (name, new version, previous challenger)
    try:
        for name, model_uri in models.items():
            previous = alias_version(name, "challenger")
            version = mlflow.register_model(model_uri, name)
            done.append((name, version, previous))
            client.set_registered_model_alias(name, "challenger", version.version)
            if len(done) == 1:
                mlflow.set_tag("model.version", version.version)
            mlflow.set_tag(f"registered.{name}", version.version)
    except BaseException:
        for name, version, previous in reversed(done):
            try:
                client.delete_model_version(name, version.version)
                if previous is not None:
                    client.set_registered_model_alias(name, "challenger", previous)
            except Exception as error:
                log.warning(
                    "could not undo the registration of %s version %s: %s", name, version.version, error
                )
        raise
    return {name: version for name, version, _ in done}


def alias_version(name: str, alias: str) -> str | None:
    """The version of registered model `name` holding `alias`, or None (no such model or alias)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def run_version(name: str, run_id: str) -> str | None:
    """The version of registered model `name` logged by training run `run_id`, or None."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        found = mlflow.MlflowClient().search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")
    except MlflowException:
        return None
    return str(max(int(v.version) for v in found)) if found else None


def move_aliases(versions: Mapping[str, str], alias: str) -> None:
    """Give each registered model (name -> version) the alias, all or none: when one fails, the aliases
    already moved go back to the versions that held them."""
    import mlflow

    client = mlflow.MlflowClient()
    moved: list[tuple[str, str | None]] = []
    try:
        for name, version in versions.items():
            previous = alias_version(name, alias)
            client.set_registered_model_alias(name, alias, version)
            moved.append((name, previous))
    except BaseException:
        for name, previous in reversed(moved):
            try:
                if previous is None:
                    client.delete_registered_model_alias(name, alias)
                else:
                    client.set_registered_model_alias(name, alias, previous)
            except Exception as error:
                log.warning("could not move the alias %s of %s back: %s", alias, name, error)
        raise
