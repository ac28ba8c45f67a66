"""The reasons behind a churn score: per-customer feature contributions grouped into business reason families.

A model's contributions (`ChurnModel.contributions`: exact TreeSHAP for LightGBM, coefficient times centred
value for linear models) split each customer's log-odds of churn into one part per feature. Features are
grouped into reason families (complaints, price, low engagement, no bundle, ...) by name patterns from the
`reasons` config; a family's contribution is the sum over its features. A customer's reasons are the
families that raise their risk most, as words a retention team reads.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from decisions.errors import DecisionConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReasonFamily:
    """A business reason: its key (used by the action catalogue), its words, and the features it covers."""

    key: str
    label: str
    features: tuple[str, ...]  # fnmatch patterns of feature names


@dataclass(frozen=True)
class ReasonFamilies:
    """The configured reason families, in order, and the family of features no pattern matches."""

    families: tuple[ReasonFamily, ...]
    other_key: str = "other"
    other_label: str = "other factors"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ReasonFamilies:
        """Build from the `reasons` config group (`families: {key: {label, features}}`)."""
        families = []
        for key, spec in cfg["families"].items():
            patterns = spec.get("features") or []
            if not patterns or not spec.get("label"):
                raise DecisionConfigError(
                    f"reasons.families.{key}: needs a label and a non-empty features list"
                )
            families.append(ReasonFamily(str(key), str(spec["label"]), tuple(str(p) for p in patterns)))
        keys = [f.key for f in families]
        other = str(cfg.get("other_key", "other"))
        other_label = str(cfg.get("other_label", "other factors"))
        labels = [f.label for f in families] + [other_label]
        if other in keys or len(set(keys)) != len(keys) or len(set(labels)) != len(labels):
            raise DecisionConfigError(
                f"reasons.families: keys and labels must be unique and differ from other_key '{other}' and "
                f"other_label '{other_label}'"
            )
        return cls(tuple(families), other, other_label)

    @property
    def keys(self) -> list[str]:
        """Family keys, the catch-all last."""
        return [f.key for f in self.families] + [self.other_key]

    @property
    def labels(self) -> dict[str, str]:
        """Words for each family key."""
        return {f.key: f.label for f in self.families} | {self.other_key: self.other_label}

    def family_of(self, feature: str) -> str:
        """The key of the first family with a pattern matching the feature name, else the catch-all."""
        for family in self.families:
            if any(fnmatch.fnmatchcase(feature, pattern) for pattern in family.features):
                return family.key
        return self.other_key

    def membership(self, features: Sequence[str]) -> np.ndarray:
        """A 0/1 matrix (features x families, in `keys` order) saying which family each feature is in."""
        keys = self.keys
        matrix = np.zeros((len(features), len(keys)))
        unmatched = []
        for i, feature in enumerate(features):
            key = self.family_of(feature)
            matrix[i, keys.index(key)] = 1.0
            if key == self.other_key:
                unmatched.append(feature)
        if unmatched:
            log.info("features in no reason family (reported as '%s'): %s", self.other_label, unmatched)
        return matrix


@dataclass(frozen=True)
class TopReasons:
    """The top reason families of each customer: keys, words, and their share of the risk-raising part."""

    codes: (
        np.ndarray
    )  # (n, k) int: index into `ReasonFamilies.keys`, -1 where the customer has no more reasons
    keys: np.ndarray  # (n, k) object: family key or None
    labels: np.ndarray  # (n, k) object: family label or None
    contribution: np.ndarray  # (n, k) float: the family's summed contribution to the log-odds (NaN if none)


def top_reasons(
    contributions: np.ndarray, features: Sequence[str], families: ReasonFamilies, k: int = 3
) -> TopReasons:
    """The `k` reason families that raise each customer's log-odds most.

    `contributions` is (n, len(features)) or (n, len(features) + 1) with the bias last (as LightGBM's
    `pred_contrib` returns it). Only families with a positive summed contribution are reasons; a customer
    with fewer than `k` of them gets None in the remaining places. Ties go to the family listed first.
    """
    values = np.asarray(contributions, dtype=float)
    if values.shape[1] == len(features) + 1:
        values = values[:, :-1]
    if values.shape[1] != len(features):
        raise ValueError(f"contributions have {values.shape[1]} columns for {len(features)} features")
    by_family = values @ families.membership(features)
    k = min(k, by_family.shape[1])
    order = np.argsort(-by_family, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(by_family, order, axis=1)
    keys = np.asarray(families.keys, dtype=object)[order]
    labels = np.asarray([families.labels[key] for key in families.keys], dtype=object)[order]
    positive = top > 0
    return TopReasons(
        np.where(positive, order, -1),
        np.where(positive, keys, None),
        np.where(positive, labels, None),
        np.where(positive, top, np.nan),
    )
