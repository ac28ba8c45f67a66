"""Running a stage: the wrapper every entry point uses (secrets kept out of every console line and log,
plots to files, the redacted config beside the log, a bad input or setting as one line and exit code 2),
and the project's config composed as the stages compose it."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from features.errors import ConfigError
from features.provenance import resolved_yaml
from features.publish import PublishError
from features.redaction import install_secret_filter, redact, secret_values
from features.validation import DataContractError
from models.tracking import first_line, tracking_failure

log = logging.getLogger(__name__)
T = TypeVar("T")

EXIT_INPUT = 2  # a bad input or setting: one line names what to fix
EXIT_BUG = 1  # an unexpected error: the traceback (secrets scrubbed) helps to fix it
# ConfigError covers the modelling and decision settings too (SplitError, DecisionConfigError).
CLEAR_ERRORS = (DataContractError, ConfigError, FileNotFoundError, PublishError)


def stage(func: Callable[[DictConfig], T]) -> Callable[[DictConfig], T]:
    """Run a stage: secrets kept out of every console line and log file, plots to files only, the redacted
    config beside the log, and input and configuration errors as one clear message and exit code 2."""

    @functools.wraps(func)
    def wrapper(cfg: DictConfig) -> T:
        import matplotlib

        matplotlib.use("Agg")  # a stage's plots are files (logged to MLflow), never windows
        try:
            secrets = secret_values(OmegaConf.to_container(cfg, resolve=True))
        except OmegaConfBaseException:
            secrets = secret_values(OmegaConf.to_container(cfg, resolve=False))
        install_secret_filter(secrets)
        try:
            _write_run_config(cfg)
            return func(cfg)
        except CLEAR_ERRORS as error:
            log.error("%s", error)
            raise SystemExit(EXIT_INPUT) from None
        except MissingMandatoryValue as error:
            log.error(
                "%s: set %s=... on the command line or in conf/local",
                str(error).splitlines()[0],
                error.full_key,
            )
            raise SystemExit(EXIT_INPUT) from None
        except OmegaConfBaseException as error:
            key = getattr(error, "full_key", None)
            log.error("%s%s", f"{key}: " if key else "", str(error).splitlines()[0])
            raise SystemExit(EXIT_INPUT) from None
        except Exception as error:
            if tracking_failure(error):
                log.error(
                    "mlflow.tracking_uri %s: MLflow failed (%s); nothing was published",
                    redact(str(OmegaConf.select(cfg, "mlflow.tracking_uri"))), first_line(error),
                )  # fmt: skip
                raise SystemExit(EXIT_INPUT) from None
            # A bug, not a bad input: the traceback helps to fix it (the secret filter scrubs it). Caught here,
            # so Hydra does not print the command line's overrides, which may hold a URI.
            log.exception("churnwise stopped on an unexpected error; nothing further was published")
            raise SystemExit(EXIT_BUG) from None

    return wrapper


def _write_run_config(cfg: DictConfig) -> None:
    """The resolved, redacted config in the Hydra run folder (Hydra's own copies are off: they keep secrets)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    folder = Path(HydraConfig.get().runtime.output_dir)
    with contextlib.suppress(OSError, OmegaConfBaseException):
        (folder / "resolved_config.yaml").write_text(resolved_yaml(cfg))


def project_config(*overrides: str, start: Path | None = None) -> DictConfig:
    """The project's Hydra config composed as the stages compose it, for notebooks and scripts.

    The project is the first folder holding `conf/config.yaml` from `start` (default: the working directory)
    upwards; `paths.root_dir` is that folder unless CHURNWISE_HOME is set; CHURNWISE_OVERRIDES adds Hydra
    overrides (e.g. "debug=default"), before `overrides`.
    """
    import os
    import shlex

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    here = (start or Path.cwd()).resolve()
    root = next((p for p in (here, *here.parents) if (p / "conf" / "config.yaml").is_file()), None)
    if root is None:
        raise FileNotFoundError(f"no churnwise project (conf/config.yaml) in {here} or above it")
    extra = [] if os.environ.get("CHURNWISE_HOME") else [f"paths.root_dir={root}"]
    extra += shlex.split(os.environ.get("CHURNWISE_OVERRIDES", ""))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[*extra, *overrides])
