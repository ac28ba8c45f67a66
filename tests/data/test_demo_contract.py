"""The demo data meets the data contract that user data must meet."""

from __future__ import annotations

from pathlib import Path

from features.contract import CONTRACT
from features.demo.dated import DemoSpec, generate_demo
from features.validation import load_tables


def test_demo_tables_pass_validation_with_every_contract_column(tmp_path: Path) -> None:
    summary = generate_demo(
        DemoSpec(n_customers=400, months=12, seed=3, chunk_size=200), tmp_path / "t", tmp_path / "truth"
    )
    tables = load_tables(summary.tables_dir)
    optional_lookups = {"event_types"}  # the demo's events are named already
    assert tables.report.present == tuple(n for n in CONTRACT.table_names if n not in optional_lookups)
    for table in CONTRACT.tables:
        if table.name in optional_lookups:
            continue
        found = tables.report.tables[table.name]
        assert set(found.columns) == {c.name for c in table.columns}, table.name
        assert found.rows == summary.rows[table.name]
    # The truth files live elsewhere, out of reach of anything reading the input folder.
    assert not any(p.name.startswith("true_") for p in summary.tables_dir.iterdir())
