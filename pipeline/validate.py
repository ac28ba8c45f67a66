"""Entry point: Check the configured input tables against the data contract (`make validate`).

`python -m pipeline.validate [hydra overrides]`, or `churnwise validate [overrides]`; the work is
`churnwise.api.validate`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from churnwise import api
from churnwise.stage import stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    api.validate(cfg)


if __name__ == "__main__":
    main()
