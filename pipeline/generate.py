"""Stage: generate the demo data set (`python -m pipeline.generate`, `make data`)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from features.demo import DemoSpec, DemoSummary, generate_demo
from pipeline.common import stage

log = logging.getLogger(__name__)


def demo_spec(cfg: DictConfig) -> DemoSpec:
    """The generator spec the config asks for."""
    return instantiate(cfg.data.generator)


def generate(cfg: DictConfig, *, progress: bool = True) -> DemoSummary:
    """Generate the demo tables and the truth files at the configured paths (replacing what is there)."""
    return generate_demo(demo_spec(cfg), Path(cfg.data.path), Path(cfg.data.truth_path), progress=progress)


def ensure_demo_data(cfg: DictConfig) -> bool:
    """Generate the demo data when the config uses it and it is missing or was made from another spec.

    Only a missing or empty folder, or one the generator wrote (it holds the demo manifest), is ever
    (re)generated: a folder of other tables is left untouched. Returns whether data was generated.
    """
    if cfg.data.get("generator") is None or not cfg.data.get("generate_if_missing", False):
        return False
    folder = Path(cfg.data.path)
    manifest = folder / "_manifest.json"
    wanted = json.loads(json.dumps(asdict(demo_spec(cfg)), default=str))
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


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    generate(cfg)


if __name__ == "__main__":
    main()
