"""Lifetime-value benchmark: the project's CLV against a BG/NBD + Gamma-Gamma baseline (lifetimes) on the same
customers of an orders-only retailer, scored on what they really spent in the following year.

The retail demo (data=retail, features/demo/activity.py) is generated for `months` months. Everything before
T0 = end - 12 months is the calibration data: its tables are cut at T0 (customers who signed up before T0,
their orders before T0) and written to a folder the project sees as its whole history. The project trains
on it (`make train`'s stages, inactivity label) and scores at T0 with margin 1 and no discount over a 12-month
horizon, so its CLV is the spend it expects from each customer over the next 12 months. The baseline fits
BG/NBD (purchase frequency and dropout) and Gamma-Gamma (spend per order) on the same orders before T0 and
predicts the same 12 months. A naive "the last 12 months repeat" is shown for scale, and the ceiling: the
expected spend given the generator's hidden truth (each customer's purchase rate, attention span and spend
level), which no model of the tables can beat on average.

The customers compared are those with an order before T0. The project scores the customers its inactivity
label still counts as customers at T0; the others (lapsed: no order within the label window before T0) get a
predicted spend of 0, as the project expects nothing more from them, and are counted in the results. Realised spend is
the sum of their orders in [T0, T0 + 12 months) in the full data. Metrics: mean absolute error, RMSE,
total bias (predicted total / realised total - 1), Spearman rank correlation, top-decile capture (share of
realised spend from the 10% predicted highest) and predicted against realised spend by predicted decile.

    make bench-clv
    .venv/bin/python bench/clv.py --customers 5000

Writes bench/results/clv.json and clv.md and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
HOLDOUT_MONTHS = 12
DAYS_PER_MONTH = 365.25 / 12  # lifetimes' customer_lifetime_value counts months of 30 days; see bgnbd_spend


def months_before(day: date, months: int) -> date:
    """The same day of the month `months` months before `day` (the demo's dates are month starts)."""
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, day.day)


def cut_at(tables_dir: Path, out_dir: Path, t0: date) -> None:
    """Write the calibration tables: customers who signed up before `t0` and their orders before it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    customers = pd.read_parquet(tables_dir / "customers.parquet")
    orders = pd.read_parquet(tables_dir / "orders.parquet")
    before = pd.Timestamp(t0)
    customers = customers[pd.to_datetime(customers["signup_date"]) < before]
    orders = orders[pd.to_datetime(orders["order_date"]) < before]
    customers.to_parquet(out_dir / "customers.parquet", index=False)
    orders[orders["customer_id"].isin(customers["customer_id"])].to_parquet(
        out_dir / "orders.parquet", index=False
    )


def bgnbd_spend(orders: pd.DataFrame, t0: date, months: int, penalizer: float) -> pd.Series:
    """BG/NBD + Gamma-Gamma: each customer's expected spend over the `months` months after `t0`, from their
    orders before it (`lifetimes`, daily periods; Gamma-Gamma fitted on repeat buyers)."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data

    summary = summary_data_from_transaction_data(
        orders, "customer_id", "order_date", monetary_value_col="amount",
        observation_period_end=pd.Timestamp(t0) - pd.Timedelta(days=1), freq="D",
    )  # fmt: skip
    bgf = BetaGeoFitter(penalizer_coef=penalizer).fit(summary["frequency"], summary["recency"], summary["T"])
    repeat = summary[summary["frequency"] > 0]
    ggf = GammaGammaFitter(penalizer_coef=penalizer).fit(repeat["frequency"], repeat["monetary_value"])
    per_order = ggf.conditional_expected_average_profit(summary["frequency"], summary["monetary_value"])
    horizon_days = months * DAYS_PER_MONTH
    expected_orders = bgf.conditional_expected_number_of_purchases_up_to_time(
        horizon_days, summary["frequency"], summary["recency"], summary["T"]
    )
    return (expected_orders * per_order).rename("bgnbd")


