"""Entry point: Build the point-in-time feature table and its labels (`make features`).

`python -m pipeline.features [hydra overrides]`, or `churnwise features [overrides]`; the work is
`churnwise.api.build_features`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from churnwise import api
from churnwise.stage import stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    api.build_features(cfg)


if __name__ == "__main__":
    main()
