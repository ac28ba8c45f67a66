"""Decision rules are allow-listed SQL expressions: hostile ones are refused naming their config key, the
shipped ones pass and mean what they meant, and rules run where files cannot be reached (issue 12)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from omegaconf import DictConfig, OmegaConf

from decisions.actions import CorrectiveAction
from decisions.errors import DecisionConfigError
from decisions.ladder import LoyaltyLadder
from decisions.policy import DecisionPolicy, cost_column, eligible_column
from decisions.reasons import ReasonFamilies
from decisions.rules import RULE_INPUTS, Rule, check_rules, evaluate_locked, referenced_names
from decisions.valuation import Valuation
from features.expressions import SCALAR_FUNCTIONS, checked_expression

CONF = Path(__file__).resolve().parents[2] / "conf"
RUNGS = ["prospect", "customer", "client", "partner"]
COLUMNS = {"tenure_days": "DOUBLE", "segment": "VARCHAR", "is_partner": "DOUBLE"}
VALUATION_CFG = {
    "financial": {"high_clv_quantile": 0.7},
    "strategic": {"points": {"partner": {"when": "is_partner >= 1", "points": 3}}, "high_at": 2},
    "segments": {
        "invest": {"financial": "high", "strategic": "high"},
        "maintain": {"financial": "high", "strategic": "low"},
        "serve_differently": {"financial": "low", "strategic": "high"},
        "review": {"financial": "low", "strategic": "low"},
    },
}

# (rule, what the refusal says is wrong)
HOSTILE = [
    ("(SELECT count(*) FROM read_csv('/etc/passwd')) > 0", "is not allowed: a subquery (SELECT ...)"),
    ("read_csv('/etc/passwd')", "is not allowed: the function read_csv()"),
    ("glob('/etc/*') IS NOT NULL", "is not allowed: the function glob()"),
    ("x; drop table scores; --", "is not allowed: more than one statement"),
    ("is_partner = 1 -- and the rest is cut off", "is not allowed: a comment"),
    ("is_partner = 1 /* hidden */ OR TRUE", "is not allowed: a comment"),
    ("getenv('HOME') = '/root'", "is not allowed: the function getenv()"),
    ("current_setting('enable_external_access') = 'true'", "is not allowed: the function current_setting()"),
    ("t.is_partner >= 1", "is not allowed: the qualified column t.is_partner"),
    ('"is_partner"; select 1', "is not allowed: more than one statement"),
    ("segment = 'enterprise", "cannot be parsed"),
    ("*", "is not allowed: '*'"),
    ("is_partner IN (SELECT 1)", "is not allowed: IN over a subquery"),
    ("sum(is_partner) > 0", "is not allowed: the aggregate function sum()"),
    ("count(*) OVER () > 0", "is not allowed: a window function"),
    ("$1 > 0", "is not allowed: the parameter $1"),
    ("is_partner >= 1 AND random() < 0.5", "is not allowed: the function random()"),
    ("CAST(is_partner AS INT[]) IS NULL", "is not allowed: the type INT[]"),
]


def ladder_with(rule: str) -> LoyaltyLadder:
    return LoyaltyLadder.from_config({"rungs": RUNGS, "rules": {"partner": rule}})


@pytest.mark.parametrize(("rule", "problem"), HOSTILE)
def test_a_hostile_ladder_rule_is_refused_when_the_ladder_is_built_naming_its_key(
    rule: str, problem: str
) -> None:
    with pytest.raises(DecisionConfigError) as error:
        ladder_with(rule)
    message = str(error.value)
    assert message.startswith(f"ladder.rules.partner: {rule!r} ")
    assert problem in message


@pytest.mark.parametrize(("rule", "problem"), HOSTILE[:6])
def test_hostile_action_and_valuation_rules_are_refused_naming_their_keys(rule: str, problem: str) -> None:
    ladder = ladder_with("is_partner >= 1")
    valuation = Valuation.from_config(VALUATION_CFG)
    families = ReasonFamilies.from_config({"families": {"profile": {"label": "profile", "features": ["*"]}}})

    def policy(**parts: object) -> DecisionPolicy:
        action = CorrectiveAction("call", cost=parts.get("cost", 5), eligible=parts.get("eligible", "TRUE"),
                                  save_rate={"default": 0.1})  # fmt: skip
        return DecisionPolicy(
            ladder, valuation, families, (action,), contact_rule=parts.get("contact", "TRUE")
        )

    for part, key in (
        ("contact", "actions.contact_rule"),
        ("eligible", "actions.catalogue.call.eligible"),
        ("cost", "actions.catalogue.call.cost"),
    ):
        with pytest.raises(DecisionConfigError) as error:
            policy(**{part: rule})
        assert str(error.value).startswith(f"{key}: {rule!r} ") and problem in str(error.value)
    points = {"partner": {"when": rule, "points": 3}}
    with pytest.raises(DecisionConfigError) as error:
        Valuation.from_config({**VALUATION_CFG, "strategic": {"points": points, "high_at": 2}})
    assert str(error.value).startswith(f"valuation.strategic.points.partner.when: {rule!r} ")
    assert problem in str(error.value)


def test_unknown_and_qualified_columns_are_refused_when_the_rules_meet_the_features() -> None:
    with pytest.raises(DecisionConfigError) as error:
        check_rules(COLUMNS, [Rule("ladder.rules.client", "tenure_dayz >= 365")])
    assert str(error.value).startswith("ladder.rules.client: 'tenure_dayz >= 365' cannot be evaluated")
    assert 'Referenced column "tenure_dayz" not found' in str(error.value)
    assert 'did you mean "tenure_days"?' in str(error.value)
    with pytest.raises(
        DecisionConfigError, match=r"^ladder.rules.client: .*qualified column rule_inputs.tenure"
    ):
        check_rules(COLUMNS, [Rule("ladder.rules.client", "rule_inputs.tenure_days >= 365")])
    # ladder rules run before the rung exists: only the action rules may use it
    with pytest.raises(DecisionConfigError, match=r'^ladder.rules.partner: .*"ladder_rung" not found'):
        policy_for(ladder_with("ladder_rung = 'client'")).check(COLUMNS)
    eligible = CorrectiveAction("call", cost=5, eligible="ladder_rung = 'client'", save_rate={"default": 0.1})
    assert policy_for(ladder_with("is_partner >= 1"), eligible).check(COLUMNS)[
        "actions.catalogue.call.eligible"
    ]


def policy_for(ladder: LoyaltyLadder, *actions: CorrectiveAction) -> DecisionPolicy:
    families = ReasonFamilies.from_config({"families": {"profile": {"label": "profile", "features": ["*"]}}})
    return DecisionPolicy(ladder, Valuation.from_config(VALUATION_CFG), families, tuple(actions))


def test_what_runs_is_the_checked_expression_regenerated_from_its_tree() -> None:
    assert checked_expression("tenure_days>=365  AND   segment IN('a','b')", "k") == (
        "tenure_days >= 365 AND segment IN ('a', 'b')"
    )
    ladder = LoyaltyLadder.from_config({"rungs": RUNGS, "rules": {"client": "tenure_days>=365"}})
    assert "coalesce((tenure_days >= 365), FALSE) THEN 'client'" in ladder.rung_sql()
    # a rung name with a quote is a literal, not SQL
    odd = LoyaltyLadder.from_config(
        {"rungs": ["prospect", "customer", "o'client"], "rules": {"o'client": "TRUE"}}
    )
    assert odd.rungs_of(pa.table({"tenure_days": [1.0]})).to_pylist() == ["o'client"]


def test_quoted_names_strings_and_case_mean_what_duckdb_reads() -> None:
    rows = pa.table({"tenure_days": [400.0, 10.0, None], "segment": ["O'Brien\\co", "x", None]})
    ladder = LoyaltyLadder.from_config(
        {"rungs": RUNGS, "rules": {"client": '"tenure_days" >= 365', "partner": "segment = 'O''Brien\\co'"}}
    )
    assert ladder.rungs_of(rows).to_pylist() == ["partner", "customer", "customer"]
    upper = LoyaltyLadder.from_config({"rungs": RUNGS, "rules": {"client": "Tenure_Days >= 365"}})
    assert upper.rungs_of(rows).to_pylist() == ["client", "customer", "customer"]
    assert referenced_names("Tenure_Days >= 365 AND segment = 'tenure_days'", ["tenure_days", "segment"]) == {
        "tenure_days",
        "segment",
    }


SCALAR_EXAMPLES = {
    "abs": "abs(x - 10)",
    "ceil": "ceil(x / 3)",
    "coalesce": "coalesce(n, x, 0)",
    "concat": "concat(s, '-', s)",
    "exp": "exp(x / 10)",
    "floor": "floor(x / 3)",
    "greatest": "greatest(x, 5, n)",
    "if": "if(x > 4, 'big', 'small')",
    "least": "least(x, 5, n)",
    "length": "length(s)",
    "ln": "ln(x + 1)",
    "log": "log(x + 1) + log(2, x + 1)",
    "lower": "lower(s)",
    "nullif": "nullif(x, 4)",
    "power": "power(x, 2) + x ** 2",
    "round": "round(x / 3, 2)",
    "sign": "sign(x - 4)",
    "sqrt": "sqrt(x)",
    "substring": "substring(s, 2, 2)",
    "trim": "trim('  ' || s || ' ')",
    "upper": "upper(s)",
}
OPERATOR_EXAMPLES = [
    "x // 3 + x % 3 - -x * 2 / 4",
    "x IS NOT NULL AND NOT n IS NULL OR x IS DISTINCT FROM n",
    "x NOT IN (1, 2, -3) AND s NOT LIKE 'a%' AND s ILIKE 'B%'",
    "x NOT BETWEEN 2 AND 4",
    "CASE WHEN x > 5 THEN 'a' WHEN x > 2 THEN 'b' END",
    "CAST(x AS INTEGER) + TRY_CAST(s AS DOUBLE)",
    "CAST('2024-01-31' AS DATE) + INTERVAL 1 MONTH > DATE '2024-02-01' AND x::VARCHAR <> s",
    "s || 'x' = 'bbx'",
]


@pytest.mark.parametrize("sql", [*SCALAR_EXAMPLES.values(), *OPERATOR_EXAMPLES])
def test_allowed_functions_and_operators_mean_the_same_once_regenerated(sql: str) -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT * FROM (VALUES (1.0, NULL, 'abc'), (4.0, 2.0, 'Bb'), (9.0, 7.0, NULL)) v(x, n, s)"
    )
    regenerated = checked_expression(sql, "ladder.rules.client", {"x", "n", "s"})
    as_written = con.execute(f"SELECT ({sql}) FROM t").fetchall()
    assert con.execute(f"SELECT ({regenerated}) FROM t").fetchall() == as_written


def test_every_allowed_scalar_function_has_an_example() -> None:
    assert set(SCALAR_EXAMPLES) == set(SCALAR_FUNCTIONS)


def shipped_policy(
    make_cfg: Callable[..., DictConfig], *overrides: str
) -> tuple[DecisionPolicy, dict[str, str]]:
    from decisions.plan import duckdb_type
    from decisions.policy import decision_policy
    from features.engine import plan_every_feature

    cfg = make_cfg(*overrides, debug=False)
    features = plan_every_feature(OmegaConf.to_container(cfg.features, resolve=True), ["login", "usage"])
    return decision_policy(cfg), {f.name: duckdb_type(f) for f in features.features}


@pytest.mark.parametrize("data", sorted(p.stem for p in (CONF / "data").glob("*.yaml")))
def test_the_shipped_rules_pass_for_every_data_config(make_cfg: Callable[..., DictConfig], data: str) -> None:
    policy, columns = shipped_policy(make_cfg, f"data={data}", "debug=default")
    checked = policy.check(columns)
    assert set(checked) == {rule.key for rule in policy.rules()}
    assert checked["ladder.rules.client"] == (
        "tenure_days >= 365 OR orders_365d >= 2 OR NOT days_since_last_renewal IS NULL"
    )


def legacy_rules_sql(policy: DecisionPolicy, table: str, absent: dict[str, str]) -> str:
    """The rules query as it was before issue 12: the configured text pasted in as it is (the reference)."""
    empty = "".join(f", CAST(NULL AS {kind}) AS {name}" for name, kind in absent.items())
    ladder = policy.ladder
    cases = " ".join(
        f"WHEN coalesce(({ladder.rules[rung]}), FALSE) THEN '{rung}'" for rung in reversed(ladder.rungs)
        if rung in ladder.rules
    )  # fmt: skip
    strategic = " + ".join(
        f"CASE WHEN coalesce(({sql}), FALSE) THEN {points!r} ELSE 0.0 END"
        for sql, points in policy.valuation.strategic_points.values()
    )
    per_action = []
    for action in policy.catalogue:
        per_action.append(
            f"coalesce(({policy.contact_rule}) AND ({action.eligible}), FALSE) AS {eligible_column(action.name)}"
        )
        per_action.append(f"CAST(({action.cost}) AS DOUBLE) AS {cost_column(action.name)}")
    return f"""
