"""How well an uplift model ranks and sizes effects on held-out campaigns: Qini and uplift curves, their
areas, predicted against observed uplift by decile, and the figures the train stage logs.

Conventions (the same in models/uplift.py):
- `y` is an outcome, `treated` says who got the action (the rest are the control group), `score` ranks
  customers: the highest score is targeted first.
- The curves count the incremental outcome of targeting the top of the ranking: `qini` is the outcome of the
  treated among them minus that of the control among them scaled to the treated count; a model that ranks
  well lifts the curve above the straight `random` line to the same end point.
- Effects on churn are a change in churn probability, so an action that saves customers has a NEGATIVE
  effect. To rank by benefit and read the curves as "customers saved", pass `y = 1 - churn` (or `-churn`)
  and `score = -effect`. `uplift_by_decile` compares a predicted effect with the observed one in the same
  units, so there pass `y = churn` and `score = effect`.
- With `propensity` (the logged probability of being treated, in (0, 1]) every sum is inverse-propensity
  weighted (treated by 1/p, control by 1/(1-p)), so campaigns that treated different shares count alike.
  Without it, each customer counts once (sklift's definitions, to which `qini_auc` is equal then).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import norm


def arm_weights(treated: np.ndarray, propensity: np.ndarray | None) -> np.ndarray:
    """Inverse-propensity weights: 1/p for the treated, 1/(1-p) for the control; ones without propensity."""
    treated = np.asarray(treated, dtype=bool)
    if propensity is None:
        return np.ones(len(treated))
    p = np.asarray(propensity, dtype=float)
    if np.any(~(p > 0) | (p > 1)) or np.any(~treated & (p >= 1)):
        raise ValueError("propensity must be in (0, 1], and below 1 for control rows")
    return np.where(treated, 1.0 / p, 1.0 / np.where(treated, 0.5, 1.0 - p))


def _cumulative(
    y: np.ndarray, treated: np.ndarray, score: np.ndarray, propensity: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Cumulative (weighted) counts and outcome sums per arm at each distinct score, highest score first."""
    y, treated, score = np.asarray(y, float), np.asarray(treated, bool), np.asarray(score, float)
    if not len(y) == len(treated) == len(score):
        raise ValueError(f"y, treated and score differ in length: {len(y)}, {len(treated)}, {len(score)}")
    w = arm_weights(treated, propensity)
    order = np.argsort(score, kind="mergesort")[::-1]
    y, treated, score, w = y[order], treated[order], score[order], w[order]
    cut = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    return {
        "targeted": np.r_[0, cut + 1].astype(float),
        "n_t": np.r_[0.0, np.cumsum(w * treated)[cut]],
        "n_c": np.r_[0.0, np.cumsum(w * ~treated)[cut]],
        "y_t": np.r_[0.0, np.cumsum(w * treated * y)[cut]],
        "y_c": np.r_[0.0, np.cumsum(w * ~treated * y)[cut]],
    }


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def qini_curve(
    y: np.ndarray, treated: np.ndarray, score: np.ndarray, propensity: np.ndarray | None = None
) -> pd.DataFrame:
    """The Qini curve: per distinct score, the customers targeted, their share, the incremental outcome
    `qini` = Y_treated - Y_control x N_treated / N_control among them, `uplift` = (mean_t - mean_c) x targeted
    (the uplift curve) and `random`, the straight line to the same end point. Starts at (0, 0)."""
    c = _cumulative(y, treated, score, propensity)
    qini = c["y_t"] - c["y_c"] * _ratio(c["n_t"], c["n_c"])
    uplift = (_ratio(c["y_t"], c["n_t"]) - _ratio(c["y_c"], c["n_c"])) * c["targeted"]
    share = c["targeted"] / c["targeted"][-1]
    return pd.DataFrame(
        {
            "targeted": c["targeted"],
            "share": share,
            "qini": qini,
            "uplift": uplift,
            "random": share * qini[-1],
        }
    )


def _area_above_random(curve: pd.DataFrame, column: str) -> float:
    """Area between a curve and its random line, x in customers targeted."""
    x = curve["targeted"].to_numpy()
    return float(np.trapezoid(curve[column].to_numpy(), x) - x[-1] * curve[column].iloc[-1] / 2.0)


def qini_auc(
    y: np.ndarray, treated: np.ndarray, score: np.ndarray, propensity: np.ndarray | None = None
) -> float:
    """Qini coefficient: area between the Qini curve and random, over that of the perfect ranking (the
    treated with the highest outcomes first, the control with the highest outcomes last, so negative
    effects count). 0 = random, 1 = perfect; equal to sklift's `qini_auc_score` without propensity."""
    y, treated = np.asarray(y, float), np.asarray(treated, bool)
    perfect = np.where(treated, y, -y)
    best = _area_above_random(qini_curve(y, treated, perfect, propensity), "qini")
    actual = _area_above_random(qini_curve(y, treated, score, propensity), "qini")
    return actual / best if best else float("nan")


def auuc(
    y: np.ndarray, treated: np.ndarray, score: np.ndarray, propensity: np.ndarray | None = None
) -> float:
    """Area between the uplift curve and random, per customer squared: the average, over every targeting
    depth s in (0, 1], of the incremental outcome per customer of targeting the top s rather than a random
    s. In y's units (0 = random); comparable across data sets of any size."""
    curve = qini_curve(y, treated, score, propensity)
    return _area_above_random(curve, "uplift") / float(curve["targeted"].iloc[-1]) ** 2


