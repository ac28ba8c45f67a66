"""Secrets never reach a file or a console line: every stage runs with a database password (holding `/`, `#`,
`@` and `%`) in the git-ignored conf/local and another in the environment, and neither appears in anything it
prints or writes (logs, Hydra's run folders, the MLflow store and artifacts, data, outputs); a run that fails
on a URI with a password shows it as ***."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from config_helpers import CONF_DIR
from safety_helpers import run_stage

pytest_plugins = ["postgres_server"]
pytestmark = pytest.mark.slow

SECRET = "pa/ss#w0rd@%x"  # a password as a user would choose it
ENV_SECRET = "env-t0ken-9f3"  # a password the environment holds (MLflow basic auth)
STAGES = ("generate", "validate", "features", "train", "tune", "score", "report", "promote")


def forms(secret: str) -> set[str]:
    """A secret as written and as a URI carries it."""
    return {secret, quote(secret, safe=""), secret.replace("/", "%2F").replace("#", "%23")}


def leaks(root: Path, text: str, secrets: set[str]) -> list[str]:
    """Where any form of the secrets appears: in `text`, or in any file under `root`."""
    found = [f"console: {s!r}" for s in secrets if s in text]
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {s!r}" for s in secrets if s.encode() in data]
    return found


def local_conf(tmp_path: Path, body: str) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "local" / "default.yaml").write_text("# @package _global_\n" + body)
    return conf


def test_no_stage_prints_or_writes_a_secret(tmp_path: Path, postgres_server: str) -> None:
    uri = postgres_server.replace(
        "postgresql://postgres@", f"postgresql://postgres:{quote(SECRET, safe='')}@"
    )
    conf = local_conf(
        tmp_path,
        f"score:\n  postgres:\n    table: churn_scores\n    uri: {uri}\n",  # used: scoring publishes there
    )
    root = tmp_path / "project"
    secrets = forms(SECRET) | {ENV_SECRET}
    for stage in STAGES:
        done = run_stage(
            stage, f"paths.root_dir={root}", "debug=default", config_path=conf,
            env={"MLFLOW_TRACKING_PASSWORD": ENV_SECRET},
        )  # fmt: skip
        assert done.returncode == 0, done.output
        assert leaks(root, done.output, secrets) == [], stage
    with psycopg.connect(postgres_server) as conn:  # the password was really used: scoring published there
        assert conn.execute("SELECT count(*) FROM churn_scores").fetchone()[0] > 0
    logs = root / "outputs" / "logs"
    assert not list(logs.rglob(".hydra")), "Hydra's own config copies are written"
    saved = list(logs.rglob("resolved_config.yaml"))
    assert len(saved) == len(STAGES) and all("postgresql://postgres:***@" in p.read_text() for p in saved)


@pytest.mark.parametrize(
    ("stage", "uri"),
    [
        ("validate", "postgresql://postgres:{raw}@127.0.0.1:{port}/churnwise"),  # not even percent-encoded
        ("train", "postgresql://postgres:{encoded}@127.0.0.1:{port}/churnwise"),
    ],
    ids=["raw_password", "encoded_password"],
)
def test_a_failing_connection_shows_the_uri_without_its_password(
    tmp_path: Path, stage: str, uri: str
) -> None:
    from test_safety import closed_port

    filled = uri.format(raw=SECRET, encoded=quote(SECRET, safe=""), port=closed_port())
    conf = local_conf(tmp_path, "defaults:\n  - override /data: postgres\n" + f"data:\n  uri: '{filled}'\n")
    root = tmp_path / "project"
    done = run_stage(stage, f"paths.root_dir={root}", config_path=conf)
    assert done.returncode == 2, done.output
    assert "Traceback" not in done.output
    assert (
        "postgresql://postgres:***@127.0.0.1" in done.output and "cannot connect to PostgreSQL" in done.output
    )
    assert leaks(root, done.output, forms(SECRET)) == []
