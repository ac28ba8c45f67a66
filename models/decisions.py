"""The decision policy: from a scored customer's features, probability and value to their ladder rung,
strategic value, reasons and best retention action.

`DecisionPolicy` holds the configured parts (`conf/reasons`, `conf/ladder`, `conf/valuation`,
`conf/actions`). Its rules are SQL over the scoring-date features: `rules_sql` wraps a feature table in a
query that adds the rung, the strategic value, and each action's eligibility and cost, so DuckDB evaluates
them while the customers stream out in chunks; `decide` then computes reasons and expected net values for a
chunk with numpy. The global steps (valuation thresholds, priority, the budget) run once all chunks are in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.actions import Action, Customers, ValueParameters, choose_actions, expected_net_values
from models.errors import DecisionConfigError
from models.ladder import LoyaltyLadder
from models.reasons import ReasonFamilies, TopReasons
from models.rules import Rule, check_rules, referenced_names
from models.valuation import Valuation

ACTION_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def eligible_column(action: str) -> str:
    """Name of the rule column saying whether `action` may be offered to the customer."""
    return f"__eligible__{action}"


def cost_column(action: str) -> str:
    """Name of the rule column holding the cost of `action` for the customer."""
    return f"__cost__{action}"


@dataclass(frozen=True)
class DecisionPolicy:
    """Ladder, valuation, reasons and the action catalogue, with the rules that tie them to the features."""

    ladder: LoyaltyLadder
    valuation: Valuation
    reasons: ReasonFamilies
    catalogue: tuple[Action, ...]
    top_reasons: int = 3
    explain: bool = True  # compute reasons (per-customer contributions); off, save rates are the defaults
    low_risk_below: float = 0.04
    contact_rule: str = "TRUE"
    budget: float = 0.0
    selection: str = "greedy"
    exact_time_limit_seconds: float = 60.0

    def __post_init__(self) -> None:
        names = [a.name for a in self.catalogue]
        bad = [n for n in names if not ACTION_NAME.match(n)]
        if bad or len(set(names)) != len(names):
            raise DecisionConfigError(
                f"actions.catalogue: action names must be unique lower-case identifiers; check {bad or names}"
            )
        if self.selection not in ("greedy", "exact"):
            raise DecisionConfigError(f"actions.selection: {self.selection!r} is not greedy or exact")
        families = set(self.reasons.keys) | {"default"}
        rungs = set(self.ladder.rungs)
        for action in self.catalogue:
            if action.kind == "corrective":
                unknown = sorted(set(action.save_rate) - families)
                if unknown:
                    raise DecisionConfigError(
                        f"actions.catalogue.{action.name}.save_rate: {unknown} are not reason families "
                        f"(reasons.families: {', '.join(self.reasons.keys)})"
                    )
            else:
                unknown = sorted((set(action.from_rungs) | {action.target_rung}) - rungs)
                if unknown:
                    raise DecisionConfigError(
                        f"actions.catalogue.{action.name}: rungs {unknown} are not on the ladder "
                        f"({', '.join(self.ladder.rungs)})"
                    )
                below = [
                    r
                    for r in action.from_rungs
                    if self.ladder.rank(r) >= self.ladder.rank(action.target_rung)
                ]
                if below:
                    raise DecisionConfigError(
                        f"actions.catalogue.{action.name}: target_rung {action.target_rung} is not above "
                        f"from_rungs {below}"
                    )

    @property
    def action_names(self) -> list[str]:
        """Actions in catalogue order (the order that breaks ties)."""
        return [a.name for a in self.catalogue]

    def rules(self) -> list[Rule]:
        """Every configured SQL expression, keyed by where it is configured."""
        rules = [*self.ladder.rules_to_check(), *self.valuation.rules_to_check()]
        rules.append(Rule("actions.contact_rule", self.contact_rule))
        for action in self.catalogue:
            rules.append(Rule(f"actions.catalogue.{action.name}.eligible", action.eligible))
            rules.append(Rule(f"actions.catalogue.{action.name}.cost", str(action.cost), "DOUBLE"))
        return rules

    def referenced_features(self, names: Iterable[str]) -> set[str]:
        """Which of the feature `names` the rules use."""
        names = set(names)
        return set().union(*(referenced_names(rule.sql, names) for rule in self.rules()))

    def check(self, columns: Mapping[str, str]) -> None:
        """Bind every rule against the scoring columns (name -> DuckDB type); raise naming each bad key.

        Eligibility and cost rules may also use `ladder_rung` and `strategic_value`.
        """
        check_rules({**columns, "ladder_rung": "VARCHAR", "strategic_value": "DOUBLE"}, self.rules())

    def rules_sql(self, table: str, absent: Mapping[str, str] | None = None) -> str:
        """A query over `table` adding ladder_rung, strategic_value and each action's eligibility and cost.

        `absent` (column -> DuckDB type) names columns the rules use that could not be built from the data:
        they read as empty, so rules that need them do not hold.
        """
        empty = "".join(f", CAST(NULL AS {kind}) AS {name}" for name, kind in (absent or {}).items())
        per_action = []
        for action in self.catalogue:
            per_action.append(
                f"coalesce(({self.contact_rule}) AND ({action.eligible}), FALSE) AS {eligible_column(action.name)}"
            )
            per_action.append(f"CAST(({action.cost}) AS DOUBLE) AS {cost_column(action.name)}")
        return f"""
