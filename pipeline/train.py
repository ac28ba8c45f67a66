"""Entry point: Train, calibrate, evaluate, track and register a churn model, then run the promotion gate (`make train`).

`python -m pipeline.train [hydra overrides]`, or `churnwise train [overrides]`; the work is
`churnwise.api.train`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from churnwise import api
from churnwise.stage import stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    api.train(cfg)


if __name__ == "__main__":
    main()
