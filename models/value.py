"""Customer lifetime value from a calibrated churn probability, and the value at risk."""

from __future__ import annotations

import numpy as np

DAYS_PER_MONTH = 365.25 / 12


def monthly_retention(p_churn: np.ndarray, horizon_days: int) -> np.ndarray:
    """The monthly retention rate implied by a churn probability over `horizon_days` (constant hazard)."""
    p = np.clip(np.asarray(p_churn, dtype=float), 0.0, 1.0 - 1e-9)
    return (1.0 - p) ** (DAYS_PER_MONTH / horizon_days)


def lifetime_value(
    p_churn: np.ndarray,
    monthly_revenue: np.ndarray,
    *,
    horizon_days: int,
    margin_rate: float,
    annual_discount_rate: float,
) -> np.ndarray:
    """CLV = m r / (1 + d - r): margin m per month, monthly retention r, monthly discount rate d."""
    r = monthly_retention(p_churn, horizon_days)
    d = (1.0 + annual_discount_rate) ** (1.0 / 12.0) - 1.0
    margin = margin_rate * np.nan_to_num(np.asarray(monthly_revenue, dtype=float), nan=0.0)
    return margin * r / (1.0 + d - r)
