"""End-to-end: a run logged to the project's MLflow UI server, looked at in a real browser (headless Chromium).

The server is the one `make ui` starts (`python -m pipeline.ui`), on a free loopback port, with its sqlite store
and artifact folder under tmp_path. A small training logs to it over HTTP, its artifacts going through the
server. Playwright then drives Debian's chromium (`make browser` installs it) through what a user does: the
experiment's runs, the run's metrics, the calibration plot among its artifacts.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import DictConfig

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags chromium's own connections are refused by a closed network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_SECONDS = 180
PLOT = "plots/calibration_reliability.png"


@dataclass(frozen=True)
class UiServer:
    """A running MLflow UI server: its address and the folders behind it."""

    url: str
    root: Path
    log: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's whole process group (uvicorn workers included), SIGKILL what is left after 20 s."""
    group = process.pid  # start_new_session=True: the server leads its own group
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(group, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture
def ui_server(tmp_path: Path) -> Iterator[UiServer]:
    """`python -m pipeline.ui` (what `make ui` runs) on a free port; artifacts served from its own folder."""
    root = tmp_path / "server"
    root.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "ui.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.ui",
                f"paths.root_dir={root}",
                f"mlflow.ui.port={port}",
                "mlflow.artifact_location=null",  # new experiments: mlflow-artifacts:/, through the server
            ],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while not answers(url):
            assert process.poll() is None, f"the UI server stopped:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no answer in {SERVER_START_SECONDS} s:\n{log.read_text()}"
            time.sleep(0.5)
        yield UiServer(url, root, log)
    finally:
        stop_process_group(process)


@pytest.fixture
def restore_tracking_uri() -> Iterator[None]:
    """Training sets MLflow's global tracking URI (and MLFLOW_TRACKING_URI); put back what was there."""
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    mlflow.set_tracking_uri(previous)


@pytest.mark.slow
def test_run_metrics_and_calibration_plot_in_the_mlflow_ui(
    ui_server: UiServer,
    make_cfg: Callable[..., DictConfig],
    restore_tracking_uri: None,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    from churnwise.api import train

    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)"
    assert f"MLflow UI: {ui_server.url}\n" in ui_server.log.read_text()

    client_root = tmp_path / "client"
    cfg = make_cfg(
        "evaluation.baseline=null",
        f"mlflow.tracking_uri={ui_server.url}",
        "mlflow.artifact_location=null",
        root=client_root,
    )
    result = train(cfg)
    roc_auc = result.metrics["test_roc_auc"]
    served_plot = ui_server.root / "mlartifacts" / result.experiment_id / result.run_id / "artifacts" / PLOT
    assert served_plot.is_file(), "the plot did not go through the server into its artifact folder"
    assert not (client_root / "mlartifacts").exists()
    plot_width, plot_height = png_size(served_plot.read_bytes())
    run_name = f"train-{cfg.data.name}-LGBMClassifier"
    experiment_url = f"{ui_server.url}/#/experiments/{result.experiment_id}"

    overview_png = tmp_path / "ui_run_overview.png"
    plot_png = tmp_path / "ui_calibration_plot.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)

            page.goto(ui_server.url)
            experiment_link = page.get_by_role("link", name=cfg.mlflow.experiment_name, exact=True)
            expect(experiment_link.first).to_have_attribute("href", f"#/experiments/{result.experiment_id}")

            # The experiment's training runs (the "Model training" view of the experiment).
            page.goto(f"{experiment_url}/runs?workflowType=machine_learning")
            page.get_by_role("link", name=run_name, exact=True).click()
            expect(page).to_have_url(f"{experiment_url}/runs/{result.run_id}")
            expect(page.get_by_role("heading", name=run_name)).to_be_visible()

            metric = page.get_by_role("row").filter(
                has=page.get_by_role("link", name="test_roc_auc", exact=True)
            )
            expect(metric).to_have_count(1)
            expect(metric.get_by_role("cell").nth(1)).to_have_text(str(roc_auc))
            page.screenshot(path=overview_png)

            page.get_by_role("tab", name="Artifacts").click()
            page.get_by_test_id("artifact-tree-node").filter(has_text="plots").click()
            page.locator(
                '[data-testid="artifact-tree-node"][artifact-name="calibration_reliability.png"]'
            ).click()
            expect(
                page.get_by_text(
                    f"Path: mlflow-artifacts:/{result.experiment_id}/{result.run_id}/artifacts/{PLOT}",
                    exact=True,
                )
            ).to_be_visible()
            image = page.get_by_role("img", name=PLOT, exact=True)
            expect(image).to_be_visible()
            page.wait_for_function(
                "image => image.complete && image.naturalWidth > 0", arg=image.element_handle()
            )
            natural_size = image.evaluate("image => [image.naturalWidth, image.naturalHeight]")
            assert tuple(natural_size) == (plot_width, plot_height)
            page.screenshot(path=plot_png)
        finally:
            browser.close()

    for screenshot in (overview_png, plot_png):
        png = screenshot.read_bytes()
        assert png_size(png) == (1400, 1000)
        assert len(png) > 50_000, f"{screenshot} looks blank ({len(png)} bytes)"
