"""Did the last campaigns work? (`make readout`): for every past scoring run in the history whose horizon has
passed, the realised churn and margin of the treated against their control group, per action, with confidence
intervals, and the value delivered against the value the run claimed.

Outcomes come from the current tables, as of `readout.as_of` (default: the end of the data):
- churn: the configured label (`features.labels.label_sql`) at observation_date = the run's as_of;
- margin: `value.margin_rate` x the revenue the customer paid within the label window after the run's as_of
  (subscriptions: monthly_price for each day held, at 365.25 / 12 days a month; orders: their amounts, when
  purchases count as revenue, `decisions.value.RevenueRule`). Undiscounted, and only within the horizon: an
  effect lasting longer is worth more than the margin delivered within it.

Effects are treated minus control (a negative churn effect: fewer churned). Within one run and action every
customer has the same probability of being treated, and the churn interval is Newcombe's hybrid score interval
for a difference of two proportions (Wilson intervals of each); when probabilities differ within a group the
means are propensity-weighted (Hajek: treated weighted 1/p, controls 1/(1 - p)) with a normal interval from the
linearised variance, which is also the margin's interval. Groups with fewer than `readout.min_group`
customers in an arm get no interval and a note.

value_delivered = n_treated x (margin effect) - cost of the treated; value_claimed = the run's sum of
expected_net_value over the treated (a lifetime value, not a horizon's margin: see docs/scoring.md).
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from scipy.stats import norm

from decisions.control import CONTROL, TREATED
from decisions.value import RevenueRule
from features.dates import as_of_date, config_date
from features.dialect import install_duckdb_functions
from features.errors import ConfigError
from features.labels import DAYS_PER_MONTH, LabelWindow, label_sql
from features.sql import identifier, literal, literal_list, qualified

log = logging.getLogger(__name__)

ALIAS = "churnwise_readout"
RUN_COLUMNS = ("customer_id", "as_of", "action", "action_cost", "expected_net_value", "assignment",
               "assignment_probability")  # fmt: skip
FILES = ("readout_by_action.parquet", "readout_by_action.csv", "readout_runs.csv")


@dataclass(frozen=True)
class ReadoutSettings:
    """`conf/readout`: the date outcomes are read as of, the confidence of the intervals, the smallest arm an
    interval is given for, and where the tables go."""

    as_of: date | None = None
    confidence: float = 0.95
    min_group: int = 30
    output_dir: Path = Path("outputs/readout")

    @classmethod
    def from_config(cls, node: Any) -> ReadoutSettings:
        """The settings of a `readout` node; ConfigError naming a bad key."""
        confidence, min_group = node.get("confidence", 0.95), node.get("min_group", 30)
        if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 < confidence < 1:
            raise ConfigError(f"readout.confidence: {confidence!r} is not a probability between 0 and 1")
        if isinstance(min_group, bool) or not isinstance(min_group, int) or min_group < 2:
            raise ConfigError(f"readout.min_group: {min_group!r} is not a whole number of at least 2")
        return cls(
            config_date(node.get("as_of"), "readout.as_of"), float(confidence), int(min_group),
            Path(str(node.output_dir)),
        )  # fmt: skip


@dataclass(frozen=True)
class ReadoutResult:
    """The runs read out (as_of, horizon_end, treated, control), the effects per run and action, where the
    tables went and the MLflow run."""

    as_of: date
    runs: pd.DataFrame
    by_action: pd.DataFrame
    path: Path
    run_id: str


def wilson(successes: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def newcombe(x1: float, n1: float, x2: float, n2: float, confidence: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p1 - p2 (his method 10), from the Wilson intervals of each."""
    z = float(norm.ppf(0.5 + confidence / 2))
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    delta = p1 - p2
    return delta - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), delta + math.sqrt(
        (u1 - p1) ** 2 + (p2 - l2) ** 2
    )


