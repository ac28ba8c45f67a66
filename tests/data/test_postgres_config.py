"""The PostgreSQL URI from the git-ignored local config (conf/local/default.yaml), as docs/your_data.md shows:
the tables of the configured schema are copied under their mapped names, and the logged config hides the
password."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import psycopg
from config_helpers import CONF_DIR
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

pytest_plugins = ["postgres_server"]


def test_the_uri_and_mapping_in_conf_local_reach_the_copy_and_never_the_logs(
    tmp_path: Path, postgres_server: str
) -> None:
    from features.inputs import copy_from_postgres
    from features.provenance import resolved_config, resolved_yaml

    uri = postgres_server.replace("postgresql://postgres@", "postgresql://postgres:pw-in-local@")
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA crm_local")
        conn.execute("CREATE TABLE crm_local.accounts (account_id bigint, created_on date)")
        conn.execute("INSERT INTO crm_local.accounts VALUES (1, '2024-01-05'), (2, NULL)")
        conn.execute(
            "CREATE TABLE crm_local.orders (customer_id bigint, order_date date, amount numeric(10, 2))"
        )
        conn.execute("INSERT INTO crm_local.orders VALUES (1, '2024-02-01', 19.90)")
        conn.execute("CREATE TABLE crm_local.unrelated (x int)")
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "local" / "default.yaml").write_text(
        f"""# @package _global_
defaults:
  - override /data: postgres

data:
  name: crm_local
  uri: {uri}
  schema: crm_local
  mapping:
    customers: {{from: accounts, columns: {{customer_id: account_id, signup_date: created_on}}}}
"""
    )
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"paths.root_dir={tmp_path}"])
    GlobalHydra.instance().clear()

    copied = copy_from_postgres(cfg)
    assert set(copied) == {"accounts", "orders"}  # the mapped name, a contract table, nothing else
    assert Path(cfg.data.path) == tmp_path / "data" / "postgres" / "crm_local"
    accounts = pd.read_parquet(copied["accounts"])
    assert accounts["account_id"].tolist() == [1, 2] and pd.isna(accounts["created_on"].iloc[1])
    assert pd.read_parquet(copied["orders"])["amount"].tolist() == [19.9]

    assert "pw-in-local" not in resolved_yaml(cfg) and "pw-in-local" not in str(resolved_config(cfg))
    assert resolved_config(cfg)["data"]["uri"].startswith("postgresql://postgres:***@127.0.0.1:")
