"""Configured SQL expressions, parsed and allow-listed before they run.

A decision rule (`conf/ladder`, `conf/valuation`, `conf/actions`) and a feature aggregate (`conf/features`) are
SQL written in a config file. They are never pasted into a query as given: `checked_expression` parses the
text with sqlglot (DuckDB dialect), walks the tree and refuses anything outside a small allow-list, then
returns the expression regenerated from the tree, so what runs is exactly what was checked.

Allowed in every expression: column references (unqualified, and only the names the caller allows), literals
(numbers, strings, TRUE/FALSE, NULL, typed DATE/TIMESTAMP/TIME literals, INTERVAL literals), arithmetic,
comparisons, AND/OR/NOT, IS [NOT] NULL / TRUE / FALSE, IS [NOT] DISTINCT FROM, [NOT] IN (a list of
literals), [NOT] BETWEEN, [NOT] LIKE / ILIKE, CASE, CAST / TRY_CAST to plain types, parentheses and the pure
scalar functions of `SCALAR_FUNCTIONS`. Feature aggregates (`aggregates=True`) may also use the aggregate
functions of `AGGREGATE_FUNCTIONS` (with DISTINCT and FILTER (WHERE ...)), `count(*)`, and the `cw_*` date
functions of `features.dialect`.

Everything else is refused with an `ExpressionError` naming the config key, the expression and what is not
allowed: subqueries, table functions (read_csv, glob, ...), several statements, comments, unknown functions
(getenv, current_setting, ...), `*`, qualified or unknown columns, parameters, window functions.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from features.dialect import DUCKDB_MACROS
from features.errors import ConfigError

DIALECT = "duckdb"

# Pure scalar functions: the name a user writes -> the sqlglot node it parses to. Nothing here reads files,
# the environment, settings or the catalog, and nothing depends on the time of the run or on chance.
SCALAR_FUNCTIONS: dict[str, type[exp.Expression]] = {
    "abs": exp.Abs,
    "ceil": exp.Ceil,
    "coalesce": exp.Coalesce,
    "concat": exp.Concat,
    "exp": exp.Exp,
    "floor": exp.Floor,
    "greatest": exp.Greatest,
    "if": exp.If,
    "least": exp.Least,
    "length": exp.Length,
    "ln": exp.Ln,
    "log": exp.Log,
    "lower": exp.Lower,
    "nullif": exp.Nullif,
    "power": exp.Pow,
    "round": exp.Round,
    "sign": exp.Sign,
    "sqrt": exp.Sqrt,
    "substring": exp.Substring,
    "trim": exp.Trim,
    "upper": exp.Upper,
}

# Aggregate functions, for feature SQL only.
AGGREGATE_FUNCTIONS: dict[str, type[exp.Expression]] = {
    "any_value": exp.AnyValue,
    "arg_max": exp.ArgMax,  # also max_by
    "arg_min": exp.ArgMin,  # also min_by
    "avg": exp.Avg,
    "bool_and": exp.LogicalAnd,
    "bool_or": exp.LogicalOr,
    "count": exp.Count,
    "count_if": exp.CountIf,
    "max": exp.Max,
    "median": exp.Median,
    "min": exp.Min,
    "quantile": exp.Quantile,
    "quantile_cont": exp.PercentileCont,
    "quantile_disc": exp.PercentileDisc,
    "stddev": exp.Stddev,
    "stddev_pop": exp.StddevPop,
    "stddev_samp": exp.StddevSamp,
    "sum": exp.Sum,
    "var_pop": exp.VariancePop,
    "variance": exp.Variance,
}

# The engine's date functions (features/dialect.py), for feature SQL only: sqlglot sees them as unknown
# (anonymous) functions, allowed by name.
DATE_FUNCTIONS: tuple[str, ...] = tuple(
    sorted(re.findall(r"MACRO\s+(cw_[a-z_]+)\s*\(", " ".join(DUCKDB_MACROS)))
)

# Operators and the other nodes an expression may be made of.
OPERATORS: tuple[type[exp.Expression], ...] = (
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.IntDiv, exp.Mod, exp.Neg, exp.Pow, exp.DPipe,
    exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ,
    exp.And, exp.Or, exp.Not, exp.Paren, exp.Is, exp.In, exp.Between, exp.Like, exp.ILike,
    exp.Case, exp.If, exp.Cast, exp.TryCast,
)  # fmt: skip
LITERALS: tuple[type[exp.Expression], ...] = (exp.Literal, exp.Boolean, exp.Null)

# Types a CAST may name (sqlglot's names; DuckDB's VARCHAR is TEXT, HUGEINT is not included).
CAST_TYPES = frozenset(
    getattr(exp.DataType.Type, name)
    for name in (
        "BOOLEAN", "TINYINT", "SMALLINT", "INT", "BIGINT", "UTINYINT", "USMALLINT", "UINT", "UBIGINT",
        "FLOAT", "DOUBLE", "DECIMAL", "TEXT", "VARCHAR", "CHAR", "DATE", "TIME", "TIMESTAMP",
        "TIMESTAMPNTZ", "TIMESTAMPTZ", "INTERVAL",
    )
)  # fmt: skip
INTERVAL_UNITS = frozenset(
    f"{unit}{plural}"
    for unit in ("YEAR", "MONTH", "WEEK", "DAY", "HOUR", "MINUTE", "SECOND")
    for plural in ("", "S")
)


class ExpressionError(ConfigError):
    """A configured expression does not parse or uses something outside the allow-list; names the key."""


def checked_expression(
    sql: str, key: str, columns: Collection[str] | None = None, *, aggregates: bool = False
) -> str:
    """The expression `sql` (configured at `key`) parsed, allow-listed and regenerated as DuckDB SQL.

    `columns` are the names it may use (compared without case, as DuckDB does); None allows any unqualified
    name, to be bound later. `aggregates` allows aggregate functions, DISTINCT, FILTER, count(*) and the
    cw_* date functions (feature SQL). Raises ExpressionError naming `key`, the expression and the problem.
    """
    tree = _parse(sql, key)
    checker = _Checker(sql, key, columns, aggregates)
    checker.visit(tree, None)
    return tree.sql(dialect=DIALECT, comments=False)


def referenced_columns(sql: str) -> set[str]:
    """The unqualified column names an expression uses (empty when it does not parse: the check says why)."""
    try:
        tree = _parse(sql, "")
    except ExpressionError:
        return set()
    return {column.name for column in tree.find_all(exp.Column) if not column.table and column.name}


def allowed_summary(aggregates: bool = False) -> str:
    """What an expression may contain, in one sentence (for error messages)."""
    functions = sorted(SCALAR_FUNCTIONS)
    if aggregates:
        functions = sorted({*functions, *AGGREGATE_FUNCTIONS, *DATE_FUNCTIONS})
    columns = "the source's columns and observation_date" if aggregates else "the feature columns"
    return (
        f"an expression may use {columns}, literals, arithmetic, comparisons, AND/OR/NOT, IS [NOT] NULL, "
        f"IN (literals), BETWEEN, LIKE, CASE, CAST and the functions {', '.join(functions)}"
    )


def _parse(sql: str, key: str) -> exp.Expression:
    def refuse(problem: str) -> ExpressionError:
        return ExpressionError(f"{key}: {sql!r} {problem}")

    if not isinstance(sql, str):
        raise refuse("is not a text expression")
    try:
        tokens = sqlglot.Dialect.get_or_raise(DIALECT).tokenize(sql)
    except SqlglotError as error:
        raise refuse(f"cannot be parsed ({_first_line(error)}; check the quotes)") from None
    if any(token.token_type == TokenType.SEMICOLON for token in tokens):
        raise refuse("is not allowed: more than one statement (';'); write one expression")
    if any(token.comments for token in tokens):
        raise refuse("is not allowed: a comment ('--' or '/* */'); write the expression alone")
    try:
        statements = sqlglot.parse(sql, read=DIALECT)
    except SqlglotError as error:
        raise refuse(f"cannot be parsed ({_first_line(error)})") from None
    statements = [s for s in statements if s is not None]
    if not statements:
        raise refuse("is empty")
    if len(statements) > 1:
        raise refuse("is not allowed: more than one statement; write one expression")
    return statements[0]


def _first_line(error: Exception) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


class _Checker:
    """Walks a parsed expression and raises at the first node outside the allow-list."""

    def __init__(self, sql: str, key: str, columns: Collection[str] | None, aggregates: bool) -> None:
        self.sql, self.key, self.aggregates = sql, key, aggregates
        self.columns = None if columns is None else {str(c).lower(): str(c) for c in columns}
        allowed = dict(SCALAR_FUNCTIONS)
        if aggregates:
            allowed |= AGGREGATE_FUNCTIONS
        self.functions = tuple(allowed.values())
        self.aggregate_functions = tuple(AGGREGATE_FUNCTIONS.values())

    def refuse(self, what: str) -> ExpressionError:
        return ExpressionError(
            f"{self.key}: {self.sql!r} is not allowed: {what}; {allowed_summary(self.aggregates)}"
        )

    def visit(self, node: exp.Expression, parent: exp.Expression | None) -> None:
        self.check(node, parent)
        for child in node.iter_expressions():
            self.visit(child, node)

    def check(self, node: exp.Expression, parent: exp.Expression | None) -> None:  # noqa: C901
        if isinstance(node, exp.Column):
            self.check_column(node)
        elif isinstance(node, exp.Identifier):
            if not isinstance(parent, exp.Column):
                raise self.refuse(f"the name {node.sql(dialect=DIALECT)} here")
        elif isinstance(node, LITERALS):
            return
        elif isinstance(node, exp.In):
            if any(node.args.get(arg) for arg in ("query", "unnest", "field")):
                raise self.refuse("IN over a subquery or a list that is not written out; list literals")
            for item in node.expressions:
                if not _is_constant(item):
                    raise self.refuse(f"IN with {item.sql(dialect=DIALECT)!r}: IN takes a list of literals")
        elif isinstance(node, exp.Interval):
            unit = node.args.get("unit")
            if not isinstance(node.this, exp.Literal) or not isinstance(unit, exp.Var):
                raise self.refuse("an INTERVAL that is not a literal (write INTERVAL '30' DAY)")
            if unit.name.upper() not in INTERVAL_UNITS:
                raise self.refuse(f"the interval unit {unit.name}")
        elif isinstance(node, exp.Var):
            if not isinstance(parent, exp.Interval):
                raise self.refuse(f"the word {node.name}")
        elif isinstance(node, exp.DataType):
            if not isinstance(parent, exp.Cast | exp.TryCast) or node.this not in CAST_TYPES:
                raise self.refuse(f"the type {node.sql(dialect=DIALECT)} (cast to a plain type)")
        elif isinstance(node, exp.DataTypeParam):
            if not isinstance(parent, exp.DataType) or not isinstance(node.this, exp.Literal):
                raise self.refuse(f"the type parameter {node.sql(dialect=DIALECT)}")
        elif isinstance(node, exp.Star):
            if not (self.aggregates and isinstance(parent, exp.Count) and parent.this is node):
                raise self.refuse("'*' (name the columns; only count(*) may use it, in feature SQL)")
        elif isinstance(node, exp.Distinct):
            if not (self.aggregates and isinstance(parent, self.aggregate_functions)) or node.args.get("on"):
                raise self.refuse("DISTINCT outside an aggregate function")
        elif isinstance(node, exp.Filter):
            if not (self.aggregates and isinstance(node.this, self.aggregate_functions)):
                raise self.refuse("FILTER outside an aggregate function")
        elif isinstance(node, exp.Where):
            if not isinstance(parent, exp.Filter):
                raise self.refuse("WHERE outside FILTER (WHERE ...)")
        elif isinstance(node, exp.IgnoreNulls):
            return
        elif isinstance(node, exp.Anonymous):
            name = str(node.name).lower()
            if not (self.aggregates and name in DATE_FUNCTIONS):
                raise self.refuse(f"the function {name}()")
        elif isinstance(node, (*self.functions, *OPERATORS)):
            return
        else:
            raise self.refuse(_describe(node, self.aggregates))

    def check_column(self, column: exp.Column) -> None:
        if isinstance(column.this, exp.Star):
            raise self.refuse(f"{column.sql(dialect=DIALECT)} ('*'; name the columns)")
        if any(column.args.get(part) for part in ("table", "db", "catalog")):
            raise self.refuse(
                f"the qualified column {column.sql(dialect=DIALECT)} (write the column name alone)"
            )
        if self.columns is not None and column.name.lower() not in self.columns:
            close = difflib.get_close_matches(column.name.lower(), list(self.columns), n=1)
            hint = f'; did you mean "{self.columns[close[0]]}"?' if close else ""
            raise ExpressionError(
                f'{self.key}: {self.sql!r} cannot be evaluated (Referenced column "{column.name}" not found '
                f"among the columns it may use{hint})"
            )


def _is_constant(node: exp.Expression) -> bool:
    """A literal, a negative number, or a typed literal (DATE '2024-01-01')."""
    if isinstance(node, exp.Paren):
        return _is_constant(node.this)
    if isinstance(node, LITERALS):
        return True
    if isinstance(node, exp.Neg):
        return isinstance(node.this, exp.Literal) and not node.this.is_string
    if isinstance(node, exp.Cast):
        return isinstance(node.this, exp.Literal) and node.to.this in CAST_TYPES
    return False


def _describe(node: exp.Expression, aggregates: bool) -> str:
    """What a refused node is, in a user's words."""
    if isinstance(node, exp.Subquery | exp.Select | exp.Exists | exp.Union | exp.Query):
        return "a subquery (SELECT ...)"
    if isinstance(node, exp.Placeholder | exp.Parameter):
        return f"the parameter {node.sql(dialect=DIALECT)}"
    if isinstance(node, exp.Window):
        return "a window function (OVER ...)"
    if isinstance(node, exp.AggFunc) and not aggregates:
        return f"the aggregate function {_function_name(node)}() (a rule is evaluated per customer)"
    if isinstance(node, exp.Func):
        return f"the function {_function_name(node)}()"
    text = node.sql(dialect=DIALECT)
    return f"{text[:60]!r} ({type(node).__name__})"


def _function_name(node: exp.Func) -> str:
    """The function's name as DuckDB would read it back (RANDOM for random(), READ_CSV, ...)."""
    found = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(", node.sql(dialect=DIALECT))
    return (found.group(1) if found else node.sql_name()).lower()
