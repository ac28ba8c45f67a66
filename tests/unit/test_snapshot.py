"""A flat churn table (data=snapshot): typing of its columns, the role features computed by hand, and a
config or table that does not fit stopping before any work with a message naming the key, column and rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from omegaconf import OmegaConf

from features.engine import FeatureDef
from features.errors import ConfigError
from features.snapshot import (
    RAW,
    SnapshotSpec,
    check_scoring_table,
    check_snapshot,
    feature_name,
    feature_select,
    label_expression,
    plan_snapshot,
    read_snapshot,
)

HEADER = (
    "customerID,gender,SeniorCitizen,Partner,tenure,PhoneService,MultipleLines,InternetService,TechSupport,"
    "Contract,MonthlyCharges,TotalCharges,Notes,Churn"
)
ROWS = [
    "0001-AAAAA,Female,0,Yes,1,No,No phone service,DSL,No,Month-to-month,29.85,29.85,x,No",
    "0002-BBBBB,Male,0,No,34,Yes,No,DSL,Yes,One year,56.95,1889.5,y,No",
    "0003-CCCCC,Male,1,No,2,Yes,Yes,Fiber optic,No,Month-to-month,70.70,151.65,z,Yes",
    "0004-DDDDD,Female,0,Yes,0,Yes,No,No,No internet service,Two year,20.25, ,w,No",
    "0005-EEEEE,Female,1,no,45,Yes,Yes,Fiber optic,Yes,Two year,104.80,4716.0,v,Yes",
]


def telco_spec(path: Path, **changes: Any) -> SnapshotSpec:
    """The spec data=telco gives (conf/data/snapshot.yaml and telco.yaml), for the file at `path`, with
    `changes` to `data`."""
    folder = Path(__file__).resolve().parents[2] / "conf" / "data"
    conf = OmegaConf.merge(*(OmegaConf.load(folder / f"{name}.yaml") for name in ("snapshot", "telco")))
    data = OmegaConf.to_container(conf.data) | {"path": str(path), "drop": ["Notes"]}
    data["roles"]["products"] = {
        "phone": ["PhoneService", "MultipleLines"],
        "internet": ["InternetService", "TechSupport"],
    }
    for key, value in changes.items():
        node = data
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return SnapshotSpec.from_config(data)


def write(tmp_path: Path, rows: list[str] = ROWS, header: str = HEADER) -> Path:
    path = tmp_path / "churn.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def features_of(path: Path, spec: SnapshotSpec) -> tuple[pd.DataFrame, dict[str, Any]]:
    con = duckdb.connect()
    table = read_snapshot(con, spec)
    check_snapshot(con, spec, table, with_label=True)
    planned = plan_snapshot(con, spec, table)
    select = feature_select(
        table, spec.id_column, planned.features, pd.Timestamp("2024-06-30").date(),
        extra=f"{label_expression(spec)} AS churned",
    )  # fmt: skip
    return con.sql(f"{select} ORDER BY {RAW}.__row").df().set_index("customer_id"), planned.sources


def test_feature_names_are_snake_case() -> None:
    assert feature_name("MonthlyCharges") == "monthly_charges"
    assert feature_name("StreamingTV") == "streaming_tv"
    assert feature_name("SeniorCitizen") == "senior_citizen"
    assert feature_name("customerID") == "customer_id"
    assert feature_name("2nd line") == "c_2nd_line"


def test_columns_are_typed_from_their_values_and_roles_computed(tmp_path: Path) -> None:
    frame, sources = features_of(write(tmp_path), telco_spec(write(tmp_path)))
    kinds = {name: source["kind"] for name, source in sources.items()}
    assert kinds["partner"] == "binary" and kinds["phone_service"] == "binary"  # Yes / No (any case)
    assert kinds["senior_citizen"] == "numeric" and kinds["total_charges"] == "numeric"
    assert kinds["gender"] == "categorical" and kinds["multiple_lines"] == "categorical"
    assert "notes" not in frame.columns and "churn" not in frame.columns and "tenure" not in frame.columns
    assert frame["partner"].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]  # 'no' in row 5 reads as No
    assert pd.isna(frame.loc["0004-DDDDD", "total_charges"])  # a blank total is empty, not zero
    assert frame.loc["0002-BBBBB", "total_charges"] == 1889.5
    assert frame["tenure_days"].tolist() == [30.0, 1035.0, 61.0, 0.0, 1370.0]  # months x 30.4375, rounded
    assert frame["monthly_revenue"].tolist() == [29.85, 56.95, 70.70, 20.25, 104.80]
    assert frame["max_term_months"].tolist() == [0.0, 12.0, 0.0, 24.0, 24.0]
    assert frame["month_to_month_share"].tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]
    # products held: PhoneService, MultipleLines, InternetService, TechSupport in these rows
    assert frame["active_products"].tolist() == [1.0, 3.0, 3.0, 1.0, 4.0]
    assert frame["categories_held"].tolist() == [1.0, 2.0, 2.0, 1.0, 2.0]  # phone, internet groups
    assert frame["churned"].tolist() == [0, 0, 1, 0, 1]
    assert frame["gender"].tolist() == ["Female", "Male", "Male", "Female", "Female"]


def test_integer_ids_of_a_parquet_snapshot_stay_integers_and_blank_columns_are_left_out(
    tmp_path: Path,
) -> None:
    path = tmp_path / "churn.parquet"
    pd.DataFrame(
        {
            "id": [10, 20, 30],
            "plan": ["a", "b", "a"],
            "empty": [None, " ", None],
            "left": [True, False, False],
        }
    ).to_parquet(path)
    spec = SnapshotSpec.from_config(
        {
            "path": str(path),
            "id_column": "id",
            "label": {"column": "left", "positive": "true", "negative": "false"},
        }
    )
    frame, sources = features_of(path, spec)
    assert frame.index.tolist() == [10, 20, 30] and frame["churned"].tolist() == [1, 0, 0]
    assert list(sources) == ["plan"]  # a column blank in every row is not used


@pytest.mark.parametrize(
    ("change", "rows", "expected"),
    [
        ({"label.column": "Churned"}, ROWS, ["data.label.column", "'Churned'", "Churn"]),
        ({}, [*ROWS[:2], ROWS[2].replace(",Yes", ",Maybe", 1)[:-3] + "Maybe"], ["data.label", "'Maybe'", "line 4"]),
        ({}, [*ROWS[:4], ROWS[4][:-3]], ["data.label", "line 6", "blank"]),
        ({"roles.products.phone": ["PhoneService", "Lines"]}, ROWS, ["data.roles.products.phone", "'Lines'"]),
        ({"drop": ["Notes", "Remarks"]}, ROWS, ["data.drop", "'Remarks'"]),
        ({"types": {"gender": "numeric"}}, ROWS, ["data.types.gender", "are not numbers", "'Female'", "line 2"]),
        ({}, [ROWS[0].replace(",1,No,", ",one,No,", 1), *ROWS[1:]], ["data.tenure.column", "'one'", "line 2"]),
        ({}, [*ROWS[:1], ROWS[1].replace("One year", "Three year"), *ROWS[2:]],
         ["data.roles.contract.term_months", "'Three year'", "line 3"]),
        ({}, [*ROWS, ROWS[0]], ["data.id_column", "repeat a customer id", "0001-AAAAA", "line 2", "line 7"]),
        ({"roles.monthly_revenue": "customerID"}, ROWS, ["data.roles.monthly_revenue", "already plays another role"]),
    ],
)  # fmt: skip
def test_a_config_or_table_that_does_not_fit_names_key_column_and_rows(
    tmp_path: Path, change: dict[str, Any], rows: list[str], expected: list[str]
) -> None:
    path = write(tmp_path, rows)
    spec = telco_spec(path, **change)
    con = duckdb.connect()
    with pytest.raises(ConfigError) as error:
        check_snapshot(con, spec, read_snapshot(con, spec), with_label=True)
    for text in expected:
        assert text in str(error.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"tenure.unit": "fortnights"}, "data.tenure.unit"),
        ({"label.positive": None}, "data.label.positive"),
        ({"types": {"gender": "text"}}, "data.types.gender"),
        ({"roles.contract": {"column": "Contract"}}, "data.roles.contract"),
        ({"roles.colour": "x"}, "data.roles"),
        ({"labels": "Churn"}, "unknown setting"),
        ({"as_of": "last tuesday"}, "data.as_of"),
    ],
)
def test_a_malformed_snapshot_setting_is_named(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        telco_spec(tmp_path / "churn.csv", **change)


def test_a_table_to_score_must_hold_readable_values_for_the_models_features(tmp_path: Path) -> None:
    train_path = write(tmp_path)
    spec = telco_spec(train_path)
    con = duckdb.connect()
    table = read_snapshot(con, spec)
    planned = plan_snapshot(con, spec, table)
    recorded = planned.manifest(spec)
    features = [FeatureDef(**vars(f)) for f in planned.features]

    to_score = tmp_path / "to_score.csv"
    header = HEADER.removesuffix(",Churn")
    to_score.write_text("\n".join([header, *(r.rsplit(",", 1)[0] for r in ROWS)]) + "\n")
    score_spec = telco_spec(to_score)
    table = read_snapshot(con, score_spec)
    check_scoring_table(con, table, recorded, features)  # no label: fine

    to_score.write_text(
        "\n".join([header, ROWS[0].rsplit(",", 1)[0].replace("Female,0,Yes", "Female,0,Perhaps")]) + "\n"
    )
    table = read_snapshot(con, score_spec)
    with pytest.raises(ConfigError, match=r"column 'Partner' \(partner, binary .*line 2: 'Perhaps'"):
        check_scoring_table(con, table, recorded, features)

    to_score.write_text(
        header.replace(",TechSupport", "")
        + "\n"
        + ROWS[0].rsplit(",", 1)[0].replace(",No,Month", ",Month")
        + "\n"
    )
    table = read_snapshot(con, score_spec)
    with pytest.raises(ConfigError, match=r"lacks|TechSupport"):
        check_scoring_table(con, table, recorded, features)


def test_tuning_a_snapshot_holds_out_a_fold_it_never_tunes_on(make_cfg) -> None:
    from churnwise.settings import with_label_period
    from models.split import SplitSettings
    from models.tuning import validation_pairs

    # the label with its period, as a stage has it
    cfg = with_label_period(make_cfg("data=telco", debug=False))
    rows = pd.DataFrame(
        {"customer_id": [f"c{i}" for i in range(100)], "churned": [i % 4 == 0 for i in range(100)]}
    ).astype({"churned": int})
    settings = SplitSettings.from_config(cfg.split, cfg.label)
    tuning = validation_pairs(settings, rows, int(cfg.tune.validation_dates), int(cfg.tune.seed))
    held_out = set(tuning.holdout["customer_id"])
    assert len(held_out) == 20 and tuning.holdout["churned"].mean() == pytest.approx(0.25)
    assert len(tuning.pairs) == cfg.split.n_folds == 5
    held = [set(v["customer_id"]) for _, v in tuning.pairs]
    assert set().union(*held) == set(rows["customer_id"]) - held_out and sum(len(h) for h in held) == 80
    for fit, validation in tuning.pairs:
        assert not set(fit["customer_id"]) & set(validation["customer_id"])
        assert not (set(fit["customer_id"]) | set(validation["customer_id"])) & held_out  # never tuned on


def test_make_validate_checks_a_snapshot_to_score_without_its_label(tmp_path: Path, make_cfg) -> None:
    from features.checking import validate_snapshot

    path = tmp_path / "to_score.csv"
    path.write_text("\n".join([HEADER.removesuffix(",Churn"), *(r.rsplit(",", 1)[0] for r in ROWS)]) + "\n")
    internet = "data.roles.products.internet=[InternetService,TechSupport]"
    cfg = make_cfg(
        "data=telco",
        f"data.path={path}",
        "data.drop=[Notes]",
        internet,
        "data.roles.products.streaming=[]",
        debug=False,
    )
    planned = validate_snapshot(cfg)
    assert planned.sources["partner"]["kind"] == "binary" and "churn" not in planned.sources
    path.write_text(
        HEADER.removesuffix(",Churn") + "\n" + ROWS[0].rsplit(",", 1)[0].replace(",1,No,", ",x,No,") + "\n"
    )
    with pytest.raises(ConfigError, match=r"data\.tenure\.column.*'x'"):
        validate_snapshot(cfg)
