"""Customer lifetime value (one revenue rule, used by scoring and by the report) and the value at risk.

CLV is the discounted margin over the customer's own predicted survival (`survival_lifetime_value`, a survival
model of `conf/survival`), or, with survival=constant, the closed form of a constant monthly retention taken
from the calibrated churn probability (`lifetime_value`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from features.labels import DAYS_PER_MONTH
from models.survival import ConstantHazard


@dataclass(frozen=True)
class ValueParameters:
    """What the CLV formula needs besides the probability and revenue (`conf/value`), and the survival model
    whose curves it discounts (None or a ConstantHazard: the constant monthly retention)."""

    horizon_days: float  # the label window in days (features.labels.LabelWindow.approx_days)
    margin_rate: float
    annual_discount_rate: float
    horizon_months: int = 120  # months a survival CLV counts
    survival: Any = None  # a fitted models.survival model (DiscreteHazard), or None / ConstantHazard
    as_of: date | None = None  # the date the customers are valued on (a seasonal survival model needs it)
    # learned action effects: action name -> models.uplift.ActionUplift (the effects bundle's `uplift`), and the
    # window their margin effect covers (uplift.value_window_months); decisions/effects.py
    uplift: Mapping[str, Any] = field(default_factory=dict)
    window_months: int = 12

    @property
    def constant(self) -> bool:
        """Whether lifetime value is the constant-retention closed form (survival=constant)."""
        return self.survival is None or isinstance(self.survival, ConstantHazard)

    def curves(self, features: pd.DataFrame) -> np.ndarray | None:
        """(n, horizon_months) survival of each customer, or None with a constant retention."""
        if self.constant:
            return None
        return self.survival.survival(features, int(self.horizon_months), start=self.as_of)

    def lifetime_value(
        self, p_churn: np.ndarray, monthly_revenue: np.ndarray, survival: np.ndarray | None
    ) -> np.ndarray:
        """CLV from the survival curves (`curves`), or the constant-retention formula when they are None."""
        if survival is None:
            return lifetime_value(
                p_churn, monthly_revenue, horizon_days=self.horizon_days, margin_rate=self.margin_rate,
                annual_discount_rate=self.annual_discount_rate,
            )  # fmt: skip
        margin = self.margin_rate * np.nan_to_num(np.asarray(monthly_revenue, dtype=float), nan=0.0)
        return survival_lifetime_value(survival, margin, self.annual_discount_rate)

    def moved_lifetime_value(
        self,
        p_churn: np.ndarray,
        monthly_revenue: np.ndarray,
        survival: np.ndarray | None,
        churn_multiplier: float,
    ) -> np.ndarray:
        """CLV after a ladder move: the hazard (or, constant, the churn probability) scaled by
        `churn_multiplier`, at the given monthly revenue."""
        if survival is None:
            moved_p = np.clip(np.asarray(p_churn, dtype=float) * float(churn_multiplier), 0.0, 1.0)
            return self.lifetime_value(moved_p, monthly_revenue, None)
        return self.lifetime_value(p_churn, monthly_revenue, scaled_hazard(survival, churn_multiplier))


def monthly_discount_rate(annual_discount_rate: float) -> float:
    """d = (1 + annual rate) ** (1/12) - 1."""
    return (1.0 + float(annual_discount_rate)) ** (1.0 / 12.0) - 1.0


def survival_lifetime_value(
    survival: np.ndarray, monthly_margin: np.ndarray | float, annual_discount_rate: float
) -> np.ndarray:
    """CLV = sum_t m S(t) (1 + d) ** -t over the curves' months t = 1..T (S(t): survival to the end of month
    t, (n, T)); never above the perpetuity m / d."""
    survival = np.clip(np.asarray(survival, dtype=float), 0.0, 1.0)
    d = monthly_discount_rate(annual_discount_rate)
    discount = (1.0 + d) ** -np.arange(1, survival.shape[1] + 1, dtype=float)
    margin = np.broadcast_to(np.asarray(monthly_margin, dtype=float), (survival.shape[0],))
    value = margin * (survival @ discount)
    return np.minimum(value, margin / d) if d > 0 else value


def scaled_hazard(survival: np.ndarray, multiplier: float) -> np.ndarray:
    """The survival curves with every month's hazard h_t = 1 - S(t) / S(t - 1) times `multiplier` (at most 1)."""
    survival = np.clip(np.asarray(survival, dtype=float), 1e-300, 1.0)
    previous = np.concatenate([np.ones((survival.shape[0], 1)), survival[:, :-1]], axis=1)
    hazard = np.clip((1.0 - survival / previous) * float(multiplier), 0.0, 1.0)
    return np.cumprod(1.0 - hazard, axis=1)


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
    d = monthly_discount_rate(annual_discount_rate)
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
