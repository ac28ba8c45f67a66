"""Entry point: Search the model's hyper-parameters, then train the best (`make tune`).

`python -m pipeline.tune [hydra overrides]`, or `churnwise tune [overrides]`; the work is
`churnwise.api.tune`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from churnwise import api
from churnwise.stage import stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    api.tune(cfg)


if __name__ == "__main__":
    main()
