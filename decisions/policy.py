"""The decision policy: from a scored customer's features, probability and value to their ladder rung,
strategic value, reasons and best retention action.

`DecisionPolicy` holds the configured parts (`conf/reasons`, `conf/ladder`, `conf/valuation`,
`conf/actions`). Its rules are SQL over the scoring-date features, allow-listed when the policy is built
(`decisions.rules`): `evaluate` / `rules_reader` add the rung, the strategic value, and each action's eligibility
and cost to each chunk of feature rows as the customers stream out, on a DuckDB connection that cannot reach
files; `decide` then computes reasons and expected net values for a chunk with numpy. The global steps
(valuation thresholds, priority, the budget) run once all chunks are in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from decisions.actions import Action, Customers, ValueParameters, choose_actions
from decisions.effects import action_values, pick, segment_action, uplift_segment
from decisions.errors import DecisionConfigError
from decisions.ladder import LoyaltyLadder
from decisions.reasons import ReasonFamilies, TopReasons
from decisions.rules import (
    RULE_INPUTS,
    Rule,
    bind_rules,
    evaluate_locked,
    referenced_names,
    refuse_unsafe,
    with_absent,
)
from decisions.valuation import Valuation
from features.sql import identifier

# Columns the decision rules add before the action rules run: eligibility and cost may use them.
DECISION_COLUMNS = {"ladder_rung": "VARCHAR", "strategic_value": "DOUBLE"}

SELECTIONS = ("joint", "exact", "greedy")
# Per customer, the chosen (or best) action's columns: decide() and the joint selection's pairs.
ACTION_COLUMNS = (
    "action", "action_kind", "action_cost", "expected_net_value", "expected_net_value_low",
    "expected_net_value_high", "effect_source", "effect_on_churn", "value_gain", "value_gain_low",
    "value_gain_high", "uplift_segment",
)  # fmt: skip

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
    selection: str = "joint"
    exact_time_limit_seconds: float = 60.0

    def __post_init__(self) -> None:
        names = [a.name for a in self.catalogue]
        bad = [n for n in names if not ACTION_NAME.match(n)]
        if bad or len(set(names)) != len(names):
            raise DecisionConfigError(
                f"actions.catalogue: action names must be unique lower-case identifiers; check {bad or names}"
            )
        if self.selection not in SELECTIONS:
            raise DecisionConfigError(
                f"actions.selection: {self.selection!r} is not one of {', '.join(SELECTIONS)}"
            )
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
        refuse_unsafe(self.action_rules())

    @property
    def action_names(self) -> list[str]:
        """Actions in catalogue order (the order that breaks ties)."""
        return [a.name for a in self.catalogue]

    def rules(self) -> list[Rule]:
        """Every configured SQL expression, keyed by where it is configured."""
        return [*self.ladder.rules_to_check(), *self.valuation.rules_to_check(), *self.action_rules()]

    def action_rules(self) -> list[Rule]:
        """The contact rule and each action's eligibility and cost (these may use DECISION_COLUMNS)."""
        rules = [Rule("actions.contact_rule", str(self.contact_rule))]
        for action in self.catalogue:
            rules.append(Rule(f"actions.catalogue.{action.name}.eligible", str(action.eligible)))
            rules.append(Rule(f"actions.catalogue.{action.name}.cost", str(action.cost), "DOUBLE"))
        return rules

    def referenced_features(self, names: Iterable[str]) -> set[str]:
        """Which of the feature `names` the rules use."""
        names = set(names)
        return set().union(*(referenced_names(rule.sql, names) for rule in self.rules()))

    def check(
        self, columns: Mapping[str, str] | pa.Schema, absent: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Allow-list and bind every rule against the scoring columns (name -> DuckDB type, or the Arrow schema
        of the feature rows) and the `absent` ones, on a connection that cannot reach files; raise naming each
        bad key. Returns the checked SQL by config key.

        Ladder and valuation rules may use the feature columns; the contact rule and the eligibility and cost
        rules may also use `ladder_rung` and `strategic_value`.
        """
        absent = dict(absent or {})
        checked, problems = bind_rules(
            columns, [*self.ladder.rules_to_check(), *self.valuation.rules_to_check()], absent
        )
        decided, more = bind_rules(columns, self.action_rules(), {**absent, **DECISION_COLUMNS})
        if problems or more:
            raise DecisionConfigError("\n  ".join(problems + more))
        return checked | decided

    def rules_sql(self, table: str, absent: Mapping[str, str] | None = None) -> str:
        """A query over `table` adding ladder_rung, strategic_value and each action's eligibility and cost.

        Every rule in it is the allow-listed expression regenerated from its parsed text; its columns are
        bound when the query runs (`check` binds them first). `absent` (column -> DuckDB type) names columns
        the rules use that could not be built from the data: they read as empty, so rules that need them do
        not hold.
        """
        contact = Rule("actions.contact_rule", str(self.contact_rule)).checked()
        per_action = []
        for action in self.catalogue:
            eligible = Rule(f"actions.catalogue.{action.name}.eligible", str(action.eligible)).checked()
            cost = Rule(f"actions.catalogue.{action.name}.cost", str(action.cost), "DOUBLE").checked()
            per_action.append(
                f"coalesce(({contact}) AND ({eligible}), FALSE) AS {identifier(eligible_column(action.name))}"
            )
            per_action.append(f"CAST(({cost}) AS DOUBLE) AS {identifier(cost_column(action.name))}")
        return f"""
SELECT *, {", ".join(per_action) or "NULL AS __no_actions"}
FROM (
  SELECT *, {self.ladder.rung_sql()} AS ladder_rung, CAST({self.valuation.strategic_sql()} AS DOUBLE) AS strategic_value
  FROM ({with_absent(table, absent)}) t
) r"""

    def evaluate(
        self, features: pa.RecordBatch | pa.Table, absent: Mapping[str, str] | None = None
    ) -> pa.Table:
        """One batch of feature rows with ladder_rung, strategic_value and each action's eligibility and cost
        added (the columns of `rules_sql`, rows in the same order), evaluated on a connection that cannot reach
        files. Memory is bounded by the batch. Raises DecisionConfigError naming a rule that does not bind."""
        query = self._checked_query(features.schema, absent)
        (result,) = evaluate_locked(query, [features])
        return result

    def rules_reader(
        self, features: pa.RecordBatchReader, absent: Mapping[str, str] | None = None
    ) -> pa.RecordBatchReader:
        """The batches of `features` with the rule columns added as they stream (see `evaluate`), on one
        connection that cannot reach files; the rules are checked against the stream's columns first."""
        query = self._checked_query(features.schema, absent)
        (empty,) = evaluate_locked(query, [features.schema.empty_table()])
        schema = empty.schema

        def batches() -> Iterator[pa.RecordBatch]:
            for result in evaluate_locked(query, features):
                yield from (
                    (result if result.schema == schema else result.cast(schema)).combine_chunks().to_batches()
                )

        return pa.RecordBatchReader.from_batches(schema, batches())

    def _checked_query(self, schema: pa.Schema, absent: Mapping[str, str] | None) -> str:
        self.check(schema, absent)
        return self.rules_sql(RULE_INPUTS, absent)

    def decide(
        self,
        frame: pd.DataFrame,
        p_churn: np.ndarray,
        clv: np.ndarray,
        monthly_revenue: np.ndarray,
        reasons: TopReasons | None,
        value: ValueParameters,
        survival: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """Reasons and the best action for a chunk of customers (rows of `rules_sql`, same order);
        `survival`: the (n, months) survival curves behind `clv` (None: constant retention)."""
        return self.decide_chunk(frame, p_churn, clv, monthly_revenue, reasons, value, survival)[0]

    def decide_chunk(
        self,
        frame: pd.DataFrame,
        p_churn: np.ndarray,
        clv: np.ndarray,
        monthly_revenue: np.ndarray,
        reasons: TopReasons | None,
        value: ValueParameters,
        survival: np.ndarray | None = None,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """As `decide`, and every usable (customer, action) pair with a positive ENV (the joint selection's
        candidates: `ACTION_COLUMNS` with `row` = the customer's position in `frame`)."""
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
            survival=survival,
            features=frame,
        )
        values = action_values(
            self.catalogue, customers, eligible, costs, value, self.low_risk_below, value.uplift,
            value.window_months,
        )  # fmt: skip
        choice = choose_actions(values.env.mean, costs)
        out = {
            "ladder_rung": frame["ladder_rung"].to_numpy(dtype=object),
            "strategic_value": frame["strategic_value"].to_numpy(dtype=float),
        }
        for i in range(self.top_reasons):
            labels = reasons.labels[:, i] if reasons is not None and i < reasons.labels.shape[1] else None
            out[f"reason_{i + 1}"] = labels if labels is not None else np.full(len(frame), None, dtype=object)
        by_segment = segment_action(values, choice.action)
        out |= self._action_columns(values, choice.action, costs, customers.p_churn)
        out["uplift_segment"] = self._action_columns(values, by_segment, costs, customers.p_churn)[
            "uplift_segment"
        ]
        rows, actions = np.nonzero(values.usable & (values.env.mean > 0))
        pairs = pd.DataFrame(
            {"row": rows, **self._action_columns(values, actions, costs, customers.p_churn, rows)}
        )
        return pd.DataFrame(out, index=frame.index), pairs

    def _action_columns(
        self,
        values: Any,
        action: np.ndarray,
        costs: np.ndarray,
        p_churn: np.ndarray,
        rows: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """`ACTION_COLUMNS` of `action[i]` (-1: none) for row `rows[i]` (default: row i)."""
        rows = np.arange(len(action)) if rows is None else rows
        names = np.asarray(self.action_names + [None], dtype=object)
        kinds = np.asarray([a.kind for a in self.catalogue] + [None], dtype=object)
        source = np.asarray([*values.source, None], dtype=object)

        def at(matrix: np.ndarray) -> np.ndarray:
            return pick(matrix[rows], action)

        churn_low, churn_high = at(values.churn.low), at(values.churn.high)
        return {
            "action": names[action],
            "action_kind": kinds[action],
            "action_cost": pick(costs[rows], action),
            "expected_net_value": at(values.env.mean),
            "expected_net_value_low": at(values.env.low),
            "expected_net_value_high": at(values.env.high),
            "effect_source": source[action],
            "effect_on_churn": at(values.churn.mean),
            "value_gain": at(values.gain.mean),
            "value_gain_low": at(values.gain.low),
            "value_gain_high": at(values.gain.high),
            "uplift_segment": uplift_segment(p_churn[rows], churn_low, churn_high, self.low_risk_below),
        }

    def capacities(self) -> dict[int, int | None]:
        """Capacity of each action, by its index in the catalogue."""
        return {i: a.capacity for i, a in enumerate(self.catalogue)}


def action_index(actions: Sequence[str | None], names: Sequence[str]) -> np.ndarray:
    """Catalogue index of each action name (-1 for none)."""
    codes = pd.Categorical(pd.Series(actions, dtype=object), categories=list(names)).codes
    return np.asarray(codes, dtype=int)


def decision_policy(cfg: DictConfig) -> DecisionPolicy:
    """The decision policy the `reasons`, `ladder`, `valuation` and `actions` configs describe."""
    from hydra.errors import InstantiationException

    actions = cfg.actions
    catalogue = []
    for name, spec in actions.catalogue.items():
        try:
            catalogue.append(instantiate(spec, name=str(name), _convert_="all"))
        except InstantiationException as error:
            if isinstance(error.__cause__, DecisionConfigError):
                raise error.__cause__ from error
            cause = str(error.__cause__ or error).strip().splitlines()[0]
            raise DecisionConfigError(f"actions.catalogue.{name}: {cause}") from error
    return DecisionPolicy(
        ladder=LoyaltyLadder.from_config(OmegaConf.to_container(cfg.ladder, resolve=True)),
        valuation=Valuation.from_config(OmegaConf.to_container(cfg.valuation, resolve=True)),
        reasons=ReasonFamilies.from_config(OmegaConf.to_container(cfg.reasons, resolve=True)),
        catalogue=tuple(catalogue),
        top_reasons=int(cfg.reasons.top_k),
        explain=bool(cfg.reasons.enabled),
        low_risk_below=float(actions.low_risk_below),
        contact_rule=str(actions.contact_rule or "TRUE"),
        budget=float(actions.budget),
        selection=str(actions.selection),
        exact_time_limit_seconds=float(actions.exact_time_limit_seconds),
    )
