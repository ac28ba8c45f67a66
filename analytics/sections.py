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
