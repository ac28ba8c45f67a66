"""Unit tests of the demo data generator: spec validation, determinism, schemas, dates, atomic output."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

import features.demo.dated as demo
from features.demo import demo_actions
from features.demo.dated import DemoSpec, DemoSummary, Mechanism, generate_demo
from features.errors import ConfigError
from features.publish import RECORD

# The data contract of the demo tables, written out independently of the generator's own SCHEMAS.
EXPECTED_SCHEMAS: dict[str, list[tuple[str, pa.DataType]]] = {
    "customers": [
        ("customer_id", pa.int64()),
        ("signup_date", pa.date32()),
        ("segment", pa.string()),
        ("region", pa.string()),
        ("channel", pa.string()),
        ("partner_since", pa.date32()),
    ],
    "subscriptions": [
        ("customer_id", pa.int64()),
        ("product", pa.string()),
        ("product_category", pa.string()),
        ("start_date", pa.date32()),
        ("end_date", pa.date32()),
        ("monthly_price", pa.float64()),
        ("contract_term_months", pa.int32()),
        ("bundle_id", pa.string()),
    ],
    "orders": [
        ("customer_id", pa.int64()),
        ("order_date", pa.date32()),
        ("product_category", pa.string()),
        ("amount", pa.float64()),
    ],
    "complaints": [
        ("customer_id", pa.int64()),
        ("opened_at", pa.timestamp("us")),
        ("resolved_at", pa.timestamp("us")),
        ("category", pa.string()),
        ("severity", pa.string()),
        ("satisfaction", pa.int8()),
    ],
    "events": [
        ("customer_id", pa.int64()),
        ("event_time", pa.timestamp("us")),
        ("event_type", pa.string()),
        ("quantity", pa.float64()),
    ],
    "referrals": [
        ("referrer_customer_id", pa.int64()),
        ("referred_customer_id", pa.int64()),
        ("referral_date", pa.date32()),
    ],
    "offers": [
        ("customer_id", pa.int64()),
        ("offered_at", pa.timestamp("us")),
        ("action", pa.string()),
        ("accepted", pa.bool_()),
        ("cost", pa.float64()),
    ],
    "campaigns": [
        ("campaign_id", pa.string()),
        ("customer_id", pa.int64()),
        ("action", pa.string()),
        ("assigned_at", pa.date32()),
        ("treated", pa.bool_()),
        ("propensity", pa.float64()),
        ("cost", pa.float64()),
    ],
}
EXPECTED_TRUTH_SCHEMAS: dict[str, list[tuple[str, pa.DataType]]] = {
    "true_churn_probability": [
        ("customer_id", pa.int64()),
        ("month", pa.date32()),
        ("p_churn", pa.float64()),
    ],
    "true_offer_effects": [
        ("customer_id", pa.int64()),
        ("campaign_id", pa.string()),
        ("offered_at", pa.timestamp("us")),
        ("action", pa.string()),
        ("treated", pa.bool_()),
        ("accepted", pa.bool_()),
        ("targeted", pa.bool_()),
        ("sleeping_dog", pa.bool_()),
        ("hazard_multiplier", pa.float64()),
        ("effect_months", pa.int32()),
        ("moved", pa.bool_()),
    ],
    "true_action_values": [
        ("customer_id", pa.int64()),
        ("as_of", pa.date32()),
        ("action", pa.string()),
        ("p_churn_horizon", pa.float64()),
        ("p_churn_12m", pa.float64()),
        ("expected_margin", pa.float64()),
        ("expected_cost", pa.float64()),
        ("targeted", pa.bool_()),
        ("sleeping_dog", pa.bool_()),
    ],
}
SMALL_SPEC = DemoSpec(n_customers=600, start_date="2022-01-01", months=18, seed=7, chunk_size=250)


def read_tables(directory: Path, names: list[str] | tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Every named Parquet file of a directory as a DataFrame."""
    return {name: pd.read_parquet(directory / f"{name}.parquet") for name in names}