def true_expected_spend(
    truth_dir: Path, buyers: pd.Index, t0: date, end: date, paths: int, seed: int
) -> pd.Series:
    """The ceiling: each customer's expected spend in [t0, end) given the generator's hidden truth (purchase
    rate, attention span, spend level and last active day before t0), by `paths` forward simulations of the
    mechanism (features/demo/activity.py) times the mean order amount of the customer's level."""
    from features.demo.activity import load_spec, season

    spec = load_spec(truth_dir)
    rates = (
        pd.read_parquet(truth_dir / "true_activity_rates.parquet").set_index("customer_id").reindex(buyers)
    )
    days = pd.read_parquet(truth_dir / "true_activity_days.parquet")
    days["day"] = pd.to_datetime(days["activity_date"]).to_numpy().astype("datetime64[D]")
    start = np.datetime64(t0, "D")
    last_seen = days[days["day"] < start].groupby("customer_id")["day"].max().reindex(buyers)
    last_seen = last_seen.to_numpy().astype("datetime64[D]")
    rate, decay = rates["rate"].to_numpy()[:, None], rates["decay_days"].to_numpy()[:, None]
    rng = np.random.default_rng(seed)
    since = np.repeat(
        (start - last_seen).astype(int).astype(float)[:, None], paths, axis=1
    )  # days since active
    orders = np.zeros((len(buyers), paths))
    calendar = season(spec, start + np.arange((np.datetime64(end, "D") - start).astype(int)))
    for factor in calendar:
        counts = rng.poisson(rate * factor * (spec.floor + np.exp(-since / decay)))
        orders += counts
        since = np.where(counts > 0, 1.0, since + 1.0)
    per_order = spec.amount_median * np.exp(0.5 * rates["level"].to_numpy() + spec.amount_sigma**2 / 2)
    return pd.Series(orders.mean(axis=1) * per_order, index=buyers, name="truth")


def project_spend(
    root: Path, calibration_dir: Path, n_customers: int, extra: list[str]
) -> tuple[pd.Series, dict]:
    """The project's CLV at T0 (the end of the calibration data): train and score with `make train`'s and
    `make score`'s stages, margin 1, no discount, a 12-month horizon."""
    from churnwise.api import load_config, score, train

    overrides = [
        f"paths.root_dir={root}", "data=retail", f"data.path={calibration_dir}", "data.truth_path=null",
        "data.generate_if_missing=false", f"data.generator.n_customers={n_customers}",
        "value.margin_rate=1.0", "value.annual_discount_rate=0.0", f"value.horizon_months={HOLDOUT_MONTHS}",
        *extra,
    ]  # fmt: skip
    began = time.perf_counter()
    trained = train(load_config(*overrides))
    scored = score(load_config(*overrides))
    scores = pd.read_parquet(scored.path, columns=["customer_id", "clv"])
    info = {"seconds": round(time.perf_counter() - began, 1), "model_version": trained.model_version,
            "scored": int(scored.customers)}  # fmt: skip
    return scores.set_index("customer_id")["clv"], info


def metrics_of(predicted: pd.Series, realised: pd.Series) -> dict[str, float]:
    """Error and ranking of predicted against realised spend (same customers)."""
    p, y = predicted.to_numpy(dtype=float), realised.to_numpy(dtype=float)
    top = p >= np.quantile(p, 0.9)
    return {
        "mae": float(np.mean(np.abs(p - y))),
        "rmse": float(np.sqrt(np.mean((p - y) ** 2))),
        "total_bias_pct": float(100.0 * (p.sum() / y.sum() - 1.0)),
        "spearman": float(pd.Series(p).rank().corr(pd.Series(y).rank())),
        "top_decile_capture": float(y[top].sum() / y.sum()),
    }


def by_decile(predicted: pd.Series, realised: pd.Series) -> pd.DataFrame:
    """Mean predicted and realised spend per decile of predicted spend (1 = lowest)."""
    frame = pd.DataFrame({"predicted": predicted.to_numpy(float), "realised": realised.to_numpy(float)})
    frame["decile"] = pd.qcut(frame["predicted"].rank(method="first"), 10, labels=range(1, 11)).astype(int)
    return frame.groupby("decile")[["predicted", "realised"]].mean().round(2).reset_index()


