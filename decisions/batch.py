"""Scoring in batches: each chunk of customers scored, valued, explained and given its best action, then
every customer ranked and the budgeted selection made over all of them."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from decisions.actions import ValueParameters, fewer_betters_than, select_within_budget
from decisions.control import TREATED, ControlSettings, hold_out, within_budget
from decisions.plan import ScoringPlan
from decisions.policy import ACTION_COLUMNS, DecisionPolicy, action_index
from decisions.reasons import top_reasons
from decisions.selection import select_multi_choice
from features.sql import identifier, literal

# Columns added to the scoring output since histories were first written: a history table without them is
# migrated (nullable columns added) when a run writes to it; any other difference is refused.
ADDED_COLUMNS = (
    "assignment", "assignment_probability", "expected_net_value_low", "expected_net_value_high", "effect_source",
    "effect_on_churn", "value_gain", "value_gain_low", "value_gain_high", "uplift_segment",
)  # fmt: skip
# Written by each chunk (decisions.effects); kept to `ACTION_COLUMNS` order in the output.
EFFECT_FLOATS = (
    "expected_net_value_low", "expected_net_value_high", "effect_on_churn", "value_gain", "value_gain_low",
    "value_gain_high",
)  # fmt: skip


def output_columns(top_reasons: int = 3) -> list[str]:
    """The columns of the scoring output, in order (`reason_1 .. reason_<top_reasons>`).

    `selected` says whom to contact (the treated); `assignment` is 'treated' or 'control' for every customer
    the selection chose (controls are held out and not contacted), empty otherwise, and
    `assignment_probability` the probability of being treated once chosen for that action. The action's
    `effect_source` (learned / assumed), `effect_on_churn`, `value_gain` and the intervals are those of
    decisions/effects.py; `uplift_segment` its segment."""
    return [
        "customer_id", "as_of", "p_churn", "clv", "value_at_risk", "strategic_value", "valuation_segment",
        "ladder_rung", *(f"reason_{i + 1}" for i in range(top_reasons)), "action", "action_kind",
        "action_cost", "expected_net_value", "expected_net_value_low", "expected_net_value_high",
        "effect_source", "effect_on_churn", "value_gain", "value_gain_low", "value_gain_high", "uplift_segment",
        "selected", "assignment", "assignment_probability", "priority", "model_version",
    ]  # fmt: skip


def pairs_file(scored_file: Path) -> Path:
    """Where `score_chunks` writes the joint selection's candidate pairs, beside `scored_file`."""
    return scored_file.with_name(f"{scored_file.stem}_pairs.parquet")


