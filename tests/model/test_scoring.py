"""Batch scoring and decisions with a model decision_project end to end on small demo data, tracked in a real MLflow store.

Checks the output against independent computations from the documented rules (docs/scoring.md): the same
probabilities as the registered pyfunc on the training features, the expected-value argmax, the budget, the
ladder counts; the reasons against the generator's complaints; and every refusal.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import duckdb
import mlflow
import numpy as np
import pandas as pd
import pytest
from config_helpers import SHRUNK, outputs_for
from omegaconf import DictConfig, OmegaConf

from churnwise.api import score
from decisions.batch import output_columns
from decisions.errors import DecisionConfigError
from decisions.scoring import ScoreResult
from features.errors import ConfigError
from features.publish import RECORD, process_folder_name

pytestmark = pytest.mark.slow

AS_OF = "2023-12-01"  # the last observation date of the debug data's training feature table


@pytest.fixture(scope="module")
def scored(decision_project) -> tuple[DictConfig, ScoreResult, pd.DataFrame]:
    _, make, _ = decision_project
    cfg = make(f"score.as_of={AS_OF}")
    result = score(cfg)
    return cfg, result, pd.read_parquet(result.path)


def features_at(cfg: DictConfig, as_of: str) -> pd.DataFrame:
    table = pd.read_parquet(Path(cfg.paths.features_dir) / "features.parquet")
    rows = table[pd.to_datetime(table["observation_date"]) == pd.Timestamp(as_of)]
    return rows.sort_values("customer_id").reset_index(drop=True)


def test_output_has_the_columns_and_the_pyfunc_probabilities_of_the_training_features(scored) -> None:
    cfg, result, out = scored
    assert list(out.columns) == output_columns(3)
    assert len(out) == result.customers > 100 and out["customer_id"].is_unique
    assert (out["as_of"] == date.fromisoformat(AS_OF)).all()

    # Scoring rebuilt the features the model was decision_project on: the registered pyfunc, fed the training feature
    # table's rows for the same date, gives the same probabilities for the same customers.
    features = features_at(cfg, AS_OF)
    assert sorted(out["customer_id"]) == features["customer_id"].tolist()
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{cfg.mlflow.registered_model_name}@champion")
    expected = pyfunc.predict(features[pyfunc.metadata.get_input_schema().input_names()])["p_churn"]
    by_id = out.set_index("customer_id").loc[features["customer_id"]]
    assert by_id["p_churn"].to_numpy() == pytest.approx(expected.to_numpy(), abs=1e-12)

    assert (out["clv"] >= 0).all()
    assert out["value_at_risk"].to_numpy() == pytest.approx((out["p_churn"] * out["clv"]).to_numpy())
    version = mlflow.MlflowClient().get_model_version_by_alias(cfg.mlflow.registered_model_name, "champion")
    assert (out["model_version"] == str(version.version)).all()
    assert set(out["valuation_segment"]) <= {"invest", "maintain", "serve_differently", "review"}
    assert set(out["ladder_rung"]) <= {"customer", "client", "supporter", "advocate", "partner"}
    csv = pd.read_csv(result.csv_path)
    assert list(csv.columns) == output_columns(3)
    assert csv["p_churn"].to_numpy() == pytest.approx(out["p_churn"].to_numpy())


@pytest.fixture(scope="module")
def greedy(decision_project, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    cfg, make, _ = decision_project
    out = outputs_for(cfg, tmp_path_factory.mktemp("greedy"))
    return pd.read_parquet(
        score(make(f"score.as_of={AS_OF}", "actions.selection=greedy", f"score.output_dir={out}")).path
    )


SELECTION = ["selected", "assignment", "assignment_probability"]


def test_priority_and_selection_follow_the_greedy_rule_within_budget_and_capacity(scored, greedy) -> None:
    cfg, _, exact = scored
    out = greedy
    assert out.drop(columns=SELECTION).equals(exact.drop(columns=SELECTION))  # only the selection differs
    assert out["priority"].tolist() == list(range(1, len(out) + 1))
    values = out["expected_net_value"].to_numpy()
    ranked = values[~np.isnan(values)]
    assert (np.diff(ranked) <= 0).all() and np.isnan(values[len(ranked) :]).all()

    budget = float(cfg.actions.budget)
    capacity = {name: spec.get("capacity") for name, spec in cfg.actions.catalogue.items()}
    treated = out[out["selected"]]  # whom to contact: the treated, within the budget and capacities
    assert 0 < treated["action_cost"].sum() <= budget
    assert (treated["expected_net_value"] > 0).all()
    for action, count in treated["action"].value_counts().items():
        assert capacity[action] is None or count <= capacity[action]

    # The documented greedy rule, re-implemented: down the priority list, take what fits. With control groups
    # (spend 'budget') the list is worked with budget / (1 - share) and capacities / (1 - share), so that the
    # treated spend about the budget.
    share = float(cfg.actions.control.share)
    remaining = budget / (1 - share)
    left = {a: None if c is None else int(c / (1 - share) + 1e-9) for a, c in capacity.items()}
    expected = []
    for row in out.itertuples():
        take = (
            isinstance(row.action, str)
            and row.expected_net_value > 0
            and row.action_cost <= remaining
            and (left[row.action] is None or left[row.action] > 0)
        )
        if take:
            remaining -= row.action_cost
            if left[row.action] is not None:
                left[row.action] -= 1
        expected.append(take)
    expected = np.asarray(expected)
    chosen = out["assignment"].notna().to_numpy()
    # Chosen: that list, less the lowest-priority tail dropped when the draw left the treated over the budget.
    assert chosen.sum() > 0 and not (chosen & ~expected).any()
    dropped = np.flatnonzero(expected & ~chosen)
    assert len(dropped) == 0 or dropped.min() > np.flatnonzero(chosen).max()
    assert (out["selected"] == (out["assignment"] == "treated")).all()


def survival_curves(cfg: DictConfig, result: ScoreResult, features: pd.DataFrame) -> np.ndarray:
    """S(t), t = 1..value.horizon_months, of each customer from the effects bundle logged in the scored
    model's own training run (through its pyfunc interface)."""
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    name = cfg.mlflow.registered_model_name
    run_id = mlflow.MlflowClient().get_model_version(name, result.model_version).run_id
    bundle = mlflow.pyfunc.load_model(f"runs:/{run_id}/effects")
    inputs = features[bundle.metadata.get_input_schema().input_names()]
    params = {"months": int(cfg.value.horizon_months), "as_of": str(result.as_of)}
    return bundle.predict(inputs, params=params).to_numpy(dtype=float)


