"""Campaign training data: each campaign row with its customer's features at the last snapshot on or before the
assignment (point in time) and its outcomes from the customer tables, computed as the module says."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from campaign_helpers import synthetic_campaigns, write_campaigns
from omegaconf import OmegaConf
from test_leakage import future_rows

from features.contract import ContractSettings
from features.demo.dated import DemoSpec, generate_demo
from features.engine import build_feature_table
from features.validation import DataContractError, ValidatedTables, load_tables
from models.campaign_data import ROW_COLUMNS, campaign_data

CONF = Path(__file__).resolve().parents[2] / "conf"
LABEL = OmegaConf.to_container(OmegaConf.load(CONF / "label" / "contractual.yaml"))
CATALOGUE = list(OmegaConf.load(CONF / "actions" / "default.yaml").catalogue)
TABLES = ("customers", "subscriptions", "orders", "complaints", "events", "referrals", "offers", "campaigns")
DATA_END = date(2024, 1, 1)
DATES = [date(2022, m, 1) for m in range(4, 13)] + [date(2023, m, 1) for m in range(1, 13)]
CUTOFF = date(2022, 12, 15)  # inside a month: a snapshot after an assignment would see rows after it


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    root = tmp_path_factory.mktemp("campaign_data")
    summary = generate_demo(
        DemoSpec(n_customers=700, months=24, seed=8, chunk_size=700), root / "t", root / "truth"
    )
    # The tests here need rows they know (some propensities empty), not the generator's own campaigns.
    write_campaigns(
        synthetic_campaigns(pd.read_parquet(summary.tables_dir / "subscriptions.parquet")), summary.tables_dir
    )
    return {name: pd.read_parquet(summary.tables_dir / f"{name}.parquet") for name in TABLES}


def built(tables: dict[str, pd.DataFrame], folder: Path) -> tuple[ValidatedTables, pd.DataFrame]:
    """The tables validated, and their feature table on the month starts of DATES."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    validated = load_tables(folder, settings=ContractSettings(allow_overlapping_subscriptions=True))
    build_feature_table(
        validated.con,
        set(validated.report.present),
        OmegaConf.to_container(OmegaConf.load(CONF / "features" / "default.yaml")),
        {"data_end": str(DATA_END)},
        LABEL,
        event_types=["login", "app_session", "usage", "support_page_view", "feature_use"],
        dates=DATES,
    )
    return validated, validated.con.execute("SELECT * FROM feature_table").df()


def data_of(validated: ValidatedTables, snapshots: pd.DataFrame, **options: object):
    return campaign_data(
        validated, snapshots, LABEL, CATALOGUE, data_end=DATA_END, margin_rate=0.35,
        annual_discount_rate=0.10, **options,
    )  # fmt: skip