def leftovers(parent: Path) -> list[str]:
    """Hidden temp or backup directories the generator may have left in ``parent``."""
    return sorted(path.name for path in parent.iterdir() if ".tmp-" in path.name or ".bak-" in path.name)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    """The small demo data set (3 chunks), generated once for the read-only tests of this module."""
    root = tmp_path_factory.mktemp("small_demo")
    return generate_demo(SMALL_SPEC, root / "tables", root / "truth")


# ------------------------------------------------------------------ spec
def test_spec_defaults_normalise_the_start_date_string() -> None:
    spec = DemoSpec()
    assert spec.start_date == date(2022, 1, 1)
    assert (spec.n_customers, spec.months, spec.seed, spec.chunk_size) == (20_000, 36, 42, 50_000)
    assert spec.end_date == date(2025, 1, 1)
    assert DemoSpec(start_date=date(2023, 3, 1), months=12).end_date == date(2024, 3, 1)
    assert DemoSpec(start_date=datetime(2023, 3, 1, 0, 0)).start_date == date(2023, 3, 1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_customers": 0}, "n_customers must be positive"),
        ({"months": 11}, "months must be at least 12"),
        ({"chunk_size": 0}, "chunk_size must be positive"),
        ({"seed": -1}, "seed must be non-negative"),
        ({"start_date": "2022-01-15"}, "first day of a month"),
        ({"start_date": "January 2022"}, "ISO date"),
        ({"n_customers": 10.5}, "n_customers must be an integer"),
        ({"mechanism": {"existing_share": 1.5}}, "existing_share"),
        ({"mechanism": {"segment_shares": [0.5, 0.2]}}, "segment_shares"),
        ({"mechanism": {"campaign_treated_shares": [0.5, 0.0]}}, "campaign_treated_shares"),
        ({"mechanism": {"campaign_share_at_risk": 1.2}}, "campaign_share_at_risk"),
        (
            {"mechanism": {"actions": [{"name": "call", "cost": 1.0, "acceptance": 0.5, "target": "vip"}]}},
            r"actions\[call\]\.target must be one of",
        ),
        (
            {"mechanism": {"actions": [{"name": "call", "cost": 1.0, "acceptance": 0.5, "move": "upsell"}]}},
            r"actions\[call\]\.move must be one of",
        ),
        (
            {"mechanism": {"actions": [{"name": "call", "cost": 1.0, "acceptance": 1.5}]}},
            r"actions\[call\]\.acceptance must be a probability",
        ),
        (
            {"mechanism": {"actions": [{"name": "call", "cost": 1.0, "acceptance": 0.5}] * 2}},
            "distinct names",
        ),
    ],
)
def test_spec_rejects_invalid_values(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DemoSpec(**overrides)


def test_spec_builds_the_mechanism_from_a_mapping() -> None:
    spec = DemoSpec(mechanism={"intercept": -3.0, "segment_shares": [0.7, 0.2, 0.1]})
    assert isinstance(spec.mechanism, Mechanism)
    assert spec.mechanism.intercept == -3.0
    assert spec.mechanism.segment_shares == (0.7, 0.2, 0.1)
    assert spec.mechanism.in_term == Mechanism().in_term
    built = DemoSpec(
        mechanism={"actions": [{"name": "call", "cost": 3.0, "acceptance": 0.4, "target": "complaint"}]}
    ).mechanism.actions
    assert built == (demo_actions.ActionTruth("call", 3.0, 0.4, target="complaint"),)


def test_generate_rejects_nested_output_directories(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="separate directories"):
        generate_demo(SMALL_SPEC, tmp_path / "tables", tmp_path / "tables" / "truth")


# ------------------------------------------------------------------ determinism
def test_same_spec_and_seed_give_identical_tables(small_demo: DemoSummary, tmp_path: Path) -> None:
    again = generate_demo(SMALL_SPEC, tmp_path / "tables", tmp_path / "truth")
    for directory, other, names in (
        (small_demo.tables_dir, again.tables_dir, demo.TABLE_NAMES),
        (small_demo.truth_dir, again.truth_dir, demo.TRUTH_NAMES),
    ):
        first, second = read_tables(directory, names), read_tables(other, names)
        for name in names:
            pd.testing.assert_frame_equal(first[name], second[name], check_exact=True)
    assert again.rows == small_demo.rows


def test_a_different_seed_gives_different_tables(small_demo: DemoSummary, tmp_path: Path) -> None:
    spec = DemoSpec(n_customers=600, months=18, seed=8, chunk_size=250)
    other = generate_demo(spec, tmp_path / "tables", tmp_path / "truth")
    for name in ("customers", "subscriptions", "events"):
        first = pd.read_parquet(small_demo.tables_dir / f"{name}.parquet")
        second = pd.read_parquet(other.tables_dir / f"{name}.parquet")
        assert not first.equals(second), f"{name} did not change with the seed"


# ------------------------------------------------------------------ schemas and values
@pytest.mark.parametrize("name", list(EXPECTED_SCHEMAS))
def test_tables_have_exact_columns_and_types(small_demo: DemoSummary, name: str) -> None:
    schema = pq.read_schema(small_demo.tables_dir / f"{name}.parquet")
    assert [(field.name, field.type) for field in schema] == EXPECTED_SCHEMAS[name]


@pytest.mark.parametrize("name", list(EXPECTED_TRUTH_SCHEMAS))
def test_truth_files_have_exact_columns_and_types(small_demo: DemoSummary, name: str) -> None:
    schema = pq.read_schema(small_demo.truth_dir / f"{name}.parquet")
    assert [(field.name, field.type) for field in schema] == EXPECTED_TRUTH_SCHEMAS[name]


def test_tables_hold_only_allowed_values(small_demo: DemoSummary) -> None:
    tables = read_tables(small_demo.tables_dir, demo.TABLE_NAMES)
    customers, subscriptions = tables["customers"], tables["subscriptions"]
    assert set(customers["segment"]) <= {"consumer", "small_business", "enterprise"}
    assert set(customers["channel"]) <= {"online", "retail_store", "telesales", "partner", "referral"}
    assert set(subscriptions["contract_term_months"]) <= {0, 12, 24}
    assert subscriptions["bundle_id"].dropna().str.fullmatch(r"B\d{9}").all()
    assert (subscriptions["monthly_price"] > 0).all()
    assert (tables["orders"]["amount"] >= 0).all()
    assert (tables["offers"]["cost"] >= 0).all()
    campaigns = tables["campaigns"]
    assert set(campaigns["action"]) == {a.name for a in Mechanism().actions}
    assert campaigns["campaign_id"].str.fullmatch(r"C\d{4}-\d{2}").all()
    assert not campaigns.duplicated(["campaign_id", "customer_id"]).any()
    assert campaigns["propensity"].between(0, 1, inclusive="right").all()
    assert campaigns["cost"].isna().eq(~campaigns["treated"]).all()
    assert (campaigns["cost"].dropna() >= Mechanism().contact_cost).all()
    assert set(tables["complaints"]["severity"]) <= {"low", "medium", "high", "critical"}
    satisfaction = tables["complaints"]["satisfaction"].dropna()
    assert satisfaction.between(1, 5).all()
    resolved = tables["complaints"].dropna(subset=["resolved_at"])
    assert (resolved["resolved_at"] >= resolved["opened_at"]).all()
    still_open = tables["complaints"]["resolved_at"].isna()
    assert tables["complaints"].loc[still_open, "satisfaction"].isna().all()
    truth = pd.read_parquet(small_demo.truth_dir / "true_churn_probability.parquet")
    assert truth["p_churn"].between(0, 1).all()
    assert not truth.duplicated(["customer_id", "month"]).any()


def test_nothing_is_dated_on_or_after_the_data_end(small_demo: DemoSummary) -> None:
    tables = read_tables(small_demo.tables_dir, demo.TABLE_NAMES)
    end = pd.Timestamp(small_demo.end_date)
    dated_columns = {
        "customers": ["signup_date", "partner_since"],
        "subscriptions": ["start_date", "end_date"],
        "orders": ["order_date"],
        "complaints": ["opened_at", "resolved_at"],
        "events": ["event_time"],
        "referrals": ["referral_date"],
        "offers": ["offered_at"],
        "campaigns": ["assigned_at"],
    }
    for name, columns in dated_columns.items():
        for column in columns:
            values = pd.to_datetime(tables[name][column]).dropna()
            assert (values < end).all(), f"{name}.{column} has a value on or after {end.date()}"
    truth = pd.read_parquet(small_demo.truth_dir / "true_churn_probability.parquet")
    months = pd.to_datetime(truth["month"])
    assert months.min() >= pd.Timestamp(small_demo.start_date) and months.max() < end
    assert (months.dt.day == 1).all()


def test_subscription_rows_are_coherent(small_demo: DemoSummary) -> None:
    rows = pd.read_parquet(small_demo.tables_dir / "subscriptions.parquet")
    ended = rows.dropna(subset=["end_date"])
    assert (ended["end_date"] >= ended["start_date"]).all()
    start = pd.Timestamp(small_demo.start_date)
    customers = pd.read_parquet(small_demo.tables_dir / "customers.parquet")
    existing = set(customers.loc[pd.to_datetime(customers["signup_date"]) < start, "customer_id"])
    # the existing base's current rows start before the window; everyone else's start within it
    first_start = pd.to_datetime(rows.groupby("customer_id")["start_date"].min())
    assert (first_start[first_start.index.isin(existing)] < start).all()
    assert (first_start[~first_start.index.isin(existing)] >= start).all()


def test_manifest_records_spec_rows_and_version(small_demo: DemoSummary) -> None:
    manifest = json.loads((small_demo.tables_dir / "_manifest.json").read_text())
    assert manifest["generator_version"] == demo.GENERATOR_VERSION
    assert manifest["spec"]["start_date"] == "2022-01-01"
    assert manifest["spec"]["n_customers"] == 600 and manifest["spec"]["chunk_size"] == 250
    for name in demo.TABLE_NAMES:
        assert manifest["rows"][name] == pq.read_metadata(small_demo.tables_dir / f"{name}.parquet").num_rows
    assert small_demo.rows["customers"] == 600


# ------------------------------------------------------------------ chunking
def test_chunks_give_unique_global_ids_and_the_same_structure(
    small_demo: DemoSummary, tmp_path: Path
) -> None:
    customers = pd.read_parquet(small_demo.tables_dir / "customers.parquet")
    assert customers["customer_id"].is_unique
    assert sorted(customers["customer_id"]) == list(range(1, 601))
    assert pq.read_metadata(small_demo.tables_dir / "customers.parquet").num_row_groups == 3
    known = set(customers["customer_id"])
    tables = read_tables(small_demo.tables_dir, demo.TABLE_NAMES)
    for name in ("subscriptions", "orders", "complaints", "events", "offers", "campaigns"):
        assert set(tables[name]["customer_id"]) <= known
    referrals = tables["referrals"].dropna(subset=["referred_customer_id"])
    same_chunk = (referrals["referrer_customer_id"] - 1) // 250 == (
        referrals["referred_customer_id"] - 1
    ) // 250
    assert same_chunk.all()

    one_chunk = generate_demo(
        DemoSpec(n_customers=600, months=18, seed=7, chunk_size=600), tmp_path / "tables", tmp_path / "truth"
    )
    for name in demo.TABLE_NAMES:
        assert pq.read_schema(one_chunk.tables_dir / f"{name}.parquet") == pq.read_schema(
            small_demo.tables_dir / f"{name}.parquet"
        )
    assert set(one_chunk.rows) == set(small_demo.rows)
    assert one_chunk.rows["customers"] == 600