def clv(survival: np.ndarray, revenue: np.ndarray, cfg: DictConfig) -> np.ndarray:
    """CLV as docs/scoring.md writes it: sum over months t of m S(t) (1 + d) ** -t."""
    d = (1 + float(cfg.value.annual_discount_rate)) ** (1 / 12) - 1
    discount = (1 + d) ** -np.arange(1, survival.shape[1] + 1)
    return float(cfg.value.margin_rate) * np.nan_to_num(revenue) * (survival * discount).sum(axis=1)


def hazard_times(survival: np.ndarray, multiplier: float) -> np.ndarray:
    """The survival curves with each month's hazard 1 - S(t) / S(t - 1) multiplied (at most 1)."""
    previous = np.hstack([np.ones((len(survival), 1)), survival[:, :-1]])
    return np.cumprod(1 - np.minimum((1 - survival / previous) * multiplier, 1), axis=1)


def test_chosen_action_is_the_argmax_of_the_documented_expected_value_rule(scored) -> None:
    cfg, result, out = scored
    features = features_at(cfg, AS_OF).merge(
        out[["customer_id", "ladder_rung", "strategic_value"]], on="customer_id"
    )
    out = out.set_index("customer_id").loc[features["customer_id"]].reset_index()
    con = duckdb.connect()
    con.register("customers", features)
    actions = cfg.actions
    label_to_key = {spec.label: key for key, spec in cfg.reasons.families.items()}
    reason_keys = out[["reason_1", "reason_2", "reason_3"]].map(lambda v: label_to_key.get(v))
    p, value = out["p_churn"].to_numpy(), out["clv"].to_numpy()
    survival = survival_curves(cfg, result, features)
    assert value == pytest.approx(clv(survival, features["monthly_revenue"].to_numpy(), cfg))
    d = (1 + float(cfg.value.annual_discount_rate)) ** (1 / 12) - 1
    assert (value <= float(cfg.value.margin_rate) * features["monthly_revenue"].to_numpy() / d + 1e-9).all()
    names, table = [], []
    for name, spec in actions.catalogue.items():
        eligible, cost = (
            np.asarray(column)
            for column in zip(
                *con.execute(
                    f"SELECT coalesce(({actions.contact_rule}) AND ({spec.get('eligible', 'TRUE')}), FALSE), "
                    f"CAST(({spec.cost}) AS DOUBLE) FROM customers"
                ).fetchall(),
                strict=True,
            )
        )
        cost = cost.astype(float)
        if spec._target_.endswith("CorrectiveAction"):
            rates = spec.save_rate
            rate = np.array(
                [max([rates.get(k, rates.default) for k in keys if isinstance(k, str)] + [rates.default])
                 for keys in reason_keys.itertuples(index=False)]
            )  # fmt: skip
            applies = p >= float(actions.low_risk_below)
            env = p * value * rate - cost
        else:
            moved = clv(
                hazard_times(survival, float(spec.get("churn_multiplier", 1.0))),
                features["monthly_revenue"].to_numpy() + float(spec.get("revenue_uplift", 0.0)),
                cfg,
            )
            applies = (p < float(actions.low_risk_below)) & out["ladder_rung"].isin(
                list(spec.from_rungs)
            ).to_numpy()
            env = float(spec.conversion_rate) * (moved - value) - cost
        names.append(name)
        table.append(np.where(eligible.astype(bool) & applies & ~np.isnan(cost), env, np.nan))
    envs = np.column_stack(table)
    has = ~np.isnan(envs).all(axis=1)
    best = np.full(len(out), None, dtype=object)
    best[has] = np.asarray(names, dtype=object)[np.nanargmax(envs[has], axis=1)]
    assert has.sum() > len(out) / 2
    assert [None if pd.isna(a) else a for a in out["action"]] == best.tolist()
    assert out.loc[has, "expected_net_value"].to_numpy() == pytest.approx(np.nanmax(envs[has], axis=1))
    kinds = set(out.loc[out["selected"], "action_kind"])
    assert kinds == {"corrective", "ladder"}  # the demo plan mixes corrective actions and ladder moves


