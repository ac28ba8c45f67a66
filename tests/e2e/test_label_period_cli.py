"""A flat table whose churn column's period is not stated stops every stage that needs it (exit 2, one line
naming data.label.period_months and saying what it means) before any work: no month is taken for granted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

CHURNWISE = Path(sys.executable).parent / "churnwise"


def test_a_snapshot_without_its_label_period_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "churn.csv"
    pd.DataFrame({"id": [1, 2, 3, 4], "plan": ["a", "b", "a", "b"], "left": [1, 0, 0, 1]}).to_csv(
        path, index=False
    )
    root = tmp_path / "project"
    settings = [
        "data=snapshot", f"data.path={path}", "data.id_column=id", "data.label.column=left",
        "data.label.positive=1", "data.label.negative=0", f"paths.root_dir={root}",
    ]  # fmt: skip
    for stage in ("validate", "train", "score", "report"):
        done = subprocess.run(
            [str(CHURNWISE), stage, *settings], cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        output = done.stdout + done.stderr
        assert done.returncode == 2, (stage, output)
        assert "data.label.period_months is not set: the period the churn column covers, in months" in output
        assert "data.label.assume=true" in output and "Traceback" not in output
    assert not (root / "mlflow.db").exists() and not (root / "data").exists()  # nothing built, nothing logged
