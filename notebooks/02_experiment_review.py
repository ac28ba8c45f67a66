# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Reviewing experiments
#
# The training runs in MLflow side by side, the model in use (the registered `@champion`), how well its
# probabilities are calibrated, and the reasons it gives. Run `make train` first (each run adds a row below;
# `make tune` and experiments with other models or labels add more).
#
# **Configuration.** The project's Hydra config in `conf/`, composed as the stages compose it. Paths, and so
# the MLflow store, derive from `paths.root_dir`: the project root, or `CHURNWISE_HOME` when it is set.
# `CHURNWISE_OVERRIDES` adds Hydra overrides, e.g. `CHURNWISE_OVERRIDES="debug=default"` to review the
# `churnwise-debug` experiment (the test suite runs this notebook that way, in a temporary root).

# %%
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from IPython.display import Image, display
from mlflow.exceptions import MlflowException
from scipy.special import logit

from churnwise.api import load_config
from decisions.reasons import ReasonFamilies, top_reasons
from models.evaluation import expected_calibration_error
from models.split import SplitSettings, configured_split, load_snapshots, slice_masks
from models.training import HEADLINE

# %matplotlib inline

# %%
cfg = load_config()  # CHURNWISE_HOME and CHURNWISE_OVERRIDES apply, see above

mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
client = mlflow.MlflowClient()
experiment = mlflow.get_experiment_by_name(cfg.mlflow.experiment_name)
if experiment is None:
    raise RuntimeError(
        f"no MLflow experiment '{cfg.mlflow.experiment_name}' in {cfg.mlflow.tracking_uri}: run `make train` first"
    )
print(f"experiment '{experiment.name}' ({experiment.experiment_id}) in {cfg.mlflow.tracking_uri}")

# %% [markdown]
# ## The training runs
#
# One row per training run (`tags.stage = 'train'`), newest first: test-slice metrics (ranking: ROC AUC, PR
# AUC, lift; probabilities: Brier score, ECE), the logistic baseline and, on demo data, the ceiling of a model
# that knew the generator's true churn probability. Test metrics compare fairly only between runs on the same
# data (fingerprint) and label, whose test slices are the same dates; the git commit says which code made each.

# %%
runs = mlflow.search_runs(
    experiment_ids=[experiment.experiment_id],
    filter_string="tags.stage = 'train'",
    order_by=["attributes.start_time DESC"],
)
metric_names = ["test_roc_auc", "test_pr_auc", "test_brier", "test_ece", "test_lift_at_10",
                "baseline_test_roc_auc", "ceiling_test_roc_auc"]  # fmt: skip
tag_names = [
    "model.class",
    "model.version",
    "data.name",
    "label",
    "data.fingerprint",
    "git.commit",
    "git.dirty",
]
comparison = pd.DataFrame(
    {"started": runs["start_time"].dt.strftime("%Y-%m-%d %H:%M")}
    | {tag: runs.get(f"tags.{tag}") for tag in tag_names}
    | {metric: runs.get(f"metrics.{metric}") for metric in metric_names}
).set_index(runs["run_id"].rename("run_id"))
comparison = comparison.dropna(axis="columns", how="all")
if comparison.empty:
    raise RuntimeError(f"no training runs in experiment '{experiment.name}': run `make train` first")

shown = comparison.assign(
    **{
        "data.fingerprint": comparison["data.fingerprint"].str[:10],
        "git.commit": comparison["git.commit"].str[:8],
    }
).rename(index=lambda run_id: run_id[:8])
display(shown.style.format(precision=4, subset=[m for m in metric_names if m in shown]))

# %% [markdown]
# Discrimination against calibration, one point per run: further right ranks churners better, lower has
# probabilities closer to the observed rates. A good candidate is right and low; a point far right but high
# needs its calibration looked at before its probabilities feed CLV and the action rules.

# %%
fig, ax = plt.subplots(figsize=(7, 4.5))
for model_class, group in comparison.groupby("model.class"):
    ax.scatter(group["test_roc_auc"], group["test_ece"], s=60, label=model_class)
    for _, row in group.iterrows():
        ax.annotate(f"v{row['model.version']}", (row["test_roc_auc"], row["test_ece"]),
                    textcoords="offset points", xytext=(5, 4), fontsize="small")  # fmt: skip
