"""Estimators built from the `model` config group (LightGBM is used directly via `_target_`)."""

from __future__ import annotations

from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def logistic_regression(
    C: float = 1.0, max_iter: int = 2000, random_state: int = 0, min_frequency: int = 20
) -> Pipeline:
    """Baseline: median-imputed, scaled numeric features and one-hot categories into a logistic regression.

    Categories with fewer than `min_frequency` training rows share one column (scikit-learn's infrequent
    category); categories unseen at fit time get none.
    """
    encode = ColumnTransformer(
        [
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="(missing)"),
                    OneHotEncoder(handle_unknown="ignore", min_frequency=min_frequency, sparse_output=False),
                ),
                make_column_selector(dtype_include="category"),
            ),
            (
                "numeric",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                    StandardScaler(),
                ),
                make_column_selector(dtype_exclude="category"),
            ),
        ]
    )
    return Pipeline(
        [("encode", encode), ("model", LogisticRegression(C=C, max_iter=max_iter, random_state=random_state))]
    )