def hajek(y: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """The weighted (Hajek) mean and its linearised variance, with the n / (n - 1) small-sample factor."""
    total = weight.sum()
    mean = float((weight * y).sum() / total)
    n = len(y)
    variance = float((weight**2 * (y - mean) ** 2).sum() / total**2) * (n / (n - 1) if n > 1 else math.nan)
    return mean, variance


def _difference(
    y: np.ndarray, treated: np.ndarray, weight: np.ndarray, z: float
) -> tuple[float, float, float, float, float]:
    """(treated mean, control mean, difference, low, high): Hajek means, normal interval."""
    mt, vt = hajek(y[treated], weight[treated])
    mc, vc = hajek(y[~treated], weight[~treated])
    half = z * math.sqrt(vt + vc)
    return mt, mc, mt - mc, mt - mc - half, mt - mc + half


def effects_by_action(rows: pd.DataFrame, confidence: float, min_group: int = 30) -> pd.DataFrame:
    """Per (as_of, action): treated and control counts, churn and margin of each, the effects (treated minus
    control) with their intervals, the cost of the treated, value delivered and value claimed, and a note.

    `rows`: one per assigned customer with as_of, action, assignment ('treated'/'control'),
    assignment_probability (of being treated), churned (1/0; missing: unlabelled, left out of churn), margin,
    action_cost and expected_net_value."""
    z = float(norm.ppf(0.5 + confidence / 2))
    out = []
    for (as_of, action), group in rows.groupby(["as_of", "action"], sort=True):
        treated = (group["assignment"] == TREATED).to_numpy()
        controls = (group["assignment"] == CONTROL).to_numpy()
        group, treated = group[treated | controls], treated[treated | controls]
        p = group["assignment_probability"].to_numpy(dtype=float)
        weight = np.where(treated, 1.0 / p, 1.0 / np.clip(1.0 - p, 1e-12, None))
        weighted = bool(np.nanmax(p) - np.nanmin(p) > 1e-9)
        n_t, n_c = int(treated.sum()), int((~treated).sum())
        cost = float(group.loc[treated, "action_cost"].sum())
        row: dict[str, Any] = {
            "as_of": as_of, "action": action, "n_treated": n_t, "n_control": n_c,
            "method": "hajek" if weighted else "newcombe", "cost": cost,
            "value_claimed": float(group.loc[treated, "expected_net_value"].sum()),
        }  # fmt: skip
        notes = []
        labelled = group["churned"].notna().to_numpy()
        if (~labelled).any():
            notes.append(f"{int((~labelled).sum())} without a churn label left out of churn")
        churned = group["churned"].to_numpy(dtype=float)
        margin = group["margin"].to_numpy(dtype=float)
        if n_t == 0 or n_c == 0:
            notes.append("no control group" if n_c == 0 else "no treated customers")
            row |= {"churn_treated": np.nan, "churn_control": np.nan, "effect": np.nan, "low": np.nan,
                    "high": np.nan, "margin_treated": np.nan, "margin_control": np.nan, "margin_effect": np.nan,
                    "margin_low": np.nan, "margin_high": np.nan}  # fmt: skip
        else:
            lt, lc = labelled & treated, labelled & ~treated
            if lt.any() and lc.any():
                ct, cc, effect, low, high = _difference(
                    churned[labelled], treated[labelled], weight[labelled], z
                )
                if not weighted:
                    low, high = newcombe(churned[lt].sum(), lt.sum(), churned[lc].sum(), lc.sum(), confidence)
            else:
                ct = cc = effect = low = high = np.nan
            mt, mc, m_effect, m_low, m_high = _difference(margin, treated, weight, z)
            row |= {"churn_treated": ct, "churn_control": cc, "effect": effect, "low": low, "high": high,
                    "margin_treated": mt, "margin_control": mc, "margin_effect": m_effect, "margin_low": m_low,
                    "margin_high": m_high}  # fmt: skip
            small = min(int(lt.sum()), int(lc.sum()))
            if small < min_group:
                notes.append(
                    f"an arm has {small} customers, fewer than readout.min_group {min_group}: no interval"
                )
                row |= {"low": np.nan, "high": np.nan, "margin_low": np.nan, "margin_high": np.nan}
        row["value_delivered"] = n_t * row["margin_effect"] - cost
        row["value_delivered_low"] = n_t * row["margin_low"] - cost
        row["value_delivered_high"] = n_t * row["margin_high"] - cost
        row["note"] = "; ".join(notes)
        out.append(row)
    columns = [
        "as_of", "action", "n_treated", "n_control", "churn_treated", "churn_control", "effect", "low", "high",
        "method", "margin_treated", "margin_control", "margin_effect", "margin_low", "margin_high", "cost",
        "value_delivered", "value_delivered_low", "value_delivered_high", "value_claimed", "note",
    ]  # fmt: skip
    return pd.DataFrame(out, columns=columns)


def history_runs(con: Any, database: Path, table: str) -> pd.DataFrame:
    """The scoring runs of the history table (attached read-only as ALIAS): as_of, customers, treated and
    control; ConfigError when there is no history, or it predates control groups."""
    if not database.is_file():
        raise ConfigError(
            f"readout: no scoring history at {database} (score.database): run `make score` first"
        )
    try:
        con.execute(f"ATTACH {literal(database)} AS {identifier(ALIAS)} (READ_ONLY)")
    except duckdb.Error as error:
        first = str(error).strip().splitlines()[0]
        raise ConfigError(
            f"readout: score.database {database} cannot be read (a scoring job still running, or not a DuckDB "
            f"database: {first})"
        ) from None
    found = con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ?", [ALIAS, table]
    ).fetchall()
    columns = {c for (c,) in found}
    if not columns:
        raise ConfigError(
            f"readout: {database} holds no history table {table} (score.table): run `make score` first"
        )
    missing = sorted(set(RUN_COLUMNS) - columns)
    if missing:
        raise ConfigError(
            f"readout: the history table {table} in {database} lacks {', '.join(missing)}: it was written before "
            f"control groups; score with actions.control.share > 0 (the default) to have campaigns to read out"
        )
    return (
        con.execute(
            f"""SELECT as_of, count(*) AS customers, count(*) FILTER (WHERE assignment = {literal(TREATED)}) AS treated,
                   count(*) FILTER (WHERE assignment = {literal(CONTROL)}) AS control
            FROM {qualified(ALIAS, table)} GROUP BY as_of ORDER BY as_of"""
        )
        .df()
        .assign(as_of=lambda runs: pd.to_datetime(runs["as_of"]).dt.date)
    )


