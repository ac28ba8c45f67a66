"""Metrics and plots for churn probabilities: ranking, calibration, lift and the value of targeting."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean probability| over `bins` equal-frequency bins, weighted by bin size."""
    order = np.argsort(p, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, bins):
        if len(chunk):
            total += len(chunk) * abs(float(np.mean(y[chunk])) - float(np.mean(p[chunk])))
    return total / len(p)


def top_share(p: np.ndarray, share: float) -> np.ndarray:
    """Indices of the `share` of rows with the highest probability."""
    k = max(1, int(math.ceil(share * len(p))))
    return np.argsort(-p, kind="stable")[:k]


def lift_at(y: np.ndarray, p: np.ndarray, share: float) -> float:
    """Churn rate in the top `share` divided by the overall churn rate."""
    return float(np.mean(y[top_share(p, share)]) / np.mean(y))


def capture_at(y: np.ndarray, p: np.ndarray, share: float) -> float:
    """Share of all churners found in the top `share`."""
    return float(np.sum(y[top_share(p, share)]) / np.sum(y))


def targeting_profit(y: np.ndarray, p: np.ndarray, profit: Mapping[str, float]) -> dict[str, float]:
    """Expected profit of contacting the top k% (k = 1..100): saved value of churners reached minus cost.

    profit(k) = save_rate * value_per_saved_customer * churners in top k% - contact_cost * customers in top k%.
    """
    order = np.argsort(-p, kind="stable")
    churners = np.cumsum(y[order])
    best_k, best = 0, 0.0
    for k in range(1, 101):
        n = max(1, int(math.ceil(k / 100 * len(p))))
        value = (
            profit["save_rate"] * profit["value_per_saved_customer"] * churners[n - 1]
            - profit["contact_cost"] * n
        )
        if value > best:
            best_k, best = k, float(value)
    return {"best_target_share_pct": float(best_k), "best_target_profit": best}


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Ranking, calibration and lift metrics of probabilities `p` for outcomes `y`."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    if y.min() == y.max():
        return {"n": float(len(y)), "churn_rate": float(y.mean()), "mean_p": float(p.mean())}
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "lift_at_10": lift_at(y, p, 0.10),
        "capture_at_20": capture_at(y, p, 0.20),
        "n": float(len(y)),
        "churn_rate": float(y.mean()),
        "mean_p": float(p.mean()),
    }


def mean_metrics(y: np.ndarray, probabilities: list[np.ndarray]) -> dict[str, float]:
    """`classification_metrics` averaged over several sets of predictions of the same rows (the repeats of a
    K-fold; one set: its metrics)."""
    each = [classification_metrics(y, p) for p in probabilities]
    return {k: float(np.mean([m[k] for m in each])) for k in each[0]}


def segment_labels(frame: pd.DataFrame, segments: Mapping[str, Mapping[str, Any]]) -> dict[str, pd.Series]:
    """Segment membership per row: a column as is, or cut into bands by `bins` with `labels`."""
    out = {}
    for name, spec in segments.items():
        column = spec["column"]
        if column not in frame.columns:
            continue
        if spec.get("bins") is not None:
            bins = [float(b) for b in spec["bins"]]
            out[name] = pd.cut(
                frame[column].astype(float), bins=bins, labels=list(spec["labels"]), right=False
            ).astype(str)
        else:
            out[name] = frame[column].astype(str)
    return out


def segment_metrics(
    y: np.ndarray, p: np.ndarray, labels: Mapping[str, pd.Series], min_rows: int = 200
) -> dict[str, float]:
    """Metrics per segment value, named `<segment>_<value>_<metric>`."""
    out: dict[str, float] = {}
    for name, values in labels.items():
        values = values.to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            if mask.sum() < min_rows:
                continue
            key = "".join(ch if ch.isalnum() else "_" for ch in str(value).lower())
            for metric, number in classification_metrics(y[mask], p[mask]).items():
                if metric in ("roc_auc", "pr_auc", "brier", "ece", "lift_at_10", "churn_rate", "n"):
                    out[f"{name}_{key}_{metric}"] = number
    return out