def test_controls_are_held_out_at_random_within_each_action_and_never_contacted(
    decision_project, scored, tmp_path: Path
) -> None:
    cfg, make, _ = decision_project
    _, result, out = scored
    chosen = out[out["assignment"].notna()]
    assert set(chosen["assignment"]) == {"treated", "control"}
    assert np.allclose(chosen["assignment_probability"], 0.9)
    assert out.loc[out["assignment"].isna(), "assignment_probability"].isna().all()
    assert not out.loc[out["assignment"] == "control", "selected"].any()  # controls are never contacted
    assert not out.loc[out["assignment"].isna(), "selected"].any()
    for action, rows in chosen.groupby("action"):
        held = int((rows["assignment"] == "control").sum())
        assert abs(held - 0.1 * len(rows)) <= 1.5, (action, held, len(rows))  # within each action
    # the controls are drawn from the selection, not by value: their expected net value is like the treated's
    treated, controls = chosen[chosen["selected"]], chosen[~chosen["selected"]]
    spread = treated["expected_net_value"].std()
    assert abs(controls["expected_net_value"].median() - treated["expected_net_value"].median()) < spread
    assert result.summary.controls == len(controls) and result.summary.control_share == 0.1

    budget = float(cfg.actions.budget)
    # spend 'selection': the budget buys the whole selection, of which 90% is treated
    folder = outputs_for(cfg, tmp_path, "selection")
    whole = pd.read_parquet(
        score(
            make(f"score.as_of={AS_OF}", "actions.control.spend=selection", f"score.output_dir={folder}")
        ).path
    )
    assert whole.loc[whole["assignment"].notna(), "action_cost"].sum() <= budget
    assert (whole["assignment"] == "control").sum() > 0
    # share 0: no control groups, everyone chosen is treated with probability 1
    folder = outputs_for(cfg, tmp_path, "none")
    plain = pd.read_parquet(
        score(make(f"score.as_of={AS_OF}", "actions.control.share=0", f"score.output_dir={folder}")).path
    )
    assert (
        set(plain["assignment"].dropna()) == {"treated"}
        and (plain["assignment_probability"].dropna() == 1).all()
    )
    assert (plain["selected"] == plain["assignment"].eq("treated")).all()
    assert 0 < plain.loc[plain["selected"], "action_cost"].sum() <= budget


