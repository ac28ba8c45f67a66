"""Customer lifetime value from a calibrated churn probability and monthly revenue (one revenue rule, used
by scoring and by the report), and the value at risk."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.labels import DAYS_PER_MONTH


def monthly_retention(p_churn: np.ndarray, horizon_days: float) -> np.ndarray:
    """The monthly retention rate implied by a churn probability over `horizon_days` (constant hazard; a
    window of calendar months counts `LabelWindow.approx_days`)."""
    p = np.clip(np.asarray(p_churn, dtype=float), 0.0, 1.0 - 1e-9)
    return (1.0 - p) ** (DAYS_PER_MONTH / horizon_days)


def lifetime_value(
    p_churn: np.ndarray,
    monthly_revenue: np.ndarray,
    *,
    horizon_days: float,
    margin_rate: float,
    annual_discount_rate: float,
) -> np.ndarray:
    """CLV = m r / (1 + d - r): margin m per month, monthly retention r, monthly discount rate d."""
    r = monthly_retention(p_churn, horizon_days)
    d = (1.0 + annual_discount_rate) ** (1.0 / 12.0) - 1.0
    margin = margin_rate * np.nan_to_num(np.asarray(monthly_revenue, dtype=float), nan=0.0)
    return margin * r / (1.0 + d - r)


@dataclass(frozen=True)
class RevenueRule:
    """Which features make a customer's monthly revenue (`conf/value`): the recurring revenue feature, plus
    the purchase feature as a monthly average when purchases count. One rule for scoring and the report."""

    recurring: str
    purchases: str | None = None
    purchase_months: float = 12.0

    @classmethod
    def from_config(cls, value_cfg: Any, tables: Iterable[str]) -> RevenueRule:
        """The rule of a `value` config node for data holding `tables`: with include_purchases 'auto',
        purchases count when there are orders and no subscriptions (a retail export: recurring revenue 0)."""
        tables = set(tables)
        purchases = value_cfg.get("purchase_feature")
        include = value_cfg.get("include_purchases", "auto")
        if include == "auto":
            include = "subscriptions" not in tables and "orders" in tables
        return cls(
            str(value_cfg.revenue_feature),
            str(purchases) if purchases and include else None,
            float(value_cfg.get("purchase_months", 12)),
        )

    @property
    def features(self) -> tuple[str, ...]:
        """The features the rule reads."""
        return (self.recurring,) if self.purchases is None else (self.recurring, self.purchases)

    def monthly_revenue(self, frame: pd.DataFrame) -> np.ndarray:
        """Monthly revenue: the recurring revenue (empty or absent: 0) plus purchases as a monthly average."""
        total = np.zeros(len(frame))
        if self.recurring in frame:
            total += np.nan_to_num(frame[self.recurring].to_numpy(dtype=float, na_value=np.nan))
        if self.purchases is not None and self.purchases in frame:
            total += (
                np.nan_to_num(frame[self.purchases].to_numpy(dtype=float, na_value=np.nan))
                / self.purchase_months
            )
        return total