SELECT *, {", ".join(per_action)}
FROM (
  SELECT *, CASE {cases} ELSE '{ladder.base}' END AS ladder_rung, CAST({strategic} AS DOUBLE) AS strategic_value
  FROM (SELECT *{empty} FROM {table}) t
) r"""


def feature_rows(columns: dict[str, str], rows: int, seed: int = 7) -> pa.Table:
    """Feature rows of every type the rules read: numbers 0-1200 (a tenth empty), segments, some empty."""
    rng = np.random.default_rng(seed)
    data = {"customer_id": pa.array(np.arange(rows), pa.int64())}
    for name, kind in columns.items():
        empty = rng.random(rows) < 0.1
        if kind == "VARCHAR":
            values = rng.choice(["consumer", "small_business", "enterprise"], rows).astype(object)
            data[name] = pa.array([None if e else v for v, e in zip(values, empty, strict=True)], pa.string())
        else:
            values = rng.integers(0, 1200, rows).astype(float) / rng.choice([1.0, 100.0, 400.0], rows)
            data[name] = pa.array(values, pa.float64(), mask=empty)
    return pa.table(data)


def test_a_policy_evaluated_on_a_batch_gives_the_same_columns_as_the_rules_query_before(
    make_cfg: Callable[..., DictConfig],
) -> None:
    policy, columns = shipped_policy(make_cfg)
    absent = {"referrals_made": "DOUBLE", "referrals_made_365d": "DOUBLE"}
    batch = feature_rows({n: k for n, k in columns.items() if n not in absent}, 2000)
    evaluated = policy.evaluate(batch, absent)
    con = duckdb.connect()
    con.register("features", batch)
    before = con.sql(legacy_rules_sql(policy, "features", absent)).to_arrow_table()
    assert evaluated.column_names == before.column_names
    assert evaluated.to_pandas().equals(before.to_pandas())
    # the rules really decide something on these rows
    rungs = set(evaluated.column("ladder_rung").to_pylist())
    assert {"customer", "client", "supporter", "partner"} <= rungs and "advocate" not in rungs
    assert 0 < sum(evaluated.column(eligible_column("service_recovery_call")).to_pylist()) < len(batch)


def test_the_rules_stream_batch_by_batch_in_order(make_cfg: Callable[..., DictConfig]) -> None:
    policy, columns = shipped_policy(make_cfg)
    rows = feature_rows(columns, 1000, seed=3)
    reader = policy.rules_reader(
        pa.RecordBatchReader.from_batches(rows.schema, rows.to_batches(max_chunksize=300))
    )
    batches = list(reader)
    assert [len(b) for b in batches] == [300, 300, 300, 100]
    streamed = pa.Table.from_batches(batches)
    assert streamed.column("customer_id").to_pylist() == list(range(1000))
    assert streamed.equals(policy.evaluate(rows))


def test_a_rule_that_does_not_bind_on_the_batch_is_refused_naming_its_key() -> None:
    ladder = LoyaltyLadder.from_config({"rungs": RUNGS, "rules": {"client": "tenure_days >= 365"}})
    with pytest.raises(DecisionConfigError, match=r'^ladder.rules.client: .*"tenure_days" not found'):
        ladder.rungs_of(pa.table({"tenure": [1.0]}))
    with pytest.raises(
        DecisionConfigError, match=r"^ladder.rules.client: 'tenure_days >= 365' cannot be evaluated"
    ):
        ladder.rungs_of(pa.table({"tenure_days": pa.array([{"a": 1}])}))
    with pytest.raises(
        DecisionConfigError, match=r"^ladder.rules.client: 'tenure_days' yields VARCHAR, not a cond"
    ):
        LoyaltyLadder.from_config({"rungs": RUNGS, "rules": {"client": "tenure_days"}}).rungs_of(
            pa.table({"tenure_days": ["x"]})
        )


def test_even_sql_that_reached_the_locked_connection_cannot_read_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n2\n")
    query = f"SELECT *, (SELECT count(*) FROM read_csv('{secret}')) AS leaked FROM {RULE_INPUTS}"
    batch = pa.table({"tenure_days": [1.0]})
    open_connection = duckdb.connect()
    open_connection.register(RULE_INPUTS, batch)
    assert open_connection.sql(query).fetchall() == [(1.0, 2)]  # what an ordinary connection would do
    with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
        list(evaluate_locked(query, [batch]))
    with pytest.raises(duckdb.PermissionException):
        list(evaluate_locked(f"SELECT * FROM {RULE_INPUTS}, glob('{tmp_path}/*')", [batch]))
    with pytest.raises(duckdb.Error, match="locked"):
        list(evaluate_locked("SET enable_external_access = true", [batch]))
