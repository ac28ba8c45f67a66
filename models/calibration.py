"""Probability calibration fitted on the calibration slice: isotonic, sigmoid (Platt) or none."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


class IsotonicCalibrator(BaseEstimator):
    """Monotone step function from raw score to probability."""

    def fit(self, scores: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        self.isotonic_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, y)
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        return np.clip(self.isotonic_.predict(scores), 0.0, 1.0)


class SigmoidCalibrator(BaseEstimator):
    """Logistic curve on the raw score's log-odds (Platt scaling)."""

    def fit(self, scores: np.ndarray, y: np.ndarray) -> SigmoidCalibrator:
        self.logistic_ = LogisticRegression(C=1e6).fit(_logit(scores).reshape(-1, 1), y)
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        return self.logistic_.predict_proba(_logit(scores).reshape(-1, 1))[:, 1]


class NoCalibration(BaseEstimator):
    """The model's own probabilities."""

    def fit(self, scores: np.ndarray, y: np.ndarray) -> NoCalibration:
        self.fitted_ = True
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores, dtype=float)