def _arm_mean(y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted mean and the variance of that mean (weighted variance over the effective row count)."""
    if len(y) < 2 or w.sum() <= 0:
        return (float(np.average(y, weights=w)) if len(y) else float("nan")), float("nan")
    mean = float(np.average(y, weights=w))
    variance = float(np.average((y - mean) ** 2, weights=w)) * len(y) / (len(y) - 1)
    effective = w.sum() ** 2 / np.sum(w**2)
    return mean, variance / effective


def observed_uplift(
    y: np.ndarray, treated: np.ndarray, propensity: np.ndarray | None = None, confidence: float = 0.90
) -> tuple[float, float, float]:
    """Mean outcome of the treated minus that of the control (Hajek-weighted with propensity) and its
    normal-approximation interval at `confidence`; NaN when an arm has fewer than two rows."""
    y, treated = np.asarray(y, float), np.asarray(treated, bool)
    w = arm_weights(treated, propensity)
    (m_t, v_t), (m_c, v_c) = _arm_mean(y[treated], w[treated]), _arm_mean(y[~treated], w[~treated])
    effect, half = m_t - m_c, float(norm.ppf(0.5 + confidence / 2.0)) * np.sqrt(v_t + v_c)
    return effect, effect - half, effect + half


def stratified_uplift(
    y: np.ndarray, treated: np.ndarray, strata: np.ndarray, confidence: float = 0.90
) -> tuple[float, float, float]:
    """Treated minus control within each stratum (a campaign: one treated share, so a plain difference of means
    is unbiased there), combined with inverse-variance weights, and its normal-approximation interval.

    Against the Hajek estimate over all campaigns at once, whose weights 1/(1 - p) give a control row of a
    p = 0.9 campaign ten times the weight of one of a p = 0.5 campaign, this reads every campaign at its own
    precision: on the demo's campaigns (treated shares 0.5, 0.7, 0.9) its interval is the narrower one. Strata
    without two rows in each arm are left out; with none left, the Hajek estimate without propensity (NaN
    when an arm has fewer than two rows)."""
    y, treated, strata = np.asarray(y, float), np.asarray(treated, bool), np.asarray(strata)
    effects, variances = [], []
    for stratum in np.unique(strata):
        mine = strata == stratum
        yt, yc = y[mine & treated], y[mine & ~treated]
        if len(yt) < 2 or len(yc) < 2:
            continue
        effects.append(yt.mean() - yc.mean())
        variances.append(yt.var(ddof=1) / len(yt) + yc.var(ddof=1) / len(yc))
    if not effects:
        return observed_uplift(y, treated, None, confidence)
    effects, variances = np.asarray(effects), np.asarray(variances)
    if np.all(variances <= 0):
        effect, variance = float(effects.mean()), 0.0
    else:
        weight = 1.0 / np.maximum(variances, variances[variances > 0].min() * 1e-6)
        effect, variance = float(np.sum(weight * effects) / weight.sum()), float(1.0 / weight.sum())
    half = float(norm.ppf(0.5 + confidence / 2.0)) * np.sqrt(variance)
    return effect, effect - half, effect + half


def uplift_by_decile(
    y: np.ndarray,
    treated: np.ndarray,
    score: np.ndarray,
    propensity: np.ndarray | None = None,
    *,
    bins: int = 10,
    confidence: float = 0.90,
) -> pd.DataFrame:
    """Predicted against observed uplift in equal-count bins of `score` (bin 1 = highest scores).

    `score` is the predicted effect in y's units; `predicted` is its mean in the bin, `observed` the
    treated-minus-control difference there with a normal-approximation interval (`low`, `high`).
    """
    y, treated, score = np.asarray(y, float), np.asarray(treated, bool), np.asarray(score, float)
    p = None if propensity is None else np.asarray(propensity, float)
    rows = []
    for decile, chunk in enumerate(np.array_split(np.argsort(-score, kind="stable"), bins), start=1):
        if not len(chunk):
            continue
        effect, low, high = observed_uplift(
            y[chunk], treated[chunk], None if p is None else p[chunk], confidence
        )
        rows.append(
            {
                "decile": decile,
                "n_treated": int(treated[chunk].sum()),
                "n_control": int((~treated[chunk]).sum()),
                "predicted": float(score[chunk].mean()),
                "observed": effect,
                "low": low,
                "high": high,
            }
        )
    return pd.DataFrame(
        rows, columns=["decile", "n_treated", "n_control", "predicted", "observed", "low", "high"]
    )


def qini_figure(curve: pd.DataFrame, title: str) -> Figure:
    """The Qini curve of `qini_curve` against the random line."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot(curve["share"], curve["qini"], label="model")
    ax.plot(curve["share"], curve["random"], linestyle="--", color="grey", label="random")
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set(xlabel="share of customers targeted", ylabel="incremental outcome (Qini)", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def decile_figure(table: pd.DataFrame, title: str) -> Figure:
    """Predicted and observed uplift by decile of the prediction, observed with its interval."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    x = table["decile"].to_numpy()
    observed = table["observed"].to_numpy()
    error = np.vstack([observed - table["low"].to_numpy(), table["high"].to_numpy() - observed])
    ax.errorbar(x, observed, yerr=error, fmt="o", capsize=3, label="observed (held-out)")
    ax.plot(x, table["predicted"], marker="s", label="predicted")
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set(xlabel="decile of predicted effect (1 = highest)", ylabel="effect", title=title, xticks=x)
    ax.legend()
    fig.tight_layout()
    return fig
