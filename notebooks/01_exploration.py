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
# # Exploring the churn data
#
# What the input tables hold, how churn moves over time, and which features separate churners from the
# rest. Nothing here is computed by hand: `features.inputs.load_inputs` validates the tables against the data
# contract, and `churnwise.api.build_features` writes the point-in-time feature table with its labels,
# exactly as `make features` does (a few seconds on the 20,000-customer demo).
#
# **Configuration.** The project's Hydra config in `conf/`, composed as the stages compose it. Paths derive
# from `paths.root_dir`: the project root, or `CHURNWISE_HOME` when it is set. `CHURNWISE_OVERRIDES` adds
# Hydra overrides, e.g. `CHURNWISE_OVERRIDES="debug=default"` for the small demo data set (the test suite runs
# this notebook that way, in a temporary root).

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from matplotlib.ticker import PercentFormatter
from omegaconf import OmegaConf
from sklearn.metrics import roc_auc_score

from churnwise.api import build_features, ensure_demo_data, load_config
from features.inputs import load_inputs
from features.labels import LabelWindow
from features.sql import identifier, literal
from features.validation import MAIN_DATE
from models.split import load_snapshots

# %matplotlib inline

# %%
cfg = load_config()  # CHURNWISE_HOME and CHURNWISE_OVERRIDES apply, see above

print(f"data '{cfg.data.name}' in {cfg.data.path}")
print(f"label '{cfg.label.name}': {OmegaConf.to_container(cfg.label)}")
print(f"features written to {cfg.paths.features_dir}")

# %% [markdown]
# ## The input tables
#
# One row per table of the data contract that is present: rows, columns and the span of its main date. On the
# demo data, customers and subscriptions reach back years (sign-ups, long-running contracts) while the activity
# tables (orders, events, complaints, referrals, offers, campaigns) start later: features that count activity
# in a window only mean something once the window lies inside that history.

# %%
ensure_demo_data(cfg)  # the demo data is generated on first use, as `make train` does
tables, availability = load_inputs(cfg)

table_summary = pd.DataFrame(
    [
        {
            "table": t.name,
            "rows": t.rows,
            "columns": len(t.columns),
            "date column": MAIN_DATE.get(t.name),
            "first": t.first_date,
            "last": t.last_date,
        }
        for t in tables.report.tables.values()
    ]
).set_index("table")
display(table_summary)
print("absent (optional):", ", ".join(tables.report.absent) or "none")
display(
    pd.DataFrame(
        [(a.name, a.buildable, a.reason or a.description) for a in availability],
        columns=["feature family", "buildable", "what / why not"],
    ).set_index("feature family")
)

# %% [markdown]
# Rows per month in each table (log scale). Gaps, a sudden drop near the end (a late or partial extract) or a
# step change (a new source system) show up here before they show up as strange features.

# %%
monthly = pd.concat(
    [
        tables.con.sql(
            f"SELECT date_trunc('month', {identifier(column)})::DATE AS month, count(*) AS rows, "
            f"{literal(name)} AS table_name FROM {identifier(name)} WHERE {identifier(column)} IS NOT NULL GROUP BY 1"
        ).df()
        for name, column in MAIN_DATE.items()
        if tables.has(name)
    ]
)
rows_per_month = monthly.pivot_table(index="month", columns="table_name", values="rows").sort_index()

fig, ax = plt.subplots(figsize=(10, 4.5))
rows_per_month.plot(ax=ax, logy=True, linewidth=1.5)
ax.set(title="Rows per month by table (main date column)", xlabel="month", ylabel="rows (log scale)")
ax.legend(title=None, ncols=4, fontsize="small")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Churn over time
#
# The feature table has one row per customer and observation date (the first of each month): features use
# only what happened before the date, the label says whether the customer churned in the window after it.
# The churn rate per date comes from the table's manifest. The last dates have no label yet (their window
# runs past the end of the data); the latest labelled dates are the test slice of `make train`. A trend or a
# seasonal swing here is what a time-based split guards against and what calibration has to absorb.

# %%
built = build_features(cfg)
churn_by_date = (
    pd.DataFrame.from_dict(built.manifest["churn_by_observation_date"], orient="index")
    .rename_axis("observation_date")
    .reset_index()
    .assign(observation_date=lambda d: pd.to_datetime(d["observation_date"]))
)
labelled = churn_by_date[churn_by_date["churn_rate"].notna()]
unlabelled = churn_by_date[churn_by_date["churn_rate"].isna()]

fig, ax = plt.subplots(figsize=(10, 4.5))
ax.bar(labelled["observation_date"], labelled["snapshots"], width=20, color="lightgrey", label="snapshots")
ax.bar(unlabelled["observation_date"], unlabelled["snapshots"], width=20, color="mistyrose",
       label="snapshots, no label yet")  # fmt: skip
ax.set_ylabel("snapshots per date")
rate_ax = ax.twinx()
rate_ax.plot(labelled["observation_date"], labelled["churn_rate"], marker="o", color="tab:red",
             label="churn rate")  # fmt: skip
overall = (labelled["churn_rate"] * labelled["labeled"]).sum() / labelled["labeled"].sum()
rate_ax.axhline(overall, color="tab:red", linestyle=":", label=f"overall {overall:.1%}")
rate_ax.set_ylim(0, max(0.01, labelled["churn_rate"].max() * 1.3))
rate_ax.yaxis.set_major_formatter(PercentFormatter(1.0))
rate_ax.set_ylabel(f"churned within {LabelWindow.from_config(cfg.label).describe()}")
handles = ax.get_legend_handles_labels()[0] + rate_ax.get_legend_handles_labels()[0]
rate_ax.legend(handles=handles, loc="upper left", fontsize="small")
ax.set(title=f"Churn rate per observation date (label '{cfg.label.name}')", xlabel="observation date")
fig.tight_layout()
plt.show()
print(f"{len(labelled)} labelled dates, {len(unlabelled)} without a label yet; "
      f"{int(labelled['labeled'].sum()):,} labelled snapshots")  # fmt: skip