def test_complaints_are_a_top_reason_for_customers_with_unresolved_complaints(scored) -> None:
    cfg, _, out = scored
    complaints = pd.read_parquet(Path(cfg.data.path) / "complaints.parquet")
    as_of = pd.Timestamp(AS_OF)
    unresolved = complaints[
        (complaints["opened_at"] < as_of)
        & (complaints["resolved_at"].isna() | (complaints["resolved_at"] >= as_of))
    ]["customer_id"].unique()
    among_top = (out[["reason_1", "reason_2", "reason_3"]] == "complaints").any(axis=1)
    with_open = out["customer_id"].isin(unresolved)
    assert with_open.sum() >= 10
    share_open, share_rest = among_top[with_open].mean(), among_top[~with_open].mean()
    assert share_open >= 0.7 and share_open >= 3 * share_rest, (share_open, share_rest)
    # and a reason reads as words, not column names
    assert set(out["reason_1"].dropna()) <= {spec.label for spec in cfg.reasons.families.values()} | {
        "other factors"
    }


def test_the_scoring_run_is_tracked_with_counts_budget_value_and_plots(scored) -> None:
    cfg, result, out = scored
    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    run = client.get_run(result.run_id)
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["stage"] == "score" and tags["model.version"] == out["model_version"].iloc[0]
    assert len(tags["data.fingerprint"]) == 64 and tags["as_of"] == AS_OF
    assert metrics["customers_scored"] == len(out)
    assert metrics["budget_used"] == pytest.approx(out.loc[out["selected"], "action_cost"].sum())
    assert metrics["expected_value_saved"] == pytest.approx(
        (out.loc[out["selected"], "expected_net_value"] + out.loc[out["selected"], "action_cost"]).sum()
    )
    for rung, count in out["ladder_rung"].value_counts().items():
        assert metrics[f"ladder_{rung}"] == count
    for action, count in out.loc[out["selected"], "action"].value_counts().items():
        assert metrics[f"action_{action}_selected"] == count
    controls = out[out["assignment"] == "control"]
    assert metrics["control_share"] == 0.1 and metrics["customers_control"] == len(controls) > 0
    for action, count in controls["action"].value_counts().items():
        assert metrics[f"action_{action}_control"] == count

    # Prospects: known before the date, never bought (no subscription started, no order) before it.
    tables = Path(cfg.data.path)
    customers = pd.read_parquet(tables / "customers.parquet")
    subscriptions = pd.read_parquet(tables / "subscriptions.parquet")
    orders = pd.read_parquet(tables / "orders.parquet")
    as_of = pd.Timestamp(AS_OF)
    bought = set(subscriptions.loc[pd.to_datetime(subscriptions["start_date"]) < as_of, "customer_id"]) | set(
        orders.loc[pd.to_datetime(orders["order_date"]) < as_of, "customer_id"]
    )
    known = customers[pd.to_datetime(customers["signup_date"]) < as_of]
    prospects = int((~known["customer_id"].isin(bought)).sum())
    assert prospects > 0 and metrics["ladder_prospect"] == prospects

    artifacts = {
        a.path for folder in ("plots", "run_info") for a in client.list_artifacts(run.info.run_id, folder)
    }
    assert {"plots/budget_curve.png", "plots/loyalty_ladder.png", "run_info/actions.csv"} <= artifacts
    assert "run_info/resolved_config.yaml" in artifacts