if "ceiling_test_roc_auc" in comparison:
    ax.axvline(
        comparison["ceiling_test_roc_auc"].max(), color="grey", linestyle="--", label="ceiling (truth)"
    )
ax.set(xlabel="test ROC AUC (higher is better)", ylabel="test ECE (lower is better)",
       title=f"Training runs in '{experiment.name}'")  # fmt: skip
ax.legend(fontsize="small")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The model to review
#
# The registered model with the alias `champion` (what `make score` uses), or, when there is none, the run with
# the best test ROC AUC.

# %%
name = cfg.mlflow.registered_model_name
try:
    version = client.get_model_version_by_alias(name, "champion")
    model_uri, chosen_run_id = f"models:/{name}@champion", version.run_id
except MlflowException:
    chosen_run_id = comparison["test_roc_auc"].idxmax()
    model_uri = f"models:/{name}/{comparison.loc[chosen_run_id, 'model.version']}"
chosen_run = client.get_run(chosen_run_id)
chosen = pd.Series(chosen_run.data.metrics)
print(f"{model_uri}: run {chosen_run_id} ('{chosen_run.info.run_name}')")
if chosen_run_id not in comparison.index:
    print(f"note: the model was trained in another experiment ({chosen_run.info.experiment_id})")
display(
    pd.DataFrame(
        {
            label: {metric: chosen.get(f"{prefix}{metric}") for metric in HEADLINE}
            for label, prefix in (
                ("model", "test_"),
                ("baseline", "baseline_test_"),
                ("ceiling (truth)", "ceiling_test_"),
            )
        }
    )
    .T.dropna(how="all")
    .style.format(precision=4)
)

# %% [markdown]
# ## Calibration
#
# The reliability diagram logged with the run: observed churn rate against the mean predicted probability in
# ten equal-frequency bins of the test slice (on demo data with the generator's truth beside it). Points on
# the diagonal mean a predicted 8% churns 8% of the time, which is what CLV and expected values assume.

# %%
with tempfile.TemporaryDirectory() as folder:
    png = mlflow.artifacts.download_artifacts(
        run_id=chosen_run_id, artifact_path="plots/calibration_reliability.png", dst_path=folder
    )
    display(Image(filename=png, width=450))

# %% [markdown]
# The same, recomputed: the registered model scores the latest labelled snapshots of the feature table (the
# run's test slice, when the table was built from the same data and label), bin by bin and per observation
# date. Large gaps in single bins, or a date whose mean prediction is far from its churn rate, point to drift
# the calibration slice did not see.

# %%
pyfunc = mlflow.pyfunc.load_model(model_uri)
churn_model = pyfunc.unwrap_python_model().model  # models.churn_model.ChurnModel
features = churn_model.features

snapshots = load_snapshots(Path(cfg.paths.features_dir) / "features.parquet")
manifest = json.loads((Path(cfg.paths.features_dir) / "manifest.json").read_text())
if manifest["input"]["fingerprint"] != chosen_run.data.tags.get("data.fingerprint"):
    print("note: the feature table was built from other data than the model's run; metrics will differ")
split = configured_split(SplitSettings.from_config(cfg.split, cfg.label), snapshots)
test_rows = snapshots[slice_masks(snapshots["observation_date"], split)["test"]].reset_index(drop=True)
predicted = pyfunc.predict(test_rows[features])
p_churn, y = predicted["p_churn"].to_numpy(), test_rows["churned"].to_numpy()

bins = np.array_split(np.argsort(p_churn, kind="stable"), 10)  # equal-frequency, as the logged ECE
reliability = pd.DataFrame(
    {
        "customers": [len(b) for b in bins],
        "mean_p_churn": [p_churn[b].mean() for b in bins],
        "observed_rate": [y[b].mean() for b in bins],
    },
    index=pd.RangeIndex(1, len(bins) + 1, name="bin"),
).assign(gap=lambda d: d["observed_rate"] - d["mean_p_churn"])
ece_recomputed = expected_calibration_error(y, p_churn)
print(f"test dates {', '.join(str(d) for d in sorted(split.test))}: {len(test_rows):,} snapshots")
print(f"ECE recomputed {ece_recomputed:.4f}, logged with the run {chosen.get('test_ece', float('nan')):.4f}")
display(reliability.style.format(precision=4))
display(
    test_rows.assign(p_churn=p_churn)
    .groupby("observation_date")
    .agg(customers=("churned", "size"), mean_p_churn=("p_churn", "mean"), churn_rate=("churned", "mean"))
    .style.format(precision=4)
)

