"""A subscription business with an event log and nothing else (no orders, complaints, referrals or offers),
whose events carry codes named by a lookup table: train, score and report work on it unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from config_helpers import compose_config

pytestmark = pytest.mark.slow

CODES = {"login": "1", "app_session": "2", "usage": "3", "support_page_view": "4", "feature_use": "5"}


def test_subscriptions_and_coded_events_go_through_train_score_and_report(tmp_path: Path) -> None:
    from churnwise.api import generate, report, score, train

    demo = compose_config(tmp_path / "demo")
    generate(demo, progress=False)
    business = tmp_path / "business"
    business.mkdir()
    source = Path(demo.data.path)
    for table in ("customers", "subscriptions"):
        (business / f"{table}.parquet").write_bytes((source / f"{table}.parquet").read_bytes())
    cases = " ".join(f"WHEN '{name}' THEN '{code}'" for name, code in CODES.items())
    duckdb.connect().execute(
        f"COPY (SELECT * REPLACE (CASE event_type {cases} END AS event_type) FROM '{source}/events.parquet') "
        f"TO '{business}/events.parquet' (FORMAT parquet)"
    )
    pd.DataFrame({"event_type": list(CODES.values()), "event_type_name": list(CODES)}).to_csv(
        business / "event_types.csv", index=False
    )

    def make(*overrides: str):
        return compose_config(
            tmp_path / "project", f"data.path={business}", "data.name=subs_events", "data.generate_if_missing=false",
            "data.truth_path=null", "evaluation.baseline=null", *overrides,
        )  # fmt: skip

    trained = train(make())
    assert 0.5 < trained.metrics["test_roc_auc"] <= 1
    manifest = json.loads((Path(make().paths.features_dir) / "manifest.json").read_text())
    assert set(manifest["skipped_families"]) == {"complaints", "loyalty"}
    names = {f["name"] for f in manifest["features"]}
    assert {"events_login_30d", "events_usage_90d", "monthly_revenue", "bundled_products"} <= names
    assert not any(name.startswith("events_t_") for name in names)  # named, not coded

    scored = score(make())
    out = pd.read_parquet(scored.path)
    assert len(out) == scored.customers > 100 and out["p_churn"].between(0, 1).all()
    assert any("open_complaints" in note for note in scored.notes)  # rules needing complaints do not hold
    assert "service_recovery_call" not in set(out["action"].dropna())
    assert out["selected"].any()

    written = report(make())
    page = written.html_path.read_text()
    assert "<h2>Why customers defect</h2>" in page and "<h2>The corrective plan</h2>" in page
    assert 0.5 < written.metrics["annual_retention"] < 1