SELECT *, {", ".join(per_action) or "NULL AS __no_actions"}
FROM (
  SELECT *, {self.ladder.rung_sql()} AS ladder_rung, CAST({self.valuation.strategic_sql()} AS DOUBLE) AS strategic_value
  FROM (SELECT *{empty} FROM {table}) t
) r"""

    def decide(
        self,
        frame: pd.DataFrame,
        p_churn: np.ndarray,
        clv: np.ndarray,
        monthly_revenue: np.ndarray,
        reasons: TopReasons | None,
        value: ValueParameters,
    ) -> pd.DataFrame:
        """Reasons and the best action for a chunk of customers (rows of `rules_sql`, same order)."""
        names = self.action_names
        eligible = (
            np.column_stack([frame[eligible_column(n)].to_numpy(dtype=bool) for n in names])
            if names
            else np.zeros((len(frame), 0), dtype=bool)
        )
        costs = (
            np.column_stack([frame[cost_column(n)].to_numpy(dtype=float, na_value=np.nan) for n in names])
            if names
            else np.zeros((len(frame), 0))
        )
        customers = Customers(
            p_churn=np.asarray(p_churn, dtype=float),
            clv=np.asarray(clv, dtype=float),
            monthly_revenue=np.asarray(monthly_revenue, dtype=float),
            ladder_rung=frame["ladder_rung"].to_numpy(dtype=object),
            reason_codes=None if reasons is None else reasons.codes,
            reason_families=self.reasons.keys,
        )
        values = expected_net_values(self.catalogue, customers, eligible, costs, value, self.low_risk_below)
        choice = choose_actions(values, costs)
        action_names = np.asarray(names + [None], dtype=object)
        kinds = np.asarray([a.kind for a in self.catalogue] + [None], dtype=object)
        out = {
            "ladder_rung": frame["ladder_rung"].to_numpy(dtype=object),
            "strategic_value": frame["strategic_value"].to_numpy(dtype=float),
        }
        for i in range(self.top_reasons):
            labels = reasons.labels[:, i] if reasons is not None and i < reasons.labels.shape[1] else None
            out[f"reason_{i + 1}"] = labels if labels is not None else np.full(len(frame), None, dtype=object)
        out |= {
            "action": action_names[choice.action],
            "action_kind": kinds[choice.action],
            "action_cost": choice.cost,
            "expected_net_value": choice.expected_net_value,
        }
        return pd.DataFrame(out, index=frame.index)

    def capacities(self) -> dict[int, int | None]:
        """Capacity of each action, by its index in the catalogue."""
        return {i: a.capacity for i, a in enumerate(self.catalogue)}


def action_index(actions: Sequence[str | None], names: Sequence[str]) -> np.ndarray:
    """Catalogue index of each action name (-1 for none)."""
    codes = pd.Categorical(pd.Series(actions, dtype=object), categories=list(names)).codes
    return np.asarray(codes, dtype=int)
