"""Stage: check the configured input tables against the data contract (`python -m pipeline.validate`)."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from features.catalog import FamilyAvailability
from features.validation import ValidatedTables
from pipeline.common import load_inputs, stage
from pipeline.generate import ensure_demo_data

log = logging.getLogger(__name__)


def validate(cfg: DictConfig) -> tuple[ValidatedTables, list[FamilyAvailability]]:
    """Validate the inputs (making the demo data first if it is configured and missing)."""
    ensure_demo_data(cfg)
    tables, availability = load_inputs(cfg)
    log.info("input data meets the data contract")
    return tables, availability


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    validate(cfg)


if __name__ == "__main__":
    main()
