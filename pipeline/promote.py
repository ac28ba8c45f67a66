"""Entry point: The promotion gate: move the champion alias when the challenger is better (`make promote`).

`python -m pipeline.promote [hydra overrides]`, or `churnwise promote [overrides]`; the work is
`churnwise.api.promote`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from churnwise import api
from churnwise.stage import stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    api.promote(cfg)


if __name__ == "__main__":
    main()
