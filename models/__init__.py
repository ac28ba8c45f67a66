"""Churn models: estimators, calibration, evaluation and the MLflow model that owns them."""
