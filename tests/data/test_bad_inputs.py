"""The bad-input corpus: each broken input is refused with a message naming table, column, rule and rows."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from campaign_helpers import write_campaigns
from safety_helpers import StageRun, run_stage

from features.validation import DataContractError, load_tables

# A small valid data set, as CSV text per table. Each case below breaks one thing.
VALID = {
    "customers": """customer_id,signup_date,segment,region
1,2023-01-05,consumer,north
2,2023-02-10,consumer,south
3,2023-03-15,small_business,north
""",
    "subscriptions": """customer_id,product,product_category,start_date,end_date,monthly_price,contract_term_months,bundle_id
1,broadband_500,broadband,2023-01-10,,35.0,12,B1
1,tv_basic,tv,2023-01-10,,12.5,12,B1
2,mobile_s,mobile,2023-02-12,2023-08-12,15.0,0,
3,broadband_100,broadband,2023-03-20,,25.0,24,
""",
    "orders": """customer_id,order_date,product_category,amount
1,2023-02-01,devices,199.0
2,2023-03-01,accessories,19.9
""",
    "complaints": """customer_id,opened_at,resolved_at,category,severity,satisfaction
1,2023-04-01 09:00:00,2023-04-03 17:30:00,billing,medium,4
3,2023-05-02 11:00:00,,network,high,
""",
    "events": """customer_id,event_time,event_type,quantity
1,2023-04-01 08:00:00,login,
2,2023-04-02 21:15:00,usage,3.5
""",
    "referrals": """referrer_customer_id,referred_customer_id,referral_date
1,3,2023-03-01
""",
    "offers": """customer_id,offered_at,action,accepted,cost
2,2023-07-01 10:00:00,discount,false,10.0
""",
    "campaigns": """campaign_id,customer_id,action,assigned_at,treated,propensity,cost
