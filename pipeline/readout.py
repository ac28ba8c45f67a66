"""Entry point: Did the last campaigns work? (`make readout`).

`python -m pipeline.readout [hydra overrides]`, or `churnwise readout [overrides]`; the work is
`churnwise.api.readout`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from churnwise import api
from churnwise.stage import stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    api.readout(cfg)


if __name__ == "__main__":
    main()