def test_history_table_keeps_each_date_and_a_rerun_replaces_its_own_rows(decision_project, scored) -> None:
    _, make, root = decision_project
    cfg, first, out = scored
    second = score(make("score.as_of=2023-11-01"))
    drawn = pd.read_parquet(second.path)[["customer_id", "assignment"]]
    again = score(make("score.as_of=2023-11-01"))
    # a rerun of a date holds out the same customers: the history keeps one assignment per customer and date
    pd.testing.assert_frame_equal(pd.read_parquet(again.path)[["customer_id", "assignment"]], drawn)
    assert (drawn["assignment"] == "control").sum() > 0
    con = duckdb.connect(str(again.database), read_only=True)
    counts = dict(con.execute(f"SELECT as_of, count(*) FROM {again.table} GROUP BY as_of").fetchall())
    assert counts[date(2023, 12, 1)] == first.customers and counts[date(2023, 11, 1)] == second.customers
    assert again.customers == second.customers
    # the files hold the latest run only
    assert set(pd.read_parquet(again.path)["as_of"]) == {date(2023, 11, 1)}


def test_the_joint_selection_gets_more_value_than_exact_and_greedy_within_the_same_budget_and_capacities(
    decision_project, scored, greedy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, _, joint = scored
    _, make, _ = decision_project
    folder = outputs_for(cfg, tmp_path)
    with caplog.at_level("INFO", logger="decisions.scoring"):
        exact = pd.read_parquet(
            score(make(f"score.as_of={AS_OF}", "actions.selection=exact", f"score.output_dir={folder}")).path
        )
    assert any(r.getMessage().startswith("assumed effects take") for r in caplog.records)
    totals = {}
    for name, out in (("joint", joint), ("exact", exact), ("greedy", greedy)):
        chosen = out[out["assignment"].notna()]  # the selection, controls included (they were chosen too)
        assert (chosen["expected_net_value"] > 0).all()
        for action, count in chosen["action"].value_counts().items():
            limit = cfg.actions.catalogue[action].get("capacity")
            assert limit is None or count <= int(
                np.floor(limit / (1 - float(cfg.actions.control.share)) + 1e-9)
            )
        treated = out[out["selected"]]
        assert 0 < treated["action_cost"].sum() <= float(cfg.actions.budget) + 1e-6
        totals[name] = chosen["expected_net_value"].sum()
    assert totals["joint"] >= totals["exact"] - 1e-6 >= totals["greedy"] - 2e-6, totals


def test_actions_without_campaigns_are_assumed_and_their_budget_share_stated(scored) -> None:
    # The demo model of this test has no learned effects (its effects bundle holds no uplift models): every
    # action is assumed, the output says so per customer, and the run states the share of budget it takes.
    cfg, result, out = scored
    acted = out[out["action"].notna()]
    assert len(acted) and (acted["effect_source"] == "assumed").all()
    assert out.loc[out["action"].isna(), "effect_source"].isna().all()
    metrics = mlflow.MlflowClient(cfg.mlflow.tracking_uri).get_run(result.run_id).data.metrics
    tags = mlflow.MlflowClient(cfg.mlflow.tracking_uri).get_run(result.run_id).data.tags
    assert metrics["budget_share_assumed"] == 1.0
    assert metrics["budget_used_assumed"] == pytest.approx(out.loc[out["selected"], "action_cost"].sum())
    assert metrics["expected_value_saved_assumed"] == pytest.approx(metrics["expected_value_saved"])
    assert metrics["expected_value_saved_learned"] == 0.0
    names = list(cfg.actions.catalogue)
    assert all(metrics[f"action_{name}_learned"] == 0.0 for name in names)
    assert tags["effects.assumed"] == ",".join(names)
    assert tags["effects.note"] == (
        f"assumed effects take 100% of the budget spent ({', '.join(names)}: no learned effect from campaign "
        "history)"
    )
    assert result.summary.assumed_line() in result.summary.render([])
    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    assert "run_info/uplift_segments.csv" in {
        a.path for a in client.list_artifacts(result.run_id, "run_info")
    }
    segments = result.summary.segments.set_index("uplift_segment")
    assert segments["selected"].sum() == out.loc[out["selected"], "uplift_segment"].notna().sum()
    assert (segments["assumed"] == segments["selected"]).all()


def test_no_selected_customer_has_a_negative_effect_and_every_value_has_its_interval(scored) -> None:
    cfg, _, out = scored
    chosen = out[out["assignment"].notna()]
    assert len(chosen) and (chosen["value_gain"] > 0).all() and (chosen["effect_on_churn"] <= 0).all()
    acted = out[out["action"].notna()]
    assert (acted["value_gain_low"] <= acted["value_gain"] + 1e-9).all()
    assert (acted["value_gain"] <= acted["value_gain_high"] + 1e-9).all()
    # assumed: the prior range 0.5 .. 1.5 x the point value, the cost taken off each end
    assert np.allclose(acted["value_gain_low"], 0.5 * acted["value_gain"])
    assert np.allclose(acted["value_gain_high"], 1.5 * acted["value_gain"])
    assert np.allclose(acted["expected_net_value_low"], acted["value_gain_low"] - acted["action_cost"])
    assert np.allclose(acted["expected_net_value"], acted["value_gain"] - acted["action_cost"])
    assert set(acted["uplift_segment"]) <= {"persuadable", "sure_thing", "lost_cause", "sleeping_dog"}


def test_scoring_without_reasons_uses_default_save_rates(decision_project, tmp_path: Path) -> None:
    cfg, make, _ = decision_project
    out = outputs_for(cfg, tmp_path)
    result = score(make(f"score.as_of={AS_OF}", "reasons.enabled=false", f"score.output_dir={out}"))
    out = pd.read_parquet(result.path)
    assert out[["reason_1", "reason_2", "reason_3"]].isna().all().all()
    assert out["action"].notna().sum() > 0


def test_a_date_after_the_data_or_a_table_that_stops_early_is_refused(
    decision_project, tmp_path: Path
) -> None:
    cfg, make, _ = decision_project
    out = outputs_for(cfg, tmp_path)
    with pytest.raises(ConfigError, match="after the end of the input data"):
        score(make("score.as_of=2030-01-01", f"score.output_dir={out}"))

    stale = tmp_path / "stale"
    shutil.copytree(Path(cfg.data.path), stale)
    (stale / "_manifest.json").unlink()
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT * FROM '{stale}/events.parquet' WHERE event_time < DATE '2023-10-01') "
        f"TO '{tmp_path}/events.parquet' (FORMAT parquet)"
    )
    shutil.move(tmp_path / "events.parquet", stale / "events.parquet")
    with pytest.raises(
        ConfigError, match=r"inputs are missing for score.as_of 2023-12-01: events ends on 2023-09-30"
    ):
        score(make(f"data.path={stale}", f"score.as_of={AS_OF}", f"score.output_dir={out}"))
    assert not out.exists()

    renamed = tmp_path / "renamed"
    shutil.copytree(stale, renamed)
    con.execute(
        f"COPY (SELECT * REPLACE ('web_' || event_type AS event_type) FROM '{cfg.data.path}/events.parquet') "
        f"TO '{renamed}/events.parquet' (FORMAT parquet)"
    )
    with pytest.raises(ConfigError, match="event types .* do not occur"):
        score(make(f"data.path={renamed}", f"score.as_of={AS_OF}", f"score.output_dir={out}"))
    assert not out.exists()