C2023-07,1,discount,2023-07-01,false,0.5,
C2023-07,2,discount,2023-07-01,true,0.5,10.0
C2023-07,3,price_lock,2023-07-03,true,,0.0
""",
}


def write(folder: Path, tables: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in tables.items():
        (folder / f"{name}.csv").write_text(text)
    return folder


def replace(table: str, old: str, new: str) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        path = folder / f"{table}.csv"
        text = path.read_text()
        assert old in text, f"test setup: {old!r} not in {table}"
        path.write_text(text.replace(old, new, 1))

    return change


def remove(table: str) -> Callable[[Path], None]:
    return lambda folder: (folder / f"{table}.csv").unlink()


def as_parquet(table: str, frame: pd.DataFrame) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        (folder / f"{table}.csv").unlink()
        frame.to_parquet(folder / f"{table}.parquet", index=False)

    return change


def several(*changes: Callable[[Path], None]) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        for one in changes:
            one(folder)

    return change


def garbage_parquet(folder: Path) -> None:
    (folder / "orders.csv").unlink()
    (folder / "orders.parquet").write_text("this is not a parquet file")


def duplicate_format(folder: Path) -> None:
    pd.read_csv(folder / "orders.csv").to_parquet(folder / "orders.parquet", index=False)


# id, change, table, column, rule, phrases that the message must contain
CASES = [
    ("missing_column", lambda f: (f / "customers.csv").write_text("customer_id,segment\n1,a\n2,b\n3,c\n"), "customers",
     "signup_date", "required_column", ["required column 'signup_date' is missing", "the file has: customer_id"]),
    ("misnamed_column", replace("orders", "customer_id,order_date", "Customer_ID,order_date"), "orders",
     "customer_id", "required_column", ["Rename 'Customer_ID' to 'customer_id'"]),
    ("wrong_type_number", replace("subscriptions", ",35.0,", ",35 EUR,"), "subscriptions", "monthly_price",
     "type", ["1 of 4 rows have values that are not numbers", "line 2", "monthly_price='35 EUR'"]),
    ("wrong_storage_type", as_parquet("customers", pd.DataFrame(
        {"customer_id": [1, 2, 3], "signup_date": [20230105, 20230210, 20230315]})), "customers", "signup_date",
     "type", ["stored as BIGINT, which cannot hold dates"]),
    ("duplicate_ids", replace("customers", "3,2023-03-15", "2,2023-03-15"), "customers", "customer_id",
     "unique", ["customer_id=2 appears 2 times, at line 3, line 4"]),
    ("orphan_rows", replace("orders", "2,2023-03-01", "42,2023-03-01"), "orders", "customer_id",
     "references customers.customer_id", ["1 row(s) refer to 1 customer id(s) that are not in the customers",
                                          "line 3: customer_id='42'"]),
    ("end_before_start", replace("subscriptions", "2023-02-12,2023-08-12", "2023-02-12,2023-01-12"),
     "subscriptions", "end_date", "end_date >= start_date",
     ["end_date before start_date", "line 4", "end_date='2023-01-12'", "leave end_date empty"]),
    ("resolved_before_opened", replace("complaints", "2023-04-03 17:30:00", "2023-03-03 17:30:00"), "complaints",
     "resolved_at", "resolved_at >= opened_at", ["resolved_at before opened_at", "line 2"]),
    ("negative_amount", replace("orders", ",19.9", ",-19.9"), "orders", "amount", ">= 0",
     ["values below 0", "amount='-19.9'"]),
    ("empty_table", lambda f: (f / "orders.csv").write_text("customer_id,order_date,product_category,amount\n"),
     "orders", None, "not_empty", ["the table has no rows", "remove the file if you have no orders"]),
    ("unparseable_dates", replace("customers", "2023-02-10", "10/02/2023"), "customers", "signup_date", "type",
     ["not dates (YYYY-MM-DD)", "line 3", "signup_date='10/02/2023'", "ISO YYYY-MM-DD"]),
    ("mixed_time_zones", replace("events", "2023-04-02 21:15:00", "2023-04-02T21:15:00+02:00"), "events",
     "event_time", "one_time_zone", ["mixed time zones: 1 values carry a UTC offset and 1 do not"]),
    ("stray_delimiter", replace("orders", "1,2023-02-01,devices,199.0", "1,2023-02-01,devices,phone,199.0"),
     "orders", None, "csv_structure", ["line 2", "too many columns", "stray delimiter"]),
    ("disallowed_value", replace("complaints", ",network,high,", ",network,urgent,"), "complaints", "severity",
     "allowed_values", ["values outside low, medium, high, critical", "severity='urgent'"]),
    ("out_of_range", replace("complaints", ",medium,4", ",medium,7"), "complaints", "satisfaction", "<= 5",
     ["values above 5", "satisfaction='7'"]),
    ("missing_value", replace("customers", "2,2023-02-10", "2,"), "customers", "signup_date", "not_null",
     ["1 of 3 rows have empty values", "line 3"]),
    ("no_customers_table", remove("customers"), "customers", None, "required_table", ["no customers table found"]),
    ("no_activity_table", several(remove("subscriptions"), remove("orders"), remove("events")),
     "subscriptions|orders|events", None, "activity_table", ["churn needs at least one of them"]),
    ("two_inputs_for_a_table", duplicate_format, "orders", None, "one_input_per_table",
     ["found several inputs for orders", "keep exactly one"]),
    ("fractional_term", replace("subscriptions", ",12.5,12,B1", ",12.5,1.5,B1"), "subscriptions",
     "contract_term_months", "type", ["not whole numbers", "contract_term_months='1.5'"]),
    ("not_a_boolean", replace("offers", ",false,", ",maybe,"), "offers", "accepted", "type",
     ["not true/false values", "accepted='maybe'"]),
    ("infinite_amount", replace("orders", ",199.0", ",inf"), "orders", "amount", "type", ["not numbers"]),
    ("unreadable_file", garbage_parquet, "orders", None, "readable", ["cannot be read as PARQUET"]),
    ("orphan_referral", replace("referrals", "1,3,", "1,99,"), "referrals", "referred_customer_id",
     "references customers.customer_id", ["not in the customers table"]),
    ("propensity_zero", replace("campaigns", ",false,0.5,", ",false,0,"), "campaigns", "propensity", "(0, 1]",
     ["1 of 3 rows have values outside (0, 1]", "line 2: customer_id='1', propensity='0'", "must be above 0"]),
    ("propensity_above_one", replace("campaigns", ",true,0.5,", ",true,1.5,"), "campaigns", "propensity",
     "(0, 1]", ["values outside (0, 1]", "line 3: customer_id='2', propensity='1.5'"]),
    ("treated_and_control_in_one_campaign", replace("campaigns", "C2023-07,3,price_lock,2023-07-03,true",
     "C2023-07,1,discount,2023-07-01,true"), "campaigns", "treated", "single_valued",
     ["1 value(s) of campaign_id, customer_id hold more than one treated (2 of 3 rows)",
      "both treated and control in one campaign", "campaign_id='C2023-07', customer_id='1' holds "
      "treated=false and true, at line 2, line 4"]),
    ("campaign_assignment_twice", replace("campaigns", "C2023-07,3,price_lock,2023-07-03", "C2023-07,2,discount,2023-07-01"),
     "campaigns", "campaign_id,customer_id", "unique",
     ["campaign_id, customer_id=C2023-07, 2 appears 2 times, at line 3, line 4"]),
    ("campaign_of_an_unknown_customer", replace("campaigns", "C2023-07,3,", "C2023-07,7,"), "campaigns",
     "customer_id", "references customers.customer_id", ["line 4: customer_id='7'"]),
]  # fmt: skip


def test_valid_corpus_base_passes(tmp_path: Path) -> None:
    tables = load_tables(write(tmp_path, VALID))
    assert set(tables.report.present) == set(VALID)
    assert tables.report.tables["subscriptions"].rows == 4


@pytest.mark.parametrize(
    ("case", "change", "table", "column", "rule", "phrases"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_with_an_actionable_message(
    tmp_path: Path, case: str, change, table: str, column: str | None, rule: str, phrases: list[str]
) -> None:
    folder = write(tmp_path / case, VALID)
    change(folder)
    with pytest.raises(DataContractError) as caught:
        load_tables(folder)
    matching = [v for v in caught.value.violations if v.table == table and v.rule == rule]
    assert matching, f"no {table}/{rule} violation in:\n{caught.value}"
    violation = matching[0]
    assert violation.column == column
    text = violation.render()
    for phrase in phrases:
        assert phrase in text, f"{phrase!r} not in:\n{text}"
    # The whole error names the table (and column) so a person can find the problem.
    assert f"[{table}.{column}]" in str(caught.value) if column else f"[{table}]" in str(caught.value)
    assert violation.hint or rule == "readable"


def test_corpus_is_at_least_fifteen_cases() -> None:
    assert len({case[0] for case in CASES}) >= 15


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    folder = write(tmp_path, VALID)
    replace("orders", ",19.9", ",-19.9")(folder)
    replace("complaints", ",network,high,", ",network,urgent,")(folder)
    with pytest.raises(DataContractError) as caught:
        load_tables(folder)
    assert {v.table for v in caught.value.violations} == {"orders", "complaints"}


# -- campaigns, as a user runs it: `python -m pipeline.validate` on the demo tables with a campaigns table -----
def demo_campaigns(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    def fault(folder: Path) -> None:
        write_campaigns(change(pd.read_parquet(folder / "campaigns.parquet")), folder)

    return fault


def at(row: int, **values: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        for column, value in values.items():
            frame.loc[row, column] = value
        return frame

    return change


def repeated(row: int, **values: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda frame: pd.concat([frame, at(row, **values)(frame).iloc[[row]]], ignore_index=True)


CAMPAIGN_CASES = [
    ("propensity_zero", demo_campaigns(at(3, propensity=0.0)),
     ["[campaigns.propensity] rule '(0, 1]'", "1 of", "values outside (0, 1]", "row 4: customer_id=", "propensity='0.0'"]),
    ("propensity_above_one", demo_campaigns(at(0, propensity=1.5)),
     ["[campaigns.propensity] rule '(0, 1]'", "row 1: customer_id=", "propensity='1.5'"]),
    ("unknown_action", demo_campaigns(lambda f: at(5, action="upsell")(at(2, action="upsell")(f))),
     ["[campaigns.action] rule 'known_action'", "2 row(s) name actions not in actions.catalogue: upsell (2)",
      "row 3: campaign_id=", "row 6: campaign_id=", "action='upsell'"]),
    ("treated_and_control_in_one_campaign", demo_campaigns(lambda f: repeated(0, treated=not f.loc[0, "treated"])(f)),
     ["[campaigns.treated] rule 'single_valued'", "a customer is both treated and control in one campaign",
      "treated=false and true, at row 1, row "]),
    ("assignment_given_twice", demo_campaigns(repeated(0)),
     ["[campaigns.campaign_id,customer_id] rule 'unique'", "appears 2 times, at row 1, row "]),
]  # fmt: skip


@pytest.fixture(scope="module")
def demo_tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The debug demo tables (with their campaigns), generated by the validate stage."""
    root = tmp_path_factory.mktemp("demo")
    done = run_stage("validate", f"paths.root_dir={root}", "debug=default")
    assert done.returncode == 0, done.output
    assert (root / "data" / "demo_debug" / "campaigns.parquet").is_file()
    return root / "data" / "demo_debug"


