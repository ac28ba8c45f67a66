"""Entry point: Score the active customers and decide what to do about each one (`make score`).

`python -m pipeline.score [hydra overrides]`, or `churnwise score [overrides]`; the work is
`churnwise.api.score`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from churnwise import api
from churnwise.stage import stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    api.score(cfg)


if __name__ == "__main__":
    main()
