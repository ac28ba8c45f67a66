"""Unit tests of what the quality benchmark relies on: the telecom table's truth file, the retail and app data
configs generating on first use, and the ceiling reading whichever truth a data set has."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from config_helpers import compose_config

from features.demo.activity import AppSpec, RetailSpec
from features.demo.configured import demo_spec, ensure_demo_data
from features.demo.telco import TELCO_TRUTH_FILE, TelcoSpec, generate_telco, telco_frame
from features.labels import LabelWindow
from models.ceiling import true_probability


def test_telco_writes_the_true_probability_of_every_training_row(tmp_path: Path) -> None:
    spec = TelcoSpec(n_customers=400, score_customers=30, seed=4)
    generate_telco(spec, tmp_path / "telco.csv", tmp_path / "truth")
    frame, probability = telco_frame(spec)
    truth = pd.read_parquet(tmp_path / "truth" / TELCO_TRUTH_FILE)
    assert list(truth["customer_id"]) == list(frame["customerID"].iloc[:400])
    np.testing.assert_allclose(truth["p_churn"], probability[:400])
    rows = pd.DataFrame({"customer_id": frame["customerID"].iloc[[5, 0, 399]].to_numpy()})
    found = true_probability(tmp_path / "truth", rows, window=LabelWindow(horizon_days=30))
    np.testing.assert_allclose(found, probability[[5, 0, 399]])
    assert not (tmp_path / TELCO_TRUTH_FILE).exists()  # the truth is not beside the table features read


def test_telco_config_makes_the_truth_when_it_is_missing(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, "data=telco", "data.generator.n_customers=300", debug=False)
    assert ensure_demo_data(cfg)
    truth = Path(cfg.data.truth_path) / TELCO_TRUTH_FILE
    assert truth.is_file() and not ensure_demo_data(cfg)
    truth.unlink()
    assert ensure_demo_data(cfg) and truth.is_file()


@pytest.mark.parametrize(
    ("data", "spec_class", "table"), [("retail", RetailSpec, "orders"), ("app", AppSpec, "events")]
)
def test_retail_and_app_configs_generate_on_first_use(
    tmp_path: Path, data: str, spec_class: type, table: str
) -> None:
    cfg = compose_config(tmp_path, f"data={data}", "data.generator.n_customers=300", "data.generator.months=8",
                         debug=False)  # fmt: skip
    assert isinstance(demo_spec(cfg), spec_class)
    assert cfg.label.name == "inactivity"
    assert ensure_demo_data(cfg)
    assert not ensure_demo_data(cfg)  # made from this spec already
    assert sorted(p.name for p in Path(cfg.data.path).glob("*.parquet")) == sorted(
        ["customers.parquet", f"{table}.parquet"]
    )
    days = pd.read_parquet(Path(cfg.data.truth_path) / "true_activity_days.parquet")
    rows = days.groupby("customer_id", as_index=False)["activity_date"].max().head(20)
    rows["observation_date"] = pd.to_datetime(rows["activity_date"]) + pd.Timedelta(days=3)
    p = true_probability(cfg.data.truth_path, rows, window=LabelWindow.from_config(cfg.label))
    assert p is not None and np.all((p > 0) & (p < 1))
    assert (
        true_probability(cfg.data.truth_path, rows, window=LabelWindow(lead_days=5, horizon_days=28)) is None
    )  # not exact then
    cfg_other = compose_config(tmp_path, f"data={data}", "data.generator.n_customers=300", "data.generator.months=8",
                               "data.generator.seed=9", debug=False)  # fmt: skip
    assert ensure_demo_data(cfg_other)  # another spec: regenerated


def test_no_truth_no_ceiling(tmp_path: Path) -> None:
    rows = pd.DataFrame({"customer_id": [1], "observation_date": [pd.Timestamp("2024-01-01").date()]})
    assert true_probability(None, rows, window=LabelWindow(horizon_days=30)) is None
    assert true_probability(tmp_path, rows, window=LabelWindow(horizon_days=30)) is None
