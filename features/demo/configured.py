"""The demo generator the config asks for (`data.generator`): made on request (`make data`), or when a stage
finds no demo data (`data.generate_if_missing`)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from features.demo.activity import ActivitySpec, ActivitySummary, generate_activity
from features.demo.dated import DemoSpec, DemoSummary, generate_demo
from features.demo.telco import TELCO_TRUTH_FILE, TelcoSpec, TelcoSummary, generate_telco, sidecar_path_for
from features.errors import ConfigError

log = logging.getLogger(__name__)


def demo_spec(cfg: DictConfig) -> DemoSpec | TelcoSpec | ActivitySpec:
    """The generator spec the config asks for, or ConfigError naming data.generator when it cannot be built."""
    from hydra.errors import InstantiationException

    if cfg.data.get("generator") is None:
        raise ConfigError(
            f"data.generator: data={cfg.data.name} has no demo generator; `make data` only makes demo data "
            f"(data=demo, data=telco, data=retail or data=app)"
        )
    try:
        return instantiate(cfg.data.generator)
    except InstantiationException as error:
        cause = str(error.__cause__ or error).strip().splitlines()[0]
        raise ConfigError(f"data.generator: {cause}") from None


def generate(cfg: DictConfig, *, progress: bool = True) -> DemoSummary | TelcoSummary | ActivitySummary:
    """Generate the configured demo data at the configured paths (replacing what the generator wrote there):
    the dated demo tables and their truth files, with data=telco a telecom-layout table and a table to
    score, or with data=retail / data=app an orders-only retailer / an app's event log and their truth."""
    spec = demo_spec(cfg)
    if isinstance(spec, TelcoSpec):
        return generate_telco(spec, Path(cfg.data.path), truth_path_of(cfg))
    if isinstance(spec, ActivitySpec):
        return generate_activity(spec, Path(cfg.data.path), Path(cfg.data.truth_path))
    return generate_demo(spec, Path(cfg.data.path), Path(cfg.data.truth_path), progress=progress)


def ensure_demo_data(cfg: DictConfig) -> bool:
    """Generate the demo data when the config uses it and it is missing or was made from another spec.

    Only a missing or empty folder, or one the generator wrote (it holds the demo manifest), is ever
    (re)generated: a folder of other tables is left untouched. Returns whether data was generated.
    """
    if cfg.data.get("generator") is None or not cfg.data.get("generate_if_missing", False):
        return False
    spec = demo_spec(cfg)
    if isinstance(spec, TelcoSpec):
        return _ensure_telco(spec, Path(cfg.data.path), truth_path_of(cfg))
    folder = Path(cfg.data.path)
    manifest = folder / "_manifest.json"
    wanted = json.loads(json.dumps(asdict(spec), default=str))  # what the manifest records
    if manifest.is_file():
        made = json.loads(manifest.read_text()).get("spec")
        if made == wanted:
            return False
        log.info("demo data in %s was made from another spec; regenerating", folder)
    elif folder.is_dir() and any(folder.iterdir()):
        log.info("%s holds tables that are not generated demo data; using them as they are", folder)
        return False
    else:
        log.info("no demo data in %s yet; generating it", folder)
    generate(cfg)
    return True


def truth_path_of(cfg: DictConfig) -> Path | None:
    """The configured truth folder (data.truth_path), if any."""
    truth = cfg.data.get("truth_path")
    return Path(truth) if truth else None


def _ensure_telco(spec: TelcoSpec, path: Path, truth_path: Path | None) -> bool:
    """Generate the telecom-layout table when missing or made from another spec (or its truth is missing); a
    file the generator did not write (your copy of the public table) is used as it is."""
    sidecar = sidecar_path_for(path)
    if path.exists() and not sidecar.is_file():
        return False
    truth_missing = truth_path is not None and not (truth_path / TELCO_TRUTH_FILE).is_file()
    if (
        sidecar.is_file()
        and json.loads(sidecar.read_text()).get("spec") == asdict(spec)
        and not truth_missing
    ):
        return False
    log.info("no synthetic telecom table at %s from this spec; generating it", path)
    generate_telco(spec, path, truth_path)
    return True
