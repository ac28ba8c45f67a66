"""What every retention report has, dated tables or a snapshot: the report's shape (sections of text,
tables and figures), the model's reasons for the churners, and the value and plan of the latest scoring."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from decisions.reasons import ReasonFamilies, top_reasons
from models.tracking import TrackingSettings


@dataclass
class Report:
    """The report's sections, in order: title, text, tables and figures."""

    title: str
    sections: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def add(
        self,
        title: str,
        text: str = "",
        tables: dict[str, pd.DataFrame] | None = None,
        figures: dict[str, Any] | None = None,
    ) -> None:
        """Append a section."""
        self.sections.append({"title": title, "text": text, "tables": tables or {}, "figures": figures or {}})


def reason_inputs(cfg: DictConfig) -> tuple[Path, str, ReasonFamilies, int]:
    """What `model_reasons_of_churners` reads, from the config: the feature table, the model (score.model_uri,
    or the champion), the reason families and how many reasons each churner gets."""
    return (
        Path(cfg.paths.features_dir) / "features.parquet",
        cfg.score.model_uri or TrackingSettings.from_config(cfg.mlflow).champion_uri,
        ReasonFamilies.from_config(OmegaConf.to_container(cfg.reasons, resolve=True)),
        int(cfg.reasons.top_k),
    )