def due_runs(runs: pd.DataFrame, window: LabelWindow, as_of: date) -> pd.DataFrame:
    """The runs whose horizon (the label window and its grace gap) has passed by `as_of`, with their
    horizon_end; those without a control group are left out."""
    runs = runs.assign(
        horizon_end=[
            window.end(d) + timedelta(days=window.grace_days) for d in pd.to_datetime(runs["as_of"]).dt.date
        ]
    )
    return runs[(runs["horizon_end"] <= as_of) & (runs["control"] > 0)].reset_index(drop=True)


def outcomes(
    con: Any,
    table: str,
    dates: list[date],
    label_cfg: dict[str, Any],
    data_end: date,
    present: set[str],
    revenue: RevenueRule,
    margin_rate: float,
) -> pd.DataFrame:
    """The assigned customers of the runs on `dates` with their realised churn (the label at their run's
    as_of, data read up to `data_end`) and margin within the label window."""  # fmt: skip
    install_duckdb_functions(con)
    history = qualified(ALIAS, table)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE readout_rows AS
            SELECT {", ".join(identifier(c) for c in RUN_COLUMNS)} FROM {history}
            WHERE assignment IS NOT NULL AND as_of IN {literal_list(dates)}"""
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE grid AS SELECT DISTINCT customer_id, as_of AS observation_date FROM readout_rows"
    )
    start, end = LabelWindow.from_config(label_cfg).sql()
    paid = []
    if "subscriptions" in present:
        paid.append(
            f"""SELECT g.customer_id, g.observation_date,
                       s.monthly_price * greatest(0, date_diff('day', greatest(s.start_date, g.window_start),
                           least(coalesce(s.end_date, g.window_end), g.window_end))) / {literal(DAYS_PER_MONTH)} AS paid
                FROM w g JOIN subscriptions s ON s.customer_id = g.customer_id"""
        )
    if "orders" in present and revenue.purchases is not None:
        paid.append(
            """SELECT g.customer_id, g.observation_date, o.amount AS paid
               FROM w g JOIN orders o ON o.customer_id = g.customer_id
                AND o.order_date >= g.window_start AND o.order_date < g.window_end"""
        )
    revenue_sql = (
        " UNION ALL ".join(paid) or "SELECT NULL AS customer_id, NULL AS observation_date, 0 AS paid"
    )
    frame = con.execute(
        f"""WITH w AS (SELECT customer_id, observation_date, {start} AS window_start, {end} AS window_end FROM grid),
                 labels AS ({label_sql(label_cfg, data_end, present)}),
                 revenue AS (SELECT customer_id, observation_date, sum(paid) AS paid FROM ({revenue_sql}) p
                             GROUP BY customer_id, observation_date)
            SELECT r.*, l.churned, {literal(float(margin_rate))} * coalesce(v.paid, 0) AS margin
            FROM readout_rows r
            LEFT JOIN labels l ON l.customer_id = r.customer_id AND l.observation_date = r.as_of
            LEFT JOIN revenue v ON v.customer_id = r.customer_id AND v.observation_date = r.as_of
            ORDER BY r.as_of, r.customer_id"""
    ).df()
    con.execute("DROP TABLE readout_rows")
    con.execute("DROP TABLE grid")
    return frame.assign(as_of=pd.to_datetime(frame["as_of"]).dt.date)


def readout_figure(by_action: pd.DataFrame) -> Figure:
    """A forest plot: each run's and action's churn effect (treated minus control) with its interval."""
    import matplotlib.pyplot as plt

    shown = by_action[by_action["effect"].notna()].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.35 * max(len(shown), 1)))
    y = np.arange(len(shown))[::-1]
    has = shown["low"].notna().to_numpy()
    effect = shown["effect"].to_numpy(dtype=float)
    ax.errorbar(
        effect[has], y[has], xerr=[effect[has] - shown["low"][has], shown["high"][has] - effect[has]],
        fmt="o", color="tab:blue", capsize=3, label="effect and interval",
    )  # fmt: skip
    ax.scatter(effect[~has], y[~has], marker="x", color="tab:gray", label="too few for an interval")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(
        y, [f"{r.as_of} {r.action} ({r.n_treated}/{r.n_control})" for r in shown.itertuples()], fontsize=8
    )
    ax.set_xlabel("change in churn rate, treated minus control (negative: fewer churned)")
    ax.set_title("Did the campaigns work? (treated/control customers)", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def readout_metrics(by_action: pd.DataFrame) -> dict[str, float]:
    """readout_<as_of>_<action>_effect / _low / _high / _n_treated / _n_control / _value_delivered (finite only)."""
    metrics: dict[str, float] = {}
    for r in by_action.itertuples():
        prefix = f"readout_{r.as_of}_{r.action}"
        for name in ("effect", "low", "high", "n_treated", "n_control", "value_delivered", "value_claimed"):
            value = float(getattr(r, name))
            if math.isfinite(value):
                metrics[f"{prefix}_{name}"] = value
    return metrics


def render(by_action: pd.DataFrame, as_of: date, confidence: float) -> str:
    """The printed summary table."""
    lines = [
        f"churnwise readout as of {as_of}: churn effect = treated minus control ({confidence:.0%} interval)",
        f"  {'as_of':<12}{'action':<24}{'treated':>8}{'control':>8}{'churn t':>9}{'churn c':>9}{'effect':>9}"
        f"{'interval':>20}{'delivered':>11}{'claimed':>10}",
    ]
    for r in by_action.itertuples():
        interval = f"{r.low:+.3f} .. {r.high:+.3f}" if math.isfinite(r.low) else "-"
        lines.append(
            f"  {str(r.as_of):<12}{r.action:<24}{r.n_treated:>8,}{r.n_control:>8,}{r.churn_treated:>9.3f}"
            f"{r.churn_control:>9.3f}{r.effect:>+9.3f}{interval:>20}{r.value_delivered:>11,.0f}{r.value_claimed:>10,.0f}"
            + (f"  ({r.note})" if r.note else "")
        )
    return "\n".join(lines)


def readout(cfg: DictConfig) -> ReadoutResult:
    """Read out every past scoring run whose horizon has passed: effects per run and action, written to
    `readout.output_dir` and logged as an MLflow run (stage=readout), together or not at all."""
    import matplotlib.pyplot as plt
    import mlflow

    from features.build import is_snapshot
    from features.engine import data_window
    from features.inputs import load_inputs
    from features.io import fingerprint
    from features.provenance import git_commit, resolved_yaml
    from features.publish import Publication, check_can_write, spreadsheet_safe_frame
    from models.tracking import TrackingSettings, tracked_run

    settings = ReadoutSettings.from_config(cfg.readout)
    if is_snapshot(cfg):
        raise ConfigError(
            "readout: a snapshot table has no outcomes after its date; read out on dated tables"
        )
    check_can_write(settings.output_dir, FILES, "readout.output_dir")
    label_cfg = OmegaConf.to_container(cfg.label, resolve=True)
    window = LabelWindow.from_config(label_cfg)
    tracking = TrackingSettings.from_config(cfg.mlflow)
    tracking.setup()
    tables, _ = load_inputs(cfg)
    con, present = tables.con, set(tables.report.present)
    data_end = data_window(con, present).end
    as_of = as_of_date(settings.as_of, data_end)
    if as_of > data_end:
        raise ConfigError(f"readout.as_of: {as_of} is after the end of the input data ({data_end})")
    database, table = Path(cfg.score.database), str(cfg.score.table)
    runs = history_runs(con, database, table)
    due = due_runs(runs, window, as_of)
    if due.empty:
        listed = ", ".join(f"{r.as_of} ({r.control} controls)" for r in runs.itertuples()) or "none"
        raise ConfigError(
            f"readout: no scoring run in {table} ({database}) with a control group whose horizon ({window.describe()}"
            f" and {window.grace_days} grace days) has passed by readout.as_of {as_of}; runs: {listed}"
        )
    dates = list(due["as_of"])
    revenue = RevenueRule.from_config(cfg.value, present)
    rows = outcomes(con, table, dates, label_cfg, as_of, present, revenue, float(cfg.value.margin_rate))
    con.execute(f"DETACH {identifier(ALIAS)}")
    by_action = effects_by_action(rows, settings.confidence, settings.min_group)
    data_fingerprint, _ = fingerprint(tables.files)
    commit, dirty = git_commit()
    tags = {"stage": "readout", "as_of": as_of.isoformat(), "data.name": str(cfg.data.name),
            "data.fingerprint": data_fingerprint, "git.commit": commit, "git.dirty": str(dirty).lower(),
            "readout.runs": ",".join(map(str, dates))}  # fmt: skip
    out = settings.output_dir
    with tempfile.TemporaryDirectory() as tmp, Publication() as publication:
        publication.stage(
            out / FILES[0], lambda temp: by_action.to_parquet(temp, index=False), "readout.output_dir"
        )
        publication.stage(
            out / FILES[1],
            lambda temp: spreadsheet_safe_frame(by_action).to_csv(temp, index=False),
            "readout.output_dir",
        )
        publication.stage(out / FILES[2], lambda temp: due.to_csv(temp, index=False), "readout.output_dir")
        with tracked_run(f"readout-{as_of}", tags) as run:
            mlflow.log_params({"readout.confidence": settings.confidence, "readout.min_group": settings.min_group,
                               "label.window": window.describe(), "value.margin_rate": cfg.value.margin_rate})  # fmt: skip
            mlflow.log_metrics({"readout_runs": float(len(due)), **readout_metrics(by_action)})
            folder = Path(tmp) / "tables"
            folder.mkdir()
            spreadsheet_safe_frame(by_action).to_csv(folder / "readout_by_action.csv", index=False)
            due.to_csv(folder / "readout_runs.csv", index=False)
            (folder / "resolved_config.yaml").write_text(resolved_yaml(cfg))
            mlflow.log_artifacts(str(folder), artifact_path="readout")
            figure = readout_figure(by_action)
            mlflow.log_figure(figure, "plots/readout_effects.png")
            plt.close(figure)
            publication.swap()
    log.info("%s\n  output          %s\n  MLflow run      %s", render(by_action, as_of, settings.confidence),
             out / FILES[0], run.info.run_id)  # fmt: skip
    return ReadoutResult(as_of, due, by_action, out / FILES[0], run.info.run_id)
