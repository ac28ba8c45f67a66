"""Turning a snapshot table's feature columns into model input with a fixed schema."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted


class SnapshotEncoder(TransformerMixin, BaseEstimator):
    """Numeric features as float; categorical features as pandas categories fixed at fit time.

    Categories unseen at fit time (and empty values) become missing, so the columns a model sees at scoring
    are exactly those it was trained on.
    """

    def __init__(self, categorical: Sequence[str] | None = None):
        self.categorical = categorical

    def fit(self, X: pd.DataFrame, y: object = None) -> SnapshotEncoder:
        """Learn the columns and the categories of each categorical column."""
        categorical = list(self.categorical or [])
        missing = [c for c in categorical if c not in X.columns]
        if missing:
            raise ValueError(f"categorical columns not in the input: {missing}")
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.categories_ = {c: sorted(str(v) for v in X[c].dropna().unique()) for c in categorical}
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """The input's columns in fit order, typed."""
        check_is_fitted(self, "categories_")
        columns = list(self.feature_names_in_)
        missing = [c for c in columns if c not in X.columns]
        if missing:
            raise ValueError(f"input lacks feature columns the model was trained on: {missing}")
        out = {}
        for column in columns:
            if column in self.categories_:
                known = set(self.categories_[column])
                values = [v if v in known else None for v in X[column].astype("string").astype(object)]
                out[column] = pd.Categorical(values, categories=self.categories_[column])
            else:
                out[column] = pd.to_numeric(X[column], errors="coerce").astype("float64")
        return pd.DataFrame(out, index=X.index)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """Output column names (the same as the input's)."""
        check_is_fitted(self, "categories_")
        return self.feature_names_in_.copy()