# ------------------------------------------------------------------ atomic output
def test_existing_output_is_replaced_and_no_temp_dirs_remain(tmp_path: Path) -> None:
    tables_dir, truth_dir = tmp_path / "tables", tmp_path / "truth"
    generate_demo(DemoSpec(n_customers=40, months=12, seed=2, chunk_size=50), tables_dir, truth_dir)
    before = pd.read_parquet(tables_dir / "customers.parquet")
    spec = DemoSpec(n_customers=50, months=12, seed=1, chunk_size=50)
    generate_demo(spec, tables_dir, truth_dir, progress=True)
    assert len(pd.read_parquet(tables_dir / "customers.parquet")) == 50 != len(before)
    assert sorted(p.name for p in tables_dir.iterdir()) == sorted(
        [f"{name}.parquet" for name in demo.TABLE_NAMES] + ["_manifest.json", RECORD]
    )
    assert sorted(p.name for p in truth_dir.iterdir()) == sorted(
        [f"{name}.parquet" for name in demo.TRUTH_NAMES] + [RECORD]
    )
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("which", ["tables", "truth"])
def test_a_folder_with_files_the_generator_did_not_write_is_refused_untouched(
    tmp_path: Path, which: str
) -> None:
    tables_dir, truth_dir = tmp_path / "tables", tmp_path / "truth"
    generate_demo(DemoSpec(n_customers=40, months=12, seed=2, chunk_size=50), tables_dir, truth_dir)
    folder = tables_dir if which == "tables" else truth_dir
    (folder / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(
        ConfigError, match=r"holds files the demo generator did not write \(notes.txt\)"
    ) as caught:
        generate_demo(DemoSpec(n_customers=50, months=12, seed=1, chunk_size=50), tables_dir, truth_dir)
    assert ("data.path" if which == "tables" else "data.truth_path") in str(caught.value)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert leftovers(tmp_path) == []


def test_a_folder_of_a_users_tables_is_never_replaced(tmp_path: Path) -> None:
    tables_dir = tmp_path / "mine"
    tables_dir.mkdir()
    (tables_dir / "customers.csv").write_text("customer_id,signup_date\n1,2023-01-01\n")
    (tables_dir / "notes.txt").write_text("keep me")
    spec = DemoSpec(n_customers=50, months=12, seed=1, chunk_size=50)
    with pytest.raises(ConfigError, match="customers.csv, notes.txt"):
        generate_demo(spec, tables_dir, tmp_path / "truth")
    assert sorted(p.name for p in tables_dir.iterdir()) == ["customers.csv", "notes.txt"]
    assert not (tmp_path / "truth").exists()


def test_failure_leaves_the_previous_output_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tables_dir, truth_dir = tmp_path / "tables", tmp_path / "truth"
    first = DemoSpec(n_customers=120, months=12, seed=3, chunk_size=50)
    generate_demo(first, tables_dir, truth_dir)
    manifest_before = (tables_dir / "_manifest.json").read_bytes()
    customers_before = pd.read_parquet(tables_dir / "customers.parquet")

    real_simulate_chunk = demo._simulate_chunk

    def fail_on_second_chunk(spec, calendar, chunk_index, first_id, size):  # noqa: ANN001, ANN202
        if chunk_index == 1:
            raise RuntimeError("disk full")
        return real_simulate_chunk(spec, calendar, chunk_index, first_id, size)

    monkeypatch.setattr(demo, "_simulate_chunk", fail_on_second_chunk)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_demo(DemoSpec(n_customers=120, months=12, seed=4, chunk_size=50), tables_dir, truth_dir)

    assert (tables_dir / "_manifest.json").read_bytes() == manifest_before
    pd.testing.assert_frame_equal(pd.read_parquet(tables_dir / "customers.parquet"), customers_before)
    assert (truth_dir / "true_churn_probability.parquet").exists()
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------ documentation
def test_docs_list_every_coefficient_with_its_default() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "demo_data.md").read_text()
    defaults = Mechanism()
    for field in dataclasses.fields(Mechanism):
        if field.name == "actions":
            continue
        row = f"| `{field.name}` | `{getattr(defaults, field.name)!r}` |"
        assert row in docs, f"docs/demo_data.md lacks or misstates {row}"
    for action in defaults.actions:
        row = (
            f"| `{action.name}` | {action.kind} | `{action.target}` | {action.acceptance!r} "
            f"| {action.off_target_acceptance!r} | {action.targeted_multiplier!r} "
            f"| {action.untargeted_multiplier!r} | {action.effect_months} | {action.move or '-'} |"
        )
        assert row in docs, f"docs/demo_data.md lacks or misstates {row}"
        cost = (
            f"{action.cost:g}"
            if not action.discount_share
            else (f"{action.discount_share:g} x monthly revenue x {action.discount_months}")
        )
        assert f"| `{action.name}` | {cost} |" in docs, (
            f"docs/demo_data.md misstates the cost of {action.name}"
        )
    for target in demo_actions.TARGETS:
        assert f"| `{target}` |" in docs, f"docs/demo_data.md does not define the target {target}"
    for move in demo_actions.MOVES:
        assert f"| `{move}` |" in docs, f"docs/demo_data.md does not define the move {move}"


