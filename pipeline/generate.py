"""Entry point: Generate the demo data set (`make data`).

`python -m pipeline.generate [hydra overrides]`, or `churnwise generate [overrides]`; the work is
`churnwise.api.generate`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from churnwise import api
from churnwise.stage import stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    api.generate(cfg)


if __name__ == "__main__":
    main()