def model_reasons_of_churners(
    table_path: Path, uri: str, families: ReasonFamilies, top_k: int
) -> tuple[pd.DataFrame, str]:
    """The reason families of model `uri` for the churners of the feature table at `table_path`, each at
    their last snapshot before churning."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from models.pyfunc import contributions_of

    if not table_path.is_file():
        return pd.DataFrame(), f"no feature table at {table_path}: run `make train` first"
    try:
        model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as error:
        return pd.DataFrame(), f"no model {uri} to explain churners with ({str(error).splitlines()[0]})"
    snapshots = pd.read_parquet(table_path)
    churners = (
        snapshots[snapshots["churned"] == 1].sort_values("observation_date").groupby("customer_id").tail(1)
    )
    if churners.empty:
        return pd.DataFrame(), "no churners among the labelled snapshots"
    contributions, names = contributions_of(model, churners)
    reasons = top_reasons(contributions, names, families, top_k)
    labels = pd.DataFrame(reasons.labels)
    counts = pd.DataFrame({"reason": [families.labels[key] for key in families.keys]})
    counts["first_reason"] = [int((labels[0] == r).sum()) for r in counts["reason"]]
    counts["among_top"] = [int((labels == r).any(axis=1).sum()) for r in counts["reason"]]
    counts["share_of_churners"] = counts["among_top"] / len(churners)
    counts = counts[counts["among_top"] > 0].sort_values("among_top", ascending=False).reset_index(drop=True)
    return counts, f"{len(churners):,} churners, each at the last labelled snapshot before they left ({uri})"


def add_scoring_sections(report: Report, scores: pd.DataFrame, path: Path) -> None:
    """Lifetime value and value at risk by segment and rung, and the corrective plan, from a scoring output."""
    import matplotlib.pyplot as plt

    as_of = scores["as_of"].iloc[0]
    value = {
        f"by {column.replace('_', ' ')}": scores.groupby(column, observed=True)
        .agg(customers=("customer_id", "size"), clv=("clv", "sum"), mean_clv=("clv", "mean"),
             value_at_risk=("value_at_risk", "sum"), mean_p_churn=("p_churn", "mean"))
        .sort_values("value_at_risk", ascending=False).reset_index()
        for column in ("valuation_segment", "customer_segment", "ladder_rung")
        if column in scores
    }  # fmt: skip
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.hist(scores["clv"], bins=50, color="tab:blue")
    ax.set_xlabel("customer lifetime value")
    ax.set_ylabel("customers")
    ax.set_title(f"Lifetime value distribution ({len(scores):,} customers, as of {as_of})", fontsize=10)
    report.add(
        "Lifetime value and value at risk",
        f"From the latest scoring output ({path}, as of {as_of}, model version {scores['model_version'].iloc[0]}).",
        value,
        {"clv_distribution.png": fig},
    )
    chosen = scores[scores["action"].notna()]
    plan = (
        chosen.groupby(["action", "action_kind"])
        .apply(
            lambda rows: pd.Series(
                {
                    "best_for": len(rows),
                    "selected": int(rows["selected"].sum()),
                    "control": int((rows["assignment"] == "control").sum()) if "assignment" in rows else 0,
                    "cost": rows.loc[rows["selected"], "action_cost"].sum(),
                    "value_at_risk_covered": rows.loc[rows["selected"], "value_at_risk"].sum(),
                    "expected_saved": (rows["expected_net_value"] + rows["action_cost"])[
                        rows["selected"]
                    ].sum(),
                }
            ),
            include_groups=False,
        )
        .reset_index()
        .sort_values("selected", ascending=False)
    )
    selected = scores[scores["selected"]]
    report.metrics |= {
        "plan_customers": float(len(selected)),
        "plan_budget_used": float(selected["action_cost"].sum()),
    }
    report.add(
        "The corrective plan",
        f"{len(selected):,} customers selected, budget used {selected['action_cost'].sum():,.0f}, value at risk "
        f"covered {selected['value_at_risk'].sum():,.0f} of {scores['value_at_risk'].sum():,.0f}, expected value "
        f"saved {(selected['expected_net_value'] + selected['action_cost']).sum():,.0f}.",
        {"actions": plan},
    )


def add_readout_sections(report: Report, by_action: pd.DataFrame, path: Path) -> None:
    """ "Did the last campaigns work?": treated against control per run and action, and the value delivered
    against the value claimed, from a readout (decisions.readout)."""
    from decisions.readout import readout_figure

    effects = by_action[
        ["as_of", "action", "n_treated", "n_control", "churn_treated", "churn_control", "effect", "low", "high",
         "note"]
    ]  # fmt: skip
    value = by_action[
        ["as_of", "action", "n_treated", "margin_effect", "cost", "value_delivered", "value_delivered_low",
         "value_delivered_high", "value_claimed"]
    ]  # fmt: skip
    read = by_action[by_action["low"].notna()]
    worked = read[read["high"] < 0]
    harmed = read[read["low"] > 0]
    report.metrics |= {
        "readout_actions": float(len(by_action)),
        "readout_value_delivered": float(by_action["value_delivered"].sum(min_count=1)),
        "readout_value_claimed": float(by_action["value_claimed"].sum()),
    }
    runs = ", ".join(sorted({str(d) for d in by_action["as_of"]}))
    report.add(
        "Did the last campaigns work?",
        f"From the readout at {path}: scoring runs of {runs}, each action's treated customers against its random "
        f"control group (held out, not contacted). Effect = churn rate of the treated minus that of the controls "
        f"over the horizon (negative: fewer churned), with its interval; {len(read)} of {len(by_action)} groups "
        f"are large enough for one. Lowered churn clearly: {', '.join(worked['action']) or 'none'}; raised it "
        f"clearly: {', '.join(harmed['action']) or 'none'}. Value delivered = treated x (margin of the treated "
        f"minus that of the controls, within the horizon) - cost: {value['value_delivered'].sum(min_count=1):,.0f}"
        f" against {value['value_claimed'].sum():,.0f} claimed by the runs (expected net value over the treated, "
        f"a lifetime value: an effect lasting past the horizon is worth more than the margin delivered within it).",
        {"treated_vs_control": effects, "delivered_vs_claimed": value},
        {"readout_effects.png": readout_figure(by_action)},
    )


def add_latest_readout(report: Report, output_dir: Path) -> None:
    """The readout section from the latest readout in `output_dir`, when there is one (`make readout`)."""
    path = Path(output_dir) / "readout_by_action.parquet"
    if path.is_file():
        add_readout_sections(report, pd.read_parquet(path), path)


def add_latest_scoring(report: Report, output_dir: Path, segments: pd.DataFrame | None = None) -> None:
    """The value and plan sections from the latest scoring output in `output_dir` (with the customers'
    segments, `customer_id` and `customer_segment`, beside the valuation segment when given), or a note
    saying how to make one."""
    path = Path(output_dir) / "scores.parquet"
    if not path.is_file():
        report.add("Value at risk and the corrective plan", f"No scoring output at {path}: run `make score`.")
        return
    scores = pd.read_parquet(path)
    if segments is not None:
        scores = scores.merge(segments, on="customer_id", how="left")
    add_scoring_sections(report, scores, path)
