"""Entry point: The retention report (`make report`).

`python -m pipeline.report [hydra overrides]`, or `churnwise report [overrides]`; the work is
`churnwise.api.report`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from churnwise import api
from churnwise.stage import stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@stage
def main(cfg: DictConfig) -> None:
    api.report(cfg)


if __name__ == "__main__":
    main()
