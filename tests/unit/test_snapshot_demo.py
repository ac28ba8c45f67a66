"""Unit tests of the synthetic telecom churn table: layout, consistency rules, mechanism, files, ownership."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.demo.telco import TelcoSpec, TelcoSummary, generate_telco, telco_frame
from features.errors import ConfigError

SPEC = TelcoSpec(n_customers=2000, score_customers=300, seed=7)

# The public file's layout, written out independently of the generator's own constants.
EXPECTED_COLUMNS = [
    "customerID",
    "gender",
    "SeniorCitizen",
    "Partner",
    "Dependents",
    "tenure",
    "PhoneService",
    "MultipleLines",
    "InternetService",
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
    "Contract",
    "PaperlessBilling",
    "PaymentMethod",
    "MonthlyCharges",
    "TotalCharges",
    "Churn",
]
YES_NO = {"Yes", "No"}
ADDONS = [
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
]
ALLOWED = {
    "gender": {"Male", "Female"},
    "SeniorCitizen": {0, 1},
    "Partner": YES_NO,
    "Dependents": YES_NO,
    "PhoneService": YES_NO,
    "MultipleLines": YES_NO | {"No phone service"},
    "InternetService": {"DSL", "Fiber optic", "No"},
    **dict.fromkeys(ADDONS, YES_NO | {"No internet service"}),
    "Contract": {"Month-to-month", "One year", "Two year"},
    "PaperlessBilling": YES_NO,
    "PaymentMethod": {
        "Electronic check",
        "Mailed check",
        "Bank transfer (automatic)",
        "Credit card (automatic)",
    },
    "Churn": YES_NO,
}


@pytest.fixture(scope="module")
def telco() -> tuple[pd.DataFrame, np.ndarray]:
    return telco_frame(SPEC)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> TelcoSummary:
    return generate_telco(SPEC, tmp_path_factory.mktemp("telco") / "telco.csv")


def test_columns_values_and_ids(telco: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, probability = telco
    assert list(frame.columns) == EXPECTED_COLUMNS
    assert len(frame) == len(probability) == SPEC.n_customers + SPEC.score_customers
    for column, allowed in ALLOWED.items():
        assert set(frame[column].unique()) == allowed, column
    assert frame["customerID"].is_unique
    assert frame["customerID"].str.fullmatch(r"\d{4}-[A-Z]{5}").all()
    assert frame["tenure"].between(0, 72).all() and frame["tenure"].dtype.kind == "i"
    assert frame["SeniorCitizen"].dtype.kind == "i"
    assert frame["MonthlyCharges"].between(18.25, 118.75).all()
    assert (frame["MonthlyCharges"] == frame["MonthlyCharges"].round(2)).all()
    assert ((probability > 0) & (probability < 1)).all()


def test_no_phone_and_no_internet_rules(telco: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, _ = telco
    no_phone = frame["PhoneService"] == "No"
    assert ((frame["MultipleLines"] == "No phone service") == no_phone).all()
    no_internet = frame["InternetService"] == "No"
    for addon in ADDONS:
        assert ((frame[addon] == "No internet service") == no_internet).all(), addon
    assert not (no_phone & no_internet).any(), "every customer holds some service"


def test_total_charges_blank_exactly_at_tenure_zero(telco: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, _ = telco
    blank = frame["TotalCharges"] == " "
    assert blank.sum() >= 3
    assert (blank == (frame["tenure"] == 0)).all()
    for part in (frame.iloc[: SPEC.n_customers], frame.iloc[SPEC.n_customers :]):
        assert (part["tenure"] == 0).any(), "both files hold a few never-billed customers"
    billed = frame[~blank]
    total = billed["TotalCharges"].astype(float)
    assert (total == total.round(2)).all()
    expected = billed["tenure"] * billed["MonthlyCharges"]
    assert ((total - expected).abs() <= 0.11 * expected + 0.01).all()
    first_month = billed["tenure"] == 1
    assert (total[first_month] == billed.loc[first_month, "MonthlyCharges"]).all()


def test_churn_rate_and_mechanism(telco: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, probability = telco
    churned = frame["Churn"] == "Yes"
    assert 0.20 <= churned.mean() <= 0.33
    assert abs(probability.mean() - churned.mean()) < 0.03
    by_contract = churned.groupby(frame["Contract"]).mean()
    assert by_contract["Month-to-month"] > by_contract["One year"] > by_contract["Two year"]
    assert by_contract["Month-to-month"] - by_contract["Two year"] > 0.25
    assert frame.loc[churned, "tenure"].mean() < frame.loc[~churned, "tenure"].mean() - 10
    by_internet = churned.groupby(frame["InternetService"]).mean()
    assert by_internet["Fiber optic"] > by_internet["DSL"]


def test_files_layout_and_raw_blank(written: TelcoSummary) -> None:
    assert written.rows == SPEC.n_customers and written.score_rows == SPEC.score_customers
    assert written.score_path == written.path.with_name("telco_to_score.csv")
    training = pd.read_csv(written.path, dtype={"TotalCharges": str}, keep_default_na=False)
    to_score = pd.read_csv(written.score_path, dtype={"TotalCharges": str}, keep_default_na=False)
    assert list(training.columns) == EXPECTED_COLUMNS
    assert list(to_score.columns) == EXPECTED_COLUMNS[:-1]
    assert len(training) == written.rows and len(to_score) == written.score_rows
    assert not set(training["customerID"]) & set(to_score["customerID"])
    assert written.churn_rate == pytest.approx((training["Churn"] == "Yes").mean())
    frame, _ = telco_frame(SPEC)
    assert training["customerID"].tolist() == frame["customerID"].iloc[: SPEC.n_customers].tolist()

    text = written.path.read_text()
    assert '""' not in text
    blank_lines = [line for line in text.splitlines()[1:] if ", ," in line]
    assert len(blank_lines) == (training["tenure"] == 0).sum() >= 1
    for line in blank_lines:  # no value holds a comma, so splitting is exact
        fields = line.split(",")
        assert fields[EXPECTED_COLUMNS.index("tenure")] == "0"
        assert fields[EXPECTED_COLUMNS.index("TotalCharges")] == " "
    # TotalCharges is the last column of the to-score file, so its blanks end the line: `...,96.0, `.
    score_lines = written.score_path.read_text().splitlines()[1:]
    assert sum(line.endswith(", ") for line in score_lines) == (to_score["tenure"] == 0).sum() >= 1

    marker = json.loads(written.path.with_name("telco.csv.generated.json").read_text())
    assert marker["spec"] == {"n_customers": 2000, "score_customers": 300, "seed": 7}
    assert marker["rows"] == SPEC.n_customers
    assert not list(written.path.parent.glob(".*")), "no temp files left behind"


def test_same_seed_same_bytes_other_seed_differs(written: TelcoSummary, tmp_path: Path) -> None:
    again = generate_telco(SPEC, tmp_path / "telco.csv")
    assert again.path.read_bytes() == written.path.read_bytes()
    assert again.score_path.read_bytes() == written.score_path.read_bytes()
    other = generate_telco(TelcoSpec(n_customers=2000, score_customers=300, seed=8), tmp_path / "other.csv")
    assert other.path.read_bytes() != written.path.read_bytes()


def test_refuses_to_overwrite_data_it_did_not_generate(tmp_path: Path) -> None:
    path = tmp_path / "telco.csv"
    path.write_text("customerID,Churn\n0001-ABCDE,No\n")
    with pytest.raises(ConfigError, match=r"not generated data.*data\.path"):
        generate_telco(SPEC, path)
    assert path.read_text() == "customerID,Churn\n0001-ABCDE,No\n"
    assert not path.with_name("telco_to_score.csv").exists()


def test_refuses_to_overwrite_a_foreign_to_score_file(tmp_path: Path) -> None:
    score_path = tmp_path / "telco_to_score.csv"
    score_path.write_text("mine\n")
    with pytest.raises(ConfigError, match="not generated data"):
        generate_telco(SPEC, tmp_path / "telco.csv")
    assert score_path.read_text() == "mine\n"


def test_regenerates_over_its_own_files(tmp_path: Path) -> None:
    path = tmp_path / "telco.csv"
    small = TelcoSpec(n_customers=200, score_customers=50, seed=1)
    generate_telco(small, path)
    summary = generate_telco(TelcoSpec(n_customers=300, score_customers=20, seed=1), path)
    assert summary.rows == 300 and len(pd.read_csv(path)) == 300
    assert len(pd.read_csv(summary.score_path)) == 20


def test_spec_rejects_impossible_sizes() -> None:
    with pytest.raises(ValueError, match="n_customers"):
        TelcoSpec(n_customers=0)
    with pytest.raises(ValueError, match="score_customers"):
        TelcoSpec(score_customers=-1)