# %% [markdown]
# ## Reasons
#
# Why the model scores a customer as it does: exact per-customer contributions to the log-odds (TreeSHAP for
# LightGBM), summed into the reason families of `conf/reasons` and ranked as `make score` ranks them. The chart
# shows how often each family is among a customer's top reasons, for all customers of the test slice and for
# the riskiest tenth, whom retention actions target. A family that dominates everywhere, or an "other
# factors" share, is worth a look at the family patterns.

# %%
families = ReasonFamilies.from_config(cfg.reasons)
contributions = churn_model.contributions(test_rows)  # (customers, features + bias)
additivity_error = np.abs(contributions.sum(axis=1) - logit(predicted["raw_score"].to_numpy())).max()
top = top_reasons(contributions, features, families, k=int(cfg.reasons.top_k))
riskiest = p_churn >= np.quantile(p_churn, 0.9)


def share_with_reason(labels: np.ndarray) -> pd.Series:
    """Share of customers with each reason among their top reasons."""
    return pd.Series(labels.ravel()).dropna().value_counts() / len(labels)


reason_counts = (
    pd.DataFrame(
        {
            "all customers": share_with_reason(top.labels),
            "riskiest 10%": share_with_reason(top.labels[riskiest]),
            "first reason": pd.Series(top.labels[:, 0]).value_counts() / len(top.labels),
        }
    )
    .fillna(0.0)
    .sort_values("all customers")
)
print(f"contributions add up to the raw log-odds (largest difference {additivity_error:.1e})")

fig, ax = plt.subplots(figsize=(8, 0.4 * len(reason_counts) + 1.5))
reason_counts[["all customers", "riskiest 10%"]].plot.barh(ax=ax, color=["tab:blue", "tab:red"])
ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
ax.set(xlabel=f"share of customers with the reason among their top {cfg.reasons.top_k}", ylabel=None,
       title="Reasons behind the scores (test slice)")  # fmt: skip
fig.tight_layout()
plt.show()
display(reason_counts[::-1].style.format("{:.1%}"))

# %% [markdown]
# One customer: the riskiest of the test slice. Each bar is one feature's contribution to the log-odds
# (red raises the risk, blue lowers it), with the customer's value and the reason family it counts towards;
# the contributions plus the bias add up to the model's raw log-odds.

# %%
customer = int(np.argmax(p_churn))
row = test_rows.iloc[customer]
own = pd.DataFrame(
    {
        "value": [row[f] for f in features],
        "family": [families.labels[families.family_of(f)] for f in features],
        "contribution": contributions[customer, :-1],
    },
    index=pd.Index(features, name="feature"),
)
strongest = own.reindex(own["contribution"].abs().sort_values(ascending=False).index).head(12)[::-1]
reasons = [label for label in top.labels[customer] if label is not None]
print(f"customer {row['customer_id']} on {row['observation_date']}: p_churn {p_churn[customer]:.1%}, "
      f"churned: {'yes' if row['churned'] else 'no'}; reasons: {', '.join(reasons)}")  # fmt: skip
print(f"bias {contributions[customer, -1]:+.3f} + contributions {own['contribution'].sum():+.3f} "
      f"= raw log-odds {logit(predicted['raw_score'].iloc[customer]):+.3f}")  # fmt: skip

fig, ax = plt.subplots(figsize=(8, 5))
colours = np.where(strongest["contribution"] > 0, "tab:red", "tab:blue")
ax.barh(range(len(strongest)), strongest["contribution"], color=colours)
ax.set_yticks(range(len(strongest)), [
    f"{feature} = {f'{value:.4g}' if isinstance(value, float) else value}  ({family})"
    for feature, value, family in zip(strongest.index, strongest["value"], strongest["family"], strict=True)
], fontsize="small")  # fmt: skip
ax.axvline(0, color="black", linewidth=0.8)
ax.set(xlabel="contribution to the log-odds of churn", title=f"Why customer {row['customer_id']} scores high")
fig.tight_layout()
plt.show()