def score_chunks(
    features: duckdb.DuckDBPyRelation,
    model: Any,
    policy: DecisionPolicy,
    planned: ScoringPlan,
    value: ValueParameters,
    as_of: date,
    model_version: str,
    *,
    chunk_rows: int,
    into: Path,
) -> Path:
    """Score the feature rows a chunk at a time into the Parquet file `into`; returns it.

    Memory is bounded by the chunk: customers stream out of DuckDB, and each chunk's results are appended
    to the file on disk.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    from models.pyfunc import contribution_matrix

    params = {"contributions": True} if policy.explain else None  # the pyfunc returns contributions too
    rows = int(features.shape[0])
    # The rules run chunk by chunk on a connection that cannot reach files, not on the features' one.
    ordered = features.order("customer_id")
    reader = policy.rules_reader(ordered.to_arrow_reader(chunk_rows), planned.absent)
    schema = pa.schema(
        [("customer_id", reader.schema.field("customer_id").type), ("as_of", pa.date32())]
        + [(c, pa.float64()) for c in ("p_churn", "clv", "value_at_risk", "strategic_value")]
        + [("ladder_rung", pa.string())]
        + [(f"reason_{i + 1}", pa.string()) for i in range(policy.top_reasons)]
        + [("action", pa.string()), ("action_kind", pa.string())]
        + [("action_cost", pa.float64()), ("expected_net_value", pa.float64())]
        + [("effect_source", pa.string()), ("uplift_segment", pa.string())]
        + [(c, pa.float64()) for c in EFFECT_FLOATS]
        + [("model_version", pa.string())]
    )
    pair_schema = pa.schema(
        [("customer_id", reader.schema.field("customer_id").type)]
        + [(c, schema.field(c).type) for c in ACTION_COLUMNS]
    )
    with (
        pq.ParquetWriter(into, schema) as writer,
        pq.ParquetWriter(pairs_file(into), pair_schema) as pair_writer,
        tqdm(total=rows, desc="scoring", unit="customer", disable=rows <= chunk_rows) as bar,
    ):
        for batch in reader:
            frame = batch.to_pandas()
            inputs = frame[planned.model_features]
            predicted = model.predict(inputs, params=params)
            p_churn = predicted["p_churn"].to_numpy(dtype=float)
            revenue = planned.revenue.monthly_revenue(frame)
            survival = value.curves(inputs)  # the customer's own survival (None: constant retention)
            clv = value.lifetime_value(p_churn, revenue, survival)
            explained = None
            if policy.explain:
                contributions, names = contribution_matrix(predicted)
                explained = top_reasons(contributions, names, policy.reasons, policy.top_reasons)
            decided, pairs = policy.decide_chunk(frame, p_churn, clv, revenue, explained, value, survival)
            pairs.insert(0, "customer_id", frame["customer_id"].to_numpy()[pairs.pop("row").to_numpy()])
            pair_writer.write_table(pa.Table.from_pandas(pairs, schema=pair_schema, preserve_index=False))
            chunk = pd.concat(
                [
                    pd.DataFrame(
                        {
                            "customer_id": frame["customer_id"],
                            "as_of": as_of,
                            "p_churn": p_churn,
                            "clv": clv,
                            "value_at_risk": p_churn * clv,
                        },
                        index=frame.index,
                    ),
                    decided,
                ],
                axis=1,
            ).assign(model_version=model_version)
            writer.write_table(pa.Table.from_pandas(chunk, schema=schema, preserve_index=False))
            bar.update(len(frame))
    return into


def finalise(
    con: duckdb.DuckDBPyConnection,
    scored_file: Path,
    policy: DecisionPolicy,
    control: ControlSettings,
    as_of: date,
) -> duckdb.DuckDBPyRelation:
    """Valuation segments, priority, the budgeted selection over all customers scored into `scored_file` and
    its control groups (decisions.control); returns the scoring output in priority order (a table on `con`).

    Priority is the rank by expected net value; `selected` marks the treated, whom the team contacts."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE scored AS SELECT * FROM read_parquet({literal(scored_file)})")
    if policy.selection == "joint":
        joint = joint_selection(con, pairs_file(scored_file), policy, control)
    valuation = policy.valuation
    if valuation.high_clv_min is not None:
        threshold = valuation.high_clv_min
    else:
        threshold = con.execute(
            "SELECT quantile_cont(clv, ?) FROM scored", [valuation.high_clv_quantile]
        ).fetchall()[0][0]
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ranked AS
            SELECT *, {valuation.segment_sql(float(threshold))} AS valuation_segment,
                   row_number() OVER (ORDER BY expected_net_value DESC NULLS LAST, customer_id) AS priority
            FROM scored"""
    )
    ordered = con.execute(
        "SELECT customer_id, action, action_cost, expected_net_value FROM ranked ORDER BY priority"
    ).df()
    action = action_index(ordered["action"].to_numpy(dtype=object), policy.action_names)
    cost = ordered["action_cost"].to_numpy(dtype=float, na_value=np.nan)
    if policy.selection == "joint":
        chosen = ordered["customer_id"].isin(joint).to_numpy()
    else:
        chosen = select_within_budget(
            action,
            cost,
            ordered["expected_net_value"].to_numpy(dtype=float, na_value=np.nan),
            control.selection_budget(policy.budget),
            control.selection_capacities(policy.capacities()),
            method=policy.selection,
            time_limit_seconds=policy.exact_time_limit_seconds,
        )
    assignment, probability = hold_out(
        chosen, action, ordered["customer_id"].to_numpy(), control.share, control.seed, as_of
    )
    if control.scale > 1.0:
        assignment = within_budget(assignment, action, cost, policy.budget, policy.capacities())
        probability = np.where(pd.isna(assignment), np.nan, probability)
    selection = pd.DataFrame(
        {
            "priority": np.arange(1, len(chosen) + 1),
            "selected": assignment == TREATED,
            "assignment": pd.array(assignment, dtype="string"),
            "assignment_probability": probability,
        }
    )
    con.register("selection", selection)
    from_selection = {"selected", "assignment", "assignment_probability"}
    select = ", ".join(
        f"s.{identifier(c)}" if c in from_selection else f"r.{identifier(c)}"
        for c in output_columns(policy.top_reasons)
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE scoring_output AS
            SELECT {select} FROM ranked r JOIN selection s USING (priority) ORDER BY r.priority"""
    )
    con.unregister("selection")
    con.execute("DROP TABLE ranked")
    con.execute("DROP TABLE scored")
    return con.table("scoring_output")


