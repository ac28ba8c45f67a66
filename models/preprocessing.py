"""Turning a snapshot table's feature columns into model input with a fixed schema."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

OTHER_LEVEL = "(other)"  # the one level that rare (and, at scoring, unseen) categories are folded into


class SnapshotEncoder(TransformerMixin, BaseEstimator):
    """Numeric features as float; categorical features as pandas categories fixed at fit time.

    A category held by fewer than `min_level_rows` training rows is folded, with every other rare one, into
    one level, `(other)`: a churn rate read off a few dozen rows is noise a model would learn as signal.
    When a column has that level, a category unseen at fit time joins it too; otherwise unseen categories
    (and empty values, always) become missing. Either way the columns a model sees at scoring are exactly
    those it was trained on.
    """

    def __init__(self, categorical: Sequence[str] | None = None, min_level_rows: int = 0):
        self.categorical = categorical
        self.min_level_rows = min_level_rows

    def fit(self, X: pd.DataFrame, y: object = None) -> SnapshotEncoder:
        """Learn the columns and the categories of each categorical column (rare ones folded)."""
        categorical = list(self.categorical or [])
        missing = [c for c in categorical if c not in X.columns]
        if missing:
            raise ValueError(f"categorical columns not in the input: {missing}")
        if int(self.min_level_rows) < 0:
            raise ValueError(f"min_level_rows must be 0 or more, not {self.min_level_rows}")
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.categories_, self.rare_levels_ = {}, {}
        for column in categorical:
            counts = X[column].dropna().astype(str).value_counts()
            rare = sorted(str(v) for v, n in counts.items() if n < int(self.min_level_rows))
            frequent = sorted(str(v) for v, n in counts.items() if n >= int(self.min_level_rows))
            self.categories_[column] = frequent + (
                [OTHER_LEVEL] if rare and OTHER_LEVEL not in frequent else []
            )
            self.rare_levels_[column] = rare
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
                categories = self.categories_[column]
                known = set(categories)
                fallback = OTHER_LEVEL if OTHER_LEVEL in known else None
                values = [
                    None if pd.isna(v) else (v if v in known else fallback)
                    for v in X[column].astype("string").astype(object)
                ]
                out[column] = pd.Categorical(values, categories=categories)
            else:
                out[column] = pd.to_numeric(X[column], errors="coerce").astype("float64")
        return pd.DataFrame(out, index=X.index)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """Output column names (the same as the input's)."""
        check_is_fitted(self, "categories_")
        return self.feature_names_in_.copy()
