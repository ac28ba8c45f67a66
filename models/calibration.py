"""Probability calibration fitted on the calibration slice: isotonic, sigmoid (Platt), chosen per run, or none.

Every calibrator here is strictly increasing in the raw score, so it keeps the model's ranking (the calibrated
AUC is the raw AUC), and never returns exactly 0 or 1: a probability of 0 makes log loss infinite and puts a
customer's lifetime value at its ceiling.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

log = logging.getLogger(__name__)
EPS = 1e-6  # probabilities stay in [EPS, 1 - EPS]
MIN_SLOPE = 1e-3  # log-odds per unit of raw log-odds where the data shows no slope: ties are still broken


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _expit(z: np.ndarray) -> np.ndarray:
    return np.clip(1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float))), EPS, 1 - EPS)


def _platt(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of a logistic curve on the raw log-odds `x` (slope at least MIN_SLOPE)."""
    if np.unique(y).size < 2:
        rate = (y.sum() + 0.5) / (len(y) + 1.0)
        return MIN_SLOPE, float(np.log(rate / (1 - rate)) - MIN_SLOPE * x.mean())
    fitted = LogisticRegression(C=1e6).fit(x.reshape(-1, 1), y)
    slope = max(float(fitted.coef_[0, 0]), MIN_SLOPE)
    return slope, float(fitted.intercept_[0])


class IsotonicCalibrator(BaseEstimator):
    """Isotonic regression on the raw log-odds, made smooth and strictly increasing.

    The step function's blocks become points (the block's mean raw log-odds, its churn rate shrunk towards
    the overall rate by `prior_strength` pseudo-customers, so no block reads as 0 or 1); the calibrated
    log-odds are interpolated linearly between the points and extended beyond the first and last with the
    slope of a Platt fit. Ranking is kept and no probability is exactly 0 or 1.
    """

    def __init__(self, prior_strength: float = 2.0) -> None:
        self.prior_strength = prior_strength

    def fit(self, scores: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        x, y = _logit(scores), np.asarray(y, dtype=float)
        steps = IsotonicRegression(out_of_bounds="clip").fit(x, y).predict(x)
        base = (y.sum() + 0.5) / (len(y) + 1.0)
        centers, rates, weights = [], [], []
        for value in np.unique(steps):
            block = steps == value
            n = float(block.sum())
            centers.append(float(x[block].mean()))
            rates.append((float(y[block].sum()) + self.prior_strength * base) / (n + self.prior_strength))
            weights.append(n)
        # Shrinking can undo the order of neighbouring blocks: pool them again, weighted by their customers.
        pooled = IsotonicRegression().fit(centers, rates, sample_weight=weights).predict(centers)
        points_x, points_z = [], []
        for value in np.unique(pooled):
            merged = pooled == value
            points_x.append(
                float(np.average(np.asarray(centers)[merged], weights=np.asarray(weights)[merged]))
            )
            points_z.append(float(np.log(value / (1 - value))))
        self.slope_, _ = _platt(x, y.astype(int))
        self.points_x_, self.points_z_ = np.asarray(points_x), np.asarray(points_z)
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        x = _logit(scores)
        px, pz = self.points_x_, self.points_z_
        z = np.interp(x, px, pz)  # one point: its value everywhere, then the slope on both sides below
        z = np.where(x < px[0], pz[0] + self.slope_ * (x - px[0]), z)
        z = np.where(x > px[-1], pz[-1] + self.slope_ * (x - px[-1]), z)
        return _expit(z)


class SigmoidCalibrator(BaseEstimator):
    """Logistic curve on the raw score's log-odds (Platt scaling), increasing."""

    def fit(self, scores: np.ndarray, y: np.ndarray) -> SigmoidCalibrator:
        self.slope_, self.intercept_ = _platt(_logit(scores), np.asarray(y, dtype=int))
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        return _expit(self.slope_ * _logit(scores) + self.intercept_)


class NoCalibration(BaseEstimator):
    """The model's own probabilities (kept inside [EPS, 1 - EPS])."""

    def fit(self, scores: np.ndarray, y: np.ndarray) -> NoCalibration:
        self.fitted_ = True
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(scores, dtype=float), EPS, 1 - EPS)


class AutoCalibrator(BaseEstimator):
    """Isotonic or sigmoid, whichever has the lower log loss on the calibration slice by `folds`-fold
    cross-validation within it (ECE breaks a tie within `tolerance`); the chosen one is refitted on the whole
    slice. `chosen_` names it."""

    def __init__(self, folds: int = 5, tolerance: float = 1e-4, seed: int = 0) -> None:
        self.folds = folds
        self.tolerance = tolerance
        self.seed = seed

    def fit(self, scores: np.ndarray, y: np.ndarray) -> AutoCalibrator:
        from models.evaluation import expected_calibration_error

        scores, y = np.asarray(scores, dtype=float), np.asarray(y, dtype=int)
        candidates = {"isotonic": IsotonicCalibrator(), "sigmoid": SigmoidCalibrator()}
        folds = min(self.folds, int(np.bincount(y, minlength=2).min()))
        if folds < 2:  # too few churners (or stayers) to compare: the simpler curve
            self.chosen_, self.scores_ = "sigmoid", {}
        else:
            predicted = {name: np.zeros(len(y)) for name in candidates}
            split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.seed)
            for fit_index, held_index in split.split(scores.reshape(-1, 1), y):
                for name, candidate in candidates.items():
                    fitted = clone(candidate).fit(scores[fit_index], y[fit_index])
                    predicted[name][held_index] = fitted.predict(scores[held_index])
            self.scores_ = {
                name: (_log_loss(y, p), expected_calibration_error(y, p)) for name, p in predicted.items()
            }
            (iso_loss, iso_ece), (sig_loss, sig_ece) = self.scores_["isotonic"], self.scores_["sigmoid"]
            if abs(iso_loss - sig_loss) <= self.tolerance:
                self.chosen_ = "isotonic" if iso_ece < sig_ece else "sigmoid"
            else:
                self.chosen_ = "isotonic" if iso_loss < sig_loss else "sigmoid"
        self.calibrator_ = clone(candidates[self.chosen_]).fit(scores, y)
        log.info(
            "calibration: %s chosen (%s)",
            self.chosen_,
            ", ".join(f"{n} log loss {s[0]:.5f}, ECE {s[1]:.4f}" for n, s in self.scores_.items())
            or "too few churners to compare",
        )
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        return self.calibrator_.predict(scores)


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def calibration_name(calibrator: object) -> str:
    """What a calibrator is, in one word (a fitted AutoCalibrator's choice; "auto" before it is fitted)."""
    if isinstance(calibrator, AutoCalibrator):
        return getattr(calibrator, "chosen_", "auto")
    return {IsotonicCalibrator: "isotonic", SigmoidCalibrator: "sigmoid", NoCalibration: "none"}.get(
        type(calibrator), type(calibrator).__name__
    )
