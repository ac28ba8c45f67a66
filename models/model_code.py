"""The churnwise model as code (MLflow "models from code"): MLflow runs this file to build the pyfunc.

`models.training._log_model` logs it with `mlflow.pyfunc.log_model(python_model=<this file>,
artifacts={"churn_model": <joblib file>})`; at load time `ChurnPyfunc.load_context` reads the fitted
ChurnModel from that artifact. The `models` package travels with the model (`code_paths`).
"""

import mlflow.models

from models.pyfunc import ChurnPyfunc

mlflow.models.set_model(ChurnPyfunc())
