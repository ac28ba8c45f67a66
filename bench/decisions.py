"""Decision benchmark: the true value of the project's plan against the best possible plan and two plain baselines,
on demo data whose true action effects are known (docs/demo_data.md, "Truth table").

The demo (20,000 customers by default) is generated with its truth table: per customer active at the data end
and per arm (`none` and each catalogue action), the true expected discounted margin over 120 months and what the
business pays (the contact cost plus, if accepted, the action's cost). The project trains on the tables
(`make train`'s stages: churn model, survival, uplift models learned from the demo's randomised campaigns) and
scores at the data end (`make score`'s stages) at each budget. Its plan is the customers it selects to treat
(`selected`: its control groups are chosen too but not contacted, so they change nothing).

Every plan is one action or none per customer, under the same budget (the catalogue's configured costs, what
the selection spends), capacities and eligibility (the catalogue's rules and the contact rule, evaluated on the
same scoring-date features as the project's):

- **project**: the plan `make score` makes;
- **oracle**: the best selection with the true effects (a multiple-choice knapsack, `bench/decision_plans.py`);
- **risk-only**: the highest predicted churn probabilities first, one offer each; every catalogue action is tried
  as that offer and the best of them is shown (a strong version of the baseline);
- **random**: customers in random order, each a random eligible action, averaged over `--random-draws` draws.

A plan's true value is the sum over the customers it treats of: true expected margin with the action - without
it - the true expected cost, read from a second truth table (the truth's next seed, `--evaluation-paths` paths)
that no plan was chosen with: the oracle chooses with the generator's own table, and valued on that same table
it would be credited with its Monte-Carlo noise (about 15% at 16 paths). The project's claimed value is the sum of its `expected_net_value` over the same
customers, with its interval (sum of the lows and of the highs). Sleeping dogs (contact hurts them whatever the
action) are counted among the treated against their share of the eligible population (what a random draw
treats).

    make bench-decisions
    .venv/bin/python bench/decisions.py --customers 5000 --budgets 2000
    .venv/bin/python bench/decisions.py --root /tmp/project   # reuse a trained project there (or make it)

Writes bench/results/decisions.json and decisions.md and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
# run as a script, this file's folder comes first on the path, where its own name would hide the `decisions` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]


def _plans() -> Any:
    """bench/decision_plans.py, loaded by path (bench/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "churnwise_bench_decision_plans", ROOT / "bench" / "decision_plans.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_p = _plans()
oracle, random_targeting, risk_only, spent, true_gains, true_value = (
    _p.oracle, _p.random_targeting, _p.risk_only, _p.spent, _p.true_gains, _p.true_value,
)  # fmt: skip

RESULTS = ROOT / "bench" / "results"
PLANS = ("oracle", "project", "risk_only", "random")


def overrides_for(root: Path, n_customers: int, seed: int, extra: Sequence[str]) -> list[str]:
    """The config of the bench's project: the default demo at `n_customers`, everything under `root`."""
    return [f"paths.root_dir={root}", f"data.generator.n_customers={n_customers}", f"data.generator.seed={seed}",
            *extra]  # fmt: skip


def rule_matrices(cfg: Any) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """(customer ids, action names, eligible (n, k), configured costs (n, k)) of the customers the champion scores
    at the configured date: the catalogue's eligibility (with the contact rule) and cost rules on the same
    features scoring builds."""
    from decisions.policy import cost_column, decision_policy, eligible_column
    from decisions.scoring import table_inputs
    from models.registry import registered_model
    from models.tracking import TrackingSettings

    policy = decision_policy(cfg)
    tracking = TrackingSettings.from_config(cfg.mlflow)
    tracking.setup()
    registered = registered_model(cfg.score.model_uri or tracking.champion_uri)
    inputs = table_inputs(cfg, registered, policy)
    reader = policy.rules_reader(
        inputs.build().order("customer_id").to_arrow_reader(50_000), inputs.planned.absent
    )
    frame = reader.read_all().to_pandas()
    names = policy.action_names
    eligible = np.column_stack([frame[eligible_column(n)].to_numpy(dtype=bool) for n in names])
    costs = np.column_stack([frame[cost_column(n)].to_numpy(dtype=float, na_value=np.nan) for n in names])
    eligible &= ~np.isnan(costs)
    return frame["customer_id"].to_numpy(), names, eligible, np.nan_to_num(costs, nan=np.inf)


def evaluation_truth(cfg: Any, as_of: str, root: Path, paths: int) -> Path:
    """A second truth table at `as_of`, on the truth's next seed (`features.demo.continuation.true_action_values`),
    that no plan was chosen with: written once under `root` and reused. The oracle selects with the generator's
    own table; every plan is valued on this one, so the oracle gets no credit for the Monte-Carlo noise of the
    table it chose with (selected on one 16-path table and valued on the same, it looks about 15% better)."""
    import pyarrow.parquet as pq
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from features.demo.continuation import true_action_values

    generator = OmegaConf.to_container(cfg.data.generator, resolve=True)
    truth = dict(generator.pop("truth", None) or {})
    seed = int(truth.get("seed", 7)) + 1
    path = root / f"evaluation_truth_{as_of}_paths{paths}_seed{seed}.parquet"
    if not path.exists():
        began = time.perf_counter()
        table = true_action_values(
            instantiate(OmegaConf.create(generator)), as_of, paths=paths, seed=seed,
            **{k: truth[k] for k in ("horizon_months", "value_months", "margin_rate", "annual_discount_rate") if k in truth},
        )  # fmt: skip
        pq.write_table(table, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)
        print(
            f"evaluation truth ({paths} paths, seed {seed}) in {time.perf_counter() - began:.0f} s",
            file=sys.stderr,
        )
    return path


def truth_matrices(truth_file: Path, ids: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The truth table as (n, k) matrices in the order of `ids` and `names` (and the `none` arm as vectors)."""
    truth = pd.read_parquet(truth_file)
    missing = sorted(set(names) - set(truth["action"]))
    if missing:
        raise SystemExit(f"the truth table {truth_file} has no arm for {', '.join(missing)}")

    def wide(column: str) -> pd.DataFrame:
        return truth.pivot(index="customer_id", columns="action", values=column).reindex(ids)

    margin, cost, p_12 = (wide(c) for c in ("expected_margin", "expected_cost", "p_churn_12m"))
    if margin.isna().to_numpy().any():
        absent = int(margin["none"].isna().sum())
        raise SystemExit(f"{absent} scored customers are not in the truth table {truth_file}")
    dogs = truth[truth["action"] == "none"].set_index("customer_id")["sleeping_dog"].reindex(ids)
    return {
        "margin": margin[list(names)].to_numpy(float), "margin_none": margin["none"].to_numpy(float),
        "cost": cost[list(names)].to_numpy(float), "p_12m_none": p_12["none"].to_numpy(float),
        "p_12m": p_12[list(names)].to_numpy(float), "sleeping_dog": dogs.to_numpy(bool),
        "as_of": np.asarray(sorted(truth["as_of"].unique())),
    }  # fmt: skip


def project_plan(
    scores: pd.DataFrame, ids: np.ndarray, names: Sequence[str]
) -> tuple[np.ndarray, pd.DataFrame]:
    """The project's plan (the treated: `selected`) as action indices in the order of `ids`, and its scores
    rows in that order."""
    rows = scores.set_index("customer_id").reindex(ids)
    if rows["action"].isna().all() and len(rows):
        raise SystemExit("the scoring output chose no action for any customer")
    index = pd.Categorical(rows["action"], categories=list(names)).codes
    treated = rows["selected"].fillna(False).to_numpy(bool)
    return np.where(treated, index, -1).astype(np.int64), rows


def plan_figures(plan: np.ndarray, gains: np.ndarray, truth: dict[str, np.ndarray], costs: np.ndarray,
                 names: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    """What a plan is worth and whom it treats."""
    rows = np.flatnonzero(plan >= 0)
    picked = plan[rows]
    churn_effect = truth["p_12m"][rows, picked] - truth["p_12m_none"][rows]
    by_action = pd.Series(np.asarray(names, dtype=object)[picked]).value_counts()
    return {
        "true_value": true_value(plan, gains),
        "spent": spent(plan, costs),
        "true_cost": float(truth["cost"][rows, picked].sum()),
        "treated": int(rows.size),
        "true_churn_averted_12m": float(-churn_effect.sum()),
        "sleeping_dogs_treated": int(truth["sleeping_dog"][rows].sum()),
        "sleeping_dog_share": float(truth["sleeping_dog"][rows].mean()) if rows.size else 0.0,
        "harmed": int((gains[rows, picked] < -truth["cost"][rows, picked]).sum()),
        "by_action": {str(k): int(v) for k, v in by_action.items()},
    }


def compare(budget: float, scores: pd.DataFrame, ids: np.ndarray, names: Sequence[str], eligible: np.ndarray,
            costs: np.ndarray, capacity: Sequence[int | None], selection_truth: dict[str, np.ndarray],
            truth: dict[str, np.ndarray], random_draws: int, seed: int) -> dict[str, Any]:  # fmt: skip
    """Every plan at one budget, its true value (on `truth`) and (the project's) claimed value; the oracle chooses
    with `selection_truth` (an independent table of the same truth)."""
    gains = true_gains(truth["margin"], truth["margin_none"], truth["cost"], eligible)
    chosen_with = true_gains(selection_truth["margin"], selection_truth["margin_none"], selection_truth["cost"],
                             eligible)  # fmt: skip
    plan, rows = project_plan(scores, ids, names)
    outside = (plan >= 0) & ~eligible[np.arange(len(plan)), np.maximum(plan, 0)]
    if outside.any():
        raise SystemExit(
            f"{int(outside.sum())} of the project's selections are not eligible by the catalogue rules"
        )
    plans: dict[str, dict[str, Any]] = {  # the oracle: the most true value the configured costs' budget buys
        "oracle": plan_figures(oracle(chosen_with, costs, budget, capacity), gains, truth, costs, names),
        "project": plan_figures(plan, gains, truth, costs, names),
    }
    p_churn = rows["p_churn"].to_numpy(float)
    by_offer = {}
    for j, name in enumerate(names):
        by_offer[name] = plan_figures(risk_only(p_churn, j, eligible, costs, budget, capacity), gains, truth, costs,
                                      names)  # fmt: skip
    best = max(by_offer, key=lambda n: by_offer[n]["true_value"])
    plans["risk_only"] = {**by_offer[best], "offer": best,
                          "by_offer": {n: round(f["true_value"], 1) for n, f in by_offer.items()}}  # fmt: skip
    draws = [plan_figures(random_targeting(eligible, costs, budget, capacity, seed + i), gains, truth, costs, names)
             for i in range(random_draws)]  # fmt: skip
    values = np.array([d["true_value"] for d in draws])
    plans["random"] = {**{k: float(np.mean([d[k] for d in draws])) for k in draws[0] if k != "by_action"},
                       "true_value_sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                       "draws": random_draws}  # fmt: skip
    treated = plan >= 0
    claimed = float(rows.loc[treated, "expected_net_value"].sum())
    low = float(rows.loc[treated, "expected_net_value_low"].sum())
    high = float(rows.loc[treated, "expected_net_value_high"].sum())
    project = plans["project"]
    sources = rows.loc[treated].groupby("effect_source")["action_cost"].sum()
    project |= {
        "claimed": claimed, "claimed_low": low, "claimed_high": high,
        "claimed_over_true": claimed / project["true_value"] if project["true_value"] else float("nan"),
        "controls": int((rows["assignment"] == "control").sum()),
        "budget_share_assumed": float(sources.get("assumed", 0.0) / sources.sum()) if sources.sum() else 0.0,
    }  # fmt: skip
    plans["oracle"]["value_on_its_own_table"] = true_value(
        oracle(chosen_with, costs, budget, capacity), chosen_with
    )
    oracle_value = plans["oracle"]["true_value"]
    for figures in plans.values():
        figures["share_of_oracle"] = figures["true_value"] / oracle_value if oracle_value else float("nan")
    population_dogs = float(truth["sleeping_dog"][eligible.any(axis=1)].mean())
    return {
        "budget": budget, "plans": plans, "eligible_customers": int(eligible.any(axis=1).sum()),
        "sleeping_dog_share_eligible": population_dogs,
        "checks": {
            "project_at_least_80pct_of_oracle": project["share_of_oracle"] >= 0.8,
            "project_ahead_of_risk_only": project["true_value"] > plans["risk_only"]["true_value"],
            "project_ahead_of_random": project["true_value"] > plans["random"]["true_value"],
            "claimed_within_25pct": abs(project["claimed_over_true"] - 1.0) <= 0.25,
            "sleeping_dogs_at_most_random_rate": project["sleeping_dog_share"] <= population_dogs,
        },
    }  # fmt: skip


def run(root: Path, n_customers: int, seed: int, budgets: Sequence[float], random_draws: int,
        extra: Sequence[str], evaluation_paths: int = 16) -> dict[str, Any]:  # fmt: skip
    """Train (unless `root` holds a champion already), score at each budget and compare the plans."""
    from churnwise.api import ensure_demo_data, load_config, score, train
    from models.registry import registered_model
    from models.tracking import TrackingSettings

    overrides = overrides_for(root, n_customers, seed, extra)
    cfg = load_config(*overrides)
    info: dict[str, Any] = {}
    began = time.perf_counter()
    ensure_demo_data(cfg)
    try:
        tracking = TrackingSettings.from_config(cfg.mlflow)
        tracking.setup()
        registered_model(tracking.champion_uri)
        info["trained"] = "reused"
    except Exception:  # no champion yet: train one
        trained = train(load_config(*overrides))
        info["trained"] = trained.model_version
    info["train_seconds"] = round(time.perf_counter() - began, 1)
    truth_file = Path(cfg.data.truth_path) / "true_action_values.parquet"
    ids, names, eligible, costs = rule_matrices(load_config(*overrides))
    selection_truth = truth_matrices(truth_file, ids, names)
    as_of = str(selection_truth["as_of"][0])
    truth = truth_matrices(evaluation_truth(cfg, as_of, root, evaluation_paths), ids, names)
    from decisions.policy import decision_policy

    policy = decision_policy(cfg)
    capacity = [a.capacity for a in policy.catalogue]
    results = []
    for budget in budgets:
        began = time.perf_counter()
        scored = score(load_config(*overrides, f"actions.budget={budget}"))
        if str(scored.as_of) not in {str(d) for d in truth["as_of"]}:
            raise SystemExit(f"scored as of {scored.as_of}, but the truth table is as of {truth['as_of']}")
        scores = pd.read_parquet(scored.path)
        seconds = round(time.perf_counter() - began, 1)
        result = compare(budget, scores, ids, names, eligible, costs, capacity, selection_truth, truth, random_draws,
                         seed)  # fmt: skip
        result["score_seconds"] = seconds
        result["as_of"] = str(scored.as_of)
        results.append(result)
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "customers": n_customers, "seed": seed, "scored": int(len(ids)), "actions": list(names),
        "overrides": list(extra), "evaluation_paths": evaluation_paths, "info": info, "budgets": results,
    }  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    """The results as the tables of bench/results/decisions.md."""
    lines = [
        "# Decision benchmark: the project's plan against the truth",
        "",
        f"Demo data, {result['customers']:,} customers (seed {result['seed']}), {result['scored']:,} scored at the data "
        f"end; generated {result['generated_at']} on {result['machine']} (`make bench-decisions`, bench/decisions.py). "
        "True values from the generator's truth (expected discounted margin over 120 months with the action "
        "minus without it, minus what the business really pays), on a second truth table "
        f"({result['evaluation_paths']} paths, the truth's next seed) that no plan was chosen with: the oracle "
        "chooses with the generator's own table. Every plan under the same budget (configured costs), capacities "
        "and eligibility.",
        "",
    ]  # fmt: skip
    for b in result["budgets"]:
        plans = b["plans"]
        p = plans["project"]
        lines += [
            f"## Budget {b['budget']:,.0f}",
            "",
            "| plan | true value | share of oracle | treated | spent (configured) | paid (true) | churn averted (12 m) "
            "| sleeping dogs treated |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name in PLANS:
            f = plans[name]
            label = {
                "risk_only": f"risk-only ({f.get('offer', '')})",
                "random": f"random (mean of {f.get('draws', 0)})",
            }
            lines.append(
                f"| {label.get(name, name)} | {f['true_value']:,.0f} | {100 * f['share_of_oracle']:.0f}% | "
                f"{f['treated']:,.0f} | {f['spent']:,.0f} | {f['true_cost']:,.0f} | {f['true_churn_averted_12m']:.1f} | "
                f"{f['sleeping_dogs_treated']:,.0f} ({100 * f['sleeping_dog_share']:.1f}%) |"
            )  # fmt: skip
        lines += [
            "",
            f"Project: claimed {p['claimed']:,.0f} (interval {p['claimed_low']:,.0f} .. {p['claimed_high']:,.0f}) "
            f"against a true {p['true_value']:,.0f} (claimed / true = {p['claimed_over_true']:.2f}); "
            f"{p['controls']:,} controls held out; {100 * p['budget_share_assumed']:.0f}% of the budget on assumed "
            f"effects. Sleeping dogs are {100 * b['sleeping_dog_share_eligible']:.1f}% of the eligible customers.",
            "",
            f"The oracle's value on the table it chose with: {plans['oracle']['value_on_its_own_table']:,.0f} (its "
            "advantage from that table's Monte-Carlo noise).",
            "",
            "Project's actions: " + ", ".join(f"{k} {v}" for k, v in p["by_action"].items()) + ".",
            "Oracle's actions: " + ", ".join(f"{k} {v}" for k, v in plans["oracle"]["by_action"].items()) + ".",
            "",
            "| check | result |",
            "|---|---|",
            *(f"| {k.replace('_', ' ')} | {'yes' if v else 'no'} |" for k, v in b["checks"].items()),
            "",
        ]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42, help="the demo's seed (and the random plans')")
    parser.add_argument("--budgets", type=float, nargs="+", default=[5_000.0, 20_000.0])
    parser.add_argument("--random-draws", type=int, default=20)
    parser.add_argument(
        "--evaluation-paths", type=int, default=16, help="paths of the truth table plans are valued on"
    )
    parser.add_argument(
        "--root", type=Path, default=None, help="project folder to use (default: a temporary one)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where decisions.json and decisions.md go")
    parser.add_argument("overrides", nargs="*", help="extra config overrides (e.g. uplift=x_learner)")
    args = parser.parse_args(argv)
    with (
        nullcontext(str(args.root))
        if args.root
        else tempfile.TemporaryDirectory(prefix="churnwise-decisions-")
    ) as tmp:
        result = run(
            Path(tmp),
            args.customers,
            args.seed,
            args.budgets,
            args.random_draws,
            args.overrides,
            args.evaluation_paths,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decisions.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    text = markdown(result)
    (args.out / "decisions.md").write_text(text)
    print(text)
    return 0 if all(all(b["checks"].values()) for b in result["budgets"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