def test_the_demo_actions_are_the_catalogue_with_its_costs() -> None:
    catalogue = OmegaConf.load(
        Path(__file__).resolve().parents[2] / "conf" / "actions" / "default.yaml"
    ).catalogue
    actions = {a.name: a for a in Mechanism().actions}
    assert list(actions) == list(catalogue)
    for name, entry in catalogue.items():
        truth = actions[name]
        kind = {
            "decisions.actions.CorrectiveAction": "corrective",
            "decisions.actions.LadderIntervention": "ladder",
        }
        assert truth.kind == kind[entry._target_], name
        if isinstance(entry.cost, str):  # a rule over the features: only the discount's
            assert entry.cost == f"{truth.discount_share} * monthly_revenue * {truth.discount_months}", name
            assert truth.cost == 0.0
        else:
            assert (truth.cost, truth.discount_share) == (float(entry.cost), 0.0), name
        if truth.kind == "ladder":
            assert truth.acceptance == entry.conversion_rate, name


def test_state_only_steps_keep_everyone_and_write_no_usage_logs() -> None:
    spec = DemoSpec(n_customers=400, months=12, seed=3, chunk_size=400)
    simulation = demo._ChunkSimulation(spec, demo._Calendar.from_spec(spec), 0, 1, spec.n_customers)
    for month in range(6):
        simulation._step(month)
    active, events, orders, contacts = (
        simulation.status == demo._ACTIVE,
        simulation.events.rows,
        simulation.orders.rows,
        simulation.contacts.rows,
    )
    truth_rows = simulation.truth.rows
    simulation._step(6, churn=False, logs=False, campaigns=False)
    assert (simulation.status[active] == demo._ACTIVE).all()
    assert (simulation.events.rows, simulation.orders.rows, simulation.contacts.rows) == (
        events,
        orders,
        contacts,
    )
    # a hazard is still recorded for everyone active in the month
    assert simulation.truth.rows - truth_rows == (simulation.status == demo._ACTIVE).sum() > active.sum()
    simulation._step(7)
    assert simulation.events.rows > events and simulation.contacts.rows > contacts


def test_the_truth_block_of_the_spec_is_built_from_a_mapping_and_checked() -> None:
    spec = DemoSpec(truth={"paths": 4, "value_months": 24})
    assert (spec.truth.paths, spec.truth.value_months, spec.truth.horizon_months) == (4, 24, 3)
    assert spec.to_dict()["truth"]["paths"] == 4
    with pytest.raises(ValueError, match="truth.paths"):
        DemoSpec(truth={"paths": 0})
    with pytest.raises(ValueError, match="truth.margin_rate"):
        DemoSpec(truth={"margin_rate": 1.5})
