"""Quality benchmark: the project's model on four shapes of demo data, against the generator's truth (the
ceiling) and plain baselines on the same rows, the same split, in the same run.

Shapes (each made by a demo generator with a known mechanism):

- subscriptions: data=demo as it is (subscriptions, orders, events, complaints, ...; contractual label);
- orders: data=retail, customers and orders only (inactivity label, 90 days);
- flat: data=telco, one flat row per customer (the table's own label, stratified K-fold);
- app: data=app, customers and a raw event log (inactivity label, 28 days, observed weekly on Mondays).

For each shape: the demo data is generated into a temporary root (nothing under ./data, ./outputs or
./mlflow.db is touched), the feature table is built and the project's model is fitted, calibrated and
evaluated with the project's defaults (`models.training.fit_and_evaluate`, what `make train` runs, without
logging to MLflow). On the test slice (out-of-fold rows for K-fold), the calibrated and raw model, the truth,
a default LightGBM on the same features (no calibration) and, for the activity shapes, a logistic regression
on recency / frequency / monetary features are scored: ROC AUC, PR AUC, Brier, log loss, ECE and the share of
probabilities at 0 or 1. Goals per shape: AUC >= 0.97 x ceiling, ECE <= 0.015, calibrated AUC within 0.002
of raw, AUC above every plain baseline's.

    make bench-quality
    .venv/bin/python bench/quality.py --shapes orders app --override app:label.horizon_days=14

Writes bench/results/quality.json and quality.md and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
METRICS = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "share_at_0_or_1")
EXTREME = 1e-6  # a probability within this of 0 or 1 counts as "at 0 or 1"
GOALS = {"auc_vs_ceiling": 0.97, "ece": 0.015, "calibration_auc_change": 0.002}


@dataclass(frozen=True)
class Shape:
    """One data shape: its Hydra overrides and the features of its RFM baseline (None: no RFM baseline)."""

    name: str
    description: str
    overrides: tuple[str, ...]
    rfm: tuple[str, str, str] | None = None  # recency, frequency, monetary feature names


SHAPES = {
    "subscriptions": Shape(
        "subscriptions", "subscriptions with events (data=demo, contractual label)",
        ("data=demo", "data.generator.n_customers=20000", "data.generator.months=30"),
    ),
    "orders": Shape(
        "orders", "orders only (data=retail, inactivity label)",
        ("data=retail", "data.generator.n_customers=20000", "data.generator.months=36"),
        ("days_since_last_order", "orders_365d", "order_amount_365d"),
    ),
    "flat": Shape(
        "flat", "a flat table (data=telco, snapshot label, stratified 5-fold)",
        ("data=telco", "data.generator.n_customers=20000", "data.generator.score_customers=100"),
    ),
    "app": Shape(
        "app", "an app's raw event log (data=app, inactivity label, 28 days, a weekly grid)",
        ("data=app", "data.generator.n_customers=8000", "data.generator.months=18"),
        ("days_since_last_event", "events_90d", "quantity_30d"),
    ),
}  # fmt: skip


def metrics_of(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The benchmark's metrics of probabilities `p` for outcomes `y`."""
    from models.evaluation import classification_metrics

    p = np.asarray(p, dtype=float)
    found = classification_metrics(y, p)
    out = {k: float(found[k]) for k in METRICS if k in found}
    out["share_at_0_or_1"] = float(np.mean((p <= EXTREME) | (p >= 1 - EXTREME)))
    return out


WITH_CALIBRATION_DATES = "(info) %s, fitted on the training and calibration dates"


def plain_lightgbm(train: pd.DataFrame, held: pd.DataFrame, features: list[str], categorical: list[str],
                   seed: int) -> np.ndarray:  # fmt: skip
    """A default LightGBM (no tuning, no calibration) fitted on `train`, its probabilities for `held`."""
    import lightgbm

    from models.preprocessing import SnapshotEncoder

    encoder = SnapshotEncoder(categorical=categorical).fit(train[features])  # every level kept: plain
    model = lightgbm.LGBMClassifier(random_state=seed, n_jobs=2, verbose=-1)
    model.fit(encoder.transform(train[features]), train["churned"].to_numpy())
    return model.predict_proba(encoder.transform(held[features]))[:, 1]


