"""A business whose tables live in PostgreSQL (data=postgres): features read through the database equal those
read from the same tables as files, training and scoring run on it with the URI from the environment, the
password never reaches a log or an artifact, and scoring publishes its output to a PostgreSQL table,
idempotently per scoring date."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import psycopg
import pytest
from config_helpers import compose_config

pytest_plugins = ["postgres_server"]
pytestmark = pytest.mark.slow

PG_TYPES = {
    "VARCHAR": "text", "BIGINT": "bigint", "INTEGER": "integer", "SMALLINT": "smallint", "TINYINT": "smallint",
    "FLOAT": "real", "DOUBLE": "double precision", "DATE": "date",
    "BOOLEAN": "boolean", "TIMESTAMP": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamptz",
}  # fmt: skip
RENAMED = {"customers": ("crm_accounts", {"customer_id": "account_id"})}
SECRET = "s3cret-pw"


def load_into_postgres(uri: str, folder: Path) -> None:
    """Every Parquet table of `folder` as a PostgreSQL table (customers renamed, as a CRM would have it)."""
    con = duckdb.connect()
    with psycopg.connect(uri, autocommit=True) as conn:
        for path in sorted(folder.glob("*.parquet")):
            name, columns = RENAMED.get(path.stem, (path.stem, {}))
            schema = con.execute(f"DESCRIBE SELECT * FROM '{path}'").fetchall()
            ddl = ", ".join(f"{columns.get(c, c)} {PG_TYPES[t]}" for c, t, *_ in schema)
            conn.execute(f"CREATE TABLE {name} ({ddl})")
            csv = folder.parent / f"{path.stem}.csv"
            con.execute(f"COPY (SELECT * FROM '{path}') TO '{csv}' (FORMAT csv, HEADER)")
            with (
                conn.cursor().copy(f"COPY {name} FROM STDIN (FORMAT csv, HEADER)") as copy,
                csv.open("rb") as f,
            ):
                while block := f.read(1 << 20):
                    copy.write(block)


def test_a_business_in_postgresql_trains_and_scores_into_postgresql(
    tmp_path: Path, postgres_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from churnwise.api import build_features, generate, score, train

    demo = compose_config(tmp_path / "demo")
    generate(demo, progress=False)
    uri = postgres_server.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@")
    load_into_postgres(uri, Path(demo.data.path))
    monkeypatch.setenv("CHURNWISE_PG_URI", uri)  # the URI comes from the environment, not from a file

    mapping = "+data.mapping.customers={from:crm_accounts,columns:{customer_id:account_id}}"
    pg = compose_config(tmp_path / "project", "data=postgres", mapping, "evaluation.baseline=null")
    from_files = build_features(
        compose_config(tmp_path / "files", "data=tables", f"data.path={demo.data.path}")
    )
    from_postgres = build_features(pg)
    keys = ["customer_id", "observation_date"]
    expected = pd.read_parquet(from_files.table_path).sort_values(keys).reset_index(drop=True)
    got = pd.read_parquet(from_postgres.table_path).sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)  # nothing lost or changed on the way through the database
    assert len(got) > 1000

    trained = train(pg)
    assert 0.5 < trained.metrics["test_roc_auc"] <= 1
    scored = score(
        compose_config(tmp_path / "project", "data=postgres", mapping, "score.postgres.table=churn_scores")
    )
    out = pd.read_parquet(scored.path)
    with psycopg.connect(uri) as conn:
        published = pd.DataFrame(
            conn.execute("SELECT customer_id, as_of, p_churn, action, selected FROM churn_scores").fetchall(),
            columns=["customer_id", "as_of", "p_churn", "action", "selected"],
        )
    assert len(published) == len(out) > 100
    merged = out.merge(published, on="customer_id", suffixes=("", "_pg"))
    assert len(merged) == len(out)
    assert (merged["p_churn"] - merged["p_churn_pg"]).abs().max() < 1e-12
    assert (merged["selected"] == merged["selected_pg"]).all()
    assert set(published["as_of"]) == {scored.as_of}

    score(compose_config(tmp_path / "project", "data=postgres", mapping, "score.postgres.table=churn_scores"))
    with psycopg.connect(uri) as conn:  # a rerun replaces that date's rows: no duplicates
        count, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT customer_id) FROM churn_scores"
        ).fetchone()
    assert count == distinct == len(out)

    # the password is in no artifact, manifest or parameter
    import mlflow

    mlflow.set_tracking_uri(pg.mlflow.tracking_uri)
    texts = [json.dumps(json.loads(Path(from_postgres.manifest_path).read_text()))]
    for run_id in (trained.run_id, scored.run_id):
        run = mlflow.get_run(run_id)
        texts.append(json.dumps(run.data.params))
        texts.append(Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="run_info/resolved_config.yaml", dst_path=str(tmp_path / run_id))).read_text())  # fmt: skip
    assert all(SECRET not in text for text in texts)
    assert any("postgres:***@127.0.0.1" in text for text in texts)


def test_data_postgres_without_a_uri_says_where_to_set_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from churnwise.api import build_features
    from features.errors import ConfigError

    monkeypatch.delenv("CHURNWISE_PG_URI", raising=False)
    with pytest.raises(ConfigError, match=r"data\.uri.*CHURNWISE_PG_URI.*conf/local"):
        build_features(compose_config(tmp_path, "data=postgres"))
