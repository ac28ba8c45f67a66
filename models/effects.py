"""The effects bundle: what a training run learned about the customers' future beside the churn model.

Logged as an MLflow pyfunc under the artifact path `effects` in the SAME run as the churn model and
registered as `<registered_model_name>-effects` (alias `challenger`, then `champion` with the churn model:
models/registry.py, models/promotion.py). Scoring loads the bundle of the scored churn model's own training
run (`runs:/<run_id>/effects`), so the two never drift apart.

It holds:
- `survival`: the survival model of `conf/survival` (models/survival.py), for lifetime value;
- `uplift`: per action name, its uplift model (models/uplift.py `ActionUplift`), learned by the train stage
  from the campaigns table (models/training.py `fit_campaign_uplift`); an action that is absent has no
  campaign evidence (its effect stays assumed; the run's tag `uplift.assumed` says why), and the dict is
  empty without a campaigns table or with `uplift.enabled: false`.

`predict` gives each row's survival to the end of months 1..`months` (`survival_1` ..) for rows observed on
`as_of` (params; else each row's `observation_date` column), for a look at the bundle from outside Python
code; scoring uses the unwrapped `Effects` object.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from models.survival import ConstantHazard, SurvivalModel

log = logging.getLogger(__name__)
EFFECTS_PATH = "effects"  # the bundle's artifact path in the training run
EFFECTS_ARTIFACT = "effects"  # its key in the pyfunc's artifacts
EFFECTS_FILE = "effects.joblib"
EFFECTS_SUFFIX = "-effects"  # registered as <registered_model_name>-effects
PARAMS = {"months": 12, "as_of": ""}  # as_of: the date the rows are observed on (else their observation_date)


def effects_name(registered_model_name: str) -> str:
    """The registered name of the bundle beside the churn model `registered_model_name`."""
    return f"{registered_model_name}{EFFECTS_SUFFIX}"


@dataclass
class Effects:
    """What the bundle holds (see the module docstring)."""

    survival: SurvivalModel
    uplift: dict[str, Any] = field(default_factory=dict)  # action name -> models.uplift.ActionUplift


class EffectsPyfunc(mlflow.pyfunc.PythonModel):
    """Survival to the end of months 1..months (`params={"months": n}`) per row of a feature table (with a
    constant retention the rows need `p_churn`)."""

    def __init__(self, effects: Effects | None = None):
        self.effects = effects

    def load_context(self, context: Any) -> None:
        import joblib

        artifacts = getattr(context, "artifacts", None) or {}
        if EFFECTS_ARTIFACT in artifacts:
            self.effects = joblib.load(artifacts[EFFECTS_ARTIFACT])
        if not isinstance(self.effects, Effects):
            raise ValueError(
                f"the effects model has no '{EFFECTS_ARTIFACT}' artifact holding an Effects bundle"
            )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        params = PARAMS | dict(params or {})
        p_churn = model_input["p_churn"].to_numpy(dtype=float) if "p_churn" in model_input else None
        start = params["as_of"] or (model_input.get("observation_date", None))
        months = int(params["months"])
        curves = self.effects.survival.survival(model_input, months, p_churn, start=start)
        return pd.DataFrame(
            curves, columns=[f"survival_{t + 1}" for t in range(months)], index=model_input.index
        )


def log_effects(effects: Effects, example: pd.DataFrame, as_of: Any, requirements: list[str]) -> Any:
    """Log the bundle in the active run under `effects` (its signature from `example`, rows observed on
    `as_of`); returns MLflow's model info."""
    import joblib
    from mlflow.models import infer_signature

    if isinstance(effects.survival, ConstantHazard):
        example = example.assign(p_churn=0.1)
    signature = infer_signature(
        example, EffectsPyfunc(effects).predict(None, example, {"as_of": str(as_of)}), params=PARAMS
    )
    package = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / EFFECTS_FILE
        joblib.dump(effects, path)
        return mlflow.pyfunc.log_model(
            name=EFFECTS_PATH,
            python_model=EffectsPyfunc(),
            artifacts={EFFECTS_ARTIFACT: str(path)},
            signature=signature,
            code_paths=[str(package)],
            pip_requirements=requirements,
            metadata={"survival": type(effects.survival).__name__, "uplift_actions": sorted(effects.uplift)},
        )


def load_effects(run_id: str) -> Effects | None:
    """The bundle logged in the training run `run_id`, or None when the run has none (a model trained before
    bundles existed)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = f"runs:/{run_id}/{EFFECTS_PATH}"
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as error:
        log.debug("no effects bundle at %s: %s", uri, error)
        return None
    return loaded.unwrap_python_model().effects
