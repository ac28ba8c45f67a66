"""Stage: the MLflow UI on the project's tracking store (`python -m pipeline.ui`, `make ui`)."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def ui_command(cfg: DictConfig, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The `mlflow ui` command line for the configured store, bound to loopback."""
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    command = [
        mlflow,
        "ui",
        "--backend-store-uri",
        cfg.mlflow.tracking_uri,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if cfg.mlflow.get("artifact_location"):
        command += ["--default-artifact-root", Path(cfg.mlflow.artifact_location).resolve().as_uri()]
    return command


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    host, port = cfg.mlflow.ui.host, int(cfg.mlflow.ui.port)
    command = ui_command(cfg, host, port)
    print(f"MLflow UI for {cfg.mlflow.tracking_uri} at http://{host}:{port}  (Ctrl-C to stop)", flush=True)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
