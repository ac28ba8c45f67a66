"""Entry point: Remove the data churnwise generated and the local MLflow store (`make clean-data`).

`python -m pipeline.clean [hydra overrides]`, or `churnwise clean [overrides]`; the work is
`churnwise.api.clean_data`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from churnwise import api
from churnwise.stage import stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    api.clean_data(cfg)


if __name__ == "__main__":
    main()