def joint_selection(
    con: duckdb.DuckDBPyConnection, pairs: Path, policy: DecisionPolicy, control: ControlSettings
) -> np.ndarray:
    """The customers the joint selection (decisions.selection) picks over every usable (customer, action) pair
    in `pairs`; the table `scored` gets each picked customer's chosen action (which may not be their best).

    Memory stays bounded: one action's pairs at a time are read and cut to those an optimal selection may need
    (`fewer_betters_than` with the most customers any selection holds: those with a free action plus the
    budget over the cheapest paid pair's cost), so the solver sees at most that many pairs per action."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE pairs AS SELECT * FROM read_parquet({literal(pairs)})")
    budget = control.selection_budget(policy.budget)
    capacity = control.selection_capacities(policy.capacities())
    people, free, cheapest = con.execute(
        """SELECT count(DISTINCT customer_id), count(DISTINCT customer_id) FILTER (WHERE action_cost <= 0),
                  min(action_cost) FILTER (WHERE action_cost > 0)
           FROM pairs"""
    ).fetchall()[0]
    # at most: every customer with a free action, plus as many paid ones as the budget buys at the cheapest
    paid = int(people) if cheapest is None else int(budget // float(cheapest))
    most = min(int(people), int(free) + paid)
    kept = []
    for j, name in enumerate(policy.action_names):
        part = con.execute(
            "SELECT customer_id, action_cost, expected_net_value FROM pairs WHERE action = ?", [name]
        ).df()
        if len(part) > most:
            c, v = part["action_cost"].to_numpy(dtype=float), part["expected_net_value"].to_numpy(dtype=float)
            part = part[fewer_betters_than(c, v, max(most, 1))]
        kept.append(part.assign(j=j))
    found = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
    if not len(found):
        con.execute("DROP TABLE pairs")
        return np.empty(0)
    ids, position = np.unique(found["customer_id"].to_numpy(), return_inverse=True)
    shape = (len(ids), len(policy.action_names))
    values, costs = np.full(shape, np.nan), np.full(shape, np.nan)
    values[position, found["j"]] = found["expected_net_value"].to_numpy(dtype=float)
    costs[position, found["j"]] = found["action_cost"].to_numpy(dtype=float)
    pick = select_multi_choice(
        values, costs, budget, [capacity.get(j) for j in range(shape[1])], policy.exact_time_limit_seconds
    )
    names = np.asarray(policy.action_names, dtype=object)
    chosen = pd.DataFrame({"customer_id": ids[pick >= 0], "action": names[pick[pick >= 0]]})
    con.register("chosen", chosen)
    assign = ", ".join(f"{identifier(c)} = p.{identifier(c)}" for c in ACTION_COLUMNS)
    con.execute(
        f"""UPDATE scored SET {assign}
            FROM (SELECT p.* FROM pairs p JOIN chosen c USING (customer_id, action)) p
            WHERE scored.customer_id = p.customer_id"""
    )
    con.unregister("chosen")
    con.execute("DROP TABLE pairs")
    return chosen["customer_id"].to_numpy()