def test_each_row_gets_its_customers_features_at_the_last_snapshot_before_its_assignment(
    demo: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    validated, snapshots = built(demo, tmp_path / "t")
    data = data_of(validated, snapshots)
    rows, features = data.rows, data.features
    assert list(rows.columns) == list(ROW_COLUMNS) and len(rows) == len(features) > 500
    assert (rows.index == features.index).all()
    assigned, observed = pd.to_datetime(rows["assigned_at"]), pd.to_datetime(rows["observation_date"])
    # The demo's month-start snapshot of the assignment's month: on or before it, less than a month before.
    assert (observed <= assigned).all() and (assigned - observed < pd.Timedelta(days=31)).all()
    assert (observed.dt.day == 1).all()
    keyed = snapshots.assign(observation_date=pd.to_datetime(snapshots["observation_date"])).set_index(
        ["customer_id", "observation_date"]
    )
    expected = keyed.loc[list(zip(rows["customer_id"], observed, strict=True)), list(features.columns)]
    pd.testing.assert_frame_equal(features, expected.reset_index(drop=True), check_names=False)
    assert "monthly_revenue" in features and "offers_received" in features
    # Each campaign-action's empty propensities are its treated share; given ones are kept.
    given = demo["campaigns"].set_index(["campaign_id", "customer_id"])["propensity"]
    merged = rows.join(given.rename("given"), on=["campaign_id", "customer_id"])
    share = merged.groupby(["campaign_id", "action"])["treated"].transform("mean")
    filled = merged["given"].isna()
    assert filled.any() and np.allclose(merged.loc[filled, "propensity"], share[filled])
    assert np.allclose(merged.loc[~filled, "propensity"], merged.loc[~filled, "given"])
    # Outcomes: known when their window ends by the data end, and plausible.
    late = assigned + pd.DateOffset(months=12) > pd.Timestamp(DATA_END)
    assert rows.loc[late, "margin_w"].isna().all() and rows.loc[~late, "margin_w"].notna().all()
    assert set(rows.loc[~late, "survive_w"].unique()) == {0.0, 1.0}
    assert rows["churn_h"].dropna().isin([0.0, 1.0]).all() and rows["churn_h"].notna().mean() > 0.8
    # Those who are gone at the window's end churned more often within the horizon.
    survived = rows.loc[~late & rows["churn_h"].notna()]
    assert survived.groupby("survive_w")["churn_h"].mean()[0.0] > survived["churn_h"].mean()


def test_rows_and_tables_after_the_assignment_change_no_feature(
    demo: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    """Campaign rows and customer rows (orders, events, complaints, subscriptions, ...) dated on or after a
    cutoff change no feature of a campaign row assigned before it."""
    validated, snapshots = built(demo, tmp_path / "base")
    base = data_of(validated, snapshots)
    changed, changed_snapshots = built(
        future_rows(demo, CUTOFF, np.random.default_rng(4)), tmp_path / "later"
    )
    later = data_of(changed, changed_snapshots)
    assert len(later.rows) > len(base.rows)  # the later campaign rows are there

    def before_cutoff(data) -> pd.DataFrame:
        keep = pd.to_datetime(data.rows["assigned_at"]) < pd.Timestamp(CUTOFF)
        joined = pd.concat([data.rows.loc[keep, ["campaign_id", "customer_id"]], data.features[keep]], axis=1)
        return joined.sort_values(["campaign_id", "customer_id"]).reset_index(drop=True)

    before = before_cutoff(base)
    assert len(before) > 300
    pd.testing.assert_frame_equal(before, before_cutoff(later))


def test_rows_on_or_after_as_of_are_ignored_with_one_note(
    demo: dict[str, pd.DataFrame], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    validated, snapshots = built(demo, tmp_path / "t")
    as_of = date(2023, 6, 1)
    with caplog.at_level("INFO", logger="models.campaign_data"):
        data = data_of(validated, snapshots, as_of=as_of)
    later = int((pd.to_datetime(demo["campaigns"]["assigned_at"]) >= pd.Timestamp(as_of)).sum())
    assert later > 0 and (pd.to_datetime(data.rows["assigned_at"]) < pd.Timestamp(as_of)).all()
    note = f"campaigns: {later:,} row(s) assigned on or after 2023-06-01 ignored (not known on that date)"
    assert note in data.notes and [r.getMessage() for r in caplog.records].count(note) == 1


# -- a small case by hand -----------------------------------------------------------------------------------
def hand_folder(folder: Path, campaigns: str) -> ValidatedTables:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "customers.csv").write_text(
        "customer_id,signup_date\n1,2022-01-01\n2,2022-01-01\n3,2022-01-01\n"
    )
    (folder / "subscriptions.csv").write_text(
        "customer_id,product,product_category,start_date,end_date,monthly_price,contract_term_months,bundle_id\n"
        "1,broadband,broadband,2022-01-01,,30.0,0,\n"
        "2,mobile,mobile,2022-01-01,2023-04-15,20.0,0,\n"
        "3,tv,tv,2022-01-01,,10.0,0,\n"
        "3,extra,tv,2023-05-01,,5.0,0,\n"
    )
    (folder / "campaigns.csv").write_text(
        "campaign_id,customer_id,action,assigned_at,treated,propensity,cost\n" + campaigns
    )
    return load_tables(folder)


HAND_CAMPAIGNS = """C0,1,discount,2023-02-10,true,0.5,10
C1,1,discount,2023-03-10,true,0.5,10
C1,2,discount,2023-03-10,false,0.5,
C1,3,discount,2023-03-10,true,,10
C2,1,price_lock,2023-11-20,false,0.2,
C3,2,price_lock,2023-12-15,true,0.2,5
"""
HAND_SNAPSHOTS = pd.DataFrame(
    {
        "customer_id": ["1", "2", "3", "1", "3"],
        "observation_date": [date(2023, 3, 1)] * 3 + [date(2023, 11, 1)] * 2,
        "tenure_days": [424.0, 424.0, 424.0, 669.0, 669.0],
        "churned": [0.0, 1.0, 0.0, None, None],
    }
)


def test_outcomes_equal_a_hand_computation(tmp_path: Path) -> None:
    validated = hand_folder(tmp_path, HAND_CAMPAIGNS)
    data = campaign_data(
        validated, HAND_SNAPSHOTS, LABEL, CATALOGUE, data_end=DATA_END, margin_rate=0.5,
        annual_discount_rate=0.10, window_months=3, as_of=date(2023, 12, 1),
    )  # fmt: skip
    rows = data.rows.set_index(["campaign_id", "customer_id"])
    # C0 is assigned before the first snapshot, C3 on the scoring date's far side: both left out and said.
    assert list(rows.index) == [("C1", "1"), ("C1", "2"), ("C1", "3"), ("C2", "1")]
    assert (
        "campaigns: 1 row(s) assigned on or after 2023-12-01 ignored (not known on that date)" in data.notes
    )
    assert any("1 of 5 row(s) left out" in note for note in data.notes)
    assert list(rows["observation_date"]) == [date(2023, 3, 1)] * 3 + [date(2023, 11, 1)]
    assert list(data.features["tenure_days"]) == [424.0, 424.0, 424.0, 669.0]
    assert list(data.features.columns) == ["tenure_days"]
    assert list(rows["propensity"]) == [0.5, 0.5, pytest.approx(2 / 3), 0.2]  # empty: C1-discount's share
    q = 1 / 1.10 ** (1 / 12)  # a month's discount factor
    # Revenue at 2023-04-10, 05-10, 06-10 (prices held the day before): customer 1 holds 30 throughout;
    # customer 2 ends on 04-15, so only the first month; customer 3 holds 10, then 15 from 05-01.
    expected_margin = [0.5 * 30 * (q + q**2 + q**3), 0.5 * 20 * q, 0.5 * (10 * q + 15 * q**2 + 15 * q**3)]
    assert list(rows["margin_w"].iloc[:3]) == pytest.approx(expected_margin)
    assert list(rows["survive_w"].iloc[:3]) == [1.0, 0.0, 1.0]
    # The 90-day label from 03-10: customer 2's only subscription ends within it and does not restart.
    assert list(rows["churn_h"].iloc[:3]) == [0.0, 1.0, 0.0]
    # C2 (2023-11-20): its 3-month window and its 90-day label window pass the data end.
    assert np.isnan(rows.loc[("C2", "1"), ["churn_h", "survive_w", "margin_w"]].to_numpy(float)).all()
    assert list(rows["treated"]) == [True, False, True, False]


def test_an_unknown_action_is_refused_naming_table_column_actions_and_lines(tmp_path: Path) -> None:
    validated = hand_folder(
        tmp_path, HAND_CAMPAIGNS + "C4,3,upsell,2023-06-01,true,0.5,1\nC4,2,upsell,2023-06-01,false,0.5,\n"
        "C4,1,call_them,2023-06-01,true,0.5,1\n",
    )  # fmt: skip
    with pytest.raises(DataContractError) as caught:
        campaign_data(
            validated, HAND_SNAPSHOTS, LABEL, CATALOGUE, data_end=DATA_END, margin_rate=0.5,
            annual_discount_rate=0.1,
        )  # fmt: skip
    [violation] = caught.value.violations
    assert (violation.table, violation.column, violation.rule) == ("campaigns", "action", "known_action")
    text = str(caught.value)
    assert (
        "[campaigns.action] rule 'known_action': 3 row(s) name actions not in actions.catalogue: upsell (2), call_them (1)"
        in text
    )
    assert "line 8: campaign_id='C4', customer_id='3', action='upsell'" in text
    assert "line 10: campaign_id='C4', customer_id='1', action='call_them'" in text
    assert "service_recovery_call" in violation.hint


def test_no_campaigns_table_gives_no_rows(tmp_path: Path) -> None:
    validated = hand_folder(tmp_path, HAND_CAMPAIGNS)
    (tmp_path / "campaigns.csv").unlink()
    validated = load_tables(tmp_path)
    data = campaign_data(
        validated,
        HAND_SNAPSHOTS,
        LABEL,
        CATALOGUE,
        data_end=DATA_END,
        margin_rate=0.5,
        annual_discount_rate=0.1,
    )
    assert data.rows.empty and list(data.rows.columns) == list(ROW_COLUMNS)
    assert list(data.features.columns) == ["tenure_days"] and data.features.empty


def test_synthetic_campaigns_have_treated_and_control_rows_of_active_customers(
    demo: dict[str, pd.DataFrame],
) -> None:
    """The fixture itself: what the tests above rely on."""
    campaigns = demo["campaigns"]
    assert campaigns["treated"].any() and (~campaigns["treated"]).any()
    assert campaigns["customer_id"].isin(demo["customers"]["customer_id"]).all()
    assert not campaigns.duplicated(["campaign_id", "customer_id"]).any()
    again = synthetic_campaigns(demo["subscriptions"])
    pd.testing.assert_frame_equal(again, campaigns.reset_index(drop=True), check_dtype=False)
    assert (pd.to_datetime(campaigns["assigned_at"]) - timedelta(days=0)).dt.day.max() > 1
