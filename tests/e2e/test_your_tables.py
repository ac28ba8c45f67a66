"""A relational export under its own file and column names, with integer ids (`data=tables` with a mapping):
train and score work on it through the mapping, with no code change."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from config_helpers import compose_config

pytestmark = pytest.mark.slow

RENAMED = {  # contract table -> (the export's file, {contract column: the export's column})
    "customers": ("accounts", {"customer_id": "acct_no", "signup_date": "opened_on"}),
    "subscriptions": ("contracts", {"customer_id": "acct_no", "product": "plan", "monthly_price": "fee"}),
    "complaints": ("tickets", {"customer_id": "acct_no", "opened_at": "created"}),
    "events": ("activity", {"customer_id": "acct_no"}),
}


def test_an_export_with_renamed_tables_and_columns_trains_and_scores(tmp_path: Path) -> None:
    from churnwise.api import generate, score, train

    demo = compose_config(tmp_path / "demo")
    generate(demo, progress=False)
    export = tmp_path / "export"
    export.mkdir()
    con = duckdb.connect()
    for table, (file, columns) in RENAMED.items():
        renamed = ", ".join(f"{contract} AS {theirs}" for contract, theirs in columns.items())
        con.execute(
            f"COPY (SELECT * RENAME ({renamed}) FROM '{demo.data.path}/{table}.parquet') "
            f"TO '{export}/{file}.parquet' (FORMAT parquet)"
        )
    overrides = [f"data.path={export}"]
    for table, (file, columns) in RENAMED.items():
        pairs = ",".join(f"{contract}:{theirs}" for contract, theirs in columns.items())
        overrides.append(f"+data.mapping.{table}={{from:{file},columns:{{{pairs}}}}}")

    def make(*more: str):
        return compose_config(
            tmp_path / "project", "data=tables", "evaluation.baseline=null", *overrides, *more
        )

    trained = train(make())
    assert 0.5 < trained.metrics["test_roc_auc"] <= 1
    scored = score(make())
    out = pd.read_parquet(scored.path)
    ids = pd.read_parquet(export / "accounts.parquet")["acct_no"]
    assert out["customer_id"].dtype.kind == "i" and set(out["customer_id"]) <= set(ids)  # integer ids kept
    assert len(out) > 100 and out["reason_1"].notna().any()


def test_an_export_without_customers_derives_them_and_trains_on_activity(tmp_path: Path) -> None:
    from churnwise.api import generate, train

    demo = compose_config(tmp_path / "demo")
    generate(demo, progress=False)
    export = tmp_path / "retail"
    export.mkdir()
    for table in ("orders", "events"):
        (export / f"{table}.parquet").write_bytes((Path(demo.data.path) / f"{table}.parquet").read_bytes())
    cfg = compose_config(
        tmp_path / "project",
        "data=tables",
        f"data.path={export}",
        "label=inactivity",
        "evaluation.baseline=null",
        # the lifetime value below is checked against the constant-retention formula: what this test is
        # about is the revenue rule (purchases count without subscriptions), not the survival curve
        "survival=constant",
    )
    trained = train(cfg)
    assert 0.5 < trained.metrics["test_roc_auc"] <= 1
    manifest = json.loads((Path(cfg.paths.features_dir) / "manifest.json").read_text())
    assert {"tenure", "engagement", "spend"} <= {f["family"] for f in manifest["features"]}
    assert {"bundles", "contract", "complaints"} <= set(manifest["skipped_families"])

    # without subscriptions there is no recurring revenue: lifetime value comes from purchases (conf/value)
    from churnwise.api import score

    scored = score(cfg)
    out = pd.read_parquet(scored.path).set_index("customer_id")
    orders = pd.read_parquet(export / "orders.parquet")
    day = pd.to_datetime(orders["order_date"])
    window = orders[
        (day < pd.Timestamp(scored.as_of)) & (day >= pd.Timestamp(scored.as_of) - pd.Timedelta(days=365))
    ]
    revenue = (window.groupby("customer_id")["amount"].sum() / 12).reindex(out.index, fill_value=0.0)
    horizon = int(cfg.label.horizon_days)
    r = (1 - out["p_churn"]) ** (365.25 / 12 / horizon)
    d = (1 + float(cfg.value.annual_discount_rate)) ** (1 / 12) - 1
    expected = float(cfg.value.margin_rate) * revenue * r / (1 + d - r)
    assert (revenue > 0).mean() > 0.5 and (out["clv"] > 0).mean() > 0.5
    np.testing.assert_allclose(out["clv"], expected, rtol=1e-6)
    assert out["selected"].any()


def test_an_orders_only_export_with_empty_attribute_columns_trains_and_scores(tmp_path: Path) -> None:
    """segment, region and channel present but blank: the baseline (a logistic regression that cannot take a
    column of nothing) used to stop with 'Found array with 0 feature(s)'. Empty features are left out of
    every model, said once, and scoring rebuilds the features kept."""
    from churnwise.api import generate, score, train

    demo = compose_config(tmp_path / "demo")
    generate(demo, progress=False)
    export = tmp_path / "shop"
    export.mkdir()
    customers = pd.read_parquet(Path(demo.data.path) / "customers.parquet")
    customers[["segment", "region", "channel"]] = None
    customers.to_parquet(export / "customers.parquet")
    pd.read_parquet(Path(demo.data.path) / "orders.parquet").to_parquet(export / "orders.parquet")

    def make():
        return compose_config(
            tmp_path / "project", "data=tables", f"data.path={export}", "data.name=shop", "label=inactivity"
        )

    trained = train(make())  # with the logistic-regression baseline, as `make train` runs it
    assert "baseline_test_roc_auc" in trained.metrics
    import mlflow

    client = mlflow.MlflowClient(make().mlflow.tracking_uri)
    manifest = json.loads(
        Path(
            client.download_artifacts(trained.run_id, "run_info/feature_manifest.json", str(tmp_path))
        ).read_text()
    )
    assert set(manifest["empty_features"]) >= {"segment", "region", "channel"}
    assert not {"segment", "region", "channel"} & {f["name"] for f in manifest["features"]}
    scored = pd.read_parquet(score(make()).path)
    assert len(scored) > 0 and scored["p_churn"].between(0, 1, inclusive="neither").all()
