"""The loyalty ladder: which rung each customer stands on, from configured rules over their features.

After Christopher, Payne and Ballantyne's relationship-marketing ladder: prospect, customer, client,
supporter, advocate, partner. A scored customer stands on the highest rung whose rule holds; prospects
(known, never bought) are counted apart because they are not scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from decisions.errors import DecisionConfigError
from decisions.rules import RULE_INPUTS, Rule, check_rules, evaluate_locked, refuse_unsafe, with_absent
from features.sql import literal


@dataclass(frozen=True)
class LoyaltyLadder:
    """Rungs from lowest to highest and, for the rungs above the base rung, the rule that puts a customer there."""

    rungs: tuple[str, ...]
    rules: dict[str, str]

    def __post_init__(self) -> None:
        refuse_unsafe(self.rules_to_check())

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> LoyaltyLadder:
        """Build from the `ladder` config group; rules may only name rungs above the base rung."""
        rungs = tuple(str(r) for r in cfg["rungs"])
        rules = {str(k): str(v) for k, v in (cfg.get("rules") or {}).items()}
        if len(rungs) < 2 or len(set(rungs)) != len(rungs):
            raise DecisionConfigError(
                "ladder.rungs: list at least two distinct rungs, lowest (prospect) first"
            )
        unknown = sorted(set(rules) - set(rungs[2:]))
        if unknown:
            raise DecisionConfigError(
                f"ladder.rules: {unknown} are not rungs above '{rungs[1]}' (rungs: {', '.join(rungs)}); "
                f"'{rungs[0]}' is for customers who never bought and '{rungs[1]}' is where the others start"
            )
        return cls(rungs, rules)

    @property
    def prospect(self) -> str:
        """The rung of customers known but never bought (not scored)."""
        return self.rungs[0]

    @property
    def base(self) -> str:
        """The rung of a scored customer no rule lifts higher."""
        return self.rungs[1]

    def rules_to_check(self) -> list[Rule]:
        """The rules, keyed by their place in the config."""
        return [Rule(f"ladder.rules.{rung}", sql) for rung, sql in self.rules.items()]

    def rung_sql(self) -> str:
        """SQL giving a customer's rung: the highest rung whose rule holds, else the base rung.

        Each rule is the allow-listed expression regenerated from its parsed text (`Rule.checked`).
        """
        cases = [
            f"WHEN coalesce(({Rule(f'ladder.rules.{rung}', self.rules[rung]).checked()}), FALSE) "
            f"THEN {literal(rung)}"
            for rung in reversed(self.rungs)
            if rung in self.rules
        ]
        if not cases:
            return literal(self.base)
        return f"CASE {' '.join(cases)} ELSE {literal(self.base)} END"

    def rungs_of(
        self, features: pa.Table | pa.RecordBatch, absent: Mapping[str, str] | None = None
    ) -> pa.Array:
        """Each row's rung, evaluated on a connection that cannot reach files (`features.sql.locked_connection`).

        `features` holds the feature columns the rules use; `absent` (column -> DuckDB type) names those the
        data cannot provide, which read as empty. Raises DecisionConfigError naming a rule that does not bind.
        """
        check_rules(features.schema, self.rules_to_check(), absent)
        query = f"SELECT {self.rung_sql()} AS ladder_rung FROM ({with_absent(RULE_INPUTS, absent)}) t"
        (result,) = evaluate_locked(query, [features])
        return result.column("ladder_rung").combine_chunks()

    def rank(self, rung: str) -> int:
        """Position of a rung on the ladder (0 = prospect)."""
        return self.rungs.index(rung)