def test_a_bad_decision_rule_fails_before_any_work_naming_its_key(decision_project, tmp_path: Path) -> None:
    cfg, make, _ = decision_project
    out = outputs_for(cfg, tmp_path)
    with pytest.raises(
        DecisionConfigError, match=r"ladder.rules.client: 'tenure_dayz >= 365' cannot be evaluated"
    ):
        score(make("ladder.rules.client='tenure_dayz >= 365'", f"score.output_dir={out}"))
    with pytest.raises(DecisionConfigError, match=r"actions.catalogue.discount.save_rate: \['pricing'\]"):
        score(make("+actions.catalogue.discount.save_rate.pricing=0.3", f"score.output_dir={out}"))
    assert not out.exists()


def test_a_model_whose_signature_does_not_match_its_feature_manifest_is_refused(
    decision_project, tmp_path: Path
) -> None:
    import json

    cfg, make, _ = decision_project
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    name = cfg.mlflow.registered_model_name
    champion = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(name, "champion")
    manifest = json.loads(
        Path(
            client.download_artifacts(version.run_id, "run_info/feature_manifest.json", str(tmp_path))
        ).read_text()
    )
    manifest["features"] = [f for f in manifest["features"] if f["name"] != "open_complaints"]
    mlflow.set_experiment(cfg.mlflow.experiment_name)
    with mlflow.start_run(run_name="mismatched"):
        folder = tmp_path / "run_info"
        folder.mkdir(exist_ok=True)
        (folder / "feature_manifest.json").write_text(json.dumps(manifest))
        mlflow.log_artifacts(str(folder), artifact_path="run_info")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=champion.unwrap_python_model(), signature=champion.metadata.signature
        )
    registered = mlflow.register_model(info.model_uri, name)
    out = outputs_for(cfg, tmp_path)
    with pytest.raises(
        ConfigError,
        match=r"does not match the feature manifest .*only in the signature: \['open_complaints'\]",
    ):
        score(make(f"score.model_uri=models:/{name}/{registered.version}", f"score.output_dir={out}"))

    # A model logged outside `make train` has no feature manifest to rebuild its features from.
    with mlflow.start_run(run_name="no manifest"):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=champion.unwrap_python_model(), signature=champion.metadata.signature
        )
    registered = mlflow.register_model(info.model_uri, name)
    with pytest.raises(ConfigError, match=f"version {registered.version}\\) has no feature manifest"):
        score(make(f"score.model_uri=models:/{name}/{registered.version}", f"score.output_dir={out}"))
    assert not out.exists()


