"""The MLflow model churnwise logs and registers: one pyfunc that owns preprocessing, model and calibration."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

from models.churn_model import ChurnModel


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """Returns a DataFrame with `p_churn` (calibrated probability) and `raw_score` for a snapshot table.

    Batch jobs and `spark_udf` load it with `mlflow.pyfunc.load_model("models:/churnwise@champion")`.
    """

    def __init__(self, model: ChurnModel):
        self.model = model

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        missing = [c for c in self.model.features if c not in model_input.columns]
        if missing:
            raise ValueError(
                f"the input lacks {len(missing)} feature column(s) the model needs: {missing[:10]}"
            )
        raw = self.model.raw_scores(model_input)
        return pd.DataFrame(
            {"p_churn": self.model.calibrator.predict(raw).clip(0.0, 1.0), "raw_score": raw},
            index=model_input.index,
        )