def reliability_figure(
    y: np.ndarray, p: np.ndarray, bins: int = 10, reference: np.ndarray | None = None
) -> Figure:
    """Observed churn rate against mean predicted probability in equal-frequency bins."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for label, probs in (("model", p), ("truth", reference)):
        if probs is None:
            continue
        order = np.argsort(probs, kind="stable")
        xs = [float(np.mean(probs[c])) for c in np.array_split(order, bins)]
        ys = [float(np.mean(y[c])) for c in np.array_split(order, bins)]
        ax.plot(xs, ys, marker="o", label=label)
    top = float(max(np.max(p), 1e-3))
    ax.plot([0, top], [0, top], linestyle="--", color="grey", label="perfect")
    ax.set(
        xlabel="mean predicted churn probability",
        ylabel="observed churn rate",
        title="Reliability (test slice)",
    )
    ax.legend()
    fig.tight_layout()
    return fig


def roc_pr_figures(y: np.ndarray, p: np.ndarray) -> tuple[Figure, Figure]:
    """ROC and precision-recall curves."""
    fpr, tpr, _ = roc_curve(y, p)
    roc, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(y, p):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test slice)")
    ax.legend()
    roc.tight_layout()
    precision, recall, _ = precision_recall_curve(y, p)
    pr, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot(recall, precision, label=f"AP {average_precision_score(y, p):.3f}")
    ax.axhline(float(np.mean(y)), linestyle="--", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test slice)")
    ax.legend()
    pr.tight_layout()
    return roc, pr


def gains_figure(y: np.ndarray, p: np.ndarray) -> Figure:
    """Cumulative gains and lift by share of customers targeted."""
    order = np.argsort(-p, kind="stable")
    share = np.arange(1, len(p) + 1) / len(p)
    gains = np.cumsum(y[order]) / np.sum(y)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    left.plot(share, gains, label="model")
    left.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    left.set(
        xlabel="share of customers targeted", ylabel="share of churners reached", title="Cumulative gains"
    )
    left.legend()
    right.plot(share, gains / share)
    right.axhline(1.0, linestyle="--", color="grey")
    right.set(xlabel="share of customers targeted", ylabel="lift", title="Lift", ylim=(0, None))
    fig.tight_layout()
    return fig


def importance_figure(names: list[str], values: np.ndarray, title: str, top: int = 25) -> Figure:
    """Horizontal bar chart of the largest importances."""
    order = np.argsort(values)[-top:]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.28 * len(order) + 1)))
    ax.barh([names[i] for i in order], values[order])
    ax.set(title=title)
    fig.tight_layout()
    return fig


def shap_summary_figure(contributions: np.ndarray, X: pd.DataFrame, top: int = 20) -> Figure:
    """Beeswarm-style summary: each feature's per-customer contributions, coloured by feature value rank."""
    mean_abs = np.abs(contributions).mean(axis=0)
    order = np.argsort(mean_abs)[-top:]
    fig, ax = plt.subplots(figsize=(8, max(3, 0.32 * len(order) + 1)))
    rng = np.random.default_rng(0)
    for row, j in enumerate(order):
        values = X.iloc[:, j]
        numeric = (
            pd.to_numeric(values, errors="coerce") if values.dtype.name != "category" else values.cat.codes
        )
        colour = pd.Series(numeric).rank(pct=True).fillna(0.5).to_numpy()
        ax.scatter(
            contributions[:, j],
            row + rng.uniform(-0.3, 0.3, len(colour)),
            c=colour,
            cmap="coolwarm",
            s=3,
            alpha=0.5,
        )
    ax.set_yticks(range(len(order)), [X.columns[j] for j in order])
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set(
        xlabel="contribution to log-odds (TreeSHAP)",
        title="SHAP summary (colour: feature value, low to high)",
    )
    fig.tight_layout()
    return fig