def rfm_logistic(train: pd.DataFrame, held: pd.DataFrame, rfm: tuple[str, str, str], seed: int) -> np.ndarray:
    """A logistic regression on log1p(recency, frequency, monetary), standardised; probabilities for `held`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def frame(rows: pd.DataFrame) -> np.ndarray:
        X = rows[list(rfm)].apply(pd.to_numeric, errors="coerce").astype(float)
        X[rfm[0]] = X[rfm[0]].fillna(3650.0)  # never active: as long ago as can be
        return np.log1p(X.fillna(0.0).clip(lower=0.0).to_numpy())

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    model.fit(frame(train), train["churned"].to_numpy())
    return model.predict_proba(frame(held))[:, 1]


def run_shape(shape: Shape, root: Path, extra: list[str]) -> dict[str, Any]:
    """Generate, build, fit and score one shape; its rows of metrics and goals."""

    from churnwise.api import build_features, ensure_demo_data, load_config
    from churnwise.settings import with_label_period
    from features.demo.activity import history_inactivity_probability, is_activity_truth
    from features.labels import LabelWindow
    from models.calibration import calibration_name
    from models.ceiling import true_probability
    from models.split import configured_split, slice_masks, stratified_folds
    from models.training import fit_configured

    started = time.time()
    cfg = with_label_period(load_config(f"paths.root_dir={root / shape.name}", *shape.overrides, *extra))
    ensure_demo_data(cfg)
    generated = time.time()
    built = build_features(cfg)
    featured = time.time()
    data, fitted = fit_configured(cfg, built)  # what `make train` fits and evaluates, without MLflow
    settings, seed, snapshots = data.settings, data.seed, data.snapshots
    features, categorical = data.features, data.categorical
    window = LabelWindow.from_config(cfg.label)
    test_rows = fitted.test_rows
    y = test_rows["churned"].to_numpy(dtype=int)
    predictions = {"model (calibrated)": fitted.p_test, "model (raw)": fitted.raw_test}
    truth = true_probability(cfg.data.get("truth_path"), test_rows, window=window)
    if truth is not None:
        predictions["ceiling (truth)"] = truth
    if is_activity_truth(Path(cfg.data.truth_path or ".")) and not window.lead_days and window.horizon_days:
        # the best any model of these tables can do: the truth averaged over what the history leaves unknown
        predictions["best from the tables (Bayes)"] = history_inactivity_probability(
            Path(cfg.data.path),
            Path(cfg.data.truth_path),
            test_rows,
            horizon_days=int(window.horizon_days),
        )

    baselines: dict[str, np.ndarray] = {}
    if "fold" in fitted.description:  # stratified K-fold: the same folds, out-of-fold predictions
        lgbm, rfm = np.zeros(len(test_rows)), np.zeros(len(test_rows))
        for fit_index, held_index in stratified_folds(test_rows, settings.n_folds, seed):
            fit_rows, held_rows = test_rows.iloc[fit_index], test_rows.iloc[held_index]
            lgbm[held_index] = plain_lightgbm(fit_rows, held_rows, features, categorical, seed)
            if shape.rfm:
                rfm[held_index] = rfm_logistic(fit_rows, held_rows, shape.rfm, seed)
        baselines["plain LightGBM"] = lgbm
        if shape.rfm:
            baselines["RFM logistic"] = rfm
    else:
        # The time split: the baselines are fitted on the model's own training slice (same rows, same split).
        # For information, also on every date before the test slice: the training and calibration slices,
        # three more recent dates the model keeps for its calibration.
        masks = slice_masks(snapshots["observation_date"], configured_split(settings, snapshots))
        train, before = snapshots[masks["train"]], snapshots[masks["train"] | masks["calibration"]]
        baselines["plain LightGBM"] = plain_lightgbm(train, test_rows, features, categorical, seed)
        predictions[WITH_CALIBRATION_DATES % "plain LightGBM"] = plain_lightgbm(
            before, test_rows, features, categorical, seed
        )
        if shape.rfm:
            baselines["RFM logistic"] = rfm_logistic(train, test_rows, shape.rfm, seed)
            predictions[WITH_CALIBRATION_DATES % "RFM logistic"] = rfm_logistic(
                before, test_rows, shape.rfm, seed
            )
    predictions |= baselines
    rows = {name: metrics_of(y, p) for name, p in predictions.items()}

    model, raw = rows["model (calibrated)"], rows["model (raw)"]
    goals = {}
    if truth is not None:
        ceiling = rows["ceiling (truth)"]["roc_auc"]
        goals["AUC >= 0.97 x ceiling"] = {
            "value": model["roc_auc"] / ceiling, "target": GOALS["auc_vs_ceiling"],
            "pass": model["roc_auc"] >= GOALS["auc_vs_ceiling"] * ceiling,
        }  # fmt: skip
    if "best from the tables (Bayes)" in rows:
        best_possible = rows["best from the tables (Bayes)"]["roc_auc"]
        goals["(info) best from the tables / ceiling AUC: the reachable ratio"] = {
            "value": best_possible / rows["ceiling (truth)"]["roc_auc"], "target": GOALS["auc_vs_ceiling"],
            "pass": True,
        }  # fmt: skip
        goals["(info) AUC / best from the tables"] = {
            "value": model["roc_auc"] / best_possible, "target": 1.0, "pass": True,
        }  # fmt: skip
    goals["ECE <= 0.015"] = {
        "value": model["ece"],
        "target": GOALS["ece"],
        "pass": model["ece"] <= GOALS["ece"],
    }
    change = abs(model["roc_auc"] - raw["roc_auc"])
    goals["|calibrated - raw AUC| <= 0.002"] = {
        "value": change, "target": GOALS["calibration_auc_change"], "pass": change <= GOALS["calibration_auc_change"],
    }  # fmt: skip
    best = max(rows[name]["roc_auc"] for name in baselines)
    goals["AUC above every plain baseline"] = {
        "value": model["roc_auc"] - best, "target": 0.0, "pass": model["roc_auc"] > best,
    }  # fmt: skip
    return {
        "shape": shape.name,
        "description": shape.description,
        "overrides": [*shape.overrides, *extra],
        "label": {
            "name": str(cfg.label.name),
            "population": str(cfg.label.population),
            "window": window.describe(),
        },  # fmt: skip
        "observation": {k: v for k, v in dict(cfg.observation).items() if v is not None},
        "split": fitted.description,
        "calibration": calibration_name(fitted.model.calibrator),
        "snapshots": len(snapshots),
        "evaluated_rows": len(test_rows),
        "churn_rate": float(y.mean()),
        "features": len(features),
        "metrics": rows,
        "goals": goals,
        "all_pass": all(g["pass"] for name, g in goals.items() if not name.startswith("(info)")),
        "seconds": {
            "generate": generated - started,
            "features": featured - generated,
            "fit_and_score": time.time() - featured,
        },  # fmt: skip
    }


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The results as Markdown: one metrics table and one goals table per shape."""
    lines = ["# Quality benchmark (bench/quality.py)", "",
             f"Run {meta['finished']} on {meta['machine']}, git {meta['git']}; {meta['seconds']:.0f} s in all.",
             "Metrics on the test slice of the project's time split (out-of-fold rows for K-fold); the model is "
             "fitted with the project's defaults; the ceiling is the generator's true probability of each "
             "row's label (it knows each customer's latent state); 'best from the tables (Bayes)', for the activity "
             "shapes, is the truth averaged over what the tables leave unknown, the best any model of them can do "
             f"(features.demo.activity.history_inactivity_probability); 'at 0 or 1' is the share of probabilities within {EXTREME:g} of 0 or 1.", ""]  # fmt: skip
    for result in results:
        lines += [f"## {result['shape']}: {result['description']}", "",
                  f"{result['evaluated_rows']:,} evaluated rows of {result['snapshots']:,} labelled snapshots, "
                  f"churn rate {result['churn_rate']:.3f}, {result['features']} features; label "
                  f"{result['label']['name']} ({result['label']['window']}, population "
                  f"{result['label']['population']}); split: {result['split']}; calibrator "
                  f"{result['calibration']}; overrides: `{' '.join(result['overrides'])}`.", "",
                  "| | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]  # fmt: skip
        for name, row in result["metrics"].items():
            lines.append(
                f"| {name} | " + " | ".join(f"{row.get(k, float('nan')):.4f}" for k in METRICS) + " |"
            )
        lines += ["", "| goal | value | target | result |", "|---|---:|---:|---|"]
        for goal, found in result["goals"].items():
            verdict = "info" if goal.startswith("(info)") else "pass" if found["pass"] else "**fail**"
            lines.append(f"| {goal} | {found['value']:.4f} | {found['target']:g} | {verdict} |")
        lines.append("")
    return "\n".join(lines)


def write_results(results: list[dict[str, Any]], folder: Path, commit: str, started: float) -> str:
    """Write quality.json and quality.md for the shapes run so far; return the Markdown."""
    meta = {
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "git": commit or "unknown",
        "seconds": time.time() - started,
        "goals": GOALS,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "quality.json").write_text(json.dumps({"meta": meta, "shapes": results}, indent=2) + "\n")
    text = markdown(results, meta)
    (folder / "quality.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line."""
    import logging
    import subprocess

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--override", action="append", default=[], metavar="SHAPE:KEY=VALUE",
                        help="a Hydra override for one shape (repeatable), e.g. app:label.horizon_days=14")  # fmt: skip
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    extra: dict[str, list[str]] = {name: [] for name in SHAPES}
    for item in args.override:
        name, _, override = item.partition(":")
        if name not in SHAPES or "=" not in override:
            parser.error(
                f"--override {item!r}: expected SHAPE:KEY=VALUE with SHAPE one of {', '.join(SHAPES)}"
            )
        extra[name].append(override)

    started = time.time()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()  # fmt: skip
    results: list[dict[str, Any]] = []
    text = ""
    with tempfile.TemporaryDirectory(prefix="churnwise-quality-") as tmp:
        root = args.keep or Path(tmp)
        for name in args.shapes:
            print(f"[quality] {name} ...", file=sys.stderr, flush=True)
            results.append(run_shape(SHAPES[name], root, extra[name]))
            print(f"[quality] {name} done in {sum(results[-1]['seconds'].values()):.0f} s", file=sys.stderr)
            text = write_results(
                results, args.results_dir, commit, started
            )  # after each shape: a crash keeps them
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
