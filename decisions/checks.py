"""Checks a scoring run makes before it publishes anything: the model against its manifest and the data's
feature types, the inputs against the scoring date and the tables the model was trained with."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from decisions.summary import out_of_range_text
from decisions.value import RevenueRule
from features.engine import DataWindow, table_last_dates
from features.errors import ConfigError
from features.sql import identifier, literal
from models.registry import RegisteredModel

log = logging.getLogger(__name__)
SIGNATURE_TYPES = {"double": {"DOUBLE"}, "string": {"VARCHAR"}, "long": {"BIGINT"}, "boolean": {"BOOLEAN"}}


def check_model_matches_manifest(model: Any, manifest: dict[str, Any], model_uri: str) -> None:
    """The model's input signature must be the feature list its training run recorded."""
    schema = model.metadata.get_input_schema()
    if schema is None:
        return
    signature = [c.name for c in schema.inputs]
    recorded = [f["name"] for f in manifest["features"]]
    if signature != recorded:
        only_model = sorted(set(signature) - set(recorded))
        only_manifest = sorted(set(recorded) - set(signature))
        raise ConfigError(
            f"model {model_uri}: its input signature does not match the feature manifest of its training run "
            f"(only in the signature: {only_model or 'none'}; only in the manifest: {only_manifest or 'none'}"
            f"{'; same names in another order' if not only_model and not only_manifest else ''}); "
            f"re-register the model with `make train`"
        )


def check_feature_types(features: Any, model: Any, model_uri: str) -> None:
    """Each column of the feature rows (a DuckDB relation) must have the type the model's signature declares."""
    schema = model.metadata.get_input_schema()
    if schema is None:
        return
    types = {name: str(kind) for name, kind in zip(features.columns, features.types, strict=True)}
    wrong = []
    for column in schema.inputs:
        expected = str(column.type).split(".")[-1].lower()
        if types.get(column.name) not in SIGNATURE_TYPES.get(expected, {types.get(column.name)}):
            wrong.append(
                f"{column.name} is {types.get(column.name)} in the data, the model expects {expected}"
            )
    if wrong:
        raise ConfigError(
            f"model {model_uri} does not match the data's feature types: {'; '.join(wrong)}. Give the source "
            f"columns the types the model was trained on, or train a model on this data"
        )


def check_inputs_cover(
    con: Any,
    present: set[str],
    manifest: dict[str, Any],
    window: DataWindow,
    as_of: date,
    max_input_lag_days: int | None,
) -> None:
    """Refuse a scoring date the inputs do not cover: outside the data, or a table that stops more than
    `max_input_lag_days` before it."""
    if as_of > window.end:
        raise ConfigError(
            f"score.as_of {as_of} is after the end of the input data ({window.end}): no inputs for it"
        )
    if as_of <= window.start:
        raise ConfigError(
            f"score.as_of {as_of} is not after the start of the input data ({window.start}): no history to "
            f"build features from"
        )
    lag = max_input_lag_days
    if lag is not None:
        last = window.last_dates or table_last_dates(con, present)
        stale = {
            t: d for t, d in last.items() if t in manifest["input"]["tables"] and (as_of - d).days > int(lag)
        }
        if stale:
            listed = ", ".join(
                f"{t} ends on {d} ({(as_of - d).days} days before)" for t, d in sorted(stale.items())
            )
            raise ConfigError(
                f"inputs are missing for score.as_of {as_of}: {listed}; their features would read as no activity. "
                f"Provide data up to the scoring date, score an earlier date (score.as_of), or raise "
                f"score.max_input_lag_days (now {lag})"
            )
    event_types = manifest["event_types"]
    if event_types and "events" in present:
        seen = {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT event_type FROM events WHERE event_time < ? AND event_time >= ?",
                [as_of, date.fromordinal(as_of.toordinal() - 365)],
            ).fetchall()
        }
        missing = [t for t in event_types if t not in seen]
        if len(missing) == len(event_types):
            raise ConfigError(
                f"the model's event types {event_types} do not occur in the events of the year before {as_of} "
                f"(found: {sorted(seen)[:10]}): its engagement features cannot be rebuilt from this data"
            )
        if missing:
            log.warning("event types the model uses but absent in the year before %s: %s", as_of, missing)


def check_model_inputs(
    registered: RegisteredModel, present: set[str], revenue: RevenueRule, data_path: str
) -> None:
    """The data must hold every table the model was trained with, and the model the revenue feature."""
    manifest = registered.manifest
    missing = sorted(set(manifest["input"]["tables"]) - present)
    if missing:
        raise ConfigError(
            f"model {registered.uri} was trained with the tables {', '.join(manifest['input']['tables'])}; the "
            f"input data at {data_path} lacks {', '.join(missing)}, so its features cannot be rebuilt: provide "
            f"them or train a model on the tables you have"
        )
    model_features = {f["name"] for f in manifest["features"]}
    if revenue.recurring not in model_features and revenue.purchases is None:
        raise ConfigError(
            f"value.revenue_feature '{revenue.recurring}' is not a feature of model {registered.uri}; "
            f"set it to the feature holding monthly revenue (or value.purchase_feature and "
            f"value.include_purchases=true to value purchases)"
        )


def out_of_range_shares(features: Any, ranges: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per numeric feature with a training range, the share of the scored customers (the feature rows, a
    DuckDB relation) whose value lies below the training minimum or above the training maximum."""
    checked = [name for name in ranges if name in features.columns]
    if not checked:
        return {}
    outside = ", ".join(
        f"avg(CASE WHEN TRY_CAST({identifier(name)} AS DOUBLE) < {literal(float(ranges[name]['min']))} "
        f"OR TRY_CAST({identifier(name)} AS DOUBLE) > {literal(float(ranges[name]['max']))} "
        f"THEN 1.0 ELSE 0.0 END)"
        for name in checked
    )
    shares = features.query("scored_features", f"SELECT {outside} FROM scored_features").fetchall()[0]
    return {name: float(share or 0.0) for name, share in zip(checked, shares, strict=True)}


def check_training_ranges(
    features: Any, manifest: dict[str, Any], model_uri: str, warn_share: float
) -> dict[str, float]:
    """The share of scored customers outside each numeric feature's training range (recorded by training in
    the manifest's `training_ranges`), with one warning naming the features where it exceeds `warn_share`.
    A model trained before the ranges were recorded is not checked (one info line; returns {})."""
    ranges = manifest.get("training_ranges")
    if ranges is None:
        log.info(
            "model %s records no training ranges of its features (trained before churnwise recorded them): "
            "scoring values are not checked against them", model_uri,
        )  # fmt: skip
        return {}
    shares = out_of_range_shares(features, ranges)
    flagged = {name: share for name, share in shares.items() if share > warn_share}
    if flagged:
        log.warning(
            "scoring values outside the training range of %d feature(s) (share of scored customers, above "
            "score.out_of_range_warn_share %s): %s; the model has not seen such values and extrapolates flat "
            "beyond them: retrain on recent data, or read these scores with care",
            len(flagged), f"{warn_share:.0%}", out_of_range_text(flagged, ranges),
        )  # fmt: skip
    return shares
