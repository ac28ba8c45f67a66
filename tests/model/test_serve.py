"""The registered champion served over HTTP by `mlflow models serve` (the MLflow scoring server, local env).

The server loads the model as code from the test session's tracking store; its answers for a few feature rows
must be the probabilities `mlflow.pyfunc.load_model(...).predict` gives in this process, and with the
`contributions` param it returns each feature's contribution as well.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from models.pyfunc import BIAS_COLUMN, CONTRIBUTION_PREFIX, contributions_of

pytestmark = pytest.mark.slow

START_SECONDS = 120
AS_OF = "2023-12-01"
# Loopback only: no proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (it leads its own), SIGKILL it if still there after 20 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


def wait_for_ping(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with OPENER.open(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the server did not answer /ping within {START_SECONDS} s:\n{log.read_text()[-4000:]}")


def invoke(url: str, rows: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """POST the rows as `dataframe_split` (missing values as null); the predictions as a frame."""
    values = [
        [None if isinstance(v, float) and math.isnan(v) else v for v in row] for row in rows.to_numpy(object)
    ]
    body: dict[str, Any] = {"dataframe_split": {"columns": list(rows.columns), "data": values}}
    if params is not None:
        body["params"] = params
    request = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with OPENER.open(request, timeout=60) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        pytest.fail(f"/invocations answered {error.code}: {error.read().decode(errors='replace')[:2000]}")
    return pd.DataFrame(answer["predictions"])


def test_the_served_champion_answers_as_the_loaded_pyfunc_with_and_without_contributions(
    decision_project, tmp_path: Path
) -> None:
    cfg, _, _ = decision_project
    uri = f"models:/{cfg.mlflow.registered_model_name}@champion"
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    model = mlflow.pyfunc.load_model(uri)
    names = model.metadata.get_input_schema().input_names()
    table = pd.read_parquet(Path(cfg.paths.features_dir) / "features.parquet")
    at = table[pd.to_datetime(table["observation_date"]) == pd.Timestamp(AS_OF)].sort_values("customer_id")
    rows = at[names].head(6).reset_index(drop=True)
    assert rows.isna().any().any(), "the rows should include missing values, as real ones do"

    expected = model.predict(rows)
    explained = model.predict(rows, params={"contributions": True})
    matrix, features = contributions_of(model, rows)
    assert features == names and matrix.shape == (len(rows), len(names) + 1)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    executable = Path(sys.executable).with_name("mlflow")
    command = [str(executable), "models", "serve", "-m", uri, "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port)]
    # The server runs `uvicorn` by name: the venv's bin folder goes first on PATH.
    path = os.pathsep.join([str(executable.parent), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": str(cfg.mlflow.tracking_uri), "PATH": path}
    with log.open("wb") as output:
        server = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_ping(url, server, log)

        served = invoke(url, rows)
        assert list(served.columns) == ["p_churn", "raw_score"]
        np.testing.assert_allclose(served["p_churn"], expected["p_churn"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(served["raw_score"], expected["raw_score"], rtol=0, atol=1e-9)

        served = invoke(url, rows, {"contributions": True})
        columns = [f"{CONTRIBUTION_PREFIX}{name}" for name in names] + [BIAS_COLUMN]
        assert list(served.columns) == ["p_churn", "raw_score", *columns]
        np.testing.assert_allclose(served["p_churn"], expected["p_churn"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(served[columns].to_numpy(float), explained[columns], rtol=0, atol=1e-9)
        np.testing.assert_allclose(served[columns].to_numpy(float), matrix, rtol=0, atol=1e-9)
        # the contributions add up to each row's raw log-odds
        raw = served["raw_score"].to_numpy(float)
        np.testing.assert_allclose(served[columns].sum(axis=1), np.log(raw / (1 - raw)), atol=1e-6)
    finally:
        stop(server)