def validate_copy(demo_tables: Path, tmp_path: Path, fault: Callable[[Path], None]) -> StageRun:
    tables = tmp_path / "tables"
    shutil.copytree(demo_tables, tables)
    fault(tables)
    return run_stage(
        "validate", f"paths.root_dir={tmp_path}", "debug=default", f"data.path={tables}",
        "data.generate_if_missing=false",
    )  # fmt: skip


@pytest.mark.parametrize(("case", "fault", "phrases"), CAMPAIGN_CASES, ids=[c[0] for c in CAMPAIGN_CASES])
def test_a_broken_campaigns_table_stops_the_stage_with_one_clear_message(
    demo_tables: Path, tmp_path: Path, case: str, fault: Callable[[Path], None], phrases: list[str]
) -> None:
    done = validate_copy(demo_tables, tmp_path, fault)
    assert done.returncode == 2, done.output
    assert "Traceback" not in done.output
    assert done.output.count("The input data breaks the data contract: 1 problem(s) in campaigns.") == 1
    for phrase in phrases:
        assert phrase in done.output, f"{phrase!r} not in:\n{done.output}"


def test_campaigns_without_controls_or_dated_after_the_data_are_valid(
    demo_tables: Path, tmp_path: Path
) -> None:
    """No control rows is no contract problem (those actions stay assumed); rows after the data end are ignored
    by training and scoring (point in time), not refused."""

    def treated_only_and_later(frame: pd.DataFrame) -> pd.DataFrame:
        later = (
            frame.drop_duplicates("customer_id")
            .head(20)
            .assign(campaign_id="C2024-03", assigned_at=date(2024, 3, 4))
        )
        return pd.concat([frame[frame["treated"]], later], ignore_index=True)

    done = validate_copy(demo_tables, tmp_path, demo_campaigns(treated_only_and_later))
    assert done.returncode == 0, done.output
    assert "input data meets the data contract" in done.output
    assert "campaigns" in done.output and "2024-03-04" in done.output
