"""The MLflow model churnwise logs and registers: one pyfunc that owns preprocessing, model and calibration.

It is logged as code (MLflow "models from code"): `models/model_code.py` builds a `ChurnPyfunc` and hands it
to `mlflow.models.set_model`; the fitted `ChurnModel` (encoder, estimator, calibrator) is a joblib artifact
that `load_context` reads. Callers use only the pyfunc interface: `predict` for probabilities, and
`contributions_of` (predict with `params={"contributions": True}`) for per-customer reasons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from models.churn_model import ChurnModel

MODEL_ARTIFACT = "churn_model"  # the key of the fitted ChurnModel in the pyfunc's artifacts
MODEL_FILE = "churn_model.joblib"
CONTRIBUTION_PREFIX = "contribution__"  # one output column per feature: contribution__<feature name>
BIAS_COLUMN = "contribution_bias"  # cannot clash: every feature column has two underscores after the word
PARAMS = {"contributions": False}  # the predict params the signature declares, with their defaults


def save_churn_model(model: ChurnModel, folder: Path) -> Path:
    """Write the fitted ChurnModel into `folder` as the file `load_context` reads; returns its path."""
    import joblib

    path = Path(folder) / MODEL_FILE
    joblib.dump(model, path)
    return path


def load_churn_model(path: str | Path) -> ChurnModel:
    """The fitted ChurnModel saved by `save_churn_model`."""
    import joblib

    model = joblib.load(path)
    if not isinstance(model, ChurnModel):
        raise TypeError(f"{path} holds a {type(model).__name__}, not a ChurnModel")
    return model


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """Returns a DataFrame with `p_churn` (calibrated probability) and `raw_score` for a snapshot table.

    With `params={"contributions": True}` it also returns each feature's contribution to the raw log-odds
    (`contribution__<feature>`, in feature order) and the bias (`contribution_bias`); a row's contributions
    sum to its log-odds. Batch jobs and `spark_udf` load it with
    `mlflow.pyfunc.load_model("models:/churnwise@champion")`; `mlflow models serve` serves it.
    """

    def __init__(self, model: ChurnModel | None = None):
        self.model = model

    def load_context(self, context: Any) -> None:
        artifacts = getattr(context, "artifacts", None) or {}
        if MODEL_ARTIFACT in artifacts:
            self.model = load_churn_model(artifacts[MODEL_ARTIFACT])
        elif self.model is None:
            raise ValueError(
                f"the model has no '{MODEL_ARTIFACT}' artifact to load the fitted churn model from"
            )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if self.model is None:
            raise ValueError("the churn model is not loaded (load it with mlflow.pyfunc.load_model)")
        missing = [c for c in self.model.features if c not in model_input.columns]
        if missing:
            raise ValueError(
                f"the input lacks {len(missing)} feature column(s) the model needs: {missing[:10]}"
            )
        raw = self.model.raw_scores(model_input)
        out = {"p_churn": self.model.calibrator.predict(raw).clip(0.0, 1.0), "raw_score": raw}
        if (params or {}).get("contributions"):
            matrix = self.model.contributions(model_input)
            out |= {
                f"{CONTRIBUTION_PREFIX}{feature}": matrix[:, i]
                for i, feature in enumerate(self.model.features)
            }
            out[BIAS_COLUMN] = matrix[:, -1]
        return pd.DataFrame(out, index=model_input.index)


def contribution_matrix(predictions: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """From the output of predict with `params={"contributions": True}`: the (n, features + 1) matrix, bias
    last (as `ChurnModel.contributions` returns it), and the feature names in column order."""
    columns = [c for c in predictions.columns if str(c).startswith(CONTRIBUTION_PREFIX)]
    if not columns or BIAS_COLUMN not in predictions.columns:
        raise ValueError(
            "the model returned no per-feature contributions (it was logged before they were part of the "
            "model's interface): train and register it again (make train), or turn reasons off"
        )
    matrix = predictions[[*columns, BIAS_COLUMN]].to_numpy(dtype=float)
    return matrix, [c.removeprefix(CONTRIBUTION_PREFIX) for c in columns]


def contributions_of(pyfunc_model: Any, frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Per-row, per-feature contributions of a loaded churnwise pyfunc for `frame`, and the feature names:
    what `decisions.reasons.top_reasons` takes. Columns the model's signature does not name are left out."""
    schema = pyfunc_model.metadata.get_input_schema()
    if schema is not None and schema.has_input_names():
        frame = frame[[c for c in schema.input_names() if c in frame.columns]]
    return contribution_matrix(pyfunc_model.predict(frame, params={"contributions": True}))