def run(n_customers: int, months: int, seed: int, penalizer: float, extra: list[str],
        project_variants: dict[str, list[str]], paths: int = 64) -> dict[str, Any]:  # fmt: skip
    """Generate, cut, fit both methods and compare them on the holdout year."""
    from churnwise.api import ensure_demo_data, load_config

    with tempfile.TemporaryDirectory(prefix="churnwise-clv-") as tmp:
        root = Path(tmp)
        cfg = load_config(
            f"paths.root_dir={root / 'full'}", "data=retail", f"data.generator.n_customers={n_customers}",
            f"data.generator.months={months}", f"data.generator.seed={seed}",
        )  # fmt: skip
        ensure_demo_data(cfg)
        tables = Path(cfg.data.path)
        end = date.fromisoformat(json.loads((tables / "_manifest.json").read_text())["end_date"])
        t0 = months_before(end, HOLDOUT_MONTHS)
        cut_at(tables, root / "calibration", t0)

        orders = pd.read_parquet(tables / "orders.parquet")
        orders["order_date"] = pd.to_datetime(orders["order_date"])
        before = orders[orders["order_date"] < pd.Timestamp(t0)]
        after = orders[
            (orders["order_date"] >= pd.Timestamp(t0)) & (orders["order_date"] < pd.Timestamp(end))
        ]
        buyers = pd.Index(sorted(before["customer_id"].unique()), name="customer_id")
        realised = after.groupby("customer_id")["amount"].sum().reindex(buyers, fill_value=0.0)

        predictions: dict[str, pd.Series] = {}
        info: dict[str, Any] = {}
        began = time.perf_counter()
        predictions["truth (ceiling)"] = true_expected_spend(
            Path(cfg.data.truth_path), buyers, t0, end, paths, seed
        )
        info["truth (ceiling)"] = {"seconds": round(time.perf_counter() - began, 1)}
        began = time.perf_counter()
        predictions["BG/NBD + Gamma-Gamma"] = bgnbd_spend(before, t0, HOLDOUT_MONTHS, penalizer).reindex(
            buyers
        )
        info["BG/NBD + Gamma-Gamma"] = {"seconds": round(time.perf_counter() - began, 1)}
        last_year = before[before["order_date"] >= pd.Timestamp(months_before(t0, HOLDOUT_MONTHS))]
        predictions["last 12 months repeat"] = (
            last_year.groupby("customer_id")["amount"].sum().reindex(buyers, fill_value=0.0)
        )
        for name, overrides in project_variants.items():
            slug = "".join(c if c.isalnum() else "_" for c in name)  # a path Hydra overrides can carry
            spend, info[name] = project_spend(root / slug, root / "calibration", n_customers,
                                              [*extra, *overrides])  # fmt: skip
            # customers the project does not score have lapsed by its inactivity label at T0: it expects
            # nothing more from them (counted, and predicted 0)
            info[name]["not_scored"] = int((~buyers.isin(spend.index)).sum())
            predictions[name] = spend.reindex(buyers, fill_value=0.0)
        missing = {name: int(p.isna().sum()) for name, p in predictions.items() if p.isna().any()}
        if missing:
            raise SystemExit(f"some customers with an order before {t0} got no prediction: {missing}")

    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "customers": n_customers,
        "months": months,
        "t0": t0.isoformat(),
        "holdout": f"{t0.isoformat()} .. {end.isoformat()} (exclusive)",
        "buyers": len(buyers),
        "realised_total": float(realised.sum()),
        "realised_zero_share": float((realised == 0).mean()),
        "metrics": {name: metrics_of(p, realised) for name, p in predictions.items()},
        "deciles": {name: by_decile(p, realised).to_dict(orient="list") for name, p in predictions.items()},
        "info": info,
    }


def markdown(result: dict[str, Any]) -> str:
    """The results as a Markdown page."""
    lines = [
        "# Lifetime value: the project against BG/NBD + Gamma-Gamma",
        "",
        f"Orders-only retail demo, {result['customers']:,} customers, {result['months']} months; calibration "
        f"before {result['t0']}, holdout {result['holdout']}; {result['buyers']:,} customers with an order "
        f"before T0 (realised holdout spend {result['realised_total']:,.0f}; "
        f"{100 * result['realised_zero_share']:.1f}% spent nothing). Generated {result['generated_at']} on "
        f"{result['machine']} (`make bench-clv`).",
        "",
        "| method | MAE | RMSE | total bias | Spearman | top-decile capture | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in result["metrics"].items():
        seconds = result["info"].get(name, {}).get("seconds", "")
        lines.append(
            f"| {name} | {m['mae']:.2f} | {m['rmse']:.2f} | {m['total_bias_pct']:+.1f}% | {m['spearman']:.3f} "
            f"| {100 * m['top_decile_capture']:.1f}% | {seconds} |"
        )
    for name, extra in result["info"].items():
        if extra.get("not_scored"):
            lines.append(
                f"\n{name}: {extra['not_scored']:,} of the customers had lapsed at T0 (not scored, "
                "predicted 0)."
            )
    lines += ["", "Mean predicted / realised spend by decile of predicted spend (1 = lowest):", ""]
    names = list(result["deciles"])
    lines.append("| decile | " + " | ".join(names) + " |")
    lines.append("|---" * (len(names) + 1) + "|")
    for i in range(10):
        cells = [
            f"{result['deciles'][n]['predicted'][i]:.1f} / {result['deciles'][n]['realised'][i]:.1f}"
            for n in names
        ]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--penalizer", type=float, default=0.001)
    parser.add_argument("--override", action="append", default=[], help="a Hydra override for the project")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    # survival=constant is not compared: its closed form counts every future month, not value.horizon_months
    variants = {"project (survival CLV)": []}
    result = run(args.customers, args.months, args.seed, args.penalizer, args.override, variants)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "clv.json").write_text(json.dumps(result, indent=2) + "\n")
    page = markdown(result)
    (args.out / "clv.md").write_text(page)
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