def test_the_output_config_is_recorded(scored) -> None:
    cfg, result, _ = scored
    run = mlflow.MlflowClient(cfg.mlflow.tracking_uri).get_run(result.run_id)
    assert run.data.params["actions.budget"] == str(OmegaConf.select(cfg, "actions.budget"))
    assert run.data.params["actions.selection"] == "joint"


KILLED_MID_WRITE = """
import os, sys, time, types
from pathlib import Path

import features.publish as io

# Pause forever at the first rename of the swap that publishes the finished temp files, as a crash between
# writing and publishing would leave them; the test kills this process there (SIGKILL: no clean-up runs).
def replace(source, target):
    Path(os.environ["CHURNWISE_TEST_READY"]).write_text(str(source))
    time.sleep(600)

io.os = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})
io.os.replace = replace

import runpy

runpy.run_module("pipeline.score", run_name="__main__")  # as `python -m pipeline.score` runs it
"""


def test_killing_the_job_mid_write_leaves_the_previous_output_intact(
    decision_project, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    cfg, make, root = decision_project
    out = outputs_for(cfg, tmp_path, "scores")
    overrides = [f"paths.root_dir={root}", "debug=default", *SHRUNK, f"score.output_dir={out}"]
    previous = score(make(f"score.output_dir={out}", f"score.as_of={AS_OF}"))
    before = {p.name: p.read_bytes() for p in (previous.path, previous.csv_path)}
    con = duckdb.connect(str(previous.database), read_only=True)
    history = con.execute(f"SELECT count(*) FROM {previous.table}").fetchall()[0][0]
    con.close()

    launcher = tmp_path / "launcher.py"
    launcher.write_text(KILLED_MID_WRITE)
    ready = tmp_path / "ready"
    project = Path(__file__).resolve().parents[2]
    job = subprocess.Popen(
        [sys.executable, str(launcher), *overrides, "score.as_of=2023-10-01"],
        cwd=project,
        env={**os.environ, "CHURNWISE_TEST_READY": str(ready), "PYTHONPATH": str(project)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not ready.exists() and job.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert ready.exists(), job.stderr.read() if job.poll() is not None else "the job never reached the write"
    assert (
        Path(cfg.engine.temp_directory) / process_folder_name(job.pid)
    ).is_dir()  # the job's own spill folder
    os.kill(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    job.stderr.close()

    # The killed run had written its temp files (hidden, beside the targets) and published nothing.
    leftovers = sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name != RECORD)
    assert leftovers == [f".scores.csv.tmp-{job.pid}", f".scores.parquet.tmp-{job.pid}"]
    assert {p.name: p.read_bytes() for p in (previous.path, previous.csv_path)} == before
    assert set(pd.read_parquet(previous.path)["as_of"]) == {date.fromisoformat(AS_OF)}
    con = duckdb.connect(str(previous.database), read_only=True)
    assert con.execute(f"SELECT count(*) FROM {previous.table}").fetchall()[0][0] == history
    assert (
        con.execute(f"SELECT count(*) FROM {previous.table} WHERE as_of = DATE '2023-10-01'").fetchall()[0][0]
        == 0
    )
    con.close()

    # The killed run's MLflow run was left RUNNING; the next run marks it failed, publishes, and clears the
    # dead run's temp files.
    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment_name).experiment_id
    killed = client.search_runs([experiment], f"tags.`churnwise.pid` = '{job.pid}'")
    assert [r.info.status for r in killed] == ["RUNNING"]
    rerun = score(make(f"score.output_dir={out}", "score.as_of=2023-10-01"))
    assert set(pd.read_parquet(rerun.path)["as_of"]) == {date(2023, 10, 1)}
    assert sorted(p.name for p in out.iterdir()) == [".churnwise-files.json", "scores.csv", "scores.parquet"]
    marked = client.get_run(killed[0].info.run_id)
    assert marked.info.status == "FAILED" and "killed" in marked.data.tags["churnwise.stopped"]
    assert not (
        Path(cfg.engine.temp_directory) / process_folder_name(job.pid)
    ).exists()  # its spill folder is gone too


def test_inputs_lacking_a_table_the_model_was_trained_with_are_refused(
    decision_project, tmp_path: Path
) -> None:
    cfg, make, _ = decision_project
    partial = tmp_path / "partial"
    shutil.copytree(Path(cfg.data.path), partial)
    (partial / "complaints.parquet").unlink()
    (partial / "_manifest.json").unlink()
    out = outputs_for(cfg, tmp_path)
    with pytest.raises(ConfigError, match="lacks complaints"):
        score(make(f"data.path={partial}", f"score.output_dir={out}"))
    assert not out.exists()


def test_scoring_in_small_chunks_gives_the_same_output(decision_project, scored, tmp_path: Path) -> None:
    cfg, make, _ = decision_project
    _, whole, out = scored
    folder = outputs_for(cfg, tmp_path)
    result = score(make(f"score.as_of={AS_OF}", "score.chunk_rows=97", f"score.output_dir={folder}"))
    chunked = pd.read_parquet(result.path)
    assert result.customers == whole.customers > 97 * 5  # many chunks
    pd.testing.assert_frame_equal(chunked, out)


def test_a_history_written_before_the_effect_columns_gets_them_on_the_next_run(
    decision_project, tmp_path: Path
) -> None:
    cfg, make, _ = decision_project
    folder = outputs_for(cfg, tmp_path)
    database = outputs_for(cfg, tmp_path, "history") / "history.duckdb"
    first = score(make("score.as_of=2023-11-01", f"score.output_dir={folder}", f"score.database={database}"))
    effect_columns = output_columns(3)[output_columns(3).index("expected_net_value_low") :][:8]
    assert effect_columns[-1] == "uplift_segment"
    with duckdb.connect(str(database)) as con:  # as a history written before these columns existed
        for column in effect_columns:
            con.execute(f"ALTER TABLE {first.table} DROP COLUMN {column}")
    second = score(make(f"score.as_of={AS_OF}", f"score.output_dir={folder}", f"score.database={database}"))
    with duckdb.connect(str(database), read_only=True) as con:
        history = con.execute(f"SELECT * FROM {second.table}").df()
    assert set(effect_columns) <= set(history.columns)
    dates = pd.to_datetime(history["as_of"])
    earlier, later = history[dates == pd.Timestamp("2023-11-01")], history[dates == pd.Timestamp(AS_OF)]
    assert len(earlier) == first.customers and earlier[effect_columns].isna().all().all()
    assert (later.loc[later["action"].notna(), "effect_source"] == "assumed").all()