# %% [markdown]
# ## Features by churn
#
# A few features the demo's churn mechanism is built on (`docs/demo_data.md`), over all labelled snapshots.
# Top row: how the feature is distributed among churners and non-churners (each normalised to its own total,
# so the small churner group is comparable). Bottom row: the churn rate per value, or per quantile bin for
# continuous features, against the overall rate (dotted). Features your data cannot provide are skipped.

# %%
snapshots = load_snapshots(built.table_path)
explored = [
    f
    for f in ("tenure_days", "open_complaints", "bundled_products", "events_30d", "monthly_revenue")
    if f in snapshots.columns
]
churned = snapshots["churned"].astype(bool)
rate = snapshots["churned"].mean()


def count_levels(values: pd.Series, top: int = 5) -> pd.Series | None:
    """Small counts as levels 0, 1, ..., `top`+ (and 'missing'); None for other features."""
    present = values.dropna()
    if (present % 1 != 0).any() or present.max() > 3 * top:
        return None
    levels = values.clip(upper=top).map(lambda v: "missing" if pd.isna(v) else f"{v:.0f}")
    return levels.replace(f"{top}", f"{top}+")


def churn_rate_bars(ax: plt.Axes, by_group: pd.DataFrame, labels: list[str]) -> None:
    """Churn rate per group with its number of snapshots, against the overall rate."""
    bars = ax.bar(range(len(by_group)), by_group["mean"], color="tab:red", alpha=0.7)
    ax.bar_label(bars, labels=[f"{n:,}" for n in by_group["size"]], fontsize=7, color="dimgrey")
    ax.axhline(rate, color="black", linestyle=":")
    ax.set_xticks(range(len(by_group)), labels, rotation=45 if len(labels) > 6 else 0, fontsize="small")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))


fig, axes = plt.subplots(2, len(explored), figsize=(4 * len(explored), 7), squeeze=False)
for column, (top_ax, rate_ax) in zip(explored, axes.T, strict=True):
    values = snapshots[column]
    levels = count_levels(values)
    if levels is None:  # many values: densities, then churn rate per quantile bin (labelled by its range)
        upper = values.quantile(0.99)
        integer = bool((values.dropna() % 1 == 0).all())
        bins = (
            np.arange(values.min(), upper + 2) - 0.5
            if integer and upper < 60
            else np.linspace(values.min(), upper, 30)
        )
        for flag, name, colour in ((False, "non-churners", "tab:blue"), (True, "churners", "tab:red")):
            top_ax.hist(values[churned == flag].clip(upper=upper).dropna(), bins=bins, density=True,
                        histtype="step", linewidth=1.8, color=colour, label=name)  # fmt: skip
        top_ax.set_xlabel(f"{column} (top 1% clipped)")
        by_group = snapshots.groupby(pd.qcut(values, q=8, duplicates="drop"), observed=True).agg(
            mean=("churned", "mean"), size=("churned", "size"), low=(column, "min"), high=(column, "max")
        )
        labels = [
            f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f}"
            for lo, hi in zip(by_group["low"], by_group["high"], strict=True)
        ]
    else:  # a few counts: share of each level within each class, then churn rate per level
        shares = pd.crosstab(levels, churned, normalize="columns")
        shares.rename(columns={False: "non-churners", True: "churners"}).plot.bar(
            ax=top_ax, color=["tab:blue", "tab:red"], rot=0, xlabel=column
        )
        by_group = snapshots.groupby(levels)["churned"].agg(["mean", "size"])
        labels = list(by_group.index)
    top_ax.set(title=column, ylabel="share within class")
    top_ax.legend(fontsize="small")
    churn_rate_bars(rate_ax, by_group, labels)
    rate_ax.set(ylabel="churn rate", xlabel=column)
fig.suptitle("Features of churners and non-churners (labelled snapshots; bottom: churn rate, n per bar)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Which single features rank churners best
#
# Each numeric feature on its own, as a score: its ROC AUC for churn (missing values at the median; below 0.5
# means lower values go with churn, so the table sorts by the distance from 0.5), its median among churners
# and non-churners, and its share of missing values. A screening aid, not a model: features that matter only together, or only for a
# segment, do not show here, and the model (`02_experiment_review.py`) weighs them jointly.

# %%
numeric = [
    c
    for c in snapshots.select_dtypes("number").columns
    if c not in ("customer_id", "churned") and snapshots[c].nunique() > 1
]
univariate = pd.DataFrame(
    {
        "roc_auc": [roc_auc_score(churned, snapshots[c].fillna(snapshots[c].median())) for c in numeric],
        "median_churners": [snapshots.loc[churned, c].median() for c in numeric],
        "median_non_churners": [snapshots.loc[~churned, c].median() for c in numeric],
        "missing": [snapshots[c].isna().mean() for c in numeric],
    },
    index=pd.Index(numeric, name="feature"),
).assign(churn_goes_with=lambda d: np.where(d["roc_auc"] > 0.5, "higher values", "lower values"))
univariate = univariate.reindex((univariate["roc_auc"] - 0.5).abs().sort_values(ascending=False).index)
display(univariate.head(15).style.format({"roc_auc": "{:.3f}", "missing": "{:.0%}"}, precision=1))
